//! The brute-force limiter: failed authentications are counted per client
//! address, and an address with too many of them is refused with `429` for a
//! while, before any credential work.
//!
//! It never locks a key or a user, only the address the failures came from,
//! so an attacker cannot lock a legitimate client out of its key.
//!
//! Every authentication is **charged to its address when it arrives**
//! ([`Limiter::charge`]) and settled when its outcome is known: a success is
//! refunded, a failure stays counted, and an attempt whose request is
//! dropped before the outcome (the client hung up) counts as a failure. An
//! address may have at most `failure_limit - failures` attempts unsettled at
//! once; further ones wait (briefly, in [`Limiter::admit`]) for earlier ones
//! to settle. So concurrent guesses cannot overshoot the limit, and hanging
//! up does not dodge it, while a legitimate client's many concurrent good
//! requests only queue behind each other for the microseconds a verification
//! takes.
//!
//! Cost per request: two short critical sections on one of [`SHARDS`]
//! mutexes (the shard of the address), no allocation once the table has
//! grown. Memory is bounded: at most `capacity` addresses are remembered;
//! when a shard is full, forgotten entries are dropped first, then the least
//! recently seen one (addresses with attempts in flight or blocked go last).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

/// Number of independently locked tables.
pub const SHARDS: usize = 64;
/// Default: failures from one address within [`WINDOW`] that trigger a block.
pub const DEFAULT_FAILURE_LIMIT: u32 = 20;
/// Default: length of the first block, in seconds.
pub const DEFAULT_BLOCK_SECONDS: u64 = 60;
/// Failures are counted within this sliding-from-first-failure window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Repeated blocks double up to this length (or the first block, if longer).
pub const MAX_BLOCK: Duration = Duration::from_secs(15 * 60);
/// Default: how many addresses are remembered at most.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// Longest wait of an attempt for its address's earlier attempts to settle;
/// then it is refused with `429` and `Retry-After: 1`.
pub const ADMIT_WAIT: Duration = Duration::from_secs(5);

/// Thresholds of the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimiterConfig {
    /// Failures within [`WINDOW`] that block the address.
    pub failure_limit: u32,
    /// The first block; each further block of the same address doubles it.
    pub block: Duration,
    /// Addresses remembered at most.
    pub capacity: usize,
}

impl LimiterConfig {
    /// The limiter for these settings, or `None` when either is 0 (disabled).
    pub fn build(failure_limit: u32, block_seconds: u64) -> Option<Limiter> {
        (failure_limit > 0 && block_seconds > 0).then(|| {
            Limiter::new(LimiterConfig {
                failure_limit,
                block: Duration::from_secs(block_seconds),
                capacity: DEFAULT_CAPACITY,
            })
        })
    }
}

/// What the limiter remembers about one address.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Start of the current counting window.
    window_start: Instant,
    /// Failures since `window_start`.
    failures: u32,
    /// Attempts charged and not yet settled.
    pending: u32,
    /// Attempts waiting for `pending` to drop.
    waiting: u32,
    /// Refused until then.
    blocked_until: Option<Instant>,
    /// Blocks so far: the next one lasts `block * 2^blocks`.
    blocks: u32,
    /// The latest charge or failure, for eviction and forgetting.
    last_seen: Instant,
}

impl Entry {
    fn new(now: Instant) -> Entry {
        Entry {
            window_start: now,
            failures: 0,
            pending: 0,
            waiting: 0,
            blocked_until: None,
            blocks: 0,
            last_seen: now,
        }
    }

    fn blocked_at(&self, now: Instant) -> Option<Duration> {
        self.blocked_until
            .filter(|until| *until > now)
            .map(|until| until - now)
    }

    /// Whether the entry says nothing worth keeping (a past block is kept:
    /// the next one of the address lasts longer).
    fn is_idle(&self) -> bool {
        self.failures == 0 && self.pending == 0 && self.waiting == 0 && self.blocks == 0
    }
}

/// Why an attempt was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The address is blocked for this long.
    Blocked(Duration),
    /// The address has as many attempts unsettled as it has failures left.
    Busy,
}

impl Refusal {
    /// How long the client should wait before retrying.
    pub fn retry_after(self) -> Duration {
        match self {
            Refusal::Blocked(wait) => wait,
            Refusal::Busy => Duration::from_secs(1),
        }
    }
}

