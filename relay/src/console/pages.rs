//! The console's pages: server-rendered HTML with a little JavaScript (copying links, loading the
//! player). Every handler authorises its caller from the sign-in cookie before reading anything.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::Form;
use serde::Deserialize;

use super::{links_for, local_time, may_play, policy_for, time_zone, COOKIE};
use crate::api::ClientAddress;
use crate::store::{
    PlaybackPolicy, RecordingState, SessionRecord, StoreError, TeamSettings, UserRecord, UserRole,
};
use crate::Shared;

/// Text made safe for HTML.
pub(crate) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The sign-in token in the console's cookie.
pub(crate) fn cookie_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// The signed-in person looking at a page; anyone else is sent to the sign-in page.
pub(crate) struct Viewer {
    pub(super) user: UserRecord,
    pub(super) token: String,
    pub(super) addr: Option<std::net::IpAddr>,
    pub(super) host: Option<String>,
}

impl Viewer {
    pub(super) fn who(&self) -> crate::ops::Who<'_> {
        crate::ops::Who {
            user: &self.user,
            token: &self.token,
            addr: self.addr,
        }
    }
}

impl FromRequestParts<Arc<Shared>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, shared: &Arc<Shared>) -> Result<Self, Response> {
        let to_sign_in = || Redirect::to("/console/sign-in").into_response();
        let token = cookie_token(&parts.headers).ok_or_else(to_sign_in)?;
        match shared.store.user_for_token(&token).await {
            Ok(Ok(user)) => Ok(Viewer {
                user,
                token,
                addr: parts
                    .extensions
                    .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                    .map(|c| c.0.ip()),
                host: crate::api::request_host(&parts.headers),
            }),
            Ok(Err(_)) => Err(to_sign_in()),
            Err(e) => Err(failed(e)),
        }
    }
}

pub(super) fn failed(e: StoreError) -> Response {
    tracing::error!(error = %e, "console page failed in the store");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Html(plain_page(
            "Something went wrong",
            "<p>The relay failed; try again.</p>",
        )),
    )
        .into_response()
}

pub(super) fn plain_page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · Remote Support</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"stylesheet\" href=\"/console/style.css\"></head><body class=\"plain\">\
         <main class=\"narrow\"><div class=\"brand big\"><span class=\"logo\"></span>Remote Support</div>{body}</main></body></html>",
        t = esc(title)
    )
}

pub(super) fn page(title: &str, viewer: &Viewer, current: &str, body: &str) -> Html<String> {
    let nav = [
        ("/console/sessions", "Sessions"),
        ("/console/active", "Active sessions"),
        ("/console/settings", "Settings"),
        ("/console/team", "Team and devices"),
        ("/console/members", "Members"),
        ("/console/audit", "Audit log"),
    ];
    let mut links = String::new();
    for (href, label) in nav {
        if href == "/console/audit" && !viewer.user.role.manages_team() {
            continue;
        }
        let class = if href == current {
            " class=\"current\""
        } else {
            ""
        };
        let _ = write!(links, "<a href=\"{href}\"{class}>{label}</a>");
    }
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t} · Remote Support</title>\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <link rel=\"stylesheet\" href=\"/console/style.css\"></head><body>\
         <header><div class=\"brand\"><span class=\"logo\"></span>Remote Support</div><nav>{links}</nav>\
         <div class=\"who\"><a href=\"/console/account\" id=\"account\">{name}</a> · {role}<form method=\"post\" action=\"/console/sign-out\">\
         <button class=\"link\" id=\"sign-out\">Sign out</button></form></div></header>\
         <main><h1>{t}</h1>{body}</main><script src=\"/console/console.js\"></script></body></html>",
        t = esc(title),
        name = esc(&viewer.user.name),
        role = viewer.user.role.as_str(),
    ))
}

pub(crate) async fn root() -> Redirect {
    Redirect::to("/console/sessions")
}

pub(crate) async fn style() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("style.css"),
    )
}

pub(crate) async fn script() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("console.js"),
    )
}

fn sign_in_form(error: Option<&str>) -> String {
    let error = error
        .map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)))
        .unwrap_or_default();
    plain_page(
        "Sign in",
        &format!(
            "<h1>Sign in to the console</h1>{error}\
             <form method=\"post\" action=\"/console/sign-in\" class=\"card\">\
             <label>E-mail<input name=\"email\" id=\"email\" type=\"email\" autocomplete=\"username\" required></label>\
             <label>Password<input name=\"password\" id=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
             <button class=\"primary\" id=\"sign-in\">Sign in</button></form>"
        ),
    )
}

