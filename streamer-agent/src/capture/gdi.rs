//! Windows screen capture with GDI: `BitBlt` from the screen's device context into a 32-bit DIB.
//!
//! The fallback where DXGI Desktop Duplication is unavailable (remote desktop sessions, old drivers,
//! Wine). It copies the whole monitor on every call, which costs about 20 ms per 1080p frame under Wine
//! (docs/PERFORMANCE.md). The cursor is not drawn (no `CAPTUREBLT` cursor pass, no `DrawIcon`).
#![allow(unsafe_code)]

use windows::core::BOOL;
use windows::Win32::Foundation::{LPARAM, RECT};
use windows::Win32::Graphics::Gdi::{
    BitBlt, CreateCompatibleBitmap, CreateCompatibleDC, DeleteDC, DeleteObject,
    EnumDisplayMonitors, GetDC, GetDIBits, GetMonitorInfoW, ReleaseDC, SelectObject, BITMAPINFO,
    BITMAPINFOHEADER, BI_RGB, DIB_RGB_COLORS, HDC, HMONITOR, MONITORINFO, MONITORINFOEXW, SRCCOPY,
};
use windows::Win32::UI::WindowsAndMessaging::MONITORINFOF_PRIMARY;

use super::{CaptureError, Frame, Monitor, ScreenSource};

/// Makes this process per-monitor DPI aware, so that monitor rectangles, captured images and input
/// coordinates are all in physical pixels (otherwise a scaled monitor is reported, captured and
/// clicked in scaled units). Called once, before any window or capture exists; an older Windows
/// that lacks the call keeps the system's default.
pub fn make_dpi_aware() {
    use windows::Win32::UI::HiDpi::{
        SetProcessDpiAwarenessContext, DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2,
    };
    // SAFETY: sets a process-wide flag; no pointers involved.
    if let Err(e) =
        unsafe { SetProcessDpiAwarenessContext(DPI_AWARENESS_CONTEXT_PER_MONITOR_AWARE_V2) }
    {
        tracing::debug!(error = %e, "per-monitor DPI awareness not set");
    }
}

/// One monitor as Windows lists it: its device name (`\\.\DISPLAY1`) and desktop rectangle.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WindowsMonitor {
    pub device: String,
    pub rect: RECT,
    pub primary: bool,
}

/// The monitors attached to the desktop, in `EnumDisplayMonitors` order.
pub(crate) fn display_monitors() -> Result<Vec<WindowsMonitor>, CaptureError> {
    unsafe extern "system" fn each(monitor: HMONITOR, _: HDC, _: *mut RECT, data: LPARAM) -> BOOL {
        // SAFETY: `data` is the address of the Vec below, alive for the whole enumeration, which
        // calls back on this thread only.
        let found = unsafe { &mut *(data.0 as *mut Vec<WindowsMonitor>) };
        let mut info = MONITORINFOEXW::default();
        info.monitorInfo.cbSize = std::mem::size_of::<MONITORINFOEXW>() as u32;
        // SAFETY: `info` is a MONITORINFOEXW with its size set, as GetMonitorInfoW requires.
        let ok = unsafe {
            GetMonitorInfoW(
                monitor,
                &mut info as *mut MONITORINFOEXW as *mut MONITORINFO,
            )
        };
        if ok.as_bool() {
            found.push(WindowsMonitor {
                device: wide_to_string(&info.szDevice),
                rect: info.monitorInfo.rcMonitor,
                primary: info.monitorInfo.dwFlags & MONITORINFOF_PRIMARY != 0,
            });
        }
        BOOL(1)
    }
    let mut found: Vec<WindowsMonitor> = Vec::new();
    // SAFETY: the callback only touches `found` through the pointer passed here, during this call.
    let ok = unsafe {
        EnumDisplayMonitors(
            None,
            None,
            Some(each),
            LPARAM(&mut found as *mut Vec<WindowsMonitor> as isize),
        )
    };
    if !ok.as_bool() {
        return Err(CaptureError::Server(format!(
            "EnumDisplayMonitors failed: {}",
            windows::core::Error::from_thread()
        )));
    }
    Ok(found)
}

/// A NUL-terminated UTF-16 buffer as a string.
pub(crate) fn wide_to_string(wide: &[u16]) -> String {
    let end = wide.iter().position(|&c| c == 0).unwrap_or(wide.len());
    String::from_utf16_lossy(&wide[..end])
}

/// The monitors in the trait's terms, numbered in order, keyed by device name.
pub(crate) fn to_monitors(found: &[WindowsMonitor]) -> Vec<Monitor> {
    found
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let width = u16::try_from(m.rect.right - m.rect.left).unwrap_or(u16::MAX);
            let height = u16::try_from(m.rect.bottom - m.rect.top).unwrap_or(u16::MAX);
            let index = u32::try_from(i).unwrap_or(u32::MAX);
            let device = if m.device.is_empty() {
                format!("monitor-{index}")
            } else {
                m.device.clone()
            };
            Monitor {
                id: index,
                name: format!(
                    "Display {} ({width}×{height}){}",
                    index + 1,
                    if m.primary { ", primary" } else { "" }
                ),
                key: device,
                x: m.rect.left,
                y: m.rect.top,
                width,
                height,
                primary: m.primary,
            }
        })
        .collect()
}

/// GDI capture of the interactive desktop.
#[derive(Debug)]
pub struct GdiSource;

