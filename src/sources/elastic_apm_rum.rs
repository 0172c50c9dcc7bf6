//! Source `elastic_apm_rum`: speaks APM Server's RUM intake so pages keep
//! Elastic's `@elastic/apm-rum` agent and change only its `serverUrl`.
//! `POST /intake/v2/rum/events` and `/intake/v3/rum/events` take the agent's
//! NDJSON (gzip from CompressionStream) and answer as APM Server does: 202,
//! or 400 with `{"accepted":N,"errors":[...]}` when lines were refused (the
//! good ones are kept), 413, 503. `GET|POST /config/v1/rum/agents` answers
//! an empty central config with an `ETag` (304 when it matches), so the
//! agent's `centralConfig` logs no error. Same intake as `rum_beacon`: CORS
//! with preflight, body limits, gzip, client address, access log.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::elastic_apm_decoder::{self, ApiVersion, ApmLimits, LineError, RequestFacts};
use super::SourceContext;
use crate::config::CheckConfig;
use crate::http::intake::{media_type, Intake, IntakeError};
use crate::http::server::{ResponseFuture, Route, RouteHandler};
use crate::http::{access_log, empty_response, text_response, HttpResponse};
use crate::telemetry::Counter;
use crate::topology::buffer::Fanout;

/// The paths APM Server serves to RUM agents.
pub const INTAKE_V2_PATH: &str = "/intake/v2/rum/events";
pub const INTAKE_V3_PATH: &str = "/intake/v3/rum/events";
pub const CONFIG_PATH: &str = "/config/v1/rum/agents";

/// The ETag of the (empty) central config; the agent sends it back as
/// `?ifnonematch=` (quotes stripped) or `If-None-Match`.
pub const CONFIG_ETAG: &str = "\"rum-pipeline-empty-1\"";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticApmRumConfig {
    /// Most events one request may make (413 above). A page-load
    /// transaction makes one per span (resources, fetches) plus its vitals.
    #[serde(default = "default_max_events")]
    pub max_events_per_request: usize,
    /// Longest NDJSON line, bytes or a string like `"300kb"` (APM Server's
    /// `max_event_size`); a longer line is refused alone, the others kept.
    #[serde(
        default = "default_max_event_bytes",
        deserialize_with = "crate::config::byte_size::deserialize"
    )]
    pub max_event_bytes: usize,
    /// Longest string (value or key) in a line, in bytes (the line is refused).
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
    /// Deepest JSON nesting of a line (a v3 span's response sizes are at 7).
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// Keep the agent's breakdown metricsets (self time per span type) as
    /// `custom` events; by default they are dropped and counted.
    #[serde(default)]
    pub keep_breakdown: bool,
}

fn default_max_events() -> usize {
    1000
}
fn default_max_event_bytes() -> usize {
    300 * 1024
}
fn default_max_string_bytes() -> usize {
    16 * 1024
}
fn default_max_json_depth() -> usize {
    16
}

