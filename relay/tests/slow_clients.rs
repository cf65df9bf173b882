//! Slow clients (slowloris) are cut off, not waited for: a TLS handshake, request headers, a request
//! body and an idle kept-alive connection each get the request timeout, and an agent connection that
//! dribbles a message gets the idle timeout. Meanwhile other clients are served.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The request timeout under test (the default is 10 s).
const TIMEOUT_MS: u64 = 1_000;

async fn slow_relay() -> TestRelay {
    TestRelay::start_with(|c| {
        c.http_request_timeout_ms = TIMEOUT_MS;
        c.idle_timeout_ms = 2_000;
        c.ping_interval_ms = 60_000;
    })
    .await
}

/// Writes `bytes` one at a time, `gap` apart, until the peer stops taking them; returns how long the
/// peer kept the connection and everything it sent back.
async fn dribble<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    bytes: &[u8],
    gap: Duration,
) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let (mut rd, mut wr) = tokio::io::split(stream);
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(30), rd.read_to_end(&mut got)).await;
        (started.elapsed(), got)
    });
    for b in bytes {
        if reader.is_finished() || wr.write_all(&[*b]).await.is_err() || wr.flush().await.is_err() {
            break;
        }
        tokio::time::sleep(gap).await;
    }
    reader.await.unwrap()
}

/// A request whose bytes would take 20 s at one byte per 200 ms.
fn long_headers() -> Vec<u8> {
    let mut r = b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n".to_vec();
    r.extend(std::iter::repeat_n(b'x', 100));
    r
}

fn assert_cut_off(held: Duration, what: &str) {
    assert!(
        held < Duration::from_millis(TIMEOUT_MS * 4),
        "{what}: the relay kept the connection {held:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_http_clients_are_cut_off_and_others_are_served() {
    let relay = slow_relay().await;

    // 40 connections that never start TLS, and 40 that dribble request headers, all at once.
    let mut idle_tcp = Vec::new();
    for _ in 0..40 {
        let port = relay.addr.rsplit_once(':').unwrap().1;
        idle_tcp.push(
            tokio::net::TcpStream::connect(format!("127.0.0.1:{port}"))
                .await
                .unwrap(),
        );
    }
    let mut dribblers = Vec::new();
    for _ in 0..40 {
        let tls = relay.connector.tls(&relay.addr).await.unwrap();
        dribblers.push(tokio::spawn(async move {
            dribble(tls, &long_headers(), Duration::from_millis(200)).await
        }));
    }
    // Others are served meanwhile.
    for _ in 0..5 {
        let (status, _) = relay.api("GET", "/api/v1/team", None, None).await;
        assert_eq!(status, 401, "an ordinary request is answered");
    }
    for d in dribblers {
        let (held, _) = d.await.unwrap();
        assert_cut_off(held, "dribbled headers");
    }
    // The connections that never spoke TLS were closed too.
    for mut tcp in idle_tcp {
        let started = Instant::now();
        let mut buf = [0u8; 64];
        let n = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf))
            .await
            .expect("closed within 10 s")
            .unwrap_or(0);
        assert_eq!(n, 0, "the relay said something to a client without TLS");
        assert!(started.elapsed() < Duration::from_millis(TIMEOUT_MS * 4));
    }

    // A body sent too slowly: 408 with the API's error shape, then the connection closes.
    let tls = relay.connector.tls(&relay.addr).await.unwrap();
    let mut request = b"POST /api/v1/sign-in HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n".to_vec();
    let head = request.len();
    request.extend(std::iter::repeat_n(b' ', 100));
    let (mut rd, mut wr) = tokio::io::split(tls);
    wr.write_all(&request[..head]).await.unwrap();
    let writer = tokio::spawn(async move {
        for b in &request[head..] {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            let _ = wr.flush().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut answer))
        .await
        .expect("closed within 10 s")
        .ok();
    assert_cut_off(started.elapsed(), "dribbled body");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("REQUEST_TIMEOUT"), "{answer}");
    writer.abort();

    // A kept-alive connection that goes quiet after its request is closed.
    let tls = relay.connector.tls(&relay.addr).await.unwrap();
    let (mut rd, mut wr) = tokio::io::split(tls);
    wr.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut answer))
        .await
        .expect("the idle connection closed within 10 s")
        .ok();
    assert!(String::from_utf8_lossy(&answer).starts_with("HTTP/1.1 200"));
    assert_cut_off(started.elapsed(), "idle keep-alive");

    // A body over the limit is refused before it is read.
    let (status, body) = relay
        .api(
            "POST",
            "/api/v1/sign-in",
            None,
            Some(serde_json::json!({"email": "a@example.com", "password": "x".repeat(70_000)})),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "REQUEST_TOO_LARGE");
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_that_dribbles_a_message_is_cut_off() {
    let relay = slow_relay().await;
    let tls = relay.raw_agent_socket().await;
    // A masked binary WebSocket message of 120 bytes, sent a byte per 200 ms (24 s in all).
    let mut message = vec![0x82, 0x80 | 120, 1, 2, 3, 4];
    message.extend(std::iter::repeat_n(0u8, 120));
    let (held, _) = dribble(tls, &message, Duration::from_millis(200)).await;
    // The idle timeout (2 s here) applies to each whole message.
    assert!(
        held < Duration::from_secs(8),
        "the relay kept a dribbling agent {held:?}"
    );
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_a_download_is_dropped() {
    use common::media::TestEncoder;
    use common::recorded::*;
    use sha2::Digest;

    let relay = slow_relay().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    let mut r = recorded_session(&relay, &team).await;
    let mut enc = TestEncoder::new(320, 240, 10, 0);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 10, 10).await;
    let session = r.session_id.clone();
    finish(&relay, r).await;

    // The file is made far larger than any socket buffer (64 MiB), its row kept true.
    let file = relay
        .store
        .recording_files(&session)
        .await
        .unwrap()
        .remove(0);
    let big: Vec<u8> = (0..64 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    write_object(&relay, &file.object_key, &big).await;
    relay
        .store
        .close_recording_file(
            &file.id,
            &relay::store::ClosedFile {
                ended_at: file.ended_at.unwrap(),
                duration_ms: file.duration_ms.unwrap(),
                size_bytes: big.len() as i64,
                frame_count: file.frame_count.unwrap(),
                sha256: hex::encode(sha2::Sha256::digest(&big)),
                state: "complete",
            },
        )
        .await
        .unwrap();
    let (_, listed) = relay
        .api(
            "GET",
            &format!("/api/v1/sessions/{session}/recordings"),
            Some(&team.token),
            None,
        )
        .await;
    let download = listed["files"][0]["download_url"]
        .as_str()
        .unwrap()
        .to_owned();

    // The client asks for it, reads the first bytes, then stops reading for longer than the
    // relay's stall limit (the idle timeout, 2 s here).
    let mut tls = relay.connector.tls(&relay.addr).await.unwrap();
    tls.write_all(format!("GET {download} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut first = vec![0u8; 4096];
    tls.read_exact(&mut first).await.unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_secs(6)).await;
    // What was already in the socket buffers arrives, then the connection is over: far from the
    // whole file.
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut rest)).await;
    assert!(
        rest.len() < big.len() / 2,
        "the relay kept sending to a client that had stopped reading ({} bytes)",
        rest.len()
    );
    relay.stop().await;
}
