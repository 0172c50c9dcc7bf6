//! The shared listener: sources that name the same `address` are served by one
//! HTTP server (one port for everything, as the Canarytrace server does),
//! optionally over TLS. It also answers `GET /health` and `GET /metrics`,
//! unless an admin listener (`[api]`) takes `/metrics` off the intake port.
//!
//! A connection needs a permit of the shared connection cap before it is
//! accepted; the permit travels with the connection's task. `connection`
//! serves it and closes it when it idles.
//!
//! Shutdown: when told to stop, the accept loop ends and every open connection
//! finishes its current request and closes (idle ones at once). When the last
//! connection is gone the routes — and with them the sources' channel senders —
//! are dropped, which is what lets the rest of the pipeline drain.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use futures_util::FutureExt;
use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::{Body, Incoming};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::connection::{self, BodyHandles, ConnectionSettings};
use super::framing::{check_transfer_encoding, FramingError};
use super::limits::{BodyBudget, ConnectionCap, ConnectionTimeouts};
use super::{scrape_gate, text_response, HttpResponse};
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, Registry};

/// A handler's answer to come. It may borrow the handler: the request's
/// future holds its connection's handle on the router, so no handler (nor
/// what it shares, e.g. a source's flow) is cloned for a request (a clone of
/// a shared `Arc` is an atomic write to a line every worker's requests share).
pub type ResponseFuture<'a> = Pin<Box<dyn Future<Output = HttpResponse> + Send + 'a>>;

/// What a component plugs into the listener for one path: every source
/// endpoint (`sources::http_source`), the Prometheus sink's
/// scrape endpoint. The listener has matched the path and counts the answer.
pub trait RouteHandler: Send + Sync + 'static {
    /// `body`: what the request's body is read under.
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        body: BodyHandles,
    ) -> ResponseFuture<'_>;
}

pub struct Route {
    /// An exact path, or `/prefix/*`: the prefix and one more non-empty
    /// segment (`/collect/*` takes `/collect/{app_key}`). Counted under
    /// this pattern, so the segment never becomes a metric label.
    pub path: String,
    pub source_id: String,
    pub handler: Arc<dyn RouteHandler>,
}

impl Route {
    /// Whether `path` is this `/prefix/*` route's prefix plus one segment.
    fn matches_segment(&self, path: &str) -> bool {
        let Some(prefix) = self.path.strip_suffix("/*") else {
            return false;
        };
        path.strip_prefix(prefix)
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|segment| !segment.is_empty() && !segment.contains('/'))
    }
}

/// Readiness as `/health` reports it.
#[derive(Default)]
pub struct Health {
    state: AtomicU8,
    /// Components that run but cannot deliver right now (e.g. a sink whose
    /// Elasticsearch is down); shown by /health, which stays 200 for them.
    degraded: Mutex<BTreeMap<String, String>>,
    /// Why the pipeline stopped working (a component ended before
    /// shutdown): /health answers 503 with it from then on.
    failed: Mutex<Option<String>>,
}

// 0 (the default) = starting.
const READY: u8 = 1;
const DRAINING: u8 = 2;
const FAILED: u8 = 3;

impl Health {
    /// A component stopped while the pipeline runs: every beacon it should
    /// see is refused from now on, so probes must not see "ready" (nor
    /// "shutting down", which an orchestrator may wait out).
    pub fn set_failed(&self, reason: String) {
        *self.failed.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
        self.state.store(FAILED, Ordering::SeqCst);
    }

    pub fn set_ready(&self) {
        self.state.store(READY, Ordering::SeqCst);
    }
    pub fn set_draining(&self) {
        // A failure stays what /health says while the rest drains.
        let _ = self
            .state
            .compare_exchange(READY, DRAINING, Ordering::SeqCst, Ordering::SeqCst);
        let _ = self
            .state
            .compare_exchange(0, DRAINING, Ordering::SeqCst, Ordering::SeqCst);
    }
    pub fn set_degraded(&self, component: &str, reason: Option<String>) {
        let mut degraded = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
        match reason {
            Some(reason) => degraded.insert(component.to_owned(), reason),
            None => degraded.remove(component),
        };
    }

