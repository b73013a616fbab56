//! Black-box tests: the real `pgutil` binary against a real `latchkey` server.

mod common;

use std::net::TcpListener;

use common::{closed_port_url, stderr_of, stdout_of, Config, Server, ADMIN_PASSWORD};
use predicates::prelude::*;

/// The documented `apikeys list` example, byte for byte.
const DOCUMENTED_LIST: &str = "\
(unnamed key)
  Id:          1000
  Expiration:  None
  Logging:     None
  Type:        Personal
  User:        Admin

Build server
  Id:           1001
  Expiration:   2027-08-01
  Logging:      Both
  Type:         Feed
  Feed:         public-npm
  Permissions:  view, add

";

/// Creates a key with `apikeys create ARGS…` as Admin and returns the key text.
fn create_key(config: &Config, server: &Server, args: &[&str]) -> String {
    let output = config
        .pgutil()
        .args(["apikeys", "create"])
        .args(args)
        .args(server.admin_args())
        .output()
        .expect("run pgutil");
    assert!(
        output.status.success(),
        "create failed: {}\n{}",
        stderr_of(&output),
        server.log()
    );
    let key = stdout_of(&output);
    assert!(
        key.ends_with('\n') && key.trim().lines().count() == 1,
        "only the key is printed: {key:?}"
    );
    key.trim().to_owned()
}

/// A system key with full control, for commands that should not re-hash a password.
fn full_control_key(config: &Config, server: &Server) -> String {
    create_key(config, server, &["system", "--name=tests"])
}

#[test]
fn delete_prints_the_documented_lines_and_the_key_is_gone() {
    let server = Server::start();
    let config = Config::new();
    create_key(&config, &server, &["personal"]);

    config
        .pgutil()
        .args(["apikeys", "delete", "--id=1000"])
        .args(server.admin_args())
        .assert()
        .success()
        .stdout("Deleting API key (id=1000)...\nAPI key deleted.\n")
        .stderr("");

    config
        .pgutil()
        .args(["apikeys", "list"])
        .args(server.admin_args())
        .assert()
        .success()
        .stdout("No API keys are defined.\n");
}

#[test]
fn delete_takes_the_id_as_a_separate_argument_too() {
    let server = Server::start();
    let config = Config::new();
    create_key(&config, &server, &["personal"]);
    config
        .pgutil()
        .args(["apikeys", "delete", "--id", "1000"])
        .args(server.admin_args())
        .assert()
        .success()
        .stdout("Deleting API key (id=1000)...\nAPI key deleted.\n");
}

#[test]
fn list_prints_the_documented_example_byte_for_byte() {
    let server = Server::start();
    let config = Config::new();
    create_key(&config, &server, &["personal"]);
    create_key(
        &config,
        &server,
        &[
            "feed",
            "--name=Build server",
            "--feed=public-npm",
            "--permissions=view,add",
            "--logging=both",
            "--expiration=2027-08-01",
        ],
    );
    config
        .pgutil()
        .args(["apikeys", "list"])
        .args(server.admin_args())
        .assert()
        .success()
        .stdout(DOCUMENTED_LIST)
        .stderr("");
}

#[test]
fn list_shows_system_apis_and_feed_groups() {
    let server = Server::start();
    let config = Config::new();
    create_key(
        &config,
        &server,
        &["system", "--apis=feeds,sbom-upload", "--logging=request"],
    );
    create_key(
        &config,
        &server,
        &["feed", "--group=internal", "--name=Group key"],
    );
    config
        .pgutil()
        .args(["apikeys", "list"])
        .args(server.admin_args())
        .assert()
        .success()
        .stdout(
            "\
(unnamed key)
  Id:          1000
  Expiration:  None
  Logging:     Request
  Type:        System
  APIs:        feeds, sbom-upload

Group key
  Id:           1001
  Expiration:   None
  Logging:      None
  Type:         Feed
  Feed group:   internal
  Permissions:  view, add, promote, delete

",
        );
}

