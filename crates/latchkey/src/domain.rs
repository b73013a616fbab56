//! Domain types shared by the policy (`keys`, `policy`) and persistence
//! (`store`): key and user ids, users and their name key, stored and new
//! keys, user changes, key digests and their [`Digester`], the principal a
//! request acts as, and ProGet's security model (tasks, permissions, groups).
//! It imports none of those modules.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use hmac::{Hmac, Mac};
use proget_api::{ApiKeyInfo, ApiKeyType, Logging, PackagePermission, SystemApi};
use sha2::Sha256;
use time::OffsetDateTime;

/// The id of an API key (ProGet's ids are 32-bit; the first key gets 1000).
pub type KeyId = i32;
/// The id of a user.
pub type UserId = i64;

/// The group that exists from the first start and holds `Administer` globally.
pub const ADMINISTRATORS: &str = "Administrators";
/// The special user a request without a credential acts as.
pub const ANONYMOUS: &str = "Anonymous";
/// The id of a permission.
pub type PermissionId = i64;

/// A user as stored (without the password hash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Storage id.
    pub id: UserId,
    /// Login name as spelled when created.
    pub name: String,
    /// Name shown to people.
    pub display_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// Group names.
    pub groups: Vec<String>,
}

/// A user together with their password hash, for logins.
#[derive(Debug, Clone)]
pub struct UserLogin {
    /// The user.
    pub user: User,
    /// Argon2id PHC string.
    pub password_hash: String,
}

/// An API key as stored: everything but the key text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Key id.
    pub id: KeyId,
    /// Kind of key.
    pub key_type: ApiKeyType,
    /// Name shown in lists.
    pub display_name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// System keys: allowed APIs.
    pub system_apis: Vec<SystemApi>,
    /// Feed keys: allowed package operations.
    pub package_permissions: Vec<PackagePermission>,
    /// Feed keys: the feed.
    pub feed: Option<String>,
    /// Feed keys: the feed group.
    pub feed_group: Option<String>,
    /// When the key stops working.
    pub expiration: Option<OffsetDateTime>,
    /// Request logging.
    pub logging: Logging,
    /// Personal keys: the user the key acts as.
    pub user: Option<User>,
    /// When the key was created and last used.
    pub usage: KeyUsage,
    /// After a rotation with a grace period: until when the previous text
    /// works (a key found by that text expires then).
    pub grace_until: Option<OffsetDateTime>,
}

/// When a key was created and when and from where it was last used
/// (recorded by [`crate::usage`], to within a minute).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyUsage {
    /// When the key was created.
    pub created: Option<OffsetDateTime>,
    /// When the key last authenticated successfully; `None` if never.
    pub last_used: Option<OffsetDateTime>,
    /// The client address of that use.
    pub last_used_from: Option<String>,
}

impl From<StoredKey> for ApiKeyInfo {
    /// The wire form of a stored key (never with key text).
    fn from(k: StoredKey) -> Self {
        ApiKeyInfo {
            id: Some(k.id),
            key_type: Some(k.key_type),
            key: None,
            display_name: k.display_name,
            description: k.description,
            system_apis: (k.key_type == ApiKeyType::System).then_some(k.system_apis),
            package_permissions: (k.key_type == ApiKeyType::Feed).then_some(k.package_permissions),
            feed: k.feed,
            feed_group: k.feed_group,
            expiration: k.expiration.map(proget_api::Expiration),
            logging: Some(k.logging),
            user: k.user.map(|u| u.name),
            last_used: k.usage.last_used.map(proget_api::Expiration),
            last_used_from: k.usage.last_used_from,
            created: k.usage.created.map(proget_api::Expiration),
            grace_until: k
                .grace_until
                .filter(|t| *t > OffsetDateTime::now_utc())
                .map(proget_api::Expiration),
        }
    }
}

/// HMAC-SHA-256 of a key under the installation secret: the only form in
/// which keys are stored.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyDigest([u8; 32]);

impl KeyDigest {
    /// The digest bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Debug for KeyDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyDigest({}…)", hex::encode(&self.0[..4]))
    }
}

/// Computes digests under the installation secret. The keyed HMAC state is
/// prepared once and cloned per digest.
#[derive(Clone)]
pub struct Digester {
    mac: Hmac<Sha256>,
}

