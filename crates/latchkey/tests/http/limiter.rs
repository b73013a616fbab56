//! The brute-force limiter: an address with too many failed authentications
//! gets `429` with `Retry-After`, and nobody else is affected.

use std::time::Duration;

use reqwest::blocking::{Client, Response};

use crate::both_backends;
use crate::common::{
    client_from, feed_key, full_control, Backend, Options, TestServer, ADMIN_PASSWORD,
};

both_backends!(
    an_attacking_address_gets_429_while_other_addresses_and_the_attacked_key_keep_working,
    a_block_ends_by_itself_and_a_repeat_block_is_longer,
    refused_permissions_of_valid_callers_do_not_count,
    a_limit_of_zero_disables_the_limiter,
);

fn limited_server(backend: Backend, limit: u32, block_seconds: u64) -> TestServer {
    let args = [
        "--auth-failure-limit",
        &limit.to_string(),
        "--auth-block-seconds",
        &block_seconds.to_string(),
    ];
    TestServer::start_with(
        backend,
        Options {
            args: args.map(String::from).to_vec(),
            ..Default::default()
        },
    )
}

fn list(s: &TestServer, client: &Client, credential: &str) -> Response {
    client
        .get(s.url("/api/api-keys/list"))
        .header("X-ApiKey", credential)
        .send()
        .unwrap()
}

fn retry_after(r: &Response) -> u64 {
    r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn an_attacking_address_gets_429_while_other_addresses_and_the_attacked_key_keep_working(
    backend: Backend,
) {
    let s = limited_server(backend, 5, 30);
    let (_, key) = s.create_key(full_control());
    let attacker = client_from(1);
    let legitimate = client_from(2);

    let guesses = [
        "lk_wrong",
        "not-a-key",
        "Admin:wrong-password",
        "",
        "lk_guess",
    ];
    for (i, guess) in guesses.iter().enumerate() {
        let r = list(&s, &attacker, guess);
        assert_eq!(r.status(), 403, "failure {} is still a 403", i + 1);
        // The legitimate client, on its own address, is never slowed down.
        assert_eq!(list(&s, &legitimate, &key).status(), 200);
    }

    let r = list(&s, &attacker, "lk_one_more_guess");
    assert_eq!(r.status(), 429);
    let wait = retry_after(&r);
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    assert!(r
        .text()
        .unwrap()
        .contains("too many failed authentications"));

    // Refused before any credential work: even the valid key, on every API route.
    assert_eq!(list(&s, &attacker, &key).status(), 429);
    let users = attacker
        .get(s.url("/api/security/users/list"))
        .header("X-ApiKey", &key)
        .send()
        .unwrap();
    assert_eq!(users.status(), 429);
    let delete = attacker
        .post(s.url("/api/api-keys/delete?id=1000"))
        .basic_auth("api", Some(&key))
        .send()
        .unwrap();
    assert_eq!(delete.status(), 429);
    assert_eq!(
        attacker.get(s.url("/health")).send().unwrap().status(),
        200,
        "/health needs no credential"
    );

    // The attacked key and the attacked account still work from any other address.
    assert_eq!(list(&s, &legitimate, &key).status(), 200);
    assert_eq!(list(&s, &legitimate, &s.admin()).status(), 200);
    let login = legitimate
        .get(s.url("/api/api-keys/list"))
        .basic_auth("Admin", Some(ADMIN_PASSWORD))
        .send()
        .unwrap();
    assert_eq!(login.status(), 200);
    assert_eq!(list(&s, &client_from(3), &key).status(), 200);

    let log = s.log();
    assert!(
        log.contains("blocking an address after repeated failed authentications"),
        "{log}"
    );
    assert!(log.contains("status=429"), "429s are in the request log");
}

fn a_block_ends_by_itself_and_a_repeat_block_is_longer(backend: Backend) {
    let s = limited_server(backend, 3, 1);
    let (_, key) = s.create_key(full_control());
    let c = client_from(4);
    for _ in 0..3 {
        assert_eq!(list(&s, &c, "lk_wrong").status(), 403);
    }
    let r = list(&s, &c, &key);
    assert_eq!(r.status(), 429);
    assert_eq!(retry_after(&r), 1);

    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(list(&s, &c, &key).status(), 200, "the block is over");
    for _ in 0..3 {
        assert_eq!(list(&s, &c, "lk_wrong").status(), 403);
    }
    let r = list(&s, &c, &key);
    assert_eq!(r.status(), 429);
    assert_eq!(retry_after(&r), 2, "the second block lasts twice as long");
}

fn refused_permissions_of_valid_callers_do_not_count(backend: Backend) {
    let s = limited_server(backend, 3, 60);
    let (_, feed) = s.create_key(feed_key());
    let c = client_from(5);
    for _ in 0..10 {
        let r = list(&s, &c, &feed);
        assert_eq!(r.status(), 403, "a feed key may not list keys");
        assert!(r.text().unwrap().contains("not authorized"));
    }
    assert_eq!(
        list(&s, &c, &s.admin()).status(),
        200,
        "not blocked: every credential was valid"
    );
}

fn a_limit_of_zero_disables_the_limiter(backend: Backend) {
    let s = limited_server(backend, 0, 60);
    let c = client_from(6);
    for _ in 0..30 {
        assert_eq!(list(&s, &c, "lk_wrong").status(), 403);
    }
    assert_eq!(list(&s, &c, &s.admin()).status(), 200);
}
