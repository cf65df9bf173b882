//! What an operator watches: counters the relay keeps as it works, and gauges read when scraped,
//! in the Prometheus text exposition format (version 0.0.4), served on a listen address of their
//! own (`metrics_listen`, off by default), never on the public port. Also the health check the
//! public `/healthz` answers with: whether the database and the recordings store answer now.
//!
//! Names and labels are documented in ARCHITECTURE.md ("Operations"); a test scrapes them and
//! parses them with a Prometheus text-format parser.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::hub::lock;
use crate::Shared;

/// Upper bounds (seconds) of the upload-duration histogram's buckets.
const UPLOAD_BUCKETS: [f64; 10] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// How long a health check waits for each of the database and the store.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(5);

/// The relay's counters, shared by its tasks.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Refusals sent (`Refused` and `SessionRefused`), by code name.
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    /// Sessions started, by whether they are recorded.
    started_recorded: AtomicU64,
    started_unrecorded: AtomicU64,
    /// Sessions ended, by end reason name.
    ended: Mutex<BTreeMap<String, u64>>,
    /// Sign-ins refused because their address or account is paused.
    throttled_sign_ins: AtomicU64,
    /// Recording files stored, and their bytes.
    files_stored: AtomicU64,
    recorded_bytes: AtomicU64,
    /// Uploads of closed files to the recordings store that failed.
    upload_failures: AtomicU64,
    uploads: Mutex<Histogram>,
    /// Peer links (a fleet's relay-to-relay session links) open now, by direction.
    peer_links_out: AtomicU64,
    peer_links_in: AtomicU64,
    /// Peer links opened, by direction, and dials that failed.
    peer_links_opened_out: AtomicU64,
    peer_links_opened_in: AtomicU64,
    peer_dial_failures: AtomicU64,
    /// Relays of the fleet this relay found dead and closed up after.
    relays_lost: AtomicU64,
}

/// Counts one open peer link while it lives.
#[derive(Debug)]
pub(crate) struct PeerLinkGuard {
    metrics: Arc<Metrics>,
    outgoing: bool,
}

impl Drop for PeerLinkGuard {
    fn drop(&mut self) {
        let open = if self.outgoing {
            &self.metrics.peer_links_out
        } else {
            &self.metrics.peer_links_in
        };
        open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug, Default)]
