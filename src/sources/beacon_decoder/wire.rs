//! The beacon format on the wire, deserialized in one pass: the top level
//! keeps its known keys as small values and the events as key/value lists;
//! everything else is checked, skipped and counted.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::bounded::{Bounded, Key, Known, Limits, PairList};

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
pub(super) struct BeaconSeed<'l>(pub(super) &'l Limits);

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
                "app" => out.app = Some(map.next_value_seed(known(limits, &APP_KEYS))?),
                "session" => out.session = Some(map.next_value_seed(known(limits, &SESSION_KEYS))?),
                "view" => out.view = Some(map.next_value_seed(known(limits, &VIEW_KEYS))?),
                "device" => out.device = Some(map.next_value_seed(known(limits, &DEVICE_KEYS))?),
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

/// The keys kept of the beacon's context objects (the rest is checked and
/// skipped), in the order the decoder reads them.
pub(super) const APP_KEYS: [&str; 3] = ["name", "version", "env"];
pub(super) const SESSION_KEYS: [&str; 1] = ["id"];
pub(super) const VIEW_KEYS: [&str; 4] = ["url", "id", "title", "referrer"];
pub(super) const DEVICE_KEYS: [&str; 3] = ["memory", "cores", "connection"];

/// A context object at depth 2.
fn known<'l, const N: usize>(limits: &'l Limits, keys: &'static [&'static str; N]) -> Known<'l, N> {
    Known {
        limits,
        depth: 2,
        keys,
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
        let mut pairs = PairList::with_capacity(12);
        while let Some(key) = map.next_key_seed(Key(self.0))? {
            let value = map.next_value_seed(Bounded {
                limits: self.0,
                depth: 4,
            })?;
            pairs.push(key, value);
        }
        Ok(WireEntry::Object(pairs.finish()))
    }
}
