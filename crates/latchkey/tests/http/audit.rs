//! The audit trail: every change recorded with its actor, target and
//! address; who may read it; paging and filters; no secret in any entry;
//! refused changes leave no entry; limiter blocks, `reset-admin` and secret
//! rotation recorded; retention.

use std::time::{Duration, Instant};

use reqwest::blocking::Response;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{
    client, client_from, feed_key, full_control, personal, Backend, Options, TestServer,
    ADMIN_PASSWORD, TEST_SECRET,
};
use crate::permissions::{add_permission, get, post};

both_backends!(
    every_change_is_recorded_with_its_actor_target_and_address,
    only_administrators_and_full_control_keys_may_read_the_audit_trail,
    the_audit_trail_pages_newest_first_and_filters,
    bad_audit_list_parameters_are_400,
    no_secret_appears_in_any_audit_entry,
    refused_changes_leave_no_audit_entry,
    limiter_blocks_are_recorded,
    reset_admin_and_secret_rotation_are_recorded,
    old_entries_are_pruned_after_audit_days_and_kept_with_0,
    behind_a_trusted_proxy_the_forwarded_client_address_is_recorded,
);

/// `GET /api/audit/list?query` as the admin; asserts 200.
fn audit(s: &TestServer, query: &str) -> Vec<Value> {
    let r = get(s, &s.admin(), &format!("/api/audit/list{query}"));
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "{query}: {text}");
    serde_json::from_str(&text).unwrap()
}

/// The only entry with this action and target; checks its actor and address.
fn entry(entries: &[Value], action: &str, target: &str, actor: &str) -> Value {
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| e["action"] == action && e["target"] == target)
        .collect();
    assert_eq!(found.len(), 1, "one {action} of {target} in {entries:#?}");
    let e = found[0].clone();
    assert_eq!(e["actor"], actor, "{e}");
    assert_eq!(e["address"], "127.0.0.1", "{e}");
    assert!(
        e["id"].as_i64().is_some() && e["time"].as_str().is_some(),
        "{e}"
    );
    e
}

fn edit_user(s: &TestServer, credential: &str, body: &Value) {
    let r = post(s, credential, "/api/security/users/edit", body);
    assert_eq!(r.status(), 200);
}

fn delete_user(s: &TestServer, name: &str) -> Response {
    client()
        .delete(s.url(&format!("/api/security/users/delete?user={name}")))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap()
}

