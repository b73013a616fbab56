//! Slow and too many clients: a stalled body is 408, overload is 503, and the
//! server recovers by itself.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::{Backend, Options, TestServer};

fn start(args: &[&str]) -> TestServer {
    let options = Options {
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Options::default()
    };
    TestServer::start_with(Backend::Sqlite, options)
}

/// Opens a connection and sends a request head promising a body that never fully arrives.
fn stalled_upload(s: &TestServer) -> TcpStream {
    let addr = s.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /api/api-keys/create HTTP/1.1\r\nHost: {addr}\r\nX-ApiKey: {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{",
        s.admin()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream
}

fn read_status(stream: &mut TcpStream) -> String {
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut buf = [0u8; 512];
    let n = stream.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

#[test]
fn a_body_that_stalls_is_408() {
    let s = start(&["--body-timeout", "1"]);
    let mut stream = stalled_upload(&s);
    assert_eq!(read_status(&mut stream), "HTTP/1.1 408 Request Timeout");
}

#[test]
fn requests_beyond_the_in_flight_limit_are_503_and_the_server_recovers() {
    let s = start(&["--max-in-flight", "1", "--body-timeout", "30"]);
    let stalled = stalled_upload(&s);
    std::thread::sleep(Duration::from_millis(200));
    let r = crate::common::client()
        .get(s.url("/health"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    drop(stalled);
    let mut recovered = false;
    for _ in 0..50 {
        if crate::common::client()
            .get(s.url("/health"))
            .send()
            .unwrap()
            .status()
            == 200
        {
            recovered = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(recovered, "the server serves again once the slot is free");
}
