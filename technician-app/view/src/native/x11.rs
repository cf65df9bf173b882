//! The native view's surface on X11: a child X window of the app's window.
//!
//! - Pixels are converted straight into a shared memory segment that the server reads
//!   (`ShmPutImage`, MIT-SHM), or, where the server cannot share memory with the app, sent with
//!   `PutImage` in bands under its request limit; a round trip after each picture makes "drawn"
//!   mean "on the server's screen" (and hands the segment back for the next picture).
//! - An empty SHAPE input region lets the pointer and the keyboard through to the page.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use x11_shm::{Access, Segment};
use x11rb::connection::{Connection, RequestConnection};
use x11rb::protocol::shape::{self, ConnectionExt as _};
use x11rb::protocol::shm::{self, ConnectionExt as _};
use x11rb::protocol::xproto::{
    ClipOrdering, ConfigureWindowAux, ConnectionExt as _, CreateGCAux, CreateWindowAux, EventMask,
    ImageFormat, WindowClass,
};
use x11rb::protocol::Event as XEvent;
use x11rb::rust_connection::RustConnection;

use super::Surface;
use crate::Fit;

/// The child window and what drawing into it needs.
pub struct X11Surface {
    conn: RustConnection,
    window: u32,
    gc: u32,
    depth: u8,
    /// Largest `PutImage` payload, bytes.
    max_bytes: usize,
    /// Where the window is and whether it is mapped.
    placed: Option<Fit>,
    /// Shared memory with the server, while it works.
    shm: bool,
    segment: Option<Segment>,
    /// The picture when the server cannot share memory.
    pixels: Vec<u8>,
}

impl std::fmt::Debug for X11Surface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X11Surface")
            .field("window", &self.window)
            .field("shm", &self.shm)
            .finish_non_exhaustive()
    }
}

impl X11Surface {
    fn connect(parent: u32) -> Result<Self> {
        let (conn, _) = x11rb::connect(None).context("the X display")?;
        if conn
            .extension_information(shape::X11_EXTENSION_NAME)?
            .is_none()
        {
            bail!(
                "the X server has no SHAPE extension (needed for a view that passes input through)"
            );
        }
        let window = conn.generate_id()?;
        conn.create_window(
            x11rb::COPY_DEPTH_FROM_PARENT,
            window,
            parent,
            0,
            0,
            1,
            1,
            0,
            WindowClass::INPUT_OUTPUT,
            x11rb::COPY_FROM_PARENT,
            // No background: the server never clears the picture before a redraw.
            &CreateWindowAux::new().event_mask(EventMask::EXPOSURE),
        )?;
        // Input passes through to the page beneath.
        conn.shape_rectangles(
            shape::SO::SET,
            shape::SK::INPUT,
            ClipOrdering::UNSORTED,
            window,
            0,
            0,
            &[],
        )?;
        let gc = conn.generate_id()?;
        conn.create_gc(gc, window, &CreateGCAux::new().graphics_exposures(0))?;
        let depth = conn.get_geometry(window)?.reply()?.depth;
        let bpp = conn
            .setup()
            .pixmap_formats
            .iter()
            .find(|f| f.depth == depth)
            .map(|f| f.bits_per_pixel);
        if bpp != Some(32) || !(depth == 24 || depth == 32) {
            bail!("the app's window has depth {depth} at {bpp:?} bits a pixel; the view draws 32-bit pixels");
        }
        let max_bytes = conn.maximum_request_bytes().saturating_sub(64);
        let shm = conn
            .extension_information(shm::X11_EXTENSION_NAME)?
            .is_some();
        Ok(Self {
            conn,
            window,
            gc,
            depth,
            max_bytes,
            placed: None,
            shm,
            segment: None,
            pixels: Vec::new(),
        })
    }

    /// Whether a shared memory segment of at least `len` bytes is there to draw into (made or
    /// grown here); false without MIT-SHM.
    fn ensure_segment(&mut self, len: usize) -> bool {
        if !self.shm {
            return false;
        }
        if self.segment.as_ref().is_none_or(|s| s.size() < len) {
            if let Some(old) = self.segment.take() {
                old.release(&self.conn);
            }
            self.segment = Segment::attach(&self.conn, len, Access::ClientWrites);
            if self.segment.is_none() {
                eprintln!("technician-app: the X server cannot share memory with the app; sending pictures over its socket");
                self.shm = false;
                return false;
            }
        }
        true
    }

