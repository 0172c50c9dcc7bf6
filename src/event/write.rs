//! The one ECS serializer: an event's slots, merged with its context's, are
//! written as a nested JSON document straight into the caller's buffer (the
//! bulk body, the stdout line). Slot ids are in document order, so a merge of
//! the two sorted slot lists gives every object's fields together and keys in
//! sorted order — the same bytes a sorted JSON map would give.

use std::sync::{Arc, LazyLock};

use rustc_hash::FxHashMap;

use serde_json::Value;

use super::fields::{FieldId, REGISTRY};
use super::packed::{Packed, PackedSlot, PackedSlots};
use super::{Event, FieldValue, OwnSlot};
use crate::json_bytes::{write_number, write_str};
use serde_json::ser::{CompactFormatter, Formatter};

/// What one slot of the document holds, borrowed from the event or context.
#[derive(Clone, Copy)]
enum Item<'e> {
    Value(&'e FieldValue),
    Packed(&'e PackedSlots, Packed),
    /// `event.ingested` as the context's rendering holds it, a JSON string
    /// of a fixed length: copied without a call of `memcpy`.
    Ingested(&'e [u8; 26]),
    Millis(i64),
    Number(i64),
    Labels,
    /// Nothing to write (a removed field, an absent member).
    Skip,
}

/// Deepest nesting of a slot path (`http.request.referrer` is 3).
const MAX_DEPTH: usize = 8;

/// Per slot, the bytes that open it, made once: `"parent":{` for each of
/// the objects around it, then its own `"key":`.
struct SlotLayout {
    path_key: Padded,
    /// Where in `path_key` the part from depth `d` on starts (the parents
    /// from the `d`th, then the key), for `d` in `0..=depth`.
    from_depth: [u16; MAX_DEPTH],
    /// How many objects are around the slot.
    depth: u8,
    /// The id of the innermost object around it (`NO_PARENT` at the top):
    /// the same for two slots in the same object.
    parent: u16,
    /// `,"key":`, for a slot in the same object as the one before it.
    comma_key: Padded,
}

const NO_PARENT: u16 = u16::MAX;

/// Bytes kept with `SLACK` zeros after them: a copy of up to `SLACK` of
/// them from anywhere in them is a copy of a fixed size (two vector moves)
/// and a truncate, not a call of `memcpy` (some 35 instructions for a key,
/// about twenty times a document).
struct Padded {
    bytes: Box<[u8]>,
    len: usize,
}

const SLACK: usize = 32;

impl Padded {
    fn new(mut bytes: Vec<u8>) -> Self {
        let len = bytes.len();
        bytes.resize(len + SLACK, 0);
        Self {
            bytes: bytes.into_boxed_slice(),
            len,
        }
    }

    /// Writes the bytes from `start` (at most `len`) on.
    #[inline(always)]
    fn put_from(&self, start: usize, out: &mut Vec<u8>) {
        let len = self.len - start;
        match self
            .bytes
            .get(start..)
            .and_then(|b| b.first_chunk::<SLACK>())
        {
            Some(window) if len <= SLACK => {
                out.extend_from_slice(window);
                out.truncate(out.len() - (SLACK - len));
            }
            _ => out.extend_from_slice(&self.bytes[start..self.len]),
        }
    }
}

/// The fields an event holds as members rather than slots.
#[derive(Clone, Copy)]
enum Member {
    Timestamp,
    Ingested,
    Labels,
    ClientTs,
}

struct Layouts {
    slots: Vec<SlotLayout>,
    /// The members' slots, in document order.
    members: [(u16, Member); 4],
    /// By `prev * slots + next`, how many of the objects around slot `prev`
    /// are around slot `next` too: the ones left open going from one to the
    /// other.
    common: Vec<u8>,
}

/// The objects around the last slot and the document, closed.
const CLOSING: &[u8; MAX_DEPTH] = b"}}}}}}}}";
/// Nothing written yet (`prev` of `open_slot`).
const NOTHING: u16 = u16::MAX;

static LAYOUT: LazyLock<Layouts> = LazyLock::new(|| {
    // `u16::MAX` marks a used-up list in `write_document`.
    assert!(REGISTRY.slots.len() < u16::MAX as usize, "too many slots");
    let mut parent_ids: FxHashMap<String, u16> = FxHashMap::default();
    let mut chains: Vec<Vec<u16>> = Vec::new();
    let slots = REGISTRY
        .slots
        .iter()
        .map(|slot| {
            let (leaf, parents) = slot.segments.split_last().expect("paths have a segment");
            assert!(parents.len() < MAX_DEPTH, "{} nests too deep", slot.path);
            let mut path_key = Vec::new();
            let mut from_depth = [0u16; MAX_DEPTH];
            let mut chain = Vec::new();
            for d in 0..parents.len() {
                let prefix = parents[..=d].join(".");
                let next = parent_ids.len() as u16;
                chain.push(*parent_ids.entry(prefix).or_insert(next));
                from_depth[d] = path_key.len() as u16;
                path_key.extend_from_slice(format!("\"{}\":{{", parents[d]).as_bytes());
            }
            from_depth[parents.len()] = path_key.len() as u16;
            path_key.extend_from_slice(format!("\"{leaf}\":").as_bytes());
            let parent = chain.last().copied().unwrap_or(NO_PARENT);
            chains.push(chain);
            SlotLayout {
                path_key: Padded::new(path_key),
                from_depth,
                depth: parents.len() as u8,
                parent,
                comma_key: Padded::new(format!(",\"{leaf}\":").into_bytes()),
            }
        })
        .collect();
    let common = chains
        .iter()
        .flat_map(|a| {
            chains
                .iter()
                .map(move |b| a.iter().zip(b).take_while(|(x, y)| x == y).count() as u8)
        })
        .collect();
    let registry = &*REGISTRY;
    let mut members = [
        (registry.timestamp.0, Member::Timestamp),
        (registry.ingested.0, Member::Ingested),
        (registry.labels.0, Member::Labels),
        (registry.client_ts.0, Member::ClientTs),
    ];
    members.sort_by_key(|(id, _)| *id);
    Layouts {
        slots,
        members,
        common,
    }
});

impl Layouts {
    /// Writes what comes between slot `prev` (the last one written, or
    /// `NOTHING`) and slot `next`'s value: the objects of `prev` that `next`
    /// is not in closed, a comma, the objects of `next` not open yet opened,
    /// and its key: one copy of a part of its opening, whatever the paths.
    #[inline(always)]
    fn open_slot(&self, prev: u16, next: u16, out: &mut Vec<u8>) {
        let to = &self.slots[usize::from(next)];
        let Some(from) = self.slots.get(usize::from(prev)) else {
            // `NOTHING`: the first slot.
            to.path_key.put_from(0, out);
            return;
        };
        if from.parent == to.parent {
            to.comma_key.put_from(0, out);
            return;
        }
        let common = self.common[usize::from(prev) * self.slots.len() + usize::from(next)];
        for _ in common..from.depth {
            out.push(b'}');
        }
        out.push(b',');
        to.path_key
            .put_from(usize::from(to.from_depth[usize::from(common)]), out);
    }

    /// Closes the objects around slot `last` (`NOTHING` for none) and the
    /// document.
    fn close(&self, last: u16, out: &mut Vec<u8>) {
        let open = self
            .slots
            .get(usize::from(last))
            .map_or(0, |slot| usize::from(slot.depth));
        out.extend_from_slice(&CLOSING[..=open]);
    }
}

impl Event {
    /// Serializes the event as one JSON document (no trailing newline).
    pub fn write_json(&self, out: &mut Vec<u8>) {
        self.write_document(out, true);
    }

    /// The document indented as `serde_json`'s pretty printer indents it
    /// (no trailing newline): the compact document with whitespace put
    /// in, so both show the same values to the last digit. (Read back into
    /// a `Value` first, floats of 17 digits came back one step off without
    /// `serde_json`'s `float_roundtrip`, and past its 128 levels of nesting
    /// the whole document came out as `null`.)
    pub fn write_json_pretty(&self, out: &mut Vec<u8>) {
        let mut compact = Vec::with_capacity(1024);
        self.write_json(&mut compact);
        indent_json(&compact, out);
    }

    /// The document without `@timestamp` and `event.ingested`: what the
    /// browser sent, for an `_id` that a re-sent report reproduces.
    pub fn write_json_untimed(&self, out: &mut Vec<u8>) {
        self.write_document(out, false);
    }

    fn write_document(&self, out: &mut Vec<u8>, with_times: bool) {
        // Once, not per field: each `LAYOUT[..]` checked the lazy static.
        let layouts = &*LAYOUT;
        // Packed slots are read in place, never made `OwnSlot`s here.
        let (packed, packed_run, own): (_, &[PackedSlot], &[OwnSlot]) = match self.own.packed_run()
        {
            Some((packed, run)) => (Some(packed), run, &[]),
            None => (None, &[], self.own.fields()),
        };
        let context = &self.context.fields;
        let rendered = self
            .context
            .rendered
            .get_or_render(context, self.context.received_ms);
        // The fields held as members that the event has, in document order.
        const END: u16 = u16::MAX;
        let mut members = [(END, Item::Skip); 4];
        let mut present = 0;
        for &(id, member) in &layouts.members {
            let item = match member {
                Member::Timestamp if with_times => {
                    self.timestamp_ms.map_or(Item::Skip, Item::Millis)
                }
                // The context's, written once for all its events.
                Member::Ingested if with_times => {
                    match (&rendered.ingested, self.context.received_ms) {
                        (Some(text), _) => Item::Ingested(text),
                        (None, Some(ms)) => Item::Millis(ms),
                        (None, None) => Item::Skip,
                    }
                }
                Member::Labels if self.has_labels() => Item::Labels,
                Member::ClientTs => self.client_ts_ms.map_or(Item::Skip, Item::Number),
                _ => Item::Skip,
            };
            if !matches!(item, Item::Skip) {
                members[present] = (id, item);
                present += 1;
            }
        }

        out.push(b'{');
        // The slot written last: what `open_slot` closes and opens from.
        let mut prev = NOTHING;
        // A three-way merge of sorted lists; the event's own slot wins over
        // the context's. Ids as plain numbers, `END` once a list is used
        // up, each read again only when its list moves on: the hot loop
        // compares integers, not options.
        // One of `own` and `packed_run` is empty.
        let own_at = |i: usize| match packed_run.get(i) {
            Some(slot) => slot.id.0,
            None => own.get(i).map_or(END, |(id, _)| id.0),
        };
        let context_at = |j: usize| context.get(j).map_or(END, |(id, _)| id.0);
        let (mut i, mut j, mut k) = (0, 0, 0);
        let (mut own_id, mut context_id, mut member_id) = (own_at(0), context_at(0), members[0].0);
        loop {
            let next = own_id.min(context_id).min(member_id);
            if next == END {
                break;
            }
            let item = if member_id == next {
                let item = members[k].1;
                k += 1;
                member_id = members.get(k).map_or(END, |(id, _)| *id);
                item
            } else if own_id == next {
                let item = match (packed, packed_run.get(i)) {
                    (Some(packed), Some(slot)) => Item::Packed(packed, slot.value),
                    _ => own[i].1.as_ref().map_or(Item::Skip, Item::Value),
                };
                i += 1;
                own_id = own_at(i);
                if context_id == next {
                    j += 1;
                    context_id = context_at(j);
                }
                item
            } else {
                // The context slots from here to the next own slot or
                // member go in one copy, the objects between them and all:
                // the rendering holds them one after another. Right after
                // the slot before them in the rendering (or one of the
                // same path) even the way in is a part of it.
                let first = j;
                let stop = own_id.min(member_id);
                while context.get(j + 1).is_some_and(|(id, _)| id.0 < stop) {
                    j += 1;
                }
                let last = j;
                j += 1;
                let from = match first.checked_sub(1) {
                    Some(before) if context[before].0 .0 == prev => rendered.ends[before],
                    _ => {
                        layouts.open_slot(prev, context_id, out);
                        rendered.starts[first]
                    }
                };
                out.extend_from_slice(&rendered.json[from as usize..rendered.ends[last] as usize]);
                prev = context[last].0 .0;
                context_id = context_at(j);
                continue;
            };
            if matches!(item, Item::Skip) {
                continue;
            }
            layouts.open_slot(prev, next, out);
            prev = next;
            match item {
                Item::Value(value) => write_value(value, out),
                Item::Packed(packed, value) => packed.write(value, out),
                Item::Ingested(json) => out.extend_from_slice(json),
                // `@timestamp` is most often of the day the beacon came in:
                // the date as `event.ingested` has it, the time put in.
                Item::Millis(ms) => match &rendered.ingested {
                    Some(ingested) if Some(ms.div_euclid(DAY_MS)) == rendered.received_day => {
                        let mut text = *ingested;
                        fill_time(&mut text, 12, ms.rem_euclid(DAY_MS) as u32);
                        out.extend_from_slice(&text);
                    }
                    _ => {
                        out.push(b'"');
                        write_iso_millis(ms, out);
                        out.push(b'"');
                    }
                },
                Item::Number(n) => {
                    // Writing into a Vec cannot fail.
                    let _ = CompactFormatter.write_i64(out, n);
                }
                Item::Labels => self.write_labels(out),
                Item::Skip => {}
            }
        }
        layouts.close(prev, out);
    }

    fn has_labels(&self) -> bool {
        let own = self.own_labels();
        // No labels of its own (the usual event: `labels` sets them on the
        // beacon's context): the context's all show, and none needs a
        // search of the event's.
        if own.is_empty() {
            return !self.context.labels.is_empty();
        }
        own.iter().any(|(_, v)| v.is_some())
            || self
                .context
                .labels
                .iter()
                .any(|(name, _)| self.has_label(name))
    }

    /// The `labels` object: the context's labels with the event's own over them.
    fn write_labels(&self, out: &mut Vec<u8>) {
        let own = self.own_labels();
        let context = &self.context.labels;
        out.push(b'{');
        let mut first = true;
        let mut emit = |name: &Arc<str>, value: &FieldValue, out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
            write_str(name, out);
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

/// A context's slots rendered as JSON, one after another, with the objects
/// between them opened and closed as a document of the context alone would
/// have them (see `Context::rendered`): the writer copies the context slots
/// between two of the event's own in one piece. Copies of a context start
/// empty; it holds about the context's own size again (its values and their
/// keys), and only once an event of it is written.
#[derive(Default)]
pub(super) struct RenderedValues(std::sync::OnceLock<Rendered>);

pub(super) struct Rendered {
    json: Vec<u8>,
    /// By slot index, where its value starts in `json` (after its key).
    starts: Vec<u32>,
    /// By slot index, where its value ends in `json`.
    ends: Vec<u32>,
    /// `event.ingested` as a JSON string, when the context has a receive time.
    ingested: Option<[u8; 26]>,
    /// The day of `ingested`, counted from 1970-01-01, when `ingested` is
    /// that day's date (a time past what chrono writes is written as the
    /// epoch, 26 bytes too: no date for a `@timestamp` of its day).
    received_day: Option<i64>,
}

impl RenderedValues {
    pub(super) fn clear(&mut self) {
        self.0.take();
    }

    fn get_or_render(
        &self,
        fields: &[(FieldId, FieldValue)],
        received_ms: Option<i64>,
    ) -> &Rendered {
        self.0.get_or_init(|| {
            let layouts = &*LAYOUT;
            let mut json = Vec::with_capacity(512);
            let mut starts = Vec::with_capacity(fields.len());
            let mut ends = Vec::with_capacity(fields.len());
            let mut prev = NOTHING;
            for (id, value) in fields {
                layouts.open_slot(prev, id.0, &mut json);
                prev = id.0;
                starts.push(json.len() as u32);
                write_value(value, &mut json);
                ends.push(json.len() as u32);
            }
            let ingested = received_ms.and_then(|ms| {
                let mut text = Vec::with_capacity(26);
                text.push(b'"');
                write_iso_millis(ms, &mut text);
                text.push(b'"');
                // A year past 9999 is written longer: then per event.
                text.try_into().ok()
            });
            Rendered {
                json,
                starts,
                ends,
                ingested,
                received_day: received_ms
                    .filter(|ms| CALENDAR.contains(ms))
                    .map(|ms| ms.div_euclid(DAY_MS)),
            }
        })
    }
}

impl Clone for RenderedValues {
    /// A copy is about to be edited: it renders afresh.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for RenderedValues {
    /// A cache: never part of what a context is.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for RenderedValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "rendered"
        } else {
            "not rendered"
        })
    }
}

pub(super) fn write_value(value: &FieldValue, out: &mut Vec<u8>) {
    // The value at hand, not through `Deref`: a call per value.
    let value = match value {
        FieldValue::Raw(raw) => return out.extend_from_slice(raw.text().as_bytes()),
        FieldValue::Text(..) => return write_str(value.as_str().unwrap_or_default(), out),
        FieldValue::Owned(value) => value,
        FieldValue::Shared(value) => &**value,
        FieldValue::Static(value) => *value,
    };
    write_plain(value, out);
}

/// A `Value` as the document has it.
#[inline]
pub(super) fn write_plain(value: &Value, out: &mut Vec<u8>) {
    match value {
        // Most strings need no escape: copied, not read byte by byte.
        Value::String(text) => write_str(text, out),
        Value::Number(n) => write_number(n, out),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        // Writing a JSON value into a Vec cannot fail.
        value => {
            let _ = serde_json::to_writer(out, value);
        }
    }
}

/// Compact JSON (as the writer makes it: no whitespace outside strings)
/// laid out as `serde_json::to_writer_pretty` lays it out: two spaces a
/// level, `": "` after a key, `{}` and `[]` for empty ones.
fn indent_json(compact: &[u8], out: &mut Vec<u8>) {
    fn newline(out: &mut Vec<u8>, depth: usize) {
        out.push(b'\n');
        out.resize(out.len() + 2 * depth, b' ');
    }
    out.reserve(compact.len() * 2);
    let mut depth = 0usize;
    let mut at = 0;
    while let Some(&b) = compact.get(at) {
        match b {
            b'"' => {
                // Copied through its closing quote, escapes and all.
                let start = at;
                at += 1;
                while let Some(&c) = compact.get(at) {
                    match c {
                        b'\\' => at += 2,
                        b'"' => break,
                        _ => at += 1,
                    }
                }
                at = (at + 1).min(compact.len());
                out.extend_from_slice(&compact[start..at]);
                continue;
            }
            b'{' | b'[' => {
                out.push(b);
                if let Some(&close @ (b'}' | b']')) = compact.get(at + 1) {
                    out.push(close);
                    at += 1;
                } else {
                    depth += 1;
                    newline(out, depth);
                }
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                newline(out, depth);
                out.push(b);
            }
            b',' => {
                out.push(b',');
                newline(out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => out.push(b),
        }
        at += 1;
    }
}

/// `2026-11-21T10:39:30.175Z`, written without allocating. Two per document:
/// the date comes from days since the epoch by integer arithmetic (Howard
/// Hinnant's `civil_from_days`), a tenth of what chrono's calendar costs.
pub fn write_iso_millis(ms: i64, out: &mut Vec<u8>) {
    if !CALENDAR.contains(&ms) {
        match chrono::DateTime::from_timestamp_millis(ms) {
            Some(t) => out.extend_from_slice(
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                    .as_bytes(),
            ),
            None => out.extend_from_slice(b"1970-01-01T00:00:00.000Z"),
        }
        return;
    }
    let (year, month, day) = civil_from_days(ms.div_euclid(DAY_MS));
    // Filled in place and written once: one capacity check, not twenty;
    // two digits at a time from a table, not one by one.
    let mut text = *b"0000-00-00T00:00:00.000Z";
    let year = year as u32;
    for (at, n) in [(0, year / 100), (2, year % 100), (5, month), (8, day)] {
        text[at..at + 2].copy_from_slice(&DIGIT_PAIRS[n as usize % 100]);
    }
    fill_time(&mut text, 11, ms.rem_euclid(DAY_MS) as u32);
    out.extend_from_slice(&text);
}

const DAY_MS: i64 = 86_400_000;

/// The times `write_iso_millis` writes itself, whole days:
/// 0000-01-01T00:00:00.000Z ..= 9999-12-31T23:59:59.999Z.
const CALENDAR: std::ops::RangeInclusive<i64> = -62_167_219_200_000..=253_402_300_799_999;

/// `HH:MM:SS.mmm` of `in_day` milliseconds into the day, at `text[at..]`
/// (the colons and the point already there).
#[inline(always)]
fn fill_time(text: &mut [u8], at: usize, in_day: u32) {
    for (offset, n) in [
        (0, in_day / 3_600_000),
        (3, in_day / 60_000 % 60),
        (6, in_day / 1000 % 60),
        (10, in_day % 100),
    ] {
        text[at + offset..at + offset + 2].copy_from_slice(&DIGIT_PAIRS[n as usize % 100]);
    }
    text[at + 9] = b'0' + (in_day % 1000 / 100) as u8;
}

/// `00` to `99`.
const DIGIT_PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0u8; 2]; 100];
    let mut n = 0;
    while n < 100 {
        pairs[n] = [b'0' + (n / 10) as u8, b'0' + (n % 10) as u8];
        n += 1;
    }
    pairs
};

/// (year, month 1..=12, day 1..=31) of a day counted from 1970-01-01, in
/// the proleptic Gregorian calendar (eras of 400 years from 0000-03-01).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

impl serde::Serialize for Event {
    /// For tools that want a `Value`-shaped event; documents go through
    /// [`Event::write_json`] (or [`Event::write_json_pretty`]).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_value().serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_bytes_are_written_from_any_start_short_or_long() {
        for len in 0..(2 * SLACK + 3) {
            let bytes: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let padded = Padded::new(bytes.clone());
            for start in 0..=len {
                let mut out = b"x".to_vec();
                padded.put_from(start, &mut out);
                assert_eq!(out[1..], bytes[start..], "{len} {start}");
            }
        }
    }
}
