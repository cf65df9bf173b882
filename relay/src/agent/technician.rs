//! The technician's side of a connection: device lists, session requests, and its half of a session.

use std::sync::Arc;
use std::time::Duration;

use protocol::{
    recorded_session_gate, AccessType, EndReason, ErrorCode, Message, MessageKind, Peer, Refusal,
    Sender, SessionTarget, ToolState,
};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{forward, Closed, Conn, Next, SessionSide};
use crate::config::Config;
use crate::hub::{
    ClaimError, Offer, OfferReply, OnlineStreamer, SessionLink, SessionTools, StreamerCommand,
};
use crate::secrets;
use crate::store::UserRecord;

impl Conn {
    /// The refusal a technician's connection gets when its sign-in (`token`) is revoked, in the
    /// words of why.
    pub(super) fn revoked_refusal(&self, token: &str) -> Refusal {
        let why = self.shared.hub.revocation(&secrets::digest(token));
        Refusal::new(ErrorCode::CredentialRevoked, why.refusal())
    }
}

/// Where a requested session runs.
enum Started {
    /// On this relay, which holds the streamer.
    Here(Arc<SessionLink>),
    /// On the relay of the fleet at this peer address, which holds the streamer.
    There(String),
}

/// What a peer link starts from: the peer's address, the technician's token and handshake, and
/// the session request as the technician sent it.
pub(super) struct PeerLinkStart<'a> {
    pub(super) address: &'a str,
    pub(super) token: &'a str,
    pub(super) peer: &'a Peer,
    pub(super) request: bytes::Bytes,
}

const TECHNICIAN_SIDE: SessionSide = SessionSide {
    sender: Sender::Technician,
    lost: EndReason::TechnicianDisconnected,
    lost_text: "The technician's connection was lost.",
    broke: "The technician's app broke the protocol.",
};

