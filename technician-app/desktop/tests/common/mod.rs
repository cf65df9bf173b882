//! The stage for driving the app's real window: a relay in-process with recording on, the real
//! streamer agent sharing a virtual Xorg display, and the app started by tauri-driver on a display of
//! its own (xvfb-run). Shared by the window test and the glass-to-glass benchmark.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use relay::Config;
use streamer_agent::agent::{self, AgentConfig, Mode, Notice, X11Platform};
pub use system_tests::webdriver::{AppWindow, TauriDriver};
use system_tests::{TestRelay, XDisplay};
use tokio_util::sync::CancellationToken;

pub const EMAIL: &str = "ada@acme.example";
pub const PASSWORD: &str = "correct horse battery staple";

/// Where the native view's window is in the app's window.
#[derive(Debug, Clone, Copy)]
pub struct NativeViewRect {
    pub x: i16,
    pub y: i16,
    pub width: u16,
    pub height: u16,
}

/// Everything one app test needs, torn down in order when dropped.
pub struct Stage {
    pub window: AppWindow,
    pub driver: TauriDriver,
    pub relay: TestRelay,
    pub team_id: String,
    pub display: XDisplay,
    pub agent_stop: CancellationToken,
    pub agent: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub dir: tempfile::TempDir,
    /// The end user's side of the streamer's chat.
    pub chat: StreamerChat,
}

/// The end user's side of the streamer's chat: what they type (as on the streamer's terminal), and
/// each chat line the streamer showed them (who wrote it, `None` for their own, and the line).
pub struct StreamerChat {
    pub typed: tokio::sync::mpsc::Sender<String>,
    pub shown: tokio::sync::mpsc::UnboundedReceiver<(Option<String>, String)>,
}

/// Sets up the stage with a `width` x `height` streamer display and `tweak` applied to the relay's
/// settings, and signs the app in. The streamer's device is called "Test PC".
pub async fn stage(
    width: u16,
    height: u16,
    frame_rate: u16,
    tweak: impl FnOnce(&mut Config),
) -> Stage {
    let display = XDisplay::start(width, height);
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start_with(&dir.path().join("relay"), 0, tweak).await;
    let team = relay
        .store
        .create_team("acme", EMAIL, "Ada", PASSWORD)
        .await
        .unwrap();
    let team_id = team.team.id;
    let mut settings = relay.store.team_settings(&team_id).await.unwrap().unwrap();
    settings.record_unattended = true;
    relay
        .store
        .set_team_settings(&team_id, &settings)
        .await
        .unwrap();
    let code = relay
        .store
        .create_deployment_code(&team_id, 3_600_000)
        .await
        .unwrap();

    let (agent_stop, agent, chat) = start_named_agent(
        "Test PC",
        &relay.addr,
        &relay.ca(),
        dir.path(),
        &display.name,
        code,
        frame_rate,
    );

    let driver = TauriDriver::start().await.unwrap();
    let app = PathBuf::from(env!("CARGO_BIN_EXE_technician-app"));
    let args = vec![
        "--relay".to_owned(),
        relay.addr.clone(),
        "--ca".to_owned(),
        relay.ca().display().to_string(),
        "--email".to_owned(),
        EMAIL.to_owned(),
        "--config-dir".to_owned(),
        dir.path().join("config").display().to_string(),
    ];
    let window = driver.open(&app, &args).await.unwrap();
    window
        .wait_text("#signin-view h1", Duration::from_secs(30), |t| {
            t == "Sign in"
        })
        .await
        .unwrap();
    window.type_into("#password", PASSWORD).await.unwrap();
    window.click("#signin-button").await.unwrap();
    if let Err(e) = window
        .wait_text("#devices-view h1", Duration::from_secs(30), |t| {
            t == "Devices"
        })
        .await
    {
        let notice = window.visible_text("#notice").await.unwrap_or_default();
        panic!("sign-in did not reach the device list: {e}; notice: {notice:?}");
    }
    Stage {
        window,
        driver,
        relay,
        team_id,
        display,
        agent_stop,
        agent,
        dir,
        chat,
    }
}

