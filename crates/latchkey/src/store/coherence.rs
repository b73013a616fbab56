//! The pure core of the many-nodes protocol (`docs/postgres.md`): what a
//! node may trust, how it applies the invalidation log, what it acknowledges,
//! and how long a writer waits. No I/O and no clock reads: callers pass the
//! time in (a monotonic clock that keeps counting while the machine sleeps,
//! [`now`]), so the tests below can simulate pauses, reordering and loss.
//!
//! The log's sequence numbers are dense and committed in order (writers take
//! one advisory lock from the insert to the commit and number `max + 1`), so
//! "everything up to `n` applied" is one number, and a check that reads every
//! row above it sees a gap-free run or a pruned log (which means: start over).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::{KeyId, UserId};

/// Default sync lease `T`.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(2);

/// The monotonic clock the protocol runs on: `CLOCK_BOOTTIME`, which, unlike
/// `CLOCK_MONOTONIC`, also counts time the machine spent suspended, so a node
/// that wakes up finds its lease over.
pub fn now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME exists on
    // every Linux since 2.6.39. On failure `ts` stays zero, which reads as
    // "long ago" and so as out of sync (fail closed).
    unsafe {
        libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts);
    }
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or(0),
        u32::try_from(ts.tv_nsec).unwrap_or(0),
    )
}

/// What a log entry says changed; every kind names what the caches must drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalidation {
    /// A key changed or went (delete, rotation): its cached verification and
    /// its owner's cached list.
    Key(KeyId),
    /// A user's list of personal keys changed (a key was created).
    KeysOf(UserId),
    /// The permissions changed: the cached security model.
    Security,
    /// Anything else (users, groups, the installation secret, an unknown
    /// kind written by a newer node): everything.
    All,
}

impl Invalidation {
    /// The `kind` and `target` columns of its log row.
    pub fn columns(self) -> (&'static str, Option<i64>) {
        match self {
            Invalidation::Key(id) => ("key", Some(i64::from(id))),
            Invalidation::KeysOf(user) => ("keys-of", Some(user)),
            Invalidation::Security => ("security", None),
            Invalidation::All => ("all", None),
        }
    }

    /// Reads a log row back; anything unknown or malformed is [`Invalidation::All`].
    pub fn from_columns(kind: &str, target: Option<i64>) -> Self {
        match (kind, target) {
            ("key", Some(id)) => KeyId::try_from(id).map_or(Invalidation::All, Invalidation::Key),
            ("keys-of", Some(user)) => Invalidation::KeysOf(user),
            ("security", _) => Invalidation::Security,
            _ => Invalidation::All,
        }
    }
}

/// The sync lease: the cache may be trusted until `T` after the *sending* of
/// the last check that showed everything in the log applied. Lock-free: the
/// hot path reads one atomic.
#[derive(Debug)]
pub struct Lease {
    length: Duration,
    /// Nanoseconds of [`now`] until which the cache is trusted; 0: never.
    until: AtomicU64,
}

impl Lease {
    /// A lease of `length`, not yet confirmed.
    pub fn new(length: Duration) -> Self {
        Lease {
            length,
            until: AtomicU64::new(0),
        }
    }

    /// A lease that never ends: a store only this process writes (SQLite).
    pub fn always() -> Self {
        Lease {
            length: Duration::MAX,
            until: AtomicU64::new(u64::MAX),
        }
    }

    /// `T`.
    pub fn length(&self) -> Duration {
        self.length
    }

    /// A check sent at `sent` showed everything applied.
    pub fn confirm(&self, sent: Duration) {
        let until = nanos(sent.saturating_add(self.length));
        self.until.fetch_max(until, Ordering::AcqRel);
    }

    /// Stops trusting the cache now (the `LISTEN` connection dropped, the
    /// node was forgotten, a check failed to apply).
    pub fn revoke(&self) {
        self.until.store(0, Ordering::Release);
    }

    /// Whether the cache may answer at `now`.
    pub fn in_sync(&self, now: Duration) -> bool {
        nanos(now) < self.until.load(Ordering::Acquire)
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// One row of the invalidation log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Its sequence number (dense, from 1).
    pub seq: u64,
    /// What changed.
    pub what: Invalidation,
}

/// What a node does with the result of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Drop these from the cache, in order.
    Apply(Vec<Invalidation>),
    /// The log no longer holds everything since the last applied entry
    /// (pruned while the node was away): drop everything.
    StartOver,
}

