//! The session's picture and pointer: the native view's commands (where the page's stage is, the
//! view's counters, a watched pixel), opening the view in the app's window, and the page's mouse
//! events, mapped from the webview's device pixels through the view's transform.

use std::sync::Arc;

use protocol::{MouseAction, MouseButton, MouseInput};
use serde::Deserialize;
use tauri::State;
use technician::Command;
use technician_desktop::view::native::NativeView;
use technician_desktop::view::{self, Area};

use super::{command, App, Failure};

/// A mouse event from the page: in the remote monitor's pixels (`x`, `y`; the page's own view), or
/// in the webview's device pixels (`pageX`, `pageY`; the native view), mapped here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct PageMouse {
    action: String,
    #[serde(default)]
    button: u8,
    #[serde(default)]
    x: u16,
    #[serde(default)]
    y: u16,
    page_x: Option<f64>,
    page_y: Option<f64>,
    #[serde(default)]
    wheel_x: i16,
    #[serde(default)]
    wheel_y: i16,
}

fn mouse_input(m: &PageMouse) -> Result<MouseInput, Failure> {
    let action = match m.action.as_str() {
        "move" => MouseAction::Move,
        "down" => MouseAction::Down,
        "up" => MouseAction::Up,
        "wheel" => MouseAction::Wheel,
        other => {
            return Err(Failure::new(
                "INPUT",
                format!("unknown mouse action {other}"),
            ))
        }
    };
    // The page's MouseEvent.button numbering.
    let button = match (action, m.button) {
        (MouseAction::Move | MouseAction::Wheel, _) => MouseButton::None,
        (_, 0) => MouseButton::Left,
        (_, 1) => MouseButton::Middle,
        (_, 2) => MouseButton::Right,
        (_, 3) => MouseButton::Back,
        (_, 4) => MouseButton::Forward,
        (_, n) => return Err(Failure::new("INPUT", format!("unknown mouse button {n}"))),
    };
    Ok(MouseInput {
        action,
        button,
        x: m.x,
        y: m.y,
        wheel_x: m.wheel_x,
        wheel_y: m.wheel_y,
    })
}

#[tauri::command]
pub(crate) async fn mouse(app: State<'_, Arc<App>>, mut event: PageMouse) -> Result<(), Failure> {
    if let (Some(px), Some(py)) = (event.page_x, event.page_y) {
        let fit = app.native().and_then(NativeView::fit);
        // Outside the drawn picture (the letterbox, or before the first frame): not the remote
        // screen, nothing to send.
        let Some((x, y)) = fit.and_then(|f| f.to_remote(px, py)) else {
            return Ok(());
        };
        (event.x, event.y) = (x, y);
    }
    command(&app, Command::Mouse(mouse_input(&event)?)).await
}

/// Where the page's stage is, in the webview's device pixels (`None`: the view is not shown).
#[tauri::command]
pub(crate) fn view_area(app: State<'_, Arc<App>>, area: Option<Area>) {
    if let Some(view) = app.native() {
        view.set_area(area);
    }
}

/// The native view's counters (`null` without one).
#[tauri::command]
pub(crate) fn view_state(app: State<'_, Arc<App>>) -> Option<view::Stats> {
    app.native().map(NativeView::stats)
}

/// Watches remote pixel (`x`, `y`) of the native view for the colour `rgb` (tests, benchmark).
#[tauri::command]
pub(crate) fn view_watch(
    app: State<'_, Arc<App>>,
    x: u32,
    y: u32,
    rgb: [u8; 3],
) -> Result<(), Failure> {
    let view = app
        .native()
        .ok_or_else(|| Failure::new("NO_NATIVE_VIEW", "This app draws in the page."))?;
    view.watch(x, y, rgb);
    Ok(())
}

/// The native view as a child of the app's window, where there is one and it is not turned off.
pub(crate) fn open_view(window: &tauri::WebviewWindow) -> Option<NativeView> {
    if std::env::var("TECHNICIAN_VIEW").is_ok_and(|v| v == "webview") {
        return None;
    }
    match native_parent(window).and_then(NativeView::open) {
        Ok(view) => Some(view),
        Err(e) => {
            eprintln!("technician-app: no native view ({e:#}); the page draws the session");
            None
        }
    }
}

/// The app window's native handle the view is made a child of:
/// - X11: the window;
/// - Windows: the `HWND`, whose client area the webview fills, so the page's device pixels are the
///   window's client coordinates;
/// - macOS: the window's content `NSView`, which the webview fills (untested: no Mac runs here).
fn native_parent(window: &tauri::WebviewWindow) -> anyhow::Result<u64> {
    use raw_window_handle::{HasWindowHandle, RawWindowHandle};
    let handle = window
        .window_handle()
        .map_err(|e| anyhow::anyhow!("the window's handle: {e}"))?;
    match handle.as_raw() {
        #[cfg(target_os = "linux")]
        RawWindowHandle::Xlib(h) => Ok(h.window),
        #[cfg(target_os = "linux")]
        RawWindowHandle::Xcb(h) => Ok(u64::from(h.window.get())),
        #[cfg(windows)]
        RawWindowHandle::Win32(h) => Ok(h.hwnd.get() as u64),
        #[cfg(target_os = "macos")]
        RawWindowHandle::AppKit(h) => Ok(h.ns_view.as_ptr() as usize as u64),
        other => anyhow::bail!("no native view on this window ({other:?})"),
    }
}
