//! Black-box tests of `pgutil audit list`: the real `pgutil` binary against a
//! real `latchkey` server, output compared exactly (times checked for form,
//! then cut off: they are the clock's).

mod common;

use common::{stderr_of, stdout_of, Config, Server, ADMIN_PASSWORD};

/// Runs `pgutil ARGS… --source=… --username=Admin --password=…`, expects
/// success and returns stdout.
fn ok(config: &Config, server: &Server, args: &[&str]) -> String {
    let output = config
        .pgutil()
        .args(args)
        .args(server.admin_args())
        .output()
        .expect("run pgutil");
    assert!(
        output.status.success(),
        "{args:?} failed: {}\n{}",
        stderr_of(&output),
        server.log()
    );
    assert_eq!(stderr_of(&output), "", "{args:?} wrote to stderr");
    stdout_of(&output)
}

/// `audit list` output with each line's leading `YYYY-MM-DD HH:MM:SS  ` checked and removed.
fn without_times(out: &str) -> String {
    out.lines()
        .map(|line| {
            let (time, rest) = line.split_at(21);
            let b = time.as_bytes();
            assert!(
                b.iter().enumerate().all(|(i, c)| match i {
                    4 | 7 => *c == b'-',
                    10 => *c == b' ',
                    13 | 16 => *c == b':',
                    19 | 20 => *c == b' ',
                    _ => c.is_ascii_digit(),
                }),
                "bad time in {line:?}"
            );
            format!("{rest}\n")
        })
        .collect()
}

#[test]
fn audit_list_prints_one_line_per_entry_newest_first_and_filters() {
    let server = Server::start();
    let config = Config::new();
    config
        .pgutil()
        .args(["security", "users", "create", "--username=alice"])
        .arg("--password=alice-password-1")
        .arg(server.source_arg())
        .arg(format!("--api-key=Admin:{ADMIN_PASSWORD}"))
        .assert()
        .success();
    let key = ok(&config, &server, &["apikeys", "create", "system"]);
    assert!(!key.trim().is_empty());
    ok(&config, &server, &["apikeys", "delete", "--id=1000"]);

    let all = ok(&config, &server, &["audit", "list"]);
    assert_eq!(
        without_times(&all),
        "4  user Admin  apikey.delete  key 1000  127.0.0.1\n\
         3  user Admin  apikey.create  key 1000  127.0.0.1  {\"type\":\"system\"}\n\
         2  user Admin  user.add  user alice  127.0.0.1  {\"displayName\":\"alice\",\"groups\":[]}\n\
         1  system  user.add  user Admin  -  {\"displayName\":\"Administrator\",\"groups\":[\"Administrators\"]}\n"
    );
    assert!(!all.contains(ADMIN_PASSWORD) && !all.contains("alice-password-1"));
    assert!(
        !all.contains(key.trim()),
        "the key text is in the audit trail"
    );

    let created = ok(
        &config,
        &server,
        &["audit", "list", "--action=apikey.create"],
    );
    assert_eq!(
        without_times(&created),
        "3  user Admin  apikey.create  key 1000  127.0.0.1  {\"type\":\"system\"}\n"
    );
    let alice = ok(&config, &server, &["audit", "list", "--target=user alice"]);
    assert_eq!(
        without_times(&alice),
        "2  user Admin  user.add  user alice  127.0.0.1  {\"displayName\":\"alice\",\"groups\":[]}\n"
    );
    let newest = ok(&config, &server, &["audit", "list", "--limit=1"]);
    assert_eq!(
        without_times(&newest),
        "4  user Admin  apikey.delete  key 1000  127.0.0.1\n"
    );
    let none = ok(&config, &server, &["audit", "list", "--action=group.add"]);
    assert_eq!(none, "No audit entries found.\n");

    // --json: the server's array as sent, filters applied.
    let json = ok(&config, &server, &["audit", "list", "--json", "--limit=2"]);
    assert!(json.ends_with('\n'));
    let entries: Vec<serde_json::Value> = serde_json::from_str(&json).expect("a JSON array");
    let ids: Vec<i64> = entries.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [4, 3]);
    assert_eq!(entries[1]["details"], serde_json::json!({"type": "system"}));
    assert_eq!(entries[1]["actor"], "user Admin");
    let empty = ok(
        &config,
        &server,
        &["audit", "list", "--json", "--action=group.add"],
    );
    assert_eq!(empty, "[]\n");
}

#[test]
fn audit_list_refuses_a_limit_outside_1_to_1000_before_any_request() {
    let config = Config::new();
    for limit in ["--limit=0", "--limit=1001", "--limit=x"] {
        let output = config
            .pgutil()
            .args(["audit", "list", limit, "--source=http://127.0.0.1:9/"])
            .output()
            .expect("run pgutil");
        assert_eq!(output.status.code(), Some(2), "{limit}: {output:?}");
    }
}
