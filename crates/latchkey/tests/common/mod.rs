//! Test harness: starts the real `latchkey` binary on `127.0.0.1:0` with a
//! temporary data directory, on SQLite or on a fresh PostgreSQL database.
#![allow(dead_code)]

pub mod nginx;

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::Value;
use tempfile::TempDir;

/// Password of the bootstrap `Admin` in every test server.
pub const ADMIN_PASSWORD: &str = "correct horse battery staple";
/// Path of the marker requests [`TestServer::log`] sends (answered 404).
const LOG_SYNC_PATH: &str = "/__test-log-sync-";
/// Installation secret shared by test nodes.
pub const TEST_SECRET: &str = "test-secret-0123456789abcdef0123456789abcdef";

/// Which storage back end a test server uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite in the data directory.
    Sqlite,
    /// A fresh PostgreSQL database made from `LATCHKEY_TEST_POSTGRES_URL`.
    Postgres,
}

/// The PostgreSQL URL for tests. PostgreSQL tests are `#[ignore]`d, so that a
/// run without PostgreSQL reports them as skipped; one that does run (with
/// `--run-ignored all`) panics here when `LATCHKEY_TEST_POSTGRES_URL` is unset,
/// rather than passing without having tested anything.
pub fn postgres_url(test: &str) -> String {
    match std::env::var("LATCHKEY_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "{test} needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL \
             (e.g. postgres://postgres@127.0.0.1:5432/test), or run without \
             --run-ignored to skip the PostgreSQL tests"
        ),
    }
}

/// Runs a test body once per back end: `both_backends!(name, body_fn);`
/// declares `name::sqlite` and `name::postgres` tests; the PostgreSQL one is
/// ignored unless the run asks for ignored tests (see [`postgres_url`]).
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),+ $(,)?) => {$(
        mod $name {
            #[test]
            fn sqlite() {
                super::$name($crate::common::Backend::Sqlite)
            }
            #[test]
            #[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
            fn postgres() {
                $crate::common::postgres_url(concat!(module_path!(), "::postgres"));
                super::$name($crate::common::Backend::Postgres)
            }
        }
    )+};
}

/// A fresh PostgreSQL database; dropped (best effort) with the value.
pub struct TestDatabase {
    admin_url: String,
    name: String,
    /// URL of the fresh database.
    pub url: String,
}

impl TestDatabase {
    /// Creates a database with a random name on the server of `LATCHKEY_TEST_POSTGRES_URL`.
    pub fn create() -> TestDatabase {
        let admin_url = postgres_url("this PostgreSQL test");
        let name = format!("lk_test_{:016x}", rand_u64());
        pg_execute(&admin_url, &format!("CREATE DATABASE {name}"));
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) => format!("{server}/{name}"),
            None => panic!("LATCHKEY_TEST_POSTGRES_URL has no database part: {admin_url}"),
        };
        TestDatabase {
            admin_url,
            name,
            url,
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = std::panic::catch_unwind(|| pg_execute(&self.admin_url, &sql));
    }
}

/// Connects to a PostgreSQL URL, runs `work` on the connection and closes it
/// (panics when unreachable: tests must not skip silently).
fn on_postgres<T>(url: &str, work: impl AsyncFnOnce(&mut sqlx::PgConnection) -> T) -> T {
    use sqlx::Connection;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(url)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
        let out = work(&mut conn).await;
        let _ = conn.close().await;
        out
    })
}

/// Runs one SQL statement on a PostgreSQL URL.
pub fn pg_execute(url: &str, sql: &str) {
    use sqlx::Executor;
    on_postgres(url, async |conn| {
        conn.execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
    });
}

/// Runs a `SELECT count(*) …` on a PostgreSQL URL.
pub fn pg_count(url: &str, sql: &str) -> i64 {
    on_postgres(url, async |conn| {
        sqlx::query_scalar(sql)
            .fetch_one(conn)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    })
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    h.write_u32(std::process::id());
    h.finish()
}

/// How to start a server.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Extra `serve` arguments.
    pub args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// `--database-url` (default: SQLite in the data directory).
    pub database_url: Option<String>,
    /// Environment variables to remove, e.g. `LATCHKEY_ADMIN_PASSWORD` to test the generated default.
    pub unset_env: Vec<String>,
    /// Runs before the first start with the (not yet created) data directory
    /// and the PostgreSQL URL, if any: to seed them, e.g. from a fixture.
    pub prepare: Option<fn(&Path, Option<&str>)>,
}

/// A running `latchkey serve`, killed on drop.
pub struct TestServer {
    child: Option<Child>,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// The data directory (kept for restarts).
    pub data_dir: PathBuf,
    dir: std::sync::Arc<TempDir>,
    options: Options,
    log_path: PathBuf,
    _database: Option<std::sync::Arc<TestDatabase>>,
}

/// Path of the `latchkey` binary under test.
pub fn latchkey_bin() -> &'static str {
    env!("CARGO_BIN_EXE_latchkey")
}

