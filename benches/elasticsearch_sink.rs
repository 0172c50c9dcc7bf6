//! Throughput of the Elasticsearch sink into the in-process double answering
//! at once: documents/s and MB/s on one core, and bulk sizes at steady state.
//! The baseline, measured in the same run on the same documents, is encoding
//! alone (NDJSON + `_id`, no HTTP), so the ratio shows what the delivery
//! machinery costs on top.
//!
//!   cargo bench --bench elasticsearch_sink            # 200k documents
//!   BENCH_DOCS=50000 cargo bench --bench elasticsearch_sink
//!   BENCH_EVENTS=beacons cargo bench --bench elasticsearch_sink
//!
//! `BENCH_EVENTS=beacons` makes the documents as the server does: the
//! realistic 10-event beacon (`testdata/beacons/realistic-10-events.json`,
//! each with its own session id) decoded by `rum_beacon`'s decoder and run
//! through the bench's chain (`user_agent`, `geoip` on the test City
//! database, `scrub_url`, `labels`), on the producer thread. The default
//! (`built`) builds contexts and events from nested JSON values, wider
//! documents (about 1.7 KB) in a shape no source makes.
//!
//! Not a test: it asserts nothing, it prints numbers.

#[path = "support/chain.rs"]
mod chain;
#[path = "../tests/support/es_double.rs"]
mod es_double;

// The product's allocator: the sink frees events made on another thread,
// and glibc's `free` of those was about half of the encoding cost.
#[global_allocator]
static ALLOCATOR: rum_pipeline::allocator::MiMalloc = rum_pipeline::allocator::MiMalloc;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use rum_pipeline::event::{Context, Counted, Event};
use rum_pipeline::http::server::Health;
use rum_pipeline::sinks::elasticsearch::encoder::BulkBatch;
use rum_pipeline::sinks::elasticsearch::index::{IndexOptions, IndexRouter};
use rum_pipeline::sinks::{SinkConfig, SinkContext};
use rum_pipeline::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
use rum_pipeline::telemetry::{ComponentMetrics, Registry};
use rum_pipeline::topology::buffer::buffer;
use rum_pipeline::topology::shutdown::ShutdownTrigger;
use rum_pipeline::transforms::Transform;
use serde_json::{json, Value};

/// Upstream batch size, as a beacon of that many events would give.
const UPSTREAM_BATCH: usize = 20;

/// The context one beacon's events share (as the beacon source builds it:
/// one reference-counted map per beacon), after enrichment.
fn context(beacon: usize) -> Counted<Context> {
    let session = format!(
        "{:016x}{:016x}",
        beacon,
        beacon.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    );
    let page = beacon % 500;
    let Value::Object(map) = json!({
        "rum": {"beacon_version": 1,
            "connection": {"effective_type": "4g", "rtt": 50.0, "downlink": 10.0, "save_data": false},
            "device": {"memory": 8.0, "cores": 8}},
        "service": {"name": "shop", "version": "1.4.2", "environment": "production"},
        "session": {"id": session},
        "view": {"id": format!("{session}-v{}", beacon % 3), "title": "Trail running shoes – Men's – Example Shop"},
        "url": {"full": format!("https://shop.example.com/products/trail-runner-{page}?utm_source=newsletter&utm_medium=email"),
            "scheme": "https", "domain": "shop.example.com", "path": format!("/products/trail-runner-{page}"),
            "query": "utm_source=newsletter&utm_medium=email", "path_template": "/products/:slug"},
        "http": {"request": {"referrer": "https://www.google.com/"}},
        "user_agent": {"original": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36",
            "name": "Chrome", "version": "126.0.0.0", "os": {"name": "macOS", "version": "10.15.7"},
            "device": {"name": "Mac"}, "category": "desktop"},
        "client": {"ip": format!("203.0.113.{}", beacon % 250),
            "geo": {"continent_code": "EU", "country_iso_code": "CZ", "country_name": "Czechia", "region_name": "Prague",
                "city_name": "Prague", "timezone": "Europe/Prague", "location": {"lat": 50.0755, "lon": 14.4378}},
            "as": {"number": 5610, "organization": {"name": "O2 Czech Republic, a.s."}}},
        "labels": {"team": "checkout", "release": "2026.03.1", "synthetic": "false"},
    }) else {
        unreachable!("an object literal")
    };
    Event::from(Value::Object(map)).context().clone()
}

