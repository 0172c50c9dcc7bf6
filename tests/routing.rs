//! Per-site pipelines through the real binary: a `route` fan-out where each
//! site's events reach exactly their branch (and `_unmatched` its own), a
//! `filter`'s drop counter, labels from the environment, and `validate`
//! refusing broken routing configs with messages that say what to fix.

mod common;

use std::time::{Duration, Instant};

use common::{client, metric_in, validate, Pipeline, Stdout};
use serde_json::{json, Value};

/// Three routes (the third overlaps the first two), a filter on one branch, a
/// labels transform per branch that writes the route it came through, one
/// stdout; the overlapping route is counted by a blackhole.
const PER_SITE: &str = r#"
stats_interval_secs = 0

[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
access_log = false

[transforms.by_site]
type = "route"
inputs = ["beacons"]
route.shop = { field = "url.domain", equals = "shop.example.com" }
route.blog = { field = "url.domain", matches = '^(www\.)?blog\.example\.com$' }
route.example = { field = "url.domain", matches = '\.example\.com$' }

[transforms.tag_shop]
type = "labels"
inputs = ["by_site.shop"]
labels = { route = "shop" }
from_string = "${LABELS:-}"

[transforms.blog_public]
type = "filter"
inputs = ["by_site.blog"]
condition = { not = { field = "url.path", prefix = "/admin" } }

[transforms.tag_blog]
type = "labels"
inputs = ["blog_public"]
labels = { route = "blog" }

[transforms.tag_unmatched]
type = "labels"
inputs = ["by_site._unmatched"]
labels = { route = "unmatched" }

[sinks.out]
type = "stdout"
inputs = ["tag_shop", "tag_blog", "tag_unmatched"]

[sinks.example_count]
type = "blackhole"
inputs = ["by_site.example"]
"#;

fn beacon(session: &str, url: Option<&str>, n: usize) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    let events: Vec<Value> = (0..n)
        .map(|i| json!({"type": "action", "ts": now, "kind": "click", "target": format!("#b{i}")}))
        .collect();
    let mut beacon = json!({
        "v": 1,
        "app": {"name": "sites", "version": "1", "env": "production"},
        "session": {"id": session},
        "sent_at": now,
        "events": events,
    });
    if let Some(url) = url {
        beacon["view"] = json!({"id": format!("{session}-v"), "url": url});
    }
    beacon
}

async fn post(p: &Pipeline, body: Value) {
    let response = client()
        .post(p.url("/rum"))
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("POST /rum");
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
}

