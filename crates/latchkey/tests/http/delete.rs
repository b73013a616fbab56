//! `POST /api/api-keys/delete?id=N`: every status code and the order of checks.

use serde_json::json;

use crate::both_backends;
use crate::common::{client, feed_key, full_control, personal, Backend, TestServer};

both_backends!(
    admin_deletes_a_key_then_it_is_refused_everywhere,
    delete_without_credential_is_403_even_with_bad_id,
    bad_ids_are_400_after_authentication,
    unknown_id_is_404_and_deleting_twice_is_404,
    every_key_may_delete_itself,
    callers_without_key_management_get_403_whether_or_not_the_id_exists,
    users_delete_only_their_own_personal_keys,
    full_control_system_key_deletes_any_key,
    other_methods_are_405_with_allow_before_credentials,
    concurrent_deletes_of_one_id_yield_exactly_one_200,
    acknowledged_deletes_survive_sigkill,
    internal_errors_are_500_with_an_error_id_and_no_internals,
);

fn admin_deletes_a_key_then_it_is_refused_everywhere(backend: Backend) {
    let s = TestServer::start(backend);
    let (id, key) = s.create_key(full_control());
    assert_eq!(id, 1000, "the first key gets id 1000");
    assert_eq!(s.list_keys(&key).status(), 200);

    let r = s.delete_key(id, &s.admin());
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().unwrap(),
        "",
        "a successful delete has an empty body"
    );

    assert_eq!(
        s.list_keys(&key).status(),
        403,
        "a deleted key is refused at once"
    );
    assert_eq!(s.delete_key(id, &key).status(), 403);
    let listed = s.list_keys(&s.admin()).text().unwrap();
    assert_eq!(listed, "[]");
}

fn delete_without_credential_is_403_even_with_bad_id(backend: Backend) {
    let s = TestServer::start(backend);
    for query in ["id=1000", "id=abc", "", "id=", "id=1&id=2"] {
        let r = client()
            .post(s.url(&format!("/api/api-keys/delete?{query}")))
            .send()
            .unwrap();
        assert_eq!(r.status(), 403, "{query}");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
    }
    for wrong in ["lk_nonexistent", "Admin:wrong-password", "Nobody:x"] {
        assert_eq!(s.delete_key("abc", wrong).status(), 403, "{wrong}");
    }
}

fn bad_ids_are_400_after_authentication(backend: Backend) {
    let s = TestServer::start(backend);
    let admin = s.admin();
    for query in [
        "",
        "id=",
        "id=abc",
        "id=1e3",
        "id=10.0",
        "id=%201000",
        "id=+5",
        "id=1&id=2",
        "id=2147483648",
        "id=-2147483649",
        "ID=5",
    ] {
        let r = client()
            .post(s.url(&format!("/api/api-keys/delete?{query}")))
            .header("X-ApiKey", &admin)
            .send()
            .unwrap();
        assert_eq!(r.status(), 400, "query {query:?}");
        assert!(r.text().unwrap().contains("id"), "the message names id");
    }
    assert_eq!(s.delete_key(-5, &admin).status(), 404, "-5 is an integer");
    assert_eq!(s.delete_key(i32::MAX, &admin).status(), 404);
}

fn unknown_id_is_404_and_deleting_twice_is_404(backend: Backend) {
    let s = TestServer::start(backend);
    assert_eq!(s.delete_key(1000, &s.admin()).status(), 404);
    let (id, _) = s.create_key(feed_key());
    assert_eq!(s.delete_key(id, &s.admin()).status(), 200);
    let second = s.delete_key(id, &s.admin());
    assert_eq!(second.status(), 404);
    assert!(second.text().unwrap().contains(&id.to_string()));
    let (next, _) = s.create_key(feed_key());
    assert!(next > id, "a deleted id is never handed out again");
}

fn every_key_may_delete_itself(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    let limited = json!({"type": "system", "systemApis": ["feeds", "sca"]});
    for info in [
        full_control(),
        limited,
        feed_key(),
        personal("alice"),
        personal("Admin"),
    ] {
        let (id, key) = s.create_key(info.clone());
        let r = s.delete_key(id, &key);
        assert_eq!(r.status(), 200, "{info}");
        assert_eq!(s.delete_key(id, &s.admin()).status(), 404, "{info} is gone");
        assert_eq!(s.list_keys(&key).status(), 403);
    }
}

fn callers_without_key_management_get_403_whether_or_not_the_id_exists(backend: Backend) {
    let s = TestServer::start(backend);
    let (existing, _) = s.create_key(full_control());
    let (_, feed) = s.create_key(feed_key());
    let (_, limited) = s.create_key(json!({"type": "system", "systemApis": ["sbom-upload"]}));
    for caller in [&feed, &limited] {
        assert_eq!(s.delete_key(existing, caller).status(), 403);
        assert_eq!(
            s.delete_key(99_999, caller).status(),
            403,
            "no 404: the caller learns nothing"
        );
    }
    assert_eq!(
        s.delete_key(existing, &s.admin()).status(),
        200,
        "nothing was deleted by the 403s"
    );
}

