//! Elastic's `@elastic/apm-rum` agent, as it posts to APM Server's RUM
//! intake: NDJSON, `metadata` first, then `transaction` (with its spans and
//! breakdown nested in v3, as lines of their own in v2), `span`, `error` and
//! `metricset` lines. v3 abbreviates every key; `v3` expands them so one
//! mapping serves both versions. Each line is parsed with the same depth and
//! string limits as a beacon; a bad line is reported and counted and the
//! good ones are kept, as APM Server does. The mapping is in `docs/sdk.md`.

mod events;
mod v3;

use std::net::IpAddr;

use serde::de::DeserializeSeed;
use serde_json::Value;

use super::beacon_decoder::{body_text, Bounded, Limits};
use crate::event::Event;
use crate::http::intake::{json_error, IntakeError};
use crate::privacy::ClientIpMode;

/// The intake API version, from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiVersion {
    V2,
    V3,
}

/// Limits on one request.
#[derive(Debug, Clone)]
pub struct ApmLimits {
    /// Most events one request may make (413 above): a v3 transaction makes
    /// one per span besides its own.
    pub max_events: usize,
    /// Longest NDJSON line (APM Server's `max_event_size`); a longer line is
    /// refused alone.
    pub max_event_bytes: usize,
    pub max_string_bytes: usize,
    pub max_depth: usize,
    /// Keep breakdown metricsets as `custom` events instead of dropping them
    /// (counted).
    pub keep_breakdown: bool,
    /// What `client.ip` keeps of the address (the source's `client_ip`).
    pub client_ip: ClientIpMode,
}

/// What the request told us besides the body.
pub struct RequestFacts<'a> {
    pub received_at_ms: i64,
    pub client_ip: IpAddr,
    pub user_agent: Option<&'a str>,
    pub version: ApiVersion,
}

/// A line refused on its own; the others are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct LineError {
    /// The `error_type` it is counted under.
    pub error_type: &'static str,
    pub message: String,
    /// The start of the line, as APM Server quotes it.
    pub document: String,
}

#[derive(Debug)]
pub struct Decoded {
    pub events: Vec<Event>,
    /// The first page URL of the request, for the access log.
    pub page_url: Option<String>,
    /// Event lines taken (APM Server's `accepted`).
    pub accepted: usize,
    pub errors: Vec<LineError>,
    /// Lines of a kind the agent does not send (kept as `custom`).
    pub unknown_kinds: usize,
    /// Breakdown metricsets dropped (`keep_breakdown = false`).
    pub dropped_breakdowns: usize,
}

/// How much of a bad line an error quotes.
const DOCUMENT_QUOTE_BYTES: usize = 256;

fn bad_metadata(error_type: &'static str, message: impl Into<String>) -> IntakeError {
    IntakeError::bad_request(error_type, message)
}

fn empty_body(message: &'static str) -> IntakeError {
    bad_metadata("missing_metadata", message)
}

pub fn decode(
    body: &[u8],
    facts: &RequestFacts<'_>,
    limits: &ApmLimits,
) -> Result<Decoded, IntakeError> {
    let text = body_text(body, empty_body)?;
    let mut lines = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.trim().is_empty());
    let first = lines.next().ok_or_else(|| empty_body("empty body"))?;
    let metadata = match parse_line(first, facts.version, limits) {
        Ok(Line::Known("metadata", Value::Object(map))) => map,
        Ok(Line::Known("metadata", _)) => {
            return Err(bad_metadata(
                "invalid_metadata",
                "`metadata` must be an object",
            ))
        }
        Ok(_) => {
            return Err(bad_metadata(
                "missing_metadata",
                "the first line must be the `metadata` object (v3: `m`)",
            ))
        }
        Err(e) => {
            return Err(bad_metadata(
                "invalid_metadata",
                format!("metadata: {}", e.message),
            ))
        }
    };

    let mut items = Vec::new();
    let mut errors = Vec::new();
    for line in lines {
        match parse_line(line, facts.version, limits) {
            Ok(item) => items.push(item),
            Err(mut e) => {
                e.document = quote(line);
                errors.push(e);
            }
        }
    }
    let accepted = items.len();

    let mut builder = events::Builder::new(metadata, &items, facts, limits)?;
    for item in items {
        match item {
            Line::Known("transaction", Value::Object(tr)) => builder.transaction(tr)?,
            Line::Known("span", Value::Object(span)) => builder.span_line(span)?,
            Line::Known("error", Value::Object(error)) => builder.error(error)?,
            Line::Known("metricset", value) => builder.metricset(value)?,
            Line::Known(kind, value) => builder.unknown(kind, value)?,
            Line::Unknown(kind, value) => builder.unknown(&kind, value)?,
        }
    }
    Ok(Decoded {
        events: builder.events,
        page_url: builder.shared_url,
        accepted,
        errors,
        unknown_kinds: builder.unknown_kinds,
        dropped_breakdowns: builder.dropped_breakdowns,
    })
}

/// One parsed line: its kind (as v2 names it) and its object.
enum Line {
    Known(&'static str, Value),
    /// A kind the agent does not send (its name cut to 64 characters).
    Unknown(String, Value),
}

const KINDS: &[&str] = &["metadata", "transaction", "span", "error", "metricset"];

fn parse_line(line: &str, version: ApiVersion, limits: &ApmLimits) -> Result<Line, LineError> {
    let fail = |error_type, message: String| LineError {
        error_type,
        message,
        document: String::new(),
    };
    if line.len() > limits.max_event_bytes {
        return Err(fail(
            "event_too_large",
            format!(
                "event exceeded the permitted size ({} bytes, max_event_bytes)",
                limits.max_event_bytes
            ),
        ));
    }
    let checks = Limits::new(limits.max_string_bytes, limits.max_depth);
    let mut de = serde_json::Deserializer::from_str(line);
    let value = Bounded {
        limits: &checks,
        depth: 1,
    }
    .deserialize(&mut de)
    .and_then(|v| de.end().map(|()| v))
    .map_err(|e| {
        let error = checks
            .error()
            .unwrap_or_else(|| json_error(&e, limits.max_depth));
        fail(error.error_type, error.message)
    })?;
    let Value::Object(map) = value else {
        return Err(fail(
            "invalid_event",
            "a line must be an object with one key, the event kind".to_owned(),
        ));
    };
    if map.len() != 1 {
        return Err(fail(
            "invalid_event",
            format!(
                "a line must be an object with one key, the event kind (got {} keys)",
                map.len()
            ),
        ));
    }
    let Some((kind, body)) = map.into_iter().next() else {
        return Err(fail("invalid_event", "empty line object".to_owned()));
    };
    let known = match version {
        ApiVersion::V2 => KINDS
            .iter()
            .find(|k| **k == kind)
            .map(|k| (*k, None::<&'static [v3::Key]>)),
        ApiVersion::V3 => v3::kind(&kind).map(|(k, keys)| (k, Some(keys))),
    };
    let Some((kind_name, keys)) = known else {
        let name: String = kind.chars().take(64).collect();
        return Ok(Line::Unknown(name, body));
    };
    if !body.is_object() && kind_name != "metricset" {
        return Err(fail("invalid_event", format!("`{kind}` must be an object")));
    }
    let body = match keys {
        Some(keys) => v3::expand(body, keys),
        None => body,
    };
    Ok(Line::Known(kind_name, body))
}

fn quote(line: &str) -> String {
    if line.len() <= DOCUMENT_QUOTE_BYTES {
        return line.to_owned();
    }
    let mut end = DOCUMENT_QUOTE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

#[cfg(test)]
mod tests;
