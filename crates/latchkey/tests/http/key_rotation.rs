//! `POST /api/api-keys/rotate?id=N[&grace=S]` (`operations.md` section 3):
//! every status, the old text refused at once or after the grace period,
//! the audit entry, and the new text redacted from access logs.

use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{client, feed_key, full_control, personal, Backend, Options, TestServer};

both_backends!(
    rotation_keeps_the_key_and_refuses_the_old_text_at_once,
    with_a_grace_period_both_texts_work_until_it_ends,
    a_key_deleted_during_its_grace_period_is_refused_by_both_texts,
    rotation_statuses_follow_delete,
    every_key_may_rotate_itself,
    the_new_text_is_redacted_from_the_access_log,
);

fn rotate(s: &TestServer, query: &str, credential: &str) -> Response {
    client()
        .post(s.url(&format!("/api/api-keys/rotate?{query}")))
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
}

/// Rotates as the admin; returns the answer, which must be a `200`.
fn rotated(s: &TestServer, query: &str) -> Value {
    let r = rotate(s, query, &s.admin());
    assert_eq!(r.status(), 200, "{query}");
    r.json().unwrap()
}

fn listed(s: &TestServer, id: i64) -> Value {
    let list: Vec<Value> = s.list_keys(&s.admin()).json().unwrap();
    list.into_iter()
        .find(|k| k["id"] == id)
        .expect("the key is listed")
}

fn rotation_keeps_the_key_and_refuses_the_old_text_at_once(backend: Backend) {
    let s = TestServer::start(backend);
    let info = json!({"type": "feed", "feed": "npm", "packagePermissions": ["view", "add"],
        "displayName": "CI", "description": "d", "logging": "request"});
    let (id, old) = s.create_key(info);
    assert_eq!(s.list_keys(&old).status(), 403, "a feed key cannot list");
    let before = listed(&s, id.into());
    let answer = rotated(&s, &format!("id={id}"));
    let new = answer["key"].as_str().expect("the new text").to_owned();
    assert!(new.starts_with("lk_") && new != old, "{new}");
    let mut same = answer.clone();
    same.as_object_mut().unwrap().remove("key");
    assert_eq!(same, before, "same id, type, scopes, name and logging");
    assert!(answer.get("graceUntil").is_none());

    let verify = |text: &str| {
        client()
            .post(s.url("/api/api-keys/verify"))
            .header("X-ApiKey", s.admin())
            .json(&json!({"key": text}))
            .send()
            .unwrap()
    };
    let old_verdict: Value = verify(&old).json().unwrap();
    let new_verdict: Value = verify(&new).json().unwrap();
    assert_eq!(old_verdict["valid"], false, "{old_verdict}");
    assert_eq!(new_verdict["valid"], true, "{new_verdict}");

    // The audit trail names the rotation; it holds neither text.
    let r = client()
        .get(s.url("/api/audit/list?action=apikey.rotate"))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    let audit = r.text().unwrap();
    assert!(audit.contains(&format!("key {id}")), "{audit}");
    assert!(!audit.contains(&new) && !audit.contains(&old));
}

fn with_a_grace_period_both_texts_work_until_it_ends(backend: Backend) {
    let s = TestServer::start(backend);
    let (id, old) = s.create_key(full_control());
    let answer = rotated(&s, &format!("id={id}&grace=3"));
    let new = answer["key"].as_str().unwrap().to_owned();
    assert!(answer["graceUntil"].is_string(), "{answer}");
    assert_eq!(s.list_keys(&old).status(), 200, "the old text still works");
    assert_eq!(s.list_keys(&new).status(), 200, "so does the new one");
    assert_eq!(listed(&s, id.into())["graceUntil"], answer["graceUntil"]);
    // The old text (cached on SQLite by now) stops when the grace ends.
    let start = Instant::now();
    while s.list_keys(&old).status() == 200 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the grace never ended"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "refused too early"
    );
    assert_eq!(s.list_keys(&old).status(), 403);
    assert_eq!(s.list_keys(&new).status(), 200);

    // A second rotation without grace ends the first one's at once.
    let (id2, old2) = s.create_key(full_control());
    let first = rotated(&s, &format!("id={id2}&grace=600"));
    let middle = first["key"].as_str().unwrap().to_owned();
    assert_eq!(s.list_keys(&old2).status(), 200);
    let second = rotated(&s, &format!("id={id2}"));
    let last = second["key"].as_str().unwrap();
    assert_eq!(s.list_keys(&old2).status(), 403, "the first text");
    assert_eq!(s.list_keys(&middle).status(), 403, "the second text");
    assert_eq!(s.list_keys(last).status(), 200);
    assert!(listed(&s, id2.into()).get("graceUntil").is_none());
}