impl Digester {
    /// A digester for an installation secret.
    pub fn new(secret: &[u8]) -> Self {
        let mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length"); // ok: infallible for HMAC
        Digester { mac }
    }

    /// The digest of a key text.
    pub fn key(&self, key: &str) -> KeyDigest {
        let mut mac = self.mac.clone();
        mac.update(key.as_bytes());
        KeyDigest(mac.finalize().into_bytes().into())
    }

    /// The digest of a login (user name and password), for the login cache.
    /// The leading NUL keeps it apart from key digests (keys hold no NUL).
    pub fn login(&self, name: &str, password: &str) -> KeyDigest {
        let mut mac = self.mac.clone();
        mac.update(b"\0login\0");
        mac.update(name.to_lowercase().as_bytes());
        mac.update(b"\0");
        mac.update(password.as_bytes());
        KeyDigest(mac.finalize().into_bytes().into())
    }
}

/// Who is making a request, once their credential is verified.
// One per request, built once and borrowed: boxing the key would only add
// an allocation to every key-authenticated request.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum Principal {
    /// An API key (a personal key acts as its user); shared with the cache,
    /// so that verifying a warm key copies nothing.
    Key(std::sync::Arc<StoredKey>),
    /// A user, by login or pseudo-key.
    User(User),
}

impl Principal {
    /// The id of the calling key, if the caller is a key.
    pub fn key_id(&self) -> Option<KeyId> {
        match self {
            Principal::Key(k) => Some(k.id),
            Principal::User(_) => None,
        }
    }

    /// The user the caller acts as: a login, a pseudo-key, or a personal key's owner.
    pub fn user(&self) -> Option<&User> {
        match self {
            Principal::Key(k) if k.key_type == ApiKeyType::Personal => k.user.as_ref(),
            Principal::Key(_) => None,
            Principal::User(u) => Some(u),
        }
    }
}

/// A key to be created.
#[derive(Debug, Clone)]
pub struct NewKey {
    /// Digest of the key text.
    pub digest: KeyDigest,
    /// Kind of key.
    pub key_type: ApiKeyType,
    /// Name shown in lists.
    pub display_name: Option<String>,
    /// Free text.
    pub description: Option<String>,
    /// System keys: allowed APIs.
    pub system_apis: Vec<SystemApi>,
    /// Feed keys: allowed package operations.
    pub package_permissions: Vec<PackagePermission>,
    /// Feed keys: the feed.
    pub feed: Option<String>,
    /// Feed keys: the feed group.
    pub feed_group: Option<String>,
    /// When the key stops working.
    pub expiration: Option<OffsetDateTime>,
    /// Request logging.
    pub logging: Logging,
    /// Personal keys: the owner's id.
    pub user_id: Option<UserId>,
    /// At most this many personal keys for the owner, counted in the
    /// create's own transaction ([`StoreError::TooManyKeys`](crate::store::StoreError::TooManyKeys) beyond).
    pub personal_cap: Option<u32>,
}

/// A user to be created, or the new values of an edited user.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    /// Login name (selects the user on update).
    pub name: String,
    /// Name shown to people; unchanged on update when `None`.
    pub display_name: Option<String>,
    /// E-mail address; unchanged on update when `None`.
    pub email: Option<String>,
    /// Groups; unchanged on update when `None`.
    pub groups: Option<Vec<String>>,
    /// Argon2id PHC string; unchanged on update when `None`.
    pub password_hash: Option<String>,
}

/// A built-in task: a named bundle of feed permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Task {
    /// Everything, including managing keys, users, groups and permissions.
    Administer,
    /// `view`.
    ViewPackages,
    /// `view`, `add`.
    PublishPackages,
    /// `view`, `promote`.
    PromotePackages,
    /// `view`, `delete`.
    DeletePackages,
    /// `view`, `add`, `promote`, `delete`.
    ManageFeed,
}

impl Task {
    /// Every task, in the order `tasks list` shows them.
    pub const ALL: [Task; 6] = [
        Task::Administer,
        Task::ViewPackages,
        Task::PublishPackages,
        Task::PromotePackages,
        Task::DeletePackages,
        Task::ManageFeed,
    ];

