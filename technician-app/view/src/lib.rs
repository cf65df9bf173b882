//! The live view's geometry and pixels, shared by every way the app draws.
//!
//! [`Fit`] is the one transform between the remote screen and the app's window: the remote screen
//! scaled down (never up) to the stage with its aspect kept, centred ([`Scale::Fit`]); or shown
//! pixel for pixel ([`Scale::Actual`]), the part of it under the stage's scroll position when it is
//! larger than the stage. The native view draws through
//! it and every mouse event is mapped back through it, so a click lands on the pixel drawn under the
//! pointer. [`Scaler`] turns a decoded I420 picture into the window's BGRX pixels at the fitted size:
//! nearest samples in the YUV planes, then one SIMD conversion.
//!
//! The native view itself is in [`native`]: the decoding and drawing thread, over a child window of
//! the app's window on X11 and on Windows (see ARCHITECTURE.md for macOS).

pub mod native;

use serde::{Deserialize, Serialize};

/// How the remote screen is sized in the stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Scale {
    /// Scaled down to the stage (never up), the whole screen in view.
    #[default]
    Fit,
    /// One remote pixel to one device pixel; the stage scrolls over a larger screen.
    Actual,
}

/// A rectangle in the webview's device pixels (CSS pixels times the device pixel ratio): the
/// stage's inside, with how the remote screen is sized in it and, at [`Scale::Actual`], how far
/// the stage is scrolled (device pixels, which are remote pixels then).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Area {
    pub x: f64,
    pub y: f64,
    pub width: f64,
    pub height: f64,
    #[serde(default)]
    pub scale: Scale,
    #[serde(default)]
    pub scroll_x: f64,
    #[serde(default)]
    pub scroll_y: f64,
}

/// Where the remote screen is drawn: a whole-pixel rectangle in the webview's device pixels, and
/// the part of the remote screen drawn there (all of it, unless 1:1 on a smaller stage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fit {
    pub x: i32,
    pub y: i32,
    pub width: u32,
    pub height: u32,
    pub remote_width: u32,
    pub remote_height: u32,
    /// The drawn part's corner in the remote screen (even numbers: the colour planes are half
    /// the size, and a part starts on a whole colour sample).
    pub src_x: u32,
    pub src_y: u32,
    /// The drawn part's size in remote pixels.
    pub src_width: u32,
    pub src_height: u32,
}

impl Fit {
    /// The remote screen (`remote_width` x `remote_height`) fitted into `area`: scaled by
    /// min(1, area/remote) on both axes, centred. `None` when either is empty.
    pub fn new(area: Area, remote_width: u32, remote_height: u32) -> Option<Self> {
        let finite = [area.x, area.y, area.width, area.height]
            .iter()
            .all(|v| v.is_finite());
        if !finite
            || remote_width == 0
            || remote_height == 0
            || area.width < 1.0
            || area.height < 1.0
        {
            return None;
        }
        let (rw, rh) = (f64::from(remote_width), f64::from(remote_height));
        let (width, height, src) = match area.scale {
            Scale::Fit => {
                let scale = (area.width / rw).min(area.height / rh).min(1.0);
                let width = (rw * scale).round().max(1.0);
                let height = (rh * scale).round().max(1.0);
                (width, height, (0, 0, remote_width, remote_height))
            }
            Scale::Actual => {
                // As much of the screen as the stage holds, from the scroll position on (kept
                // inside the screen, and even).
                let width = rw.min(area.width.floor());
                let height = rh.min(area.height.floor());
                let (w, h) = (width as u32, height as u32);
                let from = |scroll: f64, room: u32| {
                    let at = if scroll.is_finite() {
                        scroll.round()
                    } else {
                        0.0
                    };
                    (at.clamp(0.0, f64::from(room)) as u32) & !1
                };
                let src = (
                    from(area.scroll_x, remote_width - w),
                    from(area.scroll_y, remote_height - h),
                    w,
                    h,
                );
                (width, height, src)
            }
        };
        Some(Self {
            x: (area.x + (area.width - width) / 2.0).round() as i32,
            y: (area.y + (area.height - height) / 2.0).round() as i32,
            width: width as u32,
            height: height as u32,
            remote_width,
            remote_height,
            src_x: src.0,
            src_y: src.1,
            src_width: src.2,
            src_height: src.3,
        })
    }

