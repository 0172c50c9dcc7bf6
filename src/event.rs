//! One RUM observation as it travels through the pipeline: a JSON object whose
//! shape is the Elasticsearch document (ECS nested objects). Components address
//! fields with dotted paths (`url.domain`), the same names the TOML uses.
//!
//! The events of one beacon share its context (app, session, page, browser,
//! client) through one reference-counted map instead of each holding a copy:
//! fanning a beacon out into events costs one pointer per event, not one deep
//! clone. An event's own fields overlay the shared ones: reads look at the own
//! fields first, writes always go to them, and serialization merges both.

use std::sync::Arc;

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

/// A batch is what travels on channels; single events never do.
pub type Batch = Vec<Event>;

#[derive(Debug, Clone, Default)]
pub struct Event {
    /// Context shared with the other events of the same beacon (read-only
    /// unless a field in it must be removed, which copies it for this event).
    shared: Option<Arc<Map<String, Value>>>,
    /// Fields of this event alone; they win over `shared` on the same path.
    fields: Map<String, Value>,
}

/// `("rum", Some("vital.value"))` for `rum.vital.value`. Paths are short:
/// a byte loop beats a general string searcher here (the intake hot path).
fn split_first(path: &str) -> (&str, Option<&str>) {
    match path.bytes().position(|b| b == b'.') {
        Some(i) => (&path[..i], Some(&path[i + 1..])),
        None => (path, None),
    }
}

fn lookup<'a>(map: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let (first, mut rest) = split_first(path);
    let mut current = map.get(first)?;
    while let Some(path) = rest {
        let (part, next) = split_first(path);
        current = current.as_object()?.get(part)?;
        rest = next;
    }
    Some(current)
}

fn lookup_mut<'a>(map: &'a mut Map<String, Value>, path: &str) -> Option<&'a mut Value> {
    let (first, mut rest) = split_first(path);
    let mut current = map.get_mut(first)?;
    while let Some(path) = rest {
        let (part, next) = split_first(path);
        current = current.as_object_mut()?.get_mut(part)?;
        rest = next;
    }
    Some(current)
}

fn remove_path(map: &mut Map<String, Value>, path: &str) -> Option<Value> {
    match path.rsplit_once('.') {
        None => map.remove(path),
        Some((parent, leaf)) => lookup_mut(map, parent)?.as_object_mut()?.remove(leaf),
    }
}

impl Event {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_map(fields: Map<String, Value>) -> Self {
        Self {
            shared: None,
            fields,
        }
    }

    /// An event on top of a beacon's shared context.
    pub fn with_shared(shared: Arc<Map<String, Value>>) -> Self {
        Self {
            shared: Some(shared),
            fields: Map::new(),
        }
    }

    /// The context this event shares with the other events of its beacon.
    pub fn shared(&self) -> Option<&Arc<Map<String, Value>>> {
        self.shared.as_ref()
    }

    /// Points the event at another shared context: a transform that rewrites
    /// context fields does it once per beacon and hands every event the result.
    pub fn set_shared(&mut self, shared: Arc<Map<String, Value>>) {
        self.shared = Some(shared);
    }

    /// Looks a dotted path up in the event's own fields only.
    pub fn get_own(&self, path: &str) -> Option<&Value> {
        lookup(&self.fields, path)
    }

    /// The whole document as one JSON value (allocates; for tests and tools).
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }

    pub fn into_value(self) -> Value {
        match self.shared {
            None => Value::Object(self.fields),
            Some(_) => self.to_value(),
        }
    }

    /// Looks a dotted path up, e.g. `client.geo.country_iso_code`.
    /// `@timestamp` and other keys without dots are plain keys. For an object
    /// path, the event's own part wins whole over the shared part.
    pub fn get(&self, path: &str) -> Option<&Value> {
        lookup(&self.fields, path).or_else(|| lookup(self.shared.as_deref()?, path))
    }

    pub fn get_str(&self, path: &str) -> Option<&str> {
        self.get(path).and_then(Value::as_str)
    }

    /// Mutable access; a shared value is first copied into the event's own fields.
    pub fn get_mut(&mut self, path: &str) -> Option<&mut Value> {
        if lookup(&self.fields, path).is_none() {
            let value = lookup(self.shared.as_deref()?, path)?.clone();
            self.insert(path, value);
        }
        lookup_mut(&mut self.fields, path)
    }

    /// Sets a dotted path, creating intermediate objects. A non-object found on
    /// the way is replaced: the schema never puts a scalar where an object goes.
    pub fn insert(&mut self, path: &str, value: impl Into<Value>) {
        let mut map = &mut self.fields;
        let mut rest = path;
        loop {
            let (part, next) = split_first(rest);
            let Some(next) = next else {
                map.insert(part.to_owned(), value.into());
                return;
            };
            rest = next;
            // Look before allocating a key: the parent usually exists already.
            if !matches!(map.get(part), Some(Value::Object(_))) {
                map.insert(part.to_owned(), Value::Object(Map::new()));
            }
            map = match map.get_mut(part) {
                Some(Value::Object(inner)) => inner,
                _ => unreachable!("slot was just made an object"),
            };
        }
    }

    /// Removes a dotted path and returns its value; empty parent objects are left.
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        let own = remove_path(&mut self.fields, path);
        let in_shared = self
            .shared
            .as_deref()
            .is_some_and(|shared| lookup(shared, path).is_some());
        if !in_shared {
            return own;
        }
        // Copy-on-write: the other events of the beacon keep the field.
        let shared = self.shared.as_mut().map(Arc::make_mut)?;
        let removed = remove_path(shared, path);
        own.or(removed)
    }

    /// Serializes the event as one JSON document (no trailing newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serializing maps of JSON values into a Vec cannot fail.
        let _ = serde_json::to_writer(out, self);
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.to_value() == other.to_value()
    }
}

