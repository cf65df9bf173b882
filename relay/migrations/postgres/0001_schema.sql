-- The relay's schema in PostgreSQL: what migrations 0001 to 0008 of the SQLite folder make, in
-- PostgreSQL's dialect. From here on, each change to the schema is one migration in each folder,
-- with the same number. Times are Unix milliseconds (UTC); flags are integers 0 or 1, as in SQLite.

-- E-mail addresses compare without regard to case, as SQLite's NOCASE does.
CREATE COLLATION IF NOT EXISTS nocase (provider = icu, locale = 'und-u-ks-level2', deterministic = false);

CREATE TABLE teams (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    -- Public key built into the team's attended download; identifies the team, grants nothing alone.
    attended_key        TEXT NOT NULL UNIQUE,
    record_attended     BIGINT NOT NULL DEFAULT 0 CHECK (record_attended IN (0, 1)),
    record_unattended   BIGINT NOT NULL DEFAULT 0 CHECK (record_unattended IN (0, 1)),
    playback_attended   TEXT NOT NULL DEFAULT 'owner'
                        CHECK (playback_attended IN ('owner', 'admins', 'members')),
    playback_unattended TEXT NOT NULL DEFAULT 'owner'
                        CHECK (playback_unattended IN ('owner', 'admins', 'members')),
    time_zone           TEXT NOT NULL DEFAULT 'UTC',
    created_at          BIGINT NOT NULL,
    -- Clipboard text both ways (protocol 1.1.0).
    allow_clipboard     BIGINT NOT NULL DEFAULT 1,
    -- File transfer (protocol 1.2.0), and the largest file in MB (1 MB = 1,000,000 bytes).
    allow_file_transfer BIGINT NOT NULL DEFAULT 1,
    max_file_mb         BIGINT NOT NULL DEFAULT 2048,
    -- Chat (protocol 1.3.0).
    allow_chat          BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    team_id       TEXT NOT NULL REFERENCES teams(id),
    email         TEXT COLLATE nocase NOT NULL UNIQUE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    -- A removed member signs in no more; their sessions and recordings stay.
    removed_at    BIGINT
);
-- Exactly one owner per team.
CREATE UNIQUE INDEX one_owner_per_team ON users(team_id) WHERE role = 'owner';

CREATE TABLE sign_in_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT
);

CREATE TABLE deployment_codes (
    code_hash  TEXT PRIMARY KEY,
    team_id    TEXT NOT NULL REFERENCES teams(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT,
    id         TEXT,
    hint       TEXT,
    -- NULL: made by the relay itself at first start
    created_by TEXT REFERENCES users(id),
    -- Insertion order, which SQLite's implicit rowid gives there (codes made in the same
    -- millisecond are listed newest first by it).
    rowid      BIGINT GENERATED ALWAYS AS IDENTITY
);
CREATE UNIQUE INDEX deployment_codes_id ON deployment_codes(id);
CREATE INDEX deployment_codes_team ON deployment_codes(team_id, created_at);

CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    team_id          TEXT NOT NULL REFERENCES teams(id),
    name             TEXT NOT NULL,
    secret_hash      TEXT NOT NULL,
    streamer_version TEXT,
    created_at       BIGINT NOT NULL,
    last_seen_at     BIGINT,
    revoked_at       BIGINT,
    -- Which deployment code the device registered with.
    code_id          TEXT
);
CREATE INDEX devices_by_team ON devices(team_id);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    team_id          TEXT NOT NULL REFERENCES teams(id),
    technician_id    TEXT NOT NULL REFERENCES users(id),
    device_id        TEXT REFERENCES devices(id),
    device_name      TEXT NOT NULL,
    access           TEXT NOT NULL CHECK (access IN ('attended', 'unattended')),
    recorded         BIGINT NOT NULL CHECK (recorded IN (0, 1)),
    streamer_version TEXT NOT NULL,
    started_at       BIGINT NOT NULL,
    ended_at         BIGINT,
    end_reason       TEXT,
    recording_state  TEXT NOT NULL DEFAULT 'not_recorded'
        CHECK (recording_state IN ('not_recorded', 'recording', 'uploaded', 'incomplete', 'failed'))
);
CREATE INDEX sessions_by_team ON sessions(team_id, started_at);

CREATE TABLE recording_files (
    id           TEXT PRIMARY KEY,
    session_id   TEXT NOT NULL REFERENCES sessions(id),
    team_id      TEXT NOT NULL REFERENCES teams(id),
    monitor_id   BIGINT NOT NULL,
    -- Position of the file in its session, from 1.
    seq          BIGINT NOT NULL,
    -- session_start | size | monitor | frame_rate | orientation | resolution
    split_reason TEXT NOT NULL,
    width        BIGINT NOT NULL,
    height       BIGINT NOT NULL,
    frame_rate   BIGINT NOT NULL,
    orientation  TEXT NOT NULL CHECK (orientation IN ('landscape', 'portrait')),
    started_at   BIGINT NOT NULL,
    ended_at     BIGINT,
    duration_ms  BIGINT,
    size_bytes   BIGINT,
    frame_count  BIGINT,
    sha256       TEXT,
    -- recording | complete | incomplete (playable up to its last fragment) | deleted (retention)
    state        TEXT NOT NULL CHECK (state IN ('recording', 'complete', 'incomplete', 'deleted')),
    object_key   TEXT NOT NULL UNIQUE,
    deleted_at   BIGINT,
    -- The monitor's identity from the platform, and its name.
    monitor_key  TEXT NOT NULL DEFAULT '',
    monitor_name TEXT NOT NULL DEFAULT '',
    UNIQUE (session_id, seq)
);
CREATE INDEX recording_files_by_session ON recording_files(session_id, monitor_id, started_at);
CREATE INDEX recording_files_by_end ON recording_files(ended_at);
CREATE INDEX recording_files_by_monitor ON recording_files(session_id, monitor_key, started_at);

-- One-time links: an invitation to join a team with a role, or a password reset for a member.
CREATE TABLE member_links (
    token_hash TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('invitation', 'password_reset')),
    team_id    TEXT NOT NULL REFERENCES teams(id),
    email      TEXT COLLATE nocase NOT NULL,
    role       TEXT CHECK (role IN ('owner', 'admin', 'member')),
    user_id    TEXT REFERENCES users(id),
    created_by TEXT REFERENCES users(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX member_links_by_team ON member_links(team_id, created_at);

-- Who did what, when, from where: rows are only added (and deleted past retention, oldest first);
-- an update is refused by the database itself.
CREATE TABLE audit_events (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    at          BIGINT NOT NULL,
    team_id     TEXT,
    actor_kind  TEXT NOT NULL CHECK (actor_kind IN ('user', 'device', 'operator', 'anonymous')),
    actor_id    TEXT,
    actor_name  TEXT NOT NULL,
    action      TEXT NOT NULL,
    object      TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT '',
    client_addr TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_by_team ON audit_events(team_id, id);
CREATE INDEX audit_by_time ON audit_events(at);
CREATE FUNCTION audit_events_refuse_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END;
$$;
CREATE TRIGGER audit_events_are_append_only BEFORE UPDATE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_update();
