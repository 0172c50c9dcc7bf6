//! Beacon format v1 → events. A beacon carries shared context (app, session,
//! view, device) and many events; each event becomes one document carrying
//! that context under the ECS names of `schema`, with its time corrected for
//! the browser's clock skew. A beacon is taken whole or refused whole: no
//! event of a bad beacon is half-written.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::LazyLock;

use http::HeaderName;
use serde_json::{Map, Number, Value};

use crate::event::{
    push_within, Context, ContextFill, Counted, Credit, Event, FieldId, FieldValue, PackedSlots,
    SlotBlock, TextBlockBuilder, PACKED_SLOT_BYTES,
};
use crate::privacy::ClientIpMode;
use crate::schema::{self, EventType, FieldType};
use crate::sources::decode_error::DecodeError;
use crate::sources::json_scan::{KeyBytes, Scanner};
use crate::str_index::StrIndex;

mod bounded;
#[cfg(test)]
mod tests;
mod wire;

// The bounded JSON reading every decoder of `sources` shares, and the URL
// helpers that lived here: code written against these paths keeps working.
use crate::url_parts::{for_each_url_field, UrlPart};
pub use crate::url_parts::{set_url_fields, url_fields};
pub(in crate::sources) use bounded::{body_text, utf8, Limits, PairList};
use wire::{
    read_beacon, KeyGuesses, Known, WireEntry, WireEvents, WireObject, APP_KEYS, NO_GUESS,
    SESSION_KEYS, VIEW_KEYS,
};

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
    /// Events whose time, corrected by `sent_at`, fell outside
    /// [received − `max_event_age`, received] and was clamped to it: a
    /// client sending `ts` in seconds, or a clock far off, shows here.
    pub clamped_times: usize,
}

pub const BEACON_VERSION: u64 = 1;

/// Request headers copied into `rum.ua_hints` when the beacon has no `ua_hints`.
/// Names built once: a lookup by `&str` parses the name on every request.
pub static CLIENT_HINT_HEADERS: LazyLock<[(HeaderName, &str); 6]> = LazyLock::new(|| {
    [
        (HeaderName::from_static("sec-ch-ua"), "sec_ch_ua"),
        (
            HeaderName::from_static("sec-ch-ua-mobile"),
            "sec_ch_ua_mobile",
        ),
        (
            HeaderName::from_static("sec-ch-ua-platform"),
            "sec_ch_ua_platform",
        ),
        (
            HeaderName::from_static("sec-ch-ua-platform-version"),
            "sec_ch_ua_platform_version",
        ),
        (
            HeaderName::from_static("sec-ch-ua-model"),
            "sec_ch_ua_model",
        ),
        (
            HeaderName::from_static("sec-ch-ua-full-version-list"),
            "sec_ch_ua_full_version_list",
        ),
    ]
});

fn invalid(message: impl Into<String>) -> DecodeError {
    DecodeError::invalid("invalid_beacon", message)
}