#[test]
fn created_key_is_the_only_output_and_authenticates() {
    let server = Server::start();
    let config = Config::new();
    let key = full_control_key(&config, &server);
    assert!(!key.contains(char::is_whitespace));
    config
        .pgutil()
        .args([
            "apikeys",
            "list",
            &server.source_arg(),
            &format!("--api-key={key}"),
        ])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("tests\n  Id:          1000\n"))
        .stdout(predicate::str::contains(&key).not());
}

#[test]
fn personal_key_defaults_to_the_authenticated_user() {
    let server = Server::start();
    let config = Config::new();
    create_key(&config, &server, &["personal", "--name=laptop"]);
    config
        .pgutil()
        .args(["apikeys", "list"])
        .args(server.admin_args())
        .assert()
        .success()
        .stdout(
            predicate::str::contains("laptop\n")
                .and(predicate::str::contains("  User:        Admin\n")),
        );
}

#[test]
fn personal_key_without_any_user_is_a_usage_error_before_any_request() {
    let config = Config::new();
    config
        .pgutil()
        .args([
            "apikeys",
            "create",
            "personal",
            "--api-key=k",
            &format!("--source={}", closed_port_url()),
        ])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::starts_with(
            "error: personal keys need a user",
        ));
}

#[test]
fn invalid_create_options_are_usage_errors_before_any_request() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let source = format!("--source=http://{}/", listener.local_addr().expect("addr"));
    let config = Config::new();
    let cases: &[&[&str]] = &[
        &["system", "--apis=admin"],
        &["system", "--apis="],
        &["system", "--apis=full-control,sca"],
        &["system", "--logging=sometimes"],
        &["system", "--expiration=tomorrow"],
        &["feed"],
        &["feed", "--feed=a", "--group=b"],
        &["feed", "--feed=a", "--permissions=view,own"],
        &["personal", "--user=x", "--expiration=2024-13-01"],
    ];
    for args in cases {
        config
            .pgutil()
            .args(["apikeys", "create"])
            .args(*args)
            .args([&source, "--api-key=k"])
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::starts_with("error:"));
    }
    assert!(listener.accept().is_err(), "no request may be made");
}

#[test]
fn non_integer_id_is_a_usage_error_and_no_request_is_made() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let source = format!("--source=http://{}/", listener.local_addr().expect("addr"));
    let config = Config::new();
    for id in [
        "--id=abc",
        "--id=1e3",
        "--id=10.0",
        "--id= 1000",
        "--id=99999999999",
    ] {
        config
            .pgutil()
            .args(["apikeys", "delete", id, &source, "--api-key=k"])
            .assert()
            .code(2)
            .stdout("")
            .stderr(predicate::str::contains("--id"));
    }
    config
        .pgutil()
        .args(["apikeys", "delete", &source, "--api-key=k"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--id"));
    assert!(listener.accept().is_err(), "no request may be made");
}

#[test]
fn delete_of_an_unknown_key_says_not_found_404() {
    let server = Server::start();
    let config = Config::new();
    config
        .pgutil()
        .args(["apikeys", "delete", "--id=1000"])
        .args(server.admin_args())
        .assert()
        .code(1)
        .stdout("Deleting API key (id=1000)...\n")
        .stderr(predicate::str::starts_with(
            "error: API key 1000 was not found (404)",
        ))
        .stderr(predicate::function(|s: &str| s.lines().count() == 1));
}

#[test]
fn deleting_twice_gives_404_the_second_time() {
    let server = Server::start();
    let config = Config::new();
    let key = full_control_key(&config, &server);
    create_key(&config, &server, &["personal"]);
    let auth = [server.source_arg(), format!("--api-key={key}")];
    config
        .pgutil()
        .args(["apikeys", "delete", "--id=1001"])
        .args(&auth)
        .assert()
        .success();
    config
        .pgutil()
        .args(["apikeys", "delete", "--id=1001"])
        .args(&auth)
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "error: API key 1001 was not found (404)",
        ));
}

