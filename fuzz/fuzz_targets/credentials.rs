//! `auth::extract_credential` over arbitrary headers, query and body (the
//! six channels of an API request).
#![no_main]

use http::HeaderValue;
use latchkey::auth::extract_credential;
use latchkey_fuzz::{check_credential, check_one_more, same, Request, EXTRA_KEY};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let req = Request::parse(data);
    let query = req.query.as_deref();
    let found = extract_credential(&req.headers, query, &req.body);
    assert!(
        same(&found, &extract_credential(&req.headers, query, &req.body)),
        "extraction is deterministic"
    );
    if let Ok(Some(c)) = &found {
        check_credential(c);
    }

    // One more credential, as a header and as a query parameter.
    let mut headers = req.headers.clone();
    headers.append("x-apikey", HeaderValue::from_static(EXTRA_KEY));
    check_one_more(&found, &extract_credential(&headers, query, &req.body));
    let more = match query {
        Some(q) => format!("{q}&key={EXTRA_KEY}"),
        None => format!("key={EXTRA_KEY}"),
    };
    check_one_more(
        &found,
        &extract_credential(&req.headers, Some(&more), &req.body),
    );
});
