//! PostgreSQL storage, for several latchkey nodes on one database.
//!
//! Nodes share nothing but the database. Every write is committed before the
//! call returns; every write that can narrow access also appends to the
//! invalidation log in its own transaction (`latchkey_invalidate`), has it
//! numbered after the commit (`latchkey_number`) and, on a node
//! ([`super::nodes`]), waits until the other nodes acknowledged it, or `T`
//! plus a margin passed, before it returns: see `docs/postgres.md`.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use proget_api::AuditEntry;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Executor, PgConnection, PgPool, Postgres};

use super::coherence::Invalidation;
use super::{
    check_admins, coherence, count_admins, encode_groups, groups_with_members, is_administrators,
    is_anonymous, is_unique_violation, join_values, key_by_digest_sql, migrate_error,
    missing_groups, name_key_clash, newest_migration, nodes::Node, permission_columns,
    resolve_groups, rotate_sql, set_membership, stale_name_keys, unix_now, AccessRecord, AdminRow,
    AuditRecord, AuditRow, KeyRow, PermissionRow, Store, StoreError, StoredAccess, UsageBatch,
    UserRow, ACCESS_COLUMNS, ADMIN_ROWS, KEY_COLUMNS, PERMISSION_COLUMNS, USER_COLUMNS,
};

use crate::domain::{
    name_key, AuditContext, AuditQuery, Group, KeyDigest, KeyId, NewKey, NewPermission, Permission,
    PermissionId, SecurityModel, StoredKey, Subject, User, UserChange, UserId, UserLogin,
    ANONYMOUS,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections per node; several nodes share the server's `max_connections`.
const MAX_CONNECTIONS: u32 = 16;
/// How long a request waits for a connection before it fails (with a 500).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Advisory lock that serialises first-user creation across nodes.
const FIRST_USER_LOCK: i64 = 0x6c61_7463_686b_0001;
/// Advisory lock serialising writes to users, groups and permissions across
/// nodes, so that two concurrent demotions cannot both see the other
/// administrator remain.
const USER_WRITE_LOCK: i64 = 0x6c61_7463_686b_0002;

/// [`key_by_digest_sql`] with PostgreSQL's parameters, written once.
static BY_DIGEST: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| key_by_digest_sql(|n| format!("${n}")));

/// PostgreSQL storage.
pub struct PostgresStore {
    pool: PgPool,
    options: PgConnectOptions,
    /// This process's node, once it runs one: writes wait for its acknowledgements.
    node: OnceLock<Arc<Node>>,
}

impl PostgresStore {
    /// Connects to `url` and migrates the database.
    ///
    /// Several nodes may start at once: sqlx's migrator holds a
    /// session-level advisory lock while it checks and applies migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let mut options = PgConnectOptions::from_str(url)
            .map_err(|e| anyhow::Error::new(e).context("invalid PostgreSQL URL"))?;
        // Named in pg_stat_activity; `?application_name=` in the URL wins,
        // so that operators can tell the nodes apart.
        if options.get_application_name().is_none() {
            options = options.application_name("latchkey");
        }
        // Connections killed by the server (restart, failover, admin) are
        // found by the ping before each acquire and replaced.
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .test_before_acquire(true)
            .connect_with(options.clone())
            .await
            .map_err(|e| {
                anyhow::Error::new(e).context("cannot connect to the PostgreSQL database")
            })?;
        if let Err(e) = MIGRATOR.run(&pool).await {
            // A failed run may leave the migration lock held by its session;
            // closing the pool ends the session and so releases the lock.
            pool.close().await;
            return Err(migrate_error(e, newest_migration(&MIGRATOR)));
        }
        let rows = sqlx::query_as("SELECT id, name, name_key FROM users")
            .fetch_all(&pool)
            .await?;
        for (id, name, key) in stale_name_keys(rows) {
            let updated = sqlx::query("UPDATE users SET name_key = $1 WHERE id = $2")
                .bind(&key)
                .bind(id)
                .execute(&pool)
                .await;
            match updated {
                Err(e) if is_unique_violation(&e) => name_key_clash(&name),
                other => {
                    other?;
                }
            }
        }
        let mut tx = pool.begin().await?;
        lock_writes(&mut tx).await?;
        add_missing_groups(&mut tx).await?;
        tx.commit().await?;
        Ok(PostgresStore {
            pool,
            options,
            node: OnceLock::new(),
        })
    }

    /// The pool the store uses.
    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// How the store connects (the node's own connections start from it).
    pub(crate) fn options(&self) -> &PgConnectOptions {
        &self.options
    }

    /// Makes writes wait for the acknowledgements of the other nodes.
    pub(crate) fn attach(&self, node: Arc<Node>) {
        let _ = self.node.set(node);
    }

    /// After the commit of a change [`invalidate`] logged: numbers it (see
    /// [`number`]), then waits (rule 4) until the other nodes acknowledged
    /// it, or `T` plus a margin passed. When it cannot be numbered, waits the
    /// whole time: every node's next check numbers it first.
    async fn settle(&self, _: Logged) {
        let end = number(&self.pool).await;
        let numbered = coherence::now();
        if let Some(node) = self.node.get() {
            match end {
                Ok(seq) => node.settle(seq, numbered).await,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot number a change for the other nodes; waiting the full sync lease");
                    node.settle(u64::MAX, numbered).await;
                }
            }
        }
    }

    /// After the commit of a change that is logged but not waited for:
    /// numbers it, so that the other nodes hear of it now rather than at
    /// their next check.
    async fn publish(&self, _: Logged) {
        if let Err(e) = number(&self.pool).await {
            tracing::warn!(error = %e, "cannot number a change for the other nodes; their next check will");
        }
    }
}

