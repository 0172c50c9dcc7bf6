//! The listener's share of the memory budget: how many connections may be
//! open, how many bytes of request bodies may be held at once, and how long a
//! connection may sit in each protocol state. One `[http]` table sets them for
//! every intake listener; docs/limits.md turns them into a bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

/// The top-level `[http]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct HttpServerOptions {
    /// Connections open at once, across every intake listener. A permit is
    /// taken before `accept`, so over the cap new connections wait in the
    /// kernel's accept queue (they are not refused); while one waits, every
    /// connection without a request in flight for 1 s is closed to make room.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Bytes of request bodies held at once across every connection, stream
    /// and source: wire bytes as they arrive plus what decompression makes of
    /// them. A request that finds no room is answered 503 + `Retry-After`.
    #[serde(
        default = "default_max_body_bytes_in_flight",
        deserialize_with = "crate::config::byte_size::deserialize"
    )]
    pub max_body_bytes_in_flight: usize,
    /// From accept (or the end of the TLS handshake) to the first complete
    /// request head: covers silent sockets, a partial HTTP/2 preface, slow
    /// headers.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/1 keep-alive and HTTP/2 alike; HTTP/2 gets a GOAWAY).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// Longest TLS handshake.
    #[serde(default = "default_tls_handshake_timeout")]
    pub tls_handshake_timeout_secs: u64,
}

pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
pub const DEFAULT_MAX_BODY_BYTES_IN_FLIGHT: usize = 16 * 1024 * 1024;

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}
fn default_max_body_bytes_in_flight() -> usize {
    DEFAULT_MAX_BODY_BYTES_IN_FLIGHT
}
fn default_header_read_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    30
}
fn default_tls_handshake_timeout() -> u64 {
    10
}

impl Default for HttpServerOptions {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            max_body_bytes_in_flight: default_max_body_bytes_in_flight(),
            header_read_timeout_secs: default_header_read_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            tls_handshake_timeout_secs: default_tls_handshake_timeout(),
        }
    }
}

/// Longest connection timeout: a day is more than any client waits, and a
/// deadline far past it would overflow the clock.
pub const MAX_TIMEOUT_SECS: u64 = 86_400;

/// Largest `max_body_bytes_in_flight`: the semaphore takes at most this many
/// permits in one acquire.
pub const MAX_BODY_BYTES_IN_FLIGHT: usize = u32::MAX as usize;

impl HttpServerOptions {
    /// Value problems as (key, message); keys are relative to `[http]`.
    pub fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.max_connections == 0 {
            problems.push(("max_connections", "must be at least 1".to_owned()));
        }
        if self.max_body_bytes_in_flight == 0 {
            problems.push(("max_body_bytes_in_flight", "must be at least 1".to_owned()));
        }
        if self.max_body_bytes_in_flight > MAX_BODY_BYTES_IN_FLIGHT {
            problems.push((
                "max_body_bytes_in_flight",
                format!("must be at most {MAX_BODY_BYTES_IN_FLIGHT} (4 GiB)"),
            ));
        }
        for (key, value) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            (
                "tls_handshake_timeout_secs",
                self.tls_handshake_timeout_secs,
            ),
        ] {
            if value == 0 {
                problems.push((key, "must be at least 1".to_owned()));
            } else if value > MAX_TIMEOUT_SECS {
                problems.push((key, format!("must be at most {MAX_TIMEOUT_SECS} (a day)")));
            }
        }
        problems
    }

    pub fn timeouts(&self) -> ConnectionTimeouts {
        ConnectionTimeouts {
            first_request: Duration::from_secs(self.header_read_timeout_secs),
            idle: Duration::from_secs(self.idle_timeout_secs),
            tls_handshake: Duration::from_secs(self.tls_handshake_timeout_secs),
        }
    }
}

/// How long a connection may sit in each state, as `connection` uses them.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionTimeouts {
    pub first_request: Duration,
    pub idle: Duration,
    pub tls_handshake: Duration,
}

