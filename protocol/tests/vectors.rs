//! The byte-exact test vectors of docs/PROTOCOL.md, checked against the code so the two cannot drift.
//!
//! The document holds, in ```` ```vectors ```` blocks, lines `vector: NAME` or `refused: NAME CODE`
//! followed by the frame in hex. Every valid vector must decode to the message this file names for it
//! and encode back to the same bytes; every refused vector must be refused with its error code.

// Test helpers unwrap on purpose: a failure should stop the test loudly where it happens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use bytes::Bytes;
use protocol::*;

const DOC: &str = include_str!("../../docs/PROTOCOL.md");

fn expected() -> BTreeMap<&'static str, Message> {
    let spec_text = streamer_version_unsupported_text(&"3.5.7.9".parse().unwrap());
    BTreeMap::from([
        (
            "hello-technician",
            Message::Hello {
                role: Role::Technician,
                product_version: "3.5.8.0".into(),
                protocol_versions: vec!["1.0.0".into()],
            },
        ),
        (
            "welcome",
            Message::Welcome {
                protocol_version: "1.0.0".into(),
                relay_version: "3.5.8.0".into(),
            },
        ),
        (
            "authenticate-technician-token",
            Message::Authenticate(Credential::TechnicianToken {
                token: "tok".into(),
            }),
        ),
        (
            "authenticate-device",
            Message::Authenticate(Credential::Device {
                device_id: "d1".into(),
                secret: "s".into(),
            }),
        ),
        (
            "authenticated",
            Message::Authenticated {
                team_id: "t1".into(),
                name: "Ada".into(),
            },
        ),
        (
            "refused-malformed-version",
            Message::Refused {
                code: ErrorCode::MalformedVersion,
                message: "bad".into(),
            },
        ),
        ("list-devices", Message::ListDevices),
        (
            "device-list",
            Message::DeviceList(vec![DeviceInfo {
                id: "d1".into(),
                name: "PC".into(),
                online: true,
                busy: false,
                streamer_version: Some("3.5.8.0".into()),
            }]),
        ),
        (
            "device-status-list",
            Message::DeviceStatusList(vec![
                DeviceInfo {
                    id: "d1".into(),
                    name: "PC".into(),
                    online: true,
                    busy: true,
                    streamer_version: Some("3.5.8.0".into()),
                },
                DeviceInfo {
                    id: "d2".into(),
                    name: "Mac".into(),
                    online: false,
                    busy: false,
                    streamer_version: None,
                },
            ]),
        ),
        (
            "session-request-code",
            Message::SessionRequest {
                target: SessionTarget::Code {
                    code: "123456789".into(),
                },
                view: ViewRequest {
                    frame_rate: Some(10),
                    monitor_id: None,
                },
            },
        ),
        (
            "session-started",
            Message::SessionStarted {
                session_id: "s1".into(),
                device_name: "PC".into(),
                streamer_version: "3.5.8.0".into(),
                access: AccessType::Unattended,
                recorded: true,
            },
        ),
        (
            "session-refused-streamer-version",
            Message::SessionRefused {
                code: ErrorCode::StreamerVersionUnsupported,
                message: spec_text,
            },
        ),
        (
            "recording-state-on",
            Message::RecordingState { recorded: true },
        ),
        (
            "limit-warning-5-minutes",
            Message::LimitWarning {
                time_left_ms: 300_000,
            },
        ),
        (
            "session-ended-time-limit",
            Message::SessionEnded {
                reason: EndReason::TimeLimitReached,
                message: "24 h".into(),
            },
        ),
        (
            "video-config-1080p30",
            Message::VideoConfig(VideoConfig {
                codec: VideoCodec::H264,
                width: 1920,
                height: 1080,
                frame_rate: 30,
                monitor_id: 0,
                orientation: Orientation::Landscape,
            }),
        ),
        (
            "video-frame-keyframe",
            Message::VideoFrame(VideoFrame {
                keyframe: true,
                timestamp_us: 33_333,
                payload: Bytes::from_static(&[0, 0, 0, 1, 0x65, 0x88]),
            }),
        ),
        ("keyframe-request", Message::KeyframeRequest),
        (
            "monitor-list",
            Message::MonitorList(vec![MonitorInfo {
                id: 0,
                key: "DP-1".into(),
                name: "A".into(),
                x: -1920,
                y: 0,
                width: 1920,
                height: 1080,
                primary: false,
            }]),
        ),
        (
            "set-frame-rate-15",
            Message::SetFrameRate { frame_rate: 15 },
        ),
        (
            "receiver-report",
            Message::ReceiverReport(ReceiverReport {
                newest_timestamp_us: 2_000_000,
                frames: 30,
                queue_delay_ms: 120,
            }),
        ),
        (
            "mouse-left-down",
            Message::MouseInput(MouseInput {
                action: MouseAction::Down,
                button: MouseButton::Left,
                x: 100,
                y: 200,
                wheel_x: 0,
                wheel_y: 0,
            }),
        ),
        (
            "mouse-wheel-up",
            Message::MouseInput(MouseInput {
                action: MouseAction::Wheel,
                button: MouseButton::None,
                x: 0,
                y: 0,
                wheel_x: 0,
                wheel_y: -3,
            }),
        ),
        (
            "session-tools-clipboard-forbidden",
            Message::SessionTools(vec![ToolGrant {
                tool: Tool::Clipboard,
                state: ToolState::Forbidden,
            }]),
        ),
        (
            "tool-refused-clipboard",
            Message::ToolRefused {
                tool: Tool::Clipboard,
                code: ErrorCode::ToolForbidden,
                message: "off".into(),
            },
        ),
        (
            "file-offer",
            Message::FileOffer {
                transfer_id: 1,
                size: 3,
                // SHA-256 of "abc".
                sha256: [
                    0xba, 0x78, 0x16, 0xbf, 0x8f, 0x01, 0xcf, 0xea, 0x41, 0x41, 0x40, 0xde, 0x5d,
                    0xae, 0x22, 0x23, 0xb0, 0x03, 0x61, 0xa3, 0x96, 0x17, 0x7a, 0x9c, 0xb4, 0x10,
                    0xff, 0x61, 0xf2, 0x00, 0x15, 0xad,
                ],
                name: "a.txt".into(),
            },
        ),
        (
            "file-request",
            Message::FileRequest {
                transfer_id: 2,
                path: "/tmp/x".into(),
            },
        ),
        (
            "file-accept",
            Message::FileAccept {
                transfer_id: 1,
                offset: 0,
            },
        ),
        (
            "file-chunk",
            Message::FileChunk {
                transfer_id: 1,
                offset: 0,
                data: Bytes::from_static(b"abc"),
            },
        ),
        (
            "file-progress",
            Message::FileProgress {
                transfer_id: 1,
                received: 3,
            },
        ),
        (
            "file-end-verified",
            Message::FileEnd {
                transfer_id: 1,
                outcome: FileOutcome::Verified,
                message: String::new(),
            },
        ),
        (
            "chat-text",
            Message::ChatText {
                text: "Hi, café?".into(),
            },
        ),
        (
            "session-tools-chat-allowed",
            Message::SessionTools(vec![ToolGrant {
                tool: Tool::Chat,
                state: ToolState::Allowed,
            }]),
        ),
        (
            "clipboard-text",
            Message::ClipboardText {
                text: "héllo".into(),
            },
        ),
        (
            "key-a-down-shift",
            Message::KeyInput(KeyInput {
                code: "KeyA".into(),
                down: true,
                modifiers: Modifiers(Modifiers::SHIFT),
            }),
        ),
    ])
}

