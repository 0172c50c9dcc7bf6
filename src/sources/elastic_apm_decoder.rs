//! Elastic's `@elastic/apm-rum` agent, as it posts to APM Server's RUM
//! intake: NDJSON, `metadata` first, then `transaction` (with its spans and
//! breakdown nested in v3, as lines of their own in v2), `span`, `error` and
//! `metricset` lines. v3 abbreviates every key; `v3` expands them so one
//! mapping serves both versions. Each line is parsed with the same depth and
//! string limits as a beacon; a bad line is reported and counted and the
//! good ones are kept, as APM Server does. The mapping is in `docs/sdk.md`.

mod events;
mod label_names;
mod v3;

pub use label_names::LabelNames;

use std::borrow::Cow;
use std::cell::Cell;
use std::net::IpAddr;
use std::sync::Arc;

use super::beacon_decoder::{Limits, PairList};
use super::json_tree::{read_array, read_tree, Json, Obj};
use crate::event::Event;
use crate::privacy::ClientIpMode;
use crate::sources::decode_error::DecodeError;
use crate::sources::json_scan::{Scan, Scanner};

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
    /// Bytes of what every event of a request carries: the shared context
    /// (page URL and its parts, session, labels, User-Agent) and the
    /// unmapped rest of `metadata`, which each event's `rum.extra` holds a
    /// copy of (413 above).
    pub max_context_bytes: usize,
    /// What `client.ip` keeps of the address (the source's `client_ip`).
    pub client_ip: ClientIpMode,
    /// The label names that may be `labels.*` fields, shared by the
    /// source's requests (`max_label_names`, `label_names`).
    pub label_names: Arc<LabelNames>,
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
    /// The first lines refused (at most `ERRORS_LISTED`), for the answer.
    pub errors: Vec<LineError>,
    /// Every line refused, counted by `error_type` (in the order each was
    /// first seen).
    pub refused: Vec<(&'static str, usize)>,
    /// Lines of a kind the agent does not send (kept as `custom`).
    pub unknown_kinds: usize,
    /// Breakdown metricsets dropped (`keep_breakdown = false`).
    pub dropped_breakdowns: usize,
    /// Labels kept under `rum.extra` as `label_names` has no room for (or
    /// no entry of) their names.
    pub labels_kept_in_extra: usize,
}

/// How much of a bad line an error quotes.
const DOCUMENT_QUOTE_BYTES: usize = 256;

/// How many refused lines the answer lists, as APM Server's `errorsLimit`
/// (all are counted): listing each, a body of short bad lines was answered
/// with a body tens of times its size.
const ERRORS_LISTED: usize = 5;

fn bad_metadata(error_type: &'static str, message: impl Into<String>) -> DecodeError {
    DecodeError::invalid(error_type, message)
}

fn empty_body(message: &'static str) -> DecodeError {
    bad_metadata("missing_metadata", message)
}

