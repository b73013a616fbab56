//! The security API's permissions and tasks: list, add, delete, who may use
//! them, and that permissions decide who is an administrator.

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{client, feed_key, full_control, personal, raw, Backend, TestServer};

both_backends!(
    a_fresh_server_has_only_the_administrators_grant,
    add_returns_the_stored_permission_and_list_shows_them_by_id,
    add_refuses_bad_bodies_naming_the_property,
    add_refuses_unknown_users_and_groups,
    delete_removes_one_permission_and_unknown_ids_are_404,
    delete_refuses_bad_ids,
    the_last_administer_grant_cannot_be_removed,
    a_direct_administer_grant_makes_an_administrator,
    tasks_list_shows_the_six_built_in_tasks,
    only_full_control_keys_and_administrators_may_use_permissions_and_tasks,
    wrong_methods_and_oversized_bodies_are_refused,
);

/// `GET path` with a credential (none when empty).
pub fn get(s: &TestServer, credential: &str, path: &str) -> Response {
    let mut r = client().get(s.url(path));
    if !credential.is_empty() {
        r = r.header("X-ApiKey", credential);
    }
    r.send().unwrap()
}

/// `POST path` with a JSON body and a credential (none when empty).
pub fn post(s: &TestServer, credential: &str, path: &str, body: &Value) -> Response {
    post_raw(s, credential, path, &body.to_string())
}

/// `POST path` with a raw body and a credential (none when empty).
pub fn post_raw(s: &TestServer, credential: &str, path: &str, body: &str) -> Response {
    let mut r = client()
        .post(s.url(path))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if !credential.is_empty() {
        r = r.header("X-ApiKey", credential);
    }
    r.send().unwrap()
}

/// Adds a permission as the admin; returns it as stored.
pub fn add_permission(s: &TestServer, body: &Value) -> Value {
    let r = post(s, &s.admin(), "/api/security/permissions/add", body);
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "add {body}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The permissions as the admin lists them.
pub fn permissions(s: &TestServer) -> Vec<Value> {
    let r = get(s, &s.admin(), "/api/security/permissions/list");
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

fn delete(s: &TestServer, credential: &str, query: &str) -> Response {
    let mut r = client().post(s.url(&format!("/api/security/permissions/delete{query}")));
    if !credential.is_empty() {
        r = r.header("X-ApiKey", credential);
    }
    r.send().unwrap()
}

fn id_of(permission: &Value) -> i64 {
    permission["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id: {permission}"))
}

/// The permissions without their ids.
fn without_ids(permissions: &[Value]) -> Vec<Value> {
    permissions
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p.as_object_mut().unwrap().remove("id");
            p
        })
        .collect()
}

fn add_group(s: &TestServer, name: &str, members: &[&str]) {
    let r = post(
        s,
        &s.admin(),
        "/api/security/groups/add",
        &json!({"name": name, "members": members}),
    );
    assert_eq!(r.status(), 200, "add group {name}");
}

fn a_fresh_server_has_only_the_administrators_grant(backend: Backend) {
    let s = TestServer::start(backend);
    let listed = permissions(&s);
    assert_eq!(listed.len(), 1, "{listed:?}");
    id_of(&listed[0]);
    assert_eq!(
        without_ids(&listed),
        [json!({"group": "Administrators", "task": "Administer", "deny": false})]
    );
}

fn add_returns_the_stored_permission_and_list_shows_them_by_id(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("jsmith", "jsmith-password", &[]);
    add_group(&s, "Developers", &["jsmith"]);
    let bodies = [
        json!({"group": "Developers", "task": "Publish Packages", "feed": "npm-internal", "deny": false}),
        json!({"user": "jsmith", "task": "Publish Packages", "feed": "npm-internal", "deny": true}),
        json!({"group": "Developers", "task": "View & Download Packages", "feedGroup": "public", "deny": false}),
        json!({"user": "Anonymous", "task": "View & Download Packages", "feed": "public-npm", "deny": false}),
        json!({"user": "jsmith", "task": "Manage Feed", "deny": false}),
    ];
    let mut added = Vec::new();
    for body in &bodies {
        let stored = add_permission(&s, body);
        assert_eq!(
            without_ids(std::slice::from_ref(&stored)),
            std::slice::from_ref(body)
        );
        added.push(stored);
    }
    let ids: Vec<i64> = added.iter().map(id_of).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");

    let listed = permissions(&s);
    assert_eq!(listed.len(), 6);
    assert_eq!(
        &listed[1..],
        &added[..],
        "listed in id order after the grant"
    );
    assert!(id_of(&listed[0]) < ids[0]);

    // Task names are read case-insensitively and stored as spelled by the
    // server; `deny` defaults to false; an `id` in the body is ignored.
    let stored = add_permission(
        &s,
        &json!({"group": "developers", "task": "promote PACKAGES", "id": 4242}),
    );
    assert_eq!(stored["task"], "Promote Packages");
    assert_eq!(stored["deny"], false);
    assert_ne!(id_of(&stored), 4242);
    assert!(id_of(&stored) > ids[4]);
    assert_eq!(permissions(&s).last(), Some(&stored));
}

