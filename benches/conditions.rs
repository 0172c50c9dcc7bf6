//! Cost of condition evaluation per event, for a 5-route `route` config, next
//! to baselines measured in the same run: the same five decisions written by
//! hand as `event.get_str(..) == Some(..)`, and the floor of one lookup of
//! `url.domain`. Target: ≤ 50 ns/event for the 5-route decision.
//!
//!   cargo bench --bench conditions
//!
//! Every benchmark runs twice: `wall/...` measures wall-clock time as usual,
//! `cpu/...` measures the thread's CPU time, which a machine shared with other
//! work (CI, parallel builds) disturbs much less: time the thread spends
//! descheduled is not counted.
//!
//! Events come from the real beacon decoder, so maps have the size and key
//! layout of production documents.

use std::hint::black_box;

use std::time::Duration;

use criterion::measurement::Measurement;
#[path = "support/thread_cpu.rs"]
mod thread_cpu;
#[path = "support/type_first.rs"]
mod type_first;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rum_pipeline::conditions::ConditionSet;
use rum_pipeline::event::{Batch, Event};
use rum_pipeline::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
use rum_pipeline::transforms::route::RouteConfig;
use rum_pipeline::transforms::Transform;
use serde_json::json;
use thread_cpu::ThreadCpuTime;

/// Five sites, routed on the page's domain: the shape of a per-site pipeline.
const BY_DOMAIN: &str = r#"
route.shop = { field = "url.domain", equals = "shop.example.com" }
route.blog = { field = "url.domain", equals = "blog.example.com" }
route.docs = { field = "url.domain", equals = "docs.example.com" }
route.admin = { field = "url.domain", equals = "admin.example.com" }
route.status = { field = "url.domain", equals = "status.example.com" }
"#;

/// Five routes using every operator kind, with nesting.
const MIXED: &str = r#"
route.shop = { field = "url.domain", equals = "shop.example.com" }
route.blog = { field = "url.domain", in = ["blog.example.com", "www.blog.example.com"] }
route.admin = { field = "url.path", prefix = "/admin" }
route.errors = { all = [ { field = "rum.type", equals = "error" }, { not = { field = "service.environment", equals = "dev" } } ] }
route.apps = { field = "url.domain", matches = '^app[0-9]+\.example\.com$' }
"#;

const DOMAINS: [&str; 6] = [
    "shop.example.com",
    "blog.example.com",
    "docs.example.com",
    "admin.example.com",
    "status.example.com",
    "other.example.org",
];

/// One decoded document per domain (a web vital with the full beacon context).
fn events() -> Vec<Event> {
    let facts = RequestFacts {
        received_at_ms: 1_700_000_000_000,
        client_ip: "203.0.113.9".parse().expect("ip"),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
        client_hints: vec![],
    };
    let limits = BeaconLimits {
        max_events: 10,
        max_string_bytes: 4096,
        max_depth: 8,
        max_event_age_ms: 86_400_000,
        max_context_bytes: 64 * 1024,
        client_ip: rum_pipeline::privacy::ClientIpMode::Full,
    };
    DOMAINS
        .iter()
        .map(|domain| {
            let beacon = json!({
                "v": 1,
                "app": {"name": "site", "version": "1.4.2", "env": "production"},
                "session": {"id": "s-1"},
                "view": {"id": "v-1", "url": format!("https://{domain}/product/42?ref=home"), "referrer": "https://www.google.com/", "title": "Product"},
                "device": {"memory": 8, "cores": 8, "connection": {"effective_type": "4g", "rtt": 50}},
                "sent_at": 1_700_000_000_000_i64,
                "events": [{"type": "web_vital", "ts": 1_699_999_999_000_i64, "name": "LCP", "value": 1234.5, "rating": "good", "id": "v1"}],
            });
            let body = type_first::to_vec(&beacon);
            assert!(type_first::events_type_first(&body), "`type` first");
            let mut decoded = decode(&body, &facts, &limits).expect("valid beacon");
            decoded.events.remove(0)
        })
        .collect()
}

fn route(text: &str) -> RouteConfig {
    toml::from_str(text).expect("valid route config")
}

fn bench_wall(c: &mut Criterion) {
    bench(c, "wall");
}

fn bench_cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench(c, "cpu");
}

fn bench<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let events = events();
    let n = events.len() as u64;
    let mut group = c.benchmark_group(format!("{clock}/route_decision_5_routes"));
    group.throughput(Throughput::Elements(n));

    group.bench_function("baseline_hand_written_get_str", |b| {
        b.iter(|| {
            let mut hits = 0u32;
            for event in black_box(&events) {
                for site in &DOMAINS[..5] {
                    hits += u32::from(event.get_str("url.domain") == Some(*site));
                }
            }
            hits
        })
    });
    // The floor: the one lookup any routing on `url.domain` needs.
    group.bench_function("floor_one_get_str", |b| {
        b.iter(|| {
            let mut hits = 0u32;
            for event in black_box(&events) {
                hits += u32::from(event.get_str("url.domain").is_some());
            }
            hits
        })
    });
    for (name, text) in [
        ("conditions_by_domain", BY_DOMAIN),
        ("conditions_mixed_operators", MIXED),
    ] {
        // As `route` evaluates them: one set, shared field lookups.
        let set = ConditionSet::new(route(text).route.into_values());
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut hits = 0u32;
                for event in black_box(&events) {
                    set.for_each_match(event, |_| hits += 1);
                }
                hits
            })
        });
    }
    group.finish();

    // The whole transform: decisions plus moving events into their ports.
    let mut group = c.benchmark_group(format!("{clock}/route_transform_batch"));
    let batch: Batch = events.iter().cycle().take(600).cloned().collect();
    group.throughput(Throughput::Elements(batch.len() as u64));
    let config = route(BY_DOMAIN);
    let mut transform = config.build();
    let ports = config.outputs().len();
    group.bench_function("by_domain_600_events", |b| {
        b.iter_batched(
            || batch.clone(),
            |batch| {
                let mut out: Vec<Batch> = (0..ports)
                    .map(|_| Vec::with_capacity(batch.len()))
                    .collect();
                transform.transform(batch, &mut out);
                out
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
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
