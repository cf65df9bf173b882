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

/// A tool's state in a `SessionTools` list (panics when it is not listed).
fn state(grants: &[ToolGrant], tool: Tool) -> ToolState {
    grants
        .iter()
        .find(|g| g.tool == tool)
        .unwrap_or_else(|| panic!("{tool:?} is not in {grants:?}"))
        .state
}

#[tokio::test]
async fn clipboard_text_crosses_both_ways_and_each_use_is_audited() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut tech, mut streamer, _, started) = relay.in_session(&team).await;
    let Message::SessionStarted { session_id, .. } = started else {
        panic!()
    };
    assert_eq!(
        state(&tools(&mut tech).await, Tool::Clipboard),
        ToolState::Allowed
    );
    assert_eq!(
        state(&tools(&mut streamer).await, Tool::Clipboard),
        ToolState::Allowed
    );

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
    assert_eq!(
        state(&tools(&mut tech).await, Tool::Clipboard),
        ToolState::Forbidden
    );
    assert_eq!(
        state(&tools(&mut streamer).await, Tool::Clipboard),
        ToolState::Forbidden
    );

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

/// A new device's streamer that speaks protocol `version` only (1.0.0: from before the tools).
async fn streamer_speaking(
    relay: &TestRelay,
    team: &Team,
    version: &str,
) -> (relay_client::Connection, String) {
    let code = relay
        .store
        .create_deployment_code(&team.id, 3_600_000)
        .await
        .unwrap();
    let credential = Credential::DeploymentCode {
        code,
        device_name: "Old desk".into(),
    };
    let (c, device_id) = relay
        .client_speaking(Role::Streamer, credential, version)
        .await;
    (c, device_id.expect("registered"))
}

#[tokio::test]
async fn a_streamer_on_protocol_1_0_makes_the_clipboard_unsupported_and_is_sent_no_1_1_message() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut streamer, device_id) = streamer_speaking(&relay, &team, "1.0.0").await;
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
    let grants = tools(&mut tech).await;
    assert_eq!(state(&grants, Tool::Clipboard), ToolState::Unsupported);
    assert_eq!(state(&grants, Tool::FileTransfer), ToolState::Unsupported);
    assert_eq!(state(&grants, Tool::Chat), ToolState::Unsupported);
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

async fn audit_details(relay: &TestRelay, team: &Team, action: Action) -> Vec<String> {
    let mut d: Vec<String> = events(relay, team, action)
        .await
        .into_iter()
        .map(|(_, detail)| detail)
        .collect();
    d.sort();
    d
}

fn offer(transfer_id: u32, size: u64, name: &str) -> Message {
    Message::FileOffer {
        transfer_id,
        size,
        sha256: [0x5a; 32],
        name: name.into(),
    }
}

/// `from` sends the messages; each arrives at `to` as sent.
async fn cross(
    from: &mut relay_client::Connection,
    to: &mut relay_client::Connection,
    msgs: &[Message],
) {
    for m in msgs {
        from.send(m).await.unwrap();
        assert_eq!(&next(to).await, m);
    }
}

