//! Benchmark: file transfer through the relay, beside a plain copy over one TLS connection in the
//! same run, and what a transfer does to the video's transit time in the same session.
//!
//! An in-process relay on 127.0.0.1; the technician is the session library; the streamer is a peer
//! in this process that sends 30 video frames a second (60 KB each, about 14 Mbit/s, stamped with
//! the time they were sent) and takes or gives files with the same `relay_client::files::Endpoint`
//! the streamer agent uses. Phases, each 5 s of video at least:
//! - *idle*: video alone;
//! - *upload*: a 50 MB file from the technician to the streamer (against the video's direction);
//! - *download*: the same file from the streamer to the technician (with the video);
//!   and, outside any session, *plain TLS*: the same 50 MB written into one TLS connection to a
//!   server with the relay's certificate, read there and written to disk (no hashing, no relay).
//!
//! Transit is each frame's arrival at the technician's library minus its send time (one clock).
//! Throughput is the file's size over the time from the command to the verified end (hashing the
//! file before the offer and the check at the end included).
//!
//! Run: `cargo bench -p system-tests --bench file_transfer` (`BENCH_MB=N` for the file's size).
//! Results: docs/PERFORMANCE.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::*;
use relay_client::files::Endpoint;
use relay_client::{Connection, Connector};
use system_tests::link::quantile;
use system_tests::TestRelay;
use technician::{Account, Command, Event, Transfer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PASSWORD: &str = "correct horse battery staple";
const FRAME: usize = 60_000;

/// The streamer peer: registers, accepts the session, sends video at 30 fps stamped with the time
/// since `epoch`, and serves file messages with an endpoint writing into `downloads`.
async fn streamer_peer(mut conn: Connection, epoch: Instant, downloads: std::path::PathBuf) {
    let Ok(Message::SessionOffer { session_id, .. }) = conn.recv().await else {
        return;
    };
    conn.send(&Message::SessionAccept { session_id })
        .await
        .unwrap();
    conn.send(&Message::VideoConfig(VideoConfig {
        codec: VideoCodec::H264,
        width: 1920,
        height: 1080,
        frame_rate: 30,
        monitor_id: 0,
        orientation: Orientation::Landscape,
    }))
    .await
    .unwrap();
    let payload = Bytes::from(vec![0x5au8; FRAME]);
    let (mut files, mut ready) = Endpoint::new(&downloads, u64::MAX);
    let mut tick = tokio::time::interval(Duration::from_millis(33));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let frame = Message::VideoFrame(VideoFrame {
                    keyframe: false,
                    timestamp_us: epoch.elapsed().as_micros() as u64,
                    payload: payload.clone(),
                });
                if conn.send(&frame).await.is_err() { return; }
            }
            Some(r) = ready.recv() => {
                let (send, _) = files.ready(r);
                for m in send { if conn.send(&m).await.is_err() { return; } }
            }
            msg = conn.recv() => match msg {
                Ok(Message::SessionEnded { .. }) | Err(_) => return,
                Ok(m) if m.kind().is_file_transfer() => {
                    let (send, _) = files.receive(&m).await;
                    for m in send { if conn.send(&m).await.is_err() { return; } }
                }
                Ok(_) => {}
            },
        }
    }
}

/// Video transit times (ms) while `phase` runs, and the phase's own result.
async fn during<T>(
    session: &mut technician::Session,
    epoch: Instant,
    min: Duration,
    mut done: impl FnMut(&Event) -> Option<T>,
) -> (Vec<f64>, Option<T>) {
    let started = Instant::now();
    let mut transit = Vec::new();
    let mut result = None;
    while result.is_none() || started.elapsed() < min {
        let e = tokio::time::timeout(Duration::from_secs(120), session.events.recv())
            .await
            .expect("an event within 120 s")
            .expect("the session goes on");
        if let Event::Video(f) = &e {
            let now = epoch.elapsed().as_micros() as f64;
            transit.push((now - f.timestamp_us as f64) / 1000.0);
        }
        if result.is_none() {
            result = done(&e);
        }
        if let Event::Transfer(Transfer::Stopped { message, .. }) = &e {
            panic!("the transfer stopped: {message}");
        }
    }
    (transit, result)
}

fn row(label: &str, transit: &[f64], mb_s: Option<f64>) {
    let ms = |q| {
        let v: Vec<u64> = transit.iter().map(|t| (t * 10.0) as u64).collect();
        quantile(v, q) as f64 / 10.0
    };
    println!(
        "| {label} | {} | {:.1} | {:.1} | {:.1} | {} |",
        transit.len(),
        ms(0.5),
        ms(0.95),
        ms(0.99),
        mb_s.map_or("–".into(), |m| format!("{m:.1}")),
    );
}

