//! Rules for every endpoint: 404 and 413, plain-text errors, and a request
//! log that names the caller but never a secret.

use reqwest::blocking::Response;
use serde_json::json;

use crate::both_backends;
use crate::common::{
    client, full_control, personal, post_json, Backend, TestServer, ADMIN_PASSWORD, TEST_SECRET,
};

both_backends!(
    unknown_paths_are_404_text_plain,
    a_body_over_256_kib_is_413_and_one_of_256_kib_is_read,
    every_error_response_is_text_plain_utf8,
    the_log_has_one_line_per_request_with_the_caller_and_no_secrets,
);

const TEXT_PLAIN: &str = "text/plain; charset=utf-8";

fn unknown_paths_are_404_text_plain(backend: Backend) {
    let s = TestServer::start(backend);
    for path in [
        "/nope",
        "/api/api-keys",
        "/api/api-keys/nope",
        "/api/api-keys/list/extra",
        "/api/security/users",
    ] {
        for credential in [None, Some(s.admin())] {
            let mut request = client().get(s.url(path));
            if let Some(c) = &credential {
                request = request.header("X-ApiKey", c);
            }
            let r = request.send().unwrap();
            assert_eq!(r.status(), 404, "{path}");
            assert_eq!(r.headers()["content-type"], TEXT_PLAIN, "{path}");
        }
    }
}

/// A create body of exactly `len` bytes: a valid key padded with an unknown property.
fn padded_create_body(len: usize) -> String {
    let base = json!({"type": "system", "systemApis": ["sca"], "padding": ""}).to_string();
    let padding = "x".repeat(len - base.len());
    let body = json!({"type": "system", "systemApis": ["sca"], "padding": padding}).to_string();
    assert_eq!(body.len(), len);
    body
}

fn a_body_over_256_kib_is_413_and_one_of_256_kib_is_read(backend: Backend) {
    let s = TestServer::start(backend);
    let create = |body: String| {
        client()
            .post(s.url("/api/api-keys/create"))
            .header("content-type", "application/json")
            .header("X-ApiKey", s.admin())
            .body(body)
            .send()
            .unwrap()
    };
    let r = create(padded_create_body(256 * 1024));
    assert_eq!(r.status(), 200, "exactly 256 KiB is accepted");
    // Bodies declared larger are refused from their Content-Length, before
    // they are sent (sending them whole would race the server closing the
    // connection).
    let addr = s.base.trim_start_matches("http://");
    for len in [256 * 1024 + 1, 1024 * 1024] {
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /api/api-keys/create HTTP/1.1\r\nHost: {addr}\r\nX-ApiKey: {}\r\n\
             Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n{{",
            s.admin(),
        );
        std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
        stream
            .set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut answer = [0u8; 512];
        let n = std::io::Read::read(&mut stream, &mut answer).unwrap();
        let answer = String::from_utf8_lossy(&answer[..n]).to_lowercase();
        assert!(answer.starts_with("http/1.1 413 "), "{len} bytes: {answer}");
        assert!(
            answer.contains("content-type: text/plain; charset=utf-8"),
            "{answer}"
        );
    }
    let listed: Vec<serde_json::Value> = s.list_keys(&s.admin()).json().unwrap();
    assert_eq!(listed.len(), 1, "no oversized request created a key");
}

fn every_error_response_is_text_plain_utf8(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let admin = s.admin();
    let cases: Vec<(u16, &str, Response)> = vec![
        (
            400,
            "malformed JSON",
            s.create_key_as(&admin, &json!("not an object")),
        ),
        (
            400,
            "rule violated",
            s.create_key_as(&admin, &json!({"type": "system"})),
        ),
        (400, "bad id", s.delete_key("abc", &admin)),
        (
            403,
            "no credential",
            client().get(s.url("/api/api-keys/list")).send().unwrap(),
        ),
        (
            403,
            "not authorized",
            s.create_key_as("alice:alice-password", &full_control()),
        ),
        (404, "unknown key id", s.delete_key(99_999, &admin)),
        (
            404,
            "unknown path",
            client().get(s.url("/no/such/path")).send().unwrap(),
        ),
        (
            405,
            "wrong method",
            client().get(s.url("/api/api-keys/create")).send().unwrap(),
        ),
        (
            405,
            "wrong method",
            client().post(s.url("/api/api-keys/list")).send().unwrap(),
        ),
        (
            413,
            "body too large",
            post_json(
                &s.url("/api/api-keys/create"),
                &json!({"p": "x".repeat(300 * 1024)}),
            )
            .header("X-ApiKey", &admin)
            .send()
            .unwrap(),
        ),
    ];
    for (status, what, r) in cases {
        assert_eq!(r.status(), status, "{what}");
        assert_eq!(r.headers()["content-type"], TEXT_PLAIN, "{what}");
        assert!(
            !r.text().unwrap().is_empty(),
            "{what}: the body says what is wrong"
        );
    }
}

/// Log lines of the per-request event.
fn request_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(" request ") && l.contains("status="))
        .collect()
}

fn the_log_has_one_line_per_request_with_the_caller_and_no_secrets(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-secret-password", &[]);
    let (id, key) = s.create_key(full_control());
    let custom = "my-very-own-custom-key-text";
    let mut info = personal("alice");
    info["key"] = json!(custom);
    assert_eq!(s.create_key_as(&s.admin(), &info).status(), 200);
    let before = request_lines(&s.log()).len();

    let list = s.url("/api/api-keys/list");
    let statuses = [
        s.list_keys(&key).status(),
        client()
            .get(format!("{list}?key={key}"))
            .send()
            .unwrap()
            .status(),
        client()
            .get(&list)
            .basic_auth("api", Some(&key))
            .send()
            .unwrap()
            .status(),
        client()
            .get(&list)
            .basic_auth("alice", Some("alice-secret-password"))
            .send()
            .unwrap()
            .status(),
        s.list_keys(custom).status(),
        s.list_keys("alice:wrong-secret-guess").status(),
        client()
            .get(format!("{list}?key=lk_guessed-secret-key"))
            .send()
            .unwrap()
            .status(),
    ];
    assert_eq!(
        statuses.map(|c| c.as_u16()),
        [200, 200, 200, 200, 200, 403, 403]
    );

    let log = s.log();
    for secret in [
        key.as_str(),
        custom,
        ADMIN_PASSWORD,
        "alice-secret-password",
        "wrong-secret-guess",
        "guessed-secret-key",
        TEST_SECRET,
    ] {
        assert!(!log.contains(secret), "the log contains {secret:?}:\n{log}");
    }
    let lines = request_lines(&log);
    assert_eq!(
        lines.len() - before,
        statuses.len(),
        "one line per request:\n{log}"
    );
    let ours = &lines[before..];
    let caller_key = format!("caller=\"key {id}\"");
    for line in &ours[..3] {
        for part in [
            "GET",
            "path=\"/api/api-keys/list\"",
            "status=200",
            &caller_key,
        ] {
            assert!(line.contains(part), "{part} missing in {line}");
        }
        assert!(
            !line.contains("?key"),
            "the query string is not logged: {line}"
        );
    }
    assert!(ours[3].contains("caller=\"user alice\""), "{}", ours[3]);
    assert!(
        ours[4].contains("caller=\"key ") && ours[4].contains("status=200"),
        "{}",
        ours[4]
    );
    for line in &ours[5..] {
        assert!(
            line.contains("status=403") && !line.contains("caller="),
            "{line}"
        );
    }
}
