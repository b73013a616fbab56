//! Authentication: the six credential channels, one credential per request, pseudo-keys,
//! expiry, 403 bodies that reveal nothing, and logins that stay coherent
//! with password changes and deleted users.

use std::time::Duration;

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{
    client, feed_key, full_control, personal, post_json, Backend, Options, TestServer,
    ADMIN_PASSWORD,
};

both_backends!(
    each_channel_alone_authenticates,
    body_channels_count_only_with_their_content_type,
    a_wrong_credential_is_not_rescued_by_a_later_channel,
    two_credentials_are_refused_even_when_both_are_valid,
    user_password_pseudo_keys_work_through_every_key_channel,
    disabled_pseudo_keys_are_403_while_keys_and_logins_still_work,
    an_expired_key_is_refused_with_the_same_403_as_an_unknown_key,
    the_403_body_is_identical_for_unknown_key_wrong_password_and_unknown_user,
    a_password_change_takes_effect_at_once,
    deleting_a_user_refuses_their_pseudo_key_and_personal_keys_at_once,
);

/// Where a request carries its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Channel {
    Header,
    Query,
    Form,
    Json,
    /// Basic `api:KEY`.
    BasicApi,
    /// Basic `user:password`.
    BasicLogin,
}

use Channel::*;

/// `POST /api/api-keys/delete?id=ID` carrying credentials in the given channels.
fn delete_with(s: &TestServer, id: i32, credentials: &[(Channel, &str)]) -> Response {
    let mut url = s.url(&format!("/api/api-keys/delete?id={id}"));
    let mut request_headers = reqwest::header::HeaderMap::new();
    let mut body = None;
    for &(channel, credential) in credentials {
        match channel {
            Header => {
                request_headers.insert("X-ApiKey", credential.parse().unwrap());
            }
            Query => url.push_str(&format!("&key={}", encode(credential))),
            Form => {
                body = Some((
                    "application/x-www-form-urlencoded",
                    format!("key={}", encode(credential)),
                ))
            }
            Json => {
                body = Some((
                    "application/json",
                    json!({"API_Key": credential}).to_string(),
                ))
            }
            BasicApi => {
                request_headers.insert(
                    "authorization",
                    basic(&format!("api:{credential}")).parse().unwrap(),
                );
            }
            BasicLogin => {
                request_headers.insert("authorization", basic(credential).parse().unwrap());
            }
        }
    }
    let mut request = client().post(url).headers(request_headers);
    if let Some((content_type, body)) = body {
        request = request.header("content-type", content_type).body(body);
    }
    request.send().unwrap()
}

fn encode(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn basic(user_password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_password)
    )
}

/// The ids in the admin's key list.
fn listed_ids(s: &TestServer) -> Vec<i64> {
    let r = s.list_keys(&s.admin());
    assert_eq!(r.status(), 200);
    let keys: Vec<Value> = r.json().unwrap();
    keys.iter().map(|k| k["id"].as_i64().unwrap()).collect()
}

fn each_channel_alone_authenticates(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, key) = s.create_key(full_control());
    let login = format!("Admin:{ADMIN_PASSWORD}");
    for (channel, credential) in [
        (Header, &key),
        (Query, &key),
        (Form, &key),
        (Json, &key),
        (BasicApi, &key),
        (BasicLogin, &login),
    ] {
        let (target, _) = s.create_key(feed_key());
        assert_eq!(
            delete_with(&s, target, &[]).status(),
            403,
            "no credential at all"
        );
        assert_eq!(
            delete_with(&s, target, &[(channel, "lk_wrong")]).status(),
            403,
            "{channel:?} wrong"
        );
        let r = delete_with(&s, target, &[(channel, credential)]);
        assert_eq!(r.status(), 200, "{channel:?}: {}", r.text().unwrap());
        assert!(
            !listed_ids(&s).contains(&i64::from(target)),
            "{channel:?} deleted the key"
        );
    }
}

