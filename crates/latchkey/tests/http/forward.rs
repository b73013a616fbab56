//! Forward auth for reverse proxies (`guarding.md` section 3): what each
//! credential opens, the answers and their headers, misconfigured forward
//! URLs, the limiter and `--trusted-proxies`.

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{
    client, client_from, full_control, personal, post_json, Backend, Options, TestServer,
    ADMIN_PASSWORD,
};

both_backends!(
    feed_keys_open_their_feed_or_feed_group_for_their_permissions,
    the_permission_comes_from_the_original_method,
    system_keys_open_what_their_apis_say,
    logins_pseudo_keys_and_personal_keys_act_as_their_user,
    every_forwarded_channel_carries_the_credential,
    two_credentials_are_400_and_never_a_match,
    missing_and_wrong_credentials_are_401_with_a_challenge_and_one_body,
    an_expired_key_is_401,
    misconfigured_forward_urls_fail_closed_with_500,
    the_body_is_ignored_and_any_method_is_accepted,
    names_are_percent_encoded_in_headers,
    changes_apply_to_the_very_next_request,
    failed_forward_auths_count_for_the_limiter,
);

const FORWARD: &str = "/api/auth/forward";

/// A forward-auth sub-request: `GET /api/auth/forward?QUERY` with headers.
fn forward_with(c: &Client, s: &TestServer, query: &str, headers: &[(&str, &str)]) -> Response {
    let url = if query.is_empty() {
        s.url(FORWARD)
    } else {
        s.url(&format!("{FORWARD}?{query}"))
    };
    let mut req = c.get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().unwrap()
}

fn forward(s: &TestServer, query: &str, headers: &[(&str, &str)]) -> Response {
    forward_with(client(), s, query, headers)
}

/// The status of a forward auth with `X-ApiKey: key`.
fn status(s: &TestServer, query: &str, key: &str) -> u16 {
    forward(s, query, &[("X-ApiKey", key)]).status().as_u16()
}

fn header(r: &Response, name: &str) -> Option<String> {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
}

