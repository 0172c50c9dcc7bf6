use super::*;
use crate::schema;
use crate::sources::kept_check;
use serde_json::json;
use serde_json::Value;

const NOW: i64 = 1_700_000_000_000;

fn facts() -> ReportFacts<'static> {
    ReportFacts {
        received_at_ms: NOW,
        client_ip: "203.0.113.9".parse().unwrap(),
        user_agent: Some("Header-UA/1.0"),
    }
}

fn limits() -> ReportLimits {
    ReportLimits {
        max_reports: 3,
        max_string_bytes: 200,
        max_depth: 6,
        max_age_ms: 3_600_000,
        client_ip: crate::privacy::ClientIpMode::Full,
    }
}

fn noise() -> NoiseRules {
    NoiseRules::new(&["kaspersky-labs.com".to_owned()])
}

fn legacy(v: Value) -> Result<Decoded, DecodeError> {
    decode_report_uri(v.to_string().as_bytes(), &facts(), &limits(), &noise())
}

fn api(v: Value) -> Result<Decoded, DecodeError> {
    decode_reporting_api(v.to_string().as_bytes(), &facts(), &limits(), &noise())
}

fn csp_fields(event: &Event) -> Value {
    event.to_value().get("csp").cloned().unwrap_or(Value::Null)
}

#[test]
fn both_formats_normalize_to_one_shape() {
    let old = legacy(json!({"csp-report": {
        "document-uri": "https://shop.example.com/p?q=1",
        "referrer": "",
        "violated-directive": "script-src-elem",
        "effective-directive": "script-src-elem",
        "original-policy": "script-src 'self'; report-uri /rum/report-uri",
        "disposition": "enforce",
        "blocked-uri": "https://evil.example.net/x.js",
        "line-number": 12,
        "column-number": 3,
        "source-file": "https://shop.example.com/app.js",
        "status-code": 200,
        "script-sample": ""
    }}))
    .unwrap();
    let new = api(json!([{
        "type": "csp-violation", "age": 10, "url": "https://shop.example.com/p?q=1",
        "user_agent": "Report-UA/2.0",
        "body": {
            "documentURL": "https://shop.example.com/p?q=1",
            "referrer": null,
            "effectiveDirective": "script-src-elem",
            "originalPolicy": "script-src 'self'; report-uri /rum/report-uri",
            "disposition": "enforce",
            "blockedURL": "https://evil.example.net/x.js",
            "lineNumber": 12, "columnNumber": 3,
            "sourceFile": "https://shop.example.com/app.js",
            "statusCode": 200, "sample": null
        }
    }]))
    .unwrap();
    let (old, new) = (&old.reports[0].event, &new.reports[0].event);
    let mut expected = csp_fields(old);
    expected["format"] = json!("reporting-api");
    assert_eq!(csp_fields(new), expected);
    assert_eq!(old.get_str("csp.format"), Some("report-uri"));
    assert_eq!(
        old.get_str("csp.violated_directive"),
        Some("script-src-elem")
    );
    assert_eq!(old.get("csp.line_number"), Some(&json!(12)));
    assert_eq!(old.get("csp.referrer"), None, "\"\" means absent");
    for e in [old, new] {
        assert_eq!(e.get_str("rum.type"), Some("csp_violation"));
        assert_eq!(e.get_str("event.dataset"), Some("rum.csp_violation"));
        assert_eq!(
            e.get_str("url.full"),
            Some("https://shop.example.com/p?q=1")
        );
        assert_eq!(e.get_str("url.domain"), Some("shop.example.com"));
        assert_eq!(e.get_str("client.ip"), Some("203.0.113.9"));
        assert_eq!(e.get(schema::LABEL_CSP_NOISE), None);
    }
    assert_eq!(old.get_str("user_agent.original"), Some("Header-UA/1.0"));
    assert_eq!(new.get_str("user_agent.original"), Some("Report-UA/2.0"));
    assert_eq!(old.timestamp_ms(), Some(NOW));
    assert_eq!(new.timestamp_ms(), Some(NOW - 10));
    assert_eq!(new.context().received_ms(), Some(NOW));
}

