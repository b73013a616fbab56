//! The acceptance test of issue 11: a real nginx guards a PEP 503 package
//! index with `auth_request` to `/api/auth/forward` (the configuration of
//! docs/proxies.md, `docs/nginx/latchkey.conf`, unchanged but for its
//! placeholders), and a real `pip install` goes through it. nginx and pip
//! are required: missing either fails these tests.

mod common;

use std::path::Path;
use std::process::Command;

use common::nginx::Nginx;
use common::{client, client_from, personal, post_json, Backend, Options, TestServer};
use serde_json::{json, Value};

/// The feed the guarded location of docs/nginx/latchkey.conf requires.
const FEED: &str = "pypi-internal";
/// The project in the test index.
const PROJECT: &str = "latchkey_demo";

/// Latchkey, and nginx in front of a package index holding one wheel.
fn setup(options: Options) -> (TestServer, Nginx) {
    let server = TestServer::start_with(Backend::Sqlite, options);
    let nginx = Nginx::start(&server.base);
    build_index(&nginx.www());
    (server, nginx)
}

/// Builds the wheel and the "simple" index with the fixture script.
fn build_index(root: &Path) {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/proxy/make_index.py"
    );
    let out = Command::new("python3")
        .arg(script)
        .arg(root)
        .output()
        .expect("python3 is required by the proxy tests");
    assert!(
        out.status.success(),
        "make_index.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What one `pip install` did.
struct Install {
    installed: bool,
    output: String,
    /// nginx's access log lines for this install (`STATUS METHOD URI`).
    requests: Vec<String>,
}

impl Install {
    /// The statuses nginx answered pip, in order.
    fn statuses(&self) -> Vec<&str> {
        self.requests
            .iter()
            .filter_map(|l| l.split(' ').next())
            .collect()
    }
}

/// `pip install latchkey_demo` from the guarded index with `user:secret` in
/// the index URL; loopback only, no configuration, cache or prompt.
fn pip_install(nginx: &Nginx, user: &str, secret: &str) -> Install {
    let before = nginx.access_log().len();
    let target = tempfile::tempdir().unwrap();
    let index = format!(
        "http://{}:{}@{}/simple/",
        userinfo(user),
        userinfo(secret),
        nginx.addr
    );
    let mut cmd = Command::new("python3");
    cmd.args([
        "-m",
        "pip",
        "install",
        "--no-deps",
        "--no-cache-dir",
        "--no-input",
    ])
    .args([
        "--disable-pip-version-check",
        "--retries",
        "0",
        "--timeout",
        "20",
    ])
    .arg("--index-url")
    .arg(&index)
    .arg("--target")
    .arg(target.path())
    .arg(PROJECT)
    .env("PIP_CONFIG_FILE", "/dev/null")
    .env("PIP_KEYRING_PROVIDER", "disabled")
    .env("PYTHONNOUSERSITE", "1")
    .env("NO_PROXY", "*");
    for var in [
        "PIP_INDEX_URL",
        "PIP_EXTRA_INDEX_URL",
        "PIP_FIND_LINKS",
        "PIP_NO_INDEX",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    let out = cmd
        .output()
        .expect("python3 -m pip is required by the proxy tests");
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !output.contains("No module named pip"),
        "pip is required by the proxy tests: {output}"
    );
    let installed = out.status.success() && target.path().join("latchkey_demo.py").is_file();
    let requests = nginx.access_log()[before..]
        .lines()
        .map(str::to_owned)
        .collect();
    Install {
        installed,
        output: output.replace(secret, "SECRET"),
        requests,
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn userinfo(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Asserts that the install worked, through the guard.
fn assert_installs(nginx: &Nginx, user: &str, secret: &str, what: &str) {
    let run = pip_install(nginx, user, secret);
    assert!(
        run.installed,
        "{what}: pip should have installed {PROJECT}\n{}\nnginx: {:?}\n{}",
        run.output,
        run.requests,
        nginx.logs()
    );
    assert!(
        run.requests
            .iter()
            .any(|l| l
                .starts_with("200 GET /simple/latchkey-demo/latchkey_demo-1.0-py3-none-any.whl")),
        "{what}: the wheel was not downloaded through nginx: {:?}",
        run.requests
    );
}

/// Asserts that the install failed because nginx answered `status` (from Latchkey).
fn assert_refused(nginx: &Nginx, user: &str, secret: &str, status: &str, what: &str) {
    let run = pip_install(nginx, user, secret);
    assert!(
        !run.installed,
        "{what}: pip should have failed\n{}",
        run.output
    );
    let statuses = run.statuses();
    assert!(
        !statuses.is_empty() && statuses.iter().all(|s| *s == status),
        "{what}: nginx should have answered every request {status}: {:?}\n{}",
        run.requests,
        run.output
    );
}

/// A feed key on `feed` with these package permissions.
fn feed_key(feed: &str, permissions: &[&str]) -> Value {
    json!({"type": "feed", "feed": feed, "packagePermissions": permissions})
}

/// Adds a permission as the admin; returns its id.
fn add_permission(server: &TestServer, body: &Value) -> i64 {
    let r = post_json(&server.url("/api/security/permissions/add"), body)
        .header("X-ApiKey", server.admin())
        .send()
        .unwrap();
    let status = r.status();
    let text = r.text().unwrap_or_default();
    assert_eq!(status, 200, "permissions/add: {text}");
    let stored: Value = serde_json::from_str(&text).unwrap();
    stored["id"]
        .as_i64()
        .expect("the stored permission has an id")
}

/// Deletes a permission as the admin.
fn delete_permission(server: &TestServer, id: i64) {
    let r = client()
        .post(server.url(&format!("/api/security/permissions/delete?id={id}")))
        .header("X-ApiKey", server.admin())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "permissions/delete");
}

#[test]
fn pip_installs_with_a_feed_key_until_it_is_deleted() {
    let (server, nginx) = setup(Options::default());
    let (id, key) = server.create_key(feed_key(FEED, &["view"]));
    assert_installs(&nginx, "api", &key, "a view key on the feed");
    let r = server.delete_key(id, &server.admin());
    assert_eq!(r.status(), 200);
    assert_refused(&nginx, "api", &key, "401", "the same key, deleted");
}

#[test]
fn pip_is_refused_with_a_key_of_another_feed_or_without_view() {
    let (server, nginx) = setup(Options::default());
    let (_, other) = server.create_key(feed_key("pypi-public", &["view", "add"]));
    assert_refused(&nginx, "api", &other, "403", "a key of another feed");
    let (_, no_view) = server.create_key(feed_key(FEED, &["add"]));
    assert_refused(&nginx, "api", &no_view, "403", "a key without view");
    assert_refused(
        &nginx,
        "api",
        "not-a-key-at-all-0123456789",
        "401",
        "an unknown key",
    );
}

#[test]
fn pip_installs_by_a_users_permission_until_it_is_deleted() {
    let (server, nginx) = setup(Options::default());
    server.add_user("jsmith", "jsmith-password", &[]);
    let (_, key) = server.create_key(personal("jsmith"));
    assert_refused(
        &nginx,
        "api",
        &key,
        "403",
        "a personal key, no permission yet",
    );
    let permission = add_permission(
        &server,
        &json!({"user": "jsmith", "task": "View & Download Packages", "feed": FEED}),
    );
    assert_installs(&nginx, "api", &key, "a personal key, permission granted");
    assert_installs(
        &nginx,
        "jsmith",
        "jsmith-password",
        "a login, permission granted",
    );
    delete_permission(&server, permission);
    assert_refused(
        &nginx,
        "api",
        &key,
        "403",
        "a personal key, permission deleted",
    );
    assert_refused(
        &nginx,
        "jsmith",
        "jsmith-password",
        "403",
        "a login, permission deleted",
    );

    // Through a group: allowed while the group holds the task, refused once
    // the group (and with it its permission) is deleted.
    let whoami = || {
        client()
            .get(nginx.url("/whoami"))
            .header("X-ApiKey", &key)
            .send()
            .unwrap()
    };
    admin_post(
        &server,
        "/api/security/groups/add",
        &json!({"name": "Developers", "members": ["jsmith"]}),
    );
    add_permission(
        &server,
        &json!({"group": "Developers", "task": "View & Download Packages", "feed": FEED}),
    );
    let r = whoami();
    assert_eq!(r.status(), 200, "a permission of the user's group");
    assert_eq!(r.text().unwrap(), "user=jsmith\n");
    admin_post(
        &server,
        "/api/security/groups/delete?group=Developers",
        &json!({}),
    );
    assert_eq!(whoami().status(), 403, "the group deleted");
}

/// A POST as the admin that must answer `200`.
fn admin_post(server: &TestServer, path: &str, body: &Value) {
    let r = post_json(&server.url(path), body)
        .header("X-ApiKey", server.admin())
        .send()
        .unwrap();
    let status = r.status();
    assert_eq!(status, 200, "{path}: {}", r.text().unwrap_or_default());
}

#[test]
fn nginx_passes_latchkeys_answers_and_the_user_through() {
    let (server, nginx) = setup(Options::default());
    let whoami = nginx.url("/whoami");

    // No credential: 401 with Latchkey's challenge, as pip and browsers need.
    let r = client().get(&whoami).send().unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Basic realm=\"Latchkey\"",
        "the challenge passes through nginx"
    );
    // An unknown key: 401 too.
    let r = client()
        .get(&whoami)
        .header("X-ApiKey", "not-a-key-at-all-0123456789")
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));

    // A key of another feed: 403.
    let (_, other) = server.create_key(feed_key("pypi-public", &["view"]));
    let r = client()
        .get(&whoami)
        .header("X-ApiKey", &other)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);

    // A user without any permission: 403 as well.
    server.add_user("jsmith", "jsmith-password", &[]);
    let (_, jsmith_key) = server.create_key(personal("jsmith"));
    let r = client()
        .get(&whoami)
        .header("X-ApiKey", &jsmith_key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);

    // A user's personal key (Admin holds Administer globally): the upstream
    // sees who it is.
    let (_, admin_key) = server.create_key(personal("Admin"));
    let r = client()
        .get(&whoami)
        .header("Authorization", basic("api", &admin_key))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "user=Admin\n");

    // A feed key has no user, and a client cannot claim one.
    let (_, view) = server.create_key(feed_key(FEED, &["view"]));
    let r = client()
        .get(&whoami)
        .header("X-ApiKey", &view)
        .header("X-Latchkey-User", "Admin")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().unwrap(),
        "user=\n",
        "a client-sent X-Latchkey-User must not reach the upstream"
    );

    // The method decides the permission: a view key may not POST, even when
    // the client claims another method in the headers Latchkey prefers.
    for (header, value) in [
        ("X-Forwarded-Method", "GET"),
        ("X-Original-Method", "GET"),
        ("X-Forwarded-Uri", "/simple/"),
    ] {
        let r = client()
            .post(&whoami)
            .header("X-ApiKey", &view)
            .header(header, value)
            .send()
            .unwrap();
        assert_eq!(
            r.status(),
            403,
            "POST with a view key and {header}: {value}"
        );
    }
    let (_, publish) = server.create_key(feed_key(FEED, &["view", "add"]));
    let r = client()
        .post(&whoami)
        .header("X-ApiKey", &publish)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "POST with an add key");

    // The package index itself answers without any guard (it is the upstream).
    let r = client()
        .get(format!("http://{}/whoami", nginx.index_addr))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[test]
