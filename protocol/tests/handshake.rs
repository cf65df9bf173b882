//! The handshake driven through bytes on both sides with no IO: success and every refusal.

// Test helpers unwrap on purpose: a failure should stop the test loudly where it happens.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use bytes::Bytes;
use protocol::*;

const RELAY: ProductVersion = ProductVersion::new(3, 5, 8, 0);
const STREAMER: ProductVersion = ProductVersion::new(3, 5, 8, 0);

fn wire(msg: &Message) -> Bytes {
    encode_to_bytes(msg).unwrap()
}

fn token() -> Credential {
    Credential::TechnicianToken {
        token: "tok-123".into(),
    }
}

fn verified(issued: Option<Issued>) -> Verified {
    Verified {
        team_id: "team-1".into(),
        name: "Ada".into(),
        issued,
    }
}

fn expect_refusal(action: RelayAction, code: ErrorCode) -> Refusal {
    match action {
        RelayAction::Refuse(r) => {
            assert_eq!(r.code, code, "{r}");
            r
        }
        other => panic!("expected a refusal with {code}, got {other:?}"),
    }
}

/// Runs both machines against each other through encoded frames until the relay must verify.
fn to_verify(role: Role, credential: Credential) -> (ClientHandshake, RelayHandshake) {
    let (mut client, hello) = ClientHandshake::start(role, STREAMER, credential.clone());
    let mut relay = RelayHandshake::new(RELAY);
    let RelayAction::Reply(welcome) = relay.receive_frame(wire(&hello)) else {
        panic!("hello refused")
    };
    assert_eq!(
        welcome,
        Message::Welcome {
            protocol_version: "1.4.0".into(),
            relay_version: "3.5.8.0".into()
        }
    );
    let welcome = decode_frame(wire(&welcome)).unwrap();
    let ClientEvent::Send(auth) = client.receive(welcome).unwrap() else {
        panic!("client did not authenticate")
    };
    assert_eq!(auth, Message::Authenticate(credential.clone()));
    assert_eq!(
        relay.receive_frame(wire(&auth)),
        RelayAction::Verify {
            role,
            credential,
            protocol_version: semver::Version::new(1, 4, 0)
        }
    );
    (client, relay)
}

#[test]
fn technician_handshake_succeeds() {
    let (mut client, mut relay) = to_verify(Role::Technician, token());
    let RelayAction::Established { replies, peer } = relay.verdict(Ok(verified(None))) else {
        panic!("not established")
    };
    assert_eq!(peer.role, Role::Technician);
    assert_eq!(peer.product_version, STREAMER);
    assert_eq!(peer.protocol_version, semver::Version::new(1, 4, 0));
    assert_eq!(peer.team_id, "team-1");
    assert_eq!(replies.len(), 1);
    let event = client
        .receive(decode_frame(wire(&replies[0])).unwrap())
        .unwrap();
    assert_eq!(
        event,
        ClientEvent::Established {
            protocol_version: semver::Version::new(1, 4, 0),
            team_id: "team-1".into(),
            name: "Ada".into()
        }
    );
    // Anything more is outside the handshake, for both machines.
    assert!(matches!(
        client.receive(Message::KeyframeRequest),
        Err(ClientHandshakeError::Protocol(_))
    ));
    expect_refusal(
        relay.receive(Message::ListDevices),
        ErrorCode::UnexpectedMessage,
    );
}

#[test]
fn streamer_registers_with_a_deployment_code() {
    let credential = Credential::DeploymentCode {
        code: "DEPLOY-1".into(),
        device_name: "Front desk".into(),
    };
    let (mut client, mut relay) = to_verify(Role::Streamer, credential);
    let issued = Issued::Device {
        device_id: "dev-9".into(),
        secret: "s3cret".into(),
    };
    let RelayAction::Established { replies, .. } = relay.verdict(Ok(verified(Some(issued)))) else {
        panic!("not established")
    };
    let events: Vec<_> = replies
        .iter()
        .map(|m| client.receive(m.clone()).unwrap())
        .collect();
    assert_eq!(
        events[0],
        ClientEvent::Registered {
            device_id: "dev-9".into(),
            secret: "s3cret".into()
        }
    );
    assert!(matches!(events[1], ClientEvent::Established { .. }));
}

