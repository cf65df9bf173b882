//! The demo of what exists: a real relay on its embedded defaults, driven over TLS by protocol clients.
//!
//! It starts the relay on a fresh data directory (SQLite, local recordings store, development CA),
//! signs in as the first owner through the HTTPS API, registers two unattended devices with the
//! deployment code (one with a streamer older than 3.5.8.0), switches recording on, and shows the
//! recording gate refusing the old streamer and admitting the current one, messages forwarded both
//! ways, the session log, and a clean shutdown. The clients here speak the protocol for real; what they
//! send stands in for the screen capture and the technician app that later issues bring.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use protocol::{
    AccessType, Credential, KeyInput, Message, Modifiers, MonitorInfo, ProductVersion, Role,
    SessionTarget,
};
use relay::{Config, Relay, SystemClock};
use relay_client::{Connection, Connector};
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
    if let Message::DeviceList(list) = recv(&mut tech).await? {
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
    tech.send(&Message::SessionRequest(SessionTarget::Device {
        device_id: old_id.clone(),
    }))
    .await?;
    match recv(&mut tech).await? {
        Message::SessionRefused { code, message } => {
            println!("refused: {code} ({})\n  \"{message}\"", code.number())
        }
        other => bail!("expected a refusal, got {other:?}"),
    }

    step("The technician asks for the reception PC: admitted, and recorded by policy");
    let (mut streamer, pc_id) = devices.remove(0);
    tech.send(&Message::SessionRequest(SessionTarget::Device {
        device_id: pc_id,
    }))
    .await?;
    let Message::SessionOffer {
        session_id,
        technician,
        recorded,
        access,
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
    println!(
        "(the recorder that stores the video is issue 4: today the relay enforces the gate and"
    );
    println!(" tells both sides, and refuses recorded sessions when storage fails, but writes no files yet)");

    step("Messages cross the relay both ways");
    let monitors = Message::MonitorList(vec![MonitorInfo {
        id: 0,
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

    step("Shut the relay down: connections are told why, then it drains");
    shutdown.cancel();
    served.await??;
    println!("technician <- {:?}", recv(&mut tech).await?);
    println!("relay stopped");
    Ok(())
}
