//! The console's Settings and Team pages: recording policy, devices, deployment codes, the team's
//! name.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::pages::{esc, failed, not_found, page, Viewer};
use super::{local_time, time_zone};
use crate::store::{PlaybackPolicy, StoreError, TeamSettings, UserRole};
use crate::Shared;

/// Who edits the settings form: what each may change (docs/openapi.json, `OWNER_ONLY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Editor {
    /// The owner: everything.
    Owner,
    /// An admin: not widening playback, not switching recording off, not keeping recordings for
    /// fewer days. Choices they may not make are not offered.
    Admin,
    /// A member: reads them.
    Reader,
}

fn policy_select(name: &str, current: PlaybackPolicy, editor: Editor) -> String {
    let mut out = format!(
        "<select name=\"{name}\" id=\"{name}\"{}>",
        if editor == Editor::Reader {
            " disabled"
        } else {
            ""
        }
    );
    let rank = |p| PlaybackPolicy::ALL.iter().position(|q| *q == p);
    for p in PlaybackPolicy::ALL {
        // An admin may narrow who plays, never widen it.
        if editor == Editor::Admin && rank(p) > rank(current) {
            continue;
        }
        let _ = write!(
            out,
            "<option value=\"{}\"{}>{}</option>",
            p.as_str(),
            if p == current { " selected" } else { "" },
            p.label()
        );
    }
    out.push_str("</select>");
    out
}

/// A recording switch: an admin cannot switch recording off, so an admin sees a switch that is
/// on as fixed (its value still sent with the form).
fn record_switch(name: &str, on: bool, editor: Editor) -> String {
    let fixed = editor == Editor::Reader || (editor == Editor::Admin && on);
    format!(
        "<input type=\"checkbox\" name=\"{name}\" id=\"{name}\"{checked}{disabled}>{keep}",
        checked = if on { " checked" } else { "" },
        disabled = if fixed { " disabled" } else { "" },
        keep = if fixed && on && editor == Editor::Admin {
            format!("<input type=\"hidden\" name=\"{name}\" value=\"on\">")
        } else {
            String::new()
        },
    )
}

/// Zone names to offer: the canonical ones of the IANA database, without the deprecated aliases
/// (`US/Eastern`, `Asia/Calcutta`, ...) that the database keeps for old systems. The team's own
/// zone stays listed whatever it is.
fn offered_zone(name: &str) -> bool {
    const OLD_AREAS: [&str; 9] = [
        "US/",
        "Canada/",
        "Brazil/",
        "Chile/",
        "Mexico/",
        "Etc/",
        "SystemV/",
        "Arctic/",
        "Antarctica/South_Pole",
    ];
    const ALIASES: [&str; 25] = [
        "Asia/Calcutta",
        "Asia/Saigon",
        "Asia/Katmandu",
        "Asia/Rangoon",
        "Asia/Dacca",
        "Asia/Thimbu",
        "Asia/Ulan_Bator",
        "Asia/Ujung_Pandang",
        "Asia/Chongqing",
        "Asia/Chungking",
        "Asia/Harbin",
        "Asia/Macao",
        "Asia/Tel_Aviv",
        "Asia/Istanbul",
        "Asia/Ashkhabad",
        "Europe/Kiev",
        "Europe/Belfast",
        "Europe/Nicosia",
        "Europe/Tiraspol",
        "America/Buenos_Aires",
        "America/Indianapolis",
        "America/Louisville",
        "America/Godthab",
        "Atlantic/Faeroe",
        "Pacific/Samoa",
    ];
    (name.contains('/') || name == "UTC")
        && !OLD_AREAS.iter().any(|a| name.starts_with(a))
        && !ALIASES.contains(&name)
}

