//! The one ECS serializer: an event's slots, merged with its context's, are
//! written as a nested JSON document straight into the caller's buffer (the
//! bulk body, the stdout line). Slot ids are in document order, so a merge of
//! the two sorted slot lists gives every object's fields together and keys in
//! sorted order — the same bytes a sorted JSON map would give.

use std::sync::Arc;

use serde_json::Value;

use super::fields::{FieldId, REGISTRY};
use super::{Event, FieldValue};

/// What one slot of the document holds, borrowed from the event or context.
enum Item<'e> {
    Value(&'e Value),
    Millis(i64),
    Labels,
}

impl Event {
    /// Serializes the event as one JSON document (no trailing newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        let registry = &*REGISTRY;
        let own = &self.own.fields;
        let context = &self.context.fields;
        let mut items: Vec<(FieldId, Item<'_>)> = Vec::with_capacity(own.len() + context.len() + 3);
        // Merge the two sorted lists; the event's own slot wins.
        let (mut i, mut j) = (0, 0);
        while i < own.len() || j < context.len() {
            let take_own = match (own.get(i), context.get(j)) {
                (Some((a, _)), Some((b, _))) => a <= b,
                (Some(_), None) => true,
                _ => false,
            };
            if take_own {
                let (id, value) = &own[i];
                if context.get(j).is_some_and(|(b, _)| b == id) {
                    j += 1;
                }
                if let Some(value) = value {
                    items.push((*id, Item::Value(value)));
                }
                i += 1;
            } else {
                let (id, value) = &context[j];
                items.push((*id, Item::Value(value)));
                j += 1;
            }
        }
        // Fields held as members go in at their place in document order.
        fn insert<'e>(items: &mut Vec<(FieldId, Item<'e>)>, id: FieldId, item: Item<'e>) {
            let at = items.partition_point(|(k, _)| *k < id);
            items.insert(at, (id, item));
        }
        if let Some(ms) = self.own.timestamp_ms {
            insert(&mut items, registry.timestamp, Item::Millis(ms));
        }
        if let Some(ms) = self.context.received_ms {
            insert(&mut items, registry.ingested, Item::Millis(ms));
        }
        if !self.own.labels.is_empty() || !self.context.labels.is_empty() {
            insert(&mut items, registry.labels, Item::Labels);
        }

        out.push(b'{');
        let mut open: Vec<&'static str> = Vec::with_capacity(4);
        let mut need_comma = false;
        for (id, item) in items {
            let info = id.info();
            let (leaf, parents) = info.segments.split_last().expect("paths have a segment");
            let common = open
                .iter()
                .zip(parents.iter())
                .take_while(|(a, b)| a == b)
                .count();
            for _ in common..open.len() {
                out.push(b'}');
                need_comma = true;
            }
            open.truncate(common);
            for segment in &parents[common..] {
                if need_comma {
                    out.push(b',');
                }
                write_key(segment, out);
                out.push(b'{');
                open.push(segment);
                need_comma = false;
            }
            if matches!(item, Item::Labels) && !self.has_labels() {
                continue;
            }
            if need_comma {
                out.push(b',');
            }
            write_key(leaf, out);
            match item {
                Item::Value(value) => write_value(value, out),
                Item::Millis(ms) => {
                    out.push(b'"');
                    write_iso_millis(ms, out);
                    out.push(b'"');
                }
                Item::Labels => self.write_labels(out),
            }
            need_comma = true;
        }
        for _ in 0..open.len() {
            out.push(b'}');
        }
        out.push(b'}');
    }

    fn has_labels(&self) -> bool {
        self.own.labels.iter().any(|(_, v)| v.is_some())
            || self
                .context
                .labels
                .iter()
                .any(|(name, _)| self.label(name).is_some())
    }

    /// The `labels` object: the context's labels with the event's own over them.
    fn write_labels(&self, out: &mut Vec<u8>) {
        let own = &self.own.labels;
        let context = &self.context.labels;
        out.push(b'{');
        let mut first = true;
        let mut emit = |name: &Arc<str>, value: &FieldValue, out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
            let _ = serde_json::to_writer(&mut *out, &**name);
            out.push(b':');
            write_value(value, out);
        };
        let (mut i, mut j) = (0, 0);
        while i < own.len() || j < context.len() {
            let take_own = match (own.get(i), context.get(j)) {
                (Some((a, _)), Some((b, _))) => a <= b,
                (Some(_), None) => true,
                _ => false,
            };
            if take_own {
                let (name, value) = &own[i];
                if context.get(j).is_some_and(|(b, _)| b == name) {
                    j += 1;
                }
                if let Some(value) = value {
                    emit(name, value, out);
                }
                i += 1;
            } else {
                let (name, value) = &context[j];
                emit(name, value, out);
                j += 1;
            }
        }
        out.push(b'}');
    }
}

fn write_key(key: &str, out: &mut Vec<u8>) {
    // Schema segments are plain ASCII identifiers: no escaping needed.
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

fn write_value(value: &Value, out: &mut Vec<u8>) {
    // Writing a JSON value into a Vec cannot fail.
    let _ = serde_json::to_writer(out, value);
}

/// `2026-11-21T10:39:30.175Z`, written without allocating.
pub fn write_iso_millis(ms: i64, out: &mut Vec<u8>) {
    use chrono::{Datelike, Timelike};
    let Some(t) = chrono::DateTime::from_timestamp_millis(ms) else {
        out.extend_from_slice(b"1970-01-01T00:00:00.000Z");
        return;
    };
    let year = t.year();
    if !(0..=9999).contains(&year) {
        out.extend_from_slice(
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .as_bytes(),
        );
        return;
    }
    let digits = |n: u32, width: usize, out: &mut Vec<u8>| {
        let mut buf = [b'0'; 4];
        let mut n = n;
        for slot in buf[..width].iter_mut().rev() {
            *slot = b'0' + (n % 10) as u8;
            n /= 10;
        }
        out.extend_from_slice(&buf[..width]);
    };
    digits(year as u32, 4, out);
    out.push(b'-');
    digits(t.month(), 2, out);
    out.push(b'-');
    digits(t.day(), 2, out);
    out.push(b'T');
    digits(t.hour(), 2, out);
    out.push(b':');
    digits(t.minute(), 2, out);
    out.push(b':');
    digits(t.second(), 2, out);
    out.push(b'.');
    digits(t.timestamp_subsec_millis(), 3, out);
    out.push(b'Z');
}

impl serde::Serialize for Event {
    /// For the human-readable (pretty) stdout encoding; documents for
    /// machines go through [`Event::write_json`].
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}
