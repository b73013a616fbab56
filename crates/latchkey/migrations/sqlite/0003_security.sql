-- Groups: names unique case-insensitively through name_key (folded in Rust).
-- Membership lives in users.groups; this table names the groups that exist.
CREATE TABLE groups (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    name       TEXT    NOT NULL,
    name_key   TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

-- Permissions: one task granted or denied to one user (or Anonymous, which
-- has no user row: hence names, not foreign keys) or one group, globally or
-- on one feed or one feed group.
CREATE TABLE permissions (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_name  TEXT,
    user_key   TEXT,
    group_name TEXT,
    group_key  TEXT,
    task       TEXT    NOT NULL,
    feed       TEXT,
    feed_group TEXT,
    deny       INTEGER NOT NULL DEFAULT 0,
    CHECK ((user_key IS NULL) <> (group_key IS NULL)),
    CHECK (feed IS NULL OR feed_group IS NULL)
);

CREATE INDEX permissions_user_key ON permissions (user_key);
CREATE INDEX permissions_group_key ON permissions (group_key);

-- Old databases behave as before: Administrators administers. The groups
-- named in users.groups are added at open (their keys need Unicode folding).
INSERT INTO groups (name, name_key, created_at)
VALUES ('Administrators', 'administrators', CAST(strftime('%s', 'now') AS INTEGER));
INSERT INTO permissions (group_name, group_key, task, deny)
VALUES ('Administrators', 'administrators', 'Administer', 0);