impl GdiSource {
    /// Checks that the desktop can be read (it cannot from session 0, where services run).
    pub fn open() -> Result<Self, CaptureError> {
        if display_monitors()?.is_empty() {
            return Err(CaptureError::Connect(
                "this desktop has no monitor (a service cannot capture: run the session helper)"
                    .into(),
            ));
        }
        Ok(Self)
    }
}

/// Releases the GDI objects of one capture whatever happens.
struct Gdi {
    screen: HDC,
    memory: HDC,
    bitmap: windows::Win32::Graphics::Gdi::HBITMAP,
}

impl Drop for Gdi {
    fn drop(&mut self) {
        // SAFETY: each handle was created by this capture and is released once, here.
        unsafe {
            if !self.bitmap.is_invalid() {
                let _ = DeleteObject(self.bitmap.into());
            }
            if !self.memory.is_invalid() {
                let _ = DeleteDC(self.memory);
            }
            ReleaseDC(None, self.screen);
        }
    }
}

impl ScreenSource for GdiSource {
    fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
        Ok(to_monitors(&display_monitors()?))
    }

    fn capture(&mut self, monitor: &Monitor) -> Result<Frame, CaptureError> {
        let (w, h) = (i32::from(monitor.width), i32::from(monitor.height));
        if w == 0 || h == 0 {
            return Err(CaptureError::NoSuchMonitor(monitor.id));
        }
        let gdi_error = |what: &str| {
            CaptureError::Server(format!("{what}: {}", windows::core::Error::from_thread()))
        };
        // SAFETY: plain GDI calls on handles owned by `gdi`, which releases them on every path.
        unsafe {
            let screen = GetDC(None);
            if screen.is_invalid() {
                return Err(gdi_error("GetDC"));
            }
            let mut gdi = Gdi {
                screen,
                memory: HDC::default(),
                bitmap: Default::default(),
            };
            gdi.memory = CreateCompatibleDC(Some(screen));
            if gdi.memory.is_invalid() {
                return Err(gdi_error("CreateCompatibleDC"));
            }
            gdi.bitmap = CreateCompatibleBitmap(screen, w, h);
            if gdi.bitmap.is_invalid() {
                return Err(gdi_error("CreateCompatibleBitmap"));
            }
            let previous = SelectObject(gdi.memory, gdi.bitmap.into());
            BitBlt(
                gdi.memory,
                0,
                0,
                w,
                h,
                Some(screen),
                monitor.x,
                monitor.y,
                SRCCOPY,
            )
            .map_err(|e| CaptureError::Server(format!("BitBlt: {e}")))?;
            SelectObject(gdi.memory, previous);
            let mut info = BITMAPINFO {
                bmiHeader: BITMAPINFOHEADER {
                    biSize: std::mem::size_of::<BITMAPINFOHEADER>() as u32,
                    biWidth: w,
                    // Negative: rows top to bottom.
                    biHeight: -h,
                    biPlanes: 1,
                    biBitCount: 32,
                    biCompression: BI_RGB.0,
                    ..Default::default()
                },
                ..Default::default()
            };
            let stride = usize::from(monitor.width) * 4;
            let mut bgra = vec![0u8; stride * usize::from(monitor.height)];
            let rows = GetDIBits(
                gdi.memory,
                gdi.bitmap,
                0,
                u32::from(monitor.height),
                Some(bgra.as_mut_ptr().cast()),
                &mut info,
                DIB_RGB_COLORS,
            );
            if rows != h {
                return Err(gdi_error("GetDIBits"));
            }
            Ok(Frame {
                width: monitor.width,
                height: monitor.height,
                stride,
                bgra,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monitors_are_numbered_keyed_by_device_and_named() {
        let found = [
            WindowsMonitor {
                device: r"\\.\DISPLAY2".into(),
                rect: RECT {
                    left: -1080,
                    top: 0,
                    right: 0,
                    bottom: 1920,
                },
                primary: false,
            },
            WindowsMonitor {
                device: String::new(),
                rect: RECT {
                    left: 0,
                    top: 0,
                    right: 1920,
                    bottom: 1080,
                },
                primary: true,
            },
        ];
        let m = to_monitors(&found);
        assert_eq!(m[0].key, r"\\.\DISPLAY2");
        assert_eq!((m[0].x, m[0].width, m[0].height), (-1080, 1080, 1920));
        assert_eq!(m[1].key, "monitor-1");
        assert_eq!(m[1].name, "Display 2 (1920×1080), primary");
        assert!(m[1].primary);
    }

    #[test]
    fn wide_strings_stop_at_the_first_nul() {
        let mut w = [0u16; 8];
        for (i, c) in "AB".encode_utf16().enumerate() {
            w[i] = c;
        }
        assert_eq!(wide_to_string(&w), "AB");
    }

    #[test]
    fn the_desktop_is_captured_at_its_size() {
        // Under Wine the desktop is the Xvfb screen the runner starts: real pixels, not a stub.
        let mut source = GdiSource::open().unwrap();
        let monitors = source.monitors().unwrap();
        assert!(!monitors.is_empty());
        let frame = source.capture(&monitors[0]).unwrap();
        assert_eq!(
            (frame.width, frame.height),
            (monitors[0].width, monitors[0].height)
        );
        assert_eq!(frame.bgra.len(), frame.stride * usize::from(frame.height));
    }
}
