//! Last use and access logs (`usage.md` sections 1 and 2). The servers run
//! with the test-only `LATCHKEY_USAGE_FLUSH_MS` so that uses and entries are
//! written within milliseconds instead of a minute.

use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{client, full_control, post_json, Backend, Options, TestServer};

both_backends!(
    last_use_is_recorded_by_api_requests_forward_auth_and_verify,
    unused_for_lists_keys_not_used_for_that_long,
    each_logging_level_records_exactly_what_it_should,
    no_secret_reaches_any_log_entry,
    bodies_are_cut_at_64_kib_and_marked,
    pseudo_keys_and_logins_are_not_logged,
    forward_auth_and_verify_checks_record_the_original_request_and_verdict,
    who_may_read_a_log_is_who_may_delete_the_key,
    logs_of_deleted_keys_stay_readable_by_administrators,
    logs_are_paged_newest_first,
    a_graceful_shutdown_writes_what_the_recorder_holds,
    retention_keeps_the_newest_entries_per_key,
    unused_for_pages_through_a_listing_of_several_pages,
    the_benchmark_knob_turns_last_use_tracking_off,
);

const LOGS: &str = "/api/api-keys/logs";

fn start(backend: Backend) -> TestServer {
    TestServer::start_with(
        backend,
        Options {
            env: vec![("LATCHKEY_USAGE_FLUSH_MS".into(), "50".into())],
            ..Options::default()
        },
    )
}

/// Polls `check` until it returns `Some` (the writer works in batches).
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn get(s: &TestServer, path: &str, credential: &str) -> Response {
    client()
        .get(s.url(path))
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
}

fn listed(s: &TestServer, query: &str) -> Vec<Value> {
    let r = get(s, &format!("/api/api-keys/list{query}"), &s.admin());
    assert_eq!(r.status(), 200);
    r.json().unwrap()
}

fn key_info(s: &TestServer, id: i32) -> Value {
    listed(s, "")
        .into_iter()
        .find(|k| k["id"] == id)
        .expect("key is listed")
}

/// A key's log as the admin reads it.
fn logs(s: &TestServer, id: i32) -> Vec<Value> {
    let r = get(s, &format!("{LOGS}?id={id}"), &s.admin());
    assert_eq!(r.status(), 200, "{}", r.text().unwrap_or_default());
    r.json().unwrap()
}

/// Waits until a key's log holds `n` entries; returns them.
fn logs_when(s: &TestServer, id: i32, n: usize) -> Vec<Value> {
    eventually(&format!("{n} entries of key {id}"), || {
        let l = logs(s, id);
        (l.len() >= n).then_some(l)
    })
}

fn logged(level: &str) -> Value {
    json!({"type": "system", "systemApis": ["full-control"], "logging": level})
}

fn last_use_is_recorded_by_api_requests_forward_auth_and_verify(backend: Backend) {
    let s = start(backend);
    let (api, api_text) = s.create_key(full_control());
    let (fwd, fwd_text) = s.create_key(full_control());
    let (ver, ver_text) = s.create_key(full_control());
    let (idle, _) = s.create_key(full_control());
    for id in [api, fwd, ver] {
        let k = key_info(&s, id);
        assert!(k.get("lastUsed").is_none(), "{k}");
        assert!(k["created"].as_str().unwrap().ends_with('Z'), "{k}");
    }
    assert_eq!(get(&s, "/api/api-keys/self", &api_text).status(), 200);
    let r = client()
        .get(s.url("/api/auth/forward"))
        .header("X-ApiKey", &fwd_text)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = post_json(&s.url("/api/api-keys/verify"), &json!({"key": ver_text}))
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap()["code"], "VALID");
    for id in [api, fwd, ver] {
        let k = eventually(&format!("last use of key {id}"), || {
            let k = key_info(&s, id);
            k.get("lastUsed").is_some().then_some(k)
        });
        assert_eq!(k["lastUsedFrom"], "127.0.0.1", "{k}");
        let used = proget_api::parse_date(k["lastUsed"].as_str().unwrap()).unwrap();
        let age = time::OffsetDateTime::now_utc() - used;
        assert!(age < time::Duration::seconds(60), "{k}");
    }
    assert!(key_info(&s, idle).get("lastUsed").is_none());
    // A failed authentication is no use.
    assert_eq!(get(&s, "/api/api-keys/self", "lk_nope").status(), 403);
    // The key's own description carries it too, after the next write.
    let own: Value = eventually("the last use in api-keys/self", || {
        let v: Value = get(&s, "/api/api-keys/self", &api_text).json().unwrap();
        v.get("lastUsed").is_some().then_some(v)
    });
    assert_eq!(own["lastUsedFrom"], "127.0.0.1");
}

