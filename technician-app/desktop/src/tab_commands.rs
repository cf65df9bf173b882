//! The app's session tabs: several sessions at once, each in a tab of the window, one shown. The
//! shown tab's session gets the input, the menus' commands, the chat and the files, and its video
//! alone is drawn (a keyframe is asked for when a tab is shown again); the others go on behind it.
//! Closing a tab leaves its session; signing in or out leaves them all.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::State;
use technician::Command;
use tokio::sync::mpsc;

use super::{page_send, App, Failure, Inner};

/// One session's tab.
pub(crate) struct Tab {
    /// Where the session's commands go (`None` once it ended or its connection was lost: the tab
    /// stays, with its last picture and words, until the technician closes it).
    pub commands: Option<mpsc::Sender<Command>>,
    /// The device, when connected to one by name (not by code), whose choices are remembered.
    pub device: Option<String>,
    /// The stream's size, for the native view when the tab is shown again.
    pub size: Option<(u32, u32)>,
    /// The page's channel, while the session shares the clipboard.
    pub clipboard: Option<Channel<InvokeResponseBody>>,
    /// Whether the remote computer's clipboard text replaces the local clipboard in this session
    /// (off until the technician turns it on: the end user may be anyone, and a clipboard is
    /// where a technician's next paste, into a terminal say, comes from).
    pub takes_remote_clipboard: bool,
    /// The remote computer's latest clipboard text while not taken, to take if it is turned on.
    pub held_clipboard: Option<String>,
}

/// Lets the remote computer's clipboard text replace the local clipboard in the shown session
/// (`on`), taking the latest text it copied meanwhile; or stops it.
#[tauri::command]
pub async fn take_remote_clipboard(app: State<'_, Arc<App>>, on: bool) -> Result<(), Failure> {
    let mut inner = app.inner.lock().await;
    let Some(t) = inner.active.and_then(|id| inner.tabs.get_mut(&id)) else {
        return Err(Failure::new("NO_SESSION", "No session is shown."));
    };
    t.takes_remote_clipboard = on;
    if let (true, Some(text)) = (on, t.held_clipboard.take()) {
        app.clipboard.remote(text);
    }
    // The tab's page remembers the choice (it is replayed when the tab is shown again).
    if let Some(page) = &t.clipboard {
        page_send(
            page,
            &serde_json::json!({"type": "remoteClipboard", "taking": on}),
        );
    }
    Ok(())
}

/// Shows session tab `tab`, or the device list (`None`); the sessions keep running either way.
/// The native view draws the shown session only, from a keyframe asked for now.
#[tauri::command]
pub async fn select_tab(app: State<'_, Arc<App>>, tab: Option<u64>) -> Result<(), Failure> {
    let mut inner = app.inner.lock().await;
    if let Some(id) = tab {
        if !inner.tabs.contains_key(&id) {
            return Err(Failure::new("NO_SESSION", "That session's tab is closed."));
        }
    }
    inner.active = tab;
    app.shown.store(tab.unwrap_or(0), Ordering::SeqCst);
    let shown = tab.and_then(|id| inner.tabs.get(&id).map(|t| (id, t)));
    let running = shown.and_then(|(id, t)| t.commands.clone().map(|c| (id, t, c)));
    match running {
        Some((id, t, commands)) => {
            if let Some(view) = app.native() {
                view.start(commands.clone());
                if let Some((w, h)) = t.size {
                    view.remote_size(w, h);
                }
            }
            if let Some(page) = &t.clipboard {
                share_clipboard(&app, id, commands.clone(), page.clone());
            }
            // The next picture drawn is whole; nothing to do for a session that just ended.
            let _ = commands.send(Command::Keyframe).await;
        }
        None => {
            if let Some(view) = app.native() {
                view.stop();
            }
        }
    }
    Ok(())
}

/// Closes session tab `tab`, leaving its session if it still runs; the device list is shown
/// when it was the tab shown.
#[tauri::command]
pub async fn close_tab(app: State<'_, Arc<App>>, tab: u64) -> Result<(), Failure> {
    let mut inner = app.inner.lock().await;
    close(&app, &mut inner, tab).await;
    Ok(())
}

pub(crate) async fn close(app: &App, inner: &mut Inner, tab: u64) {
    if let Some(t) = inner.tabs.remove(&tab) {
        if let Some(commands) = t.commands {
            let _ = commands.send(Command::Leave).await;
        }
    }
    if inner.active == Some(tab) {
        inner.active = None;
        app.shown.store(0, Ordering::SeqCst);
        if let Some(view) = app.native() {
            view.stop();
        }
    }
}

/// Shares the local clipboard with tab `tab`'s session (the shown one: one session at a time
/// shares it), reporting to its page channel.
pub(crate) fn share_clipboard(
    app: &App,
    tab: u64,
    commands: mpsc::Sender<Command>,
    page: Channel<InvokeResponseBody>,
) {
    app.clipboard
        .share(tab, commands, Box::new(move |v| page_send(&page, &v)));
}

/// Leaves every session and closes their tabs (signing in or out).
pub(crate) async fn leave_all(app: &App, inner: &mut Inner) {
    let tabs: Vec<u64> = inner.tabs.keys().copied().collect();
    for tab in tabs {
        close(app, inner, tab).await;
    }
}

/// Closes the shown tab (leaving its session, if it still runs, and stopping its reconnection):
/// the technician is back at the device list.
#[tauri::command]
pub async fn back_to_devices(app: State<'_, Arc<App>>) -> Result<(), Failure> {
    let mut inner = app.inner.lock().await;
    if let Some(tab) = inner.active {
        close(&app, &mut inner, tab).await;
    }
    if let Some(view) = app.native() {
        view.stop();
    }
    Ok(())
}
