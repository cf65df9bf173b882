//! The technician's desktop app (Tauri v2).
//!
//! The Rust side signs in, lists devices and runs sessions through the `technician` library; the page
//! (`ui/`) shows them. Session events reach the page on one Tauri channel as binary messages
//! ([`wire`]): small JSON messages, and the H.264 access units only where there is no native view.
//!
//! Video: the app decodes in Rust and draws into a native child window over the page's stage
//! ([`technician_desktop::view::native`]: X11 and Windows, tested; macOS, untested; the app's side
//! in [`view_commands`]); the page tells it where the stage is and sends mouse events in page
//! coordinates, which are mapped through the same [`technician_desktop::view::Fit`] the view draws
//! with. Where no native view opens (and with `TECHNICIAN_VIEW=webview`) the page
//! decodes with WebCodecs and maps input itself. Input,
//! monitor and frame-rate changes come back as commands.
//!
//! A lost connection never leaves the app stuck: the view is darkened, the page says so, and the app
//! reconnects with the sign-in token, with backoff, until it is back (then it offers a new session
//! with the same device) or the token is refused (then it is back at sign-in). The relay's address,
//! the e-mail address and each device's frame rate and monitor are remembered ([`settings`]).

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod file_commands;
mod tab_commands;
mod view_commands;

use tab_commands::{leave_all, share_clipboard, Tab};

use technician_desktop::clipboard;
use technician_desktop::settings::{self, Settings};
use technician_desktop::view::native::NativeView;
use technician_desktop::wire;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use clap::Parser;
use protocol::{KeyInput, Modifiers, SessionTarget};
use relay_client::{Connector, LinkError};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::{Manager, State};
use technician::{Account, Command, Event, Technician, TechnicianError};
use tokio::sync::Mutex;

/// Remote Support Technician.
#[derive(Debug, Clone, Parser)]
#[command(version, about)]
struct Args {
    /// The relay, host:port (filled in on the sign-in page).
    #[arg(long, env = "TECHNICIAN_RELAY", default_value = "")]
    relay: String,
    /// A CA certificate to trust for the relay (a relay on a development certificate); without it,
    /// the relay's certificate must chain to a public CA.
    #[arg(long, env = "TECHNICIAN_CA")]
    ca: Option<PathBuf>,
    /// The e-mail address to fill in on the sign-in page.
    #[arg(long, env = "TECHNICIAN_EMAIL", default_value = "")]
    email: String,
    /// Where the app keeps its settings (default: the platform's config folder for the app).
    #[arg(long, env = "TECHNICIAN_CONFIG_DIR")]
    config_dir: Option<PathBuf>,
    /// Print the four-part product version and exit.
    #[arg(long)]
    product_version: bool,
}

/// The app's state: at most one signed-in technician, any number of sessions, each in a tab of
/// the window, at most one of them shown.
struct App {
    args: Args,
    inner: Mutex<Inner>,
    /// The tab shown (0: none, the device list): its video alone goes to the native view. Kept
    /// out of the lock, which each video frame would otherwise take.
    shown: AtomicU64,
    /// The native view, once the window exists (`None`: the page draws).
    view: OnceLock<Option<NativeView>>,
    /// The settings file, once the config folder is known.
    settings: OnceLock<settings::Store>,
    /// The local clipboard, shared with sessions that allow it.
    clipboard: clipboard::Sharing,
}

impl App {
    fn native(&self) -> Option<&NativeView> {
        self.view.get().and_then(Option::as_ref)
    }

    /// Writes the settings; a failure is reported and the app goes on (nothing else is lost).
    fn save(&self, settings: &Settings) {
        if let Some(store) = self.settings.get() {
            if let Err(e) = store.save(settings) {
                eprintln!(
                    "technician-app: the settings were not saved to {}: {e}",
                    store.path().display()
                );
            }
        }
    }
}

#[derive(Default)]
struct Inner {
    /// What a signed-in technician connects again with.
    account: Option<Account>,
    /// Signed in, connected and not in a session.
    technician: Option<Technician>,
    /// The sessions in the window's tabs, by tab id (from 1, never used twice in a run).
    tabs: BTreeMap<u64, Tab>,
    /// The tab shown (`None`: the device list).
    active: Option<u64>,
    /// The last tab id given.
    last_tab: u64,
    /// Counts sign-ins and sign-outs: a reconnection for an earlier one gives up.
    epoch: u64,
    /// What is remembered between runs.
    settings: Settings,
}

