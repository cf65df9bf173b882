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
