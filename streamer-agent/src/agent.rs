//! The streamer's connection to the relay: sign in (device credential, deployment code, or attended),
//! wait for session offers, stream while a session runs, inject input, and reconnect after any loss.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::mpsc as std_mpsc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use protocol::{Credential, EndReason, ErrorCode, Message, ProductVersion, Role};
use relay_client::{Connection, Connector, LinkError};
use tokio_util::sync::CancellationToken;

use crate::capture::ScreenSource;
use crate::input::InputSink;
use crate::stream::{self, CurrentMonitor, StreamCommand};

/// How the streamer signs in.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Runs permanently for the team; registers once with a deployment code.
    Unattended {
        /// Where the device credential is kept (readable by this user only).
        credential_file: PathBuf,
        /// The deployment code, needed only until the device is registered.
        deployment_code: Option<String>,
    },
    /// Runs on demand; the relay issues a session code for the end user to read out.
    Attended {
        /// The team's attended-access key.
        team_key: String,
    },
}

/// Settings of a running streamer.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The relay, `host:port`.
    pub relay: String,
    /// The CA certificate that the relay's certificate chains to.
    pub ca_file: PathBuf,
    /// Attended or unattended.
    pub mode: Mode,
    /// The computer's name as technicians see it.
    pub device_name: String,
    /// The X display to capture (`$DISPLAY` when `None`).
    pub display: Option<String>,
    /// Frame rate until the technician chooses one.
    pub frame_rate: u16,
    /// The version to announce in the handshake instead of this build's own (`None`: this
    /// build's). For support staff reproducing the recording gate's refusal, and for tests; the
    /// relay treats it like any version.
    pub announced_version: Option<ProductVersion>,
    /// Where files the technician sends are written (`None`: the user's Downloads folder,
    /// [`default_downloads`]).
    pub downloads: Option<PathBuf>,
    /// The chat lines the end user types (the terminal, the window), sent to the technician while
    /// a session allows chat; `None`: this streamer's user has nowhere to type them.
    pub chat_input: Option<ChatInput>,
}

/// The chat lines the end user types, one `String` a line, shared by every session of a run.
#[derive(Clone)]
pub struct ChatInput(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<String>>>);

impl ChatInput {
    /// A chat input and where the end user's lines go in (a bounded queue: a full one makes the
    /// typing side wait).
    pub fn new() -> (tokio::sync::mpsc::Sender<String>, Self) {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        (tx, Self(Arc::new(tokio::sync::Mutex::new(rx))))
    }
}

impl std::fmt::Debug for ChatInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ChatInput")
    }
}

/// A session's chat with the end user: where the technician's lines are shown and where the end
/// user's come from. The default shows lines in the log only and sends none (the Windows
/// service's helper, whose session has no one at a terminal).
#[derive(Debug, Clone, Default)]
pub struct Chat {
    /// Where the technician's lines go, as [`Notice::Chat`].
    pub shown: Option<tokio::sync::mpsc::UnboundedSender<Notice>>,
    /// The end user's lines.
    pub typed: Option<ChatInput>,
}

/// The user's Downloads folder: the platform's (XDG `XDG_DOWNLOAD_DIR` on Linux, the Downloads
/// known folder on Windows, `~/Downloads` on macOS), else `Downloads` in the home folder, else in
/// the working folder.
pub fn default_downloads() -> PathBuf {
    dirs::download_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join("Downloads")))
        .unwrap_or_else(|| PathBuf::from("Downloads"))
}

/// What the streamer tells its user, as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Connected and signed in.
    Connected,
    /// The session code to read to the technician, with seconds until it expires.
    SessionCode(String, u32),
    /// A session started; whether the team's policy records it.
    SessionStarted {
        /// The technician's name.
        technician: String,
        /// Recorded by policy.
        recorded: bool,
    },
    /// The session ended, and why.
    SessionEnded(String),
    /// The connection was lost; retrying in this many seconds.
    Reconnecting(u64, String),
    /// A line of chat in the session: who wrote it (the technician's name, or `None` for the end
    /// user's own line, shown back once sent) and the line.
    Chat(Option<String>, String),
    /// Whether the end user can write to the technician now (the session allows chat).
    ChatOpen(bool),
}

