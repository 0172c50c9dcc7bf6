//! Fixed-iteration driver for instruction counts of the SDK decoders
//! (valgrind --tool=callgrind), the repeatable twin of `benches/sdk_decode.rs`:
//!   cargo build --release --example sdk_instructions
//!   valgrind --tool=callgrind target/release/examples/sdk_instructions faro 1000
//! Modes: `beacon` (the realistic 10-event rum_beacon body, the baseline),
//! `beacon_error` (a rum_beacon body with one error, the same request shape
//! as `apm_error`), `faro` (the Faro SDK's four captured bodies, 22 events),
//! `faro_equivalent` (the beacon's ten events as Faro would send them),
//! `apm_v3`, `apm_v2` (one page load, 9 events), `apm_error` (one error),
//! `apm_v3_all`, `apm_v2_all` (every body the agent sent in the browser test),
//! `web_vitals` (`testdata/sdk/web-vitals/fetch-0.json`, 5 metrics), and the
//! beacon's events as each SDK would send them, to compare protocols on the
//! same events: `apm_equivalent` (v3, the agent's shapes: a page load with
//! its resources, a click with its fetch, the page exit's INP, the error;
//! 11 events) and `web_vitals_equivalent` (its four vitals as `Metric`
//! objects, without PerformanceEntry objects, which the beacon has none of);
//! `beacon_resources` and `apm_resources`: one page load with 40 resources
//! (the beacon's and `apm_equivalent`'s page load, their two resources in
//! turn), each protocol weighed by the events a page sends most of.
//! Read instructions per event as (Ir of N=1000 - Ir of N=0) / (1000 × events);
//! `bench/instructions.sh sdk` does that for every mode. With `SDK_DUMP=1`
//! the example prints the documents of one round (NDJSON), to compare the
//! output of two builds. With `SDK_FLOOR=1` the counted rounds only read and
//! check each body as JSON (each line of NDJSON) and keep nothing: the floor
//! no decoder of that body can go under.
//!
//! `wide [N]` (not an instruction count): the time each decoder takes for a
//! crafted body whose one object holds N keys (default 70,000: about 0.9 MB,
//! under the 1 MiB `max_body_bytes`). Repeated keys used to be found by
//! checking each key against all before it, seconds of CPU for one request.

use rum_pipeline::event::Event;
use rum_pipeline::privacy::ClientIpMode;
use rum_pipeline::sources::decode_error::DecodeError;
use rum_pipeline::sources::{
    beacon_decoder, elastic_apm_decoder, faro_decoder, web_vitals_decoder,
};

const UA: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36";

/// The User-Agent header of the browser that sent the Faro captures
/// (`testdata/sdk/faro/meta.json`). Faro repeats it in `meta.browser`, and
/// the decoder keeps that copy only when it differs from the header: a page's
/// SDK and its requests come from one browser, so the bench sends the same.
fn faro_capture_user_agent() -> String {
    let meta: serde_json::Value =
        serde_json::from_slice(&read("testdata/sdk/faro/meta.json")).expect("meta.json");
    meta["user_agent"]
        .as_str()
        .expect("meta.json user_agent")
        .to_owned()
}
const RECEIVED_MS: i64 = 1_763_700_000_100;

#[global_allocator]
static ALLOCATOR: rum_pipeline::allocator::MiMalloc = rum_pipeline::allocator::MiMalloc;

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{path} (run from the repo root): {e}"))
}

/// Runs `decode` over `bodies` `n` times; returns the events of one round
/// and the bytes of their documents (what each SDK's events carry).
fn run(n: usize, bodies: &[Vec<u8>], decode: impl Fn(&[u8]) -> Vec<Event>) -> (usize, usize) {
    let mut events = 0;
    let mut document = Vec::new();
    for body in bodies {
        for event in decode(body) {
            events += 1;
            event.write_json(&mut document);
            document.push(b'\n');
        }
    }
    // `SDK_DUMP=1`: the documents on stdout, to compare two builds' output.
    if std::env::var_os("SDK_DUMP").is_some() {
        use std::io::Write;
        std::io::stdout().write_all(&document).expect("stdout");
    }
    // `SDK_FLOOR=1`: the rounds only read and check each body (each line of
    // NDJSON), keeping nothing: the floor under the decoder's cost.
    let floor = std::env::var_os("SDK_FLOOR").is_some();
    // Each line of a body (`memchr` finds line ends as the APM decoder
    // does; a body of one JSON value is one line), read and checked.
    let read_lines = |body: &[u8]| {
        let mut start = 0;
        let mut all_json = true;
        for end in memchr::memchr_iter(b'\n', body).chain([body.len()]) {
            let line = &body[start..end];
            start = end + 1;
            if !line.is_empty() {
                all_json &= rum_pipeline::sources::read_json_only(std::hint::black_box(line));
            }
        }
        all_json
    };
    if floor {
        // A body that does not read (a pretty-printed one, split at its
        // lines) would give a floor that means nothing.
        assert!(
            bodies.iter().all(|b| read_lines(b)),
            "a body is not JSON lines"
        );
    }
    for _ in 0..n {
        for body in bodies {
            if floor {
                std::hint::black_box(read_lines(body));
            } else {
                std::hint::black_box(decode(std::hint::black_box(body)));
            }
        }
    }
    (events, document.len())
}