/// Counts failed authentications per address and refuses blocked addresses.
pub struct Limiter {
    config: LimiterConfig,
    max_block: Duration,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<IpAddr, Entry>>>,
    /// Woken when an attempt settles on an address that has waiters.
    settled: Notify,
    /// Where each new block is reported (for the audit trail); never waited on.
    blocks: Option<tokio::sync::mpsc::Sender<Block>>,
}

/// A block the limiter started: the address and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// The blocked address.
    pub address: IpAddr,
    /// How long it is refused.
    pub duration: Duration,
    /// Failures that triggered the block.
    pub failures: u32,
}

/// An authentication charged to its address. Settle it with
/// [`succeeded`](Attempt::succeeded), [`failed`](Attempt::failed) or
/// [`void`](Attempt::void); dropped unsettled (the request was abandoned),
/// it counts as a failure.
#[must_use = "an attempt dropped unsettled counts as a failure"]
pub struct Attempt<'a> {
    limiter: &'a Limiter,
    addr: IpAddr,
    settled: bool,
}

impl Attempt<'_> {
    /// The credential was valid: the attempt is refunded.
    pub fn succeeded(mut self) {
        self.settle(Outcome::Refund);
    }

    /// The credential was refused: the attempt stays counted. Returns the
    /// block it starts, if any.
    pub fn failed(mut self) -> Option<Duration> {
        self.settle(Outcome::Failure)
    }

    /// The outcome says nothing about the caller (the store failed): refunded.
    pub fn void(mut self) {
        self.settle(Outcome::Refund);
    }

    fn settle(&mut self, outcome: Outcome) -> Option<Duration> {
        self.settled = true;
        self.limiter.settle(self.addr, outcome, Instant::now())
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.settle(Outcome::Failure);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Refund,
    Failure,
}

impl Limiter {
    /// A limiter with the given thresholds.
    pub fn new(config: LimiterConfig) -> Self {
        Limiter {
            config,
            max_block: MAX_BLOCK.max(config.block),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            settled: Notify::new(),
            blocks: None,
        }
    }

    /// Reports every block it starts to `blocks`, without waiting: when the
    /// channel is full the report is dropped (and logged), the block holds.
    pub fn report_blocks(&mut self, blocks: tokio::sync::mpsc::Sender<Block>) {
        self.blocks = Some(blocks);
    }

    /// The thresholds.
    pub fn config(&self) -> LimiterConfig {
        self.config
    }

