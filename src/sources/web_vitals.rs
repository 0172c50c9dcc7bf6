//! Source `web_vitals`: `POST {path}` takes what pages using Google's
//! `web-vitals` library post — one `Metric` object or an array of them,
//! `text/plain` from `navigator.sendBeacon` or `application/json` from
//! `fetch` — and makes one `web_vital` event per metric
//! (`web_vitals_decoder`). Same intake as `rum_beacon`: CORS with preflight,
//! body limits, gzip, client address, 204 once downstream, 503 when full.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::web_vitals_decoder::{self, MetricLimits, RequestFacts};
use super::SourceContext;
use crate::config::CheckConfig;
use crate::http::intake::{media_type, Intake};
use crate::http::server::{ResponseFuture, Route, RouteHandler};
use crate::http::{access_log, text_response, HttpResponse};
use crate::telemetry::Counter;
use crate::topology::buffer::Fanout;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebVitalsConfig {
    /// Path the page posts its metrics to.
    #[serde(default = "default_path")]
    pub path: String,
    /// Most metrics one request may carry (413 above). A page has at most a
    /// handful per page load (LCP, CLS, INP, FCP, TTFB).
    #[serde(default = "default_max_metrics")]
    pub max_metrics_per_request: usize,
    /// Longest string (value or key) in a request, in bytes (400 above).
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
    /// Deepest JSON nesting accepted (400 above); `attribution` holds
    /// whole performance entries, a few levels deep.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// Keep each metric's `entries` (the raw PerformanceEntry objects, often
    /// larger than the rest) under `rum.extra.entries`; by default they are
    /// dropped and counted, as `attribution` already summarizes them.
    #[serde(default)]
    pub keep_entries: bool,
}

fn default_path() -> String {
    "/rum/web-vitals".to_owned()
}
fn default_max_metrics() -> usize {
    50
}
fn default_max_string_bytes() -> usize {
    16 * 1024
}
fn default_max_json_depth() -> usize {
    16
}

impl CheckConfig for WebVitalsConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !self.path.starts_with('/') {
            problems.push(("path", format!("`{}` must start with `/`", self.path)));
        }
        for (key, value) in [
            ("max_metrics_per_request", self.max_metrics_per_request),
            ("max_string_bytes", self.max_string_bytes),
            ("max_json_depth", self.max_json_depth),
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

impl WebVitalsConfig {
    pub fn build(&self, cx: SourceContext) -> anyhow::Result<Vec<Route>> {
        let metrics = cx.metrics.clone();
        let handler = MetricsHandler {
            intake: Intake::new(cx.http.clone(), cx.metrics, "POST, OPTIONS"),
            output: cx.output,
            limits: MetricLimits {
                max_metrics: self.max_metrics_per_request,
                max_string_bytes: self.max_string_bytes,
                max_depth: self.max_json_depth,
                keep_entries: self.keep_entries,
                client_ip: cx.http.client_ip,
            },
            send_timeout: Duration::from_millis(cx.http.send_timeout_ms),
            unknown_names: metrics.counter(
                "web_vitals_unknown_metrics_total",
                "Metrics whose name is not a web vital, kept as rum.type = custom.",
                &[],
            ),
            dropped_entries: metrics.counter(
                "web_vitals_dropped_entries_total",
                "PerformanceEntry objects of metrics' `entries` dropped (keep_entries = false).",
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

struct MetricsHandler {
    intake: Intake,
    output: Fanout,
    limits: MetricLimits,
    send_timeout: Duration,
    /// `web_vitals_unknown_metrics_total`.
    unknown_names: Counter,
    /// `web_vitals_dropped_entries_total`.
    dropped_entries: Counter,
    path: String,
}

impl RouteHandler for MetricsHandler {
    fn handle(self: Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> ResponseFuture {
        Box::pin(async move {
            match *request.method() {
                Method::POST => self.receive(request, peer).await,
                Method::OPTIONS => self.intake.preflight(request.headers()),
                _ => {
                    let mut response =
                        text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static("POST, OPTIONS"));
                    response
                }
            }
        })
    }
}

impl MetricsHandler {
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
        let header = |name| accepted.headers.get(name).and_then(|v| v.to_str().ok());
        let facts = RequestFacts {
            received_at_ms: chrono::Utc::now().timestamp_millis(),
            client_ip: accepted.client_ip,
            user_agent: header(header::USER_AGENT),
            referer: header(header::REFERER),
        };
        let decoded = match web_vitals_decoder::decode(&accepted.body, &facts, &self.limits) {
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
        self.unknown_names.add(decoded.unknown_names as u64);
        self.dropped_entries.add(decoded.dropped_entries as u64);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::decode;

    fn config(toml_text: &str) -> WebVitalsConfig {
        decode(toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[test]
    fn defaults() {
        let c = config("");
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert_eq!(c.path, "/rum/web-vitals");
        assert_eq!(c.max_metrics_per_request, 50);
        assert!(!c.keep_entries);
    }

    #[test]
    fn bad_values_are_named() {
        let c = config("path = \"x\"\nmax_metrics_per_request = 0\nmax_json_depth = 101");
        let keys: Vec<&str> = c.check().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["path", "max_metrics_per_request", "max_json_depth"]);
        let err = decode::<WebVitalsConfig>(toml::from_str("max_events = 1").unwrap()).unwrap_err();
        assert_eq!(err.0, "max_events");
    }
}
