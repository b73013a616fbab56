//! Black-box tests of `--json` on the listing commands: the real `pgutil`
//! binary against a real `latchkey` server (compared with a raw HTTP GET of
//! the same endpoint) and against a stand-in server that sends properties
//! pgutil does not know.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use common::{stderr_of, stdout_of, Config, Server, ADMIN_PASSWORD};
use serde_json::Value;

/// Every listing command that asks a server, with the path it reads.
const LISTINGS: [(&[&str], &str); 5] = [
    (&["apikeys", "list"], "/api/api-keys/list"),
    (&["security", "users", "list"], "/api/security/users/list"),
    (
        &["security", "permissions", "list"],
        "/api/security/permissions/list",
    ),
    (&["security", "groups", "list"], "/api/security/groups/list"),
    (&["security", "tasks", "list"], "/api/security/tasks/list"),
];

/// The body of a raw `GET path` as Admin, straight from the server.
fn raw_get(server: &Server, path: &str) -> String {
    let response = reqwest::blocking::Client::new()
        .get(format!("{}{path}", server.url.trim_end_matches('/')))
        .header("X-ApiKey", format!("Admin:{ADMIN_PASSWORD}"))
        .send()
        .expect("GET");
    assert_eq!(response.status().as_u16(), 200, "GET {path}");
    response.text().expect("body")
}

/// Runs `pgutil ARGS… --source=… --username=Admin --password=…`, expects
/// success with nothing on stderr and returns stdout.
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

/// Fills a fresh server with one of everything a listing shows.
fn populate(config: &Config, server: &Server) {
    for args in [
        &["apikeys", "create", "personal", "--name=laptop"][..],
        &[
            "apikeys",
            "create",
            "feed",
            "--name=Build server",
            "--feed=public-npm",
            "--permissions=view,add",
            "--logging=both",
            "--expiration=2027-08-01",
        ],
        &["apikeys", "create", "system", "--apis=feeds,sbom-upload"],
        &["security", "groups", "add", "--name=Developers"],
        &[
            "security",
            "permissions",
            "add",
            "--group=Developers",
            "--task=Publish Packages",
            "--feed=npm-internal",
        ],
    ] {
        ok(config, server, args);
    }
    config
        .pgutil()
        .args([
            "security",
            "users",
            "create",
            "--username=jsmith",
            "--displayname=John Smith",
            "--password=jsmith-password-1",
            "--groups=Developers",
        ])
        .arg(server.source_arg())
        .arg(format!("--api-key=Admin:{ADMIN_PASSWORD}"))
        .assert()
        .success();
}

#[test]
fn json_is_the_servers_body_byte_for_byte_on_every_listing() {
    let server = Server::start();
    let config = Config::new();
    populate(&config, &server);
    for (args, path) in LISTINGS {
        let body = raw_get(&server, path);
        let printed = ok(&config, &server, &[args, &["--json"]].concat());
        let expected = if body.ends_with('\n') {
            body.clone()
        } else {
            format!("{body}\n")
        };
        assert_eq!(printed, expected, "{args:?} --json");
        let items: Vec<Value> = serde_json::from_str(&printed).expect("--json parses");
        assert!(!items.is_empty(), "{args:?}: the listing is not empty");
    }
    let users = ok(
        &config,
        &server,
        &["security", "users", "list", "--search-term=smi", "--json"],
    );
    let users: Vec<Value> = serde_json::from_str(&users).expect("--json parses");
    assert_eq!(users.len(), 1, "{users:?}");
    assert_eq!(users[0]["name"], "jsmith");
    assert_eq!(users[0]["displayName"], "John Smith");
}

#[test]
fn apikeys_list_json_holds_what_the_text_shows_and_the_text_is_unchanged() {
    let server = Server::start();
    let config = Config::new();
    populate(&config, &server);
    let keys: Vec<Value> =
        serde_json::from_str(&ok(&config, &server, &["apikeys", "list", "--json"]))
            .expect("--json parses");
    let summary: Vec<(Value, Value, Value)> = keys
        .iter()
        .map(|k| (k["id"].clone(), k["type"].clone(), k["displayName"].clone()))
        .collect();
    assert_eq!(
        summary,
        [
            (1000.into(), "personal".into(), "laptop".into()),
            (1001.into(), "feed".into(), "Build server".into()),
            (1002.into(), "system".into(), Value::Null),
        ]
    );
    assert_eq!(keys[1]["feed"], "public-npm");
    assert_eq!(
        keys[1]["packagePermissions"],
        serde_json::json!(["view", "add"])
    );
    assert_eq!(keys[1]["logging"], "both");
    for key in &keys {
        assert!(key.get("key").is_none(), "no key text in a listing: {key}");
    }
    assert_eq!(
        ok(&config, &server, &["apikeys", "list"]),
        "\
laptop
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

(unnamed key)
  Id:          1002
  Expiration:  None
  Logging:     None
  Type:        System
  APIs:        feeds, sbom-upload

"
    );
}

