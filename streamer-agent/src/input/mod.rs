//! Remote input behind a small trait, one backend per platform: XTEST on X11, `SendInput` on
//! Windows.

#[cfg(windows)]
pub mod sendinput;
#[cfg(target_os = "linux")]
pub mod x11;

use protocol::{KeyInput, MouseInput};

use crate::capture::Monitor;

/// Input could not be injected.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The display server refused.
    #[error("display server: {0}")]
    Server(String),
    /// The key has no equivalent on this keyboard.
    #[error("no key for {0:?} on this keyboard")]
    UnknownKey(String),
}

/// Injects the technician's input into the local desktop.
pub trait InputSink: Send {
    /// A mouse event at coordinates of `monitor`.
    fn mouse(&mut self, monitor: &Monitor, event: &MouseInput) -> Result<(), InputError>;
    /// A physical key going down or up.
    fn key(&mut self, event: &KeyInput) -> Result<(), InputError>;
    /// Text typed as is.
    fn text(&mut self, text: &str) -> Result<(), InputError>;
}