    /// The task's name, as ProGet spells it.
    pub fn name(self) -> &'static str {
        match self {
            Task::Administer => "Administer",
            Task::ViewPackages => "View & Download Packages",
            Task::PublishPackages => "Publish Packages",
            Task::PromotePackages => "Promote Packages",
            Task::DeletePackages => "Delete Packages",
            Task::ManageFeed => "Manage Feed",
        }
    }

    /// The feed permissions the task grants.
    pub fn permissions(self) -> &'static [PackagePermission] {
        use PackagePermission::{Add, Delete, Promote, View};
        match self {
            Task::Administer | Task::ManageFeed => &[View, Add, Promote, Delete],
            Task::ViewPackages => &[View],
            Task::PublishPackages => &[View, Add],
            Task::PromotePackages => &[View, Promote],
            Task::DeletePackages => &[View, Delete],
        }
    }

    /// Whether the task grants this feed permission.
    pub fn grants(self, permission: PackagePermission) -> bool {
        self.permissions().contains(&permission)
    }
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a task's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown task \"{0}\"")]
pub struct UnknownTask(pub String);

impl FromStr for Task {
    type Err = UnknownTask;

    /// Reads a task name case-insensitively.
    fn from_str(s: &str) -> Result<Self, UnknownTask> {
        Task::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownTask(s.to_owned()))
    }
}

/// Whom a permission applies to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Subject {
    /// A user (or [`ANONYMOUS`]), by name.
    User(String),
    /// A group, by name.
    Group(String),
}

/// Where a permission applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every feed, and the system itself.
    Global,
    /// One feed, by name.
    Feed(String),
    /// One feed group, by name.
    FeedGroup(String),
}

/// A stored permission: grants or denies one task to one subject in one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// Storage id.
    pub id: PermissionId,
    /// Whom it applies to.
    pub subject: Subject,
    /// The task granted or denied.
    pub task: Task,
    /// Where.
    pub scope: Scope,
    /// A deny instead of a grant.
    pub deny: bool,
}

/// A permission to be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewPermission {
    /// Whom it applies to.
    pub subject: Subject,
    /// The task granted or denied.
    pub task: Task,
    /// Where.
    pub scope: Scope,
    /// A deny instead of a grant.
    pub deny: bool,
}

impl NewPermission {
    /// The stored permission this becomes under an id.
    pub fn with_id(self, id: PermissionId) -> Permission {
        Permission {
            id,
            subject: self.subject,
            task: self.task,
            scope: self.scope,
            deny: self.deny,
        }
    }
}

/// The permission every installation starts with: `allow Administer
/// globally for group Administrators`.
pub fn administrators_grant() -> NewPermission {
    NewPermission {
        subject: Subject::Group(ADMINISTRATORS.to_owned()),
        task: Task::Administer,
        scope: Scope::Global,
        deny: false,
    }
}

/// A group and its members' names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Group name (case-insensitive, spelling kept).
    pub name: String,
    /// Member user names.
    pub members: Vec<String>,
}

/// Every permission of an installation, indexed by subject: the snapshot
/// the policy evaluates against. Cheap to share (`Arc`), never mutated.
#[derive(Debug, Clone, Default)]
pub struct SecurityModel {
    permissions: Vec<Permission>,
    by_user: HashMap<String, Vec<usize>>,
    by_group: HashMap<String, Vec<usize>>,
}

impl SecurityModel {
    /// A model of these permissions (kept in id order).
    pub fn new(mut permissions: Vec<Permission>) -> Self {
        permissions.sort_by_key(|p| p.id);
        let mut by_user: HashMap<String, Vec<usize>> = HashMap::new();
        let mut by_group: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, p) in permissions.iter().enumerate() {
            match &p.subject {
                Subject::User(n) => by_user.entry(name_key(n)).or_default().push(i),
                Subject::Group(n) => by_group.entry(name_key(n)).or_default().push(i),
            }
        }
        SecurityModel {
            permissions,
            by_user,
            by_group,
        }
    }

    /// Every permission, ordered by id.
    pub fn permissions(&self) -> &[Permission] {
        &self.permissions
    }

    /// The permissions of a user by name, directly (not through groups).
    pub fn of_user(&self, name: &str) -> impl Iterator<Item = &Permission> {
        self.indexed(&self.by_user, name)
    }

    /// The permissions of a group by name.
    pub fn of_group(&self, name: &str) -> impl Iterator<Item = &Permission> {
        self.indexed(&self.by_group, name)
    }

    fn indexed<'a>(
        &'a self,
        index: &'a HashMap<String, Vec<usize>>,
        name: &str,
    ) -> impl Iterator<Item = &'a Permission> {
        index
            .get(&name_key(name))
            .into_iter()
            .flatten()
            .map(|&i| &self.permissions[i])
    }
}

