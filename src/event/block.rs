//! A request's events built with their own slots in one block.

use serde_json::Value;

use super::context::drop_value;
use super::counted::{Counted, Credit, Releases};
use super::packed::PackedSlots;
use super::{sort_slots, Context, Event, FieldValue, OwnSlot};
use crate::schema::EventType;

/// The slots of a request's events, a run each: as `OwnSlot`s in the
/// vector a decoder filled (made an `Arc<[OwnSlot]>` it was copied whole,
/// ~570 instructions a beacon, and each slot's drop was a call, ~30
/// instructions a slot, most of them holding numbers and shared keywords
/// that own nothing), or packed as `rum_beacon`'s decoder reads them
/// ([`PackedSlots`]), read as `OwnSlot`s only by readers that ask.
#[derive(Debug)]
pub struct SlotBlock(Repr);

#[derive(Debug)]
enum Repr {
    Slots(OwnedSlots),
    Packed(PackedSlots),
}

impl SlotBlock {
    /// `slots`, with no room to spare (what the buffers count of it).
    /// The block's references are handed out on credit (`counted`): an
    /// event made on it adds nothing to its count.
    pub fn new(mut slots: Vec<OwnSlot>) -> Credit<SlotBlock> {
        slots.shrink_to_fit();
        Credit::new(SlotBlock(Repr::Slots(OwnedSlots(slots))))
    }

    /// Packed slots, their references handed out on credit as `new`'s.
    pub fn packed(slots: PackedSlots) -> Credit<SlotBlock> {
        Credit::new(SlotBlock(Repr::Packed(slots)))
    }

    /// The packed slots, if the block holds them so.
    #[inline]
    pub fn as_packed(&self) -> Option<&PackedSlots> {
        match &self.0 {
            Repr::Packed(packed) => Some(packed),
            Repr::Slots(_) => None,
        }
    }

    /// The slots `start..end` as `OwnSlot`s of their own, with room for
    /// `spare` more (an edit copies its event's run out), without making
    /// the whole block's.
    pub fn run_slots(&self, start: u32, end: u32, spare: usize) -> Vec<OwnSlot> {
        match &self.0 {
            Repr::Slots(slots) => {
                let run = &slots.0[start as usize..end as usize];
                let mut fields = Vec::with_capacity(run.len() + spare);
                fields.extend_from_slice(run);
                fields
            }
            Repr::Packed(packed) => packed.run_slots(start, end, spare),
        }
    }

    /// What the buffers count of the whole block.
    pub fn byte_size(&self) -> usize {
        match &self.0 {
            Repr::Slots(slots) => super::slots_bytes(&slots.0),
            Repr::Packed(packed) => packed.byte_size(),
        }
    }
}

impl std::ops::Deref for SlotBlock {
    type Target = [OwnSlot];

    /// The slots as `OwnSlot`s: packed ones are made on first use.
    fn deref(&self) -> &[OwnSlot] {
        match &self.0 {
            Repr::Slots(slots) => &slots.0,
            Repr::Packed(packed) => packed.as_slots(),
        }
    }
}

/// Slots as a decoder filled them, dropped together.
#[derive(Debug)]
struct OwnedSlots(Vec<OwnSlot>);

/// Whether dropping `value` has anything to do (a string or a container
/// to free, a shared value to release).
#[inline(always)]
fn owns_something(value: &Option<FieldValue>) -> bool {
    match value {
        None | Some(FieldValue::Static(_)) => false,
        Some(FieldValue::Owned(Value::Null | Value::Bool(_))) => false,
        Some(FieldValue::Owned(Value::Number(_))) => std::mem::needs_drop::<serde_json::Number>(),
        Some(_) => true,
    }
}

impl Drop for OwnedSlots {
    fn drop(&mut self) {
        // The strings of the request's block are given back together (one
        // write to its count, not one a string: see `counted`).
        let mut texts = Releases::default();
        for (_, value) in self.0.iter_mut() {
            if owns_something(value) {
                if let Some(value) = value.take() {
                    drop_value(value, &mut texts);
                }
            }
        }
        // SAFETY: every slot left owns nothing (checked above, or emptied):
        // forgetting them leaks nothing, and the vector frees its buffer.
        unsafe { self.0.set_len(0) };
    }
}

/// Builds the events of one request with their own slots in one block, as
/// `rum_beacon`'s decoder does: one allocation for all of them where
/// [`Event::from_parts`] makes two per event, and one free (a cold one: the
/// events are freed after they left the request, on another worker).
#[derive(Default)]
pub struct EventBlock {
    slots: Vec<OwnSlot>,
    events: Vec<Pending>,
}

