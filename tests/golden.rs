//! Golden output: every beacon, CSP and SDK fixture in `testdata/` through a
//! prod-shaped chain (user_agent → geoip → scrub_url → labels → route → per-site
//! scrub_url/sample/labels), encoded as the stdout sink writes it and as the
//! Elasticsearch sink writes its bulk body. The committed files under
//! `testdata/golden/` are what users see; a change to the event model must
//! leave them identical, or the difference is a deliberate, reviewed edit.
//!
//! Regenerate after a deliberate change: `GOLDEN_UPDATE=1 cargo test --test golden`.
//!
//! The same documents are indexed in a model of Elasticsearch's mapping
//! (`support/mapping.rs`) against the template the sink installs: each one
//! must be a document Elasticsearch takes, not one it refuses item by item
//! into the dead-letter file — and so must the documents of every fixture
//! with one hostile value or key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rum_pipeline::event::{Batch, Event};
use rum_pipeline::sinks::elasticsearch::encoder::BulkBatch;
use rum_pipeline::sinks::elasticsearch::index::{IndexOptions, IndexRouter};
use rum_pipeline::sinks::stdout::{encode, Encoding};
use rum_pipeline::sources::beacon_decoder::{self, BeaconLimits, RequestFacts};
use rum_pipeline::sources::csp_report::{self, NoiseRules, ReportFacts, ReportLimits};
use rum_pipeline::sources::{elastic_apm_decoder, faro_decoder, web_vitals_decoder};
use rum_pipeline::telemetry::{ComponentMetrics, Registry};
use rum_pipeline::transforms::{Transform, TransformConfig, TransformContext};

const CHROME_UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";
/// In MaxMind's GeoIP2-City test database (London).
const CLIENT_IP: &str = "81.2.69.142";
/// 2025-11-21T04:40:01.500Z: the fixtures' clocks are about here.
const RECEIVED_AT_MS: i64 = 1_763_700_001_500;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn transform(id: &str, type_name: &'static str, toml_text: &str) -> Box<dyn Transform> {
    let mut table: toml::Table = toml::from_str(toml_text).expect("test TOML");
    table.remove("type");
    let config = TransformConfig::parse(type_name, table).expect("valid transform config");
    let registry = Registry::new();
    let cx = TransformContext {
        id: id.to_owned(),
        metrics: ComponentMetrics::new(&registry, id, "transform", type_name),
    };
    config.build(&cx).expect("transform builds")
}

/// Runs one transform over a batch and returns its output ports.
fn run(t: &mut dyn Transform, batch: Batch, ports: usize) -> Vec<Batch> {
    let mut out: Vec<Batch> = (0..ports).map(|_| Vec::new()).collect();
    t.transform(batch, &mut out);
    out
}

/// The prod-shaped chain; returns the events in sink order.
struct Chain {
    user_agent: Box<dyn Transform>,
    geoip: Box<dyn Transform>,
    scrub: Box<dyn Transform>,
    labels: Box<dyn Transform>,
    route: Box<dyn Transform>,
    shop_paths: Box<dyn Transform>,
    shop_labels: Box<dyn Transform>,
    blog_sample: Box<dyn Transform>,
    blog_labels: Box<dyn Transform>,
}

