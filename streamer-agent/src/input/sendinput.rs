//! Windows input with `SendInput`: the pointer placed absolutely on the virtual desktop (every
//! monitor), buttons and wheels, physical keys from their W3C codes through the scan code (so the
//! end user's layout decides the character, as for a local key press), and text as Unicode.
//!
//! Keys this sink pressed and did not release are released when it is dropped, at the end of the
//! session, so that no key stays down on the end user's computer.
#![allow(unsafe_code)]

use std::collections::BTreeSet;

use protocol::{KeyInput, MouseAction, MouseButton, MouseInput};
use windows::Win32::UI::Input::KeyboardAndMouse::{
    MapVirtualKeyW, SendInput, INPUT, INPUT_0, INPUT_KEYBOARD, INPUT_MOUSE, KEYBDINPUT,
    KEYBD_EVENT_FLAGS, KEYEVENTF_EXTENDEDKEY, KEYEVENTF_KEYUP, KEYEVENTF_UNICODE,
    MAPVK_VSC_TO_VK_EX, MOUSEEVENTF_ABSOLUTE, MOUSEEVENTF_HWHEEL, MOUSEEVENTF_LEFTDOWN,
    MOUSEEVENTF_LEFTUP, MOUSEEVENTF_MIDDLEDOWN, MOUSEEVENTF_MIDDLEUP, MOUSEEVENTF_MOVE,
    MOUSEEVENTF_RIGHTDOWN, MOUSEEVENTF_RIGHTUP, MOUSEEVENTF_VIRTUALDESK, MOUSEEVENTF_WHEEL,
    MOUSEEVENTF_XDOWN, MOUSEEVENTF_XUP, MOUSEINPUT, MOUSE_EVENT_FLAGS, VIRTUAL_KEY,
};
use windows::Win32::UI::WindowsAndMessaging::{
    GetSystemMetrics, SM_CXVIRTUALSCREEN, SM_CYVIRTUALSCREEN, SM_XVIRTUALSCREEN, SM_YVIRTUALSCREEN,
    WHEEL_DELTA, XBUTTON1, XBUTTON2,
};

use super::{InputError, InputSink};
use crate::capture::Monitor;

/// A physical key: its set-1 scan code, whether it carries the `E0` prefix, and its virtual key on
/// a US layout (used when the layout has no key at that scan code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct PhysicalKey {
    /// Set-1 scan code.
    pub scan: u16,
    /// Sent with `KEYEVENTF_EXTENDEDKEY` (the `E0` prefix).
    pub extended: bool,
    /// The virtual key on a US layout.
    pub us_vk: u16,
}