/// See [`super::inspect`].
pub(super) async fn inspect(url: &str) -> Result<super::DatabaseState, StoreError> {
    use sqlx::Connection;
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| anyhow::Error::new(e).context("invalid PostgreSQL URL"))?
        .application_name("latchkey check-config");
    let mut conn = tokio::time::timeout(ACQUIRE_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| anyhow::anyhow!("the PostgreSQL server did not answer in time"))?
        .map_err(|e| anyhow::Error::new(e).context("cannot connect to the PostgreSQL database"))?;
    let has = |table: &'static str| {
        sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL").bind(table)
    };
    let applied = if has("_sqlx_migrations").fetch_one(&mut conn).await? {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&mut conn)
            .await?
    } else {
        Vec::new()
    };
    let fingerprint = if has("settings").fetch_one(&mut conn).await? {
        sqlx::query_scalar("SELECT value FROM settings WHERE name = 'secret_fingerprint'")
            .fetch_optional(&mut conn)
            .await?
    } else {
        None
    };
    let _ = sqlx::Connection::close(conn).await;
    Ok(super::DatabaseState {
        applied,
        known: MIGRATOR.iter().map(|m| m.version).collect(),
        fingerprint,
    })
}

/// Proof that a change appended to the invalidation log; spent by
/// [`PostgresStore::settle`] or [`PostgresStore::publish`] after the commit.
#[must_use = "after the commit, settle or publish the change"]
struct Logged;

/// Appends what changed to the invalidation log's pending entries, in the
/// caller's transaction (no lock: writers commit in parallel).
async fn invalidate(
    conn: &mut PgConnection,
    what: coherence::Invalidation,
) -> Result<Logged, StoreError> {
    let (kind, target) = what.columns();
    invalidate_many(conn, kind, &target.into_iter().collect::<Vec<_>>()).await
}

/// Like [`invalidate`] for one entry of `kind` per target.
async fn invalidate_many(
    conn: &mut PgConnection,
    kind: &str,
    targets: &[i64],
) -> Result<Logged, StoreError> {
    sqlx::query("SELECT latchkey_invalidate($1, $2)")
        .bind(kind)
        .bind(targets)
        .execute(&mut *conn)
        .await?;
    crate::metrics::METRICS
        .invalidations_sent
        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Ok(Logged)
}

/// Numbers every committed pending log entry (densely, in a short
/// transaction of its own) and notifies the nodes; returns the log's end,
/// at least the number of every entry committed before the call.
pub(crate) async fn number<'c, E: Executor<'c, Database = Postgres>>(
    conn: E,
) -> Result<u64, sqlx::Error> {
    let end: i64 = sqlx::query_scalar("SELECT latchkey_number()")
        .fetch_one(conn)
        .await?;
    Ok(u64::try_from(end).unwrap_or(0))
}

