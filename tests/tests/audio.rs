//! An audio source without pacing (ALSA's null device, which returns silence as fast as it is read)
//! keeps its session alive: the streamer holds audio to real time, and the relay's message limit
//! is never reached. Its own test binary, because it points ALSA at a configuration of its own
//! through the environment, which every test in a process would share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::*;
use relay_client::Connector;
use streamer_agent::agent::{self, AgentConfig, Mode, Notice, X11Platform};
use system_tests::{TestRelay, XDisplay};
use tokio_util::sync::CancellationToken;

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn an_unpaced_audio_source_keeps_its_session_alive() {
    let data = tempfile::tempdir().unwrap();
    // ALSA reads this file instead of its system configuration: the default device is the null
    // device, which never makes the reader wait.
    let alsa = data.path().join("asound.conf");
    std::fs::write(
        &alsa,
        "pcm.!default { type null }\nctl.!default { type hw card 0 }\n",
    )
    .unwrap();
    std::env::set_var("ALSA_CONFIG_PATH", &alsa);

    let display = XDisplay::start(640, 480);
    let _paint = display.paint(0, 0, 640, 480, (30, 120, 220));
    let relay = TestRelay::start(data.path(), 0).await;
    let team = relay.acme(PASSWORD, false, false).await;
    let code = relay
        .store
        .create_deployment_code(&team.team.id, 3_600_000)
        .await
        .unwrap();
    let config = AgentConfig {
        relay: relay.addr.clone(),
        ca_file: relay.ca(),
        mode: Mode::Unattended {
            credential_file: data.path().join("device.credential"),
            deployment_code: Some(code),
        },
        device_name: "Test PC".into(),
        display: Some(display.name.clone()),
        frame_rate: 10,
        announced_version: None,
        downloads: None,
        chat_input: None,
    };
    let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let platform = Arc::new(X11Platform {
        display: Some(display.name.clone()),
    });
    let streamer = tokio::spawn(agent::run(config, platform, tx, stop.clone()));
    let connected = tokio::time::timeout(Duration::from_secs(20), notices.recv())
        .await
        .unwrap();
    assert_eq!(connected, Some(Notice::Connected));
    let device_id = relay.store.devices(&team.team.id).await.unwrap()[0]
        .id
        .clone();
    let token = relay
        .store
        .sign_in("owner@acme.example", PASSWORD, 3_600_000)
        .await
        .unwrap()
        .unwrap()
        .token;
    let mut tech = Connector::trusting_ca_file(&relay.ca())
        .unwrap()
        .connect(&relay.addr)
        .await
        .unwrap();
    tech.handshake(
        Role::Technician,
        ProductVersion::new(3, 5, 8, 0),
        Credential::TechnicianToken { token },
    )
    .await
    .unwrap();
    tech.send(&Message::SessionRequest {
        target: SessionTarget::Device { device_id },
        view: ViewRequest::default(),
    })
    .await
    .unwrap();

    // Five seconds of the session, counting what arrives.
    let (mut audio_config, mut audio_frames, mut video_frames) = (None, 0u32, 0u32);
    let mut first_audio: Option<Instant> = None;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        let Ok(m) = tokio::time::timeout_at(until.into(), tech.recv()).await else {
            break;
        };
        match m.unwrap() {
            m @ Message::AudioConfig { .. } => audio_config = Some(m),
            Message::AudioUnavailable { reason } => {
                panic!("the null device gave no audio: {reason}")
            }
            Message::AudioFrame(_) => {
                first_audio.get_or_insert_with(Instant::now);
                audio_frames += 1;
            }
            Message::VideoFrame(_) => video_frames += 1,
            m @ (Message::SessionEnded { .. } | Message::Refused { .. }) => {
                panic!("the session ended: {m:?}")
            }
            _ => {}
        }
    }
    assert!(
        matches!(audio_config, Some(Message::AudioConfig { .. })),
        "{audio_config:?}"
    );
    let secs = first_audio.expect("audio arrived").elapsed().as_secs_f64();
    let per_sec = f64::from(audio_frames) / secs;
    // 20 ms packets: 50 a second, with a little allowance for the pacer's 100 ms lead.
    assert!(
        (40.0..=60.0).contains(&per_sec),
        "{audio_frames} audio packets in {secs:.1} s"
    );
    // The screen is still: the streamer sends a frame at least every 0.9 s, not one a tick.
    assert!(video_frames >= 4, "video went on: {video_frames} frames");
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), streamer).await;
}
