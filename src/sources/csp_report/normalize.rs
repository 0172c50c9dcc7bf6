//! The one shape both formats normalize to: a `csp_violation` event under
//! `csp.*`, or a `report` event with its body flattened and snake_cased.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::noise::NoiseRules;
use super::{invalid, Format, ReportFacts, ReportLimits, CSP_KEYS};
use crate::event::{Context, Counted, Event};
use crate::schema::{self, EventType};
use crate::sources::decode_error::DecodeError;
use crate::url_parts::set_url_fields;

/// The fields every report has. `seq` is the report's place in its request
/// (`rum.seq`): identical reports of one array are distinct observations,
/// and it is what tells their documents (and `_id`s) apart.
pub(super) fn base_event(
    facts: &ReportFacts<'_>,
    limits: &ReportLimits,
    user_agent: Option<&str>,
    at_ms: i64,
    seq: usize,
) -> Event {
    let mut context = Context::new();
    context.set_client_address(facts.client_ip);
    let mut event = Event::with_context(Counted::new(context));
    event.set_timestamp_ms(at_ms);
    event.insert(schema::EVENT_KIND, "event");
    event.insert(schema::RUM_SEQ, seq as u64);
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
/// field is absent. Keys the format does not define go to `rum.extra` (see
/// `keep_extra`), with `outer`, what the report had beside its body.
/// Returns whether the violation is noise.
pub(super) fn apply_csp(
    event: &mut Event,
    mut report: Map<String, Value>,
    outer: Map<String, Value>,
    format: Format,
    report_url: Option<&str>,
    noise: &NoiseRules,
) -> Result<bool, DecodeError> {
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
    keep_extra(event, outer, report, format);
    if noisy {
        event.insert(schema::LABEL_CSP_NOISE, true);
    }
    Ok(noisy)
}

/// Any other report type: `report.type` plus the body in `report.body`;
/// `outer`, what the report had beside its body, in `rum.extra`.
pub(super) fn apply_other(
    event: &mut Event,
    type_name: &str,
    body: Map<String, Value>,
    outer: Map<String, Value>,
    url: Option<&str>,
) {
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
    keep_extra(event, outer, Map::new(), Format::ReportingApi);
}

/// Keeps what no field took in `rum.extra`: `outer`, the keys a report had
/// beside its body (the report-uri wrapper's, a Reporting API report's),
/// and `rest`, the body's. The body's are at the top, where a new CSP field
/// lands; when the report has keys of its own too, `rum.extra` takes the
/// report's shape instead, the body's under the body's key (`csp-report`,
/// `body`, which no outer key can be), so no name holds two values. Nulls
/// mean nothing, as in the fields.
fn keep_extra(
    event: &mut Event,
    mut outer: Map<String, Value>,
    mut rest: Map<String, Value>,
    format: Format,
) {
    outer.retain(|_, v| !v.is_null());
    rest.retain(|_, v| !v.is_null());
    let extra = match (outer.is_empty(), rest.is_empty()) {
        (true, true) => return,
        (true, false) => rest,
        (false, true) => outer,
        (false, false) => {
            outer.insert(format.body_key().to_owned(), Value::Object(rest));
            outer
        }
    };
    event.insert(schema::RUM_EXTRA, Value::Object(extra));
}

/// Rewrites every object key to snake_case (`blockedURL` → `blocked_url`,
/// `anticipatedRemoval` → `anticipated_removal`), keeping only `[a-z0-9_]`,
/// so report bodies of every type read alike. Nulls are dropped.
///
/// Two keys may make one name (`blocked_url` and `blockedURL`; `ä` and `ö`
/// both make `_`): a key already in snake_case keeps its name, and a key
/// whose name is taken stays as sent. Nothing is lost, and no kept key can
/// take a name: a key that snake_case changes is no key's snake_case.
fn snake_case_keys(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut taken: HashSet<String> = map
                .iter()
                .filter(|(k, v)| !v.is_null() && snake_case(k) == **k)
                .map(|(k, _)| k.clone())
                .collect();
            let mut out = Map::new();
            for (key, value) in map {
                if value.is_null() {
                    continue;
                }
                let snake = snake_case(&key);
                let name = if snake == key || taken.insert(snake.clone()) {
                    snake
                } else {
                    key
                };
                out.insert(name, snake_case_keys(value));
            }
            Value::Object(out)
        }
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
