//! A read-through cache, so that verifying a key, listing a user's keys,
//! looking up a login and reading the permissions snapshot cost no database
//! round trip: in front of the embedded SQLite database, which only this
//! process writes, and in front of PostgreSQL on each of several nodes.
//!
//! Coherence: every write of this process goes through this type, which
//! invalidates after the inner store has committed and before it returns, so
//! a `200` is only sent once no entry can serve the old state. A fill races
//! with an invalidation only through the generation counter: a reader
//! remembers the generation before reading the database and stores its
//! result only if no invalidation happened meanwhile. Other processes'
//! writes (PostgreSQL) arrive through [`CachedStore::apply`] from the
//! node's invalidation log; the cache is read only while the node is in
//! sync ([`Node::trusted`]), and bypassed otherwise.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use axum::body::Bytes;
use time::OffsetDateTime;

use super::coherence::Invalidation;
use super::nodes::Node;
use super::{JsonPage, KeyUse, Store, StoreError, StoredAccess, UsageBatch};
use crate::domain::{
    name_key, AuditContext, AuditQuery, Group, KeyDigest, KeyId, NewKey, NewPermission, Permission,
    PermissionId, SecurityModel, StoredKey, User, UserChange, UserId, UserLogin,
};
use crate::metrics::{CacheKind, METRICS};
use proget_api::{ApiKeyInfo, AuditEntry};

/// Most entries of each kind before the cache starts over.
const MAX_ENTRIES: usize = 200_000;
/// Longest per-user key list worth caching.
const MAX_CACHED_LIST: usize = 100;

#[derive(Default)]
struct State {
    generation: u64,
    /// Keyed by HMAC digests, which no client can choose: a fast hash is safe.
    keys: rustc_hash::FxHashMap<KeyDigest, Arc<StoredKey>>,
    /// Where a key id appears, to invalidate by id.
    placed: HashMap<KeyId, Placement>,
    lists: HashMap<UserId, CachedList>,
    logins: HashMap<String, UserLogin>,
    /// Every permission, as the policy reads them; `None` until read.
    security: Option<Arc<SecurityModel>>,
}

/// A user's personal keys, and the same list serialised for the wire.
struct CachedList {
    keys: Vec<StoredKey>,
    json: Bytes,
}

#[derive(Default, Clone)]
struct Placement {
    /// The digests the key is cached under: its text and, during a
    /// rotation's grace period, its previous text.
    digests: Vec<KeyDigest>,
    list_owner: Option<UserId>,
}

impl State {
    fn forget_key(&mut self, id: KeyId) {
        if let Some(p) = self.placed.remove(&id) {
            for d in &p.digests {
                self.keys.remove(d);
            }
            if let Some(owner) = p.list_owner {
                self.lists.remove(&owner);
            }
        }
    }

    /// Carries a recorded use into the cached key (as the store's write did:
    /// only a later use replaces an earlier one), so that a verification never
    /// reads a key again for it; the owner's serialised list is dropped.
    fn note_use(&mut self, used: &KeyUse) {
        let Some(p) = self.placed.get(&used.key) else {
            return;
        };
        if let Some(owner) = p.list_owner {
            self.lists.remove(&owner);
        }
        let Ok(at) = OffsetDateTime::from_unix_timestamp(used.at) else {
            self.forget_key(used.key);
            return;
        };
        for d in &p.digests {
            if let Some(k) = self.keys.get_mut(d) {
                if k.usage.last_used.is_none_or(|t| t < at) {
                    let k = Arc::make_mut(k);
                    k.usage.last_used = Some(at);
                    k.usage.last_used_from.clone_from(&used.from);
                }
            }
        }
    }

    fn make_room(&mut self) {
        if self.keys.len() >= MAX_ENTRIES
            || self.placed.len() >= MAX_ENTRIES
            || self.lists.len() >= MAX_ENTRIES
            || self.logins.len() >= MAX_ENTRIES
        {
            let generation = self.generation;
            *self = State {
                generation,
                ..State::default()
            };
        }
    }
}

/// A caching decorator over a [`Store`].
pub struct CachedStore {
    inner: Arc<dyn Store>,
    state: RwLock<State>,
    /// The node whose lease says whether the cache may answer; `None`: this
    /// process is the database's only writer, the cache always may.
    node: Option<Arc<Node>>,
}

