//! What people do to their team, in one place for the JSON API and the console: each operation
//! checks the caller's role, changes the store, cuts live connections where it must, and writes the
//! audit trail. The API answers its refusals as JSON; the console shows their sentences.

use std::net::IpAddr;

use axum::http::StatusCode;

use crate::api::ApiError;
use crate::store::audit::{Action, Actor, AuditEvent, AuditFilter, NewEvent};
use crate::store::issued::Withdrawn;
use crate::store::members::MemberError;
use crate::store::{
    Denied, PlaybackPolicy, SignIn, StoreError, TeamSettings, UserRecord, UserRole,
};
use crate::Shared;

/// Who is acting: a signed-in person, with the token in use and their address.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Who<'a> {
    pub user: &'a UserRecord,
    pub token: &'a str,
    pub addr: Option<IpAddr>,
}

impl Who<'_> {
    fn actor(&self) -> Actor {
        Actor::User(self.user.id.clone(), self.user.name.clone())
    }
}

fn addr_text(addr: Option<IpAddr>) -> String {
    addr.map(|a| a.to_string()).unwrap_or_default()
}

/// Writes one event to the audit trail.
pub(crate) async fn audit(
    shared: &Shared,
    team_id: Option<&str>,
    actor: &Actor,
    action: Action,
    object: &str,
    detail: &str,
    addr: Option<IpAddr>,
) -> Result<(), StoreError> {
    shared
        .store
        .audit(NewEvent {
            team_id,
            actor,
            action,
            object,
            detail,
            client_addr: &addr_text(addr),
        })
        .await?;
    Ok(())
}

/// Writes an event done by `who` in their team.
pub(crate) async fn audit_by(
    shared: &Shared,
    who: Who<'_>,
    action: Action,
    object: &str,
    detail: &str,
) -> Result<(), StoreError> {
    audit(
        shared,
        Some(&who.user.team_id),
        &who.actor(),
        action,
        object,
        detail,
        who.addr,
    )
    .await
}

/// `"x"` as a sentence: capital first letter, full stop.
fn sentence(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => format!("{}{}.", first.to_uppercase(), c.as_str()),
        None => String::new(),
    }
}

impl From<MemberError> for ApiError {
    fn from(e: MemberError) -> Self {
        let (status, code) = match &e {
            MemberError::NotAllowed(_) => (StatusCode::FORBIDDEN, "FORBIDDEN"),
            MemberError::NotFound => (StatusCode::NOT_FOUND, "MEMBER_NOT_FOUND"),
            MemberError::Conflict(_) => (StatusCode::CONFLICT, "CONFLICT"),
            MemberError::Invalid(_) | MemberError::WrongPassword => {
                (StatusCode::BAD_REQUEST, "INVALID_VALUE")
            }
            MemberError::Link(Denied::Invalid) => (StatusCode::FORBIDDEN, "LINK_INVALID"),
            MemberError::Link(Denied::Expired) => (StatusCode::GONE, "LINK_EXPIRED"),
            MemberError::Link(Denied::Revoked) => (StatusCode::GONE, "LINK_USED"),
        };
        let message = match e {
            MemberError::NotFound => "Your team has no such member.".to_owned(),
            other => sentence(&other.to_string()),
        };
        ApiError::new(status, code, message)
    }
}

/// A store result whose inner refusal becomes an API error.
fn refused<T>(r: Result<Result<T, MemberError>, StoreError>) -> Result<T, ApiError> {
    Ok(r??)
}

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// The address people open the relay's links at: the `public_url` setting, else the host the
/// request came to, else the first server name on the listening port.
pub(crate) fn base_url(shared: &Shared, host: Option<&str>) -> String {
    if let Some(url) = &shared.config.public_url {
        return url.trim_end_matches('/').to_owned();
    }
    match host {
        Some(h) if !h.is_empty() => format!("https://{h}"),
        _ => shared.config.default_base_url(),
    }
}

// ---- Signing in and out -------------------------------------------------------------------------

/// What the per-account sign-in throttle counts a try against: the account, once the address
/// resolves to one (so that spellings the database takes for the same address share one count),
/// else the address as people read it.
async fn account_key(shared: &Shared, email: &str) -> Result<String, ApiError> {
    Ok(match shared.store.account_id(email).await? {
        Some(id) => format!("user:{id}"),
        None => format!("email:{}", crate::store::normalize_email(email)),
    })
}

