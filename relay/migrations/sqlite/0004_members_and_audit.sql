-- Team members who come and go, one-time links for them, and the audit trail.

-- A removed member's sessions and recordings stay, and they reference the user: removal is a mark.
-- A removed member signs in no more; invited again, the same row comes back with the new role.
ALTER TABLE users ADD COLUMN removed_at INTEGER;

-- One-time links: an invitation to join a team with a role, or a password reset for a member.
-- Only a digest of the token in the link is kept.
CREATE TABLE member_links (
    token_hash TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('invitation', 'password_reset')),
    team_id    TEXT NOT NULL REFERENCES teams(id),
    email      TEXT NOT NULL COLLATE NOCASE,
    -- invitation: the role offered; password_reset: NULL
    role       TEXT CHECK (role IN ('owner', 'admin', 'member')),
    -- password_reset: whose password
    user_id    TEXT REFERENCES users(id),
    -- NULL: made by the relay's operator (`relay admin`)
    created_by TEXT REFERENCES users(id),
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER
);
CREATE INDEX member_links_by_team ON member_links(team_id, created_at);

-- Who did what, when, from where. Rows are only ever added (and, past the retention period,
-- deleted oldest first); an update is refused by the database itself.
CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    -- NULL: about the relay, not a team (an operator's command, a sign-in to an unknown address)
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
CREATE TRIGGER audit_events_are_append_only BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
