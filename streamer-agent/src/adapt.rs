//! Fitting the stream to the link: from the technician's `ReceiverReport`s (about one a second), the
//! frame rate and the bitrate the capture loop uses, within the technician's chosen frame rate and
//! the encoder's target. These changes are not the technician's: they start no recording file and
//! send no `VideoConfig` (docs/PROTOCOL.md, "Adaptation").
//!
//! The rules, anchored on RustDesk's `video_qos` (frame rate up by small steps under 50 ms of delay,
//! divided by delay/150 above 150 ms, 2 fps after 2 s without an answer; bitrate up by 10 % while all
//! is well and down by 20 % when not):
//! - *in flight*: the frames the streamer sent after the newest the technician had;
//! - the **delay** of a report: with at least two in flight, the larger of the video in flight (the
//!   newest frame the streamer sent minus the newest the technician had, in capture time) and the
//!   technician's own queueing estimate (`queue_delay_ms`); with at most one, the estimate alone
//!   (the time since the one frame was sent is the gap between two frames, not a queue);
//! - the link **keeps up** when the delay is under [`GOOD_MS`], or when at most one frame is in
//!   flight and the delay is at most [`BAD_MS`]: then frame rate up by a tenth of the chosen rate
//!   (at least 1), bitrate × 1.1, each up to its ceiling. (With only "under 50 ms", a link on which
//!   each frame takes longer than that to cross by itself never climbed: measured, 1080p noise on a
//!   4 Mbit/s link stayed at 2 fps for a minute with a 145 ms delay and nothing queued.)
//! - the link **falls behind** when the delay is over [`BAD_MS`] with at least two frames in
//!   flight: frame rate × `BAD_MS` / delay (at least [`MIN_FPS`]), bitrate × 0.8 (at least
//!   [`MIN_BPS`]). A delay with at most one frame in flight is one large frame crossing the link,
//!   not a queue: less would not make it shorter, so nothing changes (measured: cutting on it took a
//!   4 Mbit/s link carrying 1080p noise down to a frame every 10 s);
//! - otherwise: nothing changes;
//! - no report for [`SILENCE`] after an earlier one: [`MIN_FPS`] until one comes. A technician that
//!   never reports (a client older than reports) is never adapted to.

use std::time::{Duration, Instant};

use protocol::ReceiverReport;

/// Below this delay the link keeps up: rates go up.
pub const GOOD_MS: u64 = 50;
/// Above this delay the link falls behind: rates go down.
pub const BAD_MS: u64 = 150;
/// The frame rate never adapts below this.
pub const MIN_FPS: u16 = 2;
/// The bitrate never adapts below this.
pub const MIN_BPS: u32 = 250_000;
/// Without a report for this long (while frames are sent), the rate falls to [`MIN_FPS`].
pub const SILENCE: Duration = Duration::from_secs(2);

/// The frame rate and bitrate the loop should use now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rates {
    /// Frames a second, 1 to the chosen rate.
    pub fps: u16,
    /// Bits a second for the encoder's rate control and bucket.
    pub bps: u32,
}

/// The adaptation state of one stream.
#[derive(Debug)]
pub struct Adapter {
    chosen_fps: u16,
    max_bps: u32,
    fps: u16,
    bps: u32,
    last_report: Option<Instant>,
    silent: bool,
}

impl Adapter {
    /// Full rates: the technician's `chosen_fps` and the encoder's `max_bps`.
    pub fn new(chosen_fps: u16, max_bps: u32) -> Self {
        Self {
            chosen_fps: chosen_fps.max(1),
            max_bps: max_bps.max(MIN_BPS),
            fps: chosen_fps.max(1),
            bps: max_bps.max(MIN_BPS),
            last_report: None,
            silent: false,
        }
    }

    /// The rates now.
    pub fn rates(&self) -> Rates {
        Rates {
            fps: if self.silent {
                self.fps.min(MIN_FPS)
            } else {
                self.fps
            },
            bps: self.bps,
        }
    }

    /// A new choice of the technician's, or a new encoder: rates start again from the top.
    pub fn reset(&mut self, chosen_fps: u16, max_bps: u32) {
        let last = self.last_report;
        *self = Self::new(chosen_fps, max_bps);
        self.last_report = last;
    }

    /// A report arrived; `newest_sent_us` is the timestamp of the newest frame sent so far, and
    /// `in_flight` how many frames were sent after the one the report names as its newest. Returns
    /// the delay it measured, in milliseconds.
    pub fn on_report(
        &mut self,
        report: &ReceiverReport,
        newest_sent_us: u64,
        in_flight: usize,
        now: Instant,
    ) -> u64 {
        self.last_report = Some(now);
        self.silent = false;
        let queue_ms = u64::from(report.queue_delay_ms);
        let queued = in_flight >= 2;
        let delay = if queued {
            let in_flight_ms = newest_sent_us.saturating_sub(report.newest_timestamp_us) / 1000;
            in_flight_ms.max(queue_ms)
        } else {
            queue_ms
        };
        if delay < GOOD_MS || (!queued && delay <= BAD_MS) {
            let step = (self.chosen_fps / 10).max(1);
            self.fps = self.fps.saturating_add(step).min(self.chosen_fps);
            self.bps = ((f64::from(self.bps) * 1.1) as u32).min(self.max_bps);
        } else if delay > BAD_MS && queued {
            let scaled = u64::from(self.fps) * BAD_MS / delay;
            self.fps = u16::try_from(scaled)
                .unwrap_or(u16::MAX)
                .clamp(MIN_FPS.min(self.chosen_fps), self.chosen_fps);
            self.bps = ((f64::from(self.bps) * 0.8) as u32).max(MIN_BPS.min(self.max_bps));
        }
        delay
    }

