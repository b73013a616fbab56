//! Prometheus metrics: the counters every part of the server bumps, and their
//! exposition (`GET /metrics`, served by `http/metrics.rs`).
//!
//! The request path only does relaxed atomic increments on counters that
//! exist from the start: every label set is fixed (route templates, methods,
//! status classes, outcomes), so each series is an array slot found by index,
//! never a map look-up, a lock or an allocation. The counters live in one
//! process-wide [`METRICS`] (a process serves one server); the exposition
//! reads them through a `prometheus-client` [`Collector`] on each scrape and
//! lists only the series that have moved. No label carries a key, a user
//! name or an address.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use axum::http::Method;
use proget_api::paths;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

/// The path of the metrics endpoint.
pub const METRICS_PATH: &str = "/metrics";

/// Route templates without parameters, matched exactly (forward auth first:
/// it is the benchmarked route).
const EXACT_ROUTES: [&str; 38] = [
    paths::AUTH_FORWARD,
    paths::HEALTH,
    paths::HEALTH_JSON,
    paths::API_KEYS_VERIFY,
    paths::API_KEYS_SELF,
    paths::API_KEYS_CREATE,
    paths::API_KEYS_LIST,
    paths::API_KEYS_DELETE,
    paths::API_KEYS_ROTATE,
    paths::API_KEYS_LEAKED,
    paths::API_KEYS_LOGS,
    paths::USERS_ADD,
    paths::USERS_LIST,
    paths::USERS_DELETE,
    paths::USERS_EDIT,
    paths::PERMISSIONS_LIST,
    paths::PERMISSIONS_ADD,
    paths::PERMISSIONS_DELETE,
    paths::GROUPS_LIST,
    paths::GROUPS_ADD,
    paths::GROUPS_EDIT,
    paths::GROUPS_DELETE,
    paths::TASKS_LIST,
    paths::AUDIT_LIST,
    METRICS_PATH,
    "/",
    "/console",
    "/console/",
    "/console/login",
    "/console/logout",
    "/console/keys",
    "/console/keys/new",
    "/console/users",
    "/console/groups",
    "/console/permissions",
    "/console/audit",
    "/console/assets/console.css",
    "/console/assets/console.js",
];

/// Console route templates with one `{parameter}` segment.
const PARAM_ROUTES: [&str; 7] = [
    "/console/keys/{id}",
    "/console/keys/{id}/delete",
    "/console/users/{name}",
    "/console/users/{name}/delete",
    "/console/groups/{name}",
    "/console/groups/{name}/delete",
    "/console/permissions/{id}/delete",
];

/// Route label of a request that matched no route.
const UNMATCHED: &str = "unmatched";
const ROUTES: usize = EXACT_ROUTES.len() + PARAM_ROUTES.len() + 1;
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "other",
];
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The route template of a path (an index into the route labels), as the
/// router matches it: exact paths, then the console's parameter routes.
pub fn route_of(path: &str) -> usize {
    if let Some(i) = EXACT_ROUTES.iter().position(|r| *r == path) {
        return i;
    }
    if path.starts_with("/console/") {
        if let Some(i) = PARAM_ROUTES.iter().position(|t| fits(t, path)) {
            return EXACT_ROUTES.len() + i;
        }
    }
    ROUTES - 1
}

/// Whether `path` fits `template`, a `{...}` segment standing for any non-empty one.
fn fits(template: &str, path: &str) -> bool {
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return true,
            (Some(ts), Some(ps)) if ts.starts_with('{') => {
                if ps.is_empty() {
                    return false;
                }
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return false,
        }
    }
}

fn route_label(route: usize) -> &'static str {
    EXACT_ROUTES
        .iter()
        .chain(PARAM_ROUTES.iter())
        .nth(route)
        .copied()
        .unwrap_or(UNMATCHED)
}