#[test]
fn wrong_password_is_refused_403_without_echoing_it() {
    let server = Server::start();
    let config = Config::new();
    create_key(&config, &server, &["personal"]);
    config
        .pgutil()
        .args([
            "apikeys",
            "delete",
            "--id=1000",
            &server.source_arg(),
            "--username=Admin",
            "--password=wrong-pw-xyz",
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "error: deleting API key 1000 was refused (403)",
        ))
        .stderr(predicate::str::contains("wrong-pw-xyz").not());
    config
        .pgutil()
        .args([
            "apikeys",
            "list",
            &server.source_arg(),
            "--api-key=not-a-real-key",
        ])
        .assert()
        .code(1)
        .stdout("")
        .stderr(predicate::str::starts_with(
            "error: listing API keys was refused (403)",
        ))
        .stderr(predicate::str::contains("not-a-real-key").not());
    // The key still exists.
    config
        .pgutil()
        .args(["apikeys", "list"])
        .args(server.admin_args())
        .assert()
        .success()
        .stdout(predicate::str::contains("  Id:          1000\n"));
}

#[test]
fn api_key_wins_over_username_and_password() {
    let server = Server::start();
    let config = Config::new();
    config
        .pgutil()
        .args(["apikeys", "list"])
        .args(server.admin_args())
        .arg("--api-key=bogus")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("(403)"));
}

#[test]
fn server_down_is_one_clear_line() {
    let config = Config::new();
    let url = closed_port_url();
    config
        .pgutil()
        .args([
            "apikeys",
            "delete",
            "--id=1000",
            &format!("--source={url}"),
            "--api-key=secret-key-123",
        ])
        .assert()
        .code(1)
        .stdout("Deleting API key (id=1000)...\n")
        .stderr(predicate::str::starts_with(format!(
            "error: deleting API key 1000 failed: could not connect to {url} (connection refused"
        )))
        .stderr(predicate::str::contains("secret-key-123").not())
        .stderr(predicate::function(|s: &str| s.lines().count() == 1));
    config
        .pgutil()
        .args(["apikeys", "list", &format!("--source={url}")])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "error: listing API keys failed: could not connect",
        ));
}

#[test]
fn unknown_source_name_is_an_error() {
    let config = Config::new();
    config
        .pgutil()
        .args(["apikeys", "delete", "--id=1000", "--source=nope"])
        .assert()
        .code(1)
        .stdout("")
        .stderr("--source error: Source nope not found.\n");
    // Without --source, the source named Default is needed.
    config
        .pgutil()
        .args(["apikeys", "list"])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "--source error: Source Default not found.",
        ));
}