fn basic(user_pass: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

fn feed_key(s: &TestServer, scope: Value, permissions: &[&str]) -> (i32, String) {
    let mut info = json!({"type": "feed", "packagePermissions": permissions});
    for (k, v) in scope.as_object().unwrap() {
        info[k] = v.clone();
    }
    s.create_key(info)
}

fn system_key(s: &TestServer, apis: &[&str]) -> (i32, String) {
    s.create_key(json!({"type": "system", "systemApis": apis}))
}

/// Asserts a 200 naming the key, with no user.
fn assert_key_allowed(r: &Response, id: i32, key_type: &str) {
    assert_eq!(r.status(), 200);
    assert_eq!(header(r, "x-latchkey-principal"), Some(format!("key {id}")));
    assert_eq!(header(r, "x-latchkey-key-id"), Some(id.to_string()));
    assert_eq!(header(r, "x-latchkey-key-type").as_deref(), Some(key_type));
}

fn feed_keys_open_their_feed_or_feed_group_for_their_permissions(backend: Backend) {
    let s = TestServer::start(backend);
    let (id, on_feed) = feed_key(&s, json!({"feed": "public-npm"}), &["view", "add"]);
    let r = forward(&s, "feed=public-npm", &[("X-ApiKey", &on_feed)]);
    assert_key_allowed(&r, id, "feed");
    assert_eq!(header(&r, "x-latchkey-user"), None, "no user is involved");
    assert_eq!(r.bytes().unwrap().len(), 0, "the 200 is empty");
    assert_eq!(status(&s, "feed=PUBLIC-NPM&permission=add", &on_feed), 200);
    assert_eq!(
        status(&s, "feed=public-npm&permission=delete", &on_feed),
        403
    );
    assert_eq!(
        status(&s, "feed=public-npm&permission=promote", &on_feed),
        403
    );
    assert_eq!(status(&s, "feed=other", &on_feed), 403);
    assert_eq!(status(&s, "feedGroup=public-npm", &on_feed), 403);
    assert_eq!(status(&s, "systemApi=feeds", &on_feed), 403);
    assert_eq!(status(&s, "", &on_feed), 200, "any valid credential");

    let (gid, on_group) = feed_key(&s, json!({"feedGroup": "public"}), &["promote"]);
    let r = forward(
        &s,
        "feed=x&feedGroup=Public&permission=promote",
        &[("X-ApiKey", &on_group)],
    );
    assert_key_allowed(&r, gid, "feed");
    assert_eq!(
        status(&s, "feedGroup=public&permission=promote", &on_group),
        200
    );
    assert_eq!(
        status(&s, "feedGroup=public&permission=view", &on_group),
        403
    );
    assert_eq!(status(&s, "feed=public&permission=promote", &on_group), 403);
    assert_eq!(
        status(&s, "feedGroup=other&permission=promote", &on_group),
        403
    );
}

fn the_permission_comes_from_the_original_method(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, view_only) = feed_key(&s, json!({"feed": "f"}), &["view"]);
    let (_, delete_only) = feed_key(&s, json!({"feed": "f"}), &["delete"]);
    let (_, add_only) = feed_key(&s, json!({"feed": "f"}), &["add"]);
    let with = |key: &str, headers: &[(&str, &str)], method: reqwest::Method| {
        let mut req = client()
            .request(method, s.url(&format!("{FORWARD}?feed=f")))
            .header("X-ApiKey", key);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.send().unwrap().status().as_u16()
    };
    use reqwest::Method;
    for m in ["GET", "HEAD", "OPTIONS", "get"] {
        assert_eq!(
            with(&view_only, &[("X-Forwarded-Method", m)], Method::POST),
            200,
            "{m}"
        );
        assert_eq!(
            with(&add_only, &[("X-Forwarded-Method", m)], Method::GET),
            403,
            "{m}"
        );
    }
    assert_eq!(
        with(
            &delete_only,
            &[("X-Forwarded-Method", "DELETE")],
            Method::GET
        ),
        200
    );
    assert_eq!(
        with(&view_only, &[("X-Forwarded-Method", "DELETE")], Method::GET),
        403
    );
    for m in ["PUT", "POST", "PATCH", "MKCOL"] {
        assert_eq!(
            with(&add_only, &[("X-Forwarded-Method", m)], Method::GET),
            200,
            "{m}"
        );
        assert_eq!(
            with(&view_only, &[("X-Forwarded-Method", m)], Method::GET),
            403,
            "{m}"
        );
    }
    // X-Original-Method (nginx) when X-Forwarded-Method is absent; X-Forwarded-Method wins.
    assert_eq!(
        with(&add_only, &[("X-Original-Method", "PUT")], Method::GET),
        200
    );
    assert_eq!(
        with(
            &add_only,
            &[("X-Forwarded-Method", "GET"), ("X-Original-Method", "PUT")],
            Method::GET
        ),
        403
    );
    // Neither: the sub-request's own method.
    assert_eq!(with(&add_only, &[], Method::PUT), 200);
    assert_eq!(with(&add_only, &[], Method::GET), 403);
    assert_eq!(with(&delete_only, &[], Method::DELETE), 200);
    // An explicit permission overrides the method.
    let r = client()
        .get(s.url(&format!("{FORWARD}?feed=f&permission=view")))
        .header("X-ApiKey", &view_only)
        .header("X-Forwarded-Method", "DELETE")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn system_keys_open_what_their_apis_say(backend: Backend) {
    let s = TestServer::start(backend);
    let (id, full) = s.create_key(full_control());
    let r = forward(&s, "feed=any&permission=delete", &[("X-ApiKey", &full)]);
    assert_key_allowed(&r, id, "system");
    for q in [
        "systemApi=feeds",
        "systemApi=sca",
        "systemApi=sbom-upload",
        "feedGroup=g&permission=promote",
        "",
    ] {
        assert_eq!(status(&s, q, &full), 200, "full control: {q}");
    }
    let (_, feeds) = system_key(&s, &["feeds"]);
    for (q, expected) in [
        ("feed=any&permission=delete", 200),
        ("feedGroup=g&permission=add", 200),
        ("systemApi=feeds", 200),
        ("systemApi=sca", 403),
        ("systemApi=sbom-upload", 403),
        ("", 200),
    ] {
        assert_eq!(status(&s, q, &feeds), expected, "feeds: {q}");
    }
    let (_, sca) = system_key(&s, &["sca", "sbom-upload"]);
    for (q, expected) in [
        ("feed=any", 403),
        ("feedGroup=g", 403),
        ("systemApi=feeds", 403),
        ("systemApi=sca", 200),
        ("systemApi=sbom-upload", 200),
        ("", 200),
    ] {
        assert_eq!(status(&s, q, &sca), expected, "sca: {q}");
    }
}

fn logins_pseudo_keys_and_personal_keys_act_as_their_user(backend: Backend) {
    let s = TestServer::start(backend);
    let login = basic(&format!("Admin:{ADMIN_PASSWORD}"));
    let r = forward(&s, "feed=x&permission=delete", &[("Authorization", &login)]);
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-latchkey-principal").as_deref(),
        Some("user Admin")
    );
    assert_eq!(header(&r, "x-latchkey-user").as_deref(), Some("Admin"));
    assert_eq!(header(&r, "x-latchkey-key-id"), None, "no key was used");
    assert_eq!(header(&r, "x-latchkey-key-type"), None);

    let r = forward(&s, "systemApi=sca", &[("X-ApiKey", &s.admin())]);
    assert_eq!(r.status(), 200, "a pseudo-key acts as its administrator");
    assert_eq!(
        header(&r, "x-latchkey-principal").as_deref(),
        Some("user Admin")
    );

    let (id, key) = s.create_key(personal("Admin"));
    let r = forward(&s, "feedGroup=g&permission=promote", &[("X-ApiKey", &key)]);
    assert_key_allowed(&r, id, "personal");
    assert_eq!(header(&r, "x-latchkey-user").as_deref(), Some("Admin"));

    // A user without permissions: any valid credential, but no feed.
    s.add_user("jsmith", "jsmith-password", &[]);
    let plain = basic("jsmith:jsmith-password");
    let r = forward(&s, "", &[("Authorization", &plain)]);
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "x-latchkey-user").as_deref(), Some("jsmith"));
    assert_eq!(
        forward(&s, "feed=x", &[("Authorization", &plain)]).status(),
        403
    );
    assert_eq!(status(&s, "systemApi=feeds", "jsmith:jsmith-password"), 403);
    let (_, theirs) = s.create_key(personal("jsmith"));
    assert_eq!(status(&s, "", &theirs), 200);
    assert_eq!(status(&s, "feed=x", &theirs), 403);
}

