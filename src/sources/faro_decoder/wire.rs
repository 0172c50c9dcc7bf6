//! The Faro payload on the wire, read in one pass within the limits: the
//! top level, the item arrays, each item's keys, times and nested maps.

use super::*;

//
// Depths as `check_json_shape` counts them: the body is 1, each kind's array
// 2, its items 3 and their values 4.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
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
    pub(super) fn check(self, index: usize, item: &Item<'_>) -> Result<(), DecodeError> {
        let wrong = |key: &str, what: &str| {
            invalid(format!("{}[{index}].{key} must be {what}", self.key()))
        };
        let need_string = |key: &str| match item.get(key) {
            Some(Json::String(_)) => Ok(()),
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

pub(super) struct Parse {
    pub(super) limits: Limits,
    pub(super) max_items: usize,
    /// Why the body was refused when it is not a limit (shape, count).
    pub(super) refused: RefCell<Option<DecodeError>>,
}

impl Parse {
    fn refuse<E: de::Error>(&self, error: DecodeError) -> E {
        let message = error.message.clone();
        *self.refused.borrow_mut() = Some(error);
        E::custom(message)
    }
}

#[derive(Default)]
pub(super) struct WireBody<'de> {
    /// Read as a light tree: most of it goes into the context, and only
    /// what is left becomes `serde_json` values (`rum.extra.meta`).
    pub(super) meta: Option<Json<'de>>,
    /// Items of the four kinds, in body order, with their index in their array.
    pub(super) items: Vec<(Kind, usize, Item<'de>)>,
    pub(super) traces: Traces,
    /// Top-level keys Faro does not send, as sent.
    pub(super) unknown: Vec<(Cow<'de, str>, Value)>,
}

pub(super) struct BodySeed<'p>(pub(super) &'p Parse);

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
                "meta" => body.meta = Some(map.next_value_seed(Plain { limits, depth: 2 })?),
                "traces" => {
                    body.traces = map.next_value_seed(SpanCount {
                        limits,
                        depth: 2,
                        path: SPAN_PATH,
                    })?
                }
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
pub(super) struct ItemsSeed<'p, 'o, 'de> {
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
pub(super) struct ItemSeed<'p> {
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
        let mut item = ItemReader {
            pairs: PairList::with_capacity(8),
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
            let value = map.next_value_seed(Plain { limits, depth: 4 })?;
            item.set(key, value);
        }
        Ok(item.finish())
    }
}

/// An item's `timestamp`: epoch ms when it is an ISO 8601 string, else the
/// value as sent.
pub(super) struct TimeSeed<'l> {
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
pub(super) enum Nested<'de> {
    Object(Pairs<'de>),
    Value(Json<'de>),
}

/// A `NESTED` value at `depth`, within the limits.
pub(super) struct NestedSeed<'l> {
    limits: &'l Limits,
    depth: usize,
}

impl NestedSeed<'_> {
    fn bounded(&self) -> Plain<'_> {
        Plain {
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
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        self.bounded().visit_borrowed_str(v).map(Nested::Value)
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
        let mut pairs = PairList::with_capacity(8);
        while let Some(key) = map.next_key_seed(Key(limits))? {
            let value = map.next_value_seed(Plain {
                limits,
                depth: self.depth + 1,
            })?;
            // A repeated key: the last one wins, as in a JSON object.
            pairs.push(key, value);
        }
        Ok(Nested::Object(Obj::parsed(pairs)))
    }
}

/// Where OTLP-JSON keeps its spans: `resourceSpans[].scopeSpans[].spans[]`.
const SPAN_PATH: &[&str] = &["resourceSpans", "scopeSpans", "spans"];

/// `traces` as `count_spans` would see it, read within the limits without
/// building it: `None` for `null`, `Some(Ok(spans))` for an object,
/// `Some(Err(()))` for anything else (refused by `decode`).
pub(super) type Traces = Option<Result<usize, ()>>;

/// An object at `depth` whose `path[0]` is a list of objects whose
/// `path[1]` ... ; the last key's arrays are counted. Everything else in
/// it is skipped (checked against the limits, never allocated). As in a JSON
/// object, a repeated key counts once, its last value.
struct SpanCount<'l> {
    limits: &'l Limits,
    depth: usize,
    path: &'static [&'static str],
}

impl SpanCount<'_> {
    fn skip(&self) -> Skip<'_> {
        Skip {
            limits: self.limits,
            depth: self.depth,
        }
    }
}

impl<'de> DeserializeSeed<'de> for SpanCount<'_> {
    type Value = Traces;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Traces, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SpanCount<'_> {
    type Value = Traces;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an OTLP object")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Traces, E> {
        Ok(Some(Err(())))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Traces, E> {
        Ok(Some(Err(())))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Traces, E> {
        Ok(Some(Err(())))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Traces, E> {
        Ok(Some(Err(())))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Traces, E> {
        self.skip().visit_str(v)?;
        Ok(Some(Err(())))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Traces, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Traces, A::Error> {
        self.skip().visit_seq(seq)?;
        Ok(Some(Err(())))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Traces, A::Error> {
        self.limits.container(self.depth)?;
        let mut count = 0;
        while let Some(key) = map.next_key_seed(Key(self.limits))? {
            let child = self.depth + 1;
            match self.path.split_first() {
                Some((first, rest)) if key == *first => {
                    count = map.next_value_seed(SpanList {
                        limits: self.limits,
                        depth: child,
                        rest,
                    })?;
                }
                _ => map.next_value_seed(Skip {
                    limits: self.limits,
                    depth: child,
                })?,
            }
        }
        Ok(Some(Ok(count)))
    }
}

/// A list under one of `SPAN_PATH`'s keys: with keys left, the sum over
/// its objects; at the end of the path, its length. Not a list: 0.
struct SpanList<'l> {
    limits: &'l Limits,
    depth: usize,
    rest: &'static [&'static str],
}

impl<'de> DeserializeSeed<'de> for SpanList<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SpanList<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        self.limits.string(v.len())?;
        Ok(0)
    }
    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<usize, A::Error> {
        Skip {
            limits: self.limits,
            depth: self.depth,
        }
        .visit_map(map)?;
        Ok(0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        self.limits.container(self.depth)?;
        let child = self.depth + 1;
        let mut total = 0;
        if self.rest.is_empty() {
            let skip = || Skip {
                limits: self.limits,
                depth: child,
            };
            while seq.next_element_seed(skip())?.is_some() {
                total += 1;
            }
        } else {
            let count = || SpanCount {
                limits: self.limits,
                depth: child,
                path: self.rest,
            };
            while let Some(found) = seq.next_element_seed(count())? {
                // An element that is no object holds no spans.
                if let Some(Ok(n)) = found {
                    total += n;
                }
            }
        }
        Ok(total)
    }
}
