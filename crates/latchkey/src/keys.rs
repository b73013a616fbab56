//! API keys: generation, validation of new keys, and the policy of who may
//! do what. Everything here is pure and unit-tested.

use proget_api::{ApiKeyInfo, ApiKeyType, Logging, PackagePermission, SystemApi};
use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;
use time::OffsetDateTime;

use crate::domain::{name_key, KeyId, Principal, SecurityModel, StoredKey, UserId};
use crate::policy::{allows, Need};

/// The prefix of every generated key, so that secret scanners can find leaks.
pub const KEY_PREFIX: &str = "lk_";
/// Random base62 characters after the prefix (30 × log2(62) ≈ 178 bits).
const RANDOM_LEN: usize = 30;
/// Base62 characters of the CRC-32 checksum at the end.
const CHECKSUM_LEN: usize = 6;
/// Length of a generated key.
pub const GENERATED_KEY_LEN: usize = KEY_PREFIX.len() + RANDOM_LEN + CHECKSUM_LEN;
/// Longest custom key accepted.
const MAX_CUSTOM_KEY_LEN: usize = 256;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Generates a new key: `lk_`, 30 random base62 characters from the
/// operating system's CSPRNG, and a 6-character base62 CRC-32 of them.
pub fn generate_key() -> String {
    let random = Alphanumeric.sample_string(&mut OsRng, RANDOM_LEN);
    format!("{KEY_PREFIX}{random}{}", checksum(&random))
}

fn checksum(random: &str) -> String {
    let mut n = crc32fast::hash(random.as_bytes());
    let mut out = [b'0'; CHECKSUM_LEN];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    out.iter().map(|&b| b as char).collect()
}

/// Whether `key` has the shape of a generated key (prefix and length).
pub fn has_generated_shape(key: &str) -> bool {
    key.len() == GENERATED_KEY_LEN && key.starts_with(KEY_PREFIX)
}

/// Whether a key of generated shape carries a correct checksum; such a key
/// with a wrong one is a typo or a forgery and is refused without a look-up.
pub fn checksum_ok(key: &str) -> bool {
    let body = &key[KEY_PREFIX.len()..];
    match (body.get(..RANDOM_LEN), body.get(RANDOM_LEN..)) {
        (Some(random), Some(sum)) => checksum(random) == sum,
        _ => false,
    }
}

/// How much of the API-key store a caller may manage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    /// Every key (full-control system keys, administrators).
    All,
    /// Only this user's personal keys.
    OwnPersonal(UserId),
    /// None at all (feed keys, limited system keys).
    None,
}

/// What a caller may do with API keys, per the permission table:
/// everything for whoever holds `Administer` globally (full-control system
/// keys, administrators), their own personal keys for other users.
pub fn key_access(principal: &Principal, model: &SecurityModel) -> KeyAccess {
    if allows(model, Some(principal), Need::Administer) {
        return KeyAccess::All;
    }
    match principal {
        Principal::Key(k) if k.key_type != ApiKeyType::Personal => KeyAccess::None,
        _ => principal
            .user()
            .map_or(KeyAccess::None, |u| KeyAccess::OwnPersonal(u.id)),
    }
}

/// Whether the caller may see (list) and delete `key`.
pub fn may_manage(principal: &Principal, model: &SecurityModel, key: &StoredKey) -> bool {
    match key_access(principal, model) {
        KeyAccess::All => true,
        KeyAccess::OwnPersonal(uid) => {
            key.key_type == ApiKeyType::Personal && key.user.as_ref().is_some_and(|u| u.id == uid)
        }
        KeyAccess::None => false,
    }
}

/// Whether the caller may create a key of this type for this user name.
pub fn may_create(
    principal: &Principal,
    model: &SecurityModel,
    key_type: ApiKeyType,
    user: Option<&str>,
) -> bool {
    match key_access(principal, model) {
        KeyAccess::All => true,
        KeyAccess::OwnPersonal(_) => {
            let own = principal.user().map(|u| name_key(&u.name));
            key_type == ApiKeyType::Personal && user.map(name_key) == own
        }
        KeyAccess::None => false,
    }
}

/// Whether the caller may use the security API (users, groups, permissions).
pub fn may_manage_users(principal: &Principal, model: &SecurityModel) -> bool {
    key_access(principal, model) == KeyAccess::All
}

