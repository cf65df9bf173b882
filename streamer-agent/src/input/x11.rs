//! X11 input with the XTest extension: pointer motion, buttons, wheel and keys.

use std::collections::HashMap;

use protocol::{KeyInput, MouseAction, MouseButton, MouseInput};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    ConnectionExt as _, BUTTON_PRESS_EVENT, BUTTON_RELEASE_EVENT, KEY_PRESS_EVENT,
    KEY_RELEASE_EVENT, MOTION_NOTIFY_EVENT,
};
use x11rb::protocol::xtest::ConnectionExt as _;
use x11rb::rust_connection::RustConnection;

use super::{InputError, InputSink};
use crate::capture::Monitor;

const SHIFT_L: u32 = 0xffe1;

fn server<E: std::fmt::Display>(e: E) -> InputError {
    InputError::Server(e.to_string())
}

/// The X keysym for a W3C `KeyboardEvent.code`.
pub fn keysym_for_code(code: &str) -> Option<u32> {
    if let Some(letter) = code.strip_prefix("Key") {
        let c = letter.chars().next()?;
        return (letter.len() == 1 && c.is_ascii_uppercase())
            .then_some(u32::from(c.to_ascii_lowercase()));
    }
    if let Some(digit) = code.strip_prefix("Digit") {
        let c = digit.chars().next()?;
        return (digit.len() == 1 && c.is_ascii_digit()).then_some(u32::from(c));
    }
    if let Some(n) = code.strip_prefix('F').and_then(|n| n.parse::<u32>().ok()) {
        return (1..=24).contains(&n).then_some(0xffbe + n - 1);
    }
    Some(match code {
        "Enter" | "NumpadEnter" => 0xff0d,
        "Escape" => 0xff1b,
        "Backspace" => 0xff08,
        "Tab" => 0xff09,
        "Space" => 0x20,
        "ArrowLeft" => 0xff51,
        "ArrowUp" => 0xff52,
        "ArrowRight" => 0xff53,
        "ArrowDown" => 0xff54,
        "Home" => 0xff50,
        "End" => 0xff57,
        "PageUp" => 0xff55,
        "PageDown" => 0xff56,
        "Insert" => 0xff63,
        "Delete" => 0xffff,
        "PrintScreen" => 0xff61,
        "ShiftLeft" => SHIFT_L,
        "ShiftRight" => 0xffe2,
        "ControlLeft" => 0xffe3,
        "ControlRight" => 0xffe4,
        "CapsLock" => 0xffe5,
        "AltLeft" => 0xffe9,
        "AltRight" => 0xffea,
        "MetaLeft" => 0xffeb,
        "MetaRight" => 0xffec,
        "Minus" => 0x2d,
        "Equal" => 0x3d,
        "BracketLeft" => 0x5b,
        "BracketRight" => 0x5d,
        "Backslash" => 0x5c,
        "Semicolon" => 0x3b,
        "Quote" => 0x27,
        "Backquote" => 0x60,
        "Comma" => 0x2c,
        "Period" => 0x2e,
        "Slash" => 0x2f,
        _ => return None,
    })
}

/// Injects input into one X display.
#[derive(Debug)]
pub struct X11Input {
    conn: RustConnection,
    root: u32,
    /// Keysyms reached without Shift, to their keycodes.
    plain: HashMap<u32, u8>,
    /// Keysyms reached with Shift, to their keycodes.
    shifted: HashMap<u32, u8>,
}

impl X11Input {
    /// Connects to `display` (or `$DISPLAY`) and reads its keyboard map.
    pub fn connect(display: Option<&str>) -> Result<Self, InputError> {
        let (conn, screen) = x11rb::connect(display).map_err(server)?;
        let root = conn
            .setup()
            .roots
            .get(screen)
            .map(|s| s.root)
            .ok_or_else(|| InputError::Server("no screen".into()))?;
        let (min, max) = (conn.setup().min_keycode, conn.setup().max_keycode);
        let map = conn
            .get_keyboard_mapping(min, max - min + 1)
            .map_err(server)?
            .reply()
            .map_err(server)?;
        let per = usize::from(map.keysyms_per_keycode.max(1));
        let (mut plain, mut shifted) = (HashMap::new(), HashMap::new());
        for (i, syms) in map.keysyms.chunks(per).enumerate() {
            let code = min.saturating_add(u8::try_from(i).unwrap_or(u8::MAX));
            if let Some(&sym) = syms.first().filter(|s| **s != 0) {
                plain.entry(sym).or_insert(code);
            }
            if let Some(&sym) = syms.get(1).filter(|s| **s != 0) {
                shifted.entry(sym).or_insert(code);
            }
        }
        Ok(Self {
            conn,
            root,
            plain,
            shifted,
        })
    }

