//! Storage: one trait, [`Store`], with an SQLite and a PostgreSQL implementation.
//!
//! Both implementations pass the same test suite. Keys are stored only as
//! [`KeyDigest`]s; a delete or a user deletion is committed before the call
//! returns, so a `200` built on it is durable.

mod cache;
pub mod coherence;
mod nodes;
mod postgres;
mod sqlite;

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use axum::body::Bytes;
use proget_api::{ApiKeyInfo, AuditEntry};
use time::OffsetDateTime;

pub use cache::CachedStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

use crate::domain::{
    name_key, Actor, AuditContext, AuditQuery, Group, KeyDigest, KeyId, KeyUsage, NewKey,
    NewPermission, Permission, PermissionId, Scope, SecurityModel, StoredKey, Subject, User,
    UserChange, UserId, UserLogin, ADMINISTRATORS, ANONYMOUS,
};

/// A failure of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another key already has this digest.
    #[error("a key with the same text already exists")]
    DuplicateKey,
    /// Another user already has this name (case-insensitively).
    #[error("a user with the same name already exists")]
    DuplicateUser,
    /// The owner already holds as many personal keys as the create allows.
    #[error("the owner already holds the most personal keys allowed")]
    TooManyKeys,
    /// The change would leave no administrator who can log in.
    #[error("the change would leave no administrator who can log in")]
    LastAdministrator,
    /// Another group already has this name (case-insensitively).
    #[error("a group with the same name already exists")]
    DuplicateGroup,
    /// A permission or group names a user that does not exist.
    #[error("unknown user \"{0}\"")]
    UnknownUser(String),
    /// A permission names a group that does not exist.
    #[error("unknown group \"{0}\"")]
    UnknownGroup(String),
    /// `Administrators` cannot be deleted.
    #[error("the group Administrators cannot be deleted")]
    ProtectedGroup,
    /// The database was written by a newer version of latchkey.
    #[error("the database schema (version {found}) is newer than this latchkey understands (version {supported}); run a newer latchkey")]
    SchemaTooNew {
        /// Highest migration applied to the database.
        found: i64,
        /// Highest migration this binary knows.
        supported: i64,
    },
    /// Anything else: connection, I/O, corrupt rows.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Other(e.into())
    }
}

/// One page of a listing, as JSON.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JsonPage {
    /// The keys' JSON objects, comma-separated (no brackets).
    pub items: String,
    /// The id of the page's last key; `None` for an empty page.
    pub last: Option<KeyId>,
    /// How many keys the page holds.
    pub count: usize,
}

/// A successful authentication by a key, as the usage writer stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUse {
    /// The key.
    pub key: KeyId,
    /// When, in seconds since the epoch.
    pub at: i64,
    /// The client address.
    pub from: Option<String>,
}

/// One access-log entry (secrets already removed).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct AccessRecord {
    /// The key the request was made with.
    pub key_id: KeyId,
    /// When the request arrived, in milliseconds since the epoch.
    pub time_ms: i64,
    /// The method.
    pub method: String,
    /// The path and query, redacted.
    pub path: String,
    /// The response status.
    pub status: i32,
    /// How long the answer took.
    pub duration_ms: i64,
    /// The client address.
    pub address: Option<String>,
    /// The `User-Agent` header.
    pub user_agent: Option<String>,
    /// The verdict of a forward-auth or verification check.
    pub verdict: Option<String>,
    /// The request body, redacted.
    pub request_body: Option<String>,
    /// The response body, redacted.
    pub response_body: Option<String>,
    /// Whether a body was cut.
    pub truncated: bool,
}

/// A stored access-log entry: its id and the entry.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct StoredAccess {
    /// The entry id (increasing).
    pub id: i64,
    /// The entry.
    #[sqlx(flatten)]
    pub record: AccessRecord,
}

/// What the usage writer stores in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsageBatch {
    /// Last uses, at most one per key.
    pub uses: Vec<KeyUse>,
    /// Access-log entries.
    pub entries: Vec<AccessRecord>,
}

/// The columns an access-log query selects.
pub(crate) const ACCESS_COLUMNS: &str = "id, key_id, time_ms, method, path, status, \
     duration_ms, address, user_agent, verdict, request_body, response_body, truncated \
     FROM access_log";

