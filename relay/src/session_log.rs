//! Session logs: the filters, cursor pages, words and CSV of a team's sessions, shared by the API
//! and the console so that both list the same rows.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use protocol::AccessType;
use serde::Deserialize;

use crate::api::ApiError;
use crate::ops::csv_field;
use crate::store::{RecordingState, SessionFilter, SessionRecord, Store, StoreError};

/// The API's query (`GET /api/v1/sessions`, `/api/v1/sessions.csv`): times in Unix milliseconds.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct SessionQuery {
    /// Started at or after, inclusive.
    pub from: Option<i64>,
    /// Started before, exclusive.
    pub until: Option<i64>,
    /// A technician's user id.
    pub technician: Option<String>,
    /// A device's id.
    pub device: Option<String>,
    /// `attended` or `unattended`.
    pub access: Option<String>,
    /// A recording state's name.
    pub recording_state: Option<String>,
    /// Only live sessions.
    pub live: Option<bool>,
    /// The previous page's `next_after`.
    pub after: Option<String>,
    /// 1 to 1000, 100 by default (text, so that a bad one is named as such).
    pub limit: Option<String>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "INVALID_VALUE", message)
}

/// Empty text means "not given", as a form's empty field does.
fn given(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|v| !v.is_empty())
}

impl SessionQuery {
    /// The store's filter, or a 400 naming the bad field.
    pub(crate) fn filter(&self) -> Result<SessionFilter, ApiError> {
        let access = match given(&self.access) {
            None => None,
            Some("attended") => Some(AccessType::Attended),
            Some("unattended") => Some(AccessType::Unattended),
            Some(other) => {
                return Err(invalid(format!(
                    "access is attended or unattended, not {other:?}."
                )))
            }
        };
        let recording_state = match given(&self.recording_state) {
            None => None,
            Some(s) => Some(RecordingState::parse(s).map_err(|_| {
                invalid(format!(
                    "recording_state is one of not_recorded, recording, uploaded, incomplete, failed, not {s:?}."
                ))
            })?),
        };
        let after =
            match given(&self.after) {
                None => None,
                Some(c) => Some(parse_cursor(c).ok_or_else(|| {
                    invalid("after is the previous page's next_after, unchanged.")
                })?),
            };
        let limit = match given(&self.limit) {
            None => 100,
            Some(l) => l
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=1000).contains(l))
                .ok_or_else(|| invalid("limit is a whole number from 1 to 1000."))?,
        };
        Ok(SessionFilter {
            from: self.from,
            until: self.until,
            technician_id: given(&self.technician).map(str::to_owned),
            device_id: given(&self.device).map(str::to_owned),
            access,
            recording_state,
            live: self.live.unwrap_or(false),
            after,
            limit,
        })
    }
}

/// The cursor after a session: its start time and id.
pub(crate) fn cursor(s: &SessionRecord) -> String {
    format!("{}.{}", s.started_at, s.id)
}

fn parse_cursor(c: &str) -> Option<(i64, String)> {
    let (at, id) = c.split_once('.')?;
    let ok = !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    Some((at.parse().ok()?, id.to_owned())).filter(|_| ok)
}

/// The cursor of the next page, when this page was full.
pub(crate) fn next_after(page: &[SessionRecord], filter: &SessionFilter) -> Option<String> {
    (page.len() == filter.limit as usize)
        .then(|| page.last().map(cursor))
        .flatten()
}

/// Why a session ended, in words (the console and the CSV); the name for a reason this relay
/// does not know.
pub(crate) fn end_reason_words(name: &str) -> String {
    match name {
        "TECHNICIAN_LEFT" => "The technician ended it",
        "END_USER_ENDED" => "The end user ended it",
        "TECHNICIAN_DISCONNECTED" => "The technician's connection was lost",
        "STREAMER_DISCONNECTED" => "The remote computer's connection was lost",
        "TIME_LIMIT_REACHED" => "It reached the recorded session time limit",
        "RECORDING_FAILED" => "The recording could not be stored",
        "RELAY_SHUTTING_DOWN" => "The relay shut down",
        "CREDENTIAL_REVOKED" => "A sign-in or device credential was revoked",
        "PROTOCOL_ERROR" => "A program in the session broke the protocol",
        "ENDED_BY_ADMIN" => "An owner or admin ended it",
        "RELAY_RESTARTED" => "The relay stopped during the session and restarted",
        "RELAY_LOST" => "The relay running it stopped answering, and another relay closed it",
        other => return other.to_owned(),
    }
    .to_owned()
}

