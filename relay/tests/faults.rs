//! Recording under faults: storage filling up mid-session, the recordings store turning read-only
//! mid-session, and the technician's or the streamer's network failing mid-session (no close, no
//! reset: only timeouts tell); the relay killed with SIGKILL is in `crash.rs`. Nothing already finished is lost; what was being written stays
//! playable; both sides can start again.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::media::{check_file, TestEncoder};
use common::*;
use protocol::*;
use relay::store::RecordingState;
use relay_client::Connection;
use sha2::Digest;

/// The technician reads in the background (so that nothing waits on it) until its session ends;
/// returns the connection and the end's reason and message.
fn until_ended(mut tech: Connection) -> tokio::task::JoinHandle<(Connection, EndReason, String)> {
    tokio::spawn(async move {
        loop {
            match tech.recv().await {
                Ok(Message::SessionEnded { reason, message }) => return (tech, reason, message),
                Ok(_) => {}
                Err(e) => panic!("technician: {e}"),
            }
        }
    })
}

/// A small tmpfs mounted over a directory for the life of the guard.
struct SmallDisk(PathBuf);

impl SmallDisk {
    fn mount(at: &Path, size: &str) -> Self {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "this test mounts a small tmpfs to fill storage: it needs root (CI runs as root)"
        );
        Self(at.to_path_buf())
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[tokio::test]
async fn storage_filling_up_ends_the_session_and_keeps_what_was_written() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    let _disk = SmallDisk::mount(&relay.dir.path().join("spool"), "320k");
    let (mut streamer, id, _) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;
    let Message::SessionStarted { session_id, .. } = pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id: id },
    )
    .await
    else {
        panic!()
    };
    let tech_reader = until_ended(tech);
    assert_eq!(
        recv(&mut streamer).await,
        Message::RecordingState { recorded: true }
    );

    // A first file, closed by a monitor switch: stored before the disk fills.
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    streamer.send(&enc.config()).await.unwrap();
    stream_or_end(&mut streamer, &mut enc, 20, 10).await;
    // Then content that fills the spool.
    let mut enc = TestEncoder::new(320, 240, 30, 1)
        .starting_at(enc.timestamp_us)
        .noisy();
    streamer.send(&enc.config()).await.unwrap();
    let ended = stream_or_end(&mut streamer, &mut enc, 400, 3).await;

    let (_, reason, message) = tokio::time::timeout(Duration::from_secs(10), tech_reader)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, EndReason::RecordingFailed);
    assert!(
        message.contains("could not store the recording"),
        "{message}"
    );
    if let Some(Message::SessionEnded { reason, .. }) = ended {
        assert_eq!(reason, EndReason::RecordingFailed);
    }
    relay
        .wait_recording_state(&session_id, RecordingState::Failed)
        .await;
    let files = relay.store.recording_files(&session_id).await.unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        (files[0].state.as_str(), files[0].frame_count),
        ("complete", Some(20))
    );
    let bytes = relay.object(&files[0].object_key).await;
    assert_eq!(
        files[0].sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str())
    );
    assert_eq!(
        check_file(&bytes).decoded,
        20,
        "the file written before the failure is intact"
    );
    // The interrupted file keeps what was synced, and plays.
    assert_eq!(files[1].state, "incomplete");
    let bytes = relay.object(&files[1].object_key).await;
    let checked = check_file(&bytes);
    assert!(
        checked.frames > 0,
        "some fragments were synced before the disk filled"
    );
    assert_eq!(Some(checked.frames as i64), files[1].frame_count);
    assert_eq!(checked.decoded, checked.frames);
    relay.stop().await;
}

/// A relay that notices a silent peer within 1.5 s (the defaults are 15 s pings, 45 s silence).
async fn quick_to_notice() -> TestRelay {
    TestRelay::start_with(|c| {
        c.ping_interval_ms = 300;
        c.idle_timeout_ms = 1_500;
    })
    .await
}

/// Sends a frame every 30 ms until the session ends (at most 20 s); returns how many were sent
/// and the end's reason and message.
async fn stream_until_ended(
    streamer: &mut Connection,
    enc: &mut TestEncoder,
) -> (usize, EndReason, String) {
    let started = std::time::Instant::now();
    let (mut sent, mut keyframe) = (0, false);
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the session never ended"
        );
        match tokio::time::timeout(Duration::from_millis(30), streamer.recv()).await {
            Ok(Ok(Message::SessionEnded { reason, message })) => return (sent, reason, message),
            Ok(Ok(Message::KeyframeRequest)) => keyframe = true,
            Ok(Ok(other)) => panic!("the streamer was sent {other:?}"),
            Ok(Err(e)) => panic!("the streamer's connection failed: {e}"),
            Err(_) => {}
        }
        streamer.send(&enc.frame(keyframe)).await.unwrap();
        keyframe = false;
        sent += 1;
    }
}