impl Inner {
    /// The tab shown, when it is a session's.
    fn shown(&self) -> Option<&Tab> {
        self.active.and_then(|id| self.tabs.get(&id))
    }

    /// Remembers a choice for the shown session's device.
    fn choose(&mut self, app: &App, change: impl FnOnce(&mut settings::DeviceChoice)) {
        let Some(device) = self.shown().and_then(|t| t.device.clone()) else {
            return;
        };
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.settings.choose(&device, now_ms, change);
        app.save(&self.settings);
    }
}

/// A failure, as the page shows it: a stable code (for the page's wording) and the relay's sentence.
#[derive(Debug, Serialize)]
struct Failure {
    code: String,
    message: String,
}

impl Failure {
    /// Why, for people.
    fn message(&self) -> &str {
        &self.message
    }
}

impl From<TechnicianError> for Failure {
    fn from(e: TechnicianError) -> Self {
        let code = match (&e, e.code()) {
            (_, Some(code)) => code.name(),
            (TechnicianError::Timeout, None) => "TIMEOUT",
            (TechnicianError::Link(LinkError::Certificate(_)), None) => "CERTIFICATE",
            (TechnicianError::Link(LinkError::SignInPaused { .. }), None) => "TOO_MANY_ATTEMPTS",
            (TechnicianError::Link(LinkError::Connect(_)), None) => "UNREACHABLE",
            _ => "LINK",
        };
        Self {
            code: code.to_owned(),
            message: e.to_string(),
        }
    }
}

impl Failure {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

fn connector(ca: Option<&PathBuf>) -> Result<Connector, Failure> {
    match ca {
        Some(path) => Connector::trusting_ca_file(path)
            .map_err(|e| Failure::new("CA_FILE", format!("{}: {e}", path.display()))),
        None => {
            let mut roots = rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            Connector::trusting(roots).map_err(|e| Failure::new("TLS", e.to_string()))
        }
    }
}

/// What the sign-in page starts with: the command line's relay and e-mail, else the remembered ones.
#[tauri::command]
async fn defaults(app: State<'_, Arc<App>>) -> Result<Value, Failure> {
    let inner = app.inner.lock().await;
    let pick = |given: &str, kept: &str| {
        if given.is_empty() {
            kept.to_owned()
        } else {
            given.to_owned()
        }
    };
    Ok(json!({
        "relay": pick(&app.args.relay, &inner.settings.relay),
        "email": pick(&app.args.email, &inner.settings.email),
        "ca": app.args.ca.as_ref().map(|p| p.display().to_string()),
        "version": technician::product_version().map(|v| v.to_string()).unwrap_or_default(),
    }))
}

#[tauri::command]
async fn sign_in(
    app: State<'_, Arc<App>>,
    relay: String,
    email: String,
    password: String,
) -> Result<Value, Failure> {
    let relay = relay_client::relay_address(&relay).map_err(|why| Failure::new("ADDRESS", why))?;
    let email = email.trim().to_owned();
    let connector = connector(app.args.ca.as_ref())?;
    let account = Account::sign_in(connector, &relay, &email, &password).await?;
    let technician = account.open().await?;
    let name = technician.name.clone();
    let mut inner = app.inner.lock().await;
    leave_all(&app, &mut inner).await;
    inner.epoch += 1;
    inner.account = Some(account);
    inner.technician = Some(technician);
    inner.settings.relay = relay.clone();
    inner.settings.email = email;
    app.save(&inner.settings);
    Ok(json!({ "name": name, "relay": relay }))
}

/// Signs out: leaves any session, stops any reconnection, revokes the token at the relay.
#[tauri::command]
async fn sign_out(app: State<'_, Arc<App>>) -> Result<(), Failure> {
    let mut inner = app.inner.lock().await;
    leave_all(&app, &mut inner).await;
    inner.epoch += 1;
    inner.technician = None;
    let account = inner.account.take();
    drop(inner);
    if let Some(account) = account {
        // Signed out here either way; the page says when the relay could not be told.
        account.sign_out().await?;
    }
    Ok(())
}

/// The connection to use now: the one held, or a new one with the account's token when none is
/// held (lost, or never opened).
async fn technician(inner: &mut Inner) -> Result<&mut Technician, Failure> {
    if inner.technician.is_none() {
        let account = inner
            .account
            .as_ref()
            .ok_or_else(|| Failure::new("NOT_SIGNED_IN", "Sign in first."))?;
        inner.technician = Some(account.open().await?);
    }
    inner
        .technician
        .as_mut()
        .ok_or_else(|| Failure::new("NOT_SIGNED_IN", "Sign in first."))
}

#[tauri::command]
async fn devices(app: State<'_, Arc<App>>) -> Result<Value, Failure> {
    let mut inner = app.inner.lock().await;
    let list = match technician(&mut inner).await?.devices().await {
        Ok(list) => list,
        // The held connection died while idle (a relay restart, a network change): one more try
        // on a new one. A refusal is an answer, not a dead connection.
        Err(e) if e.code().is_none() => {
            inner.technician = None;
            technician(&mut inner).await?.devices().await?
        }
        Err(e) => {
            inner.technician = None;
            return Err(e.into());
        }
    };
    Ok(Value::Array(
        list.into_iter()
            .map(|d| {
                json!({
                    "id": d.id,
                    "name": d.name,
                    "online": d.online,
                    "busy": d.busy,
                    "streamerVersion": d.streamer_version,
                })
            })
            .collect(),
    ))
}

/// What the page asks to connect to.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Target {
    Device(String),
    Code(String),
}

