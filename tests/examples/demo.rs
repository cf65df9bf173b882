//! The demo of the whole pair through the relay, on embedded defaults (`cargo xtask demo`).
//!
//! A relay starts on a fresh data directory with recording switched on; the streamer agent shares a
//! display (the real one in `$DISPLAY`, or a virtual one with moving content when there is none); the
//! technician session library connects, watches, switches the frame rate and leaves; the relay's
//! recording files are listed. Ctrl-C stops everything cleanly at any point, recordings finalised.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use protocol::{Credential, ErrorCode, Message, ProductVersion, Role, SessionTarget};
use relay::store::RecordingState;
use relay::{Config, Relay, SystemClock};
use relay_client::Connector;
use streamer_agent::agent::{self, AgentConfig, Mode, Notice, X11Platform};
use streamer_agent::pattern::{PatternKind, TestPattern};
use system_tests::XDisplay;
use technician::{Command, Event, Technician};
use tokio_util::sync::CancellationToken;
use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, ImageFormat, WindowClass,
};

/// Paints moving content on a virtual display until `stop`.
fn paint_moving_content(display: String, width: u16, height: u16, stop: CancellationToken) {
    std::thread::spawn(move || {
        let (conn, screen) = x11rb::connect(Some(&display)).unwrap();
        let root = conn.setup().roots[screen].root;
        let window = conn.generate_id().unwrap();
        conn.create_window(
            0,
            window,
            root,
            0,
            0,
            width,
            height,
            0,
            WindowClass::INPUT_OUTPUT,
            0,
            &CreateWindowAux::new().override_redirect(1),
        )
        .unwrap();
        conn.map_window(window).unwrap();
        let gc = conn.generate_id().unwrap();
        conn.create_gc(gc, window, &CreateGCAux::new()).unwrap();
        let mut pattern = TestPattern::new(width, height, PatternKind::Moving);
        while !stop.is_cancelled() {
            let rgb = pattern.next_rgb();
            let bgrx: Vec<u8> = rgb
                .chunks_exact(3)
                .flat_map(|p| [p[2], p[1], p[0], 0])
                .collect();
            let rows = 64usize;
            for top in (0..usize::from(height)).step_by(rows) {
                let n = rows.min(usize::from(height) - top);
                let start = top * usize::from(width) * 4;
                let _ = conn.put_image(
                    ImageFormat::Z_PIXMAP,
                    window,
                    gc,
                    width,
                    n as u16,
                    0,
                    top as i16,
                    0,
                    24,
                    &bgrx[start..start + n * usize::from(width) * 4],
                );
            }
            let _ = conn.flush();
            std::thread::sleep(Duration::from_millis(100));
        }
    });
}

