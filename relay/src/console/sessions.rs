//! The console's session pages: the list, the live ones, one session with its recordings, and
//! the download that issues its link when used.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::pages::{esc, failed, not_found, page, Viewer};

const NO_SESSION: &str = "Your team has no such session.";
use super::members::refusal;
use super::{day_start, links_for, local_time, may_play, policy_for, time_zone, urlencode};
use crate::api::ApiError;
use crate::session_log::{self, SessionQuery};
use crate::store::{RecordingState, SessionRecord, StoreError};
use crate::Shared;

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

/// Attended or Unattended.
fn access_word(access: &str) -> &'static str {
    if access == "attended" {
        "Attended"
    } else {
        "Unattended"
    }
}

async fn session_rows(
    shared: &Shared,
    viewer: &Viewer,
    sessions: &[SessionRecord],
    tz: &chrono_tz::Tz,
    with_end: bool,
) -> Result<String, StoreError> {
    let names = session_log::member_names(&shared.store, &viewer.user.team_id).await?;
    let now = shared.clock.now_ms();
    let mut rows = String::new();
    for s in sessions {
        let recording = if s.recorded {
            format!(
                "<a class=\"rec-link rec-{state}\" href=\"/console/sessions/{id}\" title=\"Recording files\" aria-label=\"Recording files\" data-recording-state=\"{state}\">\
                 <span class=\"rec-dot\"></span>{label}</a>",
                id = esc(&s.id),
                state = s.recording_state.as_str(),
                label = RecordingState::label(s.recording_state),
            )
        } else {
            "<span class=\"muted\" data-recording-state=\"not_recorded\">Not recorded</span>"
                .to_owned()
        };
        let ended = match (&s.ended_at, &s.end_reason) {
            (Some(end), reason) => format!(
                "{} <span class=\"muted small end-reason\" title=\"{code}\">{words}</span>",
                duration(end - s.started_at),
                code = esc(reason.as_deref().unwrap_or("")),
                words = esc(&reason
                    .as_deref()
                    .map(session_log::end_reason_words)
                    .unwrap_or_default()),
            ),
            (None, _) => format!(
                "<span class=\"live\">Active</span> {}",
                duration(now - s.started_at)
            ),
        };
        let end = if with_end && s.ended_at.is_none() && viewer.user.role.manages_team() {
            format!(
                "<td class=\"actions\"><form class=\"inline\" method=\"post\" action=\"/console/sessions/{id}/end\" \
                 data-confirm=\"End this session with {device}? The technician and the end user are told, and its recording closes.\">\
                 <button class=\"danger small end-session\">End session</button></form></td>",
                id = esc(&s.id),
                device = esc(&s.device_name),
            )
        } else if with_end {
            "<td></td>".to_owned()
        } else {
            String::new()
        };
        let _ = write!(
            rows,
            "<tr data-session=\"{id}\"><td>{start}</td><td>{device}</td><td>{tech}</td><td>{access}</td><td>{ended}</td><td>{recording}</td>{end}</tr>",
            id = esc(&s.id),
            start = esc(&local_time(s.started_at, tz)),
            device = esc(&s.device_name),
            tech = esc(names.get(&s.technician_id).map_or("—", String::as_str)),
            access = access_word(&s.access),
        );
    }
    Ok(rows)
}

fn session_table(rows: &str, with_end: bool) -> String {
    format!(
        "<table class=\"card\" id=\"sessions\"><thead><tr><th>Started</th><th>Device</th>\
         <th>Technician</th><th>Access</th><th>Duration</th><th>Recording</th>{end}</tr></thead><tbody>{rows}</tbody></table>",
        end = if with_end { "<th></th>" } else { "" },
    )
}

/// The Sessions page's query: dates (`YYYY-MM-DD`, in the team's zone) or a range of days back,
/// rather than the API's milliseconds.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct SessionsPageQuery {
    range: Option<String>,
    from: Option<String>,
    until: Option<String>,
    technician: Option<String>,
    device: Option<String>,
    access: Option<String>,
    recording: Option<String>,
    after: Option<String>,
}

const SESSIONS_PAGE: u32 = 50;