/// How long a paused try waits before it is answered: a client that keeps trying on one
/// connection (a stolen token guessing, a script) gets one answer a second instead of as many as
/// the relay could give, which would slow everyone else's requests. A person waiting 15 minutes
/// does not notice the second.
pub(crate) const PAUSED_ANSWER_DELAY: std::time::Duration = std::time::Duration::from_secs(1);

/// The refusal of a paused try, given after [`PAUSED_ANSWER_DELAY`].
async fn paused(message: String) -> ApiError {
    tokio::time::sleep(PAUSED_ANSWER_DELAY).await;
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "TOO_MANY_ATTEMPTS", message)
}

/// Signs in with an e-mail and password, with the throttles, and audits the attempt.
pub(crate) async fn sign_in(
    shared: &Shared,
    email: &str,
    password: &str,
    addr: Option<IpAddr>,
) -> Result<SignIn, ApiError> {
    let email = email.trim();
    let now = shared.clock.now_ms();
    let account = account_key(shared, email).await?;
    if let Err(why) = shared.sign_ins.check(&account, addr, now).await {
        shared.metrics.sign_in_throttled();
        return Err(paused(why).await);
    }
    let signed_in = shared
        .store
        .sign_in(email, password, ms(shared.config.token_ttl_secs))
        .await?;
    match signed_in {
        Ok(s) => {
            shared.sign_ins.succeeded(&account).await;
            let actor = Actor::User(s.user.id.clone(), s.user.name.clone());
            audit(
                shared,
                Some(&s.user.team_id),
                &actor,
                Action::SignIn,
                &s.user.email,
                "",
                addr,
            )
            .await?;
            Ok(s)
        }
        Err(_) => {
            shared.sign_ins.failed(&account, addr, now).await;
            // A failed attempt on a member's address is their team's business.
            let team = shared.store.team_of_email(email).await?;
            audit(
                shared,
                team.as_deref(),
                &Actor::Anonymous(email.chars().take(254).collect()),
                Action::SignInFailed,
                email,
                "wrong e-mail address or password",
                addr,
            )
            .await?;
            Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "AUTHENTICATION_FAILED",
                "The e-mail address or password is wrong.",
            ))
        }
    }
}

/// Ends the sign-in in use, and the connections made with it.
pub(crate) async fn sign_out(shared: &Shared, who: Who<'_>) -> Result<(), ApiError> {
    shared.store.revoke_token(who.token).await?;
    let digest = crate::secrets::digest(who.token);
    let why = crate::hub::Revocation::SignedOut;
    shared.hub.revoke_technician_token(&digest, why);
    crate::fleet::notify(shared, crate::fleet::SIGN_IN_ENDED, &digest, why.as_str()).await?;
    audit_by(shared, who, Action::SignOut, &who.user.email, "").await?;
    Ok(())
}

/// Cuts the live technician connections made with these sign-ins (token digests), here and on
/// the fleet's other relays; returns how many this relay held.
async fn cut(
    shared: &Shared,
    digests: &[String],
    why: crate::hub::Revocation,
) -> Result<usize, ApiError> {
    let mut here = 0;
    for d in digests {
        here += shared.hub.revoke_technician_token(d, why);
        crate::fleet::notify(shared, crate::fleet::SIGN_IN_ENDED, d, why.as_str()).await?;
    }
    Ok(here)
}

// ---- Settings -----------------------------------------------------------------------------------

fn widens(old: PlaybackPolicy, new: PlaybackPolicy) -> bool {
    let rank = |p| PlaybackPolicy::ALL.iter().position(|q| *q == p);
    rank(new) > rank(old)
}

