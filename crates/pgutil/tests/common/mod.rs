//! Test harness: a real `latchkey` server in a temporary data directory and a
//! `pgutil` command that uses a temporary config file.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

/// Password of the `Admin` user the server creates on first start.
pub const ADMIN_PASSWORD: &str = "correct-horse-battery-staple";

/// How long a server may take to print its `listening on` line.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The `latchkey` binary: `$LATCHKEY_BIN`, else next to the test executable's
/// target directory, else built once with cargo.
fn latchkey_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(bin) = std::env::var_os("LATCHKEY_BIN") {
            return PathBuf::from(bin);
        }
        // .../target/debug/deps/<test> → .../target/debug/latchkey
        let exe = std::env::current_exe().expect("test executable path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile> folder");
        let bin = profile_dir.join(format!("latchkey{}", std::env::consts::EXE_SUFFIX));
        if !bin.exists() {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "latchkey", "--bin", "latchkey"])
                .status()
                .expect("run cargo to build latchkey");
            assert!(status.success(), "building latchkey failed");
        }
        assert!(bin.exists(), "no latchkey binary at {}", bin.display());
        bin
    })
}

/// A running `latchkey` server, killed on drop.
pub struct Server {
    child: Child,
    /// Base URL, e.g. `http://127.0.0.1:41234`.
    pub url: String,
    data_dir: TempDir,
}

impl Server {
    /// Starts a server on a free port with an empty database and waits until it listens.
    pub fn start() -> Server {
        Server::start_with_env(&[])
    }

    /// Starts a server as [`Server::start`] does, with extra environment variables.
    pub fn start_with_env(env: &[(&str, &str)]) -> Server {
        let data_dir = tempfile::tempdir().expect("data dir");
        let log = std::fs::File::create(data_dir.path().join("server.log")).expect("log file");
        let mut command = Command::new(latchkey_bin());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("LATCHKEY_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir.path())
            .env("LATCHKEY_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .expect("start latchkey");
        let stdout = child.stdout.take().expect("server stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the server never blocks on a full pipe.
            for _ in lines {}
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                let log =
                    std::fs::read_to_string(data_dir.path().join("server.log")).unwrap_or_default();
                panic!("latchkey did not print its listening line in time; log:\n{log}");
            }
        };
        let url = line
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from latchkey: {line:?}"))
            .trim()
            .to_owned();
        Server {
            child,
            url,
            data_dir,
        }
    }

    /// `--source=URL --username=Admin --password=…`
    pub fn admin_args(&self) -> Vec<String> {
        vec![
            format!("--source={}", self.url),
            "--username=Admin".into(),
            format!("--password={ADMIN_PASSWORD}"),
        ]
    }

    /// `--source=URL`
    pub fn source_arg(&self) -> String {
        format!("--source={}", self.url)
    }

    /// The server's log so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A temporary config file for `pgutil`.
pub struct Config {
    dir: TempDir,
}

impl Config {
    /// An empty config folder (the file does not exist yet).
    pub fn new() -> Config {
        Config {
            dir: tempfile::tempdir().expect("config dir"),
        }
    }

    /// Path of the config file.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("pgutil").join("pgutil.config")
    }

    /// Writes the config file.
    pub fn write(&self, json: &str) {
        let path = self.path();
        std::fs::create_dir_all(path.parent().expect("parent")).expect("config folder");
        std::fs::write(path, json).expect("write config");
    }

    /// Reads the config file.
    pub fn read(&self) -> String {
        std::fs::read_to_string(self.path()).unwrap_or_default()
    }

    /// The `pgutil` binary with `PGUTIL_CONFIG` pointing at this config.
    pub fn pgutil(&self) -> assert_cmd::Command {
        let mut command = assert_cmd::Command::cargo_bin("pgutil").expect("pgutil binary");
        command
            .env("PGUTIL_CONFIG", self.path())
            .env_remove("XDG_CONFIG_HOME")
            .timeout(Duration::from_secs(120));
        command
    }
}

/// A port on which nothing listens (bound, then released).
pub fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}/")
}

/// Stdout of a command as text.
pub fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr of a command as text.
pub fn stderr_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
