//! Secrets never leak: a full scenario uses keys of every type, a custom
//! key, pseudo-keys in every channel, logins, wrong passwords, users with
//! passwords and every kind of error, then greps the server's log and every
//! response body (but the one-time create answers) for each secret it used.

use base64::Engine;
use reqwest::blocking::RequestBuilder;
use serde_json::{json, Value};

use crate::both_backends;
use crate::common::{
    client, feed_key, full_control, personal, Backend, Options, TestServer, ADMIN_PASSWORD,
};

both_backends!(no_secret_appears_in_the_log_or_in_any_response_body);

/// Every secret the scenario used, and every response body it may not appear in.
#[derive(Default)]
struct Scenario {
    secrets: Vec<String>,
    bodies: Vec<(String, u16, String)>,
}

impl Scenario {
    /// Remembers a secret in each form it travels in: as is, URL-encoded, in Basic headers.
    fn secret(&mut self, text: &str) -> String {
        let encoded: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
        self.secrets.extend([text.to_owned(), encoded]);
        text.to_owned()
    }

    fn basic(&mut self, user: &str, password: &str) -> String {
        let header = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.secrets.push(header.clone());
        format!("Basic {header}")
    }

    /// Sends a request; its body joins those checked for secrets.
    fn send(&mut self, what: &str, request: RequestBuilder) -> u16 {
        let r = request.send().unwrap();
        let status = r.status().as_u16();
        self.bodies
            .push((what.to_owned(), status, r.text().unwrap_or_default()));
        status
    }

    /// Creates a key; the answer holds its text once, so it is not checked.
    fn create(&mut self, s: &TestServer, credential: &str, info: Value) -> (i64, String) {
        let r = s.create_key_as(credential, &info);
        assert_eq!(r.status(), 200);
        let body: Value = r.json().unwrap();
        let key = self.secret(body["key"].as_str().unwrap());
        (body["id"].as_i64().unwrap(), key)
    }
}

