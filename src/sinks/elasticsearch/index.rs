//! Index names. A template mixes literal text, strftime fields taken from the
//! **server's** clock at batch time, and `{{ field }}` references restricted
//! to an allowlist: every value a browser can influence is either one of a
//! known set (event types, CSP formats) or checked against values the
//! operator listed, so a forged beacon cannot create indices.
//!
//! Without an `index` template, events are routed like Canarytrace does:
//! beacons to `{prefix}.metrics-%Y.%m.%d`, CSP reports to
//! `{prefix}.csp.uri-…` (report-uri) or `{prefix}.csp.reporting-…`
//! (Reporting API). In data-stream mode the same names lose the date.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::event::Event;
use crate::schema::{self, EventType};

/// Longest value a free-form field (service name, environment) contributes.
pub const MAX_FIELD_VALUE_BYTES: usize = 32;
/// Elasticsearch refuses index names longer than this.
const MAX_INDEX_NAME_BYTES: usize = 255;
/// strftime conversions allowed in index names (all render as digits).
const TIME_SPECS: &str = "YymdHjGVUW";

/// `csp.format` values the CSP source writes.
pub const CSP_FORMAT_REPORT_URI: &str = "report-uri";
pub const CSP_FORMAT_REPORTING_API: &str = "reporting-api";

/// Event fields an index template may reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TemplateField {
    RumType,
    EventDataset,
    CspFormat,
    ServiceName,
    ServiceEnvironment,
}

impl TemplateField {
    pub const ALL: [TemplateField; 5] = [
        TemplateField::RumType,
        TemplateField::EventDataset,
        TemplateField::CspFormat,
        TemplateField::ServiceName,
        TemplateField::ServiceEnvironment,
    ];

    pub fn path(self) -> &'static str {
        match self {
            TemplateField::RumType => schema::RUM_TYPE,
            TemplateField::EventDataset => schema::EVENT_DATASET,
            TemplateField::CspFormat => "csp.format",
            TemplateField::ServiceName => schema::SERVICE_NAME,
            TemplateField::ServiceEnvironment => schema::SERVICE_ENVIRONMENT,
        }
    }

    pub fn parse(path: &str) -> Option<TemplateField> {
        Self::ALL.into_iter().find(|f| f.path() == path)
    }

    /// Values the field can take, or `None` when the browser chooses freely
    /// (such fields need `index_allowed_values`).
    pub fn known_values(self) -> Option<Vec<&'static str>> {
        match self {
            TemplateField::RumType => Some(EventType::ALL.iter().map(|t| t.as_str()).collect()),
            TemplateField::EventDataset => {
                Some(EventType::ALL.iter().map(|t| t.dataset()).collect())
            }
            TemplateField::CspFormat => Some(vec![CSP_FORMAT_REPORT_URI, CSP_FORMAT_REPORTING_API]),
            TemplateField::ServiceName | TemplateField::ServiceEnvironment => None,
        }
    }

    fn allowed_names() -> String {
        Self::ALL
            .iter()
            .map(|f| f.path())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Lower-cases and keeps `[a-z0-9_-]` (others become `_`), trims leading
/// `_`/`-` (Elasticsearch refuses them at the start of a name) and caps the
/// length. Returns `None` when nothing usable is left.
pub fn sanitize(value: &str) -> Option<String> {
    let mut out = String::with_capacity(value.len().min(MAX_FIELD_VALUE_BYTES));
    for c in value.chars() {
        if out.len() >= MAX_FIELD_VALUE_BYTES {
            break;
        }
        let c = c.to_ascii_lowercase();
        let keep = c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-';
        if out.is_empty() && (c == '_' || c == '-' || !keep) {
            continue;
        }
        out.push(if keep { c } else { '_' });
    }
    (!out.is_empty()).then_some(out)
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    /// Literal text; may hold strftime conversions.
    Text(String),
    Field(TemplateField),
}

/// A parsed `index` template.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexTemplate {
    parts: Vec<Part>,
}

impl IndexTemplate {
    pub fn parse(template: &str) -> Result<IndexTemplate, String> {
        let mut parts = Vec::new();
        let mut rest = template;
        while !rest.is_empty() {
            match rest.find("{{") {
                Some(start) => {
                    if start > 0 {
                        parts.push(Part::Text(check_text(&rest[..start])?));
                    }
                    let after = &rest[start + 2..];
                    let end = after.find("}}").ok_or("unterminated `{{` (missing `}}`)")?;
                    let name = after[..end].trim();
                    let field = TemplateField::parse(name).ok_or_else(|| {
                        format!(
                            "`{{{{ {name} }}}}` cannot be used in an index name (allowed: {})",
                            TemplateField::allowed_names()
                        )
                    })?;
                    parts.push(Part::Field(field));
                    rest = &after[end + 2..];
                }
                None => {
                    parts.push(Part::Text(check_text(rest)?));
                    rest = "";
                }
            }
        }
        if parts.is_empty() {
            return Err("an index name cannot be empty".into());
        }
        Ok(IndexTemplate { parts })
    }

