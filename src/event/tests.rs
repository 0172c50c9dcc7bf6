use super::*;
use serde_json::json;

#[test]
fn insert_and_get_nested_paths() {
    let mut event = Event::new();
    event.insert("client.geo.country_iso_code", "CZ");
    event.insert("@timestamp", "2026-01-01T00:00:00.000Z");
    assert_eq!(event.get_str("client.geo.country_iso_code"), Some("CZ"));
    assert_eq!(event.timestamp_ms(), Some(1_767_225_600_000));
    assert_eq!(event.get("client.geo.city_name"), None);
    assert_eq!(
        event.into_value(),
        json!({"@timestamp": "2026-01-01T00:00:00.000Z", "client": {"geo": {"country_iso_code": "CZ"}}})
    );
}

#[test]
fn paths_no_document_has_are_kept_under_rum_extra() {
    let mut event = Event::from(json!({"url": "oops"}));
    event.insert("url.domain", "example.com");
    assert_eq!(event.get_str("url.domain"), Some("example.com"));
    assert_eq!(event.get_str("rum.extra.url"), Some("oops"));
}

#[test]
fn remove_returns_the_value() {
    let mut event = Event::from(
        json!({"client": {"ip": "1.2.3.4", "geo": {"city_name": "X", "postal_code": "1"}}}),
    );
    assert_eq!(event.remove("client.ip"), Some(json!("1.2.3.4")));
    assert_eq!(event.remove("client.ip"), None);
    assert_eq!(event.remove("nope.deeper"), None);
    assert_eq!(event.remove("client.geo.city_name"), Some(json!("X")));
    assert_eq!(
        event.to_value(),
        json!({"client": {"geo": {"postal_code": "1"}}})
    );
}

fn context() -> Counted<Context> {
    let mut c = Context::new();
    c.set(FieldId::of("client.ip"), "1.2.3.4");
    c.set(FieldId::of("user_agent.original"), "UA");
    c.set_label("z".into(), 1.into());
    Counted::new(c)
}

#[test]
fn own_fields_overlay_the_shared_context() {
    let context = context();
    let mut a = Event::with_context(context.clone());
    let b = Event::with_context(context.clone());
    a.insert("user_agent.name", "Chrome");
    a.insert("labels.z", 2);
    a.set_timestamp_ms(0);
    a.set_type(EventType::Error);
    assert_eq!(a.get_str("user_agent.original"), Some("UA"));
    assert_eq!(a.get_str("user_agent.name"), Some("Chrome"));
    assert_eq!(b.get("user_agent.name"), None);
    let mut out = Vec::new();
    a.write_json(&mut out);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        r#"{"@timestamp":"1970-01-01T00:00:00.000Z","client":{"ip":"1.2.3.4"},"event":{"dataset":"rum.error"},"labels":{"z":2},"rum":{"type":"error"},"user_agent":{"name":"Chrome","original":"UA"}}"#
    );
    assert_eq!(
        b.to_value(),
        json!({"client": {"ip": "1.2.3.4"}, "labels": {"z": 1}, "user_agent": {"original": "UA"}})
    );
}

#[test]
fn removing_a_shared_field_leaves_the_context_shared() {
    let context = context();
    let mut a = Event::with_context(context.clone());
    let b = Event::with_context(context.clone());
    assert_eq!(a.remove("client.ip"), Some(json!("1.2.3.4")));
    assert_eq!(a.remove("labels.z"), Some(json!(1)));
    assert_eq!(a.get("client.ip"), None);
    assert_eq!(a.to_value(), json!({"user_agent": {"original": "UA"}}));
    assert_eq!(b.get_str("client.ip"), Some("1.2.3.4"));
    // No copy of the context was made for `a`.
    assert!(Counted::ptr_eq(a.context(), b.context()));
    assert_eq!(Counted::strong_count(&context), 3);
}

#[test]
fn a_fan_out_clone_shares_until_written() {
    let mut a = Event::with_context(context());
    a.insert("rum.seq", 1);
    let mut b = a.clone();
    let (OwnRef::Own(a_own), OwnRef::Own(b_own)) = (&a.own, &b.own) else {
        panic!("an edited event holds an own part");
    };
    assert!(Arc::ptr_eq(a_own, b_own));
    b.insert("rum.seq", 2);
    assert_eq!(a.get("rum.seq"), Some(&json!(1)));
    assert_eq!(b.get("rum.seq"), Some(&json!(2)));
}

