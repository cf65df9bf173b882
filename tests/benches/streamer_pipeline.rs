//! Benchmark: what the streamer costs at 1920x1080, 30 fps, on a virtual X display (Xorg with the
//! dummy driver), for a still screen, typing, scrolling and video-like content.
//!
//! Part 1, the live loop: the streamer's own capture loop (`streamer_agent::stream::run_with`) runs
//! for a fixed time while another thread draws the content at 30 fps (only the rectangle that changed,
//! as applications do). Three pipelines in the same run, one after the other on the same content:
//! the streamer (MIT-SHM, DAMAGE, screen-content encoder with rate control), the streamer as it was
//! before (whole-screen `GetImage` every frame, camera usage without rate control), and a naive JPEG
//! baseline (whole-screen `GetImage`, RGB, JPEG q80). CPU is the pipeline thread's own time plus what
//! the X server spent beyond a drawing-only phase of the same length in the same run.
//!
//! Part 2, quality and bitrate: the same content encoded frame by frame at 30 fps timestamps by each
//! encoder set-up, decoded with openh264, and compared with the encoder's input (luma PSNR of what the
//! viewer would show: after a skipped frame, the previous picture).
//!
//! Run: `cargo bench -p system-tests --bench streamer_pipeline` (results: docs/PERFORMANCE.md).
//! `BENCH_SECONDS=N`: each measurement's length (10 s); `BENCH_PART=2`: the second part only;
//! `BENCH_CONTENT=typing` (or still, scrolling, video-like): that content only.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use protocol::{Message, ViewRequest};
use streamer_agent::capture::x11::X11Source;
use streamer_agent::capture::{Frame, ScreenSource};
use streamer_agent::encode::{EncoderSettings, H264Encoder};
use streamer_agent::stream;
use system_tests::content::{Clip, Content};
use system_tests::XDisplay;

const W: u16 = 1920;
const H: u16 = 1080;
const FPS: u16 = 30;
/// Frames in each content's loop (3 s at 30 fps).
const LOOP: usize = 90;
/// The name of the thread that draws the content.
const DRAWER: &str = "bench-drawer";

fn seconds() -> Duration {
    Duration::from_secs(
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10),
    )
}

/// User plus system CPU time of a process, from /proc (10 ms resolution).
fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// Draws the clip at 30 fps until `stop`, putting only each frame's changed rectangle on screen.
fn drawer(display: &str, clip: Arc<Clip>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    clip.play(display, FPS, stop, DRAWER)
}

#[derive(Clone, Copy)]
enum Pipeline {
    Streamer,
    Before,
    Jpeg,
}

/// CPU time of this whole process, from /proc (10 ms resolution).
fn own_cpu() -> Duration {
    process_cpu(std::process::id())
}

/// CPU time of this process's thread named `name`, from /proc (10 ms resolution).
fn thread_cpu(name: &str) -> Duration {
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let dir = task.unwrap().path();
        if std::fs::read_to_string(dir.join("comm")).is_ok_and(|c| c.trim() == name) {
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap();
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            let f: Vec<&str> = after.split_whitespace().collect();
            let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
            return Duration::from_millis(ticks * 10);
        }
    }
    panic!("no thread named {name}");
}

/// What one measurement window saw.
struct Live {
    fps: f64,
    thread_cpu: Duration,
    x_cpu: Duration,
    bytes: u64,
    wall: Duration,
}

/// Paces a loop at the frame rate; when behind, skips ahead rather than bursts.
fn pace(next: &mut Instant) {
    *next += Duration::from_secs(1) / u32::from(FPS);
    let now = Instant::now();
    if *next > now {
        std::thread::sleep(*next - now);
    } else {
        *next = now;
    }
}

/// The naive baseline's loop until `stop`: whole-screen GetImage, RGB, JPEG q80, at the frame rate.
fn jpeg_loop(mut source: X11Source, frames: &AtomicU64, bytes: &AtomicU64, stop: &AtomicBool) {
    let monitor = source.monitors().unwrap().remove(0);
    let mut next = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let frame = source.capture(&monitor).unwrap();
        let mut rgb = Vec::with_capacity(frame.bgra.len() / 4 * 3);
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
        frames.fetch_add(1, Ordering::Relaxed);
        bytes.fetch_add(out.len() as u64, Ordering::Relaxed);
        pace(&mut next);
    }
}

