//! Memory the event model keeps per beacon, through the real binary: a beacon
//! built to amplify memory (a huge shared context, hundreds of events that
//! each name their own page) is refused or stays small, and buffers stop
//! admitting at their byte budget, not only at their event count.

mod common;

use std::time::Duration;

use common::{client, Pipeline, Stdout};
use futures::StreamExt;
use serde_json::{json, Value};

/// 60 client hints of 15 KB and 500 events that each carry their own
/// `view.url`: ~0.93 MB. Before the typed context, every such event copied
/// the whole context (RSS 16 MB → 1.22 GB for one beacon).
fn amplifying_beacon(session: &str, hint_bytes: usize) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    let hints: serde_json::Map<String, Value> = (0..60)
        .map(|i| (format!("hint_{i}"), Value::String("h".repeat(hint_bytes))))
        .collect();
    let events: Vec<Value> = (0..500)
        .map(|i| {
            json!({"type": "web_vital", "ts": now - 10, "name": "CLS", "value": 0.1,
                   "view": {"id": format!("v{i}"), "url": format!("https://shop.example.com/page/{i}")}})
        })
        .collect();
    json!({
        "v": 1,
        "session": {"id": session},
        "view": {"id": "v", "url": "https://shop.example.com/", "title": "t"},
        "ua_hints": hints,
        "sent_at": now,
        "events": events,
    })
}

fn peak_rss_kib(p: &Pipeline) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.pid())).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn post(p: &Pipeline, body: &str) -> u16 {
    client()
        .post(p.url("/rum"))
        .body(body.to_owned())
        .send()
        .await
        .expect("answers")
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_context_over_max_context_bytes_is_refused_with_413() {
    let p = Pipeline::start(
        r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
max_body_bytes = "2mb"
access_log = false
[sinks.out]
type = "stdout"
inputs = ["beacons"]
"#,
    );
    let body = amplifying_beacon("s-big", 15_000).to_string();
    assert!(body.len() > 900_000, "{}", body.len());
    assert_eq!(post(&p, &body).await, 413);
    let refused = p
        .metric(
            "component_errors_total",
            &["error_type=\"context_too_large\""],
        )
        .await;
    assert_eq!(refused, 1.0);
    // The same events with a modest context are taken.
    let body = amplifying_beacon("s-small", 100).to_string();
    assert_eq!(post(&p, &body).await, 204);
    let docs = p.wait_documents(500, Duration::from_secs(20));
    assert_eq!(docs.len(), 500);
    // Each event kept its own page; the beacon's page is not mixed in.
    assert_eq!(docs[7]["url"]["full"], "https://shop.example.com/page/7");
    assert_eq!(docs[7]["url"]["path"], "/page/7");
    assert_eq!(docs[7]["view"]["id"], "v7");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_naming_their_own_page_do_not_copy_the_context_and_buffers_stop_at_their_byte_budget(
) {
    // The operator allows 2 MB contexts; the sink is stalled (nobody reads
    // stdout), so everything admitted stays in memory.
    let p = Pipeline::start_with(
        r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
max_body_bytes = "2mb"
max_context_bytes = "2mb"
send_timeout_ms = 50
access_log = false
[sinks.out]
type = "stdout"
inputs = ["beacons"]
buffer.max_events = 100000
buffer.max_bytes = "8mb"
"#,
        Stdout::Stall,
        &[],
    );
    let body = amplifying_beacon("s-amp", 15_000).to_string();
    let rss_before = p.rss_kib();
    let statuses: Vec<u16> = futures::stream::iter(0..12)
        .map(|_| post(&p, &body))
        .buffer_unordered(2)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 204 || *s == 503),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&503),
        "the byte budget never refused: {statuses:?}"
    );
    let buffered = p
        .metric("buffer_byte_size", &["component_id=\"out\""])
        .await;
    assert!(
        buffered <= 8.0 * 1024.0 * 1024.0,
        "buffer holds {buffered} bytes, budget 8 MiB"
    );
    // Twelve 0.93 MB beacons of 500 events: before, ~1.2 GB each. Now the
    // context is shared and the buffer stops at its budget; the stalled
    // stdout sink holds at most one batch of documents being written.
    let peak = peak_rss_kib(&p);
    eprintln!("RSS before {rss_before} KiB, peak {peak} KiB, buffered {buffered} bytes, answers {statuses:?}");
    assert!(
        peak < rss_before + 128 * 1024,
        "peak RSS {peak} KiB (started at {rss_before} KiB)"
    );
}

/// A huge User-Agent header on a beacon of 500 events: parsed once per
/// beacon (not once per event) and shared by the events, not copied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_huge_user_agent_is_parsed_once_per_beacon_and_shared() {
    let p = Pipeline::start_with(
        r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
max_body_bytes = "2mb"
access_log = false
[transforms.ua]
type = "user_agent"
inputs = ["beacons"]
[sinks.out]
type = "blackhole"
inputs = ["ua"]
"#,
        Stdout::Collect,
        &[],
    );
    // 50 KB: under the listener's 64 KiB head limit and the 64 KiB context cap.
    let ua = format!("Mozilla/5.0 (X11; Linux x86_64) {}", "x".repeat(50_000));
    let body = amplifying_beacon("s-ua", 10).to_string();
    let rss_before = p.rss_kib();
    for _ in 0..5 {
        let status = client()
            .post(p.url("/rum"))
            .header("user-agent", &ua)
            .body(body.clone())
            .send()
            .await
            .expect("answers")
            .status()
            .as_u16();
        assert_eq!(status, 204);
    }
    let mut seen = 0.0;
    for _ in 0..100 {
        seen = p
            .metric("component_received_events_total", &["component_id=\"out\""])
            .await;
        if seen >= 2500.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(seen, 2500.0, "all 2,500 events reach the sink");
    // One lookup decides a beacon; its other 499 events share the result.
    let misses = p
        .metric("user_agent_cache_lookups_total", &["result=\"miss\""])
        .await;
    assert!(misses <= 5.0, "{misses} parses for 5 beacons");
    let peak = peak_rss_kib(&p);
    eprintln!("RSS before {rss_before} KiB, peak {peak} KiB");
    // Before: the UA was copied into each of 2,500 events (329 MB for five).
    assert!(
        peak < rss_before + 48 * 1024,
        "peak {peak} KiB from {rss_before} KiB"
    );
}
