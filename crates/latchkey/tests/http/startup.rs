//! Start-up safety and recovery: the secret's fingerprint, the data
//! directory's trust, private database files, `reset-admin`, `/health` on a
//! broken database, SIGHUP, and refusals that change nothing.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::both_backends;
use crate::common::{
    client, file_mode as mode, full_control, latchkey_bin, wait_with_timeout, Backend, Options,
    TestDatabase, TestServer, ADMIN_PASSWORD, TEST_SECRET,
};

both_backends!(
    a_changed_secret_is_refused_with_one_clear_line,
    reset_admin_sets_recreates_and_re_adds_admin,
    health_reports_a_table_dropped_behind_the_servers_back,
    sighup_leaves_the_server_serving,
    a_later_admin_password_is_ignored_with_a_warning,
);

const OTHER_SECRET: &str = "another-secret-that-was-never-used-0123456789";

fn login_status(s: &TestServer, user: &str, password: &str) -> u16 {
    client()
        .get(s.url("/api/api-keys/list"))
        .basic_auth(user, Some(password))
        .send()
        .unwrap()
        .status()
        .as_u16()
}

/// Checks a refusal: nonzero exit, no panic, exactly one error line holding
/// every one of `expected`.
fn assert_one_clear_error_line(status: ExitStatus, log: &str, expected: &[&str]) -> String {
    assert!(
        !status.success() && status.code().is_some(),
        "{status:?}\n{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let errors: Vec<&str> = log
        .lines()
        .filter(|l| l.to_lowercase().contains("error"))
        .collect();
    assert_eq!(errors.len(), 1, "one clear line:\n{log}");
    for part in expected {
        assert!(errors[0].contains(part), "{part:?} not in {:?}", errors[0]);
    }
    errors[0].to_owned()
}

/// SQLite with a generated secret file.
fn sqlite_without_secret() -> Options {
    Options {
        unset_env: vec!["LATCHKEY_SECRET".into()],
        ..Options::default()
    }
}

/// The first log line containing `needle`, waiting for it (bounded).
fn log_line(s: &TestServer, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(line) = s.log().lines().find(|l| l.contains(needle)) {
            return line.to_owned();
        }
        assert!(Instant::now() < deadline, "no {needle:?} in:\n{}", s.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

// Item 4: the installation secret.

fn a_changed_secret_is_refused_with_one_clear_line(backend: Backend) {
    let mut s = TestServer::start(backend);
    let (_, key) = s.create_key(full_control());
    s.options_mut()
        .env
        .push(("LATCHKEY_SECRET".into(), OTHER_SECRET.into()));
    let (status, log) = s.restart_expecting_failure();
    assert_one_clear_error_line(status, &log, &["does not match", "LATCHKEY_SECRET"]);
    s.options_mut().env.clear();
    s.restart();
    assert_eq!(s.list_keys(&key).status(), 200, "nothing was changed");
}

#[test]
fn a_lost_secret_file_is_not_regenerated_when_the_database_has_keys() {
    let mut s = TestServer::start_with(Backend::Sqlite, sqlite_without_secret());
    let secret = s.data_dir.join("secret");
    s.create_key(full_control());
    s.kill();
    std::fs::remove_file(&secret).unwrap();
    let (status, log) = s.restart_expecting_failure();
    assert_one_clear_error_line(status, &log, &["restore", "LATCHKEY_SECRET"]);
    assert!(!secret.exists(), "no new secret was generated");
}

#[test]
fn an_altered_secret_file_is_refused() {
    let mut s = TestServer::start_with(Backend::Sqlite, sqlite_without_secret());
    let (_, key) = s.create_key(full_control());
    s.kill();
    let secret = s.data_dir.join("secret");
    let original = std::fs::read_to_string(&secret).unwrap();
    std::fs::write(&secret, OTHER_SECRET).unwrap();
    let (status, log) = s.restart_expecting_failure();
    assert_one_clear_error_line(status, &log, &["does not match"]);
    std::fs::write(&secret, original).unwrap();
    s.restart();
    assert_eq!(s.list_keys(&key).status(), 200);
}

#[test]
fn a_zero_length_database_next_to_a_secret_is_not_a_new_installation() {
    let mut options = sqlite_without_secret();
    options.unset_env.push("LATCHKEY_ADMIN_PASSWORD".into());
    let mut s = TestServer::start_with(Backend::Sqlite, options);
    let password_file = s.data_dir.join("initial-admin-password");
    let password = std::fs::read_to_string(&password_file).unwrap();
    s.kill();
    let db = s.data_dir.join("latchkey.db");
    std::fs::write(&db, "").unwrap();
    for companion in ["latchkey.db-wal", "latchkey.db-shm"] {
        let _ = std::fs::remove_file(s.data_dir.join(companion));
    }
    let (status, log) = s.restart_expecting_failure();
    assert_one_clear_error_line(status, &log, &["empty", "secret", "initial-admin-password"]);
    assert_eq!(
        std::fs::read_to_string(&password_file).unwrap(),
        password,
        "initial-admin-password is never overwritten"
    );
}

#[test]
fn a_rotation_moves_the_fingerprint_and_the_old_secret_alone_is_then_refused() {
    let mut s = TestServer::start(Backend::Sqlite);
    let (_, key) = s.create_key(full_control());
    s.options_mut().env = vec![
        ("LATCHKEY_SECRET".into(), OTHER_SECRET.into()),
        ("LATCHKEY_PREVIOUS_SECRET".into(), TEST_SECRET.into()),
    ];
    s.restart();
    assert_eq!(s.list_keys(&key).status(), 200);
    assert!(s
        .log()
        .contains("now records the current installation secret"));
    // Back to the old secret alone: keys made since would fail, so refused.
    s.options_mut().env.clear();
    let (status, log) = s.restart_expecting_failure();
    assert_one_clear_error_line(status, &log, &["does not match"]);
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn postgres_requires_latchkey_secret() {
    crate::common::postgres_url("postgres_requires_latchkey_secret");
    let mut s = TestServer::start(Backend::Postgres);
    s.options_mut().unset_env.push("LATCHKEY_SECRET".into());
    let (status, log) = s.restart_expecting_failure();
    assert_one_clear_error_line(status, &log, &["LATCHKEY_SECRET must be set"]);
    assert!(
        !s.data_dir.join("secret").exists(),
        "no node secret generated"
    );
}

// Item 5: the data directory and its files.

/// Every test process starts the server with the usual umask.
fn usual_umask() {
    // SAFETY: umask has no preconditions; nextest runs each test in its own process.
    unsafe { libc::umask(0o022) };
}

#[test]
fn database_files_are_private_and_a_too_open_data_dir_is_tightened() {
    usual_umask();
    let mut s = TestServer::start(Backend::Sqlite);
    s.create_key(full_control());
    for file in [
        "latchkey.db",
        "latchkey.db-wal",
        "latchkey.db-shm",
        "latchkey.db.lock",
    ] {
        assert_eq!(mode(&s.data_dir.join(file)), 0o600, "{file}");
    }
    assert_eq!(mode(&s.data_dir), 0o700);
    s.kill();
    // As `mkdir -p` and an older latchkey left them.
    std::fs::set_permissions(&s.data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let db = s.data_dir.join("latchkey.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    s.restart();
    assert_eq!(mode(&s.data_dir), 0o700, "tightened");
    assert_eq!(mode(&db), 0o600);
    assert!(
        s.log().contains("changed it to 700"),
        "with a warning:\n{}",
        s.log()
    );
}

/// Runs `latchkey serve` on `data_dir` expected to refuse; returns its status and stderr.
fn serve_expecting_failure(data_dir: &Path, listen: &str) -> (ExitStatus, String) {
    let out = tempfile::tempdir().unwrap();
    let stderr = out.path().join("stderr");
    let mut child = Command::new(latchkey_bin())
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data_dir)
        .env("LATCHKEY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("LATCHKEY_SECRET")
        .env_remove("LATCHKEY_DATABASE_URL")
        .env_remove("LATCHKEY_LISTEN")
        .env_remove("LATCHKEY_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    (status, std::fs::read_to_string(&stderr).unwrap())
}

#[test]
fn a_world_writable_data_dir_of_another_user_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    // An attacker's pre-seeded database.
    std::fs::write(data_dir.join("latchkey.db"), "").unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let data_dir = match std::os::unix::fs::chown(&data_dir, Some(65534), Some(65534)) {
        Ok(()) => data_dir,
        // Not root: a directory of root's stands in for another user's.
        Err(_) => std::path::PathBuf::from("/"),
    };
    let (status, log) = serve_expecting_failure(&data_dir, "127.0.0.1:0");
    assert_one_clear_error_line(status, &log, &["belongs to user id"]);
    assert!(!data_dir.join("secret").exists());
}

#[test]
fn a_group_writable_data_dir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o770)).unwrap();
    let (status, log) = serve_expecting_failure(&data_dir, "127.0.0.1:0");
    assert_one_clear_error_line(status, &log, &["writable by group or others"]);
    assert_eq!(
        std::fs::read_dir(&data_dir).unwrap().count(),
        0,
        "nothing created"
    );
}

fn a_later_admin_password_is_ignored_with_a_warning(backend: Backend) {
    let mut s = TestServer::start(backend);
    s.restart();
    let line = log_line(&s, "LATCHKEY_ADMIN_PASSWORD is ignored");
    assert!(line.contains("WARN"), "{line}");
}

// Item 6: reset-admin.

pub(crate) fn reset_admin(s: &TestServer, password: Option<&str>) -> Output {
    let mut cmd = Command::new(latchkey_bin());
    cmd.args(["reset-admin", "--data-dir"])
        .arg(&s.data_dir)
        .env_remove("LATCHKEY_ADMIN_PASSWORD")
        .env_remove("LATCHKEY_DATABASE_URL")
        .env_remove("LATCHKEY_DATA_DIR")
        .stdin(Stdio::null());
    if let Some(url) = s.database_url() {
        cmd.arg("--database-url").arg(url);
    }
    if let Some(p) = password {
        cmd.env("LATCHKEY_ADMIN_PASSWORD", p);
    }
    cmd.output().unwrap()
}

fn assert_success(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    stderr
}

fn reset_admin_sets_recreates_and_re_adds_admin(backend: Backend) {
    let mut s = TestServer::start(backend);
    // A server on SQLite caches users: it must be stopped first. PostgreSQL
    // nodes read users on every request: the reset works on a live server.
    let sqlite = backend == Backend::Sqlite;
    if sqlite {
        let out = reset_admin(&s, Some("while-it-runs-password"));
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("stop it first"), "{stderr}");
        assert_eq!(login_status(&s, "Admin", ADMIN_PASSWORD), 200, "unchanged");
        s.kill();
    }

    let log = assert_success(&reset_admin(&s, Some("first-reset-password")));
    assert!(log.contains("set a new password for user Admin"), "{log}");
    // Out of Administrators behind the server's back.
    s.execute_sql("UPDATE users SET groups = '[]' WHERE name_key = 'admin'");
    let log = assert_success(&reset_admin(&s, Some("second-reset-password")));
    assert!(log.contains("re-added it to Administrators"), "{log}");
    if sqlite {
        s.restart();
    }
    assert_eq!(login_status(&s, "Admin", "second-reset-password"), 200);
    assert_eq!(login_status(&s, "Admin", ADMIN_PASSWORD), 403);
    if sqlite {
        s.kill();
    }

    // Gone altogether, with a generated password.
    s.execute_sql("DELETE FROM users WHERE name_key = 'admin'");
    let out = reset_admin(&s, None);
    let log = assert_success(&out);
    assert!(log.contains("recreated user Admin"), "{log}");
    let file = s.data_dir.join("initial-admin-password");
    assert_eq!(mode(&file), 0o600);
    let generated = std::fs::read_to_string(&file).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!log.contains(&generated) && !stdout.contains(&generated));
    assert!(stdout.contains("initial-admin-password"), "{stdout}");
    // The file is never overwritten.
    let out = reset_admin(&s, None);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), generated);

    // The user was deleted by SQL, behind the server's back: a PostgreSQL
    // node's cache cannot know, so every back end starts afresh here.
    s.restart();
    assert_eq!(login_status(&s, "Admin", generated.trim()), 200);
    let r = client()
        .get(s.url("/api/security/users/list"))
        .basic_auth("Admin", Some(generated.trim()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "Admin administers again");
}

