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
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{header, HeaderValue, Request, Version};
use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use super::framing::{HeadInspector, Verdicts};
use super::limits::{BodyBudget, ConnectionTimeouts, IDLE_AT_CAP};
use super::on_wake::OnWake;
use super::preface::{Builders, GracefulShutdown, MalformedHeads};
use super::server::Router;
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, Registry};

/// How long a connection asked to close may take once nothing is in flight
/// (to flush the last response, answer GOAWAY) before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Largest request head (HTTP/1) or header list (HTTP/2): 431 above. Bounds
/// each connection's read buffer.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Header bytes (as HTTP/2 counts them: name, value and 32 a field) the
/// requests in flight on one connection may hold together. HTTP/1 holds one
/// head at a time; without this an HTTP/2 client held 100 header lists of
/// 64 KiB (HPACK makes them a few bytes each on the wire) for as long as
/// their bodies did not come. A stream over it is answered 503 (one alone
/// never is: its list is at most `MAX_HEADER_BYTES`). As much as
/// one HTTP/1 head, and as the connection's window holds of bodies: the
/// largest header list fits alone.
pub const H2_HEADER_BYTES_IN_FLIGHT: usize = MAX_HEADER_BYTES;
/// The header list of a beacon at its heaviest in ordinary traffic: a
/// browser's cookies, user agent and client hints plus a proxy's own
/// headers take 3-5 KiB.
pub const H2_ORDINARY_HEADER_BYTES: usize = 8 * 1024;
/// Streams one HTTP/2 connection may have open at once, advertised as
/// SETTINGS_MAX_CONCURRENT_STREAMS: as many as `H2_HEADER_BYTES_IN_FLIGHT`
/// holds of ordinary header lists. A reverse proxy multiplexing many
/// browsers over one connection honours it (queues, or opens another
/// connection) and never meets the cap's 503; with 100 streams it did,
/// past ~18 beacons in flight. A stream opened past it anyway is reset
/// with REFUSED_STREAM (not processed: safe to retry) by h2 itself.
pub const MAX_CONCURRENT_STREAMS: u32 =
    (H2_HEADER_BYTES_IN_FLIGHT / H2_ORDINARY_HEADER_BYTES) as u32;
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
    /// Handed to every request (`BodyHandles`) for `Intake` to reserve from; None
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
        //
        // No header-read timeout of hyper's own: the watchdog below closes a
        // connection whose head is slow (no request in flight is idle), and
        // hyper's boxed a new timer for every request's head, registered and
        // dropped through the timer wheel's lock.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(None)
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
            builders: Builders {
                http1,
                http2,
                malformed_heads: MalformedHeads::new(registry),
            },
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
                "Connections closed for sitting too long in a state: tls_handshake, first_request (no complete request head since accept), idle (no request in flight), idle_at_cap (1 s without a request in flight, or in the TLS handshake, while the connection cap was reached).",
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
/// because hyper cannot reuse the connection then. One per HTTP/1
/// connection, cleared as each request begins: hyper hands a connection's
/// requests over one at a time, each once the last one's handler is done.
#[derive(Clone, Default)]
pub struct BodyConsumed(Arc<std::sync::atomic::AtomicBool>);

impl BodyConsumed {
    pub fn mark(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
    fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
    fn clear(&self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// What a request's handler reads its body under, handed over with the
/// request. (They were the request's extensions: a map allocated, two
/// values boxed and hashed into it, one taken out, one looked up and
/// cloned, the map dropped: ~700 instructions a request.)
#[derive(Clone, Default)]
pub struct BodyHandles {
    /// The listener's budget of body bytes in flight, for `Intake` to
    /// reserve from; None on the admin listener, which reads no bodies.
    pub budget: Option<Arc<BodyBudget>>,
    /// HTTP/1 only: marked once the body is read (`BodyConsumed`).
    pub consumed: Option<BodyConsumed>,
}

/// Requests in flight on one connection and since when it has had none:
/// what the watchdog decides on (bytes read do not count, so a peer that
/// trickles bytes or PINGs without ever completing a request is idle).
/// Requests only write here; the watchdog reads it when its timer fires.
struct Activity {
    /// Requests whose handler is running; the watchdog waits while > 0.
    in_flight: AtomicUsize,
    /// Requests started so far: 0 means the first-request timeout applies.
    served: AtomicU64,
    /// Header bytes of the requests in flight (HTTP/2 only): at most
    /// `H2_HEADER_BYTES_IN_FLIGHT`.
    header_bytes: AtomicUsize,
    /// What `idle_since` counts from.
    born: Instant,
    /// Accept, end of the TLS handshake, or end of the last request, in
    /// nanoseconds after `born`.
    idle_since_nanos: AtomicU64,
}

impl Activity {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            header_bytes: AtomicUsize::new(0),
            born: Instant::now(),
            idle_since_nanos: AtomicU64::new(0),
        })
    }