#[test]
fn hoisting_folds_own_fields_over_the_context() {
    let mut a = Event::with_context(context());
    a.insert("url.full", "https://x/");
    a.remove("client.ip");
    a.hoist_into_context();
    let folded = a.context();
    assert_eq!(
        folded.get_id(FieldId::of("url.full")),
        Some(&json!("https://x/"))
    );
    assert_eq!(folded.get_id(FieldId::of("client.ip")), None);
}

#[test]
fn iso_millis_matches_chrono() {
    // Edges (epoch, leap days, centuries, the four-digit years' ends, just
    // outside them) and a day-and-a-bit stride across 0000..=9999.
    let edges = [
        0,
        1,
        999,
        -1,
        1_763_700_001_500,
        951_782_400_000,     // 2000-02-29
        4_107_542_400_000,   // 2100-03-01
        -2_208_988_800_001,  // 1899-12-31T23:59:59.999
        -62_167_219_200_000, // 0000-01-01
        -62_167_219_200_001,
        253_402_300_799_999, // 9999-12-31T23:59:59.999
        253_402_300_800_000,
    ];
    let stride = (-62_167_219_200_000..253_402_300_799_999).step_by(90_061_001 * 37);
    for ms in edges.into_iter().chain(stride) {
        let mut out = Vec::new();
        write_iso_millis(ms, &mut out);
        let expected = chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}

#[test]
fn a_timestamp_on_the_day_received_or_any_other_is_written_in_full() {
    // The same day as `event.ingested` takes its date from there: its first
    // and last millisecond, the days either side, other years, before 1970.
    let received: i64 = 1_763_700_000_100; // 2025-11-21T04:40:00.100Z
    let day = 86_400_000;
    let start = received - received.rem_euclid(day);
    for received in [received, -1_000, 0] {
        let mut context = Context::new();
        context.set_received_ms(received);
        let context = Counted::new(context);
        for ms in [
            received,
            start,
            start + day - 1,
            start - 1,
            start + day,
            received - 400 * day,
            -1,
            0,
            253_402_300_800_000,
        ] {
            assert_times_written_alone(&context, received, ms);
        }
    }
}

#[test]
fn a_timestamp_on_the_day_of_an_ingested_time_past_the_calendar_is_written_alone() {
    // `event.ingested` set (by a transform's `event.ingested`) past what
    // chrono can write is written as the epoch, 26 bytes like any date of
    // four digits: a `@timestamp` of the same day is not that date with
    // its own time put in, but what it is alone.
    for received in [8_640_000_000_000_000, -8_640_000_000_000_000] {
        let mut context = Context::new();
        context.set_received_ms(received);
        let context = Counted::new(context);
        assert_times_written_alone(&context, received, received + 7_200_391);
    }
}

/// An event of `context` at `ms` is written with its `@timestamp` and the
/// context's `event.ingested` each as `write_iso_millis` writes it alone.
fn assert_times_written_alone(context: &Counted<Context>, received: i64, ms: i64) {
    let mut event = Event::with_context(context.clone());
    event.set_timestamp_ms(ms);
    let mut out = Vec::new();
    event.write_json(&mut out);
    let (mut at, mut ingested) = (Vec::new(), Vec::new());
    write_iso_millis(ms, &mut at);
    write_iso_millis(received, &mut ingested);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        format!(
            r#"{{"@timestamp":"{}","event":{{"ingested":"{}"}}}}"#,
            String::from_utf8(at).unwrap(),
            String::from_utf8(ingested).unwrap()
        ),
        "received {received}, @timestamp {ms}"
    );
}

#[test]
fn from_parts_keeps_the_last_value_pushed_for_a_slot() {
    let id = FieldId::of("url.path");
    let other = FieldId::of("view.id");
    let event = Event::from_parts(
        Counted::new(Context::new()),
        None,
        None,
        EventType::ALL[0],
        vec![
            (id, Some(FieldValue::from(Value::from("/first")))),
            (other, Some(FieldValue::from(Value::from("v1")))),
            (id, None),
            (id, Some(FieldValue::from(Value::from("/last")))),
        ],
    );
    assert_eq!(event.get_str("url.path"), Some("/last"));
    assert_eq!(event.get_str("view.id"), Some("v1"));
    // Removed, then set again: the removal does not win.
    let removed = Event::from_parts(
        Counted::new(Context::new()),
        None,
        None,
        EventType::ALL[0],
        vec![(id, Some(FieldValue::from(Value::from("/x")))), (id, None)],
    );
    assert_eq!(removed.get_own_id(id), Some(None));
}

