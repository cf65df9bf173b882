//! The operator's view: the relay binary starts with one command on a fresh data directory, prints how
//! to sign in, takes settings from a file, the environment and flags, and stops cleanly on SIGTERM.
//! Also the team settings API under role-based permission.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use protocol::{Credential, ProductVersion, Role};
use relay_client::Connector;

#[test]
fn the_binary_reports_its_product_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .arg("--product-version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let version: ProductVersion = text.trim().parse().unwrap();
    assert_eq!(version, relay::product_version().unwrap());
}

#[test]
fn bad_settings_are_refused_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("relay.toml");
    std::fs::write(&file, "listen = \"not an address\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_relay"))
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("relay.toml"), "{err}");
    assert!(!dir.path().join("relay-data").exists());
}

#[tokio::test]
async fn one_command_starts_a_usable_relay_and_sigterm_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let file = dir.path().join("relay.toml");
    // The file sets the listen address; the environment sets the data directory; a flag the names.
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\ntoken_ttl_secs = 600\n").unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_relay"))
        .arg("--config")
        .arg(&file)
        .arg("--server-name")
        .arg("localhost")
        .env("RELAY_DATA_DIR", &data)
        .envs(test_database_url(&data).map(|url| ("RELAY_DATABASE_URL", url)))
        .envs(test_recordings_url(&data).map(|url| ("RELAY_RECORDINGS_URL", url)))
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(dir.path().join("relay.log")).unwrap())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut email, mut password, mut port) = (None, None, None);
    while port.is_none() {
        let line = lines
            .next()
            .expect("the relay printed its address")
            .unwrap();
        if let Some(v) = line.trim().strip_prefix("sign in as:") {
            email = Some(v.trim().to_owned());
        } else if let Some(v) = line.trim().strip_prefix("password:") {
            password = Some(v.trim().to_owned());
        } else if let Some(rest) = line.split("listening on https://").nth(1) {
            port = rest.rsplit(':').next().map(|p| p.trim().to_owned());
        }
    }
    let addr = format!("localhost:{}", port.unwrap());
    let connector = Connector::trusting_ca_file(&data.join("tls/dev-ca.pem")).unwrap();
    let token = connector
        .sign_in(&addr, &email.unwrap(), &password.unwrap())
        .await
        .unwrap();
    let mut tech = connector.connect(&addr).await.unwrap();
    tech.handshake(
        Role::Technician,
        CURRENT,
        Credential::TechnicianToken { token },
    )
    .await
    .unwrap();

    // Security review finding 15: an id from an unauthenticated URL forges no log line and puts
    // no terminal escape in the log (ids are logged escaped).
    let forged = "/files/x%0A2026-12-07T17:14:00.000000Z%20ERROR%20relay::ops:%20owner%20password%20reset%20by%20operator%1B%5B31mRED/play?u=a&t=1&s=00";
    let (status, _, _) = connector
        .request(&addr, "GET", forged, &[], bytes::Bytes::new())
        .await
        .unwrap();
    assert_eq!(status, 403);

    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let (code, _) = refused(&mut tech).await;
    assert_eq!(code, protocol::ErrorCode::RelayShuttingDown);
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the relay did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The database is in the data directory unless it is elsewhere (PostgreSQL).
    assert_eq!(
        data.join("relay.db").exists(),
        test_database_url(&data).is_none()
    );
    assert!(data.join("first-owner.txt").exists());
    let log = std::fs::read_to_string(dir.path().join("relay.log")).unwrap();
    assert!(log.contains("refused a tampered link"), "{log}");
    assert!(
        !log.lines().any(|l| l.starts_with("2026-12-07T17:14:00")),
        "a forged line: {log}"
    );
    assert!(!log.contains('\u{1b}'), "a raw terminal escape: {log:?}");
}