/// The storage interface shared by the SQLite and PostgreSQL back ends.
///
/// Every write is committed before the method returns. Every write that
/// changes keys, users, groups, permissions or the installation secret takes
/// an [`AuditContext`] and writes its audit entry in the same transaction:
/// a change is never committed without its entry, nor an entry without its
/// change. Not audited: [`replace_digest`](Store::replace_digest) (re-keying
/// at first use after a rotation, which the rotation's `secret.rotate` entry
/// covers) and [`insert_setting`](Store::insert_setting) (a new database
/// recording its first secret).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Checks that the database answers and that the tables the hot path
    /// reads (keys by digest, users by name) can be read through their indexes.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The key with this digest, with its owner (the hot path: one indexed lookup).
    async fn key_by_digest(&self, digest: &KeyDigest)
        -> Result<Option<Arc<StoredKey>>, StoreError>;
    /// The key with this id.
    async fn key_by_id(&self, id: KeyId) -> Result<Option<StoredKey>, StoreError>;
    /// All keys ordered by id, or only the personal keys of one user.
    async fn list_keys(&self, owner: Option<UserId>) -> Result<Vec<StoredKey>, StoreError>;
    /// One user's personal keys as the JSON array `GET /api/api-keys/list`
    /// answers (never with key text); the cache keeps it serialised.
    async fn list_keys_json(&self, owner: UserId) -> Result<Bytes, StoreError> {
        let infos: Vec<ApiKeyInfo> = self
            .list_keys(Some(owner))
            .await?
            .into_iter()
            .map(ApiKeyInfo::from)
            .collect();
        let json = serde_json::to_vec(&infos).map_err(|e| StoreError::Other(e.into()))?;
        Ok(Bytes::from(json))
    }
    /// Up to `limit` keys of any owner with ids above `after`, ordered by id:
    /// one page of a listing too large to hold at once.
    async fn keys_after(&self, after: KeyId, limit: u32) -> Result<Vec<StoredKey>, StoreError>;
    /// The same page as [`keys_after`](Store::keys_after), already written as
    /// the comma-separated JSON objects of a listing (never with key text).
    /// SQLite overrides it to let the database write the JSON.
    async fn key_page_json(&self, after: KeyId, limit: u32) -> Result<JsonPage, StoreError> {
        let keys = self.keys_after(after, limit).await?;
        let mut page = JsonPage {
            last: keys.last().map(|k| k.id),
            count: keys.len(),
            ..JsonPage::default()
        };
        for (i, key) in keys.into_iter().enumerate() {
            if i > 0 {
                page.items.push(',');
            }
            let json = serde_json::to_string(&ApiKeyInfo::from(key))
                .map_err(|e| StoreError::Other(e.into()))?;
            page.items.push_str(&json);
        }
        Ok(page)
    }
    /// Stores a new key; [`StoreError::DuplicateKey`] when the digest exists.
    async fn create_key(&self, audit: &AuditContext, key: NewKey) -> Result<StoredKey, StoreError>;
    /// Stores a key's digest under the current installation secret (after a rotation).
    async fn replace_digest(&self, id: KeyId, digest: &KeyDigest) -> Result<(), StoreError>;
    /// Gives key `id` the new `digest` (audit `apikey.rotate`); its previous
    /// text stops working when the write returns or, with `grace_until`, then.
    /// `None` when no key has this id.
    async fn rotate_key(
        &self,
        audit: &AuditContext,
        id: KeyId,
        digest: &KeyDigest,
        grace_until: Option<OffsetDateTime>,
    ) -> Result<Option<StoredKey>, StoreError>;
    /// Deletes a key durably; `false` when no key had this id.
    async fn delete_key(&self, audit: &AuditContext, id: KeyId) -> Result<bool, StoreError>;

    /// The user with this name (case-insensitively), with their password hash.
    async fn user_login(&self, name: &str) -> Result<Option<UserLogin>, StoreError>;
    /// Users ordered by name, optionally those whose name, display name or
    /// e-mail contains `search` (case-insensitively).
    async fn list_users(&self, search: Option<&str>) -> Result<Vec<User>, StoreError>;
    /// Creates a user; [`StoreError::DuplicateUser`] when the name exists.
    /// Its groups take the spelling of existing groups (case-insensitively),
    /// unknown ones are created, duplicates dropped (as on update).
    async fn create_user(&self, audit: &AuditContext, user: UserChange)
        -> Result<User, StoreError>;
    /// Updates a user; `None` when no user has this name;
    /// [`StoreError::LastAdministrator`] (and nothing changed) when the
    /// change would leave no administrator who can log in.
    async fn update_user(
        &self,
        audit: &AuditContext,
        change: UserChange,
    ) -> Result<Option<User>, StoreError>;
    /// Deletes a user, their personal keys and their permissions in one
    /// transaction; `false` when no user had this name;
    /// [`StoreError::LastAdministrator`] (and nothing deleted) when no
    /// administrator who can log in would remain.
    async fn delete_user(&self, audit: &AuditContext, name: &str) -> Result<bool, StoreError>;
    /// Whether any user exists (an empty database gets the first `Admin`).
    async fn has_users(&self) -> Result<bool, StoreError>;
    /// Creates `user` only if there are no users at all; `true` if created.
    async fn create_first_user(
        &self,
        audit: &AuditContext,
        user: UserChange,
    ) -> Result<bool, StoreError>;

    /// Every permission, as the snapshot the policy evaluates (the hot path
    /// on every authenticated request: the cache keeps it in memory).
    async fn security(&self) -> Result<Arc<SecurityModel>, StoreError>;
    /// Adds a permission. [`StoreError::UnknownUser`] / [`StoreError::UnknownGroup`]
    /// when its subject does not exist (`Anonymous` always does);
    /// [`StoreError::LastAdministrator`] (and nothing added) when a deny
    /// would leave no administrator who can log in.
    async fn add_permission(
        &self,
        audit: &AuditContext,
        permission: NewPermission,
    ) -> Result<Permission, StoreError>;
    /// Deletes a permission; `false` when no permission had this id;
    /// [`StoreError::LastAdministrator`] (and nothing deleted) when no
    /// administrator who can log in would remain.
    async fn delete_permission(
        &self,
        audit: &AuditContext,
        id: PermissionId,
    ) -> Result<bool, StoreError>;
    /// Every group with its members, ordered by name.
    async fn list_groups(&self) -> Result<Vec<Group>, StoreError>;
    /// Creates a group; [`StoreError::DuplicateGroup`] when the name exists,
    /// [`StoreError::UnknownUser`] when a member does not.
    async fn create_group(&self, audit: &AuditContext, group: Group) -> Result<Group, StoreError>;
    /// Replaces a group's members; `None` when no group has this name;
    /// [`StoreError::UnknownUser`] or [`StoreError::LastAdministrator`] (and
    /// nothing changed) as for the other writes.
    async fn edit_group(
        &self,
        audit: &AuditContext,
        group: Group,
    ) -> Result<Option<Group>, StoreError>;
    /// Deletes a group, its memberships and its permissions in one
    /// transaction; `false` when no group had this name;
    /// [`StoreError::ProtectedGroup`] for `Administrators`.
    async fn delete_group(&self, audit: &AuditContext, name: &str) -> Result<bool, StoreError>;

    /// Stores a batch of last uses and access-log entries in one
    /// transaction. A last use only moves forward (the greatest time wins,
    /// so nodes writing their own batches agree); uses of deleted keys are
    /// ignored.
    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError>;
    /// Up to `limit` access-log entries of a key, newest first, with ids
    /// below `before` when given.
    async fn access_log(
        &self,
        key: KeyId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredAccess>, StoreError>;
    /// Deletes at most `batch` access-log entries older than `older_than_ms`
    /// or beyond the newest `max_per_key` of their key; returns how many.
    async fn prune_access_log(
        &self,
        older_than_ms: i64,
        max_per_key: u32,
        batch: u32,
    ) -> Result<u64, StoreError>;

    /// The value of an installation setting, e.g. the secret's fingerprint.
    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError>;
    /// Stores `value` unless the setting already has one; returns the value
    /// stored afterwards (the first writer's, when nodes race).
    async fn insert_setting(&self, name: &str, value: &str) -> Result<String, StoreError>;
    /// Replaces the setting's value only while it is still `old`; `true` if replaced.
    async fn replace_setting(
        &self,
        audit: &AuditContext,
        name: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError>;

    /// Writes one audit entry about something that changed nothing else in
    /// the database (an address blocked by the brute-force limiter).
    async fn record_audit(
        &self,
        audit: &AuditContext,
        action: &'static str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError>;
    /// Audit entries, newest first, as [`AuditQuery`] selects them.
    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError>;
    /// Deletes up to `limit` of the oldest entries recorded before `before`
    /// (seconds since the epoch); returns how many went.
    async fn prune_audit(&self, before: i64, limit: u32) -> Result<u64, StoreError>;

    /// Why this node's cache is bypassed, when it is (`/health/json`'s
    /// `serviceStatusDetail`); `None` when in sync or not one of several nodes.
    fn sync_detail(&self) -> Option<String> {
        None
    }
    /// Stores a new console session.
    async fn create_session(&self, session: &ConsoleSession) -> Result<(), StoreError>;
    /// The console session with this token digest.
    async fn session(&self, digest: &[u8]) -> Result<Option<ConsoleSession>, StoreError>;
    /// Moves a session's last activity forward to `at` (seconds since the epoch).
    async fn touch_session(&self, digest: &[u8], at: i64) -> Result<(), StoreError>;
    /// Deletes a session; `false` when none had this digest.
    async fn delete_session(&self, digest: &[u8]) -> Result<bool, StoreError>;
    /// Deletes sessions idle since before `idle_before` or created before
    /// `created_before`; returns how many went.
    async fn prune_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> Result<u64, StoreError>;
    /// Up to `query.limit` keys with ids above `query.after`, ordered by id,
    /// optionally only one owner's personal keys and only those whose name,
    /// user or feed contains `query.search` (case-insensitively): the
    /// console's key list, paged by id.
    async fn search_keys(&self, query: &KeySearch) -> Result<Vec<StoredKey>, StoreError>;

    /// Closes the connections cleanly.
    async fn close(&self);
}

/// Opens a PostgreSQL database as one node of several, with a cache kept
/// coherent by the protocol of `docs/postgres.md` (sync lease `lease`).
pub async fn open_node(
    url: &str,
    lease: std::time::Duration,
    node_id: &str,
) -> Result<Arc<dyn Store>, StoreError> {
    nodes::open(url, lease, node_id).await
}

/// A console session as stored (the token itself never is).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ConsoleSession {
    /// HMAC-SHA-256 digest of the session token.
    pub digest: Vec<u8>,
    /// The user logged in.
    pub user_id: UserId,
    /// Their name at log-in, to read the user row.
    pub user_name: String,
    /// A digest of their password hash at log-in.
    pub user_stamp: Vec<u8>,
    /// When the session began (seconds since the epoch).
    pub created_at: i64,
    /// Its last activity (seconds since the epoch).
    pub last_seen: i64,
}

/// What [`Store::search_keys`] selects.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySearch {
    /// Only ids above this one.
    pub after: KeyId,
    /// At most this many keys.
    pub limit: u32,
    /// Only this user's personal keys.
    pub owner: Option<UserId>,
    /// Only keys whose name, user name or feed contains this text.
    pub search: Option<String>,
}

