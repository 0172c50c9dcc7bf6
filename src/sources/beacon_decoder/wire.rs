//! The beacon format on the wire, read in one pass (`json_scan`): the top
//! level keeps its known keys as small values and the events as key/value
//! lists; everything else is checked, skipped and counted.

use std::borrow::Cow;

use serde_json::Value;

use super::bounded::PairList;
use crate::sources::json_scan::{Scan, Scanner};

/// The top level of a beacon: known keys kept as small values, the events
/// as key/value lists, everything else checked, skipped and counted.
#[allow(clippy::large_enum_variant)] // one per request, on the stack
pub(super) enum WireBeacon<'de> {
    Object(WireObject<'de>),
    NotObject,
}

#[derive(Default)]
pub(super) struct WireObject<'de> {
    pub(super) v: Option<Value>,
    pub(super) sent_at: Option<Value>,
    pub(super) events: Option<WireEvents<'de>>,
    /// `Some(None)`: present but not an object.
    pub(super) app: Option<Option<[Option<Value>; 3]>>,
    pub(super) session: Option<Option<[Option<Value>; 1]>>,
    pub(super) view: Option<Option<[Option<Value>; 4]>>,
    pub(super) device: Option<Option<[Option<Value>; 3]>>,
    pub(super) ua_hints: Option<Value>,
    pub(super) ignored_keys: usize,
}

pub(super) enum WireEvents<'de> {
    Array {
        entries: Vec<WireEntry<'de>>,
        count: usize,
    },
    NotArray,
}

pub(super) enum WireEntry<'de> {
    Object(Vec<(Cow<'de, str>, Value)>),
    NotObject,
}

/// The beacon object itself (depth 1).
pub(super) fn read_beacon<'de>(sc: &mut Scanner<'de, '_>) -> Scan<WireBeacon<'de>> {
    match sc.peek()? {
        b'{' => {}
        b'[' => {
            // Not a beacon, but its elements are still within the limits.
            sc.begin_array(1)?;
            let mut first = true;
            while sc.element(first)? {
                first = false;
                sc.skip(2)?;
            }
            return Ok(WireBeacon::NotObject);
        }
        _ => {
            sc.skip(1)?;
            return Ok(WireBeacon::NotObject);
        }
    }
    sc.begin_object(1)?;
    let mut out = WireObject::default();
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        // A repeated key: the last one wins, as in a JSON object.
        match &*key {
            "v" => out.v = Some(sc.value(2)?),
            "sent_at" => out.sent_at = Some(sc.value(2)?),
            "events" => out.events = Some(read_events(sc)?),
            "app" => out.app = Some(read_known(sc, 2, &APP_KEYS)?),
            "session" => out.session = Some(read_known(sc, 2, &SESSION_KEYS)?),
            "view" => out.view = Some(read_known(sc, 2, &VIEW_KEYS)?),
            "device" => out.device = Some(read_known(sc, 2, &DEVICE_KEYS)?),
            "ua_hints" => out.ua_hints = Some(sc.value(2)?),
            _ => {
                // Not kept, but still within the limits.
                sc.skip(2)?;
                out.ignored_keys += 1;
            }
        }
    }
    Ok(WireBeacon::Object(out))
}

/// The keys kept of the beacon's context objects (the rest is checked and
/// skipped), in the order the decoder reads them.
pub(super) const APP_KEYS: [&str; 3] = ["name", "version", "env"];
pub(super) const SESSION_KEYS: [&str; 1] = ["id"];
pub(super) const VIEW_KEYS: [&str; 4] = ["url", "id", "title", "referrer"];
pub(super) const DEVICE_KEYS: [&str; 3] = ["memory", "cores", "connection"];

/// An object at `depth` of which only `keys` are kept (in that order; a
/// repeated key: the last wins), the rest checked and skipped. `None` when
/// the value is not an object (still checked).
fn read_known<const N: usize>(
    sc: &mut Scanner<'_, '_>,
    depth: usize,
    keys: &'static [&'static str; N],
) -> Scan<Option<[Option<Value>; N]>> {
    if sc.peek()? != b'{' {
        sc.skip(depth)?;
        return Ok(None);
    }
    sc.begin_object(depth)?;
    let mut out: [Option<Value>; N] = std::array::from_fn(|_| None);
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        match keys.iter().position(|k| *k == key) {
            Some(i) => out[i] = Some(sc.value(depth + 1)?),
            None => sc.skip(depth + 1)?,
        }
    }
    Ok(Some(out))
}

/// `events` (depth 2).
fn read_events<'de>(sc: &mut Scanner<'de, '_>) -> Scan<WireEvents<'de>> {
    if sc.peek()? != b'[' {
        sc.skip(2)?;
        return Ok(WireEvents::NotArray);
    }
    sc.begin_array(2)?;
    let mut entries = Vec::with_capacity(16);
    let mut first = true;
    while sc.element(first)? {
        first = false;
        entries.push(read_entry(sc)?);
    }
    let count = entries.len();
    Ok(WireEvents::Array { entries, count })
}

/// One entry of `events` (depth 3); its values are at depth 4.
fn read_entry<'de>(sc: &mut Scanner<'de, '_>) -> Scan<WireEntry<'de>> {
    if sc.peek()? != b'{' {
        sc.skip(3)?;
        return Ok(WireEntry::NotObject);
    }
    sc.begin_object(3)?;
    let mut pairs = PairList::with_capacity(12);
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        let value = sc.value(4)?;
        pairs.push(key, value);
    }
    Ok(WireEntry::Object(pairs.finish()))
}