pub(crate) async fn sign_in_page() -> Html<String> {
    Html(sign_in_form(None))
}

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    email: String,
    password: String,
}

pub(crate) async fn sign_in(
    State(shared): State<Arc<Shared>>,
    ClientAddress(address): ClientAddress,
    Form(f): Form<SignInForm>,
) -> Response {
    match crate::ops::sign_in(&shared, &f.email, &f.password, address).await {
        Ok(s) => {
            let max_age = shared.config.token_ttl_secs;
            let cookie = format!(
                "{COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={max_age}",
                s.token
            );
            let mut r = Redirect::to("/console/sessions").into_response();
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                r.headers_mut().insert(header::SET_COOKIE, v);
            }
            r
        }
        Err(e) => (e.status(), Html(sign_in_form(Some(e.message())))).into_response(),
    }
}

pub(crate) async fn sign_out(State(shared): State<Arc<Shared>>, viewer: Viewer) -> Response {
    if let Err(e) = crate::ops::sign_out(&shared, viewer.who()).await {
        tracing::warn!(error = e.message(), "signing out");
    }
    let mut r = Redirect::to("/console/sign-in").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "relay_console=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

fn duration(ms: i64) -> String {
    let s = ms.max(0) / 1000;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

fn size(bytes: i64) -> String {
    let b = bytes.max(0) as f64;
    if b >= 1024.0 * 1024.0 {
        format!("{:.1} MB", b / 1024.0 / 1024.0)
    } else {
        format!("{:.0} KB", (b / 1024.0).ceil())
    }
}

/// The Recording column's word for a state.
pub(crate) fn recording_label(state: RecordingState) -> &'static str {
    match state {
        RecordingState::NotRecorded => "Not recorded",
        RecordingState::Recording => "Recording",
        RecordingState::Uploaded => "Uploaded",
        RecordingState::Incomplete => "Incomplete",
        RecordingState::Failed => "Failed",
    }
}

/// What a recording state means, on the session's page.
pub(crate) fn recording_sentence(state: RecordingState) -> &'static str {
    match state {
        RecordingState::NotRecorded => "The team's policy did not record this session.",
        RecordingState::Recording => "The session is being recorded; its files are listed as each one is stored, the open one when it ends.",
        RecordingState::Uploaded => "Every recording file was finished and stored: the files hold every frame the technician was shown.",
        RecordingState::Incomplete => "The relay stopped during the session (a crash or power loss): each file was kept up to its last synced fragment, so up to the last 2 seconds before the stop may be missing.",
        RecordingState::Failed => "The relay could not store the recording, so the session was ended: the files written before the failure are kept, and frames after their last synced fragment (at most 2 seconds) may be missing.",
    }
}

async fn session_rows(
    shared: &Shared,
    viewer: &Viewer,
    sessions: &[SessionRecord],
    tz: &chrono_tz::Tz,
) -> Result<String, StoreError> {
    let names: BTreeMap<String, String> = shared
        .store
        .team_users(&viewer.user.team_id)
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    let now = shared.clock.now_ms();
    let mut rows = String::new();
    for s in sessions {
        let recording = if s.recorded {
            format!(
                "<a class=\"rec-link rec-{state}\" href=\"/console/sessions/{id}\" title=\"Recording files\" aria-label=\"Recording files\" data-recording-state=\"{state}\">\
                 <span class=\"rec-dot\"></span>{label}</a>",
                id = esc(&s.id),
                state = s.recording_state.as_str(),
                label = recording_label(s.recording_state),
            )
        } else {
            "<span class=\"muted\" data-recording-state=\"not_recorded\">Not recorded</span>"
                .to_owned()
        };
        let ended = match (&s.ended_at, &s.end_reason) {
            (Some(end), reason) => format!(
                "{} <span class=\"muted small\">{}</span>",
                duration(end - s.started_at),
                esc(reason.as_deref().unwrap_or(""))
            ),
            (None, _) => format!(
                "<span class=\"live\">Active</span> {}",
                duration(now - s.started_at)
            ),
        };
        let _ = write!(
            rows,
            "<tr data-session=\"{id}\"><td>{start}</td><td>{device}</td><td>{tech}</td><td>{access}</td><td>{ended}</td><td>{recording}</td></tr>",
            id = esc(&s.id),
            start = esc(&local_time(s.started_at, tz)),
            device = esc(&s.device_name),
            tech = esc(names.get(&s.technician_id).map_or("—", String::as_str)),
            access = esc(&s.access),
        );
    }
    Ok(rows)
}

