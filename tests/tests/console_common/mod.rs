//! What the console's Chromium tests share: a recorded session of the real streamer agent seen by
//! the technician library, signing in, fetching from the page, reading tables and CSV, and joining
//! a team through an invitation in a browser.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use protocol::SessionTarget;
use relay::store::RecordingState;
use serde_json::json;
use streamer_agent::agent::{self, AgentConfig, Mode, X11Platform};
use system_tests::webdriver::AppWindow;
use system_tests::{TestRelay, XDisplay};
use technician::{Event, Technician};
use tokio_util::sync::CancellationToken;

pub const PASSWORD: &str = "correct horse battery staple";

pub async fn shot(page: &AppWindow, name: &str) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(format!("{name}.png")),
        page.screenshot().await.unwrap(),
    )
    .unwrap();
}

pub async fn sign_in(page: &AppWindow, base: &str, email: &str) {
    page.goto(&format!("{base}/console/sign-in")).await.unwrap();
    page.type_into("#email", email).await.unwrap();
    page.type_into("#password", PASSWORD).await.unwrap();
    page.click("#sign-in").await.unwrap();
    page.wait_text("main h1", Duration::from_secs(10), |t| t == "Sessions")
        .await
        .unwrap();
}

/// Waits up to 15 s for the page's player to pass `seconds`; returns where it got to.
pub async fn player_time_passes(page: &AppWindow, seconds: f64) -> f64 {
    let started = std::time::Instant::now();
    let mut t = 0.0;
    while started.elapsed() < Duration::from_secs(15) && t <= seconds {
        t = player_time(page).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t
}

/// Where the page's player is in the part it plays, in seconds.
pub async fn player_time(page: &AppWindow) -> f64 {
    page.script(
        "return document.getElementById('player').currentTime;",
        json!([]),
    )
    .await
    .unwrap()
    .as_f64()
    .unwrap()
}

/// `fetch` from the page (same origin, the page's cookie): the status, and for 2xx the SHA-256 of
/// the body and its Content-Disposition.
pub async fn fetch(page: &AppWindow, method: &str, url: &str) -> serde_json::Value {
    page.script_async(
        "const [method, url, done] = arguments;
         fetch(url, { method, credentials: 'same-origin' }).then(async (r) => {
           const out = { status: r.status, disposition: r.headers.get('content-disposition') };
           const body = await r.arrayBuffer();
           const hash = await crypto.subtle.digest('SHA-256', body);
           out.sha256 = Array.from(new Uint8Array(hash)).map((b) => b.toString(16).padStart(2, '0')).join('');
           out.size = body.byteLength;
           try { out.json = JSON.parse(new TextDecoder().decode(body)); } catch (e) {}
           done(out);
         }, (e) => done({ status: 0, error: String(e) }));",
        json!([method, url]),
    )
    .await
    .unwrap()
}

/// Records a session of the real streamer agent on a virtual display: about 4 seconds of video.
/// A recorded session of the real streamer agent on a virtual display, seen by the technician
/// library, kept live until [`LiveSession::end`].
pub struct LiveSession {
    pub session_id: String,
    pub session: technician::Session,
    pub stop: CancellationToken,
    pub agent: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// The painted window: the display's content while it lives.
    _paint: x11rb::rust_connection::RustConnection,
    _display: XDisplay,
}

impl LiveSession {
    pub async fn start(relay: &TestRelay, team_id: &str, dir: &std::path::Path) -> Self {
        Self::start_at(&relay.addr, &relay.ca(), &relay.store, team_id, dir).await
    }

    /// [`LiveSession::start`] with another technician of the team.
    pub async fn start_as(
        relay: &TestRelay,
        team_id: &str,
        dir: &std::path::Path,
        technician: &str,
    ) -> Self {
        Self::start_full(
            &relay.addr,
            &relay.ca(),
            &relay.store,
            team_id,
            dir,
            technician,
        )
        .await
    }

    /// [`LiveSession::start`] on a relay given by its address, CA and store.
    pub async fn start_at(
        addr: &str,
        ca: &std::path::Path,
        store: &relay::store::Store,
        team_id: &str,
        dir: &std::path::Path,
    ) -> Self {
        Self::start_full(addr, ca, store, team_id, dir, "owner@acme.example").await
    }

    pub async fn start_full(
        addr: &str,
        ca: &std::path::Path,
        store: &relay::store::Store,
        team_id: &str,
        dir: &std::path::Path,
        technician: &str,
    ) -> Self {
        let display = XDisplay::start(640, 480);
        let paint = display.paint(0, 0, 320, 480, (200, 40, 150));
        let code = store
            .create_deployment_code(team_id, 600_000)
            .await
            .unwrap();
        let stop = CancellationToken::new();
        let (notices, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move { while rx.recv().await.is_some() {} });
        let credential_file = dir.join(format!("device-{}.credential", code));
        let agent = tokio::spawn(agent::run(
            AgentConfig {
                relay: addr.to_owned(),
                ca_file: ca.to_path_buf(),
                mode: Mode::Unattended {
                    credential_file,
                    deployment_code: Some(code),
                },
                device_name: "Front desk PC".into(),
                display: Some(display.name.clone()),
                frame_rate: 15,
                announced_version: None,
                downloads: None,
                chat_input: None,
            },
            Arc::new(X11Platform {
                display: Some(display.name.clone()),
            }),
            notices,
            stop.clone(),
        ));
        let mut tech = Technician::sign_in(addr, ca, technician, PASSWORD)
            .await
            .unwrap();
        let device = loop {
            let devices = tech.devices().await.unwrap();
            if let Some(d) = devices.into_iter().find(|d| d.online) {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut session = tech
            .connect(SessionTarget::Device {
                device_id: device.id,
            })
            .await
            .map_err(|(_, e)| e)
            .unwrap();
        let Some(Event::Started {
            session_id,
            recorded,
            ..
        }) = session.events.recv().await
        else {
            panic!("no start")
        };
        assert!(recorded);
        Self {
            session_id,
            session,
            stop,
            agent,
            _paint: paint,
            _display: display,
        }
    }

    /// Watches the session for `secs` seconds; returns how it ended, if it did.
    pub async fn watch(&mut self, secs: u64) -> Option<Event> {
        let until = tokio::time::Instant::now() + Duration::from_secs(secs);
        while tokio::time::Instant::now() < until {
            match tokio::time::timeout_at(until, self.session.events.recv()).await {
                Ok(Some(e @ Event::Ended { .. })) => return Some(e),
                // The events closed without an end (the relay refused the connection).
                Ok(None) => return None,
                _ => {}
            }
        }
        None
    }

    /// Leaves the session and waits until its recording is settled.
    pub async fn end(self, relay: &TestRelay) -> String {
        let LiveSession {
            session_id,
            mut session,
            stop,
            agent,
            ..
        } = self;
        drop(session.commands);
        while session.events.recv().await.is_some() {}
        let _ = session.task.await;
        for _ in 0..200 {
            if relay.store.recording_state(&session_id).await.unwrap()
                != Some(RecordingState::Recording)
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.cancel();
        let _ = agent.await;
        session_id
    }
}

pub async fn record_a_session(relay: &TestRelay, team_id: &str, dir: &std::path::Path) -> String {
    let mut live = LiveSession::start(relay, team_id, dir).await;
    assert!(live.watch(4).await.is_none(), "the session went on");
    live.end(relay).await
}

/// The cells of a table's body rows, as the page shows them.
pub async fn table_rows(page: &AppWindow, css: &str) -> Vec<Vec<String>> {
    let rows = page
        .script(
            "return Array.from(document.querySelectorAll(arguments[0] + ' tbody tr'))
               .map((tr) => Array.from(tr.children).map((td) => td.textContent));",
            json!([css]),
        )
        .await
        .unwrap();
    serde_json::from_value(rows).unwrap()
}

/// RFC 4180 rows (quoted fields, doubled quotes), with the relay's `'` guard against formulas
/// taken off again.
pub fn csv_rows(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let (mut row, mut field, mut quoted, mut chars) =
        (Vec::new(), String::new(), false, text.chars().peekable());
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => row.push(std::mem::take(&mut field)),
            ('\r', false) => {}
            ('\n', false) => {
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
            }
            (c, _) => field.push(c),
        }
    }
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .map(|f| match f.strip_prefix('\'') {
                    Some(rest) if rest.starts_with(['=', '+', '-', '@']) => rest.to_owned(),
                    _ => f,
                })
                .collect()
        })
        .collect()
}

