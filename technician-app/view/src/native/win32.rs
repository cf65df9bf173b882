//! The native view's surface on Windows: a child window of the app's window, drawn with GDI.
//!
//! - The window is **layered and transparent** (`WS_EX_LAYERED | WS_EX_TRANSPARENT`, fully
//!   opaque through `SetLayeredWindowAttributes`): hit-testing passes over it, so the pointer
//!   reaches the webview beneath it wherever that webview's own windows live (WebView2 hosts its
//!   input windows in its browser process, which an `HTTRANSPARENT` answer could not reach). A
//!   layered *child* window needs Windows 8 or later and an application manifest that says so
//!   (`technician-app/desktop/windows-app-manifest.xml`).
//! - It never takes the keyboard (`WS_EX_NOACTIVATE`, and it is never focused), and it does not
//!   tell its parent about itself (`WS_EX_NOPARENTNOTIFY`): the app's window belongs to another
//!   thread, which must never wait on this one.
//! - Each picture goes to the window with `SetDIBitsToDevice` from a top-down 32-bit DIB, then
//!   `GdiFlush`: "drawn" means GDI is done with it; the desktop compositor shows it at its next
//!   frame.
//! - The window belongs to the drawing thread, which runs its messages at least every
//!   [`Win32Surface::IDLE`]; a `WM_PAINT` (the window uncovered or resized) asks for a redraw.
//!
//! Tested under Wine (`tests/win32.rs`: the streamer's pixels on the screen where the view is, the
//! point under it belonging to the window beneath, hiding and darkening); on Windows itself
//! (WebView2 beside it, the compositor) untested here.
#![allow(unsafe_code)]

use std::cell::Cell;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use windows::core::w;
use windows::Win32::Foundation::{COLORREF, HWND, LPARAM, LRESULT, POINT, WPARAM};
use windows::Win32::Graphics::Gdi::{
    BeginPaint, ClientToScreen, EndPaint, GdiFlush, GetDC, GetPixel, ReleaseDC, SetDIBitsToDevice,
    BITMAPINFO, BITMAPINFOHEADER, BI_RGB, CLR_INVALID, DIB_RGB_COLORS, PAINTSTRUCT,
};
use windows::Win32::System::LibraryLoader::GetModuleHandleW;
use windows::Win32::UI::WindowsAndMessaging::{
    CreateWindowExW, DefWindowProcW, DestroyWindow, DispatchMessageW, IsWindow, PeekMessageW,
    RegisterClassW, SetLayeredWindowAttributes, SetWindowPos, ShowWindow, TranslateMessage,
    HTTRANSPARENT, HWND_TOP, LWA_ALPHA, MSG, PM_REMOVE, SWP_NOACTIVATE, SWP_SHOWWINDOW, SW_HIDE,
    WM_ERASEBKGND, WM_NCHITTEST, WM_PAINT, WNDCLASSW, WS_CHILD, WS_CLIPSIBLINGS, WS_EX_LAYERED,
    WS_EX_NOACTIVATE, WS_EX_NOPARENTNOTIFY, WS_EX_TRANSPARENT,
};

use super::Surface;
use crate::Fit;

thread_local! {
    /// A `WM_PAINT` came to this thread's view window since the drawing thread last looked.
    static EXPOSED: Cell<bool> = const { Cell::new(false) };
}

/// The window class's name, registered once per process.
const CLASS: windows::core::PCWSTR = w!("RecordedSupportNativeView");

unsafe extern "system" fn procedure(window: HWND, message: u32, w: WPARAM, l: LPARAM) -> LRESULT {
    match message {
        WM_PAINT => {
            let mut ps = PAINTSTRUCT::default();
            // SAFETY: the window is this thread's; BeginPaint and EndPaint pair on the same
            // PAINTSTRUCT. Nothing is painted here: the drawing thread draws the picture again.
            unsafe {
                let _ = BeginPaint(window, &mut ps);
                let _ = EndPaint(window, &ps);
            }
            EXPOSED.with(|e| e.set(true));
            LRESULT(0)
        }
        // No background: the picture is drawn over whatever is there, with no flash between.
        WM_ERASEBKGND => LRESULT(1),
        WM_NCHITTEST => LRESULT(HTTRANSPARENT as isize),
        // SAFETY: the default handling of this window's own message.
        _ => unsafe { DefWindowProcW(window, message, w, l) },
    }
}

/// The child window and the picture drawn into it.
#[derive(Debug)]
pub struct Win32Surface {
    window: HWND,
    /// Where the window is, and whether it is shown.
    placed: Option<Fit>,
    pixels: Vec<u8>,
}

impl Win32Surface {
    fn create(parent: HWND) -> Result<Self> {
        // SAFETY: Win32 window creation on this thread, which keeps the window and runs its
        // messages; `parent` is checked to be a window first.
        unsafe {
            if !IsWindow(Some(parent)).as_bool() {
                bail!("{parent:?} is not a window");
            }
            let instance = GetModuleHandleW(None).context("GetModuleHandleW")?;
            let wc = WNDCLASSW {
                lpfnWndProc: Some(procedure),
                hInstance: instance.into(),
                lpszClassName: CLASS,
                ..Default::default()
            };
            // A second view in the same process finds the class registered: that is no error.
            let _ = RegisterClassW(&wc);
            let window = CreateWindowExW(
                WS_EX_LAYERED | WS_EX_TRANSPARENT | WS_EX_NOACTIVATE | WS_EX_NOPARENTNOTIFY,
                CLASS,
                w!("Remote screen"),
                WS_CHILD | WS_CLIPSIBLINGS,
                0,
                0,
                1,
                1,
                Some(parent),
                None,
                Some(instance.into()),
                None,
            )
            .context("CreateWindowExW (a layered child window needs Windows 8 or later)")?;
            if let Err(e) = SetLayeredWindowAttributes(window, COLORREF(0), 255, LWA_ALPHA) {
                let _ = DestroyWindow(window);
                return Err(e).context("SetLayeredWindowAttributes");
            }
            Ok(Self {
                window,
                placed: None,
                pixels: Vec::new(),
            })
        }
    }
}

