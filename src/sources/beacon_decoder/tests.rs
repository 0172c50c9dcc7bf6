use super::*;
use crate::sources::kept_check;
use serde_json::json;

const NOW: i64 = 1_700_000_000_000;

fn facts() -> RequestFacts<'static> {
    RequestFacts {
        received_at_ms: NOW,
        client_ip: "203.0.113.9".parse().unwrap(),
        user_agent: Some("Mozilla/5.0 test"),
        client_hints: vec![],
    }
}

fn limits() -> BeaconLimits {
    BeaconLimits {
        max_events: 10,
        max_string_bytes: 100,
        max_depth: 5,
        max_event_age_ms: 3_600_000,
        max_context_bytes: 64 * 1024,
        client_ip: crate::privacy::ClientIpMode::Full,
    }
}

fn decode_json(v: Value) -> Result<Decoded, DecodeError> {
    decode(v.to_string().as_bytes(), &facts(), &limits())
}

#[test]
fn fans_out_with_context_and_skew_correction() {
    // The browser clock runs 10 s ahead: sent_at is NOW + 10 s.
    let decoded = decode_json(json!({
        "v": 1,
        "app": {"name": "shop", "version": "1.2", "env": "prod"},
        "session": {"id": "s1"},
        "view": {"id": "v1", "url": "https://shop.example.com:8443/p/1?q=2#top", "referrer": "https://google.com/"},
        "sent_at": NOW + 10_000,
        "events": [
            {"type": "web_vital", "ts": NOW + 9_000, "name": "LCP", "value": 1234.5, "rating": "good"},
            {"type": "error", "ts": NOW + 8_000, "message": "boom", "name": "TypeError", "stack": "at x", "line": "oops"},
            {"type": "teleport", "ts": NOW + 10_000, "foo": 1}
        ]
    }))
    .unwrap();
    assert_eq!(decoded.events.len(), 3);
    assert_eq!(decoded.unknown_types, 1);
    let [vital, error, custom] = &decoded.events[..] else {
        panic!()
    };
    assert_eq!(vital.timestamp_ms(), Some(NOW - 1_000));
    assert_eq!(error.timestamp_ms(), Some(NOW - 2_000));
    assert_eq!(vital.get("rum.vital.value"), Some(&json!(1234.5)));
    assert_eq!(vital.get_str("event.dataset"), Some("rum.web_vital"));
    assert_eq!(vital.get_str("service.name"), Some("shop"));
    assert_eq!(vital.get_str("url.domain"), Some("shop.example.com"));
    assert_eq!(vital.get("url.port"), Some(&json!(8443)));
    assert_eq!(vital.get_str("url.query"), Some("q=2"));
    assert_eq!(
        vital.get_str("http.request.referrer"),
        Some("https://google.com/")
    );
    assert_eq!(vital.get_str("client.ip"), Some("203.0.113.9"));
    assert_eq!(error.get_str("error.type"), Some("TypeError"));
    // Wrong-typed values are kept aside, not dropped.
    assert_eq!(error.get("rum.extra.line"), Some(&json!("oops")));
    assert_eq!(error.get("rum.seq"), Some(&json!(1)));
    assert_eq!(custom.get_str("rum.type"), Some("custom"));
    assert_eq!(custom.get_str("rum.custom.original_type"), Some("teleport"));
    assert_eq!(custom.get("rum.extra.foo"), Some(&json!(1)));
}

#[test]
fn sent_at_and_ts_at_the_ends_of_i64_are_clamped_not_overflowed() {
    for sent_at in [
        "-9223372036854775809",
        "-9223372036854775808",
        "-1e300",
        "9223372036854775807",
        "1e300",
        "-0",
    ] {
        for ts in [
            "-9223372036854775809",
            "9223372036854775807",
            "-1e300",
            "1e300",
            "0",
        ] {
            let body = format!(
                r#"{{"v":1,"sent_at":{sent_at},"events":[{{"type":"action","ts":{ts}}}]}}"#
            );
            let decoded = decode(body.as_bytes(), &facts(), &limits())
                .unwrap_or_else(|e| panic!("sent_at {sent_at}, ts {ts}: {e:?}"));
            let at = decoded.events[0].timestamp_ms().unwrap();
            assert!(
                (NOW - 3_600_000..=NOW).contains(&at),
                "sent_at {sent_at}, ts {ts}: @timestamp {at}"
            );
        }
    }
}

#[test]
fn the_clients_seq_replaces_the_position_in_the_beacon() {
    let decoded = decode_json(json!({
        "v": 1,
        "events": [{"type": "action", "seq": 41}, {"type": "web_vital", "seq": 42}, {"type": "error"}, {"type": "http", "seq": "x"}]
    }))
    .unwrap();
    let seqs: Vec<_> = decoded
        .events
        .iter()
        .map(|e| e.get("rum.seq").cloned())
        .collect();
    assert_eq!(
        seqs,
        [
            Some(json!(41)),
            Some(json!(42)),
            Some(json!(2)),
            Some(json!(3))
        ]
    );
    assert_eq!(decoded.events[3].get("rum.extra.seq"), Some(&json!("x")));
    assert!(decoded.events[0].get("rum.extra").is_none());
}

#[test]
fn times_are_clamped_to_the_receive_window() {
    let decoded = decode_json(json!({
        "v": 1, "sent_at": NOW,
        "events": [{"type": "action", "ts": NOW + 999_999_999}, {"type": "action", "ts": 0}, {"type": "action"}]
    }))
    .unwrap();
    let times: Vec<i64> = decoded
        .events
        .iter()
        .map(|e| e.timestamp_ms().unwrap())
        .collect();
    assert_eq!(times, [NOW, NOW - 3_600_000, NOW]);
    // Counted (rum_beacon_clamped_event_times_total): a client sending `ts`
    // in seconds, or a clock far off, was stamped at the window's ends
    // with nothing to show it. Times inside the window and missing ones
    // are not clamped.
    assert_eq!(decoded.clamped_times, 2);
    let inside = decode_json(json!({
        "v": 1, "sent_at": NOW,
        "events": [{"type": "action", "ts": NOW - 5}, {"type": "action", "ts": NOW - 3_600_000}]
    }))
    .unwrap();
    assert_eq!(inside.clamped_times, 0);
    // Both paths: `type` not first takes the general reading.
    let general = decode_json(json!({
        "v": 1, "sent_at": NOW,
        "events": [{"ts": 1_700, "type": "action"}]
    }))
    .unwrap();
    assert_eq!(general.clamped_times, 1);
}