async fn session_list(
    shared: &Shared,
    viewer: &Viewer,
    active_only: bool,
) -> Result<String, StoreError> {
    let tz = time_zone(shared, &viewer.user.team_id).await?;
    let sessions: Vec<SessionRecord> = shared
        .store
        .sessions(&viewer.user.team_id)
        .await?
        .into_iter()
        .filter(|s| !active_only || s.ended_at.is_none())
        .collect();
    if sessions.is_empty() {
        return Ok(format!(
            "<p class=\"muted\">{}</p>",
            if active_only {
                "No session is active now."
            } else {
                "No sessions yet."
            }
        ));
    }
    let rows = session_rows(shared, viewer, &sessions, &tz).await?;
    Ok(format!(
        "<p class=\"muted small\">Times in {zone}.</p><table class=\"card\" id=\"sessions\"><thead><tr><th>Started</th><th>Device</th>\
         <th>Technician</th><th>Access</th><th>Duration</th><th>Recording</th></tr></thead><tbody>{rows}</tbody></table>",
        zone = esc(tz.name())
    ))
}

pub(crate) async fn sessions(State(shared): State<Arc<Shared>>, viewer: Viewer) -> Response {
    match session_list(&shared, &viewer, false).await {
        Ok(body) => page("Sessions", &viewer, "/console/sessions", &body).into_response(),
        Err(e) => failed(e),
    }
}

pub(crate) async fn active(State(shared): State<Arc<Shared>>, viewer: Viewer) -> Response {
    match session_list(&shared, &viewer, true).await {
        Ok(body) => page("Active sessions", &viewer, "/console/active", &body).into_response(),
        Err(e) => failed(e),
    }
}

fn not_found(viewer: &Viewer) -> Response {
    (
        StatusCode::NOT_FOUND,
        page(
            "Not found",
            viewer,
            "",
            "<p>Your team has no such session.</p><p><a href=\"/console/sessions\">All sessions</a></p>",
        ),
    )
        .into_response()
}

pub(crate) async fn session(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    match session_body(&shared, &viewer, &id).await {
        Ok(Some((title, body))) => {
            page(&title, &viewer, "/console/sessions", &body).into_response()
        }
        Ok(None) => not_found(&viewer),
        Err(e) => failed(e),
    }
}

