//! The Grafana Faro Web SDK's payload (`@grafana/faro-web-sdk`, the body its
//! fetch transport posts) → events. `meta` becomes the shared context;
//! `measurements`, `exceptions`, `logs` and `events` become one event each
//! (a `web-vitals` measurement one per vital) in body order; `traces` are
//! counted and dropped. Parsed in one pass with the beacon's depth and string
//! limits; a request is taken whole or refused whole. Each mapping is a table
//! below, next to the `schema` payload keys it points into.

use std::borrow::Cow;
use std::cell::RefCell;
use std::net::IpAddr;
use std::sync::LazyLock;

use serde::de;
use serde_json::{Number, Value};

use super::beacon_decoder::{body_text, url_fields, Limits, PairList};
use super::json_tree::{read_tree, Json, Obj};
use crate::event::{Context, Counted, Event, EventBlock, FieldId, FieldValue};
use crate::privacy::ClientIpMode;
use crate::schema::{self, EventType, FieldType};
use crate::sources::decode_error::DecodeError;
use crate::sources::json_scan::{Scan, ScanError, Scanner};

/// Faro's web-vitals measurement value keys → `rum.vital.name`.
pub const VITALS: &[(&str, &str)] = &[
    ("lcp", "LCP"),
    ("cls", "CLS"),
    ("inp", "INP"),
    ("fcp", "FCP"),
    ("ttfb", "TTFB"),
    ("fid", "FID"),
];

/// `context` keys of a web-vitals measurement → `web_vital` payload keys.
/// The measurement's other values and context keys (Faro flattens the
/// library's attribution into them) go to `rum.vital.attribution`.
const VITAL_CONTEXT_KEYS: &[(&str, &str)] = &[
    ("id", "id"),
    ("rating", "rating"),
    ("navigation_type", "navigation_type"),
];

/// `faro.performance.navigation` attributes → `page_view` payload keys.
/// Faro sends every attribute as a string; numbers are parsed back. The
/// milestones mean what the other sources' do: `load` is the load event's
/// end from the navigation's start (the entry's `duration`, the project's
/// client's `loadEventEnd`), and `pageLoadTime` (`domComplete -
/// fetchStart`, the Elastic APM agent's `dom_complete`) is `dom_complete`;
/// as `load` it left out the load event and any redirect.
const NAVIGATION_KEYS: &[(&str, &str)] = &[
    ("type", "navigation_type"),
    ("redirectTime", "redirect"),
    ("dnsLookupTime", "dns"),
    ("tcpHandshakeTime", "tcp"),
    ("tlsNegotiationTime", "tls"),
    ("ttfb", "ttfb"),
    ("responseTime", "response"),
    ("duration", "load"),
    ("pageLoadTime", "dom_complete"),
    ("transferSize", "transfer_size"),
    ("encodedBodySize", "encoded_size"),
    ("decodedBodySize", "decoded_size"),
    ("protocol", "protocol"),
];

/// `faro.performance.resource` attributes → `resource` payload keys.
const RESOURCE_KEYS: &[(&str, &str)] = &[
    ("name", "name"),
    ("initiatorType", "initiator_type"),
    ("duration", "duration"),
    ("transferSize", "transfer_size"),
    ("encodedBodySize", "encoded_size"),
    ("decodedBodySize", "decoded_size"),
    ("renderBlockingStatus", "render_blocking"),
    ("cacheHitStatus", "cache"),
    ("protocol", "protocol"),
    ("responseStatus", "status"),
];

/// `faro.user.action` attributes → `action` payload keys.
const USER_ACTION_KEYS: &[(&str, &str)] =
    &[("userActionName", "name"), ("userActionTrigger", "kind")];

/// Faro event names with a `rum.type` of their own; every other event
/// (`session_start`, `view_changed`, `faro.navigation`, the page's own
/// `pushEvent`s) is `custom` with its name in `rum.custom.name`.
const EVENT_TYPES: &[(&str, EventType)] = &[
    ("faro.performance.navigation", EventType::PageView),
    ("faro.performance.resource", EventType::Resource),
    ("faro.user.action", EventType::Action),
];

