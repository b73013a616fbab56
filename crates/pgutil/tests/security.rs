//! Black-box tests of `pgutil security permissions|groups|tasks`: the real
//! `pgutil` binary against a real `latchkey` server, output compared exactly.

mod common;

use std::net::TcpListener;

use common::{stderr_of, stdout_of, Config, Server, ADMIN_PASSWORD};
use predicates::prelude::*;

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

/// Runs `pgutil ARGS…` as Admin, expects exit 1 and returns stderr.
fn fails(config: &Config, server: &Server, args: &[&str]) -> String {
    let output = config
        .pgutil()
        .args(args)
        .args(server.admin_args())
        .output()
        .expect("run pgutil");
    assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
    let stderr = stderr_of(&output);
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    stderr
}

fn add_user(config: &Config, server: &Server, name: &str) {
    config
        .pgutil()
        .args(["security", "users", "create"])
        .arg(format!("--username={name}"))
        .arg(format!("--password={name}-password-1"))
        .arg(server.source_arg())
        .arg(format!("--api-key=Admin:{ADMIN_PASSWORD}"))
        .assert()
        .success();
}

/// The id `permissions add` reports in `Permission added (id=N).`
fn added_id(stdout: &str) -> i64 {
    let last = stdout.lines().last().unwrap_or_default();
    last.strip_prefix("Permission added (id=")
        .and_then(|rest| rest.strip_suffix(")."))
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("no id in {stdout:?}"))
}

#[test]
fn tasks_list_prints_one_line_per_task() {
    let server = Server::start();
    let config = Config::new();
    assert_eq!(
        ok(&config, &server, &["security", "tasks", "list"]),
        "\
Administer: view, add, promote, delete
View & Download Packages: view
Publish Packages: view, add
Promote Packages: view, promote
Delete Packages: view, delete
Manage Feed: view, add, promote, delete
"
    );
}

#[test]
fn permissions_add_list_delete_print_the_documented_lines() {
    let server = Server::start();
    let config = Config::new();
    let list = ["security", "permissions", "list"];
    let first = ok(&config, &server, &list);
    let (grant, rest) = first.split_once(": ").expect("an id");
    assert_eq!(rest, "allow Administer globally for group Administrators\n");
    let grant: i64 = grant.parse().expect("an integer id");

    add_user(&config, &server, "jsmith");
    ok(
        &config,
        &server,
        &["security", "groups", "add", "--name=Developers"],
    );
    let out = ok(
        &config,
        &server,
        &[
            "security",
            "permissions",
            "add",
            "--user=jsmith",
            "--task=Publish Packages",
            "--feed=npm-internal",
            "--deny",
        ],
    );
    let deny = added_id(&out);
    assert_eq!(
        out,
        format!(
            "Adding permission (deny Publish Packages on feed npm-internal for user jsmith)...\nPermission added (id={deny}).\n"
        )
    );
    let out = ok(
        &config,
        &server,
        &[
            "security",
            "permissions",
            "add",
            "--group=Developers",
            "--task",
            "view & download packages",
            "--feed-group",
            "public",
        ],
    );
    let view = added_id(&out);
    assert_eq!(
        out,
        format!(
            "Adding permission (allow view & download packages on feed group public for group Developers)...\nPermission added (id={view}).\n"
        )
    );
    assert!(grant < deny && deny < view);
    assert_eq!(
        ok(&config, &server, &list),
        format!(
            "\
{grant}: allow Administer globally for group Administrators
{deny}: deny Publish Packages on feed npm-internal for user jsmith
{view}: allow View & Download Packages on feed group public for group Developers
"
        )
    );

    let id = format!("--id={deny}");
    assert_eq!(
        ok(
            &config,
            &server,
            &["security", "permissions", "delete", &id]
        ),
        format!("Deleting permission (id={deny})...\nPermission deleted.\n")
    );
    assert!(fails(
        &config,
        &server,
        &["security", "permissions", "delete", &id]
    )
    .starts_with(&format!("error: permission {deny} was not found (404)")));
    assert_eq!(
        ok(&config, &server, &list),
        format!(
            "\
{grant}: allow Administer globally for group Administrators
{view}: allow View & Download Packages on feed group public for group Developers
"
        )
    );
}