    /// Shows the shared picture (`width` x `height`) at the window's corner, then waits for the
    /// server.
    fn put_shared(&self, width: u32, height: u32) -> Result<()> {
        let seg = self
            .segment
            .as_ref()
            .map(Segment::xid)
            .context("no shared memory")?;
        let (w, h) = (width as u16, height as u16);
        self.conn.shm_put_image(
            self.window,
            self.gc,
            w,
            h,
            0,
            0,
            w,
            h,
            0,
            0,
            self.depth,
            ImageFormat::Z_PIXMAP.into(),
            false,
            seg,
            0,
        )?;
        self.conn.get_input_focus()?.reply()?;
        Ok(())
    }

    /// Puts `pixels` (`width` x `height` BGRX) at the window's corner, then waits for the server.
    fn put(&self, pixels: &[u8], width: u32, height: u32) -> Result<()> {
        let stride = width as usize * 4;
        let rows = (self.max_bytes / stride).max(1);
        let pixels = &pixels[..(stride * height as usize).min(pixels.len())];
        for (band, chunk) in pixels.chunks(rows * stride).enumerate() {
            self.conn.put_image(
                ImageFormat::Z_PIXMAP,
                self.window,
                self.gc,
                width as u16,
                (chunk.len() / stride) as u16,
                0,
                (band * rows) as i16,
                0,
                self.depth,
                chunk,
            )?;
        }
        self.conn.get_input_focus()?.reply()?;
        Ok(())
    }
}

impl Surface for X11Surface {
    const IDLE: Duration = Duration::from_millis(100);

    type Parent = u32;

    fn parent(parent: u64) -> Result<u32> {
        u32::try_from(parent).context("an X window id has 32 bits")
    }

    fn open(parent: u32) -> Result<Self> {
        Self::connect(parent)
    }

    fn id(&self) -> u64 {
        u64::from(self.window)
    }

    fn place(&mut self, fit: Option<Fit>) -> Result<()> {
        if fit == self.placed {
            return Ok(());
        }
        match fit {
            Some(f) => {
                self.conn.configure_window(
                    self.window,
                    &ConfigureWindowAux::new()
                        .x(f.x)
                        .y(f.y)
                        .width(f.width)
                        .height(f.height),
                )?;
                if self.placed.is_none() {
                    self.conn.map_window(self.window)?;
                }
            }
            None => {
                self.conn.unmap_window(self.window)?;
            }
        }
        self.placed = fit;
        self.conn.flush()?;
        Ok(())
    }

    fn canvas(&mut self, width: u32, height: u32) -> &mut [u8] {
        let len = width as usize * height as usize * 4;
        if self.ensure_segment(len) {
            if let Some(buf) = self.segment.as_mut().and_then(|s| s.bytes_mut(len)) {
                return buf;
            }
        }
        super::sized(&mut self.pixels, width, height)
    }

    fn present(&mut self, width: u32, height: u32) -> Result<()> {
        if self.shm && self.segment.is_some() {
            self.put_shared(width, height)
        } else {
            self.put(&self.pixels, width, height)
        }
    }

    /// One pixel of the window as the server shows it.
    fn read(&self, x: u32, y: u32) -> Result<[u8; 3]> {
        let img = self
            .conn
            .get_image(
                ImageFormat::Z_PIXMAP,
                self.window,
                x as i16,
                y as i16,
                1,
                1,
                !0,
            )?
            .reply()?;
        match img.data.get(..3) {
            Some(&[b, g, r]) => Ok([r, g, b]),
            _ => bail!("an empty image"),
        }
    }

    fn exposed(&mut self) -> bool {
        let mut any = false;
        while let Ok(Some(ev)) = self.conn.poll_for_event() {
            any |= matches!(ev, XEvent::Expose(_));
        }
        any
    }

    fn shared_memory(&self) -> bool {
        self.segment.is_some()
    }
}
