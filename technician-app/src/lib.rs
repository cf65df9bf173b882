//! The technician's session library: what the Tauri app and the command-line client drive.
//!
//! It signs in to the relay, lists the team's devices, connects by device or session code, and runs a
//! session as a task that reports typed [`Event`]s (video, recording state, limit warnings, a picture
//! that stopped, the end and its reason, a lost connection) and takes [`Command`]s (input, monitor,
//! frame rate, leave). No window, no decoding: the app decodes with openh264 into its native view
//! (WebCodecs in the page where it has none), the command-line client with openh264.
//!
//! A session never hangs on a dead link: the session pings the relay whenever it has heard nothing
//! for a second and gives the connection up as lost after [`LINK_SILENCE`] without a word (a frozen
//! relay, a cable pulled); a closed or broken connection is lost at once. Every session's events end
//! with [`Event::Ended`] or [`Event::Lost`]. An [`Account`] keeps what it takes to connect again
//! (the relay, its trust and the sign-in token), and [`reconnect_delay`] spaces the attempts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::{
    AudioFrame, DeviceInfo, EndReason, ErrorCode, KeyInput, Message, MessageKind, MonitorInfo,
    MouseInput, ProductVersion, Refusal, Role, SessionTarget, Tool, ToolGrant, ToolState,
    VersionError, VideoConfig, VideoFrame, ViewRequest,
};
use relay_client::files::Endpoint;
pub use relay_client::files::{Direction, Update as Transfer};
use relay_client::{Connection, Connector, LinkError};
use std::time::Instant;
use tokio::sync::mpsc;

/// The technician app's product version, from the workspace's one version.
pub fn product_version() -> Result<ProductVersion, VersionError> {
    ProductVersion::this_build()
}

/// What can go wrong for a technician.
#[derive(Debug, thiserror::Error)]
pub enum TechnicianError {
    /// The relay could not be reached or spoke wrongly.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The relay refused, with a stable code and a sentence for people.
    #[error("{}", .0.message)]
    Refused(Refusal),
    /// The relay did not answer in time.
    #[error("the relay did not answer in time")]
    Timeout,
}

impl TechnicianError {
    /// The refusal code, when the relay refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            TechnicianError::Refused(r) => Some(r.code),
            TechnicianError::Link(LinkError::Refused(r)) => Some(r.code),
            _ => None,
        }
    }
}

/// A session's events, in the order the relay sent them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The session is open.
    Started {
        /// The session's id.
        session_id: String,
        /// The device's name.
        device_name: String,
        /// Its streamer's version.
        streamer_version: String,
        /// Whether the team's policy records it.
        recorded: bool,
    },
    /// Whether the relay records the session (shown for the whole session).
    Recording(bool),
    /// The remote computer's monitors.
    Monitors(Vec<MonitorInfo>),
    /// The video that follows has this configuration.
    VideoConfig(VideoConfig),
    /// One H.264 access unit.
    Video(VideoFrame),
    /// Live audio follows in this format.
    AudioConfig {
        /// Samples per second.
        sample_rate: u32,
        /// Channels.
        channels: u8,
    },
    /// One Opus packet.
    Audio(AudioFrame),
    /// The session goes on without audio.
    AudioUnavailable(String),
    /// The recorded session ends at its limit in `time_left`; the relay's limit for recorded
    /// sessions is `limit` ([`session_limit`]).
    LimitWarning {
        /// Until the relay ends the session.
        time_left: Duration,
        /// The relay's limit on a recorded session's length.
        limit: Duration,
    },
    /// The tools this session may use and their state (protocol 1.1.0; a relay on 1.0 sends none,
    /// and then no tool is available). Comes right after the session starts.
    Tools(Vec<ToolGrant>),
    /// The text now on the remote computer's clipboard, to put on the technician's.
    Clipboard(String),
    /// A line of chat from the person at the remote computer (protocol 1.3.0), to show as text.
    Chat(String),
    /// The relay did not forward a use of `tool` (the team forbids it, or the remote side's
    /// software is too old for it); the session goes on.
    ToolRefused {
        /// The tool.
        tool: Tool,
        /// `TOOL_FORBIDDEN` or `TOOL_UNSUPPORTED`.
        code: ErrorCode,
        /// Why, for people.
        message: String,
    },
    /// A file transfer moved on, finished or stopped.
    Transfer(Transfer),
    /// `false`: no video frame for [`PICTURE_STALL`] (the streamer sends one at least every second,
    /// so the picture on the view is out of date); `true`: frames arrive again.
    Picture(bool),
    /// The connection to the relay was lost (closed, broken, silent for [`LINK_SILENCE`], or the
    /// relay refused mid-session); the session is over for this technician. Last event.
    Lost {
        /// The refusal's code, when the relay refused.
        code: Option<ErrorCode>,
        /// What happened, for people.
        message: String,
    },
    /// The session ended.
    Ended {
        /// Why, for programs.
        reason: EndReason,
        /// Why, for people.
        message: String,
    },
}

