use super::*;
use crate::sources::kept_check;
use serde_json::json;

const NOW: i64 = 1_700_000_000_000;
const REFERER: &str = "https://shop.example.com/";

fn facts() -> RequestFacts<'static> {
    RequestFacts {
        received_at_ms: NOW,
        client_ip: "203.0.113.9".parse().unwrap(),
        user_agent: Some("Mozilla/5.0 test"),
        referer: Some(REFERER),
    }
}

fn limits() -> MetricLimits {
    MetricLimits {
        max_metrics: 10,
        max_string_bytes: 100,
        max_depth: 6,
        keep_entries: false,
        client_ip: ClientIpMode::Full,
    }
}

fn decode_json(v: Value) -> Result<Decoded, DecodeError> {
    decode(v.to_string().as_bytes(), &facts(), &limits())
}

fn lcp() -> Value {
    json!({
        "name": "LCP", "value": 1234.5, "rating": "good", "delta": 1234.5,
        "id": "v5-1699999990000-8765432109876", "navigationType": "navigate",
        "entries": [{"name": "", "entryType": "largest-contentful-paint", "startTime": 1234.5}],
        "attribution": {"target": "#hero", "timeToFirstByte": 80.2, "lcpEntry": {"startTime": 1234.5}}
    })
}

#[test]
fn one_metric_becomes_one_web_vital() {
    let decoded = decode_json(lcp()).unwrap();
    assert_eq!(decoded.events.len(), 1);
    assert_eq!(decoded.dropped_entries, 1);
    assert_eq!(decoded.page_url.as_deref(), Some(REFERER));
    let doc = decoded.events[0].to_value();
    assert_eq!(
        doc,
        json!({
            "@timestamp": "2023-11-14T22:13:20.000Z",
            "client": {"ip": "203.0.113.9"},
            "event": {"dataset": "rum.web_vital", "ingested": "2023-11-14T22:13:20.000Z", "kind": "event"},
            "rum": {
                "client_ts": 1_699_999_990_000_i64,
                "sdk": {"name": "web-vitals", "version": "5"},
                "seq": 0,
                "type": "web_vital",
                "vital": {
                    "attribution": {"lcpEntry": {"startTime": 1234.5}, "target": "#hero", "timeToFirstByte": 80.2},
                    "delta": 1234.5, "id": "v5-1699999990000-8765432109876", "name": "LCP",
                    "navigation_type": "navigate", "rating": "good", "value": 1234.5
                }
            },
            "url": {"domain": "shop.example.com", "full": REFERER, "path": "/", "scheme": "https"},
            "user_agent": {"original": "Mozilla/5.0 test"}
        })
    );
}

#[test]
fn an_array_shares_one_context_and_keeps_unknown_keys() {
    let mut cls = json!({"name": "CLS", "value": 0.12, "rating": "needs-improvement", "delta": 0.02,
        "id": "v5-1699999990000-1", "navigationType": "reload", "navigationId": 3, "debug": {"a": 1}});
    cls["rating"] = json!(7); // wrong type: kept aside, not dropped
    let decoded = decode_json(json!([lcp(), cls, {"name": "FID", "value": 3}])).unwrap();
    let [first, second, third] = &decoded.events[..] else {
        panic!("three events")
    };
    assert!(crate::event::Counted::ptr_eq(
        first.context(),
        second.context()
    ));
    assert_eq!(second.get("rum.seq"), Some(&json!(1)));
    assert_eq!(
        second.get("rum.extra"),
        Some(&json!({"navigationId": 3, "debug": {"a": 1}, "rating": 7}))
    );
    assert_eq!(second.get("rum.vital.rating"), None);
    assert_eq!(second.get_str("rum.vital.navigation_type"), Some("reload"));
    assert_eq!(third.get_str("rum.vital.name"), Some("FID"));
    assert_eq!(third.client_ts_ms(), None);
    assert_eq!(third.get("rum.extra"), None);
}

#[test]
fn unknown_names_are_custom_events_counted() {
    let decoded = decode_json(json!({"name": "TBT", "value": 300, "rating": "poor"})).unwrap();
    assert_eq!(decoded.unknown_names, 1);
    let event = &decoded.events[0];
    assert_eq!(event.get_str("rum.type"), Some("custom"));
    assert_eq!(event.get_str("rum.custom.name"), Some("TBT"));
    assert_eq!(event.get("rum.custom.value"), Some(&json!(300)));
    assert_eq!(event.get("rum.extra.rating"), Some(&json!("poor")));
}

