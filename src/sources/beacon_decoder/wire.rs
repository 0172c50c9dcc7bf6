//! The beacon format on the wire, read in one pass (`json_scan`): the top
//! level keeps its known keys as small values and the events as key/value
//! lists; everything else is checked, skipped and counted.

use std::borrow::Cow;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::bounded::PairList;
use super::{all_payload_slots, KeyGuess, SlotInfo, SlotTable};
use crate::event::{other_bytes, Event, FieldId, FieldValue, Packed, PackedSlot, TextBlockBuilder};
use crate::schema::EventType;
use crate::sources::json_scan::{KeyBytes, Scan, ScanError, Scanner};

/// The top level of a beacon: known keys kept as small values, the events
/// as key/value lists, everything else checked, skipped and counted.
#[derive(Default)]
pub(super) struct WireObject<'de> {
    pub(super) v: Option<Value>,
    pub(super) sent_at: Option<Value>,
    pub(super) events: Option<WireEvents<'de>>,
    /// `Some(None)`: present but not an object.
    pub(super) app: Option<Option<[Option<Known<'de>>; 3]>>,
    pub(super) session: Option<Option<[Option<Known<'de>>; 1]>>,
    pub(super) view: Option<Option<[Option<Known<'de>>; 4]>>,
    pub(super) device: Option<Option<[Option<Known<'de>>; 3]>>,
    pub(super) ua_hints: Option<Value>,
    pub(super) ignored_keys: usize,
}

pub(super) enum WireEvents<'de> {
    Array {
        entries: Vec<WireEntry<'de>>,
        count: usize,
        /// The slots of every slotted entry, each entry's a run of them:
        /// the beacon's events share this one list as one block.
        slots: Vec<PackedSlot>,
        /// The values the slots keep aside (`Packed::Other`).
        others: Vec<FieldValue>,
        /// What the slots refer to (their strings, the values kept aside),
        /// summed as they were read: with `PACKED_SLOT_BYTES` a slot, the
        /// block's byte count, which no buffer then walks the block to
        /// work out.
        heap_bytes: usize,
    },
    NotArray,
}

pub(super) enum WireEntry<'de> {
    /// Read straight into its event's slots (`read_slots_into`).
    Slotted(SlottedEntry),
    Object(Vec<(Cow<'de, str>, Value)>),
    NotObject,
}

/// An entry whose keys went straight to their slots as they were read.
pub(super) struct SlottedEntry {
    /// The type sent was not a known one (kept as `custom`).
    pub(super) unknown_type: bool,
    pub(super) ts: Option<i64>,
    /// Its run of `WireEvents::Array::slots`, sorted by id, each id once:
    /// `rum.seq` (the entry's place; one the client sent wins), the
    /// payload's slots, `rum.extra` if any key had no slot, the original
    /// type of an unknown one, `rum.type` and `event.dataset`.
    pub(super) slots: Range<usize>,
}

/// The beacon object itself (depth 1), read into `out`; `Ok(false)`, with
/// `out` as it was, when the body is JSON but not an object.
/// The events' string values go to `strings`; entries past `max_events`
/// are checked and counted, not kept (the beacon is refused).
///
/// Filled where the caller keeps it: returned by value, the object (some
/// 600 bytes) was copied by `memcpy` on each of its three or four moves on
/// the way, ~370 instructions a beacon.
pub(super) fn read_beacon<'de>(
    sc: &mut Scanner<'de, '_>,
    strings: &mut TextBlockBuilder,
    max_events: usize,
    out: &mut WireObject<'de>,
) -> Scan<bool> {
    match sc.peek()? {
        b'{' => {}
        b'[' => {
            // Not a beacon, but its elements are still within the limits.
            sc.begin_array(1)?;
            let mut first = true;
            while sc.element(first)? {
                first = false;
                sc.skip(2)?;
            }
            return Ok(false);
        }
        _ => {
            sc.skip(1)?;
            return Ok(false);
        }
    }
    sc.begin_object(1)?;
    // Where the strings of `events` begin in `strings`: a repeated
    // `events` drops what the one before it pushed.
    let mut events_strings = None;
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        // A repeated key: the last one wins, as in a JSON object.
        match &*key {
            "v" => out.v = Some(sc.value(2)?),
            "sent_at" => out.sent_at = Some(sc.value(2)?),
            "events" => {
                let mark = *events_strings.get_or_insert(strings.pushed_count());
                // The earlier array's slots go first: the strings' indices
                // are reused.
                out.events = None;
                strings.forget_since(mark);
                out.events = Some(read_events(sc, strings, max_events)?);
            }
            "app" => out.app = Some(read_known(sc, 2, &APP, &mut out.ignored_keys)?),
            "session" => out.session = Some(read_known(sc, 2, &SESSION, &mut out.ignored_keys)?),
            "view" => out.view = Some(read_known(sc, 2, &VIEW, &mut out.ignored_keys)?),
            "device" => out.device = Some(read_known(sc, 2, &DEVICE, &mut out.ignored_keys)?),
            "ua_hints" => out.ua_hints = Some(sc.value(2)?),
            _ => {
                // Not kept, but still within the limits.
                sc.skip(2)?;
                out.ignored_keys += 1;
            }
        }
    }
    Ok(true)
}

/// A value of one of the beacon's context objects: a string as the body has
/// it (the decoder copies it into the request's block of strings, with no
/// `String` of its own on the way), anything else as a `Value`.
pub(super) enum Known<'de> {
    Str(Cow<'de, str>),
    Other(Value),
}

impl Known<'_> {
    /// The string; `Ok(None)` for `null`, `Err` for any other type.
    pub(super) fn text(&self) -> Result<Option<&str>, ()> {
        match self {
            Known::Str(text) => Ok(Some(text)),
            Known::Other(Value::String(text)) => Ok(Some(text)),
            Known::Other(Value::Null) => Ok(None),
            Known::Other(_) => Err(()),
        }
    }

    pub(super) fn into_value(self) -> Value {
        match self {
            Known::Str(text) => Value::String(text.into_owned()),
            Known::Other(value) => value,
        }
    }
}