fn body_channels_count_only_with_their_content_type(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, key) = s.create_key(full_control());
    let (target, _) = s.create_key(feed_key());
    let url = s.url(&format!("/api/api-keys/delete?id={target}"));
    let json_body = json!({"API_Key": key}).to_string();
    let form_body = format!("key={key}");
    for (content_type, body) in [
        (None, form_body.clone()),
        (Some("text/plain"), form_body.clone()),
        (Some("application/json"), form_body),
        (None, json_body.clone()),
        (Some("text/plain"), json_body.clone()),
        (Some("application/x-www-form-urlencoded"), json_body),
    ] {
        let mut request = client().post(&url).body(body.clone());
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        assert_eq!(
            request.send().unwrap().status(),
            403,
            "{content_type:?} {body}"
        );
    }
    assert!(
        listed_ids(&s).contains(&i64::from(target)),
        "nothing was deleted"
    );
    let charset = client()
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .body(json!({"API_Key": key}).to_string())
        .send()
        .unwrap();
    assert_eq!(
        charset.status(),
        200,
        "a charset parameter does not hide the JSON channel"
    );
}

fn a_wrong_credential_is_not_rescued_by_a_later_channel(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, good) = s.create_key(full_control());
    let login = s.admin();
    let (target, _) = s.create_key(feed_key());
    let cases: &[&[(Channel, &str)]] = &[
        &[(Header, "lk_wrong"), (Query, &good)],
        &[(Header, "lk_wrong"), (Form, &good)],
        &[(Header, "lk_wrong"), (Json, &good)],
        &[(Header, "lk_wrong"), (BasicApi, &good)],
        &[(Header, "lk_wrong"), (BasicLogin, &login)],
        &[(Header, "Admin:wrong-password"), (Query, &good)],
        &[(Query, "lk_wrong"), (Form, &good)],
        &[(Query, "lk_wrong"), (Json, &good)],
        &[(Query, "lk_wrong"), (BasicApi, &good)],
        &[(Query, "lk_wrong"), (BasicLogin, &login)],
        &[(Form, "lk_wrong"), (BasicApi, &good)],
        &[(Form, "lk_wrong"), (BasicLogin, &login)],
        &[(Json, "lk_wrong"), (BasicApi, &good)],
        &[(Json, "lk_wrong"), (BasicLogin, &login)],
    ];
    for case in cases {
        let r = delete_with(&s, target, case);
        assert_eq!(r.status(), 400, "{case:?}");
        assert!(r.text().unwrap().contains("more than one credential"));
    }
    assert!(
        listed_ids(&s).contains(&i64::from(target)),
        "no request deleted the key"
    );
}

fn two_credentials_are_refused_even_when_both_are_valid(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let (_, good) = s.create_key(full_control());
    let login = s.admin();
    let alice = "alice:alice-password";
    // No order decides: a valid credential next to wrong ones is refused.
    let cases: &[&[(Channel, &str)]] = &[
        &[
            (Header, &good),
            (Query, "lk_wrong"),
            (Form, "lk_wrong"),
            (BasicApi, "lk_wrong"),
        ],
        &[
            (Query, &good),
            (Json, "lk_wrong"),
            (BasicLogin, "Admin:wrong"),
        ],
        &[(Form, &good), (BasicApi, "lk_wrong")],
        &[(Json, &login), (BasicLogin, "Admin:wrong")],
    ];
    for case in cases {
        let (target, _) = s.create_key(full_control());
        assert_eq!(delete_with(&s, target, case).status(), 400, "{case:?}");
        assert!(listed_ids(&s).contains(&i64::from(target)), "{case:?}");
    }
    // Two valid credentials: neither decides who calls.
    let cases: &[(&[(Channel, &str)], u16)] = &[
        (&[(Header, alice), (Query, &good)], 400),
        (&[(Header, &good), (Query, alice)], 400),
        (&[(Query, alice), (Json, &good)], 400),
        (&[(Form, alice), (BasicApi, &good)], 400),
        (&[(Json, &good), (BasicLogin, alice)], 400),
    ];
    for (case, expected) in cases {
        let (target, _) = s.create_key(full_control());
        assert_eq!(
            delete_with(&s, target, case).status(),
            *expected,
            "{case:?}"
        );
    }
}

