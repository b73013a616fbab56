//! The verification API for services (`POST /api/api-keys/verify`) and a
//! key's own description (`GET /api/api-keys/self`), `guarding.md` section 4.

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{
    client, client_from, feed_key, full_control, personal, post_json, Backend, Options, TestServer,
    ADMIN_PASSWORD,
};

both_backends!(
    a_valid_key_is_described_without_its_text,
    requirements_are_checked_with_the_one_policy,
    unknown_deleted_and_wrong_are_not_found_and_not_told_apart,
    an_expired_key_is_expired_here_and_nowhere_else,
    malformed_bodies_are_400,
    failed_verifications_count_for_the_limiter,
    self_describes_the_calling_key_of_every_type,
    self_is_403_for_logins_pseudo_keys_and_no_credential,
);

const VERIFY: &str = "/api/api-keys/verify";

fn verify(s: &TestServer, body: Value) -> Value {
    let r = post_json(&s.url(VERIFY), &body).send().unwrap();
    assert_eq!(r.status(), 200, "{body}");
    r.json().unwrap()
}

fn code(s: &TestServer, body: Value) -> String {
    let v = verify(s, body);
    let code = v["code"].as_str().unwrap().to_owned();
    assert_eq!(v["valid"], json!(code == "VALID"), "{v}");
    code
}

fn a_valid_key_is_described_without_its_text(backend: Backend) {
    let s = TestServer::start(backend);
    let (id, key) = s.create_key(json!({
        "type": "feed", "feed": "public-npm", "packagePermissions": ["view"],
        "displayName": "CI", "expiration": "2099-01-02T03:04:05Z"
    }));
    let v = verify(&s, json!({"key": key}));
    assert_eq!(v["valid"], json!(true));
    assert_eq!(v["code"], json!("VALID"));
    assert_eq!(v["id"], json!(id));
    assert_eq!(v["type"], json!("feed"));
    assert_eq!(v["displayName"], json!("CI"));
    assert!(
        v["expiration"].as_str().unwrap().starts_with("2099-01-02"),
        "{v}"
    );
    assert!(v.get("key").is_none() && v.get("user").is_none(), "{v}");
    assert!(!v.to_string().contains(&key));

    let (pid, pkey) = s.create_key(personal("Admin"));
    let v = verify(&s, json!({"key": pkey}));
    assert_eq!(
        (v["id"].clone(), v["type"].clone(), v["user"].clone()),
        (json!(pid), json!("personal"), json!("Admin"))
    );

    // A pseudo-key is verified as one: a user, no key.
    let v = verify(&s, json!({"key": s.admin(), "systemApi": "sca"}));
    assert_eq!(v["code"], json!("VALID"));
    assert_eq!(v["user"], json!("Admin"));
    assert!(v.get("id").is_none() && v.get("type").is_none(), "{v}");
}