/// Limits on one request.
#[derive(Debug, Clone)]
pub struct FaroLimits {
    /// Items (measurements + exceptions + logs + events + spans) in one body.
    pub max_items: usize,
    pub max_string_bytes: usize,
    pub max_depth: usize,
    /// Item times are clamped to [received − this, received].
    pub max_event_age_ms: i64,
    /// Bytes of the context every event of the request shares (`meta`, the
    /// User-Agent, ...). Each document carries it (and an event with keys of
    /// its own a copy of `meta`'s unmapped part), so it bounds what one
    /// request can make (413 above).
    pub max_context_bytes: usize,
    /// What `client.ip` keeps of the address (the source's `client_ip`).
    pub client_ip: ClientIpMode,
}

/// What the request told us besides the body.
pub struct RequestFacts<'a> {
    pub received_at_ms: i64,
    pub client_ip: IpAddr,
    /// The `User-Agent` header: what `user_agent` parses, as for beacons.
    pub user_agent: Option<&'a str>,
    /// The SDK's `x-faro-session-id` header: the session when `meta` has none.
    pub session_header: Option<&'a str>,
}

#[derive(Debug)]
pub struct Decoded {
    pub events: Vec<Event>,
    /// `meta.page.url`, for the access log.
    pub page_url: Option<String>,
    /// Top-level keys Faro does not send (kept as `custom` events).
    pub unknown_kinds: usize,
    /// OTLP spans of `traces` (dropped).
    pub dropped_spans: usize,
}

fn invalid(message: impl Into<String>) -> DecodeError {
    DecodeError::invalid("invalid_payload", message)
}

fn too_many(max_items: usize) -> DecodeError {
    DecodeError::too_large(
        "too_many_items",
        format!("more than {max_items} items in one request (max_items_per_request)"),
    )
}

pub fn decode(
    body: &[u8],
    facts: &RequestFacts<'_>,
    limits: &FaroLimits,
) -> Result<Decoded, DecodeError> {
    let text = body_text(body, invalid)?;
    let parse = Parse {
        limits: Limits::new(limits.max_string_bytes, limits.max_depth),
        max_items: limits.max_items,
        refused: RefCell::new(None),
    };
    let mut scanner = Scanner::new(text, &parse.limits);
    let wire = wire::read_body(&mut scanner, &parse)
        .and_then(|w| scanner.end().map(|()| w))
        .map_err(|e| {
            parse
                .refused
                .take()
                .unwrap_or_else(|| scanner.decode_error(e, limits.max_depth))
        })?;

    let dropped_spans = match wire.traces {
        None => 0,
        Some(Ok(spans)) => spans,
        Some(Err(())) => return Err(invalid("`traces` must be an OTLP object")),
    };
    if wire.items.len() + wire.unknown.len() + dropped_spans > limits.max_items {
        return Err(too_many(limits.max_items));
    }
    // Checked before anything is built: a request is refused whole.
    for (kind, index, item) in &wire.items {
        kind.check(*index, item)?;
    }

    let ids = &*IDS;
    let mut context = Context::for_request();
    context.set_event_kind();
    context.set_received_ms(facts.received_at_ms);
    // The whole address stays in memory for `geoip`; documents get what
    // `client_ip` allows.
    context.set_client_address(facts.client_ip);
    if let Some(ip) = limits.client_ip.stored(facts.client_ip) {
        context.set(ids.client_ip, ip);
    }
    if let Some(ua) = facts.user_agent {
        context.set(ids.user_agent, ua);
    }
    let (page_url, meta_extra) = match wire.meta {
        None | Some(Json::Null) => (None, Obj::new()),
        Some(Json::Object(meta)) => apply_meta(&mut context, meta, facts.user_agent),
        Some(_) => return Err(invalid("`meta` must be an object")),
    };
    let session_id = FieldId::of(schema::SESSION_ID);
    if let (None, Some(id)) = (context.get_id(session_id), facts.session_header) {
        context.set(session_id, id);
    }
    // What `meta` holds beyond the mapped fields, shared by every event
    // (`Builder::push` copies it into an event's own `rum.extra`, which
    // would hide the context's).
    let meta_extra = (!meta_extra.is_empty()).then(|| {
        let mut text = Vec::new();
        meta_extra.write_to(&mut text);
        text
    });
    if let Some(text) = &meta_extra {
        context.set(ids.extra, Obj::new().to_field_value(Some(("meta", text))));
    }
    if context.byte_size() > limits.max_context_bytes {
        return Err(DecodeError::too_large("context_too_large",
            format!(
                "the payload's `meta` (with the page URL and User-Agent) holds {} bytes; max_context_bytes is {}",
                context.byte_size(),
                limits.max_context_bytes
            ),
        ));
    }
    let context = Counted::new(context);

    // Faro sends no time of sending: its batches leave within a quarter of
    // a second, so the newest item's time stands in for it, as the newest
    // `ts` does for a beacon without `sent_at`, and every item is moved by
    // the browser's clock skew (a clock hours behind put them hours back).
    let newest = wire
        .items
        .iter()
        .filter_map(|(_, _, item)| item.time.as_ref()?.as_ref().ok().copied())
        .max();
    let mut build = Builder {
        context,
        received_ms: facts.received_at_ms,
        skew_ms: newest.map_or(0, |sent| facts.received_at_ms.saturating_sub(sent)),
        earliest_ms: facts.received_at_ms.saturating_sub(limits.max_event_age_ms),
        meta_extra,
        events: EventBlock::with_capacity(wire.items.len() + wire.unknown.len()),
        max_stack_bytes: limits.max_string_bytes,
    };
    for (kind, _, item) in wire.items {
        match kind {
            Kind::Measurement => build.measurement(item),
            Kind::Exception => build.exception(item),
            Kind::Log => build.log(item),
            Kind::Event => build.event(item),
        }
    }
    // Keys Faro does not send come last, each one event.
    let unknown_kinds = wire.unknown.len();
    for (name, value) in wire.unknown {
        let original: String = name.chars().take(64).collect();
        let mut extra = Obj::new();
        extra.insert(name, Json::from(value));
        build.push(
            EventType::Custom,
            None,
            vec![(ids.custom.original_type, Some(original.into()))],
            extra,
        );
    }
    Ok(Decoded {
        events: build.events.finish(),
        page_url,
        unknown_kinds,
        dropped_spans,
    })
}

