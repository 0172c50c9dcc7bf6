//! Source `csp`: browsers' Content-Security-Policy reports and every other
//! Reporting API report. `POST {report_uri_path}` takes the legacy
//! `report-uri` format (Firefox, Safari), `POST {reporting_api_path}` the
//! Reporting API arrays (Chromium); `csp_report` normalizes both. Same
//! protections and answers as `rum_beacon`: CORS with preflight, body limits,
//! 204 once the events are downstream, 503 + `Retry-After` when full.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{header, HeaderValue, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::csp_report::{self, Format, NoiseRules, ReportFacts, ReportLimits, KNOWN_REPORT_TYPES};
use super::SourceContext;
use crate::config::CheckConfig;
use crate::http::intake::{media_type, Intake};
use crate::http::server::{ResponseFuture, Route, RouteHandler};
use crate::http::{access_log, text_response, HttpResponse};
use crate::telemetry::Counter;
use crate::topology::buffer::Fanout;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CspConfig {
    /// Serve the legacy `report-uri` endpoint.
    #[serde(default = "crate::config::default_true")]
    pub report_uri: bool,
    /// Path of the legacy endpoint (`Content-Security-Policy: ...; report-uri <this>`).
    #[serde(default = "default_report_uri_path")]
    pub report_uri_path: String,
    /// Serve the Reporting API endpoint.
    #[serde(default = "crate::config::default_true")]
    pub reporting_api: bool,
    /// Path of the Reporting API endpoint (`Reporting-Endpoints: csp="<this>"`).
    #[serde(default = "default_reporting_api_path")]
    pub reporting_api_path: String,
    /// Most reports one Reporting API request may carry (413 above).
    #[serde(default = "default_max_reports")]
    pub max_reports_per_request: usize,
    /// Longest string (value or key) in a report, in bytes (400 above).
    /// Policies are long, hence more than a beacon's default.
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
    /// Deepest JSON nesting accepted (400 above).
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// Report times (receive time − `age`) are clamped to at most this far back.
    #[serde(default = "default_max_report_age_secs")]
    pub max_report_age_secs: u64,
    /// Drop noise (extension and injector violations) instead of only
    /// marking it `labels.csp_noise = true`. Dropped reports are counted.
    #[serde(default)]
    pub drop_noise: bool,
    /// Hosts whose scripts are injected into pages by software on the
    /// visitor's machine (antivirus, translators). A host matches itself and
    /// its subdomains. Setting it replaces the default list.
    #[serde(default = "default_noise_hosts")]
    pub noise_hosts: Vec<String>,
}

fn default_report_uri_path() -> String {
    "/rum/report-uri".to_owned()
}
fn default_reporting_api_path() -> String {
    "/rum/reporting-api".to_owned()
}
fn default_max_reports() -> usize {
    100
}
fn default_max_string_bytes() -> usize {
    32 * 1024
}
fn default_max_json_depth() -> usize {
    16
}
fn default_max_report_age_secs() -> u64 {
    86_400
}
/// Injectors seen in CSP reports of many sites.
pub fn default_noise_hosts() -> Vec<String> {
    [
        "kaspersky-labs.com",
        "translate.googleapis.com",
        "translate.google.com",
    ]
    .map(str::to_owned)
    .to_vec()
}

impl CheckConfig for CspConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if !self.report_uri && !self.reporting_api {
            problems.push((
                "reporting_api",
                "report_uri and reporting_api are both off: the source would serve nothing"
                    .to_owned(),
            ));
        }
        for (key, path) in [
            ("report_uri_path", &self.report_uri_path),
            ("reporting_api_path", &self.reporting_api_path),
        ] {
            if !path.starts_with('/') {
                problems.push((key, format!("`{path}` must start with `/`")));
            }
        }
        if self.report_uri && self.reporting_api && self.report_uri_path == self.reporting_api_path
        {
            problems.push((
                "reporting_api_path",
                "must differ from report_uri_path".to_owned(),
            ));
        }
        for (key, value) in [
            ("max_reports_per_request", self.max_reports_per_request),
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
        for host in &self.noise_hosts {
            let bare = host.trim_start_matches("*.");
            if bare.is_empty() || bare.contains(['/', ':', ' ', '@']) {
                problems.push((
                    "noise_hosts",
                    format!("`{host}` is not a host name like `injector.example.com`"),
                ));
            }
        }
        problems
    }
}

impl CspConfig {
    pub fn build(&self, cx: SourceContext) -> anyhow::Result<Vec<Route>> {
        let metrics = cx.metrics.clone();
        let by_type = KNOWN_REPORT_TYPES
            .iter()
            .copied()
            .chain(["other"])
            .map(|t| {
                metrics.counter(
                    "csp_reports_total",
                    "Reports received by the csp source, by Reporting API type (`other` for types it does not know).",
                    &[("report_type", t)],
                )
            })
            .collect();
        let shared = Arc::new(Shared {
            intake: Intake::new(cx.http.clone(), cx.metrics, "POST, OPTIONS"),
            output: cx.output,
            limits: ReportLimits {
                max_reports: self.max_reports_per_request,
                max_string_bytes: self.max_string_bytes,
                max_depth: self.max_json_depth,
                max_age_ms: (self.max_report_age_secs as i64).saturating_mul(1000),
                client_ip: cx.http.client_ip,
            },
            noise: NoiseRules::new(&self.noise_hosts),
            drop_noise: self.drop_noise,
            send_timeout: Duration::from_millis(cx.http.send_timeout_ms),
            by_type,
            noise_seen: metrics.counter(
                "csp_noise_reports_total",
                "CSP violations caused by extensions or injectors (marked, or dropped with drop_noise).",
                &[],
            ),
        });
        let mut routes = Vec::new();
        for (enabled, path, format) in [
            (self.report_uri, &self.report_uri_path, Format::ReportUri),
            (
                self.reporting_api,
                &self.reporting_api_path,
                Format::ReportingApi,
            ),
        ] {
            if enabled {
                routes.push(Route {
                    path: path.clone(),
                    source_id: cx.id.clone(),
                    handler: Arc::new(ReportHandler {
                        shared: shared.clone(),
                        format,
                        path: path.clone(),
                    }),
                });
            }
        }
        Ok(routes)
    }
}

