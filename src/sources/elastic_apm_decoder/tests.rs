//! Tests of the elastic_apm_rum decoder on the real agent fixtures (v2 and
//! v3, page loads, spans, errors, bad input), kept together with their
//! helpers and expected documents: the reason this file is over 600 lines.

use std::sync::Arc;

use http::StatusCode;
use serde_json::{json, Value};

use super::*;
use crate::sources::kept_check;

const NOW: i64 = 1_700_000_000_000;
const UA: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0.0.0 Safari/537.36";

fn facts(version: ApiVersion) -> RequestFacts<'static> {
    RequestFacts {
        received_at_ms: NOW,
        client_ip: "203.0.113.9".parse().unwrap(),
        user_agent: Some(UA),
        version,
    }
}

fn limits() -> ApmLimits {
    ApmLimits {
        max_events: 100,
        max_event_bytes: 4096,
        max_string_bytes: 1024,
        max_depth: 16,
        keep_breakdown: false,
        max_context_bytes: 64 * 1024,
        client_ip: ClientIpMode::Full,
        label_names: Arc::new(LabelNames::first_seen(
            crate::sources::elastic_apm_rum::DEFAULT_MAX_LABEL_NAMES,
        )),
    }
}

/// `testdata/sdk/elastic-apm-rum/<name>`: @elastic/apm-rum 5.17.5 in
/// headless Chromium 156 (tests/browser/elastic-apm-rum, APM_RUM_FIXTURES=write).
fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/testdata/sdk/elastic-apm-rum/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn decode_fixture(name: &str) -> Decoded {
    let version = if name.starts_with("v3") {
        ApiVersion::V3
    } else {
        ApiVersion::V2
    };
    decode(&fixture(name), &facts(version), &limits()).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

fn get<'e>(event: &'e Event, path: &str) -> Option<&'e Value> {
    event.get(path)
}

fn vital(event: &Event) -> (&str, f64) {
    (
        event.get_str("rum.vital.name").unwrap(),
        get(event, "rum.vital.value")
            .and_then(Value::as_f64)
            .unwrap(),
    )
}

fn types(decoded: &Decoded) -> Vec<&str> {
    decoded
        .events
        .iter()
        .map(|e| e.get_str("rum.type").unwrap())
        .collect()
}

#[test]
fn fixture_v3_page_load_is_a_page_view_its_vitals_and_spans() {
    let decoded = decode_fixture("v3-1.ndjson");
    assert_eq!((decoded.accepted, decoded.errors.len()), (1, 0));
    assert_eq!(
        decoded.dropped_breakdowns, 3,
        "x.me: Request, Response, Processing"
    );
    assert_eq!(
        types(&decoded),
        [
            "page_view",
            "web_vital",
            "web_vital",
            "web_vital",
            "web_vital",
            "web_vital",
            "custom",
            "custom",
            "resource"
        ]
    );
    let page = "http://127.0.0.1:39925/?v=3";
    assert_eq!(decoded.page_url.as_deref(), Some(page));
    let view = decoded.events[0].to_value();
    assert_eq!(view["view"]["id"], "69fc13f7596f5fa4");
    assert_eq!(view["session"]["id"], "35295d4dc074ab01");
    assert_eq!(
        view["service"],
        json!({"name": "shop-frontend", "version": "1.4.2", "environment": "test"})
    );
    assert_eq!(view["url"]["full"], page);
    assert_eq!(view["url"]["query"], "v=3");
    assert_eq!(view["user_agent"]["original"], UA);
    assert_eq!(view["client"]["ip"], "203.0.113.9");
    assert_eq!(view["event"]["dataset"], "rum.page_view");
    assert_eq!(
        view["rum"]["nav"],
        json!({"dns": 0.0, "tcp": 0.0, "ttfb": 173.0, "response": 6.0, "dom_interactive": 249.0,
               "dom_content_loaded": 249.0, "dom_complete": 250.0, "load": 250.0,
               "transfer_size": 2057, "encoded_size": 1757, "decoded_size": 1757})
    );
    assert_eq!(
        view["rum"]["sdk"],
        json!({"name": "rum-js", "version": "5.17.5"})
    );
    assert_eq!(view["rum"].get("sample_rate"), None, "sent sampled or not");
    assert_eq!(view["rum"]["seq"], 0);
    // What has no field of its own is kept, abbreviations spelled out.
    let extra = &view["rum"]["extra"];
    assert_eq!(extra["name"], "home");
    assert_eq!(extra["duration"], 296);
    assert_eq!(extra["sampled"], true);
    assert_eq!(extra["sample_rate"], 1);
    assert_eq!(extra["session"], json!({"sequence": 1}));
    assert_eq!(extra.get("trace_id"), None, "it is trace.id");
    assert_eq!(extra.get("id"), None, "it is transaction.id");
    assert_eq!(extra["marks"]["navigationTiming"]["requestStart"], 2);
    assert_eq!(extra["marks"]["agent"]["largestContentfulPaint"], 296);
    assert_eq!(
        extra.get("metadata"),
        None,
        "language javascript is implied"
    );

    let vitals: Vec<(&str, f64)> = decoded.events[1..6].iter().map(vital).collect();
    assert_eq!(
        vitals,
        [
            ("TTFB", 173.0),
            ("FCP", 295.0),
            ("LCP", 296.0),
            ("CLS", 0.07389322916666666),
            ("TBT", 0.0)
        ]
    );
    for event in &decoded.events {
        assert!(crate::event::Counted::ptr_eq(
            event.context(),
            decoded.events[0].context()
        ));
        assert_eq!(event.get_str("view.id"), Some("69fc13f7596f5fa4"));
        assert_eq!(event.get_str("url.full"), Some(page));
        // The ids the backend's traces share, on every event of the page load.
        assert_eq!(
            event.get_str("trace.id"),
            Some("356986e407545b29c37755009d9d3e6d")
        );
        assert_eq!(event.get_str("transaction.id"), Some("69fc13f7596f5fa4"));
    }
    assert_eq!(decoded.events[0].get_str("span.id"), None);
    let navigation = &decoded.events[6];
    assert_eq!(
        navigation.get_str("rum.custom.name"),
        Some("Requesting and receiving the document")
    );
    assert_eq!(
        navigation.get_str("rum.custom.original_type"),
        Some("hard-navigation")
    );
    assert_eq!(get(navigation, "rum.custom.value"), Some(&json!(177)));
    assert_eq!(get(navigation, "rum.extra.start"), Some(&json!(2)));
    assert_eq!(
        get(navigation, "rum.extra.context.destination.port"),
        Some(&json!(39925))
    );
    let script = decoded.events[8].to_value();
    assert_eq!(
        script["rum"]["resource"],
        json!({"name": "http://127.0.0.1:39925/elastic-apm-rum.umd.js", "initiator_type": "script",
               "start": 190, "duration": 33, "transfer_size": 603742, "encoded_size": 603442, "decoded_size": 603442})
    );
    assert_eq!(script["rum"]["seq"], 8);
    assert_eq!(script["span"]["id"], "38ca2e8e1a743497");
    assert_eq!(script["rum"]["extra"].get("id"), None);
}

