use super::*;
use crate::sources::beacon_decoder::iso_millis;
use crate::sources::kept_check;
use serde_json::json;

const NOW: i64 = 1_800_000_000_000;
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36";

fn facts() -> RequestFacts<'static> {
    RequestFacts {
        received_at_ms: NOW,
        client_ip: "203.0.113.9".parse().unwrap(),
        user_agent: Some(UA),
        session_header: None,
    }
}

fn limits() -> FaroLimits {
    FaroLimits {
        max_items: 20,
        max_string_bytes: 200,
        max_depth: 10,
        max_event_age_ms: i64::MAX,
        max_context_bytes: 4096,
        client_ip: ClientIpMode::Full,
    }
}

fn decode_json(v: Value) -> Result<Decoded, DecodeError> {
    decode(v.to_string().as_bytes(), &facts(), &limits())
}

/// The bodies the real SDK sent (tests/browser/faro, FARO_FIXTURES=write).
fn fixture(i: usize) -> Vec<u8> {
    std::fs::read(format!(
        "{}/testdata/sdk/faro/body-{i}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn fixtures() -> Vec<Event> {
    let mut events = Vec::new();
    for i in 0.. {
        let path = format!(
            "{}/testdata/sdk/faro/body-{i}.json",
            env!("CARGO_MANIFEST_DIR")
        );
        if !std::path::Path::new(&path).exists() {
            break;
        }
        let decoded = decode(&fixture(i), &facts(), &limits()).unwrap();
        assert_eq!(decoded.unknown_kinds, 0, "body-{i}");
        events.extend(decoded.events);
    }
    assert!(events.len() > 10, "{} events", events.len());
    events
}

fn meta() -> Value {
    json!({
        "sdk": {"name": "faro-web", "version": "2.12.1"},
        "app": {"name": "shop", "version": "1.2.3", "environment": "prod", "namespace": "web"},
        "browser": {"name": "Chrome", "userAgent": UA, "mobile": false},
        "page": {"url": "https://shop.example.com/cart?step=2", "id": "page-1"},
        "view": {"name": "checkout"},
        "session": {"id": "79XxMEJxQ4", "attributes": {"plan": "pro"}},
        "user": {"id": "u1"}
    })
}

#[test]
fn the_real_sdks_bodies_become_the_expected_documents() {
    let events = fixtures();
    let by = |pred: &dyn Fn(&Event) -> bool| events.iter().filter(|e| pred(e)).collect::<Vec<_>>();
    for e in &events {
        assert_eq!(e.get_str("rum.sdk.name"), Some("faro-web"));
        assert_eq!(e.get_str("rum.sdk.version"), Some("2.12.1"));
        assert_eq!(e.get_str("service.name"), Some("faro-test-shop"));
        assert_eq!(e.get_str("service.version"), Some("1.2.3"));
        assert_eq!(e.get_str("service.environment"), Some("test"));
        assert_eq!(e.get_str("url.scheme"), Some("http"));
        assert_eq!(e.get_str("url.domain"), Some("127.0.0.1"));
        assert_eq!(e.get_str("user_agent.original"), Some(UA));
        assert!(e.client_ts_ms().is_some(), "{:?}", e.to_value());
        // Kept once: the header is the User-Agent.
        assert_eq!(e.get("rum.extra.meta.browser.userAgent"), None);
        assert_eq!(
            e.get_str("rum.extra.meta.browser.name"),
            Some("Chrome Headless")
        );
    }
    let sessions: std::collections::BTreeSet<_> =
        events.iter().map(|e| e.get_str("session.id")).collect();
    assert_eq!(sessions.len(), 1, "{sessions:?}");

    let vitals: Vec<&str> = by(&|e| e.get_str("rum.type") == Some("web_vital"))
        .iter()
        .map(|e| e.get_str("rum.vital.name").unwrap())
        .collect();
    for name in ["TTFB", "FCP", "LCP", "INP", "CLS"] {
        assert!(vitals.contains(&name), "{name} in {vitals:?}");
    }
    let lcp = by(&|e| e.get_str("rum.vital.name") == Some("LCP"))[0];
    assert!(lcp.get("rum.vital.value").and_then(Value::as_f64).unwrap() > 0.0);
    assert_eq!(lcp.get_str("rum.vital.rating"), Some("good"));
    assert_eq!(lcp.get_str("rum.vital.navigation_type"), Some("navigate"));
    assert_eq!(lcp.get_str("rum.vital.attribution.element"), Some("#hero"));
    assert!(lcp.get("rum.vital.delta").is_some());
    assert!(lcp.get_str("rum.vital.id").unwrap().starts_with("v6-"));
    let inp = by(&|e| e.get_str("rum.vital.name") == Some("INP"))[0];
    assert_eq!(
        inp.get_str("rum.vital.attribution.interaction_target"),
        Some("#buy")
    );

    let error = by(&|e| e.get_str("error.type") == Some("TypeError"))[0];
    assert_eq!(error.get_str("rum.type"), Some("error"));
    assert_eq!(error.get_str("error.message"), Some("cart is broken"));
    let stack = error.get_str("error.stack_trace").unwrap();
    assert!(
        stack.starts_with("TypeError: cart is broken\n    at http://127.0.0.1:"),
        "{stack}"
    );
    assert!(error.get("rum.error.line").is_some());
    assert_eq!(error.get_str("rum.extra.action.name"), Some("buy"));
    assert_eq!(
        error.get("rum.extra.stacktrace"),
        None,
        "the text holds it all"
    );

    let page_views = by(&|e| e.get_str("rum.type") == Some("page_view"));
    assert_eq!(page_views.len(), 2, "two page loads");
    assert_eq!(
        page_views[0].get_str("rum.nav.navigation_type"),
        Some("navigate")
    );
    assert!(page_views[0].get("rum.nav.ttfb").unwrap().is_number());
    assert!(page_views[0].get("rum.nav.transfer_size").unwrap().is_i64());
    assert_eq!(page_views[0].get_str("rum.nav.protocol"), Some("http/1.1"));
    // `rum.nav.load` is the load event's end from the navigation's start,
    // as the project's client (`loadEventEnd`) sends it: the entry's
    // `duration`. `pageLoadTime` is `domComplete - fetchStart`, what the
    // Elastic APM agent's `dom_complete` is (ms after `fetchStart`).
    let nav = |key: &str| page_views[0].get(key).and_then(Value::as_f64);
    assert_eq!(nav("rum.nav.load"), Some(171.0), "duration");
    assert_eq!(nav("rum.nav.dom_complete"), Some(169.0), "pageLoadTime");
    assert!(page_views[0]
        .get("rum.extra.attributes.faroNavigationId")
        .is_some());
    assert_eq!(page_views[1].get_str("url.query"), Some("second=1"));
    // The SDK's constant `"domain": "browser"` is not kept.
    assert_eq!(page_views[0].get("rum.extra.domain"), None);

    let fetch = by(&|e| e.get_str("rum.resource.initiator_type") == Some("fetch"))[0];
    assert!(fetch
        .get_str("rum.resource.name")
        .unwrap()
        .ends_with("/api/cart?item=42"));
    assert_eq!(fetch.get("rum.resource.status"), Some(&json!(200)));
    assert_eq!(fetch.get_str("rum.resource.cache"), Some("fullLoad"));

    let action = by(&|e| e.get_str("rum.type") == Some("action"))[0];
    assert_eq!(action.get_str("rum.action.name"), Some("buy"));
    assert_eq!(action.get_str("rum.action.kind"), Some("pointerdown"));

    let log_error = by(&|e| e.get_str("rum.error.kind") == Some("log"))[0];
    assert_eq!(
        log_error.get_str("error.message"),
        Some("payment widget failed")
    );
    let info = by(&|e| e.get_str("rum.custom.original_type") == Some("log"))[0];
    assert_eq!(
        info.get_str("rum.custom.data.message"),
        Some("checkout page ready")
    );
    assert_eq!(info.get_str("rum.custom.data.level"), Some("info"));
    assert_eq!(info.get_str("rum.extra.context.step"), Some("cart"));
    let cart = by(&|e| e.get_str("rum.custom.name") == Some("cart"))[0];
    assert_eq!(cart.get("rum.custom.data.items"), Some(&json!(3)));
    assert_eq!(
        cart.get("rum.custom.value"),
        None,
        "two values: no single one"
    );
    let started = by(&|e| e.get_str("rum.custom.name") == Some("session_start"));
    assert_eq!(started.len(), 1);
}

#[test]
fn meta_is_the_shared_context_and_the_rest_of_it_is_kept() {
    let decoded = decode_json(json!({
        "meta": meta(),
        "logs": [{"message": "hi", "level": "warn", "timestamp": "2027-01-15T08:00:00.000Z"}],
        "events": [{"name": "session_start", "domain": "app", "timestamp": "2027-01-15T08:00:00.000Z"},
                   {"name": "x", "timestamp": "2027-01-15T08:00:01.000Z"}]
    }))
    .unwrap();
    assert_eq!(
        decoded.page_url.as_deref(),
        Some("https://shop.example.com/cart?step=2")
    );
    // Body order (`json!` sorts keys: events before logs).
    let [start, x, log] = &decoded.events[..] else {
        panic!("three events")
    };
    assert!(crate::event::Counted::ptr_eq(
        log.context(),
        start.context()
    ));
    let doc = x.to_value();
    assert_eq!(
        doc,
        json!({
            // The newest item of the payload: taken as sent at the receive time.
            "@timestamp": "2027-01-15T08:00:00.000Z",
            "client": {"ip": "203.0.113.9"},
            "event": {"dataset": "rum.custom", "ingested": "2027-01-15T08:00:00.000Z", "kind": "event"},
            "rum": {
                "client_ts": 1_800_000_001_000_i64,
                "custom": {"name": "x", "original_type": "event"},
                "extra": {"meta": {
                    "app": {"namespace": "web"},
                    "browser": {"name": "Chrome", "mobile": false},
                    "session": {"attributes": {"plan": "pro"}},
                    "user": {"id": "u1"}
                }},
                "sdk": {"name": "faro-web", "version": "2.12.1"},
                "seq": 1,
                "type": "custom"
            },
            "service": {"environment": "prod", "name": "shop", "version": "1.2.3"},
            "session": {"id": "79XxMEJxQ4"},
            "url": {"domain": "shop.example.com", "full": "https://shop.example.com/cart?step=2",
                    "path": "/cart", "query": "step=2", "scheme": "https"},
            "user_agent": {"original": UA},
            "view": {"id": "page-1", "title": "checkout"}
        })
    );
    // An event with keys of its own carries `meta` along in its `rum.extra`.
    assert_eq!(start.get_str("rum.extra.domain"), Some("app"));
    assert_eq!(start.get_str("rum.extra.meta.user.id"), Some("u1"));
    assert_eq!(log.get_str("rum.custom.data.level"), Some("warn"));
}

#[test]
fn an_items_trace_is_trace_id_and_span_id() {
    let decoded = decode_json(json!({
        "exceptions": [{"type": "Error", "value": "x", "trace": {"trace_id": "tr", "span_id": "sp"}}],
        "logs": [{"message": "m", "level": "info", "trace": {"trace_id": 7, "span_id": "sp", "flags": 1}}],
        "events": [{"name": "click", "trace": "tr"}]
    }))
    .unwrap();
    // In body order (`json!` sorts keys).
    let [event, error, log] = &decoded.events[..] else {
        panic!("three events")
    };
    assert_eq!(error.get_str("trace.id"), Some("tr"));
    assert_eq!(error.get_str("span.id"), Some("sp"));
    assert_eq!(error.get("rum.extra"), None, "nothing else was sent");
    // What is not a string id stays where it was sent.
    assert_eq!(log.get("trace.id"), None);
    assert_eq!(log.get_str("span.id"), Some("sp"));
    assert_eq!(
        log.get("rum.extra.trace"),
        Some(&json!({"trace_id": 7, "flags": 1}))
    );
    assert_eq!(event.get("trace.id"), None);
    assert_eq!(event.get_str("rum.extra.trace"), Some("tr"));
}

#[test]
fn a_web_vitals_measurement_with_two_vitals_makes_two_documents() {
    let decoded = decode_json(json!({
        "measurements": [{"type": "web-vitals", "values": {"lcp": 1200.5, "cls": 0.1, "delta": 3, "render_delay": 7},
            "context": {"id": "v6-1", "rating": "poor", "element": "#a", "navigation_type": 4},
            "timestamp": "2027-01-15T08:00:00.000Z", "trace": {"trace_id": "t"}}]
    }))
    .unwrap();
    // In body order (`json!` sorts keys: cls first).
    let [cls, lcp] = &decoded.events[..] else {
        panic!("two events")
    };
    assert_eq!(lcp.get_str("rum.vital.name"), Some("LCP"));
    assert_eq!(cls.get_str("rum.vital.name"), Some("CLS"));
    assert_eq!(cls.get("rum.vital.value"), Some(&json!(0.1)));
    assert_eq!(cls.get("rum.seq"), Some(&json!(0)));
    assert_eq!(lcp.get("rum.seq"), Some(&json!(1)), "distinct _ids");
    for e in [lcp, cls] {
        assert_eq!(e.get("rum.vital.delta"), Some(&json!(3)));
        assert_eq!(e.get_str("rum.vital.rating"), Some("poor"));
        assert_eq!(
            e.get("rum.vital.attribution"),
            Some(&json!({"render_delay": 7, "element": "#a", "navigation_type": 4}))
        );
        assert_eq!(e.get_str("trace.id"), Some("t"));
        assert_eq!(e.get("rum.extra.trace"), None);
        assert_eq!(e.timestamp_ms(), Some(NOW));
    }
}

#[test]
fn a_web_vitals_key_in_both_values_and_context_keeps_both_values() {
    let decoded = decode_json(json!({
        "measurements": [{"type": "web-vitals", "values": {"lcp": 1200.5, "render_delay": 7},
            "context": {"id": "v6-1", "render_delay": 9, "element": "#a"}}]
    }))
    .unwrap();
    let lcp = &decoded.events[0];
    assert_eq!(
        lcp.get("rum.vital.attribution"),
        Some(&json!({"render_delay": 7, "element": "#a"}))
    );
    assert_eq!(
        lcp.get("rum.extra.context"),
        Some(&json!({"render_delay": 9}))
    );
}

#[test]
fn an_item_of_many_keys_keeps_the_last_value_of_each() {
    // 32 pairs, a repeat past the scan, then a NESTED key that turns out to
    // be an object: its plain pair goes, and the repeat must still be found.
    let mut item = String::from(r#"{"context":0,"message":1"#);
    for i in 0..30 {
        item.push_str(&format!(r#","k{i}":{i}"#));
    }
    item.push_str(r#","message":"ok","context":{"step":"cart"}}"#);
    let body = format!(r#"{{"meta":{{}},"logs":[{item}]}}"#);
    let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
    let event = &decoded.events[0];
    assert_eq!(event.get_str("rum.custom.data.message"), Some("ok"));
    assert_eq!(event.get("rum.extra.message"), None);
    assert_eq!(event.get_str("rum.extra.context.step"), Some("cart"));
    assert_eq!(event.get("rum.extra.k29"), Some(&json!(29)));
}

#[test]
fn traces_are_counted_without_being_built_whatever_their_shape() {
    let spans = |traces: Value| {
        decode_json(json!({"meta": {}, "traces": traces}))
            .map(|d| d.dropped_spans)
            .map_err(|e| e.error_type)
    };
    assert_eq!(spans(Value::Null), Ok(0));
    assert_eq!(spans(json!({})), Ok(0));
    // What is not a list, or no object where one is expected, holds none.
    assert_eq!(spans(json!({"resourceSpans": 7})), Ok(0));
    assert_eq!(spans(json!({"resourceSpans": [1, "x", null, []]})), Ok(0));
    assert_eq!(
        spans(json!({"resourceSpans": [{"scopeSpans": {"spans": [1]}}]})),
        Ok(0)
    );
    // Spans are counted whatever they hold; other keys are skipped.
    assert_eq!(
        spans(json!({"resourceSpans": [
            {"resource": {"attributes": [{"key": "k"}]}, "scopeSpans": [{"spans": [1, {}, [], null]}, {"spans": "no"}]},
            {"scopeSpans": [{"scope": {"name": "fetch"}, "spans": [{"name": "GET"}]}]}
        ]})),
        Ok(5)
    );
    // A repeated key counts once, its last value, as a JSON object reads.
    let body =
        r#"{"meta":{},"traces":{"resourceSpans":[{"scopeSpans":[{"spans":[1,2],"spans":[3]}]}]}}"#;
    let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
    assert_eq!(decoded.dropped_spans, 1);
    // Not an object: refused; the limits hold inside what is skipped.
    assert_eq!(spans(json!("traces")), Err("invalid_payload"));
    assert_eq!(spans(json!([{}])), Err("invalid_payload"));
    assert_eq!(
        spans(json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "x".repeat(201)}]}]}]})),
        Err("string_too_long")
    );
    assert_eq!(
        spans(json!({"resourceSpans": [{"scopeSpans": [{"spans": [[[[[[[[1]]]]]]]]}]}]})),
        Err("too_deep")
    );
}