/// The physical key for a W3C `KeyboardEvent.code`, or `None` for codes this sink does not know.
pub fn key_for_code(code: &str) -> Option<PhysicalKey> {
    const ROW_Q: &str = "QWERTYUIOP";
    const ROW_A: &str = "ASDFGHJKL";
    const ROW_Z: &str = "ZXCVBNM";
    let key = |scan: u16, us_vk: u16| PhysicalKey {
        scan,
        extended: false,
        us_vk,
    };
    let ext = |scan: u16, us_vk: u16| PhysicalKey {
        scan,
        extended: true,
        us_vk,
    };
    if let Some(letter) = code.strip_prefix("Key").filter(|l| l.len() == 1) {
        let c = letter.chars().next()?;
        let vk = u16::from(c as u8);
        for (row, first) in [(ROW_Q, 0x10), (ROW_A, 0x1e), (ROW_Z, 0x2c)] {
            if let Some(i) = row.find(c) {
                return Some(key(first + u16::try_from(i).ok()?, vk));
            }
        }
        return None;
    }
    if let Some(d) = code.strip_prefix("Digit").filter(|d| d.len() == 1) {
        let n = d.parse::<u16>().ok()?;
        return Some(key(if n == 0 { 0x0b } else { 0x01 + n }, 0x30 + n));
    }
    if let Some(d) = code
        .strip_prefix("Numpad")
        .and_then(|d| d.parse::<u16>().ok())
    {
        const SCANS: [u16; 10] = [0x52, 0x4f, 0x50, 0x51, 0x4b, 0x4c, 0x4d, 0x47, 0x48, 0x49];
        return SCANS.get(usize::from(d)).map(|&s| key(s, 0x60 + d));
    }
    if let Some(n) = code.strip_prefix('F').and_then(|n| n.parse::<u16>().ok()) {
        return match n {
            1..=10 => Some(key(0x3a + n, 0x6f + n)),
            11 | 12 => Some(key(0x57 + n - 11, 0x6f + n)),
            _ => None,
        };
    }
    Some(match code {
        "Escape" => key(0x01, 0x1b),
        "Minus" => key(0x0c, 0xbd),
        "Equal" => key(0x0d, 0xbb),
        "Backspace" => key(0x0e, 0x08),
        "Tab" => key(0x0f, 0x09),
        "BracketLeft" => key(0x1a, 0xdb),
        "BracketRight" => key(0x1b, 0xdd),
        "Enter" => key(0x1c, 0x0d),
        "ControlLeft" => key(0x1d, 0xa2),
        "Semicolon" => key(0x27, 0xba),
        "Quote" => key(0x28, 0xde),
        "Backquote" => key(0x29, 0xc0),
        "ShiftLeft" => key(0x2a, 0xa0),
        "Backslash" => key(0x2b, 0xdc),
        "Comma" => key(0x33, 0xbc),
        "Period" => key(0x34, 0xbe),
        "Slash" => key(0x35, 0xbf),
        "ShiftRight" => key(0x36, 0xa1),
        "NumpadMultiply" => key(0x37, 0x6a),
        "AltLeft" => key(0x38, 0xa4),
        "Space" => key(0x39, 0x20),
        "CapsLock" => key(0x3a, 0x14),
        "NumLock" => key(0x45, 0x90),
        "ScrollLock" => key(0x46, 0x91),
        "NumpadSubtract" => key(0x4a, 0x6d),
        "NumpadAdd" => key(0x4e, 0x6b),
        "NumpadDecimal" => key(0x53, 0x6e),
        "IntlBackslash" => key(0x56, 0xe2),
        "NumpadEnter" => ext(0x1c, 0x0d),
        "ControlRight" => ext(0x1d, 0xa3),
        "NumpadDivide" => ext(0x35, 0x6f),
        "PrintScreen" => ext(0x37, 0x2c),
        "AltRight" => ext(0x38, 0xa5),
        "Home" => ext(0x47, 0x24),
        "ArrowUp" => ext(0x48, 0x26),
        "PageUp" => ext(0x49, 0x21),
        "ArrowLeft" => ext(0x4b, 0x25),
        "ArrowRight" => ext(0x4d, 0x27),
        "End" => ext(0x4f, 0x23),
        "ArrowDown" => ext(0x50, 0x28),
        "PageDown" => ext(0x51, 0x22),
        "Insert" => ext(0x52, 0x2d),
        "Delete" => ext(0x53, 0x2e),
        "MetaLeft" => ext(0x5b, 0x5b),
        "MetaRight" => ext(0x5c, 0x5c),
        "ContextMenu" => ext(0x5d, 0x5d),
        _ => return None,
    })
}

/// Maps a point of the virtual desktop to `SendInput`'s absolute coordinates (0..=65535 across the
/// virtual desktop, whose origin may be negative).
pub fn absolute(x: i32, y: i32, desktop: (i32, i32, i32, i32)) -> (i32, i32) {
    let (left, top, width, height) = desktop;
    let scale = |v: i32, origin: i32, size: i32| {
        let span = i64::from((size - 1).max(1));
        let offset = i64::from((v - origin).clamp(0, size - 1));
        i32::try_from(offset * 65535 / span).unwrap_or(65535)
    };
    (scale(x, left, width), scale(y, top, height))
}

/// `SendInput` into the interactive desktop.
#[derive(Debug, Default)]
pub struct SendInputSink {
    held: BTreeSet<PhysicalKey>,
}

impl SendInputSink {
    /// A sink with no key held.
    pub fn new() -> Self {
        Self::default()
    }
}

