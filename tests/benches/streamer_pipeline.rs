//! Benchmark: the streamer's pipeline at 1920x1080 on a virtual X display — capture (X11 GetImage),
//! convert (BGRA to I420) and encode (openh264) — for typing, scrolling and video-like content, beside
//! a naive baseline measured in the same run on the same captured frames: RGB conversion and JPEG
//! encoding with the `image` crate.
//!
//! Run: `cargo bench -p system-tests --bench streamer_pipeline` (results: docs/PERFORMANCE.md).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use streamer_agent::capture::x11::X11Source;
use streamer_agent::capture::ScreenSource;
use streamer_agent::encode::H264Encoder;
use system_tests::content::{draw, Canvas, Content};
use system_tests::XDisplay;

const W: u16 = 1920;
const H: u16 = 1080;
const FRAMES: usize = 120;

/// CPU time of this thread so far (the pipeline runs on it; the X server's own work is not counted).
fn cpu_time() -> Duration {
    cpu_time::ThreadTime::now().as_duration()
}

struct Figures {
    fps: f64,
    cpu_ms_per_frame: f64,
    bytes_per_frame: f64,
}

fn main() {
    let display = XDisplay::start(W, H);
    let canvas = Canvas::open(&display.name, W, H).unwrap();
    let mut source = X11Source::connect(Some(&display.name)).unwrap();
    let monitor = source.monitors().unwrap().remove(0);
    assert_eq!((monitor.width, monitor.height), (W, H));

    println!("streamer pipeline at {W}x{H}, {FRAMES} frames per content, on a virtual X display\n");
    println!("| content | pipeline | fps | CPU ms/frame | bytes/frame | capture ms | convert+encode ms |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut image = vec![0u8; usize::from(W) * usize::from(H) * 4];
    for (name, content) in Content::ALL {
        let mut seed = 7u32;
        let mut encoder = H264Encoder::new(W, H, 30).unwrap();
        let (mut h264, mut jpeg) = (Vec::new(), Vec::new());
        let (mut capture_time, mut encode_time, mut jpeg_time) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut capture_cpu, mut h264_cpu, mut jpeg_cpu) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for n in 0..FRAMES {
            // Put the frame on screen (not measured).
            draw(content, n, W, H, &mut seed, &mut image);
            canvas.show(&image).unwrap();

            // The streamer's pipeline.
            let cpu0 = cpu_time();
            let t0 = Instant::now();
            let frame = source.capture(&monitor).unwrap();
            let t1 = Instant::now();
            let cpu1 = cpu_time();
            capture_cpu += cpu1 - cpu0;
            let encoded = encoder.encode_bgra(&frame, n == 0).unwrap();
            let t2 = Instant::now();
            h264_cpu += cpu_time() - cpu1;
            capture_time += t1 - t0;
            encode_time += t2 - t1;
            h264.push(encoded.data.len());

            // The naive baseline on the same captured frame: RGB, then JPEG at quality 80.
            let cpu0 = cpu_time();
            let t3 = Instant::now();
            let mut rgb = Vec::with_capacity(usize::from(W) * usize::from(H) * 3);
            for px in frame.bgra.chunks_exact(4) {
                rgb.extend_from_slice(&[px[2], px[1], px[0]]);
            }
            let mut out = Vec::new();
            image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 80)
                .encode(
                    &rgb,
                    u32::from(W),
                    u32::from(H),
                    image::ExtendedColorType::Rgb8,
                )
                .unwrap();
            jpeg_time += t3.elapsed();
            jpeg_cpu += cpu_time() - cpu0;
            jpeg.push(out.len());
        }
        let frames = FRAMES as f64;
        let per = |d: Duration| d.as_secs_f64() * 1000.0 / frames;
        let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
        let ours = Figures {
            fps: frames / (capture_time + encode_time).as_secs_f64(),
            cpu_ms_per_frame: per(capture_cpu + h264_cpu),
            bytes_per_frame: mean(&h264),
        };
        let naive = Figures {
            fps: frames / (capture_time + jpeg_time).as_secs_f64(),
            cpu_ms_per_frame: per(capture_cpu + jpeg_cpu),
            bytes_per_frame: mean(&jpeg),
        };
        println!(
            "| {name} | capture + I420 + H.264 | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} |",
            ours.fps,
            ours.cpu_ms_per_frame,
            ours.bytes_per_frame,
            per(capture_time),
            per(encode_time)
        );
        println!(
            "| {name} | baseline: capture + RGB + JPEG q80 | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} |",
            naive.fps, naive.cpu_ms_per_frame, naive.bytes_per_frame, per(capture_time), per(jpeg_time)
        );
        println!(
            "| {name} | ratio H.264 / baseline | {:.2} | {:.2} | {:.3} | | |",
            ours.fps / naive.fps,
            ours.cpu_ms_per_frame / naive.cpu_ms_per_frame,
            ours.bytes_per_frame / naive.bytes_per_frame
        );
    }
}
