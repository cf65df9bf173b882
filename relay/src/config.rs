//! The relay's settings: defaults, then a TOML file, then environment variables and flags (main.rs).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

/// Every setting of the relay. `Config::default()` is a working relay for a small team.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the TLS material, the recordings' spool and (by default) the database and the
    /// recordings live.
    pub data_dir: PathBuf,
    /// The database: `postgres://user:password@host/name` (PostgreSQL, which a fleet of relays
    /// shares; `?sslmode=verify-full` for TLS), or `sqlite://PATH`; unset, `relay.db` in `data_dir`.
    pub database_url: Option<String>,
    /// Address of the HTTPS port that serves agents and the console.
    pub listen: SocketAddr,
    /// Host names and addresses the development certificate is issued for.
    pub server_names: Vec<String>,
    /// A real certificate chain (PEM) to use instead of the development CA.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// How long a technician's sign-in token is valid.
    pub token_ttl_secs: u64,
    /// How long an attended session code is valid.
    pub session_code_ttl_secs: u64,
    /// How long a new deployment code is valid.
    pub deployment_code_ttl_secs: u64,
    /// How long a new connection has to send `Hello`.
    pub hello_timeout_ms: u64,
    /// How long a new connection has to finish the handshake.
    pub handshake_timeout_ms: u64,
    /// How long a streamer has to accept or decline a session offer.
    pub offer_timeout_ms: u64,
    /// How long shutdown waits for sessions to end before closing connections.
    pub drain_timeout_ms: u64,
    /// Bytes queued towards one peer before the relay stops reading from the other (backpressure).
    pub forward_buffer_bytes: usize,
    /// How often the relay pings each connection.
    pub ping_interval_ms: u64,
    /// How long a connection may stay silent (pongs included) before it is dropped.
    pub idle_timeout_ms: u64,
    /// Messages a second one agent connection may send, sustained (twice as many in a burst); more
    /// is a flood and the connection is refused with `RATE_LIMITED`.
    pub max_messages_per_sec: u32,
    /// Device lists and session requests a second one technician connection may send, sustained
    /// (twice as many in a burst): the relay answers these itself, from the database.
    pub max_requests_per_sec: u32,
    /// Wrong passwords from one client address, across accounts, that pause sign-ins from it for
    /// 15 minutes; 0 turns the limit off (behind a balancer that hides client addresses every
    /// client would share one).
    pub max_sign_in_failures_per_address: u32,
    /// How long an HTTP client has to send a request's headers, and then its body; also how long an
    /// idle kept-alive connection stays open (slow clients are cut off, not waited for).
    pub http_request_timeout_ms: u64,
    /// The longest a recorded session may last (24 hours).
    pub max_recorded_session_secs: u64,
    /// How long before that limit the technician is warned (5 minutes).
    pub limit_warning_secs: u64,
    /// No recording file exceeds this many bytes (512 MiB).
    pub max_recording_file_bytes: u64,
    /// Recordings are deleted this many days after they end (90).
    pub retention_days: u64,
    /// How often retention looks for recordings to delete.
    pub retention_sweep_secs: u64,
    /// How often the database and the recordings store are probed for `/healthz` and `/metrics`
    /// (which report the last probe: a request never writes to the store itself).
    pub health_interval_ms: u64,
    /// Audit events are deleted this many days after they happened (90).
    pub audit_retention_days: u64,
    /// The address people open the relay's links at (`https://support.example.com`); unset, links
    /// use the host a request came to, and `relay admin` the first server name and the port.
    pub public_url: Option<String>,
    /// How long an invitation link works (7 days).
    pub invitation_ttl_secs: u64,
    /// How long a password-reset link works (1 day).
    pub password_reset_ttl_secs: u64,
    /// The SMTP server invitations are e-mailed through (`smtp://host:25`, `smtps://user:pass@host`,
    /// `smtp://host:587?tls=required`); unset, the console shows the links to copy.
    pub smtp_url: Option<String>,
    /// The sender of those e-mails (`Remote Support <support@example.com>`).
    pub smtp_from: Option<String>,
    /// Where `/metrics` is served in the Prometheus text format, over plain HTTP (an internal
    /// address: it is never on the public port); unset, nowhere.
    pub metrics_listen: Option<SocketAddr>,
    /// Where recordings are kept: `s3://BUCKET` or `s3://BUCKET/PREFIX` (an S3-compatible store,
    /// which a fleet of relays shares; the `s3_*` settings or the usual `AWS_*` environment
    /// variables say where and with which keys), or `file:///PATH` (a directory); unset,
    /// `recordings/` in `data_dir`.
    pub recordings_url: Option<String>,
    /// The S3 endpoint (`https://s3.example.com`); unset, AWS's for the region (or `AWS_ENDPOINT`).
    pub s3_endpoint: Option<String>,
    /// The S3 region (or `AWS_REGION`; `us-east-1` when neither is set).
    pub s3_region: Option<String>,
    /// The S3 access key id (or `AWS_ACCESS_KEY_ID`).
    pub s3_access_key_id: Option<String>,
    /// The S3 secret access key (or `AWS_SECRET_ACCESS_KEY`).
    pub s3_secret_access_key: Option<Secret>,
    /// Allows an `http://` endpoint (recordings then cross the network unencrypted: only for a
    /// store on the relay's own machine or network).
    pub s3_allow_http: bool,
    /// Where this relay takes links from the other relays of its fleet (mutual TLS with
    /// certificates from `fleet_ca`); unset, the relay runs alone. A fleet shares one PostgreSQL
    /// database (`database_url`) and one S3-compatible store (`recordings_url`).
    pub peer_listen: Option<SocketAddr>,
    /// The `host:port` the other relays dial to reach `peer_listen` (its host is a name in
    /// `fleet_cert`).
    pub announce_address: Option<String>,
    /// The fleet's CA certificate (PEM): the only issuer of relay certificates this relay trusts
    /// on the peer port, both ways (`relay admin fleet-ca` makes one).
    pub fleet_ca: Option<PathBuf>,
    /// This relay's certificate from the fleet's CA (PEM), for both ends of a peer link
    /// (`relay admin fleet-cert`).
    pub fleet_cert: Option<PathBuf>,
    /// The private key (PEM) of `fleet_cert`.
    pub fleet_key: Option<PathBuf>,
    /// How often a relay of a fleet tells the database it is alive.
    pub heartbeat_ms: u64,
    /// A relay whose last heartbeat is older than this is dead to its peers: its streamers count
    /// as offline, and one peer ends its sessions as `RELAY_LOST` and finishes its recordings.
    pub relay_expiry_ms: u64,
}

