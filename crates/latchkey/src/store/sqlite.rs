//! The embedded default: SQLite in WAL mode with `synchronous=FULL`; writes go
//! through one writer connection, reads through a pool.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use proget_api::AuditEntry;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Executor, Sqlite, SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use super::{
    check_admins, count_admins, encode_groups, groups_with_members, is_administrators,
    is_anonymous, is_unique_violation, join_values, key_by_digest_sql, migrate_error,
    missing_groups, name_key_clash, newest_migration, permission_columns, resolve_groups,
    rotate_sql, set_membership, stale_name_keys, unix_now, AccessRecord, AdminRow, AuditRecord,
    AuditRow, JsonPage, KeyRow, PermissionRow, Store, StoreError, StoredAccess, UsageBatch,
    UserRow, ACCESS_COLUMNS, ADMIN_ROWS, KEY_COLUMNS, PERMISSION_COLUMNS, USER_COLUMNS,
};
use crate::domain::{
    name_key, AuditContext, AuditQuery, Group, KeyDigest, KeyId, NewKey, NewPermission, Permission,
    PermissionId, SecurityModel, StoredKey, Subject, User, UserChange, UserId, UserLogin,
    ANONYMOUS,
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// One page of the listing as JSON, written by SQLite: one row per page.
/// Each object is concatenated from its present members only (the wire
/// format omits null members; building the object with `json_object` and
/// stripping its nulls with `json_patch` cost twice as much). Strings go
/// through `json_quote`, the quoting `json_object` uses; a comma-separated
/// column becomes a JSON array of strings (its values need no escaping).
const KEY_PAGE_JSON: &str = r#"
SELECT group_concat(j, ',' ORDER BY id), max(id), count(*) FROM (
  SELECT k.id AS id, '{"id":' || k.id
    || ',"type":' || json_quote(k.key_type)
    || iif(k.display_name IS NULL, '', ',"displayName":' || json_quote(k.display_name))
    || iif(k.description IS NULL, '', ',"description":' || json_quote(k.description))
    || iif(k.key_type = 'system', ',"systemApis":['
        || iif(k.system_apis = '', '', '"' || replace(k.system_apis, ',', '","') || '"') || ']', '')
    || iif(k.key_type = 'feed', ',"packagePermissions":['
        || iif(k.package_permissions = '', '', '"' || replace(k.package_permissions, ',', '","') || '"') || ']', '')
    || iif(k.feed IS NULL, '', ',"feed":' || json_quote(k.feed))
    || iif(k.feed_group IS NULL, '', ',"feedGroup":' || json_quote(k.feed_group))
    || iif(k.expiration IS NULL, '',
        ',"expiration":"' || strftime('%Y-%m-%dT%H:%M:%SZ', k.expiration, 'unixepoch') || '"')
    || ',"logging":' || json_quote(k.logging)
    || iif(u.name IS NULL, '', ',"user":' || json_quote(u.name))
    || iif(k.last_used IS NULL, '',
        ',"lastUsed":"' || strftime('%Y-%m-%dT%H:%M:%SZ', k.last_used, 'unixepoch') || '"')
    || iif(k.last_used_from IS NULL, '', ',"lastUsedFrom":' || json_quote(k.last_used_from))
    || ',"created":"' || strftime('%Y-%m-%dT%H:%M:%SZ', k.created_at, 'unixepoch') || '"'
    || iif(k.grace_until IS NULL OR k.grace_until <= unixepoch(), '',
        ',"graceUntil":"' || strftime('%Y-%m-%dT%H:%M:%SZ', k.grace_until, 'unixepoch') || '"')
    || '}' AS j
  FROM api_keys k LEFT JOIN users u ON u.id = k.user_id
  WHERE k.id > ? ORDER BY k.id LIMIT ?)
"#;

/// [`key_by_digest_sql`] with SQLite's parameters, written once.
static BY_DIGEST: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| key_by_digest_sql(|n| format!("?{n}")));

/// SQLite storage.
pub struct SqliteStore {
    writer: SqlitePool,
    readers: SqlitePool,
    deletes: mpsc::Sender<DeleteRequest>,
}