/// Every decoder with the limits and request facts of these runs.
struct Decoders {
    ip: std::net::IpAddr,
    beacon: beacon_decoder::BeaconLimits,
    faro: faro_decoder::FaroLimits,
    faro_user_agent: String,
    apm: elastic_apm_decoder::ApmLimits,
    web_vitals: web_vitals_decoder::MetricLimits,
}

impl Decoders {
    fn new(max_event_bytes: usize) -> Self {
        Decoders {
            ip: "203.0.113.7".parse().expect("ip"),
            beacon: beacon_decoder::BeaconLimits {
                client_ip: ClientIpMode::Full,
                ..Default::default()
            },
            faro: faro_decoder::FaroLimits {
                max_items: 500,
                max_string_bytes: 16 * 1024,
                max_depth: 16,
                max_event_age_ms: i64::MAX,
                max_context_bytes: 64 * 1024,
                client_ip: ClientIpMode::Full,
            },
            faro_user_agent: faro_capture_user_agent(),
            apm: elastic_apm_decoder::ApmLimits {
                max_events: 1000,
                max_event_bytes,
                max_string_bytes: 16 * 1024,
                max_depth: 16,
                keep_breakdown: false,
                max_context_bytes: 64 * 1024,
                client_ip: ClientIpMode::Full,
                label_names: std::sync::Arc::new(elastic_apm_decoder::LabelNames::first_seen(
                    rum_pipeline::sources::elastic_apm_rum::DEFAULT_MAX_LABEL_NAMES,
                )),
            },
            web_vitals: web_vitals_decoder::MetricLimits {
                max_metrics: 50,
                max_string_bytes: 16 * 1024,
                max_depth: 16,
                keep_entries: false,
                client_ip: ClientIpMode::Full,
            },
        }
    }

    fn beacon(&self, body: &[u8]) -> Result<Vec<Event>, DecodeError> {
        let facts = beacon_decoder::RequestFacts {
            received_at_ms: RECEIVED_MS,
            client_ip: self.ip,
            user_agent: Some(UA),
            client_hints: vec![],
        };
        beacon_decoder::decode(body, &facts, &self.beacon).map(|d| d.events)
    }

    fn faro(&self, body: &[u8]) -> Result<Vec<Event>, DecodeError> {
        let facts = faro_decoder::RequestFacts {
            received_at_ms: RECEIVED_MS,
            client_ip: self.ip,
            user_agent: Some(&self.faro_user_agent),
            session_header: None,
        };
        faro_decoder::decode(body, &facts, &self.faro).map(|d| d.events)
    }

    fn apm(
        &self,
        body: &[u8],
        version: elastic_apm_decoder::ApiVersion,
    ) -> Result<Vec<Event>, DecodeError> {
        let facts = elastic_apm_decoder::RequestFacts {
            received_at_ms: RECEIVED_MS,
            client_ip: self.ip,
            user_agent: Some(UA),
            version,
        };
        elastic_apm_decoder::decode(body, &facts, &self.apm).map(|d| d.events)
    }

    fn web_vitals(&self, body: &[u8]) -> Result<Vec<Event>, DecodeError> {
        let facts = web_vitals_decoder::RequestFacts {
            received_at_ms: RECEIVED_MS,
            client_ip: self.ip,
            user_agent: Some(UA),
            referer: Some("https://shop.example.com/"),
        };
        web_vitals_decoder::decode(body, &facts, &self.web_vitals).map(|d| d.events)
    }
}

