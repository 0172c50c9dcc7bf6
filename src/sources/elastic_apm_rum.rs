//! Source `elastic_apm_rum`: speaks APM Server's RUM intake so pages keep
//! Elastic's `@elastic/apm-rum` agent and change only its `serverUrl`.
//! `POST /intake/v2/rum/events` and `/intake/v3/rum/events` take the agent's
//! NDJSON (gzip from CompressionStream) and answer as APM Server does: 202,
//! or 400 with `{"accepted":N,"errors":[...]}` when lines were refused (the
//! good ones are kept), 413, 503. `GET|HEAD|POST /config/v1/rum/agents` answers
//! an empty central config with an `ETag` (304 when it matches), so the
//! agent's `centralConfig` logs no error. Same intake as `rum_beacon`: CORS
//! with preflight, body limits, gzip, client address, access log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::decode_error::DecodeError;
use super::elastic_apm_decoder::{
    self, ApiVersion, ApmLimits, LabelNames, LineError, RequestFacts,
};
use super::http_source::{
    self, DecodePass, Decoded, Endpoint, HttpSource, MediaTypes, Refusal, RequestHead,
};
use super::{check_json_limits, SourceContext};
use crate::config::CheckConfig;
use crate::http::intake::{Intake, IntakeRequest};
use crate::http::server::Route;
use crate::http::{empty_response, text_response, HttpResponse};
use crate::telemetry::{Counter, ErrorCounters};

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
    /// Bytes of what every event of a request carries (the shared page,
    /// session, labels and User-Agent, and the unmapped rest of `metadata`,
    /// copied into each event's `rum.extra`): bounds what one request can
    /// make (413 above).
    #[serde(
        default = "default_max_context_bytes",
        deserialize_with = "crate::config::byte_size::deserialize"
    )]
    pub max_context_bytes: usize,
    /// Most distinct label names (`metadata.labels`, `context.tags`) the
    /// process makes `labels.*` fields of, first come first taken; a label
    /// of another name is kept under `rum.extra` and counted. Every name
    /// is a field of the index, and the engine refuses every document that
    /// brings a new one past its field limit (1,000 by default).
    #[serde(default = "default_max_label_names")]
    pub max_label_names: usize,
    /// The label names that are `labels.*` fields, as written in the
    /// document (`.`, `*`, `"` as `_`): set, exactly these are, whatever
    /// the order they come in, on every replica (`max_label_names` is not
    /// used); the others are kept under `rum.extra` and counted.
    #[serde(default)]
    pub label_names: Option<Vec<String>>,
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
fn default_max_context_bytes() -> usize {
    64 * 1024
}
/// Room for a page's own labels, well under the field limit left by the
/// fields the templates map (about 170 of Elasticsearch's 1,000) even for
/// a few replicas that each took as many names (docs/limits.md).
pub const DEFAULT_MAX_LABEL_NAMES: usize = 100;
fn default_max_label_names() -> usize {
    DEFAULT_MAX_LABEL_NAMES
}
/// Beyond it the cap no longer keeps an index within any field limit an
/// engine is run with, and the names held (up to `max_string_bytes` each)
/// weigh.
const MAX_MAX_LABEL_NAMES: usize = 10_000;

impl CheckConfig for ElasticApmRumConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        problems.extend(check_json_limits(
            &[
                ("max_events_per_request", self.max_events_per_request),
                ("max_event_bytes", self.max_event_bytes),
                ("max_string_bytes", self.max_string_bytes),
                ("max_json_depth", self.max_json_depth),
                ("max_context_bytes", self.max_context_bytes),
            ],
            self.max_json_depth,
        ));
        if self.max_label_names > MAX_MAX_LABEL_NAMES {
            problems.push((
                "max_label_names",
                format!(
                    "{} is more than {MAX_MAX_LABEL_NAMES}: every name is a field of the index, whose field limit is 1,000 by default (list the names in `label_names` instead)",
                    self.max_label_names
                ),
            ));
        }
        if let Some(names) = &self.label_names {
            if names.len() > MAX_MAX_LABEL_NAMES {
                problems.push((
                    "label_names",
                    format!("{} names; at most {MAX_MAX_LABEL_NAMES}", names.len()),
                ));
            }
            if let Some(name) = names
                .iter()
                .find(|n| n.is_empty() || n.contains(['.', '*', '"']))
            {
                problems.push((
                    "label_names",
                    format!(
                        "{name:?} is no label name as documents have them: write `.`, `*` and `\"` as `_`, an empty name as `_`"
                    ),
                ));
            }
        }
        problems
    }
}

