//! The `web_vitals` source against the real binary: the bodies the real
//! library sent (testdata/sdk/web-vitals) posted as browsers post them, on
//! the listener `rum_beacon` shares, what reaches the stdout sink, and what
//! each bad request gets back and is counted as.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{client, Pipeline};
use serde_json::{json, Value};

const CONFIG: &str = r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[sources.vitals]
type = "web_vitals"
address = "127.0.0.1:0"
max_metrics_per_request = 5
max_body_bytes = "64kb"
allowed_origins = ["http://127.0.0.1:38589"]
[sinks.out]
type = "stdout"
inputs = ["beacons", "vitals"]
"#;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/testdata/sdk/web-vitals/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

async fn post(p: &Pipeline, content_type: &str, body: Vec<u8>) -> (u16, String) {
    let response = client()
        .post(p.url("/rum/web-vitals"))
        .header("content-type", content_type)
        .header("origin", "http://127.0.0.1:38589")
        .header("referer", "http://127.0.0.1:38589/")
        .body(body)
        .send()
        .await
        .expect("POST /rum/web-vitals");
    (
        response.status().as_u16(),
        response.text().await.unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn library_bodies_become_web_vital_documents() {
    let p = Pipeline::start(CONFIG);
    // sendBeacon: one metric, text/plain.
    let (status, text) = post(&p, "text/plain;charset=UTF-8", fixture("beacon-2.json")).await;
    assert_eq!(status, 204, "{text}");
    // fetch: the README's queue, application/json, gzipped by a proxy.
    let response = client()
        .post(p.url("/rum/web-vitals"))
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(gzip(&fixture("fetch-0.json")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    // The listener is shared: a beacon on /rum still works.
    let beacon = json!({"v": 1, "events": [{"type": "action", "name": "buy"}]});
    let response = client()
        .post(p.url("/rum"))
        .body(beacon.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let docs = p.wait_documents(7, Duration::from_secs(15));
    let vitals: Vec<&Value> = docs
        .iter()
        .filter(|d| d["rum"]["sdk"]["name"] == "web-vitals")
        .collect();
    assert_eq!(vitals.len(), 6);
    let lcp = vitals
        .iter()
        .find(|d| d["url"]["query"] == "mode=beacon")
        .expect("the sendBeacon LCP");
    assert_eq!(lcp["rum"]["type"], "web_vital");
    assert_eq!(lcp["rum"]["vital"]["name"], "LCP");
    assert_eq!(lcp["rum"]["vital"]["value"], 588);
    assert_eq!(lcp["rum"]["vital"]["attribution"]["target"], "#hero");
    assert_eq!(lcp["url"]["full"], "http://127.0.0.1:38589/?mode=beacon");
    // Private by default: the network part only.
    assert_eq!(lcp["client"]["ip"], "127.0.0.0");
    assert_eq!(lcp["rum"]["client_ts"], 1_796_046_500_057_i64);
    let names: Vec<&str> = vitals
        .iter()
        .filter(|d| d["url"]["query"] == "mode=fetch")
        .map(|d| d["rum"]["vital"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["TTFB", "FCP", "LCP", "INP", "CLS"]);
    p.expect_metric("web_vitals_dropped_entries_total", &[], 7.0)
        .await;
    p.expect_metric(
        "component_received_events_total",
        &["component_id=\"vitals\""],
        6.0,
    )
    .await;
    let access = p
        .wait_stderr(
            |l| l.contains("POST /rum/web-vitals http://127.0.0.1:38589/"),
            Duration::from_secs(30),
        )
        .expect("an access-log line with the page URL");
    assert!(!access.contains("mode="), "no query in the log: {access}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_clear_answers_and_are_counted() {
    let p = Pipeline::start(CONFIG);
    let metric = json!({"name": "CLS", "value": 0.1});
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "text/plain",
            b"{\"name\":\"LCP\",".to_vec(),
            400,
            "invalid_json",
        ),
        ("text/plain", b"\"LCP\"".to_vec(), 400, "invalid_metric"),
        (
            "text/plain",
            br#"{"value": 1}"#.to_vec(),
            400,
            "invalid_metric",
        ),
        (
            "application/json",
            br#"[{"name":"LCP","value":"fast"}]"#.to_vec(),
            400,
            "invalid_metric",
        ),
        (
            "application/json",
            json!(vec![metric.clone(); 6]).to_string().into_bytes(),
            413,
            "too_many_metrics",
        ),
        (
            "application/json",
            json!([metric, {"name": "X", "value": 1, "pad": "a".repeat(70_000)}])
                .to_string()
                .into_bytes(),
            413,
            "body_too_large",
        ),
        (
            "application/x-www-form-urlencoded",
            b"name=LCP".to_vec(),
            415,
            "unsupported_media_type",
        ),
    ];
    for (i, (content_type, body, status, error_type)) in cases.iter().enumerate() {
        let (got, text) = post(&p, content_type, body.clone()).await;
        assert_eq!(got, *status, "{error_type}: {text}");
        p.expect_metric(
            "component_errors_total",
            &[
                "component_id=\"vitals\"",
                &format!("error_type=\"{error_type}\""),
            ],
            cases[..=i].iter().filter(|c| c.3 == *error_type).count() as f64,
        )
        .await;
    }
    // Nothing of a refused request reached the sink.
    assert!(p.documents().is_empty(), "{:?}", p.documents());

    // An empty array is well-formed and makes nothing.
    assert_eq!(post(&p, "application/json", b"[]".to_vec()).await.0, 204);

    // An unknown metric name is kept (custom) and counted.
    let (status, _) = post(
        &p,
        "text/plain",
        br#"{"name":"TBT","value":310,"id":"v4-1700000000000-1"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 204);
    let docs = p.wait_documents(1, Duration::from_secs(10));
    assert_eq!(docs[0]["rum"]["type"], "custom");
    assert_eq!(docs[0]["rum"]["custom"]["name"], "TBT");
    assert_eq!(docs[0]["rum"]["sdk"]["version"], "4");
    p.expect_metric("web_vitals_unknown_metrics_total", &[], 1.0)
        .await;

    // CORS: the allowed origin's preflight, another origin refused.
    let preflight = p
        .preflight(
            "/rum/web-vitals",
            "http://127.0.0.1:38589",
            Some("content-type"),
        )
        .await;
    assert_eq!(preflight.status(), 204);
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://127.0.0.1:38589"
    );
    let foreign = client()
        .post(p.url("/rum/web-vitals"))
        .header("origin", "https://evil.example")
        .body(r#"{"name":"LCP","value":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    let get = client().get(p.url("/rum/web-vitals")).send().await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST, OPTIONS");
}
