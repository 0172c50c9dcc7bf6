//! The Grafana Faro Web SDK's payload (`@grafana/faro-web-sdk`, the body its
//! fetch transport posts) → events. `meta` becomes the shared context;
//! `measurements`, `exceptions`, `logs` and `events` become one event each
//! (a `web-vitals` measurement one per vital) in body order; `traces` are
//! counted and dropped. Parsed in one pass with the beacon's depth and string
//! limits; a request is taken whole or refused whole. Each mapping is a table
//! below, next to the `schema` payload keys it points into.

use std::borrow::Cow;
use std::cell::RefCell;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::beacon_decoder::{body_text, url_fields, Bounded, Key, Limits};
use crate::event::{Context, Event, FieldId, FieldValue};
use crate::privacy::ClientIpMode;
use crate::schema::{self, EventType, FieldType};
use crate::sources::decode_error::{json_error, DecodeError};

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
/// Faro sends every attribute as a string; numbers are parsed back.
const NAVIGATION_KEYS: &[(&str, &str)] = &[
    ("type", "navigation_type"),
    ("redirectTime", "redirect"),
    ("dnsLookupTime", "dns"),
    ("tcpHandshakeTime", "tcp"),
    ("tlsNegotiationTime", "tls"),
    ("ttfb", "ttfb"),
    ("responseTime", "response"),
    ("pageLoadTime", "load"),
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
    let mut de = serde_json::Deserializer::from_str(text);
    let wire = BodySeed(&parse)
        .deserialize(&mut de)
        .and_then(|w| de.end().map(|()| w))
        .map_err(|e| {
            parse
                .refused
                .take()
                .or_else(|| parse.limits.error())
                .unwrap_or_else(|| json_error(&e, limits.max_depth))
        })?;

    let dropped_spans = match &wire.traces {
        None | Some(Value::Null) => 0,
        Some(traces @ Value::Object(_)) => count_spans(traces),
        Some(_) => return Err(invalid("`traces` must be an OTLP object")),
    };
    if wire.items.len() + wire.unknown.len() + dropped_spans > limits.max_items {
        return Err(too_many(limits.max_items));
    }
    // Checked before anything is built: a request is refused whole.
    for (kind, index, item) in &wire.items {
        kind.check(*index, item)?;
    }

    let ids = &*IDS;
    let mut context = Context::new();
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
        None | Some(Value::Null) => (None, Map::new()),
        Some(Value::Object(meta)) => apply_meta(&mut context, meta, facts.user_agent),
        Some(_) => return Err(invalid("`meta` must be an object")),
    };
    let session_id = FieldId::of(schema::SESSION_ID);
    if let (None, Some(id)) = (context.get_id(session_id), facts.session_header) {
        context.set(session_id, id);
    }
    // What `meta` holds beyond the mapped fields, shared by every event
    // (and copied into an event's own `rum.extra` when it has one).
    let meta_extra = (!meta_extra.is_empty()).then_some(Value::Object(meta_extra));
    if let Some(meta) = &meta_extra {
        let mut extra = Map::new();
        extra.insert("meta".to_owned(), meta.clone());
        context.set(ids.extra, Value::Object(extra));
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
    let context = Arc::new(context);

    let mut build = Builder {
        context,
        received_ms: facts.received_at_ms,
        earliest_ms: facts.received_at_ms.saturating_sub(limits.max_event_age_ms),
        meta_extra,
        events: Vec::with_capacity(wire.items.len() + wire.unknown.len()),
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
        let mut extra = Map::new();
        extra.insert(name.to_string(), value);
        let original: String = name.chars().take(64).collect();
        build.push(
            EventType::Custom,
            None,
            vec![(ids.custom.original_type, Some(original.into()))],
            extra,
        );
    }
    Ok(Decoded {
        events: build.events,
        page_url,
        unknown_kinds,
        dropped_spans,
    })
}

/// `resourceSpans[].scopeSpans[].spans[]`, counted.
fn count_spans(traces: &Value) -> usize {
    fn list<'v>(v: &'v Value, key: &str) -> &'v [Value] {
        v.get(key)
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }
    list(traces, "resourceSpans")
        .iter()
        .flat_map(|resource| list(resource, "scopeSpans"))
        .map(|scope| list(scope, "spans").len())
        .sum()
}

