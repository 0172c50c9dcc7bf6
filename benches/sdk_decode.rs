//! Cost per event of decoding what another SDK sends, as a ratio to a
//! `rum_beacon` event measured in the same run (issue 13's target: ≤ 1.5×).
//! Criterion reports time per element; each group's throughput is its
//! number of events, so the `rum_beacon` line is the per-event baseline.
//!
//! - `rum_beacon/10_events`: the realistic beacon of `benches/beacon.rs`
//!   (page view, four web vitals, resources, fetch, click, error);
//! - `web_vitals/readme_queue_5`: the library README's array as web-vitals
//!   6 sent it from Chromium (`testdata/sdk/web-vitals/fetch-0.json`,
//!   `entries` dropped);
//! - `web_vitals/attribution_lcp_1`: one LCP of the attribution build with
//!   its whole navigation entry (`beacon-2.json`), the heaviest metric;
//! - `web_vitals/trimmed_5`: five metrics without `entries`/`attribution`,
//!   the same payload as the beacon's web_vital events;
//! - `faro/sdk_batches_N`: every body the Faro Web SDK sent from Chromium
//!   in the browser test (`testdata/sdk/faro/body-*.json`: web vitals,
//!   navigation and resource timings, a user action, an exception, logs,
//!   events), decoded one after the other; N is their events together;
//! - `faro/beacon_equivalent_10`: the `rum_beacon` body's ten events as
//!   the Faro SDK would send them (four web-vitals measurements, navigation,
//!   three resource timings, a user action, an exception with one frame),
//!   written by hand: `testdata/sdk/faro/beacon-equivalent.json`;
//! - `elastic_apm_rum/v3_page_load_9`, `v2_page_load_9`: one page load as
//!   `@elastic/apm-rum` 5.17.5 sent it from Chromium
//!   (`testdata/sdk/elastic-apm-rum/v3-1.ndjson`, `v2-1.ndjson`): a page
//!   view, five vitals, three spans (breakdown dropped, the default);
//! - `elastic_apm_rum/v3_error_1`: one error with its stack (`v3-3.ndjson`);
//! - `web_vitals/beacon_equivalent_4`, `elastic_apm_rum/beacon_equivalent_11`:
//!   the `rum_beacon` body's events as each SDK sends them, written by hand
//!   (`testdata/sdk-equivalent/`, its README): the protocols on the same
//!   events, as `bench/instructions.sh sdk` compares them in instructions.

#[path = "support/type_first.rs"]
mod type_first;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rum_pipeline::privacy::ClientIpMode;
use rum_pipeline::sources::{
    beacon_decoder, elastic_apm_decoder, faro_decoder, web_vitals_decoder,
};

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

fn fixture(name: &str) -> Vec<u8> {
    sdk_fixture("web-vitals", name)
}

fn sdk_fixture(sdk: &str, name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/testdata/sdk/{sdk}/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// The beacon's events as another SDK sends them (`testdata/sdk-equivalent/`).
fn equivalent_fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/testdata/sdk-equivalent/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("equivalent fixture")
}

