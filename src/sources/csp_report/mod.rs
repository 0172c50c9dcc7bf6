//! Browser reports → events. Two wire formats carry CSP violations — the
//! legacy `report-uri` body (`{"csp-report": {kebab-case keys}}`, one per
//! request) and the Reporting API array (`[{type, age, url, user_agent,
//! body}]`, camelCase bodies) — and both normalize to ONE `csp_violation`
//! shape (`schema::CSP`). Every other Reporting API type (deprecation,
//! network-error, ...) becomes a `report` event whose body is kept whole in
//! `report.body` (flattened, keys snake_cased), so browser-chosen keys never
//! grow the index mapping. A request is taken whole or refused whole.

use std::net::IpAddr;

use crate::event::Event;
use crate::sources::decode_error::DecodeError;

mod noise;
mod normalize;
mod report_uri;
mod reporting_api;
#[cfg(test)]
mod tests;

pub use noise::{NoiseRules, NOISE_SCHEMES};
pub use normalize::snake_case;
pub use report_uri::decode_report_uri;
pub use reporting_api::decode_reporting_api;

/// Which wire format a report came in; `csp.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    ReportUri,
    ReportingApi,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::ReportUri => "report-uri",
            Format::ReportingApi => "reporting-api",
        }
    }

    /// The key of a report's body in this format: `{"csp-report": {...}}`,
    /// `[{"type": ..., "body": {...}}]`.
    pub fn body_key(self) -> &'static str {
        match self {
            Format::ReportUri => "csp-report",
            Format::ReportingApi => "body",
        }
    }
}

/// Report types the Reporting API defines today. Metrics are labelled with
/// these names (anything else counts as `other`), so a browser cannot create
/// label values; the document keeps the type the browser sent.
pub const KNOWN_REPORT_TYPES: &[&str] = &[
    "csp-violation",
    "deprecation",
    "intervention",
    "crash",
    "network-error",
    "coep",
    "coop",
    "permissions-policy-violation",
    "document-policy-violation",
];

/// Index into `KNOWN_REPORT_TYPES`, or `KNOWN_REPORT_TYPES.len()` for `other`.
pub type ReportKind = usize;
pub const OTHER_KIND: ReportKind = KNOWN_REPORT_TYPES.len();
const CSP_KIND: ReportKind = 0;

fn kind_of(type_name: &str) -> ReportKind {
    KNOWN_REPORT_TYPES
        .iter()
        .position(|t| *t == type_name)
        .unwrap_or(OTHER_KIND)
}

/// Longest `type` kept as sent; it is a value, but an unbounded one is no use.
const MAX_TYPE_BYTES: usize = 64;

/// Limits on one request's reports.
#[derive(Debug, Clone)]
pub struct ReportLimits {
    /// Most reports one Reporting API array may carry (413 above).
    pub max_reports: usize,
    pub max_string_bytes: usize,
    pub max_depth: usize,
    /// Report times are clamped to [received − this, received].
    pub max_age_ms: i64,
    /// What `client.ip` keeps of the address.
    pub client_ip: crate::privacy::ClientIpMode,
}

/// What the request told us besides the body.
pub struct ReportFacts<'a> {
    pub received_at_ms: i64,
    pub client_ip: IpAddr,
    /// The request's `User-Agent`, used when a report names none.
    pub user_agent: Option<&'a str>,
}

/// One normalized report.
#[derive(Debug)]
pub struct Report {
    pub event: Event,
    pub kind: ReportKind,
    /// Marked `labels.csp_noise = true`; the source may drop it.
    pub noise: bool,
}

#[derive(Debug)]
pub struct Decoded {
    pub reports: Vec<Report>,
    /// The first report's page, for the access log.
    pub page_url: Option<String>,
}

fn invalid(message: impl Into<String>) -> DecodeError {
    DecodeError::invalid("invalid_report", message)
}

/// A CSP field: its `schema::CSP` key, its legacy (kebab-case) name, and its
/// Reporting API (camelCase) name.
struct CspKey {
    key: &'static str,
    legacy: &'static str,
    reporting_api: &'static str,
}

const fn k(key: &'static str, legacy: &'static str, reporting_api: &'static str) -> CspKey {
    CspKey {
        key,
        legacy,
        reporting_api,
    }
}

const CSP_KEYS: &[CspKey] = &[
    k("document_uri", "document-uri", "documentURL"),
    k("referrer", "referrer", "referrer"),
    k("blocked_uri", "blocked-uri", "blockedURL"),
    k(
        "effective_directive",
        "effective-directive",
        "effectiveDirective",
    ),
    // The Reporting API dropped it; filled from effective_directive below.
    k(
        "violated_directive",
        "violated-directive",
        "violatedDirective",
    ),
    k("original_policy", "original-policy", "originalPolicy"),
    k("disposition", "disposition", "disposition"),
    k("source_file", "source-file", "sourceFile"),
    k("line_number", "line-number", "lineNumber"),
    k("column_number", "column-number", "columnNumber"),
    k("status_code", "status-code", "statusCode"),
    k("sample", "script-sample", "sample"),
];

fn parse_utf8(body: &[u8]) -> Result<(), DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("empty body"));
    }
    // serde_json would refuse it too, but deep in a message; say it plainly.
    std::str::from_utf8(body)
        .map(|_| ())
        .map_err(|e| DecodeError::invalid("invalid_utf8", format!("body is not UTF-8: {e}")))
}