fn settings_body(s: &TeamSettings, editor: Editor, max_days: u64, message: Option<&str>) -> String {
    let check = |on: bool| if on { " checked" } else { "" };
    let disabled = if editor == Editor::Reader {
        " disabled"
    } else {
        ""
    };
    let kept = s.retention_days.map_or(max_days, u64::from);
    let mut zones = String::new();
    for tz in chrono_tz::TZ_VARIANTS {
        if tz.name() != s.time_zone && !offered_zone(tz.name()) {
            continue;
        }
        let _ = write!(
            zones,
            "<option{}>{}</option>",
            if tz.name() == s.time_zone {
                " selected"
            } else {
                ""
            },
            tz.name()
        );
    }
    format!(
        "{message}{note}<form method=\"post\" action=\"/console/settings\" class=\"card settings\">\
         <fieldset><legend>Unattended access</legend>\
         <label class=\"check\">{ru} Record every session (cloud session recording)</label>\
         <label>Who may play back and download{pu}</label></fieldset>\
         <fieldset><legend>Attended access</legend>\
         <label class=\"check\">{ra} Record every session (cloud session recording)</label>\
         <label>Who may play back and download{pa}</label></fieldset>\
         <fieldset><legend>Recordings</legend>\
         <label>Keep recordings for this many days (at most {max_days}, this relay's limit)\
         <input type=\"number\" name=\"retention_days\" id=\"retention_days\" min=\"{min_days}\" max=\"{max_days}\" step=\"1\" value=\"{kept}\" required{disabled}></label></fieldset>\
         <fieldset><legend>Tools in sessions</legend>\
         <label class=\"check\"><input type=\"checkbox\" name=\"allow_clipboard\" id=\"allow_clipboard\"{ac}{disabled}> Clipboard text both ways (each use is in the audit trail)</label>\
         <label class=\"check\"><input type=\"checkbox\" name=\"allow_chat\" id=\"allow_chat\"{ach}{disabled}> Chat between technician and end user (each line is in the audit trail)</label>\
         <label class=\"check\"><input type=\"checkbox\" name=\"allow_file_transfer\" id=\"allow_file_transfer\"{af}{disabled}> Files both ways (each file is in the audit trail, with its SHA-256)</label>\
         <label>Largest file, in MB<input type=\"number\" name=\"max_file_mb\" id=\"max_file_mb\" min=\"1\" max=\"1000000\" step=\"1\" value=\"{mf}\" required{disabled}></label></fieldset>\
         <fieldset><legend>Time zone</legend>\
         <label>Find a zone<input type=\"search\" id=\"time_zone_search\" data-filters=\"time_zone\" placeholder=\"City or region, e.g. Paris\" autocomplete=\"off\"{disabled}></label>\
         <label>Times in the console are shown in\
         <select name=\"time_zone\" id=\"time_zone\" size=\"6\"{disabled}>{zones}</select></label></fieldset>\
         {save}</form>\
         <p class=\"muted small\">Recorded sessions need streamer 3.5.8.0 or later, last at most 24 hours, and are kept {kept} days.{admin}</p>",
        message = message.map(|m| format!("<p class=\"saved\" role=\"status\">{}</p>", esc(m))).unwrap_or_default(),
        note = if editor == Editor::Reader { "<p class=\"notice\">Only the owner and admins can change these settings.</p>" } else { "" },
        ru = record_switch("record_unattended", s.record_unattended, editor),
        ra = record_switch("record_attended", s.record_attended, editor),
        min_days = if editor == Editor::Admin { kept } else { 1 },
        ac = check(s.allow_clipboard),
        ach = check(s.allow_chat),
        af = check(s.allow_file_transfer),
        mf = s.max_file_mb,
        pu = policy_select("playback_unattended", s.playback_unattended, editor),
        pa = policy_select("playback_attended", s.playback_attended, editor),
        save = if editor == Editor::Reader { "" } else { "<button class=\"primary\" id=\"save\">Save settings</button>" },
        admin = if editor == Editor::Admin {
            " Only the owner switches recording off, lets more roles play recordings back, or keeps them for fewer days."
        } else {
            ""
        },
    )
}

fn editor(viewer: &Viewer) -> Editor {
    match viewer.user.role {
        UserRole::Owner => Editor::Owner,
        r if r.manages_team() => Editor::Admin,
        _ => Editor::Reader,
    }
}

/// `?saved=1` after a successful save (POST-redirect-GET: a reload does not submit again).
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SavedQuery {
    saved: Option<String>,
}

