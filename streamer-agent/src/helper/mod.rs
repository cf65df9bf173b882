//! The Windows service's capture helper, and the pipe between them.
//!
//! A service runs in session 0, which has no interactive desktop: it cannot see or drive the screen
//! of the person at the computer. So the service keeps the relay connection, and for each session
//! starts a helper process in the active console session (`windows`), which captures, encodes and
//! injects input there. The two talk over a local pipe carrying the protocol's own frames, bounded
//! and typed as on the relay link ([`PipeLink`]); the service forwards between the relay and the
//! pipe ([`forward`]) and starts the helper again when it is lost or the console session changes.
//!
//! The link and the forwarding are plain code over byte streams, tested here on every platform;
//! the process and pipe handling are `windows`.

use std::future::Future;

use anyhow::{bail, Context, Result};
use bytes::BytesMut;
use protocol::codec::{encode, FrameDecoder};
use protocol::{EndReason, Message};
use relay_client::LinkError;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::agent::{end_text, SessionLink};

#[cfg(windows)]
pub mod sas;
#[cfg(windows)]
pub mod windows;

/// The protocol's frames over a byte stream (a named pipe): each message as on the relay link,
/// header and all, with the same per-kind size limits on the way in.
#[derive(Debug)]
pub struct PipeLink<S> {
    io: S,
    decoder: FrameDecoder,
    out: BytesMut,
    chunk: Box<[u8]>,
}

impl<S> PipeLink<S> {
    /// A link over `io`.
    pub fn new(io: S) -> Self {
        Self {
            io,
            decoder: FrameDecoder::new(),
            out: BytesMut::new(),
            chunk: vec![0; 64 * 1024].into_boxed_slice(),
        }
    }

    /// The byte stream underneath.
    pub fn get_ref(&self) -> &S {
        &self.io
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> SessionLink for PipeLink<S> {
    async fn send(&mut self, msg: &Message) -> Result<()> {
        self.out.clear();
        encode(msg, &mut self.out).context("encoding for the pipe")?;
        self.io
            .write_all(&self.out)
            .await
            .context("writing to the pipe")?;
        self.io.flush().await.context("writing to the pipe")?;
        Ok(())
    }

    async fn recv(&mut self) -> Result<Message> {
        loop {
            if let Some(msg) = self
                .decoder
                .next_message()
                .context("a malformed message on the pipe")?
            {
                return Ok(msg);
            }
            // Cancel-safe: a read either completes and is fed at once, or reads nothing.
            let n = self
                .io
                .read(&mut self.chunk)
                .await
                .context("reading from the pipe")?;
            if n == 0 {
                match self.decoder.buffered() {
                    0 => bail!("the pipe closed"),
                    cut => bail!("the pipe closed in the middle of a message ({cut} bytes)"),
                }
            }
            self.decoder.feed(&self.chunk[..n]);
        }
    }
}

/// How forwarding one helper's part of a session ended.
#[derive(Debug)]
pub enum Forwarded {
    /// The session is over (the relay ended it, or the service is stopping), and why.
    Ended(String),
    /// The helper went away (exited, crashed, or sent something malformed); the session goes on
    /// with a new one.
    HelperLost(anyhow::Error),
    /// `restart` fired (the console session changed): the session goes on with a new helper.
    Restart,
}

/// Forwards between the relay and a helper until the session ends, the helper is lost, or
/// `restart` completes. Errors are the relay link's (the connection is then lost).
///
/// The helper may only send what a streamer may send in a session; anything else is a helper
/// fault. When the service stops, the relay is told the streamer leaves and the helper that the
/// session is over.
///
/// `tools` keeps the session's `SessionTools` across helpers: a helper started after the relay
/// sent it gets it first.
///
/// Ctrl+Alt+Del from the technician ([`is_secure_attention`]) goes to `secure_attention` (the
/// service asks Windows for the secure attention sequence, which no program in the user's session
/// can produce with keys); when that fails, the key goes to the helper as any other, and the
/// desktop's programs see Ctrl+Alt+Del.
pub async fn forward<R: SessionLink, H: SessionLink>(
    relay: &mut R,
    helper: &mut H,
    restart: impl Future<Output = ()>,
    shutdown: &CancellationToken,
    tools: &mut Option<Message>,
    secure_attention: &(dyn Fn() -> Result<()> + Sync),
) -> Result<Forwarded> {
    tokio::pin!(restart);
    if let Some(msg) = tools.as_ref() {
        if let Err(e) = helper.send(msg).await {
            return Ok(Forwarded::HelperLost(e));
        }
    }
    loop {
        tokio::select! {
            msg = relay.recv() => {
                let msg = msg?;
                match &msg {
                    Message::SessionEnded { reason, message } => {
                        let why = end_text(*reason, message);
                        // The helper ends its session and exits; it may already be gone.
                        let _ = helper.send(&msg).await;
                        return Ok(Forwarded::Ended(why));
                    }
                    Message::Refused { code, message } => {
                        let _ = helper.send(&ended(EndReason::StreamerDisconnected)).await;
                        return Err(LinkError::Refused(protocol::Refusal::new(*code, message.clone())).into());
                    }
                    // Which tools the session may use: the helper runs them.
                    Message::SessionTools(_) => {
                        *tools = Some(msg.clone());
                        if let Err(e) = helper.send(&msg).await {
                            return Ok(Forwarded::HelperLost(e));
                        }
                    }
                    Message::ToolRefused { code, message, .. } => {
                        tracing::info!(%code, %message, "clipboard text not forwarded");
                    }
                    Message::KeyInput(key) if is_secure_attention(key) => match secure_attention() {
                        Ok(()) => tracing::info!("Ctrl+Alt+Del: the secure attention sequence was sent"),
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), "Ctrl+Alt+Del: no secure attention sequence; the keys go to the desktop");
                            if let Err(e) = helper.send(&msg).await {
                                return Ok(Forwarded::HelperLost(e));
                            }
                        }
                    },
                    _ if msg.kind().is_session_traffic() => {
                        if let Err(e) = helper.send(&msg).await {
                            return Ok(Forwarded::HelperLost(e));
                        }
                    }
                    // Not for the helper (a device list, say): the service has no use for it either.
                    _ => {}
                }
            }
            msg = helper.recv() => match msg {
                Ok(msg) if msg.kind().is_session_traffic()
                    && msg.kind().may_be_sent_by(protocol::codec::Sender::Streamer) =>
                {
                    relay.send(&msg).await?;
                }
                Ok(msg) => {
                    return Ok(Forwarded::HelperLost(anyhow::anyhow!(
                        "the helper sent {}, which a streamer does not send in a session",
                        msg.kind().name()
                    )))
                }
                Err(e) => return Ok(Forwarded::HelperLost(e)),
            },
            () = &mut restart => return Ok(Forwarded::Restart),
            () = shutdown.cancelled() => {
                let _ = relay.send(&Message::LeaveSession).await;
                let _ = helper.send(&ended(EndReason::StreamerDisconnected)).await;
                return Ok(Forwarded::Ended("The streamer service is stopping.".into()));
            }
        }
    }
}

