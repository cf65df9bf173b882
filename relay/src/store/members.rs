//! Team members: invitations, roles, ownership, removal, passwords, the team's name.
//!
//! Every rule is enforced here, whatever the caller: exactly one owner, whose role changes only by
//! an explicit transfer; admins manage members (invite, promote, remove, reset) but not the owner or
//! other admins; nobody changes or removes themselves. A removed member's sessions and recordings
//! stay; their sign-ins end (the caller cuts live connections with the returned token digests).
//!
//! The results are `Result<Result<T, MemberError>, StoreError>`: the outer error is the store's
//! fault, the inner one the caller's.

use sqlx::Row;

use super::accounts::user_from_row;
use super::issued::Withdrawn;
use super::{Denied, Store, StoreError, UserRecord, UserRole};
use crate::secrets;

/// A member removed: who they were, the sign-ins that ended (digests, to cut live connections),
/// and what they had issued that was withdrawn.
#[derive(Debug, Clone)]
pub struct Removed {
    /// The member as they were.
    pub member: UserRecord,
    /// The digests of their sign-ins that ended.
    pub ended: Vec<String>,
    /// What they had issued, withdrawn.
    pub withdrawn: Withdrawn,
}

/// Why a member operation was refused (the caller's fault), with a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemberError {
    /// The actor's role does not allow it.
    #[error("{0}")]
    NotAllowed(&'static str),
    /// No such member in the actor's team (other teams' ids look the same).
    #[error("no such member")]
    NotFound,
    /// It conflicts with what exists.
    #[error("{0}")]
    Conflict(&'static str),
    /// A value is not acceptable.
    #[error("{0}")]
    Invalid(&'static str),
    /// The current password given to change it is wrong (a guess: the sign-in throttle counts it).
    #[error("the current password is not right")]
    WrongPassword,
    /// The link is unknown, used, revoked or expired.
    #[error("this link {}", match .0 { Denied::Expired => "has expired", Denied::Revoked => "was already used or withdrawn", Denied::Invalid => "is not valid" })]
    Link(Denied),
}

/// The password rules: at least 12 characters, at most 1024 bytes, not the e-mail address.
pub fn check_password(password: &str, email: &str) -> Result<(), MemberError> {
    if password.chars().count() < 12 {
        return Err(MemberError::Invalid(
            "a password has at least 12 characters",
        ));
    }
    if password.len() > 1024 {
        return Err(MemberError::Invalid("a password has at most 1024 bytes"));
    }
    if password.eq_ignore_ascii_case(email) {
        return Err(MemberError::Invalid("a password is not the e-mail address"));
    }
    Ok(())
}

pub(super) fn check_email(email: &str) -> Result<(), MemberError> {
    let ok = email.len() <= 254
        && !email.chars().any(char::is_whitespace)
        && email
            .split_once('@')
            .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'));
    if ok {
        Ok(())
    } else {
        Err(MemberError::Invalid("that is not an e-mail address"))
    }
}

pub(super) fn check_name(name: &str) -> Result<&str, MemberError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(MemberError::Invalid("a name has 1 to 100 characters"));
    }
    Ok(name)
}

/// What a one-time link is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LinkKind {
    Invitation,
    PasswordReset,
}

impl LinkKind {
    fn as_str(self) -> &'static str {
        match self {
            LinkKind::Invitation => "invitation",
            LinkKind::PasswordReset => "password_reset",
        }
    }
}

/// An invitation not yet accepted, withdrawn or expired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingInvitation {
    /// Who is invited.
    pub email: String,
    /// The role offered.
    pub role: UserRole,
    /// The name of who invited them (`None`: the operator).
    pub invited_by: Option<String>,
    /// When, Unix milliseconds.
    pub created_at: i64,
    /// Until when it works.
    pub expires_at: i64,
}

/// A one-time link to make.
pub(super) struct NewLink<'a> {
    pub(super) kind: LinkKind,
    pub(super) team_id: &'a str,
    pub(super) email: &'a str,
    pub(super) role: Option<UserRole>,
    pub(super) user_id: Option<&'a str>,
    pub(super) created_by: Option<&'a str>,
    pub(super) ttl_ms: i64,
}

/// A pending link, as found by its token.
/// What an invitation or reset link offers ([`Store::peek_link`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkOffer {
    /// The team's name.
    pub team_name: String,
    /// The address it was made for.
    pub email: String,
    /// The role it gives (an invitation) or the member's (a reset: `member` unless set).
    pub role: UserRole,
}

struct Link {
    created_by: Option<String>,
    team_id: String,
    email: String,
    role: Option<String>,
    user_id: Option<String>,
}

impl Store {
    /// An active member of `team_id`, or `None` (unknown, removed, or another team's).
    async fn member(&self, team_id: &str, id: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, team_id, email, name, role FROM users \
             WHERE id = $1 AND team_id = $2 AND removed_at IS NULL",
        )
        .bind(id)
        .bind(team_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(user_from_row).transpose()
    }

