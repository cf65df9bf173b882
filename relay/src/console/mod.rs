//! The web console: server-rendered pages over the relay's store, signed file links, and the JSON
//! calls under them. Every page, call and file request is authorised here, on the server, against the
//! caller's team and role (and, for recordings, the team's playback policy for that kind of access).

mod files;
mod members;
mod pages;
mod sessions;
mod team;

pub(crate) use pages::{cookie_token, fallback, refused_page};

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use crate::links::{Link, Purpose, LINK_TTL_MS};
use crate::store::audit::{Action, Actor};
use crate::store::{
    PlaybackPolicy, RecordingFile, SessionRecord, StoreError, TeamSettings, UserRecord,
};
use crate::Shared;

/// The console's name for the sign-in cookie.
/// `__Host-`: browsers take it only from this host over HTTPS, for the whole host, with no `Domain`,
/// so a sibling subdomain can neither set nor shadow it.
pub(crate) const COOKIE: &str = "__Host-relay_console";

/// The console's routes (pages, their static assets, and files through signed links).
pub(crate) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/", get(pages::root))
        .route("/console", get(pages::root))
        .route("/console/style.css", get(pages::style))
        .route("/console/console.js", get(pages::script))
        .route(
            "/console/sign-in",
            get(pages::sign_in_page).post(pages::sign_in),
        )
        .route("/console/sign-out", post(pages::sign_out))
        .route("/console/sessions", get(sessions::sessions))
        .route("/console/active", get(sessions::active))
        .route("/console/active/list", get(sessions::active_fragment))
        .route("/console/sessions/{id}/end", post(sessions::end_session))
        .route("/console/sessions/{id}", get(sessions::session))
        .route("/console/recordings/{id}/download", get(sessions::download))
        .route(
            "/console/settings",
            get(team::settings).post(team::save_settings),
        )
        .route("/console/team", get(team::team))
        .route(
            "/console/team/deployment-code",
            post(team::new_deployment_code),
        )
        .route("/console/devices/{id}/revoke", post(team::revoke_device))
        .route(
            "/console/deployment-codes/{id}/revoke",
            post(team::revoke_deployment_code),
        )
        .route("/console/team/name", post(team::rename_team))
        .route("/console/members", get(members::members))
        .route("/console/members/invite", post(members::invite))
        .route("/console/invitations/withdraw", post(members::withdraw))
        .route("/console/members/{id}/role", post(members::set_role))
        .route("/console/members/{id}/remove", post(members::remove))
        .route(
            "/console/members/{id}/password-reset",
            post(members::reset_link),
        )
        .route(
            "/console/invitations/{token}",
            get(members::invitation_page).post(members::accept),
        )
        .route(
            "/console/password-reset/{token}",
            get(members::reset_page).post(members::reset),
        )
        .route("/console/account", get(members::account))
        .route("/console/account/password", post(members::change_password))
        .route("/console/audit", get(members::audit))
        .route("/files/{id}/{purpose}", get(files::serve))
}

/// The playback policy that governs a session's recordings.
pub(crate) fn policy_for(settings: &TeamSettings, session: &SessionRecord) -> PlaybackPolicy {
    if session.access == "attended" {
        settings.playback_attended
    } else {
        settings.playback_unattended
    }
}

/// Whether `user` may play back and download `session`'s recordings.
pub(crate) async fn may_play(
    shared: &Shared,
    user: &UserRecord,
    session: &SessionRecord,
) -> Result<bool, StoreError> {
    let Some(settings) = shared.store.team_settings(&user.team_id).await? else {
        return Ok(false);
    };
    Ok(policy_for(&settings, session).allows(user.role))
}

/// The file, its session and its start in the team's time zone, when `user_id` may play it now.
pub(crate) async fn file_for_user(
    shared: &Shared,
    user_id: &str,
    file_id: &str,
) -> Result<Option<(SessionRecord, RecordingFile, String)>, StoreError> {
    let Some(user) = shared.store.user(user_id).await? else {
        return Ok(None);
    };
    let Some(file) = shared.store.recording_file(&user.team_id, file_id).await? else {
        return Ok(None);
    };
    let Some(session) = shared
        .store
        .session(&user.team_id, &file.session_id)
        .await?
    else {
        return Ok(None);
    };
    if !may_play(shared, &user, &session).await? {
        return Ok(None);
    }
    let tz = time_zone(shared, &user.team_id).await?;
    let when = local_time(file.started_at, &tz);
    Ok(Some((session, file, when)))
}

