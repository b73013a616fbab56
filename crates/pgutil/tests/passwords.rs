//! Passwords that are not on the command line: `security users passwd` (from
//! stdin or asked twice on a terminal) and the prompt for a missing
//! `--password`. Terminal sessions run under util-linux `script`, which gives
//! pgutil a pseudo-terminal.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{closed_port_url, Config, Server, ADMIN_PASSWORD};
use predicates::prelude::*;

const OLD_PASSWORD: &str = "old-password-for-jsmith";
const NEW_PASSWORD: &str = "new-password-for-jsmith";

/// `--source=URL --api-key=Admin:…`: authenticates as Admin while `--username`
/// names the user being managed.
fn as_admin(server: &Server) -> [String; 2] {
    [
        server.source_arg(),
        format!("--api-key=Admin:{ADMIN_PASSWORD}"),
    ]
}

/// Creates the user `jsmith` with [`OLD_PASSWORD`].
fn create_jsmith(config: &Config, server: &Server) {
    config
        .pgutil()
        .args(["security", "users", "create", "--username=jsmith"])
        .arg(format!("--password={OLD_PASSWORD}"))
        .args(as_admin(server))
        .assert()
        .success();
}

/// Whether `jsmith` can log in with `password` (`apikeys list` as jsmith).
fn jsmith_logs_in_with(config: &Config, server: &Server, password: &str) -> bool {
    let output = config
        .pgutil()
        .args(["apikeys", "list", &server.source_arg(), "--username=jsmith"])
        .arg(format!("--password={password}"))
        .output()
        .expect("run pgutil");
    output.status.success()
}

#[test]
fn passwd_reads_the_first_line_of_stdin_and_only_the_new_password_works() {
    let server = Server::start();
    let config = Config::new();
    create_jsmith(&config, &server);
    assert!(jsmith_logs_in_with(&config, &server, OLD_PASSWORD));

    config
        .pgutil()
        .args(["security", "users", "passwd", "--username=jsmith"])
        .args(as_admin(&server))
        .write_stdin(format!("{NEW_PASSWORD}\nsecond line, not part of it\n"))
        .assert()
        .success()
        .stdout("Changing the password of user jsmith...\nPassword changed.\n")
        .stderr("");

    assert!(jsmith_logs_in_with(&config, &server, NEW_PASSWORD));
    assert!(!jsmith_logs_in_with(&config, &server, OLD_PASSWORD));
    // The display name and groups were left alone.
    config
        .pgutil()
        .args(["security", "users", "list", "--search-term=jsmith"])
        .args(server.admin_args())
        .assert()
        .success()
        .stdout(predicate::str::contains("jsmith (jsmith)\n"));
}

#[test]
fn passwd_takes_a_last_line_without_newline_and_strips_crlf() {
    let server = Server::start();
    let config = Config::new();
    create_jsmith(&config, &server);
    for (input, password) in [
        (NEW_PASSWORD.to_owned(), NEW_PASSWORD),
        ("third-password-123\r\n".to_owned(), "third-password-123"),
    ] {
        config
            .pgutil()
            .args(["security", "users", "passwd", "--username=jsmith"])
            .args(as_admin(&server))
            .write_stdin(input)
            .assert()
            .success();
        assert!(jsmith_logs_in_with(&config, &server, password));
    }
}

#[test]
fn passwd_of_an_unknown_user_says_not_found() {
    let server = Server::start();
    let config = Config::new();
    config
        .pgutil()
        .args(["security", "users", "passwd", "--username=nobody"])
        .args(as_admin(&server))
        .write_stdin(format!("{NEW_PASSWORD}\n"))
        .assert()
        .code(1)
        .stdout("Changing the password of user nobody...\n")
        .stderr(predicate::str::starts_with(
            "error: changing the password of user nobody failed: not found (404), server said: \"user not found\"",
        ));
}

#[test]
fn passwd_without_a_password_on_stdin_is_a_usage_error_and_sends_nothing() {
    let config = Config::new();
    // Nothing listens at the source: a request would fail with exit code 1.
    for input in ["", "\n", "\r\n"] {
        config
            .pgutil()
            .args(["security", "users", "passwd", "--username=jsmith"])
            .arg(format!("--source={}", closed_port_url()))
            .arg("--api-key=k")
            .write_stdin(input)
            .assert()
            .code(2)
            .stdout("")
            .stderr("error: no password on standard input; write it as the first line\n");
    }
}

#[test]
fn a_missing_password_without_a_terminal_is_a_usage_error_never_an_empty_password() {
    let config = Config::new();
    let source = format!("--source={}", closed_port_url());
    for password in [None, Some("--password=")] {
        config
            .pgutil()
            .args(["apikeys", "list", &source, "--username=Admin"])
            .args(password)
            .write_stdin("")
            .assert()
            .code(2)
            .stdout("")
            .stderr(
                "error: --username=Admin without --password and standard input is not a terminal to ask for the password; give --password=PASSWORD\n",
            );
    }

    config
        .pgutil()
        .args([
            "sources",
            "add",
            "--name=Default",
            &format!("--url={}", closed_port_url()),
            "--username=Admin",
        ])
        .write_stdin("")
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            "error: --username=Admin without --password and standard input is not a terminal to ask for the password; give --password=PASSWORD\n",
        );
    assert!(!config.path().exists(), "nothing is written");

    // A source that stores a user without a password (as an older pgutil wrote it).
    config.write(&format!(
        "{{\"sources\":[{{\"name\":\"Default\",\"url\":\"{}\",\"username\":\"Admin\"}}]}}",
        closed_port_url()
    ));
    config
        .pgutil()
        .args(["apikeys", "list"])
        .write_stdin("")
        .assert()
        .code(2)
        .stdout("")
        .stderr(
            "error: the source's user Admin has no stored password and standard input is not a terminal to ask for the password; give --username and --password, or store a password with `pgutil sources add`\n",
        );
}

