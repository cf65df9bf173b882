//! The wire protocol spoken by the technician app, the relay and the streamer agent, without IO.
//!
//! This crate is sans-IO: it never opens a socket, spawns a task or reads the clock. It turns
//! [`Message`] values into frames and back ([`codec`]), defines the four-part [`ProductVersion`] and
//! the recording gate ([`version`]), and drives the connection [`handshake`] as state machines that
//! callers feed with messages. docs/PROTOCOL.md is its specification; `tests/vectors.rs` holds the
//! two together.

mod body;
pub use body::is_file_name;
pub mod codec;
pub mod error;
pub mod handshake;
pub mod message;
pub mod version;
mod wire;

pub use codec::{
    decode_frame, encode, encode_to_bytes, limits, max_frame_len, parse_header, FrameDecoder,
    FrameHeader, MessageKind, Sender, HEADER_LEN,
};
pub use error::{ErrorCode, Refusal, WireError};
pub use handshake::{
    ClientEvent, ClientHandshake, ClientHandshakeError, Issued, Peer, RelayAction, RelayHandshake,
    Verified,
};
pub use message::*;
pub use version::{
    negotiate_protocol, recorded_session_gate, rotates_device_secret,
    streamer_version_unsupported_text, ProductVersion, VersionError, DEVICE_SECRET_ROTATION,
    MIN_RECORDED_STREAMER, PROTOCOL_VERSIONS,
};
