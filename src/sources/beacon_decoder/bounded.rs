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

/// A value checked against the limits and not kept, counted as items: an
/// array's length, another value 1, `null` none (web-vitals' dropped
/// `entries`, APM's skipped breakdown metricsets).
pub(in crate::sources) struct CountItems<'l>(pub(in crate::sources) Skip<'l>);

impl<'de> DeserializeSeed<'de> for CountItems<'_> {
    type Value = usize;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for CountItems<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<usize, E> {
        self.0.visit_bool(v).map(|()| 1)
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
        self.0.visit_i64(v).map(|()| 1)
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
        self.0.visit_u64(v).map(|()| 1)
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<usize, E> {
        self.0.visit_f64(v).map(|()| 1)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
        self.0.visit_str(v).map(|()| 1)
    }
    fn visit_unit<E: de::Error>(self) -> Result<usize, E> {
        Ok(0)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let Skip { limits, depth } = self.0;
        limits.container(depth)?;
        let mut count = 0;
        while seq
            .next_element_seed(Skip {
                limits,
                depth: depth + 1,
            })?
            .is_some()
        {
            count += 1;
        }
        Ok(count)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<usize, A::Error> {
        self.0.visit_map(map).map(|()| 1)
    }
}

/// An object's pairs as it is read, each key once: the last value of a
/// repeated key wins at the key's first place, as a JSON object reads.
/// Small objects are checked as each key arrives; a large one (a crafted
/// body can send 100,000 keys in one object) is checked once, by sorting,
/// in `finish`: checking each key against all before it took seconds.
pub(in crate::sources) struct PairList<'de, V> {
    pairs: Vec<(Cow<'de, str>, V)>,
    /// A key was added without the check: `finish` looks for repeats.
    unchecked: bool,
}

/// Above this many pairs, repeated keys are found by `PairList::finish`.
const SCAN_PAIRS: usize = 32;

impl<'de, V> PairList<'de, V> {
    pub(in crate::sources) fn with_capacity(capacity: usize) -> Self {
        PairList {
            pairs: Vec::with_capacity(capacity),
            unchecked: false,
        }
    }

    // Always: called once per key of every object, with a large value
    // that a call would move through memory.
    #[inline(always)]
    pub(in crate::sources) fn push(&mut self, key: Cow<'de, str>, value: V) {
        if self.pairs.len() < SCAN_PAIRS {
            if let Some(pair) = self.pairs.iter_mut().find(|(k, _)| *k == key) {
                pair.1 = value;
                return;
            }
        } else {
            self.unchecked = true;
        }
        self.pairs.push((key, value));
    }

    /// Drops every pair of `key` (a key that turned out to be another kind).
    pub(in crate::sources) fn remove(&mut self, key: &str) {
        self.pairs.retain(|(k, _)| k != key);
    }

    /// The pairs, each key once, in the order their keys first came.
    #[inline]
    pub(in crate::sources) fn finish(self) -> Vec<(Cow<'de, str>, V)> {
        if !self.unchecked {
            return self.pairs;
        }
        dedupe(self.pairs)
    }
}

/// `PairList::finish` of a large object.
fn dedupe<V>(mut pairs: Vec<(Cow<'_, str>, V)>) -> Vec<(Cow<'_, str>, V)> {
    // Stable: in a run of equal keys, positions ascend.
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by(|&a, &b| pairs[a].0.cmp(&pairs[b].0));
    let mut dropped = vec![false; pairs.len()];
    let mut run = 0;
    while run < order.len() {
        let mut end = run + 1;
        while end < order.len() && pairs[order[end]].0 == pairs[order[run]].0 {
            end += 1;
        }
        if end - run > 1 {
            // The last value sent, at the first place.
            pairs.swap(order[run], order[end - 1]);
            for &i in &order[run + 1..end] {
                dropped[i] = true;
            }
        }
        run = end;
    }
    let mut i = 0;
    pairs.retain(|_| {
        i += 1;
        !dropped[i - 1]
    });
    pairs
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
/// A value only checked against the limits, never built: what a decoder
/// skips costs no allocation.
pub(in crate::sources) struct Skip<'l> {
    pub(in crate::sources) limits: &'l Limits,
    pub(in crate::sources) depth: usize,
}

impl<'de> DeserializeSeed<'de> for Skip<'_> {
    type Value = ();
    /// As `ignored_any`: the scanner's deserializer skips the value itself,
    /// against the same limits at the same depth, without a visit per token.
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        #[cfg(test)]
        crate::sources::json_scan::SKIP_DEPTH.with(|c| c.set(Some(self.depth)));
        d.deserialize_ignored_any(self)
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

#[cfg(test)]
mod pair_list_tests {
    use super::*;

    #[test]
    fn a_repeat_added_unchecked_is_found_after_a_removal() {
        // 32 keys, then `k1` again (past the scan), then one key removed:
        // back to 32 pairs, one of them a repeat.
        let mut list = PairList::with_capacity(4);
        for i in 0..32 {
            list.push(Cow::Owned(format!("k{i}")), i);
        }
        list.push(Cow::Borrowed("k1"), 100);
        list.remove("k5");
        let pairs = list.finish();
        assert_eq!(pairs.len(), 31);
        assert_eq!(pairs[1], (Cow::Borrowed("k1"), 100));
        assert_eq!(pairs.iter().filter(|(k, _)| k == "k1").count(), 1);
    }

    /// What reading `keys` in order keeps, the obvious (quadratic) way.
    fn expected(keys: &[(String, usize)]) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for (k, v) in keys {
            match out.iter_mut().find(|(o, _)| o == k) {
                Some(pair) => pair.1 = *v,
                None => out.push((k.clone(), *v)),
            }
        }
        out
    }

    #[test]
    fn repeated_keys_keep_the_last_value_at_the_first_place_at_any_size() {
        let mut rng = fastrand::Rng::with_seed(7);
        for len in [0, 1, 5, 31, 32, 33, 40, 200, 1000] {
            for distinct in [1, 3, 30, 500] {
                let keys: Vec<(String, usize)> = (0..len)
                    .map(|i| (format!("k{}", rng.usize(..distinct)), i))
                    .collect();
                let mut list = PairList::with_capacity(4);
                for (k, v) in &keys {
                    list.push(Cow::Owned(k.clone()), *v);
                }
                // Removing keys may bring a list that skipped checks back
                // under the scan size: repeats are still found.
                if len > 0 && len % 2 == 0 {
                    list.remove("k0");
                }
                let keys: Vec<(String, usize)> = if len > 0 && len % 2 == 0 {
                    keys.into_iter().filter(|(k, _)| k != "k0").collect()
                } else {
                    keys
                };
                let got: Vec<(String, usize)> = list
                    .finish()
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v))
                    .collect();
                assert_eq!(got, expected(&keys), "{len} keys of {distinct}");
            }
        }
    }
}
