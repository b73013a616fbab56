//! The security API's users: add, list, edit, delete, and who may use it.

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{
    client, feed_key, full_control, personal, post_json, Backend, TestServer, ADMIN_PASSWORD,
};

both_backends!(
    add_returns_the_user_and_list_shows_it_never_with_a_password,
    list_search_term_matches_name_display_name_or_email_case_insensitively,
    edit_changes_only_the_given_fields,
    edit_of_groups_grants_and_revokes_administration,
    names_are_case_insensitive_for_look_up_and_keep_their_spelling,
    duplicate_name_is_400,
    anonymous_is_a_reserved_name,
    add_needs_a_name_and_a_password,
    deleting_a_missing_user_is_200,
    deleting_a_user_deletes_their_personal_keys,
    only_full_control_keys_and_administrators_may_manage_users,
    delete_is_the_delete_method,
);

fn add(s: &TestServer, credential: &str, body: &Value) -> Response {
    post_json(&s.url("/api/security/users/add"), body)
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
}

fn edit(s: &TestServer, credential: &str, body: &Value) -> Response {
    post_json(&s.url("/api/security/users/edit"), body)
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
}

fn list_users(s: &TestServer, credential: &str, query: &str) -> Response {
    client()
        .get(s.url(&format!("/api/security/users/list{query}")))
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
}

fn delete_user(s: &TestServer, credential: &str, name: &str) -> Response {
    let name: String = form_urlencoded::byte_serialize(name.as_bytes()).collect();
    client()
        .delete(s.url(&format!("/api/security/users/delete?user={name}")))
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
}