pub fn decode(
    body: &[u8],
    facts: &RequestFacts<'_>,
    limits: &BeaconLimits,
) -> Result<Decoded, DecodeError> {
    let text = body_text(body, invalid)?;
    let checks = Limits::new(limits.max_string_bytes, limits.max_depth);
    let mut scanner = Scanner::new(text, &checks);
    // The string values of the context and of the events, in one block that
    // travels with them: filled when this is dropped, before anything reads
    // them (the context's byte count below is the first).
    let mut strings = TextBlockBuilder::default();
    let mut beacon = WireObject::default();
    let is_object = read_beacon(&mut scanner, &mut strings, limits.max_events, &mut beacon)
        .and_then(|is_object| scanner.end().map(|()| is_object))
        .map_err(|e| scanner.decode_error(e, limits.max_depth))?;
    if !is_object {
        return Err(invalid("a beacon is a JSON object"));
    }

    match &beacon.v {
        Some(Value::Number(n)) if n.as_u64() == Some(BEACON_VERSION) => {}
        Some(other) => {
            // Named, not echoed: `v` may be as large as the body.
            let text = other.to_string();
            let named = match text.char_indices().nth(40) {
                Some((cut, _)) => format!("{}…", &text[..cut]),
                None => text,
            };
            return Err(DecodeError::invalid(
                "unsupported_version",
                format!("unsupported beacon version {named} (this server speaks v:1)"),
            ));
        }
        None => return Err(invalid("missing `v` (beacon format version, 1)")),
    }
    let (mut entries, slots, others, heap_bytes) = match beacon.events {
        Some(WireEvents::Array {
            entries,
            count,
            slots,
            others,
            heap_bytes,
        }) => {
            if count > limits.max_events {
                return Err(DecodeError::too_large(
                    "too_many_events",
                    format!(
                        "{count} events in one beacon; max_events_per_beacon is {}",
                        limits.max_events
                    ),
                ));
            }
            (entries, slots, others, heap_bytes)
        }
        Some(WireEvents::NotArray) => return Err(invalid("`events` must be an array")),
        None => return Err(invalid("missing `events`")),
    };
    // Every entry checked before any event is made; the latest time for a
    // beacon that says not when it was sent. (Each entry's time is read
    // again below: a list of them was an allocation a beacon.)
    let mut latest = None;
    for (i, entry) in entries.iter().enumerate() {
        if let WireEntry::Object(entry) = entry {
            match entry.iter().find(|(k, _)| k == "type") {
                Some((_, Value::String(_))) => {}
                _ => return Err(invalid(format!("events[{i}].type must be a string"))),
            }
        }
        let ts = entry_time(entry).map_err(|()| match entry {
            WireEntry::NotObject => invalid(format!("events[{i}] is not an object")),
            _ => invalid(format!("events[{i}].ts must be epoch milliseconds")),
        })?;
        latest = latest.max(ts);
    }
    let sent_at = match &beacon.sent_at {
        None => latest,
        Some(Value::Number(n)) => n.as_f64().map(|f| f as i64),
        Some(_) => return Err(invalid("`sent_at` must be epoch milliseconds")),
    };

    // The context objects' strings, each checked before any is set (a
    // bad one refuses the beacon, in the order they are listed here)...
    let app = context_strings("app", beacon.app.as_ref(), &APP_KEYS)?;
    let session = context_strings("session", beacon.session.as_ref(), &SESSION_KEYS)?;
    let [url, view_id, title, referrer] =
        context_strings("view", beacon.view.as_ref(), &VIEW_KEYS)?;
    // ...then the fields set in id order (`client.ip`, `event.kind`,
    // `http.*`, `rum.*`, `service.*`, `session.id`, `url.*`, `user_agent.*`,
    // `view.*`): each pushed past the last, none inserted.
    let ids = &*CONTEXT_IDS;
    let mut context = Context::for_request();
    context.set_client_address(facts.client_ip);
    context.set_received_ms(facts.received_at_ms);
    // The byte size summed on the way (`ContextFill`).
    let mut fill = context.fill();
    if let Some(ip) = limits.client_ip.stored_text(facts.client_ip) {
        fill.set_text(ids.client_ip, &mut strings, &ip);
    }
    fill.set_event_kind();
    if let Some(referrer) = referrer {
        fill.set_text(ids.referrer, &mut strings, referrer);
    }
    fill.set(ids.beacon_version, BEACON_VERSION);
    let mut ignored_keys = beacon.ignored_keys;
    if let Some(device) = beacon.device {
        ignored_keys += apply_device(&mut fill, device)?;
    }
    match beacon.ua_hints {
        Some(value @ Value::Object(_)) => fill.set(ids.ua_hints, value),
        None | Some(Value::Null) => {}
        Some(_) => return Err(invalid("`ua_hints` must be an object")),
    }
    if !fill.has_id(ids.ua_hints) && !facts.client_hints.is_empty() {
        let hints: Map<String, Value> = facts
            .client_hints
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        fill.set(ids.ua_hints, Value::Object(hints));
    }
    let app_ids = [
        ids.service_name,
        ids.service_version,
        ids.service_environment,
    ];
    for (id, text) in app_ids
        .into_iter()
        .zip(app)
        .chain([(ids.session_id, session[0])])
    {
        if let Some(text) = text {
            fill.set_text(id, &mut strings, text);
        }
    }
    if let Some(url) = url {
        view_url_fields(&mut ViewTarget::Context(&mut fill, &mut strings), url);
    }
    if let Some(ua) = facts.user_agent {
        fill.set_text(ids.user_agent, &mut strings, ua);
    }
    for (id, text) in [(ids.view_id, view_id), (ids.view_title, title)] {
        if let Some(text) = text {
            fill.set_text(id, &mut strings, text);
        }
    }
    // For the access log.
    let page_url = url.map(str::to_owned);

    // The events' packed strings refer to the block through this one
    // reference.
    let text = (strings.pushed_count() > 0).then(|| strings.block());
    drop(strings);
    let context_bytes = fill.byte_size();
    if context_bytes > limits.max_context_bytes {
        return Err(DecodeError::too_large("context_too_large",
            format!(
                "the beacon's shared context (URL, title, referrer, User-Agent, ua_hints) holds {} bytes; max_context_bytes is {}",
                context_bytes,
                limits.max_context_bytes
            ),
        ));
    }
    // One shared context for all of the beacon's events, its references
    // handed out on credit (no atomic write an event: `event::counted`).
    let mut context = Credit::new(context);
    // `sent_at` is the client's: any f64, saturated to i64 (a debug build panicked on
    // -9223372036854775809 here, found by bench/fuzz.py seed 11 request 95008).
    let offset = sent_at
        .map(|sent| facts.received_at_ms.saturating_sub(sent))
        .unwrap_or(0);
    let earliest = facts.received_at_ms.saturating_sub(limits.max_event_age_ms);
    let mut unknown_types = 0;
    let mut clamped_times = 0;
    let mut events = Vec::with_capacity(entries.len());
    // Summed as they were read: no buffer walks the block to count it.
    let block_bytes = slots.len() * PACKED_SLOT_BYTES + heap_bytes;
    // The slotted entries' slots, one block of their exact size for all.
    let mut slots = SlotBlock::packed(PackedSlots::new(slots, text, others));
    // The entries by reference, an entry read as pairs taken out of its
    // place: moved whole through the iterators, each cost ~40 instructions.
    for (seq, entry) in entries.iter_mut().enumerate() {
        // Checked above: not an error here.
        let ts = entry_time(entry).unwrap_or(None);
        let at = match ts {
            Some(ts) => {
                let corrected = ts.saturating_add(offset);
                // Not `clamp`, which was a call (its check that the bounds
                // are in order can panic) and is not needed: `earliest` is
                // never past the receipt.
                let at = corrected.max(earliest).min(facts.received_at_ms);
                clamped_times += usize::from(at != corrected);
                at
            }
            None => facts.received_at_ms,
        };
        // Room for every entry was made. The event is made where it goes
        // (`push_within`): made first, it was copied there from the stack.
        match entry {
            WireEntry::Slotted(slotted) => {
                unknown_types += usize::from(slotted.unknown_type);
                Event::push_in_counted_block(
                    &mut events,
                    context.hand_out(),
                    Some(at),
                    slotted.ts,
                    slots.hand_out(),
                    slotted.slots.clone(),
                    Some(block_bytes),
                );
            }
            WireEntry::Object(entry) => {
                let (event, unknown) =
                    build_event(context.hand_out(), at, ts, seq, std::mem::take(entry))?;
                unknown_types += usize::from(unknown);
                push_within(&mut events, || event);
            }
            WireEntry::NotObject => continue,
        }
    }
    // No entry owns anything now (an object's pairs were taken above): the
    // list is freed without its drop walking it (~100 instructions).
    // SAFETY: a length of 0 is always within the list; nothing is leaked.
    unsafe { entries.set_len(0) };
    Ok(Decoded {
        events,
        page_url,
        unknown_types,
        ignored_keys,
        clamped_times,
    })
}