    /// A request begins, holding `header_bytes` of the connection's
    /// `H2_HEADER_BYTES_IN_FLIGHT` until it ends; the bool is false (and
    /// nothing is held) when they do not fit.
    fn begin(self: &Arc<Self>, header_bytes: usize) -> (InFlight, bool) {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::Relaxed);
        // HTTP/1 (0 bytes) touches nothing. A request alone always fits
        // (HTTP/2 has refused a list over `MAX_HEADER_BYTES` by its count).
        let fits = header_bytes == 0 || {
            let held = self.header_bytes.fetch_add(header_bytes, Ordering::Relaxed);
            held == 0 || held + header_bytes <= H2_HEADER_BYTES_IN_FLIGHT
        };
        if !fits {
            self.header_bytes.fetch_sub(header_bytes, Ordering::Relaxed);
        }
        let header_bytes = if fits { header_bytes } else { 0 };
        (InFlight(self.clone(), header_bytes), fits)
    }

    fn idle_since(&self) -> Instant {
        self.born + Duration::from_nanos(self.idle_since_nanos.load(Ordering::Acquire))
    }

    fn restart_clock(&self) {
        let nanos = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        // The latest end wins: two HTTP/2 streams ending at once may store
        // out of order.
        self.idle_since_nanos.fetch_max(nanos, Ordering::Release);
    }

    /// When the connection may be closed, as far as its requests go: `grace`
    /// after it went idle, or (a request in flight) not before `grace` from
    /// now, when the watchdog looks again.
    fn idle_deadline(&self, grace: Duration) -> Instant {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            Instant::now() + grace
        } else {
            self.idle_since() + grace
        }
    }
}

