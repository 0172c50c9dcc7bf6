//! An index name template: literal text with strftime conversions (server
//! time) and `{{ field }}` references to the few fields allowed, parsed once
//! and rendered per batch. Which values a field may take is decided by the
//! router (`index.rs`).

use chrono::{DateTime, Datelike, Timelike, Utc};

use std::sync::LazyLock;

use crate::event::FieldId;
use crate::schema::{self, EventType};

/// Longest value a free-form field (service name, environment) contributes.
pub const MAX_FIELD_VALUE_BYTES: usize = 32;
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

    /// The field's slot, resolved once (every document's index name reads it).
    pub fn id(self) -> FieldId {
        static IDS: LazyLock<[FieldId; 5]> =
            LazyLock::new(|| TemplateField::ALL.map(|f| FieldId::of(f.path())));
        IDS[self as usize]
    }

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

    pub(super) fn allowed_names() -> String {
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
pub(super) enum Part {
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
    pub(super) fn literal(text: String) -> IndexTemplate {
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

    pub(super) fn prepare(&self, now: &DateTime<Utc>) -> Vec<Part> {
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
pub(super) fn check_text(text: &str) -> Result<String, String> {
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

pub(super) fn render_time(text: &str, now: &DateTime<Utc>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn each_field_resolves_to_its_own_slot() {
        for field in TemplateField::ALL {
            assert_eq!(field.id(), FieldId::of(field.path()), "{field:?}");
        }
    }

    fn at() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 7, 23, 59, 58).unwrap()
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
