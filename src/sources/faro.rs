//! Source `faro`: `POST {path}` and `POST {path}/{app_key}` take what the
//! Grafana Faro Web SDK's fetch transport posts (`faro_decoder`), answered
//! as Grafana Alloy's `faro.receiver` answers (202). Same intake as
//! `rum_beacon`: CORS with preflight (allowing the SDK's own headers), body
//! limits, gzip, client address, 503 + `Retry-After` when full. With
//! `api_key` set, a request must carry it (`x-api-key` or the path segment).

use http::StatusCode;
use serde::Deserialize;

use super::decode_error::DecodeError;
use super::faro_decoder::{self, FaroLimits, RequestFacts};
use super::http_source::{
    self, DecodePass, Decoded, Endpoint, HttpSource, MediaTypes, RequestHead,
};
use super::{check_json_limits, SourceContext};
use crate::config::CheckConfig;
use crate::http::intake::{Intake, IntakeRequest};
use crate::http::server::Route;
use crate::http::{empty_response, text_response, HttpResponse};
use crate::telemetry::Counter;

/// What the SDK's preflight asks for: its JSON and gzip bodies, the API key,
/// its session header and the per-request idempotency key.
const ALLOW_HEADERS: &str =
    "content-type, content-encoding, x-api-key, x-faro-session-id, idempotency-key";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaroConfig {
    /// Path the SDK posts to (`url` in `initializeFaro`); `{path}/{app_key}`
    /// is taken too.
    #[serde(default = "default_path")]
    pub path: String,
    /// When set, requests must carry it in `x-api-key` (the SDK's `apiKey`)
    /// or as the `{app_key}` path segment; others get 401.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Most items (measurements, exceptions, logs, events, spans) one request
    /// may carry (413 above). The SDK batches at most 50 by default.
    #[serde(default = "default_max_items")]
    pub max_items_per_request: usize,
    /// Longest string (value or key) in a request, in bytes (400 above).
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
    /// Deepest JSON nesting accepted (400 above); stack frames are 7 deep.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// Item times are clamped to at most this far before the receive time.
    #[serde(default = "default_max_event_age_secs")]
    pub max_event_age_secs: u64,
    /// Bytes of the context a request's events share (`meta`, the page URL
    /// and its parts, the User-Agent header): every document carries it,
    /// so this bounds what one request can make (413 above).
    #[serde(
        default = "default_max_context_bytes",
        deserialize_with = "crate::config::byte_size::deserialize"
    )]
    pub max_context_bytes: usize,
}

fn default_path() -> String {
    "/collect".to_owned()
}
fn default_max_items() -> usize {
    500
}
fn default_max_string_bytes() -> usize {
    16 * 1024
}
fn default_max_json_depth() -> usize {
    16
}
fn default_max_event_age_secs() -> u64 {
    86_400
}
fn default_max_context_bytes() -> usize {
    64 * 1024
}

impl CheckConfig for FaroConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !self.path.starts_with('/') || self.path.len() > 1 && self.path.ends_with('/') {
            problems.push((
                "path",
                format!("`{}` must start with `/` and not end with one", self.path),
            ));
        }
        if self.api_key.as_deref() == Some("") {
            problems.push((
                "api_key",
                "must not be empty (leave it out for none)".to_owned(),
            ));
        }
        problems.extend(check_json_limits(
            &[
                ("max_items_per_request", self.max_items_per_request),
                ("max_string_bytes", self.max_string_bytes),
                ("max_json_depth", self.max_json_depth),
                ("max_context_bytes", self.max_context_bytes),
            ],
            self.max_json_depth,
        ));
        problems
    }
}

impl FaroConfig {
    pub fn build(&self, cx: SourceContext) -> anyhow::Result<Vec<Route>> {
        let metrics = &cx.metrics;
        let source = FaroSource {
            limits: FaroLimits {
                max_items: self.max_items_per_request,
                max_string_bytes: self.max_string_bytes,
                max_depth: self.max_json_depth,
                max_event_age_ms: super::age_secs_to_ms(self.max_event_age_secs),
                max_context_bytes: self.max_context_bytes,
                client_ip: cx.http.client_ip,
            },
            api_key: self.api_key.clone(),
            unauthorized: metrics.errors("unauthorized", "receiving"),
            unknown_kinds: metrics.counter(
                "faro_unknown_kinds_total",
                "Top-level payload keys Faro does not send, kept as rum.type = custom.",
                &[],
            ),
            dropped_spans: metrics.counter(
                "faro_dropped_spans_total",
                "OTLP spans of the payload's `traces` (not stored).",
                &[],
            ),
            path: self.path.clone(),
        };
        let intake = Intake::new(
            cx.http.intake_options(),
            cx.metrics.clone(),
            "POST, OPTIONS",
        )
        .allow_headers(ALLOW_HEADERS)
        .expose_headers("retry-after");
        let endpoints = vec![
            Endpoint::exact(&self.path, ()),
            Endpoint {
                path: format!("{}/*", self.path.trim_end_matches('/')),
                endpoint: (),
                log_path: self.path.clone(),
            },
        ];
        Ok(http_source::routes(cx, intake, source, endpoints))
    }
}

