//! Source `web_vitals`: `POST {path}` takes what pages using Google's
//! `web-vitals` library post — one `Metric` object or an array of them,
//! `text/plain` from `navigator.sendBeacon` or `application/json` from
//! `fetch` — and makes one `web_vital` event per metric
//! (`web_vitals_decoder`). Same intake as `rum_beacon`: CORS with preflight,
//! body limits, gzip, client address, 204 once downstream, 503 when full.

use http::header;
use serde::Deserialize;

use super::decode_error::DecodeError;
use super::http_source::{self, DecodePass, Decoded, Endpoint, HttpSource, MediaTypes};
use super::web_vitals_decoder::{self, MetricLimits, RequestFacts};
use super::{check_json_limits, check_path, SourceContext};
use crate::config::CheckConfig;
use crate::http::intake::{Intake, IntakeRequest};
use crate::http::server::Route;
use crate::telemetry::Counter;

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
        problems.extend(check_path("path", &self.path));
        problems.extend(check_json_limits(
            &[
                ("max_metrics_per_request", self.max_metrics_per_request),
                ("max_string_bytes", self.max_string_bytes),
                ("max_json_depth", self.max_json_depth),
            ],
            self.max_json_depth,
        ));
        problems
    }
}

impl WebVitalsConfig {
    pub fn build(&self, cx: SourceContext) -> anyhow::Result<Vec<Route>> {
        let metrics = &cx.metrics;
        let source = MetricsSource {
            limits: MetricLimits {
                max_metrics: self.max_metrics_per_request,
                max_string_bytes: self.max_string_bytes,
                max_depth: self.max_json_depth,
                keep_entries: self.keep_entries,
                client_ip: cx.http.client_ip,
            },
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
        };
        let intake = Intake::new(
            cx.http.intake_options(),
            cx.metrics.clone(),
            "POST, OPTIONS",
        );
        let endpoints = vec![Endpoint::exact(&self.path, ())];
        Ok(http_source::routes(cx, intake, source, endpoints))
    }
}

struct MetricsSource {
    limits: MetricLimits,
    /// `web_vitals_unknown_metrics_total`.
    unknown_names: Counter,
    /// `web_vitals_dropped_entries_total`.
    dropped_entries: Counter,
}

impl HttpSource for MetricsSource {
    type Endpoint = ();
    type Answer = ();

    fn allow(&self, _: ()) -> &'static str {
        "POST, OPTIONS"
    }

    // sendBeacon with a string sends text/plain (no preflight); fetch sends JSON.
    fn media_types(&self, _: ()) -> MediaTypes {
        MediaTypes {
            accepted: &["application/json", "text/plain"],
            names: "application/json or text/plain",
        }
    }

    fn decode(
        &self,
        _: (),
        request: &IntakeRequest,
        received_at_ms: i64,
        pass: DecodePass,
    ) -> Result<Decoded<()>, DecodeError> {
        let user_agent = crate::http::intake::user_agent(&request.headers);
        let facts = RequestFacts {
            received_at_ms,
            client_ip: request.client_ip,
            user_agent: user_agent.as_deref(),
            referer: request
                .headers
                .get(header::REFERER)
                .and_then(|v| v.to_str().ok()),
        };
        let decoded = web_vitals_decoder::decode(&request.body, &facts, &self.limits)?;
        if pass.counts() {
            self.unknown_names.add(decoded.unknown_names as u64);
            self.dropped_entries.add(decoded.dropped_entries as u64);
        }
        Ok(Decoded {
            events: decoded.events,
            page_url: decoded.page_url,
            dropped: 0,
            answer: (),
        })
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