/// What the technician does during a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A mouse event.
    Mouse(MouseInput),
    /// A key event.
    Key(KeyInput),
    /// Text typed as is.
    Text(String),
    /// Show another monitor.
    SwitchMonitor(u32),
    /// Capture at another rate.
    SetFrameRate(u16),
    /// Ask for a keyframe (after a decoder error, say).
    Keyframe,
    /// Put this text on the remote computer's clipboard (when [`Event::Tools`] allowed it; the
    /// relay refuses it otherwise with [`Event::ToolRefused`]). At most [`CLIPBOARD_MAX`] bytes:
    /// longer text is not sent, and the session answers with [`Event::ToolRefused`] itself
    /// (`MESSAGE_TOO_LARGE`).
    Clipboard(String),
    /// Send a line of chat to the person at the remote computer (when [`Event::Tools`] allowed
    /// it). Leading and trailing white space is trimmed; an empty line is not sent, and one over
    /// [`CHAT_MAX`] bytes is refused by the session itself (`MESSAGE_TOO_LARGE`), as for the
    /// clipboard.
    Chat(String),
    /// Send the file at `path` to the remote computer (into the end user's Downloads folder), as
    /// transfer `transfer_id` (the caller's choice, unique in the session). A transfer of the same
    /// file that an earlier session cut off resumes where it stopped. [`Event::Transfer`] follows
    /// it.
    SendFile {
        /// The transfer's id.
        transfer_id: u32,
        /// The file here.
        path: PathBuf,
    },
    /// Fetch the remote computer's file at `remote_path` into `into` (the session's folder,
    /// [`Technician::set_files_folder`], when `None`), as transfer `transfer_id`; a partial copy
    /// there from an earlier session resumes.
    GetFile {
        /// The transfer's id.
        transfer_id: u32,
        /// The file's path on the remote computer.
        remote_path: String,
        /// The folder here.
        into: Option<PathBuf>,
    },
    /// Stop transfer `transfer_id`; what was received stays, to resume.
    CancelTransfer(u32),
    /// Take the file the remote computer offered unasked ([`Transfer::Offered`]) into `into`
    /// (the session's folder, [`Technician::set_files_folder`], when `None`).
    TakeFile {
        /// The transfer's id.
        transfer_id: u32,
        /// The folder here.
        into: Option<PathBuf>,
    },
    /// Decline the file the remote computer offered unasked: nothing is written.
    DeclineFile(u32),
    /// End the session.
    Leave,
}

/// A signed-in technician connection.
#[derive(Debug)]
pub struct Technician {
    conn: Connection,
    /// The technician's name.
    pub name: String,
    files_folder: PathBuf,
}

const ANSWER: Duration = Duration::from_secs(30);

/// How long a session waits without hearing from the relay (no message, no pong to its pings)
/// before it gives the connection up as lost: a network that stalls for up to this long (a Wi-Fi
/// hand-over, a congested uplink) keeps the session, which goes on where it was when the link
/// comes back; meanwhile the picture is said to have stopped ([`Event::Picture`], after
/// [`PICTURE_STALL`]). A closed connection is lost at once, whatever this says.
pub const LINK_SILENCE: Duration = Duration::from_secs(30);

