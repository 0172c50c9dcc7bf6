//! Sink `prometheus`: RUM metrics made from events — web-vital histograms
//! whose buckets include Google's thresholds and every budget, and counters
//! of page views, sessions, sessions with a JS error, errors and CSP
//! violations — served for Prometheus to scrape, plus the budgets and SLOs
//! that `rum-pipeline rules` turns into recording and alerting rules.
//!
//! Layout: `config` holds the options and their checks; this file the build
//! step and `observe`, the only code that reads events; `series` keeps and
//! renders the metrics, `vitals` knows the web vitals, `rules` writes the
//! rule file.

pub mod config;
pub mod rules;
pub mod series;
pub mod vitals;

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::Value;

use super::{BuiltSink, SinkContext, SinkRoute};
use crate::event::{Event, FieldPath, FieldRead};
use crate::http::connection::BodyHandles;
use crate::http::server::{ResponseFuture, Route, RouteHandler};
use crate::http::{scrape_gate, text_response};
use crate::schema::{self, EventType};
use crate::telemetry::Counter;
use crate::topology::buffer::DEFAULT_OUTPUT;
pub use config::{
    Budget, Dimension, PrometheusConfig, Resolved, ResolvedBudget, ResolvedSli, ResolvedSlo,
    RulesOptions, SliKind, Slo,
};
use series::{Kind, Observation, RumMetrics, Settings};
use vitals::Vital;

impl PrometheusConfig {
    pub fn build(&self, cx: SinkContext) -> anyhow::Result<BuiltSink> {
        let resolved = self.resolve().map_err(|errors| {
            let shown: Vec<String> = errors.iter().map(|(k, m)| format!("{k}: {m}")).collect();
            anyhow::anyhow!("{}", shown.join("; "))
        })?;
        let fields = EventFields::new(&resolved.dimensions, self.exclude_synthetic)?;
        let grouped: BTreeSet<&String> = resolved
            .budgets
            .iter()
            .flat_map(|b| &b.by)
            .chain(resolved.slos.iter().flat_map(|s| &s.by))
            .collect();
        let metrics = Arc::new(Mutex::new(RumMetrics::new(Settings {
            labels: resolved
                .dimensions
                .iter()
                .map(|d| d.label.clone())
                .collect(),
            keep_on_fold: resolved
                .dimensions
                .iter()
                .map(|d| grouped.contains(&d.label))
                .collect(),
            max_series: self.max_series,
            max_sessions: self.max_sessions,
            session_timeout_secs: self.session_timeout_secs,
            buckets: resolved.buckets,
        })));
        let route = SinkRoute {
            address: self.address,
            route: Route {
                path: self.path.clone(),
                source_id: cx.id.clone(),
                handler: Arc::new(MetricsHandler {
                    metrics: metrics.clone(),
                }),
            },
        };
        let SinkContext {
            metrics: component,
            mut input,
            ..
        } = cx;
        let sent = component.sent_events(DEFAULT_OUTPUT);
        let cardinality = component.errors("cardinality_limit", "processing");
        let started = Instant::now();
        let run = Box::pin(async move {
            while let Some(batch) = input.recv().await {
                let n = batch.len() as u64;
                component.received_events.add(n);
                // Should recording panic (a bug), the batch is counted as
                // discarded, as the panic's log line says.
                let mut held = Held {
                    events: n,
                    discarded: &component.discarded_unintentional,
                };
                let now = started.elapsed().as_secs();
                let mut folded = 0;
                let mut skipped = 0;
                {
                    let mut metrics = metrics.lock().unwrap_or_else(|e| e.into_inner());
                    for event in &batch {
                        match observe(event, &fields) {
                            Some(observation) => folded += metrics.record(&observation, now),
                            None => skipped += 1,
                        }
                    }
                }
                held.events = 0;
                // Events that feed no metric (synthetic, unknown vitals) are
                // still "handled": the sink's job for them is done.
                sent.add(n - skipped);
                component.discarded_intentional.add(skipped);
                if folded > 0 {
                    cardinality.add(folded);
                }
            }
        });
        Ok(BuiltSink {
            run,
            route: Some(route),
        })
    }
}

/// A batch taken in and not yet counted as sent or discarded: dropped
/// while it still holds events (the task unwinding from a panic), it
/// counts them as discarded.
struct Held<'a> {
    events: u64,
    discarded: &'a Counter,
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.events > 0 {
            self.discarded.add(self.events);
        }
    }
}

/// The event fields `observe` reads, looked up once from the schema.
pub struct EventFields {
    /// `None` for a path no event can hold (it reads as empty).
    dimensions: Vec<Option<FieldPath>>,
    exclude_synthetic: bool,
    rum_type: FieldPath,
    session: FieldPath,
    synthetic: FieldPath,
    vital_name: FieldPath,
    vital_value: FieldPath,
    error_count: FieldPath,
    csp_effective_directive: FieldPath,
    csp_violated_directive: FieldPath,
}

/// A payload field's slot, from the schema's table.
fn payload_path(event_type: EventType, key: &str) -> anyhow::Result<FieldPath> {
    event_type
        .payload_fields()
        .iter()
        .find(|p| p.key == key)
        .and_then(|p| FieldPath::resolve(p.field.path))
        .ok_or_else(|| anyhow::anyhow!("the schema has no `{key}` for {}", event_type.as_str()))
}

fn schema_path(path: &str) -> anyhow::Result<FieldPath> {
    FieldPath::resolve(path).ok_or_else(|| anyhow::anyhow!("`{path}` is no event field"))
}

