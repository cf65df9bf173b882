//! Recording rows: each session's recording state and one row per recording file.

use sqlx::Row;

use super::{Store, StoreError};

/// The state of a session's recording, as the console's Recording column shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordingState {
    /// The team's policy did not record this session.
    NotRecorded,
    /// The session is running and being recorded.
    Recording,
    /// Every file was closed and stored.
    Uploaded,
    /// The relay stopped mid-session (crash): files are closed as they were.
    Incomplete,
    /// Storage failed: the session was ended; the files written until then are kept.
    Failed,
}

impl RecordingState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordingState::NotRecorded => "not_recorded",
            RecordingState::Recording => "recording",
            RecordingState::Uploaded => "uploaded",
            RecordingState::Incomplete => "incomplete",
            RecordingState::Failed => "failed",
        }
    }

    /// The state in a word or two, as the console's Recording column shows it.
    pub fn label(self) -> &'static str {
        match self {
            RecordingState::NotRecorded => "Not recorded",
            RecordingState::Recording => "Recording",
            RecordingState::Uploaded => "Uploaded",
            RecordingState::Incomplete => "Incomplete",
            RecordingState::Failed => "Failed",
        }
    }

    /// What the state means, as a session's page says it.
    pub fn sentence(self) -> &'static str {
        match self {
            RecordingState::NotRecorded => "The team's policy did not record this session.",
            RecordingState::Recording => "The session is being recorded; its files are listed as each one is stored, the open one when it ends.",
            RecordingState::Uploaded => "Every recording file was finished and stored: the files hold every frame the technician was shown.",
            RecordingState::Incomplete => "The relay stopped during the session (a crash or power loss): each file was kept up to its last synced fragment, so up to the last 2 seconds before the stop may be missing.",
            RecordingState::Failed => "The relay could not store the recording, so the session was ended: the files written before the failure are kept, and frames after their last synced fragment (at most 2 seconds) may be missing.",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "not_recorded" => RecordingState::NotRecorded,
            "recording" => RecordingState::Recording,
            "uploaded" => RecordingState::Uploaded,
            "incomplete" => RecordingState::Incomplete,
            "failed" => RecordingState::Failed,
            other => return Err(StoreError::Corrupt(format!("recording state {other:?}"))),
        })
    }
}

/// A recording file about to be written.
#[derive(Debug, Clone)]
pub struct NewRecordingFile {
    /// Its id.
    pub id: String,
    /// The session's id.
    pub session_id: String,
    /// The team's id.
    pub team_id: String,
    /// The monitor it shows: its index in the streamer's list...
    pub monitor_id: u32,
    /// ...its identity from the platform...
    pub monitor_key: String,
    /// ...and its name.
    pub monitor_name: String,
    /// Its position in the session, from 1.
    pub seq: u32,
    /// Why it was started.
    pub split_reason: &'static str,
    /// Video width.
    pub width: u16,
    /// Video height.
    pub height: u16,
    /// Frame rate.
    pub frame_rate: u16,
    /// `landscape` or `portrait`.
    pub orientation: &'static str,
    /// Wall-clock start, Unix milliseconds.
    pub started_at: i64,
    /// Key in the object store.
    pub object_key: String,
}

/// What closing a file measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClosedFile {
    /// Wall-clock end, Unix milliseconds.
    pub ended_at: i64,
    /// Media duration in milliseconds.
    pub duration_ms: i64,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Video frames in the file.
    pub frame_count: i64,
    /// SHA-256 of the whole file, hex.
    pub sha256: String,
    /// `complete` or `incomplete`.
    pub state: &'static str,
}

/// A recording file as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordingFile {
    /// Its id.
    pub id: String,
    /// The session's id.
    pub session_id: String,
    /// The team's id.
    pub team_id: String,
    /// The monitor it shows: its index in the streamer's list when the file started...
    pub monitor_id: i64,
    /// ...its identity from the platform (files are grouped by it)...
    pub monitor_key: String,
    /// ...and its name.
    pub monitor_name: String,
    /// Its position in the session.
    pub seq: i64,
    /// Why it was started.
    pub split_reason: String,
    /// Video width.
    pub width: i64,
    /// Video height.
    pub height: i64,
    /// Frame rate.
    pub frame_rate: i64,
    /// `landscape` or `portrait`.
    pub orientation: String,
    /// Wall-clock start.
    pub started_at: i64,
    /// Wall-clock end, once closed.
    pub ended_at: Option<i64>,
    /// Media duration, once closed.
    pub duration_ms: Option<i64>,
    /// Size, once closed.
    pub size_bytes: Option<i64>,
    /// Frames, once closed.
    pub frame_count: Option<i64>,
    /// SHA-256, once closed.
    pub sha256: Option<String>,
    /// `recording`, `complete`, `incomplete` or `deleted`.
    pub state: String,
    /// Key in the object store.
    pub object_key: String,
}

const FILE_COLUMNS: &str = "id, session_id, team_id, monitor_id, monitor_key, monitor_name, seq, split_reason, width, height, frame_rate, \
     orientation, started_at, ended_at, duration_ms, size_bytes, frame_count, sha256, state, object_key";

