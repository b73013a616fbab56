//! `POST /api/api-keys/create` and `GET /api/api-keys/list`: the ApiKeyInfo
//! rules, key texts, the permission table, and the wire format.

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::auth::{create_expiring_key, wait_until_past};
use crate::both_backends;
use crate::common::{
    client, feed_key, full_control, personal, post_json, Backend, Options, TestServer,
    ADMIN_PASSWORD,
};

both_backends!(
    each_api_key_info_rule_is_400_naming_the_property,
    malformed_json_is_400_not_500,
    create_returns_the_full_key_once_and_list_never_shows_it,
    generated_keys_are_lk_prefixed_39_alphanumeric_characters,
    custom_keys_are_accepted_and_authenticate,
    custom_key_with_a_colon_is_400,
    duplicate_custom_key_is_400_without_naming_the_other_key,
    custom_keys_can_be_switched_off,
    a_personal_key_needs_an_existing_user,
    full_control_system_key_creates_every_type_and_lists_all,
    limited_system_and_feed_keys_may_not_create_or_list,
    administrators_create_and_list_all_by_pseudo_key_personal_key_or_login,
    non_admin_users_create_and_list_only_their_own_personal_keys,
    no_credential_may_not_create_or_list,
    list_is_ordered_by_id,
    expired_keys_are_still_listed_with_their_expiration,
    enum_values_are_case_insensitive_on_input_and_camel_case_on_output,
    unknown_properties_are_ignored_and_nulls_accepted_and_omitted,
    expiration_accepts_date_slashed_date_and_rfc3339,
    id_in_a_create_body_is_ignored,
);

fn create(s: &TestServer, body: &str) -> Response {
    client()
        .post(s.url("/api/api-keys/create"))
        .header("content-type", "application/json")
        .header("X-ApiKey", s.admin())
        .body(body.to_owned())
        .send()
        .unwrap()
}

fn list(s: &TestServer, credential: &str) -> Vec<Value> {
    let r = s.list_keys(credential);
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    r.json().unwrap()
}

fn ids(keys: &[Value]) -> Vec<i64> {
    keys.iter().map(|k| k["id"].as_i64().unwrap()).collect()
}

fn assert_text_plain(r: &Response) {
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
}

