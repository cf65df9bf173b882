//! The attended streamer's window: what it says for each notice and where its parts are, shared by
//! every platform's window (`win32.rs` on Windows, `gtk.rs` on Linux; [`show`] starts the one this
//! platform has, on a thread of its own).
//!
//! The window sits in the bottom-right corner of the screen. It shows the session code to read
//! out, who is connected, "This session is recorded by the technician's team" when the relay says
//! so, an End session button, and the chat with the technician: their newest line, and a line to
//! write an answer in with its Send button (usable while a session allows chat). Closing the window
//! ends the session too.

#[cfg(target_os = "linux")]
pub mod gtk;
#[cfg(windows)]
pub mod win32;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::agent::Notice;

/// The window's size, and so where its button is (the end-to-end test clicks it).
pub const WIDTH: i32 = 520;
/// See [`WIDTH`].
pub const HEIGHT: i32 = 400;
/// The End session button's rectangle in the window's client area: x, y, width, height.
pub const END_BUTTON: (i32, i32, i32, i32) = (20, 230, 200, 44);
/// The window's distance from the screen's right and bottom edges.
pub const MARGIN: i32 = 16;
/// Where the status line is in the client area: x, y, width, height.
pub const STATUS: (i32, i32, i32, i32) = (20, 16, 480, 52);
/// Where the session code is.
pub const CODE: (i32, i32, i32, i32) = (20, 70, 480, 56);
/// Where who is connected is.
pub const WHO: (i32, i32, i32, i32) = (20, 132, 480, 28);
/// Where the recording notice is.
pub const RECORDED: (i32, i32, i32, i32) = (20, 166, 480, 56);
/// Where the newest chat line is (below the button).
pub const CHAT: (i32, i32, i32, i32) = (20, 284, 480, 28);
/// The line the end user writes to the technician in.
pub const CHAT_INPUT: (i32, i32, i32, i32) = (20, 318, 370, 36);
/// Its Send button (Enter in the line sends too).
pub const CHAT_SEND: (i32, i32, i32, i32) = (400, 318, 100, 36);

/// Where the lines the end user writes in the window go (the agent's chat input).
pub type Typed = tokio::sync::mpsc::Sender<String>;
/// The text size of every line but the code, in pixels.
pub const TEXT_PX: i32 = 20;
/// The code's text size, in pixels (bold).
pub const CODE_PX: i32 = 44;

/// A window being shown on a thread of its own.
#[derive(Debug)]
pub struct Shown {
    notices: Sender<Notice>,
    done: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Shown {
    /// Where to send the agent's notices for the window.
    pub fn notices(&self) -> Sender<Notice> {
        self.notices.clone()
    }

    /// Closes the window (the agent has finished) and waits for its thread.
    pub fn close(self) {
        self.done.store(true, Ordering::Release);
        let _ = self.thread.join();
    }
}

/// Shows this platform's attended window: its End session button and closing it cancel `end`;
/// what the end user writes in its chat line goes to `typed` (no chat line without it). `None`
/// where there is no window (other platforms); a window that cannot be shown (no display) says why
/// on stderr, and the terminal still says everything.
pub fn show(end: CancellationToken, typed: Option<Typed>) -> Option<Shown> {
    #[cfg(any(windows, target_os = "linux"))]
    {
        let (notices, rx) = std::sync::mpsc::channel();
        let done = Arc::new(AtomicBool::new(false));
        let window_done = done.clone();
        let thread = std::thread::spawn(move || {
            if let Err(e) = run(rx, end, window_done, typed) {
                eprintln!("streamer: the window could not be shown: {e:#}");
            }
        });
        Some(Shown {
            notices,
            done,
            thread,
        })
    }
    #[cfg(not(any(windows, target_os = "linux")))]
    {
        let _ = (end, typed);
        None
    }
}

#[cfg(windows)]
fn run(
    notices: Receiver<Notice>,
    end: CancellationToken,
    done: Arc<AtomicBool>,
    typed: Option<Typed>,
) -> anyhow::Result<()> {
    win32::run(notices, end, done, typed)
}

#[cfg(target_os = "linux")]
fn run(
    notices: Receiver<Notice>,
    end: CancellationToken,
    done: Arc<AtomicBool>,
    typed: Option<Typed>,
) -> anyhow::Result<()> {
    gtk::run(notices, end, done, typed)
}

/// The words the window shows for each notice: (status, code, who, recorded); `None` leaves a line
/// as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lines {
    /// The status line.
    pub status: Option<String>,
    /// The session code, large.
    pub code: Option<String>,
    /// Who is connected.
    pub who: Option<String>,
    /// The recording notice.
    pub recorded: Option<String>,
    /// The newest chat line, with who wrote it.
    pub chat: Option<String>,
    /// Whether the end user can write to the technician now.
    pub chat_open: Option<bool>,
}

