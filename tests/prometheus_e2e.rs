//! End to end with a real Prometheus server (Debian's `prometheus`) on
//! loopback: it scrapes the real binary's `/metrics/rum` every second and
//! evaluates the rules `rum-pipeline rules` wrote for the same pipeline, with
//! windows scaled down 100× (`rules.window_scale`). The test drives beacons
//! with slow LCPs and JS errors, sees the budget alert and the page-severity
//! burn-rate alert go `firing`, switches to good traffic and sees both go
//! inactive; then it checks `histogram_quantile(0.75, ...)` and the budget
//! ratio Prometheus answers against what it computes from what it sent.
//! A second test runs pipelines/prod.toml and the committed
//! deployments/prometheus/rules.yml, and evaluates every query of
//! deployments/prometheus/grafana-dashboard.json as Grafana would, with one
//! service and one site selected: each panel must show data.
//!
//! Without the `prometheus` binary the test fails, unless
//! RUM_SKIP_PROMETHEUS=1 says to skip (scripts/test.sh installs it).

mod common;

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{client, one_shot, Pipeline};
use serde_json::{json, Value};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

const PIPELINE: &str = r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"

[sinks.rum]
type = "prometheus"
inputs = ["beacons"]
dimensions = ["service.name"]

# LCP p75 <= 2500 ms, two 5-minute periods (3 s each, scaled).
[sinks.rum.budgets]
LCP = 2500

[sinks.rum.slos.sessions_without_js_error]
sli = "sessions_without_js_error"
target = 0.999

[sinks.rum.rules]
window_scale = 0.01
"#;

/// The LCP bucket bounds the sink exports (seconds), up to the last one used.
const LCP_BOUNDS: &[f64] = &[0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0];

/// What `histogram_quantile` answers for these values: the bucket holding
/// the rank, linearly interpolated between its bounds.
fn expected_quantile(q: f64, values_ms: &[f64]) -> f64 {
    let total = values_ms.len() as f64;
    let rank = q * total;
    let mut lower = 0.0;
    let mut below = 0.0;
    for &upper in LCP_BOUNDS {
        let cumulative = values_ms.iter().filter(|v| **v / 1000.0 <= upper).count() as f64;
        if cumulative >= rank {
            return lower + (upper - lower) * (rank - below) / (cumulative - below);
        }
        lower = upper;
        below = cumulative;
    }
    panic!("rank beyond the bounds used here");
}

struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn prometheus_binary() -> Option<&'static str> {
    if Path::new("/usr/bin/prometheus").exists() {
        return Some("/usr/bin/prometheus");
    }
    if std::env::var("RUM_SKIP_PROMETHEUS").is_ok_and(|v| v == "1") {
        eprintln!("skipped: no /usr/bin/prometheus and RUM_SKIP_PROMETHEUS=1");
        return None;
    }
    panic!("/usr/bin/prometheus not found: install Debian's `prometheus` package (scripts/test.sh does), or set RUM_SKIP_PROMETHEUS=1 to skip");
}

