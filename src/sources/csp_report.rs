//! Browser reports → events. Two wire formats carry CSP violations — the
//! legacy `report-uri` body (`{"csp-report": {kebab-case keys}}`, one per
//! request) and the Reporting API array (`[{type, age, url, user_agent,
//! body}]`, camelCase bodies) — and both normalize to ONE `csp_violation`
//! shape (`schema::CSP`). Every other Reporting API type (deprecation,
//! network-error, ...) becomes a `report` event whose body is kept whole in
//! `report.body` (flattened, keys snake_cased), so browser-chosen keys never
//! grow the index mapping. A request is taken whole or refused whole.

use std::cell::Cell;
use std::fmt;
use std::net::IpAddr;

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::beacon_decoder::set_url_fields;
use std::sync::Arc;

use crate::event::{Context, Event};
use crate::http::intake::{check_json_shape, check_json_shape_from, json_error, IntakeError};
use crate::schema::{self, EventType};

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

/// URI schemes of browser extensions and other things the site did not do.
pub const NOISE_SCHEMES: &[&str] = &[
    "chrome-extension",
    "moz-extension",
    "safari-extension",
    "safari-web-extension",
    "ms-browser-extension",
    "webkit-masked-url",
    "about",
];

/// Decides which violations are noise: caused by extensions or by software
/// that injects into every page (antivirus, translators), not by the site.
#[derive(Debug, Clone)]
pub struct NoiseRules {
    /// Lower-case host names; a host matches itself and its subdomains.
    hosts: Vec<String>,
}

