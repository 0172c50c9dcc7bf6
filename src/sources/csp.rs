//! Source `csp`: browsers' Content-Security-Policy reports and every other
//! Reporting API report. `POST {report_uri_path}` takes the legacy
//! `report-uri` format (Firefox, Safari), `POST {reporting_api_path}` the
//! Reporting API arrays (Chromium); `csp_report` normalizes both. Same
//! protections and answers as `rum_beacon`: CORS with preflight, body limits,
//! 204 once the events are downstream, 503 + `Retry-After` when full.

use serde::Deserialize;

use super::csp_report::{self, Format, NoiseRules, ReportFacts, ReportLimits, KNOWN_REPORT_TYPES};
use super::decode_error::DecodeError;
use super::http_source::{self, DecodePass, Decoded, Endpoint, HttpSource, MediaTypes};
use super::{check_json_limits, check_path, SourceContext};
use crate::config::CheckConfig;
use crate::http::intake::{Intake, IntakeRequest};
use crate::http::server::Route;
use crate::telemetry::Counter;

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
            problems.extend(check_path(key, path));
        }
        if self.report_uri && self.reporting_api && self.report_uri_path == self.reporting_api_path
        {
            problems.push((
                "reporting_api_path",
                "must differ from report_uri_path".to_owned(),
            ));
        }
        problems.extend(check_json_limits(
            &[
                ("max_reports_per_request", self.max_reports_per_request),
                ("max_string_bytes", self.max_string_bytes),
                ("max_json_depth", self.max_json_depth),
            ],
            self.max_json_depth,
        ));
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
        let metrics = &cx.metrics;
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
        let source = ReportSource {
            limits: ReportLimits {
                max_reports: self.max_reports_per_request,
                max_string_bytes: self.max_string_bytes,
                max_depth: self.max_json_depth,
                max_age_ms: super::age_secs_to_ms(self.max_report_age_secs),
                client_ip: cx.http.client_ip,
            },
            noise: NoiseRules::new(&self.noise_hosts),
            drop_noise: self.drop_noise,
            by_type,
            noise_seen: metrics.counter(
                "csp_noise_reports_total",
                "CSP violations caused by extensions or injectors (marked, or dropped with drop_noise).",
                &[],
            ),
        };
        let intake = Intake::new(
            cx.http.intake_options(),
            cx.metrics.clone(),
            "POST, OPTIONS",
        );
        let endpoints = [
            (self.report_uri, &self.report_uri_path, Format::ReportUri),
            (
                self.reporting_api,
                &self.reporting_api_path,
                Format::ReportingApi,
            ),
        ]
        .into_iter()
        .filter(|(enabled, _, _)| *enabled)
        .map(|(_, path, format)| Endpoint::exact(path, format))
        .collect();
        Ok(http_source::routes(cx, intake, source, endpoints))
    }
}

/// What both endpoints of one source share.
struct ReportSource {
    limits: ReportLimits,
    noise: NoiseRules,
    drop_noise: bool,
    /// `csp_reports_total{report_type}`, indexed like `KNOWN_REPORT_TYPES` + other.
    by_type: Vec<Counter>,
    noise_seen: Counter,
}

impl HttpSource for ReportSource {
    type Endpoint = Format;
    type Answer = ();

    fn allow(&self, _: Format) -> &'static str {
        "POST, OPTIONS"
    }

    // Browsers send application/csp-report (legacy) and
    // application/reports+json; tools and old browsers plain JSON or nothing.
    fn media_types(&self, format: Format) -> MediaTypes {
        match format {
            Format::ReportUri => MediaTypes {
                accepted: &["application/csp-report", "application/json"],
                names: "application/csp-report or application/json",
            },
            Format::ReportingApi => MediaTypes {
                accepted: &["application/reports+json", "application/json"],
                names: "application/reports+json or application/json",
            },
        }
    }

    fn decode(
        &self,
        format: Format,
        request: &IntakeRequest,
        received_at_ms: i64,
        pass: DecodePass,
    ) -> Result<Decoded<()>, DecodeError> {
        let user_agent = crate::http::intake::user_agent(&request.headers);
        let facts = ReportFacts {
            received_at_ms,
            client_ip: request.client_ip,
            user_agent: user_agent.as_deref(),
        };
        let decoded = match format {
            Format::ReportUri => {
                csp_report::decode_report_uri(&request.body, &facts, &self.limits, &self.noise)
            }
            Format::ReportingApi => {
                csp_report::decode_reporting_api(&request.body, &facts, &self.limits, &self.noise)
            }
        }?;
        let mut events = Vec::with_capacity(decoded.reports.len());
        let mut dropped = 0;
        for report in decoded.reports {
            if let Some(counter) = self.by_type.get(report.kind).filter(|_| pass.counts()) {
                counter.inc();
            }
            if report.noise {
                if pass.counts() {
                    self.noise_seen.inc();
                }
                if self.drop_noise {
                    dropped += 1;
                    continue;
                }
            }
            events.push(report.event);
        }
        Ok(Decoded {
            events,
            page_url: decoded.page_url,
            dropped,
            answer: (),
        })
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