fn every_forwarded_channel_carries_the_credential(backend: Backend) {
    let s = TestServer::start(backend);
    let (id, key) = feed_key(&s, json!({"feed": "f"}), &["view"]);
    let bearer = format!("Bearer {key}");
    let api_basic = basic(&format!("api:{key}"));
    let uri = format!("/npm/f/-/pkg.tgz?x=1&key={key}");
    let channels: Vec<Vec<(&str, &str)>> = vec![
        vec![("X-ApiKey", key.as_str())],
        vec![("X-NuGet-ApiKey", key.as_str())],
        vec![("Authorization", bearer.as_str())],
        vec![("Authorization", api_basic.as_str())],
        vec![("X-Forwarded-Uri", uri.as_str())],
        vec![("X-Original-URI", uri.as_str())],
    ];
    for headers in &channels {
        let r = forward(&s, "feed=f", headers);
        assert_eq!(r.status(), 200, "{:?}", headers[0].0);
        assert_eq!(header(&r, "x-latchkey-key-id"), Some(id.to_string()));
        // The same channel with a wrong key is refused: the channel is really read.
        let wrong: Vec<(&str, String)> = headers
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    v.replace(&key, "lk_wrong")
                        .replace(&api_basic, &basic("api:lk_wrong")),
                )
            })
            .collect();
        let wrong: Vec<(&str, &str)> = wrong.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_eq!(
            forward(&s, "feed=f", &wrong).status(),
            401,
            "{:?}",
            headers[0].0
        );
    }
    // X-Forwarded-Uri is read in preference to X-Original-URI.
    let r = forward(
        &s,
        "feed=f",
        &[
            ("X-Forwarded-Uri", "/plain"),
            ("X-Original-URI", uri.as_str()),
        ],
    );
    assert_eq!(r.status(), 401, "the key in X-Original-URI is not read");
    // A pseudo-key in a key channel is one.
    let pseudo = format!("Bearer {}", s.admin());
    assert_eq!(
        forward(&s, "feed=f", &[("Authorization", &pseudo)]).status(),
        200
    );
    let uri = format!("/x?key=Admin:{}", ADMIN_PASSWORD.replace(' ', "%20"));
    assert_eq!(
        forward(&s, "feed=f", &[("X-Original-URI", &uri)]).status(),
        200
    );
}