    /// Charges an attempt to `addr`, waiting up to [`ADMIT_WAIT`] while the
    /// address has as many attempts unsettled as it has failures left.
    pub async fn admit(&self, addr: IpAddr) -> Result<Attempt<'_>, Refusal> {
        // The common case waits for nothing, so it registers with nobody: the
        // `Notify` (one for every address) is touched only by callers that wait.
        match self.charge_at(addr, Instant::now(), false) {
            Err(Refusal::Busy) => {}
            other => return other,
        }
        let deadline = tokio::time::Instant::now() + ADMIT_WAIT;
        loop {
            // Registered before the try, so that a settle in between is not missed.
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            match self.charge_at(addr, Instant::now(), true) {
                Err(Refusal::Busy) => {}
                other => return other,
            }
            let waited = tokio::time::timeout_at(deadline, settled).await;
            self.stop_waiting(addr);
            if waited.is_err() {
                return Err(Refusal::Busy);
            }
        }
    }

    /// Charges an attempt to `addr` now, without waiting.
    pub fn charge(&self, addr: IpAddr) -> Result<Attempt<'_>, Refusal> {
        self.charge_at(addr, Instant::now(), false)
    }

    /// Notes a failed authentication from `addr` that was not charged
    /// beforehand; returns the block it starts, if any.
    pub fn record_failure(&self, addr: IpAddr) -> Option<Duration> {
        self.record_failure_at(addr, Instant::now())
    }

    /// `Err(wait)` when `addr` is blocked at `now` (a read-only query).
    pub fn check_at(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let addr = client_of(addr);
        match self.shard(addr).get(&addr).and_then(|e| e.blocked_at(now)) {
            Some(wait) => Err(wait),
            None => Ok(()),
        }
    }

    /// [`charge`](Self::charge) at a given time; `wait` registers the caller
    /// as waiting when it is refused as busy.
    fn charge_at(&self, addr: IpAddr, now: Instant, wait: bool) -> Result<Attempt<'_>, Refusal> {
        let addr = client_of(addr);
        let mut shard = self.shard(addr);
        if !shard.contains_key(&addr) {
            self.make_room(&mut shard, now);
        }
        let entry = shard.entry(addr).or_insert_with(|| Entry::new(now));
        entry.last_seen = now;
        if let Some(wait) = entry.blocked_at(now) {
            return Err(Refusal::Blocked(wait));
        }
        self.start_new_window_if_due(entry, now);
        if entry.failures + entry.pending >= self.config.failure_limit {
            if wait {
                entry.waiting += 1;
            }
            return Err(Refusal::Busy);
        }
        entry.pending += 1;
        Ok(Attempt {
            limiter: self,
            addr,
            settled: false,
        })
    }

    fn stop_waiting(&self, addr: IpAddr) {
        let addr = client_of(addr);
        let mut shard = self.shard(addr);
        if let Some(entry) = shard.get_mut(&addr) {
            entry.waiting = entry.waiting.saturating_sub(1);
        }
    }

    fn settle(&self, addr: IpAddr, outcome: Outcome, now: Instant) -> Option<Duration> {
        let mut shard = self.shard(addr);
        let Some(entry) = shard.get_mut(&addr) else {
            // Evicted meanwhile: a failure still counts.
            drop(shard);
            return match outcome {
                Outcome::Failure => self.record_failure_at(addr, now),
                Outcome::Refund => None,
            };
        };
        entry.pending = entry.pending.saturating_sub(1);
        let block = match outcome {
            Outcome::Failure => self.fail(addr, entry, now),
            Outcome::Refund => None,
        };
        let wake = entry.waiting > 0;
        if entry.is_idle() {
            shard.remove(&addr);
        }
        drop(shard);
        if wake {
            self.settled.notify_waiters();
        }
        block
    }

    /// [`record_failure`](Self::record_failure) at a given time.
    pub fn record_failure_at(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let addr = client_of(addr);
        let mut shard = self.shard(addr);
        if !shard.contains_key(&addr) {
            self.make_room(&mut shard, now);
        }
        let entry = shard.entry(addr).or_insert_with(|| Entry::new(now));
        let block = self.fail(addr, entry, now);
        let wake = block.is_some() && entry.waiting > 0;
        drop(shard);
        if wake {
            self.settled.notify_waiters();
        }
        block
    }

    fn start_new_window_if_due(&self, entry: &mut Entry, now: Instant) {
        if now.saturating_duration_since(entry.window_start) >= WINDOW {
            entry.window_start = now;
            entry.failures = 0;
        }
    }

    /// Counts one failure on `entry`; starts (and logs) a block at the limit.
    fn fail(&self, addr: IpAddr, entry: &mut Entry, now: Instant) -> Option<Duration> {
        entry.last_seen = now;
        if entry.blocked_at(now).is_some() {
            // An attempt admitted just before the block began.
            return None;
        }
        self.start_new_window_if_due(entry, now);
        entry.failures += 1;
        if entry.failures < self.config.failure_limit {
            return None;
        }
        let block = self
            .config
            .block
            .saturating_mul(1u32.checked_shl(entry.blocks).unwrap_or(u32::MAX))
            .min(self.max_block);
        let until = now + block;
        tracing::warn!(
            client = %addr,
            failures = entry.failures,
            seconds = block.as_secs(),
            "blocking an address after repeated failed authentications"
        );
        if let Some(blocks) = &self.blocks {
            let report = Block {
                address: addr,
                duration: block,
                failures: entry.failures,
            };
            if blocks.try_send(report).is_err() {
                tracing::warn!(client = %addr, "the audit entry of this block was dropped (too many at once)");
            }
        }
        entry.blocked_until = Some(until);
        entry.blocks = entry.blocks.saturating_add(1);
        entry.failures = 0;
        entry.window_start = until;
        Some(block)
    }

    /// Number of addresses remembered (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Number of addresses blocked now (read at scrape time: each shard is
    /// locked in turn, never all at once).
    pub fn blocked_now(&self) -> usize {
        let now = Instant::now();
        self.shards
            .iter()
            .map(|s| {
                let shard = s.lock().unwrap_or_else(|e| e.into_inner());
                shard
                    .values()
                    .filter(|e| e.blocked_at(now).is_some())
                    .count()
            })
            .sum()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, addr: IpAddr) -> MutexGuard<'_, HashMap<IpAddr, Entry>> {
        let index = self.hasher.hash_one(addr) as usize % SHARDS;
        // A poisoned lock only means a panic elsewhere: the table is still sound.
        self.shards[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps a shard below its share of the capacity: drops entries whose
    /// block is over and whose failures are long past, then the oldest.
    fn make_room(&self, shard: &mut HashMap<IpAddr, Entry>, now: Instant) {
        let per_shard = self.config.capacity.div_ceil(SHARDS).max(1);
        if shard.len() < per_shard {
            return;
        }
        let forget_after = self.max_block.max(WINDOW);
        shard.retain(|_, e| {
            e.blocked_at(now).is_some()
                || e.pending > 0
                || now.saturating_duration_since(e.last_seen) < forget_after
        });
        while shard.len() >= per_shard {
            // Blocked addresses and attempts in flight go last: evicting one
            // would lift its block or forget its charge.
            let oldest = shard
                .iter()
                .min_by_key(|(_, e)| {
                    (
                        e.blocked_at(now).is_some(),
                        e.pending > 0 || e.waiting > 0,
                        e.last_seen,
                    )
                })
                .map(|(a, _)| *a);
            match oldest {
                Some(addr) => shard.remove(&addr),
                None => break,
            };
        }
    }
}