/// While a connection waits for a slot, connections idle this long are closed
/// (instead of after `idle_timeout_secs`, `header_read_timeout_secs` or
/// `tls_handshake_timeout_secs`).
pub const IDLE_AT_CAP: Duration = Duration::from_secs(1);

/// The connection cap the intake listeners share (mini-redis style: a permit
/// is taken before accepting and travels with the connection), and how many
/// accepts are waiting for one, which idle connections watch.
pub struct ConnectionCap {
    slots: Arc<Semaphore>,
    max: usize,
    waiting: watch::Sender<usize>,
    /// Slots held by accepted connections: each accept loop also holds one
    /// while it waits in `accept`, which is no connection.
    open: AtomicUsize,
}

impl ConnectionCap {
    pub fn new(max: usize) -> Arc<Self> {
        let max = max.max(1);
        Arc::new(Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
            waiting: watch::Sender::new(0),
            open: AtomicUsize::new(0),
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections holding a slot right now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Slots free right now (those an accept loop holds are not).
    #[cfg(test)]
    pub(crate) fn available(&self) -> usize {
        self.slots.available_permits()
    }

    /// `permit`, now held by an accepted connection: counted open until
    /// the slot is dropped.
    pub fn occupy(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        self.open.fetch_add(1, Ordering::Relaxed);
        Slot {
            _permit: permit,
            cap: self.clone(),
        }
    }

    /// A slot, waiting for one if the cap is reached. While it waits, `at_cap`
    /// says so; cancelling (on shutdown) is fine.
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return permit;
        }
        // Receivers are woken only when the count leaves or returns to 0: under
        // a flood accepts wait and get slots all the time, and every idle
        // connection watches this.
        self.waiting.send_if_modified(|n| {
            *n += 1;
            *n == 1
        });
        let _waiting = Waiting(&self.waiting);
        match self.slots.clone().acquire_owned().await {
            Ok(permit) => permit,
            // The semaphore is never closed.
            Err(_) => std::future::pending().await,
        }
    }

    /// Accepts waiting for a slot (0 when none); connections watch it. A
    /// change is announced only when it turns 0 or stops being 0.
    pub fn at_cap(&self) -> watch::Receiver<usize> {
        self.waiting.subscribe()
    }
}

