//! One node of several on a PostgreSQL database: the per-node cache kept
//! coherent by the protocol in `docs/postgres.md`, whose rules live in
//! [`super::coherence`]. This module does the I/O: the `LISTEN` connection,
//! the periodic check (every `T`/4, which is also the heartbeat), applying
//! the invalidation log to the cache, acknowledging, announcing and
//! forgetting nodes, pruning the log, and the writer's wait.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::coherence::{self, Entry, Invalidation, Lease, Position, Step};
use super::{CachedStore, PostgresStore, Store, StoreError};
use crate::metrics::METRICS;

/// Channel of the invalidation log's notifications (payload: the sequence number).
const INVALIDATION_CHANNEL: &str = "latchkey_invalidation";
/// Channel of acknowledgements (payload: node id, space, sequence number).
const ACK_CHANNEL: &str = "latchkey_ack";
/// Most log rows one check reads; more are read by the next one at once.
const CHECK_ROWS: i64 = 10_000;
/// How long log rows are kept; a node away longer starts over.
const LOG_RETENTION_SECS: f64 = 600.0;
/// How often each node prunes the log and forgets silent nodes.
const PRUNE_EVERY: Duration = Duration::from_secs(30);
/// A waiting writer re-reads the node table this often when no
/// acknowledgement arrives (notifications can be lost).
const ACK_POLL: Duration = Duration::from_millis(100);
/// How long start-up waits for the node to be in sync.
const STARTUP_SYNC: Duration = Duration::from_secs(5);
/// The same when an acknowledgement beyond the log's end as last read arrived.
const REREAD: Duration = Duration::from_millis(5);
/// Longest pause between reconnection attempts.
const MAX_RETRY: Duration = Duration::from_secs(1);

/// This process's node: its lease, and what its writers wait for.
pub struct Node {
    id: String,
    lease: Lease,
    pool: PgPool,
    /// The highest acknowledgement each node announced.
    acks: Mutex<HashMap<String, u64>>,
    acked: Notify,
    state: Mutex<State>,
}

struct State {
    /// Why the node is out of sync (for `/health/json` and the log).
    trouble: String,
    /// Shutting down: the node left the table and confirms nothing more.
    leaving: bool,
}

impl Node {
    /// Whether the cache may answer now (rule 3).
    pub fn trusted(&self) -> bool {
        self.lease.in_sync(coherence::now())
    }

