//! The demo of what exists: a real relay on its embedded defaults, driven over TLS by protocol clients.
//!
//! It starts the relay on a fresh data directory (SQLite, local recordings store, development CA),
//! signs in as the first owner through the HTTPS API, registers two unattended devices with the
//! deployment code (one with a streamer older than 3.5.8.0), switches recording on, and shows the
//! recording gate refusing the old streamer and admitting the current one, messages forwarded both
//! ways, the recording stored as fragmented MP4 files (split on a monitor switch), the session log, and
//! a clean shutdown. The clients speak the protocol for real; the "streamer" encodes generated content
//! with the streamer agent's real H.264 encoder, standing in for the screen capture of issue 5.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use protocol::{
    AccessType, Credential, KeyInput, Message, Modifiers, MonitorInfo, Orientation, ProductVersion,
    Role, SessionTarget, VideoCodec, VideoConfig, VideoFrame,
};
use relay::store::RecordingState;
use relay::{Config, Relay, SystemClock};
use relay_client::{Connection, Connector};
use streamer_agent::encode::H264Encoder;
use streamer_agent::pattern::{PatternKind, TestPattern};
use tokio_util::sync::CancellationToken;

async fn recv(c: &mut Connection) -> Result<Message> {
    Ok(tokio::time::timeout(Duration::from_secs(10), c.recv())
        .await
        .context("waiting for the relay")??)
}

fn step(text: &str) {
    println!("\n== {text}");
}