#[test]
fn fixture_v2_maps_as_v3_does() {
    let v2 = decode_fixture("v2-1.ndjson");
    let v3 = decode_fixture("v3-1.ndjson");
    assert_eq!(types(&v2), types(&v3));
    assert_eq!(
        v2.accepted, 7,
        "a transaction, three spans, three metricsets"
    );
    assert_eq!(v2.dropped_breakdowns, 3);
    for (a, b) in v2.events.iter().zip(&v3.events) {
        let (a, b) = (a.to_value(), b.to_value());
        let keys = |d: &Value| {
            let rum = d["rum"].as_object().unwrap();
            let keys: Vec<String> = rum.keys().cloned().collect();
            // The same leftovers, spelled the same (v3's abbreviations out).
            let extra: Vec<String> = rum
                .get("extra")
                .and_then(Value::as_object)
                .map(|e| e.keys().cloned().collect())
                .unwrap_or_default();
            (
                keys,
                extra,
                d["rum"]["vital"]["name"].clone(),
                d["rum"]["nav"]
                    .as_object()
                    .map(|n| n.keys().cloned().collect::<Vec<_>>()),
            )
        };
        assert_eq!(keys(&a), keys(&b));
    }
    let view = &v2.events[0];
    assert_eq!(view.get_str("session.id"), Some("915cac487e3e8733"));
    assert_eq!(get(view, "rum.nav.ttfb"), Some(&json!(313.0)));
    // v2 spans are lines of their own: they find their transaction's page.
    let script = &v2.events[8];
    assert_eq!(script.get_str("view.id"), Some("df4566151d8865e1"));
    // Its transaction's ids are its own fields, as v3's are.
    assert_eq!(script.get("rum.extra.parent_id"), None);
    assert_eq!(script.get("rum.extra.trace_id"), None);
    assert_eq!(script.get_str("transaction.id"), Some("df4566151d8865e1"));
    assert_eq!(
        script.get_str("trace.id"),
        view.get_str("trace.id").filter(|t| t.len() == 32)
    );
    assert_eq!(script.get_str("span.id"), Some("2c4bfc5d7210a78e"));
    assert_eq!(
        script.get_str("rum.resource.initiator_type"),
        Some("script")
    );
}

#[test]
fn fixture_errors_have_their_stack() {
    for (name, page, view) in [
        (
            "v3-3.ndjson",
            "http://127.0.0.1:39925/?v=3",
            "9e5a75fbb91fc83d",
        ),
        (
            "v2-3.ndjson",
            "http://127.0.0.1:42313/?v=2",
            "aa27f402a000782b",
        ),
    ] {
        let decoded = decode_fixture(name);
        let [error] = &decoded.events[..] else {
            panic!("{name}: one event")
        };
        let doc = error.to_value();
        assert_eq!(doc["rum"]["type"], "error", "{name}");
        let mut error = doc["error"].clone();
        let id = error.as_object_mut().unwrap().remove("id");
        assert!(
            id.as_ref()
                .and_then(Value::as_str)
                .is_some_and(|t| t.len() == 32),
            "{name}"
        );
        assert_eq!(
            error,
            json!({
                "message": "Uncaught TypeError: Cannot read properties of undefined (reading 'price')",
                // v2 sends it, v3 does not (read from the message).
                "type": "TypeError",
                "stack_trace": format!("Uncaught TypeError: Cannot read properties of undefined (reading 'price')\n    at renderPrice ({page}:26:42)\n    at onBoom ({page}:29:3)"),
            }),
            "{name}"
        );
        assert_eq!(
            doc["rum"]["error"],
            json!({"kind": "exception", "source": "(inline script)", "line": 26, "column": 42, "count": 1}),
            "{name}"
        );
        assert_eq!(
            doc["view"]["id"], view,
            "{name}: the transaction it happened in"
        );
        assert_eq!(doc["transaction"]["id"], view, "{name}");
        assert!(
            doc["trace"]["id"].as_str().is_some_and(|t| t.len() == 32),
            "{name}"
        );
        assert_eq!(doc["rum"]["extra"].get("id"), None, "{name}");
        assert_eq!(doc["rum"]["extra"].get("trace_id"), None, "{name}");
        assert_eq!(doc["url"]["full"], page, "{name}");
        assert_eq!(
            doc["rum"]["extra"]["exception"]["stacktrace"][1],
            json!({"filename": "(inline script)", "function": "onBoom", "lineno": 29, "colno": 3}),
            "{name}: abs_path is in the stack text only"
        );
        assert_eq!(
            doc["rum"]["extra"]["transaction"]["type"], "user-interaction",
            "{name}"
        );
    }
}

#[test]
fn fixture_click_is_an_action_with_its_fetch() {
    let decoded = decode_fixture("v3-2.ndjson");
    assert_eq!(types(&decoded), ["action", "http"]);
    let action = decoded.events[0].to_value();
    assert_eq!(
        action["rum"]["action"],
        json!({"kind": "user-interaction", "name": "Click - button"})
    );
    assert_eq!(action["rum"]["extra"]["duration"], 176);
    let fetch = decoded.events[1].to_value();
    assert_eq!(
        fetch["rum"]["http"],
        json!({"kind": "http", "method": "POST", "url": "http://127.0.0.1:39925/api/cart", "status": 200, "duration": 25})
    );
    assert_eq!(fetch["rum"]["extra"]["outcome"], "success");
    assert_eq!(
        fetch["rum"]["extra"].get("name"),
        None,
        "POST /api/cart: made of the fields"
    );
    assert_eq!(fetch["view"]["id"], "71861b31725a9ccb");

    // A span the agent cut short has no http context: its name tells.
    let decoded = decode_fixture("v3-0.ndjson");
    assert_eq!(types(&decoded), ["action", "http"]);
    let fetch = &decoded.events[1];
    assert_eq!(fetch.get_str("rum.http.method"), Some("GET"));
    assert_eq!(
        fetch.get_str("rum.http.url"),
        Some("http://127.0.0.1:39925/api/config")
    );
    assert_eq!(
        fetch.get_str("rum.extra.type"),
        Some("external.truncated.truncated")
    );
}

#[test]
fn fixture_page_exit_is_inp() {
    for (name, value) in [("v3-4.ndjson", 168.0), ("v2-4.ndjson", 176.0)] {
        let decoded = decode_fixture(name);
        let inp = &decoded.events[0];
        assert_eq!(vital(inp), ("INP", value), "{name}");
        assert_eq!(
            inp.label("inp_value"),
            None,
            "{name}: consumed, not a label"
        );
        assert_eq!(decoded.events.len(), 1, "{name}");
    }
}

#[test]
fn fixture_second_page_load_has_the_same_session() {
    for (first, second) in [
        ("v3-1.ndjson", "v3-6.ndjson"),
        ("v2-1.ndjson", "v2-6.ndjson"),
    ] {
        let a = decode_fixture(first);
        let b = decode_fixture(second);
        assert_eq!(a.events[0].get("session.id"), b.events[0].get("session.id"));
        assert_ne!(a.events[0].get("view.id"), b.events[0].get("view.id"));
        assert_eq!(
            b.events[0].get("rum.extra.session.sequence"),
            Some(&json!(2))
        );
    }
}

#[test]
fn every_fixture_decodes_without_errors() {
    let dir = format!(
        "{}/testdata/sdk/elastic-apm-rum",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut requests = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if !name.ends_with(".ndjson") {
            continue;
        }
        requests += 1;
        let decoded = decode_fixture(&name);
        assert!(decoded.errors.is_empty(), "{name}: {:?}", decoded.errors);
        assert_eq!(decoded.unknown_kinds, 0, "{name}");
        assert!(!decoded.events.is_empty(), "{name}");
        for event in &decoded.events {
            assert_eq!(event.get_str("rum.sdk.name"), Some("rum-js"), "{name}");
            assert_eq!(
                event.get_str("service.name"),
                Some("shop-frontend"),
                "{name}"
            );
            assert!(event.get_str("view.id").is_some(), "{name}");
        }
    }
    assert_eq!(requests, 14);
}

#[test]
fn breakdowns_are_kept_when_asked() {
    let keep = ApmLimits {
        keep_breakdown: true,
        ..limits()
    };
    let decoded = decode(&fixture("v3-4.ndjson"), &facts(ApiVersion::V3), &keep).unwrap();
    assert_eq!(types(&decoded), ["web_vital", "custom"]);
    let set = &decoded.events[1];
    assert_eq!(set.get_str("rum.custom.original_type"), Some("metricset"));
    assert_eq!(set.get_str("rum.custom.name"), Some("breakdown"));
    assert_eq!(
        set.get("rum.custom.data"),
        Some(
            &json!({"span": {"type": "app"}, "samples": {"span.self_time.count": {"value": 1}, "span.self_time.sum.us": {"value": 169000}}})
        )
    );
    let decoded = decode(&fixture("v2-4.ndjson"), &facts(ApiVersion::V2), &keep).unwrap();
    assert_eq!(
        decoded.events[1].get("rum.custom.data.span.type"),
        Some(&json!("app"))
    );
}