#[tokio::test]
async fn files_cross_both_ways_in_order_and_the_audit_trail_has_each_start_and_end() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut tech, mut streamer, _, _) = relay.in_session(&team).await;
    assert_eq!(
        state(&tools(&mut tech).await, Tool::FileTransfer),
        ToolState::Allowed
    );
    assert_eq!(
        state(&tools(&mut streamer).await, Tool::FileTransfer),
        ToolState::Allowed
    );
    let chunk = |transfer_id, offset, data: &'static [u8]| Message::FileChunk {
        transfer_id,
        offset,
        data: bytes::Bytes::from_static(data),
    };
    let end = |transfer_id, outcome| Message::FileEnd {
        transfer_id,
        outcome,
        message: String::new(),
    };
    // Technician to remote computer, resumed at byte 3.
    tech.send(&offer(1, 6, "setup.exe")).await.unwrap();
    assert_eq!(next(&mut streamer).await, offer(1, 6, "setup.exe"));
    cross(
        &mut streamer,
        &mut tech,
        &[Message::FileAccept {
            transfer_id: 1,
            offset: 3,
        }],
    )
    .await;
    cross(&mut tech, &mut streamer, &[chunk(1, 3, b"def")]).await;
    cross(
        &mut streamer,
        &mut tech,
        &[
            Message::FileProgress {
                transfer_id: 1,
                received: 6,
            },
            end(1, FileOutcome::Verified),
        ],
    )
    .await;
    // Remote computer to technician, asked for by path; the technician cancels it midway.
    cross(
        &mut tech,
        &mut streamer,
        &[Message::FileRequest {
            transfer_id: 2,
            path: "/var/log/syslog".into(),
        }],
    )
    .await;
    cross(&mut streamer, &mut tech, &[offer(2, 10, "syslog")]).await;
    cross(
        &mut tech,
        &mut streamer,
        &[Message::FileAccept {
            transfer_id: 2,
            offset: 0,
        }],
    )
    .await;
    cross(&mut streamer, &mut tech, &[chunk(2, 0, b"abcd")]).await;
    cross(&mut tech, &mut streamer, &[end(2, FileOutcome::Cancelled)]).await;
    // A chunk of a transfer that is over is refused to its sender, not forwarded.
    streamer.send(&chunk(2, 4, b"efgh")).await.unwrap();
    let Message::ToolRefused { tool, code, .. } = next(&mut streamer).await else {
        panic!("no ToolRefused")
    };
    assert_eq!(
        (tool, code),
        (Tool::FileTransfer, ErrorCode::UnexpectedMessage)
    );

    let offered = "5a".repeat(32);
    assert_eq!(
        audit_details(&relay, &team, Action::TransferStarted).await,
        [
            format!("remote computer → technician, syslog, 10 bytes, from byte 0, offered sha256 {offered}"),
            format!("technician → remote computer, setup.exe, 6 bytes, from byte 3, offered sha256 {offered}"),
        ]
    );
    assert_eq!(
        audit_details(&relay, &team, Action::FileRequested).await,
        ["remote computer → technician, /var/log/syslog"]
    );
    // Every offer, taken or not, before it was forwarded.
    assert_eq!(
        audit_details(&relay, &team, Action::FileOffered).await,
        [
            format!("remote computer → technician, syslog, 10 bytes, offered sha256 {offered}"),
            format!("technician → remote computer, setup.exe, 6 bytes, offered sha256 {offered}"),
        ]
    );
    assert_eq!(
        audit_details(&relay, &team, Action::TransferCompleted).await,
        [format!(
            "technician → remote computer, setup.exe, 6 bytes, sha256 {}",
            "5a".repeat(32)
        )]
    );
    assert_eq!(
        audit_details(&relay, &team, Action::TransferStopped).await,
        ["remote computer → technician, syslog, cancelled, at byte 4 of 10"]
    );
    relay.stop().await;
}

/// Security review finding 18: a sender's own "verified" end does not close its transfer (the
/// trail would lack the SHA-256): it is refused, and the receiver's end logs the completion.
#[tokio::test]
async fn only_the_receiver_closes_a_transfer_as_verified() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut tech, mut streamer, _, _) = relay.in_session(&team).await;
    tools(&mut tech).await;
    tools(&mut streamer).await;
    let end = |outcome| Message::FileEnd {
        transfer_id: 4,
        outcome,
        message: String::new(),
    };
    cross(&mut streamer, &mut tech, &[offer(4, 3, "notes.txt")]).await;
    cross(
        &mut tech,
        &mut streamer,
        &[Message::FileAccept {
            transfer_id: 4,
            offset: 0,
        }],
    )
    .await;
    cross(
        &mut streamer,
        &mut tech,
        &[Message::FileChunk {
            transfer_id: 4,
            offset: 0,
            data: bytes::Bytes::from_static(b"abc"),
        }],
    )
    .await;
    streamer.send(&end(FileOutcome::Verified)).await.unwrap();
    let Message::ToolRefused { tool, code, .. } = next(&mut streamer).await else {
        panic!("no ToolRefused")
    };
    assert_eq!(
        (tool, code),
        (Tool::FileTransfer, ErrorCode::UnexpectedMessage)
    );
    cross(&mut tech, &mut streamer, &[end(FileOutcome::Verified)]).await;
    assert_eq!(
        audit_details(&relay, &team, Action::TransferCompleted).await,
        [format!(
            "remote computer → technician, notes.txt, 3 bytes, sha256 {}",
            "5a".repeat(32)
        )]
    );
    assert!(audit_details(&relay, &team, Action::TransferStopped)
        .await
        .is_empty());
    relay.stop().await;
}