/// The keys kept of the beacon's context objects (the rest is checked and
/// skipped), in the order the decoder reads them.
pub(super) const APP_KEYS: [&str; 3] = ["name", "version", "env"];
pub(super) const SESSION_KEYS: [&str; 1] = ["id"];
pub(super) const VIEW_KEYS: [&str; 4] = ["url", "id", "title", "referrer"];
pub(super) const DEVICE_KEYS: [&str; 3] = ["memory", "cores", "connection"];

/// Per key position of an object, the key that was there last, as a
/// byte (`NO_GUESS`: another key, or none yet): a client sends an object's
/// keys in the same order every time, so the next object's key there is
/// first compared, as bytes, with that one (`Scanner::key_is`). Only a
/// guess: the bytes decide. Shared by every worker; written only when it
/// changes, so that workers reading the same guesses do not pass their
/// cache line to and fro (a lost write costs a miss).
pub(super) struct KeyGuesses<const N: usize>([AtomicU8; N]);

pub(super) const NO_GUESS: u8 = u8::MAX;

impl<const N: usize> KeyGuesses<N> {
    pub(super) const fn new() -> Self {
        KeyGuesses([const { AtomicU8::new(NO_GUESS) }; N])
    }

    /// The guess at `position` (`NO_GUESS` past the last kept).
    #[inline(always)]
    pub(super) fn at(&self, position: usize) -> u8 {
        self.0
            .get(position)
            .map_or(NO_GUESS, |guess| guess.load(Ordering::Relaxed))
    }

