//! Usage recording (`usage.md` sections 1 and 2): the last use of every key
//! and the access logs of keys whose `logging` asks for them.
//!
//! One component, off the request path: requests hand uses and entries to a
//! bounded queue with `try_send` (a full queue drops and counts, reported
//! once a minute; a request never waits or fails for it), and one writer
//! task stores them in batches, one transaction each. Last use is coalesced
//! in memory first: a key's use is queued at most once per minute, through
//! sharded maps, so no lock is shared by all requests.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::domain::KeyId;
use crate::store::{AccessRecord, KeyUse, Store, UsageBatch};

pub mod redact;

/// Precision of last use: a key's use is written at most once per window.
const WINDOW: Duration = Duration::from_secs(60);
/// Longest an access-log entry waits in memory before its batch is written.
const FLUSH: Duration = Duration::from_secs(1);
/// Uses and entries waiting for the writer; more are dropped and counted.
const QUEUE: usize = 16 * 1024;
/// Most body bytes queued at once (entries beyond it are dropped and
/// counted): memory stays bounded however large the logged bodies.
const MAX_QUEUED_BYTES: usize = 32 * 1024 * 1024;
/// Most uses and entries in one transaction.
const MAX_BATCH: usize = 2048;
/// Shards of the last-use map.
const SHARDS: usize = 64;
/// Keys remembered per shard before it starts over (memory stays bounded;
/// starting over costs at most one extra write per key).
const SHARD_CAPACITY: usize = 16 * 1024;
/// Entries deleted by one pruning statement.
const PRUNE_BATCH: u32 = 500;
/// Pause between pruning rounds.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Test-only: `LATCHKEY_USAGE_FLUSH_MS` shortens the last-use window, the
/// batch interval and the pruning pause to this many milliseconds, so that
/// tests need not wait a minute. Undocumented for operators.
pub const FLUSH_ENV: &str = "LATCHKEY_USAGE_FLUSH_MS";

/// Benchmark-only: `LATCHKEY_USAGE_TRACKING=off` turns last-use tracking
/// off, to measure what it costs (access logs are kept as keys ask).
/// Undocumented for operators.
pub const TRACKING_ENV: &str = "LATCHKEY_USAGE_TRACKING";

/// Retention of access-log entries.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Entries older than this many days are pruned.
    pub days: u32,
    /// Entries beyond the newest this many of a key are pruned.
    pub max_per_key: u32,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            days: 30,
            max_per_key: 10_000,
        }
    }
}

/// Timing of the recorder.
#[derive(Debug, Clone, Copy)]
struct Timing {
    window_ms: i64,
    flush: Duration,
    prune_every: Duration,
}

impl Timing {
    fn from_env() -> Timing {
        match std::env::var(FLUSH_ENV)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|ms| *ms > 0)
        {
            Some(ms) => Timing {
                window_ms: i64::try_from(ms).unwrap_or(i64::MAX),
                flush: Duration::from_millis(ms),
                prune_every: Duration::from_millis(ms),
            },
            None => Timing {
                window_ms: WINDOW.as_millis() as i64,
                flush: FLUSH,
                prune_every: PRUNE_EVERY,
            },
        }
    }
}

enum Event {
    Use(KeyUse),
    Entry(AccessRecord),
    /// Write what is queued now; answered once it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The usage recorder shared by every request.
pub struct Usage {
    queue: mpsc::Sender<Event>,
    /// Per key, the window its last queued use fell in.
    /// Keyed by server-assigned ids, so a fast hash cannot be steered by clients.
    recorded: Box<[Mutex<rustc_hash::FxHashMap<KeyId, i64>>]>,
    window_ms: i64,
    dropped: Arc<AtomicU64>,
    /// Body bytes in the queue.
    queued: Arc<AtomicUsize>,
    /// Whether last use is recorded (see [`TRACKING_ENV`]).
    tracking: bool,
}

impl Usage {
    /// Starts the writer, the drop reporter and the pruner on `store`.
    pub fn start(store: Arc<dyn Store>, retention: Retention) -> Arc<Usage> {
        let timing = Timing::from_env();
        let (queue, events) = mpsc::channel(QUEUE);
        let dropped = Arc::new(AtomicU64::new(0));
        let queued = Arc::new(AtomicUsize::new(0));
        tokio::spawn(writer(store.clone(), events, timing.flush, queued.clone()));
        tokio::spawn(report_drops(dropped.clone()));
        tokio::spawn(pruner(store, retention, timing.prune_every));
        Arc::new(Usage {
            queue,
            recorded: (0..SHARDS).map(|_| Mutex::default()).collect(),
            window_ms: timing.window_ms,
            dropped,
            queued,
            tracking: std::env::var(TRACKING_ENV).map_or(true, |v| v != "off"),
        })
    }

    /// A successful authentication by `key` from `from`: queued at most
    /// once per window and key.
    pub fn used(&self, key: KeyId, from: Option<IpAddr>) {
        if !self.tracking {
            return;
        }
        let now = now_ms();
        let window = now / self.window_ms;
        let shard = &self.recorded[key.unsigned_abs() as usize % SHARDS];
        {
            let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
            if map.get(&key) == Some(&window) {
                return;
            }
            if map.len() >= SHARD_CAPACITY {
                map.clear();
            }
            map.insert(key, window);
        }
        self.send(Event::Use(KeyUse {
            key,
            at: now / 1000,
            from: from.map(|a| a.to_string()),
        }));
    }

