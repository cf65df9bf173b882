//! Sign-in throttling against password guessing: after [`MAX_FAILURES`] wrong passwords for one
//! account within [`WINDOW_MS`], signing in to that account is refused, even with the right password,
//! until the oldest of those failures leaves the window. Another account is not affected, and a
//! successful sign-in clears the account's count.
//!
//! Kept in memory, per relay: a fleet behind a load balancer multiplies the allowance by its relays.

use std::collections::HashMap;
use std::sync::Mutex;

/// Wrong passwords allowed for one account in the window.
pub const MAX_FAILURES: usize = 5;
/// The window, in milliseconds: 15 minutes.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Accounts tracked at most; past this, entries with no failure in the window are dropped, and if
/// none can be, the oldest entries are (a flood of made-up addresses cannot grow memory without end).
const MAX_TRACKED: usize = 100_000;

/// Failed sign-ins by account.
#[derive(Debug, Default)]
pub struct SignInThrottle {
    failures: Mutex<HashMap<String, Vec<i64>>>,
}

/// Sign-in to this account is refused for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Seconds until the account may try again.
    pub retry_after_secs: u64,
}

impl Locked {
    /// The refusal in words.
    pub fn message(&self) -> String {
        let minutes = self.retry_after_secs.div_ceil(60).max(1);
        format!(
            "Too many wrong passwords for this account: sign-in is paused. Try again in {minutes} minute{}.",
            if minutes == 1 { "" } else { "s" }
        )
    }
}

fn key(email: &str) -> String {
    email.trim().to_lowercase()
}

impl SignInThrottle {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<i64>>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `email` may try to sign in at `now_ms`.
    pub fn check(&self, email: &str, now_ms: i64) -> Result<(), Locked> {
        let map = self.map();
        let Some(times) = map.get(&key(email)) else {
            return Ok(());
        };
        let recent: Vec<i64> = times
            .iter()
            .copied()
            .filter(|t| now_ms - t < WINDOW_MS)
            .collect();
        if recent.len() < MAX_FAILURES {
            return Ok(());
        }
        // Free again when enough failures have left the window to go under the limit.
        let frees_at = recent[recent.len() - MAX_FAILURES] + WINDOW_MS;
        Err(Locked {
            retry_after_secs: u64::try_from((frees_at - now_ms).max(1_000) / 1_000).unwrap_or(1),
        })
    }

    /// Records a wrong password for `email` at `now_ms`.
    pub fn failed(&self, email: &str, now_ms: i64) {
        let mut map = self.map();
        if map.len() >= MAX_TRACKED {
            map.retain(|_, times| times.iter().any(|t| now_ms - t < WINDOW_MS));
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        let times = map.entry(key(email)).or_default();
        times.retain(|t| now_ms - t < WINDOW_MS);
        times.push(now_ms);
    }

    /// A successful sign-in: the account's count starts again.
    pub fn succeeded(&self, email: &str) {
        self.map().remove(&key(email));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_wrong_passwords_pause_the_account_for_the_window() {
        let t = SignInThrottle::default();
        let start = 1_000_000;
        for i in 0..5 {
            assert_eq!(t.check("Ann@Example.com", start + i), Ok(()));
            t.failed("ann@example.com ", start + i);
        }
        let locked = t.check("ann@example.com", start + 10).unwrap_err();
        assert_eq!(locked.retry_after_secs, 899);
        assert!(
            locked.message().contains("15 minutes"),
            "{}",
            locked.message()
        );
        assert_eq!(
            t.check("bob@example.com", start + 10),
            Ok(()),
            "others unaffected"
        );
        // The first failure leaves the window: one more try is allowed.
        assert_eq!(t.check("ann@example.com", start + WINDOW_MS), Ok(()));
        t.failed("ann@example.com", start + WINDOW_MS);
        assert!(t.check("ann@example.com", start + WINDOW_MS).is_err());
        t.succeeded("ann@example.com");
        assert_eq!(t.check("ann@example.com", start + WINDOW_MS + 2), Ok(()));
    }

    #[test]
    fn made_up_addresses_cannot_grow_memory_without_end() {
        let t = SignInThrottle::default();
        for i in 0..(MAX_TRACKED + 10) {
            t.failed(&format!("nobody{i}@example.com"), 1_000);
        }
        assert!(t.map().len() <= MAX_TRACKED);
    }
}
