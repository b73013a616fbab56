//! Property tests standing in for fuzzing where `cargo fuzz` cannot run in
//! CI (it needs a nightly toolchain): ApiKeyInfo parsing and validation of a
//! create request, on arbitrary JSON and on bytes.
//!
//! Longer runs: `PROPTEST_CASES=100000 cargo nextest run -p latchkey --test fuzz_validation`.

use latchkey::keys::{checksum_ok, generate_key, has_generated_shape, validate_new_key};
use proget_api::{ApiKeyInfo, ApiKeyType, SystemApi};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use time::OffsetDateTime;

/// Any JSON value, with object keys often the real property names.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        Just(json!("system")),
        Just(json!("full-control")),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((property_name(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn property_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(PROPERTIES).prop_map(str::to_owned),
        "[a-zA-Z_]{0,12}",
    ]
}

const PROPERTIES: &[&str] = &[
    "id",
    "type",
    "key",
    "displayName",
    "description",
    "systemApis",
    "packagePermissions",
    "feed",
    "feedGroup",
    "expiration",
    "logging",
    "user",
    "API_Key",
];

/// A create request that is often close to valid: every property optional,
/// each drawn from good and bad values.
fn near_valid_request() -> impl Strategy<Value = Value> {
    let text = || {
        prop_oneof![
            Just(json!("public-npm")),
            Just(json!("")),
            Just(json!("  ")),
            Just(json!(7)),
            ".{0,300}".prop_map(Value::from)
        ]
    };
    let key = prop_oneof![
        Just(Value::from(generate_key())),
        "lk_[a-zA-Z0-9]{36}".prop_map(Value::from),
        "[!-~]{0,300}".prop_map(Value::from),
        ".{0,20}".prop_map(Value::from),
        Just(json!("user:password")),
    ];
    let list = |names: &'static [&'static str]| {
        prop::collection::vec(prop::sample::select(names).prop_map(Value::from), 0..5)
            .prop_map(Value::Array)
    };
    let fields = (
        prop::sample::select(
            &[
                "system", "feed", "personal", "other", "System", "Feed", "bogus",
            ][..],
        )
        .prop_map(Value::from),
        key,
        text(),
        text(),
        list(&[
            "full-control",
            "feeds",
            "sca",
            "sbom-upload",
            "Feeds",
            "bogus",
        ]),
        list(&["view", "add", "promote", "delete", "View", "bogus"]),
        text(),
        text(),
        prop::sample::select(
            &[
                "2020-01-01",
                "2999-01-01",
                "2999/12/31",
                "2999-01-01T00:00:00+02:00",
                "tomorrow",
                "",
            ][..],
        )
        .prop_map(Value::from),
        prop::sample::select(&["none", "request", "response", "both", "Both", "loud"][..])
            .prop_map(Value::from),
        text(),
    );
    (
        fields,
        prop::collection::vec(prop::bool::weighted(0.3), 11),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(f, mut present, with_type)| {
            // Sparse properties, but usually a type: acceptance needs both.
            present[0] = with_type;
            let values = [f.0, f.1, f.2, f.3, f.4, f.5, f.6, f.7, f.8, f.9, f.10];
            let names = [
                "type",
                "key",
                "displayName",
                "description",
                "systemApis",
                "packagePermissions",
                "feed",
                "feedGroup",
                "expiration",
                "logging",
                "user",
            ];
            let object = names
                .iter()
                .zip(values)
                .zip(present)
                .filter(|(_, keep)| *keep)
                .map(|((name, value), _)| (name.to_string(), value))
                .collect::<Map<_, _>>();
            Value::Object(object)
        })
}

