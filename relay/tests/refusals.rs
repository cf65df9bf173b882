//! Bad credentials and bad input are refused clearly, and nothing else is disturbed: a session that is
//! running alongside keeps forwarding. Also backpressure against a slow technician, and shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use protocol::*;
use relay_client::Connection;

/// A running session to prove that refusals elsewhere do not disturb it.
struct Bystander {
    tech: Connection,
    streamer: Connection,
    sent: u64,
}

impl Bystander {
    async fn start(relay: &TestRelay) -> Self {
        let team = relay.team("bystanders").await;
        let (mut tech, mut streamer, _, _) = relay.in_session(&team).await;
        recv(&mut tech).await;
        recv(&mut streamer).await;
        Self {
            tech,
            streamer,
            sent: 0,
        }
    }

    async fn still_forwards(&mut self) {
        self.sent += 1;
        let msg = Message::AudioFrame(AudioFrame {
            timestamp_us: self.sent,
            payload: Bytes::from_static(b"opus"),
        });
        self.streamer.send(&msg).await.unwrap();
        assert_eq!(recv(&mut self.tech).await, msg);
        let key = Message::KeyInput(KeyInput {
            code: "Enter".into(),
            down: true,
            modifiers: Modifiers::default(),
        });
        self.tech.send(&key).await.unwrap();
        assert_eq!(recv(&mut self.streamer).await, key);
    }
}