fn user_password_pseudo_keys_work_through_every_key_channel(backend: Backend) {
    let s = TestServer::start(backend);
    // A password may itself contain ':'; only the first one separates.
    s.add_user("carol", "pass:with:colons", &[]);
    for channel in [Header, Query, Form, Json] {
        let (target, _) = s.create_key(personal("carol"));
        let r = delete_with(&s, target, &[(channel, "carol:wrong-password")]);
        assert_eq!(r.status(), 403, "{channel:?} wrong password");
        let r = delete_with(&s, target, &[(channel, "CAROL:pass:with:colons")]);
        assert_eq!(r.status(), 200, "{channel:?}: {}", r.text().unwrap());
        assert!(!listed_ids(&s).contains(&i64::from(target)));
    }
    // The pseudo-key acts as the user, with the user's rights only.
    let (system, _) = s.create_key(full_control());
    assert_eq!(
        delete_with(&s, system, &[(Header, "carol:pass:with:colons")]).status(),
        403
    );
    let admin = s.admin();
    assert_eq!(delete_with(&s, system, &[(Query, &admin)]).status(), 200);
}

fn disabled_pseudo_keys_are_403_while_keys_and_logins_still_work(backend: Backend) {
    let options = Options {
        args: vec!["--pseudo-keys".into(), "false".into()],
        ..Options::default()
    };
    let s = TestServer::start_with(backend, options);
    let login = s.admin();
    let created = post_json(&s.url("/api/api-keys/create"), &full_control())
        .basic_auth("Admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(created.status(), 200, "a Basic login still creates keys");
    let key = created.json::<Value>().unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    for channel in [Header, Query, Form, Json] {
        let (target, _) = create_with_key(&s, &key);
        let r = delete_with(&s, target, &[(channel, &login)]);
        assert_eq!(
            r.status(),
            403,
            "{channel:?}: the right password as a pseudo-key is refused"
        );
        let r = delete_with(&s, target, &[(channel, &key)]);
        assert_eq!(r.status(), 200, "{channel:?}: real keys still work");
    }
    for (channel, credential) in [(BasicApi, &key), (BasicLogin, &login)] {
        let (target, _) = create_with_key(&s, &key);
        assert_eq!(
            delete_with(&s, target, &[(channel, credential)]).status(),
            200,
            "{channel:?}"
        );
    }
}

fn create_with_key(s: &TestServer, key: &str) -> (i32, String) {
    let r = s.create_key_as(key, &feed_key());
    assert_eq!(r.status(), 200);
    let body: Value = r.json().unwrap();
    (
        body["id"].as_i64().unwrap() as i32,
        body["key"].as_str().unwrap().to_owned(),
    )
}

/// Creates a key that expires a few seconds from now; returns `(id, key, expiration)`.
pub fn create_expiring_key(s: &TestServer) -> (i32, String, time::OffsetDateTime) {
    let expiration = (time::OffsetDateTime::now_utc() + Duration::from_secs(3))
        .replace_nanosecond(0)
        .unwrap();
    let text = expiration
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (id, key) =
        s.create_key(json!({"type": "system", "systemApis": ["full-control"], "expiration": text}));
    (id, key, expiration)
}

/// Sleeps until a moment safely past `expiration`.
pub fn wait_until_past(expiration: time::OffsetDateTime) {
    let left = expiration - time::OffsetDateTime::now_utc();
    std::thread::sleep(Duration::try_from(left).unwrap_or_default() + Duration::from_millis(1500));
}

fn an_expired_key_is_refused_with_the_same_403_as_an_unknown_key(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, key, expiration) = create_expiring_key(&s);
    assert_eq!(s.list_keys(&key).status(), 200, "works before it expires");
    wait_until_past(expiration);
    let expired = s.list_keys(&key);
    assert_eq!(expired.status(), 403, "refused once expired");
    let expired_body = expired.bytes().unwrap();
    let (_, other) = s.create_key(full_control());
    assert_eq!(
        s.list_keys(&other).status(),
        200,
        "other keys are unaffected"
    );
    let unknown = s.list_keys("lk_no_such_key");
    assert_eq!(unknown.status(), 403);
    assert_eq!(
        unknown.bytes().unwrap(),
        expired_body,
        "the body does not say that the key exists"
    );
}