#[tauri::command]
async fn connect(
    app: State<'_, Arc<App>>,
    target: Target,
    frame_rate: Option<u16>,
    on_event: Channel<InvokeResponseBody>,
) -> Result<Value, Failure> {
    let target = match target {
        Target::Device(device_id) => SessionTarget::Device { device_id },
        Target::Code(code) => {
            let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
            if code.len() != 9 || !code.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Failure::new(
                    "INPUT",
                    "A session code is the 9 digits the end user reads out.",
                ));
            }
            SessionTarget::Code { code }
        }
    };
    let mut inner = app.inner.lock().await;
    let epoch = inner.epoch;
    let device = match &target {
        SessionTarget::Device { device_id } => Some(device_id.clone()),
        SessionTarget::Code { .. } => None,
    };
    let remembered = device
        .as_ref()
        .and_then(|d| inner.settings.devices.get(d))
        .cloned()
        .unwrap_or_default();
    // The device's remembered frame rate and monitor, else the menu's choice, travel with the
    // request: the stream starts at them.
    let view = protocol::ViewRequest {
        frame_rate: remembered
            .frame_rate
            .or(frame_rate)
            .filter(|n| (1..=120).contains(n)),
        monitor_id: remembered.monitor_id,
    };
    technician(&mut inner).await?;
    let mut held = inner.technician.take();
    // Not held while the session is set up (an attended one waits for the end user): the other
    // tabs' input and the device list go on meanwhile.
    drop(inner);
    let mut session = None;
    // Twice at most: a held connection that died while idle is replaced once.
    for retry in [true, false] {
        let Some(connection) = held.take() else {
            break;
        };
        match connection.connect_with(target.clone(), view).await {
            Ok(s) => {
                session = Some(s);
                break;
            }
            Err((_, e)) if retry && e.code().is_none() => {
                let mut inner = app.inner.lock().await;
                technician(&mut inner).await?;
                held = inner.technician.take();
            }
            Err((technician, e)) => {
                if e.code().is_some() {
                    let mut inner = app.inner.lock().await;
                    if inner.technician.is_none() {
                        inner.technician = Some(technician);
                    }
                }
                return Err(e.into());
            }
        }
    }
    let session = session.ok_or_else(|| Failure::new("NOT_SIGNED_IN", "Sign in first."))?;
    let mut inner = app.inner.lock().await;
    if inner.epoch != epoch {
        // Signed out (or in again) meanwhile: this session is not the technician's any more.
        let _ = session.commands.send(Command::Leave).await;
        return Err(Failure::new(
            "NOT_SIGNED_IN",
            "Signed out while connecting.",
        ));
    }
    // A new tab, shown at once; the sessions in other tabs go on behind it.
    inner.last_tab += 1;
    let tab = inner.last_tab;
    inner.tabs.insert(
        tab,
        Tab {
            commands: Some(session.commands.clone()),
            device,
            size: None,
            clipboard: None,
            takes_remote_clipboard: false,
            held_clipboard: None,
        },
    );
    inner.active = Some(tab);
    app.shown.store(tab, Ordering::SeqCst);
    inner.choose(&app, |c| {
        c.frame_rate = view.frame_rate;
        c.monitor_id = view.monitor_id;
    });
    drop(inner);
    let native = app.native().is_some();
    if let Some(view) = app.native() {
        view.start(session.commands.clone());
    }
    let app = Arc::clone(&app);
    tauri::async_runtime::spawn(forward(app, session, on_event, tab, epoch));
    Ok(json!({
        "view": if native { "native" } else { "webview" },
        "frameRate": view.frame_rate,
        "tab": tab,
    }))
}

