//! The web console over HTTP (no browser): sessions, cookies, CSRF, the
//! limiter, headers, policy and paging. The browser tests are in
//! `console_browser.rs`.

mod common;
mod console_support;

use std::time::{Duration, Instant};

use common::{Backend, Options, TestServer, ADMIN_PASSWORD};
use console_support::{get, login, post, session_works, try_login};
use serde_json::json;

fn admin_login(s: &TestServer) -> String {
    login(s, "Admin", ADMIN_PASSWORD)
}

fn start(args: &[&str]) -> TestServer {
    TestServer::start_with(
        Backend::Sqlite,
        Options {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Options::default()
        },
    )
}

#[test]
fn root_without_a_session_goes_to_the_login_page() {
    let s = TestServer::start(Backend::Sqlite);
    let r = get(&s, "", "/");
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("/console/keys"));
    let r = get(&s, "", "/console/keys");
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("/console/login"));
    let r = get(&s, "", "/console/login");
    assert_eq!(r.status, 200);
    for label in [">User name<", ">Password<", ">Log in<"] {
        assert!(r.body.contains(label), "{label} missing: {}", r.body);
    }
    // The API and health stay where they were.
    assert_eq!(get(&s, "", "/health").status, 200);
    assert_eq!(get(&s, "", "/api/api-keys/list").status, 403);
}

#[test]
fn pages_carry_the_security_headers_and_no_inline_script() {
    let s = TestServer::start(Backend::Sqlite);
    let cookie = admin_login(&s);
    for path in [
        "/console/login",
        "/console/keys",
        "/console/keys/new",
        "/console/users",
    ] {
        let r = reqwest::blocking::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(s.url(path))
            .header("cookie", &cookie)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        let body = r.text().unwrap();
        assert!(
            !body.contains("<script>") && !body.contains(" onclick="),
            "{path}: inline script"
        );
        assert!(!body.contains("style=\""), "{path}: inline style");
    }
    let css = get(&s, "", "/console/assets/console.css");
    assert_eq!(css.status, 200);
    assert!(css.body.contains(":focus-visible"));
    assert_eq!(get(&s, "", "/console/assets/console.js").status, 200);
}

#[test]
fn cookies_are_http_only_strict_and_secure_only_for_https() {
    let s = TestServer::start(Backend::Sqlite);
    let r = try_login(&s, "Admin", ADMIN_PASSWORD);
    let c = r.set_cookie("latchkey_session").unwrap();
    assert!(
        c.contains("HttpOnly") && c.contains("SameSite=Strict"),
        "{c}"
    );
    assert!(
        !c.contains("Secure"),
        "plain http without --public-url: {c}"
    );

    let s = start(&["--public-url", "https://keys.example.com"]);
    let r = try_login(&s, "Admin", ADMIN_PASSWORD);
    let c = r.set_cookie("latchkey_session").unwrap();
    assert!(
        c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"),
        "{c}"
    );
    let form = get(&s, "", "/console/login");
    assert!(form
        .set_cookie("latchkey_login")
        .unwrap()
        .contains("Secure"));

    // A trusted proxy that says the request came over TLS.
    let s = start(&["--trusted-proxies", "127.0.0.1"]);
    let form = get(&s, "", "/console/login");
    let token = console_support::cookie_value(form.set_cookie("latchkey_login").unwrap());
    let r = reqwest::blocking::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(s.url("/console/login"))
        .header("cookie", format!("latchkey_login={token}"))
        .header("x-forwarded-proto", "https")
        .form(&[
            ("user", "Admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf", &token),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 303);
    let c = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        c.starts_with("latchkey_session=") && c.contains("Secure"),
        "{c}"
    );
}

#[test]
fn the_session_token_is_stored_only_as_a_digest() {
    let s = TestServer::start(Backend::Sqlite);
    let cookie = admin_login(&s);
    let token = cookie.trim_start_matches("latchkey_session=");
    let db = std::fs::read(s.data_dir.join("latchkey.db")).unwrap();
    let wal = std::fs::read(s.data_dir.join("latchkey.db-wal")).unwrap_or_default();
    for bytes in [db, wal] {
        assert!(
            !bytes.windows(token.len()).any(|w| w == token.as_bytes()),
            "the session token is in the database"
        );
    }
    assert!(!s.log().contains(token), "the session token is in the log");
}

