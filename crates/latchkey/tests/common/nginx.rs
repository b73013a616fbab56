//! A private nginx for the proxy tests: `nginx -p PREFIX -c nginx.conf -g
//! 'daemon off;'` in a temporary prefix (pid, logs, temp paths all inside),
//! on free loopback ports, never the system service. Its guarded site is
//! `docs/nginx/latchkey.conf` itself, with the placeholders filled in; the
//! main configuration and the guarded package index are in
//! `tests/fixtures/proxy/`. Missing nginx is a failure, not a skip.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// The site configuration of docs/proxies.md, with its placeholders.
pub const SITE_TEMPLATE: &str = include_str!("../../../../docs/nginx/latchkey.conf");
/// The test's main configuration, which includes the site.
const MAIN_TEMPLATE: &str = include_str!("../fixtures/proxy/nginx.conf");

/// The nginx binary: `LATCHKEY_TEST_NGINX`, else `nginx` on `PATH` or in `/usr/sbin`.
pub fn nginx_bin() -> PathBuf {
    if let Ok(path) = std::env::var("LATCHKEY_TEST_NGINX") {
        return PathBuf::from(path);
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/local/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx is required by the proxy tests and was not found (PATH, /usr/sbin): \
                 install it (`apt-get install -y nginx`; .ci/run does) or set LATCHKEY_TEST_NGINX"
            )
        })
}

/// A running nginx in front of a latchkey, stopped (SIGTERM) on drop.
pub struct Nginx {
    child: Option<Child>,
    prefix: TempDir,
    /// `127.0.0.1:PORT` where clients reach the guarded site.
    pub addr: SocketAddr,
    /// `127.0.0.1:PORT` of the guarded package index itself (no auth).
    pub index_addr: SocketAddr,
}

impl Nginx {
    /// Starts nginx guarding its package index with the latchkey at `latchkey`
    /// (`http://127.0.0.1:PORT` or `127.0.0.1:PORT`).
    pub fn start(latchkey: &str) -> Nginx {
        let latchkey = latchkey.trim_start_matches("http://");
        let mut last_error = String::new();
        // Free ports are picked by binding port 0 and closing: another process
        // may take one in between, so a bind failure is retried.
        for _ in 0..5 {
            match Nginx::try_start(latchkey) {
                Ok(nginx) => return nginx,
                Err(e) if e.contains("Address already in use") => last_error = e,
                Err(e) => panic!("nginx did not start: {e}"),
            }
        }
        panic!("nginx did not start (ports kept being taken): {last_error}")
    }

    fn try_start(latchkey: &str) -> Result<Nginx, String> {
        let prefix = tempfile::tempdir().map_err(|e| e.to_string())?;
        let p = prefix.path();
        for dir in ["tmp", "www"] {
            std::fs::create_dir_all(p.join(dir)).map_err(|e| e.to_string())?;
        }
        let addr = free_port();
        let index_addr = free_port();
        let site = SITE_TEMPLATE
            .replace("@LATCHKEY@", latchkey)
            .replace("@PACKAGE_INDEX@", &index_addr.to_string())
            .replace("@LISTEN@", &addr.to_string());
        // As root, nginx's workers would switch to `nobody`, who cannot read the prefix.
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 {
            "user root;"
        } else {
            ""
        };
        let main = MAIN_TEMPLATE
            .replace("@USER@", user)
            .replace("@PREFIX@", &p.display().to_string())
            .replace("@PACKAGE_INDEX@", &index_addr.to_string());
        for (name, text) in [("latchkey.conf", site), ("nginx.conf", main)] {
            assert!(
                !has_placeholder(&text),
                "unfilled placeholder in {name}:\n{text}"
            );
            std::fs::write(p.join(name), text).map_err(|e| e.to_string())?;
        }
        let stderr = std::fs::File::create(p.join("stderr.log")).map_err(|e| e.to_string())?;
        let child = Command::new(nginx_bin())
            .arg("-p")
            .arg(p)
            .arg("-c")
            .arg(p.join("nginx.conf"))
            .arg("-e")
            .arg(p.join("error.log"))
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", nginx_bin().display()))?;
        let mut nginx = Nginx {
            child: Some(child),
            prefix,
            addr,
            index_addr,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = nginx
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                nginx.child = None;
                return Err(format!("nginx exited with {status}:\n{}", nginx.logs()));
            }
            if TcpStream::connect(addr).is_ok() && TcpStream::connect(index_addr).is_ok() {
                return Ok(nginx);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "nginx not listening within 20 s:\n{}",
                    nginx.logs()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The root of the guarded package index (static files, served as they are).
    pub fn www(&self) -> PathBuf {
        self.prefix.path().join("www")
    }

    /// The prefix directory (configuration, logs).
    pub fn prefix(&self) -> &Path {
        self.prefix.path()
    }

    /// `http://127.0.0.1:PORT` + `path`, through the guard.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The access log so far: one `STATUS METHOD URI` line per client request.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.prefix.path().join("access.log")).unwrap_or_default()
    }

    /// nginx's stderr and error log, for failure messages.
    pub fn logs(&self) -> String {
        let read =
            |name: &str| std::fs::read_to_string(self.prefix.path().join(name)).unwrap_or_default();
        format!(
            "--- stderr\n{}--- error.log\n{}",
            read("stderr.log"),
            read("error.log")
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SIGTERM: the master stops its workers, then exits.
            let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
            // SAFETY: signalling our own child process.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
}

/// Whether `text` still holds an `@NAME@` placeholder (`@name` locations are nginx's own).
fn has_placeholder(text: &str) -> bool {
    text.split('@').skip(1).any(|rest| {
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || *c == '_')
            .collect();
        !name.is_empty() && rest[name.len()..].starts_with('@')
    })
}
