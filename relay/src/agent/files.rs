//! File messages in a session (protocol 1.2.0): checked against the session's transfers
//! ([`crate::transfers`]) and the team's policy, logged where the audit trail needs them (before
//! they are forwarded), forwarded as received, or answered with `ToolRefused`.

use bytes::Bytes;
use protocol::{ErrorCode, Message, Refusal, Tool};

use super::{forward, Closed, Conn};
use crate::hub::{lock, SessionLink};
use crate::store::audit::{Action, Actor};
use crate::transfers::{Policy, Side, Verdict};

impl Conn {
    /// One file message `from` a side of `link`'s session, received as `bytes`.
    pub(super) async fn file_use(
        &self,
        link: &SessionLink,
        from: Side,
        msg: &Message,
        bytes: Bytes,
    ) -> Result<(), Closed> {
        let tools = &link.tools;
        let policy = Policy {
            state: tools.file_transfer,
            max_file_bytes: tools.max_file_bytes,
        };
        let verdict = lock(&link.transfers).check(from, msg, policy);
        let (to, budget) = match from {
            Side::Technician => (&link.to_streamer, &link.budget_to_streamer),
            Side::Streamer => (&link.to_technician, &link.budget_to_technician),
        };
        let refusal = match verdict {
            Verdict::Forward => None,
            Verdict::LogAndForward(action, detail) => {
                if self.log_transfer(link, action, &detail).await {
                    None
                } else {
                    Some(Refusal::new(
                        ErrorCode::InternalError,
                        "The relay could not log the file transfer, so it was not sent. Try again.",
                    ))
                }
            }
            Verdict::Refuse(refusal, log) => {
                if let Some((action, detail)) = log {
                    self.log_transfer(link, action, &detail).await;
                }
                Some(refusal)
            }
        };
        match refusal {
            None => {
                forward(link, to, budget, bytes).await;
                Ok(())
            }
            Some(r) => {
                self.send(&Message::ToolRefused {
                    tool: Tool::FileTransfer,
                    code: r.code,
                    message: r.message,
                })
                .await
            }
        }
    }

    /// Writes a transfer's event to the team's audit trail as the session technician's doing;
    /// false when the write failed (logged).
    async fn log_transfer(&self, link: &SessionLink, action: Action, detail: &str) -> bool {
        let tools = &link.tools;
        let actor = Actor::User(tools.technician.0.clone(), tools.technician.1.clone());
        match crate::ops::audit(
            &self.shared,
            Some(&tools.team_id),
            &actor,
            action,
            &link.id,
            detail,
            None,
        )
        .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(error = %e, session = %link.id, "auditing a file transfer");
                false
            }
        }
    }

    /// At the session's end: each transfer it cut off, in the audit trail.
    pub(super) async fn audit_interrupted_transfers(&self, link: &SessionLink) {
        let cut = lock(&link.transfers).interrupted();
        for detail in cut {
            self.log_transfer(link, Action::TransferStopped, &detail)
                .await;
        }
    }
}