/// The API query a page query stands for.
fn api_query(
    q: &SessionsPageQuery,
    tz: &chrono_tz::Tz,
    now: i64,
) -> Result<SessionQuery, ApiError> {
    let invalid = |m: &str| ApiError::new(StatusCode::BAD_REQUEST, "INVALID_VALUE", m);
    let day = |d: &Option<String>| -> Result<Option<i64>, ApiError> {
        match d.as_deref().filter(|d| !d.is_empty()) {
            None => Ok(None),
            Some(d) => day_start(d, tz)
                .map(Some)
                .ok_or_else(|| invalid("Dates are written YYYY-MM-DD.")),
        }
    };
    let (from, until) = match q.range.as_deref().unwrap_or("") {
        "" | "all" => (None, None),
        "custom" => (
            day(&q.from)?,
            day(&q.until)?.map(|u| u.saturating_add(86_400_000)),
        ),
        days @ ("7" | "30" | "90") => {
            let days: i64 = days.parse().unwrap_or(7);
            (Some(now - days * 86_400_000), None)
        }
        _ => return Err(invalid("The range is 7, 30 or 90 days, custom, or all.")),
    };
    Ok(SessionQuery {
        from,
        until,
        technician: q.technician.clone(),
        device: q.device.clone(),
        access: q.access.clone(),
        recording_state: q.recording.clone(),
        live: None,
        after: q.after.clone(),
        limit: Some(SESSIONS_PAGE.to_string()),
    })
}

fn options(items: &[(String, String)], current: &Option<String>, every: &str) -> String {
    let mut out = format!("<option value=\"\">{}</option>", esc(every));
    for (value, label) in items {
        let _ = write!(
            out,
            "<option value=\"{v}\"{s}>{l}</option>",
            v = esc(value),
            s = if current.as_deref() == Some(value.as_str()) {
                " selected"
            } else {
                ""
            },
            l = esc(label),
        );
    }
    out
}

fn pair(a: &str, b: &str) -> (String, String) {
    (a.to_owned(), b.to_owned())
}