impl NoiseRules {
    pub fn new(hosts: &[String]) -> Self {
        Self {
            hosts: hosts
                .iter()
                .map(|h| {
                    h.trim()
                        .trim_start_matches("*.")
                        .trim_end_matches('.')
                        .to_ascii_lowercase()
                })
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    /// Is a blocked or source URI noise? Browsers write non-HTTP sources as
    /// a bare scheme (`chrome-extension`) or a full URL; both are matched.
    pub fn is_noise(&self, uri: &str) -> bool {
        let scheme = uri
            .split(':')
            .next()
            .unwrap_or(uri)
            .trim()
            .to_ascii_lowercase();
        if NOISE_SCHEMES.contains(&scheme.as_str()) {
            return true;
        }
        if self.hosts.is_empty() {
            return false;
        }
        let Ok(url) = url::Url::parse(uri) else {
            return false;
        };
        let Some(host) = url.host_str() else {
            return false;
        };
        let host = host.to_ascii_lowercase();
        self.hosts.iter().any(|h| {
            host == *h
                || (host.len() > h.len()
                    && host.ends_with(h.as_str())
                    && host.as_bytes()[host.len() - h.len() - 1] == b'.')
        })
    }
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

fn invalid(message: impl Into<String>) -> IntakeError {
    IntakeError::bad_request("invalid_report", message)
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

fn parse_utf8(body: &[u8]) -> Result<(), IntakeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("empty body"));
    }
    // serde_json would refuse it too, but deep in a message; say it plainly.
    std::str::from_utf8(body)
        .map(|_| ())
        .map_err(|e| IntakeError::bad_request("invalid_utf8", format!("body is not UTF-8: {e}")))
}

/// `POST report-uri`: `{"csp-report": {...}}`, one violation.
pub fn decode_report_uri(
    body: &[u8],
    facts: &ReportFacts<'_>,
    limits: &ReportLimits,
    noise: &NoiseRules,
) -> Result<Decoded, IntakeError> {
    parse_utf8(body)?;
    let value: Value =
        serde_json::from_slice(body).map_err(|e| json_error(&e, limits.max_depth))?;
    check_json_shape(&value, limits.max_string_bytes, limits.max_depth)?;
    let Value::Object(mut wrapper) = value else {
        return Err(invalid(
            "a report-uri body is a JSON object `{\"csp-report\": {...}}`",
        ));
    };
    let report = match wrapper.remove("csp-report") {
        Some(Value::Object(report)) => report,
        Some(_) => return Err(invalid("`csp-report` must be an object")),
        None if wrapper.is_empty() => return Err(invalid("missing `csp-report`")),
        None => {
            return Err(invalid(
                "missing `csp-report` (Reporting API arrays go to the reporting-api path)",
            ))
        }
    };
    let mut event = base_event(facts, limits, facts.user_agent, facts.received_at_ms);
    let noisy = apply_csp(&mut event, report, Format::ReportUri, None, noise)?;
    let page_url = event.get_str(schema::URL_FULL).map(str::to_owned);
    // A report is its own context: enrichment sees it as it sees a beacon's.
    event.hoist_into_context();
    Ok(Decoded {
        reports: vec![Report {
            event,
            kind: CSP_KIND,
            noise: noisy,
        }],
        page_url,
    })
}

/// `POST reporting-api`: an array of reports of any type.
pub fn decode_reporting_api(
    body: &[u8],
    facts: &ReportFacts<'_>,
    limits: &ReportLimits,
    noise: &NoiseRules,
) -> Result<Decoded, IntakeError> {
    parse_utf8(body)?;
    let items = parse_bounded_array(body, limits)?;
    let mut checked = Vec::with_capacity(items.len());
    // Everything is checked before anything is built: a bad report refuses
    // the whole request, and nothing of it reaches the pipeline.
    for (i, item) in items.into_iter().enumerate() {
        // Depth 2: the array itself is level 1.
        check_json_shape_from(&item, 2, limits.max_string_bytes, limits.max_depth)?;
        checked.push(check_envelope(i, item)?);
    }
    let earliest = facts.received_at_ms.saturating_sub(limits.max_age_ms);
    let mut reports = Vec::with_capacity(checked.len());
    for envelope in checked {
        let at = match envelope.age_ms {
            Some(age) => facts
                .received_at_ms
                .saturating_sub(age)
                .clamp(earliest, facts.received_at_ms),
            None => facts.received_at_ms,
        };
        let user_agent = envelope.user_agent.as_deref().or(facts.user_agent);
        let mut event = base_event(facts, limits, user_agent, at);
        let kind = kind_of(&envelope.type_name);
        let noisy = if kind == CSP_KIND {
            apply_csp(
                &mut event,
                envelope.body,
                Format::ReportingApi,
                envelope.url.as_deref(),
                noise,
            )
            .map_err(|e| IntakeError {
                message: format!("report [{}]: {}", envelope.index, e.message),
                ..e
            })?
        } else {
            apply_other(
                &mut event,
                &envelope.type_name,
                envelope.body,
                envelope.url.as_deref(),
            );
            false
        };
        event.hoist_into_context();
        reports.push(Report {
            event,
            kind,
            noise: noisy,
        });
    }
    let page_url = reports
        .first()
        .and_then(|r| r.event.get_str(schema::URL_FULL))
        .map(str::to_owned);
    Ok(Decoded { reports, page_url })
}

/// Parses the top-level array, refusing it as soon as it holds more than
/// `max_reports` items: the rest of the body is never parsed.
fn parse_bounded_array(body: &[u8], limits: &ReportLimits) -> Result<Vec<Value>, IntakeError> {
    let overflow = Cell::new(false);
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed = BoundedArray {
        max: limits.max_reports,
        overflow: &overflow,
    }
    .deserialize(&mut de)
    .and_then(|items| de.end().map(|()| items));
    match parsed {
        Ok(items) => Ok(items),
        Err(_) if overflow.get() => Err(IntakeError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_reports",
            format!("more than max_reports_per_request ({}) reports in one request", limits.max_reports),
        )),
        Err(e) if e.is_data() && e.to_string().contains(EXPECTING_ARRAY) => Err(invalid(
            "a Reporting API body is a JSON array of reports (legacy `csp-report` objects go to the report-uri path)",
        )),
        Err(e) => Err(json_error(&e, limits.max_depth)),
    }
}

const EXPECTING_ARRAY: &str = "a JSON array of reports";

struct BoundedArray<'a> {
    max: usize,
    overflow: &'a Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for BoundedArray<'_> {
    type Value = Vec<Value>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BoundedArray<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(EXPECTING_ARRAY)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(self.max));
        while let Some(item) = seq.next_element::<Value>()? {
            if items.len() == self.max {
                self.overflow.set(true);
                return Err(A::Error::custom("too many reports"));
            }
            items.push(item);
        }
        Ok(items)
    }
}