fn unused_for_lists_keys_not_used_for_that_long(backend: Backend) {
    let s = start(backend);
    let (old_unused, _) = s.create_key(full_control());
    let (old_used_yesterday, _) = s.create_key(full_control());
    let (fresh, _) = s.create_key(full_control());
    let day = 86_400;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    s.execute_sql(&format!(
        "UPDATE api_keys SET created_at = {} WHERE id IN ({old_unused}, {old_used_yesterday})",
        now - 100 * day
    ));
    s.execute_sql(&format!(
        "UPDATE api_keys SET last_used = {}, last_used_from = '10.1.2.3' WHERE id = {old_used_yesterday}",
        now - day
    ));
    let ids = |query: &str| -> Vec<i64> {
        listed(&s, query)
            .iter()
            .map(|k| k["id"].as_i64().unwrap())
            .collect()
    };
    assert_eq!(ids("?unusedFor=90d"), [i64::from(old_unused)]);
    assert_eq!(
        ids("?unusedFor=12h"),
        [i64::from(old_unused), i64::from(old_used_yesterday)]
    );
    assert_eq!(
        ids("?unusedFor=1440m"),
        [i64::from(old_unused), i64::from(old_used_yesterday)]
    );
    assert!(ids("?unusedFor=200d").is_empty());
    assert!(!ids("").is_empty() && ids("").contains(&i64::from(fresh)));
    let k = key_info(&s, old_used_yesterday);
    assert_eq!(k["lastUsedFrom"], "10.1.2.3");
    for bad in ["90", "d", "-1d", "90w", "1.5d", "", "99999999999999999999d"] {
        let r = get(
            &s,
            &format!("/api/api-keys/list?unusedFor={bad}"),
            &s.admin(),
        );
        assert_eq!(r.status(), 400, "{bad}");
        assert!(r.text().unwrap().contains("unusedFor"), "{bad}");
    }
}