/// Waits until every (series, labels, value) holds in /metrics, then returns
/// the text; panics with the text at the deadline.
async fn wait_metrics(p: &Pipeline, expected: &[(&str, &[&str], f64)]) -> String {
    let start = Instant::now();
    loop {
        let text = client()
            .get(p.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics body");
        let missing: Vec<String> = expected
            .iter()
            .filter(|(name, labels, value)| metric_in(&text, name, labels) != *value)
            .map(|(name, labels, value)| {
                format!(
                    "{name}{labels:?} = {} (expected {value})",
                    metric_in(&text, name, labels)
                )
            })
            .collect();
        if missing.is_empty() {
            return text;
        }
        if start.elapsed() > Duration::from_secs(15) {
            panic!("metrics never settled: {missing:#?}\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_site_reaches_exactly_its_branch() {
    let mut p = Pipeline::start_with(
        PER_SITE,
        Stdout::Collect,
        &[("LABELS", "env=production, versionApp=1.4.2")],
    );
    post(
        &p,
        beacon("shop-1", Some("https://shop.example.com/cart"), 3),
    )
    .await;
    post(
        &p,
        beacon("blog-1", Some("https://www.blog.example.com/post/1"), 2),
    )
    .await;
    post(
        &p,
        beacon(
            "blog-admin",
            Some("https://blog.example.com/admin/users"),
            4,
        ),
    )
    .await;
    post(&p, beacon("other-1", Some("https://other.org/"), 1)).await;
    post(&p, beacon("no-url", None, 1)).await;

    let sent = "component_sent_events_total";
    let by_site = "component_id=\"by_site\"";
    let text = wait_metrics(
        &p,
        &[
            (sent, &[by_site, "output=\"shop\""], 3.0),
            (sent, &[by_site, "output=\"blog\""], 6.0),
            (sent, &[by_site, "output=\"example\""], 9.0),
            (sent, &[by_site, "output=\"_unmatched\""], 2.0),
            (
                "component_discarded_events_total",
                &["component_id=\"blog_public\"", "intentional=\"true\""],
                4.0,
            ),
            (sent, &["component_id=\"blog_public\""], 2.0),
            (
                "component_received_events_total",
                &["component_id=\"example_count\""],
                9.0,
            ),
            (sent, &["component_id=\"out\""], 7.0),
        ],
    )
    .await;
    // Routing itself drops nothing.
    assert_eq!(
        metric_in(&text, "component_discarded_events_total", &[by_site]),
        0.0
    );
    assert_eq!(
        metric_in(&text, "component_received_events_total", &[by_site]),
        11.0
    );

    let (status, p) =
        tokio::task::spawn_blocking(move || (p.terminate(Duration::from_secs(15)), p))
            .await
            .expect("terminate");
    assert!(status.success(), "{status:?}");
    let docs = p.documents();
    assert_eq!(docs.len(), 7, "{docs:#?}");
    let mut seen: Vec<(String, String)> = docs
        .iter()
        .map(|d| {
            let route = d["labels"]["route"].as_str().unwrap_or("<none>").to_owned();
            (
                route,
                d["session"]["id"].as_str().unwrap_or("<none>").to_owned(),
            )
        })
        .collect();
    seen.sort();
    let expected: Vec<(String, String)> = [
        ("blog", "blog-1"),
        ("blog", "blog-1"),
        ("shop", "shop-1"),
        ("shop", "shop-1"),
        ("shop", "shop-1"),
        ("unmatched", "no-url"),
        ("unmatched", "other-1"),
    ]
    .iter()
    .map(|(r, s)| (r.to_string(), s.to_string()))
    .collect();
    assert_eq!(seen, expected);
    for doc in &docs {
        let labels = doc["labels"].as_object().expect("labels object");
        if doc["labels"]["route"] == "shop" {
            // The Canarytrace LABELS variable, through `${LABELS:-}`.
            assert_eq!(
                doc["labels"],
                json!({"route": "shop", "env": "production", "versionApp": "1.4.2"})
            );
        } else {
            assert_eq!(labels.len(), 1, "{doc}");
        }
    }
}

const ROUTE_ONLY: &str = r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"

[transforms.by_site]
type = "route"
inputs = ["beacons"]
route.shop = { field = "url.domain", equals = "shop.example.com" }
route.blog = { field = "url.domain", equals = "blog.example.com" }

[sinks.out]
type = "stdout"
inputs = ["by_site.shop", "by_site.blog", "by_site._unmatched"]
"#;

/// The site decided by where a beacon is sent and who sends it, not by
/// what it says: one intake path per site, each allowing only its site's
/// origin, each feeding its site's branch (docs/per-site.md, "What decides
/// an event's site"). Browsers write `Origin` themselves, so a page of the
/// shop cannot post into the blog's branch; what a beacon claims (its
/// `app.name`, its page URL) stays as sent, but no longer chooses the site.
const SITE_PATHS: &str = r#"
stats_interval_secs = 0

[sources.shop_in]
type = "rum_beacon"
address = "127.0.0.1:0"
path = "/rum/shop"
allowed_origins = ["https://shop.example.com"]
access_log = false

[sources.blog_in]
type = "rum_beacon"
address = "127.0.0.1:0"
path = "/rum/blog"
allowed_origins = ["https://blog.example.com"]
access_log = false

[transforms.shop_site]
type = "labels"
inputs = ["shop_in"]
labels = { site = "shop" }

[transforms.blog_site]
type = "labels"
inputs = ["blog_in"]
labels = { site = "blog" }

[sinks.out]
type = "stdout"
inputs = ["shop_site", "blog_site"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_per_intake_path_keeps_other_sites_pages_out_of_its_branch() {
    let mut p = Pipeline::start(SITE_PATHS);
    let send = |path: &'static str, origin: &'static str, session: &'static str| {
        let mut body = beacon(session, Some("https://blog.example.com/post/1"), 1);
        body["app"]["name"] = json!("blog");
        client()
            .post(p.url(path))
            .header("origin", origin)
            .header("content-type", "text/plain")
            .body(body.to_string())
            .send()
    };
    // A page of the shop claiming to be the blog: into the shop's branch.
    let r = send("/rum/shop", "https://shop.example.com", "from-shop").await;
    assert_eq!(r.unwrap().status(), 204);
    // The same page posting to the blog's path: refused, counted.
    let r = send("/rum/blog", "https://shop.example.com", "shop-as-blog").await;
    assert_eq!(r.unwrap().status(), 403);
    let preflight = p.preflight("/rum/blog", "https://shop.example.com", None);
    assert_eq!(preflight.await.status(), 403);
    // The blog's own page.
    let r = send("/rum/blog", "https://blog.example.com", "from-blog").await;
    assert_eq!(r.unwrap().status(), 204);
    wait_metrics(
        &p,
        &[
            (
                "component_errors_total",
                &[
                    "component_id=\"blog_in\"",
                    "error_type=\"origin_not_allowed\"",
                ],
                2.0,
            ),
            (
                "component_sent_events_total",
                &["component_id=\"out\""],
                2.0,
            ),
        ],
    )
    .await;

    let (status, p) =
        tokio::task::spawn_blocking(move || (p.terminate(Duration::from_secs(15)), p))
            .await
            .expect("terminate");
    assert!(status.success(), "{status:?}");
    let mut seen: Vec<(String, String, String)> = p
        .documents()
        .iter()
        .map(|d| {
            let text = |v: &Value| v.as_str().unwrap_or("<none>").to_owned();
            (
                text(&d["session"]["id"]),
                text(&d["labels"]["site"]),
                text(&d["service"]["name"]),
            )
        })
        .collect();
    seen.sort();
    let row = |a: &str, b: &str, c: &str| (a.to_owned(), b.to_owned(), c.to_owned());
    assert_eq!(
        seen,
        [
            row("from-blog", "blog", "blog"),
            // What the beacon said is kept as sent: `service.name` is no
            // site boundary, `labels.site` is.
            row("from-shop", "shop", "blog"),
        ]
    );
}

fn refused(config: &str) -> String {
    let (code, text) = validate(config, &[]);
    assert_eq!(code, 78, "validate accepted it:\n{text}");
    text
}

#[test]
fn validate_accepts_a_routed_pipeline_and_the_example() {
    let (code, text) = validate(ROUTE_ONLY, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.contains("valid (1 sources, 1 transforms, 1 sinks)"),
        "{text}"
    );
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/pipelines/examples/per-site.toml"
    ))
    .expect("pipelines/examples/per-site.toml");
    let (code, text) = validate(&example, &[]);
    assert_eq!(code, 0, "{text}");
    assert!(
        !text.contains("WARN"),
        "the example should not warn:\n{text}"
    );
}

#[test]
fn validate_refuses_an_unknown_route_name_listing_the_routes() {
    let text = refused(&ROUTE_ONLY.replace("\"by_site.blog\"", "\"by_site.blgo\""));
    assert!(
        text.contains("[sinks.out] key `inputs`: input `by_site.blgo`: `by_site` has no such output (it offers: by_site.blog, by_site.shop, by_site._unmatched)"),
        "{text}"
    );
}

#[test]
fn validate_refuses_subscribing_to_a_route_without_naming_one() {
    let text = refused(&ROUTE_ONLY.replace("\"by_site.blog\"", "\"by_site\""));
    assert!(
        text.contains("input `by_site`: `by_site` has no default output; name one of its outputs: by_site.blog, by_site.shop, by_site._unmatched"),
        "{text}"
    );
}

#[test]
fn validate_refuses_a_bad_regex() {
    let text = refused(&ROUTE_ONLY.replace("equals = \"blog.example.com\"", "matches = '(blog'"));
    assert!(
        text.contains("[transforms.by_site] key `route.blog.matches`: invalid regex `(blog`"),
        "{text}"
    );
}

#[test]
fn validate_refuses_an_unknown_operator() {
    let text =
        refused(&ROUTE_ONLY.replace("equals = \"blog.example.com\"", "starts_with = \"blog\""));
    assert!(
        text.contains(
            "[transforms.by_site] key `route.blog.starts_with`: unknown field `starts_with`"
        ),
        "{text}"
    );
    assert!(
        text.contains("equals, not_equals, in, prefix, matches, exists"),
        "{text}"
    );
}

#[test]
fn validate_refuses_an_unknown_field_and_a_mistyped_literal() {
    let text = refused(&ROUTE_ONLY.replace(
        "field = \"url.domain\", equals = \"blog",
        "field = \"url.domian\", equals = \"blog",
    ));
    assert!(
        text.contains("`url.domian` is not a known field path (did you mean `url.domain`?)"),
        "{text}"
    );
    let text = refused(&ROUTE_ONLY.replace(
        "field = \"url.domain\", equals = \"blog.example.com\"",
        "field = \"url.port\", equals = \"443\"",
    ));
    assert!(
        text.contains("`url.port` holds numbers, so `equals` with a string never matches it"),
        "{text}"
    );
}

#[test]
fn validate_refuses_a_broken_label_string_from_the_environment() {
    let config = r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[transforms.tag]
type = "labels"
inputs = ["beacons"]
from_string = "${LABELS:-}"
[sinks.out]
type = "stdout"
inputs = ["tag"]
"#;
    let (code, text) = validate(config, &[("LABELS", "env=production, versionApp")]);
    assert_eq!(code, 78, "{text}");
    assert!(
        text.contains("[transforms.tag] key `from_string`: `versionApp` is not `name=value`"),
        "{text}"
    );
    let (code, text) = validate(config, &[("LABELS", "env=production")]);
    assert_eq!(code, 0, "{text}");
}
