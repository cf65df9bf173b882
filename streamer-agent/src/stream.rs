//! The capture loop of one session: capture, convert and encode at the technician's frame rate, on a
//! thread of its own, announcing every change of monitor, frame rate, resolution or orientation with a
//! new video configuration followed by a keyframe.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::{Message, MonitorInfo, Orientation, VideoCodec, VideoConfig, VideoFrame};

use crate::capture::{Monitor, ScreenSource};
use crate::encode::{encoded_size, H264Encoder};

/// What the session asks of the capture loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCommand {
    /// Capture this monitor.
    SwitchMonitor(u32),
    /// Capture at this rate.
    SetFrameRate(u16),
    /// Make the next frame a keyframe.
    Keyframe,
}

/// The frame rates a technician may choose.
pub const FRAME_RATES: std::ops::RangeInclusive<u16> = 1..=60;

/// How often the monitor layout is read again, to notice resolution and orientation changes.
const LAYOUT_CHECK: Duration = Duration::from_secs(1);

/// The monitor being captured, shared with input injection (which needs its position).
pub type CurrentMonitor = Arc<Mutex<Option<Monitor>>>;

fn monitor_list(monitors: &[Monitor]) -> Message {
    Message::MonitorList(
        monitors
            .iter()
            .map(|m| MonitorInfo {
                id: m.id,
                key: m
                    .key
                    .chars()
                    .take(protocol::limits::MONITOR_KEY / 4)
                    .collect(),
                name: m.name.chars().take(protocol::limits::NAME / 4).collect(),
                x: m.x,
                y: m.y,
                width: m.width.max(1),
                height: m.height.max(1),
                primary: m.primary,
            })
            .collect(),
    )
}

fn video_config(m: &Monitor, frame_rate: u16) -> Message {
    let (width, height) = encoded_size(m.width, m.height);
    Message::VideoConfig(VideoConfig {
        codec: VideoCodec::H264,
        width: width.max(2),
        height: height.max(2),
        frame_rate,
        monitor_id: m.id,
        orientation: if height > width {
            Orientation::Portrait
        } else {
            Orientation::Landscape
        },
    })
}

/// Runs the capture loop until the receiver of `out` goes away or `commands` is dropped.
///
/// `out` is bounded: when the network is slower than capture, sending waits and the loop falls behind
/// its pace instead of queueing frames.
pub fn run(
    mut source: Box<dyn ScreenSource>,
    commands: Receiver<StreamCommand>,
    out: tokio::sync::mpsc::Sender<Message>,
    current: CurrentMonitor,
    initial: protocol::ViewRequest,
    default_frame_rate: u16,
) -> Result<(), String> {
    let started = Instant::now();
    // The technician's choice from the session request, so that the stream (and its recording)
    // starts as asked rather than changing after its first frame.
    let mut frame_rate = initial
        .frame_rate
        .unwrap_or(default_frame_rate)
        .clamp(*FRAME_RATES.start(), *FRAME_RATES.end());
    let mut monitors = source.monitors().map_err(|e| e.to_string())?;
    let mut selected = initial
        .monitor_id
        .and_then(|id| monitors.iter().find(|m| m.id == id))
        .or_else(|| monitors.iter().find(|m| m.primary))
        .or(monitors.first())
        .cloned()
        .ok_or("no monitor to capture")?;
    let send = |msg: Message| {
        out.blocking_send(msg)
            .map_err(|_| "the session ended".to_owned())
    };
    send(monitor_list(&monitors))?;
    let mut encoder: Option<H264Encoder> = None;
    let mut keyframe = true;
    let mut last_layout_check = Instant::now();
    let mut next_tick = Instant::now();
    loop {
        loop {
            match commands.try_recv() {
                Ok(StreamCommand::SwitchMonitor(id)) => {
                    if let Some(m) = monitors.iter().find(|m| m.id == id) {
                        if *m != selected {
                            selected = m.clone();
                            encoder = None;
                        }
                    }
                }
                Ok(StreamCommand::SetFrameRate(rate)) => {
                    let rate = rate.clamp(*FRAME_RATES.start(), *FRAME_RATES.end());
                    if rate != frame_rate {
                        frame_rate = rate;
                        encoder = None;
                    }
                }
                Ok(StreamCommand::Keyframe) => keyframe = true,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        }
        if last_layout_check.elapsed() >= LAYOUT_CHECK {
            last_layout_check = Instant::now();
            let now = source.monitors().map_err(|e| e.to_string())?;
            if now != monitors {
                monitors = now;
                send(monitor_list(&monitors))?;
                // The selected monitor, found again by its identity (its index may have moved),
                // or the primary if it is gone.
                let again = monitors
                    .iter()
                    .find(|m| m.key == selected.key)
                    .or_else(|| monitors.iter().find(|m| m.primary))
                    .or(monitors.first())
                    .cloned()
                    .ok_or("no monitor to capture")?;
                if again != selected {
                    selected = again;
                    encoder = None;
                }
            }
        }
        if encoder.is_none() {
            encoder = Some(
                H264Encoder::new(selected.width, selected.height, frame_rate)
                    .map_err(|e| e.to_string())?,
            );
            if let Ok(mut c) = current.lock() {
                *c = Some(selected.clone());
            }
            send(video_config(&selected, frame_rate))?;
            keyframe = true;
        }
        let frame = match source.capture(&selected) {
            Ok(f) => f,
            Err(e) => {
                // The layout changed under us: read it again at once.
                tracing::debug!(error = %e, "capture failed; reading the layout again");
                last_layout_check = Instant::now() - LAYOUT_CHECK;
                continue;
            }
        };
        let Some(enc) = encoder.as_mut() else {
            continue;
        };
        let encoded = enc
            .encode_bgra(&frame, keyframe)
            .map_err(|e| e.to_string())?;
        keyframe = false;
        let timestamp_us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        send(Message::VideoFrame(VideoFrame {
            keyframe: encoded.keyframe,
            timestamp_us,
            payload: Bytes::from(encoded.data),
        }))?;
        // Pace to the frame rate; when behind, skip ahead rather than burst.
        next_tick += Duration::from_secs(1) / u32::from(frame_rate);
        let now = Instant::now();
        if next_tick > now {
            std::thread::sleep(next_tick - now);
        } else {
            next_tick = now;
        }
    }
}
