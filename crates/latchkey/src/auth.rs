//! Authentication: the credential is taken from the request (six channels, in
//! the documented order) and verified into a [`Principal`].

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{header, HeaderMap};
use base64::Engine;
use rand::rngs::OsRng;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::keys::{checksum_ok, has_generated_shape, Digester, KeyDigest, Principal};
use crate::store::{Store, StoreError, StoredKey};

/// A credential as the caller presented it (never logged).
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// An API key.
    Key(String),
    /// `user:password` given where a key is expected.
    PseudoKey {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
    /// HTTP Basic with a real user name.
    Login {
        /// User name.
        user: String,
        /// Password.
        password: String,
    },
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Key(_) => f.write_str("Key(<redacted>)"),
            Credential::PseudoKey { user, .. } => write!(f, "PseudoKey({user:?}, <redacted>)"),
            Credential::Login { user, .. } => write!(f, "Login({user:?}, <redacted>)"),
        }
    }
}

/// Takes the credential from a request. Six channels are read: the
/// `X-ApiKey` header, the `key` query parameter, a `key` form field, an
/// `API_Key` JSON property, Basic `api:KEY`, Basic `user:password`;
/// `user:password` through the first four is a pseudo-key. An empty value
/// counts as absent. More than one credential (in one channel or across
/// channels) is refused as [`AuthError::Ambiguous`], never resolved by an order.
pub fn extract_credential(
    headers: &HeaderMap,
    query: Option<&str>,
    body: &[u8],
) -> Result<Option<Credential>, AuthError> {
    let as_key = |text: String| match text.split_once(':') {
        Some((user, password)) => Credential::PseudoKey {
            user: user.to_owned(),
            password: password.to_owned(),
        },
        None => Credential::Key(text),
    };
    let mut found: Vec<Credential> = Vec::new();
    // A header that is not UTF-8 is still a (wrong) credential: it must not be skipped.
    for value in headers.get_all("x-apikey") {
        let text = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if !text.is_empty() {
            found.push(as_key(text));
        }
    }
    if let Some(q) = query {
        found.extend(form_params(q.as_bytes(), "key").map(as_key));
    }
    match content_type(headers).as_str() {
        "application/x-www-form-urlencoded" => found.extend(form_params(body, "key").map(as_key)),
        "application/json" => found.extend(json_api_keys(body)?.into_iter().map(as_key)),
        _ => {}
    }
    for (user, password) in basic_auth(headers) {
        if user == "api" {
            if !password.is_empty() {
                found.push(Credential::Key(password));
            }
        } else {
            found.push(Credential::Login { user, password });
        }
    }
    if found.len() > 1 {
        return Err(AuthError::Ambiguous);
    }
    Ok(found.pop())
}

/// The media type of the request, lower-cased, without parameters.
fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

/// Every non-empty value of a form parameter.
fn form_params<'a>(bytes: &'a [u8], name: &'a str) -> impl Iterator<Item = String> + 'a {
    form_urlencoded::parse(bytes)
        .filter(move |(n, v)| n == name && !v.is_empty())
        .map(|(_, v)| v.into_owned())
}

/// Every non-empty `API_Key` property at the top level of a JSON body,
/// read with the same strictness as the handlers (one value, no trailing
/// data). A body that is not such JSON holds no credential here (the
/// handler refuses it); an `API_Key` that is neither a string nor null is refused.
fn json_api_keys(body: &[u8]) -> Result<Vec<String>, AuthError> {
    struct Keys(Vec<Option<serde_json::Value>>);
    impl<'de> Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct Visit;
            impl<'de> serde::de::Visitor<'de> for Visit {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some(name) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                        if name == "API_Key" {
                            keys.push(map.next_value::<Option<serde_json::Value>>()?);
                        } else {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                    Ok(Keys(keys))
                }
            }
            d.deserialize_map(Visit)
        }
    }
    let Ok(Keys(values)) = serde_json::from_slice::<Keys>(body) else {
        return Ok(Vec::new());
    };
    let mut keys = Vec::new();
    for value in values {
        match value {
            None => {}
            Some(serde_json::Value::String(k)) if k.is_empty() => {}
            Some(serde_json::Value::String(k)) => keys.push(k),
            Some(_) => return Err(AuthError::Malformed("API_Key must be a string")),
        }
    }
    Ok(keys)
}