async fn sessions_body(
    shared: &Shared,
    viewer: &Viewer,
    q: &SessionsPageQuery,
) -> Result<String, ApiError> {
    let team = &viewer.user.team_id;
    let tz = time_zone(shared, team).await?;
    let api = api_query(q, &tz, shared.clock.now_ms())?;
    let filter = api.filter()?;
    let sessions = shared.store.find_sessions(team, &filter).await?;
    let technicians: Vec<_> = shared
        .store
        .team_users(team)
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect();
    let devices: Vec<_> = shared
        .store
        .devices(team)
        .await?
        .into_iter()
        .map(|d| (d.id, d.name))
        .collect();
    let range = q.range.clone().filter(|r| !r.is_empty());
    let ranges = [
        pair("7", "Last 7 days"),
        pair("30", "Last 30 days"),
        pair("90", "Last 90 days"),
        pair("custom", "Dates below"),
    ];
    let accesses = [
        pair("attended", "Attended"),
        pair("unattended", "Unattended"),
    ];
    let states: Vec<_> = [
        RecordingState::NotRecorded,
        RecordingState::Recording,
        RecordingState::Uploaded,
        RecordingState::Incomplete,
        RecordingState::Failed,
    ]
    .iter()
    .map(|s| pair(s.as_str(), RecordingState::label(*s)))
    .collect();
    let field = |v: &Option<String>| esc(v.as_deref().unwrap_or(""));
    // The same filter, for the next page and the CSV.
    let mut kept = Vec::new();
    for (k, v) in [
        ("range", &q.range),
        ("from", &q.from),
        ("until", &q.until),
        ("technician", &q.technician),
        ("device", &q.device),
        ("access", &q.access),
        ("recording", &q.recording),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            kept.push(format!("{k}={}", urlencode(v)));
        }
    }
    let mut csv = Vec::new();
    for (k, v) in [
        ("technician", &api.technician),
        ("device", &api.device),
        ("access", &api.access),
        ("recording_state", &api.recording_state),
    ] {
        if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
            csv.push(format!("{k}={}", urlencode(v)));
        }
    }
    if let Some(f) = api.from {
        csv.push(format!("from={f}"));
    }
    if let Some(u) = api.until {
        csv.push(format!("until={u}"));
    }
    let mut body = format!(
        "<form class=\"row-form card filters\" method=\"get\" action=\"/console/sessions\" id=\"session-filters\">\
         <label>When<select name=\"range\" id=\"range\">{ranges}</select></label>\
         <label>From<input type=\"date\" name=\"from\" id=\"from\" value=\"{from}\"></label>\
         <label>Until<input type=\"date\" name=\"until\" id=\"until\" value=\"{until}\"></label>\
         <label>Technician<select name=\"technician\" id=\"technician\">{techs}</select></label>\
         <label>Device<select name=\"device\" id=\"device\">{devices}</select></label>\
         <label>Access<select name=\"access\" id=\"access\">{accesses}</select></label>\
         <label>Recording<select name=\"recording\" id=\"recording\">{states}</select></label>\
         <button class=\"primary\">Filter</button> <a class=\"button\" href=\"/console/sessions\">Clear</a> \
         <a class=\"button\" id=\"sessions-csv\" href=\"/api/v1/sessions.csv?{csv}\" download>Download CSV</a></form>\
         <p class=\"muted small\">Times in {zone}. Unattended sessions have a device; attended ones are joined with a session code.</p>",
        ranges = options(&ranges, &range, "Any time"),
        from = field(&q.from),
        until = field(&q.until),
        techs = options(&technicians, &q.technician, "Everyone"),
        devices = options(&devices, &q.device, "Every device"),
        accesses = options(&accesses, &q.access, "Both"),
        states = options(&states, &q.recording, "Any"),
        csv = esc(&csv.join("&")),
        zone = esc(tz.name()),
    );
    if sessions.is_empty() {
        body.push_str(if q.after.is_some() {
            "<p class=\"muted\" id=\"no-sessions\">No more sessions.</p>"
        } else {
            "<p class=\"muted\" id=\"no-sessions\">No sessions match.</p>"
        });
    } else {
        let rows = session_rows(shared, viewer, &sessions, &tz, false).await?;
        body.push_str(&session_table(&rows, false));
    }
    let mut pages = String::new();
    if q.after.is_some() {
        let _ = write!(
            pages,
            "<a class=\"button\" id=\"first-page\" href=\"/console/sessions?{}\">Newest</a> ",
            esc(&kept.join("&"))
        );
    }
    if let Some(next) = session_log::next_after(&sessions, &filter) {
        let mut q = kept.clone();
        q.push(format!("after={}", urlencode(&next)));
        let _ = write!(
            pages,
            "<a class=\"button\" id=\"next-page\" href=\"/console/sessions?{}\">Older</a>",
            esc(&q.join("&"))
        );
    }
    if !pages.is_empty() {
        let _ = write!(body, "<p class=\"pages\">{pages}</p>");
    }
    Ok(body)
}

pub(crate) async fn sessions(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    q: Result<Query<SessionsPageQuery>, QueryRejection>,
) -> Response {
    let shown = match q {
        Ok(Query(q)) => sessions_body(&shared, &viewer, &q).await,
        Err(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_VALUE",
            "The sessions page's address takes range, from, until, technician, device, access, recording and after.",
        )),
    };
    match shown {
        Ok(body) => page("Sessions", &viewer, "/console/sessions", &body).into_response(),
        Err(e) => (
            e.status(),
            page("Sessions", &viewer, "/console/sessions", &refusal(&e)),
        )
            .into_response(),
    }
}

/// The live sessions, as the Active sessions page shows them and refreshes them.
async fn active_list(shared: &Shared, viewer: &Viewer) -> Result<String, StoreError> {
    let tz = time_zone(shared, &viewer.user.team_id).await?;
    let filter = crate::store::SessionFilter {
        live: true,
        limit: 1000,
        ..Default::default()
    };
    let sessions = shared
        .store
        .find_sessions(&viewer.user.team_id, &filter)
        .await?;
    // When the list was made, by the relay's clock in the team's zone (the page says it).
    let made = format!(
        "<span id=\"list-made\" data-at=\"{}\" hidden></span>",
        esc(&local_time(shared.clock.now_ms(), &tz))
    );
    if sessions.is_empty() {
        return Ok(format!(
            "{made}<p class=\"muted\" id=\"no-sessions\">No session is active now.</p>"
        ));
    }
    let rows = session_rows(shared, viewer, &sessions, &tz, true).await?;
    Ok(format!(
        "{made}<p class=\"muted small\">Times in {zone}.</p>{table}",
        zone = esc(tz.name()),
        table = session_table(&rows, true)
    ))
}

