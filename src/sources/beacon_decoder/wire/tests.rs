//! The fast path's slots, laid out by place (`read_slots`), against the
//! same entries read as before it, pushed as they came and then sorted
//! (`read_slots_by_sort`, the fast path as it was at e68d05d): the same
//! ids in the same order with the same values, on generated entries. The
//! fast path packs them (`PackedSlots`); they are compared as the slots a
//! reader gets of them.

use super::*;
use crate::event::{
    common_value, sort_slots, value_bytes, FieldId, OwnSlot, PackedSlots, PACKED_SLOT_BYTES,
};
use crate::schema::FieldType;
use crate::sources::beacon_decoder::{fits_slot, payload_slots, Limits, CONTEXT_IDS};

/// The string `peek` showed, for a slot of a string type, as the fast path
/// made it before its values were built at their places (`put_string`): a
/// common keyword as its shared static value, anything else appended to the
/// request's strings.
fn string_slot(
    sc: &mut Scanner<'_, '_>,
    ty: FieldType,
    strings: &mut TextBlockBuilder,
) -> Scan<FieldValue> {
    let text = sc.string()?;
    sc.limits.string::<ScanError>(text.len())?;
    if ty == FieldType::Keyword {
        if let Some(value) = common_value(&text) {
            return Ok(FieldValue::Static(value));
        }
    }
    Ok(strings.push(&text))
}

/// The fast path of an entry, past its `{`: when `type` comes first (as
/// every client sends it), each later key goes straight to its slot.
/// `None` when the entry needs the general reading: `type` not first or not
/// a string, a key sent twice (the last value wins, whichever path it
/// takes), a `ts` that is not a number, or an own `view`. Nothing is
/// refused here, so the general reading gives every answer it gave. The
/// entry's slots are pushed onto `fields`, and what their values other than
/// strings hold on the heap added to `heap` (the caller takes both back on
/// `None`; it counts the strings, all in `strings`).
fn read_slots_by_sort(
    sc: &mut Scanner<'_, '_>,
    seq: usize,
    fields: &mut Vec<OwnSlot>,
    heap: &mut usize,
    strings: &mut TextBlockBuilder,
) -> Scan<Option<SlottedEntry>> {
    let start = fields.len();
    match sc.key(true)? {
        Some(key) if key == "type" && sc.peek()? == b'"' => {}
        _ => return Ok(None),
    }
    let type_name = sc.string()?;
    sc.limits.string::<ScanError>(type_name.len())?;
    let (event_type, original_type) = match EventType::from_beacon(&type_name) {
        Some(t) => (t, None),
        None => (
            EventType::Custom,
            Some(type_name.chars().take(64).collect::<String>()),
        ),
    };
    let slots = payload_slots(event_type);
    // First: their ids (`event.dataset`, `rum.type`, `rum.seq`) come before
    // the payload's, so the sort below leaves them where they are.
    let [dataset, rum_type] = Event::type_slots(event_type);
    fields.push(dataset);
    fields.push(rum_type);
    fields.push((
        CONTEXT_IDS.seq,
        Some(FieldValue::Owned(Value::from(seq as u64))),
    ));
    let mut taken: u64 = 0;
    let mut others: Vec<Cow<'_, str>> = Vec::new();
    // Made with its first key: most entries have none, and an empty map
    // still cost about 60 instructions to drop.
    let mut extra: Option<Map<String, Value>> = None;
    let mut ts = None;
    while let Some(key) = sc.key(false)? {
        match &*key {
            "type" | "view" => return Ok(None),
            "ts" => {
                if ts.is_some() || !matches!(sc.peek()?, b'-' | b'0'..=b'9') {
                    return Ok(None);
                }
                let n = sc.number_inlined()?;
                ts = Some(n.as_f64().unwrap_or(0.0) as i64);
                continue;
            }
            _ => {}
        }
        match slots.find(&key) {
            Some(i) if i < 64 => {
                if taken & (1 << i) != 0 {
                    return Ok(None);
                }
                taken |= 1 << i;
                let (_, id, ty) = slots.slots[i];
                match sc.peek()? {
                    b'"' if ty.takes_strings() => {
                        fields.push((id, Some(string_slot(sc, ty, strings)?)));
                        continue;
                    }
                    // Most payload values are numbers (timings, sizes): read
                    // as one, never null, no heap bytes.
                    b'-' | b'0'..=b'9' => {
                        let value = Value::Number(sc.number_inlined()?);
                        // A `double` takes any number (most timings): no
                        // call to find that out, for all but the error
                        // count `fits_slot` checks further.
                        let any_number = ty == FieldType::Double && id != CONTEXT_IDS.error_count;
                        if any_number || fits_slot(id, ty, &value) {
                            fields.push((id, Some(FieldValue::Owned(value))));
                        } else {
                            extra
                                .get_or_insert_with(Map::new)
                                .insert(key.into_owned(), value);
                        }
                        continue;
                    }
                    _ => {}
                }
                let value = sc.value(4)?;
                if value.is_null() {
                    continue;
                }
                if fits_slot(id, ty, &value) {
                    *heap += value_bytes(&value);
                    fields.push((id, Some(FieldValue::Owned(value))));
                } else {
                    extra
                        .get_or_insert_with(Map::new)
                        .insert(key.into_owned(), value);
                }
            }
            Some(_) => return Ok(None),
            None => {
                let value = sc.value(4)?;
                if !keep_other_key(key, value, &mut others, &mut extra) {
                    return Ok(None);
                }
            }
        }
    }
    // Never empty when made.
    if let Some(extra) = extra {
        let extra = Value::Object(extra);
        *heap += value_bytes(&extra);
        fields.push((CONTEXT_IDS.extra, Some(extra.into())));
    }
    let unknown_type = original_type.is_some();
    if let Some(original_type) = original_type {
        let original_type = Value::String(original_type);
        *heap += value_bytes(&original_type);
        fields.push((CONTEXT_IDS.original_type, Some(original_type.into())));
    }
    // Added when the event has none of its own (not pushed first for a
    // later value to replace: the sort's dedup pass cost ~800 instructions
    // a beacon).
    if let Some(default) = Event::type_default(event_type) {
        if !fields[start..].iter().any(|(id, _)| *id == default.0) {
            fields.push(default);
        }
    }
    sort_slots(fields, start);
    Ok(Some(SlottedEntry {
        unknown_type,
        ts,
        slots: start..fields.len(),
    }))
}