/// `meta` → the context: app → `service.*`, session → `session.id`, page →
/// `url.*` and `view.id`, view → `view.title`, sdk → `rum.sdk.*`. Returns
/// the page URL and what is left of `meta` (kept under `rum.extra.meta`).
fn apply_meta<'de>(
    context: &mut Context,
    mut meta: Obj<'de>,
    user_agent: Option<&str>,
) -> (Option<String>, Obj<'de>) {
    let mut page_url = None;
    for (section, keys) in META_STRINGS {
        let Some(Json::Object(map)) = meta.get_mut(section) else {
            continue;
        };
        for (key, path) in *keys {
            if let Some(Json::String(_)) = map.get(key) {
                if let Some(Json::String(s)) = map.remove(key) {
                    if *path == schema::URL_FULL {
                        page_url = Some(s.into_owned());
                    } else {
                        context.set(FieldId::of(path), s.into_owned());
                    }
                }
            }
        }
    }
    if let Some(url) = &page_url {
        for (id, value) in url_fields(url) {
            if let Some(value) = value {
                context.set(id, value);
            }
        }
    }
    // The SDK's copy of the User-Agent is the header's: kept once.
    if let Some(Json::Object(browser)) = meta.get_mut("browser") {
        if browser.get("userAgent").and_then(Json::as_str) == user_agent && user_agent.is_some() {
            browser.remove("userAgent");
        }
    }
    meta.retain(|v| !matches!(v, Json::Object(m) if m.is_empty()) && !v.is_null());
    (page_url, meta)
}

/// `meta.<section>.<key>` strings → context fields (`url.full`: the page).
const META_STRINGS: &[(&str, &[(&str, &str)])] = &[
    (
        "sdk",
        &[
            ("name", schema::RUM_SDK_NAME),
            ("version", schema::RUM_SDK_VERSION),
        ],
    ),
    (
        "app",
        &[
            ("name", schema::SERVICE_NAME),
            ("version", schema::SERVICE_VERSION),
            ("environment", schema::SERVICE_ENVIRONMENT),
        ],
    ),
    ("session", &[("id", schema::SESSION_ID)]),
    (
        "page",
        &[("url", schema::URL_FULL), ("id", schema::VIEW_ID)],
    ),
    ("view", &[("name", schema::VIEW_TITLE)]),
];

/// An item's keys (or a `NESTED` object's) with their values.
type Pairs<'de> = Obj<'de>;

/// Item keys whose object values are kept as key/value lists with keys
/// borrowed from the body: most of their keys land in slots, and only what
/// is left becomes a JSON object.
const NESTED: &[&str] = &["values", "context", "attributes"];

/// One item of `measurements`, `exceptions`, `logs` or `events`.
#[derive(Default)]
struct Item<'de> {
    pairs: Pairs<'de>,
    /// `NESTED` keys whose value is an object.
    objects: Vec<(&'static str, Pairs<'de>)>,
    /// `timestamp` as epoch ms, or as sent when it is no ISO 8601 time.
    time: Option<Result<i64, Value>>,
}