/// Changes the team's settings. Owners and admins change them; widening who may play recordings
/// and switching recording off are the owner's alone. Each changed setting is audited with its old
/// and new value.
pub(crate) async fn change_settings(
    shared: &Shared,
    who: Who<'_>,
    new: TeamSettings,
) -> Result<TeamSettings, ApiError> {
    if !who.user.role.manages_team() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "Only the owner and admins change the team's settings.",
        ));
    }
    let tz: chrono_tz::Tz = new.time_zone.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_VALUE",
            "time_zone must be an IANA time zone name such as Europe/Paris.",
        )
    })?;
    if !crate::store::MAX_FILE_MB_RANGE.contains(&new.max_file_mb) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_VALUE",
            "max_file_mb must be a whole number of MB from 1 to 1000000.",
        ));
    }
    let max_days = shared.config.retention_days;
    if let Some(days) = new.retention_days {
        if days == 0 || u64::from(days) > max_days {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_VALUE",
                format!(
                    "retention_days must be a whole number of days from 1 to {max_days} (this relay's retention period), or null for {max_days}."
                ),
            ));
        }
    }
    let new = TeamSettings {
        time_zone: tz.name().to_owned(),
        // The relay's own period, said as "not set", so that it follows the relay's setting.
        retention_days: new.retention_days.filter(|d| u64::from(*d) < max_days),
        ..new
    };
    let old = shared
        .store
        .team_settings(&who.user.team_id)
        .await?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "No such team."))?;
    let kept = |t: &TeamSettings| t.retention_days.map_or(max_days, u64::from);
    let owner_only = kept(&new) < kept(&old)
        || (old.record_attended && !new.record_attended)
        || (old.record_unattended && !new.record_unattended)
        || widens(old.playback_attended, new.playback_attended)
        || widens(old.playback_unattended, new.playback_unattended);
    if owner_only && who.user.role != UserRole::Owner {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "OWNER_ONLY",
            "Only the owner switches recording off, lets more roles play recordings back, or keeps recordings for fewer days.",
        ));
    }
    let onoff = |b: bool| if b { "on" } else { "off" };
    let mut changes: Vec<(&str, String, String)> = Vec::new();
    if old.record_attended != new.record_attended {
        changes.push((
            "record_attended",
            onoff(old.record_attended).into(),
            onoff(new.record_attended).into(),
        ));
    }
    if old.record_unattended != new.record_unattended {
        changes.push((
            "record_unattended",
            onoff(old.record_unattended).into(),
            onoff(new.record_unattended).into(),
        ));
    }
    if old.playback_attended != new.playback_attended {
        changes.push((
            "playback_attended",
            old.playback_attended.label().into(),
            new.playback_attended.label().into(),
        ));
    }
    if old.playback_unattended != new.playback_unattended {
        changes.push((
            "playback_unattended",
            old.playback_unattended.label().into(),
            new.playback_unattended.label().into(),
        ));
    }
    if old.allow_clipboard != new.allow_clipboard {
        changes.push((
            "allow_clipboard",
            onoff(old.allow_clipboard).into(),
            onoff(new.allow_clipboard).into(),
        ));
    }
    if old.allow_chat != new.allow_chat {
        changes.push((
            "allow_chat",
            onoff(old.allow_chat).into(),
            onoff(new.allow_chat).into(),
        ));
    }
    if old.allow_file_transfer != new.allow_file_transfer {
        changes.push((
            "allow_file_transfer",
            onoff(old.allow_file_transfer).into(),
            onoff(new.allow_file_transfer).into(),
        ));
    }
    if old.max_file_mb != new.max_file_mb {
        changes.push((
            "max_file_mb",
            format!("{} MB", old.max_file_mb),
            format!("{} MB", new.max_file_mb),
        ));
    }
    if old.time_zone != new.time_zone {
        changes.push(("time_zone", old.time_zone.clone(), new.time_zone.clone()));
    }
    if kept(&old) != kept(&new) {
        changes.push((
            "retention_days",
            format!("{} days", kept(&old)),
            format!("{} days", kept(&new)),
        ));
    }
    shared
        .store
        .set_team_settings(&who.user.team_id, &new)
        .await?;
    for (setting, from, to) in changes {
        audit_by(
            shared,
            who,
            Action::SettingsChanged,
            setting,
            &format!("{from} → {to}"),
        )
        .await?;
    }
    Ok(new)
}

// ---- Devices and codes --------------------------------------------------------------------------

fn managers_only(who: Who<'_>, what: &str) -> Result<(), ApiError> {
    if who.user.role.manages_team() {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            format!("Only the owner and admins {what}."),
        ))
    }
}