/// Parses and validates like the create handler; checks every rule on what is accepted.
fn check(request: &Value, custom_keys: bool) -> Result<(), TestCaseError> {
    let Ok(info) = serde_json::from_value::<ApiKeyInfo>(request.clone()) else {
        return Ok(());
    };
    let now = OffsetDateTime::now_utc();
    let Ok(valid) = validate_new_key(info.clone(), custom_keys, now) else {
        return Ok(());
    };
    prop_assert_eq!(Some(valid.key_type), info.key_type);
    let apis: std::collections::HashSet<_> = valid.system_apis.iter().collect();
    let permissions: std::collections::HashSet<_> = valid.package_permissions.iter().collect();
    prop_assert_eq!(
        apis.len(),
        valid.system_apis.len(),
        "duplicate systemApis kept"
    );
    prop_assert_eq!(
        permissions.len(),
        valid.package_permissions.len(),
        "duplicate packagePermissions kept"
    );
    match valid.key_type {
        ApiKeyType::Other => prop_assert!(false, "type other was accepted"),
        ApiKeyType::System => {
            prop_assert!(!valid.system_apis.is_empty());
            prop_assert!(
                !valid.system_apis.contains(&SystemApi::FullControl)
                    || valid.system_apis.len() == 1
            );
            prop_assert!(
                valid.package_permissions.is_empty()
                    && valid.feed.is_none()
                    && valid.feed_group.is_none()
            );
            prop_assert!(valid.user.is_none());
        }
        ApiKeyType::Feed => {
            prop_assert!(!valid.package_permissions.is_empty());
            prop_assert!(valid.feed.is_some() != valid.feed_group.is_some());
            let name = valid
                .feed
                .as_deref()
                .or(valid.feed_group.as_deref())
                .unwrap_or_default();
            prop_assert!(!name.trim().is_empty());
            prop_assert!(valid.system_apis.is_empty() && valid.user.is_none());
        }
        ApiKeyType::Personal => {
            prop_assert!(valid.user.as_deref().is_some_and(|u| !u.trim().is_empty()));
            prop_assert!(valid.system_apis.is_empty() && valid.package_permissions.is_empty());
            prop_assert!(valid.feed.is_none() && valid.feed_group.is_none());
        }
    }
    prop_assert!(
        valid.expiration.is_none_or(|e| e > now),
        "expiration in the past accepted"
    );
    prop_assert!(valid
        .display_name
        .as_deref()
        .is_none_or(|d| d.chars().count() <= 256));
    prop_assert!(valid
        .description
        .as_deref()
        .is_none_or(|d| d.chars().count() <= 4096));
    prop_assert_eq!(&valid.custom_key, &info.key);
    if let Some(key) = &valid.custom_key {
        prop_assert!(
            custom_keys,
            "a custom key was accepted where custom keys are off"
        );
        prop_assert!((1..=256).contains(&key.len()));
        prop_assert!(key.bytes().all(|b| b.is_ascii_graphic()) && !key.contains(':'));
        prop_assert!(
            !has_generated_shape(key) || checksum_ok(key),
            "a key imitating the generated shape with a bad checksum"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_json_never_panics_and_accepted_requests_obey_every_rule(request in any_json(), custom in any::<bool>()) {
        check(&request, custom)?;
    }

    #[test]
    fn near_valid_requests_never_panic_and_accepted_ones_obey_every_rule(request in near_valid_request(), custom in any::<bool>()) {
        check(&request, custom)?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_parser(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(info) = serde_json::from_slice::<ApiKeyInfo>(&bytes) {
            let _ = validate_new_key(info, true, OffsetDateTime::now_utc());
        }
    }
}

/// The generator above does reach acceptance for every type, so the rules are exercised.
#[test]
fn the_near_valid_strategy_reaches_every_accepted_type() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let mut accepted = std::collections::HashSet::new();
    let strategy = near_valid_request();
    for _ in 0..2_000 {
        let request = strategy
            .new_tree(&mut runner)
            .map(|t| t.current())
            .unwrap_or(Value::Null);
        if let Ok(info) = serde_json::from_value::<ApiKeyInfo>(request) {
            if let Ok(valid) = validate_new_key(info, true, OffsetDateTime::now_utc()) {
                accepted.insert(format!("{:?}", valid.key_type));
            }
        }
    }
    assert_eq!(accepted.len(), 3, "accepted types: {accepted:?}");
}
