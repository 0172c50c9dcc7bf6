//! Beacon format v1 → events. A beacon carries shared context (app, session,
//! view, device) and many events; each event becomes one document carrying
//! that context under the ECS names of `schema`, with its time corrected for
//! the browser's clock skew. A beacon is taken whole or refused whole: no
//! event of a bad beacon is half-written.

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock};

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::event::{Context, Event, FieldId, FieldValue};
use crate::http::intake::{json_error, too_deep, IntakeError};
use crate::privacy::ClientIpMode;
use crate::schema::{self, EventType, FieldType};
/// The URL helpers lived here; decoders and transforms written against this
/// path keep working.
pub use crate::url_parts::{set_url_fields, url_fields};

/// Limits on what one beacon may contain.
#[derive(Debug, Clone)]
pub struct BeaconLimits {
    pub max_events: usize,
    pub max_string_bytes: usize,
    pub max_depth: usize,
    /// Event times are clamped to [received − this, received].
    pub max_event_age_ms: i64,
    /// Bytes of the context every event of the beacon shares (URL, title,
    /// referrer, User-Agent, `ua_hints`...). Each stored document carries
    /// it whole, so it bounds the documents one beacon makes (413 above).
    pub max_context_bytes: usize,
    /// What `client.ip` keeps of the address (the context keeps it whole, in memory only).
    pub client_ip: ClientIpMode,
}

/// What the request told us besides the body.
pub struct RequestFacts<'a> {
    pub received_at_ms: i64,
    pub client_ip: IpAddr,
    pub user_agent: Option<&'a str>,
    /// `Sec-CH-UA*` request headers (name without the prefix, value).
    pub client_hints: Vec<(&'static str, &'a str)>,
}

#[derive(Debug)]
pub struct Decoded {
    pub events: Vec<Event>,
    /// `view.url`, for the access log.
    pub page_url: Option<String>,
    /// Events whose `type` was unknown and kept as `custom`.
    pub unknown_types: usize,
    /// Top-level keys the format does not know (ignored).
    pub ignored_keys: usize,
}

pub const BEACON_VERSION: u64 = 1;

/// Request headers copied into `rum.ua_hints` when the beacon has no `ua_hints`.
pub const CLIENT_HINT_HEADERS: &[(&str, &str)] = &[
    ("sec-ch-ua", "sec_ch_ua"),
    ("sec-ch-ua-mobile", "sec_ch_ua_mobile"),
    ("sec-ch-ua-platform", "sec_ch_ua_platform"),
    ("sec-ch-ua-platform-version", "sec_ch_ua_platform_version"),
    ("sec-ch-ua-model", "sec_ch_ua_model"),
    ("sec-ch-ua-full-version-list", "sec_ch_ua_full_version_list"),
];

fn invalid(message: impl Into<String>) -> IntakeError {
    IntakeError::bad_request("invalid_beacon", message)
}