    /// Called each tick: no report for [`SILENCE`] since the last one holds the rate at
    /// [`MIN_FPS`] until one comes.
    pub fn on_tick(&mut self, now: Instant) {
        self.silent = self
            .last_report
            .is_some_and(|at| now.duration_since(at) > SILENCE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(newest_timestamp_us: u64, queue_delay_ms: u16) -> ReceiverReport {
        ReceiverReport {
            newest_timestamp_us,
            frames: 30,
            queue_delay_ms,
        }
    }

    #[test]
    fn a_link_that_keeps_up_keeps_full_rates() {
        let t = Instant::now();
        let mut a = Adapter::new(30, 4_000_000);
        for s in 1..=10u64 {
            let now = t + Duration::from_secs(s);
            // The technician has the frame sent 20 ms before the newest.
            assert_eq!(
                a.on_report(&report(s * 1_000_000, 5), s * 1_000_000 + 20_000, 5, now),
                20
            );
            a.on_tick(now);
        }
        assert_eq!(
            a.rates(),
            Rates {
                fps: 30,
                bps: 4_000_000
            }
        );
    }

    #[test]
    fn delay_divides_the_frame_rate_and_cuts_the_bitrate_and_recovery_climbs_back() {
        let t = Instant::now();
        let mut a = Adapter::new(30, 4_000_000);
        // 600 ms of video in flight: 30 × 150 / 600 = 7 fps, bitrate × 0.8.
        assert_eq!(a.on_report(&report(1_000_000, 0), 1_600_000, 5, t), 600);
        assert_eq!(
            a.rates(),
            Rates {
                fps: 7,
                bps: 3_200_000
            }
        );
        // The technician's own queueing estimate counts too: 300 ms.
        a.on_report(&report(2_000_000, 300), 2_000_000, 5, t);
        assert_eq!(
            a.rates(),
            Rates {
                fps: 3,
                bps: 2_560_000
            }
        );
        // Far behind: never below the floors.
        for _ in 0..30 {
            a.on_report(&report(0, 5000), 9_000_000, 5, t);
        }
        assert_eq!(
            a.rates(),
            Rates {
                fps: MIN_FPS,
                bps: MIN_BPS
            }
        );
        // One large frame crossing the link (at most one in flight) is not a queue: held.
        let mut big = Adapter::new(30, 4_000_000);
        big.on_report(&report(0, 600), 600_000, 1, t);
        assert_eq!(
            big.rates(),
            Rates {
                fps: 30,
                bps: 4_000_000
            }
        );
        // Between 50 and 150 ms: held.
        a.on_report(&report(1_000_000, 100), 1_000_000, 5, t);
        assert_eq!(
            a.rates(),
            Rates {
                fps: MIN_FPS,
                bps: MIN_BPS
            }
        );
        // A frame at a time crossing in 100 ms, nothing queued behind it: the link keeps up.
        let mut one = a_floor();
        one.on_report(&report(1_000_000, 100), 1_500_000, 1, t);
        assert_eq!(
            one.rates(),
            Rates {
                fps: MIN_FPS + 3,
                bps: (f64::from(MIN_BPS) * 1.1) as u32
            }
        );
        // The same 100 ms with frames queued behind it: held.
        let mut queued = a_floor();
        queued.on_report(&report(1_000_000, 100), 1_060_000, 2, t);
        assert_eq!(queued.rates(), a_floor().rates());
        // Good again: +3 fps and +10 % a report, up to the ceilings.
        a.on_report(&report(1_000_000, 0), 1_000_000, 5, t);
        assert_eq!(a.rates().fps, MIN_FPS + 3);
        for _ in 0..40 {
            a.on_report(&report(1_000_000, 0), 1_000_000, 5, t);
        }
        assert_eq!(
            a.rates(),
            Rates {
                fps: 30,
                bps: 4_000_000
            }
        );
    }

    /// An adapter cut down to the floors.
    fn a_floor() -> Adapter {
        let mut a = Adapter::new(30, 4_000_000);
        for _ in 0..30 {
            a.on_report(&report(0, 5000), 9_000_000, 5, Instant::now());
        }
        a
    }

    #[test]
    fn silence_after_a_report_holds_the_rate_at_the_floor_until_the_next() {
        let t = Instant::now();
        let mut a = Adapter::new(30, 4_000_000);
        a.on_tick(t + Duration::from_secs(60));
        assert_eq!(
            a.rates().fps,
            30,
            "a technician that never reports is not adapted to"
        );
        a.on_report(&report(0, 0), 0, 5, t);
        a.on_tick(t + Duration::from_millis(1900));
        assert_eq!(a.rates().fps, 30);
        a.on_tick(t + Duration::from_millis(2100));
        assert_eq!(a.rates().fps, MIN_FPS);
        a.on_report(&report(0, 0), 0, 5, t + Duration::from_millis(2600));
        assert_eq!(a.rates().fps, 30);
        a.on_tick(t + Duration::from_millis(4700));
        assert_eq!(a.rates().fps, MIN_FPS);
    }

    #[test]
    fn a_new_choice_starts_from_its_own_top() {
        let t = Instant::now();
        let mut a = Adapter::new(30, 4_000_000);
        a.on_report(&report(0, 1000), 1_000_000, 5, t);
        a.reset(10, 2_000_000);
        assert_eq!(
            a.rates(),
            Rates {
                fps: 10,
                bps: 2_000_000
            }
        );
        // A chosen rate under the floor is kept.
        let mut slow = Adapter::new(1, 4_000_000);
        slow.on_report(&report(0, 1000), 1_000_000, 5, t);
        assert_eq!(slow.rates().fps, 1);
    }
}