/// The users as the admin lists them, by name.
fn users(s: &TestServer, query: &str) -> Vec<Value> {
    let r = list_users(s, &s.admin(), query);
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

fn names(s: &TestServer, query: &str) -> Vec<String> {
    let mut names: Vec<String> = users(s, query)
        .iter()
        .map(|u| u["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn user(s: &TestServer, name: &str) -> Value {
    users(s, "")
        .into_iter()
        .find(|u| u["name"] == name)
        .unwrap_or_else(|| panic!("no user {name}"))
}

fn add_returns_the_user_and_list_shows_it_never_with_a_password(backend: Backend) {
    let s = TestServer::start(backend);
    let body = json!({"name": "alice", "displayName": "Alice Liddell", "email": "alice@wonder.land",
                      "password": "rabbit-hole-password", "groups": ["Readers", "Writers"]});
    let r = add(&s, &s.admin(), &body);
    assert_eq!(r.status(), 200);
    let text = r.text().unwrap();
    let expected = json!({"name": "alice", "displayName": "Alice Liddell", "email": "alice@wonder.land",
                          "groups": ["Readers", "Writers"]});
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);

    let r = list_users(&s, &s.admin(), "");
    let text = r.text().unwrap();
    for secret in ["rabbit-hole-password", ADMIN_PASSWORD, "password", "argon2"] {
        assert!(!text.contains(secret), "list shows {secret}: {text}");
    }
    assert_eq!(user(&s, "alice"), expected);
    assert_eq!(user(&s, "Admin")["groups"], json!(["Administrators"]));
    assert_eq!(names(&s, ""), ["Admin", "alice"]);
    assert_eq!(
        s.list_keys("alice:rabbit-hole-password").status(),
        200,
        "the password works"
    );
}

fn list_search_term_matches_name_display_name_or_email_case_insensitively(backend: Backend) {
    let s = TestServer::start(backend);
    for (name, display, email) in [
        ("alice", "Alice Liddell", "alice@wonder.land"),
        ("bob", "Robert Builder", "bob@construction.test"),
    ] {
        let body = json!({"name": name, "displayName": display, "email": email, "password": "pw-long-enough"});
        assert_eq!(add(&s, &s.admin(), &body).status(), 200);
    }
    s.add_user("carol_100%", "pw-long-enough", &[]);
    let cases: &[(&str, &[&str])] = &[
        ("", &["Admin", "alice", "bob", "carol_100%"]),
        ("?search-term=", &["Admin", "alice", "bob", "carol_100%"]),
        ("?search-term=LIDDELL", &["alice"]),
        ("?search-term=construction", &["bob"]),
        ("?search-term=ROBERT", &["bob"]),
        ("?search-term=aDm", &["Admin"]),
        ("?search-term=a", &["Admin", "alice", "carol_100%"]),
        ("?search-term=zzz", &[]),
        // Wildcards of SQL LIKE are plain characters here.
        ("?search-term=%25", &["carol_100%"]),
        ("?search-term=_", &["carol_100%"]),
        ("?search-term=l_d", &[]),
    ];
    for (query, expected) in cases {
        assert_eq!(names(&s, query), *expected, "{query}");
    }
}

fn edit_changes_only_the_given_fields(backend: Backend) {
    let s = TestServer::start(backend);
    let body = json!({"name": "alice", "displayName": "Alice", "email": "alice@wonder.land", "password": "pw-1-long-enough", "groups": ["Readers"]});
    assert_eq!(add(&s, &s.admin(), &body).status(), 200);

    let r = edit(
        &s,
        &s.admin(),
        &json!({"name": "alice", "displayName": "Alice L."}),
    );
    assert_eq!(r.status(), 200);
    let text = r.text().unwrap();
    assert!(!text.contains("pw-1-long-enough"));
    let expected = json!({"name": "alice", "displayName": "Alice L.", "email": "alice@wonder.land", "groups": ["Readers"]});
    assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), expected);
    assert_eq!(user(&s, "alice"), expected);
    assert_eq!(
        s.list_keys("alice:pw-1-long-enough").status(),
        200,
        "the password is unchanged"
    );

    let r = edit(
        &s,
        &s.admin(),
        &json!({"name": "alice", "email": "a@example.com", "groups": [], "password": "pw-2-long-enough"}),
    );
    assert_eq!(r.status(), 200);
    assert!(!r.text().unwrap().contains("pw-2-long-enough"));
    let expected =
        json!({"name": "alice", "displayName": "Alice L.", "email": "a@example.com", "groups": []});
    assert_eq!(user(&s, "alice"), expected);
    assert_eq!(s.list_keys("alice:pw-2-long-enough").status(), 200);

    let r = edit(
        &s,
        &s.admin(),
        &json!({"name": "nobody", "displayName": "x"}),
    );
    assert!(
        r.status().is_client_error(),
        "editing a missing user: {}",
        r.status()
    );
    assert_eq!(
        names(&s, ""),
        ["Admin", "alice"],
        "edit does not create users"
    );
}

fn edit_of_groups_grants_and_revokes_administration(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let (_, system) = s.create_key(full_control());
    let alice = "alice:alice-password";
    assert_eq!(s.list_keys(alice).status(), 200);
    assert_eq!(
        s.list_keys(alice).json::<Vec<Value>>().unwrap().len(),
        0,
        "alice sees only her own keys"
    );

    assert_eq!(
        edit(
            &s,
            &s.admin(),
            &json!({"name": "alice", "groups": ["Administrators"]})
        )
        .status(),
        200
    );
    assert_eq!(
        s.list_keys(alice).json::<Vec<Value>>().unwrap().len(),
        1,
        "an administrator at once"
    );
    assert_eq!(list_users(&s, alice, "").status(), 200);

    assert_eq!(
        edit(&s, &s.admin(), &json!({"name": "alice", "groups": []})).status(),
        200
    );
    assert_eq!(
        s.list_keys(alice).json::<Vec<Value>>().unwrap().len(),
        0,
        "no longer an administrator"
    );
    assert_eq!(list_users(&s, alice, "").status(), 403);
    assert_eq!(s.list_keys(&system).status(), 200);
}

