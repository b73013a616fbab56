//! Authentication: the credential is taken from the request (six channels, in
//! the documented order) and verified into a [`Principal`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, OnceLock, RwLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use axum::http::{header, HeaderMap, HeaderName};
use base64::Engine;
use rand::rngs::OsRng;
use serde::Deserialize;
use subtle::ConstantTimeEq;
use time::OffsetDateTime;

use crate::domain::{Digester, KeyDigest, Principal, StoredKey};
use crate::keys::{checksum_ok, has_generated_shape};
use crate::store::{Store, StoreError};

/// `X-ApiKey` (a parsed name: looking a header up by `&str` parses it every time).
static X_API_KEY: HeaderName = HeaderName::from_static("x-apikey");
/// `X-NuGet-ApiKey`.
static X_NUGET_API_KEY: HeaderName = HeaderName::from_static("x-nuget-apikey");
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
    let mut found: Vec<Credential> = Vec::new();
    // A header that is not UTF-8 is still a (wrong) credential: it must not be skipped.
    for value in headers.get_all(&X_API_KEY) {
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

/// Takes the credential of a request forwarded by a reverse proxy (forward
/// auth): the `X-ApiKey` and `X-NuGet-ApiKey` headers, `Authorization: Basic`
/// (`api:KEY` or `user:password`), `Authorization: Bearer KEY`, and `key=`
/// in the query of the forwarded URI (`forwarded_query`). `user:password`
/// in a key channel is a pseudo-key; an empty value counts as absent; more
/// than one credential is [`AuthError::Ambiguous`]. No body is read.
pub fn extract_forwarded_credential(
    headers: &HeaderMap,
    forwarded_query: Option<&str>,
) -> Result<Option<Credential>, AuthError> {
    let mut found: Option<Credential> = None;
    let mut add = |c: Credential| {
        if found.replace(c).is_some() {
            Err(AuthError::Ambiguous)
        } else {
            Ok(())
        }
    };
    for name in [&X_API_KEY, &X_NUGET_API_KEY] {
        for value in headers.get_all(name) {
            // Not UTF-8 is still a (wrong) credential: it must not be skipped.
            let text = String::from_utf8_lossy(value.as_bytes());
            if !text.is_empty() {
                add(as_key(text.into_owned()))?;
            }
        }
    }
    if let Some(q) = forwarded_query {
        for key in form_params(q.as_bytes(), "key") {
            add(as_key(key))?;
        }
    }
    for (user, password) in basic_auth(headers) {
        if user == "api" {
            if !password.is_empty() {
                add(Credential::Key(password))?;
            }
        } else {
            add(Credential::Login { user, password })?;
        }
    }
    for value in headers.get_all(header::AUTHORIZATION) {
        let text = String::from_utf8_lossy(value.as_bytes());
        let Some((scheme, token)) = text.trim().split_once(' ') else {
            continue;
        };
        let token = token.trim();
        if scheme.eq_ignore_ascii_case("bearer") && !token.is_empty() {
            add(as_key(token.to_owned()))?;
        }
    }
    Ok(found)
}

/// A value given where a key is expected: `user:password` is a pseudo-key.
pub fn as_key(text: String) -> Credential {
    match text.split_once(':') {
        Some((user, password)) => Credential::PseudoKey {
            user: user.to_owned(),
            password: password.to_owned(),
        },
        None => Credential::Key(text),
    }
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
    /// Every password-hashing slot is taken and the queue is full.
    #[error("password hashing is saturated")]
    HashingBusy,
    /// This client already has as many password checks in flight as it may.
    #[error("too many password checks in flight from this client")]
    TooManyHashes,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl AuthError {
    /// Whether the failure says the credential was wrong (and so counts
    /// against the client's address), rather than that the server could not
    /// check it.
    pub fn is_refusal(&self) -> bool {
        !matches!(
            self,
            AuthError::Store(_) | AuthError::HashingBusy | AuthError::TooManyHashes
        )
    }
}

/// The metrics outcome of a verification; `None` for what is not a
/// verdict on a credential (disabled pseudo-keys, saturation, store errors).
fn outcome_of(verified: &Result<Principal, AuthError>) -> Option<crate::metrics::AuthOutcome> {
    use crate::metrics::AuthOutcome;
    match verified {
        Ok(_) => Some(AuthOutcome::Ok),
        Err(AuthError::UnknownKey | AuthError::BadChecksum) => Some(AuthOutcome::Unknown),
        Err(AuthError::Expired(_)) => Some(AuthOutcome::Expired),
        Err(AuthError::BadLogin) => Some(AuthOutcome::WrongPassword),
        Err(_) => None,
    }
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
    hashing: HashPool,
}

impl Authenticator {
    /// An authenticator over a store: digests under the current secret, also
    /// accepting digests under a previous one (re-keyed on first use), with
    /// pseudo-keys on or off; fails when the hashing threads cannot start.
    pub fn new(
        store: Arc<dyn Store>,
        digester: Digester,
        previous: Option<Digester>,
        pseudo_keys: bool,
    ) -> std::io::Result<Self> {
        let hashing = HashPool::new(
            HashPool::default_threads(),
            HASH_QUEUE_MAX,
            HASHES_PER_CLIENT,
        )?;
        Ok(Authenticator {
            store,
            digester,
            previous,
            pseudo_keys,
            logins: RwLock::new(HashMap::new()),
            hashing,
        })
    }

    /// Hashes a new password (users add and edit) on the hashing threads.
    pub async fn hash_password(&self, password: String) -> Result<String, AuthError> {
        self.hashing.hash(password).await
    }

    /// Digests under the current installation secret (new keys are stored with it).
    pub fn digester(&self) -> &Digester {
        &self.digester
    }

    /// Verifies a credential presented by `client` (its address, when known:
    /// password checks are capped per client).
    pub async fn authenticate(
        &self,
        credential: Option<Credential>,
        client: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let verified = match credential.ok_or(AuthError::Missing)? {
            Credential::Key(key) => self.verify_key(&key).await,
            Credential::PseudoKey { .. } if !self.pseudo_keys => Err(AuthError::PseudoKeysDisabled),
            Credential::PseudoKey { user, password } | Credential::Login { user, password } => {
                self.verify_login(&user, &password, client).await
            }
        };
        if let Some(outcome) = outcome_of(&verified) {
            crate::metrics::METRICS.auth(outcome);
        }
        verified
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
    async fn rekey(
        &self,
        key: &str,
        digest: &KeyDigest,
    ) -> Result<Option<Arc<StoredKey>>, AuthError> {
        let Some(previous) = &self.previous else {
            return Ok(None);
        };
        let found = self.store.key_by_digest(&previous.key(key)).await?;
        // During a key rotation's grace period the text may be the previous
        // one: re-keying it would bring it back, so it waits for the grace to end.
        let in_grace = |k: &StoredKey| k.grace_until.is_some_and(|g| g > OffsetDateTime::now_utc());
        if let Some(k) = found.as_ref().filter(|k| !in_grace(k)) {
            self.store.replace_digest(k.id, digest).await?;
            tracing::info!(
                key_id = k.id,
                "key re-keyed under the current installation secret"
            );
        }
        Ok(found)
    }

    async fn verify_login(
        &self,
        name: &str,
        password: &str,
        client: Option<IpAddr>,
    ) -> Result<Principal, AuthError> {
        let login = self.store.user_login(name).await?;
        let Some(login) = login else {
            // Spend the same time as a real check so that timing does not reveal which users exist.
            self.hashing
                .verify(client, password.to_owned(), None)
                .await?;
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
        let matches = self
            .hashing
            .verify(
                client,
                password.to_owned(),
                Some(login.password_hash.clone()),
            )
            .await?;
        if !matches {
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

/// Password checks waiting for a hashing thread at most; beyond, `HashingBusy`.
const HASH_QUEUE_MAX: usize = 64;
/// Password checks one client may have running or queued at once; more wait.
const HASHES_PER_CLIENT: u32 = 2;
/// Longest wait for a client's share of the pool; then `TooManyHashes`.
const CLIENT_SHARE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Runs Argon2id on a fixed set of worker threads, one per core.
///
/// Each check needs 19 MiB while it runs, so an unbounded burst (for
/// instance requests that hang up at once, whose checks still run) would
/// allocate without limit; and since the allocator keeps a freed block per
/// thread for reuse, checks spread over many threads would each leave their
/// 19 MiB behind. Here `threads` workers do every check, at most `queue`
/// wait for a worker (more: `HashingBusy`), and one client may have at most
/// `per_client` running or waiting. A client's share is held until its check
/// finishes, even when the request that asked for it is gone.
pub struct HashPool {
    jobs: std::sync::mpsc::SyncSender<Job>,
    per_client: u32,
    clients: Arc<ClientShares>,
}

/// Work for a hashing thread.
type Job = Box<dyn FnOnce() + Send>;

/// Checks running or waiting per client, and a wake-up when one ends.
#[derive(Default)]
struct ClientShares {
    counts: Mutex<HashMap<IpAddr, u32>>,
    released: tokio::sync::Notify,
}

/// A client's share of the pool, given back when dropped.
struct ClientShare {
    shares: Arc<ClientShares>,
    client: IpAddr,
}

impl Drop for ClientShare {
    fn drop(&mut self) {
        let mut counts = self.shares.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = counts.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.client);
            }
        }
        drop(counts);
        self.shares.released.notify_waiters();
    }
}

impl HashPool {
    /// A pool of `threads` workers, `queue` waiting checks, and `per_client`
    /// running or waiting per client address.
    pub fn new(threads: usize, queue: usize, per_client: u32) -> std::io::Result<Self> {
        let (jobs, queued) = std::sync::mpsc::sync_channel::<Job>(queue);
        let queued = Arc::new(Mutex::new(queued));
        for n in 0..threads.max(1) {
            let queued = queued.clone();
            std::thread::Builder::new()
                .name(format!("password-hash-{n}"))
                .spawn(move || loop {
                    let job = queued.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // the pool is gone
                    }
                })?;
        }
        Ok(HashPool {
            jobs,
            per_client: per_client.max(1),
            clients: Arc::default(),
        })
    }

    /// One worker per core.
    pub fn default_threads() -> usize {
        std::thread::available_parallelism().map_or(2, usize::from)
    }

    /// Runs `work` on a worker; `HashingBusy` when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, AuthError> {
        let (done, outcome) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(work());
        });
        self.jobs
            .try_send(job)
            .map_err(|_| AuthError::HashingBusy)?;
        outcome.await.map_err(|_| AuthError::HashingBusy)
    }

    /// Hashes a new password with Argon2id on a worker.
    pub async fn hash(&self, password: String) -> Result<String, AuthError> {
        self.run(move || hash_password(&password))
            .await?
            .map_err(|e| AuthError::Store(StoreError::Other(e)))
    }

    /// Verifies `password` against a PHC string, or against a throw-away
    /// hash when `hash` is `None` (to spend the same time).
    pub async fn verify(
        &self,
        client: Option<IpAddr>,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, AuthError> {
        let share = match client {
            Some(client) => Some(self.client_share(client).await?),
            None => None,
        };
        self.run(move || {
            let _share = share;
            verify_password(&password, hash.as_deref())
        })
        .await
    }

    /// Waits (bounded) until `client` has fewer than `per_client` checks
    /// running or waiting, and takes a share.
    async fn client_share(&self, client: IpAddr) -> Result<ClientShare, AuthError> {
        let client = crate::http::limiter::client_of(client);
        let deadline = tokio::time::Instant::now() + CLIENT_SHARE_WAIT;
        loop {
            // Registered before the try, so that a release in between is not missed.
            let released = self.clients.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            {
                let mut counts = self
                    .clients
                    .counts
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                let n = counts.entry(client).or_insert(0);
                if *n < self.per_client {
                    *n += 1;
                    return Ok(ClientShare {
                        shares: self.clients.clone(),
                        client,
                    });
                }
            }
            if tokio::time::timeout_at(deadline, released).await.is_err() {
                return Err(AuthError::TooManyHashes);
            }
        }
    }
}

/// Verifies a password against a PHC string (blocking); `None` verifies
/// against a throw-away hash.
fn verify_password(password: &str, hash: Option<&str>) -> bool {
    static DUMMY_HASH: OnceLock<String> = OnceLock::new();
    let hash = hash.unwrap_or_else(|| {
        DUMMY_HASH.get_or_init(|| hash_password("not a password").unwrap_or_default())
    });
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
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

    fn forwarded(h: &HeaderMap, query: Option<&str>) -> Result<Option<Credential>, AuthError> {
        extract_forwarded_credential(h, query)
    }

    #[test]
    fn forwarded_credentials_come_from_each_proxy_channel() {
        let pseudo = Some(Credential::PseudoKey {
            user: "u".into(),
            password: "p:q".into(),
        });
        let h = |pairs: &[(&str, &str)]| forwarded(&headers(pairs), None).unwrap();
        assert_eq!(h(&[("X-ApiKey", "a")]), key("a"));
        assert_eq!(h(&[("X-NuGet-ApiKey", "n")]), key("n"));
        assert_eq!(h(&[("Authorization", "Bearer  t ")]), key("t"));
        assert_eq!(h(&[("Authorization", "bearer u:p:q")]), pseudo);
        assert_eq!(h(&[("X-ApiKey", "u:p:q")]), pseudo);
        assert_eq!(h(&[("Authorization", &basic("api:b"))]), key("b"));
        assert_eq!(
            h(&[("Authorization", &basic("Admin:pw"))]),
            Some(Credential::Login {
                user: "Admin".into(),
                password: "pw".into()
            })
        );
        assert_eq!(
            forwarded(&headers(&[]), Some("x=1&key=k%2B1")).unwrap(),
            key("k+1")
        );
        assert_eq!(h(&[("X-ApiKey", ""), ("Authorization", "Bearer ")]), None);
        // The sub-request's own body and query are not channels here.
        assert_eq!(h(&[JSON]), None);
    }

    #[test]
    fn two_forwarded_credentials_are_refused() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Option<&'a str>);
        let cases: &[Case] = &[
            (&[("X-ApiKey", "a"), ("X-NuGet-ApiKey", "a")], None),
            (&[("X-ApiKey", "a"), ("X-ApiKey", "b")], None),
            (&[("Authorization", "Bearer a")], Some("key=a")),
            (&[], Some("key=a&key=b")),
            (
                &[("Authorization", "Bearer a"), ("Authorization", "Bearer b")],
                None,
            ),
            (
                &[("X-NuGet-ApiKey", "a"), ("Authorization", "Bearer b")],
                None,
            ),
        ];
        for (pairs, query) in cases {
            assert!(
                matches!(
                    forwarded(&headers(pairs), *query),
                    Err(AuthError::Ambiguous)
                ),
                "{pairs:?} {query:?}"
            );
        }
        let mut h = headers(&[("X-ApiKey", "a")]);
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_str(&basic("Admin:pw")).unwrap(),
        );
        assert!(matches!(forwarded(&h, None), Err(AuthError::Ambiguous)));
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

    fn client(n: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, n]))
    }

    /// Polls a future once: whether it is still pending.
    async fn pending<F: std::future::Future>(f: std::pin::Pin<&mut F>) -> bool {
        let mut f = Some(f);
        std::future::poll_fn(|cx| {
            let f = f.as_mut().map(|f| f.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(f.unwrap_or(false))
        })
        .await
    }

    #[tokio::test]
    async fn a_full_hashing_queue_refuses_instead_of_allocating() {
        let pool = HashPool::new(1, 1, 2).unwrap();
        let (entered, worker_busy) = std::sync::mpsc::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let blocker = pool.run(move || {
            entered.send(()).unwrap();
            released.recv().is_ok()
        });
        tokio::pin!(blocker);
        assert!(pending(blocker.as_mut()).await);
        worker_busy.recv().unwrap();
        // The only worker is busy; the first check takes the only queue place…
        let queued = pool.verify(client(1), "pw".into(), None);
        tokio::pin!(queued);
        assert!(pending(queued.as_mut()).await);
        // …so the next one is refused at once instead of piling up.
        let refused = pool.verify(client(2), "pw".into(), None).await;
        assert!(matches!(refused, Err(AuthError::HashingBusy)));
        release.send(()).unwrap();
        assert!(blocker.await.unwrap());
        assert!(!queued.await.unwrap(), "the queued check still runs");
    }

    #[tokio::test(start_paused = true)]
    async fn one_client_gets_a_bounded_share_of_the_pool() {
        let pool = HashPool::new(1, 64, 2).unwrap();
        let a = pool.client_share(client(1).unwrap()).await.unwrap();
        let _b = pool.client_share(client(1).unwrap()).await.unwrap();
        assert!(
            pool.client_share(client(2).unwrap()).await.is_ok(),
            "another client"
        );
        let third = pool.client_share(client(1).unwrap());
        tokio::pin!(third);
        assert!(pending(third.as_mut()).await, "a third one waits");
        drop(a);
        let _third = third.await.expect("the share given back");
        let timed_out = pool.client_share(client(1).unwrap()).await;
        assert!(
            matches!(timed_out, Err(AuthError::TooManyHashes)),
            "but not forever"
        );
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
