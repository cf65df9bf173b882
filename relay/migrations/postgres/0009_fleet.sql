-- A fleet of relays sharing one database: which relay runs each session, the relays alive (their
-- heartbeats), which relay holds each device's streamer, and live session codes.
ALTER TABLE sessions ADD COLUMN relay_id TEXT NOT NULL DEFAULT '';
CREATE INDEX sessions_live_by_relay ON sessions (relay_id) WHERE ended_at IS NULL;

CREATE TABLE relays (
    id TEXT PRIMARY KEY,
    peer_address TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);

CREATE TABLE presence (
    device_id TEXT PRIMARY KEY,
    relay_id TEXT NOT NULL,
    conn_id BIGINT NOT NULL,
    busy BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX presence_by_relay ON presence (relay_id);

CREATE TABLE session_codes (
    code TEXT PRIMARY KEY,
    team_id TEXT NOT NULL,
    relay_id TEXT NOT NULL,
    conn_id BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX session_codes_by_relay ON session_codes (relay_id);

-- Failures of the throttles (wrong passwords, wrong session codes) in a fleet, by throttle and
-- key, so that their limits hold whichever relay each try reaches.
CREATE TABLE throttle_failures (
    scope TEXT NOT NULL,
    key TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX throttle_failures_by_key ON throttle_failures (scope, key, at);
CREATE INDEX throttle_failures_by_time ON throttle_failures (at);

-- What one relay of a fleet tells the others to do to the connections they hold: cut a sign-in's
-- connections, a revoked device's streamer, end a session an admin ended. Read in order by id.
CREATE TABLE fleet_notices (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind TEXT NOT NULL,
    subject TEXT NOT NULL,
    detail TEXT NOT NULL,
    at BIGINT NOT NULL
);
