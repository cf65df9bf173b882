//! Throttling of guesses. A [`FailureThrottle`] counts failures per key in a sliding window; at the
//! limit the key is paused, even for a right answer, until the oldest of those failures leaves the
//! window.
//!
//! - Sign-in ([`SignInThrottle`]): 5 wrong passwords for one account in 15 minutes pause that
//!   account, and 50 from one client address pause that address (credential stuffing across many
//!   accounts). A successful sign-in clears the account's count, never the address's. The caller
//!   names the account (its id once the address resolves to one, so that every spelling the
//!   database takes for one address shares one count); wrong current passwords in a password
//!   change count as wrong passwords. An IPv6 client counts as its /64 (one subscriber's network,
//!   which holds 2^64 addresses); an IPv4-mapped IPv6 address as the IPv4 address.
//! - Session codes ([`CodeThrottle`]): 10 wrong codes from one technician in 15 minutes pause their
//!   code entry, and 50 across one team pause the team's (many accounts cannot multiply the
//!   guesses). A code that works clears the technician's count.
//!
//! Kept in memory by a relay that runs alone; in a fleet, in the shared database
//! (`throttle_failures`), so that the allowance holds fleet-wide, whichever relay each try reaches.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::store::Store;

/// Wrong passwords allowed for one account in the window.
pub const MAX_FAILURES: usize = 5;
/// Wrong passwords allowed from one client address in the window, whatever the accounts.
pub const MAX_ADDRESS_FAILURES: usize = 50;
/// Wrong session codes allowed from one technician in the window.
pub const MAX_CODE_FAILURES: usize = 10;
/// Wrong session codes allowed across one team in the window.
pub const MAX_TEAM_CODE_FAILURES: usize = 50;
/// The window, in milliseconds: 15 minutes.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;
/// Keys tracked at most per throttle; past this, keys with no failure in the window are dropped, and
/// if none can be, all are (a flood of made-up keys cannot grow memory without end).
const MAX_TRACKED: usize = 100_000;

/// Failures by key, at most `max_failures` in `WINDOW_MS`.
#[derive(Debug)]
pub struct FailureThrottle {
    max_failures: usize,
    failures: Mutex<HashMap<String, Vec<i64>>>,
    /// In a fleet: the shared database, and this throttle's name in it.
    shared: Option<(Store, &'static str)>,
}

/// Tries are refused for now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Locked {
    /// Seconds until a try is allowed again.
    pub retry_after_secs: u64,
}

impl Locked {
    /// "N minute(s)", rounded up, at least one.
    pub fn wait(&self) -> String {
        let minutes = self.retry_after_secs.div_ceil(60).max(1);
        format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
    }
}

fn key(k: &str) -> String {
    k.trim().to_lowercase()
}

impl FailureThrottle {
    /// A throttle allowing `max_failures` per key in the window.
    pub fn new(max_failures: usize) -> Self {
        Self {
            max_failures,
            failures: Mutex::default(),
            shared: None,
        }
    }

