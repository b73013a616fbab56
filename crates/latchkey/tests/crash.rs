//! Crash test: several clients create and delete keys while the server is
//! killed with SIGKILL at random moments and restarted on the same data.
//! Every acknowledged (`200`) change must survive; an unacknowledged one may
//! have happened or not, but never halfway, and never without its audit
//! entry (nor an entry without its change).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::blocking::Client;
use serde_json::{json, Value};

use common::{full_control, Backend, Options, TestServer};

both_backends!(acknowledged_changes_survive_sigkill_at_random_moments);

/// SIGKILLs per back end.
const KILLS: usize = 24;
/// Concurrent client threads.
const CLIENTS: usize = 4;
/// Upper bound on the whole kill loop, whatever the machine's speed.
const TIME_LIMIT: Duration = Duration::from_secs(60);

/// One key a client tried to create, and what became of it.
#[derive(Debug, Clone)]
struct Attempt {
    /// Display name: finds the key in a listing even when the create's answer was lost.
    tag: String,
    /// The custom key text, so that even an unacknowledged create can be checked.
    key: String,
    /// `Some(id)` when the create was acknowledged with `200`.
    created: Option<i32>,
    /// `Some(acknowledged)` once a delete was tried.
    deleted: Option<bool>,
}

/// What the clients and the killer share: the server's current address (it
/// changes with every restart) and the stop flag.
struct Shared {
    base: RwLock<String>,
    stop: AtomicBool,
    driver: String,
}

impl Shared {
    fn url(&self, path: &str) -> String {
        let base = self.base.read().map(|b| b.clone()).unwrap_or_default();
        format!("{base}{path}")
    }
}

fn http() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// One client: creates personal keys with custom texts and deletes some of
/// the ones it created, until told to stop.
fn drive(thread: usize, shared: &Shared) -> Vec<Attempt> {
    let http = http();
    let mut rng = rand::thread_rng();
    let mut attempts: Vec<Attempt> = Vec::new();
    let mut n = 0;
    while !shared.stop.load(Ordering::Relaxed) {
        let deletable: Vec<usize> = (0..attempts.len())
            .filter(|&i| attempts[i].created.is_some() && attempts[i].deleted.is_none())
            .collect();
        let ok = if deletable.is_empty() || rng.gen_bool(0.55) {
            n += 1;
            let attempt = Attempt {
                tag: format!("crash-{thread}-{n}"),
                key: format!("crash_{thread}_{n}_{:016x}", rng.gen::<u64>()),
                created: None,
                deleted: None,
            };
            let body = json!({"type": "personal", "user": "Admin", "displayName": attempt.tag, "key": attempt.key});
            let sent = http
                .post(shared.url("/api/api-keys/create"))
                .header("X-ApiKey", &shared.driver)
                .header("content-type", "application/json")
                .body(body.to_string())
                .send();
            attempts.push(attempt);
            match sent {
                Ok(r) if r.status() == 200 => {
                    let info: Value = r.json().unwrap_or(Value::Null);
                    let id = info["id"]
                        .as_i64()
                        .unwrap_or_else(|| panic!("200 without an id: {info}"));
                    attempts.last_mut().unwrap().created = Some(id as i32);
                    true
                }
                _ => false,
            }
        } else {
            let i = deletable[rng.gen_range(0..deletable.len())];
            let id = attempts[i].created.unwrap();
            let sent = http
                .post(shared.url(&format!("/api/api-keys/delete?id={id}")))
                .header("X-ApiKey", &shared.driver)
                .send();
            let status = sent.as_ref().map(|r| r.status().as_u16()).ok();
            assert_ne!(
                status,
                Some(404),
                "key {id} was created (200) and never deleted, yet delete says 404"
            );
            attempts[i].deleted = Some(status == Some(200));
            status == Some(200)
        };
        if !ok {
            // The server is down or restarting: do not spin.
            std::thread::sleep(Duration::from_millis(rng.gen_range(5..30)));
        }
    }
    attempts
}