    /// Why the pipeline failed, once it has.
    pub fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Components currently degraded, with their reasons.
    pub fn degraded(&self) -> BTreeMap<String, String> {
        self.degraded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the drain has begun (tests wait for it).
    #[cfg(test)]
    pub(crate) fn draining(&self) -> bool {
        self.state.load(Ordering::SeqCst) == DRAINING
    }

    fn response(&self) -> HttpResponse {
        match self.state.load(Ordering::SeqCst) {
            READY => {
                let degraded = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
                let mut body = String::from("rum-pipeline is ready");
                for (component, reason) in degraded.iter() {
                    body.push_str(&format!("\ndegraded: {component}: {reason}"));
                }
                text_response(StatusCode::OK, body)
            }
            DRAINING => text_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "rum-pipeline is shutting down",
            ),
            FAILED => {
                let failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                text_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "rum-pipeline has failed: {}",
                        failed.as_deref().unwrap_or("a component stopped")
                    ),
                )
            }
            _ => text_response(StatusCode::SERVICE_UNAVAILABLE, "rum-pipeline is starting"),
        }
    }
}

/// The top-level `[api]` table: a separate listener for `/metrics` and
/// `/health`, so the intake port can be public alone.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApiOptions {
    /// Address of the admin listener (plain HTTP), e.g. `127.0.0.1:9598`.
    pub address: SocketAddr,
}

/// Connections the admin listener serves at once (probes and a scraper),
/// apart from the intake's cap so a full intake cannot starve them.
pub const ADMIN_MAX_CONNECTIONS: usize = 64;

/// Routes of one listener plus the built-in endpoints.
pub struct Router {
    routes: Vec<Route>,
    health: Arc<Health>,
    registry: Arc<Registry>,
    /// False on intake listeners when an admin listener serves `/metrics`.
    serve_metrics: bool,
    /// `http_requests_total{path,status}` of the statuses in
    /// [`COMMON_STATUSES`], per path label: found without taking a lock (a
    /// read lock is two atomic writes to a line every worker shares).
    common: Vec<[OnceLock<Counter>; COMMON_STATUSES.len()]>,
    /// The same counter of any other status, looked up per request without
    /// a write lock once the pair has been seen.
    requests: RwLock<BTreeMap<(usize, u16), Counter>>,
    /// Labels for the request counter: route paths, then the built-ins.
    path_labels: Vec<String>,
    /// `http_handler_panics_total{path}` per route, there from the start
    /// (at 0) so that an alert on it has a series to watch.
    panics: Vec<Counter>,
}

/// The statuses most requests get, whose counters [`Router::count`] finds
/// without a lock: answers, an APM agent's config poll (304), and every
/// refusal a flood of bad requests is answered with.
const COMMON_STATUSES: [u16; 13] = [
    200, 202, 204, 304, 400, 401, 403, 404, 405, 413, 415, 429, 503,
];

const HEALTH_PATH: &str = "/health";
const METRICS_PATH: &str = "/metrics";

impl Router {
    pub fn new(
        routes: Vec<Route>,
        health: Arc<Health>,
        registry: Arc<Registry>,
        serve_metrics: bool,
    ) -> Self {
        let mut path_labels: Vec<String> = routes.iter().map(|r| r.path.clone()).collect();
        path_labels.extend([
            HEALTH_PATH.to_owned(),
            METRICS_PATH.to_owned(),
            "unmatched".to_owned(),
        ]);
        let panics = path_labels[..routes.len()]
            .iter()
            .map(|path| {
                registry.counter(
                    "http_handler_panics_total",
                    "Requests whose handler panicked (answered 500), by path.",
                    &[("path", path)],
                )
            })
            .collect();
        Self {
            routes,
            health,
            registry,
            serve_metrics,
            panics,
            common: path_labels.iter().map(|_| Default::default()).collect(),
            requests: RwLock::new(BTreeMap::new()),
            path_labels,
        }
    }