/// Held while a request is being handled, with the header bytes it holds.
struct InFlight(Arc<Activity>, usize);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.1 > 0 {
            self.0.header_bytes.fetch_sub(self.1, Ordering::Relaxed);
        }
        // The clock first: a watchdog that sees nothing in flight sees it.
        self.0.restart_clock();
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A request's header list as HTTP/2 sizes it (RFC 9113 6.5.2): each
/// field's name and value plus 32, pseudo-header fields included.
pub(super) fn h2_header_bytes<B>(request: &Request<B>) -> usize {
    let fields = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 32)
        .sum::<usize>();
    let uri = request.uri();
    let pseudo = [
        (":method", request.method().as_str().len()),
        (":scheme", uri.scheme_str().map_or(0, str::len)),
        (
            ":authority",
            uri.authority().map_or(0, |a| a.as_str().len()),
        ),
        (
            ":path",
            uri.path_and_query().map_or(0, |p| p.as_str().len()),
        ),
    ];
    fields
        + pseudo
            .iter()
            .map(|(name, len)| name.len() + len + 32)
            .sum::<usize>()
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
    // Cleared for each HTTP/1 request (see `BodyConsumed`).
    let consumed = BodyConsumed::default();
    let service = {
        let activity = activity.clone();
        let verdicts = verdicts.clone();
        let settings = settings.clone();
        // The connection's own handle on the router, cloned per request: a
        // clone of the shared `Arc<Router>` itself is an atomic write to a
        // line every worker's connections share.
        let router = Arc::new(settings.router.clone());
        service_fn(move |request: Request<Incoming>| {
            let http1 = request.version() < Version::HTTP_2;
            // HTTP/1 holds one head at a time, bounded by `MAX_HEADER_BYTES`.
            let header_bytes = if http1 { 0 } else { h2_header_bytes(&request) };
            let (in_flight, headers_fit) = activity.begin(header_bytes);
            // One verdict per HTTP/1 head, in order: take it even when unused.
            let framing = if http1 { verdicts.next() } else { None };
            let has_body = !request.body().is_end_stream();
            // Only an HTTP/1 answer looks at it.
            let consumed = http1.then(|| {
                consumed.clear();
                consumed.clone()
            });
            let handles = BodyHandles {
                budget: settings.body_budget.clone(),
                consumed: consumed.clone(),
            };
            // Refused here, in hyper's call: its headers are dropped before
            // its task is spawned, not when the task first runs (a busy
            // runtime kept every refused list of the connection meanwhile).
            let request = if headers_fit {
                Ok(request)
            } else {
                Err(router.refuse_headers_in_flight(request))
            };
            let router = router.clone();
            async move {
                let mut response = match request {
                    Ok(request) => router.dispatch(request, peer, framing, handles).await,
                    Err(refused) => refused,
                };
                if has_body && consumed.is_some_and(|c| !c.get()) {
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
            // Bounded as a connection without a request is: by its own
            // timeout, by 1 s while an accept waits for a slot (counted),
            // and by shutdown.
            let handshake = tokio::select! {
                done = Box::pin(acceptor.accept(stream)) => done,
                () = until_asked_to_close(&activity, &settings, &mut shutdown, Phase::TlsHandshake) => {
                    tracing::debug!("TLS handshake with {peer} cut short");
                    return;
                }
            };
            let tls_stream = match handshake {
                Ok(tls_stream) => tls_stream,
                Err(e) => {
                    tracing::debug!("TLS handshake with {peer} failed: {e}");
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
    // The watchdog is polled only on its own events (`OnWake`), not on each
    // of the connection's reads and writes.
    let mut asked_to_close = OnWake::new(until_asked_to_close(
        activity,
        settings,
        &mut shutdown,
        Phase::Http,
    ));
    // The watchdog first: a connection that spends the task's coop budget
    // on every poll (a peer sending frames faster than they are parsed)
    // would otherwise leave its timer and shutdown signal always Pending.
    // Not woken, it costs a flag load.
    let served_to_the_end = std::future::poll_fn(|cx| {
        if asked_to_close.poll(cx).is_ready() {
            return Poll::Ready(false);
        }
        connection.as_mut().poll(cx).map(|()| true)
    })
    .await;
    if served_to_the_end {
        return;
    }
    drop(asked_to_close);
    connection.as_mut().graceful_shutdown();
    // Once nothing is in flight, `CLOSE_GRACE` to finish; then it is dropped.
    let asked = Instant::now();
    let sleep = tokio::time::sleep_until(asked + CLOSE_GRACE);
    tokio::pin!(sleep);
    loop {
        let deadline = activity.idle_deadline(CLOSE_GRACE).max(asked + CLOSE_GRACE);
        if deadline <= Instant::now() {
            // Nothing in flight, and the peer has not closed: drop it.
            return;
        }
        sleep.as_mut().reset(deadline);
        tokio::select! {
            _ = connection.as_mut() => return,
            _ = &mut sleep => {}
        }
    }
}

/// What a connection is waiting for before its first request.
#[derive(Clone, Copy, PartialEq)]
enum Phase {
    /// The end of the TLS handshake (`tls_handshake` timeout).
    TlsHandshake,
    /// A request head (`first_request`), then the next ones (`idle`).
    Http,
}

/// Resolves when the connection should close: it idled past its timeout
/// (counted), or shutdown began. The timer is not moved as requests come and
/// go: when it fires, the deadline is worked out again from the activity,
/// and a connection that was busy meanwhile gets a later one.
async fn until_asked_to_close(
    activity: &Activity,
    settings: &ConnectionSettings,
    shutdown: &mut Shutdown,
    phase: Phase,
) {
    let timeouts = settings.timeouts;
    let (first_limit, first_counter) = match phase {
        Phase::TlsHandshake => (timeouts.tls_handshake, &settings.timed_out.tls_handshake),
        Phase::Http => (timeouts.first_request, &settings.timed_out.first_request),
    };
    let mut at_cap = settings.at_cap.clone();
    let mut at_cap_watched = true;
    let shutdown_begun = shutdown.recv();
    tokio::pin!(shutdown_begun);
    let sleep = tokio::time::sleep_until(far_future());
    tokio::pin!(sleep);
    loop {
        let first = activity.served.load(Ordering::Relaxed) == 0;
        let at_cap_now = *at_cap.borrow() > 0;
        let limit_of = |limit: Duration| {
            if at_cap_now && IDLE_AT_CAP < limit {
                (IDLE_AT_CAP, true)
            } else {
                (limit, false)
            }
        };
        let (limit, pressed) = limit_of(if first { first_limit } else { timeouts.idle });
        let now = Instant::now();
        let deadline = activity.idle_deadline(limit);
        if deadline <= now {
            let counter = match (pressed, first) {
                (true, _) => &settings.timed_out.idle_at_cap,
                (false, true) => first_counter,
                (false, false) => &settings.timed_out.idle,
            };
            counter.inc();
            return;
        }
        // A request ending from now on moves the deadline to at least `now`
        // plus the idle limit, so looking again by then is never late: a
        // first request served meanwhile switches to a shorter idle limit.
        let look_again = if first && phase == Phase::Http {
            deadline.min(now + limit_of(timeouts.idle).0)
        } else {
            deadline
        };
        if sleep.deadline() != look_again {
            sleep.as_mut().reset(look_again);
        }
        tokio::select! {
            _ = &mut shutdown_begun => return,
            changed = at_cap.changed(), if at_cap_watched => {
                at_cap_watched = changed.is_ok();
            }
            _ = &mut sleep => {}
        }
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::Context;

    use super::super::server::Health;
    use super::*;
    use crate::shutdown::ShutdownTrigger;

    /// A connection whose peer keeps it busy without a request (frames that
    /// need no answer, sent faster than they are parsed): every poll finds
    /// bytes until the task's coop budget is spent, as tokio's I/O does.
    struct Busy {
        closing: bool,
    }

    impl Future for Busy {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.closing {
                return Poll::Ready(());
            }
            loop {
                let mut read = std::pin::pin!(tokio::task::coop::consume_budget());
                if read.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
        }
    }

    impl GracefulShutdown for Busy {
        fn graceful_shutdown(mut self: Pin<&mut Self>) {
            self.closing = true;
        }
    }

    #[tokio::test]
    async fn a_connection_that_spends_its_budget_on_every_poll_still_times_out() {
        let (_cap, at_cap) = watch::channel(0usize);
        let timeouts = ConnectionTimeouts {
            first_request: Duration::from_millis(200),
            idle: Duration::from_millis(200),
            tls_handshake: Duration::from_secs(1),
        };
        let settings = settings_without_routes(None, timeouts, at_cap);
        let trigger = ShutdownTrigger::new();
        let activity = Activity::new();
        let started = Instant::now();
        let watched = tokio::time::timeout(
            Duration::from_secs(5),
            watch_connection(
                Box::pin(Busy { closing: false }),
                &activity,
                &settings,
                trigger.subscribe(),
            ),
        )
        .await;
        assert!(
            watched.is_ok(),
            "a connection with no request was still open after {:?}",
            started.elapsed()
        );
    }

    /// A connection's settings with only /health and /metrics to serve.
    fn settings_without_routes(
        tls: Option<TlsAcceptor>,
        timeouts: ConnectionTimeouts,
        at_cap: watch::Receiver<usize>,
    ) -> ConnectionSettings {
        let registry = Registry::new();
        let router = Arc::new(Router::new(
            Vec::new(),
            Arc::new(Health::default()),
            registry.clone(),
            true,
        ));
        ConnectionSettings::new(tls, timeouts, router, None, at_cap, &registry)
    }

    /// A self-signed certificate for 127.0.0.1, as the listener loads it.
    fn test_acceptor(dir: &std::path::Path) -> TlsAcceptor {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let options = crate::http::tls::TlsOptions {
            crt_file: dir.join("tls.crt"),
            key_file: dir.join("tls.key"),
        };
        std::fs::write(&options.crt_file, cert.pem()).unwrap();
        std::fs::write(&options.key_file, key.serialize_pem()).unwrap();
        crate::http::tls::acceptor(&options, &Registry::new()).unwrap()
    }

    /// While an accept waits for a slot, a connection that has sent no
    /// complete request for 1 s gives its slot up, and one stuck in the TLS
    /// handshake is no exception: it held its slot for the whole handshake
    /// timeout, so stalled handshakes kept a TLS listener at its cap ten
    /// times as cheaply as silent sockets keep a plain one.
    #[tokio::test]
    async fn at_the_cap_a_stalled_tls_handshake_gives_its_slot_up_as_an_idle_connection_does() {
        let dir = tempfile::tempdir().unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        // Connected, and never a byte of a ClientHello.
        let _silent = TcpStream::connect(tcp.local_addr().unwrap()).await.unwrap();
        let (stream, peer) = tcp.accept().await.unwrap();
        tokio::time::pause();

        // An accept is waiting for a slot.
        let (_cap, at_cap) = watch::channel(1usize);
        let timeouts = ConnectionTimeouts {
            first_request: Duration::from_secs(300),
            idle: Duration::from_secs(300),
            tls_handshake: Duration::from_secs(300),
        };
        let settings = settings_without_routes(Some(test_acceptor(dir.path())), timeouts, at_cap);
        let counters = settings.timed_out.clone();
        let trigger = ShutdownTrigger::new();
        let started = Instant::now();
        serve(stream, peer, Arc::new(settings), trigger.subscribe()).await;
        assert_eq!(
            (counters.idle_at_cap.get(), counters.tls_handshake.get()),
            (1, 0),
            "closed after {:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < timeouts.tls_handshake);
    }
}
