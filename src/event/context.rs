//! What the events of one beacon share ([`Context`]) and what a slot holds
//! ([`FieldValue`]), with the sorted-list helpers both `Context` and
//! `Event` keep their slots in.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{Number, Value};

use super::counted::{Counted, Releases};
use super::fields::{self, FieldId, FieldPath};
use super::raw_json::RawJson;
use super::text_block::{text_bytes, TextBlock, TextBlockBuilder};
use super::write;
use super::EVENT_KIND;

/// A slot's value: owned, or shared with a cache or static table (a clone is
/// then a refcount), or JSON text kept as the document will carry it, or a
/// string of the request's [`TextBlock`] (its index there).
#[derive(Debug, Clone)]
pub enum FieldValue {
    Owned(Value),
    Shared(Arc<Value>),
    Static(&'static Value),
    Raw(Arc<RawJson>),
    Text(Counted<TextBlock>, u32),
}

impl std::ops::Deref for FieldValue {
    type Target = Value;
    fn deref(&self) -> &Value {
        match self {
            FieldValue::Owned(v) => v,
            FieldValue::Shared(v) => v,
            FieldValue::Static(v) => v,
            FieldValue::Raw(raw) => raw.value(),
            FieldValue::Text(block, index) => block.value(*index),
        }
    }
}

impl PartialEq for FieldValue {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (FieldValue::Shared(a), FieldValue::Shared(b)) if Arc::ptr_eq(a, b) => true,
            (FieldValue::Raw(a), FieldValue::Raw(b)) => a.text() == b.text(),
            (FieldValue::Text(..), _) | (_, FieldValue::Text(..)) => {
                match (self.as_str(), other.as_str()) {
                    (Some(a), Some(b)) => a == b,
                    _ => **self == **other,
                }
            }
            _ => **self == **other,
        }
    }
}

impl FieldValue {
    /// The value's text if it is a string: a string of a [`TextBlock`]
    /// read as it is, without making the block's values.
    #[inline]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::Text(block, index) => Some(block.str(*index)),
            value => (**value).as_str(),
        }
    }

    /// The value as a reader sees it without making a `Value` of a
    /// request's string: every string as text, anything else as its value.
    #[inline]
    pub fn read(&self) -> FieldRead<'_> {
        match self {
            FieldValue::Text(block, index) => FieldRead::Str(block.str(*index)),
            value => FieldRead::of(value),
        }
    }

    /// A value to be handed out many times (a cache's): a refcount each,
    /// and objects and arrays with their text written once, which every
    /// document then copies (a geo record serialized per beacon cost about
    /// 2k instructions).
    pub fn shared(value: Value) -> FieldValue {
        match value {
            Value::Object(_) | Value::Array(_) => {
                FieldValue::Raw(Arc::new(RawJson::of_value(value)))
            }
            value => FieldValue::Shared(Arc::new(value)),
        }
    }
}

/// A field's value as readers that only compare or copy it see it
/// (conditions, document ids, index names, metric labels): a string, of a
/// request's [`TextBlock`] or of a value, is always `Str`, read in place.
/// Asking a block's string for a `Value` instead (`Deref`) makes one, a
/// `String` and its cell kept as long as the block: a `route` on
/// `service.name` or a document id from `session.id` did so per beacon.
/// A number, of a packed slot (`PackedSlots`), is `Number`: it has no
/// `Value` to point to. Equality compares numbers by value, whichever way
/// each is held (the same event reads `Number` packed, `Value` once an
/// edit copied its slots out).
#[derive(Debug, Clone, Copy)]
pub enum FieldRead<'v> {
    Str(&'v str),
    /// A number held as the number it is, not as a `Value`.
    Number(Num),
    /// Anything else (`null` included, and a number of a `Value`).
    Value(&'v Value),
}

impl PartialEq for FieldRead<'_> {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (FieldRead::Str(a), FieldRead::Str(b)) => a == b,
            (FieldRead::Value(a), FieldRead::Value(b)) => a == b,
            (FieldRead::Number(_), _) | (_, FieldRead::Number(_)) => {
                self.as_number().is_some() && self.as_number() == other.as_number()
            }
            _ => false,
        }
    }
}

/// A number as `serde_json` holds one: an unsigned or a negative integer,
/// or a finite float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    PosInt(u64),
    NegInt(i64),
    Float(f64),
}

