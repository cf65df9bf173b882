//! Synthetic screen content at any size, the same for every benchmark: a page being typed, a page
//! scrolling, and a video-like region of changing noise. Frames are drawn into a BGRX buffer (the
//! layout X11 capture returns), so they can be put on a virtual display or fed to the streamer's
//! encoder directly.

use x11rb::connection::Connection as _;
use x11rb::protocol::xproto::{
    ConnectionExt as _, CreateGCAux, CreateWindowAux, Gcontext, ImageFormat, Window, WindowClass,
};
use x11rb::rust_connection::RustConnection;

/// A window covering a display's top-left `width` x `height`, above everything, that shows frames.
#[derive(Debug)]
pub struct Canvas {
    conn: RustConnection,
    window: Window,
    gc: Gcontext,
    width: u16,
    height: u16,
}

impl Canvas {
    /// Opens the window on `display` (an X display name such as `:99`).
    pub fn open(display: &str, width: u16, height: u16) -> anyhow::Result<Self> {
        let (conn, screen) = x11rb::connect(Some(display))?;
        let window = top_window(&conn, screen, (0, 0, width, height), CreateWindowAux::new())?;
        let gc = conn.generate_id()?;
        conn.create_gc(gc, window, &CreateGCAux::new())?;
        Ok(Self {
            conn,
            window,
            gc,
            width,
            height,
        })
    }

    /// Puts a BGRX frame of the canvas's size on screen, and returns once the server has it.
    pub fn show(&self, bgrx: &[u8]) -> anyhow::Result<()> {
        let row = usize::from(self.width) * 4;
        anyhow::ensure!(bgrx.len() == row * usize::from(self.height), "frame size");
        // In bands of rows, under the X request size limit.
        let band = 64usize;
        for (i, rows) in bgrx.chunks(row * band).enumerate() {
            self.conn.put_image(
                ImageFormat::Z_PIXMAP,
                self.window,
                self.gc,
                self.width,
                u16::try_from(rows.len() / row)?,
                0,
                i16::try_from(i * band)?,
                0,
                24,
                rows,
            )?;
        }
        self.conn.get_input_focus()?.reply()?;
        Ok(())
    }

    /// Puts a BGRX image of `width` x `height` at `x`, `y` in the canvas, in bands of rows under
    /// the request size limit, and returns once the server has it.
    pub fn show_rect(
        &self,
        (x, y, width, height): (i16, i16, u16, u16),
        bgrx: &[u8],
    ) -> anyhow::Result<()> {
        let row = usize::from(width) * 4;
        anyhow::ensure!(bgrx.len() == row * usize::from(height), "rectangle size");
        let band = (256 * 1024 / row.max(1)).max(1);
        for (i, rows) in bgrx.chunks(row * band).enumerate() {
            self.conn.put_image(
                ImageFormat::Z_PIXMAP,
                self.window,
                self.gc,
                width,
                u16::try_from(rows.len() / row)?,
                x,
                y + i16::try_from(i * band)?,
                0,
                24,
                rows,
            )?;
        }
        self.conn.get_input_focus()?.reply()?;
        Ok(())
    }
}

/// Maps an override-redirect window (above everything, no window manager) at `(x, y, width, height)`
/// on `screen`'s root, with `aux` for anything else (a background colour, say).
pub fn top_window(
    conn: &RustConnection,
    screen: usize,
    (x, y, width, height): (i16, i16, u16, u16),
    aux: CreateWindowAux,
) -> anyhow::Result<Window> {
    let root = conn.setup().roots[screen].root;
    let window = conn.generate_id()?;
    conn.create_window(
        0,
        window,
        root,
        x,
        y,
        width,
        height,
        0,
        WindowClass::INPUT_OUTPUT,
        0,
        &aux.override_redirect(1),
    )?;
    conn.map_window(window)?;
    Ok(window)
}