/// The session's one file: complete, every frame in it decodes; returns its frame count.
async fn one_complete_file(relay: &TestRelay, session_id: &str) -> usize {
    relay
        .wait_recording_state(session_id, RecordingState::Uploaded)
        .await;
    let files = relay.store.recording_files(session_id).await.unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].state, "complete");
    let checked = check_file(&relay.object(&files[0].object_key).await);
    assert_eq!(Some(checked.frames as i64), files[0].frame_count);
    assert_eq!(checked.decoded, checked.frames, "every frame decodes");
    checked.frames
}

fn session_id(started: Message) -> String {
    match started {
        Message::SessionStarted { session_id, .. } => session_id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_lost_mid_session_ends_it_keeps_the_recording_and_starts_again() {
    let relay = quick_to_notice().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    let (mut streamer, device_id, _) = relay.device(&team, CURRENT).await;
    let path = netcut::NetPath::to(&relay.addr).await;
    let mut tech = relay.technician_at(&team, &path.addr).await;
    let target = SessionTarget::Device { device_id };
    let first = session_id(pair(&mut tech, &mut streamer, target.clone()).await);
    assert_eq!(
        recv(&mut streamer).await,
        Message::RecordingState { recorded: true }
    );
    // The technician's app reads (and so answers the relay's pings) until its network fails.
    let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
    let _app = tokio::spawn(async move {
        while let Ok(m) = tech.recv().await {
            let _ = seen_tx.send(m);
        }
    });
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    streamer.send(&enc.config()).await.unwrap();
    assert_eq!(stream_or_end(&mut streamer, &mut enc, 30, 10).await, None);
    let mut frames_seen = 0;
    while frames_seen < 30 {
        if let Message::VideoFrame(_) = seen.recv().await.unwrap() {
            frames_seen += 1;
        }
    }

    // The technician's network fails. The streamer goes on capturing until the relay, hearing
    // nothing from the technician, ends the session; all of it is recorded.
    path.cut();
    let (after_cut, reason, message) = stream_until_ended(&mut streamer, &mut enc).await;
    assert_eq!(reason, EndReason::TechnicianDisconnected);
    assert!(message.contains("connection was lost"), "{message}");
    let frames = one_complete_file(&relay, &first).await;
    assert!(
        (30..=30 + after_cut).contains(&frames) && frames > 30,
        "{frames} frames recorded of {} sent",
        30 + after_cut
    );

    // The technician comes back on a new connection with the same sign-in and starts again with
    // the same computer: a new session, recorded in its own file.
    let mut tech = relay.technician(&team).await;
    let second = session_id(pair(&mut tech, &mut streamer, target).await);
    assert_ne!(second, first);
    assert_eq!(
        recv(&mut streamer).await,
        Message::RecordingState { recorded: true }
    );
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    streamer.send(&enc.config()).await.unwrap();
    stream_or_end(&mut streamer, &mut enc, 10, 10).await;
    // The technician leaves once it has seen the ten frames (leaving earlier would race the last
    // ones still on their way, which the relay then neither forwards nor records).
    let mut frames_seen = 0;
    while frames_seen < 10 {
        if let Message::VideoFrame(_) = recv(&mut tech).await {
            frames_seen += 1;
        }
    }
    tech.send(&Message::LeaveSession).await.unwrap();
    assert_eq!(one_complete_file(&relay, &second).await, 10);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamer_lost_mid_session_that_reconnects_replaces_its_silent_connection() {
    // Slow to notice on purpose: the streamer is back before the relay would drop the old one.
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    let (registered, device_id, secret) = relay.device(&team, CURRENT).await;
    registered.close().await;
    let credential = Credential::Device {
        device_id: device_id.clone(),
        secret,
    };
    let path = netcut::NetPath::to(&relay.addr).await;
    let mut streamer = relay.connector.connect(&path.addr).await.unwrap();
    streamer
        .handshake(Role::Streamer, CURRENT, credential.clone())
        .await
        .unwrap();
    let mut tech = relay.technician(&team).await;
    let target = SessionTarget::Device { device_id };
    let first = session_id(pair(&mut tech, &mut streamer, target.clone()).await);
    assert_eq!(
        recv(&mut streamer).await,
        Message::RecordingState { recorded: true }
    );
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    streamer.send(&enc.config()).await.unwrap();
    assert_eq!(stream_or_end(&mut streamer, &mut enc, 20, 10).await, None);
    // All 20 reached the technician, so all are recorded (video is recorded before it is
    // forwarded), and none is in flight when the network fails.
    let mut frames_seen = 0;
    while frames_seen < 20 {
        if let Message::VideoFrame(_) = recv(&mut tech).await {
            frames_seen += 1;
        }
    }

    // The streamer's network fails; it connects again at once on another path.
    path.cut();
    let mut again = relay.connect().await;
    again
        .handshake(Role::Streamer, CURRENT, credential)
        .await
        .unwrap();
    // The technician is told the computer's connection was lost (not that it was revoked), and
    // what was recorded is kept whole.
    let (reason, message) = loop {
        if let Message::SessionEnded { reason, message } = recv(&mut tech).await {
            break (reason, message);
        }
    };
    assert_eq!(reason, EndReason::StreamerDisconnected);
    assert!(message.contains("connected again"), "{message}");
    assert_eq!(one_complete_file(&relay, &first).await, 20);

    // The technician starts again with the computer's new connection.
    let second = session_id(pair(&mut tech, &mut again, target).await);
    assert_ne!(second, first);
    relay.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_storage_ends_the_session_refuses_new_ones_and_loses_nothing() {
    // The fault is a read-only file system mounted over the recordings: this relay keeps them in
    // its directory whichever store the other tests use.
    let relay = TestRelay::start_with(|c| c.recordings_url = None).await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    let (tech, mut streamer, device_id, started) = relay.in_session(&team).await;
    let target = SessionTarget::Device { device_id };
    let first = session_id(started);
    let reader = until_ended(tech);
    assert_eq!(
        recv(&mut streamer).await,
        Message::RecordingState { recorded: true }
    );
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    streamer.send(&enc.config()).await.unwrap();
    assert_eq!(stream_or_end(&mut streamer, &mut enc, 20, 10).await, None);

    // The recordings store turns read-only (an empty read-only file system over it); the monitor
    // switch closes the first file, whose upload now fails.
    let recordings = relay.dir.path().join("recordings");
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"])
        .arg(&recordings)
        .status()
        .expect("running mount");
    assert!(
        status.success(),
        "this test mounts a read-only tmpfs: it needs root (CI runs as root)"
    );
    let _unmount = SmallDisk(recordings.clone());
    let mut enc = TestEncoder::new(320, 240, 30, 1).starting_at(enc.timestamp_us);
    streamer.send(&enc.config()).await.unwrap();
    let (_, reason, message) = stream_until_ended(&mut streamer, &mut enc).await;
    assert_eq!(reason, EndReason::RecordingFailed);
    assert!(
        message.contains("could not store the recording"),
        "{message}"
    );
    let (mut tech, tech_reason, _) = reader.await.unwrap();
    assert_eq!(tech_reason, EndReason::RecordingFailed);

    // While storage cannot take writes, a recorded session is refused before it starts...
    let (code, message) = request_refused(&mut tech, target.clone()).await;
    assert_eq!(code, ErrorCode::RecordingUnavailable, "{message}");
    // ...and a team that does not record is unaffected.
    let other = relay.team("unrecorded").await;
    relay.set_recording(&other, false, false).await;
    let (mut s2, d2, _) = relay.device(&other, CURRENT).await;
    let mut t2 = relay.technician(&other).await;
    pair(&mut t2, &mut s2, SessionTarget::Device { device_id: d2 }).await;

    // Storage comes back; at the next start the first file, kept in the spool, is stored whole.
    drop(_unmount);
    let (dir, config, clock) = relay.stop_keeping_data().await;
    let again = relay::Relay::prepare(config, Arc::new(clock))
        .await
        .unwrap();
    let files = again.store().recording_files(&first).await.unwrap();
    assert!(!files.is_empty(), "no file of the session was kept");
    assert_eq!(files[0].frame_count, Some(20), "{files:?}");
    let bytes = std::fs::read(object_path(dir.path(), &files[0].object_key)).unwrap();
    assert_eq!(
        files[0].sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str())
    );
    assert_eq!(check_file(&bytes).decoded, 20, "every frame of it plays");
    drop(again);
}