    /// Writes everything queued so far (at shutdown); waits for the queue
    /// to have room, unlike the request path.
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.queue.send(Event::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }

    /// Queues an access-log entry (already redacted).
    pub fn log(&self, entry: AccessRecord) {
        let size = body_bytes(&entry);
        if self.queued.fetch_add(size, Ordering::Relaxed) + size > MAX_QUEUED_BYTES {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.drop_one();
            return;
        }
        if self.queue.try_send(Event::Entry(entry)).is_err() {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            self.drop_one();
        }
    }

    /// Counts a dropped use or entry (for the log line and the metrics).
    fn drop_one(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        crate::metrics::METRICS
            .access_log_dropped
            .fetch_add(1, Ordering::Relaxed);
    }

    fn send(&self, event: Event) {
        if self.queue.try_send(event).is_err() {
            self.drop_one();
        }
    }
}

/// The bytes an entry's bodies take.
fn body_bytes(e: &AccessRecord) -> usize {
    e.request_body.as_ref().map_or(0, String::len) + e.response_body.as_ref().map_or(0, String::len)
}

/// Milliseconds since the epoch.
pub fn now_ms() -> i64 {
    // The system clock directly: no calendar date, no 128-bit division (this
    // runs on every verification).
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Writes what the queue holds in batches: waits for a first event, gathers
/// what arrives during `flush`, then stores it in one transaction.
async fn writer(
    store: Arc<dyn Store>,
    mut events: mpsc::Receiver<Event>,
    flush: Duration,
    queued: Arc<AtomicUsize>,
) {
    let mut buf = Vec::with_capacity(MAX_BATCH);
    loop {
        if events.recv_many(&mut buf, MAX_BATCH).await == 0 {
            return;
        }
        let deadline = tokio::time::Instant::now() + flush;
        let mut closed = false;
        let flushing = |buf: &[Event]| buf.iter().any(|e| matches!(e, Event::Flush(_)));
        while buf.len() < MAX_BATCH && !flushing(&buf) {
            let room = MAX_BATCH - buf.len();
            tokio::select! {
                n = events.recv_many(&mut buf, room) => {
                    if n == 0 {
                        closed = true;
                        break;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        let (batch, waiting) = into_batch(buf.drain(..));
        let size: usize = batch.entries.iter().map(body_bytes).sum();
        queued.fetch_sub(size, Ordering::Relaxed);
        let entries = batch.entries.len() as u64;
        let metrics = &crate::metrics::METRICS;
        if let Err(e) = store.record_usage(&batch).await {
            metrics
                .access_log_dropped
                .fetch_add(entries, Ordering::Relaxed);
            tracing::warn!(
                error = %format!("{:#}", anyhow::Error::from(e)),
                uses = batch.uses.len(),
                entries = batch.entries.len(),
                "usage batch lost: the database refused it"
            );
        } else {
            metrics
                .access_log_written
                .fetch_add(entries, Ordering::Relaxed);
        }
        for w in waiting {
            let _ = w.send(());
        }
        if closed {
            return;
        }
    }
}

/// One batch: each key's latest use, and the entries in order; and who
/// waits for it to be written.
fn into_batch(
    events: impl Iterator<Item = Event>,
) -> (UsageBatch, Vec<tokio::sync::oneshot::Sender<()>>) {
    let mut uses: HashMap<KeyId, KeyUse> = HashMap::new();
    let mut entries = Vec::new();
    let mut waiting = Vec::new();
    for e in events {
        match e {
            Event::Use(u) => match uses.get(&u.key) {
                Some(old) if old.at >= u.at => {}
                _ => {
                    uses.insert(u.key, u);
                }
            },
            Event::Entry(r) => entries.push(r),
            Event::Flush(w) => waiting.push(w),
        }
    }
    let mut uses: Vec<KeyUse> = uses.into_values().collect();
    uses.sort_by_key(|u| u.key);
    (UsageBatch { uses, entries }, waiting)
}

/// Logs, once a minute, how many uses and entries a full queue dropped.
async fn report_drops(dropped: Arc<AtomicU64>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tick.tick().await;
        let n = dropped.swap(0, Ordering::Relaxed);
        if n > 0 {
            tracing::warn!(
                dropped = n,
                "usage queue full: last uses or access-log entries were dropped"
            );
        }
    }
}

/// Prunes old and surplus access-log entries in small batches, pausing
/// between rounds so that the writer is never held for long.
async fn pruner(store: Arc<dyn Store>, retention: Retention, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        loop {
            let cutoff = now_ms() - i64::from(retention.days) * 86_400_000;
            match store
                .prune_access_log(cutoff, retention.max_per_key, PRUNE_BATCH)
                .await
            {
                Ok(n) if n > 0 => tokio::time::sleep(Duration::from_millis(10)).await,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(
                        error = %format!("{:#}", anyhow::Error::from(e)),
                        "access-log pruning failed; retrying later"
                    );
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_keeps_each_keys_latest_use() {
        let u = |key, at| {
            Event::Use(KeyUse {
                key,
                at,
                from: Some(format!("a{at}")),
            })
        };
        let (batch, _) =
            into_batch(vec![u(1000, 5), u(1001, 1), u(1000, 9), u(1000, 7)].into_iter());
        assert_eq!(batch.uses.len(), 2);
        assert_eq!(batch.uses[0].at, 9);
        assert_eq!(batch.uses[0].from.as_deref(), Some("a9"));
        assert_eq!(batch.uses[1].key, 1001);
    }
}