struct Vector {
    name: String,
    refused_with: Option<String>,
    /// An `accepted:` frame: decoded, never written this way (an earlier layout still understood).
    read_only: bool,
    bytes: Vec<u8>,
}

/// The messages of the `accepted:` vectors: frames in an earlier layout that receivers still read.
fn accepted() -> BTreeMap<&'static str, Message> {
    BTreeMap::from([(
        "session-request-code-without-view",
        Message::SessionRequest {
            target: SessionTarget::Code {
                code: "123456789".into(),
            },
            view: ViewRequest::default(),
        },
    )])
}

fn parse_hex(line: &str, name: &str) -> Vec<u8> {
    line.split_whitespace()
        .map(|b| u8::from_str_radix(b, 16).unwrap_or_else(|_| panic!("{name}: bad hex byte {b:?}")))
        .collect()
}

fn vectors_in_doc() -> Vec<Vector> {
    let mut out: Vec<Vector> = Vec::new();
    let mut in_block = false;
    for line in DOC.lines() {
        let line = line.trim();
        if line == "```vectors" {
            in_block = true;
        } else if in_block && line == "```" {
            in_block = false;
        } else if !in_block || line.is_empty() || line.starts_with('#') {
            continue;
        } else if let Some(name) = line.strip_prefix("vector: ") {
            out.push(Vector {
                name: name.trim().to_owned(),
                refused_with: None,
                read_only: false,
                bytes: Vec::new(),
            });
        } else if let Some(name) = line.strip_prefix("accepted: ") {
            out.push(Vector {
                name: name.trim().to_owned(),
                refused_with: None,
                read_only: true,
                bytes: Vec::new(),
            });
        } else if let Some(rest) = line.strip_prefix("refused: ") {
            let (name, code) = rest.split_once(' ').expect("refused: NAME CODE");
            out.push(Vector {
                name: name.to_owned(),
                refused_with: Some(code.trim().to_owned()),
                read_only: false,
                bytes: Vec::new(),
            });
        } else {
            let v = out.last_mut().expect("hex before any vector name");
            let bytes = parse_hex(line, &v.name);
            v.bytes.extend(bytes);
        }
    }
    out
}