    pub(super) async fn new_link(&self, l: NewLink<'_>) -> Result<String, StoreError> {
        let NewLink {
            kind,
            team_id,
            email,
            role,
            user_id,
            created_by,
            ttl_ms,
        } = l;
        let token = secrets::new_token()?;
        let now = self.now();
        sqlx::query(
            "INSERT INTO member_links \
             (token_hash, kind, team_id, email, role, user_id, created_by, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(secrets::digest(&token))
        .bind(kind.as_str())
        .bind(team_id)
        .bind(email)
        .bind(role.map(UserRole::as_str))
        .bind(user_id)
        .bind(created_by)
        .bind(now)
        .bind(now.saturating_add(ttl_ms))
        .execute(&self.pool)
        .await?;
        Ok(token)
    }

    /// Marks the link used, inside `tx`, if it is live and of `kind`.
    /// What an invitation or reset link offers, without using it, for its page: the team's name,
    /// the address and the role (an invitation's). A used, withdrawn, expired or unknown link is
    /// refused as its use would be, so the page can say so before anything is typed.
    pub async fn peek_link(
        &self,
        invitation: bool,
        token: &str,
    ) -> Result<Result<LinkOffer, MemberError>, StoreError> {
        let kind = if invitation {
            LinkKind::Invitation
        } else {
            LinkKind::PasswordReset
        };
        let mut conn = self.pool.acquire().await?;
        let link = match self.check_link(&mut conn, kind, token).await? {
            Ok(link) => link,
            Err(e) => return Ok(Err(e)),
        };
        let role = UserRole::parse(link.role.as_deref().unwrap_or("member"))?;
        if let (true, Some(by)) = (invitation, &link.created_by) {
            let issuer = super::issued::issuer_role(&mut conn, &link.team_id, by).await?;
            if !issuer.is_some_and(|issuer| super::issued::may_invite(issuer, role)) {
                return Ok(Err(MemberError::Link(Denied::Revoked)));
            }
        }
        drop(conn);
        Ok(Ok(LinkOffer {
            team_name: self.team_name(&link.team_id).await?,
            email: link.email,
            role,
        }))
    }

    /// A link's row, refused when it is unknown, used, withdrawn or expired.
    async fn check_link(
        &self,
        tx: &mut sqlx::AnyConnection,
        kind: LinkKind,
        token: &str,
    ) -> Result<Result<Link, MemberError>, StoreError> {
        let digest = secrets::digest(token);
        let row = sqlx::query(
            "SELECT team_id, email, role, user_id, created_by, expires_at, used_at, revoked_at \
             FROM member_links WHERE token_hash = $1 AND kind = $2",
        )
        .bind(&digest)
        .bind(kind.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Err(MemberError::Link(Denied::Invalid)));
        };
        if row.try_get::<Option<i64>, _>("used_at")?.is_some()
            || row.try_get::<Option<i64>, _>("revoked_at")?.is_some()
        {
            return Ok(Err(MemberError::Link(Denied::Revoked)));
        }
        if row.try_get::<i64, _>("expires_at")? <= self.now() {
            return Ok(Err(MemberError::Link(Denied::Expired)));
        }
        Ok(Ok(Link {
            created_by: row.try_get("created_by")?,
            team_id: row.try_get("team_id")?,
            email: row.try_get("email")?,
            role: row.try_get("role")?,
            user_id: row.try_get("user_id")?,
        }))
    }