/// After the session's end went to the helper: reads and drops what the helper still sends until
/// it closes its end of the pipe (its session is over), for at most `within`. Closing the pipe at
/// once would fail the write of a frame the helper was sending as the end arrived, and the helper
/// would stop with a pipe error instead of ending its session. Whether it closed in time.
pub async fn let_helper_finish<H: SessionLink>(
    helper: &mut H,
    within: std::time::Duration,
) -> bool {
    tokio::time::timeout(within, async { while helper.recv().await.is_ok() {} })
        .await
        .is_ok()
}

/// Whether `key` completes Ctrl+Alt+Del: Delete (or the keypad's) going down with Control and
/// Alt held, and neither Shift nor the Windows key (Ctrl+Alt+Shift+Del is another shortcut).
pub fn is_secure_attention(key: &protocol::KeyInput) -> bool {
    use protocol::Modifiers;
    let held = key.modifiers.0
        & (Modifiers::CONTROL | Modifiers::ALT | Modifiers::SHIFT | Modifiers::META);
    key.down
        && matches!(key.code.as_str(), "Delete" | "NumpadDecimal")
        && held == Modifiers::CONTROL | Modifiers::ALT
}

fn ended(reason: EndReason) -> Message {
    Message::SessionEnded {
        reason,
        message: String::new(),
    }
}

