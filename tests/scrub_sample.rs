//! `scrub_url` and `sample` through the real binary: beacons in over HTTP,
//! documents out on stdout, counters on /metrics. The sampling decision must
//! be the same in two separate processes, and the same as the client's
//! (the shared vectors in testdata/sampling/vectors.json).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Pipeline;
use serde_json::{json, Value};

const PIPELINE: &str = r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
max_body_bytes = 1048576

[transforms.scrub]
type = "scrub_url"
inputs = ["beacons"]
routes = ["/product/{slug}"]

[transforms.sampler]
type = "sample"
inputs = ["scrub"]
rate = 0.5
rates = { resource = 0.0 }

[sinks.out]
type = "stdout"
inputs = ["sampler"]
"#;

/// SIGTERM, then every document the stdout sink wrote.
fn stop(mut pipeline: Pipeline) -> Vec<Value> {
    let exit = pipeline.terminate(Duration::from_secs(30));
    assert!(exit.success(), "exit status {exit}");
    pipeline.documents()
}

async fn post(client: &reqwest::Client, base: &str, beacon: &Value) {
    let response = client
        .post(format!("{base}/rum"))
        .header("content-type", "text/plain")
        .body(beacon.to_string())
        .send()
        .await
        .expect("POST /rum");
    let status = response.status().as_u16();
    assert_eq!(status, 204, "{}", response.text().await.unwrap_or_default());
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// The value of the first series of `name` whose labels contain every pair.
async fn metric(client: &reqwest::Client, base: &str, name: &str, labels: &[&str]) -> u64 {
    let response = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics");
    let text = response.text().await.expect("metrics body");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn vector_sessions() -> Vec<(String, bool)> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/sampling/vectors.json"
    );
    let doc: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("vectors")).expect("json");
    doc["vectors"]
        .as_array()
        .expect("vectors array")
        .iter()
        .map(|v| {
            (
                v["session_id"].as_str().expect("id").to_owned(),
                v["keep_at_0_5"].as_bool().expect("keep_at_0_5"),
            )
        })
        .filter(|(id, _)| !id.is_empty())
        .collect()
}

/// Session ids as the client makes them (UUID v4 shape), from a fixed seed.
fn generated_sessions(n: usize) -> Vec<String> {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let a = state;
            format!(
                "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
                a >> 32,
                (a >> 16) & 0xffff,
                a & 0xfff,
                (a >> 20) & 0xfff,
                a & 0xffff_ffff_ffff
            )
        })
        .collect()
}

fn beacon(session: &str) -> Value {
    json!({
        "v": 1,
        "app": {"name": "shop"},
        "session": {"id": session},
        "view": {
            "id": format!("view-{session}"),
            "url": "https://alice:pw@shop.example.com/u/8812/orders?token=abc123&page=2#access_token=t0k",
            "referrer": "https://mail.example.com/inbox?email=alice%40example.com"
        },
        "events": [
            {"type": "page_view", "ttfb": 120.5},
            {"type": "resource", "name": "https://api.example.com/v1/me?api_key=k1", "duration": 30},
            {"type": "error", "message": "boom", "stack": "at f (https://shop.example.com/app.js?sig=zz:10:5)"}
        ]
    })
}

struct Run {
    /// Sessions with a kept page_view.
    kept: BTreeSet<String>,
    documents: Vec<Value>,
    discarded: u64,
    unparseable: u64,
}

