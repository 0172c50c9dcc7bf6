//! Per-event cost of each transform, next to the bare runtime's per-event
//! cost measured in the same run on the same events.
//!
//!     cargo bench --bench transforms
//!     cargo bench --bench transforms -- user_agent     # one group
//!
//! Every group reports time per event (criterion's "thrpt" line is events/s).
//! The events are what the `rum_beacon` source makes of realistic beacons:
//! `fixture()` decodes beacons through the real decoder, several events per
//! beacon sharing UA, hints and client address, as in production.
//!
//! - `baseline`: what every event costs the runtime anyway, with no transform:
//!   `clone` copies each event (what a fan-out does) and `encode_json`
//!   serializes it (what every sink does). Transform figures are read against
//!   these.
//! - one group per transform, named after its `type`. To add one, write a
//!   `fn bench_<type>(c)` that builds the transform and calls
//!   `run_transform`, and list it in `criterion_group!` below.

use std::hint::black_box;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

#[path = "support/handed_on.rs"]
mod handed_on;
#[path = "support/type_first.rs"]
mod type_first;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use rum_pipeline::event::{Batch, Event, FieldId};
use rum_pipeline::schema;
use rum_pipeline::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
use rum_pipeline::telemetry::{ComponentMetrics, Registry};
use rum_pipeline::transforms::geoip::GeoipConfig;
use rum_pipeline::transforms::user_agent::UserAgentConfig;
use rum_pipeline::transforms::{Transform, TransformContext};

/// Events per batch: what a busy source hands a transform at once.
const BATCH: usize = 512;
const EVENTS_PER_BEACON: usize = 8;

/// One browser sending beacons: its User-Agent, the `Sec-CH-UA*` headers it
/// sends (as the source stores them), its address.
struct Client {
    ua: &'static str,
    hints: &'static [(&'static str, &'static str)],
    ip: &'static str,
}

