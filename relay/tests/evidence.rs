//! Recordings are evidence: whatever ends a recorded session, every video frame the relay forwarded
//! to the technician is in the session's files, in order, and every file plays (read back with
//! `recording_fmp4::read_samples` and counted by ffprobe). One test per way a session ends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::media::TestEncoder;
use common::*;
use protocol::*;
use relay::store::RecordingState;
use relay_client::Connection;
use tokio::sync::mpsc;

/// What the test makes the technician do.
enum TechDo {
    Leave,
    /// Drop the connection without a word (a lost network, as the relay sees it).
    Vanish,
    /// Send a kind only streamers may send.
    BreakProtocol,
}

/// What the technician was shown.
struct Seen {
    frames: Vec<VideoFrame>,
    ended: Option<EndReason>,
}

struct Live {
    streamer: Option<Connection>,
    session_id: String,
    device_id: String,
    tech: tokio::task::JoinHandle<Seen>,
    tech_do: mpsc::Sender<TechDo>,
    enc: TestEncoder,
    /// Keyframe requests not yet answered.
    requested: bool,
    /// The streamer was told the session ended.
    streamer_ended: bool,
}

async fn start(relay: &TestRelay, team: &Team) -> Live {
    relay.set_recording(team, false, true).await;
    let (mut streamer, device_id, _) = relay.device(team, CURRENT).await;
    let mut tech = relay.technician(team).await;
    let started = pair(
        &mut tech,
        &mut streamer,
        SessionTarget::Device {
            device_id: device_id.clone(),
        },
    )
    .await;
    let Message::SessionStarted {
        session_id,
        recorded: true,
        ..
    } = started
    else {
        panic!("not a recorded session: {started:?}")
    };
    let (tech_do, mut todo) = mpsc::channel(4);
    let tech = tokio::spawn(async move {
        let mut seen = Seen {
            frames: Vec::new(),
            ended: None,
        };
        loop {
            tokio::select! {
                what = todo.recv() => match what {
                    Some(TechDo::Leave) => { let _ = tech.send(&Message::LeaveSession).await; }
                    Some(TechDo::Vanish) | None => return seen,
                    Some(TechDo::BreakProtocol) => {
                        let _ = tech.send(&Message::KeyframeRequest).await;
                        let _ = tech.send(&Message::MonitorList(Vec::new())).await;
                    }
                },
                m = tokio::time::timeout(Duration::from_secs(30), tech.recv()) => match m {
                    Ok(Ok(Message::VideoFrame(f))) => seen.frames.push(f),
                    Ok(Ok(Message::SessionEnded { reason, .. })) => {
                        seen.ended = Some(reason);
                        return seen;
                    }
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => return seen,
                },
            }
        }
    });
    let enc = TestEncoder::new(320, 240, 30, 0);
    let mut live = Live {
        streamer: Some(streamer),
        session_id,
        device_id,
        tech,
        tech_do,
        enc,
        requested: false,
        streamer_ended: false,
    };
    let config = live.enc.config();
    live.streamer.as_mut().unwrap().send(&config).await.unwrap();
    live
}

impl Live {
    /// Streams up to `n` frames 10 ms apart, answering keyframe requests, until the streamer learns
    /// that the session ended or its connection fails.
    async fn stream(&mut self, n: usize) {
        for i in 0..n {
            let Some(streamer) = self.streamer.as_mut() else {
                return;
            };
            while let Ok(got) =
                tokio::time::timeout(Duration::from_millis(1), streamer.recv()).await
            {
                match got {
                    Ok(Message::KeyframeRequest) => self.requested = true,
                    Ok(Message::SessionEnded { .. }) => self.streamer_ended = true,
                    Ok(_) => {}
                    Err(_) => {
                        self.streamer_ended = true;
                        break;
                    }
                }
            }
            if self.streamer_ended {
                return;
            }
            let frame = self.enc.frame(i == 0 || self.requested || i % 30 == 0);
            self.requested = false;
            tokio::time::sleep(Duration::from_millis(10)).await;
            if streamer.send(&frame).await.is_err() {
                return;
            }
        }
    }

    async fn send(&mut self, msg: &Message) {
        let _ = self.streamer.as_mut().unwrap().send(msg).await;
    }
}

/// Waits for the technician's view of the end, then checks the recording against it.
async fn check(relay: &TestRelay, live: Live, want: Option<EndReason>) -> Seen {
    check_in(&relay.store, &relay.recorder, live, want).await
}

