//! Property tests: every message survives encode then decode, and no input makes the decoder panic.

// Test helpers unwrap on purpose: a failure should stop the test loudly where it happens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use proptest::prelude::*;
use protocol::*;

/// Any valid `ViewRequest`.
fn view() -> impl Strategy<Value = ViewRequest> {
    (
        proptest::option::of(1u16..=120),
        proptest::option::of(0u32..u32::MAX),
    )
        .prop_map(|(frame_rate, monitor_id)| ViewRequest {
            frame_rate,
            monitor_id,
        })
}

fn text(max: usize) -> impl Strategy<Value = String> {
    // Mixed ASCII and multi-byte characters, cut to `max` bytes at a character boundary.
    proptest::string::string_regex(".{0,40}")
        .unwrap()
        .prop_map(move |mut s| {
            while s.len() > max {
                s.pop();
            }
            s
        })
}

fn id() -> impl Strategy<Value = String> {
    text(limits::ID)
}

fn name() -> impl Strategy<Value = String> {
    text(limits::NAME)
}

fn payload(max: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    let known: Vec<ErrorCode> = ErrorCode::all().collect();
    prop_oneof![
        proptest::sample::select(known),
        any::<u16>().prop_map(ErrorCode::from_number),
    ]
}

fn end_reason() -> impl Strategy<Value = EndReason> {
    let known: Vec<EndReason> = EndReason::all().collect();
    prop_oneof![
        proptest::sample::select(known),
        any::<u8>().prop_map(EndReason::from_number),
    ]
}

fn access() -> impl Strategy<Value = AccessType> {
    prop_oneof![Just(AccessType::Attended), Just(AccessType::Unattended)]
}

fn dimension() -> impl Strategy<Value = u16> {
    1..=limits::MAX_DIMENSION
}

fn credential() -> impl Strategy<Value = Credential> {
    prop_oneof![
        text(limits::SECRET).prop_map(|token| Credential::TechnicianToken { token }),
        (id(), text(limits::SECRET))
            .prop_map(|(device_id, secret)| Credential::Device { device_id, secret }),
        (text(limits::SECRET), name())
            .prop_map(|(code, device_name)| Credential::DeploymentCode { code, device_name }),
        (text(limits::SECRET), name()).prop_map(|(team_key, device_name)| Credential::Attended {
            team_key,
            device_name
        }),
    ]
}

/// A device as a `DeviceList` carries it (never busy: that list has no such state).
fn device() -> impl Strategy<Value = DeviceInfo> {
    (
        id(),
        name(),
        any::<bool>(),
        proptest::option::of(text(limits::VERSION)),
    )
        .prop_map(|(id, name, online, streamer_version)| DeviceInfo {
            id,
            name,
            online,
            busy: false,
            streamer_version,
        })
}

/// A device as a `DeviceStatusList` carries it: offline, online, or online and busy.
fn device_status() -> impl Strategy<Value = DeviceInfo> {
    (device(), 0..3u8).prop_map(|(d, state)| DeviceInfo {
        online: state > 0,
        busy: state == 2,
        ..d
    })
}

fn monitor() -> impl Strategy<Value = MonitorInfo> {
    (
        (any::<u32>(), text(limits::MONITOR_KEY)),
        name(),
        any::<i32>(),
        any::<i32>(),
        dimension(),
        dimension(),
        any::<bool>(),
    )
        .prop_map(
            |((id, key), name, x, y, width, height, primary)| MonitorInfo {
                id,
                key: if key.is_empty() { "k".into() } else { key },
                name,
                x,
                y,
                width,
                height,
                primary,
            },
        )
}

fn mouse() -> impl Strategy<Value = MouseInput> {
    let action = prop_oneof![
        Just(MouseAction::Move),
        Just(MouseAction::Down),
        Just(MouseAction::Up),
        Just(MouseAction::Wheel)
    ];
    let button = prop_oneof![
        Just(MouseButton::None),
        Just(MouseButton::Left),
        Just(MouseButton::Right),
        Just(MouseButton::Middle),
        Just(MouseButton::Back),
        Just(MouseButton::Forward)
    ];
    (
        action,
        button,
        any::<u16>(),
        any::<u16>(),
        any::<i16>(),
        any::<i16>(),
    )
        .prop_map(|(action, button, x, y, wheel_x, wheel_y)| MouseInput {
            action,
            button,
            x,
            y,
            wheel_x,
            wheel_y,
        })
}