/// `meta` → the context: app → `service.*`, session → `session.id`, page →
/// `url.*` and `view.id`, view → `view.title`, sdk → `rum.sdk.*`. Returns
/// the page URL and what is left of `meta` (kept under `rum.extra.meta`).
fn apply_meta(
    context: &mut Context,
    mut meta: Map<String, Value>,
    user_agent: Option<&str>,
) -> (Option<String>, Map<String, Value>) {
    let mut page_url = None;
    for (section, keys) in META_STRINGS {
        let Some(Value::Object(map)) = meta.get_mut(*section) else {
            continue;
        };
        for (key, path) in *keys {
            if let Some(Value::String(_)) = map.get(*key) {
                if let Some(Value::String(s)) = map.remove(*key) {
                    if *path == schema::URL_FULL {
                        page_url = Some(s);
                    } else {
                        context.set(FieldId::of(path), s);
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
    if let Some(Value::Object(browser)) = meta.get_mut("browser") {
        if browser.get("userAgent").and_then(Value::as_str) == user_agent && user_agent.is_some() {
            browser.remove("userAgent");
        }
    }
    meta.retain(|_, v| !matches!(v, Value::Object(m) if m.is_empty()) && !v.is_null());
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

type Pairs<'de> = Vec<(Cow<'de, str>, Value)>;

fn take(pairs: &mut Pairs<'_>, key: &str) -> Option<Value> {
    let i = pairs.iter().position(|(k, _)| k == key)?;
    Some(pairs.swap_remove(i).1)
}

fn to_map(pairs: Pairs<'_>) -> Map<String, Value> {
    pairs
        .into_iter()
        .map(|(k, v)| (k.into_owned(), v))
        .collect()
}

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
    fn get(&self, key: &str) -> Option<&Value> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    fn object(&self, key: &str) -> Option<&Pairs<'de>> {
        self.objects.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    fn take(&mut self, key: &str) -> Option<Value> {
        take(&mut self.pairs, key)
    }

    fn take_object(&mut self, key: &str) -> Option<Pairs<'de>> {
        let i = self.objects.iter().position(|(k, _)| *k == key)?;
        Some(self.objects.swap_remove(i).1)
    }

    /// Sets a key, the last one sent winning, as in a JSON object.
    fn set(&mut self, key: Cow<'de, str>, value: Value) {
        self.objects.retain(|(k, _)| *k != key);
        match self.pairs.iter_mut().find(|(k, _)| *k == key) {
            Some(pair) => pair.1 = value,
            None => self.pairs.push((key, value)),
        }
    }

    fn set_object(&mut self, key: &'static str, value: Pairs<'de>) {
        self.pairs.retain(|(k, _)| k != key);
        match self.objects.iter_mut().find(|(k, _)| *k == key) {
            Some(pair) => pair.1 = value,
            None => self.objects.push((key, value)),
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
    match TEXTS.iter().find(|v| v.as_str() == Some(text)) {
        Some(v) => FieldValue::Static(v),
        None => Value::from(text).into(),
    }
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
fn coerce(value: Value, ty: FieldType) -> Result<Value, Value> {
    if ty.accepts(&value) {
        return Ok(value);
    }
    let Value::String(s) = &value else {
        return Err(value);
    };
    let parsed = match ty {
        FieldType::Long => s.parse::<i64>().ok().map(Value::from),
        FieldType::Double => s
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number),
        _ => None,
    };
    parsed.ok_or(value)
}

/// Moves the keys of `slots` from `pairs` into `fields`; returns the rest
/// (other keys, and wrong-typed values) for `rum.extra`.
fn fill(
    pairs: Pairs<'_>,
    slots: &[Slot],
    fields: &mut Vec<(FieldId, Option<FieldValue>)>,
) -> Map<String, Value> {
    let mut rest = Map::new();
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
        rest.insert(key.into_owned(), value);
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
        let n = |r: std::ops::Range<usize>| -> Option<u32> {
            let s = &text[r];
            s.bytes()
                .all(|c| c.is_ascii_digit())
                .then(|| s.parse().ok())?
        };
        let date = chrono::NaiveDate::from_ymd_opt(n(0..4)? as i32, n(5..7)?, n(8..10)?)?;
        let time =
            chrono::NaiveTime::from_hms_milli_opt(n(11..13)?, n(14..16)?, n(17..19)?, n(20..23)?)?;
        return Some(date.and_time(time).and_utc().timestamp_millis());
    }
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// Builds the events of one request on its shared context.
struct Builder {
    context: Arc<Context>,
    received_ms: i64,
    earliest_ms: i64,
    meta_extra: Option<Value>,
    events: Vec<Event>,
}

impl Builder {
    /// One event; `rum.seq` is its position among the request's events.
    fn push(
        &mut self,
        ty: EventType,
        client_ts: Option<i64>,
        mut fields: Vec<(FieldId, Option<FieldValue>)>,
        mut extra: Map<String, Value>,
    ) {
        let ids = &*IDS;
        fields.push((ids.seq, Some(Value::from(self.events.len() as u64).into())));
        if !extra.is_empty() {
            // An own `rum.extra` hides the context's: carry `meta` along.
            if let Some(meta) = &self.meta_extra {
                extra.insert("meta".to_owned(), meta.clone());
            }
            fields.push((ids.extra, Some(Value::Object(extra).into())));
        }
        let at = client_ts
            .map(|ts| ts.clamp(self.earliest_ms, self.received_ms))
            .unwrap_or(self.received_ms);
        self.events.push(Event::from_parts(
            self.context.clone(),
            Some(at),
            client_ts,
            ty,
            fields,
        ));
    }

    /// `timestamp` → the item's time; one that does not parse is kept.
    fn time(item: &mut Item<'_>, extra: &mut Map<String, Value>) -> Option<i64> {
        match item.time.take()? {
            Ok(ms) => Some(ms),
            Err(value) => {
                extra.insert("timestamp".to_owned(), value);
                None
            }
        }
    }

    /// What is left of an item, for `rum.extra`.
    fn rest(item: Item<'_>, extra: &mut Map<String, Value>) {
        for (key, value) in item.pairs {
            if !value.is_null() {
                extra.insert(key.into_owned(), value);
            }
        }
        for (key, pairs) in item.objects {
            extra.insert(key.to_owned(), Value::Object(to_map(pairs)));
        }
    }

    fn measurement(&mut self, mut item: Item<'_>) {
        let ids = &*IDS;
        let mut extra = Map::new();
        let ts = Self::time(&mut item, &mut extra);
        let ty = item.take("type").unwrap_or_default();
        let values = item.take_object("values").unwrap_or_default();
        let mut vitals: Vec<(&'static str, Value)> = Vec::new();
        let mut others: Pairs<'_> = Vec::new();
        if ty.as_str() == Some("web-vitals") {
            for (key, value) in values {
                match VITALS.iter().find(|(k, _)| *k == key) {
                    Some((_, vital)) if value.is_number() => vitals.push((vital, value)),
                    _ => others.push((key, value)),
                }
            }
        } else {
            others = values;
        }
        if vitals.is_empty() {
            // A measurement of the page's own (`pushMeasurement`), or a
            // web-vitals one without a known vital: `custom`.
            let mut fields = vec![
                (ids.custom.name, Some(ty.into())),
                (ids.custom.original_type, Some(text("measurement"))),
            ];
            if let [(_, v @ Value::Number(_))] = &others[..] {
                fields.push((ids.custom.value, Some(v.clone().into())));
            }
            fields.push((ids.custom.data, Some(Value::Object(to_map(others)).into())));
            Self::rest(item, &mut extra);
            self.push(EventType::Custom, ts, fields, extra);
            return;
        }
        let mut shared: Vec<(FieldId, Option<FieldValue>)> = Vec::with_capacity(4);
        let mut attribution = Map::new();
        for (key, value) in others {
            if key == "delta" {
                shared.push((ids.vital_delta, Some(value.into())));
            } else {
                attribution.insert(key.into_owned(), value);
            }
        }
        if let Some(context) = item.take_object("context") {
            attribution.extend(fill(context, &ids.vital_context, &mut shared));
        }
        if !attribution.is_empty() {
            shared.push((
                ids.vital_attribution,
                Some(Value::Object(attribution).into()),
            ));
        }
        Self::rest(item, &mut extra);
        let last = vitals.len() - 1;
        let mut shared = Some(shared);
        for (i, (vital, value)) in vitals.into_iter().enumerate() {
            let mut fields = if i == last {
                shared.take().unwrap_or_default()
            } else {
                shared.clone().unwrap_or_default()
            };
            fields.push((ids.vital_name, Some(text(vital))));
            fields.push((ids.vital_value, Some(value.into())));
            let extra = if i == last {
                std::mem::take(&mut extra)
            } else {
                extra.clone()
            };
            self.push(EventType::WebVital, ts, fields, extra);
        }
    }

    fn exception(&mut self, mut item: Item<'_>) {
        let ids = &*IDS;
        let mut extra = Map::new();
        let ts = Self::time(&mut item, &mut extra);
        let ty = item.take("type").unwrap_or_default();
        let message = item.take("value").unwrap_or_default();
        let mut fields = Vec::with_capacity(8);
        let mut stack = String::new();
        if let (Some(t), Some(m)) = (ty.as_str(), message.as_str()) {
            stack.push_str(t);
            stack.push_str(": ");
            stack.push_str(m);
        }
        match item.take("stacktrace") {
            None | Some(Value::Null) => {}
            Some(stacktrace) => {
                let frames = stacktrace.get("frames").and_then(Value::as_array);
                let mut whole =
                    frames.is_some() && stacktrace.as_object().is_some_and(|m| m.len() == 1);
                for (i, frame) in frames.into_iter().flatten().enumerate() {
                    whole &= render_frame(frame, &mut stack);
                    if i == 0 {
                        let string = |k| frame.get(k).and_then(Value::as_str);
                        let number = |k| frame.get(k).and_then(Value::as_u64);
                        if let Some(file) = string("filename") {
                            fields.push((ids.error_source, Some(Value::from(file).into())));
                        }
                        if let Some(line) = number("lineno") {
                            fields.push((ids.error_line, Some(Value::from(line).into())));
                        }
                        if let Some(column) = number("colno") {
                            fields.push((ids.error_column, Some(Value::from(column).into())));
                        }
                    }
                }
                // Frames with keys the text does not show are kept whole.
                if !whole {
                    extra.insert("stacktrace".to_owned(), stacktrace);
                }
            }
        }
        fields.push((ids.error_type, Some(ty.into())));
        fields.push((ids.error_message, Some(message.into())));
        fields.push((ids.error_kind, Some(text("exception"))));
        if !stack.is_empty() {
            fields.push((ids.error_stack, Some(Value::from(stack).into())));
        }
        Self::rest(item, &mut extra);
        self.push(EventType::Error, ts, fields, extra);
    }

    fn log(&mut self, mut item: Item<'_>) {
        let ids = &*IDS;
        let mut extra = Map::new();
        let ts = Self::time(&mut item, &mut extra);
        let message = item.take("message").unwrap_or_default();
        let level = item.take("level");
        if level.as_ref().and_then(Value::as_str) == Some("error") {
            let fields = vec![
                (ids.error_message, Some(message.into())),
                (ids.error_kind, Some(text("log"))),
            ];
            Self::rest(item, &mut extra);
            self.push(EventType::Error, ts, fields, extra);
            return;
        }
        let mut data = Map::new();
        data.insert("message".to_owned(), message);
        if let Some(level) = level {
            data.insert("level".to_owned(), level);
        }
        let fields = vec![
            (ids.custom.name, Some(text("log"))),
            (ids.custom.original_type, Some(text("log"))),
            (ids.custom.data, Some(Value::Object(data).into())),
        ];
        Self::rest(item, &mut extra);
        self.push(EventType::Custom, ts, fields, extra);
    }

    fn event(&mut self, mut item: Item<'_>) {
        let ids = &*IDS;
        let mut extra = Map::new();
        let ts = Self::time(&mut item, &mut extra);
        let name = item.take("name").unwrap_or_default();
        // Every event the SDK makes says `"domain": "browser"`: kept only
        // when it says something else.
        if let Some(domain) = item.take("domain") {
            if domain.as_str() != Some("browser") {
                extra.insert("domain".to_owned(), domain);
            }
        }
        // A non-object `attributes` stays in the item, for `rum.extra`.
        let attributes = item.take_object("attributes");
        let ty = EVENT_TYPES
            .iter()
            .find(|(n, _)| Some(*n) == name.as_str())
            .map_or(EventType::Custom, |(_, t)| *t);
        let mut fields = Vec::with_capacity(16);
        match ty {
            EventType::Custom => {
                fields.push((ids.custom.name, Some(name.into())));
                fields.push((ids.custom.original_type, Some(text("event"))));
                if let Some(attributes) = attributes {
                    fields.push((
                        ids.custom.data,
                        Some(Value::Object(to_map(attributes)).into()),
                    ));
                }
            }
            _ => {
                let slots = match ty {
                    EventType::PageView => &ids.navigation,
                    EventType::Resource => &ids.resource,
                    _ => &ids.user_action,
                };
                if let Some(attributes) = attributes {
                    let rest = fill(attributes, slots, &mut fields);
                    if !rest.is_empty() {
                        extra.insert("attributes".to_owned(), Value::Object(rest));
                    }
                }
            }
        }
        Self::rest(item, &mut extra);
        self.push(ty, ts, fields, extra);
    }
}

/// One frame as a V8 stack line (`    at fn (file:line:col)`); false when
/// the frame has keys the line does not show.
fn render_frame(frame: &Value, out: &mut String) -> bool {
    use std::fmt::Write;
    let Some(map) = frame.as_object() else {
        return false;
    };
    let known = ["filename", "function", "lineno", "colno"];
    let function = map.get("function").and_then(Value::as_str).unwrap_or("?");
    let file = map
        .get("filename")
        .and_then(Value::as_str)
        .unwrap_or("<anonymous>");
    out.push_str("\n    at ");
    if function != "?" && !function.is_empty() {
        let _ = write!(out, "{function} (");
    }
    out.push_str(file);
    if let Some(line) = map.get("lineno").and_then(Value::as_u64) {
        let _ = write!(out, ":{line}");
        if let Some(column) = map.get("colno").and_then(Value::as_u64) {
            let _ = write!(out, ":{column}");
        }
    }
    if function != "?" && !function.is_empty() {
        out.push(')');
    }
    map.iter().all(|(k, v)| {
        known.contains(&k.as_str())
            && match k.as_str() {
                "lineno" | "colno" => v.is_u64(),
                _ => v.is_string(),
            }
    })
}

// ---- the wire format, in one pass ----
//
// Depths as `check_json_shape` counts them: the body is 1, each kind's array
// 2, its items 3 and their values 4.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Measurement,
    Exception,
    Log,
    Event,
}

impl Kind {
    fn parse(key: &str) -> Option<Kind> {
        Some(match key {
            "measurements" => Kind::Measurement,
            "exceptions" => Kind::Exception,
            "logs" => Kind::Log,
            "events" => Kind::Event,
            _ => return None,
        })
    }

    fn key(self) -> &'static str {
        match self {
            Kind::Measurement => "measurements",
            Kind::Exception => "exceptions",
            Kind::Log => "logs",
            Kind::Event => "events",
        }
    }

    /// The keys an item of this kind cannot do without, and their types.
    fn check(self, index: usize, item: &Item<'_>) -> Result<(), DecodeError> {
        let wrong = |key: &str, what: &str| {
            invalid(format!("{}[{index}].{key} must be {what}", self.key()))
        };
        let need_string = |key: &str| match item.get(key) {
            Some(Value::String(_)) => Ok(()),
            _ => Err(wrong(key, "a string")),
        };
        match self {
            Kind::Measurement => {
                need_string("type")?;
                match item.object("values") {
                    Some(values) if values.iter().all(|(_, v)| v.is_number()) => Ok(()),
                    _ => Err(wrong("values", "an object of numbers")),
                }
            }
            Kind::Exception => {
                need_string("type")?;
                need_string("value")
            }
            Kind::Log => need_string("message"),
            Kind::Event => need_string("name"),
        }
    }
}

struct Parse {
    limits: Limits,
    max_items: usize,
    /// Why the body was refused when it is not a limit (shape, count).
    refused: RefCell<Option<DecodeError>>,
}

impl Parse {
    fn refuse<E: de::Error>(&self, error: DecodeError) -> E {
        let message = error.message.clone();
        *self.refused.borrow_mut() = Some(error);
        E::custom(message)
    }
}

#[derive(Default)]
struct WireBody<'de> {
    meta: Option<Value>,
    /// Items of the four kinds, in body order, with their index in their array.
    items: Vec<(Kind, usize, Item<'de>)>,
    traces: Option<Value>,
    /// Top-level keys Faro does not send, as sent.
    unknown: Vec<(Cow<'de, str>, Value)>,
}

struct BodySeed<'p>(&'p Parse);

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = WireBody<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

macro_rules! refuse_scalars {
    ($refuse:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Err($refuse(&self))
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Err($refuse(&self))
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Err($refuse(&self))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Err($refuse(&self))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Err($refuse(&self))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Err($refuse(&self))
        }
    };
}

fn not_a_body<E: de::Error>(seed: &BodySeed<'_>) -> E {
    seed.0.refuse(invalid(
        "the body must be a Faro payload object ({\"meta\": …})",
    ))
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = WireBody<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Faro payload object")
    }
    refuse_scalars!(not_a_body);
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(not_a_body(&self))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let parse = self.0;
        let limits = &parse.limits;
        limits.container(1)?;
        let value = || Bounded { limits, depth: 2 };
        let mut body = WireBody::default();
        while let Some(key) = map.next_key_seed(Key(limits))? {
            if let Some(kind) = Kind::parse(&key) {
                // A repeated key: both arrays are kept (nothing is lost).
                map.next_value_seed(ItemsSeed {
                    parse,
                    kind,
                    out: &mut body.items,
                })?;
                continue;
            }
            match &*key {
                "meta" => body.meta = Some(map.next_value_seed(value())?),
                "traces" => body.traces = Some(map.next_value_seed(value())?),
                _ => {
                    let v = map.next_value_seed(value())?;
                    body.unknown.push((key, v));
                }
            }
        }
        Ok(body)
    }
}

/// One kind's array (depth 2); items go straight into the body's list.
struct ItemsSeed<'p, 'o, 'de> {
    parse: &'p Parse,
    kind: Kind,
    out: &'o mut Vec<(Kind, usize, Item<'de>)>,
}