const META: &str = r#"{"metadata":{"service":{"name":"shop","agent":{"name":"rum-js","version":"5.17.5"},"language":{"name":"javascript"},"runtime":{"name":"x"}},"labels":{"team":"web","tier":2}}}"#;

fn decode_lines(lines: &[&str]) -> Result<Decoded, DecodeError> {
    decode(
        lines.join("\n").as_bytes(),
        &facts(ApiVersion::V2),
        &limits(),
    )
}

#[test]
fn bad_lines_are_reported_and_the_good_ones_kept() {
    let good = r#"{"transaction":{"id":"t1","type":"route-change","name":"/cart","context":{"page":{"url":"https://shop.example/cart"},"tags":{"ab":"b"}}}}"#;
    let long = format!(
        r#"{{"error":{{"exception":{{"message":"{}"}}}}}}"#,
        "x".repeat(5000)
    );
    let decoded = decode_lines(&[
        META,
        good,
        r#"{"transaction":{"id":"t2","#,
        r#"{"transaction":"t3"}"#,
        r#"{"transaction":{},"error":{}}"#,
        r#"[1,2]"#,
        &long,
        r#"{"error":{"exception":{"message":"y"}}}"#,
        r#"{"profile":{"samples":[1]}}"#,
        "",
    ])
    .unwrap();
    let errors: Vec<&str> = decoded.errors.iter().map(|e| e.error_type).collect();
    assert_eq!(
        errors,
        [
            "invalid_json",
            "invalid_event",
            "invalid_event",
            "invalid_event",
            "event_too_large"
        ]
    );
    assert_eq!(decoded.errors[0].document, r#"{"transaction":{"id":"t2","#);
    assert!(
        decoded.errors[4].document.len() < 300,
        "quoted, not copied whole"
    );
    assert_eq!(decoded.accepted, 3);
    assert_eq!(types(&decoded), ["action", "error", "custom"]);
    assert_eq!(decoded.unknown_kinds, 1);
    let action = &decoded.events[0];
    assert_eq!(action.get_str("rum.action.kind"), Some("route-change"));
    assert_eq!(action.get_str("url.path"), Some("/cart"));
    assert_eq!(action.label("ab"), Some(&json!("b")));
    assert_eq!(action.label("team"), Some(&json!("web")), "metadata labels");
    assert_eq!(action.label("tier"), Some(&json!("2")));
    assert_eq!(
        action.get("rum.extra.metadata.service.runtime.name"),
        Some(&json!("x"))
    );
    let custom = &decoded.events[2];
    assert_eq!(custom.get_str("rum.custom.original_type"), Some("profile"));
    assert_eq!(custom.get("rum.custom.data.samples"), Some(&json!([1])));
}

#[test]
fn wrong_types_are_kept_aside() {
    let decoded = decode_lines(&[
        META,
        r#"{"transaction":{"id":7,"type":"page-load","sample_rate":"all","context":{"page":"/"},"marks":{"navigationTiming":{"responseStart":"soon"}},"experience":{"cls":"0.1"}}}"#,
        r#"{"span":{"type":"resource","name":"a.js","duration":"long","context":{"http":{"response":{"transfer_size":-1.5}}}}}"#,
    ])
    .unwrap();
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    let view = decoded.events[0].to_value();
    assert_eq!(view["rum"]["type"], "page_view");
    assert_eq!(view["rum"]["extra"]["id"], 7);
    assert_eq!(view["rum"]["extra"]["sample_rate"], "all");
    assert_eq!(view["rum"]["extra"]["context"]["page"], "/");
    assert_eq!(view["rum"]["extra"]["experience"]["cls"], "0.1");
    assert_eq!(view["rum"].get("nav"), None);
    assert_eq!(decoded.events.len(), 2, "no vital without a number");
    let span = decoded.events[1].to_value();
    assert_eq!(span["rum"]["resource"], json!({"name": "a.js"}));
    assert_eq!(span["rum"]["extra"]["duration"], "long");
    assert_eq!(span["rum"]["extra"]["transfer_size"], -1.5);
}

#[test]
fn trace_transaction_span_and_error_ids_are_their_ecs_fields() {
    let decoded = decode_lines(&[
        META,
        r#"{"transaction":{"id":"t1","trace_id":"tr1","type":"route-change","name":"/cart"}}"#,
        r#"{"span":{"id":"s1","transaction_id":"t1","parent_id":"t1","trace_id":"tr1","type":"external","subtype":"http","name":"GET /a"}}"#,
        r#"{"span":{"id":"s2","transaction_id":"t1","parent_id":"s1","trace_id":"tr2","type":"app","name":"b"}}"#,
        r#"{"span":{"id":"s9","transaction_id":"t9","trace_id":"tr9","type":"app","name":"c"}}"#,
        r#"{"span":{"id":5,"transaction_id":"t1","trace_id":["tr1"],"type":"app","name":"d"}}"#,
        r#"{"error":{"id":"e1","transaction_id":"t1","parent_id":"s1","trace_id":"tr1","exception":{"message":"x"}}}"#,
        r#"{"error":{"id":"e2","exception":{"message":"y"}}}"#,
        r#"{"profile":{"samples":[1]}}"#,
        r#"{"transaction":{"id":"t2","type":"route-change","name":"/b"}}"#,
    ])
    .unwrap();
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    fn ids(e: &Event) -> [Option<&str>; 5] {
        [
            "trace.id",
            "transaction.id",
            "view.id",
            "span.id",
            "error.id",
        ]
        .map(|f| e.get_str(f))
    }
    let [action, child, grandchild, orphan, wrong, error, lone_error, profile, untraced] =
        &decoded.events[..]
    else {
        panic!("nine events")
    };
    assert_eq!(
        ids(action),
        [Some("tr1"), Some("t1"), Some("t1"), None, None]
    );
    assert_eq!(
        ids(child),
        [Some("tr1"), Some("t1"), Some("t1"), Some("s1"), None]
    );
    assert_eq!(
        child.get("rum.extra.parent_id"),
        None,
        "its transaction's: implied"
    );
    // A trace id of its own wins over its transaction's; a parent other
    // than the transaction stays.
    assert_eq!(
        ids(grandchild),
        [Some("tr2"), Some("t1"), Some("t1"), Some("s2"), None]
    );
    assert_eq!(grandchild.get_str("rum.extra.parent_id"), Some("s1"));
    // A transaction not in the request: its id still names both.
    assert_eq!(
        ids(orphan),
        [Some("tr9"), Some("t9"), Some("t9"), Some("s9"), None]
    );
    // Ids of the wrong type are kept as sent, and take no field.
    assert_eq!(
        ids(wrong),
        [Some("tr1"), Some("t1"), Some("t1"), None, None]
    );
    assert_eq!(wrong.get("rum.extra.id"), Some(&json!(5)));
    assert_eq!(wrong.get("rum.extra.trace_id"), Some(&json!(["tr1"])));
    assert_eq!(
        ids(error),
        [Some("tr1"), Some("t1"), Some("t1"), None, Some("e1")]
    );
    assert_eq!(error.get_str("rum.extra.parent_id"), Some("s1"));
    // The first transaction's ids are the request's context: an event of
    // no transaction, or of one without a trace, does not take them.
    assert_eq!(ids(lone_error), [None, None, None, None, Some("e2")]);
    assert_eq!(ids(profile), [None; 5]);
    assert_eq!(ids(untraced), [None, Some("t2"), Some("t2"), None, None]);
}

#[test]
fn a_span_keeps_the_http_context_its_kind_makes_no_field_of() {
    // A long task or an app span with an HTTP context (not what the agent
    // sends, but accepted): its URL, status and sizes stay in `rum.extra`
    // where they were sent, as a resource keeps what it has no slot for.
    let http = r#"{"url":"https://x.example/a","method":"GET","status_code":200,"response":{"transfer_size":10,"encoded_body_size":8,"decoded_body_size":20}}"#;
    let decoded = decode_lines(&[
        META,
        &format!(r#"{{"span":{{"type":"app","name":"render","duration":5,"context":{{"http":{http}}}}}}}"#),
        &format!(r#"{{"span":{{"type":"longtask","name":"self","duration":60,"context":{{"http":{http}}}}}}}"#),
        &format!(r#"{{"span":{{"type":"resource","name":"a.js","context":{{"http":{http}}}}}}}"#),
    ])
    .unwrap();
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    let sent: Value = serde_json::from_str(http).unwrap();
    for event in &decoded.events[..2] {
        let doc = event.to_value();
        assert_eq!(doc["rum"]["extra"]["context"]["http"], sent, "{doc}");
    }
    // A resource makes fields of all but the method.
    let doc = decoded.events[2].to_value();
    assert_eq!(
        doc["rum"]["extra"]["context"]["http"],
        json!({"method": "GET"}),
        "{doc}"
    );
    assert_eq!(doc["rum"]["resource"]["status"], 200);
}

#[test]
fn every_value_the_agent_sent_is_in_the_documents() {
    let limits = ApmLimits {
        keep_breakdown: true,
        ..limits()
    };
    let mut bodies: Vec<(String, Vec<u8>)> = (0..7)
        .flat_map(|i| [format!("v2-{i}.ndjson"), format!("v3-{i}.ndjson")])
        .map(|name| {
            let body = fixture(&name);
            (name, body)
        })
        .collect();
    bodies.push(("v3-equivalent".into(), equivalent_body()));
    for (name, body) in &bodies {
        let version = if name.starts_with("v3") {
            ApiVersion::V3
        } else {
            ApiVersion::V2
        };
        // As sent, and with a key of its own added to every object.
        // The lines as one array; a line object has room for its one key.
        let sent: Value = std::str::from_utf8(body)
            .unwrap()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str::<Value>(line).unwrap())
            .collect();
        for input in kept_check::as_sent_and_probed(sent, 1) {
            let lines = input.as_array().unwrap();
            let body: String = lines.iter().map(|line| format!("{line}\n")).collect();
            let decoded = decode(body.as_bytes(), &facts(version), &limits).unwrap();
            assert!(decoded.errors.is_empty(), "{name}: {:?}", decoded.errors);
            let documents: Vec<Value> = decoded.events.iter().map(Event::to_value).collect();
            let dropped = [
                // `{"name": "javascript"}`, what this agent always says of its
                // language: implied by `rum.sdk.name`.
                "*.metadata.service.language.name",
                "*.m.se.la.n",
                // The transaction types that are `rum.type` page_view and
                // (with INP) web_vital.
                r#"*.transaction.type = "page-load""#,
                r#"*.x.t = "page-load""#,
                r#"*.transaction.type = "page-exit""#,
                r#"*.x.t = "page-exit""#,
            ];
            kept_check::assert_kept(name, &input, &documents, &dropped);
        }
    }
}

#[test]
fn requests_without_metadata_are_refused_whole() {
    let tr = r#"{"transaction":{"id":"t1","type":"page-load"}}"#;
    for (lines, error_type) in [
        (vec![tr], "missing_metadata"),
        (vec![r#"{"metadata":"#, tr], "invalid_metadata"),
        (vec![r#"{"metadata":[1]}"#, tr], "invalid_metadata"),
        (
            vec![r#"{"metadata":{"service":"shop"}}"#, tr],
            "invalid_metadata",
        ),
        (vec!["  ", "\n"], "missing_metadata"),
    ] {
        let err = decode_lines(&lines).unwrap_err();
        assert_eq!(err.error_type, error_type, "{lines:?}: {}", err.message);
        assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    }
    let err = decode(b"\xff\xfe", &facts(ApiVersion::V2), &limits()).unwrap_err();
    assert_eq!(err.status(), StatusCode::BAD_REQUEST);
    // v2 wants `metadata`; v3 `m`, and takes lines spelled out as v2's too.
    let v3 = r#"{"m":{"se":{"n":"shop"}}}"#;
    let err = decode(v3.as_bytes(), &facts(ApiVersion::V2), &limits()).unwrap_err();
    assert_eq!(err.error_type, "missing_metadata");
    let body = format!("{META}\n{{\"x\":{{\"id\":\"a\",\"t\":\"route-change\"}}}}");
    let decoded = decode(body.as_bytes(), &facts(ApiVersion::V3), &limits()).unwrap();
    assert_eq!(decoded.events[0].get_str("service.name"), Some("shop"));
    assert_eq!(
        decoded.events[0].get_str("rum.action.kind"),
        Some("route-change")
    );
    // Metadata alone is a well-formed request that carries nothing.
    assert!(decode_lines(&[META]).unwrap().events.is_empty());
}

#[test]
fn too_many_events_is_413() {
    let spans: Vec<String> = (0..20)
        .map(|i| format!(r#"{{"n":"s{i}","t":"resource","d":1}}"#))
        .collect();
    let line = format!(
        r#"{{"x":{{"id":"a","t":"route-change","y":[{}]}}}}"#,
        spans.join(",")
    );
    let body = format!("{{\"m\":{{\"se\":{{\"n\":\"shop\"}}}}}}\n{line}\n");
    let small = ApmLimits {
        max_events: 20,
        ..limits()
    };
    let err = decode(body.as_bytes(), &facts(ApiVersion::V3), &small).unwrap_err();
    assert_eq!(
        (err.status(), err.error_type),
        (StatusCode::PAYLOAD_TOO_LARGE, "too_many_events")
    );
    let decoded = decode(body.as_bytes(), &facts(ApiVersion::V3), &limits()).unwrap();
    assert_eq!(decoded.events.len(), 21);
    assert_eq!(decoded.events[20].get_str("rum.resource.name"), Some("s19"));
}

#[test]
fn another_page_or_session_in_the_same_request_is_the_events_own() {
    let decoded = decode_lines(&[
        META,
        r#"{"transaction":{"id":"a","type":"page-load","session":{"id":"s1"},"context":{"page":{"url":"https://shop.example/"}}}}"#,
        r#"{"transaction":{"id":"b","type":"page-load","session":{"id":"s2"},"context":{"page":{"url":"https://shop.example/b?q=1","referer":"https://shop.example/"}}}}"#,
        r#"{"error":{"exception":{"message":"boom"}}}"#,
    ])
    .unwrap();
    let summary: Vec<_> = decoded
        .events
        .iter()
        .map(|e| {
            (
                e.get_str("session.id"),
                e.get_str("url.full"),
                e.get_str("url.query"),
                e.get_str("http.request.referrer"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (Some("s1"), Some("https://shop.example/"), None, None),
            (
                Some("s2"),
                Some("https://shop.example/b?q=1"),
                Some("q=1"),
                Some("https://shop.example/")
            ),
            (Some("s1"), Some("https://shop.example/"), None, None),
        ]
    );
    // No stack: no stack text; no type in the message: none made up.
    let error = &decoded.events[2];
    assert_eq!(error.get("error.stack_trace"), None);
    assert_eq!(error.get("error.type"), None);
    assert_eq!(error.get_str("error.message"), Some("boom"));
}

#[test]
fn v3_keys_are_spelled_out() {
    let line = r#"{"x":{"id":"a","t":"page-load","zz":1,"c":{"p":{"url":"https://s.example/"},"q":{"x":1}},"exp":{"cls":0.2,"fid":12,"lt":{"count":2,"sum":140,"max":90}},"ses":{"id":"s","seq":4}}}"#;
    let body = format!("{{\"m\":{{\"se\":{{\"n\":\"shop\",\"ve\":\"1\",\"en\":\"prod\",\"a\":{{\"n\":\"rum-js\",\"ve\":\"5\"}},\"fw\":{{\"n\":\"react\"}}}},\"l\":{{\"k\":\"v\"}}}}}}\n{line}");
    let decoded = decode(body.as_bytes(), &facts(ApiVersion::V3), &limits()).unwrap();
    let view = decoded.events[0].to_value();
    assert_eq!(
        view["service"],
        json!({"name": "shop", "version": "1", "environment": "prod"})
    );
    assert_eq!(view["labels"], json!({"k": "v"}));
    assert_eq!(
        view["rum"]["extra"]["zz"], 1,
        "unknown abbreviations kept as sent"
    );
    assert_eq!(view["rum"]["extra"]["context"]["q"], json!({"x": 1}));
    assert_eq!(
        view["rum"]["extra"]["experience"]["longtask"],
        json!({"count": 2, "sum": 140, "max": 90})
    );
    assert_eq!(
        view["rum"]["extra"]["metadata"]["service"]["framework"],
        json!({"name": "react"})
    );
    assert_eq!(view["rum"]["extra"]["session"], json!({"sequence": 4}));
    let vitals: Vec<_> = decoded.events[1..].iter().map(vital).collect();
    assert_eq!(vitals, [("CLS", 0.2), ("FID", 12.0)]);
}

#[test]
fn client_ip_follows_the_sources_privacy_mode() {
    let stored = |mode| {
        let limits = ApmLimits {
            client_ip: mode,
            ..limits()
        };
        let event = decode(&fixture("v2-3.ndjson"), &facts(ApiVersion::V2), &limits)
            .unwrap()
            .events
            .remove(0);
        assert_eq!(
            event.context().client_address(),
            Some("203.0.113.9".parse().unwrap())
        );
        event.get_str("client.ip").map(str::to_owned)
    };
    assert_eq!(
        stored(ClientIpMode::Truncated).as_deref(),
        Some("203.0.113.0")
    );
    assert_eq!(stored(ClientIpMode::None), None);
}

#[test]
fn skipped_breakdowns_are_counted_and_still_checked() {
    let meta = r#"{"m":{"se":{"n":"shop"}}}"#;
    let ok =
        r#"{"x":{"id":"a","t":"route-change","me":[{"y":{"t":"app"}},{"y":{"t":"external"}}]}}"#;
    let long = format!(
        r#"{{"x":{{"id":"b","t":"route-change","me":[{{"y":{{"t":"{}"}}}}]}}}}"#,
        "a".repeat(2000)
    );
    let deep = r#"{"me":{"y":{"t":{"a":{"b":{"c":{"d":{"e":{"f":{"g":{"h":{"i":{"j":{"k":{"l":{"m":{"n":{"o":1}}}}}}}}}}}}}}}}}"#;
    let body = [meta, ok, &long, deep, r#"{"me":{"y":{"t":"app"}}}"#].join("\n");
    let decoded = decode(body.as_bytes(), &facts(ApiVersion::V3), &limits()).unwrap();
    let errors: Vec<&str> = decoded.errors.iter().map(|e| e.error_type).collect();
    assert_eq!(errors, ["string_too_long", "too_deep"]);
    assert_eq!(decoded.dropped_breakdowns, 3, "two in `me`, one line");
    assert_eq!(types(&decoded), ["action"]);
    assert_eq!(decoded.events[0].get("rum.extra.breakdown"), None);
    assert_eq!(decoded.accepted, 2);
}

/// `testdata/sdk-equivalent/elastic-apm-rum-v3.ndjson`, written by hand for
/// the benchmarks (`examples/sdk_instructions apm_equivalent`): the events
/// of `testdata/beacons/realistic-10-events.json` in the agent's v3 shapes.
/// It must stay those events, or the comparison means nothing.
fn equivalent_body() -> Vec<u8> {
    let path = format!(
        "{}/testdata/sdk-equivalent/elastic-apm-rum-v3.ndjson",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn the_beacon_equivalent_body_holds_the_beacons_events() {
    let body = equivalent_body();
    let limits = ApmLimits {
        max_event_bytes: 300 * 1024,
        ..limits()
    };
    let decoded = decode(&body, &facts(ApiVersion::V3), &limits).unwrap();
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    let events = &decoded.events;
    let types: Vec<&str> = events
        .iter()
        .map(|e| e.get_str("rum.type").unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "page_view",
            "web_vital",
            "web_vital",
            "web_vital",
            "web_vital",
            "resource",
            "resource",
            "action",
            "http",
            "web_vital",
            "error"
        ]
    );
    let vitals: Vec<(&str, f64)> = events
        .iter()
        .filter(|e| e.get_str("rum.type") == Some("web_vital"))
        .map(vital)
        .collect();
    // The agent reports TTFB from its marks; the beacon's other four as sent.
    assert_eq!(
        vitals,
        [
            ("TTFB", 120.4),
            ("FCP", 812.3),
            ("LCP", 1234.5),
            ("CLS", 0.042),
            ("INP", 96.0)
        ]
    );
    for event in events {
        assert_eq!(
            event.get_str("url.full"),
            Some("https://shop.example.com/product/42?ref=home")
        );
        assert_eq!(event.get_str("service.name"), Some("shop"));
        assert_eq!(
            event.get_str("session.id"),
            Some("0f8fad5b-d9cb-469f-a165-70867728950e")
        );
    }
    assert_eq!(
        events[5].get_str("rum.resource.name"),
        Some("https://cdn.example.com/static/app.js")
    );
    assert_eq!(
        events[6].get("rum.resource.transfer_size"),
        Some(&json!(98120))
    );
    assert_eq!(
        events[8].get_str("rum.http.url"),
        Some("https://api.example.com/cart?id=1")
    );
    assert_eq!(events[10].get_str("error.type"), Some("TypeError"));
}

#[test]
fn a_line_of_many_keys_costs_lookups_in_proportion() {
    // Each kept key was put in with a lookup among the keys kept before it:
    // three 275 KB transaction lines of 25 000 keys took 13 s (debug build).
    let n = 4_000;
    let keys = (0..n)
        .map(|i| format!(r#""k{i}":1"#))
        .collect::<Vec<_>>()
        .join(",");
    let mut l = limits();
    l.max_event_bytes = 1 << 20;
    let lines = [
        format!(r#"{{"metadata":{{"service":{{"name":"s"}},{keys}}}}}"#),
        format!(r#"{{"transaction":{{"id":"a","type":"x",{keys}}}}}"#),
        format!(r#"{{"span":{{"id":"b","type":"resource",{keys}}}}}"#),
        format!(r#"{{"error":{{"id":"c",{keys}}}}}"#),
    ];
    crate::sources::json_tree::KEY_LOOKUPS.set(0);
    let decoded = decode(lines.join("\n").as_bytes(), &facts(ApiVersion::V2), &l).unwrap();
    let looked_at = crate::sources::json_tree::KEY_LOOKUPS.get();
    assert_eq!(decoded.events.len(), 3);
    for event in &decoded.events {
        assert_eq!(event.get(&format!("rum.extra.k{}", n - 1)), Some(&json!(1)));
        assert_eq!(
            event.get(&format!("rum.extra.metadata.k{}", n - 1)),
            Some(&json!(1))
        );
    }
    assert!(looked_at < 50 * n, "{looked_at} keys looked at for {n}");
}

#[test]
fn metadata_every_document_carries_is_bounded_by_max_context_bytes() {
    // What `metadata` holds besides the mapped fields is copied into every
    // document's `rum.extra.metadata`: a 275 KB metadata line and 990
    // `{"error":{}}` lines (a 288 KB body) made 272 MB of events.
    let big = "x".repeat(1000);
    let metadata = format!(
        r#"{{"metadata":{{"service":{{"name":"s"}},"other":{{"a":"{big}","b":"{big}"}}}}}}"#
    );
    let body = format!("{metadata}\n{}", [r#"{"error":{}}"#; 5].join("\n"));
    let small = ApmLimits {
        max_context_bytes: 1500,
        ..limits()
    };
    let err = decode(body.as_bytes(), &facts(ApiVersion::V2), &small)
        .map(|d| d.events.len())
        .unwrap_err();
    assert_eq!(
        (err.status(), err.error_type),
        (StatusCode::PAYLOAD_TOO_LARGE, "context_too_large")
    );
    // So are labels and the page, which every document shares.
    let labels = format!(r#"{{"metadata":{{"labels":{{"a":"{big}","b":"{big}"}}}}}}"#);
    let err = decode(labels.as_bytes(), &facts(ApiVersion::V2), &small)
        .map(|d| d.events.len())
        .unwrap_err();
    assert_eq!(err.error_type, "context_too_large");
    let decoded = decode(body.as_bytes(), &facts(ApiVersion::V2), &limits()).unwrap();
    assert_eq!(decoded.events.len(), 5);
    assert_eq!(
        decoded.events[4].get("rum.extra.metadata.other.b"),
        Some(&json!(big))
    );
}

#[test]
fn a_label_that_is_no_string_number_or_bool_is_kept_aside() {
    // APM labels are scalars (the agent's `addLabels`); an object or array
    // under `labels.*` made the index map `labels.<name>` as an object, and
    // every later document with that label as a string was refused by
    // Elasticsearch (or the reverse).
    let decoded = decode_lines(&[
        r#"{"metadata":{"labels":{"team":"web","o":{"k":1},"l":[1],"b":true}}}"#,
        r#"{"transaction":{"id":"t1","type":"route-change","context":{"tags":{"ab":"b","n":2,"to":{"x":"y"},"ta":["z"]}}}}"#,
    ])
    .unwrap();
    let tr = &decoded.events[0];
    assert_eq!(tr.label("team"), Some(&json!("web")));
    assert_eq!(tr.label("b"), Some(&json!("true")));
    assert_eq!(tr.label("ab"), Some(&json!("b")));
    assert_eq!(tr.label("n"), Some(&json!("2")));
    for name in ["o", "l", "to", "ta"] {
        assert_eq!(tr.label(name), None, "{name}");
    }
    assert_eq!(
        tr.get("rum.extra.metadata.labels"),
        Some(&json!({"o": {"k": 1}, "l": [1]}))
    );
    assert_eq!(
        tr.get("rum.extra.context.tags"),
        Some(&json!({"to": {"x": "y"}, "ta": ["z"]}))
    );
}

#[test]
fn many_labels_cost_work_in_proportion() {
    // Each label was inserted in its place in a sorted list: sent in
    // descending order, every one moved all those before it (three 275 KB
    // lines of 25 000 tags took 0.9 s, each page load's vitals again).
    let n = 3_000;
    let labels = (0..n)
        .rev()
        .map(|i| format!(r#""k{i:05}":"v""#))
        .collect::<Vec<_>>()
        .join(",");
    let mut l = limits();
    l.max_event_bytes = 1 << 20;
    l.max_context_bytes = 1 << 20;
    l.label_names = Arc::new(LabelNames::first_seen(n));
    let body = [
        format!(r#"{{"metadata":{{"labels":{{{labels}}}}}}}"#),
        format!(
            r#"{{"transaction":{{"id":"a","type":"page-load","marks":{{"agent":{{"firstContentfulPaint":1}}}},"context":{{"tags":{{{labels}}}}}}}}}"#
        ),
    ]
    .join("\n");
    crate::event::LABEL_SHIFTS.set(0);
    let decoded = decode(body.as_bytes(), &facts(ApiVersion::V2), &l).unwrap();
    let shifted = crate::event::LABEL_SHIFTS.get();
    assert_eq!(decoded.events.len(), 2);
    for event in &decoded.events {
        assert_eq!(event.label("k00000"), Some(&json!("v")));
        assert_eq!(event.label(&format!("k{:05}", n - 1)), Some(&json!("v")));
    }
    assert!(shifted < 10 * n, "{shifted} labels moved for {n}");
}

#[test]
fn the_answer_lists_at_most_five_refused_lines_and_all_are_counted() {
    // As APM Server (`errorsLimit = 5`): a 1 MB body of 500 000 two-byte
    // bad lines was answered with an error object (its message and quote)
    // for each, a body tens of times the request's.
    let mut lines = vec![META.to_owned()];
    lines.extend((0..1000).map(|_| "x".to_owned()));
    lines.push(r#"{"transaction":{}}"#.to_owned());
    lines.push(r#"{"transaction":1}"#.to_owned());
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let decoded = decode_lines(&lines).unwrap();
    assert_eq!(decoded.accepted, 1);
    assert_eq!(decoded.errors.len(), 5);
    assert!(decoded
        .errors
        .iter()
        .all(|e| e.error_type == "invalid_json"));
    assert_eq!(
        decoded.refused,
        [("invalid_json", 1000), ("invalid_event", 1)]
    );
}

#[test]
fn a_frame_keeps_an_abs_path_the_stack_text_does_not_show() {
    // Only a string `abs_path` is written into `error.stack_trace`; one of
    // another type was taken off the kept frames all the same, and lost.
    let decoded = decode_lines(&[
        META,
        r#"{"error":{"exception":{"message":"m","stacktrace":[{"abs_path":7,"filename":"app.js","lineno":1},{"abs_path":"https://a.example/x.js","lineno":2}]}}}"#,
    ])
    .unwrap();
    let error = &decoded.events[0];
    assert_eq!(
        error.get_str("error.stack_trace"),
        Some("m\n    at app.js:1\n    at https://a.example/x.js:2")
    );
    assert_eq!(
        error.get("rum.extra.exception.stacktrace"),
        Some(&json!([{"abs_path": 7, "filename": "app.js", "lineno": 1}, {"lineno": 2}]))
    );
}

#[test]
fn a_line_or_column_past_i64_is_not_put_in_a_long_field() {
    // Elasticsearch's `long` is signed: a first frame's `lineno` of 2^63 in
    // `rum.error.line` made the whole error document a mapping error at the
    // sink (dead-lettered). The frames keep it.
    let decoded = decode_lines(&[
        META,
        r#"{"error":{"exception":{"message":"m","stacktrace":[{"filename":"app.js","lineno":9223372036854775808,"colno":18446744073709551615}]}}}"#,
        r#"{"error":{"exception":{"message":"m","stacktrace":[{"filename":"app.js","lineno":9223372036854775807,"colno":1}]}}}"#,
    ])
    .unwrap();
    let error = &decoded.events[0];
    assert_eq!(error.get("rum.error.line"), None);
    assert_eq!(error.get("rum.error.column"), None);
    assert_eq!(
        error.get("rum.extra.exception.stacktrace"),
        Some(&json!([{"filename": "app.js", "lineno": 9223372036854775808u64, "colno": u64::MAX}]))
    );
    assert_eq!(
        decoded.events[1].get("rum.error.line"),
        Some(&json!(i64::MAX))
    );
}

#[test]
fn a_line_that_is_not_utf8_is_refused_alone() {
    // A body cut inside a character (a name or URL that is not ASCII) was
    // refused whole as not UTF-8, its good lines with it; as any line that
    // is not JSON, only that line is.
    let good = r#"{"transaction":{"id":"t1","type":"route-change","name":"/café"}}"#;
    let cut = &br#"{"transaction":{"id":"t2","type":"route-change","name":"/caf"#[..];
    let mut body = format!("{META}\n{good}\n").into_bytes();
    body.extend_from_slice(cut);
    body.push(0xc3);
    let decoded = decode(&body, &facts(ApiVersion::V2), &limits())
        .map_err(|e| e.message)
        .unwrap();
    assert_eq!(decoded.accepted, 1);
    assert_eq!(types(&decoded), ["action"]);
    assert_eq!(decoded.errors.len(), 1);
    assert_eq!(decoded.errors[0].error_type, "invalid_json");
    assert!(decoded.errors[0]
        .document
        .starts_with(r#"{"transaction":{"id":"t2""#));
    assert_eq!(decoded.refused, [("invalid_json", 1)]);
    // In the metadata line, nothing is taken.
    let mut body = br#"{"metadata":{"service":{"name":"caf"#.to_vec();
    body.extend_from_slice(b"\xc3\"}}}\n");
    body.extend_from_slice(good.as_bytes());
    let err = decode(&body, &facts(ApiVersion::V2), &limits())
        .map(|d| d.events.len())
        .unwrap_err();
    assert_eq!(err.error_type, "invalid_metadata");
}

#[test]
fn a_quote_is_cut_before_a_character() {
    let line = format!("{}é{}", "x".repeat(255), "y".repeat(10));
    assert_eq!(quote(line.as_bytes()), format!("{}…", "x".repeat(255)));
    let line = format!("{}é{}", "x".repeat(254), "y".repeat(10));
    assert_eq!(quote(line.as_bytes()), format!("{}é…", "x".repeat(254)));
    assert_eq!(quote(b"ab\xffc"), "ab\u{fffd}c");
}

#[test]
fn label_names_are_sanitized_as_apm_server_does() {
    // Elasticsearch reads a dot in a field name as a path: a label
    // `env.x` made the index map `labels.env` as an object, and every
    // later document with an `env` label was refused. APM Server (and the
    // agent's `addLabels`) write `.`, `*` and `"` in names as `_`.
    let decoded = decode_lines(&[
        r#"{"metadata":{"labels":{"env.x":"1","a*b":2,"q\"t":true}}}"#,
        r#"{"transaction":{"id":"t1","type":"route-change","context":{"tags":{"ab.c":"b","":"e"}}}}"#,
    ])
    .unwrap();
    let tr = &decoded.events[0];
    // Elasticsearch refuses an empty field name, and with it the document.
    assert_eq!(tr.label("_"), Some(&json!("e")));
    assert_eq!(tr.label("env_x"), Some(&json!("1")));
    assert_eq!(tr.label("a_b"), Some(&json!("2")));
    assert_eq!(tr.label("q_t"), Some(&json!("true")));
    assert_eq!(tr.label("ab_c"), Some(&json!("b")));
    let doc = tr.to_value();
    assert_eq!(
        doc["labels"],
        json!({"env_x": "1", "a_b": "2", "q_t": "true", "ab_c": "b", "_": "e"})
    );
}

#[test]
fn a_blank_label_name_is_written_as_underscores() {
    // Elasticsearch refuses a field name of only whitespace (`labels. `),
    // and with it the document.
    let decoded = decode_lines(&[
        r#"{"metadata":{"labels":{" ":"a","\t\n":"b"}}}"#,
        r#"{"transaction":{"id":"t1","type":"route-change","context":{"tags":{"  ":"c"," x ":"d"}}}}"#,
    ])
    .unwrap();
    let doc = decoded.events[0].to_value();
    assert_eq!(
        doc["labels"],
        json!({"_": "a", "__": "c", " x ": "d"}),
        "{doc}"
    );
    assert_eq!(decoded.events[0].label("__"), Some(&json!("c")));
}

#[test]
fn numeric_and_boolean_labels_are_written_as_strings() {
    // Under `labels.*` a number made the index map the name as `long` (a
    // boolean as `boolean`): every later document with that label as a
    // word ("gold" after 2) was refused by Elasticsearch. ECS labels are
    // keywords, as the template maps strings under `labels.*`. A number is
    // written as JSON writes it (past 2^64 that is as a double).
    let decoded = decode_lines(&[
        r#"{"metadata":{"labels":{"tier":2,"ratio":-0.5,"big":1e300,"flag":true,"off":false}}}"#,
        r#"{"transaction":{"id":"t1","type":"route-change","context":{"tags":{"n":18446744073709551616}}}}"#,
    ])
    .unwrap();
    let doc = decoded.events[0].to_value();
    assert_eq!(
        doc["labels"],
        json!({"big": "1e+300", "flag": "true", "n": "1.8446744073709552e+19", "off": "false",
               "ratio": "-0.5", "tier": "2"})
    );
}

#[test]
fn a_label_named_as_one_the_pipeline_sets_is_kept_aside() {
    // `labels.synthetic` is the pipeline's own (the `user_agent` transform
    // sets it on bots; the template maps it `boolean`), as is
    // `labels.csp_noise`: a page's label `synthetic: "no"` made every
    // document of the request fail to index, and `synthetic: true` passed
    // its events off as a bot's.
    let decoded = decode_lines(&[
        r#"{"metadata":{"labels":{"synthetic":"no","team":"web"}}}"#,
        r#"{"transaction":{"id":"t1","type":"route-change","context":{"tags":{"csp.noise":true,"ab":"b"}}}}"#,
    ])
    .unwrap();
    let tr = &decoded.events[0];
    assert_eq!(tr.to_value()["labels"], json!({"ab": "b", "team": "web"}));
    assert_eq!(
        tr.get("rum.extra.metadata.labels"),
        Some(&json!({"synthetic": "no"}))
    );
    assert_eq!(
        tr.get("rum.extra.context.tags"),
        Some(&json!({"csp.noise": true}))
    );
}

/// The agent sends every transaction, sampled or not (an unsampled one as
/// `sampled: false, sample_rate: 0`, without spans): a transaction's
/// documents are each one page load or interaction, never a sample. Only a
/// span stands for `1 / sample_rate` spans. `rum.sample_rate = 0` made
/// the documented estimate `sum(1 / rum.sample_rate)` infinite, and a
/// sampled page load at 0.1 counted as ten beside the unsampled ones.
#[test]
fn only_spans_carry_the_agents_sample_rate() {
    let decoded = decode_lines(&[
        META,
        r#"{"transaction":{"id":"t0","type":"page-load","sampled":false,"sample_rate":0,"marks":{"agent":{"largestContentfulPaint":900}}}}"#,
        r#"{"transaction":{"id":"t1","type":"route-change","name":"/cart","sampled":true,"sample_rate":0.1}}"#,
        r#"{"span":{"id":"s1","transaction_id":"t1","type":"resource","subtype":"script","name":"a.js","sample_rate":0.1}}"#,
        r#"{"span":{"id":"s2","transaction_id":"t1","type":"resource","subtype":"script","name":"b.js","sample_rate":0}}"#,
        r#"{"span":{"id":"s3","transaction_id":"t1","type":"resource","subtype":"script","name":"c.js","sample_rate":1.5}}"#,
    ])
    .unwrap();
    assert!(decoded.errors.is_empty(), "{:?}", decoded.errors);
    let docs: Vec<Value> = decoded.events.iter().map(Event::to_value).collect();
    let rate = |doc: &Value| doc["rum"].get("sample_rate").cloned();
    let kept = |doc: &Value| doc["rum"]["extra"]["sample_rate"].clone();
    assert_eq!(
        types(&decoded),
        [
            "page_view",
            "web_vital",
            "action",
            "resource",
            "resource",
            "resource"
        ]
    );
    for doc in &docs[..3] {
        assert_eq!(rate(doc), None, "{doc}");
    }
    assert_eq!(kept(&docs[0]), 0);
    assert_eq!(kept(&docs[2]), 0.1);
    assert_eq!(rate(&docs[3]), Some(json!(0.1)));
    for doc in &docs[4..] {
        assert_eq!(rate(doc), None, "not a rate: {doc}");
    }
    assert_eq!(kept(&docs[4]), 0);
    assert_eq!(kept(&docs[5]), 1.5);
}

/// The stack text is made of the frames, so it was not held to
/// `max_string_bytes` as every string sent is: `{}` (3 bytes of body) wrote
/// `\n    at <anonymous>` (20), and a 900 KB line of frames made one 7 MB
/// document. Frames are written while the text stays within the limit;
/// the frames it does not show keep their `abs_path`.
#[test]
fn the_stack_text_stays_within_max_string_bytes() {
    let frames: Vec<Value> = (0..60)
        .map(|i| json!({"abs_path": "https://a.example/app.js", "lineno": i}))
        .collect();
    let line = json!({"error": {"exception": {"message": "m", "stacktrace": frames}}}).to_string();
    let decoded = decode_lines(&[META, &line]).unwrap();
    let error = &decoded.events[0];
    let stack = error.get_str("error.stack_trace").unwrap();
    assert!(
        stack.len() <= limits().max_string_bytes,
        "{} bytes",
        stack.len()
    );
    let shown = stack.lines().count() - 1;
    assert!(shown > 0 && shown < 60, "{stack}");
    let Some(Value::Array(kept)) = error.get("rum.extra.exception.stacktrace") else {
        panic!("frames kept")
    };
    assert_eq!(kept.len(), 60);
    assert!(kept[..shown].iter().all(|f| f.get("abs_path").is_none()));
    assert!(kept[shown..].iter().all(|f| f.get("abs_path").is_some()));
}

/// Without a message, a first frame past `max_string_bytes` left an empty
/// stack text: now none, the frames kept whole.
#[test]
fn a_first_frame_past_the_limit_leaves_no_empty_stack_text() {
    // Within the limit itself (a longer string refuses the line), past it
    // once written as `    at PATH:1`.
    let path = format!(
        "https://a.example/{}",
        "x".repeat(limits().max_string_bytes - 20)
    );
    let line = json!({"error": {"exception": {"type": "TypeError", "stacktrace": [{"abs_path": path, "lineno": 1}]}}}).to_string();
    let decoded = decode_lines(&[META, &line]).unwrap();
    let error = &decoded.events[0];
    assert_eq!(error.get("error.stack_trace"), None);
    let Some(Value::Array(kept)) = error.get("rum.extra.exception.stacktrace") else {
        panic!("frames kept")
    };
    assert_eq!(kept[0].get("abs_path"), Some(&json!(path)));
}

/// A request whose `metadata.labels` has `n` names `<prefix>0000`... and
/// whose transaction's `context.tags` has `n` more, `t<prefix>0000`...
fn many_names(prefix: &str, n: usize) -> String {
    let names = |prefix: &str| {
        (0..n)
            .map(|i| format!(r#""{prefix}{i:04}":"v""#))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (labels, tags) = (names(prefix), names(&format!("t{prefix}")));
    [
        format!(r#"{{"metadata":{{"labels":{{{labels}}}}}}}"#),
        format!(
            r#"{{"transaction":{{"id":"a","type":"route-change","context":{{"tags":{{{tags}}}}}}}}}"#
        ),
    ]
    .join("\n")
}

/// The names of the `labels.*` fields of some documents.
fn label_fields(events: &[Event]) -> std::collections::BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| {
            e.to_value()
                .get("labels")
                .and_then(Value::as_object)
                .cloned()
        })
        .flat_map(|labels| labels.into_iter().map(|(name, _)| name))
        .collect()
}

#[test]
fn a_browser_cannot_make_more_label_fields_than_max_label_names() {
    // Every label name is a field of the index (`labels.*`, mapped
    // dynamically): one request of 2,000 names took the day's index past
    // Elasticsearch's 1,000 fields, and from then on every document with
    // a name not mapped yet (a label a deploy adds) was refused and
    // dead-lettered. Names past the cap are kept under `rum.extra`.
    let mut l = limits();
    l.max_event_bytes = 1 << 20;
    l.max_context_bytes = 1 << 20;
    let decode_v2 = |body: &str| decode(body.as_bytes(), &facts(ApiVersion::V2), &l).unwrap();
    let first = decode_v2(&many_names("a", 1_000));
    let fields = label_fields(&first.events);
    assert_eq!(fields.len(), 100, "{} label fields", fields.len());
    // The first names seen, in the order sent: the request's labels first.
    assert!(fields.contains("a0000") && fields.contains("a0099"));
    let doc = first.events[0].to_value();
    let extra = &doc["rum"]["extra"];
    let labels = extra["metadata"]["labels"].as_object().unwrap();
    let tags = extra["context"]["tags"].as_object().unwrap();
    assert_eq!((labels.len(), tags.len()), (900, 1_000), "nothing is lost");
    assert_eq!(
        (labels["a0100"].clone(), tags["ta0000"].clone()),
        (json!("v"), json!("v"))
    );
    assert_eq!(first.labels_kept_in_extra, 1_900);
    // The process's names are taken: another request's new ones stay
    // aside, those taken are still fields.
    let second = decode_v2(&many_names("b", 10));
    assert_eq!(label_fields(&second.events), Default::default());
    assert_eq!(second.labels_kept_in_extra, 20);
    let error = r#"{"error":{"id":"e1","exception":{"message":"x"},"context":{"tags":{"a0001":"1","new":"2","o":{"k":1}}}}}"#;
    let third = decode_v2(&[META, error].join("\n"));
    assert_eq!(third.labels_kept_in_extra, 3, "team and tier of META, new");
    let error = third.events[0].to_value();
    assert_eq!(error["labels"], json!({"a0001": "1"}));
    assert_eq!(
        error["rum"]["extra"]["context"]["tags"],
        json!({"new": "2", "o": {"k": 1}})
    );
    assert_eq!(
        error["rum"]["extra"]["metadata"]["labels"],
        json!({"team": "web", "tier": 2})
    );
}

#[test]
fn a_page_exits_inp_is_a_vital_whatever_room_is_left_for_label_names() {
    // The agent sends INP as the tag `inp_value` of a `page-exit`
    // transaction: it is the vital's value, never a label.
    let mut l = limits();
    l.label_names = Arc::new(LabelNames::first_seen(0));
    let body = [
        META,
        r#"{"transaction":{"id":"t1","type":"page-exit","context":{"tags":{"inp_value":120,"ab":"b"}}}}"#,
    ]
    .join("\n");
    let decoded = decode(body.as_bytes(), &facts(ApiVersion::V2), &l).unwrap();
    assert_eq!(types(&decoded), ["web_vital"]);
    assert_eq!(vital(&decoded.events[0]), ("INP", 120.0));
    let doc = decoded.events[0].to_value();
    assert_eq!(doc.get("labels"), None);
    assert_eq!(doc["rum"]["extra"]["context"]["tags"], json!({"ab": "b"}));
    assert_eq!(decoded.labels_kept_in_extra, 3);
}

#[test]
fn listed_label_names_are_the_only_label_fields() {
    let mut l = limits();
    l.label_names = Arc::new(LabelNames::listed(["team", "a_b"]));
    let body = [
        r#"{"metadata":{"labels":{"team":"web","tier":2,"a.b":"x"}}}"#,
        r#"{"transaction":{"id":"t1","type":"route-change","context":{"tags":{"ab":"b","team":"shop"}}}}"#,
    ]
    .join("\n");
    let decoded = decode(body.as_bytes(), &facts(ApiVersion::V2), &l).unwrap();
    let doc = decoded.events[0].to_value();
    assert_eq!(doc["labels"], json!({"a_b": "x", "team": "shop"}));
    assert_eq!(
        doc["rum"]["extra"]["metadata"]["labels"],
        json!({"tier": 2})
    );
    assert_eq!(doc["rum"]["extra"]["context"]["tags"], json!({"ab": "b"}));
    assert_eq!(decoded.labels_kept_in_extra, 2);
}