#[test]
fn unknown_kinds_are_kept_and_counted_and_traces_counted() {
    let decoded = decode_json(json!({
        "meta": {"session": {"id": "s"}},
        "teleports": [{"to": "mars"}],
        "traces": {"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "a"}, {"name": "b"}]}, {"spans": [{}]}]}]},
        "exceptions": [{"type": "Error", "value": "boom", "stacktrace": {"frames": [
            {"filename": "https://a.example/app.js", "function": "render", "lineno": 3, "colno": 14, "in_app": true}]}}]
    }))
    .unwrap();
    assert_eq!(decoded.unknown_kinds, 1);
    assert_eq!(decoded.dropped_spans, 3);
    let [error, custom] = &decoded.events[..] else {
        panic!("two events")
    };
    assert_eq!(
        error.get_str("error.stack_trace"),
        Some("Error: boom\n    at render (https://a.example/app.js:3:14)")
    );
    assert_eq!(
        error.get_str("rum.error.source"),
        Some("https://a.example/app.js")
    );
    assert_eq!(error.get("rum.error.column"), Some(&json!(14)));
    // A frame key the text cannot show: the frames are kept too.
    assert_eq!(
        error.get("rum.extra.stacktrace.frames.0.in_app"),
        None,
        "flattened paths do not index arrays"
    );
    assert!(error.get("rum.extra.stacktrace").is_some());
    assert_eq!(
        error.timestamp_ms(),
        Some(NOW),
        "no timestamp: the receive time"
    );
    assert_eq!(
        custom.get_str("rum.custom.original_type"),
        Some("teleports")
    );
    assert_eq!(
        custom.get("rum.extra.teleports"),
        Some(&json!([{"to": "mars"}]))
    );
    assert_eq!(custom.get_str("session.id"), Some("s"));

    // Without `meta.session.id`, the SDK's session header names the session.
    let with_header = RequestFacts {
        session_header: Some("fromHeader"),
        ..facts()
    };
    let body = json!({"meta": {}, "logs": [{"message": "m"}]}).to_string();
    let decoded = decode(body.as_bytes(), &with_header, &limits()).unwrap();
    assert_eq!(decoded.events[0].get_str("session.id"), Some("fromHeader"));
    let body =
        json!({"meta": {"session": {"id": "fromMeta"}}, "logs": [{"message": "m"}]}).to_string();
    let decoded = decode(body.as_bytes(), &with_header, &limits()).unwrap();
    assert_eq!(decoded.events[0].get_str("session.id"), Some("fromMeta"));
}

#[test]
fn wrong_types_and_limits_refuse_the_request_whole() {
    let cases = [
        (json!([1]), "invalid_payload"),
        (json!({"meta": []}), "invalid_payload"),
        (json!({"measurements": {}}), "invalid_payload"),
        (json!({"logs": [1]}), "invalid_payload"),
        (json!({"logs": [{"level": "info"}]}), "invalid_payload"),
        (
            json!({"measurements": [{"type": "x", "values": {"a": "1"}}]}),
            "invalid_payload",
        ),
        (
            json!({"measurements": [{"values": {"a": 1}}]}),
            "invalid_payload",
        ),
        (
            json!({"exceptions": [{"type": "Error"}]}),
            "invalid_payload",
        ),
        (json!({"events": [{"name": 5}]}), "invalid_payload"),
        (json!({"traces": [1]}), "invalid_payload"),
        (
            json!({"events": [{"name": "x".repeat(201)}]}),
            "string_too_long",
        ),
        (
            json!({"events": [{"name": "x", "attributes": [[[[[[[[1]]]]]]]]}]}),
            "too_deep",
        ),
        (
            json!({"events": vec![json!({"name": "x"}); 21]}),
            "too_many_items",
        ),
        (
            json!({"events": vec![json!({"name": "x"}); 15], "logs": vec![json!({"message": "m"}); 6]}),
            "too_many_items",
        ),
    ];
    for (body, error_type) in cases {
        let err = decode_json(body.clone()).unwrap_err();
        assert_eq!(err.error_type, error_type, "{body}: {}", err.message);
    }
    // A big `meta` would be copied into every document: bounded.
    let big = json!({"meta": {"user": {"a": "x".repeat(150), "b": vec!["y".repeat(150); 30]}}, "logs": [{"message": "m"}]});
    let err = decode_json(big).unwrap_err();
    assert_eq!(err.error_type, "context_too_large");
    assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    let err = decode_json(json!({"logs": [{"message": "ok"}, {"message": 1}]})).unwrap_err();
    assert_eq!(err.message, "logs[1].message must be a string");
    for raw in [&b"{\"meta\":{"[..], b"\xff", b"", b"  "] {
        let err = decode(raw, &facts(), &limits()).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST);
    }
    // Faro's own empty batch.
    assert!(decode_json(json!({"meta": meta()}))
        .unwrap()
        .events
        .is_empty());
}

