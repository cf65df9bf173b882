//! The connection handshake as two state machines, one per side, driven by messages and never by IO.
//!
//! Sequence (docs/PROTOCOL.md, "Handshake"): the client sends `Hello`; the relay answers `Welcome` or
//! `Refused`; the client sends `Authenticate`; the relay checks the credential (the one step this
//! module hands back to its caller, as [`RelayAction::Verify`]) and answers with `Registered` or
//! `SessionCodeIssued` where the credential calls for it (from 1.4.0 `Registered` also follows a
//! device credential: the device's next secret), then `Authenticated`, or `Refused`.

use bytes::Bytes;

use crate::codec::decode_frame;
use crate::error::{ErrorCode, Refusal};
use crate::message::{Credential, Message, Role};
use crate::version::{negotiate_protocol, ProductVersion, PROTOCOL_VERSIONS};

/// What the relay learned about an established client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Technician or streamer.
    pub role: Role,
    /// The client's product version, parsed and valid.
    pub product_version: ProductVersion,
    /// The agreed protocol version.
    pub protocol_version: semver::Version,
    /// The team the client belongs to.
    pub team_id: String,
    /// The technician's or device's name.
    pub name: String,
}

/// What the relay's credential check found, handed back through [`RelayHandshake::verdict`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The team the credential belongs to.
    pub team_id: String,
    /// The technician's or device's name.
    pub name: String,
    /// What the relay issued while checking: required for deployment codes and attended streamers.
    pub issued: Option<Issued>,
}

/// Something the relay issues to a streamer during the handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Issued {
    /// A device credential, for a streamer that registered with a deployment code.
    Device {
        /// The new device's id.
        device_id: String,
        /// The new device's secret.
        secret: String,
    },
    /// A session code, for an attended streamer.
    SessionCode {
        /// Nine digits.
        code: String,
        /// Seconds until it expires.
        expires_in_secs: u32,
    },
}

/// What the relay does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAction {
    /// Send this message and wait for the next one.
    Reply(Message),
    /// Check this credential for this role, then call [`RelayHandshake::verdict`].
    Verify {
        /// The announced role.
        role: Role,
        /// The credential to check.
        credential: Credential,
        /// The agreed protocol version: from 1.4.0 a device credential is renewed
        /// ([`crate::rotates_device_secret`]).
        protocol_version: semver::Version,
    },
    /// Send these messages in order; the connection is established with this peer.
    Established {
        /// `Registered` or `SessionCodeIssued` where due, then `Authenticated`.
        replies: Vec<Message>,
        /// Who the client is.
        peer: Peer,
    },
    /// Send `Refused` and close the connection.
    Refuse(Refusal),
}

impl RelayAction {
    fn refuse(code: ErrorCode, message: impl Into<String>) -> Self {
        RelayAction::Refuse(Refusal::new(code, message))
    }
}

#[derive(Debug)]
enum RelayState {
    AwaitHello,
    AwaitCredential {
        role: Role,
        product_version: ProductVersion,
        protocol_version: semver::Version,
    },
    AwaitVerdict {
        role: Role,
        product_version: ProductVersion,
        protocol_version: semver::Version,
        credential: Credential,
    },
    Done,
}

/// The relay's side of one connection's handshake.
#[derive(Debug)]
pub struct RelayHandshake {
    relay_version: ProductVersion,
    state: RelayState,
}

impl RelayHandshake {
    /// A handshake waiting for the client's `Hello`.
    pub fn new(relay_version: ProductVersion) -> Self {
        Self {
            relay_version,
            state: RelayState::AwaitHello,
        }
    }

    /// Takes one received frame; a frame that does not decode is refused.
    pub fn receive_frame(&mut self, frame: Bytes) -> RelayAction {
        match decode_frame(frame) {
            Ok(msg) => self.receive(msg),
            Err(e) => {
                self.state = RelayState::Done;
                RelayAction::Refuse(e.refusal())
            }
        }
    }