impl Chain {
    fn new() -> Chain {
        let db = root().join("testdata/geoip/GeoIP2-City-Test.mmdb");
        Chain {
            user_agent: transform("user_agent", "user_agent", ""),
            geoip: transform(
                "geoip",
                "geoip",
                &format!("database = {:?}", db.display().to_string()),
            ),
            scrub: transform("scrub", "scrub_url", ""),
            labels: transform(
                "labels",
                "labels",
                r#"
                labels = { env = "golden" }
                [[when]]
                field = "rum.type"
                equals = "error"
                labels = { has_error = "yes" }
                "#,
            ),
            route: transform(
                "by_site",
                "route",
                r#"
                route.shop = { field = "url.domain", equals = "shop.example.com" }
                route.blog = { field = "url.domain", equals = "blog.example.com" }
                "#,
            ),
            shop_paths: transform(
                "shop_paths",
                "scrub_url",
                r#"routes = ["/product/{slug}", "/category/{slug}"]"#,
            ),
            shop_labels: transform("shop_labels", "labels", r#"labels = { site = "shop" }"#),
            blog_sample: transform("blog_sample", "sample", "rate = 0.5"),
            blog_labels: transform("blog_labels", "labels", r#"labels = { site = "blog" }"#),
        }
    }

    fn process(&mut self, batch: Batch) -> Batch {
        let batch = run(&mut *self.user_agent, batch, 1).remove(0);
        let batch = run(&mut *self.geoip, batch, 1).remove(0);
        let batch = run(&mut *self.scrub, batch, 1).remove(0);
        let batch = run(&mut *self.labels, batch, 1).remove(0);
        // route's ports: its routes by name (blog, shop), then _unmatched.
        let mut ports = run(&mut *self.route, batch, 3);
        let unmatched = ports.pop().unwrap();
        let shop = ports.pop().unwrap();
        let blog = ports.pop().unwrap();
        let shop = run(&mut *self.shop_paths, shop, 1).remove(0);
        let shop = run(&mut *self.shop_labels, shop, 1).remove(0);
        let blog = run(&mut *self.blog_sample, blog, 1).remove(0);
        let blog = run(&mut *self.blog_labels, blog, 1).remove(0);
        let mut all = shop;
        all.extend(blog);
        all.extend(unmatched);
        all
    }
}

/// Which decoder reads a fixture body.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Beacon,
    ReportUri,
    ReportingApi,
    WebVitals,
    Faro,
    ApmV2,
    ApmV3,
}

/// Every fixture: (name, decoder, body), in golden-file order.
fn fixtures() -> Vec<(String, Kind, Vec<u8>)> {
    let mut out = Vec::new();
    let read = |path: &Path| std::fs::read(path).unwrap();
    for path in files(&root().join("testdata/beacons")) {
        out.push((name(&path, "beacons"), Kind::Beacon, read(&path)));
    }
    for (dir, kind) in [
        ("csp/report-uri", Kind::ReportUri),
        ("csp/reporting-api", Kind::ReportingApi),
    ] {
        for path in files(&root().join("testdata").join(dir)) {
            out.push((name(&path, "csp"), kind, read(&path)));
        }
    }
    let sdk = root().join("testdata/sdk");
    for path in files(&sdk.join("web-vitals")) {
        if !path.to_string_lossy().ends_with(".meta.json") {
            out.push((name(&path, "sdk"), Kind::WebVitals, read(&path)));
        }
    }
    for path in files(&sdk.join("faro")) {
        if !path.ends_with("meta.json") {
            out.push((name(&path, "sdk"), Kind::Faro, read(&path)));
        }
    }
    for path in files_ending(&sdk.join("elastic-apm-rum"), "ndjson") {
        let file = path.file_name().unwrap().to_string_lossy();
        let kind = if file.starts_with("v2") {
            Kind::ApmV2
        } else {
            Kind::ApmV3
        };
        out.push((name(&path, "sdk"), kind, read(&path)));
    }
    out
}

/// A body through its decoder, with the limits and request facts the golden
/// files were made with: the events, or why the body was refused.
fn decode(kind: Kind, body: &[u8]) -> Result<Batch, String> {
    let ip = CLIENT_IP.parse().unwrap();
    let client_ip = rum_pipeline::privacy::ClientIpMode::default();
    match kind {
        Kind::Beacon => {
            let limits = BeaconLimits {
                max_events: 500,
                max_string_bytes: 16 * 1024,
                max_depth: 20,
                max_event_age_ms: 24 * 3_600_000,
                max_context_bytes: 64 * 1024,
                client_ip,
            };
            let facts = RequestFacts {
                received_at_ms: RECEIVED_AT_MS,
                client_ip: ip,
                user_agent: Some(CHROME_UA),
                client_hints: vec![("sec_ch_ua_platform", "\"Windows\"")],
            };
            beacon_decoder::decode(body, &facts, &limits)
                .map(|d| d.events)
                .map_err(|e| format!("{e:?}"))
        }
        Kind::ReportUri | Kind::ReportingApi => {
            let limits = ReportLimits {
                max_reports: 100,
                max_string_bytes: 16 * 1024,
                max_depth: 20,
                max_age_ms: 24 * 3_600_000,
                client_ip,
            };
            let noise = NoiseRules::new(&rum_pipeline::sources::csp::default_noise_hosts());
            let facts = ReportFacts {
                received_at_ms: RECEIVED_AT_MS,
                client_ip: "2001:db8::1".parse().unwrap(),
                user_agent: Some(CHROME_UA),
            };
            let decoded = if matches!(kind, Kind::ReportingApi) {
                csp_report::decode_reporting_api(body, &facts, &limits, &noise)
            } else {
                csp_report::decode_report_uri(body, &facts, &limits, &noise)
            };
            decoded
                .map(|d| d.reports.into_iter().map(|r| r.event).collect())
                .map_err(|e| format!("{e:?}"))
        }
        Kind::WebVitals => {
            let limits = web_vitals_decoder::MetricLimits {
                max_metrics: 50,
                max_string_bytes: 16 * 1024,
                max_depth: 20,
                keep_entries: false,
                client_ip,
            };
            let facts = web_vitals_decoder::RequestFacts {
                received_at_ms: RECEIVED_AT_MS,
                client_ip: ip,
                user_agent: Some(CHROME_UA),
                referer: Some("https://shop.example.com/"),
            };
            web_vitals_decoder::decode(body, &facts, &limits)
                .map(|d| d.events)
                .map_err(|e| format!("{e:?}"))
        }
        Kind::Faro => {
            let limits = faro_decoder::FaroLimits {
                max_items: 500,
                max_string_bytes: 16 * 1024,
                max_depth: 20,
                max_event_age_ms: i64::MAX,
                max_context_bytes: 64 * 1024,
                client_ip,
            };
            let facts = faro_decoder::RequestFacts {
                received_at_ms: RECEIVED_AT_MS,
                client_ip: ip,
                user_agent: Some(CHROME_UA),
                session_header: None,
            };
            faro_decoder::decode(body, &facts, &limits)
                .map(|d| d.events)
                .map_err(|e| format!("{e:?}"))
        }
        Kind::ApmV2 | Kind::ApmV3 => {
            let limits = elastic_apm_decoder::ApmLimits {
                max_events: 1000,
                max_event_bytes: 300 * 1024,
                max_string_bytes: 16 * 1024,
                max_depth: 20,
                keep_breakdown: false,
                max_context_bytes: 64 * 1024,
                client_ip,
                label_names: std::sync::Arc::new(elastic_apm_decoder::LabelNames::first_seen(
                    rum_pipeline::sources::elastic_apm_rum::DEFAULT_MAX_LABEL_NAMES,
                )),
            };
            let facts = elastic_apm_decoder::RequestFacts {
                received_at_ms: RECEIVED_AT_MS,
                client_ip: ip,
                user_agent: Some(CHROME_UA),
                version: if matches!(kind, Kind::ApmV2) {
                    elastic_apm_decoder::ApiVersion::V2
                } else {
                    elastic_apm_decoder::ApiVersion::V3
                },
            };
            let decoded =
                elastic_apm_decoder::decode(body, &facts, &limits).map_err(|e| format!("{e:?}"))?;
            if !decoded.errors.is_empty() {
                return Err(format!("{:?}", decoded.errors));
            }
            Ok(decoded.events)
        }
    }
}

/// (fixture name, events) for every fixture.
fn decode_fixtures() -> Vec<(String, Batch)> {
    let out: Vec<(String, Batch)> = fixtures()
        .into_iter()
        .map(|(name, kind, body)| {
            let events = decode(kind, &body).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, events)
        })
        .collect();
    assert!(
        out.iter()
            .filter(|(name, _)| name.starts_with("sdk-"))
            .count()
            >= 20,
        "SDK fixtures went missing"
    );
    out
}

