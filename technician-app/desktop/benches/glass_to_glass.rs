//! Glass-to-glass latency: a change on the streamer's screen to the changed pixels in the app's view.
//!
//! Method: the real streamer agent shares a virtual Xorg display (1920x1080, then 1280x720) at 30 fps;
//! the app (its real window, started by tauri-driver under xvfb-run) views it through a relay
//! in-process over TLS with recording on. Each round, the app's native view is told (through the
//! page, as a Tauri command) to watch the centre of the picture for the colour about to be painted;
//! the benchmark notes the time and maps a full-screen window of that colour on the streamer's
//! display (an X round trip, so the pixels have changed when it returns); the view notes the time at
//! which a picture it has drawn shows that colour, read back from the app's X server right after
//! drawing. Both clocks are this machine's.
//!
//! Then the drawn frame rate: typing content (a page of text growing by a character a frame) shown
//! at 30 fps on the streamer's display for `BENCH_TYPING_SECONDS` (default 10), counting the
//! pictures the view put on its screen.
//!
//! Baseline in the same run: the same rounds with the technician library instead of the app, decoding
//! with openh264 in-process (what the command-line client does). The ratio app/baseline is the cost
//! of the window: the decoding thread, scaling and converting, putting the picture on screen.
//!
//! `cargo bench -p technician-desktop --bench glass_to_glass`; results in docs/PERFORMANCE.md.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use protocol::SessionTarget;
use system_tests::content::{Clip, Content};
use technician::{Event, Technician};

/// Rounds on each side: a p95 of 30 rounds is their second-largest, which moved the ratio by
/// a tenth between runs; of 60, their fourth-largest.
const ROUNDS: usize = 60;
const DARK: (u8, u8, u8) = (20, 20, 30);
const LIGHT: (u8, u8, u8) = (235, 235, 225);

fn now_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        * 1000.0
}

/// CPU seconds used so far by every WebKit web process on this machine (the app's page: the
/// bench runs one app), from `/proc/PID/stat` (utime and stime, in clock ticks of 1/100 s).
fn webview_cpu() -> f64 {
    let mut ticks = 0u64;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ... : comm may hold spaces, so fields count from its closing paren.
        let Some((head, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        if !head.contains("(WebKitWebProces") {
            continue;
        }
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // Fields 14 and 15 of the line (utime, stime) are 11 and 12 after the state.
        if let (Some(u), Some(s)) = (fields.get(11), fields.get(12)) {
            ticks += u.parse::<u64>().unwrap_or(0) + s.parse::<u64>().unwrap_or(0);
        }
    }
    ticks as f64 / 100.0
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

/// Prints the figures; gives (p50, p95).
fn summary(name: &str, mut ms: Vec<f64>) -> (f64, f64) {
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
    (pct(0.5), pct(0.95))
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
        // WebDriver's work (the bench's own, through tauri-driver, WebKit's driver and the page)
        // is done before the change and after it has crossed: the view notes the time itself, and
        // the baseline's rounds have no such load on this 2-core machine.
        let (r, g, b) = colour(round);
        stage
            .invoke(
                "view_watch",
                serde_json::json!({"x": w / 2, "y": h / 2, "rgb": [r, g, b]}),
            )
            .await;
        tokio::time::sleep(jitter(round)).await;
        let t0 = now_ms();
        windows.push(stage.display.paint(0, 0, w, h, colour(round)));
        let started = Instant::now();
        tokio::time::sleep(Duration::from_millis(200)).await;
        loop {
            let v = stage.invoke("view_state", serde_json::json!({})).await;
            if let Some(t1) = v["probe"]["changedAt"].as_f64() {
                app.push(t1 - t0);
                break;
            }
            if started.elapsed() > Duration::from_secs(5) {
                panic!("round {round}: the change never reached the view: {v}");
            }
            // The view notes the time itself; polling gently keeps WebDriver off the page.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let stats = stage.invoke("view_state", serde_json::json!({})).await;
    println!("view counters: {stats}");

    // Drawn frames a second with typing content at 30 fps.
    let seconds: u64 = std::env::var("BENCH_TYPING_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    drop(windows.drain(1..));
    let clip = std::sync::Arc::new(Clip::render(Some(Content::Typing), w, h, 120));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let player = clip.play(&stage.display.name, 30, stop.clone(), "typing");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let count = |v: &serde_json::Value| {
        (
            v["frames"].as_u64().unwrap(),
            v["skipped"].as_u64().unwrap(),
        )
    };
    let before = count(&stage.invoke("view_state", serde_json::json!({})).await);
    let t = Instant::now();
    let web_before = webview_cpu();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let web_session = (webview_cpu() - web_before) / t.elapsed().as_secs_f64();
    let after = count(&stage.invoke("view_state", serde_json::json!({})).await);
    let typing_fps = (after.0 - before.0) as f64 / t.elapsed().as_secs_f64();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    player.join().unwrap();
    stage.window.click("#leave").await.unwrap();
    stage
        .window
        .wait_text("#devices-view h1", Duration::from_secs(15), |t| {
            t == "Devices"
        })
        .await
        .unwrap();
    // The webview's CPU on the Devices page, for as long, as the baseline of the session's.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = Instant::now();
    let web_before = webview_cpu();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let web_devices = (webview_cpu() - web_before) / t.elapsed().as_secs_f64();
    println!(
        "webview (WebKitWebProcess) CPU: {:.1} % of a core during the session (typing at 30 fps, native view), {:.1} % on the Devices page",
        web_session * 100.0,
        web_devices * 100.0
    );

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
    let app = summary("app (native view)", app);
    let lib = summary("baseline (library, openh264)", lib);
    println!(
        "ratio app/baseline: p50 {:.2}, p95 {:.2}",
        app.0 / lib.0,
        app.1 / lib.1
    );
    println!(
        "typing at 30 fps for {seconds} s: {typing_fps:.1} frames drawn a second ({} access units skipped)",
        after.1 - before.1
    );
    stage.finish().await;
}
