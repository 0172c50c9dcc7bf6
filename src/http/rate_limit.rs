//! Per-client rate limits of an HTTP source (GCRA, the `governor` crate), on
//! the address `client_ip` resolved (so behind trusted proxies it is the
//! browser's, not the proxy's). IPv6 clients are keyed by their /64: one
//! host usually owns a whole /64, and per-address keys would give it 2^64
//! fresh budgets. The table of clients is bounded by `max_clients`.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use governor::clock::DefaultClock;
use governor::nanos::Nanos;
use governor::state::keyed::{DashMapStateStore, ShrinkableKeyedStateStore};
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};
use serde::Deserialize;

/// `rate_limit` of an HTTP source. Absent, or 0 requests per second: no limit.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimitOptions {
    /// Sustained requests per second one client may send; 0 turns the limit
    /// off (so an environment variable can).
    pub requests_per_second: u32,
    /// Requests one client may send at once after being quiet (the bucket
    /// size). Defaults to `requests_per_second`.
    #[serde(default)]
    pub burst: Option<u32>,
    /// Clients tracked at once; bounds the table's memory (about 64 bytes a
    /// client). When it is full, clients outside it share one bucket of the
    /// same size until quiet clients are swept out; clients already in it
    /// keep their own.
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
}

pub const DEFAULT_MAX_CLIENTS: usize = 100_000;

fn default_max_clients() -> usize {
    DEFAULT_MAX_CLIENTS
}

impl RateLimitOptions {
    /// Value problems as (key, message), keys relative to the source.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.burst == Some(0) {
            problems.push(("rate_limit.burst", "must be at least 1".to_owned()));
        }
        if self.max_clients == 0 {
            problems.push(("rate_limit.max_clients", "must be at least 1".to_owned()));
        }
        problems
    }
}

/// Sweeping the table is O(clients): at most once per this many ms.
const SWEEP_EVERY_MS: u64 = 1000;

/// The limiter's state: a bucket per tracked client, and one shared by the
/// clients that arrive while the table is full, so a flood of fresh addresses
/// neither grows memory nor escapes the limit. A tracked client keeps its own
/// bucket whatever the flood does: it is neither refused for the flood's
/// spending nor let through on the flood's tokens.
struct ClientTable {
    clients: DashMapStateStore<IpAddr>,
    overflow: InMemoryState,
    max_clients: usize,
}

impl StateStore for ClientTable {
    type Key = IpAddr;

    fn measure_and_replace<T, F, E>(&self, key: &IpAddr, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        // Both checks race a sweep or another new client; the table may
        // overshoot `max_clients` by the requests in flight, never more.
        if self.clients.contains_key(key) || self.clients.len() < self.max_clients {
            self.clients.measure_and_replace(key, f)
        } else {
            self.overflow.measure_and_replace(&NotKeyed::NonKey, f)
        }
    }
}

impl ShrinkableKeyedStateStore<IpAddr> for ClientTable {
    fn retain_recent(&self, drop_below: Nanos) {
        ShrinkableKeyedStateStore::retain_recent(&self.clients, drop_below);
    }

    fn len(&self) -> usize {
        self.clients.len()
    }

    fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }
}

pub struct ClientRateLimiter {
    limiter: RateLimiter<IpAddr, ClientTable, DefaultClock>,
    max_clients: usize,
    started: Instant,
    /// Milliseconds after `started` of the last sweep of quiet clients.
    last_sweep_ms: AtomicU64,
}

impl ClientRateLimiter {
    /// None when the limit is off (0 requests per second) or the options are
    /// invalid (`check` reports those).
    pub fn new(options: &RateLimitOptions) -> Option<Self> {
        let rate = NonZeroU32::new(options.requests_per_second)?;
        let burst = NonZeroU32::new(options.burst.unwrap_or(options.requests_per_second))?;
        let quota = Quota::per_second(rate).allow_burst(burst);
        let max_clients = options.max_clients.max(1);
        let table = ClientTable {
            clients: DashMapStateStore::default(),
            overflow: InMemoryState::default(),
            max_clients,
        };
        Some(Self {
            limiter: RateLimiter::new(quota, table, DefaultClock::default()),
            max_clients,
            started: Instant::now(),
            last_sweep_ms: AtomicU64::new(0),
        })
    }

