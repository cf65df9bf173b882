//! Screen capture behind a small trait, one backend per platform (X11 here; Windows and macOS later).

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

/// A source of screen images. Implementations never draw the mouse cursor.
pub trait ScreenSource: Send {
    /// The monitors now.
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError>;
    /// The current image of `monitor`.
    fn capture(&mut self, monitor: &Monitor) -> Result<Frame, CaptureError>;
}
