//! Three real nodes on one real PostgreSQL database, each with its verification
//! cache (docs/postgres.md): whatever narrows access on one node is refused by
//! the others as soon as the writer answered `200`, also under faults (a killed
//! `LISTEN` connection, a paused node, frozen database traffic, a killed node).
//! Delete latencies are printed (`--no-capture` shows them). Every test needs
//! `LATCHKEY_TEST_POSTGRES_URL` and is `#[ignore]`d, so that it runs only with
//! `--run-ignored all`.

mod common;

use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::blocking::Client;
use serde_json::{json, Value};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use common::{
    client, full_control, personal, post_json, Backend, Options, TestDatabase, TestServer,
};

/// The sync lease `T` of the nodes under test (shorter than the default, to
/// keep the fault tests short).
const LEASE: Duration = Duration::from_secs(1);
/// `T` plus the writer's margin (250 ms + T/4): the longest a delete waits.
const WORST: Duration = Duration::from_millis(1500);
/// Scheduling slack on a loaded two-core machine, on top of [`WORST`].
const SLACK: Duration = Duration::from_secs(3);

const A: &str = "latchkey-a";
const B: &str = "latchkey-b";
const C: &str = "latchkey-c";

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn a_key_deleted_on_a_is_refused_by_b_and_c_at_once_300_times() {
    let cluster = Cluster::start("a_key_deleted_on_a_is_refused_by_b_and_c_at_once_300_times");
    let mut latencies = Vec::new();
    for round in 0..300 {
        let (id, key) = cluster.a.create_key(full_control());
        for node in cluster.others() {
            assert_eq!(any_valid(node, &key), 200, "round {round}: new key refused");
        }
        let started = Instant::now();
        assert_eq!(cluster.a.delete_key(id, &cluster.a.admin()).status(), 200);
        latencies.push(started.elapsed());
        for node in cluster.others() {
            assert_eq!(
                any_valid(node, &key),
                401,
                "round {round}: deleted key accepted by {}",
                node.base
            );
        }
    }
    report("delete, normal case (3 nodes)", &mut latencies);
    // No fault: the nodes stayed in sync throughout, so their caches answered.
    for node in cluster.nodes() {
        assert_eq!(sync_detail(node), Value::Null, "{}", node.log());
    }
    assert!(
        percentile(&latencies, 50) < Duration::from_millis(500),
        "acknowledgements, not the lease, end the normal wait"
    );
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn nodes_hammered_during_deletes_accept_nothing_that_started_after_the_200() {
    let cluster =
        Cluster::start("nodes_hammered_during_deletes_accept_nothing_that_started_after_the_200");
    let hammer = Hammer::start(&[cluster.b.base.clone(), cluster.c.base.clone()]);
    let mut refused_after = 0;
    let mut latencies = Vec::new();
    for round in 0..300 {
        let (id, key) = cluster.a.create_key(full_control());
        hammer.aim(&key);
        hammer.wait_for_acceptance(&key);
        let started = Instant::now();
        assert_eq!(cluster.a.delete_key(id, &cluster.a.admin()).status(), 200);
        let answered = Instant::now();
        latencies.push(answered - started);
        // Let the hammer send a few more with the deleted key.
        hammer.wait_for_requests_after(&key, answered, 4);
        let (accepted, refused) = hammer.after(&key, answered);
        assert_eq!(
            accepted, 0,
            "round {round}: {accepted} requests that started after the delete's 200 were accepted"
        );
        refused_after += refused;
    }
    hammer.stop();
    report("delete under a hammering client", &mut latencies);
    assert!(refused_after >= 300, "the hammer tried the deleted keys");
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn a_changed_password_is_refused_by_the_other_nodes_at_once() {
    let cluster = Cluster::start("a_changed_password_is_refused_by_the_other_nodes_at_once");
    cluster.a.add_user("alice", "password-0", &[]);
    for round in 0..100 {
        let old = basic(&format!("alice:password-{round}"));
        for node in cluster.others() {
            assert_eq!(forward(node, "", &old, "GET"), 200, "round {round}");
            // Twice: the second is answered from the login cache.
            assert_eq!(forward(node, "", &old, "GET"), 200, "round {round}");
        }
        let next = format!("password-{}", round + 1);
        admin_post(
            &cluster.a,
            "/api/security/users/edit",
            &json!({"name": "alice", "password": next}),
        );
        for node in cluster.others() {
            assert_eq!(
                forward(node, "", &old, "GET"),
                401,
                "round {round}: the old password was accepted by {}",
                node.base
            );
        }
    }
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn a_deleted_user_is_refused_by_the_other_nodes_at_once() {
    let cluster = Cluster::start("a_deleted_user_is_refused_by_the_other_nodes_at_once");
    for round in 0..100 {
        let name = format!("user{round}");
        cluster.a.add_user(&name, "a-password", &[]);
        let (_, key) = cluster.a.create_key(personal(&name));
        let login = basic(&format!("{name}:a-password"));
        for node in cluster.others() {
            assert_eq!(any_valid(node, &key), 200, "round {round}");
            assert_eq!(forward(node, "", &login, "GET"), 200, "round {round}");
        }
        let r = client()
            .delete(
                cluster
                    .a
                    .url(&format!("/api/security/users/delete?user={name}")),
            )
            .header("X-ApiKey", cluster.a.admin())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        for node in cluster.others() {
            assert_eq!(any_valid(node, &key), 401, "round {round}: their key");
            assert_eq!(
                forward(node, "", &login, "GET"),
                401,
                "round {round}: their login"
            );
        }
    }
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn removed_permissions_and_memberships_are_refused_by_the_other_nodes_at_once() {
    let cluster = Cluster::start(
        "removed_permissions_and_memberships_are_refused_by_the_other_nodes_at_once",
    );
    cluster.a.add_user("bob", "bob-password", &[]);
    let (_, key) = cluster.a.create_key(personal("bob"));
    admin_post(
        &cluster.a,
        "/api/security/groups/add",
        &json!({"name": "Publishers", "members": []}),
    );
    admin_post(
        &cluster.a,
        "/api/security/permissions/add",
        &json!({"group": "Publishers", "task": "Publish Packages", "feed": "g"}),
    );
    let publish = |feed: &str| {
        [&cluster.b, &cluster.c].map(|n| forward(n, &format!("feed={feed}"), &key, "PUT"))
    };
    for round in 0..60 {
        // A permission granted, then removed.
        let granted = admin_post(
            &cluster.a,
            "/api/security/permissions/add",
            &json!({"user": "bob", "task": "Publish Packages", "feed": "f"}),
        );
        assert_eq!(publish("f"), [200, 200], "round {round}: grant");
        let id = granted["id"].as_i64().unwrap();
        let r = client()
            .post(
                cluster
                    .a
                    .url(&format!("/api/security/permissions/delete?id={id}")),
            )
            .header("X-ApiKey", cluster.a.admin())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            publish("f"),
            [403, 403],
            "round {round}: removed permission"
        );
        // A membership given, then a deny added, then the membership removed.
        admin_post(
            &cluster.a,
            "/api/security/groups/edit",
            &json!({"name": "Publishers", "members": ["bob"]}),
        );
        assert_eq!(publish("g"), [200, 200], "round {round}: member");
        let deny = admin_post(
            &cluster.a,
            "/api/security/permissions/add",
            &json!({"user": "bob", "task": "Publish Packages", "feed": "g", "deny": true}),
        );
        assert_eq!(publish("g"), [403, 403], "round {round}: a deny narrows");
        let id = deny["id"].as_i64().unwrap();
        client()
            .post(
                cluster
                    .a
                    .url(&format!("/api/security/permissions/delete?id={id}")),
            )
            .header("X-ApiKey", cluster.a.admin())
            .send()
            .unwrap();
        assert_eq!(publish("g"), [200, 200], "round {round}: deny removed");
        admin_post(
            &cluster.a,
            "/api/security/groups/edit",
            &json!({"name": "Publishers", "members": []}),
        );
        assert_eq!(
            publish("g"),
            [403, 403],
            "round {round}: removed membership"
        );
    }
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn killed_listen_connections_never_let_a_deleted_key_through() {
    let cluster = Cluster::start("killed_listen_connections_never_let_a_deleted_key_through");
    let mut latencies = Vec::new();
    for round in 0..30 {
        let (id, key) = cluster.a.create_key(full_control());
        for node in cluster.others() {
            assert_eq!(any_valid(node, &key), 200, "round {round}");
        }
        // Every node's LISTEN connection, then the delete at once.
        let killed = terminate("-listen");
        assert!(killed >= 3, "round {round}: {killed} LISTEN connections");
        let started = Instant::now();
        assert_eq!(cluster.a.delete_key(id, &cluster.a.admin()).status(), 200);
        latencies.push(started.elapsed());
        for node in cluster.others() {
            assert_eq!(any_valid(node, &key), 401, "round {round} on {}", node.base);
        }
    }
    report("delete, LISTEN connections killed", &mut latencies);
    assert!(latencies.iter().all(|l| *l < WORST + SLACK));
    // Out of sync while LISTEN keeps failing, and says so...
    let detail = Instant::now() + Duration::from_secs(30);
    let said = loop {
        terminate(&format!("{B}-listen"));
        let d = sync_detail(&cluster.b);
        if d.is_string() {
            break d;
        }
        assert!(
            Instant::now() < detail,
            "node b never said it was out of sync"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(said.as_str().unwrap().contains("out of sync"), "{said}");
    assert!(cluster.b.log().contains("out of sync with the other nodes"));
    // ...and back in sync by itself.
    cluster.wait_in_sync();
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn a_node_paused_across_a_delete_refuses_the_key_on_its_first_request() {
    let cluster =
        Cluster::start("a_node_paused_across_a_delete_refuses_the_key_on_its_first_request");
    let mut latencies = Vec::new();
    for round in 0..5 {
        let (id, key) = cluster.a.create_key(full_control());
        assert_eq!(any_valid(&cluster.b, &key), 200, "round {round}");
        signal(&cluster.b, "STOP");
        let started = Instant::now();
        let deleted = cluster.a.delete_key(id, &cluster.a.admin()).status();
        latencies.push(started.elapsed());
        signal(&cluster.b, "CONT");
        assert_eq!(deleted, 200);
        assert_eq!(
            any_valid(&cluster.b, &key),
            401,
            "round {round}: the first request after resuming accepted the deleted key"
        );
        assert_eq!(any_valid(&cluster.c, &key), 401, "round {round}");
        cluster.wait_in_sync();
    }
    report("delete, a node paused (SIGSTOP)", &mut latencies);
    assert!(latencies.iter().all(|l| *l < WORST + SLACK));
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn a_node_whose_database_traffic_is_frozen_refuses_or_fails_and_recovers() {
    let test = "a_node_whose_database_traffic_is_frozen_refuses_or_fails_and_recovers";
    let proxy = Proxy::start();
    let cluster = Cluster::start_with_b_via(test, Some(&proxy));
    let patient = Client::builder()
        .timeout(Duration::from_secs(4))
        .build()
        .unwrap();
    let mut latencies = Vec::new();
    let mut failed = 0;
    for round in 0..3 {
        let (id, key) = cluster.a.create_key(full_control());
        assert_eq!(any_valid(&cluster.b, &key), 200, "round {round}");
        proxy.freeze(true);
        let started = Instant::now();
        assert_eq!(cluster.a.delete_key(id, &cluster.a.admin()).status(), 200);
        latencies.push(started.elapsed());
        // Refused, or failed (500, time-out): never accepted.
        for _ in 0..2 {
            match patient
                .get(cluster.b.url("/api/auth/forward"))
                .header("X-ApiKey", &key)
                .send()
            {
                Ok(r) => {
                    assert_ne!(r.status(), 200, "round {round}: accepted while frozen");
                    failed += usize::from(r.status() != 401);
                }
                Err(_) => failed += 1,
            }
        }
        proxy.freeze(false);
        cluster.wait_in_sync();
        assert_eq!(any_valid(&cluster.b, &key), 401, "round {round}");
        let (_, fresh) = cluster.a.create_key(full_control());
        assert_eq!(
            any_valid(&cluster.b, &fresh),
            200,
            "round {round}: recovered"
        );
    }
    report("delete, a node's database traffic frozen", &mut latencies);
    println!("requests to the frozen node that failed rather than refused: {failed} of 6");
    assert!(latencies.iter().all(|l| *l < WORST + SLACK));
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn a_node_killed_mid_delete_is_waited_for_only_until_it_is_forgotten() {
    let mut cluster =
        Cluster::start("a_node_killed_mid_delete_is_waited_for_only_until_it_is_forgotten");
    let keys: Vec<(i32, String)> = (0..40)
        .map(|_| cluster.a.create_key(full_control()))
        .collect();
    for (_, key) in &keys {
        assert_eq!(any_valid(&cluster.b, key), 200);
        assert_eq!(any_valid(&cluster.c, key), 200);
    }
    let admin = cluster.a.admin();
    let a_base = cluster.a.base.clone();
    let ids: Vec<i32> = keys.iter().map(|(id, _)| *id).collect();
    let deleter = std::thread::spawn(move || {
        ids.into_iter()
            .map(|id| {
                let started = Instant::now();
                let r = client()
                    .post(format!("{a_base}/api/api-keys/delete?id={id}"))
                    .header("X-ApiKey", &admin)
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 200);
                (Instant::now(), started.elapsed())
            })
            .collect::<Vec<_>>()
    });
    std::thread::sleep(Duration::from_millis(100));
    cluster.c.kill();
    let killed = Instant::now();
    let timed = deleter.join().unwrap();
    for (_, key) in &keys {
        assert_eq!(any_valid(&cluster.b, key), 401);
    }
    let mut all: Vec<Duration> = timed.iter().map(|(_, l)| *l).collect();
    println!(
        "deletes finished after the kill: {}",
        timed.iter().filter(|(done, _)| *done > killed).count()
    );
    let mut later = Vec::new();
    report("delete, a node SIGKILLed (all deletes)", &mut all);
    assert!(all.iter().all(|l| *l < WORST + SLACK));
    // Once forgotten, the dead node is not waited for.
    let forgotten = Instant::now() + Duration::from_secs(30);
    loop {
        let (id, _) = cluster.a.create_key(full_control());
        let started = Instant::now();
        assert_eq!(cluster.a.delete_key(id, &cluster.a.admin()).status(), 200);
        let took = started.elapsed();
        later.push(took);
        if took < Duration::from_millis(300) {
            break;
        }
        assert!(
            Instant::now() < forgotten,
            "the killed node is still waited for"
        );
    }
    report("delete, after the killed node was forgotten", &mut later);
}

// ---------------------------------------------------------------------------

/// Three nodes on one fresh database (dropped after the nodes).
struct Cluster {
    a: TestServer,
    b: TestServer,
    c: TestServer,
    _db: TestDatabase,
}

impl Cluster {
    fn start(test: &str) -> Cluster {
        Cluster::start_with_b_via(test, None)
    }

    /// Starts `a` first (it migrates and creates `Admin`), then `b` (through
    /// `proxy`, if given) and `c`; returns once all three are in sync.
    fn start_with_b_via(test: &str, proxy: Option<&Proxy>) -> Cluster {
        common::postgres_url(test);
        let db = TestDatabase::create();
        let a = node_on(with_application_name(&db.url, A));
        let b_url = match proxy {
            Some(p) => p.route(&db.url),
            None => db.url.clone(),
        };
        let b = node_on(with_application_name(&b_url, B));
        let c = node_on(with_application_name(&db.url, C));
        let cluster = Cluster { a, b, c, _db: db };
        cluster.wait_in_sync();
        cluster
    }

    fn nodes(&self) -> impl Iterator<Item = &TestServer> {
        [&self.a, &self.b, &self.c].into_iter()
    }

    fn others(&self) -> impl Iterator<Item = &TestServer> {
        [&self.b, &self.c].into_iter()
    }

    fn wait_in_sync(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in self.nodes() {
            while sync_detail(node) != Value::Null {
                assert!(
                    Instant::now() < deadline,
                    "{} not in sync within 30 s\n{}",
                    node.base,
                    node.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// A node on exactly this database URL, with [`LEASE`]; the brute-force
/// limiter is off, as behind a load balancer (these tests fail on purpose).
fn node_on(database_url: String) -> TestServer {
    TestServer::start_with(
        Backend::Sqlite,
        Options {
            database_url: Some(database_url),
            env: vec![
                ("LATCHKEY_AUTH_FAILURE_LIMIT".into(), "0".into()),
                (
                    "LATCHKEY_SYNC_LEASE".into(),
                    format!("{}ms", LEASE.as_millis()),
                ),
            ],
            ..Options::default()
        },
    )
}

fn with_application_name(url: &str, name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={name}")
}

/// `serviceStatusDetail` of `/health/json`: `null` while in sync.
fn sync_detail(node: &TestServer) -> Value {
    let r = client().get(node.url("/health/json")).send().unwrap();
    let body: Value = r.json().unwrap();
    body["serviceStatusDetail"].clone()
}

/// Forward auth with no requirement beyond a valid credential.
fn any_valid(node: &TestServer, key: &str) -> u16 {
    forward(node, "", key, "GET")
}

/// Forward auth: `200`, `401` (bad credential) or `403` (not allowed).
/// `credential` is a key, or `Basic …` for a login.
fn forward(node: &TestServer, query: &str, credential: &str, method: &str) -> u16 {
    let r = client()
        .get(node.url(&format!("/api/auth/forward?{query}")))
        .header("X-Forwarded-Method", method);
    let r = if credential.starts_with("Basic ") {
        r.header("Authorization", credential)
    } else {
        r.header("X-ApiKey", credential)
    };
    r.send().unwrap().status().as_u16()
}

fn basic(user_pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(user_pass)
    )
}

/// `POST path` with a JSON body as the admin; asserts `200`, returns the body.
fn admin_post(node: &TestServer, path: &str, body: &Value) -> Value {
    let r = post_json(&node.url(path), body)
        .header("X-ApiKey", node.admin())
        .send()
        .unwrap();
    let status = r.status();
    let text = r.text().unwrap();
    assert_eq!(status, 200, "{path} {body}: {text}");
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn signal(node: &TestServer, name: &str) {
    let ok = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(node.pid().to_string())
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name}");
}

/// Terminates the sessions whose `application_name` ends with `suffix` and
/// waits until they are gone; returns how many.
fn terminate(suffix: &str) -> usize {
    let server_url = std::env::var("LATCHKEY_TEST_POSTGRES_URL").expect("checked at start");
    let pattern = format!("%{suffix}");
    runtime().block_on(async move {
        let mut conn = PgConnection::connect(&server_url).await.expect("connect");
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE application_name LIKE $1 \
             AND pid <> pg_backend_pid()",
        )
        .bind(&pattern)
        .fetch_all(&mut conn)
        .await
        .expect("list sessions");
        for pid in &pids {
            sqlx::query("SELECT pg_terminate_backend($1)")
                .bind(pid)
                .execute(&mut conn)
                .await
                .expect("terminate");
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let alive: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                    .bind(&pids)
                    .fetch_one(&mut conn)
                    .await
                    .expect("count");
            if alive == 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "sessions outlived pg_terminate_backend"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let _ = conn.close().await;
        pids.len()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) * p) / 100]
}

/// Prints p50, p99 and the worst of some latencies (sorted in place).
fn report(what: &str, latencies: &mut [Duration]) {
    latencies.sort();
    println!(
        "{what}: n={} p50={:.1} ms p99={:.1} ms max={:.1} ms (T={} ms, T+margin={} ms)",
        latencies.len(),
        percentile(latencies, 50).as_secs_f64() * 1e3,
        percentile(latencies, 99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        LEASE.as_millis(),
        WORST.as_millis(),
    );
}

/// Background clients sending forward auths with the current key to some
/// nodes as fast as they can, recording when each request started.
struct Hammer {
    target: Arc<Mutex<String>>,
    seen: Arc<Mutex<Vec<(String, Instant, u16)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    sent: Arc<AtomicUsize>,
}

impl Hammer {
    fn start(bases: &[String]) -> Hammer {
        let target = Arc::new(Mutex::new(String::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicUsize::new(0));
        let threads = bases
            .iter()
            .flat_map(|b| [b.clone(), b.clone()])
            .map(|base| {
                let (target, seen, stop, sent) =
                    (target.clone(), seen.clone(), stop.clone(), sent.clone());
                std::thread::spawn(move || {
                    let c = Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let key = target.lock().unwrap().clone();
                        if key.is_empty() {
                            std::thread::sleep(Duration::from_millis(1));
                            continue;
                        }
                        let started = Instant::now();
                        let status = c
                            .get(format!("{base}/api/auth/forward"))
                            .header("X-ApiKey", &key)
                            .send()
                            .map(|r| r.status().as_u16())
                            .unwrap_or(0);
                        sent.fetch_add(1, Ordering::Relaxed);
                        seen.lock().unwrap().push((key, started, status));
                    }
                })
            })
            .collect();
        Hammer {
            target,
            seen,
            stop,
            threads,
            sent,
        }
    }

    fn aim(&self, key: &str) {
        self.seen.lock().unwrap().clear();
        *self.target.lock().unwrap() = key.to_owned();
    }

    /// Until every node accepted the key at least once (so that it is cached).
    fn wait_for_acceptance(&self, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _, s)| k == key && *s == 200)
            .count()
            < 4
        {
            assert!(
                Instant::now() < deadline,
                "the hammer's key is not accepted"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn wait_for_requests_after(&self, key: &str, after: Instant, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, t, _)| k == key && *t > after)
            .count()
            < n
        {
            assert!(Instant::now() < deadline, "the hammer stalled");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Requests with `key` that started after `after`: (accepted, refused).
    fn after(&self, key: &str, after: Instant) -> (usize, usize) {
        let seen = self.seen.lock().unwrap();
        let later = seen.iter().filter(|(k, t, _)| k == key && *t > after);
        let accepted = later.clone().filter(|(_, _, s)| *s == 200).count();
        let refused = later.filter(|(_, _, s)| *s == 401).count();
        (accepted, refused)
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            t.join().unwrap();
        }
        println!("hammer requests: {}", self.sent.load(Ordering::Relaxed));
    }
}

/// A TCP proxy in front of PostgreSQL whose traffic can be frozen: while
/// frozen, nothing is passed on in either direction (connections stay open).
struct Proxy {
    addr: std::net::SocketAddr,
    upstream: String,
    frozen: Arc<AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

impl Proxy {
    fn start() -> Proxy {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let url = common::postgres_url("the proxy");
        let options = PgConnectOptions::from_str(&url).expect("PostgreSQL URL");
        let upstream = format!("{}:{}", options.get_host(), options.get_port());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let frozen = Arc::new(AtomicBool::new(false));
        let (to, flag) = (upstream.clone(), frozen.clone());
        async fn pipe(
            mut from: tokio::net::tcp::OwnedReadHalf,
            mut to: tokio::net::tcp::OwnedWriteHalf,
            frozen: Arc<AtomicBool>,
        ) {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                while frozen.load(Ordering::SeqCst) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = to.shutdown().await;
        }
        rt.spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (to, flag) = (to.clone(), flag.clone());
                tokio::spawn(async move {
                    while flag.load(Ordering::SeqCst) {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    let Ok(outbound) = tokio::net::TcpStream::connect(&to).await else {
                        return;
                    };
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    tokio::spawn(pipe(ri, wo, flag.clone()));
                    tokio::spawn(pipe(ro, wi, flag));
                });
            }
        });
        Proxy {
            addr,
            upstream,
            frozen,
            _rt: rt,
        }
    }

    /// The database URL `url`, through the proxy.
    fn route(&self, url: &str) -> String {
        assert!(
            url.contains(&self.upstream),
            "{url} is not on {}",
            self.upstream
        );
        url.replacen(&self.upstream, &self.addr.to_string(), 1)
    }

    fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }
}