pub(crate) async fn settings(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    q: Result<Query<SavedQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let saved = q.is_ok_and(|Query(q)| q.saved.is_some());
    let history = match settings_history(&shared, &viewer).await {
        Ok(h) => h,
        Err(e) => return failed(e),
    };
    match shared.store.team_settings(&viewer.user.team_id).await {
        Ok(Some(s)) => page(
            "Settings",
            &viewer,
            "/console/settings",
            &format!(
                "{}{history}",
                settings_body(
                    &s,
                    editor(&viewer),
                    shared.config.retention_days,
                    saved.then_some("Settings saved.")
                )
            ),
        )
        .into_response(),
        Ok(None) => not_found(&viewer, "Your team is missing."),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    record_unattended: Option<String>,
    record_attended: Option<String>,
    allow_clipboard: Option<String>,
    allow_chat: Option<String>,
    allow_file_transfer: Option<String>,
    max_file_mb: String,
    retention_days: Option<String>,
    playback_unattended: String,
    playback_attended: String,
    time_zone: String,
}

pub(crate) async fn save_settings(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Form(f): Form<SettingsForm>,
) -> Response {
    let refused = |status: StatusCode, message: &str, current: Option<TeamSettings>| {
        let body = match current {
            Some(s) => settings_body(&s, editor(&viewer), shared.config.retention_days, None),
            None => String::new(),
        };
        (
            status,
            page(
                "Settings",
                &viewer,
                "/console/settings",
                &format!(
                    "<p class=\"error\" role=\"alert\">{}</p>{body}",
                    esc(message)
                ),
            ),
        )
            .into_response()
    };
    let (Ok(pu), Ok(pa)) = (
        PlaybackPolicy::parse(&f.playback_unattended),
        PlaybackPolicy::parse(&f.playback_attended),
    ) else {
        return refused(
            StatusCode::BAD_REQUEST,
            "Those settings are not valid.",
            None,
        );
    };
    let Ok(max_file_mb) = f.max_file_mb.trim().parse::<u32>() else {
        return refused(
            StatusCode::BAD_REQUEST,
            "The largest file is a whole number of MB, from 1 to 1000000.",
            None,
        );
    };
    let retention_days = match f.retention_days.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(d) => match d.parse::<u32>() {
            Ok(d) => Some(d),
            Err(_) => {
                return refused(
                    StatusCode::BAD_REQUEST,
                    "Recordings are kept a whole number of days.",
                    None,
                )
            }
        },
    };
    let s = TeamSettings {
        retention_days,
        record_unattended: f.record_unattended.is_some(),
        record_attended: f.record_attended.is_some(),
        playback_unattended: pu,
        playback_attended: pa,
        time_zone: f.time_zone,
        allow_clipboard: f.allow_clipboard.is_some(),
        allow_chat: f.allow_chat.is_some(),
        allow_file_transfer: f.allow_file_transfer.is_some(),
        max_file_mb,
    };
    match crate::ops::change_settings(&shared, viewer.who(), s).await {
        Ok(_) => Redirect::to("/console/settings?saved=1").into_response(),
        Err(e) => {
            let current = shared
                .store
                .team_settings(&viewer.user.team_id)
                .await
                .ok()
                .flatten();
            refused(e.status(), e.message(), current)
        }
    }
}

/// The last settings changes, for the owner: who changed what, from what to what.
async fn settings_history(shared: &Shared, viewer: &Viewer) -> Result<String, StoreError> {
    if viewer.user.role != UserRole::Owner {
        return Ok(String::new());
    }
    let filter = crate::store::audit::AuditFilter {
        action: Some(crate::store::audit::Action::SettingsChanged),
        limit: 20,
        ..Default::default()
    };
    let events = shared
        .store
        .audit_events(&viewer.user.team_id, &filter)
        .await?;
    if events.is_empty() {
        return Ok(String::new());
    }
    let tz = time_zone(shared, &viewer.user.team_id).await?;
    let mut out = String::from(
        "<h2>Recent changes</h2><table class=\"card\" id=\"settings-history\"><thead><tr><th>When</th><th>Who</th><th>Setting</th><th>Change</th></tr></thead><tbody>",
    );
    for e in events {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&local_time(e.at, &tz)),
            esc(&e.actor_name),
            esc(&e.object.replace('_', " ")),
            esc(&e.detail)
        );
    }
    out.push_str("</tbody></table>");
    Ok(out)
}