    /// The remote pixel under the webview point (`x`, `y`), or `None` outside the drawn picture.
    pub fn to_remote(&self, x: f64, y: f64) -> Option<(u16, u16)> {
        let (fx, fy) = (x - f64::from(self.x), y - f64::from(self.y));
        if !fx.is_finite()
            || !fy.is_finite()
            || fx < 0.0
            || fy < 0.0
            || fx >= f64::from(self.width)
            || fy >= f64::from(self.height)
        {
            return None;
        }
        let rx = f64::from(self.src_x)
            + (fx * f64::from(self.src_width) / f64::from(self.width)).floor();
        let ry = f64::from(self.src_y)
            + (fy * f64::from(self.src_height) / f64::from(self.height)).floor();
        let clamp = |v: f64, n: u32| v.clamp(0.0, f64::from(n - 1)) as u16;
        Some((clamp(rx, self.remote_width), clamp(ry, self.remote_height)))
    }

    /// The drawn pixel (relative to the picture's corner) that shows remote pixel (`rx`, `ry`)
    /// (the nearest edge of the drawn part for a pixel outside it).
    pub fn from_remote(&self, rx: u32, ry: u32) -> (u32, u32) {
        let (rx, ry) = (rx.saturating_sub(self.src_x), ry.saturating_sub(self.src_y));
        let x = (u64::from(rx) * u64::from(self.width) / u64::from(self.src_width)) as u32;
        let y = (u64::from(ry) * u64::from(self.height) / u64::from(self.src_height)) as u32;
        (x.min(self.width - 1), y.min(self.height - 1))
    }
}

/// What the view has done, for the page's stats line, tests and the benchmark.
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// The child window: its X id, or its `HWND` on Windows (tests read the screen there).
    pub window: u64,
    pub decoded: u64,
    /// Pictures drawn (on the X server's screen; on Windows, GDI done with them).
    pub frames: u64,
    pub decode_ms: f64,
    pub draw_ms: f64,
    pub decode_errors: u64,
    pub draw_errors: u64,
    /// Access units dropped while catching up to a keyframe.
    pub skipped: u64,
    pub fit: Option<Fit>,
    pub probe: Option<Probe>,
    /// Pictures go to the X server through shared memory (MIT-SHM), not its socket (always false
    /// on Windows).
    pub shared_memory: bool,
}

/// A watched remote pixel: `changed_at` (ms since the epoch) is set when the screen shows `rgb` there.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Probe {
    pub x: u32,
    pub y: u32,
    pub rgb: [u8; 3],
    pub seen: Option<[u8; 3]>,
    pub changed_at: Option<f64>,
}

/// One decoded picture's planes, borrowed.
#[derive(Debug, Clone, Copy)]
pub struct Planes<'a> {
    pub y: &'a [u8],
    pub u: &'a [u8],
    pub v: &'a [u8],
    /// Row strides of Y, then of U and V.
    pub y_stride: usize,
    pub uv_stride: usize,
    pub width: usize,
    pub height: usize,
}

/// Scales an I420 picture to a destination size and converts it to BGRX (BT.601, limited range,
/// as the streamer encodes): nearest sample, in the YUV planes (a quarter as many chroma samples
/// as pixels to pick), then one SIMD conversion of the scaled planes (the `yuv` crate). A picture
/// at its own size is converted straight from the decoder's planes. The index tables are made once
/// per size pair, the scaled planes kept between pictures.
#[derive(Debug, Default)]
pub struct Scaler {
    key: (usize, usize, usize, usize),
    /// For each destination column and row, the source column and row; for each destination
    /// chroma column and row, the source chroma column and row.
    xs: Vec<usize>,
    ys: Vec<usize>,
    cxs: Vec<usize>,
    cys: Vec<usize>,
    /// The scaled picture's planes.
    y: Vec<u8>,
    u: Vec<u8>,
    v: Vec<u8>,
}

