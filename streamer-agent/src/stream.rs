//! The capture loop of one session: capture, convert and encode at the technician's frame rate, on a
//! thread of its own, announcing every change of monitor, frame rate, resolution or orientation with a
//! new video configuration followed by a keyframe.
//!
//! Only what changed is captured and converted again; while the screen is still nothing is captured
//! or encoded, except one frame every [`STILL_FRAME_EVERY`] so that the technician's view stays live
//! and the recorder closes its fragments on time.
//!
//! Pacing: frames are captured at most once a frame interval (1 / the adapted frame rate), counted
//! from the capture of the frame sent before. While the screen is changing ([`LIVE`]), a tick that
//! finds nothing new looks again a quarter of an interval later instead of a whole one, so that the
//! loop falls into step just after the screen's own changes: content drawn at the frame rate goes
//! out one frame per change, each within a quarter interval of being drawn, rather than losing
//! frames (two changes in one capture, then none) whenever the two clocks' jitter straddles a tick.
//! A still screen keeps the plain cadence.

use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use protocol::{Message, MonitorInfo, Orientation, VideoCodec, VideoConfig, VideoFrame};

use crate::adapt::Adapter;
use crate::capture::{Change, Frame, Monitor, ScreenSource};
use crate::encode::{encoded_size, EncoderSettings, H264Encoder};

/// What the session asks of the capture loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamCommand {
    /// Capture this monitor.
    SwitchMonitor(u32),
    /// Capture at this rate.
    SetFrameRate(u16),
    /// Make the next frame a keyframe.
    Keyframe,
    /// What the technician's side received (the adaptation's input, `adapt.rs`).
    Report(protocol::ReceiverReport),
}

/// The frame rates a technician may choose.
pub const FRAME_RATES: std::ops::RangeInclusive<u16> = 1..=60;

/// How often the monitor layout is read again, to notice resolution and orientation changes.
const LAYOUT_CHECK: Duration = Duration::from_secs(1);

/// While nothing changes, a frame (the same picture: a few dozen bytes) is still sent this often.
pub const STILL_FRAME_EVERY: Duration = Duration::from_millis(900);

/// A screen that changed this recently is "changing": a tick that finds nothing looks again sooner.
const LIVE: Duration = Duration::from_secs(1);

/// How many of the latest frames' timestamps the loop keeps (4 s at 60 fps).
const SENT_KEPT: usize = 240;

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
    source: Box<dyn ScreenSource>,
    commands: Receiver<StreamCommand>,
    out: tokio::sync::mpsc::Sender<Message>,
    current: CurrentMonitor,
    initial: protocol::ViewRequest,
    default_frame_rate: u16,
) -> Result<(), String> {
    run_with(
        source,
        commands,
        out,
        current,
        initial,
        default_frame_rate,
        EncoderSettings::streamer,
    )
}

/// The capture loop's clock: what time it is, and waiting. The streamer runs on the system's
/// ([`SystemPace`]); the loop's tests on one whose waits only move its time on, so that what they
/// check (frames per change, the gaps between frames) does not depend on how busy the machine is.
pub trait Pace {
    /// Now.
    fn now(&self) -> Instant;
    /// Waits for `d`.
    fn sleep(&mut self, d: Duration);
}

/// The system's clock and `std::thread::sleep`.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemPace;