    /// A template without `{{ }}`, e.g. `c.rum.metrics-%Y.%m.%d`.
    fn literal(text: String) -> IndexTemplate {
        IndexTemplate {
            parts: vec![Part::Text(text)],
        }
    }

    pub fn has_time(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Text(t) if t.contains('%')))
    }

    pub fn fields(&self) -> impl Iterator<Item = TemplateField> + '_ {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(f) => Some(*f),
            Part::Text(_) => None,
        })
    }

    /// The index pattern matching every name this template renders
    /// (`c.rum.metrics-*`), for index templates.
    pub fn pattern(&self) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Field(_) => out.push('*'),
                Part::Text(text) => {
                    let mut chars = text.chars();
                    while let Some(c) = chars.next() {
                        if c == '%' {
                            chars.next();
                            out.push('*');
                        } else {
                            out.push(c);
                        }
                    }
                }
            }
        }
        // `*.*.*` and `**` say nothing more than `*`.
        loop {
            let collapsed = out
                .replace("*.*", "*")
                .replace("*-*", "*")
                .replace("*_*", "*")
                .replace("**", "*");
            if collapsed == out {
                return out;
            }
            out = collapsed;
        }
    }

    fn prepare(&self, now: &DateTime<Utc>) -> Vec<Part> {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => Part::Text(render_time(t, now)),
                Part::Field(f) => Part::Field(*f),
            })
            .collect()
    }
}

/// Literal parts may only hold characters valid in an index name, plus
/// the allowed strftime conversions.
fn check_text(text: &str) -> Result<String, String> {
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => match chars.next() {
                Some(spec) if TIME_SPECS.contains(spec) => {}
                Some(spec) => {
                    return Err(format!(
                    "`%{spec}` is not allowed in an index name (use %Y %y %m %d %H %j %G %V %U %W)"
                ))
                }
                None => return Err("a `%` at the end of an index name".into()),
            },
            'a'..='z' | '0'..='9' | '.' | '-' | '_' | '+' => {}
            'A'..='Z' => return Err(format!("index names must be lower case (`{c}`)")),
            _ => return Err(format!("`{c}` is not allowed in an index name")),
        }
    }
    Ok(text.to_owned())
}

fn render_time(text: &str, now: &DateTime<Utc>) -> String {
    if !text.contains('%') {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        // `check_text` admitted only TIME_SPECS.
        let rendered = match chars.next() {
            Some('Y') => format!("{:04}", now.year()),
            Some('y') => format!("{:02}", now.year().rem_euclid(100)),
            Some('m') => format!("{:02}", now.month()),
            Some('d') => format!("{:02}", now.day()),
            Some('H') => format!("{:02}", now.hour()),
            Some('j') => format!("{:03}", now.ordinal()),
            Some('G') => format!("{:04}", now.iso_week().year()),
            Some('V') => format!("{:02}", now.iso_week().week()),
            Some('U') => now.format("%U").to_string(),
            Some('W') => now.format("%W").to_string(),
            _ => String::new(),
        };
        out.push_str(&rendered);
    }
    out
}

/// How names are chosen.
#[derive(Debug, Clone)]
enum Routing {
    /// One template for every event.
    Single(IndexTemplate),
    /// Canarytrace's split by event kind.
    ByKind {
        metrics: IndexTemplate,
        csp_uri: IndexTemplate,
        csp_reporting: IndexTemplate,
    },
}

/// Everything that decides an event's index, checked at config time.
#[derive(Debug, Clone)]
pub struct IndexRouter {
    routing: Routing,
    /// Used for a field that is missing or not allowed.
    fallback: String,
    /// Operator-listed values of free-form fields (already sanitized).
    allowed: BTreeMap<TemplateField, BTreeSet<String>>,
}

/// Options the router is built from (the sink config's index keys).
pub struct IndexOptions<'a> {
    pub template: Option<&'a str>,
    pub prefix: &'a str,
    pub data_stream: bool,
    pub fallback: &'a str,
    pub allowed_values: &'a BTreeMap<String, Vec<String>>,
}

