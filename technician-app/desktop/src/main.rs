//! The technician's desktop app (Tauri v2).
//!
//! The Rust side signs in, lists devices and runs sessions through the `technician` library; the page
//! (`ui/`) shows them. Session events reach the page on one Tauri channel as binary messages
//! ([`wire`]): small JSON messages, and the H.264 access units only where there is no native view.
//!
//! Video: on X11 the app decodes in Rust and draws into a native child window over the page's stage
//! ([`view::native`]); the page tells it where the stage is and sends mouse events in page
//! coordinates, which are mapped through the same [`view::Fit`] the view draws with. Elsewhere (and
//! with `TECHNICIAN_VIEW=webview`) the page decodes with WebCodecs and maps input itself. Input,
//! monitor and frame-rate changes come back as commands.

// No console window on Windows release builds.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use technician_desktop::view::native::NativeView;
use technician_desktop::view::{self, Area};
use technician_desktop::wire;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use clap::Parser;
use protocol::{KeyInput, Modifiers, MouseAction, MouseButton, MouseInput, SessionTarget};
use relay_client::Connector;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tauri::ipc::{Channel, InvokeResponseBody};
use tauri::{Manager, State};
use technician::{Command, Event, Technician, TechnicianError};
use tokio::sync::{mpsc, Mutex};

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
    /// Print the four-part product version and exit.
    #[arg(long)]
    product_version: bool,
}

/// The app's state: at most one signed-in technician, at most one session.
struct App {
    args: Args,
    inner: Mutex<Inner>,
    /// The native view, once the window exists (`None`: the page draws).
    view: OnceLock<Option<NativeView>>,
}

impl App {
    fn native(&self) -> Option<&NativeView> {
        self.view.get().and_then(Option::as_ref)
    }
}

#[derive(Default)]
struct Inner {
    /// Signed in and not in a session.
    technician: Option<Technician>,
    /// Where the session's commands go, while one runs.
    commands: Option<mpsc::Sender<Command>>,
}

/// A failure, as the page shows it: a stable code (for the page's wording) and the relay's sentence.
#[derive(Debug, Serialize)]
struct Failure {
    code: String,
    message: String,
}