    /// Takes one received message.
    pub fn receive(&mut self, msg: Message) -> RelayAction {
        let state = std::mem::replace(&mut self.state, RelayState::Done);
        match (state, msg) {
            (
                RelayState::AwaitHello,
                Message::Hello {
                    role,
                    product_version,
                    protocol_versions,
                },
            ) => {
                let product_version = match product_version.parse::<ProductVersion>() {
                    Ok(v) => v,
                    Err(e) => {
                        return RelayAction::refuse(ErrorCode::MalformedVersion, e.to_string())
                    }
                };
                let mut theirs = Vec::with_capacity(protocol_versions.len());
                for text in &protocol_versions {
                    match semver::Version::parse(text) {
                        Ok(v) => theirs.push(v),
                        Err(e) => {
                            return RelayAction::refuse(
                                ErrorCode::MalformedVersion,
                                format!("malformed protocol version {text:?}: {e}"),
                            )
                        }
                    }
                }
                let protocol_version = match negotiate_protocol(PROTOCOL_VERSIONS, &theirs) {
                    Ok(v) => v,
                    Err(refusal) => return RelayAction::Refuse(refusal),
                };
                let welcome = Message::Welcome {
                    protocol_version: protocol_version.to_string(),
                    relay_version: self.relay_version.to_string(),
                };
                self.state = RelayState::AwaitCredential {
                    role,
                    product_version,
                    protocol_version,
                };
                RelayAction::Reply(welcome)
            }
            (
                RelayState::AwaitCredential {
                    role,
                    product_version,
                    protocol_version,
                },
                Message::Authenticate(credential),
            ) => {
                let allowed = matches!(
                    (role, &credential),
                    (Role::Technician, Credential::TechnicianToken { .. })
                        | (
                            Role::Streamer,
                            Credential::Device { .. }
                                | Credential::DeploymentCode { .. }
                                | Credential::Attended { .. }
                        )
                );
                if !allowed {
                    return RelayAction::refuse(
                        ErrorCode::CredentialNotAllowed,
                        format!(
                            "a {} cannot sign in with this kind of credential",
                            role_name(role)
                        ),
                    );
                }
                self.state = RelayState::AwaitVerdict {
                    role,
                    product_version,
                    protocol_version: protocol_version.clone(),
                    credential: credential.clone(),
                };
                RelayAction::Verify {
                    role,
                    credential,
                    protocol_version,
                }
            }
            (state, msg) => RelayAction::refuse(
                ErrorCode::UnexpectedMessage,
                format!(
                    "{} is not allowed {}",
                    msg.kind().name(),
                    state_phrase(&state)
                ),
            ),
        }
    }

    /// Takes the outcome of the credential check asked for by [`RelayAction::Verify`].
    pub fn verdict(&mut self, outcome: Result<Verified, Refusal>) -> RelayAction {
        let state = std::mem::replace(&mut self.state, RelayState::Done);
        let RelayState::AwaitVerdict {
            role,
            product_version,
            protocol_version,
            credential,
        } = state
        else {
            return RelayAction::refuse(
                ErrorCode::InternalError,
                "the relay gave a credential verdict that nobody asked for",
            );
        };
        let verified = match outcome {
            Ok(v) => v,
            Err(refusal) => return RelayAction::Refuse(refusal),
        };
        let mut replies = Vec::with_capacity(2);
        match (&credential, verified.issued) {
            (Credential::DeploymentCode { .. }, Some(Issued::Device { device_id, secret })) => {
                replies.push(Message::Registered { device_id, secret });
            }
            // From 1.4.0 a device's next secret, for the same device.
            (
                Credential::Device {
                    device_id: presented,
                    ..
                },
                Some(Issued::Device { device_id, secret }),
            ) if *presented == device_id && crate::rotates_device_secret(&protocol_version) => {
                replies.push(Message::Registered { device_id, secret });
            }
            (
                Credential::Attended { .. },
                Some(Issued::SessionCode {
                    code,
                    expires_in_secs,
                }),
            ) => replies.push(Message::SessionCodeIssued {
                code,
                expires_in_secs,
            }),
            (Credential::TechnicianToken { .. } | Credential::Device { .. }, None) => {}
            _ => {
                return RelayAction::refuse(
                    ErrorCode::InternalError,
                    "the relay's credential check issued the wrong thing for this credential",
                )
            }
        }
        replies.push(Message::Authenticated {
            team_id: verified.team_id.clone(),
            name: verified.name.clone(),
        });
        RelayAction::Established {
            replies,
            peer: Peer {
                role,
                product_version,
                protocol_version,
                team_id: verified.team_id,
                name: verified.name,
            },
        }
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::Technician => "technician",
        Role::Streamer => "streamer",
    }
}

fn state_phrase(state: &RelayState) -> &'static str {
    match state {
        RelayState::AwaitHello => "before Hello",
        RelayState::AwaitCredential { .. } => "before Authenticate",
        RelayState::AwaitVerdict { .. } => "while the credential is being checked",
        RelayState::Done => "after the handshake ended",
    }
}

/// What the client learns or must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// Send this message to the relay.
    Send(Message),
    /// The relay registered this device: store the credential before anything else.
    Registered {
        /// The new device's id.
        device_id: String,
        /// The new device's secret.
        secret: String,
    },
    /// Show this session code to the end user.
    SessionCode {
        /// Nine digits.
        code: String,
        /// Seconds until it expires.
        expires_in_secs: u32,
    },
    /// The connection is established.
    Established {
        /// The agreed protocol version.
        protocol_version: semver::Version,
        /// The team's id.
        team_id: String,
        /// The name the relay knows this client by.
        name: String,
    },
}

