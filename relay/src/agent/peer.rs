//! Peer links between the relays of a fleet (crate::fleet), both ends: the streamer's relay takes a
//! link as a technician connection vouched for by the technician's own token ([`Conn::run_peer`]);
//! the technician's relay runs its half of a session that runs on another relay of the fleet,
//! carrying the technician's frames both ways unchanged ([`Conn::remote_session`]).
//!
//! The streamer's relay runs the session (policy, recording, tools, limits). The technician's relay
//! keeps what belongs to the technician's connection: its message rate, its sign-out, device lists
//! (answered there), and a second session request (refused there, as on a session of its own).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use protocol::{EndReason, ErrorCode, Message, MessageKind, Peer, Refusal, Role, Sender};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as PeerMessage;
use tokio_util::sync::CancellationToken;

use super::technician::PeerLinkStart;
use super::{Closed, Conn, Next};
use crate::config::Config;
use crate::fleet::PeerHello;
use crate::hub::OutFrame;
use crate::secrets;
use crate::store::UserRecord;

/// What the technician is told when the streamer's relay cannot be reached.
fn unreachable() -> Message {
    Message::SessionRefused {
        code: ErrorCode::DeviceOffline,
        message: "This computer is connected through another relay of this service, which cannot be reached now. Try again shortly.".into(),
    }
}

/// What the technician is told when the peer link breaks during the session.
fn relay_lost() -> Message {
    Message::SessionEnded {
        reason: EndReason::StreamerDisconnected,
        message: "The relay holding the remote computer's connection was lost.".into(),
    }
}

impl Conn {
    /// A peer link's start: the hello (JSON in a text message) within the hello timeout, its
    /// token checked as a technician's, then that technician's loop.
    pub(super) async fn run_peer(&mut self) {
        let deadline = Instant::now() + Config::ms(self.shared.config.hello_timeout_ms);
        let hello = loop {
            let item = tokio::select! {
                item = tokio::time::timeout_at(deadline, self.stream.next()) => item,
                _ = self.writer_dead.cancelled() => return,
            };
            match item {
                Ok(Some(Ok(PeerMessage::Text(text)))) => {
                    break serde_json::from_str::<crate::fleet::PeerHello>(text.as_str())
                }
                Ok(Some(Ok(PeerMessage::Ping(_) | PeerMessage::Pong(_)))) => continue,
                Ok(Some(Ok(_))) => {
                    return self
                        .refuse(Refusal::new(
                            ErrorCode::MalformedMessage,
                            "a peer link starts with the peer hello (JSON in a text message)",
                        ))
                        .await
                }
                Err(_) => {
                    return self
                        .refuse(Refusal::new(ErrorCode::Timeout, "no peer hello in time"))
                        .await
                }
                Ok(None | Some(Err(_))) => return,
            }
        };
        let hello = match hello {
            Ok(h) => h,
            Err(e) => {
                return self
                    .refuse(Refusal::new(
                        ErrorCode::MalformedMessage,
                        format!("the peer hello is not valid: {e}"),
                    ))
                    .await
            }
        };
        let versions = (
            hello.product_version.parse::<protocol::ProductVersion>(),
            semver::Version::parse(&hello.protocol_version),
        );
        let (Ok(product_version), Ok(protocol_version)) = versions else {
            return self
                .refuse(Refusal::new(
                    ErrorCode::MalformedMessage,
                    "the peer hello's versions are not valid",
                ))
                .await;
        };
        let user = match self.shared.store.user_for_token(&hello.token).await {
            Ok(Ok(user)) => user,
            Ok(Err(d)) => {
                return self
                    .refuse(Refusal::new(d.code(), format!("sign-in token: {d}")))
                    .await
            }
            Err(e) => {
                tracing::error!(error = %e, "credential check failed");
                return self
                    .refuse(Refusal::new(
                        ErrorCode::InternalError,
                        "the relay could not check the credential; try again",
                    ))
                    .await;
            }
        };
        tracing::info!(peer = %hello.relay_id, user = %user.id, "peer link for a technician");
        let peer = Peer {
            role: Role::Technician,
            product_version,
            protocol_version,
            team_id: user.team_id.clone(),
            name: user.name.clone(),
        };
        let digest = secrets::digest(&hello.token);
        let revoked = self.shared.hub.add_technician(&digest, self.conn_id);
        self.technician(peer, user, &hello.token, revoked).await;
        self.shared.hub.remove_technician(&digest, self.conn_id);
    }