fn every_change_is_recorded_with_its_actor_target_and_address(backend: Backend) {
    let s = TestServer::start(backend);
    let admin = s.admin();
    let (k, key) = s.create_key(full_control());
    let r = post(
        &s,
        &key,
        "/api/security/users/add",
        &json!({"name": "bob", "password": "bob-password-1"}),
    );
    assert_eq!(r.status(), 200);
    edit_user(
        &s,
        &key,
        &json!({"name": "bob", "displayName": "Bob", "password": "bob-password-2"}),
    );
    let r = s.create_key_as(&key, &personal("bob"));
    assert_eq!(r.status(), 200);
    let own: Value = r.json().unwrap();
    let own_id = own["id"].as_i64().unwrap();
    let own_key = own["key"].as_str().unwrap().to_owned();
    assert_eq!(s.delete_key(own_id, &own_key).status(), 200);
    s.create_key(personal("bob"));
    s.create_key(personal("bob"));
    assert_eq!(delete_user(&s, "bob").status(), 200);

    s.add_user("carol", "carol-password-1", &[]);
    let r = post(
        &s,
        &admin,
        "/api/security/groups/add",
        &json!({"name": "Ops"}),
    );
    assert_eq!(r.status(), 200);
    let r = post(
        &s,
        &admin,
        "/api/security/groups/edit",
        &json!({"name": "Ops", "members": ["carol"]}),
    );
    assert_eq!(r.status(), 200);
    let p = add_permission(
        &s,
        &json!({"group": "Ops", "task": "Publish Packages", "feed": "npm"}),
    );
    let pid = p["id"].as_i64().unwrap();
    let r = client()
        .post(s.url(&format!("/api/security/permissions/delete?id={pid}")))
        .header("X-ApiKey", &admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(s.url("/api/security/groups/delete?group=Ops"))
        .header("X-ApiKey", &admin)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(s.delete_key(k, &admin).status(), 200);

    let all = audit(&s, "");
    let by_key = format!("key {k}");
    let e = entry(&all, "apikey.create", &by_key, "user Admin");
    assert_eq!(e["details"], json!({"type": "system"}));
    let e = entry(&all, "user.add", "user bob", &by_key);
    assert_eq!(e["details"], json!({"groups": []}));
    let e = entry(&all, "user.edit", "user bob", &by_key);
    assert_eq!(
        e["details"],
        json!({"changed": ["displayName"], "passwordChanged": true})
    );
    let e = entry(&all, "apikey.create", &format!("key {own_id}"), &by_key);
    assert_eq!(e["details"], json!({"type": "personal", "user": "bob"}));
    let e = entry(
        &all,
        "apikey.delete",
        &format!("key {own_id}"),
        &format!("key {own_id}"),
    );
    assert_eq!(e["details"], json!({"selfRevocation": true}));
    let e = entry(&all, "user.delete", "user bob", "user Admin");
    assert_eq!(e["details"], json!({"keysDeleted": 2}));
    let e = entry(&all, "group.add", "group Ops", "user Admin");
    assert_eq!(e["details"], json!({"members": []}));
    let e = entry(&all, "group.edit", "group Ops", "user Admin");
    assert_eq!(
        e["details"],
        json!({"members": ["carol"], "added": ["carol"], "removed": []})
    );
    let e = entry(
        &all,
        "permission.add",
        &format!("permission {pid}"),
        "user Admin",
    );
    assert_eq!(
        e["details"],
        json!({"subject": "group Ops", "task": "Publish Packages", "feed": "npm", "deny": false})
    );
    entry(
        &all,
        "permission.delete",
        &format!("permission {pid}"),
        "user Admin",
    );
    let e = entry(&all, "group.delete", "group Ops", "user Admin");
    assert_eq!(
        e["details"],
        json!({"members": ["carol"], "permissionsDeleted": 0})
    );
    let e = entry(&all, "apikey.delete", &by_key, "user Admin");
    assert_eq!(e["details"], json!({}), "not a self-revocation");
    assert_eq!(all[0]["action"], "apikey.delete", "newest first");
    assert_eq!(all[0]["target"], by_key.as_str());
    let first = all.last().unwrap();
    assert_eq!(
        (first["actor"].as_str(), first["action"].as_str()),
        (Some("system"), Some("user.add"))
    );
    assert!(
        first.get("address").is_none(),
        "the server's own change has no address"
    );
}

fn only_administrators_and_full_control_keys_may_read_the_audit_trail(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, full) = s.create_key(full_control());
    let (_, feeds) = s.create_key(json!({"type": "system", "systemApis": ["feeds", "sca"]}));
    let (_, feed) = s.create_key(feed_key());
    s.add_user("dave", "dave-password-1", &[]);
    let (_, dave_key) = s.create_key(personal("dave"));
    for caller in [s.admin(), full] {
        let r = get(&s, &caller, "/api/audit/list");
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["content-type"],
            "application/json; charset=utf-8"
        );
    }
    for caller in [
        String::new(),
        feeds,
        feed,
        dave_key,
        "dave:dave-password-1".into(),
        "wrong-key-text-0123456789".into(),
    ] {
        let r = get(&s, &caller, "/api/audit/list");
        assert_eq!(r.status(), 403, "read by {caller:?}");
        let body = r.text().unwrap();
        assert!(!body.contains("apikey"), "a 403 reveals nothing: {body}");
    }
}

fn the_audit_trail_pages_newest_first_and_filters(backend: Backend) {
    let s = TestServer::start(backend);
    let ids: Vec<i32> = (0..5).map(|_| s.create_key(full_control()).0).collect();
    assert_eq!(s.delete_key(ids[2], &s.admin()).status(), 200);
    // Admin's creation, five creates, one delete.
    let all = audit(&s, "");
    assert_eq!(all.len(), 7);
    let entry_ids: Vec<i64> = all.iter().map(|e| e["id"].as_i64().unwrap()).collect();
    assert!(entry_ids.windows(2).all(|w| w[0] > w[1]), "{entry_ids:?}");

    let page1 = audit(&s, "?limit=3");
    assert_eq!(page1, all[..3]);
    let last = page1[2]["id"].as_i64().unwrap();
    let page2 = audit(&s, &format!("?limit=3&before={last}"));
    assert_eq!(page2, all[3..6]);
    let last = page2[2]["id"].as_i64().unwrap();
    let page3 = audit(&s, &format!("?before={last}&limit=3"));
    assert_eq!(page3, all[6..]);
    let first = all[6]["id"].as_i64().unwrap();
    assert!(audit(&s, &format!("?before={first}")).is_empty());

    let target = format!("key {}", ids[2]);
    let about = audit(&s, &format!("?target=key%20{}", ids[2]));
    let actions: Vec<&str> = about
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["apikey.delete", "apikey.create"]);
    assert!(about.iter().all(|e| e["target"] == target.as_str()));
    let creates = audit(&s, "?action=apikey.create");
    assert_eq!(creates.len(), 5);
    let both = audit(
        &s,
        &format!("?action=apikey.create&target=key%20{}", ids[2]),
    );
    assert_eq!(both.len(), 1);
    let older = audit(
        &s,
        &format!("?action=apikey.create&limit=2&before={}", creates[1]["id"]),
    );
    assert_eq!(older, creates[2..4]);
    assert!(audit(&s, "?action=nothing.like.this").is_empty());
    // Other parameters (a credential may travel as one) are ignored.
    assert_eq!(audit(&s, "?unknown=1&limit=1000"), all);
}

