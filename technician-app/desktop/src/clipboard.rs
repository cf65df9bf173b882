//! The technician's clipboard, shared with the remote computer's while a session allows it.
//!
//! One thread owns the local clipboard for the app's life (on X11 the text the app put there is
//! served by the app, and lost when the app lets go of it). While a session's `SessionTools` allow
//! the clipboard, the thread reads the local clipboard every [`POLL`] and sends text the technician
//! copied to the remote computer; text from the remote computer is put on the local clipboard.
//! Text is never sent back to the side it came from ([`Echo`]). What was on the clipboard when the
//! session started is not sent: a password copied for another customer does not travel to this
//! one's computer; the technician copies again to send it.
//!
//! The desktop backends are arboard's: X11 selections, the Windows clipboard, the macOS pasteboard
//! (the latter two compiled for their targets, not run here).

use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use technician::Command;

/// How often the local clipboard is read while a session shares it.
pub const POLL: Duration = Duration::from_millis(300);

/// A clipboard holding text.
pub trait Local {
    /// The text on it now (`None`: none, or not text).
    fn text(&mut self) -> Option<String>;
    /// Puts `text` on it.
    fn set_text(&mut self, text: &str) -> Result<(), String>;
}

/// The desktop's clipboard, through arboard.
pub struct Desktop(arboard::Clipboard);

impl Desktop {
    /// Opens the desktop's clipboard.
    pub fn open() -> Result<Self, String> {
        arboard::Clipboard::new()
            .map(Self)
            .map_err(|e| format!("the clipboard cannot be opened: {e}"))
    }
}

impl std::fmt::Debug for Desktop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Desktop clipboard")
    }
}

impl Local for Desktop {
    fn text(&mut self) -> Option<String> {
        self.0.get_text().ok()
    }

    fn set_text(&mut self, text: &str) -> Result<(), String> {
        self.0
            .set_text(text.to_owned())
            .map_err(|e| format!("the clipboard refused the text: {e}"))
    }
}

/// What both sides' clipboards last held, so that no text goes back where it came from.
#[derive(Debug, Default)]
pub struct Echo {
    last: Option<String>,
}

impl Echo {
    /// Starts from what the local clipboard holds now, which is not sent.
    pub fn from(now: Option<String>) -> Self {
        Self { last: now }
    }

    /// The local clipboard reads `now`: the text to send, when the technician copied something new.
    pub fn local(&mut self, now: Option<String>) -> Option<String> {
        match now {
            Some(text) if self.last.as_deref() != Some(text.as_str()) => {
                self.last = Some(text.clone());
                Some(text)
            }
            _ => None,
        }
    }

    /// The remote computer's `text` was put on the local clipboard.
    pub fn remote(&mut self, text: &str) {
        self.last = Some(text.to_owned());
    }
}

/// Where the page hears what the clipboard did (a JSON event).
pub type Report = Box<dyn Fn(Value) + Send>;

enum Order {
    Share(u64, tokio::sync::mpsc::Sender<Command>, Report),
    Remote(String),
    Stop(u64),
    /// Read the local clipboard now, then say so (tests drive the thread with it instead of
    /// waiting for [`POLL`]s).
    #[cfg(test)]
    PollThen(mpsc::Sender<()>),
}

/// The clipboard's thread.
#[derive(Debug)]
pub struct Sharing {
    orders: mpsc::Sender<Order>,
}

impl Sharing {
    /// Starts the thread; `open` opens the local clipboard the first time a session shares it
    /// (a display that has none is reported to the page then, and the session goes on).
    pub fn spawn<L: Local + 'static>(
        open: impl FnMut() -> Result<L, String> + Send + 'static,
    ) -> Self {
        let (orders, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("clipboard".into())
            .spawn(move || run(open, rx, Some(POLL)));
        if let Err(e) = spawned {
            eprintln!("technician-app: no clipboard thread: {e}");
        }
        Self { orders }
    }

    /// Shares the clipboard with session `epoch`, which takes `commands`, reporting to `report`.
    pub fn share(&self, epoch: u64, commands: tokio::sync::mpsc::Sender<Command>, report: Report) {
        let _ = self.orders.send(Order::Share(epoch, commands, report));
    }

    /// Puts the remote computer's text on the local clipboard.
    pub fn remote(&self, text: String) {
        let _ = self.orders.send(Order::Remote(text));
    }

    /// Stops sharing with session `epoch` (it is over); a later session's sharing goes on.
    pub fn stop(&self, epoch: u64) {
        let _ = self.orders.send(Order::Stop(epoch));
    }

    /// A thread that reads the local clipboard only when [`Sharing::poll`] says so.
    #[cfg(test)]
    fn driven<L: Local + 'static>(
        open: impl FnMut() -> Result<L, String> + Send + 'static,
    ) -> Self {
        let (orders, rx) = mpsc::channel();
        std::thread::spawn(move || run(open, rx, None));
        Self { orders }
    }

    /// Has the thread handle every order sent so far, then read the local clipboard once.
    #[cfg(test)]
    fn poll(&self) {
        let (done, said) = mpsc::channel();
        let _ = self.orders.send(Order::PollThen(done));
        said.recv_timeout(Duration::from_secs(60))
            .expect("the clipboard thread answers");
    }
}

fn chars(text: &str) -> usize {
    text.chars().count()
}

/// The session the clipboard is shared with.
struct Shared {
    epoch: u64,
    commands: tokio::sync::mpsc::Sender<Command>,
    report: Report,
    echo: Echo,
}