/// From 1.4.0 a device credential is answered with the device's next secret, for that device only.
#[test]
fn a_device_gets_its_next_secret_from_1_4_0() {
    let credential = Credential::Device {
        device_id: "dev-9".into(),
        secret: "old".into(),
    };
    let (mut client, mut relay) = to_verify(Role::Streamer, credential.clone());
    let next = Issued::Device {
        device_id: "dev-9".into(),
        secret: "new".into(),
    };
    let RelayAction::Established { replies, .. } = relay.verdict(Ok(verified(Some(next)))) else {
        panic!("not established")
    };
    assert_eq!(
        client.receive(replies[0].clone()).unwrap(),
        ClientEvent::Registered {
            device_id: "dev-9".into(),
            secret: "new".into()
        }
    );
    assert!(matches!(
        client.receive(replies[1].clone()).unwrap(),
        ClientEvent::Established { .. }
    ));

    // A secret for another device is the relay's mistake, on both sides.
    let (mut client, mut relay) = to_verify(Role::Streamer, credential.clone());
    let other = Issued::Device {
        device_id: "dev-1".into(),
        secret: "new".into(),
    };
    expect_refusal(
        relay.verdict(Ok(verified(Some(other)))),
        ErrorCode::InternalError,
    );
    assert!(matches!(
        client.receive(Message::Registered {
            device_id: "dev-1".into(),
            secret: "new".into()
        }),
        Err(ClientHandshakeError::Protocol(_))
    ));

    // A side on 1.3.0 gets no next secret: the relay may not issue one.
    let mut relay = RelayHandshake::new(RELAY);
    let hello = Message::Hello {
        role: Role::Streamer,
        product_version: "3.5.8.0".into(),
        protocol_versions: vec!["1.3.0".into()],
    };
    assert!(matches!(relay.receive(hello), RelayAction::Reply(_)));
    assert_eq!(
        relay.receive(Message::Authenticate(credential)),
        RelayAction::Verify {
            role: Role::Streamer,
            credential: Credential::Device {
                device_id: "dev-9".into(),
                secret: "old".into(),
            },
            protocol_version: semver::Version::new(1, 3, 0)
        }
    );
    let next = Issued::Device {
        device_id: "dev-9".into(),
        secret: "new".into(),
    };
    expect_refusal(
        relay.verdict(Ok(verified(Some(next)))),
        ErrorCode::InternalError,
    );
}

#[test]
fn attended_streamer_receives_a_session_code() {
    let credential = Credential::Attended {
        team_key: "team-key".into(),
        device_name: "Laptop".into(),
    };
    let (mut client, mut relay) = to_verify(Role::Streamer, credential);
    let issued = Issued::SessionCode {
        code: "123456789".into(),
        expires_in_secs: 600,
    };
    let RelayAction::Established { replies, .. } = relay.verdict(Ok(verified(Some(issued)))) else {
        panic!("not established")
    };
    assert_eq!(
        client.receive(replies[0].clone()).unwrap(),
        ClientEvent::SessionCode {
            code: "123456789".into(),
            expires_in_secs: 600
        }
    );
    assert!(matches!(
        client.receive(replies[1].clone()).unwrap(),
        ClientEvent::Established { .. }
    ));
}

#[test]
fn first_message_must_be_hello() {
    let mut relay = RelayHandshake::new(RELAY);
    let r = expect_refusal(
        relay.receive(Message::Authenticate(token())),
        ErrorCode::UnexpectedMessage,
    );
    assert_eq!(r.message, "Authenticate is not allowed before Hello");
}

#[test]
fn malformed_product_version_is_refused() {
    for bad in ["3.5", "3.5.8.0.1", "a.b.c.d", "99999999999.0.0.0", ""] {
        let mut relay = RelayHandshake::new(RELAY);
        let hello = Message::Hello {
            role: Role::Streamer,
            product_version: bad.into(),
            protocol_versions: vec!["1.0.0".into()],
        };
        let r = expect_refusal(
            relay.receive_frame(wire(&hello)),
            ErrorCode::MalformedVersion,
        );
        assert!(
            r.message.contains("malformed product version"),
            "{}",
            r.message
        );
    }
}

#[test]
fn malformed_protocol_version_is_refused() {
    let mut relay = RelayHandshake::new(RELAY);
    let hello = Message::Hello {
        role: Role::Technician,
        product_version: "3.5.8.0".into(),
        protocol_versions: vec!["1.0".into()],
    };
    let r = expect_refusal(relay.receive(hello), ErrorCode::MalformedVersion);
    assert!(
        r.message.starts_with("malformed protocol version \"1.0\""),
        "{}",
        r.message
    );
}