fn the_403_body_is_identical_for_unknown_key_wrong_password_and_unknown_user(backend: Backend) {
    let s = TestServer::start(backend);
    let (id, gone) = s.create_key(full_control());
    assert_eq!(s.delete_key(id, &s.admin()).status(), 200);
    let (_, real) = s.create_key(full_control());
    let mut typo = real.clone().into_bytes();
    let last = typo.len() - 1;
    typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
    let typo = String::from_utf8(typo).unwrap();

    let url = s.url("/api/api-keys/list");
    let responses = [
        ("no credential", client().get(&url).send().unwrap()),
        ("unknown key", s.list_keys("no-such-key")),
        ("deleted key", s.list_keys(&gone)),
        ("key with a bad checksum", s.list_keys(&typo)),
        (
            "wrong password, pseudo-key",
            s.list_keys("Admin:wrong-password"),
        ),
        (
            "unknown user, pseudo-key",
            s.list_keys("nobody:wrong-password"),
        ),
        (
            "wrong password, login",
            client()
                .get(&url)
                .basic_auth("Admin", Some("wrong"))
                .send()
                .unwrap(),
        ),
        (
            "unknown user, login",
            client()
                .get(&url)
                .basic_auth("nobody", Some("wrong"))
                .send()
                .unwrap(),
        ),
        (
            "unknown key, Basic api",
            client()
                .get(&url)
                .basic_auth("api", Some("no-such-key"))
                .send()
                .unwrap(),
        ),
    ];
    let mut first: Option<(String, Vec<u8>)> = None;
    for (what, r) in responses {
        assert_eq!(r.status(), 403, "{what}");
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        let body = r.bytes().unwrap().to_vec();
        assert!(!body.is_empty(), "{what}: a short reason is given");
        match &first {
            None => first = Some((content_type, body)),
            Some(expected) => assert_eq!(&(content_type, body), expected, "{what} differs"),
        }
    }
}

fn a_password_change_takes_effect_at_once(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("bob", "old-password", &[]);
    let login = |password: &str| {
        client()
            .get(s.url("/api/api-keys/list"))
            .basic_auth("bob", Some(password))
            .send()
            .unwrap()
            .status()
    };
    let edit = |body: Value| {
        let r = post_json(&s.url("/api/security/users/edit"), &body)
            .header("X-ApiKey", s.admin())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "edit: {}", r.text().unwrap());
    };
    // Successful logins are cached: use the old password through both ways first.
    assert_eq!(s.list_keys("bob:old-password").status(), 200);
    assert_eq!(login("old-password"), 200);

    edit(json!({"name": "bob", "password": "new-password"}));
    assert_eq!(
        s.list_keys("bob:old-password").status(),
        403,
        "old password, pseudo-key"
    );
    assert_eq!(login("old-password"), 403, "old password, login");
    assert_eq!(s.list_keys("bob:new-password").status(), 200);
    assert_eq!(login("new-password"), 200);

    // Back to the old one: the cached new password stops working at once too.
    edit(json!({"name": "BOB", "password": "old-password"}));
    assert_eq!(login("new-password"), 403);
    assert_eq!(s.list_keys("bob:new-password").status(), 403);
    assert_eq!(login("old-password"), 200);

    // An edit without a password keeps the password.
    edit(json!({"name": "bob", "displayName": "Bob"}));
    assert_eq!(login("old-password"), 200);
}

fn deleting_a_user_refuses_their_pseudo_key_and_personal_keys_at_once(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("dave", "dave-password", &[]);
    let (_, dave_key) = s.create_key(personal("dave"));
    let login = || {
        let url = s.url("/api/api-keys/list");
        client()
            .get(url)
            .basic_auth("dave", Some("dave-password"))
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(s.list_keys("dave:dave-password").status(), 200);
    assert_eq!(s.list_keys(&dave_key).status(), 200);
    assert_eq!(login(), 200);

    let r = client()
        .delete(s.url("/api/security/users/delete?user=dave"))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        s.list_keys("dave:dave-password").status(),
        403,
        "pseudo-key"
    );
    assert_eq!(login(), 403, "login");
    assert_eq!(s.list_keys(&dave_key).status(), 403, "personal key");

    // A new user of the same name and password is a new user: the old key stays dead.
    s.add_user("dave", "dave-password", &[]);
    assert_eq!(login(), 200);
    assert_eq!(s.list_keys(&dave_key).status(), 403);
}
