//! The own slots of a beacon's events as `rum_beacon`'s decoder reads them
//! ([`PackedSlots`]): each event a run of [`PackedSlot`]s in id order, laid
//! out by its type's table of fields, each value kept as the type it has
//! (a number as its bits, a string as its index in the request's
//! [`TextBlock`], a type's name as the shared value). A [`FieldValue`]
//! slot took 40 bytes, a reference to the block of strings per string
//! (each given back on drop, on the worker that frees the events), and
//! a walk of the whole block to drop it; a packed slot takes 24 and owns
//! nothing, so a block of them is freed without reading it.
//!
//! Readers that only read (the writer of documents, conditions, document
//! ids) read the packed values in place. Anything that asks for the slots
//! as `OwnSlot`s (a `Value` of a number, a transform reading through the
//! generic API) gets them made once for the whole block, on first use.

use std::sync::OnceLock;

use serde_json::ser::{CompactFormatter, Formatter};
use serde_json::{Number, Value};

use super::context::{slot_bytes, FieldRead, FieldValue, Num};
use super::counted::Counted;
use super::fields::FieldId;
use super::text_block::{text_bytes, TextBlock};
use super::OwnSlot;

use crate::json_bytes::{write_float, write_str};

/// Bytes of one packed slot (id and value), what the buffers count of it
/// beside what it refers to.
pub const PACKED_SLOT_BYTES: usize = std::mem::size_of::<PackedSlot>();

/// Bytes of a value kept aside ([`Packed::Other`]), its heap aside.
const OTHER_BYTES: usize = std::mem::size_of::<FieldValue>();

/// A slot's value, packed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Packed {
    /// String `n` of the block's [`TextBlock`].
    Text(u32),
    PosInt(u64),
    NegInt(i64),
    Float(f64),
    /// A shared value (a type's name and dataset).
    Fixed(&'static Value),
    /// Value `n` of the block's values kept aside (`rum.extra`, a boolean,
    /// anything that is neither a number nor a string of the block).
    Other(u32),
}

impl Packed {
    /// `n` as the number it is ([`Num::of`]).
    #[inline]
    pub fn number(n: &Number) -> Packed {
        match Num::of(n) {
            Num::PosInt(u) => Packed::PosInt(u),
            Num::NegInt(i) => Packed::NegInt(i),
            Num::Float(f) => Packed::Float(f),
        }
    }

    /// The number, if the value is one.
    #[inline]
    fn as_num(self) -> Option<Num> {
        match self {
            Packed::PosInt(u) => Some(Num::PosInt(u)),
            Packed::NegInt(i) => Some(Num::NegInt(i)),
            Packed::Float(f) => Some(Num::Float(f)),
            _ => None,
        }
    }
}

/// One own slot of an event, packed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PackedSlot {
    pub id: FieldId,
    pub value: Packed,
}

/// The packed slots of a request's events, with what they refer to.
pub struct PackedSlots {
    slots: Vec<PackedSlot>,
    /// The request's strings (`Packed::Text`): one reference for all.
    text: Option<Counted<TextBlock>>,
    others: Vec<FieldValue>,
    /// The slots as `OwnSlot`s, made for the first reader that asks for them.
    made: OnceLock<Box<[OwnSlot]>>,
}