#[test]
fn the_page_comes_from_the_body_else_the_referer() {
    let mut soft = lcp();
    soft["navigationURL"] = json!("https://shop.example.com/cart?step=2");
    let mut relative = lcp();
    relative["page"] = json!("/checkout");
    let decoded = decode_json(json!([soft, lcp(), relative])).unwrap();
    let urls: Vec<_> = decoded
        .events
        .iter()
        .map(|e| (e.get_str("url.full"), e.get_str("url.query")))
        .collect();
    assert_eq!(
        urls,
        [
            (Some("https://shop.example.com/cart?step=2"), Some("step=2")),
            (Some(REFERER), None),
            (Some("https://shop.example.com/checkout"), None),
        ]
    );
    // The key the URL came from is not kept twice; the others are kept.
    assert_eq!(decoded.events[0].get("rum.extra"), None);
    assert_eq!(
        decoded.page_url.as_deref(),
        Some("https://shop.example.com/cart?step=2")
    );
    let mut both = lcp();
    both["url"] = json!("https://a.example/");
    both["page_location"] = json!("https://b.example/");
    let event = &decode_json(both).unwrap().events[0];
    assert_eq!(event.get_str("url.full"), Some("https://a.example/"));
    assert_eq!(
        event.get_str("rum.extra.page_location"),
        Some("https://b.example/")
    );

    let no_referer = RequestFacts {
        referer: None,
        ..facts()
    };
    let decoded = decode(lcp().to_string().as_bytes(), &no_referer, &limits()).unwrap();
    assert_eq!(decoded.events[0].get("url.full"), None);
    // A metric without a page does not take the first metric's.
    let mut first = lcp();
    first["url"] = json!("https://a.example/x?y=1");
    let body = json!([first, lcp()]).to_string();
    let decoded = decode(body.as_bytes(), &no_referer, &limits()).unwrap();
    assert_eq!(decoded.events[0].get_str("url.query"), Some("y=1"));
    assert_eq!(decoded.events[1].to_value().get("url"), None);
}

#[test]
fn entries_are_counted_not_built_and_still_checked() {
    let mut many = lcp();
    many["entries"] = json!([{"a": 1}, {"b": [2, 3]}, "x"]);
    let mut one = lcp();
    one["entries"] = json!({"not": "an array"});
    let mut none = lcp();
    none["entries"] = Value::Null;
    let decoded = decode_json(json!([lcp(), many, one, none])).unwrap();
    // 1 + 3 + 1 (not an array) + 0 (null)
    assert_eq!(decoded.dropped_entries, 5);
    // Of a repeated `entries`, the last one counts.
    let body = r#"[{"name":"LCP","value":1,"entries":[1,2],"entries":[3]},
        {"name":"CLS","value":0,"entries":[1,2],"entries":null}]"#;
    let decoded = decode(body.as_bytes(), &facts(), &limits()).unwrap();
    assert_eq!(decoded.dropped_entries, 1);
    assert!(decoded
        .events
        .iter()
        .all(|e| e.get("rum.extra.entries").is_none()));
    // Skipped entries still answer to the limits: too deep, too long.
    let mut deep = lcp();
    deep["entries"] = json!([[[[[[1]]]]]]);
    let Err(error) = decode_json(deep) else {
        panic!("too deep")
    };
    assert_eq!(error.error_type, "too_deep");
    let mut long = lcp();
    long["entries"] = json!([{"name": "x".repeat(101)}]);
    let Err(error) = decode_json(long) else {
        panic!("string too long")
    };
    assert_eq!(error.error_type, "string_too_long");
}

#[test]
fn metrics_of_one_page_resolve_its_url_once_and_each_keeps_its_own() {
    let at = |page: &str| {
        let mut m = lcp();
        m["page"] = json!(page);
        m
    };
    let body = json!([at("/a?1"), at("/a?1"), at("/b"), at("/a?1")]);
    let decoded = decode_json(body).unwrap();
    let urls: Vec<_> = decoded
        .events
        .iter()
        .map(|e| e.get_str("url.full"))
        .collect();
    assert_eq!(
        urls,
        [
            Some("https://shop.example.com/a?1"),
            Some("https://shop.example.com/a?1"),
            Some("https://shop.example.com/b"),
            Some("https://shop.example.com/a?1"),
        ]
    );
    assert!(decoded
        .events
        .iter()
        .all(|e| e.get("rum.extra.page").is_none()));
}

