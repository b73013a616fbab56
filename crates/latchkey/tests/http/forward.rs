//! Forward auth for reverse proxies (`guarding.md` section 3): what each
//! credential opens, the answers and their headers, misconfigured forward
//! URLs, the limiter and `--trusted-proxies`.

use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{
    client, client_from, full_control, personal, post_json, raw, Backend, Options, TestServer,
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
    disabled_pseudo_keys_are_invalid_but_logins_still_work,
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
    let log = s.log();
    assert!(!log.contains(&key), "no key in the log");
    assert!(!log.contains(ADMIN_PASSWORD), "no password in the log");
    assert!(
        log.lines()
            .any(|l| l.contains(FORWARD) && l.contains(&format!("key {id}"))),
        "the request log names the caller:\n{log}"
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
    // A body declared larger than any API body is still not read (nor
    // refused): the answer comes while the body is still owed. (Sending it
    // whole would race the server closing the connection.)
    let answer = raw(
        &s,
        format!(
            "PUT {FORWARD} HTTP/1.1\r\nHost: x\r\nX-ApiKey: {key}\r\nConnection: close\r\n\
             Content-Length: 1048576\r\n\r\nxxxx"
        )
        .as_bytes(),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
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

// Users, groups and Anonymous through permissions (section 1). Group
// membership is set through users/add and users/edit. Permissions are set by
// SQL behind the server's back followed by a restart (`grant_by_sql`: the
// SQLite cache reads them at start), except in the tests of live changes,
// which use the security API.

both_backends!(
    users_open_what_their_permissions_and_groups_grant_by_every_credential,
    a_covering_deny_beats_any_grant,
    anonymous_opens_only_what_it_is_granted,
    permission_and_group_changes_apply_to_the_very_next_request,
);

/// A permission for [`grant_by_sql`]: `(user or group, name, task, scope, deny)`.
struct Row<'a> {
    group: bool,
    name: &'a str,
    task: &'a str,
    feed: Option<&'a str>,
    feed_group: Option<&'a str>,
    deny: bool,
}

fn allow<'a>(subject: &'a str, task: &'a str) -> Row<'a> {
    let (group, name) = match subject.strip_prefix("group ") {
        Some(g) => (true, g),
        None => (false, subject.strip_prefix("user ").unwrap_or(subject)),
    };
    Row {
        group,
        name,
        task,
        feed: None,
        feed_group: None,
        deny: false,
    }
}

fn deny<'a>(subject: &'a str, task: &'a str) -> Row<'a> {
    Row {
        deny: true,
        ..allow(subject, task)
    }
}

impl<'a> Row<'a> {
    fn on_feed(self, feed: &'a str) -> Self {
        Row {
            feed: Some(feed),
            ..self
        }
    }
    fn on_group(self, group: &'a str) -> Self {
        Row {
            feed_group: Some(group),
            ..self
        }
    }
}

/// Inserts permissions into the database behind the server's back, then
/// restarts it so that every back end serves them (ASCII names only: their
/// look-up key is the lower-cased name).
fn grant_by_sql(s: &mut TestServer, rows: &[Row]) {
    let text = |v: Option<&str>| {
        v.map_or("NULL".to_owned(), |v| {
            format!("'{}'", v.replace('\'', "''"))
        })
    };
    for r in rows {
        let (name, key) = (Some(r.name), Some(r.name.to_ascii_lowercase()));
        let (user, group) = if r.group { (None, name) } else { (name, None) };
        let (user_key, group_key) = if r.group { (None, key) } else { (key, None) };
        s.execute_sql(&format!(
            "INSERT INTO permissions (user_name, user_key, group_name, group_key, task, feed, feed_group, deny) \
             VALUES ({}, {}, {}, {}, {}, {}, {}, {})",
            text(user),
            text(user_key.as_deref()),
            text(group),
            text(group_key.as_deref()),
            text(Some(r.task)),
            text(r.feed),
            text(r.feed_group),
            if r.deny { "TRUE" } else { "FALSE" },
        ));
    }
    s.restart();
}

/// `POST path` with a JSON body as the admin; asserts `200` and returns the body.
fn as_admin(s: &TestServer, path: &str, body: &Value) -> String {
    let r = post_json(&s.url(path), body)
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "{path} {body}: {text}");
    text
}

/// Adds a permission through the security API; returns its id.
fn grant(s: &TestServer, body: Value) -> i64 {
    let text = as_admin(s, "/api/security/permissions/add", &body);
    let stored: Value = serde_json::from_str(&text).unwrap();
    stored["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("no id: {text}"))
}

fn revoke(s: &TestServer, id: i64) {
    let r = client()
        .post(s.url(&format!("/api/security/permissions/delete?id={id}")))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
}

fn group(s: &TestServer, path: &str, name: &str, members: &[&str]) {
    as_admin(s, path, &json!({"name": name, "members": members}));
}

/// Sets a user's groups through users/edit.
fn set_groups(s: &TestServer, user: &str, groups: &[&str]) {
    as_admin(
        s,
        "/api/security/users/edit",
        &json!({"name": user, "groups": groups}),
    );
}
/// The status of a forward auth (the original method given) for each of a
/// user's credentials: login, pseudo-key, personal key, and the verify code
/// for the personal key; all must agree.
fn all_agree(s: &TestServer, creds: &Creds, query: &str, method: &str) -> u16 {
    let headers = |channel: (&'static str, &str)| {
        let mut req = client()
            .get(s.url(&format!("{FORWARD}?{query}")))
            .header("X-Forwarded-Method", method);
        req = req.header(channel.0, channel.1);
        req.send().unwrap().status().as_u16()
    };
    let login = headers(("Authorization", &creds.login));
    let pseudo = headers(("X-ApiKey", &creds.pseudo));
    let key = headers(("X-ApiKey", &creds.key));
    assert_eq!(
        (login, pseudo, key),
        (login, login, login),
        "{query} {method}"
    );
    let mut body = json!({"key": creds.key});
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        body[name.as_ref()] = json!(value);
    }
    if body.get("feed").is_some() || body.get("feedGroup").is_some() {
        let permission = match method {
            "GET" => "view",
            "DELETE" => "delete",
            _ => "add",
        };
        body.as_object_mut()
            .unwrap()
            .entry("permission")
            .or_insert(json!(permission));
    }
    let r = post_json(&s.url("/api/api-keys/verify"), &body)
        .send()
        .unwrap();
    let code = r.json::<Value>().unwrap()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    let expected = if login == 200 { "VALID" } else { "FORBIDDEN" };
    assert_eq!(code, expected, "verify {body}");
    login
}

struct Creds {
    login: String,
    pseudo: String,
    key: String,
}

fn user_with_credentials(s: &TestServer, name: &str, groups: &[&str]) -> Creds {
    let password = format!("{name}-password");
    s.add_user(name, &password, groups);
    let (_, key) = s.create_key(personal(name));
    Creds {
        login: basic(&format!("{name}:{password}")),
        pseudo: format!("{name}:{password}"),
        key,
    }
}

fn users_open_what_their_permissions_and_groups_grant_by_every_credential(backend: Backend) {
    let mut s = TestServer::start(backend);
    grant_by_sql(
        &mut s,
        &[
            allow("group Developers", "View & Download Packages"),
            allow("group developers", "Publish Packages").on_feed("npm-internal"),
            allow("user alice", "Promote Packages").on_group("public"),
            allow("user bob", "Delete Packages").on_feed("scratch"),
        ],
    );
    let alice = user_with_credentials(&s, "alice", &["Developers"]);
    let bob = user_with_credentials(&s, "bob", &[]);
    #[rustfmt::skip]
    let table: &[(&Creds, &str, &str, u16)] = &[
        (&alice, "feed=anything", "GET", 200),
        (&alice, "feed=anything", "PUT", 403),
        (&alice, "feed=NPM-Internal", "PUT", 200),
        (&alice, "feed=npm-internal", "DELETE", 403),
        (&alice, "feed=x&feedGroup=Public&permission=promote", "GET", 200),
        (&alice, "feedGroup=public&permission=promote", "GET", 200),
        (&alice, "feedGroup=private&permission=promote", "GET", 403),
        (&alice, "feed=public&permission=promote", "GET", 403),
        (&alice, "systemApi=feeds", "GET", 403),
        (&alice, "", "GET", 200),
        (&bob, "feed=scratch", "DELETE", 200),
        (&bob, "feed=scratch", "GET", 200),
        (&bob, "feed=scratch", "PUT", 403),
        (&bob, "feed=other", "GET", 403),
        (&bob, "feedGroup=scratch", "GET", 403),
        (&bob, "", "GET", 200),
    ];
    for (i, (who, query, method, expected)) in table.iter().enumerate() {
        assert_eq!(
            all_agree(&s, who, query, method),
            *expected,
            "row {i}: {query} {method}"
        );
    }
    // Membership changes apply at once: bob joins, alice leaves.
    set_groups(&s, "bob", &["DEVELOPERS"]);
    set_groups(&s, "alice", &[]);
    assert_eq!(all_agree(&s, &bob, "feed=npm-internal", "PUT"), 200);
    assert_eq!(all_agree(&s, &alice, "feed=npm-internal", "PUT"), 403);
    assert_eq!(all_agree(&s, &alice, "feed=anything", "GET"), 403);
    assert_eq!(
        all_agree(&s, &alice, "feedGroup=public&permission=promote", "GET"),
        200,
        "her own grant stays"
    );
}

fn a_covering_deny_beats_any_grant(backend: Backend) {
    let mut s = TestServer::start(backend);
    grant_by_sql(
        &mut s,
        &[
            allow("group Developers", "Manage Feed"),
            deny("user jsmith", "Publish Packages").on_feed("npm-internal"),
            deny("group Developers", "Delete Packages").on_group("frozen"),
            deny("user alice", "View & Download Packages").on_feed("secret"),
        ],
    );
    let jsmith = user_with_credentials(&s, "jsmith", &["Developers"]);
    let alice = user_with_credentials(&s, "alice", &["Developers"]);
    #[rustfmt::skip]
    let table: &[(&Creds, &str, &str, u16)] = &[
        (&jsmith, "feed=npm-internal", "PUT", 403),
        (&jsmith, "feed=npm-internal", "GET", 403),
        (&jsmith, "feed=npm-internal&permission=promote", "GET", 200),
        (&jsmith, "feed=other", "PUT", 200),
        (&alice, "feed=npm-internal", "PUT", 200),
        (&alice, "feed=x&feedGroup=frozen", "DELETE", 403),
        (&alice, "feed=x&feedGroup=frozen", "GET", 403),
        (&alice, "feed=x&feedGroup=frozen&permission=add", "GET", 200),
        (&alice, "feed=x", "DELETE", 200),
        (&alice, "feed=secret", "GET", 403),
    ];
    for (i, (who, query, method, expected)) in table.iter().enumerate() {
        assert_eq!(
            all_agree(&s, who, query, method),
            *expected,
            "row {i}: {query} {method}"
        );
    }
    // A deny on the user beats Administer through a group, for feeds.
    set_groups(&s, "alice", &["Developers", "Administrators"]);
    assert_eq!(all_agree(&s, &alice, "feed=secret", "GET"), 403);
    assert_eq!(all_agree(&s, &alice, "feed=open", "DELETE"), 200);
    assert_eq!(
        all_agree(&s, &alice, "systemApi=sca", "GET"),
        200,
        "an administrator"
    );
}

fn anonymous_opens_only_what_it_is_granted(backend: Backend) {
    let mut s = TestServer::start(backend);
    assert_eq!(
        forward(&s, "feed=open", &[]).status(),
        401,
        "nothing by default"
    );
    grant_by_sql(
        &mut s,
        &[allow("user Anonymous", "View & Download Packages").on_feed("open")],
    );
    let r = forward(&s, "feed=OPEN", &[]);
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "x-latchkey-principal").as_deref(),
        Some("user Anonymous")
    );
    assert_eq!(header(&r, "x-latchkey-user").as_deref(), Some("Anonymous"));
    assert_eq!(header(&r, "x-latchkey-key-id"), None);
    let put = client()
        .get(s.url(&format!("{FORWARD}?feed=open")))
        .header("X-Original-Method", "PUT")
        .send()
        .unwrap();
    assert_eq!(put.status(), 401, "only what is granted");
    assert_eq!(
        put.headers()["www-authenticate"].to_str().unwrap(),
        "Basic realm=\"Latchkey\""
    );
    assert_eq!(forward(&s, "feed=closed", &[]).status(), 401);
    assert_eq!(
        forward(&s, "", &[]).status(),
        401,
        "Anonymous is not a valid credential"
    );
    // A wrong credential is not turned into Anonymous.
    assert_eq!(
        forward(&s, "feed=open", &[("X-ApiKey", "lk_wrong")]).status(),
        401
    );
    // A real user does not inherit Anonymous's permissions.
    let bob = user_with_credentials(&s, "bob", &[]);
    assert_eq!(
        forward(&s, "feed=open", &[("X-ApiKey", &bob.key)]).status(),
        403
    );
    // Anonymous cannot log in.
    let r = forward(&s, "feed=open", &[("Authorization", &basic("Anonymous:"))]);
    assert_eq!(r.status(), 401);
}