fn users_delete_only_their_own_personal_keys(backend: Backend) {
    let s = TestServer::start(backend);
    s.add_user("alice", "alice-password", &[]);
    s.add_user("bob", "bob-password", &[]);
    let (alices, _) = s.create_key(personal("alice"));
    let (bobs, bob_key) = s.create_key(personal("bob"));
    let (system, _) = s.create_key(full_control());

    // Alice by pseudo-key and by her own personal key.
    let (_, alice_key) = s.create_key(personal("alice"));
    for alice in ["alice:alice-password", alice_key.as_str()] {
        assert_eq!(s.delete_key(bobs, alice).status(), 403);
        assert_eq!(s.delete_key(system, alice).status(), 403);
        assert_eq!(s.delete_key(123_456, alice).status(), 404);
    }
    assert_eq!(s.delete_key(alices, "alice:alice-password").status(), 200);
    assert_eq!(s.list_keys(&bob_key).status(), 200, "bob's key survived");

    // An administrator other than Admin deletes anyone's key.
    s.add_user("carol", "carol-password", &["Administrators"]);
    assert_eq!(s.delete_key(bobs, "carol:carol-password").status(), 200);
}

fn full_control_system_key_deletes_any_key(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, full) = s.create_key(full_control());
    let (personal_id, _) = s.create_key(personal("Admin"));
    let (other_full, _) = s.create_key(full_control());
    assert_eq!(s.delete_key(personal_id, &full).status(), 200);
    assert_eq!(s.delete_key(other_full, &full).status(), 200);
}

fn other_methods_are_405_with_allow_before_credentials(backend: Backend) {
    let s = TestServer::start(backend);
    for method in ["GET", "PUT", "DELETE", "PATCH"] {
        let r = client()
            .request(
                method.parse().unwrap(),
                s.url("/api/api-keys/delete?id=1000"),
            )
            .send()
            .unwrap();
        assert_eq!(r.status(), 405, "{method}");
        assert_eq!(r.headers()["allow"], "POST");
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
    }
}

fn concurrent_deletes_of_one_id_yield_exactly_one_200(backend: Backend) {
    let s = TestServer::start(backend);
    for _ in 0..3 {
        let (id, _) = s.create_key(full_control());
        let admin = s.admin();
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|_| scope.spawn(|| s.delete_key(id, &admin).status().as_u16()))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            statuses.iter().filter(|&&c| c == 200).count(),
            1,
            "{statuses:?}"
        );
        assert_eq!(
            statuses.iter().filter(|&&c| c == 404).count(),
            15,
            "{statuses:?}"
        );
    }
}

fn acknowledged_deletes_survive_sigkill(backend: Backend) {
    let mut s = TestServer::start(backend);
    let keys: Vec<(i32, String)> = (0..6).map(|_| s.create_key(full_control())).collect();
    for (id, _) in keys.iter().step_by(2) {
        assert_eq!(s.delete_key(id, &s.admin()).status(), 200);
    }
    s.restart(); // SIGKILL, then start on the same data directory and database
    for (i, (id, key)) in keys.iter().enumerate() {
        let expected = if i % 2 == 0 { 403 } else { 200 };
        assert_eq!(
            s.list_keys(key).status(),
            expected,
            "key {id} after restart"
        );
    }
}

fn internal_errors_are_500_with_an_error_id_and_no_internals(backend: Backend) {
    let s = TestServer::start(backend);
    let (id, _) = s.create_key(full_control());
    break_key_table(&s);
    let r = client()
        .post(s.url(&format!("/api/api-keys/delete?id={id}")))
        .basic_auth("Admin", Some(crate::common::ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let body = r.text().unwrap();
    let error_id = body
        .split("error id ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no error id in {body:?}"))
        .to_owned();
    for internal in [
        "api_keys",
        "sqlx",
        "SELECT",
        "src/",
        "no such table",
        "does not exist",
    ] {
        assert!(
            !body.contains(internal),
            "500 body leaks {internal}: {body}"
        );
    }
    let log = s.log();
    let logged = log
        .lines()
        .find(|l| l.contains(&error_id) && l.contains("internal error"));
    let logged = logged.unwrap_or_else(|| panic!("error id {error_id} not in log:\n{log}"));
    assert!(
        logged.contains("api_keys"),
        "the log has the detail: {logged}"
    );
}

/// Renames the key table behind the server's back, so that every key query fails.
fn break_key_table(s: &TestServer) {
    s.execute_sql("ALTER TABLE api_keys RENAME TO api_keys_gone");
}
