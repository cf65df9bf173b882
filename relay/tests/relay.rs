//! The relay through its sockets: TLS, pairing, forwarding, the recording gate, refusals, backpressure
//! and shutdown. Each test starts its own relay in-process on 127.0.0.1:0.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use protocol::*;
use relay_client::{Connector, LinkError};

fn video_frame(i: u64, size: usize) -> Message {
    let mut payload = vec![0u8, 0, 0, 1, 0x65];
    payload.extend(std::iter::repeat_n((i % 251) as u8, size));
    Message::VideoFrame(VideoFrame {
        keyframe: i == 0,
        timestamp_us: i * 33_333,
        payload: Bytes::from(payload),
    })
}

#[tokio::test]
async fn fresh_data_dir_creates_a_ca_that_clients_trust_and_others_are_refused_by_tls() {
    let relay = TestRelay::start().await;
    let ca = relay.dir.path().join("tls/dev-ca.pem");
    assert!(ca.exists(), "the development CA is created on first start");
    let team = relay.team("acme").await;
    let mut tech = relay.technician(&team).await;
    tech.send(&Message::ListDevices).await.unwrap();
    assert_eq!(recv(&mut tech).await, Message::DeviceStatusList(vec![]));

    // A client that trusts nothing is refused by TLS itself.
    let nothing = Connector::trusting(rustls::RootCertStore::empty()).unwrap();
    let err = nothing.connect(&relay.addr).await.unwrap_err();
    assert!(matches!(err, LinkError::Certificate(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");

    // So is one that trusts another relay's development CA.
    let other = tempfile::tempdir().unwrap();
    let other_ca = relay::tls::ensure_dev_ca(other.path(), &["localhost".into()])
        .unwrap()
        .ca_cert;
    let stranger = Connector::trusting_ca_file(&other_ca).unwrap();
    assert!(matches!(
        stranger.connect(&relay.addr).await.unwrap_err(),
        LinkError::Certificate(_)
    ));
    // Nothing listening is another failure, told apart from the certificate.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nowhere = format!("localhost:{}", closed.local_addr().unwrap().port());
    drop(closed);
    assert!(matches!(
        stranger.connect(&nowhere).await.unwrap_err(),
        LinkError::Connect(_)
    ));

    // A restart keeps the same CA, so clients keep trusting it.
    let before = std::fs::read(&ca).unwrap();
    relay::tls::ensure_dev_ca(relay.dir.path(), &relay.config.server_names).unwrap();
    assert_eq!(std::fs::read(&ca).unwrap(), before);
    relay.stop().await;
}

#[tokio::test]
async fn device_session_forwards_both_ways_intact_and_in_order() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut streamer, device_id, _) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;

    tech.send(&Message::ListDevices).await.unwrap();
    let Message::DeviceStatusList(devices) = recv(&mut tech).await else {
        panic!()
    };
    assert_eq!(devices.len(), 1);
    assert!(devices[0].online);
    assert!(!devices[0].busy, "free before any session");
    assert_eq!(devices[0].streamer_version.as_deref(), Some("3.5.8.0"));

    let started = pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device {
            device_id: device_id.clone(),
        },
    )
    .await;
    let Message::SessionStarted {
        recorded,
        access,
        streamer_version,
        ..
    } = started
    else {
        panic!()
    };
    assert!(!recorded, "recording is off by default");
    assert_eq!(access, AccessType::Unattended);
    assert_eq!(streamer_version, "3.5.8.0");
    assert_eq!(
        recv(&mut tech).await,
        Message::RecordingState { recorded: false }
    );
    assert_eq!(
        recv(&mut streamer).await,
        Message::RecordingState { recorded: false }
    );

    // Streamer to technician: configuration then frames, every byte and in order.
    let config = Message::VideoConfig(VideoConfig {
        codec: VideoCodec::H264,
        width: 1920,
        height: 1080,
        frame_rate: 30,
        monitor_id: 0,
        orientation: Orientation::Landscape,
    });
    streamer.send(&config).await.unwrap();
    let frames: Vec<Message> = (0..200)
        .map(|i| video_frame(i, 1000 + (i as usize * 37) % 5000))
        .collect();
    let sender = tokio::spawn(async move {
        for f in &frames {
            streamer.send(f).await.unwrap();
        }
        (streamer, frames)
    });
    assert_eq!(recv(&mut tech).await, config);
    let mut received = Vec::new();
    for _ in 0..200 {
        received.push(recv(&mut tech).await);
    }
    let (mut streamer, frames) = sender.await.unwrap();
    assert_eq!(received, frames);

    // Technician to streamer: input, in order.
    let inputs = vec![
        Message::MouseInput(MouseInput {
            action: MouseAction::Move,
            button: MouseButton::None,
            x: 10,
            y: 20,
            wheel_x: 0,
            wheel_y: 0,
        }),
        Message::KeyInput(KeyInput {
            code: "KeyA".into(),
            down: true,
            modifiers: Modifiers::default(),
        }),
        Message::SetFrameRate { frame_rate: 15 },
        Message::SwitchMonitor { monitor_id: 1 },
        Message::KeyframeRequest,
        Message::TextInput {
            text: "héllo".into(),
        },
    ];
    for m in &inputs {
        tech.send(m).await.unwrap();
    }
    for m in &inputs {
        assert_eq!(&recv(&mut streamer).await, m);
    }

    // The technician leaves; both sides are told why, and the session row says so.
    tech.send(&Message::LeaveSession).await.unwrap();
    let Message::SessionEnded { reason, .. } = recv(&mut tech).await else {
        panic!()
    };
    assert_eq!(reason, EndReason::TechnicianLeft);
    let Message::SessionEnded { reason, .. } = recv(&mut streamer).await else {
        panic!()
    };
    assert_eq!(reason, EndReason::TechnicianLeft);
    let sessions = wait_for_end(&relay, &team).await;
    assert_eq!(sessions[0].end_reason.as_deref(), Some("TECHNICIAN_LEFT"));
    assert_eq!(sessions[0].device_id.as_deref(), Some(device_id.as_str()));
    assert_eq!(sessions[0].access, "unattended");

    // Both stay connected: the device can be reached again.
    pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id },
    )
    .await;
    relay.stop().await;
}