/// Whether two names (users, groups, feeds) are the same, case-insensitively.
pub fn same_name(a: &str, b: &str) -> bool {
    if a.is_ascii() && b.is_ascii() {
        a.eq_ignore_ascii_case(b)
    } else {
        name_key(a) == name_key(b)
    }
}

/// The key under which a user name is unique and looked up (same rule on
/// every back end): NFKC, lower-cased (with the full case folds of `ß` and
/// final `ς`), NFKC again, so that names differing only by case or by
/// compatibility forms (`Ａdmin`, `Admin`) are one name.
pub(crate) fn name_key(name: &str) -> String {
    if name.bytes().all(|b| b.is_ascii_graphic() || b == b' ') {
        return name.to_ascii_lowercase();
    }
    use unicode_normalization::UnicodeNormalization;
    let lower = name
        .nfkc()
        .collect::<String>()
        .to_lowercase()
        .replace('ß', "ss")
        .replace('ς', "σ");
    lower.nfkc().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_depend_on_secret_and_keep_logins_apart() {
        let a = Digester::new(b"secret-a");
        let b = Digester::new(b"secret-b");
        assert_eq!(a.key("k"), a.key("k"));
        assert_ne!(a.key("k"), b.key("k"));
        assert_eq!(a.login("Admin", "pw"), a.login("admin", "pw"));
        assert_ne!(a.login("admin", "pw"), a.key("admin:pw"));
    }
}

/// Who made a change, as the audit trail records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// An API key, by id (`key 1000`), also a personal key acting for its owner.
    Key(KeyId),
    /// A user who logged in or used a pseudo-key (`user NAME`).
    User(String),
    /// The server itself or an operator's command (`system`).
    System,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::Key(id) => write!(f, "key {id}"),
            Actor::User(name) => write!(f, "user {name}"),
            Actor::System => f.write_str("system"),
        }
    }
}

/// What the store needs to write a change's audit entry besides the change
/// itself: who made it, from where, and (rarely) the action to record
/// instead of the store's own name for the change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditContext {
    /// Who made the change.
    pub actor: Actor,
    /// The client's address (`None` for the server's own changes).
    pub address: Option<std::net::IpAddr>,
    /// Replaces the store's action name, e.g. `admin.reset` for the user
    /// edit `latchkey reset-admin` makes.
    pub action: Option<&'static str>,
    /// Properties added to the store's details of the change, e.g. the URL
    /// of a leaked-key report (never secrets).
    pub details: Option<serde_json::Value>,
}

impl AuditContext {
    /// A change the server or an operator's command makes.
    pub const SYSTEM: AuditContext = AuditContext {
        actor: Actor::System,
        address: None,
        action: None,
        details: None,
    };

    /// A change made by `principal` from `address`.
    pub fn of(principal: &Principal, address: Option<std::net::IpAddr>) -> Self {
        let actor = match principal {
            Principal::Key(k) => Actor::Key(k.id),
            Principal::User(u) => Actor::User(u.name.clone()),
        };
        AuditContext {
            actor,
            address,
            action: None,
            details: None,
        }
    }

    /// The same context recording `action` instead of the store's name.
    pub fn with_action(self, action: &'static str) -> Self {
        AuditContext {
            action: Some(action),
            ..self
        }
    }

    /// The same context adding `details` (a JSON object) to the entry's.
    pub fn with_details(self, details: serde_json::Value) -> Self {
        AuditContext {
            details: Some(details),
            ..self
        }
    }
}

/// Which audit entries to list: newest first, ids below `before`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only entries with ids below this one (the next page).
    pub before: Option<i64>,
    /// Most entries returned.
    pub limit: u32,
    /// Only entries about this target, e.g. `key 1001`.
    pub target: Option<String>,
    /// Only entries of this action, e.g. `apikey.delete`.
    pub action: Option<String>,
}
