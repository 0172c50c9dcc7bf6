//! The sink as a whole: config checks, `observe` on real events, and what a
//! scrape of the built sink answers.

use super::*;
use serde_json::json;

fn config(toml: &str) -> PrometheusConfig {
    let table: toml::Table = toml::from_str(toml).expect("toml");
    crate::config::decode(table).unwrap_or_else(|(k, m)| panic!("{k}: {m}"))
}

/// `sink` is written relative to the sink: `[budgets]` means `[sinks.m.budgets]`.
fn load_errors(sink: &str) -> Vec<String> {
    let sink = sink.replace("\n[", "\n[sinks.m.");
    let sink = sink
        .strip_prefix('[')
        .map_or(sink.clone(), |rest| format!("[sinks.m.{rest}"));
    let text = format!(
        "[sources.beacons]\ntype = \"rum_beacon\"\naddress = \"127.0.0.1:3999\"\n\n[sinks.m]\ntype = \"prometheus\"\ninputs = [\"beacons\"]\n{sink}"
    );
    match crate::config::load_str("test.toml", &text, &|_| None) {
        Ok(_) => Vec::new(),
        Err(errors) => errors.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn defaults_export_service_name_at_metrics_rum() {
    let c = config("");
    assert_eq!(c.path, "/metrics/rum");
    let resolved = c.resolve().unwrap();
    assert_eq!(
        resolved.dimensions,
        [Dimension {
            path: "service.name".into(),
            label: "service_name".into()
        }]
    );
    assert!(resolved.budgets.is_empty() && resolved.slos.is_empty());
}

#[test]
fn budgets_take_a_number_or_a_table() {
    let c = config(
        "dimensions = [\"service.name\", \"labels.site\"]\n[budgets]\nLCP = 2500\nCLS = 0.1\nINP = { threshold = 200, statistic = \"p90\", evaluation_periods = 3, period_secs = 60, by = [\"labels.site\"] }",
    );
    let r = c.resolve().unwrap();
    let inp = r.budgets.iter().find(|b| b.vital == Vital::Inp).unwrap();
    assert_eq!(
        (inp.quantile, inp.evaluation_periods, inp.period_secs),
        (0.9, 3, 60)
    );
    assert_eq!(inp.by, ["labels_site"]);
    let lcp = r.budgets.iter().find(|b| b.vital == Vital::Lcp).unwrap();
    assert_eq!(
        (lcp.threshold, lcp.quantile, lcp.evaluation_periods),
        (2500.0, 0.75, 2)
    );
    assert_eq!(lcp.by, ["service_name"]);
}

#[test]
fn a_budget_or_slo_threshold_becomes_a_bucket_bound() {
    let c = config(
        "[budgets]\nLCP = 2700\n[slos.fast]\nvital = \"INP\"\nthreshold = 150\ntarget = 0.9",
    );
    let r = c.resolve().unwrap();
    let bounds = |v: Vital| r.buckets.iter().find(|(x, _)| *x == v).unwrap().1.clone();
    assert!(bounds(Vital::Lcp).contains(&2.7));
    assert!(bounds(Vital::Inp).contains(&0.15));
}

#[test]
fn validate_names_component_and_key() {
    let cases: &[(&str, &str)] = &[
        ("[budgets]\nFID = 100", "[sinks.m] key `budgets.FID`: unknown web vital `FID` (known: LCP, INP, CLS, FCP, TTFB)"),
        ("[slos.x]\nvital = \"LCP\"\nthreshold = 2500\ntarget = 95", "[sinks.m] key `slos.x.target`: 95 is outside (0, 1)"),
        ("[slos.x]\nvital = \"LCP\"\nthreshold = 2500\ntarget = 1.0", "[sinks.m] key `slos.x.target`: 1 is outside (0, 1)"),
        ("[slos.x]\nvital = \"LPC\"\nthreshold = 2500\ntarget = 0.9", "[sinks.m] key `slos.x.vital`: unknown web vital `LPC`"),
        ("[slos.x]\ntarget = 0.9", "[sinks.m] key `slos.x.vital`: missing"),
        ("[budgets]\nLCP = { threshold = 2500, by = [\"labels.site\"] }", "[sinks.m] key `budgets.LCP.by`: `labels.site` is not an exported dimension"),
        ("[slos.x]\nsli = \"sessions_without_js_error\"\ntarget = 0.999\nby = [\"url.path_template\"]", "[sinks.m] key `slos.x.by`: `url.path_template` is not an exported dimension"),
        ("dimensions = [\"url.pth_template\"]", "[sinks.m] key `dimensions`: unknown dimension `url.pth_template`"),
        ("dimensions = [\"session.id\"]", "[sinks.m] key `dimensions`: `session.id` cannot be a dimension"),
        ("dimensions = [\"trace.id\"]", "[sinks.m] key `dimensions`: `trace.id` cannot be a dimension: one value per trace"),
        ("[budgets]\nLCP = { threshold = 2500, statistic = \"median\" }", "[sinks.m] key `budgets.LCP.statistic`: `median` is not a percentile"),
        ("path = \"/metrics\"", "[sinks.m] key `path`: `/metrics` is reserved"),
        ("[rules]\nwindow_scale = 0", "[sinks.m] key `rules.window_scale`: must be in (0, 1]"),
        ("[budgets]\nLCP = { threshold = 2500, treshold = 1 }", "[sinks.m] key `budgets.LCP.treshold`: unknown field `treshold`"),
    ];
    assert_each_refused(cases);
    assert_eq!(
        load_errors("[budgets]\nLCP = 2500\nINP = 200\nCLS = 0.1"),
        Vec::<String>::new()
    );
}

/// Each sink table is refused with (at least) its expected error.
fn assert_each_refused(cases: &[(&str, &str)]) {
    for (sink, expected) in cases {
        let errors = load_errors(sink);
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{sink:?}: expected {expected:?} in {errors:#?}"
        );
    }
}

/// Timing thresholds are milliseconds: `LCP = 2.5` (seconds, as Google's
/// pages write it) was read as 2.5 ms, and the budget's alert fired on
/// every page load.
#[test]
fn a_timing_threshold_written_in_seconds_is_refused() {
    let cases: &[(&str, &str)] = &[
        ("[budgets]\nLCP = 2.5", "[sinks.m] key `budgets.LCP.threshold`: 2.5 ms is too small for LCP, which is in milliseconds: for 2.5 s write 2500"),
        ("[budgets]\nINP = { threshold = 0.2 }", "[sinks.m] key `budgets.INP.threshold`: 0.2 ms is too small for INP, which is in milliseconds: for 0.2 s write 200"),
        ("[slos.x]\nvital = \"TTFB\"\nthreshold = 0.8\ntarget = 0.9", "[sinks.m] key `slos.x.threshold`: 0.8 ms is too small for TTFB, which is in milliseconds: for 0.8 s write 800"),
    ];
    assert_each_refused(cases);
    // CLS is a score, small by nature; 10 ms is the least timing taken.
    assert_eq!(
        load_errors("[budgets]\nCLS = 0.1\nINP = 10\n[slos.x]\nvital = \"CLS\"\nthreshold = 0.05\ntarget = 0.9"),
        Vec::<String>::new()
    );
}

/// Durations the rules could not be written with: past what Prometheus
/// parses (about 292 years) `rum-pipeline rules` wrote a range like
/// `[213503982334d14h25m51s615ms]`, and Prometheus refused the whole file.
#[test]
fn windows_and_periods_prometheus_could_not_read_are_refused() {
    let cases: &[(&str, &str)] = &[
        ("[budgets]\nLCP = { threshold = 2500, period_secs = 9223372036854775807 }", "[sinks.m] key `budgets.LCP.period_secs`: must be at most 86400 (a day)"),
        ("[budgets]\nLCP = { threshold = 2500, period_secs = 86400, evaluation_periods = 366 }", "[sinks.m] key `budgets.LCP.evaluation_periods`: 366 periods of 86400 s are more than 365 days"),
        ("[slos.x]\nvital = \"LCP\"\nthreshold = 2500\ntarget = 0.9\nwindow_days = 4000000000", "[sinks.m] key `slos.x.window_days`: must be at most 365"),
        ("[budgets]\nLCP = { threshold = 2500, severity = \"\" }", "[sinks.m] key `budgets.LCP.severity`: must not be empty"),
    ];
    assert_each_refused(cases);
    assert_eq!(
        load_errors("[budgets]\nLCP = { threshold = 2500, period_secs = 86400, evaluation_periods = 365 }\n[slos.x]\nvital = \"LCP\"\nthreshold = 2500\ntarget = 0.9\nwindow_days = 365"),
        Vec::<String>::new()
    );
}

fn fields(dimensions: &[&str]) -> EventFields {
    let dims: Vec<Dimension> = dimensions
        .iter()
        .map(|p| Dimension {
            path: p.to_string(),
            label: p.replace('.', "_"),
        })
        .collect();
    EventFields::new(&dims, true).unwrap()
}

#[test]
fn observe_reads_type_vital_error_csp_session_and_dimensions() {
    let f = fields(&["service.name", "labels.site", "url.port"]);
    let vital = Event::from(json!({
        "rum": {"type": "web_vital", "vital": {"name": "LCP", "value": 2600.5}},
        "service": {"name": "shop"}, "labels": {"site": "eu"}, "url": {"port": 8443},
        "session": {"id": "s1"}
    }));
    assert_eq!(
        observe(&vital, &f),
        Some(Observation {
            dims: vec!["shop".into(), "eu".into(), "8443".into()],
            session: Some("s1"),
            kind: Kind::Vital(Vital::Lcp, 2600.5),
        })
    );
    let error = Event::from(json!({"rum": {"type": "error", "error": {"count": 3}}}));
    assert_eq!(observe(&error, &f).unwrap().kind, Kind::Error { count: 3 });
    assert_eq!(observe(&error, &f).unwrap().dims, ["", "", ""]);
    let csp = Event::from(
        json!({"rum": {"type": "csp_violation"}, "csp": {"violated_directive": "script-src 'self'"}}),
    );
    assert_eq!(
        observe(&csp, &f).unwrap().kind,
        Kind::CspViolation {
            directive: "script-src"
        }
    );
    let forged = Event::from(
        json!({"rum": {"type": "csp_violation"}, "csp": {"effective_directive": "x-evil-1234"}}),
    );
    assert_eq!(
        observe(&forged, &f).unwrap().kind,
        Kind::CspViolation { directive: "other" }
    );
    let resource = Event::from(json!({"rum": {"type": "resource"}, "session": {"id": "s1"}}));
    assert_eq!(observe(&resource, &f).unwrap().kind, Kind::Other);
    // Nothing from bots, unknown vitals or values that are not numbers.
    let bot = Event::from(json!({"rum": {"type": "page_view"}, "labels": {"synthetic": true}}));
    assert_eq!(observe(&bot, &f), None);
    let fid =
        Event::from(json!({"rum": {"type": "web_vital", "vital": {"name": "FID", "value": 3}}}));
    assert_eq!(observe(&fid, &f), None);
    let text = Event::from(
        json!({"rum": {"type": "web_vital", "vital": {"name": "LCP", "value": "slow"}}}),
    );
    assert_eq!(observe(&text, &f), None);
}

#[test]
fn a_vital_too_large_for_a_histogram_sum_is_not_observed() {
    // Two CLS values of 1e308 made the series' `_sum` +Inf until the
    // restart, and every average drawn from it NaN: one forged beacon broke
    // a site's panel for good. Such a value is refused as a negative one is.
    let f = fields(&["service.name"]);
    let vital = |name: &str, value: f64| {
        Event::from(json!({"rum": {"type": "web_vital", "vital": {"name": name, "value": value}}}))
    };
    assert_eq!(observe(&vital("CLS", 1e308), &f), None);
    assert_eq!(observe(&vital("LCP", 1e300), &f), None);
    assert_eq!(observe(&vital("LCP", -1.0), &f), None);
    // An hour's LCP (a tab left loading) is still a measurement.
    assert_eq!(
        observe(&vital("LCP", 3_600_000.0), &f).unwrap().kind,
        Kind::Vital(Vital::Lcp, 3_600_000.0)
    );
}