impl PackedSlots {
    /// `slots` (each event's run sorted by id, each id once) over the
    /// request's block of strings and the values kept aside.
    pub fn new(
        mut slots: Vec<PackedSlot>,
        text: Option<Counted<TextBlock>>,
        mut others: Vec<FieldValue>,
    ) -> Self {
        // mimalloc keeps a block where it is when it is shrunk to half its
        // size or more (`mi_realloc`): the call would only cost its checks
        // (~90 instructions a beacon), so only a list wasting more than half
        // is shrunk.
        if slots.capacity() / 2 > slots.len() {
            slots.shrink_to_fit();
        }
        others.shrink_to_fit();
        PackedSlots {
            slots,
            text,
            others,
            made: OnceLock::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The slots `start..end` (an event's run).
    #[inline]
    pub fn run(&self, start: u32, end: u32) -> &[PackedSlot] {
        self.slots
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// String `index` of the block.
    #[inline]
    fn text(&self, index: u32) -> &str {
        self.text.as_ref().map_or("", |block| block.str(index))
    }

    /// The value as a reader that compares or copies it sees it.
    #[inline]
    pub fn read(&self, value: Packed) -> Option<FieldRead<'_>> {
        match value {
            Packed::Text(index) => Some(FieldRead::Str(self.text(index))),
            Packed::Fixed(value) => Some(FieldRead::of(value)),
            Packed::Other(index) => self.others.get(index as usize).map(FieldValue::read),
            number => number.as_num().map(FieldRead::Number),
        }
    }

    /// The value's text if it is a string.
    #[inline]
    pub fn as_str(&self, value: Packed) -> Option<&str> {
        match value {
            Packed::Text(index) => Some(self.text(index)),
            Packed::Fixed(value) => value.as_str(),
            Packed::Other(index) => self.others.get(index as usize)?.as_str(),
            Packed::PosInt(_) | Packed::NegInt(_) | Packed::Float(_) => None,
        }
    }

    /// Value `index` kept aside.
    pub fn other(&self, index: u32) -> Option<&FieldValue> {
        self.others.get(index as usize)
    }

    /// The value as a slot holds it.
    pub fn field_value(&self, value: Packed) -> FieldValue {
        match value {
            Packed::Text(index) => match &self.text {
                Some(block) => FieldValue::Text(block.clone(), index),
                None => FieldValue::Owned(Value::String(String::new())),
            },
            Packed::Fixed(value) => FieldValue::Static(value),
            Packed::Other(index) => self
                .others
                .get(index as usize)
                .cloned()
                .unwrap_or(FieldValue::Owned(Value::Null)),
            number => FieldValue::Owned(
                number
                    .as_num()
                    .and_then(Num::to_number)
                    .map_or(Value::Null, Value::Number),
            ),
        }
    }

    /// The slots `start..end` as `OwnSlot`s, made for them alone (an edit
    /// of one event copies its run, not the block), with room for `spare`
    /// more.
    pub fn run_slots(&self, start: u32, end: u32, spare: usize) -> Vec<OwnSlot> {
        let run = self.run(start, end);
        let mut slots = Vec::with_capacity(run.len() + spare);
        slots.extend(
            run.iter()
                .map(|slot| (slot.id, Some(self.field_value(slot.value)))),
        );
        slots
    }

    /// Every slot as an `OwnSlot`, made on first use and kept.
    pub fn as_slots(&self) -> &[OwnSlot] {
        self.made.get_or_init(|| {
            self.slots
                .iter()
                .map(|slot| (slot.id, Some(self.field_value(slot.value))))
                .collect()
        })
    }

    /// Whether the `OwnSlot`s were made (for tests that readers read in place).
    #[cfg(test)]
    pub fn slots_made(&self) -> bool {
        self.made.get().is_some()
    }

    /// The value as the document has it.
    #[inline]
    pub fn write(&self, value: Packed, out: &mut Vec<u8>) {
        match value {
            Packed::Text(index) => write_str(self.text(index), out),
            Packed::Fixed(value) => super::write::write_plain(value, out),
            Packed::Other(index) => match self.others.get(index as usize) {
                Some(value) => super::write::write_value(value, out),
                None => out.extend_from_slice(b"null"),
            },
            // As `write_number` writes the `Number` each stands for.
            Packed::PosInt(u) => {
                let _ = CompactFormatter.write_u64(out, u);
            }
            Packed::NegInt(i) => {
                let _ = CompactFormatter.write_i64(out, i);
            }
            Packed::Float(f) => write_float(f, out),
        }
    }

    /// What the buffers count of the block: each slot, each string its
    /// slots read as a `String` of its own would count ([`text_bytes`]),
    /// and each value kept aside. The same as the decoder sums as it fills
    /// the block.
    pub fn byte_size(&self) -> usize {
        let strings: usize = match &self.text {
            Some(block) => self
                .slots
                .iter()
                .filter_map(|slot| match slot.value {
                    Packed::Text(index) => Some(text_bytes(block, index)),
                    _ => None,
                })
                .sum(),
            None => 0,
        };
        let others: usize = self
            .others
            .iter()
            .map(|value| OTHER_BYTES + slot_bytes(value))
            .sum();
        self.slots.len() * PACKED_SLOT_BYTES + strings + others
    }
}

impl std::fmt::Debug for PackedSlots {
    /// Each slot's id and value as a reader reads it (the text of a
    /// string, not its index), whether or not its `OwnSlot`s were made.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(
                self.slots
                    .iter()
                    .map(|slot| (slot.id, self.read(slot.value))),
            )
            .finish()
    }
}

/// What the buffers count of a value kept aside: the `FieldValue` and what
/// it holds (the decoder adds it as it keeps one).
pub fn other_bytes(value: &FieldValue) -> usize {
    OTHER_BYTES + slot_bytes(value)
}