impl<'de> DeserializeSeed<'de> for ItemsSeed<'_, '_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

fn not_an_array<E: de::Error>(seed: &ItemsSeed<'_, '_, '_>) -> E {
    seed.parse
        .refuse(invalid(format!("`{}` must be an array", seed.kind.key())))
}

impl<'de> Visitor<'de> for ItemsSeed<'_, '_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of items")
    }
    refuse_scalars!(not_an_array);
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(not_an_array(&self))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let parse = self.parse;
        parse.limits.container(2)?;
        let mut index = 0;
        loop {
            let seed = ItemSeed {
                parse,
                kind: self.kind,
                index,
            };
            let Some(item) = seq.next_element_seed(seed)? else {
                break;
            };
            if self.out.len() == parse.max_items {
                // Not parsed past this point.
                return Err(parse.refuse(too_many(parse.max_items)));
            }
            self.out.push((self.kind, index, item));
            index += 1;
        }
        Ok(())
    }
}

/// One item object (depth 3); its values are at depth 4.
struct ItemSeed<'p> {
    parse: &'p Parse,
    kind: Kind,
    index: usize,
}

fn not_an_object<E: de::Error>(seed: &ItemSeed<'_>) -> E {
    seed.parse.refuse(invalid(format!(
        "{}[{}] is not an object",
        seed.kind.key(),
        seed.index
    )))
}

