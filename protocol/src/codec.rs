//! Framing and the byte layout of every message: `kind u8 | body_len u32 BE | body`.
//!
//! docs/PROTOCOL.md specifies the same layout in prose and carries test vectors that
//! `tests/vectors.rs` checks against this code.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::body::{decode_body, encode_body};
use crate::error::WireError;
use crate::message::*;
use crate::wire::Writer;

/// Length of the frame header: kind (1 byte) and body length (4 bytes, big-endian).
pub const HEADER_LEN: usize = 5;

/// Who may send a message kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Sender {
    /// The relay.
    Relay,
    /// A technician client.
    Technician,
    /// A streamer agent.
    Streamer,
}

const R: u8 = 1;
const T: u8 = 2;
const S: u8 = 4;

const KIB: u32 = 1024;
const MIB: u32 = 1024 * 1024;

/// Text limits, in bytes of UTF-8.
pub mod limits {
    /// Ids of teams, devices and sessions.
    pub const ID: usize = 64;
    /// Names of people, devices and monitors.
    pub const NAME: usize = 256;
    /// Version texts.
    pub const VERSION: usize = 64;
    /// A monitor's identity from its platform (X11: the RandR monitor's name; Windows: the
    /// output's device name).
    pub const MONITOR_KEY: usize = 128;
    /// Tokens, secrets and codes.
    pub const SECRET: usize = 512;
    /// A session code as typed by the technician (nine digits when valid).
    pub const SESSION_CODE: usize = 16;
    /// Sentences for people: refusals, end reasons.
    pub const MESSAGE: usize = 1024;
    /// A `KeyboardEvent.code` value.
    pub const KEY_CODE: usize = 32;
    /// Typed text in one message.
    pub const TEXT: usize = 1024;
    /// Clipboard text in one message, in bytes of UTF-8.
    pub const CLIPBOARD: usize = 1 << 20;
    /// A chat line in one message, in bytes of UTF-8.
    pub const CHAT: usize = 2048;
    /// Tools in a session's tool list.
    pub const TOOLS: usize = 16;
    /// A file's name (no folder) in a transfer.
    pub const FILE_NAME: usize = 255;
    /// A path on the remote computer that the technician asks for.
    pub const FILE_PATH: usize = 4096;
    /// File data in one `FileChunk`.
    pub const FILE_CHUNK: usize = 64 * 1024;
    /// Monitors in a monitor list.
    pub const MONITORS: usize = 32;
    /// Devices in a device list.
    pub const DEVICES: usize = 4096;
    /// Largest video width or height.
    pub const MAX_DIMENSION: u16 = 16384;
    /// Largest frame rate.
    pub const MAX_FRAME_RATE: u16 = 120;
    /// Largest audio sample rate.
    pub const MAX_SAMPLE_RATE: u32 = 192_000;
}

macro_rules! kinds {
    ($($variant:ident = $n:literal, $max:expr, $senders:expr;)+) => {
        /// The kind of a message, its first byte on the wire.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum MessageKind {
            $(
                #[doc = concat!("`", stringify!($variant), "`, byte ", stringify!($n), ".")]
                $variant = $n,
            )+
        }

        impl MessageKind {
            /// Every kind, in wire order.
            pub const ALL: &'static [MessageKind] = &[$(MessageKind::$variant),+];

            /// The kind with this number, if any.
            pub fn from_u8(n: u8) -> Option<Self> {
                match n {
                    $($n => Some(MessageKind::$variant),)+
                    _ => None,
                }
            }

            /// The kind's name as docs/PROTOCOL.md spells it.
            pub fn name(self) -> &'static str {
                match self {
                    $(MessageKind::$variant => stringify!($variant),)+
                }
            }

            /// The largest body this kind may have; a larger frame is refused before it is read.
            pub fn max_body(self) -> u32 {
                match self {
                    $(MessageKind::$variant => $max,)+
                }
            }

            fn senders(self) -> u8 {
                match self {
                    $(MessageKind::$variant => $senders,)+
                }
            }
        }
    };
}