impl KeySearch {
    /// The search text as a `LIKE` pattern (escape character `\`), lower-cased.
    pub(crate) fn pattern(&self) -> Option<String> {
        self.search.as_deref().filter(|s| !s.is_empty()).map(|s| {
            let mut p = String::from("%");
            for c in s.to_lowercase().chars() {
                if matches!(c, '%' | '_' | '\\') {
                    p.push('\\');
                }
                p.push(c);
            }
            p.push('%');
            p
        })
    }
}

/// Opens the store a database URL names (`sqlite://…` or `postgres://…`),
/// running migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::Other(anyhow::anyhow!(
            "unsupported database URL scheme (expected sqlite:// or postgres://)"
        )))
    }
}

/// What `latchkey check-config` reads from a database, changing nothing.
#[derive(Debug)]
pub struct DatabaseState {
    /// Migrations recorded as applied.
    pub applied: Vec<i64>,
    /// Migrations this binary knows.
    pub known: Vec<i64>,
    /// The recorded fingerprint of the installation secret, if any.
    pub fingerprint: Option<String>,
}

/// Reads a database's migration state and secret fingerprint without
/// changing anything (SQLite: read-only, after `PRAGMA quick_check`);
/// `None` for an SQLite file that does not exist yet.
pub async fn inspect(url: &str) -> Result<Option<DatabaseState>, StoreError> {
    if url.starts_with("sqlite:") {
        sqlite::inspect(url).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::inspect(url).await.map(Some)
    } else {
        Err(StoreError::Other(anyhow::anyhow!(
            "unsupported database URL scheme (expected sqlite:// or postgres://)"
        )))
    }
}

