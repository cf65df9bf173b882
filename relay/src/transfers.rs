//! The file transfers of one session as the relay sees them pass (protocol 1.2.0): which offers
//! are open, which side sends, how far the data has gone. The relay forwards a file's messages
//! only in their order (offer, accept, chunks within the offered size, progress, end), refuses an
//! offer over the team's limit, and names what goes into the audit trail: a transfer's start (after
//! the receiver accepts, from the byte it resumes at), its verified end with the SHA-256, and a
//! stop (cancelled, failed, a hash mismatch, or the session's end). The file's bytes are never
//! stored or recorded.

use std::collections::HashMap;

use protocol::{ErrorCode, FileOutcome, Message, Refusal, ToolState};

use crate::store::audit::Action;

/// A session's side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The technician.
    Technician,
    /// The streamer.
    Streamer,
}

impl Side {
    /// The direction of a file this side sends, as the audit trail words it.
    pub fn sending(self) -> &'static str {
        match self {
            Side::Technician => "technician → remote computer",
            Side::Streamer => "remote computer → technician",
        }
    }

    /// The other side, named for a sentence saying that its software lacks a tool this side has.
    pub fn other_software(self) -> &'static str {
        match self {
            Side::Technician => "The remote computer's streamer",
            Side::Streamer => "The technician's app",
        }
    }
}

impl From<protocol::Sender> for Side {
    fn from(sender: protocol::Sender) -> Self {
        match sender {
            protocol::Sender::Technician => Side::Technician,
            _ => Side::Streamer,
        }
    }
}

/// What the session allows.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The tool's state for the session.
    pub state: ToolState,
    /// The team's largest file, in bytes.
    pub max_file_bytes: u64,
}

#[derive(Debug)]
struct Transfer {
    from: Side,
    name: String,
    size: u64,
    sha256: [u8; 32],
    /// Where the receiver's accept started it, once accepted.
    accepted: Option<u64>,
    /// The end of the furthest chunk forwarded.
    reached: u64,
}

/// What to do with one file message.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Forward it.
    Forward,
    /// Write this to the audit trail, then forward it (not forwarded when the write fails).
    LogAndForward(Action, String),
    /// Do not forward it: answer the sender with `ToolRefused`; log this first, if any.
    Refuse(Refusal, Option<(Action, String)>),
}

/// A session's open transfers, by id.
#[derive(Debug, Default)]
pub struct Transfers {
    open: HashMap<u32, Transfer>,
}

/// The most transfers a session holds open at once: more offers are refused until one ends.
pub const MAX_OPEN: usize = 64;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unexpected(message: String) -> Verdict {
    Verdict::Refuse(Refusal::new(ErrorCode::UnexpectedMessage, message), None)
}

fn outcome_name(outcome: FileOutcome) -> &'static str {
    match outcome {
        FileOutcome::Verified => "verified",
        FileOutcome::HashMismatch => "hash_mismatch",
        FileOutcome::Cancelled => "cancelled",
        FileOutcome::Failed => "failed",
        FileOutcome::NotFound => "not_found",
        FileOutcome::TooLarge => "too_large",
    }
}