#[test]
fn permissions_add_reports_what_the_server_refused() {
    let server = Server::start();
    let config = Config::new();
    let cases: &[(&[&str], &str)] = &[
        (&["--user=jsmith", "--task=Administer"], "user"),
        (&["--group=Nobodies", "--task=Administer"], "group"),
        (&["--group=Administrators", "--task=Fly"], "task"),
    ];
    for (args, property) in cases {
        let mut all = vec!["security", "permissions", "add"];
        all.extend_from_slice(args);
        let stderr = fails(&config, &server, &all);
        assert!(
            stderr.starts_with(&format!(
                "error: adding the permission was rejected as invalid (400), server said: \"{property}"
            )),
            "{args:?}: {stderr}"
        );
    }
    // The last Administer grant cannot go.
    let grant = ok(&config, &server, &["security", "permissions", "list"]);
    let grant = grant.split_once(':').expect("an id").0;
    let stderr = fails(
        &config,
        &server,
        &[
            "security",
            "permissions",
            "delete",
            &format!("--id={grant}"),
        ],
    );
    assert!(
        stderr.starts_with(&format!(
            "error: deleting permission {grant} was rejected as invalid (400)"
        )),
        "{stderr}"
    );
}

#[test]
fn groups_add_edit_members_delete_print_one_line_per_group() {
    let server = Server::start();
    let config = Config::new();
    for name in ["alice", "bob", "carol"] {
        add_user(&config, &server, name);
    }
    let list = ["security", "groups", "list"];
    assert_eq!(ok(&config, &server, &list), "Administrators: Admin\n");
    assert_eq!(
        ok(
            &config,
            &server,
            &[
                "security",
                "groups",
                "add",
                "--name=Developers",
                "--members=alice,bob"
            ]
        ),
        "Creating group Developers...\nGroup created.\n"
    );
    ok(
        &config,
        &server,
        &["security", "groups", "add", "--name", "Auditors"],
    );
    assert_eq!(
        ok(&config, &server, &list),
        "Administrators: Admin\nAuditors:\nDevelopers: alice, bob\n"
    );

    let add_carol = [
        "security",
        "groups",
        "add-member",
        "--name=developers",
        "--user=carol",
    ];
    assert_eq!(
        ok(&config, &server, &add_carol),
        "Adding user carol to group developers...\nUser added.\n"
    );
    assert_eq!(
        ok(&config, &server, &add_carol),
        "Adding user carol to group developers...\nAlready a member; nothing changed.\n"
    );
    let remove_bob = [
        "security",
        "groups",
        "remove-member",
        "--name=Developers",
        "--user=BOB",
    ];
    assert_eq!(
        ok(&config, &server, &remove_bob),
        "Removing user BOB from group Developers...\nUser removed.\n"
    );
    assert_eq!(
        ok(&config, &server, &remove_bob),
        "Removing user BOB from group Developers...\nNot a member; nothing changed.\n"
    );
    assert_eq!(
        ok(&config, &server, &list),
        "Administrators: Admin\nAuditors:\nDevelopers: alice, carol\n"
    );

    assert_eq!(
        ok(
            &config,
            &server,
            &[
                "security",
                "groups",
                "edit",
                "--name=Developers",
                "--members=bob"
            ]
        ),
        "Setting the members of group Developers...\nGroup changed.\n"
    );
    assert_eq!(
        ok(&config, &server, &list),
        "Administrators: Admin\nAuditors:\nDevelopers: bob\n"
    );
    ok(
        &config,
        &server,
        &[
            "security",
            "groups",
            "edit",
            "--name=Developers",
            "--members=",
        ],
    );
    assert_eq!(
        ok(&config, &server, &list),
        "Administrators: Admin\nAuditors:\nDevelopers:\n"
    );

    assert_eq!(
        ok(
            &config,
            &server,
            &["security", "groups", "delete", "--name=Auditors"]
        ),
        "Deleting group Auditors...\nGroup deleted.\n"
    );
    assert_eq!(
        ok(&config, &server, &list),
        "Administrators: Admin\nDevelopers:\n"
    );
}