async fn session_body(
    shared: &Shared,
    viewer: &Viewer,
    id: &str,
) -> Result<Option<(String, String)>, StoreError> {
    // Another team's session is indistinguishable from a missing one.
    let Some(s) = shared.store.session(&viewer.user.team_id, id).await? else {
        return Ok(None);
    };
    let tz = time_zone(shared, &viewer.user.team_id).await?;
    let files = shared.store.recording_files(&s.id).await?;
    let allowed = may_play(shared, &viewer.user, &s).await?;
    if s.recorded {
        super::recordings_viewed(shared, &viewer.user, &s, viewer.addr).await?;
    }
    let settings = shared.store.team_settings(&viewer.user.team_id).await?;
    let mut body = format!(
        "<p class=\"muted\">{access} session, started {start}{end}. Times in {zone}.</p>",
        access = if s.access == "attended" {
            "Attended"
        } else {
            "Unattended"
        },
        start = esc(&local_time(s.started_at, &tz)),
        end = s
            .ended_at
            .map(|e| format!(", lasted {}", duration(e - s.started_at)))
            .unwrap_or_default(),
        zone = esc(tz.name()),
    );
    let _ = write!(
        body,
        "<p id=\"recording-state\" data-recording-state=\"{state}\"><strong>{label}.</strong> {sentence}</p>",
        state = s.recording_state.as_str(),
        label = recording_label(s.recording_state),
        sentence = recording_sentence(s.recording_state),
    );
    if !s.recorded {
        return Ok(Some((format!("Session with {}", s.device_name), body)));
    }
    if !allowed {
        let policy = settings
            .as_ref()
            .map(|t| policy_for(t, &s).label())
            .unwrap_or("Owner only");
        let _ = write!(
            body,
            "<p class=\"notice\" id=\"not-allowed\">Your team's playback policy for these recordings is <strong>{}</strong>: \
             your role cannot play them back or download them.</p>",
            esc(policy)
        );
    } else {
        body.push_str(
            "<div id=\"player-box\" class=\"card hidden\"><video id=\"player\" controls preload=\"metadata\"></video>\
             <p id=\"player-title\" class=\"muted small\"></p></div>",
        );
    }
    if files.is_empty() {
        body.push_str("<p class=\"muted\">No recording file yet.</p>");
    }
    // Grouped by the monitor's identity, in the order the store gives (first recorded first).
    let mut by_monitor: Vec<(String, String, Vec<_>)> = Vec::new();
    for f in files {
        match by_monitor
            .iter_mut()
            .find(|(key, _, _)| *key == f.monitor_key)
        {
            Some((_, _, list)) => list.push(f),
            None => by_monitor.push((f.monitor_key.clone(), f.monitor_name.clone(), vec![f])),
        }
    }
    let labels: BTreeMap<String, String> = by_monitor
        .iter()
        .flat_map(|(_, name, files)| {
            files
                .iter()
                .map(move |f| (f.id.clone(), format!("Monitor {name}, part {}", f.seq)))
        })
        .collect();
    for (key, name, files) in by_monitor {
        let monitor = esc(&name);
        let _ = write!(
            body,
            "<h2 data-monitor=\"{key}\">Monitor {monitor}</h2><table class=\"card files\"><thead><tr><th>Start</th><th>Duration</th><th>Size</th>\
             <th>Video</th><th>Why a new file</th><th>State</th><th></th></tr></thead><tbody>",
            key = esc(&key),
        );
        for f in files {
            // No link in the page: Play asks for fresh ones when clicked, Download goes through
            // the console, which issues one then (a page left open keeps working).
            let actions = if allowed && (f.state == "complete" || f.state == "incomplete") {
                format!(
                    "<button class=\"primary play\" data-file=\"{id}\" data-title=\"{title}\">Play</button> \
                     <a class=\"button download\" href=\"/console/recordings/{id}/download\" download>Download</a> \
                     <button class=\"copy\" data-file=\"{id}\">Copy links</button>",
                    id = esc(&f.id),
                    title = esc(&format!("Monitor {name}, part {}", f.seq)),
                )
            } else {
                String::new()
            };
            let _ = write!(
                body,
                "<tr data-file=\"{id}\"><td>{start}</td><td>{dur}</td><td>{size}</td><td>{w}×{h}, {fps} fps, {orient}</td>\
                 <td>{reason}</td><td>{state}</td><td class=\"actions\">{actions}</td></tr>",
                id = esc(&f.id),
                start = esc(&local_time(f.started_at, &tz)),
                dur = f.duration_ms.map(duration).unwrap_or_else(|| "—".into()),
                size = f.size_bytes.map(size).unwrap_or_else(|| "—".into()),
                w = f.width,
                h = f.height,
                fps = f.frame_rate,
                orient = esc(&f.orientation),
                reason = esc(&f.split_reason.replace('_', " ")),
                state = esc(&f.state),
            );
        }
        body.push_str("</tbody></table>");
    }
    // Audit evidence on the page, for those who read the audit log.
    if viewer.user.role.manages_team() {
        let ids: Vec<String> = labels.keys().cloned().collect();
        let accesses = shared
            .store
            .file_accesses(&viewer.user.team_id, &ids)
            .await?;
        body.push_str("<h2>Who played or downloaded these recordings</h2>");
        if accesses.is_empty() {
            body.push_str("<p class=\"muted\" id=\"accesses\">Nobody yet.</p>");
        } else {
            body.push_str("<table class=\"card\" id=\"accesses\"><thead><tr><th>When</th><th>Who</th><th>What</th><th>File</th><th>From</th></tr></thead><tbody>");
            for e in accesses {
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(&local_time(e.at, &tz)),
                    esc(&e.actor_name),
                    if e.action == "file_played" {
                        "Played"
                    } else {
                        "Downloaded"
                    },
                    esc(labels.get(&e.object).map_or("", String::as_str)),
                    esc(&e.client_addr),
                );
            }
            body.push_str("</tbody></table>");
        }
    }
    Ok(Some((format!("Session with {}", s.device_name), body)))
}