/// One event of a beacon: its own fields on top of the shared context.
fn event(shared: &Counted<Context>, i: usize) -> Event {
    let kinds = ["web_vital", "resource", "page_view", "action", "error"];
    let kind = kinds[i % kinds.len()];
    let mut event = Event::with_context(shared.clone());
    event.insert(
        "@timestamp",
        format!(
            "2026-03-07T10:{:02}:{:02}.{:03}Z",
            (i / 60_000) % 60,
            (i / 1000) % 60,
            i % 1000
        ),
    );
    event.insert(
        "event",
        json!({"kind": "event", "dataset": format!("rum.{kind}"), "ingested": "2026-03-07T10:00:00.412Z"}),
    );
    event.insert("rum.type", kind);
    event.insert("rum.seq", (i % UPSTREAM_BATCH) as u64);
    match kind {
        "web_vital" => event.insert("rum.vital", json!({"name": "LCP", "value": 1234.5 + i as f64, "rating": "good", "delta": 12.5,
            "id": format!("v4-{i}"), "navigation_type": "navigate",
            "attribution": {"element": "#hero > img.product-image", "url": "https://cdn.example.com/img/hero.avif",
                "timeToFirstByte": 120.3, "resourceLoadDelay": 80.1, "resourceLoadDuration": 410.0, "elementRenderDelay": 30.2}})),
        "resource" => event.insert("rum.resource", json!({"name": format!("https://cdn.example.com/static/js/chunk-{}.js", i % 40),
            "initiator_type": "script", "start": 312.4, "duration": 85.2, "transfer_size": 14_233, "encoded_size": 13_933,
            "decoded_size": 48_120, "render_blocking": "non-blocking", "cache": "miss", "protocol": "h2", "status": 200})),
        "page_view" => event.insert("rum.nav", json!({"navigation_type": "navigate", "dns": 12.0, "tcp": 25.1, "tls": 18.3, "ttfb": 120.4,
            "response": 30.2, "dom_interactive": 640.0, "dom_content_loaded": 720.5, "dom_complete": 1410.0, "load": 1432.1,
            "transfer_size": 22_011, "protocol": "h2"})),
        "error" => event.insert("error", json!({"message": "TypeError: Cannot read properties of undefined (reading 'price')",
            "type": "TypeError", "stack_trace": "TypeError: Cannot read properties of undefined (reading 'price')\n    at renderCart (https://cdn.example.com/static/js/cart.js:12:4031)"})),
        _ => event.insert("rum.action", json!({"kind": "click", "target": "button#add-to-cart.btn.btn-primary", "name": "Add to cart"})),
    }
    event
}

/// Whether documents come from decoded beacons (`BENCH_EVENTS=beacons`).
static BEACONS: AtomicBool = AtomicBool::new(false);

fn decoded_beacons() -> bool {
    BEACONS.load(Ordering::Relaxed)
}

/// The transforms of bench/run.sh's chain (sampling at rate 1 is a no-op),
/// with the small test City database.
fn beacon_chain() -> Vec<Box<dyn Transform>> {
    chain::build(
        [
            ("user_agent", ""),
            (
                "geoip",
                "database = \"testdata/geoip/GeoIP2-City-Test.mmdb\"",
            ),
            ("scrub_url", ""),
            ("labels", "labels = { env = \"bench\", team = \"web\" }"),
        ]
        .map(|(type_name, toml_text)| {
            (type_name, toml::from_str(toml_text).expect("chain config"))
        }),
    )
}

