//! The storage contract: every test runs against SQLite and PostgreSQL.
//!
//! `sqlite::<test>` uses a file in a temporary directory; `postgres::<test>`
//! a fresh database on the server `LATCHKEY_TEST_POSTGRES_URL` names. The
//! PostgreSQL tests are `#[ignore]`d (run them with `--run-ignored all`) and
//! fail when that variable is unset or the server unreachable.

mod common;

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};

use latchkey::domain::{
    self, Digester, Group, KeyDigest, NewKey, NewPermission, Permission, Scope, Subject, Task,
    UserChange, UserId,
};
use latchkey::policy;
use latchkey::store::{self, Store, StoreError};
use proget_api::{ApiKeyType, Logging, PackagePermission, SystemApi};
use time::OffsetDateTime;

use common::TestDatabase;

/// The audit context of the changes these tests make.
const SYSTEM: domain::AuditContext = domain::AuditContext::SYSTEM;

/// Declares each test once per back end: `sqlite::name` and `postgres::name`.
/// `[sqlite: attr]` before a name puts `#[attr]` on the SQLite test only.
macro_rules! store_tests {
    ($($([sqlite: $sqlite_attr:meta])? $name:ident),* $(,)?) => {
        mod sqlite {
            $(
                $(#[$sqlite_attr])?
                #[test]
                fn $name() {
                    super::on_sqlite(super::$name)
                }
            )*
        }
        mod postgres {
            $(
                #[test]
                #[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
                fn $name() {
                    super::on_postgres(stringify!($name), super::$name)
                }
            )*
        }
    };
}

store_tests! {
    first_key_gets_id_1000_and_ids_increase,
    ids_of_deleted_keys_are_never_reused,
    key_fields_round_trip,
    digest_lookup_returns_the_key_with_its_owner,
    duplicate_digest_is_duplicate_key,
    replace_digest_moves_the_key_to_the_new_digest,
    delete_key_is_true_once_then_false,
    sixteen_concurrent_deletes_of_one_id_succeed_exactly_once,
    list_keys_all_or_by_owner_ordered_by_id,
    keys_after_pages_through_every_key_in_id_order,
    json_pages_match_the_wire_serialisation_of_every_kind_of_key,
    user_lookup_is_case_insensitive_and_keeps_spelling,
    user_names_are_unique_case_insensitively,
    list_users_is_ordered_and_searches_case_insensitively,
    update_user_keeps_unset_fields,
    reads_after_a_write_see_the_write,
    delete_user_removes_their_keys_and_only_theirs,
    the_last_administrator_who_can_log_in_is_never_removed,
    the_personal_key_cap_holds_under_concurrent_creates,
    concurrent_demotions_leave_an_administrator,
    create_first_user_creates_only_once,
    create_first_user_on_several_nodes_at_once_creates_exactly_one,
    has_users_is_false_only_on_an_empty_database,
    settings_keep_the_first_value_and_replace_only_the_expected_one,
    committed_data_survives_reopening,
    several_nodes_can_migrate_one_database_at_once,
    a_new_database_has_administrators_and_its_grant,
    permissions_are_stored_with_their_subjects_spelling,
    permissions_of_unknown_subjects_are_refused,
    groups_are_created_edited_listed_and_deleted,
    group_writes_with_unknown_members_change_nothing,
    user_groups_take_the_groups_spelling_and_unknown_groups_are_created,
    deleting_a_user_deletes_their_permissions,
    no_permission_or_group_write_removes_the_last_administrator,
    the_administrator_check_counts_only_when_there_was_one,
    concurrent_permission_and_group_writes_leave_an_administrator,
    the_cached_security_model_changes_with_every_write,
    opening_an_old_database_adds_the_groups_its_users_name,
    every_successful_write_has_exactly_one_audit_entry_and_a_refused_one_none,
    audit_entries_are_listed_newest_first_by_page_and_filter,
    audit_entries_are_pruned_by_age_in_batches,
}

/// `sslmode=require` in the URL: every session of the store is encrypted
/// (sqlx is built with rustls). On a server without TLS the store refuses to
/// open rather than fall back to plain text.
#[test]
#[ignore = "needs PostgreSQL: set LATCHKEY_TEST_POSTGRES_URL and pass --run-ignored all"]
fn postgres_sslmode_require_encrypts_every_session() {
    let admin_url = common::postgres_url("postgres_sslmode_require_encrypts_every_session");
    let db = TestDatabase::create();
    let app = format!("lk_tls_{}", std::process::id());
    let url = format!("{}?sslmode=require&application_name={app}", db.url);
    let server_has_tls = common::pg_count(
        &admin_url,
        "SELECT count(*) FROM pg_settings WHERE name = 'ssl' AND setting = 'on'",
    ) == 1;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let store = match runtime.block_on(store::open(&url)) {
        Ok(store) => store,
        Err(e) if !server_has_tls => {
            eprintln!("the server has ssl = off; sslmode=require was refused: {e}");
            return;
        }
        Err(e) => panic!("cannot open the store with sslmode=require: {e:#}"),
    };
    assert!(
        server_has_tls,
        "sslmode=require connected to a server without TLS"
    );
    let sessions = |encrypted: bool| {
        common::pg_count(
            &admin_url,
            &format!(
                "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
                 WHERE application_name = '{app}' AND ssl = {encrypted}"
            ),
        )
    };
    assert!(sessions(true) >= 1, "no encrypted session of the store");
    assert_eq!(
        sessions(false),
        0,
        "a session of the store is not encrypted"
    );
    runtime.block_on(store.close());
    drop(db);
}

/// One test's database: an open store and how to open more on the same data.
struct Ctx {
    store: Arc<dyn Store>,
    url: String,
    backend: Backend,
}

enum Backend {
    Sqlite(tempfile::TempDir),
    /// Databases made during the test; the runner drops them outside the runtime.
    Postgres(Arc<Mutex<Vec<TestDatabase>>>),
}

impl Ctx {
    /// Another store on the same database, as a second node (or a restart) would open.
    async fn open_again(&self) -> Arc<dyn Store> {
        store::open(&self.url).await.expect("reopen the store")
    }

    /// The URL of another, empty database of the same back end.
    async fn empty_database_url(&self) -> String {
        match &self.backend {
            Backend::Sqlite(dir) => format!("sqlite://{}/other.db", dir.path().display()),
            Backend::Postgres(databases) => {
                let db = tokio::task::spawn_blocking(TestDatabase::create)
                    .await
                    .expect("create a test database");
                let url = db.url.clone();
                databases.lock().unwrap().push(db);
                url
            }
        }
    }
}

/// Runs an async test body on a multi-threaded runtime (concurrency tests need real threads).
fn block_on<F: Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(test)
}

fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temporary directory");
    let url = format!("sqlite://{}/t.db", dir.path().display());
    block_on(async {
        let store = store::open(&url).await.expect("open SQLite store");
        test(Ctx {
            store,
            url,
            backend: Backend::Sqlite(dir),
        })
        .await
    })
}

fn on_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    common::postgres_url(name);
    // Created and dropped outside the runtime: TestDatabase runs its own.
    let databases = Arc::new(Mutex::new(vec![TestDatabase::create()]));
    let url = databases.lock().unwrap()[0].url.clone();
    block_on(async {
        let store = store::open(&url).await.expect("open PostgreSQL store");
        let ctx = Ctx {
            store: store.clone(),
            url,
            backend: Backend::Postgres(databases.clone()),
        };
        test(ctx).await;
        store.close().await;
    });
    drop(databases);
}

// ---- helpers ------------------------------------------------------------

fn digest(text: &str) -> KeyDigest {
    Digester::new(b"store test secret").key(text)
}