    /// `found` was at `position`: the guess there from now on.
    #[inline]
    pub(super) fn learn(&self, position: usize, found: u8) {
        if let Some(guess) = self.0.get(position) {
            if guess.load(Ordering::Relaxed) != found {
                guess.store(found, Ordering::Relaxed);
            }
        }
    }
}

/// The keys kept of one context object (`APP_KEYS`, ...) as `read_known`
/// takes them, each first compared with the key the last beacon had at
/// that place ([`KeyGuesses`]).
pub(super) struct KnownKeys<const N: usize> {
    names: &'static [&'static str; N],
    bytes: [Option<KeyBytes>; N],
    /// Indices in `names`.
    guesses: KeyGuesses<8>,
}

impl<const N: usize> KnownKeys<N> {
    fn new(names: &'static [&'static str; N]) -> Self {
        KnownKeys {
            names,
            bytes: names.map(KeyBytes::new),
            guesses: KeyGuesses::new(),
        }
    }

    /// The index of the key at the reader (`key_ahead` found its quote),
    /// the `position`th of its object, if it is one kept.
    #[inline(always)]
    fn take(&self, sc: &mut Scanner<'_, '_>, position: usize) -> Scan<Option<usize>> {
        let expected = self.guesses.at(position);
        if let Some(Some(bytes)) = self.bytes.get(usize::from(expected)) {
            if sc.key_is(bytes)? {
                return Ok(Some(usize::from(expected)));
            }
        }
        let key = sc.key_here()?;
        let found = self.names.iter().position(|k| *k == key);
        let byte = found.and_then(|i| u8::try_from(i).ok()).unwrap_or(NO_GUESS);
        self.guesses.learn(position, byte);
        Ok(found)
    }
}

pub(super) static APP: LazyLock<KnownKeys<3>> = LazyLock::new(|| KnownKeys::new(&APP_KEYS));
pub(super) static SESSION: LazyLock<KnownKeys<1>> = LazyLock::new(|| KnownKeys::new(&SESSION_KEYS));
pub(super) static VIEW: LazyLock<KnownKeys<4>> = LazyLock::new(|| KnownKeys::new(&VIEW_KEYS));
pub(super) static DEVICE: LazyLock<KnownKeys<3>> = LazyLock::new(|| KnownKeys::new(&DEVICE_KEYS));

