//! Strict input: who may choose a key's text and how long it must be, the
//! personal-key cap, one credential per request, JSON read whole, expirations
//! that can be stored, user names that cannot impersonate, password length,
//! the last administrator, and hyper's own errors in plain text.

use std::time::Duration;

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{
    client, full_control, latchkey_bin, personal, post_json, raw, Backend, Options, TestServer,
};

both_backends!(
    a_user_without_groups_cannot_probe_for_a_custom_key,
    custom_key_texts_need_the_minimum_length,
    a_custom_key_collision_counts_as_a_failed_authentication,
    non_administrators_hold_at_most_the_personal_key_cap,
    duplicate_credentials_are_400_and_count_as_failures,
    json_with_trailing_data_is_400,
    wrong_json_types_are_400_naming_the_property,
    repeated_user_on_users_delete_is_400,
    expirations_beyond_9999_are_400_and_sub_seconds_are_dropped_first,
    user_names_with_invisible_characters_are_400,
    user_names_equal_under_case_folding_or_nfkc_are_one_name,
    look_up_keys_of_an_older_version_are_renewed_at_start,
    passwords_need_the_minimum_length,
    the_last_administrator_cannot_be_deleted_or_demoted,
);

fn with_args(backend: Backend, args: &[&str]) -> TestServer {
    TestServer::start_with(
        backend,
        Options {
            args: args.iter().map(|a| a.to_string()).collect(),
            ..Options::default()
        },
    )
}

fn create(s: &TestServer, credential: &str, body: &str) -> Response {
    client()
        .post(s.url("/api/api-keys/create"))
        .header("content-type", "application/json")
        .header("X-ApiKey", credential)
        .body(body.to_owned())
        .send()
        .unwrap()
}

fn key_count(s: &TestServer) -> usize {
    s.list_keys(&s.admin()).json::<Vec<Value>>().unwrap().len()
}

fn add_user(s: &TestServer, body: &Value) -> Response {
    post_json(&s.url("/api/security/users/add"), body)
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap()
}

fn edit_user(s: &TestServer, credential: &str, body: &Value) -> Response {
    post_json(&s.url("/api/security/users/edit"), body)
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
}

fn delete_user(s: &TestServer, credential: &str, query: &str) -> Response {
    client()
        .delete(s.url(&format!("/api/security/users/delete?{query}")))
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
}

fn a_user_without_groups_cannot_probe_for_a_custom_key(backend: Backend) {
    let s = TestServer::start(backend);
    let mut deploy = full_control();
    deploy["key"] = json!("deploy-2024-production");
    s.create_key(deploy);
    s.add_user("mallory", "mallory-password", &[]);
    let mallory = "mallory:mallory-password";
    // The attack of the issue: a personal key with a guessed text answers
    // "already in use" when the guess is right. Now every guess is refused alike.
    let mut bodies = Vec::new();
    for guess in [
        "deploy-2023",
        "deploy-2024",
        "deploy-2024-production",
        "a-fresh-unused-text-1",
    ] {
        let r = s.create_key_as(
            mallory,
            &json!({"type": "personal", "user": "mallory", "key": guess}),
        );
        assert_eq!(r.status(), 403, "{guess}");
        bodies.push(r.text().unwrap());
    }
    assert!(bodies.iter().all(|b| b == &bodies[0]), "{bodies:?}");
    assert!(!bodies[0].contains("in use"));
    // Generated keys still work for the user, and they gained nothing.
    assert_eq!(s.create_key_as(mallory, &personal("mallory")).status(), 200);
    let r = post_json(
        &s.url("/api/security/users/edit"),
        &json!({"name": "mallory", "groups": ["Administrators"]}),
    )
    .header("X-ApiKey", mallory)
    .send()
    .unwrap();
    assert_eq!(r.status(), 403);
    // A full-control system key may choose a text (migration from another system).
    let (_, full) = s.create_key(full_control());
    let r = create(
        &s,
        &full,
        r#"{"type":"feed","feed":"f","packagePermissions":["view"],"key":"migrated-from-proget-01"}"#,
    );
    assert_eq!(r.status(), 200);
}