#[test]
fn identical_reports_of_one_array_are_told_apart_by_their_place() {
    use crate::sinks::elasticsearch::encoder::document_id;
    let report = json!({"type": "deprecation", "url": "https://a.example/", "body": {"id": "X"}});
    let decoded = api(json!([report, report])).unwrap();
    let ids: Vec<(Option<&Value>, String)> = decoded
        .reports
        .iter()
        .map(|r| {
            let mut untimed = Vec::new();
            r.event.write_json_untimed(&mut untimed);
            (
                r.event.get(schema::RUM_SEQ),
                document_id(&r.event, &untimed),
            )
        })
        .collect();
    assert_ne!(ids[0].1, ids[1].1, "two reports, two documents");
    assert_eq!(ids[0].0, Some(&json!(0)));
    assert_eq!(ids[1].0, Some(&json!(1)));
    let single = legacy(json!({"csp-report": {"document-uri": "https://a.example/"}})).unwrap();
    assert_eq!(
        single.reports[0].event.get(schema::RUM_SEQ),
        Some(&json!(0))
    );
}

#[test]
fn age_is_clamped_to_the_receive_window() {
    let decoded = api(json!([
        {"type": "deprecation", "age": -5000, "body": {}},
        {"type": "deprecation", "age": 1e12, "body": {}},
        {"type": "deprecation", "body": {}}
    ]))
    .unwrap();
    let times: Vec<i64> = decoded
        .reports
        .iter()
        .map(|r| r.event.timestamp_ms().unwrap())
        .collect();
    assert_eq!(times, [NOW, NOW - 3_600_000, NOW]);
}

#[test]
fn other_types_keep_their_body_in_snake_case() {
    let decoded = api(json!([
        {"type": "deprecation", "url": "https://a.example/", "body": {
            "id": "Foo", "anticipatedRemoval": null, "lineNumber": 4, "message": "m",
            "sourceFile": "https://a.example/a.js"}},
        {"type": "network-error", "url": "https://a.example/img.png", "body": {
            "elapsed_time": 12, "phase": "dns", "type": "dns.name_not_resolved",
            "sampling_fraction": 1.0, "status_code": 0, "server_ip": ""}},
        {"type": "future-thing", "body": {"Weird Key.x": {"innerURLValue": 1}}}
    ]))
    .unwrap();
    let [dep, nel, future] = &decoded.reports[..] else {
        panic!()
    };
    assert_eq!(dep.event.get_str("rum.type"), Some("report"));
    assert_eq!(dep.event.get_str("event.dataset"), Some("rum.report"));
    assert_eq!(dep.event.get_str("report.type"), Some("deprecation"));
    assert_eq!(
        dep.event.get("report.body"),
        Some(
            &json!({"id": "Foo", "line_number": 4, "message": "m", "source_file": "https://a.example/a.js"})
        )
    );
    assert_eq!(dep.event.get_str("url.full"), Some("https://a.example/"));
    assert_eq!(
        nel.event.get_str("report.body.type"),
        Some("dns.name_not_resolved")
    );
    assert_eq!(nel.event.get_str("report.body.server_ip"), Some(""));
    assert_eq!(nel.kind, kind_of("network-error"));
    assert_eq!(future.kind, OTHER_KIND);
    assert_eq!(future.event.get_str("report.type"), Some("future-thing"));
    assert_eq!(
        future.event.get("report.body"),
        Some(&json!({"weird_key_x": {"inner_url_value": 1}}))
    );
    assert_eq!(decoded.page_url.as_deref(), Some("https://a.example/"));
}

#[test]
fn keys_that_snake_case_to_one_name_keep_every_value() {
    let body = json!({
        "blockedURL": "a", "blocked_url": "b", "blocked-url": "c",
        "ä": 1, "ö": 2, "line_number": null, "lineNumber": 7,
        "inner": {"sourceFile": "s", "source_file": "t"}
    });
    let decoded = api(json!([{"type": "coep", "body": body}])).unwrap();
    assert_eq!(
        decoded.reports[0].event.get("report.body"),
        Some(&json!({
            "blocked_url": "b", "blockedURL": "a", "blocked-url": "c",
            "_": 1, "ö": 2, "line_number": 7,
            "inner": {"source_file": "t", "sourceFile": "s"}
        }))
    );
}

#[test]
fn snake_case_handles_acronyms_and_separators() {
    for (from, to) in [
        ("documentURL", "document_url"),
        ("blockedURL", "blocked_url"),
        ("URLList", "url_list"),
        ("lineNumber", "line_number"),
        ("sampling_fraction", "sampling_fraction"),
        ("effective-directive", "effective_directive"),
        ("a2B", "a2_b"),
        ("ÄÖ", "_"),
        ("__x__", "x"),
    ] {
        assert_eq!(snake_case(from), to, "{from}");
    }
}