fn send(inputs: &[INPUT]) -> Result<(), InputError> {
    // SAFETY: `inputs` is a valid slice of INPUT structures, and cbSize is their size.
    let sent = unsafe { SendInput(inputs, std::mem::size_of::<INPUT>() as i32) };
    if sent as usize != inputs.len() {
        return Err(InputError::Server(format!(
            "SendInput injected {sent} of {} events: {}",
            inputs.len(),
            windows::core::Error::from_thread()
        )));
    }
    Ok(())
}

fn mouse_input(dx: i32, dy: i32, data: u32, flags: MOUSE_EVENT_FLAGS) -> INPUT {
    INPUT {
        r#type: INPUT_MOUSE,
        Anonymous: INPUT_0 {
            mi: MOUSEINPUT {
                dx,
                dy,
                mouseData: data,
                dwFlags: flags,
                time: 0,
                dwExtraInfo: 0,
            },
        },
    }
}

fn key_input(vk: u16, scan: u16, flags: KEYBD_EVENT_FLAGS) -> INPUT {
    INPUT {
        r#type: INPUT_KEYBOARD,
        Anonymous: INPUT_0 {
            ki: KEYBDINPUT {
                wVk: VIRTUAL_KEY(vk),
                wScan: scan,
                dwFlags: flags,
                time: 0,
                dwExtraInfo: 0,
            },
        },
    }
}

fn physical(key: PhysicalKey, down: bool) -> INPUT {
    let with_prefix = u32::from(key.scan) | if key.extended { 0xe000 } else { 0 };
    // SAFETY: a pure lookup in the current keyboard layout.
    let layout_vk = unsafe { MapVirtualKeyW(with_prefix, MAPVK_VSC_TO_VK_EX) };
    let vk = u16::try_from(layout_vk)
        .ok()
        .filter(|&v| v != 0)
        .unwrap_or(key.us_vk);
    let mut flags = KEYBD_EVENT_FLAGS(0);
    if key.extended {
        flags |= KEYEVENTF_EXTENDEDKEY;
    }
    if !down {
        flags |= KEYEVENTF_KEYUP;
    }
    key_input(vk, key.scan, flags)
}

impl InputSink for SendInputSink {
    fn mouse(&mut self, monitor: &Monitor, event: &MouseInput) -> Result<(), InputError> {
        // SAFETY: GetSystemMetrics only reads.
        let desktop = unsafe {
            (
                GetSystemMetrics(SM_XVIRTUALSCREEN),
                GetSystemMetrics(SM_YVIRTUALSCREEN),
                GetSystemMetrics(SM_CXVIRTUALSCREEN),
                GetSystemMetrics(SM_CYVIRTUALSCREEN),
            )
        };
        let x = monitor.x + i32::from(event.x.min(monitor.width.saturating_sub(1)));
        let y = monitor.y + i32::from(event.y.min(monitor.height.saturating_sub(1)));
        let (ax, ay) = absolute(x, y, desktop);
        let at = MOUSEEVENTF_MOVE | MOUSEEVENTF_ABSOLUTE | MOUSEEVENTF_VIRTUALDESK;
        let mut inputs = vec![mouse_input(ax, ay, 0, at)];
        let (down, up, data) = match event.button {
            MouseButton::None => (MOUSE_EVENT_FLAGS(0), MOUSE_EVENT_FLAGS(0), 0),
            MouseButton::Left => (MOUSEEVENTF_LEFTDOWN, MOUSEEVENTF_LEFTUP, 0),
            MouseButton::Right => (MOUSEEVENTF_RIGHTDOWN, MOUSEEVENTF_RIGHTUP, 0),
            MouseButton::Middle => (MOUSEEVENTF_MIDDLEDOWN, MOUSEEVENTF_MIDDLEUP, 0),
            MouseButton::Back => (MOUSEEVENTF_XDOWN, MOUSEEVENTF_XUP, u32::from(XBUTTON1)),
            MouseButton::Forward => (MOUSEEVENTF_XDOWN, MOUSEEVENTF_XUP, u32::from(XBUTTON2)),
        };
        match event.action {
            MouseAction::Move => {}
            MouseAction::Down if down.0 != 0 => inputs.push(mouse_input(0, 0, data, down)),
            MouseAction::Up if up.0 != 0 => inputs.push(mouse_input(0, 0, data, up)),
            MouseAction::Down | MouseAction::Up => {}
            MouseAction::Wheel => {
                // Protocol: positive is down (and right); Windows: positive is away from the user.
                let steps = |s: i16| (-i32::from(s) * WHEEL_DELTA as i32) as u32;
                if event.wheel_y != 0 {
                    inputs.push(mouse_input(0, 0, steps(event.wheel_y), MOUSEEVENTF_WHEEL));
                }
                if event.wheel_x != 0 {
                    let right = (i32::from(event.wheel_x) * WHEEL_DELTA as i32) as u32;
                    inputs.push(mouse_input(0, 0, right, MOUSEEVENTF_HWHEEL));
                }
            }
        }
        send(&inputs)
    }