/// An object at `depth` of which only `keys`' are kept (in their order; a
/// repeated key: the last wins), the rest checked, skipped and counted in
/// `ignored`. `None` when the value is not an object (still checked).
fn read_known<'de, const N: usize>(
    sc: &mut Scanner<'de, '_>,
    depth: usize,
    keys: &KnownKeys<N>,
    ignored: &mut usize,
) -> Scan<Option<[Option<Known<'de>>; N]>> {
    if sc.peek()? != b'{' {
        sc.skip(depth)?;
        return Ok(None);
    }
    sc.begin_object(depth)?;
    let mut out: [Option<Known<'de>>; N] = std::array::from_fn(|_| None);
    let mut first = true;
    let mut position = 0;
    while sc.key_ahead(first)? {
        first = false;
        let found = keys.take(sc, position)?;
        position += 1;
        match found {
            Some(i) if sc.peek()? == b'"' => {
                let text = sc.string()?;
                sc.limits.string::<ScanError>(text.len())?;
                out[i] = Some(Known::Str(text));
            }
            Some(i) => out[i] = Some(Known::Other(sc.value(depth + 1)?)),
            None => {
                sc.skip(depth + 1)?;
                *ignored += 1;
            }
        }
    }
    Ok(Some(out))
}

/// `events` (depth 2), its entries past `max_events` only counted.
fn read_events<'de>(
    sc: &mut Scanner<'de, '_>,
    strings: &mut TextBlockBuilder,
    max_events: usize,
) -> Scan<WireEvents<'de>> {
    if sc.peek()? != b'[' {
        sc.skip(2)?;
        return Ok(WireEvents::NotArray);
    }
    sc.begin_array(2)?;
    let mut entries: Vec<WireEntry<'de>> = Vec::with_capacity(16);
    // Every entry's slots, one run after another: one block for all of the
    // beacon's events, made to its exact size by `Event::in_block`'s caller.
    let mut slots = Vec::with_capacity(128);
    let mut others = Vec::new();
    let mut heap_bytes = 0;
    let mut count = 0;
    let tables = all_payload_slots();
    while sc.element(count == 0)? {
        count += 1;
        if count > max_events {
            // The beacon is refused (413) once the body is read; kept, an
            // entry of 3 bytes (`{}`) took some 700 on the way.
            sc.skip(3)?;
            continue;
        }
        let seq = entries.len();
        // Room is made before the entry: pushed after its reading, it was
        // built on the stack (it had to outlive `push`'s call to grow, which
        // may unwind) and copied over by 16-byte loads straddling the 8-byte
        // stores that made it, a failed store forward every entry.
        entries.reserve(1);
        let mut kept = Kept {
            slots: &mut slots,
            others: &mut others,
            heap: &mut heap_bytes,
            strings,
            tables,
        };
        // Read into its place: returned, a slotted entry came back through
        // memory, its fields written in narrow stores and read back in a
        // 16-byte load that could not be forwarded from them (`perf
        // annotate`: a sixth of the decoder's own time under load).
        let Some(place) = entries.spare_capacity_mut().first_mut() else {
            unreachable!("room for one more entry was made");
        };
        read_entry(sc, seq, &mut kept, place)?;
        // SAFETY: `read_entry` wrote the entry past the length, `seq`.
        unsafe { entries.set_len(seq + 1) };
    }
    Ok(WireEvents::Array {
        entries,
        count,
        slots,
        others,
        heap_bytes,
    })
}

/// Where the fast path keeps what it reads of the entries.
pub(super) struct Kept<'k> {
    pub(super) slots: &'k mut Vec<PackedSlot>,
    pub(super) others: &'k mut Vec<FieldValue>,
    /// What the slots refer to, in bytes (their strings are counted by the
    /// caller from `strings`, the values kept aside as they are kept).
    pub(super) heap: &'k mut usize,
    pub(super) strings: &'k mut TextBlockBuilder,
    /// Every type's table, by discriminant ([`super::payload_slots`]).
    pub(super) tables: &'static [SlotTable],
}

impl Kept<'_> {
    /// `value` kept aside, its bytes counted.
    fn other(&mut self, value: FieldValue) -> Packed {
        *self.heap += other_bytes(&value);
        // Bodies are limited far below 2^32 values.
        let index = u32::try_from(self.others.len()).unwrap_or(u32::MAX);
        self.others.push(value);
        Packed::Other(index)
    }
}

/// Entry `seq` of `events` (depth 3), into `out` (written when it is
/// read); its values are at depth 4.
fn read_entry<'de>(
    sc: &mut Scanner<'de, '_>,
    seq: usize,
    kept: &mut Kept<'_>,
    out: &mut MaybeUninit<WireEntry<'de>>,
) -> Scan<()> {
    if sc.peek()? != b'{' {
        sc.skip(3)?;
        out.write(WireEntry::NotObject);
        return Ok(());
    }
    let start = sc.position();
    sc.begin_object(3)?;
    let run_start = kept.slots.len();
    let others_start = kept.others.len();
    let heap_start = *kept.heap;
    let strings_start = kept.strings.pushed_bytes();
    let strings_mark = kept.strings.pushed_count();
    if read_slots_into(sc, seq, kept, out)? {
        // Its strings' bytes, all in the block: summed here, not per string.
        *kept.heap += kept.strings.pushed_bytes() - strings_start;
        return Ok(());
    }
    // What the fast path read of this entry goes, its strings too: left
    // in the block, they were held by every event and counted by none.
    kept.slots.truncate(run_start);
    kept.others.truncate(others_start);
    *kept.heap = heap_start;
    kept.strings.forget_since(strings_mark);
    // Read again, as key/value pairs, from its `{`.
    sc.rewind(start);
    sc.begin_object(3)?;
    let mut pairs = PairList::with_capacity(12);
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        let value = sc.value(4)?;
        pairs.push(key, value);
    }
    out.write(WireEntry::Object(pairs.finish()));
    Ok(())
}