/// How long without a video frame before the session says the picture stopped
/// ([`Event::Picture`]): twice the longest gap a streamer leaves on a still screen.
pub const PICTURE_STALL: Duration = Duration::from_secs(2);

/// The most clipboard text a session sends or receives, in bytes of UTF-8 (the protocol's limit).
pub const CLIPBOARD_MAX: usize = protocol::limits::CLIPBOARD;

/// The longest chat line a session sends, in bytes of UTF-8 (the protocol's limit).
pub const CHAT_MAX: usize = protocol::limits::CHAT;

/// The largest file the remote computer may offer unasked (2 GB, a team's default limit): larger
/// ones are refused without asking the technician.
pub const UNASKED_FILE_MAX: u64 = 2_000_000_000;

/// Whether `tool` is allowed in a session whose [`Event::Tools`] said `tools`.
pub fn allowed(tools: &[ToolGrant], tool: Tool) -> bool {
    tools
        .iter()
        .any(|g| g.tool == tool && g.state == ToolState::Allowed)
}

/// The user's Downloads folder, else `Downloads` in the home folder, else in the working folder.
pub fn default_files_folder() -> PathBuf {
    dirs::download_dir()
        .or_else(|| dirs::home_dir().map(|h| h.join("Downloads")))
        .unwrap_or_else(|| PathBuf::from("Downloads"))
}

/// The pause before reconnection attempt `attempt` (0 first): 0.5 s, then doubling to at most 10 s.
pub fn reconnect_delay(attempt: u32) -> Duration {
    Duration::from_millis(500u64.saturating_mul(1 << attempt.min(5)).min(10_000))
}

/// What a signed-in technician connects (and reconnects) with: the relay's address, the TLS trust
/// for it and the sign-in token. The password is not kept.
#[derive(Debug, Clone)]
pub struct Account {
    connector: Connector,
    relay: String,
    token: String,
}

impl Account {
    /// Signs in with e-mail and password over the relay's API.
    pub async fn sign_in(
        connector: Connector,
        relay: &str,
        email: &str,
        password: &str,
    ) -> Result<Self, TechnicianError> {
        let token = connector.sign_in(relay, email, password).await?;
        Ok(Self {
            connector,
            relay: relay.to_owned(),
            token,
        })
    }

    /// The relay's address (`host:port`).
    pub fn relay(&self) -> &str {
        &self.relay
    }

    /// Opens an agent connection with the token: a first connection or a reconnection.
    pub async fn open(&self) -> Result<Technician, TechnicianError> {
        Technician::with_token(&self.connector, &self.relay, &self.token).await
    }

    /// Revokes the token at the relay (`POST /api/v1/sign-out`). The account is gone either way;
    /// an error says the relay could not be told.
    pub async fn sign_out(self) -> Result<(), TechnicianError> {
        let (status, _) = self
            .connector
            .api(
                &self.relay,
                "POST",
                "/api/v1/sign-out",
                Some(&self.token),
                None,
            )
            .await?;
        match status {
            200..=299 | 401 => Ok(()),
            other => Err(TechnicianError::Link(LinkError::Api(format!(
                "signing out answered HTTP {other}"
            )))),
        }
    }
}

async fn recv(conn: &mut Connection) -> Result<Message, TechnicianError> {
    tokio::time::timeout(ANSWER, conn.recv())
        .await
        .map_err(|_| TechnicianError::Timeout)?
        .map_err(Into::into)
}

impl Technician {
    /// Signs in with e-mail and password over the relay's API, then opens the agent connection.
    pub async fn sign_in(
        relay: &str,
        ca_file: &Path,
        email: &str,
        password: &str,
    ) -> Result<Self, TechnicianError> {
        let connector = Connector::trusting_ca_file(ca_file)?;
        Account::sign_in(connector, relay, email, password)
            .await?
            .open()
            .await
    }

    /// Opens the agent connection with a sign-in token.
    pub async fn with_token(
        connector: &Connector,
        relay: &str,
        token: &str,
    ) -> Result<Self, TechnicianError> {
        let mut conn = connector.connect(relay).await?;
        let version = product_version().unwrap_or(ProductVersion::new(0, 0, 0, 0));
        let est = conn
            .handshake(
                Role::Technician,
                version,
                protocol::Credential::TechnicianToken {
                    token: token.to_owned(),
                },
            )
            .await?;
        Ok(Self {
            conn,
            name: est.name,
            files_folder: default_files_folder(),
        })
    }

