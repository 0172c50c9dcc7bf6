//! Source `rum_beacon`: `POST {path}` takes beacons (format v1, see
//! `beacon_decoder`), `GET {path}` serves the RUM client, `OPTIONS {path}`
//! answers CORS preflights. A request is answered 204 once its events are in
//! the downstream buffers, 503 + `Retry-After` when they stay full past
//! `send_timeout_ms`; it never hangs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Deserialize;

use super::beacon_decoder::{self, BeaconLimits, RequestFacts, CLIENT_HINT_HEADERS};
use super::SourceContext;
use crate::client_bundle;
use crate::config::CheckConfig;
use crate::http::intake::{media_type, Intake};
use crate::http::server::{ResponseFuture, Route, RouteHandler};
use crate::http::{access_log, empty_response, text_response, HttpResponse};
use crate::telemetry::Counter;
use crate::topology::buffer::Fanout;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RumBeaconConfig {
    /// Path for beacons (POST) and the client script (GET).
    #[serde(default = "default_path")]
    pub path: String,
    /// Most events one beacon may carry (413 above).
    #[serde(default = "default_max_events")]
    pub max_events_per_beacon: usize,
    /// Longest string (value or key) in a beacon, in bytes (400 above).
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
    /// Deepest JSON nesting accepted (400 above).
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// Bytes of the context a beacon's events share (page URL, title,
    /// referrer, the User-Agent header, `ua_hints`, ...): every document of
    /// the beacon carries it, so this bounds what one beacon can make (413
    /// above).
    #[serde(
        default = "default_max_context_bytes",
        deserialize_with = "crate::config::byte_size::deserialize"
    )]
    pub max_context_bytes: usize,
    /// Event times are clamped to at most this far before the receive time.
    #[serde(default = "default_max_event_age_secs")]
    pub max_event_age_secs: u64,
    /// Serve the RUM client script at `GET {path}`.
    #[serde(default = "crate::config::default_true")]
    pub serve_client: bool,
    /// `Cache-Control: max-age` of the client script, in seconds.
    #[serde(default = "default_client_cache")]
    pub client_cache_max_age_secs: u64,
}

fn default_path() -> String {
    "/rum".to_owned()
}
fn default_max_events() -> usize {
    500
}
fn default_max_string_bytes() -> usize {
    16 * 1024
}
fn default_max_json_depth() -> usize {
    16
}
fn default_max_context_bytes() -> usize {
    64 * 1024
}
fn default_max_event_age_secs() -> u64 {
    86_400
}
fn default_client_cache() -> u64 {
    3600
}

impl CheckConfig for RumBeaconConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !self.path.starts_with('/') {
            problems.push(("path", format!("`{}` must start with `/`", self.path)));
        }
        for (key, value) in [
            ("max_events_per_beacon", self.max_events_per_beacon),
            ("max_string_bytes", self.max_string_bytes),
            ("max_json_depth", self.max_json_depth),
            ("max_context_bytes", self.max_context_bytes),
        ] {
            if value == 0 {
                problems.push((key, "must be at least 1".to_owned()));
            }
        }
        if self.max_json_depth > 100 {
            problems.push(("max_json_depth", "must be at most 100".to_owned()));
        }
        problems
    }
}

impl RumBeaconConfig {
    pub fn build(&self, cx: SourceContext) -> anyhow::Result<Vec<Route>> {
        let metrics = cx.metrics.clone();
        let handler = BeaconHandler {
            intake: Intake::new(cx.http.clone(), cx.metrics, "POST, GET, OPTIONS"),
            output: cx.output,
            limits: BeaconLimits {
                max_events: self.max_events_per_beacon,
                max_string_bytes: self.max_string_bytes,
                max_depth: self.max_json_depth,
                max_event_age_ms: (self.max_event_age_secs as i64).saturating_mul(1000),
                max_context_bytes: self.max_context_bytes,
                client_ip: cx.http.client_ip,
            },
            send_timeout: Duration::from_millis(cx.http.send_timeout_ms),
            serve_client: self.serve_client,
            cache_control: HeaderValue::from_str(&format!(
                "public, max-age={}",
                self.client_cache_max_age_secs
            ))?,
            unknown_types: metrics.counter(
                "rum_beacon_unknown_event_types_total",
                "Beacon events whose type is unknown, kept as rum.type = custom.",
                &[],
            ),
            ignored_keys: metrics.counter(
                "rum_beacon_ignored_keys_total",
                "Top-level beacon keys the format does not know (ignored).",
                &[],
            ),
            path: self.path.clone(),
        };
        Ok(vec![Route {
            path: self.path.clone(),
            source_id: cx.id,
            handler: Arc::new(handler),
        }])
    }
}

