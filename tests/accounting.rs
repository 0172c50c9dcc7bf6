//! Nothing accepted is lost silently, as /metrics tells it: beacons through
//! the real binary over a topology with every kind of loss a pipeline has —
//! a route whose `_unmatched` nobody reads, a filter, a sample, a fan-out to
//! Elasticsearch sinks that refuse documents (one with a dead-letter file, one
//! without) and retry others — then, per component, what it received is what
//! it sent plus what it counted as dropped, and what each one sent is what its
//! downstreams received.

mod common;
mod support;

use std::time::{Duration, Instant};

use common::{client, metric_in, Pipeline};
use serde_json::{json, Value};
use support::es_double::{EsDouble, ItemFault};

fn config(es_dead_letters: &str, es_without: &str) -> String {
    format!(
        r#"
stats_interval_secs = 0

[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
access_log = false

[transforms.sites]
type = "route"
inputs = ["beacons"]
route.shop = {{ field = "service.name", equals = "shop" }}
route.blog = {{ field = "service.name", equals = "blog" }}

[transforms.no_actions]
type = "filter"
inputs = ["sites.shop"]
condition = {{ not = {{ field = "rum.type", equals = "action" }} }}

[transforms.half]
type = "sample"
inputs = ["sites.blog"]
rate = 0.5

[sinks.out]
type = "stdout"
inputs = ["no_actions", "half"]

[sinks.es]
type = "elasticsearch"
inputs = ["no_actions", "half"]
endpoints = '{es_dead_letters}'
healthcheck = false
batch.max_events = 20
batch.timeout_ms = 50
retry.initial_backoff_ms = 20
retry.max_backoff_ms = 100
dead_letter.path = "{{dir}}/dead.ndjson"

[sinks.es_without]
type = "elasticsearch"
inputs = ["half"]
endpoints = '{es_without}'
healthcheck = false
batch.max_events = 20
batch.timeout_ms = 50

[sinks.count]
type = "blackhole"
inputs = ["beacons"]
"#
    )
}

/// Each component's inputs: `(component, output)` pairs, as in the config.
const EDGES: &[(&str, &[(&str, &str)])] = &[
    ("sites", &[("beacons", "_default")]),
    ("count", &[("beacons", "_default")]),
    ("no_actions", &[("sites", "shop")]),
    ("half", &[("sites", "blog")]),
    ("out", &[("no_actions", "_default"), ("half", "_default")]),
    ("es", &[("no_actions", "_default"), ("half", "_default")]),
    ("es_without", &[("half", "_default")]),
];

const COMPONENTS: &[&str] = &[
    "beacons",
    "sites",
    "no_actions",
    "half",
    "out",
    "es",
    "es_without",
    "count",
];

fn of(id: &str) -> String {
    format!("component_id=\"{id}\"")
}

/// What does not add up in `text`; empty when everything does.
fn unaccounted(text: &str) -> Vec<String> {
    let mut problems = Vec::new();
    for id in COMPONENTS {
        let id_label = of(id);
        let labels = [id_label.as_str()];
        let received = metric_in(text, "component_received_events_total", &labels);
        let sent = metric_in(text, "component_sent_events_total", &labels);
        let discarded = metric_in(text, "component_discarded_events_total", &labels);
        let dead_lettered = metric_in(text, "elasticsearch_dead_lettered_events_total", &labels);
        let waiting = metric_in(text, "buffer_events", &labels);
        if waiting > 0.0 {
            problems.push(format!("{id}: {waiting} events still waiting"));
        }
        if received != sent + discarded + dead_lettered {
            problems.push(format!(
                "{id}: received {received} != sent {sent} + discarded {discarded} + dead-lettered {dead_lettered}"
            ));
        }
    }
    for (id, inputs) in EDGES {
        let received = metric_in(text, "component_received_events_total", &[of(id).as_str()]);
        let upstream_sent: f64 = inputs
            .iter()
            .map(|(up, port)| {
                let output = format!("output=\"{port}\"");
                metric_in(
                    text,
                    "component_sent_events_total",
                    &[of(up).as_str(), output.as_str()],
                )
            })
            .sum();
        if received != upstream_sent {
            problems.push(format!(
                "{id}: received {received}, its inputs sent {upstream_sent}"
            ));
        }
    }
    problems
}

/// A beacon of `app` with one event of each type (web_vital, resource,
/// action, http, page_view).
fn beacon(app: &str, session: &str) -> Value {
    let mut beacon = common::beacon(session, 5);
    beacon["app"]["name"] = json!(app);
    beacon
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_event_is_delivered_or_counted_on_every_path() {
    let es = EsDouble::start();
    let es_without = EsDouble::start();
    // Mapping errors: dead-lettered by `es`, lost (and counted) by `es_without`;
    // a 429 once for each resource: re-sent, then stored.
    for double in [&es, &es_without] {
        double.fail_items("rum.type", json!("http"), ItemFault::Mapping);
        double.fail_items(
            "rum.type",
            json!("resource"),
            ItemFault::Rejected { times: 1 },
        );
    }
    let mut p = Pipeline::start(&config(&es.url(), &es_without.url()));
    const PER_APP: usize = 20;
    let mut accepted = 0;
    for i in 0..PER_APP {
        for app in ["shop", "blog", "other"] {
            let response = client()
                .post(p.url("/rum"))
                .header("content-type", "application/json")
                .body(beacon(app, &format!("{app}-{i}")).to_string())
                .send()
                .await
                .expect("POST /rum");
            assert_eq!(response.status(), 204, "{app} {i}");
            accepted += 5;
        }
    }

    // Settled: nothing waits, and the sinks have dealt with what they got.
    let started = Instant::now();
    let text = loop {
        let text = p.metrics_text().await;
        if unaccounted(&text).is_empty() || started.elapsed() > Duration::from_secs(20) {
            break text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let problems = unaccounted(&text);
    assert!(problems.is_empty(), "{problems:#?}\n{text}");
    let beacons = of("beacons");
    assert_eq!(
        metric_in(&text, "component_received_events_total", &[&beacons]),
        accepted as f64
    );
    // Every path was taken: an unread output, a filter, a sample, dead
    // letters, documents lost without a dead-letter file, retries.
    let sites = of("sites");
    let discarded = |id: &str, intentional: &str| {
        let intentional = format!("intentional=\"{intentional}\"");
        metric_in(
            &text,
            "component_discarded_events_total",
            &[of(id).as_str(), intentional.as_str()],
        )
    };
    assert_eq!(
        discarded("sites", "true"),
        (PER_APP * 5) as f64,
        "_unmatched"
    );
    assert_eq!(discarded("no_actions", "true"), PER_APP as f64);
    assert!(discarded("half", "true") > 0.0, "{text}");
    assert!(discarded("es_without", "false") > 0.0, "{text}");
    assert!(
        metric_in(
            &text,
            "elasticsearch_dead_lettered_events_total",
            &[&of("es")]
        ) > 0.0,
        "{text}"
    );
    assert!(
        metric_in(&text, "elasticsearch_retried_events_total", &[&of("es")]) > 0.0,
        "{text}"
    );
    assert_eq!(
        metric_in(&text, "component_sent_events_total", &[&sites]),
        (PER_APP * 10) as f64
    );

    // And what the counters say was delivered, was.
    let sent = |id: &str| metric_in(&text, "component_sent_events_total", &[of(id).as_str()]);
    assert_eq!(es.stored_count() as f64, sent("es"));
    assert_eq!(es_without.stored_count() as f64, sent("es_without"));
    let dead = std::fs::read_to_string(p.dir.path().join("dead.ndjson")).expect("dead letters");
    assert_eq!(
        dead.lines().count() as f64,
        metric_in(
            &text,
            "elasticsearch_dead_lettered_events_total",
            &[&of("es")]
        )
    );
    let (status, p) =
        tokio::task::spawn_blocking(move || (p.terminate(Duration::from_secs(15)), p))
            .await
            .expect("terminate");
    assert!(status.success(), "{status:?}");
    assert_eq!(p.documents().len() as f64, sent("out"));
}
