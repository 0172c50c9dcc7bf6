//! Per-event cost of `scrub_url` and `sample`, next to baselines measured in
//! the same run on the same events: cloning the batch (what every transform
//! variant below also pays, so the difference is the transform's own cost),
//! decoding the beacons that produced the events (the source's per-event
//! work) and encoding them as JSON (what every sink pays).
//!
//!   cargo bench --bench transforms_scrub_sample
//!   cargo bench --bench transforms_scrub_sample -- cpu/     # CPU time only
//!
//! Every benchmark runs twice: `wall/...` (wall clock) and `cpu/...` (the
//! thread's CPU time, much less disturbed on a machine shared with builds).

use std::time::Duration;

use criterion::measurement::Measurement;
#[path = "support/handed_on.rs"]
mod handed_on;
#[path = "support/thread_cpu.rs"]
mod thread_cpu;
#[path = "support/type_first.rs"]
mod type_first;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rum_pipeline::event::Batch;
use rum_pipeline::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
use rum_pipeline::telemetry::{ComponentMetrics, Registry};
use rum_pipeline::transforms::{Transform, TransformConfig, TransformContext};
use thread_cpu::ThreadCpuTime;

const BEACONS: usize = 20;

/// One beacon of 10 events. Every fourth page URL, referrer and API call
/// carries secrets (tokens, an e-mail, userinfo); the rest are clean, as most
/// real traffic is.
fn beacon(i: usize) -> Vec<u8> {
    let now = 1_763_700_000_000_i64;
    let dirty = i.is_multiple_of(4);
    let page = if dirty {
        format!("https://bob:pw@shop.example.com/u/{i}/orders/0f8fad5b-d9cb-469f-a165-70867728950e?token=abc{i}&page=2#access_token=t")
    } else {
        format!("https://shop.example.com/product/blue-shoe-{i}?ref=home")
    };
    let referrer = if dirty {
        "https://mail.example.com/inbox?email=alice%40example.com"
    } else {
        "https://www.google.com/"
    };
    let api = if dirty {
        "https://api.example.com/cart?api_key=k1&id=1"
    } else {
        "https://api.example.com/cart?id=1"
    };
    type_first::to_vec(&serde_json::json!({
        "v": 1,
        "app": {"name": "shop", "version": "1.4.2", "env": "production"},
        "session": {"id": format!("0f8fad5b-d9cb-469f-a165-{i:012}")},
        "view": {"id": format!("view-{i}"), "url": page, "referrer": referrer, "title": "Product"},
        "sent_at": now,
        "events": [
            {"type": "page_view", "ts": now - 900, "ttfb": 120.4, "load": 910.7, "transfer_size": 23450, "protocol": "h2"},
            {"type": "web_vital", "ts": now - 800, "name": "LCP", "value": 1234.5, "rating": "good"},
            {"type": "web_vital", "ts": now - 700, "name": "CLS", "value": 0.042, "rating": "good"},
            {"type": "web_vital", "ts": now - 690, "name": "FCP", "value": 812.3, "rating": "good"},
            {"type": "resource", "ts": now - 600, "name": "https://cdn.example.com/static/app.3f9a8b7c.js", "initiator_type": "script", "duration": 81.2},
            {"type": "resource", "ts": now - 500, "name": "https://cdn.example.com/img/hero.webp", "initiator_type": "img", "duration": 140.9},
            {"type": "http", "ts": now - 400, "kind": "fetch", "method": "GET", "url": api, "status": 200, "duration": 45.3},
            {"type": "action", "ts": now - 300, "kind": "click", "target": "button#add-to-cart"},
            {"type": "web_vital", "ts": now - 200, "name": "INP", "value": 96, "rating": "good"},
            {"type": "error", "ts": now - 100, "message": "Cannot read properties of undefined", "name": "TypeError",
             "stack": "TypeError: Cannot read properties of undefined\n    at render (https://cdn.example.com/static/app.3f9a8b7c.js:1:2345)\n    at https://cdn.example.com/static/vendor.js?v=3:2:10"}
        ]
    }))
}