impl IndexRouter {
    /// Checks the options; errors are `(key, message)` for the config report.
    pub fn new(options: &IndexOptions<'_>) -> Result<IndexRouter, (&'static str, String)> {
        let date = if options.data_stream { "" } else { "-%Y.%m.%d" };
        let routing = match options.template {
            Some(template) => {
                let parsed = IndexTemplate::parse(template).map_err(|e| ("index", e))?;
                if options.data_stream && parsed.has_time() {
                    return Err((
                        "index",
                        "a data stream rolls over by itself: remove the date (%…) from `index` in data_stream mode"
                            .into(),
                    ));
                }
                Routing::Single(parsed)
            }
            None => {
                check_text(options.prefix).map_err(|e| ("index_prefix", e))?;
                let name = |suffix: &str| {
                    IndexTemplate::literal(format!("{}.{suffix}{date}", options.prefix))
                };
                Routing::ByKind {
                    metrics: name("metrics"),
                    csp_uri: name("csp.uri"),
                    csp_reporting: name("csp.reporting"),
                }
            }
        };
        if sanitize(options.fallback).as_deref() != Some(options.fallback) {
            return Err((
                "index_fallback",
                format!(
                    "`{}` must be lower case letters, digits, `_` or `-`",
                    options.fallback
                ),
            ));
        }
        let mut allowed = BTreeMap::new();
        for (path, values) in options.allowed_values {
            let field = TemplateField::parse(path).ok_or_else(|| {
                (
                    "index_allowed_values",
                    format!(
                        "`{path}` is not a field index names can use (allowed: {})",
                        TemplateField::allowed_names()
                    ),
                )
            })?;
            let mut set = BTreeSet::new();
            for value in values {
                if sanitize(value).as_deref() != Some(value.as_str()) {
                    return Err((
                        "index_allowed_values",
                        format!(
                            "`{value}` (for {path}): allowed values must be lower case letters, digits, `_` or `-`, at most {MAX_FIELD_VALUE_BYTES} bytes"
                        ),
                    ));
                }
                set.insert(value.clone());
            }
            allowed.insert(field, set);
        }
        let router = IndexRouter {
            routing,
            fallback: options.fallback.to_owned(),
            allowed,
        };
        for field in router.templates().iter().flat_map(|t| t.fields()) {
            if field.known_values().is_none() && !router.allowed.contains_key(&field) {
                return Err((
                    "index",
                    format!(
                        "`{{{{ {0} }}}}` comes from the browser: list the values allowed in `index_allowed_values.\"{0}\"` (others are written as `{1}`), so a forged beacon cannot create indices",
                        field.path(),
                        router.fallback
                    ),
                ));
            }
        }
        router.check_names()?;
        Ok(router)
    }

    fn templates(&self) -> Vec<&IndexTemplate> {
        match &self.routing {
            Routing::Single(t) => vec![t],
            Routing::ByKind {
                metrics,
                csp_uri,
                csp_reporting,
            } => vec![metrics, csp_uri, csp_reporting],
        }
    }

    /// Index patterns covering every name this router writes.
    pub fn patterns(&self) -> Vec<String> {
        self.templates().iter().map(|t| t.pattern()).collect()
    }

    /// Renders every template with the longest and the fallback values and
    /// checks what Elasticsearch checks.
    fn check_names(&self) -> Result<(), (&'static str, String)> {
        let key = match self.routing {
            Routing::Single(_) => "index",
            Routing::ByKind { .. } => "index_prefix",
        };
        let now = Utc::now();
        for template in self.templates() {
            for longest in [false, true] {
                let mut name = String::new();
                for part in template.prepare(&now) {
                    match part {
                        Part::Text(t) => name.push_str(&t),
                        Part::Field(f) => {
                            let values: Vec<String> = match f.known_values() {
                                Some(v) => v.into_iter().map(str::to_owned).collect(),
                                None => self
                                    .allowed
                                    .get(&f)
                                    .map(|s| s.iter().cloned().collect())
                                    .unwrap_or_default(),
                            };
                            let pick = values
                                .into_iter()
                                .max_by_key(|v| v.len())
                                .filter(|_| longest);
                            name.push_str(pick.as_deref().unwrap_or(&self.fallback));
                        }
                    }
                }
                validate_name(&name).map_err(|e| (key, e))?;
            }
        }
        Ok(())
    }