    fn count(&self, label: usize, status: StatusCode) {
        if let Some(i) = COMMON_STATUSES.iter().position(|&c| c == status.as_u16()) {
            self.common[label][i]
                .get_or_init(|| self.requests_counter(label, status))
                .inc();
            return;
        }
        let key = (label, status.as_u16());
        if let Some(counter) = self
            .requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            counter.inc();
            return;
        }
        let counter = self.requests_counter(label, status);
        counter.inc();
        self.requests
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, counter);
    }

    /// The answer when route `i`'s handler panicked (a bug some request
    /// triggers, in a decoder say): without this the connection was reset,
    /// with no status, no count and only the panic's default line on
    /// stderr. Nothing accepted is lost: a request's events go downstream
    /// only once its handler has decoded them all.
    #[cold]
    fn handler_panicked(&self, i: usize, payload: &(dyn std::any::Any + Send)) -> HttpResponse {
        let route = &self.routes[i];
        let message = crate::stderr_log::panic_text(payload);
        tracing::error!(
            component_id = %route.source_id,
            path = %self.path_labels[i],
            "answering a request panicked: {message}; it was answered 500 (a bug: please report it)"
        );
        self.panics[i].inc();
        let mut response = text_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n");
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        response
    }

    fn requests_counter(&self, label: usize, status: StatusCode) -> Counter {
        self.registry.counter(
            "http_requests_total",
            "HTTP requests answered by the shared listener, by path and status.",
            &[
                ("path", &self.path_labels[label]),
                ("status", status.as_str()),
            ],
        )
    }

    /// The answer to an HTTP/2 stream whose header list does not fit in
    /// its connection's `H2_HEADER_BYTES_IN_FLIGHT`, counted under its path.
    pub(super) fn refuse_headers_in_flight(&self, request: Request<Incoming>) -> HttpResponse {
        let (_, label) = self.route_of(request.uri().path());
        let mut response = text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many request headers in flight on this connection, retry later\n",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        self.count(label, response.status());
        if request.method() == Method::HEAD {
            without_body(response)
        } else {
            response
        }
    }

    /// The route `path` goes to, if any, and the label it is counted under.
    fn route_of(&self, path: &str) -> (Option<usize>, usize) {
        let route = self
            .routes
            .iter()
            .position(|r| r.path == path)
            .or_else(|| self.routes.iter().position(|r| r.matches_segment(path)));
        let label = match route {
            Some(i) => i,
            None if path == HEALTH_PATH => self.routes.len(),
            None if path == METRICS_PATH && self.serve_metrics => self.routes.len() + 1,
            None => self.routes.len() + 2,
        };
        (route, label)
    }

    /// Answers one request. `framing` is the connection's verdict on the raw
    /// HTTP/1 head (see `framing`).
    pub(super) async fn dispatch(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        framing: Option<FramingError>,
        body: BodyHandles,
    ) -> HttpResponse {
        let (route, label) = self.route_of(request.uri().path());
        let framing = framing.map_or_else(|| check_transfer_encoding(request.headers()), Err);
        let head = request.method() == Method::HEAD;
        let response = if let Err(refused) = framing {
            let mut response = text_response(refused.status(), refused.message());
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        } else if let Some(i) = route {
            let handler = &self.routes[i].handler;
            // A handler may answer in its call (what needs no wait) or in
            // its future: a panic in either is a 500.
            let answer =
                std::panic::catch_unwind(AssertUnwindSafe(|| handler.handle(request, peer, body)));
            match answer {
                Ok(answer) => match AssertUnwindSafe(answer).catch_unwind().await {
                    Ok(response) => response,
                    Err(payload) => self.handler_panicked(i, &*payload),
                },
                Err(payload) => self.handler_panicked(i, &*payload),
            }
        } else if label == self.routes.len() {
            match *request.method() {
                Method::GET | Method::HEAD => self.health.response(),
                _ => method_not_allowed("GET, HEAD"),
            }
        } else if label == self.routes.len() + 1 {
            match *request.method() {
                Method::GET | Method::HEAD => {
                    scrape_gate::metrics_page(peer, || self.registry.render())
                }
                _ => method_not_allowed("GET, HEAD"),
            }
        } else {
            text_response(StatusCode::NOT_FOUND, "not found\n")
        };
        self.count(label, response.status());
        if head {
            without_body(response)
        } else {
            response
        }
    }
}

