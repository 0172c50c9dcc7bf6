//! The `prometheus` sink through the real binary: beacons in over HTTP, a
//! scrape of `/metrics/rum` out. Exact exposition lines, the series cap
//! with its `__other__` series and error counter, and flat memory while
//! thousands of distinct page templates arrive.

mod common;

use std::time::{Duration, Instant};

use common::{client, metric_in, Pipeline};
use serde_json::{json, Value};

const PIPELINE: &str = r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
# The access log's queue of lines would add megabytes of noise to the RSS
# samples below.
access_log = false

[transforms.scrub]
type = "scrub_url"
inputs = ["beacons"]
routes = ["/product/{slug}"]

[sinks.rum]
type = "prometheus"
inputs = ["scrub"]
dimensions = ["service.name", "url.path_template"]
max_series = MAX_SERIES

[sinks.rum.budgets]
LCP = 2500
"#;

fn pipeline(max_series: usize) -> Pipeline {
    Pipeline::start(&PIPELINE.replace("MAX_SERIES", &max_series.to_string()))
}

async fn post(p: &Pipeline, beacon: &Value) {
    let status = client()
        .post(p.url("/rum"))
        .json(beacon)
        .send()
        .await
        .expect("POST /rum")
        .status();
    assert_eq!(status, 204, "beacon refused");
}

async fn scrape(p: &Pipeline) -> String {
    let response = client()
        .get(p.url("/metrics/rum"))
        .send()
        .await
        .expect("GET /metrics/rum");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/plain; version=0.0.4"
    );
    response.text().await.expect("body")
}