#[test]
fn empty_listings_are_an_empty_array() {
    let server = Server::start();
    let config = Config::new();
    assert_eq!(ok(&config, &server, &["apikeys", "list", "--json"]), "[]\n");
    assert_eq!(
        ok(&config, &server, &["apikeys", "list"]),
        "No API keys are defined.\n"
    );
    assert_eq!(
        ok(
            &config,
            &server,
            &[
                "security",
                "users",
                "list",
                "--search-term=nobody",
                "--json"
            ]
        ),
        "[]\n"
    );
}

#[test]
fn json_listing_that_is_refused_prints_nothing_and_fails_clearly() {
    let server = Server::start();
    let config = Config::new();
    for (args, _) in LISTINGS {
        let output = config
            .pgutil()
            .args(args)
            .arg("--json")
            .arg(server.source_arg())
            .arg("--api-key=not-a-key-at-all")
            .output()
            .expect("run pgutil");
        assert_eq!(output.status.code(), Some(1), "{args:?}: {output:?}");
        assert_eq!(stdout_of(&output), "", "{args:?}: nothing on stdout");
        let stderr = stderr_of(&output);
        assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr:?}");
        assert!(
            stderr.contains("was refused (403)") && !stderr.contains("not-a-key-at-all"),
            "{args:?}: {stderr}"
        );
    }
}

/// A stand-in server: answers every request with `status` and `body` and
/// reports each request line.
struct FakeServer {
    url: String,
    requests: mpsc::Receiver<String>,
}

impl FakeServer {
    fn start(status: &'static str, body: &'static [u8]) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/", listener.local_addr().expect("addr"));
        let (tx, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    line.clear();
                }
                let _ = tx.send(request_line.trim_end().to_owned());
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(body);
            }
        });
        FakeServer { url, requests }
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        Config::new()
            .pgutil()
            .args(args)
            .arg(format!("--source={}", self.url))
            .arg("--api-key=some-key")
            .output()
            .expect("run pgutil")
    }
}

/// An answer with properties pgutil does not know, numbers no float can hold,
/// escapes, odd spacing and key order: only an unchanged copy survives.
const FOREIGN_BODY: &str = "[ {\"id\":1000, \"type\":\"personal\",\"user\":\"Admin\",\
\"lastUsed\":\"2026-11-30T08:15:00Z\",\"usage\":{\"requests\":18446744073709551615,\"ratio\":0.10000000000000000001},\
\"note\":\"caf\\u00e9 \\ud83d\\ude00\",\"name\":\"ignored\"} ,\n  {\"name\":\"Developers\",\"members\":[], \"task\":\"Administer\",\
\"deny\":false,\"permissions\":[],\"x-future\":[1,2,3]}\t]";

#[test]
fn properties_pgutil_does_not_know_are_kept_byte_for_byte() {
    let fake = FakeServer::start("200 OK", FOREIGN_BODY.as_bytes());
    for (args, path) in LISTINGS {
        let output = fake.run(&[args, &["--json"]].concat());
        assert!(output.status.success(), "{args:?}: {output:?}");
        assert_eq!(stdout_of(&output), format!("{FOREIGN_BODY}\n"), "{args:?}");
        assert_eq!(stderr_of(&output), "", "{args:?}");
        let request = fake.requests.try_recv().expect("one request");
        assert!(
            request.starts_with(&format!("GET {path} ")),
            "{args:?} asked for {request}"
        );
        let items: Vec<Value> = serde_json::from_slice(&output.stdout).expect("parses");
        assert_eq!(items[0]["lastUsed"], "2026-11-30T08:15:00Z");
        assert_eq!(items[0]["note"], "café 😀");
    }
}

#[test]
fn text_listing_ignores_properties_it_does_not_know() {
    let fake = FakeServer::start(
        "200 OK",
        b"[{\"id\":1000,\"type\":\"personal\",\"logging\":\"none\",\"user\":\"Admin\",\"lastUsed\":\"2026-11-30T08:15:00Z\",\"created\":{\"by\":\"x\"}}]",
    );
    let output = fake.run(&["apikeys", "list"]);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        stdout_of(&output),
        "(unnamed key)\n  Id:          1000\n  Expiration:  None\n  Logging:     None\n  Type:        Personal\n  User:        Admin\n\n"
    );
}