/// A key id to delete, the delete's audit context and where to send the outcome.
type DeleteRequest = (KeyId, AuditContext, oneshot::Sender<Result<bool, String>>);

/// Most deletes committed in one transaction.
const MAX_DELETE_BATCH: usize = 512;

/// Group commit for deletes: the deletes that queue up while one transaction
/// commits go into the next one, so that `synchronous=FULL` costs one fsync
/// per batch instead of one per delete. Nobody is answered before the
/// transaction holding their delete has committed.
async fn delete_batcher(writer: SqlitePool, mut requests: mpsc::Receiver<DeleteRequest>) {
    let mut batch = Vec::with_capacity(MAX_DELETE_BATCH);
    while requests.recv_many(&mut batch, MAX_DELETE_BATCH).await > 0 {
        let outcome = delete_all(&writer, &batch).await;
        for (i, (_, _, reply)) in batch.drain(..).enumerate() {
            let _ = reply.send(match &outcome {
                Ok(deleted) => Ok(deleted[i]),
                Err(e) => Err(format!("{e:#}")),
            });
        }
    }
}

/// Deletes every id in one transaction, each with its `apikey.delete` entry
/// in that transaction; `deleted[i]` tells whether `batch[i]` removed a row.
async fn delete_all(writer: &SqlitePool, batch: &[DeleteRequest]) -> anyhow::Result<Vec<bool>> {
    let mut tx = writer.begin().await?;
    let mut deleted = Vec::with_capacity(batch.len());
    for (id, audit, _) in batch {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let gone = done.rows_affected() == 1;
        if gone {
            insert_audit(&mut tx, audit, &AuditRecord::key_deleted(audit, *id)).await?;
        }
        deleted.push(gone);
    }
    tx.commit().await?;
    Ok(deleted)
}

impl SqliteStore {
    /// Opens (creating if missing) the database at `url` and migrates it.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::Error::new(e).context("invalid SQLite URL"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(|e| anyhow::Error::new(e).context("cannot open the SQLite database"))?;
        quick_check(&writer).await?;
        // sqlx takes no lock for SQLite migrations: when two processes start on a
        // new file at once, the loser fails on the tables the winner just made.
        // A second run then finds those migrations applied.
        let mut attempt = 0;
        loop {
            match MIGRATOR.run(&writer).await {
                Ok(()) => break,
                Err(
                    sqlx::migrate::MigrateError::Execute(_)
                    | sqlx::migrate::MigrateError::ExecuteMigration(..),
                ) if attempt < 3 => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50 * attempt)).await;
                }
                Err(e) => return Err(migrate_error(e, newest_migration(&MIGRATOR))),
            }
        }
        let rows = sqlx::query_as("SELECT id, name, name_key FROM users")
            .fetch_all(&writer)
            .await?;
        for (id, name, key) in stale_name_keys(rows) {
            let updated = sqlx::query("UPDATE users SET name_key = ? WHERE id = ?")
                .bind(&key)
                .bind(id)
                .execute(&writer)
                .await;
            match updated {
                Err(e) if is_unique_violation(&e) => name_key_clash(&name),
                other => {
                    other?;
                }
            }
        }
        add_missing_groups(&mut *writer.acquire().await?).await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .connect_with(options.read_only(true).row_buffer_size(1024))
            .await
            .map_err(|e| anyhow::Error::new(e).context("cannot open the SQLite database"))?;
        let (deletes, queue) = mpsc::channel(4 * MAX_DELETE_BATCH);
        tokio::spawn(delete_batcher(writer.clone(), queue));
        Ok(SqliteStore {
            writer,
            readers,
            deletes,
        })
    }
}