#[test]
fn sorting_a_run_of_slots_keeps_the_last_value_of_each_id_and_what_is_before_it() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..4_000 {
        let slot = |rng: &mut fastrand::Rng, ids: u16, n: usize| {
            let value = rng.bool().then(|| FieldValue::from(Value::from(n as u64)));
            (FieldId(rng.u16(0..ids)), value)
        };
        // Few ids (many repeats) or many; an event's dozen slots and runs
        // far longer.
        let ids = if rng.bool() { 16 } else { 2_000 };
        let before: Vec<OwnSlot> = (0..rng.usize(0..5))
            .map(|n| slot(&mut rng, ids, n))
            .collect();
        let run: Vec<OwnSlot> = (0..rng.usize(0..80))
            .map(|n| slot(&mut rng, ids, 100 + n))
            .collect();
        // The reference: each id's last value, in id order.
        let mut last = std::collections::BTreeMap::new();
        for (id, value) in &run {
            last.insert(*id, value.clone());
        }
        let expected: Vec<OwnSlot> = before.iter().cloned().chain(last).collect();
        let mut slots = before.clone();
        slots.extend(run);
        sort_slots(&mut slots, before.len());
        assert_eq!(slots, expected);
    }
}

/// Two events' runs in one block, as `rum_beacon`'s decoder makes them.
fn two_events_in_a_block() -> (Counted<SlotBlock>, Event, Event) {
    let path = FieldId::of("url.path");
    let seq = FieldId::of("rum.seq");
    let mut slots: Vec<OwnSlot> = Vec::new();
    for (n, text) in [(0u64, "/a"), (1, "/b")] {
        let start = slots.len();
        slots.push((seq, Some(FieldValue::from(n))));
        slots.push((path, Some(FieldValue::from(text))));
        slots.extend(Event::type_slots(EventType::WebVital));
        sort_slots(&mut slots, start);
    }
    let first_end = slots.len() / 2;
    let mut credit = SlotBlock::new(slots);
    let len = credit.len();
    let a = Event::in_block(
        context(),
        Some(1_000),
        Some(900),
        credit.hand_out(),
        0..first_end,
    );
    let b = Event::in_block(
        context(),
        Some(2_000),
        None,
        credit.hand_out(),
        first_end..len,
    );
    (credit.hand_out(), a, b)
}

#[test]
fn events_in_one_block_read_as_events_built_from_their_parts() {
    let (_, a, b) = two_events_in_a_block();
    let mut built_bytes = 0;
    for (event, n, text, ts, client_ts) in [
        (&a, 0u64, "/a", 1_000, Some(900)),
        (&b, 1, "/b", 2_000, None),
    ] {
        let built = Event::from_parts(
            context(),
            Some(ts),
            client_ts,
            EventType::WebVital,
            vec![
                (FieldId::of("url.path"), Some(FieldValue::from(text))),
                (FieldId::of("rum.seq"), Some(FieldValue::from(n))),
            ],
        );
        assert_eq!(event.to_value(), built.to_value());
        built_bytes += built.own_byte_size();
        assert_eq!(
            event.own_ids().collect::<Vec<_>>(),
            built.own_ids().collect::<Vec<_>>()
        );
        assert_eq!(event.get_str("rum.type"), Some("web_vital"));
        assert_eq!(event.timestamp_ms(), Some(ts));
        assert_eq!(event.client_ts_ms(), client_ts);
    }
    // The block is counted once for both: what the two built events count.
    assert!(a.shares_own_block(&b));
    assert_eq!(a.block_byte_size(), b.block_byte_size());
    assert_eq!(
        a.own_byte_size() + b.own_byte_size() + a.block_byte_size().unwrap(),
        built_bytes
    );
    // Events without a block share none, even both empty.
    let empty = Event::with_context(context());
    assert!(!empty.shares_own_block(&Event::with_context(context())));
    assert_eq!(empty.block_byte_size(), None);
}

#[test]
fn editing_an_event_in_a_block_copies_its_run_out_and_leaves_the_others() {
    let (block, mut a, b) = two_events_in_a_block();
    let b_before = b.to_value();
    // A fan-out copy shares the block.
    let copy = a.clone();
    assert_eq!(Counted::strong_count(&block), 4);
    a.insert("url.path", "/edited");
    a.remove("rum.seq");
    a.set_label(Arc::from("site"), FieldValue::from("shop"));
    assert_eq!(a.get_str("url.path"), Some("/edited"));
    assert_eq!(a.get("rum.seq"), None);
    assert_eq!(a.label("site"), Some(&json!("shop")));
    assert_eq!(a.timestamp_ms(), Some(1_000));
    // `a` let go of the block; the copy and `b` read what they read.
    assert_eq!(Counted::strong_count(&block), 3);
    assert_eq!(copy.get_str("url.path"), Some("/a"));
    assert_eq!(copy.get("rum.seq"), Some(&json!(0)));
    assert_eq!(b.to_value(), b_before);
    assert!(!a.shares_own_block(&b));
    assert!(copy.shares_own_block(&b));
    // A label of its own copies no slot out of the block.
    let mut labelled = b.clone();
    labelled.set_label(Arc::from("site"), FieldValue::from("blog"));
    assert!(labelled.shares_own_block(&b));
    assert_eq!(labelled.label("site"), Some(&json!("blog")));
    assert_eq!(b.label("site"), None);
}

