//! JSON as the SDK decoders take it apart: objects are short lists of pairs
//! and strings borrow from the body where they can. Most of a payload is
//! taken out key by key into slots; only what is left (for `rum.extra`)
//! becomes a `serde_json::Value`. A B-tree map per object, a `String` per
//! key and per value, and a tree removal per taken key cost a decoder about
//! twice what the `rum_beacon` decoder pays per event. `read_tree` reads any
//! value into a tree within the beacon's limits.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

use super::beacon_decoder::PairList;
use super::json_scan::{Scan, ScanError, Scanner};
use crate::event::{FieldValue, RawJson};
use crate::json_bytes::{write_number, write_str};
use crate::schema::FieldType;

#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::sources) enum Json<'de> {
    #[default]
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'de, str>),
    Array(Vec<Json<'de>>),
    Object(Obj<'de>),
}

/// An object's pairs in the order sent, each key once (the last value sent
/// wins, as `serde_json` reads an object). The pairs are few: found by
/// scanning.
#[derive(Debug, Clone, Default, PartialEq)]
pub(in crate::sources) struct Obj<'de> {
    pairs: Vec<(Cow<'de, str>, Json<'de>)>,
}

#[cfg(test)]
thread_local! {
    /// Pairs the lookups by key have looked at (tests bound the work a
    /// crafted object of many keys makes).
    pub(in crate::sources) static KEY_LOOKUPS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

impl<'de> Obj<'de> {
    pub(in crate::sources) fn new() -> Self {
        Obj { pairs: Vec::new() }
    }

    /// The pairs read from a body, each key once (`PairList::finish`).
    pub(in crate::sources) fn parsed(pairs: PairList<'de, Json<'de>>) -> Self {
        Obj {
            pairs: pairs.finish(),
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        #[cfg(test)]
        KEY_LOOKUPS.set(KEY_LOOKUPS.get() + self.pairs.len());
        self.pairs.iter().position(|(k, _)| k == key)
    }

    pub(in crate::sources) fn get(&self, key: &str) -> Option<&Json<'de>> {
        Some(&self.pairs[self.position(key)?].1)
    }

    pub(in crate::sources) fn get_mut(&mut self, key: &str) -> Option<&mut Json<'de>> {
        let i = self.position(key)?;
        Some(&mut self.pairs[i].1)
    }

    pub(in crate::sources) fn remove(&mut self, key: &str) -> Option<Json<'de>> {
        let i = self.position(key)?;
        Some(self.pairs.swap_remove(i).1)
    }

    /// Adds a key taken from another object, hence not in this one.
    pub(in crate::sources) fn push_unique(&mut self, key: Cow<'de, str>, value: Json<'de>) {
        self.pairs.push((key, value));
    }

    /// Sets a key (puts a value taken out back).
    pub(in crate::sources) fn insert(&mut self, key: impl Into<Cow<'de, str>>, value: Json<'de>) {
        let key = key.into();
        match self.position(&key) {
            Some(i) => self.pairs[i].1 = value,
            None => self.pairs.push((key, value)),
        }
    }

    /// Moves in `other`'s pairs that `keep` accepts, each replacing a pair
    /// of the same key. `other`'s keys are unique (an `Obj`'s are), so each
    /// is looked for only among the pairs this object had before: an
    /// `insert` per key looked at every key moved in before it, quadratic
    /// in a crafted item of many keys.
    pub(in crate::sources) fn merge(
        &mut self,
        other: Obj<'de>,
        mut keep: impl FnMut(&Json<'de>) -> bool,
    ) {
        let before = self.pairs.len();
        for (key, value) in other.pairs {
            if !keep(&value) {
                continue;
            }
            #[cfg(test)]
            KEY_LOOKUPS.set(KEY_LOOKUPS.get() + before);
            match self.pairs[..before].iter().position(|(k, _)| *k == key) {
                Some(i) => self.pairs[i].1 = value,
                None => self.pairs.push((key, value)),
            }
        }
    }

    /// Keeps the pairs whose value `keep` accepts.
    pub(in crate::sources) fn retain(&mut self, mut keep: impl FnMut(&Json<'de>) -> bool) {
        self.pairs.retain(|(_, v)| keep(v));
    }

    pub(in crate::sources) fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub(in crate::sources) fn len(&self) -> usize {
        self.pairs.len()
    }

    pub(in crate::sources) fn iter(&self) -> impl Iterator<Item = (&str, &Json<'de>)> {
        self.pairs.iter().map(|(k, v)| (&**k, v))
    }

    /// The value of an object of one pair.
    pub(in crate::sources) fn single(&self) -> Option<&Json<'de>> {
        match &self.pairs[..] {
            [(_, value)] => Some(value),
            _ => None,
        }
    }
}

