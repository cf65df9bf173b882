-- Chat lines between technician and end user in sessions (protocol 1.3.0): allowed unless the team
-- switches it off.
ALTER TABLE teams ADD COLUMN allow_chat INTEGER NOT NULL DEFAULT 1;
