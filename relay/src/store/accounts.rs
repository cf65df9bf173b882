//! Teams, users and their roles, sign-in tokens, deployment codes, devices and team settings.

use protocol::ErrorCode;
use sqlx::Row;

use super::{Store, StoreError};
use crate::secrets;

/// A person's role in their team.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    /// Can use the product; sees recordings only when the policy allows members.
    Member,
    /// Manages settings and devices.
    Admin,
    /// The one owner of the team.
    Owner,
}

impl UserRole {
    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Owner => "owner",
            UserRole::Admin => "admin",
            UserRole::Member => "member",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "owner" => Ok(UserRole::Owner),
            "admin" => Ok(UserRole::Admin),
            "member" => Ok(UserRole::Member),
            other => Err(StoreError::Corrupt(format!("role {other:?}"))),
        }
    }

    /// Whether this role may change team settings, devices and codes.
    pub fn manages_team(self) -> bool {
        matches!(self, UserRole::Owner | UserRole::Admin)
    }
}

/// Who may play back and download recordings of one access type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaybackPolicy {
    /// `Owner only` (the default).
    Owner,
    /// `Admins and Owner`.
    Admins,
    /// `Members, Admins, and Owner`.
    Members,
}

impl PlaybackPolicy {
    /// Whether someone of `role` may play back and download under this policy.
    pub fn allows(self, role: UserRole) -> bool {
        match self {
            PlaybackPolicy::Owner => role == UserRole::Owner,
            PlaybackPolicy::Admins => role != UserRole::Member,
            PlaybackPolicy::Members => true,
        }
    }

    /// Its wording in the console.
    pub fn label(self) -> &'static str {
        match self {
            PlaybackPolicy::Owner => "Owner only",
            PlaybackPolicy::Admins => "Admins and Owner",
            PlaybackPolicy::Members => "Members, Admins, and Owner",
        }
    }

    /// Every policy, in the console's order.
    pub const ALL: [PlaybackPolicy; 3] = [
        PlaybackPolicy::Owner,
        PlaybackPolicy::Admins,
        PlaybackPolicy::Members,
    ];

    /// Its stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            PlaybackPolicy::Owner => "owner",
            PlaybackPolicy::Admins => "admins",
            PlaybackPolicy::Members => "members",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "owner" => Ok(PlaybackPolicy::Owner),
            "admins" => Ok(PlaybackPolicy::Admins),
            "members" => Ok(PlaybackPolicy::Members),
            other => Err(StoreError::Corrupt(format!("playback policy {other:?}"))),
        }
    }
}

/// A team's settings.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TeamSettings {
    /// Record every attended session.
    pub record_attended: bool,
    /// Record every unattended session.
    pub record_unattended: bool,
    /// Who may play back attended recordings.
    pub playback_attended: PlaybackPolicy,
    /// Who may play back unattended recordings.
    pub playback_unattended: PlaybackPolicy,
    /// IANA time zone for the console's logs.
    pub time_zone: String,
    /// Whether sessions may carry clipboard text both ways (on when not given).
    #[serde(default = "allowed")]
    pub allow_clipboard: bool,
    /// Whether technician and end user may chat in sessions (on when not given).
    #[serde(default = "allowed")]
    pub allow_chat: bool,
    /// Whether sessions may carry files both ways (on when not given).
    #[serde(default = "allowed")]
    pub allow_file_transfer: bool,
    /// The largest file a session may carry, in MB of 1,000,000 bytes
    /// ([`MAX_FILE_MB_RANGE`]; 2048 when not given).
    #[serde(default = "default_max_file_mb", deserialize_with = "any_number_as_mb")]
    pub max_file_mb: u32,
    /// Days the team keeps recordings, at most the relay's retention period (`None`, or left out:
    /// the relay's period).
    #[serde(default, deserialize_with = "any_number_as_days")]
    pub retention_days: Option<u32>,
}

/// Reads `retention_days` as `max_file_mb` is read: null is "the relay's period", and any number
/// that is not a whole number up to `u32::MAX` becomes 0, which the range check refuses.
fn any_number_as_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let n = <Option<serde_json::Number> as serde::Deserialize>::deserialize(d)?;
    Ok(n.map(|n| n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0)))
}