impl EventFields {
    pub fn new(dimensions: &[Dimension], exclude_synthetic: bool) -> anyhow::Result<Self> {
        Ok(Self {
            dimensions: dimensions
                .iter()
                .map(|d| FieldPath::resolve(&d.path))
                .collect(),
            exclude_synthetic,
            rum_type: schema_path(schema::RUM_TYPE)?,
            session: schema_path(schema::SESSION_ID)?,
            synthetic: schema_path(schema::LABELS_SYNTHETIC)?,
            vital_name: payload_path(EventType::WebVital, "name")?,
            vital_value: payload_path(EventType::WebVital, "value")?,
            error_count: payload_path(EventType::Error, "count")?,
            csp_effective_directive: payload_path(EventType::CspViolation, "effective_directive")?,
            csp_violated_directive: payload_path(EventType::CspViolation, "violated_directive")?,
        })
    }
}

/// The largest vital value observed, in the event unit (ms, or the CLS
/// score): 31 years of milliseconds, far past any measurement. A value is the
/// browser's (any finite double), and a few near 1e308 made a series' `_sum`
/// +Inf for as long as the process ran; under this bound no count of
/// observations a `u64` holds can.
const MAX_VITAL_VALUE: f64 = 1e12;

/// Everything the sink reads from an event: what it contributes to the
/// metrics, or None when it contributes nothing (synthetic traffic, a vital
/// this sink does not know, a value that is not a number).
pub fn observe<'a>(event: &'a Event, fields: &EventFields) -> Option<Observation<'a>> {
    // Read in place: a request's strings (`service.name`, `url.domain`,
    // `session.id`) are never made values here.
    let get = |path: &FieldPath| event.read_field(path);
    let get_str = |path: &FieldPath| get(path).and_then(FieldRead::as_str);
    if fields.exclude_synthetic
        && get(&fields.synthetic) == Some(FieldRead::Value(&Value::Bool(true)))
    {
        return None;
    }
    let kind = match EventType::parse(get_str(&fields.rum_type)?)? {
        EventType::PageView => Kind::PageView,
        EventType::WebVital => {
            let vital = Vital::parse(get_str(&fields.vital_name)?)?;
            let value = get(&fields.vital_value)?.as_f64()?;
            if !(value.is_finite() && (0.0..=MAX_VITAL_VALUE).contains(&value)) {
                return None;
            }
            Kind::Vital(vital, value)
        }
        EventType::Error => Kind::Error {
            count: get(&fields.error_count)
                .and_then(FieldRead::as_u64)
                .unwrap_or(1),
        },
        EventType::CspViolation => Kind::CspViolation {
            directive: csp_directive(
                get_str(&fields.csp_effective_directive)
                    .or_else(|| get_str(&fields.csp_violated_directive))
                    .unwrap_or(""),
            ),
        },
        _ => Kind::Other,
    };
    let dims = fields
        .dimensions
        .iter()
        .map(|path| match path.as_ref().and_then(get) {
            Some(FieldRead::Str(s)) => Cow::Borrowed(s),
            Some(FieldRead::Value(Value::Number(n))) => Cow::Owned(n.to_string()),
            Some(read @ FieldRead::Number(_)) => {
                Cow::Owned(read.as_number().map_or_else(String::new, |n| n.to_string()))
            }
            Some(FieldRead::Value(Value::Bool(b))) => {
                Cow::Borrowed(if *b { "true" } else { "false" })
            }
            _ => Cow::Borrowed(""),
        })
        .collect();
    Some(Observation {
        dims,
        session: get_str(&fields.session),
        kind,
    })
}

/// CSP directives (CSP Level 3); a report's directive becomes the label only
/// when it is one of them, so forged reports cannot grow the series.
const CSP_DIRECTIVES: &[&str] = &[
    "base-uri",
    "child-src",
    "connect-src",
    "default-src",
    "fenced-frame-src",
    "font-src",
    "form-action",
    "frame-ancestors",
    "frame-src",
    "img-src",
    "manifest-src",
    "media-src",
    "object-src",
    "prefetch-src",
    "report-to",
    "require-trusted-types-for",
    "sandbox",
    "script-src",
    "script-src-attr",
    "script-src-elem",
    "style-src",
    "style-src-attr",
    "style-src-elem",
    "trusted-types",
    "upgrade-insecure-requests",
    "worker-src",
];

/// `script-src 'self'` (old browsers send the whole violated directive) -> `script-src`.
fn csp_directive(raw: &str) -> &'static str {
    let name = raw.split_whitespace().next().unwrap_or("");
    CSP_DIRECTIVES
        .iter()
        .find(|d| d.eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or("other")
}

/// Serves the metrics (GET/HEAD) on the sink's path.
struct MetricsHandler {
    metrics: Arc<Mutex<RumMetrics>>,
}

impl RouteHandler for MetricsHandler {
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        _: BodyHandles,
    ) -> ResponseFuture<'_> {
        Box::pin(async move {
            if request.method() != Method::GET && request.method() != Method::HEAD {
                let mut response =
                    text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return response;
            }
            scrape_gate::metrics_page(peer, || {
                self.metrics
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .render()
            })
        })
    }
}

/// Metric names the sink exports, for the dashboard and deployment checks.
pub fn metric_names() -> BTreeSet<&'static str> {
    let mut names: BTreeSet<&'static str> = [
        series::PAGE_VIEWS,
        series::SESSIONS,
        series::SESSIONS_WITH_ERROR,
        series::ERRORS,
        series::CSP_VIOLATIONS,
    ]
    .into();
    names.extend(Vital::ALL.map(Vital::metric));
    names
}

#[cfg(test)]
mod tests;
