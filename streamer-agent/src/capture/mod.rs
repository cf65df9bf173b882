//! Screen capture behind a small trait, one backend per platform: X11 on Linux; on Windows DXGI
//! Desktop Duplication first and GDI where duplication is unavailable (macOS later).

#[cfg(windows)]
pub mod dxgi;
#[cfg(windows)]
pub mod gdi;
#[cfg(target_os = "linux")]
pub mod x11;

/// One monitor as the capture backend sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Monitor {
    /// Position in the backend's list, stable while the layout does not change.
    pub id: u32,
    /// Identity from the platform, the same for the same screen across layout changes (X11: the
    /// RandR monitor's name; Windows: the output's device name). Never empty.
    pub key: String,
    /// Name for the technician's menu.
    pub name: String,
    /// Left edge in the desktop.
    pub x: i32,
    /// Top edge in the desktop.
    pub y: i32,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Whether it is the primary monitor.
    pub primary: bool,
}

/// One captured image, BGRA (the fourth byte unused), rows top to bottom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// Bytes from one row to the next.
    pub stride: usize,
    /// The pixels.
    pub bgra: Vec<u8>,
}

/// Capture failed (the platform refused, or the monitor went away).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// No display could be opened.
    #[error("cannot open the display: {0}")]
    Connect(String),
    /// The display server refused a request.
    #[error("display server: {0}")]
    Server(String),
    /// The display's pixel format is not one this backend reads.
    #[error("unsupported pixel format: {0}")]
    Format(String),
    /// The monitor is no longer there.
    #[error("monitor {0} is gone")]
    NoSuchMonitor(u32),
}

impl Frame {
    /// A frame with no pixels: what a capture loop holds before its first capture of a monitor.
    pub fn empty() -> Self {
        Self {
            width: 0,
            height: 0,
            stride: 0,
            bgra: Vec::new(),
        }
    }
}

/// A rectangle in a monitor's own coordinates (0, 0 is its top-left pixel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    /// Left edge.
    pub x: u16,
    /// Top edge.
    pub y: u16,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
}

/// What [`ScreenSource::capture_changes`] changed in the frame it was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing on the monitor changed: the frame is as it was.
    Unchanged,
    /// Only these parts were read again; the rest of the frame was already right.
    Regions(Vec<Rect>),
    /// The whole frame was read (first capture, a new size, or a source without change reports).
    Whole,
}

impl Change {
    /// The rows touched, top inclusive and bottom exclusive, or `None` when unchanged.
    pub fn rows(&self, height: u16) -> Option<(u16, u16)> {
        match self {
            Change::Unchanged => None,
            Change::Whole => Some((0, height)),
            Change::Regions(rects) => {
                let top = rects.iter().map(|r| r.y).min()?;
                let bottom = rects.iter().map(|r| r.y.saturating_add(r.height)).max()?;
                Some((top, bottom.min(height)))
            }
        }
    }
}

/// A source of screen images. Implementations never draw the mouse cursor.
pub trait ScreenSource: Send {
    /// The monitors now.
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError>;
    /// The current image of `monitor`.
    fn capture(&mut self, monitor: &Monitor) -> Result<Frame, CaptureError>;
    /// Brings `frame` up to date with `monitor` and says what changed. `frame` must be the one the
    /// previous call filled for the same monitor, or [`Frame::empty`]; a source that knows what
    /// changed (X11 DAMAGE, Desktop Duplication's dirty rectangles) reads only that, and nothing at
    /// all when the screen is still. The default reads the whole image every time.
    fn capture_changes(
        &mut self,
        monitor: &Monitor,
        frame: &mut Frame,
    ) -> Result<Change, CaptureError> {
        *frame = self.capture(monitor)?;
        Ok(Change::Whole)
    }
}

/// `frame` turned clockwise by `quarter_turns` quarter turns (a rotated output's native image into
/// the desktop's orientation).
pub fn rotate_bgra(frame: &Frame, quarter_turns: u8) -> Frame {
    let (w, h) = (usize::from(frame.width), usize::from(frame.height));
    let turns = quarter_turns % 4;
    if turns == 0 {
        return frame.clone();
    }
    let (ow, oh) = if turns == 2 { (w, h) } else { (h, w) };
    let mut out = vec![0u8; ow * oh * 4];
    for y in 0..h {
        for x in 0..w {
            let (nx, ny) = match turns {
                1 => (h - 1 - y, x),
                2 => (w - 1 - x, h - 1 - y),
                _ => (y, w - 1 - x),
            };
            let src = y * frame.stride + x * 4;
            let dst = (ny * ow + nx) * 4;
            out[dst..dst + 4].copy_from_slice(&frame.bgra[src..src + 4]);
        }
    }
    Frame {
        width: u16::try_from(ow).unwrap_or(u16::MAX),
        height: u16::try_from(oh).unwrap_or(u16::MAX),
        stride: ow * 4,
        bgra: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 3×2 frame whose pixel at (x, y) has blue = 10·y + x.
    fn numbered() -> Frame {
        let mut bgra = Vec::new();
        for y in 0..2u8 {
            for x in 0..3u8 {
                bgra.extend_from_slice(&[10 * y + x, 0, 0, 0]);
            }
        }
        Frame {
            width: 3,
            height: 2,
            stride: 12,
            bgra,
        }
    }

    fn blues(f: &Frame) -> Vec<u8> {
        f.bgra.chunks(4).map(|p| p[0]).collect()
    }

    #[test]
    fn rotation_turns_the_image_clockwise() {
        let f = numbered();
        let quarter = rotate_bgra(&f, 1);
        assert_eq!((quarter.width, quarter.height), (2, 3));
        // Clockwise: the bottom-left pixel comes to the top-left.
        assert_eq!(blues(&quarter), [10, 0, 11, 1, 12, 2]);
        assert_eq!(blues(&rotate_bgra(&f, 2)), [12, 11, 10, 2, 1, 0]);
        assert_eq!(blues(&rotate_bgra(&f, 3)), [2, 12, 1, 11, 0, 10]);
        assert_eq!(rotate_bgra(&f, 4), f);
        assert_eq!(rotate_bgra(&rotate_bgra(&f, 1), 3), f);
    }
}
