//! Measures the streamer's pipeline on this computer's own platform backend: capture the first
//! monitor, convert to I420 and encode with openh264, for a number of frames; prints one Markdown
//! table row with frames per second and CPU milliseconds per frame (this thread's CPU time: the
//! pipeline runs on it).
//!
//! `tests/wine/bench-pipeline.sh` runs it twice on one virtual display showing the same content:
//! natively (X11) and as the Windows build under Wine (GDI), so that the two are compared in one
//! run (docs/PERFORMANCE.md).
//!
//! Usage: `pipeline [FRAMES] [LABEL]`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use streamer_agent::encode::H264Encoder;

fn main() {
    let mut args = std::env::args().skip(1);
    let frames: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(120);
    let label = args
        .next()
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    let platform = streamer_agent::agent::native_platform(None).unwrap();
    let mut source = platform.screen().unwrap();
    let monitor = source.monitors().unwrap().remove(0);
    let mut encoder = H264Encoder::new(monitor.width, monitor.height, 30).unwrap();
    // One frame first, outside the measurement: the encoder's and the capture's first-time costs.
    let first = source.capture(&monitor).unwrap();
    encoder.encode_bgra(&first, None, true).unwrap();
    let (mut capture, mut encode, mut bytes) = (Duration::ZERO, Duration::ZERO, 0usize);
    let cpu0 = cpu_time::ThreadTime::now();
    let t0 = Instant::now();
    for n in 1..=frames {
        let t = Instant::now();
        let frame = source.capture(&monitor).unwrap();
        capture += t.elapsed();
        let t = Instant::now();
        // An IDR every two seconds, as the streamer does at 30 fps.
        let out = encoder
            .encode_bgra(&frame, None, n % 60 == 0)
            .unwrap()
            .expect("without rate control no frame is skipped");
        encode += t.elapsed();
        bytes += out.data.len();
    }
    let wall = t0.elapsed().as_secs_f64();
    let cpu = cpu0.elapsed().as_secs_f64();
    let per = |d: Duration| d.as_secs_f64() * 1000.0 / frames as f64;
    println!(
        "| {label} | {}x{} | {frames} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} |",
        monitor.width,
        monitor.height,
        frames as f64 / wall,
        cpu * 1000.0 / frames as f64,
        per(capture),
        per(encode),
        bytes as f64 / frames as f64
    );
}