impl Transfers {
    /// Decides on `msg`, a file message `from` one side, under `policy`.
    pub fn check(&mut self, from: Side, msg: &Message, policy: Policy) -> Verdict {
        if policy.state != ToolState::Allowed {
            let (code, why) = match policy.state {
                ToolState::Forbidden => (
                    ErrorCode::ToolForbidden,
                    "Your team's settings do not allow file transfer in sessions: nothing was sent."
                        .to_owned(),
                ),
                _ => (
                    ErrorCode::ToolUnsupported,
                    format!(
                        "{} is too old for file transfer: nothing was sent.",
                        from.other_software()
                    ),
                ),
            };
            let log = match msg {
                Message::FileOffer { name, size, .. } => {
                    Some(format!("{}, {name}, {size} bytes, {code}", from.sending()))
                }
                Message::FileRequest { path, .. } => {
                    Some(format!("remote computer → technician, {path}, {code}"))
                }
                _ => None,
            };
            return Verdict::Refuse(
                Refusal::new(code, why),
                log.map(|d| (Action::TransferRefused, d)),
            );
        }
        match msg {
            Message::FileOffer {
                transfer_id,
                size,
                sha256,
                name,
            } => {
                if *size > policy.max_file_bytes {
                    let mb = policy.max_file_bytes / 1_000_000;
                    return Verdict::Refuse(
                        Refusal::new(
                            ErrorCode::FileTooLarge,
                            format!(
                                "{name} is {size} bytes; your team's limit is {mb} MB, so it was not sent."
                            ),
                        ),
                        Some((
                            Action::TransferRefused,
                            format!("{}, {name}, {size} bytes, FILE_TOO_LARGE", from.sending()),
                        )),
                    );
                }
                if !self.open.contains_key(transfer_id) && self.open.len() >= MAX_OPEN {
                    return unexpected(format!(
                        "At most {MAX_OPEN} transfers may be open in a session; end one first."
                    ));
                }
                self.open.insert(
                    *transfer_id,
                    Transfer {
                        from,
                        name: name.clone(),
                        size: *size,
                        sha256: *sha256,
                        accepted: None,
                        reached: 0,
                    },
                );
                // An offer is evidence too, taken or not (the technician may decline it).
                Verdict::LogAndForward(
                    Action::FileOffered,
                    format!(
                        "{}, {name}, {size} bytes, offered sha256 {}",
                        from.sending(),
                        hex(sha256)
                    ),
                )
            }
            // What a technician asks a computer for is evidence too, whether or not a file
            // comes of it (the streamer refuses its own data and what it cannot read).
            Message::FileRequest { path, .. } => Verdict::LogAndForward(
                Action::FileRequested,
                format!("{}, {path}", Side::Streamer.sending()),
            ),
            Message::FileAccept {
                transfer_id,
                offset,
            } => match self.open.get_mut(transfer_id) {
                Some(t) if t.from != from && *offset <= t.size => {
                    t.accepted = Some(*offset);
                    t.reached = *offset;
                    Verdict::LogAndForward(
                        Action::TransferStarted,
                        format!(
                            "{}, {}, {} bytes, from byte {offset}, offered sha256 {}",
                            t.from.sending(),
                            t.name,
                            t.size,
                            hex(&t.sha256)
                        ),
                    )
                }
                Some(t) if t.from != from => unexpected(format!(
                    "Transfer {transfer_id} is {} bytes: it cannot start at byte {offset}.",
                    t.size
                )),
                _ => unexpected(format!(
                    "No file offer {transfer_id} from the other side is open in this session."
                )),
            },
            Message::FileChunk {
                transfer_id,
                offset,
                data,
            } => match self.open.get_mut(transfer_id) {
                Some(t) if t.from == from && t.accepted.is_some() => {
                    let end = offset.saturating_add(data.len() as u64);
                    if end > t.size {
                        return unexpected(format!(
                            "Transfer {transfer_id} is {} bytes: data up to byte {end} does not belong to it.",
                            t.size
                        ));
                    }
                    t.reached = t.reached.max(end);
                    Verdict::Forward
                }
                _ => unexpected(format!(
                    "Transfer {transfer_id} is not an accepted offer of this side: its data was not sent."
                )),
            },
            Message::FileProgress { transfer_id, .. } => match self.open.get(transfer_id) {
                Some(t) if t.from != from => Verdict::Forward,
                _ => unexpected(format!(
                    "Transfer {transfer_id} is not a file this side receives."
                )),
            },
            Message::FileEnd {
                transfer_id,
                outcome,
                ..
            } => {
                // Only the receiver can say a file arrived whole: the sender's word would close
                // the transfer with no SHA-256 in the trail.
                if *outcome == FileOutcome::Verified
                    && self.open.get(transfer_id).is_some_and(|t| t.from == from)
                {
                    return unexpected(format!(
                        "Transfer {transfer_id} is yours to send: only its receiver says it arrived verified."
                    ));
                }
                let Some(t) = self.open.remove(transfer_id) else {
                    // The end of a request that never became an offer (a file not found), or
                    // of an offer already over: nothing crossed.
                    return Verdict::Forward;
                };
                if t.accepted.is_none() {
                    return Verdict::Forward;
                }
                if *outcome == FileOutcome::Verified && t.from != from {
                    Verdict::LogAndForward(
                        Action::TransferCompleted,
                        format!(
                            "{}, {}, {} bytes, sha256 {}",
                            t.from.sending(),
                            t.name,
                            t.size,
                            hex(&t.sha256)
                        ),
                    )
                } else {
                    Verdict::LogAndForward(
                        Action::TransferStopped,
                        format!(
                            "{}, {}, {}, at byte {} of {}",
                            t.from.sending(),
                            t.name,
                            outcome_name(*outcome),
                            t.reached,
                            t.size
                        ),
                    )
                }
            }
            _ => Verdict::Forward,
        }
    }

