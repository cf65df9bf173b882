//! Device secrets renewed at every connection (protocol 1.4.0; docs/SECURITY.md, review
//! finding 1).
//!
//! A device holds one secret. Each connection on 1.4.0 or later is handed the next one
//! (`Registered`), which the relay keeps beside the current one until the device presents it: the
//! current secret works until then, so a streamer that lost the next one (cut off before it could
//! store it) still connects. Presenting the next secret makes it the current one. Every secret
//! the device stops taking (a current one replaced, a next one never used) is kept as retired: a
//! retired secret presented again means two copies of the credential exist (a copy that connected
//! and the computer, or two copies), and since nobody can tell which one is the computer, the
//! device is revoked and the team's audit trail says why.
//!
//! A copy taken from the computer is thus useless after the computer's next connection, and a copy
//! used before that is found out at the computer's next connection, which presents a secret the
//! copy's connection retired.

use sqlx::Row;

use super::accounts::{device_from_row, DeviceRecord};
use super::{Denied, Store, StoreError};
use crate::secrets;

/// How many retired secrets a device keeps (newest last). An older one presented is just not
/// valid (`AUTHENTICATION_FAILED`), and no longer reveals a copy.
pub const RETIRED_KEPT: usize = 32;

/// What a presented device secret turned out to be.
#[derive(Debug)]
pub enum DeviceCheck {
    /// Valid: the device, and when renewing, its next secret to hand to the streamer.
    Valid {
        /// The device.
        device: DeviceRecord,
        /// The next secret, already kept as the device's next.
        next_secret: Option<String>,
    },
    /// Unknown device, a secret it never had, or a revoked device.
    Denied(Denied),
    /// A retired secret: two copies of the credential exist. The device is revoked (by this
    /// call when `revoked_now`).
    Reused {
        /// The device.
        device: DeviceRecord,
        /// Whether this call revoked it (false: it was revoked already).
        revoked_now: bool,
    },
    /// The device's secret has been renewed before and this connection's protocol cannot renew
    /// it (an older streamer, or a copy pretending to be one to keep a secret that never changes).
    RenewalNeeded,
}

/// Which of the device's secrets was presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Presented {
    Current,
    Next,
    Retired,
}

/// `retired` with `digest` added (newest last), at most [`RETIRED_KEPT`] kept.
fn retire(retired: &str, digest: Option<&str>) -> String {
    let mut all: Vec<&str> = retired.split_whitespace().collect();
    if let Some(d) = digest {
        all.push(d);
    }
    let skip = all.len().saturating_sub(RETIRED_KEPT);
    all[skip..].join(" ")
}

impl Store {
    /// Checks a device credential, renewing the secret when `renew` (protocol 1.4.0 or later).
    pub async fn check_device_secret(
        &self,
        device_id: &str,
        secret: &str,
        renew: bool,
    ) -> Result<DeviceCheck, StoreError> {
        let presented = secrets::digest(secret);
        // A write that lost a race with another connection of the device looks again; a few
        // losses in a row are refused like a wrong secret.
        for _ in 0..4 {
            let row = sqlx::query(
                "SELECT id, team_id, name, streamer_version, revoked_at, secret_hash, next_secret_hash, \
                 retired_secret_hashes, secret_renewed FROM devices WHERE id = $1",
            )
            .bind(device_id)
            .fetch_optional(&self.pool)
            .await?;
            let Some(row) = row else {
                return Ok(DeviceCheck::Denied(Denied::Invalid));
            };
            let current: String = row.try_get("secret_hash")?;
            let next: Option<String> = row.try_get("next_secret_hash")?;
            let retired: String = row.try_get("retired_secret_hashes")?;
            let renewed = row.try_get::<i64, _>("secret_renewed")? != 0;
            let device = device_from_row(&row)?;
            let which = if next.as_deref() == Some(presented.as_str()) {
                Presented::Next
            } else if current == presented {
                Presented::Current
            } else if retired.split_whitespace().any(|d| d == presented) {
                Presented::Retired
            } else {
                return Ok(DeviceCheck::Denied(Denied::Invalid));
            };
            if device.revoked {
                return Ok(DeviceCheck::Denied(Denied::Revoked));
            }
            if which == Presented::Retired {
                let done = sqlx::query(
                    "UPDATE devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
                )
                .bind(self.now())
                .bind(device_id)
                .execute(&self.pool)
                .await?;
                return Ok(DeviceCheck::Reused {
                    device,
                    revoked_now: done.rows_affected() == 1,
                });
            }
            if !renew {
                // A next secret exists only once the device was renewed.
                return Ok(if renewed {
                    DeviceCheck::RenewalNeeded
                } else {
                    DeviceCheck::Valid {
                        device,
                        next_secret: None,
                    }
                });
            }
            let fresh = secrets::new_token()?;
            let (new_current, retired_now) = match which {
                // The device stored the next secret: it becomes the current one.
                Presented::Next => (presented.as_str(), retire(&retired, Some(&current))),
                // The device did not use the next secret it was handed (or never had one): that
                // one is retired, the current one stays.
                _ => (current.as_str(), retire(&retired, next.as_deref())),
            };
            let done = sqlx::query(
                "UPDATE devices SET secret_hash = $1, next_secret_hash = $2, retired_secret_hashes = $3, \
                 secret_renewed = 1 WHERE id = $4 AND secret_hash = $5 \
                 AND COALESCE(next_secret_hash, '') = $6 AND revoked_at IS NULL",
            )
            .bind(new_current)
            .bind(secrets::digest(&fresh))
            .bind(&retired_now)
            .bind(device_id)
            .bind(&current)
            .bind(next.as_deref().unwrap_or(""))
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 1 {
                return Ok(DeviceCheck::Valid {
                    device,
                    next_secret: Some(fresh),
                });
            }
        }
        Ok(DeviceCheck::Denied(Denied::Invalid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retired_secrets_keep_the_newest() {
        assert_eq!(retire("", Some("a")), "a");
        assert_eq!(retire("a", None), "a");
        let many: Vec<String> = (0..RETIRED_KEPT).map(|i| format!("d{i}")).collect();
        let kept = retire(&many.join(" "), Some("new"));
        let kept: Vec<&str> = kept.split(' ').collect();
        assert_eq!(kept.len(), RETIRED_KEPT);
        assert_eq!(kept[0], "d1");
        assert_eq!(kept[RETIRED_KEPT - 1], "new");
    }
}