fn no_secret_appears_in_the_log_or_in_any_response_body(backend: Backend) {
    let options = Options {
        args: vec!["--auth-failure-limit".into(), "40".into()],
        ..Default::default()
    };
    let s = TestServer::start_with(backend, options);
    let mut sc = Scenario::default();
    let admin = sc.secret(&s.admin());
    sc.secret(ADMIN_PASSWORD);
    let url = |path: &str| s.url(path);

    // Keys of every type, and a custom one.
    let (_, system) = sc.create(&s, &admin, full_control());
    let (feed_id, feed) = sc.create(&s, &admin, feed_key());
    let custom = sc.secret("Custom-Key_Secret-7f3a9c1e5b");
    let info = json!({"type": "system", "systemApis": ["feeds"], "key": custom});
    assert_eq!(s.create_key_as(&admin, &info).status(), 200);

    // Users with passwords, added and edited.
    let alice_pw = sc.secret("alice-First-Passw0rd-91b2");
    let body = json!({"name": "alice", "password": alice_pw, "groups": []});
    assert_eq!(
        sc.send(
            "users/add",
            crate::common::post_json(&url("/api/security/users/add"), &body)
                .header("X-ApiKey", &system)
        ),
        200
    );
    let alice_pw2 = sc.secret("alice-Second-Passw0rd-c4d5");
    let body = json!({"name": "alice", "password": alice_pw2});
    assert_eq!(
        sc.send(
            "users/edit",
            crate::common::post_json(&url("/api/security/users/edit"), &body)
                .header("X-ApiKey", &admin)
        ),
        200
    );
    let body = json!({"name": "alice", "password": alice_pw2});
    assert_eq!(
        sc.send(
            "users/add twice",
            crate::common::post_json(&url("/api/security/users/add"), &body)
                .header("X-ApiKey", &admin)
        ) / 100,
        4
    );
    let alice = sc.secret(&format!("alice:{alice_pw2}"));
    let (personal_id, alice_key) = sc.create(&s, &alice, personal("alice"));

    // Every credential channel, with good and bad secrets.
    let wrong_key = sc.secret("lk_WrongKeyWrongKeyWrongKeyWrongK000000");
    let wrong_custom = sc.secret("Wrong-Custom-Key-e8f7a6");
    let wrong_password = sc.secret("Admin:Wr0ng-Passw0rd-Guess-1a2b");
    let old_password = sc.secret(&format!("alice:{alice_pw}"));
    for credential in [
        &admin,
        &system,
        &feed,
        &custom,
        &alice_key,
        &alice,
        &wrong_key,
        &wrong_custom,
        &wrong_password,
        &old_password,
    ] {
        let enc: String = form_urlencoded::byte_serialize(credential.as_bytes()).collect();
        sc.send(
            "X-ApiKey",
            client()
                .get(url("/api/api-keys/list"))
                .header("X-ApiKey", credential),
        );
        sc.send(
            "query",
            client().get(url(&format!("/api/api-keys/list?key={enc}"))),
        );
        sc.send(
            "form",
            client()
                .get(url("/api/api-keys/list"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("key={enc}")),
        );
        sc.send(
            "json",
            crate::common::post_json(
                &url("/api/api-keys/create"),
                &json!({"API_Key": credential, "type": "bogus"}),
            ),
        );
        let basic = sc.basic("api", credential);
        sc.send(
            "basic api",
            client()
                .get(url("/api/api-keys/list"))
                .header("authorization", basic),
        );
    }
    for (user, password) in [
        ("Admin", ADMIN_PASSWORD),
        ("alice", alice_pw2.as_str()),
        ("Admin", "Wr0ng-Passw0rd-Guess-1a2b"),
        ("nobody", "No-Such-User-Pw-77"),
    ] {
        sc.secret(password);
        let basic = sc.basic(user, password);
        sc.send(
            "login",
            client()
                .get(url("/api/security/users/list"))
                .header("authorization", basic),
        );
    }

    // 400, 403, 404 and 405, each carrying a secret somewhere.
    let bad = [
        (
            "bad id",
            client()
                .post(url("/api/api-keys/delete?id=abc"))
                .header("X-ApiKey", &admin),
        ),
        (
            "bad json",
            client()
                .post(url("/api/api-keys/create"))
                .header("X-ApiKey", &admin)
                .header("content-type", "application/json")
                .body(format!("{{\"key\": \"{custom}\", ")),
        ),
        (
            "duplicate key",
            crate::common::post_json(
                &url("/api/api-keys/create"),
                &json!({"type": "system", "systemApis": ["feeds"], "key": custom}),
            )
            .header("X-ApiKey", &admin),
        ),
        (
            "colon key",
            crate::common::post_json(
                &url("/api/api-keys/create"),
                &json!({"type": "system", "systemApis": ["feeds"], "key": alice}),
            )
            .header("X-ApiKey", &admin),
        ),
        (
            "not authorized",
            client()
                .get(url("/api/api-keys/list"))
                .header("X-ApiKey", &feed),
        ),
        (
            "unknown id",
            client()
                .post(url("/api/api-keys/delete?id=99999"))
                .header("X-ApiKey", &admin),
        ),
        (
            "unknown path",
            client()
                .get(url(&format!("/api/nothing?key={custom}")))
                .header("X-ApiKey", &admin),
        ),
        (
            "wrong method",
            client()
                .get(url(&format!("/api/api-keys/delete?id=1&key={custom}")))
                .header("X-ApiKey", &admin),
        ),
    ];
    for (what, request) in bad {
        let status = sc.send(what, request);
        assert!((400..500).contains(&status), "{what}: {status}");
    }

    // Deletes, through several channels; the user and their key go too.
    let basic = sc.basic("api", &feed);
    assert_eq!(
        sc.send(
            "self-delete",
            client()
                .post(url(&format!("/api/api-keys/delete?id={feed_id}")))
                .header("authorization", basic)
        ),
        200
    );
    assert_eq!(
        sc.send(
            "delete",
            client().post(url(&format!(
                "/api/api-keys/delete?id={personal_id}&key={}",
                enc(&alice)
            )))
        ),
        200
    );
    assert_eq!(
        sc.send(
            "users/delete",
            client()
                .delete(url("/api/security/users/delete?user=alice"))
                .header("X-ApiKey", &admin)
        ),
        200
    );
    sc.send(
        "deleted key",
        client()
            .get(url("/api/api-keys/list"))
            .header("X-ApiKey", &feed),
    );

    // A 500, with a login in flight.
    break_key_table(&s, backend);
    let basic = sc.basic("Admin", ADMIN_PASSWORD);
    assert_eq!(
        sc.send(
            "500",
            client()
                .post(url("/api/api-keys/delete?id=1000"))
                .header("authorization", basic)
        ),
        500
    );
    sc.send(
        "500 list",
        client()
            .get(url("/api/api-keys/list"))
            .header("X-ApiKey", &system),
    );

    // The limiter's 429, reached with wrong passwords.
    let mut last = 0;
    for _ in 0..60 {
        last = sc.send(
            "guess",
            client()
                .get(url("/api/api-keys/list"))
                .header("X-ApiKey", &wrong_password),
        );
        if last == 429 {
            break;
        }
    }
    assert_eq!(last, 429, "the limiter answered");

    assert!(
        sc.secrets.len() > 40 && sc.bodies.len() > 60,
        "the scenario covered enough"
    );
    let log = s.log();
    assert!(
        log.lines().count() > 50,
        "the log recorded the scenario:\n{log}"
    );
    for secret in sc.secrets.iter().filter(|s| s.len() >= 8) {
        assert!(
            !log.contains(secret.as_str()),
            "the log holds the secret {secret:?}:\n{log}"
        );
        for (what, status, body) in &sc.bodies {
            assert!(
                !body.contains(secret.as_str()),
                "{what} ({status}) body holds the secret {secret:?}: {body}"
            );
        }
    }
}

fn enc(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

fn break_key_table(s: &TestServer, backend: Backend) {
    use sqlx::{Connection, Executor};
    let sql = "ALTER TABLE api_keys RENAME TO api_keys_gone";
    match backend {
        Backend::Sqlite => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let url = format!("sqlite://{}", s.data_dir.join("latchkey.db").display());
                let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                c.execute(sql).await.unwrap();
                c.close().await.unwrap();
            });
        }
        Backend::Postgres => crate::common::pg_execute(&s.database_url().unwrap(), sql),
    }
}