fn message() -> impl Strategy<Value = Message> {
    let role = prop_oneof![Just(Role::Technician), Just(Role::Streamer)];
    let orientation = prop_oneof![Just(Orientation::Landscape), Just(Orientation::Portrait)];
    prop_oneof![
        (
            role,
            text(limits::VERSION),
            proptest::collection::vec(text(limits::VERSION), 0..16)
        )
            .prop_map(
                |(role, product_version, protocol_versions)| Message::Hello {
                    role,
                    product_version,
                    protocol_versions
                }
            ),
        (text(limits::VERSION), text(limits::VERSION)).prop_map(
            |(protocol_version, relay_version)| {
                Message::Welcome {
                    protocol_version,
                    relay_version,
                }
            }
        ),
        credential().prop_map(Message::Authenticate),
        (id(), text(limits::SECRET))
            .prop_map(|(device_id, secret)| Message::Registered { device_id, secret }),
        (text(limits::SESSION_CODE), any::<u32>()).prop_map(|(code, expires_in_secs)| {
            Message::SessionCodeIssued {
                code,
                expires_in_secs,
            }
        }),
        (id(), name()).prop_map(|(team_id, name)| Message::Authenticated { team_id, name }),
        (error_code(), text(limits::MESSAGE))
            .prop_map(|(code, message)| Message::Refused { code, message }),
        Just(Message::ListDevices),
        proptest::collection::vec(device(), 0..20).prop_map(Message::DeviceList),
        proptest::collection::vec(device_status(), 0..20).prop_map(Message::DeviceStatusList),
        prop_oneof![
            id().prop_map(|device_id| SessionTarget::Device { device_id }),
            text(limits::SESSION_CODE).prop_map(|code| SessionTarget::Code { code }),
        ]
        .prop_flat_map(
            |target| view().prop_map(move |view| Message::SessionRequest {
                target: target.clone(),
                view
            })
        ),
        (id(), name(), access(), any::<bool>(), view()).prop_map(
            |(session_id, technician, access, recorded, view)| {
                Message::SessionOffer {
                    session_id,
                    technician,
                    access,
                    recorded,
                    view,
                }
            }
        ),
        id().prop_map(|session_id| Message::SessionAccept { session_id }),
        id().prop_map(|session_id| Message::SessionDecline { session_id }),
        (id(), name(), text(limits::VERSION), access(), any::<bool>()).prop_map(
            |(session_id, device_name, streamer_version, access, recorded)| {
                Message::SessionStarted {
                    session_id,
                    device_name,
                    streamer_version,
                    access,
                    recorded,
                }
            }
        ),
        (error_code(), text(limits::MESSAGE))
            .prop_map(|(code, message)| Message::SessionRefused { code, message }),
        any::<bool>().prop_map(|recorded| Message::RecordingState { recorded }),
        any::<u64>().prop_map(|time_left_ms| Message::LimitWarning { time_left_ms }),
        Just(Message::LeaveSession),
        (end_reason(), text(limits::MESSAGE))
            .prop_map(|(reason, message)| Message::SessionEnded { reason, message }),
        (
            dimension(),
            dimension(),
            1..=limits::MAX_FRAME_RATE,
            any::<u32>(),
            orientation
        )
            .prop_map(|(width, height, frame_rate, monitor_id, orientation)| {
                Message::VideoConfig(VideoConfig {
                    codec: VideoCodec::H264,
                    width,
                    height,
                    frame_rate,
                    monitor_id,
                    orientation,
                })
            }),
        (any::<bool>(), any::<u64>(), payload(4096)).prop_map(
            |(keyframe, timestamp_us, payload)| {
                Message::VideoFrame(VideoFrame {
                    keyframe,
                    timestamp_us,
                    payload,
                })
            }
        ),
        Just(Message::KeyframeRequest),
        proptest::collection::vec(monitor(), 0..limits::MONITORS).prop_map(Message::MonitorList),
        any::<u32>().prop_map(|monitor_id| Message::SwitchMonitor { monitor_id }),
        (1..=limits::MAX_FRAME_RATE).prop_map(|frame_rate| Message::SetFrameRate { frame_rate }),
        (1..=limits::MAX_SAMPLE_RATE, 1u8..=2).prop_map(|(sample_rate, channels)| {
            Message::AudioConfig {
                codec: AudioCodec::Opus,
                sample_rate,
                channels,
            }
        }),
        (any::<u64>(), payload(1500)).prop_map(|(timestamp_us, payload)| Message::AudioFrame(
            AudioFrame {
                timestamp_us,
                payload
            }
        )),
        text(limits::MESSAGE).prop_map(|reason| Message::AudioUnavailable { reason }),
        mouse().prop_map(Message::MouseInput),
        (text(limits::KEY_CODE), any::<bool>(), 0..=Modifiers::ALL).prop_map(|(code, down, m)| {
            Message::KeyInput(KeyInput {
                code,
                down,
                modifiers: Modifiers(m),
            })
        }),
        text(limits::TEXT).prop_map(|text| Message::TextInput { text }),
        proptest::collection::vec((0..Tool::ALL.len(), 0..3usize), 0..=limits::TOOLS).prop_map(
            |v| {
                Message::SessionTools(
                    v.into_iter()
                        .map(|(t, s)| ToolGrant {
                            tool: Tool::ALL[t],
                            state: [
                                ToolState::Allowed,
                                ToolState::Forbidden,
                                ToolState::Unsupported,
                            ][s],
                        })
                        .collect(),
                )
            }
        ),
        (any::<u16>(), text(limits::MESSAGE)).prop_map(|(n, message)| Message::ToolRefused {
            tool: Tool::Clipboard,
            code: ErrorCode::from_number(n),
            message,
        }),
        text(4096).prop_map(|text| Message::ClipboardText { text }),
        text(limits::CHAT)
            .prop_filter("a chat line is not empty", |t| !t.is_empty())
            .prop_map(|text| Message::ChatText { text }),
        file_message(),
    ]
}