struct BeaconHandler {
    intake: Intake,
    output: Fanout,
    limits: BeaconLimits,
    send_timeout: Duration,
    serve_client: bool,
    cache_control: HeaderValue,
    unknown_types: Counter,
    ignored_keys: Counter,
    path: String,
}

impl RouteHandler for BeaconHandler {
    fn handle(self: Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> ResponseFuture {
        Box::pin(async move {
            match *request.method() {
                Method::POST => self.receive(request, peer).await,
                Method::OPTIONS => self.intake.preflight(request.headers()),
                Method::GET | Method::HEAD if self.serve_client => {
                    serve_client(request.headers(), &self.cache_control)
                }
                _ => {
                    let mut response =
                        text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                    let allow = if self.serve_client {
                        "POST, GET, HEAD, OPTIONS"
                    } else {
                        "POST, OPTIONS"
                    };
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static(allow));
                    response
                }
            }
        })
    }
}

impl BeaconHandler {
    async fn receive(&self, request: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
        // sendBeacon with a string sends text/plain (no preflight); fetch sends JSON.
        match media_type(request.headers()).as_deref() {
            None | Some("application/json") | Some("text/plain") => {}
            Some(other) => {
                return self.intake.refuse_media_type(
                    request.headers(),
                    other,
                    "application/json or text/plain",
                );
            }
        }
        let accepted = match self.intake.accept(request, peer.ip()).await {
            Ok(accepted) => accepted,
            Err((error, origin)) => return self.intake.error_response(&error, origin),
        };
        let metrics = self.intake.metrics();
        metrics.received_bytes.add(accepted.wire_bytes as u64);
        let client_hints = client_hints(&accepted.headers);
        let facts = RequestFacts {
            received_at_ms: chrono::Utc::now().timestamp_millis(),
            client_ip: accepted.client_ip,
            user_agent: accepted
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
            client_hints,
        };
        let decoded = match beacon_decoder::decode(&accepted.body, &facts, &self.limits) {
            Ok(decoded) => decoded,
            Err(error) => return self.intake.error_response(&error, accepted.allow_origin),
        };
        if self.intake.options().access_log {
            access_log::log(
                "POST",
                &self.path,
                decoded.page_url.as_deref(),
                accepted.wire_bytes,
            );
        }
        self.unknown_types.add(decoded.unknown_types as u64);
        self.ignored_keys.add(decoded.ignored_keys as u64);
        metrics.received_events.add(decoded.events.len() as u64);
        self.intake
            .deliver(
                &self.output,
                decoded.events,
                self.send_timeout,
                accepted.allow_origin,
            )
            .await
    }
}

fn client_hints(headers: &HeaderMap) -> Vec<(&'static str, &str)> {
    CLIENT_HINT_HEADERS
        .iter()
        .filter_map(|(header, key)| Some((*key, headers.get(header)?.to_str().ok()?)))
        .collect()
}

/// The client script, with validators and gzip when the browser takes it.
fn serve_client(headers: &HeaderMap, cache_control: &HeaderValue) -> HttpResponse {
    let bundle = client_bundle::bundle();
    let etag = HeaderValue::from_str(&bundle.etag).unwrap_or(HeaderValue::from_static("\"rum\""));
    let not_modified = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|tag| tag.trim() == bundle.etag || tag.trim() == "*")
        });
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let mut response = if not_modified {
        empty_response(StatusCode::NOT_MODIFIED)
    } else if gzip {
        let mut r = http::Response::new(Full::new(bundle.gzip.clone()));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        http::Response::new(Full::new(bundle.plain.clone()))
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache_control.clone());
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    // Sites with Cross-Origin-Embedder-Policy may still load the script.
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    response
}