pub fn decode(
    body: &[u8],
    facts: &RequestFacts<'_>,
    limits: &BeaconLimits,
) -> Result<Decoded, IntakeError> {
    let text = body_text(body, invalid)?;
    let mut de = serde_json::Deserializer::from_str(text);
    let checks = Limits::new(limits.max_string_bytes, limits.max_depth);
    let beacon = BeaconSeed(&checks)
        .deserialize(&mut de)
        .and_then(|b| de.end().map(|()| b))
        .map_err(|e| {
            checks
                .error()
                .unwrap_or_else(|| json_error(&e, limits.max_depth))
        })?;
    let WireBeacon::Object(beacon) = beacon else {
        return Err(invalid("a beacon is a JSON object"));
    };

    match &beacon.v {
        Some(Value::Number(n)) if n.as_u64() == Some(BEACON_VERSION) => {}
        Some(other) => {
            return Err(IntakeError::bad_request(
                "unsupported_version",
                format!("unsupported beacon version {other} (this server speaks v:1)"),
            ))
        }
        None => return Err(invalid("missing `v` (beacon format version, 1)")),
    }
    let entries = match beacon.events {
        Some(WireEvents::Array { entries, count }) => {
            if count > limits.max_events {
                return Err(IntakeError::new(
                    http::StatusCode::PAYLOAD_TOO_LARGE,
                    "too_many_events",
                    format!(
                        "{count} events in one beacon; max_events_per_beacon is {}",
                        limits.max_events
                    ),
                ));
            }
            entries
        }
        Some(WireEvents::NotArray) => return Err(invalid("`events` must be an array")),
        None => return Err(invalid("missing `events`")),
    };
    let mut times = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let WireEntry::Object(entry) = entry else {
            return Err(invalid(format!("events[{i}] is not an object")));
        };
        match entry.iter().find(|(k, _)| k == "type") {
            Some((_, Value::String(_))) => {}
            _ => return Err(invalid(format!("events[{i}].type must be a string"))),
        }
        times.push(match entry.iter().find(|(k, _)| k == "ts") {
            None => None,
            Some((_, Value::Number(n))) => Some(n.as_f64().unwrap_or(0.0) as i64),
            Some(_) => {
                return Err(invalid(format!(
                    "events[{i}].ts must be epoch milliseconds"
                )))
            }
        });
    }
    let sent_at = match &beacon.sent_at {
        None => times.iter().flatten().max().copied(),
        Some(Value::Number(n)) => n.as_f64().map(|f| f as i64),
        Some(_) => return Err(invalid("`sent_at` must be epoch milliseconds")),
    };

    let ids = &*CONTEXT_IDS;
    let mut context = Context::new();
    context.set_event_kind();
    context.set_received_ms(facts.received_at_ms);
    context.set(ids.beacon_version, BEACON_VERSION);
    context.set_client_address(facts.client_ip);
    if let Some(ip) = limits.client_ip.stored(facts.client_ip) {
        context.set(ids.client_ip, ip);
    }
    if let Some(ua) = facts.user_agent {
        context.set(ids.user_agent, ua);
    }
    if let Some(app) = beacon.app {
        copy_strings(
            &mut context,
            "app",
            app,
            &[
                ("name", ids.service_name),
                ("version", ids.service_version),
                ("env", ids.service_environment),
            ],
        )?;
    }
    if let Some(session) = beacon.session {
        copy_strings(&mut context, "session", session, &[("id", ids.session_id)])?;
    }
    let mut page_url = None;
    if let Some(view) = beacon.view {
        page_url = apply_view(&mut ViewTarget::Context(&mut context), view)?;
    }
    if let Some(device) = beacon.device {
        apply_device(&mut context, device)?;
    }
    match beacon.ua_hints {
        Some(value @ Value::Object(_)) => context.set(ids.ua_hints, value),
        None | Some(Value::Null) => {}
        Some(_) => return Err(invalid("`ua_hints` must be an object")),
    }
    if context.get_id(ids.ua_hints).is_none() && !facts.client_hints.is_empty() {
        let hints: Map<String, Value> = facts
            .client_hints
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        context.set(ids.ua_hints, Value::Object(hints));
    }

    if context.byte_size() > limits.max_context_bytes {
        return Err(IntakeError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "context_too_large",
            format!(
                "the beacon's shared context (URL, title, referrer, User-Agent, ua_hints) holds {} bytes; max_context_bytes is {}",
                context.byte_size(),
                limits.max_context_bytes
            ),
        ));
    }
    // One shared context for all of the beacon's events.
    let context = Arc::new(context);
    // `sent_at` is the client's: any f64, saturated to i64 (a debug build panicked on
    // -9223372036854775809 here, found by bench/fuzz.py seed 11 request 95008).
    let offset = sent_at
        .map(|sent| facts.received_at_ms.saturating_sub(sent))
        .unwrap_or(0);
    let earliest = facts.received_at_ms.saturating_sub(limits.max_event_age_ms);
    let mut unknown_types = 0;
    let mut events = Vec::with_capacity(entries.len());
    for (seq, (entry, ts)) in entries.into_iter().zip(times).enumerate() {
        let WireEntry::Object(entry) = entry else {
            continue;
        };
        let at = ts
            .map(|ts| {
                ts.saturating_add(offset)
                    .clamp(earliest, facts.received_at_ms)
            })
            .unwrap_or(facts.received_at_ms);
        let (event, unknown) = build_event(&context, at, ts, seq, entry)?;
        unknown_types += usize::from(unknown);
        events.push(event);
    }
    Ok(Decoded {
        events,
        page_url,
        unknown_types,
        ignored_keys: beacon.ignored_keys,
    })
}