fn page_send(page: &Channel<InvokeResponseBody>, value: &Value) {
    // The page may be gone (window closed): the app is ending.
    let _ = page.send(InvokeResponseBody::Raw(wire::json_message(value)));
}

/// Sends the session's events to the page until it ends, then takes the connection back; when the
/// connection was lost, reconnects.
async fn forward(
    app: Arc<App>,
    mut session: technician::Session,
    page: Channel<InvokeResponseBody>,
    tab: u64,
    epoch: u64,
) {
    let view = app.native().cloned();
    let mut lost = false;
    // The end's message waits until the connection is back in the app, so that what the page
    // does next (the device list) finds it.
    let mut end = None;
    while let Some(event) = session.events.recv().await {
        lost |= matches!(event, Event::Lost { .. });
        if let Event::Ended { .. } = event {
            end = wire::encode(&event);
            break;
        }
        let ended = matches!(event, Event::Lost { .. });
        let shown = app.shown.load(Ordering::SeqCst) == tab;
        match &event {
            Event::Tools(tools) if technician::allowed(tools, protocol::Tool::Clipboard) => {
                if let Some(t) = app.inner.lock().await.tabs.get_mut(&tab) {
                    t.clipboard = Some(page.clone());
                }
                if shown {
                    share_clipboard(&app, tab, session.commands.clone(), page.clone());
                }
            }
            Event::Clipboard(text) if shown => {
                let mut inner = app.inner.lock().await;
                match inner.tabs.get_mut(&tab) {
                    Some(t) if t.takes_remote_clipboard => app.clipboard.remote(text.clone()),
                    Some(t) => {
                        t.held_clipboard = Some(text.clone());
                        drop(inner);
                        page_send(
                            &page,
                            &json!({"type": "clipboard", "state": "held", "chars": text.chars().count()}),
                        );
                    }
                    None => {}
                }
            }
            Event::VideoConfig(c) => {
                let size = (u32::from(c.width), u32::from(c.height));
                if let Some(t) = app.inner.lock().await.tabs.get_mut(&tab) {
                    t.size = Some(size);
                }
                if let (Some(view), true) = (&view, shown) {
                    view.remote_size(size.0, size.1);
                }
            }
            _ => {}
        }
        if let Some(view) = &view {
            if let Event::Video(frame) = &event {
                // A tab behind another one: its pictures are not drawn (a keyframe is asked for
                // when it is shown again).
                if shown {
                    view.frame(frame.clone());
                }
                continue;
            }
        }
        if let Some(bytes) = wire::encode(&event) {
            // The page may be gone (window closed): the session ends with the app.
            let _ = page.send(InvokeResponseBody::Raw(bytes));
        }
        if ended {
            break;
        }
    }
    app.clipboard.stop(tab);
    if let (Some(view), true) = (&view, app.shown.load(Ordering::SeqCst) == tab) {
        // A lost session's last picture stays, darkened, under the page's word that it is lost.
        if lost {
            view.dim(true);
        } else {
            view.stop();
        }
    }
    let back = session.task.await;
    let mut inner = app.inner.lock().await;
    if let Some(t) = inner.tabs.get_mut(&tab) {
        t.commands = None;
        t.clipboard = None;
    }
    match back {
        Ok(Ok(technician)) => {
            // Kept unless the technician signed out or has another connection meanwhile.
            if inner.account.is_some() && inner.technician.is_none() {
                inner.technician = Some(technician);
            }
            drop(inner);
            if let Some(bytes) = end {
                let _ = page.send(InvokeResponseBody::Raw(bytes));
            }
        }
        Ok(Err(_)) => {
            drop(inner);
            reconnect(app, page, tab, epoch).await;
        }
        Err(_) => page_send(
            &page,
            &json!({"type": "lost", "code": "INTERNAL", "message": "The session stopped unexpectedly."}),
        ),
    }
}