    /// Runs a session on the relay at `start.address` for this technician, until it ends there,
    /// the link breaks, or this connection goes.
    pub(super) async fn remote_session(
        &mut self,
        user: &UserRecord,
        start: PeerLinkStart<'_>,
        revoked: &CancellationToken,
    ) -> Result<(), Closed> {
        let shared = self.shared.clone();
        let Some(fleet) = shared.fleet.as_ref() else {
            return self.send(&unreachable()).await;
        };
        let hello = PeerHello {
            relay_id: fleet.relay_id.clone(),
            token: start.token.to_owned(),
            product_version: start.peer.product_version.to_string(),
            protocol_version: start.peer.protocol_version.to_string(),
        };
        let socket = match fleet.dial(start.address, &hello).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(peer = %start.address, error = format!("{e:#}"), "peer link failed");
                shared.metrics.peer_dial_failed();
                shared.metrics.refused(ErrorCode::DeviceOffline);
                return self.send(&unreachable()).await;
            }
        };
        let _open = shared.metrics.peer_link(true);
        tracing::info!(peer = %start.address, user = %user.id, "session through a peer link");
        let (mut sink, mut stream) = socket.split();
        if sink.send(PeerMessage::Binary(start.request)).await.is_err() {
            return self.send(&unreachable()).await;
        }
        let budget = Arc::new(Semaphore::new(shared.config.forward_buffer_bytes));
        let idle = Config::ms(shared.config.idle_timeout_ms);
        let shutdown = shared.shutdown.clone();
        let mut started = false;
        let outcome = loop {
            tokio::select! {
                item = tokio::time::timeout(idle, stream.next()) => {
                    let bytes = match item {
                        Ok(Some(Ok(PeerMessage::Binary(b)))) => b,
                        Ok(Some(Ok(PeerMessage::Ping(_) | PeerMessage::Pong(_) | PeerMessage::Frame(_)))) => continue,
                        _ => break Lost,
                    };
                    let kind = protocol::parse_header(&bytes).ok().flatten().map(|h| h.kind);
                    if kind == Some(MessageKind::Refused) {
                        // The streamer's relay refused the link itself (a sign-in it no longer
                        // takes, a flood): before the session, a refused request for the
                        // technician; during it, the technician's connection is refused here too.
                        let Ok(Message::Refused { code, message }) = protocol::decode_frame(bytes) else {
                            break Lost;
                        };
                        if started {
                            self.refuse(Refusal::new(code, message)).await;
                            break Gone;
                        }
                        shared.metrics.refused(code);
                        let refused = Message::SessionRefused { code, message };
                        break if self.send(&refused).await.is_ok() { Done } else { Gone };
                    }
                    let last = match kind {
                        Some(MessageKind::SessionStarted) => {
                            started = true;
                            false
                        }
                        Some(MessageKind::SessionEnded) => started,
                        Some(MessageKind::SessionRefused) => !started,
                        _ => false,
                    };
                    if !self.to_technician(&budget, bytes).await {
                        break Gone;
                    }
                    if last {
                        break Done;
                    }
                }
                next = self.next(None) => {
                    let bytes = match next {
                        Next::Frame(b) => b,
                        Next::Gone | Next::TimedOut => break Gone,
                        Next::Bad(r) => {
                            self.refuse(r).await;
                            break Gone;
                        }
                    };
                    let msg = match self.decode_from(bytes.clone(), Sender::Technician) {
                        Ok(m) => m,
                        Err(r) => {
                            self.refuse(r).await;
                            break Gone;
                        }
                    };
                    match msg.kind() {
                        MessageKind::ListDevices | MessageKind::SessionRequest => {
                            if let Err(r) = self.request_allowed() {
                                self.refuse(r).await;
                                break Gone;
                            }
                            let answer = if msg.kind() == MessageKind::ListDevices {
                                self.device_list(&user.team_id, &start.peer.protocol_version).await
                            } else {
                                shared.metrics.refused(ErrorCode::UnexpectedMessage);
                                Message::SessionRefused {
                                    code: ErrorCode::UnexpectedMessage,
                                    message: "End the current session before starting another.".into(),
                                }
                            };
                            if self.send(&answer).await.is_err() {
                                break Gone;
                            }
                        }
                        // The rest goes as received; a link that broke shows on its read side.
                        _ => {
                            let _ = sink.send(PeerMessage::Binary(bytes)).await;
                        }
                    }
                }
                _ = revoked.cancelled() => {
                    self.refuse(self.revoked_refusal(start.token)).await;
                    break Gone;
                }
                _ = shutdown.cancelled() => {
                    let ended = Message::SessionEnded {
                        reason: EndReason::RelayShuttingDown,
                        message: "The relay is shutting down.".into(),
                    };
                    let _ = self.send(&ended).await;
                    break Done;
                }
            }
        };
        // The streamer's relay sees the link close: a session still live there ends as the
        // technician's connection lost.
        let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
        if started {
            self.session_ended_at = Some(tokio::time::Instant::now());
        }
        match outcome {
            Done => Ok(()),
            Gone => Err(Closed),
            Lost if started => self.send(&relay_lost()).await,
            Lost => self.send(&unreachable()).await,
        }
    }

    /// Queues a frame from the peer link for the technician, within the forwarding budget.
    async fn to_technician(&self, budget: &Arc<Semaphore>, bytes: Bytes) -> bool {
        let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
        let Ok(permit) = budget.clone().acquire_many_owned(n).await else {
            return false;
        };
        self.out
            .send(OutFrame {
                bytes,
                permit: Some(permit),
            })
            .await
            .is_ok()
    }
}

/// How a peer-linked session ended for the technician's relay.
enum Outcome {
    /// The session ended (or was refused) there, or here at shutdown: the connection goes on.
    Done,
    /// The technician's connection is gone or was cut off.
    Gone,
    /// The peer link broke.
    Lost,
}
use Outcome::{Done, Gone, Lost};