/// Runs `PRAGMA quick_check`: a corrupt file is refused at start rather than
/// failing request after request.
/// See [`super::inspect`].
pub(super) async fn inspect(url: &str) -> Result<Option<super::DatabaseState>, StoreError> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| anyhow::Error::new(e).context("invalid SQLite URL"))?;
    if !options.get_filename().exists() {
        return Ok(None);
    }
    let pool = SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(options.read_only(true))
        .await
        .map_err(|e| anyhow::Error::new(e).context("cannot open the SQLite database"))?;
    let state = async {
        quick_check(&pool).await?;
        let has = |table: &'static str| {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?",
            )
            .bind(table)
            .fetch_one(&pool)
        };
        let applied = if has("_sqlx_migrations").await? > 0 {
            sqlx::query_scalar(
                "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
            )
            .fetch_all(&pool)
            .await?
        } else {
            Vec::new()
        };
        let fingerprint = if has("settings").await? > 0 {
            sqlx::query_scalar("SELECT value FROM settings WHERE name = 'secret_fingerprint'")
                .fetch_optional(&pool)
                .await?
        } else {
            None
        };
        Ok::<_, StoreError>(super::DatabaseState {
            applied,
            known: MIGRATOR.iter().map(|m| m.version).collect(),
            fingerprint,
        })
    }
    .await;
    pool.close().await;
    state.map(Some)
}

async fn quick_check(writer: &SqlitePool) -> Result<(), StoreError> {
    let corrupt = |detail: String| {
        StoreError::Other(anyhow::anyhow!(
            "the SQLite database is corrupt (quick_check: {detail}); restore it from a backup"
        ))
    };
    let found: Vec<String> = sqlx::query_scalar("PRAGMA quick_check(5)")
        .fetch_all(writer)
        .await
        .map_err(|e| corrupt(e.to_string()))?;
    if found.len() == 1 && found[0] == "ok" {
        return Ok(());
    }
    Err(corrupt(found.join("; ").replace('\n', " ")))
}

/// Writes a change's audit entry (in the caller's transaction).
async fn insert_audit(
    conn: &mut SqliteConnection,
    ctx: &AuditContext,
    record: &AuditRecord,
) -> Result<(), StoreError> {
    let (time, actor, action, target, address, details) = record.columns(ctx);
    sqlx::query(
        "INSERT INTO audit (time, actor, action, target, address, details) VALUES (?, ?, ?, ?, ?, ?)",
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
    conn: &mut SqliteConnection,
    id: PermissionId,
) -> Result<Option<Permission>, StoreError> {
    let row: Option<PermissionRow> =
        sqlx::query_as(&format!("SELECT {PERMISSION_COLUMNS} WHERE id = ?"))
            .bind(id)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(Permission::try_from).transpose()
}

/// Every permission, ordered by id.
async fn load_permissions(conn: &mut SqliteConnection) -> Result<Vec<Permission>, StoreError> {
    let rows: Vec<PermissionRow> =
        sqlx::query_as(&format!("SELECT {PERMISSION_COLUMNS} ORDER BY id"))
            .fetch_all(&mut *conn)
            .await?;
    rows.into_iter().map(Permission::try_from).collect()
}

/// Administrators who can log in, by the policy over the stored permissions.
/// One writer connection: writes are serialised, so the count cannot change
/// under the transaction that reads it.
async fn admins(conn: &mut SqliteConnection) -> Result<usize, StoreError> {
    let permissions = load_permissions(conn).await?;
    let users: Vec<AdminRow> = sqlx::query_as(ADMIN_ROWS).fetch_all(&mut *conn).await?;
    count_admins(permissions, users)
}

/// The names in the groups table.
async fn group_names(conn: &mut SqliteConnection) -> Result<Vec<String>, StoreError> {
    Ok(sqlx::query_scalar("SELECT name FROM groups")
        .fetch_all(&mut *conn)
        .await?)
}

/// The stored spelling of a group's name.
async fn group_name(conn: &mut SqliteConnection, name: &str) -> Result<Option<String>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT name FROM groups WHERE name_key = ?")
            .bind(name_key(name))
            .fetch_optional(&mut *conn)
            .await?,
    )
}