impl Notice {
    /// What the end user reads on a terminal; `None` for a notice a terminal does not show.
    pub fn words(&self) -> Option<String> {
        Some(match self {
            Notice::Connected => "Connected to the relay.".to_owned(),
            Notice::SessionCode(code, ttl) => {
                let at = |n: usize| n.min(code.len());
                format!(
                    "Your session code is {} {} {}. Read it to your technician (valid {} minutes).",
                    &code[..at(3)],
                    &code[at(3)..at(6)],
                    &code[at(6)..],
                    ttl / 60
                )
            }
            Notice::SessionStarted {
                technician,
                recorded,
            } => format!(
                "{technician} is now connected to this computer.{}",
                if *recorded {
                    " This session is being recorded by your team's policy."
                } else {
                    ""
                }
            ),
            Notice::SessionEnded(why) => format!("The session ended: {why}"),
            Notice::Reconnecting(secs, why) => {
                format!("Connection lost ({why}); trying again in {secs} s.")
            }
            Notice::Chat(Some(technician), line) => format!("{technician}: {line}"),
            Notice::Chat(None, line) => format!("You: {line}"),
            Notice::ChatOpen(true) => {
                "Type a line and press Enter to write to the technician.".to_owned()
            }
            Notice::ChatOpen(false) => return None,
        })
    }
}

/// The device credential kept on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
struct DeviceCredential {
    device_id: String,
    secret: String,
}

fn read_credential(path: &Path) -> Result<Option<DeviceCredential>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut lines = text.lines();
    match (lines.next(), lines.next()) {
        (Some(id), Some(secret)) if !id.is_empty() && !secret.is_empty() => {
            Ok(Some(DeviceCredential {
                device_id: id.to_owned(),
                secret: secret.to_owned(),
            }))
        }
        _ => bail!(
            "{} is not a device credential (two lines: id, secret)",
            path.display()
        ),
    }
}

/// Writes the credential readable by this user only, replacing any older one atomically.
fn write_credential(path: &Path, c: &DeviceCredential) -> Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    writeln!(f, "{}\n{}", c.device_id, c.secret)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The platform's screen and input backends.
pub trait Platform: Send + Sync {
    /// A screen source for one session.
    fn screen(&self) -> Result<Box<dyn ScreenSource>>;
    /// An input sink for one session.
    fn input(&self) -> Result<Box<dyn InputSink>>;
    /// The clipboard, for a session that may use it; other programs' new text goes to `changes`.
    fn clipboard(
        &self,
        changes: crate::clipboard::Changes,
    ) -> Result<Box<dyn crate::clipboard::Clipboard>> {
        let _ = changes;
        anyhow::bail!("this platform has no clipboard backend")
    }
    /// Where this platform keeps the streamer's own data (credential, settings, logs), which a
    /// technician's file request never reads, beside the credential file a run names.
    fn own_data(&self) -> Vec<PathBuf> {
        Vec::new()
    }
}

/// X11 on Linux.
#[cfg(target_os = "linux")]
#[derive(Debug, Clone)]
pub struct X11Platform {
    /// The display, or `$DISPLAY`.
    pub display: Option<String>,
}

#[cfg(target_os = "linux")]
impl Platform for X11Platform {
    fn screen(&self) -> Result<Box<dyn ScreenSource>> {
        Ok(Box::new(crate::capture::x11::X11Source::connect(
            self.display.as_deref(),
        )?))
    }

    fn input(&self) -> Result<Box<dyn InputSink>> {
        Ok(Box::new(crate::input::x11::X11Input::connect(
            self.display.as_deref(),
        )?))
    }

    fn clipboard(
        &self,
        changes: crate::clipboard::Changes,
    ) -> Result<Box<dyn crate::clipboard::Clipboard>> {
        Ok(Box::new(crate::clipboard::x11::X11Clipboard::connect(
            self.display.as_deref(),
            changes,
        )?))
    }
}

/// Windows: DXGI Desktop Duplication, or GDI where duplication is unavailable; `SendInput`.
#[cfg(windows)]
#[derive(Debug, Clone, Default)]
pub struct WindowsPlatform;