/// Slot ids of the context fields, resolved once.
struct ContextIds {
    beacon_version: FieldId,
    client_ip: FieldId,
    user_agent: FieldId,
    service_name: FieldId,
    service_version: FieldId,
    service_environment: FieldId,
    session_id: FieldId,
    view_id: FieldId,
    view_title: FieldId,
    referrer: FieldId,
    ua_hints: FieldId,
    seq: FieldId,
    extra: FieldId,
    original_type: FieldId,
}

static CONTEXT_IDS: LazyLock<ContextIds> = LazyLock::new(|| ContextIds {
    beacon_version: FieldId::of("rum.beacon_version"),
    client_ip: FieldId::of(schema::CLIENT_IP),
    user_agent: FieldId::of(schema::USER_AGENT_ORIGINAL),
    service_name: FieldId::of(schema::SERVICE_NAME),
    service_version: FieldId::of(schema::SERVICE_VERSION),
    service_environment: FieldId::of(schema::SERVICE_ENVIRONMENT),
    session_id: FieldId::of(schema::SESSION_ID),
    view_id: FieldId::of(schema::VIEW_ID),
    view_title: FieldId::of(schema::VIEW_TITLE),
    referrer: FieldId::of(schema::HTTP_REFERRER),
    ua_hints: FieldId::of(schema::RUM_UA_HINTS),
    seq: FieldId::of(schema::RUM_SEQ),
    extra: FieldId::of(schema::RUM_EXTRA),
    original_type: FieldId::of("rum.custom.original_type"),
});

/// Each event type's beacon keys with the slot and type they land in.
/// A beacon key, the slot it lands in, and the type the value must have.
type PayloadSlot = (&'static str, FieldId, FieldType);

static PAYLOAD_SLOTS: LazyLock<Vec<Vec<PayloadSlot>>> = LazyLock::new(|| {
    EventType::ALL
        .iter()
        .map(|t| {
            t.payload_fields()
                .iter()
                .map(|p| (p.key, FieldId::of(p.field.path), p.field.ty))
                .collect()
        })
        .collect()
});

fn payload_slots(ty: EventType) -> &'static [PayloadSlot] {
    let i = EventType::ALL.iter().position(|t| *t == ty).unwrap_or(0);
    &PAYLOAD_SLOTS[i]
}

fn copy_strings(
    context: &mut Context,
    what: &str,
    value: Value,
    keys: &[(&str, FieldId)],
) -> Result<(), IntakeError> {
    let Value::Object(mut map) = value else {
        return Err(invalid(format!("`{what}` must be an object")));
    };
    for (key, id) in keys {
        match map.remove(*key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => context.set(*id, s),
            Some(_) => return Err(invalid(format!("`{what}.{key}` must be a string"))),
        }
    }
    Ok(())
}

/// Where a `view` lands: the beacon's context, or one event that belongs to
/// another view than the beacon's.
enum ViewTarget<'a> {
    Context(&'a mut Context),
    /// An event's own fields being built: `None` hides the beacon's value.
    Fields(&'a mut Vec<(FieldId, Option<FieldValue>)>),
}

impl ViewTarget<'_> {
    fn set(&mut self, id: FieldId, value: Value) {
        match self {
            ViewTarget::Context(c) => c.set(id, value),
            ViewTarget::Fields(f) => f.push((id, Some(value.into()))),
        }
    }

    fn remove(&mut self, id: FieldId) {
        match self {
            ViewTarget::Context(c) => {
                c.remove_id(id);
            }
            ViewTarget::Fields(f) => f.push((id, None)),
        }
    }
}

