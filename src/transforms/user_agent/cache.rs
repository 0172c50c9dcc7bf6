//! The parse cache: a resolved UA kept as shared slot values in a
//! `quick_cache` bounded by entry count, keyed by a hash of the UA and hints
//! (as JSON text) and checked against the whole key on a hit.

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, LazyLock};

use quick_cache::unsync::{Cache, DefaultLifecycle};
use quick_cache::{DefaultHashBuilder, Equivalent, UnitWeighter};
use rustc_hash::FxBuildHasher;
use serde_json::{Map, Value};

use super::UserAgentInfo;
use crate::event::{Context, FieldId, FieldValue};
use crate::schema;

/// Keys (UA plus hints as JSON text) longer than this are parsed every time
/// rather than cached, so that a client sending huge random UAs or hints
/// cannot fill memory through the cache: its keys hold at most
/// `cache_size` × this many bytes.
pub(super) const MAX_CACHED_KEY_BYTES: usize = 2048;
/// A resolved UA as shared slot values, so a cache hit only bumps refcounts.
#[derive(Debug, Clone, Default)]
pub(super) struct Prepared {
    /// `user_agent.name`, `.version`, `.category`, `.os`, `.device`.
    slots: Vec<(FieldId, FieldValue)>,
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
                slots.push((id, FieldValue::shared(value)));
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
            context.set(*id, value.clone());
        }
    }
}

/// The hints as the cache key holds them, written into `out` (emptied
/// first; nothing when there are none): JSON text, whose length is the
/// memory a key holds. A cloned `Value` would hold 32 bytes for each item,
/// and a B-tree node for each object, that their text does not show.
pub(super) fn hints_key(hints: Option<&Value>, out: &mut Vec<u8>) {
    out.clear();
    if let Some(hints) = hints {
        // Writing a `Value` into a `Vec` cannot fail (its keys are strings).
        let _ = serde_json::to_writer(&mut *out, hints);
    }
}

/// The parse cache: `quick_cache`'s CLOCK-PRO policy keeps the UAs in use
/// within `cache_size` entries. Values are shared, so a hit is a refcount.
///
/// Keys hash as the precomputed `key_hash` but compare whole: a client
/// crafting a UA whose hash collides with a popular one gets a miss, never
/// another client's result.
pub(super) struct ParseCache {
    /// `None` when `cache_size = 0`: every UA is parsed. Fx: the key is
    /// already a hash, one multiply spreads it.
    entries: Option<Cache<Key, Arc<Prepared>, UnitWeighter, FxBuildHasher>>,
    /// The key of `key_hash`, random: the UA and hints are the client's,
    /// and under `FxHasher` a client could make any number of UAs with one
    /// hash, all in one probe chain that each of their lookups walked.
    /// foldhash with a random seed, as `scrub_url`'s memos hash the
    /// client's URLs: std's SipHash cost ~650 instructions a beacon for a
    /// 120-byte UA, foldhash ~100.
    keys: DefaultHashBuilder,
}

/// An owned cache key: the UA, its hints as JSON text (empty when none),
/// and their hash. Its heap is exactly the two texts' bytes.
#[derive(PartialEq, Eq)]
struct Key {
    hash: u64,
    ua: Box<str>,
    hints: Box<[u8]>,
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The key of a lookup, borrowed from the event: a hit allocates nothing.
struct Lookup<'a> {
    hash: u64,
    ua: &'a str,
    hints: &'a [u8],
}

impl Hash for Lookup<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl Equivalent<Key> for Lookup<'_> {
    fn equivalent(&self, key: &Key) -> bool {
        self.hash == key.hash && *self.ua == *key.ua && *self.hints == *key.hints
    }
}

impl ParseCache {
    pub(super) fn new(capacity: usize) -> Self {
        Self {
            entries: (capacity > 0).then(|| {
                Cache::with(
                    capacity,
                    capacity as u64,
                    UnitWeighter,
                    FxBuildHasher,
                    DefaultLifecycle::default(),
                )
            }),
            keys: DefaultHashBuilder::default(),
        }
    }

    /// Hash of the cache key: the UA and its hints as JSON text.
    pub(super) fn key_hash(&self, ua: &str, hints_json: &[u8]) -> u64 {
        let mut hasher = self.keys.build_hasher();
        ua.hash(&mut hasher);
        hints_json.hash(&mut hasher);
        hasher.finish()
    }

    pub(super) fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    pub(super) fn get(&self, hash: u64, ua: &str, hints: &[u8]) -> Option<Arc<Prepared>> {
        let entries = self.entries.as_ref()?;
        entries.get(&Lookup { hash, ua, hints }).cloned()
    }

    /// Keeps `prepared` for this key (a colliding key's entry stays: both
    /// live in the cache, told apart by the whole key).
    pub(super) fn insert(&mut self, hash: u64, ua: &str, hints: &[u8], prepared: Arc<Prepared>) {
        if let Some(entries) = &mut self.entries {
            let key = Key {
                hash,
                ua: ua.into(),
                hints: hints.into(),
            };
            entries.insert(key, prepared);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries.as_ref().map_or(0, Cache::len)
    }
}