#[cfg(windows)]
impl Platform for WindowsPlatform {
    fn screen(&self) -> Result<Box<dyn ScreenSource>> {
        match crate::capture::dxgi::DxgiSource::open() {
            Ok(dxgi) => Ok(Box::new(dxgi)),
            Err(why) => {
                tracing::info!(%why, "desktop duplication unavailable; capturing with GDI");
                Ok(Box::new(crate::capture::gdi::GdiSource::open()?))
            }
        }
    }

    fn input(&self) -> Result<Box<dyn InputSink>> {
        Ok(Box::new(crate::input::sendinput::SendInputSink::new()))
    }

    /// The service's data folder: the credential, the logs and what the installer put there.
    fn own_data(&self) -> Vec<PathBuf> {
        vec![crate::service::data_dir()]
    }

    fn clipboard(
        &self,
        changes: crate::clipboard::Changes,
    ) -> Result<Box<dyn crate::clipboard::Clipboard>> {
        Ok(Box::new(crate::clipboard::win32::Win32Clipboard::start(
            changes,
        )?))
    }
}

/// A typed message link that a session runs over: the relay connection itself, or (for the
/// Windows service's capture helper) the pipe to the service. Both carry the protocol's frames.
pub trait SessionLink: Send {
    /// Sends one message.
    fn send(&mut self, msg: &Message) -> impl Future<Output = Result<()>> + Send;
    /// The next message. Cancel-safe: dropping the future loses nothing.
    fn recv(&mut self) -> impl Future<Output = Result<Message>> + Send;
}

impl SessionLink for Connection {
    async fn send(&mut self, msg: &Message) -> Result<()> {
        Ok(Connection::send(self, msg).await?)
    }

    async fn recv(&mut self) -> Result<Message> {
        Ok(Connection::recv(self).await?)
    }
}

/// A session being run by a [`SessionHost`]: it ends with why, in words.
pub type SessionFuture<'a> = Pin<Box<dyn Future<Output = Result<String>> + Send + 'a>>;

/// Where an accepted session's capture and input run.
pub trait SessionHost: Send + Sync {
    /// Runs the session `offer` (a [`Message::SessionOffer`], already accepted) over `conn` until it
    /// ends; returns why it ended, in words for the end user or the log.
    fn session<'a>(
        &'a self,
        conn: &'a mut Connection,
        offer: Message,
        shutdown: &'a CancellationToken,
    ) -> SessionFuture<'a>;
}

/// Sessions captured and controlled by this process, on `platform`.
#[derive(Clone)]
pub struct InProcess {
    /// The screen and input backends.
    pub platform: Arc<dyn Platform>,
    /// Frame rate until the technician chooses one.
    pub frame_rate: u16,
    /// Where files go, what is never sent, and whose rights file calls run with.
    pub files: SessionFiles,
    /// The chat with the end user.
    pub chat: Chat,
}

/// A session's file transfers: where the files the technician sends go, what is never sent when
/// asked, and whose rights every file call runs with.
#[derive(Debug, Clone, Default)]
pub struct SessionFiles {
    /// Where files the technician sends are written.
    pub downloads: PathBuf,
    /// The streamer's own files that a technician's request never reads (the device credential),
    /// beside the platform's [`Platform::own_data`].
    pub own_data: Vec<PathBuf>,
    /// Whose rights the file calls run with: this process's, or (the Windows helper, which runs
    /// as SYSTEM) the signed-in user's.
    pub rights: relay_client::files::FileRights,
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InProcess")
            .field("frame_rate", &self.frame_rate)
            .finish_non_exhaustive()
    }
}

impl SessionHost for InProcess {
    fn session<'a>(
        &'a self,
        conn: &'a mut Connection,
        offer: Message,
        shutdown: &'a CancellationToken,
    ) -> SessionFuture<'a> {
        let (view, technician) = match offer {
            Message::SessionOffer {
                view, technician, ..
            } => (view, technician),
            _ => (protocol::ViewRequest::default(), String::new()),
        };
        Box::pin(async move {
            session(
                conn,
                self.platform.as_ref(),
                self.frame_rate,
                view,
                &self.files,
                (&self.chat, &technician),
                shutdown,
            )
            .await
        })
    }
}