/// `view` → view.id, view.title, url.*, http.request.referrer. Returns the URL.
fn apply_view(target: &mut ViewTarget<'_>, value: Value) -> Result<Option<String>, IntakeError> {
    let Value::Object(mut map) = value else {
        return Err(invalid("`view` must be an object"));
    };
    let url = match map.remove("url") {
        Some(Value::String(url)) => Some(url),
        None | Some(Value::Null) => None,
        Some(_) => return Err(invalid("`view.url` must be a string")),
    };
    let ids = &*CONTEXT_IDS;
    for (key, id) in [
        ("id", ids.view_id),
        ("title", ids.view_title),
        ("referrer", ids.referrer),
    ] {
        match map.remove(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => target.set(id, Value::String(s)),
            Some(_) => return Err(invalid(format!("`view.{key}` must be a string"))),
        }
    }
    if let Some(url) = &url {
        for (id, value) in url_fields(url) {
            match value {
                Some(value) => target.set(id, value),
                None => target.remove(id),
            }
        }
    }
    Ok(url)
}

fn apply_device(context: &mut Context, value: Value) -> Result<(), IntakeError> {
    let Value::Object(mut map) = value else {
        return Err(invalid("`device` must be an object"));
    };
    let number = |v: Option<Value>, name: &str| match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n)),
        Some(_) => Err(invalid(format!("`device.{name}` must be a number"))),
    };
    if let Some(n) = number(map.remove("memory"), "memory")? {
        context.set(FieldId::of("rum.device.memory"), n);
    }
    if let Some(n) = number(map.remove("cores"), "cores")? {
        context.set(FieldId::of("rum.device.cores"), n);
    }
    match map.remove("connection") {
        None | Some(Value::Null) => {}
        Some(Value::Object(mut c)) => {
            if let Some(Value::String(s)) = c.remove("effective_type") {
                context.set(FieldId::of("rum.connection.effective_type"), s);
            }
            if let Some(Value::Number(n)) = c.remove("rtt") {
                context.set(FieldId::of("rum.connection.rtt"), n);
            }
            if let Some(Value::Number(n)) = c.remove("downlink") {
                context.set(FieldId::of("rum.connection.downlink"), n);
            }
            if let Some(Value::Bool(b)) = c.remove("save_data") {
                context.set(FieldId::of("rum.connection.save_data"), b);
            }
        }
        Some(_) => return Err(invalid("`device.connection` must be an object")),
    }
    Ok(())
}

/// Maps one beacon entry's keys onto the event's slots. Keys the type does
/// not know, and values of the wrong JSON type, are kept under `rum.extra` (a
/// `flattened` field) instead of being dropped or breaking the mapping.
/// Returns whether the type was unknown.
fn build_event(
    context: &Arc<Context>,
    timestamp_ms: i64,
    client_ts_ms: Option<i64>,
    seq: usize,
    entry: Vec<(Cow<'_, str>, Value)>,
) -> Result<(Event, bool), IntakeError> {
    let type_name = entry
        .iter()
        .find(|(k, _)| k == "type")
        .and_then(|(_, v)| v.as_str())
        .unwrap_or_default();
    let (event_type, unknown) = match EventType::from_beacon(type_name) {
        Some(t) => (t, false),
        None => (EventType::Custom, true),
    };
    let original_type = unknown.then(|| type_name.chars().take(64).collect::<String>());
    let ids = &*CONTEXT_IDS;
    let mut fields: Vec<(FieldId, Option<FieldValue>)> = Vec::with_capacity(entry.len() + 4);
    fields.push((ids.seq, Some(FieldValue::Owned(Value::from(seq as u64)))));
    let slots = payload_slots(event_type);
    let mut extra = Map::new();
    for (key, value) in entry {
        match &*key {
            "type" | "ts" => continue,
            "view" => {
                // An event may belong to another view than the beacon's
                // (e.g. the final CLS of the page the SPA just left).
                apply_view(&mut ViewTarget::Fields(&mut fields), value)?;
                continue;
            }
            _ => {}
        }
        if value.is_null() {
            continue;
        }
        match slots.iter().find(|(k, _, _)| *k == key) {
            Some((_, id, ty)) if ty.accepts(&value) => {
                fields.push((*id, Some(FieldValue::Owned(value))))
            }
            _ => {
                extra.insert(key.into_owned(), value);
            }
        }
    }
    if let Some(original_type) = original_type {
        fields.push((ids.original_type, Some(original_type.into())));
    }
    if !extra.is_empty() {
        fields.push((ids.extra, Some(Value::Object(extra).into())));
    }
    let event = Event::from_parts(
        context.clone(),
        Some(timestamp_ms),
        client_ts_ms,
        event_type,
        fields,
    );
    Ok((event, unknown))
}

/// `2026-11-21T10:39:30.175Z`
pub fn iso_millis(ms: i64) -> String {
    let mut out = Vec::with_capacity(24);
    crate::event::write_iso_millis(ms, &mut out);
    String::from_utf8(out).unwrap_or_default()
}

// ---- the wire format, deserialized in one pass without a DOM ----
//
// Depth and string limits are enforced while parsing: every seed knows its
// depth (the beacon object is 1, as `check_json_shape` counts), every key
// and string is measured as it is read. A violation is recorded in `Limits`
// and aborts the parse; `decode` then answers with it.

/// A JSON body as text: an empty one is refused with the decoder's own
/// error, and UTF-8 is checked once for the whole body (fast on ASCII), so
/// the parser need not check every string.
pub(super) fn body_text(
    body: &[u8],
    invalid: fn(&'static str) -> IntakeError,
) -> Result<&str, IntakeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("empty body"));
    }
    std::str::from_utf8(body).map_err(|e| {
        IntakeError::bad_request(
            "invalid_json",
            format!("invalid JSON: body is not UTF-8 ({e})"),
        )
    })
}