impl Conn {
    pub(super) async fn technician(
        &mut self,
        peer: Peer,
        user: UserRecord,
        token: &str,
        revoked: CancellationToken,
    ) {
        let shutdown = self.shared.shutdown.clone();
        loop {
            let next = tokio::select! {
                _ = revoked.cancelled() => return self.refuse(self.revoked_refusal(token)).await,
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
            let msg = match self.decode_from(bytes.clone(), Sender::Technician) {
                Ok(m) => m,
                Err(r) => return self.refuse(r).await,
            };
            if matches!(msg, Message::ListDevices | Message::SessionRequest { .. }) {
                if let Err(r) = self.request_allowed() {
                    return self.refuse(r).await;
                }
            }
            let result = match msg {
                Message::ListDevices => {
                    let list = self
                        .device_list(&user.team_id, &peer.protocol_version)
                        .await;
                    self.send(&list).await
                }
                Message::SessionRequest { target, view } => {
                    match self
                        .start_session(&user, &peer.protocol_version, target, view)
                        .await
                    {
                        Ok(Started::Here(link)) => {
                            let result =
                                self.technician_session(&user, token, link, &revoked).await;
                            self.session_ended_at = Some(tokio::time::Instant::now());
                            result
                        }
                        Ok(Started::There(address)) => {
                            let link = PeerLinkStart {
                                address: &address,
                                token,
                                peer: &peer,
                                request: bytes,
                            };
                            self.remote_session(&user, link, &revoked).await
                        }
                        Err(r) => {
                            tracing::info!(code = %r.code, user = %user.id, "session refused");
                            self.shared.metrics.refused(r.code);
                            self.send(&Message::SessionRefused {
                                code: r.code,
                                message: r.message,
                            })
                            .await
                        }
                    }
                }
                // Nothing to leave: harmless.
                Message::LeaveSession => Ok(()),
                late if self.late_for_ended_session(&late) => Ok(()),
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
        protocol: &semver::Version,
        target: SessionTarget,
        view: protocol::ViewRequest,
    ) -> Result<Started, Refusal> {
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
                let busy = || {
                    Refusal::new(
                        ErrorCode::DeviceBusy,
                        "This computer is already in a session.",
                    )
                };
                let streamer = match shared.hub.claim_device(&device_id) {
                    Ok(s) => s,
                    Err(ClaimError::Busy) => return Err(busy()),
                    Err(_) => {
                        // Connected to another relay of the fleet, perhaps.
                        let elsewhere =
                            self.device_elsewhere(&device_id).await.map_err(internal)?;
                        return match elsewhere {
                            Some(p) if p.busy => Err(busy()),
                            Some(p) => Ok(Started::There(p.peer_address)),
                            None => Err(Refusal::new(
                                ErrorCode::DeviceOffline,
                                "This computer's streamer is not connected.",
                            )),
                        };
                    }
                };
                (streamer, AccessType::Unattended)
            }
            SessionTarget::Code { code } => {
                let now = shared.clock.now_ms();
                shared
                    .codes
                    .check(&user.id, &user.team_id, now)
                    .await
                    .map_err(|paused| Refusal::new(ErrorCode::RateLimited, paused))?;
                let well_formed = code.len() == 9 && code.bytes().all(|b| b.is_ascii_digit());
                let claim = if well_formed {
                    shared.hub.claim_code(&code, &user.team_id, now)
                } else {
                    Err(ClaimError::BadCode)
                };
                if well_formed && matches!(claim, Err(ClaimError::BadCode)) {
                    // Held by another relay of the fleet, perhaps.
                    let elsewhere = self
                        .code_elsewhere(&code, &user.team_id)
                        .await
                        .map_err(internal)?;
                    if let Some(address) = elsewhere {
                        shared.codes.succeeded(&user.id).await;
                        return Ok(Started::There(address));
                    }
                }
                if claim.is_ok() && shared.fleet.is_some() {
                    if let Err(e) = shared.store.remove_session_code(&code).await {
                        tracing::warn!(error = %e, "removing a used session code from the fleet");
                    }
                }
                match &claim {
                    Ok(_) => shared.codes.succeeded(&user.id).await,
                    // A busy computer's code was right.
                    Err(ClaimError::Busy) => {}
                    Err(_) => shared.codes.failed(&user.id, &user.team_id, now).await,
                }
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
        let result = self.offer(user, protocol, &streamer, access, view).await;
        if result.is_err() {
            shared.hub.release(streamer.conn_id);
        }
        result.map(Started::Here)
    }

    /// Where a device's streamer is, when another live relay of the fleet holds it (never for a
    /// peer link: its sessions are with this relay's streamers only).
    async fn device_elsewhere(
        &self,
        device_id: &str,
    ) -> Result<Option<crate::store::fleet::Presence>, crate::store::StoreError> {
        let shared = &self.shared;
        let Some(fleet) = shared.fleet.as_ref().filter(|_| !self.via_peer) else {
            return Ok(None);
        };
        let alive_after = fleet.alive_after(shared.clock.now_ms());
        Ok(shared
            .store
            .presence(device_id, alive_after)
            .await?
            .filter(|p| p.relay_id != fleet.relay_id))
    }

    /// The peer address of the live relay holding a team's session code, when it is not this one.
    async fn code_elsewhere(
        &self,
        code: &str,
        team_id: &str,
    ) -> Result<Option<String>, crate::store::StoreError> {
        let shared = &self.shared;
        let Some(fleet) = shared.fleet.as_ref().filter(|_| !self.via_peer) else {
            return Ok(None);
        };
        let alive_after = fleet.alive_after(shared.clock.now_ms());
        Ok(shared
            .store
            .session_code_holder(code, team_id, alive_after)
            .await?
            .filter(|h| h.relay_id != fleet.relay_id)
            .map(|h| h.peer_address))
    }

    async fn offer(
        &self,
        user: &UserRecord,
        protocol: &semver::Version,
        streamer: &OnlineStreamer,
        access: AccessType,
        view: protocol::ViewRequest,
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
        // A tool the team allows is usable when both sides' versions have its messages.
        let state = |allowed: bool, kind: MessageKind| {
            if !allowed {
                ToolState::Forbidden
            } else if kind.known_at(protocol) && kind.known_at(&streamer.protocol) {
                ToolState::Allowed
            } else {
                ToolState::Unsupported
            }
        };
        let clipboard = state(settings.allow_clipboard, MessageKind::ClipboardText);
        let file_transfer = state(settings.allow_file_transfer, MessageKind::FileOffer);
        let chat = state(settings.allow_chat, MessageKind::ChatText);
        let tools = SessionTools {
            team_id: user.team_id.clone(),
            technician: (user.id.clone(), user.name.clone()),
            clipboard,
            file_transfer,
            chat,
            max_file_bytes: settings.max_file_bytes(),
            technician_protocol: protocol.clone(),
            streamer_protocol: streamer.protocol.clone(),
        };
        let link = Arc::new(SessionLink::new(
            id,
            self.out.clone(),
            streamer.outbound.clone(),
            shared.config.forward_buffer_bytes,
            tools,
        ));
        let (reply, answer) = oneshot::channel();
        let offer = Offer {
            link: link.clone(),
            technician_id: user.id.clone(),
            technician_name: user.name.clone(),
            view,
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
        token: &str,
        link: Arc<SessionLink>,
        revoked: &CancellationToken,
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
                _ = revoked.cancelled() => {
                    let why = self.shared.hub.revocation(&secrets::digest(token));
                    link.end(EndReason::CredentialRevoked, why.ended());
                    self.refuse(Refusal::new(ErrorCode::CredentialRevoked, why.refusal())).await;
                    return Err(Closed);
                }
                next = self.next(None) => next,
            };
            let (bytes, msg) = self.session_message(next, &link, &TECHNICIAN_SIDE).await?;
            if matches!(
                msg.kind(),
                MessageKind::ListDevices | MessageKind::SessionRequest
            ) {
                if let Err(r) = self.request_allowed() {
                    link.end(EndReason::ProtocolError, TECHNICIAN_SIDE.broke);
                    self.refuse(r).await;
                    return Err(Closed);
                }
            }
            match msg.kind() {
                MessageKind::LeaveSession => {
                    link.end(
                        EndReason::TechnicianLeft,
                        "The technician ended the session.",
                    );
                }
                MessageKind::ListDevices => {
                    let list = self
                        .device_list(&user.team_id, &link.tools.technician_protocol)
                        .await;
                    self.send(&list).await?;
                }
                MessageKind::ClipboardText | MessageKind::ChatText => {
                    self.tool_use(&link, Sender::Technician, &msg, bytes)
                        .await?;
                }
                kind if kind.is_file_transfer() => {
                    self.file_use(&link, crate::transfers::Side::Technician, &msg, bytes)
                        .await?;
                }
                MessageKind::SessionRequest => {
                    self.shared.metrics.refused(ErrorCode::UnexpectedMessage);
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
}