#[test]
fn json_that_is_not_one_array_is_an_error_not_output() {
    for body in [
        &b"{\"items\":[]}"[..],
        b"<html>proxy login</html>",
        b"[1, 2",
        b"[] []",
        b"",
        b"[\"\x1b[2J\"]",
        b"[\"caf\xe9\"]",
    ] {
        let fake = FakeServer::start("200 OK", body);
        let output = fake.run(&["security", "groups", "list", "--json"]);
        assert_eq!(output.status.code(), Some(1), "{body:?}: {output:?}");
        assert_eq!(stdout_of(&output), "", "{body:?}");
        let stderr = stderr_of(&output);
        assert!(
            stderr.starts_with("error: listing groups failed: the answer is not what a ProGet-compatible server sends (expected JSON: ")
                && stderr.lines().count() == 1,
            "{body:?}: {stderr}"
        );
    }
}

#[test]
fn json_listing_with_a_server_error_says_so_and_prints_nothing() {
    let fake = FakeServer::start("500 Internal Server Error", b"[\"database is down\"]");
    let output = fake.run(&["apikeys", "list", "--json"]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(stdout_of(&output), "");
    assert_eq!(
        stderr_of(&output),
        "error: listing API keys failed with a server error (500), server said: \"[\"database is down\"]\"; try again, and if it persists see the server's log\n"
    );
}

#[test]
fn sources_list_json_shows_every_source_without_secrets() {
    let config = Config::new();
    assert_eq!(
        stdout_of(
            &config
                .pgutil()
                .args(["sources", "list", "--json"])
                .output()
                .expect("run")
        ),
        "[]\n"
    );
    let secrets = [
        "key-secret-1234",
        "password-secret-5678",
        "plain-secret-9012",
    ];
    for args in [
        &[
            "--name=Default",
            "--url=http://127.0.0.1:8624",
            "--api-key=key-secret-1234",
        ][..],
        &[
            "--name=MyPackages",
            "--url=https://othersource.somewhere.dev/",
            "--feed=unapproved-nuget",
            "--username=devbuilds",
            "--password=password-secret-5678",
        ],
        &[
            "--name=Plain",
            "--url=https://plain.example/proget/",
            "--username=ci",
            "--password=plain-secret-9012",
            "--plain-text",
        ],
        &["--name=Open", "--url=http://open.example/"],
    ] {
        config
            .pgutil()
            .args(["sources", "add"])
            .args(args)
            .assert()
            .success();
    }
    let output = config
        .pgutil()
        .args(["sources", "list", "--json"])
        .output()
        .expect("run");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stderr_of(&output), "");
    let stdout = stdout_of(&output);
    assert_eq!(
        stdout,
        r#"[
  {
    "name": "Default",
    "url": "http://127.0.0.1:8624/",
    "defaultFeed": null,
    "username": null,
    "credential": "apiKey"
  },
  {
    "name": "MyPackages",
    "url": "https://othersource.somewhere.dev/",
    "defaultFeed": "unapproved-nuget",
    "username": "devbuilds",
    "credential": "user"
  },
  {
    "name": "Plain",
    "url": "https://plain.example/proget/",
    "defaultFeed": null,
    "username": "ci",
    "credential": "user"
  },
  {
    "name": "Open",
    "url": "http://open.example/",
    "defaultFeed": null,
    "username": null,
    "credential": null
  }
]
"#
    );
    let file = config.read();
    for secret in secrets {
        assert!(!stdout.contains(secret), "{secret} printed");
    }
    assert!(
        file.contains("plain-secret-9012") && file.contains("encryptedToken"),
        "the file does hold the secrets: {file}"
    );
    assert!(
        !stdout.contains("encrypted") && !stdout.contains("token") && !stdout.contains("password"),
        "{stdout}"
    );
}

#[test]
fn every_listing_command_offers_json_in_its_help() {
    let config = Config::new();
    for args in LISTINGS
        .iter()
        .map(|(args, _)| *args)
        .chain([&["sources", "list"][..]])
    {
        let output = config
            .pgutil()
            .args(args)
            .arg("--help")
            .output()
            .expect("run");
        assert!(output.status.success(), "{args:?}");
        let help = stdout_of(&output);
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with("--json ") && l.contains("JSON")),
            "{args:?}: {help}"
        );
    }
}