impl Drop for Win32Surface {
    fn drop(&mut self) {
        // SAFETY: the window was made by this thread (the drawing thread owns the surface).
        unsafe {
            let _ = DestroyWindow(self.window);
        }
    }
}

impl Surface for Win32Surface {
    /// A window whose thread leaves its messages waiting for long looks hung to Windows, and its
    /// parent's thread shares its input queue with it.
    const IDLE: Duration = Duration::from_millis(20);

    /// The window is made on the drawing thread, which runs its messages.
    type Parent = u64;

    fn parent(parent: u64) -> Result<u64> {
        Ok(parent)
    }

    fn open(parent: u64) -> Result<Self> {
        Self::create(HWND(parent as usize as *mut core::ffi::c_void))
    }

    fn id(&self) -> u64 {
        self.window.0 as usize as u64
    }

    fn place(&mut self, fit: Option<Fit>) -> Result<()> {
        if fit == self.placed {
            return Ok(());
        }
        // SAFETY: this thread's window; positions in the parent's client coordinates.
        unsafe {
            match fit {
                Some(f) => SetWindowPos(
                    self.window,
                    Some(HWND_TOP),
                    f.x,
                    f.y,
                    i32::try_from(f.width)?,
                    i32::try_from(f.height)?,
                    SWP_NOACTIVATE | SWP_SHOWWINDOW,
                )
                .context("SetWindowPos")?,
                None => {
                    let _ = ShowWindow(self.window, SW_HIDE);
                }
            }
        }
        self.placed = fit;
        Ok(())
    }

    fn canvas(&mut self, width: u32, height: u32) -> &mut [u8] {
        super::sized(&mut self.pixels, width, height)
    }

    fn present(&mut self, width: u32, height: u32) -> Result<()> {
        let len = width as usize * height as usize * 4;
        if width == 0 || height == 0 || self.pixels.len() < len {
            bail!("no picture of {width}x{height} to show");
        }
        let info = BITMAPINFO {
            bmiHeader: BITMAPINFOHEADER {
                biSize: std::mem::size_of::<BITMAPINFOHEADER>() as u32,
                biWidth: i32::try_from(width)?,
                // Negative: rows top to bottom, as the scaler writes them.
                biHeight: -i32::try_from(height)?,
                biPlanes: 1,
                biBitCount: 32,
                biCompression: BI_RGB.0,
                ..Default::default()
            },
            ..Default::default()
        };
        // SAFETY: `pixels` holds `height` rows of `width` 32-bit pixels, as `info` describes,
        // for the duration of the call; the DC is released on every path.
        let lines = unsafe {
            let dc = GetDC(Some(self.window));
            if dc.is_invalid() {
                bail!("GetDC failed");
            }
            let lines = SetDIBitsToDevice(
                dc,
                0,
                0,
                width,
                height,
                0,
                0,
                0,
                height,
                self.pixels.as_ptr().cast(),
                &info,
                DIB_RGB_COLORS,
            );
            let _ = GdiFlush();
            ReleaseDC(Some(self.window), dc);
            lines
        };
        if lines <= 0 {
            bail!("SetDIBitsToDevice drew no line");
        }
        Ok(())
    }

    /// Read from the screen, not the window: what the technician sees there.
    fn read(&self, x: u32, y: u32) -> Result<[u8; 3]> {
        let mut p = POINT {
            x: i32::try_from(x)?,
            y: i32::try_from(y)?,
        };
        // SAFETY: this thread's window; the screen's DC is released after the one read.
        let c = unsafe {
            if !ClientToScreen(self.window, &mut p).as_bool() {
                bail!("ClientToScreen failed");
            }
            let dc = GetDC(None);
            if dc.is_invalid() {
                bail!("GetDC (screen) failed");
            }
            let c = GetPixel(dc, p.x, p.y);
            ReleaseDC(None, dc);
            c
        };
        if c.0 == CLR_INVALID {
            bail!("the screen has no pixel at ({}, {})", p.x, p.y);
        }
        // COLORREF is 0x00BBGGRR.
        Ok([c.0 as u8, (c.0 >> 8) as u8, (c.0 >> 16) as u8])
    }

    fn exposed(&mut self) -> bool {
        let mut msg = MSG::default();
        // SAFETY: this thread's messages, each translated and dispatched to its window's procedure.
        unsafe {
            while PeekMessageW(&mut msg, None, 0, 0, PM_REMOVE).as_bool() {
                let _ = TranslateMessage(&msg);
                DispatchMessageW(&msg);
            }
        }
        EXPOSED.with(|e| e.replace(false))
    }

    fn shared_memory(&self) -> bool {
        false
    }
}