/// The string `peek` showed, for a slot of a string type, put at `place`:
/// appended to the request's strings, the slot its index there.
#[inline(always)]
fn put_string(
    sc: &mut Scanner<'_, '_>,
    kept: &mut Kept<'_>,
    placed: &mut Placed,
    place: u8,
) -> Scan<()> {
    let text = sc.string()?;
    sc.limits.string::<ScanError>(text.len())?;
    // Each arm puts its own value: made in one place for both, the value
    // went through the stack, written there in two narrow stores and read
    // back in one 16-byte load that could not be forwarded from them (a
    // fifth of this function's time under load, `perf annotate`).
    match kept.strings.append_index(&text) {
        Some(index) => placed.put(place, Packed::Text(index)),
        // Past 4 GiB of strings: a string of its own.
        None => {
            let value = kept.other(Value::String(text.into_owned()).into());
            placed.put(place, value);
        }
    }
    Ok(())
}

/// Most places a type's slots can take ([`super::SlotTable::ids`]).
pub(super) const MAX_PLACES: usize = 32;

/// An entry's values as the fast path reads them, each at its place in
/// its type's [`super::SlotTable::ids`] (id order): taken out in that
/// order, they are the entry's slots sorted with no sort (a stable sort of
/// each entry's slots cost ~430 instructions). Only the filled places are
/// ever written or read: nothing to set up for those an entry leaves empty.
struct Placed {
    values: [MaybeUninit<Packed>; MAX_PLACES],
    /// The places holding a value (a `u32`: a place's bit is below
    /// `MAX_PLACES`, with no bounds check on `values`).
    filled: u32,
}

impl Placed {
    fn new() -> Self {
        Placed {
            values: [const { MaybeUninit::uninit() }; MAX_PLACES],
            filled: 0,
        }
    }

    #[inline(always)]
    fn has(&self, place: u8) -> bool {
        self.filled & (1 << place) != 0
    }

    /// `value` at `place`, over the value there if any. The place is
    /// taken modulo `MAX_PLACES` (every place is below it: `SlotTable::new`
    /// asserts it): no bounds check between the value and its store.
    #[inline(always)]
    fn put(&mut self, place: u8, value: Packed) {
        debug_assert!(usize::from(place) < MAX_PLACES, "place {place}");
        let place = usize::from(place) % MAX_PLACES;
        self.values[place].write(value);
        self.filled |= 1 << place;
    }

    /// The values onto `slots` with their ids, in place order.
    #[inline(always)]
    fn push_onto(&self, ids: &[FieldId; MAX_PLACES], slots: &mut Vec<PackedSlot>) {
        let count = self.filled.count_ones() as usize;
        slots.reserve(count);
        let len = slots.len();
        // Written into the room made, with no check of it a slot.
        let mut filled = self.filled;
        for out in &mut slots.spare_capacity_mut()[..count] {
            let place = filled.trailing_zeros() as usize % MAX_PLACES;
            filled &= filled - 1;
            // SAFETY: `place` was filled (its bit was set).
            let value = unsafe { self.values[place].assume_init() };
            out.write(PackedSlot {
                id: ids[place],
                value,
            });
        }
        // SAFETY: the first `count` slots past `len` were written above.
        unsafe { slots.set_len(len + count) };
    }
}

