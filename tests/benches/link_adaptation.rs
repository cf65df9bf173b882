//! Benchmark: the technician's view over a constrained link, with the streamer's adaptation and
//! without it, in the same run.
//!
//! The real streamer agent on a virtual X display at 1920x1080 shows video-like content (a 1280x720
//! region of noise, changing at 30 fps); the technician's side reaches an in-process relay through
//! `system_tests::link` shaped at 4 Mbit/s, 20 ms each way (40 ms round trip) and 1 % loss.
//! - *open*: the session library on an unshaped link for 20 s, the reference frame rate;
//! - *adapted*: the session library (which reports every second) on the shaped link for the run's
//!   length (120 s), then the link opens: how long until the frame rate over a second is back to
//!   90 % of the open reference;
//! - *not adapted*: a technician that never reports, on the same shape for the same length.
//!
//! "Added delay" is each frame's arrival minus its capture time, less the promptest frame's of the
//! same session (both on the technician's clock): the queueing the link adds, without the fixed path
//! (capture, encoding, relay, decoding: the glass-to-glass section measures that).
//!
//! Run: `cargo bench -p system-tests --bench link_adaptation` (`BENCH_SECONDS=N` for the shaped
//! phases' length). Results: docs/PERFORMANCE.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::*;
use relay_client::Connector;
use system_tests::content::{Clip, Content};
use system_tests::link::{quantile, Arrivals, Shape, ShapedLink};
use system_tests::{TestRelay, TestStreamer, XDisplay};
use technician::Technician;

const PASSWORD: &str = "correct horse battery staple";
const W: u16 = 1920;
const H: u16 = 1080;
const FPS: u16 = 30;

fn shaped() -> Shape {
    Shape {
        rate_bps: Some(4_000_000),
        delay: Duration::from_millis(20),
        loss: 0.01,
    }
}

/// Prints a row per quarter of a shaped phase: added delay p50, p95, max, and frames a second.
fn quarters(label: &str, a: &Arrivals, from: Instant, span: Duration) {
    for q in 0..4u32 {
        let start = from + span * q / 4;
        let v = a.between(start, start + span / 4);
        let fps = v.len() as f64 / (span / 4).as_secs_f64();
        println!(
            "| {label} | {}–{} s | {} | {} | {} | {fps:.1} |",
            (span * q / 4).as_secs(),
            (span * (q + 1) / 4).as_secs(),
            quantile(v.clone(), 0.5),
            quantile(v.clone(), 0.95),
            v.iter().max().copied().unwrap_or(0),
        );
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let span = Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(120),
    );
    let display = XDisplay::start(W, H);
    let clip = Arc::new(Clip::render(Some(Content::Video), W, H, 90));
    let stop = Arc::new(AtomicBool::new(false));
    let drawer = clip.play(&display.name, FPS, stop.clone(), "bench-drawer");
    let data = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(data.path(), 0).await;
    let team = relay.acme(PASSWORD, false, false).await;
    let streamer =
        TestStreamer::start(&relay, &team.team.id, &display.name, data.path(), FPS).await;
    let device_id = streamer.device_id.clone();
    let link = ShapedLink::start(&relay.addr, Shape::OPEN).await.unwrap();

    println!(
        "link: 4 Mbit/s, 20 ms each way, 1 % loss; video-like content at {W}x{H}, {FPS} fps chosen; \
         {} s a shaped phase\n",
        span.as_secs()
    );
    println!("| technician | period | added delay p50 ms | p95 ms | max ms | frames/s |");
    println!("|---|---|---:|---:|---:|---:|");

    // The reference, and the adapted phase, in one library session.
    let tech = Technician::sign_in(&link.addr, &relay.ca(), "owner@acme.example", PASSWORD)
        .await
        .unwrap();
    let mut s = tech
        .connect(SessionTarget::Device {
            device_id: device_id.clone(),
        })
        .await
        .map_err(|(_, e)| e)
        .unwrap();
    let mut adapted = Arrivals::default();
    adapted.watch(&mut s, Duration::from_secs(5)).await;
    let open_from = Instant::now();
    adapted.watch(&mut s, Duration::from_secs(20)).await;
    let open = adapted.between(open_from, Instant::now());
    let open_fps = open.len() as f64 / 20.0;
    println!(
        "| reports (open link) | 20 s | {} | {} | {} | {open_fps:.1} |",
        quantile(open.clone(), 0.5),
        quantile(open.clone(), 0.95),
        open.iter().max().copied().unwrap_or(0)
    );
    link.set(shaped());
    let shaped_from = Instant::now();
    adapted.watch(&mut s, span).await;
    quarters("reports (adapted)", &adapted, shaped_from, span);
    link.set(Shape::OPEN);
    let opened = Instant::now();
    let mut recovered = None;
    while opened.elapsed() < Duration::from_secs(30) && recovered.is_none() {
        adapted.watch(&mut s, Duration::from_millis(250)).await;
        let now = Instant::now();
        let last_second = adapted.between(now - Duration::from_secs(1), now).len() as f64;
        if now - opened >= Duration::from_secs(1) && last_second >= 0.9 * open_fps {
            recovered = Some(now - opened);
        }
    }
    s.commands.send(technician::Command::Leave).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Without reports, on the same shape.
    let token = relay
        .store
        .sign_in("owner@acme.example", PASSWORD, 3_600_000)
        .await
        .unwrap()
        .unwrap()
        .token;
    let mut raw = Connector::trusting_ca_file(&relay.ca())
        .unwrap()
        .connect(&link.addr)
        .await
        .unwrap();
    raw.handshake(
        Role::Technician,
        ProductVersion::new(3, 5, 8, 0),
        Credential::TechnicianToken { token },
    )
    .await
    .unwrap();
    link.set(shaped());
    raw.send(&Message::SessionRequest {
        target: SessionTarget::Device { device_id },
        view: ViewRequest {
            frame_rate: Some(FPS),
            monitor_id: None,
        },
    })
    .await
    .unwrap();
    let mut unadapted = Arrivals::default();
    let raw_from = Instant::now();
    while raw_from.elapsed() < span {
        let left = span.saturating_sub(raw_from.elapsed());
        if let Ok(m) = tokio::time::timeout(left, raw.recv()).await {
            if let Message::VideoFrame(f) = m.unwrap() {
                unadapted.frame(f.timestamp_us);
            }
        }
    }
    quarters("no reports (not adapted)", &unadapted, raw_from, span);
    println!(
        "\nback to 90 % of the open link's {open_fps:.1} frames/s after the limit was lifted: {}",
        recovered.map_or("not within 30 s".to_owned(), |d| format!(
            "{:.1} s",
            d.as_secs_f64()
        ))
    );
    let _ = raw.send(&Message::LeaveSession).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    drawer.join().unwrap();
    streamer.stop().await;
    relay.stop().await;
}
