//! The web console in headless Chromium (Debian's, through chromedriver), against a relay in-process
//! over real TLS (the relay's development CA installed in the browser's certificate database): the
//! owner switches recording on; a session of the real streamer agent is recorded; its files are
//! listed; one plays (time advances, a seek lands) and downloads intact; a member under the default
//! policy gets no controls and is refused by the server, then can play once the policy allows; links
//! expire after 10 minutes and cannot be changed; another team's ids are refused. Screenshots of each
//! page are written to `target/console-screenshots/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use relay::store::{PlaybackPolicy, UserRole};
use serde_json::json;
use system_tests::webdriver::{trust_ca_for_chromium, Driver};
use system_tests::TestRelay;
use technician::Event;

mod console_common;

use console_common::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_console_records_plays_downloads_and_guards_recordings() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&dir.path().join("relay"), 0).await;
    let base = format!("https://{}", relay.addr);
    let acme = relay
        .store
        .create_team("acme", "owner@acme.example", "Olivia Owner", PASSWORD)
        .await
        .unwrap()
        .team
        .id;
    relay
        .store
        .add_user(
            &acme,
            "max@acme.example",
            "Max Member",
            UserRole::Member,
            PASSWORD,
        )
        .await
        .unwrap();
    let other = relay
        .store
        .create_team("other", "owner@other.example", "Otto", PASSWORD)
        .await
        .unwrap()
        .team
        .id;
    let home = dir.path().join("home");
    trust_ca_for_chromium(&home, &relay.ca()).unwrap();
    let driver = Driver::chromium(&home).await.unwrap();
    let page = driver
        .open_chromium(&dir.path().join("profile"))
        .await
        .unwrap();

    // The owner switches recording on for unattended access.
    page.goto(&format!("{base}/console/sign-in")).await.unwrap();
    shot(&page, "1-sign-in").await;
    sign_in(&page, &base, "owner@acme.example").await;
    page.goto(&format!("{base}/console/settings"))
        .await
        .unwrap();
    let on = page
        .script(
            "return document.getElementById('record_unattended').checked;",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(on, false, "recording starts off");
    page.click("#record_unattended").await.unwrap();
    page.script(
        "document.getElementById('time_zone').value = 'Europe/Paris';",
        json!([]),
    )
    .await
    .unwrap();
    page.click("#save").await.unwrap();
    page.wait_text(".saved", Duration::from_secs(10), |t| {
        t.contains("Settings saved")
    })
    .await
    .unwrap();
    shot(&page, "2-settings").await;
    let saved = relay.store.team_settings(&acme).await.unwrap().unwrap();
    assert!(saved.record_unattended);
    assert_eq!(saved.time_zone, "Europe/Paris");

    // A recorded session appears, with its files: the technician changes the frame rate after
    // 2 s (a second part) and writes a chat line.
    let mut live = LiveSession::start(&relay, &acme, dir.path()).await;
    assert!(live.watch(2).await.is_none(), "the session went on");
    live.session
        .commands
        .send(technician::Command::SetFrameRate(10))
        .await
        .unwrap();
    live.session
        .commands
        .send(technician::Command::Chat(
            "Hello <b>there</b>, checking your printer".into(),
        ))
        .await
        .unwrap();
    assert!(live.watch(3).await.is_none(), "the session went on");
    let session = live.end(&relay).await;
    page.goto(&format!("{base}/console/sessions"))
        .await
        .unwrap();
    let row = page
        .wait_text(
            &format!("tr[data-session='{session}']"),
            Duration::from_secs(10),
            |t| t.contains("Front desk PC") && t.contains("Uploaded"),
        )
        .await
        .unwrap();
    // Times in the team's zone, named: the relay's clock reads 08:00 UTC.
    assert!(
        row.contains("Olivia Owner") && row.contains("2027-01-15 09:00:00 CET"),
        "{row}"
    );
    assert!(page
        .visible_text("main .muted.small")
        .await
        .unwrap()
        .unwrap()
        .contains("Times in Europe/Paris"));
    shot(&page, "3-sessions").await;
    page.click(&format!("tr[data-session='{session}'] a.rec-link"))
        .await
        .unwrap();
    let files = relay.store.recording_files(&session).await.unwrap();
    assert!(!files.is_empty());
    let table = page
        .wait_text("table.files", Duration::from_secs(10), |t| {
            t.contains("session start")
        })
        .await
        .unwrap();
    assert!(
        page.visible_text("main h2")
            .await
            .unwrap()
            .unwrap()
            .contains(&format!("Monitor 1: {}", files[0].monitor_name)),
        "{table}"
    );
    // Monitors are numbered from 1 and named by the platform (X11: its RandR name).
    assert!(!files[0].monitor_name.is_empty() && files[0].monitor_name != "0");

    // The page names the computer and the technician, has the chat as it was written (text, not
    // markup) and a way back to the list.
    assert_eq!(
        page.visible_text("#technician").await.unwrap().unwrap(),
        "Olivia Owner"
    );
    assert_eq!(
        page.visible_text("#device").await.unwrap().unwrap(),
        "Front desk PC"
    );
    let chat = page.visible_text("#chat").await.unwrap().unwrap();
    assert!(
        chat.contains("Olivia Owner") && chat.contains("Hello <b>there</b>, checking your printer"),
        "{chat}"
    );
    assert_eq!(
        page.script(
            "return document.querySelectorAll('#chat b').length;",
            json!([])
        )
        .await
        .unwrap(),
        0
    );
    assert!(page
        .visible_text("#files-moved")
        .await
        .unwrap()
        .unwrap()
        .contains("No file crossed"));
    assert_eq!(
        page.script(
            "return document.getElementById('back').getAttribute('href');",
            json!([])
        )
        .await
        .unwrap(),
        "/console/sessions"
    );

    // The monitor's two parts play as one recording: one timeline with the boundary marked; the
    // second part follows the first by itself, and a seek lands across parts.
    let parts: Vec<_> = files
        .iter()
        .filter(|f| f.monitor_key == files[0].monitor_key)
        .collect();
    assert_eq!(
        parts.len(),
        2,
        "a session-start part and a frame-rate part: {files:?}"
    );
    page.click("button.play-monitor").await.unwrap();
    let t = player_time_passes(&page, 1.0).await;
    assert!(t > 1.0, "currentTime stayed at {t}");
    let timeline = page
        .script(
            "const t = document.getElementById('timeline');
             return [Number(t.max), document.querySelectorAll('#marks .mark').length,
                     document.getElementById('player-title').textContent];",
            json!([]),
        )
        .await
        .unwrap();
    let whole: f64 = parts
        .iter()
        .map(|f| f.duration_ms.unwrap() as f64 / 1000.0)
        .sum();
    assert!(
        (timeline[0].as_f64().unwrap() - whole).abs() < 0.01,
        "{timeline}"
    );
    assert_eq!(timeline[1], 1, "one boundary between two parts: {timeline}");
    assert!(
        timeline[2].as_str().unwrap().ends_with("part 1 of 2"),
        "{timeline}"
    );
    shot(&page, "4-session-playing").await;
    // Near the end of the first part: the second follows.
    let first = parts[0].duration_ms.unwrap() as f64 / 1000.0;
    page.script(
        "const v = document.getElementById('player'); v.currentTime = Math.max(0, arguments[0] - 0.3);",
        json!([first]),
    )
    .await
    .unwrap();
    page.wait_text("#player-title", Duration::from_secs(15), |t| {
        t.ends_with("part 2 of 2")
    })
    .await
    .unwrap();
    let t = player_time_passes(&page, 0.5).await;
    assert!(t > 0.5, "the second part plays: {t}");
    // A seek on the timeline back into the first part lands there.
    page.script(
        "const t = document.getElementById('timeline'); t.value = String(arguments[0]);
         t.dispatchEvent(new Event('change'));",
        json!([first / 2.0]),
    )
    .await
    .unwrap();
    page.wait_text("#player-title", Duration::from_secs(15), |t| {
        t.ends_with("part 1 of 2")
    })
    .await
    .unwrap();
    let landed = player_time(&page).await;
    assert!(
        (landed - first / 2.0).abs() < 1.0,
        "the seek landed at {landed} of {first}"
    );
    // The audit trail has one play per part for that viewing (seeking back is the same viewing),
    // and no link issued for drawing or playing: links are logged when copied or asked for.
    let trail = |action: relay::store::audit::Action| {
        let relay = &relay;
        let acme = acme.clone();
        async move {
            relay
                .store
                .audit_events(
                    &acme,
                    &relay::store::audit::AuditFilter {
                        action: Some(action),
                        limit: 1000,
                        ..Default::default()
                    },
                )
                .await
                .unwrap()
        }
    };
    let played = trail(relay::store::audit::Action::FilePlayed).await;
    let mut played_files: Vec<&str> = played.iter().map(|e| e.object.as_str()).collect();
    played_files.sort_unstable();
    let mut part_ids: Vec<&str> = parts.iter().map(|f| f.id.as_str()).collect();
    part_ids.sort_unstable();
    assert_eq!(played_files, part_ids, "one play per part: {played:?}");
    assert!(trail(relay::store::audit::Action::LinkIssued)
        .await
        .is_empty());
    // The audit log names a recording by its computer, its session's time and part, linked.
    page.goto(&format!("{base}/console/audit")).await.unwrap();
    let object = page
        .script(
            "const a = document.querySelector('#audit a.object');
             return [a.textContent, a.getAttribute('href')];",
            json!([]),
        )
        .await
        .unwrap();
    assert!(
        object[0].as_str().unwrap().starts_with(
            "Recording of the session with Front desk PC, 2027-01-15 09:00:00 CET, monitor"
        ),
        "{object}"
    );
    assert_eq!(object[1], format!("/console/sessions/{session}"));
    page.goto(&format!("{base}/console/sessions/{session}"))
        .await
        .unwrap();
    page.click("button.play-monitor").await.unwrap();
    let t = player_time_passes(&page, 0.5).await;
    assert!(t > 0.5, "plays again: {t}");
    let landed = page
        .script_async(
            "const done = arguments[0]; const v = document.getElementById('player');
             v.pause(); v.addEventListener('seeked', () => done(v.currentTime), { once: true });
             v.currentTime = 0.5;",
            json!([]),
        )
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    assert!((landed - 0.5).abs() < 0.2, "the seek landed at {landed}");

    // It downloads intact, with a meaningful name, through the console, which issues the link
    // when the button is used.
    let href = page
        .script(
            &format!("return document.querySelector(\"tr[data-file='{}'] a.download\").getAttribute('href');", files[0].id),
            json!([]),
        )
        .await
        .unwrap();
    let download = href.as_str().unwrap().to_owned();
    assert_eq!(
        download,
        format!("/console/recordings/{}/download", files[0].id)
    );
    let got = fetch(&page, "GET", &download).await;
    assert_eq!(got["status"], 200, "{got}");
    assert_eq!(got["sha256"].as_str(), files[0].sha256.as_deref());
    assert!(
        got["disposition"].as_str().unwrap().contains(&format!(
            "Front-desk-PC_2027-01-15_09-00-00_monitor-{}_part-1.mp4",
            files[0].monitor_name
        )),
        "{got}"
    );

    // Links stop working 10 minutes after they were issued; changed ones never work.
    let issued = fetch(
        &page,
        "POST",
        &format!("/api/v1/recordings/{}/links", files[0].id),
    )
    .await;
    let old_download = issued["json"]["download_url"].as_str().unwrap().to_owned();
    let src_before = page
        .script("return document.getElementById('player').src;", json!([]))
        .await
        .unwrap();
    relay.clock.advance(Duration::from_secs(10 * 60 + 1));
    let got = fetch(&page, "GET", &old_download).await;
    assert_eq!(
        (
            got["status"].as_u64(),
            got["json"]["error"]["code"].as_str()
        ),
        (Some(410), Some("LINK_EXPIRED"))
    );
    // The page left open past those 10 minutes still plays and downloads: each click gets
    // fresh links.
    page.click(&format!("tr[data-file='{}'] button.play", files[0].id))
        .await
        .unwrap();
    let t = player_time_passes(&page, 1.0).await;
    assert!(t > 1.0, "the open page's player stayed at {t}");
    let src_after = page
        .script("return document.getElementById('player').src;", json!([]))
        .await
        .unwrap();
    assert_ne!(src_before, src_after, "a fresh link");
    assert_eq!(fetch(&page, "GET", &download).await["status"], 200);
    let fresh = fetch(
        &page,
        "POST",
        &format!("/api/v1/recordings/{}/links", files[0].id),
    )
    .await;
    assert_eq!(fresh["status"], 200, "{fresh}");
    let play = fresh["json"]["play_url"].as_str().unwrap().to_owned();
    assert_eq!(fetch(&page, "GET", &play).await["status"], 200);
    let tampered = play.replace("/play?", "/download?");
    assert_eq!(fetch(&page, "GET", &tampered).await["status"], 403);

    // A member, under the default policy (Owner only): no controls, and the server refuses.
    page.click("#sign-out").await.unwrap();
    sign_in(&page, &base, "max@acme.example").await;
    page.goto(&format!("{base}/console/sessions/{session}"))
        .await
        .unwrap();
    page.wait_text("#not-allowed", Duration::from_secs(10), |t| {
        t.contains("Owner only")
    })
    .await
    .unwrap();
    let controls = page
        .script(
            "return document.querySelectorAll('button.play, a.download, button.copy').length;",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(controls, 0);
    shot(&page, "5-session-member").await;
    let refused = fetch(
        &page,
        "POST",
        &format!("/api/v1/recordings/{}/links", files[0].id),
    )
    .await;
    assert_eq!(refused["status"], 403, "{refused}");
    let listed = fetch(
        &page,
        "GET",
        &format!("/api/v1/sessions/{session}/recordings"),
    )
    .await;
    assert_eq!(listed["json"]["may_play"], false);
    assert!(listed["json"]["files"][0].get("play_url").is_none());

    // After the owner lets members play, the member can.
    let mut s = relay.store.team_settings(&acme).await.unwrap().unwrap();
    s.playback_unattended = PlaybackPolicy::Members;
    relay.store.set_team_settings(&acme, &s).await.unwrap();
    page.goto(&format!("{base}/console/sessions/{session}"))
        .await
        .unwrap();
    page.click(&format!("tr[data-file='{}'] button.play", files[0].id))
        .await
        .unwrap();
    let t = player_time_passes(&page, 0.5).await;
    assert!(t > 0.5, "the member's player stayed at {t}");

    // Another team sees none of it.
    page.click("#sign-out").await.unwrap();
    sign_in(&page, &base, "owner@other.example").await;
    let got = fetch(&page, "GET", &format!("/console/sessions/{session}")).await;
    assert_eq!(got["status"], 404);
    let got = fetch(
        &page,
        "GET",
        &format!("/api/v1/sessions/{session}/recordings"),
    )
    .await;
    assert_eq!(got["status"], 404);
    let got = fetch(
        &page,
        "POST",
        &format!("/api/v1/recordings/{}/links", files[0].id),
    )
    .await;
    assert_eq!(got["status"], 404);
    assert!(relay.store.sessions(&other).await.unwrap().is_empty());
    page.goto(&format!("{base}/console/team")).await.unwrap();
    shot(&page, "6-team-other").await;

    page.close().await.unwrap();
    drop(driver);
    relay.stop().await;
}

/// The Recording column tells where each session's recording stands, in the browser and the API
/// alike: `Recording` while live, `Uploaded` after, `Failed` after storage failed mid-session; the
/// session's page says what the state means.
#[tokio::test(flavor = "multi_thread")]
async fn the_recording_column_tells_recording_uploaded_and_failed() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(&dir.path().join("relay"), 0).await;
    let base = format!("https://{}", relay.addr);
    let acme = relay
        .store
        .create_team("acme", "owner@acme.example", "Olivia Owner", PASSWORD)
        .await
        .unwrap()
        .team
        .id;
    let mut settings = relay.store.team_settings(&acme).await.unwrap().unwrap();
    settings.record_unattended = true;
    relay
        .store
        .set_team_settings(&acme, &settings)
        .await
        .unwrap();
    let home = dir.path().join("home");
    trust_ca_for_chromium(&home, &relay.ca()).unwrap();
    let driver = Driver::chromium(&home).await.unwrap();
    let page = driver
        .open_chromium(&dir.path().join("profile"))
        .await
        .unwrap();
    sign_in(&page, &base, "owner@acme.example").await;
    let token = relay
        .store
        .sign_in("owner@acme.example", PASSWORD, 3_600_000)
        .await
        .unwrap()
        .unwrap()
        .token;
    let api_state = |id: String| {
        let (addr, ca, token) = (relay.addr.clone(), relay.ca(), token.clone());
        async move {
            let connector = relay_client::Connector::trusting_ca_file(&ca).unwrap();
            let (status, body) = connector
                .api(&addr, "GET", "/api/v1/sessions", Some(&token), None)
                .await
                .unwrap();
            assert_eq!(status, 200);
            let row = body["sessions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s["id"] == id.as_str())
                .cloned()
                .unwrap();
            row["recording_state"].as_str().unwrap().to_owned()
        }
    };
    let column = |id: String, want: &'static str| {
        let page = &page;
        let base = base.clone();
        async move {
            page.goto(&format!("{base}/console/sessions"))
                .await
                .unwrap();
            page.wait_text(
                &format!("tr[data-session='{id}'] td:last-child"),
                Duration::from_secs(10),
                |t| t.trim() == want,
            )
            .await
            .unwrap_or_else(|e| panic!("the Recording column never read {want}: {e}"))
        }
    };

    // Live: recording.
    let mut live = LiveSession::start(&relay, &acme, dir.path()).await;
    assert!(live.watch(2).await.is_none());
    let id = live.session_id.clone();
    column(id.clone(), "Recording").await;
    assert_eq!(api_state(id.clone()).await, "recording");
    shot(&page, "states-1-recording").await;

    // Over: uploaded, and the session's page says what that means.
    let id = live.end(&relay).await;
    column(id.clone(), "Uploaded").await;
    assert_eq!(api_state(id.clone()).await, "uploaded");
    page.goto(&format!("{base}/console/sessions/{id}"))
        .await
        .unwrap();
    let sentence = page
        .wait_text("#recording-state", Duration::from_secs(10), |t| {
            t.starts_with("Uploaded.")
        })
        .await
        .unwrap();
    assert!(
        sentence.contains("every frame the technician was shown"),
        "{sentence}"
    );

    // Storage turns read-only mid-session: the session ends RECORDING_FAILED, the column says
    // Failed, and the page says what may be missing.
    let mut live = LiveSession::start(&relay, &acme, dir.path()).await;
    assert!(live.watch(1).await.is_none());
    let recordings = dir.path().join("relay/recordings");
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&recordings)
        .status()
        .expect("running mount");
    assert!(
        status.success(),
        "this test mounts a read-only tmpfs: it needs root (CI runs as root)"
    );
    let unmount = Unmount(recordings);
    // A frame-rate change closes the first file, whose upload now fails.
    live.session
        .commands
        .send(technician::Command::SetFrameRate(5))
        .await
        .unwrap();
    let ended = live.watch(20).await;
    assert!(
        matches!(
            ended,
            Some(Event::Ended {
                reason: protocol::EndReason::RecordingFailed,
                ..
            })
        ),
        "{ended:?}"
    );
    let id = live.end(&relay).await;
    column(id.clone(), "Failed").await;
    assert_eq!(api_state(id.clone()).await, "failed");
    shot(&page, "states-2-failed").await;
    page.goto(&format!("{base}/console/sessions/{id}"))
        .await
        .unwrap();
    let sentence = page
        .wait_text("#recording-state", Duration::from_secs(10), |t| {
            t.starts_with("Failed.")
        })
        .await
        .unwrap();
    assert!(sentence.contains("may be missing"), "{sentence}");
    drop(unmount);
    page.close().await.unwrap();
    drop(driver);
    relay.stop().await;
}