#[test]
fn incompatible_protocol_is_refused_with_both_lists() {
    let mut relay = RelayHandshake::new(RELAY);
    let hello = Message::Hello {
        role: Role::Technician,
        product_version: "4.0.0.0".into(),
        protocol_versions: vec!["2.0.0".into(), "3.1.0".into()],
    };
    let r = expect_refusal(relay.receive(hello), ErrorCode::ProtocolVersionUnsupported);
    assert_eq!(
        r.message,
        "No common protocol version: this side speaks 1.4.0, the peer speaks 2.0.0, 3.1.0. Update the \
         older program."
    );
}

#[test]
fn compatible_newer_minor_negotiates_down() {
    let mut relay = RelayHandshake::new(RELAY);
    let hello = Message::Hello {
        role: Role::Streamer,
        product_version: "3.6.0.0".into(),
        protocol_versions: vec!["1.4.0".into(), "2.0.0".into()],
    };
    assert_eq!(
        relay.receive(hello),
        RelayAction::Reply(Message::Welcome {
            protocol_version: "1.4.0".into(),
            relay_version: "3.5.8.0".into()
        })
    );
}

#[test]
fn an_older_minor_is_agreed_and_the_kinds_it_lacks_are_known() {
    let mut relay = RelayHandshake::new(RELAY);
    let hello = Message::Hello {
        role: Role::Streamer,
        product_version: "3.5.8.0".into(),
        protocol_versions: vec!["1.0.0".into()],
    };
    assert_eq!(
        relay.receive(hello),
        RelayAction::Reply(Message::Welcome {
            protocol_version: "1.0.0".into(),
            relay_version: "3.5.8.0".into()
        })
    );
    let v1_0 = semver::Version::new(1, 0, 0);
    let v1_1 = semver::Version::new(1, 1, 0);
    for kind in [
        MessageKind::SessionTools,
        MessageKind::ToolRefused,
        MessageKind::ClipboardText,
    ] {
        assert!(!kind.known_at(&v1_0), "{kind:?} is not in 1.0.0");
        assert!(kind.known_at(&v1_1), "{kind:?} is in 1.1.0");
    }
    assert!(MessageKind::VideoFrame.known_at(&v1_0));
    let v1_2 = semver::Version::new(1, 2, 0);
    for kind in [
        MessageKind::FileOffer,
        MessageKind::FileRequest,
        MessageKind::FileAccept,
        MessageKind::FileChunk,
        MessageKind::FileProgress,
        MessageKind::FileEnd,
    ] {
        assert!(!kind.known_at(&v1_1), "{kind:?} is not in 1.1.0");
        assert!(kind.known_at(&v1_2), "{kind:?} is in 1.2.0");
    }
    let v1_3 = semver::Version::new(1, 4, 0);
    for kind in [MessageKind::ChatText, MessageKind::DeviceStatusList] {
        assert!(!kind.known_at(&v1_2), "{kind:?} is not in 1.2.0");
        assert!(kind.known_at(&v1_3), "{kind:?} is in 1.3.0");
    }
    assert_eq!(Tool::Clipboard.since(), (1, 1));
    assert_eq!(Tool::FileTransfer.since(), (1, 2));
    assert_eq!(Tool::Chat.since(), (1, 3));
}

#[test]
fn wrong_credential_for_role_is_refused() {
    let cases = [
        (
            Role::Technician,
            Credential::Device {
                device_id: "d".into(),
                secret: "s".into(),
            },
        ),
        (Role::Streamer, token()),
    ];
    for (role, credential) in cases {
        let (_, hello) = ClientHandshake::start(role, STREAMER, credential.clone());
        let mut relay = RelayHandshake::new(RELAY);
        assert!(matches!(relay.receive(hello), RelayAction::Reply(_)));
        expect_refusal(
            relay.receive(Message::Authenticate(credential)),
            ErrorCode::CredentialNotAllowed,
        );
    }
}

#[test]
fn second_hello_is_refused() {
    let (_, hello) = ClientHandshake::start(Role::Technician, STREAMER, token());
    let mut relay = RelayHandshake::new(RELAY);
    assert!(matches!(
        relay.receive(hello.clone()),
        RelayAction::Reply(_)
    ));
    let r = expect_refusal(relay.receive(hello), ErrorCode::UnexpectedMessage);
    assert_eq!(r.message, "Hello is not allowed before Authenticate");
}

