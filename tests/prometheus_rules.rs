//! deployments/prometheus/ against the code: rules.yml is exactly what
//! `rum-pipeline rules` writes for pipelines/prod.toml, `promtool check rules`
//! accepts every rule file the command can write, the unit tests of
//! rules_test.yml pass (`promtool test rules`: each alert fires just above its
//! threshold and stays quiet just below), the Grafana dashboard queries
//! only metrics the sink exports or the rules record, and `promtool check
//! metrics` accepts what `/metrics` and the sink's `/metrics/rum` answer.
//!
//! promtool comes with Debian's `prometheus` package (scripts/test.sh installs
//! it). Without it these tests fail, unless RUM_SKIP_PROMTOOL=1 says to skip.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{beacon, client, one_shot, Pipeline};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What the committed files were generated with (README says so).
const PROD_ENV: &[(&str, &str)] = &[("ELASTIC_CLUSTER", "http://127.0.0.1:9200")];

fn rules(config: &Path, env: &[(&str, &str)]) -> String {
    let output = one_shot(["rules", "--config"])
        .arg(config)
        .env_clear()
        .envs(env.iter().copied())
        .run();
    assert!(output.success(), "rules failed: {}", output.stderr);
    output.stdout
}

fn promtool() -> Option<&'static str> {
    let found = Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if found {
        return Some("promtool");
    }
    if std::env::var("RUM_SKIP_PROMTOOL").is_ok_and(|v| v == "1") {
        eprintln!("skipped: promtool not found and RUM_SKIP_PROMTOOL=1");
        return None;
    }
    panic!("promtool not found: install Debian's `prometheus` package (scripts/test.sh does), or set RUM_SKIP_PROMTOOL=1 to skip");
}

fn run_promtool(args: &[&str], dir: &Path) {
    let Some(promtool) = promtool() else { return };
    let output = Command::new(promtool)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run promtool");
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn committed_rules_are_what_rules_writes_for_prod() {
    let generated = rules(&root().join("pipelines/prod.toml"), PROD_ENV);
    let committed = std::fs::read_to_string(root().join("deployments/prometheus/rules.yml"))
        .expect("deployments/prometheus/rules.yml");
    assert!(
        generated == committed,
        "deployments/prometheus/rules.yml is out of date; regenerate it (README, \"Budgets, SLOs and alerts\"):\n  ELASTIC_CLUSTER=http://127.0.0.1:9200 rum-pipeline rules --config pipelines/prod.toml --out deployments/prometheus/rules.yml"
    );
}

#[test]
fn promtool_unit_tests_of_the_prod_rules_pass() {
    run_promtool(
        &["test", "rules", "rules_test.yml"],
        &root().join("deployments/prometheus"),
    );
}

/// Other shapes the generator can take: no `service.name` dimension (the
/// `service` label comes from `rules.service`), budgets per two labels, a
/// budget-only file, scaled windows, nothing at all.
const VARIANTS: &[&str] = &[
    r#"
dimensions = ["labels.site", "user_agent.category"]
rules = { service = "www", window_scale = 0.01, runbook_url = "https://runbooks.example.com/rum" }
[budgets]
LCP = { threshold = 3000, statistic = "p90", evaluation_periods = 1, by = ["labels.site", "user_agent.category"] }
FCP = 1800
TTFB = { threshold = 800, period_secs = 60, evaluation_periods = 5, severity = "page" }
[slos.inp]
vital = "INP"
threshold = 200
target = 0.9
window_days = 7
by = ["labels.site"]
[slos.clean]
sli = "sessions_without_js_error"
target = 0.99
by = []
"#,
    "[budgets]\nCLS = 0.1\n",
    "",
];

#[test]
fn promtool_accepts_every_shape_of_rule_file() {
    let dir = tempfile::tempdir().unwrap();
    for (i, variant) in VARIANTS.iter().enumerate() {
        let sink = format!("\n{variant}").replace("\n[", "\n[sinks.rum.");
        let config = format!(
            "[sources.beacons]\ntype = \"rum_beacon\"\n\n[sinks.rum]\ntype = \"prometheus\"\ninputs = [\"beacons\"]\n{sink}"
        );
        let path = dir.path().join(format!("p{i}.toml"));
        std::fs::write(&path, config).unwrap();
        let text = rules(&path, &[]);
        let file = format!("rules{i}.yml");
        std::fs::write(dir.path().join(&file), &text).unwrap();
        run_promtool(&["check", "rules", &file], dir.path());
        if i == 0 {
            assert!(text.contains("[36s]"), "1h scaled by 0.01:\n{text}");
            assert!(text.contains("service: \"www\""), "{text}");
            assert!(text.contains("le=\"3.0\""), "{text}");
            assert!(text.contains("< 0.9"), "p90 budget:\n{text}");
        }
    }
    run_promtool(
        &["check", "rules", "rules.yml"],
        &root().join("deployments/prometheus"),
    );
}

/// Metric names a PromQL expression uses (`rum_...`, `slo:...`, `rum:...`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let rest = &expr[i..];
        let starts =
            (rest.starts_with("rum_") || rest.starts_with("slo:") || rest.starts_with("rum:"))
                && (i == 0
                    || !(bytes[i - 1].is_ascii_alphanumeric()
                        || bytes[i - 1] == b'_'
                        || bytes[i - 1] == b':'));
        if starts {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            names.push(rest[..len].to_owned());
            i += len;
        } else {
            i += 1;
        }
    }
    names
}

