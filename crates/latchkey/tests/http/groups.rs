//! The security API's groups: list, add, edit, delete, who may use them, and
//! what membership and deletion do to permissions.

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{client, feed_key, full_control, personal, Backend, TestServer};
use crate::permissions::{add_permission, get, permissions, post, post_raw};

both_backends!(
    a_fresh_server_has_administrators_with_admin,
    add_returns_the_group_and_list_shows_them_by_name,
    add_refuses_duplicates_unknown_members_and_bad_names,
    edit_replaces_the_members,
    edit_needs_an_existing_group_members_and_known_users,
    delete_removes_the_group_and_its_permissions,
    delete_refuses_administrators_and_bad_queries,
    a_group_permission_applies_to_its_members,
    membership_of_administrators_makes_an_administrator,
    only_full_control_keys_and_administrators_may_manage_groups,
);

fn add(s: &TestServer, credential: &str, body: &Value) -> Response {
    post(s, credential, "/api/security/groups/add", body)
}

fn edit(s: &TestServer, credential: &str, body: &Value) -> Response {
    post(s, credential, "/api/security/groups/edit", body)
}

fn delete(s: &TestServer, credential: &str, name: &str) -> Response {
    let name: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    delete_query(s, credential, &format!("?group={name}"))
}

fn delete_query(s: &TestServer, credential: &str, query: &str) -> Response {
    let mut r = client().post(s.url(&format!("/api/security/groups/delete{query}")));
    if !credential.is_empty() {
        r = r.header("X-ApiKey", credential);
    }
    r.send().unwrap()
}

/// The groups as the admin lists them.
fn groups(s: &TestServer) -> Value {
    let r = get(s, &s.admin(), "/api/security/groups/list");
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/json; charset=utf-8"
    );
    r.json().unwrap()
}

fn administrators(members: &[&str]) -> Value {
    json!({"name": "Administrators", "members": members})
}

fn a_fresh_server_has_administrators_with_admin(backend: Backend) {
    let s = TestServer::start(backend);
    assert_eq!(groups(&s), json!([administrators(&["Admin"])]));
}

fn add_returns_the_group_and_list_shows_them_by_name(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    s.add_user("bob", "bob-password", &[]);
    let r = add(
        &s,
        &s.admin(),
        &json!({"name": "Developers", "members": ["alice", "bob"]}),
    );
    assert_eq!(r.status(), 200);
    let developers = json!({"name": "Developers", "members": ["alice", "bob"]});
    assert_eq!(r.json::<Value>().unwrap(), developers);

    let r = add(&s, &s.admin(), &json!({"name": "Auditors"}));
    assert_eq!(r.status(), 200);
    let auditors = json!({"name": "Auditors", "members": []});
    assert_eq!(r.json::<Value>().unwrap(), auditors);

    // Members are found case-insensitively; a repeat counts once.
    let r = add(
        &s,
        &s.admin(),
        &json!({"name": "Builders", "members": ["ALICE", "alice"]}),
    );
    assert_eq!(r.status(), 200);
    let members = &r.json::<Value>().unwrap()["members"];
    assert_eq!(members.as_array().map(Vec::len), Some(1), "{members}");

    let listed = groups(&s);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["Administrators", "Auditors", "Builders", "Developers"]
    );
    assert_eq!(listed[1], auditors);
    assert_eq!(listed[3], developers);
}

fn add_refuses_duplicates_unknown_members_and_bad_names(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    assert_eq!(
        add(&s, &s.admin(), &json!({"name": "Developers"})).status(),
        200
    );
    let cases = [
        (json!({"name": "developers"}), "name"),
        (json!({"name": "ADMINISTRATORS"}), "name"),
        (
            json!({"name": "Testers", "members": ["alice", "nobody"]}),
            "nobody",
        ),
        (json!({"name": "Testers", "members": [""]}), "members"),
        (json!({"name": "Testers", "members": "alice"}), "members"),
        (json!({"name": ""}), "name"),
        (json!({"name": " Testers"}), "name"),
        (json!({"name": "Test:ers"}), "name"),
        (json!({"members": ["alice"]}), "name"),
    ];
    for (body, property) in cases {
        let r = add(&s, &s.admin(), &body);
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        let text = r.text().unwrap();
        assert!(text.contains(property), "{body}: {text}");
    }
    let r = post_raw(&s, &s.admin(), "/api/security/groups/add", "{\"name\": ");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("JSON"));
    assert_eq!(
        groups(&s),
        json!([administrators(&["Admin"]), {"name": "Developers", "members": []}]),
        "nothing was added"
    );
}