fn transform(toml_text: &str, type_name: &str) -> Box<dyn Transform> {
    let table: toml::Table = toml::from_str(toml_text).expect("toml");
    let config = TransformConfig::parse(type_name, table).expect("config");
    let registry = Registry::new();
    let cx = TransformContext {
        id: type_name.into(),
        metrics: ComponentMetrics::new(&registry, type_name, "transform", config.type_name()),
    };
    config.build(&cx).expect("build")
}

fn bench<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let bodies: Vec<Vec<u8>> = (0..BEACONS).map(beacon).collect();
    assert!(
        bodies.iter().all(|b| type_first::events_type_first(b)),
        "the beacons' events have `type` first"
    );
    let facts = RequestFacts {
        received_at_ms: 1_763_700_000_100,
        client_ip: "203.0.113.7".parse().unwrap(),
        user_agent: Some(
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0.0.0 Safari/537.36",
        ),
        client_hints: vec![],
    };
    let limits = BeaconLimits {
        max_events: 500,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        max_event_age_ms: 86_400_000,
        max_context_bytes: 64 * 1024,
        client_ip: rum_pipeline::privacy::ClientIpMode::Full,
    };
    let decode_all = || -> Batch {
        bodies
            .iter()
            .flat_map(|body| decode(body, &facts, &limits).expect("beacon").events)
            .collect()
    };
    let events = decode_all();

    let mut group = c.benchmark_group(format!("{clock}/scrub_sample"));
    group.throughput(Throughput::Elements(events.len() as u64));
    // The runtime's own per-event work: the source decodes, fan-out clones,
    // every sink encodes.
    group.bench_function("baseline_decode", |b| b.iter(decode_all));
    group.bench_function("baseline_clone", |b| b.iter(|| events.clone()));
    group.bench_function("baseline_encode_json", |b| {
        let mut out = Vec::with_capacity(256 * 1024);
        b.iter(|| {
            out.clear();
            for event in &events {
                event.write_json(&mut out);
                out.push(b'\n');
            }
            out.len()
        })
    });

    let variants: [(&str, &str, &str); 5] = [
        ("scrub_url", "scrub_url", ""),
        (
            "scrub_url_routes",
            "scrub_url",
            "routes = [\"/product/{slug}\", \"/u/{id}/orders/*\"]",
        ),
        (
            "scrub_url_strip_fragment_remove",
            "scrub_url",
            "strip_fragment = true\nparam_action = \"remove\"",
        ),
        ("sample_rate_0.1", "sample", "rate = 0.1"),
        (
            "sample_per_type",
            "sample",
            "rate = 0.5\nrates = { resource = 0.1, web_vital = 0.2 }",
        ),
    ];
    for (name, type_name, config) in variants {
        let mut transform = transform(config, type_name);
        // Only the transform is timed: the batch is cloned before (each
        // beacon's context copied for its events alone, as a pipeline's
        // events hold it: see support/handed_on.rs), and the result dropped
        // after.
        group.bench_function(name, |b| {
            b.iter_batched(
                || handed_on::handed_on(&events),
                |batch| {
                    let mut out = vec![Vec::with_capacity(batch.len())];
                    transform.transform(batch, &mut out);
                    out
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

fn bench_wall(c: &mut Criterion) {
    bench(c, "wall");
}

fn bench_cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench(c, "cpu");
}

fn config<M: Measurement>(c: Criterion<M>) -> Criterion<M> {
    c.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(4))
}

criterion_group! {
    name = wall;
    config = config(Criterion::default());
    targets = bench_wall
}
criterion_group! {
    name = cpu;
    config = config(Criterion::default().with_measurement(ThreadCpuTime));
    targets = bench_cpu
}
criterion_main!(wall, cpu);
