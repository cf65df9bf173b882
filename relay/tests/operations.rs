//! What an operator watches. `/metrics`, on an address of its own, read as Prometheus reads it (by
//! a Prometheus text-format parser): the relay up, the database and store answering, live
//! sessions, sessions started and ended, recorded bytes and uploads (equal to what the store
//! holds), refusals by code and throttled sign-ins. `/healthz` on the public port says whether the
//! database and the recordings store answer, and which one does not.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use bytes::Bytes;
use common::media::TestEncoder;
use common::recorded::*;
use common::*;
use prometheus_parse::Scrape;
use protocol::{Credential, ErrorCode, Role};

fn typed(scrape: &Scrape, name: &str) -> bool {
    scrape.docs.contains_key(name)
}

async fn health(relay: &TestRelay) -> (u16, serde_json::Value) {
    let (status, _, body) = relay
        .connector
        .request(&relay.addr, "GET", "/healthz", &[], Bytes::new())
        .await
        .unwrap();
    (status, serde_json::from_slice(&body).unwrap())
}

/// `/healthz` reports the last probe, made on a timer: waits (up to 20 s) for it to say `want`.
async fn health_becomes(relay: &TestRelay, want: (u16, serde_json::Value)) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let now = health(relay).await;
        if now == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "health stayed {now:?}, not {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn metrics_count_sessions_recordings_refusals_and_throttles_and_health_names_what_fails() {
    // The store's failure is made in the file system (its folder replaced by a file): this relay
    // keeps its recordings in its directory whichever store the other tests use.
    let relay = TestRelay::start_with(|c| {
        c.metrics_listen = Some("127.0.0.1:0".parse().unwrap());
        c.recordings_url = None;
        c.health_interval_ms = 100;
    })
    .await;
    let metrics = relay.metrics.expect("a metrics address");
    let team = relay.team("acme").await;

    let first = scrape(metrics).await;
    for family in [
        "relay_up",
        "relay_database_up",
        "relay_store_up",
        "relay_sessions",
        "relay_sessions_started_total",
        "relay_refusals_total",
        "relay_sign_ins_throttled_total",
        "relay_recorded_bytes_total",
        "relay_upload_failures_total",
        "relay_upload_seconds",
    ] {
        assert!(
            typed(&first, family),
            "{family} has no HELP: {:?}",
            first.docs
        );
    }
    assert_eq!(metric_value(&first, "relay_up", &[]), 1.0);
    assert_eq!(metric_value(&first, "relay_database_up", &[]), 1.0);
    assert_eq!(metric_value(&first, "relay_store_up", &[]), 1.0);
    assert_eq!(metric_value(&first, "relay_sessions", &[]), 0.0);
    assert_eq!(metric_value(&first, "relay_recorded_bytes_total", &[]), 0.0);

    // A recorded session: live while it runs, then started and ended once, and its files'
    // bytes counted as the store holds them.
    relay.set_recording(&team, false, true).await;
    let mut r = recorded_session(&relay, &team).await;
    let live = scrape(metrics).await;
    assert_eq!(metric_value(&live, "relay_sessions", &[]), 1.0);
    assert_eq!(metric_value(&live, "relay_streamers_online", &[]), 1.0);
    assert_eq!(
        metric_value(
            &live,
            "relay_sessions_started_total",
            &[("recorded", "true")]
        ),
        1.0
    );
    let mut enc = TestEncoder::new(320, 240, 10, 0);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 30, 10).await;
    let session = r.session_id.clone();
    finish(&relay, r).await;
    let files = relay.store.recording_files(&session).await.unwrap();
    let stored: i64 = files.iter().map(|f| f.size_bytes.unwrap()).sum();
    assert!(stored > 0);
    let after = scrape(metrics).await;
    assert_eq!(metric_value(&after, "relay_sessions", &[]), 0.0);
    assert_eq!(
        metric_value(
            &after,
            "relay_sessions_ended_total",
            &[("reason", "TECHNICIAN_LEFT")]
        ),
        1.0
    );
    assert_eq!(
        metric_value(&after, "relay_recorded_bytes_total", &[]),
        stored as f64
    );
    assert_eq!(
        metric_value(&after, "relay_recording_files_stored_total", &[]),
        files.len() as f64
    );
    assert_eq!(
        metric_value(&after, "relay_upload_seconds", &[]),
        files.len() as f64,
        "one upload timed per file"
    );
    assert_eq!(
        metric_value(&after, "relay_upload_failures_total", &[]),
        0.0
    );

    // Refusals by code: an agent with a token the relay never issued, twice.
    for _ in 0..2 {
        let (_, result) = relay
            .handshake_as(
                Role::Technician,
                Credential::TechnicianToken {
                    token: "not-a-token".into(),
                },
            )
            .await;
        assert_eq!(
            handshake_refusal(result).code,
            ErrorCode::AuthenticationFailed
        );
    }
    // Throttled sign-ins: five wrong passwords, then the account's pause refuses the sixth.
    for _ in 0..6 {
        relay
            .api(
                "POST",
                "/api/v1/sign-in",
                None,
                Some(serde_json::json!({"email": team.owner_email, "password": "guess"})),
            )
            .await;
    }
    let refused = scrape(metrics).await;
    assert_eq!(
        metric_value(
            &refused,
            "relay_refusals_total",
            &[("code", "AUTHENTICATION_FAILED")]
        ),
        2.0
    );
    assert_eq!(
        metric_value(&refused, "relay_sign_ins_throttled_total", &[]),
        1.0
    );

    // Health: both answer; then the recordings store cannot take a write (its folder is a file
    // now): 503 naming the store at the next probe, and the metrics say so; back when it is
    // restored.
    let ok = || {
        (
            200,
            serde_json::json!({"status": "ok", "database": "ok", "store": "ok"}),
        )
    };
    health_becomes(&relay, ok()).await;
    let recordings = relay.dir.path().join("recordings");
    let aside = relay.dir.path().join("recordings-aside");
    std::fs::rename(&recordings, &aside).unwrap();
    std::fs::write(&recordings, b"not a folder").unwrap();
    health_becomes(
        &relay,
        (
            503,
            serde_json::json!({"status": "failing", "database": "ok", "store": "failing"}),
        ),
    )
    .await;
    assert_eq!(
        metric_value(&scrape(metrics).await, "relay_store_up", &[]),
        0.0
    );
    std::fs::remove_file(&recordings).unwrap();
    std::fs::rename(&aside, &recordings).unwrap();
    health_becomes(&relay, ok()).await;

    // The database gone (its pool closed under the relay): 503 naming the database.
    relay.store.close().await;
    health_becomes(
        &relay,
        (
            503,
            serde_json::json!({"status": "failing", "database": "failing", "store": "ok"}),
        ),
    )
    .await;
    assert_eq!(
        metric_value(&scrape(metrics).await, "relay_database_up", &[]),
        0.0
    );
    relay.stop().await;
}

/// Security review finding 13: `/healthz` is unauthenticated, so it never writes to the store on
/// request: it reports the last probe. Between two probes (an hour apart here), a store that
/// broke is still reported as it was probed, however many requests come.
#[tokio::test]
async fn health_requests_never_write_to_the_store() {
    let relay = TestRelay::start_with(|c| {
        c.recordings_url = None;
        c.health_interval_ms = 3_600_000;
    })
    .await;
    let recordings = relay.dir.path().join("recordings");
    std::fs::rename(&recordings, relay.dir.path().join("aside")).unwrap();
    std::fs::write(&recordings, b"not a folder").unwrap();
    for _ in 0..20 {
        assert_eq!(health(&relay).await.0, 200, "a request probed the store");
    }
    relay.stop().await;
}
