//! One client connection, from accept to close: a bounded TLS handshake,
//! HTTP/1 or HTTP/2 (told apart by `preface`), and a watchdog that closes the
//! connection when it sits too long without a request in flight, whatever the
//! protocol state: no byte yet, half an HTTP/2 preface, TLS done but silent,
//! slow headers, HTTP/1 keep-alive, HTTP/2 with no open stream (PINGs do not
//! count as activity).
//!
//! Closing is graceful first (HTTP/1 finishes the request in flight, HTTP/2
//! sends GOAWAY), then forced: once nothing is in flight, a connection still
//! open `CLOSE_GRACE` after it was asked to close is dropped. That is what
//! keeps a peer that never answers GOAWAY's PING from holding a drain on
//! SIGTERM.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{header, HeaderValue, Request, Version};
use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::framing::{HeadInspector, Verdicts};
use super::limits::{BodyBudget, ConnectionTimeouts, IDLE_AT_CAP};
use super::preface::{Builders, GracefulShutdown};
use super::server::Router;
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, Registry};

/// How long a connection asked to close may take once nothing is in flight
/// (to flush the last response, answer GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Largest request head (HTTP/1) or header list (HTTP/2): 431 above. Bounds
/// each connection's read buffer.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Streams one HTTP/2 connection may have open at once.
pub const MAX_CONCURRENT_STREAMS: u32 = 100;
/// HTTP/2 flow-control windows: request data one connection (or stream) may
/// have sent that no handler has read yet. The protocol's default: browsers
/// cap beacons (`sendBeacon`, `fetch` keepalive) at 64 KiB anyway.
pub const H2_CONNECTION_WINDOW: u32 = 65_535;
pub const H2_STREAM_WINDOW: u32 = 65_535;

/// What every connection of one listener shares.
pub struct ConnectionSettings {
    /// HTTP/1 and HTTP/2 with the header, stream and window limits above.
    pub builders: Builders,
    pub tls: Option<TlsAcceptor>,
    pub timeouts: ConnectionTimeouts,
    /// Dropped with the last connection: it holds the sources' senders.
    pub router: Arc<Router>,
    /// Put in every request's extensions for `Intake` to reserve from; None
    /// on the admin listener, which reads no bodies.
    pub body_budget: Option<Arc<BodyBudget>>,
    /// Accepts waiting for a slot of the connection cap: while any wait, idle
    /// connections close after `IDLE_AT_CAP`.
    pub at_cap: watch::Receiver<usize>,
    pub timed_out: TimeoutCounters,
}

impl ConnectionSettings {
    pub fn new(
        tls: Option<TlsAcceptor>,
        timeouts: ConnectionTimeouts,
        router: Arc<Router>,
        body_budget: Option<Arc<BodyBudget>>,
        at_cap: watch::Receiver<usize>,
        registry: &Registry,
    ) -> Self {
        let mut http1 = http1::Builder::new();
        // max_buf_size alone let a head somewhat over it through, depending
        // on how the read buffer had grown; max_header_size is exact.
        //
        // Half-closes allowed: without them, hyper probes for EOF while a
        // request is being handled, and each probe reserves a read buffer
        // of the size the last reads grew to (up to max_buf_size). Under
        // overload with big beacons that was 64 KiB or more per waiting
        // connection, outside every budget: half the peak memory. And a
        // beacon read whole is taken and answered even if the browser has
        // shut its side (hyper dropped it when it saw the EOF first).
        http1
            .timer(TokioTimer::new())
            .max_buf_size(MAX_HEADER_BYTES)
            .max_header_size(MAX_HEADER_BYTES)
            .half_close(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_CONCURRENT_STREAMS)
            .max_header_list_size(MAX_HEADER_BYTES as u32)
            .initial_connection_window_size(H2_CONNECTION_WINDOW)
            .initial_stream_window_size(H2_STREAM_WINDOW);
        Self {
            builders: Builders { http1, http2 },
            tls,
            timeouts,
            router,
            body_budget,
            at_cap,
            timed_out: TimeoutCounters::new(registry),
        }
    }
}

/// `http_connection_timeouts_total{state}`: connections closed for sitting
/// too long in a state.
#[derive(Clone)]
pub struct TimeoutCounters {
    tls_handshake: Counter,
    first_request: Counter,
    idle: Counter,
    /// Closed early (after `IDLE_AT_CAP`) to make room under the cap.
    idle_at_cap: Counter,
}

impl TimeoutCounters {
    fn new(registry: &Registry) -> Self {
        let counter = |state: &str| {
            registry.counter(
                "http_connection_timeouts_total",
                "Connections closed for sitting too long in a state: tls_handshake, first_request (no complete request head since accept), idle (no request in flight), idle_at_cap (idle 1 s while the connection cap was reached).",
                &[("state", state)],
            )
        };
        Self {
            tls_handshake: counter("tls_handshake"),
            first_request: counter("first_request"),
            idle: counter("idle"),
            idle_at_cap: counter("idle_at_cap"),
        }
    }
}

/// Set by whoever reads a request's body to its end (`Intake`). An HTTP/1
/// answer to a request whose body was left unread says `Connection: close`,
/// because hyper cannot reuse the connection then.
#[derive(Clone, Default)]
pub struct BodyConsumed(Arc<std::sync::atomic::AtomicBool>);

impl BodyConsumed {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// Requests in flight on one connection and since when it has had none:
/// what the watchdog decides on (bytes read do not count, so a peer that
/// trickles bytes or PINGs without ever completing a request is idle).
struct Activity {
    /// Requests whose handler is running; the watchdog waits while > 0.
    in_flight: AtomicUsize,
    /// Requests started so far: 0 means the first-request timeout applies.
    served: AtomicU64,
    /// Accept, end of the TLS handshake, or end of the last request.
    idle_since: Mutex<Instant>,
    /// Woken when the last request in flight finishes, to re-arm the timer.
    idle_again: Notify,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            idle_since: Mutex::new(Instant::now()),
            idle_again: Notify::new(),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.served.fetch_add(1, Ordering::Relaxed);
        InFlight(self.clone())
    }