async fn start_prometheus(binary: &str, target: &str, rules: &str) -> Prometheus {
    // Prometheus cannot be told to take a port of its own choosing and say
    // which: it gets one that was free a moment ago, which another process
    // may take before Prometheus binds it (it exits then). Then another.
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.yml"), rules).unwrap();
        std::fs::write(
            dir.path().join("prometheus.yml"),
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - rules.yml\nscrape_configs:\n  - job_name: rum\n    metrics_path: /metrics/rum\n    static_configs:\n      - targets: [\"{target}\"]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = Command::new(binary)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start prometheus");
        let mut prometheus = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let start = Instant::now();
        loop {
            let ready = client()
                .get(format!("{}/-/ready", prometheus.url))
                .send()
                .await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return prometheus;
            }
            if let Some(status) = prometheus.child.try_wait().expect("wait for prometheus") {
                eprintln!("prometheus exited ({status}) before it was ready: trying another port");
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "prometheus did not get ready"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    panic!("prometheus exited before it was ready five times (its stderr is above)");
}

impl Prometheus {
    async fn query(&self, promql: &str) -> Option<f64> {
        let value = self.vector(promql).await.first()?["value"][1]
            .as_str()?
            .to_owned();
        value.parse().ok()
    }

    /// The instant vector `promql` answers (its `result` array).
    async fn vector(&self, promql: &str) -> Vec<Value> {
        let body: Value = client()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", promql)])
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("query JSON");
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Firing alerts as `alertname/severity`.
    async fn firing(&self) -> Vec<String> {
        let body: Value = client()
            .get(format!("{}/api/v1/alerts", self.url))
            .send()
            .await
            .expect("alerts")
            .json()
            .await
            .expect("alerts JSON");
        let mut firing: Vec<String> = body["data"]["alerts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|a| a["state"] == "firing")
            .map(|a| {
                format!(
                    "{}/{}",
                    a["labels"]["alertname"].as_str().unwrap_or(""),
                    a["labels"]["severity"].as_str().unwrap_or("")
                )
            })
            .collect();
        firing.sort();
        firing.dedup();
        firing
    }
}

/// One page load of a new session: a page view, its LCP, and maybe a JS error.
fn page_load(session: usize, lcp_ms: f64, js_error: bool) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    let mut events = vec![
        json!({"type": "page_view", "ts": now - 100}),
        json!({"type": "web_vital", "ts": now - 50, "name": "LCP", "value": lcp_ms}),
    ];
    if js_error {
        events.push(json!({"type": "error", "ts": now - 10, "message": "boom", "name": "Error"}));
    }
    json!({
        "v": 1,
        "app": {"name": "shop"},
        "session": {"id": format!("e2e-{session}")},
        "view": {"id": format!("e2e-{session}-v"), "url": "https://shop.example.com/"},
        "sent_at": now,
        "events": events,
    })
}

const PAGE: &str = "RumSloErrorBudgetBurn/page";
const BUDGET: &str = "RumWebVitalOverBudget/ticket";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_on_slow_and_broken_pages_and_clear_on_good_traffic() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let pipeline = Pipeline::start(PIPELINE);
    let rules_out = one_shot(["rules", "--config"])
        .arg(pipeline.dir.path().join("pipeline.toml"))
        .run();
    assert!(rules_out.success(), "{}", rules_out.stderr);
    let rules = rules_out.stdout;
    assert!(rules.contains("[36s]"), "windows scaled by 0.01:\n{rules}");
    let prometheus = start_prometheus(binary, &pipeline.addr(), &rules).await;
    let http = client();
    let mut sent_lcp: Vec<f64> = Vec::new();
    let mut session = 0;

    // Slow and broken: p75 of LCP is 3 s, every session has a JS error.
    let bad = [1000.0, 2000.0, 3000.0, 3500.0];
    let start = Instant::now();
    loop {
        for lcp in bad {
            session += 1;
            let r = http
                .post(pipeline.url("/rum"))
                .json(&page_load(session, lcp, true))
                .send()
                .await
                .expect("POST");
            assert_eq!(r.status(), 204);
            sent_lcp.push(lcp);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let firing = prometheus.firing().await;
        if firing.contains(&PAGE.to_owned()) && firing.contains(&BUDGET.to_owned()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "alerts did not fire; firing: {firing:?}"
        );
    }
    eprintln!("budget and page alerts firing after {:?}", start.elapsed());

    // Good traffic again: fast LCPs, no errors. Both alerts must clear.
    let start = Instant::now();
    loop {
        for _ in 0..4 {
            session += 1;
            let r = http
                .post(pipeline.url("/rum"))
                .json(&page_load(session, 800.0, false))
                .send()
                .await
                .expect("POST");
            assert_eq!(r.status(), 204);
            sent_lcp.push(800.0);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let firing = prometheus.firing().await;
        if !firing.contains(&PAGE.to_owned()) && !firing.contains(&BUDGET.to_owned()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "alerts did not clear under good traffic; firing: {firing:?}"
        );
    }
    eprintln!(
        "alerts inactive {:?} after good traffic resumed",
        start.elapsed()
    );

    // Quiet, then what Prometheus holds equals what was sent.
    let sent = sent_lcp.len() as f64;
    let start = Instant::now();
    while prometheus
        .query("sum(rum_web_vital_lcp_seconds_count)")
        .await
        != Some(sent)
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "Prometheus never saw all {sent} LCPs"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let p75 = prometheus
        .query("histogram_quantile(0.75, sum by (le) (rum_web_vital_lcp_seconds_bucket))")
        .await
        .expect("p75");
    let expected = expected_quantile(0.75, &sent_lcp);
    assert!(
        (p75 - expected).abs() < 1e-9,
        "p75 {p75}, expected {expected}"
    );
    let within = prometheus
        .query("sum(rum_web_vital_lcp_seconds_bucket{le=\"2.5\"}) / sum(rum_web_vital_lcp_seconds_count)")
        .await
        .expect("budget ratio");
    let expected_within = sent_lcp.iter().filter(|v| **v <= 2500.0).count() as f64 / sent;
    assert!(
        (within - expected_within).abs() < 1e-12,
        "within budget {within}, expected {expected_within}"
    );
    let errored = prometheus
        .query("sum(rum_sessions_with_js_error_total)")
        .await;
    let sessions_bad = sent_lcp.iter().filter(|v| **v != 800.0).count() as f64;
    assert_eq!(errored, Some(sessions_bad));
    assert_eq!(
        prometheus.query("sum(rum_sessions_total)").await,
        Some(session as f64)
    );
}

/// A browser's user agent: the sink leaves out synthetic traffic.
const CHROME: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// A page load on `host` with every web vital (LCP slow, so the burn-rate
/// alert the dashboard annotates fires) and a JS error.
fn full_page_load(host: &str, session: usize) -> Value {
    let now = chrono::Utc::now().timestamp_millis();
    let vitals = [
        ("LCP", 4200.0),
        ("INP", 180.0),
        ("CLS", 0.05),
        ("FCP", 900.0),
        ("TTFB", 300.0),
    ];
    let mut events = vec![json!({"type": "page_view", "ts": now - 100})];
    for (name, value) in vitals {
        events.push(json!({"type": "web_vital", "ts": now - 50, "name": name, "value": value}));
    }
    events.push(json!({"type": "error", "ts": now - 10, "message": "boom", "name": "Error"}));
    json!({
        "v": 1,
        "app": {"name": host.split('.').next().unwrap()},
        "session": {"id": format!("dash-{host}-{session}")},
        "view": {"id": format!("dash-{session}-v"), "url": format!("https://{host}/product/{session}")},
        "sent_at": now,
        "events": events,
    })
}

/// A CSP violation of a page on `host`, as Chromium reports it.
fn csp_report(host: &str) -> Value {
    json!({"csp-report": {
        "document-uri": format!("https://{host}/checkout"),
        "effective-directive": "script-src-elem",
        "violated-directive": "script-src-elem",
        "blocked-uri": "inline",
        "original-policy": "script-src 'self'; report-uri /rum/report-uri",
        "disposition": "enforce",
        "status-code": 200
    }})
}

/// Every PromQL query of the Grafana dashboard: (where, query).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or("?");
        for target in panel["targets"].as_array().into_iter().flatten() {
            out.push((
                format!("panel `{title}`"),
                target["expr"].as_str().expect("expr").to_owned(),
            ));
        }
    }
    for annotation in dashboard["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            out.push((
                format!(
                    "annotation `{}`",
                    annotation["name"].as_str().unwrap_or("?")
                ),
                expr.to_owned(),
            ));
        }
    }
    out
}

