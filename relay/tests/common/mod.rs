//! A relay started in-process on 127.0.0.1:0 with a fresh data directory, and clients to drive it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod media;
pub mod netcut;
pub mod process;
pub mod recorded;

use std::sync::Arc;
use std::time::Duration;

use protocol::{Credential, Message, ProductVersion, Role, SessionTarget};
use relay::store::{Store, TeamSettings};
use relay::{Config, ManualClock, Relay};
use relay_client::{Connection, Connector, Established, LinkError};
use tokio_util::sync::CancellationToken;

pub const CURRENT: ProductVersion = ProductVersion::new(3, 5, 8, 0);
pub const OLD: ProductVersion = ProductVersion::new(3, 5, 7, 9);
pub const PASSWORD: &str = "correct horse battery staple";

/// A team made for a test, with its owner signed in.
pub struct Team {
    pub id: String,
    pub attended_key: String,
    pub owner_email: String,
    pub token: String,
}

pub struct TestRelay {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub connector: Connector,
    pub store: Store,
    pub clock: ManualClock,
    pub shutdown: CancellationToken,
    pub served: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub config: Config,
    pub recorder: relay::recorder::RecorderContext,
    /// Where `/metrics` is served, when the config asked for it (on any free port).
    pub metrics: Option<std::net::SocketAddr>,
}

pub use relay::test_engines::database_url as test_database_url;
pub use relay::test_engines::recordings_url as test_recordings_url;

/// The URL of the database a test relay on `dir` uses, whichever engine it is.
pub fn database_url_of(dir: &std::path::Path) -> String {
    relay::test_engines::database_url_or_default(dir)
}

pub fn test_config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_path_buf(),
        database_url: test_database_url(dir),
        recordings_url: test_recordings_url(dir),
        listen: "127.0.0.1:0".parse().unwrap(),
        offer_timeout_ms: 5_000,
        drain_timeout_ms: 5_000,
        ..Config::default()
    }
}

/// The keys of every object in a relay's recordings store, whichever store it is (a directory or
/// S3), but the health probe's.
pub async fn stored_objects(relay: &TestRelay) -> Vec<String> {
    use futures_util::TryStreamExt as _;
    let listed: Vec<_> = relay
        .recorder
        .recordings
        .objects()
        .list(None)
        .try_collect()
        .await
        .unwrap();
    listed
        .into_iter()
        .map(|meta| meta.location.to_string())
        .filter(|key| !key.starts_with("health/"))
        .collect()
}

/// The bytes of the object `key` in a relay's recordings store.
pub async fn read_object(relay: &TestRelay, key: &str) -> Vec<u8> {
    read_object_in(&relay.recorder.recordings, key).await
}

/// The bytes of the object `key` in the recordings store of a test relay (stopped, or another
/// process) on the data directory `data`.
pub async fn read_stored(data: &std::path::Path, key: &str) -> Vec<u8> {
    let recordings = relay::recording::Recordings::open(&test_config(data)).unwrap();
    read_object_in(&recordings, key).await
}

async fn read_object_in(recordings: &relay::recording::Recordings, key: &str) -> Vec<u8> {
    use object_store::ObjectStoreExt as _;
    let got = recordings
        .objects()
        .get(&object_store::path::Path::from(key))
        .await
        .unwrap();
    got.bytes().await.unwrap().to_vec()
}

/// Replaces the object `key` in a relay's recordings store with `bytes` (as someone with access
/// to the store could).
pub async fn write_object(relay: &TestRelay, key: &str, bytes: &[u8]) {
    use object_store::ObjectStoreExt as _;
    relay
        .recorder
        .recordings
        .objects()
        .put(
            &object_store::path::Path::from(key),
            object_store::PutPayload::from(bytes.to_vec()),
        )
        .await
        .unwrap();
}

