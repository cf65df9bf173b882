//! Per-connection rate limits: a token bucket that refills at a steady rate up to a burst.
//!
//! Every message an agent connection sends (WebSocket pings included) takes a token from its
//! connection's message bucket; requests the relay answers itself (device lists, session requests)
//! also take one from a much smaller request bucket. An empty bucket is a flood: the connection is
//! refused with `RATE_LIMITED` and closed. The rates are far above what the streamer and the app send
//! (video at 120 frames a second at most, input at the pointer's event rate), so only a flood meets them.

use tokio::time::Instant;

/// A token bucket: `rate` tokens a second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `per_second`, holding twice that (one second of headroom).
    pub fn new(per_second: u32, now: Instant) -> Self {
        let rate = f64::from(per_second.max(1));
        Self {
            rate,
            burst: rate * 2.0,
            tokens: rate * 2.0,
            last: now,
        }
    }

    /// Takes one token at `now`; false when the bucket is empty.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Chat lines a session may carry a minute, each way, once its burst is spent: people type a few
/// lines a minute, and every line is written to the team's audit trail.
pub const CHAT_LINES_PER_MINUTE: u32 = 30;
/// Chat lines one side may send at once before the rate applies.
pub const CHAT_BURST: u32 = 10;
/// The chat text one session may write to the audit trail, both ways together.
pub const CHAT_BYTES_PER_SESSION: usize = 1024 * 1024;

/// What a session may still say in chat: a rate per direction and a byte budget for the session,
/// so that an end user (anyone holding the attended key) cannot flood the team's audit trail.
#[derive(Debug)]
pub struct ChatAllowance {
    from_technician: TokenBucket,
    from_streamer: TokenBucket,
    bytes_left: usize,
}

/// Why a chat line was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatRefused {
    /// Lines come faster than people type.
    TooFast,
    /// The session's chat has reached [`CHAT_BYTES_PER_SESSION`].
    SessionFull,
}

impl ChatAllowance {
    /// A session's allowance, starting at `now`.
    pub fn new(now: Instant) -> Self {
        let bucket = || TokenBucket {
            rate: f64::from(CHAT_LINES_PER_MINUTE) / 60.0,
            burst: f64::from(CHAT_BURST),
            tokens: f64::from(CHAT_BURST),
            last: now,
        };
        Self {
            from_technician: bucket(),
            from_streamer: bucket(),
            bytes_left: CHAT_BYTES_PER_SESSION,
        }
    }

    /// Takes a line of `len` bytes from the technician's side (`technician`) or the other, at `now`.
    pub fn take(&mut self, technician: bool, len: usize, now: Instant) -> Result<(), ChatRefused> {
        if len > self.bytes_left {
            return Err(ChatRefused::SessionFull);
        }
        let bucket = if technician {
            &mut self.from_technician
        } else {
            &mut self.from_streamer
        };
        if !bucket.take(now) {
            return Err(ChatRefused::TooFast);
        }
        self.bytes_left -= len;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn chat_takes_a_burst_then_a_few_lines_a_minute_each_way_within_a_session_budget() {
        let start = Instant::now();
        let mut chat = ChatAllowance::new(start);
        let taken = (0..100)
            .filter(|_| chat.take(false, 10, start).is_ok())
            .count();
        assert_eq!(taken, CHAT_BURST as usize);
        assert_eq!(chat.take(false, 10, start), Err(ChatRefused::TooFast));
        // The other way has its own allowance.
        assert!(chat.take(true, 10, start).is_ok());
        // Two seconds on: one more line (30 a minute).
        let later = start + Duration::from_secs(2);
        assert!(chat.take(false, 10, later).is_ok());
        assert_eq!(chat.take(false, 10, later), Err(ChatRefused::TooFast));
        // The session's bytes run out whatever the rate.
        let mut chat = ChatAllowance::new(start);
        let mut at = start;
        let mut sent = 0;
        while chat.take(true, 2000, at).is_ok() {
            sent += 2000;
            at += Duration::from_secs(60);
        }
        assert!(sent <= CHAT_BYTES_PER_SESSION && sent + 2000 > CHAT_BYTES_PER_SESSION);
        assert_eq!(chat.take(true, 2000, at), Err(ChatRefused::SessionFull));
        assert!(chat.take(true, 10, at).is_ok(), "a short line still fits");
    }

    #[test]
    fn a_burst_of_twice_the_rate_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(100, start);
        let taken = (0..1000).filter(|_| bucket.take(start)).count();
        assert_eq!(taken, 200, "the burst is two seconds' worth");
        // Half a second later, half a second's worth more.
        let later = start + Duration::from_millis(500);
        let taken = (0..1000).filter(|_| bucket.take(later)).count();
        assert_eq!(taken, 50);
        // A sender at the rate is never refused.
        let mut at = later;
        for _ in 0..1000 {
            at += Duration::from_millis(10);
            assert!(bucket.take(at));
        }
        // A long pause refills to the burst, not beyond.
        let idle = at + Duration::from_secs(3600);
        assert_eq!((0..1000).filter(|_| bucket.take(idle)).count(), 200);
    }
}
