//! What a manager issued (invitations, password-reset links, deployment codes) and its fate when
//! they leave the team or lose the right to issue it.
//!
//! Each of these admits someone or something into the team later, on the issuer's word. So the
//! word is withdrawn when the issuer is removed or demoted, and checked again when it is used: an
//! invitation, a reset link or a code works only while its issuer may still issue it, for the
//! target as the target is now (a reset link made for a member does not reset the owner that
//! member became).

use super::{Store, StoreError, UserRole};

/// What was withdrawn because its issuer left or lost the right to issue it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Withdrawn {
    /// Pending invitations they made.
    pub invitations: u64,
    /// Pending password-reset links they made.
    pub password_resets: u64,
    /// Deployment codes they made that still worked.
    pub deployment_codes: u64,
}

impl std::fmt::Display for Withdrawn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "withdrawn what they issued: {} invitation(s), {} password-reset link(s), {} deployment code(s)",
            self.invitations, self.password_resets, self.deployment_codes
        )
    }
}

/// Who issued something, as they are now: `None` when they were removed (or never existed).
pub(super) async fn issuer_role(
    tx: &mut sqlx::AnyConnection,
    team_id: &str,
    issuer_id: &str,
) -> Result<Option<UserRole>, StoreError> {
    let role: Option<String> = sqlx::query_scalar(
        "SELECT role FROM users WHERE id = $1 AND team_id = $2 AND removed_at IS NULL",
    )
    .bind(issuer_id)
    .bind(team_id)
    .fetch_optional(&mut *tx)
    .await?;
    role.map(|r| UserRole::parse(&r)).transpose()
}

/// Whether someone of role `issuer` may invite someone as `role`: the owner invites admins and
/// members, admins invite members.
pub(super) fn may_invite(issuer: UserRole, role: UserRole) -> bool {
    match role {
        UserRole::Owner => false,
        UserRole::Admin => issuer == UserRole::Owner,
        UserRole::Member => issuer.manages_team(),
    }
}

/// Whether someone of role `issuer` may reset the password of someone of role `target`: the
/// owner resets admins' and members', admins members'.
pub(super) fn may_reset(issuer: UserRole, target: UserRole) -> bool {
    match target {
        UserRole::Owner => false,
        UserRole::Admin => issuer == UserRole::Owner,
        UserRole::Member => issuer.manages_team(),
    }
}

impl Store {
    /// Withdraws everything `issuer_id` made that still works: pending invitations, pending
    /// password-reset links and deployment codes.
    pub(super) async fn withdraw_issued(
        &self,
        tx: &mut sqlx::AnyConnection,
        issuer_id: &str,
    ) -> Result<Withdrawn, StoreError> {
        let now = self.now();
        let mut withdrawn = Withdrawn::default();
        for (kind, count) in [
            ("invitation", &mut withdrawn.invitations),
            ("password_reset", &mut withdrawn.password_resets),
        ] {
            *count = sqlx::query(
                "UPDATE member_links SET revoked_at = $1 WHERE created_by = $2 AND kind = $3 \
                 AND used_at IS NULL AND revoked_at IS NULL AND expires_at > $1",
            )
            .bind(now)
            .bind(issuer_id)
            .bind(kind)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        withdrawn.deployment_codes = sqlx::query(
            "UPDATE deployment_codes SET revoked_at = $1 WHERE created_by = $2 \
             AND revoked_at IS NULL AND expires_at > $1",
        )
        .bind(now)
        .bind(issuer_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Ok(withdrawn)
    }

    /// Withdraws the pending password-reset links for `user_id` (their role is changing: a link
    /// made for them as they were must not serve them as they will be).
    pub(super) async fn withdraw_resets_for(
        &self,
        tx: &mut sqlx::AnyConnection,
        user_id: &str,
    ) -> Result<u64, StoreError> {
        Ok(sqlx::query(
            "UPDATE member_links SET revoked_at = $1 WHERE user_id = $2 AND kind = 'password_reset' \
             AND used_at IS NULL AND revoked_at IS NULL",
        )
        .bind(self.now())
        .bind(user_id)
        .execute(&mut *tx)
        .await?
        .rows_affected())
    }

    /// Whether a deployment code of `team_id` made by `created_by` was made by someone who may
    /// still make codes (the operator's and the first start's have no maker and always may).
    pub(super) async fn code_issuer_may_issue(
        &self,
        team_id: &str,
        created_by: Option<&str>,
    ) -> Result<bool, StoreError> {
        let Some(by) = created_by else {
            return Ok(true);
        };
        let mut conn = self.pool.acquire().await?;
        Ok(issuer_role(&mut conn, team_id, by)
            .await?
            .is_some_and(UserRole::manages_team))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_may_issue_what() {
        use UserRole::*;
        assert!(may_invite(Owner, Admin) && may_invite(Owner, Member) && may_invite(Admin, Member));
        assert!(
            !may_invite(Admin, Admin) && !may_invite(Member, Member) && !may_invite(Owner, Owner)
        );
        assert!(may_reset(Owner, Admin) && may_reset(Admin, Member));
        assert!(!may_reset(Admin, Admin) && !may_reset(Admin, Owner) && !may_reset(Member, Member));
    }

    #[test]
    fn withdrawn_says_what_it_counted() {
        let w = Withdrawn {
            invitations: 2,
            password_resets: 0,
            deployment_codes: 1,
        };
        assert_eq!(
            w.to_string(),
            "withdrawn what they issued: 2 invitation(s), 0 password-reset link(s), 1 deployment code(s)"
        );
    }
}
