//! The load generator behind `cargo bench --bench relay_load`, at a small scale: every frame of a few
//! concurrent sessions arrives through the relay (recorded) and through the baseline forwarder, and
//! the recordings hold what was sent. Bad fixtures are refused.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use protocol::{encode, Message};
use relay_client::Connector;
use system_tests::load::{self, Fixture, Forwarder, Options, ProcSample, Target};
use system_tests::TestRelay;

fn fixture() -> Arc<Fixture> {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/typing-1080p30.h264");
    Arc::new(Fixture::read(&path).unwrap())
}

fn small() -> Options {
    Options {
        sessions: 4,
        window: Duration::from_secs(2),
        setup_concurrency: 4,
    }
}

fn this_process() -> ProcSample {
    ProcSample::of(std::process::id()).unwrap()
}

#[test]
fn the_committed_fixture_is_a_real_1080p_stream() {
    let f = fixture();
    assert_eq!(
        (f.config.width, f.config.height, f.config.frame_rate),
        (1920, 1080, 30)
    );
    assert_eq!(f.frames.len(), 300, "10 s at 30 fps");
    // A keyframe every 2 s, as the streamer's encoder makes them, each with its SPS.
    let keyframes: Vec<usize> = (0..300).filter(|&i| f.frames[i].keyframe).collect();
    assert_eq!(keyframes, [0, 60, 120, 180, 240]);
    assert_eq!(f.keyframe_period(), Duration::from_secs(2));
    for &i in &keyframes {
        assert_eq!(
            f.frames[i].payload[..5],
            [0, 0, 0, 1, 0x67],
            "SPS first in frame {i}"
        );
    }
    let mut decoder = openh264::decoder::Decoder::new().unwrap();
    let mut pictures = 0;
    for frame in &f.frames[..60] {
        if decoder.decode(&frame.payload).unwrap().is_some() {
            pictures += 1;
        }
    }
    assert!(pictures >= 59, "{pictures} of 60 frames decoded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_of_concurrent_sessions_arrives_through_the_relay_and_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(dir.path(), 0).await;
    let (token, team_key) = load::provision(&relay.store, true).await.unwrap();
    let target = Target::Relay {
        addr: relay.addr.clone(),
        connector: Connector::trusting_ca_file(&relay.ca()).unwrap(),
        token,
        team_key,
        technician_addr: None,
    };
    let report = load::run(target, fixture(), small(), this_process)
        .await
        .unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.held, 4);
    assert!(
        report.frames_sent >= 4 * 30 * 2,
        "{} frames",
        report.frames_sent
    );
    assert_eq!(report.frames_lost(), 0);
    assert!(
        report.latencies_us.len() >= 4 * 30,
        "latencies measured in the window"
    );
    assert!(report.latency_ms(0.5) > 0.0 && report.latency_ms(0.5) < 1000.0);
    assert!(report.window >= Duration::from_secs(2));
    relay.stop().await;
    // Four recordings, holding every byte of video sent, plus the container's few percent.
    let recorded = load::dir_bytes(&dir.path().join("recordings"));
    let ratio = recorded as f64 / report.payload_bytes as f64;
    assert!(
        (1.0..1.1).contains(&ratio),
        "recorded {recorded} of {} sent",
        report.payload_bytes
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_frame_arrives_through_the_baseline_forwarder() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let forwarder = tokio::spawn(Forwarder::serve(listener));
    let report = load::run(Target::Plain { addr }, fixture(), small(), this_process)
        .await
        .unwrap();
    assert!(report.failures.is_empty(), "{:?}", report.failures);
    assert_eq!(report.held, 4);
    assert_eq!(report.frames_lost(), 0);
    assert!(report.frames_sent >= 4 * 30 * 2);
    assert!(
        report.cpu_per_session() > 0.0,
        "this process's CPU was sampled"
    );
    forwarder.abort();
}

#[test]
fn fixtures_that_are_not_a_stream_from_a_keyframe_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let good = fixture();
    let write = |name: &str, messages: &[Message]| {
        let mut out = bytes::BytesMut::new();
        for m in messages {
            encode(m, &mut out).unwrap();
        }
        let path = dir.path().join(name);
        std::fs::write(&path, &out).unwrap();
        path
    };
    let frame = |i: usize| Message::VideoFrame(good.frames[i].clone());
    let config = Message::VideoConfig(good.config);
    let cases = [
        (
            "no-config",
            vec![frame(0)],
            "does not start with a video configuration",
        ),
        ("no-frames", vec![config.clone()], "holds no frame"),
        (
            "not-keyframe",
            vec![config.clone(), frame(1)],
            "does not start with a keyframe",
        ),
        (
            "other",
            vec![config.clone(), frame(0), Message::KeyframeRequest],
            "not only frames",
        ),
    ];
    for (name, messages, want) in cases {
        let err = Fixture::read(&write(name, &messages))
            .unwrap_err()
            .to_string();
        assert!(err.contains(want), "{name}: {err}");
    }
    let truncated = dir.path().join("truncated");
    let bytes = std::fs::read(write("whole", &[config, frame(0)])).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() - 10]).unwrap();
    let err = Fixture::read(&truncated).unwrap_err().to_string();
    assert!(err.contains("ends inside a frame"), "{err}");
    // Round trip.
    let path = dir.path().join("copy");
    good.write(&path).unwrap();
    let copy = Fixture::read(&path).unwrap();
    assert_eq!(copy.frames, good.frames);
}
