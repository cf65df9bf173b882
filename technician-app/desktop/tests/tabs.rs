//! Several sessions at once in the app's real window (tauri-driver under xvfb-run): two real
//! streamers on two virtual displays of different colours, a session with each in its own tab.
//! The native view shows the shown tab's screen (pixels of the app's X screen), both sessions run
//! at the relay at once, a chat line from the session behind is counted on its tab and is there
//! when the tab is shown, and closing a tab ends its session while the other goes on.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use system_tests::XDisplay;

const FIRST: (u8, u8, u8) = (220, 40, 150);
const SECOND: (u8, u8, u8) = (40, 90, 230);

fn close(px: [u8; 3], rgb: (u8, u8, u8)) -> bool {
    let d = |a: u8, b: u8| i16::from(a).abs_diff(i16::from(b));
    d(px[0], rgb.0) <= 30 && d(px[1], rgb.1) <= 30 && d(px[2], rgb.2) <= 30
}

/// Waits until the centre of the app's native view shows `rgb`.
async fn view_shows(stage: &common::Stage, rgb: (u8, u8, u8), what: &str) {
    let started = std::time::Instant::now();
    loop {
        let (view, px) = stage.native_view_on_screen().await;
        let (w, h) = (usize::from(view.width), usize::from(view.height));
        if w > 0 && h > 0 {
            let i = ((h / 2) * w + w / 2) * 4;
            let centre = [px[i + 2], px[i + 1], px[i]];
            if close(centre, rgb) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "{what}: the view's centre is {centre:?}, not {rgb:?}"
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The session tabs' labels, in order.
async fn tab_labels(stage: &common::Stage) -> Vec<String> {
    let v = stage
        .window
        .script(
            "return [...document.querySelectorAll('#tabs .session-tab button[role=tab]')]
               .map((b) => b.textContent);",
            serde_json::json!([]),
        )
        .await
        .unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

async fn click_tab(stage: &common::Stage, starts_with: &str) {
    let clicked = stage
        .window
        .script(
            "for (const b of document.querySelectorAll('#tabs .session-tab button[role=tab]'))
               if (b.textContent.startsWith(arguments[0])) { b.click(); return true; }
             return false;",
            serde_json::json!([starts_with]),
        )
        .await
        .unwrap();
    assert_eq!(clicked, true, "a tab for {starts_with}");
}

/// The team's sessions the relay holds as not ended.
async fn live_sessions(stage: &common::Stage) -> usize {
    let filter = relay::store::SessionFilter {
        live: true,
        limit: 100,
        ..Default::default()
    };
    stage
        .relay
        .store
        .find_sessions(&stage.team_id, &filter)
        .await
        .unwrap()
        .len()
}

async fn connect_to(stage: &common::Stage, name: &str) {
    stage
        .window
        .wait_text("#device-rows", Duration::from_secs(30), |t| {
            t.lines().any(|l| l.contains(name) && l.contains("Online"))
        })
        .await
        .unwrap();
    let clicked = stage
        .window
        .script(
            "for (const tr of document.querySelectorAll('#device-rows tr'))
               if (tr.cells[0].innerText === arguments[0]) { tr.querySelector('button').click(); return true; }
             return false;",
            serde_json::json!([name]),
        )
        .await
        .unwrap();
    assert_eq!(clicked, true);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sessions_in_tabs_each_drawn_when_shown_and_a_closed_tab_ends_only_its_own() {
    let stage = common::stage(640, 480, 10, |_| {}).await;
    let _first = stage.display.paint(0, 0, 640, 480, FIRST);
    let second_display = XDisplay::start(800, 600);
    let _second = second_display.paint(0, 0, 800, 600, SECOND);
    let code = stage
        .relay
        .store
        .create_deployment_code(&stage.team_id, 600_000)
        .await
        .unwrap();
    let second_dir = stage.dir.path().join("second");
    std::fs::create_dir_all(&second_dir).unwrap();
    let (second_stop, second_agent, second_chat) = common::start_named_agent(
        "Second PC",
        &stage.relay.addr,
        &stage.relay.ca(),
        &second_dir,
        &second_display.name,
        code,
        10,
    );
    let w = &stage.window;

    // The first session, in the first tab.
    stage.connect_to_test_pc().await;
    stage.wait_frames(1).await;
    view_shows(&stage, FIRST, "the first session").await;
    assert_eq!(tab_labels(&stage).await, ["Test PC"]);

    // Back to the list while it goes on: its device offers its tab; the second session opens a
    // second tab, shown at once.
    w.click("#tab-devices").await.unwrap();
    w.wait_text("#devices-view h1", Duration::from_secs(10), |t| {
        t == "Devices"
    })
    .await
    .unwrap();
    w.wait_text("#device-rows", Duration::from_secs(15), |t| {
        t.lines()
            .any(|l| l.contains("Test PC") && l.contains("Show"))
    })
    .await
    .unwrap();
    connect_to(&stage, "Second PC").await;
    view_shows(&stage, SECOND, "the second session").await;
    assert_eq!(tab_labels(&stage).await, ["Test PC", "Second PC"]);
    assert_eq!(live_sessions(&stage).await, 2, "both sessions run at once");

    // The first tab again: its screen, from a keyframe asked for on the switch.
    click_tab(&stage, "Test PC").await;
    view_shows(&stage, FIRST, "the first tab shown again").await;
    w.wait_text("#session-device", Duration::from_secs(5), |t| {
        t.starts_with("Test PC")
    })
    .await
    .unwrap();

    // The second computer's user writes while its tab is behind: the tab counts it; shown, the
    // line is in its chat and the Chat button counts it.
    second_chat
        .typed
        .send("printer is on fire".into())
        .await
        .unwrap();
    let started = std::time::Instant::now();
    while tab_labels(&stage).await != ["Test PC", "Second PC (1)"] {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "tabs: {:?}",
            tab_labels(&stage).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        w.visible_text("#chat-button").await.unwrap().as_deref(),
        Some("Chat"),
        "the shown tab has nothing unread"
    );
    click_tab(&stage, "Second PC").await;
    view_shows(&stage, SECOND, "the second tab shown again").await;
    w.wait_text("#chat-button", Duration::from_secs(5), |t| t == "Chat (1)")
        .await
        .unwrap();
    w.click("#chat-button").await.unwrap();
    w.wait_text("#chat-log", Duration::from_secs(5), |t| {
        t.contains("printer is on fire")
    })
    .await
    .unwrap();
    assert_eq!(tab_labels(&stage).await, ["Test PC", "Second PC"]);

    // Closing the second tab ends its session only: the list is shown, the first one still runs
    // and is drawn when its tab is shown.
    let closed = w
        .script(
            "for (const el of document.querySelectorAll('#tabs .session-tab'))
               if (el.textContent.startsWith('Second PC')) { el.querySelector('.close').click(); return true; }
             return false;",
            serde_json::json!([]),
        )
        .await
        .unwrap();
    assert_eq!(closed, true);
    w.wait_text("#devices-view h1", Duration::from_secs(10), |t| {
        t == "Devices"
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    while live_sessions(&stage).await != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the second session ends"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(tab_labels(&stage).await, ["Test PC"]);
    click_tab(&stage, "Test PC").await;
    view_shows(&stage, FIRST, "the first session after the second ended").await;

    second_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), second_agent).await;
    stage.finish().await;
}