impl<'de> Item<'de> {
    fn get(&self, key: &str) -> Option<&Json<'de>> {
        self.pairs.get(key)
    }

    fn object(&self, key: &str) -> Option<&Pairs<'de>> {
        self.objects.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    fn take(&mut self, key: &str) -> Option<Json<'de>> {
        self.pairs.remove(key)
    }

    fn take_object(&mut self, key: &str) -> Option<Pairs<'de>> {
        let i = self.objects.iter().position(|(k, _)| *k == key)?;
        Some(self.objects.swap_remove(i).1)
    }

    /// The object under a key of `pairs`; a value of another type stays.
    fn take_pairs(&mut self, key: &str) -> Option<Pairs<'de>> {
        match self.pairs.remove(key)? {
            Json::Object(pairs) => Some(pairs),
            other => {
                self.pairs.insert(key.to_owned(), other);
                None
            }
        }
    }
}

/// An item as `wire::read_item` reads it.
struct ItemReader<'de> {
    pairs: PairList<'de, Json<'de>>,
    objects: Vec<(&'static str, Pairs<'de>)>,
    time: Option<Result<i64, Value>>,
}

impl<'de> ItemReader<'de> {
    /// Sets a key, the last one sent winning, as in a JSON object.
    fn set(&mut self, key: Cow<'de, str>, value: Json<'de>) {
        self.objects.retain(|(k, _)| *k != key);
        self.pairs.push(key, value);
    }

    /// A key in `objects` was last sent as an object (`set` takes it out
    /// when another value follows): `finish` drops an earlier value of it
    /// from `pairs`. Dropped here, each repeat was a pass over every pair.
    fn set_object(&mut self, key: &'static str, value: Pairs<'de>) {
        match self.objects.iter_mut().find(|(k, _)| *k == key) {
            Some(pair) => pair.1 = value,
            None => self.objects.push((key, value)),
        }
    }

    fn finish(mut self) -> Item<'de> {
        for (key, _) in &self.objects {
            self.pairs.remove(key);
        }
        Item {
            pairs: Obj::parsed(self.pairs),
            objects: self.objects,
            time: self.time,
        }
    }
}

/// Shared JSON strings of the values every event of a kind carries.
static TEXTS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    ["measurement", "log", "event", "exception"]
        .into_iter()
        .chain(VITALS.iter().map(|(_, name)| *name))
        .map(Value::from)
        .collect()
});

/// `text` as a shared static value (one of `TEXTS`), else owned.
fn text(text: &'static str) -> FieldValue {
    super::static_word(&TEXTS, text)
}