/// The unit the limiter counts: an IPv4 address, or the /64 network of an
/// IPv6 address (one host usually holds a whole /64, so counting single
/// IPv6 addresses would let it spread its guesses over 2^64 of them).
pub fn client_of(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn limiter(limit: u32, block_secs: u64) -> Limiter {
        Limiter::new(LimiterConfig {
            failure_limit: limit,
            block: Duration::from_secs(block_secs),
            capacity: DEFAULT_CAPACITY,
        })
    }

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + n))
    }

    const S: Duration = Duration::from_secs(1);

    /// Fails `n` times from `addr` at `at`; returns the last block started.
    fn fail(l: &Limiter, addr: IpAddr, n: u32, at: Instant) -> Option<Duration> {
        (0..n)
            .map(|_| l.record_failure_at(addr, at))
            .last()
            .flatten()
    }

    #[test]
    fn the_limit_th_failure_blocks_the_address_for_the_block_period() {
        let l = limiter(3, 60);
        let t0 = Instant::now();
        assert_eq!(fail(&l, ip(1), 2, t0), None);
        assert_eq!(l.check_at(ip(1), t0), Ok(()));
        assert_eq!(l.record_failure_at(ip(1), t0 + S), Some(60 * S));
        assert_eq!(l.check_at(ip(1), t0 + S), Err(60 * S));
        assert_eq!(l.check_at(ip(1), t0 + 31 * S), Err(30 * S));
        assert_eq!(
            l.check_at(ip(1), t0 + 61 * S),
            Ok(()),
            "the block ends by itself"
        );
    }

    #[test]
    fn other_addresses_are_not_affected() {
        let l = limiter(3, 60);
        let t0 = Instant::now();
        fail(&l, ip(1), 3, t0);
        assert!(l.check_at(ip(1), t0).is_err());
        assert_eq!(l.check_at(ip(2), t0), Ok(()));
        assert_eq!(l.check_at("::1".parse().unwrap(), t0), Ok(()));
    }

    #[test]
    fn failures_older_than_the_window_do_not_count() {
        let l = limiter(3, 60);
        let t0 = Instant::now();
        fail(&l, ip(1), 2, t0);
        assert_eq!(fail(&l, ip(1), 2, t0 + WINDOW), None, "a new window starts");
        assert_eq!(l.check_at(ip(1), t0 + WINDOW), Ok(()));
        assert!(l.record_failure_at(ip(1), t0 + WINDOW + S).is_some());
    }

    #[test]
    fn repeated_blocks_double_up_to_fifteen_minutes() {
        let l = limiter(2, 60);
        let mut now = Instant::now();
        let mut blocks = Vec::new();
        for _ in 0..7 {
            let block = fail(&l, ip(1), 2, now).unwrap_or_default();
            blocks.push(block.as_secs());
            now += block;
            assert_eq!(l.check_at(ip(1), now), Ok(()));
        }
        assert_eq!(blocks, [60, 120, 240, 480, 900, 900, 900]);
    }

    #[test]
    fn failures_during_a_block_neither_count_nor_extend_it() {
        let l = limiter(2, 60);
        let t0 = Instant::now();
        fail(&l, ip(1), 2, t0);
        assert_eq!(fail(&l, ip(1), 10, t0 + S), None);
        assert_eq!(l.check_at(ip(1), t0 + 60 * S), Ok(()));
        assert_eq!(
            l.record_failure_at(ip(1), t0 + 60 * S),
            None,
            "counting starts afresh"
        );
    }

    #[test]
    fn a_charged_attempt_that_is_dropped_counts_as_a_failure() {
        let l = limiter(2, 60);
        drop(l.charge(ip(1)).unwrap());
        let attempt = l.charge(ip(1)).unwrap();
        drop(attempt);
        assert!(l.charge(ip(1)).is_err(), "two hang-ups are two failures");
        assert!(l.check_at(ip(1), Instant::now()).is_err());
    }

    #[test]
    fn successes_are_refunded_and_leave_no_entry() {
        let l = limiter(2, 60);
        for _ in 0..100 {
            l.charge(ip(1)).unwrap().succeeded();
        }
        l.charge(ip(2)).unwrap().void();
        assert!(l.is_empty());
    }

    #[test]
    fn unsettled_attempts_cannot_overshoot_the_limit() {
        let l = limiter(3, 60);
        l.charge(ip(1)).unwrap().failed();
        let a = l.charge(ip(1)).unwrap();
        let b = l.charge(ip(1)).unwrap();
        assert_eq!(
            l.charge(ip(1)).err(),
            Some(Refusal::Busy),
            "1 failure + 2 in flight = the limit"
        );
        assert_eq!(l.charge(ip(2)).map(Attempt::succeeded).err(), None);
        a.succeeded();
        let c = l.charge(ip(1)).unwrap();
        assert_eq!(b.failed(), None);
        assert!(c.failed().is_some(), "the third failure blocks");
        assert!(matches!(l.charge(ip(1)).err(), Some(Refusal::Blocked(_))));
    }

    #[tokio::test]
    async fn a_waiting_attempt_is_admitted_when_an_earlier_one_succeeds() {
        let l = std::sync::Arc::new(limiter(1, 60));
        let first = l.charge(ip(1)).unwrap();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.admit(ip(1)).await.map(Attempt::succeeded) })
        };
        tokio::task::yield_now().await;
        first.succeeded();
        assert_eq!(waiter.await.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn a_waiting_attempt_is_refused_when_the_block_starts() {
        let l = std::sync::Arc::new(limiter(1, 60));
        let first = l.charge(ip(1)).unwrap();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move { l.admit(ip(1)).await.map(Attempt::succeeded) })
        };
        tokio::task::yield_now().await;
        assert!(first.failed().is_some());
        assert!(matches!(waiter.await.unwrap(), Err(Refusal::Blocked(_))));
    }

    #[test]
    fn memory_is_bounded_and_blocked_addresses_outlive_old_failures() {
        let l = Limiter::new(LimiterConfig {
            failure_limit: 2,
            block: 60 * S,
            capacity: 640,
        });
        let t0 = Instant::now();
        fail(&l, ip(0), 2, t0);
        for n in 1..10_000 {
            l.record_failure_at(ip(n), t0 + Duration::from_millis(u64::from(n)));
        }
        assert!(l.len() <= 640, "{} addresses remembered", l.len());
        assert!(
            l.check_at(ip(0), t0 + 20 * S).is_err(),
            "a blocked address is evicted last"
        );
    }

    #[test]
    fn ipv6_addresses_count_per_64_network_and_mapped_ipv4_as_ipv4() {
        let l = limiter(2, 60);
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::7".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        l.record_failure_at(a, t0);
        assert!(
            l.record_failure_at(b, t0).is_some(),
            "one /64 is one client"
        );
        assert_eq!(l.check_at(other, t0), Ok(()));
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        fail(&l, ip(5), 2, t0);
        assert!(l.check_at(mapped, t0).is_err());
    }

    #[test]
    fn a_disabled_configuration_builds_no_limiter() {
        assert!(LimiterConfig::build(0, 60).is_none());
        assert!(LimiterConfig::build(20, 0).is_none());
        let l = LimiterConfig::build(20, 60).map(|l| l.config());
        assert_eq!(
            l,
            Some(LimiterConfig {
                failure_limit: 20,
                block: 60 * S,
                capacity: DEFAULT_CAPACITY
            })
        );
    }

    #[test]
    fn a_huge_first_block_is_not_capped_below_itself() {
        let l = limiter(1, 3600);
        assert_eq!(l.record_failure_at(ip(1), Instant::now()), Some(3600 * S));
    }
}