#[test]
fn noise_is_marked_not_dropped() {
    let cases = [
        ("chrome-extension", true),
        ("moz-extension://abc/content.js", true),
        ("safari-web-extension://x/y.js", true),
        ("webkit-masked-url://hidden/", true),
        ("about", true),
        ("about:blank", true),
        ("https://gc.kis.v2.scr.kaspersky-labs.com/x.js", true),
        ("https://kaspersky-labs.com/x.js", true),
        ("https://notkaspersky-labs.com/x.js", false),
        ("inline", false),
        ("eval", false),
        ("data", false),
        ("blob", false),
        ("https://cdn.example.com/app.js", false),
    ];
    for (blocked, expected) in cases {
        let decoded = legacy(
            json!({"csp-report": {"document-uri": "https://a.example/", "blocked-uri": blocked}}),
        )
        .unwrap();
        let report = &decoded.reports[0];
        assert_eq!(report.noise, expected, "{blocked}");
        assert_eq!(
            report.event.get(schema::LABEL_CSP_NOISE).is_some(),
            expected,
            "{blocked}"
        );
    }
    let decoded = api(json!([{"type": "csp-violation", "body": {
        "documentURL": "https://a.example/", "blockedURL": "inline",
        "sourceFile": "chrome-extension://abcdef/inject.js"}}]))
    .unwrap();
    assert!(
        decoded.reports[0].noise,
        "a source file in an extension is noise too"
    );
}

#[test]
fn old_browsers_violated_directive_fills_effective() {
    let decoded = legacy(json!({"csp-report": {
        "document-uri": "https://a.example/", "violated-directive": "script-src 'self'",
        "blocked-uri": "eval", "disposition": "REPORT", "x-custom": 1, "y": null}}))
    .unwrap();
    let e = &decoded.reports[0].event;
    assert_eq!(e.get_str("csp.effective_directive"), Some("script-src"));
    assert_eq!(
        e.get_str("csp.violated_directive"),
        Some("script-src 'self'")
    );
    assert_eq!(e.get_str("csp.disposition"), Some("report"));
    assert_eq!(e.get("rum.extra"), Some(&json!({"x-custom": 1})));
}

#[test]
fn keys_beside_the_body_are_kept_in_rum_extra() {
    let extra = |decoded: &Decoded| decoded.reports[0].event.get("rum.extra").cloned();
    let wrapped = |report: Value| {
        extra(&legacy(json!({"csp-report": report, "sent_by": "tool", "n": null})).unwrap())
    };
    assert_eq!(
        wrapped(json!({"document-uri": "https://a.example/"})),
        Some(json!({"sent_by": "tool"}))
    );
    // Both: the report's shape, so a name the body has too holds both.
    assert_eq!(
        wrapped(json!({"document-uri": "https://a.example/", "sent_by": 2})),
        Some(json!({"sent_by": "tool", "csp-report": {"sent_by": 2}}))
    );
    let enveloped = |ty: &str, body: Value| {
        extra(&api(json!([{"type": ty, "body": body, "destination": "d", "n": null}])).unwrap())
    };
    assert_eq!(
        enveloped("deprecation", json!({"id": "X"})),
        Some(json!({"destination": "d"}))
    );
    assert_eq!(
        enveloped("csp-violation", json!({"blockedURL": "eval"})),
        Some(json!({"destination": "d"}))
    );
    assert_eq!(
        enveloped(
            "csp-violation",
            json!({"blockedURL": "eval", "destination": 1})
        ),
        Some(json!({"destination": "d", "body": {"destination": 1}}))
    );
}

#[test]
fn csp_document_falls_back_to_the_report_url() {
    let decoded = api(json!([{"type": "csp-violation", "url": "https://a.example/page", "body": {"blockedURL": "data"}}])).unwrap();
    let e = &decoded.reports[0].event;
    assert_eq!(
        e.get_str("csp.document_uri"),
        Some("https://a.example/page")
    );
    assert_eq!(e.get_str("url.path"), Some("/page"));
}