#[test]
fn entries_are_kept_when_asked() {
    let keep = MetricLimits {
        keep_entries: true,
        ..limits()
    };
    let decoded = decode(lcp().to_string().as_bytes(), &facts(), &keep).unwrap();
    assert_eq!(decoded.dropped_entries, 0);
    assert_eq!(
        decoded.events[0].get("rum.extra.entries.0.entryType"),
        None,
        "arrays are kept whole"
    );
    assert_eq!(
        decoded.events[0].get("rum.extra.entries"),
        Some(&lcp()["entries"])
    );
}

#[test]
fn refuses_bad_requests_whole() {
    let cases = [
        (json!(1), "invalid_metric"),
        (json!("LCP"), "invalid_metric"),
        (json!([lcp(), 1]), "invalid_metric"),
        (json!([lcp(), [lcp()]]), "invalid_metric"),
        (json!({"value": 1}), "invalid_metric"),
        (json!({"name": 1, "value": 1}), "invalid_metric"),
        (
            json!([lcp(), {"name": "CLS", "value": "0.1"}]),
            "invalid_metric",
        ),
        (
            json!({"name": "LCP", "value": 1, "x": "y".repeat(101)}),
            "string_too_long",
        ),
        (
            json!({"name": "LCP", "value": 1, "x": [[[[[[1]]]]]]}),
            "too_deep",
        ),
        (json!(vec![lcp(); 11]), "too_many_metrics"),
    ];
    for (body, error_type) in cases {
        let err = decode_json(body.clone()).unwrap_err();
        assert_eq!(err.error_type, error_type, "{body}: {}", err.message);
    }
    let err = decode_json(json!(vec![lcp(); 11])).unwrap_err();
    assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
    for raw in [&b"{\"name\":\"LCP\","[..], b"\xff\xfe", b"", b"  ", b"[] x"] {
        let err = decode(raw, &facts(), &limits()).unwrap_err();
        assert_eq!(err.status(), http::StatusCode::BAD_REQUEST, "{raw:?}");
    }
    // An empty array is well-formed and carries nothing.
    assert!(decode(b"[]", &facts(), &limits())
        .unwrap()
        .events
        .is_empty());
}

#[test]
fn ids_give_the_library_version_and_the_browsers_time() {
    assert_eq!(sdk_version("v4-1700000000000-123"), Some("4".to_owned()));
    assert_eq!(sdk_version("x4-1"), None);
    assert_eq!(sdk_version("v-1"), None);
    assert_eq!(id_time("v4-1700000000000-123"), Some(1_700_000_000_000));
    assert_eq!(id_time("v4-99999999999999-1"), None);
    assert_eq!(id_time("custom"), None);
    assert_eq!(id_time("order-1700000000000-1"), None);
    assert_eq!(id_time("v4-170000000000-1"), None);
    // No random part, no `-` at all, an empty middle.
    assert_eq!(id_time("v5-1700000000000"), Some(1_700_000_000_000));
    assert_eq!(id_time("v5"), None);
    assert_eq!(sdk_version("v5"), Some("5".to_owned()));
    assert_eq!(id_time("v5--1700000000000"), None);
    assert_eq!(sdk_version("v1234-1700000000000-1"), None);
}

// ---- bodies the real library sent (tests/browser/web-vitals, WEB_VITALS_FIXTURES=write) ----