    /// This throttle kept in `store` under `scope` (a fleet's relays share it).
    pub fn in_database(mut self, store: Store, scope: &'static str) -> Self {
        self.shared = Some((store, scope));
        self
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<i64>>> {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether `k` may try at `now_ms`. (A database that cannot be read lets the try go on, as
    /// one relay's restart would: the try itself needs the database.)
    pub async fn check(&self, k: &str, now_ms: i64) -> Result<(), Locked> {
        let recent: Vec<i64> = match &self.shared {
            Some((store, scope)) => {
                match store
                    .throttle_failures(scope, &key(k), now_ms - WINDOW_MS + 1)
                    .await
                {
                    Ok(times) => times,
                    Err(e) => {
                        tracing::error!(error = %e, scope, "reading a throttle");
                        return Ok(());
                    }
                }
            }
            None => match self.map().get(&key(k)) {
                Some(times) => times
                    .iter()
                    .copied()
                    .filter(|t| now_ms - t < WINDOW_MS)
                    .collect(),
                None => return Ok(()),
            },
        };
        if recent.len() < self.max_failures {
            return Ok(());
        }
        // Free again when enough failures have left the window to go under the limit.
        let frees_at = recent[recent.len() - self.max_failures] + WINDOW_MS;
        Err(Locked {
            retry_after_secs: u64::try_from((frees_at - now_ms).max(1_000) / 1_000).unwrap_or(1),
        })
    }

    /// Records a failure for `k` at `now_ms`.
    pub async fn failed(&self, k: &str, now_ms: i64) {
        if let Some((store, scope)) = &self.shared {
            if let Err(e) = store
                .throttle_failed(scope, &key(k), now_ms, now_ms - WINDOW_MS)
                .await
            {
                tracing::error!(error = %e, scope, "recording a failure in a throttle");
            }
            return;
        }
        let mut map = self.map();
        if map.len() >= MAX_TRACKED {
            map.retain(|_, times| times.iter().any(|t| now_ms - t < WINDOW_MS));
            if map.len() >= MAX_TRACKED {
                map.clear();
            }
        }
        let times = map.entry(key(k)).or_default();
        times.retain(|t| now_ms - t < WINDOW_MS);
        times.push(now_ms);
        // Only the newest `max_failures` decide; older ones need not be kept.
        if times.len() > self.max_failures {
            let extra = times.len() - self.max_failures;
            times.drain(..extra);
        }
    }

    /// A success: `k`'s count starts again.
    pub async fn succeeded(&self, k: &str) {
        if let Some((store, scope)) = &self.shared {
            if let Err(e) = store.throttle_cleared(scope, &key(k)).await {
                tracing::error!(error = %e, scope, "clearing a throttle");
            }
            return;
        }
        self.map().remove(&key(k));
    }
}

/// Sign-in throttling by account and by client address.
#[derive(Debug)]
pub struct SignInThrottle {
    accounts: FailureThrottle,
    /// None when the operator turned the per-address limit off (a balancer in front that hides
    /// client addresses would make every client one address).
    addresses: Option<FailureThrottle>,
}

impl Default for SignInThrottle {
    fn default() -> Self {
        Self::new(MAX_ADDRESS_FAILURES)
    }
}

impl SignInThrottle {
    /// Per-account limit [`MAX_FAILURES`]; per-address `address_failures`, 0 for none.
    pub fn new(address_failures: usize) -> Self {
        Self {
            accounts: FailureThrottle::new(MAX_FAILURES),
            addresses: (address_failures > 0).then(|| FailureThrottle::new(address_failures)),
        }
    }

    /// These throttles kept in `store`, shared by a fleet's relays.
    pub fn in_database(self, store: &Store) -> Self {
        Self {
            accounts: self.accounts.in_database(store.clone(), "sign_in_account"),
            addresses: self
                .addresses
                .map(|a| a.in_database(store.clone(), "sign_in_address")),
        }
    }

    /// Whether `account` may try a password from `address` at `now_ms`; the refusal in words if not.
    pub async fn check(
        &self,
        account: &str,
        address: Option<IpAddr>,
        now_ms: i64,
    ) -> Result<(), String> {
        if let (Some(a), Some(addresses)) = (address, &self.addresses) {
            addresses.check(&network_key(a), now_ms).await.map_err(|l| {
                format!(
                    "Too many wrong passwords from your network: sign-in from it is paused. Try again in {}.",
                    l.wait()
                )
            })?;
        }
        self.accounts.check(account, now_ms).await.map_err(|l| {
            format!(
                "Too many wrong passwords for this account: sign-in is paused. Try again in {}.",
                l.wait()
            )
        })
    }

    /// Records a wrong password for `account` from `address` at `now_ms`.
    pub async fn failed(&self, account: &str, address: Option<IpAddr>, now_ms: i64) {
        self.accounts.failed(account, now_ms).await;
        if let (Some(a), Some(addresses)) = (address, &self.addresses) {
            addresses.failed(&network_key(a), now_ms).await;
        }
    }

    /// A successful sign-in: the account's count starts again (the address's does not: one good
    /// account must not reset the count of guesses at others).
    pub async fn succeeded(&self, account: &str) {
        self.accounts.succeeded(account).await;
    }
}

/// The client network an address counts as: an IPv4 address itself (also when written as
/// IPv4-mapped IPv6), an IPv6 address its /64.
pub fn network_key(address: IpAddr) -> String {
    match address {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                let net = std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0);
                format!("{net}/64")
            }
        },
    }
}

/// Session-code throttling by technician and by team.
#[derive(Debug)]
pub struct CodeThrottle {
    users: FailureThrottle,
    teams: FailureThrottle,
}

