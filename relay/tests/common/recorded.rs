//! A recorded session driven from a test: a technician and a device streamer paired with recording
//! on, frames streamed as a real streamer sends them, and the end awaited until the files are stored.

#![allow(dead_code)]

use std::time::Duration;

use super::media::TestEncoder;
use super::*;
use protocol::*;
use relay::store::RecordingState;
use relay_client::Connection;

/// A recorded session between a technician and a device streamer, with the technician's messages
/// collected in the background.
pub struct Recorded {
    pub streamer: Connection,
    pub session_id: String,
    pub tech: tokio::task::JoinHandle<(Connection, Vec<Message>)>,
    pub leave: tokio::sync::oneshot::Sender<()>,
}

pub async fn recorded_session(relay: &TestRelay, team: &Team) -> Recorded {
    let (mut streamer, id, _) = relay.device(team, CURRENT).await;
    let mut tech = relay.technician(team).await;
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
    assert!(recorded);
    assert_eq!(
        recv(&mut tech).await,
        Message::RecordingState { recorded: true }
    );
    assert_eq!(
        recv(&mut streamer).await,
        Message::RecordingState { recorded: true }
    );
    let (leave, left) = tokio::sync::oneshot::channel::<()>();
    let tech = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut asked = false;
        tokio::pin!(left);
        loop {
            tokio::select! {
                _ = &mut left, if !asked => {
                    asked = true;
                    tech.send(&Message::LeaveSession).await.unwrap();
                }
                m = tech.recv() => match m {
                    Ok(Message::SessionEnded { reason, message }) => {
                        got.push(Message::SessionEnded { reason, message });
                        return (tech, got);
                    }
                    // Checked by relay/tests/tools.rs.
                    Ok(Message::SessionTools(_)) => {}
                    Ok(m) => got.push(m),
                    Err(e) => panic!("technician: {e}"),
                },
            }
        }
    });
    Recorded {
        streamer,
        session_id,
        tech,
        leave,
    }
}

/// Sends `n` frames, answering keyframe requests as a streamer does. Returns the frames sent.
pub async fn stream(
    streamer: &mut Connection,
    enc: &mut TestEncoder,
    n: usize,
    keyframe_every: usize,
) -> Vec<Message> {
    // 10 ms between frames leaves a keyframe request time to arrive, as a real streamer's frame
    // interval does, even on a loaded machine (the relay's margin is four frames).
    stream_paced(streamer, enc, n, keyframe_every, Duration::from_millis(10)).await
}

/// [`stream`] with a pause between frames, as a streamer capturing in real time makes.
pub async fn stream_paced(
    streamer: &mut Connection,
    enc: &mut TestEncoder,
    n: usize,
    keyframe_every: usize,
    pace: Duration,
) -> Vec<Message> {
    let mut sent = Vec::new();
    let mut requested = false;
    for i in 0..n {
        while let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(1), streamer.recv()).await
        {
            match m {
                Message::KeyframeRequest => requested = true,
                Message::SessionTools(_) => {}
                other => panic!("the streamer was sent {other:?} after {i} frames"),
            }
        }
        let frame =
            enc.frame(i == 0 || requested || (keyframe_every > 0 && i % keyframe_every == 0));
        requested = false;
        tokio::time::sleep(pace).await;
        if let Err(e) = streamer.send(&frame).await {
            let mut seen = Vec::new();
            while let Ok(m) = streamer.recv().await {
                seen.push(m);
            }
            panic!("sending frame {i} failed ({e}); the streamer had been sent {seen:?}");
        }
        sent.push(frame);
    }
    sent
}

pub async fn finish(relay: &TestRelay, r: Recorded) -> Vec<Message> {
    r.leave.send(()).unwrap();
    let (_, got) = tokio::time::timeout(Duration::from_secs(20), r.tech)
        .await
        .unwrap()
        .unwrap();
    relay
        .wait_recording_state(&r.session_id, RecordingState::Uploaded)
        .await;
    got
}