    fn fake(&self, kind: u8, detail: u8, x: i16, y: i16) -> Result<(), InputError> {
        self.conn
            .xtest_fake_input(kind, detail, 0, self.root, x, y, 0)
            .map_err(server)?;
        Ok(())
    }

    fn keycode(&self, keysym: u32, name: &str) -> Result<u8, InputError> {
        self.plain
            .get(&keysym)
            .or_else(|| self.shifted.get(&keysym))
            .copied()
            .ok_or_else(|| InputError::UnknownKey(name.to_owned()))
    }

    fn tap(&self, keycode: u8) -> Result<(), InputError> {
        self.fake(KEY_PRESS_EVENT, keycode, 0, 0)?;
        self.fake(KEY_RELEASE_EVENT, keycode, 0, 0)
    }
}

impl InputSink for X11Input {
    fn mouse(&mut self, monitor: &Monitor, event: &MouseInput) -> Result<(), InputError> {
        let clamp = |v: i32| i16::try_from(v).unwrap_or(i16::MAX);
        let x = clamp(monitor.x + i32::from(event.x.min(monitor.width.saturating_sub(1))));
        let y = clamp(monitor.y + i32::from(event.y.min(monitor.height.saturating_sub(1))));
        let button = match event.button {
            MouseButton::None => 0,
            MouseButton::Left => 1,
            MouseButton::Middle => 2,
            MouseButton::Right => 3,
            MouseButton::Back => 8,
            MouseButton::Forward => 9,
        };
        match event.action {
            MouseAction::Move => self.fake(MOTION_NOTIFY_EVENT, 0, x, y)?,
            MouseAction::Down | MouseAction::Up => {
                self.fake(MOTION_NOTIFY_EVENT, 0, x, y)?;
                if button != 0 {
                    let kind = if event.action == MouseAction::Down {
                        BUTTON_PRESS_EVENT
                    } else {
                        BUTTON_RELEASE_EVENT
                    };
                    self.fake(kind, button, x, y)?;
                }
            }
            MouseAction::Wheel => {
                // X reports wheel steps as presses of buttons 4/5 (vertical) and 6/7 (horizontal).
                let steps = [(event.wheel_y, 5u8, 4u8), (event.wheel_x, 7, 6)];
                for (amount, positive, negative) in steps {
                    let button = if amount > 0 { positive } else { negative };
                    for _ in 0..amount.unsigned_abs().min(50) {
                        self.fake(BUTTON_PRESS_EVENT, button, x, y)?;
                        self.fake(BUTTON_RELEASE_EVENT, button, x, y)?;
                    }
                }
            }
        }
        self.conn.flush().map_err(server)
    }

    fn key(&mut self, event: &KeyInput) -> Result<(), InputError> {
        let keysym = keysym_for_code(&event.code)
            .ok_or_else(|| InputError::UnknownKey(event.code.clone()))?;
        let keycode = self.keycode(keysym, &event.code)?;
        let kind = if event.down {
            KEY_PRESS_EVENT
        } else {
            KEY_RELEASE_EVENT
        };
        self.fake(kind, keycode, 0, 0)?;
        self.conn.flush().map_err(server)
    }

    fn text(&mut self, text: &str) -> Result<(), InputError> {
        let shift = self.keycode(SHIFT_L, "ShiftLeft")?;
        for c in text.chars() {
            if !(c.is_ascii_graphic() || c == ' ') {
                return Err(InputError::UnknownKey(c.to_string()));
            }
            // Printable ASCII keysyms equal their character codes.
            let keysym = u32::from(c);
            if let Some(&code) = self.plain.get(&keysym) {
                self.tap(code)?;
            } else if let Some(&code) = self.shifted.get(&keysym) {
                // Upper-case letters and shifted symbols: their key with Shift held.
                self.fake(KEY_PRESS_EVENT, shift, 0, 0)?;
                self.tap(code)?;
                self.fake(KEY_RELEASE_EVENT, shift, 0, 0)?;
            } else {
                return Err(InputError::UnknownKey(c.to_string()));
            }
        }
        self.conn.flush().map_err(server)
    }
}

#[cfg(test)]
mod tests {
    use super::keysym_for_code;

    #[test]
    fn w3c_codes_map_to_keysyms() {
        assert_eq!(keysym_for_code("KeyA"), Some(0x61));
        assert_eq!(keysym_for_code("Digit7"), Some(0x37));
        assert_eq!(keysym_for_code("F1"), Some(0xffbe));
        assert_eq!(keysym_for_code("F12"), Some(0xffc9));
        assert_eq!(keysym_for_code("Enter"), Some(0xff0d));
        assert_eq!(keysym_for_code("KeyAB"), None);
        assert_eq!(keysym_for_code("F99"), None);
        assert_eq!(keysym_for_code("Nonsense"), None);
    }
}
