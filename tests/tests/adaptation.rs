//! The stream fits a slow link and recovers when it opens: the real streamer on a virtual display
//! (changing content in a corner), a relay, and the technician's session library reaching the relay
//! through a shaped link (`system_tests::link`: 300 kbit/s, 20 ms each way, 1 % loss), beside a
//! technician that never reports over the same shape, in the same test.
//!
//! Behaviour only, with bounds far from the figures: the figures are the adaptation benchmark's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::*;
use relay_client::Connector;
use system_tests::content::noise_corner;
use system_tests::link::{quantile, Arrivals, Shape, ShapedLink};
use system_tests::{TestRelay, TestStreamer, XDisplay};
use technician::Technician;

const PASSWORD: &str = "correct horse battery staple";
const W: u16 = 640;
const H: u16 = 480;

fn slow() -> Shape {
    Shape {
        rate_bps: Some(300_000),
        delay: Duration::from_millis(20),
        loss: 0.01,
    }
}

fn p95(v: Vec<u64>) -> u64 {
    quantile(v, 0.95)
}

/// How late each frame of the last `span` was, and how many frames came in it.
fn last(a: &Arrivals, span: Duration) -> (Vec<u64>, usize) {
    let now = Instant::now();
    let v = a.between(now - span, now + Duration::from_secs(1));
    let n = v.len();
    (v, n)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_stream_fits_a_slow_link_and_comes_back_when_it_opens() {
    let display = XDisplay::start(W, H);
    let stop = Arc::new(AtomicBool::new(false));
    let drawer = noise_corner(&display.name, W, H, stop.clone());
    let data = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(data.path(), 0).await;
    let team = relay.acme(PASSWORD, false, false).await;
    let streamer = TestStreamer::start(&relay, &team.team.id, &display.name, data.path(), 30).await;
    let device_id = streamer.device_id.clone();
    let link = ShapedLink::start(&relay.addr, slow()).await.unwrap();

    // Without reports: a technician that never answers is never adapted to, and falls behind.
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
    raw.send(&Message::SessionRequest {
        target: SessionTarget::Device {
            device_id: device_id.clone(),
        },
        view: ViewRequest {
            frame_rate: Some(30),
            monitor_id: None,
        },
    })
    .await
    .unwrap();
    let mut unadapted = Arrivals::default();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(12) {
        let Ok(m) = tokio::time::timeout(Duration::from_secs(5), raw.recv()).await else {
            continue;
        };
        if let Message::VideoFrame(f) = m.unwrap() {
            unadapted.frame(f.timestamp_us);
        }
    }
    let (late_unadapted, _) = last(&unadapted, Duration::from_secs(4));
    raw.send(&Message::LeaveSession).await.unwrap();
    drop(raw);
    tokio::time::sleep(Duration::from_millis(500)).await;

    // With the session library's reports, over the same shape.
    let tech = Technician::sign_in(&link.addr, &relay.ca(), "owner@acme.example", PASSWORD)
        .await
        .unwrap();
    let mut s = tech
        .connect(SessionTarget::Device { device_id })
        .await
        .map_err(|(_, e)| e)
        .unwrap();
    let mut adapted = Arrivals::default();
    adapted.watch(&mut s, Duration::from_secs(12)).await;
    let (late_adapted, frames_slow) = last(&adapted, Duration::from_secs(4));

    // The link opens: full rate again within a few seconds.
    link.set(Shape::OPEN);
    adapted.watch(&mut s, Duration::from_secs(8)).await;
    let (_, frames_open) = last(&adapted, Duration::from_secs(2));

    let (unadapted_p95, adapted_p95) = (p95(late_unadapted.clone()), p95(late_adapted.clone()));
    eprintln!(
        "p95 lateness at 300 kbit/s: {adapted_p95} ms with reports, {unadapted_p95} ms without; \
         frames: {frames_slow} in the last 4 s slow, {frames_open} in 2 s open"
    );
    assert!(
        adapted_p95 < 1000 && adapted_p95 * 2 < unadapted_p95.max(1),
        "p95 lateness over the last 4 s of 12 at 300 kbit/s: {adapted_p95} ms with reports, \
         {unadapted_p95} ms without"
    );
    assert!(
        frames_open >= 2 * 20,
        "{frames_open} frames in 2 s after the link opened (30 fps chosen; {frames_slow} in the \
         last 4 s of the slow link)"
    );
    s.commands.send(technician::Command::Leave).await.unwrap();
    stop.store(true, Ordering::Relaxed);
    drawer.join().unwrap();
    streamer.stop().await;
    relay.stop().await;
}
