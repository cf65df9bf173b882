//! A fleet of relays: several relays sharing one database and one recordings store, a session
//! running on the relay that holds the streamer's connection.
//!
//! - Each relay beats its heart in the database (`relays`) with the address its peers dial, and
//!   publishes the devices it holds (`presence`) and its attended streamers' session codes.
//! - A technician may reach any relay. When the streamer is on another one, the technician's relay
//!   dials the streamer's relay over a **peer link**: a WebSocket at [`PEER_PATH`] on the other
//!   relay's `peer_listen` port, mutual TLS with certificates from the fleet's CA (TLS 1.3), then a
//!   [`PeerHello`] that carries the technician's own sign-in token, which the streamer's relay
//!   checks against the shared database as if the technician had connected to it. From there the
//!   link carries the technician's frames unchanged, both ways. The streamer's relay runs the
//!   session as its own: it alone writes the session row, checks the policy and records.
//! - A relay whose heartbeat is older than `relay_expiry_ms` is dead to its peers: its streamers
//!   count as offline at once, and the first peer to claim it ([`Store::claim_silent_relay`])
//!   finishes its open recording files from their mirrored spool chunks and ends its sessions as
//!   `RELAY_LOST`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::config::Config;
use crate::store::Store;
use crate::Shared;

/// The peer port's only path.
pub const PEER_PATH: &str = "/v1/peer";

/// How long dialling a peer (TCP, TLS and the WebSocket upgrade) may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The first message on a peer link (a text WebSocket message, JSON), from the technician's relay.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct PeerHello {
    /// The dialling relay's id.
    pub relay_id: String,
    /// The technician's sign-in token, checked by the streamer's relay as its own.
    pub token: String,
    /// The technician's product version, as its handshake gave it.
    pub product_version: String,
    /// The protocol version the technician's connection agreed on.
    pub protocol_version: String,
}

/// A peer link seen from the relay that dialled it.
pub type PeerSocket =
    tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

/// This relay's place in its fleet.
#[derive(Debug)]
pub struct Fleet {
    /// This relay's id (kept in `relay-id` in the data directory).
    pub relay_id: String,
    /// The `host:port` peers dial.
    pub announce: String,
    /// The peer port's TLS (client certificates from the fleet CA required).
    pub(crate) server: Arc<rustls::ServerConfig>,
    client: Arc<rustls::ClientConfig>,
    heartbeat: Duration,
    expiry_ms: i64,
}

impl Fleet {
    /// The fleet settings of `config`, for relay `relay_id`; `None` for a relay that runs alone.
    pub fn from_config(config: &Config, relay_id: &str) -> anyhow::Result<Option<Self>> {
        if config.peer_listen.is_none() {
            return Ok(None);
        }
        let (server, client) = crate::tls::peer_configs(config)?;
        Ok(Some(Self {
            relay_id: relay_id.to_owned(),
            announce: config
                .announce_address
                .clone()
                .context("peer_listen needs announce_address")?,
            server,
            client,
            heartbeat: Config::ms(config.heartbeat_ms),
            expiry_ms: i64::try_from(config.relay_expiry_ms).unwrap_or(i64::MAX),
        }))
    }

    /// Heartbeats at or after this time (Unix ms) are alive at `now_ms`.
    pub fn alive_after(&self, now_ms: i64) -> i64 {
        now_ms.saturating_sub(self.expiry_ms)
    }

    /// Dials the peer at `address` (`host:port`) and sends `hello`: mutual TLS with the fleet's
    /// certificates, the peer's checked against the fleet CA for `host`.
    pub async fn dial(&self, address: &str, hello: &PeerHello) -> anyhow::Result<PeerSocket> {
        tokio::time::timeout(DIAL_TIMEOUT, self.dial_inner(address, hello))
            .await
            .map_err(|_| anyhow::anyhow!("no answer from {address} within {DIAL_TIMEOUT:?}"))?
    }

