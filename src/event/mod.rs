//! One RUM observation as it travels through the pipeline.
//!
//! A beacon carries shared context (app, session, page, browser, client) and
//! many events. The context is decoded once into a [`Context`] behind an
//! `Arc`; each event is its times, its own slots (type, payload) and its own
//! labels. The slots are a run of one block the decoder made for all of the
//! beacon's events, or (built field by field, or edited) behind an `Arc` of
//! the event's. Enrichment (user agent, GeoIP, scrubbing) edits the
//! context once per beacon, in place when the beacon's events are all that
//! hold it; a fan-out to several downstreams clones two pointers per event
//! (copy on write, as Vector's `LogEvent` does).
//!
//! Fields live in slots addressed by [`FieldId`]s derived from `schema`;
//! an event's own slot wins over the context's, and an own *removed* slot
//! hides a context field for that event alone without copying the context.
//! Timestamps stay integers until [`Event::write_json`] writes the document.

mod block;
mod common_values;
mod context;
pub mod counted;
mod fields;
mod packed;
mod raw_json;
mod text_block;
mod write;

use std::sync::{Arc, LazyLock};

use serde_json::{Map, Value};

pub use block::{EventBlock, SlotBlock};
pub use common_values::common_value;
use context::{find, find_label, put, slot_bytes};
pub use context::{value_bytes, Context, ContextFill, FieldRead, FieldValue, Num};
pub use counted::{Counted, Credit, Releases};
pub use fields::{FieldId, FieldPath, OBJECT_SLOTS};
pub use packed::{other_bytes, Packed, PackedSlot, PackedSlots, PACKED_SLOT_BYTES};
pub use raw_json::RawJson;
pub use text_block::{TextBlock, TextBlockBuilder};
pub use write::write_iso_millis;

use crate::schema::{self, EventType};
use fields::Virtual;

/// A batch is what travels on channels; single events never do.
pub type Batch = Vec<Event>;

/// `"event"`, each type's name and dataset as shared JSON strings.
static EVENT_KIND: LazyLock<Value> = LazyLock::new(|| Value::from("event"));
static TYPE_NAMES: LazyLock<Vec<(Value, Value)>> = LazyLock::new(|| {
    EventType::ALL
        .iter()
        .map(|t| (Value::from(t.as_str()), Value::from(t.dataset())))
        .collect()
});

/// `EventType::ALL` is in declaration order: a type's discriminant is its index.
fn type_values(ty: EventType) -> &'static (Value, Value) {
    &TYPE_NAMES[ty as usize]
}

/// The context's fields with an event's own laid over them: both lists are
/// sorted by id, so one merge does it (setting them one by one inserted
/// into the middle of a growing list, once per field of every beacon that
/// a transform edits through the event API). An own value wins; `None`
/// removes the field.
fn laid_over(
    base: Vec<(FieldId, FieldValue)>,
    own: Vec<(FieldId, Option<FieldValue>)>,
) -> Vec<(FieldId, FieldValue)> {
    if base.is_empty() {
        // An event made by `Event::edit_in_place` holds the whole context
        // as its own: nothing to merge (the empty lookahead cost ~60
        // instructions a field), and the vector is reused in place.
        return own
            .into_iter()
            .filter_map(|(id, value)| Some((id, value?)))
            .collect();
    }
    let mut out = Vec::with_capacity(base.len() + own.len());
    let mut base = base.into_iter().peekable();
    for (id, value) in own {
        while let Some(field) = base.next_if(|(kept, _)| *kept < id) {
            out.push(field);
        }
        base.next_if(|(kept, _)| *kept == id);
        if let Some(value) = value {
            out.push((id, value));
        }
    }
    out.extend(base);
    out
}