/// A wire key, the slot it lands in, and the type its value must have.
type Slot = (&'static str, FieldId, FieldType);

struct CustomIds {
    name: FieldId,
    value: FieldId,
    data: FieldId,
    original_type: FieldId,
}

struct Ids {
    client_ip: FieldId,
    user_agent: FieldId,
    seq: FieldId,
    extra: FieldId,
    trace_id: FieldId,
    span_id: FieldId,
    vital_name: FieldId,
    vital_value: FieldId,
    vital_delta: FieldId,
    vital_attribution: FieldId,
    vital_context: Vec<Slot>,
    navigation: Vec<Slot>,
    resource: Vec<Slot>,
    user_action: Vec<Slot>,
    error_type: FieldId,
    error_message: FieldId,
    error_stack: FieldId,
    error_kind: FieldId,
    error_source: FieldId,
    error_line: FieldId,
    error_column: FieldId,
    custom: CustomIds,
}

fn payload(ty: EventType, key: &str) -> FieldId {
    let p = ty
        .payload_fields()
        .iter()
        .find(|p| p.key == key)
        .unwrap_or_else(|| panic!("{} has no payload key `{key}`", ty.as_str()));
    FieldId::of(p.field.path)
}

static IDS: LazyLock<Ids> = LazyLock::new(|| {
    let slots = |ty: EventType, keys: &[(&'static str, &str)]| -> Vec<Slot> {
        keys.iter()
            .map(|(wire, key)| {
                let p = ty
                    .payload_fields()
                    .iter()
                    .find(|p| p.key == *key)
                    .unwrap_or_else(|| panic!("{} has no payload key `{key}`", ty.as_str()));
                (*wire, FieldId::of(p.field.path), p.field.ty)
            })
            .collect()
    };
    Ids {
        client_ip: FieldId::of(schema::CLIENT_IP),
        user_agent: FieldId::of(schema::USER_AGENT_ORIGINAL),
        seq: FieldId::of(schema::RUM_SEQ),
        extra: FieldId::of(schema::RUM_EXTRA),
        trace_id: FieldId::of(schema::TRACE_ID),
        span_id: FieldId::of(schema::SPAN_ID),
        vital_name: FieldId::of(schema::RUM_VITAL_NAME),
        vital_value: FieldId::of(schema::RUM_VITAL_VALUE),
        vital_delta: payload(EventType::WebVital, "delta"),
        vital_attribution: FieldId::of(schema::RUM_VITAL_ATTRIBUTION),
        vital_context: slots(EventType::WebVital, VITAL_CONTEXT_KEYS),
        navigation: slots(EventType::PageView, NAVIGATION_KEYS),
        resource: slots(EventType::Resource, RESOURCE_KEYS),
        user_action: slots(EventType::Action, USER_ACTION_KEYS),
        error_type: payload(EventType::Error, "name"),
        error_message: payload(EventType::Error, "message"),
        error_stack: FieldId::of(schema::ERROR_STACK_TRACE),
        error_kind: payload(EventType::Error, "kind"),
        error_source: payload(EventType::Error, "source"),
        error_line: payload(EventType::Error, "line"),
        error_column: payload(EventType::Error, "column"),
        custom: CustomIds {
            name: FieldId::of(schema::RUM_CUSTOM_NAME),
            value: FieldId::of(schema::RUM_CUSTOM_VALUE),
            data: payload(EventType::Custom, "data"),
            original_type: payload(EventType::Custom, "original_type"),
        },
    }
});

/// A value for a slot of type `ty`: as sent when it fits, else a number
/// parsed from a string (Faro stringifies event attributes); `Err` gives
/// the value back for `rum.extra`.
fn coerce(value: Json<'_>, ty: FieldType) -> Result<Value, Json<'_>> {
    // A string never fits a number slot: parsed from the body's text.
    if let Json::String(s) = &value {
        let parsed = match ty {
            FieldType::Long => s.parse::<i64>().ok().map(Value::from),
            FieldType::Double => s
                .parse::<f64>()
                .ok()
                .and_then(Number::from_f64)
                .map(Value::Number),
            _ => None,
        };
        if let Some(number) = parsed {
            return Ok(number);
        }
    }
    if value.fits(ty) {
        Ok(Value::from(value))
    } else {
        Err(value)
    }
}

/// Moves the keys of `slots` from `pairs` into `fields`; returns the rest
/// (other keys, and wrong-typed values) for `rum.extra`.
fn fill<'de>(
    pairs: Pairs<'de>,
    slots: &[Slot],
    fields: &mut Vec<(FieldId, Option<FieldValue>)>,
) -> Obj<'de> {
    let mut rest = Obj::new();
    for (key, value) in pairs {
        let value = match slots.iter().find(|(k, _, _)| *k == key) {
            Some((_, id, ty)) => match coerce(value, *ty) {
                Ok(value) => {
                    fields.push((*id, Some(value.into())));
                    continue;
                }
                Err(value) => value,
            },
            None => value,
        };
        // `pairs`' keys are unique: none is in `rest` yet (an `insert`
        // looked at every key before it).
        rest.push_unique(key, value);
    }
    rest
}

/// ISO 8601 (`2026-11-30T15:25:02.150Z`, as Faro writes it) → epoch ms.
fn parse_time(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let fixed = b.len() == 24
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[23] == b'Z';
    if fixed {
        let n = |r: std::ops::Range<usize>| digits(&b[r]);
        let date = chrono::NaiveDate::from_ymd_opt(n(0..4)? as i32, n(5..7)?, n(8..10)?)?;
        let time =
            chrono::NaiveTime::from_hms_milli_opt(n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?)?;
        return Some(date.and_time(time).and_utc().timestamp_millis());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// A part of a timestamp (at most 4 bytes) made only of ASCII digits, as
/// a number. Added up by hand: `str::parse` per part cost more than the
/// rest of the event (every Faro item has a timestamp).
fn digits(part: &[u8]) -> Option<u32> {
    part.iter().try_fold(0u32, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
    })
}

mod items;
mod wire;

use items::Builder;
use wire::*;

#[cfg(test)]
mod tests;
