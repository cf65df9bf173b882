//! Benchmark: the view's scaler (I420 to BGRX at the drawn size) at 1920x1080, against the
//! per-pixel scaler it replaced and a plain copy of the same output bytes, in the same process.
//!
//! Run: `cargo bench -p technician-view --bench scaler` (results: docs/PERFORMANCE.md, glass-to-glass
//! section).
#![allow(clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use technician_view::{Planes, Scaler};

/// The scaler before 2026-12-07: nearest sample and BT.601 limited range per destination pixel.
fn per_pixel(src: &Planes<'_>, dst: &mut [u8], width: usize, height: usize) {
    let xs: Vec<usize> = (0..width).map(|x| x * src.width / width).collect();
    let ys: Vec<usize> = (0..height).map(|y| y * src.height / height).collect();
    for (row, &sy) in dst.chunks_exact_mut(width * 4).zip(&ys) {
        let yrow = &src.y[sy * src.y_stride..];
        let urow = &src.u[(sy / 2) * src.uv_stride..];
        let vrow = &src.v[(sy / 2) * src.uv_stride..];
        for (px, &sx) in row.chunks_exact_mut(4).zip(&xs) {
            let c = 298 * (i32::from(yrow[sx]) - 16);
            let d = i32::from(urow[sx / 2]) - 128;
            let e = i32::from(vrow[sx / 2]) - 128;
            let clamp = |v: i32| ((v + 128) >> 8).clamp(0, 255) as u8;
            px[0] = clamp(c + 516 * d);
            px[1] = clamp(c - 100 * d - 208 * e);
            px[2] = clamp(c + 409 * e);
            px[3] = 0xff;
        }
    }
}

/// Mean time of `f` over enough runs to fill half a second, after a warm-up.
fn time(mut f: impl FnMut()) -> Duration {
    for _ in 0..5 {
        f();
    }
    let (mut n, start) = (0u32, Instant::now());
    while start.elapsed() < Duration::from_millis(500) {
        f();
        n += 1;
    }
    start.elapsed() / n
}

fn main() {
    let (w, h) = (1920usize, 1080usize);
    let y: Vec<u8> = (0..w * h).map(|i| (16 + (i * 37) % 220) as u8).collect();
    let u: Vec<u8> = (0..w * h / 4)
        .map(|i| (60 + (i * 11) % 130) as u8)
        .collect();
    let v: Vec<u8> = (0..w * h / 4)
        .map(|i| (70 + (i * 29) % 120) as u8)
        .collect();
    let src = Planes {
        y: &y,
        u: &u,
        v: &v,
        y_stride: w,
        uv_stride: w / 2,
        width: w,
        height: h,
    };
    println!("| drawn size | scaler (ms) | per-pixel scaler before (ms) | copy of the output (ms) | scaler / before |");
    println!("|---|---:|---:|---:|---:|");
    for (dw, dh) in [(1120usize, 630usize), (1084, 610), (1920, 1080)] {
        let mut dst = vec![0u8; dw * dh * 4];
        let mut scaler = Scaler::default();
        let new = time(|| scaler.draw(&src, &mut dst, dw, dh).unwrap());
        let old = time(|| per_pixel(&src, &mut dst, dw, dh));
        let other = vec![1u8; dw * dh * 4];
        let copy = time(|| dst.copy_from_slice(std::hint::black_box(&other)));
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        println!(
            "| {dw}x{dh} | {:.2} | {:.2} | {:.2} | {:.2} |",
            ms(new),
            ms(old),
            ms(copy),
            new.as_secs_f64() / old.as_secs_f64()
        );
    }
}