/// `wide`: one crafted body per decoder, timed.
fn wide(keys: usize) {
    let pairs: String = (0..keys)
        .map(|i| format!("\"k{i}\":\"v\""))
        .collect::<Vec<_>>()
        .join(",");
    // A line this long is over APM's 300 KiB default: allowed here, to
    // time the decoder rather than the size check.
    let decoders = Decoders::new(usize::MAX);
    let time = |name: &str, body: String, decode: &dyn Fn(&[u8]) -> bool| {
        let start = std::time::Instant::now();
        let ok = decode(body.as_bytes());
        eprintln!(
            "{name}: {} bytes, decoded={ok}, {:?}",
            body.len(),
            start.elapsed()
        );
    };
    time(
        "rum_beacon",
        format!(r#"{{"v":1,"events":[{{"type":"custom","ts":1,{pairs}}}]}}"#),
        &|b| decoders.beacon(b).is_ok(),
    );
    time(
        "web_vitals",
        format!(r#"{{"name":"LCP","value":1,{pairs}}}"#),
        &|b| decoders.web_vitals(b).is_ok(),
    );
    time(
        "faro",
        format!(r#"{{"meta":{{}},"events":[{{"name":"x","attributes":{{{pairs}}}}}]}}"#),
        &|b| decoders.faro(b).is_ok(),
    );
    time(
        "elastic_apm_rum",
        format!(
            "{{\"metadata\":{{\"service\":{{\"name\":\"x\"}}}}}}\n{{\"error\":{{\"id\":\"1\",{pairs}}}}}\n"
        ),
        &|b| {
            decoders
                .apm(b, elastic_apm_decoder::ApiVersion::V2)
                .is_ok()
        },
    );
}

/// How many resources the `*_resources` page loads carry: a page's
/// resources are most of the events a RUM backend takes, so these modes
/// weigh each protocol by its resource events.
const RESOURCES: usize = 40;

/// The elements of the JSON array whose `[` is at `open` in `text`, as
/// sent, and the index past its `]`. The bodies are built from the
/// fixtures' text, not through `serde_json::Value`, which would sort each
/// object's keys (the beacon decoder reads `type` first).
fn array_items(text: &str, open: usize) -> (Vec<&str>, usize) {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    let (mut items, mut start) = (Vec::new(), open + 1);
    for (i, b) in text.bytes().enumerate().skip(open) {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            _ if in_string => {}
            b'[' | b'{' => depth += 1,
            b']' | b'}' if depth == 1 => {
                items.push(text[start..i].trim());
                return (items, i + 1);
            }
            b']' | b'}' => depth -= 1,
            b',' if depth == 1 => {
                items.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    panic!("no end to the array at {open}")
}

/// Where the `[` of the first array that is `key`'s value is.
fn array_at(text: &str, key: &str) -> usize {
    text.find(&format!("{key}[")).expect("key") + key.len()
}

/// `text` with the first array that is `key`'s value replaced by `items`.
fn replace_array(text: &str, key: &str, items: &[String]) -> String {
    let open = array_at(text, key);
    let (_, end) = array_items(text, open);
    format!("{}[{}]{}", &text[..open], items.join(","), &text[end..])
}

/// The realistic beacon's page view and vitals, then `RESOURCES` of its two
/// resources in turn.
fn resource_heavy_beacon() -> Vec<u8> {
    let text = String::from_utf8(read("testdata/beacons/realistic-10-events.json")).expect("utf-8");
    let key = "\"events\": ";
    let (events, _) = array_items(&text, array_at(&text, key));
    let items: Vec<String> = events[..4]
        .iter()
        .map(|e| e.to_string())
        .chain((0..RESOURCES).map(|i| events[4 + i % 2].to_string()))
        .collect();
    replace_array(&text, key, &items).into_bytes()
}

/// The same page load as the agent sends it (`apm_equivalent`'s metadata
/// and page-load transaction), with `RESOURCES` of its two resource spans
/// in turn, each with an id of its own.
fn resource_heavy_apm() -> Vec<u8> {
    let text = String::from_utf8(read("testdata/sdk-equivalent/elastic-apm-rum-v3.ndjson"))
        .expect("utf-8");
    let mut lines = text.lines();
    let metadata = lines.next().expect("metadata");
    let page_load = lines.next().expect("page load");
    let key = "\"y\":";
    let (spans, _) = array_items(page_load, array_at(page_load, key));
    let items: Vec<String> = (0..RESOURCES)
        .map(|i| {
            // Each span starts with its id: `{"id":"8a2b3c4d5e6f7081",`.
            let span = spans[i % 2];
            format!("{{\"id\":\"{i:016x}\"{}", &span[24..])
        })
        .collect();
    let page_load = replace_array(page_load, key, &items).replace(
        "\"yc\":{\"sd\":2}",
        &format!("\"yc\":{{\"sd\":{RESOURCES}}}"),
    );
    format!("{metadata}\n{page_load}\n").into_bytes()
}

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "faro".into());
    let n: Option<usize> = std::env::args().nth(2).and_then(|s| s.parse().ok());
    if mode == "wide" {
        return wide(n.unwrap_or(70_000));
    }
    let n = n.unwrap_or(1000);
    let decoders = Decoders::new(300 * 1024);
    let events = match mode.as_str() {
        "beacon" | "beacon_error" => {
            let body = if mode == "beacon" {
                read("testdata/beacons/realistic-10-events.json")
            } else {
                br#"{"v":1,"app":{"name":"shop","version":"1.4.2","env":"production"},"session":{"id":"0f8fad5b-d9cb-469f-a165-70867728950e"},"view":{"id":"7c9e6679-v1","url":"https://shop.example.com/product/42?ref=home","referrer":"https://www.google.com/"},"sent_at":1763700000000,"events":[{"type":"error","ts":1763699999900,"message":"Uncaught TypeError: Cannot read properties of undefined (reading 'price')","name":"TypeError","stack":"TypeError: Cannot read properties of undefined\n    at renderPrice (https://shop.example.com/?v=3:26:42)\n    at onBoom (https://shop.example.com/?v=3:29:3)","count":1}]}"#.to_vec()
            };
            run(n, &[body], |b| decoders.beacon(b).expect("decodes"))
        }
        "faro" | "faro_equivalent" => {
            let bodies: Vec<Vec<u8>> = if mode == "faro" {
                (0..4)
                    .map(|i| read(&format!("testdata/sdk/faro/body-{i}.json")))
                    .collect()
            } else {
                vec![read("testdata/sdk/faro/beacon-equivalent.json")]
            };
            run(n, &bodies, |b| decoders.faro(b).expect("decodes"))
        }
        "apm_equivalent" => {
            let body = read("testdata/sdk-equivalent/elastic-apm-rum-v3.ndjson");
            let version = elastic_apm_decoder::ApiVersion::V3;
            run(n, &[body], |b| decoders.apm(b, version).expect("decodes"))
        }
        "beacon_resources" => {
            let body = resource_heavy_beacon();
            run(n, &[body], |b| decoders.beacon(b).expect("decodes"))
        }
        "apm_resources" => {
            let body = resource_heavy_apm();
            let version = elastic_apm_decoder::ApiVersion::V3;
            run(n, &[body], |b| decoders.apm(b, version).expect("decodes"))
        }
        "web_vitals_equivalent" => {
            let body = read("testdata/sdk-equivalent/web-vitals.json");
            run(n, &[body], |b| decoders.web_vitals(b).expect("decodes"))
        }
        "apm_v3" | "apm_v2" | "apm_error" | "apm_v3_all" | "apm_v2_all" => {
            let (files, version) = match mode.as_str() {
                "apm_v3" => (vec![1], elastic_apm_decoder::ApiVersion::V3),
                "apm_v2" => (vec![1], elastic_apm_decoder::ApiVersion::V2),
                "apm_error" => (vec![3], elastic_apm_decoder::ApiVersion::V3),
                // Every body the agent sent in the browser test.
                "apm_v3_all" => ((0..7).collect(), elastic_apm_decoder::ApiVersion::V3),
                _ => ((0..7).collect(), elastic_apm_decoder::ApiVersion::V2),
            };
            let prefix = match version {
                elastic_apm_decoder::ApiVersion::V3 => "v3",
                elastic_apm_decoder::ApiVersion::V2 => "v2",
            };
            let bodies: Vec<Vec<u8>> = files
                .iter()
                .map(|i| read(&format!("testdata/sdk/elastic-apm-rum/{prefix}-{i}.ndjson")))
                .collect();
            run(n, &bodies, |b| decoders.apm(b, version).expect("decodes"))
        }
        "web_vitals" => {
            let body = read("testdata/sdk/web-vitals/fetch-0.json");
            run(n, &[body], |b| decoders.web_vitals(b).expect("decodes"))
        }
        other => panic!("unknown mode {other}"),
    };
    eprintln!("events per round: {}", events.0);
    eprintln!("document bytes per round: {}", events.1);
}