impl Pace for SystemPace {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// [`run`] with the encoder set up by `settings` for each monitor's width and height (benchmarks
/// compare set-ups with it).
pub fn run_with(
    source: Box<dyn ScreenSource>,
    commands: Receiver<StreamCommand>,
    out: tokio::sync::mpsc::Sender<Message>,
    current: CurrentMonitor,
    initial: protocol::ViewRequest,
    default_frame_rate: u16,
    settings: fn(u16, u16) -> EncoderSettings,
) -> Result<(), String> {
    run_paced(
        source,
        (commands, out),
        current,
        (initial, default_frame_rate),
        settings,
        &mut SystemPace,
    )
}

/// [`run_with`] on the clock `pace`.
pub fn run_paced(
    mut source: Box<dyn ScreenSource>,
    (commands, out): (Receiver<StreamCommand>, tokio::sync::mpsc::Sender<Message>),
    current: CurrentMonitor,
    (initial, default_frame_rate): (protocol::ViewRequest, u16),
    settings: fn(u16, u16) -> EncoderSettings,
    pace: &mut dyn Pace,
) -> Result<(), String> {
    let started = pace.now();
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
    let mut frame = Frame::empty();
    let mut last_sent: Option<Instant> = None;
    // Whether a change was captured (and converted) but its frame dropped by the bucket.
    let mut unsent_change = false;
    let mut newest_sent_us = 0u64;
    // The timestamps of the frames sent lately, to count those still in flight at a report.
    let mut sent_times = std::collections::VecDeque::with_capacity(SENT_KEPT);
    let mut adapter = Adapter::new(
        frame_rate,
        settings(selected.width, selected.height)
            .target_bps
            .unwrap_or(u32::MAX),
    );
    let mut last_layout_check = pace.now();
    let mut next_tick = pace.now();
    // When the screen last changed, and when the frame last sent was captured.
    let mut last_change: Option<Instant> = None;
    let mut sent_captured: Option<Instant> = None;
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
                Ok(StreamCommand::Report(report)) => {
                    let in_flight = sent_times
                        .iter()
                        .filter(|t| **t > report.newest_timestamp_us)
                        .count();
                    let delay = adapter.on_report(&report, newest_sent_us, in_flight, pace.now());
                    let rates = adapter.rates();
                    tracing::trace!(
                        delay_ms = delay,
                        fps = rates.fps,
                        bps = rates.bps,
                        "receiver report"
                    );
                    if let Some(enc) = encoder.as_mut() {
                        enc.set_target_bps(rates.bps).map_err(|e| e.to_string())?;
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok(()),
            }
        }
        if pace.now() - last_layout_check >= LAYOUT_CHECK {
            last_layout_check = pace.now();
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
                H264Encoder::with_settings(
                    selected.width,
                    selected.height,
                    frame_rate,
                    settings(selected.width, selected.height),
                )
                .map_err(|e| e.to_string())?,
            );
            if let Ok(mut c) = current.lock() {
                *c = Some(selected.clone());
            }
            send(video_config(&selected, frame_rate))?;
            keyframe = true;
            frame = Frame::empty();
            unsent_change = false;
            // A new monitor or a rate the technician chose: adaptation starts from the top.
            adapter.reset(
                frame_rate,
                settings(selected.width, selected.height)
                    .target_bps
                    .unwrap_or(u32::MAX),
            );
        }
        let captured_at = pace.now();
        let change = match source.capture_changes(&selected, &mut frame) {
            Ok(c) => c,
            Err(e) => {
                // The layout changed under us: read it again at once, and the whole image after.
                tracing::debug!(error = %e, "capture failed; reading the layout again");
                last_layout_check = pace.now() - LAYOUT_CHECK;
                frame = Frame::empty();
                continue;
            }
        };
        let still = change == Change::Unchanged;
        if !still {
            last_change = Some(captured_at);
        }
        let mut sent = false;
        let due = last_sent.is_none_or(|t: Instant| pace.now() - t >= STILL_FRAME_EVERY);
        if !still || keyframe || due || unsent_change {
            let Some(enc) = encoder.as_mut() else {
                continue;
            };
            let rows = change.rows(frame.height).or(Some((0, 0)));
            // `None`: the bucket dropped this frame (over budget); nothing to send, and a keyframe
            // owed stays owed, as does the change: the picture goes as soon as the budget allows,
            // not at the next still frame.
            let encoded = enc
                .encode_bgra_at(&frame, rows, keyframe, pace.now())
                .map_err(|e| e.to_string())?;
            unsent_change = encoded.is_none() && (unsent_change || !still);
            if let Some(encoded) = encoded {
                keyframe &= !encoded.keyframe;
                let timestamp_us =
                    u64::try_from((pace.now() - started).as_micros()).unwrap_or(u64::MAX);
                newest_sent_us = timestamp_us;
                if sent_times.len() == SENT_KEPT {
                    sent_times.pop_front();
                }
                sent_times.push_back(timestamp_us);
                send(Message::VideoFrame(VideoFrame {
                    keyframe: encoded.keyframe,
                    timestamp_us,
                    payload: Bytes::from(encoded.data),
                }))?;
                last_sent = Some(pace.now());
                sent_captured = Some(captured_at);
                sent = true;
            }
        }
        // Pace to the frame rate; when behind, skip ahead rather than burst.
        adapter.on_tick(pace.now());
        // The adapted rate paces the loop; the stream's announced rate stays the technician's.
        let interval = Duration::from_secs(1) / u32::from(adapter.rates().fps.max(1));
        let changing = last_change.is_some_and(|t| pace.now() - t < LIVE);
        next_tick = match (sent, sent_captured) {
            // One interval after the capture of the frame just sent.
            (true, _) => captured_at + interval,
            // Nothing new on a changing screen: look again soon, but never sooner than an
            // interval after the last frame sent.
            (false, Some(last)) if changing && still && !unsent_change => {
                (captured_at + interval / 4).max(last + interval)
            }
            _ => next_tick + interval,
        };
        let now = pace.now();
        if next_tick > now {
            pace.sleep(next_tick - now);
        } else {
            next_tick = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::{CaptureError, Rect};

    /// A 64x48 screen that changes a band of rows on every capture, or never after the first, or
    /// on a clock of its own (`drawn`).
    struct Fake {
        changing: bool,
        captures: Arc<Mutex<(u32, u32)>>,
        n: u8,
        drawn: Option<Drawn>,
    }

    /// Changes drawn every `period` from the first capture, as an application draws: change `k`
    /// at `k` periods, 1.5 ms early when `k` is even and 1.5 ms late when it is odd (the drawing
    /// clock's jitter). `done` counts those that happened by the last capture.
    struct Drawn {
        period: Duration,
        first: Option<Instant>,
        done: u32,
        clock: Arc<Mutex<Instant>>,
    }

    impl Drawn {
        /// How many changes happened by now (the change at 0 is the first capture's picture).
        fn happened(&mut self) -> u32 {
            let now = *self.clock.lock().unwrap_or_else(|e| e.into_inner());
            let first = *self.first.get_or_insert(now);
            let jitter = Duration::from_micros(1500);
            while {
                let k = self.done + 1;
                let nominal = first + self.period * k;
                let at = if k % 2 == 0 {
                    nominal - jitter
                } else {
                    nominal + jitter
                };
                at <= now
            } {
                self.done += 1;
            }
            self.done
        }
    }

    fn monitor() -> Monitor {
        Monitor {
            id: 0,
            key: "fake".into(),
            name: "Fake".into(),
            x: 0,
            y: 0,
            width: 64,
            height: 48,
            primary: true,
        }
    }

    impl ScreenSource for Fake {
        fn monitors(&mut self) -> Result<Vec<Monitor>, CaptureError> {
            Ok(vec![monitor()])
        }
        fn capture(&mut self, _: &Monitor) -> Result<Frame, CaptureError> {
            Ok(Frame {
                width: 64,
                height: 48,
                stride: 256,
                bgra: vec![self.n; 64 * 48 * 4],
            })
        }
        fn capture_changes(
            &mut self,
            m: &Monitor,
            frame: &mut Frame,
        ) -> Result<Change, CaptureError> {
            let captures = self.captures.clone();
            let mut c = captures.lock().unwrap_or_else(|e| e.into_inner());
            if frame.bgra.is_empty() {
                c.0 += 1;
                if let Some(d) = self.drawn.as_mut() {
                    d.happened();
                }
                *frame = self.capture(m)?;
                return Ok(Change::Whole);
            }
            if let Some(d) = self.drawn.as_mut() {
                let before = d.done;
                let now = d.happened();
                c.1 += now - before;
                if now == before {
                    return Ok(Change::Unchanged);
                }
            } else if !self.changing {
                return Ok(Change::Unchanged);
            } else {
                c.1 += 1;
            }
            self.n = self.n.wrapping_add(40);
            frame.bgra[256 * 10..256 * 14].fill(self.n);
            Ok(Change::Regions(vec![Rect {
                x: 0,
                y: 10,
                width: 64,
                height: 4,
            }]))
        }
    }

    /// Runs the loop on `fake` at 30 fps for `for_`; returns the frames it sent, the whole captures
    /// and the changes.
    fn frames_sent(changing: bool, for_: Duration) -> (Vec<VideoFrame>, (u32, u32)) {
        run_on(changing, None, for_)
    }

    /// The loop's clock in these tests: a wait moves its time on at once (nothing here depends on
    /// how busy the machine is), and once `until` has passed it ends the loop (it drops the
    /// commands' sender, as a session's end does).
    struct VirtualPace {
        now: Arc<Mutex<Instant>>,
        until: Instant,
        commands: Option<std::sync::mpsc::Sender<StreamCommand>>,
    }

    impl Pace for VirtualPace {
        fn now(&self) -> Instant {
            *self.now.lock().unwrap_or_else(|e| e.into_inner())
        }
        fn sleep(&mut self, d: Duration) {
            let mut now = self.now.lock().unwrap_or_else(|e| e.into_inner());
            *now += d;
            if *now >= self.until {
                self.commands = None;
            }
        }
    }

    fn run_on(
        changing: bool,
        drawn_every: Option<Duration>,
        for_: Duration,
    ) -> (Vec<VideoFrame>, (u32, u32)) {
        let captures = Arc::new(Mutex::new((0, 0)));
        let clock = Arc::new(Mutex::new(Instant::now()));
        let fake = Fake {
            changing,
            captures: captures.clone(),
            n: 0,
            drawn: drawn_every.map(|period| Drawn {
                period,
                first: None,
                done: 0,
                clock: clock.clone(),
            }),
        };
        let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
        let (tx, mut rx) = tokio::sync::mpsc::channel(64);
        let view = protocol::ViewRequest {
            monitor_id: None,
            frame_rate: Some(30),
        };
        let until = *clock.lock().unwrap_or_else(|e| e.into_inner()) + for_;
        let mut pace = VirtualPace {
            now: clock,
            until,
            commands: Some(cmd_tx),
        };
        let run = std::thread::spawn(move || {
            run_paced(
                Box::new(fake),
                (cmd_rx, tx),
                CurrentMonitor::default(),
                (view, 30),
                EncoderSettings::streamer,
                &mut pace,
            )
        });
        let collect = std::thread::spawn(move || {
            let mut frames = Vec::new();
            while let Some(m) = rx.blocking_recv() {
                if let Message::VideoFrame(f) = m {
                    frames.push(f);
                }
            }
            frames
        });
        assert_eq!(run.join().ok(), Some(Ok(())));
        let frames = collect.join().unwrap_or_default();
        let c = *captures.lock().unwrap_or_else(|e| e.into_inner());
        (frames, c)
    }

    #[test]
    fn a_still_screen_sends_a_frame_about_once_a_second_and_a_changing_one_every_tick() {
        let span = Duration::from_millis(2500);
        let (still, (whole, _)) = frames_sent(false, span);
        assert_eq!(whole, 1, "one whole capture, then only change reports");
        assert!(still[0].keyframe);
        // About 0, 0.9 and 1.8 s (the first tick at least 0.9 s after the last frame): never 30 a
        // second.
        assert!(still.len() == 3, "{} frames of a still screen", still.len());
        for pair in still.windows(2) {
            let gap = pair[1].timestamp_us - pair[0].timestamp_us;
            assert!(
                (850_000..=1_000_000).contains(&gap),
                "a still screen's frames {gap} µs apart"
            );
        }
        let (changing, (_, changes)) = frames_sent(true, span);
        assert!(
            changing.len() > 5 * still.len() && changing.len() as u32 <= changes + 1,
            "{} frames for {changes} changes",
            changing.len()
        );
    }

    #[test]
    fn content_drawn_at_the_frame_rate_goes_out_a_frame_per_change() {
        // Drawn at 30 a second with a little jitter either side of the loop's own ticks: a loop
        // on a fixed grid sees two changes at one tick and none at the next about half the time.
        let (frames, (_, changes)) = run_on(
            false,
            Some(Duration::from_secs(1) / 30),
            Duration::from_millis(3000),
        );
        assert!(changes >= 60, "{changes} changes drawn in 3 s");
        // The first frame is the whole screen; each later one carries the changes since.
        let later = frames.len().saturating_sub(1) as u32;
        assert!(
            later * 100 >= changes * 90,
            "{later} frames for {changes} changes drawn"
        );
        // And never faster than the frame rate (33,333 µs at 30 a second).
        for pair in frames.windows(2) {
            let gap = pair[1].timestamp_us - pair[0].timestamp_us;
            assert!(gap >= 33_333, "frames {gap} µs apart at 30 fps");
        }
    }
}
