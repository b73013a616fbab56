//! The usage writer's storage contract (`usage.md` sections 1 and 2): last
//! use, access-log entries and their retention, on SQLite and PostgreSQL.

mod common;

use std::future::Future;
use std::sync::Arc;

use latchkey::domain::{AuditContext, Digester, NewKey};

const SYSTEM: AuditContext = AuditContext::SYSTEM;
use latchkey::store::{self, AccessRecord, KeyUse, Store, UsageBatch};
use proget_api::{ApiKeyType, Logging, SystemApi};

use common::TestDatabase;

macro_rules! store_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
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
    last_use_only_moves_forward_and_ignores_deleted_keys,
    last_use_is_the_greatest_over_nodes,
    overlapping_batches_of_two_nodes_never_fail,
    json_pages_carry_last_use_as_the_wire_does,
    entries_are_listed_newest_first_and_paged,
    entries_outlive_their_key,
    old_entries_are_pruned_in_batches,
    entries_beyond_the_newest_per_key_are_pruned,
}

fn block_on<F: Future>(test: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(test)
}

/// One test's store and its URL (to open a second node).
struct Ctx {
    store: Arc<dyn Store>,
    url: String,
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
        test(Ctx { store, url }).await
    })
}

fn on_postgres<F, Fut>(name: &str, test: F)
where
    F: FnOnce(Ctx) -> Fut,
    Fut: Future<Output = ()>,
{
    common::postgres_url(name);
    let db = TestDatabase::create();
    let url = db.url.clone();
    block_on(async {
        let store = store::open(&url).await.expect("open PostgreSQL store");
        test(Ctx {
            store: store.clone(),
            url,
        })
        .await;
        store.close().await;
    });
    drop(db);
}

fn key(text: &str) -> NewKey {
    NewKey {
        digest: Digester::new(b"usage test secret").key(text),
        key_type: ApiKeyType::System,
        display_name: None,
        description: None,
        system_apis: vec![SystemApi::FullControl],
        package_permissions: vec![],
        feed: None,
        feed_group: None,
        expiration: None,
        logging: Logging::Request,
        user_id: None,
        personal_cap: None,
    }
}

fn used(key: i32, at: i64, from: &str) -> UsageBatch {
    UsageBatch {
        uses: vec![KeyUse {
            key,
            at,
            from: Some(from.into()),
        }],
        entries: vec![],
    }
}

fn entry(key: i32, time_ms: i64, path: &str) -> AccessRecord {
    AccessRecord {
        key_id: key,
        time_ms,
        method: "GET".into(),
        path: path.into(),
        status: 200,
        duration_ms: 3,
        address: Some("127.0.0.1".into()),
        user_agent: Some("test".into()),
        request_body: Some("{}".into()),
        truncated: true,
        ..AccessRecord::default()
    }
}

async fn last_used(store: &dyn Store, id: i32) -> (Option<i64>, Option<String>) {
    let k = store.key_by_id(id).await.unwrap().expect("key exists");
    (
        k.usage.last_used.map(|t| t.unix_timestamp()),
        k.usage.last_used_from,
    )
}

async fn last_use_only_moves_forward_and_ignores_deleted_keys(ctx: Ctx) {
    let s = ctx.store.as_ref();
    let k = s.create_key(&SYSTEM, key("a")).await.unwrap();
    assert_eq!(last_used(s, k.id).await, (None, None));
    assert!(k.usage.created.is_some(), "created is recorded");
    s.record_usage(&used(k.id, 2_000_000_000, "10.0.0.1"))
        .await
        .unwrap();
    assert_eq!(
        last_used(s, k.id).await,
        (Some(2_000_000_000), Some("10.0.0.1".into()))
    );
    s.record_usage(&used(k.id, 1_999_999_000, "10.0.0.2"))
        .await
        .unwrap();
    assert_eq!(
        last_used(s, k.id).await,
        (Some(2_000_000_000), Some("10.0.0.1".into())),
        "an older use changes nothing"
    );
    s.record_usage(&used(k.id, 2_000_000_060, "10.0.0.3"))
        .await
        .unwrap();
    assert_eq!(
        last_used(s, k.id).await,
        (Some(2_000_000_060), Some("10.0.0.3".into()))
    );
    assert!(s.delete_key(&SYSTEM, k.id).await.unwrap());
    s.record_usage(&used(k.id, 2_000_000_120, "10.0.0.4"))
        .await
        .expect("a deleted key's use is ignored");
}