/// A JSON value of some type for a payload key: strings (common keywords
/// too), numbers of every kind, null, booleans, arrays, objects.
fn value(rng: &mut fastrand::Rng) -> String {
    match rng.u8(0..14) {
        0 => "null".into(),
        1 => "true".into(),
        2 => "\"good\"".into(),
        3 => "\"LCP\"".into(),
        4 => format!("\"text {}\"", rng.u32(..)),
        5 => "\"\"".into(),
        6 => format!("{}", rng.i64(-5..5)),
        7 => format!("{}", rng.u64(..)),
        8 => format!("{}.{}", rng.i32(-1000..1000), rng.u8(..)),
        9 => "-0.0".into(),
        10 => format!("[1, \"a\", {}]", rng.u8(..)),
        11 => format!("{{\"k\": {}, \"n\": null}}", rng.u8(..)),
        12 => "1e400".into(),
        _ => format!("{}", rng.u32(..)),
    }
}

/// An entry: its `type` first (mostly; an entry the fast path gives up on
/// must be given up by both), then payload keys of its type and of others,
/// unknown keys, `seq`, `ts`, in random order, now and then one twice.
fn entry(rng: &mut fastrand::Rng) -> String {
    const TYPES: &[&str] = &[
        "page_view",
        "web_vital",
        "resource",
        "error",
        "action",
        "long_task",
        "http",
        "custom",
        "csp_violation",
        "report",
        "teleport",
        "",
    ];
    let type_name = TYPES[rng.usize(..TYPES.len())];
    let own: Vec<&str> = EventType::parse(type_name)
        .map(|t| t.payload_fields().iter().map(|p| p.key).collect())
        .unwrap_or_default();
    let any: Vec<&str> = EventType::ALL
        .iter()
        .flat_map(|t| t.payload_fields().iter().map(|p| p.key))
        .chain(["seq", "original_type", "zz_unknown", "x", "count", "ts"])
        .collect();
    let mut keys: Vec<&str> = Vec::new();
    for _ in 0..rng.usize(0..14) {
        keys.push(match rng.u8(0..4) {
            0 | 1 if !own.is_empty() => own[rng.usize(..own.len())],
            _ => any[rng.usize(..any.len())],
        });
    }
    if rng.u8(0..4) != 0 {
        // Mostly each key once: the fast path keeps those.
        let mut seen = std::collections::HashSet::new();
        keys.retain(|k| seen.insert(*k));
    }
    rng.shuffle(&mut keys);
    let mut parts = Vec::new();
    if rng.u8(0..20) != 0 {
        parts.push(format!("\"type\": \"{type_name}\""));
    }
    for key in keys {
        let value = if key == "ts" && rng.bool() {
            format!("{}", rng.i64(..))
        } else {
            value(rng)
        };
        parts.push(format!("\"{key}\": {value}"));
    }
    format!("{{{}}}", parts.join(", "))
}

