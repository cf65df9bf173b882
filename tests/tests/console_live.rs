//! The console stays right while it is open, in headless Chromium against a relay in-process over
//! real TLS: Active sessions shows a new session without a reload and an admin ends it (the
//! technician is told why, its recording closes); the session's page says how it ended in words
//! and numbers its monitors from 1; the player's speed and keys; the Sessions page's filters and
//! CSV; deployment codes listed and revoked, the attended key; the time-zone search; a real 404;
//! a dead share link opened in the browser; an ended sign-in said on an open page; phone width.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod console_common;

use std::time::Duration;

use console_common::*;
use protocol::EndReason;
use relay::store::{RecordingState, UserRole};
use serde_json::json;
use system_tests::webdriver::{trust_ca_for_chromium, AppWindow, Driver};
use technician::Event;

const WAIT: Duration = Duration::from_secs(15);

/// The text of `url` fetched from the page (same origin, the page's cookie).
async fn fetch_text(page: &AppWindow, url: &str) -> (u64, String) {
    let v = page
        .script_async(
            "const [url, done] = arguments;
             fetch(url, { credentials: 'same-origin' }).then(async (r) => done([r.status, await r.text()]),
               (e) => done([0, String(e)]));",
            json!([url]),
        )
        .await
        .unwrap();
    (v[0].as_u64().unwrap(), v[1].as_str().unwrap().to_owned())
}