/// A setting that is a secret: shown as `***` in logs and debug output.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"***\"")
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("relay-data"),
            database_url: None,
            listen: SocketAddr::from(([0, 0, 0, 0], 8443)),
            server_names: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            tls_cert: None,
            tls_key: None,
            token_ttl_secs: 12 * 3600,
            session_code_ttl_secs: 10 * 60,
            deployment_code_ttl_secs: 7 * 24 * 3600,
            hello_timeout_ms: 10_000,
            handshake_timeout_ms: 30_000,
            offer_timeout_ms: 30_000,
            drain_timeout_ms: 10_000,
            forward_buffer_bytes: 16 * 1024 * 1024,
            ping_interval_ms: 15_000,
            idle_timeout_ms: 45_000,
            max_messages_per_sec: 1_000,
            max_requests_per_sec: 5,
            http_request_timeout_ms: 10_000,
            max_sign_in_failures_per_address: 50,
            max_recorded_session_secs: 24 * 3600,
            limit_warning_secs: 5 * 60,
            max_recording_file_bytes: 512 * 1024 * 1024,
            retention_days: 90,
            retention_sweep_secs: 3600,
            health_interval_ms: 10_000,
            audit_retention_days: 90,
            public_url: None,
            invitation_ttl_secs: 7 * 24 * 3600,
            password_reset_ttl_secs: 24 * 3600,
            smtp_url: None,
            smtp_from: None,
            metrics_listen: None,
            recordings_url: None,
            s3_endpoint: None,
            s3_region: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
            s3_allow_http: false,
            peer_listen: None,
            announce_address: None,
            fleet_ca: None,
            fleet_cert: None,
            fleet_key: None,
            heartbeat_ms: 2_000,
            relay_expiry_ms: 10_000,
        }
    }
}