fn nginx_passes_429_with_retry_after_for_the_clients_own_address() {
    let (server, nginx) = setup(Options {
        args: vec![
            "--auth-failure-limit".into(),
            "3".into(),
            "--trusted-proxies".into(),
            "127.0.0.1/32".into(),
        ],
        ..Options::default()
    });
    let (_, key) = server.create_key(feed_key(FEED, &["view"]));
    let prober = client_from(7);
    let mut blocked = None;
    for _ in 0..10 {
        let r = prober
            .get(nginx.url("/simple/"))
            .header("X-ApiKey", "not-a-key-at-all-0123456789")
            .send()
            .unwrap();
        match r.status().as_u16() {
            401 => continue,
            429 => {
                blocked = Some(r);
                break;
            }
            other => panic!("a bad key through nginx answered {other}\n{}", nginx.logs()),
        }
    }
    let r = blocked.expect("the limiter never blocked the prober");
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry > 0);
    // Blocked even with a good key from that address…
    let r = prober
        .get(nginx.url("/simple/"))
        .header("X-ApiKey", &key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    // …but nginx's own address (and every other client) is not blocked:
    // Latchkey trusts nginx's X-Forwarded-For.
    let r = client_from(8)
        .get(nginx.url("/simple/"))
        .header("X-ApiKey", &key)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// An `Authorization: Basic` value.
fn basic(user: &str, secret: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"))
    )
}

#[test]
fn docs_show_the_tested_nginx_configuration_verbatim() {
    let docs = include_str!("../../../docs/proxies.md");
    let block = format!("```nginx\n{}```\n", common::nginx::SITE_TEMPLATE);
    assert!(
        docs.contains(&block),
        "docs/proxies.md must show docs/nginx/latchkey.conf verbatim in an ```nginx block \
         (the file the proxy tests run)"
    );
}
