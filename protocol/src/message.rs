//! Every message that technician, relay and streamer exchange, as plain Rust values.
//!
//! These are wire types: the relay and the clients convert them to their own domain types at the edge.
//! The byte layout of each lives in `codec.rs` and is specified in docs/PROTOCOL.md.

use bytes::Bytes;

use crate::error::ErrorCode;

/// Who is speaking on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// The technician app or command-line client.
    Technician,
    /// The streamer agent on the end user's computer.
    Streamer,
}

/// How a session reaches the streamer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AccessType {
    /// The end user runs the streamer on demand and reads out a session code.
    Attended,
    /// The streamer runs permanently on a device deployed to the team.
    Unattended,
}

/// What a client proves its identity with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A technician's sign-in token, issued by the relay's sign-in API.
    TechnicianToken {
        /// The bearer token.
        token: String,
    },
    /// An unattended streamer's device credential, issued at registration.
    Device {
        /// The device's id.
        device_id: String,
        /// The device's secret.
        secret: String,
    },
    /// An unattended streamer registering for the first time with the team's deployment code.
    DeploymentCode {
        /// The deployment code from the console.
        code: String,
        /// The computer's name, shown to technicians.
        device_name: String,
    },
    /// An attended streamer started on demand from the team's download.
    Attended {
        /// The team's public attended-access key, built into the team's download.
        team_key: String,
        /// The computer's name, shown to the technician.
        device_name: String,
    },
}

/// A device as the technician's device list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The device's id.
    pub id: String,
    /// The device's name.
    pub name: String,
    /// Whether its streamer is connected now.
    pub online: bool,
    /// Whether it is in a session now (only when online; `DeviceStatusList`, protocol 1.3.0: a
    /// `DeviceList` does not carry it).
    pub busy: bool,
    /// The streamer version it last reported, if it ever connected.
    pub streamer_version: Option<String>,
}

/// What a technician asks to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionTarget {
    /// An unattended device of the technician's team.
    Device {
        /// The device's id.
        device_id: String,
    },
    /// An attended streamer, by the 9-digit session code its user read out.
    Code {
        /// The session code.
        code: String,
    },
}

/// What the technician wants to see from the session's first frame: the streamer starts at this
/// rate and on this monitor, so that the first recording file is the right one and a `frame_rate`
/// or `monitor` split only ever records a real change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ViewRequest {
    /// Frames per second, 1 to 120; `None` for the streamer's own default.
    pub frame_rate: Option<u16>,
    /// A monitor's id from the streamer's monitor list; `None` (or an id the streamer does not
    /// have) for its first monitor.
    pub monitor_id: Option<u32>,
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndReason {
    /// The technician ended the session.
    TechnicianLeft,
    /// The end user ended the session from the streamer.
    EndUserEnded,
    /// The technician's connection was lost.
    TechnicianDisconnected,
    /// The streamer's connection was lost.
    StreamerDisconnected,
    /// A recorded session reached its time limit (24 hours by default).
    TimeLimitReached,
    /// The recording could not be written, and a recorded session never goes on unrecorded.
    RecordingFailed,
    /// The relay is shutting down.
    RelayShuttingDown,
    /// A credential in the session was revoked.
    CredentialRevoked,
    /// A peer broke the protocol.
    ProtocolError,
    /// An owner or admin of the team ended the session from the relay's console or API.
    EndedByAdmin,
    /// A reason this implementation does not know, from a newer peer; the message explains it.
    Unknown(u8),
}

/// Video codec of a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VideoCodec {
    /// H.264, access units in Annex B byte-stream format.
    H264,
}

/// Orientation of the captured screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Orientation {
    /// Wider than tall (or square).
    Landscape,
    /// Taller than wide.
    Portrait,
}

/// Configuration of the video that follows, until the next one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoConfig {
    /// The codec.
    pub codec: VideoCodec,
    /// Width in pixels, 1 to 16384.
    pub width: u16,
    /// Height in pixels, 1 to 16384.
    pub height: u16,
    /// Frames per second, 1 to 120.
    pub frame_rate: u16,
    /// The monitor being captured.
    pub monitor_id: u32,
    /// The screen's orientation.
    pub orientation: Orientation,
}

/// One encoded video access unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFrame {
    /// Whether the unit is a keyframe (IDR) that decoding can start from.
    pub keyframe: bool,
    /// Capture time in microseconds since the streamer's stream started.
    pub timestamp_us: u64,
    /// The encoded access unit; decoding slices it out of the received buffer without copying.
    pub payload: Bytes,
}