#[test]
fn malformed_bodies_are_refused_whole() {
    let cases: Vec<(Value, &str)> = vec![
        (json!({"csp-report": {}}), "invalid_report"),
        (json!("text"), "invalid_report"),
        (json!([1, 2]), "invalid_report"),
        (json!([{"type": "deprecation"}]), "invalid_report"),
        (
            json!([{"type": "deprecation", "body": null}]),
            "invalid_report",
        ),
        (
            json!([{"type": "deprecation", "body": []}]),
            "invalid_report",
        ),
        (json!([{"body": {}}]), "invalid_report"),
        (json!([{"type": 5, "body": {}}]), "invalid_report"),
        (json!([{"type": "", "body": {}}]), "invalid_report"),
        (
            json!([{"type": "x".repeat(65), "body": {}}]),
            "invalid_report",
        ),
        (
            json!([{"type": "deprecation", "age": "old", "body": {}}]),
            "invalid_report",
        ),
        (
            json!([{"type": "deprecation", "url": 7, "body": {}}]),
            "invalid_report",
        ),
        (
            json!([{"type": "deprecation", "user_agent": [], "body": {}}]),
            "invalid_report",
        ),
        // One bad report among good ones refuses the request.
        (
            json!([{"type": "deprecation", "body": {}}, {"type": "csp-violation", "body": {"lineNumber": "12"}}]),
            "invalid_report",
        ),
        (
            json!([{"type": "csp-violation", "body": {"blockedURL": 5}}]),
            "invalid_report",
        ),
        (
            json!([{"type": "a", "body": {"x": "y".repeat(201)}}]),
            "string_too_long",
        ),
        (
            json!([{"type": "a", "body": {"a": {"b": {"c": {"d": {"e": 1}}}}}}]),
            "too_deep",
        ),
        (
            json!(vec![json!({"type": "a", "body": {}}); 4]),
            "too_many_reports",
        ),
    ];
    for (body, error_type) in cases {
        let err = api(body.clone()).unwrap_err();
        assert_eq!(err.error_type, error_type, "{body}");
    }
    let legacy_cases: Vec<(Value, &str)> = vec![
        (json!([]), "invalid_report"),
        (json!({}), "invalid_report"),
        (json!({"csp-report": "x"}), "invalid_report"),
        (
            json!({"csp-report": {"line-number": "12"}}),
            "invalid_report",
        ),
        (
            json!({"csp-report": {"blocked-uri": {"a": 1}}}),
            "invalid_report",
        ),
        (
            json!({"csp-report": {"status-code": -1.5}}),
            "invalid_report",
        ),
        (
            json!({"csp-report": {"original-policy": "p".repeat(201)}}),
            "string_too_long",
        ),
    ];
    for (body, error_type) in legacy_cases {
        let err = legacy(body.clone()).unwrap_err();
        assert_eq!(err.error_type, error_type, "{body}");
    }
    for raw in [
        &b"[{\"type\":"[..],
        b"",
        b"  ",
        b"[] []",
        b"{\"csp-report\":{}} x",
    ] {
        let err = decode_reporting_api(raw, &facts(), &limits(), &noise()).unwrap_err();
        assert_eq!(
            err.status(),
            http::StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(raw)
        );
    }
    let bad_utf8 = b"[{\"type\":\"deprecation\",\"body\":{\"m\":\"\xff\"}}]";
    assert_eq!(
        decode_reporting_api(bad_utf8, &facts(), &limits(), &noise())
            .unwrap_err()
            .error_type,
        "invalid_utf8"
    );
    assert_eq!(
        decode_report_uri(
            b"{\"csp-report\":{\"a\":\"\xc3\x28\"}}",
            &facts(),
            &limits(),
            &noise()
        )
        .unwrap_err()
        .error_type,
        "invalid_utf8"
    );
}

#[test]
fn an_oversized_array_stops_parsing_at_the_limit() {
    // Valid up to the 4th item, garbage after: refused for its size,
    // which shows the garbage was never reached.
    let mut body = b"[{},{},{},{},".to_vec();
    body.extend_from_slice(b"not json at all");
    let err = decode_reporting_api(&body, &facts(), &limits(), &noise()).unwrap_err();
    assert_eq!(err.error_type, "too_many_reports");
    assert_eq!(err.status(), http::StatusCode::PAYLOAD_TOO_LARGE);
}

#[test]
fn an_empty_array_is_no_reports() {
    let decoded = api(json!([])).unwrap();
    assert!(decoded.reports.is_empty());
}