/// What both routes of one source share.
struct Shared {
    intake: Intake,
    output: Fanout,
    limits: ReportLimits,
    noise: NoiseRules,
    drop_noise: bool,
    send_timeout: Duration,
    /// `csp_reports_total{report_type}`, indexed like `KNOWN_REPORT_TYPES` + other.
    by_type: Vec<Counter>,
    noise_seen: Counter,
}

struct ReportHandler {
    shared: Arc<Shared>,
    format: Format,
    path: String,
}

impl RouteHandler for ReportHandler {
    fn handle(self: Arc<Self>, request: Request<Incoming>, peer: SocketAddr) -> ResponseFuture {
        Box::pin(async move {
            match *request.method() {
                Method::POST => self.receive(request, peer).await,
                Method::OPTIONS => self.shared.intake.preflight(request.headers()),
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

impl ReportHandler {
    async fn receive(&self, request: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
        let shared = &*self.shared;
        let intake = &shared.intake;
        // Browsers send application/csp-report (legacy) and
        // application/reports+json; tools and old browsers plain JSON or nothing.
        let (accepted_types, names): (&[&str], &str) = match self.format {
            Format::ReportUri => (
                &["application/csp-report", "application/json"],
                "application/csp-report or application/json",
            ),
            Format::ReportingApi => (
                &["application/reports+json", "application/json"],
                "application/reports+json or application/json",
            ),
        };
        if let Some(other) =
            media_type(request.headers()).filter(|t| !accepted_types.contains(&t.as_str()))
        {
            return intake.refuse_media_type(request.headers(), &other, names);
        }
        let accepted = match intake.accept(request, peer.ip()).await {
            Ok(accepted) => accepted,
            Err((error, origin)) => return intake.error_response(&error, origin),
        };
        let metrics = intake.metrics();
        metrics.received_bytes.add(accepted.wire_bytes as u64);
        let facts = ReportFacts {
            received_at_ms: chrono::Utc::now().timestamp_millis(),
            client_ip: accepted.client_ip,
            user_agent: accepted
                .headers
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok()),
        };
        let decoded = match self.format {
            Format::ReportUri => {
                csp_report::decode_report_uri(&accepted.body, &facts, &shared.limits, &shared.noise)
            }
            Format::ReportingApi => csp_report::decode_reporting_api(
                &accepted.body,
                &facts,
                &shared.limits,
                &shared.noise,
            ),
        };
        let decoded = match decoded {
            Ok(decoded) => decoded,
            Err(error) => return intake.error_response(&error, accepted.allow_origin),
        };
        if intake.options().access_log {
            access_log::log(
                "POST",
                &self.path,
                decoded.page_url.as_deref(),
                accepted.wire_bytes,
            );
        }
        metrics.received_events.add(decoded.reports.len() as u64);
        let mut events = Vec::with_capacity(decoded.reports.len());
        let mut dropped = 0;
        for report in decoded.reports {
            if let Some(counter) = shared.by_type.get(report.kind) {
                counter.inc();
            }
            if report.noise {
                shared.noise_seen.inc();
                if shared.drop_noise {
                    dropped += 1;
                    continue;
                }
            }
            events.push(report.event);
        }
        metrics.discarded_intentional.add(dropped);
        intake
            .deliver(
                &shared.output,
                events,
                shared.send_timeout,
                accepted.allow_origin,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::decode;

    fn config(toml_text: &str) -> CspConfig {
        decode(toml::from_str(toml_text).unwrap()).unwrap()
    }

    #[test]
    fn defaults_serve_both_paths() {
        let c = config("");
        assert!(c.check().is_empty(), "{:?}", c.check());
        assert_eq!(
            (c.report_uri_path.as_str(), c.reporting_api_path.as_str()),
            ("/rum/report-uri", "/rum/reporting-api")
        );
        assert!(!c.drop_noise);
        assert_eq!(c.noise_hosts, default_noise_hosts());
    }

    #[test]
    fn bad_values_are_named() {
        let c = config(
            r#"report_uri_path = "x"
               reporting_api_path = "x"
               max_reports_per_request = 0
               noise_hosts = ["https://a.example/"]"#,
        );
        let keys: Vec<&str> = c.check().into_iter().map(|(k, _)| k).collect();
        for key in [
            "report_uri_path",
            "reporting_api_path",
            "max_reports_per_request",
            "noise_hosts",
        ] {
            assert!(keys.contains(&key), "{key} in {keys:?}");
        }
        let off = config("report_uri = false\nreporting_api = false");
        assert_eq!(off.check().len(), 1);
        let err = decode::<CspConfig>(toml::from_str("path = \"/x\"").unwrap()).unwrap_err();
        assert_eq!(err.0, "path");
    }
}