async fn wait_for_end(relay: &TestRelay, team: &Team) -> Vec<relay::store::SessionRecord> {
    for _ in 0..100 {
        let sessions = relay.store.sessions(&team.id).await.unwrap();
        if sessions.iter().all(|s| s.ended_at.is_some()) && !sessions.is_empty() {
            return sessions;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the session row was never ended");
}

#[tokio::test]
async fn attended_session_by_code_and_the_code_is_single_use() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut streamer, code) = relay.attended(&team, CURRENT).await;
    assert_eq!(code.len(), 9);
    assert!(code.bytes().all(|b| b.is_ascii_digit()));
    let mut tech = relay.technician(&team).await;
    let Message::SessionStarted { access, .. } = pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Code { code: code.clone() },
    )
    .await
    else {
        panic!()
    };
    assert_eq!(access, AccessType::Attended);
    recv(&mut tech).await; // RecordingState
    recv(&mut streamer).await; // RecordingState
    streamer
        .send(&Message::AudioUnavailable {
            reason: "no microphone".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        recv(&mut tech).await,
        Message::AudioUnavailable {
            reason: "no microphone".into()
        }
    );

    // The end user ends it.
    streamer.send(&Message::LeaveSession).await.unwrap();
    let Message::SessionEnded { reason, .. } = recv(&mut tech).await else {
        panic!()
    };
    assert_eq!(reason, EndReason::EndUserEnded);

    // The code was used up.
    let (code_err, _) = request_refused(&mut tech, SessionTarget::Code { code }).await;
    assert_eq!(code_err, ErrorCode::SessionCodeInvalid);
    relay.stop().await;
}

#[tokio::test]
async fn recording_gate_for_unattended_access() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut old, old_id, _) = relay.device(&team, OLD).await;
    let (mut current, current_id, _) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;

    // Recording off: the old streamer is accepted.
    pair(
        &mut tech,
        &mut old,
        SessionTarget::Device {
            device_id: old_id.clone(),
        },
    )
    .await;
    tech.send(&Message::LeaveSession).await.unwrap();
    drain_until_ended(&mut tech).await;
    drain_until_ended(&mut old).await;

    // Recording on for unattended: refused with the exact code and text, before any offer is made.
    relay.set_recording(&team, false, true).await;
    let (code, message) = request_refused(
        &mut tech,
        SessionTarget::Device {
            device_id: old_id.clone(),
        },
    )
    .await;
    assert_eq!(code, ErrorCode::StreamerVersionUnsupported);
    assert_eq!(
        message,
        "This computer's streamer is version 3.5.7.9. Your team records every session, which needs streamer \
         version 3.5.8.0 or later. Update the streamer on that computer, then connect again."
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(300), old.recv())
            .await
            .is_err(),
        "the old streamer was never offered the session"
    );

    // 3.5.8.0 is accepted and told the session is recorded.
    let Message::SessionStarted { recorded, .. } = pair(
        &mut tech,
        &mut current,
        SessionTarget::Device {
            device_id: current_id,
        },
    )
    .await
    else {
        panic!()
    };
    assert!(recorded);
    assert_eq!(
        recv(&mut tech).await,
        Message::RecordingState { recorded: true }
    );
    assert_eq!(
        recv(&mut current).await,
        Message::RecordingState { recorded: true }
    );

    // Attended access is independent: still unrecorded, so an old attended streamer is accepted.
    let (mut attended_old, code) = relay.attended(&team, OLD).await;
    let mut tech2 = relay.technician(&team).await;
    let Message::SessionStarted { recorded, .. } =
        pair(&mut tech2, &mut attended_old, SessionTarget::Code { code }).await
    else {
        panic!()
    };
    assert!(!recorded);
    relay.stop().await;
}

