-- Recordings: the state of each session's recording, and one row per recording file.

-- not_recorded | recording | uploaded | incomplete | failed
ALTER TABLE sessions ADD COLUMN recording_state TEXT NOT NULL DEFAULT 'not_recorded'
    CHECK (recording_state IN ('not_recorded', 'recording', 'uploaded', 'incomplete', 'failed'));

CREATE TABLE recording_files (
    id           TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES sessions(id),
    team_id      TEXT NOT NULL REFERENCES teams(id),
    monitor_id   INTEGER NOT NULL,
    -- Position of the file in its session, from 1.
    seq          INTEGER NOT NULL,
    -- session_start | size | monitor | frame_rate | orientation | resolution
    split_reason TEXT NOT NULL,
    width        INTEGER NOT NULL,
    height       INTEGER NOT NULL,
    frame_rate   INTEGER NOT NULL,
    orientation  TEXT NOT NULL CHECK (orientation IN ('landscape', 'portrait')),
    started_at   INTEGER NOT NULL,
    ended_at     INTEGER,
    duration_ms  INTEGER,
    size_bytes   INTEGER,
    frame_count  INTEGER,
    sha256       TEXT,
    -- recording: being written | complete: closed normally | incomplete: closed by a crash or a
    -- storage failure, playable up to its last fragment | deleted: removed by retention
    state        TEXT NOT NULL CHECK (state IN ('recording', 'complete', 'incomplete', 'deleted')),
    object_key   TEXT NOT NULL UNIQUE,
    deleted_at   INTEGER,
    UNIQUE (session_id, seq)
);
CREATE INDEX recording_files_by_session ON recording_files(session_id, monitor_id, started_at);
CREATE INDEX recording_files_by_end ON recording_files(ended_at);