fn bad_audit_list_parameters_are_400(backend: Backend) {
    let s = TestServer::start(backend);
    for query in [
        "?limit=0",
        "?limit=1001",
        "?limit=-1",
        "?limit=ten",
        "?before=0",
        "?before=-5",
        "?before=x",
        "?target=",
        "?action=",
        "?limit=1&limit=2",
        "?action=a&action=b",
    ] {
        let r = get(&s, &s.admin(), &format!("/api/audit/list{query}"));
        assert_eq!(r.status(), 400, "{query}");
        assert!(!r.text().unwrap().is_empty(), "{query}: the 400 says why");
    }
    // A caller who may not read gets 403 before the parameters are looked at.
    let (_, feed) = s.create_key(feed_key());
    assert_eq!(get(&s, &feed, "/api/audit/list?limit=0").status(), 403);
}

fn no_secret_appears_in_any_audit_entry(backend: Backend) {
    let s = TestServer::start(backend);
    let admin = s.admin();
    let mut secrets = vec![ADMIN_PASSWORD.to_owned(), TEST_SECRET.to_owned()];
    let (k, key) = s.create_key(full_control());
    secrets.push(key.clone());
    let custom = "my-own-chosen-key-text-42";
    let r = s.create_key_as(
        &admin,
        &json!({"type": "system", "systemApis": ["feeds"], "key": custom}),
    );
    assert_eq!(r.status(), 200);
    secrets.push(custom.into());
    s.add_user("erin", "erin-first-password", &["Administrators"]);
    secrets.push("erin-first-password".into());
    edit_user(
        &s,
        &key,
        &json!({"name": "erin", "password": "erin-second-password"}),
    );
    secrets.push("erin-second-password".into());
    let r = s.create_key_as("erin:erin-second-password", &personal("erin"));
    let erin: Value = r.json().unwrap();
    let erin_key = erin["key"].as_str().unwrap().to_owned();
    assert_eq!(
        s.delete_key(erin["id"].as_i64().unwrap(), &erin_key)
            .status(),
        200
    );
    secrets.push(erin_key);
    // A credential in the query string of a change.
    let r = client()
        .post(s.url(&format!("/api/api-keys/delete?id={k}&key={key}")))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(delete_user(&s, "erin").status(), 200);

    let text = get(&s, &admin, "/api/audit/list").text().unwrap();
    assert!(text.contains("passwordChanged"), "{text}");
    assert!(text.matches("apikey.").count() >= 5, "{text}");
    for secret in &secrets {
        assert!(
            !text.contains(secret.as_str()),
            "{secret} is in the audit trail: {text}"
        );
    }
    assert!(
        !text.contains("argon2"),
        "a password hash is in the audit trail: {text}"
    );
}

fn refused_changes_leave_no_audit_entry(backend: Backend) {
    let s = TestServer::start(backend);
    let before = audit(&s, "");
    // The last administrator.
    assert_eq!(delete_user(&s, "Admin").status(), 400);
    let r = post(
        &s,
        &s.admin(),
        "/api/security/users/edit",
        &json!({"name": "Admin", "groups": []}),
    );
    assert_eq!(r.status(), 400);
    // A duplicate, a missing key, a missing permission, bad input, a 403.
    let r = post(
        &s,
        &s.admin(),
        "/api/security/users/add",
        &json!({"name": "admin", "password": "another-password"}),
    );
    assert_eq!(r.status(), 400);
    assert_eq!(s.delete_key(4242, &s.admin()).status(), 404);
    let r = client()
        .post(s.url("/api/security/permissions/delete?id=4242"))
        .header("X-ApiKey", s.admin())
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = s.create_key_as(&s.admin(), &json!({"type": "nonsense"}));
    assert_eq!(r.status(), 400);
    let (_, feed) = s.create_key(feed_key());
    assert_eq!(s.create_key_as(&feed, &full_control()).status(), 403);
    let after = audit(&s, "");
    assert_eq!(
        after.len(),
        before.len() + 1,
        "only the feed key's creation: {after:#?}"
    );
    assert_eq!(after[0]["action"], "apikey.create");
}

