//! The protocol's version rules (docs/PROTOCOL.md section 5), for every pair of versions from 1.0.0
//! to the current one, both ways: nothing a side's agreed version lacks ever reaches it; a tool's
//! message the sender's version has, for another side without the tool, is refused
//! `TOOL_UNSUPPORTED` naming the side that is too old; a kind the sender's own version lacks is an
//! unknown kind, refused `MALFORMED_MESSAGE` with the connection closed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use protocol::*;
use relay_client::Connection;

const VERSIONS: [&str; 5] = ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.4.0"];

fn semver(v: &str) -> semver::Version {
    semver::Version::parse(v).unwrap()
}

/// One side of a session in these tests: its connection and the version it agreed on.
struct Side {
    conn: Connection,
    version: semver::Version,
    name: &'static str,
}

impl Side {
    /// The next message, checked against what this side's version has.
    async fn next(&mut self) -> Message {
        let msg = tokio::time::timeout(Duration::from_secs(10), self.conn.recv())
            .await
            .unwrap_or_else(|_| panic!("{} {}: no message within 10 s", self.name, self.version))
            .unwrap();
        let kind = msg.kind();
        assert!(
            kind.known_at(&self.version),
            "{} on {} was sent {} (since {:?})",
            self.name,
            self.version,
            kind.name(),
            kind.since()
        );
        let tools: Vec<Tool> = match &msg {
            Message::SessionTools(grants) => grants.iter().map(|g| g.tool).collect(),
            Message::ToolRefused { tool, .. } => vec![*tool],
            _ => Vec::new(),
        };
        for tool in tools {
            assert!(
                tool_kind(tool).known_at(&self.version),
                "{} on {} was told of the tool {tool:?}: {msg:?}",
                self.name,
                self.version
            );
        }
        msg
    }
}

/// The kind that carries `tool`'s use, which came with the tool.
fn tool_kind(tool: Tool) -> MessageKind {
    match tool {
        Tool::Clipboard => MessageKind::ClipboardText,
        Tool::FileTransfer => MessageKind::FileOffer,
        Tool::Chat => MessageKind::ChatText,
    }
}

/// One use of each tool, as `from` sends it.
fn uses(from_streamer: bool) -> [(Tool, Message); 3] {
    [
        (
            Tool::Clipboard,
            Message::ClipboardText {
                text: "copied".into(),
            },
        ),
        (
            Tool::FileTransfer,
            Message::FileOffer {
                transfer_id: if from_streamer { 0x8000_0001 } else { 1 },
                size: 10,
                sha256: [0x5a; 32],
                name: "a.txt".into(),
            },
        ),
        (
            Tool::Chat,
            Message::ChatText {
                text: "hello".into(),
            },
        ),
    ]
}

/// A technician and a new device's streamer speaking the given versions, in a session, each past
/// its `RecordingState` and (from 1.1.0) its `SessionTools`.
async fn session(relay: &TestRelay, team: &Team, tech_v: &str, streamer_v: &str) -> (Side, Side) {
    let code = relay
        .store
        .create_deployment_code(&team.id, 3_600_000)
        .await
        .unwrap();
    let (conn, device_id) = relay
        .client_speaking(
            Role::Streamer,
            Credential::DeploymentCode {
                code,
                device_name: format!("Desk {streamer_v}"),
            },
            streamer_v,
        )
        .await;
    let mut streamer = Side {
        conn,
        version: semver(streamer_v),
        name: "streamer",
    };
    let (conn, _) = relay
        .client_speaking(
            Role::Technician,
            Credential::TechnicianToken {
                token: team.token.clone(),
            },
            tech_v,
        )
        .await;
    let mut tech = Side {
        conn,
        version: semver(tech_v),
        name: "technician",
    };
    tech.conn
        .send(&Message::SessionRequest {
            target: SessionTarget::Device {
                device_id: device_id.unwrap(),
            },
            view: ViewRequest::default(),
        })
        .await
        .unwrap();
    let Message::SessionOffer { session_id, .. } = streamer.next().await else {
        panic!("no offer")
    };
    streamer
        .conn
        .send(&Message::SessionAccept { session_id })
        .await
        .unwrap();
    for side in [&mut tech, &mut streamer] {
        let has_tools = MessageKind::SessionTools.known_at(&side.version);
        loop {
            match side.next().await {
                Message::SessionTools(_) => break,
                Message::RecordingState { .. } if !has_tools => break,
                Message::SessionStarted { .. } | Message::RecordingState { .. } => {}
                other => panic!("{} before its tools: {other:?}", side.name),
            }
        }
    }
    (tech, streamer)
}

