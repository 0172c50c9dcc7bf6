//! One RUM observation as it travels through the pipeline: a JSON object whose
//! shape is the Elasticsearch document (ECS nested objects). Components address
//! fields with dotted paths (`url.domain`), the same names the TOML uses.

use serde_json::{Map, Value};

/// A batch is what travels on channels; single events never do.
pub type Batch = Vec<Event>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    fields: Map<String, Value>,
}

impl Event {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_map(fields: Map<String, Value>) -> Self {
        Self { fields }
    }

    pub fn as_map(&self) -> &Map<String, Value> {
        &self.fields
    }

    pub fn into_value(self) -> Value {
        Value::Object(self.fields)
    }

    /// Looks a dotted path up, e.g. `client.geo.country_iso_code`.
    /// `@timestamp` and other keys without dots are plain keys.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut current = self.fields.get(parts.next()?)?;
        for part in parts {
            current = current.as_object()?.get(part)?;
        }
        Some(current)
    }

    pub fn get_str(&self, path: &str) -> Option<&str> {
        self.get(path).and_then(Value::as_str)
    }

    pub fn get_mut(&mut self, path: &str) -> Option<&mut Value> {
        let mut parts = path.split('.');
        let mut current = self.fields.get_mut(parts.next()?)?;
        for part in parts {
            current = current.as_object_mut()?.get_mut(part)?;
        }
        Some(current)
    }

    /// Sets a dotted path, creating intermediate objects. A non-object found on
    /// the way is replaced: the schema never puts a scalar where an object goes.
    pub fn insert(&mut self, path: &str, value: impl Into<Value>) {
        let mut map = &mut self.fields;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                map.insert(part.to_owned(), value.into());
                return;
            }
            let slot = map
                .entry(part.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            map = match slot {
                Value::Object(inner) => inner,
                _ => unreachable!("slot was just made an object"),
            };
        }
    }

    /// Removes a dotted path and returns its value; empty parent objects are left.
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        match path.rsplit_once('.') {
            None => self.fields.remove(path),
            Some((parent, leaf)) => self.get_mut(parent)?.as_object_mut()?.remove(leaf),
        }
    }

    /// Serializes the event as one JSON document (no trailing newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Serializing a Map into a Vec cannot fail: keys are strings and the
        // writer is infallible.
        let _ = serde_json::to_writer(out, &self.fields);
    }
}

impl From<Value> for Event {
    fn from(value: Value) -> Self {
        match value {
            Value::Object(fields) => Self { fields },
            other => {
                let mut event = Event::new();
                event.insert("message", other);
                event
            }
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
}
