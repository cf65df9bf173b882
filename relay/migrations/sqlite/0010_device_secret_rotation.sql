-- A device's secret is renewed at every connection (protocol 1.4.0): the next secret the relay
-- handed out and the device has not used yet, the secrets it has stopped taking (newest last, at
-- most 32, space-separated digests: one presented again means two copies of the credential exist),
-- and whether the device has ever been renewed (then an older protocol, which cannot renew, is
-- refused for it).
ALTER TABLE devices ADD COLUMN next_secret_hash TEXT;
ALTER TABLE devices ADD COLUMN retired_secret_hashes TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN secret_renewed INTEGER NOT NULL DEFAULT 0;