fn names_are_case_insensitive_for_look_up_and_keep_their_spelling(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("MixedCase", "mixed-password", &[]);
    assert_eq!(names(&s, ""), ["Admin", "MixedCase"]);
    assert_eq!(s.list_keys("mixedcase:mixed-password").status(), 200);
    let r = client()
        .get(s.url("/api/api-keys/list"))
        .basic_auth("MIXEDCASE", Some("mixed-password"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.list_keys(&format!("admin:{ADMIN_PASSWORD}")).status(),
        200
    );

    let r = edit(
        &s,
        &s.admin(),
        &json!({"name": "MIXEDcase", "displayName": "Mixed"}),
    );
    assert_eq!(r.status(), 200);
    assert_eq!(
        user(&s, "MixedCase")["displayName"],
        "Mixed",
        "edit found the user; the spelling is kept"
    );

    let r = add(
        &s,
        &s.admin(),
        &json!({"name": "mixedCASE", "password": "other-password"}),
    );
    assert_eq!(
        r.status(),
        400,
        "the same name in another case is a duplicate"
    );

    assert_eq!(delete_user(&s, &s.admin(), "MIXEDCASE").status(), 200);
    assert_eq!(names(&s, ""), ["Admin"]);
}

fn duplicate_name_is_400(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "first-password", &[]);
    let r = add(
        &s,
        &s.admin(),
        &json!({"name": "alice", "password": "second-password", "displayName": "Other"}),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    assert!(r.text().unwrap().contains("name"));
    assert_eq!(
        s.list_keys("alice:first-password").status(),
        200,
        "the first user is untouched"
    );
    assert_eq!(s.list_keys("alice:second-password").status(), 403);
    assert_eq!(user(&s, "alice").get("displayName"), None);
}

fn anonymous_is_a_reserved_name(backend: Backend) {
    let s = TestServer::start(backend);
    for name in ["Anonymous", "anonymous", "ANONYMOUS", "Ａnonymous"] {
        let r = add(
            &s,
            &s.admin(),
            &json!({"name": name, "password": "pw-long-enough"}),
        );
        assert_eq!(r.status(), 400, "{name}");
        assert_eq!(r.text().unwrap(), "name: Anonymous is reserved", "{name}");
    }
    assert_eq!(names(&s, ""), ["Admin"]);
    let r = add(
        &s,
        &s.admin(),
        &json!({"name": "Anonymous2", "password": "pw-long-enough"}),
    );
    assert_eq!(r.status(), 200, "only the name itself is reserved");
}

fn add_needs_a_name_and_a_password(backend: Backend) {
    let s = TestServer::start(backend);
    let cases = [
        (json!({"name": "alice"}), "password"),
        (json!({"name": "alice", "password": ""}), "password"),
        (json!({"name": "", "password": "pw-long-enough"}), "name"),
        (
            json!({"name": "al:ice", "password": "pw-long-enough"}),
            "name",
        ),
        (json!({"password": "pw-long-enough"}), "name"),
    ];
    for (body, property) in cases {
        let r = add(&s, &s.admin(), &body);
        assert_eq!(r.status(), 400, "{body}");
        assert!(r.text().unwrap().contains(property), "{body}");
    }
    assert_eq!(names(&s, ""), ["Admin"]);
}

fn deleting_a_missing_user_is_200(backend: Backend) {
    let s = TestServer::start(backend);
    let r = delete_user(&s, &s.admin(), "nobody");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().unwrap(), "");
    assert_eq!(names(&s, ""), ["Admin"]);
}