/// Reads any JSON number as `max_file_mb`: one that is not a whole number from 0 to `u32::MAX`
/// (negative, fractional, huge) becomes 0, which the range check refuses as a bad value
/// (`INVALID_VALUE`) like every other number outside [`MAX_FILE_MB_RANGE`]. A value that is not a
/// number at all stays a malformed body.
fn any_number_as_mb<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let n = <serde_json::Number as serde::Deserialize>::deserialize(d)?;
    Ok(n.as_u64().and_then(|n| u32::try_from(n).ok()).unwrap_or(0))
}

/// The values `max_file_mb` may take: 1 MB to 1 TB.
pub const MAX_FILE_MB_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;

impl TeamSettings {
    /// The largest file a session may carry, in bytes.
    pub fn max_file_bytes(&self) -> u64 {
        u64::from(self.max_file_mb) * 1_000_000
    }
}

fn allowed() -> bool {
    true
}

fn default_max_file_mb() -> u32 {
    2048
}

/// A team as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeamRecord {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// The public key built into its attended download.
    pub attended_key: String,
}

/// A new team with its owner.
#[derive(Debug, Clone)]
pub struct NewTeam {
    /// The team.
    pub team: TeamRecord,
    /// The owner's user id.
    pub owner_id: String,
}

/// A user as stored (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Its id.
    pub id: String,
    /// The team's id.
    pub team_id: String,
    /// Sign-in e-mail address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role in the team.
    pub role: UserRole,
}

/// A successful sign-in.
#[derive(Debug, Clone)]
pub struct SignIn {
    /// The bearer token (shown once, stored only as a digest).
    pub token: String,
    /// When it expires, Unix milliseconds.
    pub expires_at: i64,
    /// Who signed in.
    pub user: UserRecord,
}

/// A device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    /// Its id.
    pub id: String,
    /// The team's id.
    pub team_id: String,
    /// Its name.
    pub name: String,
    /// The streamer version it last reported.
    pub streamer_version: Option<String>,
    /// Whether its credential was revoked.
    pub revoked: bool,
}

/// Why a credential was not accepted (the user's fault).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// Unknown, wrong or malformed.
    #[error("the credential is not valid")]
    Invalid,
    /// Known but past its expiry.
    #[error("the credential has expired")]
    Expired,
    /// Known but revoked.
    #[error("the credential was revoked")]
    Revoked,
}

impl Denied {
    /// The wire code for this denial.
    pub fn code(self) -> ErrorCode {
        match self {
            Denied::Invalid | Denied::Expired => ErrorCode::AuthenticationFailed,
            Denied::Revoked => ErrorCode::CredentialRevoked,
        }
    }
}

/// An e-mail address as people read it, the form it is stored and compared in: Unicode NFKC
/// (full-width, circled and other compatibility letters become the plain ones), lower case,
/// without surrounding spaces. Two addresses that read alike are one address, on both engines
/// (PostgreSQL's case-insensitive collation already folds such variants; SQLite's folds ASCII only).
pub fn normalize_email(email: &str) -> String {
    use unicode_normalization::UnicodeNormalization as _;
    email.trim().nfkc().collect::<String>().to_lowercase()
}

pub(super) fn user_from_row(row: &sqlx::any::AnyRow) -> Result<UserRecord, StoreError> {
    Ok(UserRecord {
        id: row.try_get("id")?,
        team_id: row.try_get("team_id")?,
        email: row.try_get("email")?,
        name: row.try_get("name")?,
        role: UserRole::parse(row.try_get::<&str, _>("role")?)?,
    })
}

pub(super) fn device_from_row(row: &sqlx::any::AnyRow) -> Result<DeviceRecord, StoreError> {
    Ok(DeviceRecord {
        id: row.try_get("id")?,
        team_id: row.try_get("team_id")?,
        name: row.try_get("name")?,
        streamer_version: row.try_get("streamer_version")?,
        revoked: row.try_get::<Option<i64>, _>("revoked_at")?.is_some(),
    })
}