async fn number(page: &AppWindow, script: &str) -> f64 {
    page.script(script, json!([]))
        .await
        .unwrap()
        .as_f64()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_stays_right_while_it_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let (relay, acme) = acme_recording_unattended(dir.path()).await;
    let base = format!("https://{}", relay.addr);
    relay
        .store
        .add_user(
            &acme,
            "ada@acme.example",
            "Ada Admin",
            UserRole::Admin,
            PASSWORD,
        )
        .await
        .unwrap();
    let home = dir.path().join("home");
    trust_ca_for_chromium(&home, &relay.ca()).unwrap();
    let driver = Driver::chromium(&home).await.unwrap();
    let owner = driver
        .open_chromium(&dir.path().join("owner"))
        .await
        .unwrap();
    let admin = driver
        .open_chromium(&dir.path().join("admin"))
        .await
        .unwrap();
    sign_in(&owner, &base, "owner@acme.example").await;
    sign_in(&admin, &base, "ada@acme.example").await;

    // Active sessions, open before the session starts, shows it without a reload.
    admin.goto(&format!("{base}/console/active")).await.unwrap();
    admin
        .wait_text("#session-list", WAIT, |t| {
            t.contains("No session is active now")
        })
        .await
        .unwrap();
    admin
        .script("window.stillThisPage = true;", json!([]))
        .await
        .unwrap();
    let mut live = LiveSession::start(&relay, &acme, dir.path()).await;
    admin
        .wait_text("#session-list", WAIT, |t| t.contains("Front desk PC"))
        .await
        .unwrap();
    assert_eq!(
        admin
            .script("return window.stillThisPage === true;", json!([]))
            .await
            .unwrap(),
        true,
        "the list changed without the page reloading"
    );
    shot(&admin, "live-1-active").await;
    // The refresh says when, by the relay's clock in the team's zone (UTC here), as every time.
    admin
        .wait_text("#refresh-status", WAIT, |t| {
            t.starts_with("Updated at 20") && t.contains(" UTC; updates by itself")
        })
        .await
        .unwrap();

    // The admin ends it: the technician is told why, and the recording closes normally.
    admin
        .script("window.confirm = () => true;", json!([]))
        .await
        .unwrap();
    admin.click("button.end-session").await.unwrap();
    admin
        .wait_text(".saved", WAIT, |t| t.contains("The session was ended"))
        .await
        .unwrap();
    match live.watch(15).await {
        Some(Event::Ended { reason, message }) => {
            assert_eq!(reason, EndReason::EndedByAdmin);
            assert!(message.contains("Ada Admin"), "{message}");
        }
        other => panic!("the technician saw {other:?}"),
    }
    let session = live.end(&relay).await;
    assert_eq!(
        relay.store.recording_state(&session).await.unwrap(),
        Some(RecordingState::Uploaded)
    );
    admin
        .wait_text("#session-list", WAIT, |t| {
            t.contains("No session is active now")
        })
        .await
        .unwrap();

    // Its page says how it ended in words, and numbers its monitor from 1 with its name.
    owner
        .goto(&format!("{base}/console/sessions/{session}"))
        .await
        .unwrap();
    owner
        .wait_text("#session-facts", WAIT, |t| {
            t.contains("An owner or admin ended it")
        })
        .await
        .unwrap();
    let heading = owner.visible_text("main h2").await.unwrap().unwrap();
    assert!(heading.starts_with("Monitor 1: "), "{heading}");

    // The player: speed from the menu, and keys to seek and change speed.
    let file = relay.store.recording_files(&session).await.unwrap()[0]
        .id
        .clone();
    owner
        .click(&format!("tr[data-file='{file}'] button.play"))
        .await
        .unwrap();
    assert!(player_time_passes(&owner, 0.3).await > 0.3);
    owner
        .script(
            "const s = document.getElementById('speed'); s.value = '2'; s.dispatchEvent(new Event('change'));",
            json!([]),
        )
        .await
        .unwrap();
    let rate = "return document.getElementById('player').playbackRate;";
    assert_eq!(number(&owner, rate).await, 2.0);
    owner.send_keys("#player-box", ">").await.unwrap();
    assert_eq!(number(&owner, rate).await, 4.0);
    owner.send_keys("#player-box", "<<<<<").await.unwrap();
    assert_eq!(number(&owner, rate).await, 0.5);
    owner.send_keys("#player-box", "\u{E010}").await.unwrap(); // End
    let at = number(
        &owner,
        "return document.getElementById('player').currentTime;",
    )
    .await;
    let duration = number(&owner, "return document.getElementById('player').duration;").await;
    assert!(
        duration > 2.0 && (duration - at).abs() < 0.3,
        "End went to {at} of {duration}"
    );
    owner.send_keys("#player-box", "\u{E011}").await.unwrap(); // Home
    let at = number(
        &owner,
        "return document.getElementById('player').currentTime;",
    )
    .await;
    assert!(at < 0.3, "Home went to {at}");
    owner.send_keys("#player-box", "\u{E014}").await.unwrap(); // right: 5 s, or the end
    let at = number(
        &owner,
        "return document.getElementById('player').currentTime;",
    )
    .await;
    assert!(
        at >= duration.min(5.0) - 0.3,
        "right went to {at} of {duration}"
    );
    shot(&owner, "live-2-player").await;

    // The Sessions page: filters, and the CSV of what it shows.
    owner
        .goto(&format!("{base}/console/sessions?range=7"))
        .await
        .unwrap();
    assert_eq!(table_rows(&owner, "#sessions").await.len(), 1);
    owner
        .goto(&format!("{base}/console/sessions?access=attended"))
        .await
        .unwrap();
    owner
        .wait_text("#no-sessions", WAIT, |t| t == "No sessions match.")
        .await
        .unwrap();
    owner
        .goto(&format!(
            "{base}/console/sessions?range=custom&from=2001-01-01&until=2001-01-31"
        ))
        .await
        .unwrap();
    owner
        .wait_text("#no-sessions", WAIT, |_| true)
        .await
        .unwrap();
    owner
        .goto(&format!("{base}/console/sessions?range=fortnight"))
        .await
        .unwrap();
    owner
        .wait_text("main .error", WAIT, |t| {
            t.contains("The range is 7, 30 or 90 days")
        })
        .await
        .unwrap();
    owner
        .goto(&format!("{base}/console/sessions"))
        .await
        .unwrap();
    let me = relay
        .store
        .team_users(&acme)
        .await
        .unwrap()
        .into_iter()
        .find(|u| u.role == UserRole::Owner)
        .unwrap()
        .id;
    owner
        .script(
            "document.getElementById('technician').value = arguments[0];
             document.getElementById('session-filters').submit();",
            json!([me]),
        )
        .await
        .unwrap();
    owner
        .wait_text("#sessions", WAIT, |t| t.contains("Olivia Owner"))
        .await
        .unwrap();
    let shown = table_rows(&owner, "#sessions").await;
    assert_eq!(shown.len(), 1);
    assert!(
        shown[0][4].contains("An owner or admin ended it"),
        "{shown:?}"
    );
    let csv_href = owner
        .script(
            "return document.getElementById('sessions-csv').getAttribute('href');",
            json!([]),
        )
        .await
        .unwrap();
    let csv_href = csv_href.as_str().unwrap();
    assert!(csv_href.contains(&format!("technician={me}")), "{csv_href}");
    let (status, csv) = fetch_text(&owner, csv_href).await;
    assert_eq!(status, 200);
    let rows = csv_rows(&csv);
    assert_eq!(rows.len(), 2, "{csv}");
    assert_eq!(rows[1][10], session);
    assert_eq!(rows[1][8], "An owner or admin ended it");
    assert_eq!(rows[1][9], "ENDED_BY_ADMIN");

    // Team page: a new deployment code is shown once with a copy button and listed by its start;
    // revoked, the list says so. The attended key is there to copy.
    owner.goto(&format!("{base}/console/team")).await.unwrap();
    owner.click("#new-code").await.unwrap();
    owner
        .wait_text(".saved", WAIT, |t| t.contains("New deployment code"))
        .await
        .unwrap();
    let code = owner
        .script(
            "return document.getElementById('deployment-code').value;",
            json!([]),
        )
        .await
        .unwrap();
    let code = code.as_str().unwrap().to_owned();
    let codes = table_rows(&owner, "#deployment-codes").await;
    assert_eq!(
        codes.len(),
        2,
        "the session's device's code and the new one: {codes:?}"
    );
    assert_eq!(codes[0][0], format!("{}…", &code[..4]));
    assert_eq!(codes[0][2], "Olivia Owner");
    assert_eq!(codes[0][4], "Active");
    assert_eq!(
        codes[1][5], "1",
        "the session's computer registered with the older code"
    );
    owner
        .script("window.confirm = () => true;", json!([]))
        .await
        .unwrap();
    owner
        .click("#deployment-codes tbody tr:first-child button.danger")
        .await
        .unwrap();
    owner
        .wait_text(".saved", WAIT, |t| t.contains("Deployment code revoked"))
        .await
        .unwrap();
    assert_eq!(
        table_rows(&owner, "#deployment-codes").await[0][4],
        "Revoked"
    );
    let key = owner
        .script(
            "return document.getElementById('attended-key').value;",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(
        key.as_str(),
        relay.store.attended_key(&acme).await.unwrap().as_deref()
    );
    shot(&owner, "live-3-team").await;

    // The time-zone search picks a zone from a few letters.
    owner
        .goto(&format!("{base}/console/settings"))
        .await
        .unwrap();
    owner.type_into("#time_zone_search", "Paris").await.unwrap();
    let zone = owner
        .script(
            "return document.getElementById('time_zone').value;",
            json!([]),
        )
        .await
        .unwrap();
    assert_eq!(zone, "Europe/Paris");
    owner.click("#save").await.unwrap();
    owner.wait_text(".saved", WAIT, |_| true).await.unwrap();
    owner
        .goto(&format!("{base}/console/sessions"))
        .await
        .unwrap();
    owner
        .wait_text("main", WAIT, |t| t.contains("Times in Europe/Paris"))
        .await
        .unwrap();

    // A real 404 page, with the console around it.
    owner
        .goto(&format!("{base}/console/no-such-page"))
        .await
        .unwrap();
    owner
        .wait_text("#not-found", WAIT, |t| {
            t.contains("There is no page at this address")
        })
        .await
        .unwrap();
    assert!(owner.visible_text("nav").await.unwrap().is_some());

    // A share link opened in the browser after its 10 minutes: a page saying so, not JSON.
    let links = fetch(&owner, "POST", &format!("/api/v1/recordings/{file}/links")).await;
    let play = links["json"]["play_url"].as_str().unwrap().to_owned();
    relay.clock.advance(Duration::from_secs(10 * 60 + 1));
    owner.goto(&format!("{base}{play}")).await.unwrap();
    owner
        .wait_text("#link-refused", WAIT, |t| t == "This link has expired")
        .await
        .unwrap();
    shot(&owner, "live-4-expired-link").await;

    // An open Active sessions page whose sign-in ends says so.
    admin.goto(&format!("{base}/console/active")).await.unwrap();
    assert_eq!(
        fetch(&admin, "POST", "/api/v1/sign-out").await["status"],
        204
    );
    admin
        .wait_text("#refresh-status", WAIT, |t| {
            t.contains("Your sign-in has ended")
        })
        .await
        .unwrap();

    // At a phone's width nothing runs off the side of the page, and every row's cells are on
    // screen (each row a card), tables included.
    owner.set_size(390, 844).await.unwrap();
    let session_page = format!("/console/sessions/{session}");
    for (path, name) in [
        ("/console/sessions", "phone-sessions"),
        (session_page.as_str(), "phone-session"),
        ("/console/audit", "phone-audit"),
        ("/console/team", "phone-team"),
        ("/console/members", "phone-members"),
        ("/console/settings", "phone-settings"),
    ] {
        owner.goto(&format!("{base}{path}")).await.unwrap();
        owner.wait_text("main h1", WAIT, |_| true).await.unwrap();
        let over = number(
            &owner,
            "return document.documentElement.scrollWidth - window.innerWidth;",
        )
        .await;
        assert!(
            over <= 1.0,
            "{path} is {over} px wider than a phone's screen"
        );
        let off = number(
            &owner,
            "return Array.from(document.querySelectorAll('td, th'))
               .filter((c) => c.getClientRects().length > 0)
               .filter((c) => c.getBoundingClientRect().right > window.innerWidth + 1).length;",
        )
        .await;
        assert_eq!(off, 0.0, "{path} has {off} cells off a phone's screen");
        shot(&owner, name).await;
    }
}
