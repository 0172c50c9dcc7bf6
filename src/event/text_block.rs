//! The string values of one request's events in one allocation
//! ([`TextBlock`]): a decoder appends each string it keeps to the block and
//! the slot holds the block and the string's index. A string value is
//! otherwise a `String` of its own, and every one of them is freed by the
//! thread that drops the event, not the one that made it: a beacon's
//! twenty-odd strings cost more freed there than they cost to read.
//!
//! The writer and [`FieldValue::as_str`] read the text as it is; a reader
//! that asks for a `serde_json::Value` (`Deref`: a condition, a transform
//! reading a field) gets that string as a value, made on first use.

use std::sync::OnceLock;

use serde_json::Value;

use super::context::FieldValue;
use super::counted::{Counted, Credit};

/// The strings of one request's events. Filled once, when the decoder is
/// done reading ([`TextBlockBuilder`]); read-only after.
#[derive(Default)]
pub struct TextBlock {
    strings: OnceLock<Strings>,
    /// A cell per string, made when a reader first asks for a value; each
    /// string's value made when it is asked for. (All of them were made
    /// for the first: a `route` on `service.name` copied every URL, title
    /// and message of every beacon into a `String` of its own, one
    /// allocation each, held as long as the block and counted by no
    /// buffer.)
    values: OnceLock<Box<[OnceLock<Value>]>>,
}

struct Strings {
    text: String,
    /// Where each string ends in `text`; each begins where the one before
    /// it ends.
    ends: Vec<u32>,
}

impl TextBlock {
    /// String `index` (empty if the block was never filled, which a
    /// decoder's slots cannot see: they are read after it is).
    pub(super) fn str(&self, index: u32) -> &str {
        let Some(strings) = self.strings.get() else {
            return "";
        };
        let i = index as usize;
        let start = match i.checked_sub(1) {
            Some(before) => strings.ends.get(before).map_or(0, |&end| end as usize),
            None => 0,
        };
        let end = strings.ends.get(i).map_or(start, |&end| end as usize);
        match strings.text.as_bytes().get(start..end) {
            // SAFETY: every end is where a whole `&str` pushed onto `text`
            // ended, and every start is 0 or the end before: both are char
            // boundaries of `text`, so the bytes between are UTF-8. (`str`'s
            // own slicing checked both boundaries on each of the writer's
            // reads, some 20 instructions a string.)
            Some(bytes) => unsafe { std::str::from_utf8_unchecked(bytes) },
            None => "",
        }
    }

    /// The length of string `index`, what `str(index).len()` is, without
    /// slicing the text (a context counts a dozen of them a beacon).
    fn len_of(&self, index: u32) -> usize {
        let Some(strings) = self.strings.get() else {
            return 0;
        };
        let i = index as usize;
        let start = match i.checked_sub(1) {
            Some(before) => strings.ends.get(before).map_or(0, |&end| end as usize),
            None => 0,
        };
        let end = strings.ends.get(i).map_or(start, |&end| end as usize);
        // Each end is where a pushed string ended: on a char boundary.
        if start <= end && end <= strings.text.len() {
            end - start
        } else {
            0
        }
    }

    /// What [`TextBlockBuilder::pushed_bytes`] counted for every string
    /// the block holds, whether a slot still reads it or not (for tests
    /// that a decoder holds no string it gave up on).
    #[cfg(test)]
    pub(super) fn held_bytes(&self) -> usize {
        self.strings
            .get()
            .map_or(0, |s| s.text.len() + 8 * s.ends.len())
    }

    /// String `index` as a value.
    pub(super) fn value(&self, index: u32) -> &Value {
        static EMPTY: Value = Value::Null;
        let cells = self.values.get_or_init(|| {
            let count = self.strings.get().map_or(0, |s| s.ends.len());
            (0..count).map(|_| OnceLock::new()).collect()
        });
        match cells.get(index as usize) {
            Some(cell) => cell.get_or_init(|| Value::String(self.str(index).to_owned())),
            None => &EMPTY,
        }
    }

    /// How many of the strings have been made into values.
    #[cfg(test)]
    fn values_made(&self) -> usize {
        self.values.get().map_or(0, |cells| {
            cells.iter().filter(|c| c.get().is_some()).count()
        })
    }
}

impl std::fmt::Debug for TextBlock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let count = self.strings.get().map_or(0, |s| s.ends.len());
        write!(f, "TextBlock({count} strings)")
    }
}