impl<'de> DeserializeSeed<'de> for ItemSeed<'_> {
    type Value = Item<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_> {
    type Value = Item<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an item object")
    }
    refuse_scalars!(not_an_object);
    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(not_an_object(&self))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let limits = &self.parse.limits;
        limits.container(3)?;
        let mut item = Item {
            pairs: Vec::with_capacity(8),
            objects: Vec::new(),
            time: None,
        };
        while let Some(key) = map.next_key_seed(Key(limits))? {
            if key == "timestamp" {
                // Parsed from the body's text, never allocated.
                item.time = Some(map.next_value_seed(TimeSeed { limits })?);
                continue;
            }
            if let Some(nested) = NESTED.iter().find(|n| **n == key) {
                match map.next_value_seed(NestedSeed { limits, depth: 4 })? {
                    Nested::Object(pairs) => item.set_object(nested, pairs),
                    Nested::Value(value) => item.set(key, value),
                }
                continue;
            }
            let value = map.next_value_seed(Bounded { limits, depth: 4 })?;
            item.set(key, value);
        }
        Ok(item)
    }
}

/// An item's `timestamp`: epoch ms when it is an ISO 8601 string, else the
/// value as sent.
struct TimeSeed<'l> {
    limits: &'l Limits,
}

impl<'de> DeserializeSeed<'de> for TimeSeed<'_> {
    type Value = Result<i64, Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        // Anything but a string is kept as sent, within the limits.
        let value = d.deserialize_any(TimeVisitor(self.limits))?;
        Ok(value)
    }
}

