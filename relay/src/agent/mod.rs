//! One agent connection (technician or streamer) over WebSocket: the handshake, then its role's loop.
//!
//! Each connection has a reader (this task) and a writer task fed by a bounded queue. Frames a peer
//! sends for the other side are forwarded as the very bytes received, after they decode and pass the
//! sender check; the forwarding budget in bytes and the queue length bound what waits for a slow peer,
//! and when either is reached the reader stops reading (backpressure reaches the sender through TCP).

mod files;
mod peer;
pub(crate) mod socket;
mod streamer;
mod technician;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use protocol::{
    decode_frame, encode_to_bytes, Credential, DeviceInfo, EndReason, ErrorCode, Issued, Message,
    MessageKind, Peer, Refusal, RelayAction, RelayHandshake, Role, Sender, Tool, ToolState,
    Verified,
};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::hub::{OutFrame, Outbound, SessionLink, WRITER_QUEUE};
use crate::rate::TokenBucket;
use crate::store::{DeviceCheck, DeviceRecord, TeamRecord, UserRecord};
use crate::{secrets, Shared};
use socket::{Gate, Socket};

/// How long after a session's end its traffic still in flight is dropped rather than refused.
const LATE_TRAFFIC_GRACE: Duration = Duration::from_secs(5);

/// One side of a session, and how the session ends when that side fails.
struct SessionSide {
    sender: Sender,
    lost: EndReason,
    lost_text: &'static str,
    broke: &'static str,
}

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
    Technician {
        user: UserRecord,
        /// The sign-in token, so that revoking it cuts this connection off.
        token: String,
    },
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
    stream: SplitStream<Socket>,
    out: Outbound,
    /// Cancelled by the writer when the socket can no longer be written.
    writer_dead: CancellationToken,
    conn_id: u64,
    /// Every message this peer sends takes a token (floods are refused).
    messages: TokenBucket,
    /// Requests the relay answers itself take one more.
    requests: TokenBucket,
    /// When this connection's last session ended, to let traffic already in flight then through.
    session_ended_at: Option<Instant>,
    /// A peer link from another relay of the fleet: its sessions are with streamers here only.
    via_peer: bool,
    /// Opened when the handshake ends: until then the socket's reads are bounded in bytes.
    gate: Gate,
    /// The protocol version agreed in the handshake.
    agreed: Option<semver::Version>,
}

/// Serves one upgraded WebSocket until it closes.
pub(crate) async fn serve(shared: Arc<Shared>, socket: Socket, gate: Gate) {
    serve_as(shared, socket, gate, false).await;
}

/// Serves a peer link: a technician of another relay of the fleet, whose sign-in token comes in
/// the link's [`crate::fleet::PeerHello`], for a session with a streamer connected here.
pub(crate) async fn serve_peer(shared: Arc<Shared>, socket: Socket, gate: Gate) {
    let _open = shared.metrics.peer_link(false);
    serve_as(shared, socket, gate, true).await;
}

async fn serve_as(shared: Arc<Shared>, socket: Socket, gate: Gate, via_peer: bool) {
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
    let now = Instant::now();
    let mut conn = Conn {
        messages: TokenBucket::new(shared.config.max_messages_per_sec, now),
        requests: TokenBucket::new(shared.config.max_requests_per_sec, now),
        session_ended_at: None,
        shared,
        stream,
        out,
        writer_dead,
        conn_id,
        via_peer,
        gate,
        agreed: None,
    };
    if via_peer {
        conn.run_peer().await;
    } else {
        conn.run().await;
    }
    // Let the writer send what is queued (a refusal, a session end), then close the socket.
    close.cancel();
    let Conn { mut stream, .. } = conn;
    // A lingering close: what the peer still sends is read and dropped until it closes or 2 s
    // pass. Closing a socket with unread input resets it, and a reset can make the peer lose the
    // refusal it was about to read.
    // (After an oversized message the WebSocket stream has ended: the rest of that message cannot
    // be read through it, docs/SECURITY.md.)
    let drain = async { while let Some(Ok(_)) = stream.next().await {} };
    let _ = tokio::join!(
        tokio::time::timeout(Duration::from_secs(5), writer),
        tokio::time::timeout(Duration::from_secs(2), drain),
    );
}