fn two_credentials_are_400_and_never_a_match(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, a) = s.create_key(full_control());
    let (_, b) = s.create_key(full_control());
    let bearer = format!("Bearer {b}");
    let uri = format!("/x?key={a}");
    let login = basic(&format!("Admin:{ADMIN_PASSWORD}"));
    for headers in [
        vec![("X-ApiKey", a.as_str()), ("Authorization", bearer.as_str())],
        vec![("X-ApiKey", a.as_str()), ("X-NuGet-ApiKey", a.as_str())],
        vec![("X-ApiKey", a.as_str()), ("X-Forwarded-Uri", uri.as_str())],
        vec![
            ("Authorization", login.as_str()),
            ("X-NuGet-ApiKey", b.as_str()),
        ],
        vec![("X-ApiKey", "lk_wrong"), ("Authorization", bearer.as_str())],
    ] {
        let r = forward(&s, "", &headers);
        assert_eq!(r.status(), 400, "{headers:?}");
        assert_eq!(header(&r, "x-latchkey-principal"), None);
        assert!(header(&r, "content-type")
            .unwrap()
            .starts_with("text/plain"));
        let body = r.text().unwrap();
        assert!(body.contains("more than one credential"), "{body}");
        assert!(!body.contains(&a) && !body.contains(&b));
    }
}

fn missing_and_wrong_credentials_are_401_with_a_challenge_and_one_body(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("jsmith", "jsmith-password", &[]);
    let (id, gone) = s.create_key(full_control());
    assert_eq!(s.delete_key(id, &s.admin()).status(), 200);
    let unknown_user = basic("nobody:jsmith-password");
    let wrong_password = basic("jsmith:wrong-password");
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("no credential", vec![]),
        ("unknown key", vec![("X-ApiKey", "lk_no_such_key")]),
        ("deleted key", vec![("X-ApiKey", gone.as_str())]),
        (
            "unknown user",
            vec![("Authorization", unknown_user.as_str())],
        ),
        (
            "wrong password",
            vec![("Authorization", wrong_password.as_str())],
        ),
        (
            "wrong pseudo-key",
            vec![("X-ApiKey", "jsmith:wrong-password")],
        ),
    ];
    let mut bodies = Vec::new();
    for (what, headers) in &cases {
        let r = forward(&s, "feed=f", headers);
        assert_eq!(r.status(), 401, "{what}");
        assert_eq!(
            header(&r, "www-authenticate").as_deref(),
            Some("Basic realm=\"Latchkey\""),
            "{what}"
        );
        assert!(header(&r, "content-type")
            .unwrap()
            .starts_with("text/plain"));
        assert_eq!(header(&r, "x-latchkey-principal"), None);
        let body = r.text().unwrap();
        assert_eq!(body.lines().count(), 1, "{what}: one line: {body:?}");
        bodies.push(body);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "the bodies do not tell the cases apart: {bodies:?}"
    );
    // Anonymous holds nothing by default, not even "any valid credential".
    assert_eq!(forward(&s, "", &[]).status(), 401);
}