#[test]
fn groups_commands_report_unknown_groups_and_refusals() {
    let server = Server::start();
    let config = Config::new();
    let not_found =
        "error: group Nobodies was not found; see the groups with `pgutil security groups list`\n";
    for args in [
        &[
            "security",
            "groups",
            "edit",
            "--name=Nobodies",
            "--members=",
        ][..],
        &[
            "security",
            "groups",
            "add-member",
            "--name=Nobodies",
            "--user=Admin",
        ],
        &[
            "security",
            "groups",
            "remove-member",
            "--name=Nobodies",
            "--user=Admin",
        ],
    ] {
        assert_eq!(fails(&config, &server, args), not_found, "{args:?}");
    }
    let stderr = fails(
        &config,
        &server,
        &["security", "groups", "delete", "--name=Administrators"],
    );
    assert!(
        stderr.starts_with("error: deleting group Administrators was rejected as invalid (400)"),
        "{stderr}"
    );
    let stderr = fails(
        &config,
        &server,
        &[
            "security",
            "groups",
            "add",
            "--name=Testers",
            "--members=nobody",
        ],
    );
    assert!(
        stderr.starts_with("error: creating group Testers was rejected as invalid (400)")
            && stderr.contains("nobody"),
        "{stderr}"
    );
    let stderr = fails(
        &config,
        &server,
        &["security", "groups", "add", "--name=administrators"],
    );
    assert!(stderr.contains("(400)"), "{stderr}");
    assert_eq!(
        ok(&config, &server, &["security", "groups", "list"]),
        "Administrators: Admin\n"
    );
}

#[test]
fn invalid_options_are_usage_errors_before_any_request() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let source = format!("--source=http://{}/", listener.local_addr().expect("addr"));
    let config = Config::new();
    let cases: &[&[&str]] = &[
        &["permissions", "add", "--task=Administer"],
        &[
            "permissions",
            "add",
            "--user=a",
            "--group=b",
            "--task=Administer",
        ],
        &["permissions", "add", "--user=a"],
        &[
            "permissions",
            "add",
            "--user=a",
            "--task=Administer",
            "--feed=f",
            "--feed-group=g",
        ],
        &["permissions", "delete"],
        &["permissions", "delete", "--id=abc"],
        &["permissions", "delete", "--id=1.5"],
        &["groups", "add"],
        &["groups", "edit", "--name=Developers"],
        &["groups", "delete"],
        &["groups", "add-member", "--name=Developers"],
        &["groups", "remove-member", "--user=alice"],
    ];
    for args in cases {
        config
            .pgutil()
            .arg("security")
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
fn security_commands_need_an_administrator() {
    let server = Server::start();
    let config = Config::new();
    add_user(&config, &server, "alice");
    let alice = ["--username=alice", "--password=alice-password-1"];
    for (args, action) in [
        (&["permissions", "list"][..], "listing permissions"),
        (&["groups", "list"], "listing groups"),
        (&["tasks", "list"], "listing tasks"),
        (
            &["permissions", "add", "--user=alice", "--task=Administer"],
            "adding the permission",
        ),
        (&["groups", "add", "--name=Mine"], "creating group Mine"),
    ] {
        config
            .pgutil()
            .arg("security")
            .args(args)
            .arg(server.source_arg())
            .args(alice)
            .assert()
            .code(1)
            .stderr(predicate::str::starts_with(format!(
                "error: {action} was refused (403)"
            )));
    }
}

#[test]
fn bare_security_commands_print_help_listing_their_sub_commands() {
    let config = Config::new();
    let cases: &[(&[&str], &[&str])] = &[
        (&["security"], &["users", "permissions", "groups", "tasks"]),
        (&["security", "permissions"], &["list", "add", "delete"]),
        (
            &["security", "groups"],
            &[
                "list",
                "add",
                "edit",
                "delete",
                "add-member",
                "remove-member",
            ],
        ),
        (&["security", "tasks"], &["list"]),
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
        .args(["security", "permissions", "add", "--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("Examples:")
                .and(predicate::str::contains("--feed-group"))
                .and(predicate::str::contains("--deny")),
        );
}
