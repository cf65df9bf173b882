//! Recording files over HTTP: signed links, byte ranges (so browsers can seek), and meaningful names.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStoreExt};
use serde::Deserialize;

use crate::links::{Link, LinkRefused, Purpose};
use crate::recording::Integrity;
use crate::store::audit::{Action, Actor};
use crate::store::{RecordingFile, SessionRecord};
use crate::Shared;

/// A link's query: the user it was issued to, when, and its signature.
#[derive(Debug, Deserialize)]
pub(crate) struct LinkQuery {
    u: String,
    t: i64,
    s: String,
}

fn refuse(status: StatusCode, code: &str, message: &str) -> Response {
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, axum::Json(body)).into_response()
}

/// The first byte range of a `Range` header over a file of `size` bytes: `Ok(None)` for no header,
/// `Err(())` for a range that cannot be served (416).
pub(crate) fn parse_range(
    value: Option<&HeaderValue>,
    size: u64,
) -> Result<Option<(u64, u64)>, ()> {
    let Some(value) = value else { return Ok(None) };
    let text = value.to_str().map_err(|_| ())?;
    let spec = text.strip_prefix("bytes=").ok_or(())?;
    // Several ranges in one request are answered with the first (browsers ask for one).
    let first = spec.split(',').next().ok_or(())?.trim();
    let (a, b) = first.split_once('-').ok_or(())?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", "") => return Err(()),
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| ())?;
            if n == 0 {
                return Err(());
            }
            (size.saturating_sub(n), size.checked_sub(1).ok_or(())?)
        }
        (a, "") => (a.parse().map_err(|_| ())?, size.checked_sub(1).ok_or(())?),
        (a, b) => {
            let (a, b): (u64, u64) = (a.parse().map_err(|_| ())?, b.parse().map_err(|_| ())?);
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if start > end || start >= size {
        return Err(());
    }
    Ok(Some((start, end)))
}

/// The name a downloaded file gets: device, start time, monitor and part, with nothing that a file
/// system or a header could misread.
pub(crate) fn download_name(session: &SessionRecord, file: &RecordingFile, when: &str) -> String {
    let safe = |s: &str| -> String {
        s.chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(64)
            .collect::<String>()
            .trim_matches('-')
            .to_owned()
    };
    let device = safe(&session.device_name);
    let monitor = safe(&file.monitor_name);
    // "2026-11-27 14:03:05 CET" -> "2026-11-27_14-03-05" (the zone's name is left out of file names).
    let when: String = when
        .chars()
        .take(19)
        .map(|c| match c {
            '0'..='9' | '-' => c,
            ' ' => '_',
            _ => '-',
        })
        .collect();
    format!("{device}_{when}_monitor-{monitor}_part-{}.mp4", file.seq)
}

/// A file the database lists and storage does not have: logged, and refused as not found.
fn missing_from_storage(file_id: &str, e: &object_store::Error) -> Response {
    tracing::error!(error = %e, file = %file_id, "recording file missing from storage");
    refuse(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "This recording file is missing from storage.",
    )
}

/// Whether the request is a browser opening the address (not a player's or a program's fetch):
/// a refusal then is a page a person can read, not JSON.
fn wants_page(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/html"))
}

/// The page for a refusal of `code`: what happened, and what to do.
fn refusal_page(code: &str, message: &str) -> String {
    use super::pages::{esc, plain_page};
    let (title, advice) = match code {
        "LINK_EXPIRED" => (
            "This link has expired",
            "Playback and download links work for 10 minutes after they are made. Open the session in the console and use Play, Download or Copy links again for a fresh one.",
        ),
        "LINK_INVALID" => (
            "This link is not valid",
            "Ask whoever sent it for a new one, or open the recording in the console.",
        ),
        "INTEGRITY_FAILED" => (
            "This recording failed its integrity check",
            "The file no longer matches what was stored, so it is not served. Tell your relay's operator.",
        ),
        _ => (
            "This recording is not available",
            "Open the session in the console to see its recordings.",
        ),
    };
    plain_page(
        title,
        &format!(
            "<h1 id=\"link-refused\" data-code=\"{code}\">{title}</h1><p>{message}</p><p class=\"muted\">{advice}</p>\
             <p><a class=\"button\" href=\"/console/sessions\">Open the console</a></p>",
            code = esc(code),
            title = esc(title),
            message = esc(message),
            advice = esc(advice),
        ),
    )
}