#[tokio::test]
async fn a_file_over_the_team_limit_or_in_a_forbidding_team_is_refused_and_logged() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let mut s = relay.store.team_settings(&team.id).await.unwrap().unwrap();
    s.max_file_mb = 5;
    relay.store.set_team_settings(&team.id, &s).await.unwrap();
    let (mut tech, mut streamer, _, _) = relay.in_session(&team).await;
    tools(&mut tech).await;
    tools(&mut streamer).await;
    tech.send(&offer(1, 5_000_001, "disk.img")).await.unwrap();
    let Message::ToolRefused { code, message, .. } = next(&mut tech).await else {
        panic!("no ToolRefused")
    };
    assert_eq!(code, ErrorCode::FileTooLarge);
    assert!(message.contains("limit is 5 MB"), "{message}");
    // Exactly at the limit is fine.
    cross(&mut tech, &mut streamer, &[offer(2, 5_000_000, "disk.img")]).await;
    tech.send(&Message::LeaveSession).await.unwrap();

    s.allow_file_transfer = false;
    relay.store.set_team_settings(&team.id, &s).await.unwrap();
    let (mut tech, mut streamer, _, _) = relay.in_session(&team).await;
    assert_eq!(
        state(&tools(&mut tech).await, Tool::FileTransfer),
        ToolState::Forbidden
    );
    tools(&mut streamer).await;
    tech.send(&Message::FileRequest {
        transfer_id: 3,
        path: "C:\\Users\\ada\\secret.docx".into(),
    })
    .await
    .unwrap();
    let Message::ToolRefused { tool, code, .. } = next(&mut tech).await else {
        panic!("no ToolRefused")
    };
    assert_eq!((tool, code), (Tool::FileTransfer, ErrorCode::ToolForbidden));
    assert_eq!(
        audit_details(&relay, &team, Action::TransferRefused).await,
        [
            "remote computer → technician, C:\\Users\\ada\\secret.docx, TOOL_FORBIDDEN",
            "technician → remote computer, disk.img, 5000001 bytes, FILE_TOO_LARGE",
        ]
    );
    relay.stop().await;
}

#[tokio::test]
async fn a_streamer_on_protocol_1_1_is_not_told_of_file_transfer() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut streamer, device_id) = streamer_speaking(&relay, &team, "1.1.0").await;
    let mut tech = relay.technician(&team).await;
    pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id },
    )
    .await;
    let for_tech = tools(&mut tech).await;
    assert_eq!(state(&for_tech, Tool::Clipboard), ToolState::Allowed);
    assert_eq!(state(&for_tech, Tool::Chat), ToolState::Unsupported);
    assert_eq!(state(&for_tech, Tool::FileTransfer), ToolState::Unsupported);
    // The 1.1 streamer's list holds only what 1.1 knows, which it can read.
    assert_eq!(
        tools(&mut streamer).await,
        [ToolGrant {
            tool: Tool::Clipboard,
            state: ToolState::Allowed
        }]
    );
    tech.send(&offer(1, 10, "a.txt")).await.unwrap();
    let Message::ToolRefused { code, .. } = next(&mut tech).await else {
        panic!("no ToolRefused")
    };
    assert_eq!(code, ErrorCode::ToolUnsupported);
    relay.stop().await;
}

#[tokio::test]
async fn chat_lines_cross_both_ways_and_each_is_in_the_audit_trail_with_its_text() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut tech, mut streamer, _, started) = relay.in_session(&team).await;
    let Message::SessionStarted { session_id, .. } = started else {
        panic!()
    };
    assert_eq!(
        state(&tools(&mut tech).await, Tool::Chat),
        ToolState::Allowed
    );
    assert_eq!(
        state(&tools(&mut streamer).await, Tool::Chat),
        ToolState::Allowed
    );
    let ask = Message::ChatText {
        text: "Can you see my pointer?".into(),
    };
    cross(&mut tech, &mut streamer, std::slice::from_ref(&ask)).await;
    let answer = Message::ChatText {
        text: "Oui, <b>très</b> bien".into(),
    };
    cross(&mut streamer, &mut tech, std::slice::from_ref(&answer)).await;
    let sent = events(&relay, &team, Action::ChatSent).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent.iter().all(|(object, _)| object == &session_id));
    assert_eq!(
        audit_details(&relay, &team, Action::ChatSent).await,
        [
            "remote computer → technician: Oui, <b>très</b> bien",
            "technician → remote computer: Can you see my pointer?",
        ]
    );
    relay.stop().await;
}