/// Starts the binary, sends one beacon per session (plus one with an
/// unparseable page URL), waits until the sampler has seen every event,
/// reads the counters and stops the binary.
async fn run(sessions: &[String]) -> Run {
    let pipeline = Pipeline::start(PIPELINE);
    let client = client();
    for session in sessions {
        post(&client, &pipeline.base, &beacon(session)).await;
    }
    let mut broken = beacon("broken-url-session");
    broken["view"]["url"] = json!("https://shop.example.com:99999/?token=abc");
    broken["events"] = json!([{"type": "error", "message": "x"}]);
    post(&client, &pipeline.base, &broken).await;

    let total = (sessions.len() * 3 + 1) as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    let (discarded, sent) = loop {
        let discarded = metric(
            &client,
            &pipeline.base,
            "component_discarded_events_total",
            &["component_id=\"sampler\"", "intentional=\"true\""],
        )
        .await;
        let sent = metric(
            &client,
            &pipeline.base,
            "component_sent_events_total",
            &["component_id=\"sampler\""],
        )
        .await;
        if discarded + sent == total || Instant::now() > deadline {
            break (discarded, sent);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(discarded + sent, total, "the sampler saw every event");
    let unparseable = metric(
        &client,
        &pipeline.base,
        "component_errors_total",
        &["component_id=\"scrub\"", "error_type=\"unparseable_url\""],
    )
    .await;
    let documents = stop(pipeline);
    let kept = documents
        .iter()
        .filter(|d| d["rum"]["type"] == "page_view")
        .filter_map(|d| d["session"]["id"].as_str().map(str::to_owned))
        .collect();
    Run {
        kept,
        documents,
        discarded,
        unparseable,
    }
}

#[tokio::test]
async fn two_processes_keep_the_same_sessions_as_the_client_would() {
    let vectors = vector_sessions();
    let mut sessions: Vec<String> = vectors.iter().map(|(id, _)| id.clone()).collect();
    sessions.extend(generated_sessions(300));

    let first = run(&sessions).await;
    let second = run(&sessions).await;

    assert_eq!(
        first.kept, second.kept,
        "the two processes kept different sessions"
    );
    assert!(
        (100..=200).contains(&first.kept.len()),
        "about half of {} sessions kept: {}",
        sessions.len(),
        first.kept.len()
    );
    for (id, keep) in &vectors {
        assert_eq!(
            first.kept.contains(id),
            *keep,
            "session {id:?} against the shared vectors"
        );
    }

    // Page views of kept sessions only, resources never (rate 0), errors always.
    let count = |t: &str| {
        first
            .documents
            .iter()
            .filter(|d| d["rum"]["type"] == t)
            .count()
    };
    assert_eq!(count("page_view"), first.kept.len());
    assert_eq!(count("resource"), 0);
    assert_eq!(count("error"), sessions.len() + 1);
    let dropped = 2 * sessions.len() - first.kept.len();
    assert_eq!(
        first.discarded, dropped as u64,
        "drops are counted as intentional discards"
    );
    assert_eq!(first.documents.len(), 3 * sessions.len() + 1 - dropped);
    for d in &first.documents {
        let expected = if d["rum"]["type"] == "error" {
            1.0
        } else {
            0.5
        };
        assert_eq!(d["rum"]["sample_rate"], json!(expected), "{d}");
    }
}

#[tokio::test]
async fn urls_are_scrubbed_before_they_reach_the_sink() {
    let result = run(&generated_sessions(5)).await;
    let page = result
        .documents
        .iter()
        .find(|d| d["rum"]["type"] == "error" && d["session"]["id"] != "broken-url-session")
        .expect("an error document");
    assert_eq!(
        page["url"]["full"],
        "https://shop.example.com/u/8812/orders?token=REDACTED&page=2#access_token=REDACTED"
    );
    assert_eq!(page["url"]["domain"], "shop.example.com");
    assert_eq!(page["url"]["path"], "/u/8812/orders");
    assert_eq!(page["url"]["query"], "token=REDACTED&page=2");
    assert_eq!(page["url"]["fragment"], "access_token=REDACTED");
    assert_eq!(page["url"]["path_template"], "/u/:id/orders");
    assert_eq!(
        page["http"]["request"]["referrer"],
        "https://mail.example.com/inbox?email=REDACTED"
    );
    assert_eq!(
        page["error"]["stack_trace"],
        "at f (https://shop.example.com/app.js?sig=REDACTED:10:5)"
    );
    let text = serde_json::to_string(&result.documents).expect("json");
    for secret in ["abc123", "t0k", "alice", "pw@", "zz:10"] {
        assert!(!text.contains(secret), "`{secret}` reached the sink");
    }

    // The unparseable page URL is kept as sent, without a template, and counted.
    let broken = result
        .documents
        .iter()
        .find(|d| d["session"]["id"] == "broken-url-session")
        .expect("the broken beacon's error");
    assert_eq!(
        broken["url"]["full"],
        "https://shop.example.com:99999/?token=abc"
    );
    assert!(broken["url"].get("path_template").is_none());
    assert_eq!(result.unparseable, 1);
}

/// Every place a browser or SDK puts a URL: after the default `scrub_url`,
/// no document holds a secret, whichever source took it in (each secret is
/// a `token` parameter; the pages themselves are kept).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_url_secret_survives_the_default_scrub_whatever_the_source() {
    let pipeline = Pipeline::start(
        r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"

[sources.reports]
type = "csp"
address = "127.0.0.1:0"
reporting_api_path = "/rum/reporting-api"

[sources.vitals]
type = "web_vitals"
address = "127.0.0.1:0"

[sources.faro]
type = "faro"
address = "127.0.0.1:0"

[transforms.scrub]
type = "scrub_url"
inputs = ["beacons", "reports", "vitals", "faro"]

[sinks.out]
type = "stdout"
inputs = ["scrub"]
"#,
    );
    let page = |n: u32| format!("https://shop.example.com/reset?token=SECRET{n}");
    let client = client();
    let send = |path: &str, content_type: &str, body: Value| {
        client
            .post(pipeline.url(path))
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
    };
    let now = 1_763_700_000_000_i64;
    let beacon = json!({"v": 1, "app": {"name": "shop"}, "session": {"id": "s1"},
        "view": {"id": "v1", "url": page(1)}, "sent_at": now, "events": [
        {"type": "error", "ts": now, "name": "TypeError",
         "message": format!("Failed to fetch {}", page(2)),
         "stack": format!("TypeError: Failed to fetch {}\n    at f ({}:1:2)", page(2), page(3))},
        {"type": "long_task", "ts": now, "kind": "long-animation-frame", "duration": 120,
         "scripts": [{"invoker": page(4), "source_url": page(5), "duration": 80}]}
    ]});
    let metric = json!([{"name": "TTFB", "value": 114.5, "rating": "good", "delta": 114.5,
        "id": "v6-1763700000000-1", "navigationType": "navigate", "url": page(6),
        "attribution": {"waitingDuration": 3, "navigationEntry": {"name": page(7)}}}]);
    let faro = json!({"meta": {"app": {"name": "shop"}, "page": {"url": page(8)},
        "session": {"id": "f1"}}, "events": [
        {"name": "faro.performance.navigation", "timestamp": "2025-11-21T04:40:00.000Z",
         "attributes": {"name": page(9), "duration": "171"}},
        {"name": "faro.navigation", "timestamp": "2025-11-21T04:40:00.100Z",
         "attributes": {"fromUrl": page(10), "toUrl": "https://shop.example.com/"}}
    ]});
    let report = json!([{"type": "deprecation", "age": 10, "url": page(11), "body": {
        "id": "x", "message": format!("deprecated at {}", page(12)), "sourceFile": page(13)}}]);
    for (path, content_type, body) in [
        ("/rum", "text/plain", beacon),
        ("/rum/web-vitals", "application/json", metric),
        ("/collect", "application/json", faro),
        ("/rum/reporting-api", "application/reports+json", report),
    ] {
        let response = send(path, content_type, body).await.expect(path);
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
    }
    let documents = stop(pipeline);
    // 2 beacon events, 1 vital, 2 Faro events, 1 report.
    assert_eq!(documents.len(), 6, "{documents:#?}");
    for document in &documents {
        let text = document.to_string();
        assert!(!text.contains("SECRET"), "{document:#}");
        assert!(text.contains("token=REDACTED"), "{document:#}");
    }
}
