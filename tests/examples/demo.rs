//! The demo of the whole pair through the relay, on embedded defaults (`cargo xtask demo`).
//!
//! A relay starts on a fresh data directory with recording switched on; the streamer agent shares a
//! display (the real one in `$DISPLAY`, or a virtual one with moving content when there is none); the
//! command-line client is refused by an old streamer (the version gate); then the technician app opens
//! on a real display, or, without one, the command-line client watches for 10 s, starting at 5 fps
//! and typing `rate 10` after 5 s (a frame-rate change, so two recording files), and saves the
//! latest frame as PNG; the relay's
//! recording files are listed. Ctrl-C stops everything cleanly at any point, recordings finalised.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use protocol::{Credential, Message, ProductVersion, Role};
use relay::store::RecordingState;
use relay::{Config, Relay, SystemClock};
use relay_client::Connector;
use streamer_agent::agent::{self, AgentConfig, Mode, X11Platform};
use streamer_agent::pattern::{PatternKind, TestPattern};
use system_tests::content::Canvas;
use system_tests::XDisplay;
use tokio::io::AsyncBufReadExt as _;
use tokio_util::sync::CancellationToken;

/// Paints moving content (the streamer's moving test pattern) on a virtual display until `stop`.
fn paint_moving_content(display: String, width: u16, height: u16, stop: CancellationToken) {
    std::thread::spawn(move || {
        let canvas = Canvas::open(&display, width, height).unwrap();
        let mut pattern = TestPattern::new(width, height, PatternKind::Moving);
        while !stop.is_cancelled() {
            let bgrx: Vec<u8> = pattern
                .next_rgb()
                .chunks_exact(3)
                .flat_map(|p| [p[2], p[1], p[0], 0])
                .collect();
            let _ = canvas.show(&bgrx);
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
        Ok(d) if !d.is_empty() && x11rb::connect(Some(&d)).is_ok() => (d, None::<XDisplay>),
        _ => {
            println!(
                "No display: starting a virtual one (Xorg, dummy driver) with moving content."
            );
            let x = XDisplay::start(1280, 720);
            paint_moving_content(x.name.clone(), 1280, 720, stop.clone());
            (x.name.clone(), Some(x))
        }
    };

    let real_display = _virtual.is_none();

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
    println!("  web console: https://{addr}/console");
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
        announced_version: None,
        downloads: None,
        chat_input: None,
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
            if let Some(words) = n.words() {
                println!("  [streamer] {words}");
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

    // The technician: the desktop app on a real display, else the command-line client.
    let device_id = loop {
        let devices = store.devices(&first.team_id).await?;
        if let Some(d) = devices.iter().find(|d| d.name == "Demo PC") {
            break d.id.clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let cli = technician_binary("DEMO_TECHNICIAN_CLI", "technician-cli")?;
    let technician = |extra: &[&str]| {
        let mut cmd = tokio::process::Command::new(&cli);
        cmd.args(["--relay", &addr, "--email", &first.email])
            .arg("--ca")
            .arg(&ca)
            .env("TECHNICIAN_PASSWORD", &first.password)
            .args(extra)
            .kill_on_drop(true);
        cmd
    };

    // The recording gate: the old streamer is refused before anything is forwarded.
    println!("Technician (command-line client) asks for the 3.5.7.9 laptop:");
    let refused = technician(&["--device", &old_id]).output().await?;
    print_indented("technician-cli", &refused.stdout);
    print_indented("technician-cli", &refused.stderr);
    anyhow::ensure!(
        refused.status.code() == Some(2)
            && String::from_utf8_lossy(&refused.stderr).contains("STREAMER_VERSION_UNSUPPORTED"),
        "the old streamer was not refused with STREAMER_VERSION_UNSUPPORTED"
    );
    old.send(&Message::LeaveSession).await.ok();

    match (real_display, std::env::var_os("DEMO_TECHNICIAN_APP")) {
        (true, Some(app)) => {
            println!(
                "Starting the technician app on {display_name}: sign in with the password above, \
                 connect to Demo PC. Close the window or press Ctrl-C to stop."
            );
            let mut window = tokio::process::Command::new(app)
                .args(["--relay", &addr, "--email", &first.email])
                .arg("--ca")
                .arg(&ca)
                .kill_on_drop(true)
                .spawn()
                .context("starting the technician app")?;
            tokio::select! {
                _ = window.wait() => println!("The technician app closed."),
                _ = stop.cancelled() => { window.kill().await.ok(); }
            }
        }
        _ => {
            println!(
                "Technician (command-line client) connects to Demo PC for 10 seconds at 5 fps, \
                 and types `rate 10` after 5 (a frame-rate change, which starts a new recording \
                 file; Ctrl-C to stop earlier):"
            );
            let png = data_dir.join("latest-frame.png");
            let mut child = technician(&[
                "--device",
                &device_id,
                "--watch",
                "10",
                "--frame-rate",
                "5",
                "--png",
            ])
            .arg(&png)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting technician-cli")?;
            // The command-line client takes typed commands on its standard input.
            let mut typed = child.stdin.take().context("technician-cli's input")?;
            let typist = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                tokio::time::sleep(Duration::from_secs(5)).await;
                let _ = typed.write_all(b"rate 10\n").await;
                // Kept open until the client ends, so that it reads no end of input early.
                typed
            });
            let out = child.stdout.take().context("technician-cli's output")?;
            let mut lines = tokio::io::BufReader::new(out).lines();
            while let Some(line) = lines.next_line().await? {
                println!("  [technician-cli] {line}");
            }
            let status = child.wait().await?;
            typist.abort();
            anyhow::ensure!(status.success(), "technician-cli failed: {status}");
        }
    }

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
    match store.recording_state(&session_id).await? {
        Some(state) => println!("Recording: {} ({})", state.label(), state.sentence()),
        None => println!("Recording: none"),
    }
    for f in store.recording_files(&session_id).await? {
        println!(
            "  monitor {} {:<13} {:>6} ms {:>4} frames {:>9} bytes  {}",
            f.monitor_name,
            f.split_reason,
            f.duration_ms.unwrap_or_default(),
            f.frame_count.unwrap_or_default(),
            f.size_bytes.unwrap_or_default(),
            data_dir.join("recordings").join(&f.object_key).display()
        );
    }

    // The recording in the console, as the owner's browser gets it (and a file through its link).
    let cookie = format!("__Host-relay_console={token}");
    let page = format!("/console/sessions/{session_id}");
    let (status, _, html) = connector
        .request(
            &addr,
            "GET",
            &page,
            &[("cookie", &cookie)],
            Default::default(),
        )
        .await?;
    let html = String::from_utf8_lossy(&html);
    let players = html.matches("button class=\"play\"").count();
    println!("Console: https://{addr}{page} answers {status}, with {players} playable file(s).");
    let (_, listed) = connector
        .api(
            &addr,
            "GET",
            &format!("/api/v1/sessions/{session_id}/recordings"),
            Some(&token),
            None,
        )
        .await?;
    if let Some(url) = listed["files"][0]["download_url"].as_str() {
        let (status, headers, body) = connector
            .request(&addr, "GET", url, &[], Default::default())
            .await?;
        println!(
            "  download link (valid 10 minutes): {status}, {} bytes, {}",
            body.len(),
            headers
                .get("content-disposition")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
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

/// A technician binary built beside this demo (`cargo xtask demo` builds them), or the one that `var`
/// names.
fn technician_binary(var: &str, name: &str) -> Result<std::path::PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Ok(path.into());
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/examples/demo -> target/<profile>/<name>
    let path = exe
        .parent()
        .and_then(|examples| examples.parent())
        .map(|profile| profile.join(name))
        .context("where the demo runs from")?;
    anyhow::ensure!(
        path.exists(),
        "{} is not built: run the demo with `cargo xtask demo`",
        path.display()
    );
    Ok(path)
}

fn print_indented(who: &str, text: &[u8]) {
    for line in String::from_utf8_lossy(text).lines() {
        println!("  [{who}] {line}");
    }
}