#[test]
fn sources_add_list_use_remove() {
    let server = Server::start();
    let config = Config::new();
    let key = full_control_key(&config, &server);

    config
        .pgutil()
        .args(["sources", "list"])
        .assert()
        .success()
        .stdout("No sources configured.\n");

    config
        .pgutil()
        .args([
            "sources",
            "add",
            "--name=Default",
            &format!("--url={}", server.url),
            &format!("--api-key={key}"),
        ])
        .assert()
        .success()
        .stdout("Added Default source.\n")
        .stderr(predicate::str::contains("obfuscated").and(predicate::str::contains(&key).not()));
    let text = config.read();
    assert!(
        text.contains("\"encryptedToken\": \"") && !text.contains(&key),
        "{text}"
    );
    assert!(
        text.starts_with("{\n  \"sources\": [\n"),
        "indented camelCase JSON: {text}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(config.path())
            .expect("config file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    config
        .pgutil()
        .args([
            "sources",
            "add",
            "--name=Users",
            &format!("--url={}", server.url),
            "--feed=public-npm",
        ])
        .args(["--username=Admin", &format!("--password={ADMIN_PASSWORD}")])
        .assert()
        .success();
    assert!(!config.read().contains(ADMIN_PASSWORD));

    let host = server
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/');
    config
        .pgutil()
        .args(["sources", "list"])
        .assert()
        .success()
        .stdout(format!("1. Default\n   http://api@{host}/\n\n2. Users (public-npm feed)\n   http://Admin@{host}/\n"));

    // The default source and a named source (case-insensitively) both carry their credential.
    config
        .pgutil()
        .args(["apikeys", "list"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("tests\n"));
    config
        .pgutil()
        .args(["apikeys", "list", "--source=USERS"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("tests\n"));

    config
        .pgutil()
        .args(["sources", "test"])
        .assert()
        .success()
        .stdout(predicate::str::is_match(
            r"^\[Default\] Successfully contacted ProGet-compatible server \S+\.\n\[Users\] Successfully contacted ProGet-compatible server \S+\.\n$",
        ).expect("regex"));

    config
        .pgutil()
        .args(["sources", "remove", "--name=users"])
        .assert()
        .success()
        .stdout("Removed users source.\n");
    config
        .pgutil()
        .args(["sources", "remove", "--name=users"])
        .assert()
        .code(1)
        .stderr(
            "Source users not found.\nerror: see the configured names with `pgutil sources list`\n",
        );
    config
        .pgutil()
        .args(["sources", "list"])
        .assert()
        .success()
        .stdout(format!("1. Default\n   http://api@{host}/\n"));
}

#[test]
fn sources_add_replaces_same_name_and_plain_text_is_opt_in() {
    let config = Config::new();
    config
        .pgutil()
        .args([
            "sources",
            "add",
            "--name=Main",
            "--url=http://a.example/",
            "--api-key=k1",
        ])
        .assert()
        .success();
    config
        .pgutil()
        .args([
            "sources",
            "add",
            "--name=main",
            "--url=http://b.example/",
            "--api-key=k2",
            "--plain-text",
        ])
        .assert()
        .success()
        .stdout("Replaced main source.\n")
        .stderr(predicate::str::contains("plain text"));
    let text = config.read();
    assert!(
        text.contains("\"token\": \"k2\"") && !text.contains("encryptedToken"),
        "{text}"
    );
    assert!(!text.contains("a.example"), "{text}");
}

#[test]
fn sources_add_validates_name_and_url() {
    let config = Config::new();
    config
        .pgutil()
        .args([
            "sources",
            "add",
            "--name= padded",
            "--url=http://a.example/",
        ])
        .assert()
        .code(2)
        .stderr("--name error: Name cannot start or end with whitespace.\n");
    config
        .pgutil()
        .args(["sources", "add", "--name=x", "--url=not a url"])
        .assert()
        .code(2)
        .stderr("--url error: Invalid url.\nerror: a server url starts with http:// or https:// and names a host, e.g. https://proget.example.com/\n");
    assert!(!config.path().exists(), "nothing is written on bad input");
}

#[test]
fn sources_test_reports_each_failure_and_exits_nonzero() {
    let server = Server::start();
    let config = Config::new();
    config
        .pgutil()
        .args([
            "sources",
            "add",
            "--name=up",
            &format!("--url={}", server.url),
        ])
        .assert()
        .success();
    config
        .pgutil()
        .args([
            "sources",
            "add",
            "--name=down",
            &format!("--url={}", closed_port_url()),
        ])
        .assert()
        .success();
    config
        .pgutil()
        .args(["sources", "test"])
        .assert()
        .code(1)
        .stdout(predicate::str::starts_with(
            "[up] Successfully contacted ProGet-compatible server ",
        ))
        .stderr(predicate::str::starts_with(
            "[down] Error contacting server: could not connect to",
        ));
    config
        .pgutil()
        .args(["sources", "test", "--name=missing"])
        .assert()
        .code(1)
        .stderr("--name error: Source missing not found.\n");
}

#[test]
fn health_reports_all_ok() {
    let server = Server::start();
    let config = Config::new();
    let url = format!("{}/", server.url.trim_end_matches('/'));
    config
        .pgutil()
        .args(["health", &server.source_arg()])
        .assert()
        .success()
        .stdout(predicate::str::starts_with(format!(
            "Checking {url}...all OK\nVersion: "
        )))
        .stdout(predicate::str::ends_with(
            "\n\nDatabase: OK\nLicense:  OK\nService:  OK\n",
        ));
    config
        .pgutil()
        .args(["health", &format!("--source={}", closed_port_url())])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "error: checking health failed: could not connect",
        ));
}

#[test]
fn users_create_list_delete() {
    let server = Server::start();
    let config = Config::new();
    let admin = [
        server.source_arg(),
        format!("--api-key=Admin:{ADMIN_PASSWORD}"),
    ];
    config
        .pgutil()
        .args([
            "security",
            "users",
            "create",
            "--username=jsmith",
            "--displayname=John Smith",
        ])
        .args(["--email=jsmith@kramerica.com", "--password=pw-for-jsmith-1"])
        .args(&admin)
        .assert()
        .success()
        .stdout("Creating user jsmith (John Smith)...\nUser created.\n");
    config
        .pgutil()
        .args(["security", "users", "list"])
        .args(server.admin_args())
        .assert()
        .success()
        .stdout(predicate::str::contains("jsmith (John Smith)\n"));

    // The new user can authenticate and make a personal key for themself.
    config
        .pgutil()
        .args([
            "apikeys",
            "create",
            "personal",
            &server.source_arg(),
            "--username=jsmith",
            "--password=pw-for-jsmith-1",
        ])
        .assert()
        .success();

    config
        .pgutil()
        .args(["security", "users", "delete", "--username=jsmith"])
        .args(&admin)
        .assert()
        .success()
        .stdout("Deleting user jsmith...\nUser deleted.\n");
    config
        .pgutil()
        .args(["security", "users", "list", "--search-term=jsmith"])
        .args(server.admin_args())
        .assert()
        .success()
        .stdout("No matching users found.\n");
}

#[test]
fn users_create_without_password_and_without_terminal_fails_clearly() {
    let server = Server::start();
    let config = Config::new();
    config
        .pgutil()
        .args([
            "security",
            "users",
            "create",
            "--username=x",
            &server.source_arg(),
            "--api-key=k",
        ])
        .write_stdin("")
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::starts_with(
            "error: no --password given and standard input is not a terminal",
        ));
}

#[test]
fn users_commands_need_an_administrator() {
    let server = Server::start();
    let config = Config::new();
    let feed_key = create_key(&config, &server, &["feed", "--feed=npm"]);
    config
        .pgutil()
        .args([
            "security",
            "users",
            "list",
            &server.source_arg(),
            &format!("--api-key={feed_key}"),
        ])
        .assert()
        .code(1)
        .stderr(predicate::str::starts_with(
            "error: listing users was refused (403)",
        ));
}

#[test]
fn bare_commands_print_help_listing_their_sub_commands() {
    let config = Config::new();
    let cases: &[(&[&str], &[&str])] = &[
        (&[], &["apikeys", "sources", "health", "security"]),
        (&["apikeys"], &["create", "list", "delete"]),
        (&["apikeys", "create"], &["system", "feed", "personal"]),
        (&["sources"], &["add", "list", "remove", "test"]),
        (&["security", "users"], &["create", "list", "delete"]),
    ];
    for (args, commands) in cases {
        let output = config.pgutil().args(*args).output().expect("run pgutil");
        assert!(!output.status.success());
        let help = stderr_of(&output);
        for command in *commands {
            assert!(
                help.contains(&format!("  {command} ")),
                "{args:?} lists {command}: {help}"
            );
        }
    }
    config
        .pgutil()
        .args(["apikeys", "delete", "--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Examples:")
                .and(predicate::str::contains("pgutil apikeys delete --id=1000")),
        );
}

#[test]
fn rotate_prints_only_the_new_key_and_the_old_one_stops_working() {
    let server = Server::start();
    let config = Config::new();
    let old = full_control_key(&config, &server);
    let list_with = |key: &str| {
        config
            .pgutil()
            .args([
                "apikeys",
                "list",
                &server.source_arg(),
                &format!("--api-key={key}"),
            ])
            .output()
            .expect("run pgutil")
    };
    let output = config
        .pgutil()
        .args(["apikeys", "rotate", "--id=1000"])
        .args(server.admin_args())
        .output()
        .expect("run pgutil");
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(stderr_of(&output), "");
    let printed = stdout_of(&output);
    let new = printed.trim();
    assert_eq!(printed, format!("{new}\n"), "only the key is printed");
    assert!(new.starts_with("lk_") && new != old, "{printed:?}");
    assert!(list_with(new).status.success(), "the new key works");
    assert!(!list_with(&old).status.success(), "the old key is refused");

    // With a grace period the old text keeps working; the key may rotate itself.
    let output = config
        .pgutil()
        .args(["apikeys", "rotate", "--id=1000", "--grace=600"])
        .args([&server.source_arg(), &format!("--api-key={new}")])
        .output()
        .expect("run pgutil");
    assert!(output.status.success(), "{}", stderr_of(&output));
    let newest = stdout_of(&output).trim().to_owned();
    assert!(list_with(new).status.success(), "in its grace period");
    assert!(list_with(&newest).status.success());
}

#[test]
fn rotate_of_an_unknown_key_says_not_found_and_a_bad_grace_is_a_usage_error() {
    let server = Server::start();
    let config = Config::new();
    config
        .pgutil()
        .args(["apikeys", "rotate", "--id=1000"])
        .args(server.admin_args())
        .assert()
        .code(1)
        .stdout("")
        .stderr(
            "error: API key 1000 was not found (404), server said: \"API key 1000 was not found\"; \
             see the ids with `pgutil apikeys list`\n",
        );
    config
        .pgutil()
        .args(["apikeys", "rotate", "--id=1000", "--grace=86401"])
        .args(server.admin_args())
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::contains("--grace"));
}