/// The helper's side: the service sends the session's offer first, then the session runs over the
/// pipe as it would over the relay connection. Returns why it ended.
pub async fn serve_helper<L: SessionLink>(
    link: &mut L,
    platform: &dyn crate::agent::Platform,
    frame_rate: u16,
    files: &crate::agent::SessionFiles,
) -> Result<String> {
    let (view, technician) = match link.recv().await? {
        Message::SessionOffer {
            view, technician, ..
        } => (view, technician),
        other => bail!(
            "the service sent {} before the session's offer",
            other.kind().name()
        ),
    };
    // The service ends the session (it forwards the relay's end); the helper has no one to ask.
    let never = CancellationToken::new();
    // An unattended session: the technician's chat lines go to the helper's log only.
    let chat = crate::agent::Chat::default();
    crate::agent::session(
        link,
        platform,
        frame_rate,
        view,
        files,
        (&chat, &technician),
        &never,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol::codec::encode_to_bytes;
    use protocol::{KeyInput, Modifiers};
    use tokio::io::DuplexStream;

    fn key(code: &str) -> Message {
        Message::KeyInput(KeyInput {
            code: code.into(),
            down: true,
            modifiers: Modifiers::default(),
        })
    }

    fn pair() -> (PipeLink<DuplexStream>, PipeLink<DuplexStream>) {
        let (a, b) = tokio::io::duplex(1 << 20);
        (PipeLink::new(a), PipeLink::new(b))
    }

    #[tokio::test]
    async fn messages_cross_the_pipe_whole_in_order() {
        let (mut a, mut b) = pair();
        let sent = [
            key("KeyA"),
            Message::KeyframeRequest,
            Message::TextInput {
                text: "été".into()
            },
        ];
        for m in &sent {
            a.send(m).await.unwrap();
        }
        for m in &sent {
            assert_eq!(&b.recv().await.unwrap(), m);
        }
    }

    #[tokio::test]
    async fn frames_split_at_any_byte_arrive_whole() {
        let msg = Message::TextInput {
            text: "split me".into(),
        };
        let bytes = encode_to_bytes(&msg).unwrap();
        for cut in 1..bytes.len() {
            let (mut raw, other) = tokio::io::duplex(1 << 16);
            let mut link = PipeLink::new(other);
            raw.write_all(&bytes[..cut]).await.unwrap();
            raw.flush().await.unwrap();
            let reading = tokio::spawn(async move { link.recv().await.map(|m| (m, link)) });
            tokio::task::yield_now().await;
            raw.write_all(&bytes[cut..]).await.unwrap();
            let (got, _link) = reading.await.unwrap().unwrap();
            assert_eq!(got, msg, "cut at {cut}");
        }
    }

    #[tokio::test]
    async fn an_oversized_or_unknown_frame_is_refused_before_its_body() {
        // A text input claiming a 16 MiB body: refused on the header alone.
        let (mut raw, other) = tokio::io::duplex(1 << 16);
        let mut link = PipeLink::new(other);
        let mut header = encode_to_bytes(&Message::TextInput { text: "x".into() })
            .unwrap()
            .to_vec();
        header.truncate(1);
        header.extend_from_slice(&(16u32 << 20).to_be_bytes());
        raw.write_all(&header).await.unwrap();
        let err = format!("{:#}", link.recv().await.unwrap_err());
        assert!(
            err.contains("malformed") && err.contains("exceeds the limit"),
            "{err}"
        );

        let (mut raw, other) = tokio::io::duplex(1 << 16);
        let mut link = PipeLink::new(other);
        raw.write_all(&[0xff, 0, 0, 0, 0]).await.unwrap();
        let err = format!("{:#}", link.recv().await.unwrap_err());
        assert!(err.contains("malformed"), "{err}");
    }

    #[tokio::test]
    async fn a_pipe_closed_mid_frame_says_so() {
        let bytes = encode_to_bytes(&key("KeyB")).unwrap();
        let (mut raw, other) = tokio::io::duplex(1 << 16);
        let mut link = PipeLink::new(other);
        raw.write_all(&bytes[..bytes.len() - 2]).await.unwrap();
        drop(raw);
        let err = format!("{:#}", link.recv().await.unwrap_err());
        assert!(err.contains("middle of a message"), "{err}");

        let (raw, other) = tokio::io::duplex(16);
        let mut link = PipeLink::new(other);
        drop(raw);
        let err = format!("{:#}", link.recv().await.unwrap_err());
        assert_eq!(err, "the pipe closed");
    }

    /// The relay's side and the helper's side of [`forward`], each a pipe link to the test.
    struct Ends {
        relay: PipeLink<DuplexStream>,
        helper: PipeLink<DuplexStream>,
    }

    /// A secure attention sequence that cannot be had (as on every platform but Windows).
    fn no_sas() -> Result<()> {
        bail!("no secure attention sequence here")
    }

    fn forwarding(
        restart: impl Future<Output = ()> + Send + 'static,
        shutdown: CancellationToken,
    ) -> (Ends, tokio::task::JoinHandle<Result<Forwarded>>) {
        forwarding_with(restart, shutdown, no_sas)
    }

    fn forwarding_with(
        restart: impl Future<Output = ()> + Send + 'static,
        shutdown: CancellationToken,
        sas: impl Fn() -> Result<()> + Send + Sync + 'static,
    ) -> (Ends, tokio::task::JoinHandle<Result<Forwarded>>) {
        let (relay_end, relay) = pair();
        let (helper_end, helper) = pair();
        let task = tokio::spawn(async move {
            let (mut relay, mut helper) = (relay, helper);
            let mut tools = None;
            let out = forward(
                &mut relay,
                &mut helper,
                restart,
                &shutdown,
                &mut tools,
                &sas,
            )
            .await;
            drop((relay, helper));
            out
        });
        (
            Ends {
                relay: relay_end,
                helper: helper_end,
            },
            task,
        )
    }

    #[tokio::test]
    async fn the_sessions_tools_reach_the_helper_and_a_later_helper_gets_them_first() {
        let tools = Message::SessionTools(vec![protocol::ToolGrant {
            tool: protocol::Tool::Clipboard,
            state: protocol::ToolState::Allowed,
        }]);
        let (mut relay_end, mut relay) = pair();
        let (mut helper_end, mut helper) = pair();
        let mut kept = None;
        let first = tokio::spawn(async move {
            let out = forward(
                &mut relay,
                &mut helper,
                std::future::pending(),
                &CancellationToken::new(),
                &mut kept,
                &no_sas,
            )
            .await;
            (relay, kept, out)
        });
        relay_end.send(&tools).await.unwrap();
        assert_eq!(helper_end.recv().await.unwrap(), tools);
        // The helper goes away; the next one starts with the tools before anything else.
        drop(helper_end);
        let (mut relay, mut kept, out) = first.await.unwrap();
        assert!(matches!(out.unwrap(), Forwarded::HelperLost(_)));
        assert_eq!(kept.as_ref(), Some(&tools));
        let (mut helper_end, mut helper) = pair();
        let second = tokio::spawn(async move {
            forward(
                &mut relay,
                &mut helper,
                async {},
                &CancellationToken::new(),
                &mut kept,
                &no_sas,
            )
            .await
        });
        assert_eq!(helper_end.recv().await.unwrap(), tools);
        assert!(matches!(second.await.unwrap().unwrap(), Forwarded::Restart));
        drop(relay_end);
    }

    fn held(code: &str, down: bool, modifiers: u8) -> Message {
        Message::KeyInput(KeyInput {
            code: code.into(),
            down,
            modifiers: Modifiers(modifiers),
        })
    }

    #[test]
    fn ctrl_alt_del_is_delete_going_down_with_control_and_alt_only() {
        let (c, a, s, m) = (
            Modifiers::CONTROL,
            Modifiers::ALT,
            Modifiers::SHIFT,
            Modifiers::META,
        );
        let sas = |code: &str, down: bool, mods: u8| match held(code, down, mods) {
            Message::KeyInput(k) => is_secure_attention(&k),
            _ => unreachable!(),
        };
        assert!(sas("Delete", true, c | a));
        assert!(sas("NumpadDecimal", true, c | a));
        assert!(!sas("Delete", false, c | a), "its release");
        assert!(!sas("Delete", true, c), "Ctrl+Del");
        assert!(!sas("Delete", true, a), "Alt+Del");
        assert!(!sas("Delete", true, c | a | s), "Ctrl+Alt+Shift+Del");
        assert!(!sas("Delete", true, c | a | m));
        assert!(!sas("Backspace", true, c | a));
    }

    #[tokio::test]
    async fn ctrl_alt_del_goes_to_the_secure_attention_sequence_and_to_the_desktop_when_it_fails() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let both = Modifiers::CONTROL | Modifiers::ALT;
        for works in [true, false] {
            let asked = Arc::new(AtomicUsize::new(0));
            let counter = Arc::clone(&asked);
            let (mut ends, task) = forwarding_with(
                std::future::pending(),
                CancellationToken::new(),
                move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    if works {
                        Ok(())
                    } else {
                        bail!("the policy does not allow it")
                    }
                },
            );
            let keys = [
                held("ControlLeft", true, Modifiers::CONTROL),
                held("AltLeft", true, both),
                held("Delete", true, both),
                held("Delete", false, both),
                held("AltLeft", false, Modifiers::CONTROL),
                held("ControlLeft", false, 0),
            ];
            for k in &keys {
                ends.relay.send(k).await.unwrap();
            }
            let mut reached = Vec::new();
            while reached.len() < keys.len() - usize::from(works) {
                reached.push(ends.helper.recv().await.unwrap());
            }
            let expected: Vec<Message> = keys
                .iter()
                .filter(|k| !works || **k != keys[2])
                .cloned()
                .collect();
            assert_eq!(reached, expected, "sequence sent: {works}");
            assert_eq!(asked.load(Ordering::SeqCst), 1);
            drop(ends);
            assert!(task.await.is_ok());
        }
    }

    #[tokio::test]
    async fn the_service_forwards_both_ways_and_the_relays_end_reaches_the_helper() {
        let (mut ends, task) = forwarding(std::future::pending(), CancellationToken::new());
        ends.relay.send(&key("KeyC")).await.unwrap();
        assert_eq!(ends.helper.recv().await.unwrap(), key("KeyC"));
        // Not session traffic: not the helper's business.
        ends.relay.send(&Message::ListDevices).await.unwrap();
        ends.helper
            .send(&Message::AudioUnavailable {
                reason: "none".into(),
            })
            .await
            .unwrap();
        assert!(matches!(
            ends.relay.recv().await.unwrap(),
            Message::AudioUnavailable { .. }
        ));
        let end = Message::SessionEnded {
            reason: EndReason::TechnicianLeft,
            message: "The technician left.".into(),
        };
        ends.relay.send(&end).await.unwrap();
        assert_eq!(ends.helper.recv().await.unwrap(), end);
        match task.await.unwrap().unwrap() {
            Forwarded::Ended(why) => assert_eq!(why, "The technician left."),
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_helper_that_exits_or_misbehaves_is_lost_not_the_session() {
        let (ends, task) = forwarding(std::future::pending(), CancellationToken::new());
        drop(ends.helper);
        match task.await.unwrap().unwrap() {
            Forwarded::HelperLost(e) => assert_eq!(format!("{e:#}"), "the pipe closed"),
            other => panic!("{other:?}"),
        }
        // A technician's message from the helper is a fault, and is not passed on.
        let (mut ends, task) = forwarding(std::future::pending(), CancellationToken::new());
        ends.helper.send(&Message::KeyframeRequest).await.unwrap();
        match task.await.unwrap().unwrap() {
            Forwarded::HelperLost(e) => {
                assert!(format!("{e}").contains("KeyframeRequest"), "{e}")
            }
            other => panic!("{other:?}"),
        }
        let err = ends.relay.recv().await.unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            "the pipe closed",
            "nothing was forwarded"
        );
    }

    #[tokio::test]
    async fn a_console_change_restarts_and_a_stop_ends_with_a_goodbye() {
        let (_ends, task) = forwarding(async {}, CancellationToken::new());
        assert!(matches!(task.await.unwrap().unwrap(), Forwarded::Restart));

        let stop = CancellationToken::new();
        let (mut ends, task) = forwarding(std::future::pending(), stop.clone());
        stop.cancel();
        assert_eq!(ends.relay.recv().await.unwrap(), Message::LeaveSession);
        assert!(matches!(
            ends.helper.recv().await.unwrap(),
            Message::SessionEnded { .. }
        ));
        assert!(matches!(task.await.unwrap().unwrap(), Forwarded::Ended(_)));
    }

    #[tokio::test]
    async fn after_the_end_the_service_reads_what_the_helper_still_sends_until_it_closes() {
        let (mut service, mut helper) = pair();
        // The helper was sending frames as the end arrived; it sends one more, then ends.
        let frames = tokio::spawn(async move {
            for _ in 0..3 {
                helper
                    .send(&Message::AudioUnavailable {
                        reason: "late".into(),
                    })
                    .await
                    .unwrap();
            }
            drop(helper);
        });
        assert!(let_helper_finish(&mut service, std::time::Duration::from_secs(10)).await);
        frames.await.unwrap();
        // A helper that never closes its end is waited for no longer than asked.
        let (mut service, _helper) = pair();
        assert!(!let_helper_finish(&mut service, std::time::Duration::from_millis(50)).await);
    }

    /// A platform never reached.
    struct NoPlatform;

    impl crate::agent::Platform for NoPlatform {
        fn screen(&self) -> Result<Box<dyn crate::capture::ScreenSource>> {
            bail!("no screen in this test")
        }
        fn input(&self) -> Result<Box<dyn crate::input::InputSink>> {
            bail!("no input in this test")
        }
    }

    #[tokio::test]
    async fn the_helper_wants_the_offer_first() {
        let (mut service, mut helper) = pair();
        service.send(&key("KeyD")).await.unwrap();
        let platform = NoPlatform;
        let err = serve_helper(&mut helper, &platform, 30, &Default::default())
            .await
            .unwrap_err();
        assert!(
            format!("{err}").contains("before the session's offer"),
            "{err}"
        );
    }
}