/// The limits of one decode, and the first one broken. Shared with the
/// other JSON decoders of `sources` (`web_vitals_decoder`).
pub(super) struct Limits {
    max_string: usize,
    max_depth: usize,
    broken: std::cell::Cell<Option<Broken>>,
}

#[derive(Clone, Copy)]
enum Broken {
    TooDeep,
    TooLong,
}

impl Limits {
    pub(super) fn new(max_string: usize, max_depth: usize) -> Self {
        Self {
            max_string,
            max_depth,
            broken: std::cell::Cell::new(None),
        }
    }

    pub(super) fn string<E: de::Error>(&self, len: usize) -> Result<(), E> {
        if len > self.max_string {
            self.broken.set(Some(Broken::TooLong));
            return Err(E::custom("string longer than max_string_bytes"));
        }
        Ok(())
    }

    pub(super) fn container<E: de::Error>(&self, depth: usize) -> Result<(), E> {
        if depth > self.max_depth {
            self.broken.set(Some(Broken::TooDeep));
            return Err(E::custom("nested deeper than max_json_depth"));
        }
        Ok(())
    }

    pub(super) fn error(&self) -> Option<IntakeError> {
        Some(match self.broken.get()? {
            Broken::TooDeep => too_deep(self.max_depth),
            Broken::TooLong => IntakeError::bad_request(
                "string_too_long",
                format!(
                    "a string is longer than max_string_bytes ({})",
                    self.max_string
                ),
            ),
        })
    }
}

/// The top level of a beacon: known keys kept as small values, the events
/// as key/value lists, everything else checked, skipped and counted.
#[allow(clippy::large_enum_variant)] // one per request, on the stack
enum WireBeacon<'de> {
    Object(WireObject<'de>),
    NotObject,
}

#[derive(Default)]
struct WireObject<'de> {
    v: Option<Value>,
    sent_at: Option<Value>,
    events: Option<WireEvents<'de>>,
    app: Option<Value>,
    session: Option<Value>,
    view: Option<Value>,
    device: Option<Value>,
    ua_hints: Option<Value>,
    ignored_keys: usize,
}

enum WireEvents<'de> {
    Array {
        entries: Vec<WireEntry<'de>>,
        count: usize,
    },
    NotArray,
}

enum WireEntry<'de> {
    Object(Vec<(Cow<'de, str>, Value)>),
    NotObject,
}

/// A map key, borrowed from the body unless it holds escapes, and measured.
pub(super) struct Key<'l>(pub(super) &'l Limits);

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = Cow<'de, str>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string key")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.0.string(v.len())?;
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.0.string(v.len())?;
        Ok(Cow::Owned(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        self.0.string(v.len())?;
        Ok(Cow::Owned(v))
    }
}

/// Any JSON value at `depth`, within the limits.
pub(super) struct Bounded<'l> {
    pub(super) limits: &'l Limits,
    pub(super) depth: usize,
}

