//! Three relay processes on 127.0.0.1 as one fleet: one database and one recordings store shared
//! (PostgreSQL and the RADOS gateway in CI's engines run; otherwise one SQLite file and one
//! directory, which relays on one machine may share), peer links over mutual TLS with the fleet's
//! certificates.
//!
//! - A streamer on relay A and a technician on relay B: one session, recorded once (one session
//!   row, one set of files, written by A), video one way and input the other.
//! - An attended streamer's session code made through A works through C.
//! - The peer port refuses a client without a fleet certificate, one with another CA's, and a
//!   fleet certificate with a bad or wrong team's technician credential.
//! - Relay A killed with SIGKILL mid-session: the technician is told at once, a peer ends the
//!   session as `RELAY_LOST` with its recording kept up to its last synced fragment (from the
//!   spool A mirrored to the shared store), the device shows offline, then online again once its
//!   streamer reconnects to B, and a new session through C works.
//! - `/metrics` of the relays, parsed by a Prometheus text-format parser, count the peer links and
//!   the lost relay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::media::{check_file, TestEncoder};
use common::process::{signal, wait_exit, RelayProcess};
use common::*;
use protocol::*;
use relay_client::{Connection, Connector};

/// A free TCP port on 127.0.0.1 (for the addresses a relay must know before it starts).
fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// One relay of the test fleet.
struct Member {
    process: RelayProcess,
    data: PathBuf,
    metrics: SocketAddr,
}

/// The fleet's shared settings.
struct FleetSetup {
    root: PathBuf,
    database_url: String,
    recordings_url: String,
}

impl FleetSetup {
    fn new(root: &Path) -> Self {
        let shared = root.join("shared");
        std::fs::create_dir_all(&shared).unwrap();
        relay::tls::make_fleet_ca(&root.join("ca")).unwrap();
        Self {
            root: root.to_path_buf(),
            database_url: database_url_of(&shared),
            recordings_url: test_recordings_url(&shared)
                .unwrap_or_else(|| format!("file://{}", shared.join("recordings").display())),
        }
    }

    /// Starts relay `name`; relays after the first use the first one's TLS certificate, so that
    /// clients trust every relay alike.
    fn start(&self, name: &str) -> Member {
        let data = self.root.join(name);
        let (cert, key) = relay::tls::make_fleet_cert(
            &self.root.join("ca"),
            &["localhost".into()],
            &data.join("fleet"),
        )
        .unwrap();
        let (peer, metrics) = (free_port(), free_port());
        let first_tls = self.root.join("a/tls");
        let agent_tls = if name == "a" {
            String::new()
        } else {
            format!(
                "tls_cert = {:?}\ntls_key = {:?}\n",
                first_tls.join("server.pem"),
                first_tls.join("server-key.pem")
            )
        };
        let config = format!(
            "data_dir = {data:?}\nlisten = \"127.0.0.1:0\"\ndatabase_url = {db:?}\n\
             recordings_url = {rec:?}\nmetrics_listen = \"127.0.0.1:{metrics}\"\n\
             peer_listen = \"127.0.0.1:{peer}\"\nannounce_address = \"localhost:{peer}\"\n\
             fleet_ca = {ca:?}\nfleet_cert = {cert:?}\nfleet_key = {key:?}\n\
             heartbeat_ms = 300\nrelay_expiry_ms = 1500\noffer_timeout_ms = 5000\n{agent_tls}",
            db = self.database_url,
            rec = self.recordings_url,
            ca = self.root.join("ca/fleet-ca.pem"),
        );
        std::fs::create_dir_all(&data).unwrap();
        let path = data.join("relay.toml");
        std::fs::write(&path, config).unwrap();
        let process = common::process::spawn(&[OsString::from("--config"), path.into()]);
        Member {
            process,
            data,
            metrics: SocketAddr::from(([127, 0, 0, 1], metrics)),
        }
    }

    fn connector(&self) -> Connector {
        Connector::trusting_ca_file(&self.root.join("a/tls/dev-ca.pem")).unwrap()
    }
}

/// The first relay's team, signed in, with unattended and attended sessions recorded.
struct Owner {
    token: String,
    code: String,
    attended_key: String,
}