// Item 8: a deep health check.

fn health_reports_a_table_dropped_behind_the_servers_back(backend: Backend) {
    let s = TestServer::start(backend);
    assert_eq!(client().get(s.url("/health")).send().unwrap().status(), 200);
    s.execute_sql("DROP TABLE api_keys");
    let r = client().get(s.url("/health")).send().unwrap();
    assert_eq!(r.status(), 500);
    let r = client().get(s.url("/health/json")).send().unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().unwrap();
    assert_eq!(body["databaseStatus"], "Error", "{body}");
}

/// Runs one query returning an integer on the test server's SQLite database.
fn sqlite_scalar(db: &Path, sql: &str) -> i64 {
    use sqlx::Connection;
    let url = format!("sqlite://{}", db.display());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        let v: i64 = sqlx::query_scalar(sql).fetch_one(&mut c).await.unwrap();
        c.close().await.unwrap();
        v
    })
}

#[test]
fn a_corrupt_sqlite_database_is_refused_at_start() {
    let mut s = TestServer::start(Backend::Sqlite);
    for _ in 0..20 {
        s.create_key(full_control());
    }
    assert_eq!(s.terminate().code(), Some(0));
    let db = s.data_dir.join("latchkey.db");
    let page = sqlite_scalar(
        &db,
        "SELECT rootpage FROM sqlite_master WHERE name = 'api_keys_user_id'",
    );
    let size = sqlite_scalar(&db, "PRAGMA page_size");
    // Garbage over the index nothing reads at start-up but the check.
    let mut bytes = std::fs::read(&db).unwrap();
    let start = usize::try_from((page - 1) * size).unwrap();
    bytes[start..start + usize::try_from(size).unwrap()].fill(0xA5);
    std::fs::write(&db, bytes).unwrap();
    let (status, log) = s.restart_expecting_failure();
    assert_one_clear_error_line(status, &log, &["corrupt", "quick_check", "backup"]);
}

