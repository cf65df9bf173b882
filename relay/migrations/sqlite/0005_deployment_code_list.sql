-- Deployment codes the console can list and revoke: an id to name one by, the code's first
-- characters to recognise it by (the code itself is kept only as a digest), and who made it.
ALTER TABLE deployment_codes ADD COLUMN id TEXT;
ALTER TABLE deployment_codes ADD COLUMN hint TEXT;
-- NULL: made before this column existed, or by the relay itself at first start
ALTER TABLE deployment_codes ADD COLUMN created_by TEXT REFERENCES users(id);
UPDATE deployment_codes SET id = lower(hex(randomblob(16))) WHERE id IS NULL;
CREATE UNIQUE INDEX deployment_codes_id ON deployment_codes(id);
CREATE INDEX deployment_codes_team ON deployment_codes(team_id, created_at);
-- Which code a device registered with (NULL for devices registered before this column existed).
ALTER TABLE devices ADD COLUMN code_id TEXT;