fn active_page(viewer: &Viewer, list: &str, message: &str) -> Html<String> {
    page(
        "Active sessions",
        viewer,
        "/console/active",
        &format!(
            "{message}<p class=\"muted small\" id=\"refresh-status\" role=\"status\">Updates by itself every 5 seconds.</p>\
             <div id=\"session-list\" data-refresh=\"/console/active/list\">{list}</div>"
        ),
    )
}

pub(crate) async fn active(State(shared): State<Arc<Shared>>, viewer: Viewer) -> Response {
    match active_list(&shared, &viewer).await {
        Ok(list) => active_page(&viewer, &list, "").into_response(),
        Err(e) => failed(e),
    }
}

/// `GET /console/active/list`: the list alone, for the page to refresh itself with. A sign-in
/// that has ended answers 401 (not the sign-in page), so that the page can say so.
pub(crate) async fn active_fragment(
    State(shared): State<Arc<Shared>>,
    headers: axum::http::HeaderMap,
) -> Response {
    let Some(token) = super::cookie_token(&headers) else {
        return (StatusCode::UNAUTHORIZED, "Your sign-in has ended.").into_response();
    };
    let user = match shared.store.user_for_token(&token).await {
        Ok(Ok(user)) => user,
        Ok(Err(_)) => return (StatusCode::UNAUTHORIZED, "Your sign-in has ended.").into_response(),
        Err(e) => return failed(e),
    };
    let viewer = Viewer {
        user,
        token,
        addr: None,
        host: None,
    };
    match active_list(&shared, &viewer).await {
        Ok(list) => (
            [(axum::http::header::CACHE_CONTROL, "no-store")],
            Html(list),
        )
            .into_response(),
        Err(e) => failed(e),
    }
}