/// After a lost connection: connects again with the account's token, with backoff, telling the
/// page each attempt, until it is back (`reconnected`), the token is refused (`signedOut`), or the
/// technician moved on (signed out, or closed the lost session's tab).
async fn reconnect(app: Arc<App>, page: Channel<InvokeResponseBody>, tab: u64, epoch: u64) {
    for attempt in 0u32.. {
        let delay = technician::reconnect_delay(attempt);
        page_send(
            &page,
            &json!({"type": "reconnecting", "attempt": attempt + 1, "inMs": delay.as_millis() as u64}),
        );
        tokio::time::sleep(delay).await;
        let moved_on = |inner: &Inner| inner.epoch != epoch || !inner.tabs.contains_key(&tab);
        let account = {
            let inner = app.inner.lock().await;
            if moved_on(&inner) {
                return;
            }
            inner.account.clone()
        };
        let Some(account) = account else { return };
        let result = account.open().await;
        let mut inner = app.inner.lock().await;
        if moved_on(&inner) {
            return;
        }
        match result {
            Ok(technician) => {
                // Several lost tabs may each reconnect: one connection is kept for the next use.
                if inner.technician.is_none() {
                    inner.technician = Some(technician);
                }
                page_send(&page, &json!({"type": "reconnected"}));
                return;
            }
            // The relay answered and refused the token (expired, revoked): sign in again.
            Err(e) if e.code().is_some() => {
                inner.account = None;
                inner.technician = None;
                let f = Failure::from(e);
                page_send(
                    &page,
                    &json!({"type": "signedOut", "code": f.code, "message": f.message}),
                );
                return;
            }
            Err(_) => {}
        }
    }
}

/// Sends `cmd` to the shown session.
async fn command(app: &App, cmd: Command) -> Result<(), Failure> {
    let commands = app
        .inner
        .lock()
        .await
        .shown()
        .and_then(|t| t.commands.clone())
        .ok_or_else(|| Failure::new("NO_SESSION", "There is no session."))?;
    commands
        .send(cmd)
        .await
        .map_err(|_| Failure::new("NO_SESSION", "The session has ended."))
}

#[tauri::command]
async fn key(
    app: State<'_, Arc<App>>,
    code: String,
    down: bool,
    modifiers: u8,
) -> Result<(), Failure> {
    if code.is_empty() || code.len() > 32 {
        return Err(Failure::new("INPUT", "unknown key"));
    }
    command(
        &app,
        Command::Key(KeyInput {
            code,
            down,
            modifiers: Modifiers(modifiers),
        }),
    )
    .await
}

#[tauri::command]
async fn switch_monitor(app: State<'_, Arc<App>>, monitor_id: u32) -> Result<(), Failure> {
    command(&app, Command::SwitchMonitor(monitor_id)).await?;
    app.inner
        .lock()
        .await
        .choose(&app, |c| c.monitor_id = Some(monitor_id));
    Ok(())
}

#[tauri::command]
async fn set_frame_rate(app: State<'_, Arc<App>>, frame_rate: u16) -> Result<(), Failure> {
    if !(1..=60).contains(&frame_rate) {
        return Err(Failure::new(
            "INPUT",
            "The frame rate is 1 to 60 per second.",
        ));
    }
    command(&app, Command::SetFrameRate(frame_rate)).await?;
    app.inner
        .lock()
        .await
        .choose(&app, |c| c.frame_rate = Some(frame_rate));
    Ok(())
}

#[tauri::command]
async fn request_keyframe(app: State<'_, Arc<App>>) -> Result<(), Failure> {
    command(&app, Command::Keyframe).await
}

/// Full screen on or off: the window covers the screen, and the page keeps only the session bar
/// above the view.
#[tauri::command]
async fn set_fullscreen(window: tauri::WebviewWindow, on: bool) -> Result<(), Failure> {
    window
        .set_fullscreen(on)
        .map_err(|e| Failure::new("WINDOW", format!("Full screen is not available: {e}")))
}

