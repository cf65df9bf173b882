//! Stable error codes carried on the wire, the refusal they travel in, and decoding errors.

use std::fmt;

/// A stable, numbered reason for refusing a connection or a session (docs/PROTOCOL.md, "Error codes").
///
/// The numbers and names are a contract: clients and outside checks match on them, never on text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A message could not be decoded (peer's fault).
    MalformedMessage,
    /// A well-formed message arrived where the protocol does not allow it (peer's fault).
    UnexpectedMessage,
    /// A message exceeded the maximum size of its kind (peer's fault).
    MessageTooLarge,
    /// The peers share no protocol version (upgrade needed).
    ProtocolVersionUnsupported,
    /// A product or protocol version text is malformed (peer's fault).
    MalformedVersion,
    /// Too many attempts or messages; try again later (peer's fault).
    RateLimited,
    /// The peer took too long: to finish the handshake, or to answer a session offer.
    Timeout,
    /// The credential is unknown, wrong or expired (user's fault).
    AuthenticationFailed,
    /// The credential was revoked by the team (user's fault).
    CredentialRevoked,
    /// This kind of credential is not allowed for the announced role (peer's fault).
    CredentialNotAllowed,
    /// The device connected again on another connection, which replaced this one (protocol
    /// 1.4.0; older versions get `CREDENTIAL_REVOKED`). Connect again: if that was a copy of this
    /// device's credential, the relay notices and revokes the device.
    ConnectedElsewhere,
    /// The authenticated principal's role does not allow the action (user's fault).
    Forbidden,
    /// No such device in the technician's team (also for other teams' devices, so as not to leak them).
    DeviceNotFound,
    /// The device is known but its streamer is not connected.
    DeviceOffline,
    /// The device is already in a session.
    DeviceBusy,
    /// The session code is unknown, used or expired (user's fault).
    SessionCodeInvalid,
    /// The team records sessions and the streamer is older than 3.5.8.0 (SPEC section 3, contract).
    StreamerVersionUnsupported,
    /// Recording is required but storage cannot take it, so the session cannot go ahead (our fault).
    RecordingUnavailable,
    /// The end user declined the session.
    SessionDeclined,
    /// The team's settings forbid the tool that was used (clipboard), so it was not forwarded.
    ToolForbidden,
    /// The other side's software is too old for the tool that was used, so it was not forwarded.
    ToolUnsupported,
    /// A file offered for transfer is larger than the team's limit, so the offer was not forwarded.
    FileTooLarge,
    /// Something failed inside the relay (our fault).
    InternalError,
    /// The relay is shutting down; try again shortly.
    RelayShuttingDown,
    /// A code this implementation does not know, from a newer peer; its message still explains it.
    Unknown(u16),
}

/// Every known code with its number and stable name, in one table so they cannot drift apart.
const CODES: &[(ErrorCode, u16, &str)] = &[
    (ErrorCode::MalformedMessage, 100, "MALFORMED_MESSAGE"),
    (ErrorCode::UnexpectedMessage, 101, "UNEXPECTED_MESSAGE"),
    (ErrorCode::MessageTooLarge, 102, "MESSAGE_TOO_LARGE"),
    (
        ErrorCode::ProtocolVersionUnsupported,
        103,
        "PROTOCOL_VERSION_UNSUPPORTED",
    ),
    (ErrorCode::MalformedVersion, 104, "MALFORMED_VERSION"),
    (ErrorCode::RateLimited, 105, "RATE_LIMITED"),
    (ErrorCode::Timeout, 106, "TIMEOUT"),
    (
        ErrorCode::AuthenticationFailed,
        200,
        "AUTHENTICATION_FAILED",
    ),
    (ErrorCode::CredentialRevoked, 201, "CREDENTIAL_REVOKED"),
    (
        ErrorCode::CredentialNotAllowed,
        202,
        "CREDENTIAL_NOT_ALLOWED",
    ),
    (ErrorCode::Forbidden, 203, "FORBIDDEN"),
    (ErrorCode::ConnectedElsewhere, 204, "CONNECTED_ELSEWHERE"),
    (ErrorCode::DeviceNotFound, 300, "DEVICE_NOT_FOUND"),
    (ErrorCode::DeviceOffline, 301, "DEVICE_OFFLINE"),
    (ErrorCode::DeviceBusy, 302, "DEVICE_BUSY"),
    (ErrorCode::SessionCodeInvalid, 303, "SESSION_CODE_INVALID"),
    (
        ErrorCode::StreamerVersionUnsupported,
        304,
        "STREAMER_VERSION_UNSUPPORTED",
    ),
    (
        ErrorCode::RecordingUnavailable,
        305,
        "RECORDING_UNAVAILABLE",
    ),
    (ErrorCode::SessionDeclined, 306, "SESSION_DECLINED"),
    (ErrorCode::ToolForbidden, 307, "TOOL_FORBIDDEN"),
    (ErrorCode::ToolUnsupported, 308, "TOOL_UNSUPPORTED"),
    (ErrorCode::FileTooLarge, 309, "FILE_TOO_LARGE"),
    (ErrorCode::InternalError, 500, "INTERNAL_ERROR"),
    (ErrorCode::RelayShuttingDown, 501, "RELAY_SHUTTING_DOWN"),
];

