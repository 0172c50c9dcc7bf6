//! The `faro` source against the real binary: the bodies the real Faro Web
//! SDK sent (testdata/sdk/faro) posted as the SDK posts them, on the
//! listener `rum_beacon` shares; what reaches the stdout sink, the API-key
//! check, the preflight the SDK needs, and what each bad request gets back
//! and is counted as.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{client, Pipeline};
use serde_json::{json, Value};

const KEY: &str = "k-123";
const ORIGIN: &str = "http://127.0.0.1:34151";

const CONFIG: &str = r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[sources.faro]
type = "faro"
address = "127.0.0.1:0"
api_key = "k-123"
max_items_per_request = 50
max_body_bytes = "256kb"
allowed_origins = ["http://127.0.0.1:34151"]
[sinks.out]
type = "stdout"
inputs = ["beacons", "faro"]
"#;

/// Events the four fixture bodies make together.
const FIXTURE_EVENTS: usize = 22;

fn fixture(i: usize) -> Vec<u8> {
    std::fs::read(format!(
        "{}/testdata/sdk/faro/body-{i}.json",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// POSTs as the SDK's fetch transport does, with `key` as `x-api-key`.
async fn post(p: &Pipeline, path: &str, key: Option<&str>, body: Vec<u8>) -> (u16, String) {
    let mut request = client()
        .post(p.url(path))
        .header("content-type", "application/json")
        .header("origin", ORIGIN)
        .header("x-faro-session-id", "iiPqiWG9rk")
        .header("idempotency-key", "2w8wQNxhpc2zw81Ys6eN")
        .body(body);
    if let Some(key) = key {
        request = request.header("x-api-key", key);
    }
    let response = request.send().await.expect("POST");
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_bodies_become_documents() {
    let p = Pipeline::start(CONFIG);
    // The key in the header (the SDK's `apiKey`), in the path, and gzipped
    // (the SDK's `requestCompression`).
    assert_eq!(post(&p, "/collect", Some(KEY), fixture(0)).await.0, 202);
    assert_eq!(post(&p, "/collect/k-123", None, fixture(1)).await.0, 202);
    let response = client()
        .post(p.url("/collect"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("x-api-key", KEY)
        .body(gzip(&fixture(2)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (status, text) = post(&p, "/collect", Some(KEY), fixture(3)).await;
    assert_eq!(status, 202, "{text}");
    // The listener is shared: a beacon on /rum still works.
    let beacon = json!({"v": 1, "events": [{"type": "action", "name": "buy"}]});
    let response = client()
        .post(p.url("/rum"))
        .body(beacon.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let docs = p.wait_documents(FIXTURE_EVENTS + 1, Duration::from_secs(15));
    let faro: Vec<&Value> = docs
        .iter()
        .filter(|d| d["rum"]["sdk"]["name"] == "faro-web")
        .collect();
    assert_eq!(faro.len(), FIXTURE_EVENTS);
    let find = |pred: &dyn Fn(&Value) -> bool| -> &Value {
        faro.iter()
            .copied()
            .find(|d| pred(d))
            .expect("a matching document")
    };
    for d in &faro {
        assert_eq!(d["session"]["id"], "iiPqiWG9rk");
        assert_eq!(d["service"]["name"], "faro-test-shop");
        assert_eq!(d["rum"]["sdk"]["version"], "2.12.1");
        // Private by default: the network part only.
        assert_eq!(d["client"]["ip"], "127.0.0.0");
        assert!(d["url"]["full"]
            .as_str()
            .unwrap()
            .starts_with("http://127.0.0.1:34151/"));
    }
    let lcp = find(&|d| d["rum"]["vital"]["name"] == "LCP");
    assert_eq!(lcp["rum"]["type"], "web_vital");
    assert_eq!(lcp["event"]["dataset"], "rum.web_vital");
    assert!(lcp["rum"]["vital"]["value"].as_f64().unwrap() > 0.0);
    assert_eq!(lcp["rum"]["vital"]["attribution"]["element"], "#hero");
    let error = find(&|d| d["error"]["type"] == "TypeError");
    assert_eq!(error["error"]["message"], "cart is broken");
    assert!(error["error"]["stack_trace"]
        .as_str()
        .unwrap()
        .starts_with("TypeError: cart is broken\n    at http://127.0.0.1:34151/:"));
    let fetch = find(&|d| d["rum"]["resource"]["initiator_type"] == "fetch");
    assert_eq!(
        fetch["rum"]["resource"]["name"],
        "http://127.0.0.1:34151/api/cart?item=42"
    );
    let page_views = faro
        .iter()
        .filter(|d| d["rum"]["type"] == "page_view")
        .count();
    assert_eq!(page_views, 2);
    p.expect_metric(
        "component_received_events_total",
        &["component_id=\"faro\""],
        FIXTURE_EVENTS as f64,
    )
    .await;
    let access = p
        .wait_stderr(
            |l| l.contains("POST /collect http://127.0.0.1:34151/"),
            Duration::from_secs(30),
        )
        .expect("an access-log line with the page URL");
    assert!(
        !access.contains("second=1"),
        "no query in the log: {access}"
    );
    assert!(
        !p.stderr().iter().any(|l| l.contains(KEY)),
        "the key is never logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_preflight_and_answers() {
    let p = Pipeline::start(CONFIG);
    let body = fixture(2);
    for (path, key) in [
        ("/collect", None),
        ("/collect", Some("k-12")),
        ("/collect/k-1234", None),
        ("/collect/k-123", Some("wrong")),
    ] {
        let (status, text) = post(&p, path, key, body.clone()).await;
        // A right key in either place is enough; none right → 401.
        let expected = if path == "/collect/k-123" { 202 } else { 401 };
        assert_eq!(status, expected, "{path} {key:?}: {text}");
    }
    p.expect_metric(
        "component_errors_total",
        &["component_id=\"faro\"", "error_type=\"unauthorized\""],
        3.0,
    )
    .await;
    // Only the one authorized request's two vitals.
    let docs = p.wait_documents(2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(p.documents().len(), 2, "{docs:?}");

    // The preflight the SDK's fetch makes from another origin.
    let preflight = p
        .preflight(
            "/collect",
            ORIGIN,
            Some("content-type,idempotency-key,x-api-key,x-faro-session-id"),
        )
        .await;
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], ORIGIN);
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_owned();
    for h in [
        "content-type",
        "content-encoding",
        "x-api-key",
        "x-faro-session-id",
        "idempotency-key",
    ] {
        assert!(allowed.contains(h), "{h} in {allowed}");
    }
    // The SDK reads Retry-After on 429/503: exposed to the page.
    let response = client()
        .post(p.url("/collect"))
        .header("origin", ORIGIN)
        .header("x-api-key", KEY)
        .body(r#"{"meta":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.headers()["access-control-expose-headers"],
        "retry-after"
    );
    // Other origins, methods and paths.
    let foreign = client()
        .post(p.url("/collect"))
        .header("origin", "https://evil.example")
        .header("x-api-key", KEY)
        .body(r#"{"meta":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    // Without a key too: the origin is checked first.
    let foreign = client()
        .post(p.url("/collect"))
        .header("origin", "https://evil.example")
        .body(r#"{"meta":{}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let get = client().get(p.url("/collect")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST, OPTIONS");
    let deeper = client()
        .post(p.url("/collect/k-123/more"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(deeper.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_answers_and_are_counted() {
    let p = Pipeline::start(CONFIG);
    let full = fixture(0);
    let ten_mb = format!(
        "{{\"meta\":{{}},\"logs\":[{}]}}",
        vec!["{\"message\":\"x\"}"; 10 * 1024 * 1024 / 16].join(",")
    );
    let cases: Vec<(Vec<u8>, u16, &str)> = vec![
        // Truncated mid-body, as a cut connection leaves it.
        (full[..full.len() / 2].to_vec(), 400, "invalid_json"),
        (b"[]".to_vec(), 400, "invalid_payload"),
        (
            br#"{"meta":{},"measurements":{}}"#.to_vec(),
            400,
            "invalid_payload",
        ),
        (
            br#"{"meta":{},"measurements":[{"type":"web-vitals","values":{"lcp":"fast"}}]}"#
                .to_vec(),
            400,
            "invalid_payload",
        ),
        (
            br#"{"meta":{},"exceptions":[{"type":"Error","value":7}]}"#.to_vec(),
            400,
            "invalid_payload",
        ),
        (
            json!({"meta": {}, "logs": vec![json!({"message": "m"}); 51]})
                .to_string()
                .into_bytes(),
            413,
            "too_many_items",
        ),
        // A `meta` every document would carry: 75 kB > max_context_bytes.
        (
            json!({"meta": {"user": {"attributes": vec!["u".repeat(15_000); 5]}}, "logs": [{"message": "m"}]})
                .to_string()
                .into_bytes(),
            413,
            "context_too_large",
        ),
        // 10 MB of array, gzipped to a few kB: stopped as it inflates past
        // max_body_bytes (a plain 10 MB body is refused from its declared
        // length before it is read, and the client sees the socket close).
        (gzip(ten_mb.as_bytes()), 413, "body_too_large"),
    ];
    for (i, (body, status, error_type)) in cases.iter().enumerate() {
        let mut request = client()
            .post(p.url("/collect"))
            .header("content-type", "application/json")
            .header("x-api-key", KEY)
            .body(body.clone());
        if body.starts_with(&[0x1f, 0x8b]) {
            request = request.header("content-encoding", "gzip");
        }
        let response = request.send().await.expect("POST");
        let got = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_eq!(got, *status, "{error_type}: {text}");
        p.expect_metric(
            "component_errors_total",
            &[
                "component_id=\"faro\"",
                &format!("error_type=\"{error_type}\""),
            ],
            cases[..=i].iter().filter(|c| c.2 == *error_type).count() as f64,
        )
        .await;
    }
    let (_, text) = post(
        &p,
        "/collect",
        Some(KEY),
        br#"{"meta":{},"exceptions":[{"type":"Error","value":7}]}"#.to_vec(),
    )
    .await;
    assert_eq!(text.trim(), "exceptions[0].value must be a string");
    // A content type the SDK never sends.
    let response = client()
        .post(p.url("/collect"))
        .header("x-api-key", KEY)
        .header("content-type", "text/xml")
        .body("<x/>")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // Nothing of a refused request reached the sink.
    assert!(p.documents().is_empty(), "{:?}", p.documents());

    // An unknown kind is kept (custom) and counted; the rest of the request
    // is taken; spans are counted and dropped.
    let mut body: Value = serde_json::from_slice(&fixture(2)).unwrap();
    body["teleports"] = json!([{"to": "mars"}]);
    body["traces"] = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"name": "fetch"}, {"name": "xhr"}]}]}]});
    let (status, text) = post(&p, "/collect", Some(KEY), body.to_string().into_bytes()).await;
    assert_eq!(status, 202, "{text}");
    let docs = p.wait_documents(3, Duration::from_secs(10));
    let custom = docs
        .iter()
        .find(|d| d["rum"]["type"] == "custom")
        .expect("the unknown kind");
    assert_eq!(custom["rum"]["custom"]["original_type"], "teleports");
    assert_eq!(custom["rum"]["extra"]["teleports"], json!([{"to": "mars"}]));
    assert_eq!(
        docs.iter()
            .filter(|d| d["rum"]["type"] == "web_vital")
            .count(),
        2
    );
    p.expect_metric("faro_unknown_kinds_total", &[], 1.0).await;
    p.expect_metric("faro_dropped_spans_total", &[], 2.0).await;
}