#[test]
fn refuses_bad_beacons_whole() {
    let cases = [
        (json!([1, 2]), "invalid_beacon"),
        (json!({"events": []}), "invalid_beacon"),
        (json!({"v": 2, "events": []}), "unsupported_version"),
        (json!({"v": 1, "events": {}}), "invalid_beacon"),
        (json!({"v": 1, "events": [1]}), "invalid_beacon"),
        (json!({"v": 1, "events": [{"ts": 1}]}), "invalid_beacon"),
        (
            json!({"v": 1, "events": [{"type": "action", "ts": "yesterday"}]}),
            "invalid_beacon",
        ),
        (
            json!({"v": 1, "app": {"name": 5}, "events": []}),
            "invalid_beacon",
        ),
        (
            json!({"v": 1, "events": [{"type": "a", "x": "y".repeat(101)}]}),
            "string_too_long",
        ),
        (
            json!({"v": 1, "events": [{"type": "a", "x": [[[[[1]]]]]}]}),
            "too_deep",
        ),
        (
            json!({"v": 1, "events": vec![json!({"type": "action"}); 11]}),
            "too_many_events",
        ),
        // The context objects: read without a DOM, refused the same way.
        (json!({"v": 1, "app": null, "events": []}), "invalid_beacon"),
        (
            json!({"v": 1, "session": "s1", "events": []}),
            "invalid_beacon",
        ),
        (json!({"v": 1, "view": [1], "events": []}), "invalid_beacon"),
        (
            json!({"v": 1, "view": {"url": 5}, "events": []}),
            "invalid_beacon",
        ),
        (
            json!({"v": 1, "view": {"title": true}, "events": []}),
            "invalid_beacon",
        ),
        (json!({"v": 1, "device": 4, "events": []}), "invalid_beacon"),
        (
            json!({"v": 1, "device": {"cores": "8"}, "events": []}),
            "invalid_beacon",
        ),
        // Keys the decoder skips still count against the limits.
        (
            json!({"v": 1, "app": {"other": "y".repeat(101)}, "events": []}),
            "string_too_long",
        ),
        (
            json!({"v": 1, "view": {"other": [[[[1]]]]}, "events": []}),
            "too_deep",
        ),
        (
            json!({"v": 1, "session": ["y".repeat(101)], "events": []}),
            "string_too_long",
        ),
    ];
    for (body, error_type) in cases {
        let err = decode_json(body.clone()).unwrap_err();
        assert_eq!(err.error_type, error_type, "{body}");
    }
    for raw in [&b"{\"v\":1,"[..], b"\xff\xfe", b"", b"   "] {
        let err = decode(raw, &facts(), &limits()).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }
    let invalid_utf8 = b"{\"v\":1,\"events\":[{\"type\":\"a\",\"x\":\"\xff\"}]}";
    assert_eq!(
        decode(invalid_utf8, &facts(), &limits())
            .unwrap_err()
            .error_type,
        "invalid_json"
    );
}

#[test]
fn a_repeated_context_key_keeps_its_last_value() {
    let body = br#"{"v":1,"app":{"name":"a","name":"b","extra":{"x":1}},"view":{"url":"https://x.test/1","url":null},"events":[{"type":"action"}]}"#;
    let decoded = decode(body, &facts(), &limits()).unwrap();
    let event = &decoded.events[0];
    assert_eq!(event.get_str("service.name"), Some("b"));
    assert_eq!(event.get_str("url.full"), None);
    assert_eq!(decoded.page_url, None);
}