fn file_from_row(r: &sqlx::any::AnyRow) -> Result<RecordingFile, StoreError> {
    Ok(RecordingFile {
        id: r.try_get("id")?,
        session_id: r.try_get("session_id")?,
        team_id: r.try_get("team_id")?,
        monitor_id: r.try_get("monitor_id")?,
        monitor_key: r.try_get("monitor_key")?,
        monitor_name: r.try_get("monitor_name")?,
        seq: r.try_get("seq")?,
        split_reason: r.try_get("split_reason")?,
        width: r.try_get("width")?,
        height: r.try_get("height")?,
        frame_rate: r.try_get("frame_rate")?,
        orientation: r.try_get("orientation")?,
        started_at: r.try_get("started_at")?,
        ended_at: r.try_get("ended_at")?,
        duration_ms: r.try_get("duration_ms")?,
        size_bytes: r.try_get("size_bytes")?,
        frame_count: r.try_get("frame_count")?,
        sha256: r.try_get("sha256")?,
        state: r.try_get("state")?,
        object_key: r.try_get("object_key")?,
    })
}

impl Store {
    /// Sets a session's recording state.
    pub async fn set_recording_state(
        &self,
        session_id: &str,
        state: RecordingState,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE sessions SET recording_state = $1 WHERE id = $2")
            .bind(state.as_str())
            .bind(session_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A session's recording state.
    pub async fn recording_state(
        &self,
        session_id: &str,
    ) -> Result<Option<RecordingState>, StoreError> {
        let s: Option<String> =
            sqlx::query_scalar("SELECT recording_state FROM sessions WHERE id = $1")
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await?;
        s.as_deref().map(RecordingState::parse).transpose()
    }

    /// Records the start of a recording file.
    pub async fn insert_recording_file(&self, f: &NewRecordingFile) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO recording_files (id, session_id, team_id, monitor_id, monitor_key, monitor_name, seq, \
             split_reason, width, height, frame_rate, orientation, started_at, state, object_key) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'recording', $14)",
        )
        .bind(&f.id)
        .bind(&f.session_id)
        .bind(&f.team_id)
        .bind(i64::from(f.monitor_id))
        .bind(&f.monitor_key)
        .bind(&f.monitor_name)
        .bind(i64::from(f.seq))
        .bind(f.split_reason)
        .bind(i64::from(f.width))
        .bind(i64::from(f.height))
        .bind(i64::from(f.frame_rate))
        .bind(f.orientation)
        .bind(f.started_at)
        .bind(&f.object_key)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the close of a recording file.
    pub async fn close_recording_file(&self, id: &str, c: &ClosedFile) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE recording_files SET ended_at = $1, duration_ms = $2, size_bytes = $3, frame_count = $4, \
             sha256 = $5, state = $6 WHERE id = $7",
        )
        .bind(c.ended_at)
        .bind(c.duration_ms)
        .bind(c.size_bytes)
        .bind(c.frame_count)
        .bind(&c.sha256)
        .bind(c.state)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A session's files, by monitor (its identity; monitors in the order they were first
    /// recorded), then by start time.
    pub async fn recording_files(
        &self,
        session_id: &str,
    ) -> Result<Vec<RecordingFile>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FILE_COLUMNS} FROM recording_files f WHERE session_id = $1 \
             ORDER BY (SELECT MIN(g.seq) FROM recording_files g \
                       WHERE g.session_id = f.session_id AND g.monitor_key = f.monitor_key), started_at, seq"
        )))
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    /// One of a team's recording files; another team's file is `None`, as a missing one is.
    pub async fn recording_file(
        &self,
        team_id: &str,
        id: &str,
    ) -> Result<Option<RecordingFile>, StoreError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FILE_COLUMNS} FROM recording_files WHERE team_id = $1 AND id = $2"
        )))
        .bind(team_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(file_from_row).transpose()
    }

    /// Removes a file's row: only for a file that never held a frame (recovery).
    pub async fn remove_recording_file(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM recording_files WHERE id = $1 AND state = 'recording'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Files left in `recording` state, as a crash leaves them.
    pub async fn unfinished_recording_files(
        &self,
        relay_id: &str,
    ) -> Result<Vec<RecordingFile>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FILE_COLUMNS} FROM recording_files WHERE state = 'recording' \
             AND session_id IN (SELECT id FROM sessions WHERE relay_id IN ($1, ''))"
        )))
        .bind(relay_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    /// Marks relay `relay_id`'s sessions that were live when it stopped as ended now with
    /// `reason` (`RELAY_RESTARTED`, or `RELAY_LOST` when its peers found it dead), their recording
    /// incomplete. Sessions from before relays had ids (`''`) count as any relay's.
    pub async fn end_interrupted_sessions(
        &self,
        relay_id: &str,
        reason: &str,
    ) -> Result<u64, StoreError> {
        let now = self.now();
        sqlx::query(
            "UPDATE sessions SET recording_state = 'incomplete' \
             WHERE recording_state = 'recording' AND relay_id IN ($1, '')",
        )
        .bind(relay_id)
        .execute(&self.pool)
        .await?;
        let done = sqlx::query(
            "UPDATE sessions SET ended_at = $1, end_reason = $2 \
             WHERE ended_at IS NULL AND relay_id IN ($3, '')",
        )
        .bind(now)
        .bind(reason)
        .bind(relay_id)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The stored files past their team's retention at `now` (ms): ended more than `max_ms` ago,
    /// or more than the team's own `retention_days` when it keeps them for less, oldest first.
    pub async fn recording_files_past_retention(
        &self,
        cutoff_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<RecordingFile>, StoreError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FILE_COLUMNS} FROM recording_files \
             WHERE state IN ('complete', 'incomplete') AND (ended_at < $1 OR ended_at < $2 - \
               (SELECT t.retention_days FROM teams t WHERE t.id = recording_files.team_id) * 86400000) \
             ORDER BY ended_at"
        )))
        .bind(cutoff_ms)
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(file_from_row).collect()
    }

    /// Marks a file deleted by retention.
    pub async fn mark_recording_file_deleted(&self, id: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE recording_files SET state = 'deleted', deleted_at = $1 WHERE id = $2")
            .bind(self.now())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