/// The columns of the session log's CSV, in this order.
pub(crate) const SESSION_COLUMNS: [&str; 11] = [
    "Started",
    "Ended",
    "Duration (seconds)",
    "Device",
    "Technician",
    "Access",
    "Recorded",
    "Recording",
    "End reason",
    "End reason code",
    "Session id",
];

fn session_row(
    s: &SessionRecord,
    names: &BTreeMap<String, String>,
    tz: &chrono_tz::Tz,
) -> [String; 11] {
    let reason = s.end_reason.clone().unwrap_or_default();
    [
        crate::console::local_time(s.started_at, tz),
        s.ended_at
            .map(|e| crate::console::local_time(e, tz))
            .unwrap_or_default(),
        s.ended_at
            .map(|e| ((e - s.started_at).max(0) / 1000).to_string())
            .unwrap_or_default(),
        s.device_name.clone(),
        names.get(&s.technician_id).cloned().unwrap_or_default(),
        s.access.clone(),
        if s.recorded { "yes" } else { "no" }.to_owned(),
        s.recording_state.as_str().to_owned(),
        if reason.is_empty() {
            String::new()
        } else {
            end_reason_words(&reason)
        },
        reason,
        s.id.clone(),
    ]
}

/// The team's members' names by id.
pub(crate) async fn member_names(
    store: &Store,
    team_id: &str,
) -> Result<BTreeMap<String, String>, StoreError> {
    Ok(store
        .team_users(team_id)
        .await?
        .into_iter()
        .map(|u| (u.id, u.name))
        .collect())
}

/// Every session `filter` matches (up to [`crate::ops::CSV_MAX_ROWS`]), newest first, as CSV.
pub(crate) async fn sessions_csv(
    store: &Store,
    team_id: &str,
    filter: &mut SessionFilter,
    tz: &chrono_tz::Tz,
) -> Result<String, StoreError> {
    let names = member_names(store, team_id).await?;
    let mut out = SESSION_COLUMNS.map(csv_field).join(",");
    out.push_str("\r\n");
    filter.limit = 1000;
    let mut rows = 0;
    loop {
        let page = store.find_sessions(team_id, filter).await?;
        for s in &page {
            out.push_str(&session_row(s, &names, tz).map(|f| csv_field(&f)).join(","));
            out.push_str("\r\n");
        }
        rows += page.len();
        match next_after(&page, filter) {
            Some(_) if rows < crate::ops::CSV_MAX_ROWS => {
                filter.after = page.last().map(|s| (s.started_at, s.id.clone()));
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
    fn a_cursor_reads_back_and_a_changed_one_is_refused() {
        assert_eq!(
            parse_cursor("1700000000000.abc-DEF1"),
            Some((1_700_000_000_000, "abc-DEF1".to_owned()))
        );
        for bad in ["", ".", "12.", "x.abc", "12.a'b", "12.a b", "12"] {
            assert_eq!(parse_cursor(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn bad_fields_are_named() {
        let q = |f: fn(&mut SessionQuery)| {
            let mut q = SessionQuery::default();
            f(&mut q);
            q.filter().map_err(|e| e.message().to_owned())
        };
        assert!(q(|q| q.access = Some("both".into()))
            .unwrap_err()
            .contains("access"));
        assert!(q(|q| q.recording_state = Some("done".into()))
            .unwrap_err()
            .contains("recording_state"));
        assert!(q(|q| q.after = Some("nope".into()))
            .unwrap_err()
            .contains("after"));
        assert!(q(|q| q.limit = Some("0".into()))
            .unwrap_err()
            .contains("limit"));
        assert!(q(|q| q.limit = Some("-1".into()))
            .unwrap_err()
            .contains("limit"));
        let f = q(|q| {
            q.access = Some(String::new());
            q.technician = Some(String::new());
        })
        .unwrap();
        assert_eq!((f.access, f.technician_id, f.limit), (None, None, 100));
    }

    #[test]
    fn every_end_reason_has_words() {
        for r in protocol::EndReason::all() {
            let name = protocol::EndReason::name(r);
            assert_ne!(end_reason_words(&name), name, "{name} has no words");
        }
        assert_ne!(end_reason_words("RELAY_RESTARTED"), "RELAY_RESTARTED");
    }
}
