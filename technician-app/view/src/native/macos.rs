//! The native view's surface on macOS: [`technician_view_macos::MacView`], a layer-backed `NSView`
//! over the webview that the pointer passes through, given each picture as a `CGImage`.
//!
//! **Untested**: no Mac runs here, and this crate (openh264's C sources) cannot be built for macOS
//! here; `technician-view-macos`, which holds every AppKit call, is type-checked for
//! `aarch64-apple-darwin` by `cargo xtask test`. The screen is not read back (that needs the
//! screen-recording permission), so the probe of tests and benchmarks never fires on macOS.

use std::time::Duration;

use anyhow::{anyhow, Result};
use technician_view_macos::MacView;

use super::Surface;
use crate::Fit;

/// The view and the picture drawn for it.
#[derive(Debug)]
pub struct MacSurface {
    view: MacView,
    pixels: Vec<u8>,
    placed: Option<Fit>,
}

impl Surface for MacSurface {
    /// AppKit redraws a layer's contents itself: nothing to look at between pictures.
    const IDLE: Duration = Duration::from_millis(100);

    /// The view is made on the caller's thread, the main thread: the drawing thread's calls go
    /// to the main thread too, which would be waiting for the drawing thread here.
    type Parent = MacView;

    fn parent(parent: u64) -> Result<MacView> {
        MacView::open(parent).map_err(|e| anyhow!("the native view: {e}"))
    }

    fn open(view: MacView) -> Result<Self> {
        Ok(Self {
            view,
            pixels: Vec::new(),
            placed: None,
        })
    }

    fn id(&self) -> u64 {
        self.view.id()
    }

    fn place(&mut self, fit: Option<Fit>) -> Result<()> {
        if fit != self.placed {
            self.view.place(fit.map(|f| (f.x, f.y, f.width, f.height)));
            self.placed = fit;
        }
        Ok(())
    }

    fn canvas(&mut self, width: u32, height: u32) -> &mut [u8] {
        super::sized(&mut self.pixels, width, height)
    }

    fn present(&mut self, width: u32, height: u32) -> Result<()> {
        self.view
            .present(&self.pixels, width, height)
            .map_err(|e| anyhow!("{e}"))
    }

    fn read(&self, _: u32, _: u32) -> Result<[u8; 3]> {
        anyhow::bail!("the screen is not read back on macOS")
    }

    fn exposed(&mut self) -> bool {
        false
    }

    fn shared_memory(&self) -> bool {
        false
    }
}
