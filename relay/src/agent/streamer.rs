//! The streamer's side of a connection: waiting for offers, and its half of a session, where video
//! is recorded before it is forwarded and recorded sessions meet their time limit.

use std::sync::Arc;
use std::time::Duration;

use protocol::{encode_to_bytes, AccessType, EndReason, ErrorCode, Message, Peer, Refusal, Sender};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::{forward, Closed, Conn, Next, SessionSide};
use crate::config::Config;
use crate::hub::{Offer, OfferReply, OnlineStreamer, OutFrame, SessionLink, StreamerCommand};
use crate::recorder::SessionRecorder;
use crate::store::audit::{Action, Actor};
use crate::store::{NewSession, RecordingState};

const STREAMER_SIDE: SessionSide = SessionSide {
    sender: Sender::Streamer,
    lost: EndReason::StreamerDisconnected,
    lost_text: "The remote computer's connection was lost.",
    broke: "The remote computer's streamer broke the protocol.",
};

impl Conn {
    pub(super) async fn streamer(
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
        let fleet_device = device_id.clone().filter(|_| self.shared.fleet.is_some());
        self.shared.hub.add_streamer(OnlineStreamer {
            conn_id: self.conn_id,
            team_id,
            device_id,
            name,
            version: peer.product_version,
            protocol: peer.protocol_version.clone(),
            access,
            commands: commands_tx,
            outbound: self.out.clone(),
            busy: false,
        });
        let store = &self.shared.store;
        if let Some(device) = &fleet_device {
            // Published to the fleet: technicians on other relays find it here.
            if let Err(e) = store
                .set_presence(device, store.relay_id(), self.conn_id)
                .await
            {
                tracing::error!(error = %e, "publishing the device's presence to the fleet");
            }
            // An older connection of the device on another relay is stale now.
            let moved = crate::fleet::DEVICE_MOVED;
            let notice = crate::fleet::notify(&self.shared, moved, device, store.relay_id());
            if let Err(e) = notice.await {
                tracing::error!(error = %e, "telling the fleet the device connected here");
            }
        }
        let result = self.streamer_idle(&mut commands).await;
        self.shared.hub.remove_streamer(self.conn_id);
        if self.shared.fleet.is_some() {
            let store = &self.shared.store;
            let gone = match &fleet_device {
                Some(device) => {
                    store
                        .clear_presence(device, store.relay_id(), self.conn_id)
                        .await
                }
                None => {
                    store
                        .remove_session_codes(store.relay_id(), self.conn_id)
                        .await
                }
            };
            if let Err(e) = gone {
                tracing::warn!(error = %e, "removing the streamer from the fleet's tables");
            }
        }
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
                    Some(StreamerCommand::Replaced) => {
                        self.refuse(self.cut_off(true)).await;
                        return Err(Closed);
                    }
                    Some(StreamerCommand::Revoke) | None => {
                        self.refuse(self.cut_off(false)).await;
                        return Err(Closed);
                    }
                },
                next = self.next(None) => match next {
                    Next::Frame(bytes) => match self.decode_from(bytes, Sender::Streamer) {
                        // Nothing to leave, or the answer to an offer that already timed out.
                        Ok(Message::LeaveSession | Message::SessionAccept { .. } | Message::SessionDecline { .. }) => {}
                        Ok(late) if self.late_for_ended_session(&late) => {}
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

    /// The refusal for a streamer connection the relay cuts off: its device was revoked, or it
    /// was replaced by a newer connection of the same device. From protocol 1.4.0 a replaced one
    /// gets `CONNECTED_ELSEWHERE`, so that it connects again: if the newer connection used a copy
    /// of the device's credential, the secret the streamer holds has been retired, and presenting
    /// it makes the relay revoke the device (docs/SECURITY.md).
    fn cut_off(&self, replaced: bool) -> Refusal {
        let renews = self
            .agreed
            .as_ref()
            .is_some_and(protocol::rotates_device_secret);
        if replaced && renews {
            Refusal::new(
                ErrorCode::ConnectedElsewhere,
                "this computer connected to the relay again on another connection, which replaced this one",
            )
        } else {
            Refusal::new(
                ErrorCode::CredentialRevoked,
                "this device's credential was revoked, or the device connected again",
            )
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
                view: offer.view,
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
                    // The last session's frames still in flight when the next offer went out.
                    Ok(late) if self.late_for_ended_session(&late) => {}
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
        self.audit_session(
            &streamer.team_id,
            &offer.technician_id,
            &offer.technician_name,
            Action::SessionStarted,
            &link.id,
            &format!(
                "{} on {}, {}",
                crate::store::access_str(offer.access),
                streamer.name,
                if offer.recorded {
                    "recorded"
                } else {
                    "not recorded"
                }
            ),
        )
        .await;
        // Live (listed, counted, and endable by an admin) before either side hears it started: a
        // client that asks right after `SessionStarted` finds it (seen on PostgreSQL, whose
        // recording-state write below came between the two, in relay/tests/operations.rs).
        self.shared.hub.add_session(&streamer.team_id, link.clone());
        self.fleet_busy(&streamer, true).await;
        let live = LiveSession {
            shared: self.shared.clone(),
            id: link.id.clone(),
        };
        self.shared.metrics.session_started(offer.recorded);
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
        // Then which tools the session may use, to each side whose protocol version has them.
        let tools_for_technician = link.tools.message_for(&link.tools.technician_protocol);
        for msg in [Some(&started), Some(&state), tools_for_technician.as_ref()]
            .into_iter()
            .flatten()
        {
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
        if let Some(msg) = link.tools.message_for(&link.tools.streamer_protocol) {
            self.send(&msg).await?;
        }
        let mut recorder = if offer.recorded {
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
            .streamer_session(&link, commands, recorder.as_mut())
            .await;
        drop(live);
        if let Some((reason, _)) = link.reason() {
            self.shared.metrics.session_ended(reason);
        }
        self.session_ended_at = Some(Instant::now());
        // The last file is finished with every frame that was forwarded, and stored.
        if let Some(recorder) = recorder {
            recorder.finish().await;
        }
        // Free for the next session at once: both sides have been told the session ended, and a
        // technician who connects again right away must not find the computer busy while the end
        // is written to the database (seen as a rare DEVICE_BUSY under load in relay/tests/relay.rs).
        // A connection that is gone is offline at once instead: found free while the end is
        // written, it took an offer nobody would answer, refused as TIMEOUT rather than
        // DEVICE_OFFLINE (seen in relay/tests/relay.rs, a_lost_streamer_ends_the_session…).
        if result.is_err() {
            self.shared.hub.remove_streamer(self.conn_id);
        } else {
            self.shared.hub.release(self.conn_id);
            self.fleet_busy(&streamer, false).await;
        }
        let (reason, _) = link
            .reason()
            .unwrap_or((EndReason::ProtocolError, String::new()));
        if let Err(e) = self
            .shared
            .store
            .end_session(&link.id, &EndReason::name(reason))
            .await
        {
            tracing::error!(error = %e, session = %link.id, "recording the session end");
        }
        self.audit_interrupted_transfers(&link).await;
        self.audit_session(
            &streamer.team_id,
            &offer.technician_id,
            &offer.technician_name,
            Action::SessionEnded,
            &link.id,
            &EndReason::name(reason),
        )
        .await;
        tracing::info!(session = %link.id, reason = %EndReason::name(reason), "session ended");
        result
    }

    /// Tells the fleet whether a device held here is in a session (for other relays' device lists).
    async fn fleet_busy(&self, streamer: &OnlineStreamer, busy: bool) {
        let (Some(_), Some(device)) = (&self.shared.fleet, &streamer.device_id) else {
            return;
        };
        let store = &self.shared.store;
        if let Err(e) = store
            .set_presence_busy(device, store.relay_id(), busy)
            .await
        {
            tracing::warn!(error = %e, "publishing the device's state to the fleet");
        }
    }

    /// A session's start or end in the audit trail, as the technician's doing. A failure is
    /// logged: the session row already holds the same facts.
    async fn audit_session(
        &self,
        team_id: &str,
        technician_id: &str,
        technician_name: &str,
        action: Action,
        session_id: &str,
        detail: &str,
    ) {
        let actor = Actor::User(technician_id.to_owned(), technician_name.to_owned());
        if let Err(e) = crate::ops::audit(
            &self.shared,
            Some(team_id),
            &actor,
            action,
            session_id,
            detail,
            None,
        )
        .await
        {
            tracing::error!(error = %e, session = %session_id, "auditing the session");
        }
    }

    async fn streamer_session(
        &mut self,
        link: &Arc<SessionLink>,
        commands: &mut mpsc::Receiver<StreamerCommand>,
        mut recorder: Option<&mut SessionRecorder>,
    ) -> Result<(), Closed> {
        let shutdown = self.shared.shutdown.clone();
        // Set when the device was revoked (false) or connected again elsewhere (true).
        let mut cut_off: Option<bool> = None;
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
                    if let Some(replaced) = cut_off {
                        self.refuse(self.cut_off(replaced)).await;
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
                            cut_off = Some(false);
                            link.end(EndReason::CredentialRevoked, "This computer's credential was revoked.");
                        }
                        Some(StreamerCommand::Replaced) => {
                            cut_off = Some(true);
                            link.end(EndReason::StreamerDisconnected, "The remote computer's connection was lost, and it has connected again: start the session again.");
                        }
                    }
                    continue;
                }
                next = self.next(None) => next,
            };
            let (bytes, msg) = self.session_message(next, link, &STREAMER_SIDE).await?;
            match msg {
                Message::LeaveSession => {
                    link.end(
                        EndReason::EndUserEnded,
                        "The person at the remote computer ended the session.",
                    );
                }
                Message::SessionAccept { .. } | Message::SessionDecline { .. } => {}
                m @ (Message::ClipboardText { .. } | Message::ChatText { .. }) => {
                    self.tool_use(link, Sender::Streamer, &m, bytes).await?;
                }
                m if m.kind().is_file_transfer() => {
                    self.file_use(link, crate::transfers::Side::Streamer, &m, bytes)
                        .await?;
                }
                // Video is forwarded only once it is in the recording: a frame the recording
                // refuses has ended the session, and nothing more is forwarded.
                Message::VideoConfig(config) => {
                    if let Some(r) = recorder.as_deref_mut() {
                        if r.config(config).await.is_err() {
                            continue;
                        }
                    }
                    forward(link, &link.to_technician, &link.budget_to_technician, bytes).await;
                }
                // The monitor list tells the recorder which screen each monitor id stands for.
                Message::MonitorList(list) => {
                    if let Some(r) = recorder.as_deref_mut() {
                        r.monitors(&list);
                    }
                    forward(link, &link.to_technician, &link.budget_to_technician, bytes).await;
                }
                Message::VideoFrame(frame) => {
                    if let Some(r) = recorder.as_deref_mut() {
                        if r.frame(&frame).await.is_err() {
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

/// A session registered live in the hub, forgotten when this is dropped (its end, or an early
/// return while it was being announced).
struct LiveSession {
    shared: std::sync::Arc<crate::Shared>,
    id: String,
}

impl Drop for LiveSession {
    fn drop(&mut self) {
        self.shared.hub.remove_session(&self.id);
    }
}