/// The answer to a HEAD: GET's headers, its `Content-Length` included, and
/// no body. hyper drops the body of an HTTP/1 answer to HEAD but sends it
/// over HTTP/2, where DATA on a HEAD answer is malformed (RFC 9113 8.1.1)
/// and the client resets the stream.
fn without_body(response: HttpResponse) -> HttpResponse {
    let (mut parts, body) = response.into_parts();
    let length = body.size_hint().exact().unwrap_or(0);
    // 204 and 304 carry no Content-Length of their own (a 304 may only
    // repeat the 200's, which is not known here).
    let bodiless = parts.status == StatusCode::NO_CONTENT
        || parts.status == StatusCode::NOT_MODIFIED
        || parts.status.is_informational();
    if !bodiless {
        parts
            .headers
            .entry(header::CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(length));
    }
    HttpResponse::from_parts(parts, http_body_util::Full::new(bytes::Bytes::new()))
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// What bounds one listener: the connection cap it shares with the other
/// intake listeners, how long a connection may idle, the body budget.
#[derive(Clone)]
pub struct ListenerLimits {
    pub connections: Arc<ConnectionCap>,
    pub timeouts: ConnectionTimeouts,
    pub body_budget: Option<Arc<BodyBudget>>,
}

/// A bound listener, ready to serve.
pub struct Listener {
    pub address: SocketAddr,
    tcp: TcpListener,
    limits: ListenerLimits,
    settings: Arc<ConnectionSettings>,
}

impl Listener {
    pub async fn bind(
        address: SocketAddr,
        tls: Option<TlsAcceptor>,
        router: Router,
        limits: ListenerLimits,
    ) -> anyhow::Result<Self> {
        let tcp = TcpListener::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
        let address = tcp.local_addr()?;
        let registry = router.registry.clone();
        let settings = ConnectionSettings::new(
            tls,
            limits.timeouts,
            Arc::new(router),
            limits.body_budget.clone(),
            limits.connections.at_cap(),
            &registry,
        );
        Ok(Self {
            address,
            tcp,
            limits,
            settings: Arc::new(settings),
        })
    }

    pub fn scheme(&self) -> &'static str {
        if self.settings.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serves until shutdown begins, then lets open connections finish
    /// their request and returns once the last one has closed.
    pub async fn serve(self, mut shutdown: Shutdown) {
        // Each connection task holds a clone; recv() returns None when all are gone.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        loop {
            // The permit comes first: over the cap, connections wait in the
            // kernel's accept queue instead of costing memory here, and idle
            // connections are told to make room.
            let permit = tokio::select! {
                permit = self.limits.connections.acquire() => permit,
                _ = shutdown.recv() => break,
            };
            let accepted = tokio::select! {
                accepted = self.tcp.accept() => accepted,
                _ = shutdown.recv() => break,
            };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    drop(permit);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let slot = self.limits.connections.occupy(permit);
            let _ = stream.set_nodelay(true);
            let settings = self.settings.clone();
            let shutdown = shutdown.clone();
            let alive = alive_tx.clone();
            tokio::spawn(async move {
                connection::serve(stream, peer, settings, shutdown).await;
                drop(slot);
                drop(alive);
            });
        }
        drop(self.tcp);
        drop(alive_tx);
        let _ = alive_rx.recv().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::limits::HttpServerOptions;
    use crate::shutdown::ShutdownTrigger;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// What a flood of bad requests is answered (a wrong method, content
    /// type, origin or key) and what an APM agent's config poll is
    /// answered (304) is counted without the lock of the other statuses.
    #[test]
    fn refusals_and_not_modified_are_counted_without_a_lock() {
        let registry = Registry::new();
        let router = Router::new(Vec::new(), Arc::default(), registry.clone(), true);
        let unmatched = 2;
        for status in [304, 401, 403, 405, 415] {
            let status = StatusCode::from_u16(status).unwrap();
            router.count(unmatched, status);
            router.count(unmatched, status);
            assert_eq!(
                registry.counter_sum("http_requests_total", &[("status", status.as_str())]),
                2
            );
        }
        let locked = router.requests.read().unwrap();
        assert!(locked.is_empty(), "{:?}", locked.keys());
    }

    /// HEAD is GET without the body (RFC 9110 9.3.2). hyper leaves the
    /// body out of an HTTP/1 answer, but over HTTP/2 it sent it as DATA,
    /// which makes the answer malformed (RFC 9113 8.1.1): browsers and
    /// curl saw PROTOCOL_ERROR for HEAD of `/health`, `/rum`, `/metrics`.
    #[tokio::test]
    async fn head_is_answered_without_a_body_over_http2_and_http1() {
        let health = Arc::new(Health::default());
        health.set_ready();
        let router = Router::new(Vec::new(), health, Registry::new(), true);
        let (address, trigger, served) = serve(router).await;
        let length = "rum-pipeline is ready".len().to_string();

        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let (h2_client, h2_connection) = h2::client::handshake(tcp).await.unwrap();
        let h2_driver = tokio::spawn(h2_connection);
        let mut h2_client = h2_client.ready().await.unwrap();
        let head = Request::head(format!("http://{address}/health"))
            .body(())
            .unwrap();
        let (response, _) = h2_client.send_request(head, true).unwrap();
        let response = response.await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_LENGTH], length.as_str());
        let mut body = response.into_body();
        let data = body.data().await.transpose();
        assert!(matches!(data, Ok(None)), "{data:?}");

        let head = b"HEAD /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let answer = exchange(address, head).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.contains(&format!("content-length: {length}\r\n")),
            "{answer}"
        );
        assert!(answer.ends_with("\r\n\r\n"), "{answer}");

        drop(h2_client);
        h2_driver.abort();
        trigger.begin();
        served.await.unwrap();
    }

    /// Serves `router` on a port of its own (cap of 4 connections, default
    /// timeouts): its address, the trigger that stops it, and its task.
    async fn serve(router: Router) -> (SocketAddr, ShutdownTrigger, tokio::task::JoinHandle<()>) {
        serve_with_cap(router, ConnectionCap::new(4)).await
    }

    /// `serve`, with the connection cap the caller keeps to look at.
    async fn serve_with_cap(
        router: Router,
        cap: Arc<ConnectionCap>,
    ) -> (SocketAddr, ShutdownTrigger, tokio::task::JoinHandle<()>) {
        let limits = ListenerLimits {
            connections: cap,
            timeouts: HttpServerOptions::default().timeouts(),
            body_budget: None,
        };
        let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), None, router, limits)
            .await
            .unwrap();
        let address = listener.address;
        let trigger = ShutdownTrigger::new();
        let served = tokio::spawn(listener.serve(trigger.subscribe()));
        (address, trigger, served)
    }

    /// Sends `request` on a new connection and reads the answer until the
    /// server closes it.
    async fn exchange(address: SocketAddr, request: &[u8]) -> String {
        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        client.write_all(request).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        answer
    }

    /// A handler that panics, as a decoder with a bug one body triggers:
    /// in its future (`/boom`) or in its call (`/boom-now`, where a
    /// source answers what needs no wait).
    struct Panics;

    impl RouteHandler for Panics {
        fn handle(
            &self,
            request: Request<Incoming>,
            _: SocketAddr,
            _: BodyHandles,
        ) -> ResponseFuture<'_> {
            if request.uri().path() == "/boom-now" {
                panic!("a preflight's bug");
            }
            Box::pin(async move {
                if request.uri().path() == "/boom" {
                    panic!("a decoder's bug");
                }
                text_response(StatusCode::OK, "fine\n")
            })
        }
    }

    /// A request whose handler panicked reset its connection: the client
    /// saw no status, and nothing counted it. It is answered 500 now,
    /// counted by path, and the listener goes on answering.
    #[tokio::test]
    async fn a_handler_that_panics_is_answered_500_and_counted() {
        let registry = Registry::new();
        let route = |path: &str| Route {
            path: path.to_owned(),
            source_id: "beacons".to_owned(),
            handler: Arc::new(Panics),
        };
        let router = Router::new(
            vec![route("/boom"), route("/boom-now"), route("/fine")],
            Arc::default(),
            registry.clone(),
            true,
        );
        let (address, trigger, served) = serve(router).await;
        let boom = b"POST /boom HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n";
        let answer = exchange(address, boom).await;
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer:?}");
        assert!(answer.ends_with("internal error\n"), "{answer:?}");
        assert_eq!(
            registry.counter_sum("http_handler_panics_total", &[("path", "/boom")]),
            1
        );
        assert_eq!(
            registry.counter_sum("http_requests_total", &[("status", "500")]),
            1
        );
        // A panic in the handler's call, before it has a future, too.
        let now = b"OPTIONS /boom-now HTTP/1.1\r\nHost: x\r\n\r\n";
        let answer = exchange(address, now).await;
        assert!(answer.starts_with("HTTP/1.1 500"), "{answer:?}");
        assert_eq!(
            registry.counter_sum("http_handler_panics_total", &[("path", "/boom-now")]),
            1
        );
        assert_eq!(
            registry.counter_sum("http_requests_total", &[("status", "500")]),
            2
        );
        let fine = b"GET /fine HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let answer = exchange(address, fine).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
        trigger.begin();
        served.await.unwrap();
    }

    /// A handler that holds its request until the body ends, and says
    /// when it has begun: a beacon waiting for its body.
    struct HoldsUntilBodyEnds(mpsc::UnboundedSender<()>);

    impl RouteHandler for HoldsUntilBodyEnds {
        fn handle(
            &self,
            request: Request<Incoming>,
            _: SocketAddr,
            _: BodyHandles,
        ) -> ResponseFuture<'_> {
            Box::pin(async move {
                let _ = self.0.send(());
                let _ = http_body_util::BodyExt::collect(request.into_body()).await;
                text_response(StatusCode::OK, "done\n")
            })
        }
    }

    /// An HTTP/1 connection holds one request head at a time (64 KiB at
    /// most), but an HTTP/2 client may keep several streams open (100
    /// then, 8 now), each with a 64 KiB header list (a few bytes on the
    /// wire each, through HPACK's table), waiting for bodies it never
    /// sends: 6.4 MiB a connection slot then, outside every budget. A stream whose header list would take
    /// the connection's requests in flight past `H2_HEADER_BYTES_IN_FLIGHT`
    /// is answered 503 + `Retry-After: 1` at once (its headers dropped),
    /// and is counted; the connection goes on serving.
    #[tokio::test]
    async fn http2_streams_in_flight_hold_a_bounded_total_of_header_bytes() {
        let (entered_tx, mut entered) = mpsc::unbounded_channel();
        let registry = Registry::new();
        let route = Route {
            path: "/rum".to_owned(),
            source_id: "beacons".to_owned(),
            handler: Arc::new(HoldsUntilBodyEnds(entered_tx)),
        };
        let router = Router::new(vec![route], Arc::default(), registry.clone(), true);
        let (address, trigger, served) = serve(router).await;

        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let (h2_client, h2_connection) = h2::client::handshake(tcp).await.unwrap();
        let h2_driver = tokio::spawn(h2_connection);
        let padding = "x".repeat(20 * 1024);
        let post = || {
            Request::post(format!("http://{address}/rum"))
                .header("x-padding", padding.as_str())
                .body(())
                .unwrap()
        };
        let mut held = Vec::new();
        let mut refused = 0;
        for _ in 0..20 {
            let mut client = h2_client.clone().ready().await.unwrap();
            let (mut response, body) = client.send_request(post(), false).unwrap();
            tokio::select! {
                Some(()) = entered.recv() => held.push((response, body)),
                answer = &mut response => {
                    let answer = answer.unwrap();
                    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
                    assert_eq!(answer.headers()[header::RETRY_AFTER], "1");
                    refused += 1;
                }
            }
        }
        assert!(
            held.len() * padding.len() <= connection::H2_HEADER_BYTES_IN_FLIGHT,
            "{} streams held {} KiB of headers",
            held.len(),
            held.len() * padding.len() / 1024
        );
        assert_eq!(held.len() + refused, 20);
        assert_eq!(
            registry.counter_sum(
                "http_requests_total",
                &[("path", "/rum"), ("status", "503")]
            ),
            refused as u64
        );

        // A stream that ends gives its room back.
        let (response, mut body) = held.pop().unwrap();
        body.send_data(bytes::Bytes::new(), true).unwrap();
        assert_eq!(response.await.unwrap().status(), StatusCode::OK);
        let mut client = h2_client.clone().ready().await.unwrap();
        let (response, mut body) = client.send_request(post(), false).unwrap();
        entered.recv().await.unwrap();
        body.send_data(bytes::Bytes::new(), true).unwrap();
        assert_eq!(response.await.unwrap().status(), StatusCode::OK);

        drop((held, h2_client));
        h2_driver.abort();
        trigger.begin();
        served.await.unwrap();
    }

    /// A browser's beacon as a reverse proxy forwards it: the browser's
    /// cookies, user agent and client hints, plus the proxy's own headers.
    /// About 4 KiB as HTTP/2 counts a header list.
    fn proxied_beacon(address: SocketAddr, i: usize, body: &str) -> Request<()> {
        let cookie = format!(
            "_ga=GA1.2.{i}8127364.1712345678; _gid=GA1.2.99887766.1712345678; \
             session={}; consent={}; cart=%7B%22items%22%3A%5B%5D%7D; {}",
            "s".repeat(256),
            "c".repeat(512),
            "ab_test_bucket=control; ".repeat(40),
        );
        Request::post(format!("http://{address}/rum"))
            .header("content-type", "text/plain;charset=UTF-8")
            .header("content-length", body.len())
            .header("accept", "*/*")
            .header("accept-encoding", "gzip, deflate, br, zstd")
            .header("accept-language", "en-GB,en-US;q=0.9,en;q=0.8,de;q=0.7")
            .header("cookie", cookie)
            .header("origin", "https://www.example.com")
            .header(
                "referer",
                format!("https://www.example.com/products/garden/item-{i}?utm_source=newsletter&utm_medium=email&utm_campaign=spring"),
            )
            .header(
                "user-agent",
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
            )
            .header("sec-ch-ua", "\"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"")
            .header("sec-ch-ua-mobile", "?0")
            .header("sec-ch-ua-platform", "\"Windows\"")
            .header("sec-fetch-dest", "empty")
            .header("sec-fetch-mode", "no-cors")
            .header("sec-fetch-site", "same-origin")
            .header("priority", "u=4, i")
            .header("x-forwarded-for", format!("203.0.113.{}, 10.0.3.17", i % 250))
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "www.example.com")
            .header("x-request-id", format!("6f1c2a4e-9b7d-4e21-8a53-{i:012}"))
            .header("x-envoy-expected-rq-timeout-ms", "15000")
            .body(())
            .unwrap()
    }

    /// A reverse proxy or load balancer with an HTTP/2 upstream (Envoy,
    /// Caddy, HAProxy, cloud load balancers) carries many browsers'
    /// beacons over one connection. With 100 streams allowed and 64 KiB of
    /// header lists in flight per connection, such a proxy had its beacons
    /// past the ~18th in flight answered 503. The connection now allows as
    /// many streams as the header cap holds of ordinary beacons: a client
    /// that honours SETTINGS_MAX_CONCURRENT_STREAMS (as proxies do) queues
    /// the rest, and every beacon is accepted.
    #[tokio::test]
    async fn a_proxy_multiplexing_beacons_on_one_http2_connection_has_every_one_accepted() {
        const BEACONS: usize = 64;
        let body = r#"{"events":[{"type":"vital","name":"LCP","value":1234.5}]}"#;
        let (entered_tx, mut entered) = mpsc::unbounded_channel();
        let route = Route {
            path: "/rum".to_owned(),
            source_id: "beacons".to_owned(),
            handler: Arc::new(HoldsUntilBodyEnds(entered_tx)),
        };
        let router = Router::new(vec![route], Arc::default(), Registry::new(), true);
        let (address, trigger, served) = serve(router).await;
        let one = connection::h2_header_bytes(&proxied_beacon(address, 0, body));
        assert!(
            (3 * 1024..6 * 1024).contains(&one)
                && BEACONS * one > connection::H2_HEADER_BYTES_IN_FLIGHT,
            "{one} bytes of headers a beacon"
        );

        let tcp = tokio::net::TcpStream::connect(address).await.unwrap();
        let (h2_client, h2_connection) = h2::client::handshake(tcp).await.unwrap();
        let h2_driver = tokio::spawn(h2_connection);
        // The server's SETTINGS come with its first answer, as a proxy's
        // pool has them before it fills a connection.
        let mut first = h2_client.clone().ready().await.unwrap();
        let health = Request::get(format!("http://{address}/health"))
            .body(())
            .unwrap();
        let (response, _) = first.send_request(health, true).unwrap();
        response.await.unwrap();
        let streams = h2_client.current_max_send_streams();

        // Each beacon's body comes once the connection is full (a browser
        // still sending it), so that as many are in flight at once as the
        // connection lets the proxy have.
        let (full_tx, full) = tokio::sync::watch::channel(false);
        let (answered_tx, mut answered_early) = mpsc::unbounded_channel();
        let beacons: Vec<_> = (0..BEACONS)
            .map(|i| {
                let h2_client = h2_client.clone();
                let mut full = full.clone();
                let answered_tx = answered_tx.clone();
                tokio::spawn(async move {
                    let mut client = h2_client.ready().await.unwrap();
                    let (mut response, mut send) = client
                        .send_request(proxied_beacon(address, i, body), false)
                        .unwrap();
                    tokio::select! {
                        answer = &mut response => {
                            let _ = answered_tx.send(());
                            return answer.unwrap().status();
                        }
                        _ = full.wait_for(|full| *full) => {}
                    }
                    send.send_data(bytes::Bytes::from_static(body.as_bytes()), true)
                        .unwrap();
                    response.await.unwrap().status()
                })
            })
            .collect();
        let (mut in_flight, mut refused) = (0, 0);
        while in_flight < BEACONS.min(streams) && in_flight + refused < BEACONS {
            tokio::select! {
                Some(()) = entered.recv() => in_flight += 1,
                Some(()) = answered_early.recv() => refused += 1,
            }
        }
        full_tx.send(true).unwrap();
        let statuses: Vec<StatusCode> = futures_util::future::join_all(beacons)
            .await
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert!(
            statuses.iter().all(StatusCode::is_success),
            "{in_flight} in flight, {refused} answered before their body: {statuses:?}"
        );

        drop(h2_client);
        h2_driver.abort();
        trigger.begin();
        served.await.unwrap();
    }

    /// `http_connections` reads the cap's `open()`. The accept loop takes
    /// its slot before a connection comes (so that over the cap connections
    /// wait in the kernel's queue), and that slot is no open connection: a
    /// pipeline nobody talks to read 1, one per intake listener.
    #[tokio::test]
    async fn open_connections_do_not_count_the_slot_an_accept_waits_with() {
        let cap = ConnectionCap::new(4);
        let router = Router::new(Vec::new(), Arc::default(), Registry::new(), true);
        let (address, trigger, served) = serve_with_cap(router, cap.clone()).await;

        let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
        client
            .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 12];
        client.read_exact(&mut answer).await.unwrap();
        assert_eq!(&answer, b"HTTP/1.1 503");
        // The loop has taken the next slot and waits in accept.
        while cap.max() - 2 != cap.available() {
            tokio::task::yield_now().await;
        }
        assert_eq!(cap.open(), 1);
        drop(client);
        while cap.max() - 1 != cap.available() {
            tokio::task::yield_now().await;
        }
        assert_eq!(cap.open(), 0);
        trigger.begin();
        served.await.unwrap();
    }
}