kinds! {
    Hello = 0x01, 4 * KIB, T | S;
    Welcome = 0x02, 256, R;
    Authenticate = 0x03, 4 * KIB, T | S;
    Registered = 0x04, 1024, R;
    SessionCodeIssued = 0x05, 64, R;
    Authenticated = 0x06, 1024, R;
    Refused = 0x07, 2 * KIB, R;
    ListDevices = 0x10, 0, T;
    DeviceList = 0x11, 2 * MIB, R;
    SessionRequest = 0x12, 1024, T;
    SessionOffer = 0x13, 1024, R;
    SessionAccept = 0x14, 128, S;
    SessionDecline = 0x15, 128, S;
    SessionStarted = 0x16, 1024, R;
    SessionRefused = 0x17, 2 * KIB, R;
    RecordingState = 0x18, 1, R;
    LimitWarning = 0x19, 8, R;
    LeaveSession = 0x1a, 0, T | S;
    SessionEnded = 0x1b, 2 * KIB, R;
    SessionTools = 0x1c, 64, R;
    ToolRefused = 0x1d, 2 * KIB, R;
    DeviceStatusList = 0x1e, 2 * MIB, R;
    VideoConfig = 0x20, 12, S;
    VideoFrame = 0x21, 8 * MIB, S;
    KeyframeRequest = 0x22, 0, T | R;
    MonitorList = 0x23, 16 * KIB, S;
    SwitchMonitor = 0x24, 4, T;
    SetFrameRate = 0x25, 2, T;
    AudioConfig = 0x26, 6, S;
    AudioFrame = 0x27, 8 * KIB, S;
    AudioUnavailable = 0x28, 2 * KIB, S;
    ReceiverReport = 0x29, 12, T;
    MouseInput = 0x30, 10, T;
    KeyInput = 0x31, 64, T;
    TextInput = 0x32, 2 * KIB, T;
    ClipboardText = 0x33, 1 << 20, T | S;
    FileOffer = 0x34, 512, T | S;
    FileRequest = 0x35, 4 * KIB + 8, T;
    FileAccept = 0x36, 12, T | S;
    FileChunk = 0x37, 64 * KIB + 12, T | S;
    FileProgress = 0x38, 12, T | S;
    FileEnd = 0x39, 2 * KIB, T | S;
    ChatText = 0x3a, 2 * KIB + 2, T | S;
}

impl MessageKind {
    /// Whether this kind is session traffic (media and remote control, 0x20 to 0x3f): what the
    /// relay forwards between the two sides of a session.
    pub fn is_session_traffic(self) -> bool {
        (0x20..=0x3f).contains(&(self as u8))
    }

    /// The protocol version (major, minor) that brought this kind: the relay sends a kind only to
    /// a peer whose agreed version has it.
    pub fn since(self) -> (u64, u64) {
        match self {
            MessageKind::SessionTools | MessageKind::ToolRefused | MessageKind::ClipboardText => {
                (1, 1)
            }
            k if k.is_file_transfer() => (1, 2),
            MessageKind::ChatText | MessageKind::DeviceStatusList => (1, 3),
            _ => (1, 0),
        }
    }

    /// Whether this kind is one of a file transfer's (`FileOffer` to `FileEnd`, protocol 1.2.0).
    pub fn is_file_transfer(self) -> bool {
        matches!(
            self,
            MessageKind::FileOffer
                | MessageKind::FileRequest
                | MessageKind::FileAccept
                | MessageKind::FileChunk
                | MessageKind::FileProgress
                | MessageKind::FileEnd
        )
    }

    /// Whether a peer that agreed on protocol version `agreed` knows this kind.
    pub fn known_at(self, agreed: &semver::Version) -> bool {
        (agreed.major, agreed.minor) >= self.since()
    }

    /// Whether `sender` may send this kind. Receivers refuse misdirected kinds.
    pub fn may_be_sent_by(self, sender: Sender) -> bool {
        let bit = match sender {
            Sender::Relay => R,
            Sender::Technician => T,
            Sender::Streamer => S,
        };
        self.senders() & bit != 0
    }
}

/// The largest frame of any kind, header included: what a transport should accept at most.
pub fn max_frame_len() -> usize {
    let max_body = MessageKind::ALL
        .iter()
        .map(|k| k.max_body())
        .max()
        .unwrap_or(0);
    HEADER_LEN + max_body as usize
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The message kind.
    pub kind: MessageKind,
    /// The body's length in bytes, already checked against the kind's limit.
    pub body_len: u32,
}

/// Reads a frame header from the start of `buf`: `Ok(None)` when fewer than 5 bytes are there.
///
/// Unknown kinds and bodies over the kind's limit are refused here, before any body byte is awaited.
pub fn parse_header(buf: &[u8]) -> Result<Option<FrameHeader>, WireError> {
    let Some(&[k, a, b, c, d]) = buf.get(..HEADER_LEN) else {
        return Ok(None);
    };
    let kind = MessageKind::from_u8(k).ok_or(WireError::UnknownKind(k))?;
    let body_len = u32::from_be_bytes([a, b, c, d]);
    if body_len > kind.max_body() {
        return Err(WireError::TooLarge {
            kind: kind.name(),
            len: body_len.into(),
            max: kind.max_body(),
        });
    }
    Ok(Some(FrameHeader { kind, body_len }))
}

/// Decodes exactly one frame, such as one WebSocket binary message.
///
/// Payloads of video and audio frames are slices of `frame`, not copies.
pub fn decode_frame(mut frame: Bytes) -> Result<Message, WireError> {
    let Some(header) = parse_header(&frame)? else {
        return Err(WireError::Truncated {
            needed: HEADER_LEN - frame.len(),
        });
    };
    let total = HEADER_LEN + header.body_len as usize;
    if frame.len() < total {
        return Err(WireError::Truncated {
            needed: total - frame.len(),
        });
    }
    if frame.len() > total {
        return Err(WireError::TrailingBytes {
            kind: header.kind.name(),
            extra: frame.len() - total,
        });
    }
    frame.advance(HEADER_LEN);
    decode_body(header.kind, frame)
}