fn key_count(s: &TestServer) -> usize {
    let r = common::client()
        .get(s.url("/api/api-keys/list"))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    r.json::<Vec<serde_json::Value>>().unwrap().len()
}

#[test]
fn a_form_post_without_the_csrf_token_is_refused() {
    let s = TestServer::start(Backend::Sqlite);
    let cookie = admin_login(&s);
    let form = get(&s, &cookie, "/console/keys/new");
    let token = form.csrf();
    let fields = [
        ("type", "feed"),
        ("feed", "main"),
        ("packagePermissions", "view"),
    ];
    // No token, and a wrong token: refused, nothing created.
    let r = post(&s, &cookie, "/console/keys/new", &fields);
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("CSRF"));
    let mut wrong = fields.to_vec();
    wrong.push(("csrf", "0000"));
    assert_eq!(post(&s, &cookie, "/console/keys/new", &wrong).status, 403);
    assert_eq!(key_count(&s), 0);
    // Another session's token does not fit this one.
    let other = admin_login(&s);
    let other_token = get(&s, &other, "/console/keys/new").csrf();
    assert_ne!(other_token, token);
    let mut foreign = fields.to_vec();
    foreign.push(("csrf", &other_token));
    assert_eq!(post(&s, &cookie, "/console/keys/new", &foreign).status, 403);
    assert_eq!(key_count(&s), 0);
    // With the token: created.
    let mut good = fields.to_vec();
    good.push(("csrf", &token));
    let r = post(&s, &cookie, "/console/keys/new", &good);
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(key_count(&s), 1);

    // Delete and log out without the token are refused too.
    let id = common::client()
        .get(s.url("/api/api-keys/list"))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap()
        .json::<Vec<serde_json::Value>>()
        .unwrap()[0]["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        post(&s, &cookie, &format!("/console/keys/{id}/delete"), &[]).status,
        403
    );
    assert_eq!(key_count(&s), 1);
    assert_eq!(post(&s, &cookie, "/console/logout", &[]).status, 403);
    assert!(session_works(&s, &cookie));
    for (path, form) in [
        (
            "/console/users",
            vec![("name", "mallory"), ("password", "long enough pw")],
        ),
        ("/console/groups", vec![("name", "Sneaky")]),
        (
            "/console/permissions",
            vec![("user", "Admin"), ("task", "Administer"), ("deny", "true")],
        ),
    ] {
        assert_eq!(post(&s, &cookie, path, &form).status, 403, "{path}");
    }
    let users = get(&s, &cookie, "/console/users");
    assert!(!users.body.contains("mallory"));

    // The log-in form needs its own token (and the cookie that matches it).
    let r = post(
        &s,
        "latchkey_login=abc",
        "/console/login",
        &[
            ("user", "Admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf", "def"),
        ],
    );
    assert_eq!(r.status, 403);
    assert!(r.set_cookie("latchkey_session").is_none());
    let r = post(
        &s,
        "",
        "/console/login",
        &[("user", "Admin"), ("password", ADMIN_PASSWORD)],
    );
    assert_eq!(r.status, 403);
}

#[test]
fn failed_logins_say_nothing_about_the_user_and_count_for_the_limiter() {
    let s = start(&["--auth-failure-limit", "3"]);
    let unknown = try_login(&s, "nobody", "whatever password");
    let wrong = try_login(&s, "Admin", "wrong password");
    assert_eq!(unknown.status, 403);
    assert_eq!(wrong.status, 403);
    let text = |p: &console_support::Page| {
        let at = p.body.find("role=\"alert\"").expect("an alert");
        p.body[at..at + 80].to_owned()
    };
    assert_eq!(text(&unknown), text(&wrong));
    assert!(unknown.body.contains("Wrong user name or password."));
    // The third failure blocks the address: even the right password is refused now.
    assert_eq!(try_login(&s, "Admin", "wrong again").status, 403);
    let blocked = try_login(&s, "Admin", ADMIN_PASSWORD);
    assert_eq!(blocked.status, 429, "{}", blocked.body);
    assert!(blocked.set_cookie("latchkey_session").is_none());
    // The API sees the same block.
    let api = common::client()
        .get(s.url("/api/api-keys/list"))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    assert_eq!(api.status(), 429);
}