enum Pending {
    Run {
        context: Counted<Context>,
        timestamp_ms: Option<i64>,
        client_ts_ms: Option<i64>,
        start: usize,
        end: usize,
    },
    /// An event built another way, kept in its place.
    Built(Event),
}

impl EventBlock {
    /// Room for `events` events of about twelve own slots each (the SDK
    /// decoders' events hold nine or ten: a block that grows is copied).
    pub fn with_capacity(events: usize) -> Self {
        Self {
            slots: Vec::with_capacity(events * 12),
            events: Vec::with_capacity(events),
        }
    }

    /// Events pushed so far.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// One event, as [`Event::from_parts`] makes it: `fields` in any order,
    /// a later value for the same id winning; `None` hides the context's.
    /// `rum.type` and `event.dataset` are the type's, not among `fields`.
    pub fn push(
        &mut self,
        context: Counted<Context>,
        timestamp_ms: Option<i64>,
        client_ts_ms: Option<i64>,
        ty: EventType,
        fields: impl IntoIterator<Item = OwnSlot>,
    ) {
        let start = self.slots.len();
        // First: their ids come before almost every other, so the sort
        // leaves them in place (no decoder sets them among `fields`).
        self.slots.extend(Event::type_slots(ty));
        self.slots.extend(Event::type_default(ty));
        self.slots.extend(fields);
        debug_assert!(
            self.slots[start + 2..]
                .iter()
                .all(|(id, _)| !self.slots[start..start + 2].iter().any(|(t, _)| t == id)),
            "a decoder set rum.type or event.dataset among an event's fields"
        );
        sort_slots(&mut self.slots, start);
        self.events.push(Pending::Run {
            context,
            timestamp_ms,
            client_ts_ms,
            start,
            end: self.slots.len(),
        });
    }

    /// An event built another way (with its own labels, say), in its place
    /// among the others.
    pub fn push_event(&mut self, event: Event) {
        self.events.push(Pending::Built(event));
    }