/// Every `Authorization: Basic` header with a user name, as `(user, password)`.
fn basic_auth(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|value| {
            let (scheme, encoded) = value.to_str().ok()?.trim().split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, password) = text.split_once(':')?;
            (!user.is_empty()).then(|| (user.to_owned(), password.to_owned()))
        })
        .collect()
}

/// Why authentication failed. The public 403 text never says which.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No credential in any channel.
    #[error("no credential")]
    Missing,
    /// A key of generated shape with a wrong checksum.
    #[error("key checksum mismatch")]
    BadChecksum,
    /// No key with this digest.
    #[error("unknown key")]
    UnknownKey,
    /// The key has expired (its id is safe to log).
    #[error("key {0} expired")]
    Expired(i32),
    /// No such user, or a wrong password.
    #[error("wrong user name or password")]
    BadLogin,
    /// More than one credential in one request (`400`).
    #[error("more than one credential in the request")]
    Ambiguous,
    /// A credential that cannot be read (`400`).
    #[error("{0}")]
    Malformed(&'static str),
    /// Pseudo-keys are switched off.
    #[error("pseudo-keys are disabled")]
    PseudoKeysDisabled,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Upper bound on cached logins; the cache is cleared when it is reached.
const LOGIN_CACHE_MAX: usize = 10_000;

/// Verifies credentials against the store.
///
/// Logins are verified with Argon2id once; afterwards a cache maps the digest
/// of `name + password` to the password hash it was checked against. The user
/// row is still read on every request, and the cached entry counts only while
/// it equals the stored hash, so a password change or a deleted user takes
/// effect at once, on every node.
pub struct Authenticator {
    store: Arc<dyn Store>,
    digester: Digester,
    previous: Option<Digester>,
    pseudo_keys: bool,
    logins: RwLock<HashMap<KeyDigest, String>>,
}

impl Authenticator {
    /// An authenticator over a store: digests under the current secret, also
    /// accepting digests under a previous one (re-keyed on first use), with
    /// pseudo-keys on or off.
    pub fn new(
        store: Arc<dyn Store>,
        digester: Digester,
        previous: Option<Digester>,
        pseudo_keys: bool,
    ) -> Self {
        Authenticator {
            store,
            digester,
            previous,
            pseudo_keys,
            logins: RwLock::new(HashMap::new()),
        }
    }

    /// Digests under the current installation secret (new keys are stored with it).
    pub fn digester(&self) -> &Digester {
        &self.digester
    }

    /// Verifies a credential.
    pub async fn authenticate(
        &self,
        credential: Option<Credential>,
    ) -> Result<Principal, AuthError> {
        match credential.ok_or(AuthError::Missing)? {
            Credential::Key(key) => self.verify_key(&key).await,
            Credential::PseudoKey { .. } if !self.pseudo_keys => Err(AuthError::PseudoKeysDisabled),
            Credential::PseudoKey { user, password } | Credential::Login { user, password } => {
                self.verify_login(&user, &password).await
            }
        }
    }

    async fn verify_key(&self, key: &str) -> Result<Principal, AuthError> {
        if has_generated_shape(key) && !checksum_ok(key) {
            return Err(AuthError::BadChecksum);
        }
        let digest = self.digester.key(key);
        let stored = match self.store.key_by_digest(&digest).await? {
            Some(k) => k,
            None => self
                .rekey(key, &digest)
                .await?
                .ok_or(AuthError::UnknownKey)?,
        };
        if stored
            .expiration
            .is_some_and(|e| e <= OffsetDateTime::now_utc())
        {
            return Err(AuthError::Expired(stored.id));
        }
        Ok(Principal::Key(stored))
    }

    /// Looks a key up under the previous secret; when found, stores its digest
    /// under the current one, so that the previous secret can be retired.
    async fn rekey(&self, key: &str, digest: &KeyDigest) -> Result<Option<StoredKey>, AuthError> {
        let Some(previous) = &self.previous else {
            return Ok(None);
        };
        let found = self.store.key_by_digest(&previous.key(key)).await?;
        if let Some(k) = &found {
            self.store.replace_digest(k.id, digest).await?;
            tracing::info!(
                key_id = k.id,
                "key re-keyed under the current installation secret"
            );
        }
        Ok(found)
    }

    async fn verify_login(&self, name: &str, password: &str) -> Result<Principal, AuthError> {
        let login = self.store.user_login(name).await?;
        let Some(login) = login else {
            // Spend the same time as a real check so that timing does not reveal which users exist.
            let _ = verify_password(password.to_owned(), None).await;
            return Err(AuthError::BadLogin);
        };
        let digest = self.digester.login(name, password);
        let cached = self.logins.read().ok().and_then(|m| {
            m.get(&digest)
                .map(|h| bool::from(h.as_bytes().ct_eq(login.password_hash.as_bytes())))
        });
        if cached == Some(true) {
            return Ok(Principal::User(login.user));
        }
        if !verify_password(password.to_owned(), Some(login.password_hash.clone())).await {
            return Err(AuthError::BadLogin);
        }
        if let Ok(mut m) = self.logins.write() {
            if m.len() >= LOGIN_CACHE_MAX {
                m.clear();
            }
            m.insert(digest, login.password_hash);
        }
        Ok(Principal::User(login.user))
    }
}

/// Hashes a password with Argon2id (OWASP parameters: 19 MiB, 2 passes).
pub fn hash_password(password: &str) -> Result<String, anyhow::Error> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))
}

