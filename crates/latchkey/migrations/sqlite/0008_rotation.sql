-- Key rotation: during a grace period the previous text's digest keeps
-- working until grace_until (seconds since the epoch).
ALTER TABLE api_keys ADD COLUMN old_digest BLOB;
ALTER TABLE api_keys ADD COLUMN grace_until INTEGER;
CREATE UNIQUE INDEX api_keys_old_digest ON api_keys (old_digest);