fn policy_select(name: &str, current: PlaybackPolicy, enabled: bool) -> String {
    let mut out = format!(
        "<select name=\"{name}\" id=\"{name}\"{}>",
        if enabled { "" } else { " disabled" }
    );
    for p in PlaybackPolicy::ALL {
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

fn settings_body(s: &TeamSettings, can_edit: bool, message: Option<&str>) -> String {
    let check = |on: bool| if on { " checked" } else { "" };
    let disabled = if can_edit { "" } else { " disabled" };
    let mut zones = String::new();
    for tz in chrono_tz::TZ_VARIANTS {
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
         <label class=\"check\"><input type=\"checkbox\" name=\"record_unattended\" id=\"record_unattended\"{ru}{disabled}> Record every session (cloud session recording)</label>\
         <label>Who may play back and download{pu}</label></fieldset>\
         <fieldset><legend>Attended access</legend>\
         <label class=\"check\"><input type=\"checkbox\" name=\"record_attended\" id=\"record_attended\"{ra}{disabled}> Record every session (cloud session recording)</label>\
         <label>Who may play back and download{pa}</label></fieldset>\
         <fieldset><legend>Time zone</legend><label>Times in the console are shown in\
         <select name=\"time_zone\" id=\"time_zone\"{disabled}>{zones}</select></label></fieldset>\
         {save}</form>\
         <p class=\"muted small\">Recorded sessions need streamer 3.5.8.0 or later, last at most 24 hours, and are kept 90 days.</p>",
        message = message.map(|m| format!("<p class=\"saved\" role=\"status\">{}</p>", esc(m))).unwrap_or_default(),
        note = if can_edit { "" } else { "<p class=\"notice\">Only the owner and admins can change these settings.</p>" },
        ru = check(s.record_unattended),
        ra = check(s.record_attended),
        pu = policy_select("playback_unattended", s.playback_unattended, can_edit),
        pa = policy_select("playback_attended", s.playback_attended, can_edit),
        save = if can_edit { "<button class=\"primary\" id=\"save\">Save settings</button>" } else { "" },
    )
}

pub(crate) async fn settings(State(shared): State<Arc<Shared>>, viewer: Viewer) -> Response {
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
                settings_body(&s, viewer.user.role.manages_team(), None)
            ),
        )
        .into_response(),
        Ok(None) => not_found(&viewer),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
pub(crate) struct SettingsForm {
    record_unattended: Option<String>,
    record_attended: Option<String>,
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
            Some(s) => settings_body(&s, viewer.user.role.manages_team(), None),
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
    let s = TeamSettings {
        record_unattended: f.record_unattended.is_some(),
        record_attended: f.record_attended.is_some(),
        playback_unattended: pu,
        playback_attended: pa,
        time_zone: f.time_zone,
    };
    match crate::ops::change_settings(&shared, viewer.who(), s).await {
        Ok(saved) => match settings_history(&shared, &viewer).await {
            Ok(history) => page(
                "Settings",
                &viewer,
                "/console/settings",
                &format!(
                    "{}{history}",
                    settings_body(&saved, true, Some("Settings saved."))
                ),
            )
            .into_response(),
            Err(e) => failed(e),
        },
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
        body.push_str("<h2>Deployment codes</h2><p class=\"muted\">Install the streamer on unattended computers with a deployment code.</p>");
        body.push_str("<form method=\"post\" action=\"/console/team/deployment-code\"><button class=\"primary\">New deployment code</button></form>");
    }
    Ok(body)
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
                "<p class=\"saved\">New deployment code: <code id=\"deployment-code\">{}</code> (works until {})</p>",
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

/// `GET /console/recordings/{id}/download`: a fresh download link, issued now, then the file (a
/// redirect); the policy is checked now, not when the page was drawn.
pub(crate) async fn download(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let found = match super::file_for_user(&shared, &viewer.user.id, &id).await {
        Ok(found) => found,
        Err(e) => return failed(e),
    };
    if found.is_none() {
        let known = match shared.store.recording_file(&viewer.user.team_id, &id).await {
            Ok(known) => known.is_some(),
            Err(e) => return failed(e),
        };
        if !known {
            return not_found(&viewer);
        }
        return (
            StatusCode::FORBIDDEN,
            page(
                "Not allowed",
                &viewer,
                "",
                "<p class=\"error\" role=\"alert\">Your team's playback policy does not let your role download this recording.</p>",
            ),
        )
            .into_response();
    }
    match links_for(&shared, &viewer.user, &id, viewer.addr).await {
        Ok((_, download, _)) => Redirect::to(&download).into_response(),
        Err(e) => failed(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; relay_console=tok; b=2"),
        );
        assert_eq!(cookie_token(&h).as_deref(), Some("tok"));
        assert_eq!(cookie_token(&HeaderMap::new()), None);
    }
}