/// What the technician's side received since its previous report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiverReport {
    /// `timestamp_us` of the newest `VideoFrame` received (0 before the first). The streamer reads
    /// its own clock against it: how long ago it captured what the technician has now.
    pub newest_timestamp_us: u64,
    /// Video frames received since the previous report (at most 65535).
    pub frames: u16,
    /// How much later, in milliseconds, the newest frame arrived than the promptest frame of the
    /// session, each measured as arrival time minus `timestamp_us` on the technician's own clock:
    /// the queueing the link adds now, with no need for the two clocks to agree (at most 65535).
    pub queue_delay_ms: u16,
}

/// One monitor of the streamer's computer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorInfo {
    /// Its index in the streamer's current list: what `SwitchMonitor` and `VideoConfig` name. It
    /// may stand for another screen after the layout changes.
    pub id: u32,
    /// Its identity from the platform (X11: the RandR monitor's name; Windows: the output's device
    /// name), the same for the same screen across layout changes; never empty. Recordings are
    /// grouped by it.
    pub key: String,
    /// Name for the technician's monitor menu.
    pub name: String,
    /// Left edge in the virtual desktop.
    pub x: i32,
    /// Top edge in the virtual desktop.
    pub y: i32,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Whether this is the primary monitor.
    pub primary: bool,
}

/// Audio codec of the live audio stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioCodec {
    /// Opus packets (RFC 6716).
    Opus,
}

/// One encoded audio packet; streamed live, never recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioFrame {
    /// Capture time in microseconds since the streamer's stream started.
    pub timestamp_us: u64,
    /// The encoded packet.
    pub payload: Bytes,
}

/// What a mouse event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MouseAction {
    /// The pointer moved to (x, y).
    Move,
    /// A button went down at (x, y).
    Down,
    /// A button went up at (x, y).
    Up,
    /// The wheel turned by (wheel_x, wheel_y).
    Wheel,
}

/// Which mouse button an event concerns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MouseButton {
    /// No button (moves and wheel turns).
    None,
    /// The primary button.
    Left,
    /// The secondary button.
    Right,
    /// The wheel button.
    Middle,
    /// The "back" side button.
    Back,
    /// The "forward" side button.
    Forward,
}

/// A mouse event, in pixels of the monitor being viewed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MouseInput {
    /// What happened.
    pub action: MouseAction,
    /// Which button, or `None`.
    pub button: MouseButton,
    /// Horizontal position from the monitor's left edge.
    pub x: u16,
    /// Vertical position from the monitor's top edge.
    pub y: u16,
    /// Horizontal wheel steps (positive: right).
    pub wheel_x: i16,
    /// Vertical wheel steps (positive: down).
    pub wheel_y: i16,
}

/// Modifier keys held during a key event, as a bit set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Modifiers(pub u8);

impl Modifiers {
    /// Shift.
    pub const SHIFT: u8 = 1;
    /// Control.
    pub const CONTROL: u8 = 2;
    /// Alt or Option.
    pub const ALT: u8 = 4;
    /// Windows or Command.
    pub const META: u8 = 8;
    /// Every defined bit.
    pub const ALL: u8 = 0x0f;
}

/// A physical key going down or up.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyInput {
    /// The physical key as a W3C UI Events `KeyboardEvent.code` value, such as `KeyA` or `Enter`.
    pub code: String,
    /// Whether the key went down (true) or up (false).
    pub down: bool,
    /// Modifiers held at the time.
    pub modifiers: Modifiers,
}

/// A tool of the trade besides the screen and input, allowed or forbidden per team (protocol 1.1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tool {
    /// Clipboard text, both ways.
    Clipboard,
    /// Files both ways (protocol 1.2.0).
    FileTransfer,
    /// Chat lines between technician and end user (protocol 1.3.0).
    Chat,
}

impl Tool {
    /// Every tool.
    pub const ALL: &'static [Tool] = &[Tool::Clipboard, Tool::FileTransfer, Tool::Chat];

    /// The protocol version (major, minor) that brought this tool: the relay lists a tool in
    /// `SessionTools` only to a side whose agreed version has it (an older side could not read it).
    pub fn since(self) -> (u64, u64) {
        match self {
            Tool::Clipboard => (1, 1),
            Tool::FileTransfer => (1, 2),
            Tool::Chat => (1, 3),
        }
    }
}