#[tokio::main]
async fn main() -> Result<()> {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        println!("\nCtrl-C: stopping everything.");
        on_signal.cancel();
    });

    // The display: the real one, or a virtual one with moving content.
    let (display_name, _virtual) = match std::env::var("DISPLAY") {
        Ok(d) if !d.is_empty() && x11rb::connect(Some(&d)).is_ok() => (d, None),
        _ => {
            println!(
                "No display: starting a virtual one (Xorg, dummy driver) with moving content."
            );
            let x = XDisplay::start(1280, 720);
            paint_moving_content(x.name.clone(), 1280, 720, stop.clone());
            (x.name.clone(), Some(x))
        }
    };

    // The relay on embedded defaults, fresh.
    let data_dir = std::env::temp_dir().join("remote-support-demo");
    let _ = std::fs::remove_dir_all(&data_dir);
    let config = Config {
        data_dir: data_dir.clone(),
        listen: "127.0.0.1:0".parse()?,
        ..Config::default()
    };
    let relay = Relay::prepare(config, Arc::new(SystemClock)).await?;
    let first = relay
        .bootstrap_if_empty()
        .await?
        .context("a fresh relay bootstraps")?;
    let store = relay.store().clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = format!("localhost:{}", listener.local_addr()?.port());
    let relay_stop = CancellationToken::new();
    let served = tokio::spawn(relay.serve(listener, relay_stop.clone()));
    let ca = data_dir.join("tls/dev-ca.pem");
    println!("Relay {} at https://{addr}", relay::product_version()?);
    println!(
        "  console and API sign-in: {} / {}",
        first.email, first.password
    );
    println!("  clients trust {}", ca.display());

    // Recording on for unattended access, by the owner, through the API.
    let connector = Connector::trusting_ca_file(&ca)?;
    let token = connector
        .sign_in(&addr, &first.email, &first.password)
        .await?;
    let (_, mut settings) = connector
        .api(&addr, "GET", "/api/v1/team/settings", Some(&token), None)
        .await?;
    settings["record_unattended"] = true.into();
    connector
        .api(
            &addr,
            "PUT",
            "/api/v1/team/settings",
            Some(&token),
            Some(&settings),
        )
        .await?;
    println!("Recording switched on for unattended access.");

    // The streamer agent, unattended, on the display.
    let streamer_stop = CancellationToken::new();
    let (notices_tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
    let agent_config = AgentConfig {
        relay: addr.clone(),
        ca_file: ca.clone(),
        mode: Mode::Unattended {
            credential_file: data_dir.join("streamer-device.credential"),
            deployment_code: Some(first.deployment_code.clone()),
        },
        device_name: "Demo PC".into(),
        display: Some(display_name.clone()),
        frame_rate: 15,
    };
    let platform = Arc::new(X11Platform {
        display: Some(display_name.clone()),
    });
    let streamer = tokio::spawn(agent::run(
        agent_config,
        platform,
        notices_tx,
        streamer_stop.clone(),
    ));
    tokio::spawn(async move {
        while let Some(n) = notices.recv().await {
            match n {
                Notice::SessionStarted {
                    technician,
                    recorded,
                } => {
                    println!(
                        "  [streamer] {technician} is connected{}",
                        if recorded {
                            "; this session is recorded by your team's policy"
                        } else {
                            ""
                        }
                    )
                }
                other => println!("  [streamer] {other:?}"),
            }
        }
    });

    // The recording gate: an old streamer is refused before anything is forwarded.
    let mut old = connector.connect(&addr).await?;
    let old_code = store
        .create_deployment_code(&first.team_id, 600_000)
        .await?;
    let est = old
        .handshake(
            Role::Streamer,
            ProductVersion::new(3, 5, 7, 9),
            Credential::DeploymentCode {
                code: old_code,
                device_name: "Old laptop".into(),
            },
        )
        .await?;
    let old_id = est.registered.context("registered")?.0;

    // The technician.
    let mut tech = Technician::sign_in(&addr, &ca, &first.email, &first.password).await?;
    let device_id = loop {
        let devices = tech.devices().await?;
        if let Some(d) = devices.iter().find(|d| d.name == "Demo PC" && d.online) {
            break d.id.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    match tech
        .connect(SessionTarget::Device { device_id: old_id })
        .await
    {
        Err((t, e)) if e.code() == Some(ErrorCode::StreamerVersionUnsupported) => {
            println!("Technician asks for the 3.5.7.9 laptop: refused, STREAMER_VERSION_UNSUPPORTED:\n  \"{e}\"");
            tech = t;
        }
        Err((_, e)) => return Err(e.into()),
        Ok(_) => anyhow::bail!("the old streamer was admitted"),
    }
    old.send(&Message::LeaveSession).await.ok();

    println!("Technician connects to Demo PC for 10 seconds (Ctrl-C to stop earlier).");
    let mut session = tech
        .connect(SessionTarget::Device { device_id })
        .await
        .map_err(|(_, e)| e)?;
    let (mut frames, mut bytes) = (0u64, 0usize);
    let watch = tokio::time::sleep(Duration::from_secs(10));
    tokio::pin!(watch);
    let mut switched = false;
    let mut left = false;
    loop {
        let event = tokio::select! {
            e = session.events.recv() => e,
            _ = &mut watch, if !left => { left = true; session.commands.send(Command::Leave).await.ok(); continue; }
            _ = stop.cancelled(), if !left => { left = true; session.commands.send(Command::Leave).await.ok(); continue; }
        };
        let Some(event) = event else { break };
        match event {
            Event::Started {
                device_name,
                recorded,
                ..
            } => println!("  [technician] connected to {device_name}; recorded: {recorded}"),
            Event::Recording(on) => println!(
                "  [technician] recording indicator: {}",
                if on { "ON (team policy)" } else { "off" }
            ),
            Event::VideoConfig(c) => println!(
                "  [technician] video {}x{} at {} fps, monitor {}",
                c.width, c.height, c.frame_rate, c.monitor_id
            ),
            Event::Video(f) => {
                frames += 1;
                bytes += f.payload.len();
                if frames == 60 && !switched {
                    switched = true;
                    println!("  [technician] switches to 5 fps (a new recording file starts)");
                    session.commands.send(Command::SetFrameRate(5)).await.ok();
                }
            }
            Event::AudioUnavailable(why) => println!("  [technician] no audio: {why}"),
            Event::LimitWarning(left) => {
                println!("  [technician] warning: {} s left", left.as_secs())
            }
            Event::Ended { reason, message } => {
                println!("  [technician] session ended ({reason:?}): {message}");
                break;
            }
            _ => {}
        }
    }
    let _ = session.task.await;
    println!(
        "Technician received {frames} frames, {} KB of H.264.",
        bytes / 1024
    );

    // The recording, once stored.
    let session_id = store
        .sessions(&first.team_id)
        .await?
        .into_iter()
        .find(|s| s.recorded)
        .map(|s| s.id)
        .context("a recorded session")?;
    for _ in 0..100 {
        if store.recording_state(&session_id).await? == Some(RecordingState::Uploaded) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("Recording: {:?}", store.recording_state(&session_id).await?);
    for f in store.recording_files(&session_id).await? {
        println!(
            "  monitor {} {:<13} {:>6} ms {:>4} frames {:>9} bytes  {}",
            f.monitor_id,
            f.split_reason,
            f.duration_ms.unwrap_or_default(),
            f.frame_count.unwrap_or_default(),
            f.size_bytes.unwrap_or_default(),
            data_dir.join("recordings").join(&f.object_key).display()
        );
    }

    streamer_stop.cancel();
    let _ = streamer.await;
    relay_stop.cancel();
    served.await??;
    stop.cancel();
    println!("Stopped cleanly.");
    Ok(())
}