/// Heap bytes a slot's string in a block stands for: what the same string
/// counted as a `String` of its own, so every byte limit (a context's
/// `max_context_bytes`, the buffers' budgets) reads a beacon as it did.
/// Values made for readers that ask for one are not counted: only the
/// strings read so (a condition's few fields) are made, after the buffers
/// counted the block.
#[inline]
pub(super) fn text_bytes(block: &TextBlock, index: u32) -> usize {
    block.len_of(index) + 8
}

/// Fills a request's [`TextBlock`] as its decoder reads; dropping it (the
/// decoder is done, or gave up) fills the block.
#[derive(Default)]
pub struct TextBlockBuilder {
    /// Made with the first string: a request without any makes none. Its
    /// references are handed out on credit: a string's slot adds nothing
    /// to the block's count as it is made.
    block: Option<Credit<TextBlock>>,
    text: String,
    ends: Vec<u32>,
}

impl TextBlockBuilder {
    /// What the buffers count (`text_bytes`) for all the values pushed
    /// so far, together: a decoder sums its block's bytes from this.
    pub fn pushed_bytes(&self) -> usize {
        self.text.len() + 8 * self.ends.len()
    }

    /// How many strings were pushed so far: a mark to `forget_since`.
    pub fn pushed_count(&self) -> usize {
        self.ends.len()
    }

    /// Drops the strings pushed since `pushed_count` was `mark`, for a
    /// decoder that gave up the slots holding them (they would stay in the
    /// block, held by every event of the request and counted by none). The
    /// slot values of those strings must be gone: the next push reuses
    /// their indices.
    pub fn forget_since(&mut self, mark: usize) {
        if mark >= self.ends.len() {
            return;
        }
        let end = mark
            .checked_sub(1)
            .map_or(0, |last| self.ends[last] as usize);
        self.ends.truncate(mark);
        self.text.truncate(end);
    }

    /// The slot value of `text`, appended to the block.
    #[inline]
    pub fn push(&mut self, text: &str) -> FieldValue {
        match self.append(text) {
            Some((block, index)) => FieldValue::Text(block, index),
            None => own_string(text),
        }
    }

    /// `text` appended to the block: the block and the string's index, for
    /// `FieldValue::Text`. `None` past 4 GiB of strings (no body is near):
    /// the string is then a value of its own.
    ///
    /// Both come back in two registers, and a caller that builds the value
    /// at its slot stores it there at once: a `FieldValue` returned from a
    /// call comes back through memory, written by narrow stores and read
    /// back with 16-byte loads to move it (a failed store forward each
    /// string, found with `perf annotate` in the decoder).
    pub fn append(&mut self, text: &str) -> Option<(Counted<TextBlock>, u32)> {
        let end = u32::try_from(self.text.len() + text.len()).ok()?;
        if self.text.capacity() == 0 {
            self.reserve_first();
        }
        let block = self
            .block
            .get_or_insert_with(|| Credit::new(TextBlock::default()))
            .hand_out();
        push_short(&mut self.text, text);
        let index = self.ends.len() as u32;
        self.ends.push(end);
        Some((block, index))
    }
}

impl TextBlockBuilder {
    /// `text` appended to the block, for a slot that refers to the block
    /// through one reference for all of its strings ([`PackedSlots`]):
    /// its index. `None` past 4 GiB of strings.
    ///
    /// [`PackedSlots`]: super::PackedSlots
    ///
    /// Always inlined: the decoder appends some thirty strings a beacon,
    /// and the call and its spills cost ~7 instructions each.
    #[inline(always)]
    pub fn append_index(&mut self, text: &str) -> Option<u32> {
        let end = u32::try_from(self.text.len() + text.len()).ok()?;
        if self.text.capacity() == 0 {
            self.reserve_first();
        }
        push_short(&mut self.text, text);
        let index = self.ends.len() as u32;
        self.ends.push(end);
        Some(index)
    }

    /// Room for a beacon's strings, made with the first: its context's and
    /// events' take about 800 bytes in some 45 strings (keywords such as a
    /// vital's name and rating among them), and each doubling on the way
    /// copied them again.
    #[cold]
    fn reserve_first(&mut self) {
        // Made, not reserved, when they hold nothing: `reserve`'s way to an
        // allocation cost about 25 instructions more each. (Empty strings
        // pushed first have ends but no text.)
        self.text = String::with_capacity(1024);
        if self.ends.capacity() == 0 {
            self.ends = Vec::with_capacity(64);
        } else {
            self.ends.reserve(64);
        }
    }

    /// A reference to the block (made now if no string made it yet), for
    /// slots that refer to its strings by index.
    pub fn block(&mut self) -> Counted<TextBlock> {
        self.block
            .get_or_insert_with(|| Credit::new(TextBlock::default()))
            .hand_out()
    }
}

