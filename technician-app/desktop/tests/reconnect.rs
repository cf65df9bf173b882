//! The app's real window (tauri-driver) against a relay in a process of its own, so that it can be
//! killed without warning mid-session as a crash would: the view says the connection is lost
//! within 5 s (the last picture darkened, the view not moving), the app reconnects when the relay is
//! back and a new session works without restarting the app. On the way: a sign-in paused after
//! five wrong passwords gets that headline, a device coming online appears without Refresh, the
//! limit warning names the relay's real 2-minute limit, and each menu gives the keyboard back to
//! the remote screen. Last, an app trusting another CA gets the certificate's words.
//!
//! Its own `main` (no test harness): the same binary, started with `--relay-child DATA_DIR PORT
//! LIMIT_SECS`, is the relay process.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[cfg(target_os = "linux")]
mod common;

#[cfg(not(target_os = "linux"))]
fn main() {}

#[cfg(target_os = "linux")]
fn main() {
    linux::main()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::io::BufRead;
    use std::path::{Path, PathBuf};
    use std::process::{Child, Command, Stdio};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use system_tests::{TestRelay, XDisplay};
    use tokio_util::sync::CancellationToken;

    use super::common::{self, AppWindow, TauriDriver, EMAIL, PASSWORD};

    const LEFT: (u8, u8, u8) = (220, 40, 150);
    const RIGHT: (u8, u8, u8) = (30, 200, 90);
    /// The other team's owner, whose sign-in is paused.
    const BOB: &str = "bob@beta.example";
    const STAGE_RECT: &str = "const r = document.getElementById('stage').getBoundingClientRect();
         return [r.left, r.top, r.width, r.height];";

    pub fn main() {
        let args: Vec<String> = std::env::args().collect();
        if args.get(1).map(String::as_str) == Some("--relay-child") {
            return relay_child(&args[2..]);
        }
        // `cargo test` passes harness flags (`--nocapture`, filters): a filter that names
        // something else skips this test, as the harness would.
        if args
            .iter()
            .skip(1)
            .any(|a| !a.starts_with('-') && !"reconnect".contains(a.as_str()))
        {
            println!("test reconnect ... filtered out");
            return;
        }
        println!("running 1 test");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(the_app_survives_a_relay_crash_and_says_what_happens());
        println!("test the_app_survives_a_relay_crash_and_says_what_happens ... ok");
        println!("\ntest result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
    }

    /// The relay process: the relay library on DATA_DIR and 127.0.0.1:PORT, recorded sessions
    /// limited to LIMIT_SECS (warned 5 minutes before, so at once), `listening` when ready.
    fn relay_child(args: &[String]) {
        let data_dir = PathBuf::from(&args[0]);
        let port: u16 = args[1].parse().unwrap();
        let limit: u64 = args[2].parse().unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        runtime.block_on(async move {
            let config = relay::Config {
                data_dir,
                listen: format!("127.0.0.1:{port}").parse().unwrap(),
                max_recorded_session_secs: limit,
                ..relay::Config::default()
            };
            let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
            let relay = relay::Relay::prepare(config, Arc::new(relay::SystemClock))
                .await
                .unwrap();
            println!("listening");
            relay
                .serve(listener, CancellationToken::new())
                .await
                .unwrap();
        });
    }

    struct RelayProcess(Child);

    impl RelayProcess {
        fn start(data: &Path, port: u16) -> Self {
            let mut child = Command::new(std::env::current_exe().unwrap())
                .arg("--relay-child")
                .arg(data)
                .args([port.to_string(), "120".to_owned()])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufReader::new(child.stdout.take().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert_eq!(line.trim(), "listening", "the relay process did not start");
            Self(child)
        }

        /// SIGKILL: the process disappears, its connections with it.
        fn kill(mut self) {
            self.0.kill().unwrap();
            self.0.wait().unwrap();
        }
    }

    impl Drop for RelayProcess {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    async fn status(w: &AppWindow) -> String {
        w.visible_text("#session-status")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    async fn notice_title(w: &AppWindow) -> String {
        w.visible_text("#notice-title")
            .await
            .unwrap()
            .unwrap_or_default()
    }

    async fn sign_in(w: &AppWindow, email: &str, password: &str) {
        w.type_into("#email", email).await.unwrap();
        w.type_into("#password", password).await.unwrap();
        w.click("#signin-button").await.unwrap();
    }

    /// Waits until the notice's headline is `title` (after a fresh attempt hid the last one).
    async fn wait_title(w: &AppWindow, title: &str) -> String {
        let started = Instant::now();
        loop {
            let t = notice_title(w).await;
            if t == title {
                return w.visible_text("#notice").await.unwrap().unwrap_or_default();
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "headline {t:?}, not {title:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn active_element(w: &AppWindow) -> String {
        w.script("return document.activeElement.id;", serde_json::json!([]))
            .await
            .unwrap()
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The frame-rate menu's value.
    async fn frame_rate(w: &AppWindow) -> serde_json::Value {
        w.script(
            "return document.getElementById('frame-rate').value;",
            serde_json::json!([]),
        )
        .await
        .unwrap()
    }

    async fn frames(w: &AppWindow) -> u64 {
        w.script("return window.__view.frames;", serde_json::json!([]))
            .await
            .unwrap()
            .as_u64()
            .unwrap_or(0)
    }

    async fn wait_frames(w: &AppWindow, n: u64) {
        let started = Instant::now();
        while frames(w).await < n {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the view drew {} frames in 30 s",
                frames(w).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Whether the relay lists "Test PC" online, asked as a technician of the team would.
    async fn online(addr: &str, ca: &Path) -> bool {
        let Ok(mut tech) = technician::Technician::sign_in(addr, ca, EMAIL, PASSWORD).await else {
            return false;
        };
        tech.devices()
            .await
            .is_ok_and(|d| d.iter().any(|d| d.name == "Test PC" && d.online))
    }

    async fn the_app_survives_a_relay_crash_and_says_what_happens() {
        let display = XDisplay::start(1024, 768);
        let _left = display.paint(0, 0, 512, 768, LEFT);
        let _right = display.paint(512, 0, 512, 768, RIGHT);
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("relay");

        // The data first, with the relay in this process: two teams, recording on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let setup = TestRelay::start(&data, port).await;
        let team = setup
            .store
            .create_team("acme", EMAIL, "Ada", PASSWORD)
            .await
            .unwrap();
        let mut settings = setup
            .store
            .team_settings(&team.team.id)
            .await
            .unwrap()
            .unwrap();
        settings.record_unattended = true;
        setup
            .store
            .set_team_settings(&team.team.id, &settings)
            .await
            .unwrap();
        setup
            .store
            .create_team("beta", BOB, "Bob", PASSWORD)
            .await
            .unwrap();
        let code = setup
            .store
            .create_deployment_code(&team.team.id, 3_600_000)
            .await
            .unwrap();
        let (addr, ca) = (setup.addr.clone(), setup.ca());
        setup.stop().await;
        let relay = RelayProcess::start(&data, port);

        let driver = TauriDriver::start().await.unwrap();
        let app = PathBuf::from(env!("CARGO_BIN_EXE_technician-app"));
        let config = dir.path().join("config");
        let args = |ca: &Path| {
            vec![
                "--relay".to_owned(),
                addr.clone(),
                "--ca".to_owned(),
                ca.display().to_string(),
                "--config-dir".to_owned(),
                config.display().to_string(),
            ]
        };
        let w = driver.open(&app, &args(&ca)).await.unwrap();
        w.wait_text("#signin-view h1", Duration::from_secs(30), |t| {
            t == "Sign in"
        })
        .await
        .unwrap();

        // Five wrong passwords, then the right one: the headline is the pause, with its time.
        for _ in 0..5 {
            sign_in(&w, BOB, "not the password at all").await;
            wait_title(&w, "Sign-in failed").await;
            w.click("#notice-close").await.unwrap();
        }
        sign_in(&w, BOB, PASSWORD).await;
        let paused = wait_title(&w, "Sign-in is paused after too many wrong passwords").await;
        assert!(paused.contains("15 minutes"), "{paused}");
        assert!(
            !paused.contains("wrong, or your sign-in has expired"),
            "the pause reads as a wrong password: {paused}"
        );
        w.click("#notice-close").await.unwrap();

        // Signed in before the streamer exists: the list is empty, then shows it online by
        // itself.
        sign_in(&w, EMAIL, PASSWORD).await;
        w.wait_text("#devices-view h1", Duration::from_secs(30), |t| {
            t == "Devices"
        })
        .await
        .unwrap();
        w.wait_text("#no-devices", Duration::from_secs(10), |t| {
            t.contains("No devices")
        })
        .await
        .unwrap();
        let (agent_stop, agent) =
            common::start_agent(&addr, &ca, dir.path(), &display.name, code, 30);
        w.wait_text("#device-rows", Duration::from_secs(20), |t| {
            t.lines()
                .any(|l| l.contains("Test PC") && l.contains("Online"))
        })
        .await
        .unwrap();

        // The session: the warning names the relay's 2-minute limit.
        w.script(
            "document.querySelector('#device-rows button.connect').click();",
            serde_json::json!([]),
        )
        .await
        .unwrap();
        wait_frames(&w, 5).await;
        let warned = w
            .wait_text("#session-status", Duration::from_secs(10), |t| {
                t.contains("ends in")
            })
            .await
            .unwrap();
        assert!(
            warned.contains("the relay ends recorded sessions after 2 minutes")
                && !warned.contains("24 hours"),
            "{warned}"
        );
        let stage_rect = w.script(STAGE_RECT, serde_json::json!([])).await.unwrap();

        // Each menu gives the keyboard back: a choice from the frame-rate menu, Escape from the
        // monitor menu. A digit typed then does not go into the menu.
        assert_eq!(active_element(&w).await, "stage");
        w.click("#frame-rate option[value='15']").await.unwrap();
        let started = Instant::now();
        while active_element(&w).await != "stage" {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "focus stayed on {:?} after the frame-rate menu",
                active_element(&w).await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        w.press_keys("5").await.unwrap();
        let rate = frame_rate(&w).await;
        assert_eq!(rate, "15", "a typed digit went into the frame-rate menu");
        w.script(
            "document.getElementById('monitor').focus();",
            serde_json::json!([]),
        )
        .await
        .unwrap();
        w.press_keys("\u{E00C}").await.unwrap(); // Escape
        assert_eq!(
            active_element(&w).await,
            "stage",
            "after Escape in the monitor menu"
        );
        assert!(
            status(&w).await.contains("ends in"),
            "the warning holds the status line"
        );

        // The relay dies: the view says so within 5 s, darkened, and does not move.
        let picture = frames(&w).await;
        assert!(picture > 0);
        relay.kill();
        let killed = Instant::now();
        let lost = w
            .wait_text("#session-status", Duration::from_secs(5), |t| {
                t.contains("Connection lost")
            })
            .await
            .unwrap();
        println!("lost shown {:?} after the kill: {lost}", killed.elapsed());
        assert_eq!(
            w.script(STAGE_RECT, serde_json::json!([])).await.unwrap(),
            stage_rect,
            "the lost connection moved the stage"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (view, px) = common::native_view_on_screen(&w, &driver).await;
        let i = ((usize::from(view.height) / 2) * usize::from(view.width)
            + usize::from(view.width) / 4)
            * 4;
        let dark = [px[i + 2], px[i + 1], px[i]];
        let want = [LEFT.0, LEFT.1, LEFT.2].map(|c| (u16::from(c) * 2 / 5) as u8);
        assert!(
            dark.iter().zip(want).all(|(a, b)| a.abs_diff(b) <= 30),
            "the last picture is not darkened: {dark:?} (want about {want:?})"
        );

        // Back: the app reconnects by itself and offers the device again; the streamer
        // reconnects too, and a new session works in the same window.
        let relay = RelayProcess::start(&data, port);
        let back = w
            .wait_text("#session-status", Duration::from_secs(30), |t| {
                t.contains("reachable again")
            })
            .await
            .unwrap();
        assert!(back.contains("Connect to Test PC again"), "{back}");
        let started = Instant::now();
        while !online(&addr, &ca).await {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the streamer did not come back"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        w.click("#status-actions button.primary").await.unwrap();
        wait_frames(&w, 5).await;
        let now = status(&w).await;
        let events = w
            .script("return window.__view.events;", serde_json::json!([]))
            .await
            .unwrap();
        assert!(!now.contains("Connection lost"), "{now}; events: {events}");
        w.wait_text("#recording-indicator", Duration::from_secs(10), |t| {
            t.contains("Recording")
        })
        .await
        .unwrap();
        // The frame rate chosen for the device before the crash is remembered.
        let rate = frame_rate(&w).await;
        assert_eq!(rate, "15", "the device's frame rate was not remembered");
        w.click("#leave").await.unwrap();
        w.wait_text("#devices-view h1", Duration::from_secs(15), |t| {
            t == "Devices"
        })
        .await
        .unwrap();
        w.close().await.unwrap();

        // An app that trusts another CA: the certificate's words, with what to do.
        let other = tempfile::tempdir().unwrap();
        let other_ca = relay::tls::ensure_dev_ca(other.path(), &["localhost".into()])
            .unwrap()
            .ca_cert;
        let w = driver.open(&app, &args(&other_ca)).await.unwrap();
        w.wait_text("#signin-view h1", Duration::from_secs(30), |t| {
            t == "Sign in"
        })
        .await
        .unwrap();
        // The remembered address and e-mail are filled in.
        let filled = w
            .script(
                "return [document.getElementById('relay').value, document.getElementById('email').value];",
                serde_json::json!([]),
            )
            .await
            .unwrap();
        assert_eq!(filled, serde_json::json!([addr, EMAIL]));
        w.type_into("#password", PASSWORD).await.unwrap();
        w.click("#signin-button").await.unwrap();
        let untrusted = wait_title(&w, "The relay's certificate is not trusted").await;
        assert!(
            untrusted.contains("--ca") && untrusted.contains("CERTIFICATE"),
            "{untrusted}"
        );
        w.close().await.unwrap();

        agent_stop.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), agent).await;
        drop(relay);
        // Two sessions, each its own row: the one the crash cut (ended at the restart, its
        // recording incomplete) and the new one, left by the technician.
        let after = TestRelay::start(&data, 0).await;
        let mut sessions = after.store.sessions(&team.team.id).await.unwrap();
        sessions.sort_by_key(|s| s.started_at);
        let ends: Vec<Option<&str>> = sessions.iter().map(|s| s.end_reason.as_deref()).collect();
        assert_eq!(sessions.len(), 2, "{sessions:?}");
        assert_eq!(ends[1], Some("TECHNICIAN_LEFT"), "{sessions:?}");
        assert!(ends[0].is_some(), "{sessions:?}");
        after.stop().await;
    }
}