/// Revokes one of the team's devices and cuts its connection.
pub(crate) async fn revoke_device(
    shared: &Shared,
    who: Who<'_>,
    device_id: &str,
) -> Result<(), ApiError> {
    managers_only(who, "revoke devices")?;
    let name = shared
        .store
        .device(&who.user.team_id, device_id)
        .await?
        .map(|d| d.name);
    if !shared
        .store
        .revoke_device(&who.user.team_id, device_id)
        .await?
    {
        // Another team's device is indistinguishable from a missing one.
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "DEVICE_NOT_FOUND",
            "Your team has no such device.",
        ));
    }
    shared.hub.revoke_device(device_id);
    crate::fleet::notify(shared, crate::fleet::DEVICE_REVOKED, device_id, "").await?;
    audit_by(
        shared,
        who,
        Action::DeviceRevoked,
        device_id,
        name.as_deref().unwrap_or(""),
    )
    .await?;
    Ok(())
}

/// Ends a live session of the caller's team (owners and admins): the session ends with
/// `ENDED_BY_ADMIN` on both sides and its recording closes as after any other end.
pub(crate) async fn end_session(
    shared: &Shared,
    who: Who<'_>,
    session_id: &str,
) -> Result<(), ApiError> {
    managers_only(who, "end sessions")?;
    // Another team's session is indistinguishable from a missing one.
    let Some(session) = shared.store.session(&who.user.team_id, session_id).await? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Your team has no such session.",
        ));
    };
    if session.ended_at.is_some() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            "This session has already ended.",
        ));
    }
    audit_by(
        shared,
        who,
        Action::SessionTerminated,
        session_id,
        &session.device_name,
    )
    .await?;
    let message = format!(
        "{} ended the session from the relay's console.",
        who.user.name
    );
    let here = shared.hub.end_session(
        &who.user.team_id,
        session_id,
        protocol::EndReason::EndedByAdmin,
        &message,
    );
    let elsewhere = match (&shared.fleet, here) {
        (Some(fleet), false) => shared
            .store
            .live_session_relay(session_id)
            .await?
            .filter(|relay| *relay != fleet.relay_id),
        _ => None,
    };
    if elsewhere.is_some() {
        // Run by another relay of the fleet, which ends it within a heartbeat.
        let detail = format!("{}\n{message}", who.user.team_id);
        crate::fleet::notify(shared, crate::fleet::SESSION_ENDED, session_id, &detail).await?;
    } else if !here {
        // Its row says live, but no connection of this relay holds it: it is ending now.
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            "This session is ending already.",
        ));
    }
    Ok(())
}

/// A new deployment code and when it expires.
pub(crate) async fn deployment_code(
    shared: &Shared,
    who: Who<'_>,
) -> Result<(String, i64), ApiError> {
    managers_only(who, "make deployment codes")?;
    let ttl = ms(shared.config.deployment_code_ttl_secs);
    let code = shared
        .store
        .create_deployment_code_by(&who.user.team_id, ttl, Some(&who.user.id))
        .await?;
    let expires = shared.clock.now_ms().saturating_add(ttl);
    // The code itself is a credential: the trail keeps only its start.
    let shown: String = code.chars().take(4).collect();
    audit_by(
        shared,
        who,
        Action::DeploymentCodeCreated,
        &format!("{shown}…"),
        &format!(
            "expires {}",
            crate::console::local_time(
                expires,
                &crate::console::time_zone(shared, &who.user.team_id).await?
            )
        ),
    )
    .await?;
    Ok((code, expires))
}

/// The team's deployment codes (owners and admins).
pub(crate) async fn deployment_codes(
    shared: &Shared,
    who: Who<'_>,
) -> Result<Vec<crate::store::DeploymentCode>, ApiError> {
    managers_only(who, "see deployment codes")?;
    Ok(shared.store.deployment_codes(&who.user.team_id).await?)
}

/// Revokes a deployment code: no computer registers with it any more; those that did stay.
pub(crate) async fn revoke_deployment_code(
    shared: &Shared,
    who: Who<'_>,
    id: &str,
) -> Result<(), ApiError> {
    managers_only(who, "revoke deployment codes")?;
    let Some(code) = shared.store.deployment_code(&who.user.team_id, id).await? else {
        // Another team's code is indistinguishable from a missing one.
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "Your team has no such deployment code.",
        ));
    };
    if !shared
        .store
        .revoke_deployment_code(&who.user.team_id, id)
        .await?
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "CONFLICT",
            "This deployment code was revoked already.",
        ));
    }
    let shown = code
        .hint
        .as_deref()
        .map(|h| format!("{h}…"))
        .unwrap_or_default();
    audit_by(shared, who, Action::DeploymentCodeRevoked, &shown, id).await?;
    Ok(())
}

