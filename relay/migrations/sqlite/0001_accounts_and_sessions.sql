-- Teams, their people, devices, credentials and sessions. Times are Unix milliseconds (UTC).

CREATE TABLE teams (
    id                  TEXT PRIMARY KEY,
    name                TEXT NOT NULL,
    -- Public key built into the team's attended download; identifies the team, grants nothing alone.
    attended_key        TEXT NOT NULL UNIQUE,
    record_attended     INTEGER NOT NULL DEFAULT 0 CHECK (record_attended IN (0, 1)),
    record_unattended   INTEGER NOT NULL DEFAULT 0 CHECK (record_unattended IN (0, 1)),
    playback_attended   TEXT NOT NULL DEFAULT 'owner'
                        CHECK (playback_attended IN ('owner', 'admins', 'members')),
    playback_unattended TEXT NOT NULL DEFAULT 'owner'
                        CHECK (playback_unattended IN ('owner', 'admins', 'members')),
    time_zone           TEXT NOT NULL DEFAULT 'UTC',
    created_at          INTEGER NOT NULL
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    team_id       TEXT NOT NULL REFERENCES teams(id),
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);
-- Exactly one owner per team.
CREATE UNIQUE INDEX one_owner_per_team ON users(team_id) WHERE role = 'owner';

CREATE TABLE sign_in_tokens (
    token_hash TEXT PRIMARY KEY,
    user_id    TEXT NOT NULL REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE deployment_codes (
    code_hash  TEXT PRIMARY KEY,
    team_id    TEXT NOT NULL REFERENCES teams(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);

CREATE TABLE devices (
    id               TEXT PRIMARY KEY,
    team_id          TEXT NOT NULL REFERENCES teams(id),
    name             TEXT NOT NULL,
    secret_hash      TEXT NOT NULL,
    streamer_version TEXT,
    created_at       INTEGER NOT NULL,
    last_seen_at     INTEGER,
    revoked_at       INTEGER
);
CREATE INDEX devices_by_team ON devices(team_id);

CREATE TABLE sessions (
    id               TEXT PRIMARY KEY,
    team_id          TEXT NOT NULL REFERENCES teams(id),
    technician_id    TEXT NOT NULL REFERENCES users(id),
    device_id        TEXT REFERENCES devices(id),
    device_name      TEXT NOT NULL,
    access           TEXT NOT NULL CHECK (access IN ('attended', 'unattended')),
    recorded         INTEGER NOT NULL CHECK (recorded IN (0, 1)),
    streamer_version TEXT NOT NULL,
    started_at       INTEGER NOT NULL,
    ended_at         INTEGER,
    end_reason       TEXT
);
CREATE INDEX sessions_by_team ON sessions(team_id, started_at);