impl CheckConfig for ElasticApmRumConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        for (key, value) in [
            ("max_events_per_request", self.max_events_per_request),
            ("max_event_bytes", self.max_event_bytes),
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

impl ElasticApmRumConfig {
    pub fn build(&self, cx: SourceContext) -> anyhow::Result<Vec<Route>> {
        let metrics = cx.metrics.clone();
        let intake = Arc::new(IntakeHandler {
            intake: Intake::new(cx.http.clone(), cx.metrics, "GET, POST, OPTIONS"),
            output: cx.output,
            limits: ApmLimits {
                max_events: self.max_events_per_request,
                max_event_bytes: self.max_event_bytes,
                max_string_bytes: self.max_string_bytes,
                max_depth: self.max_json_depth,
                keep_breakdown: self.keep_breakdown,
                client_ip: cx.http.client_ip,
            },
            send_timeout: Duration::from_millis(cx.http.send_timeout_ms),
            unknown_kinds: metrics.counter(
                "elastic_apm_rum_unknown_events_total",
                "NDJSON lines of a kind the agent does not send, kept as rum.type = custom.",
                &[],
            ),
            dropped_breakdowns: metrics.counter(
                "elastic_apm_rum_dropped_breakdowns_total",
                "Breakdown metricsets dropped (keep_breakdown = false).",
                &[],
            ),
        });
        let route = |path: &str, endpoint| Route {
            path: path.to_owned(),
            source_id: cx.id.clone(),
            handler: Arc::new(Endpoint {
                shared: intake.clone(),
                endpoint,
            }) as Arc<dyn RouteHandler>,
        };
        Ok(vec![
            route(INTAKE_V2_PATH, Kind::Intake(ApiVersion::V2)),
            route(INTAKE_V3_PATH, Kind::Intake(ApiVersion::V3)),
            route(CONFIG_PATH, Kind::Config),
        ])
    }
}

/// What the three routes share.
struct IntakeHandler {
    intake: Intake,
    output: Fanout,
    limits: ApmLimits,
    send_timeout: Duration,
    /// `elastic_apm_rum_unknown_events_total`.
    unknown_kinds: Counter,
    /// `elastic_apm_rum_dropped_breakdowns_total`.
    dropped_breakdowns: Counter,
}

#[derive(Clone, Copy)]
enum Kind {
    Intake(ApiVersion),
    Config,
}

struct Endpoint {
    shared: Arc<IntakeHandler>,
    endpoint: Kind,
}

impl RouteHandler for Endpoint {
    fn handle(self: Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> ResponseFuture {
        Box::pin(async move {
            let shared = &self.shared;
            match (self.endpoint, request.method().clone()) {
                (_, Method::OPTIONS) => shared.intake.preflight(request.headers()),
                (Kind::Intake(version), Method::POST) => {
                    shared.receive(request, peer, version).await
                }
                (Kind::Config, Method::GET | Method::POST) => shared.config(&request),
                (endpoint, _) => {
                    let allow = match endpoint {
                        Kind::Intake(_) => "POST, OPTIONS",
                        Kind::Config => "GET, POST, OPTIONS",
                    };
                    let mut response =
                        text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                    response
                        .headers_mut()
                        .insert(header::ALLOW, HeaderValue::from_static(allow));
                    response
                }
            }
        })
    }
}

/// APM Server's error body: `{"accepted": N, "errors": [{message, document}]}`.
fn apm_body(
    status: StatusCode,
    accepted: usize,
    errors: impl IntoIterator<Item = (String, Option<String>)>,
) -> HttpResponse {
    let errors: Vec<serde_json::Value> = errors
        .into_iter()
        .map(|(message, document)| match document {
            Some(document) => json!({"message": message, "document": document}),
            None => json!({"message": message}),
        })
        .collect();
    let body = json!({"accepted": accepted, "errors": errors}).to_string();
    let mut response = text_response(status, Bytes::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

impl IntakeHandler {
    /// The intake's refusal (counted), with APM Server's body.
    fn refuse(&self, error: &IntakeError, allow_origin: Option<HeaderValue>) -> HttpResponse {
        let counted = self.intake.error_response(error, allow_origin);
        let (parts, _) = counted.into_parts();
        let mut response = apm_body(error.status, 0, [(error.message.clone(), None)]);
        for (name, value) in parts.headers.iter() {
            if name != header::CONTENT_TYPE {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }

    async fn receive(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        version: ApiVersion,
    ) -> HttpResponse {
        // The agent sends application/x-ndjson; APM Server also takes
        // application/json, and text/plain spares a preflight.
        match media_type(request.headers()).as_deref() {
            None | Some("application/x-ndjson") | Some("application/json") | Some("text/plain") => {
            }
            Some(other) => {
                let error = IntakeError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    format!("Content-Type `{other}` not accepted (use application/x-ndjson)"),
                );
                let origin = self.intake.check_origin(request.headers()).ok().flatten();
                return self.refuse(&error, origin);
            }
        }
        let path = request.uri().path().to_owned();
        let accepted = match self.intake.accept(request, peer.ip()).await {
            Ok(accepted) => accepted,
            Err((error, origin)) => return self.refuse(&error, origin),
        };
        let metrics = self.intake.metrics();
        metrics.received_bytes.add(accepted.wire_bytes as u64);
        let facts = RequestFacts {
            received_at_ms: chrono::Utc::now().timestamp_millis(),
            client_ip: accepted.client_ip,
            user_agent: accepted
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
            version,
        };
        let decoded = match elastic_apm_decoder::decode(&accepted.body, &facts, &self.limits) {
            Ok(decoded) => decoded,
            Err(error) => return self.refuse(&error, accepted.allow_origin),
        };
        if self.intake.options().access_log {
            access_log::log(
                "POST",
                &path,
                decoded.page_url.as_deref(),
                accepted.wire_bytes,
            );
        }
        for error in &decoded.errors {
            metrics.errors(error.error_type, "receiving").inc();
        }
        self.unknown_kinds.add(decoded.unknown_kinds as u64);
        self.dropped_breakdowns
            .add(decoded.dropped_breakdowns as u64);
        metrics.received_events.add(decoded.events.len() as u64);
        let delivered = if decoded.events.is_empty() {
            self.intake.with_cors(
                empty_response(StatusCode::NO_CONTENT),
                accepted.allow_origin.clone(),
            )
        } else {
            self.intake
                .deliver(
                    &self.output,
                    decoded.events,
                    self.send_timeout,
                    accepted.allow_origin.clone(),
                )
                .await
        };
        if delivered.status() != StatusCode::NO_CONTENT {
            // 503: nothing of the request was taken; the agent retries.
            let (parts, _) = delivered.into_parts();
            let mut response = apm_body(
                parts.status,
                0,
                [("queue is full, retry later".to_owned(), None)],
            );
            for (name, value) in parts.headers.iter() {
                if name != header::CONTENT_TYPE {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            return response;
        }
        let mut response = if decoded.errors.is_empty() {
            empty_response(StatusCode::ACCEPTED)
        } else {
            apm_body(
                StatusCode::BAD_REQUEST,
                decoded.accepted,
                decoded.errors.into_iter().map(
                    |LineError {
                         message, document, ..
                     }| (message, Some(document)),
                ),
            )
        };
        for (name, value) in delivered.headers() {
            response.headers_mut().insert(name, value.clone());
        }
        response
    }

    /// Central config: none, said the way APM Server says it.
    fn config(&self, request: &Request<Incoming>) -> HttpResponse {
        let origin = match self.intake.check_origin(request.headers()) {
            Ok(origin) => origin,
            Err(error) => return self.refuse(&error, None),
        };
        let bare = CONFIG_ETAG.trim_matches('"');
        let query_match = request.uri().query().is_some_and(|q| {
            q.split('&')
                .any(|pair| pair.strip_prefix("ifnonematch=") == Some(bare))
        });
        let header_match = request
            .headers()
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim().trim_matches('"') == bare));
        let mut response = if query_match || header_match {
            empty_response(StatusCode::NOT_MODIFIED)
        } else {
            let mut response = text_response(StatusCode::OK, "{}");
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            response
        };
        let h = response.headers_mut();
        h.insert(header::ETAG, HeaderValue::from_static(CONFIG_ETAG));
        h.insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("max-age=30, must-revalidate"),
        );
        // Cross-origin, the agent can read the ETag only when exposed.
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Etag"),
        );
        self.intake.with_cors(response, origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::decode;

    fn config(toml_text: &str) -> ElasticApmRumConfig {
        decode(toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[test]
    fn defaults() {
        let c = config("");
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert_eq!(c.max_events_per_request, 1000);
        assert_eq!(c.max_event_bytes, 300 * 1024);
        assert!(!c.keep_breakdown);
        assert_eq!(config("max_event_bytes = \"1kb\"").max_event_bytes, 1024);
    }

    #[test]
    fn bad_values_are_named() {
        let c = config("max_events_per_request = 0\nmax_json_depth = 101");
        let keys: Vec<&str> = c.check().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["max_events_per_request", "max_json_depth"]);
        let err =
            decode::<ElasticApmRumConfig>(toml::from_str("path = \"/x\"").unwrap()).unwrap_err();
        assert_eq!(err.0, "path");
    }
}