/// `GET /files/{id}/{purpose}?u=&t=&s=`: a recording file through a signed, 10-minute link. A
/// refusal is JSON for programs and players, and a readable page for a browser opening the link.
pub(crate) async fn serve(
    shared: State<Arc<Shared>>,
    path: Path<(String, String)>,
    query: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    addr: crate::api::ClientAddress,
) -> Response {
    let page = wants_page(&headers);
    let r = serve_file(shared, path, query, headers, addr).await;
    let is_json = r
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !page || r.status().is_success() || !is_json {
        return r;
    }
    let status = r.status();
    let body = axum::body::to_bytes(r.into_body(), 64 * 1024)
        .await
        .unwrap_or_default();
    let error: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let text = |k: &str| error["error"][k].as_str().unwrap_or("").to_owned();
    (
        status,
        axum::response::Html(refusal_page(&text("code"), &text("message"))),
    )
        .into_response()
}

async fn serve_file(
    State(shared): State<Arc<Shared>>,
    Path((file_id, purpose)): Path<(String, String)>,
    query: Result<Query<LinkQuery>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    crate::api::ClientAddress(addr): crate::api::ClientAddress,
) -> Response {
    let (Some(purpose), Ok(Query(q))) = (Purpose::parse(&purpose), query) else {
        return refuse(StatusCode::NOT_FOUND, "NOT_FOUND", "No such link.");
    };
    let link = Link {
        file_id: file_id.clone(),
        purpose,
        user_id: q.u,
        issued_at: q.t,
    };
    match shared.links.verify(&link, &q.s, shared.clock.now_ms()) {
        Ok(()) => {}
        Err(e @ LinkRefused::Tampered) => {
            tracing::warn!(file = ?file_id, "refused a tampered link");
            return refuse(StatusCode::FORBIDDEN, "LINK_INVALID", &e.to_string());
        }
        Err(e @ LinkRefused::Expired) => {
            return refuse(StatusCode::GONE, "LINK_EXPIRED", &e.to_string());
        }
    }
    // The link is genuine; the permission behind it must still hold.
    let allowed = match super::file_for_user(&shared, &link.user_id, &file_id).await {
        Ok(found) => found,
        Err(e) => {
            tracing::error!(error = %e, "file lookup failed");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "The relay failed; try again.",
            );
        }
    };
    let Some((session, file, when)) = allowed else {
        // docs/openapi.json: LINK_INVALID also for a link whose user may no longer play the file
        // (their role, the team's policy, or their membership changed).
        return refuse(
            StatusCode::FORBIDDEN,
            "LINK_INVALID",
            "The person this link was issued to may no longer play this recording.",
        );
    };
    if file.state == "deleted" || file.state == "recording" {
        return refuse(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "This recording file is not available.",
        );
    }
    // Audit evidence: a file whose bytes no longer hash to the SHA-256 recorded when it was stored is
    // reported, never served as if genuine.
    if let Some(expected) = &file.sha256 {
        // A read from the first byte (every download, a player's first request) hashes the bytes
        // as they are now; a player seeking is served on that verdict while the file provably
        // did not change (recording::Stamp).
        let from_start = headers
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok())
            .is_none_or(|r| r.trim().starts_with("bytes=0-"));
        match shared
            .recordings
            .verify(&file.object_key, expected, from_start)
            .await
        {
            Ok(Integrity::Intact) => {}
            Ok(Integrity::Altered { actual }) => {
                tracing::error!(
                    file = %file.id, %expected, %actual,
                    "recording file changed on disk since it was stored; refusing to serve it"
                );
                return refuse(
                    StatusCode::CONFLICT,
                    "INTEGRITY_FAILED",
                    "This recording file no longer matches the SHA-256 recorded when it was \
                     stored: it was changed on disk and is not served. Tell your relay's operator.",
                );
            }
            Err(e) => return missing_from_storage(&file.id, &e),
        }
    }
    let path = ObjectPath::from(file.object_key.as_str());
    let objects = shared.recordings.objects();
    let size = match objects.head(&path).await {
        Ok(meta) => meta.size,
        Err(e) => return missing_from_storage(&file.id, &e),
    };
    let range = match parse_range(headers.get(header::RANGE), size) {
        Ok(r) => r,
        Err(()) => {
            let mut r = refuse(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "BAD_RANGE",
                "That byte range is not in the file.",
            );
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                r.headers_mut().insert(header::CONTENT_RANGE, v);
            }
            return r;
        }
    };
    let (start, end) = range.unwrap_or((0, size.saturating_sub(1)));
    // Audit evidence of who saw a recording: one event for a link's first read from the file's
    // start (a player's later range requests, and its second read from 0, are the same viewing).
    if start == 0 && shared.used_links.first_use(&link, shared.clock.now_ms()) {
        let action = match purpose {
            Purpose::Play => Action::FilePlayed,
            Purpose::Download => Action::FileDownloaded,
        };
        let audited = async {
            let name = shared
                .store
                .user(&link.user_id)
                .await?
                .map(|u| u.name)
                .unwrap_or_default();
            crate::ops::audit(
                &shared,
                Some(&file.team_id),
                &Actor::User(link.user_id.clone(), name),
                action,
                &file.id,
                &format!(
                    "session {}, monitor {}, part {}",
                    session.id, file.monitor_name, file.seq
                ),
                addr,
            )
            .await
        }
        .await;
        if let Err(e) = audited {
            shared.used_links.forget(&link);
            // Not served without its trace.
            tracing::error!(error = %e, file = %file.id, "auditing a recording access failed");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "The relay failed; try again.",
            );
        }
    }
    let options = GetOptions {
        range: (size > 0).then_some(GetRange::Bounded(start..end + 1)),
        ..GetOptions::default()
    };
    let got = match objects.get_opts(&path, options).await {
        Ok(g) => g,
        Err(e) => {
            tracing::error!(error = %e, file = %file.id, "reading a recording file failed");
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "The relay could not read this file.",
            );
        }
    };
    let body = Body::from_stream(got.into_stream());
    let disposition = match purpose {
        Purpose::Play => "inline".to_owned(),
        Purpose::Download => format!(
            "attachment; filename=\"{}\"",
            download_name(&session, &file, &when)
        ),
    };
    let mut response = Response::new(body);
    *response.status_mut() = if range.is_some() {
        StatusCode::PARTIAL_CONTENT
    } else {
        StatusCode::OK
    };
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("video/mp4"));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    let length = if size == 0 { 0 } else { end - start + 1 };
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if range.is_some() {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{end}/{size}")) {
            h.insert(header::CONTENT_RANGE, v);
        }
    }
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Some(sha) = &file.sha256 {
        if let Ok(v) = HeaderValue::from_str(sha) {
            h.insert("x-content-sha256", v);
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(s: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
        parse_range(
            Some(&HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("x"))),
            size,
        )
    }

    #[test]
    fn ranges_are_read_as_browsers_send_them() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(range("bytes=0-", 10), Ok(Some((0, 9))));
        assert_eq!(range("bytes=2-5", 10), Ok(Some((2, 5))));
        assert_eq!(range("bytes=2-50", 10), Ok(Some((2, 9))));
        assert_eq!(range("bytes=-3", 10), Ok(Some((7, 9))));
        assert_eq!(range("bytes=-30", 10), Ok(Some((0, 9))));
        assert_eq!(range("bytes=4-6, 8-9", 10), Ok(Some((4, 6))));
    }

    #[test]
    fn download_names_say_what_the_file_is() {
        let session = SessionRecord {
            id: "s".into(),
            technician_id: "t".into(),
            device_id: None,
            device_name: "Front desk / PC \"2\"".into(),
            access: "unattended".into(),
            recorded: true,
            started_at: 0,
            ended_at: None,
            end_reason: None,
            recording_state: crate::store::RecordingState::Recording,
        };
        let file = RecordingFile {
            id: "f".into(),
            session_id: "s".into(),
            team_id: "t".into(),
            monitor_id: 1,
            monitor_key: "DP-2".into(),
            monitor_name: "DP-2 (right)".into(),
            seq: 3,
            split_reason: "monitor".into(),
            width: 1,
            height: 1,
            frame_rate: 30,
            orientation: "landscape".into(),
            started_at: 0,
            ended_at: None,
            duration_ms: None,
            size_bytes: None,
            frame_count: None,
            sha256: None,
            state: "complete".into(),
            object_key: "k".into(),
        };
        assert_eq!(
            download_name(&session, &file, "2026-11-27 14:03:05 CET"),
            "Front-desk---PC--2_2026-11-27_14-03-05_monitor-DP-2--right_part-3.mp4"
        );
    }

    #[test]
    fn impossible_ranges_are_refused() {
        for bad in [
            "bytes=10-",
            "bytes=5-2",
            "bytes=-0",
            "bytes=-",
            "items=0-1",
            "bytes=a-b",
            "bytes=0",
        ] {
            assert_eq!(range(bad, 10), Err(()), "{bad}");
        }
        assert_eq!(range("bytes=0-", 0), Err(()));
    }
}