impl Num {
    /// `n` as the number it is: `serde_json` keeps a number as one of
    /// these three, and gives it back the same.
    #[inline]
    pub fn of(n: &Number) -> Num {
        if let Some(u) = n.as_u64() {
            Num::PosInt(u)
        } else if let Some(i) = n.as_i64() {
            Num::NegInt(i)
        } else {
            Num::Float(n.as_f64().unwrap_or_default())
        }
    }

    /// The `serde_json` number (`None` only for a float that is not finite,
    /// which no `Num` made by `of` holds).
    #[inline]
    pub fn to_number(self) -> Option<Number> {
        match self {
            Num::PosInt(u) => Some(u.into()),
            Num::NegInt(i) => Some(i.into()),
            Num::Float(f) => Number::from_f64(f),
        }
    }
}

impl<'v> FieldRead<'v> {
    /// `value` read: its string as `Str`.
    #[inline]
    pub fn of(value: &'v Value) -> FieldRead<'v> {
        match value {
            Value::String(text) => FieldRead::Str(text),
            value => FieldRead::Value(value),
        }
    }

    /// The text, if a string (also a `Value` string that was not made
    /// `Str`, as `of` and `FieldValue::read` make every one).
    #[inline]
    pub fn as_str(self) -> Option<&'v str> {
        match self {
            FieldRead::Str(text) => Some(text),
            FieldRead::Value(value) => value.as_str(),
            FieldRead::Number(_) => None,
        }
    }

    /// The number, whether held as one or as a `Value`.
    #[inline]
    pub fn as_number(self) -> Option<Number> {
        match self {
            FieldRead::Number(n) => n.to_number(),
            FieldRead::Value(Value::Number(n)) => Some(n.clone()),
            _ => None,
        }
    }

    pub fn is_null(self) -> bool {
        matches!(self, FieldRead::Value(Value::Null))
    }

    pub fn as_f64(self) -> Option<f64> {
        self.as_number()?.as_f64()
    }

    pub fn as_u64(self) -> Option<u64> {
        self.as_number()?.as_u64()
    }
}

impl<T: Into<Value>> From<T> for FieldValue {
    fn from(value: T) -> Self {
        FieldValue::Owned(value.into())
    }
}

/// What the events of one beacon (or one report) share.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Context {
    /// `event.ingested`, epoch milliseconds.
    pub(super) received_ms: Option<i64>,
    /// The visitor's whole address, for enrichment only: never written out
    /// (documents get `client.ip` as the source's `client_ip` mode says).
    pub(super) client_address: Option<std::net::IpAddr>,
    /// Sorted by id.
    pub(super) fields: Vec<(FieldId, FieldValue)>,
    /// Sorted by name.
    pub(super) labels: Vec<(Arc<str>, FieldValue)>,
    /// `fields` rendered as JSON, made by the first write of one of the
    /// context's events and reused by the rest: a beacon's events share its
    /// URL, title, User-Agent, geo... and escape them once, not per event.
    /// Any edit of `fields` empties it.
    pub(super) rendered: write::RenderedValues,
    /// `byte_size`, once asked: every buffer a beacon's events pass counts
    /// them, and a context is shared by all of them. Any edit empties it.
    pub(super) size: SizeCache,
}

/// Slots a request's context makes room for: a beacon sets about 16, the
/// bench's chain adds about 8 (user agent, geo, sample rate).
const REQUEST_SLOTS: usize = 24;

/// A context's `byte_size`, computed once (copies start empty). An atomic,
/// not a `OnceLock`: the lock's first-time path cost ~320 instructions a
/// beacon; two threads counting at once store the same figure.
#[derive(Debug)]
pub(super) struct SizeCache(AtomicUsize);

/// No figure yet.
const UNCOUNTED: usize = usize::MAX;

impl Default for SizeCache {
    fn default() -> Self {
        Self(AtomicUsize::new(UNCOUNTED))
    }
}

impl SizeCache {
    #[inline]
    pub(super) fn get_or_count(&self, count: impl FnOnce() -> usize) -> usize {
        match self.0.load(Ordering::Relaxed) {
            UNCOUNTED => {
                let size = count().min(UNCOUNTED - 1);
                self.0.store(size, Ordering::Relaxed);
                size
            }
            size => size,
        }
    }

    pub(super) fn clear(&mut self) {
        *self.0.get_mut() = UNCOUNTED;
    }
}

