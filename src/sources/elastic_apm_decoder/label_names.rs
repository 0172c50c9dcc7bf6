//! Which label names (`metadata.labels`, `context.tags`) become `labels.*`
//! fields. Each name is a field of the index, mapped when a document first
//! brings it, so names chosen by whoever posts to the intake would take the
//! day's index to the engine's field limit (Elasticsearch's
//! `index.mapping.total_fields.limit`, 1,000), past which every document
//! bringing a new field is refused. The names are bounded here, on every
//! engine: the first `max_label_names` distinct names the process sees,
//! or the operator's list; a label of another name stays under `rum.extra`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rustc_hash::FxHashSet;

/// The label names that may be fields, shared by every request of a
/// source for the life of the process.
#[derive(Debug)]
pub struct LabelNames {
    /// `label_names`: exactly these, when the operator lists them.
    listed: Option<FxHashSet<Box<str>>>,
    /// `max_label_names`: how many distinct names `seen` takes.
    max: usize,
    /// The names taken so far, first come first taken. Never shrinks: a
    /// request decoded twice (once more after waiting for room) gets the
    /// same answer, and a name once a field stays one.
    seen: Mutex<FxHashSet<Box<str>>>,
    /// `seen.len()`, read without the lock (the gauge, the fast refusal).
    taken: AtomicUsize,
}

impl LabelNames {
    /// The first `max` distinct names seen.
    pub fn first_seen(max: usize) -> Self {
        LabelNames {
            listed: None,
            max,
            seen: Mutex::default(),
            taken: AtomicUsize::new(0),
        }
    }

    /// Exactly `names` (as written in the document: `.`, `*` and `"` as `_`).
    pub fn listed<'a>(names: impl IntoIterator<Item = &'a str>) -> Self {
        let listed: FxHashSet<Box<str>> = names.into_iter().map(Box::from).collect();
        LabelNames {
            max: listed.len(),
            taken: AtomicUsize::new(listed.len()),
            listed: Some(listed),
            seen: Mutex::default(),
        }
    }

    /// Whether the label `name` (as written in the document) may be a
    /// `labels.*` field; a new name is taken while there is room.
    pub fn admit(&self, name: &str) -> bool {
        if let Some(listed) = &self.listed {
            return listed.contains(name);
        }
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.contains(name) {
            return true;
        }
        if seen.len() >= self.max {
            return false;
        }
        seen.insert(Box::from(name));
        self.taken.store(seen.len(), Ordering::Relaxed);
        true
    }

    /// How many names are fields so far (the listed ones, when listed).
    pub fn taken(&self) -> usize {
        self.taken.load(Ordering::Relaxed)
    }

    /// The most names that can be fields.
    pub fn max(&self) -> usize {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_names_seen_are_taken_and_stay_taken() {
        let names = LabelNames::first_seen(2);
        assert!(names.admit("a"));
        assert!(names.admit("a"), "a name seen again takes no room");
        assert!(names.admit("b"));
        assert!(!names.admit("c"), "full");
        assert!(names.admit("a") && names.admit("b"), "taken names stay");
        assert!(!names.admit("c"));
        assert_eq!((names.taken(), names.max()), (2, 2));
        let none = LabelNames::first_seen(0);
        assert!(!none.admit("a"));
    }

    #[test]
    fn listed_names_are_the_only_ones() {
        let names = LabelNames::listed(["team", "ab_test"]);
        assert!(names.admit("team") && names.admit("ab_test"));
        assert!(!names.admit("other"));
        assert_eq!(names.taken(), 2);
    }
}