struct Histogram {
    /// Count of observations at or under each bucket's bound.
    buckets: [u64; UPLOAD_BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Metrics {
    /// A refusal with `code` went to a client.
    pub fn refused(&self, code: protocol::ErrorCode) {
        *lock(&self.refusals).entry(code.name()).or_default() += 1;
    }

    /// A session started.
    pub fn session_started(&self, recorded: bool) {
        let counter = if recorded {
            &self.started_recorded
        } else {
            &self.started_unrecorded
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A session ended with `reason`.
    pub fn session_ended(&self, reason: protocol::EndReason) {
        *lock(&self.ended).entry(reason.name()).or_default() += 1;
    }

    /// A sign-in was refused because its account or address is paused.
    pub fn sign_in_throttled(&self) {
        self.throttled_sign_ins.fetch_add(1, Ordering::Relaxed);
    }

    /// A closed recording file of `bytes` reached the store after `took`.
    pub fn uploaded(&self, bytes: u64, took: Duration) {
        self.files_stored.fetch_add(1, Ordering::Relaxed);
        self.recorded_bytes.fetch_add(bytes, Ordering::Relaxed);
        let secs = took.as_secs_f64();
        let mut h = lock(&self.uploads);
        for (i, bound) in UPLOAD_BUCKETS.iter().enumerate() {
            if secs <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// A peer link opened: `outgoing` when this relay dialled it (its technician's session runs
    /// on the streamer's relay), else a peer dialled this relay. Counted open until the guard drops.
    pub(crate) fn peer_link(self: &Arc<Self>, outgoing: bool) -> PeerLinkGuard {
        let (open, opened) = if outgoing {
            (&self.peer_links_out, &self.peer_links_opened_out)
        } else {
            (&self.peer_links_in, &self.peer_links_opened_in)
        };
        open.fetch_add(1, Ordering::Relaxed);
        opened.fetch_add(1, Ordering::Relaxed);
        PeerLinkGuard {
            metrics: self.clone(),
            outgoing,
        }
    }

    /// Dialling a peer relay failed.
    pub(crate) fn peer_dial_failed(&self) {
        self.peer_dial_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// This relay closed up after a dead peer.
    pub(crate) fn relay_lost(&self) {
        self.relays_lost.fetch_add(1, Ordering::Relaxed);
    }

    /// An upload of a closed recording file failed.
    pub fn upload_failed(&self) {
        self.upload_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition: these counters, and `now`'s gauges.
    pub fn render(&self, now: &Gauges) -> String {
        let mut out = String::new();
        let one = |v: u64| vec![(String::new(), v.to_string())];
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        fn labelled<K: std::fmt::Display>(
            label: &str,
            m: &Mutex<BTreeMap<K, u64>>,
        ) -> Vec<(String, String)> {
            lock(m)
                .iter()
                .map(|(k, v)| (format!("{{{label}=\"{k}\"}}"), v.to_string()))
                .collect()
        }
        let gauge = |v: usize| one(u64::try_from(v).unwrap_or(u64::MAX));
        family(
            &mut out,
            "relay_up",
            "gauge",
            "1 while the relay serves.",
            one(1),
        );
        family(
            &mut out,
            "relay_database_up",
            "gauge",
            "1 when the database answered at this scrape, 0 when it did not.",
            one(u64::from(now.database_up)),
        );
        family(
            &mut out,
            "relay_store_up",
            "gauge",
            "1 when the recordings store took a write and a delete at this scrape.",
            one(u64::from(now.store_up)),
        );
        family(
            &mut out,
            "relay_sessions",
            "gauge",
            "Sessions live on this relay now.",
            gauge(now.live_sessions),
        );
        family(
            &mut out,
            "relay_streamers_online",
            "gauge",
            "Streamers connected to this relay now.",
            gauge(now.streamers_online),
        );
        family(
            &mut out,
            "relay_technician_connections",
            "gauge",
            "Signed-in technician connections to this relay now.",
            gauge(now.technician_connections),
        );
        family(
            &mut out,
            "relay_sessions_started_total",
            "counter",
            "Sessions started, by whether the team's policy records them.",
            vec![
                (
                    "{recorded=\"true\"}".into(),
                    load(&self.started_recorded).to_string(),
                ),
                (
                    "{recorded=\"false\"}".into(),
                    load(&self.started_unrecorded).to_string(),
                ),
            ],
        );
        family(
            &mut out,
            "relay_sessions_ended_total",
            "counter",
            "Sessions ended, by end reason (docs/PROTOCOL.md).",
            labelled("reason", &self.ended),
        );
        family(
            &mut out,
            "relay_refusals_total",
            "counter",
            "Refusals sent to clients, by error code (docs/PROTOCOL.md).",
            labelled("code", &self.refusals),
        );
        family(
            &mut out,
            "relay_sign_ins_throttled_total",
            "counter",
            "Sign-ins refused because their account or address was paused after failures.",
            one(load(&self.throttled_sign_ins)),
        );
        family(
            &mut out,
            "relay_recording_files_stored_total",
            "counter",
            "Closed recording files that reached the recordings store.",
            one(load(&self.files_stored)),
        );
        family(
            &mut out,
            "relay_recorded_bytes_total",
            "counter",
            "Bytes of recording files that reached the recordings store.",
            one(load(&self.recorded_bytes)),
        );
        family(
            &mut out,
            "relay_upload_failures_total",
            "counter",
            "Uploads of closed recording files to the store that failed.",
            one(load(&self.upload_failures)),
        );
        let h = lock(&self.uploads);
        let mut series: Vec<(String, String)> = UPLOAD_BUCKETS
            .iter()
            .zip(h.buckets)
            .map(|(bound, n)| (format!("_bucket{{le=\"{bound}\"}}"), n.to_string()))
            .collect();
        series.push(("_bucket{le=\"+Inf\"}".into(), h.count.to_string()));
        series.push(("_sum".into(), h.sum.to_string()));
        series.push(("_count".into(), h.count.to_string()));
        drop(h);
        family(
            &mut out,
            "relay_upload_seconds",
            "histogram",
            "Time to put a closed recording file into the recordings store.",
            series,
        );
        let directions = |out_v: &AtomicU64, in_v: &AtomicU64| {
            vec![
                ("{direction=\"out\"}".to_owned(), load(out_v).to_string()),
                ("{direction=\"in\"}".to_owned(), load(in_v).to_string()),
            ]
        };
        family(
            &mut out,
            "relay_peer_links",
            "gauge",
            "Relay-to-relay session links open now: out, dialled by this relay for its technician; in, dialled by a peer to this relay's streamer.",
            directions(&self.peer_links_out, &self.peer_links_in),
        );
        family(
            &mut out,
            "relay_peer_links_opened_total",
            "counter",
            "Relay-to-relay session links opened, by direction.",
            directions(&self.peer_links_opened_out, &self.peer_links_opened_in),
        );
        family(
            &mut out,
            "relay_peer_dial_failures_total",
            "counter",
            "Dials to a peer relay that failed (unreachable, or its certificate refused).",
            one(load(&self.peer_dial_failures)),
        );
        family(
            &mut out,
            "relay_fleet_relays_lost_total",
            "counter",
            "Relays of the fleet this relay found silent past relay_expiry_ms and closed up after.",
            one(load(&self.relays_lost)),
        );
        out
    }
}

/// One metric family: its HELP and TYPE lines, then each sample (a suffix and labels after the
/// name, and the value).
fn family(out: &mut String, name: &str, kind: &str, help: &str, samples: Vec<(String, String)>) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for (suffix, value) in samples {
        let _ = writeln!(out, "{name}{suffix} {value}");
    }
}

/// What is read at scrape time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Gauges {
    pub database_up: bool,
    pub store_up: bool,
    pub live_sessions: usize,
    pub streamers_online: usize,
    pub technician_connections: usize,
}

/// `/metrics` alone, for the metrics listen address.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(shared): State<Arc<Shared>>| async move {
                (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    shared.metrics_text().await,
                )
            }),
        )
        .with_state(shared)
}

/// Whether the relay can do its work: the database answered and the recordings store took a write
/// at the last probe (every `health_interval_ms`). 200 when both did, 503 (with which one failed)
/// otherwise, for load balancers and monitors. Reading it costs the store nothing.
pub(crate) async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let (database, store) = shared.health();
    let word = |ok: bool| if ok { "ok" } else { "failing" };
    let status = if database && store {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(serde_json::json!({
            "status": word(database && store),
            "database": word(database),
            "store": word(store),
        })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether `sample` belongs to metric family `family` (a histogram's series carry suffixes).
    fn sample_of(sample: &str, family: &str) -> bool {
        let name = sample.split(['{', ' ']).next().unwrap_or_default();
        name == family
            || ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.strip_suffix(suffix) == Some(family))
    }

    #[test]
    fn each_family_has_its_help_and_type_before_its_samples() {
        let m = Metrics::default();
        m.refused(protocol::ErrorCode::AuthenticationFailed);
        m.refused(protocol::ErrorCode::AuthenticationFailed);
        m.session_started(true);
        m.session_ended(protocol::EndReason::TechnicianLeft);
        m.uploaded(1000, Duration::from_millis(70));
        let text = m.render(&Gauges {
            database_up: true,
            store_up: false,
            live_sessions: 2,
            ..Gauges::default()
        });
        assert!(text.contains(
            "# TYPE relay_refusals_total counter\nrelay_refusals_total{code=\"AUTHENTICATION_FAILED\"} 2\n"
        ));
        assert!(text.contains("relay_store_up 0\n"));
        assert!(text.contains("relay_sessions 2\n"));
        assert!(text.contains("relay_upload_seconds_bucket{le=\"0.05\"} 0\n"));
        assert!(text.contains("relay_upload_seconds_bucket{le=\"0.1\"} 1\n"));
        assert!(text.contains("relay_upload_seconds_count 1\n"));
        assert!(text.contains("relay_sessions_ended_total{reason=\"TECHNICIAN_LEFT\"} 1\n"));
        // Every sample line comes after its family's TYPE line.
        let mut family = String::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                family = rest.split_whitespace().next().unwrap().to_owned();
            } else if !line.starts_with('#') {
                assert!(sample_of(line, &family), "{line} under {family}");
            }
        }
    }
}