/// An entry's key past `type`, as the fast path takes it ([`entry_key`]).
enum EntryKey<'de> {
    Ts,
    /// The key of payload slot `i` (below 64, the slots `taken` tracks).
    Slot(usize, Cow<'de, str>),
    /// A key without a slot.
    Other(Cow<'de, str>),
    /// `type` again, `view`, or a slot past 64: the general reading.
    GiveUp,
}

/// The key at the reader (`key_ahead` found its quote), the `position`th
/// after `type`: first compared, as bytes, with the key the type's last
/// entry had there ([`SlotTable::guess`]); else read, looked up, and
/// learnt as the guess for the next entry.
#[inline(always)]
fn entry_key<'de>(
    sc: &mut Scanner<'de, '_>,
    slots: &SlotTable,
    position: usize,
) -> Scan<EntryKey<'de>> {
    match slots.guess(position) {
        KeyGuess::Ts => {
            if sc.key_is(&slots.ts_key)? {
                return Ok(EntryKey::Ts);
            }
        }
        KeyGuess::Slot(i) => {
            if let (Some(Some(expected)), Some(&(name, _, _))) =
                (slots.key_bytes.get(i), slots.slots.get(i))
            {
                if sc.key_is(expected)? {
                    return Ok(EntryKey::Slot(i, Cow::Borrowed(name)));
                }
            }
        }
        KeyGuess::None => {}
    }
    let key = sc.key_here()?;
    let found = match &*key {
        "type" | "view" => None,
        "ts" => Some(KeyGuess::Ts),
        _ => match slots.find(&key) {
            Some(i) if i < 64 => Some(KeyGuess::Slot(i)),
            Some(_) => None,
            None => Some(KeyGuess::None),
        },
    };
    slots.learn(position, found.unwrap_or(KeyGuess::None));
    Ok(match found {
        None => EntryKey::GiveUp,
        Some(KeyGuess::Ts) => EntryKey::Ts,
        Some(KeyGuess::Slot(i)) => EntryKey::Slot(i, key),
        Some(KeyGuess::None) => EntryKey::Other(key),
    })
}

/// Keys without a slot that the fast path checks for repeats one by one.
const MAX_OTHER_KEYS: usize = 32;

/// A key without a slot and its value, for the fast path: kept in `extra`
/// (a null dropped), or false to give the entry up to the general reading.
/// Keys without a slot are few in what clients send; a crafted entry of
/// thousands would make the check for repeats quadratic, and the general
/// reading finds repeats by sorting.
#[inline(always)]
fn keep_other_key<'k>(
    key: Cow<'k, str>,
    value: Value,
    others: &mut Vec<Cow<'k, str>>,
    extra: &mut Option<Map<String, Value>>,
) -> bool {
    if others.len() >= MAX_OTHER_KEYS || others.contains(&key) {
        return false;
    }
    if !value.is_null() {
        extra
            .get_or_insert_with(Map::new)
            .insert(key.clone().into_owned(), value);
    }
    others.push(key);
    true
}

