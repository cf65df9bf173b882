//! Harnesses for tests across crates: a relay in-process on 127.0.0.1:0, and a virtual X display.
//!
//! The display is Xorg with the dummy video driver rather than Xvfb: Xvfb here cannot change its
//! resolution or define several monitors through RandR, and the streamer must be tested on both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use relay::{Config, ManualClock, Relay};
use tokio_util::sync::CancellationToken;

/// An HTTP client. The workspace's reqwest has rustls without a built-in crypto provider (the
/// relay's S3 client brings it so, on ring, the provider everything here uses), and a client cannot
/// be made until a process-wide provider is installed: this installs ring's first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

pub mod content;
pub mod link;
pub mod load;
pub mod ocr;
pub mod webdriver;
pub mod wine;
pub mod xclip;
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt as _, CreateWindowAux};
use x11rb::rust_connection::RustConnection;

/// A virtual X display for one test.
#[derive(Debug)]
pub struct XDisplay {
    /// Such as `:57`.
    pub name: String,
    child: Child,
    _dir: tempfile::TempDir,
}

const DUMMY_CONF: &str = r#"Section "Device"
    Identifier "dummy"
    Driver "dummy"
    VideoRam 256000
EndSection
Section "Monitor"
    Identifier "monitor"
    HorizSync 5.0-1000.0
    VertRefresh 5.0-200.0
EndSection
Section "Screen"
    Identifier "screen"
    Device "dummy"
    Monitor "monitor"
    DefaultDepth 24
    SubSection "Display"
        Depth 24
        Virtual 2048 2048
    EndSubSection
EndSection
"#;