async fn team_body(shared: &Shared, viewer: &Viewer, message: &str) -> Result<String, StoreError> {
    let manager = viewer.user.role.manages_team();
    let team_name = shared.store.team_name(&viewer.user.team_id).await?;
    let mut body = String::from(message);
    if manager {
        let _ = write!(
            body,
            "<form method=\"post\" action=\"/console/team/name\" class=\"card row-form\" id=\"rename-form\">\
             <label>Team name<input name=\"name\" id=\"team-name\" value=\"{}\" required maxlength=\"100\"></label>\
             <button class=\"primary\" id=\"rename\">Rename</button></form>",
            esc(&team_name)
        );
    } else {
        let _ = write!(
            body,
            "<p class=\"muted\" id=\"team-name\">Team: {}</p>",
            esc(&team_name)
        );
    }
    let members = shared.store.team_users(&viewer.user.team_id).await?.len();
    let _ = write!(
        body,
        "<p class=\"muted\">{members} member{s}: see <a href=\"/console/members\">Members</a>.</p>",
        s = if members == 1 { "" } else { "s" }
    );
    body.push_str("<h2>Devices</h2><table class=\"card\" id=\"devices\"><thead><tr><th>Name</th><th>Status</th><th>Streamer</th><th></th></tr></thead><tbody>");
    for d in shared.store.devices(&viewer.user.team_id).await? {
        let status = if d.revoked {
            "<span class=\"muted\">Revoked</span>"
        } else if shared.hub.device_busy(&d.id) == Some(true) {
            "<span class=\"online\">In a session</span>"
        } else if shared.hub.device_online(&d.id) {
            "<span class=\"online\">Online</span>"
        } else {
            "<span class=\"muted\">Offline</span>"
        };
        let revoke = if manager && !d.revoked {
            format!(
                "<form method=\"post\" action=\"/console/devices/{id}/revoke\" class=\"inline\" \
                 data-confirm=\"Revoke {name}? It is disconnected now and needs a new deployment code to come back.\">\
                 <button class=\"danger small\">Revoke</button></form>",
                id = esc(&d.id),
                name = esc(&d.name),
            )
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{status}</td><td>{}</td><td>{revoke}</td></tr>",
            esc(&d.name),
            esc(d.streamer_version.as_deref().unwrap_or("—"))
        );
    }
    body.push_str("</tbody></table>");
    if manager {
        body.push_str(&codes_section(shared, viewer).await?);
    }
    Ok(body)
}

/// Deployment codes (make, list, revoke) and the attended access key: owners and admins only.
async fn codes_section(shared: &Shared, viewer: &Viewer) -> Result<String, StoreError> {
    let tz = time_zone(shared, &viewer.user.team_id).await?;
    let now = shared.clock.now_ms();
    let mut out = String::from(
        "<h2>Deployment codes</h2><p class=\"muted\">Install the streamer on unattended computers with a deployment code. \
         A code is shown once, when it is made; the list keeps its first characters.</p>\
         <form method=\"post\" action=\"/console/team/deployment-code\"><button class=\"primary\" id=\"new-code\">New deployment code</button></form>",
    );
    let codes = shared.store.deployment_codes(&viewer.user.team_id).await?;
    if codes.is_empty() {
        out.push_str("<p class=\"muted\" id=\"deployment-codes\">No deployment code yet.</p>");
    } else {
        out.push_str(
            "<table class=\"card\" id=\"deployment-codes\"><thead><tr><th>Code</th><th>Made</th><th>By</th><th>Works until</th>\
             <th>State</th><th>Computers</th><th></th></tr></thead><tbody>",
        );
        for c in codes {
            let state = crate::api::deployment_code_state(&c, now);
            let revoke = if state == "active" {
                format!(
                    "<form method=\"post\" action=\"/console/deployment-codes/{id}/revoke\" class=\"inline\" \
                     data-confirm=\"Revoke this deployment code? Computers that registered with it stay; no other can register with it.\">\
                     <button class=\"danger small\">Revoke</button></form>",
                    id = esc(&c.id)
                )
            } else {
                String::new()
            };
            let _ = write!(
                out,
                "<tr data-code=\"{id}\" data-state=\"{state}\"><td><code>{hint}</code></td><td>{made}</td><td>{by}</td><td>{until}</td>\
                 <td>{label}</td><td>{devices}</td><td class=\"actions\">{revoke}</td></tr>",
                id = esc(&c.id),
                hint = esc(&c.hint.as_deref().map(|h| format!("{h}…")).unwrap_or_else(|| "—".into())),
                made = esc(&local_time(c.created_at, &tz)),
                by = esc(c.created_by_name.as_deref().unwrap_or("The relay")),
                until = esc(&local_time(c.expires_at, &tz)),
                label = match state {
                    "active" => "<span class=\"online\">Active</span>",
                    "expired" => "<span class=\"muted\">Expired</span>",
                    _ => "<span class=\"muted\">Revoked</span>",
                },
                devices = c.devices,
            );
        }
        out.push_str("</tbody></table>");
    }
    if let Some(key) = shared.store.attended_key(&viewer.user.team_id).await? {
        let _ = write!(
            out,
            "<h2>Attended access</h2><p class=\"muted\">The attended streamer an end user runs for a one-off session needs your \
             team's access key (its <code>team_key</code> setting, or <code>--team-key</code>). It lets a computer offer a session \
             to your team; it grants no access to anything.</p>\
             <p><input class=\"link-text\" id=\"attended-key\" readonly value=\"{key}\"> \
             <button class=\"copy-text\" data-for=\"attended-key\">Copy</button></p>",
            key = esc(&key)
        );
    }
    Ok(out)
}

