//! The relay: authenticates technicians and streamers, pairs them and forwards (and records) sessions.
//!
//! `Relay::prepare` opens the data directory (SQLite, recordings store, TLS material) and
//! `Relay::serve` runs the HTTPS port until the shutdown token is cancelled, then drains. The binary in
//! `main.rs` only parses settings and signals; tests start the relay in-process on 127.0.0.1:0.

pub mod admin;
mod agent;
mod api;
pub mod bootstrap;
mod browser_guard;
pub mod clock;
pub mod config;
mod console;
pub mod fleet;
pub mod hub;
pub mod links;
pub mod mail;
pub mod metrics;
mod ops;
pub mod rate;
pub mod recorder;
pub mod recording;
pub mod secrets;
mod server;
mod session_log;
pub mod store;
pub mod test_engines;
pub mod throttle;
pub mod tls;
pub mod transfers;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use protocol::{ProductVersion, VersionError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use api::AGENT_PATH;
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use config::Config;

/// The relay's product version, from the workspace's one version.
pub fn product_version() -> Result<ProductVersion, VersionError> {
    ProductVersion::this_build()
}

/// Everything the connection tasks share. Handed down explicitly; there is no global state.
#[derive(Debug)]
pub(crate) struct Shared {
    config: Config,
    store: store::Store,
    clock: SharedClock,
    hub: hub::Hub,
    recordings: recording::Recordings,
    recorder: recorder::RecorderContext,
    links: links::LinkKey,
    /// Links already used, so that each is audited once (see [`links::UsedLinks`]).
    used_links: links::UsedLinks,
    mailer: Option<mail::Mailer>,
    sign_ins: throttle::SignInThrottle,
    codes: throttle::CodeThrottle,
    metrics: Arc<metrics::Metrics>,
    /// This relay's fleet, when it is one of several.
    fleet: Option<fleet::Fleet>,
    version: ProductVersion,
    /// The last probe of the database and the recordings store (`/healthz`, `/metrics`), made on
    /// a timer by [`Shared::keep_probing`].
    health: tokio::sync::watch::Sender<(bool, bool)>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

/// A relay with its data directory open, ready to serve.
#[derive(Debug)]
pub struct Relay {
    shared: Arc<Shared>,
    tls: Arc<rustls::ServerConfig>,
    dev_ca: Option<PathBuf>,
    metrics: Option<TcpListener>,
}

impl Shared {
    /// Whether the database and the recordings store answered at the last probe.
    pub(crate) fn health(&self) -> (bool, bool) {
        *self.health.borrow()
    }

    /// Probes every `health_interval_ms` until shutdown. Unauthenticated `/healthz` requests read
    /// the last probe: however many arrive, the store sees one write and one delete an interval.
    async fn keep_probing(self: Arc<Self>) {
        let every = Config::ms(self.config.health_interval_ms);
        loop {
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                () = tokio::time::sleep(every) => {}
            }
            self.health.send_replace(self.probe_health().await);
        }
    }

    /// Whether the database and the recordings store answer now (each within
    /// [`metrics::HEALTH_TIMEOUT`]): a query, and a small object written and deleted.
    async fn probe_health(&self) -> (bool, bool) {
        let within = metrics::HEALTH_TIMEOUT;
        let (database, store) = tokio::join!(
            tokio::time::timeout(within, self.store.ping()),
            tokio::time::timeout(within, self.recordings.probe()),
        );
        (
            database.is_ok_and(|r| r.is_ok()),
            store.is_ok_and(|r| r.is_ok()),
        )
    }

    /// The metrics exposition now.
    pub(crate) async fn metrics_text(&self) -> String {
        let (database_up, store_up) = self.health();
        let (live_sessions, streamers_online, technician_connections) = self.hub.counts();
        self.metrics.render(&metrics::Gauges {
            database_up,
            store_up,
            live_sessions,
            streamers_online,
            technician_connections,
        })
    }
}

impl Relay {
    /// Opens (creating on first start) the data directory: database, recordings, TLS material.
    pub async fn prepare(config: Config, clock: SharedClock) -> anyhow::Result<Self> {
        config.validate()?;
        std::fs::create_dir_all(&config.data_dir).with_context(|| {
            format!("creating the data directory {}", config.data_dir.display())
        })?;
        let (tls, dev_ca) = tls::server_config(&config)?;
        let relay_id = fleet::relay_id(&config.data_dir)?;
        let fleet = fleet::Fleet::from_config(&config, &relay_id)
            .context("the fleet's peer-link settings")?;
        let store = store::Store::open(&config.database_url(), clock.clone())
            .await
            .context("opening the database")?
            .for_relay(&relay_id);
        let recordings =
            recording::Recordings::open(&config).context("opening the recordings store")?;
        let spool_dir = config.data_dir.join("spool");
        std::fs::create_dir_all(&spool_dir)
            .with_context(|| format!("creating the recording spool {}", spool_dir.display()))?;
        let metrics = Arc::new(metrics::Metrics::default());
        let recorder = recorder::RecorderContext {
            metrics: metrics.clone(),
            store: store.clone(),
            recordings: recordings.clone(),
            spool_dir,
            clock: clock.clone(),
            max_file_bytes: config.max_recording_file_bytes,
            mirror_spool: config.peer_listen.is_some(),
        };
        let recovered = recorder::recovery::recover(&recorder)
            .await
            .context("closing recordings left open by the last run")?;
        if recovered != recorder::recovery::Recovered::default() {
            tracing::warn!(
                files = recovered.files,
                sessions = recovered.sessions,
                "recovered from an unclean stop"
            );
        }
        if let Some(fleet) = &fleet {
            fleet::join(&store, fleet)
                .await
                .context("joining the fleet")?;
        }
        let links = links::LinkKey::load_or_create(&config.data_dir)
            .context("opening the link-signing key")?;
        let mailer = match (&config.smtp_url, &config.smtp_from) {
            (Some(url), Some(from)) => Some(mail::Mailer::new(url, from)?),
            _ => None,
        };
        let mut sign_ins = throttle::SignInThrottle::new(
            usize::try_from(config.max_sign_in_failures_per_address).unwrap_or(usize::MAX),
        );
        let mut codes = throttle::CodeThrottle::default();
        if fleet.is_some() {
            // Fleet-wide: a guess counts whichever relay it reaches.
            sign_ins = sign_ins.in_database(&store);
            codes = codes.in_database(&store);
        }
        let shared = Arc::new(Shared {
            links,
            used_links: links::UsedLinks::default(),
            mailer,
            sign_ins,
            codes,
            metrics,
            fleet,
            version: product_version()?,
            recorder,
            config,
            store,
            clock,
            hub: hub::Hub::default(),
            recordings,
            health: tokio::sync::watch::Sender::new((false, false)),
            shutdown: CancellationToken::new(),
            tracker: TaskTracker::new(),
        });
        // Healthy or not from the first request on; then on the timer, from `serve`.
        shared.health.send_replace(shared.probe_health().await);
        Ok(Self {
            shared,
            tls,
            dev_ca: dev_ca.map(|p| p.ca_cert),
            metrics: None,
        })
    }

