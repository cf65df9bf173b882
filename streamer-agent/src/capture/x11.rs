//! X11 capture with x11rb: RandR monitors, images read with `GetImage` from each screen's root.
//!
//! Why not scrap's XShm capturer: its monitor enumeration frees the RandR reply before reading the
//! monitors out of it (a use after free). `GetImage` copies each image through the X socket instead of
//! shared memory; docs/PERFORMANCE.md measures what that costs. The root window never contains the
//! cursor, so it is never captured.

use x11rb::connection::Connection;
use x11rb::protocol::randr::ConnectionExt as _;
use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat, ImageOrder};
use x11rb::rust_connection::RustConnection;

use super::{CaptureError, Frame, Monitor, ScreenSource};

/// Captures the monitors of one X display.
#[derive(Debug)]
pub struct X11Source {
    conn: RustConnection,
    /// The root window each monitor belongs to, by monitor id.
    roots: Vec<u32>,
}

fn server<E: std::fmt::Display>(e: E) -> CaptureError {
    CaptureError::Server(e.to_string())
}

impl X11Source {
    /// Connects to `display` (such as `:0`), or to `$DISPLAY` when `None`.
    pub fn connect(display: Option<&str>) -> Result<Self, CaptureError> {
        let (conn, _) =
            x11rb::connect(display).map_err(|e| CaptureError::Connect(e.to_string()))?;
        let setup = conn.setup();
        if setup.image_byte_order != ImageOrder::LSB_FIRST {
            return Err(CaptureError::Format(
                "the server sends images most significant byte first".into(),
            ));
        }
        for screen in &setup.roots {
            let bpp = setup
                .pixmap_formats
                .iter()
                .find(|f| f.depth == screen.root_depth)
                .map(|f| f.bits_per_pixel);
            if screen.root_depth < 24 || bpp != Some(32) {
                return Err(CaptureError::Format(format!(
                    "depth {} at {:?} bits per pixel; 24 or 32 at 32 are supported",
                    screen.root_depth, bpp
                )));
            }
        }
        Ok(Self {
            conn,
            roots: Vec::new(),
        })
    }

    /// The underlying connection, for the input backend on the same display.
    pub fn connection(&self) -> &RustConnection {
        &self.conn
    }
}

impl ScreenSource for X11Source {
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        let mut monitors = Vec::new();
        self.roots.clear();
        let screens: Vec<_> = self
            .conn
            .setup()
            .roots
            .iter()
            .map(|s| (s.root, s.width_in_pixels, s.height_in_pixels))
            .collect();
        for (root, width, height) in screens {
            let listed = self
                .conn
                .randr_get_monitors(root, true)
                .map_err(server)?
                .reply()
                .map(|r| r.monitors)
                .unwrap_or_default();
            if listed.is_empty() {
                // No RandR monitors: the whole screen is one monitor.
                monitors.push(Monitor {
                    id: 0,
                    key: format!("screen-{}", self.roots.len()),
                    name: format!("Screen {}", self.roots.len()),
                    x: 0,
                    y: 0,
                    width,
                    height,
                    primary: monitors.is_empty(),
                });
                self.roots.push(root);
                continue;
            }
            for m in listed {
                let name = self
                    .conn
                    .get_atom_name(m.name)
                    .map_err(server)?
                    .reply()
                    .map(|r| String::from_utf8_lossy(&r.name).into_owned())
                    .ok()
                    .filter(|n| !n.is_empty());
                // The RandR monitor's name is its identity: the server keeps it for that monitor
                // whatever else changes in the layout.
                let key = name.clone().unwrap_or_else(|| format!("randr-{}", m.name));
                monitors.push(Monitor {
                    id: 0,
                    key,
                    name: name.unwrap_or_else(|| "Monitor".into()),
                    x: i32::from(m.x),
                    y: i32::from(m.y),
                    width: m.width,
                    height: m.height,
                    primary: m.primary,
                });
                self.roots.push(root);
            }
        }
        for (i, m) in monitors.iter_mut().enumerate() {
            m.id = u32::try_from(i).unwrap_or(u32::MAX);
        }
        Ok(monitors)
    }

    fn capture(&mut self, monitor: &Monitor) -> Result<Frame, CaptureError> {
        let root = *self
            .roots
            .get(monitor.id as usize)
            .ok_or(CaptureError::NoSuchMonitor(monitor.id))?;
        let x = i16::try_from(monitor.x).map_err(|_| CaptureError::NoSuchMonitor(monitor.id))?;
        let y = i16::try_from(monitor.y).map_err(|_| CaptureError::NoSuchMonitor(monitor.id))?;
        let image = self
            .conn
            .get_image(
                ImageFormat::Z_PIXMAP,
                root,
                x,
                y,
                monitor.width,
                monitor.height,
                !0,
            )
            .map_err(server)?
            .reply()
            .map_err(|_| CaptureError::NoSuchMonitor(monitor.id))?;
        let stride = usize::from(monitor.width) * 4;
        if image.data.len() < stride * usize::from(monitor.height) {
            return Err(CaptureError::Format(format!(
                "{} bytes for a {}x{} image",
                image.data.len(),
                monitor.width,
                monitor.height
            )));
        }
        Ok(Frame {
            width: monitor.width,
            height: monitor.height,
            stride,
            bgra: image.data,
        })
    }
}