fn edit_replaces_the_members(backend: Backend) {
    let s = TestServer::start(backend);
    for name in ["alice", "bob", "carol"] {
        s.add_user(name, &format!("{name}-password"), &[]);
    }
    let r = add(
        &s,
        &s.admin(),
        &json!({"name": "Developers", "members": ["alice", "bob"]}),
    );
    assert_eq!(r.status(), 200);
    let r = edit(
        &s,
        &s.admin(),
        &json!({"name": "DEVELOPERS", "members": ["carol", "bob"]}),
    );
    assert_eq!(r.status(), 200);
    let changed: Value = r.json().unwrap();
    assert_eq!(changed["name"], "Developers", "the spelling is kept");
    let mut members: Vec<&str> = changed["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap())
        .collect();
    members.sort_unstable();
    assert_eq!(members, ["bob", "carol"]);
    assert_eq!(groups(&s)[1], changed);

    let r = edit(
        &s,
        &s.admin(),
        &json!({"name": "Developers", "members": []}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(groups(&s)[1], json!({"name": "Developers", "members": []}));
}

fn edit_needs_an_existing_group_members_and_known_users(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let r = add(
        &s,
        &s.admin(),
        &json!({"name": "Developers", "members": ["alice"]}),
    );
    assert_eq!(r.status(), 200);

    let r = edit(&s, &s.admin(), &json!({"name": "Nobodies", "members": []}));
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");

    for (body, property) in [
        (json!({"name": "Developers"}), "members"),
        (json!({"name": "Developers", "members": null}), "members"),
        (
            json!({"name": "Developers", "members": ["alice", "nobody"]}),
            "nobody",
        ),
        (json!({"members": []}), "name"),
    ] {
        let r = edit(&s, &s.admin(), &body);
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().unwrap();
        assert!(text.contains(property), "{body}: {text}");
    }
    assert_eq!(
        groups(&s)[1],
        json!({"name": "Developers", "members": ["alice"]}),
        "unchanged"
    );
}

fn delete_removes_the_group_and_its_permissions(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let r = add(
        &s,
        &s.admin(),
        &json!({"name": "Developers", "members": ["alice"]}),
    );
    assert_eq!(r.status(), 200);
    add_permission(
        &s,
        &json!({"group": "Developers", "task": "Publish Packages", "feed": "npm"}),
    );
    let kept = add_permission(
        &s,
        &json!({"user": "alice", "task": "View & Download Packages"}),
    );
    add_permission(
        &s,
        &json!({"group": "Developers", "task": "Manage Feed", "feedGroup": "internal"}),
    );
    assert_eq!(permissions(&s).len(), 4);

    let r = delete(&s, &s.admin(), "developers");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "");
    assert_eq!(groups(&s), json!([administrators(&["Admin"])]));
    let left = permissions(&s);
    assert_eq!(left.len(), 2, "the group's permissions are gone: {left:?}");
    assert_eq!(left[0]["group"], "Administrators");
    assert_eq!(left[1], kept);

    // A new group of the same name starts without them.
    let r = add(&s, &s.admin(), &json!({"name": "Developers"}));
    assert_eq!(r.status(), 200);
    assert_eq!(permissions(&s).len(), 2);

    // Deleting a group that does not exist is not an error.
    assert_eq!(delete(&s, &s.admin(), "Nobodies").status(), 200);
}

fn delete_refuses_administrators_and_bad_queries(backend: Backend) {
    let s = TestServer::start(backend);
    for name in ["Administrators", "administrators"] {
        let r = delete(&s, &s.admin(), name);
        assert_eq!(r.status(), 400, "{name}");
        assert!(r.text().unwrap().contains("Administrators"));
    }
    for query in ["", "?group=", "?group=a&group=b", "?name=Administrators"] {
        let r = delete_query(&s, &s.admin(), query);
        assert_eq!(r.status(), 400, "{query:?}");
        assert!(r.text().unwrap().contains("group"), "{query:?}");
    }
    for (method, path, allowed) in [
        ("DELETE", "/api/security/groups/delete?group=x", "POST"),
        ("GET", "/api/security/groups/add", "POST"),
        ("GET", "/api/security/groups/edit", "POST"),
        ("POST", "/api/security/groups/list", "GET"),
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
    assert_eq!(groups(&s), json!([administrators(&["Admin"])]));
    assert_eq!(permissions(&s).len(), 1);
}

fn a_group_permission_applies_to_its_members(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let alice = "alice:alice-password";
    let r = add(&s, &s.admin(), &json!({"name": "Operators"}));
    assert_eq!(r.status(), 200);
    add_permission(&s, &json!({"group": "Operators", "task": "Administer"}));
    assert_eq!(get(&s, alice, "/api/security/groups/list").status(), 403);

    let r = edit(
        &s,
        &s.admin(),
        &json!({"name": "Operators", "members": ["alice"]}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(
        get(&s, alice, "/api/security/groups/list").status(),
        200,
        "a member now"
    );

    assert_eq!(delete(&s, &s.admin(), "Operators").status(), 200);
    assert_eq!(
        get(&s, alice, "/api/security/groups/list").status(),
        403,
        "the grant went with the group"
    );
}

fn membership_of_administrators_makes_an_administrator(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("dave", "dave-password", &[]);
    let dave = "dave:dave-password";
    assert_eq!(get(&s, dave, "/api/security/users/list").status(), 403);
    let r = edit(
        &s,
        &s.admin(),
        &json!({"name": "Administrators", "members": ["Admin", "dave"]}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(get(&s, dave, "/api/security/users/list").status(), 200);

    // No lock-out: the last administrators cannot all be removed.
    let r = edit(
        &s,
        &s.admin(),
        &json!({"name": "Administrators", "members": []}),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("administrator"));
    assert_eq!(get(&s, dave, "/api/security/users/list").status(), 200);

    let r = edit(
        &s,
        &s.admin(),
        &json!({"name": "Administrators", "members": ["dave"]}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(get(&s, dave, "/api/security/users/list").status(), 200);
    assert_eq!(
        get(&s, &s.admin(), "/api/security/users/list").status(),
        403
    );
}

fn only_full_control_keys_and_administrators_may_manage_groups(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let (_, full) = s.create_key(full_control());
    let (_, limited) =
        s.create_key(json!({"type": "system", "systemApis": ["feeds", "sca", "sbom-upload"]}));
    let (_, feed) = s.create_key(feed_key());
    let (_, alice_key) = s.create_key(personal("alice"));
    let r = add(
        &s,
        &s.admin(),
        &json!({"name": "Developers", "members": ["alice"]}),
    );
    assert_eq!(r.status(), 200);
    let before = groups(&s);

    for caller in [
        feed.as_str(),
        &limited,
        "alice:alice-password",
        &alice_key,
        "",
    ] {
        let r = get(&s, caller, "/api/security/groups/list");
        assert_eq!(r.status(), 403, "list by {caller:?}");
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
        let r = add(&s, caller, &json!({"name": "Mallory"}));
        assert_eq!(r.status(), 403, "add by {caller:?}");
        let r = edit(
            &s,
            caller,
            &json!({"name": "Administrators", "members": ["alice"]}),
        );
        assert_eq!(r.status(), 403, "edit by {caller:?}");
        let r = delete(&s, caller, "Developers");
        assert_eq!(r.status(), 403, "delete by {caller:?}");
    }
    assert_eq!(groups(&s), before, "nothing changed");

    for caller in [s.admin(), full] {
        assert_eq!(get(&s, &caller, "/api/security/groups/list").status(), 200);
        assert_eq!(add(&s, &caller, &json!({"name": "Temp"})).status(), 200);
        let r = edit(&s, &caller, &json!({"name": "Temp", "members": ["alice"]}));
        assert_eq!(r.status(), 200);
        assert_eq!(delete(&s, &caller, "Temp").status(), 200);
    }
    assert_eq!(groups(&s), before);
}