impl Default for CodeThrottle {
    fn default() -> Self {
        Self {
            users: FailureThrottle::new(MAX_CODE_FAILURES),
            teams: FailureThrottle::new(MAX_TEAM_CODE_FAILURES),
        }
    }
}

impl CodeThrottle {
    /// These throttles kept in `store`, shared by a fleet's relays.
    pub fn in_database(self, store: &Store) -> Self {
        Self {
            users: self.users.in_database(store.clone(), "code_user"),
            teams: self.teams.in_database(store.clone(), "code_team"),
        }
    }

    /// Whether technician `user` of `team` may enter a code at `now_ms`; the refusal in words if not.
    pub async fn check(&self, user: &str, team: &str, now_ms: i64) -> Result<(), String> {
        let paused = |whose: &str, l: Locked| {
            format!(
                "Too many wrong session codes {whose}: entering codes is paused. Try again in {}, or connect to a computer from your device list.",
                l.wait()
            )
        };
        self.users
            .check(user, now_ms)
            .await
            .map_err(|l| paused("from you", l))?;
        self.teams
            .check(team, now_ms)
            .await
            .map_err(|l| paused("in your team", l))
    }

    /// Records a wrong code.
    pub async fn failed(&self, user: &str, team: &str, now_ms: i64) {
        self.users.failed(user, now_ms).await;
        self.teams.failed(team, now_ms).await;
    }

    /// A code that worked: the technician's count starts again (not the team's).
    pub async fn succeeded(&self, user: &str) {
        self.users.succeeded(user).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_counts_as_its_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff:1:2:3".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network_key(a), "2001:db8:1:2::/64");
        assert_eq!(network_key(a), network_key(b));
        assert_ne!(network_key(a), network_key(other));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(network_key(mapped), "192.0.2.7");
    }