#[test]
fn header_client_hints_fill_in_when_the_beacon_has_none() {
    let mut f = facts();
    f.client_hints = vec![("sec_ch_ua_platform", "\"Windows\"")];
    let decoded = decode(br#"{"v":1,"events":[{"type":"action"}]}"#, &f, &limits()).unwrap();
    assert_eq!(
        decoded.events[0].get_str("rum.ua_hints.sec_ch_ua_platform"),
        Some("\"Windows\"")
    );
}

#[test]
fn an_event_of_many_keys_keeps_each_once_the_last_value_winning() {
    // Past `PairList`'s scan: repeated keys are found by sorting.
    let mut body = String::from(r#"{"v":1,"events":[{"type":"custom","ts":"#);
    body.push_str(&NOW.to_string());
    for i in 0..500 {
        body.push_str(&format!(r#","k{i}":{i}"#));
    }
    body.push_str(r#","k7":"last","type":"action","k499":"end"}]}"#);
    let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
    let event = &decoded.events[0];
    assert_eq!(event.get_str("rum.type"), Some("action"));
    assert_eq!(event.get_str("rum.extra.k7"), Some("last"));
    assert_eq!(event.get_str("rum.extra.k499"), Some("end"));
    assert_eq!(event.get("rum.extra.k8"), Some(&json!(8)));
    let extra = event.get("rum.extra").and_then(Value::as_object).unwrap();
    assert_eq!(extra.len(), 500);
}

/// An error document says how many occurrences it stands for: the count
/// sent, or 1 — on the fast reading and on the general one (a repeated
/// key, an unknown type renamed to an error afterwards), so a sum of
/// `rum.error.count` counts occurrences (the Kibana dashboard's).
#[test]
fn every_error_has_a_count_the_one_sent_or_one() {
    let decoded = decode_json(json!({
        "v": 1,
        "events": [
            {"type": "error", "ts": NOW, "message": "once"},
            {"type": "error", "ts": NOW, "message": "folded", "count": 7},
            {"type": "error", "ts": NOW, "message": "null count", "count": null},
            {"type": "error", "ts": NOW, "message": "text count", "count": "3"},
            {"type": "web_vital", "ts": NOW, "name": "LCP", "value": 1.0}
        ]
    }))
    .unwrap();
    let counts: Vec<_> = decoded
        .events
        .iter()
        .map(|e| e.get("rum.error.count").cloned())
        .collect();
    assert_eq!(
        counts,
        [
            Some(json!(1)),
            Some(json!(7)),
            Some(json!(1)),
            Some(json!(1)),
            None
        ]
    );
    // The general reading: a key sent twice, the last one winning.
    let body = format!(
        r#"{{"v":1,"events":[{{"type":"error","ts":{NOW},"count":2,"message":"a","count":5}},{{"type":"error","ts":{NOW},"message":"b","message":"c"}}]}}"#
    );
    let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
    assert_eq!(decoded.events[0].get("rum.error.count"), Some(&json!(5)));
    assert_eq!(decoded.events[1].get("rum.error.count"), Some(&json!(1)));
    assert_eq!(decoded.events[1].get_str("error.message"), Some("c"));
}

/// A count below 1 stands for no occurrence at all, which no client sends:
/// the Kibana dashboard sums `rum.error.count`, and one crafted beacon
/// with a count of -10^18 took its JavaScript errors figure below zero.
/// Such a count is kept in `rum.extra` (as a count that is no integer is)
/// and the error counts as 1 — on both readings.
#[test]
fn an_error_count_below_one_is_kept_aside_and_the_error_counts_once() {
    let fast = format!(
        r#"{{"v":1,"events":[{{"type":"error","ts":{NOW},"message":"a","count":-1000000000000000000}},{{"type":"error","ts":{NOW},"message":"b","count":0}},{{"type":"error","ts":{NOW},"message":"c","count":{{"n":-5}}}}]}}"#
    );
    // `type` not first: the general reading.
    let general = format!(
        r#"{{"v":1,"events":[{{"ts":{NOW},"count":-1000000000000000000,"type":"error","message":"a"}},{{"ts":{NOW},"count":0,"type":"error","message":"b"}},{{"ts":{NOW},"count":{{"n":-5}},"type":"error","message":"c"}}]}}"#
    );
    for body in [fast, general] {
        let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
        let counts: Vec<_> = decoded
            .events
            .iter()
            .map(|e| {
                (
                    e.get("rum.error.count").cloned(),
                    e.get("rum.extra.count").cloned(),
                )
            })
            .collect();
        assert_eq!(
            counts,
            [
                (Some(json!(1)), Some(json!(-1_000_000_000_000_000_000_i64))),
                (Some(json!(1)), Some(json!(0))),
                (Some(json!(1)), Some(json!({"n": -5}))),
            ],
            "{body}"
        );
    }
}

/// A beacon's documents (or its refusal) as text, to compare two readings.
fn outcome(body: &str) -> String {
    match decode(body.as_bytes(), &facts(), &limits()) {
        Ok(decoded) => {
            let mut out = Vec::new();
            for event in &decoded.events {
                event.write_json(&mut out);
                out.push(b'\n');
            }
            format!(
                "{} unknown {}",
                String::from_utf8(out).unwrap(),
                decoded.unknown_types
            )
        }
        Err(e) => format!("{} {:?} {}", e.error_type, e.kind, e.message),
    }
}

#[test]
fn entries_read_straight_into_slots_match_the_general_reading() {
    // Each entry twice: `type` first takes the fast path (`wire::read_slots`),
    // `type` last the general one; every document and refusal must agree.
    let rest_of_entries = [
        r#""ts": 1699999999000, "name": "LCP", "value": 1.5, "rating": "good""#,
        r#""name": "LCP", "value": 1.5, "value": "x""#,
        r#""name": "LCP", "value": "x", "value": 2"#,
        r#""name": "LCP", "value": 2, "value": null"#,
        r#""name": null, "value": 3, "rating": 7, "extra_key": {"a": [1, 2]}"#,
        r#""odd": 1, "odd": null, "name": "CLS", "value": 0.1"#,
        r#""odd": null, "odd": 2, "name": "CLS", "value": 0.1"#,
        r#""ts": "soon", "name": "FCP", "value": 1"#,
        r#""ts": null, "name": "FCP", "value": 1"#,
        r#""ts": 1699999999000, "ts": 1699999998000, "name": "FCP", "value": 1"#,
        r#""ts": -1e3, "name": "FCP", "value": 1"#,
        r#""seq": 42, "name": "TTFB", "value": 80"#,
        r#""view": {"id": "other", "url": "https://x.example/a?b=1"}, "name": "CLS", "value": 0.2"#,
        r#""name": "INP", "value": 96, "type": "error""#,
        r#""\u0074ype": "x", "name": "INP", "value": 96"#,
        r#""message": "boom", "stack": "at a\nat b", "line": "oops""#,
        // Numbers of every kind into slots of every type: a float where an
        // integer goes, -0, past u64, an exponent, a number for a keyword.
        r#""line": 12.5, "column": -0, "transfer_size": 18446744073709551616, "duration": 1e2, "value": -7, "name": 3"#,
        // Keyword slots: common values (kept shared on the fast path), near
        // misses, common values spelled with escapes, a repeat after a null,
        // and values that are not strings.
        r#""name": "LCP", "value": 1, "rating": "needs-improvement", "navigation_type": "back-forward-cache""#,
        r#""name": "lcp", "value": 1, "rating": "GOOD", "id": "v4-1", "navigation_type": "reload ""#,
        r#""name": "\u004cCP", "value": 1, "rating": "go\u006fd""#,
        r#""name": "LCP", "rating": null, "rating": "poor""#,
        r#""name": "LCP", "rating": ["good"], "navigation_type": {"kind": "navigate"}"#,
        r#""message": "boom", "name": "TypeError", "kind": "unhandledrejection", "source": """#,
        "",
    ];
    let types = [
        r#""web_vital""#,
        r#""error""#,
        r#""teleport""#,
        "5",
        "null",
        r#""p\u00e1ge""#,
    ];
    for rest in rest_of_entries {
        for ty in types {
            let sep = if rest.is_empty() { "" } else { ", " };
            let fast = format!(r#"{{"type": {ty}{sep}{rest}}}"#);
            let general = format!(r#"{{{rest}{sep}"type": {ty}}}"#);
            let body = |entry: &str| {
                format!(
                    r#"{{"v": 1, "sent_at": {NOW}, "view": {{"url": "https://shop.example/p"}}, "events": [{entry}, {entry}]}}"#
                )
            };
            let (a, b) = (outcome(&body(&fast)), outcome(&body(&general)));
            // A repeated `type` (also spelled with an escape): the last one
            // wins, as if the first had not been sent.
            if rest.contains(r#""type""#) || rest.contains(r#""\u0074ype""#) {
                let last_type_only = format!("{{{rest}}}");
                assert_eq!(a, outcome(&body(&last_type_only)), "\n{fast}");
                continue;
            }
            assert_eq!(a, b, "\n{fast}\n{general}");
        }
    }
}

#[test]
fn a_wide_entry_leaves_the_fast_path_and_repeats_past_its_check_still_resolve() {
    // 40 keys without a slot (past the fast path's one-by-one check), one of
    // them sent twice: the last value wins, as in the general reading.
    let mut keys: Vec<String> = (0..40).map(|i| format!(r#""k{i}": {i}"#)).collect();
    keys.push(r#""k3": "last""#.to_owned());
    let keys = keys.join(", ");
    let fast = format!(r#"{{"type": "web_vital", {keys}}}"#);
    let general = format!(r#"{{{keys}, "type": "web_vital"}}"#);
    let body = |entry: &str| format!(r#"{{"v": 1, "events": [{entry}]}}"#);
    assert_eq!(outcome(&body(&fast)), outcome(&body(&general)));
    let decoded = decode(body(&fast).as_bytes(), &facts(), &limits()).unwrap();
    let event = &decoded.events[0];
    assert_eq!(event.get("rum.extra.k3"), Some(&json!("last")));
    assert_eq!(event.get("rum.extra.k39"), Some(&json!(39)));
}

#[test]
fn slot_keys_are_found_as_a_string_compare_finds_them() {
    let mut rng = fastrand::Rng::with_seed(23);
    for ty in EventType::ALL {
        let table = payload_slots(ty);
        let by_compare = |key: &str| table.slots.iter().position(|(k, _, _)| *k == key);
        let mut keys: Vec<String> = Vec::new();
        for (key, _, _) in &table.slots {
            keys.push(key.to_string());
            // Same length and head, another tail; one byte short or long;
            // a NUL where the zero padding is.
            let mut tail = key.to_string().into_bytes();
            let last = tail.len() - 1;
            tail[last] ^= 1;
            keys.push(String::from_utf8(tail).unwrap());
            keys.push(key[..key.len() - 1].to_string());
            keys.push(format!("{key}s"));
            keys.push(format!("{key}\0"));
        }
        for _ in 0..2_000 {
            let len = rng.usize(0..20);
            keys.push(
                (0..len)
                    .map(|_| {
                        rng.choice(b"aeilnrst_\0".iter())
                            .map_or('a', |b| *b as char)
                    })
                    .collect(),
            );
        }
        for key in &keys {
            assert_eq!(table.find(key), by_compare(key), "{ty:?} {key:?}");
        }
    }
}

/// The block's byte count the decoder sums as it reads is the one a buffer
/// would work out from the slots: for every beacon fixture, and for entries
/// with extra keys, an unknown type, wrong-typed values, escapes and a
/// fallback to the general reading (an own `view`).
#[test]
fn the_bytes_summed_while_reading_are_those_counted_from_the_slots() {
    let mut bodies: Vec<Vec<u8>> = std::fs::read_dir("testdata/beacons")
        .expect("testdata/beacons")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .map(|path| std::fs::read(path).unwrap())
        .collect();
    bodies.push(
        json!({"v": 1, "events": [
            {"type": "web_vital", "name": "LCP", "value": "slow", "rating": "ok\n\"fine\"", "x": [1, {"y": "z"}]},
            {"type": "my_kind", "ts": NOW, "anything": {"deep": "text"}, "n": 3},
            {"type": "resource", "name": "https://cdn.example.com/\u{e9}t\u{e9}.js", "duration": 1.5, "initiator_type": "script"},
            {"type": "error", "message": "boom", "view": {"url": "https://other.example/p"}},
            {"type": "http", "method": "GET", "status": 200, "url": "https://api.example/x"}
        ]})
        .to_string()
        .into_bytes(),
    );
    // Contexts of every shape the decoder sets: device and connection,
    // `ua_hints`, escapes, nulls, a URL with a port and none, a repeated
    // key, a view without a URL.
    for context in [
        json!({"app": {"name": "a\"b", "version": null, "env": "\u{e9}\t"}, "session": {"id": "s"},
               "view": {"url": "https://x.example:8443/a.js?q=1#f", "id": "v", "title": null, "referrer": "r"},
               "device": {"memory": 8, "cores": 4, "connection": {"effective_type": "4g", "rtt": 50, "downlink": 1.5, "save_data": false, "other": 1}},
               "ua_hints": {"mobile": false, "brands": [{"brand": "B", "version": "1"}]}}),
        json!({"view": {"url": "not a url"}, "device": {"memory": null, "connection": null}}),
        json!({"view": {"title": "only a title"}, "session": {"id": "1"}, "session ": {"id": "2"}}),
        json!({"view": {"url": "https://a.example/"}, "view ": 1, "ua_hints": null}),
    ] {
        let mut body = context;
        body["v"] = json!(1);
        body["events"] = json!([{"type": "action", "kind": "click"}]);
        bodies.push(
            body.to_string()
                .replace("\"session \"", "\"session\"")
                .replace("\"view \"", "\"view\"")
                .into_bytes(),
        );
    }
    let mut facts = facts();
    facts.client_hints = vec![("sec_ch_ua_mobile", "?0")];
    let limits = BeaconLimits {
        max_events: 100,
        max_string_bytes: 10_000,
        max_depth: 10,
        ..limits()
    };
    let mut blocks = 0;
    for body in &bodies {
        let Ok(decoded) = decode(body, &facts, &limits) else {
            continue;
        };
        for event in &decoded.events {
            if let Some(recounted) = event.recount_block_bytes() {
                assert_eq!(
                    event.block_byte_size(),
                    Some(recounted),
                    "{}",
                    String::from_utf8_lossy(body)
                );
                blocks += 1;
            }
            // Summed as the decoder set the fields (`ContextFill`).
            assert_eq!(
                event.context().byte_size(),
                event.recount_context_bytes(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
    assert!(blocks > 20, "only {blocks} events in blocks");
}

/// `kept_check` on every beacon fixture, as sent and with a key of its own
/// added to every object.
#[test]
fn every_value_a_beacon_sent_is_in_the_documents() {
    let limits = BeaconLimits {
        max_events: 100,
        max_string_bytes: 10_000,
        max_depth: 10,
        max_event_age_ms: i64::MAX,
        ..limits()
    };
    let mut checked = 0;
    for entry in std::fs::read_dir("testdata/beacons").expect("testdata/beacons") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let sent: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for mut input in kept_check::as_sent_and_probed(sent, 0) {
            let Ok(decoded) = decode(input.to_string().as_bytes(), &facts(), &limits) else {
                // A fixture of bodies refused whole (edge cases) has no
                // documents to look in.
                continue;
            };
            // Top-level keys the format does not know are dropped and
            // counted (docs/beacon-format.md).
            let top = input.as_object_mut().unwrap();
            let known = [
                "v", "sent_at", "events", "app", "session", "view", "device", "ua_hints",
            ];
            let before = top.len();
            top.retain(|key, _| known.contains(&key.as_str()));
            let mut ignored = before - top.len();
            // So are the keys the context objects do not define.
            let mut prune = |object: Option<&mut Value>, keys: &[&str]| {
                if let Some(Value::Object(map)) = object {
                    let before = map.len();
                    map.retain(|key, _| keys.contains(&key.as_str()));
                    ignored += before - map.len();
                }
            };
            prune(top.get_mut("app"), &wire::APP_KEYS);
            prune(top.get_mut("session"), &wire::SESSION_KEYS);
            prune(top.get_mut("view"), &wire::VIEW_KEYS);
            prune(top.get_mut("device"), &wire::DEVICE_KEYS);
            prune(
                top.get_mut("device")
                    .and_then(|device| device.get_mut("connection")),
                &["effective_type", "rtt", "downlink", "save_data"],
            );
            assert_eq!(decoded.ignored_keys, ignored, "{}", path.display());
            let documents: Vec<Value> = decoded.events.iter().map(Event::to_value).collect();
            let dropped = [
                // Spent on the clock-skew correction of every event's time
                // (`@timestamp`); `rum.client_ts` keeps each event's own.
                "sent_at",
            ];
            kept_check::assert_kept(&path.display().to_string(), &input, &documents, &dropped);
            checked += 1;
        }
    }
    assert!(checked >= 4, "{checked} bodies checked");
}

/// Each event of `body`: its `field`, and what `rum.extra` keeps of `key`.
fn field_or_extra(body: &str, field: &str, key: &str) -> Vec<(Option<Value>, Option<Value>)> {
    let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
    let extra = format!("rum.extra.{key}");
    decoded
        .events
        .iter()
        .map(|e| (e.get(field).cloned(), e.get(&extra).cloned()))
        .collect()
}

#[test]
fn an_array_of_values_for_an_object_field_is_kept_in_rum_extra() {
    // `flattened` takes objects only: `["db;dur=12"]` in
    // `rum.nav.server_timing` made the whole document a mapping error at
    // the sink (dead-lettered). Both the fast path and the general one.
    let body = r#"{"v": 1, "events": [
        {"type": "page_view", "server_timing": ["db;dur=12"]},
        {"server_timing": [{"name": "db"}, 3], "type": "page_view"},
        {"type": "page_view", "server_timing": [{"name": "db", "dur": 12}]}
    ]}"#;
    let kept = field_or_extra(body, "rum.nav.server_timing", "server_timing");
    assert_eq!(
        kept,
        [
            (None, Some(json!(["db;dur=12"]))),
            (None, Some(json!([{"name": "db"}, 3]))),
            (Some(json!([{"name": "db", "dur": 12}])), None),
        ]
    );
}

#[test]
fn an_integer_past_i64_is_kept_in_rum_extra_not_in_a_long_field() {
    // Elasticsearch's `long` is signed: 2^63 in `rum.resource.transfer_size`
    // made the whole document a mapping error at the sink (dead-lettered).
    // Both the fast path (`type` first) and the general one (`type` last).
    let body = r#"{"v": 1, "events": [
        {"type": "resource", "transfer_size": 9223372036854775807},
        {"type": "resource", "transfer_size": 9223372036854775808},
        {"transfer_size": 9223372036854775807, "type": "resource"},
        {"transfer_size": 18446744073709551615, "type": "resource"},
        {"type": "resource", "transfer_size": 1.5, "initiator_type": 5},
        {"type": "resource", "transfer_size": -7, "initiator_type": "img"}
    ]}"#;
    let kept = field_or_extra(body, "rum.resource.transfer_size", "transfer_size");
    assert_eq!(
        kept,
        [
            (Some(json!(i64::MAX)), None),
            (None, Some(json!(9223372036854775808u64))),
            (Some(json!(i64::MAX)), None),
            (None, Some(json!(u64::MAX))),
            // A float is no `long`; a number no `keyword` (below).
            (None, Some(json!(1.5))),
            (Some(json!(-7)), None),
        ]
    );
    let kept = field_or_extra(body, "rum.resource.initiator_type", "initiator_type");
    assert_eq!(kept[4], (None, Some(json!(5))));
    assert_eq!(kept[5], (Some(json!("img")), None));
}

#[test]
fn strings_of_a_reading_given_up_are_not_held_uncounted() {
    // A beacon's strings share one block, held as long as any of its
    // events is, and the buffers count only the strings slots read: a
    // string read into slots that were then given up (an entry the fast
    // path leaves for the general reading, an `events` sent again) must
    // not stay in the block, held by every document and counted by none.
    let facts = RequestFacts {
        user_agent: None,
        ..facts()
    };
    let limits = BeaconLimits {
        max_string_bytes: 10_000,
        client_ip: crate::privacy::ClientIpMode::None,
        ..limits()
    };
    let dead = "d".repeat(5_000);
    let live = r#"{"type": "error", "message": "live"}"#;
    let bodies = [
        format!(r#"{{"v": 1, "events": [{live}]}}"#),
        // Left at its repeated `type`, after its message went to the block.
        format!(
            r#"{{"v": 1, "events": [{live}, {{"type": "error", "message": "{dead}", "type": "error"}}]}}"#
        ),
        // Left at its own `view`.
        format!(
            r#"{{"v": 1, "events": [{{"type": "error", "message": "{dead}", "view": {{"id": "v2"}}}}, {live}]}}"#
        ),
        // `events` twice: the last one wins.
        format!(
            r#"{{"v": 1, "events": [{{"type": "error", "message": "{dead}"}}], "events": [{live}]}}"#
        ),
    ];
    let message = FieldId::of("error.message");
    for body in &bodies {
        let decoded = decode(body.as_bytes(), &facts, &limits).unwrap();
        let live = decoded
            .events
            .iter()
            .find(|e| e.get_id_str(message) == Some("live"))
            .expect("the live event");
        assert_eq!(
            live.text_block_held_bytes(message),
            Some("live".len() + 8),
            "{body}"
        );
    }
}
#[test]
fn device_cores_a_long_cannot_hold_is_refused_not_stored() {
    // `rum.device.cores` is a `long` in the index template: a number past
    // i64 (or not an integer) there fails every document of the beacon at
    // Elasticsearch after the beacon was answered 204.
    for cores in [
        "18446744073709551615",
        "1e300",
        "2.5",
        "-9223372036854775809",
    ] {
        let body = format!(
            r#"{{"v": 1, "device": {{"cores": {cores}}}, "events": [{{"type": "action"}}]}}"#
        );
        let err = decode(body.as_bytes(), &facts(), &limits()).unwrap_err();
        assert_eq!(err.error_type, "invalid_beacon", "{body}");
        assert!(err.message.contains("device.cores"), "{}", err.message);
    }
    for cores in [8_i64, 0, -1, i64::MAX] {
        let body = format!(
            r#"{{"v": 1, "device": {{"cores": {cores}}}, "events": [{{"type": "action"}}]}}"#
        );
        let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
        assert_eq!(
            decoded.events[0].get("rum.device.cores"),
            Some(&json!(cores))
        );
    }
}

#[test]
fn entries_past_max_events_are_not_kept_while_the_body_is_read() {
    // A beacon over `max_events_per_beacon` is refused (413) once its body
    // is read; the entries past the limit must not be held on the way: as
    // parsed entries, 3 bytes of `{}` took some 700 (a 1 MiB body, 230 MB).
    for entry in ["{}", "1", r#"{"type":"a"}"#] {
        let body = format!(
            r#"{{"v": 1, "events": [{}]}}"#,
            vec![entry; 1_000_000 / (entry.len() + 1)].join(",")
        );
        let (result, peak) =
            crate::test_alloc::peak_during(|| decode(body.as_bytes(), &facts(), &limits()));
        assert_eq!(result.unwrap_err().error_type, "too_many_events");
        assert!(
            peak < body.len() / 4,
            "{peak} bytes held to refuse a body of {} bytes of {entry}",
            body.len()
        );
    }
}

#[test]
fn what_a_beacons_events_hold_is_what_the_buffers_count() {
    // Buffers are bounded in bytes by what events say they hold: an event
    // that holds far more than it counts gets past every byte budget.
    let limits = BeaconLimits {
        max_string_bytes: 1_000,
        ..limits()
    };
    let numbers = vec!["1"; 100_000].join(",");
    let pairs: Vec<String> = (0..20_000).map(|i| format!(r#""k{i}": {i}"#)).collect();
    let strings = vec![r#""abcdefgh""#; 50_000].join(",");
    for extra in [
        format!(r#""x": [{numbers}]"#),
        format!(r#""x": [[{numbers}]]"#),
        format!(r#""x": {{{}}}"#, pairs.join(",")),
        format!(r#""x": [{strings}]"#),
        // Small objects: a map's first node is made whole for one entry.
        format!(r#""x": [{}]"#, vec![r#"{"a": 1}"#; 20_000].join(",")),
    ] {
        for entry in [
            format!(r#"{{"type": "action", {extra}}}"#),
            format!(r#"{{{extra}, "type": "action"}}"#),
        ] {
            let body = format!(r#"{{"v": 1, "events": [{entry}]}}"#);
            let (decoded, held) =
                crate::test_alloc::held_by(|| decode(body.as_bytes(), &facts(), &limits).unwrap());
            let event = &decoded.events[0];
            let counted = event.own_byte_size()
                + event.block_byte_size().unwrap_or(0)
                + event.context().byte_size();
            assert!(
                counted >= held / 2,
                "{counted} bytes counted for {held} held: {}",
                &entry[..60]
            );
        }
    }
}

#[test]
fn an_unsupported_version_is_named_shortly_in_the_answer() {
    // The reason is one short line: `v` was echoed whole, an object or a
    // string of the body's size made an answer as large as the request.
    let limits = BeaconLimits {
        max_string_bytes: 100_000,
        max_depth: 10,
        ..limits()
    };
    for v in [
        json!("x".repeat(50_000)),
        json!({"a": vec![7; 20_000]}),
        json!(2),
    ] {
        let body = json!({"v": v, "events": []}).to_string();
        let err = decode(body.as_bytes(), &facts(), &limits).unwrap_err();
        assert_eq!(err.error_type, "unsupported_version");
        assert!(err.message.len() < 200, "{} bytes", err.message.len());
        assert!(
            err.message.contains("this server speaks v:1"),
            "{}",
            err.message
        );
    }
}

/// Elasticsearch refuses a document whose `flattened` field (`rum.extra`,
/// attribution, custom data...) has a key with a NUL in it (it separates
/// key from value in the index), so a beacon's `"a\u0000b"` key made every
/// document it reached a mapping error, dead-lettered. Such a key is kept
/// with U+FFFD in place of each NUL; values keep theirs.
#[test]
fn a_nul_in_a_key_does_not_reach_the_documents() {
    let body = r#"{"v":1,"session":{"id":"s"},"view":{"id":"v"},
        "app":{"name":"shop","x\u0000":1},
        "events":[{"type":"action","ts":1700000000000,"a\u0000b":"kept\u0000value",
            "o":{"c\u0000":{"d\u0000\u0000":2}}}]}"#;
    let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
    assert_eq!(decoded.events.len(), 1);
    let mut document = Vec::new();
    decoded.events[0].write_json(&mut document);
    let document: Value = serde_json::from_slice(&document).unwrap();
    fn keys(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => map.iter().for_each(|(k, v)| {
                out.push(k.clone());
                keys(v, out)
            }),
            Value::Array(items) => items.iter().for_each(|v| keys(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    keys(&document, &mut all);
    assert!(!all.iter().any(|k| k.contains('\0')), "{all:?}");
    let extra = &document["rum"]["extra"];
    assert_eq!(extra["a\u{fffd}b"], json!("kept\u{0}value"), "{document}");
    assert_eq!(extra["o"]["c\u{fffd}"]["d\u{fffd}\u{fffd}"], json!(2));
}

/// `max_event_age_secs = 18446744073709551615` (a `u64`, as TOML takes it):
/// read as −1 s, the oldest time allowed came after the receive time and
/// the first event with a `ts` panicked the request in `clamp`.
#[test]
fn the_largest_max_event_age_keeps_every_time_and_does_not_panic() {
    let limits = BeaconLimits {
        max_event_age_ms: crate::sources::age_secs_to_ms(u64::MAX),
        ..limits()
    };
    let old = NOW - 400 * 24 * 3_600_000;
    let body = json!({"v": 1, "sent_at": NOW, "events": [
        {"type": "page_view", "ts": old},
        {"type": "page_view", "ts": NOW + 5_000},
    ]});
    let decoded = decode(body.to_string().as_bytes(), &facts(), &limits).expect("decoded");
    let times: Vec<_> = decoded.events.iter().map(|e| e.timestamp_ms()).collect();
    assert_eq!(times, vec![Some(old), Some(NOW)]);
    assert_eq!(decoded.clamped_times, 1);
    assert_eq!(crate::sources::age_secs_to_ms(86_400), 86_400_000);
}

/// The events of a beacon keep their own slots packed: the writer, the
/// readers of conditions, ids and strings, and an edit of one event read
/// them in place. Only a reader asking for a `Value` of a packed string or
/// number makes the block's slots, and what it reads is what was written.
#[test]
fn a_beacons_packed_slots_are_written_and_read_in_place() {
    let body = std::fs::read("testdata/beacons/realistic-10-events.json").unwrap();
    let limits = BeaconLimits {
        max_string_bytes: 10_000,
        ..limits()
    };
    let mut events = decode(&body, &facts(), &limits).unwrap().events;
    let documents: Vec<Vec<u8>> = events
        .iter()
        .map(|event| {
            let mut out = Vec::new();
            event.write_json(&mut out);
            out
        })
        .collect();
    let id = FieldId::of;
    for event in &events {
        assert_eq!(event.own_block_slots_made(), Some(false));
        let ty = event.get_id(id(schema::RUM_TYPE)).and_then(Value::as_str);
        assert!(ty.is_some());
        assert_eq!(event.get_id_str(id(schema::RUM_TYPE)), ty);
        assert!(event.read_id(id("event.dataset")).is_some());
        assert!(event.read_id(id(schema::SESSION_ID)).is_some());
        assert!(event.has_id(id(schema::RUM_SEQ)));
        assert!(matches!(
            event.read_id(id(schema::RUM_SEQ)),
            Some(crate::event::FieldRead::Number(crate::event::Num::PosInt(
                _
            )))
        ));
        assert!(event.own_ids().count() >= 3);
        let _ = event.get_own_id(id(schema::RUM_TYPE));
        let _ = event.get_id_str(id("rum.vital.name"));
        let _ = event.get_id_str(id("rum.http.url"));
        let _ = event.get_id(id(schema::RUM_UA_HINTS));
    }
    // An edit of one event copies its run alone.
    let name = id("rum.vital.name");
    let edited = events
        .iter()
        .position(|e| e.get_id_str(name).is_some())
        .expect("a vital");
    events[edited].set(name, "edited");
    events[edited].remove_id(id(schema::RUM_SEQ));
    assert_eq!(events[0].own_block_slots_made(), Some(false));
    assert_eq!(events[edited].get_id_str(name), Some("edited"));
    assert!(!events[edited].has_id(id(schema::RUM_SEQ)));
    for (i, (event, before)) in events.iter().zip(&documents).enumerate() {
        let mut out = Vec::new();
        event.write_json(&mut out);
        if i == edited {
            let mut want: Value = serde_json::from_slice(before).unwrap();
            want["rum"]["vital"]["name"] = json!("edited");
            want["rum"].as_object_mut().unwrap().remove("seq");
            assert_eq!(serde_json::from_slice::<Value>(&out).unwrap(), want);
        } else {
            assert_eq!(&out, before, "event {i}");
        }
    }
    // A number as a value: the block's slots are made, the same values.
    let seq = events[0].get_id(id(schema::RUM_SEQ)).cloned();
    assert_eq!(seq, Some(json!(0)));
    assert_eq!(events[0].own_block_slots_made(), Some(true));
    for (i, (event, before)) in events.iter().zip(&documents).enumerate() {
        if i != edited {
            let mut out = Vec::new();
            event.write_json(&mut out);
            assert_eq!(&out, before, "event {i} after its block's slots were made");
            assert_eq!(
                event.to_value(),
                serde_json::from_slice::<Value>(before).unwrap()
            );
        }
    }
}

/// An ASCII body skips the UTF-8 check (`bounded::utf8`); one with other
/// characters takes it: kept whole when they are UTF-8, refused when a
/// byte is not, wherever it is (in a string, a key, between tokens).
#[test]
fn a_body_past_ascii_is_checked_as_utf8_and_kept_whole() {
    let body = r#"{"v":1,"app":{"name":"café 😀"},"events":[{"type":"action","target":"é\n"}]}"#;
    let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
    assert_eq!(decoded.events[0].get_str("service.name"), Some("café 😀"));
    assert_eq!(decoded.events[0].get_str("rum.action.target"), Some("é\n"));
    for bad in [
        &b"{\"v\":1,\"app\":{\"name\":\"caf\xe9\"},\"events\":[]}"[..],
        &b"{\"v\":1,\"events\":[{\"type\":\"action\",\"\xff\":1}]}"[..],
        &b"{\"v\":1,\"events\":[]}\xc3"[..],
    ] {
        let err = decode(bad, &facts(), &limits()).unwrap_err();
        assert_eq!(err.error_type, "invalid_json");
        assert!(err.message.contains("not UTF-8"), "{}", err.message);
    }
}

/// Each entry's keys as `"key": value`, plain or with the key's first
/// letter escaped (`\u00XX`): the same JSON, but bytes that can never be
/// the key a type's last entry had at that place (`SlotTable::guess`), so
/// every key of the escaped body is read and looked up.
fn beacon_of(entries: &[&[(&str, &str)]], escaped: bool) -> String {
    let entries: Vec<String> = entries
        .iter()
        .map(|pairs| {
            let pairs: Vec<String> = pairs
                .iter()
                .map(|(key, value)| {
                    let mut chars = key.chars();
                    match chars.next() {
                        Some(first) if escaped && first.is_ascii() => {
                            format!(r#""\u{:04x}{}": {value}"#, first as u32, chars.as_str())
                        }
                        _ => format!(r#""{key}": {value}"#),
                    }
                })
                .collect();
            format!("{{{}}}", pairs.join(", "))
        })
        .collect();
    format!(
        r#"{{"v": 1, "sent_at": {NOW}, "view": {{"url": "https://shop.example/p"}}, "events": [{}]}}"#,
        entries.join(", ")
    )
}

#[test]
fn keys_taken_as_the_last_entrys_are_the_keys_sent() {
    let vital: &[(&str, &str)] = &[
        ("type", r#""web_vital""#),
        ("ts", "1699999999000"),
        ("name", r#""LCP""#),
        ("value", "1.5"),
        ("rating", r#""good""#),
        ("id", r#""v4-1""#),
    ];
    // The same keys in another order: every guess misses.
    let vital_turned: &[(&str, &str)] = &[
        ("type", r#""web_vital""#),
        ("value", "2"),
        ("id", r#""v4-2""#),
        ("name", r#""CLS""#),
        ("ts", "1699999999100"),
    ];
    // Keys that begin as the guessed ones do, or that they begin as.
    let near: &[(&str, &str)] = &[
        ("type", r#""web_vital""#),
        ("tss", "1"),
        ("names", r#""x""#),
        ("valu", "3"),
        ("ratin", r#""good""#),
        ("i", "4"),
    ];
    // A key sent twice where the first was guessed: the general reading.
    let repeat: &[(&str, &str)] = &[
        ("type", r#""web_vital""#),
        ("ts", "1699999999200"),
        ("name", r#""LCP""#),
        ("name", r#""INP""#),
    ];
    let resource: &[(&str, &str)] = &[
        ("type", r#""resource""#),
        ("ts", "1699999999300"),
        ("name", r#""https://cdn.example/app.js""#),
        ("initiator_type", r#""script""#),
        ("render_blocking", r#""blocking""#),
        ("transfer_size", "48210"),
    ];
    let beacons: &[&[&[(&str, &str)]]] = &[
        &[vital, vital, vital, vital],
        &[vital, vital_turned, vital, vital_turned, vital],
        &[vital, near, vital, near],
        &[vital, repeat, vital],
        &[resource, vital, resource, resource, vital],
        &[near, vital_turned, repeat, resource],
    ];
    for entries in beacons {
        let (plain, escaped) = (beacon_of(entries, false), beacon_of(entries, true));
        // Twice: the second reading starts from the guesses the first left.
        for _ in 0..2 {
            assert_eq!(outcome(&plain), outcome(&escaped), "\n{plain}");
        }
    }
    // A key past the reader's guess and its `:` is where the errors say:
    // whitespace before the colon, a missing colon, a key at the body's end.
    for (body, error) in [
        (
            r#"{"v": 1, "events": [{"type": "action", "ts": 1, "kind": "click"}, {"type": "action", "ts" :1, "kind"
:"tap"}]}"#,
            None,
        ),
        (
            r#"{"v": 1, "events": [{"type": "action", "ts": 1, "kind": "click"}, {"type": "action", "ts": 1, "kind" "tap"}]}"#,
            Some("invalid JSON: expected `:` at line 1 column 102"),
        ),
        (
            r#"{"v": 1, "events": [{"type": "action", "ts": 1, "kind": "click"}, {"type": "action", "ts": 1, "kind"#,
            Some("invalid JSON: EOF while parsing a string at line 1 column 100"),
        ),
    ] {
        let answer = decode(body.as_bytes(), &facts(), &limits());
        match error {
            None => assert_eq!(answer.map(|d| d.events.len()).ok(), Some(2), "{body}"),
            Some(message) => assert_eq!(answer.err().map(|e| e.message), Some(message.into())),
        }
    }
}

/// The guesses are the tables', shared by every source: a key taken as
/// one a source with longer strings taught is still measured against
/// this source's `max_string_bytes`.
#[test]
fn a_guessed_key_is_still_held_to_max_string_bytes() {
    let entries: &[&[(&str, &str)]] = &[&[
        ("type", r#""http""#),
        ("ts", "1699999999000"),
        ("method", r#""GET""#),
        ("status", "200"),
    ]];
    let body = beacon_of(entries, false);
    assert!(decode(body.as_bytes(), &facts(), &limits()).is_ok());
    let short = BeaconLimits {
        max_string_bytes: 5,
        ..limits()
    };
    let refused = decode(body.as_bytes(), &facts(), &short).err();
    assert_eq!(
        refused.map(|e| (e.error_type, e.message)),
        Some((
            "string_too_long",
            "a string is longer than max_string_bytes (5)".into()
        ))
    );
}

/// An entry's `type` is first compared as bytes with the one type name
/// that begins with its first letter (`wire::known_type`). Every name, and
/// names that only begin like one, or that one begins like, or that share
/// a first letter with one, read as the same beacon with the type's first
/// letter escaped (never those bytes); and a type name is still measured
/// against `max_string_bytes`.
#[test]
fn types_taken_by_their_names_bytes_are_the_types_sent() {
    // Every type's name (the CSP ones are not a beacon's: `custom`), then
    // names near them.
    let near = [
        "web_vitals",
        "web_vita",
        "resourc",
        "errors",
        "Action",
        "h",
        "c",
        "http2",
        "long_task_",
        "custom_x",
        r"web_vital\\",
        r"page\u005fview",
    ];
    let names: Vec<&str> = EventType::ALL
        .iter()
        .map(|t| t.as_str())
        .chain(near)
        .collect();
    let entry = |name: &str, escaped: bool| {
        let name = match name.split_at_checked(1) {
            Some((first, rest)) if escaped => format!("\\u{:04x}{rest}", first.as_bytes()[0]),
            _ => name.to_owned(),
        };
        format!(
            r#"{{"type": "{name}", "ts": 1699999999000, "name": "LCP", "value": 1.5, "kind": "click", "url": "https://a.example/x"}}"#
        )
    };
    let beacon = |names: &[&str], escaped: bool, last: &str| {
        let entries: Vec<String> = names
            .iter()
            .chain([&last])
            .map(|name| entry(name, escaped))
            .collect();
        format!(
            r#"{{"v": 1, "sent_at": {NOW}, "events": [{}]}}"#,
            entries.join(", ")
        )
    };
    for names in names.chunks(8) {
        // The last entry's name within the body's last 32 bytes too.
        for last in ["web_vital", "report"] {
            let (plain, escaped) = (beacon(names, false, last), beacon(names, true, last));
            let documents = outcome(&plain);
            assert!(documents.contains(r#""dataset":"rum."#), "{documents}");
            assert_eq!(documents, outcome(&escaped), "\n{plain}");
        }
    }
    let short = BeaconLimits {
        max_string_bytes: 8,
        ..limits()
    };
    let body = format!(
        r#"{{"v": 1, "events": [{}, {}]}}"#,
        entry("http", false),
        entry("web_vital", false)
    );
    let refused = decode(body.as_bytes(), &facts(), &short).err();
    assert_eq!(
        refused.map(|e| (e.error_type, e.message)),
        Some((
            "string_too_long",
            "a string is longer than max_string_bytes (8)".into()
        ))
    );
}

/// The context objects' keys are taken as the last beacon's too
/// (`wire::KnownKeys`): beacons whose `app`, `session`, `view` and
/// `device` keys come in changing orders, repeat, or only begin like a
/// known key read as the same beacons with every key escaped (never the
/// bytes guessed).
#[test]
fn context_keys_taken_as_the_last_beacons_are_the_keys_sent() {
    let objects: [&[(&str, &str)]; 5] = [
        &[
            ("url", r#""https://a.example/x?y=1""#),
            ("id", r#""v1""#),
            ("title", r#""T""#),
            ("referrer", r#""https://r.example/""#),
        ],
        &[
            ("referrer", r#""https://r.example/""#),
            ("title", r#""T2""#),
            ("id", r#""v2""#),
            ("url", r#""https://b.example/""#),
        ],
        &[
            ("urls", r#""x""#),
            ("url", r#""https://c.example/""#),
            ("i", "1"),
            ("id", r#""v3""#),
            ("id", r#""v4""#),
        ],
        &[("url", "5"), ("title", "null")],
        &[],
    ];
    let object = |pairs: &[(&str, &str)], escaped: bool| {
        let pairs: Vec<String> = pairs
            .iter()
            .map(|(key, value)| match key.chars().next() {
                Some(first) if escaped => {
                    format!(r#""\u{:04x}{}": {value}"#, first as u32, &key[1..])
                }
                _ => format!(r#""{key}": {value}"#),
            })
            .collect();
        format!("{{{}}}", pairs.join(", "))
    };
    for view in objects {
        for escaped in [false, true, false] {
            let body = |escaped: bool| {
                format!(
                    r#"{{"v": 1, "sent_at": {NOW}, "app": {}, "session": {}, "device": {}, "view": {}, "events": [{{"type": "action", "ts": {NOW}, "kind": "click"}}]}}"#,
                    object(
                        &[
                            ("env", r#""prod""#),
                            ("name", r#""shop""#),
                            ("version", r#""1""#)
                        ],
                        escaped
                    ),
                    object(&[("id", r#""s1""#)], escaped),
                    object(&[("cores", "8"), ("memory", "4"), ("mem", "2")], escaped),
                    object(view, escaped),
                )
            };
            assert_eq!(
                outcome(&body(escaped)),
                outcome(&body(!escaped)),
                "\n{}",
                body(escaped)
            );
        }
    }
}