/// Verifies a password against a PHC string off the async threads; `None`
/// verifies against a throw-away hash, to spend the same time.
async fn verify_password(password: String, hash: Option<String>) -> bool {
    static DUMMY_HASH: OnceLock<String> = OnceLock::new();
    tokio::task::spawn_blocking(move || {
        let hash = hash.unwrap_or_else(|| {
            DUMMY_HASH
                .get_or_init(|| hash_password("not a password").unwrap_or_default())
                .clone()
        });
        PasswordHash::new(&hash)
            .map(|h| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &h)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");
    const JSON: (&str, &str) = ("content-type", "application/json; charset=utf-8");

    fn key(k: &str) -> Option<Credential> {
        Some(Credential::Key(k.into()))
    }

    fn one(h: &HeaderMap, query: Option<&str>, body: &[u8]) -> Option<Credential> {
        extract_credential(h, query, body).unwrap()
    }

    fn ambiguous(h: &HeaderMap, query: Option<&str>, body: &[u8]) -> bool {
        matches!(
            extract_credential(h, query, body),
            Err(AuthError::Ambiguous)
        )
    }

    #[test]
    fn each_channel_alone() {
        assert_eq!(one(&headers(&[("X-ApiKey", "h")]), None, b""), key("h"));
        assert_eq!(one(&headers(&[]), Some("id=1&key=q"), b""), key("q"));
        assert_eq!(one(&headers(&[FORM]), None, b"key=f"), key("f"));
        assert_eq!(
            one(&headers(&[JSON]), None, br#"{"API_Key":"j"}"#),
            key("j")
        );
        let auth = basic("api:b");
        assert_eq!(
            one(&headers(&[("authorization", &auth)]), None, b""),
            key("b")
        );
        let auth = basic("Admin:pw:with:colons");
        assert_eq!(
            one(&headers(&[("authorization", &auth)]), None, b""),
            Some(Credential::Login {
                user: "Admin".into(),
                password: "pw:with:colons".into()
            })
        );
        assert_eq!(one(&headers(&[]), None, b""), None);
    }

    #[test]
    fn more_than_one_credential_is_refused_whatever_the_channels() {
        let auth = basic("api:b");
        let login = basic("Admin:pw");
        let h = headers(&[("X-ApiKey", "h"), ("X-ApiKey", "h2")]);
        assert!(ambiguous(&h, None, b""));
        assert!(ambiguous(
            &headers(&[("X-ApiKey", "h")]),
            Some("key=q"),
            b""
        ));
        assert!(ambiguous(&headers(&[]), Some("key=q&key=r"), b""));
        assert!(ambiguous(
            &headers(&[("X-ApiKey", "h"), ("authorization", &auth)]),
            None,
            b""
        ));
        assert!(ambiguous(
            &headers(&[("authorization", &auth), ("authorization", &login)]),
            None,
            b""
        ));
        assert!(ambiguous(&headers(&[FORM]), Some("key=q"), b"key=f"));
        assert!(ambiguous(&headers(&[FORM]), None, b"key=f&key=g"));
        assert!(ambiguous(
            &headers(&[JSON, ("X-ApiKey", "h")]),
            None,
            br#"{"API_Key":"j"}"#
        ));
        assert!(ambiguous(
            &headers(&[JSON]),
            None,
            br#"{"API_Key":"j","API_Key":"k"}"#
        ));
        assert!(ambiguous(
            &headers(&[JSON, ("authorization", &login)]),
            None,
            br#"{"API_Key":"j"}"#
        ));
    }

    #[test]
    fn empty_values_count_as_absent() {
        let auth = basic("api:b");
        let h = headers(&[("X-ApiKey", ""), FORM, ("authorization", &auth)]);
        assert_eq!(one(&h, Some("key="), b"key="), key("b"));
        let json = headers(&[JSON, ("authorization", &auth)]);
        assert_eq!(
            one(&json, None, br#"{"API_Key":"","API_Key":null}"#),
            key("b")
        );
        assert_eq!(
            one(&headers(&[("authorization", &basic("api:"))]), None, b""),
            None
        );
    }

    #[test]
    fn json_is_read_strictly_or_not_at_all() {
        let auth = basic("api:b");
        let json = headers(&[JSON, ("authorization", &auth)]);
        // Not one JSON object: no credential there (the handler refuses the body).
        assert_eq!(one(&json, None, br#"{"API_Key":"j"} xyz"#), key("b"));
        assert_eq!(
            one(&json, None, br#"{"API_Key":"j"}{"API_Key":"k"}"#),
            key("b")
        );
        assert!(matches!(
            extract_credential(&headers(&[JSON]), None, br#"{"API_Key":12}"#),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn body_channels_need_their_content_type() {
        assert_eq!(one(&headers(&[JSON]), None, b"key=f"), None);
        assert_eq!(one(&headers(&[FORM]), None, br#"{"API_Key":"j"}"#), None);
        assert_eq!(one(&headers(&[]), None, b"key=f"), None);
    }

    #[test]
    fn user_password_through_a_key_channel_is_a_pseudo_key() {
        let pseudo = Some(Credential::PseudoKey {
            user: "Admin".into(),
            password: "p:w".into(),
        });
        assert_eq!(
            one(&headers(&[("X-ApiKey", "Admin:p:w")]), None, b""),
            pseudo
        );
        assert_eq!(one(&headers(&[]), Some("key=Admin%3Ap%3Aw"), b""), pseudo);
    }

    #[test]
    fn debug_output_never_shows_secrets() {
        let c = Credential::PseudoKey {
            user: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        assert!(!format!("{:?}", Credential::Key("lk_secret".into())).contains("secret"));
    }

    proptest! {
        #[test]
        fn extraction_never_panics(
            header in proptest::option::of("[ -~]{0,40}"),
            query in proptest::option::of(".{0,60}"),
            auth in proptest::option::of("[ -~]{0,60}"),
            content_type in proptest::option::of(prop_oneof![
                Just("application/json".to_owned()),
                Just("application/x-www-form-urlencoded".to_owned()),
                "[ -~]{0,20}",
            ]),
            body in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            let mut h = HeaderMap::new();
            for (name, value) in [("x-apikey", header), ("authorization", auth), ("content-type", content_type)] {
                if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                    h.insert(name, v);
                }
            }
            let _ = extract_credential(&h, query.as_deref(), &body);
        }

        #[test]
        fn a_basic_api_password_is_always_a_key(key_text in "[!-~]{1,40}") {
            let auth = basic(&format!("api:{key_text}"));
            prop_assert_eq!(extract_credential(&headers(&[("authorization", &auth)]), None, b"").ok(), Some(Some(Credential::Key(key_text))));
        }
    }
}
