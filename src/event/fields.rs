//! Field ids: every document field an event can hold gets a small number at
//! start-up, derived from the tables in `schema`. Components resolve the
//! dotted paths of their config to a [`FieldPath`] once; per event they
//! look fields up by id, never by hashing or comparing path strings.
//!
//! Ids are assigned in document order (paths sorted segment by segment, the
//! order of nested sorted maps), so writing a document is a merge of sorted
//! slot lists and every object's fields come out together.

use rustc_hash::FxHashMap;
use std::sync::{Arc, LazyLock};

use crate::schema;

/// A slot of the document: one leaf field, or one object kept whole
/// (`client.geo`, a `flattened` field such as `rum.extra`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldId(pub(crate) u16);

/// Fields the event holds as typed members rather than in slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Virtual {
    /// `@timestamp`: epoch milliseconds until written.
    Timestamp,
    /// `event.ingested`: the context's receive time.
    Ingested,
    /// `rum.client_ts`: the time the browser sent, epoch milliseconds.
    ClientTs,
    /// The `labels` object (static and derived labels, by name).
    Labels,
}

/// What a slot id stands for.
#[derive(Debug)]
pub struct SlotInfo {
    pub path: &'static str,
    /// `path` split at dots.
    pub segments: Vec<&'static str>,
    /// Set for the fields the event holds as members.
    pub virtual_field: Option<Virtual>,
}

/// Objects stored whole in one slot: transforms fill them from caches, so a
/// beacon pays a refcount, not a copy per leaf.
pub const OBJECT_SLOTS: &[&str] = &[
    schema::CLIENT_GEO,
    schema::CLIENT_AS,
    "user_agent.os",
    "user_agent.device",
];

pub struct Registry {
    pub slots: Vec<SlotInfo>,
    by_path: FxHashMap<&'static str, FieldId>,
    pub timestamp: FieldId,
    pub ingested: FieldId,
    pub client_ts: FieldId,
    pub labels: FieldId,
    pub rum_type: FieldId,
    pub dataset: FieldId,
    pub kind: FieldId,
    pub error_count: FieldId,
}

fn segments_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    a.split('.').cmp(b.split('.'))
}

pub static REGISTRY: LazyLock<Registry> = LazyLock::new(|| {
    let mut paths: Vec<&'static str> = Vec::new();
    let under_object = |path: &str| {
        OBJECT_SLOTS.iter().any(|o| {
            path.len() > o.len() && path.starts_with(o) && path.as_bytes()[o.len()] == b'.'
        })
    };
    for field in schema::all_fields() {
        if field.path.starts_with("labels.") || under_object(field.path) {
            continue;
        }
        paths.push(field.path);
    }
    paths.extend(OBJECT_SLOTS);
    paths.push(schema::LABELS);
    paths.sort_by(|a, b| segments_cmp(a, b));
    paths.dedup();
    let virtual_of = |path: &str| match path {
        schema::TIMESTAMP => Some(Virtual::Timestamp),
        schema::EVENT_INGESTED => Some(Virtual::Ingested),
        schema::RUM_CLIENT_TS => Some(Virtual::ClientTs),
        schema::LABELS => Some(Virtual::Labels),
        _ => None,
    };
    let slots: Vec<SlotInfo> = paths
        .iter()
        .map(|path| SlotInfo {
            path,
            segments: path.split('.').collect(),
            virtual_field: virtual_of(path),
        })
        .collect();
    let by_path: FxHashMap<&'static str, FieldId> = paths
        .iter()
        .enumerate()
        .map(|(i, p)| (*p, FieldId(i as u16)))
        .collect();
    Registry {
        timestamp: by_path[schema::TIMESTAMP],
        ingested: by_path[schema::EVENT_INGESTED],
        client_ts: by_path[schema::RUM_CLIENT_TS],
        rum_type: by_path[schema::RUM_TYPE],
        dataset: by_path[schema::EVENT_DATASET],
        kind: by_path[schema::EVENT_KIND],
        error_count: by_path["rum.error.count"],
        labels: by_path[schema::LABELS],
        slots,
        by_path,
    }
});