    async fn dial_inner(&self, address: &str, hello: &PeerHello) -> anyhow::Result<PeerSocket> {
        use futures_util::SinkExt as _;
        let (host, _) = address
            .rsplit_once(':')
            .with_context(|| format!("peer address {address:?} has no port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .with_context(|| format!("peer host {host:?}"))?;
        let tcp = TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {address}"))?;
        let _ = tcp.set_nodelay(true);
        let tls = TlsConnector::from(self.client.clone())
            .connect(name, tcp)
            .await
            .with_context(|| format!("TLS with {address}"))?;
        let max = protocol::max_frame_len();
        let ws_config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max))
            .read_buffer_size(16 * 1024)
            .write_buffer_size(16 * 1024);
        let url = format!("wss://{address}{PEER_PATH}");
        let (mut ws, _) = tokio_tungstenite::client_async_with_config(url, tls, Some(ws_config))
            .await
            .with_context(|| format!("WebSocket upgrade at {address}"))?;
        let text = serde_json::to_string(hello)?;
        ws.send(tokio_tungstenite::tungstenite::Message::Text(text.into()))
            .await
            .context("sending the peer hello")?;
        Ok(ws)
    }
}

/// This relay's id: read from `relay-id` in the data directory, made on first start.
pub fn relay_id(data_dir: &std::path::Path) -> anyhow::Result<String> {
    let path = data_dir.join("relay-id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_owned()),
        _ => {
            let id = crate::secrets::new_id().map_err(|e| anyhow::anyhow!("no relay id: {e}"))?;
            std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
            Ok(id)
        }
    }
}

/// Joins the fleet: what this relay's last run left in the shared tables goes (its sessions and
/// files were closed by its own recovery), then the first heartbeat.
pub async fn join(store: &Store, fleet: &Fleet) -> anyhow::Result<()> {
    store.leave_fleet(&fleet.relay_id).await?;
    store.heartbeat(&fleet.relay_id, &fleet.announce).await?;
    Ok(())
}

/// Beats this relay's heart until shutdown, and closes up after any peer found silent.
pub(crate) async fn run(shared: Arc<Shared>) {
    let Some(fleet) = shared.fleet.as_ref() else {
        return;
    };
    let mut tick = tokio::time::interval(fleet.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Notices from before this start concern connections this relay does not hold.
    let mut last_notice = shared.store.last_fleet_notice().await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "reading the fleet's notices");
        0
    });
    loop {
        tokio::select! {
            _ = shared.shutdown.cancelled() => break,
            _ = tick.tick() => {}
        }
        let beat = shared.store.heartbeat(&fleet.relay_id, &fleet.announce);
        match beat.await {
            Ok(false) => {}
            // Taken for dead while the database was out of reach: what this relay holds is
            // published again (its sessions were ended as lost by a peer; they end here too
            // as they end).
            Ok(true) => {
                tracing::warn!(
                    "this relay was taken for dead by its fleet; publishing its streamers again"
                );
                if let Err(e) = republish(&shared, fleet).await {
                    tracing::error!(error = %e, "publishing this relay's streamers again");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "fleet heartbeat failed");
                continue;
            }
        }
        match act_on_notices(&shared, last_notice).await {
            Ok(last) => last_notice = last,
            Err(e) => tracing::error!(error = %e, "reading the fleet's notices"),
        }
        if let Err(e) = sweep(&shared, fleet).await {
            tracing::error!(error = %e, "closing up after a silent relay");
        }
    }
    // A clean stop: peers stop routing here at once (the sessions were ended by the drain).
    if let Err(e) = shared.store.leave_fleet(&fleet.relay_id).await {
        tracing::warn!(error = %e, "leaving the fleet");
    }
}

/// Publishes again every streamer and session code this relay holds.
async fn republish(shared: &Shared, fleet: &Fleet) -> Result<(), crate::store::StoreError> {
    let held = shared.hub.held();
    for d in held.devices {
        let store = &shared.store;
        store
            .set_presence(&d.device_id, &fleet.relay_id, d.conn_id)
            .await?;
        if d.busy {
            store
                .set_presence_busy(&d.device_id, &fleet.relay_id, true)
                .await?;
        }
    }
    for c in held.codes {
        shared
            .store
            .add_session_code(
                &c.code,
                &c.team_id,
                &fleet.relay_id,
                c.conn_id,
                c.expires_at_ms,
            )
            .await?;
    }
    Ok(())
}