/// An entry's `ts` (epoch milliseconds) as sent; `Err` when it is not a
/// number or the entry not an object.
#[inline(always)]
fn entry_time(entry: &WireEntry<'_>) -> Result<Option<i64>, ()> {
    match entry {
        WireEntry::Slotted(slotted) => Ok(slotted.ts),
        WireEntry::Object(entry) => match entry.iter().find(|(k, _)| k == "ts") {
            None => Ok(None),
            Some((_, Value::Number(n))) => Ok(Some(n.as_f64().unwrap_or(0.0) as i64)),
            Some(_) => Err(()),
        },
        WireEntry::NotObject => Err(()),
    }
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
    error_count: FieldId,
    device_memory: FieldId,
    device_cores: FieldId,
    connection_effective_type: FieldId,
    connection_rtt: FieldId,
    connection_downlink: FieldId,
    connection_save_data: FieldId,
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
    error_count: FieldId::of("rum.error.count"),
    device_memory: FieldId::of("rum.device.memory"),
    device_cores: FieldId::of("rum.device.cores"),
    connection_effective_type: FieldId::of("rum.connection.effective_type"),
    connection_rtt: FieldId::of("rum.connection.rtt"),
    connection_downlink: FieldId::of("rum.connection.downlink"),
    connection_save_data: FieldId::of("rum.connection.save_data"),
});