/// Streams `n` documents of decoded beacons (see the module's comment),
/// each beacon's events one upstream batch.
fn produce_beacons(
    n: usize,
    offset: usize,
    mut deliver: impl FnMut(Vec<Event>) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    const SESSION: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
    // Addresses the test City database knows.
    const CLIENTS: [&str; 4] = [
        "81.2.69.142",
        "81.2.69.160",
        "2.125.160.216",
        "89.160.20.112",
    ];
    let body = std::fs::read_to_string("testdata/beacons/realistic-10-events.json")
        .expect("run from the repo root");
    std::thread::spawn(move || {
        let mut chain = beacon_chain();
        let limits = BeaconLimits::default();
        let mut made = 0;
        let mut beacon = offset;
        while made < n {
            let session = format!("{beacon:0>36x}");
            let text = body.replace(SESSION, &session);
            let facts = RequestFacts {
                received_at_ms: 1_763_700_000_100,
                client_ip: CLIENTS[beacon % CLIENTS.len()].parse().expect("ip"),
                user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
                client_hints: vec![],
            };
            let events = decode(text.as_bytes(), &facts, &limits)
                .expect("the realistic beacon decodes")
                .events;
            let mut batch = chain::run(&mut chain, events);
            batch.truncate(n - made);
            made += batch.len();
            beacon += 1;
            deliver(batch);
        }
    })
}

/// Streams `n` documents, one beacon of `UPSTREAM_BATCH` events at a time,
/// from another thread, made just in time as the beacon source makes them.
fn produce(
    n: usize,
    offset: usize,
    mut deliver: impl FnMut(Vec<Event>) + Send + 'static,
) -> std::thread::JoinHandle<()> {
    if decoded_beacons() {
        return produce_beacons(n, offset, deliver);
    }
    std::thread::spawn(move || {
        let mut i = offset;
        while i < offset + n {
            let shared = context(i / UPSTREAM_BATCH);
            let end = (i + UPSTREAM_BATCH).min(offset + n);
            deliver((i..end).map(|k| event(&shared, k)).collect());
            i = end;
        }
    })
}

/// CPU time of the calling thread: "on one core" whatever else the machine runs.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn mb(bytes: f64) -> f64 {
    bytes / 1_000_000.0
}

/// Encoding alone (NDJSON + `_id`, events freed after), no HTTP: the
/// ceiling for the sink. Returns docs per CPU-second and bytes per document.
fn baseline(docs: usize) -> (f64, f64) {
    let router = IndexRouter::new(&IndexOptions {
        template: None,
        prefix: "c.rum",
        data_stream: false,
        fallback: "other",
        allowed_values: &BTreeMap::new(),
    })
    .expect("router");
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Event>>(64);
    let producer = produce(docs, 0, move |batch| {
        let _ = tx.send(batch);
    });
    let cpu = thread_cpu();
    let index = router.prepare(&chrono::Utc::now());
    let mut scratch = Vec::new();
    let (mut bytes, mut count) = (0usize, 0usize);
    let mut batch = BulkBatch::with_capacity(4 << 20, 1000);
    for upstream in rx {
        count += upstream.len();
        for event in &upstream {
            batch.push(event, &index, &mut scratch);
            if batch.len() == 1000 {
                bytes += batch.body.len();
                batch = BulkBatch::with_capacity(4 << 20, 1000);
            }
        }
    }
    bytes += batch.body.len();
    let secs = thread_cpu() - cpu;
    let _ = producer.join();
    (count as f64 / secs, bytes as f64 / count as f64)
}

struct SinkRun {
    /// Per second of the sink thread's CPU time.
    docs_per_cpu_sec: f64,
    /// Per second of wall time (depends on what else the machine runs).
    docs_per_sec: f64,
    wire_mb_per_sec: f64,
    sizes: BTreeMap<usize, usize>,
    requests: u64,
}

