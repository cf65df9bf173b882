//! A walk through the protocol with the real codec and state machines, printed frame by frame.
//!
//! There is no network here (the relay server is issue 3): the technician's and streamers' handshake
//! machines and the relay's are wired to each other through encoded bytes, and the relay's credential
//! check is answered by this program. It shows the handshake, the recording gate admitting a 3.5.8.0
//! streamer and refusing a 3.5.7.9 one with the SPEC's error, and the first messages of a session.

use std::process::ExitCode;

use bytes::Bytes;
use protocol::*;

fn show(direction: &str, msg: &Message) -> Result<Bytes, WireError> {
    let frame = encode_to_bytes(msg)?;
    let hex: String = frame.iter().take(24).map(|b| format!("{b:02x} ")).collect();
    let more = if frame.len() > 24 { "..." } else { "" };
    println!(
        "  {direction} {:<18} {:>4} bytes  {hex}{more}",
        msg.kind().name(),
        frame.len()
    );
    Ok(frame)
}

/// Runs one client's handshake against a relay machine; returns the peer the relay established.
fn handshake(
    label: &str,
    role: Role,
    version: ProductVersion,
    credential: Credential,
) -> Result<Peer, Box<dyn std::error::Error>> {
    println!("\n{label}:");
    let (mut client, hello) = ClientHandshake::start(role, version, credential);
    let mut relay = RelayHandshake::new(ProductVersion::this_build()?);
    let mut to_relay = vec![show("->", &hello)?];
    while let Some(frame) = to_relay.pop() {
        let replies = match relay.receive_frame(frame) {
            RelayAction::Reply(msg) => vec![msg],
            RelayAction::Verify { .. } => match relay.verdict(Ok(Verified {
                team_id: "team-demo".into(),
                name: label.into(),
                issued: None,
            })) {
                RelayAction::Established { replies, peer } => {
                    for msg in &replies {
                        client.receive(decode_frame(show("<-", msg)?)?)?;
                    }
                    return Ok(peer);
                }
                other => return Err(format!("unexpected {other:?}").into()),
            },
            RelayAction::Refuse(r) => return Err(r.into()),
            RelayAction::Established { .. } => return Err("established without a verdict".into()),
        };
        for msg in replies {
            if let ClientEvent::Send(next) = client.receive(decode_frame(show("<-", &msg)?)?)? {
                to_relay.push(show("->", &next)?);
            }
        }
    }
    Err("the handshake stopped early".into())
}

fn request_recorded_session(streamer: &Peer) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "\nTechnician asks for a recorded session with a streamer {}:",
        streamer.product_version
    );
    let request = Message::SessionRequest {
        target: SessionTarget::Device {
            device_id: "dev-1".into(),
        },
        view: ViewRequest::default(),
    };
    decode_frame(show("->", &request)?)?;
    match recorded_session_gate(&streamer.product_version) {
        Ok(()) => {
            show(
                "<-",
                &Message::SessionStarted {
                    session_id: "sess-1".into(),
                    device_name: streamer.name.clone(),
                    streamer_version: streamer.product_version.to_string(),
                    access: AccessType::Unattended,
                    recorded: true,
                },
            )?;
            show("<-", &Message::RecordingState { recorded: true })?;
            show(
                "<-",
                &Message::VideoConfig(VideoConfig {
                    codec: VideoCodec::H264,
                    width: 1920,
                    height: 1080,
                    frame_rate: 30,
                    monitor_id: 0,
                    orientation: Orientation::Landscape,
                }),
            )?;
            println!("  the relay admitted it; the session is recorded from its first frame");
        }
        Err(refusal) => {
            let refused = Message::SessionRefused {
                code: refusal.code,
                message: refusal.message.clone(),
            };
            show("<-", &refused)?;
            println!("  refused: {} ({})", refusal.code, refusal.code.number());
            println!("  \"{}\"", refusal.message);
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = (|| -> Result<(), Box<dyn std::error::Error>> {
        let this = ProductVersion::this_build()?;
        println!(
            "Protocol {} walk-through, product {this}",
            PROTOCOL_VERSIONS[0]
        );
        let token = Credential::TechnicianToken {
            token: "demo-token".into(),
        };
        let device = Credential::Device {
            device_id: "dev-1".into(),
            secret: "demo-secret".into(),
        };
        handshake("Technician signs in", Role::Technician, this, token)?;
        let current = handshake(
            "Streamer 3.5.8.0 connects",
            Role::Streamer,
            MIN_RECORDED_STREAMER,
            device.clone(),
        )?;
        let old = handshake(
            "Streamer 3.5.7.9 connects",
            Role::Streamer,
            ProductVersion::new(3, 5, 7, 9),
            device,
        )?;
        request_recorded_session(&current)?;
        request_recorded_session(&old)?;
        Ok(())
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conversation: {e}");
            ExitCode::FAILURE
        }
    }
}
