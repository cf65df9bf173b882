-- Tools of the trade besides screen and input, allowed or forbidden per team (protocol 1.1.0).
-- Clipboard text both ways: allowed unless the team switches it off.
ALTER TABLE teams ADD COLUMN allow_clipboard INTEGER NOT NULL DEFAULT 1;