/// After a warm-up (first capture, first IDR picture), measures `pipeline` (or nothing: drawing
/// only) for `secs`: frames and bytes it sent, its thread's CPU and the X server's.
fn live(display: &str, xorg: u32, pipeline: Option<Pipeline>, secs: Duration) -> Live {
    const THREAD: &str = "bench-pipeline";
    let frames = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel::<stream::StreamCommand>();
    let mut joins = Vec::new();
    let source = X11Source::connect(Some(display)).unwrap();
    let named = std::thread::Builder::new().name(THREAD.into());
    match pipeline {
        None => {}
        Some(Pipeline::Streamer | Pipeline::Before) => {
            let (source, settings): (X11Source, fn(u16, u16) -> EncoderSettings) =
                if matches!(pipeline, Some(Pipeline::Streamer)) {
                    (source, EncoderSettings::streamer)
                } else {
                    (source.without_shm_or_damage(), |_, _| {
                        EncoderSettings::FIXED_QUALITY
                    })
                };
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(4);
            let view = ViewRequest {
                monitor_id: None,
                frame_rate: Some(FPS),
            };
            let streamer = move || {
                stream::run_with(
                    Box::new(source),
                    cmd_rx,
                    tx,
                    Default::default(),
                    view,
                    FPS,
                    settings,
                )
                .unwrap();
            };
            joins.push(named.spawn(streamer).unwrap());
            let (frames, bytes) = (frames.clone(), bytes.clone());
            joins.push(std::thread::spawn(move || {
                while let Some(m) = rx.blocking_recv() {
                    if let Message::VideoFrame(f) = m {
                        frames.fetch_add(1, Ordering::Relaxed);
                        bytes.fetch_add(f.payload.len() as u64, Ordering::Relaxed);
                    }
                }
            }));
        }
        Some(Pipeline::Jpeg) => {
            let source = source.without_shm_or_damage();
            let (frames, bytes, stop) = (frames.clone(), bytes.clone(), stop.clone());
            joins.push(
                named
                    .spawn(move || jpeg_loop(source, &frames, &bytes, &stop))
                    .unwrap(),
            );
        }
    }
    std::thread::sleep(Duration::from_millis(1500));
    // Everything this process spends but the drawing: the pipeline's thread, the thread that
    // takes its messages, and any thread openh264 starts.
    let cpu = || own_cpu().saturating_sub(thread_cpu(DRAWER));
    let (f0, b0, t0, x0, w0) = (
        frames.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        cpu(),
        process_cpu(xorg),
        Instant::now(),
    );
    std::thread::sleep(secs);
    let (f1, b1, t1, x1, wall) = (
        frames.load(Ordering::Relaxed),
        bytes.load(Ordering::Relaxed),
        cpu(),
        process_cpu(xorg),
        w0.elapsed(),
    );
    stop.store(true, Ordering::Relaxed);
    drop(cmd_tx);
    for j in joins {
        j.join().unwrap();
    }
    Live {
        fps: (f1 - f0) as f64 / wall.as_secs_f64(),
        thread_cpu: t1.saturating_sub(t0),
        x_cpu: x1 - x0,
        bytes: b1 - b0,
        wall,
    }
}

/// Part 2 for one content and one encoder set-up: kbit/s, luma PSNR, skipped frames, IDR count,
/// encoding CPU ms a frame.
fn quality(clip: &Clip, settings: EncoderSettings) -> (f64, f64, usize, usize, f64) {
    let mut enc = H264Encoder::with_settings(W, H, FPS, settings).unwrap();
    let mut dec = openh264::decoder::Decoder::new().unwrap();
    let (w, h) = (usize::from(W), usize::from(H));
    let mut shown = vec![0u8; w * h];
    let (mut bytes, mut skipped, mut idr) = (0usize, 0usize, 0usize);
    let (mut sq_err, mut samples) = (0f64, 0f64);
    let mut cpu = Duration::ZERO;
    let frames = LOOP * 2;
    let mut next = Instant::now();
    let mut frame = Frame {
        width: W,
        height: H,
        stride: w * 4,
        bgra: Vec::new(),
    };
    for n in 0..frames {
        let i = n % clip.frames.len();
        frame.bgra.clone_from(&clip.frames[i]);
        let rows = if n == 0 {
            None
        } else {
            Some(clip.dirty[i].map_or((0, 0), |(_, y, _, hh)| (y, y + hh)))
        };
        // At the frame rate in real time: the rate control and the bucket count real time.
        next += Duration::from_secs(1) / u32::from(FPS);
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
        let c0 = cpu_time::ThreadTime::now();
        let out = enc.encode_bgra(&frame, rows, n == 0).unwrap();
        cpu += c0.elapsed();
        match out {
            None => skipped += 1,
            Some(e) => {
                bytes += e.data.len();
                idr += usize::from(e.keyframe);
                if let Some(pic) = dec.decode(&e.data).unwrap() {
                    use openh264::formats::YUVSource;
                    let (ys, _, _) = pic.strides();
                    for y in 0..h {
                        shown[y * w..(y + 1) * w].copy_from_slice(&pic.y()[y * ys..y * ys + w]);
                    }
                }
            }
        }
        let (luma, stride) = enc.input_luma();
        for y in 0..h {
            for x in 0..w {
                let d = f64::from(luma[y * stride + x]) - f64::from(shown[y * w + x]);
                sq_err += d * d;
            }
        }
        samples += (w * h) as f64;
    }
    let mse = sq_err / samples;
    let psnr = if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    };
    let kbps = bytes as f64 * 8.0 / 1000.0 / (frames as f64 / f64::from(FPS));
    (
        kbps,
        psnr,
        skipped,
        idr,
        cpu.as_secs_f64() * 1000.0 / frames as f64,
    )
}

