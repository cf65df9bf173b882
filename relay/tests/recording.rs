//! Recording through the relay with real H.264: files parse as fragmented MP4 and every frame
//! decodes; the split rules; the time limit; retention.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::media::{check_file, TestEncoder};
use common::recorded::*;
use common::*;
use protocol::*;
use relay::store::RecordingState;

#[tokio::test]
async fn a_recorded_session_is_stored_as_playable_fragmented_mp4() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    let mut r = recorded_session(&relay, &team).await;

    let mut enc = TestEncoder::new(320, 240, 30, 0);
    r.streamer.send(&enc.config()).await.unwrap();
    let sent = stream(&mut r.streamer, &mut enc, 90, 30).await;
    r.streamer
        .send(&Message::AudioFrame(AudioFrame {
            timestamp_us: 5,
            payload: bytes::Bytes::from_static(b"opus"),
        }))
        .await
        .unwrap();
    let session_id = r.session_id.clone();
    let got = finish(&relay, r).await;

    // Forwarded: the configuration, every frame in order, the audio.
    assert_eq!(got[0], enc_config(320, 240, 30, 0));
    let forwarded: Vec<_> = got
        .iter()
        .filter(|m| matches!(m, Message::VideoFrame(_)))
        .cloned()
        .collect();
    assert_eq!(forwarded, sent);
    assert!(got.iter().any(|m| matches!(m, Message::AudioFrame(_))));

    // Recorded: one file, parsed and decoded frame by frame.
    let files = relay.store.recording_files(&session_id).await.unwrap();
    assert_eq!(files.len(), 1);
    let f = &files[0];
    assert_eq!(
        (f.state.as_str(), f.split_reason.as_str(), f.monitor_id),
        ("complete", "session_start", 0)
    );
    assert_eq!(f.frame_count, Some(90));
    let bytes = relay.object(&f.object_key).await;
    assert_eq!(f.size_bytes, Some(bytes.len() as i64));
    use sha2::Digest;
    assert_eq!(
        f.sha256.as_deref(),
        Some(hex::encode(sha2::Sha256::digest(&bytes)).as_str())
    );
    let checked = check_file(&bytes);
    assert_eq!(checked.frames, 90, "frame count equals frames sent");
    assert_eq!(checked.decoded, 90, "every frame decodes");
    assert!(checked.first_is_keyframe);
    assert_eq!((checked.width, checked.height), (320, 240));
    assert!(
        checked.fragments >= 3,
        "one fragment per keyframe interval: {}",
        checked.fragments
    );
    assert!(
        (2990..=3010).contains(&checked.duration_ms),
        "{} ms for 90 frames at 30 fps",
        checked.duration_ms
    );
    assert_eq!(f.duration_ms, Some(checked.duration_ms as i64));
    // Audio is never written: the file has one video track and only the video frames.
    relay.stop().await;
}

fn enc_config(width: u16, height: u16, frame_rate: u16, monitor_id: u32) -> Message {
    TestEncoder::new(width, height, frame_rate, monitor_id).config()
}

#[tokio::test]
async fn with_recording_off_nothing_is_stored() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let (mut streamer, id, _) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;
    let Message::SessionStarted {
        session_id,
        recorded,
        ..
    } = pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id: id },
    )
    .await
    else {
        panic!()
    };
    assert!(!recorded);
    assert_eq!(
        recv(&mut streamer).await,
        Message::RecordingState { recorded: false }
    );
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    streamer.send(&enc.config()).await.unwrap();
    stream(&mut streamer, &mut enc, 10, 0).await;
    tech.send(&Message::LeaveSession).await.unwrap();
    loop {
        if let Message::SessionEnded { .. } = recv(&mut tech).await {
            break;
        }
    }
    assert!(relay
        .store
        .recording_files(&session_id)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        relay.store.recording_state(&session_id).await.unwrap(),
        Some(RecordingState::NotRecorded)
    );
    let stored = stored_objects(&relay).await;
    assert!(stored.is_empty(), "nothing stored: {stored:?}");
    relay.stop().await;
}