impl Clone for SizeCache {
    /// A copy is about to be edited: it counts afresh.
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for SizeCache {
    /// A cache: never part of what a context is.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Bytes a JSON value keeps on the heap, roughly (for buffer budgets).
/// Inlined for the leaves most slots hold: every buffer a batch passes
/// counts each of its events' fields, and the call cost more than the count.
#[inline]
pub fn value_bytes(value: &Value) -> usize {
    match value {
        Value::String(s) => s.len() + 8,
        Value::Array(_) | Value::Object(_) => container_bytes(value),
        _ => 0,
    }
}

fn container_bytes(value: &Value) -> usize {
    match value {
        // Each item is a `Value` in the array's own allocation, whatever
        // it holds beyond: counted as its heap only, an array of numbers
        // holding megabytes counted as 32 bytes.
        Value::Array(items) => {
            items
                .iter()
                .map(|item| std::mem::size_of::<Value>() + value_bytes(item))
                .sum::<usize>()
                + 32
        }
        // A map (a B-tree) keeps its entries in nodes of eleven, the first
        // made whole for one entry: `{"a": 1}` holds some 650 bytes.
        Value::Object(map) if map.is_empty() => 0,
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| k.len() + 48 + value_bytes(v))
            .sum::<usize>()
            .max(MAP_NODE_BYTES),
        _ => value_bytes(value),
    }
}

/// The context's strings of its request's block are given back together:
/// one write to the block's count, not one a string (see `counted`).
impl Drop for Context {
    fn drop(&mut self) {
        let mut texts = Releases::default();
        for (_, value) in self.fields.drain(..) {
            drop_value(value, &mut texts);
        }
    }
}

/// Drops `value`; a string of a request's block is given back with the
/// run `texts` gathers (a context's or a slot block's strings).
#[inline]
pub(super) fn drop_value(value: FieldValue, texts: &mut Releases<TextBlock>) {
    match value {
        FieldValue::Text(block, _) => texts.add(block),
        other => drop(other),
    }
}

/// A leaf node of a `serde_json::Map`: eleven `String` keys, eleven
/// `Value`s, its parent link and lengths.
const MAP_NODE_BYTES: usize = 11 * (24 + 32) + 16;

#[inline]
pub(super) fn slot_bytes(value: &FieldValue) -> usize {
    match value {
        FieldValue::Owned(v) => value_bytes(v),
        // Counted whole even when a cache shares it: an overestimate of a
        // few hundred bytes per beacon keeps the budget on the safe side.
        FieldValue::Shared(v) => value_bytes(v),
        FieldValue::Static(_) => 0,
        // The text, and the value once something has read inside it.
        FieldValue::Raw(raw) => raw.byte_size(),
        FieldValue::Text(block, index) => text_bytes(block, *index),
    }
}

impl Context {
    pub fn new() -> Self {
        Self::default()
    }

    /// A context for one request's events, with room for the slots its
    /// decoder and the usual enrichment set: they are set one by one, and
    /// the list grew three times on the way.
    pub fn for_request() -> Self {
        let mut context = Self::default();
        context.fields.reserve_exact(REQUEST_SLOTS);
        context
    }

    pub fn set_received_ms(&mut self, ms: i64) {
        self.received_ms = Some(ms);
        // The rendered values hold `event.ingested` too.
        self.rendered.clear();
    }

    pub fn received_ms(&self) -> Option<i64> {
        self.received_ms
    }

    pub fn set_client_address(&mut self, ip: std::net::IpAddr) {
        self.client_address = Some(ip);
    }

    /// The whole client address the request came from (not in documents).
    pub fn client_address(&self) -> Option<std::net::IpAddr> {
        self.client_address
    }

    /// `event.kind = "event"` (a shared static string).
    pub fn set_event_kind(&mut self) {
        self.set(fields::REGISTRY.kind, FieldValue::Static(&EVENT_KIND));
    }

    pub fn get_id(&self, id: FieldId) -> Option<&Value> {
        find(&self.fields, &id).map(|v| &**v)
    }

    /// Whether the slot holds a value, found without reading it: `get_id`
    /// makes the `Value` of a request's text (`TextBlock`) on first sight.
    pub fn has_id(&self, id: FieldId) -> bool {
        find(&self.fields, &id).is_some()
    }

    /// The slot's string, read as it is (see [`FieldValue::as_str`]).
    pub fn get_str(&self, id: FieldId) -> Option<&str> {
        find(&self.fields, &id)?.as_str()
    }

    /// The slots it holds, in id order.
    pub fn ids(&self) -> impl Iterator<Item = FieldId> + '_ {
        self.fields.iter().map(|(id, _)| *id)
    }