/// The fast path of an entry, past its `{`: when `type` comes first (as
/// every client sends it), each later key goes straight to its slot, and
/// the entry is written to `out` (`true`).
/// `false` when the entry needs the general reading: `type` not first or not
/// a string, a key sent twice (the last value wins, whichever path it
/// takes), a `ts` that is not a number, or an own `view`. Nothing is
/// refused here, so the general reading gives every answer it gave. The
/// entry's packed slots are pushed onto `kept.slots`, the values kept
/// aside onto `kept.others` with their bytes added to `kept.heap` (the
/// caller takes all of it back on `false`; it counts the strings, all in
/// `kept.strings`). Each value goes to its place in id order ([`Placed`]),
/// not sorted.
fn read_slots_into(
    sc: &mut Scanner<'_, '_>,
    seq: usize,
    kept: &mut Kept<'_>,
    out: &mut MaybeUninit<WireEntry<'_>>,
) -> Scan<bool> {
    let start = kept.slots.len();
    if !sc.key_ahead(true)? {
        return Ok(false);
    }
    // `type`, which every client sends first, taken as bytes (any table
    // has its key).
    if !sc.key_is(&kept.tables[0].type_key)? && sc.key_here()? != "type" {
        return Ok(false);
    }
    if sc.peek()? != b'"' {
        return Ok(false);
    }
    let (event_type, original_type) = match known_type(sc, kept.tables)? {
        Some(t) => (t, None),
        None => {
            let type_name = sc.string()?;
            sc.limits.string::<ScanError>(type_name.len())?;
            match EventType::from_beacon(&type_name) {
                Some(t) => (t, None),
                None => (
                    EventType::Custom,
                    Some(type_name.chars().take(64).collect::<String>()),
                ),
            }
        }
    };
    let slots = &kept.tables[event_type as usize];
    let fixed = &slots.fixed;
    let mut placed = Placed::new();
    placed.put(fixed.dataset, Packed::Fixed(slots.dataset));
    placed.put(fixed.rum_type, Packed::Fixed(slots.type_name));
    // The payload keys read (by index in `slots.slots`): a repeat gives up.
    let mut taken: u64 = 0;
    let mut others: Vec<Cow<'_, str>> = Vec::new();
    // Made with its first key: most entries have none, and an empty map
    // still cost about 60 instructions to drop.
    let mut extra: Option<Map<String, Value>> = None;
    let mut ts = None;
    let mut position = 0;
    while sc.key_ahead(false)? {
        let key = entry_key(sc, slots, position)?;
        position += 1;
        match key {
            EntryKey::GiveUp => return Ok(false),
            EntryKey::Ts => {
                if ts.is_some() || !matches!(sc.peek()?, b'-' | b'0'..=b'9') {
                    return Ok(false);
                }
                let n = sc.long_number()?;
                ts = Some(n.as_f64().unwrap_or(0.0) as i64);
            }
            EntryKey::Slot(i, key) => {
                if taken & (1 << i) != 0 {
                    return Ok(false);
                }
                taken |= 1 << i;
                let SlotInfo {
                    id,
                    ty,
                    place,
                    any_number,
                } = slots.info[i];
                match sc.peek()? {
                    // An unknown type's own name goes over the
                    // `original_type` an entry sends: that string is read
                    // and checked, not kept (in the block, it would be
                    // held and counted by no slot).
                    b'"' if original_type.is_some() && id == slots.original_type => {
                        let text = sc.string()?;
                        sc.limits.string::<ScanError>(text.len())?;
                        continue;
                    }
                    b'"' if ty.takes_strings() => {
                        put_string(sc, kept, &mut placed, place)?;
                        continue;
                    }
                    // Most payload values are numbers (timings, sizes): read
                    // as one, never null, kept as the number it is.
                    b'-' | b'0'..=b'9' => {
                        let n = sc.number_inlined()?;
                        // A `double` takes any number (most timings): no
                        // check to find that out (`any_number`); a `long`
                        // and the error count are checked as numbers.
                        if any_number || slots.fits_number(id, ty, &n) {
                            placed.put(place, Packed::number(&n));
                        } else {
                            extra
                                .get_or_insert_with(Map::new)
                                .insert(key.into_owned(), Value::Number(n));
                        }
                        continue;
                    }
                    _ => {}
                }
                let value = sc.value(4)?;
                if value.is_null() {
                    continue;
                }
                if slots.fits(id, ty, &value) {
                    let value = match value {
                        Value::Number(n) => Packed::number(&n),
                        Value::String(text) => match kept.strings.append_index(&text) {
                            Some(index) => Packed::Text(index),
                            None => kept.other(Value::String(text).into()),
                        },
                        value => kept.other(value.into()),
                    };
                    placed.put(place, value);
                } else {
                    extra
                        .get_or_insert_with(Map::new)
                        .insert(key.into_owned(), value);
                }
            }
            EntryKey::Other(key) => {
                let value = sc.value(4)?;
                if !keep_other_key(key, value, &mut others, &mut extra) {
                    return Ok(false);
                }
            }
        }
    }
    // Never empty when made.
    if let Some(extra) = extra {
        let extra = kept.other(Value::Object(extra).into());
        placed.put(fixed.extra, extra);
    }
    let unknown_type = original_type.is_some();
    if let Some(original_type) = original_type {
        // Over an `original_type` the entry sent, as the general reading does.
        let original_type = match kept.strings.append_index(&original_type) {
            Some(index) => Packed::Text(index),
            None => kept.other(Value::String(original_type).into()),
        };
        placed.put(fixed.original_type, original_type);
    }
    // The entry's place in the beacon, unless it sent its own `seq`.
    if !placed.has(fixed.seq) {
        placed.put(fixed.seq, Packed::PosInt(seq as u64));
    }
    // The type's default, unless the event has its own.
    if let Some(place) = fixed.default.filter(|place| !placed.has(*place)) {
        if let Some((_, Some(default))) = Event::type_default(event_type) {
            let default = match default {
                FieldValue::Static(value) => Packed::Fixed(value),
                FieldValue::Owned(Value::Number(n)) => Packed::number(&n),
                other => kept.other(other),
            };
            placed.put(place, default);
        }
    }
    placed.push_onto(&slots.ids, kept.slots);
    // Nearly always empty, and then it owns nothing; its drop was an
    // out-of-line call (~18 instructions an entry).
    if others.capacity() == 0 {
        std::mem::forget(others);
    }
    out.write(WireEntry::Slotted(SlottedEntry {
        unknown_type,
        ts,
        slots: start..kept.slots.len(),
    }));
    Ok(true)
}

