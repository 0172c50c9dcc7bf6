//! The shared listener: sources that name the same `address` are served by one
//! HTTP server (one port for everything, as the Canarytrace server does),
//! optionally over TLS. It also answers `GET /health` and `GET /metrics`.
//!
//! Shutdown: when told to stop, the accept loop ends and every open connection
//! finishes its current request and closes. When the last connection is gone
//! the routes — and with them the sources' channel senders — are dropped, which
//! is what lets the rest of the pipeline drain.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio_rustls::TlsAcceptor;

use super::{text_response, HttpResponse};
use crate::telemetry::{Counter, Registry};

pub type ResponseFuture = Pin<Box<dyn Future<Output = HttpResponse> + Send>>;

/// What a source plugs into the listener for one path.
pub trait RouteHandler: Send + Sync + 'static {
    fn handle(self: Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> ResponseFuture;
}

pub struct Route {
    pub path: String,
    pub source_id: String,
    pub handler: Arc<dyn RouteHandler>,
}

/// Readiness as `/health` reports it.
#[derive(Default)]
pub struct Health {
    state: AtomicU8,
    /// Components that run but cannot deliver right now (e.g. a sink whose
    /// Elasticsearch is down); shown by /health, which stays 200 for them.
    degraded: Mutex<BTreeMap<String, String>>,
}

// 0 (the default) = starting.
const READY: u8 = 1;
const DRAINING: u8 = 2;

impl Health {
    pub fn set_ready(&self) {
        self.state.store(READY, Ordering::SeqCst);
    }
    pub fn set_draining(&self) {
        self.state.store(DRAINING, Ordering::SeqCst);
    }
    pub fn set_degraded(&self, component: &str, reason: Option<String>) {
        let mut degraded = self.degraded.lock().unwrap_or_else(|e| e.into_inner());
        match reason {
            Some(reason) => degraded.insert(component.to_owned(), reason),
            None => degraded.remove(component),
        };
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
            _ => text_response(StatusCode::SERVICE_UNAVAILABLE, "rum-pipeline is starting"),
        }
    }
}

/// Routes of one listener plus the built-in endpoints.
pub struct Router {
    routes: Vec<Route>,
    health: Arc<Health>,
    registry: Arc<Registry>,
    /// `http_requests_total{path,status}`, looked up per request without a
    /// write lock once the pair has been seen.
    requests: RwLock<BTreeMap<(usize, u16), Counter>>,
    /// Labels for the request counter: route paths, then the built-ins.
    path_labels: Vec<String>,
}

const HEALTH_PATH: &str = "/health";
const METRICS_PATH: &str = "/metrics";

impl Router {
    pub fn new(routes: Vec<Route>, health: Arc<Health>, registry: Arc<Registry>) -> Self {
        let mut path_labels: Vec<String> = routes.iter().map(|r| r.path.clone()).collect();
        path_labels.extend([
            HEALTH_PATH.to_owned(),
            METRICS_PATH.to_owned(),
            "unmatched".to_owned(),
        ]);
        Self {
            routes,
            health,
            registry,
            requests: RwLock::new(BTreeMap::new()),
            path_labels,
        }
    }

    fn count(&self, label: usize, status: StatusCode) {
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
        let counter = self.registry.counter(
            "http_requests_total",
            "HTTP requests answered by the shared listener, by path and status.",
            &[
                ("path", &self.path_labels[label]),
                ("status", status.as_str()),
            ],
        );
        counter.inc();
        self.requests
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, counter);
    }

    async fn dispatch(&self, request: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
        let path = request.uri().path();
        let (label, response) = if let Some(i) = self.routes.iter().position(|r| r.path == path) {
            let handler = self.routes[i].handler.clone();
            (i, handler.handle(request, peer).await)
        } else if path == HEALTH_PATH {
            (self.routes.len(), self.health.response())
        } else if path == METRICS_PATH && request.method() == Method::GET {
            let mut response = text_response(StatusCode::OK, self.registry.render());
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            (self.routes.len() + 1, response)
        } else {
            (
                self.routes.len() + 2,
                text_response(StatusCode::NOT_FOUND, "not found\n"),
            )
        };
        self.count(label, response.status());
        response
    }
}

/// A bound listener, ready to serve.
pub struct Listener {
    pub address: SocketAddr,
    tcp: TcpListener,
    tls: Option<TlsAcceptor>,
    router: Router,
}

impl Listener {
    pub async fn bind(
        address: SocketAddr,
        tls: Option<TlsAcceptor>,
        router: Router,
    ) -> anyhow::Result<Self> {
        let tcp = TcpListener::bind(address)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
        let address = tcp.local_addr()?;
        Ok(Self {
            address,
            tcp,
            tls,
            router,
        })
    }

    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Serves until `shutdown` turns true, then lets open connections finish
    /// their request and returns once the last one has closed.
    pub async fn serve(self, mut shutdown: watch::Receiver<bool>) {
        let router = Arc::new(self.router);
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(10));
        let builder = Arc::new(builder);
        // Each connection task holds a clone; recv() returns None when all are gone.
        let (alive_tx, mut alive_rx) = mpsc::channel::<()>(1);
        loop {
            let accepted = tokio::select! {
                accepted = self.tcp.accept() => Some(accepted),
                _ = shutdown.wait_for(|stop| *stop) => None,
            };
            let Some(accepted) = accepted else { break };
            let (stream, peer) = match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(serve_connection(
                stream,
                peer,
                self.tls.clone(),
                builder.clone(),
                router.clone(),
                shutdown.clone(),
                alive_tx.clone(),
            ));
        }
        drop(self.tcp);
        drop(alive_tx);
        let _ = alive_rx.recv().await;
    }
}

/// Runs one connection; on shutdown asks it to finish the request in flight
/// and close. A macro because hyper-util's connection types carry long bounds.
macro_rules! drive {
    ($connection:expr, $shutdown:expr) => {{
        let mut shutdown = $shutdown;
        let connection = $connection;
        tokio::pin!(connection);
        let stopping = tokio::select! {
            _ = connection.as_mut() => false,
            _ = shutdown.wait_for(|stop| *stop) => true,
        };
        if stopping {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }};
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    router: Arc<Router>,
    shutdown: watch::Receiver<bool>,
    _alive: mpsc::Sender<()>,
) {
    let service = service_fn(move |request| {
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.dispatch(request, peer).await) }
    });
    match tls {
        None => drive!(
            builder.serve_connection(TokioIo::new(stream), service),
            shutdown
        ),
        Some(acceptor) => {
            let handshake =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await;
            match handshake {
                Ok(Ok(tls_stream)) => {
                    drive!(
                        builder.serve_connection(TokioIo::new(tls_stream), service),
                        shutdown
                    )
                }
                Ok(Err(e)) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                Err(_) => tracing::debug!("TLS handshake with {peer} timed out"),
            }
        }
    }
}