/// The thread's loop: orders as they come, and a read of the local clipboard every `poll` (`None`:
/// only when told to, for tests).
fn run<L: Local>(
    mut open: impl FnMut() -> Result<L, String>,
    orders: mpsc::Receiver<Order>,
    poll: Option<Duration>,
) {
    let mut local: Option<L> = None;
    let mut shared: Option<Shared> = None;
    #[cfg(test)]
    let mut polled: Option<mpsc::Sender<()>> = None;
    loop {
        let order = match poll {
            Some(every) => match orders.recv_timeout(every) {
                Ok(order) => Some(order),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
            None => match orders.recv() {
                Ok(order) => Some(order),
                Err(_) => return,
            },
        };
        #[cfg(test)]
        let order = match order {
            Some(Order::PollThen(done)) => {
                polled = Some(done);
                None
            }
            other => other,
        };
        #[cfg(test)]
        let _said = Said(polled.take());
        match order {
            Some(Order::Share(epoch, commands, report)) => {
                if local.is_none() {
                    match open() {
                        Ok(l) => local = Some(l),
                        Err(why) => {
                            report(
                                json!({"type": "clipboard", "state": "unavailable", "message": why}),
                            );
                            continue;
                        }
                    }
                }
                let now = local.as_mut().and_then(Local::text);
                report(json!({"type": "clipboard", "state": "shared"}));
                shared = Some(Shared {
                    epoch,
                    commands,
                    report,
                    echo: Echo::from(now),
                });
            }
            Some(Order::Remote(text)) => {
                let (Some(l), Some(to)) = (local.as_mut(), shared.as_mut()) else {
                    continue;
                };
                let report = &to.report;
                match l.set_text(&text) {
                    Ok(()) => {
                        to.echo.remote(&text);
                        report(
                            json!({"type": "clipboard", "state": "received", "chars": chars(&text)}),
                        );
                    }
                    Err(why) => {
                        report(json!({"type": "clipboard", "state": "unavailable", "message": why}))
                    }
                }
            }
            Some(Order::Stop(epoch)) => {
                if shared.as_ref().is_some_and(|s| s.epoch == epoch) {
                    shared = None;
                }
            }
            #[cfg(test)]
            Some(Order::PollThen(_)) => {}
            None => {
                let (Some(l), Some(to)) = (local.as_mut(), shared.as_mut()) else {
                    continue;
                };
                if let Some(text) = to.echo.local(l.text()) {
                    let n = chars(&text);
                    if to.commands.blocking_send(Command::Clipboard(text)).is_err() {
                        shared = None;
                        continue;
                    }
                    (to.report)(json!({"type": "clipboard", "state": "sent", "chars": n}));
                }
            }
        }
    }
}

/// Says that a poll ordered by a test is done when the loop's turn ends, however it ends.
#[cfg(test)]
struct Said(Option<mpsc::Sender<()>>);

#[cfg(test)]
impl Drop for Said {
    fn drop(&mut self) {
        if let Some(done) = self.0.take() {
            let _ = done.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn nothing_goes_back_where_it_came_from() {
        let mut echo = Echo::from(Some("copied before".into()));
        assert_eq!(echo.local(Some("copied before".into())), None);
        assert_eq!(echo.local(None), None);
        assert_eq!(echo.local(Some("new".into())), Some("new".into()));
        assert_eq!(echo.local(Some("new".into())), None);
        echo.remote("from the remote computer");
        assert_eq!(echo.local(Some("from the remote computer".into())), None);
        // The same text copied again after something else is sent again.
        assert_eq!(echo.local(Some("new".into())), Some("new".into()));
    }

    /// A clipboard in memory (this test's stand-in for the desktop's).
    #[derive(Clone, Default)]
    struct Memory(Arc<Mutex<Option<String>>>);

    impl Local for Memory {
        fn text(&mut self) -> Option<String> {
            self.0.lock().unwrap().clone()
        }
        fn set_text(&mut self, text: &str) -> Result<(), String> {
            *self.0.lock().unwrap() = Some(text.into());
            Ok(())
        }
    }

    #[test]
    fn the_thread_sends_new_copies_sets_remote_text_and_stops_with_the_session() {
        let memory = Memory::default();
        *memory.0.lock().unwrap() = Some("old secret".into());
        let opened = memory.clone();
        let sharing = Sharing::driven(move || Ok(opened.clone()));
        let (commands, mut sent) = tokio::sync::mpsc::channel(8);
        let reports = Arc::new(Mutex::new(Vec::new()));
        let r = Arc::clone(&reports);
        sharing.share(
            1,
            commands,
            Box::new(move |v| r.lock().unwrap().push(v["state"].to_string())),
        );
        sharing.poll();
        assert!(
            sent.try_recv().is_err(),
            "what was there before is not sent"
        );

        *memory.0.lock().unwrap() = Some("ipconfig /all".into());
        sharing.poll();
        assert_eq!(
            sent.try_recv().unwrap(),
            Command::Clipboard("ipconfig /all".into())
        );
        sharing.poll();
        assert!(sent.try_recv().is_err(), "sent once");

        sharing.remote("C:\\log.txt".into());
        sharing.poll();
        assert_eq!(memory.0.lock().unwrap().as_deref(), Some("C:\\log.txt"));
        assert!(sent.try_recv().is_err(), "not echoed");

        // An earlier session's end does not stop this one's sharing; its own end does.
        sharing.stop(0);
        *memory.0.lock().unwrap() = Some("still shared".into());
        sharing.poll();
        assert_eq!(
            sent.try_recv().unwrap(),
            Command::Clipboard("still shared".into())
        );
        sharing.stop(1);
        *memory.0.lock().unwrap() = Some("after the session".into());
        sharing.poll();
        assert!(sent.try_recv().is_err(), "nothing after the session");
        assert_eq!(
            *reports.lock().unwrap(),
            ["\"shared\"", "\"sent\"", "\"received\"", "\"sent\""]
        );
    }
}