/// Whether a payload value goes into its slot (`id`, of type `ty`) rather
/// than into `rum.extra`: of the slot's type, and an error's `count` at
/// least 1. Dashboards sum `rum.error.count` (an error stands for that many
/// occurrences, 1 when not sent: [`Event::type_default`]), so a count of
/// zero or below, which no client sends, would take them down.
fn fits_slot(id: FieldId, ty: FieldType, value: &Value) -> bool {
    fits_slot_counted(id, ty, value, CONTEXT_IDS.error_count)
}

/// [`fits_slot`] with `rum.error.count`'s id at hand: the fast path reads
/// it from its [`SlotTable`], not through the `LazyLock`. A count is a
/// number, so only a number can fit its slot.
#[inline]
fn fits_slot_counted(id: FieldId, ty: FieldType, value: &Value, error_count: FieldId) -> bool {
    match value {
        Value::Number(n) => fits_number_counted(id, ty, n, error_count),
        value => id != error_count && ty.accepts(value),
    }
}

/// [`fits_slot_counted`] of a number, without making a `Value` of it.
#[inline]
fn fits_number_counted(id: FieldId, ty: FieldType, n: &Number, error_count: FieldId) -> bool {
    ty.accepts_number(n) && (id != error_count || n.as_i64().is_some_and(|count| count >= 1))
}

/// Each event type's beacon keys with the slot and type they land in.
/// A beacon key, the slot it lands in, and the type the value must have.
type PayloadSlot = (&'static str, FieldId, FieldType);

/// One event type's payload slots, found by key, and the places in id
/// order of every slot an entry of the type can have: the fast path
/// (`wire::read_slots`) puts each value at its place and keeps the filled
/// ones, in id order without a sort.
pub(super) struct SlotTable {
    pub(super) slots: Vec<PayloadSlot>,
    keys: StrIndex,
    /// Every id an entry of the type can hold, sorted: the payload's and
    /// the fixed ones (`event.dataset`, `rum.type`, `rum.seq`, `rum.extra`,
    /// `rum.custom.original_type`, the type's default). Each once: a
    /// payload slot of a fixed id (`seq`, `original_type`, an error's
    /// `count`) shares its place.
    pub(super) ids: [FieldId; wire::MAX_PLACES],
    /// `event.dataset`'s and `rum.type`'s values ([`Event::type_slots`]).
    pub(super) dataset: &'static Value,
    pub(super) type_name: &'static Value,
    /// What the fast path needs of `slots[i]`, together: one bounds check
    /// and one line read a key, not one for each of three lists.
    pub(super) info: Vec<SlotInfo>,
    pub(super) fixed: FixedPlaces,
    /// `rum.custom.original_type` and `rum.error.count`, the two payload
    /// slots the fast path treats apart, at hand (see `fits_slot_counted`).
    pub(super) original_type: FieldId,
    pub(super) error_count: FieldId,
    /// Each payload slot's key as a body has it (`slots[i]`'s), for
    /// [`Scanner::key_is`]: `None` for one longer than `KeyBytes` holds.
    pub(super) key_bytes: Vec<Option<KeyBytes>>,
    /// `"ts"` and `"type"`, the keys every entry sends.
    pub(super) ts_key: KeyBytes,
    pub(super) type_key: KeyBytes,
    /// The type's own name as a body has it (`"web_vital"`), for the value
    /// of an entry's `type` ([`Scanner::string_is`]).
    pub(super) name_bytes: KeyBytes,
    /// Per key position after `type`, the key the type's last entry had
    /// there ([`KeyGuess`] as a byte): checked as bytes first (`key_is`),
    /// not found, hashed and looked up.
    guesses: KeyGuesses<24>,
}

/// What [`SlotTable::guess`] expects at a key position.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) enum KeyGuess {
    /// The key of payload slot `i`.
    Slot(usize),
    Ts,
    /// No guess: another key was there last (or none yet).
    None,
}