/// The default SQLite URL for a data directory.
pub fn sqlite_url_for(data_dir: &Path) -> String {
    format!("sqlite://{}/latchkey.db", data_dir.display())
}

/// Encodes a list of wire enum values as stored: comma-separated.
pub(crate) fn join_values<T: Copy>(values: &[T], as_str: fn(T) -> &'static str) -> String {
    values
        .iter()
        .map(|v| as_str(*v))
        .collect::<Vec<_>>()
        .join(",")
}

/// Decodes a comma-separated list of wire enum values.
pub(crate) fn split_values<T: std::str::FromStr>(text: &str) -> Result<Vec<T>, StoreError>
where
    T::Err: std::fmt::Display,
{
    text.split(',')
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse()
                .map_err(|e: T::Err| StoreError::Other(anyhow::anyhow!("corrupt row: {e}")))
        })
        .collect()
}

/// The highest migration version a migrator knows: the schema this binary supports.
pub(crate) fn newest_migration(migrator: &sqlx::migrate::Migrator) -> i64 {
    migrator.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Maps a migration failure to a clear error, recognising a newer schema.
pub(crate) fn migrate_error(e: sqlx::migrate::MigrateError, supported: i64) -> StoreError {
    match e {
        sqlx::migrate::MigrateError::VersionMissing(found) => {
            StoreError::SchemaTooNew { found, supported }
        }
        other => StoreError::Other(anyhow::Error::new(other).context("database migration failed")),
    }
}

/// The columns every key query selects, joined with the owner (`k` keys, `u` users).
pub(crate) const KEY_COLUMNS: &str = "k.id, k.key_type, k.display_name, k.description, \
     k.system_apis, k.package_permissions, k.feed, k.feed_group, k.expiration, k.logging, \
     k.created_at, k.last_used, k.last_used_from, k.grace_until, \
     u.id AS user_id, u.name AS user_name, u.display_name AS user_display_name, \
     u.email AS user_email, u.groups AS user_groups \
     FROM api_keys k LEFT JOIN users u ON u.id = k.user_id";

/// The look-up by digest (the hot path), `p` writing the n-th parameter
/// (`?n` or `$n`; binds the digest, then the time now): one query through
/// the unique indexes of the current and the previous text, which tells
/// whether the row was found by the previous one.
pub(crate) fn key_by_digest_sql(p: fn(usize) -> String) -> String {
    let columns = KEY_COLUMNS.replacen(
        "k.id,",
        &format!("k.digest <> {} AS by_old_text, k.id,", p(1)),
        1,
    );
    format!(
        "SELECT {columns} WHERE k.digest = {d} OR (k.old_digest = {d} AND k.grace_until > {now})",
        d = p(1),
        now = p(2)
    )
}

/// A rotation, `p` writing the n-th parameter (binds the new digest, the
/// grace period's end or NULL, the id): the previous digest is kept only
/// with a grace period.
pub(crate) fn rotate_sql(p: fn(usize) -> String) -> String {
    format!(
        "UPDATE api_keys SET old_digest = CASE WHEN {g} IS NULL THEN NULL ELSE digest END, \
         grace_until = {g}, digest = {d} WHERE id = {id}",
        d = p(1),
        g = p(2),
        id = p(3)
    )
}

/// The columns every user query selects.
pub(crate) const USER_COLUMNS: &str =
    "id, name, display_name, email, groups, password_hash FROM users";

/// A key row as both back ends return it.
#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    id: i32,
    key_type: String,
    display_name: Option<String>,
    description: Option<String>,
    system_apis: String,
    package_permissions: String,
    feed: Option<String>,
    feed_group: Option<String>,
    expiration: Option<i64>,
    logging: String,
    created_at: i64,
    last_used: Option<i64>,
    last_used_from: Option<String>,
    grace_until: Option<i64>,
    /// Only in [`Store::key_by_digest`]'s query: the key was found by its
    /// previous text (during a rotation's grace period).
    #[sqlx(default)]
    by_old_text: bool,
    user_id: Option<i64>,
    user_name: Option<String>,
    user_display_name: Option<String>,
    user_email: Option<String>,
    user_groups: Option<String>,
}