async fn owner(connector: &Connector, a: &RelayProcess) -> Owner {
    let (email, password, code) = a.first_owner.clone().expect("the first relay bootstraps");
    let token = connector.sign_in(&a.addr, &email, &password).await.unwrap();
    let (_, mut settings) = connector
        .api(&a.addr, "GET", "/api/v1/team/settings", Some(&token), None)
        .await
        .unwrap();
    settings["record_unattended"] = true.into();
    settings["record_attended"] = true.into();
    let (status, body) = connector
        .api(
            &a.addr,
            "PUT",
            "/api/v1/team/settings",
            Some(&token),
            Some(&settings),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    Owner {
        token,
        code,
        attended_key: a.attended_key.clone().expect("an attended key"),
    }
}

async fn technician(connector: &Connector, addr: &str, token: &str) -> Connection {
    let mut c = connector.connect(addr).await.unwrap();
    c.handshake(
        Role::Technician,
        CURRENT,
        Credential::TechnicianToken {
            token: token.to_owned(),
        },
    )
    .await
    .unwrap();
    c
}

async fn device_streamer(connector: &Connector, addr: &str, id: &str, secret: &str) -> Connection {
    let mut c = connector.connect(addr).await.unwrap();
    c.handshake(
        Role::Streamer,
        CURRENT,
        Credential::Device {
            device_id: id.to_owned(),
            secret: secret.to_owned(),
        },
    )
    .await
    .unwrap();
    c
}

/// A new device registered with `code` through `addr`: its streamer, id and secret.
async fn registered(connector: &Connector, addr: &str, code: &str) -> (Connection, String, String) {
    let mut streamer = connector.connect(addr).await.unwrap();
    let est = streamer
        .handshake(
            Role::Streamer,
            CURRENT,
            Credential::DeploymentCode {
                code: code.to_owned(),
                device_name: "Front desk".into(),
            },
        )
        .await
        .unwrap();
    let (device_id, secret) = est.registered.unwrap();
    (streamer, device_id, secret)
}

/// A session by device between `tech` and `streamer`; its id.
async fn by_device(tech: &mut Connection, streamer: &mut Connection, device_id: &str) -> String {
    let target = SessionTarget::Device {
        device_id: device_id.to_owned(),
    };
    match pair(tech, streamer, target).await {
        Message::SessionStarted { session_id, .. } => session_id,
        other => panic!("{other:?}"),
    }
}

/// The device list's entry for `device_id`, asked of a technician's relay.
async fn device_state(tech: &mut Connection, device_id: &str) -> (bool, bool) {
    tech.send(&Message::ListDevices).await.unwrap();
    match recv(tech).await {
        Message::DeviceStatusList(list) | Message::DeviceList(list) => list
            .iter()
            .find(|d| d.id == device_id)
            .map(|d| (d.online, d.busy))
            .expect("the device is listed"),
        other => panic!("expected a device list, got {other:?}"),
    }
}

/// Video from the streamer reaches the technician, and input from the technician the streamer.
async fn frames_and_input_flow(
    tech: &mut Connection,
    streamer: &mut Connection,
    enc: &mut TestEncoder,
) {
    streamer.send(&enc.config()).await.unwrap();
    for i in 0..10 {
        streamer.send(&enc.frame(i == 0)).await.unwrap();
    }
    let mut frames = 0;
    while frames < 10 {
        match recv(tech).await {
            Message::VideoFrame(_) => frames += 1,
            Message::VideoConfig(_) | Message::RecordingState { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    tech.send(&Message::TextInput {
        text: "hello from B".into(),
    })
    .await
    .unwrap();
    loop {
        match recv(streamer).await {
            Message::TextInput { text } => {
                assert_eq!(text, "hello from B");
                break;
            }
            Message::RecordingState { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// The API's session list, as JSON rows.
async fn sessions(connector: &Connector, addr: &str, token: &str) -> Vec<serde_json::Value> {
    let (status, body) = connector
        .api(addr, "GET", "/api/v1/sessions", Some(token), None)
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
    body["sessions"].as_array().unwrap().clone()
}

async fn ended(tech: &mut Connection) -> (EndReason, String) {
    loop {
        match recv(tech).await {
            Message::SessionEnded { reason, message } => return (reason, message),
            Message::VideoFrame(_) | Message::VideoConfig(_) | Message::RecordingState { .. } => {}
            other => panic!("expected SessionEnded, got {other:?}"),
        }
    }
}

fn stop(members: Vec<Member>) {
    for mut m in members {
        if m.process.child.try_wait().unwrap().is_none() {
            signal(&m.process.child, "TERM");
            wait_exit(&mut m.process.child);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_between_relays_is_recorded_once_and_a_code_made_on_one_works_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let setup = FleetSetup::new(dir.path());
    let a = setup.start("a");
    let b = setup.start("b");
    let c = setup.start("c");
    let connector = setup.connector();
    let team = owner(&connector, &a.process).await;

    // A device's streamer on A; its technician on B.
    let (mut streamer, device_id, secret) =
        registered(&connector, &a.process.addr, &team.code).await;
    let mut tech = technician(&connector, &b.process.addr, &team.token).await;
    assert_eq!(
        device_state(&mut tech, &device_id).await,
        (true, false),
        "online through A"
    );
    let session_id = by_device(&mut tech, &mut streamer, &device_id).await;
    assert_eq!(
        recv(&mut tech).await,
        Message::RecordingState { recorded: true }
    );
    assert_eq!(
        recv(&mut streamer).await,
        Message::RecordingState { recorded: true }
    );
    // Busy, as C sees it.
    let mut tech_c = technician(&connector, &c.process.addr, &team.token).await;
    assert_eq!(device_state(&mut tech_c, &device_id).await, (true, true));
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    frames_and_input_flow(&mut tech, &mut streamer, &mut enc).await;
    tech.send(&Message::LeaveSession).await.unwrap();
    assert_eq!(ended(&mut tech).await.0, EndReason::TechnicianLeft);
    assert_eq!(ended(&mut streamer).await.0, EndReason::TechnicianLeft);

    // Recorded once: one row, by A, with one file.
    let store =
        relay::store::Store::open(&setup.database_url, std::sync::Arc::new(relay::SystemClock))
            .await
            .unwrap();
    let mut files = Vec::new();
    for _ in 0..100 {
        files = store.recording_files(&session_id).await.unwrap();
        if files.iter().all(|f| f.state == "complete") && !files.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        (files[0].state.as_str(), files[0].frame_count),
        ("complete", Some(10))
    );
    let listed = sessions(&connector, &c.process.addr, &team.token).await;
    let rows: Vec<_> = listed
        .iter()
        .filter(|s| s["id"] == session_id.as_str())
        .collect();
    assert_eq!(rows.len(), 1, "{listed:?}");
    assert_eq!(rows[0]["end_reason"], "TECHNICIAN_LEFT");
    let bytes = read_stored(&setup.root.join("shared"), &files[0].object_key).await;
    assert_eq!(check_file(&bytes).decoded, 10);

    // An attended streamer's code, made through A, used through C.
    let mut attended = connector.connect(&a.process.addr).await.unwrap();
    let est = attended
        .handshake(
            Role::Streamer,
            CURRENT,
            Credential::Attended {
                team_key: team.attended_key.clone(),
                device_name: "Laptop".into(),
            },
        )
        .await
        .unwrap();
    let (code, _) = est.session_code.unwrap();
    let started = pair(
        &mut tech_c,
        &mut attended,
        SessionTarget::Code { code: code.clone() },
    )
    .await;
    assert!(matches!(
        started,
        Message::SessionStarted { recorded: true, .. }
    ));
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    assert_eq!(
        recv(&mut tech_c).await,
        Message::RecordingState { recorded: true }
    );
    assert_eq!(
        recv(&mut attended).await,
        Message::RecordingState { recorded: true }
    );
    frames_and_input_flow(&mut tech_c, &mut attended, &mut enc).await;
    tech_c.send(&Message::LeaveSession).await.unwrap();
    assert_eq!(ended(&mut tech_c).await.0, EndReason::TechnicianLeft);
    // Used: the code works nowhere now.
    let (refused_code, _) = request_refused(&mut tech, SessionTarget::Code { code }).await;
    assert_eq!(refused_code, ErrorCode::SessionCodeInvalid);

    // The peer port: no client certificate, or another CA's, is refused by TLS; a fleet
    // certificate with a bad credential, or another team's technician, is refused by the relay.
    let peer_addr = peer_address(&a);
    let fleet_ca = setup.root.join("ca/fleet-ca.pem");
    // The same request with this fleet's certificate is answered (the control).
    let (cert, key) = (
        b.data.join("fleet/localhost.pem"),
        b.data.join("fleet/localhost-key.pem"),
    );
    raw_tls(&peer_addr, &fleet_ca, Some((&cert, &key)))
        .await
        .unwrap();
    assert!(
        raw_tls(&peer_addr, &fleet_ca, None).await.is_err(),
        "no client certificate"
    );
    let other_ca = dir.path().join("other-ca");
    relay::tls::make_fleet_ca(&other_ca).unwrap();
    let (cert, key) =
        relay::tls::make_fleet_cert(&other_ca, &["localhost".into()], &other_ca.join("relay"))
            .unwrap();
    assert!(
        raw_tls(&peer_addr, &fleet_ca, Some((&cert, &key)))
            .await
            .is_err(),
        "another fleet's certificate"
    );
    // An agent's connection on the peer port: its TLS has no client certificate to show.
    assert!(
        connector.connect(&peer_addr).await.is_err(),
        "an agent on the peer port"
    );
    let fleet = fleet_client(&setup, &b);
    let refusal = peer_refusal(&fleet, &peer_addr, "not-a-token", &device_id).await;
    assert_eq!(refusal.0, ErrorCode::AuthenticationFailed, "{refusal:?}");
    let other_team_token = other_team(&store, &connector, &a.process.addr).await;
    let refusal = peer_refusal(&fleet, &peer_addr, &other_team_token, &device_id).await;
    assert_eq!(
        refusal.0,
        ErrorCode::DeviceNotFound,
        "another team's device: {refusal:?}"
    );

    let scrape_b = scrape(b.metrics).await;
    assert!(
        metric_value(
            &scrape_b,
            "relay_peer_links_opened_total",
            &[("direction", "out")]
        ) >= 1.0
    );
    let scrape_a = scrape(a.metrics).await;
    assert!(
        metric_value(
            &scrape_a,
            "relay_peer_links_opened_total",
            &[("direction", "in")]
        ) >= 2.0
    );
    assert_eq!(
        metric_value(&scrape_a, "relay_peer_links", &[("direction", "in")]),
        0.0
    );
    assert_eq!(
        metric_value(
            &scrape_a,
            "relay_sessions_started_total",
            &[("recorded", "true")]
        ),
        2.0,
        "both sessions ran on A"
    );
    assert_eq!(
        metric_value(
            &scrape_b,
            "relay_sessions_started_total",
            &[("recorded", "true")]
        ),
        0.0
    );

    // The device connects again, to C, while A still holds its old connection: A drops the stale
    // one (as one relay replaces a device's older connection), and the device is reached on C.
    let again = device_streamer(&connector, &c.process.addr, &device_id, &secret).await;
    let (code, message) = refused(&mut streamer).await;
    assert_eq!(code, ErrorCode::ConnectedElsewhere, "{message}");
    assert!(
        message.contains("connected to the relay again"),
        "{message}"
    );
    drop(streamer);
    let mut streamer = again;

    // An admin ends, through C, a session that runs on C for a technician on B.
    let session_id = by_device(&mut tech, &mut streamer, &device_id).await;
    let path = format!("/api/v1/sessions/{session_id}/end");
    let (status, body) = connector
        .api(&c.process.addr, "POST", &path, Some(&team.token), None)
        .await
        .unwrap();
    assert_eq!(status, 204, "{body}");
    assert_eq!(ended(&mut tech).await.0, EndReason::EndedByAdmin);
    // Signing out through C cuts the technician's connection on B and its peer link on A.
    let (status, body) = connector
        .api(
            &c.process.addr,
            "POST",
            "/api/v1/sign-out",
            Some(&team.token),
            None,
        )
        .await
        .unwrap();
    assert_eq!(status, 204, "{body}");
    assert_eq!(refused(&mut tech).await.0, ErrorCode::CredentialRevoked);
    assert_eq!(refused(&mut tech_c).await.0, ErrorCode::CredentialRevoked);
    drop((streamer, attended, tech, tech_c));
    store.close().await;
    stop(vec![a, b, c]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_session_ends_it_as_lost_with_its_recording_and_its_streamer_moves_on() {
    let dir = tempfile::tempdir().unwrap();
    let setup = FleetSetup::new(dir.path());
    let mut a = setup.start("a");
    let b = setup.start("b");
    let c = setup.start("c");
    let connector = setup.connector();
    let team = owner(&connector, &a.process).await;
    let (mut streamer, device_id, secret) =
        registered(&connector, &a.process.addr, &team.code).await;
    let mut tech = technician(&connector, &b.process.addr, &team.token).await;
    let session_id = by_device(&mut tech, &mut streamer, &device_id).await;
    let reader = tokio::spawn(async move {
        // The technician reads on, until the relay tells it the session ended.
        loop {
            match tech.recv().await {
                Ok(Message::SessionEnded { reason, message }) => {
                    return Some((reason, message, tech))
                }
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    });
    // Four complete fragments (keyframes every 10 frames), five frames still gathering.
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    streamer.send(&enc.config()).await.unwrap();
    stream_or_end(&mut streamer, &mut enc, 45, 10).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    signal(&a.process.child, "KILL");
    wait_exit(&mut a.process.child);

    let (reason, message, mut tech) = tokio::time::timeout(Duration::from_secs(10), reader)
        .await
        .expect("the technician is told")
        .unwrap()
        .expect("a SessionEnded");
    assert_eq!(reason, EndReason::StreamerDisconnected, "{message}");
    assert!(message.contains("relay"), "{message}");

    // A peer notices A's silence and closes up after it.
    let mut row = serde_json::Value::Null;
    for _ in 0..100 {
        let listed = sessions(&connector, &b.process.addr, &team.token).await;
        row = listed
            .into_iter()
            .find(|s| s["id"] == session_id.as_str())
            .unwrap();
        if row["end_reason"] == "RELAY_LOST" && row["recording_state"] == "incomplete" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(row["end_reason"], "RELAY_LOST", "{row}");
    assert_eq!(row["recording_state"], "incomplete", "{row}");
    let store =
        relay::store::Store::open(&setup.database_url, std::sync::Arc::new(relay::SystemClock))
            .await
            .unwrap();
    let files = store.recording_files(&session_id).await.unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        (files[0].state.as_str(), files[0].frame_count),
        ("incomplete", Some(40)),
        "kept up to its last synced fragment"
    );
    let bytes = read_stored(&setup.root.join("shared"), &files[0].object_key).await;
    assert_eq!(files[0].size_bytes, Some(bytes.len() as i64));
    let checked = check_file(&bytes);
    assert_eq!((checked.frames, checked.decoded), (40, 40), "it plays");
    assert!(
        stored_keys(&setup, "spool/").await.is_empty(),
        "the mirrored spool chunks are gone"
    );
    let lost = metric_value(
        &scrape(b.metrics).await,
        "relay_fleet_relays_lost_total",
        &[],
    ) + metric_value(
        &scrape(c.metrics).await,
        "relay_fleet_relays_lost_total",
        &[],
    );
    assert_eq!(lost, 1.0, "exactly one peer closed up after A");

    // Offline with A gone; the streamer reconnects to B; a session through C works.
    assert!(
        !device_state(&mut tech, &device_id).await.0,
        "offline once A is gone"
    );
    drop(streamer);
    let mut streamer = device_streamer(&connector, &b.process.addr, &device_id, &secret).await;
    assert_eq!(device_state(&mut tech, &device_id).await, (true, false));
    let mut tech_c = technician(&connector, &c.process.addr, &team.token).await;
    let started = pair(
        &mut tech_c,
        &mut streamer,
        SessionTarget::Device {
            device_id: device_id.clone(),
        },
    )
    .await;
    assert!(matches!(
        started,
        Message::SessionStarted { recorded: true, .. }
    ));
    assert_eq!(
        recv(&mut tech_c).await,
        Message::RecordingState { recorded: true }
    );
    assert_eq!(
        recv(&mut streamer).await,
        Message::RecordingState { recorded: true }
    );
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    frames_and_input_flow(&mut tech_c, &mut streamer, &mut enc).await;
    tech_c.send(&Message::LeaveSession).await.unwrap();
    assert_eq!(ended(&mut tech_c).await.0, EndReason::TechnicianLeft);
    drop((streamer, tech, tech_c));
    store.close().await;
    stop(vec![a, b, c]);
}

/// The peer address relay `m` announced.
fn peer_address(m: &Member) -> String {
    let text = std::fs::read_to_string(m.data.join("relay.toml")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("announce_address"))
        .unwrap();
    line.split('"').nth(1).unwrap().to_owned()
}

/// A TLS handshake with the peer port (its certificate checked against the fleet CA `ca`), with
/// or without a client certificate, then a request and a read: in TLS 1.3 the server judges the
/// client's certificate after the client's side of the handshake is done, so the refusal shows on
/// the read.
async fn raw_tls(addr: &str, ca: &Path, client: Option<(&Path, &Path)>) -> std::io::Result<()> {
    tokio::time::timeout(Duration::from_secs(10), raw_tls_inner(addr, ca, client))
        .await
        .expect("the peer port answers within 10 s")
}

async fn raw_tls_inner(
    addr: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> std::io::Result<()> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.add_parsable_certificates(CertificateDer::pem_file_iter(ca).unwrap().flatten());
    let builder = rustls::ClientConfig::builder().with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_file_iter(cert)
                    .unwrap()
                    .flatten()
                    .collect(),
                PrivateKeyDer::from_pem_file(key).unwrap(),
            )
            .unwrap(),
    };
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await?;
    tls.write_all(b"GET /v1/peer HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut buf = [0u8; 64];
    match tls.read(&mut buf).await? {
        0 => Err(std::io::Error::other("closed")),
        _ => Ok(()),
    }
}

/// A peer-link client with relay `m`'s fleet certificate.
fn fleet_client(setup: &FleetSetup, m: &Member) -> relay::fleet::Fleet {
    let config = relay::Config {
        peer_listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
        announce_address: Some("localhost:0".into()),
        fleet_ca: Some(setup.root.join("ca/fleet-ca.pem")),
        fleet_cert: Some(m.data.join("fleet/localhost.pem")),
        fleet_key: Some(m.data.join("fleet/localhost-key.pem")),
        ..relay::Config::default()
    };
    relay::fleet::Fleet::from_config(&config, "test-client")
        .unwrap()
        .unwrap()
}

/// What the peer at `addr` answers a peer link whose technician token is `token`, asking for
/// `device_id`.
async fn peer_refusal(
    fleet: &relay::fleet::Fleet,
    addr: &str,
    token: &str,
    device_id: &str,
) -> (ErrorCode, String) {
    use futures_util::{SinkExt as _, StreamExt as _};
    let hello = relay::fleet::PeerHello {
        relay_id: "test-client".into(),
        token: token.into(),
        product_version: CURRENT.to_string(),
        protocol_version: PROTOCOL_VERSIONS[0].to_string(),
    };
    let mut ws = fleet.dial(addr, &hello).await.unwrap();
    let answer = async move {
        let request = encode_to_bytes(&Message::SessionRequest {
            target: SessionTarget::Device {
                device_id: device_id.into(),
            },
            view: ViewRequest::default(),
        })
        .unwrap();
        let _ = ws
            .send(tokio_tungstenite::tungstenite::Message::Binary(request))
            .await;
        while let Some(Ok(m)) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Binary(b) = m {
                match decode_frame(b).unwrap() {
                    Message::Refused { code, message }
                    | Message::SessionRefused { code, message } => return (code, message),
                    _ => {}
                }
            }
        }
        panic!("the peer closed without a refusal");
    };
    tokio::time::timeout(Duration::from_secs(10), answer)
        .await
        .expect("the peer answers within 10 s")
}

/// A second team on the shared database, its owner signed in through `addr`; returns the token.
async fn other_team(store: &relay::store::Store, connector: &Connector, addr: &str) -> String {
    let email = "owner@other.example";
    store
        .create_team("Other team", email, "Other owner", PASSWORD)
        .await
        .unwrap();
    connector.sign_in(addr, email, PASSWORD).await.unwrap()
}

/// Keys in the shared recordings store under `prefix`.
async fn stored_keys(setup: &FleetSetup, prefix: &str) -> Vec<String> {
    use futures_util::TryStreamExt as _;
    let config = relay::Config {
        recordings_url: Some(setup.recordings_url.clone()),
        ..relay::Config::default()
    };
    let recordings = relay::recording::Recordings::open(&config).unwrap();
    let listed: Vec<_> = recordings
        .objects()
        .list(Some(&object_store::path::Path::from(prefix)))
        .try_collect()
        .await
        .unwrap();
    listed.into_iter().map(|m| m.location.to_string()).collect()
}