fn each_logging_level_records_exactly_what_it_should(backend: Backend) {
    let s = start(backend);
    let mut keys = Vec::new();
    for level in ["none", "request", "response", "both"] {
        let (id, text) = s.create_key(logged(level));
        let body = json!({"type": "feed", "feed": "f", "packagePermissions": ["view"], "displayName": level});
        let r = client()
            .post(s.url("/api/api-keys/create?x=1"))
            .header("X-ApiKey", &text)
            .header("content-type", "application/json")
            .header("user-agent", "usage-test/1.0")
            .body(body.to_string())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        keys.push((level, id));
    }
    // A marker request by the last key: once its entry is in, every
    // earlier batch has been written too.
    let (_, both) = keys[3];
    logs_when(&s, both, 1);
    for (level, id) in keys {
        let entries = if level == "none" {
            logs(&s, id)
        } else {
            logs_when(&s, id, 1)
        };
        if level == "none" {
            assert!(entries.is_empty(), "{entries:?}");
            continue;
        }
        assert_eq!(entries.len(), 1, "{level}: {entries:?}");
        let e = &entries[0];
        assert_eq!(e["method"], "POST");
        assert_eq!(e["path"], "/api/api-keys/create?x=1");
        assert_eq!(e["status"], 200);
        assert_eq!(e["address"], "127.0.0.1");
        assert_eq!(e["userAgent"], "usage-test/1.0");
        assert!(e["durationMs"].is_u64() && e["entryId"].is_i64(), "{e}");
        assert!(
            proget_api::parse_date(e["time"].as_str().unwrap()).is_ok(),
            "{e}"
        );
        assert!(e.get("truncated").is_none(), "{e}");
        let request = e.get("requestBody").and_then(Value::as_str);
        let response = e.get("responseBody").and_then(Value::as_str);
        match level {
            "request" => {
                assert!(request.unwrap().contains(r#""displayName":"request""#));
                assert!(response.is_none(), "{e}");
            }
            "response" => {
                assert!(request.is_none(), "{e}");
                let r: Value = serde_json::from_str(response.unwrap()).unwrap();
                assert_eq!(r["displayName"], "response");
                assert_eq!(r["key"], "«redacted»", "{r}");
            }
            _ => {
                assert!(request.unwrap().contains(r#""displayName":"both""#));
                let r: Value = serde_json::from_str(response.unwrap()).unwrap();
                assert_eq!(r["key"], "«redacted»", "{r}");
            }
        }
    }
}

fn no_secret_reaches_any_log_entry(backend: Backend) {
    let s = start(backend);
    let (id, text) = s.create_key(logged("both"));
    let mut secrets = vec![text.clone()];
    // Credentials through every channel that carries them in the request line or body.
    let r = client()
        .get(s.url(&format!("/api/api-keys/list?key={text}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(s.url("/api/api-keys/create"))
        .header("content-type", "application/json")
        .body(
            json!({"API_Key": text, "type": "feed", "feed": "f", "packagePermissions": ["view"]})
                .to_string(),
        )
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let created: Value = r.json().unwrap();
    secrets.push(created["key"].as_str().unwrap().to_owned());
    let r = client()
        .post(s.url("/api/api-keys/delete?id=999999"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("key={text}"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    // A chosen key text, in the request and in the response.
    let chosen = "my-chosen-key-text-0123456789";
    secrets.push(chosen.into());
    let r = post_json(
        &s.url("/api/api-keys/create"),
        &json!({"type": "system", "systemApis": ["feeds"], "key": chosen}),
    )
    .header("X-ApiKey", &text)
    .send()
    .unwrap();
    assert_eq!(r.status(), 200);
    // A password, on add and on edit.
    for (path, password) in [
        ("/api/security/users/add", "first-password-8f3k2"),
        ("/api/security/users/edit", "second-password-j4h2q"),
    ] {
        secrets.push(password.into());
        let r = post_json(
            &s.url(path),
            &json!({"name": "carol", "password": password, "groups": []}),
        )
        .header("X-ApiKey", &text)
        .send()
        .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
    // A forward-auth check with the key in the original URI.
    let r = client()
        .get(s.url("/api/auth/forward"))
        .header("X-Forwarded-Uri", format!("/feed?key={text}&q=1"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let entries = logs_when(&s, id, 7);
    let all = serde_json::to_string(&entries).unwrap();
    for secret in &secrets {
        assert!(!all.contains(secret.as_str()), "{secret} is in {all}");
    }
    assert!(all.contains("«redacted»"), "{all}");
    assert!(all.contains("carol"), "{all}");
    // Nor the audit trail of the same changes.
    let r = get(&s, "/api/audit/list?limit=1000", &s.admin());
    assert_eq!(r.status(), 200);
    let audit = r.text().unwrap();
    assert!(audit.contains("carol"), "{audit}");
    for secret in &secrets {
        assert!(!audit.contains(secret.as_str()), "{secret} is in {audit}");
    }
}

fn bodies_are_cut_at_64_kib_and_marked(backend: Backend) {
    let s = start(backend);
    let (id, text) = s.create_key(logged("both"));
    let long = "x".repeat(100 * 1024);
    let r = post_json(
        &s.url("/api/api-keys/create"),
        &json!({"type": "feed", "feed": "f", "packagePermissions": ["view"], "description": long}),
    )
    .header("X-ApiKey", &text)
    .send()
    .unwrap();
    let status = r.status().as_u16();
    let e = &logs_when(&s, id, 1)[0];
    assert_eq!(e["status"], status);
    assert_eq!(e["truncated"], true, "{}", e["responseBody"]);
    let request = e["requestBody"].as_str().unwrap();
    assert_eq!(request.len(), 64 * 1024);
    assert!(request.starts_with('{'));
    // A short body is kept whole.
    let r = get(&s, "/api/api-keys/self", &text);
    assert_eq!(r.status(), 200);
    let e = &logs_when(&s, id, 2)[0];
    assert!(e.get("truncated").is_none(), "{e}");
    assert!(e["responseBody"].as_str().unwrap().contains("\"id\""));
}

fn pseudo_keys_and_logins_are_not_logged(backend: Backend) {
    let s = start(backend);
    s.add_user("alice", "alice-password-123", &[]);
    let (id, text) = s.create_key(json!({"type": "personal", "user": "alice", "logging": "both"}));
    // Alice's pseudo-key and login act as the very user her logged key acts as.
    let pseudo = "alice:alice-password-123";
    assert_eq!(s.list_keys(pseudo).status(), 200);
    let r = client()
        .get(s.url("/api/api-keys/list"))
        .basic_auth("alice", Some("alice-password-123"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .get(s.url("/api/auth/forward"))
        .header("X-ApiKey", pseudo)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    // Then one request with the key, as a marker: only it is in the log.
    assert_eq!(s.list_keys(&text).status(), 200);
    let entries = logs_when(&s, id, 1);
    std::thread::sleep(Duration::from_millis(300));
    let entries_later = logs(&s, id);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries_later, entries);
    assert!(!serde_json::to_string(&entries)
        .unwrap()
        .contains("alice-password-123"));
}

fn forward_auth_and_verify_checks_record_the_original_request_and_verdict(backend: Backend) {
    let s = start(backend);
    let (id, text) = s.create_key(json!({
        "type": "feed", "feed": "internal", "packagePermissions": ["view"], "logging": "both"
    }));
    let forward = |method: &str, uri: &str| {
        client()
            .get(s.url("/api/auth/forward?feed=internal"))
            .header("X-ApiKey", &text)
            .header("X-Forwarded-Method", method)
            .header("X-Forwarded-Uri", uri)
            .header("user-agent", "proxy/2")
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(forward("GET", "/npm/internal/pkg?password=abc&v=1"), 200);
    assert_eq!(forward("PUT", "/npm/internal/pkg"), 403);
    let r = post_json(
        &s.url("/api/api-keys/verify"),
        &json!({"key": text, "feed": "internal", "permission": "add"}),
    )
    .send()
    .unwrap();
    assert_eq!(r.json::<Value>().unwrap()["code"], "FORBIDDEN");
    let r = post_json(
        &s.url("/api/api-keys/verify"),
        &json!({"key": text, "feed": "internal"}),
    )
    .send()
    .unwrap();
    assert_eq!(r.json::<Value>().unwrap()["code"], "VALID");
    let entries = logs_when(&s, id, 4);
    let lines: Vec<(String, String, u64, String)> = entries
        .iter()
        .map(|e| {
            assert!(e.get("requestBody").is_none(), "{e}");
            assert!(e.get("responseBody").is_none(), "{e}");
            assert_eq!(e["address"], "127.0.0.1");
            (
                e["method"].as_str().unwrap().to_owned(),
                e["path"].as_str().unwrap().to_owned(),
                e["status"].as_u64().unwrap(),
                e["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let line = |m: &str, p: &str, st: u64, v: &str| (m.into(), p.into(), st, v.into());
    assert_eq!(
        lines,
        [
            line("POST", "/api/api-keys/verify", 200, "allowed"),
            line("POST", "/api/api-keys/verify", 200, "forbidden"),
            line("PUT", "/npm/internal/pkg", 403, "forbidden"),
            line(
                "GET",
                "/npm/internal/pkg?password=«redacted»&v=1",
                200,
                "allowed"
            ),
        ]
    );
    assert_eq!(entries[3]["userAgent"], "proxy/2");
}

fn who_may_read_a_log_is_who_may_delete_the_key(backend: Backend) {
    let s = start(backend);
    s.add_user("alice", "alice-password-123", &[]);
    s.add_user("bob", "bob-password-1234", &[]);
    let (id, text) =
        s.create_key(json!({"type": "personal", "user": "alice", "logging": "request"}));
    let (_, feed_text) = s.create_key(json!({
        "type": "feed", "feed": "f", "packagePermissions": ["view"]
    }));
    assert_eq!(s.list_keys(&text).status(), 200);
    logs_when(&s, id, 1);
    let status = |credential: Option<&str>, query: &str| {
        let mut r = client().get(s.url(&format!("{LOGS}?{query}")));
        if let Some(c) = credential {
            r = r.header("X-ApiKey", c);
        }
        r.send().unwrap().status().as_u16()
    };
    let q = format!("id={id}");
    assert_eq!(status(Some(&s.admin()), &q), 200);
    assert_eq!(status(Some("alice:alice-password-123"), &q), 200);
    assert_eq!(status(Some(&text), &q), 200, "a key may read its own log");
    assert_eq!(status(Some("bob:bob-password-1234"), &q), 403);
    assert_eq!(status(Some(&feed_text), &q), 403);
    assert_eq!(status(None, &q), 403);
    assert_eq!(status(Some("lk_wrong"), &q), 403);
    assert_eq!(status(Some(&s.admin()), "id=999999"), 404);
    assert_eq!(status(Some("alice:alice-password-123"), "id=999999"), 404);
    for bad in [
        "",
        "id=x",
        "id=",
        &format!("{q}&limit=0"),
        &format!("{q}&limit=1001"),
        &format!("{q}&limit=ten"),
        &format!("{q}&before=0"),
        &format!("{q}&before=x"),
    ] {
        assert_eq!(status(Some(&s.admin()), bad), 400, "{bad}");
    }
    // Checks before disclosure: a caller without management access learns nothing.
    assert_eq!(status(Some(&feed_text), "id=x"), 400);
    assert_eq!(status(Some(&feed_text), "id=999999"), 403);
}

fn logs_of_deleted_keys_stay_readable_by_administrators(backend: Backend) {
    let s = start(backend);
    s.add_user("alice", "alice-password-123", &[]);
    let (id, text) =
        s.create_key(json!({"type": "personal", "user": "alice", "logging": "request"}));
    assert_eq!(s.list_keys(&text).status(), 200);
    logs_when(&s, id, 1);
    assert_eq!(s.delete_key(id, &s.admin()).status(), 200);
    let entries = logs(&s, id);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["path"], "/api/api-keys/list");
    let r = get(&s, &format!("{LOGS}?id={id}"), "alice:alice-password-123");
    assert_eq!(r.status(), 404, "the owner may no longer read it");
}

fn logs_are_paged_newest_first(backend: Backend) {
    let s = start(backend);
    let (id, text) = s.create_key(logged("request"));
    for i in 0..5 {
        let r = get(&s, &format!("/api/api-keys/self?n={i}"), &text);
        assert_eq!(r.status(), 200);
        // In order: each entry in before the next request.
        logs_when(&s, id, i + 1);
    }
    let page = |query: &str| -> Vec<Value> {
        let r = get(&s, &format!("{LOGS}?id={id}{query}"), &s.admin());
        assert_eq!(r.status(), 200);
        r.json().unwrap()
    };
    let paths = |entries: &[Value]| -> Vec<String> {
        entries
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect()
    };
    let first = page("&limit=2");
    assert_eq!(
        paths(&first),
        ["/api/api-keys/self?n=4", "/api/api-keys/self?n=3"]
    );
    let next = page(&format!("&limit=2&before={}", first[1]["entryId"]));
    assert_eq!(
        paths(&next),
        ["/api/api-keys/self?n=2", "/api/api-keys/self?n=1"]
    );
    let last = page(&format!("&before={}", next[1]["entryId"]));
    assert_eq!(paths(&last), ["/api/api-keys/self?n=0"]);
    assert!(page(&format!("&before={}", last[0]["entryId"])).is_empty());
    assert_eq!(page("").len(), 5);
}

fn a_graceful_shutdown_writes_what_the_recorder_holds(backend: Backend) {
    // The default timing: a one-second batch interval, so the use and the
    // entry are still in memory when the server is told to stop.
    let mut s = TestServer::start(backend);
    let (id, text) = s.create_key(logged("request"));
    assert_eq!(get(&s, "/api/api-keys/self", &text).status(), 200);
    assert!(s.terminate().success());
    s.restart();
    let entries = logs(&s, id);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["path"], "/api/api-keys/self");
    assert_eq!(key_info(&s, id)["lastUsedFrom"], "127.0.0.1");
}

fn retention_keeps_the_newest_entries_per_key(backend: Backend) {
    let s = TestServer::start_with(
        backend,
        Options {
            env: vec![("LATCHKEY_USAGE_FLUSH_MS".into(), "50".into())],
            args: vec!["--access-log-max-per-key=2".into()],
            ..Options::default()
        },
    );
    let (id, text) = s.create_key(logged("request"));
    for i in 0..5 {
        assert_eq!(
            get(&s, &format!("/api/api-keys/self?n={i}"), &text).status(),
            200
        );
    }
    // Written, then pruned in the background down to the newest two.
    let kept = eventually("pruning down to two entries", || {
        let l = logs(&s, id);
        let paths: Vec<String> = l
            .iter()
            .map(|e| e["path"].as_str().unwrap().to_owned())
            .collect();
        (paths.first().is_some_and(|p| p.ends_with("n=4")) && paths.len() == 2).then_some(paths)
    });
    assert_eq!(kept, ["/api/api-keys/self?n=4", "/api/api-keys/self?n=3"]);
    // Entries older than --access-log-days go too.
    s.execute_sql(&format!(
        "UPDATE access_log SET time_ms = time_ms - 2678400000 WHERE key_id = {id}"
    ));
    eventually("pruning entries older than 30 days", || {
        logs(&s, id).is_empty().then_some(())
    });
}

fn unused_for_pages_through_a_listing_of_several_pages(backend: Backend) {
    let s = start(backend);
    let (creator_id, creator) = s.create_key(full_control());
    // 1,200 more keys: the administrator's listing spans two pages of 1,000.
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let (s, creator) = (&s, &creator);
            scope.spawn(move || {
                for _ in 0..300 {
                    let body = json!({"type": "system", "systemApis": ["sca"]});
                    let r = post_json(&s.url("/api/api-keys/create"), &body)
                        .header("X-ApiKey", creator)
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            });
        }
    });
    let long_ago = time::OffsetDateTime::now_utc().unix_timestamp() - 100 * 86_400;
    s.execute_sql(&format!(
        "UPDATE api_keys SET created_at = {long_ago} WHERE id % 3 = 0"
    ));
    let r = get(&s, "/api/api-keys/list?unusedFor=90d", &creator);
    assert_eq!(r.status(), 200);
    let listed: Vec<Value> = r.json().expect("one valid JSON array");
    let ids: Vec<i64> = listed.iter().map(|k| k["id"].as_i64().unwrap()).collect();
    let expected: Vec<i64> = (i64::from(creator_id)..=i64::from(creator_id) + 1200)
        .filter(|id| id % 3 == 0)
        .collect();
    assert_eq!(ids, expected);
}

fn the_benchmark_knob_turns_last_use_tracking_off(backend: Backend) {
    let s = TestServer::start_with(
        backend,
        Options {
            env: vec![
                ("LATCHKEY_USAGE_FLUSH_MS".into(), "50".into()),
                ("LATCHKEY_USAGE_TRACKING".into(), "off".into()),
            ],
            ..Options::default()
        },
    );
    let (id, text) = s.create_key(logged("request"));
    assert_eq!(get(&s, "/api/api-keys/self", &text).status(), 200);
    // The access log still works: once its entry is in, so would a use be.
    logs_when(&s, id, 1);
    std::thread::sleep(Duration::from_millis(200));
    assert!(key_info(&s, id).get("lastUsed").is_none());
}
