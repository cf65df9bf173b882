//! Tools of the trade through the relay (protocol 1.1.0): each session's `SessionTools`, clipboard
//! text forwarded both ways and audited when the team allows it, refused with `ToolRefused` (and
//! audited, never forwarded) when it forbids it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use protocol::*;
use relay::store::audit::{Action, AuditFilter};

/// The next message, with a deadline (SessionTools included).
async fn next(c: &mut relay_client::Connection) -> Message {
    tokio::time::timeout(Duration::from_secs(10), c.recv())
        .await
        .expect("a message within 10 s")
        .unwrap()
}

/// Reads up to the session's `SessionTools` (after `RecordingState`) and returns its grants.
async fn tools(c: &mut relay_client::Connection) -> Vec<ToolGrant> {
    loop {
        match next(c).await {
            Message::SessionTools(t) => return t,
            Message::RecordingState { .. } => {}
            other => panic!("expected SessionTools, got {other:?}"),
        }
    }
}

async fn events(relay: &TestRelay, team: &Team, action: Action) -> Vec<(String, String)> {
    let filter = AuditFilter {
        action: Some(action),
        limit: 100,
        ..Default::default()
    };
    relay
        .store
        .audit_events(&team.id, &filter)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.object, e.detail))
        .collect()
}

fn clipboard(state: ToolState) -> Vec<ToolGrant> {
    vec![ToolGrant {
        tool: Tool::Clipboard,
        state,
    }]
}

#[tokio::test]
async fn clipboard_text_crosses_both_ways_and_each_use_is_audited() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut tech, mut streamer, _, started) = relay.in_session(&team).await;
    let Message::SessionStarted { session_id, .. } = started else {
        panic!()
    };
    assert_eq!(tools(&mut tech).await, clipboard(ToolState::Allowed));
    assert_eq!(tools(&mut streamer).await, clipboard(ToolState::Allowed));

    let to_remote = Message::ClipboardText {
        text: "pässword hint".into(),
    };
    tech.send(&to_remote).await.unwrap();
    assert_eq!(next(&mut streamer).await, to_remote);
    let to_tech = Message::ClipboardText {
        text: "C:\\logs\\error.txt".into(),
    };
    streamer.send(&to_tech).await.unwrap();
    assert_eq!(next(&mut tech).await, to_tech);

    let mut sent = events(&relay, &team, Action::ClipboardSent).await;
    sent.sort();
    assert_eq!(
        sent,
        [
            (
                session_id.clone(),
                "remote computer → technician, 17 bytes".to_owned()
            ),
            (
                session_id.clone(),
                "technician → remote computer, 14 bytes".to_owned()
            ),
        ]
    );
    assert!(events(&relay, &team, Action::ClipboardRefused)
        .await
        .is_empty());
    relay.stop().await;
}

#[tokio::test]
async fn a_team_that_forbids_the_clipboard_gets_tool_refused_and_nothing_crosses() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let mut s = relay.store.team_settings(&team.id).await.unwrap().unwrap();
    s.allow_clipboard = false;
    relay.store.set_team_settings(&team.id, &s).await.unwrap();
    let (mut tech, mut streamer, _, started) = relay.in_session(&team).await;
    let Message::SessionStarted { session_id, .. } = started else {
        panic!()
    };
    assert_eq!(tools(&mut tech).await, clipboard(ToolState::Forbidden));
    assert_eq!(tools(&mut streamer).await, clipboard(ToolState::Forbidden));

    tech.send(&Message::ClipboardText {
        text: "secret".into(),
    })
    .await
    .unwrap();
    let Message::ToolRefused { tool, code, .. } = next(&mut tech).await else {
        panic!("no ToolRefused")
    };
    assert_eq!((tool, code), (Tool::Clipboard, ErrorCode::ToolForbidden));
    streamer
        .send(&Message::ClipboardText {
            text: "other".into(),
        })
        .await
        .unwrap();
    let Message::ToolRefused { code, .. } = next(&mut streamer).await else {
        panic!("no ToolRefused")
    };
    assert_eq!(code, ErrorCode::ToolForbidden);

    // The session goes on, and neither text reached the other side: what comes next is the
    // streamer's own message.
    let key = Message::KeyInput(KeyInput {
        code: "KeyA".into(),
        down: true,
        modifiers: Modifiers::default(),
    });
    tech.send(&key).await.unwrap();
    assert_eq!(next(&mut streamer).await, key);

    let refused = events(&relay, &team, Action::ClipboardRefused).await;
    assert_eq!(refused.len(), 2, "{refused:?}");
    assert!(refused
        .iter()
        .all(|(object, detail)| object == &session_id && detail.ends_with("TOOL_FORBIDDEN")));
    assert!(events(&relay, &team, Action::ClipboardSent)
        .await
        .is_empty());
    relay.stop().await;
}