/// What the window shows after `notice`.
pub fn lines_for(notice: &Notice) -> Lines {
    let s = |t: &str| Some(t.to_owned());
    match notice {
        Notice::Connected => Lines {
            status: s("Connected to the relay."),
            ..Lines::default()
        },
        Notice::SessionCode(code, ttl) => Lines {
            status: Some(format!(
                "Read this code to your technician (valid {} minutes):",
                ttl / 60
            )),
            code: Some(spaced(code)),
            ..Lines::default()
        },
        Notice::SessionStarted {
            technician,
            recorded,
        } => Lines {
            status: s("A technician can now see this screen and use it."),
            code: s(""),
            who: Some(format!("{technician} is connected to this computer.")),
            recorded: Some(if *recorded {
                "This session is recorded by the technician's team".to_owned()
            } else {
                String::new()
            }),
            chat: s(""),
            chat_open: Some(false),
        },
        Notice::SessionEnded(why) => Lines {
            status: Some(why.clone()),
            code: s(""),
            who: s(""),
            recorded: s(""),
            chat: s(""),
            chat_open: Some(false),
        },
        Notice::ChatOpen(open) => Lines {
            chat_open: Some(*open),
            ..Lines::default()
        },
        Notice::Chat(from, line) => Lines {
            chat: Some(format!("{}: {line}", from.as_deref().unwrap_or("You"))),
            ..Lines::default()
        },
        Notice::Reconnecting(secs, _) => Lines {
            status: Some(format!("Connection lost; trying again in {secs} s.")),
            ..Lines::default()
        },
    }
}

/// A nine-digit code in three groups, as it is read out.
fn spaced(code: &str) -> String {
    let chars: Vec<char> = code.chars().collect();
    chars
        .chunks(3)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_notice_says_what_the_end_user_needs() {
        let code = lines_for(&Notice::SessionCode("123456789".into(), 600));
        assert_eq!(code.code.as_deref(), Some("123 456 789"));
        assert!(code.status.unwrap().contains("valid 10 minutes"));
        let started = lines_for(&Notice::SessionStarted {
            technician: "Ann".into(),
            recorded: true,
        });
        assert_eq!(
            started.who.as_deref(),
            Some("Ann is connected to this computer.")
        );
        assert_eq!(
            started.recorded.as_deref(),
            Some("This session is recorded by the technician's team")
        );
        assert_eq!(
            started.code.as_deref(),
            Some(""),
            "the code is no longer shown"
        );
        let unrecorded = lines_for(&Notice::SessionStarted {
            technician: "Ann".into(),
            recorded: false,
        });
        assert_eq!(unrecorded.recorded.as_deref(), Some(""));
        let chat = lines_for(&Notice::Chat(Some("Ann".into()), "<b>Hi</b>".into()));
        assert_eq!(chat.chat.as_deref(), Some("Ann: <b>Hi</b>"));
        assert_eq!(chat.status, None, "a chat line leaves the other lines be");
        assert_eq!(
            started.chat_open,
            Some(false),
            "closed until the session's tools say"
        );
        assert_eq!(lines_for(&Notice::ChatOpen(true)).chat_open, Some(true));
        let own = lines_for(&Notice::Chat(None, "Thanks".into()));
        assert_eq!(own.chat.as_deref(), Some("You: Thanks"));
        let ended = lines_for(&Notice::SessionEnded("You ended the session.".into()));
        assert_eq!(ended.chat.as_deref(), Some(""));
        assert_eq!(ended.chat_open, Some(false));
        assert_eq!(ended.status.as_deref(), Some("You ended the session."));
        assert_eq!(ended.who.as_deref(), Some(""));
    }
}