#[test]
fn logout_ends_the_session_on_the_server() {
    let s = TestServer::start(Backend::Sqlite);
    let cookie = admin_login(&s);
    assert!(session_works(&s, &cookie));
    let token = get(&s, &cookie, "/console/keys").csrf();
    let r = post(&s, &cookie, "/console/logout", &[("csrf", &token)]);
    assert_eq!(r.status, 303);
    assert_eq!(r.location.as_deref(), Some("/console/login"));
    assert!(r
        .set_cookie("latchkey_session")
        .unwrap()
        .contains("Max-Age=0"));
    // The old cookie, replayed, no longer works.
    assert!(!session_works(&s, &cookie));
    assert_eq!(
        post(&s, &cookie, "/console/keys/new", &[("csrf", &token)]).status,
        303
    );
}

fn sessions_end_on_password_change_and_user_deletion(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("bob", "bob password 1", &[]);
    let bob = login(&s, "bob", "bob password 1");
    let bob2 = login(&s, "bob", "bob password 1");
    assert!(session_works(&s, &bob));
    // Another user's edit that leaves the password alone keeps the session.
    let edit = |body: serde_json::Value| {
        let r = common::post_json(&s.url("/api/security/users/edit"), &body)
            .header("X-ApiKey", s.admin())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
    };
    edit(json!({"name": "bob", "displayName": "Bob"}));
    assert!(session_works(&s, &bob));
    edit(json!({"name": "bob", "password": "bob password 2"}));
    assert!(!session_works(&s, &bob));
    assert!(!session_works(&s, &bob2));
    // A new session with the new password; deleting the user ends it.
    let bob3 = login(&s, "bob", "bob password 2");
    assert!(session_works(&s, &bob3));
    let r = common::client()
        .delete(s.url("/api/security/users/delete?user=bob"))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!session_works(&s, &bob3));
    // A user re-created under the same name does not inherit it.
    s.add_user("bob", "bob password 2", &[]);
    assert!(!session_works(&s, &bob3));
}

fn sessions_survive_a_restart(backend: Backend) {
    let mut s = TestServer::start(backend);
    let cookie = admin_login(&s);
    s.restart();
    assert!(session_works(&s, &cookie));
}

fn sessions_are_shared_by_nodes(backend: Backend) {
    let a = TestServer::start(backend);
    let b = a.another_node();
    let cookie = admin_login(&a);
    assert!(session_works(&b, &cookie));
    // Log out on B: A refuses the cookie at once.
    let token = get(&b, &cookie, "/console/keys").csrf();
    assert_eq!(
        post(&b, &cookie, "/console/logout", &[("csrf", &token)]).status,
        303
    );
    assert!(!session_works(&a, &cookie));
}

both_backends!(
    sessions_end_on_password_change_and_user_deletion,
    sessions_survive_a_restart
);

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn sessions_are_shared_by_nodes_postgres() {
    common::postgres_url("sessions_are_shared_by_nodes_postgres");
    sessions_are_shared_by_nodes(Backend::Postgres);
}