impl<'de> IntoIterator for Obj<'de> {
    type Item = (Cow<'de, str>, Json<'de>);
    type IntoIter = std::vec::IntoIter<(Cow<'de, str>, Json<'de>)>;
    fn into_iter(self) -> Self::IntoIter {
        self.pairs.into_iter()
    }
}

impl<'de> Json<'de> {
    pub(in crate::sources) fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub(in crate::sources) fn is_number(&self) -> bool {
        matches!(self, Json::Number(_))
    }

    pub(in crate::sources) fn is_u64(&self) -> bool {
        matches!(self, Json::Number(n) if n.is_u64())
    }

    pub(in crate::sources) fn is_string(&self) -> bool {
        matches!(self, Json::String(_))
    }

    pub(in crate::sources) fn as_u64(&self) -> Option<u64> {
        match self {
            Json::Number(n) => n.as_u64(),
            _ => None,
        }
    }

    pub(in crate::sources) fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    pub(in crate::sources) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub(in crate::sources) fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub(in crate::sources) fn as_array(&self) -> Option<&Vec<Json<'de>>> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub(in crate::sources) fn as_object(&self) -> Option<&Obj<'de>> {
        match self {
            Json::Object(map) => Some(map),
            _ => None,
        }
    }

    pub(in crate::sources) fn as_object_mut(&mut self) -> Option<&mut Obj<'de>> {
        match self {
            Json::Object(map) => Some(map),
            _ => None,
        }
    }

    /// An object's value under `key`.
    pub(in crate::sources) fn get(&self, key: &str) -> Option<&Json<'de>> {
        self.as_object()?.get(key)
    }
}

impl<'de> From<&'de str> for Json<'de> {
    fn from(s: &'de str) -> Self {
        Json::String(Cow::Borrowed(s))
    }
}

impl<'de> From<Cow<'de, str>> for Json<'de> {
    fn from(s: Cow<'de, str>) -> Self {
        Json::String(s)
    }
}

impl From<String> for Json<'_> {
    fn from(s: String) -> Self {
        Json::String(Cow::Owned(s))
    }
}

impl From<Obj<'_>> for Map<String, Value> {
    fn from(obj: Obj<'_>) -> Self {
        obj.pairs
            .into_iter()
            .map(|(k, v)| (k.into_owned(), Value::from(v)))
            .collect()
    }
}

impl From<Json<'_>> for Value {
    fn from(json: Json<'_>) -> Self {
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Number(n) => Value::Number(n),
            Json::String(s) => Value::String(s.into_owned()),
            Json::Array(items) => Value::Array(items.into_iter().map(Value::from).collect()),
            Json::Object(obj) => Value::Object(obj.into()),
        }
    }
}

impl From<Value> for Json<'_> {
    fn from(value: Value) -> Self {
        match value {
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(b),
            Value::Number(n) => Json::Number(n),
            Value::String(s) => Json::String(Cow::Owned(s)),
            Value::Array(items) => Json::Array(items.into_iter().map(Json::from).collect()),
            // A map's keys are unique already.
            Value::Object(map) => Json::Object(Obj {
                pairs: map
                    .into_iter()
                    .map(|(k, v)| (Cow::Owned(k), Json::from(v)))
                    .collect(),
            }),
        }
    }
}