#[tokio::test]
async fn bad_credentials_are_refused_with_their_code() {
    let relay = TestRelay::start().await;
    let mut bystander = Bystander::start(&relay).await;
    let team = relay.team("acme").await;

    // Wrong password, through the sign-in API.
    let (status, body) = relay
        .api(
            "POST",
            "/api/v1/sign-in",
            None,
            Some(serde_json::json!({"email": team.owner_email, "password": "nope"})),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "AUTHENTICATION_FAILED");
    let (status, body) = relay
        .api(
            "POST",
            "/api/v1/sign-in",
            None,
            Some(serde_json::json!({"email": team.owner_email, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let api_token = body["token"].as_str().unwrap().to_owned();
    bystander.still_forwards().await;

    // Unknown token.
    let mut c = relay.connect().await;
    let r = handshake_refusal(
        c.handshake(
            Role::Technician,
            CURRENT,
            Credential::TechnicianToken {
                token: "forged".into(),
            },
        )
        .await,
    );
    assert_eq!(r.code, ErrorCode::AuthenticationFailed);

    // Revoked token (signed out).
    let (status, _) = relay
        .api("POST", "/api/v1/sign-out", Some(&api_token), None)
        .await;
    assert_eq!(status, 204);
    let mut c = relay.connect().await;
    let r = handshake_refusal(
        c.handshake(
            Role::Technician,
            CURRENT,
            Credential::TechnicianToken {
                token: api_token.clone(),
            },
        )
        .await,
    );
    assert_eq!(r.code, ErrorCode::CredentialRevoked);
    let (status, body) = relay
        .api("GET", "/api/v1/devices", Some(&api_token), None)
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("CREDENTIAL_REVOKED"))
    );

    // Expired token: the relay's clock moves past the token's life.
    let short = relay
        .store
        .sign_in(&team.owner_email, PASSWORD, 60_000)
        .await
        .unwrap()
        .unwrap()
        .token;
    relay.clock.advance(Duration::from_secs(61));
    let mut c = relay.connect().await;
    let r = handshake_refusal(
        c.handshake(
            Role::Technician,
            CURRENT,
            Credential::TechnicianToken { token: short },
        )
        .await,
    );
    assert_eq!(r.code, ErrorCode::AuthenticationFailed);
    assert!(r.message.contains("expired"), "{}", r.message);

    // A streamer credential presented by a technician, and the reverse.
    let mut c = relay.connect().await;
    let r = handshake_refusal(
        c.handshake(
            Role::Streamer,
            CURRENT,
            Credential::TechnicianToken {
                token: team.token.clone(),
            },
        )
        .await,
    );
    assert_eq!(r.code, ErrorCode::CredentialNotAllowed);

    // Unknown attended key, wrong device secret, unknown deployment code.
    let mut c = relay.connect().await;
    let r = handshake_refusal(
        c.handshake(
            Role::Streamer,
            CURRENT,
            Credential::Attended {
                team_key: "nope".into(),
                device_name: "x".into(),
            },
        )
        .await,
    );
    assert_eq!(r.code, ErrorCode::AuthenticationFailed);
    let (_s, device_id, _) = relay.device(&team, CURRENT).await;
    let mut c = relay.connect().await;
    let r = handshake_refusal(
        c.handshake(
            Role::Streamer,
            CURRENT,
            Credential::Device {
                device_id,
                secret: "wrong".into(),
            },
        )
        .await,
    );
    assert_eq!(r.code, ErrorCode::AuthenticationFailed);
    let mut c = relay.connect().await;
    let r = handshake_refusal(
        c.handshake(
            Role::Streamer,
            CURRENT,
            Credential::DeploymentCode {
                code: "nope".into(),
                device_name: "x".into(),
            },
        )
        .await,
    );
    assert_eq!(r.code, ErrorCode::AuthenticationFailed);

    bystander.still_forwards().await;
    relay.stop().await;
}

#[tokio::test]
async fn other_teams_devices_and_codes_are_not_found() {
    let relay = TestRelay::start().await;
    let mut bystander = Bystander::start(&relay).await;
    let ours = relay.team("ours").await;
    let theirs = relay.team("theirs").await;
    let (_their_streamer, their_device, _) = relay.device(&theirs, CURRENT).await;
    let (their_attended, their_code) = relay.attended(&theirs, CURRENT).await;
    let mut tech = relay.technician(&ours).await;

    let (code, message) = request_refused(
        &mut tech,
        SessionTarget::Device {
            device_id: their_device.clone(),
        },
    )
    .await;
    assert_eq!(code, ErrorCode::DeviceNotFound);
    assert_eq!(message, "Your team has no such device.");
    let (code, _) = request_refused(
        &mut tech,
        SessionTarget::Device {
            device_id: "no-such-device".into(),
        },
    )
    .await;
    assert_eq!(
        code,
        ErrorCode::DeviceNotFound,
        "indistinguishable from another team's device"
    );
    let (code, _) = request_refused(
        &mut tech,
        SessionTarget::Code {
            code: their_code.clone(),
        },
    )
    .await;
    assert_eq!(code, ErrorCode::SessionCodeInvalid);

    // Nor can our owner revoke their device through the API.
    let (status, body) = relay
        .api(
            "POST",
            &format!("/api/v1/devices/{their_device}/revoke"),
            Some(&ours.token),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("DEVICE_NOT_FOUND"))
    );

    // Their technician can still use both.
    let mut their_tech = relay.technician(&theirs).await;
    let mut their_attended = their_attended;
    pair(
        &mut their_tech,
        &mut their_attended,
        SessionTarget::Code { code: their_code },
    )
    .await;
    bystander.still_forwards().await;
    relay.stop().await;
}

/// Connects as a device with `secret`; the handshake's outcome.
async fn as_device(
    relay: &TestRelay,
    device_id: &str,
    secret: &str,
) -> (
    Connection,
    Result<relay_client::Established, relay_client::LinkError>,
) {
    let mut c = relay.connect().await;
    let est = c
        .handshake(
            Role::Streamer,
            CURRENT,
            Credential::Device {
                device_id: device_id.into(),
                secret: secret.into(),
            },
        )
        .await;
    (c, est)
}

/// The next secret a device connection was handed (protocol 1.4.0).
fn next_secret(est: &relay_client::Established, device_id: &str) -> String {
    let (id, secret) = est.registered.clone().expect("the device's next secret");
    assert_eq!(id, device_id);
    secret
}

/// The team's audit events with this action.
async fn audited(relay: &TestRelay, team: &Team, action: &str) -> Vec<serde_json::Value> {
    let (status, body) = relay
        .api(
            "GET",
            &format!("/api/v1/audit?action={action}"),
            Some(&team.token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["events"].as_array().unwrap().clone()
}

/// Review finding 1, the rest: a device's secret is renewed at every connection, so a copy of the
/// credential is useless after the computer's next connection, and a copy presented then is
/// noticed: the device is revoked (nobody can tell which is the computer), its live connection
/// cut off, and the audit trail says why. A streamer that lost its next secret still connects.
#[tokio::test]
async fn a_copied_device_secret_is_useless_after_the_next_connection_and_found_out() {
    let relay = TestRelay::start().await;
    let mut bystander = Bystander::start(&relay).await;
    let team = relay.team("acme").await;
    let (first, device_id, copied) = relay.device(&team, CURRENT).await;
    drop(first);

    // The computer connects: it is handed its next secret, and keeps the connection.
    let (lost, est) = as_device(&relay, &device_id, &copied).await;
    let unused = next_secret(&est.unwrap(), &device_id);
    drop(lost);
    // Cut off before it stored that one, it connects with the one it has, and is renewed again.
    let (previous, est) = as_device(&relay, &device_id, &copied).await;
    let renewed = next_secret(&est.unwrap(), &device_id);
    assert_ne!(renewed, unused);
    drop(previous);
    let (mut computer, est) = as_device(&relay, &device_id, &renewed).await;
    let current = next_secret(&est.unwrap(), &device_id);
    assert_ne!(current, renewed);

    // The copy taken before is refused now, and its use revokes the device.
    let (_, est) = as_device(&relay, &device_id, &copied).await;
    let refusal = handshake_refusal(est);
    assert_eq!(
        refusal.code,
        ErrorCode::CredentialRevoked,
        "{}",
        refusal.message
    );
    assert!(
        refusal.message.contains("used from two places"),
        "{}",
        refusal.message
    );
    let (code, _) = refused(&mut computer).await;
    assert_eq!(code, ErrorCode::CredentialRevoked);
    let (_, est) = as_device(&relay, &device_id, &current).await;
    assert_eq!(handshake_refusal(est).code, ErrorCode::CredentialRevoked);
    let events = audited(&relay, &team, "device_credential_reused").await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["object"], device_id.as_str());
    let (status, body) = relay
        .api("GET", "/api/v1/devices", Some(&team.token), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let listed = body
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == device_id.as_str())
        .cloned()
        .unwrap_or_default();
    assert_eq!(listed["revoked"], true, "{body}");
    bystander.still_forwards().await;
    relay.stop().await;
}

/// A copy used while the computer is connected replaces the computer's connection
/// (`CONNECTED_ELSEWHERE`, not a revocation: the streamer connects again), and the computer's
/// reconnection, with the secret the copy's connection retired, reveals the copy: the device is
/// revoked and the copy's connection cut off too.
#[tokio::test]
async fn a_copy_used_first_is_found_out_when_the_computer_connects_again() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (first, device_id, copied) = relay.device(&team, CURRENT).await;
    drop(first);
    let (mut computer, est) = as_device(&relay, &device_id, &copied).await;
    let held = next_secret(&est.unwrap(), &device_id);

    let (mut copy, est) = as_device(&relay, &device_id, &copied).await;
    est.expect("the copy still holds the current secret");
    let (code, message) = refused(&mut computer).await;
    assert_eq!(code, ErrorCode::ConnectedElsewhere, "{message}");

    let (_, est) = as_device(&relay, &device_id, &held).await;
    let refusal = handshake_refusal(est);
    assert_eq!(
        refusal.code,
        ErrorCode::CredentialRevoked,
        "{}",
        refusal.message
    );
    let (code, _) = refused(&mut copy).await;
    assert_eq!(code, ErrorCode::CredentialRevoked);
    assert_eq!(
        audited(&relay, &team, "device_credential_reused")
            .await
            .len(),
        1
    );
    relay.stop().await;
}

/// Once a device's secret has been renewed, a connection that cannot renew it (an older protocol:
/// a copy pretending to be an old streamer to keep a secret that never changes) is refused, with
/// the version it needs. Before any renewal an older streamer connects as it always did.
#[tokio::test]
async fn a_renewed_device_is_refused_on_a_protocol_that_cannot_renew() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (first, device_id, secret) = relay.device(&team, CURRENT).await;
    drop(first);
    let credential = |secret: &str| Credential::Device {
        device_id: device_id.clone(),
        secret: secret.into(),
    };
    let (older, _) = relay
        .client_speaking(Role::Streamer, credential(&secret), "1.3.0")
        .await;
    drop(older);
    let (_, est) = as_device(&relay, &device_id, &secret).await;
    let next = next_secret(&est.unwrap(), &device_id);

    let mut c = relay.connect().await;
    c.send(&Message::Hello {
        role: Role::Streamer,
        product_version: CURRENT.to_string(),
        protocol_versions: vec!["1.3.0".into()],
    })
    .await
    .unwrap();
    assert!(matches!(recv(&mut c).await, Message::Welcome { .. }));
    c.send(&Message::Authenticate(credential(&next)))
        .await
        .unwrap();
    let (code, message) = refused(&mut c).await;
    assert_eq!(code, ErrorCode::ProtocolVersionUnsupported, "{message}");
    assert!(message.contains("1.4.0"), "{message}");
    // The computer itself still connects.
    let (_, est) = as_device(&relay, &device_id, &next).await;
    next_secret(&est.unwrap(), &device_id);
    relay.stop().await;
}

