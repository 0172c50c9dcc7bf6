//! Tests of the series store: recording, the series cap and its folding,
//! sessions, and the exact text `render` writes.

use super::*;
use crate::sinks::prometheus::vitals::buckets_with;

fn metrics(labels: &[&str], max_series: usize) -> RumMetrics {
    RumMetrics::new(Settings {
        labels: labels.iter().map(|l| l.to_string()).collect(),
        keep_on_fold: labels.iter().map(|l| *l == "service").collect(),
        max_series,
        max_sessions: 100,
        session_timeout_secs: 1800,
        buckets: vec![(Vital::Lcp, buckets_with(Vital::Lcp, []))],
    })
}

fn obs<'a>(dims: &[&'a str], session: Option<&'a str>, kind: Kind<'a>) -> Observation<'a> {
    Observation {
        dims: dims.iter().map(|d| Cow::Borrowed(*d)).collect(),
        session,
        kind,
    }
}

fn lines(text: &str, prefix: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

#[test]
fn counts_sessions_once_and_their_first_error_once() {
    let mut m = metrics(&["site"], 10);
    m.record(&obs(&["shop"], Some("s1"), Kind::PageView), 0);
    m.record(&obs(&["shop"], Some("s1"), Kind::Error { count: 2 }), 1);
    m.record(&obs(&["shop"], Some("s1"), Kind::Error { count: 1 }), 2);
    m.record(&obs(&["shop"], Some("s2"), Kind::PageView), 3);
    m.record(&obs(&["shop"], Some("s2"), Kind::Other), 4);
    let text = m.render();
    assert_eq!(
        lines(&text, "rum_page_views_total{"),
        ["rum_page_views_total{site=\"shop\"} 2"]
    );
    assert_eq!(
        lines(&text, "rum_sessions_total{"),
        ["rum_sessions_total{site=\"shop\"} 2"]
    );
    assert_eq!(
        lines(&text, "rum_sessions_with_js_error_total{"),
        ["rum_sessions_with_js_error_total{site=\"shop\"} 1"]
    );
    assert_eq!(
        lines(&text, "rum_js_errors_total{"),
        ["rum_js_errors_total{site=\"shop\"} 3"]
    );
}

#[test]
fn histogram_lines_are_cumulative_with_google_bounds() {
    let mut m = metrics(&["site"], 10);
    for value in [1200.0, 2500.0, 2600.0, 40_000.0] {
        m.record(&obs(&["shop"], None, Kind::Vital(Vital::Lcp, value)), 0);
    }
    let text = m.render();
    let got = lines(&text, "rum_web_vital_lcp_seconds");
    assert_eq!(
        got,
        [
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"0.5\"} 0",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"1.0\"} 0",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"1.5\"} 1",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"2.0\"} 1",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"2.5\"} 2",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"3.0\"} 3",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"4.0\"} 3",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"5.0\"} 3",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"6.0\"} 3",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"8.0\"} 3",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"10.0\"} 3",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"15.0\"} 3",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"20.0\"} 3",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"30.0\"} 3",
            "rum_web_vital_lcp_seconds_bucket{site=\"shop\",le=\"+Inf\"} 4",
            "rum_web_vital_lcp_seconds_sum{site=\"shop\"} 46.3",
            "rum_web_vital_lcp_seconds_count{site=\"shop\"} 4",
        ]
    );
    assert!(text.contains("# TYPE rum_web_vital_lcp_seconds histogram\n"));
    assert!(!text.contains("quantile"));
}

#[test]
fn series_beyond_the_cap_fold_into_other() {
    let mut m = metrics(&["path"], 3);
    let paths: Vec<String> = (0..10).map(|i| format!("/p/{i}")).collect();
    let mut folded = 0;
    for path in &paths {
        folded += m.record(&obs(&[path], None, Kind::PageView), 0);
    }
    assert_eq!(folded, 7);
    assert_eq!(m.series_count(PAGE_VIEWS), 4);
    let text = m.render();
    assert_eq!(
        lines(&text, "rum_page_views_total{"),
        [
            "rum_page_views_total{path=\"/p/0\"} 1",
            "rum_page_views_total{path=\"/p/1\"} 1",
            "rum_page_views_total{path=\"/p/2\"} 1",
            "rum_page_views_total{path=\"__other__\"} 7",
        ]
    );
    // A known series keeps counting past the cap.
    assert_eq!(m.record(&obs(&["/p/1"], None, Kind::PageView), 0), 0);
}

#[test]
fn a_hundred_thousand_page_templates_keep_max_series() {
    let mut m = metrics(&["service", "path"], 500);
    let mut folded = 0;
    for i in 0..100_000 {
        let path = format!("/p/{i}");
        let session = format!("s{i}");
        for kind in [Kind::PageView, Kind::Vital(Vital::Lcp, 2000.0)] {
            folded += m.record(&obs(&["shop", &path], Some(&session), kind), i / 1000);
        }
    }
    for metric in [PAGE_VIEWS, SESSIONS, Vital::Lcp.metric()] {
        // 500 real series and the one `service="shop",path="__other__"`.
        assert_eq!(m.series_count(metric), 501, "{metric}");
    }
    assert_eq!(folded, 3 * (100_000 - 500));
    assert!(m.sessions_remembered() <= 100);
    let text = m.render();
    assert!(text.contains("rum_page_views_total{service=\"shop\",path=\"__other__\"} 99500\n"));
}

#[test]
fn folding_keeps_the_dimensions_slos_are_evaluated_by() {
    // `service` is kept on fold; the folded series are capped as well.
    let mut m = metrics(&["service", "path"], 2);
    for (service, path) in [
        ("a", "/1"),
        ("a", "/2"),
        ("a", "/3"),
        ("b", "/4"),
        ("c", "/5"),
        ("a", "/6"),
    ] {
        m.record(&obs(&[service, path], None, Kind::PageView), 0);
    }
    assert_eq!(
        lines(&m.render(), "rum_page_views_total{"),
        [
            "rum_page_views_total{service=\"__other__\",path=\"__other__\"} 1",
            "rum_page_views_total{service=\"a\",path=\"/1\"} 1",
            "rum_page_views_total{service=\"a\",path=\"/2\"} 1",
            "rum_page_views_total{service=\"a\",path=\"__other__\"} 2",
            "rum_page_views_total{service=\"b\",path=\"__other__\"} 1",
        ]
    );
}

#[test]
fn folding_keeps_every_dimension_when_every_one_is_kept_on_fold() {
    // `service` alone, and kept on fold (an SLO is evaluated by it): past
    // the cap a new service still gets its own series, within the cap of
    // folded series; only past that does it go to `__other__`.
    let mut m = metrics(&["service"], 1);
    for service in ["shop", "checkout", "blog", "news"] {
        m.record(&obs(&[service], None, Kind::PageView), 0);
    }
    assert_eq!(
        lines(&m.render(), "rum_page_views_total{"),
        [
            "rum_page_views_total{service=\"__other__\"} 2",
            "rum_page_views_total{service=\"checkout\"} 1",
            "rum_page_views_total{service=\"shop\"} 1",
        ]
    );
}

/// docs/per-site.md: evaluated by a label the pipeline sets per site
/// (`labels.site`), rather than by the beacon's own `service.name`, a
/// site's alerts keep their series when made-up names fill both tables.
#[test]
fn made_up_service_names_cannot_take_the_series_of_a_site_label() {
    let mut m = RumMetrics::new(Settings {
        labels: vec!["service_name".into(), "labels_site".into()],
        keep_on_fold: vec![false, true],
        max_series: 3,
        max_sessions: 100,
        session_timeout_secs: 1800,
        buckets: vec![(Vital::Lcp, buckets_with(Vital::Lcp, []))],
    });
    // 2 × max_series names, then more, all claimed on the blog's path.
    for n in 0..10 {
        let name = format!("made-up-{n}");
        m.record(&obs(&[&name, "blog"], None, Kind::PageView), 0);
    }
    m.record(&obs(&["shop", "shop"], None, Kind::PageView), 0);
    m.record(&obs(&["shop", "shop"], None, Kind::PageView), 0);
    let text = m.render();
    assert!(
        lines(&text, "rum_page_views_total{").contains(
            &"rum_page_views_total{service_name=\"__other__\",labels_site=\"shop\"} 2".to_owned()
        ),
        "{text}"
    );
}

#[test]
fn csp_directive_is_a_label_after_the_dimensions() {
    let mut m = metrics(&["site"], 1);
    m.record(
        &obs(
            &["shop"],
            None,
            Kind::CspViolation {
                directive: "script-src-elem",
            },
        ),
        0,
    );
    m.record(
        &obs(
            &["blog"],
            None,
            Kind::CspViolation {
                directive: "img-src",
            },
        ),
        0,
    );
    let text = m.render();
    assert_eq!(
        lines(&text, "rum_csp_violations_total{"),
        [
            "rum_csp_violations_total{site=\"__other__\",directive=\"img-src\"} 1",
            "rum_csp_violations_total{site=\"shop\",directive=\"script-src-elem\"} 1",
        ]
    );
}

#[test]
fn no_dimensions_means_no_braces_and_values_are_escaped() {
    let mut m = metrics(&[], 10);
    m.record(&obs(&[], None, Kind::PageView), 0);
    m.record(
        &obs(
            &[],
            None,
            Kind::CspViolation {
                directive: "img-src",
            },
        ),
        0,
    );
    let text = m.render();
    assert!(text.contains("\nrum_page_views_total 1\n"), "{text}");
    assert!(
        text.contains("\nrum_csp_violations_total{directive=\"img-src\"} 1\n"),
        "{text}"
    );
    let mut m = metrics(&["path"], 10);
    m.record(&obs(&["/a\"b\\c\nd"], None, Kind::PageView), 0);
    assert!(m
        .render()
        .contains(r#"rum_page_views_total{path="/a\"b\\c\nd"} 1"#));
}

#[test]
fn remembered_sessions_stay_bounded() {
    let mut m = metrics(&[], 10);
    for i in 0..10_000 {
        m.record(&obs(&[], Some(&format!("s{i}")), Kind::PageView), i / 100);
    }
    assert!(
        m.sessions_remembered() <= 100,
        "{}",
        m.sessions_remembered()
    );
    // A session idle for less than a generation is still known.
    let mut m = metrics(&[], 10);
    m.record(&obs(&[], Some("a"), Kind::PageView), 0);
    m.record(&obs(&[], Some("b"), Kind::PageView), 1900);
    m.record(&obs(&[], Some("a"), Kind::PageView), 2000);
    assert!(m.render().contains("\nrum_sessions_total 2\n"));
}

#[test]
fn over_long_label_values_fold_so_series_stay_small() {
    // A beacon's `service.name` (or any dimension it sends) may be as long
    // as the source's `max_string_bytes`, 16 KiB: a thousand of them must
    // not make a thousand 16 KiB series, nor a 16 MiB scrape per family.
    let mut m = metrics(&["service"], 1000);
    let mut folded = 0;
    for i in 0..1000 {
        let name = format!("{i:04}{}", "x".repeat(16 * 1024));
        folded += m.record(&obs(&[&name], Some(&name), Kind::PageView), 0);
    }
    assert_eq!(folded, 2 * 1000, "page views and sessions, each folded");
    assert_eq!(m.series_count(PAGE_VIEWS), 1);
    let text = m.render();
    assert!(text.len() < 64 * 1024, "{} bytes", text.len());
    assert_eq!(
        lines(&text, "rum_page_views_total{"),
        ["rum_page_views_total{service=\"__other__\"} 1000"]
    );
    // A value at the limit is a label as it came.
    let longest = "y".repeat(MAX_LABEL_VALUE_BYTES);
    assert_eq!(m.record(&obs(&[&longest], None, Kind::PageView), 0), 0);
    assert!(text.len() < m.render().len());
    assert!(m.render().contains(&format!(
        "rum_page_views_total{{service=\"{longest}\"}} 1\n"
    )));
}

#[test]
fn a_forged_error_count_neither_wraps_nor_panics() {
    // `rum.error.count` is the browser's word: a beacon may say 2^64 - 1.
    // Added to a counter that already counts, it wrapped (release builds:
    // the counter went backwards, which Prometheus reads as a reset) or
    // panicked the sink (debug builds).
    let mut m = metrics(&["site"], 10);
    m.record(&obs(&["shop"], None, Kind::Error { count: 2 }), 0);
    m.record(&obs(&["shop"], None, Kind::Error { count: u64::MAX }), 0);
    m.record(&obs(&["shop"], None, Kind::Error { count: 5 }), 0);
    assert_eq!(
        lines(&m.render(), "rum_js_errors_total{"),
        [format!("rum_js_errors_total{{site=\"shop\"}} {}", u64::MAX)]
    );
}

/// Past `max_sessions` live sessions, the oldest generation goes before
/// its timeout, and a session of it seen again is counted again in
/// `rum_sessions_total`: that over-count had no counter saying so.
#[test]
fn sessions_forgotten_before_their_timeout_are_counted() {
    // 100 sessions: two generations of 50.
    let mut m = metrics(&[], 10);
    for i in 0..150 {
        m.record(&obs(&[], Some(&format!("s{i}")), Kind::PageView), 0);
    }
    // The first 50 went when s100 came: s0 is counted once more, and its
    // arrival (a full generation again) lets s50..s99 go too.
    m.record(&obs(&[], Some("s0"), Kind::PageView), 1);
    let text = m.render();
    assert_eq!(
        lines(&text, "rum_sessions_total "),
        ["rum_sessions_total 151"]
    );
    assert_eq!(
        lines(&text, "rum_sessions_forgotten_total "),
        ["rum_sessions_forgotten_total 100"]
    );
    // A full generation dropped early can hold sessions idle past the
    // timeout (1800 s): they had ended, and are not counted as forgotten.
    let mut m = metrics(&[], 10);
    for i in 0..50 {
        m.record(&obs(&[], Some(&format!("old{i}")), Kind::PageView), 0);
    }
    // A full generation: the old sessions move to the previous one.
    m.record(&obs(&[], Some("mid"), Kind::PageView), 1000);
    for i in 0..49 {
        m.record(&obs(&[], Some(&format!("new{i}")), Kind::PageView), 2500);
    }
    // Full again at 2500 s: the old sessions go, idle for 2500 s.
    m.record(&obs(&[], Some("late"), Kind::PageView), 2500);
    assert_eq!(
        lines(&m.render(), "rum_sessions_forgotten_total "),
        ["rum_sessions_forgotten_total 0"]
    );
    // Full again at 2600 s: `mid` (seen 1600 s ago) and the 49 went early.
    for i in 0..49 {
        m.record(&obs(&[], Some(&format!("newer{i}")), Kind::PageView), 2600);
    }
    m.record(&obs(&[], Some("last"), Kind::PageView), 2600);
    assert_eq!(
        lines(&m.render(), "rum_sessions_forgotten_total "),
        ["rum_sessions_forgotten_total 50"]
    );
    // Sessions idle past the timeout are forgotten by design: not counted.
    let mut m = metrics(&[], 10);
    m.record(&obs(&[], Some("a"), Kind::PageView), 0);
    m.record(&obs(&[], Some("b"), Kind::PageView), 1800);
    m.record(&obs(&[], Some("c"), Kind::PageView), 3600);
    assert_eq!(
        lines(&m.render(), "rum_sessions_forgotten_total "),
        ["rum_sessions_forgotten_total 0"]
    );
}

/// Session ids and label values are the browser's, so the maps they key
/// must not take a hash a client can predict: under `FxHasher`, ids that
/// differ only in bytes 40..48 of 65 hash alike (`fx_collisions`), so two
/// such sessions were counted as one, and label values made alike sat in
/// one probe chain that every lookup of theirs walked (1,000 series: ~15×
/// the cost of a record, growing with `max_series`).
#[test]
fn keys_a_client_makes_collide_under_fx_are_told_apart() {
    let ids = crate::fx_collisions::fx_colliding(2);
    let mut m = metrics(&["site"], 10);
    m.record(&obs(&["shop"], Some(&ids[0]), Kind::PageView), 0);
    m.record(&obs(&["shop"], Some(&ids[1]), Kind::PageView), 1);
    assert_eq!(m.sessions_remembered(), 2);
    assert_eq!(
        lines(&m.render(), "rum_sessions_total{"),
        ["rum_sessions_total{site=\"shop\"} 2"]
    );
    let hasher = m.page_views.series.hasher();
    assert_ne!(hasher.hash_one(&ids[0]), hasher.hash_one(&ids[1]));
}