fn beacon() -> Vec<u8> {
    let now = 1_763_700_000_000_i64;
    type_first::to_vec(&serde_json::json!({
        "v": 1,
        "app": {"name": "shop", "version": "1.4.2", "env": "production"},
        "session": {"id": "0f8fad5b-d9cb-469f-a165-70867728950e"},
        "view": {"id": "7c9e6679-v1", "url": "https://shop.example.com/product/42?ref=home", "referrer": "https://www.google.com/", "title": "Product 42"},
        "sent_at": now,
        "events": [
            {"type": "page_view", "ts": now - 900, "navigation_type": "navigate", "dns": 12.5, "tcp": 20.1, "tls": 18.2, "ttfb": 120.4, "response": 30.2, "dom_interactive": 480.5, "dom_content_loaded": 520.1, "load": 910.7, "transfer_size": 23450, "protocol": "h2"},
            {"type": "web_vital", "ts": now - 800, "name": "LCP", "value": 1234.5, "rating": "good", "delta": 1234.5, "id": "v4-1"},
            {"type": "web_vital", "ts": now - 700, "name": "CLS", "value": 0.042, "rating": "good", "delta": 0.01, "id": "v4-2"},
            {"type": "web_vital", "ts": now - 690, "name": "FCP", "value": 812.3, "rating": "good", "delta": 812.3, "id": "v4-3"},
            {"type": "resource", "ts": now - 600, "name": "https://cdn.example.com/static/app.js", "initiator_type": "script", "duration": 81.2, "transfer_size": 48210, "render_blocking": "blocking"},
            {"type": "resource", "ts": now - 500, "name": "https://cdn.example.com/img/hero.webp", "initiator_type": "img", "duration": 140.9, "transfer_size": 98120},
            {"type": "http", "ts": now - 400, "kind": "fetch", "method": "GET", "url": "https://api.example.com/cart?id=1", "status": 200, "duration": 45.3, "size": 812},
            {"type": "action", "ts": now - 300, "kind": "click", "target": "button#add-to-cart.btn.primary"},
            {"type": "web_vital", "ts": now - 200, "name": "INP", "value": 96, "rating": "good", "delta": 96, "id": "v4-4"},
            {"type": "error", "ts": now - 100, "message": "Cannot read properties of undefined (reading 'price')", "name": "TypeError", "stack": "TypeError: Cannot read properties of undefined\n    at render (https://cdn.example.com/static/app.js:1:2345)", "count": 1}
        ]
    }))
}

fn trimmed() -> Vec<u8> {
    let metrics: Vec<serde_json::Value> = ["TTFB", "FCP", "LCP", "INP", "CLS"]
        .iter()
        .enumerate()
        .map(|(i, name)| {
            serde_json::json!({"name": name, "value": 120.5 + i as f64, "rating": "good", "delta": 120.5,
                "id": format!("v6-1796046500057-87308181600{i}"), "navigationType": "navigate",
                "navigationURL": "https://shop.example.com/product/42?ref=home"})
        })
        .collect();
    serde_json::to_vec(&metrics).unwrap()
}