// ---- Members ------------------------------------------------------------------------------------

/// A new invitation: the link to open, and whether it was e-mailed.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct Invitation {
    pub email: String,
    pub role: UserRole,
    pub url: String,
    pub expires_at: i64,
    pub emailed: bool,
    /// Why it could not be e-mailed, when there is an SMTP setting and sending failed.
    pub email_error: Option<String>,
}

/// Invites `email` as `role`: a one-time link, e-mailed when the relay has an SMTP setting.
pub(crate) async fn invite(
    shared: &Shared,
    who: Who<'_>,
    host: Option<&str>,
    email: &str,
    role: UserRole,
) -> Result<Invitation, ApiError> {
    let ttl = ms(shared.config.invitation_ttl_secs);
    let token = refused(shared.store.invite(who.user, email, role, ttl).await)?;
    let url = format!("{}/console/invitations/{token}", base_url(shared, host));
    let expires_at = shared.clock.now_ms().saturating_add(ttl);
    let email = email.trim().to_owned();
    audit_by(shared, who, Action::MemberInvited, &email, role.as_str()).await?;
    let team_name = shared.store.team_name(&who.user.team_id).await?;
    let (emailed, email_error) = match &shared.mailer {
        None => (false, None),
        Some(mailer) => {
            let sent = mailer
                .send(
                    &email,
                    &format!("You are invited to {team_name} on Remote Support"),
                    &format!(
                        "{} invited you to join the team {team_name} as {}.\n\n\
                         Open this link to choose your name and password (it works once, until {}):\n\n{url}\n",
                        who.user.name,
                        role.as_str(),
                        crate::console::local_time(
                            expires_at,
                            &crate::console::time_zone(shared, &who.user.team_id).await?
                        ),
                    ),
                )
                .await;
            match sent {
                Ok(()) => (true, None),
                Err(e) => {
                    tracing::warn!(error = %e, "e-mailing an invitation");
                    (false, Some(e.to_string()))
                }
            }
        }
    };
    Ok(Invitation {
        email,
        role,
        url,
        expires_at,
        emailed,
        email_error,
    })
}

/// Accepts an invitation with a name and password; audited as the new member.
/// What an invitation (or a reset link) offers, checked without using it.
pub(crate) async fn peek_link(
    shared: &Shared,
    invitation: bool,
    token: &str,
) -> Result<crate::store::members::LinkOffer, ApiError> {
    refused(shared.store.peek_link(invitation, token).await)
}

pub(crate) async fn accept_invitation(
    shared: &Shared,
    token: &str,
    name: &str,
    password: &str,
    addr: Option<IpAddr>,
) -> Result<UserRecord, ApiError> {
    let user = refused(shared.store.accept_invitation(token, name, password).await)?;
    audit(
        shared,
        Some(&user.team_id),
        &Actor::User(user.id.clone(), user.name.clone()),
        Action::MemberJoined,
        &user.email,
        user.role.as_str(),
        addr,
    )
    .await?;
    Ok(user)
}

/// Changes a member's role, or, to `owner`, transfers ownership (the owner's alone).
pub(crate) async fn set_role(
    shared: &Shared,
    who: Who<'_>,
    member_id: &str,
    role: UserRole,
) -> Result<Withdrawn, ApiError> {
    if role == UserRole::Owner {
        let target = refused(shared.store.transfer_ownership(who.user, member_id).await)?;
        audit_by(
            shared,
            who,
            Action::OwnershipTransferred,
            &target.email,
            &format!(
                "{} → owner; {} → admin",
                target.role.as_str(),
                who.user.email
            ),
        )
        .await?;
        return Ok(Withdrawn::default());
    }
    let (before, withdrawn) = refused(shared.store.set_role(who.user, member_id, role).await)?;
    audit_by(
        shared,
        who,
        Action::RoleChanged,
        &before.email,
        &format!("{} → {}; {withdrawn}", before.role.as_str(), role.as_str()),
    )
    .await?;
    Ok(withdrawn)
}