struct FaroSource {
    limits: FaroLimits,
    /// `api_key`: what `x-api-key` or the path segment must be.
    api_key: Option<String>,
    /// `component_errors_total{error_type="unauthorized"}` (cached: a
    /// client with a wrong key repeats it on every batch).
    unauthorized: Counter,
    /// `faro_unknown_kinds_total`.
    unknown_kinds: Counter,
    /// `faro_dropped_spans_total`.
    dropped_spans: Counter,
    path: String,
}

/// Compares without an early exit, so the time taken does not tell how
/// much of a guessed key was right.
fn same_key(given: &[u8], expected: &[u8]) -> bool {
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

impl HttpSource for FaroSource {
    type Endpoint = ();
    type Answer = ();

    const AUTHORIZES: bool = true;

    fn allow(&self, _: ()) -> &'static str {
        "POST, OPTIONS"
    }

    // The SDK posts `application/json`; `text/plain` lets a page use
    // `sendBeacon` without a preflight.
    fn media_types(&self, _: ()) -> MediaTypes {
        MediaTypes {
            accepted: &["application/json", "text/plain"],
            names: "application/json or text/plain",
        }
    }

    /// The `x-api-key` header or the `{app_key}` path segment, when the
    /// source has an `api_key`.
    fn refuse_key(&self, _: (), request: &RequestHead) -> Option<HttpResponse> {
        let expected = self.api_key.as_ref()?;
        let header = request
            .headers()
            .get("x-api-key")
            .is_some_and(|v| same_key(v.as_bytes(), expected.as_bytes()));
        let segment = request
            .path()
            .strip_prefix(self.path.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|key| same_key(key.as_bytes(), expected.as_bytes()));
        if header || segment {
            return None;
        }
        self.unauthorized.inc();
        Some(text_response(
            StatusCode::UNAUTHORIZED,
            "missing or wrong API key (x-api-key or /{app_key})\n",
        ))
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
            session_header: request
                .headers
                .get("x-faro-session-id")
                .and_then(|v| v.to_str().ok()),
        };
        let decoded = faro_decoder::decode(&request.body, &facts, &self.limits)?;
        if pass.counts() {
            self.unknown_kinds.add(decoded.unknown_kinds as u64);
            self.dropped_spans.add(decoded.dropped_spans as u64);
        }
        Ok(Decoded {
            events: decoded.events,
            page_url: decoded.page_url,
            dropped: 0,
            answer: (),
        })
    }

    /// As Grafana Alloy's `faro.receiver` answers.
    fn accepted(&self, _: ()) -> HttpResponse {
        empty_response(StatusCode::ACCEPTED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::decode;

    fn config(toml_text: &str) -> FaroConfig {
        decode(toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[test]
    fn defaults() {
        let c = config("");
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert_eq!(c.path, "/collect");
        assert_eq!(c.api_key, None);
        assert_eq!(c.max_items_per_request, 500);
        assert_eq!(c.max_context_bytes, 64 * 1024);
    }

    #[test]
    fn bad_values_are_named() {
        let c = config("path = \"collect/\"\napi_key = \"\"\nmax_items_per_request = 0");
        let keys: Vec<&str> = c.check().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["path", "api_key", "max_items_per_request"]);
        let err = decode::<FaroConfig>(toml::from_str("apikey = \"x\"").unwrap()).unwrap_err();
        assert_eq!(err.0, "apikey");
    }

    #[test]
    fn keys_compare_whole() {
        assert!(same_key(b"secret", b"secret"));
        assert!(!same_key(b"secreT", b"secret"));
        assert!(!same_key(b"secret1", b"secret"));
        assert!(!same_key(b"", b"secret"));
    }
}