fn permission_and_group_changes_apply_to_the_very_next_request(backend: Backend) {
    let s = TestServer::start(backend);
    let alice = user_with_credentials(&s, "alice", &[]);
    assert_eq!(all_agree(&s, &alice, "feed=f", "PUT"), 403);
    let id = grant(
        &s,
        json!({"user": "alice", "task": "Publish Packages", "feed": "f"}),
    );
    assert_eq!(
        all_agree(&s, &alice, "feed=f", "PUT"),
        200,
        "a grant at once"
    );
    revoke(&s, id);
    assert_eq!(
        all_agree(&s, &alice, "feed=f", "PUT"),
        403,
        "a removal at once"
    );
    group(&s, "/api/security/groups/add", "Publishers", &["alice"]);
    grant(
        &s,
        json!({"group": "Publishers", "task": "Publish Packages"}),
    );
    assert_eq!(all_agree(&s, &alice, "feed=f", "PUT"), 200);
    let deny = grant(
        &s,
        json!({"user": "alice", "task": "Publish Packages", "feed": "f", "deny": true}),
    );
    assert_eq!(
        all_agree(&s, &alice, "feed=f", "PUT"),
        403,
        "a deny at once"
    );
    revoke(&s, deny);
    assert_eq!(all_agree(&s, &alice, "feed=f", "PUT"), 200);
    group(&s, "/api/security/groups/edit", "Publishers", &[]);
    assert_eq!(
        all_agree(&s, &alice, "feed=f", "PUT"),
        403,
        "a member removed at once"
    );
    group(&s, "/api/security/groups/edit", "Publishers", &["alice"]);
    assert_eq!(all_agree(&s, &alice, "feed=f", "PUT"), 200);
    let r = client()
        .post(s.url("/api/security/groups/delete?group=Publishers"))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        all_agree(&s, &alice, "feed=f", "PUT"),
        403,
        "a group deleted at once"
    );
}

fn disabled_pseudo_keys_are_invalid_but_logins_still_work(backend: Backend) {
    let s = TestServer::start_with(
        backend,
        Options {
            args: vec!["--pseudo-keys".into(), "false".into()],
            ..Default::default()
        },
    );
    let pseudo = s.admin();
    let bearer = format!("Bearer {pseudo}");
    for headers in [
        [("X-ApiKey", pseudo.as_str())],
        [("Authorization", bearer.as_str())],
    ] {
        let r = forward(&s, "feed=f", &headers);
        assert_eq!(r.status(), 401, "{headers:?}");
        assert!(r.headers().contains_key("www-authenticate"));
    }
    let login = basic(&format!("Admin:{ADMIN_PASSWORD}"));
    assert_eq!(
        forward(&s, "feed=f", &[("Authorization", &login)]).status(),
        200
    );
    let r = post_json(&s.url("/api/api-keys/verify"), &json!({"key": pseudo}))
        .send()
        .unwrap();
    assert_eq!(
        r.json::<Value>().unwrap(),
        json!({"valid": false, "code": "NOT_FOUND"})
    );
}