    /// Where files from the remote computer go unless a request names a folder (by default the
    /// user's Downloads folder).
    pub fn set_files_folder(&mut self, dir: &Path) {
        self.files_folder = dir.to_path_buf();
    }

    /// The team's devices, with their online and busy state and streamer version (a relay on a
    /// protocol before 1.3.0 does not say which are busy: none is then).
    pub async fn devices(&mut self) -> Result<Vec<DeviceInfo>, TechnicianError> {
        self.conn.send(&Message::ListDevices).await?;
        loop {
            match recv(&mut self.conn).await? {
                Message::DeviceList(d) | Message::DeviceStatusList(d) => return Ok(d),
                Message::Refused { code, message } => {
                    return Err(TechnicianError::Refused(Refusal::new(code, message)))
                }
                _ => {}
            }
        }
    }

    /// Connects to a device or a session code. On success the session runs on a task of its own:
    /// events arrive on the returned receiver, commands go through the returned sender, and the
    /// connection comes back from the task's handle when the session is over.
    pub async fn connect(self, target: SessionTarget) -> Result<Session, (Self, TechnicianError)> {
        self.connect_with(target, ViewRequest::default()).await
    }

    /// [`Technician::connect`], starting at the frame rate and on the monitor of `view`: the stream
    /// (and its recording) starts as asked, without a change right after its first frame.
    pub async fn connect_with(
        mut self,
        target: SessionTarget,
        view: ViewRequest,
    ) -> Result<Session, (Self, TechnicianError)> {
        if let Err(e) = self
            .conn
            .send(&Message::SessionRequest { target, view })
            .await
        {
            return Err((self, e.into()));
        }
        let first = loop {
            match recv(&mut self.conn).await {
                Ok(Message::SessionStarted {
                    session_id,
                    device_name,
                    streamer_version,
                    recorded,
                    ..
                }) => {
                    break Event::Started {
                        session_id,
                        device_name,
                        streamer_version,
                        recorded,
                    }
                }
                Ok(Message::SessionRefused { code, message })
                | Ok(Message::Refused { code, message }) => {
                    return Err((self, TechnicianError::Refused(Refusal::new(code, message))))
                }
                Ok(_) => continue,
                Err(e) => return Err((self, e)),
            }
        };
        // Events are bounded: a technician that stops reading slows the relay's forwarding to it,
        // which is the backpressure the relay expects.
        let (events_tx, events) = mpsc::channel(256);
        let (commands, commands_rx) = mpsc::channel(256);
        let _ = events_tx.try_send(first);
        let task = tokio::spawn(run_session(self, events_tx, commands_rx));
        Ok(Session {
            events,
            commands,
            task,
        })
    }
}

/// A running session.
#[derive(Debug)]
pub struct Session {
    /// The session's events.
    pub events: mpsc::Receiver<Event>,
    /// Where commands go.
    pub commands: mpsc::Sender<Command>,
    /// Gives the connection back when the session is over.
    pub task: tokio::task::JoinHandle<Result<Technician, TechnicianError>>,
}

/// The relay's session limit from a warning `time_left` before it, `since_start` after the session
/// started here: the sum to the second, and to the minute when it is within 5 s of a whole one
/// (the sum differs from the relay's setting by the time `SessionStarted` and the warning took to
/// arrive, milliseconds on a working link, more behind a queue of video).
pub fn session_limit(since_start: Duration, time_left: Duration) -> Duration {
    let secs = (since_start + time_left).as_secs_f64().round().max(1.0) as u64;
    let minute = ((secs + 30) / 60) * 60;
    if minute > 0 && secs.abs_diff(minute) <= 5 {
        Duration::from_secs(minute)
    } else {
        Duration::from_secs(secs)
    }
}