/// `None` for an entry the body refuses (a number out of range): both
/// must refuse it. With the slots, the bytes the reading counted and the
/// bytes its block counts again (the fast path's only: the two must agree).
type Read = Option<(Option<(bool, Option<i64>, Vec<OwnSlot>)>, usize, usize)>;

/// An entry through one of the two, on a run of slots already holding an
/// earlier entry's (runs follow one another in one list).
fn read(text: &str, by_sort: bool) -> Read {
    let limits = Limits::new(1000, 10);
    let mut sc = Scanner::new(text, &limits);
    let mut strings = TextBlockBuilder::default();
    sc.begin_object(3).unwrap();
    if by_sort {
        let mut fields: Vec<OwnSlot> = vec![(CONTEXT_IDS.seq, None)];
        let mut heap = 0;
        let read = read_slots_by_sort(&mut sc, 5, &mut fields, &mut heap, &mut strings).ok()?;
        drop(strings);
        let read = read.map(|entry| {
            assert_eq!(entry.slots, 1..fields.len(), "{text}");
            (entry.unknown_type, entry.ts, fields.split_off(1))
        });
        return Some((read, heap, heap));
    }
    let earlier = PackedSlot {
        id: CONTEXT_IDS.seq,
        value: Packed::PosInt(0),
    };
    let mut slots = vec![earlier];
    let mut others = Vec::new();
    let mut heap = 0;
    let strings_start = strings.pushed_bytes();
    let read = {
        let mut kept = Kept {
            slots: &mut slots,
            others: &mut others,
            heap: &mut heap,
            strings: &mut strings,
            tables: all_payload_slots(),
        };
        read_slots(&mut sc, 5, &mut kept).ok()?
    };
    heap += strings.pushed_bytes() - strings_start;
    let block = strings.block();
    drop(strings);
    let Some(entry) = read else {
        return Some((None, 0, 0));
    };
    assert_eq!(entry.slots, 1..slots.len(), "{text}");
    let counted = (slots.len() - 1) * PACKED_SLOT_BYTES + heap;
    let packed = PackedSlots::new(slots.split_off(1), Some(block), others);
    let recounted = packed.byte_size();
    let slots = packed.run_slots(0, packed.len() as u32, 0);
    Some((
        Some((entry.unknown_type, entry.ts, slots)),
        counted,
        recounted,
    ))
}

#[test]
fn slots_put_in_place_are_those_the_sort_gave() {
    let mut rng = fastrand::Rng::with_seed(7);
    let mut slotted = 0;
    for _ in 0..20_000 {
        let text = entry(&mut rng);
        let (placed, sorted) = (read(&text, false), read(&text, true));
        assert_eq!(placed.is_some(), sorted.is_some(), "{text}");
        let (Some((placed, counted, recounted)), Some((sorted, _, _))) = (placed, sorted) else {
            continue;
        };
        slotted += usize::from(placed.is_some());
        match (placed, sorted) {
            (None, None) => {}
            (Some((unknown, ts, slots)), Some((sorted_unknown, sorted_ts, sorted_slots))) => {
                assert_eq!((unknown, ts), (sorted_unknown, sorted_ts), "{text}");
                let ids: Vec<FieldId> = slots.iter().map(|(id, _)| *id).collect();
                let sorted_ids: Vec<FieldId> = sorted_slots.iter().map(|(id, _)| *id).collect();
                assert_eq!(ids, sorted_ids, "{text}");
                assert_eq!(slots, sorted_slots, "{text}");
                // The same JSON (a number kept as the same kind of number).
                let json = |slots: &[OwnSlot]| {
                    slots
                        .iter()
                        .map(|(_, v)| v.as_deref().map(Value::to_string))
                        .collect::<Vec<_>>()
                };
                assert_eq!(json(&slots), json(&sorted_slots), "{text}");
                assert_eq!(counted, recounted, "{text}");
            }
            (placed, sorted) => panic!(
                "{text}: placed {:?}, sorted {:?}",
                placed.is_some(),
                sorted.is_some()
            ),
        }
    }
    // Most entries take the fast path (not a test that gives up on all).
    assert!(slotted > 10_000, "{slotted}");
}
