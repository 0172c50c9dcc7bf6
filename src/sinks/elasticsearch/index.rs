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

mod template;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use crate::event::Event;
use crate::schema::EventType;
use template::{check_text, Part};
pub use template::{
    sanitize, IndexTemplate, TemplateField, CSP_FORMAT_REPORTING_API, CSP_FORMAT_REPORT_URI,
    MAX_FIELD_VALUE_BYTES,
};

/// Elasticsearch refuses index names longer than this.
const MAX_INDEX_NAME_BYTES: usize = 255;

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

    /// For index templates: a pattern that starts with `*` (a name starting
    /// with a field or a date) matches every index of the cluster, so the
    /// template — mappings, and the ILM policy that deletes — would apply
    /// to other applications' indices too.
    pub fn check_patterns(&self) -> Result<(), String> {
        match self.patterns().into_iter().find(|p| p.starts_with('*')) {
            Some(pattern) => Err(format!(
                "the index template for these names would match `{pattern}`, i.e. every index of the cluster: start the name with literal text (e.g. `rum-`)"
            )),
            None => Ok(()),
        }
    }

    /// Renders every template with the fallback values and with each field
    /// at its longest (a listed value or the fallback, whichever is longer)
    /// and checks what Elasticsearch checks.
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
                            // Each field on its own may be a listed value or
                            // the fallback: the longest of either.
                            let pick = values
                                .into_iter()
                                .chain([self.fallback.clone()])
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
        let raw = event.get_id_str(field.id());
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
            Some(v) if self.allowed.get(&field).is_none_or(|set| set.contains(v)) => v,
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
                let name = match event
                    .get_id_str(TemplateField::RumType.id())
                    .and_then(EventType::parse)
                {
                    Some(EventType::CspViolation) => {
                        match event.get_id_str(TemplateField::CspFormat.id()) {
                            Some(CSP_FORMAT_REPORTING_API) => csp_reporting,
                            _ => csp_uri,
                        }
                    }
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

    /// Each field of a name takes its longest value or the fallback on its
    /// own: a name was checked with every field at its longest listed value
    /// and with every field at the fallback, never mixed, so a long name
    /// validated and then Elasticsearch refused every document whose
    /// service is listed and whose environment is not.
    #[test]
    fn names_are_checked_with_each_field_at_its_longest() {
        let template = format!(
            "{}-{{{{ service.name }}}}-{{{{ service.environment }}}}",
            "r".repeat(210)
        );
        let long_service = "s".repeat(32);
        let allowed = [
            ("service.name", &[long_service.as_str()][..]),
            ("service.environment", &["p"][..]),
        ];
        let allowed_values = allowed
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect();
        let options = |fallback| IndexOptions {
            template: Some(&template),
            prefix: "c.rum",
            data_stream: false,
            fallback,
            allowed_values: &allowed_values,
        };
        match IndexRouter::new(&options("sixteen_bytes_16")) {
            Ok(r) => {
                let event = Event::from(
                    json!({"service": {"name": long_service, "environment": "staging"}}),
                );
                let name = r.prepare(&at()).name(&event);
                panic!(
                    "accepted, and renders `{name}` ({} bytes): {:?}",
                    name.len(),
                    validate_name(&name)
                );
            }
            Err((key, message)) => {
                assert_eq!(key, "index");
                assert!(message.contains("longer than 255"), "{message}");
            }
        }
        // Short enough either way: accepted.
        assert!(IndexRouter::new(&options("other")).is_ok());
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
}