/// A 40x40 square of fresh noise at 30 fps in the top-left corner of a `width` x `height` light
/// grey screen on `display`, until `stop`: content that changes all the time at a steady, small
/// size.
pub fn noise_corner(
    display: &str,
    width: u16,
    height: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let canvas = Canvas::open(display, width, height).expect("the canvas opens");
    canvas
        .show(&vec![240u8; usize::from(width) * usize::from(height) * 4])
        .expect("the background shows");
    std::thread::spawn(move || {
        let mut seed = 9u32;
        let mut block = vec![0u8; 40 * 40 * 4];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            for b in block.iter_mut() {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                *b = (seed >> 16) as u8;
            }
            if canvas.show_rect((0, 0, 40, 40), &block).is_err() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(33));
        }
    })
}

/// What is on the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// A page of text growing by one character a frame.
    Typing,
    /// The page moving up 12 pixels a frame.
    Scrolling,
    /// A region of two thirds of the screen's width and height, centred, of changing noise.
    Video,
}

impl Content {
    /// Every kind, with the name figures use.
    pub const ALL: [(&'static str, Content); 3] = [
        ("typing", Content::Typing),
        ("scrolling", Content::Scrolling),
        ("video-like", Content::Video),
    ];
}

/// Draws frame `n` of `content` at `width` x `height` into `out` (BGRX, 4 bytes a pixel, no row
/// padding). `seed` carries the noise generator's state from frame to frame.
pub fn draw(content: Content, n: usize, width: u16, height: u16, seed: &mut u32, out: &mut [u8]) {
    let (w, h) = (usize::from(width), usize::from(height));
    let text_pixel = |x: usize, y: usize| -> bool {
        // Lines of "words": dark blocks 7x11 on a white page, with gaps.
        let (line, row) = (y / 18, y % 18);
        let (col, cx) = (x / 9, x % 9);
        row < 11 && cx < 7 && (col * 7 + line * 13) % 11 != 0 && (col + line) % 17 != 0
    };
    let (video_x, video_y) = (w / 6..w - w / 6, h / 6..h - h / 6);
    for y in 0..h {
        for x in 0..w {
            let i = (y * w + x) * 4;
            let (r, g, b) = match content {
                Content::Typing => {
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
                    if video_x.contains(&x) && video_y.contains(&y) {
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

/// Frames of a content drawn in advance, and for each the rectangle that changed from the one
/// before (wrapping), for benchmarks that show content at a steady rate.
#[derive(Debug)]
pub struct Clip {
    /// Width of each frame.
    pub width: u16,
    /// Height of each frame.
    pub height: u16,
    /// The frames, BGRX.
    pub frames: Vec<Vec<u8>>,
    /// For each frame, `(x, y, width, height)` of what changed from the one before.
    pub dirty: Vec<Option<(u16, u16, u16, u16)>>,
}

impl Clip {
    /// `count` frames of `content` at `width` x `height`; `None` is a still screen (one frame of
    /// the typed page, nothing changing).
    pub fn render(content: Option<Content>, width: u16, height: u16, count: usize) -> Self {
        let mut seed = 7u32;
        let count = if content.is_some() { count.max(1) } else { 1 };
        let frames: Vec<Vec<u8>> = (0..count)
            .map(|n| {
                let mut f = vec![0u8; usize::from(width) * usize::from(height) * 4];
                draw(
                    content.unwrap_or(Content::Typing),
                    n,
                    width,
                    height,
                    &mut seed,
                    &mut f,
                );
                f
            })
            .collect();
        let dirty = (0..count)
            .map(|n| changed_box(&frames[(n + count - 1) % count], &frames[n], width, height))
            .collect();
        Self {
            width,
            height,
            frames,
            dirty,
        }
    }

    /// Shows the clip on `display` at `fps` in a loop on a thread named `thread` until `stop`,
    /// putting only each frame's changed rectangle on screen (as applications draw).
    pub fn play(
        self: std::sync::Arc<Self>,
        display: &str,
        fps: u16,
        stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
        thread: &str,
    ) -> std::thread::JoinHandle<()> {
        use std::time::{Duration, Instant};
        let canvas = Canvas::open(display, self.width, self.height).expect("the canvas opens");
        canvas.show(&self.frames[0]).expect("the first frame shows");
        let clip = self;
        std::thread::Builder::new()
            .name(thread.into())
            .spawn(move || {
                let mut next = Instant::now();
                let mut n = 0usize;
                let mut rect = Vec::new();
                let stride = usize::from(clip.width) * 4;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n = (n + 1) % clip.frames.len();
                    if let Some((x, y, w, h)) = clip.dirty[n] {
                        rect.clear();
                        for row in usize::from(y)..usize::from(y + h) {
                            let at = row * stride + usize::from(x) * 4;
                            rect.extend_from_slice(&clip.frames[n][at..at + usize::from(w) * 4]);
                        }
                        let at = (x as i16, y as i16, w, h);
                        if canvas.show_rect(at, &rect).is_err() {
                            return;
                        }
                    }
                    next += Duration::from_secs(1) / u32::from(fps.max(1));
                    let now = Instant::now();
                    if next > now {
                        std::thread::sleep(next - now);
                    } else {
                        next = now;
                    }
                }
            })
            .expect("a thread")
    }
}

/// The smallest rectangle holding every pixel that differs between `a` and `b`.
fn changed_box(a: &[u8], b: &[u8], width: u16, height: u16) -> Option<(u16, u16, u16, u16)> {
    let (w, h) = (usize::from(width), usize::from(height));
    let (mut x0, mut y0, mut x1, mut y1) = (w, h, 0, 0);
    let px = |row: &[u8], x: usize| -> [u8; 4] {
        [row[x * 4], row[x * 4 + 1], row[x * 4 + 2], row[x * 4 + 3]]
    };
    for y in 0..h {
        let (ra, rb) = (
            &a[y * w * 4..(y + 1) * w * 4],
            &b[y * w * 4..(y + 1) * w * 4],
        );
        if ra == rb {
            continue;
        }
        let first = (0..w).find(|&x| px(ra, x) != px(rb, x))?;
        let last = (0..w).rfind(|&x| px(ra, x) != px(rb, x))?;
        (x0, x1, y0, y1) = (x0.min(first), x1.max(last + 1), y0.min(y), y + 1);
    }
    let c = |v: usize| u16::try_from(v).unwrap_or(u16::MAX);
    (x1 > x0).then(|| (c(x0), c(y0), c(x1 - x0), c(y1 - y0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(content: Content, n: usize, seed: &mut u32) -> Vec<u8> {
        let mut out = vec![0u8; 1920 * 400 * 4];
        draw(content, n, 1920, 400, seed, &mut out);
        out
    }

    fn changed_pixels(a: &[u8], b: &[u8]) -> usize {
        a.chunks(4).zip(b.chunks(4)).filter(|(p, q)| p != q).count()
    }

    #[test]
    fn typing_adds_one_character_cell_a_frame() {
        // Five frames type five characters (some may be spaces): a few cells change, no more.
        let mut seed = 1;
        let changed = changed_pixels(
            &frame(Content::Typing, 0, &mut seed),
            &frame(Content::Typing, 5, &mut seed),
        );
        assert!(
            (1..=5 * 9 * 18).contains(&changed),
            "{changed} pixels changed"
        );
    }

    #[test]
    fn scrolling_moves_the_page_and_video_changes_its_region_only() {
        let mut seed = 1;
        let a = frame(Content::Scrolling, 0, &mut seed);
        let b = frame(Content::Scrolling, 1, &mut seed);
        // Row y of frame 1 is row y + 12 of frame 0.
        let row = 1920 * 4;
        assert_eq!(b[..row * 300], a[row * 12..row * 312]);
        assert!(changed_pixels(&a, &b) > 10_000);
        let a = frame(Content::Video, 0, &mut seed);
        let b = frame(Content::Video, 1, &mut seed);
        assert!(changed_pixels(&a, &b) > 1280 * 266 / 2, "the noise changes");
        assert_eq!(
            a[..4],
            [48, 40, 40, 0],
            "the corner is outside the video region"
        );
        assert_eq!(
            a[..row * 66],
            b[..row * 66],
            "above the region nothing changes"
        );
    }
}