fn file_name() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[a-zA-Z0-9é ._()-]{0,40}[a-zA-Z0-9é_)-]").unwrap()
}

fn file_message() -> impl Strategy<Value = Message> {
    let outcome = prop_oneof![
        Just(FileOutcome::Verified),
        Just(FileOutcome::HashMismatch),
        Just(FileOutcome::Cancelled),
        Just(FileOutcome::Failed),
        Just(FileOutcome::NotFound),
        Just(FileOutcome::TooLarge),
    ];
    prop_oneof![
        (any::<u32>(), any::<u64>(), any::<[u8; 32]>(), file_name()).prop_map(
            |(transfer_id, size, sha256, name)| Message::FileOffer {
                transfer_id,
                size,
                sha256,
                name
            }
        ),
        (any::<u32>(), text(64))
            .prop_filter("a path", |(_, p)| !p.is_empty())
            .prop_map(|(transfer_id, path)| Message::FileRequest { transfer_id, path }),
        (any::<u32>(), any::<u64>()).prop_map(|(transfer_id, offset)| Message::FileAccept {
            transfer_id,
            offset
        }),
        (
            any::<u32>(),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 1..300)
        )
            .prop_map(|(transfer_id, offset, data)| Message::FileChunk {
                transfer_id,
                offset,
                data: Bytes::from(data)
            }),
        (any::<u32>(), any::<u64>()).prop_map(|(transfer_id, received)| {
            Message::FileProgress {
                transfer_id,
                received,
            }
        }),
        (any::<u32>(), outcome, text(limits::MESSAGE)).prop_map(
            |(transfer_id, outcome, message)| Message::FileEnd {
                transfer_id,
                outcome,
                message
            }
        ),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn every_message_round_trips(msg in message()) {
        let frame = encode_to_bytes(&msg).unwrap();
        let header = parse_header(&frame).unwrap().unwrap();
        prop_assert_eq!(header.kind, msg.kind());
        prop_assert_eq!(header.body_len as usize, frame.len() - HEADER_LEN);
        prop_assert_eq!(decode_frame(frame.clone()).unwrap(), msg.clone());

        // The same frame split at any point decodes identically from a stream.
        let mut stream = FrameDecoder::new();
        let cut = frame.len() / 2;
        stream.feed(&frame[..cut]);
        if cut < HEADER_LEN + header.body_len as usize {
            prop_assert_eq!(stream.next_message().unwrap(), None);
            prop_assert_eq!(stream.buffered(), cut);
        }
        stream.feed(&frame[cut..]);
        prop_assert_eq!(stream.next_message().unwrap(), Some(msg));
        prop_assert_eq!(stream.next_message().unwrap(), None);
        prop_assert_eq!(stream.buffered(), 0);
    }

    #[test]
    fn every_strict_prefix_is_truncated_not_a_panic(msg in message()) {
        let frame = encode_to_bytes(&msg).unwrap();
        for len in 0..frame.len() {
            let err = decode_frame(frame.slice(..len)).unwrap_err();
            let truncated = matches!(err, WireError::Truncated { .. });
            prop_assert!(truncated, "prefix {} of {:?}: {:?}", len, msg.kind(), err);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let frame = Bytes::from(bytes.clone());
        if let Ok(msg) = decode_frame(frame.clone()) {
            // Whatever decodes must encode back to the very same bytes: the encoding is canonical.
            prop_assert_eq!(encode_to_bytes(&msg).unwrap(), frame);
        }
        let mut stream = FrameDecoder::new();
        stream.feed(&bytes);
        while let Ok(Some(_)) = stream.next_message() {}
    }

    #[test]
    fn mutated_frames_never_panic(msg in message(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let mut frame = encode_to_bytes(&msg).unwrap().to_vec();
        let i = at.index(frame.len());
        frame[i] = byte;
        let frame = Bytes::from(frame);
        if let Ok(decoded) = decode_frame(frame.clone()) {
            prop_assert_eq!(encode_to_bytes(&decoded).unwrap(), frame);
        }
    }
}

#[test]
fn oversized_frames_are_refused_from_the_header_alone() {
    for kind in MessageKind::ALL {
        let mut header = vec![*kind as u8];
        header.extend_from_slice(&(kind.max_body() + 1).to_be_bytes());
        let err = parse_header(&header).unwrap_err();
        assert!(matches!(err, WireError::TooLarge { .. }), "{kind:?}: {err}");
        assert_eq!(err.refusal().code, ErrorCode::MessageTooLarge);
        // The stream decoder refuses it too without waiting for (or buffering) the body.
        let mut stream = FrameDecoder::new();
        stream.feed(&header);
        assert!(stream.next_message().is_err());
    }
    let err = parse_header(&[0x21, 0xff, 0xff, 0xff, 0xff]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "VideoFrame body of 4294967295 bytes exceeds the limit of 8388608 bytes"
    );
}

#[test]
fn oversized_messages_are_refused_at_encode_and_nothing_is_written() {
    let huge = Message::VideoFrame(VideoFrame {
        keyframe: true,
        timestamp_us: 0,
        payload: Bytes::from(vec![0u8; 8 * 1024 * 1024 + 1]),
    });
    let mut out = bytes::BytesMut::from(&b"kept"[..]);
    let err = encode(&huge, &mut out).unwrap_err();
    assert!(matches!(err, WireError::TooLarge { .. }), "{err}");
    assert_eq!(
        &out[..],
        b"kept",
        "a failed encode leaves the buffer as it was"
    );

    let long_name = Message::Authenticated {
        team_id: "t".into(),
        name: "n".repeat(limits::NAME + 1),
    };
    assert!(matches!(
        encode_to_bytes(&long_name).unwrap_err(),
        WireError::FieldTooLong { field: "name", .. }
    ));
    let bad_rate = Message::SetFrameRate { frame_rate: 0 };
    assert!(matches!(
        encode_to_bytes(&bad_rate).unwrap_err(),
        WireError::InvalidValue {
            field: "frame_rate",
            value: 0,
            ..
        }
    ));
}

/// The largest value of every message kind: each must fit its kind's body limit.
fn largest_messages() -> Vec<Message> {
    let s = |n: usize| "x".repeat(n);
    let device = DeviceInfo {
        id: s(limits::ID),
        name: s(limits::NAME),
        online: true,
        busy: true,
        streamer_version: Some(s(limits::VERSION)),
    };
    let monitor = MonitorInfo {
        id: u32::MAX,
        key: s(limits::MONITOR_KEY),
        name: s(limits::NAME),
        x: i32::MIN,
        y: i32::MIN,
        width: limits::MAX_DIMENSION,
        height: limits::MAX_DIMENSION,
        primary: true,
    };
    let secret = s(limits::SECRET);
    vec![
        Message::Hello {
            role: Role::Streamer,
            product_version: s(limits::VERSION),
            protocol_versions: vec![s(limits::VERSION); 16],
        },
        Message::Welcome {
            protocol_version: s(limits::VERSION),
            relay_version: s(limits::VERSION),
        },
        Message::Authenticate(Credential::TechnicianToken {
            token: secret.clone(),
        }),
        Message::Authenticate(Credential::Device {
            device_id: s(limits::ID),
            secret: secret.clone(),
        }),
        Message::Authenticate(Credential::DeploymentCode {
            code: secret.clone(),
            device_name: s(limits::NAME),
        }),
        Message::Authenticate(Credential::Attended {
            team_key: secret.clone(),
            device_name: s(limits::NAME),
        }),
        Message::Registered {
            device_id: s(limits::ID),
            secret,
        },
        Message::SessionCodeIssued {
            code: s(limits::SESSION_CODE),
            expires_in_secs: u32::MAX,
        },
        Message::Authenticated {
            team_id: s(limits::ID),
            name: s(limits::NAME),
        },
        Message::Refused {
            code: ErrorCode::Unknown(u16::MAX),
            message: s(limits::MESSAGE),
        },
        Message::ListDevices,
        Message::DeviceList(vec![
            DeviceInfo {
                busy: false,
                ..device.clone()
            };
            limits::DEVICES
        ]),
        Message::DeviceStatusList(vec![device; limits::DEVICES]),
        Message::SessionRequest {
            target: SessionTarget::Device {
                device_id: s(limits::ID),
            },
            view: ViewRequest::default(),
        },
        Message::SessionRequest {
            target: SessionTarget::Code {
                code: s(limits::SESSION_CODE),
            },
            view: ViewRequest::default(),
        },
        Message::SessionOffer {
            session_id: s(limits::ID),
            technician: s(limits::NAME),
            access: AccessType::Attended,
            recorded: true,
            view: ViewRequest {
                frame_rate: Some(120),
                monitor_id: Some(u32::MAX - 1),
            },
        },
        Message::SessionAccept {
            session_id: s(limits::ID),
        },
        Message::SessionDecline {
            session_id: s(limits::ID),
        },
        Message::SessionStarted {
            session_id: s(limits::ID),
            device_name: s(limits::NAME),
            streamer_version: s(limits::VERSION),
            access: AccessType::Unattended,
            recorded: true,
        },
        Message::SessionRefused {
            code: ErrorCode::InternalError,
            message: s(limits::MESSAGE),
        },
        Message::RecordingState { recorded: true },
        Message::LimitWarning {
            time_left_ms: u64::MAX,
        },
        Message::LeaveSession,
        Message::SessionEnded {
            reason: EndReason::Unknown(u8::MAX),
            message: s(limits::MESSAGE),
        },
        Message::VideoConfig(VideoConfig {
            codec: VideoCodec::H264,
            width: limits::MAX_DIMENSION,
            height: limits::MAX_DIMENSION,
            frame_rate: limits::MAX_FRAME_RATE,
            monitor_id: u32::MAX,
            orientation: Orientation::Portrait,
        }),
        Message::VideoFrame(VideoFrame {
            keyframe: true,
            timestamp_us: u64::MAX,
            payload: Bytes::from(vec![7u8; MessageKind::VideoFrame.max_body() as usize - 9]),
        }),
        Message::KeyframeRequest,
        Message::MonitorList(vec![monitor; limits::MONITORS]),
        Message::SwitchMonitor {
            monitor_id: u32::MAX,
        },
        Message::SetFrameRate {
            frame_rate: limits::MAX_FRAME_RATE,
        },
        Message::AudioConfig {
            codec: AudioCodec::Opus,
            sample_rate: limits::MAX_SAMPLE_RATE,
            channels: 2,
        },
        Message::AudioFrame(AudioFrame {
            timestamp_us: u64::MAX,
            payload: Bytes::from(vec![1u8; MessageKind::AudioFrame.max_body() as usize - 8]),
        }),
        Message::AudioUnavailable {
            reason: s(limits::MESSAGE),
        },
        Message::ReceiverReport(ReceiverReport {
            newest_timestamp_us: u64::MAX,
            frames: u16::MAX,
            queue_delay_ms: u16::MAX,
        }),
        Message::MouseInput(MouseInput {
            action: MouseAction::Wheel,
            button: MouseButton::Forward,
            x: u16::MAX,
            y: u16::MAX,
            wheel_x: i16::MIN,
            wheel_y: i16::MIN,
        }),
        Message::KeyInput(KeyInput {
            code: s(limits::KEY_CODE),
            down: true,
            modifiers: Modifiers(Modifiers::ALL),
        }),
        Message::TextInput {
            text: s(limits::TEXT),
        },
        Message::SessionTools(vec![
            ToolGrant {
                tool: Tool::Clipboard,
                state: ToolState::Unsupported,
            };
            limits::TOOLS
        ]),
        Message::ToolRefused {
            tool: Tool::Clipboard,
            code: ErrorCode::ToolUnsupported,
            message: s(limits::MESSAGE),
        },
        Message::ClipboardText {
            text: s(limits::CLIPBOARD),
        },
        Message::ChatText {
            text: s(limits::CHAT),
        },
        Message::FileOffer {
            transfer_id: u32::MAX,
            size: u64::MAX,
            sha256: [0xff; 32],
            name: s(limits::FILE_NAME),
        },
        Message::FileRequest {
            transfer_id: u32::MAX,
            path: s(limits::FILE_PATH),
        },
        Message::FileAccept {
            transfer_id: u32::MAX,
            offset: u64::MAX,
        },
        Message::FileChunk {
            transfer_id: u32::MAX,
            offset: u64::MAX,
            data: Bytes::from(vec![0xa5; limits::FILE_CHUNK]),
        },
        Message::FileProgress {
            transfer_id: u32::MAX,
            received: u64::MAX,
        },
        Message::FileEnd {
            transfer_id: u32::MAX,
            outcome: FileOutcome::TooLarge,
            message: s(limits::MESSAGE),
        },
    ]
}

#[test]
fn file_names_that_a_receiver_could_not_write_are_refused_both_ways() {
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "..\\boot.ini",
        "C:evil",
        "tab\there",
        "trailing.",
        "space ",
    ] {
        let msg = Message::FileOffer {
            transfer_id: 1,
            size: 1,
            sha256: [0; 32],
            name: bad.into(),
        };
        assert!(encode_to_bytes(&msg).is_err(), "{bad:?} was encoded");
        // The same name in a hand-made frame is refused on decoding.
        let mut body = vec![0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1];
        body.extend_from_slice(&[0; 32]);
        body.extend_from_slice(&(bad.len() as u16).to_be_bytes());
        body.extend_from_slice(bad.as_bytes());
        let mut frame = vec![0x34];
        frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
        frame.extend_from_slice(&body);
        let err = decode_frame(Bytes::from(frame)).unwrap_err();
        assert_eq!(
            err.refusal().code,
            ErrorCode::MalformedMessage,
            "{bad:?}: {err}"
        );
    }
    assert!(is_file_name("report (final) v2.pdf"));
    assert!(is_file_name(".bashrc"));
}

#[test]
fn an_empty_file_chunk_is_refused() {
    let frame = Bytes::from_static(&[0x37, 0, 0, 0, 12, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert!(decode_frame(frame).is_err());
}

#[test]
fn the_largest_message_of_every_kind_fits_its_limit() {
    let messages = largest_messages();
    for kind in MessageKind::ALL {
        assert!(
            messages.iter().any(|m| m.kind() == *kind),
            "{kind:?} has a largest message"
        );
    }
    for msg in messages {
        let frame = encode_to_bytes(&msg).unwrap_or_else(|e| panic!("{:?}: {e}", msg.kind()));
        assert_eq!(decode_frame(frame).unwrap(), msg);
    }
}

#[test]
fn largest_video_frame_fits() {
    let max = MessageKind::VideoFrame.max_body() as usize - 9;
    let msg = Message::VideoFrame(VideoFrame {
        keyframe: true,
        timestamp_us: 1,
        payload: Bytes::from(vec![7u8; max]),
    });
    let frame = encode_to_bytes(&msg).unwrap();
    assert_eq!(frame.len(), max_frame_len());
    assert_eq!(decode_frame(frame).unwrap(), msg);
}

#[test]
fn video_payload_is_a_slice_of_the_received_buffer() {
    let msg = Message::VideoFrame(VideoFrame {
        keyframe: false,
        timestamp_us: 40_000,
        payload: Bytes::from_static(&[0, 0, 0, 1, 0x41, 0x9a]),
    });
    let frame = encode_to_bytes(&msg).unwrap();
    let Message::VideoFrame(decoded) = decode_frame(frame.clone()).unwrap() else {
        panic!("decoded the wrong kind")
    };
    let frame_range = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
    assert!(
        frame_range.contains(&(decoded.payload.as_ptr() as usize)),
        "payload must point into the frame, not a copy"
    );
}

#[test]
fn malformed_bodies_get_precise_errors() {
    let cases: &[(&[u8], &str)] = &[
        (&[0x99, 0, 0, 0, 0], "unknown message kind 0x99"),
        (
            &[0x18, 0, 0, 0, 1, 2],
            "RecordingState: field recorded has invalid value 2",
        ),
        (
            &[0x10, 0, 0, 0, 0, 0],
            "ListDevices: 1 unexpected bytes after the last field",
        ),
        (
            &[0x25, 0, 0, 0, 2, 0, 0],
            "SetFrameRate: field frame_rate has invalid value 0",
        ),
        (
            &[0x25, 0, 0, 0, 2, 0, 121],
            "SetFrameRate: field frame_rate has invalid value 121",
        ),
        (
            &[0x24, 0, 0, 0, 3, 0, 0, 1],
            "SwitchMonitor: field monitor_id runs past the end of the body",
        ),
        (
            &[0x24, 0, 0, 0, 5, 0, 0, 0, 1, 0],
            "SwitchMonitor body of 5 bytes exceeds the limit of 4 bytes",
        ),
        (
            &[0x1a, 0, 0, 0, 0, 0],
            "LeaveSession: 1 unexpected bytes after the last field",
        ),
        (
            &[0x32, 0, 0, 0, 4, 0, 2, 0xc3, 0x28],
            "TextInput: field text is not valid UTF-8",
        ),
        (
            &[0x32, 0, 0, 0, 3, 0, 2, b'a'],
            "TextInput: field text runs past the end of the body",
        ),
        (
            &[0x21, 0, 0, 0, 9, 2, 0, 0, 0, 0, 0, 0, 0, 0],
            "VideoFrame: field flags has invalid value 2",
        ),
        (
            &[0x03, 0, 0, 0, 1, 9],
            "Authenticate: field credential_type has invalid value 9",
        ),
        (
            &[0x31, 0, 0, 0, 4, 0, 0, 1, 0x10],
            "KeyInput: field modifiers has invalid value 16",
        ),
    ];
    for (bytes, want) in cases {
        let err = decode_frame(Bytes::copy_from_slice(bytes)).unwrap_err();
        assert!(
            err.to_string().starts_with(want),
            "{bytes:02x?}: got {err}, wanted {want}"
        );
        assert_ne!(err.refusal().code, ErrorCode::InternalError);
    }
}

#[test]
fn only_the_right_side_may_send_each_kind() {
    use MessageKind as K;
    assert!(K::VideoFrame.may_be_sent_by(Sender::Streamer));
    assert!(!K::VideoFrame.may_be_sent_by(Sender::Technician));
    assert!(!K::VideoFrame.may_be_sent_by(Sender::Relay));
    assert!(K::MouseInput.may_be_sent_by(Sender::Technician));
    assert!(!K::MouseInput.may_be_sent_by(Sender::Streamer));
    assert!(K::RecordingState.may_be_sent_by(Sender::Relay));
    assert!(!K::RecordingState.may_be_sent_by(Sender::Streamer));
    assert!(K::KeyframeRequest.may_be_sent_by(Sender::Relay));
    for kind in MessageKind::ALL {
        let senders = [Sender::Relay, Sender::Technician, Sender::Streamer];
        assert!(
            senders.iter().any(|s| kind.may_be_sent_by(*s)),
            "{kind:?} has a sender"
        );
        assert_eq!(MessageKind::from_u8(*kind as u8), Some(*kind));
    }
}

#[test]
fn session_traffic_is_media_and_remote_control_only() {
    use MessageKind as K;
    let traffic: Vec<K> = MessageKind::ALL
        .iter()
        .copied()
        .filter(|k| k.is_session_traffic())
        .collect();
    assert_eq!(
        traffic,
        [
            K::VideoConfig,
            K::VideoFrame,
            K::KeyframeRequest,
            K::MonitorList,
            K::SwitchMonitor,
            K::SetFrameRate,
            K::AudioConfig,
            K::AudioFrame,
            K::AudioUnavailable,
            K::ReceiverReport,
            K::MouseInput,
            K::KeyInput,
            K::TextInput,
            K::ClipboardText,
            K::FileOffer,
            K::FileRequest,
            K::FileAccept,
            K::FileChunk,
            K::FileProgress,
            K::FileEnd,
            K::ChatText,
        ]
    );
}