impl<'de> DeserializeSeed<'de> for Bounded<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Bounded<'_> {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.limits.string(v.len())?;
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.limits.string(v.len())?;
        Ok(Value::String(v))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.limits.container(self.depth)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.child())? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.limits.container(self.depth)?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Key(self.limits))? {
            let value = map.next_value_seed(self.child())?;
            out.insert(key.into_owned(), value);
        }
        Ok(Value::Object(out))
    }
}

impl<'l> Bounded<'l> {
    fn child(&self) -> Bounded<'l> {
        Bounded {
            limits: self.limits,
            depth: self.depth + 1,
        }
    }
}

/// Visits any JSON value; only the expected kind is kept, anything else
/// is reported as the `other` marker.
macro_rules! other_kinds {
    ($other:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($other)
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            self.0.string(v.len())?;
            Ok($other)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($other)
        }
    };
}

/// The beacon object itself (depth 1).
struct BeaconSeed<'l>(&'l Limits);

impl<'de> DeserializeSeed<'de> for BeaconSeed<'_> {
    type Value = WireBeacon<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BeaconSeed<'_> {
    type Value = WireBeacon<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a beacon object")
    }
    other_kinds!(WireBeacon::NotObject);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let inner = Bounded {
            limits: self.0,
            depth: 2,
        };
        while seq.next_element_seed(inner.child_at(2))?.is_some() {}
        Ok(WireBeacon::NotObject)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let limits = self.0;
        let value = || Bounded { limits, depth: 2 };
        let mut out = WireObject::default();
        while let Some(key) = map.next_key_seed(Key(limits))? {
            // A repeated key: the last one wins, as in a JSON object.
            match &*key {
                "v" => out.v = Some(map.next_value_seed(value())?),
                "sent_at" => out.sent_at = Some(map.next_value_seed(value())?),
                "events" => out.events = Some(map.next_value_seed(EventsSeed(limits))?),
                "app" => out.app = Some(map.next_value_seed(value())?),
                "session" => out.session = Some(map.next_value_seed(value())?),
                "view" => out.view = Some(map.next_value_seed(value())?),
                "device" => out.device = Some(map.next_value_seed(value())?),
                "ua_hints" => out.ua_hints = Some(map.next_value_seed(value())?),
                _ => {
                    // Not kept, but still within the limits.
                    map.next_value_seed(value())?;
                    out.ignored_keys += 1;
                }
            }
        }
        Ok(WireBeacon::Object(out))
    }
}

impl<'l> Bounded<'l> {
    fn child_at(&self, depth: usize) -> Bounded<'l> {
        Bounded {
            limits: self.limits,
            depth,
        }
    }
}

/// `events` (depth 2).
struct EventsSeed<'l>(&'l Limits);

impl<'de> DeserializeSeed<'de> for EventsSeed<'_> {
    type Value = WireEvents<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_> {
    type Value = WireEvents<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of events")
    }
    other_kinds!(WireEvents::NotArray);
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.0.container(2)?;
        while map.next_key_seed(Key(self.0))?.is_some() {
            map.next_value_seed(Bounded {
                limits: self.0,
                depth: 3,
            })?;
        }
        Ok(WireEvents::NotArray)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.0.container(2)?;
        let mut entries = Vec::with_capacity(seq.size_hint().unwrap_or(16).min(64));
        while let Some(entry) = seq.next_element_seed(EntrySeed(self.0))? {
            entries.push(entry);
        }
        let count = entries.len();
        Ok(WireEvents::Array { entries, count })
    }
}

/// One entry of `events` (depth 3); its values are at depth 4.
struct EntrySeed<'l>(&'l Limits);