/// A node's position in the log: everything up to `applied` is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    applied: u64,
}

impl Position {
    /// A node that starts with an empty cache at the log's current end.
    pub fn at(applied: u64) -> Self {
        Position { applied }
    }

    /// Everything up to here is applied: the acknowledgement to record.
    pub fn applied(self) -> u64 {
        self.applied
    }

    /// Whether a notification of `seq` calls for a check (an old or
    /// duplicated one does not).
    pub fn wants_check(self, seq: u64) -> bool {
        seq > self.applied
    }

    /// Takes the rows a check read (every row above [`applied`](Self::applied),
    /// in sequence order) and the log's highest sequence number `end` in the
    /// same snapshot, and says what to drop. The position advances to the
    /// last row, to be acknowledged once the step is carried out. Rows at or
    /// below the position (a duplicate) are skipped; a hole before or between
    /// rows means the log was pruned past this node, so it starts over. A log
    /// that ends before the position (the database was restored from a
    /// backup, or failed over to a replica that lost commits) would reuse
    /// numbers this node has seen: it starts over from that end.
    pub fn take(&mut self, rows: &[Entry], end: u64) -> Step {
        if end < self.applied {
            self.applied = end;
            return Step::StartOver;
        }
        let mut next = self.applied;
        let mut apply = Vec::new();
        let mut whole = true;
        for row in rows {
            if row.seq <= next {
                continue;
            }
            if row.seq != next + 1 {
                whole = false;
            }
            next = row.seq;
            apply.push(row.what);
        }
        self.applied = next;
        if whole {
            Step::Apply(apply)
        } else {
            Step::StartOver
        }
    }
}

/// The writer's wait (rule 4): its `200` may go once every live node has
/// acknowledged (`lagging == Some(0)`; `None` when the node table could not be
/// read), or once `T` plus `margin` have passed since the commit, by which
/// time a node that did not acknowledge has stopped trusting its cache.
pub fn wait_over(
    now: Duration,
    committed: Duration,
    lease: Duration,
    margin: Duration,
    lagging: Option<usize>,
) -> bool {
    lagging == Some(0) || now >= committed.saturating_add(lease).saturating_add(margin)
}

