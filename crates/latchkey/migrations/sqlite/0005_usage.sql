-- Last use of each key (seconds since the epoch; written in batches, at most
-- once a minute per key) and the client address it came from.
ALTER TABLE api_keys ADD COLUMN last_used INTEGER;
ALTER TABLE api_keys ADD COLUMN last_used_from TEXT;

-- Access logs of keys whose `logging` asks for them. No foreign key: the
-- entries of a deleted key stay until retention removes them.
CREATE TABLE access_log (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id        INTEGER NOT NULL,
    time_ms       INTEGER NOT NULL,
    method        TEXT    NOT NULL,
    path          TEXT    NOT NULL,
    status        INTEGER NOT NULL,
    duration_ms   INTEGER NOT NULL,
    address       TEXT,
    user_agent    TEXT,
    verdict       TEXT,
    request_body  TEXT,
    response_body TEXT,
    truncated     INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX access_log_key ON access_log (key_id, id);
CREATE INDEX access_log_time ON access_log (time_ms);