impl<'de> DeserializeSeed<'de> for EntrySeed<'_> {
    type Value = WireEntry<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for EntrySeed<'_> {
    type Value = WireEntry<'de>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an event object")
    }
    other_kinds!(WireEntry::NotObject);
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        self.0.container(3)?;
        while seq
            .next_element_seed(Bounded {
                limits: self.0,
                depth: 4,
            })?
            .is_some()
        {}
        Ok(WireEntry::NotObject)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.0.container(3)?;
        let mut pairs: Vec<(Cow<'de, str>, Value)> = Vec::with_capacity(12);
        while let Some(key) = map.next_key_seed(Key(self.0))? {
            let value = map.next_value_seed(Bounded {
                limits: self.0,
                depth: 4,
            })?;
            // A repeated key: the last one wins, as in a JSON object.
            match pairs.iter_mut().find(|(k, _)| *k == key) {
                Some(pair) => pair.1 = value,
                None => pairs.push((key, value)),
            }
        }
        Ok(WireEntry::Object(pairs))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    fn facts() -> RequestFacts<'static> {
        RequestFacts {
            received_at_ms: NOW,
            client_ip: "203.0.113.9".parse().unwrap(),
            user_agent: Some("Mozilla/5.0 test"),
            client_hints: vec![],
        }
    }

    fn limits() -> BeaconLimits {
        BeaconLimits {
            max_events: 10,
            max_string_bytes: 100,
            max_depth: 5,
            max_event_age_ms: 3_600_000,
            max_context_bytes: 64 * 1024,
            client_ip: crate::privacy::ClientIpMode::Full,
        }
    }

    fn decode_json(v: Value) -> Result<Decoded, IntakeError> {
        decode(v.to_string().as_bytes(), &facts(), &limits())
    }

    #[test]
    fn fans_out_with_context_and_skew_correction() {
        // The browser clock runs 10 s ahead: sent_at is NOW + 10 s.
        let decoded = decode_json(json!({
            "v": 1,
            "app": {"name": "shop", "version": "1.2", "env": "prod"},
            "session": {"id": "s1"},
            "view": {"id": "v1", "url": "https://shop.example.com:8443/p/1?q=2#top", "referrer": "https://google.com/"},
            "sent_at": NOW + 10_000,
            "events": [
                {"type": "web_vital", "ts": NOW + 9_000, "name": "LCP", "value": 1234.5, "rating": "good"},
                {"type": "error", "ts": NOW + 8_000, "message": "boom", "name": "TypeError", "stack": "at x", "line": "oops"},
                {"type": "teleport", "ts": NOW + 10_000, "foo": 1}
            ]
        }))
        .unwrap();
        assert_eq!(decoded.events.len(), 3);
        assert_eq!(decoded.unknown_types, 1);
        let [vital, error, custom] = &decoded.events[..] else {
            panic!()
        };
        assert_eq!(vital.timestamp_ms(), Some(NOW - 1_000));
        assert_eq!(error.timestamp_ms(), Some(NOW - 2_000));
        assert_eq!(vital.get("rum.vital.value"), Some(&json!(1234.5)));
        assert_eq!(vital.get_str("event.dataset"), Some("rum.web_vital"));
        assert_eq!(vital.get_str("service.name"), Some("shop"));
        assert_eq!(vital.get_str("url.domain"), Some("shop.example.com"));
        assert_eq!(vital.get("url.port"), Some(&json!(8443)));
        assert_eq!(vital.get_str("url.query"), Some("q=2"));
        assert_eq!(
            vital.get_str("http.request.referrer"),
            Some("https://google.com/")
        );
        assert_eq!(vital.get_str("client.ip"), Some("203.0.113.9"));
        assert_eq!(error.get_str("error.type"), Some("TypeError"));
        // Wrong-typed values are kept aside, not dropped.
        assert_eq!(error.get("rum.extra.line"), Some(&json!("oops")));
        assert_eq!(error.get("rum.seq"), Some(&json!(1)));
        assert_eq!(custom.get_str("rum.type"), Some("custom"));
        assert_eq!(custom.get_str("rum.custom.original_type"), Some("teleport"));
        assert_eq!(custom.get("rum.extra.foo"), Some(&json!(1)));
    }

    #[test]
    fn sent_at_and_ts_at_the_ends_of_i64_are_clamped_not_overflowed() {
        for sent_at in [
            "-9223372036854775809",
            "-9223372036854775808",
            "-1e300",
            "9223372036854775807",
            "1e300",
            "-0",
        ] {
            for ts in [
                "-9223372036854775809",
                "9223372036854775807",
                "-1e300",
                "1e300",
                "0",
            ] {
                let body = format!(
                    r#"{{"v":1,"sent_at":{sent_at},"events":[{{"type":"action","ts":{ts}}}]}}"#
                );
                let decoded = decode(body.as_bytes(), &facts(), &limits())
                    .unwrap_or_else(|e| panic!("sent_at {sent_at}, ts {ts}: {e:?}"));
                let at = decoded.events[0].timestamp_ms().unwrap();
                assert!(
                    (NOW - 3_600_000..=NOW).contains(&at),
                    "sent_at {sent_at}, ts {ts}: @timestamp {at}"
                );
            }
        }
    }

    #[test]
    fn the_clients_seq_replaces_the_position_in_the_beacon() {
        let decoded = decode_json(json!({
            "v": 1,
            "events": [{"type": "action", "seq": 41}, {"type": "web_vital", "seq": 42}, {"type": "error"}, {"type": "http", "seq": "x"}]
        }))
        .unwrap();
        let seqs: Vec<_> = decoded
            .events
            .iter()
            .map(|e| e.get("rum.seq").cloned())
            .collect();
        assert_eq!(
            seqs,
            [
                Some(json!(41)),
                Some(json!(42)),
                Some(json!(2)),
                Some(json!(3))
            ]
        );
        assert_eq!(decoded.events[3].get("rum.extra.seq"), Some(&json!("x")));
        assert!(decoded.events[0].get("rum.extra").is_none());
    }

    #[test]
    fn times_are_clamped_to_the_receive_window() {
        let decoded = decode_json(json!({
            "v": 1, "sent_at": NOW,
            "events": [{"type": "action", "ts": NOW + 999_999_999}, {"type": "action", "ts": 0}, {"type": "action"}]
        }))
        .unwrap();
        let times: Vec<i64> = decoded
            .events
            .iter()
            .map(|e| e.timestamp_ms().unwrap())
            .collect();
        assert_eq!(times, [NOW, NOW - 3_600_000, NOW]);
    }

    #[test]
    fn refuses_bad_beacons_whole() {
        let cases = [
            (json!([1, 2]), "invalid_beacon"),
            (json!({"events": []}), "invalid_beacon"),
            (json!({"v": 2, "events": []}), "unsupported_version"),
            (json!({"v": 1, "events": {}}), "invalid_beacon"),
            (json!({"v": 1, "events": [1]}), "invalid_beacon"),
            (json!({"v": 1, "events": [{"ts": 1}]}), "invalid_beacon"),
            (
                json!({"v": 1, "events": [{"type": "action", "ts": "yesterday"}]}),
                "invalid_beacon",
            ),
            (
                json!({"v": 1, "app": {"name": 5}, "events": []}),
                "invalid_beacon",
            ),
            (
                json!({"v": 1, "events": [{"type": "a", "x": "y".repeat(101)}]}),
                "string_too_long",
            ),
            (
                json!({"v": 1, "events": [{"type": "a", "x": [[[[[1]]]]]}]}),
                "too_deep",
            ),
            (
                json!({"v": 1, "events": vec![json!({"type": "action"}); 11]}),
                "too_many_events",
            ),
        ];
        for (body, error_type) in cases {
            let err = decode_json(body.clone()).unwrap_err();
            assert_eq!(err.error_type, error_type, "{body}");
        }
        for raw in [&b"{\"v\":1,"[..], b"\xff\xfe", b"", b"   "] {
            let err = decode(raw, &facts(), &limits()).unwrap_err();
            assert_eq!(err.status, http::StatusCode::BAD_REQUEST);
        }
        let invalid_utf8 = b"{\"v\":1,\"events\":[{\"type\":\"a\",\"x\":\"\xff\"}]}";
        assert_eq!(
            decode(invalid_utf8, &facts(), &limits())
                .unwrap_err()
                .error_type,
            "invalid_json"
        );
    }

    #[test]
    fn header_client_hints_fill_in_when_the_beacon_has_none() {
        let mut f = facts();
        f.client_hints = vec![("sec_ch_ua_platform", "\"Windows\"")];
        let decoded = decode(br#"{"v":1,"events":[{"type":"action"}]}"#, &f, &limits()).unwrap();
        assert_eq!(
            decoded.events[0].get_str("rum.ua_hints.sec_ch_ua_platform"),
            Some("\"Windows\"")
        );
    }
}