/// Joins a team through the invitation link in a browser of the invitee's own.
pub async fn accept_in_browser(page: &AppWindow, link: &str, name: &str) {
    page.goto(link).await.unwrap();
    // The page says which team, as whom, before anything is typed.
    page.wait_text("#offer", Duration::from_secs(10), |t| {
        t.contains("join acme as ") && t.contains("@acme.example")
    })
    .await
    .unwrap();
    page.type_into("#name", name).await.unwrap();
    page.type_into("#password", PASSWORD).await.unwrap();
    page.click("#join").await.unwrap();
    page.wait_text("main h1", Duration::from_secs(10), |t| t == "Sessions")
        .await
        .unwrap();
}

/// Invites `email` as `role` on the owner's Members page; returns the link shown to copy.
pub async fn invite_in_browser(page: &AppWindow, base: &str, email: &str, role: &str) -> String {
    page.goto(&format!("{base}/console/members")).await.unwrap();
    page.type_into("#invite-email", email).await.unwrap();
    page.script(
        "document.getElementById('invite-role').value = arguments[0];",
        json!([role]),
    )
    .await
    .unwrap();
    page.click("#invite").await.unwrap();
    page.wait_text(".saved", Duration::from_secs(10), |t| t.contains(email))
        .await
        .unwrap();
    page.script(
        "return document.getElementById('invitation-link').value;",
        json!([]),
    )
    .await
    .unwrap()
    .as_str()
    .unwrap()
    .to_owned()
}

/// A relay under `dir` with the team "acme" (owner `owner@acme.example`, "Olivia Owner") recording
/// unattended sessions; returns the relay and the team's id.
pub async fn acme_recording_unattended(dir: &std::path::Path) -> (TestRelay, String) {
    let relay = TestRelay::start(&dir.join("relay"), 0).await;
    let acme = relay
        .store
        .create_team("acme", "owner@acme.example", "Olivia Owner", PASSWORD)
        .await
        .unwrap()
        .team
        .id;
    let mut s = relay.store.team_settings(&acme).await.unwrap().unwrap();
    s.record_unattended = true;
    relay.store.set_team_settings(&acme, &s).await.unwrap();
    (relay, acme)
}

/// The owner sets who may play unattended sessions' recordings on the Settings page (`owner`,
/// `admins` or `members`) and waits for the change `history` (e.g. "Owner only → Admins and
/// Owner") in the settings history.
pub async fn set_unattended_playback(page: &AppWindow, base: &str, policy: &str, history: &str) {
    page.goto(&format!("{base}/console/settings"))
        .await
        .unwrap();
    page.script(
        "document.getElementById('playback_unattended').value = arguments[0];",
        json!([policy]),
    )
    .await
    .unwrap();
    page.click("#save").await.unwrap();
    page.wait_text("#settings-history", Duration::from_secs(10), |t| {
        t.contains(history)
    })
    .await
    .unwrap();
}