    /// The events in the order they were pushed.
    pub fn finish(self) -> Vec<Event> {
        let mut block = SlotBlock::new(self.slots);
        self.events
            .into_iter()
            .map(|pending| match pending {
                Pending::Run {
                    context,
                    timestamp_ms,
                    client_ts_ms,
                    start,
                    end,
                } => Event::in_block(
                    context,
                    timestamp_ms,
                    client_ts_ms,
                    block.hand_out(),
                    start..end,
                ),
                Pending::Built(event) => event,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{FieldId, FieldValue, TextBlockBuilder};
    use serde_json::{json, Value};
    use std::sync::Arc;

    #[test]
    fn a_slot_block_dropped_releases_what_its_values_hold() {
        let shared = Arc::new(json!({"a": [1, 2]}));
        let mut strings = TextBlockBuilder::default();
        let text = strings.push("a string of the request");
        drop(strings);
        let FieldValue::Text(text_block, _) = &text else {
            panic!("a block's string")
        };
        let text_block = text_block.clone();
        let id = FieldId::of("rum.extra");
        let values = [
            None,
            Some(FieldValue::from(1.5)),
            Some(FieldValue::from(true)),
            Some(FieldValue::Owned(Value::Null)),
            Some(FieldValue::from("owned")),
            Some(FieldValue::from(json!({"k": ["v"]}))),
            Some(FieldValue::Shared(shared.clone())),
            Some(text),
            Some(FieldValue::Shared(shared.clone())),
        ];
        let block = SlotBlock::new(values.into_iter().map(|v| (id, v)).collect());
        assert_eq!(block.len(), 9);
        assert_eq!(Arc::strong_count(&shared), 3);
        assert_eq!(Counted::strong_count(&text_block), 2);
        drop(block);
        assert_eq!(Arc::strong_count(&shared), 1);
        assert_eq!(Counted::strong_count(&text_block), 1);
    }

    /// Packed slots read as the `OwnSlot`s they stand for, run by run or
    /// made for the whole block, and give back what they hold when dropped.
    #[test]
    fn packed_slots_read_as_the_slots_they_stand_for() {
        use crate::event::{Packed, PackedSlot, PackedSlots, PACKED_SLOT_BYTES};
        let mut strings = TextBlockBuilder::default();
        let a = strings.append_index("a string of the request").unwrap();
        let b = strings.append_index("é\"\n").unwrap();
        let text_block = strings.block();
        drop(strings);
        static NAME: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| json!("web_vital"));
        let id = FieldId::of;
        let slots = vec![
            PackedSlot {
                id: id("rum.seq"),
                value: Packed::PosInt(3),
            },
            PackedSlot {
                id: id("rum.type"),
                value: Packed::Fixed(&NAME),
            },
            PackedSlot {
                id: id("rum.vital.name"),
                value: Packed::Text(a),
            },
            PackedSlot {
                id: id("rum.vital.value"),
                value: Packed::Float(-1.25),
            },
            PackedSlot {
                id: id("rum.extra"),
                value: Packed::Other(0),
            },
            PackedSlot {
                id: id("rum.vital.delta"),
                value: Packed::NegInt(-7),
            },
            PackedSlot {
                id: id("rum.vital.name"),
                value: Packed::Text(b),
            },
        ];
        let extra = json!({"k": ["v"]});
        let others = vec![FieldValue::from(extra.clone())];
        let packed = PackedSlots::new(slots, Some(text_block.clone()), others);
        let want: Vec<Value> = vec![
            json!(3),
            json!("web_vital"),
            json!("a string of the request"),
            json!(-1.25),
            extra.clone(),
            json!(-7),
            json!("é\"\n"),
        ];
        let run = packed.run_slots(2, 5, 0);
        assert!(!packed.slots_made());
        let made = packed.as_slots();
        assert_eq!(made.len(), want.len());
        for (i, ((_, value), want)) in made.iter().zip(&want).enumerate() {
            assert_eq!(value.as_deref(), Some(want), "slot {i}");
            // Written as the value's own JSON.
            let mut out = Vec::new();
            packed.write(packed_value(&packed, i), &mut out);
            assert_eq!(out, serde_json::to_vec(want).unwrap(), "slot {i}");
        }
        assert_eq!(run, made[2..5].to_vec());
        let strings_bytes = "a string of the request".len() + 8 + "é\"\n".len() + 8;
        let others_bytes = std::mem::size_of::<FieldValue>() + crate::event::value_bytes(&extra);
        assert_eq!(
            packed.byte_size(),
            7 * PACKED_SLOT_BYTES + strings_bytes + others_bytes
        );
        assert_eq!(PACKED_SLOT_BYTES, 24);
        // The block, its made slots and the run copied out each hold the text.
        assert!(Counted::strong_count(&text_block) > 2);
        drop(run);
        drop(SlotBlock::packed(packed));
        assert_eq!(Counted::strong_count(&text_block), 1);

        fn packed_value(packed: &PackedSlots, i: usize) -> Packed {
            packed.run(0, packed.len() as u32)[i].value
        }
    }

    #[test]
    fn events_built_in_a_block_are_those_built_from_their_parts_in_order() {
        let mut context = Context::new();
        context.set(FieldId::of("url.path"), "/shared");
        let context = Counted::new(context);
        let path = FieldId::of("url.path");
        let name = FieldId::of("rum.vital.name");
        let parts = |n: u64| {
            vec![
                (name, Some(FieldValue::from(format!("vital {n}")))),
                (FieldId::of("rum.seq"), Some(FieldValue::from(n))),
                // Pushed twice: the later wins; and one hiding the context's.
                (name, Some(FieldValue::from(Value::from(n)))),
                (path, n.is_multiple_of(2).then(|| FieldValue::from("/own"))),
            ]
        };
        let mut block = EventBlock::with_capacity(1);
        let mut expected = Vec::new();
        for n in 0..5u64 {
            let ty = EventType::ALL[n as usize % EventType::ALL.len()];
            let client_ts = (n % 2 == 1).then_some(n as i64);
            if n == 3 {
                let mut event =
                    Event::from_parts(context.clone(), Some(7), client_ts, ty, parts(n));
                event.set_label(Arc::from("site"), FieldValue::from("shop"));
                expected.push(event.clone());
                block.push_event(event);
            } else {
                block.push(context.clone(), Some(7), client_ts, ty, parts(n));
                expected.push(Event::from_parts(
                    context.clone(),
                    Some(7),
                    client_ts,
                    ty,
                    parts(n),
                ));
            }
            assert_eq!(block.len(), n as usize + 1);
        }
        let events = block.finish();
        assert_eq!(events.len(), expected.len());
        for (got, want) in events.iter().zip(&expected) {
            assert_eq!(got.to_value(), want.to_value());
            assert_eq!(got.client_ts_ms(), want.client_ts_ms());
        }
        assert!(events[0].shares_own_block(&events[4]));
        assert!(!events[0].shares_own_block(&events[3]));
    }
}