fn each_api_key_info_rule_is_400_naming_the_property(backend: Backend) {
    let s = TestServer::start(backend);
    let long = "x".repeat(300);
    let longer = "x".repeat(5000);
    let cases = [
        (r#"{}"#.to_owned(), "type"),
        (r#"{"type":"other"}"#.into(), "type"),
        (r#"{"type":"sometimes"}"#.into(), "type"),
        (
            r#"{"type":"feed","systemApis":["feeds"],"feed":"f","packagePermissions":["view"]}"#
                .into(),
            "systemApis",
        ),
        (
            r#"{"type":"personal","user":"Admin","systemApis":["feeds"]}"#.into(),
            "systemApis",
        ),
        (r#"{"type":"system"}"#.into(), "systemApis"),
        (r#"{"type":"system","systemApis":[]}"#.into(), "systemApis"),
        (
            r#"{"type":"system","systemApis":["full-control","sca"]}"#.into(),
            "systemApis",
        ),
        (
            r#"{"type":"system","systemApis":["everything"]}"#.into(),
            "systemApis",
        ),
        (
            r#"{"type":"system","systemApis":["sca"],"packagePermissions":["view"]}"#.into(),
            "packagePermissions",
        ),
        (r#"{"type":"feed","feed":"f"}"#.into(), "packagePermissions"),
        (
            r#"{"type":"feed","feed":"f","packagePermissions":[]}"#.into(),
            "packagePermissions",
        ),
        (
            r#"{"type":"feed","feed":"f","packagePermissions":["own"]}"#.into(),
            "packagePermissions",
        ),
        (
            r#"{"type":"feed","packagePermissions":["view"]}"#.into(),
            "feed",
        ),
        (
            r#"{"type":"feed","packagePermissions":["view"],"feed":"f","feedGroup":"g"}"#.into(),
            "feed",
        ),
        (
            r#"{"type":"system","systemApis":["sca"],"feed":"f"}"#.into(),
            "feed",
        ),
        (
            r#"{"type":"system","systemApis":["sca"],"feedGroup":"g"}"#.into(),
            "feedGroup",
        ),
        (
            r#"{"type":"system","systemApis":["sca"],"user":"Admin"}"#.into(),
            "user",
        ),
        (
            r#"{"type":"feed","feed":"f","packagePermissions":["view"],"user":"Admin"}"#.into(),
            "user",
        ),
        (r#"{"type":"personal"}"#.into(), "user"),
        (r#"{"type":"personal","user":" "}"#.into(), "user"),
        (
            r#"{"type":"personal","user":"Admin","expiration":"2020-01-01"}"#.into(),
            "expiration",
        ),
        (
            r#"{"type":"personal","user":"Admin","expiration":"tomorrow"}"#.into(),
            "expiration",
        ),
        (
            r#"{"type":"personal","user":"Admin","logging":"sometimes"}"#.into(),
            "logging",
        ),
        (
            r#"{"type":"personal","user":"Admin","key":""}"#.into(),
            "key",
        ),
        (
            r#"{"type":"personal","user":"Admin","key":"has space"}"#.into(),
            "key",
        ),
        (
            format!(r#"{{"type":"personal","user":"Admin","displayName":"{long}"}}"#),
            "displayName",
        ),
        (
            format!(r#"{{"type":"personal","user":"Admin","description":"{longer}"}}"#),
            "description",
        ),
    ];
    for (body, property) in cases {
        let r = create(&s, &body);
        assert_eq!(r.status(), 400, "{body}");
        assert_text_plain(&r);
        let message = r.text().unwrap();
        assert!(
            message.contains(property),
            "{body}: message {message:?} does not name {property}"
        );
    }
    assert_eq!(
        list(&s, &s.admin()),
        Vec::<Value>::new(),
        "no rejected key was stored"
    );
}

fn malformed_json_is_400_not_500(backend: Backend) {
    let s = TestServer::start(backend);
    for body in [
        "",
        "{",
        "not json",
        r#"{"type":"system",}"#,
        "[1,2]",
        r#""system""#,
        "null",
        r#"{"type":5}"#,
    ] {
        let r = create(&s, body);
        assert_eq!(r.status(), 400, "{body:?}");
        assert_text_plain(&r);
        assert!(
            !r.text().unwrap().is_empty(),
            "{body:?}: the parser's message is given"
        );
    }
    let r = create(&s, r#"{"type":"system","systemApis":"full-control"}"#);
    assert_eq!(r.status(), 400);
    assert!(
        r.text().unwrap().contains("systemApis"),
        "a type error names the property"
    );
}

fn create_returns_the_full_key_once_and_list_never_shows_it(backend: Backend) {
    let s = TestServer::start(backend);
    let r = create(
        &s,
        r#"{"type":"feed","feed":"public-npm","packagePermissions":["view","add"],"displayName":"CI","description":"build server","logging":"request"}"#,
    );
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let mut created: Value = r.json().unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(created["id"], 1000);
    let when = without_created(&mut created);
    let expected = json!({
        "id": 1000, "type": "feed", "key": key, "displayName": "CI", "description": "build server",
        "packagePermissions": ["view", "add"], "feed": "public-npm", "logging": "request",
    });
    assert_eq!(created, expected);

    let r = s.list_keys(&key);
    assert_eq!(r.status(), 403, "a feed key may not list");
    let listed_text = s.list_keys(&s.admin()).text().unwrap();
    assert!(
        !listed_text.contains(&key),
        "list shows the key text: {listed_text}"
    );
    let mut listed: Vec<Value> = serde_json::from_str(&listed_text).unwrap();
    assert_eq!(without_created(&mut listed[0]), when);
    let mut without_key = expected.clone();
    without_key.as_object_mut().unwrap().remove("key");
    assert_eq!(
        listed,
        vec![without_key],
        "list shows everything but the key"
    );
}

fn generated_keys_are_lk_prefixed_39_alphanumeric_characters(backend: Backend) {
    let s = TestServer::start(backend);
    let keys: Vec<String> = (0..5).map(|_| s.create_key(full_control()).1).collect();
    for key in &keys {
        assert_eq!(key.len(), 39, "{key}");
        let rest = key
            .strip_prefix("lk_")
            .unwrap_or_else(|| panic!("{key} lacks the lk_ prefix"));
        assert!(rest.bytes().all(|b| b.is_ascii_alphanumeric()), "{key}");
        assert_eq!(s.list_keys(key).status(), 200, "{key} works");
    }
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), keys.len(), "keys are random");
}

fn custom_keys_are_accepted_and_authenticate(backend: Backend) {
    let s = TestServer::start(backend);
    for custom in [
        "my-custom-key_123",
        "A.b~c!d$e-16-chars",
        "kkkkkkkkkkkkkkkk",
    ] {
        let mut info = full_control();
        info["key"] = json!(custom);
        let r = s.create_key_as(&s.admin(), &info);
        assert_eq!(r.status(), 200, "{custom}");
        assert_eq!(r.json::<Value>().unwrap()["key"], custom);
        assert_eq!(s.list_keys(custom).status(), 200, "{custom} authenticates");
    }
    assert_eq!(
        s.list_keys("my-custom-key_12").status(),
        403,
        "only the exact text works"
    );
}

fn custom_key_with_a_colon_is_400(backend: Backend) {
    let s = TestServer::start(backend);
    for custom in ["a:b", "Admin:whatever", ":"] {
        let r = s.create_key_as(
            &s.admin(),
            &json!({"type": "system", "systemApis": ["sca"], "key": custom}),
        );
        assert_eq!(r.status(), 400, "{custom}");
        assert!(r.text().unwrap().contains("key"));
    }
    assert_eq!(list(&s, &s.admin()).len(), 0);
}

fn duplicate_custom_key_is_400_without_naming_the_other_key(backend: Backend) {
    let s = TestServer::start(backend);
    let first = json!({"type": "system", "systemApis": ["sca"], "key": "shared-key-text-16ch", "displayName": "first-key-name"});
    let r = s.create_key_as(&s.admin(), &first);
    assert_eq!(r.status(), 200);
    let first_id = r.json::<Value>().unwrap()["id"].as_i64().unwrap();

    let second = json!({"type": "feed", "feed": "f", "packagePermissions": ["view"], "key": "shared-key-text-16ch"});
    let r = s.create_key_as(&s.admin(), &second);
    assert_eq!(r.status(), 400);
    assert_text_plain(&r);
    let message = r.text().unwrap();
    assert!(message.contains("key"), "{message}");
    for leak in [
        first_id.to_string(),
        "first-key-name".into(),
        "system".into(),
    ] {
        assert!(
            !message.contains(&leak),
            "the message reveals the other key ({leak}): {message}"
        );
    }
    // A generated key cannot be claimed as a custom one either.
    let (_, generated) = s.create_key(full_control());
    let mut claim = full_control();
    claim["key"] = json!(generated);
    assert_eq!(s.create_key_as(&s.admin(), &claim).status(), 400);
    assert_eq!(
        list(&s, &s.admin()).len(),
        2,
        "neither duplicate was stored"
    );
}

fn custom_keys_can_be_switched_off(backend: Backend) {
    let options = Options {
        args: vec!["--custom-keys".into(), "false".into()],
        ..Options::default()
    };
    let s = TestServer::start_with(backend, options);
    let mut info = full_control();
    info["key"] = json!("my-custom-key");
    let r = s.create_key_as(&s.admin(), &info);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("key"));
    assert_eq!(s.list_keys("my-custom-key").status(), 403);
    let (_, generated) = s.create_key(full_control());
    assert_eq!(
        s.list_keys(&generated).status(),
        200,
        "generated keys still work"
    );
}

fn a_personal_key_needs_an_existing_user(backend: Backend) {
    let s = TestServer::start(backend);
    let r = s.create_key_as(&s.admin(), &personal("nobody"));
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("user"));
    // Look-up is case-insensitive; the stored spelling is shown.
    let r = s.create_key_as(&s.admin(), &personal("ADMIN"));
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["user"], "Admin");
    let listed = list(&s, &s.admin());
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["user"], "Admin");
}

/// One key of every creatable type; alice must exist.
fn one_of_each() -> [Value; 4] {
    [
        full_control(),
        json!({"type": "system", "systemApis": ["feeds"]}),
        feed_key(),
        personal("alice"),
    ]
}

fn full_control_system_key_creates_every_type_and_lists_all(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let (_, full) = s.create_key(full_control());
    let (alices, _) = s.create_key(personal("alice"));
    for info in one_of_each() {
        assert_eq!(s.create_key_as(&full, &info).status(), 200, "{info}");
    }
    let listed = list(&s, &full);
    assert_eq!(listed.len(), 6);
    assert!(ids(&listed).contains(&i64::from(alices)));
}

fn limited_system_and_feed_keys_may_not_create_or_list(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let (_, limited) =
        s.create_key(json!({"type": "system", "systemApis": ["feeds", "sca", "sbom-upload"]}));
    let (_, feed) = s.create_key(json!({"type": "feed", "feedGroup": "all", "packagePermissions": ["view", "add", "promote", "delete"]}));
    for caller in [&limited, &feed] {
        for info in one_of_each() {
            let r = s.create_key_as(caller, &info);
            assert_eq!(r.status(), 403, "{info}");
            assert_text_plain(&r);
        }
        assert_eq!(s.list_keys(caller).status(), 403);
    }
    assert_eq!(list(&s, &s.admin()).len(), 2, "nothing was created");
}

fn administrators_create_and_list_all_by_pseudo_key_personal_key_or_login(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    s.add_user("carol", "carol-password", &["Administrators"]);
    let (_, admin_personal) = s.create_key(personal("Admin"));
    let (_, carol_personal) = s.create_key(personal("carol"));
    let mut expected = 2;
    for caller in [
        s.admin(),
        admin_personal,
        "carol:carol-password".into(),
        carol_personal,
    ] {
        for info in one_of_each() {
            assert_eq!(s.create_key_as(&caller, &info).status(), 200, "{info}");
            expected += 1;
        }
        assert_eq!(
            list(&s, &caller).len(),
            expected,
            "an administrator lists all keys"
        );
    }
    let url = s.url("/api/api-keys/create");
    for info in one_of_each() {
        let r = post_json(&url, &info)
            .basic_auth("carol", Some("carol-password"))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "login: {info}");
        expected += 1;
    }
    let r = client()
        .get(s.url("/api/api-keys/list"))
        .basic_auth("Admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.json::<Vec<Value>>().unwrap().len(), expected);
}

fn non_admin_users_create_and_list_only_their_own_personal_keys(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    s.add_user("bob", "bob-password", &[]);
    let (_, alice_personal) = s.create_key(personal("alice"));
    s.create_key(personal("bob"));
    s.create_key(full_control());
    s.create_key(personal("Admin"));
    let forbidden = [
        personal("bob"),
        personal("Admin"),
        full_control(),
        json!({"type": "system", "systemApis": ["sca"]}),
        feed_key(),
    ];
    for caller in ["alice:alice-password", alice_personal.as_str()] {
        for info in &forbidden {
            let r = s.create_key_as(caller, info);
            assert_eq!(r.status(), 403, "{info}");
        }
        assert_eq!(s.create_key_as(caller, &personal("alice")).status(), 200);
        assert_eq!(
            s.create_key_as(caller, &personal("ALICE")).status(),
            200,
            "the name is case-insensitive"
        );
    }
    let url = s.url("/api/api-keys/create");
    let login = |info: &Value| {
        post_json(&url, info)
            .basic_auth("alice", Some("alice-password"))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(login(&personal("bob")), 403);
    assert_eq!(login(&full_control()), 403);
    assert_eq!(login(&personal("alice")), 200);

    let all = list(&s, &s.admin());
    assert_eq!(all.len(), 4 + 5, "only alice's own keys were added");
    let alices: Vec<i64> = all
        .iter()
        .filter(|k| k["user"] == "alice")
        .map(|k| k["id"].as_i64().unwrap())
        .collect();
    assert_eq!(alices.len(), 6);
    for caller in ["alice:alice-password", alice_personal.as_str()] {
        assert_eq!(
            ids(&list(&s, caller)),
            alices,
            "alice lists exactly her personal keys"
        );
    }
    let r = client()
        .get(s.url("/api/api-keys/list"))
        .basic_auth("alice", Some("alice-password"))
        .send()
        .unwrap();
    assert_eq!(ids(&r.json::<Vec<Value>>().unwrap()), alices);
    let bobs = list(&s, "bob:bob-password");
    assert_eq!(bobs.len(), 1);
    assert_eq!(bobs[0]["user"], "bob");
}

fn no_credential_may_not_create_or_list(backend: Backend) {
    let s = TestServer::start(backend);
    let r = post_json(&s.url("/api/api-keys/create"), &full_control())
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(
        client()
            .get(s.url("/api/api-keys/list"))
            .send()
            .unwrap()
            .status(),
        403
    );
    assert_eq!(list(&s, &s.admin()).len(), 0);
}

fn list_is_ordered_by_id(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let names = [
        "zeta", "alpha", "mu", "beta", "omega", "gamma", "kappa", "delta",
    ];
    let mut created = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let mut info = one_of_each()[i % 4].clone();
        info["displayName"] = json!(name);
        created.push(i64::from(s.create_key(info).0));
    }
    assert_eq!(s.delete_key(created[3], &s.admin()).status(), 200);
    created.remove(3);
    assert_eq!(ids(&list(&s, &s.admin())), created);
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(created, sorted, "ids grow");
}

fn expired_keys_are_still_listed_with_their_expiration(backend: Backend) {
    let s = TestServer::start(backend);
    let (id, key, expiration) = create_expiring_key(&s);
    wait_until_past(expiration);
    assert_eq!(s.list_keys(&key).status(), 403, "the key has expired");
    let listed = list(&s, &s.admin());
    assert_eq!(ids(&listed), vec![i64::from(id)]);
    let shown = proget_api::parse_date(listed[0]["expiration"].as_str().unwrap()).unwrap();
    assert_eq!(shown, expiration);
}

fn enum_values_are_case_insensitive_on_input_and_camel_case_on_output(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let cases = [
        (
            json!({"type": "SYSTEM", "systemApis": ["Feeds", "SCA", "SBOM-Upload"], "logging": "BOTH"}),
            json!({"type": "system", "systemApis": ["feeds", "sca", "sbom-upload"], "logging": "both"}),
        ),
        (
            json!({"type": "System", "systemApis": ["Full-Control"], "logging": "Response"}),
            json!({"type": "system", "systemApis": ["full-control"], "logging": "response"}),
        ),
        (
            json!({"type": "Feed", "feedGroup": "g", "packagePermissions": ["VIEW", "Add", "proMote", "DELETE"], "logging": "Request"}),
            json!({"type": "feed", "feedGroup": "g", "packagePermissions": ["view", "add", "promote", "delete"], "logging": "request"}),
        ),
        (
            json!({"type": "PERSONAL", "user": "alice", "logging": "NONE"}),
            json!({"type": "personal", "user": "alice", "logging": "none"}),
        ),
        (
            json!({"type": "personal", "user": "alice"}),
            json!({"type": "personal", "user": "alice", "logging": "none"}),
        ),
    ];
    let mut expected_list = Vec::new();
    for (input, output) in cases {
        let r = s.create_key_as(&s.admin(), &input);
        assert_eq!(r.status(), 200, "{input}");
        let mut created: Value = r.json().unwrap();
        without_created(&mut created);
        let fields = created.as_object_mut().unwrap();
        let id = fields.remove("id").unwrap();
        fields.remove("key").unwrap();
        assert_eq!(created, output, "{input}");
        let mut listed = output.clone();
        listed["id"] = id;
        expected_list.push(listed);
    }
    let mut listed = list(&s, &s.admin());
    listed.iter_mut().for_each(|k| {
        without_created(k);
    });
    assert_eq!(listed, expected_list);
}

/// Removes a key's `created` (the server's clock) and returns it, checked
/// to be an RFC 3339 date-time.
fn without_created(key: &mut Value) -> String {
    let created = key
        .as_object_mut()
        .unwrap()
        .remove("created")
        .expect("created is set");
    let text = created.as_str().unwrap().to_owned();
    assert!(proget_api::parse_date(&text).is_ok(), "{text}");
    text
}

fn unknown_properties_are_ignored_and_nulls_accepted_and_omitted(backend: Backend) {
    let s = TestServer::start(backend);
    let r = create(
        &s,
        r#"{"type":"system","systemApis":["full-control"],"newField":{"nested":[1,2]},"anotherOne":3,
            "description":null,"user":null,"feed":null,"expiration":null,"logging":null,"key":null}"#,
    );
    assert_eq!(r.status(), 200);
    let created: Value = r.json().unwrap();
    let mut names: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["created", "id", "key", "logging", "systemApis", "type"],
        "nothing null or unknown is written"
    );
    assert!(
        created["key"].as_str().unwrap().starts_with("lk_"),
        "a null key means a generated one"
    );
}

fn expiration_accepts_date_slashed_date_and_rfc3339(backend: Backend) {
    let s = TestServer::start(backend);
    let midnight = time::macros::datetime!(2030-08-01 0:00 UTC);
    let cases = [
        ("2030-08-01", midnight),
        ("2030/08/01", midnight),
        ("2030-08-01T00:00:00Z", midnight),
        (
            "2030-08-01T10:30:00+02:00",
            time::macros::datetime!(2030-08-01 8:30 UTC),
        ),
    ];
    for (input, expected) in cases {
        let mut info = full_control();
        info["expiration"] = json!(input);
        let r = s.create_key_as(&s.admin(), &info);
        assert_eq!(r.status(), 200, "{input}");
        let created: Value = r.json().unwrap();
        let shown = proget_api::parse_date(created["expiration"].as_str().unwrap()).unwrap();
        assert_eq!(shown, expected, "{input}");
        assert_eq!(
            s.list_keys(created["key"].as_str().unwrap()).status(),
            200,
            "{input}: not expired"
        );
    }
    let listed = list(&s, &s.admin());
    let shown: Vec<_> = listed
        .iter()
        .map(|k| proget_api::parse_date(k["expiration"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(shown, cases.map(|(_, e)| e));
}

fn id_in_a_create_body_is_ignored(backend: Backend) {
    let s = TestServer::start(backend);
    let (first, _) = s.create_key(full_control());
    let mut info = full_control();
    info["id"] = json!(first);
    let r = s.create_key_as(&s.admin(), &info);
    assert_eq!(r.status(), 200);
    let second = r.json::<Value>().unwrap()["id"].as_i64().unwrap();
    assert_ne!(second, i64::from(first));
    info["id"] = json!(5);
    let third = s.create_key_as(&s.admin(), &info).json::<Value>().unwrap()["id"]
        .as_i64()
        .unwrap();
    assert!(third > second, "ids are always server-assigned");
    assert_eq!(
        ids(&list(&s, &s.admin())),
        vec![i64::from(first), second, third]
    );
}