/// Whether the caller may choose a key's text: administrators and
/// full-control system keys only (custom texts exist for migrating keys from
/// another system; anyone else could use a collision as a guessing oracle).
pub fn may_choose_key_text(principal: &Principal, model: &SecurityModel) -> bool {
    key_access(principal, model) == KeyAccess::All
}

/// Limits on callers' input that the operator configures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputRules {
    /// Shortest custom key text accepted (never below [`MIN_CUSTOM_KEY_FLOOR`]).
    pub custom_key_min_length: usize,
    /// Most personal keys a non-administrator may hold.
    pub max_personal_keys: usize,
    /// Shortest password accepted on users/add and users/edit.
    pub min_password_length: usize,
}

/// The lowest `--custom-key-min-length` accepted.
pub const MIN_CUSTOM_KEY_FLOOR: usize = 8;

impl Default for InputRules {
    fn default() -> Self {
        InputRules {
            custom_key_min_length: 16,
            max_personal_keys: 100,
            min_password_length: 8,
        }
    }
}

impl InputRules {
    /// Refuses a custom key text shorter than the configured minimum.
    pub fn check_custom_key(&self, key: &str) -> Result<(), String> {
        if key.chars().count() < self.custom_key_min_length {
            return Err(format!(
                "key must be at least {} characters",
                self.custom_key_min_length
            ));
        }
        Ok(())
    }

    /// Refuses a password shorter than the configured minimum.
    pub fn check_password(&self, password: &str) -> Result<(), String> {
        if password.chars().count() < self.min_password_length {
            return Err(format!(
                "password must be at least {} characters",
                self.min_password_length
            ));
        }
        Ok(())
    }
}

/// A create request that passed every rule of the wire format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidKey {
    /// The custom key text, if one was given.
    pub custom_key: Option<String>,
    /// Kind of key.
    pub key_type: ApiKeyType,
    /// Name shown in lists.
    pub display_name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// System keys: allowed APIs (deduplicated, in wire order).
    pub system_apis: Vec<SystemApi>,
    /// Feed keys: allowed operations (deduplicated, in wire order).
    pub package_permissions: Vec<PackagePermission>,
    /// Feed keys: the feed.
    pub feed: Option<String>,
    /// Feed keys: the feed group.
    pub feed_group: Option<String>,
    /// When the key stops working.
    pub expiration: Option<OffsetDateTime>,
    /// Request logging.
    pub logging: Logging,
    /// Personal keys: the user's name.
    pub user: Option<String>,
}

/// Checks a create request against the ApiKeyInfo rules; the error names the property.
pub fn validate_new_key(
    info: ApiKeyInfo,
    custom_keys_allowed: bool,
    now: OffsetDateTime,
) -> Result<ValidKey, String> {
    let key_type = info.key_type.ok_or("type is required")?;
    let only_for = |present: bool, prop: &str, kind: ApiKeyType| {
        if present && key_type != kind {
            Err(format!("{prop} is only valid for {kind} keys"))
        } else {
            Ok(())
        }
    };
    only_for(info.system_apis.is_some(), "systemApis", ApiKeyType::System)?;
    only_for(
        info.package_permissions.is_some(),
        "packagePermissions",
        ApiKeyType::Feed,
    )?;
    only_for(info.feed.is_some(), "feed", ApiKeyType::Feed)?;
    only_for(info.feed_group.is_some(), "feedGroup", ApiKeyType::Feed)?;
    only_for(info.user.is_some(), "user", ApiKeyType::Personal)?;

    let system_apis = dedup(info.system_apis.unwrap_or_default());
    let package_permissions = dedup(info.package_permissions.unwrap_or_default());
    let feed = non_blank(info.feed, "feed")?;
    let feed_group = non_blank(info.feed_group, "feedGroup")?;
    let user = non_blank(info.user, "user")?;
    match key_type {
        ApiKeyType::Other => return Err("type other cannot be created (legacy keys only)".into()),
        ApiKeyType::System => {
            if system_apis.is_empty() {
                return Err("systemApis is required for system keys".into());
            }
            if system_apis.contains(&SystemApi::FullControl) && system_apis.len() > 1 {
                return Err("systemApis: full-control cannot be combined with other APIs".into());
            }
        }
        ApiKeyType::Feed => {
            if package_permissions.is_empty() {
                return Err("packagePermissions is required for feed keys".into());
            }
            if feed.is_some() == feed_group.is_some() {
                return Err("feed keys need exactly one of feed or feedGroup".into());
            }
        }
        ApiKeyType::Personal => {
            if user.is_none() {
                return Err("user is required for personal keys".into());
            }
        }
    }
    if let Some(exp) = info.expiration {
        if exp.0 <= now {
            return Err("expiration must be in the future".into());
        }
    }
    let custom_key = match info.key {
        None => None,
        Some(_) if !custom_keys_allowed => {
            return Err("key: custom keys are not allowed on this installation".into())
        }
        Some(k) => Some(validate_custom_key(k)?),
    };
    Ok(ValidKey {
        custom_key,
        key_type,
        display_name: limit(info.display_name, "displayName", 256)?,
        description: limit(info.description, "description", 4096)?,
        system_apis,
        package_permissions,
        feed,
        feed_group,
        expiration: info.expiration.map(|e| e.0),
        logging: info.logging.unwrap_or(Logging::None),
        user,
    })
}

