//! A create body: JSON → `ApiKeyInfo` (as handlers read JSON,
//! `http::parse_json`), then `keys::validate_new_key` and the custom-key
//! length rule. What passes must satisfy every ApiKeyInfo rule.
#![no_main]

use latchkey::auth::{as_key, Credential};
use latchkey::http::parse_json;
use latchkey::keys::{checksum_ok, has_generated_shape, validate_new_key, InputRules, ValidKey};
use libfuzzer_sys::fuzz_target;
use proget_api::{ApiKeyInfo, ApiKeyType, Logging, SystemApi};
use time::macros::datetime;
use time::OffsetDateTime;

const NOW: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

fn no_duplicates<T: PartialEq>(values: &[T]) -> bool {
    values
        .iter()
        .enumerate()
        .all(|(i, v)| !values[..i].contains(v))
}

fn check(v: &ValidKey, info: &ApiKeyInfo) {
    assert_eq!(Some(v.key_type), info.key_type);
    assert!(no_duplicates(&v.system_apis));
    assert!(no_duplicates(&v.package_permissions));
    let blank = |s: &Option<String>| s.as_deref().is_some_and(|s| s.trim().is_empty());
    assert!(!blank(&v.feed) && !blank(&v.feed_group) && !blank(&v.user));
    match v.key_type {
        ApiKeyType::Other => panic!("type other was accepted"),
        ApiKeyType::System => {
            assert!(!v.system_apis.is_empty());
            assert!(!v.system_apis.contains(&SystemApi::FullControl) || v.system_apis.len() == 1);
            assert!(v.package_permissions.is_empty());
            assert!(v.feed.is_none() && v.feed_group.is_none() && v.user.is_none());
        }
        ApiKeyType::Feed => {
            assert!(!v.package_permissions.is_empty());
            assert!(v.feed.is_some() != v.feed_group.is_some());
            assert!(v.system_apis.is_empty() && v.user.is_none());
        }
        ApiKeyType::Personal => {
            assert!(v.user.is_some());
            assert!(v.system_apis.is_empty() && v.package_permissions.is_empty());
            assert!(v.feed.is_none() && v.feed_group.is_none());
        }
    }
    assert!(v.expiration.is_none_or(|e| e > NOW));
    assert_eq!(v.logging, info.logging.unwrap_or(Logging::None));
    assert!(v
        .display_name
        .as_ref()
        .is_none_or(|s| s.chars().count() <= 256));
    assert!(v
        .description
        .as_ref()
        .is_none_or(|s| s.chars().count() <= 4096));
    if let Some(key) = &v.custom_key {
        assert!((1..=256).contains(&key.len()));
        assert!(key.bytes().all(|b| b.is_ascii_graphic() && b != b':'));
        assert!(!has_generated_shape(key) || checksum_ok(key));
        // A custom key is presented later as a plain key, never a pseudo-key.
        assert_eq!(as_key(key.clone()), Credential::Key(key.clone()));
        let _ = InputRules::default().check_custom_key(key);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(info) = parse_json::<ApiKeyInfo>(data) else {
        return;
    };
    // What the server read, it writes back and reads again the same.
    let json = serde_json::to_vec(&info).expect("an ApiKeyInfo read is written");
    let again = parse_json::<ApiKeyInfo>(&json).expect("an ApiKeyInfo written is read");
    assert_eq!(again, info);

    let without = validate_new_key(info.clone(), false, NOW);
    let with = validate_new_key(info.clone(), true, NOW);
    for valid in [&without, &with].into_iter().flatten() {
        check(valid, &info);
    }
    if let Ok(v) = &without {
        assert_eq!(
            with.as_ref(),
            Ok(v),
            "allowing custom keys refuses nothing more"
        );
    }
    if info.key.is_none() {
        assert_eq!(without, with, "custom keys matter only with a key");
    }
});
