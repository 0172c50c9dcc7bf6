//! Cost of the beacon source's own work, per beacon of 10 events: decoding
//! (parse, checks, fan-out into events) and encoding the events as NDJSON —
//! next to the bare parse of the same bytes into a JSON value, the floor any
//! JSON intake pays.

#[path = "support/type_first.rs"]
mod type_first;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rum_pipeline::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};

fn realistic_beacon() -> Vec<u8> {
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

fn bench(c: &mut Criterion) {
    let body = realistic_beacon();
    assert!(
        type_first::events_type_first(&body),
        "the beacon's events have `type` first"
    );
    let facts = RequestFacts {
        received_at_ms: 1_763_700_000_100,
        client_ip: "203.0.113.7".parse().unwrap(),
        user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
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
    let mut group = c.benchmark_group("beacon");
    group.throughput(Throughput::Elements(10));
    group.bench_function("baseline_parse_json_value", |b| {
        b.iter(|| serde_json::from_slice::<serde_json::Value>(&body).unwrap())
    });
    group.bench_function("decode", |b| {
        b.iter(|| decode(&body, &facts, &limits).unwrap())
    });
    group.bench_function("decode_and_drop", |b| {
        b.iter_batched(
            || (),
            |_| drop(decode(&body, &facts, &limits).unwrap()),
            BatchSize::SmallInput,
        )
    });
    let events = decode(&body, &facts, &limits).unwrap().events;
    group.bench_function("encode_ndjson", |b| {
        let mut out = Vec::with_capacity(32 * 1024);
        b.iter(|| {
            out.clear();
            for event in &events {
                event.write_json(&mut out);
                out.push(b'\n');
            }
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
