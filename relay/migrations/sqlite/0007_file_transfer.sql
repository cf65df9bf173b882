-- File transfer both ways in sessions (protocol 1.2.0): allowed unless the team switches it off, and
-- no file larger than the team's limit in MB (1 MB = 1,000,000 bytes; 2048 by default).
ALTER TABLE teams ADD COLUMN allow_file_transfer INTEGER NOT NULL DEFAULT 1;
ALTER TABLE teams ADD COLUMN max_file_mb INTEGER NOT NULL DEFAULT 2048;