#[tokio::test]
async fn revoked_device_is_disconnected_and_cannot_return() {
    let relay = TestRelay::start().await;
    let mut bystander = Bystander::start(&relay).await;
    let team = relay.team("acme").await;
    let (mut streamer, device_id, secret) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;
    pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device {
            device_id: device_id.clone(),
        },
    )
    .await;

    let (status, _) = relay
        .api(
            "POST",
            &format!("/api/v1/devices/{device_id}/revoke"),
            Some(&team.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    // The session ends with that reason on both sides, and the device is refused.
    loop {
        match recv(&mut tech).await {
            Message::SessionEnded { reason, .. } => {
                assert_eq!(reason, EndReason::CredentialRevoked);
                break;
            }
            _ => continue,
        }
    }
    let (code, _) = refused(&mut streamer).await;
    assert_eq!(code, ErrorCode::CredentialRevoked);

    let mut again = relay.connect().await;
    let r = handshake_refusal(
        again
            .handshake(
                Role::Streamer,
                CURRENT,
                Credential::Device {
                    device_id: device_id.clone(),
                    secret,
                },
            )
            .await,
    );
    assert_eq!(r.code, ErrorCode::CredentialRevoked);
    let (code, _) = request_refused(&mut tech, SessionTarget::Device { device_id }).await;
    assert_eq!(code, ErrorCode::DeviceNotFound);

    // A member may not revoke devices.
    let member_email = "member@acme.example";
    relay
        .store
        .add_user(
            &team.id,
            member_email,
            "Mem",
            relay::store::UserRole::Member,
            PASSWORD,
        )
        .await
        .unwrap();
    let member = relay.sign_in(member_email).await;
    let (_s2, other_id, _) = relay.device(&team, CURRENT).await;
    let (status, _) = relay
        .api(
            "POST",
            &format!("/api/v1/devices/{other_id}/revoke"),
            Some(&member),
            None,
        )
        .await;
    assert_eq!(status, 403);
    bystander.still_forwards().await;
    relay.stop().await;
}

#[tokio::test]
async fn signing_out_cuts_off_the_tokens_live_connections_at_once() {
    let relay = TestRelay::start().await;
    let mut bystander = Bystander::start(&relay).await;
    let team = relay.team("acme").await;
    // The owner has a second sign-in (another computer) that must not be affected.
    let other_sign_in = relay.sign_in(&team.owner_email).await;
    let (mut in_session, mut streamer, device_id, _) = relay.in_session(&team).await;
    let mut idle = relay.technician(&team).await;

    let (status, _) = relay
        .api("POST", "/api/v1/sign-out", Some(&team.token), None)
        .await;
    assert_eq!(status, 204);
    // Both connections of that sign-in are refused and closed; the session ends with the reason.
    for c in [&mut in_session, &mut idle] {
        let (code, message) = refused(c).await;
        assert_eq!(code, ErrorCode::CredentialRevoked, "{message}");
        assert!(message.contains("signed out"), "{message}");
    }
    loop {
        if let Message::SessionEnded { reason, message } = recv(&mut streamer).await {
            assert_eq!(reason, EndReason::CredentialRevoked);
            assert!(message.contains("signed out"), "{message}");
            break;
        }
    }
    // Replaying the token is refused; the other sign-in connects and reaches the same computer,
    // whose streamer stayed online.
    let replay = Credential::TechnicianToken {
        token: team.token.clone(),
    };
    let r = handshake_refusal(relay.handshake_as(Role::Technician, replay).await.1);
    assert_eq!(r.code, ErrorCode::CredentialRevoked);
    let fresh = Credential::TechnicianToken {
        token: other_sign_in,
    };
    let (mut other, result) = relay.handshake_as(Role::Technician, fresh).await;
    result.unwrap();
    pair(
        &mut other,
        &mut streamer,
        SessionTarget::Device { device_id },
    )
    .await;
    bystander.still_forwards().await;
    relay.stop().await;
}

#[tokio::test]
async fn wrong_and_expired_session_codes_are_refused() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (_streamer, code) = relay.attended(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;
    let wrong = if code == "000000000" {
        "000000001"
    } else {
        "000000000"
    };
    for bad in [wrong, "12345", "abcdefghi", "1234567890"] {
        let (c, message) =
            request_refused(&mut tech, SessionTarget::Code { code: bad.into() }).await;
        assert_eq!(c, ErrorCode::SessionCodeInvalid, "{bad}");
        assert!(message.contains("not valid"), "{message}");
    }
    // Past its life (10 minutes by default) the right code is refused too.
    relay.clock.advance(Duration::from_secs(10 * 60 + 1));
    let (c, _) = request_refused(&mut tech, SessionTarget::Code { code }).await;
    assert_eq!(c, ErrorCode::SessionCodeInvalid);
    relay.stop().await;
}

/// The agents' path refuses what is not a WebSocket upgrade, with the status that says what to send.
#[tokio::test]
async fn the_agent_path_refuses_what_is_not_a_websocket_upgrade() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let relay = TestRelay::start().await;
    for (request, status) in [
        ("GET /v1/agent HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", "426"),
        (
            "GET /v1/agent HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
            "426",
        ),
        (
            "GET /v1/agent HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade, close\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n",
            "400",
        ),
    ] {
        let mut tls = relay.connector.tls(&relay.addr).await.unwrap();
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{request:?}: {answer}"
        );
    }
    relay.stop().await;
}

