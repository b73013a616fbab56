//! Floods from one address: hang-ups, concurrent guesses and slow bodies
//! neither exhaust the server nor lock anyone else out.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use base64::Engine;
use reqwest::blocking::Client;

use crate::both_backends;
use crate::common::{client_from, full_control, Backend, Options, TestServer};

both_backends!(concurrent_guesses_cannot_overshoot_the_limit);

fn start(backend: Backend, args: &[&str]) -> TestServer {
    let options = Options {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    };
    TestServer::start_with(backend, options)
}

/// A raw TCP connection to the server (from 127.0.0.1, the attacker's address).
fn connect(s: &TestServer) -> TcpStream {
    let c = TcpStream::connect(s.base.trim_start_matches("http://")).unwrap();
    c.set_nodelay(true).unwrap();
    c
}

fn basic(user_pass: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(user_pass)
}

fn vm_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Polls `check` until it holds or `limit` passes.
fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

fn list_status(s: &TestServer, client: &Client, credential: &str) -> u16 {
    client
        .get(s.url("/api/api-keys/list"))
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn password_guesses_that_hang_up_are_counted_and_memory_stays_bounded() {
    let s = start(
        Backend::Sqlite,
        &["--auth-failure-limit", "20", "--auth-block-seconds", "60"],
    );
    let (_, key) = s.create_key(full_control());
    let before = vm_kib(s.pid(), "VmRSS:");
    for burst in 0..5 {
        let connections: Vec<TcpStream> = (0..150)
            .map(|i| {
                let mut c = connect(&s);
                let head = format!(
                    "GET /api/api-keys/list HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {}\r\n\r\n",
                    basic(&format!("Admin:wrong-{burst}-{i}"))
                );
                c.write_all(head.as_bytes()).unwrap();
                c
            })
            .collect();
        // Hang up at once, before any answer, as a client that gives up does.
        connections.into_iter().for_each(crate::common::reset);
    }
    let attacker = client_from(1);
    assert!(
        eventually(Duration::from_secs(20), || list_status(&s, &attacker, &key)
            == 429),
        "the hang-ups were counted: the address is blocked\n{}",
        s.log()
    );
    let growth_mib = vm_kib(s.pid(), "VmHWM:").saturating_sub(before) / 1024;
    assert!(growth_mib < 200, "peak RSS grew by {growth_mib} MiB");
    assert_eq!(
        list_status(&s, &client_from(2), &key),
        200,
        "another address is not affected"
    );
    let log = s.log();
    assert!(log.contains("client=127.0.0.1"), "{log}");
    assert!(
        log.contains("blocking an address after repeated failed authentications")
            && log.contains("failures=20"),
        "the block is logged with its count\n{log}"
    );
}

fn concurrent_guesses_cannot_overshoot_the_limit(backend: Backend) {
    let s = start(
        backend,
        &["--auth-failure-limit", "20", "--auth-block-seconds", "60"],
    );
    let (_, key) = s.create_key(full_control());
    let guesses: Vec<(bool, std::thread::JoinHandle<u16>)> = (0..200)
        .map(|i| {
            let url = s.url("/api/api-keys/list");
            let password = i % 2 == 0;
            let handle = std::thread::spawn(move || {
                let client = client_from(1);
                let request = client.get(url);
                let request = if password {
                    request.basic_auth("Admin", Some(format!("wrong-{i}")))
                } else {
                    request.header("X-ApiKey", format!("wrong-key-{i}"))
                };
                request.send().unwrap().status().as_u16()
            });
            (password, handle)
        })
        .collect();
    let statuses: Vec<u16> = guesses
        .into_iter()
        .map(|(_, h)| h.join().unwrap())
        .collect();
    let evaluated = statuses.iter().filter(|&&c| c == 403).count();
    let refused = statuses.iter().filter(|&&c| c == 429).count();
    assert_eq!(evaluated + refused, 200, "{statuses:?}");
    assert!(
        evaluated <= 20,
        "{evaluated} of 200 concurrent guesses were evaluated; the limit is 20"
    );
    assert_eq!(list_status(&s, &client_from(1), &key), 429, "blocked");
    assert_eq!(list_status(&s, &client_from(2), &key), 200);
}

#[test]
fn slow_bodies_from_one_address_lock_nobody_else_out() {
    let s = start(
        Backend::Sqlite,
        &["--max-in-flight", "32", "--body-timeout", "30"],
    );
    let (_, key) = s.create_key(full_control());
    let legitimate = client_from(2);
    let slow_head = "POST /api/api-keys/create HTTP/1.1\r\nHost: x\r\n\
                     Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    let mut attack: Vec<TcpStream> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(4);
    let mut served = 0;
    while Instant::now() < deadline {
        // About 100 new slow uploads every round, each stuck after one byte.
        for _ in 0..100 {
            let mut c = connect(&s);
            c.write_all(slow_head.as_bytes()).unwrap();
            attack.push(c);
        }
        for path in ["/health", "/api/api-keys/list"] {
            let r = legitimate
                .get(s.url(path))
                .header("X-ApiKey", &key)
                .send()
                .unwrap();
            assert_eq!(r.status(), 200, "{path} under a slow-body attack");
            served += 1;
        }
    }
    assert!(served > 0);
    // The attacker's uploads were refused (429) or timed out (408), long
    // before the 30-second body time-out.
    let mut codes = std::collections::BTreeMap::new();
    for c in attack.iter_mut().take(50) {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 64];
        let n = c.read(&mut buf).unwrap_or(0);
        let line = String::from_utf8_lossy(&buf[..n]);
        *codes
            .entry(line.split(' ').nth(1).unwrap_or("closed").to_owned())
            .or_insert(0) += 1;
    }
    assert!(
        codes.keys().all(|c| c == "429" || c == "408"),
        "attack answers: {codes:?}"
    );
}