fn acknowledged_changes_survive_sigkill_at_random_moments(backend: Backend) {
    let options = Options {
        // Each SIGKILL leaves the killed node's row behind on PostgreSQL, and
        // writes wait for it until it is forgotten (the lease plus a margin):
        // a short lease keeps this test about durability, not that wait.
        args: vec![
            "--auth-failure-limit".into(),
            "0".into(),
            "--sync-lease".into(),
            "200ms".into(),
        ],
        ..Default::default()
    };
    let mut server = TestServer::start_with(backend, options);
    let (_, driver) = server.create_key(full_control());
    let shared = Arc::new(Shared {
        base: RwLock::new(server.base.clone()),
        stop: AtomicBool::new(false),
        driver,
    });

    let clients: Vec<_> = (0..CLIENTS)
        .map(|t| {
            let shared = shared.clone();
            std::thread::spawn(move || drive(t, &shared))
        })
        .collect();

    let start = Instant::now();
    let mut rng = rand::thread_rng();
    let mut kills = 0;
    while kills < KILLS && start.elapsed() < TIME_LIMIT {
        // A PostgreSQL node takes longer to start and to answer: give it
        // the time to acknowledge something between kills.
        let up = match backend {
            Backend::Sqlite => 50..350,
            Backend::Postgres => 300..900,
        };
        std::thread::sleep(Duration::from_millis(rng.gen_range(up)));
        server.restart(); // SIGKILL, then start again on the same data directory and database
        kills += 1;
        *shared.base.write().unwrap() = server.base.clone();
    }
    shared.stop.store(true, Ordering::Relaxed);
    let attempts: Vec<Attempt> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert!(kills >= 20, "only {kills} kills within {TIME_LIMIT:?}");

    // One more kill with nothing in flight would prove nothing new: check the data as it is now.
    let http = http();
    let driver = &shared.driver;
    let listing: Vec<Value> = http
        .get(server.url("/api/api-keys/list"))
        .header("X-ApiKey", driver)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let listed: HashMap<&str, i32> = listing
        .iter()
        .filter_map(|k| Some((k["displayName"].as_str()?, k["id"].as_i64()? as i32)))
        .collect();

    let mut counts = HashMap::<&str, usize>::new();
    for a in &attempts {
        let status = http
            .get(server.url("/api/api-keys/list"))
            .header("X-ApiKey", &a.key)
            .send()
            .unwrap()
            .status();
        assert!(
            status == 200 || status == 403,
            "{a:?}: list with the key gave {status}"
        );
        let authenticates = status == 200;
        let listed_id = listed.get(a.tag.as_str()).copied();
        // No half-created key: a key is listed exactly when it authenticates.
        assert_eq!(
            authenticates,
            listed_id.is_some(),
            "{a:?}: authenticates {authenticates}, listed as {listed_id:?}"
        );
        if let (Some(id), Some(listed_id)) = (a.created, listed_id) {
            assert_eq!(id, listed_id, "{a:?}: listed under another id");
        }
        let outcome = match (a.created, a.deleted) {
            (Some(id), Some(true)) => {
                assert!(
                    !authenticates,
                    "{a:?}: the delete was acknowledged, yet the key still works"
                );
                let again = http
                    .post(server.url(&format!("/api/api-keys/delete?id={id}")))
                    .header("X-ApiKey", driver)
                    .send()
                    .unwrap();
                assert_eq!(
                    again.status(),
                    404,
                    "{a:?}: the delete was acknowledged, yet the id exists"
                );
                "acknowledged deletes"
            }
            (Some(_), None) => {
                assert!(
                    authenticates,
                    "{a:?}: the create was acknowledged, yet the key is gone"
                );
                "acknowledged creates kept"
            }
            (Some(_), Some(false)) => "unacknowledged deletes",
            (None, _) => {
                if authenticates {
                    "unacknowledged creates that happened"
                } else {
                    "unacknowledged creates that did not"
                }
            }
        };
        *counts.entry(outcome).or_default() += 1;
    }
    let tags: std::collections::HashSet<&str> = attempts.iter().map(|a| a.tag.as_str()).collect();
    for (tag, id) in &listed {
        assert!(tags.contains(tag), "key {id} ({tag}) was never asked for");
    }
    let acknowledged = counts.get("acknowledged deletes").copied().unwrap_or(0)
        + counts
            .get("acknowledged creates kept")
            .copied()
            .unwrap_or(0);
    assert!(
        acknowledged >= 20,
        "too few acknowledged operations to mean anything: {counts:?}"
    );
    audit_matches_the_keys(&http, &server, driver, &listing);
    let deletes = attempts.iter().filter(|a| a.deleted.is_some()).count();
    println!(
        "crash test ({backend:?}): {} operations ({} creates, {deletes} deletes) across {kills} SIGKILLs in {:.1} s; {counts:?}",
        attempts.len() + deletes,
        attempts.len(),
        start.elapsed().as_secs_f64(),
    );
}

/// Every audit entry, newest first, read page by page.
fn all_audit_entries(http: &Client, server: &TestServer, driver: &str) -> Vec<Value> {
    let mut entries: Vec<Value> = Vec::new();
    loop {
        let before = entries
            .last()
            .map(|e| format!("&before={}", e["id"]))
            .unwrap_or_default();
        let page: Vec<Value> = http
            .get(server.url(&format!("/api/audit/list?limit=1000{before}")))
            .header("X-ApiKey", driver)
            .send()
            .unwrap()
            .json()
            .unwrap();
        if page.is_empty() {
            return entries;
        }
        entries.extend(page);
    }
}

/// The audit trail agrees with the keys: every key that exists has exactly
/// one `apikey.create` entry and no `apikey.delete`; every key with a create
/// entry that is gone has exactly one `apikey.delete`; every
/// `apikey.delete` entry's key is gone.
fn audit_matches_the_keys(http: &Client, server: &TestServer, driver: &str, listing: &[Value]) {
    let existing: std::collections::HashSet<i64> =
        listing.iter().filter_map(|k| k["id"].as_i64()).collect();
    let entries = all_audit_entries(http, server, driver);
    let mut created = HashMap::<i64, usize>::new();
    let mut deleted = HashMap::<i64, usize>::new();
    for e in &entries {
        let id = || -> i64 {
            e["target"]
                .as_str()
                .and_then(|t| t.strip_prefix("key "))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("bad key target in {e}"))
        };
        match e["action"].as_str() {
            Some("apikey.create") => *created.entry(id()).or_default() += 1,
            Some("apikey.delete") => *deleted.entry(id()).or_default() += 1,
            _ => {}
        }
    }
    for id in &existing {
        assert_eq!(
            created.get(id),
            Some(&1),
            "key {id} exists: one create entry"
        );
        assert_eq!(
            deleted.get(id),
            None,
            "key {id} exists, yet has a delete entry"
        );
    }
    for (id, n) in &created {
        assert_eq!(*n, 1, "key {id}: {n} create entries");
        if !existing.contains(id) {
            assert_eq!(
                deleted.get(id),
                Some(&1),
                "key {id} is gone without its delete entry"
            );
        }
    }
    for (id, n) in &deleted {
        assert_eq!(*n, 1, "key {id}: {n} delete entries");
        assert!(
            !existing.contains(id),
            "key {id} has a delete entry, yet exists"
        );
        assert!(created.contains_key(id), "key {id} deleted, never created");
    }
    assert!(
        deleted.len() >= 10,
        "too few deletes in the audit trail to mean anything: {}",
        deleted.len()
    );
}
