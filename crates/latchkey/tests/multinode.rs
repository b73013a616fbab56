//! Several `latchkey` nodes on one PostgreSQL database, sharing one
//! `LATCHKEY_SECRET`: a key deleted through one node is refused by every
//! node on the very next request, also while a node's database connections
//! are being cut under it. Every test here needs `LATCHKEY_TEST_POSTGRES_URL`
//! and is `#[ignore]`d, so that it runs only with `--run-ignored all`.

mod common;

use std::str::FromStr;
use std::time::{Duration, Instant};

use serde_json::Value;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use common::{client, full_control, Backend, Options, TestDatabase, TestServer};

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn a_key_deleted_on_one_node_is_refused_by_every_node_at_once() {
    let cluster = Cluster::start("a_key_deleted_on_one_node_is_refused_by_every_node_at_once");
    for round in 0..200 {
        cluster.round(round);
    }
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn a_key_rotated_on_one_node_is_refused_by_its_old_text_on_every_node_at_once() {
    let cluster = Cluster::start(
        "a_key_rotated_on_one_node_is_refused_by_its_old_text_on_every_node_at_once",
    );
    for round in 0..50 {
        cluster.rotation_round(round);
    }
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn nodes_whose_connections_are_cut_recover_and_never_accept_a_deleted_key() {
    let cluster =
        Cluster::start("nodes_whose_connections_are_cut_recover_and_never_accept_a_deleted_key");
    for round in 0..50 {
        let cut = cluster.cut_connections(Some(B));
        assert!(cut > 0, "round {round}: node b had no connection to cut");
        cluster.round(round);
        if round % 5 == 4 {
            // Every node loses its connections between a delete and the next use.
            let (id, key) = cluster.a.create_key(full_control());
            assert_eq!(cluster.b.list_keys(&key).status(), 200, "round {round}");
            assert_eq!(
                cluster.c.delete_key(id, &key).status(),
                200,
                "round {round}"
            );
            cluster.cut_connections(None);
            for node in cluster.nodes() {
                assert_eq!(
                    node.list_keys(&key).status(),
                    403,
                    "round {round} on {}",
                    node.base
                );
            }
        }
    }
}

#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn three_nodes_starting_at_once_on_an_empty_database_share_one_admin() {
    common::postgres_url("three_nodes_starting_at_once_on_an_empty_database_share_one_admin");
    let db = TestDatabase::create();
    let starts: Vec<_> = [A, B, C]
        .into_iter()
        .map(|name| {
            let url = with_application_name(&db.url, name);
            std::thread::spawn(move || node_on(url))
        })
        .collect();
    let nodes: Vec<TestServer> = starts
        .into_iter()
        .map(|s| s.join().expect("node started"))
        .collect();
    for node in &nodes {
        let r = client()
            .get(node.url("/api/security/users/list"))
            .header("X-ApiKey", node.admin())
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", node.log());
        let users: Value = r.json().unwrap();
        let names: Vec<_> = users
            .as_array()
            .unwrap()
            .iter()
            .map(|u| u["name"].as_str().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(names, ["Admin"]);
    }
    // The key ids come from one sequence, whichever node creates them.
    let (first, _) = nodes[1].create_key(full_control());
    let (second, _) = nodes[2].create_key(full_control());
    assert_eq!((first, second), (1000, 1001));
    drop(nodes);
    drop(db);
}

/// `application_name` of each node, so that one node's connections can be cut.
const A: &str = "latchkey-a";
const B: &str = "latchkey-b";
const C: &str = "latchkey-c";

/// Three nodes on one fresh database (dropped after the nodes: fields drop in order).
struct Cluster {
    a: TestServer,
    b: TestServer,
    c: TestServer,
    db: TestDatabase,
}

impl Cluster {
    /// Starts `a` first (it migrates and creates `Admin`), then `b` and `c`.
    fn start(test: &str) -> Cluster {
        common::postgres_url(test);
        let db = TestDatabase::create();
        let [a, b, c] = [A, B, C].map(|name| node_on(with_application_name(&db.url, name)));
        Cluster { a, b, c, db }
    }

    fn nodes(&self) -> [&TestServer; 3] {
        [&self.a, &self.b, &self.c]
    }

    /// Create on `a`, use on `b` and `c`, delete on `a` (by the admin or by
    /// the key itself), then every node refuses the key.
    fn round(&self, round: usize) {
        let (id, key) = self.a.create_key(full_control());
        for node in [&self.b, &self.c] {
            assert_eq!(
                node.list_keys(&key).status(),
                200,
                "round {round}: new key refused on {}\n{}",
                node.base,
                node.log()
            );
        }
        let deleted = if round % 2 == 1 {
            self.a.delete_key(id, &key)
        } else {
            self.a.delete_key(id, &self.a.admin())
        };
        assert_eq!(deleted.status(), 200, "round {round}: delete on a");
        for node in [&self.b, &self.c] {
            assert_eq!(
                node.list_keys(&key).status(),
                403,
                "round {round}: deleted key accepted by {}",
                node.base
            );
            assert_eq!(
                node.delete_key(id, &key).status(),
                403,
                "round {round}: deleted key accepted by {}",
                node.base
            );
            assert_eq!(
                node.delete_key(id, &node.admin()).status(),
                404,
                "round {round}: key {id} still on {}",
                node.base
            );
        }
    }

    /// Create on `a`, use on `b` and `c`, rotate on `a` (by the admin or by
    /// the key itself), then every node refuses the old text and accepts the new.
    fn rotation_round(&self, round: usize) {
        let (id, old) = self.a.create_key(full_control());
        for node in [&self.b, &self.c] {
            assert_eq!(node.list_keys(&old).status(), 200, "round {round}");
        }
        let by = if round % 2 == 1 {
            old.clone()
        } else {
            self.a.admin()
        };
        let r = client()
            .post(self.a.url(&format!("/api/api-keys/rotate?id={id}")))
            .header("X-ApiKey", by)
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "round {round}: rotate on a");
        let answer: Value = r.json().unwrap();
        let new = answer["key"].as_str().expect("new text");
        for node in self.nodes() {
            assert_eq!(
                node.list_keys(&old).status(),
                403,
                "round {round}: old text accepted by {}",
                node.base
            );
            assert_eq!(
                node.list_keys(new).status(),
                200,
                "round {round}: new text on {}",
                node.base
            );
        }
    }

    /// Terminates the database sessions of one node (by `application_name`)
    /// or of all nodes, and waits until they are gone; returns how many.
    fn cut_connections(&self, node: Option<&str>) -> usize {
        let server_url = std::env::var("LATCHKEY_TEST_POSTGRES_URL").expect("checked at start");
        let database = PgConnectOptions::from_str(&self.db.url)
            .expect("test database URL")
            .get_database()
            .expect("test database URL names a database")
            .to_owned();
        let node = node.map(str::to_owned);
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime")
            .block_on(async move {
                let mut conn = PgConnection::connect(&server_url).await.expect("connect to PostgreSQL");
                let pids: Vec<i32> = sqlx::query_scalar(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() \
                     AND ($2::text IS NULL OR application_name = $2)",
                )
                .bind(&database)
                .bind(&node)
                .fetch_all(&mut conn)
                .await
                .expect("list sessions");
                for pid in &pids {
                    sqlx::query("SELECT pg_terminate_backend($1)")
                        .bind(pid)
                        .execute(&mut conn)
                        .await
                        .expect("terminate session");
                }
                // pg_terminate_backend only signals; wait for the sessions to end.
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    let alive: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
                        .bind(&pids)
                        .fetch_one(&mut conn)
                        .await
                        .expect("count sessions");
                    if alive == 0 {
                        break;
                    }
                    assert!(Instant::now() < deadline, "{alive} sessions outlived pg_terminate_backend");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                let _ = conn.close().await;
                pids.len()
            })
    }
}

/// Starts a node on exactly this database URL (the harness's SQLite default
/// applies only when no URL is given). The brute-force limiter is off, as
/// behind a load balancer: these tests fail authentication on purpose, often.
fn node_on(database_url: String) -> TestServer {
    TestServer::start_with(
        Backend::Sqlite,
        Options {
            database_url: Some(database_url),
            env: vec![("LATCHKEY_AUTH_FAILURE_LIMIT".into(), "0".into())],
            ..Options::default()
        },
    )
}

fn with_application_name(url: &str, name: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={name}")
}