    fn key(&mut self, event: &KeyInput) -> Result<(), InputError> {
        let key =
            key_for_code(&event.code).ok_or_else(|| InputError::UnknownKey(event.code.clone()))?;
        send(&[physical(key, event.down)])?;
        if event.down {
            self.held.insert(key);
        } else {
            self.held.remove(&key);
        }
        Ok(())
    }

    fn text(&mut self, text: &str) -> Result<(), InputError> {
        let mut inputs = Vec::new();
        for unit in text.encode_utf16() {
            inputs.push(key_input(0, unit, KEYEVENTF_UNICODE));
            inputs.push(key_input(0, unit, KEYEVENTF_UNICODE | KEYEVENTF_KEYUP));
        }
        if inputs.is_empty() {
            return Ok(());
        }
        send(&inputs)
    }
}

impl Drop for SendInputSink {
    fn drop(&mut self) {
        let ups: Vec<INPUT> = self.held.iter().map(|&k| physical(k, false)).collect();
        if !ups.is_empty() {
            if let Err(e) = send(&ups) {
                tracing::warn!(error = %e, "keys held by the session could not be released");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn w3c_codes_map_to_set_1_scan_codes() {
        let k = |c| key_for_code(c).map(|k| (k.scan, k.extended, k.us_vk));
        assert_eq!(k("KeyQ"), Some((0x10, false, 0x51)));
        assert_eq!(k("KeyA"), Some((0x1e, false, 0x41)));
        assert_eq!(k("KeyM"), Some((0x32, false, 0x4d)));
        assert_eq!(k("Digit1"), Some((0x02, false, 0x31)));
        assert_eq!(k("Digit0"), Some((0x0b, false, 0x30)));
        assert_eq!(k("F1"), Some((0x3b, false, 0x70)));
        assert_eq!(k("F10"), Some((0x44, false, 0x79)));
        assert_eq!(k("F12"), Some((0x58, false, 0x7b)));
        assert_eq!(k("Numpad0"), Some((0x52, false, 0x60)));
        assert_eq!(k("Numpad9"), Some((0x49, false, 0x69)));
        assert_eq!(k("ArrowLeft"), Some((0x4b, true, 0x25)));
        assert_eq!(k("Enter"), Some((0x1c, false, 0x0d)));
        assert_eq!(k("NumpadEnter"), Some((0x1c, true, 0x0d)));
        for unknown in [
            "", "Key", "KeyAB", "Keya", "F13", "Numpad10", "Fn", "Digit12",
        ] {
            assert_eq!(k(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn absolute_coordinates_span_the_virtual_desktop() {
        // Two 1920-wide monitors, the second left of the primary.
        let desktop = (-1920, 0, 3840, 1080);
        assert_eq!(absolute(-1920, 0, desktop), (0, 0));
        assert_eq!(absolute(1919, 1079, desktop), (65535, 65535));
        assert_eq!(absolute(0, 540, desktop).0, 1920 * 65535 / 3839);
        // Outside is clamped to the edge.
        assert_eq!(absolute(-5000, 5000, desktop), (0, 65535));
    }
}