pub(crate) async fn revoke_deployment_code(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    match crate::ops::revoke_deployment_code(&shared, viewer.who(), &id).await {
        Ok(()) => {
            let saved = "<p class=\"saved\" role=\"status\">Deployment code revoked.</p>";
            team_page(&shared, &viewer, StatusCode::OK, saved).await
        }
        Err(e) => team_page(&shared, &viewer, e.status(), &super::members::refusal(&e)).await,
    }
}

async fn team_page(
    shared: &Shared,
    viewer: &Viewer,
    status: StatusCode,
    message: &str,
) -> Response {
    match team_body(shared, viewer, message).await {
        Ok(body) => (
            status,
            page("Team and devices", viewer, "/console/team", &body),
        )
            .into_response(),
        Err(e) => failed(e),
    }
}

pub(crate) async fn team(State(shared): State<Arc<Shared>>, viewer: Viewer) -> Response {
    team_page(&shared, &viewer, StatusCode::OK, "").await
}

pub(crate) async fn new_deployment_code(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
) -> Response {
    match crate::ops::deployment_code(&shared, viewer.who()).await {
        Ok((code, expires)) => {
            let tz = match time_zone(&shared, &viewer.user.team_id).await {
                Ok(tz) => tz,
                Err(e) => return failed(e),
            };
            let message = format!(
                "<div class=\"saved\" role=\"status\"><p>New deployment code, shown only now (works until {1}):</p>\
                 <p><input class=\"link-text\" id=\"deployment-code\" readonly value=\"{0}\"> \
                 <button class=\"copy-text\" data-for=\"deployment-code\">Copy</button></p></div>",
                esc(&code),
                esc(&local_time(expires, &tz))
            );
            team_page(&shared, &viewer, StatusCode::OK, &message).await
        }
        Err(e) => team_page(&shared, &viewer, e.status(), &super::members::refusal(&e)).await,
    }
}

pub(crate) async fn revoke_device(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    match crate::ops::revoke_device(&shared, viewer.who(), &id).await {
        Ok(()) => Redirect::to("/console/team").into_response(),
        Err(e) => team_page(&shared, &viewer, e.status(), &super::members::refusal(&e)).await,
    }
}

#[derive(Deserialize)]
pub(crate) struct RenameForm {
    name: String,
}

pub(crate) async fn rename_team(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Form(f): Form<RenameForm>,
) -> Response {
    match crate::ops::rename_team(&shared, viewer.who(), &f.name).await {
        Ok(_) => {
            let saved = "<p class=\"saved\" role=\"status\">Team renamed.</p>";
            team_page(&shared, &viewer, StatusCode::OK, saved).await
        }
        Err(e) => team_page(&shared, &viewer, e.status(), &super::members::refusal(&e)).await,
    }
}