/// Security review finding 14: an end user (anyone with the attended key) flooding chat fills
/// no audit trail: past a burst of lines, each is refused `RATE_LIMITED`, neither forwarded nor
/// logged, and the session goes on; the technician's side has its own allowance.
#[tokio::test]
async fn a_chat_flood_is_refused_past_a_burst_and_never_reaches_the_audit_trail() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut tech, mut streamer, _, _) = relay.in_session(&team).await;
    tools(&mut tech).await;
    tools(&mut streamer).await;
    let flood = 40;
    for i in 0..flood {
        streamer
            .send(&Message::ChatText {
                text: format!("line {i} {}", "x".repeat(2000)),
            })
            .await
            .unwrap();
    }
    // A clipboard use after the flood marks its end on the technician's side: the relay handles
    // one connection's messages in order.
    streamer
        .send(&Message::ClipboardText {
            text: "end of flood".into(),
        })
        .await
        .unwrap();
    let mut forwarded = 0;
    loop {
        match next(&mut tech).await {
            Message::ChatText { .. } => forwarded += 1,
            Message::ClipboardText { .. } => break,
            other => panic!("{other:?}"),
        }
    }
    for _ in forwarded..flood {
        match next(&mut streamer).await {
            Message::ToolRefused {
                tool,
                code,
                message,
            } => assert_eq!(
                (tool, code),
                (Tool::Chat, ErrorCode::RateLimited),
                "{message}"
            ),
            other => panic!("{other:?}"),
        }
    }
    // The burst went (one more if the sending took two seconds or more), and exactly those lines
    // are in the trail.
    assert!(
        (relay::rate::CHAT_BURST..=relay::rate::CHAT_BURST + 1).contains(&forwarded),
        "{forwarded} forwarded"
    );
    let logged = events(&relay, &team, Action::ChatSent).await.len();
    assert_eq!(logged, forwarded as usize);
    // The technician can still write, and the session goes on.
    cross(
        &mut tech,
        &mut streamer,
        &[Message::ChatText {
            text: "Please stop.".into(),
        }],
    )
    .await;
    relay.stop().await;
}

#[tokio::test]
async fn a_team_that_forbids_chat_gets_tool_refused_both_ways_and_the_line_is_not_logged() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let mut s = relay.store.team_settings(&team.id).await.unwrap().unwrap();
    s.allow_chat = false;
    relay.store.set_team_settings(&team.id, &s).await.unwrap();
    let (mut tech, mut streamer, _, _) = relay.in_session(&team).await;
    let grants = tools(&mut tech).await;
    assert_eq!(state(&grants, Tool::Chat), ToolState::Forbidden);
    // The other tools keep their own settings.
    assert_eq!(state(&grants, Tool::Clipboard), ToolState::Allowed);
    assert_eq!(
        state(&tools(&mut streamer).await, Tool::Chat),
        ToolState::Forbidden
    );
    for (from, line) in [(&mut tech, "hello?"), (&mut streamer, "anyone?")] {
        from.send(&Message::ChatText { text: line.into() })
            .await
            .unwrap();
        let Message::ToolRefused {
            tool,
            code,
            message,
        } = next(from).await
        else {
            panic!("no ToolRefused")
        };
        assert_eq!((tool, code), (Tool::Chat, ErrorCode::ToolForbidden));
        assert!(message.contains("chat"), "{message}");
    }
    // Nothing crossed: the next thing the streamer hears is the technician's key.
    let key = Message::KeyInput(KeyInput {
        code: "KeyC".into(),
        down: true,
        modifiers: Modifiers::default(),
    });
    tech.send(&key).await.unwrap();
    assert_eq!(next(&mut streamer).await, key);
    assert_eq!(
        audit_details(&relay, &team, Action::ChatRefused).await,
        [
            "remote computer → technician, TOOL_FORBIDDEN",
            "technician → remote computer, TOOL_FORBIDDEN",
        ]
    );
    assert!(events(&relay, &team, Action::ChatSent).await.is_empty());
    relay.stop().await;
}
