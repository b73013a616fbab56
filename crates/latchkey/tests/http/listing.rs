//! The full listing is streamed a page at a time: every key exactly once, in
//! id order, as one valid JSON array.

use serde_json::Value;

use crate::both_backends;
use crate::common::{full_control, Backend, TestServer};

both_backends!(an_admin_listing_spanning_several_pages_has_every_key_once_in_order);
both_backends!(a_listing_within_one_page_goes_out_in_one_buffer_with_a_length);

fn a_listing_within_one_page_goes_out_in_one_buffer_with_a_length(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, admin) = s.create_key(full_control());
    s.create_key(full_control());
    let r = s.list_keys(&admin);
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("transfer-encoding").is_none(),
        "not chunked: {:?}",
        r.headers()
    );
    let length: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = r.bytes().unwrap();
    assert_eq!(body.len(), length);
    let listed: Vec<Value> = serde_json::from_slice(&body).expect("one valid JSON array");
    assert_eq!(listed.len(), 2);
}

fn an_admin_listing_spanning_several_pages_has_every_key_once_in_order(backend: Backend) {
    let s = TestServer::start(backend);
    let (_, creator) = s.create_key(full_control());
    // 2,001 more keys: the listing crosses two page boundaries (pages of 1,000).
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (s, creator) = (&s, &creator);
            scope.spawn(move || {
                for i in 0..(2001 / 4 + usize::from(t < 2001 % 4)) {
                    let body = serde_json::json!({
                        "type": "system", "systemApis": ["sca"], "displayName": format!("k{t}-{i}")
                    });
                    let r = crate::common::post_json(&s.url("/api/api-keys/create"), &body)
                        .header("X-ApiKey", creator)
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 200);
                }
            });
        }
    });
    let r = s.list_keys(&creator);
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let listed: Vec<Value> = r.json().expect("one valid JSON array");
    let ids: Vec<i64> = listed.iter().map(|k| k["id"].as_i64().unwrap()).collect();
    assert_eq!(ids.len(), 2002);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ordered by id, no duplicates"
    );
    assert_eq!(ids[0], 1000);
    assert!(
        listed.iter().all(|k| k.get("key").is_none()),
        "never the key text"
    );
}