fn system_key(text: &str) -> NewKey {
    NewKey {
        digest: digest(text),
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

fn personal_key(text: &str, owner: UserId) -> NewKey {
    NewKey {
        key_type: ApiKeyType::Personal,
        system_apis: vec![],
        user_id: Some(owner),
        personal_cap: None,
        ..system_key(text)
    }
}

fn new_user(name: &str) -> UserChange {
    UserChange {
        name: name.to_owned(),
        display_name: Some(format!("{name} Display")),
        email: Some(format!("{}@example.org", name.to_lowercase())),
        groups: Some(vec!["Developers".to_owned()]),
        password_hash: Some(format!("$argon2id$fake${name}")),
    }
}

fn admin(name: &str) -> UserChange {
    UserChange {
        groups: Some(vec!["Administrators".to_owned()]),
        ..new_user(name)
    }
}

fn demote(name: &str) -> UserChange {
    UserChange {
        name: name.to_owned(),
        groups: Some(vec![]),
        ..UserChange::default()
    }
}

// ---- keys ---------------------------------------------------------------

async fn first_key_gets_id_1000_and_ids_increase(ctx: Ctx) {
    let first = ctx
        .store
        .create_key(&SYSTEM, system_key("a"))
        .await
        .unwrap();
    assert_eq!(first.id, 1000);
    let mut last = first.id;
    for i in 0..5 {
        let key = ctx
            .store
            .create_key(&SYSTEM, system_key(&format!("k{i}")))
            .await
            .unwrap();
        assert!(key.id > last, "{} after {last}", key.id);
        last = key.id;
    }
}

async fn ids_of_deleted_keys_are_never_reused(ctx: Ctx) {
    let mut seen = HashSet::new();
    for round in 0..3 {
        let key = ctx
            .store
            .create_key(&SYSTEM, system_key(&format!("r{round}")))
            .await
            .unwrap();
        assert!(seen.insert(key.id), "id {} handed out twice", key.id);
        // Deleting the newest key is what tempts a max(id)+1 scheme to reuse it.
        assert!(ctx.store.delete_key(&SYSTEM, key.id).await.unwrap());
    }
    let after_reopen = ctx.open_again().await;
    let key = after_reopen
        .create_key(&SYSTEM, system_key("after"))
        .await
        .unwrap();
    assert!(seen.iter().all(|&old| key.id > old), "{} reused", key.id);
}

async fn key_fields_round_trip(ctx: Ctx) {
    let expiration = OffsetDateTime::from_unix_timestamp(4_102_444_800).unwrap();
    let feed_key = NewKey {
        key_type: ApiKeyType::Feed,
        display_name: Some("CI upload".into()),
        description: Some("used by the build".into()),
        system_apis: vec![],
        package_permissions: vec![PackagePermission::View, PackagePermission::Add],
        feed: Some("internal-npm".into()),
        expiration: Some(expiration),
        logging: Logging::Both,
        ..system_key("feed")
    };
    let created = ctx.store.create_key(&SYSTEM, feed_key).await.unwrap();
    assert_eq!(created.key_type, ApiKeyType::Feed);
    assert_eq!(created.display_name.as_deref(), Some("CI upload"));
    assert_eq!(created.description.as_deref(), Some("used by the build"));
    assert!(created.system_apis.is_empty());
    assert_eq!(
        created.package_permissions,
        [PackagePermission::View, PackagePermission::Add]
    );
    assert_eq!(created.feed.as_deref(), Some("internal-npm"));
    assert_eq!(created.feed_group, None);
    assert_eq!(created.expiration, Some(expiration));
    assert_eq!(created.logging, Logging::Both);
    assert_eq!(created.user, None);
    assert_eq!(
        ctx.store.key_by_id(created.id).await.unwrap(),
        Some(created.clone())
    );

    let system = ctx
        .store
        .create_key(
            &SYSTEM,
            NewKey {
                system_apis: vec![SystemApi::Feeds, SystemApi::SbomUpload],
                feed_group: Some("group".into()),
                ..system_key("sys")
            },
        )
        .await
        .unwrap();
    assert_eq!(
        system.system_apis,
        [SystemApi::Feeds, SystemApi::SbomUpload]
    );
    assert_eq!(system.feed_group.as_deref(), Some("group"));
    assert_eq!(ctx.store.key_by_id(4242).await.unwrap(), None);
}

async fn digest_lookup_returns_the_key_with_its_owner(ctx: Ctx) {
    let alice = ctx
        .store
        .create_user(&SYSTEM, new_user("Alice"))
        .await
        .unwrap();
    let personal = ctx
        .store
        .create_key(&SYSTEM, personal_key("alice's", alice.id))
        .await
        .unwrap();
    let system = ctx
        .store
        .create_key(&SYSTEM, system_key("system"))
        .await
        .unwrap();

    let found = ctx
        .store
        .key_by_digest(&digest("alice's"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, personal.id);
    assert_eq!(found.user, Some(alice));
    let found = ctx
        .store
        .key_by_digest(&digest("system"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, system.id);
    assert_eq!(found.user, None);
    assert_eq!(
        ctx.store.key_by_digest(&digest("unknown")).await.unwrap(),
        None
    );
}

async fn duplicate_digest_is_duplicate_key(ctx: Ctx) {
    let first = ctx
        .store
        .create_key(&SYSTEM, system_key("same"))
        .await
        .unwrap();
    let again = ctx.store.create_key(&SYSTEM, system_key("same")).await;
    assert!(matches!(again, Err(StoreError::DuplicateKey)), "{again:?}");
    assert_eq!(ctx.store.list_keys(None).await.unwrap(), [first]);
}

async fn replace_digest_moves_the_key_to_the_new_digest(ctx: Ctx) {
    let key = ctx
        .store
        .create_key(&SYSTEM, system_key("old secret"))
        .await
        .unwrap();
    ctx.store
        .replace_digest(key.id, &digest("new secret"))
        .await
        .unwrap();
    assert_eq!(
        ctx.store
            .key_by_digest(&digest("old secret"))
            .await
            .unwrap(),
        None
    );
    let moved = ctx
        .store
        .key_by_digest(&digest("new secret"))
        .await
        .unwrap();
    assert_eq!(moved.as_deref(), Some(&key));
    // A key deleted meanwhile stays deleted.
    assert!(ctx.store.delete_key(&SYSTEM, key.id).await.unwrap());
    ctx.store
        .replace_digest(key.id, &digest("newer secret"))
        .await
        .unwrap();
    assert_eq!(
        ctx.store
            .key_by_digest(&digest("newer secret"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(ctx.store.key_by_id(key.id).await.unwrap(), None);
}

async fn delete_key_is_true_once_then_false(ctx: Ctx) {
    let key = ctx
        .store
        .create_key(&SYSTEM, system_key("doomed"))
        .await
        .unwrap();
    let kept = ctx
        .store
        .create_key(&SYSTEM, system_key("kept"))
        .await
        .unwrap();
    assert!(ctx.store.delete_key(&SYSTEM, key.id).await.unwrap());
    assert!(!ctx.store.delete_key(&SYSTEM, key.id).await.unwrap());
    assert!(!ctx.store.delete_key(&SYSTEM, 99_999).await.unwrap());
    assert_eq!(ctx.store.key_by_id(key.id).await.unwrap(), None);
    assert_eq!(
        ctx.store.key_by_digest(&digest("doomed")).await.unwrap(),
        None
    );
    assert_eq!(ctx.store.list_keys(None).await.unwrap(), [kept]);
}

async fn sixteen_concurrent_deletes_of_one_id_succeed_exactly_once(ctx: Ctx) {
    for round in 0..5 {
        let key = ctx
            .store
            .create_key(&SYSTEM, system_key(&format!("race{round}")))
            .await
            .unwrap();
        let deletes: Vec<_> = (0..16)
            .map(|_| {
                let store = ctx.store.clone();
                tokio::spawn(async move { store.delete_key(&SYSTEM, key.id).await })
            })
            .collect();
        let mut successes = 0;
        for delete in deletes {
            if delete.await.unwrap().unwrap() {
                successes += 1;
            }
        }
        assert_eq!(successes, 1, "round {round}");
    }
}

async fn keys_after_pages_through_every_key_in_id_order(ctx: Ctx) {
    let alice = ctx
        .store
        .create_user(&SYSTEM, new_user("alice"))
        .await
        .unwrap();
    let mut created = Vec::new();
    for i in 0..7 {
        let key = if i % 2 == 0 {
            system_key(&format!("s{i}"))
        } else {
            personal_key(&format!("p{i}"), alice.id)
        };
        created.push(ctx.store.create_key(&SYSTEM, key).await.unwrap());
    }
    ctx.store.delete_key(&SYSTEM, created[3].id).await.unwrap();
    created.remove(3);

    let mut paged = Vec::new();
    let mut after = i32::MIN;
    loop {
        let page = ctx.store.keys_after(after, 2).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = last.id;
        paged.extend(page);
    }
    assert_eq!(paged, created, "every key once, in id order, owners joined");
    assert!(ctx.store.keys_after(i32::MAX, 10).await.unwrap().is_empty());
}

async fn json_pages_match_the_wire_serialisation_of_every_kind_of_key(ctx: Ctx) {
    let alice = ctx
        .store
        .create_user(&SYSTEM, new_user("Alice"))
        .await
        .unwrap();
    let when = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
    let odd_text = "quote \" backslash \\ tab\t control\u{1} é ✓ </script>".to_owned();
    let keys = [
        system_key("full"),
        NewKey {
            system_apis: vec![SystemApi::Feeds, SystemApi::Sca, SystemApi::SbomUpload],
            display_name: Some(odd_text.clone()),
            description: Some(odd_text.clone()),
            expiration: Some(when),
            logging: Logging::Both,
            ..system_key("limited")
        },
        NewKey {
            key_type: ApiKeyType::Feed,
            system_apis: vec![],
            package_permissions: vec![PackagePermission::View, PackagePermission::Delete],
            feed: Some("public-npm".into()),
            logging: Logging::Request,
            ..system_key("feed")
        },
        NewKey {
            key_type: ApiKeyType::Feed,
            system_apis: vec![],
            package_permissions: vec![
                PackagePermission::View,
                PackagePermission::Add,
                PackagePermission::Promote,
                PackagePermission::Delete,
            ],
            feed_group: Some("group".into()),
            logging: Logging::Response,
            ..system_key("group")
        },
        personal_key("personal", alice.id),
    ];
    for key in keys {
        ctx.store.create_key(&SYSTEM, key).await.unwrap();
    }
    let expected: Vec<serde_json::Value> = ctx
        .store
        .keys_after(i32::MIN, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|k| serde_json::to_value(proget_api::ApiKeyInfo::from(k)).unwrap())
        .collect();
    assert_eq!(expected.len(), 5);

    let mut listed = Vec::new();
    let mut after = i32::MIN;
    loop {
        let page = ctx.store.key_page_json(after, 2).await.unwrap();
        assert!(page.count <= 2);
        let Some(last) = page.last else {
            assert_eq!((page.count, page.items.as_str()), (0, ""));
            break;
        };
        let items: Vec<serde_json::Value> =
            serde_json::from_str(&format!("[{}]", page.items)).expect("valid JSON objects");
        assert_eq!(items.len(), page.count);
        assert_eq!(items.last().unwrap()["id"], last);
        after = last;
        listed.extend(items);
    }
    assert_eq!(listed, expected, "the page JSON is the wire serialisation");
}

async fn list_keys_all_or_by_owner_ordered_by_id(ctx: Ctx) {
    let alice = ctx
        .store
        .create_user(&SYSTEM, new_user("alice"))
        .await
        .unwrap();
    let bob = ctx
        .store
        .create_user(&SYSTEM, new_user("bob"))
        .await
        .unwrap();
    let a1 = ctx
        .store
        .create_key(&SYSTEM, personal_key("a1", alice.id))
        .await
        .unwrap();
    let b1 = ctx
        .store
        .create_key(&SYSTEM, personal_key("b1", bob.id))
        .await
        .unwrap();
    let s1 = ctx
        .store
        .create_key(&SYSTEM, system_key("s1"))
        .await
        .unwrap();
    let a2 = ctx
        .store
        .create_key(&SYSTEM, personal_key("a2", alice.id))
        .await
        .unwrap();
    // A non-personal key that names a user is not one of their personal keys.
    let odd = ctx
        .store
        .create_key(
            &SYSTEM,
            NewKey {
                user_id: Some(alice.id),
                personal_cap: None,
                ..system_key("odd")
            },
        )
        .await
        .unwrap();

    let ids = |keys: Vec<domain::StoredKey>| keys.into_iter().map(|k| k.id).collect::<Vec<_>>();
    assert_eq!(
        ids(ctx.store.list_keys(None).await.unwrap()),
        [a1.id, b1.id, s1.id, a2.id, odd.id]
    );
    assert_eq!(
        ids(ctx.store.list_keys(Some(alice.id)).await.unwrap()),
        [a1.id, a2.id]
    );
    assert_eq!(
        ids(ctx.store.list_keys(Some(bob.id)).await.unwrap()),
        [b1.id]
    );
    assert_eq!(
        ids(ctx.store.list_keys(Some(9_999)).await.unwrap()),
        Vec::<i32>::new()
    );
    let listed = ctx.store.list_keys(Some(alice.id)).await.unwrap();
    assert!(listed.iter().all(|k| k.user.as_ref() == Some(&alice)));
}

// ---- users --------------------------------------------------------------

async fn user_lookup_is_case_insensitive_and_keeps_spelling(ctx: Ctx) {
    let created = ctx
        .store
        .create_user(&SYSTEM, new_user("McAdmin"))
        .await
        .unwrap();
    assert_eq!(created.name, "McAdmin");
    assert_eq!(created.display_name.as_deref(), Some("McAdmin Display"));
    assert_eq!(created.email.as_deref(), Some("mcadmin@example.org"));
    assert_eq!(created.groups, ["Developers"]);
    for spelling in ["McAdmin", "mcadmin", "MCADMIN"] {
        let login = ctx.store.user_login(spelling).await.unwrap().unwrap();
        assert_eq!(login.user, created);
        assert_eq!(login.password_hash, "$argon2id$fake$McAdmin");
    }
    assert!(ctx.store.user_login("McAdmin2").await.unwrap().is_none());
}

async fn user_names_are_unique_case_insensitively(ctx: Ctx) {
    ctx.store
        .create_user(&SYSTEM, new_user("Carol"))
        .await
        .unwrap();
    for spelling in ["Carol", "carol", "CAROL"] {
        let again = ctx.store.create_user(&SYSTEM, new_user(spelling)).await;
        assert!(
            matches!(again, Err(StoreError::DuplicateUser)),
            "{spelling}: {again:?}"
        );
    }
    assert_eq!(ctx.store.list_users(None).await.unwrap().len(), 1);
}

async fn list_users_is_ordered_and_searches_case_insensitively(ctx: Ctx) {
    for name in ["carol", "Bob", "_svc", "alice"] {
        ctx.store
            .create_user(&SYSTEM, new_user(name))
            .await
            .unwrap();
    }
    ctx.store
        .create_user(
            &SYSTEM,
            UserChange {
                display_name: Some("Dana From Accounting".into()),
                email: None,
                ..new_user("dz")
            },
        )
        .await
        .unwrap();
    let names = |users: Vec<domain::User>| users.into_iter().map(|u| u.name).collect::<Vec<_>>();
    // Byte order of the lower-cased names, identical on both back ends.
    assert_eq!(
        names(ctx.store.list_users(None).await.unwrap()),
        ["_svc", "alice", "Bob", "carol", "dz"]
    );
    assert_eq!(
        names(ctx.store.list_users(Some("")).await.unwrap()).len(),
        5
    );
    assert_eq!(
        names(ctx.store.list_users(Some("BO")).await.unwrap()),
        ["Bob"]
    );
    assert_eq!(
        names(ctx.store.list_users(Some("accounting")).await.unwrap()),
        ["dz"]
    );
    assert_eq!(
        names(ctx.store.list_users(Some("@EXAMPLE")).await.unwrap()).len(),
        4
    );
    assert!(ctx.store.list_users(Some("%")).await.unwrap().is_empty());
    assert!(ctx
        .store
        .list_users(Some("nobody"))
        .await
        .unwrap()
        .is_empty());
}

async fn update_user_keeps_unset_fields(ctx: Ctx) {
    let created = ctx
        .store
        .create_user(&SYSTEM, new_user("Erin"))
        .await
        .unwrap();
    let updated = ctx
        .store
        .update_user(
            &SYSTEM,
            UserChange {
                name: "ERIN".into(),
                email: Some("erin@new.example".into()),
                ..UserChange::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.name, "Erin");
    assert_eq!(updated.email.as_deref(), Some("erin@new.example"));
    assert_eq!(updated.display_name, created.display_name);
    assert_eq!(updated.groups, created.groups);
    let login = ctx.store.user_login("erin").await.unwrap().unwrap();
    assert_eq!(login.password_hash, "$argon2id$fake$Erin");
    assert_eq!(login.user, updated);

    let updated = ctx
        .store
        .update_user(
            &SYSTEM,
            UserChange {
                name: "erin".into(),
                groups: Some(vec!["Administrators".into()]),
                password_hash: Some("$argon2id$new".into()),
                ..UserChange::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    let model = ctx.store.security().await.unwrap();
    assert!(policy::is_admin(&model, &updated));
    assert_eq!(updated.email.as_deref(), Some("erin@new.example"));
    let login = ctx.store.user_login("Erin").await.unwrap().unwrap();
    assert_eq!(login.password_hash, "$argon2id$new");

    let missing = ctx
        .store
        .update_user(&SYSTEM, new_user("nobody"))
        .await
        .unwrap();
    assert_eq!(missing, None);
}

/// A read that returned a row must not leave its connection on an old
/// snapshot: the next read sees every write committed since.
async fn reads_after_a_write_see_the_write(ctx: Ctx) {
    let owner = ctx
        .store
        .create_user(&SYSTEM, new_user("Judy"))
        .await
        .unwrap();
    for round in 0..3 {
        let text = format!("seen{round}");
        let key = ctx
            .store
            .create_key(&SYSTEM, personal_key(&text, owner.id))
            .await
            .unwrap();
        assert!(ctx
            .store
            .key_by_digest(&digest(&text))
            .await
            .unwrap()
            .is_some());
        let before = ctx.store.user_login("judy").await.unwrap().unwrap();
        ctx.store
            .update_user(
                &SYSTEM,
                UserChange {
                    name: "judy".into(),
                    password_hash: Some(format!("$argon2id$round{round}")),
                    ..UserChange::default()
                },
            )
            .await
            .unwrap();
        assert!(ctx.store.delete_key(&SYSTEM, key.id).await.unwrap());
        assert_eq!(
            ctx.store.key_by_digest(&digest(&text)).await.unwrap(),
            None,
            "round {round}"
        );
        let after = ctx.store.user_login("judy").await.unwrap().unwrap();
        assert_ne!(after.password_hash, before.password_hash, "round {round}");
        assert_eq!(after.password_hash, format!("$argon2id$round{round}"));
    }
}

async fn delete_user_removes_their_keys_and_only_theirs(ctx: Ctx) {
    let frank = ctx
        .store
        .create_user(&SYSTEM, new_user("Frank"))
        .await
        .unwrap();
    let grace = ctx
        .store
        .create_user(&SYSTEM, new_user("Grace"))
        .await
        .unwrap();
    ctx.store
        .create_key(&SYSTEM, personal_key("f1", frank.id))
        .await
        .unwrap();
    ctx.store
        .create_key(&SYSTEM, personal_key("f2", frank.id))
        .await
        .unwrap();
    let g1 = ctx
        .store
        .create_key(&SYSTEM, personal_key("g1", grace.id))
        .await
        .unwrap();
    let s1 = ctx
        .store
        .create_key(&SYSTEM, system_key("s1"))
        .await
        .unwrap();

    assert!(ctx.store.delete_user(&SYSTEM, "FRANK").await.unwrap());
    assert!(ctx.store.user_login("Frank").await.unwrap().is_none());
    assert_eq!(ctx.store.key_by_digest(&digest("f1")).await.unwrap(), None);
    assert_eq!(ctx.store.key_by_digest(&digest("f2")).await.unwrap(), None);
    assert_eq!(ctx.store.list_keys(None).await.unwrap(), [g1, s1]);
    assert!(!ctx.store.delete_user(&SYSTEM, "Frank").await.unwrap());
    assert!(!ctx
        .store
        .delete_user(&SYSTEM, "never-existed")
        .await
        .unwrap());
    // The name is free again.
    ctx.store
        .create_user(&SYSTEM, new_user("frank"))
        .await
        .unwrap();
}

async fn create_first_user_creates_only_once(ctx: Ctx) {
    assert!(ctx
        .store
        .create_first_user(&SYSTEM, new_user("Admin"))
        .await
        .unwrap());
    assert!(!ctx
        .store
        .create_first_user(&SYSTEM, new_user("Admin"))
        .await
        .unwrap());
    assert!(!ctx
        .store
        .create_first_user(&SYSTEM, new_user("Other"))
        .await
        .unwrap());
    let users = ctx.store.list_users(None).await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].name, "Admin");
    let login = ctx.store.user_login("admin").await.unwrap().unwrap();
    assert_eq!(login.password_hash, "$argon2id$fake$Admin");
}

async fn create_first_user_on_several_nodes_at_once_creates_exactly_one(ctx: Ctx) {
    let mut nodes = vec![ctx.store.clone()];
    for _ in 0..3 {
        nodes.push(ctx.open_again().await);
    }
    // Different names, so only the emptiness check (not the unique index) can stop a second one.
    let attempts: Vec<_> = (0..16)
        .map(|i| {
            let node = nodes[i % nodes.len()].clone();
            tokio::spawn(async move {
                node.create_first_user(&SYSTEM, new_user(&format!("Admin{i}")))
                    .await
            })
        })
        .collect();
    let mut created = 0;
    for attempt in attempts {
        if attempt.await.unwrap().unwrap() {
            created += 1;
        }
    }
    assert_eq!(created, 1);
    assert_eq!(ctx.store.list_users(None).await.unwrap().len(), 1);
    for node in &nodes[1..] {
        node.close().await;
    }
}

async fn has_users_is_false_only_on_an_empty_database(ctx: Ctx) {
    assert!(!ctx.store.has_users().await.unwrap());
    ctx.store
        .create_user(&SYSTEM, new_user("Heidi"))
        .await
        .unwrap();
    assert!(ctx.store.has_users().await.unwrap());
    ctx.store.delete_user(&SYSTEM, "heidi").await.unwrap();
    assert!(!ctx.store.has_users().await.unwrap());
}

async fn settings_keep_the_first_value_and_replace_only_the_expected_one(ctx: Ctx) {
    let s = &ctx.store;
    assert_eq!(s.setting("fingerprint").await.unwrap(), None);
    assert_eq!(s.insert_setting("fingerprint", "a").await.unwrap(), "a");
    assert_eq!(
        s.insert_setting("fingerprint", "b").await.unwrap(),
        "a",
        "the first writer wins"
    );
    assert!(!s
        .replace_setting(&SYSTEM, "fingerprint", "b", "c")
        .await
        .unwrap());
    assert_eq!(
        s.setting("fingerprint").await.unwrap().as_deref(),
        Some("a")
    );
    assert!(s
        .replace_setting(&SYSTEM, "fingerprint", "a", "c")
        .await
        .unwrap());
    assert_eq!(
        s.setting("fingerprint").await.unwrap().as_deref(),
        Some("c")
    );
    assert_eq!(s.setting("other").await.unwrap(), None);
}

// ---- durability and start-up --------------------------------------------

async fn committed_data_survives_reopening(ctx: Ctx) {
    let ivan = ctx
        .store
        .create_user(&SYSTEM, new_user("Ivan"))
        .await
        .unwrap();
    let kept = ctx
        .store
        .create_key(&SYSTEM, personal_key("kept", ivan.id))
        .await
        .unwrap();
    let gone = ctx
        .store
        .create_key(&SYSTEM, system_key("gone"))
        .await
        .unwrap();
    assert!(ctx.store.delete_key(&SYSTEM, gone.id).await.unwrap());
    ctx.store.close().await;

    let reopened = ctx.open_again().await;
    reopened.ping().await.unwrap();
    assert_eq!(
        reopened.list_keys(None).await.unwrap(),
        std::slice::from_ref(&kept)
    );
    assert_eq!(
        reopened
            .key_by_digest(&digest("kept"))
            .await
            .unwrap()
            .as_deref(),
        Some(&kept)
    );
    assert_eq!(reopened.key_by_digest(&digest("gone")).await.unwrap(), None);
    assert_eq!(
        reopened.user_login("ivan").await.unwrap().unwrap().user,
        ivan
    );
    reopened.close().await;
}

async fn several_nodes_can_migrate_one_database_at_once(ctx: Ctx) {
    let url = ctx.empty_database_url().await;
    let opens: Vec<_> = (0..6)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { store::open(&url).await })
        })
        .collect();
    let mut nodes = Vec::new();
    for open in opens {
        nodes.push(open.await.unwrap().expect("concurrent start"));
    }
    let key = nodes[0]
        .create_key(&SYSTEM, system_key("shared"))
        .await
        .unwrap();
    assert_eq!(key.id, 1000);
    for node in &nodes {
        assert_eq!(node.key_by_id(1000).await.unwrap(), Some(key.clone()));
        node.close().await;
    }
}

async fn the_last_administrator_who_can_log_in_is_never_removed(ctx: Ctx) {
    let last_admin = |r: Result<_, StoreError>| matches!(r, Err(StoreError::LastAdministrator));
    ctx.store.create_user(&SYSTEM, admin("Ann")).await.unwrap();
    assert!(last_admin(
        ctx.store.delete_user(&SYSTEM, "ann").await.map(|_| ())
    ));
    assert!(last_admin(
        ctx.store
            .update_user(&SYSTEM, demote("Ann"))
            .await
            .map(|_| ())
    ));
    let ann = ctx.store.user_login("Ann").await.unwrap().unwrap().user;
    let model = ctx.store.security().await.unwrap();
    assert!(policy::is_admin(&model, &ann), "nothing changed");

    // An administrator without a password cannot log in: it does not count.
    ctx.store
        .create_user(
            &SYSTEM,
            UserChange {
                password_hash: Some(String::new()),
                ..admin("Nopass")
            },
        )
        .await
        .unwrap();
    assert!(last_admin(
        ctx.store.delete_user(&SYSTEM, "Ann").await.map(|_| ())
    ));

    ctx.store.create_user(&SYSTEM, admin("Bob")).await.unwrap();
    ctx.store
        .update_user(&SYSTEM, demote("Ann"))
        .await
        .unwrap()
        .unwrap();
    assert!(last_admin(
        ctx.store.delete_user(&SYSTEM, "Bob").await.map(|_| ())
    ));
    assert!(
        ctx.store.delete_user(&SYSTEM, "Ann").await.unwrap(),
        "no longer an administrator"
    );
    assert!(!ctx.store.delete_user(&SYSTEM, "nobody").await.unwrap());
    let other = ctx
        .store
        .update_user(&SYSTEM, new_user("Nopass"))
        .await
        .unwrap()
        .unwrap();
    let model = ctx.store.security().await.unwrap();
    assert!(
        !policy::is_admin(&model, &other),
        "changes that leave Bob are fine"
    );
}

/// Two administrators taking each other out of `Administrators` at the same
/// moment: one succeeds, the other is refused, every round.
async fn concurrent_demotions_leave_an_administrator(ctx: Ctx) {
    let store = ctx.store.clone();
    for round in 0..20 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        store.create_user(&SYSTEM, admin(&a)).await.unwrap();
        store.create_user(&SYSTEM, admin(&b)).await.unwrap();
        for name in (0..round).flat_map(|r| [format!("a{r}"), format!("b{r}")]) {
            // Only this round's pair remains an administrator.
            let _ = store.update_user(&SYSTEM, demote(&name)).await;
        }
        let (ra, rb) = tokio::join!(
            store.update_user(&SYSTEM, demote(&a)),
            store.update_user(&SYSTEM, demote(&b))
        );
        let refused = [&ra, &rb]
            .iter()
            .filter(|r| matches!(r, Err(StoreError::LastAdministrator)))
            .count();
        assert_eq!(refused, 1, "round {round}: {ra:?} {rb:?}");
        let model = store.security().await.unwrap();
        let admins = store
            .list_users(None)
            .await
            .unwrap()
            .into_iter()
            .filter(|u| policy::is_admin(&model, u))
            .count();
        assert_eq!(admins, 1, "round {round}");
    }
}

async fn the_personal_key_cap_holds_under_concurrent_creates(ctx: Ctx) {
    let owner = ctx
        .store
        .create_user(&SYSTEM, new_user("Capped"))
        .await
        .unwrap();
    let capped = |text: String| NewKey {
        personal_cap: Some(5),
        ..personal_key(&text, owner.id)
    };
    let creates = (0..12).map(|i| ctx.store.create_key(&SYSTEM, capped(format!("capped-{i}"))));
    let outcomes = futures_util::future::join_all(creates).await;
    let created = outcomes.iter().filter(|r| r.is_ok()).count();
    let refused = outcomes
        .iter()
        .filter(|r| matches!(r, Err(StoreError::TooManyKeys)))
        .count();
    assert_eq!((created, refused), (5, 7), "{outcomes:?}");
    assert_eq!(ctx.store.list_keys(Some(owner.id)).await.unwrap().len(), 5);
    // Other owners and uncapped creates are not affected.
    ctx.store
        .create_key(&SYSTEM, personal_key("uncapped", owner.id))
        .await
        .unwrap();
}

// ---- permissions and groups ---------------------------------------------

fn grant(subject: Subject, task: Task, scope: Scope) -> NewPermission {
    NewPermission {
        subject,
        task,
        scope,
        deny: false,
    }
}

fn deny(subject: Subject, task: Task, scope: Scope) -> NewPermission {
    NewPermission {
        deny: true,
        ..grant(subject, task, scope)
    }
}

fn user(name: &str) -> Subject {
    Subject::User(name.to_owned())
}

fn group(name: &str) -> Subject {
    Subject::Group(name.to_owned())
}

fn group_of(name: &str, members: &[&str]) -> Group {
    Group {
        name: name.to_owned(),
        members: members.iter().map(|m| m.to_string()).collect(),
    }
}

fn is_last_admin<T: std::fmt::Debug>(r: Result<T, StoreError>) -> bool {
    match r {
        Err(StoreError::LastAdministrator) => true,
        other => panic!("expected LastAdministrator, got {other:?}"),
    }
}

async fn permissions(store: &dyn Store) -> Vec<Permission> {
    store.security().await.unwrap().permissions().to_vec()
}

async fn groups_of(store: &dyn Store, name: &str) -> Vec<String> {
    store.user_login(name).await.unwrap().unwrap().user.groups
}

/// Administrators who can log in, by the policy.
async fn admin_names(store: &dyn Store) -> Vec<String> {
    let model = store.security().await.unwrap();
    let mut names = Vec::new();
    for u in store.list_users(None).await.unwrap() {
        let login = store.user_login(&u.name).await.unwrap().unwrap();
        if !login.password_hash.is_empty() && policy::is_admin(&model, &u) {
            names.push(u.name);
        }
    }
    names
}

async fn a_new_database_has_administrators_and_its_grant(ctx: Ctx) {
    let all = permissions(&*ctx.store).await;
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0],
        domain::administrators_grant().with_id(all[0].id),
        "allow Administer globally for group Administrators"
    );
    assert_eq!(
        ctx.store.list_groups().await.unwrap(),
        [group_of("Administrators", &[])]
    );
    let ann = ctx.store.create_user(&SYSTEM, admin("Ann")).await.unwrap();
    assert!(policy::is_admin(&ctx.store.security().await.unwrap(), &ann));
    ctx.store
        .create_user(&SYSTEM, new_user("Bob"))
        .await
        .unwrap();
    assert_eq!(
        ctx.store.list_groups().await.unwrap(),
        [
            group_of("Administrators", &["Ann"]),
            group_of("Developers", &["Bob"])
        ]
    );
}

async fn permissions_are_stored_with_their_subjects_spelling(ctx: Ctx) {
    ctx.store
        .create_user(&SYSTEM, new_user("JSmith"))
        .await
        .unwrap();
    let before = permissions(&*ctx.store).await;
    let added = [
        deny(
            user("jsmith"),
            Task::PublishPackages,
            Scope::Feed("npm-internal".into()),
        ),
        grant(
            group("DEVELOPERS"),
            Task::ViewPackages,
            Scope::FeedGroup("public".into()),
        ),
        grant(user("ANONYMOUS"), Task::ViewPackages, Scope::Global),
        grant(user("JSmith"), Task::ManageFeed, Scope::Global),
    ];
    let mut stored = Vec::new();
    for p in added {
        stored.push(ctx.store.add_permission(&SYSTEM, p).await.unwrap());
    }
    let subjects: Vec<&Subject> = stored.iter().map(|p| &p.subject).collect();
    assert_eq!(
        subjects,
        [
            &user("JSmith"),
            &group("Developers"),
            &user("Anonymous"),
            &user("JSmith")
        ]
    );
    assert!(stored[0].deny && !stored[1].deny);
    assert_eq!(stored[0].task, Task::PublishPackages);
    assert_eq!(stored[1].scope, Scope::FeedGroup("public".into()));
    let ids: Vec<i64> = stored.iter().map(|p| p.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(ids[0] > before[0].id);

    let expected: Vec<Permission> = before.iter().cloned().chain(stored.clone()).collect();
    assert_eq!(permissions(&*ctx.store).await, expected, "ordered by id");
    let model = ctx.store.security().await.unwrap();
    assert_eq!(model.of_user("jsmith").count(), 2);
    assert_eq!(model.of_group("developers").count(), 1);

    assert!(ctx
        .store
        .delete_permission(&SYSTEM, stored[2].id)
        .await
        .unwrap());
    assert!(!ctx
        .store
        .delete_permission(&SYSTEM, stored[2].id)
        .await
        .unwrap());
    assert!(!ctx.store.delete_permission(&SYSTEM, 999_999).await.unwrap());
    ctx.store.close().await;
    let reopened = ctx.open_again().await;
    let kept: Vec<Permission> = expected
        .into_iter()
        .filter(|p| p.id != stored[2].id)
        .collect();
    assert_eq!(permissions(&*reopened).await, kept, "committed");
    reopened.close().await;
}

async fn permissions_of_unknown_subjects_are_refused(ctx: Ctx) {
    let before = permissions(&*ctx.store).await;
    match ctx
        .store
        .add_permission(
            &SYSTEM,
            grant(user("ghost"), Task::ViewPackages, Scope::Global),
        )
        .await
    {
        Err(StoreError::UnknownUser(name)) => assert_eq!(name, "ghost"),
        other => panic!("{other:?}"),
    }
    match ctx
        .store
        .add_permission(
            &SYSTEM,
            grant(group("Ghosts"), Task::ViewPackages, Scope::Global),
        )
        .await
    {
        Err(StoreError::UnknownGroup(name)) => assert_eq!(name, "Ghosts"),
        other => panic!("{other:?}"),
    }
    assert_eq!(permissions(&*ctx.store).await, before);
}

async fn groups_are_created_edited_listed_and_deleted(ctx: Ctx) {
    for name in ["Bob", "ann", "Carl"] {
        ctx.store
            .create_user(&SYSTEM, new_user(name))
            .await
            .unwrap();
    }
    let qa = ctx
        .store
        .create_group(&SYSTEM, group_of("QA", &["BOB", "Ann", "bob"]))
        .await
        .unwrap();
    assert_eq!(qa, group_of("QA", &["ann", "Bob"]), "canonical, by name");
    assert_eq!(groups_of(&*ctx.store, "bob").await, ["Developers", "QA"]);
    assert!(matches!(
        ctx.store.create_group(&SYSTEM, group_of("qa", &[])).await,
        Err(StoreError::DuplicateGroup)
    ));
    assert!(matches!(
        ctx.store
            .create_group(&SYSTEM, group_of("administrators", &[]))
            .await,
        Err(StoreError::DuplicateGroup)
    ));
    ctx.store
        .create_group(&SYSTEM, group_of("Auditors", &[]))
        .await
        .unwrap();
    assert_eq!(
        ctx.store.list_groups().await.unwrap(),
        [
            group_of("Administrators", &[]),
            group_of("Auditors", &[]),
            group_of("Developers", &["ann", "Bob", "Carl"]),
            group_of("QA", &["ann", "Bob"]),
        ]
    );

    let edited = ctx
        .store
        .edit_group(&SYSTEM, group_of("qa", &["carl", "Bob"]))
        .await
        .unwrap();
    assert_eq!(edited, Some(group_of("QA", &["Bob", "Carl"])));
    assert_eq!(groups_of(&*ctx.store, "ann").await, ["Developers"]);
    assert_eq!(groups_of(&*ctx.store, "carl").await, ["Developers", "QA"]);
    assert_eq!(
        ctx.store
            .edit_group(&SYSTEM, group_of("Nobody", &[]))
            .await
            .unwrap(),
        None
    );

    let on_qa = ctx
        .store
        .add_permission(
            &SYSTEM,
            grant(group("qa"), Task::ViewPackages, Scope::Global),
        )
        .await
        .unwrap();
    assert!(ctx.store.delete_group(&SYSTEM, "Qa").await.unwrap());
    assert!(!ctx.store.delete_group(&SYSTEM, "QA").await.unwrap());
    assert!(
        permissions(&*ctx.store)
            .await
            .iter()
            .all(|p| p.id != on_qa.id),
        "its permissions go with it"
    );
    assert_eq!(groups_of(&*ctx.store, "bob").await, ["Developers"]);
    assert_eq!(groups_of(&*ctx.store, "carl").await, ["Developers"]);
    let names: Vec<String> = ctx
        .store
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["Administrators", "Auditors", "Developers"]);
    for name in ["Administrators", "ADMINISTRATORS"] {
        assert!(matches!(
            ctx.store.delete_group(&SYSTEM, name).await,
            Err(StoreError::ProtectedGroup)
        ));
    }
}

async fn group_writes_with_unknown_members_change_nothing(ctx: Ctx) {
    ctx.store
        .create_user(&SYSTEM, new_user("Bob"))
        .await
        .unwrap();
    match ctx
        .store
        .create_group(&SYSTEM, group_of("QA", &["Bob", "ghost"]))
        .await
    {
        Err(StoreError::UnknownUser(name)) => assert_eq!(name, "ghost"),
        other => panic!("{other:?}"),
    }
    assert_eq!(groups_of(&*ctx.store, "Bob").await, ["Developers"]);
    let names: Vec<String> = ctx
        .store
        .list_groups()
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.name)
        .collect();
    assert_eq!(names, ["Administrators", "Developers"], "rolled back");
    match ctx
        .store
        .edit_group(&SYSTEM, group_of("developers", &["ghost"]))
        .await
    {
        Err(StoreError::UnknownUser(name)) => assert_eq!(name, "ghost"),
        other => panic!("{other:?}"),
    }
    assert_eq!(groups_of(&*ctx.store, "Bob").await, ["Developers"]);
}

async fn user_groups_take_the_groups_spelling_and_unknown_groups_are_created(ctx: Ctx) {
    let u = ctx
        .store
        .create_user(
            &SYSTEM,
            UserChange {
                groups: Some(vec![
                    "administrators".into(),
                    "Testers".into(),
                    "ADMINISTRATORS".into(),
                    "testers".into(),
                ]),
                ..new_user("Tess")
            },
        )
        .await
        .unwrap();
    assert_eq!(u.groups, ["Administrators", "Testers"]);
    let updated = ctx
        .store
        .update_user(
            &SYSTEM,
            UserChange {
                name: "tess".into(),
                groups: Some(vec![
                    "TESTERS".into(),
                    "Ｑａ".into(),
                    "administrators".into(),
                ]),
                ..UserChange::default()
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.groups, ["Testers", "Ｑａ", "Administrators"]);
    assert_eq!(
        ctx.store.list_groups().await.unwrap(),
        [
            group_of("Administrators", &["Tess"]),
            group_of("Ｑａ", &["Tess"]),
            group_of("Testers", &["Tess"]),
        ]
    );
    assert!(
        matches!(
            ctx.store.create_group(&SYSTEM, group_of("qa", &[])).await,
            Err(StoreError::DuplicateGroup)
        ),
        "names compare under Unicode folding"
    );
}

async fn deleting_a_user_deletes_their_permissions(ctx: Ctx) {
    ctx.store
        .create_user(&SYSTEM, new_user("Dora"))
        .await
        .unwrap();
    ctx.store
        .create_user(&SYSTEM, new_user("Ed"))
        .await
        .unwrap();
    ctx.store
        .add_permission(
            &SYSTEM,
            grant(user("dora"), Task::ViewPackages, Scope::Global),
        )
        .await
        .unwrap();
    let eds = ctx
        .store
        .add_permission(
            &SYSTEM,
            grant(user("ed"), Task::ViewPackages, Scope::Global),
        )
        .await
        .unwrap();
    assert!(ctx.store.delete_user(&SYSTEM, "DORA").await.unwrap());
    let left = permissions(&*ctx.store).await;
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(left.contains(&eds));
    ctx.store
        .create_user(&SYSTEM, new_user("Dora"))
        .await
        .unwrap();
    assert_eq!(
        ctx.store.security().await.unwrap().of_user("Dora").count(),
        0,
        "a new user of the same name inherits nothing"
    );
}

async fn no_permission_or_group_write_removes_the_last_administrator(ctx: Ctx) {
    let store = &*ctx.store;
    store.create_user(&SYSTEM, admin("Ann")).await.unwrap();
    store.create_user(&SYSTEM, new_user("Bob")).await.unwrap();
    let admins_grant = permissions(store).await[0].clone();
    let global = || Scope::Global;

    // Ann is the only administrator.
    assert!(is_last_admin(
        store
            .add_permission(&SYSTEM, deny(user("ann"), Task::Administer, global()))
            .await
    ));
    assert!(is_last_admin(
        store
            .add_permission(
                &SYSTEM,
                deny(group("Administrators"), Task::Administer, global())
            )
            .await
    ));
    assert!(is_last_admin(
        store.delete_permission(&SYSTEM, admins_grant.id).await
    ));
    assert!(is_last_admin(
        store
            .edit_group(&SYSTEM, group_of("Administrators", &[]))
            .await
    ));
    assert_eq!(admin_names(store).await, ["Ann"], "nothing changed");
    assert_eq!(
        permissions(store).await,
        std::slice::from_ref(&admins_grant)
    );
    assert_eq!(groups_of(store, "ann").await, ["Administrators"]);
    assert_eq!(groups_of(store, "bob").await, ["Developers"]);

    // Denies that do not remove Administer globally are fine.
    store
        .add_permission(
            &SYSTEM,
            deny(user("ann"), Task::Administer, Scope::Feed("f".into())),
        )
        .await
        .unwrap();
    store
        .add_permission(&SYSTEM, deny(user("ann"), Task::ManageFeed, global()))
        .await
        .unwrap();

    // Bob administers through the group Ops; Ann steps down.
    store
        .create_group(&SYSTEM, group_of("Ops", &["bob"]))
        .await
        .unwrap();
    let ops_grant = store
        .add_permission(&SYSTEM, grant(group("ops"), Task::Administer, global()))
        .await
        .unwrap();
    store
        .update_user(&SYSTEM, demote("Ann"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin_names(store).await, ["Bob"]);
    assert!(is_last_admin(store.delete_group(&SYSTEM, "Ops").await));
    assert!(is_last_admin(
        store.edit_group(&SYSTEM, group_of("ops", &[])).await
    ));
    assert!(is_last_admin(
        store.delete_permission(&SYSTEM, ops_grant.id).await
    ));
    assert!(is_last_admin(store.delete_user(&SYSTEM, "bob").await));
    assert!(is_last_admin(
        store
            .update_user(
                &SYSTEM,
                UserChange {
                    name: "bob".into(),
                    groups: Some(vec!["Developers".into()]),
                    ..UserChange::default()
                }
            )
            .await
    ));
    assert_eq!(admin_names(store).await, ["Bob"]);
    assert_eq!(groups_of(store, "bob").await, ["Developers", "Ops"]);

    // With another administrator, each of those goes through.
    store
        .edit_group(&SYSTEM, group_of("Administrators", &["Ann"]))
        .await
        .unwrap()
        .unwrap();
    assert!(store
        .delete_permission(&SYSTEM, ops_grant.id)
        .await
        .unwrap());
    assert!(store.delete_group(&SYSTEM, "ops").await.unwrap());
    assert_eq!(admin_names(store).await, ["Ann"]);
}

/// A database without administrators who can log in (e.g. only `Admin`
/// without a password) accepts any change: there was none to lose.
async fn the_administrator_check_counts_only_when_there_was_one(ctx: Ctx) {
    let store = &*ctx.store;
    store
        .create_user(
            &SYSTEM,
            UserChange {
                password_hash: Some(String::new()),
                ..admin("Nopass")
            },
        )
        .await
        .unwrap();
    store.create_user(&SYSTEM, new_user("Bob")).await.unwrap();
    assert!(admin_names(store).await.is_empty());
    let denied = store
        .add_permission(
            &SYSTEM,
            deny(group("administrators"), Task::Administer, Scope::Global),
        )
        .await
        .unwrap();
    assert!(store.delete_permission(&SYSTEM, denied.id).await.unwrap());
    store
        .edit_group(&SYSTEM, group_of("Administrators", &["bob"]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(admin_names(store).await, ["Bob"]);
}

/// Two administrators, one through `Administrators`, one through a grant of
/// their own, removed at the same moment by a group edit and a permission
/// delete: one succeeds, the other is refused, every round.
async fn concurrent_permission_and_group_writes_leave_an_administrator(ctx: Ctx) {
    let store = ctx.store.clone();
    let mut old_grants = Vec::new();
    for round in 0..15 {
        let (a, b) = (format!("a{round}"), format!("b{round}"));
        store.create_user(&SYSTEM, admin(&a)).await.unwrap();
        store.create_user(&SYSTEM, new_user(&b)).await.unwrap();
        let b_grant = store
            .add_permission(&SYSTEM, grant(user(&b), Task::Administer, Scope::Global))
            .await
            .unwrap();
        // Only this round's pair administers.
        store
            .edit_group(&SYSTEM, group_of("Administrators", &[&a]))
            .await
            .unwrap();
        for id in old_grants.drain(..) {
            store.delete_permission(&SYSTEM, id).await.unwrap();
        }
        let (ra, rb) = tokio::join!(
            store.edit_group(&SYSTEM, group_of("Administrators", &[])),
            store.delete_permission(&SYSTEM, b_grant.id)
        );
        let refused = usize::from(matches!(ra, Err(StoreError::LastAdministrator)))
            + usize::from(matches!(rb, Err(StoreError::LastAdministrator)));
        assert_eq!(refused, 1, "round {round}: {ra:?} {rb:?}");
        assert_eq!(admin_names(&*store).await.len(), 1, "round {round}");
        if rb.is_err() {
            old_grants.push(b_grant.id);
        }
    }
}

async fn the_cached_security_model_changes_with_every_write(ctx: Ctx) {
    let cache = store::CachedStore::new(ctx.store.clone());
    let first = cache.security().await.unwrap();
    assert!(
        Arc::ptr_eq(&first, &cache.security().await.unwrap()),
        "served from memory"
    );
    let ann = cache.create_user(&SYSTEM, admin("Ann")).await.unwrap();
    cache.create_user(&SYSTEM, new_user("Bob")).await.unwrap();
    let added = cache
        .add_permission(&SYSTEM, grant(user("bob"), Task::Administer, Scope::Global))
        .await
        .unwrap();
    assert!(cache
        .security()
        .await
        .unwrap()
        .permissions()
        .contains(&added));
    let bob = cache.user_login("bob").await.unwrap().unwrap().user;
    assert!(policy::is_admin(&cache.security().await.unwrap(), &bob));
    assert!(cache.delete_permission(&SYSTEM, added.id).await.unwrap());
    assert!(!policy::is_admin(&cache.security().await.unwrap(), &bob));

    // Group edits reach the users (and keys) the cache holds.
    cache
        .create_group(&SYSTEM, group_of("Ops", &["bob"]))
        .await
        .unwrap();
    let ops = cache
        .add_permission(
            &SYSTEM,
            grant(group("Ops"), Task::Administer, Scope::Global),
        )
        .await
        .unwrap();
    let bob = cache.user_login("bob").await.unwrap().unwrap().user;
    assert_eq!(bob.groups, ["Developers", "Ops"]);
    assert!(policy::is_admin(&cache.security().await.unwrap(), &bob));
    cache
        .edit_group(&SYSTEM, group_of("ops", &[]))
        .await
        .unwrap();
    let bob = cache.user_login("bob").await.unwrap().unwrap().user;
    assert_eq!(bob.groups, ["Developers"]);
    cache
        .edit_group(&SYSTEM, group_of("ops", &["Bob"]))
        .await
        .unwrap();
    assert!(cache.delete_group(&SYSTEM, "ops").await.unwrap());
    assert!(!cache.security().await.unwrap().permissions().contains(&ops));
    assert_eq!(
        cache.user_login("bob").await.unwrap().unwrap().user.groups,
        ["Developers"]
    );

    // A refused write leaves the model as it was.
    let before = cache.security().await.unwrap();
    assert!(is_last_admin(
        cache
            .add_permission(&SYSTEM, deny(user("ann"), Task::Administer, Scope::Global))
            .await
    ));
    assert_eq!(
        cache.security().await.unwrap().permissions(),
        before.permissions()
    );
    assert!(policy::is_admin(&cache.security().await.unwrap(), &ann));
    // The cache and the store agree.
    assert_eq!(
        cache.security().await.unwrap().permissions(),
        ctx.store.security().await.unwrap().permissions()
    );
}

/// A database migrated before its users' groups were stored gets them at open.
async fn opening_an_old_database_adds_the_groups_its_users_name(ctx: Ctx) {
    ctx.store
        .create_user(
            &SYSTEM,
            UserChange {
                groups: Some(vec!["Ｄevs".into(), "Admins-2".into()]),
                ..new_user("Old")
            },
        )
        .await
        .unwrap();
    ctx.store.close().await;
    let sql = "DELETE FROM groups WHERE name <> 'Administrators'";
    match &ctx.backend {
        Backend::Sqlite(_) => {
            use sqlx::{Connection, Executor};
            let mut conn = sqlx::SqliteConnection::connect(&ctx.url).await.unwrap();
            conn.execute(sql).await.unwrap();
            conn.close().await.unwrap();
        }
        Backend::Postgres(_) => {
            use sqlx::{Connection, Executor};
            let mut conn = sqlx::PgConnection::connect(&ctx.url).await.unwrap();
            conn.execute(sql).await.unwrap();
            conn.close().await.unwrap();
        }
    }
    let reopened = ctx.open_again().await;
    assert_eq!(
        reopened.list_groups().await.unwrap(),
        [
            group_of("Administrators", &[]),
            group_of("Admins-2", &["Old"]),
            group_of("Ｄevs", &["Old"]),
        ]
    );
    reopened.close().await;
}

// ---- audit --------------------------------------------------------------

/// Every audit entry, newest first.
async fn audit_entries(ctx: &Ctx) -> Vec<proget_api::AuditEntry> {
    let query = domain::AuditQuery {
        limit: 1000,
        ..Default::default()
    };
    ctx.store.list_audit(&query).await.unwrap()
}

/// The newest entry, checked to be the only one added since `before` entries.
async fn one_new_entry(ctx: &Ctx, before: usize, action: &str, target: &str) -> serde_json::Value {
    let entries = audit_entries(ctx).await;
    assert_eq!(
        entries.len(),
        before + 1,
        "one new entry for {action} {target}"
    );
    let newest = &entries[0];
    assert_eq!(
        (newest.action.as_str(), newest.target.as_str()),
        (action, target)
    );
    newest.details.clone()
}

async fn every_successful_write_has_exactly_one_audit_entry_and_a_refused_one_none(ctx: Ctx) {
    let by_key = domain::AuditContext {
        actor: domain::Actor::Key(4242),
        address: Some("127.0.0.9".parse().unwrap()),
        action: None,
        details: None,
    };
    let count = |ctx: &Ctx| {
        let store = ctx.store.clone();
        async move {
            let query = domain::AuditQuery {
                limit: 1000,
                ..Default::default()
            };
            store.list_audit(&query).await.unwrap().len()
        }
    };
    assert_eq!(count(&ctx).await, 0, "a new database has no entries");

    ctx.store.create_user(&by_key, admin("Ann")).await.unwrap();
    one_new_entry(&ctx, 0, "user.add", "user Ann").await;
    let entry = audit_entries(&ctx).await.remove(0);
    assert_eq!(entry.actor, "key 4242");
    assert_eq!(entry.address.as_deref(), Some("127.0.0.9"));
    assert!(
        !entry.details.to_string().contains("argon2"),
        "{}",
        entry.details
    );

    // Refused or no-op writes leave no entry.
    assert!(ctx.store.create_user(&by_key, admin("ann")).await.is_err());
    assert!(ctx.store.delete_user(&by_key, "Ann").await.is_err());
    assert!(ctx.store.update_user(&by_key, demote("Ann")).await.is_err());
    assert!(ctx
        .store
        .update_user(&by_key, new_user("nobody"))
        .await
        .unwrap()
        .is_none());
    assert!(!ctx.store.delete_user(&by_key, "nobody").await.unwrap());
    assert_eq!(count(&ctx).await, 1);

    let edit = UserChange {
        name: "ann".into(),
        email: Some("ann@new.example".into()),
        password_hash: Some("$argon2id$other".into()),
        ..UserChange::default()
    };
    ctx.store.update_user(&by_key, edit).await.unwrap().unwrap();
    let details = one_new_entry(&ctx, 1, "user.edit", "user Ann").await;
    assert_eq!(
        details,
        serde_json::json!({"changed": ["email"], "passwordChanged": true})
    );

    let key = ctx
        .store
        .create_key(&by_key, system_key("k"))
        .await
        .unwrap();
    one_new_entry(&ctx, 2, "apikey.create", &format!("key {}", key.id)).await;
    assert!(ctx
        .store
        .create_key(&by_key, system_key("k"))
        .await
        .is_err());
    assert!(ctx.store.delete_key(&by_key, key.id).await.unwrap());
    let details = one_new_entry(&ctx, 3, "apikey.delete", &format!("key {}", key.id)).await;
    assert_eq!(details, serde_json::json!({}));
    assert!(!ctx.store.delete_key(&by_key, key.id).await.unwrap());
    assert_eq!(count(&ctx).await, 4);
    let own = ctx
        .store
        .create_key(&SYSTEM, system_key("own"))
        .await
        .unwrap();
    let itself = domain::AuditContext {
        actor: domain::Actor::Key(own.id),
        ..by_key.clone()
    };
    assert!(ctx.store.delete_key(&itself, own.id).await.unwrap());
    let details = one_new_entry(&ctx, 5, "apikey.delete", &format!("key {}", own.id)).await;
    assert_eq!(details, serde_json::json!({"selfRevocation": true}));

    let unknown = grant(
        Subject::User("nobody".into()),
        Task::ViewPackages,
        Scope::Global,
    );
    assert!(ctx.store.add_permission(&by_key, unknown).await.is_err());
    let lockout = deny(
        Subject::Group("Administrators".into()),
        Task::Administer,
        Scope::Global,
    );
    assert!(matches!(
        ctx.store.add_permission(&by_key, lockout).await,
        Err(StoreError::LastAdministrator)
    ));
    assert_eq!(count(&ctx).await, 6);
    let view = grant(
        Subject::User("ann".into()),
        Task::ViewPackages,
        Scope::Feed("npm".into()),
    );
    let added = ctx.store.add_permission(&by_key, view).await.unwrap();
    let target = format!("permission {}", added.id);
    let details = one_new_entry(&ctx, 6, "permission.add", &target).await;
    assert_eq!(
        details,
        serde_json::json!({"subject": "user Ann", "task": "View & Download Packages", "feed": "npm", "deny": false})
    );
    assert!(ctx
        .store
        .delete_permission(&by_key, added.id)
        .await
        .unwrap());
    one_new_entry(&ctx, 7, "permission.delete", &target).await;
    assert!(!ctx
        .store
        .delete_permission(&by_key, added.id)
        .await
        .unwrap());

    let ops = Group {
        name: "Ops".into(),
        members: vec!["Ann".into()],
    };
    ctx.store.create_group(&by_key, ops.clone()).await.unwrap();
    one_new_entry(&ctx, 8, "group.add", "group Ops").await;
    assert!(ctx
        .store
        .create_group(
            &by_key,
            Group {
                name: "ops".into(),
                members: vec![]
            }
        )
        .await
        .is_err());
    let unknown_member = Group {
        members: vec!["nobody".into()],
        ..ops.clone()
    };
    assert!(ctx.store.edit_group(&by_key, unknown_member).await.is_err());
    let no_admins = Group {
        name: "Administrators".into(),
        members: vec![],
    };
    assert!(ctx.store.edit_group(&by_key, no_admins).await.is_err());
    assert!(ctx
        .store
        .delete_group(&by_key, "Administrators")
        .await
        .is_err());
    assert_eq!(count(&ctx).await, 9);
    let emptied = Group {
        members: vec![],
        ..ops.clone()
    };
    ctx.store
        .edit_group(&by_key, emptied)
        .await
        .unwrap()
        .unwrap();
    let details = one_new_entry(&ctx, 9, "group.edit", "group Ops").await;
    assert_eq!(
        details,
        serde_json::json!({"members": [], "added": [], "removed": ["Ann"]})
    );
    assert!(ctx.store.delete_group(&by_key, "ops").await.unwrap());
    one_new_entry(&ctx, 10, "group.delete", "group Ops").await;
    assert!(!ctx.store.delete_group(&by_key, "ops").await.unwrap());

    ctx.store.insert_setting("s", "one").await.unwrap();
    assert!(!ctx
        .store
        .replace_setting(&by_key, "s", "wrong", "two")
        .await
        .unwrap());
    assert_eq!(count(&ctx).await, 11);
    let rotation = SYSTEM.with_action("secret.rotate");
    assert!(ctx
        .store
        .replace_setting(&rotation, "s", "one", "two")
        .await
        .unwrap());
    one_new_entry(&ctx, 11, "secret.rotate", "setting s").await;

    let bob = ctx
        .store
        .create_user(&SYSTEM, new_user("Bob"))
        .await
        .unwrap();
    for text in ["b1", "b2"] {
        ctx.store
            .create_key(&SYSTEM, personal_key(text, bob.id))
            .await
            .unwrap();
    }
    assert!(ctx.store.delete_user(&by_key, "BOB").await.unwrap());
    let details = one_new_entry(&ctx, 15, "user.delete", "user Bob").await;
    assert_eq!(details, serde_json::json!({"keysDeleted": 2}));

    assert!(ctx
        .store
        .create_first_user(&SYSTEM, new_user("Late"))
        .await
        .map(|c| !c)
        .unwrap());
    ctx.store
        .record_audit(
            &by_key,
            "limiter.block",
            "address 127.0.0.9",
            serde_json::json!({"seconds": 60}),
        )
        .await
        .unwrap();
    one_new_entry(&ctx, 16, "limiter.block", "address 127.0.0.9").await;

    let ids: Vec<i64> = audit_entries(&ctx).await.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
}

async fn audit_entries_are_listed_newest_first_by_page_and_filter(ctx: Ctx) {
    for i in 0..5 {
        let action = if i % 2 == 0 {
            "even.thing"
        } else {
            "odd.thing"
        };
        ctx.store
            .record_audit(
                &SYSTEM,
                action,
                &format!("t{i}"),
                serde_json::json!({"i": i}),
            )
            .await
            .unwrap();
    }
    let list = |before: Option<i64>, limit: u32, target: Option<&str>, action: Option<&str>| {
        let store = ctx.store.clone();
        let query = domain::AuditQuery {
            before,
            limit,
            target: target.map(str::to_owned),
            action: action.map(str::to_owned),
        };
        async move {
            store
                .list_audit(&query)
                .await
                .unwrap()
                .into_iter()
                .map(|e| e.target)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list(None, 2, None, None).await, ["t4", "t3"]);
    let all = audit_entries(&ctx).await;
    let t3 = all[1].id;
    assert_eq!(list(Some(t3), 2, None, None).await, ["t2", "t1"]);
    assert_eq!(
        list(Some(all[4].id), 2, None, None).await,
        Vec::<String>::new()
    );
    assert_eq!(
        list(None, 10, None, Some("even.thing")).await,
        ["t4", "t2", "t0"]
    );
    assert_eq!(
        list(Some(t3), 10, None, Some("even.thing")).await,
        ["t2", "t0"]
    );
    assert_eq!(list(None, 10, Some("t1"), None).await, ["t1"]);
    assert_eq!(
        list(None, 10, Some("t1"), Some("even.thing")).await,
        Vec::<String>::new()
    );
    assert_eq!(all[0].details, serde_json::json!({"i": 4}));
    assert_eq!(all[0].actor, "system");
    assert_eq!(all[0].address, None);
    assert!(
        all[0].time.ends_with('Z') && all[0].time.len() == 20,
        "{}",
        all[0].time
    );
}

async fn audit_entries_are_pruned_by_age_in_batches(ctx: Ctx) {
    for i in 0..5 {
        ctx.store
            .record_audit(&SYSTEM, "x.y", &format!("t{i}"), serde_json::json!({}))
            .await
            .unwrap();
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(
        ctx.store.prune_audit(now - 3600, 2).await.unwrap(),
        0,
        "nothing is that old"
    );
    assert_eq!(ctx.store.prune_audit(now + 10, 2).await.unwrap(), 2);
    let left: Vec<String> = audit_entries(&ctx)
        .await
        .into_iter()
        .map(|e| e.target)
        .collect();
    assert_eq!(left, ["t4", "t3", "t2"], "the oldest go first");
    assert_eq!(ctx.store.prune_audit(now + 10, 2).await.unwrap(), 2);
    assert_eq!(ctx.store.prune_audit(now + 10, 2).await.unwrap(), 1);
    assert_eq!(ctx.store.prune_audit(now + 10, 2).await.unwrap(), 0);
    assert!(audit_entries(&ctx).await.is_empty());
}