#[tokio::test]
async fn each_split_trigger_starts_an_independently_playable_file() {
    let relay = TestRelay::start_with(|c| c.max_recording_file_bytes = 160 * 1024).await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    let mut r = recorded_session(&relay, &team).await;

    // Monitor 0, then the technician switches to monitor 1.
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 20, 0).await;
    let mut enc = TestEncoder::new(320, 240, 30, 1).starting_at(enc.timestamp_us);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 20, 0).await;
    // The frame rate changes.
    let mut enc = TestEncoder::new(320, 240, 15, 1).starting_at(enc.timestamp_us);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 20, 0).await;
    // The screen turns to portrait.
    let mut enc = TestEncoder::new(240, 320, 15, 1).starting_at(enc.timestamp_us);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 20, 0).await;
    // Content that compresses badly fills files up to the size cap.
    let mut enc = TestEncoder::new(240, 320, 15, 1)
        .starting_at(enc.timestamp_us)
        .noisy();
    r.streamer.send(&enc.config()).await.unwrap();
    stream_paced(&mut r.streamer, &mut enc, 40, 0, Duration::from_millis(20)).await;
    let session_id = r.session_id.clone();
    finish(&relay, r).await;

    let files = relay.store.recording_files(&session_id).await.unwrap();
    let reasons: Vec<&str> = files.iter().map(|f| f.split_reason.as_str()).collect();
    assert_eq!(
        &reasons[..4],
        &["session_start", "monitor", "frame_rate", "orientation"],
        "{reasons:?}"
    );
    assert!(
        reasons[4..].contains(&"size"),
        "the size cap split the noisy part: {reasons:?}"
    );
    // Listed by monitor, then by start time.
    let order: Vec<(i64, i64)> = files.iter().map(|f| (f.monitor_id, f.started_at)).collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    assert_eq!(files[0].monitor_id, 0);
    let mut total = 0;
    for f in &files {
        let bytes = relay.object(&f.object_key).await;
        assert!(
            bytes.len() as u64 <= 160 * 1024,
            "{} is {} bytes, over the cap",
            f.split_reason,
            bytes.len()
        );
        let checked = check_file(&bytes);
        assert!(
            checked.first_is_keyframe,
            "{} starts with a keyframe",
            f.split_reason
        );
        assert_eq!(
            checked.decoded, checked.frames,
            "{} decodes on its own",
            f.split_reason
        );
        assert_eq!(Some(checked.frames as i64), f.frame_count);
        assert_eq!(
            (i64::from(checked.width), i64::from(checked.height)),
            (f.width, f.height)
        );
        total += checked.frames;
    }
    assert_eq!(total, 120, "every frame is in exactly one file");
    let portrait = files
        .iter()
        .find(|f| f.split_reason == "orientation")
        .unwrap();
    assert_eq!(
        (
            portrait.orientation.as_str(),
            portrait.width,
            portrait.height
        ),
        ("portrait", 240, 320)
    );
    assert_eq!(
        files
            .iter()
            .find(|f| f.split_reason == "frame_rate")
            .unwrap()
            .frame_rate,
        15
    );
    relay.stop().await;
}

#[tokio::test]
async fn the_time_limit_warns_then_ends_the_session() {
    let relay = TestRelay::start_with(|c| {
        c.max_recorded_session_secs = 3;
        c.limit_warning_secs = 2;
    })
    .await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, true, true).await;
    let (mut streamer, id, _) = relay.device(&team, CURRENT).await;
    let mut tech = relay.technician(&team).await;
    let started = std::time::Instant::now();
    pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device { device_id: id },
    )
    .await;
    // Told the session is recorded before any media.
    assert_eq!(
        recv(&mut tech).await,
        Message::RecordingState { recorded: true }
    );
    let mut enc = TestEncoder::new(160, 120, 10, 0);
    streamer.send(&enc.config()).await.unwrap();
    streamer.send(&enc.frame(true)).await.unwrap();
    assert!(matches!(recv(&mut tech).await, Message::VideoConfig(_)));
    assert!(matches!(recv(&mut tech).await, Message::VideoFrame(_)));

    let Message::LimitWarning { time_left_ms } = recv(&mut tech).await else {
        panic!("expected the warning")
    };
    let at = started.elapsed();
    assert!(
        (1500..=2000).contains(&time_left_ms),
        "time left {time_left_ms} ms"
    );
    assert!(
        at >= Duration::from_millis(900) && at < Duration::from_millis(2500),
        "warned at {at:?}"
    );
    let Message::SessionEnded { reason, message } = recv(&mut tech).await else {
        panic!("expected the end")
    };
    let at = started.elapsed();
    assert_eq!(reason, EndReason::TimeLimitReached);
    assert_eq!(
        message,
        "This recorded session reached its time limit of 3 seconds."
    );
    assert!(
        at >= Duration::from_millis(2900) && at < Duration::from_millis(4500),
        "ended at {at:?}"
    );
    loop {
        if let Message::SessionEnded { reason, .. } = recv(&mut streamer).await {
            assert_eq!(reason, EndReason::TimeLimitReached);
            break;
        }
    }
    relay.stop().await;
}