// ---- on a terminal --------------------------------------------------------

/// A `pgutil` run on a pseudo-terminal (util-linux `script`), fed line by line.
struct Terminal {
    child: std::process::Child,
    output: mpsc::Receiver<Vec<u8>>,
    seen: String,
}

impl Terminal {
    /// Starts `pgutil ARGS…` on a fresh pseudo-terminal.
    fn start(config: &Config, args: &[String]) -> Terminal {
        let pgutil = assert_cmd::cargo::cargo_bin("pgutil");
        let command_line = std::iter::once(pgutil.display().to_string())
            .chain(args.iter().cloned())
            .map(|word| format!("'{}'", word.replace('\'', r"'\''")))
            .collect::<Vec<_>>()
            .join(" ");
        let mut child = Command::new("script")
            .args(["--quiet", "--return", "--command", &command_line, "/dev/null"])
            .env("PGUTIL_CONFIG", config.path())
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "run `script` (util-linux) to give pgutil a terminal; install util-linux or bsdutils",
            );
        let mut stdout = child.stdout.take().expect("script stdout");
        let (tx, output) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buffer) {
                if tx.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        Terminal {
            child,
            output,
            seen: String::new(),
        }
    }

    /// Waits (up to a generous bound) until the terminal has shown `text`.
    fn wait_for(&mut self, text: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.seen.contains(text) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.output.recv_timeout(left) {
                Ok(bytes) => self.seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!(
                    "the terminal never showed {text:?}; it showed {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Types a line.
    fn type_line(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().expect("script stdin");
        stdin
            .write_all(format!("{line}\r").as_bytes())
            .and_then(|()| stdin.flush())
            .expect("type on the terminal");
    }

    /// Waits for pgutil to exit; its exit code and everything the terminal showed.
    fn finish(mut self) -> (Option<i32>, String) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait for script") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("pgutil did not exit; the terminal showed {:?}", self.seen);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        while let Ok(bytes) = self.output.recv_timeout(Duration::from_secs(5)) {
            self.seen.push_str(&String::from_utf8_lossy(&bytes));
        }
        (status.code(), self.seen)
    }
}

#[test]
fn passwd_on_a_terminal_asks_twice() {
    let server = Server::start();
    let config = Config::new();
    create_jsmith(&config, &server);
    let mut args = vec!["security".into(), "users".into(), "passwd".into()];
    args.push("--username=jsmith".into());
    args.extend(as_admin(&server));

    let mut terminal = Terminal::start(&config, &args);
    terminal.wait_for("New password for jsmith: ");
    terminal.type_line(NEW_PASSWORD);
    terminal.wait_for("Confirm password: ");
    terminal.type_line(NEW_PASSWORD);
    let (code, shown) = terminal.finish();
    assert_eq!(code, Some(0), "{shown:?}");
    assert!(shown.contains("Password changed."), "{shown:?}");
    assert!(jsmith_logs_in_with(&config, &server, NEW_PASSWORD));

    // Two different answers change nothing.
    let mut terminal = Terminal::start(&config, &args);
    terminal.wait_for("New password for jsmith: ");
    terminal.type_line("one-password-123");
    terminal.wait_for("Confirm password: ");
    terminal.type_line("another-password-456");
    let (code, shown) = terminal.finish();
    assert_eq!(code, Some(2), "{shown:?}");
    assert!(
        shown.contains("error: the passwords did not match"),
        "{shown:?}"
    );
    assert!(jsmith_logs_in_with(&config, &server, NEW_PASSWORD));
}

#[test]
fn a_missing_password_is_asked_for_on_a_terminal() {
    let server = Server::start();
    let config = Config::new();
    create_jsmith(&config, &server);
    let args: Vec<String> = vec![
        "apikeys".into(),
        "create".into(),
        "personal".into(),
        "--name=from-a-terminal".into(),
        server.source_arg(),
        "--username=jsmith".into(),
    ];
    let mut terminal = Terminal::start(&config, &args);
    terminal.wait_for("Password for jsmith: ");
    terminal.type_line(OLD_PASSWORD);
    let (code, shown) = terminal.finish();
    assert_eq!(code, Some(0), "{shown:?}");
    config
        .pgutil()
        .args(["apikeys", "list", &server.source_arg(), "--username=jsmith"])
        .arg(format!("--password={OLD_PASSWORD}"))
        .assert()
        .success()
        .stdout(predicate::str::starts_with("from-a-terminal\n"));
}
