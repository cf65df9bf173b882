-- A team may keep its recordings for fewer days than the relay's retention period (NULL: the
-- relay's period), and a session's page lists what happened in it (its chat, its files) from the
-- audit trail by the session's id.
ALTER TABLE teams ADD COLUMN retention_days INTEGER;
CREATE INDEX audit_by_object ON audit_events(team_id, object, id);