    /// A compiled path's value, as [`super::Event::get_own_field`] finds it
    /// in an event holding the context as its own.
    pub fn get_field(&self, path: &FieldPath) -> Option<&Value> {
        match path {
            FieldPath::Label(name) => self.label(name),
            FieldPath::Slot { id, rest } => super::descend(self.get_id(*id)?, rest),
        }
    }

    /// A compiled path's string, as [`super::Event::get_own_str`] finds it
    /// in an event holding the context as its own.
    pub fn get_field_str(&self, path: &FieldPath) -> Option<&str> {
        match path {
            FieldPath::Slot { id, rest } if rest.is_empty() => self.get_str(*id),
            path => self.get_field(path)?.as_str(),
        }
    }

    pub fn set(&mut self, id: FieldId, value: impl Into<FieldValue>) {
        self.edited();
        put(&mut self.fields, id, value.into());
    }

    pub fn remove_id(&mut self, id: FieldId) -> Option<FieldValue> {
        let i = self.fields.binary_search_by_key(&id, |(k, _)| *k).ok()?;
        self.edited();
        Some(self.fields.remove(i).1)
    }

    pub fn label(&self, name: &str) -> Option<&Value> {
        find_label(&self.labels, name).map(|v| &**v)
    }

    /// A label as [`FieldValue::read`] reads it.
    pub fn read_label(&self, name: &str) -> Option<FieldRead<'_>> {
        find_label(&self.labels, name).map(FieldValue::read)
    }

    pub fn set_label(&mut self, name: Arc<str>, value: FieldValue) {
        self.size.clear();
        // Labels set in name order (a `labels` transform's): each goes last.
        if self.labels.last().is_none_or(|(last, _)| **last < *name) {
            self.labels.push((name, value));
            return;
        }
        match self.labels.binary_search_by(|(k, _)| (**k).cmp(&*name)) {
            Ok(i) => self.labels[i].1 = value,
            Err(i) => {
                #[cfg(test)]
                super::count_label_shifts(self.labels.len() - i);
                self.labels.insert(i, (name, value))
            }
        }
    }

    /// Its fields or labels are about to change: the caches go.
    pub(super) fn edited(&mut self) {
        self.rendered.clear();
        self.size.clear();
    }

    /// Heap bytes this context holds (its own values, not shared ones).
    pub fn byte_size(&self) -> usize {
        self.size.get_or_count(|| self.count_bytes())
    }

    pub(super) fn count_bytes(&self) -> usize {
        CONTEXT_BYTES
            + self
                .fields
                .iter()
                .map(|(_, v)| SLOT_BYTES + slot_bytes(v))
                .sum::<usize>()
            + self
                .labels
                .iter()
                .map(|(k, v)| 48 + k.len() + slot_bytes(v))
                .sum::<usize>()
    }
}

/// A new context's fields as its decoder sets them, one after another:
/// the caches are emptied once, not once a field, and the byte size is
/// summed as the fields come, so the decoder's check of it (and every
/// buffer after) walks none of them. A string of the request's block is
/// counted from its text ([`ContextFill::set_text`]): the block is filled
/// only when its builder drops, and read before that it counts nothing.
/// A field set twice or removed makes the sum unknown: the size is then
/// counted on first ask, as for any context.
pub struct ContextFill<'c> {
    context: &'c mut Context,
    /// `Context::count_bytes` of what was set so far, while it is known.
    bytes: Option<usize>,
}

impl Context {
    /// Starts setting the fields of a context that holds none yet (its
    /// size is summed from 0); of one that holds some, the size is left to
    /// be counted.
    pub fn fill(&mut self) -> ContextFill<'_> {
        self.edited();
        let bytes = (self.fields.is_empty() && self.labels.is_empty()).then_some(CONTEXT_BYTES);
        ContextFill {
            context: self,
            bytes,
        }
    }
}