fn add_refuses_bad_bodies_naming_the_property(backend: Backend) {
    let s = TestServer::start(backend);
    let cases: &[(&str, &str)] = &[
        (r#"{"group": "Administrators", "task": "Fly"}"#, "task"),
        (r#"{"group": "Administrators"}"#, "task"),
        (r#"{"task": "Administer"}"#, "user"),
        (
            r#"{"user": "Admin", "group": "Administrators", "task": "Administer"}"#,
            "group",
        ),
        (
            r#"{"group": "Administrators", "task": "Publish Packages", "feed": "a", "feedGroup": "b"}"#,
            "feedGroup",
        ),
        (r#"{"user": "", "task": "Administer"}"#, "user"),
        (
            r#"{"group": "Administrators", "task": "Publish Packages", "feed": " "}"#,
            "feed",
        ),
        (r#"{"group": "Administrators", "task": 3}"#, "task"),
        (
            r#"{"group": "Administrators", "task": "Administer", "deny": "yes"}"#,
            "deny",
        ),
        (
            r#"{"group": "Administrators", "task": "Administer""#,
            "JSON",
        ),
        (
            r#"{"group": "Administrators", "task": "Administer"} {}"#,
            "JSON",
        ),
        (r#"[]"#, "JSON"),
    ];
    for (body, property) in cases {
        let r = post_raw(&s, &s.admin(), "/api/security/permissions/add", body);
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        let text = r.text().unwrap();
        assert!(text.contains(property), "{body}: {text}");
    }
    assert_eq!(permissions(&s).len(), 1, "nothing was added");
}

fn add_refuses_unknown_users_and_groups(backend: Backend) {
    let s = TestServer::start(backend);
    for (body, property) in [
        (json!({"user": "nobody", "task": "Administer"}), "user"),
        (json!({"group": "Nobodies", "task": "Administer"}), "group"),
    ] {
        let r = post(&s, &s.admin(), "/api/security/permissions/add", &body);
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().unwrap();
        assert!(text.starts_with(property), "{body}: {text}");
    }
    assert_eq!(permissions(&s).len(), 1, "nothing was added");
    // Names match case-insensitively, Anonymous always exists, and both are
    // stored with the subject's own spelling.
    s.add_user("jsmith", "jsmith-password", &[]);
    let stored = add_permission(&s, &json!({"user": "JSMITH", "task": "Publish Packages"}));
    assert_eq!(stored["user"], "jsmith");
    let stored = add_permission(
        &s,
        &json!({"group": "administrators", "task": "Manage Feed"}),
    );
    assert_eq!(stored["group"], "Administrators");
    let stored = add_permission(
        &s,
        &json!({"user": "anonymous", "task": "View & Download Packages"}),
    );
    assert_eq!(stored["user"], "Anonymous");
    assert_eq!(permissions(&s).len(), 4);
}

fn delete_removes_one_permission_and_unknown_ids_are_404(backend: Backend) {
    let s = TestServer::start(backend);
    let first = add_permission(
        &s,
        &json!({"user": "Anonymous", "task": "View & Download Packages", "feed": "a"}),
    );
    let second = add_permission(
        &s,
        &json!({"user": "Anonymous", "task": "View & Download Packages", "feed": "b"}),
    );
    let r = delete(&s, &s.admin(), &format!("?id={}", id_of(&first)));
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "");
    let listed = permissions(&s);
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[1], second);

    let r = delete(&s, &s.admin(), &format!("?id={}", id_of(&first)));
    assert_eq!(r.status(), 404, "deleted twice");
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert_eq!(delete(&s, &s.admin(), "?id=999999").status(), 404);
    assert_eq!(delete(&s, &s.admin(), "?id=-1").status(), 404);
    assert_eq!(permissions(&s).len(), 2);
}

fn delete_refuses_bad_ids(backend: Backend) {
    let s = TestServer::start(backend);
    for query in [
        "",
        "?id=",
        "?id=abc",
        "?id=1e3",
        "?id=1.0",
        "?id=%201",
        "?id=1&id=1",
        "?id=99999999999999999999",
    ] {
        let r = delete(&s, &s.admin(), query);
        assert_eq!(r.status(), 400, "{query:?}");
        assert!(r.text().unwrap().contains("id"), "{query:?}");
    }
    assert_eq!(permissions(&s).len(), 1);
}

fn the_last_administer_grant_cannot_be_removed(backend: Backend) {
    let s = TestServer::start(backend);
    let grant = id_of(&permissions(&s)[0]);
    let r = delete(&s, &s.admin(), &format!("?id={grant}"));
    assert_eq!(r.status(), 400, "deleting the only Administer grant");
    assert!(r.text().unwrap().contains("administrator"));
    for body in [
        json!({"group": "Administrators", "task": "Administer", "deny": true}),
        json!({"user": "Admin", "task": "Administer", "deny": true}),
    ] {
        let r = post(&s, &s.admin(), "/api/security/permissions/add", &body);
        assert_eq!(r.status(), 400, "{body}");
    }
    assert_eq!(permissions(&s).len(), 1, "nothing changed");
    assert_eq!(
        get(&s, &s.admin(), "/api/security/users/list").status(),
        200
    );

    // With another administrator, the group's grant may go.
    s.add_user("root", "root-password", &[]);
    add_permission(&s, &json!({"user": "root", "task": "Administer"}));
    assert_eq!(
        delete(&s, &s.admin(), &format!("?id={grant}")).status(),
        200
    );
    assert_eq!(
        get(&s, "root:root-password", "/api/security/users/list").status(),
        200
    );
    assert_eq!(
        get(&s, &s.admin(), "/api/security/users/list").status(),
        403,
        "Admin is no longer an administrator"
    );
}

fn a_direct_administer_grant_makes_an_administrator(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("carol", "carol-password", &[]);
    let (_, carol_key) = s.create_key(personal("carol"));
    let carol = "carol:carol-password";
    for credential in [carol, carol_key.as_str()] {
        assert_eq!(
            get(&s, credential, "/api/security/users/list").status(),
            403
        );
        assert_eq!(
            get(&s, credential, "/api/security/permissions/list").status(),
            403
        );
    }
    // Administer on one feed is not administration.
    add_permission(
        &s,
        &json!({"user": "carol", "task": "Administer", "feed": "npm"}),
    );
    assert_eq!(get(&s, carol, "/api/security/users/list").status(), 403);

    let grant = add_permission(&s, &json!({"user": "carol", "task": "Administer"}));
    for credential in [carol, carol_key.as_str()] {
        assert_eq!(
            get(&s, credential, "/api/security/users/list").status(),
            200
        );
        assert_eq!(
            get(&s, credential, "/api/security/permissions/list").status(),
            200
        );
    }
    assert_eq!(
        s.list_keys(carol).json::<Vec<Value>>().unwrap().len(),
        1,
        "sees every key"
    );

    // A deny removes it again.
    let deny = add_permission(
        &s,
        &json!({"user": "carol", "task": "Administer", "deny": true}),
    );
    assert_eq!(get(&s, carol, "/api/security/users/list").status(), 403);
    assert_eq!(
        delete(&s, &s.admin(), &format!("?id={}", id_of(&deny))).status(),
        200
    );
    assert_eq!(get(&s, carol, "/api/security/users/list").status(), 200);
    assert_eq!(
        delete(&s, &s.admin(), &format!("?id={}", id_of(&grant))).status(),
        200
    );
    assert_eq!(get(&s, carol, "/api/security/users/list").status(), 403);
}

fn tasks_list_shows_the_six_built_in_tasks(backend: Backend) {
    let s = TestServer::start(backend);
    let r = get(&s, &s.admin(), "/api/security/tasks/list");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    let tasks: Value = r.json().unwrap();
    assert_eq!(
        tasks,
        json!([
            {"name": "Administer", "permissions": ["view", "add", "promote", "delete"]},
            {"name": "View & Download Packages", "permissions": ["view"]},
            {"name": "Publish Packages", "permissions": ["view", "add"]},
            {"name": "Promote Packages", "permissions": ["view", "promote"]},
            {"name": "Delete Packages", "permissions": ["view", "delete"]},
            {"name": "Manage Feed", "permissions": ["view", "add", "promote", "delete"]},
        ])
    );
}

fn only_full_control_keys_and_administrators_may_use_permissions_and_tasks(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let (_, full) = s.create_key(full_control());
    let (_, limited) =
        s.create_key(json!({"type": "system", "systemApis": ["feeds", "sca", "sbom-upload"]}));
    let (_, feed) = s.create_key(feed_key());
    let (_, alice_key) = s.create_key(personal("alice"));
    // Alice may publish everywhere: feed rights are not administration.
    add_permission(&s, &json!({"user": "alice", "task": "Manage Feed"}));
    let grant = id_of(&permissions(&s)[0]);
    let body = json!({"user": "alice", "task": "Administer"});

    for caller in [
        feed.as_str(),
        &limited,
        "alice:alice-password",
        &alice_key,
        "",
        "wrong-key",
    ] {
        for path in ["/api/security/permissions/list", "/api/security/tasks/list"] {
            let r = get(&s, caller, path);
            assert_eq!(r.status(), 403, "{path} by {caller:?}");
            assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        }
        let r = post(&s, caller, "/api/security/permissions/add", &body);
        assert_eq!(r.status(), 403, "add by {caller:?}");
        // Checked before the body: a bad body is still 403.
        let r = post_raw(&s, caller, "/api/security/permissions/add", "{");
        assert_eq!(r.status(), 403, "bad add by {caller:?}");
        let r = delete(&s, caller, &format!("?id={grant}"));
        assert_eq!(r.status(), 403, "delete by {caller:?}");
        assert_eq!(delete(&s, caller, "?id=x").status(), 403);
    }
    assert_eq!(permissions(&s).len(), 2, "nothing was added or deleted");
    let by_key: Value = get(&s, &full, "/api/security/permissions/list")
        .json()
        .unwrap();
    assert_eq!(
        by_key.as_array().unwrap(),
        &permissions(&s),
        "a full-control key lists what an administrator lists"
    );

    for caller in [s.admin(), full] {
        assert_eq!(
            get(&s, &caller, "/api/security/permissions/list").status(),
            200
        );
        assert_eq!(get(&s, &caller, "/api/security/tasks/list").status(), 200);
        let r = post(
            &s,
            &caller,
            "/api/security/permissions/add",
            &json!({"user": "alice", "task": "Publish Packages", "feed": "npm"}),
        );
        assert_eq!(r.status(), 200);
        let added: Value = r.json().unwrap();
        assert_eq!(
            delete(&s, &caller, &format!("?id={}", id_of(&added))).status(),
            200
        );
    }
}

fn wrong_methods_and_oversized_bodies_are_refused(backend: Backend) {
    let s = TestServer::start(backend);
    for (method, path, allowed) in [
        ("GET", "/api/security/permissions/add", "POST"),
        ("DELETE", "/api/security/permissions/delete?id=1", "POST"),
        ("POST", "/api/security/permissions/list", "GET"),
        ("PUT", "/api/security/tasks/list", "GET"),
    ] {
        let r = client()
            .request(method.parse().unwrap(), s.url(path))
            .header("X-ApiKey", s.admin())
            .send()
            .unwrap();
        assert_eq!(r.status(), 405, "{method} {path}");
        let allow = r.headers()["allow"].to_str().unwrap().to_owned();
        assert!(allow.contains(allowed), "{method} {path}: Allow {allow}");
    }
    // Declared too large: refused from the head, before the body is sent
    // (sending it whole would race the server closing the connection).
    let answer = raw(
        &s,
        format!(
            "POST /api/security/permissions/add HTTP/1.1\r\nHost: x\r\nX-ApiKey: {}\r\n\
             Content-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{{",
            s.admin(),
            300 * 1024
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert_eq!(permissions(&s).len(), 1);
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn permission_and_group_changes_apply_on_every_node_at_once() {
    crate::common::postgres_url("permission_and_group_changes_apply_on_every_node_at_once");
    let a = TestServer::start(Backend::Postgres);
    let b = a.another_node();
    a.add_user("erin", "erin-password", &[]);
    let erin = "erin:erin-password";
    let (_, full) = a.create_key(full_control());
    let users = "/api/security/users/list";
    for round in 0..10 {
        assert_eq!(get(&b, erin, users).status(), 403, "round {round}");
        let grant = add_permission(&a, &json!({"user": "erin", "task": "Administer"}));
        assert_eq!(get(&b, erin, users).status(), 200, "round {round}: granted");
        let r = delete(&b, &full, &format!("?id={}", id_of(&grant)));
        assert_eq!(r.status(), 200);
        assert_eq!(get(&a, erin, users).status(), 403, "round {round}: revoked");

        let r = post(
            &b,
            &full,
            "/api/security/groups/add",
            &json!({"name": "Ops", "members": ["erin"]}),
        );
        assert_eq!(r.status(), 200);
        add_permission(&b, &json!({"group": "Ops", "task": "Administer"}));
        assert_eq!(get(&a, erin, users).status(), 200, "round {round}: via Ops");
        let r = client()
            .post(a.url("/api/security/groups/delete?group=Ops"))
            .header("X-ApiKey", &full)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            get(&b, erin, users).status(),
            403,
            "round {round}: Ops deleted"
        );
        assert_eq!(permissions(&b).len(), 1, "round {round}");
    }
}
