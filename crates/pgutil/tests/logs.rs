//! `pgutil apikeys logs` against a real server: one line per entry, bodies
//! with `--bodies`, `--limit`, `--json` byte for byte, and a clear error for
//! an unknown key. The server runs with the test-only
//! `LATCHKEY_USAGE_FLUSH_MS` so that entries are written at once.

mod common;

use std::time::{Duration, Instant};

use common::{stderr_of, stdout_of, Config, Server, ADMIN_PASSWORD};
use serde_json::Value;

/// Runs pgutil with `args` and the admin's credential; returns (success, stdout, stderr).
fn run(config: &Config, server: &Server, args: &[&str]) -> (bool, String, String) {
    let output = config
        .pgutil()
        .args(args)
        .args(server.admin_args())
        .output()
        .expect("run pgutil");
    (
        output.status.success(),
        stdout_of(&output),
        stderr_of(&output),
    )
}

fn ok(config: &Config, server: &Server, args: &[&str]) -> String {
    let (success, out, err) = run(config, server, args);
    assert!(success, "{args:?} failed: {err}\n{}", server.log());
    assert_eq!(err, "", "{args:?} wrote to stderr");
    out
}

/// The line pgutil prints for an entry, with its time and duration blanked.
fn shape(line: &str) -> String {
    let (time, rest) = line.split_at(19);
    assert!(
        time.as_bytes()[10] == b' ' && time.as_bytes()[4] == b'-' && time.as_bytes()[13] == b':',
        "{line}"
    );
    let mut fields: Vec<String> = rest.split("  ").map(str::to_owned).collect();
    let ms = fields
        .iter()
        .position(|f| f.ends_with(" ms"))
        .expect("a duration");
    assert!(
        fields[ms].trim_end_matches(" ms").parse::<u64>().is_ok(),
        "{line}"
    );
    fields[ms] = "N ms".into();
    format!("TIME{}", fields.join("  "))
}

#[test]
fn logs_print_one_line_per_entry_newest_first_with_bodies_on_request() {
    let server = Server::start_with_env(&[("LATCHKEY_USAGE_FLUSH_MS", "50")]);
    let config = Config::new();
    let key = ok(
        &config,
        &server,
        &[
            "apikeys",
            "create",
            "system",
            "--apis=full-control",
            "--logging=both",
        ],
    );
    let key = key.trim();
    let listed = ok(&config, &server, &["apikeys", "list", "--json"]);
    let keys: Vec<Value> = serde_json::from_str(&listed).unwrap();
    let id = keys[0]["id"].as_i64().unwrap().to_string();
    let as_key = |args: &[&str]| {
        config
            .pgutil()
            .args(args)
            .arg(server.source_arg())
            .arg(format!("--api-key={key}"))
            .assert()
            .success();
    };
    as_key(&["apikeys", "list"]);
    as_key(&["security", "users", "list"]);
    let id_arg = format!("--id={id}");
    let start = Instant::now();
    let text = loop {
        let text = ok(&config, &server, &["apikeys", "logs", &id_arg]);
        if text.lines().count() == 2 {
            break text;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let shapes: Vec<String> = text.lines().map(shape).collect();
    assert_eq!(
        shapes,
        [
            "TIME  GET /api/security/users/list  200  N ms  127.0.0.1",
            "TIME  GET /api/api-keys/list  200  N ms  127.0.0.1",
        ]
    );
    let limited = ok(&config, &server, &["apikeys", "logs", &id_arg, "--limit=1"]);
    assert_eq!(limited.lines().count(), 1);
    assert_eq!(shape(limited.lines().next().unwrap()), shapes[0]);
    let with_bodies = ok(
        &config,
        &server,
        &["apikeys", "logs", &id_arg, "--limit=1", "--bodies"],
    );
    let lines: Vec<&str> = with_bodies.lines().collect();
    assert_eq!(shape(lines[0]), shapes[0]);
    assert_eq!(lines[1], "  Response body:");
    assert!(
        lines[2].starts_with("    [") && lines[2].contains("\"Admin\""),
        "{with_bodies}"
    );
    assert!(!with_bodies.contains(key), "no key text: {with_bodies}");
    // --json: the server's array as it sent it.
    let json = ok(&config, &server, &["apikeys", "logs", &id_arg, "--json"]);
    let raw = reqwest::blocking::Client::new()
        .get(format!(
            "{}/api/api-keys/logs?id={id}",
            server.url.trim_end_matches('/')
        ))
        .header("X-ApiKey", format!("Admin:{ADMIN_PASSWORD}"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert_eq!(json.trim_end(), raw.trim_end());
    let entries: Vec<Value> = serde_json::from_str(&json).unwrap();
    assert_eq!(entries.len(), 2);
    // An unknown key: an error naming it, nothing on stdout.
    let (success, out, err) = run(&config, &server, &["apikeys", "logs", "--id=999999"]);
    assert!(!success);
    assert_eq!(out, "");
    assert!(err.contains("999999") && err.contains("404"), "{err}");
    let (success, _, err) = run(&config, &server, &["apikeys", "logs", &id_arg, "--limit=0"]);
    assert!(!success && err.contains("limit"), "{err}");
}
