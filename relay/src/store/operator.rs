//! The relay operator's commands on teams (`relay admin`): a new team with its owner's
//! invitation, the list of teams, and a new owner when the old one is gone. Each is one
//! transaction.

use sqlx::Row;

use super::accounts::user_from_row;
use super::members::{check_email, check_name, LinkKind, MemberError, NewLink};
use super::{Store, StoreError, TeamRecord, UserRole};
use crate::secrets;

/// One team, as the operator lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamOverview {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The owner's address (`None` until the first owner accepts).
    pub owner_email: Option<String>,
    /// Active members.
    pub members: i64,
    /// Devices not revoked.
    pub devices: i64,
    /// When it was made, Unix milliseconds.
    pub created_at: i64,
}

/// What `reset_owner` made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OwnerReset {
    /// A password-reset link for the current owner.
    PasswordReset {
        /// The owner's address.
        email: String,
        /// The link's token.
        token: String,
    },
    /// An owner's invitation for a new owner.
    Invitation {
        /// The new owner's address.
        email: String,
        /// The link's token.
        token: String,
    },
}

impl Store {
    /// The operator's new team, with no member yet and a one-time link for its first owner; both
    /// or neither are written.
    pub async fn create_team_with_invitation(
        &self,
        name: &str,
        owner_email: &str,
        ttl_ms: i64,
    ) -> Result<Result<(TeamRecord, String), MemberError>, StoreError> {
        let name = match check_name(name) {
            Ok(n) => n.to_owned(),
            Err(e) => return Ok(Err(e)),
        };
        let owner_email = owner_email.trim();
        if let Err(e) = check_email(owner_email) {
            return Ok(Err(e));
        }
        let taken: Option<String> = sqlx::query_scalar("SELECT id FROM users WHERE email = $1")
            .bind(owner_email)
            .fetch_optional(&self.pool)
            .await?;
        if taken.is_some() {
            return Ok(Err(MemberError::Conflict(
                "this address already has an account on this relay",
            )));
        }
        let team = TeamRecord {
            id: secrets::new_id()?,
            name,
            attended_key: secrets::new_token()?,
        };
        let token = secrets::new_token()?;
        let now = self.now();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO teams (id, name, attended_key, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&team.id)
        .bind(&team.name)
        .bind(&team.attended_key)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO member_links \
             (token_hash, kind, team_id, email, role, created_at, expires_at) \
             VALUES ($1, 'invitation', $2, $3, 'owner', $4, $5)",
        )
        .bind(secrets::digest(&token))
        .bind(&team.id)
        .bind(owner_email)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok((team, token)))
    }

    /// Every team on the relay, oldest first, for the operator.
    pub async fn teams_overview(&self) -> Result<Vec<TeamOverview>, StoreError> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, t.created_at, \
             (SELECT email FROM users WHERE team_id = t.id AND role = 'owner' AND removed_at IS NULL) AS owner, \
             (SELECT COUNT(*) FROM users WHERE team_id = t.id AND removed_at IS NULL) AS members, \
             (SELECT COUNT(*) FROM devices WHERE team_id = t.id AND revoked_at IS NULL) AS devices \
             FROM teams t ORDER BY t.created_at, t.id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TeamOverview {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    owner_email: r.try_get("owner")?,
                    members: r.try_get("members")?,
                    devices: r.try_get("devices")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// The operator's way back in for a team whose owner is locked out. Without `new_email`, or
    /// with the owner's own address: a password-reset link for the owner. With another address:
    /// an owner's invitation; whoever accepts it becomes the owner and the old owner an admin.
    pub async fn reset_owner(
        &self,
        team_id: &str,
        new_email: Option<&str>,
        ttl_ms: i64,
    ) -> Result<Result<OwnerReset, MemberError>, StoreError> {
        let exists: Option<String> = sqlx::query_scalar("SELECT id FROM teams WHERE id = $1")
            .bind(team_id)
            .fetch_optional(&self.pool)
            .await?;
        if exists.is_none() {
            return Ok(Err(MemberError::Invalid("there is no team with that id")));
        }
        let owner = sqlx::query(
            "SELECT id, team_id, email, name, role FROM users WHERE team_id = $1 AND role = 'owner' \
             AND removed_at IS NULL",
        )
        .bind(team_id)
        .fetch_optional(&self.pool)
        .await?;
        let owner = owner.as_ref().map(user_from_row).transpose()?;
        let new_email = new_email.map(str::trim);
        match (owner, new_email) {
            (Some(o), e) if e.is_none_or(|e| o.email.eq_ignore_ascii_case(e)) => {
                let token = self
                    .new_link(NewLink {
                        kind: LinkKind::PasswordReset,
                        team_id,
                        email: &o.email,
                        role: None,
                        user_id: Some(&o.id),
                        created_by: None,
                        ttl_ms,
                    })
                    .await?;
                Ok(Ok(OwnerReset::PasswordReset {
                    email: o.email,
                    token,
                }))
            }
            (_, None) => Ok(Err(MemberError::Invalid(
                "the team has no owner yet: give the new owner's e-mail address",
            ))),
            (_, Some(e)) => {
                if let Err(err) = check_email(e) {
                    return Ok(Err(err));
                }
                let other = sqlx::query("SELECT team_id, removed_at FROM users WHERE email = $1")
                    .bind(e)
                    .fetch_optional(&self.pool)
                    .await?;
                if let Some(row) = other {
                    let same_team = row.try_get::<String, _>("team_id")? == team_id;
                    let removed = row.try_get::<Option<i64>, _>("removed_at")?.is_some();
                    if !(same_team && removed) {
                        return Ok(Err(MemberError::Conflict(
                            "this address already has an account on this relay: \
                             the owner transfers ownership to a member in the console",
                        )));
                    }
                }
                let token = self
                    .new_link(NewLink {
                        kind: LinkKind::Invitation,
                        team_id,
                        email: e,
                        role: Some(UserRole::Owner),
                        user_id: None,
                        created_by: None,
                        ttl_ms,
                    })
                    .await?;
                Ok(Ok(OwnerReset::Invitation {
                    email: e.to_owned(),
                    token,
                }))
            }
        }
    }
}