/// [`check`] against a store and recordings given apart (after the relay stopped).
async fn check_in(
    store: &relay::store::Store,
    recorder: &relay::recorder::RecorderContext,
    live: Live,
    want: Option<EndReason>,
) -> Seen {
    let Live {
        session_id,
        tech,
        streamer,
        ..
    } = live;
    let seen = tokio::time::timeout(Duration::from_secs(30), tech)
        .await
        .expect("the technician's side ends")
        .unwrap();
    drop(streamer);
    assert_eq!(seen.ended, want, "the technician was told this end");
    assert!(
        seen.frames.len() >= 20,
        "the technician saw {} frames",
        seen.frames.len()
    );
    for _ in 0..500 {
        if store.recording_state(&session_id).await.unwrap() != Some(RecordingState::Recording) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let files = store.recording_files(&session_id).await.unwrap();
    assert!(!files.is_empty());
    let mut recorded = Vec::new();
    for f in &files {
        assert_eq!(
            f.state, "complete",
            "a file that closed normally is complete"
        );
        let bytes = object(recorder, &f.object_key).await;
        let samples = recording_fmp4::read_samples(&bytes).expect("the file reads back");
        assert_eq!(f.frame_count, Some(samples.len() as i64));
        assert_eq!(
            ffprobe_frames(&bytes),
            samples.len(),
            "ffprobe plays it whole"
        );
        recorded.extend(samples.into_iter().map(|s| s.data));
    }
    assert!(
        recorded.len() >= seen.frames.len(),
        "{} frames recorded, {} shown to the technician",
        recorded.len(),
        seen.frames.len()
    );
    for (i, shown) in seen.frames.iter().enumerate() {
        let au = recording_fmp4::split_access_unit(&shown.payload).unwrap();
        assert!(
            au.sample == recorded[i],
            "frame {i} the technician saw is the {i}th frame recorded"
        );
    }
    // The end reason stays on the session.
    let session = store
        .session(&files[0].team_id, &session_id)
        .await
        .unwrap()
        .unwrap();
    if let Some(reason) = want {
        assert_eq!(
            session.end_reason.as_deref(),
            Some(&*EndReason::name(reason))
        );
    }
    assert_eq!(session.recording_state, RecordingState::Uploaded);
    seen
}

async fn object(recorder: &relay::recorder::RecorderContext, key: &str) -> Vec<u8> {
    use object_store::ObjectStoreExt;
    let got = recorder
        .recordings
        .objects()
        .get(&object_store::path::Path::from(key))
        .await
        .unwrap();
    got.bytes().await.unwrap().to_vec()
}

async fn relay_team_of(relay: &TestRelay, session_id: &str) -> String {
    let files = relay.store.recording_files(session_id).await.unwrap();
    files[0].team_id.clone()
}

/// How many video frames ffprobe decodes from a file.
fn ffprobe_frames(bytes: &[u8]) -> usize {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("recording.mp4");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-count_frames",
            "-show_entries",
            "stream=nb_read_frames",
            "-of",
            "csv=p=0",
        ])
        .arg(&path)
        .output()
        .expect("ffprobe runs (Debian's ffmpeg package, installed by cargo xtask test)");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a frame count")
}

#[tokio::test]
async fn technician_left() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let mut live = start(&relay, &team).await;
    live.stream(40).await;
    live.tech_do.send(TechDo::Leave).await.unwrap();
    live.stream(20).await;
    check(&relay, live, Some(EndReason::TechnicianLeft)).await;
    relay.stop().await;
}

#[tokio::test]
async fn end_user_ended() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let mut live = start(&relay, &team).await;
    live.stream(40).await;
    live.send(&Message::LeaveSession).await;
    check(&relay, live, Some(EndReason::EndUserEnded)).await;
    relay.stop().await;
}

#[tokio::test]
async fn technician_disconnected() {
    let relay = TestRelay::start_with(|c| {
        c.idle_timeout_ms = 1_500;
        c.ping_interval_ms = 500;
    })
    .await;
    let team = relay.team("acme").await;
    let mut live = start(&relay, &team).await;
    live.stream(40).await;
    live.tech_do.send(TechDo::Vanish).await.unwrap();
    live.stream(20).await;
    let session_id = live.session_id.clone();
    // The technician saw no end: it vanished.
    check(&relay, live, None).await;
    let team_id = relay_team_of(&relay, &session_id).await;
    let s = relay.store.session(&team_id, &session_id).await.unwrap();
    assert_eq!(
        s.unwrap().end_reason.as_deref(),
        Some("TECHNICIAN_DISCONNECTED")
    );
    relay.stop().await;
}

