//! Upgrades: a database made by the previous release (v0.1, commit 34a28ce:
//! administrators were the members of the group `Administrators`) starts on
//! this one, and its administrators are still administrators. The fixtures
//! and how they were made: `tests/fixtures/README.md`.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde_json::Value;

use common::{client, pg_count, pg_execute, Backend, Options, TestServer, ADMIN_PASSWORD};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
/// Personal key of `ops`, a member of `Administrators`.
const OPS_KEY: &str = "ops-personal-key-v01";
/// Personal key of `dev`, a member of `Developers`.
const DEV_KEY: &str = "dev-personal-key-v01";
/// Feed key (id 1002) on `npm-internal`.
const FEED_KEY: &str = "feed-key-npm-internal-v01";
const FEED_KEY_ID: i64 = 1002;

both_backends!(the_previous_releases_database_keeps_its_administrators_and_keys);

/// Copies the SQLite fixture into a private data directory.
fn seed_sqlite(data_dir: &Path, _: Option<&str>) {
    fs::create_dir_all(data_dir).unwrap();
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let db = data_dir.join("latchkey.db");
    fs::copy(Path::new(FIXTURES).join("v0.1-sqlite/latchkey.db"), &db).unwrap();
    fs::set_permissions(&db, fs::Permissions::from_mode(0o600)).unwrap();
}

/// Restores the `pg_dump` fixture into the fresh database (psql's
/// backslash commands, which only psql understands, left out).
fn seed_postgres(_: &Path, url: Option<&str>) {
    let url = url.expect("a PostgreSQL test has a database URL");
    let dump = fs::read_to_string(Path::new(FIXTURES).join("v0.1-postgres.sql")).unwrap();
    let sql: String = dump
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .map(|l| format!("{l}\n"))
        .collect();
    pg_execute(url, &sql);
}

/// Runs a `SELECT count(*) …` on the server's database.
fn count(s: &TestServer, sql: &str) -> i64 {
    match s.database_url() {
        Some(url) => pg_count(&url, sql),
        None => {
            use sqlx::Connection;
            let url = format!("sqlite://{}", s.data_dir.join("latchkey.db").display());
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
                let n = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
                let _ = conn.close().await;
                n
            })
        }
    }
}

fn get(s: &TestServer, path: &str, credential: &str) -> reqwest::blocking::Response {
    client()
        .get(s.url(path))
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
}

fn key_ids(r: reqwest::blocking::Response) -> Vec<i64> {
    assert_eq!(r.status(), 200);
    let keys: Vec<Value> = r.json().unwrap();
    keys.iter().map(|k| k["id"].as_i64().unwrap()).collect()
}

fn the_previous_releases_database_keeps_its_administrators_and_keys(backend: Backend) {
    let prepare: fn(&Path, Option<&str>) = match backend {
        Backend::Sqlite => seed_sqlite,
        Backend::Postgres => seed_postgres,
    };
    let s = TestServer::start_with(
        backend,
        Options {
            prepare: Some(prepare),
            ..Options::default()
        },
    );

    // ops (in Administrators) is still an administrator: every key, the users.
    assert_eq!(
        key_ids(get(&s, "/api/api-keys/list", OPS_KEY)),
        [1000, 1001, 1002]
    );
    let users = get(&s, "/api/security/users/list", OPS_KEY);
    assert_eq!(users.status(), 200, "ops manages users");
    let names: Vec<String> = users
        .json::<Vec<Value>>()
        .unwrap()
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, ["Admin", "dev", "ops"]);
    assert_eq!(
        get(
            &s,
            "/api/security/users/list",
            &format!("Admin:{ADMIN_PASSWORD}")
        )
        .status(),
        200,
        "Admin keeps its password and administration"
    );

    // dev (in Developers) is not: only its own key, no users.
    assert_eq!(key_ids(get(&s, "/api/api-keys/list", DEV_KEY)), [1001]);
    assert_eq!(get(&s, "/api/security/users/list", DEV_KEY).status(), 403);

    // The feed key still authenticates: it may revoke itself, an unknown key may not.
    let delete = |credential: &str| {
        client()
            .post(s.url(&format!("/api/api-keys/delete?id={FEED_KEY_ID}")))
            .header("X-ApiKey", credential)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(delete("feed-key-npm-internal-v02"), 403);
    assert_eq!(delete(FEED_KEY), 200);
    assert_eq!(
        key_ids(get(&s, "/api/api-keys/list", OPS_KEY)),
        [1000, 1001]
    );

    // The groups users named exist, and Administrators administers.
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM groups WHERE name IN ('Administrators', 'Developers')"
        ),
        2
    );
    assert_eq!(
        count(
            &s,
            "SELECT count(*) FROM permissions WHERE group_name = 'Administrators' \
             AND task = 'Administer' AND feed IS NULL AND feed_group IS NULL AND NOT deny"
        ),
        1
    );
    assert_eq!(count(&s, "SELECT count(*) FROM permissions"), 1);
}