#[test]
fn times_parse_and_clamp() {
    assert_eq!(
        parse_time("2027-01-15T08:00:00.000Z"),
        Some(1_800_000_000_000)
    );
    assert_eq!(
        parse_time("2027-01-15T09:00:00.000+01:00"),
        Some(1_800_000_000_000)
    );
    assert_eq!(parse_time("2027-13-15T08:00:00.000Z"), None);
    assert_eq!(parse_time("yesterday"), None);
    let decoded = decode(
        json!({"logs": [
            {"message": "future", "timestamp": "2099-01-01T00:00:00.000Z"},
            {"message": "bad", "timestamp": "soon"}
        ]})
        .to_string()
        .as_bytes(),
        &facts(),
        &FaroLimits {
            max_event_age_ms: 1000,
            ..limits()
        },
    )
    .unwrap();
    assert_eq!(decoded.events[0].timestamp_ms(), Some(NOW));
    assert_eq!(
        decoded.events[1].get_str("rum.extra.timestamp"),
        Some("soon")
    );
}

#[test]
fn timestamp_parts_read_as_str_parse_reads_them() {
    // What `parse_time` did per part before: all ASCII digits, then `str::parse`.
    let parsed = |part: &str| -> Option<u32> {
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let mut rng = fastrand::Rng::with_seed(11);
    let alphabet = ['0', '1', '5', '9', 'x', '+', '-', ' ', '/', ':'];
    for _ in 0..50_000 {
        // Parts are 2 to 4 bytes long in a timestamp.
        let len = rng.usize(1..5);
        let part: String = (0..len)
            .map(|_| {
                if rng.u8(..4) == 0 {
                    alphabet[rng.usize(..alphabet.len())]
                } else {
                    char::from(b'0' + rng.u8(..10))
                }
            })
            .collect();
        assert_eq!(digits(part.as_bytes()), parsed(&part), "{part:?}");
    }
}

#[test]
fn meta_is_held_to_the_limits_at_every_depth() {
    // `meta` is depth 2: with max_depth 10, eight more levels fit, nine do not.
    let nested = |levels: usize| {
        let mut value = json!(1);
        for _ in 0..levels {
            value = json!([value]);
        }
        value
    };
    let outcome = |body: Value| {
        decode_json(body)
            .map(|d| d.events.len())
            .map_err(|e| (e.error_type, e.message))
    };
    let logs = json!([{"message": "m"}]);
    assert_eq!(
        outcome(json!({"meta": {"user": {"a": nested(7)}}, "logs": logs})),
        Ok(1)
    );
    let too_deep = outcome(json!({"meta": {"user": {"a": nested(8)}}, "logs": logs}));
    assert_eq!(too_deep.map_err(|e| e.0), Err("too_deep"));
    assert_eq!(
        outcome(json!({"meta": {"user": {"a": "x".repeat(200)}}, "logs": logs})),
        Ok(1)
    );
    let too_long = outcome(json!({"meta": {"app": {"name": "x".repeat(201)}}, "logs": logs}));
    assert_eq!(too_long.map_err(|e| e.0), Err("string_too_long"));
    let long_key = outcome(json!({"meta": {"x".repeat(201): 1}, "logs": logs}));
    assert_eq!(long_key.map_err(|e| e.0), Err("string_too_long"));
    // A repeated section: the last one sent is the one mapped.
    let body =
        r#"{"meta":{"app":{"name":"first"},"app":{"name":"second"}},"logs":[{"message":"m"}]}"#;
    let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
    assert_eq!(decoded.events[0].get_str("service.name"), Some("second"));
}

#[test]
fn a_malformed_value_is_a_json_error_before_it_is_the_wrong_shape() {
    // A scalar where a container belongs is read first: broken, it is
    // invalid JSON; whole, it is the wrong shape.
    let cases: [(&str, &str); 10] = [
        (r#""unterminated"#, "invalid_json"),
        (r#""a string""#, "invalid_payload"),
        ("tru", "invalid_json"),
        ("-", "invalid_json"),
        (r#"{"logs": "x"#, "invalid_json"),
        (r#"{"logs": 5}"#, "invalid_payload"),
        (r#"{"logs": [nul]}"#, "invalid_json"),
        (r#"{"logs": [null]}"#, "invalid_payload"),
        (r#"{"traces": 1e}"#, "invalid_json"),
        (r#"{"traces": {"resourceSpans": "x}}"#, "invalid_json"),
    ];
    for (body, error_type) in cases {
        let err = decode(body.as_bytes(), &facts(), &limits()).unwrap_err();
        assert_eq!(err.error_type, error_type, "{body}: {}", err.message);
    }
}

#[test]
fn every_value_the_sdk_sent_is_in_the_documents() {
    let mut bodies: Vec<(String, Vec<u8>)> =
        (0..4).map(|i| (format!("body-{i}"), fixture(i))).collect();
    let equivalent = format!(
        "{}/testdata/sdk/faro/beacon-equivalent.json",
        env!("CARGO_MANIFEST_DIR")
    );
    bodies.push((
        "beacon-equivalent".into(),
        std::fs::read(equivalent).unwrap(),
    ));
    for (name, body) in &bodies {
        let mut sent: Value = serde_json::from_slice(body).unwrap();
        // OTLP spans are counted and dropped (`dropped_spans`).
        sent.as_object_mut().unwrap().remove("traces");
        // As sent, and with a key of its own added to every object.
        for input in kept_check::as_sent_and_probed(sent, 0) {
            let body = input.to_string();
            let decoded = decode(body.as_bytes(), &facts(), &limits())
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            // An item's `timestamp` is kept as `rum.client_ts` (epoch ms);
            // `@timestamp` is moved by the clock skew.
            let documents: Vec<Value> = decoded
                .events
                .iter()
                .flat_map(|e| {
                    let sent = e.client_ts_ms().map(|ms| Value::from(iso_millis(ms)));
                    std::iter::once(e.to_value()).chain(sent)
                })
                .collect();
            let dropped = [
                // The value of every event the SDK makes (docs/sdk.md).
                r#"events.*.domain = "browser""#,
                // The kinds that are a `rum.type` (page_view, resource, action,
                // web_vital).
                r#"events.*.name = "faro.performance.navigation""#,
                r#"events.*.name = "faro.performance.resource""#,
                r#"events.*.name = "faro.user.action""#,
                r#"measurements.*.type = "web-vitals""#,
            ];
            kept_check::assert_kept(name, &input, &documents, &dropped);
        }
    }
}

#[test]
fn an_item_of_many_keys_costs_lookups_in_proportion() {
    // Each kept key was put in with a lookup among the keys kept before it:
    // an 870 KB item of 80 000 keys took 43 s (debug build).
    let n = 4_000;
    let keys = |prefix: &str| -> String {
        (0..n)
            .map(|i| format!(r#""{prefix}{i}":1"#))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut l = limits();
    l.max_items = 10;
    let bodies = [
        format!(r#"{{"logs":[{{"message":"m",{}}}]}}"#, keys("k")),
        format!(
            r#"{{"events":[{{"name":"faro.performance.navigation","attributes":{{{}}}}}]}}"#,
            keys("k")
        ),
        format!(
            r#"{{"measurements":[{{"type":"web-vitals","values":{{"lcp":1,{}}},"context":{{{}}}}}]}}"#,
            keys("v"),
            keys("c")
        ),
    ];
    for body in bodies {
        crate::sources::json_tree::KEY_LOOKUPS.set(0);
        let decoded = decode(body.as_bytes(), &facts(), &l).unwrap();
        let looked_at = crate::sources::json_tree::KEY_LOOKUPS.get();
        let doc = decoded.events[0].to_value();
        assert!(
            doc.to_string().contains(&format!(r#""k{}":1"#, n - 1))
                || doc.to_string().contains(&format!(r#""c{}":1"#, n - 1)),
            "{doc}"
        );
        assert!(looked_at < 20 * n, "{looked_at} keys looked at for {n}");
    }
}

#[test]
fn a_column_without_a_line_keeps_the_frames() {
    // `file:line:col` shows a column only after a line: a frame with a
    // `colno` and no `lineno` was written as `file` alone, and the frames
    // (which held the column) were not kept.
    let decoded = decode_json(json!({
        "exceptions": [{"type": "Error", "value": "boom", "stacktrace": {"frames": [
            {"filename": "https://a.example/app.js", "function": "render", "lineno": 3, "colno": 14},
            {"filename": "https://a.example/lib.js", "function": "call", "colno": 7}]}}]
    }))
    .unwrap();
    let error = &decoded.events[0];
    assert_eq!(
        error.get_str("error.stack_trace"),
        Some("Error: boom\n    at render (https://a.example/app.js:3:14)\n    at call (https://a.example/lib.js)")
    );
    assert_eq!(
        error.get("rum.extra.stacktrace.frames"),
        Some(&json!([
            {"filename": "https://a.example/app.js", "function": "render", "lineno": 3, "colno": 14},
            {"filename": "https://a.example/lib.js", "function": "call", "colno": 7}
        ]))
    );
}

#[test]
fn a_line_or_column_past_i64_is_not_put_in_a_long_field() {
    // Elasticsearch's `long` is signed: a first frame's `lineno` of 2^63 in
    // `rum.error.line` made the whole error document a mapping error at the
    // sink (dead-lettered). The stack text still shows it.
    let decoded = decode_json(json!({
        "exceptions": [{"type": "Error", "value": "boom", "stacktrace": {"frames": [
            {"filename": "https://a.example/app.js", "function": "render",
             "lineno": 9_223_372_036_854_775_808_u64, "colno": u64::MAX}]}}]
    }))
    .unwrap();
    let error = &decoded.events[0];
    assert_eq!(error.get("rum.error.line"), None);
    assert_eq!(error.get("rum.error.column"), None);
    assert_eq!(
        error.get_str("error.stack_trace"),
        Some("Error: boom\n    at render (https://a.example/app.js:9223372036854775808:18446744073709551615)")
    );
    let decoded = decode_json(json!({
        "exceptions": [{"type": "Error", "value": "boom", "stacktrace": {"frames": [
            {"filename": "https://a.example/app.js", "lineno": i64::MAX, "colno": 1}]}}]
    }))
    .unwrap();
    assert_eq!(
        decoded.events[0].get("rum.error.line"),
        Some(&json!(i64::MAX))
    );
}

#[test]
fn a_repeated_nested_key_costs_lookups_in_proportion() {
    // Each `context` object took the item's other pairs out of that name,
    // a pass over them all: a 950 KB item of 40 000 keys and 40 000
    // `"context":{}` took 23 s (debug build).
    let n = 4_000;
    let keys = (0..n)
        .map(|i| format!(r#""k{i}":1"#))
        .collect::<Vec<_>>()
        .join(",");
    let contexts = vec![r#""context":{}"#; n].join(",");
    let body =
        format!(r#"{{"logs":[{{"message":"m",{keys},{contexts},"context":{{"last":"wins"}}}}]}}"#);
    crate::sources::json_tree::KEY_LOOKUPS.set(0);
    let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
    let looked_at = crate::sources::json_tree::KEY_LOOKUPS.get();
    let log = &decoded.events[0];
    assert_eq!(log.get("rum.extra.context"), Some(&json!({"last": "wins"})));
    assert_eq!(log.get(&format!("rum.extra.k{}", n - 1)), Some(&json!(1)));
    assert!(looked_at < 20 * n, "{looked_at} keys looked at for {n}");
    // Whichever comes last wins, an object or another value.
    for (item, expected) in [
        (
            r#"{"message":"m","context":{"a":1},"context":"x"}"#,
            json!("x"),
        ),
        (
            r#"{"message":"m","context":"x","context":{"a":1}}"#,
            json!({"a": 1}),
        ),
        (
            r#"{"message":"m","context":{"a":1},"context":"x","context":{"b":2}}"#,
            json!({"b": 2}),
        ),
    ] {
        let body = format!(r#"{{"logs":[{item}]}}"#);
        let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
        assert_eq!(
            decoded.events[0].get("rum.extra.context"),
            Some(&expected),
            "{item}"
        );
    }
}

#[test]
fn a_browser_clock_two_hours_behind_is_corrected_as_a_beacons_is() {
    // Faro sends no time of sending: the newest item stands in for it, as
    // the newest `ts` does for a beacon without `sent_at`. Uncorrected, the
    // items of a browser two hours behind were stored two hours in the
    // past, out of every "last 15 minutes" view, while the same visit
    // through the project's client was stored at its time.
    let decoded = decode_json(json!({
        "logs": [{"message": "a", "level": "warn", "timestamp": "2027-01-15T06:00:00.000Z"},
                 {"message": "b", "level": "warn", "timestamp": "2027-01-15T05:59:58.500Z"},
                 {"message": "c", "level": "warn"}]
    }))
    .unwrap();
    let times: Vec<Option<i64>> = decoded.events.iter().map(|e| e.timestamp_ms()).collect();
    assert_eq!(times, [Some(NOW), Some(NOW - 1_500), Some(NOW)]);
    // The browser's own time is kept as sent (and stays in the `_id`).
    let sent: Vec<Option<i64>> = decoded.events.iter().map(|e| e.client_ts_ms()).collect();
    assert_eq!(sent, [Some(NOW - 7_200_000), Some(NOW - 7_201_500), None]);
}

/// The stack text is made of the frames, so it was not held to
/// `max_string_bytes` as every string sent is: `{}` (3 bytes of body) wrote
/// `\n    at <anonymous>` (19), and a 900 KB body of frames made one 6 MB
/// document. Frames are written while the text stays within the limit;
/// the frames are then kept as sent, in `rum.extra.stacktrace`.
#[test]
fn the_stack_text_stays_within_max_string_bytes() {
    let frames: Vec<Value> = (0..40)
        .map(|i| json!({"filename": "https://a.example/app.js", "lineno": i}))
        .collect();
    let decoded = decode_json(json!({
        "meta": meta(),
        "exceptions": [{"type": "Error", "value": "boom", "stacktrace": {"frames": frames}}]
    }))
    .unwrap();
    let error = &decoded.events[0];
    let stack = error.get_str("error.stack_trace").unwrap();
    assert!(
        stack.len() <= limits().max_string_bytes,
        "{} bytes",
        stack.len()
    );
    assert!(
        stack.starts_with("Error: boom\n    at https://a.example/app.js:0\n"),
        "{stack}"
    );
    assert_eq!(
        error.get("rum.extra.stacktrace"),
        Some(&json!({"frames": frames})),
        "the frames the text does not show are kept"
    );
}

/// A type and a message each within `max_string_bytes` made a stack text
/// of up to twice it: the text's head is cut at the limit.
#[test]
fn a_long_type_and_message_keep_the_stack_text_within_max_string_bytes() {
    let max = limits().max_string_bytes;
    let long = "é".repeat(max / 2);
    let decoded = decode_json(json!({
        "meta": meta(),
        "exceptions": [{"type": long, "value": long, "stacktrace": {"frames": [{"filename": "a.js", "lineno": 1}]}}]
    }))
    .unwrap();
    let error = &decoded.events[0];
    let stack = error.get_str("error.stack_trace").unwrap();
    assert!(stack.len() <= max, "{} bytes", stack.len());
    assert_eq!(error.get_str("error.message"), Some(long.as_str()));
    assert_eq!(error.get_str("error.type"), Some(long.as_str()));
}