fn custom_key_texts_need_the_minimum_length(backend: Backend) {
    let s = TestServer::start(backend);
    let body = |k: &str| json!({"type": "system", "systemApis": ["sca"], "key": k}).to_string();
    let r = create(&s, &s.admin(), &body("fifteen-chars-x"));
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .unwrap()
        .contains("key must be at least 16 characters"));
    assert_eq!(
        create(&s, &s.admin(), &body("sixteen-chars-xx")).status(),
        200
    );

    let s = with_args(backend, &["--custom-key-min-length", "8"]);
    assert_eq!(create(&s, &s.admin(), &body("eight-ch")).status(), 200);
    assert_eq!(create(&s, &s.admin(), &body("seven-c")).status(), 400);

    // Below 8 the server refuses to start, from the flag or the environment.
    for (arg, env) in [(Some("7"), None), (None, Some("0"))] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = std::process::Command::new(latchkey_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"));
        if let Some(a) = arg {
            cmd.args(["--custom-key-min-length", a]);
        }
        if let Some(e) = env {
            cmd.env("LATCHKEY_CUSTOM_KEY_MIN_LENGTH", e);
        }
        let out = cmd.output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--custom-key-min-length") && err.contains("8.."),
            "{err}"
        );
    }
}

fn a_custom_key_collision_counts_as_a_failed_authentication(backend: Backend) {
    let s = with_args(backend, &["--auth-failure-limit", "3"]);
    let (_, full) = s.create_key(full_control());
    let body =
        json!({"type": "system", "systemApis": ["sca"], "key": "a-taken-key-text-01"}).to_string();
    assert_eq!(create(&s, &full, &body).status(), 200);
    for _ in 0..3 {
        let r = create(&s, &full, &body);
        assert_eq!(r.status(), 400);
        assert!(r.text().unwrap().contains("already in use"));
    }
    assert_eq!(s.list_keys(&full).status(), 429, "the address is blocked");
}

fn non_administrators_hold_at_most_the_personal_key_cap(backend: Backend) {
    let s = with_args(backend, &["--max-personal-keys", "2"]);
    s.add_user("bob", "bob-password", &[]);
    let bob = "bob:bob-password";
    for _ in 0..2 {
        assert_eq!(s.create_key_as(bob, &personal("bob")).status(), 200);
    }
    let r = s.create_key_as(bob, &personal("bob"));
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("personal keys"));
    assert_eq!(key_count(&s), 2);
    // Administrators are not capped, for themselves or for others.
    assert_eq!(s.create_key_as(&s.admin(), &personal("bob")).status(), 200);
    for _ in 0..3 {
        assert_eq!(
            s.create_key_as(&s.admin(), &personal("Admin")).status(),
            200
        );
    }
}