struct TimeVisitor<'l>(&'l Limits);

impl TimeVisitor<'_> {
    fn bounded(&self) -> Bounded<'_> {
        Bounded {
            limits: self.0,
            depth: 4,
        }
    }
}

impl<'de> Visitor<'de> for TimeVisitor<'_> {
    type Value = Result<i64, Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an ISO 8601 time")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.0.string(v.len())?;
        Ok(parse_time(v).ok_or_else(|| Value::from(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.bounded().visit_bool(v).map(Err)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.bounded().visit_i64(v).map(Err)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.bounded().visit_u64(v).map(Err)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.bounded().visit_f64(v).map(Err)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.bounded().visit_unit().map(Err)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.bounded().visit_seq(seq).map(Err)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        self.bounded().visit_map(map).map(Err)
    }
}

/// A `NESTED` value: an object as a key/value list, anything else as a value.
enum Nested<'de> {
    Object(Pairs<'de>),
    Value(Value),
}

/// A `NESTED` value at `depth`, within the limits.
struct NestedSeed<'l> {
    limits: &'l Limits,
    depth: usize,
}

impl NestedSeed<'_> {
    fn bounded(&self) -> Bounded<'_> {
        Bounded {
            limits: self.limits,
            depth: self.depth,
        }
    }
}

impl<'de> DeserializeSeed<'de> for NestedSeed<'_> {
    type Value = Nested<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for NestedSeed<'_> {
    type Value = Nested<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.bounded().visit_bool(v).map(Nested::Value)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.bounded().visit_i64(v).map(Nested::Value)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.bounded().visit_u64(v).map(Nested::Value)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.bounded().visit_f64(v).map(Nested::Value)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.bounded().visit_str(v).map(Nested::Value)
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.bounded().visit_string(v).map(Nested::Value)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.bounded().visit_unit().map(Nested::Value)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        self.bounded().visit_seq(seq).map(Nested::Value)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let limits = self.limits;
        limits.container(self.depth)?;
        let mut pairs: Pairs<'de> = Vec::with_capacity(8);
        while let Some(key) = map.next_key_seed(Key(limits))? {
            let value = map.next_value_seed(Bounded {
                limits,
                depth: self.depth + 1,
            })?;
            // A repeated key: the last one wins, as in a JSON object.
            match pairs.iter_mut().find(|(k, _)| *k == key) {
                Some(pair) => pair.1 = value,
                None => pairs.push((key, value)),
            }
        }
        Ok(Nested::Object(pairs))
    }
}

#[cfg(test)]
mod tests;
