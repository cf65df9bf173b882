//! The end user's clipboard, text only, behind a small trait: X11 selections on Linux, the Win32
//! clipboard on Windows. A backend starts only in a session whose `SessionTools` allow the
//! clipboard, so that a forbidden clipboard is never even read.

#[cfg(windows)]
pub mod win32;
#[cfg(target_os = "linux")]
pub mod x11;

use tokio::sync::mpsc;

/// The clipboard could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ClipboardError {
    /// The display server or the OS refused.
    #[error("clipboard: {0}")]
    System(String),
}

/// The local clipboard for one session. Dropping it stops watching.
pub trait Clipboard: Send {
    /// Puts `text` (from the technician) on this computer's clipboard. The change this makes is
    /// not reported back as one of the computer's own.
    fn set(&mut self, text: &str) -> Result<(), ClipboardError>;
}

/// Where a backend reports the text another program put on the clipboard: each new text once,
/// never the text [`Clipboard::set`] put there.
pub type Changes = mpsc::Sender<String>;

/// Remembers the last text on the clipboard either way, so that a backend reports only new text
/// and never echoes what the technician sent.
#[derive(Debug, Default)]
pub struct Last(Option<String>);

impl Last {
    /// Whether `text` differs from the last text seen; remembers it.
    pub fn is_new(&mut self, text: &str) -> bool {
        if self.0.as_deref() == Some(text) {
            false
        } else {
            self.0 = Some(text.to_owned());
            true
        }
    }
}

/// The text to send, or `None` for empty text (nothing to send) and for text over the
/// protocol's 1 MiB limit, which is not sent at all rather than cut (a part of a text is not what
/// the end user copied).
pub fn within_limit(text: String) -> Option<String> {
    let max = protocol::codec::limits::CLIPBOARD;
    if text.len() > max {
        tracing::info!(
            bytes = text.len(),
            max,
            "the clipboard holds more text than a session carries; not sending it"
        );
        return None;
    }
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_new_text_is_reported() {
        let mut last = Last::default();
        assert!(last.is_new("a"));
        assert!(!last.is_new("a"));
        assert!(last.is_new("b"));
        assert!(last.is_new("a"));
    }

    #[test]
    fn empty_text_and_text_over_the_limit_are_not_sent() {
        let max = protocol::codec::limits::CLIPBOARD;
        assert!(within_limit("x".repeat(max + 1)).is_none());
        assert_eq!(within_limit("x".repeat(max)).map(|t| t.len()), Some(max));
        assert!(within_limit(String::new()).is_none());
        assert_eq!(within_limit("ok".into()).as_deref(), Some("ok"));
    }
}