impl Stage {
    /// Waits until the device list shows "Test PC" online, then connects to it.
    pub async fn connect_to_test_pc(&self) {
        self.window
            .wait_text("#device-rows", Duration::from_secs(30), |t| {
                t.lines()
                    .any(|l| l.contains("Test PC") && l.contains("Online"))
            })
            .await
            .unwrap();
        // Button rows are in list order; pick Test PC's.
        let clicked = self
            .window
            .script(
                "for (const tr of document.querySelectorAll('#device-rows tr')) {
                   if (tr.cells[0].innerText === 'Test PC') { tr.querySelector('button').click(); return true; }
                 }
                 return false;",
                serde_json::json!([]),
            )
            .await
            .unwrap();
        assert_eq!(clicked, true);
    }

    /// Waits until the view has drawn at least `n` frames.
    pub async fn wait_frames(&self, n: u64) {
        let started = std::time::Instant::now();
        loop {
            let v = self
                .window
                .script("return window.__view.frames;", serde_json::json!([]))
                .await
                .unwrap();
            if v.as_u64().unwrap_or(0) >= n {
                return;
            }
            let errors = self
                .window
                .script("return window.__view.decodeErrors;", serde_json::json!([]))
                .await
                .unwrap();
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the view drew {v} frames in 30 s (decoder errors: {errors})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The app's native view as its display shows it: the view window's place in the app's
    /// window and the screen's pixels where it is (BGRX, read from the root window, so whatever
    /// covers it would show).
    pub async fn native_view_on_screen(&self) -> (NativeViewRect, Vec<u8>) {
        native_view_on_screen(&self.window, &self.driver).await
    }

    /// Calls the app's command `cmd` with `args` as the page would, and gives its answer.
    pub async fn invoke(&self, cmd: &str, args: serde_json::Value) -> serde_json::Value {
        invoke(&self.window, cmd, args).await
    }
}

/// Starts the real streamer agent, unattended, called "Test PC": registered with `code` (its
/// credential kept in `dir`), sharing X display `display` at `frame_rate`, through the relay at
/// `relay` trusting `ca`. Stop it with the token.
pub fn start_agent(
    relay: &str,
    ca: &std::path::Path,
    dir: &std::path::Path,
    display: &str,
    code: String,
    frame_rate: u16,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let (stop, agent, _) = start_named_agent("Test PC", relay, ca, dir, display, code, frame_rate);
    (stop, agent)
}

/// [`start_agent`] for a device called `name`, with the end user's side of its chat.
pub fn start_named_agent(
    name: &str,
    relay: &str,
    ca: &std::path::Path,
    dir: &std::path::Path,
    display: &str,
    code: String,
    frame_rate: u16,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
    StreamerChat,
) {
    let stop = CancellationToken::new();
    let (notices, mut notices_rx) = tokio::sync::mpsc::unbounded_channel();
    let (shown_tx, shown) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Some(n) = notices_rx.recv().await {
            if let Notice::Chat(from, line) = n {
                let _ = shown_tx.send((from, line));
            }
        }
    });
    let (typed, chat_input) = agent::ChatInput::new();
    let agent = tokio::spawn(agent::run(
        AgentConfig {
            relay: relay.to_owned(),
            ca_file: ca.to_path_buf(),
            mode: Mode::Unattended {
                credential_file: dir.join("device.credential"),
                deployment_code: Some(code),
            },
            device_name: name.into(),
            display: Some(display.to_owned()),
            frame_rate,
            announced_version: None,
            downloads: Some(dir.join("Downloads")),
            chat_input: Some(chat_input),
        },
        Arc::new(X11Platform {
            display: Some(display.to_owned()),
        }),
        notices,
        stop.clone(),
    ));
    (stop, agent, StreamerChat { typed, shown })
}

/// Calls the app's command `cmd` with `args` as the page would, and gives its answer.
pub async fn invoke(window: &AppWindow, cmd: &str, args: serde_json::Value) -> serde_json::Value {
    let v = window
        .script_async(
            "const done = arguments[arguments.length - 1];
             window.__TAURI__.core.invoke(arguments[0], arguments[1])
               .then((r) => done({ ok: r === undefined ? null : r }), (e) => done({ error: e }));",
            serde_json::json!([cmd, args]),
        )
        .await
        .unwrap();
    assert!(v.get("error").is_none(), "{cmd}: {v}");
    v["ok"].clone()
}

/// The app's native view as its display shows it: the view window's place in the app's window and
/// the screen's pixels where it is (BGRX, read from the root window, so whatever covers it would
/// show).
pub async fn native_view_on_screen(
    window: &AppWindow,
    driver: &TauriDriver,
) -> (NativeViewRect, Vec<u8>) {
    use x11rb::connection::Connection as _;
    use x11rb::protocol::xproto::{ConnectionExt as _, ImageFormat};
    let view = window
        .script("return window.__view;", serde_json::json!([]))
        .await
        .unwrap();
    assert_eq!(view["mode"], "native", "the app draws in the page: {view}");
    let xid = u32::try_from(view["window"].as_u64().expect("the view's window")).unwrap();
    let display = driver.display().unwrap();
    let (conn, n) = x11rb::connect(Some(&display)).unwrap();
    let root = conn.setup().roots[n].root;
    let g = conn.get_geometry(xid).unwrap().reply().unwrap();
    let at = conn
        .translate_coordinates(xid, root, 0, 0)
        .unwrap()
        .reply()
        .unwrap();
    let img = conn
        .get_image(
            ImageFormat::Z_PIXMAP,
            root,
            at.dst_x,
            at.dst_y,
            g.width,
            g.height,
            !0,
        )
        .unwrap()
        .reply()
        .unwrap();
    let rect = NativeViewRect {
        x: g.x,
        y: g.y,
        width: g.width,
        height: g.height,
    };
    (rect, img.data)
}

impl Stage {
    /// Stops the app, the agent and the relay.
    pub async fn finish(self) {
        let _ = self.window.close().await;
        drop(self.driver);
        self.agent_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), self.agent).await;
        self.relay.stop().await;
    }
}