/// Whether the X server named in a lock file is still running.
fn lock_is_live(lock: &Path) -> bool {
    std::fs::read_to_string(lock)
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

impl XDisplay {
    /// The X server's process id (benchmarks read its CPU time).
    pub fn server_pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts Xorg with the dummy driver on a free display number, at `width` x `height`.
    pub fn start(width: u16, height: u16) -> Self {
        // One start at a time in a process: two tests that both saw a number free would otherwise
        // both start a server on it, and the loser's connection would reach the winner's server
        // (two tests on one screen, each changing its mode under the other).
        static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = STARTING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Self::start_unlocked(width, height)
    }

    fn start_unlocked(width: u16, height: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("dummy.conf");
        std::fs::write(&conf, DUMMY_CONF).unwrap();
        for n in 40..200u32 {
            let lock = PathBuf::from(format!("/tmp/.X{n}-lock"));
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{n}"));
            if lock.exists() && !lock_is_live(&lock) {
                // Left by a server that died without cleaning up: the number is free again.
                let _ = std::fs::remove_file(&lock);
                let _ = std::fs::remove_file(&socket);
            }
            if lock.exists() || socket.exists() {
                continue;
            }
            let child = Command::new("Xorg")
                .arg(format!(":{n}"))
                .args(["-config"])
                .arg(&conf)
                .args(["-noreset", "-nolisten", "tcp", "-logfile"])
                .arg(dir.path().join("Xorg.log"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("Xorg with the dummy driver (xserver-xorg-video-dummy) must be installed");
            let mut display = Self {
                name: format!(":{n}"),
                child,
                _dir: dir,
            };
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(15) {
                if let Ok(Some(_)) = display.child.try_wait() {
                    break; // Lost a race for this number: try the next.
                }
                if x11rb::connect(Some(&display.name)).is_ok() {
                    // Another process's server may have taken the number first: ours then
                    // exits at once, having found its lock file taken.
                    std::thread::sleep(Duration::from_millis(300));
                    if let Ok(Some(_)) = display.child.try_wait() {
                        break;
                    }
                    display.set_mode(width, height);
                    return display;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = display.child.kill();
            let _ = display.child.wait();
            return Self::start_unlocked(width, height);
        }
        panic!("no free X display number");
    }

    /// Runs xrandr on this display.
    pub fn xrandr(&self, args: &[&str]) -> String {
        let out = Command::new("xrandr")
            .env("DISPLAY", &self.name)
            .args(args)
            .output()
            .expect("xrandr (x11-xserver-utils)");
        assert!(
            out.status.success(),
            "xrandr {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Changes the screen's resolution (adding the mode when the driver lacks it).
    pub fn set_mode(&self, width: u16, height: u16) {
        let mode = format!("{width}x{height}");
        let (w, h) = (width.to_string(), height.to_string());
        let modes = self.xrandr(&[]);
        if !modes
            .lines()
            .any(|l| l.split_whitespace().next() == Some(mode.as_str()))
        {
            let (w1, w2, w3) = (
                (width + 8).to_string(),
                (width + 16).to_string(),
                (width + 24).to_string(),
            );
            let (h1, h2, h3) = (
                (height + 1).to_string(),
                (height + 2).to_string(),
                (height + 3).to_string(),
            );
            self.xrandr(&[
                "--newmode",
                &mode,
                "60.00",
                &w,
                &w1,
                &w2,
                &w3,
                &h,
                &h1,
                &h2,
                &h3,
            ]);
            self.xrandr(&["--addmode", "DUMMY0", &mode]);
        }
        self.xrandr(&["--output", "DUMMY0", "--mode", &mode]);
    }

    /// Splits the screen into two side-by-side monitors, `left` and `right`.
    pub fn split_monitors(&self, width: u16, height: u16) {
        let half = width / 2;
        self.xrandr(&[
            "--setmonitor",
            "left",
            &format!("{half}/100x{height}/100+0+0"),
            "DUMMY0",
        ]);
        self.xrandr(&[
            "--setmonitor",
            "right",
            &format!("{half}/100x{height}/100+{half}+0"),
            "none",
        ]);
    }

    /// Paints a rectangle of the desktop in one colour, with a window that stays until the returned
    /// connection is dropped.
    pub fn paint(
        &self,
        x: i16,
        y: i16,
        width: u16,
        height: u16,
        rgb: (u8, u8, u8),
    ) -> RustConnection {
        let (conn, screen) = x11rb::connect(Some(&self.name)).unwrap();
        let pixel = (u32::from(rgb.0) << 16) | (u32::from(rgb.1) << 8) | u32::from(rgb.2);
        content::top_window(
            &conn,
            screen,
            (x, y, width, height),
            CreateWindowAux::new().background_pixel(pixel),
        )
        .unwrap();
        conn.flush().unwrap();
        // A round trip, so that the window is on screen when this returns.
        conn.get_input_focus().unwrap().reply().unwrap();
        conn
    }
}

impl Drop for XDisplay {
    fn drop(&mut self) {
        // SIGTERM lets Xorg remove its lock file and socket, so the display number can be used again;
        // SIGKILL only if it does not stop.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(3) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A relay in-process with a fresh data directory.
#[derive(Debug)]
pub struct TestRelay {
    /// The data directory.
    pub dir: PathBuf,
    /// `localhost:PORT`.
    pub addr: String,
    /// Its store.
    pub store: relay::store::Store,
    /// Its clock (starts at 2027-01-15 08:00 UTC; moves only when a test moves it).
    pub clock: ManualClock,
    shutdown: CancellationToken,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The real streamer agent (X11, unattended) of a team, on a display, online.
#[derive(Debug)]
pub struct TestStreamer {
    /// Its device's id.
    pub device_id: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl TestStreamer {
    /// Registers a streamer called "Test PC" in team `team_id` with a fresh deployment code
    /// (its credential kept in `dir`), sharing X display `display` at `frame_rate`, and waits
    /// until it is connected.
    pub async fn start(
        relay: &TestRelay,
        team_id: &str,
        display: &str,
        dir: &Path,
        frame_rate: u16,
    ) -> Self {
        use streamer_agent::agent::{self, AgentConfig, Mode, Notice, X11Platform};
        let code = relay
            .store
            .create_deployment_code(team_id, 3_600_000)
            .await
            .unwrap();
        let config = AgentConfig {
            relay: relay.addr.clone(),
            ca_file: relay.ca(),
            mode: Mode::Unattended {
                credential_file: dir.join("device.credential"),
                deployment_code: Some(code),
            },
            device_name: "Test PC".into(),
            display: Some(display.into()),
            frame_rate,
            announced_version: None,
            downloads: Some(dir.join("Downloads")),
            chat_input: None,
        };
        let (tx, mut notices) = tokio::sync::mpsc::unbounded_channel();
        let stop = CancellationToken::new();
        let platform = Arc::new(X11Platform {
            display: Some(display.into()),
        });
        let task = tokio::spawn(agent::run(config, platform, tx, stop.clone()));
        assert_eq!(
            tokio::time::timeout(Duration::from_secs(20), notices.recv())
                .await
                .unwrap(),
            Some(Notice::Connected)
        );
        tokio::spawn(async move { while notices.recv().await.is_some() {} });
        let device_id = relay
            .store
            .devices(team_id)
            .await
            .unwrap()
            .into_iter()
            .find(|d| d.name == "Test PC")
            .expect("the streamer's device")
            .id;
        Self {
            device_id,
            stop,
            task,
        }
    }

    /// Stops it and checks that it ended without an error.
    pub async fn stop(self) {
        self.stop.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// A technician's left click at `(x, y)` on the streamed picture: move, press, release.
pub async fn click(tech: &mut relay_client::Connection, x: u16, y: u16) {
    use protocol::{Message, MouseAction, MouseButton, MouseInput};
    for (action, button) in [
        (MouseAction::Move, MouseButton::None),
        (MouseAction::Down, MouseButton::Left),
        (MouseAction::Up, MouseButton::Left),
    ] {
        tech.send(&Message::MouseInput(MouseInput {
            action,
            button,
            x,
            y,
            wheel_x: 0,
            wheel_y: 0,
        }))
        .await
        .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

impl TestRelay {
    /// Starts a relay on `dir` (created if new), on `port` (0 for any).
    pub async fn start(dir: &Path, port: u16) -> Self {
        Self::start_with(dir, port, |_| {}).await
    }

    /// Starts a relay on `dir` (created if new), on `port` (0 for any), with `tweak` applied to its
    /// settings (second-scale limits, say).
    pub async fn start_with(dir: &Path, port: u16, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut config = Config {
            data_dir: dir.to_path_buf(),
            listen: format!("127.0.0.1:{port}").parse().unwrap(),
            drain_timeout_ms: 3000,
            ..Config::default()
        };
        tweak(&mut config);
        let clock = ManualClock::new(1_800_000_000_000);
        let relay = Relay::prepare(config, Arc::new(clock.clone()))
            .await
            .unwrap();
        let store = relay.store().clone();
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let addr = format!("localhost:{}", listener.local_addr().unwrap().port());
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(relay.serve(listener, shutdown.clone()));
        Self {
            dir: dir.to_path_buf(),
            addr,
            store,
            clock,
            shutdown,
            served,
        }
    }

    /// The development CA to trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("tls/dev-ca.pem")
    }

    /// The team "acme" and its owner "Owner" (`owner@acme.example`, `password`), recording the
    /// kinds of session asked for.
    pub async fn acme(
        &self,
        password: &str,
        record_attended: bool,
        record_unattended: bool,
    ) -> relay::store::NewTeam {
        let team = self
            .store
            .create_team("acme", "owner@acme.example", "Owner", password)
            .await
            .unwrap();
        if record_attended || record_unattended {
            let mut settings = self
                .store
                .team_settings(&team.team.id)
                .await
                .unwrap()
                .unwrap();
            settings.record_attended = record_attended;
            settings.record_unattended = record_unattended;
            self.store
                .set_team_settings(&team.team.id, &settings)
                .await
                .unwrap();
        }
        team
    }

    /// A technician connection signed in as `email`, past its handshake.
    pub async fn technician(&self, email: &str, password: &str) -> relay_client::Connection {
        let token = self
            .store
            .sign_in(email, password, 3_600_000)
            .await
            .unwrap()
            .expect("the account signs in")
            .token;
        let mut tech = relay_client::Connector::trusting_ca_file(&self.ca())
            .unwrap()
            .connect(&self.addr)
            .await
            .unwrap();
        tech.handshake(
            protocol::Role::Technician,
            protocol::ProductVersion::new(3, 5, 8, 0),
            protocol::Credential::TechnicianToken { token },
        )
        .await
        .unwrap();
        tech
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Stops it and waits for the drain.
    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.served)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
}

/// A technician session's next event that `want` picks out, within `within` (`None` when none
/// came); the events passed over are returned too, video excepted. Panics when the session ends.
pub async fn until<T>(
    session: &mut technician::Session,
    within: Duration,
    mut want: impl FnMut(&technician::Event) -> Option<T>,
) -> (Option<T>, Vec<technician::Event>) {
    let deadline = tokio::time::Instant::now() + within;
    let mut passed = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, session.events.recv()).await {
            Ok(Some(e)) => {
                if let Some(t) = want(&e) {
                    return (Some(t), passed);
                }
                assert!(
                    !matches!(
                        e,
                        technician::Event::Ended { .. } | technician::Event::Lost { .. }
                    ),
                    "the session ended: {e:?}"
                );
                if !matches!(e, technician::Event::Video(_)) {
                    passed.push(e);
                }
            }
            Ok(None) => panic!("the session's events ended"),
            Err(_) => return (None, passed),
        }
    }
}

/// The details of a team's audit events of one action, sorted (at most 100).
pub async fn audit_details(
    relay: &TestRelay,
    team_id: &str,
    action: relay::store::audit::Action,
) -> Vec<String> {
    let filter = relay::store::audit::AuditFilter {
        action: Some(action),
        limit: 100,
        ..Default::default()
    };
    let mut details: Vec<String> = relay
        .store
        .audit_events(team_id, &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.detail)
        .collect();
    details.sort();
    details
}