    /// `None` while in sync; otherwise what `/health/json` says.
    pub fn detail(&self) -> Option<String> {
        if self.trusted() {
            return None;
        }
        let trouble = self.lock().trouble.clone();
        Some(format!(
            "out of sync with the other nodes ({trouble}): answering from PostgreSQL directly"
        ))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Silent for this long, a node is forgotten: by then its lease is over.
    fn forget_after(&self) -> Duration {
        self.lease.length() + coherence::margin(self.lease.length())
    }

    /// Rule 4: returns once every other live node acknowledged `seq`, or `T`
    /// plus the margin after `committed`. Failures to read the node table
    /// only make it wait the whole time.
    pub async fn settle(&self, seq: u64, committed: Duration) {
        let started = Instant::now();
        self.wait_for_acks(seq, committed).await;
        METRICS.ack_wait.observe(started.elapsed());
    }

    async fn wait_for_acks(&self, seq: u64, committed: Duration) {
        let lease = self.lease.length();
        let margin = coherence::margin(lease);
        let deadline = committed + lease + margin;
        let mut pending: Option<(Vec<String>, u64)> = None;
        let mut reread = ACK_POLL;
        let mut read_at = Instant::now();
        loop {
            let wake = self.acked.notified();
            tokio::pin!(wake);
            wake.as_mut().enable();
            let now = coherence::now();
            if now >= deadline {
                return;
            }
            if pending.is_none() || read_at.elapsed() >= reread {
                read_at = Instant::now();
                pending = match tokio::time::timeout(deadline - now, self.lagging(seq)).await {
                    Ok(Ok(lagging)) => Some(lagging),
                    Ok(Err(e)) => {
                        tracing::warn!(error = %e, "cannot read the node table; waiting the full sync lease");
                        None
                    }
                    Err(_) => None,
                };
            }
            reread = ACK_POLL;
            if let Some((ids, end)) = &mut pending {
                // Announced since the read; beyond the log's end they do not
                // count (they may predate a restore of the database), but the
                // end may have moved on: read again soon.
                let acks = self.acks.lock().unwrap_or_else(|e| e.into_inner());
                ids.retain(|id| acks.get(id).is_none_or(|&a| a < seq || a > *end));
                if ids.iter().any(|id| acks.get(id).is_some_and(|&a| a > *end)) {
                    reread = REREAD;
                }
            }
            let lagging = pending.as_ref().map(|(ids, _)| ids.len());
            if coherence::wait_over(coherence::now(), committed, lease, margin, lagging) {
                return;
            }
            let left = deadline.saturating_sub(coherence::now());
            let _ = tokio::time::timeout(left.min(reread), wake).await;
        }
    }

    /// The other nodes that have not acknowledged `seq` (or acknowledged
    /// beyond the log's end: positions from before a restore of the
    /// database), after forgetting those silent for longer than their lease (a node's check that races
    /// this either refreshed its heartbeat first, and is waited for, or finds
    /// its row gone and confirms nothing).
    /// Also returns the log's end, beyond which no acknowledgement counts.
    async fn lagging(&self, seq: u64) -> Result<(Vec<String>, u64), sqlx::Error> {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "WITH gone AS (DELETE FROM nodes WHERE heartbeat < now() - make_interval(secs => $3) \
             RETURNING id), \
             log AS (SELECT coalesce(max(seq), 0) AS end_seq FROM invalidations) \
             SELECT id, log.end_seq FROM nodes, log WHERE id <> $2 \
             AND id NOT IN (SELECT id FROM gone) AND (acked < $1 OR acked > log.end_seq)",
        )
        .bind(i64::try_from(seq).unwrap_or(i64::MAX))
        .bind(&self.id)
        .bind(self.forget_after().as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        let end = rows
            .first()
            .map_or(seq, |r| u64::try_from(r.1).unwrap_or(0));
        Ok((rows.into_iter().map(|r| r.0).collect(), end))
    }

    /// Leaves the node table on shutdown (writers stop waiting for this node)
    /// after it stopped trusting its cache.
    pub async fn leave(&self) {
        {
            let mut state = self.lock();
            state.leaving = true;
            self.lease.revoke();
        }
        let _ = sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(&self.id)
            .execute(&self.pool)
            .await;
    }

    /// Trusts the cache until `T` after `sent`, unless shutting down.
    fn confirm(&self, sent: Duration) {
        let mut state = self.lock();
        if !state.leaving {
            self.lease.confirm(sent);
            state.trouble.clear();
        }
    }

    /// Stops trusting the cache; logs the first reason.
    fn distrust(&self, trouble: String) {
        let mut state = self.lock();
        self.lease.revoke();
        if state.trouble.is_empty() {
            tracing::warn!(
                node = %self.id,
                "out of sync with the other nodes ({trouble}): answering from PostgreSQL directly until caught up"
            );
        }
        state.trouble = trouble;
    }
}

/// Opens a PostgreSQL store as one node of several: the store, the cache in
/// front of it, and the tasks that keep the cache coherent. The cache is
/// trusted only once the node has caught up (it starts out of sync).
///
/// `node_id` names the node in the node table; a node restarted with the same
/// id takes over its own row at once, so that writers never wait on the row
/// a killed process left behind.
pub async fn open(url: &str, lease: Duration, node_id: &str) -> Result<Arc<dyn Store>, StoreError> {
    METRICS.postgres.store(true, Relaxed);
    let pg = Arc::new(PostgresStore::open(url).await?);
    let base = pg
        .options()
        .get_application_name()
        .unwrap_or("latchkey")
        .to_owned();
    let id = format!("{base}-{node_id}");
    let node = Arc::new(Node {
        id,
        lease: Lease::new(lease),
        pool: pg.pool().clone(),
        acks: Mutex::new(HashMap::new()),
        acked: Notify::new(),
        state: Mutex::new(State {
            trouble: "starting".into(),
            leaving: false,
        }),
    });
    let position = register(pg.pool(), &node.id, None).await?;
    pg.attach(node.clone());
    let cache = Arc::new(CachedStore::coherent(pg.clone(), node.clone()));
    let (events, inbox) = mpsc::channel(1024);
    let listen_options = pg
        .options()
        .clone()
        .application_name(&format!("{base}-listen"));
    let check_options = pg
        .options()
        .clone()
        .application_name(&format!("{base}-sync"));
    tokio::spawn(listen(node.clone(), listen_options, events));
    tokio::spawn(drive(
        node.clone(),
        cache.clone(),
        check_options,
        Position::at(position),
        inbox,
    ));
    // Start in sync when the database allows (within a few leases); if not,
    // the node serves from PostgreSQL until it has caught up.
    let deadline = Instant::now() + STARTUP_SYNC;
    while !node.trusted() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(cache)
}

/// Announces the node (or announces it again after it was forgotten) and
/// returns its position: the log's end for a new node, whose cache is empty.
async fn register(pool: &PgPool, id: &str, applied: Option<u64>) -> Result<u64, StoreError> {
    let acked: i64 = sqlx::query_scalar(
        "INSERT INTO nodes (id, acked) \
         SELECT $1, coalesce($2, (SELECT max(seq) FROM invalidations), 0) \
         ON CONFLICT (id) DO UPDATE SET heartbeat = now(), acked = EXCLUDED.acked \
         RETURNING acked",
    )
    .bind(id)
    .bind(applied.map(|a| i64::try_from(a).unwrap_or(i64::MAX)))
    .fetch_one(pool)
    .await?;
    Ok(u64::try_from(acked).unwrap_or(0))
}

/// What the listener tells the driver.
enum Event {
    /// A notification of this sequence number.
    Notified(u64),
    /// `LISTEN` is (again) in place: what follows is heard.
    Listening,
    /// The `LISTEN` connection is gone: notifications may be lost.
    Lost(String),
}

/// Holds the `LISTEN` connection, reconnecting when it is lost; wakes
/// waiting writers on acknowledgements.
async fn listen(node: Arc<Node>, options: PgConnectOptions, events: mpsc::Sender<Event>) {
    let mut retry = Duration::from_millis(50);
    loop {
        match connect_listener(&options).await {
            Ok((mut listener, pool)) => {
                retry = Duration::from_millis(50);
                // Acknowledgements heard before are not trusted across a gap.
                node.acks.lock().unwrap_or_else(|e| e.into_inner()).clear();
                if events.send(Event::Listening).await.is_err() {
                    return;
                }
                let why = loop {
                    match listener.try_recv().await {
                        Ok(Some(n)) if n.channel() == ACK_CHANNEL => {
                            if let Some((id, seq)) = n.payload().split_once(' ') {
                                let seq = seq.parse().unwrap_or(0);
                                let mut acks = node.acks.lock().unwrap_or_else(|e| e.into_inner());
                                // The latest: lower after a node started over.
                                acks.insert(id.to_owned(), seq);
                            }
                            node.acked.notify_waiters();
                        }
                        Ok(Some(n)) => {
                            // Unparsable: check anyway.
                            let seq = n.payload().parse().unwrap_or(u64::MAX);
                            // A full queue already holds a check to come.
                            let _ = events.try_send(Event::Notified(seq));
                        }
                        Ok(None) => break "the LISTEN connection was lost".to_owned(),
                        Err(e) => break format!("the LISTEN connection failed: {e}"),
                    }
                };
                drop(listener);
                pool.close().await;
                if events.send(Event::Lost(why)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if events
                    .send(Event::Lost(format!("cannot LISTEN: {e}")))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(MAX_RETRY);
    }
}

async fn connect_listener(options: &PgConnectOptions) -> Result<(PgListener, PgPool), sqlx::Error> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.clone())
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.eager_reconnect(false);
    listener
        .listen_all([INVALIDATION_CHANNEL, ACK_CHANNEL])
        .await?;
    Ok((listener, pool))
}

/// The node's loop: a check after notifications and every `T`/4; applies
/// what it reads, acknowledges, and confirms the lease while listening.
async fn drive(
    node: Arc<Node>,
    cache: Arc<CachedStore>,
    options: PgConnectOptions,
    mut position: Position,
    mut inbox: mpsc::Receiver<Event>,
) {
    let period = node.lease.length() / 4;
    let mut conn: Option<PgConnection> = None;
    let mut listening = false;
    let mut next_check = Instant::now();
    let mut next_prune = Instant::now() + PRUNE_EVERY;
    let mut acked = position.applied();
    loop {
        let mut due = false;
        let take = |event: Event, listening: &mut bool| match event {
            Event::Notified(seq) => position.wants_check(seq),
            Event::Listening => {
                *listening = true;
                true
            }
            Event::Lost(why) => {
                *listening = false;
                node.distrust(why);
                false
            }
        };
        match tokio::time::timeout_at(next_check, inbox.recv()).await {
            Err(_) => due = true,
            Ok(None) => return,
            Ok(Some(event)) => due |= take(event, &mut listening),
        }
        while let Ok(event) = inbox.try_recv() {
            due |= take(event, &mut listening);
        }
        if !due {
            continue;
        }
        next_check = Instant::now() + period;
        if node.lock().leaving {
            return;
        }
        let sent = coherence::now();
        let outcome = match tokio::time::timeout(
            node.lease.length(),
            check(&mut conn, &options, &node.id, position.applied()),
        )
        .await
        {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                conn = None;
                node.distrust(format!("cannot read the invalidation log: {e}"));
                continue;
            }
            Err(_) => {
                conn = None;
                node.distrust("the invalidation log did not answer in time".into());
                continue;
            }
        };
        let Some((end, rows)) = outcome else {
            // Forgotten (silent too long): announce the node again; the next
            // check, after that, may confirm.
            node.distrust("this node was silent too long and was forgotten".into());
            if let Err(e) = register(&node.pool, &node.id, Some(position.applied())).await {
                tracing::warn!(error = %e, "cannot announce this node again");
            }
            next_check = Instant::now();
            continue;
        };
        let full = rows.len() as i64 >= CHECK_ROWS;
        match position.take(&rows, end) {
            Step::Apply(changes) => {
                for what in changes {
                    cache.apply(what);
                    METRICS.invalidations_applied.fetch_add(1, Relaxed);
                }
            }
            Step::StartOver => {
                cache.apply(Invalidation::All);
                METRICS.invalidations_applied.fetch_add(1, Relaxed);
            }
        }
        if position.applied() != acked {
            match ack(&node.pool, &node.id, position.applied()).await {
                Ok(true) => acked = position.applied(),
                Ok(false) => {
                    node.distrust("this node was silent too long and was forgotten".into());
                    next_check = Instant::now();
                    continue;
                }
                Err(e) => {
                    node.distrust(format!("cannot acknowledge: {e}"));
                    continue;
                }
            }
        }
        if full {
            next_check = Instant::now();
        } else if listening {
            let was_trusted = node.lock().trouble.is_empty();
            node.confirm(sent);
            if !was_trusted {
                tracing::info!(node = %node.id, seq = position.applied(), "in sync with the other nodes");
            }
        }
        if Instant::now() >= next_prune {
            next_prune = Instant::now() + PRUNE_EVERY;
            if let Err(e) = prune(&node.pool, node.forget_after()).await {
                tracing::warn!(error = %e, "cannot prune the invalidation log");
            }
        }
    }
}

/// One check on the node's own connection: numbers pending log entries,
/// then refreshes the heartbeat and reads every log row after `applied` and
/// the log's end, in one statement (one snapshot, taken after the check was
/// sent). `None` when the node's row
/// is gone.
async fn check(
    conn: &mut Option<PgConnection>,
    options: &PgConnectOptions,
    id: &str,
    applied: u64,
) -> Result<Option<(u64, Vec<Entry>)>, sqlx::Error> {
    if conn.is_none() {
        *conn = Some(PgConnection::connect_with(options).await?);
    }
    let Some(c) = conn.as_mut() else {
        return Ok(None);
    };
    // Entries committed but not numbered yet (their writer died, or it is
    // numbering them right now) are numbered first, so that the read below
    // sees every change committed before the check was sent.
    super::postgres::number(&mut *c).await?;
    type Row = (i64, i64, Option<i64>, Option<String>, Option<i64>);
    let rows: Vec<Row> = sqlx::query_as(
        "WITH me AS (UPDATE nodes SET heartbeat = now() WHERE id = $1 RETURNING id) \
         SELECT (SELECT count(*) FROM me), (SELECT coalesce(max(seq), 0) FROM invalidations), \
         i.seq, i.kind, i.target FROM (SELECT 1) one \
         LEFT JOIN LATERAL (SELECT seq, kind, target FROM invalidations WHERE seq > $2 \
         ORDER BY seq LIMIT $3) i ON true",
    )
    .bind(id)
    .bind(i64::try_from(applied).unwrap_or(i64::MAX))
    .bind(CHECK_ROWS)
    .fetch_all(&mut *c)
    .await?;
    let Some(&(present, end, ..)) = rows.first() else {
        return Ok(None);
    };
    if present == 0 {
        return Ok(None);
    }
    let end = u64::try_from(end).unwrap_or(0);
    Ok(Some((
        end,
        rows.into_iter()
            .filter_map(|(_, _, seq, kind, target)| {
                let seq = u64::try_from(seq?).ok()?;
                Some(Entry {
                    seq,
                    what: Invalidation::from_columns(kind.as_deref().unwrap_or(""), target),
                })
            })
            .collect(),
    )))
}

/// Records the acknowledgement and wakes waiting writers; `false` when the
/// node was forgotten.
async fn ack(pool: &PgPool, id: &str, applied: u64) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT latchkey_ack($1, $2)")
        .bind(id)
        .bind(i64::try_from(applied).unwrap_or(i64::MAX))
        .fetch_one(pool)
        .await
}

/// Deletes old log rows (never the newest, which numbers the next) and
/// forgets silent nodes.
async fn prune(pool: &PgPool, forget_after: Duration) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM invalidations WHERE seq IN (SELECT seq FROM invalidations \
         WHERE seq < (SELECT max(seq) FROM invalidations) \
         AND created < now() - make_interval(secs => $1) ORDER BY seq LIMIT 10000)",
    )
    .bind(LOG_RETENTION_SECS)
    .execute(pool)
    .await?;
    sqlx::query("DELETE FROM nodes WHERE heartbeat < now() - make_interval(secs => $1)")
        .bind(forget_after.as_secs_f64())
        .execute(pool)
        .await?;
    Ok(())
}