impl Json<'_> {
    /// Writes the value as `serde_json` writes the `Value` it would become:
    /// compact, each object's keys in byte order and each once (the last
    /// wins), strings and numbers escaped and printed by `serde_json`
    /// itself. Documents then stay the same byte for byte whether a field
    /// was kept as text or as a `Value`.
    pub(in crate::sources) fn write_to(&self, out: &mut Vec<u8>) {
        match self {
            Json::Null => out.extend_from_slice(b"null"),
            Json::Bool(true) => out.extend_from_slice(b"true"),
            Json::Bool(false) => out.extend_from_slice(b"false"),
            Json::Number(n) => write_number(n, out),
            Json::String(s) => write_str(s, out),
            Json::Array(items) => {
                out.push(b'[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    item.write_to(out);
                }
                out.push(b']');
            }
            Json::Object(obj) => obj.write_to(out),
        }
    }
}

/// A key's first eight bytes as a big-endian integer, zero-padded: the
/// integers order as the keys do wherever they differ in those bytes.
#[inline]
fn key_prefix(key: &str) -> u64 {
    let bytes = key.as_bytes();
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(buf)
}

impl Obj<'_> {
    /// See [`Json::write_to`].
    pub(in crate::sources) fn write_to(&self, out: &mut Vec<u8>) {
        self.write_with(None, out);
    }

    /// Writes the object with one more pair, whose value is JSON text
    /// already written (by [`Json::write_to`]); it replaces a pair of the
    /// same key.
    fn write_with(&self, also: Option<(&str, &[u8])>, out: &mut Vec<u8>) {
        let pairs = &self.pairs;
        let key = |i: usize| match pairs.get(i) {
            Some((key, _)) => &**key,
            None => also.map_or("", |(key, _)| key),
        };
        // The order of the pairs by key (the index past the pairs is
        // `also`), on the stack for the usual few. Each key's first eight
        // bytes, big-endian and zero-padded, order most pairs with one
        // integer compare; equal prefixes fall back to the whole keys, so
        // the order is byte order exactly (a shorter key that the longer
        // one continues with NUL bytes ties on the prefix, then sorts
        // first). Stable: of repeated keys the last stays last, and `also`
        // comes after a pair it replaces.
        let len = pairs.len() + usize::from(also.is_some());
        let mut small = [(0u64, 0usize); 24];
        let mut large: Vec<(u64, usize)>;
        let order: &mut [(u64, usize)] = if len <= small.len() {
            &mut small[..len]
        } else {
            large = vec![(0, 0); len];
            &mut large
        };
        for (i, slot) in order.iter_mut().enumerate() {
            *slot = (key_prefix(key(i)), i);
        }
        order.sort_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| key(a.1).as_bytes().cmp(key(b.1).as_bytes()))
        });
        out.push(b'{');
        let mut first = true;
        for (at, &(prefix, i)) in order.iter().enumerate() {
            let k = key(i);
            if order
                .get(at + 1)
                .is_some_and(|&(next_prefix, next)| next_prefix == prefix && key(next) == k)
            {
                continue;
            }
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(k, out);
            out.push(b':');
            match pairs.get(i) {
                Some((_, json)) => json.write_to(out),
                None => out.extend_from_slice(also.map_or(&b"null"[..], |(_, text)| text)),
            }
        }
        out.push(b'}');
    }

    /// The object as a slot value kept as text (`rum.extra`), with one
    /// more pair of JSON text already written (see `write_with`).
    pub(in crate::sources) fn to_field_value(&self, also: Option<(&str, &[u8])>) -> FieldValue {
        thread_local! {
            // Written here, then copied once at its size: a text grown in
            // place would be reallocated on the way, and shrunk at the end.
            static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let text = SCRATCH.with_borrow_mut(|scratch| {
            scratch.clear();
            self.write_with(also, scratch);
            // The writer writes UTF-8: ASCII syntax around `str`s.
            let text = std::str::from_utf8(scratch)
                .map(String::from)
                .unwrap_or_default();
            scratch.truncate(4096);
            scratch.shrink_to(4096);
            text
        });
        FieldValue::Raw(std::sync::Arc::new(RawJson::new(text)))
    }
}