/// Adds groups to the groups table (those already there are kept).
async fn insert_groups(conn: &mut SqliteConnection, names: &[String]) -> Result<(), StoreError> {
    for name in names {
        sqlx::query(
            "INSERT INTO groups (name, name_key, created_at) VALUES (?, ?, ?) \
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
async fn store_groups(
    conn: &mut SqliteConnection,
    requested: &[String],
) -> Result<String, StoreError> {
    let (groups, new) = resolve_groups(requested, &group_names(conn).await?);
    insert_groups(conn, &new).await?;
    Ok(encode_groups(&groups))
}

/// Every user's `(id, name, groups)`.
async fn memberships(
    conn: &mut SqliteConnection,
) -> Result<Vec<(i64, String, String)>, StoreError> {
    Ok(sqlx::query_as("SELECT id, name, groups FROM users")
        .fetch_all(&mut *conn)
        .await?)
}

/// Rewrites a user's groups column.
async fn write_groups(
    conn: &mut SqliteConnection,
    id: i64,
    groups: &str,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE users SET groups = ? WHERE id = ?")
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
    conn: &mut SqliteConnection,
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
async fn fetch_group(conn: &mut SqliteConnection, name: &str) -> Result<Group, StoreError> {
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
async fn add_missing_groups(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let groups: Vec<String> = sqlx::query_scalar("SELECT groups FROM users")
        .fetch_all(&mut *conn)
        .await?;
    let missing = missing_groups(&group_names(conn).await?, groups)?;
    insert_groups(conn, &missing).await
}

/// Adds one access-log entry.
async fn insert_access(conn: &mut SqliteConnection, e: &AccessRecord) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO access_log (key_id, time_ms, method, path, status, duration_ms, address, \
         user_agent, verdict, request_body, response_body, truncated) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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

async fn fetch_key<'e, E: Executor<'e, Database = Sqlite>>(
    exec: E,
    id: KeyId,
) -> Result<Option<StoredKey>, StoreError> {
    let sql = format!("SELECT {KEY_COLUMNS} WHERE k.id = ?");
    let row: Option<KeyRow> = sqlx::query_as(&sql).bind(id).fetch_optional(exec).await?;
    row.map(StoredKey::try_from).transpose()
}

async fn fetch_user<'e, E: Executor<'e, Database = Sqlite>>(
    exec: E,
    name: &str,
) -> Result<Option<UserLogin>, StoreError> {
    let sql = format!("SELECT {USER_COLUMNS} WHERE name_key = ?");
    let row: Option<UserRow> = sqlx::query_as(&sql)
        .bind(name_key(name))
        .fetch_optional(exec)
        .await?;
    row.map(UserLogin::try_from).transpose()
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        // The hot path's reads: a key by its digest, a user by name, each
        // through its unique index (a missing table or a broken index fails).
        sqlx::query("SELECT id FROM api_keys WHERE digest = ?1")
            .bind(&[0u8; 32][..])
            .fetch_optional(&self.readers)
            .await?;
        sqlx::query("SELECT id FROM users WHERE name_key = ?1")
            .bind("")
            .fetch_optional(&self.readers)
            .await?;
        Ok(())
    }

    async fn key_by_digest(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<Arc<StoredKey>>, StoreError> {
        // One look-up through the two unique indexes (current and previous text).
        let row: Option<KeyRow> = sqlx::query_as(&BY_DIGEST)
            .bind(digest.as_bytes().as_slice())
            .bind(unix_now())
            .fetch_optional(&self.readers)
            .await?;
        Ok(row.map(StoredKey::try_from).transpose()?.map(Arc::new))
    }

    async fn key_by_id(&self, id: KeyId) -> Result<Option<StoredKey>, StoreError> {
        fetch_key(&self.readers, id).await
    }

    async fn list_keys(&self, owner: Option<UserId>) -> Result<Vec<StoredKey>, StoreError> {
        let rows: Vec<KeyRow> = match owner {
            None => {
                sqlx::query_as(&format!("SELECT {KEY_COLUMNS} ORDER BY k.id"))
                    .fetch_all(&self.readers)
                    .await?
            }
            Some(user) => {
                sqlx::query_as(&format!(
                    "SELECT {KEY_COLUMNS} WHERE k.user_id = ? AND k.key_type = 'personal' ORDER BY k.id"
                ))
                .bind(user)
                .fetch_all(&self.readers)
                .await?
            }
        };
        rows.into_iter().map(StoredKey::try_from).collect()
    }

    async fn keys_after(&self, after: KeyId, limit: u32) -> Result<Vec<StoredKey>, StoreError> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} WHERE k.id > ? ORDER BY k.id LIMIT ?"
        ))
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(StoredKey::try_from).collect()
    }

    async fn key_page_json(&self, after: KeyId, limit: u32) -> Result<JsonPage, StoreError> {
        // sqlx hands every row from its SQLite worker thread to the caller on
        // its own: one row per page makes long listings several times faster.
        // Pinned to the Rust serialisation by a store test.
        let row: (Option<String>, Option<i32>, i64) = sqlx::query_as(KEY_PAGE_JSON)
            .bind(after)
            .bind(i64::from(limit))
            .fetch_one(&self.readers)
            .await?;
        Ok(JsonPage {
            items: row.0.unwrap_or_default(),
            last: row.1,
            count: usize::try_from(row.2).unwrap_or(0),
        })
    }

    async fn create_key(&self, audit: &AuditContext, key: NewKey) -> Result<StoredKey, StoreError> {
        let mut tx = self.writer.begin().await?;
        if let (Some(cap), Some(owner)) = (key.personal_cap, key.user_id) {
            // One writer connection: creates are serialised, the count holds.
            let held: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM api_keys WHERE user_id = ? AND key_type = 'personal'",
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
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        tx.commit().await?;
        Ok(stored)
    }

    async fn replace_digest(&self, id: KeyId, digest: &KeyDigest) -> Result<(), StoreError> {
        sqlx::query("UPDATE api_keys SET digest = ? WHERE id = ?")
            .bind(digest.as_bytes().as_slice())
            .bind(id)
            .execute(&self.writer)
            .await?;
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
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(&rotate_sql(|n| format!("?{n}")))
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
        tx.commit().await?;
        Ok(Some(stored))
    }

    async fn delete_key(&self, audit: &AuditContext, id: KeyId) -> Result<bool, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let gone = || anyhow::anyhow!("the delete writer has stopped");
        self.deletes
            .send((id, audit.clone(), reply))
            .await
            .map_err(|_| gone())?;
        let deleted = outcome.await.map_err(|_| gone())?;
        deleted.map_err(|e| StoreError::Other(anyhow::anyhow!("delete failed: {e}")))
    }

    async fn user_login(&self, name: &str) -> Result<Option<UserLogin>, StoreError> {
        fetch_user(&self.readers, name).await
    }

    async fn list_users(&self, search: Option<&str>) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = match search.filter(|s| !s.is_empty()) {
            None => {
                sqlx::query_as(&format!("SELECT {USER_COLUMNS} ORDER BY name_key"))
                    .fetch_all(&self.readers)
                    .await?
            }
            Some(term) => {
                sqlx::query_as(&format!(
                    "SELECT {USER_COLUMNS} WHERE instr(name_key, ?1) > 0 \
                     OR instr(lower(coalesce(display_name, '')), ?1) > 0 \
                     OR instr(lower(coalesce(email, '')), ?1) > 0 ORDER BY name_key"
                ))
                .bind(term.to_lowercase())
                .fetch_all(&self.readers)
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
        let mut tx = self.writer.begin().await?;
        let groups = store_groups(&mut tx, user.groups.as_deref().unwrap_or_default()).await?;
        let inserted = sqlx::query(
            "INSERT INTO users (name, name_key, display_name, email, groups, password_hash, created_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&user.name)
        .bind(name_key(&user.name))
        .bind(&user.display_name)
        .bind(&user.email)
        .bind(groups)
        .bind(user.password_hash.as_deref().unwrap_or_default())
        .bind(unix_now())
        .execute(&mut *tx)
        .await;
        match inserted {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Err(StoreError::DuplicateUser),
            Err(e) => return Err(e.into()),
        }
        let created = fetch_user(&mut *tx, &user.name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("user vanished while being created"))?;
        insert_audit(&mut tx, audit, &AuditRecord::user_added(&created.user)).await?;
        tx.commit().await?;
        Ok(created.user)
    }

    async fn update_user(
        &self,
        audit: &AuditContext,
        change: UserChange,
    ) -> Result<Option<User>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let before = admins(&mut tx).await?;
        let Some(old) = fetch_user(&mut *tx, &change.name).await? else {
            return Ok(None);
        };
        let groups = match change.groups.as_deref() {
            Some(requested) => Some(store_groups(&mut tx, requested).await?),
            None => None,
        };
        let done = sqlx::query(
            "UPDATE users SET display_name = coalesce(?, display_name), email = coalesce(?, email), \
             groups = coalesce(?, groups), password_hash = coalesce(?, password_hash) WHERE name_key = ?",
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
        tx.commit().await?;
        Ok(Some(updated.user))
    }

    async fn delete_user(&self, audit: &AuditContext, name: &str) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let before = admins(&mut tx).await?;
        let key = name_key(name);
        let Some(user) = fetch_user(&mut *tx, name).await? else {
            return Ok(false);
        };
        let keys = sqlx::query(
            "DELETE FROM api_keys WHERE user_id IN (SELECT id FROM users WHERE name_key = ?)",
        )
        .bind(&key)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let done = sqlx::query("DELETE FROM users WHERE name_key = ?")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM permissions WHERE user_key = ?")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        check_admins(before, admins(&mut tx).await?)?;
        let record = AuditRecord::user_deleted(&user.user.name, keys);
        insert_audit(&mut tx, audit, &record).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn has_users(&self) -> Result<bool, StoreError> {
        let any: Option<i64> = sqlx::query_scalar("SELECT 1 FROM users LIMIT 1")
            .fetch_optional(&self.readers)
            .await?;
        Ok(any.is_some())
    }

    async fn create_first_user(
        &self,
        audit: &AuditContext,
        user: UserChange,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query(
            "INSERT INTO users (name, name_key, display_name, email, groups, password_hash, created_at) \
             SELECT ?, ?, ?, ?, ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM users)",
        )
        .bind(&user.name)
        .bind(name_key(&user.name))
        .bind(&user.display_name)
        .bind(&user.email)
        .bind(encode_groups(user.groups.as_deref().unwrap_or_default()))
        .bind(user.password_hash.as_deref().unwrap_or_default())
        .bind(unix_now())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let created = fetch_user(&mut *tx, &user.name)
            .await?
            .ok_or_else(|| anyhow::anyhow!("user vanished while being created"))?;
        insert_audit(&mut tx, audit, &AuditRecord::user_added(&created.user)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn security(&self) -> Result<std::sync::Arc<SecurityModel>, StoreError> {
        let mut conn = self.readers.acquire().await?;
        let permissions = load_permissions(&mut conn).await?;
        Ok(std::sync::Arc::new(SecurityModel::new(permissions)))
    }

    async fn add_permission(
        &self,
        audit: &AuditContext,
        permission: NewPermission,
    ) -> Result<Permission, StoreError> {
        let mut tx = self.writer.begin().await?;
        let before = admins(&mut tx).await?;
        let subject = match &permission.subject {
            Subject::User(n) if is_anonymous(n) => Subject::User(ANONYMOUS.to_owned()),
            Subject::User(n) => {
                let found: Option<String> =
                    sqlx::query_scalar("SELECT name FROM users WHERE name_key = ?")
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
             feed_group, deny) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
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
        tx.commit().await?;
        Ok(added)
    }

    async fn delete_permission(
        &self,
        audit: &AuditContext,
        id: PermissionId,
    ) -> Result<bool, StoreError> {
        let mut tx = self.writer.begin().await?;
        let before = admins(&mut tx).await?;
        let Some(old) = fetch_permission(&mut tx, id).await? else {
            return Ok(false);
        };
        let done = sqlx::query("DELETE FROM permissions WHERE id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        check_admins(before, admins(&mut tx).await?)?;
        let record = AuditRecord::permission("permission.delete", &old);
        insert_audit(&mut tx, audit, &record).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn list_groups(&self) -> Result<Vec<Group>, StoreError> {
        // One snapshot: the groups and the memberships agree.
        let mut tx = self.readers.begin().await?;
        let groups = group_names(&mut tx).await?;
        let users = memberships(&mut tx)
            .await?
            .into_iter()
            .map(|(_, n, g)| (n, g))
            .collect();
        groups_with_members(groups, users)
    }

    async fn create_group(&self, audit: &AuditContext, group: Group) -> Result<Group, StoreError> {
        let mut tx = self.writer.begin().await?;
        let inserted =
            sqlx::query("INSERT INTO groups (name, name_key, created_at) VALUES (?, ?, ?)")
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
        tx.commit().await?;
        Ok(created)
    }

    async fn edit_group(
        &self,
        audit: &AuditContext,
        group: Group,
    ) -> Result<Option<Group>, StoreError> {
        let mut tx = self.writer.begin().await?;
        let before = admins(&mut tx).await?;
        let Some(name) = group_name(&mut tx, &group.name).await? else {
            return Ok(None);
        };
        let old = fetch_group(&mut tx, &name).await?;
        set_members(&mut tx, &name, &group.members, false).await?;
        check_admins(before, admins(&mut tx).await?)?;
        let edited = fetch_group(&mut tx, &name).await?;
        insert_audit(&mut tx, audit, &AuditRecord::group_edited(&old, &edited)).await?;
        tx.commit().await?;
        Ok(Some(edited))
    }

    async fn delete_group(&self, audit: &AuditContext, name: &str) -> Result<bool, StoreError> {
        if is_administrators(name) {
            return Err(StoreError::ProtectedGroup);
        }
        let mut tx = self.writer.begin().await?;
        let before = admins(&mut tx).await?;
        let Some(name) = group_name(&mut tx, name).await? else {
            return Ok(false);
        };
        let old = fetch_group(&mut tx, &name).await?;
        set_members(&mut tx, &name, &[], false).await?;
        let key = name_key(&name);
        let permissions = sqlx::query("DELETE FROM permissions WHERE group_key = ?")
            .bind(&key)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM groups WHERE name_key = ?")
            .bind(&key)
            .execute(&mut *tx)
            .await?;
        check_admins(before, admins(&mut tx).await?)?;
        let record = AuditRecord::group_deleted(&old, permissions);
        insert_audit(&mut tx, audit, &record).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        if batch.uses.is_empty() && batch.entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.writer.begin().await?;
        for u in &batch.uses {
            sqlx::query(
                "UPDATE api_keys SET last_used = ?1, last_used_from = ?2 \
                 WHERE id = ?3 AND (last_used IS NULL OR last_used < ?1)",
            )
            .bind(u.at)
            .bind(&u.from)
            .bind(u.key)
            .execute(&mut *tx)
            .await?;
        }
        for e in &batch.entries {
            insert_access(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn access_log(
        &self,
        key: KeyId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredAccess>, StoreError> {
        let rows = sqlx::query_as(&format!(
            "SELECT {ACCESS_COLUMNS} WHERE key_id = ? AND id < ? ORDER BY id DESC LIMIT ?"
        ))
        .bind(key)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
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
             (SELECT id FROM access_log WHERE time_ms < ? ORDER BY time_ms LIMIT ?)",
        )
        .bind(older_than_ms)
        .bind(batch)
        .execute(&self.writer)
        .await?
        .rows_affected();
        let crowded: Vec<i64> = sqlx::query_scalar(
            "SELECT key_id FROM access_log GROUP BY key_id HAVING count(*) > ? LIMIT 16",
        )
        .bind(i64::from(max_per_key))
        .fetch_all(&self.readers)
        .await?;
        for key in crowded {
            let Some(oldest_kept): Option<i64> = sqlx::query_scalar(
                "SELECT id FROM access_log WHERE key_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?",
            )
            .bind(key)
            .bind(i64::from(max_per_key) - 1)
            .fetch_optional(&self.readers)
            .await?
            else {
                continue;
            };
            deleted += sqlx::query(
                "DELETE FROM access_log WHERE id IN (SELECT id FROM access_log \
                 WHERE key_id = ? AND id < ? ORDER BY id LIMIT ?)",
            )
            .bind(key)
            .bind(oldest_kept)
            .bind(batch)
            .execute(&self.writer)
            .await?
            .rows_affected();
        }
        Ok(deleted)
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        let value = sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.writer)
            .await?;
        Ok(value)
    }

    async fn insert_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(value)
        .execute(&self.writer)
        .await?;
        let stored = sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_one(&self.writer)
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
        let mut tx = self.writer.begin().await?;
        let done = sqlx::query("UPDATE settings SET value = ?3 WHERE name = ?1 AND value = ?2")
            .bind(name)
            .bind(old)
            .bind(new)
            .execute(&mut *tx)
            .await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_audit(&mut tx, audit, &AuditRecord::setting_replaced(name)).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn record_audit(
        &self,
        audit: &AuditContext,
        action: &'static str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        let mut conn = self.writer.acquire().await?;
        insert_audit(
            &mut conn,
            audit,
            &AuditRecord::other(action, target, details),
        )
        .await
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = super::audit_list_sql(query, "details", |_| "?".into());
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
        let rows = q
            .bind(i64::from(query.limit))
            .fetch_all(&self.readers)
            .await?;
        rows.into_iter().map(AuditEntry::try_from).collect()
    }

    async fn prune_audit(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE time < ? ORDER BY id LIMIT ?)",
        )
        .bind(before)
        .bind(i64::from(limit))
        .execute(&self.writer)
        .await?;
        Ok(done.rows_affected())
    }

    async fn create_session(&self, session: &super::ConsoleSession) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO console_sessions (digest, user_id, user_name, user_stamp, created_at, last_seen) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&session.digest)
        .bind(session.user_id)
        .bind(&session.user_name)
        .bind(&session.user_stamp)
        .bind(session.created_at)
        .bind(session.last_seen)
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    async fn session(&self, digest: &[u8]) -> Result<Option<super::ConsoleSession>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT digest, user_id, user_name, user_stamp, created_at, last_seen \
             FROM console_sessions WHERE digest = ?",
        )
        .bind(digest)
        .fetch_optional(&self.readers)
        .await?)
    }

    async fn touch_session(&self, digest: &[u8], at: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE console_sessions SET last_seen = max(last_seen, ?) WHERE digest = ?")
            .bind(at)
            .bind(digest)
            .execute(&self.writer)
            .await?;
        Ok(())
    }

    async fn delete_session(&self, digest: &[u8]) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM console_sessions WHERE digest = ?")
            .bind(digest)
            .execute(&self.writer)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn prune_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> Result<u64, StoreError> {
        let done =
            sqlx::query("DELETE FROM console_sessions WHERE last_seen < ? OR created_at < ?")
                .bind(idle_before)
                .bind(created_before)
                .execute(&self.writer)
                .await?;
        Ok(done.rows_affected())
    }

    async fn search_keys(&self, query: &super::KeySearch) -> Result<Vec<StoredKey>, StoreError> {
        let rows: Vec<KeyRow> = sqlx::query_as(&format!(
            "SELECT {KEY_COLUMNS} WHERE k.id > ?1 \
             AND (?2 IS NULL OR (k.user_id = ?2 AND k.key_type = 'personal')) \
             AND (?3 IS NULL OR lower(coalesce(k.display_name, '')) LIKE ?3 ESCAPE '\\' \
                  OR coalesce(u.name_key, '') LIKE ?3 ESCAPE '\\' \
                  OR lower(coalesce(k.feed, '')) LIKE ?3 ESCAPE '\\') \
             ORDER BY k.id LIMIT ?4"
        ))
        .bind(query.after)
        .bind(query.owner)
        .bind(query.pattern())
        .bind(i64::from(query.limit))
        .fetch_all(&self.readers)
        .await?;
        rows.into_iter().map(StoredKey::try_from).collect()
    }

    async fn close(&self) {
        self.writer.close().await;
        self.readers.close().await;
    }
}