/// Copies `file` into one TLS connection to a server with the relay's certificate, which writes
/// it to `into`; MB/s from the first byte read to the last written.
async fn plain_tls_copy(relay: &TestRelay, file: &Path, into: &Path) -> f64 {
    let config = relay::Config {
        data_dir: relay.dir.clone(),
        ..relay::Config::default()
    };
    let (server, _) = relay::tls::server_config(&config).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(server);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let into = into.to_path_buf();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.unwrap();
        let mut out = tokio::fs::File::create(&into).await.unwrap();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = tls.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            out.write_all(&buf[..n]).await.unwrap();
        }
        out.sync_all().await.unwrap();
    });
    let connector = Connector::trusting_ca_file(&relay.ca()).unwrap();
    let mut tls = connector.tls(&format!("localhost:{port}")).await.unwrap();
    let started = Instant::now();
    let mut f = tokio::fs::File::open(file).await.unwrap();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        tls.write_all(&buf[..n]).await.unwrap();
        total += n as u64;
    }
    tls.shutdown().await.unwrap();
    server.await.unwrap();
    total as f64 / 1e6 / started.elapsed().as_secs_f64()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mb: usize = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&dir.path().join("relay"), 0).await;
    let team_id = relay.acme(PASSWORD, false, false).await.team.id;
    let file = dir.path().join("payload.bin");
    let mut x = 88172645463325252u64;
    let data: Vec<u8> = (0..mb * 1_000_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    std::fs::write(&file, &data).unwrap();
    drop(data);

    let code = relay
        .store
        .create_deployment_code(&team_id, 3_600_000)
        .await
        .unwrap();
    let mut conn = Connector::trusting_ca_file(&relay.ca())
        .unwrap()
        .connect(&relay.addr)
        .await
        .unwrap();
    let est = conn
        .handshake(
            Role::Streamer,
            ProductVersion::new(3, 5, 8, 0),
            Credential::DeploymentCode {
                code,
                device_name: "Bench PC".into(),
            },
        )
        .await
        .unwrap();
    let device_id = est.registered.unwrap().0;
    let epoch = Instant::now();
    let downloads = dir.path().join("Downloads");
    tokio::spawn(streamer_peer(conn, epoch, downloads.clone()));
    let connector = Connector::trusting_ca_file(&relay.ca()).unwrap();
    let account = Account::sign_in(connector, &relay.addr, "owner@acme.example", PASSWORD)
        .await
        .unwrap();
    let mut tech = account.open().await.unwrap();
    let fetched = dir.path().join("fetched");
    tech.set_files_folder(&fetched);
    let mut session = tech
        .connect(SessionTarget::Device { device_id })
        .await
        .map_err(|(_, e)| e)
        .unwrap();
    let verified = |id: u32| {
        move |e: &Event| match e {
            Event::Transfer(Transfer::Verified { id: got, .. }) if *got == id => Some(()),
            _ => None,
        }
    };

    println!("File transfer, {mb} MB, in-process relay on 127.0.0.1 (2 cores, shared):\n");
    println!("| phase | frames | transit p50 ms | p95 ms | p99 ms | file MB/s |");
    println!("|---|---|---|---|---|---|");
    // Warm-up, then video alone.
    let _ = during(&mut session, epoch, Duration::from_secs(2), |_| Some(())).await;
    let (idle, _) = during(&mut session, epoch, Duration::from_secs(5), |_| Some(())).await;
    row("idle (video alone)", &idle, None);

    let started = Instant::now();
    session
        .commands
        .send(Command::SendFile {
            transfer_id: 1,
            path: file.clone(),
        })
        .await
        .unwrap();
    let (up, _) = during(&mut session, epoch, Duration::ZERO, verified(1)).await;
    let up_rate = mb as f64 / started.elapsed().as_secs_f64();
    row("upload (technician → streamer)", &up, Some(up_rate));

    let started = Instant::now();
    session
        .commands
        .send(Command::GetFile {
            transfer_id: 2,
            remote_path: downloads.join("payload.bin").display().to_string(),
            into: None,
        })
        .await
        .unwrap();
    let (down, _) = during(&mut session, epoch, Duration::ZERO, verified(2)).await;
    let down_rate = mb as f64 / started.elapsed().as_secs_f64();
    row("download (streamer → technician)", &down, Some(down_rate));
    let _ = session.commands.send(Command::Leave).await;

    let plain: Vec<f64> = {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(plain_tls_copy(&relay, &file, &dir.path().join(format!("plain{i}.bin"))).await);
        }
        v
    };
    let best = plain.iter().copied().fold(0.0, f64::max);
    println!(
        "| plain TLS copy (best of 3: {}) | – | – | – | – | {best:.1} |",
        plain
            .iter()
            .map(|m| format!("{m:.0}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "\nThrough the relay / plain TLS: upload {:.2}, download {:.2}. Transit p95 during a download / idle: {:.2}.",
        up_rate / best,
        down_rate / best,
        {
            let p95 = |t: &[f64]| {
                quantile(t.iter().map(|x| (x * 10.0) as u64).collect(), 0.95) as f64 / 10.0
            };
            p95(&down) / p95(&idle).max(0.1)
        }
    );
    assert_eq!(
        relay_client::files::sha256_file(&fetched.join("payload.bin"))
            .await
            .unwrap(),
        relay_client::files::sha256_file(&file).await.unwrap()
    );
    relay.stop().await;
}