fn bench(c: &mut Criterion) {
    let body = beacon();
    assert!(
        type_first::events_type_first(&body),
        "the beacon's events have `type` first"
    );
    let facts = beacon_decoder::RequestFacts {
        received_at_ms: 1_763_700_000_100,
        client_ip: "203.0.113.7".parse().unwrap(),
        user_agent: Some(UA),
        client_hints: vec![],
    };
    let limits = beacon_decoder::BeaconLimits {
        max_events: 500,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        max_event_age_ms: 86_400_000,
        max_context_bytes: 64 * 1024,
        client_ip: ClientIpMode::Full,
    };
    let mut group = c.benchmark_group("rum_beacon");
    group.throughput(Throughput::Elements(10));
    group.bench_function("10_events", |b| {
        b.iter(|| beacon_decoder::decode(&body, &facts, &limits).unwrap())
    });
    group.finish();

    let facts = web_vitals_decoder::RequestFacts {
        received_at_ms: 1_763_700_000_100,
        client_ip: "203.0.113.7".parse().unwrap(),
        user_agent: Some(UA),
        referer: Some("https://shop.example.com/"),
    };
    let limits = web_vitals_decoder::MetricLimits {
        max_metrics: 50,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        keep_entries: false,
        client_ip: ClientIpMode::Full,
    };
    let mut group = c.benchmark_group("web_vitals");
    for (name, body, events) in [
        ("readme_queue_5", fixture("fetch-0.json"), 5),
        ("attribution_lcp_1", fixture("beacon-2.json"), 1),
        ("trimmed_5", trimmed(), 5),
        (
            "beacon_equivalent_4",
            equivalent_fixture("web-vitals.json"),
            4,
        ),
    ] {
        assert_eq!(
            web_vitals_decoder::decode(&body, &facts, &limits)
                .unwrap()
                .events
                .len() as u64,
            events
        );
        group.throughput(Throughput::Elements(events));
        group.bench_function(name, |b| {
            b.iter(|| web_vitals_decoder::decode(&body, &facts, &limits).unwrap())
        });
    }
    group.finish();

    let facts = faro_decoder::RequestFacts {
        received_at_ms: 1_763_700_000_100,
        client_ip: "203.0.113.7".parse().unwrap(),
        user_agent: Some(UA),
        session_header: None,
    };
    let limits = faro_decoder::FaroLimits {
        max_items: 500,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        max_event_age_ms: i64::MAX,
        max_context_bytes: 64 * 1024,
        client_ip: ClientIpMode::Full,
    };
    let dir = format!("{}/testdata/sdk/faro", env!("CARGO_MANIFEST_DIR"));
    let mut bodies: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("testdata/sdk/faro")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_name()?.to_str()?.to_owned();
            name.starts_with("body-")
                .then(|| Some((name, std::fs::read(&path).ok()?)))?
        })
        .collect();
    bodies.sort();
    let events: usize = bodies
        .iter()
        .map(|(_, b)| {
            faro_decoder::decode(b, &facts, &limits)
                .unwrap()
                .events
                .len()
        })
        .sum();
    let mut group = c.benchmark_group("faro");
    let equivalent = sdk_fixture("faro", "beacon-equivalent.json");
    assert_eq!(
        faro_decoder::decode(&equivalent, &facts, &limits)
            .unwrap()
            .events
            .len(),
        10
    );
    group.throughput(Throughput::Elements(10));
    group.bench_function("beacon_equivalent_10", |b| {
        b.iter(|| faro_decoder::decode(&equivalent, &facts, &limits).unwrap())
    });
    group.throughput(Throughput::Elements(events as u64));
    group.bench_function(format!("sdk_batches_{events}"), |b| {
        b.iter(|| {
            for (_, body) in &bodies {
                faro_decoder::decode(body, &facts, &limits).unwrap();
            }
        })
    });
    group.finish();

    let limits = elastic_apm_decoder::ApmLimits {
        max_events: 1000,
        max_event_bytes: 300 * 1024,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        keep_breakdown: false,
        max_context_bytes: 64 * 1024,
        client_ip: ClientIpMode::Full,
        label_names: std::sync::Arc::new(elastic_apm_decoder::LabelNames::first_seen(
            rum_pipeline::sources::elastic_apm_rum::DEFAULT_MAX_LABEL_NAMES,
        )),
    };
    let mut group = c.benchmark_group("elastic_apm_rum");
    for (name, body, version, events) in [
        (
            "beacon_equivalent_11",
            equivalent_fixture("elastic-apm-rum-v3.ndjson"),
            elastic_apm_decoder::ApiVersion::V3,
            11,
        ),
        (
            "v3_page_load_9",
            sdk_fixture("elastic-apm-rum", "v3-1.ndjson"),
            elastic_apm_decoder::ApiVersion::V3,
            9,
        ),
        (
            "v2_page_load_9",
            sdk_fixture("elastic-apm-rum", "v2-1.ndjson"),
            elastic_apm_decoder::ApiVersion::V2,
            9,
        ),
        (
            "v3_error_1",
            sdk_fixture("elastic-apm-rum", "v3-3.ndjson"),
            elastic_apm_decoder::ApiVersion::V3,
            1,
        ),
    ] {
        let facts = elastic_apm_decoder::RequestFacts {
            received_at_ms: 1_763_700_000_100,
            client_ip: "203.0.113.7".parse().unwrap(),
            user_agent: Some(UA),
            version,
        };
        assert_eq!(
            elastic_apm_decoder::decode(&body, &facts, &limits)
                .unwrap()
                .events
                .len() as u64,
            events
        );
        group.throughput(Throughput::Elements(events));
        group.bench_function(name, |b| {
            b.iter(|| elastic_apm_decoder::decode(&body, &facts, &limits).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