#[test]
fn message_while_verifying_is_refused() {
    let (_, mut relay) = to_verify(Role::Technician, token());
    expect_refusal(
        relay.receive(Message::ListDevices),
        ErrorCode::UnexpectedMessage,
    );
    // The verdict that arrives afterwards finds the handshake over.
    expect_refusal(relay.verdict(Ok(verified(None))), ErrorCode::InternalError);
}

#[test]
fn every_credential_refusal_reaches_the_client_with_its_code() {
    for code in [
        ErrorCode::AuthenticationFailed,
        ErrorCode::CredentialRevoked,
        ErrorCode::RateLimited,
        ErrorCode::RelayShuttingDown,
    ] {
        let (mut client, mut relay) = to_verify(Role::Technician, token());
        let refusal = expect_refusal(relay.verdict(Err(Refusal::new(code, "no"))), code);
        let sent = Message::Refused {
            code: refusal.code,
            message: refusal.message.clone(),
        };
        let err = client
            .receive(decode_frame(wire(&sent)).unwrap())
            .unwrap_err();
        assert_eq!(err, ClientHandshakeError::Refused(refusal));
    }
}

#[test]
fn verdict_issuing_the_wrong_thing_is_an_internal_error() {
    let (_, mut relay) = to_verify(Role::Technician, token());
    let wrong = Issued::SessionCode {
        code: "123456789".into(),
        expires_in_secs: 1,
    };
    expect_refusal(
        relay.verdict(Ok(verified(Some(wrong)))),
        ErrorCode::InternalError,
    );
}

#[test]
fn undecodable_and_oversized_frames_are_refused() {
    let mut relay = RelayHandshake::new(RELAY);
    expect_refusal(
        relay.receive_frame(Bytes::from_static(&[0x01, 0, 0, 0, 3, 1, 0])),
        ErrorCode::MalformedMessage,
    );
    let mut relay = RelayHandshake::new(RELAY);
    expect_refusal(
        relay.receive_frame(Bytes::from_static(&[0x01, 0, 1, 0, 0])),
        ErrorCode::MessageTooLarge,
    );
}

#[test]
fn client_refuses_a_welcome_it_cannot_speak() {
    for (chosen, code) in [
        ("2.0.0", ErrorCode::ProtocolVersionUnsupported),
        ("1.9.0", ErrorCode::ProtocolVersionUnsupported),
        ("one", ErrorCode::MalformedVersion),
    ] {
        let (mut client, _) = ClientHandshake::start(Role::Technician, STREAMER, token());
        let err = client
            .receive(Message::Welcome {
                protocol_version: chosen.into(),
                relay_version: "3.5.8.0".into(),
            })
            .unwrap_err();
        let ClientHandshakeError::Protocol(r) = err else {
            panic!("{chosen}: {err:?}")
        };
        assert_eq!(r.code, code, "{chosen}");
    }
}

#[test]
fn client_refuses_unexpected_messages() {
    let (mut client, _) = ClientHandshake::start(Role::Technician, STREAMER, token());
    assert!(matches!(
        client.receive(Message::Authenticated {
            team_id: "t".into(),
            name: "n".into()
        }),
        Err(ClientHandshakeError::Protocol(_))
    ));
    // A technician is never registered as a device.
    let (mut client, mut relay) = to_verify(Role::Technician, token());
    let _ = relay.verdict(Ok(verified(None)));
    assert!(matches!(
        client.receive(Message::Registered {
            device_id: "d".into(),
            secret: "s".into()
        }),
        Err(ClientHandshakeError::Protocol(_))
    ));
}

#[test]
fn gate_refusal_carries_the_spec_text_on_the_wire() {
    let found: ProductVersion = "3.5.7.9".parse().unwrap();
    let refusal = recorded_session_gate(&found).unwrap_err();
    let sent = Message::SessionRefused {
        code: refusal.code,
        message: refusal.message,
    };
    let Message::SessionRefused { code, message } = decode_frame(wire(&sent)).unwrap() else {
        panic!("wrong kind")
    };
    assert_eq!(code.name(), "STREAMER_VERSION_UNSUPPORTED");
    assert_eq!(code.number(), 304);
    assert_eq!(
        message,
        "This computer's streamer is version 3.5.7.9. Your team records every session, which needs \
         streamer version 3.5.8.0 or later. Update the streamer on that computer, then connect again."
    );
}