/// `testdata/sdk/web-vitals/<name>`: web-vitals 6.2.3 in headless Chromium 156.
fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/testdata/sdk/web-vitals/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decode_fixture(name: &str) -> Decoded {
    let facts = RequestFacts {
        // What Chromium sent: another origin gets only the page's origin.
        referer: Some("http://127.0.0.1:38589/"),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36"),
        ..facts()
    };
    decode(&fixture(name), &facts, &fixture_limits()).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

/// The limits the fixtures are decoded with.
fn fixture_limits() -> MetricLimits {
    MetricLimits {
        max_metrics: 50,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        keep_entries: false,
        client_ip: ClientIpMode::Full,
    }
}

#[test]
fn fixture_lcp_with_attribution() {
    let sent: Value = serde_json::from_slice(&fixture("beacon-2.json")).unwrap();
    let decoded = decode_fixture("beacon-2.json");
    assert_eq!((decoded.events.len(), decoded.dropped_entries), (1, 1));
    let doc = decoded.events[0].to_value();
    let page = "http://127.0.0.1:38589/?mode=beacon";
    assert_eq!(
        doc["rum"],
        json!({
            "type": "web_vital",
            "seq": 0,
            "client_ts": 1_796_046_500_057_i64,
            "sdk": {"name": "web-vitals", "version": "6"},
            "vital": {
                "name": "LCP", "value": 588, "rating": "good", "delta": 588,
                "id": "v6-1796046500057-8730818160005", "navigation_type": "navigate",
                // Kept as sent, performance entries and all.
                "attribution": sent["attribution"],
            },
            "extra": {"navigationId": 9486, "navigationStartTime": 0},
        })
    );
    assert_eq!(
        doc["url"],
        json!({"full": page, "scheme": "http", "domain": "127.0.0.1", "port": 38589, "path": "/", "query": "mode=beacon"})
    );
    assert_eq!(doc["event"]["dataset"], "rum.web_vital");
    assert_eq!(doc["client"]["ip"], "203.0.113.9");
    assert_eq!(
        doc["rum"]["vital"]["attribution"]["navigationEntry"]["serverTiming"],
        json!([])
    );
    assert_eq!(decoded.page_url.as_deref(), Some(page));
}

#[test]
fn fixture_cls_and_inp_with_attribution() {
    let cls = decode_fixture("beacon-4.json").events.remove(0);
    assert_eq!(cls.get_str("rum.vital.name"), Some("CLS"));
    assert_eq!(
        cls.get("rum.vital.value"),
        Some(&json!(0.07389322916666666))
    );
    assert_eq!(
        cls.get_str("rum.vital.attribution.largestShiftTarget"),
        Some("html>body")
    );
    assert_eq!(
        cls.get_str("rum.vital.attribution.loadState"),
        Some("complete")
    );
    let inp = decode_fixture("beacon-3.json").events.remove(0);
    assert_eq!(inp.get_str("rum.vital.name"), Some("INP"));
    assert_eq!(inp.get("rum.vital.value"), Some(&json!(216)));
    assert_eq!(
        inp.get_str("rum.vital.attribution.interactionTarget"),
        Some("#slow")
    );
    assert_eq!(
        inp.get_str("rum.vital.attribution.interactionType"),
        Some("pointer")
    );
    assert!(inp.get("rum.extra.entries").is_none());
}

#[test]
fn fixture_array_from_the_readme_queue() {
    let decoded = decode_fixture("fetch-0.json");
    assert_eq!(decoded.unknown_names, 0);
    assert_eq!(decoded.dropped_entries, 6, "1 each, 2 for INP");
    let summary: Vec<_> = decoded
        .events
        .iter()
        .map(|e| {
            (
                e.get_str("rum.vital.name").unwrap(),
                e.get("rum.vital.value").and_then(Value::as_f64).unwrap(),
                e.get("rum.seq").cloned().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("TTFB", 114.5, json!(0)),
            ("FCP", 192.0, json!(1)),
            ("LCP", 192.0, json!(2)),
            ("INP", 168.0, json!(3)),
            ("CLS", 0.07389322916666666, json!(4)),
        ]
    );
    for event in &decoded.events {
        assert!(crate::event::Counted::ptr_eq(
            event.context(),
            decoded.events[0].context()
        ));
        assert_eq!(
            event.get_str("url.full"),
            Some("http://127.0.0.1:42147/?mode=fetch")
        );
        assert_eq!(event.get_str("rum.sdk.version"), Some("6"));
        assert!(event.get("rum.vital.attribution").is_none());
        // The URL's key is in url.full; the library's other keys are kept.
        assert_eq!(event.get("rum.extra.navigationURL"), None);
        assert_eq!(event.get("rum.extra.navigationId"), Some(&json!(3117)));
    }
}

#[test]
fn every_fixture_decodes_to_rated_vitals() {
    let dir = format!("{}/testdata/sdk/web-vitals", env!("CARGO_MANIFEST_DIR"));
    let mut seen = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".json") || name.ends_with(".meta.json") {
            continue;
        }
        for event in decode_fixture(&name).events {
            seen += 1;
            assert_eq!(event.get_str("rum.type"), Some("web_vital"), "{name}");
            assert!(
                event
                    .get("rum.vital.value")
                    .and_then(Value::as_f64)
                    .unwrap()
                    > 0.0,
                "{name}"
            );
            assert!(event.get_str("rum.vital.rating").is_some(), "{name}");
            assert!(event.client_ts_ms().is_some(), "{name}");
        }
    }
    assert_eq!(seen, 10);
}