/// A new device's streamer that speaks protocol 1.0.0 only (a streamer from before the tools).
async fn streamer_on_1_0(relay: &TestRelay, team: &Team) -> (relay_client::Connection, String) {
    let code = relay
        .store
        .create_deployment_code(&team.id, 3_600_000)
        .await
        .unwrap();
    let mut c = relay.connect().await;
    let (mut machine, hello) = ClientHandshake::start(
        Role::Streamer,
        CURRENT,
        Credential::DeploymentCode {
            code,
            device_name: "Old desk".into(),
        },
    );
    let Message::Hello {
        role,
        product_version,
        ..
    } = hello
    else {
        panic!("the handshake starts with Hello")
    };
    c.send(&Message::Hello {
        role,
        product_version,
        protocol_versions: vec!["1.0.0".into()],
    })
    .await
    .unwrap();
    let mut device_id = None;
    loop {
        match machine.receive(next(&mut c).await).unwrap() {
            ClientEvent::Send(m) => c.send(&m).await.unwrap(),
            ClientEvent::Registered { device_id: id, .. } => device_id = Some(id),
            ClientEvent::Established {
                protocol_version, ..
            } => {
                assert_eq!(protocol_version.to_string(), "1.0.0");
                return (c, device_id.expect("registered"));
            }
            ClientEvent::SessionCode { .. } => {}
        }
    }
}

#[tokio::test]
async fn a_streamer_on_protocol_1_0_makes_the_clipboard_unsupported_and_is_sent_no_1_1_message() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut streamer, device_id) = streamer_on_1_0(&relay, &team).await;
    let mut tech = relay.technician(&team).await;
    let Message::SessionStarted { session_id, .. } = pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id },
    )
    .await
    else {
        panic!()
    };
    // The 1.1 technician is told the clipboard is unsupported; the 1.0 streamer hears nothing of it.
    assert_eq!(tools(&mut tech).await, clipboard(ToolState::Unsupported));
    tech.send(&Message::ClipboardText {
        text: "for the old one".into(),
    })
    .await
    .unwrap();
    let Message::ToolRefused { tool, code, .. } = next(&mut tech).await else {
        panic!("no ToolRefused")
    };
    assert_eq!((tool, code), (Tool::Clipboard, ErrorCode::ToolUnsupported));
    let key = Message::KeyInput(KeyInput {
        code: "KeyB".into(),
        down: true,
        modifiers: Modifiers::default(),
    });
    tech.send(&key).await.unwrap();
    // What the streamer receives up to the key: no SessionTools, no clipboard text.
    loop {
        match next(&mut streamer).await {
            m if m == key => break,
            Message::RecordingState { .. } => {}
            other => panic!("a 1.0 streamer was sent {other:?}"),
        }
    }
    let refused = events(&relay, &team, Action::ClipboardRefused).await;
    assert_eq!(
        refused,
        [(
            session_id,
            "technician → remote computer, TOOL_UNSUPPORTED".to_owned()
        )]
    );
    relay.stop().await;
}