/// A realistic mix of clients.
const CLIENTS: &[Client] = &[
    Client {
        ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
        hints: &[
            ("sec_ch_ua", r#""Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99""#),
            ("sec_ch_ua_mobile", "?0"),
            ("sec_ch_ua_platform", r#""Windows""#),
        ],
        ip: "81.2.69.142",
    },
    Client {
        ua: "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1",
        hints: &[],
        ip: "2a02:598:aaaa::1",
    },
    Client {
        ua: "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
        hints: &[
            ("sec_ch_ua", r#""Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99""#),
            ("sec_ch_ua_mobile", "?1"),
            ("sec_ch_ua_platform", r#""Android""#),
        ],
        ip: "89.160.20.115",
    },
    Client {
        ua: "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
        hints: &[],
        ip: "81.2.69.160",
    },
    Client {
        ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
        hints: &[],
        ip: "2001:218::7",
    },
    Client {
        ua: "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
        hints: &[],
        ip: "67.43.156.7",
    },
    Client {
        ua: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0",
        hints: &[],
        ip: "8.8.8.8",
    },
    Client {
        ua: "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/124.0.6367.91 Safari/537.36",
        hints: &[],
        ip: "10.1.2.3",
    },
];

fn beacon_body(session: usize) -> Vec<u8> {
    let now = 1_767_225_600_000i64;
    let events: Vec<serde_json::Value> = (0..EVENTS_PER_BEACON)
        .map(|i| match i % 4 {
            0 => serde_json::json!({"type": "web_vital", "ts": now - 50, "name": "LCP", "value": 1234.5, "rating": "good", "id": format!("v{i}")}),
            1 => serde_json::json!({"type": "resource", "ts": now - 40, "name": "https://cdn.example.com/app.js", "initiator_type": "script", "duration": 80.5, "transfer_size": 12000}),
            2 => serde_json::json!({"type": "action", "ts": now - 30, "kind": "click", "target": "button#buy.primary"}),
            _ => serde_json::json!({"type": "page_view", "ts": now - 60, "ttfb": 120.0, "load": 900.0, "navigation_type": "navigate"}),
        })
        .collect();
    type_first::to_vec(&serde_json::json!({
        "v": 1,
        "app": {"name": "shop", "version": "1.4.2", "env": "production"},
        "session": {"id": format!("session-{session}")},
        "view": {"id": format!("view-{session}"), "url": "https://shop.example.com/product/42?ref=home", "referrer": "https://www.google.com/", "title": "Product 42"},
        "sent_at": now,
        "events": events,
    }))
}

/// `BATCH` events from beacons of the `CLIENTS` in turn.
fn fixture() -> Batch {
    let limits = BeaconLimits {
        max_events: 500,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        max_event_age_ms: 86_400_000,
        max_context_bytes: 64 * 1024,
        client_ip: rum_pipeline::privacy::ClientIpMode::Full,
    };
    let mut batch = Vec::with_capacity(BATCH);
    let mut session = 0;
    while batch.len() < BATCH {
        let client = &CLIENTS[session % CLIENTS.len()];
        let facts = RequestFacts {
            received_at_ms: 1_767_225_600_000,
            client_ip: client.ip.parse::<IpAddr>().expect("fixture address"),
            user_agent: Some(client.ua),
            client_hints: client.hints.to_vec(),
        };
        let body = beacon_body(session);
        assert!(type_first::events_type_first(&body), "`type` first");
        let decoded = decode(&body, &facts, &limits).expect("fixture beacon decodes");
        batch.extend(decoded.events);
        session += 1;
    }
    batch.truncate(BATCH);
    batch
}

/// The same events with every event's address different from the one before,
/// so nothing is saved by runs of one address (a worst case for `geoip`).
/// `geoip` looks up the whole address the source keeps in the context a
/// beacon's events share, not the event's `client.ip` text: each event gets
/// a context of its own holding its address, as if every event were a
/// beacon of its own from another client.
fn interleaved(batch: &Batch) -> Batch {
    let mut out = batch.clone();
    for (i, event) in out.iter_mut().enumerate() {
        let ip = CLIENTS[i % CLIENTS.len()].ip;
        Event::edit_shared_context(std::slice::from_mut(event), |context| {
            context.set_client_address(ip.parse().expect("fixture address"));
            context.set(FieldId::of(schema::CLIENT_IP), ip.to_owned());
        });
    }
    // What `geoip` looks up: the whole address in each event's context.
    assert!(
        out.windows(2)
            .all(|w| w[0].context().client_address() != w[1].context().client_address()),
        "interleaved: neighbouring events share the address geoip looks up"
    );
    out
}

fn context(type_name: &'static str) -> TransformContext {
    let registry = Registry::new();
    TransformContext {
        id: type_name.to_owned(),
        metrics: ComponentMetrics::new(&registry, type_name, "transform", type_name),
    }
}

/// Times `transform` over clones of `batch`, each beacon's context held by
/// its events alone as in a pipeline (`support/handed_on.rs`); the clone and
/// the drop of the result are outside the timing. Warm-up passes fill the
/// caches.
fn run_transform(
    c: &mut Criterion,
    group: &str,
    name: &str,
    mut transform: impl Transform,
    batch: &Batch,
) {
    let mut g = c.benchmark_group(group);
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function(name, |b| {
        b.iter_batched(
            || handed_on::handed_on(batch),
            |events| {
                let mut out = vec![Vec::new()];
                transform.transform(events, &mut out);
                out
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn bench_baseline(c: &mut Criterion) {
    let batch = fixture();
    let mut g = c.benchmark_group("baseline");
    g.throughput(Throughput::Elements(batch.len() as u64));
    g.bench_function("clone", |b| {
        b.iter_batched(
            || (),
            |()| batch.iter().map(Event::clone).collect::<Vec<_>>(),
            BatchSize::SmallInput,
        )
    });
    let mut buf = Vec::with_capacity(1 << 20);
    g.bench_function("encode_json", |b| {
        b.iter(|| {
            buf.clear();
            for event in &batch {
                event.write_json(&mut buf);
                buf.push(b'\n');
            }
            black_box(buf.len())
        })
    });
    g.finish();
}

fn bench_user_agent(c: &mut Criterion) {
    let batch = fixture();
    let warm = UserAgentConfig::default()
        .build(&context("user_agent"))
        .expect("builds");
    run_transform(c, "user_agent", "cache_hit", warm, &batch);
    let uncached = UserAgentConfig {
        cache_size: 0,
        ..UserAgentConfig::default()
    };
    let cold = uncached.build(&context("user_agent")).expect("builds");
    run_transform(c, "user_agent", "no_cache", cold, &batch);
}

fn bench_geoip(c: &mut Criterion) {
    let batch = fixture();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/geoip");
    let mut config = GeoipConfig::new(dir.join("GeoIP2-City-Test.mmdb"));
    config.asn_database = Some(dir.join("GeoLite2-ASN-Test.mmdb"));
    let build = |config: &GeoipConfig| config.build(&context("geoip")).expect("builds");
    run_transform(c, "geoip", "beacon_runs", build(&config), &batch);
    run_transform(
        c,
        "geoip",
        "every_event_a_new_address",
        build(&config),
        &interleaved(&batch),
    );
    config.cache_size = 0;
    run_transform(
        c,
        "geoip",
        "no_record_cache",
        build(&config),
        &interleaved(&batch),
    );
}

fn config() -> Criterion {
    // Small machine, shared with builds: short runs, many samples.
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(30)
}

criterion_group! {
    name = transforms;
    config = config();
    targets = bench_baseline, bench_user_agent, bench_geoip
}
criterion_main!(transforms);