fn an_expired_key_is_401(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, key, expiration) = crate::auth::create_expiring_key(&s);
    assert_eq!(status(&s, "feed=f", &key), 200, "works before it expires");
    crate::auth::wait_until_past(expiration);
    let r = forward(&s, "feed=f", &[("X-ApiKey", &key)]);
    assert_eq!(r.status(), 401);
    let expired_body = r.text().unwrap();
    let unknown = forward(&s, "feed=f", &[("X-ApiKey", "lk_no_such_key")]);
    assert_eq!(
        unknown.text().unwrap(),
        expired_body,
        "expiry is not told apart"
    );
}

fn misconfigured_forward_urls_fail_closed_with_500(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, full) = s.create_key(full_control());
    for (query, named) in [
        ("fed=npm", "fed"),
        ("feed=npm&permission=write", "write"),
        ("permission=view", "permission"),
        ("systemApi=everything", "everything"),
        ("systemApi=full-control", "systemApi"),
        ("feed=a&systemApi=sca", "systemApi"),
        ("feed=a&feed=b", "feed"),
        ("feed=", "feed"),
        ("key=abc", "key"),
    ] {
        // Even the most powerful credential gets no answer but 500.
        let r = forward(&s, query, &[("X-ApiKey", &full)]);
        assert_eq!(r.status(), 500, "{query}");
        assert_eq!(header(&r, "x-latchkey-principal"), None);
        assert!(header(&r, "content-type")
            .unwrap()
            .starts_with("text/plain"));
        let body = r.text().unwrap();
        assert!(
            body.contains("misconfigured") && body.contains(named),
            "{query}: {body}"
        );
        assert_eq!(body.trim_end().lines().count(), 1, "{body:?}");
        assert_eq!(
            forward(&s, query, &[]).status(),
            500,
            "{query} without credential"
        );
    }
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("forward auth is misconfigured") && l.contains("everything"))
        .unwrap_or_else(|| panic!("no log line names the misconfiguration:\n{log}"));
    assert!(line.contains("ERROR"), "logged at error level: {line}");
    assert!(!log.contains(&full), "the key is never logged");
}

fn the_body_is_ignored_and_any_method_is_accepted(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, key) = s.create_key(full_control());
    // A credential in the sub-request's body is not a channel.
    let r = post_json(&s.url(FORWARD), &json!({"API_Key": key}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401, "the body is not read");
    let r = post_json(&s.url(FORWARD), &json!({"API_Key": "lk_other"}))
        .header("X-ApiKey", &key)
        .send()
        .unwrap();
    assert_eq!(
        r.status(),
        200,
        "a key in the body is not a second credential"
    );
    let r = client()
        .post(s.url(FORWARD))
        .header("X-ApiKey", &key)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={key}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // A body larger than any API body is still not read (nor refused).
    let r = client()
        .put(s.url(FORWARD))
        .header("X-ApiKey", &key)
        .body(vec![b'x'; 1024 * 1024])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    for method in ["DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND"] {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let r = client()
            .request(m, s.url(FORWARD))
            .header("X-ApiKey", &key)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{method}");
    }
}

fn names_are_percent_encoded_in_headers(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("Jürgen Müller", "juergen-password", &["Administrators"]);
    let r = forward(
        &s,
        "feed=f",
        &[("Authorization", &basic("Jürgen Müller:juergen-password"))],
    );
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-latchkey-user").as_deref(),
        Some("J%C3%BCrgen M%C3%BCller")
    );
    assert_eq!(
        header(&r, "x-latchkey-principal").as_deref(),
        Some("user J%C3%BCrgen M%C3%BCller")
    );
    let (_, key) = s.create_key(personal("Jürgen Müller"));
    let r = forward(&s, "", &[("X-ApiKey", &key)]);
    assert_eq!(
        header(&r, "x-latchkey-user").as_deref(),
        Some("J%C3%BCrgen M%C3%BCller")
    );
    s.add_user("100%real", "percent-password", &[]);
    let r = forward(&s, "", &[("X-ApiKey", "100%real:percent-password")]);
    assert_eq!(
        header(&r, "x-latchkey-user").as_deref(),
        Some("100%25real"),
        "% itself is encoded, so decoding is unambiguous"
    );
    // A name that would split a header line cannot exist.
    for name in ["evil\r\nX-Latchkey-User: Admin", "evil\nx", "evil\rx"] {
        let body = json!({"name": name, "password": "evil-password"});
        let r = post_json(&s.url("/api/security/users/add"), &body)
            .header("X-ApiKey", s.admin())
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "{name:?}");
    }
}