impl ErrorCode {
    /// Every known code, for documentation and tests.
    pub fn all() -> impl Iterator<Item = ErrorCode> {
        CODES.iter().map(|(c, _, _)| *c)
    }

    /// The code's number on the wire.
    pub fn number(self) -> u16 {
        match self {
            ErrorCode::Unknown(n) => n,
            known => CODES
                .iter()
                .find(|(c, _, _)| *c == known)
                .map_or(0, |(_, n, _)| *n),
        }
    }

    /// The code for a number; numbers this side does not know become [`ErrorCode::Unknown`].
    pub fn from_number(n: u16) -> ErrorCode {
        CODES
            .iter()
            .find(|(_, num, _)| *num == n)
            .map_or(ErrorCode::Unknown(n), |(c, _, _)| *c)
    }

    /// The stable name, such as `STREAMER_VERSION_UNSUPPORTED`.
    pub fn name(self) -> &'static str {
        CODES
            .iter()
            .find(|(c, _, _)| *c == self)
            .map_or("UNKNOWN", |(_, _, name)| name)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCode::Unknown(n) => write!(f, "UNKNOWN({n})"),
            known => f.write_str(known.name()),
        }
    }
}

/// A refusal: a stable code and a sentence for a person to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    /// What went wrong, for programs.
    pub code: ErrorCode,
    /// What went wrong and what to do, for people.
    pub message: String,
}

impl Refusal {
    /// A refusal with its code and text.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

/// Bytes that are not a valid frame, or a message that cannot become one.
///
/// When decoding, every variant is the peer's fault; when encoding, the caller's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The frame header names a message kind this version does not define.
    #[error("unknown message kind 0x{0:02x}")]
    UnknownKind(u8),
    /// The frame announces a body larger than its kind allows.
    #[error("{kind} body of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The message kind's name.
        kind: &'static str,
        /// The announced body length.
        len: u64,
        /// The limit for this kind.
        max: u32,
    },
    /// A complete message was expected but the bytes end early.
    #[error("truncated frame: {needed} more bytes needed")]
    Truncated {
        /// How many more bytes would be needed at least.
        needed: usize,
    },
    /// A field ends past the end of the body.
    #[error("{kind}: field {field} runs past the end of the body")]
    FieldTruncated {
        /// The message kind's name.
        kind: &'static str,
        /// The field being read.
        field: &'static str,
    },
    /// Bytes remain after the last field of the body, or after the frame.
    #[error("{kind}: {extra} unexpected bytes after the last field")]
    TrailingBytes {
        /// The message kind's name.
        kind: &'static str,
        /// How many bytes are left over.
        extra: usize,
    },
    /// A text field is not UTF-8.
    #[error("{kind}: field {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The message kind's name.
        kind: &'static str,
        /// The field being read.
        field: &'static str,
    },
    /// A text, byte or list field is longer than its limit.
    #[error("{kind}: field {field} has length {len}, over its limit of {max}")]
    FieldTooLong {
        /// The message kind's name.
        kind: &'static str,
        /// The field being read.
        field: &'static str,
        /// Its length.
        len: usize,
        /// Its limit.
        max: usize,
    },
    /// A file name a receiver could not write as it is (a folder separator, `..`, a control
    /// character, `:`, or a trailing dot or space).
    #[error("{kind}: field {field} is not a plain file name")]
    InvalidFileName {
        /// The message kind's name.
        kind: &'static str,
        /// The field being read.
        field: &'static str,
    },
    /// A field holds a value outside its allowed set or range.
    #[error("{kind}: field {field} has invalid value {value}")]
    InvalidValue {
        /// The message kind's name.
        kind: &'static str,
        /// The field being read.
        field: &'static str,
        /// The value found.
        value: u64,
    },
}

impl WireError {
    /// The refusal a receiver sends back for this error.
    pub fn refusal(&self) -> Refusal {
        let code = match self {
            WireError::TooLarge { .. } => ErrorCode::MessageTooLarge,
            _ => ErrorCode::MalformedMessage,
        };
        Refusal::new(code, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_unique_numbers_and_names_that_round_trip() {
        let mut numbers = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for code in ErrorCode::all() {
            assert!(numbers.insert(code.number()), "{code} number reused");
            assert!(names.insert(code.name()), "{code} name reused");
            assert_eq!(ErrorCode::from_number(code.number()), code);
        }
        assert_eq!(ErrorCode::from_number(9999), ErrorCode::Unknown(9999));
        assert_eq!(ErrorCode::Unknown(9999).number(), 9999);
        assert_eq!(ErrorCode::StreamerVersionUnsupported.number(), 304);
    }
}
