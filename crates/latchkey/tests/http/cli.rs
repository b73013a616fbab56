//! Running it: `latchkey --version`, `serve --help`, `check-config`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use crate::common::{latchkey_bin, Backend, TestServer, TEST_SECRET};

/// `latchkey ARGS` with no LATCHKEY_* variable from the caller's environment.
fn latchkey(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(latchkey_bin());
    cmd.args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("LATCHKEY_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn version_prints_the_name_and_the_package_version() {
    let out = latchkey(&["--version"], &[]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout),
        format!("latchkey {}\n", env!("CARGO_PKG_VERSION"))
    );
}

/// Each `--flag` of a help text with the text that describes it.
fn flags(help: &str) -> Vec<(String, String)> {
    let mut flags: Vec<(String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("--")
            || trimmed.starts_with("-h, --")
            || trimmed.starts_with("-V, --")
        {
            let name = trimmed
                .trim_start_matches("-h, ")
                .trim_start_matches("-V, ");
            let name = name.split_whitespace().next().unwrap_or(name);
            flags.push((name.to_owned(), String::new()));
        } else if line.starts_with("  ") {
            if let Some((_, text)) = flags.last_mut() {
                text.push(' ');
                text.push_str(trimmed);
            }
        } else if !line.is_empty() {
            // "Environment only …": the flags are over.
            if !flags.is_empty() {
                break;
            }
        }
    }
    flags
}

#[test]
fn serve_and_check_config_help_show_every_flags_environment_variable_and_default() {
    for command in ["serve", "check-config"] {
        let out = latchkey(&[command, "--help"], &[]);
        assert!(out.status.success());
        let help = text(&out.stdout);
        let flags = flags(&help);
        assert!(flags.len() > 20, "{command}: {flags:?}");
        for (flag, about) in &flags {
            if flag == "--help" || flag == "--version" {
                continue;
            }
            let env = format!("LATCHKEY_{}", flag[2..].replace('-', "_").to_uppercase());
            assert!(
                about.contains(&format!("[env: {env}")),
                "{command} {flag} does not name {env}: {about}"
            );
            assert!(
                about.contains("[default: ") || about.contains("default: none"),
                "{command} {flag} states no default: {about}"
            );
        }
        assert!(help.contains("--metrics-token"), "{help}");
    }
}

#[test]
fn the_metrics_token_is_not_shown_in_help() {
    let out = latchkey(
        &["serve", "--help"],
        &[("LATCHKEY_METRICS_TOKEN", "sekrit-token-value")],
    );
    assert!(!text(&out.stdout).contains("sekrit-token-value"));
}

#[test]
fn check_config_on_a_new_data_directory_is_ok_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = latchkey(&["check-config", "--data-dir", data.to_str().unwrap()], &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "configuration ok\n");
    assert!(
        text(&out.stderr).contains("will be created"),
        "{}",
        text(&out.stderr)
    );
    assert!(!data.exists(), "check-config changes nothing");
}

#[test]
fn check_config_of_a_running_servers_settings_is_ok() {
    let s = TestServer::start(Backend::Sqlite);
    let data = s.data_dir.to_str().unwrap().to_owned();
    let out = latchkey(
        &[
            "check-config",
            "--data-dir",
            &data,
            "--public-url",
            "https://keys.example.com",
        ],
        &[("LATCHKEY_SECRET", TEST_SECRET)],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "configuration ok\n");
}

/// Runs `check-config` and asserts it fails with one `error: ` line naming `what`.
fn refused(args: &[&str], env: &[(&str, &str)], what: &str) {
    let mut all = vec!["check-config"];
    all.extend_from_slice(args);
    let out = latchkey(&all, env);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
    assert!(text(&out.stdout).is_empty(), "{args:?}");
    let last = stderr.lines().last().unwrap_or("");
    assert!(last.starts_with("error: "), "{args:?}: {stderr}");
    assert!(
        last.contains(what),
        "{args:?}: expected {what:?} in {stderr}"
    );
}

#[test]
fn check_config_refuses_what_serve_would_refuse() {
    let s = TestServer::start(Backend::Sqlite);
    let data = s.data_dir.to_str().unwrap().to_owned();
    let secret = [("LATCHKEY_SECRET", TEST_SECRET)];
    refused(
        &["--data-dir", &data],
        &[(
            "LATCHKEY_SECRET",
            "another-secret-of-at-least-32-characters",
        )],
        "does not match",
    );
    refused(
        &["--data-dir", &data, "--public-url", "keys.example.com"],
        &secret,
        "http:// or https://",
    );
    refused(
        &[
            "--data-dir",
            &data,
            "--leak-report-keys",
            "/nonexistent/keys.json",
        ],
        &secret,
        "leak-report keys",
    );
    refused(
        &["--data-dir", &data, "--listen", "not an address"],
        &secret,
        "--listen",
    );
    refused(
        &["--data-dir", &data, "--database-url", "mysql://x/y"],
        &secret,
        "not a database URL",
    );
    refused(
        &[
            "--data-dir",
            &data,
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ],
        &secret,
        "cannot check the database",
    );
    refused(
        &[
            "--data-dir",
            &data,
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
        ],
        &[],
        "LATCHKEY_SECRET must be set",
    );

    let dir = tempfile::tempdir().unwrap();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    refused(
        &["--data-dir", open.to_str().unwrap()],
        &[],
        "writable by group or others",
    );
    let orphan = dir.path().join("no/such/parent");
    refused(
        &["--data-dir", orphan.to_str().unwrap()],
        &[],
        "does not exist",
    );
    let short = dir.path().join("short");
    std::fs::create_dir(&short).unwrap();
    std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o700)).unwrap();
    refused(
        &["--data-dir", short.to_str().unwrap()],
        &[("LATCHKEY_SECRET", "short")],
        "at least 32",
    );
    assert!(Path::new(&data).join("latchkey.db").exists());
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn check_config_on_postgres_reads_the_migrations_and_the_fingerprint() {
    crate::common::postgres_url(
        "check_config_on_postgres_reads_the_migrations_and_the_fingerprint",
    );
    let s = TestServer::start(Backend::Postgres);
    let url = s.database_url().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let args = ["--data-dir", data.to_str().unwrap(), "--database-url", &url];
    let mut all = vec!["check-config"];
    all.extend_from_slice(&args);
    let out = latchkey(&all, &[("LATCHKEY_SECRET", TEST_SECRET)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "configuration ok\n");
    refused(
        &args,
        &[(
            "LATCHKEY_SECRET",
            "another-secret-of-at-least-32-characters",
        )],
        "does not match",
    );
}