    /// True when `client` may send one more request now. A refused client may
    /// try again within 1 s: with at least 1 request per second, one token
    /// comes back at least that often (hence `Retry-After: 1`).
    pub fn allow(&self, client: IpAddr) -> bool {
        if self.limiter.len() >= self.max_clients {
            self.sweep();
        }
        self.limiter.check_key(&rate_key(client)).is_ok()
    }

    /// Clients tracked right now.
    pub fn clients(&self) -> usize {
        self.limiter.len()
    }

    /// Forgets clients whose bucket has refilled (they would start fresh anyway).
    fn sweep(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        let last = self.last_sweep_ms.load(Ordering::Relaxed);
        if now.saturating_sub(last) < SWEEP_EVERY_MS
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        self.limiter.retain_recent();
    }
}

/// IPv4 addresses as they are, IPv6 addresses by their /64.
fn rate_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(prefix))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: u32, burst: u32, max_clients: usize) -> ClientRateLimiter {
        ClientRateLimiter::new(&RateLimitOptions {
            requests_per_second: rps,
            burst: Some(burst),
            max_clients,
        })
        .unwrap()
    }

    #[test]
    fn each_client_has_its_own_burst() {
        let limiter = limiter(1, 3, 10);
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        assert!((0..3).all(|_| limiter.allow(a)));
        assert!(!limiter.allow(a));
        assert!(limiter.allow(b));
    }

    #[test]
    fn ipv6_clients_share_their_64() {
        let limiter = limiter(1, 1, 10);
        assert!(limiter.allow("2001:db8:1:2::1".parse().unwrap()));
        assert!(!limiter.allow("2001:db8:1:2:ffff::9".parse().unwrap()));
        assert!(limiter.allow("2001:db8:1:3::1".parse().unwrap()));
    }

    #[test]
    fn a_full_table_stops_growing_and_still_limits() {
        let limiter = limiter(1, 2, 4);
        for i in 0..4u8 {
            assert!(limiter.allow(IpAddr::from([198, 51, 100, i])));
        }
        // Every tracked client spent a token: none is swept out, so new
        // addresses share the overflow bucket (burst 2).
        let fresh = (10..200u8).filter(|i| limiter.allow(IpAddr::from([198, 51, 100, *i])));
        assert_eq!(fresh.count(), 2);
        assert_eq!(limiter.clients(), 4);
    }

    #[test]
    fn a_flood_of_fresh_addresses_does_not_touch_tracked_clients() {
        let limiter = limiter(1, 3, 2);
        let a: IpAddr = "203.0.113.1".parse().unwrap();
        let b: IpAddr = "203.0.113.2".parse().unwrap();
        assert!(limiter.allow(a));
        for _ in 0..3 {
            assert!(limiter.allow(b));
        }
        // The table is full and nobody is quiet: the flood spends the shared
        // bucket until it refuses.
        let flood = (10..200u8).filter(|i| limiter.allow(IpAddr::from([198, 51, 100, *i])));
        assert_eq!(flood.count(), 3);
        // `a` still has its own two tokens; `b`, which spent its burst, is
        // not let through on the flood's bucket either.
        assert!(limiter.allow(a));
        assert!(limiter.allow(a));
        assert!(!limiter.allow(a));
        assert!(!limiter.allow(b));
        assert_eq!(limiter.clients(), 2);
    }

    #[test]
    fn zero_values_are_refused_by_key_but_zero_per_second_is_off() {
        let options = RateLimitOptions {
            requests_per_second: 0,
            burst: Some(0),
            max_clients: 0,
        };
        let keys: Vec<&str> = options.check().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["rate_limit.burst", "rate_limit.max_clients"]);
        let off = RateLimitOptions {
            requests_per_second: 0,
            burst: None,
            max_clients: 10,
        };
        assert!(off.check().is_empty());
        assert!(ClientRateLimiter::new(&off).is_none());
    }
}
