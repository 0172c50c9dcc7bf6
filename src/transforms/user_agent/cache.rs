//! The parse cache: a resolved UA kept as shared slot values, in two
//! generations bounded by entry count, keyed by a hash of the UA and hints
//! and checked against the whole key on a hit.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use rustc_hash::{FxHashMap, FxHasher};
use serde_json::{Map, Value};

use super::UserAgentInfo;
use crate::event::{Context, FieldId, FieldValue};
use crate::schema;

/// UAs longer than this are parsed every time rather than cached, so that a
/// client sending huge random UAs cannot fill memory through the cache.
pub(super) const MAX_CACHED_KEY_BYTES: usize = 2048;
/// A resolved UA as shared slot values, so a cache hit only bumps refcounts.
#[derive(Debug, Clone, Default)]
pub(super) struct Prepared {
    /// `user_agent.name`, `.version`, `.category`, `.os`, `.device`.
    slots: Vec<(FieldId, Arc<Value>)>,
    pub(super) synthetic: bool,
}

static SLOTS: LazyLock<[FieldId; 5]> = LazyLock::new(|| {
    [
        "user_agent.name",
        "user_agent.version",
        "user_agent.category",
        "user_agent.os",
        "user_agent.device",
    ]
    .map(FieldId::of)
});

static SYNTHETIC: LazyLock<(Arc<str>, Arc<Value>)> = LazyLock::new(|| {
    let name = schema::LABELS_SYNTHETIC.trim_start_matches("labels.");
    (Arc::from(name), Arc::new(Value::Bool(true)))
});

impl Prepared {
    pub(super) fn new(info: UserAgentInfo) -> Self {
        let ids = &*SLOTS;
        let mut slots = Vec::new();
        let mut put = |id: FieldId, value: Option<Value>| {
            if let Some(value) = value {
                slots.push((id, Arc::new(value)));
            }
        };
        put(ids[0], info.name.map(Value::String));
        put(ids[1], info.version.map(Value::String));
        put(ids[2], info.category.map(|c| Value::String(c.to_owned())));
        let mut os = Map::new();
        if let Some(name) = info.os_name {
            os.insert("name".to_owned(), Value::String(name));
        }
        if let Some(version) = info.os_version {
            os.insert("version".to_owned(), Value::String(version));
        }
        put(ids[3], (!os.is_empty()).then_some(Value::Object(os)));
        put(
            ids[4],
            info.device_name.map(|name| {
                let mut device = Map::new();
                device.insert("name".to_owned(), Value::String(name));
                Value::Object(device)
            }),
        );
        Self {
            slots,
            synthetic: info.synthetic,
        }
    }

    pub(super) fn apply(&self, context: &mut Context) {
        if self.synthetic {
            let (name, value) = &*SYNTHETIC;
            context.set_label(name.clone(), FieldValue::Shared(value.clone()));
        }
        for (id, value) in &self.slots {
            context.set(*id, FieldValue::Shared(value.clone()));
        }
    }
}

/// Hash of the cache key, and its size in bytes (to keep huge keys out).
pub(super) fn key_hash(ua: &str, hints: Option<&Value>) -> (u64, usize) {
    let mut hasher = FxHasher::default();
    ua.hash(&mut hasher);
    let mut bytes = ua.len();
    if let Some(hints) = hints {
        hash_value(hints, &mut hasher, &mut bytes);
    }
    (hasher.finish(), bytes)
}

fn hash_value(value: &Value, hasher: &mut FxHasher, bytes: &mut usize) {
    match value {
        Value::Null => 0u8.hash(hasher),
        Value::Bool(b) => b.hash(hasher),
        Value::Number(n) => n.hash(hasher),
        Value::String(s) => {
            *bytes += s.len();
            s.hash(hasher);
        }
        Value::Array(items) => {
            items.len().hash(hasher);
            for item in items {
                hash_value(item, hasher, bytes);
            }
        }
        Value::Object(map) => {
            map.len().hash(hasher);
            for (key, item) in map {
                *bytes += key.len();
                key.hash(hasher);
                hash_value(item, hasher, bytes);
            }
        }
    }
}

/// A bounded cache with two generations: lookups go to the current one, then
/// to the previous one (promoting the entry); when the current generation is
/// full it becomes the previous one and the oldest is dropped. That keeps
/// what is in use, bounds memory at `capacity` entries, and costs O(1)
/// without the bookkeeping of a linked LRU list.
///
/// Entries keep their whole key and a hit compares it: a client crafting a UA
/// whose hash collides with a popular one gets a miss, never another
/// client's result.
pub(super) struct ParseCache {
    pub(super) capacity: usize,
    current: FxHashMap<u64, Entry>,
    previous: FxHashMap<u64, Entry>,
    /// Holds the result of an uncached parse, so every path returns a reference.
    pub(super) uncached: Prepared,
}

struct Entry {
    ua: Box<str>,
    hints: Option<Value>,
    prepared: Prepared,
}

impl Entry {
    fn matches(&self, ua: &str, hints: Option<&Value>) -> bool {
        *self.ua == *ua && self.hints.as_ref() == hints
    }
}

impl ParseCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            current: FxHashMap::default(),
            previous: FxHashMap::default(),
            uncached: Prepared::default(),
        }
    }

    fn generation_size(&self) -> usize {
        self.capacity.div_ceil(2).max(1)
    }

    pub(super) fn contains(&mut self, hash: u64, ua: &str, hints: Option<&Value>) -> bool {
        if self
            .current
            .get(&hash)
            .is_some_and(|e| e.matches(ua, hints))
        {
            return true;
        }
        match self.previous.remove(&hash) {
            Some(entry) if entry.matches(ua, hints) => {
                self.make_room();
                self.current.insert(hash, entry);
                true
            }
            Some(entry) => {
                self.previous.insert(hash, entry);
                false
            }
            None => false,
        }
    }

    pub(super) fn get(&self, hash: u64, ua: &str, hints: Option<&Value>) -> Option<&Prepared> {
        self.current
            .get(&hash)
            .filter(|e| e.matches(ua, hints))
            .map(|e| &e.prepared)
    }

    pub(super) fn insert(
        &mut self,
        hash: u64,
        ua: &str,
        hints: Option<&Value>,
        prepared: Prepared,
    ) -> &Prepared {
        if !self.current.contains_key(&hash) {
            self.make_room();
        }
        let entry = Entry {
            ua: ua.into(),
            hints: hints.cloned(),
            prepared,
        };
        // A colliding entry with another key is replaced: one slot per hash.
        self.current.insert(hash, entry);
        &self.current[&hash].prepared
    }

    fn make_room(&mut self) {
        if self.current.len() >= self.generation_size() {
            self.previous = std::mem::take(&mut self.current);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}