#[test]
fn client_ip_follows_the_sources_privacy_mode() {
    let body = lcp().to_string();
    let stored = |mode| {
        let limits = MetricLimits {
            client_ip: mode,
            ..limits()
        };
        let event = decode(body.as_bytes(), &facts(), &limits)
            .unwrap()
            .events
            .remove(0);
        assert_eq!(
            event.context().client_address(),
            Some("203.0.113.9".parse().unwrap()),
            "the whole address stays in memory for geoip"
        );
        event.get_str("client.ip").map(str::to_owned)
    };
    assert_eq!(
        stored(ClientIpMode::Truncated).as_deref(),
        Some("203.0.113.0")
    );
    assert_eq!(stored(ClientIpMode::Full).as_deref(), Some("203.0.113.9"));
    assert_eq!(stored(ClientIpMode::None), None);
}

#[test]
fn a_malformed_value_is_a_json_error_before_it_is_the_wrong_shape() {
    // A scalar where a metric belongs is read first: broken, it is invalid
    // JSON; whole, it is the wrong shape.
    let cases: [(&str, &str); 6] = [
        (r#""unterminated"#, "invalid_json"),
        ("12", "invalid_metric"),
        ("1.", "invalid_json"),
        (r#"[{"name": "LCP", "value": 1}, fals]"#, "invalid_json"),
        (r#"[{"name": "LCP", "value": 1}, false]"#, "invalid_metric"),
        (r#"[[1]]"#, "invalid_metric"),
    ];
    for (body, error_type) in cases {
        let err = decode(body.as_bytes(), &facts(), &limits()).unwrap_err();
        assert_eq!(err.error_type, error_type, "{body}: {}", err.message);
    }
}

/// `testdata/sdk-equivalent/web-vitals.json`, written by hand for the
/// benchmarks (`examples/sdk_instructions web_vitals_equivalent`): the four
/// vitals of `testdata/beacons/realistic-10-events.json` as `Metric`
/// objects. It must stay those vitals, or the comparison means nothing.
fn equivalent_body() -> Vec<u8> {
    let path = format!(
        "{}/testdata/sdk-equivalent/web-vitals.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_beacon_equivalent_body_holds_the_beacons_vitals() {
    let facts = RequestFacts {
        referer: Some("https://shop.example.com/product/42?ref=home"),
        ..facts()
    };
    let decoded = decode(&equivalent_body(), &facts, &fixture_limits()).unwrap();
    let vitals: Vec<(&str, f64, &str)> = decoded
        .events
        .iter()
        .map(|e| {
            (
                e.get_str("rum.vital.name").unwrap(),
                e.get("rum.vital.value").and_then(Value::as_f64).unwrap(),
                e.get_str("rum.vital.rating").unwrap(),
            )
        })
        .collect();
    assert_eq!(
        vitals,
        [
            ("LCP", 1234.5, "good"),
            ("CLS", 0.042, "good"),
            ("FCP", 812.3, "good"),
            ("INP", 96.0, "good")
        ]
    );
}

#[test]
fn every_value_the_library_sent_is_in_the_documents() {
    // With `keep_entries`: dropping the PerformanceEntry objects is the
    // counted default.
    let limits = MetricLimits {
        keep_entries: true,
        ..fixture_limits()
    };
    let mut bodies: Vec<(String, Vec<u8>)> = (0..5)
        .map(|i| format!("beacon-{i}.json"))
        .chain(["fetch-0.json".to_owned()])
        .map(|name| {
            let body = fixture(&name);
            (name, body)
        })
        .collect();
    bodies.push(("equivalent".into(), equivalent_body()));
    for (name, body) in &bodies {
        // As sent, and with a key of its own added to every object.
        let sent: Value = serde_json::from_slice(body).unwrap();
        for input in kept_check::as_sent_and_probed(sent, 0) {
            let body = input.to_string();
            let decoded = decode(body.as_bytes(), &facts(), &limits)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let documents: Vec<Value> = decoded.events.iter().map(Event::to_value).collect();
            kept_check::assert_kept(name, &input, &documents, &[]);
        }
    }
}