/// A chat line for the person at the remote computer (the page shows it as sent once this
/// answers).
#[tauri::command]
async fn send_chat(app: State<'_, Arc<App>>, text: String) -> Result<(), Failure> {
    let line = text.trim();
    if line.is_empty() {
        return Err(Failure::new("INPUT", "Type a message first."));
    }
    if line.len() > technician::CHAT_MAX {
        return Err(Failure::new(
            "MESSAGE_TOO_LARGE",
            format!(
                "A message is at most {} bytes; this one has {}.",
                technician::CHAT_MAX,
                line.len()
            ),
        ));
    }
    command(&app, Command::Chat(line.to_owned())).await
}

#[tauri::command]
async fn leave(app: State<'_, Arc<App>>) -> Result<(), Failure> {
    command(&app, Command::Leave).await
}

fn main() {
    let args = Args::parse();
    if args.product_version {
        match technician::product_version() {
            Ok(v) => println!("{v}"),
            Err(e) => {
                eprintln!("technician-app: {e}");
                std::process::exit(1);
            }
        }
        return;
    }
    let app = Arc::new(App {
        args,
        inner: Mutex::new(Inner::default()),
        shown: AtomicU64::new(0),
        view: OnceLock::new(),
        settings: OnceLock::new(),
        clipboard: clipboard::Sharing::spawn(clipboard::Desktop::open),
    });
    let result = tauri::Builder::default()
        .plugin(tauri_plugin_dialog::init())
        .manage(app)
        .setup(|tauri_app| {
            let app = tauri_app.state::<Arc<App>>();
            let dir = match &app.args.config_dir {
                Some(dir) => dir.clone(),
                None => tauri_app.path().app_config_dir()?,
            };
            let store = settings::Store::new(&dir);
            let (loaded, warning) = store.load();
            if let Some(w) = warning {
                eprintln!("technician-app: {w}");
            }
            if let Ok(mut inner) = app.inner.try_lock() {
                inner.settings = loaded;
            }
            let _ = app.settings.set(store);
            let view = tauri_app
                .get_webview_window("main")
                .and_then(|w| view_commands::open_view(&w));
            let _ = app.view.set(view);
            Ok(())
        })
        .on_window_event(|window, event| {
            // Closing the window mid-session leaves it (the relay ends it `TECHNICIAN_LEFT`), then
            // the app exits.
            // Files dropped on the window go to the remote computer, when a session runs.
            if let tauri::WindowEvent::DragDrop(tauri::DragDropEvent::Drop { paths, .. }) = event {
                let app = Arc::clone(window.state::<Arc<App>>().inner());
                let paths = paths.clone();
                tauri::async_runtime::spawn(async move {
                    for path in paths {
                        if let Err(e) = file_commands::send(&app, path.clone()).await {
                            eprintln!(
                                "technician-app: {} not sent: {}",
                                path.display(),
                                e.message()
                            );
                        }
                    }
                });
            }
            if let tauri::WindowEvent::CloseRequested { api, .. } = event {
                let app = Arc::clone(window.state::<Arc<App>>().inner());
                api.prevent_close();
                let handle = window.app_handle().clone();
                tauri::async_runtime::spawn(async move {
                    let tabs = std::mem::take(&mut app.inner.lock().await.tabs);
                    let running: Vec<_> = tabs.into_values().filter_map(|t| t.commands).collect();
                    for commands in &running {
                        let _ = commands.send(Command::Leave).await;
                    }
                    // Each session's task sends the leave and reads the end; a second at most.
                    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(1);
                    while running.iter().any(|c| !c.is_closed())
                        && tokio::time::Instant::now() < deadline
                    {
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    }
                    handle.exit(0);
                });
            }
        })
        .invoke_handler(tauri::generate_handler![
            defaults,
            sign_in,
            sign_out,
            tab_commands::back_to_devices,
            devices,
            connect,
            tab_commands::select_tab,
            tab_commands::close_tab,
            tab_commands::take_remote_clipboard,
            view_commands::mouse,
            key,
            switch_monitor,
            set_frame_rate,
            request_keyframe,
            send_chat,
            set_fullscreen,
            leave,
            view_commands::view_area,
            view_commands::view_state,
            view_commands::view_watch,
            file_commands::send_file,
            file_commands::pick_and_send_file,
            file_commands::get_file,
            file_commands::cancel_transfer,
            file_commands::take_file,
            file_commands::decline_file,
            file_commands::files_folder,
            file_commands::set_files_folder,
            file_commands::pick_files_folder,
        ])
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("technician-app: {e}");
        std::process::exit(1);
    }
}