/// The method label of a request (an index into the method labels).
pub fn method_index(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::DELETE => 4,
        Method::PATCH => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

/// The outcome of an authentication, as `latchkey_authentications_total` counts it.
#[derive(Debug, Clone, Copy)]
pub enum AuthOutcome {
    /// A key or login verified.
    Ok,
    /// No key with this text (or a bad checksum).
    Unknown,
    /// The key has expired.
    Expired,
    /// No such user or a wrong password.
    WrongPassword,
    /// A valid credential the policy refused (forward auth and verify).
    Forbidden,
    /// The client address is blocked by the limiter (`429`).
    Blocked,
}

const OUTCOMES: [&str; 6] = [
    "ok",
    "unknown",
    "expired",
    "wrong_password",
    "forbidden",
    "blocked",
];

/// What the cache is asked for, as the cache counters label it.
#[derive(Debug, Clone, Copy)]
pub enum CacheKind {
    /// Keys by digest.
    Keys,
    /// An owner's key list.
    KeyLists,
    /// User rows by name (logins).
    Logins,
    /// The permissions snapshot.
    Security,
}

const CACHE_KINDS: [&str; 4] = ["keys", "key_lists", "logins", "security"];

/// A histogram of durations in fixed buckets, in atomics only.
pub struct Histogram {
    /// Upper bounds, in seconds.
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is `+Inf`.
    counts: [AtomicU64; 17],
    /// Sum of the observations, in nanoseconds.
    sum_ns: AtomicU64,
}

/// Request durations: 100 µs to 10 s.
const REQUEST_BOUNDS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

impl Histogram {
    const fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: [const { AtomicU64::new(0) }; 17],
            sum_ns: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let seconds = d.as_secs_f64();
        let bucket = self
            .bounds
            .iter()
            .position(|b| seconds <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[bucket].fetch_add(1, Relaxed);
        self.sum_ns
            .fetch_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Sum in seconds, count, and each bucket's own count (the encoder
    /// makes them cumulative).
    fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len() + 1);
        for (i, bound) in self
            .bounds
            .iter()
            .copied()
            .chain([f64::INFINITY])
            .enumerate()
        {
            let n = self.counts[i].load(Relaxed);
            total += n;
            buckets.push((bound, n));
        }
        let sum = self.sum_ns.load(Relaxed) as f64 / 1e9;
        (sum, total, buckets)
    }
}

/// Every counter of the server.
pub struct Metrics {
    requests: [AtomicU64; ROUTES * METHODS.len() * CLASSES.len()],
    durations: [Histogram; ROUTES],
    auth: [AtomicU64; OUTCOMES.len()],
    cache_hits: [AtomicU64; CACHE_KINDS.len()],
    cache_misses: [AtomicU64; CACHE_KINDS.len()],
    /// Access-log entries stored.
    pub access_log_written: AtomicU64,
    /// Access-log entries (and last uses) dropped on a full queue.
    pub access_log_dropped: AtomicU64,
    /// PostgreSQL: invalidation-log entries this node appended.
    pub invalidations_sent: AtomicU64,
    /// PostgreSQL: invalidation-log entries this node applied to its cache.
    pub invalidations_applied: AtomicU64,
    /// PostgreSQL: how long writes waited for the other nodes' acknowledgements.
    pub ack_wait: Histogram,
    /// Whether the store is PostgreSQL (and so has a sync state).
    pub postgres: AtomicBool,
}

/// The server's counters.
pub static METRICS: Metrics = Metrics {
    requests: [const { AtomicU64::new(0) }; ROUTES * METHODS.len() * CLASSES.len()],
    durations: [const { Histogram::new(&REQUEST_BOUNDS) }; ROUTES],
    auth: [const { AtomicU64::new(0) }; OUTCOMES.len()],
    cache_hits: [const { AtomicU64::new(0) }; CACHE_KINDS.len()],
    cache_misses: [const { AtomicU64::new(0) }; CACHE_KINDS.len()],
    access_log_written: AtomicU64::new(0),
    access_log_dropped: AtomicU64::new(0),
    invalidations_sent: AtomicU64::new(0),
    invalidations_applied: AtomicU64::new(0),
    ack_wait: Histogram::new(&REQUEST_BOUNDS),
    postgres: AtomicBool::new(false),
};

impl Metrics {
    /// Counts a finished request of `route` (from [`route_of`]) and `method`
    /// (from [`method_index`]).
    pub fn request(&self, route: usize, method: usize, status: u16, took: Duration) {
        let class = usize::from((status / 100).clamp(1, 5) - 1);
        let slot = (route * METHODS.len() + method) * CLASSES.len() + class;
        if let Some(c) = self.requests.get(slot) {
            c.fetch_add(1, Relaxed);
        }
        if let Some(h) = self.durations.get(route) {
            h.observe(took);
        }
    }

    /// Counts an authentication's outcome.
    pub fn auth(&self, outcome: AuthOutcome) {
        self.auth[outcome as usize].fetch_add(1, Relaxed);
    }

    /// Counts a cache hit (`true`) or miss.
    pub fn cache(&self, kind: CacheKind, hit: bool) {
        let counters = if hit {
            &self.cache_hits
        } else {
            &self.cache_misses
        };
        counters[kind as usize].fetch_add(1, Relaxed);
    }
}

/// What a scrape reads besides the counters: the limiter's blocked
/// addresses and the node's sync state, computed at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct Gauges {
    /// Addresses the limiter blocks now.
    pub blocked_addresses: u64,
    /// PostgreSQL only: whether the node is in sync with the others.
    pub in_sync: Option<bool>,
}

/// The exposition of [`METRICS`] with the given gauges.
#[derive(Debug)]
struct Exposition(Gauges);