/// `kept_check` on every report fixture, as sent and with a key of its own
/// added to every object.
#[test]
fn every_value_a_browser_reported_is_in_the_documents() {
    let limits = ReportLimits {
        max_reports: 100,
        max_string_bytes: 10_000,
        max_depth: 10,
        max_age_ms: i64::MAX,
        ..limits()
    };
    let mut checked = 0;
    for (dir, reporting_api) in [("report-uri", false), ("reporting-api", true)] {
        let dir = format!("{}/testdata/csp/{dir}", env!("CARGO_MANIFEST_DIR"));
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let sent: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            for input in kept_check::as_sent_and_probed(sent, 0) {
                let body = input.to_string();
                let decoded = if reporting_api {
                    decode_reporting_api(body.as_bytes(), &facts(), &limits, &noise())
                } else {
                    decode_report_uri(body.as_bytes(), &facts(), &limits, &noise())
                }
                .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
                let documents: Vec<Value> =
                    decoded.reports.iter().map(|r| r.event.to_value()).collect();
                let dropped = [
                    // `rum.type = "csp_violation"`.
                    r#"*.type = "csp-violation""#,
                    // Spent on the report's time: `@timestamp` is the
                    // receive time less the age.
                    "*.age",
                ];
                kept_check::assert_kept(&path.display().to_string(), &input, &documents, &dropped);
                checked += 1;
            }
        }
    }
    assert!(checked >= 14, "{checked} bodies checked");
}

/// As for beacons: a key with a NUL made Elasticsearch refuse the
/// document (`report.body` and `rum.extra` are `flattened`, whose index
/// separates key from value with a NUL); the key keeps U+FFFD instead.
#[test]
fn a_nul_in_a_key_does_not_reach_the_documents() {
    let no_nul_key = |event: &Event| {
        let mut text = Vec::new();
        event.write_json(&mut text);
        let text = String::from_utf8(text).unwrap();
        // Keys come before a `:`; NUL is written `\u0000`.
        assert!(!text.contains("\\u0000\":"), "{text}");
        assert!(text.contains("\u{fffd}"), "{text}");
    };
    let old = legacy(json!({
        "csp-report": {"document-uri": "https://shop.example.com/", "x\u{0}": 1},
        "y\u{0}": {"z\u{0}": 2}
    }))
    .unwrap();
    no_nul_key(&old.reports[0].event);
    let new = api(json!([{
        "type": "deprecation", "url": "https://shop.example.com/", "age": 1,
        "body": {"id": "x", "message\u{0}": "m", "nested": {"k\u{0}": true}},
        "other\u{0}": 3
    }]))
    .unwrap();
    no_nul_key(&new.reports[0].event);
}

/// The body is searched for a `\u0000` once, not once per report: searched
/// per report, 100 reports (the default `max_reports_per_request`) beside
/// a 1 MiB one made a request scan 100 MiB.
#[test]
fn a_reporting_api_body_is_searched_for_nul_once() {
    let reports: Vec<Value> = (0..40)
        .map(|i| json!({"type": "deprecation", "body": {"id": format!("r{i}"), "message": "m".repeat(150)}}))
        .collect();
    let body = Value::Array(reports).to_string();
    let limits = ReportLimits {
        max_reports: 100,
        ..limits()
    };
    crate::sources::json_scan::NUL_SEARCHED_BYTES.set(0);
    let decoded = decode_reporting_api(body.as_bytes(), &facts(), &limits, &noise()).unwrap();
    assert_eq!(decoded.reports.len(), 40);
    let searched = crate::sources::json_scan::NUL_SEARCHED_BYTES.get();
    assert!(
        searched <= body.len(),
        "{searched} bytes searched for a body of {}",
        body.len()
    );
}

/// `max_report_age_secs = 18446744073709551615`: read as −1 s, the oldest
/// time allowed came after the receive time and a report with an `age`
/// panicked the request in `clamp`.
#[test]
fn the_largest_max_report_age_keeps_every_age_and_does_not_panic() {
    let limits = ReportLimits {
        max_age_ms: crate::sources::age_secs_to_ms(u64::MAX),
        ..limits()
    };
    let body =
        json!([{"type": "deprecation", "age": 5000, "url": "https://a.example/", "body": {}}]);
    let decoded = decode_reporting_api(body.to_string().as_bytes(), &facts(), &limits, &noise())
        .expect("decoded");
    assert_eq!(decoded.reports[0].event.timestamp_ms(), Some(NOW - 5000));
}