#[test]
fn too_many_requests_says_to_wait_the_servers_retry_after() {
    let server = Server::start_with_env(&[
        ("LATCHKEY_AUTH_FAILURE_LIMIT", "1"),
        ("LATCHKEY_AUTH_BLOCK_SECONDS", "120"),
    ]);
    let config = Config::new();
    let list = |key: &str| {
        config
            .pgutil()
            .args([
                "apikeys",
                "list",
                &server.source_arg(),
                &format!("--api-key={key}"),
            ])
            .output()
            .unwrap()
    };
    let first = list("not-a-real-key");
    assert!(stderr_of(&first).starts_with("error: listing API keys was refused (403)"));
    let blocked = list("not-a-real-key");
    assert_eq!(blocked.status.code(), Some(1));
    let message = stderr_of(&blocked);
    assert!(
        message.starts_with("error: listing API keys was refused: too many requests (429)"),
        "{message}"
    );
    let seconds: u64 = message
        .split("wait ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no wait in {message}"));
    assert!((100..=120).contains(&seconds), "{message}");
    assert!(
        message.trim_end().ends_with("seconds and try again"),
        "{message}"
    );
    assert!(!message.contains("--source"), "{message}");
}

#[test]
fn every_error_line_starts_with_error_or_a_documented_option_form() {
    let config = Config::new();
    let runs: Vec<Vec<String>> = vec![
        vec![
            "sources".into(),
            "add".into(),
            "--name=x".into(),
            "--url=ftp://x".into(),
        ],
        vec!["sources".into(), "remove".into(), "--name=none".into()],
        vec!["apikeys".into(), "list".into(), "--source=http://".into()],
        vec![
            "apikeys".into(),
            "list".into(),
            format!("--source={}", closed_port_url()),
        ],
        vec!["apikeys".into(), "list".into()],
    ];
    for args in runs {
        let out = config.pgutil().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let stderr = stderr_of(&out);
        assert!(!stderr.is_empty(), "{args:?}");
        for line in stderr.lines() {
            let documented = [
                "--url error: ",
                "--source error: ",
                "--name error: ",
                "Source ",
            ];
            assert!(
                line.starts_with("error: ") || documented.iter().any(|d| line.starts_with(d)),
                "{args:?}: {line}"
            );
        }
    }
}