fn event_of(msg: Message, started: Instant) -> Option<Event> {
    Some(match msg {
        Message::RecordingState { recorded } => Event::Recording(recorded),
        Message::MonitorList(m) => Event::Monitors(m),
        Message::VideoConfig(c) => Event::VideoConfig(c),
        Message::VideoFrame(f) => Event::Video(f),
        Message::AudioConfig {
            sample_rate,
            channels,
            ..
        } => Event::AudioConfig {
            sample_rate,
            channels,
        },
        Message::AudioFrame(f) => Event::Audio(f),
        Message::AudioUnavailable { reason } => Event::AudioUnavailable(reason),
        Message::LimitWarning { time_left_ms } => {
            let time_left = Duration::from_millis(time_left_ms);
            Event::LimitWarning {
                time_left,
                limit: session_limit(started.elapsed(), time_left),
            }
        }
        Message::SessionEnded { reason, message } => Event::Ended { reason, message },
        Message::SessionTools(tools) => Event::Tools(tools),
        Message::ClipboardText { text } => Event::Clipboard(text),
        Message::ChatText { text } => Event::Chat(text),
        Message::ToolRefused {
            tool,
            code,
            message,
        } => Event::ToolRefused {
            tool,
            code,
            message,
        },
        _ => return None,
    })
}

/// How often the session reports what it received, once video has started.
pub const REPORT_EVERY: Duration = Duration::from_secs(1);

/// What the session received since its last `ReceiverReport`.
#[derive(Debug, Default)]
struct Reports {
    newest_timestamp_us: u64,
    frames: u16,
    /// The smallest arrival-minus-capture offset seen (local clock minus streamer timestamps):
    /// the promptest frame of the session, against which later ones are late.
    promptest_us: Option<i128>,
    newest_late_us: i128,
    started: Option<std::time::Instant>,
}

impl Reports {
    fn received(&mut self, timestamp_us: u64, at: std::time::Instant) {
        let origin = *self.started.get_or_insert(at);
        let offset = at.duration_since(origin).as_micros() as i128 - i128::from(timestamp_us);
        let promptest = self.promptest_us.map_or(offset, |p| p.min(offset));
        self.promptest_us = Some(promptest);
        self.newest_late_us = offset - promptest;
        self.newest_timestamp_us = self.newest_timestamp_us.max(timestamp_us);
        self.frames = self.frames.saturating_add(1);
    }

    /// The report for the period ending now, or `None` before the first frame.
    fn take(&mut self) -> Option<protocol::ReceiverReport> {
        self.started?;
        let report = protocol::ReceiverReport {
            newest_timestamp_us: self.newest_timestamp_us,
            frames: self.frames,
            queue_delay_ms: u16::try_from(self.newest_late_us / 1000).unwrap_or(u16::MAX),
        };
        self.frames = 0;
        Some(report)
    }
}

async fn run_session(
    mut tech: Technician,
    events: mpsc::Sender<Event>,
    commands: mpsc::Receiver<Command>,
) -> Result<Technician, TechnicianError> {
    match session_loop(&mut tech, &events, commands).await {
        Ok(()) => Ok(tech),
        Err(e) => {
            let message = match &e {
                TechnicianError::Refused(r) => r.message.clone(),
                TechnicianError::Timeout => format!(
                    "The relay has not answered for {} seconds.",
                    LINK_SILENCE.as_secs()
                ),
                other => format!("The connection to the relay was lost ({other})."),
            };
            let _ = events
                .send(Event::Lost {
                    code: e.code(),
                    message,
                })
                .await;
            Err(e)
        }
    }
}