#[tokio::test]
async fn recording_gate_for_attended_access() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, true, false).await;
    let mut tech = relay.technician(&team).await;

    let (_old, code) = relay.attended(&team, OLD).await;
    let (code_err, message) = request_refused(&mut tech, SessionTarget::Code { code }).await;
    assert_eq!(code_err, ErrorCode::StreamerVersionUnsupported);
    assert!(
        message.starts_with("This computer's streamer is version 3.5.7.9."),
        "{message}"
    );

    let (mut current, code) = relay.attended(&team, CURRENT).await;
    let Message::SessionStarted { recorded, .. } =
        pair(&mut tech, &mut current, SessionTarget::Code { code }).await
    else {
        panic!()
    };
    assert!(recorded);

    // Unattended stays unrecorded: an old device is accepted.
    let (mut old_device, old_id, _) = relay.device(&team, OLD).await;
    let mut tech2 = relay.technician(&team).await;
    let Message::SessionStarted { recorded, .. } = pair(
        &mut tech2,
        &mut old_device,
        SessionTarget::Device { device_id: old_id },
    )
    .await
    else {
        panic!()
    };
    assert!(!recorded);
    relay.stop().await;
}

async fn drain_until_ended(c: &mut relay_client::Connection) {
    loop {
        if let Message::SessionEnded { .. } = recv(c).await {
            return;
        }
    }
}

#[tokio::test]
async fn a_refused_gate_releases_the_device() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    let (mut old, old_id, _) = relay.device(&team, OLD).await;
    let mut tech = relay.technician(&team).await;
    request_refused(
        &mut tech,
        SessionTarget::Device {
            device_id: old_id.clone(),
        },
    )
    .await;
    relay.set_recording(&team, false, false).await;
    // Not left "busy" by the refusal.
    pair(
        &mut tech,
        &mut old,
        SessionTarget::Device { device_id: old_id },
    )
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_lost_streamer_ends_the_session_with_that_reason() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut streamer, id, _) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;
    pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device {
            device_id: id.clone(),
        },
    )
    .await;
    drop(streamer); // the connection is gone without a goodbye
    drain_until_reason(&mut tech, EndReason::StreamerDisconnected).await;
    let sessions = wait_for_end(&relay, &team).await;
    assert_eq!(
        sessions[0].end_reason.as_deref(),
        Some("STREAMER_DISCONNECTED")
    );
    // The device shows offline, and a request says so.
    let (code, _) = request_refused(&mut tech, SessionTarget::Device { device_id: id }).await;
    assert_eq!(code, ErrorCode::DeviceOffline);

    // The other way round: the technician's connection is lost.
    let (mut streamer, id, _) = relay.device(&team, CURRENT).await;
    pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id: id },
    )
    .await;
    drop(tech);
    drain_until_reason(&mut streamer, EndReason::TechnicianDisconnected).await;
    relay.stop().await;
}

async fn drain_until_reason(c: &mut relay_client::Connection, want: EndReason) {
    loop {
        if let Message::SessionEnded { reason, .. } = recv(c).await {
            assert_eq!(reason, want);
            return;
        }
    }
}