fn a_key_deleted_during_its_grace_period_is_refused_by_both_texts(backend: Backend) {
    let s = TestServer::start(backend);
    let (id, old) = s.create_key(full_control());
    let new = rotated(&s, &format!("id={id}&grace=600"))["key"]
        .as_str()
        .unwrap()
        .to_owned();
    // Both texts are looked up (and, on SQLite, cached) before the delete.
    assert_eq!(s.list_keys(&old).status(), 200);
    assert_eq!(s.list_keys(&new).status(), 200);
    assert_eq!(s.delete_key(id, &s.admin()).status(), 200);
    assert_eq!(s.list_keys(&old).status(), 403);
    assert_eq!(s.list_keys(&new).status(), 403);
}

fn rotation_statuses_follow_delete(backend: Backend) {
    let s = TestServer::start(backend);
    let admin = s.admin();
    // No credential: 403 whatever the query.
    for query in ["id=1000", "id=abc", ""] {
        let r = client()
            .post(s.url(&format!("/api/api-keys/rotate?{query}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 403, "{query}");
    }
    // Bad id or grace: 400 naming the parameter.
    for (query, names) in [
        ("", "id"),
        ("id=abc", "id"),
        ("id=1&id=2", "id"),
        ("id=1000&grace=86401", "grace"),
        ("id=1000&grace=-1", "grace"),
        ("id=1000&grace=1.5", "grace"),
        ("id=1000&grace=", "grace"),
        ("id=1000&grace=1&grace=2", "grace"),
    ] {
        let r = rotate(&s, query, &admin);
        assert_eq!(r.status(), 400, "{query}");
        assert!(r.text().unwrap().contains(names), "{query}");
    }
    // Unknown id: 404.
    assert_eq!(rotate(&s, "id=999999", &admin).status(), 404);
    assert_eq!(rotate(&s, "id=999999&grace=86400", &admin).status(), 404);
    // Another method: 405 with Allow.
    let r = client()
        .get(s.url("/api/api-keys/rotate?id=1000"))
        .header("X-ApiKey", &admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    // A user rotates their own personal keys only; others get 403 before 404.
    s.add_user("alice", "alice-password-1", &[]);
    s.add_user("bob", "bob-password-1", &[]);
    let (alices, _) = s.create_key(personal("alice"));
    let (bobs, _) = s.create_key(personal("bob"));
    let (system, _) = s.create_key(full_control());
    let alice = "alice:alice-password-1";
    assert_eq!(rotate(&s, &format!("id={alices}"), alice).status(), 200);
    assert_eq!(rotate(&s, &format!("id={bobs}"), alice).status(), 403);
    assert_eq!(rotate(&s, &format!("id={system}"), alice).status(), 403);
    // A feed key has no key management: 403, existing id or not.
    let (_, feed) = s.create_key(feed_key());
    assert_eq!(rotate(&s, &format!("id={bobs}"), &feed).status(), 403);
    assert_eq!(rotate(&s, "id=999999", &feed).status(), 403);
    // A full-control system key rotates any key.
    let (_, full) = s.create_key(full_control());
    assert_eq!(rotate(&s, &format!("id={bobs}"), &full).status(), 200);
}

fn every_key_may_rotate_itself(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password-1", &[]);
    let limited = json!({"type": "system", "systemApis": ["feeds"]});
    for info in [full_control(), limited, feed_key(), personal("alice")] {
        let (id, old) = s.create_key(info.clone());
        let r = rotate(&s, &format!("id={id}"), &old);
        assert_eq!(r.status(), 200, "{info}");
        let new: Value = r.json().unwrap();
        let new = new["key"].as_str().unwrap();
        assert_eq!(
            rotate(&s, &format!("id={id}"), &old).status(),
            403,
            "{info}: old text"
        );
        assert_eq!(
            rotate(&s, &format!("id={id}"), new).status(),
            200,
            "{info}: new text"
        );
    }
}

fn the_new_text_is_redacted_from_the_access_log(backend: Backend) {
    let s = TestServer::start_with(
        backend,
        Options {
            env: vec![("LATCHKEY_USAGE_FLUSH_MS".into(), "50".into())],
            ..Options::default()
        },
    );
    let info = json!({"type": "system", "systemApis": ["full-control"], "logging": "both"});
    let (id, old) = s.create_key(info);
    let r = rotate(&s, &format!("id={id}&grace=600"), &old);
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().unwrap();
    let new = answer["key"].as_str().unwrap().to_owned();
    let start = Instant::now();
    let entries = loop {
        let r = client()
            .get(s.url(&format!("/api/api-keys/logs?id={id}")))
            .header("X-ApiKey", s.admin())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        let entries: Vec<Value> = r.json().unwrap();
        if !entries.is_empty() {
            break entries;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "no log entry");
        std::thread::sleep(Duration::from_millis(50));
    };
    let all = serde_json::to_string(&entries).unwrap();
    assert!(all.contains("/api/api-keys/rotate"), "{all}");
    assert!(all.contains("«redacted»"), "{all}");
    assert!(!all.contains(&new), "{all}");
    assert!(!s.log().contains(&new), "nor in the server's log");
}