/// Why the client's handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientHandshakeError {
    /// The relay refused the connection (user's or our fault, as the code says).
    #[error("the relay refused the connection: {0}")]
    Refused(Refusal),
    /// The relay broke the protocol (relay's fault).
    #[error("the relay broke the protocol: {0}")]
    Protocol(Refusal),
}

#[derive(Debug, PartialEq, Eq)]
enum ClientState {
    AwaitWelcome,
    AwaitAuthenticated { protocol_version: semver::Version },
    Done,
}

/// The client's (technician's or streamer's) side of the handshake.
#[derive(Debug)]
pub struct ClientHandshake {
    credential: Credential,
    state: ClientState,
}

impl ClientHandshake {
    /// Starts a handshake: returns the machine and the `Hello` to send first.
    pub fn start(
        role: Role,
        product_version: ProductVersion,
        credential: Credential,
    ) -> (Self, Message) {
        let hello = Message::Hello {
            role,
            product_version: product_version.to_string(),
            protocol_versions: PROTOCOL_VERSIONS.iter().map(ToString::to_string).collect(),
        };
        let machine = Self {
            credential,
            state: ClientState::AwaitWelcome,
        };
        (machine, hello)
    }

    /// Whether `Registered` for `device_id` is this device's next secret: a device credential, on
    /// protocol 1.4.0 or later, naming the same device.
    fn is_renewal(&self, state: &ClientState, device_id: &str) -> bool {
        match (state, &self.credential) {
            (
                ClientState::AwaitAuthenticated { protocol_version },
                Credential::Device {
                    device_id: ours, ..
                },
            ) => ours == device_id && crate::rotates_device_secret(protocol_version),
            _ => false,
        }
    }

    /// Takes one message from the relay.
    pub fn receive(&mut self, msg: Message) -> Result<ClientEvent, ClientHandshakeError> {
        let state = std::mem::replace(&mut self.state, ClientState::Done);
        let protocol_error = |text: String| {
            Err(ClientHandshakeError::Protocol(Refusal::new(
                ErrorCode::UnexpectedMessage,
                text,
            )))
        };
        match (state, msg) {
            (ClientState::Done, msg) => {
                protocol_error(format!("{} after the handshake ended", msg.kind().name()))
            }
            (_, Message::Refused { code, message }) => {
                Err(ClientHandshakeError::Refused(Refusal::new(code, message)))
            }
            (
                ClientState::AwaitWelcome,
                Message::Welcome {
                    protocol_version, ..
                },
            ) => {
                let chosen = semver::Version::parse(&protocol_version).map_err(|e| {
                    ClientHandshakeError::Protocol(Refusal::new(
                        ErrorCode::MalformedVersion,
                        format!("malformed protocol version {protocol_version:?}: {e}"),
                    ))
                })?;
                // The relay's choice must be one we speak: it must negotiate to itself.
                match negotiate_protocol(PROTOCOL_VERSIONS, std::slice::from_ref(&chosen)) {
                    Ok(v) if v == chosen => {}
                    _ => {
                        return Err(ClientHandshakeError::Protocol(Refusal::new(
                            ErrorCode::ProtocolVersionUnsupported,
                            format!(
                            "the relay chose protocol {chosen}, which this client does not speak"
                        ),
                        )))
                    }
                }
                self.state = ClientState::AwaitAuthenticated {
                    protocol_version: chosen,
                };
                Ok(ClientEvent::Send(Message::Authenticate(
                    self.credential.clone(),
                )))
            }
            (
                state @ ClientState::AwaitAuthenticated { .. },
                Message::Registered { device_id, secret },
            ) if matches!(self.credential, Credential::DeploymentCode { .. })
                || self.is_renewal(&state, &device_id) =>
            {
                self.state = state;
                Ok(ClientEvent::Registered { device_id, secret })
            }
            (
                state @ ClientState::AwaitAuthenticated { .. },
                Message::SessionCodeIssued {
                    code,
                    expires_in_secs,
                },
            ) if matches!(self.credential, Credential::Attended { .. }) => {
                self.state = state;
                Ok(ClientEvent::SessionCode {
                    code,
                    expires_in_secs,
                })
            }
            (
                ClientState::AwaitAuthenticated { protocol_version },
                Message::Authenticated { team_id, name },
            ) => Ok(ClientEvent::Established {
                protocol_version,
                team_id,
                name,
            }),
            (_, msg) => protocol_error(format!(
                "{} is not allowed during the handshake",
                msg.kind().name()
            )),
        }
    }
}