/// Unmounts a file system mounted over a directory when dropped.
struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// The relay in a process of its own (`src/bin/crash-relay.rs`), which the test kills.
struct RelayProcess(std::process::Child);

impl RelayProcess {
    /// Starts it on `dir` and `port` (0 for any); returns it and its port once it serves.
    fn start(dir: &std::path::Path, port: u16) -> (Self, u16) {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_crash-relay"))
            .arg(dir)
            .arg(port.to_string())
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("the relay said it listens").unwrap();
        let port = line
            .strip_prefix("listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        (Self(child), port)
    }

    /// SIGKILL: no chance to close anything.
    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A relay killed mid-session (SIGKILL) and started again: the Recording column in the browser,
/// the API and the session's page say `Incomplete`, and what that means.
#[tokio::test(flavor = "multi_thread")]
async fn the_recording_column_tells_incomplete_after_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("relay");
    let (process, port) = RelayProcess::start(&data, 0);
    let addr = format!("localhost:{port}");
    let ca = data.join("tls/dev-ca.pem");
    let store = relay::store::Store::open(
        &relay::store::sqlite_url(&data),
        Arc::new(relay::SystemClock),
    )
    .await
    .unwrap();
    let acme = store
        .create_team("acme", "owner@acme.example", "Olivia Owner", PASSWORD)
        .await
        .unwrap()
        .team
        .id;
    let mut settings = store.team_settings(&acme).await.unwrap().unwrap();
    settings.record_unattended = true;
    store.set_team_settings(&acme, &settings).await.unwrap();

    let mut live = LiveSession::start_at(&addr, &ca, &store, &acme, dir.path()).await;
    assert!(live.watch(3).await.is_none(), "the session went on");
    let id = live.session_id.clone();
    process.kill();
    live.stop.cancel();
    let (_again, _) = RelayProcess::start(&data, port);

    let home = dir.path().join("home");
    trust_ca_for_chromium(&home, &ca).unwrap();
    let driver = Driver::chromium(&home).await.unwrap();
    let page = driver
        .open_chromium(&dir.path().join("profile"))
        .await
        .unwrap();
    let base = format!("https://{addr}");
    sign_in(&page, &base, "owner@acme.example").await;
    page.goto(&format!("{base}/console/sessions"))
        .await
        .unwrap();
    page.wait_text(
        &format!("tr[data-session='{id}'] td:last-child"),
        Duration::from_secs(10),
        |t| t.trim() == "Incomplete",
    )
    .await
    .unwrap();
    shot(&page, "states-3-incomplete").await;
    let token = store
        .sign_in("owner@acme.example", PASSWORD, 3_600_000)
        .await
        .unwrap()
        .unwrap()
        .token;
    let (status, body) = relay_client::Connector::trusting_ca_file(&ca)
        .unwrap()
        .api(&addr, "GET", "/api/v1/sessions", Some(&token), None)
        .await
        .unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["sessions"][0]["id"], id.as_str());
    assert_eq!(
        body["sessions"][0]["recording_state"], "incomplete",
        "{body}"
    );
    assert_eq!(
        body["sessions"][0]["end_reason"], "RELAY_RESTARTED",
        "{body}"
    );
    page.goto(&format!("{base}/console/sessions/{id}"))
        .await
        .unwrap();
    let sentence = page
        .wait_text("#recording-state", Duration::from_secs(10), |t| {
            t.starts_with("Incomplete.")
        })
        .await
        .unwrap();
    assert!(sentence.contains("may be missing"), "{sentence}");
    // The file cut by the crash plays up to its last synced fragment.
    let files = store.recording_files(&id).await.unwrap();
    assert!(
        files
            .iter()
            .any(|f| f.state == "incomplete" && f.frame_count.unwrap_or(0) > 0),
        "{files:?}"
    );
    page.close().await.unwrap();
    drop(driver);
    drop(live);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_owner_runs_a_team_in_the_console_and_the_audit_log_shows_it() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, acme) = acme_recording_unattended(dir.path()).await;
    let base = format!("https://{}", relay.addr);
    let home = dir.path().join("home");
    trust_ca_for_chromium(&home, &relay.ca()).unwrap();
    let driver = Driver::chromium(&home).await.unwrap();
    let owner = driver
        .open_chromium(&dir.path().join("owner"))
        .await
        .unwrap();

    // The owner invites an admin and a member; each accepts in a browser of their own.
    sign_in(&owner, &base, "owner@acme.example").await;
    let admin_link = invite_in_browser(&owner, &base, "ada@acme.example", "admin").await;
    let member_link = invite_in_browser(&owner, &base, "max@acme.example", "member").await;
    shot(&owner, "members-1-invited").await;
    let pending = table_rows(&owner, "#invitations").await;
    assert_eq!(pending.len(), 2, "{pending:?}");
    let admin = driver
        .open_chromium(&dir.path().join("admin"))
        .await
        .unwrap();
    accept_in_browser(&admin, &admin_link, "Ada Admin").await;
    let member = driver
        .open_chromium(&dir.path().join("member"))
        .await
        .unwrap();
    accept_in_browser(&member, &member_link, "Max Member").await;
    // A link works once: opened again it says so as it opens, without the form.
    member.goto(&member_link).await.unwrap();
    member
        .wait_text("main h1", Duration::from_secs(10), |t| {
            t == "This link does not work"
        })
        .await
        .unwrap();
    assert_eq!(
        member
            .script(
                "return document.querySelectorAll('#name, #password, #join').length;",
                json!([])
            )
            .await
            .unwrap(),
        0
    );

    // A recorded session; with "Owner only" the member and the admin are refused on the page, the
    // API and a direct file link.
    let session = record_a_session(&relay, &acme, dir.path()).await;
    let file = relay.store.recording_files(&session).await.unwrap()[0]
        .id
        .clone();
    let owners_links = fetch(&owner, "POST", &format!("/api/v1/recordings/{file}/links")).await;
    assert_eq!(owners_links["status"], 200);
    let play = owners_links["json"]["play_url"]
        .as_str()
        .unwrap()
        .to_owned();
    for page in [&admin, &member] {
        page.goto(&format!("{base}/console/sessions/{session}"))
            .await
            .unwrap();
        page.wait_text("#not-allowed", Duration::from_secs(10), |t| {
            t.contains("Owner only")
        })
        .await
        .unwrap();
        let api = fetch(page, "POST", &format!("/api/v1/recordings/{file}/links")).await;
        assert_eq!(api["status"], 403, "{api}");
        // The owner's link with another user in it no longer checks out.
        let ids = relay.store.team_users(&acme).await.unwrap();
        let someone = &ids.iter().find(|u| u.role != UserRole::Owner).unwrap().id;
        let owner_id = &ids.iter().find(|u| u.role == UserRole::Owner).unwrap().id;
        let forged = play.replace(&format!("u={owner_id}"), &format!("u={someone}"));
        assert_ne!(forged, play);
        assert_eq!(fetch(page, "GET", &forged).await["status"], 403);
    }
    shot(&member, "members-2-refused").await;

    // An admin cannot widen "Owner only"; the owner can: "Admins and Owner" lets the admin play,
    // not the member.
    admin
        .goto(&format!("{base}/console/settings"))
        .await
        .unwrap();
    // The admin is offered only the choices an admin may make...
    let offered = admin
        .script(
            "return Array.from(document.querySelectorAll('#playback_unattended option')).map((o) => o.value);",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(
        offered,
        json!(["owner"]),
        "an admin may only narrow who plays"
    );
    shot(&admin, "members-3-admin-choices").await;
    // ... and the server refuses the wider one anyway, sent by hand.
    let refused = admin
        .script_async(
            "const done = arguments[0];
             fetch('/api/v1/team/settings', { credentials: 'same-origin' }).then((r) => r.json()).then((s) => {
               s.playback_unattended = 'admins';
               return fetch('/api/v1/team/settings', { method: 'PUT', credentials: 'same-origin',
                 headers: { 'content-type': 'application/json' }, body: JSON.stringify(s) });
             }).then(async (r) => done([r.status, (await r.json()).error.code]));",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(refused, json!([403, "OWNER_ONLY"]));
    set_unattended_playback(&owner, &base, "admins", "Owner only → Admins and Owner").await;
    admin
        .goto(&format!("{base}/console/sessions/{session}"))
        .await
        .unwrap();
    admin
        .wait_text(
            &format!("tr[data-file='{file}']"),
            Duration::from_secs(10),
            |t| t.contains("Play"),
        )
        .await
        .unwrap();
    let links = fetch(&admin, "POST", &format!("/api/v1/recordings/{file}/links")).await;
    assert_eq!(links["status"], 200);
    let got = fetch(
        &admin,
        "GET",
        links["json"]["download_url"].as_str().unwrap(),
    )
    .await;
    assert_eq!(got["status"], 200);
    let still = fetch(&member, "POST", &format!("/api/v1/recordings/{file}/links")).await;
    assert_eq!(still["status"], 403);

    // The admin's page stays open while the owner narrows the policy again: Play then says why in
    // the file's row instead of playing a black player, and Download says so on its page.
    set_unattended_playback(&owner, &base, "owner", "Admins and Owner → Owner only").await;
    admin
        .click(&format!("tr[data-file='{file}'] button.play"))
        .await
        .unwrap();
    admin
        .wait_text(
            &format!("tr[data-file='{file}'] .refusal"),
            Duration::from_secs(10),
            |t| t.contains("playback policy does not let your role play"),
        )
        .await
        .unwrap();
    let download = fetch(
        &admin,
        "GET",
        &format!("/console/recordings/{file}/download"),
    )
    .await;
    assert_eq!(download["status"], 403, "{download}");
    shot(&admin, "members-3b-refused-on-open-page").await;

    // The member is in a live session when the owner removes them: their open page and the
    // session are cut off at once.
    let mut live = LiveSession::start_as(&relay, &acme, dir.path(), "max@acme.example").await;
    member
        .goto(&format!("{base}/console/sessions"))
        .await
        .unwrap();
    owner
        .goto(&format!("{base}/console/members"))
        .await
        .unwrap();
    owner
        .script("window.confirm = () => true;", json!([]))
        .await
        .unwrap();
    owner
        .click("tr[data-email='max@acme.example'] button.remove")
        .await
        .unwrap();
    owner
        .wait_text(".saved", Duration::from_secs(10), |t| {
            t.contains("Member removed")
        })
        .await
        .unwrap();
    shot(&owner, "members-4-removed").await;
    // The technician library reports the relay's refusal (CREDENTIAL_REVOKED) by closing the
    // session's events; the relay ends the session with that reason.
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        while live.session.events.recv().await.is_some() {}
    })
    .await;
    assert!(closed.is_ok(), "the removed member's session went on");
    let mut reason = None;
    for _ in 0..100 {
        reason = relay
            .store
            .session(&acme, &live.session_id)
            .await
            .unwrap()
            .and_then(|s| s.end_reason);
        if reason.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reason.as_deref(), Some("CREDENTIAL_REVOKED"));
    member
        .goto(&format!("{base}/console/sessions"))
        .await
        .unwrap();
    member
        .wait_text("main h1", Duration::from_secs(10), |t| {
            t == "Sign in to the console"
        })
        .await
        .unwrap();
    let gone = fetch(&member, "GET", "/api/v1/members").await;
    assert_eq!(gone["status"], 401);

    // The session's page shows the owner who downloaded its recordings.
    owner
        .goto(&format!("{base}/console/sessions/{session}"))
        .await
        .unwrap();
    let accesses = table_rows(&owner, "#accesses").await;
    assert!(
        accesses
            .iter()
            .any(|r| r[1] == "Ada Admin" && r[2] == "Downloaded" && r[3].contains("part")),
        "{accesses:?}"
    );

    // The audit log shows each step with actor and time, and its CSV matches the page.
    owner.goto(&format!("{base}/console/audit")).await.unwrap();
    let rows = table_rows(&owner, "#audit").await;
    shot(&owner, "members-5-audit").await;
    let has = |actor: &str, action: &str, object: &str| {
        rows.iter()
            .any(|r| r[1] == actor && r[3] == action && r[4].contains(object))
    };
    assert!(
        has("Olivia Owner", "member_invited", "ada@acme.example"),
        "{rows:?}"
    );
    assert!(has("Olivia Owner", "member_invited", "max@acme.example"));
    assert!(has("Ada Admin", "member_joined", "ada@acme.example"));
    assert!(has("Max Member", "member_joined", "max@acme.example"));
    assert!(has(
        "Olivia Owner",
        "settings_changed",
        "playback_unattended"
    ));
    assert!(has("Ada Admin", "recordings_viewed", &session));
    assert!(has("Ada Admin", "file_downloaded", &file));
    assert!(has("Olivia Owner", "member_removed", "max@acme.example"));
    assert!(
        rows.iter().all(|r| r[0].ends_with(" UTC")),
        "in the team's zone"
    );
    let csv = fetch(&owner, "GET", "/api/v1/audit.csv").await;
    assert_eq!(csv["status"], 200);
    let text = owner
        .script_async(
            "fetch('/api/v1/audit.csv', { credentials: 'same-origin' }).then((r) => r.text()).then(arguments[0]);",
            json!([]),
        )
        .await
        .unwrap();
    let csv = csv_rows(text.as_str().unwrap());
    assert_eq!(
        csv[0],
        [
            "Time",
            "Actor",
            "Actor kind",
            "Action",
            "Object",
            "Detail",
            "Client address"
        ]
    );
    // The same rows; the page names a session or a recording in words before its id, the CSV
    // keeps the id alone.
    let csv_rows = &csv[1..=rows.len().min(csv.len() - 1)];
    assert_eq!(csv_rows.len(), rows.len());
    for (c, r) in csv_rows.iter().zip(&rows) {
        for (n, (a, b)) in c.iter().zip(r).enumerate() {
            let same = if n == 4 {
                b.ends_with(a.as_str())
            } else {
                a == b
            };
            assert!(same, "the CSV is the page's rows: {c:?} against {r:?}");
        }
    }
    // The member's page, filtered by action, shows only that action.
    owner
        .goto(&format!("{base}/console/audit?action=member_removed"))
        .await
        .unwrap();
    let only = table_rows(&owner, "#audit").await;
    assert_eq!(only.len(), 1, "{only:?}");

    for page in [owner, admin, member] {
        page.close().await.unwrap();
    }
    drop(driver);
    let _ = live.end(&relay).await;
}