fn main() {
    let display = XDisplay::start(W, H);
    let secs = seconds();
    let xorg = display.server_pid();
    let kinds: [(&str, Option<Content>); 4] = [
        ("still", None),
        ("typing", Some(Content::Typing)),
        ("scrolling", Some(Content::Scrolling)),
        ("video-like", Some(Content::Video)),
    ];
    let only = std::env::var("BENCH_CONTENT").ok();
    let kinds: Vec<(&str, Option<Content>)> = kinds
        .into_iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| o == *name))
        .collect();
    assert!(!kinds.is_empty(), "BENCH_CONTENT names no content");
    let clips: Vec<Arc<Clip>> = kinds
        .iter()
        .map(|(_, c)| Arc::new(Clip::render(*c, W, H, LOOP)))
        .collect();

    println!(
        "Part 1: the live loop at {W}x{H}, {FPS} fps asked, {} s a pipeline after 1.5 s of warm-up\n",
        secs.as_secs()
    );
    println!("| content | pipeline | fps sent | streamer process % core | X server % core (beyond drawing) | total % core | kbit/s | GB/hour |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    for ((name, _), clip) in kinds.iter().zip(&clips) {
        if std::env::var("BENCH_PART").is_ok_and(|p| p == "2") {
            break;
        }
        let run = |pipeline: Option<Pipeline>| {
            let stop = Arc::new(AtomicBool::new(false));
            let d = drawer(&display.name, clip.clone(), stop.clone());
            let got = live(&display.name, xorg, pipeline, secs);
            stop.store(true, Ordering::Relaxed);
            d.join().unwrap();
            got
        };
        let drawing = run(None);
        let x_draw_rate = drawing.x_cpu.as_secs_f64() / drawing.wall.as_secs_f64();
        for (label, p) in [
            ("streamer: SHM + DAMAGE, rate control", Pipeline::Streamer),
            (
                "before: GetImage every frame, no rate control",
                Pipeline::Before,
            ),
            ("baseline: GetImage, RGB, JPEG q80", Pipeline::Jpeg),
        ] {
            let got = run(Some(p));
            let wall = got.wall.as_secs_f64();
            let x_extra = (got.x_cpu.as_secs_f64() - x_draw_rate * wall).max(0.0);
            let thread = 100.0 * got.thread_cpu.as_secs_f64() / wall;
            let xs = 100.0 * x_extra / wall;
            let kbps = got.bytes as f64 * 8.0 / 1000.0 / wall;
            println!(
                "| {name} | {label} | {:.1} | {thread:.1} | {xs:.1} | {:.1} | {kbps:.0} | {:.2} |",
                got.fps,
                thread + xs,
                kbps * 3600.0 / 8.0 / 1e6
            );
        }
    }

    println!(
        "\nPart 2: encoder set-ups on the same frames, {} frames at {FPS} fps in real time\n",
        LOOP * 2
    );
    println!("| content | encoder | kbit/s | luma PSNR dB | skipped | IDR | encode CPU ms/frame |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    let target = streamer_agent::encode::target_bitrate(W, H);
    let two_second_idr = EncoderSettings {
        intra_period_seconds: 2,
        ..EncoderSettings::streamer(W, H)
    };
    let setups = [
        (
            "camera, low complexity, rate control (the streamer)",
            EncoderSettings::streamer(W, H),
        ),
        (
            "screen content, rate control",
            EncoderSettings {
                screen_content: true,
                low_complexity: false,
                ..EncoderSettings::streamer(W, H)
            },
        ),
        ("the streamer's, with an IDR every 2 s", two_second_idr),
        (
            "the streamer's, quantiser at most 42 (before 2026-12-02)",
            EncoderSettings {
                max_qp: 42,
                ..EncoderSettings::streamer(W, H)
            },
        ),
        (
            "camera, no rate control (before)",
            EncoderSettings::FIXED_QUALITY,
        ),
    ];
    for ((name, content), clip) in kinds.iter().zip(&clips) {
        if content.is_none() {
            continue;
        }
        for (label, s) in setups {
            let (kbps, psnr, skipped, idr, ms) = quality(clip, s);
            println!("| {name} | {label} | {kbps:.0} | {psnr:.1} | {skipped} | {idr} | {ms:.1} |");
        }
    }
    println!("\ntarget bitrate at {W}x{H}: {} kbit/s", target / 1000);
}
