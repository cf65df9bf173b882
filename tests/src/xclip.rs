//! The X clipboard as a person's programs use it, through `xclip` (Debian package xclip): an X
//! client that is not this project's code, to copy and paste on a test's display.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// What `xclip -o` reads as UTF-8 from `selection` (`clipboard`, `primary`) on `display`
/// (`None` when nothing is there).
pub async fn paste(display: &str, selection: &str) -> Option<String> {
    let (display, selection) = (display.to_owned(), selection.to_owned());
    tokio::task::spawn_blocking(move || {
        let out = Command::new("xclip")
            .args(["-display", &display, "-selection", &selection, "-o"])
            .args(["-t", "UTF8_STRING"])
            .output()
            .expect("xclip (Debian package xclip) must be installed");
        out.status
            .success()
            .then(|| String::from_utf8(out.stdout).expect("UTF-8 text"))
    })
    .await
    .expect("the paste's thread")
}

/// Polls `selection` on `display` until it holds `text`, for up to 10 s; panics otherwise.
pub async fn wait_for_paste(display: &str, selection: &str, text: &str) {
    let mut last = None;
    for _ in 0..50 {
        last = paste(display, selection).await;
        if last.as_deref() == Some(text) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "{selection} on {display} holds {:?} bytes, not the {} expected",
        last.map(|t| t.len()),
        text.len()
    );
}

/// An `xclip` that owns the CLIPBOARD selection of a display: killed when dropped.
#[derive(Debug)]
pub struct Copied(Child);

impl Drop for Copied {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Copies `text` on `display` as a person's program would: `xclip` owns the CLIPBOARD selection
/// until another client takes it or the returned value is dropped.
pub fn copy(display: &str, text: &str) -> Copied {
    let mut child = Command::new("xclip")
        .args([
            "-display",
            display,
            "-selection",
            "clipboard",
            "-i",
            "-quiet",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("xclip (Debian package xclip) must be installed");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .expect("xclip reads the text");
    }
    Copied(child)
}