fn requirements_are_checked_with_the_one_policy(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, on_feed) = s.create_key(feed_key()); // public-npm: view, add
    let (_, on_group) = s.create_key(
        json!({"type": "feed", "feedGroup": "public", "packagePermissions": ["promote"]}),
    );
    let (_, sca) = s.create_key(json!({"type": "system", "systemApis": ["sca"]}));
    let (_, feeds) = s.create_key(json!({"type": "system", "systemApis": ["feeds"]}));
    let (_, full) = s.create_key(full_control());
    s.add_user("jsmith", "jsmith-password", &[]);
    let jsmith = "jsmith:jsmith-password";
    #[rustfmt::skip]
    let table: Vec<(&str, Value, &str)> = vec![
        (on_feed.as_str(), json!({}), "VALID"),
        (on_feed.as_str(), json!({"feed": "public-npm"}), "VALID"),
        (on_feed.as_str(), json!({"feed": "Public-NPM", "permission": "add"}), "VALID"),
        (on_feed.as_str(), json!({"feed": "public-npm", "permission": "delete"}), "FORBIDDEN"),
        (on_feed.as_str(), json!({"feed": "other"}), "FORBIDDEN"),
        (on_feed.as_str(), json!({"systemApi": "feeds"}), "FORBIDDEN"),
        (on_group.as_str(), json!({"feedGroup": "public", "permission": "promote"}), "VALID"),
        (on_group.as_str(), json!({"feed": "x", "feedGroup": "public", "permission": "promote"}), "VALID"),
        (on_group.as_str(), json!({"feedGroup": "public"}), "FORBIDDEN"),
        (sca.as_str(), json!({"systemApi": "sca"}), "VALID"),
        (sca.as_str(), json!({"systemApi": "sbom-upload"}), "FORBIDDEN"),
        (sca.as_str(), json!({"feed": "x"}), "FORBIDDEN"),
        (feeds.as_str(), json!({"feed": "x", "permission": "delete"}), "VALID"),
        (feeds.as_str(), json!({"systemApi": "feeds"}), "VALID"),
        (full.as_str(), json!({"feedGroup": "g", "permission": "promote"}), "VALID"),
        (full.as_str(), json!({"systemApi": "sbom-upload"}), "VALID"),
        (jsmith, json!({}), "VALID"),
        (jsmith, json!({"feed": "x"}), "FORBIDDEN"),
        (jsmith, json!({"systemApi": "sca"}), "FORBIDDEN"),
    ];
    for (i, (key, mut body, expected)) in table.into_iter().enumerate() {
        body["key"] = json!(key);
        assert_eq!(code(&s, body), expected, "row {i}");
    }
}

fn unknown_deleted_and_wrong_are_not_found_and_not_told_apart(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("jsmith", "jsmith-password", &[]);
    let (id, gone) = s.create_key(full_control());
    assert_eq!(s.delete_key(id, &s.admin()).status(), 200);
    let (_, theirs) = s.create_key(personal("jsmith"));
    let r = client()
        .delete(s.url("/api/security/users/delete?user=jsmith"))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut answers = Vec::new();
    for key in [
        "lk_no_such_key",
        "no-such-custom-key",
        gone.as_str(),
        theirs.as_str(),
        "jsmith:jsmith-password",
        "Admin:wrong-password",
        "nobody:whatever",
    ] {
        // Asked for a feed the key would not open either: still NOT_FOUND, not FORBIDDEN.
        let v = verify(&s, json!({"key": key, "feed": "x", "permission": "delete"}));
        assert_eq!(v["code"], json!("NOT_FOUND"), "{key}");
        answers.push(v);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    assert_eq!(answers[0], json!({"valid": false, "code": "NOT_FOUND"}));
}

fn an_expired_key_is_expired_here_and_nowhere_else(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, key, expiration) = crate::auth::create_expiring_key(&s);
    assert_eq!(code(&s, json!({"key": key})), "VALID");
    crate::auth::wait_until_past(expiration);
    assert_eq!(
        verify(&s, json!({"key": key})),
        json!({"valid": false, "code": "EXPIRED"})
    );
    // Other endpoints keep their answers: the same 403 as an unknown key.
    let expired = s.list_keys(&key);
    let unknown = s.list_keys("lk_no_such_key");
    assert_eq!(expired.status(), 403);
    assert_eq!(expired.text().unwrap(), unknown.text().unwrap());
}