impl From<TechnicianError> for Failure {
    fn from(e: TechnicianError) -> Self {
        let code = match (&e, e.code()) {
            (_, Some(code)) => code.name().to_owned(),
            (TechnicianError::Timeout, None) => "TIMEOUT".to_owned(),
            _ => "LINK".to_owned(),
        };
        Self {
            code,
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

#[tauri::command]
fn defaults(app: State<'_, Arc<App>>) -> Value {
    json!({
        "relay": app.args.relay,
        "email": app.args.email,
        "ca": app.args.ca.as_ref().map(|p| p.display().to_string()),
        "version": technician::product_version().map(|v| v.to_string()).unwrap_or_default(),
    })
}

#[tauri::command]
async fn sign_in(
    app: State<'_, Arc<App>>,
    relay: String,
    email: String,
    password: String,
) -> Result<Value, Failure> {
    let relay = relay.trim().to_owned();
    if relay.is_empty() {
        return Err(Failure::new("INPUT", "Enter the relay's address."));
    }
    let connector = connector(app.args.ca.as_ref())?;
    let token = connector
        .sign_in(&relay, email.trim(), &password)
        .await
        .map_err(|e| Failure::from(TechnicianError::from(e)))?;
    let technician = Technician::with_token(&connector, &relay, &token).await?;
    let name = technician.name.clone();
    let mut inner = app.inner.lock().await;
    leave_session(&mut inner).await;
    inner.technician = Some(technician);
    Ok(json!({ "name": name }))
}

#[tauri::command]
async fn devices(app: State<'_, Arc<App>>) -> Result<Value, Failure> {
    let mut inner = app.inner.lock().await;
    let technician = inner
        .technician
        .as_mut()
        .ok_or_else(|| Failure::new("NOT_SIGNED_IN", "Sign in first."))?;
    let list = technician.devices().await?;
    Ok(Value::Array(
        list.into_iter()
            .map(|d| {
                json!({
                    "id": d.id,
                    "name": d.name,
                    "online": d.online,
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
    leave_session(&mut inner).await;
    let technician = inner
        .technician
        .take()
        .ok_or_else(|| Failure::new("NOT_SIGNED_IN", "Sign in first."))?;
    // The frame-rate menu's choice travels with the request: the stream starts at it.
    let view = protocol::ViewRequest {
        frame_rate: frame_rate.filter(|n| (1..=120).contains(n)),
        monitor_id: None,
    };
    let session = match technician.connect_with(target, view).await {
        Ok(session) => session,
        Err((technician, e)) => {
            inner.technician = Some(technician);
            return Err(e.into());
        }
    };
    inner.commands = Some(session.commands.clone());
    drop(inner);
    let native = app.native().is_some();
    if let Some(view) = app.native() {
        view.start(session.commands.clone());
    }
    let app = Arc::clone(&app);
    tauri::async_runtime::spawn(forward(app, session, on_event));
    Ok(json!({ "view": if native { "native" } else { "webview" } }))
}

/// Sends the session's events to the page until it ends, then takes the connection back.
async fn forward(
    app: Arc<App>,
    mut session: technician::Session,
    page: Channel<InvokeResponseBody>,
) {
    let view = app.native().cloned();
    while let Some(event) = session.events.recv().await {
        let ended = matches!(event, Event::Ended { .. });
        if let Some(view) = &view {
            match &event {
                Event::Video(frame) => {
                    view.frame(frame.clone());
                    continue;
                }
                Event::VideoConfig(c) => view.remote_size(u32::from(c.width), u32::from(c.height)),
                _ => {}
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
    if let Some(view) = &view {
        view.stop();
    }
    let back = session.task.await;
    let mut inner = app.inner.lock().await;
    inner.commands = None;
    match back {
        Ok(Ok(technician)) => inner.technician = Some(technician),
        Ok(Err(e)) => {
            let f = Failure::from(e);
            let _ = page.send(InvokeResponseBody::Raw(wire::json_message(
                &json!({"type": "disconnected", "code": f.code, "message": f.message}),
            )));
        }
        Err(_) => {
            let _ = page.send(InvokeResponseBody::Raw(wire::json_message(&json!({
                "type": "disconnected", "code": "INTERNAL", "message": "The session stopped unexpectedly."
            }))));
        }
    }
}

async fn leave_session(inner: &mut Inner) {
    if let Some(commands) = inner.commands.take() {
        let _ = commands.send(Command::Leave).await;
    }
}

async fn command(app: &App, cmd: Command) -> Result<(), Failure> {
    let commands = app
        .inner
        .lock()
        .await
        .commands
        .clone()
        .ok_or_else(|| Failure::new("NO_SESSION", "There is no session."))?;
    commands
        .send(cmd)
        .await
        .map_err(|_| Failure::new("NO_SESSION", "The session has ended."))
}

/// A mouse event from the page: in the remote monitor's pixels (`x`, `y`; the page's own view), or
/// in the webview's device pixels (`pageX`, `pageY`; the native view), mapped here.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageMouse {
    action: String,
    #[serde(default)]
    button: u8,
    #[serde(default)]
    x: u16,
    #[serde(default)]
    y: u16,
    page_x: Option<f64>,
    page_y: Option<f64>,
    #[serde(default)]
    wheel_x: i16,
    #[serde(default)]
    wheel_y: i16,
}

fn mouse_input(m: &PageMouse) -> Result<MouseInput, Failure> {
    let action = match m.action.as_str() {
        "move" => MouseAction::Move,
        "down" => MouseAction::Down,
        "up" => MouseAction::Up,
        "wheel" => MouseAction::Wheel,
        other => {
            return Err(Failure::new(
                "INPUT",
                format!("unknown mouse action {other}"),
            ))
        }
    };
    // The page's MouseEvent.button numbering.
    let button = match (action, m.button) {
        (MouseAction::Move | MouseAction::Wheel, _) => MouseButton::None,
        (_, 0) => MouseButton::Left,
        (_, 1) => MouseButton::Middle,
        (_, 2) => MouseButton::Right,
        (_, 3) => MouseButton::Back,
        (_, 4) => MouseButton::Forward,
        (_, n) => return Err(Failure::new("INPUT", format!("unknown mouse button {n}"))),
    };
    Ok(MouseInput {
        action,
        button,
        x: m.x,
        y: m.y,
        wheel_x: m.wheel_x,
        wheel_y: m.wheel_y,
    })
}

#[tauri::command]
async fn mouse(app: State<'_, Arc<App>>, mut event: PageMouse) -> Result<(), Failure> {
    if let (Some(px), Some(py)) = (event.page_x, event.page_y) {
        let fit = app.native().and_then(NativeView::fit);
        // Outside the drawn picture (the letterbox, or before the first frame): not the remote
        // screen, nothing to send.
        let Some((x, y)) = fit.and_then(|f| f.to_remote(px, py)) else {
            return Ok(());
        };
        (event.x, event.y) = (x, y);
    }
    command(&app, Command::Mouse(mouse_input(&event)?)).await
}

/// Where the page's stage is, in the webview's device pixels (`None`: the view is not shown).
#[tauri::command]
fn view_area(app: State<'_, Arc<App>>, area: Option<Area>) {
    if let Some(view) = app.native() {
        view.set_area(area);
    }
}

/// The native view's counters (`null` without one).
#[tauri::command]
fn view_state(app: State<'_, Arc<App>>) -> Option<view::Stats> {
    app.native().map(NativeView::stats)
}

/// Watches remote pixel (`x`, `y`) of the native view for the colour `rgb` (tests, benchmark).
#[tauri::command]
fn view_watch(app: State<'_, Arc<App>>, x: u32, y: u32, rgb: [u8; 3]) -> Result<(), Failure> {
    let view = app
        .native()
        .ok_or_else(|| Failure::new("NO_NATIVE_VIEW", "This app draws in the page."))?;
    view.watch(x, y, rgb);
    Ok(())
}

/// The native view as a child of the app's window, where there is one and it is not turned off.
fn open_view(window: &tauri::WebviewWindow) -> Option<NativeView> {
    if std::env::var("TECHNICIAN_VIEW").is_ok_and(|v| v == "webview") {
        return None;
    }
    match native_parent(window).and_then(NativeView::open) {
        Ok(view) => Some(view),
        Err(e) => {
            eprintln!("technician-app: no native view ({e:#}); the page draws the session");
            None
        }
    }
}

#[cfg(target_os = "linux")]
fn native_parent(window: &tauri::WebviewWindow) -> anyhow::Result<u32> {
    use raw_window_handle::{HasWindowHandle, RawWindowHandle};
    let handle = window
        .window_handle()
        .map_err(|e| anyhow::anyhow!("the window's handle: {e}"))?;
    match handle.as_raw() {
        RawWindowHandle::Xlib(h) => u32::try_from(h.window).map_err(anyhow::Error::from),
        RawWindowHandle::Xcb(h) => Ok(h.window.get()),
        other => anyhow::bail!("not an X11 window ({other:?})"),
    }
}

#[cfg(not(target_os = "linux"))]
fn native_parent(_: &tauri::WebviewWindow) -> anyhow::Result<u32> {
    anyhow::bail!("no native view on this platform yet")
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
    command(&app, Command::SwitchMonitor(monitor_id)).await
}

#[tauri::command]
async fn set_frame_rate(app: State<'_, Arc<App>>, frame_rate: u16) -> Result<(), Failure> {
    if !(1..=60).contains(&frame_rate) {
        return Err(Failure::new(
            "INPUT",
            "The frame rate is 1 to 60 per second.",
        ));
    }
    command(&app, Command::SetFrameRate(frame_rate)).await
}

#[tauri::command]
async fn request_keyframe(app: State<'_, Arc<App>>) -> Result<(), Failure> {
    command(&app, Command::Keyframe).await
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
        view: OnceLock::new(),
    });
    let result = tauri::Builder::default()
        .manage(app)
        .setup(|tauri_app| {
            let app = tauri_app.state::<Arc<App>>();
            let view = tauri_app
                .get_webview_window("main")
                .and_then(|w| open_view(&w));
            let _ = app.view.set(view);
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            defaults,
            sign_in,
            devices,
            connect,
            mouse,
            key,
            switch_monitor,
            set_frame_rate,
            request_keyframe,
            leave,
            view_area,
            view_state,
            view_watch,
        ])
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("technician-app: {e}");
        std::process::exit(1);
    }
}