fn duplicate_credentials_are_400_and_count_as_failures(backend: Backend) {
    let s = with_args(backend, &["--auth-failure-limit", "30"]);
    let (_, good) = s.create_key(full_control());
    let list = s.url("/api/api-keys/list");
    let create = s.url("/api/api-keys/create");
    let basic = |text: &str| {
        use base64::Engine;
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    };
    let requests = [
        client()
            .get(&list)
            .header("X-ApiKey", &good)
            .header("X-ApiKey", &good),
        client()
            .get(&list)
            .header("X-ApiKey", &good)
            .header("X-ApiKey", "lk_wrong"),
        client()
            .get(&list)
            .header("X-ApiKey", "lk_wrong")
            .header("X-ApiKey", &good),
        client()
            .get(format!("{list}?key={good}"))
            .header("X-ApiKey", &good),
        client().get(format!("{list}?key=lk_wrong&key={good}")),
        client().get(format!("{list}?key={good}&key=lk_wrong")),
        client()
            .get(&list)
            .header("X-ApiKey", &good)
            .header("authorization", basic(&s.admin())),
        client()
            .get(&list)
            .header("authorization", basic(&format!("api:{good}")))
            .header("authorization", basic(&s.admin())),
        client()
            .post(&create)
            .header("content-type", "application/x-www-form-urlencoded")
            .header("X-ApiKey", &good)
            .body(format!("key={good}")),
        client()
            .post(&create)
            .header("content-type", "application/json")
            .header("X-ApiKey", &good)
            .body(json!({"API_Key": good}).to_string()),
        client()
            .post(&create)
            .header("content-type", "application/json")
            .body(format!(r#"{{"API_Key":"{good}","API_Key":"{good}"}}"#)),
        client()
            .post(&create)
            .header("content-type", "application/json")
            .body(format!(r#"{{"API_Key":"lk_wrong","API_Key":"{good}"}}"#)),
    ];
    let n = requests.len();
    for (i, request) in requests.into_iter().enumerate() {
        let r = request.send().unwrap();
        assert_eq!(r.status(), 400, "request {i}");
        assert!(
            r.text().unwrap().contains("more than one credential"),
            "request {i}"
        );
    }
    // Empty values count as absent: this is one credential.
    let r = client()
        .get(format!("{list}?key="))
        .header("X-ApiKey", "")
        .header("authorization", basic(&s.admin()))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Each refusal counted: the limit of 30 is reached after 30 - n more.
    for _ in n..30 {
        let _ = s.list_keys("lk_wrong");
    }
    assert_eq!(s.list_keys(&good).status(), 429);
}

fn json_with_trailing_data_is_400(backend: Backend) {
    let s = TestServer::start(backend);
    for body in [
        r#"{"type":"system","systemApis":["sca"]} xyz"#,
        r#"{"type":"system","systemApis":["sca"]}{"type":"system","systemApis":["sca"]}"#,
        r#"{"type":"system","systemApis":["sca"]} {}"#,
    ] {
        let r = create(&s, &s.admin(), body);
        assert_eq!(r.status(), 400, "{body}");
        assert!(r.text().unwrap().contains("invalid JSON"), "{body}");
    }
    // The credential reader reads JSON the same way: a key in a body with trailing data is no key.
    let (_, good) = s.create_key(full_control());
    let r = client()
        .post(s.url("/api/api-keys/create"))
        .header("content-type", "application/json")
        .body(format!(
            r#"{{"API_Key":"{good}","type":"system","systemApis":["sca"]}} xyz"#
        ))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(key_count(&s), 1);
}

fn wrong_json_types_are_400_naming_the_property(backend: Backend) {
    let s = TestServer::start(backend);
    for (body, property) in [
        (
            r#"{"type":"system","systemApis":["sca"],"expiration":12}"#,
            "expiration",
        ),
        (r#"{"type":"system","systemApis":"sca"}"#, "systemApis"),
        (
            r#"{"type":"system","systemApis":["sca"],"displayName":7}"#,
            "displayName",
        ),
        (r#"{"type":5,"systemApis":["sca"]}"#, "type"),
    ] {
        let r = create(&s, &s.admin(), body);
        assert_eq!(r.status(), 400, "{body}");
        let text = r.text().unwrap();
        assert!(text.starts_with(property), "{body}: {text}");
    }
    let r = client()
        .post(s.url("/api/api-keys/create"))
        .header("content-type", "application/json")
        .body(r#"{"API_Key":12,"type":"system","systemApis":["sca"]}"#)
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("API_Key"));
    let r = edit_user(
        &s,
        &s.admin(),
        &json!({"name": "Admin", "groups": "Administrators"}),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().starts_with("groups"));
}

fn repeated_user_on_users_delete_is_400(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    s.add_user("bob", "bob-password", &[]);
    let r = delete_user(&s, &s.admin(), "user=alice&user=bob");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("user"));
    let r = delete_user(&s, &s.admin(), "user=alice&user=alice");
    assert_eq!(r.status(), 400);
    assert_eq!(
        s.list_keys("alice:alice-password").status(),
        200,
        "alice is still there"
    );
    assert_eq!(
        s.list_keys("bob:bob-password").status(),
        200,
        "bob is still there"
    );
    assert_eq!(delete_user(&s, &s.admin(), "user=alice").status(), 200);
}

fn expirations_beyond_9999_are_400_and_sub_seconds_are_dropped_first(backend: Backend) {
    let s = TestServer::start(backend);
    for late in ["9999-12-31T23:59:59-23:59", "9999-12-31T23:59:59-00:01"] {
        let body = json!({"type": "system", "systemApis": ["sca"], "expiration": late}).to_string();
        let r = create(&s, &s.admin(), &body);
        assert_eq!(r.status(), 400, "{late}");
        assert!(r.text().unwrap().starts_with("expiration"), "{late}");
    }
    let body =
        json!({"type": "system", "systemApis": ["sca"], "expiration": "9999-12-31T23:59:59+01:00"})
            .to_string();
    let r = create(&s, &s.admin(), &body);
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().unwrap()["expiration"],
        "9999-12-31T22:59:59Z"
    );
    // The current second plus 0.999: stored as the current second, so already
    // past. Sent early in a second, so that it is still in the future unrounded.
    let mut refused = 0;
    for _ in 0..5 {
        let now = loop {
            let now = time::OffsetDateTime::now_utc();
            if now.millisecond() < 300 {
                break now;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let at = now.replace_millisecond(999).unwrap();
        let text = at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let body = json!({"type": "system", "systemApis": ["sca"], "expiration": text}).to_string();
        let r = create(&s, &s.admin(), &body);
        if r.status() == 400 {
            assert!(r.text().unwrap().contains("in the future"));
            refused += 1;
        }
    }
    assert_eq!(
        refused, 5,
        "a key that would be stored already expired is refused"
    );
}

fn user_names_with_invisible_characters_are_400(backend: Backend) {
    let s = TestServer::start(backend);
    for name in [
        "Ad\u{200B}min",
        "\u{202E}nimdA",
        "al\u{2066}ice\u{2069}",
        "bob\u{FEFF}",
        "car\u{00A0}ol",
        "dave\u{200D}",
        "e\u{3164}ve",
        "fr\u{FE0F}ank",
    ] {
        let r = add_user(&s, &json!({"name": name, "password": "long-enough-pw"}));
        assert_eq!(r.status(), 400, "{name:?}");
        assert!(r.text().unwrap().contains("invisible"), "{name:?}");
    }
    // Letters of any script, and the ASCII space, are fine.
    for name in ["José Núñez", "Zoë", "山田太郎", "Ωmega"] {
        let r = add_user(&s, &json!({"name": name, "password": "long-enough-pw"}));
        assert_eq!(r.status(), 200, "{name:?}");
    }
}

fn user_names_equal_under_case_folding_or_nfkc_are_one_name(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("fiona", "fiona-password", &[]);
    for name in [
        "\u{FF21}dmin",
        "ADMIN",
        "ａｄｍｉｎ",
        "\u{FB01}ona",
        "FIONA",
        "ﬁona",
    ] {
        let r = add_user(&s, &json!({"name": name, "password": "long-enough-pw"}));
        assert_eq!(r.status(), 400, "{name:?}");
        assert!(r.text().unwrap().contains("already exists"), "{name:?}");
    }
    // The same user is reached under any of its equivalent spellings.
    assert_eq!(s.list_keys("\u{FB01}ona:fiona-password").status(), 200);
}

fn look_up_keys_of_an_older_version_are_renewed_at_start(backend: Backend) {
    let mut s = TestServer::start(backend);
    s.add_user("\u{FF26}red", "fred-password", &[]);
    // An older version stored only the lower-cased name as the look-up key.
    s.execute_sql("UPDATE users SET name_key = 'ｆred' WHERE name = 'Ｆred'");
    s.restart();
    assert_eq!(s.list_keys("fred:fred-password").status(), 200);
    let r = add_user(&s, &json!({"name": "FRED", "password": "long-enough-pw"}));
    assert_eq!(r.status(), 400);
}

fn passwords_need_the_minimum_length(backend: Backend) {
    let s = TestServer::start(backend);
    let r = add_user(&s, &json!({"name": "alice", "password": "seven-c"}));
    assert_eq!(r.status(), 400);
    assert!(r
        .text()
        .unwrap()
        .contains("password must be at least 8 characters"));
    assert_eq!(
        add_user(&s, &json!({"name": "alice", "password": "eight-ch"})).status(),
        200
    );
    let r = edit_user(
        &s,
        &s.admin(),
        &json!({"name": "alice", "password": "short"}),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("password"));
    assert_eq!(s.list_keys("alice:eight-ch").status(), 200, "unchanged");

    let s = with_args(backend, &["--min-password-length", "12"]);
    let r = add_user(&s, &json!({"name": "alice", "password": "eleven-char"}));
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("12"));
    assert_eq!(
        add_user(&s, &json!({"name": "alice", "password": "twelve-chars"})).status(),
        200
    );
}

fn the_last_administrator_cannot_be_deleted_or_demoted(backend: Backend) {
    let s = TestServer::start(backend);
    let admin = s.admin();
    let r = delete_user(&s, &admin, "user=Admin");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("no administrator"));
    let r = edit_user(&s, &admin, &json!({"name": "admin", "groups": ["Readers"]}));
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("no administrator"));
    // Other edits of the last administrator are fine.
    let r = edit_user(
        &s,
        &admin,
        &json!({"name": "Admin", "displayName": "Boss", "groups": ["administrators", "Readers"]}),
    );
    assert_eq!(r.status(), 200);
    // With a second administrator, the first may go.
    s.add_user("root", "root-password", &["Administrators"]);
    assert_eq!(
        edit_user(&s, &admin, &json!({"name": "Admin", "groups": []})).status(),
        200
    );
    let root = "root:root-password";
    let r = delete_user(&s, root, "user=root");
    assert_eq!(r.status(), 400, "root is now the last one");
    assert_eq!(delete_user(&s, root, "user=Admin").status(), 200);
    assert_eq!(s.list_keys(root).status(), 200);
}

#[test]
fn errors_from_the_http_layer_are_plain_text_with_one_line() {
    let s = TestServer::start(Backend::Sqlite);
    let big = "a".repeat(70 * 1024);
    let cases = [
        ("bad Content-Length", "POST /api/api-keys/list HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_owned()),
        ("two Content-Lengths", "POST /api/api-keys/list HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_owned()),
        ("bad Transfer-Encoding", "POST /api/api-keys/list HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: bogus\r\n\r\n".to_owned()),
        ("garbage request line", "GARBAGE\r\n\r\n".to_owned()),
        ("head too large", format!("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: {big}\r\n\r\n")),
    ];
    for (what, request) in cases {
        let answer = raw(&s, request.as_bytes());
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: {answer:?}"));
        let status: u16 = head[9..12].parse().unwrap();
        assert!((400..500).contains(&status), "{what}: {head}");
        let head = head.to_ascii_lowercase();
        assert!(
            head.contains("\r\ncontent-type: text/plain; charset=utf-8\r\n"),
            "{what}: {head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{what}: {head}"
        );
        assert_eq!(body.trim_end().lines().count(), 1, "{what}: {body:?}");
        assert!(body.len() > 5, "{what}: {body:?}");
    }
    assert_eq!(client().get(s.url("/health")).send().unwrap().status(), 200);
}
