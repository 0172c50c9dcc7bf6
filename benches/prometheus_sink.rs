//! What the `prometheus` sink adds per event, against what every pipeline
//! pays anyway: decoding the realistic 10-event beacon of testdata/ (the work
//! of `rum_beacon -> blackhole`, minus HTTP). Measured in the same run, on
//! thread CPU time (steadier than wall time on a shared machine):
//!
//!   cargo bench --bench prometheus_sink
//!
//! `decode` is the baseline; `decode_and_prometheus` adds `observe` and
//! `record` for each event (dimensions service.name and url.domain, an LCP
//! budget); the ratio of the two is the sink's cost relative to a blackhole.
//! Not a test: it asserts nothing, it prints numbers.

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::Measurement;
#[path = "support/thread_cpu.rs"]
mod thread_cpu;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rum_pipeline::sinks::prometheus::series::{RumMetrics, Settings};
use rum_pipeline::sinks::prometheus::{observe, EventFields, PrometheusConfig};
use rum_pipeline::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
use thread_cpu::ThreadCpuTime;

const SINK: &str = r#"
dimensions = ["service.name", "url.domain"]
budgets = { LCP = 2500 }
"#;

fn bench_wall(c: &mut Criterion) {
    bench(c, "wall");
}

fn bench_cpu(c: &mut Criterion<ThreadCpuTime>) {
    bench(c, "cpu");
}

fn bench<M: Measurement>(c: &mut Criterion<M>, clock: &str) {
    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/testdata/beacons/realistic-10-events.json"
    ))
    .expect("testdata beacon");
    let facts = RequestFacts {
        received_at_ms: 1_763_700_000_500,
        client_ip: "203.0.113.9".parse().expect("ip"),
        user_agent: Some("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"),
        client_hints: vec![],
    };
    let limits = BeaconLimits {
        max_events: 100,
        max_string_bytes: 4096,
        max_depth: 8,
        max_event_age_ms: i64::MAX / 2,
    };
    let config: PrometheusConfig = toml::from_str(SINK).expect("sink config");
    let resolved = config.resolve().expect("valid");
    let fields = EventFields::new(&resolved.dimensions, true).expect("schema fields");
    let mut metrics = RumMetrics::new(Settings {
        labels: resolved
            .dimensions
            .iter()
            .map(|d| d.label.clone())
            .collect(),
        keep_on_fold: vec![true, false],
        max_series: 1000,
        max_sessions: 200_000,
        session_timeout_secs: 1800,
        buckets: resolved.buckets.clone(),
    });
    let events = decode(&body, &facts, &limits)
        .expect("valid beacon")
        .events
        .len() as u64;

    let mut group = c.benchmark_group(format!("{clock}/per_beacon_of_{events}_events"));
    group.throughput(Throughput::Elements(events));
    group.bench_function("decode", |b| {
        b.iter(|| decode(black_box(&body), &facts, &limits).expect("valid"))
    });
    group.bench_function("decode_and_prometheus", |b| {
        b.iter(|| {
            let decoded = decode(black_box(&body), &facts, &limits).expect("valid");
            let mut folded = 0;
            for event in &decoded.events {
                if let Some(observation) = observe(event, &fields) {
                    folded += metrics.record(&observation, 0);
                }
            }
            (decoded, folded)
        })
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
