//! A line's JSON as the decoder takes it apart: objects are short lists of
//! pairs and strings borrow from the body where they can. Most of a line is
//! taken out key by key into slots; only what is left (for `rum.extra`)
//! becomes a `serde_json::Value`. A B-tree map per object, a `String` per
//! key and per value, and a tree removal per taken key cost the decoder
//! about twice what the `rum_beacon` decoder pays per event.

use std::borrow::Cow;

use serde_json::{Map, Number, Value};

#[derive(Debug, Clone, PartialEq)]
pub(super) enum Json<'de> {
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
pub(super) struct Obj<'de> {
    pairs: Vec<(Cow<'de, str>, Json<'de>)>,
}

/// Above this many pairs a parsed object is deduplicated by sorting rather
/// than by scanning as each key arrives.
const SCAN_LIMIT: usize = 32;

impl<'de> Obj<'de> {
    pub(super) fn new() -> Self {
        Obj { pairs: Vec::new() }
    }

    /// Room for the pairs most of the agent's objects have: one allocation.
    pub(super) fn for_parse() -> Self {
        Obj {
            pairs: Vec::with_capacity(8),
        }
    }

    /// Builds an object as the parser reads it: `push` each pair, then
    /// `finish`.
    pub(super) fn push(&mut self, key: Cow<'de, str>, value: Json<'de>) {
        if self.pairs.len() < SCAN_LIMIT {
            if let Some(pair) = self.pairs.iter_mut().find(|(k, _)| *k == key) {
                pair.1 = value;
                return;
            }
        }
        self.pairs.push((key, value));
    }

    /// Removes repeated keys of a large object, the last value winning.
    pub(super) fn finish(mut self) -> Self {
        if self.pairs.len() > SCAN_LIMIT {
            // Stable: of equal keys, the one sent last is last in its run.
            self.pairs.sort_by(|(a, _), (b, _)| a.cmp(b));
            let mut pairs: Vec<(Cow<'de, str>, Json<'de>)> = Vec::with_capacity(self.pairs.len());
            for (key, value) in self.pairs {
                match pairs.last_mut() {
                    Some(last) if last.0 == key => last.1 = value,
                    _ => pairs.push((key, value)),
                }
            }
            self.pairs = pairs;
        }
        self
    }

    fn position(&self, key: &str) -> Option<usize> {
        self.pairs.iter().position(|(k, _)| k == key)
    }

    pub(super) fn get(&self, key: &str) -> Option<&Json<'de>> {
        self.pairs.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub(super) fn get_mut(&mut self, key: &str) -> Option<&mut Json<'de>> {
        self.pairs
            .iter_mut()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    pub(super) fn remove(&mut self, key: &str) -> Option<Json<'de>> {
        let i = self.position(key)?;
        Some(self.pairs.swap_remove(i).1)
    }

    /// Sets a key (puts a value taken out back).
    pub(super) fn insert(&mut self, key: impl Into<Cow<'de, str>>, value: Json<'de>) {
        let key = key.into();
        match self.position(&key) {
            Some(i) => self.pairs[i].1 = value,
            None => self.pairs.push((key, value)),
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub(super) fn len(&self) -> usize {
        self.pairs.len()
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
    pub(super) fn is_null(&self) -> bool {
        matches!(self, Json::Null)
    }

    pub(super) fn is_number(&self) -> bool {
        matches!(self, Json::Number(_))
    }

    pub(super) fn is_u64(&self) -> bool {
        matches!(self, Json::Number(n) if n.is_u64())
    }

    pub(super) fn is_object(&self) -> bool {
        matches!(self, Json::Object(_))
    }

    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    pub(super) fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Number(n) => n.as_f64(),
            _ => None,
        }
    }

    pub(super) fn as_array(&self) -> Option<&Vec<Json<'de>>> {
        match self {
            Json::Array(items) => Some(items),
            _ => None,
        }
    }

    pub(super) fn as_object(&self) -> Option<&Obj<'de>> {
        match self {
            Json::Object(map) => Some(map),
            _ => None,
        }
    }

    pub(super) fn as_object_mut(&mut self) -> Option<&mut Obj<'de>> {
        match self {
            Json::Object(map) => Some(map),
            _ => None,
        }
    }

    /// An object's value under `key`.
    pub(super) fn get(&self, key: &str) -> Option<&Json<'de>> {
        self.as_object()?.get(key)
    }
}

impl<'de> From<&'de str> for Json<'de> {
    fn from(s: &'de str) -> Self {
        Json::String(Cow::Borrowed(s))
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
            Value::Object(map) => {
                let mut obj = Obj::new();
                for (k, v) in map {
                    obj.push(Cow::Owned(k), Json::from(v));
                }
                Json::Object(obj)
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn object(pairs: &[(&'static str, i64)]) -> Obj<'static> {
        let mut obj = Obj::new();
        for (k, v) in pairs {
            obj.push(Cow::Borrowed(k), Json::Number((*v).into()));
        }
        obj.finish()
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value_small_or_large() {
        let small = object(&[("a", 1), ("b", 2), ("a", 3)]);
        assert_eq!(small.len(), 2);
        assert_eq!(small.get("a"), Some(&Json::Number(3.into())));
        let keys: Vec<String> = (0..40).map(|i| format!("k{i}")).collect();
        let mut large = Obj::new();
        for (i, key) in keys.iter().enumerate() {
            large.push(Cow::Owned(key.clone()), Json::Number(i.into()));
        }
        large.push(Cow::Borrowed("k0"), Json::Number(100.into()));
        large.push(Cow::Borrowed("k39"), Json::Number(200.into()));
        let large = large.finish();
        assert_eq!(large.len(), 40);
        assert_eq!(large.get("k0"), Some(&Json::Number(100.into())));
        assert_eq!(large.get("k39"), Some(&Json::Number(200.into())));
        assert_eq!(large.get("k5"), Some(&Json::Number(5.into())));
    }

    #[test]
    fn converts_to_the_value_serde_json_reads() {
        let text = r#"{"b":[1,"x",null,{"d":true}],"a":{"c":2.5},"e":"é\n"}"#;
        let mut obj = Obj::new();
        let parsed: Value = serde_json::from_str(text).unwrap();
        for (k, v) in parsed.as_object().unwrap() {
            obj.push(Cow::Owned(k.clone()), Json::from(v.clone()));
        }
        let obj = obj.finish();
        assert_eq!(Value::Object(obj.clone().into()), parsed);
        assert_eq!(Json::Object(obj.clone()).to_string(), parsed.to_string());
        assert_eq!(Json::from(parsed.clone()), Json::Object(obj));
    }
}
