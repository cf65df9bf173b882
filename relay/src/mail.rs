//! E-mail for invitations and password resets, through the operator's SMTP server (`smtp_url`,
//! `smtp_from`). Without those settings the relay sends nothing and the console shows the link to
//! copy instead.

use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

/// Sends mail through one SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold the SMTP password: not printed.
        f.debug_struct("Mailer").field("from", &self.from).finish()
    }
}

/// Why a message was not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// The recipient or sender is not an address the message format accepts.
    #[error("{0} is not an e-mail address the relay can send to")]
    Address(String),
    /// The message could not be built.
    #[error("the message could not be built: {0}")]
    Build(String),
    /// The SMTP server refused it or could not be reached.
    #[error("the mail server did not take the message: {0}")]
    Smtp(String),
}

impl Mailer {
    /// A mailer for `url` (`smtp://host:port`, `smtps://…`, with `user:password@` and
    /// `?tls=required` as lettre reads them) sending as `from`.
    pub fn new(url: &str, from: &str) -> anyhow::Result<Self> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| anyhow::anyhow!("smtp_url is not an SMTP URL: {e}"))?
            .timeout(Some(std::time::Duration::from_secs(20)))
            .build();
        let from: Mailbox = from
            .parse()
            .map_err(|e| anyhow::anyhow!("smtp_from {from:?} is not an e-mail address: {e}"))?;
        Ok(Self { transport, from })
    }

    /// Sends a plain-text message.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|_| MailError::Address(to.to_owned()))?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(subject)
            .body(body.to_owned())
            .map_err(|e| MailError::Build(e.to_string()))?;
        self.transport
            .send(message)
            .await
            .map_err(|e| MailError::Smtp(e.to_string()))?;
        Ok(())
    }
}
