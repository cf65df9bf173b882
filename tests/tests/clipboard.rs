//! Clipboard text both ways between the technician library and the real streamer agent on a virtual
//! X display, through a real relay: what the technician copies lands on the display's CLIPBOARD
//! and PRIMARY selections, what is copied on the display reaches the technician (a text of
//! a third of a megabyte too), each use is in the audit trail; a team that forbids the clipboard gets
//! `TOOL_FORBIDDEN` and nothing crosses.
//!
//! The display's side is `xclip`, an X client that is not the streamer's code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use protocol::{ErrorCode, SessionTarget, Tool, ToolState};
use relay::store::audit::Action;
use system_tests::xclip::{copy, paste, wait_for_paste};
use system_tests::{audit_details, until};
use system_tests::{TestRelay, TestStreamer, XDisplay};
use technician::{Account, Command, Event, Session};

const PASSWORD: &str = "correct horse battery staple";

struct World {
    relay: TestRelay,
    team_id: String,
    streamer: TestStreamer,
    session: Session,
    display: XDisplay,
    _dir: tempfile::TempDir,
}

async fn world(allow_clipboard: bool) -> World {
    let dir = tempfile::tempdir().unwrap();
    let display = XDisplay::start(640, 480);
    let relay = TestRelay::start(&dir.path().join("relay"), 0).await;
    let team_id = relay.acme(PASSWORD, false, false).await.team.id;
    let mut settings = relay.store.team_settings(&team_id).await.unwrap().unwrap();
    settings.allow_clipboard = allow_clipboard;
    relay
        .store
        .set_team_settings(&team_id, &settings)
        .await
        .unwrap();
    let streamer = TestStreamer::start(&relay, &team_id, &display.name, dir.path(), 5).await;
    let connector = relay_client::Connector::trusting_ca_file(&relay.ca()).unwrap();
    let account = Account::sign_in(connector, &relay.addr, "owner@acme.example", PASSWORD)
        .await
        .unwrap();
    let session = account
        .open()
        .await
        .unwrap()
        .connect(SessionTarget::Device {
            device_id: streamer.device_id.clone(),
        })
        .await
        .map_err(|(_, e)| e)
        .unwrap();
    World {
        relay,
        team_id,
        streamer,
        session,
        display,
        _dir: dir,
    }
}

async fn clipboard_state(session: &mut Session) -> ToolState {
    let (state, _) = until(session, Duration::from_secs(10), |e| match e {
        Event::Tools(tools) => tools
            .iter()
            .find(|g| g.tool == Tool::Clipboard)
            .map(|g| g.state),
        _ => None,
    })
    .await;
    state.expect("SessionTools with the clipboard")
}

async fn leave(w: World) {
    w.session.commands.send(Command::Leave).await.unwrap();
    let World {
        mut session,
        streamer,
        relay,
        display,
        ..
    } = w;
    let (ended, _) = until(&mut session, Duration::from_secs(10), |e| {
        matches!(e, Event::Ended { .. }).then_some(())
    })
    .await;
    assert!(ended.is_some(), "the session did not end");
    streamer.stop().await;
    relay.stop().await;
    drop(display);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clipboard_text_crosses_both_ways_between_the_technician_and_the_display() {
    let mut w = world(true).await;
    assert_eq!(clipboard_state(&mut w.session).await, ToolState::Allowed);

    // The technician's text lands on both selections a Linux user pastes from.
    let to_remote = "Ticket 4711 · ünïcode ✓\nsecond line\ttab";
    w.session
        .commands
        .send(Command::Clipboard(to_remote.into()))
        .await
        .unwrap();
    wait_for_paste(&w.display.name, "clipboard", to_remote).await;
    wait_for_paste(&w.display.name, "primary", to_remote).await;

    // A copy on the display reaches the technician; the technician's own text did not come back.
    let from_remote = "C:\\Users\\ada\\error.log — copied on the remote computer";
    let owner = copy(&w.display.name, from_remote);
    let (got, passed) = until(&mut w.session, Duration::from_secs(10), |e| match e {
        Event::Clipboard(t) => Some(t.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got.as_deref(), Some(from_remote), "passed over: {passed:?}");
    drop(owner);

    // A large copy (a third of the protocol's 1 MiB) arrives whole. xclip hands it over in one
    // property: it uses INCR only above a quarter of the server's largest request (4 MiB here).
    let large: String = (0..12_000)
        .map(|i| format!("line {i:05} of a long log ✓\n"))
        .collect();
    assert!(large.len() > 300_000, "{}", large.len());
    let owner = copy(&w.display.name, &large);
    let (got, _) = until(&mut w.session, Duration::from_secs(15), |e| match e {
        Event::Clipboard(t) => Some(t.clone()),
        _ => None,
    })
    .await;
    let got = got.expect("the large text within 15 s");
    assert_eq!((got.len(), got == large), (large.len(), true));
    drop(owner);

    // More than the protocol carries is refused on the technician's side, and the session goes on.
    w.session
        .commands
        .send(Command::Clipboard(
            "x".repeat(technician::CLIPBOARD_MAX + 1),
        ))
        .await
        .unwrap();
    let (code, _) = until(&mut w.session, Duration::from_secs(5), |e| match e {
        Event::ToolRefused { tool, code, .. } => Some((*tool, *code)),
        _ => None,
    })
    .await;
    assert_eq!(code, Some((Tool::Clipboard, ErrorCode::MessageTooLarge)));
    let (frame, _) = until(&mut w.session, Duration::from_secs(5), |e| {
        matches!(e, Event::Video(_)).then_some(())
    })
    .await;
    assert!(frame.is_some(), "video goes on after the refusal");

    let mut expected = [
        format!("remote computer → technician, {} bytes", from_remote.len()),
        format!("remote computer → technician, {} bytes", large.len()),
        format!("technician → remote computer, {} bytes", to_remote.len()),
    ];
    expected.sort();
    assert_eq!(
        audit_details(&w.relay, &w.team_id, Action::ClipboardSent).await,
        expected
    );
    leave(w).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_team_that_forbids_the_clipboard_gets_nothing_across_and_the_refusal_is_logged() {
    let mut w = world(false).await;
    assert_eq!(clipboard_state(&mut w.session).await, ToolState::Forbidden);
    let before = copy(&w.display.name, "what the end user copied before");
    wait_for_paste(
        &w.display.name,
        "clipboard",
        "what the end user copied before",
    )
    .await;

    w.session
        .commands
        .send(Command::Clipboard("from the technician".into()))
        .await
        .unwrap();
    let (code, _) = until(&mut w.session, Duration::from_secs(5), |e| match e {
        Event::ToolRefused { tool, code, .. } => Some((*tool, *code)),
        _ => None,
    })
    .await;
    assert_eq!(code, Some((Tool::Clipboard, ErrorCode::ToolForbidden)));
    assert_eq!(
        paste(&w.display.name, "clipboard").await.as_deref(),
        Some("what the end user copied before")
    );
    drop(before);

    // A copy on the display does not reach the technician.
    let owner = copy(&w.display.name, "a password the end user copied");
    let (got, _) = until(&mut w.session, Duration::from_secs(3), |e| match e {
        Event::Clipboard(t) => Some(t.clone()),
        _ => None,
    })
    .await;
    assert_eq!(got, None);
    drop(owner);

    assert_eq!(
        audit_details(&w.relay, &w.team_id, Action::ClipboardRefused).await,
        ["technician → remote computer, TOOL_FORBIDDEN"]
    );
    assert!(audit_details(&w.relay, &w.team_id, Action::ClipboardSent)
        .await
        .is_empty());
    leave(w).await;
}