#[tokio::test]
async fn team_settings_are_changed_by_owners_and_admins_only() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay
        .store
        .add_user(
            &team.id,
            "admin@acme.example",
            "Adm",
            relay::store::UserRole::Admin,
            PASSWORD,
        )
        .await
        .unwrap();
    relay
        .store
        .add_user(
            &team.id,
            "member@acme.example",
            "Mem",
            relay::store::UserRole::Member,
            PASSWORD,
        )
        .await
        .unwrap();
    let admin = relay.sign_in("admin@acme.example").await;
    let member = relay.sign_in("member@acme.example").await;

    let (status, settings) = relay
        .api("GET", "/api/v1/team/settings", Some(&member), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        settings["record_attended"], false,
        "recording is off by default"
    );
    assert_eq!(settings["record_unattended"], false);
    assert_eq!(
        settings["playback_attended"], "owner",
        "Owner only by default"
    );
    assert_eq!(settings["playback_unattended"], "owner");

    let mut on = settings.clone();
    on["record_attended"] = true.into();
    let (status, body) = relay
        .api(
            "PUT",
            "/api/v1/team/settings",
            Some(&member),
            Some(on.clone()),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (403, Some("FORBIDDEN"))
    );
    let (status, _) = relay
        .api(
            "PUT",
            "/api/v1/team/settings",
            Some(&admin),
            Some(on.clone()),
        )
        .await;
    assert_eq!(status, 200);
    on["playback_attended"] = "members".into();
    let (status, body) = relay
        .api("PUT", "/api/v1/team/settings", Some(&team.token), Some(on))
        .await;
    assert_eq!(status, 200, "{body}");
    let stored = relay.store.team_settings(&team.id).await.unwrap().unwrap();
    assert!(stored.record_attended);
    assert_eq!(
        stored.playback_attended,
        relay::store::PlaybackPolicy::Members
    );

    // Bad input: clear errors, nothing changed.
    let (status, body) = relay
        .api(
            "PUT",
            "/api/v1/team/settings",
            Some(&team.token),
            Some(serde_json::json!({"record_attended": "yes"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("MALFORMED_REQUEST"))
    );
    let (status, _) = relay.api("GET", "/api/v1/team/settings", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        relay.store.team_settings(&team.id).await.unwrap().unwrap(),
        stored
    );

    // Members cannot mint deployment codes; owners can, and the code registers a device.
    let (status, _) = relay
        .api("POST", "/api/v1/deployment-codes", Some(&member), None)
        .await;
    assert_eq!(status, 403);
    let (status, body) = relay
        .api("POST", "/api/v1/deployment-codes", Some(&team.token), None)
        .await;
    assert_eq!(status, 200);
    let mut streamer = relay.connect().await;
    let est = streamer
        .handshake(
            Role::Streamer,
            CURRENT,
            Credential::DeploymentCode {
                code: body["code"].as_str().unwrap().into(),
                device_name: "Kiosk".into(),
            },
        )
        .await
        .unwrap();
    assert!(est.registered.is_some());
    let (_, devices) = relay
        .api("GET", "/api/v1/devices", Some(&member), None)
        .await;
    assert_eq!(devices[0]["name"], "Kiosk");
    assert_eq!(devices[0]["online"], true);
    relay.stop().await;
}

/// Sends one raw request over TLS and returns the status and the JSON body of the answer.
async fn raw_request(relay: &TestRelay, request: &str) -> (u16, serde_json::Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tls = relay.connector.tls(&relay.addr).await.unwrap();
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut got),
    )
    .await
    .expect("answered within 10 s")
    .ok();
    let text = String::from_utf8_lossy(&got);
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).expect("a JSON body"))
}

#[tokio::test]
async fn malformed_api_bodies_get_the_documented_error_in_our_words() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let post = |body: &str, content_type: &str| {
        format!(
            "POST /api/v1/sign-in HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
             Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    let cases = [
        (
            post(r#"{"email": "owner@acme.test"}"#, "application/json"),
            "not with the fields and types this call takes",
        ),
        (
            post(
                r#"{"email": "owner@acme.test", "password": "#,
                "application/json",
            ),
            "not valid JSON",
        ),
        (
            post(r#"{"email": "a", "password": "b"}"#, "text/plain"),
            "must be JSON",
        ),
    ];
    for (request, want) in cases {
        let (status, body) = raw_request(&relay, &request).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "MALFORMED_REQUEST", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(want), "{message}");
        for internal in ["line", "column", "missing field", "deserialize", "`"] {
            assert!(
                !message.contains(internal),
                "the parser's words leak: {message}"
            );
        }
    }
    // Nothing was changed by them: the owner still signs in.
    let (status, _) = relay
        .api("GET", "/api/v1/team", Some(&team.token), None)
        .await;
    assert_eq!(status, 200);
    relay.stop().await;
}
