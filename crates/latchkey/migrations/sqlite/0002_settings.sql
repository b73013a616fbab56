-- Installation settings, e.g. the fingerprint of the installation secret.
CREATE TABLE settings (
    name  TEXT NOT NULL PRIMARY KEY,
    value TEXT NOT NULL
);