/// Review finding 11: a connection that has not finished its handshake cannot make the relay hold a
/// large message. A Hello-kind message of 1 MiB (within the largest frame) is sent all but its last
/// byte: the relay refuses it once 64 KiB have come, rather than buffering it for the hello timeout.
#[tokio::test]
async fn a_large_message_before_the_handshake_is_refused_before_it_is_whole() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    let relay = TestRelay::start().await;
    let mut bystander = Bystander::start(&relay).await;
    let (mut rd, mut wr) = tokio::io::split(relay.raw_agent_socket().await);
    let len: usize = 1 << 20;
    // A masked binary WebSocket message (mask key 0: the payload is as written), 64-bit length.
    let mut message = vec![0x82, 0x80 | 127];
    message.extend_from_slice(&(len as u64).to_be_bytes());
    message.extend_from_slice(&[0, 0, 0, 0]);
    // The protocol frame's header: a Hello whose body is the rest.
    message.push(0x01);
    message.extend_from_slice(&u32::try_from(len - 5).unwrap().to_be_bytes());
    message.resize(message.len() + len - 5 - 1, b'x');
    let sender = tokio::spawn(async move {
        // The relay may stop reading once it refused; what it still reads it drops.
        let _ = wr.write_all(&message).await;
        wr
    });
    // The relay's answer: one unmasked binary message holding a Refused frame.
    let answer = tokio::time::timeout(Duration::from_secs(5), async {
        let mut first = [0u8; 2];
        rd.read_exact(&mut first).await?;
        let len = match first[1] & 0x7f {
            126 => usize::from(rd.read_u16().await?),
            127 => usize::try_from(rd.read_u64().await?).unwrap(),
            n => usize::from(n),
        };
        let mut body = vec![0u8; len];
        rd.read_exact(&mut body).await?;
        std::io::Result::Ok((first[0], body))
    })
    .await
    .expect("refused before the hello timeout, without the message's last byte")
    .unwrap();
    assert_eq!(answer.0, 0x82, "a binary message");
    match decode_frame(Bytes::from(answer.1)).unwrap() {
        Message::Refused { code, message } => {
            assert_eq!(code, ErrorCode::MessageTooLarge, "{message}");
            assert!(message.contains("before the handshake ended"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    drop(sender);
    bystander.still_forwards().await;
    relay.stop().await;
}

#[tokio::test]
async fn malformed_and_oversized_messages_are_refused() {
    let relay = TestRelay::start().await;
    let mut bystander = Bystander::start(&relay).await;

    // Garbage instead of a Hello.
    let mut c = relay.connect().await;
    c.send_raw(Bytes::from_static(b"GET / HTTP/1.1"))
        .await
        .unwrap();
    let (code, message) = refused(&mut c).await;
    assert_eq!(code, ErrorCode::MalformedMessage, "{message}");

    // A Hello whose header announces more than its kind allows.
    let mut c = relay.connect().await;
    c.send_raw(Bytes::from_static(&[0x01, 0x00, 0x01, 0x00, 0x00]))
        .await
        .unwrap();
    let (code, message) = refused(&mut c).await;
    assert_eq!(code, ErrorCode::MessageTooLarge);
    assert!(
        message.contains("exceeds the limit of 4096 bytes"),
        "{message}"
    );

    // Text instead of binary.
    let mut c = relay.connect().await;
    c.send_text("hello").await.unwrap();
    assert_eq!(refused(&mut c).await.0, ErrorCode::MalformedMessage);

    // A malformed product version.
    let mut c = relay.connect().await;
    c.send(&Message::Hello {
        role: Role::Streamer,
        product_version: "3.5.8".into(),
        protocol_versions: vec!["1.0.0".into()],
    })
    .await
    .unwrap();
    let (code, message) = refused(&mut c).await;
    assert_eq!(code, ErrorCode::MalformedVersion);
    assert!(message.contains("\"3.5.8\""), "{message}");

    // A WebSocket message over the largest frame is refused like every other refusal (the
    // WebSocket layer stops at its header), whether it is just over or far over the limit.
    for extra in [1, 3 * protocol::max_frame_len()] {
        let mut c = relay.connect().await;
        let too_big = Bytes::from(vec![0u8; protocol::max_frame_len() + extra]);
        let _ = c.send_raw(too_big).await;
        let (code, message) = tokio::time::timeout(Duration::from_secs(10), refused(&mut c))
            .await
            .expect("refused promptly");
        assert_eq!(code, ErrorCode::MessageTooLarge, "{message}");
        assert!(
            message.contains("larger than the largest frame"),
            "{message}"
        );
    }

    // Inside a session: a technician sending a streamer's kind is refused and the session ends.
    let team = relay.team("acme").await;
    let (mut streamer, id, _) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;
    pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id: id },
    )
    .await;
    tech.send(&Message::VideoFrame(VideoFrame {
        keyframe: true,
        timestamp_us: 0,
        payload: Bytes::new(),
    }))
    .await
    .unwrap();
    assert_eq!(refused(&mut tech).await.0, ErrorCode::UnexpectedMessage);
    loop {
        if let Message::SessionEnded { reason, .. } = recv(&mut streamer).await {
            assert_eq!(reason, EndReason::ProtocolError);
            break;
        }
    }

    bystander.still_forwards().await;
    relay.stop().await;
}

#[tokio::test]
async fn handshake_timeout_is_refused() {
    let relay = TestRelay::start_with(|c| {
        c.hello_timeout_ms = 300;
        c.handshake_timeout_ms = 600;
    })
    .await;
    // Silent after connecting.
    let mut c = relay.connect().await;
    let (code, message) = refused(&mut c).await;
    assert_eq!(code, ErrorCode::Timeout);
    assert!(message.contains("handshake took too long"), "{message}");
    // Hello, then silence.
    let mut c = relay.connect().await;
    c.send(&Message::Hello {
        role: Role::Technician,
        product_version: "3.5.8.0".into(),
        protocol_versions: vec!["1.0.0".into()],
    })
    .await
    .unwrap();
    assert!(matches!(recv(&mut c).await, Message::Welcome { .. }));
    assert_eq!(refused(&mut c).await.0, ErrorCode::Timeout);
    relay.stop().await;
}

#[tokio::test]
async fn a_technician_that_stops_reading_does_not_grow_the_relays_memory() {
    const BUDGET: usize = 9 * 1024 * 1024;
    let relay = TestRelay::start_with(|c| c.forward_buffer_bytes = BUDGET).await;
    let team = relay.team("acme").await;
    let (mut streamer, id, _) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;
    pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id: id },
    )
    .await;
    recv(&mut tech).await;
    recv(&mut streamer).await;

    // The technician reads nothing more. The streamer pushes 256 KiB frames until its writes stall.
    let frame = encode_to_bytes(&Message::VideoFrame(VideoFrame {
        keyframe: false,
        timestamp_us: 1,
        payload: Bytes::from(vec![7u8; 256 * 1024]),
    }))
    .unwrap();
    let mut sent = 0usize;
    let offered = 400 * frame.len(); // 100 MiB
    while sent < offered {
        match tokio::time::timeout(Duration::from_secs(2), streamer.send_raw(frame.clone())).await {
            Ok(Ok(())) => sent += frame.len(),
            Ok(Err(e)) => panic!("the streamer's connection failed: {e}"),
            Err(_) => break,
        }
    }
    // What the relay took is its budget plus what the kernel's socket buffers and the WebSocket
    // layers hold on the way: far below what was offered.
    assert!(
        sent < offered,
        "the relay accepted all {offered} bytes: no backpressure"
    );
    assert!(
        sent < BUDGET + 32 * 1024 * 1024,
        "the relay took {sent} bytes for a stalled reader"
    );

    // Once the technician reads again, everything it was sent arrives intact.
    let mut got = 0usize;
    while got + frame.len() <= sent {
        match recv(&mut tech).await {
            Message::VideoFrame(f) => {
                assert_eq!(f.payload.len(), 256 * 1024);
                got += frame.len();
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn shutdown_ends_sessions_with_a_reason_and_returns() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut streamer, id, _) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;
    pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id: id },
    )
    .await;
    let mut idle_tech = relay.technician(&team).await;
    let started = std::time::Instant::now();
    relay.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "drained within the deadline"
    );
    for c in [&mut tech, &mut streamer] {
        loop {
            if let Message::SessionEnded { reason, .. } = recv(c).await {
                assert_eq!(reason, EndReason::RelayShuttingDown);
                break;
            }
        }
    }
    assert_eq!(
        refused(&mut idle_tech).await.0,
        ErrorCode::RelayShuttingDown
    );
}