#[cfg(test)]
thread_local! {
    /// Labels moved up by `set_label` inserts (tests bound the work a
    /// request of many labels makes).
    pub(crate) static LABEL_SHIFTS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn count_label_shifts(n: usize) {
    LABEL_SHIFTS.set(LABEL_SHIFTS.get() + n);
}

/// Sorts `slots[start..]` by id and keeps one slot per id, the one pushed
/// last (a later value for the same id wins), in place.
pub fn sort_slots(slots: &mut Vec<OwnSlot>, start: usize) {
    // Stable: among equal ids the last pushed stays last.
    slots[start..].sort_by_key(|(id, _)| *id);
    // Ids sent twice are rare: look before moving every slot.
    if slots[start..].windows(2).all(|w| w[0].0 != w[1].0) {
        return;
    }
    let mut kept = start;
    for read in start..slots.len() {
        if kept > start && slots[kept - 1].0 == slots[read].0 {
            // The later value moves into the slot kept.
            slots[kept - 1].1 = slots[read].1.take();
        } else {
            slots.swap(kept, read);
            kept += 1;
        }
    }
    slots.truncate(kept);
}

/// Bytes of one slot in a list, its value's heap aside.
pub const SLOT_BYTES: usize = 40;

/// Heap bytes of a list of slots (40 a slot, and what its value holds).
fn slots_bytes(slots: &[OwnSlot]) -> usize {
    slots
        .iter()
        .map(|(_, v)| SLOT_BYTES + v.as_ref().map_or(0, slot_bytes))
        .sum()
}

/// Heap bytes of an event's own labels, counted as a context counts its
/// labels (48 a label, its name and what its value holds): a browser
/// chooses their names and values (Elastic APM `tags`).
fn labels_bytes(labels: &[OwnLabel]) -> usize {
    labels
        .iter()
        .map(|(name, value)| 48 + name.len() + value.as_ref().map_or(0, slot_bytes))
        .sum()
}

/// The runs of consecutive events that share a context (the events of a
/// beacon travel together), each to hand [`Event::edit_shared_context`].
pub fn context_runs(batch: &mut [Event]) -> impl Iterator<Item = &mut [Event]> {
    batch.chunk_by_mut(|a, b| Counted::ptr_eq(&a.context, &b.context))
}

/// Drops a batch whose work is done (a sink wrote it), giving back each
/// beacon's context and block together: one atomic write to each count a
/// run of events, where dropping events one by one made two an event, to
/// cache lines the request's worker wrote last (see `counted`).
pub fn drop_batch(batch: Batch) {
    let mut contexts = Releases::default();
    let mut blocks = Releases::default();
    for event in batch {
        let Event { context, own, .. } = event;
        contexts.add(context);
        match own {
            OwnRef::Block { slots, .. } => blocks.add(slots),
            other => drop(other),
        }
    }
}

/// One slot of an event's own: `None` hides the context's value.
pub type OwnSlot = (FieldId, Option<FieldValue>);

/// One of an event's own labels: `None` hides the context's label.
type OwnLabel = (Arc<str>, Option<FieldValue>);

/// An event's own slots when they are not a run of a block: built by
/// [`Event::from_parts`], or copied out of the block by the first edit.
#[derive(Debug, Clone, Default)]
struct Own {
    /// Sorted by id; `None` hides the context's value of that field.
    fields: Vec<OwnSlot>,
}

/// `OwnRef::Block::bytes` not counted yet.
const UNCOUNTED_BLOCK: u32 = u32::MAX;

/// Where an event's own slots are.
#[derive(Debug, Clone, Default)]
enum OwnRef {
    /// A run of the block a decoder filled for all of a beacon's events: one
    /// allocation for them all instead of two per event (each block, made by
    /// the request and freed later on another worker, is a cold free).
    /// Read only; the first edit of a field copies the run into an [`Own`].
    Block {
        slots: Counted<SlotBlock>,
        start: u32,
        end: u32,
        /// The whole block's [`slots_bytes`] once a buffer counted it
        /// ([`Event::count_block_bytes`]), else [`UNCOUNTED_BLOCK`]: each
        /// buffer the event passes asks again. In the tag's padding.
        bytes: u32,
    },
    Own(Arc<Own>),
    /// No own slots (yet).
    #[default]
    Empty,
}

/// An event's own slot of an id, as [`OwnRef::find`] finds it.
enum OwnFind<'a> {
    /// The event has no slot of its own for it: the context's counts.
    NotOwn,
    /// Hidden for this event.
    Removed,
    Slot(&'a FieldValue),
    Packed(&'a PackedSlots, Packed),
}

impl OwnRef {
    /// The run of packed slots, if the event's own slots are one.
    #[inline]
    fn packed_run(&self) -> Option<(&PackedSlots, &[PackedSlot])> {
        match self {
            OwnRef::Block {
                slots, start, end, ..
            } => {
                let packed = slots.as_packed()?;
                Some((packed, packed.run(*start, *end)))
            }
            _ => None,
        }
    }

    /// The own slot of `id`, read in place (packed slots are not made
    /// `OwnSlot`s to find one).
    #[inline]
    fn find(&self, id: FieldId) -> OwnFind<'_> {
        if let Some((packed, run)) = self.packed_run() {
            return match run.binary_search_by_key(&id, |slot| slot.id) {
                Ok(i) => OwnFind::Packed(packed, run[i].value),
                Err(_) => OwnFind::NotOwn,
            };
        }
        match find(self.fields(), &id) {
            Some(Some(value)) => OwnFind::Slot(value),
            Some(None) => OwnFind::Removed,
            None => OwnFind::NotOwn,
        }
    }

    /// The own slots' ids in order, each with whether it has a value
    /// (`false`: it hides the context's), read in place.
    fn ids(&self) -> impl Iterator<Item = (FieldId, bool)> + '_ {
        let (packed, slots): (&[PackedSlot], &[OwnSlot]) = match self.packed_run() {
            Some((_, run)) => (run, &[]),
            None => (&[], self.fields()),
        };
        packed
            .iter()
            .map(|slot| (slot.id, true))
            .chain(slots.iter().map(|(id, v)| (*id, v.is_some())))
    }

    /// The slots as `OwnSlot`s (packed ones made for the whole block on
    /// first use: readers that can read them in place use `find`/`ids`).
    #[inline]
    fn fields(&self) -> &[OwnSlot] {
        match self {
            OwnRef::Block {
                slots, start, end, ..
            } => &slots[*start as usize..*end as usize],
            OwnRef::Own(own) => &own.fields,
            OwnRef::Empty => &[],
        }
    }

    /// The slots to edit: a block's run copied out first (its values
    /// cloned: the beacon's other events read the block), with room for the
    /// usual edit; an `Own` another event shares (a fan-out) copied on write.
    fn make_mut(&mut self) -> &mut Own {
        if !matches!(self, OwnRef::Own(_)) {
            let fields = self.run_slots(2);
            *self = OwnRef::Own(Arc::new(Own { fields }));
        }
        match self {
            OwnRef::Own(own) => Arc::make_mut(own),
            _ => unreachable!("replaced above"),
        }
    }

    /// The slots by value, leaving none.
    fn take(&mut self) -> Own {
        match std::mem::take(self) {
            OwnRef::Own(own) => Arc::unwrap_or_clone(own),
            other => Own {
                fields: other.run_slots(0),
            },
        }
    }

    /// A copy of the slots with room for `spare` more: a block's run made
    /// `OwnSlot`s for this event alone.
    fn run_slots(&self, spare: usize) -> Vec<OwnSlot> {
        match self {
            OwnRef::Block {
                slots, start, end, ..
            } => slots.run_slots(*start, *end, spare),
            other => {
                let run = other.fields();
                let mut fields = Vec::with_capacity(run.len() + spare);
                fields.extend_from_slice(run);
                fields
            }
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Event {
    context: Counted<Context>,
    /// `@timestamp`, epoch milliseconds (skew-corrected, clamped).
    timestamp_ms: Option<i64>,
    /// The event time exactly as the browser sent it (`ts`), for the
    /// document `_id`: a re-sent beacon must map to the same documents.
    client_ts_ms: Option<i64>,
    own: OwnRef,
    /// Sorted by name; apart from the slots, so that labelling an event of
    /// a block (a `labels` rule it matched) copies none of its fields.
    labels: Option<Arc<Vec<OwnLabel>>>,
}

/// The item `make` makes onto `list`, into the room made for it (a
/// decoder reserves its lists' room up front): `Vec::push`'s growth,
/// inlined into a decoder's loop, had the loop keep more on the stack (an
/// entry's slots pushed one by one cost ~80 instructions more an entry).
/// The item is made after the room, where it goes: made before, it was
/// held across the call that grows the list, so built on the stack and
/// copied over in 16-byte loads that could not be forwarded from the
/// narrower stores that built it (half of `ContextFill::put`'s time under
/// load, `perf annotate`).
#[inline(always)]
pub(crate) fn push_within<T>(list: &mut Vec<T>, make: impl FnOnce() -> T) {
    if list.len() == list.capacity() {
        grow_by_one(list);
    }
    let len = list.len();
    // SAFETY: there is room for one past `len` (made above if there was
    // none), written before the length covers it.
    unsafe {
        list.as_mut_ptr().add(len).write(make());
        list.set_len(len + 1);
    }
}

#[cold]
#[inline(never)]
fn grow_by_one<T>(list: &mut Vec<T>) {
    list.reserve(1);
}

/// Looks `rest` up inside an object value.
fn descend<'v, S: AsRef<str>>(mut value: &'v Value, rest: &[S]) -> Option<&'v Value> {
    for key in rest {
        value = value.as_object()?.get(key.as_ref())?;
    }
    Some(value)
}

/// A dotted path split into its slot (or label) and the keys below it,
/// without allocating; `None` when no document can have the path.
enum PathRef<'p> {
    Slot(FieldId, Option<&'p str>),
    Label(&'p str),
    Virtual(Virtual),
}

fn split_path(path: &str) -> Option<PathRef<'_>> {
    if let Some(name) = path.strip_prefix("labels.") {
        return Some(PathRef::Label(name));
    }
    if let Some(id) = FieldId::lookup(path) {
        return Some(match id.info().virtual_field {
            Some(v) => PathRef::Virtual(v),
            None => PathRef::Slot(id, None),
        });
    }
    let mut end = path.len();
    while let Some(dot) = path[..end].rfind('.') {
        end = dot;
        if let Some(id) = FieldId::lookup(&path[..end]) {
            return Some(PathRef::Slot(id, Some(&path[end + 1..])));
        }
    }
    None
}

impl Event {
    pub fn new() -> Self {
        Self::default()
    }

    /// An event on top of a beacon's shared context.
    pub fn with_context(context: Counted<Context>) -> Self {
        Self {
            context,
            timestamp_ms: None,
            client_ts_ms: None,
            own: OwnRef::Empty,
            labels: None,
        }
    }

    /// The beacon's shared context, counted ([`Counted`]: no weak
    /// references, so [`Event::edit_shared_context`] sees every holder).
    pub fn context(&self) -> &Counted<Context> {
        &self.context
    }

    /// Points the event at another context: a transform that rewrites
    /// context fields does it once per beacon and hands every event the result.
    pub fn set_context(&mut self, context: Counted<Context>) {
        self.context = context;
    }

    fn own_mut(&mut self) -> &mut Own {
        self.own.make_mut()
    }

    fn own_labels(&self) -> &[OwnLabel] {
        self.labels.as_deref().map_or(&[], |labels| labels)
    }

    fn own_labels_mut(&mut self) -> &mut Vec<OwnLabel> {
        Arc::make_mut(self.labels.get_or_insert_with(Arc::default))
    }

    // ---- typed access (the hot paths) ----

    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp_ms
    }

    /// The event time the browser sent, before any correction.
    pub fn client_ts_ms(&self) -> Option<i64> {
        self.client_ts_ms
    }

    pub fn set_timestamp_ms(&mut self, ms: i64) {
        self.timestamp_ms = Some(ms);
    }

    /// Sets `rum.type` and `event.dataset` (shared static strings).
    pub fn set_type(&mut self, ty: EventType) {
        let (name, dataset) = type_values(ty);
        let registry = &*fields::REGISTRY;
        self.set(registry.rum_type, FieldValue::Static(name));
        self.set(registry.dataset, FieldValue::Static(dataset));
    }

    /// An event built in one go (the decoders' hot path): `fields` in any
    /// order, a later value for the same id winning; `None` hides the
    /// context's value.
    pub fn from_parts(
        context: Counted<Context>,
        timestamp_ms: Option<i64>,
        client_ts_ms: Option<i64>,
        ty: EventType,
        mut fields: Vec<(FieldId, Option<FieldValue>)>,
    ) -> Event {
        if let Some(default) = Event::type_default(ty) {
            fields.insert(0, default);
        }
        fields.extend(Event::type_slots(ty));
        sort_slots(&mut fields, 0);
        Event {
            context,
            timestamp_ms,
            client_ts_ms,
            own: OwnRef::Own(Arc::new(Own { fields })),
            labels: None,
        }
    }

    /// An event whose own slots are `slots[range]`, a run of the block a
    /// decoder filled for a beacon's events: sorted by id, each id once,
    /// `rum.type` and `event.dataset` among them ([`Event::type_slots`]).
    pub fn in_block(
        context: Counted<Context>,
        timestamp_ms: Option<i64>,
        client_ts_ms: Option<i64>,
        slots: Counted<SlotBlock>,
        range: std::ops::Range<usize>,
    ) -> Event {
        Event::in_counted_block(context, timestamp_ms, client_ts_ms, slots, range, None)
    }

    /// [`Event::in_counted_block`] pushed onto `events`, made where it
    /// goes. `push_within`'s steps written out: with a closure (in the
    /// decoder, or here), the closure was not inlined, and its event came
    /// back through the stack.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    pub fn push_in_counted_block(
        events: &mut Vec<Event>,
        context: Counted<Context>,
        timestamp_ms: Option<i64>,
        client_ts_ms: Option<i64>,
        slots: Counted<SlotBlock>,
        range: std::ops::Range<usize>,
        block_bytes: Option<usize>,
    ) {
        if events.len() == events.capacity() {
            grow_by_one(events);
        }
        let len = events.len();
        let event = Event::in_counted_block(
            context,
            timestamp_ms,
            client_ts_ms,
            slots,
            range,
            block_bytes,
        );
        // SAFETY: there is room for one past `len` (made above if there was
        // none), written before the length covers it.
        unsafe {
            events.as_mut_ptr().add(len).write(event);
            events.set_len(len + 1);
        }
    }

    /// [`Event::in_block`] with the block's byte count
    /// ([`Event::block_byte_size`]) when the decoder summed it while filling
    /// the block (40 bytes a slot and what each value holds): no buffer then
    /// walks the block's slots to count them. Inlined, so that a decoder
    /// makes the event where it goes (`push_within`).
    #[inline(always)]
    pub fn in_counted_block(
        context: Counted<Context>,
        timestamp_ms: Option<i64>,
        client_ts_ms: Option<i64>,
        slots: Counted<SlotBlock>,
        range: std::ops::Range<usize>,
        block_bytes: Option<usize>,
    ) -> Event {
        debug_assert!(match slots.as_packed() {
            Some(packed) => packed
                .run(range.start as u32, range.end as u32)
                .windows(2)
                .all(|w| w[0].id < w[1].id),
            None => slots[range.clone()].windows(2).all(|w| w[0].0 < w[1].0),
        });
        Event {
            context,
            timestamp_ms,
            client_ts_ms,
            own: OwnRef::Block {
                slots,
                // Bodies are limited far below 2^32 slots.
                start: u32::try_from(range.start).expect("a block of under 2^32 slots"),
                end: u32::try_from(range.end).expect("a block of under 2^32 slots"),
                // A block past 4 GiB (far beyond any body limit) counts anew each time.
                bytes: block_bytes
                    .and_then(|b| u32::try_from(b).ok())
                    .unwrap_or(UNCOUNTED_BLOCK),
            },
            labels: None,
        }
    }

    /// The block's byte count worked out again from its slots, whatever
    /// the event keeps (for tests of the counts decoders hand over).
    pub fn recount_block_bytes(&self) -> Option<usize> {
        match &self.own {
            OwnRef::Block { slots, .. } => Some(slots.byte_size()),
            OwnRef::Own(_) | OwnRef::Empty => None,
        }
    }

    /// The context's byte count worked out again from its slots (a
    /// decoder sums it as it sets them: `ContextFill`).
    #[cfg(test)]
    pub fn recount_context_bytes(&self) -> usize {
        self.context.count_bytes()
    }

    /// Bytes of the request's block of strings, found through slot `id`
    /// (one of its strings): all it holds, as its builder counted it, not
    /// only what slots read (for tests that a decoder holds no string it
    /// gave up on, which no budget would count).
    #[cfg(test)]
    pub fn text_block_held_bytes(&self, id: FieldId) -> Option<usize> {
        match self.field(id)? {
            FieldValue::Text(block, _) => Some(block.held_bytes()),
            _ => None,
        }
    }

    /// Whether the block of packed slots the event's own are a run of had
    /// its slots made `OwnSlot`s (for tests that readers read in place).
    #[cfg(test)]
    pub fn own_block_slots_made(&self) -> Option<bool> {
        match &self.own {
            OwnRef::Block { slots, .. } => slots.as_packed().map(PackedSlots::slots_made),
            _ => None,
        }
    }

    /// `rum.type` and `event.dataset` of a type, as slots.
    pub fn type_slots(ty: EventType) -> [OwnSlot; 2] {
        let (name, dataset) = type_values(ty);
        let registry = &*fields::REGISTRY;
        // In id order (the schema lists `event.dataset` first): pushed
        // before an event's other slots, they sort without moving.
        [
            (registry.dataset, Some(FieldValue::Static(dataset))),
            (registry.rum_type, Some(FieldValue::Static(name))),
        ]
    }

    /// What an event of the type has unless it says otherwise: an error
    /// stands for one occurrence (`rum.error.count` 1). The RUM client folds
    /// repeats of an error into one event with its count, the SDKs send one
    /// event each; with the count on every error document, a sum of it
    /// counts occurrences whatever the source (the Kibana dashboard's).
    /// Pushed before an event's fields: a count it was sent wins.
    pub fn type_default(ty: EventType) -> Option<OwnSlot> {
        (ty == EventType::Error).then(|| {
            (
                fields::REGISTRY.error_count,
                Some(FieldValue::Owned(serde_json::Value::from(1u64))),
            )
        })
    }

    /// The slot as the document has it: the event's own value, else the
    /// context's (an own `None` hides the context's).
    fn field(&self, id: FieldId) -> Option<&FieldValue> {
        self.field_found(id, self.own.find(id))
    }

    /// [`Event::field`] once the event's own slots were searched for `id`
    /// (`found`): `get_id` searches them once for both.
    #[inline]
    fn field_found<'e>(&'e self, id: FieldId, found: OwnFind<'e>) -> Option<&'e FieldValue> {
        match found {
            OwnFind::NotOwn => find(&self.context.fields, &id),
            OwnFind::Removed => None,
            OwnFind::Slot(value) => Some(value),
            OwnFind::Packed(packed, Packed::Other(index)) => packed.other(index),
            // A `FieldValue` of a packed string or number: the block's
            // slots are made (once, for all of its events).
            OwnFind::Packed(..) => find(self.own.fields(), &id)?.as_ref(),
        }
    }

    /// The slot's value: the event's own, else the context's.
    pub fn get_id(&self, id: FieldId) -> Option<&Value> {
        // One search of the event's own slots (`field` searched them again).
        match self.own.find(id) {
            // A type's name and dataset are values already.
            OwnFind::Packed(_, Packed::Fixed(value)) => Some(value),
            found => self.field_found(id, found).map(|v| &**v),
        }
    }

    /// The slot's string, read as it is (a string of a request's
    /// `TextBlock` without making its values).
    pub fn get_id_str(&self, id: FieldId) -> Option<&str> {
        match self.own.find(id) {
            OwnFind::NotOwn => find(&self.context.fields, &id)?.as_str(),
            OwnFind::Removed => None,
            OwnFind::Slot(value) => value.as_str(),
            OwnFind::Packed(packed, value) => packed.as_str(value),
        }
    }

    /// The slot's value as [`FieldValue::read`] reads it: a request's
    /// string in place, never made a `Value`.
    pub fn read_id(&self, id: FieldId) -> Option<FieldRead<'_>> {
        match self.own.find(id) {
            OwnFind::NotOwn => find(&self.context.fields, &id).map(FieldValue::read),
            OwnFind::Removed => None,
            OwnFind::Slot(value) => Some(value.read()),
            OwnFind::Packed(packed, value) => packed.read(value),
        }
    }

    /// Whether the slot has a value, without reading it.
    pub fn has_id(&self, id: FieldId) -> bool {
        match self.own.find(id) {
            OwnFind::NotOwn => find(&self.context.fields, &id).is_some(),
            OwnFind::Removed => false,
            OwnFind::Slot(_) | OwnFind::Packed(..) => true,
        }
    }

    /// The slots the event holds a value of its own in, in id order.
    pub fn own_ids(&self) -> impl Iterator<Item = FieldId> + '_ {
        self.own.ids().filter(|(_, has)| *has).map(|(id, _)| id)
    }

    /// The event's own slots as its beacon's decoder packed them, in id
    /// order, with the block their values refer to; `None` once they are
    /// not (edited, or built from parts). A reader that looks at several
    /// fields walks the run once, where a lookup per field searches it.
    pub fn packed_own(&self) -> Option<(&PackedSlots, &[PackedSlot])> {
        self.own.packed_run()
    }

    /// The slots the event holds of its own, in id order, each with
    /// whether it has a value (`false`: it hides the context's).
    pub fn own_slots(&self) -> impl Iterator<Item = (FieldId, bool)> + '_ {
        self.own.ids()
    }

    /// Whether the event holds a slot of its own for `id`: a value, or a
    /// removal that hides the context's (`get_own_id(id).is_some()`,
    /// without making the value).
    #[inline]
    pub fn holds_own(&self, id: FieldId) -> bool {
        !matches!(self.own.find(id), OwnFind::NotOwn)
    }

    /// The event's own value of a slot (`Some(None)`: removed for this event).
    pub fn get_own_id(&self, id: FieldId) -> Option<Option<&Value>> {
        match self.own.find(id) {
            OwnFind::NotOwn => None,
            OwnFind::Removed => Some(None),
            OwnFind::Slot(value) => Some(Some(value)),
            OwnFind::Packed(_, Packed::Fixed(value)) => Some(Some(value)),
            OwnFind::Packed(packed, Packed::Other(index)) => {
                Some(packed.other(index).map(|v| &**v))
            }
            // A packed string or number as a value: the block's slots are made.
            OwnFind::Packed(..) => find(self.own.fields(), &id).map(|v| v.as_deref()),
        }
    }

    pub fn set(&mut self, id: FieldId, value: impl Into<FieldValue>) {
        put(&mut self.own_mut().fields, id, Some(value.into()));
    }

    /// Hides a field for this event (its own value and the context's).
    pub fn remove_id(&mut self, id: FieldId) {
        // `has_id`, not `get_id`: a value is not made of a request's string
        // only to ask whether there is one.
        if !self.has_id(id) {
            return;
        }
        if self.context.has_id(id) {
            put(&mut self.own_mut().fields, id, None);
        } else if !matches!(self.own.find(id), OwnFind::NotOwn) {
            let fields = &mut self.own_mut().fields;
            if let Ok(i) = fields.binary_search_by_key(&id, |(k, _)| *k) {
                fields.remove(i);
            }
        }
    }

    /// Whether the label has a value (its own, else the context's),
    /// without reading it.
    pub fn has_label(&self, name: &str) -> bool {
        match find_label(self.own_labels(), name) {
            Some(own) => own.is_some(),
            None => find_label(&self.context.labels, name).is_some(),
        }
    }

    pub fn label(&self, name: &str) -> Option<&Value> {
        match find_label(self.own_labels(), name) {
            Some(own) => own.as_deref(),
            None => self.context.label(name),
        }
    }

    /// Gives an event that has no labels at all (of its own or from its
    /// context) these, sorted by name and each name once: one list built,
    /// instead of a lookup and an insert per label. `false`, and nothing
    /// done, when the event has labels already.
    pub fn label_unlabelled(
        &mut self,
        labels: impl ExactSizeIterator<Item = (Arc<str>, FieldValue)>,
    ) -> bool {
        if !self.is_unlabelled() {
            return false;
        }
        let own = self.own_labels_mut();
        own.extend(labels.map(|(name, value)| (name, Some(value))));
        debug_assert!(own.windows(2).all(|w| w[0].0 < w[1].0));
        true
    }

    /// Whether the event has no labels, of its own or from its context
    /// (nor a context label hidden by its own).
    pub fn is_unlabelled(&self) -> bool {
        self.own_labels().is_empty() && self.context.labels.is_empty()
    }

    pub fn set_label(&mut self, name: Arc<str>, value: FieldValue) {
        let labels = self.own_labels_mut();
        match labels.binary_search_by(|(k, _)| (**k).cmp(&*name)) {
            Ok(i) => labels[i].1 = Some(value),
            Err(i) => {
                #[cfg(test)]
                count_label_shifts(labels.len() - i);
                labels.insert(i, (name, Some(value)))
            }
        }
    }

    /// A compiled path's value.
    pub fn get_field(&self, path: &FieldPath) -> Option<&Value> {
        match path {
            FieldPath::Label(name) => self.label(name),
            FieldPath::Slot { id, rest } => descend(self.get_id(*id)?, rest),
        }
    }

    /// A compiled path's value as [`Event::read_id`] reads it.
    pub fn read_field(&self, path: &FieldPath) -> Option<FieldRead<'_>> {
        match path {
            FieldPath::Label(name) => match find_label(self.own_labels(), name) {
                Some(own) => own.as_ref().map(FieldValue::read),
                None => self.context.read_label(name),
            },
            FieldPath::Slot { id, rest } if rest.is_empty() => self.read_id(*id),
            // Nothing is below a string or a number: no value made of it
            // to find that out.
            FieldPath::Slot { id, rest } => match self.own.find(*id) {
                OwnFind::Packed(packed, Packed::Other(index)) => {
                    descend(packed.other(index)?, rest).map(FieldRead::of)
                }
                OwnFind::Packed(..) => None,
                _ => match self.field(*id)? {
                    FieldValue::Text(..) => None,
                    value => descend(value, rest).map(FieldRead::of),
                },
            },
        }
    }

    /// Whether any field below an object path (`client`, `labels`) is set.
    pub fn has_fields_under(&self, prefix: &str) -> bool {
        if prefix == schema::LABELS {
            return self.own_labels().iter().any(|(_, v)| v.is_some())
                || self
                    .context
                    .labels
                    .iter()
                    .any(|(name, _)| self.has_label(name));
        }
        let under = |id: &FieldId| {
            let path = id.path();
            path.len() > prefix.len()
                && path.starts_with(prefix)
                && path.as_bytes()[prefix.len()] == b'.'
        };
        self.own.ids().any(|(id, has)| has && under(&id))
            || self
                .context
                .fields
                .iter()
                .any(|(id, _)| under(id) && self.has_id(*id))
            || (prefix == "@timestamp" && self.timestamp_ms.is_some())
    }

    /// A compiled path's value among the event's own fields only.
    pub fn get_own_field(&self, path: &FieldPath) -> Option<&Value> {
        match path {
            FieldPath::Label(name) => find_label(self.own_labels(), name)?.as_deref(),
            FieldPath::Slot { id, rest } => descend(self.get_own_id(*id).flatten()?, rest),
        }
    }

    /// A compiled path's string among the event's own fields, as
    /// `get_own_field` finds it, without making the values of a request's
    /// strings (`TextBlock`).
    pub fn get_own_str(&self, path: &FieldPath) -> Option<&str> {
        match path {
            FieldPath::Slot { id, rest } if rest.is_empty() => match self.own.find(*id) {
                OwnFind::Slot(value) => value.as_str(),
                OwnFind::Packed(packed, value) => packed.as_str(value),
                OwnFind::NotOwn | OwnFind::Removed => None,
            },
            path => self.get_own_field(path)?.as_str(),
        }
    }

    // ---- dotted paths (config-time tools, tests, the CSP decoder) ----

    /// Looks a dotted path up, e.g. `client.geo.country_iso_code`. Fields
    /// held as integers (`@timestamp`, `event.ingested`) are not values here:
    /// see [`Event::timestamp_ms`].
    pub fn get(&self, path: &str) -> Option<&Value> {
        match split_path(path)? {
            PathRef::Slot(id, None) => self.get_id(id),
            PathRef::Slot(id, Some(rest)) => {
                descend(self.get_id(id)?, &rest.split('.').collect::<Vec<_>>())
            }
            PathRef::Label(name) => self.label(name),
            PathRef::Virtual(_) => None,
        }
    }

    pub fn get_str(&self, path: &str) -> Option<&str> {
        match split_path(path)? {
            PathRef::Slot(id, None) => self.get_id_str(id),
            _ => self.get(path).and_then(Value::as_str),
        }
    }

    /// Looks a dotted path up in the event's own fields only.
    pub fn get_own(&self, path: &str) -> Option<&Value> {
        match split_path(path)? {
            PathRef::Slot(id, None) => self.get_own_id(id).flatten(),
            PathRef::Slot(id, Some(rest)) => descend(
                self.get_own_id(id).flatten()?,
                &rest.split('.').collect::<Vec<_>>(),
            ),
            PathRef::Label(name) => find_label(self.own_labels(), name)?.as_deref(),
            PathRef::Virtual(_) => None,
        }
    }

    /// Sets a dotted path. A path inside an object slot creates the objects
    /// on the way; a path no document can have lands under `rum.extra`.
    pub fn insert(&mut self, path: &str, value: impl Into<Value>) {
        let value = value.into();
        match split_path(path) {
            Some(PathRef::Slot(id, None)) => self.set(id, value),
            Some(PathRef::Slot(id, Some(rest))) => {
                let mut object = self.get_id(id).cloned().unwrap_or(Value::Null);
                insert_below(&mut object, rest, value);
                self.set(id, object);
            }
            Some(PathRef::Label(name)) => self.set_label(Arc::from(name), value.into()),
            Some(PathRef::Virtual(Virtual::Timestamp)) => {
                if let Some(ms) = parse_time(&value) {
                    self.set_timestamp_ms(ms);
                }
            }
            Some(PathRef::Virtual(Virtual::ClientTs)) => {
                if let Some(ms) = parse_time(&value) {
                    self.client_ts_ms = Some(ms);
                }
            }
            Some(PathRef::Virtual(Virtual::Ingested)) => {
                if let Some(ms) = parse_time(&value) {
                    Counted::make_mut(&mut self.context).set_received_ms(ms);
                }
            }
            Some(PathRef::Virtual(Virtual::Labels)) => {
                if let Value::Object(map) = value {
                    for (k, v) in map {
                        self.set_label(Arc::from(k.as_str()), v.into());
                    }
                }
            }
            None => {
                let mut extra = self.get(schema::RUM_EXTRA).cloned().unwrap_or(Value::Null);
                insert_below(&mut extra, path, value);
                self.set(FieldId::of(schema::RUM_EXTRA), extra);
            }
        }
    }

    /// Removes a dotted path for this event and returns the value it had.
    pub fn remove(&mut self, path: &str) -> Option<Value> {
        let old = self.get(path).cloned();
        old.as_ref()?;
        match split_path(path)? {
            PathRef::Slot(id, None) => self.remove_id(id),
            PathRef::Slot(id, Some(rest)) => {
                let mut object = self.get_id(id).cloned()?;
                remove_below(&mut object, rest);
                self.set(id, object);
            }
            PathRef::Label(name) => {
                let labels = self.own_labels_mut();
                match labels.binary_search_by(|(k, _)| (**k).cmp(name)) {
                    Ok(i) => labels[i].1 = None,
                    Err(i) => labels.insert(i, (Arc::from(name), None)),
                }
            }
            PathRef::Virtual(_) => {}
        }
        old
    }

    /// Moves everything the event holds into a fresh context of its own, so
    /// transforms that work per context see it (events built one by one).
    pub fn hoist_into_context(&mut self) {
        let mut context = (*self.context).clone();
        let own = self.own.take();
        if !own.fields.is_empty() {
            let base = std::mem::take(&mut context.fields);
            context.fields = laid_over(base, own.fields);
            context.edited();
        }
        let labels = self.labels.take().map(Arc::unwrap_or_clone);
        for (name, value) in labels.into_iter().flatten() {
            match value {
                Some(value) => context.set_label(name, value),
                None => {
                    context.size.clear();
                    context.labels.retain(|(k, _)| *k != name);
                }
            }
        }
        self.context = Counted::new(context);
    }

    /// Edits `context` through the event API (`get_own`, `insert`, `set`):
    /// its fields and labels are moved into an event's own, edited there,
    /// and moved back, with no copy of any value.
    pub fn edit_in_place<R>(context: &mut Context, edit: impl FnOnce(&mut Event) -> R) -> R {
        // Same size and alignment both ways: the vectors are reused.
        let own = Own {
            fields: std::mem::take(&mut context.fields)
                .into_iter()
                .map(|(id, value)| (id, Some(value)))
                .collect(),
        };
        let labels: Vec<OwnLabel> = std::mem::take(&mut context.labels)
            .into_iter()
            .map(|(name, value)| (name, Some(value)))
            .collect();
        let mut base = Context::default();
        base.received_ms = context.received_ms;
        base.client_address = context.client_address;
        let mut event = Event {
            context: Counted::new(base),
            timestamp_ms: None,
            client_ts_ms: None,
            own: OwnRef::Own(Arc::new(own)),
            // None when there are none: no list made for a context without.
            labels: (!labels.is_empty()).then(|| Arc::new(labels)),
        };
        let result = edit(&mut event);
        let mut base = Counted::unwrap_or_clone(event.context);
        let own = event.own.take();
        // `event.ingested` is held by the context as a member: a write of it
        // went to the base.
        context.received_ms = base.received_ms;
        context.fields = laid_over(std::mem::take(&mut base.fields), own.fields);
        // Labels are few; the base has none unless the edit hoisted some.
        context.labels = std::mem::take(&mut base.labels);
        let labels = event.labels.take().map(Arc::unwrap_or_clone);
        for (name, value) in labels.into_iter().flatten() {
            match value {
                Some(value) => context.set_label(name, value),
                None => context.labels.retain(|(kept, _)| *kept != name),
            }
        }
        context.edited();
        result
    }

    /// Edits the context that every event of `run` shares (a beacon's
    /// events travel together) once, and points them all at the result:
    /// in place when they are all that hold it, the usual case; else on a
    /// copy, and whoever else holds it (another downstream) keeps its own.
    pub fn edit_shared_context<R>(run: &mut [Event], edit: impl FnOnce(&mut Context) -> R) -> R {
        static SPARE: LazyLock<Counted<Context>> = LazyLock::new(Counted::default);
        let Some(first) = run.first() else {
            return edit(&mut Context::new());
        };
        // The usual case: the run's events hold every reference there is
        // (each transform of a chain edits the beacon's context). It is then
        // edited where it is, without taking each event's hold away and
        // giving it back: four atomic refcount operations an event, which
        // cost the full chain about a microsecond a beacon.
        let all_held_here = Counted::strong_count(&first.context) == run.len()
            && run
                .iter()
                .all(|e| Counted::ptr_eq(&e.context, &first.context));
        if all_held_here {
            // `strong_count` loads with acquire, pairing with the release of
            // the last hold dropped elsewhere (as in `Arc::get_mut`):
            // whatever its holder wrote is seen here.
            let context = Counted::as_ptr(&first.context).cast_mut();
            // SAFETY: every reference to the context is in `run`, which is
            // borrowed mutably for the whole edit, and a `Counted` has no
            // weak references: nothing else can read or clone it until
            // `edit` returns. The pointer is the allocation's own, not one
            // taken from a `&Context`.
            return edit(unsafe { &mut *context });
        }
        debug_assert!(run
            .iter()
            .all(|e| Counted::ptr_eq(&e.context, &first.context)));
        let mut shared = first.context.clone();
        // Let go of the run's hold, so that ours may be the only one.
        for event in run.iter_mut() {
            event.context = SPARE.clone();
        }
        let result = edit(Counted::make_mut(&mut shared));
        for event in run.iter_mut() {
            event.context = shared.clone();
        }
        result
    }

    /// Bytes this event keeps alive beyond its context and its block (see
    /// [`Event::block_byte_size`]): itself, its own slots when they are not
    /// in a block, and its own labels.
    pub fn own_byte_size(&self) -> usize {
        let own = match &self.own {
            OwnRef::Own(own) => slots_bytes(&own.fields),
            OwnRef::Block { .. } | OwnRef::Empty => 0,
        };
        std::mem::size_of::<Event>() + own + labels_bytes(self.own_labels())
    }

    /// Bytes of the block the event's own slots are a run of, whole: its
    /// beacon's other events share it, and it lives as long as any of them,
    /// whichever a filter dropped. Count it once for a run of events that
    /// [share it](Event::shares_own_block). `None` when not in a block.
    pub fn block_byte_size(&self) -> Option<usize> {
        match &self.own {
            OwnRef::Block { slots, bytes, .. } => Some(match *bytes {
                UNCOUNTED_BLOCK => slots.byte_size(),
                bytes => bytes as usize,
            }),
            OwnRef::Own(_) | OwnRef::Empty => None,
        }
    }

    /// [`Event::block_byte_size`], kept in the event once counted: the
    /// next buffer it reaches (after a transform task, say) reads it back
    /// instead of walking the block's slots again.
    pub fn count_block_bytes(&mut self) -> Option<usize> {
        let size = self.block_byte_size()?;
        if let OwnRef::Block { bytes, .. } = &mut self.own {
            // A block past 4 GiB (far beyond any body limit) counts anew each time.
            *bytes = u32::try_from(size).unwrap_or(UNCOUNTED_BLOCK);
        }
        Some(size)
    }

    /// Whether both events' own slots are in the same block (the events of
    /// one beacon, as decoded): its bytes are counted once for both.
    pub fn shares_own_block(&self, other: &Event) -> bool {
        match (&self.own, &other.own) {
            (OwnRef::Block { slots: a, .. }, OwnRef::Block { slots: b, .. }) => {
                Counted::ptr_eq(a, b)
            }
            _ => false,
        }
    }

    /// The whole document as one JSON value (allocates; for tests and tools).
    pub fn to_value(&self) -> Value {
        let mut out = Vec::new();
        self.write_json(&mut out);
        serde_json::from_slice(&out).unwrap_or(Value::Null)
    }

    pub fn into_value(self) -> Value {
        self.to_value()
    }
}