/// This computer's platform: X11 on Linux (`display`, or `$DISPLAY`), Windows on Windows.
pub fn native_platform(display: Option<String>) -> Result<std::sync::Arc<dyn Platform>> {
    #[cfg(target_os = "linux")]
    return Ok(std::sync::Arc::new(X11Platform { display }));
    #[cfg(windows)]
    {
        let _ = display;
        crate::capture::gdi::make_dpi_aware();
        Ok(std::sync::Arc::new(WindowsPlatform))
    }
    #[cfg(not(any(target_os = "linux", windows)))]
    {
        let _ = display;
        bail!("this streamer has no screen capture for this operating system yet")
    }
}

/// Runs the streamer until `shutdown`: connects, serves sessions, and reconnects after any loss with
/// a backoff from 1 to 30 seconds. Refusals that retrying cannot fix (a revoked device, a used-up
/// deployment code) end it with an error.
pub async fn run(
    config: AgentConfig,
    platform: Arc<dyn Platform>,
    notices: tokio::sync::mpsc::UnboundedSender<Notice>,
    shutdown: CancellationToken,
) -> Result<()> {
    let host = InProcess {
        platform,
        frame_rate: config.frame_rate,
        files: SessionFiles {
            downloads: config.downloads.clone().unwrap_or_else(default_downloads),
            own_data: match &config.mode {
                Mode::Unattended {
                    credential_file, ..
                } => vec![credential_file.clone()],
                Mode::Attended { .. } => Vec::new(),
            },
            rights: relay_client::files::FileRights::this_process(),
        },
        chat: Chat {
            shown: Some(notices.clone()),
            typed: config.chat_input.clone(),
        },
    };
    run_hosted(config, &host, notices, shutdown).await
}