#[tokio::test]
async fn retention_removes_old_files_and_keeps_newer_ones() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    let mut sessions = Vec::new();
    let mut team = team;
    for _ in 0..2 {
        team.token = relay.sign_in(&team.owner_email).await;
        let mut r = recorded_session(&relay, &team).await;
        let mut enc = TestEncoder::new(160, 120, 10, 0);
        r.streamer.send(&enc.config()).await.unwrap();
        stream(&mut r.streamer, &mut enc, 5, 0).await;
        sessions.push(r.session_id.clone());
        finish(&relay, r).await;
        relay.clock.advance(Duration::from_secs(50 * 86_400));
    }
    // The first file ended 100 days ago, the second 50.
    let retention = Duration::from_secs(90 * 86_400);
    let deleted = relay::recorder::retention::sweep(&relay.recorder, retention)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let old = &relay.store.recording_files(&sessions[0]).await.unwrap()[0];
    let new = &relay.store.recording_files(&sessions[1]).await.unwrap()[0];
    assert_eq!(old.state, "deleted");
    assert_eq!(new.state, "complete");
    use object_store::ObjectStoreExt;
    let objects = relay.recorder.recordings.objects();
    assert!(objects
        .head(&object_store::path::Path::from(old.object_key.as_str()))
        .await
        .is_err());
    assert!(objects
        .head(&object_store::path::Path::from(new.object_key.as_str()))
        .await
        .is_ok());
    // A second sweep finds nothing more to do.
    assert_eq!(
        relay::recorder::retention::sweep(&relay.recorder, retention)
            .await
            .unwrap(),
        0
    );
    relay.stop().await;
}

/// A team may keep its recordings for fewer days than the relay: its files go after its own
/// period, another team's stay until the relay's.
#[tokio::test]
async fn a_team_keeps_recordings_for_its_own_shorter_period() {
    let relay = TestRelay::start().await;
    let mut short = relay.team("short").await;
    let mut long = relay.team("long").await;
    let mut sessions = Vec::new();
    for team in [&mut short, &mut long] {
        relay.set_recording(team, false, true).await;
        team.token = relay.sign_in(&team.owner_email).await;
        let mut r = recorded_session(&relay, team).await;
        let mut enc = TestEncoder::new(160, 120, 10, 0);
        r.streamer.send(&enc.config()).await.unwrap();
        stream(&mut r.streamer, &mut enc, 5, 0).await;
        sessions.push(r.session_id.clone());
        finish(&relay, r).await;
    }
    let (status, mut s) = relay
        .api("GET", "/api/v1/team/settings", Some(&short.token), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(s["retention_days"], serde_json::Value::Null);
    s["retention_days"] = 30.into();
    let (status, saved) = relay
        .api(
            "PUT",
            "/api/v1/team/settings",
            Some(&short.token),
            Some(s.clone()),
        )
        .await;
    assert_eq!(
        (status, &saved["retention_days"]),
        (200, &30.into()),
        "{saved}"
    );
    // More than the relay keeps is refused, with the relay's period in the sentence.
    s["retention_days"] = 91.into();
    let (status, body) = relay
        .api("PUT", "/api/v1/team/settings", Some(&short.token), Some(s))
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("from 1 to 90"),
        "{body}"
    );
    relay.clock.advance(Duration::from_secs(31 * 86_400));
    let retention = Duration::from_secs(90 * 86_400);
    let deleted = relay::recorder::retention::sweep(&relay.recorder, retention)
        .await
        .unwrap();
    assert_eq!(deleted, 1);
    let state = |i: usize| {
        let relay = &relay;
        let id = sessions[i].clone();
        async move {
            relay.store.recording_files(&id).await.unwrap()[0]
                .state
                .clone()
        }
    };
    assert_eq!(state(0).await, "deleted");
    assert_eq!(state(1).await, "complete");
    relay.stop().await;
}