/// Writes queued frames and pings; closes the socket when told to or when a write stalls.
async fn writer(
    mut sink: SplitSink<Socket, WsMessage>,
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
        // Whatever else is queued goes out in the same flush: under load, one write (and one TLS
        // record batch) for many frames instead of one each.
        let batch = async {
            sink.feed(item).await?;
            while let Ok(f) = queue.try_recv() {
                sink.feed(WsMessage::Binary(f.bytes)).await?;
            }
            sink.flush().await
        };
        if !matches!(tokio::time::timeout(write_timeout, batch).await, Ok(Ok(()))) {
            tracing::debug!("write failed or stalled; closing the connection");
            dead.cancel();
            return;
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), sink.close()).await;
    dead.cancel();
}

/// The refusal for a WebSocket message larger than the largest frame, which the WebSocket layer
/// stops reading at its header, or for more bytes than a handshake needs sent before it ended;
/// `None` for any other read error (the connection is gone).
fn too_large(e: tungstenite::Error) -> Option<Refusal> {
    match e {
        tungstenite::Error::Capacity(tungstenite::error::CapacityError::MessageTooLong {
            size,
            max_size,
        }) => Some(Refusal::new(
            ErrorCode::MessageTooLarge,
            format!("a WebSocket message of {size} bytes is larger than the largest frame ({max_size} bytes)"),
        )),
        tungstenite::Error::Io(e) if socket::is_too_much_before_handshake(&e) => Some(Refusal::new(
            ErrorCode::MessageTooLarge,
            format!(
                "more than {} bytes before the handshake ended: a handshake's messages are small",
                socket::BEFORE_HANDSHAKE
            ),
        )),
        _ => None,
    }
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
            Ok(v) => {
                // Who the peer is is known: the protocol's frame limits and rates bound it now.
                self.gate.open();
                self.agreed = Some(v.0.protocol_version.clone());
                v
            }
            Err(failed) => {
                if let Some(refusal) = failed {
                    tracing::info!(code = %refusal.code, reason = %refusal.message, "connection refused");
                    self.refuse(refusal).await;
                }
                // A code published just before the handshake's last step failed goes with it.
                self.shared.hub.remove_streamer(self.conn_id);
                if self.shared.fleet.is_some() {
                    let store = &self.shared.store;
                    let _ = store
                        .remove_session_codes(store.relay_id(), self.conn_id)
                        .await;
                }
                return;
            }
        };
        match identity {
            Identity::Technician { user, token } => {
                let digest = secrets::digest(&token);
                let hub = &self.shared.hub;
                let revoked = hub.add_technician(&digest, self.conn_id);
                // A sign-out between the credential check and the line above would be missed:
                // check once more now that a later one cannot be.
                if !matches!(self.shared.store.user_for_token(&token).await, Ok(Ok(_))) {
                    revoked.cancel();
                }
                self.technician(peer, user, &token, revoked).await;
                self.shared.hub.remove_technician(&digest, self.conn_id);
            }
            Identity::Device(device) => {
                let _ = self
                    .streamer(peer, Some(device.id.clone()), device.team_id, device.name)
                    .await;
            }
            Identity::Attended {
                team, device_name, ..
            } => {
                // Its code was published before the handshake's end told it (`publish_code`).
                let _ = self.streamer(peer, None, team.id, device_name).await;
            }
        }
    }

    /// Makes an attended streamer's new session code usable: in this relay's hub, and published
    /// to the fleet. `Err(Some)` is the refusal when the fleet's database did not take it.
    async fn publish_code(
        &self,
        code: &str,
        team_id: &str,
        expires_at_ms: i64,
    ) -> Result<(), Option<Refusal>> {
        self.shared.hub.add_code(
            code.to_owned(),
            self.conn_id,
            team_id.to_owned(),
            expires_at_ms,
        );
        if self.shared.fleet.is_none() {
            return Ok(());
        }
        let store = &self.shared.store;
        let published = store
            .add_session_code(code, team_id, store.relay_id(), self.conn_id, expires_at_ms)
            .await;
        published.map_err(|e| {
            tracing::error!(error = %e, "publishing a session code to the fleet");
            self.shared.hub.remove_streamer(self.conn_id);
            Some(Refusal::new(
                ErrorCode::InternalError,
                "the relay could not publish the session code; connect again",
            ))
        })
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
        self.shared.metrics.refused(refusal.code);
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
            if matches!(item, Ok(Some(Ok(_)))) && !self.messages.take(Instant::now()) {
                return Next::Bad(Refusal::new(
                    ErrorCode::RateLimited,
                    format!(
                        "more than {} messages a second: the connection is closed as a flood",
                        self.shared.config.max_messages_per_sec
                    ),
                ));
            }
            match item {
                Err(_) if deadline.is_some_and(|d| d <= idle) => return Next::TimedOut,
                Err(_) => return Next::Gone,
                Ok(Some(Err(e))) => {
                    return match too_large(e) {
                        Some(refusal) => Next::Bad(refusal),
                        None => Next::Gone,
                    }
                }
                Ok(None | Some(Ok(WsMessage::Close(_)))) => return Next::Gone,
                Ok(Some(Ok(WsMessage::Binary(bytes)))) => return Next::Frame(bytes),
                Ok(Some(Ok(WsMessage::Text(_)))) => {
                    return Next::Bad(Refusal::new(
                        ErrorCode::MalformedMessage,
                        "text WebSocket messages are not part of the protocol; send binary frames",
                    ))
                }
                // Pings are answered by the WebSocket layer; pings and pongs show the peer is alive.
                Ok(Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_) | WsMessage::Frame(_)))) => {
                    continue
                }
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
                RelayAction::Verify {
                    role,
                    credential,
                    protocol_version,
                } => {
                    let checked = self.verify(role, credential, &protocol_version).await;
                    let (verdict, identity) = match checked {
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
                            // A session code works (here and, in a fleet, on every relay) before
                            // the streamer is told it: a technician may use it at once.
                            if let Identity::Attended {
                                team,
                                code,
                                expires_at_ms,
                                ..
                            } = &identity
                            {
                                self.publish_code(code, &team.id, *expires_at_ms).await?;
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

    /// Writes `action` to the device's team's audit trail, the device as actor and object.
    async fn audit_device(
        &self,
        device: &DeviceRecord,
        action: crate::store::audit::Action,
        detail: &str,
    ) -> Result<i64, crate::store::StoreError> {
        self.shared
            .store
            .audit(crate::store::audit::NewEvent {
                team_id: Some(&device.team_id),
                actor: &crate::store::audit::Actor::Device(device.id.clone(), device.name.clone()),
                action,
                object: &device.id,
                detail,
                client_addr: "",
            })
            .await
    }

    /// A secret the device had stopped using was presented, so two copies of its credential
    /// exist and nobody can tell which is the real computer: the device is revoked (the store did
    /// it, `revoked_now`), its live connection cut off here and on every relay of the fleet, and
    /// the team's audit trail says why. The answer is the refusal for this connection.
    async fn credential_reused(&self, device: &DeviceRecord, revoked_now: bool) -> Refusal {
        if revoked_now {
            tracing::warn!(device = %device.id, team = %device.team_id, "a device secret was used again after it had been renewed: two copies of the credential exist; the device is revoked");
            self.shared.hub.revoke_device(&device.id);
            let revoked = crate::fleet::DEVICE_REVOKED;
            if let Err(e) = crate::fleet::notify(&self.shared, revoked, &device.id, "").await {
                tracing::error!(error = %e, "telling the fleet the device was revoked");
            }
            let logged = self
                .audit_device(
                    device,
                    crate::store::audit::Action::DeviceCredentialReused,
                    "a secret this computer had already renewed was presented again: its credential was copied, so the device was revoked; register it again with a deployment code",
                )
                .await;
            if let Err(e) = logged {
                tracing::error!(error = %e, "auditing a reused device credential");
            }
        }
        Refusal::new(
            ErrorCode::CredentialRevoked,
            "This computer's credential was used from two places, so the relay revoked it. An administrator must register this computer again with a deployment code.",
        )
    }

    /// Checks a credential against the store.
    async fn verify(
        &self,
        _role: Role,
        credential: Credential,
        protocol_version: &semver::Version,
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
                Ok((verified, Identity::Technician { user, token }))
            }
            Credential::Device { device_id, secret } => {
                let renew = protocol::rotates_device_secret(protocol_version);
                let checked = store
                    .check_device_secret(&device_id, &secret, renew)
                    .await
                    .map_err(internal)?;
                let (device, next_secret) = match checked {
                    DeviceCheck::Valid {
                        device,
                        next_secret,
                    } => (device, next_secret),
                    DeviceCheck::Denied(d) => return Err(denied(d, "device credential")),
                    DeviceCheck::RenewalNeeded => return Err(Refusal::new(
                        ErrorCode::ProtocolVersionUnsupported,
                        format!(
                            "this computer's credential is renewed at every connection, which needs protocol {}.{}.0 or later: update the streamer",
                            protocol::DEVICE_SECRET_ROTATION.0,
                            protocol::DEVICE_SECRET_ROTATION.1
                        ),
                    )),
                    DeviceCheck::Reused {
                        device,
                        revoked_now,
                    } => return Err(self.credential_reused(&device, revoked_now).await),
                };
                let verified = Verified {
                    team_id: device.team_id.clone(),
                    name: device.name.clone(),
                    issued: next_secret.map(|secret| Issued::Device {
                        device_id: device.id.clone(),
                        secret,
                    }),
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
                self.audit_device(
                    &device,
                    crate::store::audit::Action::DeviceRegistered,
                    "with a deployment code",
                )
                .await
                .map_err(internal)?;
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
                let expires_at_ms =
                    self.shared.clock.now_ms().saturating_add(
                        i64::try_from(ttl.saturating_mul(1000)).unwrap_or(i64::MAX),
                    );
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

    /// Turns what the reader got during a session into the frame and its message. When the connection
    /// was lost or broke the protocol, the session ends with the matching reason (told to both sides)
    /// and the connection closes.
    async fn session_message(
        &mut self,
        next: Next,
        link: &SessionLink,
        side: &SessionSide,
    ) -> Result<(Bytes, Message), Closed> {
        let broke = |link: &SessionLink| link.end(EndReason::ProtocolError, side.broke);
        let bytes = match next {
            Next::Frame(b) => b,
            Next::Gone | Next::TimedOut => {
                link.end(side.lost, side.lost_text);
                return Err(Closed);
            }
            Next::Bad(r) => {
                broke(link);
                self.refuse(r).await;
                return Err(Closed);
            }
        };
        match self.decode_from(bytes.clone(), side.sender) {
            Ok(msg) => Ok((bytes, msg)),
            Err(r) => {
                broke(link);
                self.refuse(r).await;
                Err(Closed)
            }
        }
    }

    /// Whether `msg` is session traffic the peer sent before it learnt that its session ended (it
    /// was in flight then): dropped, not refused. A streamer capturing at 30 frames a second always
    /// has frames on the way when the technician leaves.
    fn late_for_ended_session(&self, msg: &Message) -> bool {
        msg.kind().is_session_traffic()
            && self
                .session_ended_at
                .is_some_and(|at| at.elapsed() < LATE_TRAFFIC_GRACE)
    }

    /// Takes a token for a request the relay answers itself; a refusal when they come too fast.
    fn request_allowed(&mut self) -> Result<(), Refusal> {
        if self.requests.take(Instant::now()) {
            Ok(())
        } else {
            Err(Refusal::new(
                ErrorCode::RateLimited,
                format!(
                    "more than {} device lists or session requests a second: the connection is closed",
                    self.shared.config.max_requests_per_sec
                ),
            ))
        }
    }

    /// Decodes a frame and checks that this side may send its kind.
    fn decode_from(&self, bytes: Bytes, role: Sender) -> Result<Message, Refusal> {
        let msg = decode_frame(bytes).map_err(|e| e.refusal())?;
        // A kind the agreed version lacks is unknown at that version (PROTOCOL.md section 5).
        if let Some(agreed) = &self.agreed {
            let kind = msg.kind();
            if !kind.known_at(agreed) {
                let (major, minor) = kind.since();
                return Err(Refusal::new(
                    ErrorCode::MalformedMessage,
                    format!(
                        "unknown message kind 0x{:02x} at protocol {agreed}, the version this connection agreed on ({} came in {major}.{minor}.0)",
                        kind as u8,
                        kind.name()
                    ),
                ));
            }
        }
        if !msg.kind().may_be_sent_by(role) {
            return Err(Refusal::new(
                ErrorCode::UnexpectedMessage,
                format!("{} may not be sent by this side", msg.kind().name()),
            ));
        }
        Ok(msg)
    }

    /// A tool's message from one side of a session (clipboard text, a chat line): written to the
    /// audit trail and forwarded to the other side when the session allows the tool; otherwise
    /// audited as refused and answered with `ToolRefused`, the session going on. Nothing reaches
    /// the other side without its audit event.
    async fn tool_use(
        &self,
        link: &SessionLink,
        from: Sender,
        msg: &Message,
        bytes: Bytes,
    ) -> Result<(), Closed> {
        use crate::store::audit::{Action, Actor};
        let tools = &link.tools;
        let (direction, to, budget, own_protocol) = match from {
            Sender::Technician => (
                "technician → remote computer",
                &link.to_streamer,
                &link.budget_to_streamer,
                &tools.technician_protocol,
            ),
            _ => (
                "remote computer → technician",
                &link.to_technician,
                &link.budget_to_technician,
                &tools.streamer_protocol,
            ),
        };
        // What the audit trail says of a forwarded use: the clipboard's size (never its text), or
        // the chat line itself (the session's conversation).
        let (tool, what, sent, refused, used) = match msg {
            Message::ChatText { text } => (
                Tool::Chat,
                "chat",
                Action::ChatSent,
                Action::ChatRefused,
                format!("{direction}: {text}"),
            ),
            Message::ClipboardText { text } => (
                Tool::Clipboard,
                "the clipboard",
                Action::ClipboardSent,
                Action::ClipboardRefused,
                format!("{direction}, {} bytes", text.len()),
            ),
            other => {
                // The callers pass only the tools' kinds; anything else is our bug, not the peer's.
                tracing::error!(kind = other.kind().name(), "not a tool's message");
                return Ok(());
            }
        };
        if let (Message::ChatText { text }, ToolState::Allowed) = (msg, tools.state(tool)) {
            // Refused past the session's allowance without an audit event: the allowance is what
            // keeps a flood out of the trail.
            let taken = crate::hub::lock(&link.chat).take(
                from == Sender::Technician,
                text.len(),
                tokio::time::Instant::now(),
            );
            if let Err(why) = taken {
                let message = match why {
                    crate::rate::ChatRefused::TooFast => format!(
                        "Chat lines are coming faster than people type: at most {} at once, then {} a minute. The line was not sent.",
                        crate::rate::CHAT_BURST,
                        crate::rate::CHAT_LINES_PER_MINUTE
                    ),
                    crate::rate::ChatRefused::SessionFull => format!(
                        "This session's chat has reached its limit of {} KiB. The line was not sent.",
                        crate::rate::CHAT_BYTES_PER_SESSION / 1024
                    ),
                };
                tracing::debug!(session = %link.id, ?why, "chat line refused");
                if MessageKind::ToolRefused.known_at(own_protocol) {
                    return self
                        .send(&Message::ToolRefused {
                            tool,
                            code: ErrorCode::RateLimited,
                            message,
                        })
                        .await;
                }
                return Ok(());
            }
        }
        let mut refusal = match tools.state(tool) {
            ToolState::Allowed => None,
            ToolState::Forbidden => Some(Refusal::new(
                ErrorCode::ToolForbidden,
                format!(
                    "Your team's settings do not allow {what} in sessions: the text was not sent."
                ),
            )),
            ToolState::Unsupported => Some(Refusal::new(
                ErrorCode::ToolUnsupported,
                format!(
                    "{} is too old for {what}: the text was not sent.",
                    crate::transfers::Side::from(from).other_software()
                ),
            )),
        };
        let actor = Actor::User(tools.technician.0.clone(), tools.technician.1.clone());
        let (action, detail) = match &refusal {
            None => (sent, used),
            Some(r) => (refused, format!("{direction}, {}", r.code)),
        };
        let logged = crate::ops::audit(
            &self.shared,
            Some(&tools.team_id),
            &actor,
            action,
            &link.id,
            &detail,
            None,
        )
        .await;
        if let Err(e) = logged {
            tracing::error!(error = %e, session = %link.id, tool = what, "auditing a tool's use; not forwarding it");
            refusal.get_or_insert_with(|| {
                Refusal::new(
                    ErrorCode::InternalError,
                    format!("The relay could not log the use of {what}, so the text was not sent. Try again."),
                )
            });
        }
        match refusal {
            None => {
                forward(link, to, budget, bytes).await;
                Ok(())
            }
            Some(r) if MessageKind::ToolRefused.known_at(own_protocol) => {
                self.send(&Message::ToolRefused {
                    tool,
                    code: r.code,
                    message: r.message,
                })
                .await
            }
            Some(_) => Ok(()),
        }
    }

    /// The team's devices for a technician that agreed on `agreed`: a `DeviceStatusList` (busy ones
    /// told apart) from 1.3.0 on, a `DeviceList` before.
    async fn device_list(&self, team_id: &str, agreed: &semver::Version) -> Message {
        let devices = match self.shared.store.devices(team_id).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "listing devices");
                Vec::new()
            }
        };
        // Devices whose streamers are connected to other live relays of the fleet.
        let elsewhere = match &self.shared.fleet {
            Some(fleet) => {
                let alive_after = fleet.alive_after(self.shared.clock.now_ms());
                match self.shared.store.team_presence(team_id, alive_after).await {
                    Ok(p) => p,
                    Err(e) => {
                        tracing::error!(error = %e, "reading the fleet's presence");
                        std::collections::HashMap::new()
                    }
                }
            }
            None => std::collections::HashMap::new(),
        };
        let devices = devices
            .into_iter()
            .filter(|d| !d.revoked)
            .map(|d| {
                let busy = self
                    .shared
                    .hub
                    .device_busy(&d.id)
                    .or_else(|| elsewhere.get(&d.id).copied());
                DeviceInfo {
                    online: busy.is_some(),
                    busy: busy.unwrap_or(false),
                    id: d.id,
                    name: d.name,
                    streamer_version: d.streamer_version,
                }
            })
            .collect();
        if MessageKind::DeviceStatusList.known_at(agreed) {
            Message::DeviceStatusList(devices)
        } else {
            Message::DeviceList(devices)
        }
    }
}