fn malformed_bodies_are_400(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, key) = s.create_key(full_control());
    let bad = |body: &str, named: &str| {
        let r = client()
            .post(s.url(VERIFY))
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let text = r.text().unwrap();
        assert!(text.contains(named), "{body}: {text}");
        assert!(!text.contains(&key), "{text}");
    };
    bad("", "invalid JSON");
    bad("{", "invalid JSON");
    bad("[]", "invalid JSON");
    bad("{}", "key");
    bad(r#"{"key": 5}"#, "key");
    bad(r#"{"key": ""}"#, "key");
    bad(&format!(r#"{{"key": "{key}"}} trailing"#), "invalid JSON");
    bad(&format!(r#"{{"key": "{key}", "feed": ""}}"#), "feed");
    bad(
        &format!(r#"{{"key": "{key}", "feedGroup": ""}}"#),
        "feedGroup",
    );
    bad(
        &format!(r#"{{"key": "{key}", "permission": "write"}}"#),
        "permission",
    );
    bad(
        &format!(r#"{{"key": "{key}", "permission": "view"}}"#),
        "feed",
    );
    bad(
        &format!(r#"{{"key": "{key}", "systemApi": "everything"}}"#),
        "systemApi",
    );
    bad(
        &format!(r#"{{"key": "{key}", "systemApi": "full-control"}}"#),
        "systemApi",
    );
    bad(
        &format!(r#"{{"key": "{key}", "systemApi": "sca", "feed": "x"}}"#),
        "systemApi",
    );
}

fn failed_verifications_count_for_the_limiter(backend: Backend) {
    let args = ["--auth-failure-limit", "3", "--auth-block-seconds", "60"];
    let s = TestServer::start_with(
        backend,
        Options {
            args: args.map(String::from).to_vec(),
            ..Default::default()
        },
    );
    let (_, key) = s.create_key(feed_key());
    let attacker = client_from(31);
    let other = client_from(32);
    let send = |c: &reqwest::blocking::Client, body: Value| -> Response {
        c.post(s.url(VERIFY))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .unwrap()
    };
    // Malformed bodies and FORBIDDEN answers about a valid key do not count.
    for _ in 0..4 {
        assert_eq!(send(&attacker, json!({"nokey": 1})).status(), 400);
        let r = send(&attacker, json!({"key": key, "feed": "other"}));
        assert_eq!(r.json::<Value>().unwrap()["code"], json!("FORBIDDEN"));
    }
    for guess in ["lk_guess_1", "guess-2", "Admin:guess-3"] {
        let r = send(&attacker, json!({"key": guess}));
        assert_eq!(r.json::<Value>().unwrap()["code"], json!("NOT_FOUND"));
    }
    let r = send(&attacker, json!({"key": key}));
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait));
    let r = send(&other, json!({"key": key}));
    assert_eq!(
        r.json::<Value>().unwrap()["code"],
        json!("VALID"),
        "others are unaffected"
    );
}

fn own_key(s: &TestServer, credential: &str) -> Response {
    client()
        .get(s.url("/api/api-keys/self"))
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
}

fn self_describes_the_calling_key_of_every_type(backend: Backend) {
    let s = TestServer::start(backend);
    for info in [
        feed_key(),
        json!({"type": "feed", "feedGroup": "g", "packagePermissions": ["promote"], "displayName": "group key"}),
        json!({"type": "system", "systemApis": ["sca"]}),
        full_control(),
        personal("Admin"),
    ] {
        let (id, key) = s.create_key(info.clone());
        let r = own_key(&s, &key);
        assert_eq!(r.status(), 200, "{info}");
        let v: Value = r.json().unwrap();
        assert_eq!(v["id"], json!(id));
        assert_eq!(v["type"], info["type"]);
        assert!(v.get("key").is_none(), "never the key text: {v}");
        for (k, expected) in info.as_object().unwrap() {
            assert_eq!(&v[k], expected, "{k} of {info}");
        }
        // The same description as the list's.
        let listed: Vec<Value> = s.list_keys(&s.admin()).json().unwrap();
        let mine = listed.iter().find(|k| k["id"] == json!(id)).unwrap();
        assert_eq!(&v, mine);
    }
    // Through another channel too.
    let (id, key) = s.create_key(feed_key());
    let r = client()
        .get(s.url(&format!("/api/api-keys/self?key={key}")))
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap()["id"], json!(id));
}

fn self_is_403_for_logins_pseudo_keys_and_no_credential(backend: Backend) {
    let s = TestServer::start(backend);
    assert_eq!(own_key(&s, &s.admin()).status(), 403, "pseudo-key");
    let r = client()
        .get(s.url("/api/api-keys/self"))
        .basic_auth("Admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.status(), 403, "login");
    let body = r.text().unwrap();
    assert!(body.contains("API key"), "{body}");
    let r = client().get(s.url("/api/api-keys/self")).send().unwrap();
    assert_eq!(r.status(), 403, "no credential");
    assert_eq!(own_key(&s, "lk_no_such_key").status(), 403);
}