impl TryFrom<KeyRow> for StoredKey {
    type Error = StoreError;

    fn try_from(r: KeyRow) -> Result<Self, StoreError> {
        let corrupt =
            |what: &str| StoreError::Other(anyhow::anyhow!("corrupt key row {}: {what}", r.id));
        let user = match (r.user_id, r.user_name) {
            (Some(id), Some(name)) => Some(User {
                id,
                name,
                display_name: r.user_display_name,
                email: r.user_email,
                groups: decode_groups(r.user_groups.as_deref().unwrap_or("[]"))?,
            }),
            _ => None,
        };
        let time =
            |t: i64, what: &str| OffsetDateTime::from_unix_timestamp(t).map_err(|_| corrupt(what));
        let grace_until = r.grace_until.map(|t| time(t, "grace_until")).transpose()?;
        let mut expiration = r.expiration.map(|t| time(t, "expiration")).transpose()?;
        if r.by_old_text {
            // The previous text works until the grace period ends.
            expiration = match (expiration, grace_until) {
                (Some(e), Some(g)) => Some(e.min(g)),
                (e, g) => g.or(e),
            };
        }
        Ok(StoredKey {
            id: r.id,
            key_type: r.key_type.parse().map_err(|_| corrupt("key_type"))?,
            display_name: r.display_name,
            description: r.description,
            system_apis: split_values(&r.system_apis)?,
            package_permissions: split_values(&r.package_permissions)?,
            feed: r.feed,
            feed_group: r.feed_group,
            expiration,
            logging: r.logging.parse().map_err(|_| corrupt("logging"))?,
            user,
            usage: KeyUsage {
                created: OffsetDateTime::from_unix_timestamp(r.created_at).ok(),
                last_used: r
                    .last_used
                    .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok()),
                last_used_from: r.last_used_from,
            },
            grace_until,
        })
    }
}

/// A user row as both back ends return it.
#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: i64,
    name: String,
    display_name: Option<String>,
    email: Option<String>,
    groups: String,
    password_hash: String,
}

impl TryFrom<UserRow> for UserLogin {
    type Error = StoreError;

    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        Ok(UserLogin {
            user: User {
                id: r.id,
                name: r.name,
                display_name: r.display_name,
                email: r.email,
                groups: decode_groups(&r.groups)?,
            },
            password_hash: r.password_hash,
        })
    }
}

/// Groups are stored as a JSON array of names.
pub(crate) fn encode_groups(groups: &[String]) -> String {
    serde_json::Value::from(groups.to_vec()).to_string()
}

fn decode_groups(text: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(text)
        .map_err(|e| StoreError::Other(anyhow::anyhow!("corrupt groups column: {e}")))
}

/// Seconds since the epoch, as stored.
pub(crate) fn unix_now() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// After an upgrade that changed [`name_key`], the users whose stored key
/// differs, as `(id, name, new key)`; the back ends rewrite them at start.
pub(crate) fn stale_name_keys(rows: Vec<(i64, String, String)>) -> Vec<(i64, String, String)> {
    rows.into_iter()
        .filter_map(|(id, name, key)| {
            let fresh = name_key(&name);
            (fresh != key).then_some((id, name, fresh))
        })
        .collect()
}

/// Logs a user whose new look-up key is taken by another user: it keeps its old one.
pub(crate) fn name_key_clash(name: &str) {
    tracing::warn!(
        user = %name,
        "this user's name equals another's under Unicode normalisation; rename one of them"
    );
}

/// Whether a database error is a unique-constraint violation.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// The columns every permission query selects.
pub(crate) const PERMISSION_COLUMNS: &str =
    "id, user_name, group_name, task, feed, feed_group, deny FROM permissions";

