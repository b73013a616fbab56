//! Start-up and shutdown of `latchkey serve`: the listening line, generated
//! admin password and secret, restarts, SIGTERM, and clear refusals.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::both_backends;
use crate::common::{
    client, file_mode as mode, full_control, latchkey_bin, post_json, wait_with_timeout, Backend,
    Options, TestServer, ADMIN_PASSWORD,
};

both_backends!(
    a_restart_never_changes_the_admin_password,
    sigterm_exits_with_status_0,
    a_newer_schema_refuses_to_start_with_a_clear_message,
);

#[test]
fn prints_the_listening_line_with_the_real_port() {
    let s = TestServer::start(Backend::Sqlite);
    let port: u16 = s
        .base
        .strip_prefix("http://127.0.0.1:")
        .unwrap_or_else(|| panic!("unexpected address {}", s.base))
        .parse()
        .unwrap();
    assert_ne!(port, 0, "the real port, not the requested 0");
    assert_eq!(client().get(s.url("/health")).send().unwrap().status(), 200);
}

fn login_status(s: &TestServer, user: &str, password: &str) -> u16 {
    let r = client()
        .get(s.url("/api/api-keys/list"))
        .basic_auth(user, Some(password))
        .send()
        .unwrap();
    r.status().as_u16()
}

#[test]
fn without_admin_password_a_generated_one_is_in_a_private_file_and_not_in_the_log() {
    let options = Options {
        unset_env: vec!["LATCHKEY_ADMIN_PASSWORD".into()],
        ..Options::default()
    };
    let mut s = TestServer::start_with(Backend::Sqlite, options);
    let file = s.data_dir.join("initial-admin-password");
    assert_eq!(mode(&file), 0o600);
    let password = std::fs::read_to_string(&file).unwrap().trim().to_owned();
    assert!(
        password.len() >= 16,
        "a strong password: {} characters",
        password.len()
    );
    assert_eq!(login_status(&s, "Admin", &password), 200);
    assert_eq!(login_status(&s, "Admin", ADMIN_PASSWORD), 403);
    let log = s.log();
    assert!(
        !log.contains(&password),
        "the log shows the password:\n{log}"
    );
    assert!(
        log.contains("initial-admin-password"),
        "the log names the file:\n{log}"
    );

    s.restart();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap().trim(),
        password,
        "not regenerated"
    );
    assert_eq!(
        login_status(&s, "Admin", &password),
        200,
        "still Admin's password after a restart"
    );
    assert!(!s.log().contains(&password));
}

#[test]
fn without_secret_a_generated_one_is_private_and_keys_survive_restarts() {
    let options = Options {
        unset_env: vec!["LATCHKEY_SECRET".into()],
        ..Options::default()
    };
    let mut s = TestServer::start_with(Backend::Sqlite, options);
    let file = s.data_dir.join("secret");
    assert_eq!(mode(&file), 0o600);
    let secret = std::fs::read_to_string(&file).unwrap();
    assert!(secret.trim().len() >= 32);
    let (_, key) = s.create_key(full_control());
    assert_eq!(s.list_keys(&key).status(), 200);

    s.restart();
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        secret,
        "the secret is kept"
    );
    assert_eq!(
        s.list_keys(&key).status(),
        200,
        "keys still verify after a restart"
    );
    s.restart();
    assert_eq!(s.list_keys(&key).status(), 200);
    assert!(!s.log().contains(secret.trim()), "the log shows the secret");
}

fn a_restart_never_changes_the_admin_password(backend: Backend) {
    let mut s = TestServer::start(backend);
    // A different LATCHKEY_ADMIN_PASSWORD on a later start is ignored.
    s.options_mut()
        .env
        .push(("LATCHKEY_ADMIN_PASSWORD".into(), "another-password".into()));
    s.restart();
    assert_eq!(login_status(&s, "Admin", ADMIN_PASSWORD), 200);
    assert_eq!(login_status(&s, "Admin", "another-password"), 403);

    // A password changed through the API survives restarts.
    let body = serde_json::json!({"name": "Admin", "password": "changed-password"});
    let r = post_json(&s.url("/api/security/users/edit"), &body)
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    s.restart();
    assert_eq!(login_status(&s, "Admin", "changed-password"), 200);
    assert_eq!(login_status(&s, "Admin", ADMIN_PASSWORD), 403);
    assert_eq!(login_status(&s, "Admin", "another-password"), 403);
}