/// A Reporting API report whose envelope has been checked.
struct Envelope {
    index: usize,
    type_name: String,
    age_ms: Option<i64>,
    url: Option<String>,
    user_agent: Option<String>,
    body: Map<String, Value>,
}

fn check_envelope(index: usize, item: Value) -> Result<Envelope, IntakeError> {
    let Value::Object(mut report) = item else {
        return Err(invalid(format!("report [{index}] is not an object")));
    };
    let type_name = match report.remove("type") {
        Some(Value::String(t)) if !t.is_empty() && t.len() <= MAX_TYPE_BYTES => t,
        Some(Value::String(_)) => {
            return Err(invalid(format!(
                "report [{index}].type must be 1 to {MAX_TYPE_BYTES} bytes"
            )))
        }
        Some(_) => return Err(invalid(format!("report [{index}].type must be a string"))),
        None => return Err(invalid(format!("report [{index}] has no `type`"))),
    };
    let body = match report.remove("body") {
        Some(Value::Object(body)) => body,
        Some(_) => return Err(invalid(format!("report [{index}].body must be an object"))),
        None => return Err(invalid(format!("report [{index}] has no `body`"))),
    };
    let age_ms = match report.remove("age") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64().map(|age| age as i64),
        Some(_) => {
            return Err(invalid(format!(
                "report [{index}].age must be milliseconds"
            )))
        }
    };
    let mut string = |key: &str| match report.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(invalid(format!("report [{index}].{key} must be a string"))),
    };
    let url = string("url")?;
    let user_agent = string("user_agent")?;
    Ok(Envelope {
        index,
        type_name,
        age_ms,
        url,
        user_agent,
        body,
    })
}

fn base_event(
    facts: &ReportFacts<'_>,
    limits: &ReportLimits,
    user_agent: Option<&str>,
    at_ms: i64,
) -> Event {
    let mut context = Context::new();
    context.set_client_address(facts.client_ip);
    let mut event = Event::with_context(Arc::new(context));
    event.set_timestamp_ms(at_ms);
    event.insert(schema::EVENT_KIND, "event");
    event.insert(schema::EVENT_INGESTED, facts.received_at_ms);
    if let Some(ip) = limits.client_ip.stored(facts.client_ip) {
        event.insert(schema::CLIENT_IP, ip);
    }
    if let Some(ua) = user_agent.filter(|ua| !ua.is_empty()) {
        event.insert(schema::USER_AGENT_ORIGINAL, ua);
    }
    event
}

/// Maps one violation (either format) onto `csp.*`. Browsers disagree on
/// "nothing": Firefox sends `null` where Chromium sends `""`; both mean the
/// field is absent. Keys the format does not define go to `rum.extra`.
/// Returns whether the violation is noise.
fn apply_csp(
    event: &mut Event,
    mut report: Map<String, Value>,
    format: Format,
    report_url: Option<&str>,
    noise: &NoiseRules,
) -> Result<bool, IntakeError> {
    let fields = EventType::CspViolation.payload_fields();
    let mut csp: Map<String, Value> = Map::new();
    for spec in CSP_KEYS {
        let name = match format {
            Format::ReportUri => spec.legacy,
            Format::ReportingApi => spec.reporting_api,
        };
        let Some(value) = report.remove(name) else {
            continue;
        };
        let ty = fields
            .iter()
            .find(|f| f.key == spec.key)
            .map(|f| f.field.ty)
            .unwrap_or(schema::FieldType::Keyword);
        match value {
            Value::Null => {}
            Value::String(s) if s.is_empty() => {}
            value if ty.accepts(&value) => {
                csp.insert(spec.key.to_owned(), value);
            }
            _ => {
                return Err(invalid(format!(
                    "`{name}` must be {}",
                    if ty == schema::FieldType::Long {
                        "an integer"
                    } else {
                        "a string"
                    }
                )))
            }
        }
    }
    if let Some(Value::String(d)) = csp.get_mut("disposition") {
        d.make_ascii_lowercase();
    }
    // Old browsers send only violated-directive, often as the whole
    // directive (`script-src 'self'`); new ones only effective-directive.
    // Both fields are always filled so one query finds every violation.
    match (
        csp.get("effective_directive").cloned(),
        csp.get("violated_directive").cloned(),
    ) {
        (Some(effective), None) => {
            csp.insert("violated_directive".to_owned(), effective);
        }
        (None, Some(Value::String(violated))) => {
            let name = violated
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            csp.insert("effective_directive".to_owned(), Value::String(name));
        }
        _ => {}
    }
    let document = csp
        .get("document_uri")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .or_else(|| report_url.map(str::to_owned));
    if let Some(document) = &document {
        csp.entry("document_uri")
            .or_insert_with(|| Value::String(document.clone()));
        set_url_fields(event, document);
    }
    let noisy = ["blocked_uri", "source_file"]
        .iter()
        .filter_map(|key| csp.get(*key).and_then(Value::as_str))
        .any(|uri| noise.is_noise(uri));
    csp.insert(
        "format".to_owned(),
        Value::String(format.as_str().to_owned()),
    );

    event.insert(schema::RUM_TYPE, EventType::CspViolation.as_str());
    event.insert(schema::EVENT_DATASET, EventType::CspViolation.dataset());
    for (key, value) in csp {
        if let Some(spec) = fields.iter().find(|f| f.key == key) {
            event.insert(spec.field.path, value);
        }
    }
    report.retain(|_, v| !v.is_null());
    if !report.is_empty() {
        event.insert(schema::RUM_EXTRA, Value::Object(report));
    }
    if noisy {
        event.insert(schema::LABEL_CSP_NOISE, true);
    }
    Ok(noisy)
}