async fn last_use_is_the_greatest_over_nodes(ctx: Ctx) {
    let k = ctx.store.create_key(&SYSTEM, key("a")).await.unwrap();
    let other = store::open(&ctx.url).await.unwrap();
    // Two nodes writing their own batches, in either order.
    let (newer, older) = (
        used(k.id, 2_000_000_100, "10.0.0.1"),
        used(k.id, 2_000_000_000, "10.0.0.2"),
    );
    let (a, b) = tokio::join!(ctx.store.record_usage(&newer), other.record_usage(&older),);
    a.unwrap();
    b.unwrap();
    assert_eq!(
        last_used(other.as_ref(), k.id).await,
        (Some(2_000_000_100), Some("10.0.0.1".into()))
    );
    other.close().await;
}

/// Two nodes writing batches over the same keys in opposite orders at once:
/// every batch commits (rows locked in one order: no deadlock), and the
/// newest use wins.
async fn overlapping_batches_of_two_nodes_never_fail(ctx: Ctx) {
    let mut ids = Vec::new();
    for i in 0..1000 {
        ids.push(
            ctx.store
                .create_key(&SYSTEM, key(&format!("k{i}")))
                .await
                .unwrap()
                .id,
        );
    }
    let other = store::open(&ctx.url).await.unwrap();
    let batch = |order: &[i32], at: i64, from: &str| UsageBatch {
        uses: order
            .iter()
            .map(|&key| KeyUse {
                key,
                at,
                from: Some(from.into()),
            })
            .collect(),
        entries: vec![],
    };
    let reversed: Vec<i32> = ids.iter().rev().copied().collect();
    for round in 0..10 {
        let at = 2_000_000_000 + round * 60;
        let (first, second) = (
            batch(&ids, at, "10.0.0.1"),
            batch(&reversed, at + 1, "10.0.0.2"),
        );
        let (a, b) = tokio::join!(ctx.store.record_usage(&first), other.record_usage(&second));
        a.unwrap_or_else(|e| panic!("round {round}, node 1: {e}"));
        b.unwrap_or_else(|e| panic!("round {round}, node 2: {e}"));
    }
    for id in [ids[0], ids[999]] {
        assert_eq!(
            last_used(ctx.store.as_ref(), id).await,
            (Some(2_000_000_000 + 9 * 60 + 1), Some("10.0.0.2".into()))
        );
    }
    other.close().await;
}

async fn json_pages_carry_last_use_as_the_wire_does(ctx: Ctx) {
    let s = ctx.store.as_ref();
    let a = s.create_key(&SYSTEM, key("a")).await.unwrap();
    s.create_key(&SYSTEM, key("b")).await.unwrap();
    s.record_usage(&used(a.id, 2_000_000_000, "::1"))
        .await
        .unwrap();
    let expected: Vec<serde_json::Value> = s
        .keys_after(i32::MIN, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|k| serde_json::to_value(proget_api::ApiKeyInfo::from(k)).unwrap())
        .collect();
    assert_eq!(expected[0]["lastUsed"], "2033-05-18T03:33:20Z");
    assert_eq!(expected[0]["lastUsedFrom"], "::1");
    assert!(expected[1].get("lastUsed").is_none());
    assert!(expected[1]["created"].is_string());
    let page = s.key_page_json(i32::MIN, 10).await.unwrap();
    let listed: Vec<serde_json::Value> =
        serde_json::from_str(&format!("[{}]", page.items)).unwrap();
    assert_eq!(listed, expected);
}