impl Json<'_> {
    /// Whether a slot of type `ty` takes the value (`FieldType::accepts`
    /// for a tree).
    pub(in crate::sources) fn fits(&self, ty: FieldType) -> bool {
        match ty {
            FieldType::Keyword | FieldType::Text | FieldType::Date | FieldType::Ip => {
                self.is_string()
            }
            FieldType::Long => matches!(self, Json::Number(n) if n.is_i64()),
            FieldType::Double => self.is_number(),
            FieldType::Boolean => matches!(self, Json::Bool(_)),
            FieldType::GeoPoint => self.is_object(),
            FieldType::Flattened => match self {
                Json::Object(_) => true,
                Json::Array(items) => items
                    .iter()
                    .all(|item| item.is_null() || item.fits(FieldType::Flattened)),
                _ => false,
            },
        }
    }
}

/// As `serde_json::Value` prints: JSON text.
impl std::fmt::Display for Json<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Json::Number(n) => write!(f, "{n}"),
            other => write!(f, "{}", Value::from(other.clone())),
        }
    }
}

/// Any value at `depth` into a tree, within the limits (objects at `depth`
/// count against `max_json_depth`), strings borrowed from the body where
/// they have no escapes. Read straight from the scanner: through its serde
/// `Deserializer` a visitor call for every token and a round trip through
/// `u64`/`f64` for every number cost the SDK decoders 5-8 % of a request.
pub(in crate::sources) fn read_tree<'de>(
    sc: &mut Scanner<'de, '_>,
    depth: usize,
) -> Scan<Json<'de>> {
    Ok(match sc.peek()? {
        b'"' => {
            let s = sc.string()?;
            sc.limits.string::<ScanError>(s.len())?;
            Json::String(s)
        }
        b'-' | b'0'..=b'9' => Json::Number(sc.number()?),
        b'{' => {
            sc.begin_object(depth)?;
            let mut out = PairList::with_capacity(8);
            let mut first = true;
            while let Some(key) = sc.key(first)? {
                first = false;
                let value = read_tree(sc, depth + 1)?;
                out.push(key, value);
            }
            Json::Object(Obj::parsed(out))
        }
        b'[' => read_array(sc, depth, |sc| read_tree(sc, depth + 1))?,
        b't' => sc.literal(b"true").map(|()| Json::Bool(true))?,
        b'f' => sc.literal(b"false").map(|()| Json::Bool(false))?,
        b'n' => sc.literal(b"null").map(|()| Json::Null)?,
        _ => return sc.syntax("expected value"),
    })
}

/// The array `peek` showed, at `depth`, each element read by `element`.
pub(in crate::sources) fn read_array<'de, 'l>(
    sc: &mut Scanner<'de, 'l>,
    depth: usize,
    mut element: impl FnMut(&mut Scanner<'de, 'l>) -> Scan<Json<'de>>,
) -> Scan<Json<'de>> {
    sc.begin_array(depth)?;
    let mut items = Vec::new();
    let mut first = true;
    while sc.element(first)? {
        first = false;
        items.push(element(sc)?);
    }
    Ok(Json::Array(items))
}