#[tokio::test]
async fn traffic_in_flight_when_a_session_ends_is_dropped_not_refused() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, false).await;
    let (mut streamer, device_id, _) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;
    let target = SessionTarget::Device { device_id };
    let audio = |t| {
        Message::AudioFrame(AudioFrame {
            timestamp_us: t,
            payload: Bytes::from_static(b"opus"),
        })
    };
    let key = Message::KeyInput(KeyInput {
        code: "KeyA".into(),
        down: true,
        modifiers: Modifiers::default(),
    });
    for round in 0..2 {
        pair(&mut tech, &mut streamer, target.clone()).await;
        recv(&mut tech).await;
        recv(&mut streamer).await;
        // One side leaves; the other keeps sending before it reads that the session ended, as a
        // streamer capturing at 30 frames a second or a technician typing does.
        let (leaver, stayer, late) = if round == 0 {
            (&mut tech, &mut streamer, audio(1))
        } else {
            (&mut streamer, &mut tech, key.clone())
        };
        leaver.send(&Message::LeaveSession).await.unwrap();
        loop {
            if let Message::SessionEnded { .. } = recv(leaver).await {
                break;
            }
        }
        for _ in 0..5 {
            stayer.send(&late).await.unwrap();
        }
        loop {
            match recv(stayer).await {
                Message::SessionEnded { .. } => break,
                Message::Refused { code, message } => panic!("refused: {code} {message}"),
                _ => {}
            }
        }
    }
    // Both connections are still good for another session.
    pair(&mut tech, &mut streamer, target).await;
    relay.stop().await;
}

#[tokio::test]
async fn the_last_sessions_traffic_arriving_during_the_next_offer_is_dropped() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, false).await;
    let (mut streamer, device_id, _) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;
    let target = SessionTarget::Device { device_id };
    pair(&mut tech, &mut streamer, target.clone()).await;
    assert_eq!(
        recv(&mut tech).await,
        Message::RecordingState { recorded: false }
    );
    tech.send(&Message::LeaveSession).await.unwrap();
    loop {
        if let Message::SessionEnded { .. } = recv(&mut streamer).await {
            break;
        }
    }
    // The technician asks again at once; the streamer's audio of the last session reaches the
    // relay after the new offer went out and before the answer to it (the order CI once met).
    tech.send(&Message::SessionRequest {
        target,
        view: protocol::ViewRequest::default(),
    })
    .await
    .unwrap();
    let session_id = loop {
        if let Message::SessionOffer { session_id, .. } = recv(&mut streamer).await {
            break session_id;
        }
    };
    streamer
        .send(&Message::AudioFrame(AudioFrame {
            timestamp_us: 1,
            payload: Bytes::from_static(b"opus"),
        }))
        .await
        .unwrap();
    streamer
        .send(&Message::SessionAccept { session_id })
        .await
        .unwrap();
    loop {
        match recv(&mut tech).await {
            Message::SessionStarted { .. } => break,
            Message::SessionEnded { .. } => {}
            other => panic!("expected the new session to start, got {other:?}"),
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_device_in_a_session_is_listed_busy_then_free_and_an_older_technician_gets_the_old_list()
{
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut tech, _streamer, _, _) = relay.in_session(&team).await;
    let mut other = relay.technician(&team).await;
    other.send(&Message::ListDevices).await.unwrap();
    let Message::DeviceStatusList(devices) = recv(&mut other).await else {
        panic!("a technician on 1.3.0 gets the states")
    };
    assert_eq!(devices.len(), 1);
    assert!(devices[0].online && devices[0].busy, "{devices:?}");
    // Asking for it anyway is refused with the reason.
    other
        .send(&Message::SessionRequest {
            target: SessionTarget::Device {
                device_id: devices[0].id.clone(),
            },
            view: ViewRequest::default(),
        })
        .await
        .unwrap();
    let Message::SessionRefused { code, .. } = recv(&mut other).await else {
        panic!("refused")
    };
    assert_eq!(code, ErrorCode::DeviceBusy);

    // A technician on 1.2.0 gets a DeviceList, which has no busy state.
    let credential = Credential::TechnicianToken {
        token: team.token.clone(),
    };
    let (mut old, _) = relay
        .client_speaking(Role::Technician, credential, "1.2.0")
        .await;
    old.send(&Message::ListDevices).await.unwrap();
    let Message::DeviceList(old_list) = recv(&mut old).await else {
        panic!("a technician on 1.2.0 gets a DeviceList")
    };
    assert!(old_list[0].online && !old_list[0].busy, "{old_list:?}");

    // The session ends: the device is free again.
    tech.send(&Message::LeaveSession).await.unwrap();
    while !matches!(recv(&mut tech).await, Message::SessionEnded { .. }) {}
    let started = std::time::Instant::now();
    loop {
        other.send(&Message::ListDevices).await.unwrap();
        let Message::DeviceStatusList(devices) = recv(&mut other).await else {
            panic!()
        };
        if !devices[0].busy {
            assert!(devices[0].online);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still busy after the session"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    relay.stop().await;
}