/// How long a notice is kept: far longer than any relay's heartbeat interval.
const NOTICE_KEEP_MS: i64 = 10 * 60 * 1000;

/// What a notice of another relay (or this one) asks of the connections this relay holds.
async fn act_on_notices(shared: &Shared, after: i64) -> anyhow::Result<i64> {
    let notices = shared
        .store
        .fleet_notices_after(after, shared.clock.now_ms() - NOTICE_KEEP_MS)
        .await?;
    let mut last = after;
    for n in notices {
        last = n.id;
        match n.kind.as_str() {
            SIGN_IN_ENDED => {
                shared
                    .hub
                    .revoke_technician_token(&n.subject, crate::hub::Revocation::parse(&n.detail));
            }
            DEVICE_REVOKED => shared.hub.revoke_device(&n.subject),
            DEVICE_MOVED
                if shared
                    .fleet
                    .as_ref()
                    .is_some_and(|f| f.relay_id != n.detail) =>
            {
                shared.hub.device_moved(&n.subject);
            }
            DEVICE_MOVED => {}
            SESSION_ENDED => {
                let (team, message) = n.detail.split_once('\n').unwrap_or((&n.detail, ""));
                shared.hub.end_session(
                    team,
                    &n.subject,
                    protocol::EndReason::EndedByAdmin,
                    message,
                );
            }
            other => tracing::warn!(kind = other, "a fleet notice of an unknown kind"),
        }
    }
    Ok(last)
}

/// A sign-in ended (signed out, or its user removed): its connections are cut.
pub(crate) const SIGN_IN_ENDED: &str = "sign_in_ended";
/// A device's credential was revoked: its streamer is cut.
pub(crate) const DEVICE_REVOKED: &str = "device_revoked";
/// A device's streamer connected to the relay named in the detail: a connection of it that
/// another relay still holds is stale (its session ends as lost, as on one relay).
pub(crate) const DEVICE_MOVED: &str = "device_moved";
/// An owner or admin ended a session: the relay running it ends it.
pub(crate) const SESSION_ENDED: &str = "session_ended";

/// Tells every relay of the fleet (within a heartbeat) what to do to the connections it holds;
/// nothing for a relay that runs alone.
pub(crate) async fn notify(
    shared: &Shared,
    kind: &str,
    subject: &str,
    detail: &str,
) -> Result<(), crate::store::StoreError> {
    if shared.fleet.is_none() {
        return Ok(());
    }
    shared.store.add_fleet_notice(kind, subject, detail).await
}

/// Claims each silent relay (exactly one peer wins each), finishes its recordings and ends its
/// sessions as lost.
async fn sweep(shared: &Shared, fleet: &Fleet) -> anyhow::Result<()> {
    let before = fleet.alive_after(shared.clock.now_ms());
    for dead in shared.store.silent_relays(before).await? {
        if dead == fleet.relay_id || !shared.store.claim_silent_relay(&dead, before).await? {
            continue;
        }
        let held = shared.store.leave_fleet(&dead).await?;
        let recovered = crate::recorder::recovery::recover_peer(&shared.recorder, &dead).await?;
        shared.metrics.relay_lost();
        tracing::warn!(
            relay = %dead,
            devices = held,
            sessions = recovered.sessions,
            files = recovered.files,
            "a relay of the fleet went silent: its sessions ended as RELAY_LOST, its open recordings closed as incomplete"
        );
    }
    Ok(())
}

/// The peer port's router: the peer link's WebSocket, nothing else.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    use axum::extract::State;
    use axum::routing::get;
    axum::Router::new()
        .route(
            PEER_PATH,
            get(
                |State(shared): State<Arc<Shared>>, request: axum::extract::Request| async move {
                    // The peer port's TLS took the fleet's certificate: no budget before the hello.
                    crate::agent::socket::upgrade(request, None, move |socket, gate| {
                        crate::agent::serve_peer(shared, socket, gate)
                    })
                },
            ),
        )
        .with_state(shared)
}