/// `KeyGuess::Ts` as the byte kept (a slot's is its index).
const GUESS_TS: u8 = 254;

/// A payload slot as the fast path reads it (`SlotTable::info`).
#[derive(Clone, Copy)]
pub(super) struct SlotInfo {
    pub(super) id: FieldId,
    pub(super) ty: FieldType,
    /// Its place in the table's `ids`.
    pub(super) place: u8,
    /// Whether it takes any number as it is (a `double`, not an error's
    /// `count`): the fast path's most common value, kept with no further
    /// check.
    pub(super) any_number: bool,
}

/// The places in a [`SlotTable`]'s `ids` of the slots every entry may have.
pub(super) struct FixedPlaces {
    pub(super) dataset: u8,
    pub(super) rum_type: u8,
    pub(super) seq: u8,
    pub(super) extra: u8,
    pub(super) original_type: u8,
    /// Of [`Event::type_default`]'s slot, if the type has one.
    pub(super) default: Option<u8>,
}

impl SlotTable {
    fn new(ty: EventType, slots: Vec<PayloadSlot>) -> Self {
        let keys = StrIndex::new(slots.iter().map(|(k, _, _)| *k).collect());
        let [(dataset, dataset_value), (rum_type, type_value)] = Event::type_slots(ty);
        let shared = |value: Option<FieldValue>| match value {
            Some(FieldValue::Static(value)) => value,
            _ => unreachable!("`Event::type_slots` are static values"),
        };
        let ids = &*CONTEXT_IDS;
        let default = Event::type_default(ty).map(|(id, _)| id);
        let mut all: Vec<FieldId> = slots.iter().map(|(_, id, _)| *id).collect();
        all.extend([dataset, rum_type, ids.seq, ids.extra, ids.original_type]);
        all.extend(default);
        all.sort();
        all.dedup();
        assert!(
            all.len() <= wire::MAX_PLACES,
            "{} slots for {ty:?}",
            all.len()
        );
        let place = |id: FieldId| all.binary_search(&id).expect("listed above") as u8;
        let info = slots
            .iter()
            .map(|&(_, id, ty)| SlotInfo {
                id,
                ty,
                place: place(id),
                any_number: ty == FieldType::Double && id != ids.error_count,
            })
            .collect();
        let fixed = FixedPlaces {
            dataset: place(dataset),
            rum_type: place(rum_type),
            seq: place(ids.seq),
            extra: place(ids.extra),
            original_type: place(ids.original_type),
            default: default.map(place),
        };
        let key_bytes = slots.iter().map(|(key, _, _)| KeyBytes::new(key)).collect();
        let fixed_key = |key: &str| KeyBytes::new(key).expect("a short plain key");
        SlotTable {
            key_bytes,
            ts_key: fixed_key("ts"),
            type_key: fixed_key("type"),
            name_bytes: fixed_key(ty.as_str()),
            guesses: KeyGuesses::new(),
            slots,
            keys,
            // Past the type's own, never read.
            ids: std::array::from_fn(|i| all.get(i).copied().unwrap_or(dataset)),
            dataset: shared(dataset_value),
            type_name: shared(type_value),
            info,
            fixed,
            original_type: ids.original_type,
            error_count: ids.error_count,
        }
    }

    /// Whether `value` goes into slot `id` of type `ty` ([`fits_slot`]).
    #[inline]
    pub(super) fn fits(&self, id: FieldId, ty: FieldType, value: &Value) -> bool {
        fits_slot_counted(id, ty, value, self.error_count)
    }

    /// [`fits`](Self::fits) of a number, without making a `Value` of it.
    #[inline]
    pub(super) fn fits_number(&self, id: FieldId, ty: FieldType, n: &Number) -> bool {
        fits_number_counted(id, ty, n, self.error_count)
    }

    /// The index of `key`'s slot.
    #[inline]
    pub(super) fn find(&self, key: &str) -> Option<usize> {
        self.keys.find(key)
    }

    /// The key expected at `position` (0: the first after `type`).
    #[inline(always)]
    pub(super) fn guess(&self, position: usize) -> KeyGuess {
        match self.guesses.at(position) {
            GUESS_TS => KeyGuess::Ts,
            NO_GUESS => KeyGuess::None,
            i => KeyGuess::Slot(usize::from(i)),
        }
    }