fn sigterm_exits_with_status_0(backend: Backend) {
    let mut s = TestServer::start(backend);
    let (_, key) = s.create_key(full_control());
    let status = s.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}\n{}", s.log());
    s.restart();
    assert_eq!(
        s.list_keys(&key).status(),
        200,
        "the database was closed cleanly"
    );
}

/// Runs `latchkey serve` expected to refuse to start; returns its exit status, stdout and stderr.
fn serve_expecting_failure(data_dir: &Path, args: &[&str]) -> (ExitStatus, String, String) {
    let out = tempfile::tempdir().unwrap();
    let (stdout, stderr) = (out.path().join("stdout"), out.path().join("stderr"));
    let mut child = Command::new(latchkey_bin())
        .arg("serve")
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("LATCHKEY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .env_remove("LATCHKEY_SECRET")
        .env_remove("LATCHKEY_DATABASE_URL")
        .env_remove("LATCHKEY_LISTEN")
        .env_remove("LATCHKEY_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut child, Duration::from_secs(30));
    let read = |p: &Path| std::fs::read_to_string(p).unwrap();
    (status, read(&stdout), read(&stderr))
}

/// Checks a refusal: nonzero exit, no panic or backtrace, exactly one error
/// line, which contains every one of `expected`; returns that line.
fn assert_one_clear_error_line(
    status: ExitStatus,
    stdout: &str,
    stderr: &str,
    expected: &[&str],
) -> String {
    assert!(
        !status.success() && status.code().is_some(),
        "{status:?}\n{stderr}"
    );
    assert!(!stdout.contains("listening on"), "{stdout}");
    for bad in [
        "panicked",
        "backtrace",
        "Backtrace",
        "RUST_BACKTRACE",
        "Stack",
    ] {
        assert!(!stderr.contains(bad), "{bad} in:\n{stderr}");
    }
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.to_lowercase().contains("error"))
        .collect();
    assert_eq!(errors.len(), 1, "one clear line:\n{stderr}");
    let line = errors[0].to_owned();
    for part in expected {
        assert!(line.contains(part), "{part:?} not in {line:?}");
    }
    line
}

#[test]
fn a_port_in_use_exits_nonzero_with_one_clear_line() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let (status, stdout, stderr) =
        serve_expecting_failure(&dir.path().join("data"), &["--listen", &addr]);
    let line = assert_one_clear_error_line(status, &stdout, &stderr, &[&addr]);
    assert!(line.to_lowercase().contains("in use"), "{line}");
}

#[test]
fn an_unusable_data_dir_exits_nonzero_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-regular-file");
    std::fs::write(&file, "not a directory").unwrap();
    let data_dir = file.join("data");
    let (status, stdout, stderr) = serve_expecting_failure(&data_dir, &["--listen", "127.0.0.1:0"]);
    assert_one_clear_error_line(status, &stdout, &stderr, &[&data_dir.display().to_string()]);
}

#[test]
fn a_bad_database_url_scheme_exits_nonzero_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let url = "mysql://latchkey:db-secret-password@db.example/latchkey";
    let args = ["--listen", "127.0.0.1:0", "--database-url", url];
    let (status, stdout, stderr) = serve_expecting_failure(&dir.path().join("data"), &args);
    let line = assert_one_clear_error_line(status, &stdout, &stderr, &[]);
    assert!(
        line.contains("sqlite") && line.contains("postgres"),
        "the line says what is accepted: {line}"
    );
    assert!(
        !stderr.contains("db-secret-password"),
        "the database password is shown:\n{stderr}"
    );
}

fn a_newer_schema_refuses_to_start_with_a_clear_message(backend: Backend) {
    let mut s = TestServer::start(backend);
    s.kill();
    let future = match backend {
        Backend::Sqlite => "1, x'00'",
        Backend::Postgres => "true, '\\x00'::bytea",
    };
    s.execute_sql(&format!(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99999, 'from the future', {future}, 0)"
    ));
    let (status, log) = s.restart_expecting_failure();
    assert!(!status.success(), "{status:?}");
    assert!(
        log.contains("newer"),
        "the message says the schema is newer:\n{log}"
    );
    assert!(log.contains("99999"), "and which version it found:\n{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_second_server_on_the_same_sqlite_database_is_refused() {
    let s = TestServer::start(Backend::Sqlite);
    let out = std::process::Command::new(crate::common::latchkey_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&s.data_dir)
        .env("LATCHKEY_SECRET", crate::common::TEST_SECRET)
        .env_remove("LATCHKEY_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("another latchkey process is using"),
        "{stderr}"
    );
    assert_eq!(
        s.list_keys(&s.admin()).status(),
        200,
        "the first server is unaffected"
    );
}