impl Store {
    /// Creates a team and its owner.
    pub async fn create_team(
        &self,
        name: &str,
        owner_email: &str,
        owner_name: &str,
        owner_password: &str,
    ) -> Result<NewTeam, StoreError> {
        let team = TeamRecord {
            id: secrets::new_id()?,
            name: name.to_owned(),
            attended_key: secrets::new_token()?,
        };
        let owner_id = secrets::new_id()?;
        let hash = self.passwords.hash(owner_password).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO teams (id, name, attended_key, created_at) VALUES ($1, $2, $3, $4)",
        )
        .bind(&team.id)
        .bind(&team.name)
        .bind(&team.attended_key)
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO users (id, team_id, email, name, role, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, 'owner', $5, $6)",
        )
        .bind(&owner_id)
        .bind(&team.id)
        .bind(normalize_email(owner_email))
        .bind(owner_name)
        .bind(&hash)
        .bind(self.now())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(NewTeam { team, owner_id })
    }

    /// Adds an admin or member to a team (a team has exactly one owner, made with the team).
    pub async fn add_user(
        &self,
        team_id: &str,
        email: &str,
        name: &str,
        role: UserRole,
        password: &str,
    ) -> Result<String, StoreError> {
        let id = secrets::new_id()?;
        let hash = self.passwords.hash(password).await?;
        sqlx::query(
            "INSERT INTO users (id, team_id, email, name, role, password_hash, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&id)
        .bind(team_id)
        .bind(normalize_email(email))
        .bind(name)
        .bind(role.as_str())
        .bind(&hash)
        .bind(self.now())
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// How many teams exist (0 on a fresh relay).
    pub async fn team_count(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM teams")
            .fetch_one(&self.pool)
            .await?)
    }

    /// The current member whose address is `email` as people read it: normalised first (how
    /// addresses are stored), then as typed (for an address stored before normalisation).
    async fn account_row(&self, email: &str) -> Result<Option<sqlx::any::AnyRow>, StoreError> {
        let normal = normalize_email(email);
        for candidate in [normal.as_str(), email.trim()] {
            let row = sqlx::query(
                "SELECT id, team_id, email, name, role, password_hash FROM users \
                 WHERE email = $1 AND removed_at IS NULL",
            )
            .bind(candidate)
            .fetch_optional(&self.pool)
            .await?;
            if row.is_some() {
                return Ok(row);
            }
        }
        Ok(None)
    }

    /// The id of the current member whose address `email` is (as [`normalize_email`] reads it,
    /// and as the database compares it), if any: what sign-in throttles key on.
    pub async fn account_id(&self, email: &str) -> Result<Option<String>, StoreError> {
        self.account_row(email)
            .await?
            .map(|r| r.try_get("id"))
            .transpose()
            .map_err(Into::into)
    }

    /// Checks an e-mail and password and issues a sign-in token valid for `ttl_ms`.
    pub async fn sign_in(
        &self,
        email: &str,
        password: &str,
        ttl_ms: i64,
    ) -> Result<Result<SignIn, Denied>, StoreError> {
        let row = self.account_row(email).await?;
        let Some(row) = row else {
            // Hash anyway so that unknown addresses take as long as wrong passwords.
            let _ = self.passwords.verify(password, None).await;
            return Ok(Err(Denied::Invalid));
        };
        let stored: String = row.try_get("password_hash")?;
        if !self.passwords.verify(password, Some(&stored)).await {
            return Ok(Err(Denied::Invalid));
        }
        let user = user_from_row(&row)?;
        let token = secrets::new_token()?;
        let now = self.now();
        let expires_at = now.saturating_add(ttl_ms);
        sqlx::query("INSERT INTO sign_in_tokens (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(secrets::digest(&token))
            .bind(&user.id)
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(Ok(SignIn {
            token,
            expires_at,
            user,
        }))
    }

    /// The user a sign-in token belongs to, if it is valid now.
    pub async fn user_for_token(
        &self,
        token: &str,
    ) -> Result<Result<UserRecord, Denied>, StoreError> {
        let row = sqlx::query(
            "SELECT u.id, u.team_id, u.email, u.name, u.role, u.removed_at, t.expires_at, \
             t.revoked_at FROM sign_in_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1",
        )
        .bind(secrets::digest(token))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Err(Denied::Invalid));
        };
        // A removed member's tokens are revoked with the removal; the mark is checked as well.
        if row.try_get::<Option<i64>, _>("revoked_at")?.is_some()
            || row.try_get::<Option<i64>, _>("removed_at")?.is_some()
        {
            return Ok(Err(Denied::Revoked));
        }
        if row.try_get::<i64, _>("expires_at")? <= self.now() {
            return Ok(Err(Denied::Expired));
        }
        Ok(Ok(user_from_row(&row)?))
    }

    /// A current member by id: `None` for an unknown id or someone removed from their team
    /// (whatever they still hold, such as a file link they were issued, dies with their membership).
    pub async fn user(&self, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, team_id, email, name, role FROM users WHERE id = $1 AND removed_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    /// The team of the active member with this e-mail address, if any.
    pub async fn team_of_email(&self, email: &str) -> Result<Option<String>, StoreError> {
        self.account_row(email)
            .await?
            .map(|r| r.try_get("team_id"))
            .transpose()
            .map_err(Into::into)
    }

    /// A team's name (empty for an unknown team).
    pub async fn team_name(&self, team_id: &str) -> Result<String, StoreError> {
        let name: Option<String> = sqlx::query_scalar("SELECT name FROM teams WHERE id = $1")
            .bind(team_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(name.unwrap_or_default())
    }

    /// A team's users, owner first, then by name.
    pub async fn team_users(&self, team_id: &str) -> Result<Vec<UserRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, team_id, email, name, role FROM users WHERE team_id = $1 \
             AND removed_at IS NULL ORDER BY CASE role WHEN 'owner' THEN 0 WHEN 'admin' THEN 1 ELSE 2 END, name",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// Revokes a sign-in token; returns whether it existed and was live.
    pub async fn revoke_token(&self, token: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE sign_in_tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL",
        )
        .bind(self.now())
        .bind(secrets::digest(token))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Issues a deployment code for `team_id`, valid for `ttl_ms`.
    pub async fn create_deployment_code(
        &self,
        team_id: &str,
        ttl_ms: i64,
    ) -> Result<String, StoreError> {
        self.create_deployment_code_by(team_id, ttl_ms, None).await
    }

    /// Issues a deployment code for `team_id`, valid for `ttl_ms`, made by `created_by` (a user
    /// id), listed with its first characters ([`DeploymentCode::hint`]).
    pub async fn create_deployment_code_by(
        &self,
        team_id: &str,
        ttl_ms: i64,
        created_by: Option<&str>,
    ) -> Result<String, StoreError> {
        let code = secrets::new_token()?;
        let now = self.now();
        sqlx::query(
            "INSERT INTO deployment_codes (code_hash, team_id, created_at, expires_at, id, hint, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(secrets::digest(&code))
        .bind(team_id)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .bind(secrets::new_id()?)
        .bind(code.chars().take(super::devices::HINT_LEN).collect::<String>())
        .bind(created_by)
        .execute(&self.pool)
        .await?;
        Ok(code)
    }

    /// Registers a device with a deployment code; returns the device and its secret.
    pub async fn register_device(
        &self,
        code: &str,
        device_name: &str,
    ) -> Result<Result<(DeviceRecord, String), Denied>, StoreError> {
        let row = sqlx::query(
            "SELECT id, team_id, created_by, expires_at, revoked_at FROM deployment_codes WHERE code_hash = $1",
        )
        .bind(secrets::digest(code))
        .fetch_optional(&self.pool)
        .await?;
        let Some(row) = row else {
            return Ok(Err(Denied::Invalid));
        };
        if row.try_get::<Option<i64>, _>("revoked_at")?.is_some() {
            return Ok(Err(Denied::Revoked));
        }
        if row.try_get::<i64, _>("expires_at")? <= self.now() {
            return Ok(Err(Denied::Expired));
        }
        let team_id: String = row.try_get("team_id")?;
        let created_by: Option<String> = row.try_get("created_by")?;
        if !self
            .code_issuer_may_issue(&team_id, created_by.as_deref())
            .await?
        {
            // Its maker left the team or lost the right to make codes.
            return Ok(Err(Denied::Revoked));
        }
        let device = DeviceRecord {
            id: secrets::new_id()?,
            team_id,
            name: device_name.to_owned(),
            streamer_version: None,
            revoked: false,
        };
        let secret = secrets::new_token()?;
        sqlx::query("INSERT INTO devices (id, team_id, name, secret_hash, created_at, code_id) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(&device.id)
            .bind(&device.team_id)
            .bind(&device.name)
            .bind(secrets::digest(&secret))
            .bind(self.now())
            .bind(row.try_get::<Option<String>, _>("id")?)
            .execute(&self.pool)
            .await?;
        Ok(Ok((device, secret)))
    }

    /// Records the streamer version a device reported and when it was seen.
    pub async fn device_seen(&self, device_id: &str, version: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE devices SET streamer_version = $1, last_seen_at = $2 WHERE id = $3")
            .bind(version)
            .bind(self.now())
            .bind(device_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Revokes a device of `team_id`; returns false when the team has no such live device.
    pub async fn revoke_device(&self, team_id: &str, device_id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE devices SET revoked_at = $1 WHERE id = $2 AND team_id = $3 AND revoked_at IS NULL",
        )
        .bind(self.now())
        .bind(device_id)
        .bind(team_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// A team's devices, revoked ones included.
    pub async fn devices(&self, team_id: &str) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, team_id, name, streamer_version, revoked_at FROM devices WHERE team_id = $1 ORDER BY name, id",
        )
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(device_from_row).collect()
    }

    /// One device of one team.
    pub async fn device(
        &self,
        team_id: &str,
        device_id: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, team_id, name, streamer_version, revoked_at FROM devices WHERE id = $1 AND team_id = $2",
        )
        .bind(device_id)
        .bind(team_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(device_from_row).transpose()
    }

    /// The team whose attended download carries `key`.
    pub async fn team_by_attended_key(&self, key: &str) -> Result<Option<TeamRecord>, StoreError> {
        let row = sqlx::query("SELECT id, name, attended_key FROM teams WHERE attended_key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(TeamRecord {
                id: r.try_get("id")?,
                name: r.try_get("name")?,
                attended_key: r.try_get("attended_key")?,
            })
        })
        .transpose()
    }

    /// A team's attended-access key.
    pub async fn attended_key(&self, team_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT attended_key FROM teams WHERE id = $1")
                .bind(team_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A team's settings.
    pub async fn team_settings(&self, team_id: &str) -> Result<Option<TeamSettings>, StoreError> {
        let row = sqlx::query(
            "SELECT record_attended, record_unattended, playback_attended, playback_unattended, time_zone, \
             allow_clipboard, allow_chat, allow_file_transfer, max_file_mb, retention_days FROM teams WHERE id = $1",
        )
        .bind(team_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(TeamSettings {
                record_attended: super::flag(&r, "record_attended")?,
                record_unattended: super::flag(&r, "record_unattended")?,
                playback_attended: PlaybackPolicy::parse(
                    r.try_get::<&str, _>("playback_attended")?,
                )?,
                playback_unattended: PlaybackPolicy::parse(
                    r.try_get::<&str, _>("playback_unattended")?,
                )?,
                time_zone: r.try_get("time_zone")?,
                allow_clipboard: super::flag(&r, "allow_clipboard")?,
                allow_chat: super::flag(&r, "allow_chat")?,
                allow_file_transfer: super::flag(&r, "allow_file_transfer")?,
                max_file_mb: u32::try_from(r.try_get::<i64, _>("max_file_mb")?)
                    .map_err(|_| StoreError::Corrupt("max_file_mb".into()))?,
                retention_days: r
                    .try_get::<Option<i64>, _>("retention_days")?
                    .map(u32::try_from)
                    .transpose()
                    .map_err(|_| StoreError::Corrupt("retention_days".into()))?,
            })
        })
        .transpose()
    }

    /// Replaces a team's settings.
    pub async fn set_team_settings(
        &self,
        team_id: &str,
        s: &TeamSettings,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE teams SET record_attended = $1, record_unattended = $2, playback_attended = $3, \
             playback_unattended = $4, time_zone = $5, allow_clipboard = $6, allow_chat = $7, \
             allow_file_transfer = $8, max_file_mb = $9, retention_days = $10 WHERE id = $11",
        )
        .bind(i64::from(s.record_attended))
        .bind(i64::from(s.record_unattended))
        .bind(s.playback_attended.as_str())
        .bind(s.playback_unattended.as_str())
        .bind(&s.time_zone)
        .bind(i64::from(s.allow_clipboard))
        .bind(i64::from(s.allow_chat))
        .bind(i64::from(s.allow_file_transfer))
        .bind(i64::from(s.max_file_mb))
        .bind(s.retention_days.map(i64::from))
        .bind(team_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