/// The whole sink on a single-threaded runtime (one core), the double on its own thread.
fn sink(count: usize, offset: usize, compression: &str) -> SinkRun {
    let es = es_double::EsDouble::start();
    es.count_only(true);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let registry = Registry::new();
    let cpu = thread_cpu();
    let elapsed = runtime.block_on(async {
        let table: toml::Table = toml::from_str(&format!(
            "endpoints = \"{}\"\nhealthcheck = false\ncompression = \"{compression}\"\nbatch.max_events = 1000\nbatch.max_bytes = \"10mb\"\nrequest.concurrency = 4",
            es.url()
        ))
        .expect("toml");
        let config = SinkConfig::parse("elasticsearch", table).expect("config");
        let (tx, rx) = buffer(8192, usize::MAX);
        let future = config
            .build(SinkContext {
                id: "es".into(),
                metrics: ComponentMetrics::new(&registry, "es", "sink", "elasticsearch"),
                health: Arc::new(Health::default()),
                // Never triggered: these runs end when their input closes.
                shutdown: ShutdownTrigger::new().subscribe(),
                input: rx.into(),
            })
            .expect("build");
        let start = Instant::now();
        let feeder = tokio::runtime::Builder::new_current_thread().build().expect("feeder runtime");
        let producer = produce(count, offset, move |batch| {
            feeder.block_on(tx.send(batch)).expect("send");
        });
        future.await;
        let elapsed = start.elapsed();
        let _ = producer.join();
        elapsed
    });
    let cpu_secs = thread_cpu() - cpu;
    let secs = elapsed.as_secs_f64();
    let delivered = registry.counter_sum("component_sent_events_total", &[("component_id", "es")]);
    assert_eq!(delivered as usize, count, "every document delivered");
    let wire = registry.counter_sum("component_sent_bytes_total", &[("component_id", "es")]);
    let mut sizes = BTreeMap::new();
    for request in es.bulk_requests() {
        *sizes.entry(request.actions.len()).or_insert(0) += 1;
    }
    let (requests, _, _) = es.totals();
    SinkRun {
        docs_per_cpu_sec: count as f64 / cpu_secs,
        docs_per_sec: count as f64 / secs,
        wire_mb_per_sec: mb(wire as f64) / secs,
        sizes,
        requests,
    }
}

fn main() {
    // `cargo test --all-targets` runs benches without `--bench`: a smoke run only.
    if !std::env::args().any(|a| a == "--bench") {
        for beacons in [false, true] {
            BEACONS.store(beacons, Ordering::Relaxed);
            let run = sink(2_000, 0, "gzip");
            println!(
                "elasticsearch_sink bench (test mode, decoded beacons: {beacons}): 2000 documents delivered in {} requests",
                run.requests
            );
        }
        return;
    }
    BEACONS.store(
        std::env::var("BENCH_EVENTS").is_ok_and(|v| v == "beacons"),
        Ordering::Relaxed,
    );
    let docs: usize = std::env::var("BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<Event>>();
    let _ = produce(100, 0, move |batch| drop(tx.send(batch))).join();
    let sample: Vec<usize> = rx
        .iter()
        .flatten()
        .map(|event| {
            let mut out = Vec::new();
            event.write_json(&mut out);
            out.len()
        })
        .collect();
    let avg = sample.iter().sum::<usize>() as f64 / sample.len() as f64;
    println!(
        "documents: {docs} ({}), {avg:.0} bytes on average (min {}, max {}), upstream batches of {}",
        if decoded_beacons() { "decoded beacons" } else { "built from JSON values" },
        sample.iter().min().unwrap_or(&0),
        sample.iter().max().unwrap_or(&0),
        if decoded_beacons() { 10 } else { UPSTREAM_BATCH }
    );
    // Warm up allocator and connections.
    let _ = sink(20_000, 10_000_000, "none");

    let (base_docs, bytes_per_doc) = baseline(docs);
    println!(
        "baseline (encode only):            {base_docs:>10.0} docs per CPU-second  {:>7.1} MB/s NDJSON",
        mb(base_docs * bytes_per_doc)
    );
    for compression in ["none", "gzip"] {
        let run = sink(docs, 0, compression);
        let steady: Vec<(usize, usize)> = run.sizes.iter().map(|(k, v)| (*k, *v)).collect();
        let full = run.sizes.get(&1000).copied().unwrap_or(0);
        let mean = docs as f64 / run.requests.max(1) as f64;
        println!(
            "sink, compression={compression:<4}:          {:>10.0} docs per CPU-second  {:>7.1} MB/s NDJSON  ratio to baseline {:.2}",
            run.docs_per_cpu_sec,
            mb(run.docs_per_cpu_sec * bytes_per_doc),
            run.docs_per_cpu_sec / base_docs
        );
        println!(
            "    wall clock: {:.0} docs/s, {:.1} MB/s on the wire (shares the machine with the double and whatever else runs)",
            run.docs_per_sec, run.wire_mb_per_sec
        );
        println!(
            "    bulk requests: {}, mean {mean:.0} docs/request, {full} of them full (1000); sizes seen: {:?}",
            run.requests,
            steady.iter().rev().take(5).collect::<Vec<_>>()
        );
    }
}
