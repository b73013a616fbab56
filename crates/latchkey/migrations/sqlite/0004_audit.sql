-- The audit trail: one row per change, written in the change's own
-- transaction. time: seconds since the epoch; details: a JSON object.
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    time    INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT    NOT NULL,
    address TEXT,
    details TEXT    NOT NULL DEFAULT '{}'
);

CREATE INDEX audit_target ON audit (target, id);
CREATE INDEX audit_action ON audit (action, id);
CREATE INDEX audit_time ON audit (time);