    /// The session ended: the audit details of the transfers it cut off (accepted, not ended).
    pub fn interrupted(&mut self) -> Vec<String> {
        let mut cut: Vec<String> = self
            .open
            .drain()
            .filter(|(_, t)| t.accepted.is_some())
            .map(|(_, t)| {
                format!(
                    "{}, {}, interrupted, at byte {} of {}",
                    t.from.sending(),
                    t.name,
                    t.reached,
                    t.size
                )
            })
            .collect();
        cut.sort();
        cut
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    const OPEN: Policy = Policy {
        state: ToolState::Allowed,
        max_file_bytes: 1_000_000,
    };

    fn offer(id: u32, size: u64) -> Message {
        Message::FileOffer {
            transfer_id: id,
            size,
            sha256: [0xab; 32],
            name: "report.pdf".into(),
        }
    }

    fn chunk(id: u32, offset: u64, n: usize) -> Message {
        Message::FileChunk {
            transfer_id: id,
            offset,
            data: Bytes::from(vec![1; n]),
        }
    }

    fn code(v: Verdict) -> ErrorCode {
        match v {
            Verdict::Refuse(r, _) => r.code,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_transfer_is_logged_at_its_start_and_its_verified_end() {
        let mut t = Transfers::default();
        // The offer itself is evidence, taken or not.
        assert_eq!(
            t.check(Side::Technician, &offer(7, 1000), OPEN),
            Verdict::LogAndForward(
                Action::FileOffered,
                format!(
                    "technician → remote computer, report.pdf, 1000 bytes, offered sha256 {}",
                    "ab".repeat(32)
                )
            )
        );
        let accept = Message::FileAccept {
            transfer_id: 7,
            offset: 400,
        };
        assert_eq!(
            t.check(Side::Streamer, &accept, OPEN),
            Verdict::LogAndForward(
                Action::TransferStarted,
                format!(
                    "technician → remote computer, report.pdf, 1000 bytes, from byte 400, offered sha256 {}",
                    "ab".repeat(32)
                )
            )
        );
        // The sender cannot close it as verified (no SHA-256 would reach the trail).
        let claimed = Message::FileEnd {
            transfer_id: 7,
            outcome: FileOutcome::Verified,
            message: String::new(),
        };
        assert_eq!(
            code(t.check(Side::Technician, &claimed, OPEN)),
            ErrorCode::UnexpectedMessage
        );
        assert_eq!(
            t.check(Side::Technician, &chunk(7, 400, 600), OPEN),
            Verdict::Forward
        );
        let end = Message::FileEnd {
            transfer_id: 7,
            outcome: FileOutcome::Verified,
            message: String::new(),
        };
        let Verdict::LogAndForward(Action::TransferCompleted, detail) =
            t.check(Side::Streamer, &end, OPEN)
        else {
            panic!()
        };
        assert_eq!(
            detail,
            format!(
                "technician → remote computer, report.pdf, 1000 bytes, sha256 {}",
                "ab".repeat(32)
            )
        );
        assert!(t.interrupted().is_empty());
    }

    #[test]
    fn out_of_order_or_out_of_bounds_file_messages_are_refused() {
        let mut t = Transfers::default();
        // Data before the receiver accepted, and an accept from the sender itself.
        t.check(Side::Streamer, &offer(1, 100), OPEN);
        assert_eq!(
            code(t.check(Side::Streamer, &chunk(1, 0, 10), OPEN)),
            ErrorCode::UnexpectedMessage
        );
        let accept = |offset| Message::FileAccept {
            transfer_id: 1,
            offset,
        };
        assert_eq!(
            code(t.check(Side::Streamer, &accept(0), OPEN)),
            ErrorCode::UnexpectedMessage
        );
        assert_eq!(
            code(t.check(Side::Technician, &accept(101), OPEN)),
            ErrorCode::UnexpectedMessage
        );
        assert!(matches!(
            t.check(Side::Technician, &accept(0), OPEN),
            Verdict::LogAndForward(Action::TransferStarted, _)
        ));
        // Past the offered size, from the wrong side, or for another id.
        assert_eq!(
            code(t.check(Side::Streamer, &chunk(1, 95, 10), OPEN)),
            ErrorCode::UnexpectedMessage
        );
        assert_eq!(
            code(t.check(Side::Technician, &chunk(1, 0, 10), OPEN)),
            ErrorCode::UnexpectedMessage
        );
        assert_eq!(
            code(t.check(Side::Streamer, &chunk(2, 0, 10), OPEN)),
            ErrorCode::UnexpectedMessage
        );
        assert_eq!(
            t.check(Side::Streamer, &chunk(1, 0, 60), OPEN),
            Verdict::Forward
        );
        // The session ends: the open transfer is cut off where its data had reached.
        assert_eq!(
            t.interrupted(),
            ["remote computer → technician, report.pdf, interrupted, at byte 60 of 100"]
        );
    }

    #[test]
    fn offers_over_the_limit_and_forbidden_tools_are_refused_and_logged() {
        let mut t = Transfers::default();
        let Verdict::Refuse(r, Some((Action::TransferRefused, detail))) =
            t.check(Side::Technician, &offer(1, 1_000_001), OPEN)
        else {
            panic!()
        };
        assert_eq!(r.code, ErrorCode::FileTooLarge);
        assert!(r.message.contains("limit is 1 MB"), "{}", r.message);
        assert_eq!(
            detail,
            "technician → remote computer, report.pdf, 1000001 bytes, FILE_TOO_LARGE"
        );
        let forbidden = Policy {
            state: ToolState::Forbidden,
            ..OPEN
        };
        let request = Message::FileRequest {
            transfer_id: 2,
            path: "/etc/hosts".into(),
        };
        let Verdict::Refuse(r, Some((_, detail))) = t.check(Side::Technician, &request, forbidden)
        else {
            panic!()
        };
        assert_eq!(r.code, ErrorCode::ToolForbidden);
        assert_eq!(
            detail,
            "remote computer → technician, /etc/hosts, TOOL_FORBIDDEN"
        );
        let unsupported = Policy {
            state: ToolState::Unsupported,
            ..OPEN
        };
        assert_eq!(
            code(t.check(Side::Streamer, &chunk(1, 0, 1), unsupported)),
            ErrorCode::ToolUnsupported
        );
    }

    #[test]
    fn a_stopped_transfer_is_logged_with_how_far_it_got() {
        let mut t = Transfers::default();
        t.check(Side::Streamer, &offer(3, 100), OPEN);
        t.check(
            Side::Technician,
            &Message::FileAccept {
                transfer_id: 3,
                offset: 0,
            },
            OPEN,
        );
        t.check(Side::Streamer, &chunk(3, 0, 30), OPEN);
        let end = Message::FileEnd {
            transfer_id: 3,
            outcome: FileOutcome::Cancelled,
            message: "stopped".into(),
        };
        assert_eq!(
            t.check(Side::Technician, &end, OPEN),
            Verdict::LogAndForward(
                Action::TransferStopped,
                "remote computer → technician, report.pdf, cancelled, at byte 30 of 100".into()
            )
        );
        // A sender cannot claim its own file verified: refused, and the transfer stays open for
        // its receiver's end (security review finding 18).
        t.check(Side::Streamer, &offer(4, 10), OPEN);
        t.check(
            Side::Technician,
            &Message::FileAccept {
                transfer_id: 4,
                offset: 0,
            },
            OPEN,
        );
        let claimed = Message::FileEnd {
            transfer_id: 4,
            outcome: FileOutcome::Verified,
            message: String::new(),
        };
        assert_eq!(
            code(t.check(Side::Streamer, &claimed, OPEN)),
            ErrorCode::UnexpectedMessage
        );
        assert_eq!(
            t.interrupted(),
            ["remote computer → technician, report.pdf, interrupted, at byte 0 of 10"]
        );
    }
}
