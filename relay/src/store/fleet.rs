//! What a fleet of relays shares through the database: the relays alive (their heartbeats and the
//! address their peers dial), which relay holds each device's streamer, and live session codes.
//!
//! A relay counts as alive while its heartbeat is newer than the expiry its peers use; rows of a
//! relay that stopped beating are ignored at once and removed by the first peer that claims it.

use std::collections::HashMap;

use sqlx::Row;

use super::{flag, Store, StoreError};

/// Where a device's streamer is connected, fleet-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    /// The relay holding the connection.
    pub relay_id: String,
    /// The address its peers dial (`host:port`).
    pub peer_address: String,
    /// Whether the device is in a session or has one on offer.
    pub busy: bool,
}

/// A live session code's streamer, fleet-wide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeHolder {
    /// The relay holding the attended streamer's connection.
    pub relay_id: String,
    /// The address its peers dial.
    pub peer_address: String,
}

impl Store {
    /// Records that relay `relay_id` is alive now and reachable by its peers at `peer_address`.
    /// True when its row had to be made again: it is new to the fleet, or its peers took it for
    /// dead (the database was out of its reach longer than the expiry) and removed what it held.
    pub async fn heartbeat(&self, relay_id: &str, peer_address: &str) -> Result<bool, StoreError> {
        let now = self.now();
        let beat =
            sqlx::query("UPDATE relays SET peer_address = $1, heartbeat_at = $2 WHERE id = $3")
                .bind(peer_address)
                .bind(now)
                .bind(relay_id)
                .execute(&self.pool)
                .await?;
        if beat.rows_affected() == 1 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO relays (id, peer_address, started_at, heartbeat_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO UPDATE SET peer_address = excluded.peer_address, \
             heartbeat_at = excluded.heartbeat_at",
        )
        .bind(relay_id)
        .bind(peer_address)
        .bind(now)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(true)
    }