#[test]
fn an_idle_session_ends_after_the_idle_timeout_and_any_after_its_lifetime() {
    let s = start(&["--session-idle-timeout", "4s", "--session-lifetime", "1h"]);
    let cookie = admin_login(&s);
    assert!(session_works(&s, &cookie));
    std::thread::sleep(Duration::from_secs(6));
    assert!(!session_works(&s, &cookie));

    let s = start(&["--session-idle-timeout", "1h", "--session-lifetime", "4s"]);
    let cookie = admin_login(&s);
    let start = Instant::now();
    // Active all along, still ended by the lifetime.
    while start.elapsed() < Duration::from_secs(6) {
        if !session_works(&s, &cookie) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(start.elapsed() >= Duration::from_secs(3), "ended too early");
    assert!(!session_works(&s, &cookie));
    let bad = start_fails(&["--session-idle-timeout", "0s"]);
    assert!(bad.contains("not a duration"), "{bad}");
}

fn start_fails(args: &[&str]) -> String {
    let out = std::process::Command::new(common::latchkey_bin())
        .arg("serve")
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn create_shows_the_api_rules_next_to_the_field() {
    let s = TestServer::start(Backend::Sqlite);
    let cookie = admin_login(&s);
    let token = get(&s, &cookie, "/console/keys/new").csrf();
    let r = post(
        &s,
        &cookie,
        "/console/keys/new",
        &[
            ("csrf", &token),
            ("type", "feed"),
            ("feed", "a"),
            ("feedGroup", "b"),
            ("packagePermissions", "view"),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("id=\"feed-error\""), "{}", r.body);
    assert!(r
        .body
        .contains("feed keys need exactly one of feed or feedGroup"));
    let r = post(
        &s,
        &cookie,
        "/console/keys/new",
        &[("csrf", &token), ("type", "system")],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("id=\"systemApis-error\""), "{}", r.body);
    let r = post(
        &s,
        &cookie,
        "/console/keys/new",
        &[
            ("csrf", &token),
            ("type", "feed"),
            ("feed", "x"),
            ("packagePermissions", "view"),
            ("expiration", "2001-01-01"),
        ],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("id=\"expiration-error\""), "{}", r.body);
    let r = post(
        &s,
        &cookie,
        "/console/keys/new",
        &[("csrf", &token), ("type", "personal"), ("user", "ghost")],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("id=\"user-error\""), "{}", r.body);
    assert_eq!(key_count(&s), 0);
}

#[test]
fn users_see_only_their_own_keys_and_no_administrator_page() {
    let s = TestServer::start(Backend::Sqlite);
    s.add_user("carol", "carol password", &[]);
    s.add_user("dave", "dave password", &[]);
    let (feed_id, _) = s.create_key(common::feed_key());
    let (dave_id, _) = s.create_key(common::personal("dave"));
    let (carol_id, _) = s.create_key(common::personal("carol"));
    let carol = login(&s, "carol", "carol password");
    let list = get(&s, &carol, "/console/keys");
    assert!(list.body.contains(&format!("/console/keys/{carol_id}\"")));
    assert!(!list.body.contains(&format!("/console/keys/{dave_id}\"")));
    assert!(!list.body.contains(&format!("/console/keys/{feed_id}\"")));
    assert!(!list.body.contains("/console/users"), "no admin links");
    for path in [
        "/console/users",
        "/console/groups",
        "/console/permissions",
        "/console/audit",
        "/console/users/Admin",
    ] {
        let r = get(&s, &carol, path);
        assert_eq!(r.status, 403, "{path}: {}", r.body);
        assert!(r.body.contains("Not allowed"));
    }
    // Another user's key: neither its page nor its deletion.
    assert_eq!(
        get(&s, &carol, &format!("/console/keys/{dave_id}")).status,
        403
    );
    let token = list.csrf();
    let r = post(
        &s,
        &carol,
        &format!("/console/keys/{dave_id}/delete"),
        &[("csrf", &token)],
    );
    assert_eq!(r.status, 403);
    assert_eq!(key_count(&s), 3);
    // Only personal keys for herself, whatever the form says.
    let r = post(
        &s,
        &carol,
        "/console/keys/new",
        &[
            ("csrf", &token),
            ("type", "system"),
            ("systemApis", "full-control"),
        ],
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let keys: Vec<serde_json::Value> = common::client()
        .get(s.url("/api/api-keys/list"))
        .header("X-ApiKey", "carol:carol password")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(keys.len(), 2);
    assert!(keys
        .iter()
        .all(|k| k["type"] == "personal" && k["user"] == "carol"));
    // Her own key: deleted, and refused at once.
    let r = post(
        &s,
        &carol,
        &format!("/console/keys/{carol_id}/delete"),
        &[("csrf", &token)],
    );
    assert_eq!(r.status, 303);
    assert_eq!(
        get(&s, &carol, &format!("/console/keys/{carol_id}")).status,
        404
    );
}

#[test]
fn administrators_manage_users_groups_and_permissions() {
    let s = TestServer::start(Backend::Sqlite);
    let cookie = admin_login(&s);
    let token = get(&s, &cookie, "/console/users").csrf();
    // The API's rules: a short password is refused, next to the field.
    let r = post(
        &s,
        &cookie,
        "/console/users",
        &[("csrf", &token), ("name", "erin"), ("password", "short")],
    );
    assert_eq!(r.status, 400);
    assert!(r.body.contains("id=\"new-password-error\""), "{}", r.body);
    let r = post(
        &s,
        &cookie,
        "/console/users",
        &[
            ("csrf", &token),
            ("name", "erin"),
            ("password", "erin password"),
            ("groups", "Readers"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(try_login(&s, "erin", "erin password").status == 303);
    let r = post(
        &s,
        &cookie,
        "/console/users/erin",
        &[
            ("csrf", &token),
            ("displayName", "Erin"),
            ("groups", "Readers, Writers"),
        ],
    );
    assert_eq!(r.status, 303);
    let page = get(&s, &cookie, "/console/users/erin");
    assert!(
        page.body.contains("value=\"Readers, Writers\""),
        "{}",
        page.body
    );
    let r = post(
        &s,
        &cookie,
        "/console/groups/Writers",
        &[("csrf", &token), ("members", "")],
    );
    assert_eq!(r.status, 303);
    let r = post(
        &s,
        &cookie,
        "/console/permissions",
        &[
            ("csrf", &token),
            ("group", "Readers"),
            ("task", "View & Download Packages"),
            ("feed", "main"),
        ],
    );
    assert_eq!(r.status, 303, "{}", r.body);
    let perms = get(&s, &cookie, "/console/permissions");
    assert!(perms.body.contains("group Readers"), "{}", perms.body);
    // The last administrator stays.
    let r = post(
        &s,
        &cookie,
        "/console/users/Admin",
        &[("csrf", &token), ("groups", "")],
    );
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body.contains("no administrator"));
    let r = post(
        &s,
        &cookie,
        "/console/users/erin/delete",
        &[("csrf", &token)],
    );
    assert_eq!(r.status, 400, "needs the confirmation box");
    let r = post(
        &s,
        &cookie,
        "/console/users/erin/delete",
        &[("csrf", &token), ("confirm", "yes")],
    );
    assert_eq!(r.status, 303);
    assert_eq!(try_login(&s, "erin", "erin password").status, 403);
    let audit = get(&s, &cookie, "/console/audit");
    assert_eq!(audit.status, 200);
    assert!(
        audit.body.contains("user.delete") || audit.body.contains("erin"),
        "{}",
        audit.body
    );
}

/// Inserts `n` feed keys straight into the database (bench-style seeding).
fn seed_keys(s: &TestServer, backend: Backend, n: u32) {
    let sql = match backend {
        Backend::Sqlite => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) \
             INSERT INTO api_keys (digest, key_type, display_name, package_permissions, feed, logging, created_at) \
             SELECT randomblob(32), 'feed', 'bulk-' || i, 'view', 'feed-' || (i % 100), 'none', 0 FROM n"
        ),
        Backend::Postgres => format!(
            "INSERT INTO api_keys (digest, key_type, display_name, package_permissions, feed, logging, created_at) \
             SELECT decode(md5(i::text) || md5((i + 7)::text), 'hex'), 'feed', 'bulk-' || i, 'view', \
             'feed-' || (i % 100), 'none', 0 FROM generate_series(1, {n}) AS i"
        ),
    };
    s.execute_sql(&sql);
}

fn key_list_pages_stay_fast_with_100000_keys(backend: Backend) {
    let s = TestServer::start(backend);
    seed_keys(&s, backend, 100_000);
    let cookie = admin_login(&s);
    let rows =
        |p: &console_support::Page| p.body.matches("<tr><td><a href=\"/console/keys/").count();
    let timed = |path: &str| {
        let t = Instant::now();
        let p = get(&s, &cookie, path);
        let took = t.elapsed();
        assert_eq!(p.status, 200, "{path}");
        eprintln!("{backend:?} {path}: {took:?}");
        assert!(took < Duration::from_secs(3), "{path} took {took:?}");
        p
    };
    let first = timed("/console/keys");
    assert_eq!(rows(&first), 50);
    assert!(first.body.contains("after=1049\""), "next page link");
    let deep = timed("/console/keys?after=99000");
    assert_eq!(rows(&deep), 50);
    assert!(
        deep.body.contains(">99001<"),
        "keyset page starts after the id"
    );
    let last = timed("/console/keys?after=100980");
    assert_eq!(rows(&last), 19);
    assert!(!last.body.contains("Next page"));
    // A search that matches one key scans everything once.
    let one = timed("/console/keys?q=bulk-99999");
    assert!(one.body.contains(">bulk-99999<"));
    assert_eq!(rows(&one), 1);
    let feed = timed("/console/keys?q=feed-7");
    assert_eq!(rows(&feed), 50);
    // `%` and `_` in a search are literal.
    let none = timed("/console/keys?q=bulk_%25");
    assert_eq!(rows(&none), 0);
}

both_backends!(key_list_pages_stay_fast_with_100000_keys);