    /// `found` was the key at `position`: the guess there from now on.
    #[inline]
    pub(super) fn learn(&self, position: usize, found: KeyGuess) {
        let byte = match found {
            KeyGuess::Slot(i) => u8::try_from(i)
                .ok()
                .filter(|&i| i < GUESS_TS)
                .unwrap_or(NO_GUESS),
            KeyGuess::Ts => GUESS_TS,
            KeyGuess::None => NO_GUESS,
        };
        self.guesses.learn(position, byte);
    }
}

static PAYLOAD_SLOTS: LazyLock<Vec<SlotTable>> = LazyLock::new(|| {
    EventType::ALL
        .iter()
        .map(|t| {
            SlotTable::new(
                *t,
                t.payload_fields()
                    .iter()
                    .map(|p| (p.key, FieldId::of(p.field.path), p.field.ty))
                    .collect(),
            )
        })
        .collect()
});

/// `EventType::ALL` lists the types in declaration order, so a type's
/// discriminant is its index there (`schema`'s tests hold it to that).
#[inline]
fn payload_slots(ty: EventType) -> &'static SlotTable {
    &PAYLOAD_SLOTS[ty as usize]
}

/// Every type's [`SlotTable`], by discriminant ([`payload_slots`]): looked
/// up once a beacon, not once an entry.
#[inline]
fn all_payload_slots() -> &'static [SlotTable] {
    &PAYLOAD_SLOTS
}

/// A context object's strings (`keys[i]`'s value at `i`), each a string
/// or absent (`null` too); `[None; N]` for an object not sent.
fn context_strings<'k, const N: usize>(
    what: &str,
    object: Option<&'k Option<[Option<Known<'_>>; N]>>,
    keys: &[&str; N],
) -> Result<[Option<&'k str>; N], DecodeError> {
    let mut out = [None; N];
    let Some(values) = object else {
        return Ok(out);
    };
    let Some(values) = values else {
        return Err(invalid(format!("`{what}` must be an object")));
    };
    for ((value, key), out) in values.iter().zip(keys).zip(&mut out) {
        match value.as_ref().map(Known::text) {
            None | Some(Ok(None)) => {}
            Some(Ok(Some(text))) => *out = Some(text),
            Some(Err(())) => return Err(invalid(format!("`{what}.{key}` must be a string"))),
        }
    }
    Ok(out)
}