/// I420 planes to BGRA (alpha 0xff), packed rows of `width` pixels.
fn to_bgra(src: &Planes<'_>, dst: &mut [u8]) -> Result<(), String> {
    let image = yuv::YuvPlanarImage {
        y_plane: src.y,
        y_stride: u32::try_from(src.y_stride).map_err(|e| e.to_string())?,
        u_plane: src.u,
        u_stride: u32::try_from(src.uv_stride).map_err(|e| e.to_string())?,
        v_plane: src.v,
        v_stride: u32::try_from(src.uv_stride).map_err(|e| e.to_string())?,
        width: u32::try_from(src.width).map_err(|e| e.to_string())?,
        height: u32::try_from(src.height).map_err(|e| e.to_string())?,
    };
    let stride = u32::try_from(src.width * 4).map_err(|e| e.to_string())?;
    yuv::yuv420_to_bgra(
        &image,
        dst,
        stride,
        yuv::YuvRange::Limited,
        yuv::YuvStandardMatrix::Bt601,
    )
    .map_err(|e| e.to_string())
}

impl Scaler {
    /// Draws `src` into `dst` (`width` x `height`, 4 bytes a pixel, rows packed; the fourth byte
    /// 0xff so that the pixels are opaque on a 32-bit visual too).
    pub fn draw(
        &mut self,
        src: &Planes<'_>,
        dst: &mut [u8],
        width: usize,
        height: usize,
    ) -> Result<(), String> {
        if width == 0 || height == 0 || src.width == 0 || src.height == 0 {
            return Ok(());
        }
        if dst.len() < width * height * 4 {
            return Err(format!(
                "{} bytes for a {width}x{height} picture",
                dst.len()
            ));
        }
        let dst = &mut dst[..width * height * 4];
        let (scw, sch) = (src.width.div_ceil(2), src.height.div_ceil(2));
        let whole = src.y.len() >= src.y_stride * (src.height - 1) + src.width
            && src.u.len() >= src.uv_stride * (sch - 1) + scw
            && src.v.len() >= src.uv_stride * (sch - 1) + scw;
        if (src.width, src.height) == (width, height) && whole {
            return to_bgra(src, dst);
        }
        let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
        let key = (src.width, src.height, width, height);
        if self.key != key {
            self.key = key;
            self.xs = (0..width).map(|x| x * src.width / width).collect();
            self.ys = (0..height).map(|y| y * src.height / height).collect();
            // A chroma sample covers two by two pixels: the one under the block's top-left.
            self.cxs = (0..cw).map(|c| self.xs[2 * c] / 2).collect();
            self.cys = (0..ch).map(|c| self.ys[2 * c] / 2).collect();
            self.y = vec![0; width * height];
            self.u = vec![0; cw * ch];
            self.v = vec![0; cw * ch];
        }
        for (row, &sy) in self.y.chunks_exact_mut(width).zip(&self.ys) {
            let from = &src.y[sy * src.y_stride..];
            for (d, &sx) in row.iter_mut().zip(&self.xs) {
                *d = from[sx];
            }
        }
        for (plane, from) in [(&mut self.u, src.u), (&mut self.v, src.v)] {
            for (row, &sy) in plane.chunks_exact_mut(cw).zip(&self.cys) {
                let from = &from[sy * src.uv_stride..];
                for (d, &sx) in row.iter_mut().zip(&self.cxs) {
                    *d = from[sx];
                }
            }
        }
        let scaled = Planes {
            y: &self.y,
            u: &self.u,
            v: &self.v,
            y_stride: width,
            uv_stride: cw,
            width,
            height,
        };
        to_bgra(&scaled, dst)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn area(x: f64, y: f64, width: f64, height: f64) -> Area {
        Area {
            x,
            y,
            width,
            height,
            scale: Scale::Fit,
            scroll_x: 0.0,
            scroll_y: 0.0,
        }
    }

    fn actual(x: f64, y: f64, width: f64, height: f64, scroll: (f64, f64)) -> Area {
        Area {
            scale: Scale::Actual,
            scroll_x: scroll.0,
            scroll_y: scroll.1,
            ..area(x, y, width, height)
        }
    }

    #[test]
    fn one_to_one_shows_the_part_under_the_scroll_position_pixel_for_pixel() {
        // A 1920x1080 screen in a 1000x600 stage, scrolled by (301, 200): an even corner.
        let fit = Fit::new(
            actual(10.0, 50.0, 1000.0, 600.0, (301.0, 200.0)),
            1920,
            1080,
        )
        .unwrap();
        assert_eq!((fit.x, fit.y, fit.width, fit.height), (10, 50, 1000, 600));
        assert_eq!(
            (fit.src_x, fit.src_y, fit.src_width, fit.src_height),
            (300, 200, 1000, 600)
        );
        // Input lands on the pixel drawn under the pointer, one to one.
        assert_eq!(fit.to_remote(10.0, 50.0), Some((300, 200)));
        assert_eq!(fit.to_remote(1009.5, 649.5), Some((1299, 799)));
        assert_eq!(fit.from_remote(300 + 17, 200 + 5), (17, 5));
        // Scrolled past the end (or by what is no number): kept inside the screen.
        let end = Fit::new(
            actual(0.0, 0.0, 1000.0, 600.0, (5000.0, 5000.0)),
            1920,
            1080,
        )
        .unwrap();
        assert_eq!((end.src_x, end.src_y), (920, 480));
        assert_eq!(end.to_remote(999.0, 599.0), Some((1919, 1079)));
        let odd = Fit::new(
            actual(0.0, 0.0, 1000.0, 600.0, (f64::NAN, -3.0)),
            1920,
            1080,
        )
        .unwrap();
        assert_eq!((odd.src_x, odd.src_y), (0, 0));
        // A screen smaller than the stage is centred at 1:1, as when fitted.
        let small = Fit::new(actual(0.0, 0.0, 1400.0, 900.0, (50.0, 50.0)), 1024, 768).unwrap();
        assert_eq!(
            small,
            Fit::new(area(0.0, 0.0, 1400.0, 900.0), 1024, 768).unwrap()
        );
    }

    #[test]
    fn a_large_screen_is_scaled_down_with_its_aspect_kept_and_centred() {
        let fit = Fit::new(area(10.0, 100.0, 1280.0, 900.0), 1920, 1080).unwrap();
        assert_eq!((fit.width, fit.height), (1280, 720));
        assert_eq!((fit.x, fit.y), (10, 190));
        // A tall stage: height decides.
        let fit = Fit::new(area(0.0, 0.0, 2000.0, 540.0), 1920, 1080).unwrap();
        assert_eq!((fit.width, fit.height), (960, 540));
        assert_eq!(fit.x, 520);
    }

    #[test]
    fn a_small_screen_is_never_scaled_up() {
        let fit = Fit::new(area(0.0, 0.0, 1400.0, 900.0), 1024, 768).unwrap();
        assert_eq!((fit.width, fit.height, fit.x, fit.y), (1024, 768, 188, 66));
    }

    #[test]
    fn nothing_fits_in_nothing() {
        assert_eq!(Fit::new(area(0.0, 0.0, 0.0, 100.0), 1920, 1080), None);
        assert_eq!(Fit::new(area(0.0, 0.0, 100.0, 100.0), 0, 1080), None);
        // What a page could send that is no place: refused, not turned into a corner.
        assert_eq!(
            Fit::new(area(f64::NAN, 0.0, 100.0, 100.0), 1920, 1080),
            None
        );
        assert_eq!(
            Fit::new(area(0.0, 0.0, f64::INFINITY, 100.0), 1920, 1080),
            None
        );
        let fit = Fit::new(area(0.0, 0.0, 960.0, 540.0), 1920, 1080).unwrap();
        assert_eq!(fit.to_remote(f64::NAN, 10.0), None);
        assert_eq!(fit.to_remote(10.0, f64::NEG_INFINITY), None);
    }

    #[test]
    fn input_maps_back_through_the_same_transform() {
        let fit = Fit::new(area(10.0, 100.0, 1280.0, 900.0), 1920, 1080).unwrap();
        // Corners and centre of the drawn picture.
        assert_eq!(fit.to_remote(10.0, 190.0), Some((0, 0)));
        assert_eq!(fit.to_remote(1289.9, 909.9), Some((1919, 1079)));
        assert_eq!(fit.to_remote(650.0, 550.0), Some((960, 540)));
        // The letterbox is not the remote screen.
        assert_eq!(fit.to_remote(650.0, 150.0), None);
        assert_eq!(fit.to_remote(1290.0, 500.0), None);
        // Drawing and input agree: the pixel drawn for a remote pixel maps back to it (within
        // the scale's rounding).
        for (rx, ry) in [(0, 0), (333, 777), (1919, 1079), (960, 540)] {
            let (dx, dy) = fit.from_remote(rx, ry);
            let (bx, by) = fit
                .to_remote(
                    f64::from(fit.x) + f64::from(dx) + 0.5,
                    f64::from(fit.y) + f64::from(dy) + 0.5,
                )
                .unwrap();
            assert!(u32::from(bx).abs_diff(rx) <= 1 && u32::from(by).abs_diff(ry) <= 1);
        }
    }

    #[test]
    fn the_scaler_converts_bt601_limited_range_and_picks_the_nearest_sample() {
        // 4x2 source: left half white (Y 235), right half black (Y 16), neutral chroma.
        let y = [235, 235, 16, 16, 235, 235, 16, 16];
        let (u, v) = ([128u8, 128], [128u8, 128]);
        let src = Planes {
            y: &y,
            u: &u,
            v: &v,
            y_stride: 4,
            uv_stride: 2,
            width: 4,
            height: 2,
        };
        let mut dst = vec![0u8; 2 * 4];
        Scaler::default().draw(&src, &mut dst, 2, 1).unwrap();
        assert_eq!(dst, [255, 255, 255, 255, 0, 0, 0, 255]);

        // Pure red in BT.601 limited range: Y 81, U 90, V 240.
        let (y, u, v) = ([81u8; 4], [90u8], [240u8]);
        let src = Planes {
            y: &y,
            u: &u,
            v: &v,
            y_stride: 2,
            uv_stride: 1,
            width: 2,
            height: 2,
        };
        let mut dst = vec![0u8; 4 * 4 * 4];
        Scaler::default().draw(&src, &mut dst, 4, 4).unwrap();
        for px in dst.chunks_exact(4) {
            assert!(px[2] >= 250 && px[1] <= 5 && px[0] <= 5, "{px:?}");
        }
    }

    /// BT.601 limited range, as the scaler did it pixel by pixel before it used the `yuv` crate:
    /// blue, green, red.
    fn reference(y: u8, u: u8, v: u8) -> [u8; 3] {
        let c = 298 * (i32::from(y) - 16);
        let d = i32::from(u) - 128;
        let e = i32::from(v) - 128;
        let clamp = |v: i32| ((v + 128) >> 8).clamp(0, 255) as u8;
        [
            clamp(c + 516 * d),
            clamp(c - 100 * d - 208 * e),
            clamp(c + 409 * e),
        ]
    }

    #[test]
    fn the_scaler_picks_the_nearest_samples_at_any_size_and_converts_as_before() {
        // A 20x15 picture (odd height, as a cropped or odd screen can be): luma from a pattern,
        // chroma per 2x2 block from another, inside larger planes (the strides of a decoder).
        let (w, h, ys, cs) = (20usize, 15usize, 32usize, 16usize);
        let ch = h.div_ceil(2);
        let yp: Vec<u8> = (0..ys * h).map(|i| (16 + (i * 37) % 220) as u8).collect();
        let up: Vec<u8> = (0..cs * ch).map(|i| (60 + (i * 11) % 130) as u8).collect();
        let vp: Vec<u8> = (0..cs * ch).map(|i| (70 + (i * 29) % 120) as u8).collect();
        let src = Planes {
            y: &yp,
            u: &up,
            v: &vp,
            y_stride: ys,
            uv_stride: cs,
            width: w,
            height: h,
        };
        let mut scaler = Scaler::default();
        for (dw, dh) in [(7usize, 5usize), (13, 9), (20, 15), (31, 22)] {
            let mut dst = vec![0u8; dw * dh * 4];
            scaler.draw(&src, &mut dst, dw, dh).unwrap();
            for dy in 0..dh {
                for dx in 0..dw {
                    let (sx, sy) = (dx * w / dw, dy * h / dh);
                    // The chroma of the 2x2 destination block's top-left pixel.
                    let (bx, by) = ((dx & !1) * w / dw, (dy & !1) * h / dh);
                    let want = reference(
                        yp[sy * ys + sx],
                        up[(by / 2) * cs + bx / 2],
                        vp[(by / 2) * cs + bx / 2],
                    );
                    let px = &dst[(dy * dw + dx) * 4..][..4];
                    for c in 0..3 {
                        assert!(
                            px[c].abs_diff(want[c]) <= 2,
                            "{dw}x{dh} at ({dx}, {dy}): {px:?} against BGR {want:?}"
                        );
                    }
                    assert_eq!(px[3], 0xff);
                }
            }
        }
        let mut short = vec![0u8; 10];
        assert!(scaler.draw(&src, &mut short, 7, 5).is_err());
    }
}