impl Config {
    /// Reads a TOML file; keys it does not set keep their defaults, unknown keys are an error.
    pub fn from_toml_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// The database's URL: `database_url`, or the embedded default in `data_dir`.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| crate::store::sqlite_url(&self.data_dir))
    }

    /// Checks settings that cannot work together.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "tls_cert and tls_key go together: set both or neither"
        );
        anyhow::ensure!(
            self.forward_buffer_bytes >= protocol::max_frame_len(),
            "forward_buffer_bytes must hold at least one largest frame ({} bytes)",
            protocol::max_frame_len()
        );
        anyhow::ensure!(
            self.hello_timeout_ms > 0
                && self.handshake_timeout_ms > 0
                && self.http_request_timeout_ms > 0,
            "timeouts must be positive"
        );
        anyhow::ensure!(
            self.max_messages_per_sec >= 200 && self.max_requests_per_sec >= 1,
            "max_messages_per_sec must be at least 200 (video, audio and input of one session) and \
             max_requests_per_sec at least 1"
        );
        anyhow::ensure!(
            self.smtp_url.is_some() == self.smtp_from.is_some(),
            "smtp_url and smtp_from go together: set both or neither"
        );
        // Without it, a link would be made from the Host a request named, and a request can
        // name any host: an e-mailed link must point at the relay's real address.
        anyhow::ensure!(
            self.smtp_url.is_none() || self.public_url.is_some(),
            "smtp_url needs public_url (the address people open the relay at, such as \
             https://support.example.com): e-mailed links are made from it"
        );
        if let Some(url) = &self.public_url {
            anyhow::ensure!(
                url.starts_with("https://") && url.len() > "https://".len(),
                "public_url must be an https:// address, such as https://support.example.com"
            );
        }
        anyhow::ensure!(
            self.invitation_ttl_secs > 0 && self.password_reset_ttl_secs > 0,
            "invitation_ttl_secs and password_reset_ttl_secs must be positive"
        );
        if self.peer_listen.is_some() {
            anyhow::ensure!(
                self.announce_address.is_some()
                    && self.fleet_ca.is_some()
                    && self.fleet_cert.is_some()
                    && self.fleet_key.is_some(),
                "peer_listen needs announce_address, fleet_ca, fleet_cert and fleet_key: a relay \
                 of a fleet says where its peers reach it and proves it is one of them"
            );
            anyhow::ensure!(
                self.heartbeat_ms > 0 && self.relay_expiry_ms >= 3 * self.heartbeat_ms,
                "relay_expiry_ms must be at least three heartbeats (heartbeat_ms), so that one late \
                 heartbeat does not end a relay's sessions"
            );
        }
        Ok(())
    }

    /// The relay's address from its own settings: the first server name on the listening port.
    pub fn default_base_url(&self) -> String {
        let host = self
            .server_names
            .first()
            .map(String::as_str)
            .unwrap_or("localhost");
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        match self.listen.port() {
            443 => format!("https://{host}"),
            port => format!("https://{host}:{port}"),
        }
    }

    pub(crate) fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_overrides_only_what_it_sets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "data_dir = \"/srv/relay\"\ntoken_ttl_secs = 60\n").unwrap();
        let cfg = Config::from_toml_file(&path).unwrap();
        assert_eq!(cfg.data_dir, PathBuf::from("/srv/relay"));
        assert_eq!(cfg.token_ttl_secs, 60);
        assert_eq!(cfg.listen, Config::default().listen);
    }

    #[test]
    fn unknown_keys_and_half_tls_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, "data_dri = \"x\"\n").unwrap();
        let err = Config::from_toml_file(&path).unwrap_err();
        assert!(
            format!("{err:#}").contains("unknown field `data_dri`"),
            "{err:#}"
        );
        let cfg = Config {
            tls_cert: Some("cert.pem".into()),
            ..Config::default()
        };
        assert!(cfg.validate().is_err());
        assert!(Config::default().validate().is_ok());
        let half_fleet = Config {
            peer_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9443))),
            ..Config::default()
        };
        let err = half_fleet.validate().unwrap_err().to_string();
        assert!(err.contains("announce_address"), "{err}");
        // Security review finding 17: e-mailed links are never made from a request's Host.
        let mail_without_address = Config {
            smtp_url: Some("smtp://127.0.0.1:25".into()),
            smtp_from: Some("support@example.com".into()),
            ..Config::default()
        };
        let err = mail_without_address.validate().unwrap_err().to_string();
        assert!(err.contains("smtp_url needs public_url"), "{err}");
        let with_address = Config {
            public_url: Some("https://support.example.com".into()),
            ..mail_without_address
        };
        assert!(with_address.validate().is_ok());
    }
}