/// Scrapes until `metric` sums to at least `expected`.
async fn wait_rum_metric(p: &Pipeline, metric: &str, expected: f64) -> String {
    let start = Instant::now();
    loop {
        let text = scrape(p).await;
        if metric_in(&text, metric, &[]) >= expected || start.elapsed() > Duration::from_secs(20) {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn lines_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

fn view(session: &str, url: &str, events: Vec<Value>) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<Value> = events
        .into_iter()
        .map(|mut e| {
            e["ts"] = json!(now - 10);
            e
        })
        .collect();
    json!({
        "v": 1,
        "app": {"name": "shop"},
        "session": {"id": session},
        "view": {"id": format!("{session}-{url}"), "url": url},
        "sent_at": now,
        "events": events,
    })
}

#[tokio::test]
async fn a_scrape_shows_what_the_beacons_carried() {
    let p = pipeline(100);
    let product = "https://shop.example.com/product/red-shoes";
    post(&p, &view("s1", product, vec![
        json!({"type": "page_view"}),
        json!({"type": "web_vital", "name": "LCP", "value": 1200}),
        json!({"type": "web_vital", "name": "LCP", "value": 3100}),
        json!({"type": "web_vital", "name": "CLS", "value": 0.3}),
        json!({"type": "error", "message": "x is undefined", "name": "TypeError", "count": 2}),
        json!({"type": "error", "message": "y is undefined", "name": "TypeError"}),
    ])).await;
    post(
        &p,
        &view(
            "s2",
            "https://shop.example.com/cart",
            vec![
                json!({"type": "page_view"}),
                json!({"type": "web_vital", "name": "LCP", "value": 2500}),
            ],
        ),
    )
    .await;
    post(
        &p,
        &view(
            "s1",
            "https://shop.example.com/cart",
            vec![json!({"type": "page_view"})],
        ),
    )
    .await;
    let text = wait_rum_metric(&p, "rum_page_views_total", 3.0).await;

    assert_eq!(
        lines_of(&text, "rum_page_views_total{"),
        [
            r#"rum_page_views_total{service_name="shop",url_path_template="/cart"} 2"#,
            r#"rum_page_views_total{service_name="shop",url_path_template="/product/:slug"} 1"#,
        ]
    );
    // Sessions count once each, by their first event's page.
    assert_eq!(
        lines_of(&text, "rum_sessions_total{"),
        [
            r#"rum_sessions_total{service_name="shop",url_path_template="/cart"} 1"#,
            r#"rum_sessions_total{service_name="shop",url_path_template="/product/:slug"} 1"#,
        ]
    );
    assert_eq!(
        lines_of(&text, "rum_sessions_with_js_error_total{"),
        [
            r#"rum_sessions_with_js_error_total{service_name="shop",url_path_template="/product/:slug"} 1"#
        ]
    );
    assert_eq!(
        lines_of(&text, "rum_js_errors_total{"),
        [r#"rum_js_errors_total{service_name="shop",url_path_template="/product/:slug"} 3"#]
    );
    let lcp = r#"{service_name="shop",url_path_template="/product/:slug""#;
    for (le, count) in [
        ("1.0", 0),
        ("1.5", 1),
        ("2.5", 1),
        ("3.0", 1),
        ("4.0", 2),
        ("+Inf", 2),
    ] {
        let line = format!("rum_web_vital_lcp_seconds_bucket{lcp},le=\"{le}\"}} {count}");
        assert!(text.lines().any(|l| l == line), "missing {line} in\n{text}");
    }
    assert!(text.contains(&format!("\nrum_web_vital_lcp_seconds_sum{lcp}}} 4.3\n")));
    assert!(text.contains(&format!("\nrum_web_vital_lcp_seconds_count{lcp}}} 2\n")));
    // LCP = 2500 exactly is within the budget: `le` is inclusive.
    assert!(text.contains(
        "\nrum_web_vital_lcp_seconds_bucket{service_name=\"shop\",url_path_template=\"/cart\",le=\"2.5\"} 1\n"
    ));
    assert!(text.contains(
        "\nrum_web_vital_cls_bucket{service_name=\"shop\",url_path_template=\"/product/:slug\",le=\"0.25\"} 0\n"
    ));
    assert!(!text.contains("quantile"));
    // The pipeline's own metrics stay at /metrics, and count the sink.
    let own = p
        .metric("component_sent_events_total", &["component_id=\"rum\""])
        .await;
    assert_eq!(own, 9.0);
}

/// `url.path` segments of letters only, so the path template keeps them.
fn word(mut i: usize) -> String {
    let mut out = String::new();
    loop {
        out.push((b'a' + (i % 26) as u8) as char);
        i /= 26;
        if i == 0 {
            return out;
        }
    }
}

#[tokio::test]
async fn distinct_page_templates_beyond_max_series_fold_into_other() {
    const MAX: usize = 50;
    const WARM: usize = 2000;
    const EARLY: usize = 4000;
    const PAGES: usize = 12000;
    // Templates near the longest label value kept (256 bytes; longer ones
    // are `__other__` at once): a slug of short words, so the template
    // keeps it (one long token would become `:id`). Long URLs make a leak
    // of what else a page leaves behind unmistakable: 8,000 × 12 KB = 96 MB,
    // far above what RSS drifts by between two samples (it moves in 2 MB
    // huge pages; up to 8 MB seen with no leak at all).
    let slug = "page-".repeat(45);
    let padding = "page-".repeat(2400);
    let p = pipeline(MAX);
    let send = |range: std::ops::Range<usize>| {
        let p = &p;
        let (slug, padding) = (&slug, &padding);
        async move {
            let http = client();
            for chunk in range.collect::<Vec<_>>().chunks(16) {
                let requests = chunk.iter().map(|i| {
                    let beacon = view(
                        &format!("s{i}"),
                        &format!(
                            "https://shop.example.com/{}-{slug}?from={padding}",
                            word(*i)
                        ),
                        vec![json!({"type": "page_view"})],
                    );
                    let http = &http;
                    async move {
                        // 16 events of ~40 KB each can fill the 256 KiB
                        // transform buffer of a slow (debug) build: a 503
                        // is then retried, as the client does.
                        for _ in 0..500 {
                            let response = http.post(p.url("/rum")).json(&beacon).send().await;
                            match response.expect("POST").status().as_u16() {
                                204 => return,
                                503 => tokio::time::sleep(Duration::from_millis(10)).await,
                                other => panic!("status {other}"),
                            }
                        }
                        panic!("still 503 after 5 s");
                    }
                });
                futures::future::join_all(requests).await;
            }
        }
    };
    // Warm up (connections, allocator), then measure two rounds of new
    // page templates: the second must not cost memory the first did not.
    send(0..WARM).await;
    wait_rum_metric(&p, "rum_page_views_total", WARM as f64).await;
    send(WARM..EARLY).await;
    wait_rum_metric(&p, "rum_page_views_total", EARLY as f64).await;
    let rss_early = p.rss_kib();
    send(EARLY..PAGES).await;
    let text = wait_rum_metric(&p, "rum_page_views_total", PAGES as f64).await;
    let rss_late = p.rss_kib();
    eprintln!("RSS {rss_early} KiB after {EARLY} pages, {rss_late} KiB after {PAGES}");

    let series = lines_of(&text, "rum_page_views_total{");
    assert_eq!(series.len(), MAX + 1, "{series:#?}");
    assert_eq!(metric_in(&text, "rum_page_views_total", &[]), PAGES as f64);
    let other = r#"rum_page_views_total{service_name="shop",url_path_template="__other__"}"#;
    assert!(
        series.contains(&format!("{other} {}", PAGES - MAX).as_str()),
        "{series:#?}"
    );
    // Each folded page view folds its new session too.
    let folded = p
        .metric(
            "component_errors_total",
            &["component_id=\"rum\"", "error_type=\"cardinality_limit\""],
        )
        .await;
    assert_eq!(folded, 2.0 * (PAGES - MAX) as f64);
    // 8,000 more distinct pages cost no series and no memory that grows
    // with them: far under the 96 MB their URLs would take if kept.
    assert!(
        rss_late < rss_early + 32 * 1024,
        "RSS grew from {rss_early} KiB to {rss_late} KiB"
    );
}

#[tokio::test]
async fn its_own_address_serves_it_apart_from_the_sources() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let p = Pipeline::start(&format!(
        "[sources.beacons]\ntype = \"rum_beacon\"\naddress = \"127.0.0.1:0\"\n\n[sinks.rum]\ntype = \"prometheus\"\ninputs = [\"beacons\"]\naddress = \"127.0.0.1:{port}\"\npath = \"/rum-metrics\"\n"
    ));
    post(
        &p,
        &view(
            "s1",
            "https://shop.example.com/",
            vec![json!({"type": "page_view"})],
        ),
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/rum-metrics");
    let start = Instant::now();
    loop {
        let text = client()
            .get(&url)
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .unwrap();
        if text.contains("rum_page_views_total{service_name=\"shop\"} 1") {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{text}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let on_sources = client()
        .get(p.url("/rum-metrics"))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(on_sources, 404);
}

#[test]
fn validate_rejects_a_budget_on_a_dimension_not_exported() {
    let config = "[sources.beacons]\ntype = \"rum_beacon\"\n\n[sinks.rum]\ntype = \"prometheus\"\ninputs = [\"beacons\"]\n[sinks.rum.budgets]\nLCP = { threshold = 2500, by = [\"labels.site\"] }\n[sinks.rum.slos.fast]\nvital = \"LCP\"\nthreshold = 2500\ntarget = 95\n";
    let (code, out) = common::validate(config, &[]);
    assert_eq!(code, 78, "{out}");
    assert!(
        out.contains(
            "[sinks.rum] key `budgets.LCP.by`: `labels.site` is not an exported dimension"
        ),
        "{out}"
    );
    assert!(
        out.contains(":12: [sinks.rum] key `slos.fast.target`: 95 is outside (0, 1)"),
        "{out}"
    );
}