fn changes_apply_to_the_very_next_request(backend: Backend) {
    let s = TestServer::start(backend);
    // A deleted key.
    let (id, key) = s.create_key(full_control());
    assert_eq!(status(&s, "feed=f", &key), 200);
    assert_eq!(s.delete_key(id, &s.admin()).status(), 200);
    assert_eq!(status(&s, "feed=f", &key), 401);
    // A changed password (the previous one had been cached as verified).
    s.add_user("alice", "alice-password-1", &["Administrators"]);
    let old = basic("alice:alice-password-1");
    assert_eq!(
        forward(&s, "feed=f", &[("Authorization", &old)]).status(),
        200
    );
    let edit = json!({"name": "alice", "password": "alice-password-2"});
    let r = post_json(&s.url("/api/security/users/edit"), &edit)
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        forward(&s, "feed=f", &[("Authorization", &old)]).status(),
        401
    );
    let new = basic("alice:alice-password-2");
    assert_eq!(
        forward(&s, "feed=f", &[("Authorization", &new)]).status(),
        200
    );
    // Removed from Administrators: no longer opens the feed.
    let edit = json!({"name": "alice", "groups": []});
    let r = post_json(&s.url("/api/security/users/edit"), &edit)
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        forward(&s, "feed=f", &[("Authorization", &new)]).status(),
        403
    );
    // A deleted user: their login and personal keys.
    let (_, theirs) = s.create_key(personal("alice"));
    assert_eq!(status(&s, "", &theirs), 200);
    let r = client()
        .delete(s.url("/api/security/users/delete?user=alice"))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(status(&s, "", &theirs), 401);
    assert_eq!(forward(&s, "", &[("Authorization", &new)]).status(), 401);
}

fn limited_server(backend: Backend, limit: u32, extra: &[&str]) -> TestServer {
    let mut args: Vec<String> = [
        "--auth-failure-limit",
        &limit.to_string(),
        "--auth-block-seconds",
        "60",
    ]
    .map(String::from)
    .to_vec();
    args.extend(extra.iter().map(|a| a.to_string()));
    TestServer::start_with(
        backend,
        Options {
            args,
            ..Default::default()
        },
    )
}

fn failed_forward_auths_count_for_the_limiter(backend: Backend) {
    let s = limited_server(backend, 3, &[]);
    let (_, feed_only) = feed_key(&s, json!({"feed": "f"}), &["view"]);
    let attacker = client_from(11);
    let other = client_from(12);
    // Neither missing credentials nor valid ones without the permission count.
    for _ in 0..5 {
        assert_eq!(forward_with(&attacker, &s, "feed=f", &[]).status(), 401);
        assert_eq!(
            forward_with(&attacker, &s, "feed=g", &[("X-ApiKey", &feed_only)]).status(),
            403
        );
    }
    for guess in ["lk_guess_1", "lk_guess_2", "lk_guess_3"] {
        assert_eq!(
            forward_with(&attacker, &s, "feed=f", &[("X-ApiKey", guess)]).status(),
            401
        );
    }
    let r = forward_with(&attacker, &s, "feed=f", &[("X-ApiKey", &feed_only)]);
    assert_eq!(r.status(), 429, "blocked, even with a good key");
    let wait: u64 = header(&r, "retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    assert!(header(&r, "content-type")
        .unwrap()
        .starts_with("text/plain"));
    assert_eq!(
        forward_with(&other, &s, "feed=f", &[("X-ApiKey", &feed_only)]).status(),
        200,
        "another address is not affected"
    );
}

// --trusted-proxies

both_backends!(
    without_trusted_proxies_a_rotating_x_forwarded_for_is_still_blocked,
    behind_a_trusted_proxy_each_forwarded_client_is_limited_separately,
);