fn files(dir: &Path) -> Vec<PathBuf> {
    files_ending(dir, "json")
}

fn files_ending(dir: &Path, extension: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == extension))
        .collect();
    files.sort();
    files
}

fn name(path: &Path, group: &str) -> String {
    let parent = path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy();
    let stem = path.file_stem().unwrap().to_string_lossy();
    if parent == group {
        format!("{group}-{stem}")
    } else {
        format!("{group}-{parent}-{stem}")
    }
}

fn render(events: &[Event]) -> (String, String) {
    let mut stdout = Vec::new();
    for event in events {
        encode(event, Encoding::Json, &mut stdout);
    }
    let allowed = BTreeMap::new();
    let router = IndexRouter::new(&IndexOptions {
        template: None,
        prefix: "c.rum",
        data_stream: false,
        fallback: "other",
        allowed_values: &allowed,
    })
    .unwrap();
    let now = chrono::DateTime::from_timestamp_millis(RECEIVED_AT_MS).unwrap();
    let index = router.prepare(&now);
    let mut bulk = BulkBatch::default();
    let mut scratch = Vec::new();
    for event in events {
        bulk.push(event, &index, &mut scratch);
    }
    (
        String::from_utf8(stdout).unwrap(),
        String::from_utf8(bulk.body).unwrap(),
    )
}