/// `POST /console/sessions/{id}/end`: an owner or admin ends a live session.
pub(crate) async fn end_session(
    State(shared): State<Arc<Shared>>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let (status, message) = match crate::ops::end_session(&shared, viewer.who(), &id).await {
        Ok(()) => (
            StatusCode::OK,
            "<p class=\"saved\" role=\"status\">The session was ended. Its recording closes as after any other end.</p>".to_owned(),
        ),
        Err(e) => (e.status(), refusal(&e)),
    };
    match active_list(&shared, &viewer).await {
        Ok(list) => (status, active_page(&viewer, &list, &message)).into_response(),
        Err(e) => failed(e),
    }
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
        Ok(None) => not_found(&viewer, NO_SESSION),
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
    let events = shared
        .store
        .session_events(&viewer.user.team_id, &s.id)
        .await?;
    // The technician by name: a member now, else the name the session's start was logged with.
    let technician = match shared.store.user(&s.technician_id).await? {
        Some(u) if u.team_id == viewer.user.team_id => u.name,
        _ => events
            .iter()
            .find(|e| e.action == "session_started")
            .map(|e| format!("{} (no longer a member)", e.actor_name))
            .unwrap_or_else(|| "A former member".to_owned()),
    };
    let mut body = format!(
        "<p><a href=\"/console/sessions\" id=\"back\">← All sessions</a></p>\
         <dl class=\"facts card\" id=\"session-facts\">\
         <div><dt>Computer</dt><dd id=\"device\">{device}</dd></div>\
         <div><dt>Technician</dt><dd id=\"technician\">{technician}</dd></div>\
         <div><dt>Access</dt><dd>{access}</dd></div>\
         <div><dt>Started</dt><dd>{start}</dd></div>\
         <div><dt>Duration</dt><dd>{lasted}</dd></div>\
         <div><dt>How it ended</dt><dd>{ended}</dd></div></dl>\
         <p class=\"muted small\">Times in {zone}.</p>",
        device = esc(&s.device_name),
        technician = esc(&technician),
        access = if s.access == "attended" {
            "Attended"
        } else {
            "Unattended"
        },
        start = esc(&local_time(s.started_at, &tz)),
        lasted = s
            .ended_at
            .map(|e| duration(e - s.started_at))
            .unwrap_or_else(|| "live".into()),
        ended = esc(&s
            .end_reason
            .as_deref()
            .map(session_log::end_reason_words)
            .unwrap_or_else(|| "It is still going on.".into())),
        zone = esc(tz.name()),
    );
    let _ = write!(
        body,
        "<p id=\"recording-state\" data-recording-state=\"{state}\"><strong>{label}.</strong> {sentence}</p>",
        state = s.recording_state.as_str(),
        label = RecordingState::label(s.recording_state),
        sentence = RecordingState::sentence(s.recording_state),
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
            "<div id=\"player-box\" class=\"card hidden\" tabindex=\"-1\"><video id=\"player\" preload=\"metadata\"></video>\
             <div class=\"timeline\"><input type=\"range\" id=\"timeline\" min=\"0\" max=\"0\" step=\"0.1\" value=\"0\" aria-label=\"Position in the monitor's recording, all parts\">\
             <div id=\"marks\" aria-hidden=\"true\"></div></div>\
             <div class=\"player-bar\"><button id=\"pause\" class=\"small\">Pause</button><span id=\"clock\" class=\"small\"></span><p id=\"player-title\" class=\"muted small\"></p>\
             <label class=\"inline-label\">Speed <select id=\"speed\"><option value=\"0.5\">0.5×</option><option value=\"1\" selected>1×</option>\
             <option value=\"1.5\">1.5×</option><option value=\"2\">2×</option><option value=\"4\">4×</option><option value=\"8\">8×</option></select></label>\
             <p class=\"muted small keys\">Keys: ← → 5 s, J L 10 s, Home End, Space pause, &lt; &gt; speed</p></div></div>",
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
    // Monitors are numbered from 1 in the order they were first recorded, with their names.
    let labels: BTreeMap<String, String> = by_monitor
        .iter()
        .enumerate()
        .flat_map(|(n, (_, _, files))| {
            files
                .iter()
                .map(move |f| (f.id.clone(), format!("Monitor {}, part {}", n + 1, f.seq)))
        })
        .collect();
    for (n, (key, name, files)) in by_monitor.into_iter().enumerate() {
        let monitor = format!("{}: {}", n + 1, esc(&name));
        let playable = |f: &crate::store::RecordingFile| {
            allowed && (f.state == "complete" || f.state == "incomplete")
        };
        let parts = files.iter().filter(|f| playable(f)).count();
        let total: i64 = files
            .iter()
            .filter(|f| playable(f))
            .filter_map(|f| f.duration_ms)
            .sum();
        let play_all = if parts > 0 {
            format!(
                "<p><button class=\"primary play-monitor\" data-monitor=\"{n}\">Play monitor {m}</button> \
                 <span class=\"muted small\">{parts} part{s}, {total} in all, played as one recording</span></p>",
                m = n + 1,
                s = if parts == 1 { "" } else { "s" },
                total = duration(total),
            )
        } else {
            String::new()
        };
        let _ = write!(
            body,
            "<h2 data-monitor=\"{key}\">Monitor {monitor}</h2>{play_all}<table class=\"card files\" data-monitor-index=\"{n}\" data-monitor-title=\"Monitor {monitor}\">\
             <thead><tr><th>Part</th><th>Start</th><th>Duration</th><th>Size</th>\
             <th>Video</th><th>Why a new file</th><th>State</th><th></th></tr></thead><tbody>",
            key = esc(&key),
        );
        for f in files {
            // No link in the page: Play asks for fresh ones when clicked, Download goes through
            // the console, which issues one then (a page left open keeps working).
            let actions = if playable(&f) {
                format!(
                    "<button class=\"play\" data-file=\"{id}\" data-title=\"{title}\">Play from here</button> \
                     <a class=\"button download\" href=\"/console/recordings/{id}/download\" download>Download</a> \
                     <button class=\"copy\" data-file=\"{id}\">Copy links</button>",
                    id = esc(&f.id),
                    title = esc(labels.get(&f.id).map_or("", String::as_str)),
                )
            } else {
                String::new()
            };
            let _ = write!(
                body,
                "<tr data-file=\"{id}\" data-duration=\"{ms}\"{playable}><td data-label=\"Part\">{seq}</td><td data-label=\"Start\">{start}</td>\
                 <td data-label=\"Duration\">{dur}</td><td data-label=\"Size\">{size}</td><td data-label=\"Video\">{w}×{h}, {fps} fps, {orient}</td>\
                 <td data-label=\"Why a new file\">{reason}</td><td data-label=\"State\">{state}</td><td class=\"actions\">{actions}</td></tr>",
                ms = f.duration_ms.unwrap_or(0),
                playable = if playable(&f) { " data-playable" } else { "" },
                seq = f.seq,
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
    conversation_and_files(&mut body, &events, &technician, &tz);
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

/// The session's chat, as a transcript, and the files that crossed it, each with its time, from
/// the audit trail (the same words the trail keeps as evidence).
fn conversation_and_files(
    body: &mut String,
    events: &[crate::store::audit::AuditEvent],
    technician: &str,
    tz: &chrono_tz::Tz,
) {
    const TO_COMPUTER: &str = "technician → remote computer";
    const TO_TECHNICIAN: &str = "remote computer → technician";
    body.push_str("<h2>Chat</h2>");
    let lines: Vec<_> = events.iter().filter(|e| e.action == "chat_sent").collect();
    if lines.is_empty() {
        body.push_str("<p class=\"muted\" id=\"chat\">No chat in this session.</p>");
    } else {
        body.push_str("<table class=\"card\" id=\"chat\"><thead><tr><th>When</th><th>Who</th><th>Line</th></tr></thead><tbody>");
        for e in lines {
            let (who, line) = if let Some(l) = e.detail.strip_prefix(TO_COMPUTER) {
                (technician.to_owned(), l)
            } else if let Some(l) = e.detail.strip_prefix(TO_TECHNICIAN) {
                ("End user".to_owned(), l)
            } else {
                (String::new(), e.detail.as_str())
            };
            let _ = write!(
                body,
                "<tr><td data-label=\"When\">{}</td><td data-label=\"Who\">{}</td><td data-label=\"Line\" class=\"line\">{}</td></tr>",
                esc(&local_time(e.at, tz)),
                esc(&who),
                esc(line.strip_prefix(": ").unwrap_or(line)),
            );
        }
        body.push_str("</tbody></table>");
    }
    body.push_str("<h2>Files</h2>");
    let word = |action: &str| match action {
        "file_offered" => Some("Offered"),
        "file_requested" => Some("Asked for"),
        "transfer_started" => Some("Started"),
        "transfer_completed" => Some("Arrived, SHA-256 checked"),
        "transfer_stopped" => Some("Stopped"),
        "transfer_refused" => Some("Refused by the relay"),
        _ => None,
    };
    let files: Vec<_> = events
        .iter()
        .filter_map(|e| word(&e.action).map(|w| (e, w)))
        .collect();
    if files.is_empty() {
        body.push_str("<p class=\"muted\" id=\"files-moved\">No file crossed this session.</p>");
    } else {
        body.push_str("<table class=\"card\" id=\"files-moved\"><thead><tr><th>When</th><th>What</th><th>Direction, file, size, SHA-256, outcome</th></tr></thead><tbody>");
        for (e, what) in files {
            let _ = write!(
                body,
                "<tr data-action=\"{action}\"><td data-label=\"When\">{when}</td><td data-label=\"What\">{what}</td><td data-label=\"File\" class=\"line\">{detail}</td></tr>",
                action = esc(&e.action),
                when = esc(&local_time(e.at, tz)),
                detail = esc(&e.detail),
            );
        }
        body.push_str("</tbody></table>");
    }
}

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
            return not_found(&viewer, NO_SESSION);
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
    match links_for(&shared, &viewer.user, &id, viewer.addr, super::LinkUse::Own).await {
        Ok((_, download, _)) => Redirect::to(&download).into_response(),
        Err(e) => failed(e),
    }
}
