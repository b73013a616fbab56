//! The brute-force limiter: failed authentications are counted per client
//! address, and an address with too many of them is refused with `429` for a
//! while, before any credential work.
//!
//! It never locks a key or a user, only the address the failures came from,
//! so an attacker cannot lock a legitimate client out of its key.
//!
//! Cost on the success path: one atomic load while no address is blocked
//! (the latest end of any block is kept in an atomic, so the check knows
//! without a lock that nobody is blocked), and a shared read of one of
//! [`SHARDS`] tables while some address is. Only failures take a write lock,
//! on the shard of their address. Memory is bounded: at most `capacity`
//! addresses are remembered; when a shard is full, forgotten entries are
//! dropped first, then the least recently failing one.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// Number of independently locked tables.
pub const SHARDS: usize = 16;
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
    /// Refused until then.
    blocked_until: Option<Instant>,
    /// Blocks so far: the next one lasts `block * 2^blocks`.
    blocks: u32,
    /// The latest failure, for eviction and forgetting.
    last_failure: Instant,
}

/// Counts failed authentications per address and refuses blocked addresses.
pub struct Limiter {
    config: LimiterConfig,
    max_block: Duration,
    /// Reference point of `latest_block_end`.
    epoch: Instant,
    /// Milliseconds after `epoch` at which the last block of any address ends.
    latest_block_end: AtomicU64,
    hasher: RandomState,
    shards: Vec<RwLock<HashMap<IpAddr, Entry>>>,
}

impl Limiter {
    /// A limiter with the given thresholds.
    pub fn new(config: LimiterConfig) -> Self {
        Limiter {
            config,
            max_block: MAX_BLOCK.max(config.block),
            epoch: Instant::now(),
            latest_block_end: AtomicU64::new(0),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
        }
    }

    /// The thresholds.
    pub fn config(&self) -> LimiterConfig {
        self.config
    }

    /// `Err(wait)` when `addr` is blocked now.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        self.check_at(addr, Instant::now())
    }

    /// Notes a failed authentication from `addr`; returns the block it starts, if any.
    pub fn record_failure(&self, addr: IpAddr) -> Option<Duration> {
        self.record_failure_at(addr, Instant::now())
    }

    /// [`check`](Self::check) at a given time.
    pub fn check_at(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let addr = client_of(addr);
        if self.millis(now) >= self.latest_block_end.load(Ordering::Acquire) {
            return Ok(());
        }
        // A poisoned lock only means a panic elsewhere: the table is still sound.
        let shard = self.shard(addr).read().unwrap_or_else(|e| e.into_inner());
        match shard.get(&addr).and_then(|e| e.blocked_until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// [`record_failure`](Self::record_failure) at a given time.
    pub fn record_failure_at(&self, addr: IpAddr, now: Instant) -> Option<Duration> {
        let addr = client_of(addr);
        let mut shard = self.shard(addr).write().unwrap_or_else(|e| e.into_inner());
        if !shard.contains_key(&addr) {
            self.make_room(&mut shard, now);
        }
        let entry = shard.entry(addr).or_insert(Entry {
            window_start: now,
            failures: 0,
            blocked_until: None,
            blocks: 0,
            last_failure: now,
        });
        if entry.blocked_until.is_some_and(|until| until > now) {
            // A request that passed the check just before the block began.
            return None;
        }
        if now.saturating_duration_since(entry.window_start) >= WINDOW {
            entry.window_start = now;
            entry.failures = 0;
        }
        entry.failures += 1;
        entry.last_failure = now;
        if entry.failures < self.config.failure_limit {
            return None;
        }
        let block = self
            .config
            .block
            .saturating_mul(1u32.checked_shl(entry.blocks).unwrap_or(u32::MAX))
            .min(self.max_block);
        let until = now + block;
        entry.blocked_until = Some(until);
        entry.blocks = entry.blocks.saturating_add(1);
        entry.failures = 0;
        entry.window_start = until;
        // Ceiling, so that the lock-free check never ends a block early.
        self.latest_block_end
            .fetch_max(self.millis(until).saturating_add(1), Ordering::AcqRel);
        Some(block)
    }

    /// Number of addresses remembered (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().unwrap_or_else(|e| e.into_inner()).len())
            .sum()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard(&self, addr: IpAddr) -> &RwLock<HashMap<IpAddr, Entry>> {
        let index = self.hasher.hash_one(addr) as usize % SHARDS;
        &self.shards[index]
    }

    fn millis(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
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
            e.blocked_until.is_some_and(|until| until > now)
                || now.saturating_duration_since(e.last_failure) < forget_after
        });
        while shard.len() >= per_shard {
            // Blocked addresses go last: evicting one would lift its block.
            let oldest = shard
                .iter()
                .min_by_key(|(_, e)| {
                    (
                        e.blocked_until.is_some_and(|until| until > now),
                        e.last_failure,
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
fn client_of(addr: IpAddr) -> IpAddr {
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
    fn nothing_is_blocked_until_a_block_starts_and_the_fast_path_sees_the_end() {
        let l = limiter(1, 1);
        let t0 = Instant::now();
        assert_eq!(l.latest_block_end.load(Ordering::Relaxed), 0);
        assert_eq!(l.check_at(ip(1), t0), Ok(()));
        fail(&l, ip(1), 1, t0);
        assert!(l.check_at(ip(1), t0 + Duration::from_millis(999)).is_err());
        assert_eq!(l.check_at(ip(1), t0 + 2 * S), Ok(()));
    }

    #[test]
    fn memory_is_bounded_and_blocked_addresses_outlive_old_failures() {
        let l = Limiter::new(LimiterConfig {
            failure_limit: 2,
            block: 60 * S,
            capacity: 160,
        });
        let t0 = Instant::now();
        fail(&l, ip(0), 2, t0);
        for n in 1..10_000 {
            l.record_failure_at(ip(n), t0 + Duration::from_millis(u64::from(n)));
        }
        assert!(l.len() <= 160, "{} addresses remembered", l.len());
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
