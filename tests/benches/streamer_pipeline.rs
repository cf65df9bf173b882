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
use system_tests::XDisplay;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, ImageFormat, WindowClass,
};

const W: u16 = 1920;
const H: u16 = 1080;
const FRAMES: usize = 120;

/// CPU time of this thread so far (the pipeline runs on it; the X server's own work is not counted).
fn cpu_time() -> Duration {
    cpu_time::ThreadTime::now().as_duration()
}

#[derive(Clone, Copy)]
enum Content {
    Typing,
    Scrolling,
    Video,
}

/// Draws frame `n` of the content into a BGRX buffer.
fn draw(content: Content, n: usize, seed: &mut u32, out: &mut [u8]) {
    let (w, h) = (usize::from(W), usize::from(H));
    let text_pixel = |x: usize, y: usize| -> bool {
        // Lines of "words": dark blocks 7x11 on a white page, with gaps.
        let (line, row) = (y / 18, y % 18);
        let (col, cx) = (x / 9, x % 9);
        row < 11 && cx < 7 && (col * 7 + line * 13) % 11 != 0 && (col + line) % 17 != 0
    };
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) * 4;
            let (r, g, b) = match content {
                Content::Typing => {
                    // A page whose text grows by one character per frame.
                    let typed = (y / 18) * (w / 9) + x / 9 < 3000 + n;
                    if text_pixel(x, y) && typed {
                        (30, 30, 30)
                    } else {
                        (250, 250, 250)
                    }
                }
                Content::Scrolling => {
                    if text_pixel(x, y + n * 12) {
                        (20, 20, 60)
                    } else {
                        (245, 245, 240)
                    }
                }
                Content::Video => {
                    if (320..1600).contains(&x) && (180..900).contains(&y) {
                        if x % 2 == 0 {
                            *seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                        }
                        let v = (*seed >> 16) as u8;
                        (
                            v,
                            v.wrapping_add((x + n * 3) as u8),
                            v.wrapping_add((y + n * 5) as u8),
                        )
                    } else {
                        (40, 40, 48)
                    }
                }
            };
            out[i..i + 4].copy_from_slice(&[b, g, r, 0]);
        }
    }
}

struct Figures {
    fps: f64,
    cpu_ms_per_frame: f64,
    bytes_per_frame: f64,
}

fn main() {
    let display = XDisplay::start(W, H);
    let (conn, screen) = x11rb::connect(Some(&display.name)).unwrap();
    let root = conn.setup().roots[screen].root;
    let window = conn.generate_id().unwrap();
    conn.create_window(
        0,
        window,
        root,
        0,
        0,
        W,
        H,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &CreateWindowAux::new().override_redirect(1),
    )
    .unwrap();
    conn.map_window(window).unwrap();
    let gc = conn.generate_id().unwrap();
    conn.create_gc(gc, window, &CreateGCAux::new()).unwrap();
    let mut source = X11Source::connect(Some(&display.name)).unwrap();
    let monitor = source.monitors().unwrap().remove(0);
    assert_eq!((monitor.width, monitor.height), (W, H));

    println!("streamer pipeline at {W}x{H}, {FRAMES} frames per content, on a virtual X display\n");
    println!("| content | pipeline | fps | CPU ms/frame | bytes/frame | capture ms | convert+encode ms |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let mut image = vec![0u8; usize::from(W) * usize::from(H) * 4];
    for (name, content) in [
        ("typing", Content::Typing),
        ("scrolling", Content::Scrolling),
        ("video-like", Content::Video),
    ] {
        let mut seed = 7u32;
        let mut encoder = H264Encoder::new(W, H, 30).unwrap();
        let (mut h264, mut jpeg) = (Vec::new(), Vec::new());
        let (mut capture_time, mut encode_time, mut jpeg_time) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        let (mut capture_cpu, mut h264_cpu, mut jpeg_cpu) =
            (Duration::ZERO, Duration::ZERO, Duration::ZERO);
        for n in 0..FRAMES {
            // Put the frame on screen (not measured): rows in chunks under the request size limit.
            draw(content, n, &mut seed, &mut image);
            let rows = 100usize;
            for top in (0..usize::from(H)).step_by(rows) {
                let count = rows.min(usize::from(H) - top);
                let start = top * usize::from(W) * 4;
                let bytes = &image[start..start + count * usize::from(W) * 4];
                conn.put_image(
                    ImageFormat::Z_PIXMAP,
                    window,
                    gc,
                    W,
                    count as u16,
                    0,
                    top as i16,
                    0,
                    24,
                    bytes,
                )
                .unwrap();
            }
            conn.get_input_focus().unwrap().reply().unwrap();

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