fn limiter_blocks_are_recorded(backend: Backend) {
    let s = TestServer::start_with(
        backend,
        Options {
            args: ["--auth-failure-limit", "3", "--auth-block-seconds", "60"]
                .map(String::from)
                .to_vec(),
            ..Default::default()
        },
    );
    let attacker = client_from(7);
    for _ in 0..3 {
        let r = attacker
            .get(s.url("/api/api-keys/list"))
            .header("X-ApiKey", "not-a-key-at-all-000000")
            .send()
            .unwrap();
        assert_eq!(r.status(), 403);
    }
    let r = attacker
        .get(s.url("/api/api-keys/list"))
        .header("X-ApiKey", "not-a-key-at-all-000000")
        .send()
        .unwrap();
    assert_eq!(r.status(), 429);
    // Written off the request path: it appears shortly after.
    let deadline = Instant::now() + Duration::from_secs(10);
    let blocks = loop {
        let blocks = audit(&s, "?action=limiter.block");
        if !blocks.is_empty() || Instant::now() > deadline {
            break blocks;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(blocks.len(), 1, "{blocks:?}");
    let b = &blocks[0];
    assert_eq!(b["actor"], "system");
    assert_eq!(b["target"], "address 127.0.0.7");
    assert_eq!(b["address"], "127.0.0.7");
    assert_eq!(b["details"], json!({"seconds": 60, "failures": 3}));
    assert!(!b.to_string().contains("not-a-key-at-all"));
}

fn reset_admin_and_secret_rotation_are_recorded(backend: Backend) {
    let mut s = TestServer::start(backend);
    s.terminate();
    let out = crate::startup::reset_admin(&s, Some(ADMIN_PASSWORD));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.options_mut().env = vec![
        (
            "LATCHKEY_SECRET".into(),
            "a-brand-new-installation-secret-0123".into(),
        ),
        ("LATCHKEY_PREVIOUS_SECRET".into(), TEST_SECRET.into()),
    ];
    s.restart();
    let all = audit(&s, "");
    let reset: Vec<&Value> = all
        .iter()
        .filter(|e| e["action"] == "admin.reset")
        .collect();
    assert_eq!(reset.len(), 1, "{all:#?}");
    assert_eq!(reset[0]["actor"], "system");
    assert_eq!(reset[0]["target"], "user Admin");
    assert_eq!(reset[0]["details"]["passwordChanged"], true);
    let rotated: Vec<&Value> = all
        .iter()
        .filter(|e| e["action"] == "secret.rotate")
        .collect();
    assert_eq!(rotated.len(), 1, "{all:#?}");
    assert_eq!(rotated[0]["actor"], "system");
    assert_eq!(rotated[0]["details"], json!({}));
    let text = serde_json::to_string(&all).unwrap();
    assert!(!text.contains(TEST_SECRET) && !text.contains("a-brand-new-installation-secret"));
    // Started again with the same secrets: no second rotation entry.
    s.restart();
    assert_eq!(audit(&s, "?action=secret.rotate").len(), 1);
}

fn old_entries_are_pruned_after_audit_days_and_kept_with_0(backend: Backend) {
    let mut s = TestServer::start_with(
        backend,
        Options {
            args: vec!["--audit-days".into(), "0".into()],
            ..Default::default()
        },
    );
    s.create_key(full_control());
    s.execute_sql(
        "INSERT INTO audit (time, actor, action, target, details) \
         VALUES (1000000000, 'system', 'old.entry', 'nothing', '{}')",
    );
    s.restart();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        audit(&s, "?action=old.entry").len(),
        1,
        "0 keeps entries forever"
    );

    s.options_mut().args = vec!["--audit-days".into(), "30".into()];
    s.restart();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !audit(&s, "?action=old.entry").is_empty() {
        assert!(Instant::now() < deadline, "the old entry was not pruned");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        audit(&s, "?action=apikey.create").len(),
        1,
        "recent entries stay"
    );
}

fn behind_a_trusted_proxy_the_forwarded_client_address_is_recorded(backend: Backend) {
    let s = TestServer::start_with(
        backend,
        Options {
            args: vec!["--trusted-proxies".into(), "127.0.0.1".into()],
            ..Default::default()
        },
    );
    let r = client()
        .post(s.url("/api/api-keys/create"))
        .header("X-ApiKey", s.admin())
        .header("X-Forwarded-For", "198.51.100.4, 203.0.113.9")
        .header("content-type", "application/json")
        .body(full_control().to_string())
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let created = audit(&s, "?action=apikey.create");
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["address"], "203.0.113.9", "{}", created[0]);
}
