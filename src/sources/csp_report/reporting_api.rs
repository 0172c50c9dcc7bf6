//! The Reporting API wire format: an array of `{type, age, url, user_agent,
//! body}` reports of any type, camelCase bodies, refused whole past
//! `max_reports` without parsing the rest.

use std::cell::Cell;
use std::fmt;

use serde::de::{DeserializeSeed, Error as _, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::noise::NoiseRules;
use super::normalize::{apply_csp, apply_other, base_event};
use super::{
    invalid, kind_of, parse_utf8, Decoded, Format, Report, ReportFacts, ReportLimits, CSP_KIND,
    MAX_TYPE_BYTES,
};
use crate::schema;
use crate::sources::decode_error::{check_json_shape_from, json_error, DecodeError};
use crate::sources::json_scan::{replace_nul_keys, writes_nul};

/// `POST reporting-api`: an array of reports of any type.
pub fn decode_reporting_api(
    body: &[u8],
    facts: &ReportFacts<'_>,
    limits: &ReportLimits,
    noise: &NoiseRules,
) -> Result<Decoded, DecodeError> {
    parse_utf8(body)?;
    let items = parse_bounded_array(body, limits)?;
    let mut checked = Vec::with_capacity(items.len());
    // Searched once for all the reports.
    let nul = writes_nul(body);
    // Everything is checked before anything is built: a bad report refuses
    // the whole request, and nothing of it reaches the pipeline.
    for (i, mut item) in items.into_iter().enumerate() {
        // Depth 2: the array itself is level 1.
        check_json_shape_from(&item, 2, limits.max_string_bytes, limits.max_depth)?;
        if nul {
            replace_nul_keys(&mut item);
        }
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
        let mut event = base_event(facts, limits, user_agent, at, envelope.index);
        let kind = kind_of(&envelope.type_name);
        let noisy = if kind == CSP_KIND {
            apply_csp(
                &mut event,
                envelope.body,
                envelope.rest,
                Format::ReportingApi,
                envelope.url.as_deref(),
                noise,
            )
            .map_err(|e| DecodeError {
                message: format!("report [{}]: {}", envelope.index, e.message),
                ..e
            })?
        } else {
            apply_other(
                &mut event,
                &envelope.type_name,
                envelope.body,
                envelope.rest,
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
fn parse_bounded_array(body: &[u8], limits: &ReportLimits) -> Result<Vec<Value>, DecodeError> {
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
        Err(_) if overflow.get() => Err(DecodeError::too_large("too_many_reports",
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
    /// The report's other keys (none today's browsers send), for `rum.extra`.
    rest: Map<String, Value>,
}

fn check_envelope(index: usize, item: Value) -> Result<Envelope, DecodeError> {
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
    let body = match report.remove(Format::ReportingApi.body_key()) {
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
        rest: report,
    })
}