fn without_trusted_proxies_a_rotating_x_forwarded_for_is_still_blocked(backend: Backend) {
    let s = limited_server(backend, 3, &[]);
    let c = client_from(21);
    for n in 0..3 {
        let xff = format!("198.51.100.{n}");
        let r = forward_with(
            &c,
            &s,
            "",
            &[("X-ApiKey", "lk_guess"), ("X-Forwarded-For", &xff)],
        );
        assert_eq!(r.status(), 401);
    }
    let r = forward_with(
        &c,
        &s,
        "",
        &[
            ("X-ApiKey", "lk_guess"),
            ("X-Forwarded-For", "198.51.100.99"),
        ],
    );
    assert_eq!(
        r.status(),
        429,
        "X-Forwarded-For of an untrusted peer is ignored"
    );
    // The same on the API.
    let r = c
        .get(s.url("/api/api-keys/list"))
        .header("X-ApiKey", s.admin())
        .header("X-Forwarded-For", "203.0.113.7")
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
}

fn behind_a_trusted_proxy_each_forwarded_client_is_limited_separately(backend: Backend) {
    let s = limited_server(
        backend,
        3,
        &["--trusted-proxies", "10.0.0.0/8,127.0.0.1/32"],
    );
    let (_, key) = s.create_key(full_control());
    let proxy = client();
    let via = |client_addr: &str| format!("192.0.2.200, {client_addr}, 10.1.2.3");
    let attacker = via("198.51.100.1");
    let victim = via("198.51.100.2");
    for _ in 0..3 {
        let r = forward_with(
            proxy,
            &s,
            "",
            &[("X-ApiKey", "lk_guess"), ("X-Forwarded-For", &attacker)],
        );
        assert_eq!(r.status(), 401);
    }
    let r = forward_with(
        proxy,
        &s,
        "",
        &[("X-ApiKey", &key), ("X-Forwarded-For", &attacker)],
    );
    assert_eq!(r.status(), 429, "the attacker behind the proxy is blocked");
    // A spoofed left part does not get the attacker out.
    let spoofed = format!("203.0.113.9, {attacker}");
    let r = forward_with(
        proxy,
        &s,
        "",
        &[("X-ApiKey", &key), ("X-Forwarded-For", &spoofed)],
    );
    assert_eq!(r.status(), 429);
    let r = forward_with(
        proxy,
        &s,
        "",
        &[("X-ApiKey", &key), ("X-Forwarded-For", &victim)],
    );
    assert_eq!(
        r.status(),
        200,
        "another client behind the same proxy is not blocked"
    );
    // Every route uses the forwarded address: the API and the request log.
    let r = proxy
        .get(s.url("/api/api-keys/list"))
        .header("X-ApiKey", &key)
        .header("X-Forwarded-For", &attacker)
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    let r = proxy
        .get(s.url("/api/api-keys/list"))
        .header("X-ApiKey", &key)
        .header("X-Forwarded-For", &victim)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.contains("/api/api-keys/list") && l.contains("198.51.100.2")),
        "the request log names the forwarded client:\n{log}"
    );
    // The proxy itself (no X-Forwarded-For) is a client of its own.
    let r = forward_with(proxy, &s, "", &[("X-ApiKey", &key)]);
    assert_eq!(r.status(), 200);
}

#[test]
fn an_invalid_trusted_proxy_network_stops_start_up_with_a_clear_message() {
    for bad in ["10.0.0.0/33", "not-a-network", "10.0.0.1,,"] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(crate::common::latchkey_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(["--trusted-proxies", bad])
            .env("LATCHKEY_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env_remove("LATCHKEY_DATABASE_URL")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{bad} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--trusted-proxies") && stderr.contains("CIDR"),
            "{bad}: {stderr}"
        );
        assert!(
            !dir.path().join("data").exists(),
            "nothing was created for {bad}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(crate::common::latchkey_bin())
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env(
            "LATCHKEY_TRUSTED_PROXIES",
            "192.168.0.0/16,fd00::/8,300.1.1.1",
        )
        .env("LATCHKEY_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("LATCHKEY_DATABASE_URL")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("300.1.1.1"), "{stderr}");
}