fn parse_time(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_millis()),
        _ => None,
    }
}

fn insert_below(target: &mut Value, rest: &str, value: Value) {
    let mut current = target;
    let mut parts = rest.split('.').peekable();
    while let Some(part) = parts.next() {
        if !current.is_object() {
            *current = Value::Object(Map::new());
        }
        let Value::Object(map) = current else {
            unreachable!("made an object above")
        };
        if parts.peek().is_none() {
            map.insert(part.to_owned(), value);
            return;
        }
        current = map.entry(part.to_owned()).or_insert(Value::Null);
    }
}

fn remove_below(target: &mut Value, rest: &str) {
    let (parent, leaf) = match rest.rsplit_once('.') {
        Some((parent, leaf)) => (Some(parent), leaf),
        None => (None, rest),
    };
    let mut current = target;
    if let Some(parent) = parent {
        for part in parent.split('.') {
            let Some(next) = current.as_object_mut().and_then(|m| m.get_mut(part)) else {
                return;
            };
            current = next;
        }
    }
    if let Some(map) = current.as_object_mut() {
        map.remove(leaf);
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.to_value() == other.to_value()
    }
}

impl From<Value> for Event {
    /// A document back into an event; everything lands in the event's own
    /// context (as if it were a beacon of one event).
    fn from(value: Value) -> Self {
        let mut event = Event::new();
        match value {
            Value::Object(map) => fill(&mut event, "", map),
            other => event.insert("message", other),
        }
        event.hoist_into_context();
        event
    }
}

fn fill(event: &mut Event, prefix: &str, map: Map<String, Value>) {
    for (key, value) in map {
        let path = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}.{key}")
        };
        let is_slot = FieldId::lookup(&path).is_some() || path.starts_with("labels.");
        match value {
            Value::Object(inner) if !is_slot || path == schema::LABELS => fill(event, &path, inner),
            value => event.insert(&path, value),
        }
    }
}

#[cfg(test)]
mod tests;