#[tokio::test]
async fn streamer_disconnected() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let mut live = start(&relay, &team).await;
    live.stream(40).await;
    live.streamer = None;
    check(&relay, live, Some(EndReason::StreamerDisconnected)).await;
    relay.stop().await;
}

/// The case found from outside: five valid frames, then one whose timestamp goes backwards. That
/// frame is neither recorded nor forwarded; everything before it is in a complete file.
#[tokio::test]
async fn streamer_protocol_error_timestamp_backwards() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let mut live = start(&relay, &team).await;
    live.stream(40).await;
    let Message::VideoFrame(mut bad) = live.enc.frame(false) else {
        unreachable!()
    };
    bad.timestamp_us = 0;
    live.send(&Message::VideoFrame(bad)).await;
    live.stream(10).await;
    let seen = check(&relay, live, Some(EndReason::ProtocolError)).await;
    assert_eq!(seen.frames.len(), 40, "the bad frame was not forwarded");
    relay.stop().await;
}

#[tokio::test]
async fn technician_protocol_error() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let mut live = start(&relay, &team).await;
    live.stream(40).await;
    live.tech_do.send(TechDo::BreakProtocol).await.unwrap();
    live.stream(20).await;
    // The technician is refused and closed: it sees no SessionEnded.
    let session_id = live.session_id.clone();
    check(&relay, live, None).await;
    let team_id = relay_team_of(&relay, &session_id).await;
    let s = relay.store.session(&team_id, &session_id).await.unwrap();
    assert_eq!(s.unwrap().end_reason.as_deref(), Some("PROTOCOL_ERROR"));
    relay.stop().await;
}

#[tokio::test]
async fn time_limit_reached() {
    let relay = TestRelay::start_with(|c| {
        c.max_recorded_session_secs = 2;
        c.limit_warning_secs = 1;
    })
    .await;
    let team = relay.team("acme").await;
    let mut live = start(&relay, &team).await;
    live.stream(1000).await;
    assert!(live.streamer_ended, "the limit ended the session");
    check(&relay, live, Some(EndReason::TimeLimitReached)).await;
    relay.stop().await;
}

#[tokio::test]
async fn credential_revoked() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let mut live = start(&relay, &team).await;
    live.stream(40).await;
    let (status, _) = relay
        .api(
            "POST",
            &format!("/api/v1/devices/{}/revoke", live.device_id),
            Some(&team.token),
            None,
        )
        .await;
    assert_eq!(status, 204);
    live.stream(20).await;
    check(&relay, live, Some(EndReason::CredentialRevoked)).await;
    relay.stop().await;
}

/// A streamer past the message rate limit is refused RATE_LIMITED and closed; its session ends as
/// a protocol error, with everything forwarded before in the file.
#[tokio::test]
async fn rate_limited() {
    let relay = TestRelay::start_with(|c| c.max_messages_per_sec = 200).await;
    let team = relay.team("acme").await;
    let mut live = start(&relay, &team).await;
    live.stream(40).await;
    for i in 0..2_000u64 {
        let audio = Message::AudioFrame(AudioFrame {
            timestamp_us: i,
            payload: bytes::Bytes::from_static(b"opus"),
        });
        if live.streamer.as_mut().unwrap().send(&audio).await.is_err() {
            break;
        }
    }
    live.stream(20).await;
    check(&relay, live, Some(EndReason::ProtocolError)).await;
    relay.stop().await;
}

#[tokio::test]
async fn relay_shutting_down() {
    let relay = TestRelay::start().await;
    let team = relay.team("acme").await;
    let mut live = start(&relay, &team).await;
    live.stream(40).await;
    relay.shutdown.cancel();
    live.stream(20).await;
    let recorder = relay.recorder.clone();
    // Shutdown waits for the last file to be stored; the store is then looked at afresh.
    let (_dir, config, clock) = relay.stop_keeping_data().await;
    let store = relay::store::Store::open(&config.database_url(), std::sync::Arc::new(clock))
        .await
        .unwrap();
    check_in(&store, &recorder, live, Some(EndReason::RelayShuttingDown)).await;
}