/// [`run`], with sessions run by `host` (the Windows service's capture helper, say).
pub async fn run_hosted(
    config: AgentConfig,
    host: &dyn SessionHost,
    notices: tokio::sync::mpsc::UnboundedSender<Notice>,
    shutdown: CancellationToken,
) -> Result<()> {
    let own = ProductVersion::this_build()?;
    let version = config.announced_version.unwrap_or(own);
    if version != own {
        tracing::warn!("announcing version {version} to the relay instead of this build's {own}");
    }
    let connector = Connector::trusting_ca_file(&config.ca_file)?;
    let mut backoff = Duration::from_secs(1);
    loop {
        let attempt = async {
            let mut conn = connector.connect(&config.relay).await?;
            let credential = credential(&config)?;
            let deployment_code_used = matches!(credential, Credential::DeploymentCode { .. });
            let est = conn.handshake(Role::Streamer, version, credential).await?;
            if let (
                Some((device_id, secret)),
                Mode::Unattended {
                    credential_file, ..
                },
            ) = (&est.registered, &config.mode)
            {
                write_credential(
                    credential_file,
                    &DeviceCredential {
                        device_id: device_id.clone(),
                        secret: secret.clone(),
                    },
                )?;
                if deployment_code_used {
                    tracing::info!(
                        device = %device_id,
                        credential = %credential_file.display(),
                        "registered with the relay as a new device of the team; its credential is kept"
                    );
                }
            }
            tracing::info!(relay = %config.relay, protocol = %est.protocol_version, "connected to the relay");
            let _ = notices.send(Notice::Connected);
            if let Some((code, ttl)) = est.session_code {
                let _ = notices.send(Notice::SessionCode(code, ttl));
            }
            Ok::<_, anyhow::Error>(conn)
        };
        // Connecting is abandoned on shutdown; serving handles shutdown itself, so that a session
        // in progress is ended with a goodbye rather than dropped.
        let connected = tokio::select! {
            r = attempt => r,
            _ = shutdown.cancelled() => return Ok(()),
        };
        let result = match connected {
            Ok(mut conn) => serve(&mut conn, &config, host, &notices, &shutdown).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(()) if shutdown.is_cancelled() => return Ok(()),
            // The attended session is over and its code used (codes are single-use): connect
            // again at once for a new code, so that the end user can get help again without
            // starting the program again (its window or Ctrl-C ends it).
            Ok(()) if matches!(config.mode, Mode::Attended { .. }) => {
                backoff = Duration::from_secs(1);
                continue;
            }
            Ok(()) => backoff = Duration::from_secs(1),
            Err(e) => {
                if let Some(LinkError::Refused(r)) = e.downcast_ref::<LinkError>() {
                    if matches!(
                        r.code,
                        ErrorCode::CredentialRevoked | ErrorCode::CredentialNotAllowed
                    ) {
                        return Err(e).context("the relay will not accept this device");
                    }
                    if r.code == ErrorCode::ConnectedElsewhere {
                        // Another connection used this computer's credential. Connecting again
                        // with the secret this streamer holds settles it: the relay takes it if it
                        // is still this computer's, and revokes the device if a copy renewed it.
                        tracing::warn!(
                            "another connection signed in as this computer and replaced this one; connecting again"
                        );
                        let _ = notices.send(Notice::Reconnecting(
                            backoff.as_secs(),
                            "another connection signed in to the relay as this computer; if that was not this computer, the relay revokes the copy at this reconnection".into(),
                        ));
                        backoff = Duration::from_secs(1);
                        tokio::select! {
                            _ = tokio::time::sleep(backoff) => {}
                            _ = shutdown.cancelled() => return Ok(()),
                        }
                        continue;
                    }
                }
                let _ = notices.send(Notice::Reconnecting(backoff.as_secs(), format!("{e:#}")));
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return Ok(()),
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn credential(config: &AgentConfig) -> Result<Credential> {
    Ok(match &config.mode {
        Mode::Attended { team_key } => Credential::Attended {
            team_key: team_key.clone(),
            device_name: config.device_name.clone(),
        },
        Mode::Unattended {
            credential_file,
            deployment_code,
        } => match read_credential(credential_file)? {
            Some(c) => Credential::Device {
                device_id: c.device_id,
                secret: c.secret,
            },
            None => match deployment_code {
                Some(code) => Credential::DeploymentCode {
                    code: code.clone(),
                    device_name: config.device_name.clone(),
                },
                None => bail!(
                    "no device credential in {} and no deployment code to register with",
                    credential_file.display()
                ),
            },
        },
    })
}

/// Serves one connection until it closes. Returns `Ok` when the relay ended an attended session or
/// the streamer is shutting down.
async fn serve(
    conn: &mut Connection,
    config: &AgentConfig,
    host: &dyn SessionHost,
    notices: &tokio::sync::mpsc::UnboundedSender<Notice>,
    shutdown: &CancellationToken,
) -> Result<()> {
    loop {
        let msg = tokio::select! {
            m = conn.recv() => m?,
            _ = shutdown.cancelled() => return Ok(()),
        };
        match msg {
            Message::SessionOffer {
                session_id,
                technician,
                access,
                recorded,
                view,
            } => {
                conn.send(&Message::SessionAccept {
                    session_id: session_id.clone(),
                })
                .await?;
                let _ = notices.send(Notice::SessionStarted {
                    technician: technician.clone(),
                    recorded,
                });
                let offer = Message::SessionOffer {
                    session_id,
                    technician,
                    access,
                    recorded,
                    view,
                };
                let ended = host.session(conn, offer, shutdown).await?;
                let _ = notices.send(Notice::SessionEnded(ended));
                if matches!(config.mode, Mode::Attended { .. }) {
                    return Ok(());
                }
            }
            Message::Refused { code, message } => {
                return Err(LinkError::Refused(protocol::Refusal::new(code, message)).into())
            }
            // Nothing else is expected between sessions; ignore it rather than fail.
            _ => {}
        }
    }
}

/// One session over `conn`: stream and take input until it ends. Returns why it ended.
pub async fn session<L: SessionLink>(
    conn: &mut L,
    platform: &dyn Platform,
    frame_rate: u16,
    view: protocol::ViewRequest,
    files_at: &SessionFiles,
    (chat, technician): (&Chat, &str),
    shutdown: &CancellationToken,
) -> Result<String> {
    let source = platform.screen()?;
    let mut input = platform.input()?;
    let (commands, command_rx) = std_mpsc::channel();
    // A few frames in flight at most: when the network is slow, capture waits.
    let (frames_tx, mut frames) = tokio::sync::mpsc::channel(4);
    let current: CurrentMonitor = Default::default();
    let capture_current = current.clone();
    let capture = std::thread::spawn(move || {
        stream::run(
            source,
            command_rx,
            frames_tx,
            capture_current,
            view,
            frame_rate,
        )
    });
    // Live audio on a queue of its own, so that it never waits behind video.
    let (audio_tx, mut audio) = tokio::sync::mpsc::channel(16);
    let _live_audio = match crate::audio::start(audio_tx) {
        Ok(live) => Some(live),
        Err(reason) => {
            tracing::info!(%reason, "no live audio in this session");
            conn.send(&Message::AudioUnavailable { reason }).await?;
            None
        }
    };
    // The clipboard starts only when the relay says this session may use it.
    let (clip_tx, mut clip_changes) = tokio::sync::mpsc::channel::<String>(4);
    let mut clipboard: Option<Box<dyn crate::clipboard::Clipboard>> = None;
    // Files both ways once the relay allows them: what the technician sends goes into Downloads,
    // what it asks for is read from where it says. The relay enforces the team's size limit.
    let (mut files, mut files_ready) =
        relay_client::files::Endpoint::new(&files_at.downloads, u64::MAX);
    // Whoever asks (any member of the team) is not trusted with the streamer's own data: its
    // device credential would let them pose as this computer.
    files.protect(
        platform
            .own_data()
            .into_iter()
            .chain(files_at.own_data.iter().cloned())
            .collect(),
    );
    files.act_as(files_at.rights.clone());
    let mut files_allowed = false;
    // The end user's lines are read only while this session may carry them; the lock keeps one
    // session reading at a time (one session at a time anyway).
    let mut chat_allowed = false;
    let mut typed = match &chat.typed {
        Some(input) => Some(input.0.lock().await),
        None => None,
    };
    // Lines written while no session could take them are not for this one.
    if let Some(t) = typed.as_mut() {
        while t.try_recv().is_ok() {}
    }
    let result = loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Some(m) => conn.send(&m).await?,
                None => break Err(anyhow::anyhow!("capture stopped")),
            },
            Some(packet) = audio.recv() => conn.send(&packet).await?,
            Some(text) = clip_changes.recv() => conn.send(&Message::ClipboardText { text }).await?,
            Some(line) = async { typed.as_mut()?.recv().await } => {
                let line = line.trim();
                if !chat_allowed {
                    tracing::info!("the end user wrote, but this session does not allow chat: not sent");
                } else if !line.is_empty() && line.len() <= protocol::limits::CHAT {
                    conn.send(&Message::ChatText { text: line.to_owned() }).await?;
                    show_chat(chat, None, line);
                } else if !line.is_empty() {
                    tracing::warn!(bytes = line.len(), max = protocol::limits::CHAT, "a chat line too long to send");
                }
            }
            Some(ready) = files_ready.recv() => {
                let (replies, updates) = files.ready(ready);
                for u in updates {
                    log_file_update(&u);
                }
                for r in replies {
                    conn.send(&r).await?;
                }
            }
            msg = conn.recv() => match msg? {
                Message::KeyframeRequest => { let _ = commands.send(StreamCommand::Keyframe); }
                Message::SwitchMonitor { monitor_id } => { let _ = commands.send(StreamCommand::SwitchMonitor(monitor_id)); }
                Message::SetFrameRate { frame_rate } => { let _ = commands.send(StreamCommand::SetFrameRate(frame_rate)); }
                Message::ReceiverReport(report) => { let _ = commands.send(StreamCommand::Report(report)); }
                Message::MouseInput(m) => {
                    let monitor = current.lock().ok().and_then(|c| c.clone());
                    if let Some(monitor) = monitor {
                        if let Err(e) = input.mouse(&monitor, &m) {
                            tracing::warn!(error = %e, "mouse input not injected");
                        }
                    }
                }
                Message::KeyInput(k) => if let Err(e) = input.key(&k) { tracing::warn!(error = %e, "key not injected"); },
                Message::TextInput { text } => if let Err(e) = input.text(&text) { tracing::warn!(error = %e, "text not injected"); },
                Message::SessionEnded { reason, message } => break Ok(end_text(reason, &message)),
                Message::RecordingState { .. } => {}
                Message::SessionTools(tools) => {
                    files_allowed = tools.iter().any(|t| t.tool == protocol::Tool::FileTransfer && t.state == protocol::ToolState::Allowed);
                    chat_allowed = tools.iter().any(|t| t.tool == protocol::Tool::Chat && t.state == protocol::ToolState::Allowed);
                    if let Some(shown) = &chat.shown {
                        let _ = shown.send(Notice::ChatOpen(chat_allowed && chat.typed.is_some()));
                    }
                    let allowed = tools.iter().any(|t| t.tool == protocol::Tool::Clipboard && t.state == protocol::ToolState::Allowed);
                    if allowed && clipboard.is_none() {
                        match platform.clipboard(clip_tx.clone()) {
                            Ok(c) => clipboard = Some(c),
                            Err(e) => tracing::warn!(error = %format!("{e:#}"), "no clipboard in this session"),
                        }
                    } else if !allowed {
                        clipboard = None;
                    }
                }
                Message::ChatText { text } => show_chat(chat, Some(technician), &text),
                Message::ClipboardText { text } => match clipboard.as_mut() {
                    Some(c) => if let Err(e) = c.set(&text) { tracing::warn!(error = %e, "clipboard text not set"); },
                    None => tracing::info!("clipboard text from the technician, but this session has no clipboard"),
                },
                m if m.kind().is_file_transfer() => {
                    if !files_allowed {
                        tracing::info!(kind = m.kind().name(), "a file message, but this session may not carry files");
                        continue;
                    }
                    let (replies, updates) = files.receive(&m).await;
                    for u in updates {
                        log_file_update(&u);
                    }
                    for r in replies {
                        conn.send(&r).await?;
                    }
                }
                Message::ToolRefused { tool, code, message } => tracing::info!(?tool, %code, %message, "not forwarded by the relay"),
                Message::Refused { code, message } => break Err(LinkError::Refused(protocol::Refusal::new(code, message)).into()),
                _ => {}
            },
            _ = shutdown.cancelled() => {
                // The end user ends the session.
                let _ = conn.send(&Message::LeaveSession).await;
                break Ok("You ended the session.".into());
            }
        }
    };
    // Stop watching the clipboard before anything else: nothing more is sent (the receiver goes
    // first, so that a watcher waiting to hand over a text is let go).
    drop(clip_changes);
    drop(clipboard);
    // Closing the command channel and the frame receiver stops the capture thread.
    drop(commands);
    drop(frames);
    let _ = tokio::task::spawn_blocking(move || capture.join()).await;
    result
}

/// A chat line to the end user's eyes (the window and the terminal), and to the log.
fn show_chat(chat: &Chat, from: Option<&str>, text: &str) {
    tracing::info!(
        from = from.unwrap_or("the end user"),
        chars = text.chars().count(),
        "chat line"
    );
    if let Some(shown) = &chat.shown {
        let _ = shown.send(Notice::Chat(from.map(str::to_owned), text.to_owned()));
    }
}

/// A transfer's start and end in the streamer's log (progress is not logged).
fn log_file_update(u: &relay_client::files::Update) {
    use relay_client::files::Update;
    match u {
        Update::Progress {
            name,
            size,
            done,
            resumed_from,
            ..
        } if done == resumed_from => {
            tracing::info!(%name, size, from = resumed_from, "file transfer started");
        }
        Update::Progress { .. } => {}
        Update::Verified {
            name, size, path, ..
        } => {
            tracing::info!(%name, size, path = ?path, "file transfer verified");
        }
        Update::Stopped {
            name,
            outcome,
            message,
            ..
        } => {
            tracing::info!(%name, ?outcome, %message, "file transfer stopped");
        }
        // The streamer's endpoint takes what the technician sends without asking.
        Update::Offered { name, size, .. } => {
            tracing::info!(%name, size, "file offered");
        }
    }
}

/// Why a session ended, in words: the relay's sentence, or the reason's name.
pub fn end_text(reason: EndReason, message: &str) -> String {
    if message.is_empty() {
        format!("The session ended ({reason:?}).")
    } else {
        message.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credential_file_is_private_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("device.credential");
        assert_eq!(read_credential(&path).unwrap(), None);
        let c = DeviceCredential {
            device_id: "d1".into(),
            secret: "s3".into(),
        };
        write_credential(&path, &c).unwrap();
        assert_eq!(read_credential(&path).unwrap(), Some(c));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        std::fs::write(&path, "garbage").unwrap();
        assert!(read_credential(&path).is_err());
    }
}