/// Writes a counter family with one label set per non-zero value.
fn counter_family<'a, L: prometheus_client::encoding::EncodeLabelSet + 'a>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl Iterator<Item = (L, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in series {
        ConstCounter::new(value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: &AtomicU64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value.load(Relaxed));
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let m = &METRICS;
        let requests = m.requests.iter().enumerate().filter_map(|(i, c)| {
            let n = c.load(Relaxed);
            let class = i % CLASSES.len();
            let method = (i / CLASSES.len()) % METHODS.len();
            let route = i / (CLASSES.len() * METHODS.len());
            (n > 0).then(|| {
                (
                    [
                        ("route", route_label(route)),
                        ("method", METHODS[method]),
                        ("status", CLASSES[class]),
                    ],
                    n,
                )
            })
        });
        counter_family(
            &mut encoder,
            "latchkey_http_requests",
            "HTTP requests answered, by route template, method and status class",
            requests,
        )?;
        {
            let mut family = encoder.encode_descriptor(
                "latchkey_http_request_duration_seconds",
                "Time from a request's arrival to its answer, by route template",
                None,
                MetricType::Histogram,
            )?;
            for (route, h) in m.durations.iter().enumerate() {
                let (sum, count, buckets) = h.snapshot();
                if count > 0 {
                    let labels = [("route", route_label(route))];
                    family
                        .encode_family(&labels)?
                        .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
                }
            }
        }
        let outcomes = OUTCOMES
            .iter()
            .zip(&m.auth)
            .map(|(o, c)| ([("outcome", *o)], c.load(Relaxed)));
        counter_family(
            &mut encoder,
            "latchkey_authentications",
            "Credentials checked, by outcome (forbidden: valid but refused by the policy; blocked: the address was blocked)",
            outcomes,
        )?;
        let kinds = |counters: &'static [AtomicU64; 4]| {
            CACHE_KINDS
                .iter()
                .zip(counters)
                .map(|(k, c)| ([("cache", *k)], c.load(Relaxed)))
        };
        counter_family(
            &mut encoder,
            "latchkey_cache_hits",
            "Look-ups answered from the cache",
            kinds(&m.cache_hits),
        )?;
        counter_family(
            &mut encoder,
            "latchkey_cache_misses",
            "Look-ups that went to the database (not cached, or the node out of sync)",
            kinds(&m.cache_misses),
        )?;
        gauge(
            &mut encoder,
            "latchkey_limiter_blocked_addresses",
            "Client addresses blocked now after repeated failed authentications",
            i64::try_from(self.0.blocked_addresses).unwrap_or(i64::MAX),
        )?;
        counter(
            &mut encoder,
            "latchkey_access_log_written",
            "Access-log entries stored",
            &m.access_log_written,
        )?;
        counter(
            &mut encoder,
            "latchkey_access_log_dropped",
            "Access-log entries and last uses dropped because the queue was full",
            &m.access_log_dropped,
        )?;
        if let Some(in_sync) = self.0.in_sync {
            counter(
                &mut encoder,
                "latchkey_invalidations_sent",
                "Invalidation-log entries this node appended (PostgreSQL)",
                &m.invalidations_sent,
            )?;
            counter(
                &mut encoder,
                "latchkey_invalidations_applied",
                "Invalidation-log entries this node applied to its cache (PostgreSQL)",
                &m.invalidations_applied,
            )?;
            gauge(
                &mut encoder,
                "latchkey_node_in_sync",
                "1 while this node trusts its cache (in sync with the other nodes), else 0 (PostgreSQL)",
                i64::from(in_sync),
            )?;
            let (sum, count, buckets) = m.ack_wait.snapshot();
            encoder
                .encode_descriptor(
                    "latchkey_write_ack_wait_seconds",
                    "How long a narrowing write (delete, rotation, …) waited for the other nodes' acknowledgements (PostgreSQL)",
                    None,
                    MetricType::Histogram,
                )?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}

/// The Prometheus text exposition of every metric, with these gauges.
pub fn render(gauges: Gauges) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Exposition(gauges)));
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &registry)?;
    Ok(text)
}

/// The exposition's `Content-Type`.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_route_templates() {
        assert_eq!(
            route_label(route_of(paths::AUTH_FORWARD)),
            paths::AUTH_FORWARD
        );
        assert_eq!(
            route_label(route_of("/console/keys/17")),
            "/console/keys/{id}"
        );
        assert_eq!(
            route_label(route_of("/console/users/jsmith/delete")),
            "/console/users/{name}/delete"
        );
        for unmatched in [
            "/console/keys//delete",
            "/nope",
            "/api/api-keys/list/",
            "/console/keys/1/x",
        ] {
            assert_eq!(route_label(route_of(unmatched)), UNMATCHED, "{unmatched}");
        }
    }

    #[test]
    fn histograms_count_each_bucket() {
        let h = Histogram::new(&REQUEST_BOUNDS);
        h.observe(Duration::from_micros(50));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let (sum, count, buckets) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 60.00305).abs() < 1e-9);
        assert_eq!(buckets[0], (0.0001, 1));
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 1)));
        assert_eq!(buckets[5], (0.005, 1));
    }
}