impl TestRelay {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        // The relay's log in the test's output: warnings by default, more with RUST_LOG.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
        let dir = tempfile::tempdir().unwrap();
        let mut config = test_config(dir.path());
        tweak(&mut config);
        Self::start_on(dir, config, ManualClock::new(1_800_000_000_000)).await
    }

    /// A relay on an existing data directory (another relay's, stopped) with `clock`.
    pub async fn start_on(dir: tempfile::TempDir, config: Config, clock: ManualClock) -> Self {
        let relay = Relay::prepare(config.clone(), Arc::new(clock.clone()))
            .await
            .unwrap();
        let ca = relay.dev_ca_cert().expect("a development CA").to_path_buf();
        let connector = Connector::trusting_ca_file(&ca).unwrap();
        let store = relay.store().clone();
        let recorder = relay.recorder().clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (relay, metrics) = match config.metrics_listen {
            Some(_) => {
                let m = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let addr = m.local_addr().unwrap();
                (relay.with_metrics_listener(m), Some(addr))
            }
            None => (relay, None),
        };
        let shutdown = CancellationToken::new();
        let served = tokio::spawn(relay.serve(listener, shutdown.clone()));
        Self {
            dir,
            addr: format!("localhost:{port}"),
            connector,
            store,
            clock,
            shutdown,
            served,
            config,
            recorder,
            metrics,
        }
    }

    pub async fn team(&self, name: &str) -> Team {
        let email = format!("owner@{name}.example");
        let created = self
            .store
            .create_team(name, &email, "Owner", PASSWORD)
            .await
            .unwrap();
        let token = self.sign_in(&email).await;
        Team {
            id: created.team.id,
            attended_key: created.team.attended_key,
            owner_email: email,
            token,
        }
    }

    pub async fn sign_in(&self, email: &str) -> String {
        self.store
            .sign_in(email, PASSWORD, 3_600_000)
            .await
            .unwrap()
            .unwrap()
            .token
    }

    pub async fn set_recording(&self, team: &Team, attended: bool, unattended: bool) {
        let mut s: TeamSettings = self.store.team_settings(&team.id).await.unwrap().unwrap();
        s.record_attended = attended;
        s.record_unattended = unattended;
        self.store.set_team_settings(&team.id, &s).await.unwrap();
    }

    pub async fn connect(&self) -> Connection {
        self.connector.connect(&self.addr).await.unwrap()
    }

    /// A TLS connection upgraded to the agents' WebSocket by hand (the `101` read), for tests that
    /// write WebSocket frames themselves: what a client library would never send.
    pub async fn raw_agent_socket(&self) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut tls = self.connector.tls(&self.addr).await.unwrap();
        tls.write_all(
            b"GET /v1/agent HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(tls.read_u8().await.unwrap());
        }
        assert!(
            head.starts_with(b"HTTP/1.1 101"),
            "{}",
            String::from_utf8_lossy(&head)
        );
        tls
    }

    /// A client of `role` whose `Hello` lists protocol `version` only (an older client), signed in
    /// with `credential`; the device id when the relay registered one.
    pub async fn client_speaking(
        &self,
        role: Role,
        credential: Credential,
        version: &str,
    ) -> (Connection, Option<String>) {
        let mut c = self.connect().await;
        let (mut machine, hello) = protocol::ClientHandshake::start(role, CURRENT, credential);
        let Message::Hello {
            role,
            product_version,
            ..
        } = hello
        else {
            panic!("the handshake starts with Hello")
        };
        c.send(&Message::Hello {
            role,
            product_version,
            protocol_versions: vec![version.into()],
        })
        .await
        .unwrap();
        let mut device_id = None;
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), c.recv())
                .await
                .expect("a message within 10 s")
                .unwrap();
            match machine.receive(msg).unwrap() {
                protocol::ClientEvent::Send(m) => c.send(&m).await.unwrap(),
                protocol::ClientEvent::Registered { device_id: id, .. } => device_id = Some(id),
                protocol::ClientEvent::Established {
                    protocol_version, ..
                } => {
                    assert_eq!(protocol_version.to_string(), version);
                    return (c, device_id);
                }
                protocol::ClientEvent::SessionCode { .. } => {}
            }
        }
    }

    pub async fn technician(&self, team: &Team) -> Connection {
        self.technician_at(team, &self.addr).await
    }

    /// A technician connected to `addr` (the relay, or a path to it such as a [`netcut::NetPath`]).
    pub async fn technician_at(&self, team: &Team, addr: &str) -> Connection {
        let mut c = self.connector.connect(addr).await.unwrap();
        c.handshake(
            Role::Technician,
            CURRENT,
            Credential::TechnicianToken {
                token: team.token.clone(),
            },
        )
        .await
        .unwrap();
        c
    }

    /// Registers a new device with a deployment code; returns its connected streamer and id.
    pub async fn device(
        &self,
        team: &Team,
        version: ProductVersion,
    ) -> (Connection, String, String) {
        let code = self
            .store
            .create_deployment_code(&team.id, 3_600_000)
            .await
            .unwrap();
        let mut c = self.connect().await;
        let est: Established = c
            .handshake(
                Role::Streamer,
                version,
                Credential::DeploymentCode {
                    code,
                    device_name: "Front desk".into(),
                },
            )
            .await
            .unwrap();
        let (id, secret) = est.registered.expect("a device credential");
        (c, id, secret)
    }

    /// A new device's streamer and a technician of `team` in a session by device; returns the
    /// technician, the streamer, the device's id and the `SessionStarted`.
    pub async fn in_session(&self, team: &Team) -> (Connection, Connection, String, Message) {
        let (mut streamer, device_id, _) = self.device(team, CURRENT).await;
        let mut tech = self.technician(team).await;
        let started = pair(
            &mut tech,
            &mut streamer,
            SessionTarget::Device {
                device_id: device_id.clone(),
            },
        )
        .await;
        (tech, streamer, device_id, started)
    }

    /// Connects and runs the handshake as `role` with `credential`, at the current version.
    pub async fn handshake_as(
        &self,
        role: Role,
        credential: Credential,
    ) -> (Connection, Result<Established, LinkError>) {
        let mut c = self.connect().await;
        let result = c.handshake(role, CURRENT, credential).await;
        (c, result)
    }

    pub async fn attended(&self, team: &Team, version: ProductVersion) -> (Connection, String) {
        let mut c = self.connect().await;
        let est = c
            .handshake(
                Role::Streamer,
                version,
                Credential::Attended {
                    team_key: team.attended_key.clone(),
                    device_name: "Laptop".into(),
                },
            )
            .await
            .unwrap();
        let (code, _) = est.session_code.expect("a session code");
        (c, code)
    }

    /// An HTTPS request to the relay's API; returns the status and the JSON body (Null when empty).
    pub async fn api(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        self.connector
            .api(&self.addr, method, path, token, body.as_ref())
            .await
            .unwrap()
    }

    /// The bytes of a stored recording file, through the object store.
    pub async fn object(&self, key: &str) -> Vec<u8> {
        use object_store::ObjectStoreExt;
        let got = self
            .recorder
            .recordings
            .objects()
            .get(&object_store::path::Path::from(key))
            .await
            .unwrap();
        got.bytes().await.unwrap().to_vec()
    }

    /// Waits until a session's recording reaches `want`.
    pub async fn wait_recording_state(&self, session_id: &str, want: relay::store::RecordingState) {
        for _ in 0..500 {
            if self.store.recording_state(session_id).await.unwrap() == Some(want) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "the recording of {session_id} never became {want:?}: {:?}",
            self.store.recording_state(session_id).await
        );
    }

    pub async fn stop(self) {
        self.stop_keeping_data().await;
    }

    /// Stops the relay and returns its data directory, for a test to start another relay on it.
    pub async fn stop_keeping_data(self) -> (tempfile::TempDir, Config, ManualClock) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.served)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        (self.dir, self.config, self.clock)
    }
}