/// The session until it ends (`Ok`) or its connection is lost.
async fn session_loop(
    tech: &mut Technician,
    events: &mpsc::Sender<Event>,
    mut commands: mpsc::Receiver<Command>,
) -> Result<(), TechnicianError> {
    let started = Instant::now();
    let mut commands_open = true;
    let mut reports = Reports::default();
    let mut report_tick = tokio::time::interval(REPORT_EVERY);
    report_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut live_tick = tokio::time::interval(Duration::from_millis(250));
    live_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut pinged = Instant::now();
    // When the last video frame came (none yet: the session's start), and whether the picture
    // was said to have stopped.
    let mut last_video = Instant::now();
    let mut stalled = false;
    // The relay enforces the team's file size limit; this side takes what it allows of files it
    // asked for. A file the other side offers unasked (anyone holding the attended key can be
    // the other side) waits for the technician's answer, and over UNASKED_FILE_MAX is refused.
    let (mut files, mut files_ready) = Endpoint::new(&tech.files_folder, u64::MAX);
    files.ask_before_taking(UNASKED_FILE_MAX);
    loop {
        tokio::select! {
            Some(ready) = files_ready.recv() => {
                let (send, updates) = files.ready(ready);
                for m in send {
                    tech.conn.send(&m).await?;
                }
                for u in updates {
                    let _ = events.send(Event::Transfer(u)).await;
                }
            }
            _ = report_tick.tick() => {
                if let Some(report) = reports.take() {
                    tech.conn.send(&Message::ReceiverReport(report)).await?;
                }
            }
            _ = live_tick.tick() => {
                let silent = tech.conn.heard().elapsed();
                if silent >= LINK_SILENCE {
                    return Err(TechnicianError::Timeout);
                }
                if silent >= Duration::from_secs(1) && pinged.elapsed() >= Duration::from_secs(1) {
                    pinged = Instant::now();
                    tech.conn.ping().await?;
                }
                if !stalled && last_video.elapsed() >= PICTURE_STALL {
                    stalled = true;
                    let _ = events.send(Event::Picture(false)).await;
                }
            }
            msg = tech.conn.recv() => {
                let msg = msg?;
                if let Message::Refused { code, message } = msg {
                    return Err(TechnicianError::Refused(Refusal::new(code, message)));
                }
                if msg.kind().is_file_transfer() || matches!(msg, Message::ToolRefused { tool: Tool::FileTransfer, .. }) {
                    let (send, mut updates) = files.receive(&msg).await;
                    if let Message::ToolRefused { code, message, .. } = &msg {
                        let outcome = if *code == ErrorCode::FileTooLarge {
                            protocol::FileOutcome::TooLarge
                        } else {
                            protocol::FileOutcome::Failed
                        };
                        if *code != ErrorCode::UnexpectedMessage {
                            updates.extend(files.refused(outcome, message));
                        }
                    }
                    for m in send {
                        tech.conn.send(&m).await?;
                    }
                    for u in updates {
                        let _ = events.send(Event::Transfer(u)).await;
                    }
                }
                if let Message::VideoFrame(f) = &msg {
                    let now = Instant::now();
                    reports.received(f.timestamp_us, now);
                    last_video = now;
                    if stalled {
                        stalled = false;
                        let _ = events.send(Event::Picture(true)).await;
                    }
                }
                if let Some(event) = event_of(msg, started) {
                    let ended = matches!(event, Event::Ended { .. });
                    // The receiver may be gone (the caller stopped watching): the session goes on
                    // until it ends or is left.
                    let _ = events.send(event).await;
                    if ended {
                        return Ok(());
                    }
                }
            }
            cmd = commands.recv(), if commands_open => {
                // The caller dropped its sender: it is done with the session, which is left once.
                commands_open = cmd.is_some();
                let cmd = match cmd {
                    Some(Command::Chat(text)) => match text.trim() {
                        "" => continue,
                        line => Some(Command::Chat(line.to_owned())),
                    },
                    other => other,
                };
                // A tool whose messages the agreed version lacks (an older relay) is refused
                // here: sent, it would be an unknown kind and close the connection.
                let tool_kind = match &cmd {
                    Some(Command::Clipboard(_)) => Some((Tool::Clipboard, MessageKind::ClipboardText)),
                    Some(Command::Chat(_)) => Some((Tool::Chat, MessageKind::ChatText)),
                    Some(Command::SendFile { .. } | Command::GetFile { .. }) => {
                        Some((Tool::FileTransfer, MessageKind::FileOffer))
                    }
                    _ => None,
                };
                if let Some((tool, kind)) = tool_kind.filter(|(_, k)| !tech.conn.speaks(*k)) {
                    let (major, minor) = kind.since();
                    let message = format!(
                        "The relay speaks an older protocol, without this tool (it needs {major}.{minor}.0): nothing was sent."
                    );
                    let _ = events
                        .send(Event::ToolRefused { tool, code: ErrorCode::ToolUnsupported, message })
                        .await;
                    continue;
                }
                let too_long = match &cmd {
                    Some(Command::Clipboard(text)) if text.len() > CLIPBOARD_MAX => Some((
                        Tool::Clipboard,
                        format!("The clipboard holds {} bytes of text; at most {CLIPBOARD_MAX} are sent.", text.len()),
                    )),
                    Some(Command::Chat(text)) if text.len() > CHAT_MAX => Some((
                        Tool::Chat,
                        format!("The chat line has {} bytes; at most {CHAT_MAX} are sent.", text.len()),
                    )),
                    _ => None,
                };
                if let Some((tool, message)) = too_long {
                    let _ = events
                        .send(Event::ToolRefused { tool, code: ErrorCode::MessageTooLarge, message })
                        .await;
                    continue;
                }
                match &cmd {
                    Some(Command::SendFile { transfer_id, path }) => {
                        files.offer(*transfer_id, path);
                        continue;
                    }
                    Some(Command::GetFile { transfer_id, remote_path, into }) => {
                        let request = files.request(*transfer_id, remote_path, into.as_deref());
                        tech.conn.send(&request).await?;
                        continue;
                    }
                    Some(Command::CancelTransfer(id)) => {
                        if let Some(end) = files.cancel(*id) {
                            tech.conn.send(&end).await?;
                        }
                        continue;
                    }
                    Some(Command::TakeFile { transfer_id, into }) => {
                        files.take(*transfer_id, into.as_deref());
                        continue;
                    }
                    Some(Command::DeclineFile(id)) => {
                        if let Some((end, stopped)) = files.decline(*id) {
                            tech.conn.send(&end).await?;
                            let _ = events.send(Event::Transfer(stopped)).await;
                        }
                        continue;
                    }
                    _ => {}
                }
                let msg = match cmd {
                    Some(Command::Mouse(m)) => Message::MouseInput(m),
                    Some(Command::Key(k)) => Message::KeyInput(k),
                    Some(Command::Text(text)) => Message::TextInput { text },
                    Some(Command::SwitchMonitor(monitor_id)) => Message::SwitchMonitor { monitor_id },
                    Some(Command::SetFrameRate(frame_rate)) => Message::SetFrameRate { frame_rate },
                    Some(Command::Keyframe) => Message::KeyframeRequest,
                    Some(Command::Clipboard(text)) => Message::ClipboardText { text },
                    Some(Command::Chat(text)) => Message::ChatText { text },
                    Some(
                        Command::SendFile { .. }
                        | Command::GetFile { .. }
                        | Command::CancelTransfer(_)
                        | Command::TakeFile { .. }
                        | Command::DeclineFile(_),
                    ) => continue,
                    Some(Command::Leave) | None => Message::LeaveSession,
                };
                tech.conn.send(&msg).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_the_time_so_far_plus_the_time_left() {
        let s = Duration::from_secs;
        // A 2-minute limit warns at once (it is shorter than the 5-minute warning).
        assert_eq!(session_limit(Duration::from_millis(40), s(119)), s(120));
        assert_eq!(session_limit(s(23 * 3600 + 55 * 60), s(300)), s(24 * 3600));
        // A warning that waited 3 s behind video still names the whole minute.
        assert_eq!(session_limit(s(3), s(118)), s(120));
        // Limits in seconds (tests set them) are told in seconds.
        assert_eq!(session_limit(s(8), Duration::from_millis(11_990)), s(20));
        assert_eq!(session_limit(Duration::ZERO, Duration::ZERO), s(1));
    }

    #[test]
    fn reconnection_backs_off_from_half_a_second_to_ten() {
        let ms: Vec<u128> = (0..8).map(|n| reconnect_delay(n).as_millis()).collect();
        assert_eq!(ms, [500, 1000, 2000, 4000, 8000, 10_000, 10_000, 10_000]);
        assert_eq!(reconnect_delay(u32::MAX), Duration::from_secs(10));
    }
}