/// `from` uses every tool its version has: each reaches `to` when `to`'s version has it too, and is
/// refused `TOOL_UNSUPPORTED` naming `to` otherwise. Then a marker crosses, so that nothing else
/// reached `to` on the way.
async fn use_every_tool(from: &mut Side, to: &mut Side, marker: Message) {
    let too_old = match to.name {
        "streamer" => "The remote computer's streamer is too old for",
        _ => "The technician's app is too old for",
    };
    for (tool, msg) in uses(from.name == "streamer") {
        if !msg.kind().known_at(&from.version) {
            continue;
        }
        from.conn.send(&msg).await.unwrap();
        if msg.kind().known_at(&to.version) {
            assert_eq!(
                to.next().await,
                msg,
                "{} {} → {}",
                from.name,
                from.version,
                to.version
            );
        } else {
            match from.next().await {
                Message::ToolRefused {
                    tool: t,
                    code,
                    message,
                } => {
                    assert_eq!((t, code), (tool, ErrorCode::ToolUnsupported));
                    assert!(message.starts_with(too_old), "{message}");
                }
                other => panic!("{tool:?} to an older side: {other:?}"),
            }
        }
    }
    from.conn.send(&marker).await.unwrap();
    assert_eq!(to.next().await, marker, "the marker after the tools");
}

#[tokio::test]
async fn every_pair_of_versions_gets_only_what_it_knows_and_refusals_naming_the_older_side() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let key = Message::KeyInput(KeyInput {
        code: "KeyB".into(),
        down: true,
        modifiers: Modifiers::default(),
    });
    for tech_v in VERSIONS {
        for streamer_v in VERSIONS {
            let (mut tech, mut streamer) = session(&relay, &team, tech_v, streamer_v).await;
            use_every_tool(&mut tech, &mut streamer, key.clone()).await;
            // The streamer's marker: a video configuration, which only it sends.
            let config = Message::VideoConfig(VideoConfig {
                codec: VideoCodec::H264,
                width: 640,
                height: 480,
                frame_rate: 10,
                monitor_id: 0,
                orientation: Orientation::Landscape,
            });
            use_every_tool(&mut streamer, &mut tech, config).await;
            tech.conn.send(&Message::LeaveSession).await.unwrap();
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn a_kind_the_senders_own_version_lacks_is_refused_as_unknown_and_ends_the_session() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    for old in ["1.0.0", "1.1.0", "1.2.0"] {
        for from_streamer in [false, true] {
            for (_, msg) in uses(from_streamer) {
                let kind = msg.kind();
                if kind.known_at(&semver(old)) {
                    continue;
                }
                let (tech_v, streamer_v) = if from_streamer {
                    ("1.4.0", old)
                } else {
                    (old, "1.4.0")
                };
                let (mut tech, mut streamer) = session(&relay, &team, tech_v, streamer_v).await;
                let (from, other) = if from_streamer {
                    (&mut streamer, &mut tech)
                } else {
                    (&mut tech, &mut streamer)
                };
                from.conn.send(&msg).await.unwrap();
                let (code, message) = refused(&mut from.conn).await;
                assert_eq!(code, ErrorCode::MalformedMessage, "{message}");
                let (major, minor) = kind.since();
                assert!(
                    message.contains(&format!("0x{:02x}", kind as u8))
                        && message.contains(&format!("at protocol {old}"))
                        && message.contains(&format!("came in {major}.{minor}.0")),
                    "{message}"
                );
                match other.next().await {
                    Message::SessionEnded { reason, .. } => {
                        assert_eq!(reason, EndReason::ProtocolError)
                    }
                    m => panic!("{} after the other side broke: {m:?}", other.name),
                }
            }
        }
    }
    relay.stop().await;
}