/// The entry's `type` (the reader at its opening quote) taken as the bytes
/// of the one beacon type whose name begins with its first letter, and
/// passed; `None` (the reader not moved) for any other value, or one sent
/// with an escape, which `read_slots_into` reads as a string. Scanning for
/// the end of the name and matching its text cost ~50 instructions an
/// entry. The letters are a shortcut, never the answer: the bytes decide,
/// so a type missing here (or a new one sharing a letter) is only read the
/// long way, and `types_taken_by_their_names_bytes_are_the_types_sent`
/// checks every name in `EventType::ALL` both ways.
#[inline(always)]
fn known_type(sc: &mut Scanner<'_, '_>, tables: &[SlotTable]) -> Scan<Option<EventType>> {
    let guess = match sc.byte_ahead(1) {
        Some(b'w') => EventType::WebVital,
        Some(b'r') => EventType::Resource,
        Some(b'p') => EventType::PageView,
        Some(b'h') => EventType::Http,
        Some(b'a') => EventType::Action,
        Some(b'e') => EventType::Error,
        Some(b'l') => EventType::LongTask,
        Some(b'c') => EventType::Custom,
        _ => return Ok(None),
    };
    match tables.get(guess as usize) {
        Some(table) if sc.string_is(&table.name_bytes)? => Ok(Some(guess)),
        _ => Ok(None),
    }
}

/// [`read_slots_into`] as a value, for tests.
#[cfg(test)]
fn read_slots(
    sc: &mut Scanner<'_, '_>,
    seq: usize,
    kept: &mut Kept<'_>,
) -> Scan<Option<SlottedEntry>> {
    let mut out = MaybeUninit::uninit();
    if !read_slots_into(sc, seq, kept, &mut out)? {
        return Ok(None);
    }
    // SAFETY: `read_slots_into` wrote the entry when it said so.
    match unsafe { out.assume_init() } {
        WireEntry::Slotted(slotted) => Ok(Some(slotted)),
        _ => unreachable!("the fast path writes slotted entries"),
    }
}

#[cfg(test)]
mod tests;