    #[tokio::test]
    async fn a_64_guessing_from_many_addresses_is_paused_as_one() {
        let t = SignInThrottle::new(3);
        for i in 0..3u16 {
            let a = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 7, 7, i, i, i, i));
            assert!(t.check(&format!("user:{i}"), Some(a), 1).await.is_ok());
            t.failed(&format!("user:{i}"), Some(a), 1).await;
        }
        let fresh = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 7, 7, 9, 9, 9, 9));
        let refused = t.check("user:new", Some(fresh), 2).await.unwrap_err();
        assert!(refused.contains("your network"), "{refused}");
    }

    #[tokio::test]
    async fn five_wrong_passwords_pause_the_account_for_the_window() {
        let t = SignInThrottle::default();
        let start = 1_000_000;
        for i in 0..5 {
            assert_eq!(t.check("Ann@Example.com", None, start + i).await, Ok(()));
            t.failed("ann@example.com ", None, start + i).await;
        }
        let locked = t
            .accounts
            .check("ann@example.com", start + 10)
            .await
            .unwrap_err();
        assert_eq!(locked.retry_after_secs, 899);
        let message = t
            .check("ann@example.com", None, start + 10)
            .await
            .unwrap_err();
        assert!(message.contains("15 minutes"), "{message}");
        assert_eq!(
            t.check("bob@example.com", None, start + 10).await,
            Ok(()),
            "others unaffected"
        );
        // The first failure leaves the window: one more try is allowed.
        assert_eq!(
            t.check("ann@example.com", None, start + WINDOW_MS).await,
            Ok(())
        );
        t.failed("ann@example.com", None, start + WINDOW_MS).await;
        assert!(t
            .check("ann@example.com", None, start + WINDOW_MS)
            .await
            .is_err());
        t.succeeded("ann@example.com").await;
        assert_eq!(
            t.check("ann@example.com", None, start + WINDOW_MS + 2)
                .await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn one_address_guessing_across_accounts_is_paused_and_success_does_not_clear_it() {
        let t = SignInThrottle::default();
        let (guesser, other): (IpAddr, IpAddr) = (
            "203.0.113.7".parse().unwrap(),
            "198.51.100.1".parse().unwrap(),
        );
        for i in 0..MAX_ADDRESS_FAILURES {
            let email = format!("user{i}@example.com");
            assert_eq!(t.check(&email, Some(guesser), 1_000).await, Ok(()));
            t.failed(&email, Some(guesser), 1_000).await;
            if i % 4 == 0 {
                // A right password in between does not reset the address's count.
                t.succeeded("own@example.com").await;
            }
        }
        let message = t
            .check("fresh@example.com", Some(guesser), 2_000)
            .await
            .unwrap_err();
        assert!(message.contains("from your network"), "{message}");
        assert_eq!(
            t.check("fresh@example.com", Some(other), 2_000).await,
            Ok(())
        );
        assert_eq!(
            t.check("fresh@example.com", Some(guesser), 1_000 + WINDOW_MS)
                .await,
            Ok(())
        );
    }

    #[tokio::test]
    async fn the_address_limit_can_be_turned_off() {
        let t = SignInThrottle::new(0);
        let address: IpAddr = "203.0.113.7".parse().unwrap();
        for i in 0..(MAX_ADDRESS_FAILURES * 2) {
            t.failed(&format!("user{i}@example.com"), Some(address), 1_000)
                .await;
        }
        assert_eq!(
            t.check("fresh@example.com", Some(address), 2_000).await,
            Ok(())
        );
        // The per-account limit stays.
        for _ in 0..MAX_FAILURES {
            t.failed("ann@example.com", Some(address), 1_000).await;
        }
        assert!(t
            .check("ann@example.com", Some(address), 2_000)
            .await
            .is_err());
    }

    #[tokio::test]
    async fn wrong_codes_pause_the_technician_then_the_team() {
        let t = CodeThrottle::default();
        for i in 0..MAX_CODE_FAILURES {
            assert_eq!(t.check("ann", "acme", i as i64).await, Ok(()));
            t.failed("ann", "acme", i as i64).await;
        }
        let message = t.check("ann", "acme", 100).await.unwrap_err();
        assert!(message.contains("from you"), "{message}");
        assert_eq!(
            t.check("bob", "acme", 100).await,
            Ok(()),
            "a colleague still may"
        );
        // Many technicians of one team cannot multiply the guesses.
        for i in 0..(MAX_TEAM_CODE_FAILURES - MAX_CODE_FAILURES) {
            t.failed(&format!("tech{}", i % 5), "acme", 200).await;
        }
        let message = t.check("bob", "acme", 300).await.unwrap_err();
        assert!(message.contains("in your team"), "{message}");
        assert_eq!(t.check("carol", "other", 300).await, Ok(()));
        t.succeeded("ann").await;
        assert!(
            t.check("ann", "acme", 300).await.is_err(),
            "the team is still paused"
        );
    }

    #[tokio::test]
    async fn made_up_keys_cannot_grow_memory_without_end() {
        let t = FailureThrottle::new(MAX_FAILURES);
        for i in 0..(MAX_TRACKED + 10) {
            t.failed(&format!("nobody{i}@example.com"), 1_000).await;
        }
        assert!(t.map().len() <= MAX_TRACKED);
        // A single key keeps only what decides.
        for i in 0..1_000 {
            t.failed("busy", 2_000 + i).await;
        }
        assert_eq!(t.map()["busy"].len(), MAX_FAILURES);
    }

    #[tokio::test]
    async fn in_the_database_two_relays_share_one_allowance() {
        let dir = tempfile::tempdir().unwrap();
        let clock: crate::clock::SharedClock = std::sync::Arc::new(crate::SystemClock);
        let url = crate::test_engines::database_url_or_default(dir.path());
        let store = Store::open(&url, clock).await.unwrap();
        let (a, b) = (
            CodeThrottle::default().in_database(&store),
            CodeThrottle::default().in_database(&store),
        );
        // Five wrong codes through each relay: the technician's ten.
        for i in 0..MAX_CODE_FAILURES {
            let relay = if i % 2 == 0 { &a } else { &b };
            assert_eq!(relay.check("ann", "acme", 1_000).await, Ok(()));
            relay.failed("ann", "acme", 1_000).await;
        }
        assert!(a.check("ann", "acme", 2_000).await.is_err());
        assert!(b.check("ann", "acme", 2_000).await.is_err());
        assert_eq!(b.check("ann", "acme", 1_000 + WINDOW_MS).await, Ok(()));
        b.succeeded("ann").await;
        assert_eq!(a.check("ann", "acme", 2_000).await, Ok(()));
        let s = SignInThrottle::default().in_database(&store);
        for _ in 0..MAX_FAILURES {
            s.failed("Ann@Example.com", None, 1_000).await;
        }
        let other = SignInThrottle::default().in_database(&store);
        assert!(other.check("ann@example.com", None, 2_000).await.is_err());
        store.close().await;
    }
}