/// Splits frames out of a byte stream (for transports without message boundaries, and fuzzing).
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet returned as a message: at the end of a stream, a cut-off frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete message, `Ok(None)` when more bytes are needed.
    ///
    /// After an error the stream cannot be resynchronised: the caller closes the connection.
    pub fn next_message(&mut self) -> Result<Option<Message>, WireError> {
        let Some(header) = parse_header(&self.buf)? else {
            return Ok(None);
        };
        let total = HEADER_LEN + header.body_len as usize;
        if self.buf.len() < total {
            // Reserve now so that a large frame arrives without repeated reallocation; the header was
            // already checked against the kind's limit, so this is bounded.
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        let mut frame = self.buf.split_to(total).freeze();
        frame.advance(HEADER_LEN);
        decode_body(header.kind, frame).map(Some)
    }
}

/// Appends `msg` as one frame to `out`. On error nothing is appended.
pub fn encode(msg: &Message, out: &mut BytesMut) -> Result<(), WireError> {
    let start = out.len();
    let kind = msg.kind();
    out.put_u8(kind as u8);
    out.put_u32(0);
    let result = encode_body(msg, &mut Writer::new(kind.name(), out)).and_then(|()| {
        let body_len = out.len() - start - HEADER_LEN;
        match u32::try_from(body_len) {
            Ok(len) if len <= kind.max_body() => Ok(len),
            _ => Err(WireError::TooLarge {
                kind: kind.name(),
                len: body_len as u64,
                max: kind.max_body(),
            }),
        }
    });
    match result {
        Ok(len) => {
            out[start + 1..start + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
            Ok(())
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}

/// Encodes `msg` as one frame in a buffer of its own.
pub fn encode_to_bytes(msg: &Message) -> Result<Bytes, WireError> {
    let mut out = BytesMut::new();
    encode(msg, &mut out)?;
    Ok(out.freeze())
}

impl Message {
    /// The message's kind.
    pub fn kind(&self) -> MessageKind {
        use MessageKind as K;
        match self {
            Message::Hello { .. } => K::Hello,
            Message::Welcome { .. } => K::Welcome,
            Message::Authenticate(_) => K::Authenticate,
            Message::Registered { .. } => K::Registered,
            Message::SessionCodeIssued { .. } => K::SessionCodeIssued,
            Message::Authenticated { .. } => K::Authenticated,
            Message::Refused { .. } => K::Refused,
            Message::ListDevices => K::ListDevices,
            Message::DeviceList(_) => K::DeviceList,
            Message::DeviceStatusList(_) => K::DeviceStatusList,
            Message::SessionRequest { .. } => K::SessionRequest,
            Message::SessionOffer { .. } => K::SessionOffer,
            Message::SessionAccept { .. } => K::SessionAccept,
            Message::SessionDecline { .. } => K::SessionDecline,
            Message::SessionStarted { .. } => K::SessionStarted,
            Message::SessionRefused { .. } => K::SessionRefused,
            Message::RecordingState { .. } => K::RecordingState,
            Message::LimitWarning { .. } => K::LimitWarning,
            Message::LeaveSession => K::LeaveSession,
            Message::SessionEnded { .. } => K::SessionEnded,
            Message::VideoConfig(_) => K::VideoConfig,
            Message::VideoFrame(_) => K::VideoFrame,
            Message::KeyframeRequest => K::KeyframeRequest,
            Message::MonitorList(_) => K::MonitorList,
            Message::SwitchMonitor { .. } => K::SwitchMonitor,
            Message::SetFrameRate { .. } => K::SetFrameRate,
            Message::AudioConfig { .. } => K::AudioConfig,
            Message::AudioFrame(_) => K::AudioFrame,
            Message::AudioUnavailable { .. } => K::AudioUnavailable,
            Message::ReceiverReport(_) => K::ReceiverReport,
            Message::MouseInput(_) => K::MouseInput,
            Message::KeyInput(_) => K::KeyInput,
            Message::TextInput { .. } => K::TextInput,
            Message::SessionTools(_) => K::SessionTools,
            Message::ToolRefused { .. } => K::ToolRefused,
            Message::ClipboardText { .. } => K::ClipboardText,
            Message::FileOffer { .. } => K::FileOffer,
            Message::FileRequest { .. } => K::FileRequest,
            Message::FileAccept { .. } => K::FileAccept,
            Message::FileChunk { .. } => K::FileChunk,
            Message::FileProgress { .. } => K::FileProgress,
            Message::FileEnd { .. } => K::FileEnd,
            Message::ChatText { .. } => K::ChatText,
        }
    }
}
