//! The `id` query parsers: `keys::parse_id` (api-keys delete, rotate,
//! logs; 32 bits) and `http::parse_permission_id` (permissions delete; 64
//! bits), which must agree on everything but the range.
#![no_main]

use latchkey::http::parse_permission_id;
use latchkey::keys::{parse_id, IdError};
use libfuzzer_sys::fuzz_target;

fn integer_shape(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

fuzz_target!(|data: &[u8]| {
    let Ok(query) = std::str::from_utf8(data) else {
        return;
    };
    let ids: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(n, _)| n == "id")
        .map(|(_, v)| v.into_owned())
        .collect();
    let key_id = parse_id(Some(query));
    match &key_id {
        Ok(id) => {
            assert_eq!(ids.len(), 1, "exactly one id");
            assert!(integer_shape(&ids[0]), "{:?} is not ^-?[0-9]+$", ids[0]);
            assert_eq!(ids[0].parse::<i64>().ok(), Some(i64::from(*id)));
            // A parsed id re-formats to digits that parse to the same id.
            let text = id.to_string();
            assert!(integer_shape(&text));
            assert_eq!(parse_id(Some(&format!("id={text}"))), Ok(*id));
        }
        Err(IdError::Missing) => assert!(ids.is_empty() || (ids.len() == 1 && ids[0].is_empty())),
        Err(IdError::Repeated) => assert!(ids.len() > 1),
        Err(IdError::NotAnInteger) => {
            assert_eq!(ids.len(), 1);
            assert!(!integer_shape(&ids[0]) || ids[0].parse::<i32>().is_err());
        }
    }

    let permission_id = parse_permission_id(Some(query));
    match (&key_id, &permission_id) {
        (Ok(k), Ok(p)) => assert_eq!(i64::from(*k), *p),
        (Ok(k), Err(e)) => panic!("key id {k} but permission id error {e}"),
        (Err(IdError::NotAnInteger), Ok(p)) => {
            assert!(i32::try_from(*p).is_err(), "{p} fits 32 bits")
        }
        (Err(e), Ok(p)) => panic!("key id error {e} but permission id {p}"),
        (Err(k), Err(p)) => assert_eq!(k.to_string(), *p, "the same message"),
    }
    assert_eq!(parse_id(None), Err(IdError::Missing));
});