fn monitor(id: u32, key: &str, name: &str, x: i32) -> MonitorInfo {
    MonitorInfo {
        id,
        key: key.into(),
        name: name.into(),
        x,
        y: 0,
        width: 320,
        height: 240,
        primary: id == 0,
    }
}

/// Monitors are known by their identity, not their index: when the layout changes and the viewed
/// screen moves to another index, its recording goes on in the same file; a switch to another
/// screen under the old index is a `monitor` split; files are grouped by identity and named.
#[tokio::test]
async fn monitors_are_recorded_by_identity_across_layout_changes() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    let mut r = recorded_session(&relay, &team).await;
    let list = |monitors| Message::MonitorList(monitors);
    r.streamer
        .send(&list(vec![
            monitor(0, "DP-1", "Left", 0),
            monitor(1, "DP-2", "Right", 320),
        ]))
        .await
        .unwrap();
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 20, 0).await;
    // A monitor is added on the left: DP-1 is now index 1, and the streamer follows it there.
    r.streamer
        .send(&list(vec![
            monitor(0, "HDMI-1", "New", -320),
            monitor(1, "DP-1", "Left", 0),
            monitor(2, "DP-2", "Right", 320),
        ]))
        .await
        .unwrap();
    let mut enc = TestEncoder::new(320, 240, 30, 1).starting_at(enc.timestamp_us);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 20, 0).await;
    // The technician switches to index 0, which is another screen now.
    let mut enc = TestEncoder::new(320, 240, 30, 0).starting_at(enc.timestamp_us);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 20, 0).await;
    let session_id = r.session_id.clone();
    finish(&relay, r).await;

    let files = relay.store.recording_files(&session_id).await.unwrap();
    let summary: Vec<(&str, &str, &str, i64)> = files
        .iter()
        .map(|f| {
            (
                f.monitor_key.as_str(),
                f.monitor_name.as_str(),
                f.split_reason.as_str(),
                f.frame_count.unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("DP-1", "Left", "session_start", 40),
            ("HDMI-1", "New", "monitor", 20)
        ],
        "the layout change alone did not split; the switch did"
    );
    assert!(
        files[0].object_key.contains("/monitor-DP-1/"),
        "{}",
        files[0].object_key
    );
    assert!(
        files[1].object_key.contains("/monitor-HDMI-1/"),
        "{}",
        files[1].object_key
    );
    let (_, body) = relay
        .api(
            "GET",
            &format!("/api/v1/sessions/{session_id}/recordings"),
            Some(&team.token),
            None,
        )
        .await;
    assert_eq!(body["files"][0]["monitor_key"], "DP-1", "{body}");
    assert_eq!(body["files"][1]["monitor_name"], "New", "{body}");
    relay.stop().await;
}

/// A monitor's identity comes from the streamer: one that looks like a path stays inside the
/// session's folder.
#[tokio::test]
async fn a_monitor_identity_like_a_path_stays_in_its_folder() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    relay.set_recording(&team, false, true).await;
    let mut r = recorded_session(&relay, &team).await;
    r.streamer
        .send(&Message::MonitorList(vec![monitor(0, "../../etc", "x", 0)]))
        .await
        .unwrap();
    let mut enc = TestEncoder::new(320, 240, 30, 0);
    r.streamer.send(&enc.config()).await.unwrap();
    stream(&mut r.streamer, &mut enc, 5, 0).await;
    let session_id = r.session_id.clone();
    finish(&relay, r).await;
    let files = relay.store.recording_files(&session_id).await.unwrap();
    assert_eq!(files[0].monitor_key, "../../etc");
    let key = &files[0].object_key;
    assert!(
        key.contains("/monitor-______etc/") && !key.contains(".."),
        "{key}"
    );
    relay.stop().await;
}