/// An accepted connection's slot of the cap; travels with its task.
pub struct Slot {
    _permit: OwnedSemaphorePermit,
    cap: Arc<ConnectionCap>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.cap.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts one waiting accept for as long as it lives.
struct Waiting<'a>(&'a watch::Sender<usize>);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.send_if_modified(|n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// Bytes of request bodies held at once, shared by every listener and source.
/// The listener hands it to each request (`BodyHandles`); `Intake` reserves from
/// it as body bytes arrive and releases when the request is done with them.
pub struct BodyBudget {
    bytes: Semaphore,
    max: usize,
}

impl BodyBudget {
    pub fn new(max: usize) -> Arc<Self> {
        let max = max.clamp(1, MAX_BODY_BYTES_IN_FLIGHT);
        Arc::new(Self {
            bytes: Semaphore::new(max),
            max,
        })
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Bytes reserved right now.
    pub fn in_use(&self) -> usize {
        self.max.saturating_sub(self.bytes.available_permits())
    }
}

/// A request's reservation; returned to the budget when dropped. It holds
/// the budget and a count, not a semaphore permit per growth: every clone of
/// a shared `Arc` is an atomic write to a line all workers share, and a
/// request paid four of them here.
pub struct BodyPermit {
    /// None: no budget applies (unit tests, admin routes).
    budget: Option<Arc<BodyBudget>>,
    held: usize,
}

impl BodyPermit {
    /// An empty reservation from `budget` (the request's own handle on it).
    pub fn of(budget: Arc<BodyBudget>) -> Self {
        Self {
            budget: Some(budget),
            held: 0,
        }
    }

    /// A reservation that never runs out.
    pub fn unlimited() -> Self {
        Self {
            budget: None,
            held: 0,
        }
    }

    /// Reserves `n` more bytes, without waiting: false when the budget has no
    /// room (the caller answers 503 and drops what it read).
    pub fn grow(&mut self, n: usize) -> bool {
        let Some(budget) = &self.budget else {
            return true;
        };
        if n == 0 {
            return true;
        }
        let Ok(n32) = u32::try_from(n) else {
            return false;
        };
        match budget.bytes.try_acquire_many(n32) {
            Ok(permit) => {
                // Given back by `drop`, with the rest of what is held.
                permit.forget();
                self.held += n;
                true
            }
            Err(_) => false,
        }
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.held
    }
}

impl Drop for BodyPermit {
    fn drop(&mut self) {
        if let (Some(budget), true) = (&self.budget, self.held > 0) {
            budget.bytes.add_permits(self.held);
        }
    }
}

/// Raises this process's soft limit of open files to its hard limit, so the
/// connection cap, not the fd limit, decides when accepting waits. Returns the
/// limit now in force (None where it cannot be read).
pub fn raise_fd_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return None;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    // rlim_t is u64 on Linux, not everywhere.
    #[allow(clippy::unnecessary_cast)]
    Some(limit.rlim_cur as u64)
}

/// File descriptors kept apart from client connections: Elasticsearch
/// connections, the dead-letter file, mmdb files, the admin listener.
pub const FD_RESERVE: u64 = 256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_permits_share_one_budget_and_return_on_drop() {
        let budget = BodyBudget::new(100);
        let mut a = BodyPermit::of(budget.clone());
        assert!(a.grow(60));
        let mut b = BodyPermit::of(budget.clone());
        assert!(!b.grow(50), "only 40 left");
        assert!(b.grow(40));
        assert_eq!(budget.in_use(), 100);
        assert!(a.grow(0));
        drop(a);
        assert_eq!(budget.in_use(), 40);
        assert!(b.grow(60));
        assert_eq!(b.bytes(), 100);
    }

    #[tokio::test]
    async fn a_waiting_accept_is_announced_until_it_gets_a_slot() {
        let cap = ConnectionCap::new(1);
        let at_cap = cap.at_cap();
        let held = cap.occupy(cap.acquire().await);
        assert_eq!(cap.open(), 1);
        let waiter = {
            let cap = cap.clone();
            tokio::spawn(async move { cap.acquire().await })
        };
        tokio::task::yield_now().await;
        while *at_cap.borrow() == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        let permit = waiter.await.unwrap();
        assert_eq!(*at_cap.borrow(), 0);
        assert_eq!(cap.open(), 0, "a slot no connection holds yet");
        let _slot = cap.occupy(permit);
        assert_eq!(cap.open(), 1);
    }

    #[test]
    fn unlimited_permit_always_grows() {
        let mut permit = BodyPermit::unlimited();
        assert!(permit.grow(usize::MAX));
    }

    #[test]
    fn zero_values_are_refused_by_key() {
        let options = HttpServerOptions {
            max_connections: 0,
            idle_timeout_secs: 0,
            ..HttpServerOptions::default()
        };
        let keys: Vec<&str> = options.check().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["max_connections", "idle_timeout_secs"]);
    }

    #[test]
    fn timeouts_past_a_day_are_refused_by_key() {
        let options = HttpServerOptions {
            header_read_timeout_secs: MAX_TIMEOUT_SECS + 1,
            idle_timeout_secs: MAX_TIMEOUT_SECS,
            tls_handshake_timeout_secs: u64::MAX,
            ..HttpServerOptions::default()
        };
        let keys: Vec<&str> = options.check().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            ["header_read_timeout_secs", "tls_handshake_timeout_secs"]
        );
    }
}