/// A page on another port of the relay's host is the same *site* to the browser, so the owner's
/// `SameSite=Strict` cookie goes with its forms: forms it auto-submits to every state-changing
/// console route, and requests it sends to the API, are refused (`ORIGIN_REFUSED`) and change
/// nothing; the console's own forms keep working.
#[tokio::test(flavor = "multi_thread")]
async fn forms_from_another_origin_of_the_same_site_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, acme) = acme_recording_unattended(dir.path()).await;
    let base = format!("https://{}", relay.addr);
    // The attacker's site: another HTTPS server on another port of the same host, with a
    // certificate the browser trusts (the relay's own), serving a blank page.
    let attacker = attacker_site(&relay.dir.join("tls")).await;
    let max = relay
        .store
        .add_user(
            &acme,
            "max@acme.example",
            "Max Member",
            UserRole::Member,
            PASSWORD,
        )
        .await
        .unwrap();
    let settings_before = relay.store.team_settings(&acme).await.unwrap().unwrap();
    let home = dir.path().join("home");
    trust_ca_for_chromium(&home, &relay.ca()).unwrap();
    let driver = Driver::chromium(&home).await.unwrap();
    let page = driver
        .open_chromium(&dir.path().join("profile"))
        .await
        .unwrap();
    sign_in(&page, &base, "owner@acme.example").await;

    let forms: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/console/settings".into(),
            vec![
                ("max_file_mb", "2048"),
                ("playback_unattended", "members"),
                ("playback_attended", "members"),
                ("time_zone", "UTC"),
            ],
        ),
        (
            "/console/members/invite".into(),
            vec![("email", "attacker@evil.example"), ("role", "admin")],
        ),
        (format!("/console/members/{}/remove", max), vec![]),
        (
            format!("/console/members/{}/role", max),
            vec![("role", "admin")],
        ),
        (format!("/console/members/{}/password-reset", max), vec![]),
        ("/console/team/deployment-code".into(), vec![]),
        ("/console/team/name".into(), vec![("name", "Pwned")]),
        (
            "/console/account/password".into(),
            vec![
                ("current_password", PASSWORD),
                ("new_password", "attacker-chosen-password"),
            ],
        ),
        ("/console/sign-out".into(), vec![]),
    ];
    let attacker_page = format!("https://{attacker}/");
    for (action, fields) in &forms {
        page.goto(&attacker_page).await.unwrap();
        page.script(
            "const [action, fields] = arguments;
             const f = document.createElement('form');
             f.method = 'post';
             f.action = action;
             for (const [k, v] of fields) {
               const i = document.createElement('input');
               i.name = k; i.value = v; f.appendChild(i);
             }
             document.body.appendChild(f);
             f.submit();",
            json!([format!("{base}{action}"), fields]),
        )
        .await
        .unwrap();
        let refused = page
            .wait_text("#origin-refused", Duration::from_secs(10), |t| {
                t.contains("nothing was changed")
            })
            .await;
        assert!(refused.is_ok(), "{action}: {refused:?}");
    }
    // The API from the attacker's page: a body-less POST needs no CORS preflight, so the browser
    // sends it with the cookie (a `no-cors` fetch cannot read the answer: the store tells).
    page.goto(&attacker_page).await.unwrap();
    for (method, path) in [
        ("POST", "/api/v1/deployment-codes".to_owned()),
        ("DELETE", format!("/api/v1/members/{}", max)),
        ("POST", "/api/v1/sign-out".to_owned()),
    ] {
        page.script_async(
            "const [method, url, done] = arguments;
             fetch(url, { method, mode: 'no-cors', credentials: 'include' })
               .then(() => done('sent'), (e) => done(String(e)));",
            json!([method, format!("{base}{path}")]),
        )
        .await
        .unwrap();
    }

    // Nothing changed.
    assert_eq!(
        relay.store.team_settings(&acme).await.unwrap().unwrap(),
        settings_before
    );
    let users = relay.store.team_users(&acme).await.unwrap();
    assert!(
        users
            .iter()
            .any(|u| u.id == max && u.role == UserRole::Member),
        "{users:?}"
    );
    assert!(relay
        .store
        .pending_invitations(&acme)
        .await
        .unwrap()
        .is_empty());
    assert!(relay
        .store
        .deployment_codes(&acme)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(relay.store.team_name(&acme).await.unwrap(), "acme");

    // The owner is still signed in, with the same password, and the console's own forms work.
    set_unattended_playback(&page, &base, "admins", "Owner only → Admins and Owner").await;
    page.goto(&format!("{base}/console/team")).await.unwrap();
    shot(&page, "csrf-refused-then-own-form").await;
    relay.stop().await;
}

/// A blank page over HTTPS on 127.0.0.1 (another port than the relay's), with the relay's own
/// certificate and key from `tls`: a page of the same site as the relay, as a sibling app's is.
async fn attacker_site(tls: &std::path::Path) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(tls.join("server.pem"))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(tls.join("server-key.pem")).unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let body =
                    "<!doctype html><title>Another app</title><p>Another app of the same site.</p>";
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = tls.write_all(answer.as_bytes()).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    addr
}