#[test]
fn dashboard_queries_only_exported_or_recorded_metrics() {
    let text =
        std::fs::read_to_string(root().join("deployments/prometheus/grafana-dashboard.json"))
            .expect("dashboard");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    let rules = std::fs::read_to_string(root().join("deployments/prometheus/rules.yml")).unwrap();
    let mut known: Vec<String> = Vec::new();
    for name in rum_pipeline::sinks::prometheus::metric_names() {
        known.push(name.to_owned());
        for suffix in ["_bucket", "_count", "_sum"] {
            known.push(format!("{name}{suffix}"));
        }
    }
    known.extend(
        rules
            .lines()
            .filter_map(|l| l.trim().strip_prefix("- record: "))
            .map(str::to_owned),
    );
    let mut exprs = Vec::new();
    fn walk(value: &serde_json::Value, out: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, v) in map {
                    match (key.as_str(), v) {
                        ("expr" | "query", serde_json::Value::String(s)) => out.push(s.clone()),
                        (_, v) => walk(v, out),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&dashboard, &mut exprs);
    assert!(exprs.len() >= 8, "{exprs:?}");
    for expr in &exprs {
        for name in metric_names(expr) {
            assert!(
                known.contains(&name),
                "dashboard uses `{name}` in `{expr}`, which nothing exports or records"
            );
        }
    }
}

#[test]
fn two_prometheus_sinks_make_one_rule_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("two.toml");
    std::fs::write(
        &path,
        "[sources.beacons]\ntype = \"rum_beacon\"\n\n[sinks.a]\ntype = \"prometheus\"\ninputs = [\"beacons\"]\nbudgets = { LCP = 2500 }\n\n[sinks.b]\ntype = \"prometheus\"\ninputs = [\"beacons\"]\npath = \"/metrics/rum-b\"\nbudgets = { INP = 200 }\n[sinks.b.slos.fast]\nvital = \"INP\"\nthreshold = 200\ntarget = 0.9\n",
    )
    .unwrap();
    let text = rules(&path, &[]);
    assert_eq!(text.matches("\ngroups:\n").count(), 1, "{text}");
    for group in [
        "rum-pipeline:a:budgets",
        "rum-pipeline:b:budgets",
        "rum-pipeline:b:slo:fast",
    ] {
        assert!(
            text.contains(&format!("- name: \"{group}\"")),
            "{group} missing:\n{text}"
        );
    }
    std::fs::write(dir.path().join("rules.yml"), &text).unwrap();
    run_promtool(&["check", "rules", "rules.yml"], dir.path());
}

#[test]
fn rules_without_a_prometheus_sink_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("none.toml");
    std::fs::write(&path, "[sources.beacons]\ntype = \"rum_beacon\"\n\n[sinks.out]\ntype = \"blackhole\"\ninputs = [\"beacons\"]\n").unwrap();
    let output = one_shot(["rules", "--config"]).arg(&path).run();
    assert_eq!(output.code, Some(78));
    assert!(output.stderr.contains("no prometheus sink"));
}

/// Lint problems `promtool check metrics` finds in an exposition, or None
/// when promtool is missing and RUM_SKIP_PROMTOOL=1.
fn promtool_check_metrics(text: &str) -> Option<String> {
    use std::io::Write as _;
    let promtool = promtool()?;
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool output");
    if output.status.success() {
        return Some(String::new());
    }
    Some(format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    ))
}

#[tokio::test]
async fn promtool_check_metrics_accepts_both_expositions() {
    let p = Pipeline::start(
        "stats_interval_secs = 0\n[sources.beacons]\ntype = \"rum_beacon\"\naddress = \"127.0.0.1:0\"\n\n[sinks.rum]\ntype = \"prometheus\"\ninputs = [\"beacons\"]\n\n[sinks.rum.budgets]\nLCP = 2500\n",
    );
    let sent = client()
        .post(p.url("/rum"))
        .json(&beacon("s1", 10))
        .send()
        .await
        .expect("POST /rum");
    assert_eq!(sent.status(), 204);
    for path in ["/metrics", "/metrics/rum"] {
        let response = client().get(p.url(path)).send().await.expect("scrape");
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; version=0.0.4",
            "{path}"
        );
        let text = response.text().await.expect("body");
        let Some(problems) = promtool_check_metrics(&text) else {
            return;
        };
        assert!(problems.is_empty(), "{path}: {problems}\n{text}");
    }
}
