-- Console sessions: only the HMAC-SHA-256 digest of the session token is
-- stored. `user_stamp` is a digest of the user's password hash at log-in: a
-- changed password (or a deleted and re-created user) ends the session.
CREATE TABLE console_sessions (
    digest     BYTEA  NOT NULL PRIMARY KEY,
    user_id    BIGINT NOT NULL,
    user_name  TEXT   NOT NULL,
    user_stamp BYTEA  NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen  BIGINT NOT NULL
);

CREATE INDEX console_sessions_last_seen ON console_sessions (last_seen);