impl FieldId {
    /// The id of a slot path; panics on a path that is not a slot (a
    /// programming error: use [`FieldPath::resolve`] for config input).
    pub fn of(path: &str) -> FieldId {
        match REGISTRY.by_path.get(path) {
            Some(id) => *id,
            None => panic!("`{path}` is not a field slot"),
        }
    }

    pub fn lookup(path: &str) -> Option<FieldId> {
        REGISTRY.by_path.get(path).copied()
    }

    /// How many slot ids there are: `index` is below it.
    pub fn count() -> usize {
        REGISTRY.slots.len()
    }

    /// The id as an index, for tables by slot.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    pub fn info(self) -> &'static SlotInfo {
        &REGISTRY.slots[self.0 as usize]
    }

    pub fn path(self) -> &'static str {
        self.info().path
    }
}

/// A dotted path as components address it, resolved once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldPath {
    /// A slot, and the keys below it for a path inside an object slot
    /// (`client.geo.country_iso_code` is `client.geo` then `country_iso_code`).
    Slot { id: FieldId, rest: Vec<Arc<str>> },
    /// `labels.<name>`.
    Label(Arc<str>),
}

impl FieldPath {
    /// Resolves a dotted path; `None` for a path no document can have.
    pub fn resolve(path: &str) -> Option<FieldPath> {
        if let Some(name) = path.strip_prefix("labels.") {
            return (!name.is_empty()).then(|| FieldPath::Label(Arc::from(name)));
        }
        if let Some(id) = FieldId::lookup(path) {
            // Fields held as members (`@timestamp`, `labels`) are no slot to read.
            return id.info().virtual_field.is_none().then(|| FieldPath::Slot {
                id,
                rest: Vec::new(),
            });
        }
        // The longest slot that is a prefix of the path, if it holds objects.
        let mut end = path.len();
        while let Some(dot) = path[..end].rfind('.') {
            end = dot;
            if let Some(id) = FieldId::lookup(&path[..end]) {
                let ty = schema::all_fields()
                    .find(|f| f.path == id.path())
                    .map(|f| f.ty);
                let object = OBJECT_SLOTS.contains(&id.path())
                    || matches!(
                        ty,
                        Some(schema::FieldType::Flattened) | Some(schema::FieldType::GeoPoint)
                    );
                if !object {
                    return None;
                }
                let rest = path[end + 1..].split('.').map(Arc::from).collect();
                return Some(FieldPath::Slot { id, rest });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_follow_document_order() {
        let slots = &REGISTRY.slots;
        for pair in slots.windows(2) {
            assert!(
                pair[0].segments < pair[1].segments,
                "{} !< {}",
                pair[0].path,
                pair[1].path
            );
        }
        assert_eq!(slots[0].path, "@timestamp");
    }

    #[test]
    fn paths_resolve_to_slots_labels_or_inside_objects() {
        assert_eq!(
            FieldPath::resolve("url.domain"),
            Some(FieldPath::Slot {
                id: FieldId::of("url.domain"),
                rest: vec![]
            })
        );
        assert_eq!(
            FieldPath::resolve("labels.site"),
            Some(FieldPath::Label("site".into()))
        );
        assert_eq!(
            FieldPath::resolve("client.geo.country_iso_code"),
            Some(FieldPath::Slot {
                id: FieldId::of("client.geo"),
                rest: vec!["country_iso_code".into()]
            })
        );
        assert_eq!(
            FieldPath::resolve("rum.extra.a.b"),
            Some(FieldPath::Slot {
                id: FieldId::of("rum.extra"),
                rest: vec!["a".into(), "b".into()]
            })
        );
        assert_eq!(FieldPath::resolve("url.domain.deeper"), None);
        assert_eq!(FieldPath::resolve("nope"), None);
    }
}
