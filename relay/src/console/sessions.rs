//! The console's session pages: the list, the live ones, one session with its recordings, and
//! the download that issues its link when used.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};

use super::pages::{esc, failed, not_found, page, Viewer};

const NO_SESSION: &str = "Your team has no such session.";
use super::{links_for, local_time, may_play, policy_for, time_zone};
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
    match links_for(&shared, &viewer.user, &id, viewer.addr).await {
        Ok((_, download, _)) => Redirect::to(&download).into_response(),
        Err(e) => failed(e),
    }
}