    /// Uses a link once: its row, or why not.
    async fn take_link(
        &self,
        tx: &mut sqlx::AnyConnection,
        kind: LinkKind,
        token: &str,
    ) -> Result<Result<Link, MemberError>, StoreError> {
        let link = match self.check_link(&mut *tx, kind, token).await? {
            Ok(link) => link,
            Err(e) => return Ok(Err(e)),
        };
        let digest = secrets::digest(token);
        let taken = sqlx::query(
            "UPDATE member_links SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(self.now())
        .bind(&digest)
        .execute(&mut *tx)
        .await?;
        if taken.rows_affected() != 1 {
            return Ok(Err(MemberError::Link(Denied::Revoked)));
        }
        Ok(Ok(link))
    }

    /// Ends every sign-in of `user_id` except `keep` (a token digest); returns the ended digests,
    /// for cutting their live connections.
    async fn end_sign_ins(
        &self,
        tx: &mut sqlx::AnyConnection,
        user_id: &str,
        keep: Option<&str>,
    ) -> Result<Vec<String>, StoreError> {
        let now = self.now();
        let digests: Vec<String> = sqlx::query_scalar(
            "SELECT token_hash FROM sign_in_tokens WHERE user_id = $1 AND revoked_at IS NULL \
             AND expires_at > $2 AND ($3 IS NULL OR token_hash != $4)",
        )
        .bind(user_id)
        .bind(now)
        .bind(keep)
        .bind(keep)
        .fetch_all(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE sign_in_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL \
             AND ($3 IS NULL OR token_hash != $4)",
        )
        .bind(now)
        .bind(user_id)
        .bind(keep)
        .bind(keep)
        .execute(&mut *tx)
        .await?;
        Ok(digests)
    }

    /// Invites `email` to the actor's team as `role`: the token of a one-time link valid for
    /// `ttl_ms`. The owner invites admins and members; admins invite members.
    pub async fn invite(
        &self,
        actor: &UserRecord,
        email: &str,
        role: UserRole,
        ttl_ms: i64,
    ) -> Result<Result<String, MemberError>, StoreError> {
        if !actor.role.manages_team() {
            return Ok(Err(MemberError::NotAllowed(
                "only the owner and admins invite members",
            )));
        }
        match role {
            UserRole::Owner => {
                return Ok(Err(MemberError::NotAllowed(
                    "ownership is transferred by the owner, not given by an invitation",
                )))
            }
            UserRole::Admin if actor.role != UserRole::Owner => {
                return Ok(Err(MemberError::NotAllowed("only the owner makes admins")))
            }
            _ => {}
        }
        let email = &super::accounts::normalize_email(email);
        if let Err(e) = check_email(email) {
            return Ok(Err(e));
        }
        let existing = sqlx::query("SELECT team_id, removed_at FROM users WHERE email = $1")
            .bind(email)
            .fetch_optional(&self.pool)
            .await?;
        if let Some(row) = existing {
            let same_team = row.try_get::<String, _>("team_id")? == actor.team_id;
            let removed = row.try_get::<Option<i64>, _>("removed_at")?.is_some();
            // Someone of another team gets an invitation like anyone else, and is told at
            // acceptance that the address has an account: a manager learns nothing about the
            // relay's other teams from inviting.
            if same_team && !removed {
                return Ok(Err(MemberError::Conflict(
                    "this address is already a member of your team",
                )));
            }
        }
        Ok(Ok(self
            .new_link(NewLink {
                kind: LinkKind::Invitation,
                team_id: &actor.team_id,
                email,
                role: Some(role),
                user_id: None,
                created_by: Some(&actor.id),
                ttl_ms,
            })
            .await?))
    }

    /// Withdraws the team's pending invitations for `email`: their links stop working. Admins
    /// withdraw members' invitations; an invitation to be an admin or the owner is the owner's to
    /// withdraw. Returns how many were withdrawn (at least one, or `NotFound`).
    pub async fn withdraw_invitation(
        &self,
        actor: &UserRecord,
        email: &str,
    ) -> Result<Result<u64, MemberError>, StoreError> {
        if !actor.role.manages_team() {
            return Ok(Err(MemberError::NotAllowed(
                "only the owner and admins withdraw invitations",
            )));
        }
        let mut tx = self.pool.begin().await?;
        let roles: Vec<Option<String>> = sqlx::query_scalar(
            "SELECT role FROM member_links WHERE team_id = $1 AND kind = 'invitation' AND email = $2 \
             AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $3",
        )
        .bind(&actor.team_id)
        .bind(email.trim())
        .bind(self.now())
        .fetch_all(&mut *tx)
        .await?;
        if roles.is_empty() {
            return Ok(Err(MemberError::NotFound));
        }
        if actor.role != UserRole::Owner && roles.iter().any(|r| r.as_deref() != Some("member")) {
            return Ok(Err(MemberError::NotAllowed(
                "only the owner withdraws an invitation to be an admin or the owner",
            )));
        }
        let done = sqlx::query(
            "UPDATE member_links SET revoked_at = $1 WHERE team_id = $2 AND kind = 'invitation' \
             AND email = $3 AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(self.now())
        .bind(&actor.team_id)
        .bind(email.trim())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(done.rows_affected()))
    }

    /// An invitation for the first owner of a new team, made by the operator.
    pub async fn invite_owner(
        &self,
        team_id: &str,
        email: &str,
        ttl_ms: i64,
    ) -> Result<Result<String, MemberError>, StoreError> {
        if let Err(e) = check_email(email) {
            return Ok(Err(e));
        }
        Ok(Ok(self
            .new_link(NewLink {
                kind: LinkKind::Invitation,
                team_id,
                email,
                role: Some(UserRole::Owner),
                user_id: None,
                created_by: None,
                ttl_ms,
            })
            .await?))
    }

    /// Accepts an invitation: the new member with `name` and `password`. A removed member of the
    /// same team comes back as the same person (their past sessions are theirs).
    pub async fn accept_invitation(
        &self,
        token: &str,
        name: &str,
        password: &str,
    ) -> Result<Result<UserRecord, MemberError>, StoreError> {
        let name = match check_name(name) {
            Ok(n) => n.to_owned(),
            Err(e) => return Ok(Err(e)),
        };
        let mut tx = self.pool.begin().await?;
        let link = match self.take_link(&mut tx, LinkKind::Invitation, token).await? {
            Ok(link) => link,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = check_password(password, &link.email) {
            return Ok(Err(e));
        }
        let role = UserRole::parse(link.role.as_deref().unwrap_or("member"))?;
        if let Some(by) = &link.created_by {
            let issuer = super::issued::issuer_role(&mut tx, &link.team_id, by).await?;
            if !issuer.is_some_and(|issuer| super::issued::may_invite(issuer, role)) {
                // Its maker left, or may no longer invite to that role.
                return Ok(Err(MemberError::Link(Denied::Revoked)));
            }
        }
        if role == UserRole::Owner {
            let owners: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM users WHERE team_id = $1 AND role = 'owner' AND removed_at IS NULL",
            )
            .bind(&link.team_id)
            .fetch_one(&mut *tx)
            .await?;
            if owners > 0 {
                if link.created_by.is_some() {
                    return Ok(Err(MemberError::Conflict("this team already has an owner")));
                }
                // The operator's `relay admin reset-owner`: the owner hands over on acceptance
                // and stays on as an admin.
                sqlx::query(
                    "UPDATE users SET role = 'admin' WHERE team_id = $1 AND role = 'owner' \
                     AND removed_at IS NULL",
                )
                .bind(&link.team_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        let hash = self.passwords.hash(password).await?;
        let existing = sqlx::query("SELECT id, team_id, removed_at FROM users WHERE email = $1")
            .bind(&link.email)
            .fetch_optional(&mut *tx)
            .await?;
        let id = match existing {
            Some(row)
                if row.try_get::<String, _>("team_id")? == link.team_id
                    && row.try_get::<Option<i64>, _>("removed_at")?.is_some() =>
            {
                let id: String = row.try_get("id")?;
                sqlx::query(
                    "UPDATE users SET name = $1, role = $2, password_hash = $3, removed_at = NULL \
                     WHERE id = $4",
                )
                .bind(&name)
                .bind(role.as_str())
                .bind(&hash)
                .bind(&id)
                .execute(&mut *tx)
                .await?;
                id
            }
            Some(_) => {
                return Ok(Err(MemberError::Conflict(
                    "this address already has an account on this relay",
                )))
            }
            None => {
                let id = secrets::new_id()?;
                sqlx::query(
                    "INSERT INTO users (id, team_id, email, name, role, password_hash, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                )
                .bind(&id)
                .bind(&link.team_id)
                .bind(&link.email)
                .bind(&name)
                .bind(role.as_str())
                .bind(&hash)
                .bind(self.now())
                .execute(&mut *tx)
                .await?;
                id
            }
        };
        tx.commit().await?;
        Ok(Ok(UserRecord {
            id,
            team_id: link.team_id,
            email: link.email,
            name,
            role,
        }))
    }

    /// Changes a member's role; returns the member as they were, and what was withdrawn: the
    /// pending reset links made for them, and, when an admin becomes a member, everything they
    /// issued. The owner changes admins' and members' roles; admins promote members; nobody
    /// changes their own or the owner's.
    pub async fn set_role(
        &self,
        actor: &UserRecord,
        target_id: &str,
        role: UserRole,
    ) -> Result<Result<(UserRecord, Withdrawn), MemberError>, StoreError> {
        let Some(target) = self.member(&actor.team_id, target_id).await? else {
            return Ok(Err(MemberError::NotFound));
        };
        let refusal = if !actor.role.manages_team() {
            Some("only the owner and admins change roles")
        } else if target.id == actor.id {
            Some("you cannot change your own role")
        } else if role == UserRole::Owner || target.role == UserRole::Owner {
            Some("the owner changes only when the owner transfers ownership")
        } else if role == UserRole::Admin && actor.role != UserRole::Owner {
            Some("only the owner makes admins")
        } else if actor.role == UserRole::Admin && target.role == UserRole::Admin {
            Some("admins cannot change other admins' roles")
        } else {
            None
        };
        if let Some(why) = refusal {
            return Ok(Err(MemberError::NotAllowed(why)));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
            .bind(role.as_str())
            .bind(&target.id)
            .execute(&mut *tx)
            .await?;
        let mut withdrawn = Withdrawn {
            password_resets: self.withdraw_resets_for(&mut tx, &target.id).await?,
            ..Withdrawn::default()
        };
        if target.role.manages_team() && !role.manages_team() {
            withdrawn = self.withdraw_issued(&mut tx, &target.id).await?;
        }
        tx.commit().await?;
        Ok(Ok((target, withdrawn)))
    }

    /// The owner hands ownership to another member, and becomes an admin.
    pub async fn transfer_ownership(
        &self,
        owner: &UserRecord,
        target_id: &str,
    ) -> Result<Result<UserRecord, MemberError>, StoreError> {
        if owner.role != UserRole::Owner {
            return Ok(Err(MemberError::NotAllowed(
                "only the owner transfers ownership",
            )));
        }
        let Some(target) = self.member(&owner.team_id, target_id).await? else {
            return Ok(Err(MemberError::NotFound));
        };
        if target.id == owner.id {
            return Ok(Err(MemberError::Conflict("you are the owner already")));
        }
        let mut tx = self.pool.begin().await?;
        // In this order: the team never has two owners (an index enforces one).
        sqlx::query("UPDATE users SET role = 'admin' WHERE id = $1")
            .bind(&owner.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("UPDATE users SET role = 'owner' WHERE id = $1")
            .bind(&target.id)
            .execute(&mut *tx)
            .await?;
        // A reset link made for them as a member or admin must not reset the owner.
        self.withdraw_resets_for(&mut tx, &target.id).await?;
        tx.commit().await?;
        Ok(Ok(target))
    }

    /// Removes a member: their sign-ins end (the digests returned, to cut live connections), their
    /// pending reset links are withdrawn, and so is everything they issued (invitations, reset
    /// links, deployment codes); their sessions and recordings stay. The owner removes admins and
    /// members; admins remove members.
    pub async fn remove_member(
        &self,
        actor: &UserRecord,
        target_id: &str,
    ) -> Result<Result<Removed, MemberError>, StoreError> {
        let Some(target) = self.member(&actor.team_id, target_id).await? else {
            return Ok(Err(MemberError::NotFound));
        };
        let refusal = if !actor.role.manages_team() {
            Some("only the owner and admins remove members")
        } else if target.id == actor.id {
            Some("you cannot remove yourself")
        } else if target.role == UserRole::Owner {
            Some("the owner cannot be removed")
        } else if actor.role == UserRole::Admin && target.role == UserRole::Admin {
            Some("admins cannot remove other admins")
        } else {
            None
        };
        if let Some(why) = refusal {
            return Ok(Err(MemberError::NotAllowed(why)));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET removed_at = $1 WHERE id = $2")
            .bind(self.now())
            .bind(&target.id)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE member_links SET revoked_at = $1 WHERE user_id = $2 AND used_at IS NULL \
             AND revoked_at IS NULL",
        )
        .bind(self.now())
        .bind(&target.id)
        .execute(&mut *tx)
        .await?;
        let withdrawn = self.withdraw_issued(&mut tx, &target.id).await?;
        let ended = self.end_sign_ins(&mut tx, &target.id, None).await?;
        tx.commit().await?;
        Ok(Ok(Removed {
            member: target,
            ended,
            withdrawn,
        }))
    }

    /// Changes the user's own password after checking the current one; every other sign-in of
    /// theirs ends (digests returned), the one in use (`current_token`) stays.
    pub async fn change_password(
        &self,
        user: &UserRecord,
        current_token: &str,
        current: &str,
        new: &str,
    ) -> Result<Result<Vec<String>, MemberError>, StoreError> {
        let stored: Option<String> = sqlx::query_scalar(
            "SELECT password_hash FROM users WHERE id = $1 AND removed_at IS NULL",
        )
        .bind(&user.id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(stored) = stored else {
            return Ok(Err(MemberError::NotFound));
        };
        if !self.passwords.verify(current, Some(&stored)).await {
            return Ok(Err(MemberError::WrongPassword));
        }
        if let Err(e) = check_password(new, &user.email) {
            return Ok(Err(e));
        }
        let hash = self.passwords.hash(new).await?;
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(&hash)
            .bind(&user.id)
            .execute(&mut *tx)
            .await?;
        let keep = secrets::digest(current_token);
        let ended = self.end_sign_ins(&mut tx, &user.id, Some(&keep)).await?;
        tx.commit().await?;
        Ok(Ok(ended))
    }

    /// A one-time password-reset link for a member, valid for `ttl_ms`. The owner makes them for
    /// admins and members, admins for members.
    pub async fn password_reset_link(
        &self,
        actor: &UserRecord,
        target_id: &str,
        ttl_ms: i64,
    ) -> Result<Result<String, MemberError>, StoreError> {
        let Some(target) = self.member(&actor.team_id, target_id).await? else {
            return Ok(Err(MemberError::NotFound));
        };
        let refusal = if !actor.role.manages_team() {
            Some("only the owner and admins reset passwords")
        } else if target.id == actor.id {
            Some("change your own password with your current one")
        } else if target.role == UserRole::Owner
            || (actor.role == UserRole::Admin && target.role == UserRole::Admin)
        {
            Some("admins reset only members' passwords")
        } else {
            None
        };
        if let Some(why) = refusal {
            return Ok(Err(MemberError::NotAllowed(why)));
        }
        Ok(Ok(self
            .new_link(NewLink {
                kind: LinkKind::PasswordReset,
                team_id: &actor.team_id,
                email: &target.email,
                role: None,
                user_id: Some(&target.id),
                created_by: Some(&actor.id),
                ttl_ms,
            })
            .await?))
    }

    /// Sets a password through a reset link: every sign-in of the member ends (digests returned).
    pub async fn reset_password(
        &self,
        token: &str,
        password: &str,
    ) -> Result<Result<(UserRecord, Vec<String>), MemberError>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let link = match self
            .take_link(&mut tx, LinkKind::PasswordReset, token)
            .await?
        {
            Ok(link) => link,
            Err(e) => return Ok(Err(e)),
        };
        if let Err(e) = check_password(password, &link.email) {
            return Ok(Err(e));
        }
        let user_id = link.user_id.unwrap_or_default();
        let row = sqlx::query(
            "SELECT id, team_id, email, name, role FROM users WHERE id = $1 AND removed_at IS NULL",
        )
        .bind(&user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(user) = row.as_ref().map(user_from_row).transpose()? else {
            return Ok(Err(MemberError::Link(Denied::Revoked)));
        };
        if let Some(by) = &link.created_by {
            let issuer = super::issued::issuer_role(&mut tx, &link.team_id, by).await?;
            if !issuer.is_some_and(|issuer| super::issued::may_reset(issuer, user.role)) {
                // Its maker left, or may not reset this person as they are now.
                return Ok(Err(MemberError::Link(Denied::Revoked)));
            }
        }
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(self.passwords.hash(password).await?)
            .bind(&user.id)
            .execute(&mut *tx)
            .await?;
        let ended = self.end_sign_ins(&mut tx, &user.id, None).await?;
        tx.commit().await?;
        Ok(Ok((user, ended)))
    }

    /// The team's invitations that still work, newest first.
    pub async fn pending_invitations(
        &self,
        team_id: &str,
    ) -> Result<Vec<PendingInvitation>, StoreError> {
        let rows = sqlx::query(
            "SELECT l.email, l.role, u.name AS invited_by, l.created_at, l.expires_at \
             FROM member_links l LEFT JOIN users u ON u.id = l.created_by \
             WHERE l.team_id = $1 AND l.kind = 'invitation' AND l.used_at IS NULL \
             AND l.revoked_at IS NULL AND l.expires_at > $2 ORDER BY l.created_at DESC",
        )
        .bind(team_id)
        .bind(self.now())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingInvitation {
                    email: r.try_get("email")?,
                    role: UserRole::parse(
                        r.try_get::<Option<&str>, _>("role")?.unwrap_or("member"),
                    )?,
                    invited_by: r.try_get("invited_by")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                })
            })
            .collect()
    }

    /// Renames the actor's team; returns the old name.
    pub async fn rename_team(
        &self,
        actor: &UserRecord,
        name: &str,
    ) -> Result<Result<String, MemberError>, StoreError> {
        if !actor.role.manages_team() {
            return Ok(Err(MemberError::NotAllowed(
                "only the owner and admins rename the team",
            )));
        }
        let name = match check_name(name) {
            Ok(n) => n,
            Err(e) => return Ok(Err(e)),
        };
        let old: String = sqlx::query_scalar("SELECT name FROM teams WHERE id = $1")
            .bind(&actor.team_id)
            .fetch_one(&self.pool)
            .await?;
        sqlx::query("UPDATE teams SET name = $1 WHERE id = $2")
            .bind(name)
            .bind(&actor.team_id)
            .execute(&self.pool)
            .await?;
        Ok(Ok(old))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::Arc;
    use std::time::Duration;

    const PW: &str = "correct horse battery staple";
    const DAY: i64 = 86_400_000;

    struct Team {
        _dir: tempfile::TempDir,
        store: Store,
        clock: Arc<ManualClock>,
        owner: UserRecord,
    }

    async fn team() -> Team {
        let dir = tempfile::tempdir().unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000));
        let store = Store::open(
            &crate::test_engines::database_url_or_default(dir.path()),
            clock.clone(),
        )
        .await
        .unwrap();
        let t = store
            .create_team("acme", "owner@acme.example", "Olive", PW)
            .await
            .unwrap();
        let owner = store.user(&t.owner_id).await.unwrap().unwrap();
        Team {
            _dir: dir,
            store,
            clock,
            owner,
        }
    }

    impl Team {
        async fn join(&self, by: &UserRecord, email: &str, role: UserRole) -> UserRecord {
            let token = self
                .store
                .invite(by, email, role, 7 * DAY)
                .await
                .unwrap()
                .unwrap();
            self.store
                .accept_invitation(&token, "Someone", PW)
                .await
                .unwrap()
                .unwrap()
        }
    }

    #[tokio::test]
    async fn an_invitation_is_used_once_before_it_expires_and_signs_in() {
        let t = team().await;
        let token = t
            .store
            .invite(&t.owner, "ada@acme.example", UserRole::Admin, 7 * DAY)
            .await
            .unwrap()
            .unwrap();
        // Weak passwords and empty names are refused without using the link up.
        let weak = t
            .store
            .accept_invitation(&token, "Ada", "short")
            .await
            .unwrap();
        assert!(matches!(weak, Err(MemberError::Invalid(_))));
        let unnamed = t.store.accept_invitation(&token, "  ", PW).await.unwrap();
        assert!(matches!(unnamed, Err(MemberError::Invalid(_))));
        let ada = t
            .store
            .accept_invitation(&token, "Ada", PW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((ada.role, ada.name.as_str()), (UserRole::Admin, "Ada"));
        assert!(t
            .store
            .sign_in("ada@acme.example", PW, DAY)
            .await
            .unwrap()
            .is_ok());
        let again = t.store.accept_invitation(&token, "Ada", PW).await.unwrap();
        assert_eq!(again, Err(MemberError::Link(Denied::Revoked)));
        assert_eq!(
            t.store.accept_invitation("forged", "X", PW).await.unwrap(),
            Err(MemberError::Link(Denied::Invalid))
        );

        let late = t
            .store
            .invite(&t.owner, "late@acme.example", UserRole::Member, DAY)
            .await
            .unwrap()
            .unwrap();
        t.clock.advance(Duration::from_millis(DAY as u64 + 1));
        assert_eq!(
            t.store.accept_invitation(&late, "Late", PW).await.unwrap(),
            Err(MemberError::Link(Denied::Expired))
        );
        // An address with an account cannot be invited again.
        let taken = t
            .store
            .invite(&t.owner, "ADA@acme.example", UserRole::Member, DAY)
            .await
            .unwrap();
        assert!(matches!(taken, Err(MemberError::Conflict(_))));
    }

    #[tokio::test]
    async fn admins_manage_members_but_not_the_owner_or_other_admins() {
        let t = team().await;
        let admin = t.join(&t.owner, "a1@acme.example", UserRole::Admin).await;
        let admin2 = t.join(&t.owner, "a2@acme.example", UserRole::Admin).await;
        let member = t.join(&admin, "m1@acme.example", UserRole::Member).await;
        let refused = |r: Result<(UserRecord, Withdrawn), MemberError>| {
            matches!(r, Err(MemberError::NotAllowed(_)))
        };

        assert!(matches!(
            t.store
                .invite(&admin, "x@acme.example", UserRole::Admin, DAY)
                .await
                .unwrap(),
            Err(MemberError::NotAllowed(_))
        ));
        assert!(matches!(
            t.store
                .invite(&member, "x@acme.example", UserRole::Member, DAY)
                .await
                .unwrap(),
            Err(MemberError::NotAllowed(_))
        ));
        assert!(refused(
            t.store
                .set_role(&admin, &admin2.id, UserRole::Member)
                .await
                .unwrap()
        ));
        assert!(refused(
            t.store
                .set_role(&admin, &t.owner.id, UserRole::Member)
                .await
                .unwrap()
        ));
        assert!(refused(
            t.store
                .set_role(&admin, &admin.id, UserRole::Member)
                .await
                .unwrap()
        ));
        assert!(refused(
            t.store
                .set_role(&member, &member.id, UserRole::Admin)
                .await
                .unwrap()
        ));
        assert!(refused(
            t.store
                .set_role(&t.owner, &admin.id, UserRole::Owner)
                .await
                .unwrap()
        ));
        // Only the owner makes admins (as with invitations), and demotes them.
        assert!(refused(
            t.store
                .set_role(&admin, &member.id, UserRole::Admin)
                .await
                .unwrap()
        ));
        let (before, _) = t
            .store
            .set_role(&t.owner, &member.id, UserRole::Admin)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(before.role, UserRole::Member);
        t.store
            .set_role(&t.owner, &admin2.id, UserRole::Member)
            .await
            .unwrap()
            .unwrap();
        let roles: Vec<_> = t
            .store
            .team_users(&t.owner.team_id)
            .await
            .unwrap()
            .into_iter()
            .map(|u| (u.email, u.role))
            .collect();
        assert!(roles.contains(&("m1@acme.example".into(), UserRole::Admin)));
        assert!(roles.contains(&("a2@acme.example".into(), UserRole::Member)));

        // Another team's ids are not found.
        let other = t
            .store
            .create_team("other", "boss@other.example", "Boss", PW)
            .await
            .unwrap();
        assert_eq!(
            t.store
                .set_role(&t.owner, &other.owner_id, UserRole::Member)
                .await
                .unwrap(),
            Err(MemberError::NotFound)
        );
        assert!(matches!(
            t.store
                .remove_member(&t.owner, &other.owner_id)
                .await
                .unwrap(),
            Err(MemberError::NotFound)
        ));
    }

    #[tokio::test]
    async fn ownership_passes_explicitly_and_the_team_has_one_owner() {
        let t = team().await;
        let admin = t.join(&t.owner, "a1@acme.example", UserRole::Admin).await;
        assert!(matches!(
            t.store.transfer_ownership(&admin, &admin.id).await.unwrap(),
            Err(MemberError::NotAllowed(_))
        ));
        t.store
            .transfer_ownership(&t.owner, &admin.id)
            .await
            .unwrap()
            .unwrap();
        let users = t.store.team_users(&t.owner.team_id).await.unwrap();
        let owners: Vec<_> = users.iter().filter(|u| u.role == UserRole::Owner).collect();
        assert_eq!(owners.len(), 1);
        assert_eq!(owners[0].id, admin.id);
        assert_eq!(
            t.store.user(&t.owner.id).await.unwrap().unwrap().role,
            UserRole::Admin
        );
    }

    #[tokio::test]
    async fn a_removed_member_cannot_sign_in_and_comes_back_as_themselves() {
        let t = team().await;
        let member = t.join(&t.owner, "m1@acme.example", UserRole::Member).await;
        let signed = t
            .store
            .sign_in("m1@acme.example", PW, DAY)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(
            t.store.remove_member(&t.owner, &t.owner.id).await.unwrap(),
            Err(MemberError::NotAllowed(_))
        ));
        let removed = t
            .store
            .remove_member(&t.owner, &member.id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(removed.member.id, member.id);
        assert_eq!(removed.ended, vec![secrets::digest(&signed.token)]);
        assert_eq!(
            t.store.user_for_token(&signed.token).await.unwrap(),
            Err(Denied::Revoked)
        );
        assert!(t
            .store
            .sign_in("m1@acme.example", PW, DAY)
            .await
            .unwrap()
            .is_err());
        assert!(t
            .store
            .team_users(&t.owner.team_id)
            .await
            .unwrap()
            .iter()
            .all(|u| u.id != member.id));
        // Invited again: the same person, with the new role.
        let back = t.join(&t.owner, "m1@acme.example", UserRole::Admin).await;
        assert_eq!((back.id, back.role), (member.id, UserRole::Admin));
    }

    #[tokio::test]
    async fn passwords_change_with_the_current_one_or_a_reset_link_ending_other_sign_ins() {
        let t = team().await;
        let member = t.join(&t.owner, "m1@acme.example", UserRole::Member).await;
        let here = t
            .store
            .sign_in("m1@acme.example", PW, DAY)
            .await
            .unwrap()
            .unwrap();
        let there = t
            .store
            .sign_in("m1@acme.example", PW, DAY)
            .await
            .unwrap()
            .unwrap();
        let new = "a much better passphrase";
        assert!(matches!(
            t.store
                .change_password(&member, &here.token, "wrong password!", new)
                .await
                .unwrap(),
            Err(MemberError::WrongPassword)
        ));
        let ended = t
            .store
            .change_password(&member, &here.token, PW, new)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            ended,
            vec![secrets::digest(&there.token)],
            "only the other sign-in ends"
        );
        assert!(t.store.user_for_token(&here.token).await.unwrap().is_ok());
        assert!(t
            .store
            .sign_in("m1@acme.example", new, DAY)
            .await
            .unwrap()
            .is_ok());

        let link = t
            .store
            .password_reset_link(&t.owner, &member.id, DAY)
            .await
            .unwrap()
            .unwrap();
        let (who, ended) = t
            .store
            .reset_password(&link, "the third passphrase")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(who.id, member.id);
        assert_eq!(ended.len(), 2, "every sign-in ends after a reset");
        assert_eq!(
            t.store
                .reset_password(&link, "the fourth passphrase")
                .await
                .unwrap(),
            Err(MemberError::Link(Denied::Revoked))
        );
        // An invitation token is no reset link.
        let invitation = t
            .store
            .invite(&t.owner, "x@acme.example", UserRole::Member, DAY)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            t.store
                .reset_password(&invitation, "the fifth passphrase")
                .await
                .unwrap(),
            Err(MemberError::Link(Denied::Invalid))
        );
    }

    #[tokio::test]
    async fn the_team_is_renamed_by_its_managers_only() {
        let t = team().await;
        let member = t.join(&t.owner, "m1@acme.example", UserRole::Member).await;
        assert!(matches!(
            t.store.rename_team(&member, "Mine").await.unwrap(),
            Err(MemberError::NotAllowed(_))
        ));
        assert_eq!(
            t.store
                .rename_team(&t.owner, "  Acme Support ")
                .await
                .unwrap(),
            Ok("acme".to_owned())
        );
        assert!(matches!(
            t.store.rename_team(&t.owner, "").await.unwrap(),
            Err(MemberError::Invalid(_))
        ));
    }
}