async fn entries_are_listed_newest_first_and_paged(ctx: Ctx) {
    let s = ctx.store.as_ref();
    let k = s.create_key(&SYSTEM, key("a")).await.unwrap();
    let other = s.create_key(&SYSTEM, key("b")).await.unwrap();
    let batch = UsageBatch {
        uses: vec![],
        entries: (0..5)
            .map(|i| entry(k.id, 1_000 + i, &format!("/p{i}")))
            .chain([entry(other.id, 5_000, "/other")])
            .collect(),
    };
    s.record_usage(&batch).await.unwrap();
    let first = s.access_log(k.id, None, 2).await.unwrap();
    let paths: Vec<&str> = first.iter().map(|e| e.record.path.as_str()).collect();
    assert_eq!(paths, ["/p4", "/p3"]);
    assert_eq!(first[0].record, batch.entries[4], "every field round-trips");
    let rest = s.access_log(k.id, Some(first[1].id), 10).await.unwrap();
    let paths: Vec<&str> = rest.iter().map(|e| e.record.path.as_str()).collect();
    assert_eq!(paths, ["/p2", "/p1", "/p0"]);
    assert!(s
        .access_log(k.id, Some(rest[2].id), 10)
        .await
        .unwrap()
        .is_empty());
}

async fn entries_outlive_their_key(ctx: Ctx) {
    let s = ctx.store.as_ref();
    let k = s.create_key(&SYSTEM, key("a")).await.unwrap();
    s.record_usage(&UsageBatch {
        uses: vec![],
        entries: vec![entry(k.id, 1, "/x")],
    })
    .await
    .unwrap();
    assert!(s.delete_key(&SYSTEM, k.id).await.unwrap());
    assert_eq!(s.access_log(k.id, None, 10).await.unwrap().len(), 1);
}

async fn old_entries_are_pruned_in_batches(ctx: Ctx) {
    let s = ctx.store.as_ref();
    let k = s.create_key(&SYSTEM, key("a")).await.unwrap();
    s.record_usage(&UsageBatch {
        uses: vec![],
        entries: (0..7).map(|i| entry(k.id, 1_000 + i, "/x")).collect(),
    })
    .await
    .unwrap();
    // Older than 1_005: five entries, at most three per call.
    assert_eq!(s.prune_access_log(1_005, 100, 3).await.unwrap(), 3);
    assert_eq!(s.prune_access_log(1_005, 100, 3).await.unwrap(), 2);
    assert_eq!(s.prune_access_log(1_005, 100, 3).await.unwrap(), 0);
    let left: Vec<i64> = s
        .access_log(k.id, None, 10)
        .await
        .unwrap()
        .iter()
        .map(|e| e.record.time_ms)
        .collect();
    assert_eq!(left, [1_006, 1_005]);
}

async fn entries_beyond_the_newest_per_key_are_pruned(ctx: Ctx) {
    let s = ctx.store.as_ref();
    let a = s.create_key(&SYSTEM, key("a")).await.unwrap();
    let b = s.create_key(&SYSTEM, key("b")).await.unwrap();
    s.record_usage(&UsageBatch {
        uses: vec![],
        entries: (0..6)
            .map(|i| entry(a.id, 1_000 + i, &format!("/a{i}")))
            .chain((0..2).map(|i| entry(b.id, 1_000 + i, "/b")))
            .collect(),
    })
    .await
    .unwrap();
    let mut pruned = 0;
    loop {
        let n = s.prune_access_log(0, 2, 3).await.unwrap();
        if n == 0 {
            break;
        }
        pruned += n;
    }
    assert_eq!(pruned, 4);
    let left: Vec<String> = s
        .access_log(a.id, None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.record.path)
        .collect();
    assert_eq!(left, ["/a5", "/a4"], "the newest are kept");
    assert_eq!(s.access_log(b.id, None, 10).await.unwrap().len(), 2);
}
