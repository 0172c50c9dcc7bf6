//! JSON read in one pass without a DOM, within limits, for every decoder:
//! depth and string limits are enforced while parsing — every seed knows
//! its depth (the top-level object is 1, as `check_json_shape` counts),
//! every key and string is measured as it is read. A violation is recorded
//! in `Limits` and aborts the parse; the decoder then answers with it.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::sources::decode_error::{too_deep, DecodeError};

/// A JSON body as text: an empty one is refused with the decoder's own
/// error, and UTF-8 is checked once for the whole body (fast on ASCII), so
/// the parser need not check every string.
pub(in crate::sources) fn body_text(
    body: &[u8],
    invalid: fn(&'static str) -> DecodeError,
) -> Result<&str, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("empty body"));
    }
    std::str::from_utf8(body).map_err(|e| {
        DecodeError::invalid(
            "invalid_json",
            format!("invalid JSON: body is not UTF-8 ({e})"),
        )
    })
}

/// The limits of one decode, and the first one broken. Shared with the
/// other JSON decoders of `sources` (`web_vitals_decoder`).
pub(in crate::sources) struct Limits {
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
    pub(in crate::sources) fn new(max_string: usize, max_depth: usize) -> Self {
        Self {
            max_string,
            max_depth,
            broken: std::cell::Cell::new(None),
        }
    }

    pub(in crate::sources) fn string<E: de::Error>(&self, len: usize) -> Result<(), E> {
        if len > self.max_string {
            self.broken.set(Some(Broken::TooLong));
            return Err(E::custom("string longer than max_string_bytes"));
        }
        Ok(())
    }

    pub(in crate::sources) fn container<E: de::Error>(&self, depth: usize) -> Result<(), E> {
        if depth > self.max_depth {
            self.broken.set(Some(Broken::TooDeep));
            return Err(E::custom("nested deeper than max_json_depth"));
        }
        Ok(())
    }

    pub(in crate::sources) fn error(&self) -> Option<DecodeError> {
        Some(match self.broken.get()? {
            Broken::TooDeep => too_deep(self.max_depth),
            Broken::TooLong => DecodeError::invalid(
                "string_too_long",
                format!(
                    "a string is longer than max_string_bytes ({})",
                    self.max_string
                ),
            ),
        })
    }
}
/// A map key, borrowed from the body unless it holds escapes, and measured.
pub(in crate::sources) struct Key<'l>(pub(in crate::sources) &'l Limits);

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
pub(in crate::sources) struct Bounded<'l> {
    pub(in crate::sources) limits: &'l Limits,
    pub(in crate::sources) depth: usize,
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
impl<'l> Bounded<'l> {
    pub(super) fn child_at(&self, depth: usize) -> Bounded<'l> {
        Bounded {
            limits: self.limits,
            depth,
        }
    }
}

/// A value only checked against the limits, never built: what a decoder
/// skips costs no allocation.
pub(in crate::sources) struct Skip<'l> {
    pub(in crate::sources) limits: &'l Limits,
    pub(in crate::sources) depth: usize,
}

impl<'de> DeserializeSeed<'de> for Skip<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Skip<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.limits.string(v.len())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.limits.container(self.depth)?;
        while seq.next_element_seed(self.child())?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.limits.container(self.depth)?;
        while map.next_key_seed(Key(self.limits))?.is_some() {
            map.next_value_seed(self.child())?;
        }
        Ok(())
    }
}

impl<'l> Skip<'l> {
    fn child(&self) -> Skip<'l> {
        Skip {
            limits: self.limits,
            depth: self.depth + 1,
        }
    }
}

/// An object of which only `keys` are kept (in that order; a repeated key:
/// the last wins, as in a JSON object), the rest checked and skipped.
/// `None` when the value is not an object (still checked).
pub(in crate::sources) struct Known<'l, const N: usize> {
    pub(in crate::sources) limits: &'l Limits,
    pub(in crate::sources) depth: usize,
    pub(in crate::sources) keys: &'static [&'static str; N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for Known<'_, N> {
    type Value = Option<[Option<Value>; N]>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for Known<'_, N> {
    type Value = Option<[Option<Value>; N]>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.limits.string(v.len())?;
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Skip {
            limits: self.limits,
            depth: self.depth,
        }
        .visit_seq(seq)?;
        Ok(None)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        self.limits.container(self.depth)?;
        let mut out: [Option<Value>; N] = std::array::from_fn(|_| None);
        while let Some(key) = map.next_key_seed(Key(self.limits))? {
            match self.keys.iter().position(|k| *k == key) {
                Some(i) => {
                    out[i] = Some(map.next_value_seed(Bounded {
                        limits: self.limits,
                        depth: self.depth + 1,
                    })?)
                }
                None => map.next_value_seed(Skip {
                    limits: self.limits,
                    depth: self.depth + 1,
                })?,
            }
        }
        Ok(Some(out))
    }
}