/// Where a `view` lands: the beacon's context, or one event that belongs to
/// another view than the beacon's.
enum ViewTarget<'a, 'c> {
    /// The context, its strings into the request's block.
    Context(&'a mut ContextFill<'c>, &'a mut TextBlockBuilder),
    /// An event's own fields being built: `None` hides the beacon's value.
    Fields(&'a mut Vec<(FieldId, Option<FieldValue>)>),
}

impl ViewTarget<'_, '_> {
    /// A value that is not a string (the URL's port).
    fn set(&mut self, id: FieldId, value: Value) {
        match self {
            ViewTarget::Context(c, _) => c.set(id, value),
            ViewTarget::Fields(f) => f.push((id, Some(value.into()))),
        }
    }

    /// A string of the view: into the context's block as the body has it,
    /// not made a `String` of its own first.
    fn set_str(&mut self, id: FieldId, text: &str) {
        match self {
            ViewTarget::Context(c, strings) => c.set_text(id, strings, text),
            ViewTarget::Fields(f) => f.push((id, Some(Value::from(text).into()))),
        }
    }

    fn remove(&mut self, id: FieldId) {
        match self {
            ViewTarget::Context(c, _) => {
                c.remove_id(id);
            }
            ViewTarget::Fields(f) => f.push((id, None)),
        }
    }
}

/// An event's own `view` as the beacon's is read (`VIEW_KEYS`); its other
/// keys are kept in the event's `rum.extra.view`.
fn view_keys(
    value: Value,
    extra: &mut Map<String, Value>,
) -> Result<[Option<Known<'static>>; 4], DecodeError> {
    let Value::Object(mut map) = value else {
        return Err(invalid("`view` must be an object"));
    };
    let known = VIEW_KEYS.map(|key| map.remove(key).map(Known::Other));
    if !map.is_empty() {
        extra.insert("view".to_owned(), Value::Object(map));
    }
    Ok(known)
}

/// `view` (its `VIEW_KEYS`) → url.*, view.id, view.title, http.request.referrer.
/// Returns the URL.
fn apply_view(
    target: &mut ViewTarget<'_, '_>,
    view: [Option<Known<'_>>; 4],
) -> Result<Option<String>, DecodeError> {
    let view = Some(view);
    let [url, rest @ ..] = context_strings("view", Some(&view), &VIEW_KEYS)?;
    let ids = &*CONTEXT_IDS;
    for (text, id) in rest
        .into_iter()
        .zip([ids.view_id, ids.view_title, ids.referrer])
    {
        if let Some(text) = text {
            target.set_str(id, text);
        }
    }
    if let Some(url) = url {
        view_url_fields(target, url);
    }
    Ok(url.map(str::to_owned))
}

/// `url.*` of the page at `url`.
fn view_url_fields(target: &mut ViewTarget<'_, '_>, url: &str) {
    for_each_url_field(url, |id, part| match part {
        Some(UrlPart::Text(text)) => target.set_str(id, text),
        Some(UrlPart::Port(port)) => target.set(id, Value::from(port)),
        None => target.remove(id),
    });
}

/// `device` (its `DEVICE_KEYS`) → rum.device.*, rum.connection.*. Returns
/// how many of `connection`'s keys were ignored.
fn apply_device(
    context: &mut ContextFill<'_>,
    device: Option<[Option<Known<'_>>; 3]>,
) -> Result<usize, DecodeError> {
    let mut ignored = 0;
    let Some([memory, cores, connection]) = device.map(|d| d.map(|v| v.map(Known::into_value)))
    else {
        return Err(invalid("`device` must be an object"));
    };
    let number = |v: Option<Value>, name: &str| match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n)),
        Some(_) => Err(invalid(format!("`device.{name}` must be a number"))),
    };
    // Looked up once, not by name a beacon (the RUM client sends `device`
    // with every beacon).
    let ids = &*CONTEXT_IDS;
    if let Some(n) = number(memory, "memory")? {
        context.set(ids.device_memory, n);
    }
    if let Some(n) = number(cores, "cores")? {
        // A `long` in the index: a number it cannot hold would fail every
        // document of the beacon at Elasticsearch, after a 204.
        if !FieldType::Long.accepts(&Value::Number(n.clone())) {
            return Err(invalid(format!(
                "`device.cores` must be an integer (got {n})"
            )));
        }
        context.set(ids.device_cores, n);
    }
    match connection {
        None | Some(Value::Null) => {}
        Some(Value::Object(mut c)) => {
            // Network Information values are advisory: one of another type
            // is ignored and counted, as a key the format does not know is.
            match c.remove("effective_type") {
                Some(Value::String(s)) => context.set(ids.connection_effective_type, s),
                Some(Value::Null) | None => {}
                Some(_) => ignored += 1,
            }
            for (key, id) in [
                ("rtt", ids.connection_rtt),
                ("downlink", ids.connection_downlink),
            ] {
                match c.remove(key) {
                    Some(Value::Number(n)) => context.set(id, n),
                    Some(Value::Null) | None => {}
                    Some(_) => ignored += 1,
                }
            }
            match c.remove("save_data") {
                Some(Value::Bool(b)) => context.set(ids.connection_save_data, b),
                Some(Value::Null) | None => {}
                Some(_) => ignored += 1,
            }
            ignored += c.len();
        }
        Some(_) => return Err(invalid("`device.connection` must be an object")),
    }
    Ok(ignored)
}

/// Maps one beacon entry's keys onto the event's slots. Keys the type does
/// not know, and values of the wrong JSON type, are kept under `rum.extra` (a
/// `flattened` field) instead of being dropped or breaking the mapping.
/// Returns whether the type was unknown.
fn build_event(
    context: Counted<Context>,
    timestamp_ms: i64,
    client_ts_ms: Option<i64>,
    seq: usize,
    entry: Vec<(Cow<'_, str>, Value)>,
) -> Result<(Event, bool), DecodeError> {
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
                let view = view_keys(value, &mut extra)?;
                apply_view(&mut ViewTarget::Fields(&mut fields), view)?;
                continue;
            }
            _ => {}
        }
        if value.is_null() {
            continue;
        }
        match slots.find(&key).map(|i| &slots.slots[i]) {
            Some((_, id, ty)) if fits_slot(*id, *ty, &value) => {
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
        context,
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
