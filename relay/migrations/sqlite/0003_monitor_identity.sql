-- Recording files know their monitor by its identity from the platform (X11: the RandR monitor's
-- name; Windows: the output's device name) and its name, not only by its index in the streamer's
-- list, which may stand for another screen after the layout changes. Files made before this have
-- their index as their identity.
ALTER TABLE recording_files ADD COLUMN monitor_key TEXT NOT NULL DEFAULT '';
ALTER TABLE recording_files ADD COLUMN monitor_name TEXT NOT NULL DEFAULT '';
UPDATE recording_files SET monitor_key = CAST(monitor_id AS TEXT), monitor_name = CAST(monitor_id AS TEXT)
    WHERE monitor_key = '';
CREATE INDEX recording_files_by_monitor ON recording_files(session_id, monitor_key, started_at);