impl CachedStore {
    /// Wraps a store that only this process writes.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        CachedStore {
            inner,
            state: RwLock::new(State::default()),
            node: None,
        }
    }

    /// Wraps the store of one node of several, trusted only while `node` is in sync.
    pub(crate) fn coherent(inner: Arc<dyn Store>, node: Arc<Node>) -> Self {
        CachedStore {
            node: Some(node),
            ..CachedStore::new(inner)
        }
    }

    /// Whether cached entries may answer now.
    fn trusted(&self) -> bool {
        self.node.as_ref().is_none_or(|n| n.trusted())
    }

    /// Drops what another node's committed change made stale.
    pub(crate) fn apply(&self, what: Invalidation) {
        match what {
            Invalidation::Key(id) => self.invalidate(|s| s.forget_key(id)),
            Invalidation::KeysOf(user) => self.invalidate(|s| {
                s.lists.remove(&user);
            }),
            Invalidation::Security => self.invalidate(|s| s.security = None),
            Invalidation::All => self.start_over(),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a
        // way that matters (each update is a single insert or remove): recover.
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Invalidates after a committed write.
    fn invalidate(&self, change: impl FnOnce(&mut State)) {
        let mut s = self.write();
        s.generation += 1;
        change(&mut s);
    }

    /// Forgets everything: users' names and groups are copied into cached
    /// keys and logins, and the permissions decide who is an administrator.
    fn start_over(&self) {
        self.invalidate(|s| {
            *s = State {
                generation: s.generation,
                ..State::default()
            }
        });
    }

    /// A user's personal keys, from the cache or read (and cached) with their JSON.
    async fn cached_list(&self, user: UserId) -> Result<CachedList, StoreError> {
        let generation = {
            let s = self.read();
            if let Some(list) = s.lists.get(&user) {
                METRICS.cache(CacheKind::KeyLists, true);
                return Ok(CachedList {
                    keys: list.keys.clone(),
                    json: list.json.clone(),
                });
            }
            s.generation
        };
        METRICS.cache(CacheKind::KeyLists, false);
        let keys = self.inner.list_keys(Some(user)).await?;
        let infos: Vec<ApiKeyInfo> = keys.iter().cloned().map(ApiKeyInfo::from).collect();
        let json =
            Bytes::from(serde_json::to_vec(&infos).map_err(|e| StoreError::Other(e.into()))?);
        if keys.len() <= MAX_CACHED_LIST {
            self.fill(generation, |s| {
                for k in &keys {
                    s.placed.entry(k.id).or_default().list_owner = Some(user);
                }
                s.lists.insert(
                    user,
                    CachedList {
                        keys: keys.clone(),
                        json: json.clone(),
                    },
                );
            });
        }
        Ok(CachedList { keys, json })
    }

    /// Stores a fill unless an invalidation happened since `generation`.
    fn fill(&self, generation: u64, insert: impl FnOnce(&mut State)) {
        let mut s = self.write();
        if s.generation == generation {
            s.make_room();
            insert(&mut s);
        }
    }
}

#[async_trait]
impl Store for CachedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn key_by_digest(
        &self,
        digest: &KeyDigest,
    ) -> Result<Option<Arc<StoredKey>>, StoreError> {
        if !self.trusted() {
            METRICS.cache(CacheKind::Keys, false);
            return self.inner.key_by_digest(digest).await;
        }
        let generation = {
            let s = self.read();
            if let Some(k) = s.keys.get(digest) {
                METRICS.cache(CacheKind::Keys, true);
                return Ok(Some(Arc::clone(k)));
            }
            s.generation
        };
        METRICS.cache(CacheKind::Keys, false);
        let found = self.inner.key_by_digest(digest).await?;
        if let Some(k) = &found {
            self.fill(generation, |s| {
                s.keys.insert(*digest, Arc::clone(k));
                let digests = &mut s.placed.entry(k.id).or_default().digests;
                if !digests.contains(digest) {
                    digests.push(*digest);
                }
            });
        }
        Ok(found)
    }

    async fn key_by_id(&self, id: KeyId) -> Result<Option<StoredKey>, StoreError> {
        self.inner.key_by_id(id).await
    }

    async fn list_keys(&self, owner: Option<UserId>) -> Result<Vec<StoredKey>, StoreError> {
        match owner {
            Some(user) if self.trusted() => Ok(self.cached_list(user).await?.keys),
            owner => self.inner.list_keys(owner).await,
        }
    }

    async fn list_keys_json(&self, owner: UserId) -> Result<Bytes, StoreError> {
        if !self.trusted() {
            return self.inner.list_keys_json(owner).await;
        }
        {
            let s = self.read();
            if let Some(list) = s.lists.get(&owner) {
                // A reference count, not a copy.
                return Ok(list.json.clone());
            }
        }
        Ok(self.cached_list(owner).await?.json)
    }

    async fn keys_after(&self, after: KeyId, limit: u32) -> Result<Vec<StoredKey>, StoreError> {
        self.inner.keys_after(after, limit).await
    }

    async fn key_page_json(&self, after: KeyId, limit: u32) -> Result<JsonPage, StoreError> {
        self.inner.key_page_json(after, limit).await
    }

    async fn create_key(&self, audit: &AuditContext, key: NewKey) -> Result<StoredKey, StoreError> {
        let owner = key.user_id;
        let created = self.inner.create_key(audit, key).await;
        self.invalidate(|s| {
            if let Some(user) = owner {
                s.lists.remove(&user);
            }
        });
        created
    }

    async fn record_usage(&self, batch: &UsageBatch) -> Result<(), StoreError> {
        self.inner.record_usage(batch).await?;
        if !batch.uses.is_empty() {
            self.invalidate(|s| {
                for u in &batch.uses {
                    s.note_use(u);
                }
            });
        }
        Ok(())
    }

    async fn access_log(
        &self,
        key: KeyId,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<StoredAccess>, StoreError> {
        self.inner.access_log(key, before, limit).await
    }

    async fn prune_access_log(
        &self,
        older_than_ms: i64,
        max_per_key: u32,
        batch: u32,
    ) -> Result<u64, StoreError> {
        self.inner
            .prune_access_log(older_than_ms, max_per_key, batch)
            .await
    }

    async fn replace_digest(&self, id: KeyId, digest: &KeyDigest) -> Result<(), StoreError> {
        let done = self.inner.replace_digest(id, digest).await;
        self.invalidate(|s| s.forget_key(id));
        done
    }

    async fn rotate_key(
        &self,
        audit: &AuditContext,
        id: KeyId,
        digest: &KeyDigest,
        grace_until: Option<time::OffsetDateTime>,
    ) -> Result<Option<StoredKey>, StoreError> {
        let rotated = self.inner.rotate_key(audit, id, digest, grace_until).await;
        self.invalidate(|s| s.forget_key(id));
        rotated
    }

    async fn delete_key(&self, audit: &AuditContext, id: KeyId) -> Result<bool, StoreError> {
        let deleted = self.inner.delete_key(audit, id).await;
        self.invalidate(|s| s.forget_key(id));
        deleted
    }

    async fn user_login(&self, name: &str) -> Result<Option<UserLogin>, StoreError> {
        if !self.trusted() {
            METRICS.cache(CacheKind::Logins, false);
            return self.inner.user_login(name).await;
        }
        let name = name_key(name);
        let generation = {
            let s = self.read();
            if let Some(login) = s.logins.get(&name) {
                METRICS.cache(CacheKind::Logins, true);
                return Ok(Some(login.clone()));
            }
            s.generation
        };
        METRICS.cache(CacheKind::Logins, false);
        let found = self.inner.user_login(&name).await?;
        if let Some(login) = &found {
            self.fill(generation, |s| {
                s.logins.insert(name, login.clone());
            });
        }
        Ok(found)
    }

    async fn list_users(&self, search: Option<&str>) -> Result<Vec<User>, StoreError> {
        self.inner.list_users(search).await
    }

    async fn create_user(
        &self,
        audit: &AuditContext,
        user: UserChange,
    ) -> Result<User, StoreError> {
        // Nothing cached can mention a user that did not exist (only hits are
        // cached), but the user may have created groups.
        let created = self.inner.create_user(audit, user).await;
        self.invalidate(|s| s.security = None);
        created
    }

    async fn update_user(
        &self,
        audit: &AuditContext,
        change: UserChange,
    ) -> Result<Option<User>, StoreError> {
        // Groups (administrator or not) and names are copied into cached keys: start over.
        let updated = self.inner.update_user(audit, change).await;
        self.start_over();
        updated
    }

    async fn delete_user(&self, audit: &AuditContext, name: &str) -> Result<bool, StoreError> {
        let deleted = self.inner.delete_user(audit, name).await;
        self.start_over();
        deleted
    }

    async fn security(&self) -> Result<Arc<SecurityModel>, StoreError> {
        if !self.trusted() {
            METRICS.cache(CacheKind::Security, false);
            return self.inner.security().await;
        }
        let generation = {
            let s = self.read();
            if let Some(model) = &s.security {
                METRICS.cache(CacheKind::Security, true);
                return Ok(model.clone());
            }
            s.generation
        };
        METRICS.cache(CacheKind::Security, false);
        let model = self.inner.security().await?;
        self.fill(generation, |s| s.security = Some(model.clone()));
        Ok(model)
    }

    async fn add_permission(
        &self,
        audit: &AuditContext,
        permission: NewPermission,
    ) -> Result<Permission, StoreError> {
        let added = self.inner.add_permission(audit, permission).await;
        self.invalidate(|s| s.security = None);
        added
    }

    async fn delete_permission(
        &self,
        audit: &AuditContext,
        id: PermissionId,
    ) -> Result<bool, StoreError> {
        let deleted = self.inner.delete_permission(audit, id).await;
        self.invalidate(|s| s.security = None);
        deleted
    }

    async fn list_groups(&self) -> Result<Vec<Group>, StoreError> {
        self.inner.list_groups().await
    }

    async fn create_group(&self, audit: &AuditContext, group: Group) -> Result<Group, StoreError> {
        let created = self.inner.create_group(audit, group).await;
        self.start_over();
        created
    }

    async fn edit_group(
        &self,
        audit: &AuditContext,
        group: Group,
    ) -> Result<Option<Group>, StoreError> {
        let edited = self.inner.edit_group(audit, group).await;
        self.start_over();
        edited
    }

    async fn delete_group(&self, audit: &AuditContext, name: &str) -> Result<bool, StoreError> {
        let deleted = self.inner.delete_group(audit, name).await;
        self.start_over();
        deleted
    }

    async fn has_users(&self) -> Result<bool, StoreError> {
        self.inner.has_users().await
    }

    async fn create_first_user(
        &self,
        audit: &AuditContext,
        user: UserChange,
    ) -> Result<bool, StoreError> {
        let created = self.inner.create_first_user(audit, user).await;
        self.invalidate(|s| s.security = None);
        created
    }

    async fn setting(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.inner.setting(name).await
    }

    async fn insert_setting(&self, name: &str, value: &str) -> Result<String, StoreError> {
        self.inner.insert_setting(name, value).await
    }

    async fn replace_setting(
        &self,
        audit: &AuditContext,
        name: &str,
        old: &str,
        new: &str,
    ) -> Result<bool, StoreError> {
        self.inner.replace_setting(audit, name, old, new).await
    }

    async fn record_audit(
        &self,
        audit: &AuditContext,
        action: &'static str,
        target: &str,
        details: serde_json::Value,
    ) -> Result<(), StoreError> {
        self.inner
            .record_audit(audit, action, target, details)
            .await
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        self.inner.list_audit(query).await
    }

    async fn prune_audit(&self, before: i64, limit: u32) -> Result<u64, StoreError> {
        self.inner.prune_audit(before, limit).await
    }

    fn sync_detail(&self) -> Option<String> {
        self.node.as_ref().and_then(|n| n.detail())
    }

    async fn create_session(&self, session: &super::ConsoleSession) -> Result<(), StoreError> {
        self.inner.create_session(session).await
    }

    async fn session(&self, digest: &[u8]) -> Result<Option<super::ConsoleSession>, StoreError> {
        self.inner.session(digest).await
    }

    async fn touch_session(&self, digest: &[u8], at: i64) -> Result<(), StoreError> {
        self.inner.touch_session(digest, at).await
    }

    async fn delete_session(&self, digest: &[u8]) -> Result<bool, StoreError> {
        self.inner.delete_session(digest).await
    }

    async fn prune_sessions(
        &self,
        idle_before: i64,
        created_before: i64,
    ) -> Result<u64, StoreError> {
        self.inner.prune_sessions(idle_before, created_before).await
    }

    async fn search_keys(&self, query: &super::KeySearch) -> Result<Vec<StoredKey>, StoreError> {
        self.inner.search_keys(query).await
    }

    async fn close(&self) {
        if let Some(node) = &self.node {
            node.leave().await;
        }
        self.inner.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Digester;
    use crate::store::SqliteStore;
    use proget_api::{ApiKeyType, Logging, SystemApi};

    async fn open() -> (tempfile::TempDir, Arc<dyn Store>, CachedStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/t.db", dir.path().display());
        let inner: Arc<dyn Store> = Arc::new(SqliteStore::open(&url).await.unwrap());
        (dir, inner.clone(), CachedStore::new(inner))
    }

    fn system_key(digest: KeyDigest) -> NewKey {
        NewKey {
            digest,
            key_type: ApiKeyType::System,
            display_name: None,
            description: None,
            system_apis: vec![SystemApi::FullControl],
            package_permissions: vec![],
            feed: None,
            feed_group: None,
            expiration: None,
            logging: Logging::None,
            user_id: None,
            personal_cap: None,
        }
    }

    #[tokio::test]
    async fn a_deleted_key_is_gone_from_the_cache_when_delete_returns() {
        let (_dir, _inner, cache) = open().await;
        let digest = Digester::new(b"s").key("k");
        let key = cache
            .create_key(&crate::domain::AuditContext::SYSTEM, system_key(digest))
            .await
            .unwrap();
        assert!(cache.key_by_digest(&digest).await.unwrap().is_some());
        assert!(cache.read().keys.contains_key(&digest), "the hit is cached");
        assert!(cache
            .delete_key(&crate::domain::AuditContext::SYSTEM, key.id)
            .await
            .unwrap());
        assert_eq!(cache.key_by_digest(&digest).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_fill_that_raced_an_invalidation_is_dropped() {
        let (_dir, inner, cache) = open().await;
        let digest = Digester::new(b"s").key("k");
        let key = inner
            .create_key(&crate::domain::AuditContext::SYSTEM, system_key(digest))
            .await
            .unwrap();
        // A reader takes the generation and reads the key from the database...
        let generation = cache.read().generation;
        let stale = inner.key_by_digest(&digest).await.unwrap().unwrap();
        // ...a delete commits and invalidates meanwhile...
        assert!(cache
            .delete_key(&crate::domain::AuditContext::SYSTEM, key.id)
            .await
            .unwrap());
        // ...so the reader's late fill must not resurrect the key.
        cache.fill(generation, |s| {
            s.keys.insert(digest, stale.clone());
        });
        assert_eq!(cache.key_by_digest(&digest).await.unwrap(), None);
    }

    #[tokio::test]
    async fn user_changes_reach_cached_keys_and_logins() {
        let (_dir, _inner, cache) = open().await;
        let user = cache
            .create_user(
                &crate::domain::AuditContext::SYSTEM,
                UserChange {
                    name: "Alice".into(),
                    groups: Some(vec![]),
                    password_hash: Some("h1".into()),
                    ..UserChange::default()
                },
            )
            .await
            .unwrap();
        let digest = Digester::new(b"s").key("k");
        let mut personal = system_key(digest);
        personal.key_type = ApiKeyType::Personal;
        personal.system_apis = vec![];
        personal.user_id = Some(user.id);
        cache
            .create_key(&crate::domain::AuditContext::SYSTEM, personal)
            .await
            .unwrap();
        assert_eq!(cache.list_keys(Some(user.id)).await.unwrap().len(), 1);
        assert_eq!(
            cache
                .user_login("alice")
                .await
                .unwrap()
                .unwrap()
                .password_hash,
            "h1"
        );
        let cached = cache.key_by_digest(&digest).await.unwrap().unwrap();
        assert!(cached.user.clone().unwrap().groups.is_empty());

        cache
            .update_user(
                &crate::domain::AuditContext::SYSTEM,
                UserChange {
                    name: "alice".into(),
                    groups: Some(vec!["Administrators".into()]),
                    password_hash: Some("h2".into()),
                    ..UserChange::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            cache
                .user_login("ALICE")
                .await
                .unwrap()
                .unwrap()
                .password_hash,
            "h2"
        );
        let cached = cache.key_by_digest(&digest).await.unwrap().unwrap();
        assert!(
            cached.user.clone().unwrap().groups == ["Administrators"],
            "group changes reach cached keys"
        );

        // Another administrator, so that the store lets alice go.
        cache
            .create_user(
                &crate::domain::AuditContext::SYSTEM,
                UserChange {
                    name: "carol".into(),
                    groups: Some(vec!["Administrators".into()]),
                    password_hash: Some("h3".into()),
                    ..UserChange::default()
                },
            )
            .await
            .unwrap();
        cache
            .delete_user(&crate::domain::AuditContext::SYSTEM, "alice")
            .await
            .unwrap();
        assert!(cache.user_login("alice").await.unwrap().is_none());
        assert_eq!(cache.key_by_digest(&digest).await.unwrap(), None);
        assert!(cache.list_keys(Some(user.id)).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_new_personal_key_appears_in_its_owners_cached_list() {
        let (_dir, _inner, cache) = open().await;
        let user = cache
            .create_user(
                &crate::domain::AuditContext::SYSTEM,
                UserChange {
                    name: "bob".into(),
                    groups: Some(vec![]),
                    password_hash: Some("h".into()),
                    ..UserChange::default()
                },
            )
            .await
            .unwrap();
        assert!(cache.list_keys(Some(user.id)).await.unwrap().is_empty());
        let mut personal = system_key(Digester::new(b"s").key("k"));
        personal.key_type = ApiKeyType::Personal;
        personal.system_apis = vec![];
        personal.user_id = Some(user.id);
        let key = cache
            .create_key(&crate::domain::AuditContext::SYSTEM, personal)
            .await
            .unwrap();
        assert_eq!(
            cache.list_keys(Some(user.id)).await.unwrap(),
            vec![key.clone()]
        );
        let json = cache.list_keys_json(user.id).await.unwrap();
        let expected = serde_json::to_vec(&[ApiKeyInfo::from(key.clone())]).unwrap();
        assert_eq!(json, expected, "the wire form of the cached list");
        cache
            .delete_key(&crate::domain::AuditContext::SYSTEM, key.id)
            .await
            .unwrap();
        assert!(cache.list_keys(Some(user.id)).await.unwrap().is_empty());
        assert_eq!(cache.list_keys_json(user.id).await.unwrap(), &b"[]"[..]);
    }

    #[tokio::test]
    async fn a_recorded_use_reaches_the_cached_key_without_a_second_read() {
        let (_dir, inner, cache) = open().await;
        let digest = Digester::new(b"s").key("k");
        let key = cache
            .create_key(&crate::domain::AuditContext::SYSTEM, system_key(digest))
            .await
            .unwrap();
        let first = cache.key_by_digest(&digest).await.unwrap().unwrap();
        assert_eq!(first.usage.last_used, None);
        let used = |at, from: &str| UsageBatch {
            uses: vec![KeyUse {
                key: key.id,
                at,
                from: Some(from.into()),
            }],
            entries: vec![],
        };
        cache
            .record_usage(&used(1_700_000_060, "10.0.0.2"))
            .await
            .unwrap();
        // An earlier use (another batch, another node) never replaces a later one.
        cache
            .record_usage(&used(1_700_000_000, "10.0.0.1"))
            .await
            .unwrap();
        let expected = OffsetDateTime::from_unix_timestamp(1_700_000_060).unwrap();
        let cached = cache.read().keys.get(&digest).cloned();
        let cached = cached.expect("the key stays cached");
        assert_eq!(cached.usage.last_used, Some(expected));
        assert_eq!(cached.usage.last_used_from.as_deref(), Some("10.0.0.2"));
        let stored = inner.key_by_digest(&digest).await.unwrap().unwrap();
        assert_eq!(
            stored.usage, cached.usage,
            "the cache agrees with the database"
        );
        assert_eq!(
            first.usage.last_used, None,
            "a request's key is never changed under it"
        );
    }
}