/// Receives the next message within 10 seconds.
///
/// `SessionTools`, which every session of a 1.1.0 side has right after its `RecordingState`, is
/// passed over: relay/tests/tools.rs checks it, and the other suites are about what follows.
pub async fn recv(c: &mut Connection) -> Message {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.recv())
            .await
            .expect("a message within 10 s")
            .unwrap()
        {
            Message::SessionTools(_) => continue,
            m => return m,
        }
    }
}

/// Receives until the relay closes the connection; returns the last refusal seen, if any.
pub async fn refused(c: &mut Connection) -> (protocol::ErrorCode, String) {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), c.recv())
            .await
            .expect("an answer within 10 s")
        {
            Ok(Message::Refused { code, message }) => return (code, message),
            Ok(_) => continue,
            Err(e) => panic!("connection ended without a refusal: {e}"),
        }
    }
}

/// Expects the handshake to be refused; returns the refusal.
pub fn handshake_refusal(result: Result<Established, LinkError>) -> protocol::Refusal {
    match result {
        Err(LinkError::Refused(r)) => r,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A technician asks for `target`; the streamer accepts. Returns the technician's `SessionStarted`.
pub async fn pair(
    tech: &mut Connection,
    streamer: &mut Connection,
    target: SessionTarget,
) -> Message {
    tech.send(&Message::SessionRequest {
        target,
        view: protocol::ViewRequest::default(),
    })
    .await
    .unwrap();
    let Message::SessionOffer { session_id, .. } = recv(streamer).await else {
        panic!("no offer")
    };
    streamer
        .send(&Message::SessionAccept { session_id })
        .await
        .unwrap();
    let started = recv(tech).await;
    assert!(
        matches!(started, Message::SessionStarted { .. }),
        "{started:?}"
    );
    started
}

/// A technician's session request that must be refused; returns the refusal.
pub async fn request_refused(
    tech: &mut Connection,
    target: SessionTarget,
) -> (protocol::ErrorCode, String) {
    tech.send(&Message::SessionRequest {
        target,
        view: protocol::ViewRequest::default(),
    })
    .await
    .unwrap();
    match recv(tech).await {
        Message::SessionRefused { code, message } => (code, message),
        other => panic!("expected SessionRefused, got {other:?}"),
    }
}

/// Streams `n` paced frames with a keyframe every `every`; stops early if the session ends.
pub async fn stream_or_end(
    streamer: &mut Connection,
    enc: &mut media::TestEncoder,
    n: usize,
    every: usize,
) -> Option<Message> {
    for i in 0..n {
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(5), streamer.recv()).await {
            if matches!(m, Message::SessionEnded { .. }) {
                return Some(m);
            }
        }
        let frame = enc.frame(i % every == 0);
        if streamer.send(&frame).await.is_err() {
            return None;
        }
    }
    None
}

/// Where the directory store (the default) keeps a recording object under a data directory.
pub fn object_path(data: &std::path::Path, key: &str) -> std::path::PathBuf {
    data.join("recordings").join(key)
}

/// `GET /metrics` over plain HTTP, parsed.
pub async fn scrape(addr: std::net::SocketAddr) -> prometheus_parse::Scrape {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let get = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.unwrap();
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(15), get)
        .await
        .expect("/metrics answers within 15 s");
    let raw = String::from_utf8(raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    // Chunked or not: the chunk-size lines are not metric lines, and the parser skips nothing
    // silently, so take the body as sent when it is not chunked.
    let text = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_owned()
    };
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").unwrap();
        let n = usize::from_str_radix(size.trim(), 16).unwrap();
        if n == 0 {
            return out;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
}

/// The value of `name` with `labels`, as a number (0 when the series is absent).
pub fn metric_value(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(v)));
    match found.map(|s| &s.value) {
        None => 0.0,
        Some(
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v),
        ) => *v,
        Some(prometheus_parse::Value::Histogram(buckets)) => buckets
            .iter()
            .find(|b| b.less_than.is_infinite())
            .map_or(0.0, |b| b.count),
        Some(other) => panic!("{name}: {other:?}"),
    }
}

/// `(METHOD, path)` of every `.route("/path", get(..).post(..))` in the relay's router sources.
pub fn served_routes() -> std::collections::BTreeSet<(String, String)> {
    let mut ops = std::collections::BTreeSet::new();
    for file in ["src/api.rs", "src/console/mod.rs"] {
        let text =
            std::fs::read_to_string(format!("{}/{file}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        // `.route("/path", ...)`, also as rustfmt wraps it over lines.
        for chunk in text.split(".route(").skip(1) {
            let Some(chunk) = chunk.trim_start().strip_prefix('"') else {
                continue;
            };
            let (path, rest) = chunk.split_once('"').unwrap();
            let call = &rest[..rest.find("))\n").map_or(rest.len(), |i| i + 2)];
            for method in ["get", "post", "put", "delete", "patch"] {
                if call.contains(&format!("{method}(")) {
                    ops.insert((method.to_uppercase(), path.to_owned()));
                }
            }
        }
    }
    ops
}
