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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