pub fn decode(
    body: &[u8],
    facts: &RequestFacts<'_>,
    limits: &ApmLimits,
) -> Result<Decoded, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(empty_body("empty body"));
    }
    // Each line is checked for UTF-8 on its own, as it is parsed: a body
    // cut inside a character refuses its last line, not its good ones.
    // `memchr` finds the line ends many bytes at a time (`str::split`
    // looks at each byte).
    let mut start = 0;
    let mut lines = memchr::memchr_iter(b'\n', body)
        .chain(std::iter::once(body.len()))
        .map(|end| {
            let line = &body[start..end];
            start = end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            std::str::from_utf8(line).map_err(|_| line)
        })
        .filter(|l| !matches!(l, Ok(l) if l.trim().is_empty()));
    let first = lines.next().ok_or_else(|| empty_body("empty body"))?;
    let parsed = first
        .map_err(|line| not_utf8(line, limits))
        .and_then(|first| parse_line(first, facts.version, limits));
    let metadata = match parsed {
        Ok((Line::Known("metadata", Json::Object(map)), _)) => map,
        Ok((Line::Known("metadata", _), _)) => {
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
    let mut refused: Vec<(&'static str, usize)> = Vec::new();
    let mut skipped = 0;
    for line in lines {
        let parsed = match line {
            Ok(line) => parse_line(line, facts.version, limits).map_err(|e| (e, line.as_bytes())),
            Err(line) => Err((not_utf8(line, limits), line)),
        };
        match parsed {
            Ok((item, breakdowns)) => {
                skipped += breakdowns;
                items.push(item);
            }
            Err((mut e, line)) => {
                match refused.iter_mut().find(|(t, _)| *t == e.error_type) {
                    Some((_, n)) => *n += 1,
                    None => refused.push((e.error_type, 1)),
                }
                if errors.len() < ERRORS_LISTED {
                    e.document = quote(line);
                    errors.push(e);
                }
            }
        }
    }
    let accepted = items.len();

    let mut builder = events::Builder::new(metadata, &items, facts, limits)?;
    for item in items {
        match item {
            Line::Known("transaction", Json::Object(tr)) => builder.transaction(tr)?,
            Line::Known("span", Json::Object(span)) => builder.span_line(span)?,
            Line::Known("error", Json::Object(error)) => builder.error(error)?,
            Line::Known("metricset", value) => builder.metricset(value)?,
            Line::Known(kind, value) => builder.unknown(kind, value)?,
            Line::Unknown(kind, value) => builder.unknown(&kind, value)?,
            Line::Skipped => {}
        }
    }
    Ok(Decoded {
        events: builder.events.finish(),
        page_url: builder.shared_url,
        accepted,
        errors,
        refused,
        unknown_kinds: builder.unknown_kinds,
        dropped_breakdowns: builder.dropped_breakdowns + skipped,
        labels_kept_in_extra: builder.labels_kept_in_extra,
    })
}

/// One parsed line: its kind (as v2 names it) and its object.
enum Line<'de> {
    Known(&'static str, Json<'de>),
    /// A kind the agent does not send (its name cut to 64 characters).
    Unknown(String, Json<'de>),
    /// A metricset line skipped (`keep_breakdown = false`).
    Skipped,
}

const KINDS: &[&str] = &["metadata", "transaction", "span", "error", "metricset"];

/// One line's parse: its limits, and the breakdown metricsets skipped.
struct Parse {
    limits: Limits,
    skip_breakdown: bool,
    skipped: Cell<usize>,
}

fn parse_line<'de>(
    line: &'de str,
    version: ApiVersion,
    limits: &ApmLimits,
) -> Result<(Line<'de>, usize), LineError> {
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
    let parse = Parse {
        limits: Limits::new(limits.max_string_bytes, limits.max_depth),
        skip_breakdown: !limits.keep_breakdown,
        skipped: Cell::new(0),
    };
    let keys = match version {
        ApiVersion::V2 => v3::LINE_V2,
        ApiVersion::V3 => v3::LINE,
    };
    let mut scanner = Scanner::new(line, &parse.limits);
    let value = read_spelled(&mut scanner, &parse, 1, keys, false)
        .and_then(|v| scanner.end().map(|()| v))
        .map_err(|e| {
            let error = scanner.decode_error(e, limits.max_depth);
            fail(error.error_type, error.message)
        })?;
    let skipped = parse.skipped.get();
    let Json::Object(map) = value else {
        return Err(fail(
            "invalid_event",
            "a line must be an object with one key, the event kind".to_owned(),
        ));
    };
    if map.is_empty() && skipped > 0 {
        return Ok((Line::Skipped, skipped));
    }
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
    let Some(kind_name) = KINDS.iter().find(|k| **k == kind) else {
        let name: String = kind.chars().take(64).collect();
        return Ok((Line::Unknown(name, body), skipped));
    };
    if !body.is_object() && *kind_name != "metricset" {
        return Err(fail("invalid_event", format!("`{kind}` must be an object")));
    }
    Ok((Line::Known(kind_name, body), skipped))
}

// ---- the wire format, in one pass ----
//
// Depth and string limits are checked as the line is read (as the beacon
// decoder does: the line object is depth 1); v3's abbreviations are
// spelled out as keys are read, and breakdown metricsets are checked and
// counted without being built.

/// A value at `depth` whose object keys are spelled by `keys` (and, when
/// `elements`, an array of such objects), read straight from the scanner;
/// what no table spells is read as it is ([`read_tree`]).
fn read_spelled<'de>(
    sc: &mut Scanner<'de, '_>,
    parse: &Parse,
    depth: usize,
    keys: &'static [v3::Key],
    elements: bool,
) -> Scan<Json<'de>> {
    match sc.peek()? {
        b'{' => {}
        b'[' if elements => {
            return read_array(sc, depth, |sc| {
                read_spelled(sc, parse, depth + 1, keys, false)
            })
        }
        // Scalars, and arrays of anything but spelled objects, read the
        // same in v2 and v3.
        _ => return read_tree(sc, depth),
    }
    sc.begin_object(depth)?;
    let mut out = PairList::with_capacity(8);
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        let Some(spelled) = v3::find(keys, &key) else {
            let value = read_tree(sc, depth + 1)?;
            out.push(key, value);
            continue;
        };
        let value = match spelled.inner {
            v3::Inner::Leaf => read_tree(sc, depth + 1)?,
            v3::Inner::Object(keys) => read_spelled(sc, parse, depth + 1, keys, false)?,
            v3::Inner::Array(keys) => read_spelled(sc, parse, depth + 1, keys, true)?,
            v3::Inner::Breakdown(_) if parse.skip_breakdown => {
                let count = sc.count_items(depth + 1)?;
                parse.skipped.set(parse.skipped.get() + count);
                continue;
            }
            v3::Inner::Breakdown(keys) => read_spelled(sc, parse, depth + 1, keys, true)?,
        };
        out.push(Cow::Borrowed(spelled.long), value);
    }
    Ok(Json::Object(Obj::parsed(out)))
}

/// A line that is not UTF-8: not JSON (or too large, as any line).
fn not_utf8(line: &[u8], limits: &ApmLimits) -> LineError {
    let (error_type, message) = if line.len() > limits.max_event_bytes {
        (
            "event_too_large",
            format!(
                "event exceeded the permitted size ({} bytes, max_event_bytes)",
                limits.max_event_bytes
            ),
        )
    } else {
        (
            "invalid_json",
            "invalid JSON: the line is not UTF-8".to_owned(),
        )
    };
    LineError {
        error_type,
        message,
        document: String::new(),
    }
}

/// The start of a line, as an error quotes it (bytes that are not UTF-8
/// as U+FFFD).
fn quote(line: &[u8]) -> String {
    if line.len() <= DOCUMENT_QUOTE_BYTES {
        return String::from_utf8_lossy(line).into_owned();
    }
    // Back to the start of the character the cut falls in (a continuation
    // byte is 0b10xx_xxxx; a character has at most three).
    let mut end = DOCUMENT_QUOTE_BYTES;
    while DOCUMENT_QUOTE_BYTES - end < 3 && line[end] & 0xc0 == 0x80 {
        end -= 1;
    }
    format!("{}…", String::from_utf8_lossy(&line[..end]))
}

#[cfg(test)]
mod tests;
