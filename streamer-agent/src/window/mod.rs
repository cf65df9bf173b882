//! The attended streamer's window: what it says for each notice and where its parts are, shared by
//! every platform's window (`win32.rs` on Windows; other platforms print to the terminal for now).
//!
//! The window sits in the bottom-right corner of the screen. It shows the session code to read
//! out, who is connected, "This session is recorded by the technician's team" when the relay says
//! so, and an End session button. Closing the window ends the session too.

#[cfg(windows)]
pub mod win32;

use crate::agent::Notice;

/// The window's size, and so where its button is (the end-to-end test clicks it).
pub const WIDTH: i32 = 520;
/// See [`WIDTH`].
pub const HEIGHT: i32 = 330;
/// The End session button's rectangle in the window's client area: x, y, width, height.
pub const END_BUTTON: (i32, i32, i32, i32) = (20, 230, 200, 44);
/// The window's distance from the screen's right and bottom edges.
pub const MARGIN: i32 = 16;

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
        },
        Notice::SessionEnded(why) => Lines {
            status: Some(why.clone()),
            code: s(""),
            who: s(""),
            recorded: s(""),
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
        let ended = lines_for(&Notice::SessionEnded("You ended the session.".into()));
        assert_eq!(ended.status.as_deref(), Some("You ended the session."));
        assert_eq!(ended.who.as_deref(), Some(""));
    }
}