    /// Renders the time parts once for a batch (server time, `now`).
    pub fn prepare(&self, now: &DateTime<Utc>) -> BatchIndex<'_> {
        let names = match &self.routing {
            Routing::Single(t) => PreparedRouting::Single(t.prepare(now)),
            Routing::ByKind {
                metrics,
                csp_uri,
                csp_reporting,
            } => {
                let text = |t: &IndexTemplate| match t.prepare(now).pop() {
                    Some(Part::Text(text)) => text,
                    _ => String::new(),
                };
                PreparedRouting::ByKind([text(metrics), text(csp_uri), text(csp_reporting)])
            }
        };
        BatchIndex {
            router: self,
            names,
        }
    }

    fn write_field(&self, field: TemplateField, event: &Event, out: &mut Vec<u8>) {
        let raw = event.get_str(field.path());
        let known: Option<&str> = match field {
            TemplateField::RumType => raw.and_then(EventType::parse).map(EventType::as_str),
            TemplateField::EventDataset => raw
                .and_then(|d| d.strip_prefix("rum."))
                .and_then(EventType::parse)
                .map(EventType::dataset),
            TemplateField::CspFormat => match raw {
                Some(CSP_FORMAT_REPORT_URI) => Some(CSP_FORMAT_REPORT_URI),
                Some(CSP_FORMAT_REPORTING_API) => Some(CSP_FORMAT_REPORTING_API),
                _ => None,
            },
            TemplateField::ServiceName | TemplateField::ServiceEnvironment => {
                let value = raw.and_then(sanitize);
                let allowed = self.allowed.get(&field);
                match (value, allowed) {
                    (Some(v), Some(set)) if set.contains(&v) => {
                        out.extend_from_slice(v.as_bytes());
                        return;
                    }
                    _ => None,
                }
            }
        };
        let value = match known {
            // A known value is still checked against an operator's list, if any.
            Some(v) if self.allowed.get(&field).map_or(true, |set| set.contains(v)) => v,
            _ => &self.fallback,
        };
        out.extend_from_slice(value.as_bytes());
    }
}

/// What Elasticsearch requires of an index (or data stream) name.
pub fn validate_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the index name is empty".into());
    }
    if name.len() > MAX_INDEX_NAME_BYTES {
        return Err(format!(
            "`{name}` is longer than {MAX_INDEX_NAME_BYTES} bytes"
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("`{name}` is not an index name"));
    }
    if name.starts_with(['-', '_', '+']) {
        return Err(format!(
            "`{name}`: index names cannot start with `-`, `_` or `+`"
        ));
    }
    if name.starts_with('.') {
        return Err(format!(
            "`{name}`: names starting with `.` are hidden or system indices"
        ));
    }
    if let Some(c) = name.chars().find(|c| {
        !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_' | '+'))
    }) {
        return Err(format!("`{name}`: `{c}` is not allowed in an index name"));
    }
    Ok(())
}

#[derive(Debug)]
enum PreparedRouting {
    Single(Vec<Part>),
    /// metrics, csp.uri, csp.reporting
    ByKind([String; 3]),
}

/// A router with the batch's time rendered in.
#[derive(Debug)]
pub struct BatchIndex<'a> {
    router: &'a IndexRouter,
    names: PreparedRouting,
}

