//! Deployment codes as the console lists them: recognisable by their first characters (the code
//! itself is kept only as a digest), with their expiry, who made them, and a revoke.

use sqlx::Row;

use super::{Store, StoreError};

/// How many of a code's first characters are kept to recognise it by.
pub(crate) const HINT_LEN: usize = 4;

/// A deployment code as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeploymentCode {
    /// Its id.
    pub id: String,
    /// Its first characters (none for codes made before they were kept).
    pub hint: Option<String>,
    /// When it was made, Unix milliseconds.
    pub created_at: i64,
    /// When it stops working, Unix milliseconds.
    pub expires_at: i64,
    /// When it was revoked.
    pub revoked_at: Option<i64>,
    /// Who made it (none: the relay itself at first start, or the operator).
    pub created_by_name: Option<String>,
    /// How many devices registered with it.
    pub devices: i64,
}

impl Store {
    /// A team's deployment codes, newest first, at most 200 (any one of them, listed or not, is
    /// found by [`Store::deployment_code`]).
    pub async fn deployment_codes(&self, team_id: &str) -> Result<Vec<DeploymentCode>, StoreError> {
        self.codes_where(team_id, None).await
    }

    /// One of the team's deployment codes by id (`None` for another team's or an unknown id).
    pub async fn deployment_code(
        &self,
        team_id: &str,
        id: &str,
    ) -> Result<Option<DeploymentCode>, StoreError> {
        Ok(self.codes_where(team_id, Some(id)).await?.pop())
    }

    async fn codes_where(
        &self,
        team_id: &str,
        id: Option<&str>,
    ) -> Result<Vec<DeploymentCode>, StoreError> {
        let rows = sqlx::query(
            "SELECT c.id, c.hint, c.created_at, c.expires_at, c.revoked_at, u.name AS created_by_name, \
             (SELECT COUNT(*) FROM devices d WHERE d.code_id = c.id) AS devices \
             FROM deployment_codes c LEFT JOIN users u ON u.id = c.created_by \
             WHERE c.team_id = $1 AND ($2 = '' OR c.id = $2) \
             ORDER BY c.created_at DESC, c.rowid DESC LIMIT 200",
        )
        .bind(team_id)
        .bind(id.unwrap_or(""))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeploymentCode {
                    id: r.try_get("id")?,
                    hint: r.try_get("hint")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                    created_by_name: r.try_get("created_by_name")?,
                    devices: r.try_get("devices")?,
                })
            })
            .collect()
    }

    /// Revokes one of `team_id`'s deployment codes: no device registers with it any more (those
    /// that did keep their credentials). False when the team has no such code, or it was revoked.
    pub async fn revoke_deployment_code(
        &self,
        team_id: &str,
        id: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE deployment_codes SET revoked_at = $1 WHERE team_id = $2 AND id = $3 AND revoked_at IS NULL",
        )
        .bind(self.now())
        .bind(team_id)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