/// `text` onto `out`. Nearly every string a beacon keeps is short (a
/// keyword, an id, a URL), and `push_str` copied each with a call to the C
/// library's `memcpy`, which picks its way by size: ~30 instructions a
/// string. Up to 32 bytes, two overlapping loads and stores of 16, 8, 4 or
/// 1 bytes copy it here; longer ones, or one past the room left, go to
/// `push_str`.
#[inline(always)]
fn push_short(out: &mut String, text: &str) {
    let n = text.len();
    if n > 32 || out.capacity() - out.len() < n {
        out.push_str(text);
        return;
    }
    let src = text.as_ptr();
    // SAFETY: `out` has room for `n` more bytes (checked above), every
    // read below is inside `text` and every write inside that room (each
    // pair of copies overlaps, never passes `n`), and the `n` bytes written
    // are `text`'s, whole: `out` stays UTF-8.
    unsafe {
        let bytes = out.as_mut_vec();
        let len = bytes.len();
        let dst = bytes.as_mut_ptr().add(len);
        match n {
            16..=32 => {
                copy_pair::<16>(src, dst, n);
            }
            8..=15 => copy_pair::<8>(src, dst, n),
            4..=7 => copy_pair::<4>(src, dst, n),
            1..=3 => {
                *dst = *src;
                *dst.add(n / 2) = *src.add(n / 2);
                *dst.add(n - 1) = *src.add(n - 1);
            }
            _ => {}
        }
        bytes.set_len(len + n);
    }
}

/// The first and the last `W` of `n` bytes (`W <= n <= 2W`) from `src` to
/// `dst`: all `n` of them.
///
/// # Safety
/// `src` readable and `dst` writable for `n` bytes, not overlapping.
#[inline(always)]
unsafe fn copy_pair<const W: usize>(src: *const u8, dst: *mut u8, n: usize) {
    debug_assert!(W <= n && n <= 2 * W);
    let head = std::ptr::read_unaligned(src as *const [u8; W]);
    let tail = std::ptr::read_unaligned(src.add(n - W) as *const [u8; W]);
    std::ptr::write_unaligned(dst as *mut [u8; W], head);
    std::ptr::write_unaligned(dst.add(n - W) as *mut [u8; W], tail);
}

/// A string past a block's 4 GiB: a value of its own.
#[cold]
fn own_string(text: &str) -> FieldValue {
    FieldValue::Owned(Value::String(text.to_owned()))
}