fn deleting_a_user_deletes_their_personal_keys(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    s.add_user("bob", "bob-password", &[]);
    let (a1, alice_key_1) = s.create_key(personal("alice"));
    let (system, system_key) = s.create_key(full_control());
    let (a2, alice_key_2) = s.create_key(personal("alice"));
    let (bobs, bob_key) = s.create_key(personal("bob"));

    assert_eq!(delete_user(&s, &s.admin(), "alice").status(), 200);
    let listed: Vec<Value> = s.list_keys(&s.admin()).json().unwrap();
    let ids: Vec<i64> = listed.iter().map(|k| k["id"].as_i64().unwrap()).collect();
    assert_eq!(
        ids,
        [i64::from(system), i64::from(bobs)],
        "alice's keys {a1} and {a2} are gone"
    );
    for key in [&alice_key_1, &alice_key_2] {
        assert_eq!(s.list_keys(key).status(), 403);
    }
    assert_eq!(s.list_keys(&bob_key).status(), 200);
    assert_eq!(s.list_keys(&system_key).status(), 200);
    assert_eq!(names(&s, ""), ["Admin", "bob"]);
}

fn only_full_control_keys_and_administrators_may_manage_users(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    s.add_user("carol", "carol-password", &["Administrators"]);
    let (_, full) = s.create_key(full_control());
    let (_, limited) =
        s.create_key(json!({"type": "system", "systemApis": ["feeds", "sca", "sbom-upload"]}));
    let (_, feed) = s.create_key(feed_key());
    let (_, alice_key) = s.create_key(personal("alice"));
    let (_, carol_key) = s.create_key(personal("carol"));

    for caller in [
        feed.as_str(),
        &limited,
        "alice:alice-password",
        &alice_key,
        "",
    ] {
        let r = add(
            &s,
            caller,
            &json!({"name": "mallory", "password": "pw-long-enough"}),
        );
        assert_eq!(r.status(), 403, "add by {caller:?}");
        assert_eq!(
            list_users(&s, caller, "").status(),
            403,
            "list by {caller:?}"
        );
        let r = edit(
            &s,
            caller,
            &json!({"name": "alice", "displayName": "hacked", "password": "pw-long-enough"}),
        );
        assert_eq!(r.status(), 403, "edit by {caller:?}");
        assert_eq!(
            delete_user(&s, caller, "carol").status(),
            403,
            "delete by {caller:?}"
        );
    }
    assert_eq!(
        names(&s, ""),
        ["Admin", "alice", "carol"],
        "nothing was added or deleted"
    );
    assert_eq!(
        user(&s, "alice").get("displayName"),
        None,
        "nothing was edited"
    );
    assert_eq!(
        s.list_keys("alice:alice-password").status(),
        200,
        "the password is unchanged"
    );

    let login = "carol:carol-password".to_owned();
    for (i, caller) in [s.admin(), full, login, carol_key].iter().enumerate() {
        let name = format!("user{i}");
        assert_eq!(
            add(
                &s,
                caller,
                &json!({"name": name, "password": "pw-long-enough"})
            )
            .status(),
            200,
            "add by {caller}"
        );
        assert_eq!(list_users(&s, caller, "").status(), 200);
        assert_eq!(
            edit(&s, caller, &json!({"name": name, "displayName": "x"})).status(),
            200
        );
        assert_eq!(delete_user(&s, caller, &name).status(), 200);
    }
    let r = client()
        .get(s.url("/api/security/users/list"))
        .basic_auth("carol", Some("carol-password"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "an administrator's Basic login");
    assert_eq!(names(&s, ""), ["Admin", "alice", "carol"]);
}

fn delete_is_the_delete_method(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("bob", "bob-password", &[]);
    for method in ["POST", "GET", "PUT"] {
        let r = client()
            .request(
                method.parse().unwrap(),
                s.url("/api/security/users/delete?user=bob"),
            )
            .header("X-ApiKey", s.admin())
            .send()
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        let allow = r.headers()["allow"].to_str().unwrap().to_owned();
        assert!(
            allow.split(',').any(|m| m.trim() == "DELETE"),
            "{method}: Allow {allow}"
        );
        assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    }
    assert_eq!(names(&s, ""), ["Admin", "bob"], "bob survived");
}