// Item 12: signals, the port, the start-up line.

fn sighup_leaves_the_server_serving(backend: Backend) {
    let s = TestServer::start(backend);
    let pid = s.pid().to_string();
    for _ in 0..3 {
        let status = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
        assert!(status.success());
    }
    log_line(&s, "SIGHUP received");
    assert_eq!(client().get(s.url("/health")).send().unwrap().status(), 200);
    assert_eq!(s.list_keys(&s.admin()).status(), 200);
}

#[test]
fn rotate_secret_refuses_while_a_server_runs() {
    let s = TestServer::start_with(Backend::Sqlite, sqlite_without_secret());
    let secret = std::fs::read_to_string(s.data_dir.join("secret")).unwrap();
    let out = Command::new(latchkey_bin())
        .args(["rotate-secret", "--data-dir"])
        .arg(&s.data_dir)
        .env_remove("LATCHKEY_SECRET")
        .env_remove("LATCHKEY_DATA_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("stop it first"));
    assert_eq!(
        std::fs::read_to_string(s.data_dir.join("secret")).unwrap(),
        secret
    );
    assert!(!s.data_dir.join("secret.previous").exists());
    assert_eq!(s.list_keys(&s.admin()).status(), 200);
}

#[test]
fn a_port_in_use_changes_nothing_on_disk() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let (status, log) = serve_expecting_failure(&data_dir, &addr);
    assert_one_clear_error_line(status, &log, &[&addr]);
    assert!(!data_dir.exists(), "no data directory, database or secret");
}

#[test]
fn the_start_up_line_names_the_sqlite_database() {
    let s = TestServer::start(Backend::Sqlite);
    let line = log_line(&s, "ready");
    let db = s.data_dir.join("latchkey.db");
    assert!(
        line.contains(&format!("database=sqlite://{}", db.display())),
        "{line}"
    );
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn the_start_up_line_names_the_postgres_database_without_its_password() {
    crate::common::postgres_url("the_start_up_line_names_the_postgres_database");
    let db = TestDatabase::create();
    // Trust authentication ignores the password: it only has to stay out of the log.
    let url = db
        .url
        .replacen("://postgres@", "://postgres:db-Passw0rd-in-url@", 1);
    assert_ne!(url, db.url, "{}", db.url);
    let s = TestServer::start_with(
        Backend::Sqlite,
        Options {
            database_url: Some(url),
            ..Options::default()
        },
    );
    let line = log_line(&s, "ready");
    let log = s.log();
    assert!(!log.contains("db-Passw0rd-in-url"), "{log}");
    assert!(
        line.contains("database=postgres://postgres:***@127.0.0.1"),
        "{line}"
    );
}