impl TestServer {
    /// Starts a server on a fresh data directory and database.
    pub fn start(backend: Backend) -> TestServer {
        TestServer::start_with(backend, Options::default())
    }

    /// Starts a server with extra options on a fresh data directory and database.
    pub fn start_with(backend: Backend, mut options: Options) -> TestServer {
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(std::sync::Arc::new(TestDatabase::create())),
        };
        if let Some(db) = &database {
            options.database_url.get_or_insert_with(|| db.url.clone());
        }
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let data_dir = dir.path().join("data");
        if let Some(prepare) = options.prepare {
            prepare(&data_dir, options.database_url.as_deref());
        }
        let mut server = TestServer {
            child: None,
            base: String::new(),
            data_dir,
            log_path: dir.path().join("server.log"),
            dir,
            options,
            _database: database,
        };
        server
            .spawn()
            .unwrap_or_else(|e| panic!("server did not start: {e}\n{}", server.log()));
        server
    }

    /// Starts another node on the same database (same secret, own data directory).
    pub fn another_node(&self) -> TestServer {
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let mut node = TestServer {
            child: None,
            base: String::new(),
            data_dir: dir.path().join("data"),
            log_path: dir.path().join("server.log"),
            dir,
            options: self.options.clone(),
            _database: self._database.clone(),
        };
        node.spawn()
            .unwrap_or_else(|e| panic!("node did not start: {e}\n{}", node.log()));
        node
    }

    /// Starts the process and waits for its `listening on` line.
    fn spawn(&mut self) -> Result<(), String> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap();
        let mut cmd = Command::new(latchkey_bin());
        cmd.arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(&self.options.args)
            .env("LATCHKEY_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("LATCHKEY_SECRET", TEST_SECRET)
            .env("RUST_LOG", "info")
            .env_remove("LATCHKEY_DATABASE_URL")
            .env_remove("LATCHKEY_LISTEN")
            .env_remove("LATCHKEY_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        if let Some(url) = &self.options.database_url {
            cmd.arg("--database-url").arg(url);
        }
        for (k, v) in &self.options.env {
            cmd.env(k, v);
        }
        for k in &self.options.unset_env {
            cmd.env_remove(k);
        }
        let mut child = cmd.spawn().map_err(|e| e.to_string())?;
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(addr) = line.strip_prefix("listening on ") {
                    let _ = tx.send(addr.to_owned());
                }
            }
        });
        self.child = Some(child);
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(base) => {
                self.base = base;
                Ok(())
            }
            Err(_) => Err("no `listening on` line within 30 s".into()),
        }
    }

    /// The `--database-url` given to the server, if any.
    pub fn database_url(&self) -> Option<String> {
        self.options.database_url.clone()
    }

    /// Runs one SQL statement on the server's database behind its back.
    pub fn execute_sql(&self, sql: &str) {
        match &self.options.database_url {
            Some(url) => pg_execute(url, sql),
            None => {
                use sqlx::{Connection, Executor};
                let url = format!("sqlite://{}", self.data_dir.join("latchkey.db").display());
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
                    c.execute(sql)
                        .await
                        .unwrap_or_else(|e| panic!("{sql}: {e}"));
                    c.close().await.unwrap();
                });
            }
        }
    }

    /// The full URL of a path (with query).
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// The admin's pseudo-key `Admin:password`.
    pub fn admin(&self) -> String {
        format!("Admin:{ADMIN_PASSWORD}")
    }

    /// Everything the server logged so far. The server writes its log from a
    /// writer thread, so a running server is first sent a marker request
    /// (whose log line follows every earlier one) and the log read until the
    /// marker is in it; marker lines are left out of the result.
    pub fn log(&self) -> String {
        self.sync_log();
        self.raw_log()
            .lines()
            .filter(|l| !l.contains(LOG_SYNC_PATH))
            .map(|l| format!("{l}\n"))
            .collect()
    }

    /// The log file as it is, without waiting for the writer thread.
    fn raw_log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child
            .as_ref()
            .map(Child::id)
            .expect("the server is running")
    }

    fn sync_log(&self) {
        static MARKERS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let quiet = self.options.env.iter().any(|(k, _)| k == "RUST_LOG");
        if self.child.is_none() || quiet {
            return;
        }
        let n = MARKERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let marker = format!("{LOG_SYNC_PATH}{n}\"");
        if client()
            .get(self.url(&format!("{LOG_SYNC_PATH}{n}")))
            .send()
            .is_err()
        {
            return; // not answering: what it wrote is all there is
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let log = std::fs::read_to_string(&self.log_path).unwrap_or_default();
            if log.contains(&marker) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        panic!("the log marker {marker} did not reach the log within 30 s");
    }

    /// The temporary directory holding the data directory and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the process with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("server is running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        c.wait().unwrap()
    }

    /// Starts the process again on the same data directory and database.
    pub fn restart(&mut self) {
        self.kill();
        self.wait_for_dead_sessions();
        self.spawn()
            .unwrap_or_else(|e| panic!("server did not restart: {e}\n{}", self.log()));
    }

    /// After a SIGKILL, PostgreSQL may still finish a COMMIT the dead process
    /// sent; wait (bounded) until its sessions are gone, so that what the test
    /// reads next is final.
    fn wait_for_dead_sessions(&self) {
        let Some(db) = &self._database else { return };
        let sql = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND pid <> pg_backend_pid()",
            db.name
        );
        for _ in 0..100 {
            if pg_count(&db.admin_url, &sql) == 0 {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The options of the next (re)start, e.g. to change the environment before [`restart`](Self::restart).
    pub fn options_mut(&mut self) -> &mut Options {
        &mut self.options
    }

    /// Restarts on the same data directory and database, expecting start-up to
    /// fail: returns the exit status and what the new process wrote to stderr.
    pub fn restart_expecting_failure(&mut self) -> (ExitStatus, String) {
        self.kill();
        let before = self.raw_log().len();
        if self.spawn().is_ok() {
            panic!(
                "the server started but should have refused:\n{}",
                self.log()
            );
        }
        let mut child = self.child.take().expect("spawned");
        let status = wait_with_timeout(&mut child, Duration::from_secs(30));
        (status, self.raw_log()[before..].to_owned())
    }

    /// Creates a key as the admin; returns `(id, key text)`.
    pub fn create_key(&self, info: Value) -> (i32, String) {
        let r = post_json(&self.url("/api/api-keys/create"), &info)
            .header("X-ApiKey", self.admin())
            .send()
            .unwrap();
        let status = r.status();
        let body: Value = r.json().unwrap_or(Value::Null);
        assert_eq!(status, 200, "create failed: {body}");
        (
            body["id"].as_i64().unwrap() as i32,
            body["key"].as_str().unwrap().to_owned(),
        )
    }

    /// Adds a user as the admin.
    pub fn add_user(&self, name: &str, password: &str, groups: &[&str]) {
        let body = serde_json::json!({"name": name, "password": password, "groups": groups});
        let r = post_json(&self.url("/api/security/users/add"), &body)
            .header("X-ApiKey", self.admin())
            .send()
            .unwrap();
        assert_eq!(
            r.status(),
            200,
            "add user failed: {}",
            r.text().unwrap_or_default()
        );
    }

    /// Deletes key `id` with the given key or pseudo-key; returns the response.
    pub fn delete_key(&self, id: impl std::fmt::Display, credential: &str) -> Response {
        client()
            .post(self.url(&format!("/api/api-keys/delete?id={id}")))
            .header("X-ApiKey", credential)
            .send()
            .unwrap()
    }

    /// Creates a key with the given key or pseudo-key; returns the response.
    pub fn create_key_as(&self, credential: &str, info: &Value) -> Response {
        post_json(&self.url("/api/api-keys/create"), info)
            .header("X-ApiKey", credential)
            .send()
            .unwrap()
    }

    /// Lists keys with the given key or pseudo-key.
    pub fn list_keys(&self, credential: &str) -> Response {
        client()
            .get(self.url("/api/api-keys/list"))
            .header("X-ApiKey", credential)
            .send()
            .unwrap()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for a process to exit; kills it and panics after `limit`.
pub fn wait_with_timeout(child: &mut Child, limit: Duration) -> ExitStatus {
    let start = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A shared HTTP client that never uses a proxy.
pub fn client() -> &'static Client {
    static CLIENT: std::sync::OnceLock<Client> = std::sync::OnceLock::new();
    CLIENT.get_or_init(|| {
        Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    })
}

/// A JSON POST request.
pub fn post_json(url: &str, body: &Value) -> RequestBuilder {
    client()
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
}

/// A system key with full control.
pub fn full_control() -> Value {
    serde_json::json!({"type": "system", "systemApis": ["full-control"]})
}

/// A personal key for a user.
pub fn personal(user: &str) -> Value {
    serde_json::json!({"type": "personal", "user": user})
}

/// A feed key on one feed.
pub fn feed_key() -> Value {
    serde_json::json!({"type": "feed", "feed": "public-npm", "packagePermissions": ["view", "add"]})
}

/// A client whose connections come from `127.0.0.N` (the limiter counts per address).
pub fn client_from(n: u8) -> Client {
    Client::builder()
        .no_proxy()
        .local_address(std::net::IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, n)))
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// Closes a connection with a reset (SO_LINGER 0), as a client that gives up does.
pub fn reset(stream: std::net::TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket descriptor and a correctly sized option value.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "setsockopt SO_LINGER");
    drop(stream);
}

/// The permission bits of a file.
pub fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Sends raw bytes and returns everything the server answered.
pub fn raw(s: &TestServer, request: &[u8]) -> String {
    let mut stream = std::net::TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let _ = std::io::Write::write_all(&mut stream, request);
    let mut buf = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}