/// Sends `msg` until the connection fails or `count` went out; returns how many went out.
async fn flood(c: &mut Connection, msg: &Message, count: usize) -> usize {
    let bytes = encode_to_bytes(msg).unwrap();
    for i in 0..count {
        if c.send_raw(bytes.clone()).await.is_err() {
            return i;
        }
    }
    count
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_floods_are_refused_and_others_keep_going() {
    let relay = TestRelay::start_with(|c| c.max_messages_per_sec = 200).await;
    let mut bystander = Bystander::start(&relay).await;
    let team = relay.team("floods").await;

    // Outside a session: a harmless message, far faster than 200 a second (400 in a burst).
    let mut tech = relay.technician(&team).await;
    flood(&mut tech, &Message::LeaveSession, 2_000).await;
    let (code, message) = refused(&mut tech).await;
    assert_eq!(code, ErrorCode::RateLimited, "{message}");
    assert!(message.contains("200 messages a second"), "{message}");
    bystander.still_forwards().await;

    // In a session: input floods the streamer. The session ends, the streamer is told why, and
    // its connection stays up for the next session.
    let (mut tech, mut streamer, id, _) = relay.in_session(&team).await;
    let move_to = |x| {
        Message::MouseInput(MouseInput {
            action: MouseAction::Move,
            button: MouseButton::None,
            x,
            y: 1,
            wheel_x: 0,
            wheel_y: 0,
        })
    };
    let reader = tokio::spawn(async move {
        // The streamer takes what is forwarded until the session ends.
        let mut moves = 0usize;
        loop {
            match recv(&mut streamer).await {
                Message::MouseInput(_) => moves += 1,
                Message::SessionEnded { reason, .. } => return (streamer, moves, reason),
                _ => {}
            }
        }
    });
    flood(&mut tech, &move_to(5), 5_000).await;
    let (code, _) = refused(&mut tech).await;
    assert_eq!(code, ErrorCode::RateLimited);
    let (mut streamer, moves, reason) = reader.await.unwrap();
    assert_eq!(reason, EndReason::ProtocolError);
    assert!(
        (300..=600).contains(&moves),
        "{moves} moves were forwarded: the burst, not the flood"
    );
    bystander.still_forwards().await;

    // A technician within the rate is never refused: 150 moves a second for 3 seconds, to a
    // streamer that is still online after the flood.
    let mut tech = relay.technician(&team).await;
    pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id: id },
    )
    .await;
    recv(&mut tech).await;
    recv(&mut streamer).await;
    let mut tick = tokio::time::interval(Duration::from_micros(6_667));
    for x in 0..450 {
        tick.tick().await;
        tech.send(&move_to(x)).await.unwrap();
    }
    for x in 0..450 {
        assert_eq!(recv(&mut streamer).await, move_to(x));
    }
    relay.stop().await;
}

#[tokio::test]
async fn device_list_and_session_request_floods_are_refused() {
    let relay = TestRelay::start().await;
    let team = relay.team("lists").await;
    let mut tech = relay.technician(&team).await;
    // 5 a second, 10 in a burst: the relay answers these from its database.
    let mut answered = 0;
    let code = loop {
        tech.send(&Message::ListDevices).await.unwrap();
        match recv(&mut tech).await {
            Message::DeviceStatusList(_) => answered += 1,
            Message::Refused { code, .. } => break code,
            other => panic!("unexpected {other:?}"),
        }
        assert!(answered < 100, "never refused");
    };
    assert_eq!(code, ErrorCode::RateLimited);
    assert!((10..=15).contains(&answered), "{answered} lists answered");
    // A new connection starts with a full allowance.
    let mut tech = relay.technician(&team).await;
    tech.send(&Message::ListDevices).await.unwrap();
    assert!(matches!(
        recv(&mut tech).await,
        Message::DeviceStatusList(_)
    ));
    relay.stop().await;
}