#[test]
fn fixtures_through_the_prod_shaped_chain_match_the_golden_files() {
    let update = std::env::var_os("GOLDEN_UPDATE").is_some();
    let golden = root().join("testdata/golden");
    let mut chain = Chain::new();
    let mut mismatches = Vec::new();
    let fixtures = decode_fixtures();
    assert!(fixtures.len() >= 10, "fixtures went missing");
    for (name, events) in fixtures {
        let events = chain.process(events);
        let (stdout, bulk) = render(&events);
        for (suffix, actual) in [("stdout.ndjson", stdout), ("bulk.ndjson", bulk)] {
            let path = golden.join(format!("{name}.{suffix}"));
            if update {
                std::fs::write(&path, &actual).unwrap();
                continue;
            }
            let expected = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (GOLDEN_UPDATE=1 writes it)", path.display()));
            if expected != actual {
                let line = expected
                    .lines()
                    .zip(actual.lines())
                    .position(|(a, b)| a != b)
                    .unwrap_or(expected.lines().count().min(actual.lines().count()));
                mismatches.push(format!(
                    "{}: first difference on line {}\n  expected: {}\n  actual:   {}",
                    path.display(),
                    line + 1,
                    expected.lines().nth(line).unwrap_or("<none>"),
                    actual.lines().nth(line).unwrap_or("<none>")
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
}

#[path = "support/mapping.rs"]
mod mapping;

/// A new index's mapping, from the component template the sink installs.
fn installed_mapping() -> mapping::IndexMapping {
    mapping::IndexMapping::from_component_template(
        &rum_pipeline::sinks::elasticsearch::templates::component_template(),
    )
}

/// The bulk body of a fixture's events through the chain.
fn bulk_of(chain: &mut Chain, events: Batch) -> String {
    render(&chain.process(events)).1
}

/// Every document the fixtures make, indexed (in a model of Elasticsearch's
/// mapping, `support/mapping.rs`) against the component template the sink
/// installs — the generated one, so this keeps holding as the schema grows:
/// none is refused, and every field is in the template or matched by one of
/// its dynamic templates (a field left to Elasticsearch's defaults takes the
/// type of the first value it sees, and a later value of another type is
/// refused).
#[test]
fn every_fixture_document_fits_the_installed_template() {
    let fresh = installed_mapping();
    let mut chain = Chain::new();
    let mut indices = BTreeMap::new();
    let mut refused = Vec::new();
    for (name, events) in decode_fixtures() {
        let documents = mapping::parse_bulk(&bulk_of(&mut chain, events));
        refused.extend(mapping::index_documents(
            &fresh,
            &mut indices,
            &documents,
            &name,
        ));
    }
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
    let untemplated: std::collections::BTreeSet<String> = indices
        .values()
        .flat_map(mapping::IndexMapping::untemplated_fields)
        .collect();
    assert!(
        untemplated.is_empty(),
        "mapped by Elasticsearch's defaults, not by the template: {untemplated:#?}"
    );
}

/// Elasticsearch's date detection maps a new string field that looks like
/// a date as `date`: an agent label `release` first sent as `"2024-01-15"`
/// made `labels.release` a date in that day's index, and every later event
/// with `release: "nightly"` was refused (dead-lettered). Labels are
/// keywords whatever their first value looks like.
#[test]
fn a_label_that_looks_like_a_date_stays_a_keyword() {
    let fresh = installed_mapping();
    let mut chain = Chain::new();
    let mut indices = BTreeMap::new();
    let mut refused = Vec::new();
    for (i, release) in ["2024-01-15", "2024/01/15 10:00:00 +0000", "nightly"]
        .iter()
        .enumerate()
    {
        let body = format!(
            "{{\"metadata\":{{\"service\":{{\"name\":\"shop\",\"agent\":{{\"name\":\"rum-js\",\"version\":\"5.17.5\"}}}},\"labels\":{{\"release\":\"{release}\"}}}}}}\n\
             {{\"transaction\":{{\"id\":\"b4fa01e4afd4011{i}\",\"trace_id\":\"f62821b3312a3b3f226f70a2d8f0ea06\",\"name\":\"page-exit\",\"type\":\"page-exit\",\"duration\":177,\"context\":{{\"tags\":{{\"built\":\"{release}\"}}}},\"span_count\":{{\"started\":0}}}}}}\n"
        );
        let events = decode(Kind::ApmV2, body.as_bytes()).unwrap();
        let documents = mapping::parse_bulk(&bulk_of(&mut chain, events));
        assert!(!documents.is_empty());
        refused.extend(mapping::index_documents(
            &fresh,
            &mut indices,
            &documents,
            release,
        ));
    }
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
    for mapping in indices.values() {
        assert_eq!(
            mapping.type_of("labels.release").as_deref(),
            Some("keyword")
        );
        assert_eq!(mapping.type_of("labels.built").as_deref(), Some("keyword"));
    }
}

/// A `flattened` field (`rum.extra`, attributions, report bodies) indexes
/// each leaf as one `key\0value` term, and Lucene refuses a term over 32766
/// bytes — with it the whole document. The csp source takes strings of up
/// to 32 KiB (its `max_string_bytes`), a beacon keys and values of 16 KiB
/// each: a report with one long unknown value, or an attribution with a long
/// key and value, was refused into the dead-letter file. Such a value is
/// stored, unindexed.
#[test]
fn a_long_value_in_a_flattened_field_is_stored_not_refused() {
    let fresh = installed_mapping();
    let mut chain = Chain::new();
    let mut indices = BTreeMap::new();
    let limits = ReportLimits {
        max_reports: 100,
        max_string_bytes: 32 * 1024,
        max_depth: 20,
        max_age_ms: 24 * 3_600_000,
        client_ip: rum_pipeline::privacy::ClientIpMode::default(),
    };
    let noise = NoiseRules::new(&rum_pipeline::sources::csp::default_noise_hosts());
    let facts = ReportFacts {
        received_at_ms: RECEIVED_AT_MS,
        client_ip: "2001:db8::1".parse().unwrap(),
        user_agent: Some(CHROME_UA),
    };
    let report = serde_json::json!({"csp-report": {
        "document-uri": "https://shop.example.com/", "violated-directive": "script-src",
        "blocked-uri": "inline", "x-note": "a".repeat(32 * 1024)}});
    let decoded =
        csp_report::decode_report_uri(report.to_string().as_bytes(), &facts, &limits, &noise)
            .unwrap();
    let events: Batch = decoded.reports.into_iter().map(|r| r.event).collect();
    let mut documents = mapping::parse_bulk(&bulk_of(&mut chain, events));
    let key = "k".repeat(16 * 1024);
    let beacon = format!(
        r#"{{"v":1,"session":{{"id":"s"}},"view":{{"id":"v","url":"https://shop.example.com/"}},"events":[
            {{"type":"web_vital","ts":{RECEIVED_AT_MS},"name":"CLS","value":0.1,"attribution":{{"{key}":"{}"}}}}]}}"#,
        "v".repeat(16 * 1024)
    );
    let events = decode(Kind::Beacon, beacon.as_bytes()).unwrap();
    documents.extend(mapping::parse_bulk(&bulk_of(&mut chain, events)));
    assert_eq!(documents.len(), 2);
    let refused = mapping::index_documents(&fresh, &mut indices, &documents, "long");
    assert!(refused.is_empty(), "refused:\n{}", refused.join("\n"));
}

/// What a browser (or anyone posting) may put where a fixture has a value:
/// another JSON type, an integer past `long`, a fraction, an empty string, a
/// date-like string, `"NaN"`.
fn hostile_values() -> Vec<serde_json::Value> {
    use serde_json::json;
    vec![
        json!("x"),
        json!(""),
        json!(7),
        json!(1.5),
        json!(9_223_372_036_854_775_808_u64),
        json!(true),
        json!({"x": 1}),
        json!(["x"]),
        json!([1, "x"]),
        json!("2024-01-15"),
        json!("NaN"),
    ]
}

/// Keys a browser may add to any object: names Elasticsearch refuses, and
/// names that collide with mapped fields once dots are read as paths.
fn hostile_keys() -> Vec<String> {
    let mut keys: Vec<String> = [
        "",
        ".",
        "a.",
        ".a",
        "a..b",
        " ",
        "_id",
        "_source",
        "url",
        "url.full",
        "event.x",
        "labels",
        "rum.extra",
        "\u{0}",
        "a\u{0}b",
        "@timestamp",
    ]
    .map(str::to_owned)
    .to_vec();
    keys.push("k".repeat(300));
    keys
}

/// The variants of `body` with one value replaced or one key added, each
/// with what was changed: `(description, body)`. A site names the place
/// without array positions, in the event type around it (`web_vital
/// /events/*/value = "x"`), so the fixtures' many alike events are tried
/// once (`new_site` says whether a site is new).
fn mutants(
    kind: Kind,
    body: &[u8],
    mut new_site: impl FnMut(&str) -> bool,
) -> Vec<(String, Vec<u8>)> {
    use serde_json::Value;
    let ndjson = matches!(kind, Kind::ApmV2 | Kind::ApmV3);
    let docs: Vec<Value> = if ndjson {
        String::from_utf8_lossy(body)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    } else {
        vec![serde_json::from_slice(body).unwrap()]
    };
    let write = |docs: &[Value]| -> Vec<u8> {
        if ndjson {
            let mut out = String::new();
            for d in docs {
                out.push_str(&d.to_string());
                out.push('\n');
            }
            out.into_bytes()
        } else {
            docs[0].to_string().into_bytes()
        }
    };
    /// (JSON pointer, site, is an object) of every value.
    fn places(value: &Value, at: &str, site: &str, out: &mut Vec<(String, String, bool)>) {
        out.push((at.to_owned(), site.to_owned(), value.is_object()));
        match value {
            Value::Object(map) => {
                let of_type = map.get("type").and_then(Value::as_str);
                for (k, v) in map {
                    let escaped = k.replace('~', "~0").replace('/', "~1");
                    let site = match of_type {
                        Some(t) => format!("{t} {site}/{k}"),
                        None => format!("{site}/{k}"),
                    };
                    places(v, &format!("{at}/{escaped}"), &site, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    places(v, &format!("{at}/{i}"), &format!("{site}/*"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for (line, doc) in docs.iter().enumerate() {
        let mut at = Vec::new();
        places(doc, "", "", &mut at);
        for (pointer, site, is_object) in at {
            // The body (or line) itself stays an object.
            if !pointer.is_empty() {
                for value in hostile_values() {
                    let what = format!("{pointer} = {value}");
                    if !new_site(&format!("{site} = {value}")) {
                        continue;
                    }
                    let mut docs = docs.clone();
                    *docs[line].pointer_mut(&pointer).unwrap() = value;
                    out.push((format!("line {line} {what}"), write(&docs)));
                }
            }
            if is_object {
                for key in hostile_keys() {
                    let what = format!("{pointer} + {key:?}");
                    if !new_site(&format!("{site} + {key:?}")) {
                        continue;
                    }
                    let mut docs = docs.clone();
                    let target = docs[line].pointer_mut(&pointer).unwrap();
                    target
                        .as_object_mut()
                        .unwrap()
                        .insert(key, Value::from("v"));
                    out.push((format!("line {line} {what}"), write(&docs)));
                }
            }
        }
    }
    out
}

/// Every fixture with one hostile value or key, through its decoder and the
/// chain: whatever the decoder accepts must be a document Elasticsearch
/// indexes, both after the fixture's own documents (which set the dynamic
/// mappings) and before them (so a `labels.x` that is a number once and a
/// string the next time is caught either way round).
#[test]
fn hostile_variants_of_the_fixtures_fit_the_installed_template() {
    let fresh = installed_mapping();
    let mut chain = Chain::new();
    let mut refused: BTreeMap<String, String> = BTreeMap::new();
    let mut tried = 0;
    let mut sites = std::collections::HashSet::new();
    for (name, kind, body) in fixtures() {
        let original = mapping::parse_bulk(&bulk_of(&mut chain, decode(kind, &body).unwrap()));
        let mut after_original = BTreeMap::new();
        let refused_originals =
            mapping::index_documents(&fresh, &mut after_original, &original, &name);
        assert!(refused_originals.is_empty(), "{refused_originals:?}");
        let variants = mutants(kind, &body, |site| sites.insert(format!("{kind:?} {site}")));
        for (what, mutant) in variants {
            let Ok(events) = decode(kind, &mutant) else {
                continue; // refused with a 4xx: the sender is told
            };
            tried += 1;
            let documents = mapping::parse_bulk(&bulk_of(&mut chain, events));
            let mut after = after_original.clone();
            let mut before = BTreeMap::new();
            let mut reasons = mapping::index_documents(&fresh, &mut after, &documents, &name);
            reasons.extend(mapping::index_documents(
                &fresh,
                &mut before,
                &documents,
                &name,
            ));
            reasons.extend(mapping::index_documents(
                &fresh,
                &mut before,
                &original,
                &name,
            ));
            for reason in reasons {
                let reason = reason
                    .split_once(": ")
                    .map_or(reason.clone(), |r| r.1.to_owned());
                refused
                    .entry(format!("{kind:?}: {reason}"))
                    .or_insert_with(|| format!("{name} {what}"));
            }
        }
    }
    assert!(tried > 3_000, "only {tried} variants decoded");
    let report: Vec<String> = refused
        .iter()
        .map(|(reason, example)| format!("{reason}\n    e.g. {example}"))
        .collect();
    assert!(
        refused.is_empty(),
        "{} kinds of refused documents:\n{}",
        refused.len(),
        report.join("\n")
    );
}
