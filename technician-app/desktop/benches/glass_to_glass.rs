//! Glass-to-glass latency: a change on the streamer's screen to the changed pixels in the app's view.
//!
//! Method: the real streamer agent shares a virtual Xorg display (1920x1080, then 1280x720) at 30 fps;
//! the app (its real window, started by tauri-driver under xvfb-run) views it through a relay
//! in-process over TLS with recording on. Each round, the page is told to watch the centre of the
//! view for the colour about to be painted; the benchmark notes the time and maps a full-screen window
//! of that colour on the streamer's display (an X round trip, so the pixels have changed when it
//! returns); the page notes the time at which a frame it has drawn shows that colour (read back from
//! the canvas right after drawing). Both clocks are this machine's.
//!
//! Baseline in the same run: the same rounds with the technician library instead of the app, decoding
//! with openh264 in-process (what the command-line client does). The ratio app/baseline is the cost
//! of the window: IPC to the webview, WebCodecs decoding, drawing.
//!
//! `cargo bench -p technician-desktop --bench glass_to_glass`; results in docs/PERFORMANCE.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use protocol::SessionTarget;
use technician::{Event, Technician};

const ROUNDS: usize = 30;
const DARK: (u8, u8, u8) = (20, 20, 30);
const LIGHT: (u8, u8, u8) = (235, 235, 225);

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

fn colour(round: usize) -> (u8, u8, u8) {
    if round % 2 == 0 {
        LIGHT
    } else {
        DARK
    }
}

/// A pause that does not line up with the capture clock.
fn jitter(round: usize) -> Duration {
    Duration::from_millis(300 + (round as u64 * 37) % 100)
}

fn summary(name: &str, mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "{name:<28} n={:<3} min {:>6.1} ms  p50 {:>6.1} ms  p95 {:>6.1} ms  max {:>6.1} ms  mean {:>6.1} ms",
        ms.len(),
        ms[0],
        pct(0.5),
        pct(0.95),
        ms[ms.len() - 1],
        mean
    );
    pct(0.5)
}

#[tokio::main]
async fn main() {
    for (w, h) in [(1920, 1080), (1280, 720)] {
        measure(w, h).await;
    }
}

/// One run at `w` x `h`: the app's rounds, then the baseline's, then the figures.
async fn measure(w: u16, h: u16) {
    let stage = common::stage(w, h, 30, |_| {}).await;
    let mut windows = vec![stage.display.paint(0, 0, w, h, DARK)];

    // The app.
    stage.connect_to_test_pc().await;
    stage.wait_frames(10).await;
    let mut app = Vec::new();
    for round in 0..ROUNDS {
        tokio::time::sleep(jitter(round)).await;
        stage
            .window
            .script(
                "window.__watchPixel(arguments[0], arguments[1], arguments[2]);",
                serde_json::json!([
                    w / 2,
                    h / 2,
                    [colour(round).0, colour(round).1, colour(round).2]
                ]),
            )
            .await
            .unwrap();
        let t0 = now_ms();
        windows.push(stage.display.paint(0, 0, w, h, colour(round)));
        let started = Instant::now();
        loop {
            let v = stage
                .window
                .script(
                    "return window.__view.probe.changedAt;",
                    serde_json::json!([]),
                )
                .await
                .unwrap();
            if let Some(t1) = v.as_f64() {
                app.push(t1 - t0);
                break;
            }
            if started.elapsed() > Duration::from_secs(5) {
                let state = stage
                    .window
                    .script("return window.__view;", serde_json::json!([]))
                    .await
                    .unwrap();
                panic!("round {round}: the change never reached the view: {state}");
            }
            // The page notes the time itself; polling gently keeps WebDriver off its main thread.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let stats = stage
        .window
        .script("return window.__view;", serde_json::json!([]))
        .await
        .unwrap();
    println!("view counters: {stats}");
    stage.window.click("#leave").await.unwrap();
    stage
        .window
        .wait_text("#devices-view h1", Duration::from_secs(15), |t| {
            t == "Devices"
        })
        .await
        .unwrap();

    // The baseline: the session library with openh264, same relay, streamer and display.
    let mut tech = Technician::sign_in(
        &stage.relay.addr,
        &stage.relay.ca(),
        common::EMAIL,
        common::PASSWORD,
    )
    .await
    .unwrap();
    let device = tech
        .devices()
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.name == "Test PC")
        .unwrap();
    let mut session = tech
        .connect(SessionTarget::Device {
            device_id: device.id,
        })
        .await
        .map_err(|(_, e)| e)
        .unwrap();
    let mut decoder = Decoder::new().unwrap();
    let (cx, cy) = (usize::from(w / 2), usize::from(h / 2));
    let mut luma = move |au: &[u8]| -> Option<u8> {
        let yuv = decoder.decode(au).ok()??;
        Some(yuv.y()[cy * yuv.strides().0 + cx])
    };
    // Warm up until frames decode.
    let mut base = None;
    while base.is_none() {
        if let Some(Event::Video(f)) = session.events.recv().await {
            base = luma(&f.payload);
        }
    }
    let mut lib = Vec::new();
    let mut base = base.unwrap();
    for round in ROUNDS..2 * ROUNDS {
        tokio::time::sleep(jitter(round)).await;
        // Drain what arrived during the pause, keeping the decoder's state.
        while let Ok(ev) = session.events.try_recv() {
            if let Event::Video(f) = ev {
                if let Some(y) = luma(&f.payload) {
                    base = y;
                }
            }
        }
        let t0 = now_ms();
        windows.push(stage.display.paint(0, 0, w, h, colour(round)));
        loop {
            let ev = tokio::time::timeout(Duration::from_secs(5), session.events.recv())
                .await
                .expect("the change never reached the library")
                .unwrap();
            if let Event::Video(f) = ev {
                if let Some(y) = luma(&f.payload) {
                    if y.abs_diff(base) > 60 {
                        lib.push(now_ms() - t0);
                        base = y;
                        break;
                    }
                }
            }
        }
    }
    drop(session.commands);
    let _ = session.task.await;
    drop(windows);

    println!("glass-to-glass, {w}x{h} at 30 fps, recorded, {ROUNDS} rounds each");
    let app_p50 = summary("app (WebCodecs, canvas)", app);
    let lib_p50 = summary("baseline (library, openh264)", lib);
    println!("ratio app/baseline at p50: {:.2}", app_p50 / lib_p50);
    stage.finish().await;
}