/// Any other report type: `report.type` plus the body in `report.body`.
fn apply_other(event: &mut Event, type_name: &str, body: Map<String, Value>, url: Option<&str>) {
    event.insert(schema::RUM_TYPE, EventType::Report.as_str());
    event.insert(schema::EVENT_DATASET, EventType::Report.dataset());
    event.insert(schema::REPORT_TYPE, type_name);
    if let Some(url) = url {
        set_url_fields(event, url);
    }
    if let Value::Object(body) = snake_case_keys(Value::Object(body)) {
        if !body.is_empty() {
            event.insert(schema::REPORT_BODY, Value::Object(body));
        }
    }
}

/// Rewrites every object key to snake_case (`blockedURL` → `blocked_url`,
/// `anticipatedRemoval` → `anticipated_removal`), keeping only `[a-z0-9_]`,
/// so report bodies of every type read alike. Nulls are dropped.
fn snake_case_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (snake_case(&k), snake_case_keys(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(snake_case_keys).collect()),
        other => other,
    }
}

pub fn snake_case(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    let mut out = String::with_capacity(key.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).map(|p| chars[p]);
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() || p.is_ascii_digit() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    if out.is_empty() {
        out.push('_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    fn facts() -> ReportFacts<'static> {
        ReportFacts {
            received_at_ms: NOW,
            client_ip: "203.0.113.9".parse().unwrap(),
            user_agent: Some("Header-UA/1.0"),
        }
    }

    fn limits() -> ReportLimits {
        ReportLimits {
            max_reports: 3,
            max_string_bytes: 200,
            max_depth: 6,
            max_age_ms: 3_600_000,
            client_ip: crate::privacy::ClientIpMode::Full,
        }
    }

    fn noise() -> NoiseRules {
        NoiseRules::new(&["kaspersky-labs.com".to_owned()])
    }

    fn legacy(v: Value) -> Result<Decoded, IntakeError> {
        decode_report_uri(v.to_string().as_bytes(), &facts(), &limits(), &noise())
    }

    fn api(v: Value) -> Result<Decoded, IntakeError> {
        decode_reporting_api(v.to_string().as_bytes(), &facts(), &limits(), &noise())
    }

    fn csp_fields(event: &Event) -> Value {
        event.to_value().get("csp").cloned().unwrap_or(Value::Null)
    }

    #[test]
    fn both_formats_normalize_to_one_shape() {
        let old = legacy(json!({"csp-report": {
            "document-uri": "https://shop.example.com/p?q=1",
            "referrer": "",
            "violated-directive": "script-src-elem",
            "effective-directive": "script-src-elem",
            "original-policy": "script-src 'self'; report-uri /rum/report-uri",
            "disposition": "enforce",
            "blocked-uri": "https://evil.example.net/x.js",
            "line-number": 12,
            "column-number": 3,
            "source-file": "https://shop.example.com/app.js",
            "status-code": 200,
            "script-sample": ""
        }}))
        .unwrap();
        let new = api(json!([{
            "type": "csp-violation", "age": 10, "url": "https://shop.example.com/p?q=1",
            "user_agent": "Report-UA/2.0",
            "body": {
                "documentURL": "https://shop.example.com/p?q=1",
                "referrer": null,
                "effectiveDirective": "script-src-elem",
                "originalPolicy": "script-src 'self'; report-uri /rum/report-uri",
                "disposition": "enforce",
                "blockedURL": "https://evil.example.net/x.js",
                "lineNumber": 12, "columnNumber": 3,
                "sourceFile": "https://shop.example.com/app.js",
                "statusCode": 200, "sample": null
            }
        }]))
        .unwrap();
        let (old, new) = (&old.reports[0].event, &new.reports[0].event);
        let mut expected = csp_fields(old);
        expected["format"] = json!("reporting-api");
        assert_eq!(csp_fields(new), expected);
        assert_eq!(old.get_str("csp.format"), Some("report-uri"));
        assert_eq!(
            old.get_str("csp.violated_directive"),
            Some("script-src-elem")
        );
        assert_eq!(old.get("csp.line_number"), Some(&json!(12)));
        assert_eq!(old.get("csp.referrer"), None, "\"\" means absent");
        for e in [old, new] {
            assert_eq!(e.get_str("rum.type"), Some("csp_violation"));
            assert_eq!(e.get_str("event.dataset"), Some("rum.csp_violation"));
            assert_eq!(
                e.get_str("url.full"),
                Some("https://shop.example.com/p?q=1")
            );
            assert_eq!(e.get_str("url.domain"), Some("shop.example.com"));
            assert_eq!(e.get_str("client.ip"), Some("203.0.113.9"));
            assert_eq!(e.get(schema::LABEL_CSP_NOISE), None);
        }
        assert_eq!(old.get_str("user_agent.original"), Some("Header-UA/1.0"));
        assert_eq!(new.get_str("user_agent.original"), Some("Report-UA/2.0"));
        assert_eq!(old.timestamp_ms(), Some(NOW));
        assert_eq!(new.timestamp_ms(), Some(NOW - 10));
        assert_eq!(new.context().received_ms(), Some(NOW));
    }

    #[test]
    fn age_is_clamped_to_the_receive_window() {
        let decoded = api(json!([
            {"type": "deprecation", "age": -5000, "body": {}},
            {"type": "deprecation", "age": 1e12, "body": {}},
            {"type": "deprecation", "body": {}}
        ]))
        .unwrap();
        let times: Vec<i64> = decoded
            .reports
            .iter()
            .map(|r| r.event.timestamp_ms().unwrap())
            .collect();
        assert_eq!(times, [NOW, NOW - 3_600_000, NOW]);
    }

    #[test]
    fn other_types_keep_their_body_in_snake_case() {
        let decoded = api(json!([
            {"type": "deprecation", "url": "https://a.example/", "body": {
                "id": "Foo", "anticipatedRemoval": null, "lineNumber": 4, "message": "m",
                "sourceFile": "https://a.example/a.js"}},
            {"type": "network-error", "url": "https://a.example/img.png", "body": {
                "elapsed_time": 12, "phase": "dns", "type": "dns.name_not_resolved",
                "sampling_fraction": 1.0, "status_code": 0, "server_ip": ""}},
            {"type": "future-thing", "body": {"Weird Key.x": {"innerURLValue": 1}}}
        ]))
        .unwrap();
        let [dep, nel, future] = &decoded.reports[..] else {
            panic!()
        };
        assert_eq!(dep.event.get_str("rum.type"), Some("report"));
        assert_eq!(dep.event.get_str("event.dataset"), Some("rum.report"));
        assert_eq!(dep.event.get_str("report.type"), Some("deprecation"));
        assert_eq!(
            dep.event.get("report.body"),
            Some(
                &json!({"id": "Foo", "line_number": 4, "message": "m", "source_file": "https://a.example/a.js"})
            )
        );
        assert_eq!(dep.event.get_str("url.full"), Some("https://a.example/"));
        assert_eq!(
            nel.event.get_str("report.body.type"),
            Some("dns.name_not_resolved")
        );
        assert_eq!(nel.event.get_str("report.body.server_ip"), Some(""));
        assert_eq!(nel.kind, kind_of("network-error"));
        assert_eq!(future.kind, OTHER_KIND);
        assert_eq!(future.event.get_str("report.type"), Some("future-thing"));
        assert_eq!(
            future.event.get("report.body"),
            Some(&json!({"weird_key_x": {"inner_url_value": 1}}))
        );
        assert_eq!(decoded.page_url.as_deref(), Some("https://a.example/"));
    }

    #[test]
    fn snake_case_handles_acronyms_and_separators() {
        for (from, to) in [
            ("documentURL", "document_url"),
            ("blockedURL", "blocked_url"),
            ("URLList", "url_list"),
            ("lineNumber", "line_number"),
            ("sampling_fraction", "sampling_fraction"),
            ("effective-directive", "effective_directive"),
            ("a2B", "a2_b"),
            ("ÄÖ", "_"),
            ("__x__", "x"),
        ] {
            assert_eq!(snake_case(from), to, "{from}");
        }
    }

    #[test]
    fn noise_is_marked_not_dropped() {
        let cases = [
            ("chrome-extension", true),
            ("moz-extension://abc/content.js", true),
            ("safari-web-extension://x/y.js", true),
            ("webkit-masked-url://hidden/", true),
            ("about", true),
            ("about:blank", true),
            ("https://gc.kis.v2.scr.kaspersky-labs.com/x.js", true),
            ("https://kaspersky-labs.com/x.js", true),
            ("https://notkaspersky-labs.com/x.js", false),
            ("inline", false),
            ("eval", false),
            ("data", false),
            ("blob", false),
            ("https://cdn.example.com/app.js", false),
        ];
        for (blocked, expected) in cases {
            let decoded = legacy(json!({"csp-report": {"document-uri": "https://a.example/", "blocked-uri": blocked}})).unwrap();
            let report = &decoded.reports[0];
            assert_eq!(report.noise, expected, "{blocked}");
            assert_eq!(
                report.event.get(schema::LABEL_CSP_NOISE).is_some(),
                expected,
                "{blocked}"
            );
        }
        let decoded = api(json!([{"type": "csp-violation", "body": {
            "documentURL": "https://a.example/", "blockedURL": "inline",
            "sourceFile": "chrome-extension://abcdef/inject.js"}}]))
        .unwrap();
        assert!(
            decoded.reports[0].noise,
            "a source file in an extension is noise too"
        );
    }

    #[test]
    fn old_browsers_violated_directive_fills_effective() {
        let decoded = legacy(json!({"csp-report": {
            "document-uri": "https://a.example/", "violated-directive": "script-src 'self'",
            "blocked-uri": "eval", "disposition": "REPORT", "x-custom": 1, "y": null}}))
        .unwrap();
        let e = &decoded.reports[0].event;
        assert_eq!(e.get_str("csp.effective_directive"), Some("script-src"));
        assert_eq!(
            e.get_str("csp.violated_directive"),
            Some("script-src 'self'")
        );
        assert_eq!(e.get_str("csp.disposition"), Some("report"));
        assert_eq!(e.get("rum.extra"), Some(&json!({"x-custom": 1})));
    }

    #[test]
    fn csp_document_falls_back_to_the_report_url() {
        let decoded = api(json!([{"type": "csp-violation", "url": "https://a.example/page", "body": {"blockedURL": "data"}}])).unwrap();
        let e = &decoded.reports[0].event;
        assert_eq!(
            e.get_str("csp.document_uri"),
            Some("https://a.example/page")
        );
        assert_eq!(e.get_str("url.path"), Some("/page"));
    }

    #[test]
    fn malformed_bodies_are_refused_whole() {
        let cases: Vec<(Value, &str)> = vec![
            (json!({"csp-report": {}}), "invalid_report"),
            (json!("text"), "invalid_report"),
            (json!([1, 2]), "invalid_report"),
            (json!([{"type": "deprecation"}]), "invalid_report"),
            (
                json!([{"type": "deprecation", "body": null}]),
                "invalid_report",
            ),
            (
                json!([{"type": "deprecation", "body": []}]),
                "invalid_report",
            ),
            (json!([{"body": {}}]), "invalid_report"),
            (json!([{"type": 5, "body": {}}]), "invalid_report"),
            (json!([{"type": "", "body": {}}]), "invalid_report"),
            (
                json!([{"type": "x".repeat(65), "body": {}}]),
                "invalid_report",
            ),
            (
                json!([{"type": "deprecation", "age": "old", "body": {}}]),
                "invalid_report",
            ),
            (
                json!([{"type": "deprecation", "url": 7, "body": {}}]),
                "invalid_report",
            ),
            (
                json!([{"type": "deprecation", "user_agent": [], "body": {}}]),
                "invalid_report",
            ),
            // One bad report among good ones refuses the request.
            (
                json!([{"type": "deprecation", "body": {}}, {"type": "csp-violation", "body": {"lineNumber": "12"}}]),
                "invalid_report",
            ),
            (
                json!([{"type": "csp-violation", "body": {"blockedURL": 5}}]),
                "invalid_report",
            ),
            (
                json!([{"type": "a", "body": {"x": "y".repeat(201)}}]),
                "string_too_long",
            ),
            (
                json!([{"type": "a", "body": {"a": {"b": {"c": {"d": {"e": 1}}}}}}]),
                "too_deep",
            ),
            (
                json!(vec![json!({"type": "a", "body": {}}); 4]),
                "too_many_reports",
            ),
        ];
        for (body, error_type) in cases {
            let err = api(body.clone()).unwrap_err();
            assert_eq!(err.error_type, error_type, "{body}");
        }
        let legacy_cases: Vec<(Value, &str)> = vec![
            (json!([]), "invalid_report"),
            (json!({}), "invalid_report"),
            (json!({"csp-report": "x"}), "invalid_report"),
            (
                json!({"csp-report": {"line-number": "12"}}),
                "invalid_report",
            ),
            (
                json!({"csp-report": {"blocked-uri": {"a": 1}}}),
                "invalid_report",
            ),
            (
                json!({"csp-report": {"status-code": -1.5}}),
                "invalid_report",
            ),
            (
                json!({"csp-report": {"original-policy": "p".repeat(201)}}),
                "string_too_long",
            ),
        ];
        for (body, error_type) in legacy_cases {
            let err = legacy(body.clone()).unwrap_err();
            assert_eq!(err.error_type, error_type, "{body}");
        }
        for raw in [
            &b"[{\"type\":"[..],
            b"",
            b"  ",
            b"[] []",
            b"{\"csp-report\":{}} x",
        ] {
            let err = decode_reporting_api(raw, &facts(), &limits(), &noise()).unwrap_err();
            assert_eq!(
                err.status,
                http::StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
        let bad_utf8 = b"[{\"type\":\"deprecation\",\"body\":{\"m\":\"\xff\"}}]";
        assert_eq!(
            decode_reporting_api(bad_utf8, &facts(), &limits(), &noise())
                .unwrap_err()
                .error_type,
            "invalid_utf8"
        );
        assert_eq!(
            decode_report_uri(
                b"{\"csp-report\":{\"a\":\"\xc3\x28\"}}",
                &facts(),
                &limits(),
                &noise()
            )
            .unwrap_err()
            .error_type,
            "invalid_utf8"
        );
    }

    #[test]
    fn an_oversized_array_stops_parsing_at_the_limit() {
        // Valid up to the 4th item, garbage after: refused for its size,
        // which shows the garbage was never reached.
        let mut body = b"[{},{},{},{},".to_vec();
        body.extend_from_slice(b"not json at all");
        let err = decode_reporting_api(&body, &facts(), &limits(), &noise()).unwrap_err();
        assert_eq!(err.error_type, "too_many_reports");
        assert_eq!(err.status, http::StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn an_empty_array_is_no_reports() {
        let decoded = api(json!([])).unwrap();
        assert!(decoded.reports.is_empty());
    }
}
