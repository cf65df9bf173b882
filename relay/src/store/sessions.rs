//! Session rows: who connected to what, when, whether it was recorded, and how it ended.

use protocol::AccessType;
use sqlx::Row;

use super::{RecordingState, Store, StoreError};

/// A session about to start.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Its id.
    pub id: String,
    /// The team's id.
    pub team_id: String,
    /// The technician's user id.
    pub technician_id: String,
    /// The device's id (unattended) or none (attended).
    pub device_id: Option<String>,
    /// The device's name.
    pub device_name: String,
    /// Attended or unattended.
    pub access: AccessType,
    /// Whether the team's policy records it.
    pub recorded: bool,
    /// The streamer's version.
    pub streamer_version: String,
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    /// Its id.
    pub id: String,
    /// The technician's user id.
    pub technician_id: String,
    /// The device's id, for unattended sessions.
    pub device_id: Option<String>,
    /// The device's name.
    pub device_name: String,
    /// `attended` or `unattended`.
    pub access: String,
    /// Whether it was recorded.
    pub recorded: bool,
    /// Start, Unix milliseconds.
    pub started_at: i64,
    /// End, Unix milliseconds, while it is over.
    pub ended_at: Option<i64>,
    /// Why it ended, as the wire's end-reason name.
    pub end_reason: Option<String>,
    /// Where its recording stands, derived from the recorder's outcome and the session's files.
    pub recording_state: RecordingState,
}

/// The columns of a session row, with its recording state derived: not recorded by policy; failed
/// when storage failed; incomplete when a file was cut (a crash, or a file the recorder could not
/// finish); recording while the session is live or its last file is being stored; else uploaded.
const SESSION_COLUMNS: &str = "id, technician_id, device_id, device_name, access, recorded, started_at, ended_at, end_reason, \
     CASE WHEN recorded = 0 THEN 'not_recorded' \
          WHEN recording_state = 'failed' THEN 'failed' \
          WHEN recording_state = 'incomplete' OR EXISTS (SELECT 1 FROM recording_files f \
               WHERE f.session_id = sessions.id AND f.state = 'incomplete') THEN 'incomplete' \
          WHEN ended_at IS NULL OR recording_state = 'recording' THEN 'recording' \
          ELSE 'uploaded' END AS derived_recording_state";

pub(crate) fn access_str(access: AccessType) -> &'static str {
    match access {
        AccessType::Attended => "attended",
        AccessType::Unattended => "unattended",
    }
}

/// Which of a team's sessions to list: every field narrows the list; the newest come first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Started at or after this time, Unix milliseconds.
    pub from: Option<i64>,
    /// Started before this time, Unix milliseconds.
    pub until: Option<i64>,
    /// This technician's sessions.
    pub technician_id: Option<String>,
    /// Sessions with this device (unattended).
    pub device_id: Option<String>,
    /// Attended or unattended.
    pub access: Option<AccessType>,
    /// In this recording state.
    pub recording_state: Option<RecordingState>,
    /// Only live sessions.
    pub live: bool,
    /// Only sessions after this one in the order (the previous page's last: start time and id).
    pub after: Option<(i64, String)>,
    /// At most this many (1 to 1000).
    pub limit: u32,
}

impl Store {
    /// A page of a team's sessions that pass `filter`, newest first.
    pub async fn find_sessions(
        &self,
        team_id: &str,
        filter: &SessionFilter,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let (after_at, after_id) = match &filter.after {
            Some((at, id)) => (Some(*at), Some(id.as_str())),
            None => (None, None),
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM (SELECT {SESSION_COLUMNS} FROM sessions WHERE team_id = $1 \
             AND ($2 IS NULL OR started_at >= $3) AND ($4 IS NULL OR started_at < $5) \
             AND ($6 IS NULL OR technician_id = $7) AND ($8 IS NULL OR device_id = $9) \
             AND ($10 IS NULL OR access = $11) AND ($12 = 0 OR ended_at IS NULL) \
             AND ($13 IS NULL OR started_at < $14 OR (started_at = $15 AND id > $16))) AS s \
             WHERE ($17 IS NULL OR derived_recording_state = $18) \
             ORDER BY started_at DESC, id LIMIT $19"
        )))
        .bind(team_id)
        .bind(filter.from)
        .bind(filter.from)
        .bind(filter.until)
        .bind(filter.until)
        .bind(filter.technician_id.as_deref())
        .bind(filter.technician_id.as_deref())
        .bind(filter.device_id.as_deref())
        .bind(filter.device_id.as_deref())
        .bind(filter.access.map(access_str))
        .bind(filter.access.map(access_str))
        .bind(i64::from(filter.live))
        .bind(after_at)
        .bind(after_at)
        .bind(after_at)
        .bind(after_id)
        .bind(filter.recording_state.map(RecordingState::as_str))
        .bind(filter.recording_state.map(RecordingState::as_str))
        .bind(i64::from(filter.limit.clamp(1, 1000)))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    /// Records the start of a session.
    pub async fn insert_session(&self, s: &NewSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sessions (id, team_id, technician_id, device_id, device_name, access, recorded, \
             streamer_version, started_at, relay_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&s.id)
        .bind(&s.team_id)
        .bind(&s.technician_id)
        .bind(&s.device_id)
        .bind(&s.device_name)
        .bind(access_str(s.access))
        .bind(i64::from(s.recorded))
        .bind(&s.streamer_version)
        .bind(self.now())
        .bind(&*self.relay_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the end of a session, once: a second call leaves the first reason in place.
    pub async fn end_session(&self, id: &str, reason: &str) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = $2 WHERE id = $3 AND ended_at IS NULL",
        )
        .bind(self.now())
        .bind(reason)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A team's sessions, newest first.
    pub async fn sessions(&self, team_id: &str) -> Result<Vec<SessionRecord>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE team_id = $1 ORDER BY started_at DESC, id"
        )))
        .bind(team_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(session_from_row).collect()
    }

    /// One of a team's sessions; another team's session is `None`, as a missing one is.
    pub async fn session(
        &self,
        team_id: &str,
        id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE team_id = $1 AND id = $2"
        )))
        .bind(team_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(session_from_row).transpose()
    }
}

fn session_from_row(r: &sqlx::any::AnyRow) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: r.try_get("id")?,
        technician_id: r.try_get("technician_id")?,
        device_id: r.try_get("device_id")?,
        device_name: r.try_get("device_name")?,
        access: r.try_get("access")?,
        recorded: super::flag(r, "recorded")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        end_reason: r.try_get("end_reason")?,
        recording_state: RecordingState::parse(r.try_get("derived_recording_state")?)?,
    })
}