impl ElasticApmRumConfig {
    pub fn build(&self, cx: SourceContext) -> anyhow::Result<Vec<Route>> {
        let metrics = cx.metrics.clone();
        let label_names = Arc::new(match &self.label_names {
            Some(names) => LabelNames::listed(names.iter().map(String::as_str)),
            None => LabelNames::first_seen(self.max_label_names),
        });
        let taken = label_names.clone();
        metrics.registry().gauge_fn(
            "elastic_apm_rum_label_names",
            "Distinct label names made labels.* fields so far (at most max_label_names; the listed ones with label_names).",
            &[
                ("component_id", cx.id.as_str()),
                ("component_kind", "source"),
                ("component_type", "elastic_apm_rum"),
            ],
            move || taken.taken() as f64,
        );
        let source = ApmSource {
            id: cx.id.clone(),
            limits: ApmLimits {
                max_events: self.max_events_per_request,
                max_event_bytes: self.max_event_bytes,
                max_string_bytes: self.max_string_bytes,
                max_depth: self.max_json_depth,
                keep_breakdown: self.keep_breakdown,
                max_context_bytes: self.max_context_bytes,
                client_ip: cx.http.client_ip,
                label_names: label_names.clone(),
            },
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
            labels_kept_in_extra: metrics.counter(
                "elastic_apm_rum_labels_kept_in_extra_total",
                "Labels (metadata.labels, context.tags) kept under rum.extra, not as labels.* fields: their name is past max_label_names distinct names, or not in label_names.",
                &[],
            ),
            warned_label_names: AtomicBool::new(false),
            refused_lines: ErrorCounters::new(&metrics, "receiving"),
        };
        let intake = Intake::new(
            cx.http.intake_options(),
            cx.metrics.clone(),
            "GET, POST, OPTIONS",
        );
        let endpoints = vec![
            Endpoint::exact(INTAKE_V2_PATH, Kind::Intake(ApiVersion::V2)),
            Endpoint::exact(INTAKE_V3_PATH, Kind::Intake(ApiVersion::V3)),
            Endpoint::exact(CONFIG_PATH, Kind::Config),
        ];
        Ok(http_source::routes(cx, intake, source, endpoints))
    }
}

/// What the three endpoints share.
struct ApmSource {
    /// The component id, for the log.
    id: String,
    limits: ApmLimits,
    /// Counts the lines refused one by one, by their `error_type`.
    refused_lines: ErrorCounters,
    /// `elastic_apm_rum_unknown_events_total`.
    unknown_kinds: Counter,
    /// `elastic_apm_rum_dropped_breakdowns_total`.
    dropped_breakdowns: Counter,
    /// `elastic_apm_rum_labels_kept_in_extra_total`.
    labels_kept_in_extra: Counter,
    /// The first label kept under `rum.extra` is logged; the rest counted.
    warned_label_names: AtomicBool,
}

#[derive(Clone, Copy)]
enum Kind {
    Intake(ApiVersion),
    Config,
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

/// What the answer to an intake request needs: the lines kept and those
/// refused (APM Server keeps the good lines of a request).
struct LinesAnswer {
    accepted: usize,
    errors: Vec<LineError>,
}

impl HttpSource for ApmSource {
    type Endpoint = Kind;
    type Answer = LinesAnswer;

    fn allow(&self, endpoint: Kind) -> &'static str {
        match endpoint {
            Kind::Intake(_) => "POST, OPTIONS",
            Kind::Config => "GET, HEAD, POST, OPTIONS",
        }
    }

    // The agent sends application/x-ndjson; APM Server also takes
    // application/json, and text/plain spares a preflight.
    fn media_types(&self, _: Kind) -> MediaTypes {
        MediaTypes {
            accepted: &["application/x-ndjson", "application/json", "text/plain"],
            names: "application/x-ndjson",
        }
    }

    fn takes_payload(&self, endpoint: Kind) -> bool {
        matches!(endpoint, Kind::Intake(_))
    }

    fn serve(
        &self,
        endpoint: Kind,
        request: &RequestHead,
        intake: &Intake,
    ) -> Option<HttpResponse> {
        match (endpoint, request.method()) {
            // HEAD is GET without the body (hyper leaves it out).
            (Kind::Config, &Method::GET | &Method::HEAD | &Method::POST) => {
                Some(self.config(request, intake))
            }
            _ => None,
        }
    }