/// How a file transfer ended (protocol 1.2.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileOutcome {
    /// The receiver has the whole file and its SHA-256 matches the offer's.
    Verified,
    /// The receiver has every byte but their SHA-256 is not the offer's; the file was not kept.
    HashMismatch,
    /// Either side stopped it; the receiver keeps what it has, to resume.
    Cancelled,
    /// Reading or writing failed (a full disk, a file that changed while it was sent).
    Failed,
    /// The file asked for does not exist or cannot be read.
    NotFound,
    /// The file is larger than the team allows or the receiver can take.
    TooLarge,
}

/// Whether a session may use a tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ToolState {
    /// Both sides may use it; the relay forwards it and logs each use.
    Allowed,
    /// The team's settings forbid it.
    Forbidden,
    /// The other side's software is too old for it.
    Unsupported,
}

/// One tool's state in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ToolGrant {
    /// The tool.
    pub tool: Tool,
    /// Whether the session may use it.
    pub state: ToolState,
}

/// One protocol message. See docs/PROTOCOL.md for who sends each and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Client to relay, first message: who I am and what I speak.
    Hello {
        /// Technician or streamer.
        role: Role,
        /// Four-part product version text, checked by the relay.
        product_version: String,
        /// Protocol versions (semver) the client speaks, the highest of each major.
        protocol_versions: Vec<String>,
    },
    /// Relay to client: the hello is accepted and this protocol version is agreed.
    Welcome {
        /// The agreed protocol version.
        protocol_version: String,
        /// The relay's product version, for diagnostics.
        relay_version: String,
    },
    /// Client to relay: proof of identity.
    Authenticate(Credential),
    /// Relay to streamer: a new device was registered; keep this credential.
    Registered {
        /// The new device's id.
        device_id: String,
        /// The new device's secret.
        secret: String,
    },
    /// Relay to attended streamer: the code to read to the technician.
    SessionCodeIssued {
        /// Nine decimal digits.
        code: String,
        /// Seconds until the code expires.
        expires_in_secs: u32,
    },
    /// Relay to client: authenticated; the connection is established.
    Authenticated {
        /// The team's id.
        team_id: String,
        /// The technician's name or the device's name.
        name: String,
    },
    /// Relay to client: the connection is refused and will be closed.
    Refused {
        /// Why.
        code: ErrorCode,
        /// Why, in words.
        message: String,
    },
    /// Technician to relay: send me my team's devices.
    ListDevices,
    /// Relay to technician: the team's devices.
    DeviceList(Vec<DeviceInfo>),
    /// Relay to technician (protocol 1.3.0, in place of `DeviceList` for a technician on 1.3.0
    /// or later): the team's devices with their state, busy ones included.
    DeviceStatusList(Vec<DeviceInfo>),
    /// Technician to relay: connect me to this target.
    SessionRequest {
        /// The device or session code.
        target: SessionTarget,
        /// The frame rate and monitor to start with.
        view: ViewRequest,
    },
    /// Relay to streamer: a technician wants a session.
    SessionOffer {
        /// The session's id.
        session_id: String,
        /// The technician's name, shown to the end user.
        technician: String,
        /// Attended or unattended.
        access: AccessType,
        /// Whether the team's policy records the session.
        recorded: bool,
        /// The frame rate and monitor the technician asked to start with.
        view: ViewRequest,
    },
    /// Streamer to relay: the offered session is accepted.
    SessionAccept {
        /// The session's id.
        session_id: String,
    },
    /// Streamer to relay: the end user declined the offered session.
    SessionDecline {
        /// The session's id.
        session_id: String,
    },
    /// Relay to technician: the session is open; media follows.
    SessionStarted {
        /// The session's id.
        session_id: String,
        /// The device's name.
        device_name: String,
        /// The streamer's product version.
        streamer_version: String,
        /// Attended or unattended.
        access: AccessType,
        /// Whether the team's policy records the session.
        recorded: bool,
    },
    /// Relay to technician: the session request is refused; the connection stays open.
    SessionRefused {
        /// Why.
        code: ErrorCode,
        /// Why, in words.
        message: String,
    },
    /// Relay to both sides: whether the session is being recorded by the team's policy.
    RecordingState {
        /// True while the relay records the session.
        recorded: bool,
    },
    /// Relay to technician: the recorded session will end at its time limit.
    LimitWarning {
        /// Milliseconds until the relay ends the session.
        time_left_ms: u64,
    },
    /// Technician or streamer to relay: I end the session.
    LeaveSession,
    /// Relay to both sides: the session is over.
    SessionEnded {
        /// Why.
        reason: EndReason,
        /// Why, in words.
        message: String,
    },
    /// Streamer to technician: the video that follows has this configuration.
    VideoConfig(VideoConfig),
    /// Streamer to technician: one encoded access unit.
    VideoFrame(VideoFrame),
    /// Technician or relay to streamer: send a keyframe now.
    KeyframeRequest,
    /// Streamer to technician: the computer's monitors.
    MonitorList(Vec<MonitorInfo>),
    /// Technician to streamer: capture this monitor.
    SwitchMonitor {
        /// The monitor's id from the monitor list.
        monitor_id: u32,
    },
    /// Technician to streamer: capture at this rate.
    SetFrameRate {
        /// Frames per second, 1 to 120.
        frame_rate: u16,
    },
    /// Streamer to technician: live audio follows in this format.
    AudioConfig {
        /// The codec.
        codec: AudioCodec,
        /// Samples per second.
        sample_rate: u32,
        /// Channel count, 1 or 2.
        channels: u8,
    },
    /// Streamer to technician: one encoded audio packet.
    AudioFrame(AudioFrame),
    /// Streamer to technician: the session goes on without audio, for this reason.
    AudioUnavailable {
        /// Why, in words.
        reason: String,
    },
    /// Technician to streamer, about once a second while video arrives: what the technician's
    /// side received, for the streamer to fit its frame rate and bitrate to the link.
    ReceiverReport(ReceiverReport),
    /// Relay to both sides of a session (protocol 1.1.0), right after the session starts: which
    /// tools the session may use.
    SessionTools(Vec<ToolGrant>),
    /// Relay to the side that used a tool (protocol 1.1.0): that use was not forwarded.
    ToolRefused {
        /// The tool.
        tool: Tool,
        /// `TOOL_FORBIDDEN` or `TOOL_UNSUPPORTED`.
        code: ErrorCode,
        /// Why, in words.
        message: String,
    },
    /// Technician or streamer to the other side (protocol 1.1.0): the text now on the sender's
    /// clipboard, to put on the receiver's.
    ClipboardText {
        /// The text, at most 1 MiB of UTF-8.
        text: String,
    },
    /// Technician or streamer to the other side (protocol 1.2.0): a file to send. The receiver
    /// answers `FileAccept` with the bytes it already has of it (to resume), or `FileEnd`.
    FileOffer {
        /// Chosen by the technician (for its offers and requests); the streamer's offer that
        /// answers a `FileRequest` carries the request's id.
        transfer_id: u32,
        /// The file's size in bytes.
        size: u64,
        /// The SHA-256 of the whole file.
        sha256: [u8; 32],
        /// The file's name, without a folder (see [`crate::is_file_name`]).
        name: String,
    },
    /// Technician to streamer (protocol 1.2.0): send this file of the remote computer's.
    FileRequest {
        /// The transfer's id, which the answering `FileOffer` carries.
        transfer_id: u32,
        /// The file's path on the remote computer.
        path: String,
    },
    /// Receiver to sender (protocol 1.2.0): send the offered file from `offset` on.
    FileAccept {
        /// The transfer.
        transfer_id: u32,
        /// The bytes the receiver already has (0 for a new file).
        offset: u64,
    },
    /// Sender to receiver (protocol 1.2.0): file data at `offset`.
    FileChunk {
        /// The transfer.
        transfer_id: u32,
        /// Where the data starts in the file.
        offset: u64,
        /// 1 byte to 64 KiB.
        data: bytes::Bytes,
    },
    /// Receiver to sender (protocol 1.2.0): the bytes written so far (for progress and the
    /// sender's window).
    FileProgress {
        /// The transfer.
        transfer_id: u32,
        /// Bytes of the file the receiver has written.
        received: u64,
    },
    /// Either side (protocol 1.2.0): the transfer is over.
    FileEnd {
        /// The transfer.
        transfer_id: u32,
        /// How it ended.
        outcome: FileOutcome,
        /// Why, for people (may be empty when verified).
        message: String,
    },
    /// Technician or streamer to the other side (protocol 1.3.0): a line of chat, for the other
    /// person to read.
    ChatText {
        /// The line, 1 byte to 2 KiB of UTF-8.
        text: String,
    },
    /// Technician to streamer: a mouse event.
    MouseInput(MouseInput),
    /// Technician to streamer: a key event.
    KeyInput(KeyInput),
    /// Technician to streamer: text to type as is (IME, paste).
    TextInput {
        /// The text.
        text: String,
    },
}