/// Removes a member: their sign-ins end and their live connections are cut at once; what they
/// issued (invitations, reset links, deployment codes) is withdrawn.
pub(crate) async fn remove_member(
    shared: &Shared,
    who: Who<'_>,
    member_id: &str,
) -> Result<Withdrawn, ApiError> {
    let removed = refused(shared.store.remove_member(who.user, member_id).await)?;
    let cut_off = cut(shared, &removed.ended, crate::hub::Revocation::Removed).await?;
    audit_by(
        shared,
        who,
        Action::MemberRemoved,
        &removed.member.email,
        &format!(
            "was {}; {} sign-in(s) ended, {cut_off} live connection(s) cut; {}",
            removed.member.role.as_str(),
            removed.ended.len(),
            removed.withdrawn
        ),
    )
    .await?;
    Ok(removed.withdrawn)
}

/// Withdraws the pending invitations for `email`: their links stop working.
pub(crate) async fn withdraw_invitation(
    shared: &Shared,
    who: Who<'_>,
    email: &str,
) -> Result<(), ApiError> {
    let withdrawn = match shared.store.withdraw_invitation(who.user, email).await? {
        Err(MemberError::NotFound) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                "Your team has no pending invitation for this address.",
            ))
        }
        other => refused(Ok(other))?,
    };
    audit_by(
        shared,
        who,
        Action::InvitationWithdrawn,
        email.trim(),
        &format!("{withdrawn} link(s)"),
    )
    .await?;
    Ok(())
}

/// Changes the caller's own password; their other sign-ins end.
pub(crate) async fn change_password(
    shared: &Shared,
    who: Who<'_>,
    current: &str,
    new: &str,
) -> Result<(), ApiError> {
    // The current password is a guess like a sign-in's (a stolen token must not guess without
    // limit): the same throttles count it and pause it.
    let account = format!("user:{}", who.user.id);
    let now = shared.clock.now_ms();
    if let Err(why) = shared.sign_ins.check(&account, who.addr, now).await {
        shared.metrics.sign_in_throttled();
        return Err(paused(why).await);
    }
    let ended = match shared
        .store
        .change_password(who.user, who.token, current, new)
        .await?
    {
        Err(MemberError::WrongPassword) => {
            shared.sign_ins.failed(&account, who.addr, now).await;
            audit_by(
                shared,
                who,
                Action::PasswordChangeFailed,
                &who.user.email,
                "wrong current password",
            )
            .await?;
            return Err(MemberError::WrongPassword.into());
        }
        other => other?,
    };
    cut(shared, &ended, crate::hub::Revocation::PasswordChanged).await?;
    audit_by(
        shared,
        who,
        Action::PasswordChanged,
        &who.user.email,
        &format!("{} other sign-in(s) ended", ended.len()),
    )
    .await?;
    Ok(())
}

/// A one-time password-reset link for a member.
pub(crate) async fn password_reset_link(
    shared: &Shared,
    who: Who<'_>,
    host: Option<&str>,
    member_id: &str,
) -> Result<(String, i64), ApiError> {
    let ttl = ms(shared.config.password_reset_ttl_secs);
    let token = refused(
        shared
            .store
            .password_reset_link(who.user, member_id, ttl)
            .await,
    )?;
    let target = shared.store.user(member_id).await?;
    audit_by(
        shared,
        who,
        Action::PasswordResetIssued,
        target.as_ref().map_or(member_id, |t| t.email.as_str()),
        "",
    )
    .await?;
    Ok((
        format!("{}/console/password-reset/{token}", base_url(shared, host)),
        shared.clock.now_ms().saturating_add(ttl),
    ))
}

/// Sets a password through a reset link; every sign-in of that member ends.
pub(crate) async fn reset_password(
    shared: &Shared,
    token: &str,
    password: &str,
    addr: Option<IpAddr>,
) -> Result<UserRecord, ApiError> {
    let (user, ended) = refused(shared.store.reset_password(token, password).await)?;
    cut(shared, &ended, crate::hub::Revocation::PasswordChanged).await?;
    audit(
        shared,
        Some(&user.team_id),
        &Actor::User(user.id.clone(), user.name.clone()),
        Action::PasswordReset,
        &user.email,
        &format!("{} sign-in(s) ended", ended.len()),
        addr,
    )
    .await?;
    Ok(user)
}

