-- Users: names are unique case-insensitively through name_key (lower-cased in Rust).
CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    name          TEXT    NOT NULL,
    name_key      TEXT    NOT NULL UNIQUE,
    display_name  TEXT,
    email         TEXT,
    groups        TEXT    NOT NULL DEFAULT '[]',
    password_hash TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

-- API keys: only the HMAC-SHA-256 digest of the key text is stored.
-- AUTOINCREMENT so that a deleted id is never handed out again.
CREATE TABLE api_keys (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    digest              BLOB    NOT NULL UNIQUE,
    key_type            TEXT    NOT NULL,
    display_name        TEXT,
    description         TEXT,
    system_apis         TEXT    NOT NULL DEFAULT '',
    package_permissions TEXT    NOT NULL DEFAULT '',
    feed                TEXT,
    feed_group          TEXT,
    expiration          INTEGER,
    logging             TEXT    NOT NULL,
    user_id             INTEGER REFERENCES users (id),
    created_at          INTEGER NOT NULL
);

CREATE INDEX api_keys_user_id ON api_keys (user_id);

-- The first key gets id 1000.
INSERT INTO sqlite_sequence (name, seq) VALUES ('api_keys', 999);