    /// Relays whose last heartbeat is older than `before_ms`.
    pub async fn silent_relays(&self, before_ms: i64) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM relays WHERE heartbeat_at < $1 ORDER BY id")
            .bind(before_ms)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("id").map_err(StoreError::from))
            .collect()
    }

    /// Takes a silent relay off the fleet: true for exactly one caller (the one whose delete
    /// removed its row), which then closes what it left.
    pub async fn claim_silent_relay(
        &self,
        relay_id: &str,
        before_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM relays WHERE id = $1 AND heartbeat_at < $2")
            .bind(relay_id)
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes relay `relay_id` from the fleet with its presence and session codes (its clean
    /// stop, or a peer's cleanup after it died); returns how many devices it held.
    pub async fn leave_fleet(&self, relay_id: &str) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM relays WHERE id = $1")
            .bind(relay_id)
            .execute(&mut *tx)
            .await?;
        let held = sqlx::query("DELETE FROM presence WHERE relay_id = $1")
            .bind(relay_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM session_codes WHERE relay_id = $1")
            .bind(relay_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(held)
    }

    /// Records that `device_id`'s streamer is connected to `relay_id` as connection `conn_id`
    /// (replacing where it was before).
    pub async fn set_presence(
        &self,
        device_id: &str,
        relay_id: &str,
        conn_id: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO presence (device_id, relay_id, conn_id, busy) VALUES ($1, $2, $3, 0) \
             ON CONFLICT (device_id) DO UPDATE SET relay_id = excluded.relay_id, \
             conn_id = excluded.conn_id, busy = 0",
        )
        .bind(device_id)
        .bind(relay_id)
        .bind(conn_id_i64(conn_id))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Forgets `device_id`'s presence if it is still that connection's.
    pub async fn clear_presence(
        &self,
        device_id: &str,
        relay_id: &str,
        conn_id: u64,
    ) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM presence WHERE device_id = $1 AND relay_id = $2 AND conn_id = $3")
            .bind(device_id)
            .bind(relay_id)
            .bind(conn_id_i64(conn_id))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Marks a device held by `relay_id` busy or free, for the device lists of other relays.
    pub async fn set_presence_busy(
        &self,
        device_id: &str,
        relay_id: &str,
        busy: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE presence SET busy = $1 WHERE device_id = $2 AND relay_id = $3")
            .bind(i64::from(busy))
            .bind(device_id)
            .bind(relay_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Where `device_id`'s streamer is connected, on a relay whose heartbeat is at or after
    /// `alive_after_ms`.
    pub async fn presence(
        &self,
        device_id: &str,
        alive_after_ms: i64,
    ) -> Result<Option<Presence>, StoreError> {
        let row = sqlx::query(
            "SELECT p.relay_id, r.peer_address, p.busy FROM presence p \
             JOIN relays r ON r.id = p.relay_id WHERE p.device_id = $1 AND r.heartbeat_at >= $2",
        )
        .bind(device_id)
        .bind(alive_after_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Presence {
                relay_id: r.try_get("relay_id")?,
                peer_address: r.try_get("peer_address")?,
                busy: flag(&r, "busy")?,
            })
        })
        .transpose()
    }

    /// A team's devices connected to live relays, each with whether it is busy.
    pub async fn team_presence(
        &self,
        team_id: &str,
        alive_after_ms: i64,
    ) -> Result<HashMap<String, bool>, StoreError> {
        let rows = sqlx::query(
            "SELECT p.device_id, p.busy FROM presence p JOIN relays r ON r.id = p.relay_id \
             JOIN devices d ON d.id = p.device_id WHERE d.team_id = $1 AND r.heartbeat_at >= $2",
        )
        .bind(team_id)
        .bind(alive_after_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("device_id")?, flag(r, "busy")?)))
            .collect()
    }

    /// Publishes an attended streamer's session code, held by `relay_id`'s connection `conn_id`.
    pub async fn add_session_code(
        &self,
        code: &str,
        team_id: &str,
        relay_id: &str,
        conn_id: u64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO session_codes (code, team_id, relay_id, conn_id, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(code)
        .bind(team_id)
        .bind(relay_id)
        .bind(conn_id_i64(conn_id))
        .bind(expires_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes the session codes of `relay_id`'s connection `conn_id` (it closed), and every
    /// expired code.
    pub async fn remove_session_codes(
        &self,
        relay_id: &str,
        conn_id: u64,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "DELETE FROM session_codes WHERE (relay_id = $1 AND conn_id = $2) OR expires_at <= $3",
        )
        .bind(relay_id)
        .bind(conn_id_i64(conn_id))
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes one session code (used).
    pub async fn remove_session_code(&self, code: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM session_codes WHERE code = $1")
            .bind(code)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The relay holding `team_id`'s live, unexpired session code `code`, if that relay is alive
    /// (heartbeat at or after `alive_after_ms`). Another team's code is not found.
    pub async fn session_code_holder(
        &self,
        code: &str,
        team_id: &str,
        alive_after_ms: i64,
    ) -> Result<Option<CodeHolder>, StoreError> {
        let row = sqlx::query(
            "SELECT c.relay_id, r.peer_address FROM session_codes c \
             JOIN relays r ON r.id = c.relay_id WHERE c.code = $1 AND c.team_id = $2 \
             AND c.expires_at > $3 AND r.heartbeat_at >= $4",
        )
        .bind(code)
        .bind(team_id)
        .bind(self.now())
        .bind(alive_after_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(CodeHolder {
                relay_id: r.try_get("relay_id")?,
                peer_address: r.try_get("peer_address")?,
            })
        })
        .transpose()
    }
}

impl Store {
    /// The times (Unix ms) of throttle `scope`'s failures for `key` at or after `since_ms`, oldest
    /// first.
    pub async fn throttle_failures(
        &self,
        scope: &str,
        key: &str,
        since_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query(
            "SELECT at FROM throttle_failures WHERE scope = $1 AND key = $2 AND at >= $3 ORDER BY at",
        )
        .bind(scope)
        .bind(key)
        .bind(since_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>("at").map_err(StoreError::from))
            .collect()
    }

    /// Records a failure of `key` in throttle `scope` at `at_ms`, and forgets every failure older
    /// than `forget_before_ms` (out of every window).
    pub async fn throttle_failed(
        &self,
        scope: &str,
        key: &str,
        at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM throttle_failures WHERE at < $1")
            .bind(forget_before_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query("INSERT INTO throttle_failures (scope, key, at) VALUES ($1, $2, $3)")
            .bind(scope)
            .bind(key)
            .bind(at_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets `key`'s failures in throttle `scope` (a success).
    pub async fn throttle_cleared(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM throttle_failures WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// A notice from one relay of the fleet to the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetNotice {
    /// Its place in the order.
    pub id: i64,
    /// `sign_in_ended`, `device_revoked` or `session_ended`.
    pub kind: String,
    /// A sign-in token's digest, a device's id, or a session's id.
    pub subject: String,
    /// For `session_ended`: the team's id and the message, on two lines.
    pub detail: String,
}

impl Store {
    /// Tells the fleet's relays something about the connections they hold.
    pub async fn add_fleet_notice(
        &self,
        kind: &str,
        subject: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO fleet_notices (kind, subject, detail, at) VALUES ($1, $2, $3, $4)",
        )
        .bind(kind)
        .bind(subject)
        .bind(detail)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest notice's id (0 when there is none): a relay that joins reads on from there.
    pub async fn last_fleet_notice(&self) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COALESCE(MAX(id), 0) AS last FROM fleet_notices")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("last")?)
    }

    /// Notices after `after_id`, in order; notices older than `forget_before_ms` are removed.
    pub async fn fleet_notices_after(
        &self,
        after_id: i64,
        forget_before_ms: i64,
    ) -> Result<Vec<FleetNotice>, StoreError> {
        sqlx::query("DELETE FROM fleet_notices WHERE at < $1")
            .bind(forget_before_ms)
            .execute(&self.pool)
            .await?;
        let rows = sqlx::query(
            "SELECT id, kind, subject, detail FROM fleet_notices WHERE id > $1 ORDER BY id",
        )
        .bind(after_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(FleetNotice {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    subject: r.try_get("subject")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }

    /// The relay running a live session, if it is live.
    pub async fn live_session_relay(&self, session_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT relay_id FROM sessions WHERE id = $1 AND ended_at IS NULL")
            .bind(session_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| r.try_get("relay_id").map_err(StoreError::from))
            .transpose()
    }
}

fn conn_id_i64(conn_id: u64) -> i64 {
    i64::try_from(conn_id).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::clock::{Clock, ManualClock, SharedClock};

    #[tokio::test]
    async fn a_silent_relay_is_claimed_once_and_its_devices_and_codes_go_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let clock = std::sync::Arc::new(ManualClock::new(1_000_000));
        let shared: SharedClock = clock.clone();
        let url = crate::test_engines::database_url_or_default(dir.path());
        let store = Store::open(&url, shared).await.unwrap();
        let team = store
            .create_team("T", "o@example.com", "Owner", "correct horse battery")
            .await
            .unwrap()
            .team;
        let code = store
            .create_deployment_code(&team.id, 3_600_000)
            .await
            .unwrap();
        let (device, _) = store.register_device(&code, "pc").await.unwrap().unwrap();
        assert!(store.heartbeat("a", "a.example:9443").await.unwrap(), "new");
        assert!(!store.heartbeat("a", "a.example:9443").await.unwrap());
        store.heartbeat("b", "b.example:9443").await.unwrap();
        store.set_presence(&device.id, "a", 7).await.unwrap();
        store
            .add_session_code("123456789", &team.id, "a", 8, 2_000_000)
            .await
            .unwrap();
        let alive_after = clock.now_ms() - 10_000;
        let at = store
            .presence(&device.id, alive_after)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((at.relay_id.as_str(), at.busy), ("a", false));
        store
            .set_presence_busy(&device.id, "a", true)
            .await
            .unwrap();
        assert_eq!(
            store.team_presence(&team.id, alive_after).await.unwrap(),
            HashMap::from([(device.id.clone(), true)])
        );
        let holder = store
            .session_code_holder("123456789", &team.id, alive_after)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(holder.peer_address, "a.example:9443");
        // Another team's code is not found.
        assert!(store
            .session_code_holder("123456789", "other-team", alive_after)
            .await
            .unwrap()
            .is_none());
        // A stops beating; B goes on.
        clock.advance(std::time::Duration::from_secs(20));
        store.heartbeat("b", "b.example:9443").await.unwrap();
        let alive_after = clock.now_ms() - 10_000;
        assert!(store
            .presence(&device.id, alive_after)
            .await
            .unwrap()
            .is_none());
        assert_eq!(store.silent_relays(alive_after).await.unwrap(), vec!["a"]);
        assert!(store.claim_silent_relay("a", alive_after).await.unwrap());
        assert!(!store.claim_silent_relay("a", alive_after).await.unwrap());
        assert!(!store.claim_silent_relay("b", alive_after).await.unwrap());
        assert_eq!(store.leave_fleet("a").await.unwrap(), 1);
        // A comes back (its database was out of reach, say): its heartbeat says it must publish
        // what it holds again; B's says nothing new.
        assert!(store.heartbeat("a", "a.example:9443").await.unwrap());
        assert!(!store.heartbeat("b", "b.example:9443").await.unwrap());
        // A stale clear from the old connection does not remove a newer presence.
        store.set_presence(&device.id, "b", 9).await.unwrap();
        store.clear_presence(&device.id, "a", 7).await.unwrap();
        assert_eq!(
            store
                .presence(&device.id, alive_after)
                .await
                .unwrap()
                .unwrap()
                .relay_id,
            "b"
        );
    }
}