#[tokio::main]
async fn main() -> Result<()> {
    let data_dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("remote-support-demo"));
    // A fresh directory every run, so that the first-start bootstrap shows.
    let _ = std::fs::remove_dir_all(&data_dir);
    let config = Config {
        data_dir: data_dir.clone(),
        listen: "127.0.0.1:0".parse()?,
        ..Config::default()
    };

    step("Start a relay on embedded defaults");
    let relay = Relay::prepare(config, Arc::new(SystemClock)).await?;
    let first = relay
        .bootstrap_if_empty()
        .await?
        .context("a fresh relay bootstraps")?;
    let ca = relay
        .dev_ca_cert()
        .context("a development CA")?
        .to_path_buf();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = format!("localhost:{}", listener.local_addr()?.port());
    let shutdown = CancellationToken::new();
    let store = relay.store().clone();
    let served = tokio::spawn(relay.serve(listener, shutdown.clone()));
    println!("relay {} on https://{addr}", relay::product_version()?);
    println!("data directory {}", data_dir.display());
    println!("clients trust the development CA {}", ca.display());
    println!("console sign-in: {} / {}", first.email, first.password);

    let connector = Connector::trusting_ca_file(&ca)?;

    step("Sign in as the owner through the HTTPS API");
    let token = connector
        .sign_in(&addr, &first.email, &first.password)
        .await?;
    println!("signed in; token {}...", &token[..8]);

    step("Two unattended devices register with the deployment code");
    let mut devices = Vec::new();
    for (name, version) in [
        ("Reception PC", ProductVersion::new(3, 5, 8, 0)),
        ("Old laptop", ProductVersion::new(3, 5, 7, 9)),
    ] {
        let mut streamer = connector.connect(&addr).await?;
        let est = streamer
            .handshake(
                Role::Streamer,
                version,
                Credential::DeploymentCode {
                    code: first.deployment_code.clone(),
                    device_name: name.into(),
                },
            )
            .await?;
        let (device_id, _secret) = est.registered.context("a device credential")?;
        println!("{name}: streamer {version}, device id {device_id}");
        devices.push((streamer, device_id));
    }

    step("The technician connects and lists the team's devices");
    let mut tech = connector.connect(&addr).await?;
    tech.handshake(
        Role::Technician,
        ProductVersion::this_build()?,
        Credential::TechnicianToken {
            token: token.clone(),
        },
    )
    .await?;
    tech.send(&Message::ListDevices).await?;
    if let Message::DeviceStatusList(list) = recv(&mut tech).await? {
        for d in list {
            println!(
                "  {:<14} online={} streamer {}",
                d.name,
                d.online,
                d.streamer_version.unwrap_or_default()
            );
        }
    }

    step("The owner switches recording on for unattended access");
    let (status, mut settings) = connector
        .api(&addr, "GET", "/api/v1/team/settings", Some(&token), None)
        .await?;
    anyhow::ensure!(status == 200, "reading settings: {status} {settings}");
    settings["record_unattended"] = serde_json::Value::Bool(true);
    let (status, body) = connector
        .api(
            &addr,
            "PUT",
            "/api/v1/team/settings",
            Some(&token),
            Some(&settings),
        )
        .await?;
    anyhow::ensure!(status == 200, "changing settings: {status} {body}");
    println!("settings now {body}");

    step("The technician asks for the old laptop: the relay's recording gate refuses it");
    let (_, old_id) = &devices[1];
    tech.send(&Message::SessionRequest {
        target: SessionTarget::Device {
            device_id: old_id.clone(),
        },
        view: protocol::ViewRequest::default(),
    })
    .await?;
    match recv(&mut tech).await? {
        Message::SessionRefused { code, message } => {
            println!("refused: {code} ({})\n  \"{message}\"", code.number())
        }
        other => bail!("expected a refusal, got {other:?}"),
    }

    step("The technician asks for the reception PC: admitted, and recorded by policy");
    let (mut streamer, pc_id) = devices.remove(0);
    tech.send(&Message::SessionRequest {
        target: SessionTarget::Device { device_id: pc_id },
        view: protocol::ViewRequest::default(),
    })
    .await?;
    let Message::SessionOffer {
        session_id,
        technician,
        recorded,
        access,
        ..
    } = recv(&mut streamer).await?
    else {
        bail!("the streamer got no offer")
    };
    println!("streamer: offer from {technician} ({access:?}), recorded={recorded}");
    anyhow::ensure!(access == AccessType::Unattended);
    streamer
        .send(&Message::SessionAccept { session_id })
        .await?;
    for _ in 0..2 {
        println!("technician <- {:?}", recv(&mut tech).await?);
    }
    println!("streamer   <- {:?}", recv(&mut streamer).await?);

    step("Messages cross the relay both ways");
    let monitors = Message::MonitorList(vec![MonitorInfo {
        id: 0,
        key: "DUMMY0".into(),
        name: "Built-in display".into(),
        x: 0,
        y: 0,
        width: 1920,
        height: 1080,
        primary: true,
    }]);
    streamer.send(&monitors).await?;
    println!("technician <- {:?}", recv(&mut tech).await?);
    tech.send(&Message::KeyInput(KeyInput {
        code: "KeyA".into(),
        down: true,
        modifiers: Modifiers::default(),
    }))
    .await?;
    println!("streamer   <- {:?}", recv(&mut streamer).await?);

    step("Video crosses the relay and is recorded as it passes");
    let mut timestamp_us = 0;
    for monitor_id in [0u32, 1] {
        let (width, height, frame_rate) = (640u16, 360u16, 30u16);
        let mut encoder = H264Encoder::new(width, height, frame_rate)?;
        let mut pattern = TestPattern::new(width, height, PatternKind::Moving);
        let config = Message::VideoConfig(VideoConfig {
            codec: VideoCodec::H264,
            width,
            height,
            frame_rate,
            monitor_id,
            orientation: Orientation::Landscape,
        });
        streamer.send(&config).await?;
        let mut bytes = 0;
        for i in 0..90 {
            let frame = encoder.encode_rgb(&pattern.next_rgb(), i == 0)?;
            bytes += frame.data.len();
            streamer
                .send(&Message::VideoFrame(VideoFrame {
                    keyframe: frame.keyframe,
                    timestamp_us,
                    payload: frame.data.into(),
                }))
                .await?;
            timestamp_us += 1_000_000 / u64::from(frame_rate);
        }
        let mut frames = 0;
        while frames < 90 {
            if let Message::VideoFrame(_) = recv(&mut tech).await? {
                frames += 1;
            }
        }
        println!("monitor {monitor_id}: 3 s of {width}x{height} H.264 ({bytes} bytes) sent; the technician received {frames} frames");
    }

    step("The technician ends the session; the log has it");
    tech.send(&Message::LeaveSession).await?;
    println!("technician <- {:?}", recv(&mut tech).await?);
    println!("streamer   <- {:?}", recv(&mut streamer).await?);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (_, sessions) = connector
        .api(&addr, "GET", "/api/v1/sessions", Some(&token), None)
        .await?;
    for s in sessions["sessions"].as_array().into_iter().flatten() {
        println!(
            "  {} {} recorded={} ended: {}",
            s["device_name"], s["access"], s["recorded"], s["end_reason"]
        );
    }

    step("The recording: one browser-playable file per monitor, hashed");
    let session_id = sessions["sessions"][0]["id"]
        .as_str()
        .context("a session id")?
        .to_owned();
    for _ in 0..100 {
        if store.recording_state(&session_id).await? == Some(RecordingState::Uploaded) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "recording state: {:?}",
        store.recording_state(&session_id).await?
    );
    for f in store.recording_files(&session_id).await? {
        println!(
            "  monitor {} {:<14} {} ms, {} frames, {} bytes, sha256 {}...\n    {}",
            f.monitor_id,
            f.split_reason,
            f.duration_ms.unwrap_or_default(),
            f.frame_count.unwrap_or_default(),
            f.size_bytes.unwrap_or_default(),
            &f.sha256.unwrap_or_default()[..16],
            data_dir.join("recordings").join(&f.object_key).display()
        );
    }

    step("Shut the relay down: connections are told why, then it drains");
    shutdown.cancel();
    served.await??;
    println!("technician <- {:?}", recv(&mut tech).await?);
    println!("relay stopped");
    Ok(())
}