impl BatchIndex<'_> {
    /// Appends the event's index name. Every byte written is one of
    /// `[a-z0-9._+-]`, so it needs no JSON escaping.
    pub fn write(&self, event: &Event, out: &mut Vec<u8>) {
        match &self.names {
            PreparedRouting::ByKind([metrics, csp_uri, csp_reporting]) => {
                let name = match event.get_str(schema::RUM_TYPE).and_then(EventType::parse) {
                    Some(EventType::CspViolation) => match event.get_str("csp.format") {
                        Some(CSP_FORMAT_REPORTING_API) => csp_reporting,
                        _ => csp_uri,
                    },
                    // Other Reporting API reports arrive with the CSP ones.
                    Some(EventType::Report) => csp_reporting,
                    _ => metrics,
                };
                out.extend_from_slice(name.as_bytes());
            }
            PreparedRouting::Single(parts) => {
                for part in parts {
                    match part {
                        Part::Text(t) => out.extend_from_slice(t.as_bytes()),
                        Part::Field(f) => self.router.write_field(*f, event, out),
                    }
                }
            }
        }
    }

    pub fn name(&self, event: &Event) -> String {
        let mut out = Vec::new();
        self.write(event, &mut out);
        String::from_utf8_lossy(&out).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use serde_json::json;

    fn router(
        template: Option<&str>,
        data_stream: bool,
        allowed: &[(&str, &[&str])],
    ) -> Result<IndexRouter, (&'static str, String)> {
        let allowed_values = allowed
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        IndexRouter::new(&IndexOptions {
            template,
            prefix: "c.rum",
            data_stream,
            fallback: "other",
            allowed_values: &allowed_values,
        })
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 7, 23, 59, 58).unwrap()
    }

    #[test]
    fn default_routing_follows_canarytrace() {
        let r = router(None, false, &[]).unwrap();
        let b = r.prepare(&at());
        let name = |v: serde_json::Value| b.name(&Event::from(v));
        assert_eq!(
            name(json!({"rum": {"type": "web_vital"}})),
            "c.rum.metrics-2026.03.07"
        );
        assert_eq!(
            name(json!({"rum": {"type": "nonsense"}})),
            "c.rum.metrics-2026.03.07"
        );
        assert_eq!(name(json!({})), "c.rum.metrics-2026.03.07");
        assert_eq!(
            name(json!({"rum": {"type": "csp_violation"}, "csp": {"format": "report-uri"}})),
            "c.rum.csp.uri-2026.03.07"
        );
        assert_eq!(
            name(json!({"rum": {"type": "csp_violation"}, "csp": {"format": "reporting-api"}})),
            "c.rum.csp.reporting-2026.03.07"
        );
        assert_eq!(
            name(json!({"rum": {"type": "report"}})),
            "c.rum.csp.reporting-2026.03.07"
        );
        assert_eq!(
            r.patterns(),
            [
                "c.rum.metrics-*",
                "c.rum.csp.uri-*",
                "c.rum.csp.reporting-*"
            ]
        );
    }

    #[test]
    fn data_stream_names_have_no_date() {
        let r = router(None, true, &[]).unwrap();
        let b = r.prepare(&at());
        assert_eq!(
            b.name(&Event::from(json!({"rum": {"type": "action"}}))),
            "c.rum.metrics"
        );
        assert_eq!(router(Some("rum-%Y"), true, &[]).unwrap_err().0, "index");
    }

    #[test]
    fn templated_fields_take_only_known_or_listed_values() {
        let r = router(
            Some("rum-{{ service.name }}-{{rum.type}}-%Y.%m"),
            false,
            &[("service.name", &["shop", "blog"])],
        )
        .unwrap();
        let b = r.prepare(&at());
        let name = |v: serde_json::Value| b.name(&Event::from(v));
        assert_eq!(
            name(json!({"service": {"name": "Shop"}, "rum": {"type": "error"}})),
            "rum-shop-error-2026.03"
        );
        // A forged type or service lands in the fallback, never in a new index.
        assert_eq!(
            name(json!({"service": {"name": "evil"}, "rum": {"type": "x"}})),
            "rum-other-other-2026.03"
        );
        assert_eq!(
            name(json!({"service": {"name": "../../_all"}, "rum": {"type": "DROP"}})),
            "rum-other-other-2026.03"
        );
        assert_eq!(name(json!({})), "rum-other-other-2026.03");
        assert_eq!(r.patterns(), ["rum-*"]);
    }

    #[test]
    fn free_form_fields_need_an_allowlist() {
        let (key, message) = router(Some("rum-{{ service.name }}"), false, &[]).unwrap_err();
        assert_eq!(key, "index");
        assert!(message.contains("index_allowed_values"), "{message}");
        let (_, message) = router(Some("rum-{{ url.full }}"), false, &[]).unwrap_err();
        assert!(message.contains("cannot be used"), "{message}");
        let (key, _) = router(
            Some("rum-{{ service.name }}"),
            false,
            &[("service.name", &["Shop"])],
        )
        .unwrap_err();
        assert_eq!(key, "index_allowed_values");
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in [
            "Rum-%Y",
            "rum %Y",
            "rum-%Z",
            "rum-%",
            "rum-{{ rum.type",
            "",
            "_rum",
            "rum/x",
            "rum\"x",
        ] {
            assert!(router(Some(bad), false, &[]).is_err(), "{bad:?}");
        }
        assert!(router(Some(&"a".repeat(300)), false, &[]).is_err());
    }

    #[test]
    fn sanitize_keeps_index_safe_characters() {
        assert_eq!(sanitize("My Shop!").as_deref(), Some("my_shop_"));
        assert_eq!(sanitize("__-x").as_deref(), Some("x"));
        assert_eq!(sanitize("ěšč").as_deref(), None);
        assert_eq!(
            sanitize(&"a".repeat(100)).map(|s| s.len()),
            Some(MAX_FIELD_VALUE_BYTES)
        );
    }

    #[test]
    fn time_specs_render_from_the_given_time() {
        assert_eq!(
            render_time("x-%Y%m%d%H-%j-%G.%V-%y", &at()),
            "x-2026030723-066-2026.10-26"
        );
    }
}