/// A frame's header declares its body's length: a vector must carry exactly that many body bytes,
/// except the ones refused for their header alone (too short, an unknown kind, or more than the
/// kind's maximum declared, where the body is left out).
fn assert_declared_length(v: &Vector) {
    let Some(header) = parse_header(&v.bytes).ok().flatten() else {
        return;
    };
    assert_eq!(
        v.bytes.len() - HEADER_LEN,
        header.body_len as usize,
        "vector {} declares {} body bytes and carries {}",
        v.name,
        header.body_len,
        v.bytes.len() - HEADER_LEN
    );
}

/// A vector in the document's own format, for failure messages.
fn doc_form(name: &str, msg: &Message) -> String {
    let hex: Vec<String> = encode_to_bytes(msg)
        .unwrap()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let lines: Vec<String> = hex.chunks(16).map(|c| c.join(" ")).collect();
    format!("vector: {name}\n{}\n", lines.join("\n"))
}

#[test]
fn document_vectors_match_the_code() {
    let expected = expected();
    let accepted = accepted();
    let vectors = vectors_in_doc();
    let mut seen = Vec::new();
    for v in &vectors {
        let frame = Bytes::from(v.bytes.clone());
        assert_declared_length(v);
        match &v.refused_with {
            None if v.read_only => {
                let want = accepted.get(v.name.as_str()).unwrap_or_else(|| {
                    panic!(
                        "docs/PROTOCOL.md has accepted frame {} that this test does not know",
                        v.name
                    )
                });
                assert_eq!(&decode_frame(frame).unwrap(), want, "decoding {}", v.name);
                seen.push(v.name.as_str());
            }
            None => {
                let want = expected.get(v.name.as_str()).unwrap_or_else(|| {
                    panic!(
                        "docs/PROTOCOL.md has vector {} that this test does not know",
                        v.name
                    )
                });
                assert_eq!(
                    &decode_frame(frame).unwrap(),
                    want,
                    "decoding vector {}",
                    v.name
                );
                let encoded = encode_to_bytes(want).unwrap();
                assert_eq!(
                    encoded.to_vec(),
                    v.bytes,
                    "encoding vector {}; the code says:\n{}",
                    v.name,
                    doc_form(&v.name, want)
                );
                seen.push(v.name.as_str());
            }
            Some(code) => {
                let err = decode_frame(frame).unwrap_err();
                assert_eq!(err.refusal().code.name(), code, "vector {}: {err}", v.name);
            }
        }
    }
    for name in accepted.keys() {
        assert!(
            seen.contains(name),
            "docs/PROTOCOL.md lacks the accepted frame {name}"
        );
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|(name, _)| !seen.contains(name))
        .map(|(name, msg)| doc_form(name, msg))
        .collect();
    assert!(
        missing.is_empty(),
        "docs/PROTOCOL.md lacks these vectors; the code encodes them as:\n\n{}",
        missing.join("\n")
    );
    assert!(vectors.iter().filter(|v| v.refused_with.is_some()).count() >= 4);
}