/// `n` in decimal, written digit by digit: stack frames' lines and columns
/// are written for every error, and `fmt` costs several times as much.
pub(in crate::sources) fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // ASCII digits only.
    out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or_default());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sources::beacon_decoder::Limits;

    #[test]
    fn converts_to_the_value_serde_json_reads() {
        let text = r#"{"b":[1,"x",null,{"d":true}],"a":{"c":2.5},"e":"é\n"}"#;
        let parsed: Value = serde_json::from_str(text).unwrap();
        let mut list = PairList::with_capacity(1);
        for (k, v) in parsed.as_object().unwrap() {
            list.push(Cow::Owned(k.clone()), Json::from(v.clone()));
        }
        let obj = Obj::parsed(list);
        assert_eq!(Value::Object(obj.clone().into()), parsed);
        assert_eq!(Json::Object(obj.clone()).to_string(), parsed.to_string());
        assert_eq!(Json::from(parsed.clone()), Json::Object(obj));
    }

    #[test]
    fn a_tree_fits_a_type_as_its_value_is_accepted() {
        let values = [
            r#"{"a":1}"#,
            r#"[{"a":1},null,[{"b":["x",1]}]]"#,
            "[]",
            r#"["x"]"#,
            r#"[{"a":1},2]"#,
            "[[true]]",
            r#""x""#,
            "1",
            "9223372036854775808",
            "1.5",
            "true",
        ];
        for text in values {
            let value: Value = serde_json::from_str(text).unwrap();
            for ty in [
                FieldType::Keyword,
                FieldType::Long,
                FieldType::Double,
                FieldType::Boolean,
                FieldType::GeoPoint,
                FieldType::Flattened,
            ] {
                assert_eq!(
                    Json::from(value.clone()).fits(ty),
                    ty.accepts(&value),
                    "{text} as {ty:?}"
                );
            }
        }
    }

    #[test]
    fn read_tree_reads_what_serde_json_reads_within_the_limits() {
        let limits = Limits::new(100, 5);
        let read = |text: &str| -> Option<Value> {
            let mut sc = Scanner::new(text, &limits);
            let json = read_tree(&mut sc, 1).ok()?;
            sc.end().ok()?;
            Some(Value::from(json))
        };
        let text = r#"{"a":[1,-2,3.5,"x\u0041",true,null],"a":{"b":{"c":"d"}},"e":"f"}"#;
        assert_eq!(read(text), serde_json::from_str::<Value>(text).ok());
        assert!(read(r#"{"a":{"b":{"c":{"d":{"e":{}}}}}}"#).is_none());
        assert!(read(r#"{"a":{"b":{"c":{"d":{"e":1}}}}}"#).is_some());
        let long = "x".repeat(101);
        assert!(read(&format!(r#"{{"a":"{long}"}}"#)).is_none());
        assert!(read(&format!(r#"{{"{long}":1}}"#)).is_none());
        assert!(read(&format!(r#"["{}"]"#, &long[1..])).is_some());
        for bad in [r#"{"a":1,}"#, "[1 2]", r#"{"a" 1}"#, "tru", "{", r#""\x""#] {
            assert!(read(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn read_tree_reads_the_writers_text_as_serde_json_does() {
        let limits = Limits::new(1 << 20, 64);
        let mut rng = fastrand::Rng::with_seed(23);
        for _ in 0..20_000 {
            let json = random_json(&mut rng, 0);
            let mut text = Vec::new();
            json.write_to(&mut text);
            let text = String::from_utf8(text).unwrap();
            let mut sc = Scanner::new(&text, &limits);
            let read = read_tree(&mut sc, 1).unwrap();
            sc.end().unwrap();
            // As serde_json reads it (floats parsed alike, not
            // necessarily back to the value written), keys without NULs.
            let mut expected: Value = serde_json::from_str(&text).unwrap();
            crate::sources::json_scan::keys_without_nul(text.as_bytes(), &mut expected);
            assert_eq!(Value::from(read), expected, "{text}");
        }
    }

    /// A random tree: keys from a small set (so objects repeat them),
    /// strings with quotes, escapes, control and non-ASCII characters,
    /// numbers of every kind `Number` holds.
    fn random_json(rng: &mut fastrand::Rng, depth: usize) -> Json<'static> {
        const WORDS: &[&str] = &[
            "a",
            "B",
            "é",
            "a\"b",
            "\n\u{1}",
            "",
            "aa",
            "Ω\u{7f}",
            "z/",
            // Past eight bytes, with the escape in the first word, a later
            // one, the tail, or none.
            "https://shop.example/cart?id=7",
            "12345678\"later words",
            "twelve bytes\\",
            "a\u{1f}bcdefghijklmnop",
            "ünïcödé text without any escape at all",
            // Keys alike in their first eight bytes (the writer's sort
            // compares those first): a NUL continuation, a shared prefix.
            "a\u{0}",
            "a\u{0}\u{0}b",
            "12345678",
            "12345678a",
            "twelve b",
        ];
        let word = |rng: &mut fastrand::Rng| WORDS[rng.usize(..WORDS.len())];
        match rng.usize(..if depth > 3 { 5 } else { 7 }) {
            0 => Json::Null,
            1 => Json::Bool(rng.bool()),
            2 => Json::Number(match rng.usize(..6) {
                0 => Number::from(rng.u64(..)),
                1 => Number::from(rng.i64(..)),
                2 => Number::from_f64(rng.f64() * 10f64.powi(rng.i32(-30..30))).unwrap(),
                3 => Number::from_f64(f64::from_bits(rng.u64(..) & !(0x7ff << 52))).unwrap(),
                4 => {
                    Number::from_f64([-0.0, 1.0, 1e300, 5e-324, 0.1, 1e21][rng.usize(..6)]).unwrap()
                }
                _ => Number::from(rng.u32(..)),
            }),
            3 | 4 => Json::String(Cow::Borrowed(word(rng))),
            5 => Json::Array(
                (0..rng.usize(..4))
                    .map(|_| random_json(rng, depth + 1))
                    .collect(),
            ),
            _ => {
                let mut obj = Obj::new();
                for _ in 0..rng.usize(..6) {
                    // Repeated keys on purpose: the writer keeps the last.
                    obj.push_unique(Cow::Borrowed(word(rng)), random_json(rng, depth + 1));
                }
                Json::Object(obj)
            }
        }
    }

    /// `n` random objects.
    fn random_objects(seed: u64, n: usize) -> impl Iterator<Item = Obj<'static>> {
        let mut rng = fastrand::Rng::with_seed(seed);
        std::iter::repeat_with(move || random_json(&mut rng, 0))
            .filter_map(|json| match json {
                Json::Object(obj) => Some(obj),
                _ => None,
            })
            .take(n)
    }

    #[test]
    fn writes_what_serde_json_writes_for_the_value() {
        let mut rng = fastrand::Rng::with_seed(17);
        for _ in 0..20_000 {
            let json = random_json(&mut rng, 0);
            let mut out = Vec::new();
            json.write_to(&mut out);
            let expected = serde_json::to_string(&Value::from(json.clone())).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{json:?}");
        }
    }

    #[test]
    fn one_more_pair_of_text_lands_in_order_and_replaces_its_key() {
        let mut rng = fastrand::Rng::with_seed(19);
        for obj in random_objects(20, 5_000) {
            let more = random_json(&mut rng, 1);
            let mut text = Vec::new();
            more.write_to(&mut text);
            let key = ["a", "é", "metadata", ""][rng.usize(..4)];
            let mut expected = Map::from(obj.clone());
            expected.insert(key.to_owned(), Value::from(more));
            let FieldValue::Raw(kept) = obj.to_field_value(Some((key, &text))) else {
                panic!("not kept as text");
            };
            assert_eq!(kept.text(), Value::Object(expected).to_string());
        }
    }

    #[test]
    fn kept_text_reads_back_as_the_value() {
        for obj in random_objects(18, 2_000) {
            let kept = obj.to_field_value(None);
            let value = Value::Object(obj.into());
            assert!(matches!(kept, FieldValue::Raw(_)));
            assert_eq!(*kept, value);
            assert_eq!(kept, FieldValue::from(value));
        }
    }
}