/// A permission row as both back ends return it.
#[derive(sqlx::FromRow)]
pub(crate) struct PermissionRow {
    id: i64,
    user_name: Option<String>,
    group_name: Option<String>,
    task: String,
    feed: Option<String>,
    feed_group: Option<String>,
    deny: bool,
}

impl TryFrom<PermissionRow> for Permission {
    type Error = StoreError;

    fn try_from(r: PermissionRow) -> Result<Self, StoreError> {
        let corrupt = |what: &str| {
            StoreError::Other(anyhow::anyhow!("corrupt permission row {}: {what}", r.id))
        };
        let subject = match (r.user_name, r.group_name) {
            (Some(user), None) => Subject::User(user),
            (None, Some(group)) => Subject::Group(group),
            _ => return Err(corrupt("subject")),
        };
        let scope = match (r.feed, r.feed_group) {
            (None, None) => Scope::Global,
            (Some(feed), None) => Scope::Feed(feed),
            (None, Some(group)) => Scope::FeedGroup(group),
            _ => return Err(corrupt("scope")),
        };
        Ok(Permission {
            id: r.id,
            subject,
            task: r.task.parse().map_err(|_| corrupt("task"))?,
            scope,
            deny: r.deny,
        })
    }
}

/// A permission's columns as stored: `(user_name, user_key, group_name,
/// group_key, task, feed, feed_group)`.
pub(crate) type PermissionColumns = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    &'static str,
    Option<String>,
    Option<String>,
);

/// The stored columns of a permission whose subject has its canonical spelling.
pub(crate) fn permission_columns(p: &NewPermission) -> PermissionColumns {
    let (user, group) = match &p.subject {
        Subject::User(n) => (Some(n.clone()), None),
        Subject::Group(n) => (None, Some(n.clone())),
    };
    let (feed, feed_group) = match &p.scope {
        Scope::Global => (None, None),
        Scope::Feed(f) => (Some(f.clone()), None),
        Scope::FeedGroup(g) => (None, Some(g.clone())),
    };
    (
        user.clone(),
        user.as_deref().map(name_key),
        group.clone(),
        group.as_deref().map(name_key),
        p.task.name(),
        feed,
        feed_group,
    )
}

/// Whether a user name is the special `Anonymous`.
pub(crate) fn is_anonymous(name: &str) -> bool {
    name_key(name) == name_key(ANONYMOUS)
}

/// Whether a group name is the protected `Administrators`.
pub(crate) fn is_administrators(name: &str) -> bool {
    name_key(name) == name_key(ADMINISTRATORS)
}

/// The query the last-administrator check reads users with.
pub(crate) const ADMIN_ROWS: &str =
    "SELECT name, groups, password_hash <> '' AS can_log_in FROM users";

/// What the last-administrator check needs of a user.
#[derive(sqlx::FromRow)]
pub(crate) struct AdminRow {
    name: String,
    groups: String,
    can_log_in: bool,
}

/// How many users who can log in (have a password) are administrators under
/// these permissions, by [`crate::policy::is_admin`].
pub(crate) fn count_admins(
    permissions: Vec<Permission>,
    users: Vec<AdminRow>,
) -> Result<usize, StoreError> {
    let model = SecurityModel::new(permissions);
    let mut count = 0;
    for row in users.into_iter().filter(|r| r.can_log_in) {
        let user = User {
            id: 0,
            name: row.name,
            display_name: None,
            email: None,
            groups: decode_groups(&row.groups)?,
        };
        if crate::policy::is_admin(&model, &user) {
            count += 1;
        }
    }
    Ok(count)
}

/// The outcome of a guarded write: [`StoreError::LastAdministrator`] when
/// there were administrators who can log in before and none after.
pub(crate) fn check_admins(before: usize, after: usize) -> Result<(), StoreError> {
    if before > 0 && after == 0 {
        Err(StoreError::LastAdministrator)
    } else {
        Ok(())
    }
}

/// A user's requested groups resolved against the existing ones (`existing`:
/// the groups table's names): deduplicated case-insensitively, existing
/// groups with their own spelling. Returns the groups to store and the
/// names of groups to create.
pub(crate) fn resolve_groups(
    requested: &[String],
    existing: &[String],
) -> (Vec<String>, Vec<String>) {
    let known: std::collections::HashMap<String, &String> =
        existing.iter().map(|g| (name_key(g), g)).collect();
    let mut seen = std::collections::HashSet::new();
    let mut groups = Vec::new();
    let mut new = Vec::new();
    for name in requested {
        let key = name_key(name);
        if !seen.insert(key.clone()) {
            continue;
        }
        match known.get(&key) {
            Some(spelling) => groups.push((*spelling).clone()),
            None => {
                groups.push(name.clone());
                new.push(name.clone());
            }
        }
    }
    (groups, new)
}

/// A user's stored groups with `group` added (`in_group`) or removed;
/// `None` when that changes nothing.
pub(crate) fn set_membership(
    groups_json: &str,
    group: &str,
    in_group: bool,
) -> Result<Option<String>, StoreError> {
    let groups = decode_groups(groups_json)?;
    let key = name_key(group);
    let member = groups.iter().any(|g| name_key(g) == key);
    if member == in_group {
        return Ok(None);
    }
    let changed: Vec<String> = if in_group {
        groups.into_iter().chain([group.to_owned()]).collect()
    } else {
        groups.into_iter().filter(|g| name_key(g) != key).collect()
    };
    Ok(Some(encode_groups(&changed)))
}