#[test]
fn hoisting_an_event_in_a_block_folds_its_run_into_the_context() {
    let (_, mut a, b) = two_events_in_a_block();
    let before = a.to_value();
    a.hoist_into_context();
    assert_eq!(a.to_value(), before);
    assert_eq!(a.own_ids().count(), 0);
    assert_eq!(
        a.context().get_id(FieldId::of("url.path")),
        Some(&json!("/a"))
    );
    assert_eq!(b.get_str("url.path"), Some("/b"));
}

#[test]
fn own_fields_laid_over_a_context_match_setting_them_one_by_one() {
    let mut rng = fastrand::Rng::with_seed(3);
    for _ in 0..2_000 {
        let ids = |rng: &mut fastrand::Rng| {
            let mut ids: Vec<u16> = (0..rng.usize(0..12)).map(|_| rng.u16(0..24)).collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let base: Vec<(FieldId, FieldValue)> = ids(&mut rng)
            .into_iter()
            .map(|i| {
                (
                    FieldId(i),
                    FieldValue::from(Value::from(format!("base {i}"))),
                )
            })
            .collect();
        let own: Vec<(FieldId, Option<FieldValue>)> = ids(&mut rng)
            .into_iter()
            .map(|i| {
                let value = rng
                    .bool()
                    .then(|| FieldValue::from(Value::from(u64::from(i))));
                (FieldId(i), value)
            })
            .collect();
        let mut expected = Context::new();
        for (id, value) in &base {
            expected.set(*id, value.clone());
        }
        for (id, value) in &own {
            match value {
                Some(value) => expected.set(*id, value.clone()),
                None => {
                    expected.remove_id(*id);
                }
            }
        }
        let got = laid_over(base, own);
        assert_eq!(got, expected.fields);
    }
}

#[test]
fn a_contexts_byte_size_follows_every_edit() {
    let mut context = Context::new();
    let fresh = |c: &Context| c.count_bytes();
    assert_eq!(context.byte_size(), fresh(&context));
    context.set(FieldId::of("url.full"), "https://shop.example/a");
    assert_eq!(context.byte_size(), fresh(&context));
    context.set(
        FieldId::of("url.full"),
        "https://shop.example/a-much-longer-path",
    );
    assert_eq!(context.byte_size(), fresh(&context));
    context.set_label(Arc::from("team"), FieldValue::from("web"));
    assert_eq!(context.byte_size(), fresh(&context));
    context.remove_id(FieldId::of("url.full"));
    assert_eq!(context.byte_size(), fresh(&context));
    // Through the event API, as transforms edit a beacon's context.
    let mut edited = context.clone();
    Event::edit_in_place(&mut edited, |event| {
        event.insert("service.name", "shop");
        event.set_label(Arc::from("site"), FieldValue::from("blog"));
    });
    assert_eq!(edited.byte_size(), fresh(&edited));
    assert!(edited.byte_size() != context.byte_size());
}

#[test]
fn a_slot_kept_as_text_reads_edits_and_writes_as_its_value() {
    let text = r#"{"a":{"b":"x"},"n":0.1,"s":"q\"uote"}"#;
    let extra = FieldId::of(schema::RUM_EXTRA);
    let mut as_text = Event::from(json!({"rum": {"type": "custom"}}));
    as_text.set(
        extra,
        FieldValue::Raw(Arc::new(RawJson::new(text.to_owned()))),
    );
    let mut as_value = Event::from(json!({"rum": {"type": "custom"}}));
    as_value.set(extra, serde_json::from_str::<Value>(text).unwrap());
    let document = |event: &Event| {
        let mut out = Vec::new();
        event.write_json(&mut out);
        String::from_utf8(out).unwrap()
    };
    // Written as it is: the same document as the value's.
    assert!(document(&as_text).contains(&format!(r#""extra":{text}"#)));
    assert_eq!(document(&as_text), document(&as_value));
    assert_eq!(as_text.get_str("rum.extra.a.b"), Some("x"));
    assert_eq!(as_text.get("rum.extra.n"), Some(&json!(0.1)));
    // Edits go through the value, and the document follows them.
    for event in [&mut as_text, &mut as_value] {
        event.insert("rum.extra.a.c", "y");
        assert_eq!(event.remove("rum.extra.n"), Some(json!(0.1)));
    }
    assert_eq!(document(&as_text), document(&as_value));
    assert!(document(&as_text).contains(r#""extra":{"a":{"b":"x","c":"y"},"s":"q\"uote"}"#));
}

#[test]
fn a_shared_object_is_written_from_its_text_and_reads_as_its_value() {
    let geo = json!({"city_name": "Z\u{fc}rich \"Alt\"", "location": {"lat": 47.37, "lon": 8.55}, "a": [1, -2.5, null]});
    let shared = FieldValue::shared(geo.clone());
    let FieldValue::Raw(raw) = &shared else {
        panic!("an object is kept with its text");
    };
    assert_eq!(raw.text(), serde_json::to_string(&geo).unwrap());
    assert_eq!(*shared, geo);
    // Scalars stay shared values.
    assert!(matches!(
        FieldValue::shared(json!("x")),
        FieldValue::Shared(_)
    ));
    // Events holding it write the same document as events holding the value.
    let id = FieldId::of(schema::CLIENT_GEO);
    let mut with_text = Event::from(json!({"rum": {"type": "custom"}}));
    with_text.set(id, shared.clone());
    let mut with_value = Event::from(json!({"rum": {"type": "custom"}}));
    with_value.set(id, geo.clone());
    let (mut a, mut b) = (Vec::new(), Vec::new());
    with_text.write_json(&mut a);
    with_value.write_json(&mut b);
    assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
    assert_eq!(
        with_text.get("client.geo.location.lat"),
        Some(&json!(47.37))
    );
}

/// A beacon's context with a few fields and labels, as transforms see it.
fn beacon_context() -> Context {
    let mut context = Context::new();
    context.set_received_ms(1_763_700_000_100);
    context.set_client_address("81.2.69.142".parse().unwrap());
    context.set(FieldId::of("url.full"), "https://shop.example.com/a?b=c");
    context.set(FieldId::of("service.name"), "shop");
    context.set(FieldId::of("client.ip"), "81.2.69.0");
    context.set_label(Arc::from("env"), FieldValue::from("prod"));
    context.set_label(Arc::from("team"), FieldValue::from("web"));
    context
}

#[test]
fn editing_a_context_in_place_gives_what_editing_an_event_over_it_gives() {
    // Every kind of edit the event API makes: a slot set, a path inside an
    // object slot, a removal, a label set and a label removed, and a field
    // held as a member (`event.ingested`).
    let edit = |event: &mut Event| {
        event.insert("url.domain", "shop.example.com");
        event.insert("event.ingested", 1_767_225_600_000i64);
        event.insert("client.geo.country_iso_code", "GB");
        event.remove_id(FieldId::of("client.ip"));
        event.set_label(Arc::from("site"), FieldValue::from("blog"));
        event.remove("labels.env");
        event
            .get_str("client.geo.country_iso_code")
            .map(str::to_owned)
    };
    let original = Counted::new(beacon_context());
    // The reference: the same edits as one event's own, over the context.
    let mut over = Event::with_context(original.clone());
    let seen_over = edit(&mut over);
    let mut in_place = (*original).clone();
    let seen_in_place = Event::edit_in_place(&mut in_place, edit);
    assert_eq!(seen_in_place, seen_over);
    assert_eq!(seen_in_place.as_deref(), Some("GB"));
    assert_eq!(in_place.client_address(), original.client_address());
    assert_eq!(in_place.received_ms(), Some(1_767_225_600_000));
    let edited = Event::with_context(Counted::new(in_place));
    assert_eq!(edited.to_value(), over.to_value());
    assert_eq!(edited.get("labels.env"), None);
    assert_eq!(edited.get_str("labels.team"), Some("web"));
}

#[test]
fn a_context_its_events_alone_hold_is_edited_where_it_is() {
    let shared = Counted::new(beacon_context());
    let mut run: Batch = (0..4)
        .map(|_| Event::with_context(shared.clone()))
        .collect();
    let before = Counted::as_ptr(&shared);
    drop(shared);
    let domain = FieldId::of("url.domain");
    Event::edit_shared_context(&mut run, |context| context.set(domain, "shop.example.com"));
    for event in &run {
        assert_eq!(Counted::as_ptr(event.context()), before, "no copy was made");
        assert_eq!(event.get_str("url.domain"), Some("shop.example.com"));
    }
}

#[test]
fn a_context_held_elsewhere_is_edited_on_a_copy() {
    let shared = Counted::new(beacon_context());
    let mut run: Batch = (0..3)
        .map(|_| Event::with_context(shared.clone()))
        .collect();
    // Another downstream's copy of the batch holds the same context.
    let other = run.clone();
    let domain = FieldId::of("url.domain");
    Event::edit_shared_context(&mut run, |context| context.set(domain, "shop.example.com"));
    let edited = run[0].context().clone();
    assert!(!Counted::ptr_eq(&edited, &shared));
    for event in &run {
        assert!(Counted::ptr_eq(event.context(), &edited));
        assert_eq!(event.get_str("url.domain"), Some("shop.example.com"));
    }
    for event in &other {
        assert!(Counted::ptr_eq(event.context(), &shared));
        assert_eq!(
            event.get_str("url.domain"),
            None,
            "the other copy kept its context"
        );
    }
}

#[test]
fn runs_end_where_the_context_changes() {
    let a = Counted::new(beacon_context());
    let b = Counted::new(Context::new());
    let mut batch: Batch = [&a, &a, &b, &a]
        .into_iter()
        .map(|c| Event::with_context(c.clone()))
        .collect();
    let lengths: Vec<usize> = context_runs(&mut batch).map(|run| run.len()).collect();
    assert_eq!(lengths, [2, 1, 1]);
}

/// What a document must be, built apart from the writer: the context's
/// fields with the event's over them (`None` removes), nested at the dots,
/// written by `serde_json` (its maps are sorted, as documents are).
fn reference_document(context: &[(&str, Value)], own: &[(&str, Option<Value>)]) -> String {
    let mut flat: std::collections::BTreeMap<&str, Value> = context.iter().cloned().collect();
    for (path, value) in own {
        match value {
            Some(value) => flat.insert(path, value.clone()),
            None => flat.remove(path),
        };
    }
    let mut root = serde_json::Map::new();
    for (path, value) in flat {
        let mut segments: Vec<&str> = path.split('.').collect();
        let leaf = segments.pop().unwrap();
        let mut object = &mut root;
        for segment in segments {
            object = object
                .entry(segment)
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .unwrap();
        }
        object.insert(leaf.to_owned(), value);
    }
    serde_json::to_string(&Value::Object(root)).unwrap()
}

/// Slot paths that hold a value of their own: no virtual member, no
/// label, none that another path nests under.
fn leaf_slot_paths() -> Vec<&'static str> {
    let paths: Vec<&'static str> = fields::REGISTRY
        .slots
        .iter()
        .filter(|s| s.virtual_field.is_none() && !s.path.starts_with("labels"))
        .map(|s| s.path)
        .collect();
    paths
        .iter()
        .copied()
        .filter(|p| {
            !paths
                .iter()
                .any(|q| q.len() > p.len() && q.starts_with(p) && q.as_bytes()[p.len()] == b'.')
        })
        .collect()
}

#[test]
fn documents_of_random_contexts_and_own_fields_match_a_nested_sorted_map() {
    let paths = leaf_slot_paths();
    assert!(paths.len() > 50, "the registry's paths: {}", paths.len());
    let mut rng = fastrand::Rng::with_seed(23);
    let value = |rng: &mut fastrand::Rng| match rng.u8(..5) {
        0 => json!(rng.u32(..100_000)),
        1 => json!(rng.f64() * 1000.0),
        2 => json!(rng.bool()),
        3 => json!({"k": "a\"b", "n": 1}),
        _ => json!(["x", "y\n", "z"][rng.usize(..3)]),
    };
    for round in 0..2_000 {
        let mut context_fields: Vec<(&str, Value)> = Vec::new();
        for &path in &paths {
            // Dense runs and sparse ones: some rounds fill most of a context.
            if rng.u8(..100) < [5, 30, 80][round % 3] {
                context_fields.push((path, value(&mut rng)));
            }
        }
        let mut context = Context::new();
        for (path, value) in &context_fields {
            context.set(FieldId::of(path), value.clone());
        }
        let context = Counted::new(context);
        // Two events of the context: the second writes from its rendering.
        for _ in 0..2 {
            let mut event = Event::with_context(context.clone());
            let mut own: Vec<(&str, Option<Value>)> = Vec::new();
            for _ in 0..rng.usize(..8) {
                let path = paths[rng.usize(..paths.len())];
                if own.iter().any(|(p, _)| *p == path) {
                    continue;
                }
                if rng.u8(..4) == 0 && context_fields.iter().any(|(p, _)| *p == path) {
                    event.remove(path);
                    own.push((path, None));
                } else {
                    let v = value(&mut rng);
                    event.set(FieldId::of(path), v.clone());
                    own.push((path, Some(v)));
                }
            }
            let mut out = Vec::new();
            event.write_json(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                reference_document(&context_fields, &own),
                "round {round}"
            );
        }
    }
}

#[test]
fn a_block_counted_once_keeps_its_count_in_the_event() {
    // The count sits in the tag's padding: buffers hold many events (a
    // block is one thin pointer, its start, end and count).
    assert_eq!(std::mem::size_of::<OwnRef>(), 24);
    let (block, mut a, mut b) = two_events_in_a_block();
    let whole = slots_bytes(&block);
    assert_eq!(a.block_byte_size(), Some(whole));
    assert_eq!(a.count_block_bytes(), Some(whole));
    assert!(matches!(a.own, OwnRef::Block { bytes, .. } if bytes as usize == whole));
    // Not counted yet: read from the slots, the same figure.
    assert!(matches!(
        b.own,
        OwnRef::Block {
            bytes: UNCOUNTED_BLOCK,
            ..
        }
    ));
    assert_eq!(b.block_byte_size(), Some(whole));
    // A copy carries the count; an edit leaves the block and its count.
    let copy = a.clone();
    assert_eq!(copy.block_byte_size(), Some(whole));
    a.insert("url.path", "/edited");
    assert_eq!(a.count_block_bytes(), None);
    assert_eq!(b.count_block_bytes(), Some(whole));
}

/// An event's own labels (an Elastic APM event's `tags`, up to the
/// source's string limit each) count what they hold, as a context's do:
/// they were 48 bytes a label whatever their size, so buffers full of
/// such events held many times `buffer.max_bytes`.
#[test]
fn an_events_own_labels_count_what_they_hold() {
    let bare = Event::with_context(Counted::new(Context::new()));
    let mut labelled = bare.clone();
    labelled.set_label(Arc::from("big"), FieldValue::from("x".repeat(100_000)));
    labelled.set_label(Arc::from("n".repeat(1_000)), FieldValue::from(1));
    let added = labelled.own_byte_size() - bare.own_byte_size();
    assert!(added >= 101_000, "{added}");
    // As the same labels count on a context.
    let mut context = Context::new();
    let empty = context.byte_size();
    context.set_label(Arc::from("big"), FieldValue::from("x".repeat(100_000)));
    context.set_label(Arc::from("n".repeat(1_000)), FieldValue::from(1));
    assert_eq!(added, context.byte_size() - empty);
}

/// Documents of events with their own slots anywhere among the context's
/// (in its objects, deeper, shallower, before and after them, over them,
/// hiding them), members (`@timestamp` on the day received or any other,
/// around midnights, years, the calendar's ends and past them,
/// `event.ingested`, `rum.client_ts`, labels of the event and of the
/// context) against a document built apart from the writer.
#[test]
fn documents_with_members_and_labels_match_a_nested_sorted_map() {
    let paths = leaf_slot_paths();
    let mut rng = fastrand::Rng::with_seed(99);
    // Floats that read back as written: `serde_json` and the writer print
    // them alike, the comparison is of text.
    let value = |rng: &mut fastrand::Rng| match rng.u8(..5) {
        0 => json!(rng.u32(..100_000)),
        1 => json!([1.5, -0.25, 1e300][rng.usize(..3)]),
        2 => json!(rng.bool()),
        3 => json!({"k": "a\"b", "n": 1}),
        _ => json!(["x", "y\n", "z", "", "0123456789abcdefé"][rng.usize(..5)]),
    };
    let times = [
        0,
        -1,
        1,
        86_399_999,
        -86_400_001,
        1_767_225_599_999,   // 2025-12-31T23:59:59.999
        951_782_400_000,     // 2000-02-29
        -62_167_219_200_000, // 0000-01-01
        -62_167_219_200_001,
        253_402_300_799_999, // 9999-12-31T23:59:59.999
        253_402_300_800_000,
        -8_640_000_000_000_000, // past chrono's years
        8_640_000_000_000_000,
        i64::MIN / 4,
        i64::MAX / 4,
    ];
    let time = |rng: &mut fastrand::Rng, near: Option<i64>| match (rng.u8(..4), near) {
        (0 | 1, Some(n)) => n.saturating_add(rng.i64(-2..=2) * 3_600_000 + rng.i64(-999..=999)),
        _ => times[rng.usize(..times.len())].saturating_add(rng.i64(-2..=2)),
    };
    let iso = |ms: i64| {
        json!(chrono::DateTime::from_timestamp_millis(ms).map_or_else(
            || "1970-01-01T00:00:00.000Z".to_owned(),
            |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        ))
    };
    let path_of = |id: FieldId| fields::REGISTRY.slots[id.index()].path;
    let types = crate::schema::EventType::ALL;
    for round in 0..3_000 {
        let mut context_fields: Vec<(&str, Value)> = Vec::new();
        for &path in &paths {
            if rng.u8(..100) < [0, 5, 30, 80][round % 4] {
                context_fields.push((path, value(&mut rng)));
            }
        }
        let mut context = Context::new();
        for (path, value) in &context_fields {
            context.set(FieldId::of(path), value.clone());
        }
        // The context's part of the reference: its fields, its receive time
        // and labels.
        let mut context_ref = context_fields.clone();
        let received = rng.bool().then(|| time(&mut rng, None));
        if let Some(received) = received {
            context.set_received_ms(received);
            context_ref.push(("event.ingested", iso(received)));
        }
        for (name, path) in [("a", "labels.a"), ("m", "labels.m"), ("z", "labels.z")] {
            if rng.u8(..4) == 0 {
                let v = value(&mut rng);
                context_ref.push((path, v.clone()));
                context.set_label(name.into(), FieldValue::Owned(v));
            }
        }
        let context = Counted::new(context);
        // Three events of the context: the later ones write from its
        // rendering.
        for _ in 0..3 {
            let mut own: Vec<(FieldId, Option<FieldValue>)> = Vec::new();
            for _ in 0..rng.usize(..10) {
                let path = if rng.u8(..3) == 0 && !context_fields.is_empty() {
                    context_fields[rng.usize(..context_fields.len())].0
                } else {
                    paths[rng.usize(..paths.len())]
                };
                let value = (rng.u8(..4) != 0).then(|| FieldValue::Owned(value(&mut rng)));
                own.push((FieldId::of(path), value));
            }
            let ts = (rng.u8(..4) != 0).then(|| time(&mut rng, received));
            let client_ts = rng.bool().then(|| rng.i64(-5..5) * 1_000_000_000);
            let ty = types[rng.usize(..types.len())];
            // As `from_parts` lays them: the type's default, the fields, the
            // type's slots, a later value of an id winning.
            let mut own_ref: Vec<(&str, Option<Value>)> = Event::type_default(ty)
                .into_iter()
                .chain(own.iter().cloned())
                .chain(Event::type_slots(ty))
                .map(|(id, v)| (path_of(id), v.map(|v| (*v).clone())))
                .collect();
            own_ref.extend(ts.map(|ts| ("@timestamp", Some(iso(ts)))));
            own_ref.extend(client_ts.map(|c| ("rum.client_ts", Some(json!(c)))));
            let mut event = Event::from_parts(context.clone(), ts, client_ts, ty, own);
            for (name, path) in [("a", "labels.a"), ("b", "labels.b"), ("zz", "labels.zz")] {
                if rng.u8(..4) == 0 {
                    let v = value(&mut rng);
                    own_ref.push((path, Some(v.clone())));
                    event.set_label(name.into(), FieldValue::Owned(v));
                }
            }
            let mut out = Vec::new();
            event.write_json(&mut out);
            assert_eq!(
                String::from_utf8(out).unwrap(),
                reference_document(&context_ref, &own_ref),
                "round {round}: @timestamp {ts:?}, received {received:?}"
            );
        }
    }
}

/// A number reads the same whether a packed slot holds it (`Number`) or a
/// `Value` does: equal by value, and never equal to its text.
#[test]
fn numbers_read_equal_whichever_way_they_are_held() {
    let three = json!(3);
    let half = json!(1.5);
    let minus = json!(-2);
    assert_eq!(FieldRead::Number(Num::PosInt(3)), FieldRead::Value(&three));
    assert_eq!(FieldRead::Value(&half), FieldRead::Number(Num::Float(1.5)));
    assert_eq!(FieldRead::Number(Num::NegInt(-2)), FieldRead::Value(&minus));
    assert_eq!(
        FieldRead::Number(Num::PosInt(3)),
        FieldRead::Number(Num::PosInt(3))
    );
    assert_ne!(FieldRead::Number(Num::PosInt(3)), FieldRead::Value(&half));
    assert_ne!(FieldRead::Number(Num::PosInt(3)), FieldRead::Str("3"));
    assert_ne!(
        FieldRead::Number(Num::PosInt(3)),
        FieldRead::Value(&Value::Null)
    );
    assert_eq!(FieldRead::Str("a"), FieldRead::Str("a"));
    for n in [
        json!(0),
        json!(u64::MAX),
        json!(i64::MIN),
        json!(-0.0),
        json!(1e300),
    ] {
        let Value::Number(number) = &n else {
            unreachable!()
        };
        let num = Num::of(number);
        assert_eq!(num.to_number().as_ref(), Some(number), "{n}");
        assert_eq!(FieldRead::Number(num), FieldRead::Value(&n), "{n}");
    }
}