/// Renames the team.
pub(crate) async fn rename_team(
    shared: &Shared,
    who: Who<'_>,
    name: &str,
) -> Result<String, ApiError> {
    let old = refused(shared.store.rename_team(who.user, name).await)?;
    let new = name.trim().to_owned();
    audit_by(
        shared,
        who,
        Action::TeamRenamed,
        &who.user.team_id,
        &format!("{old} → {new}"),
    )
    .await?;
    Ok(new)
}

// ---- The audit trail ----------------------------------------------------------------------------

/// The team's events as `filter` asks; the owner's and admins' alone.
pub(crate) async fn audit_log(
    shared: &Shared,
    who: Who<'_>,
    filter: &AuditFilter,
) -> Result<Vec<AuditEvent>, ApiError> {
    managers_only(who, "read the audit log")?;
    Ok(shared.store.audit_events(&who.user.team_id, filter).await?)
}

/// The most rows one CSV export holds (narrow the filter for more).
pub(crate) const CSV_MAX_ROWS: usize = 100_000;

/// The columns of the audit log, on its page and in its CSV, in this order.
pub(crate) const AUDIT_COLUMNS: [&str; 7] = [
    "Time",
    "Actor",
    "Actor kind",
    "Action",
    "Object",
    "Detail",
    "Client address",
];

/// One event as the page and the CSV show it, in [`AUDIT_COLUMNS`] order.
pub(crate) fn audit_row(e: &AuditEvent, tz: &chrono_tz::Tz) -> [String; 7] {
    [
        crate::console::local_time(e.at, tz),
        e.actor_name.clone(),
        e.actor_kind.clone(),
        e.action.clone(),
        e.object.clone(),
        e.detail.clone(),
        e.client_addr.clone(),
    ]
}

/// A CSV field: quoted when it must be, and never read as a formula by a spreadsheet.
pub(crate) fn csv_field(s: &str) -> String {
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// Every event `filter` matches (up to [`CSV_MAX_ROWS`]), newest first, as CSV.
pub(crate) async fn audit_csv(
    shared: &Shared,
    who: Who<'_>,
    filter: &mut AuditFilter,
    tz: &chrono_tz::Tz,
) -> Result<String, ApiError> {
    managers_only(who, "read the audit log")?;
    let mut out = AUDIT_COLUMNS.map(csv_field).join(",");
    out.push_str("\r\n");
    filter.limit = 1000;
    let mut rows = 0;
    loop {
        let page = shared.store.audit_events(&who.user.team_id, filter).await?;
        for e in &page {
            out.push_str(&audit_row(e, tz).map(|f| csv_field(&f)).join(","));
            out.push_str("\r\n");
        }
        rows += page.len();
        match page.last() {
            Some(last) if page.len() == 1000 && rows < CSV_MAX_ROWS => {
                filter.before = Some(last.id)
            }
            _ => break,
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_never_formulas() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
        assert_eq!(csv_field("line\nbreak"), "\"line\nbreak\"");
    }

    #[test]
    fn widening_is_towards_more_roles() {
        use PlaybackPolicy::*;
        assert!(widens(Owner, Admins));
        assert!(widens(Admins, Members));
        assert!(widens(Owner, Members));
        assert!(!widens(Members, Owner));
        assert!(!widens(Admins, Admins));
    }

    #[test]
    fn member_refusals_read_as_sentences_with_stable_codes() {
        let e = ApiError::from(MemberError::NotAllowed("only the owner makes admins"));
        assert_eq!(e.code(), "FORBIDDEN");
        assert_eq!(e.message(), "Only the owner makes admins.");
        assert_eq!(
            ApiError::from(MemberError::Link(Denied::Expired)).code(),
            "LINK_EXPIRED"
        );
        assert_eq!(
            ApiError::from(MemberError::Link(Denied::Revoked)).code(),
            "LINK_USED"
        );
        assert_eq!(
            ApiError::from(MemberError::NotFound).message(),
            "Your team has no such member."
        );
    }
}