impl ContextFill<'_> {
    /// `value` into slot `id`. A string of a request's block counts as
    /// nothing here: set it with [`set_text`](Self::set_text).
    pub fn set(&mut self, id: FieldId, value: impl Into<FieldValue>) {
        let value = value.into();
        let bytes = match &value {
            FieldValue::Text(..) => None,
            value => Some(slot_bytes(value)),
        };
        self.put(id, || value, bytes);
    }

    /// `text`, appended to the request's `strings`, into slot `id`: it
    /// holds its length and 8 bytes, whether the block holds it or it is a
    /// `String` of its own (past 4 GiB), as `slot_bytes` counts either.
    #[inline]
    pub fn set_text(&mut self, id: FieldId, strings: &mut TextBlockBuilder, text: &str) {
        let bytes = Some(text.len() + 8);
        // The value made in the arm that puts it, not passed in from a
        // call: it went through the stack, written in narrow stores and
        // read back in a 16-byte load that could not be forwarded from
        // them (half of `put`'s time under load, `perf annotate`).
        match strings.append(text) {
            Some((block, index)) => self.put(id, || FieldValue::Text(block, index), bytes),
            None => self.put(id, || Value::String(text.to_owned()).into(), bytes),
        }
    }

    /// The value `make` makes into slot `id`, counted as `bytes` (`None`:
    /// not known, counted when asked). Made where it goes: see
    /// `push_within`.
    #[inline(always)]
    fn put(&mut self, id: FieldId, make: impl FnOnce() -> FieldValue, bytes: Option<usize>) {
        let fields = &mut self.context.fields;
        let add = |sum: Option<usize>| Some(sum? + SLOT_BYTES + bytes?);
        // Past the last, as most are set: pushed (`put`'s own fast path).
        if fields.last().is_none_or(|(last, _)| *last < id) {
            self.bytes = add(self.bytes);
            // Into the room `Context::for_request` made, with no call
            // (`put`'s went through one a field).
            super::push_within(fields, || (id, make()));
            return;
        }
        let value = make();
        match fields.binary_search_by(|(k, _)| k.cmp(&id)) {
            Ok(i) => {
                self.bytes = None;
                fields[i].1 = value;
            }
            Err(i) => {
                self.bytes = add(self.bytes);
                fields.insert(i, (id, value));
            }
        }
    }

    /// `event.kind = "event"` ([`Context::set_event_kind`]).
    pub fn set_event_kind(&mut self) {
        self.set(fields::REGISTRY.kind, FieldValue::Static(&EVENT_KIND));
    }

    pub fn remove_id(&mut self, id: FieldId) {
        // Past the last: nothing to find (a decoder's fresh context).
        if self
            .context
            .fields
            .last()
            .is_none_or(|(last, _)| *last < id)
        {
            return;
        }
        if let Ok(i) = self.context.fields.binary_search_by_key(&id, |(k, _)| *k) {
            self.bytes = None;
            self.context.fields.remove(i);
        }
    }

    pub fn has_id(&self, id: FieldId) -> bool {
        self.context.has_id(id)
    }

    /// The context's byte size as [`Context::byte_size`] gives it: the sum,
    /// or counted now when it is not known.
    pub fn byte_size(&self) -> usize {
        match self.bytes {
            Some(bytes) => self.context.size.get_or_count(|| bytes),
            None => self.context.byte_size(),
        }
    }
}

/// What a context holds besides its slots, and each slot beside its value
/// (`Context::count_bytes`).
const CONTEXT_BYTES: usize = 96;
const SLOT_BYTES: usize = 40;

pub(super) fn find<'a, K: Ord, V>(list: &'a [(K, V)], key: &K) -> Option<&'a V> {
    list.binary_search_by(|(k, _)| k.cmp(key))
        .ok()
        .map(|i| &list[i].1)
}

pub(super) fn find_label<'a, V>(list: &'a [(Arc<str>, V)], name: &str) -> Option<&'a V> {
    list.binary_search_by(|(k, _)| (**k).cmp(name))
        .ok()
        .map(|i| &list[i].1)
}

/// Sets `key` in `list`, sorted by key. A key past the last is pushed with
/// no search and no move: decoders set most of a context's fields in id
/// order.
pub(super) fn put<K: Ord + Copy, V>(list: &mut Vec<(K, V)>, key: K, value: V) {
    if list.last().is_none_or(|(last, _)| *last < key) {
        // Room first, then key and value written each on its own: pushed
        // as one tuple, they were put together on the stack (to outlive
        // `push`'s call to grow) and copied over by 16-byte loads that
        // straddled the stores making them, a failed store forward for
        // every field set (`perf annotate`, a fifth of `put`'s samples).
        list.reserve(1);
        let len = list.len();
        // SAFETY: `reserve` made room for one past `len`; both halves are
        // written before the length covers them.
        unsafe {
            let end = list.as_mut_ptr().add(len);
            std::ptr::addr_of_mut!((*end).0).write(key);
            std::ptr::addr_of_mut!((*end).1).write(value);
            list.set_len(len + 1);
        }
        return;
    }
    match list.binary_search_by(|(k, _)| k.cmp(&key)) {
        Ok(i) => list[i].1 = value,
        Err(i) => list.insert(i, (key, value)),
    }
}