fn validate_custom_key(key: String) -> Result<String, String> {
    if key.is_empty() || key.len() > MAX_CUSTOM_KEY_LEN {
        return Err(format!("key must be 1 to {MAX_CUSTOM_KEY_LEN} characters"));
    }
    if key.contains(':') {
        return Err("key must not contain ':' (that form is a user:password pseudo-key)".into());
    }
    if !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("key must be printable ASCII without spaces".into());
    }
    if has_generated_shape(&key) && !checksum_ok(&key) {
        return Err(format!(
            "key starts with the reserved prefix {KEY_PREFIX} but its checksum is wrong"
        ));
    }
    Ok(key)
}

fn dedup<T: PartialEq>(values: Vec<T>) -> Vec<T> {
    let mut out = Vec::with_capacity(values.len());
    for v in values {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

fn non_blank(value: Option<String>, prop: &str) -> Result<Option<String>, String> {
    match value {
        Some(v) if v.trim().is_empty() => Err(format!("{prop} must not be empty")),
        other => Ok(other),
    }
}

fn limit(value: Option<String>, prop: &str, max: usize) -> Result<Option<String>, String> {
    match value {
        Some(v) if v.chars().count() > max => {
            Err(format!("{prop} is longer than {max} characters"))
        }
        other => Ok(other),
    }
}

/// Why an `id` query parameter is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// No `id`, or an empty one.
    #[error("id is required")]
    Missing,
    /// More than one `id`.
    #[error("id must be given once")]
    Repeated,
    /// Not `^-?[0-9]+$` within the 32-bit signed range.
    #[error("id must be an integer")]
    NotAnInteger,
}

/// Reads the `id` parameter of a query string: exactly one, `^-?[0-9]+$`,
/// within the 32-bit signed range.
pub fn parse_id(query: Option<&str>) -> Result<KeyId, IdError> {
    let mut found = None;
    for (name, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if name == "id" {
            if found.is_some() {
                return Err(IdError::Repeated);
            }
            found = Some(value);
        }
    }
    let text = found.filter(|v| !v.is_empty()).ok_or(IdError::Missing)?;
    let digits = text.strip_prefix('-').unwrap_or(&text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(IdError::NotAnInteger);
    }
    text.parse().map_err(|_| IdError::NotAnInteger)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::User;
    use proget_api::Expiration;
    use proptest::prelude::*;
    use std::sync::Arc;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-01-01 0:00 UTC);

    fn user(id: UserId, admin: bool) -> User {
        User {
            id,
            name: format!("user{id}"),
            display_name: None,
            email: None,
            groups: if admin {
                vec!["administrators".into()]
            } else {
                vec![]
            },
        }
    }

    fn key(id: KeyId, key_type: ApiKeyType, apis: &[SystemApi], owner: Option<User>) -> StoredKey {
        StoredKey {
            id,
            key_type,
            display_name: None,
            description: None,
            system_apis: apis.to_vec(),
            package_permissions: vec![],
            feed: None,
            feed_group: None,
            expiration: None,
            logging: Logging::None,
            user: owner,
            usage: Default::default(),
            grace_until: None,
        }
    }

    #[test]
    fn generated_keys_have_prefix_checksum_and_safe_characters() {
        let k = generate_key();
        assert_eq!(k.len(), GENERATED_KEY_LEN);
        assert!(has_generated_shape(&k) && checksum_ok(&k));
        assert!(k[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(generate_key(), k);
    }

    #[test]
    fn a_typo_breaks_the_checksum() {
        let k = generate_key();
        let mut typo = k.clone().into_bytes();
        typo[10] = if typo[10] == b'a' { b'b' } else { b'a' };
        assert!(!checksum_ok(&String::from_utf8(typo).unwrap()));
    }

    #[test]
    fn permission_table() {
        let m = SecurityModel::new(vec![crate::domain::administrators_grant().with_id(1)]);
        let admin = user(1, true);
        let alice = user(2, false);
        let bob = user(3, false);
        let full = Principal::Key(Arc::new(key(
            1,
            ApiKeyType::System,
            &[SystemApi::FullControl],
            None,
        )));
        let limited = Principal::Key(Arc::new(key(
            2,
            ApiKeyType::System,
            &[SystemApi::Feeds],
            None,
        )));
        let feed = Principal::Key(Arc::new(key(3, ApiKeyType::Feed, &[], None)));
        let admin_key = Principal::Key(Arc::new(key(
            4,
            ApiKeyType::Personal,
            &[],
            Some(admin.clone()),
        )));
        let alice_key = Principal::Key(Arc::new(key(
            5,
            ApiKeyType::Personal,
            &[],
            Some(alice.clone()),
        )));
        let alice_login = Principal::User(alice.clone());

        let alices = key(10, ApiKeyType::Personal, &[], Some(alice.clone()));
        let bobs = key(11, ApiKeyType::Personal, &[], Some(bob));
        let system = key(12, ApiKeyType::System, &[SystemApi::FullControl], None);

        for p in [&full, &admin_key, &Principal::User(admin)] {
            assert_eq!(key_access(p, &m), KeyAccess::All);
            assert!(may_manage(p, &m, &bobs) && may_manage(p, &m, &system));
            assert!(may_create(p, &m, ApiKeyType::System, None));
            assert!(may_manage_users(p, &m));
        }
        for p in [&limited, &feed] {
            assert_eq!(key_access(p, &m), KeyAccess::None);
            assert!(!may_manage(p, &m, &alices));
            assert!(!may_create(p, &m, ApiKeyType::Personal, Some("user2")));
            assert!(!may_manage_users(p, &m));
        }
        for p in [&alice_key, &alice_login] {
            assert_eq!(key_access(p, &m), KeyAccess::OwnPersonal(2));
            assert!(may_manage(p, &m, &alices));
            assert!(!may_manage(p, &m, &bobs) && !may_manage(p, &m, &system));
            assert!(may_create(p, &m, ApiKeyType::Personal, Some("USER2")));
            assert!(!may_create(p, &m, ApiKeyType::Personal, Some("user3")));
            assert!(!may_create(p, &m, ApiKeyType::System, None));
            assert!(!may_manage_users(p, &m));
        }
    }

    fn info(json: &str) -> ApiKeyInfo {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn valid_keys_pass_and_logging_defaults_to_none() {
        let v = validate_new_key(
            info(r#"{"type":"system","systemApis":["full-control"]}"#),
            true,
            NOW,
        )
        .unwrap();
        assert_eq!(v.logging, Logging::None);
        let v = validate_new_key(
            info(r#"{"type":"feed","packagePermissions":["view","view","add"],"feedGroup":"g"}"#),
            true,
            NOW,
        )
        .unwrap();
        assert_eq!(
            v.package_permissions,
            vec![PackagePermission::View, PackagePermission::Add]
        );
        assert!(validate_new_key(
            info(r#"{"type":"personal","user":"Admin","key":"my-key"}"#),
            true,
            NOW
        )
        .is_ok());
    }

    #[test]
    fn each_rule_names_its_property() {
        let cases = [
            (r#"{}"#, "type"),
            (r#"{"type":"other"}"#, "type"),
            (
                r#"{"type":"feed","systemApis":["feeds"],"feed":"f","packagePermissions":["view"]}"#,
                "systemApis",
            ),
            (r#"{"type":"system"}"#, "systemApis"),
            (r#"{"type":"system","systemApis":[]}"#, "systemApis"),
            (
                r#"{"type":"system","systemApis":["full-control","sca"]}"#,
                "systemApis",
            ),
            (
                r#"{"type":"system","systemApis":["sca"],"packagePermissions":["view"]}"#,
                "packagePermissions",
            ),
            (r#"{"type":"feed","feed":"f"}"#, "packagePermissions"),
            (r#"{"type":"feed","packagePermissions":["view"]}"#, "feed"),
            (
                r#"{"type":"feed","packagePermissions":["view"],"feed":"f","feedGroup":"g"}"#,
                "feed",
            ),
            (
                r#"{"type":"system","systemApis":["sca"],"feedGroup":"g"}"#,
                "feedGroup",
            ),
            (
                r#"{"type":"system","systemApis":["sca"],"user":"u"}"#,
                "user",
            ),
            (r#"{"type":"personal"}"#, "user"),
            (r#"{"type":"personal","user":" "}"#, "user"),
            (
                r#"{"type":"personal","user":"u","expiration":"2025-01-01"}"#,
                "expiration",
            ),
            (r#"{"type":"personal","user":"u","key":"a:b"}"#, "key"),
            (r#"{"type":"personal","user":"u","key":""}"#, "key"),
            (r#"{"type":"personal","user":"u","key":"has space"}"#, "key"),
        ];
        for (json, prop) in cases {
            let err = validate_new_key(info(json), true, NOW).unwrap_err();
            assert!(err.contains(prop), "{json}: {err}");
        }
    }

    #[test]
    fn custom_keys_can_be_forbidden_and_reserved_prefix_needs_checksum() {
        let custom = r#"{"type":"personal","user":"u","key":"my-key"}"#;
        assert!(validate_new_key(info(custom), false, NOW)
            .unwrap_err()
            .contains("key"));
        let mut fake = generate_key();
        fake.replace_range(5..6, if &fake[5..6] == "x" { "y" } else { "x" });
        let forged = ApiKeyInfo {
            key: Some(fake),
            ..info(r#"{"type":"personal","user":"u"}"#)
        };
        assert!(validate_new_key(forged, true, NOW).is_err());
        let future = ApiKeyInfo {
            expiration: Some(Expiration(datetime!(2030-01-01 0:00 UTC))),
            ..info(r#"{"type":"personal","user":"u"}"#)
        };
        assert!(validate_new_key(future, true, NOW).is_ok());
    }

    #[test]
    fn id_examples() {
        assert_eq!(parse_id(Some("id=1000")), Ok(1000));
        assert_eq!(parse_id(Some("id=-5")), Ok(-5));
        assert_eq!(parse_id(Some("key=x&id=7")), Ok(7));
        assert_eq!(parse_id(Some("id=2147483647")), Ok(i32::MAX));
        assert_eq!(parse_id(Some("id=-2147483648")), Ok(i32::MIN));
        assert_eq!(parse_id(None), Err(IdError::Missing));
        assert_eq!(parse_id(Some("id=")), Err(IdError::Missing));
        assert_eq!(parse_id(Some("id=1&id=2")), Err(IdError::Repeated));
        for bad in [
            "1e3",
            "10.0",
            "%201000",
            "+1000",
            "abc",
            "-",
            "2147483648",
            "0x10",
            "1000%00",
        ] {
            assert_eq!(
                parse_id(Some(&format!("id={bad}"))),
                Err(IdError::NotAnInteger),
                "{bad}"
            );
        }
    }

    proptest! {
        #[test]
        fn id_parser_never_panics_and_accepts_only_i32_integers(query in ".*") {
            let _ = parse_id(Some(&query));
        }

        #[test]
        fn id_parser_accepts_exactly_the_integer_grammar(text in "[-+0-9a-z. ]{0,12}") {
            let encoded: String = form_urlencoded::byte_serialize(text.as_bytes()).collect();
            let parsed = parse_id(Some(&format!("id={encoded}")));
            let grammar = {
                let d = text.strip_prefix('-').unwrap_or(&text);
                !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
            };
            match text.parse::<i32>() {
                Ok(n) if grammar => prop_assert_eq!(parsed, Ok(n)),
                _ => prop_assert!(parsed.is_err()),
            }
        }

        #[test]
        fn every_i32_round_trips(n in any::<i32>()) {
            prop_assert_eq!(parse_id(Some(&format!("id={n}"))), Ok(n));
        }
    }
}