    /// Serves `/metrics` on `listener` too (plain HTTP), from [`Relay::serve`] until shutdown.
    pub fn with_metrics_listener(mut self, listener: TcpListener) -> Self {
        self.metrics = Some(listener);
        self
    }

    /// The SQL store, for administration and tests.
    pub fn store(&self) -> &store::Store {
        &self.shared.store
    }

    /// The development CA certificate that clients should trust, when no real certificate is set.
    pub fn dev_ca_cert(&self) -> Option<&Path> {
        self.dev_ca.as_deref()
    }

    /// The recorder's context, for administration and tests (retention sweeps).
    pub fn recorder(&self) -> &recorder::RecorderContext {
        &self.shared.recorder
    }

    /// Creates the first team and owner on a fresh relay.
    pub async fn bootstrap_if_empty(&self) -> anyhow::Result<Option<bootstrap::Bootstrap>> {
        let ttl = i64::try_from(
            self.shared
                .config
                .deployment_code_ttl_secs
                .saturating_mul(1000),
        )
        .unwrap_or(i64::MAX);
        bootstrap::bootstrap_if_empty(&self.shared.store, &self.shared.config.data_dir, ttl).await
    }

    /// Serves `listener` until `shutdown` is cancelled, then ends every session with a reason and
    /// waits up to the drain timeout for connections to close.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<()> {
        let shared = self.shared;
        let prober = tokio::spawn(shared.clone().keep_probing());
        let router = api::router(shared.clone());
        let accept = tokio::spawn(server::accept_loop(
            listener,
            self.tls,
            router,
            Config::ms(shared.config.http_request_timeout_ms),
            Config::ms(shared.config.idle_timeout_ms),
            shared.shutdown.clone(),
            shared.tracker.clone(),
        ));
        let peers = match (&shared.fleet, shared.config.peer_listen) {
            (Some(fleet), Some(addr)) => {
                let listener = TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("listening for peer links on {addr}"))?;
                tracing::info!(%addr, announce = %fleet.announce, relay = %fleet.relay_id, "peer links of the fleet");
                Some(tokio::spawn(server::accept_loop(
                    listener,
                    fleet.server.clone(),
                    fleet::router(shared.clone()),
                    Config::ms(shared.config.http_request_timeout_ms),
                    Config::ms(shared.config.idle_timeout_ms),
                    shared.shutdown.clone(),
                    shared.tracker.clone(),
                )))
            }
            _ => None,
        };
        let heartbeat = tokio::spawn(fleet::run(shared.clone()));
        let metrics = self.metrics.map(|listener| {
            let stop = shared.shutdown.clone();
            tokio::spawn(std::future::IntoFuture::into_future(
                axum::serve(listener, metrics::router(shared.clone()))
                    .with_graceful_shutdown(async move { stop.cancelled().await }),
            ))
        });
        let retention = tokio::spawn(recorder::retention::run(
            shared.recorder.clone(),
            std::time::Duration::from_secs(shared.config.retention_days.saturating_mul(86_400)),
            std::time::Duration::from_secs(
                shared.config.audit_retention_days.saturating_mul(86_400),
            ),
            std::time::Duration::from_secs(shared.config.retention_sweep_secs),
            shared.shutdown.clone(),
        ));
        shutdown.cancelled().await;
        tracing::info!("shutting down: ending sessions");
        shared.shutdown.cancel();
        let _ = accept.await;
        let _ = retention.await;
        let _ = prober.await;
        if let Some(peers) = peers {
            let _ = peers.await;
        }
        if let Some(metrics) = metrics {
            let _ = metrics.await;
        }
        shared.tracker.close();
        let drain = Config::ms(shared.config.drain_timeout_ms);
        if tokio::time::timeout(drain, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = shared.tracker.len(),
                "drain deadline passed; closing the rest"
            );
        }
        // Leaves the fleet once the sessions are ended.
        let _ = heartbeat.await;
        shared.store.close().await;
        Ok(())
    }
}

/// Runs a relay on `listener` with the system clock until `shutdown`.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    Relay::prepare(config, Arc::new(SystemClock))
        .await?
        .serve(listener, shutdown)
        .await
}
