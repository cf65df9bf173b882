//! One agent connection (technician or streamer) over WebSocket: the handshake, then its role's loop.
//!
//! Each connection has a reader (this task) and a writer task fed by a bounded queue. Frames a peer
//! sends for the other side are forwarded as the very bytes received, after they decode and pass the
//! sender check; the forwarding budget in bytes and the queue length bound what waits for a slow peer,
//! and when either is reached the reader stops reading (backpressure reaches the sender through TCP).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message as WsMessage, WebSocket};
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use protocol::{
    decode_frame, encode_to_bytes, recorded_session_gate, AccessType, Credential, DeviceInfo,
    EndReason, ErrorCode, Issued, Message, MessageKind, Peer, Refusal, RelayAction, RelayHandshake,
    Role, Sender, SessionTarget, Verified,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::hub::{
    ClaimError, Offer, OfferReply, OnlineStreamer, OutFrame, Outbound, SessionLink,
    StreamerCommand, WRITER_QUEUE,
};
use crate::recorder::SessionRecorder;
use crate::store::{DeviceRecord, NewSession, RecordingState, TeamRecord, UserRecord};
use crate::{secrets, Shared};

/// How a connection came to an end, seen from its reader.
#[derive(Debug)]
struct Closed;

/// What the reader got from the socket.
enum Next {
    Frame(Bytes),
    /// The peer closed or the connection failed.
    Gone,
    /// The peer sent something that is not a frame.
    Bad(Refusal),
    /// The deadline passed.
    TimedOut,
}

/// Who the handshake established.
enum Identity {
    Technician(UserRecord),
    Device(DeviceRecord),
    Attended {
        team: TeamRecord,
        device_name: String,
        code: String,
        expires_at_ms: i64,
    },
}

struct Conn {
    shared: Arc<Shared>,
    stream: SplitStream<WebSocket>,
    out: Outbound,
    /// Cancelled by the writer when the socket can no longer be written.
    writer_dead: CancellationToken,
    conn_id: u64,
}

/// "24 hours", "5 minutes", "3 seconds".
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs % 3600 == 0 && secs >= 3600 {
        (secs / 3600, "hour")
    } else if secs % 60 == 0 && secs >= 60 {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

fn end_reason_name(reason: EndReason) -> String {
    match reason {
        EndReason::TechnicianLeft => "TECHNICIAN_LEFT".into(),
        EndReason::EndUserEnded => "END_USER_ENDED".into(),
        EndReason::TechnicianDisconnected => "TECHNICIAN_DISCONNECTED".into(),
        EndReason::StreamerDisconnected => "STREAMER_DISCONNECTED".into(),
        EndReason::TimeLimitReached => "TIME_LIMIT_REACHED".into(),
        EndReason::RecordingFailed => "RECORDING_FAILED".into(),
        EndReason::RelayShuttingDown => "RELAY_SHUTTING_DOWN".into(),
        EndReason::CredentialRevoked => "CREDENTIAL_REVOKED".into(),
        EndReason::ProtocolError => "PROTOCOL_ERROR".into(),
        EndReason::Unknown(n) => format!("UNKNOWN({n})"),
    }
}

/// Serves one upgraded WebSocket until it closes.
pub(crate) async fn serve(shared: Arc<Shared>, socket: WebSocket) {
    let (sink, stream) = socket.split();
    let (out, out_rx) = mpsc::channel(WRITER_QUEUE);
    let writer_dead = CancellationToken::new();
    let close = CancellationToken::new();
    let writer = tokio::spawn(writer(
        sink,
        out_rx,
        shared.config.clone(),
        writer_dead.clone(),
        close.clone(),
    ));
    let conn_id = shared.hub.next_conn_id();
    let mut conn = Conn {
        shared,
        stream,
        out,
        writer_dead,
        conn_id,
    };
    conn.run().await;
    // Let the writer send what is queued (a refusal, a session end), then close the socket.
    close.cancel();
    drop(conn);
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
}

/// Writes queued frames and pings; closes the socket when told to or when a write stalls.
async fn writer(
    mut sink: SplitSink<WebSocket, WsMessage>,
    mut queue: mpsc::Receiver<OutFrame>,
    config: Config,
    dead: CancellationToken,
    close: CancellationToken,
) {
    // A write that stalls this long means the peer stopped reading: drop it rather than buffer.
    let write_timeout = Config::ms(config.idle_timeout_ms);
    let mut ping = tokio::time::interval(Config::ms(config.ping_interval_ms));
    ping.tick().await;
    loop {
        let item = tokio::select! {
            frame = queue.recv() => match frame {
                Some(f) => WsMessage::Binary(f.bytes),
                None => break,
            },
            _ = ping.tick() => WsMessage::Ping(Bytes::new()),
            _ = close.cancelled() => {
                // Flush what is already queued, without waiting for more.
                while let Ok(f) = queue.try_recv() {
                    if !matches!(tokio::time::timeout(write_timeout, sink.send(WsMessage::Binary(f.bytes))).await, Ok(Ok(()))) {
                        break;
                    }
                }
                break;
            }
        };
        if !matches!(
            tokio::time::timeout(write_timeout, sink.send(item)).await,
            Ok(Ok(()))
        ) {
            tracing::debug!("write failed or stalled; closing the connection");
            dead.cancel();
            return;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    dead.cancel();
}

/// Takes a share of a forwarding budget and queues `bytes` for the other side. Returns false when the
/// session ended first or the other side's connection is gone.
async fn forward(
    link: &SessionLink,
    to: &Outbound,
    budget: &Arc<tokio::sync::Semaphore>,
    bytes: Bytes,
) -> bool {
    // A frame is at most `max_frame_len()`, and the budget at least that (Config::validate).
    let n = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
    let permit = tokio::select! {
        p = budget.clone().acquire_many_owned(n) => match p {
            Ok(p) => p,
            Err(_) => return false,
        },
        _ = link.ended.cancelled() => return false,
    };
    tokio::select! {
        r = to.send(OutFrame { bytes, permit: Some(permit) }) => r.is_ok(),
        _ = link.ended.cancelled() => false,
    }
}

impl Conn {
    async fn run(&mut self) {
        let (peer, identity) = match self.handshake().await {
            Ok(v) => v,
            Err(Some(refusal)) => {
                tracing::info!(code = %refusal.code, reason = %refusal.message, "connection refused");
                self.refuse(refusal).await;
                return;
            }
            Err(None) => return,
        };
        match identity {
            Identity::Technician(user) => self.technician(peer, user).await,
            Identity::Device(device) => {
                let _ = self
                    .streamer(peer, Some(device.id.clone()), device.team_id, device.name)
                    .await;
            }
            Identity::Attended {
                team,
                device_name,
                code,
                expires_at_ms,
            } => {
                self.shared
                    .hub
                    .add_code(code, self.conn_id, team.id.clone(), expires_at_ms);
                let _ = self.streamer(peer, None, team.id, device_name).await;
            }
        }
    }

    async fn send(&self, msg: &Message) -> Result<(), Closed> {
        let bytes = encode_to_bytes(msg).map_err(|e| {
            tracing::error!(error = %e, kind = msg.kind().name(), "the relay built a message it cannot encode");
            Closed
        })?;
        self.out
            .send(OutFrame {
                bytes,
                permit: None,
            })
            .await
            .map_err(|_| Closed)
    }

    async fn refuse(&self, refusal: Refusal) {
        let _ = self
            .send(&Message::Refused {
                code: refusal.code,
                message: refusal.message,
            })
            .await;
    }

    /// The next frame, waiting at most until `deadline` and never longer than the idle timeout.
    async fn next(&mut self, deadline: Option<Instant>) -> Next {
        loop {
            let idle = Instant::now() + Config::ms(self.shared.config.idle_timeout_ms);
            let until = deadline.map_or(idle, |d| d.min(idle));
            let item = tokio::select! {
                item = tokio::time::timeout_at(until, self.stream.next()) => item,
                _ = self.writer_dead.cancelled() => return Next::Gone,
            };
            match item {
                Err(_) if deadline.is_some_and(|d| d <= idle) => return Next::TimedOut,
                Err(_) => return Next::Gone,
                Ok(None | Some(Err(_)) | Some(Ok(WsMessage::Close(_)))) => return Next::Gone,
                Ok(Some(Ok(WsMessage::Binary(bytes)))) => return Next::Frame(bytes),
                Ok(Some(Ok(WsMessage::Text(_)))) => {
                    return Next::Bad(Refusal::new(
                        ErrorCode::MalformedMessage,
                        "text WebSocket messages are not part of the protocol; send binary frames",
                    ))
                }
                // Pings are answered by the WebSocket layer; pings and pongs show the peer is alive.
                Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_)))) => continue,
            }
        }
    }

    /// Runs the handshake. `Err(Some)` is a refusal to send; `Err(None)` means the peer is gone.
    async fn handshake(&mut self) -> Result<(Peer, Identity), Option<Refusal>> {
        let config = &self.shared.config;
        let started = Instant::now();
        let hello_by = started + Config::ms(config.hello_timeout_ms);
        let done_by = started + Config::ms(config.handshake_timeout_ms);
        let mut machine = RelayHandshake::new(self.shared.version);
        let mut first = true;
        loop {
            let deadline = if first {
                hello_by.min(done_by)
            } else {
                done_by
            };
            first = false;
            let frame = match self.next(Some(deadline)).await {
                Next::Frame(f) => f,
                Next::Gone => return Err(None),
                Next::Bad(r) => return Err(Some(r)),
                Next::TimedOut => {
                    return Err(Some(Refusal::new(
                        ErrorCode::Timeout,
                        "the handshake took too long; connect again",
                    )))
                }
            };
            match machine.receive_frame(frame) {
                RelayAction::Reply(msg) => self.send(&msg).await.map_err(|_| None)?,
                RelayAction::Refuse(r) => return Err(Some(r)),
                RelayAction::Established { .. } => {
                    return Err(Some(Refusal::new(
                        ErrorCode::InternalError,
                        "handshake out of order",
                    )))
                }
                RelayAction::Verify { role, credential } => {
                    let (verdict, identity) = match self.verify(role, credential).await {
                        Ok((verified, identity)) => (Ok(verified), Some(identity)),
                        Err(refusal) => (Err(refusal), None),
                    };
                    return match (machine.verdict(verdict), identity) {
                        (RelayAction::Established { replies, peer }, Some(identity)) => {
                            if let Identity::Device(device) = &identity {
                                if let Err(e) = self
                                    .shared
                                    .store
                                    .device_seen(&device.id, &peer.product_version.to_string())
                                    .await
                                {
                                    tracing::warn!(error = %e, "could not record the device's version");
                                }
                            }
                            for msg in &replies {
                                self.send(msg).await.map_err(|_| None)?;
                            }
                            Ok((peer, identity))
                        }
                        (RelayAction::Refuse(r), _) => Err(Some(r)),
                        _ => Err(Some(Refusal::new(
                            ErrorCode::InternalError,
                            "handshake out of order",
                        ))),
                    };
                }
            }
        }
    }

    /// Checks a credential against the store.
    async fn verify(
        &self,
        _role: Role,
        credential: Credential,
    ) -> Result<(Verified, Identity), Refusal> {
        let store = &self.shared.store;
        let internal = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "credential check failed");
            Refusal::new(
                ErrorCode::InternalError,
                "the relay could not check the credential; try again",
            )
        };
        let denied =
            |d: crate::store::Denied, what: &str| Refusal::new(d.code(), format!("{what}: {d}"));
        match credential {
            Credential::TechnicianToken { token } => {
                let user = store
                    .user_for_token(&token)
                    .await
                    .map_err(internal)?
                    .map_err(|d| denied(d, "sign-in token"))?;
                let verified = Verified {
                    team_id: user.team_id.clone(),
                    name: user.name.clone(),
                    issued: None,
                };
                Ok((verified, Identity::Technician(user)))
            }
            Credential::Device { device_id, secret } => {
                let device = store
                    .authenticate_device(&device_id, &secret)
                    .await
                    .map_err(internal)?
                    .map_err(|d| denied(d, "device credential"))?;
                let verified = Verified {
                    team_id: device.team_id.clone(),
                    name: device.name.clone(),
                    issued: None,
                };
                Ok((verified, Identity::Device(device)))
            }
            Credential::DeploymentCode { code, device_name } => {
                let (device, secret) = store
                    .register_device(&code, &device_name)
                    .await
                    .map_err(internal)?
                    .map_err(|d| denied(d, "deployment code"))?;
                tracing::info!(device = %device.id, team = %device.team_id, "device registered");
                let verified = Verified {
                    team_id: device.team_id.clone(),
                    name: device.name.clone(),
                    issued: Some(Issued::Device {
                        device_id: device.id.clone(),
                        secret,
                    }),
                };
                Ok((verified, Identity::Device(device)))
            }
            Credential::Attended {
                team_key,
                device_name,
            } => {
                let team = store
                    .team_by_attended_key(&team_key)
                    .await
                    .map_err(internal)?
                    .ok_or_else(|| {
                        Refusal::new(
                            ErrorCode::AuthenticationFailed,
                            "attended access key: unknown team",
                        )
                    })?;
                let ttl = self.shared.config.session_code_ttl_secs;
                let expires_at_ms = self
                    .shared
                    .clock
                    .now_ms()
                    .saturating_add((ttl * 1000) as i64);
                let code = secrets::new_digits(9).map_err(|e| {
                    tracing::error!(error = %e, "no session code");
                    Refusal::new(
                        ErrorCode::InternalError,
                        "the relay could not make a session code",
                    )
                })?;
                let verified = Verified {
                    team_id: team.id.clone(),
                    name: device_name.clone(),
                    issued: Some(Issued::SessionCode {
                        code: code.clone(),
                        expires_in_secs: ttl.try_into().unwrap_or(u32::MAX),
                    }),
                };
                Ok((
                    verified,
                    Identity::Attended {
                        team,
                        device_name,
                        code,
                        expires_at_ms,
                    },
                ))
            }
        }
    }

    /// Decodes a frame and checks that this side may send its kind.
    fn decode_from(&self, bytes: Bytes, role: Sender) -> Result<Message, Refusal> {
        let msg = decode_frame(bytes).map_err(|e| e.refusal())?;
        if !msg.kind().may_be_sent_by(role) {
            return Err(Refusal::new(
                ErrorCode::UnexpectedMessage,
                format!("{} may not be sent by this side", msg.kind().name()),
            ));
        }
        Ok(msg)
    }

    async fn device_list(&self, team_id: &str) -> Message {
        let devices = match self.shared.store.devices(team_id).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "listing devices");
                Vec::new()
            }
        };
        Message::DeviceList(
            devices
                .into_iter()
                .filter(|d| !d.revoked)
                .map(|d| DeviceInfo {
                    online: self.shared.hub.device_online(&d.id),
                    id: d.id,
                    name: d.name,
                    streamer_version: d.streamer_version,
                })
                .collect(),
        )
    }

    // ----- technician -----

    async fn technician(&mut self, _peer: Peer, user: UserRecord) {
        let shutdown = self.shared.shutdown.clone();
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => {
                    self.refuse(Refusal::new(ErrorCode::RelayShuttingDown, "the relay is shutting down; connect again shortly")).await;
                    return;
                }
                next = self.next(None) => next,
            };
            let bytes = match next {
                Next::Frame(b) => b,
                Next::Gone | Next::TimedOut => return,
                Next::Bad(r) => return self.refuse(r).await,
            };
            let msg = match self.decode_from(bytes, Sender::Technician) {
                Ok(m) => m,
                Err(r) => return self.refuse(r).await,
            };
            let result = match msg {
                Message::ListDevices => {
                    let list = self.device_list(&user.team_id).await;
                    self.send(&list).await
                }
                Message::SessionRequest(target) => match self.start_session(&user, target).await {
                    Ok(link) => self.technician_session(&user, link).await,
                    Err(r) => {
                        tracing::info!(code = %r.code, user = %user.id, "session refused");
                        self.send(&Message::SessionRefused {
                            code: r.code,
                            message: r.message,
                        })
                        .await
                    }
                },
                // Nothing to leave: harmless.
                Message::LeaveSession => Ok(()),
                other => {
                    return self
                        .refuse(Refusal::new(
                            ErrorCode::UnexpectedMessage,
                            format!("{} is only allowed during a session", other.kind().name()),
                        ))
                        .await
                }
            };
            if result.is_err() {
                return;
            }
        }
    }

    async fn start_session(
        &self,
        user: &UserRecord,
        target: SessionTarget,
    ) -> Result<Arc<SessionLink>, Refusal> {
        let shared = &self.shared;
        let internal = |e: crate::store::StoreError| {
            tracing::error!(error = %e, "starting a session");
            Refusal::new(
                ErrorCode::InternalError,
                "the relay could not start the session; try again",
            )
        };
        let (streamer, access) = match target {
            SessionTarget::Device { device_id } => {
                let device = shared
                    .store
                    .device(&user.team_id, &device_id)
                    .await
                    .map_err(internal)?;
                match device {
                    Some(d) if !d.revoked => {}
                    // Other teams' devices look exactly like missing ones.
                    _ => {
                        return Err(Refusal::new(
                            ErrorCode::DeviceNotFound,
                            "Your team has no such device.",
                        ))
                    }
                }
                let streamer = shared.hub.claim_device(&device_id).map_err(|e| match e {
                    ClaimError::Busy => Refusal::new(
                        ErrorCode::DeviceBusy,
                        "This computer is already in a session.",
                    ),
                    _ => Refusal::new(
                        ErrorCode::DeviceOffline,
                        "This computer's streamer is not connected.",
                    ),
                })?;
                (streamer, AccessType::Unattended)
            }
            SessionTarget::Code { code } => {
                let well_formed = code.len() == 9 && code.bytes().all(|b| b.is_ascii_digit());
                let claim = if well_formed {
                    shared
                        .hub
                        .claim_code(&code, &user.team_id, shared.clock.now_ms())
                } else {
                    Err(ClaimError::BadCode)
                };
                let streamer = claim.map_err(|e| match e {
                    ClaimError::Busy => Refusal::new(ErrorCode::DeviceBusy, "This computer is already in a session."),
                    _ => Refusal::new(
                        ErrorCode::SessionCodeInvalid,
                        "This session code is not valid: it may be mistyped, used or expired. Ask for a new one.",
                    ),
                })?;
                (streamer, AccessType::Attended)
            }
        };
        // The streamer is claimed: every refusal from here on must release it.
        let result = self.offer(user, &streamer, access).await;
        if result.is_err() {
            shared.hub.release(streamer.conn_id);
        }
        result
    }

    async fn offer(
        &self,
        user: &UserRecord,
        streamer: &OnlineStreamer,
        access: AccessType,
    ) -> Result<Arc<SessionLink>, Refusal> {
        let shared = &self.shared;
        let settings = shared
            .store
            .team_settings(&user.team_id)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "reading team settings");
                Refusal::new(
                    ErrorCode::InternalError,
                    "the relay could not read the team's settings",
                )
            })?
            .ok_or_else(|| {
                Refusal::new(ErrorCode::InternalError, "the technician's team is missing")
            })?;
        let recorded = match access {
            AccessType::Attended => settings.record_attended,
            AccessType::Unattended => settings.record_unattended,
        };
        if recorded {
            recorded_session_gate(&streamer.version)?;
            shared.recordings.probe().await.map_err(|e| {
                tracing::error!(error = %e, "recording storage is failing; refusing a recorded session");
                Refusal::new(
                    ErrorCode::RecordingUnavailable,
                    "Your team records every session, and the relay cannot store recordings right now. Try again later.",
                )
            })?;
        }
        let id = secrets::new_id()
            .map_err(|_| Refusal::new(ErrorCode::InternalError, "no session id"))?;
        let link = Arc::new(SessionLink::new(
            id,
            self.out.clone(),
            streamer.outbound.clone(),
            shared.config.forward_buffer_bytes,
        ));
        let (reply, answer) = oneshot::channel();
        let offer = Offer {
            link: link.clone(),
            technician_id: user.id.clone(),
            technician_name: user.name.clone(),
            access,
            recorded,
            reply,
        };
        if streamer
            .commands
            .send(StreamerCommand::Offer(offer))
            .await
            .is_err()
        {
            return Err(Refusal::new(
                ErrorCode::DeviceOffline,
                "This computer's streamer is not connected.",
            ));
        }
        // The streamer's task enforces the offer timeout; this one only guards against a lost task.
        let guard = Config::ms(shared.config.offer_timeout_ms) + Duration::from_secs(5);
        match tokio::time::timeout(guard, answer).await {
            Ok(Ok(OfferReply::Accepted)) => Ok(link),
            Ok(Ok(OfferReply::Declined)) => Err(Refusal::new(
                ErrorCode::SessionDeclined,
                "The person at that computer declined the session.",
            )),
            Ok(Ok(OfferReply::Failed(r))) => Err(r),
            Ok(Ok(OfferReply::NoAnswer)) | Ok(Err(_)) | Err(_) => Err(Refusal::new(
                ErrorCode::Timeout,
                "The computer did not answer the session request.",
            )),
        }
    }

    async fn technician_session(
        &mut self,
        user: &UserRecord,
        link: Arc<SessionLink>,
    ) -> Result<(), Closed> {
        tracing::info!(session = %link.id, user = %user.id, "session started");
        let shutdown = self.shared.shutdown.clone();
        loop {
            let next = tokio::select! {
                biased;
                _ = link.ended.cancelled() => {
                    let (reason, message) = link.reason().unwrap_or((EndReason::ProtocolError, String::new()));
                    return self.send(&Message::SessionEnded { reason, message }).await;
                }
                _ = shutdown.cancelled() => {
                    link.end(EndReason::RelayShuttingDown, "The relay is shutting down.");
                    continue;
                }
                next = self.next(None) => next,
            };
            let bytes = match next {
                Next::Frame(b) => b,
                Next::Gone | Next::TimedOut => {
                    link.end(
                        EndReason::TechnicianDisconnected,
                        "The technician's connection was lost.",
                    );
                    return Err(Closed);
                }
                Next::Bad(r) => {
                    link.end(
                        EndReason::ProtocolError,
                        "The technician's app broke the protocol.",
                    );
                    self.refuse(r).await;
                    return Err(Closed);
                }
            };
            let msg = match self.decode_from(bytes.clone(), Sender::Technician) {
                Ok(m) => m,
                Err(r) => {
                    link.end(
                        EndReason::ProtocolError,
                        "The technician's app broke the protocol.",
                    );
                    self.refuse(r).await;
                    return Err(Closed);
                }
            };
            match msg.kind() {
                MessageKind::LeaveSession => {
                    link.end(
                        EndReason::TechnicianLeft,
                        "The technician ended the session.",
                    );
                }
                MessageKind::ListDevices => {
                    let list = self.device_list(&user.team_id).await;
                    self.send(&list).await?;
                }
                MessageKind::SessionRequest => {
                    self.send(&Message::SessionRefused {
                        code: ErrorCode::UnexpectedMessage,
                        message: "End the current session before starting another.".into(),
                    })
                    .await?;
                }
                _ => {
                    // Everything else a technician may send goes to the streamer as received.
                    forward(&link, &link.to_streamer, &link.budget_to_streamer, bytes).await;
                }
            }
        }
    }

    // ----- streamer -----

    async fn streamer(
        &mut self,
        peer: Peer,
        device_id: Option<String>,
        team_id: String,
        name: String,
    ) -> Result<(), Closed> {
        let (commands_tx, mut commands) = mpsc::channel(4);
        let access = if device_id.is_some() {
            AccessType::Unattended
        } else {
            AccessType::Attended
        };
        self.shared.hub.add_streamer(OnlineStreamer {
            conn_id: self.conn_id,
            team_id,
            device_id,
            name,
            version: peer.product_version,
            access,
            commands: commands_tx,
            outbound: self.out.clone(),
            busy: false,
        });
        let result = self.streamer_idle(&mut commands).await;
        self.shared.hub.remove_streamer(self.conn_id);
        // Refuse offers that raced with the disconnection.
        commands.close();
        while let Ok(cmd) = commands.try_recv() {
            if let StreamerCommand::Offer(o) = cmd {
                let _ = o.reply.send(OfferReply::NoAnswer);
            }
        }
        result
    }

    async fn streamer_idle(
        &mut self,
        commands: &mut mpsc::Receiver<StreamerCommand>,
    ) -> Result<(), Closed> {
        let shutdown = self.shared.shutdown.clone();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.refuse(Refusal::new(ErrorCode::RelayShuttingDown, "the relay is shutting down; connect again shortly")).await;
                    return Ok(());
                }
                cmd = commands.recv() => match cmd {
                    Some(StreamerCommand::Offer(offer)) => self.handle_offer(offer, commands).await?,
                    Some(StreamerCommand::Revoke) | None => {
                        self.refuse(Refusal::new(ErrorCode::CredentialRevoked, "this device's credential was revoked or replaced")).await;
                        return Err(Closed);
                    }
                },
                next = self.next(None) => match next {
                    Next::Frame(bytes) => match self.decode_from(bytes, Sender::Streamer) {
                        // Nothing to leave, or the answer to an offer that already timed out.
                        Ok(Message::LeaveSession | Message::SessionAccept { .. } | Message::SessionDecline { .. }) => {}
                        Ok(other) => {
                            self.refuse(Refusal::new(
                                ErrorCode::UnexpectedMessage,
                                format!("{} is only allowed during a session", other.kind().name()),
                            ))
                            .await;
                            return Err(Closed);
                        }
                        Err(r) => {
                            self.refuse(r).await;
                            return Err(Closed);
                        }
                    },
                    Next::Gone | Next::TimedOut => return Err(Closed),
                    Next::Bad(r) => {
                        self.refuse(r).await;
                        return Err(Closed);
                    }
                },
            }
        }
    }

    async fn handle_offer(
        &mut self,
        offer: Offer,
        commands: &mut mpsc::Receiver<StreamerCommand>,
    ) -> Result<(), Closed> {
        let link = offer.link.clone();
        let sent = self
            .send(&Message::SessionOffer {
                session_id: link.id.clone(),
                technician: offer.technician_name.clone(),
                access: offer.access,
                recorded: offer.recorded,
            })
            .await;
        if sent.is_err() {
            let _ = offer.reply.send(OfferReply::NoAnswer);
            return Err(Closed);
        }
        let deadline = Instant::now() + Config::ms(self.shared.config.offer_timeout_ms);
        let accepted = loop {
            match self.next(Some(deadline)).await {
                Next::Frame(bytes) => match self.decode_from(bytes, Sender::Streamer) {
                    Ok(Message::SessionAccept { session_id }) if session_id == link.id => {
                        break true
                    }
                    Ok(Message::SessionDecline { session_id }) if session_id == link.id => {
                        break false
                    }
                    Ok(
                        Message::LeaveSession
                        | Message::SessionAccept { .. }
                        | Message::SessionDecline { .. },
                    ) => {}
                    Ok(other) => {
                        let _ = offer.reply.send(OfferReply::NoAnswer);
                        self.refuse(Refusal::new(
                            ErrorCode::UnexpectedMessage,
                            format!(
                                "{} is not an answer to a session offer",
                                other.kind().name()
                            ),
                        ))
                        .await;
                        return Err(Closed);
                    }
                    Err(r) => {
                        let _ = offer.reply.send(OfferReply::NoAnswer);
                        self.refuse(r).await;
                        return Err(Closed);
                    }
                },
                Next::TimedOut => {
                    self.shared.hub.release(self.conn_id);
                    let _ = offer.reply.send(OfferReply::NoAnswer);
                    return Ok(());
                }
                Next::Gone => {
                    let _ = offer.reply.send(OfferReply::NoAnswer);
                    return Err(Closed);
                }
                Next::Bad(r) => {
                    let _ = offer.reply.send(OfferReply::NoAnswer);
                    self.refuse(r).await;
                    return Err(Closed);
                }
            }
        };
        if !accepted {
            self.shared.hub.release(self.conn_id);
            let _ = offer.reply.send(OfferReply::Declined);
            return Ok(());
        }
        let Some(streamer) = self.shared.hub.streamer(self.conn_id) else {
            let _ = offer.reply.send(OfferReply::NoAnswer);
            return Err(Closed);
        };
        let row = NewSession {
            id: link.id.clone(),
            team_id: streamer.team_id.clone(),
            technician_id: offer.technician_id.clone(),
            device_id: streamer.device_id.clone(),
            device_name: streamer.name.clone(),
            access: offer.access,
            recorded: offer.recorded,
            streamer_version: streamer.version.to_string(),
        };
        if let Err(e) = self.shared.store.insert_session(&row).await {
            tracing::error!(error = %e, "recording the session start");
            self.shared.hub.release(self.conn_id);
            let _ = offer.reply.send(OfferReply::Failed(Refusal::new(
                ErrorCode::InternalError,
                "the relay could not start the session; try again",
            )));
            return Ok(());
        }
        // Both sides learn whether the session is recorded before any media is forwarded: these are
        // queued ahead of everything this task will forward.
        let started = Message::SessionStarted {
            session_id: link.id.clone(),
            device_name: streamer.name.clone(),
            streamer_version: streamer.version.to_string(),
            access: offer.access,
            recorded: offer.recorded,
        };
        let state = Message::RecordingState {
            recorded: offer.recorded,
        };
        for msg in [&started, &state] {
            if let Ok(bytes) = encode_to_bytes(msg) {
                let _ = link
                    .to_technician
                    .send(OutFrame {
                        bytes,
                        permit: None,
                    })
                    .await;
            }
        }
        self.send(&state).await?;
        let recorder = if offer.recorded {
            if let Err(e) = self
                .shared
                .store
                .set_recording_state(&link.id, RecordingState::Recording)
                .await
            {
                tracing::error!(error = %e, session = %link.id, "recording the recording state");
            }
            Some(SessionRecorder::start(
                self.shared.recorder.clone(),
                link.id.clone(),
                streamer.team_id.clone(),
                link.clone(),
                &self.shared.tracker,
            ))
        } else {
            None
        };
        let _ = offer.reply.send(OfferReply::Accepted);
        let result = self
            .streamer_session(&link, commands, recorder.as_ref())
            .await;
        // Closing the recorder's queue makes it store the last file.
        drop(recorder);
        let (reason, _) = link
            .reason()
            .unwrap_or((EndReason::ProtocolError, String::new()));
        if let Err(e) = self
            .shared
            .store
            .end_session(&link.id, &end_reason_name(reason))
            .await
        {
            tracing::error!(error = %e, session = %link.id, "recording the session end");
        }
        tracing::info!(session = %link.id, reason = %end_reason_name(reason), "session ended");
        self.shared.hub.release(self.conn_id);
        result
    }

    async fn streamer_session(
        &mut self,
        link: &Arc<SessionLink>,
        commands: &mut mpsc::Receiver<StreamerCommand>,
        recorder: Option<&SessionRecorder>,
    ) -> Result<(), Closed> {
        let shutdown = self.shared.shutdown.clone();
        let mut revoked = false;
        // A recorded session lasts at most `max_recorded_session_secs`, with a warning before.
        let config = &self.shared.config;
        let limit = Duration::from_secs(config.max_recorded_session_secs);
        let end_at = Instant::now() + limit;
        let warn_at = end_at - Duration::from_secs(config.limit_warning_secs);
        let limited = recorder.is_some();
        let mut warned = false;
        loop {
            let next = tokio::select! {
                biased;
                _ = link.ended.cancelled() => {
                    let (reason, message) = link.reason().unwrap_or((EndReason::ProtocolError, String::new()));
                    self.send(&Message::SessionEnded { reason, message }).await?;
                    if revoked {
                        self.refuse(Refusal::new(ErrorCode::CredentialRevoked, "this device's credential was revoked")).await;
                        return Err(Closed);
                    }
                    return Ok(());
                }
                _ = shutdown.cancelled() => {
                    link.end(EndReason::RelayShuttingDown, "The relay is shutting down.");
                    continue;
                }
                _ = tokio::time::sleep_until(end_at), if limited => {
                    link.end(EndReason::TimeLimitReached, format!(
                        "This recorded session reached its time limit of {}.", human_duration(limit)
                    ));
                    continue;
                }
                _ = tokio::time::sleep_until(warn_at), if limited && !warned => {
                    warned = true;
                    let time_left_ms = u64::try_from(end_at.saturating_duration_since(Instant::now()).as_millis()).unwrap_or(u64::MAX);
                    if let Ok(bytes) = encode_to_bytes(&Message::LimitWarning { time_left_ms }) {
                        let _ = link.to_technician.send(OutFrame { bytes, permit: None }).await;
                    }
                    continue;
                }
                cmd = commands.recv() => {
                    match cmd {
                        Some(StreamerCommand::Offer(o)) => { let _ = o.reply.send(OfferReply::NoAnswer); }
                        Some(StreamerCommand::Revoke) | None => {
                            revoked = true;
                            link.end(EndReason::CredentialRevoked, "This computer's credential was revoked.");
                        }
                    }
                    continue;
                }
                next = self.next(None) => next,
            };
            let bytes = match next {
                Next::Frame(b) => b,
                Next::Gone | Next::TimedOut => {
                    link.end(
                        EndReason::StreamerDisconnected,
                        "The remote computer's connection was lost.",
                    );
                    return Err(Closed);
                }
                Next::Bad(r) => {
                    link.end(
                        EndReason::ProtocolError,
                        "The remote computer's streamer broke the protocol.",
                    );
                    self.refuse(r).await;
                    return Err(Closed);
                }
            };
            let msg = match self.decode_from(bytes.clone(), Sender::Streamer) {
                Ok(m) => m,
                Err(r) => {
                    link.end(
                        EndReason::ProtocolError,
                        "The remote computer's streamer broke the protocol.",
                    );
                    self.refuse(r).await;
                    return Err(Closed);
                }
            };
            match msg {
                Message::LeaveSession => {
                    link.end(
                        EndReason::EndUserEnded,
                        "The person at the remote computer ended the session.",
                    );
                }
                Message::SessionAccept { .. } | Message::SessionDecline { .. } => {}
                // Video is recorded before it is forwarded; a recorder that has failed has already
                // ended the session, and nothing more is forwarded.
                Message::VideoConfig(config) => {
                    if let Some(r) = recorder {
                        if r.config(config).await.is_err() {
                            continue;
                        }
                    }
                    forward(link, &link.to_technician, &link.budget_to_technician, bytes).await;
                }
                Message::VideoFrame(frame) => {
                    if let Some(r) = recorder {
                        if r.frame(frame).await.is_err() {
                            continue;
                        }
                    }
                    forward(link, &link.to_technician, &link.budget_to_technician, bytes).await;
                }
                // Audio, monitor lists and the rest: forwarded as received, never recorded.
                _ => {
                    forward(link, &link.to_technician, &link.budget_to_technician, bytes).await;
                }
            }
        }
    }
}