/// The safety margin added to `T` in the writer's wait (clock-rate drift
/// between machines, scheduling).
pub fn margin(lease: Duration) -> Duration {
    Duration::from_millis(250) + lease / 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeSet, VecDeque};

    const T: Duration = Duration::from_millis(2000);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn key(seq: u64, id: KeyId) -> Entry {
        Entry {
            seq,
            what: Invalidation::Key(id),
        }
    }

    #[test]
    fn the_lease_counts_from_when_the_check_was_sent() {
        let lease = Lease::new(T);
        assert!(!lease.in_sync(ms(0)), "not trusted before a first check");
        // Sent at 100, answered at 1900: trusted until 2100, not 3900.
        lease.confirm(ms(100));
        assert!(lease.in_sync(ms(1900)));
        assert!(lease.in_sync(ms(2099)));
        assert!(!lease.in_sync(ms(2100)));
        // A late answer to an older check never shortens nor stretches it.
        lease.confirm(ms(50));
        assert!(lease.in_sync(ms(2099)));
        lease.revoke();
        assert!(!lease.in_sync(ms(1000)));
    }

    #[test]
    fn a_paused_node_wakes_up_out_of_sync() {
        let lease = Lease::new(T);
        lease.confirm(ms(1000));
        // SIGSTOP at 1500, SIGCONT at 60 000: the clock jumped.
        assert!(!lease.in_sync(ms(60_000)));
    }

    #[test]
    fn rows_are_applied_in_order_duplicates_skipped_holes_start_over() {
        let mut p = Position::at(4);
        assert!(!p.wants_check(3) && !p.wants_check(4) && p.wants_check(5));
        assert_eq!(
            p.take(&[key(4, 1), key(5, 2), key(6, 3)], 6),
            Step::Apply(vec![Invalidation::Key(2), Invalidation::Key(3)])
        );
        assert_eq!(p.applied(), 6);
        assert_eq!(p.take(&[], 6), Step::Apply(vec![]));
        assert_eq!(p.applied(), 6);
        // The log was pruned past 7: start over, then carry on from the end.
        assert_eq!(p.take(&[key(9, 1), key(10, 2)], 10), Step::StartOver);
        assert_eq!(p.applied(), 10);
        assert_eq!(p.take(&[key(11, 1), key(13, 2)], 13), Step::StartOver);
        assert_eq!(p.applied(), 13);
        // Restored from a backup that ends at 8: numbers 9 to 13 come again.
        assert_eq!(p.take(&[], 8), Step::StartOver);
        assert_eq!(p.applied(), 8);
        assert_eq!(
            p.take(&[key(9, 4)], 9),
            Step::Apply(vec![Invalidation::Key(4)])
        );
    }

    #[test]
    fn kinds_round_trip_and_unknown_ones_drop_everything() {
        for what in [
            Invalidation::Key(1000),
            Invalidation::KeysOf(7),
            Invalidation::Security,
            Invalidation::All,
        ] {
            let (kind, target) = what.columns();
            assert_eq!(Invalidation::from_columns(kind, target), what);
        }
        assert_eq!(
            Invalidation::from_columns("rotate", Some(3)),
            Invalidation::All
        );
        assert_eq!(Invalidation::from_columns("key", None), Invalidation::All);
        assert_eq!(
            Invalidation::from_columns("key", Some(i64::MAX)),
            Invalidation::All
        );
    }

    #[test]
    fn the_writer_waits_for_every_live_node_or_the_lease_and_margin() {
        let m = margin(T);
        assert!(wait_over(ms(5), ms(0), T, m, Some(0)));
        assert!(!wait_over(ms(5), ms(0), T, m, Some(1)));
        assert!(!wait_over(ms(5), ms(0), T, m, None));
        assert!(!wait_over(T + m - ms(1), ms(0), T, m, None));
        assert!(wait_over(T + m, ms(0), T, m, Some(2)));
    }

    /// A simulated cluster: one key per round is deleted by a writer while
    /// every node caches it; notifications are delayed, reordered,
    /// duplicated or lost, checks are delayed in both directions, nodes are
    /// paused. The property: once the writer has answered, no node that
    /// trusts its cache still holds the key.
    type Round = (Option<u64>, bool, Option<(u64, u64)>, bool);

    #[derive(Debug, Clone)]
    struct Schedule {
        /// Per node and round: notification delay (ms, `None`: lost),
        /// duplicated, a pause (start offset, length) in ms, and whether the
        /// node's acknowledgements are lost.
        nodes: Vec<Vec<Round>>,
        /// Check latency there and back (ms).
        latency: (u64, u64),
    }

    fn schedule() -> impl Strategy<Value = Schedule> {
        let round = (
            proptest::option::weighted(0.8, 0u64..300),
            any::<bool>(),
            proptest::option::weighted(0.2, (0u64..3000, 0u64..6000)),
            proptest::bool::weighted(0.3),
        );
        (
            proptest::collection::vec(proptest::collection::vec(round, 6), 3),
            (0u64..1500, 0u64..1500),
        )
            .prop_map(|(nodes, latency)| Schedule { nodes, latency })
    }

    struct SimNode {
        lease: Lease,
        position: Position,
        cached: BTreeSet<KeyId>,
        /// Notifications in flight: (arrival, seq).
        inbox: VecDeque<(u64, u64)>,
        /// A check in flight: (sent, snapshot taken, answer arrives).
        check: Option<(u64, u64, u64)>,
        next_tick: u64,
        paused_until: u64,
        acked: u64,
    }

    fn simulate(s: &Schedule) -> Result<(), String> {
        simulate_with(s, true)
    }

    fn simulate_with(s: &Schedule, writer_waits: bool) -> Result<(), String> {
        let period = T.as_millis() as u64 / 4;
        let m = margin(T).as_millis() as u64;
        let lease_ms = T.as_millis() as u64;
        // The log: seq -> (commit time, key).
        let mut log: Vec<(u64, KeyId)> = Vec::new();
        let mut nodes: Vec<SimNode> = (0..s.nodes.len())
            .map(|_| SimNode {
                lease: Lease::new(T),
                position: Position::at(0),
                cached: BTreeSet::new(),
                inbox: VecDeque::new(),
                check: None,
                next_tick: 0,
                paused_until: 0,
                acked: 0,
            })
            .collect();
        let rounds = s.nodes[0].len();
        let mut t = 0u64;
        for round in 0..rounds {
            let id = KeyId::try_from(round).unwrap();
            // Every node caches the key (it is valid), then the writer deletes it.
            for n in nodes.iter_mut() {
                n.cached.insert(id);
            }
            t += 10;
            log.push((t, id));
            let seq = log.len() as u64;
            let committed = t;
            for (i, n) in nodes.iter_mut().enumerate() {
                let (delay, dup, pause, _) = s.nodes[i][round];
                if let Some(d) = delay {
                    n.inbox.push_back((t + d, seq));
                    if dup {
                        n.inbox.push_back((t + d / 2, seq));
                    }
                }
                if let Some((start, len)) = pause {
                    n.paused_until = n.paused_until.max(t + start + len);
                }
            }
            let mut answered = None;
            let end = t + lease_ms * 4;
            while t < end {
                t += 1;
                for (i, n) in nodes.iter_mut().enumerate() {
                    let acks_lost = s.nodes[i][round].3;
                    if t < n.paused_until {
                        continue;
                    }
                    // A check's answer: the snapshot saw what was committed by then.
                    if let Some((sent, snap, arrives)) = n.check {
                        if t >= arrives {
                            n.check = None;
                            let rows: Vec<Entry> = log
                                .iter()
                                .enumerate()
                                .filter(|(_, (c, _))| *c <= snap)
                                .map(|(i, (_, k))| key(i as u64 + 1, *k))
                                .filter(|e| e.seq > n.position.applied())
                                .collect();
                            let end = log.iter().filter(|(c, _)| *c <= snap).count() as u64;
                            match n.position.take(&rows, end) {
                                Step::Apply(v) => {
                                    for w in v {
                                        if let Invalidation::Key(k) = w {
                                            n.cached.remove(&k);
                                        }
                                    }
                                }
                                Step::StartOver => n.cached.clear(),
                            }
                            if !acks_lost {
                                n.acked = n.position.applied();
                            }
                            n.lease.confirm(ms(sent));
                        }
                    }
                    // Notifications arrive in any order; each may start a check.
                    let mut wake = false;
                    n.inbox.retain(|&(at, seq)| {
                        if at <= t {
                            wake |= seq > 0;
                            false
                        } else {
                            true
                        }
                    });
                    let wake =
                        wake && log.len() as u64 > 0 && n.position.wants_check(log.len() as u64);
                    if n.check.is_none() && (wake || t >= n.next_tick) {
                        n.next_tick = t + period;
                        let snap = t + s.latency.0;
                        n.check = Some((t, snap, snap + s.latency.1));
                    }
                }
                let lagging = nodes.iter().filter(|n| n.acked < seq).count();
                if answered.is_none()
                    && (!writer_waits || wait_over(ms(t), ms(committed), T, ms(m), Some(lagging)))
                {
                    answered = Some(t);
                }
                if let Some(w) = answered {
                    for (i, n) in nodes.iter().enumerate() {
                        // A paused node serves nothing; once running, a node
                        // that trusts its cache must not hold the key.
                        if t >= w
                            && t >= n.paused_until
                            && n.lease.in_sync(ms(t))
                            && n.cached.contains(&id)
                        {
                            return Err(format!(
                                "round {round}: node {i} accepts key {id} at {t} \
                                 after the writer's answer at {w}"
                            ));
                        }
                    }
                }
            }
            if answered.is_none() {
                return Err(format!("round {round}: the writer never answered"));
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn no_node_trusts_a_stale_entry_after_the_writers_answer(s in schedule()) {
            prop_assert_eq!(simulate(&s), Ok(()));
        }
    }

    #[test]
    fn lost_notifications_and_a_dead_listener_are_covered_by_the_periodic_check() {
        let s = Schedule {
            nodes: vec![vec![(None, false, None, false); 6]; 3],
            latency: (5, 5),
        };
        assert_eq!(simulate(&s), Ok(()));
    }

    #[test]
    fn a_node_paused_across_the_delete_wakes_up_distrusting_its_cache() {
        let mut nodes = vec![vec![(Some(1), false, None, false); 6]; 3];
        nodes[1][2] = (None, false, Some((0, 5000)), false);
        let s = Schedule {
            nodes,
            latency: (300, 300),
        };
        assert_eq!(simulate(&s), Ok(()));
    }

    /// The checker can fail: a writer that answers without waiting is caught.
    #[test]
    fn the_simulation_catches_a_writer_that_does_not_wait() {
        let s = Schedule {
            nodes: vec![vec![(Some(100), false, None, false); 6]; 3],
            latency: (5, 5),
        };
        assert!(simulate_with(&s, false).is_err());
    }
}