/// Whether issuing links is an audit event of its own: links handed over to be kept or shared
/// (copied, or asked for by a program) are; links for the caller's own immediate use (Play in the
/// console, a listing, the console's Download) are not, since their use is audited
/// (`file_played`, `file_downloaded`) and a page view must not add rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkUse {
    /// Audited as `link_issued`, with this detail.
    HandedOver(&'static str),
    /// Not audited until used.
    Own,
}

/// Fresh play and download links for `file_id`, issued to `user`, with their expiry.
pub(crate) async fn links_for(
    shared: &Shared,
    user: &UserRecord,
    file_id: &str,
    addr: Option<std::net::IpAddr>,
    used: LinkUse,
) -> Result<(String, String, i64), StoreError> {
    let now = shared.clock.now_ms();
    let link = |purpose| Link {
        file_id: file_id.to_owned(),
        purpose,
        user_id: user.id.clone(),
        issued_at: now,
    };
    if let LinkUse::HandedOver(detail) = used {
        crate::ops::audit(
            shared,
            Some(&user.team_id),
            &Actor::User(user.id.clone(), user.name.clone()),
            Action::LinkIssued,
            file_id,
            detail,
            addr,
        )
        .await?;
    }
    Ok((
        shared.links.url(&link(Purpose::Play)),
        shared.links.url(&link(Purpose::Download)),
        now.saturating_add(LINK_TTL_MS),
    ))
}

/// Records that `user` looked at a session's recordings.
pub(crate) async fn recordings_viewed(
    shared: &Shared,
    user: &UserRecord,
    session: &SessionRecord,
    addr: Option<std::net::IpAddr>,
) -> Result<(), StoreError> {
    crate::ops::audit(
        shared,
        Some(&user.team_id),
        &Actor::User(user.id.clone(), user.name.clone()),
        Action::RecordingsViewed,
        &session.id,
        &format!("session with {}", session.device_name),
        addr,
    )
    .await
}

/// The team's time zone (UTC when unset or unknown).
pub(crate) async fn time_zone(shared: &Shared, team_id: &str) -> Result<chrono_tz::Tz, StoreError> {
    Ok(shared
        .store
        .team_settings(team_id)
        .await?
        .and_then(|s| s.time_zone.parse().ok())
        .unwrap_or(chrono_tz::UTC))
}

/// A wall-clock time in a time zone, with the zone's abbreviation: `2026-11-27 14:03:05 CET`.
pub(crate) fn local_time(ms: i64, tz: &chrono_tz::Tz) -> String {
    use chrono::TimeZone as _;
    match tz.timestamp_millis_opt(ms) {
        chrono::LocalResult::Single(t) => t.format("%Y-%m-%d %H:%M:%S %Z").to_string(),
        _ => "—".to_owned(),
    }
}

/// Midnight starting `date` in `tz`, Unix milliseconds.
pub(super) fn day_start(date: &str, tz: &chrono_tz::Tz) -> Option<i64> {
    use chrono::TimeZone as _;
    let d = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    let t = tz
        .from_local_datetime(&d.and_hms_opt(0, 0, 0)?)
        .earliest()?;
    Some(t.timestamp_millis())
}

/// Text for a URL query value.
pub(super) fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = std::fmt::Write::write_fmt(&mut out, format_args!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_in_the_team_zone_with_its_name() {
        // 2026-11-27 12:00:00 UTC.
        let ms = 1_795_780_800_000;
        assert_eq!(local_time(ms, &chrono_tz::UTC), "2026-11-27 12:00:00 UTC");
        assert_eq!(
            local_time(ms, &chrono_tz::Europe::Paris),
            "2026-11-27 13:00:00 CET"
        );
        assert_eq!(
            local_time(ms, &chrono_tz::America::New_York),
            "2026-11-27 07:00:00 EST"
        );
    }
}