impl From<Value> for Event {
    fn from(value: Value) -> Self {
        match value {
            Value::Object(fields) => Self::from_map(fields),
            other => {
                let mut event = Event::new();
                event.insert("message", other);
                event
            }
        }
    }
}

/// Two maps written as one: keys in order, objects present on both sides
/// merged, the overlay winning on anything else.
struct Merged<'a> {
    base: &'a Map<String, Value>,
    overlay: &'a Map<String, Value>,
}

impl Serialize for Merged<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        let mut base = self.base.iter().peekable();
        let mut overlay = self.overlay.iter().peekable();
        loop {
            match (base.peek(), overlay.peek()) {
                (None, None) => break,
                (Some((bk, bv)), Some((ok, ov))) if bk == ok => {
                    match (bv, ov) {
                        (Value::Object(b), Value::Object(o)) => map.serialize_entry(
                            ok,
                            &Merged {
                                base: b,
                                overlay: o,
                            },
                        )?,
                        _ => map.serialize_entry(ok, ov)?,
                    }
                    base.next();
                    overlay.next();
                }
                (Some((bk, bv)), Some((ok, _))) if bk < ok => {
                    map.serialize_entry(bk, bv)?;
                    base.next();
                }
                (Some((bk, bv)), None) => {
                    map.serialize_entry(bk, bv)?;
                    base.next();
                }
                (_, Some((ok, ov))) => {
                    map.serialize_entry(ok, ov)?;
                    overlay.next();
                }
            }
        }
        map.end()
    }
}

impl Serialize for Event {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.shared.as_deref() {
            None => self.fields.serialize(serializer),
            Some(shared) => Merged {
                base: shared,
                overlay: &self.fields,
            }
            .serialize(serializer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn insert_and_get_nested_paths() {
        let mut event = Event::new();
        event.insert("client.geo.country_iso_code", "CZ");
        event.insert("@timestamp", "2026-01-01T00:00:00.000Z");
        assert_eq!(event.get_str("client.geo.country_iso_code"), Some("CZ"));
        assert_eq!(
            event.get_str("@timestamp"),
            Some("2026-01-01T00:00:00.000Z")
        );
        assert_eq!(event.get("client.geo.city_name"), None);
        assert_eq!(
            event.into_value(),
            json!({"@timestamp": "2026-01-01T00:00:00.000Z", "client": {"geo": {"country_iso_code": "CZ"}}})
        );
    }

    #[test]
    fn insert_replaces_scalar_on_the_way() {
        let mut event = Event::from(json!({"url": "oops"}));
        event.insert("url.domain", "example.com");
        assert_eq!(event.get_str("url.domain"), Some("example.com"));
    }

    #[test]
    fn remove_returns_the_value() {
        let mut event = Event::from(json!({"client": {"ip": "1.2.3.4", "port": 1}}));
        assert_eq!(event.remove("client.ip"), Some(json!("1.2.3.4")));
        assert_eq!(event.remove("client.ip"), None);
        assert_eq!(event.remove("nope.deeper"), None);
        assert_eq!(event.get("client.port"), Some(&json!(1)));
    }

    fn shared() -> Arc<Map<String, Value>> {
        match json!({"client": {"ip": "1.2.3.4"}, "user_agent": {"original": "UA"}, "z": 1}) {
            Value::Object(map) => Arc::new(map),
            _ => unreachable!(),
        }
    }

    #[test]
    fn own_fields_overlay_the_shared_context() {
        let context = shared();
        let mut a = Event::with_shared(context.clone());
        let b = Event::with_shared(context.clone());
        a.insert("user_agent.name", "Chrome");
        a.insert("z", 2);
        a.insert("@timestamp", "t");
        assert_eq!(a.get_str("user_agent.original"), Some("UA"));
        assert_eq!(a.get_str("user_agent.name"), Some("Chrome"));
        assert_eq!(b.get("user_agent.name"), None);
        let mut out = Vec::new();
        a.write_json(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"@timestamp":"t","client":{"ip":"1.2.3.4"},"user_agent":{"name":"Chrome","original":"UA"},"z":2}"#
        );
        assert_eq!(b.to_value(), Value::Object((*context).clone()));
    }

    #[test]
    fn removing_a_shared_field_leaves_the_other_events_alone() {
        let context = shared();
        let mut a = Event::with_shared(context.clone());
        let b = Event::with_shared(context);
        assert_eq!(a.remove("client.ip"), Some(json!("1.2.3.4")));
        assert_eq!(a.get("client.ip"), None);
        assert_eq!(b.get_str("client.ip"), Some("1.2.3.4"));
    }

    #[test]
    fn get_mut_copies_a_shared_value_before_changing_it() {
        let context = shared();
        let mut a = Event::with_shared(context.clone());
        let b = Event::with_shared(context);
        *a.get_mut("client.ip").unwrap() = json!("1.2.3.0");
        assert_eq!(a.get_str("client.ip"), Some("1.2.3.0"));
        assert_eq!(b.get_str("client.ip"), Some("1.2.3.4"));
    }
}