/// Writes a change's audit entry (in the caller's transaction).
async fn insert_audit(
    conn: &mut PgConnection,
    ctx: &AuditContext,
    record: &AuditRecord,
) -> Result<(), StoreError> {
    let (time, actor, action, target, address, details) = record.columns(ctx);
    sqlx::query(
        "INSERT INTO audit (time, actor, action, target, address, details) \
         VALUES ($1, $2, $3, $4, $5, $6::jsonb)",
    )
    .bind(time)
    .bind(actor)
    .bind(action)
    .bind(target)
    .bind(address)
    .bind(details)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The permission with this id.
async fn fetch_permission(
    conn: &mut PgConnection,
    id: PermissionId,
) -> Result<Option<Permission>, StoreError> {
    let row: Option<PermissionRow> =
        sqlx::query_as(&format!("SELECT {PERMISSION_COLUMNS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(Permission::try_from).transpose()
}

/// Every permission, ordered by id.
async fn load_permissions(conn: &mut PgConnection) -> Result<Vec<Permission>, StoreError> {
    let rows: Vec<PermissionRow> =
        sqlx::query_as(&format!("SELECT {PERMISSION_COLUMNS} ORDER BY id"))
            .fetch_all(&mut *conn)
            .await?;
    rows.into_iter().map(Permission::try_from).collect()
}

/// Administrators who can log in, by the policy over the stored permissions.
/// Callers hold [`USER_WRITE_LOCK`] (see [`lock_and_count_admins`]).
async fn admins(conn: &mut PgConnection) -> Result<usize, StoreError> {
    let permissions = load_permissions(conn).await?;
    let users: Vec<AdminRow> = sqlx::query_as(ADMIN_ROWS).fetch_all(&mut *conn).await?;
    count_admins(permissions, users)
}

/// The names in the groups table.
async fn group_names(conn: &mut PgConnection) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT name FROM groups")
        .fetch_all(&mut *conn)
        .await?)
}

/// The stored spelling of a group's name.
async fn group_name(conn: &mut PgConnection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT name FROM groups WHERE name_key = $1")
            .bind(name_key(name))
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Adds groups to the groups table (those already there are kept).
async fn insert_groups(conn: &mut PgConnection, names: &[String]) -> Result<(), StoreError> {
    for name in names {
        sqlx::query(
            "INSERT INTO groups (name, name_key, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name_key) DO NOTHING",
        )
        .bind(name)
        .bind(name_key(name))
        .bind(unix_now())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// A user's requested groups in their stored form, creating unknown groups.
async fn store_groups(conn: &mut PgConnection, requested: &[String]) -> Result<String, StoreError> {
    let (groups, new) = resolve_groups(requested, &group_names(conn).await?);
    insert_groups(conn, &new).await?;
    Ok(encode_groups(&groups))
}

/// Every user's `(id, name, groups)`.
async fn memberships(conn: &mut PgConnection) -> Result<Vec<(i64, String, String)>, StoreError> {
    Ok(sqlx::query_as("SELECT id, name, groups FROM users")
        .fetch_all(&mut *conn)
        .await?)
}

/// Rewrites a user's groups column.
async fn write_groups(conn: &mut PgConnection, id: i64, groups: &str) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET groups = $1 WHERE id = $2")
        .bind(groups)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Makes exactly the users in `members` (names) members of `group`;
/// [`StoreError::UnknownUser`] for a member who does not exist. With
/// `only_add`, nobody is removed.
async fn set_members(
    conn: &mut PgConnection,
    group: &str,
    members: &[String],
    only_add: bool,
) -> Result<(), StoreError> {
    let users = memberships(conn).await?;
    let keys: std::collections::HashSet<String> =
        users.iter().map(|(_, n, _)| name_key(n)).collect();
    if let Some(unknown) = members.iter().find(|m| !keys.contains(&name_key(m))) {
        return Err(StoreError::UnknownUser(unknown.clone()));
    }
    let wanted: std::collections::HashSet<String> = members.iter().map(|m| name_key(m)).collect();
    for (id, name, groups) in users {
        let member = wanted.contains(&name_key(&name));
        if only_add && !member {
            continue;
        }
        if let Some(changed) = set_membership(&groups, group, member)? {
            write_groups(conn, id, &changed).await?;
        }
    }
    Ok(())
}

/// One group with its members.
async fn fetch_group(conn: &mut PgConnection, name: &str) -> Result<Group, StoreError> {
    let users = memberships(conn)
        .await?
        .into_iter()
        .map(|(_, n, g)| (n, g))
        .collect();
    groups_with_members(vec![name.to_owned()], users)?
        .pop()
        .ok_or_else(|| StoreError::Other(anyhow::anyhow!("group {name} vanished")))
}

/// Adds the groups users name that the groups table lacks (databases made
/// before groups were stored; the name keys need Unicode folding).
async fn add_missing_groups(conn: &mut PgConnection) -> Result<(), StoreError> {
    let groups: Vec<String> = sqlx::query_scalar("SELECT groups FROM users")
        .fetch_all(&mut *conn)
        .await?;
    let missing = missing_groups(&group_names(conn).await?, groups)?;
    insert_groups(conn, &missing).await
}

/// Takes [`USER_WRITE_LOCK`] for the transaction, then counts administrators:
/// every write to users, groups and permissions holds it, so two concurrent
/// demotions cannot both see the other administrator remain.
async fn lock_and_count_admins(conn: &mut PgConnection) -> Result<usize, StoreError> {
    lock_writes(conn).await?;
    admins(conn).await
}

/// Takes [`USER_WRITE_LOCK`] for the transaction.
async fn lock_writes(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(USER_WRITE_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Adds one access-log entry.
async fn insert_access(conn: &mut PgConnection, e: &AccessRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO access_log (key_id, time_ms, method, path, status, duration_ms, address, \
         user_agent, verdict, request_body, response_body, truncated) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(e.key_id)
    .bind(e.time_ms)
    .bind(&e.method)
    .bind(&e.path)
    .bind(e.status)
    .bind(e.duration_ms)
    .bind(&e.address)
    .bind(&e.user_agent)
    .bind(&e.verdict)
    .bind(&e.request_body)
    .bind(&e.response_body)
    .bind(e.truncated)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn fetch_key<'e, E: Executor<'e, Database = Postgres>>(
    exec: E,
    id: KeyId,
) -> Result<Option<StoredKey>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} WHERE k.id = $1");
    let row: Option<KeyRow> = sqlx::query_as(&sql).bind(id).fetch_optional(exec).await?;
    row.map(StoredKey::try_from).transpose()
}

async fn fetch_user<'e, E: Executor<'e, Database = Postgres>>(
    exec: E,
    name: &str,
) -> Result<Option<UserLogin>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} WHERE name_key = $1");
    let row: Option<UserRow> = sqlx::query_as(&sql)
        .bind(name_key(name))
        .fetch_optional(exec)
        .await?;
    row.map(UserLogin::try_from).transpose()
}

/// Inserts a user; the caller maps unique violations.
async fn insert_user<'e, E: Executor<'e, Database = Postgres>>(
    exec: E,
    user: &UserChange,
    groups: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO users (name, name_key, display_name, email, groups, password_hash, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&user.name)
    .bind(name_key(&user.name))
    .bind(&user.display_name)
    .bind(&user.email)
    .bind(groups)
    .bind(user.password_hash.as_deref().unwrap_or_default())
    .bind(unix_now())
    .execute(exec)
    .await?;
    Ok(())
}

#[async_trait]
impl Store for PostgresStore {
    async fn ping(&self) -> Result<(), StoreError> {
        // The hot path's reads: a key by its digest, a user by name, each
        // through its unique index (a missing table or a broken index fails).
        sqlx::query("SELECT id FROM api_keys WHERE digest = $1")
            .bind(&[0u8; 32][..])
            .fetch_optional(&self.pool)
            .await?;
        sqlx::query("SELECT id FROM users WHERE name_key = $1")
            .bind("")
            .fetch_optional(&self.pool)
            .await?;
        Ok(())
    }

    async fn key_by_digest(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<Arc<StoredKey>>, StoreError> {
        let row: Option<KeyRow> = sqlx::query_as(&BY_DIGEST)
            .bind(digest.as_bytes().as_slice())
            .bind(unix_now())
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(StoredKey::try_from).transpose()?.map(Arc::new))
    }

    async fn key_by_id(&self, id: KeyId) -> Result<Option<StoredKey>, StoreError> {
        fetch_key(&self.pool, id).await
    }

    async fn list_keys(&self, owner: Option<UserId>) -> Result<Vec<StoredKey>, StoreError> {
        let rows: Vec<KeyRow> = match owner {
            None => {
                sqlx::query_as(&format!("SELECT {KEY_COLUMNS} ORDER BY k.id"))
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(user) => {
                sqlx::query_as(&format!(
                    "SELECT {KEY_COLUMNS} WHERE k.user_id = $1 AND k.key_type = 'personal' ORDER BY k.id"
                ))
                .bind(user)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.into_iter().map(StoredKey::try_from).collect()
    }

    async fn keys_after(&self, after: KeyId, limit: u32) -> Result<Vec<StoredKey>, StoreError> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} WHERE k.id > $1 ORDER BY k.id LIMIT $2"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(StoredKey::try_from).collect()
    }

    async fn create_key(&self, audit: &AuditContext, key: NewKey) -> Result<StoredKey, StoreError> {
        let key_owner = key.user_id;
        let mut tx = self.pool.begin().await?;
        if let (Some(cap), Some(owner)) = (key.personal_cap, key.user_id) {
            // The owner's row lock serialises concurrent creates for one owner.
            sqlx::query("SELECT id FROM users WHERE id = $1 FOR UPDATE")
                .bind(owner)
                .execute(&mut *tx)
                .await?;
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM api_keys WHERE user_id = $1 AND key_type = 'personal'",
            )
            .bind(owner)
            .fetch_one(&mut *tx)
            .await?;
            if held >= i64::from(cap) {
                return Err(StoreError::TooManyKeys);
            }
        }
        let inserted = sqlx::query_scalar::<_, i32>(
            "INSERT INTO api_keys (digest, key_type, display_name, description, system_apis, \
             package_permissions, feed, feed_group, expiration, logging, user_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) RETURNING id",
        )
        .bind(key.digest.as_bytes().as_slice())
        .bind(key.key_type.as_str())
        .bind(&key.display_name)
        .bind(&key.description)
        .bind(join_values(&key.system_apis, |v| v.as_str()))
        .bind(join_values(&key.package_permissions, |v| v.as_str()))
        .bind(&key.feed)
        .bind(&key.feed_group)
        .bind(key.expiration.map(|t| t.unix_timestamp()))
        .bind(key.logging.as_str())
        .bind(key.user_id)
        .bind(unix_now())
        .fetch_one(&mut *tx)
        .await;
        let id = match inserted {
            Ok(id) => id,
            Err(e) if is_unique_violation(&e) => return Err(StoreError::DuplicateKey),
            Err(e) => return Err(e.into()),
        };
        let stored = fetch_key(&mut *tx, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("key {id} vanished while being created"))?;
        insert_audit(&mut tx, audit, &AuditRecord::key_created(&stored)).await?;
        // Other nodes' cached lists of the owner's keys must show it.
        let logged = match key_owner {
            Some(owner) => Some(invalidate(&mut tx, Invalidation::KeysOf(owner)).await?),
            None => None,
        };
        tx.commit().await?;
        if let Some(logged) = logged {
            self.settle(logged).await;
        }
        Ok(stored)
    }

    async fn replace_digest(&self, id: KeyId, digest: &KeyDigest) -> Result<(), StoreError> {
        // Logged for the other nodes' caches, not waited for: the key stays
        // valid under both secrets while the rotation lasts.
        let mut tx = self.pool.begin().await?;
        sqlx::query("UPDATE api_keys SET digest = $1 WHERE id = $2")
            .bind(digest.as_bytes().as_slice())
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let logged = invalidate(&mut tx, Invalidation::Key(id)).await?;
        tx.commit().await?;
        self.publish(logged).await;
        Ok(())
    }

    async fn rotate_key(
        &self,
        audit: &AuditContext,
        id: KeyId,
        digest: &KeyDigest,
        grace_until: Option<time::OffsetDateTime>,
    ) -> Result<Option<StoredKey>, StoreError> {
        let grace = grace_until.map(|t| t.unix_timestamp());
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(&rotate_sql(|n| format!("${n}")))
            .bind(digest.as_bytes().as_slice())
            .bind(grace)
            .bind(id)
            .execute(&mut *tx)
            .await;
        match done {
            Ok(d) if d.rows_affected() == 1 => {}
            Ok(_) => return Ok(None),
            Err(e) if is_unique_violation(&e) => return Err(StoreError::DuplicateKey),
            Err(e) => return Err(e.into()),
        }
        let stored = fetch_key(&mut *tx, id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("key {id} vanished while being rotated"))?;
        insert_audit(&mut tx, audit, &AuditRecord::key_rotated(audit, id, grace)).await?;
        // The old text narrows away: every node must drop it before the 200.
        let logged = invalidate(&mut tx, Invalidation::Key(id)).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(Some(stored))
    }

    async fn delete_key(&self, audit: &AuditContext, id: KeyId) -> Result<bool, StoreError> {
        // Concurrent deletes of one row: the second waits for the first's
        // row lock, then finds nothing, so exactly one sees a row affected
        // (and writes the audit entry).
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit, &AuditRecord::key_deleted(audit, id)).await?;
        let logged = invalidate(&mut tx, Invalidation::Key(id)).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(true)
    }

    async fn user_login(&self, name: &str) -> Result<Option<UserLogin>, StoreError> {
        fetch_user(&self.pool, name).await
    }

    async fn list_users(&self, search: Option<&str>) -> Result<Vec<User>, StoreError> {
        // COLLATE "C": byte order, the same order SQLite gives.
        let rows: Vec<UserRow> = match search.filter(|s| !s.is_empty()) {
            None => {
                sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} ORDER BY name_key COLLATE \"C\""
                ))
                .fetch_all(&self.pool)
                .await?
            }
            Some(term) => {
                sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} WHERE strpos(name_key, $1) > 0 \
                     OR strpos(lower(coalesce(display_name, '')), $1) > 0 \
                     OR strpos(lower(coalesce(email, '')), $1) > 0 \
                     ORDER BY name_key COLLATE \"C\""
                ))
                .bind(term.to_lowercase())
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.into_iter()
            .map(|r| UserLogin::try_from(r).map(|l| l.user))
            .collect()
    }

    async fn create_user(
        &self,
        audit: &AuditContext,
        user: UserChange,
    ) -> Result<User, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_writes(&mut tx).await?;
        let groups = store_groups(&mut tx, user.groups.as_deref().unwrap_or_default()).await?;
        match insert_user(&mut *tx, &user, &groups).await {
            Ok(()) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::DuplicateUser),
            Err(e) => return Err(e.into()),
        }
        let created = fetch_user(&mut *tx, &user.name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("user vanished while being created"))?;
        insert_audit(&mut tx, audit, &AuditRecord::user_added(&created.user)).await?;
        let logged = invalidate(&mut tx, Invalidation::Security).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(created.user)
    }

    async fn update_user(
        &self,
        audit: &AuditContext,
        change: UserChange,
    ) -> Result<Option<User>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let before = lock_and_count_admins(&mut tx).await?;
        let Some(old) = fetch_user(&mut *tx, &change.name).await? else {
            return Ok(None);
        };
        let groups = match change.groups.as_deref() {
            Some(requested) => Some(store_groups(&mut tx, requested).await?),
            None => None,
        };
        let done = sqlx::query(
            "UPDATE users SET display_name = coalesce($1, display_name), email = coalesce($2, email), \
             groups = coalesce($3, groups), password_hash = coalesce($4, password_hash) \
             WHERE name_key = $5",
        )
        .bind(&change.display_name)
        .bind(&change.email)
        .bind(groups)
        .bind(&change.password_hash)
        .bind(name_key(&change.name))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(None);
        }
        check_admins(before, admins(&mut tx).await?)?;
        let updated = fetch_user(&mut *tx, &change.name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("user vanished while being updated"))?;
        let record =
            AuditRecord::user_edited(&old.user, &updated.user, change.password_hash.is_some());
        insert_audit(&mut tx, audit, &record).await?;
        // Names, groups and password hashes are copied into cached keys and logins.
        let logged = invalidate(&mut tx, Invalidation::All).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(Some(updated.user))
    }

    async fn delete_user(&self, audit: &AuditContext, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let before = lock_and_count_admins(&mut tx).await?;
        let key = name_key(name);
        // Lock the user row first so that a personal key created for this
        // user concurrently either commits before (and is deleted here) or
        // fails on the foreign key afterwards.
        let found: Option<(UserId, String)> =
            sqlx::query_as("SELECT id, name FROM users WHERE name_key = $1 FOR UPDATE")
                .bind(&key)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((user_id, stored_name)) = found else {
            return Ok(false);
        };
        let keys = sqlx::query("DELETE FROM api_keys WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM permissions WHERE user_key = $1")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        check_admins(before, admins(&mut tx).await?)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let record = AuditRecord::user_deleted(&stored_name, keys);
        insert_audit(&mut tx, audit, &record).await?;
        let logged = invalidate(&mut tx, Invalidation::All).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(true)
    }

    async fn has_users(&self) -> Result<bool, StoreError> {
        let any: Option<i32> = sqlx::query_scalar("SELECT 1 FROM users LIMIT 1")
            .fetch_optional(&self.pool)
            .await?;
        Ok(any.is_some())
    }

    async fn create_first_user(
        &self,
        audit: &AuditContext,
        user: UserChange,
    ) -> Result<bool, StoreError> {
        // Under READ COMMITTED, `INSERT … WHERE NOT EXISTS` alone lets two
        // nodes starting at once both insert; the lock makes the second wait
        // and then see the first's committed user.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(FIRST_USER_LOCK)
            .execute(&mut *tx)
            .await?;
        let any: Option<i32> = sqlx::query_scalar("SELECT 1 FROM users LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
        if any.is_some() {
            return Ok(false);
        }
        let groups = store_groups(&mut tx, user.groups.as_deref().unwrap_or_default()).await?;
        match insert_user(&mut *tx, &user, &groups).await {
            Ok(()) => {}
            // A user of that name was added through the API meanwhile: users exist.
            Err(e) if is_unique_violation(&e) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        let created = fetch_user(&mut *tx, &user.name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("user vanished while being created"))?;
        insert_audit(&mut tx, audit, &AuditRecord::user_added(&created.user)).await?;
        let logged = invalidate(&mut tx, Invalidation::Security).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(true)
    }

    async fn security(&self) -> Result<std::sync::Arc<SecurityModel>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let permissions = load_permissions(&mut conn).await?;
        Ok(std::sync::Arc::new(SecurityModel::new(permissions)))
    }

    async fn add_permission(
        &self,
        audit: &AuditContext,
        permission: NewPermission,
    ) -> Result<Permission, StoreError> {
        let mut tx = self.pool.begin().await?;
        let before = lock_and_count_admins(&mut tx).await?;
        let subject = match &permission.subject {
            Subject::User(n) if is_anonymous(n) => Subject::User(ANONYMOUS.to_owned()),
            Subject::User(n) => {
                let found: Option<String> =
                    sqlx::query_scalar("SELECT name FROM users WHERE name_key = $1")
                        .bind(name_key(n))
                        .fetch_optional(&mut *tx)
                        .await?;
                Subject::User(found.ok_or_else(|| StoreError::UnknownUser(n.clone()))?)
            }
            Subject::Group(n) => Subject::Group(
                group_name(&mut tx, n)
                    .await?
                    .ok_or_else(|| StoreError::UnknownGroup(n.clone()))?,
            ),
        };
        let permission = NewPermission {
            subject,
            ..permission
        };
        let (user, user_key, group, group_key, task, feed, feed_group) =
            permission_columns(&permission);
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO permissions (user_name, user_key, group_name, group_key, task, feed, \
             feed_group, deny) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(user)
        .bind(user_key)
        .bind(group)
        .bind(group_key)
        .bind(task)
        .bind(feed)
        .bind(feed_group)
        .bind(permission.deny)
        .fetch_one(&mut *tx)
        .await?;
        check_admins(before, admins(&mut tx).await?)?;
        let added = permission.with_id(id);
        insert_audit(
            &mut tx,
            audit,
            &AuditRecord::permission("permission.add", &added),
        )
        .await?;
        // A deny narrows.
        let logged = invalidate(&mut tx, Invalidation::Security).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(added)
    }

    async fn delete_permission(
        &self,
        audit: &AuditContext,
        id: PermissionId,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let before = lock_and_count_admins(&mut tx).await?;
        let Some(old) = fetch_permission(&mut tx, id).await? else {
            return Ok(false);
        };
        let done = sqlx::query("DELETE FROM permissions WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        check_admins(before, admins(&mut tx).await?)?;
        let record = AuditRecord::permission("permission.delete", &old);
        insert_audit(&mut tx, audit, &record).await?;
        let logged = invalidate(&mut tx, Invalidation::Security).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(true)
    }

    async fn list_groups(&self) -> Result<Vec<Group>, StoreError> {
        // One snapshot: the groups and the memberships agree.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *tx)
            .await?;
        let groups = group_names(&mut tx).await?;
        let users = memberships(&mut tx)
            .await?
            .into_iter()
            .map(|(_, n, g)| (n, g))
            .collect();
        groups_with_members(groups, users)
    }

    async fn create_group(&self, audit: &AuditContext, group: Group) -> Result<Group, StoreError> {
        let mut tx = self.pool.begin().await?;
        lock_writes(&mut tx).await?;
        let inserted =
            sqlx::query("INSERT INTO groups (name, name_key, created_at) VALUES ($1, $2, $3)")
                .bind(&group.name)
                .bind(name_key(&group.name))
                .bind(unix_now())
                .execute(&mut *tx)
                .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::DuplicateGroup),
            Err(e) => return Err(e.into()),
        }
        set_members(&mut tx, &group.name, &group.members, true).await?;
        let created = fetch_group(&mut tx, &group.name).await?;
        insert_audit(&mut tx, audit, &AuditRecord::group_added(&created)).await?;
        // Members' groups are copied into cached keys and logins.
        let logged = invalidate(&mut tx, Invalidation::All).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(created)
    }

    async fn edit_group(
        &self,
        audit: &AuditContext,
        group: Group,
    ) -> Result<Option<Group>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let before = lock_and_count_admins(&mut tx).await?;
        let Some(name) = group_name(&mut tx, &group.name).await? else {
            return Ok(None);
        };
        let old = fetch_group(&mut tx, &name).await?;
        set_members(&mut tx, &name, &group.members, false).await?;
        check_admins(before, admins(&mut tx).await?)?;
        let edited = fetch_group(&mut tx, &name).await?;
        insert_audit(&mut tx, audit, &AuditRecord::group_edited(&old, &edited)).await?;
        let logged = invalidate(&mut tx, Invalidation::All).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(Some(edited))
    }

    async fn delete_group(&self, audit: &AuditContext, name: &str) -> Result<bool, StoreError> {
        if is_administrators(name) {
            return Err(StoreError::ProtectedGroup);
        }
        let mut tx = self.pool.begin().await?;
        let before = lock_and_count_admins(&mut tx).await?;
        let Some(name) = group_name(&mut tx, name).await? else {
            return Ok(false);
        };
        let old = fetch_group(&mut tx, &name).await?;
        set_members(&mut tx, &name, &[], false).await?;
        let key = name_key(&name);
        let permissions = sqlx::query("DELETE FROM permissions WHERE group_key = $1")
            .bind(&key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM groups WHERE name_key = $1")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        check_admins(before, admins(&mut tx).await?)?;
        let record = AuditRecord::group_deleted(&old, permissions);
        insert_audit(&mut tx, audit, &record).await?;
        let logged = invalidate(&mut tx, Invalidation::All).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(true)
    }

    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        if batch.uses.is_empty() && batch.entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        if !batch.uses.is_empty() {
            // One statement for the whole batch; GREATEST over nodes: a
            // node's older use never overwrites another node's newer one.
            let ids: Vec<i32> = batch.uses.iter().map(|u| u.key).collect();
            let ats: Vec<i64> = batch.uses.iter().map(|u| u.at).collect();
            let froms: Vec<Option<String>> = batch.uses.iter().map(|u| u.from.clone()).collect();
            // Rows are locked in id order first: two nodes writing
            // overlapping batches then wait for each other, never deadlock
            // (the UPDATE's join would lock them in plan order).
            sqlx::query("SELECT id FROM api_keys WHERE id = ANY($1) ORDER BY id FOR UPDATE")
                .bind(&ids)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "UPDATE api_keys k SET last_used = u.at, last_used_from = u.from_addr \
                 FROM unnest($1::int[], $2::bigint[], $3::text[]) AS u(id, at, from_addr) \
                 WHERE k.id = u.id AND (k.last_used IS NULL OR k.last_used < u.at)",
            )
            .bind(&ids)
            .bind(ats)
            .bind(froms)
            .execute(&mut *tx)
            .await?;
        }
        for e in &batch.entries {
            insert_access(&mut tx, e).await?;
        }
        let mut logged = None;
        if !batch.uses.is_empty() {
            // Cached keys and lists carry the last use; not narrowing, not waited for.
            let ids: Vec<i64> = batch.uses.iter().map(|u| i64::from(u.key)).collect();
            logged = Some(invalidate_many(&mut tx, Invalidation::Key(0).columns().0, &ids).await?);
        }
        tx.commit().await?;
        if let Some(logged) = logged {
            self.publish(logged).await;
        }
        Ok(())
    }

    async fn access_log(
        &self,
        key: KeyId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredAccess>, StoreError> {
        let rows = sqlx::query_as(&format!(
            "SELECT {ACCESS_COLUMNS} WHERE key_id = $1 AND id < $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(key)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    async fn prune_access_log(
        &self,
        older_than_ms: i64,
        max_per_key: u32,
        batch: u32,
    ) -> Result<u64, StoreError> {
        let batch = i64::from(batch);
        let mut deleted = sqlx::query(
            "DELETE FROM access_log WHERE id IN \
             (SELECT id FROM access_log WHERE time_ms < $1 ORDER BY time_ms LIMIT $2)",
        )
        .bind(older_than_ms)
        .bind(batch)
        .execute(&self.pool)
        .await?
        .rows_affected();
        let crowded: Vec<i32> = sqlx::query_scalar(
            "SELECT key_id FROM access_log GROUP BY key_id HAVING count(*) > $1 LIMIT 16",
        )
        .bind(i64::from(max_per_key))
        .fetch_all(&self.pool)
        .await?;
        for key in crowded {
            let Some(oldest_kept): Option<i64> = sqlx::query_scalar(
                "SELECT id FROM access_log WHERE key_id = $1 ORDER BY id DESC LIMIT 1 OFFSET $2",
            )
            .bind(key)
            .bind(i64::from(max_per_key) - 1)
            .fetch_optional(&self.pool)
            .await?
            else {
                continue;
            };
            deleted += sqlx::query(
                "DELETE FROM access_log WHERE id IN (SELECT id FROM access_log \
                 WHERE key_id = $1 AND id < $2 ORDER BY id LIMIT $3)",
            )
            .bind(key)
            .bind(oldest_kept)
            .bind(batch)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        Ok(deleted)
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let value = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(value)
    }

    async fn insert_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        let stored = sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
            .bind(name)
            .fetch_one(&self.pool)
            .await?;
        Ok(stored)
    }

    async fn replace_setting(
        &self,
        audit: &AuditContext,
        name: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE settings SET value = $3 WHERE name = $1 AND value = $2")
            .bind(name)
            .bind(old)
            .bind(new)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit, &AuditRecord::setting_replaced(name)).await?;
        // The installation secret: every cached digest is under the old one.
        let logged = invalidate(&mut tx, Invalidation::All).await?;
        tx.commit().await?;
        self.settle(logged).await;
        Ok(true)
    }

    async fn record_audit(
        &self,
        audit: &AuditContext,
        action: &'static str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        insert_audit(
            &mut conn,
            audit,
            &AuditRecord::other(action, target, details),
        )
        .await
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = super::audit_list_sql(query, "details::text", |n| format!("${n}"));
        let mut q = sqlx::query_as::<_, AuditRow>(&sql);
        if let Some(before) = query.before {
            q = q.bind(before);
        }
        if let Some(target) = &query.target {
            q = q.bind(target);
        }
        if let Some(action) = &query.action {
            q = q.bind(action);
        }
        let rows = q.bind(i64::from(query.limit)).fetch_all(&self.pool).await?;
        rows.into_iter().map(AuditEntry::try_from).collect()
    }

    async fn prune_audit(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM audit WHERE id IN \
             (SELECT id FROM audit WHERE time < $1 ORDER BY id LIMIT $2)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn create_session(&self, session: &super::ConsoleSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sessions (digest, user_id, user_name, user_stamp, created_at, last_seen) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&session.digest)
        .bind(session.user_id)
        .bind(&session.user_name)
        .bind(&session.user_stamp)
        .bind(session.created_at)
        .bind(session.last_seen)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn session(&self, digest: &[u8]) -> Result<Option<super::ConsoleSession>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT digest, user_id, user_name, user_stamp, created_at, last_seen \
             FROM console_sessions WHERE digest = $1",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn touch_session(&self, digest: &[u8], at: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE console_sessions SET last_seen = greatest(last_seen, $1) WHERE digest = $2",
        )
        .bind(at)
        .bind(digest)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_session(&self, digest: &[u8]) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE digest = $1")
            .bind(digest)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn prune_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM console_sessions WHERE last_seen < $1 OR created_at < $2")
                .bind(idle_before)
                .bind(created_before)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    async fn search_keys(&self, query: &super::KeySearch) -> Result<Vec<StoredKey>, StoreError> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} WHERE k.id > $1 \
             AND ($2::BIGINT IS NULL OR (k.user_id = $2 AND k.key_type = 'personal')) \
             AND ($3::TEXT IS NULL OR lower(coalesce(k.display_name, '')) LIKE $3 ESCAPE '\\' \
                  OR coalesce(u.name_key, '') LIKE $3 ESCAPE '\\' \
                  OR lower(coalesce(k.feed, '')) LIKE $3 ESCAPE '\\') \
             ORDER BY k.id LIMIT $4"
        ))
        .bind(query.after)
        .bind(query.owner)
        .bind(query.pattern())
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(StoredKey::try_from).collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