    fn decode(
        &self,
        endpoint: Kind,
        request: &IntakeRequest,
        received_at_ms: i64,
        pass: DecodePass,
    ) -> Result<Decoded<LinesAnswer>, DecodeError> {
        let Kind::Intake(version) = endpoint else {
            unreachable!("the config endpoint answers in `serve`");
        };
        let user_agent = crate::http::intake::user_agent(&request.headers);
        let facts = RequestFacts {
            received_at_ms,
            client_ip: request.client_ip,
            user_agent: user_agent.as_deref(),
            version,
        };
        let decoded = elastic_apm_decoder::decode(&request.body, &facts, &self.limits)?;
        if pass.counts() {
            for &(error_type, lines) in &decoded.refused {
                self.refused_lines.add(error_type, lines as u64);
            }
            self.unknown_kinds.add(decoded.unknown_kinds as u64);
            self.dropped_breakdowns
                .add(decoded.dropped_breakdowns as u64);
            let kept_in_extra = decoded.labels_kept_in_extra as u64;
            self.labels_kept_in_extra.add(kept_in_extra);
            if kept_in_extra > 0 && !self.warned_label_names.swap(true, Ordering::Relaxed) {
                let names = &self.limits.label_names;
                tracing::warn!(
                    component = %self.id,
                    "label names past the {} this source makes labels.* fields of (max_label_names, or those in label_names) are kept under rum.extra from now on; counted in elastic_apm_rum_labels_kept_in_extra_total",
                    names.max()
                );
            }
        }
        Ok(Decoded {
            events: decoded.events,
            page_url: decoded.page_url,
            dropped: 0,
            answer: LinesAnswer {
                accepted: decoded.accepted,
                errors: decoded.errors,
            },
        })
    }

    /// 202, or 400 naming the lines refused (the others are downstream).
    fn accepted(&self, answer: LinesAnswer) -> HttpResponse {
        if answer.errors.is_empty() {
            return empty_response(StatusCode::ACCEPTED);
        }
        apm_body(
            StatusCode::BAD_REQUEST,
            answer.accepted,
            answer.errors.into_iter().map(
                |LineError {
                     message, document, ..
                 }| (message, Some(document)),
            ),
        )
    }

    /// APM Server's JSON body, keeping the headers (CORS, `Retry-After`).
    fn refusal(&self, response: HttpResponse, refusal: Refusal<'_>) -> HttpResponse {
        let message = match refusal {
            Refusal::Request(message) => message.to_owned(),
            // 503: nothing of the request was taken; the agent retries.
            Refusal::Shed => "queue is full, retry later".to_owned(),
        };
        let (parts, _) = response.into_parts();
        let mut response = apm_body(parts.status, 0, [(message, None)]);
        for (name, value) in parts.headers.iter() {
            if name != header::CONTENT_TYPE {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    }
}

impl ApmSource {
    /// Central config: none, said the way APM Server says it.
    fn config(&self, request: &RequestHead, intake: &Intake) -> HttpResponse {
        let origin = match intake.check_origin(request.headers()) {
            Ok(origin) => origin,
            Err(error) => {
                let response = intake.error_response(&error, None);
                return self.refusal(response, Refusal::Request(&error.message));
            }
        };
        let bare = CONFIG_ETAG.trim_matches('"');
        let query_match = request.query().is_some_and(|q| {
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
        intake.with_cors(response, origin)
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
        assert_eq!(c.max_context_bytes, 64 * 1024);
        assert_eq!((c.max_label_names, c.label_names), (100, None));
        assert_eq!(config("max_event_bytes = \"1kb\"").max_event_bytes, 1024);
    }

    #[test]
    fn bad_values_are_named() {
        let c = config("max_events_per_request = 0\nmax_json_depth = 101");
        let keys: Vec<&str> = c.check().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["max_events_per_request", "max_json_depth"]);
        let c = config("max_label_names = 10001\nlabel_names = [\"team\", \"ab.test\"]");
        let keys: Vec<&str> = c.check().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["max_label_names", "label_names"]);
        assert!(config("max_label_names = 0\nlabel_names = []")
            .check()
            .is_empty());
        let err =
            decode::<ElasticApmRumConfig>(toml::from_str("path = \"/x\"").unwrap()).unwrap_err();
        assert_eq!(err.0, "path");
    }
}