impl Drop for TextBlockBuilder {
    fn drop(&mut self) {
        if let Some(block) = self.block.take() {
            let strings = Strings {
                text: std::mem::take(&mut self.text),
                ends: std::mem::take(&mut self.ends),
            };
            // Only this builder fills its block.
            let _ = block.strings.set(strings);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every length `push_short` copies itself (0 to 32 bytes) and past
    /// it, onto texts of every length and with no room left, comes out as
    /// `push_str` would write it; the strings read back from the block.
    #[test]
    fn short_strings_are_copied_whole_at_every_length() {
        let source: String = "aé😀\"\\bcdefghijklmnopqrstuvwxyz0123456789".repeat(2);
        let mut builder = TextBlockBuilder::default();
        let mut texts = Vec::new();
        for start in 0..4 {
            for n in 0..=40 {
                let Some(text) = source.get(start..start + n) else {
                    continue;
                };
                let mut out = "x".repeat(start);
                let mut want = out.clone();
                push_short(&mut out, text);
                want.push_str(text);
                assert_eq!(out, want, "{n} bytes from {start}");
                // With no room left: `push_str` makes it.
                let mut full = String::with_capacity(start);
                full.push_str(&"y".repeat(start));
                push_short(&mut full, text);
                assert_eq!(&full[start..], text);
                texts.push((builder.append_index(text).unwrap(), text));
            }
        }
        let block = builder.block();
        drop(builder);
        for (index, text) in texts {
            assert_eq!(block.str(index), text);
        }
    }

    #[test]
    fn strings_in_a_block_read_as_the_values_they_stand_for() {
        let texts = ["https://shop.example.com/a?b=c", "", "v4-1", "é😀\"\n", "x"];
        let mut builder = TextBlockBuilder::default();
        let values: Vec<FieldValue> = texts.iter().map(|t| builder.push(t)).collect();
        drop(builder);
        for (value, text) in values.iter().zip(texts) {
            assert_eq!(value.as_str(), Some(text));
            // Read before any `Value` was made, then as one.
            assert_eq!(**value, Value::String(text.to_owned()));
            assert_eq!(value.as_str(), Some(text));
            assert_eq!(*value, FieldValue::from(text));
            assert!(matches!(value, FieldValue::Text(..)));
        }
        assert_ne!(values[0], values[2]);
        // One block for all of them.
        let FieldValue::Text(first, _) = &values[0] else {
            unreachable!()
        };
        assert!(values
            .iter()
            .all(|v| matches!(v, FieldValue::Text(b, _) if Counted::ptr_eq(b, first))));
    }

    /// Empty strings first, then text: the room made with the first string
    /// keeps what the empty ones put down, whichever way they came.
    #[test]
    fn empty_strings_before_the_first_text_keep_their_places() {
        let texts = ["", "", "https://shop.example.com/", "", "x"];
        let mut builder = TextBlockBuilder::default();
        let indices: Vec<u32> = texts
            .iter()
            .map(|t| builder.append_index(t).unwrap())
            .collect();
        let block = builder.block();
        let values: Vec<FieldValue> = indices
            .iter()
            .map(|&i| FieldValue::Text(block.clone(), i))
            .collect();
        drop(builder);
        for (value, text) in values.iter().zip(texts) {
            assert_eq!(value.as_str(), Some(text));
        }
    }

    /// A reader of one string as a value (a condition on `service.name`)
    /// makes that one: the beacon's URLs, titles and messages stay text.
    #[test]
    fn reading_one_string_as_a_value_makes_that_one_alone() {
        let mut builder = TextBlockBuilder::default();
        let values: Vec<FieldValue> = (0..100)
            .map(|i| builder.push(&format!("https://shop.example/{i}/{}", "p".repeat(1000))))
            .collect();
        drop(builder);
        let FieldValue::Text(block, _) = &values[0] else {
            unreachable!()
        };
        assert_eq!(block.values_made(), 0);
        assert_eq!(
            values[7].as_str().map(|s| s.len()),
            Some(1000 + "https://shop.example/7/".len())
        );
        assert_eq!(block.values_made(), 0, "as_str makes no value");
        assert!((*values[7])
            .as_str()
            .is_some_and(|s| s.starts_with("https://shop.example/7/")));
        assert!((*values[7]).is_string());
        assert_eq!(block.values_made(), 1);
        assert_eq!(
            *values[42],
            Value::String(values[42].as_str().unwrap().to_owned())
        );
        assert_eq!(block.values_made(), 2);
    }

    #[test]
    fn forgotten_strings_leave_the_block_and_their_indices_are_reused() {
        let mut builder = TextBlockBuilder::default();
        let kept = builder.push("kept");
        let mark = builder.pushed_count();
        builder.forget_since(mark + 5);
        drop(builder.push("gone"));
        drop(builder.push("gone too"));
        builder.forget_since(mark);
        assert_eq!(builder.pushed_bytes(), "kept".len() + 8);
        let next = builder.push("next");
        drop(builder);
        assert_eq!(kept.as_str(), Some("kept"));
        assert_eq!(next.as_str(), Some("next"));
        let FieldValue::Text(block, 1) = &next else {
            panic!("{next:?}")
        };
        assert_eq!(block.held_bytes(), "kept".len() + "next".len() + 16);
    }

    #[test]
    fn a_string_in_a_block_counts_the_bytes_it_counted_on_its_own() {
        let mut builder = TextBlockBuilder::default();
        let value = builder.push("/checkout");
        drop(builder);
        let FieldValue::Text(block, index) = &value else {
            unreachable!()
        };
        let own = super::super::value_bytes(&Value::String("/checkout".into()));
        assert_eq!(text_bytes(block, *index), own);
        let _ = &*value;
        assert_eq!(text_bytes(block, *index), own);
    }

    /// The count reads each string's length without its text: the same
    /// length, for every index, past the last one and before the block is
    /// filled too.
    #[test]
    fn a_strings_length_is_its_texts() {
        let texts = ["https://shop.example.com/a?b=c", "", "é😀\"\n", "x", ""];
        let mut builder = TextBlockBuilder::default();
        let values: Vec<FieldValue> = texts.iter().map(|t| builder.push(t)).collect();
        let FieldValue::Text(block, _) = &values[0] else {
            unreachable!()
        };
        let block = block.clone();
        assert_eq!(block.len_of(0), 0, "not filled yet");
        drop(builder);
        for index in 0..texts.len() as u32 + 2 {
            assert_eq!(block.len_of(index), block.str(index).len(), "{index}");
        }
        assert_eq!(block.len_of(2), "é😀\"\n".len());
    }
}