/// `label_values(metric, label)` of a query variable as PromQL.
fn label_values_query(query: &str) -> (String, String) {
    let inner = query
        .strip_prefix("label_values(")
        .and_then(|q| q.strip_suffix(')'))
        .unwrap_or_else(|| panic!("unexpected variable query {query}"));
    let (metric, label) = inner.split_once(',').expect("metric, label");
    let label = label.trim().to_owned();
    (format!("group by ({label}) ({})", metric.trim()), label)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grafana_panel_shows_data_for_one_service_and_site() {
    let Some(binary) = prometheus_binary() else {
        return;
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let prod = std::fs::read_to_string(root.join("pipelines/prod.toml"))
        .expect("pipelines/prod.toml")
        .replace("0.0.0.0:", "127.0.0.1:");
    let port = free_port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let dead_letter = dir.path().join("dead-letter.ndjson");
    // Elasticsearch is absent (the sink retries); the metrics do not need it.
    let pipeline = Pipeline::start_with(
        &prod,
        common::Stdout::Collect,
        &[
            ("ELASTIC_CLUSTER", "http://127.0.0.1:9"),
            ("SERVER_PORT", &port),
            ("DEAD_LETTER_PATH", dead_letter.to_str().unwrap()),
        ],
    );
    let rules = std::fs::read_to_string(root.join("deployments/prometheus/rules.yml")).unwrap();
    let prometheus = start_prometheus(binary, &format!("127.0.0.1:{port}"), &rules).await;
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("deployments/prometheus/grafana-dashboard.json"))
            .unwrap(),
    )
    .expect("dashboard JSON");

    // What a user picks: one service and its site, and "All" (Grafana's
    // allValue); $__rate_interval as Grafana makes it for a 1 s scrape.
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("variables");
    let selections: [&[(&str, &str)]; 2] = [
        &[("$service", "shop"), ("$site", "shop")],
        &[("$service", ".*"), ("$site", ".*")],
    ];
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 14, "{queries:?}");

    let http = client();
    let mut session = 0;
    let start = Instant::now();
    loop {
        for host in ["shop.example.com", "blog.example.com"] {
            session += 1;
            let r = http
                .post(pipeline.url("/rum"))
                .header("user-agent", CHROME)
                .json(&full_page_load(host, session))
                .send()
                .await
                .expect("POST /rum");
            assert_eq!(r.status(), 204);
            let r = http
                .post(pipeline.url("/rum/report-uri"))
                .header("user-agent", CHROME)
                .header("content-type", "application/csp-report")
                .body(csp_report(host).to_string())
                .send()
                .await
                .expect("POST /rum/report-uri");
            assert_eq!(r.status(), 204);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;

        let mut empty = Vec::new();
        for variable in variables.iter().filter(|v| v["type"] == "query") {
            let query = variable["query"].as_str().expect("variable query");
            let (promql, label) = label_values_query(query);
            let values: Vec<String> = prometheus
                .vector(&promql)
                .await
                .iter()
                .filter_map(|s| s["metric"][&label].as_str().map(str::to_owned))
                .collect();
            if !values.iter().any(|v| v == "shop") {
                empty.push(format!(
                    "variable `{}`: {query} -> {values:?}",
                    variable["name"]
                ));
            }
        }
        for selection in selections {
            for (place, expr) in &queries {
                let mut promql = expr.replace("$__rate_interval", "10s");
                for (name, value) in selection {
                    promql = promql.replace(name, value);
                }
                if prometheus.vector(&promql).await.is_empty() {
                    empty.push(format!("{place} with {selection:?}: {promql}"));
                }
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "with traffic of every kind for both sites, these show nothing:\n{}",
            empty.join("\n")
        );
    }
}