    fn idle_since(&self) -> Instant {
        *self.idle_since.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn restart_clock(&self) {
        *self.idle_since.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
    }
}

/// Held while a request is being handled.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.restart_clock();
            self.0.idle_again.notify_one();
        }
    }
}

/// Serves one accepted connection until it closes.
///
/// The TLS handshake and the connection are boxed: held in this future, the
/// generator kept a slot for each of them and for their moves, and every
/// task cost 11.6 KiB (measured) before it had read a byte.
pub async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    settings: Arc<ConnectionSettings>,
    mut shutdown: Shutdown,
) {
    let activity = Activity::new();
    let verdicts = Verdicts::default();
    let service = {
        let activity = activity.clone();
        let verdicts = verdicts.clone();
        let settings = settings.clone();
        // The connection's own handle on the router, cloned per request: a
        // clone of the shared `Arc<Router>` itself is an atomic write to a
        // line every worker's connections share.
        let router = Arc::new(settings.router.clone());
        service_fn(move |mut request: Request<Incoming>| {
            let in_flight = activity.begin();
            let http1 = request.version() < Version::HTTP_2;
            // One verdict per HTTP/1 head, in order: take it even when unused.
            let framing = if http1 { verdicts.next() } else { None };
            let has_body = !request.body().is_end_stream();
            let consumed = BodyConsumed::default();
            request.extensions_mut().insert(consumed.clone());
            if let Some(budget) = &settings.body_budget {
                request.extensions_mut().insert(budget.clone());
            }
            let router = router.clone();
            async move {
                let mut response = router.dispatch(request, peer, framing).await;
                if http1 && has_body && !consumed.get() {
                    response
                        .headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                drop(in_flight);
                Ok::<_, Infallible>(response)
            }
        })
    };
    match &settings.tls {
        None => {
            let io = HeadInspector::new(stream, verdicts);
            let connection = Box::pin(settings.builders.serve_connection(io, service));
            watch_connection(connection, &activity, &settings, shutdown).await;
        }
        Some(acceptor) => {
            let handshake = tokio::select! {
                done = tokio::time::timeout(settings.timeouts.tls_handshake, Box::pin(acceptor.accept(stream))) => done,
                _ = shutdown.recv() => return,
            };
            let tls_stream = match handshake {
                Ok(Ok(tls_stream)) => tls_stream,
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {peer} failed: {e}");
                    return;
                }
                Err(_) => {
                    settings.timed_out.tls_handshake.inc();
                    tracing::debug!("TLS handshake with {peer} timed out");
                    return;
                }
            };
            // The wait for the first request starts once TLS is up.
            activity.restart_clock();
            let io = HeadInspector::new(tls_stream, verdicts);
            let connection = Box::pin(settings.builders.serve_connection(io, service));
            watch_connection(connection, &activity, &settings, shutdown).await;
        }
    }
}

/// Drives `connection` until it ends, closing it when it idles past its
/// timeout or when shutdown begins.
async fn watch_connection<C: GracefulShutdown>(
    mut connection: Pin<Box<C>>,
    activity: &Activity,
    settings: &ConnectionSettings,
    mut shutdown: Shutdown,
) {
    let timeouts = settings.timeouts;
    let mut at_cap = settings.at_cap.clone();
    let mut at_cap_watched = true;
    // Since when the connection has been asked to close.
    let mut closing: Option<Instant> = None;
    // One timer for the connection's life, moved on as requests end: a new
    // one per request went through the timer wheel's lock twice (armed at
    // the end of a request, dropped at the end of the next), while moving a
    // registered timer later is one atomic store.
    let sleep = tokio::time::sleep_until(far_future());
    tokio::pin!(sleep);
    loop {
        let first = activity.served.load(Ordering::Relaxed) == 0;
        let mut limit = if first {
            timeouts.first_request
        } else {
            timeouts.idle
        };
        let pressed = *at_cap.borrow() > 0 && IDLE_AT_CAP < limit;
        if pressed {
            limit = IDLE_AT_CAP;
        }
        let deadline = if activity.in_flight.load(Ordering::SeqCst) > 0 {
            None
        } else {
            let idle_since = activity.idle_since();
            Some(match closing {
                Some(asked) => asked.max(idle_since) + CLOSE_GRACE,
                None => idle_since + limit,
            })
        };
        if deadline.is_some_and(|at| at <= Instant::now()) {
            if closing.is_some() {
                // Nothing in flight, and the peer has not closed: drop it.
                return;
            }
            let counter = match (pressed, first) {
                (true, _) => &settings.timed_out.idle_at_cap,
                (false, true) => &settings.timed_out.first_request,
                (false, false) => &settings.timed_out.idle,
            };
            counter.inc();
            connection.as_mut().graceful_shutdown();
            closing = Some(Instant::now());
            continue;
        }
        if let Some(at) = deadline {
            if sleep.deadline() != at {
                sleep.as_mut().reset(at);
            }
        }
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = shutdown.recv(), if closing.is_none() => {
                connection.as_mut().graceful_shutdown();
                closing = Some(Instant::now());
            }
            _ = activity.idle_again.notified() => {}
            changed = at_cap.changed(), if at_cap_watched && closing.is_none() => {
                at_cap_watched = changed.is_ok();
            }
            _ = &mut sleep, if deadline.is_some() => {}
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}