/// Groups with their members, ordered by name (members too, by name key):
/// `groups` are the groups table's names, `users` each user's `(name, groups)`.
pub(crate) fn groups_with_members(
    groups: Vec<String>,
    users: Vec<(String, String)>,
) -> Result<Vec<Group>, StoreError> {
    let mut members: std::collections::HashMap<String, Vec<(String, String)>> =
        std::collections::HashMap::new();
    for (user, groups_json) in users {
        let user_key = name_key(&user);
        let mut seen = std::collections::HashSet::new();
        for g in decode_groups(&groups_json)? {
            let key = name_key(&g);
            if seen.insert(key.clone()) {
                members
                    .entry(key)
                    .or_default()
                    .push((user_key.clone(), user.clone()));
            }
        }
    }
    let mut out: Vec<(String, Group)> = groups
        .into_iter()
        .map(|name| {
            let key = name_key(&name);
            let mut m = members.remove(&key).unwrap_or_default();
            m.sort();
            let group = Group {
                name,
                members: m.into_iter().map(|(_, n)| n).collect(),
            };
            (key, group)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out.into_iter().map(|(_, g)| g).collect())
}

/// The groups named in users' groups that the groups table lacks, one
/// spelling per name key (`users_groups`: each user's groups column).
pub(crate) fn missing_groups(
    existing: &[String],
    users_groups: Vec<String>,
) -> Result<Vec<String>, StoreError> {
    let mut all = Vec::new();
    for json in users_groups {
        all.extend(decode_groups(&json)?);
    }
    Ok(resolve_groups(&all, existing).1)
}

/// A change's audit entry before it is written: the store names the action
/// and target and describes the change; the [`AuditContext`] adds who and from where.
#[derive(Debug, Clone)]
pub(crate) struct AuditRecord {
    /// The dotted action name (unless the context overrides it).
    pub action: &'static str,
    /// What the change was made to.
    pub target: String,
    /// A JSON object describing the change, without secrets.
    pub details: serde_json::Value,
}

/// The columns of an audit row as written: `(time, actor, action, target, address, details)`.
pub(crate) type AuditColumns = (i64, String, &'static str, String, Option<String>, String);

impl AuditRecord {
    /// The row to insert for this change made in `ctx`.
    pub fn columns(&self, ctx: &AuditContext) -> AuditColumns {
        let mut details = self.details.clone();
        if let (Some(extra), Some(map)) = (
            ctx.details.as_ref().and_then(|d| d.as_object()),
            details.as_object_mut(),
        ) {
            map.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
        }
        (
            unix_now(),
            ctx.actor.to_string(),
            ctx.action.unwrap_or(self.action),
            self.target.clone(),
            ctx.address.map(|a| a.to_string()),
            details.to_string(),
        )
    }

    /// `apikey.create`: the key's kind and owner.
    pub fn key_created(key: &StoredKey) -> Self {
        let mut details = serde_json::json!({ "type": key.key_type.as_str() });
        if let Some(user) = &key.user {
            details["user"] = user.name.clone().into();
        }
        AuditRecord {
            action: "apikey.create",
            target: format!("key {}", key.id),
            details,
        }
    }

    /// `apikey.delete`, with `selfRevocation: true` when the key deleted itself.
    pub fn key_deleted(ctx: &AuditContext, id: KeyId) -> Self {
        let details = if ctx.actor == Actor::Key(id) {
            serde_json::json!({ "selfRevocation": true })
        } else {
            serde_json::json!({})
        };
        AuditRecord {
            action: "apikey.delete",
            target: format!("key {id}"),
            details,
        }
    }

    /// `apikey.rotate`: whether the key rotated itself, and the grace period's end.
    pub fn key_rotated(ctx: &AuditContext, id: KeyId, grace_until: Option<i64>) -> Self {
        let mut details = serde_json::json!({});
        if ctx.actor == Actor::Key(id) {
            details["selfRotation"] = true.into();
        }
        if let Some(t) = grace_until {
            details["graceUntil"] = t.into();
        }
        AuditRecord {
            action: "apikey.rotate",
            target: format!("key {id}"),
            details,
        }
    }

    /// `user.add`: the new user's groups, display name and e-mail (those set).
    pub fn user_added(user: &User) -> Self {
        let mut details = serde_json::json!({ "groups": user.groups });
        if let Some(name) = &user.display_name {
            details["displayName"] = name.clone().into();
        }
        if let Some(email) = &user.email {
            details["email"] = email.clone().into();
        }
        AuditRecord {
            action: "user.add",
            target: format!("user {}", user.name),
            details,
        }
    }

    /// `user.edit`: the fields whose value changed, and whether the password
    /// did (never the password or its hash).
    pub fn user_edited(before: &User, after: &User, password_changed: bool) -> Self {
        let mut changed = Vec::new();
        if before.display_name != after.display_name {
            changed.push("displayName");
        }
        if before.email != after.email {
            changed.push("email");
        }
        if before.groups != after.groups {
            changed.push("groups");
        }
        let mut details = serde_json::json!({
            "changed": changed,
            "passwordChanged": password_changed,
        });
        if before.groups != after.groups {
            details["groups"] = after.groups.clone().into();
        }
        AuditRecord {
            action: "user.edit",
            target: format!("user {}", after.name),
            details,
        }
    }

    /// `user.delete`, with how many personal keys went with the user.
    pub fn user_deleted(name: &str, keys_deleted: u64) -> Self {
        AuditRecord {
            action: "user.delete",
            target: format!("user {name}"),
            details: serde_json::json!({ "keysDeleted": keys_deleted }),
        }
    }

    /// `permission.add` / `permission.delete`: the permission as stored.
    pub fn permission(action: &'static str, p: &Permission) -> Self {
        let subject = match &p.subject {
            Subject::User(n) => format!("user {n}"),
            Subject::Group(n) => format!("group {n}"),
        };
        let mut details = serde_json::json!({
            "subject": subject,
            "task": p.task.name(),
            "deny": p.deny,
        });
        match &p.scope {
            Scope::Global => {}
            Scope::Feed(f) => details["feed"] = f.clone().into(),
            Scope::FeedGroup(g) => details["feedGroup"] = g.clone().into(),
        }
        AuditRecord {
            action,
            target: format!("permission {}", p.id),
            details,
        }
    }

    /// `group.add`, with its members.
    pub fn group_added(group: &Group) -> Self {
        AuditRecord {
            action: "group.add",
            target: format!("group {}", group.name),
            details: serde_json::json!({ "members": group.members }),
        }
    }

    /// `group.edit`: the members afterwards, and who joined and left.
    pub fn group_edited(before: &Group, after: &Group) -> Self {
        let was: std::collections::HashSet<&String> = before.members.iter().collect();
        let is: std::collections::HashSet<&String> = after.members.iter().collect();
        let added: Vec<&String> = after.members.iter().filter(|m| !was.contains(m)).collect();
        let removed: Vec<&String> = before.members.iter().filter(|m| !is.contains(m)).collect();
        AuditRecord {
            action: "group.edit",
            target: format!("group {}", after.name),
            details: serde_json::json!({
                "members": after.members,
                "added": added,
                "removed": removed,
            }),
        }
    }

    /// `group.delete`: its former members and how many permissions went with it.
    pub fn group_deleted(group: &Group, permissions_deleted: u64) -> Self {
        AuditRecord {
            action: "group.delete",
            target: format!("group {}", group.name),
            details: serde_json::json!({
                "members": group.members,
                "permissionsDeleted": permissions_deleted,
            }),
        }
    }

    /// `setting.replace` (`secret.rotate` when the server records a rotated
    /// installation secret): the setting's name, never its values.
    pub fn setting_replaced(name: &str) -> Self {
        AuditRecord {
            action: "setting.replace",
            target: format!("setting {name}"),
            details: serde_json::json!({}),
        }
    }

    /// An entry for `action` on `target` (see [`Store::record_audit`]).
    pub fn other(action: &'static str, target: &str, details: serde_json::Value) -> Self {
        AuditRecord {
            action,
            target: target.to_owned(),
            details,
        }
    }
}

/// The columns every audit query selects.
pub(crate) const AUDIT_COLUMNS: &str = "id, time, actor, action, target, address";

/// An audit row as both back ends return it (`details` as JSON text).
#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    id: i64,
    time: i64,
    actor: String,
    action: String,
    target: String,
    address: Option<String>,
    details: String,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;

    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        let corrupt =
            |what: &str| StoreError::Other(anyhow::anyhow!("corrupt audit row {}: {what}", r.id));
        let time = OffsetDateTime::from_unix_timestamp(r.time)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .ok_or_else(|| corrupt("time"))?;
        Ok(AuditEntry {
            id: r.id,
            time,
            actor: r.actor,
            action: r.action,
            target: r.target,
            address: r.address,
            details: serde_json::from_str(&r.details).map_err(|_| corrupt("details"))?,
        })
    }
}

/// The query listing audit entries: `placeholder(n)` writes the n-th
/// parameter (`?` or `$n`); binds `before`, `target`, `action` (those
/// present, in that order), then the limit. `details` is the expression
/// reading the details as text.
pub(crate) fn audit_list_sql(
    q: &AuditQuery,
    details: &str,
    placeholder: fn(usize) -> String,
) -> String {
    let mut conditions = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        placeholder(n)
    };
    if q.before.is_some() {
        conditions.push(format!("id < {}", next()));
    }
    if q.target.is_some() {
        conditions.push(format!("target = {}", next()));
    }
    if q.action.is_some() {
        conditions.push(format!("action = {}", next()));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    format!(
        "SELECT {AUDIT_COLUMNS}, {details} AS details FROM audit {filter} ORDER BY id DESC LIMIT {}",
        next()
    )
}
