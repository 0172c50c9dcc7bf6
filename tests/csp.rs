//! The `csp` source against the real binary: the fixtures of testdata/csp
//! posted as browsers post them, what reaches the stdout sink, what each bad
//! body gets back, the shared listener with `rum_beacon`, and HTTPS.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::Pipeline;

use reqwest::StatusCode;
use serde_json::{json, Value};

/// Generous: it bounds a wait, it is not a measurement.
const DEADLINE: Duration = Duration::from_secs(20);

/// Starts the binary with `sources` (TOML, each on `127.0.0.1:0` via
/// `{ADDRESS}`) feeding one stdout sink.
fn start(sources: &str, inputs: &[&str]) -> Pipeline {
    let config = format!(
        "stats_interval_secs = 0\n{sources}\n[sinks.out]\ntype = \"stdout\"\ninputs = {inputs:?}\n"
    )
    .replace("{ADDRESS}", "127.0.0.1:0");
    Pipeline::start(&config)
}

/// The stderr line containing `needle`, waiting for it up to `DEADLINE`.
fn wait_stderr(pipeline: &Pipeline, needle: &str) -> String {
    pipeline
        .wait_stderr(|l| l.contains(needle), DEADLINE)
        .unwrap_or_else(|| panic!("no stderr line with `{needle}`: {:?}", pipeline.stderr()))
}

fn fixture_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/csp")
        .join(name)
}

fn fixtures(name: &str) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(fixture_dir(name))
        .expect("fixture dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {name}");
    files
        .into_iter()
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect()
}

fn get<'a>(event: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(event, |v, part| v.get(part))
}

fn get_str<'a>(event: &'a Value, path: &str) -> Option<&'a str> {
    get(event, path).and_then(Value::as_str)
}

const CSP_SOURCE: &str = r#"
[sources.csp]
type = "csp"
address = "{ADDRESS}"
"#;

const HEADER_UA: &str = "Header-UA/1.0 (Café)";

async fn post(
    client: &reqwest::Client,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
) -> reqwest::Response {
    client
        .post(url)
        .header("content-type", content_type)
        // UTF-8 past ASCII, as in-app browsers send it: kept, not dropped.
        .header(
            "user-agent",
            reqwest::header::HeaderValue::from_bytes(HEADER_UA.as_bytes()).unwrap(),
        )
        .body(body)
        .send()
        .await
        .expect("request")
}

/// Kebab-case report-uri key → `csp.*` field. Restated from the issue, not
/// read from the code, so a mapping slip shows.
const LEGACY_KEYS: &[(&str, &str)] = &[
    ("document-uri", "document_uri"),
    ("referrer", "referrer"),
    ("violated-directive", "violated_directive"),
    ("effective-directive", "effective_directive"),
    ("original-policy", "original_policy"),
    ("disposition", "disposition"),
    ("blocked-uri", "blocked_uri"),
    ("line-number", "line_number"),
    ("column-number", "column_number"),
    ("source-file", "source_file"),
    ("status-code", "status_code"),
    ("script-sample", "sample"),
];

const API_KEYS: &[(&str, &str)] = &[
    ("documentURL", "document_uri"),
    ("referrer", "referrer"),
    ("effectiveDirective", "effective_directive"),
    ("originalPolicy", "original_policy"),
    ("disposition", "disposition"),
    ("blockedURL", "blocked_uri"),
    ("lineNumber", "line_number"),
    ("columnNumber", "column_number"),
    ("sourceFile", "source_file"),
    ("statusCode", "status_code"),
    ("sample", "sample"),
];

/// Every field the browser filled appears under its `csp.*` name; `""` and
/// `null` (Chromium's and Firefox's "nothing") appear as absent.
fn assert_csp_fields(event: &Value, report: &Value, keys: &[(&str, &str)], what: &str) {
    for (wire, field) in keys {
        let path = format!("csp.{field}");
        match report.get(*wire) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if s.is_empty() => {
                assert_eq!(get(event, &path), None, "{what}: {wire} was empty")
            }
            Some(value) => assert_eq!(get(event, &path), Some(value), "{what}: {wire}"),
        }
    }
    assert_eq!(get_str(event, "rum.type"), Some("csp_violation"), "{what}");
    assert_eq!(
        get_str(event, "event.dataset"),
        Some("rum.csp_violation"),
        "{what}"
    );
    assert_eq!(get_str(event, "event.kind"), Some("event"), "{what}");
    assert!(
        get_str(event, "csp.effective_directive").is_some(),
        "{what}: effective directive always set"
    );
    assert!(
        get_str(event, "csp.violated_directive").is_some(),
        "{what}: violated directive always set"
    );
    assert_eq!(
        get_str(event, "url.full"),
        get_str(event, "csp.document_uri"),
        "{what}"
    );
    // Private by default: the network part only.
    assert_eq!(get_str(event, "client.ip"), Some("127.0.0.0"), "{what}");
}

#[tokio::test]
async fn legacy_report_uri_fixtures_normalize() {
    let pipeline = start(CSP_SOURCE, &["csp"]);
    let client = reqwest::Client::new();
    for (name, body) in fixtures("report-uri") {
        let response = post(
            &client,
            &pipeline.url("/rum/report-uri"),
            "application/csp-report",
            body.clone(),
        )
        .await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT, "{name}");
        let event = pipeline.next_document(DEADLINE);
        let sent: Value = serde_json::from_slice(&body).unwrap();
        let report = &sent["csp-report"];
        assert_csp_fields(&event, report, LEGACY_KEYS, &name);
        assert_eq!(get_str(&event, "csp.format"), Some("report-uri"), "{name}");
        assert_eq!(
            get_str(&event, "user_agent.original"),
            Some(HEADER_UA),
            "{name}"
        );
        assert_eq!(
            get(&event, "labels.csp_noise"),
            name.contains("noise").then_some(&json!(true)),
            "{name}"
        );
        // Legacy reports carry no age: the event time is the receive time.
        assert_eq!(
            get(&event, "@timestamp"),
            get(&event, "event.ingested"),
            "{name}"
        );
    }
    let line = wait_stderr(&pipeline, "POST /rum/report-uri https://shop.example.com/");
    assert!(line.ends_with("kB"), "{line}");
}

#[tokio::test]
async fn reporting_api_mixed_array_keeps_every_type() {
    let pipeline = start(CSP_SOURCE, &["csp"]);
    let client = reqwest::Client::new();
    let (name, body) = fixtures("reporting-api")
        .into_iter()
        .find(|(n, _)| n.contains("mixed"))
        .expect("mixed fixture");
    let response = post(
        &client,
        &pipeline.url("/rum/reporting-api"),
        "application/reports+json",
        body.clone(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let sent: Vec<Value> = serde_json::from_slice(&body).unwrap();
    let events = pipeline.next_documents(sent.len(), DEADLINE);
    for (report, event) in sent.iter().zip(&events) {
        let what = format!("{name}: {}", report["type"]);
        assert_eq!(
            get_str(event, "user_agent.original"),
            report["user_agent"].as_str(),
            "{what}"
        );
        // @timestamp = receive time − age.
        let at =
            chrono::DateTime::parse_from_rfc3339(get_str(event, "@timestamp").unwrap()).unwrap();
        let ingested =
            chrono::DateTime::parse_from_rfc3339(get_str(event, "event.ingested").unwrap())
                .unwrap();
        assert_eq!(
            (ingested - at).num_milliseconds(),
            report["age"].as_i64().unwrap(),
            "{what}"
        );
        if report["type"] == "csp-violation" {
            assert_csp_fields(event, &report["body"], API_KEYS, &what);
            assert_eq!(get_str(event, "csp.format"), Some("reporting-api"));
        } else {
            assert_eq!(get_str(event, "rum.type"), Some("report"), "{what}");
            assert_eq!(
                get_str(event, "event.dataset"),
                Some("rum.report"),
                "{what}"
            );
            assert_eq!(get(event, "report.type"), Some(&report["type"]), "{what}");
            assert_eq!(get_str(event, "url.full"), report["url"].as_str(), "{what}");
            assert!(get(event, "csp").is_none(), "{what}");
        }
    }
    let deprecation = &events[2];
    assert_eq!(
        get(deprecation, "report.body.line_number"),
        Some(&sent[2]["body"]["lineNumber"])
    );
    assert_eq!(
        get(deprecation, "report.body.source_file"),
        Some(&sent[2]["body"]["sourceFile"])
    );
    assert_eq!(
        get(deprecation, "report.body.anticipated_removal"),
        None,
        "nulls are dropped"
    );
    let nel = &events[3];
    assert_eq!(get(nel, "report.body.type"), Some(&sent[3]["body"]["type"]));
    assert_eq!(
        get(nel, "report.body.elapsed_time"),
        Some(&sent[3]["body"]["elapsed_time"])
    );

    let metrics = client
        .get(pipeline.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (report_type, count) in [
        ("csp-violation", 2),
        ("deprecation", 1),
        ("network-error", 1),
        ("crash", 0),
    ] {
        let series = metrics
            .lines()
            .find(|l| {
                l.starts_with("csp_reports_total{")
                    && l.contains(&format!("report_type=\"{report_type}\""))
            })
            .unwrap_or_else(|| panic!("no csp_reports_total for {report_type}:\n{metrics}"));
        assert!(series.ends_with(&format!(" {count}")), "{series}");
    }
}

#[tokio::test]
async fn noise_is_marked_or_dropped_and_counted() {
    let (_, body) = fixtures("reporting-api")
        .into_iter()
        .find(|(n, _)| n.contains("noise"))
        .expect("noise fixture");
    let sent: Vec<Value> = serde_json::from_slice(&body).unwrap();
    let client = reqwest::Client::new();

    let marking = start(CSP_SOURCE, &["csp"]);
    let response = post(
        &client,
        &marking.url("/rum/reporting-api"),
        "application/reports+json",
        body.clone(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let noise: Vec<bool> = marking
        .next_documents(sent.len(), DEADLINE)
        .iter()
        .map(|e| get(e, "labels.csp_noise") == Some(&json!(true)))
        .collect();
    // An extension scheme, a default injector host, and a real third party.
    assert_eq!(noise, [true, true, false]);

    let dropping = start(&format!("{CSP_SOURCE}drop_noise = true\n"), &["csp"]);
    let response = post(
        &client,
        &dropping.url("/rum/reporting-api"),
        "application/reports+json",
        body,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    let kept = dropping.next_document(DEADLINE);
    assert_eq!(
        get(&kept, "csp.blocked_uri"),
        Some(&sent[2]["body"]["blockedURL"])
    );
    let metrics = client
        .get(dropping.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let discarded = metrics
        .lines()
        .find(|l| {
            l.starts_with("component_discarded_events_total{")
                && l.contains("component_id=\"csp\"")
                && l.contains("intentional=\"true\"")
        })
        .unwrap_or_else(|| panic!("no discarded counter:\n{metrics}"));
    assert!(discarded.ends_with(" 2"), "{discarded}");
}

/// Sends only the head of a POST and returns the status line of the answer.
fn raw_status_line(url: &str, headers: &str) -> String {
    use std::io::{Read, Write};
    let url = reqwest::Url::parse(url).unwrap();
    let mut stream =
        std::net::TcpStream::connect((url.host_str().unwrap(), url.port().unwrap())).unwrap();
    stream.set_read_timeout(Some(DEADLINE)).unwrap();
    write!(
        stream,
        "POST {} HTTP/1.1\r\nhost: {}\r\n{headers}\r\n\r\n",
        url.path(),
        url.authority()
    )
    .unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    let start = Instant::now();
    while !answer.windows(2).any(|w| w == b"\r\n") && start.elapsed() < DEADLINE {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Posts a well-formed marker after each bad body: the marker being the next
/// event proves the bad request wrote nothing.
#[tokio::test]
async fn malformed_bodies_get_a_status_and_write_nothing() {
    let pipeline = start(
        &format!("{CSP_SOURCE}max_reports_per_request = 50\nmax_body_bytes = 4194304\n"),
        &["csp"],
    );
    let client = reqwest::Client::new();
    let api = pipeline.url("/rum/reporting-api");
    let mut cases: Vec<(String, String, Vec<u8>, StatusCode)> = fixtures("malformed")
        .into_iter()
        .map(|(name, body)| (name, api.clone(), body, StatusCode::BAD_REQUEST))
        .collect();
    let report = json!({"type": "deprecation", "body": {"id": "x", "message": "m".repeat(100)}});
    // Over max_reports_per_request, under the body limit: refused by count.
    cases.push((
        "51 reports".into(),
        api.clone(),
        serde_json::to_vec(&vec![report.clone(); 51]).unwrap(),
        StatusCode::PAYLOAD_TOO_LARGE,
    ));
    // A 10 MB array announced by Content-Length: refused before a byte of it is read.
    let huge = serde_json::to_vec(&vec![report; 70_000]).unwrap();
    assert!(huge.len() > 10_000_000);
    let status_line = raw_status_line(
        &api,
        &format!(
            "content-type: application/reports+json\r\ncontent-length: {}",
            huge.len()
        ),
    );
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    let legacy = pipeline.url("/rum/report-uri");
    for (name, body) in [
        ("legacy array", b"[]".to_vec()),
        ("legacy without csp-report", br#"{"report":{}}"#.to_vec()),
        (
            "legacy wrong type",
            br#"{"csp-report":{"line-number":"12"}}"#.to_vec(),
        ),
        (
            "legacy invalid utf-8",
            b"{\"csp-report\":{\"blocked-uri\":\"\xff\"}}".to_vec(),
        ),
    ] {
        cases.push((name.into(), legacy.clone(), body, StatusCode::BAD_REQUEST));
    }
    let marker = br#"[{"type":"intervention","body":{"id":"marker"}}]"#.to_vec();
    for (name, url, body, status) in cases {
        let response = post(&client, &url, "application/json", body).await;
        assert_eq!(response.status(), status, "{name}");
        let message = response.text().await.unwrap();
        assert!(!message.trim().is_empty(), "{name}: the client is told why");
        let response = post(&client, &api, "application/reports+json", marker.clone()).await;
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let next = pipeline.next_document(DEADLINE);
        assert_eq!(
            get_str(&next, "report.body.id"),
            Some("marker"),
            "{name} wrote an event: {next}"
        );
    }
    let metrics = client
        .get(pipeline.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for error_type in [
        "invalid_report",
        "invalid_utf8",
        "invalid_json",
        "too_many_reports",
        "body_too_large",
    ] {
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("component_errors_total{")
                    && l.contains("component_id=\"csp\"")
                    && l.contains(&format!("error_type=\"{error_type}\""))),
            "{error_type} not counted:\n{metrics}"
        );
    }
}

#[tokio::test]
async fn content_types_methods_and_cors() {
    let pipeline = start(
        &format!("{CSP_SOURCE}allowed_origins = [\"https://shop.example.com\"]\n"),
        &["csp"],
    );
    let client = reqwest::Client::new();
    let api = pipeline.url("/rum/reporting-api");
    let response = post(&client, &api, "text/plain", b"[]".to_vec()).await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let response = post(
        &client,
        &pipeline.url("/rum/report-uri"),
        "application/reports+json",
        b"[]".to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let response = client.get(&api).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(response.headers()["allow"], "POST, OPTIONS");

    // Cross-origin application/reports+json always preflights.
    let preflight = |origin: &'static str| {
        client
            .request(reqwest::Method::OPTIONS, &api)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let allowed = preflight("https://shop.example.com").await.unwrap();
    assert_eq!(allowed.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert!(allowed.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert!(allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("content-type"));
    let denied = preflight("https://evil.example.net").await.unwrap();
    assert_eq!(denied.status(), StatusCode::FORBIDDEN);
    let response = client
        .post(&api)
        .header("origin", "https://evil.example.net")
        .header("content-type", "application/reports+json")
        .body(r#"[{"type":"deprecation","body":{}}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let response = client
        .post(&api)
        .header("origin", "https://shop.example.com")
        .header("content-type", "application/reports+json")
        .body(r#"[{"type":"deprecation","body":{"id":"ok"}}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://shop.example.com"
    );
    assert_eq!(
        get_str(&pipeline.next_document(DEADLINE), "report.body.id"),
        Some("ok"),
        "only the allowed origin's report"
    );
}

/// A page from another origin is refused for its origin (docs/csp.md:
/// 403), even when its Content-Type is wrong too, and counted once.
#[tokio::test]
async fn a_foreign_origin_gets_403_whatever_its_content_type() {
    let pipeline = start(
        &format!("{CSP_SOURCE}allowed_origins = [\"https://shop.example.com\"]\n"),
        &["csp"],
    );
    let response = reqwest::Client::new()
        .post(pipeline.url("/rum/reporting-api"))
        .header("origin", "https://evil.example.net")
        .header("content-type", "text/plain")
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    for (error_type, count) in [("origin_not_allowed", 1.0), ("unsupported_media_type", 0.0)] {
        let label = format!("error_type=\"{error_type}\"");
        let counted = pipeline.metric("component_errors_total", &[&label]).await;
        assert_eq!(counted, count, "{error_type}");
    }
}

#[tokio::test]
async fn shares_one_port_with_rum_beacon_and_routes_can_be_switched_off() {
    let sources = r#"
[sources.beacons]
type = "rum_beacon"
address = "{ADDRESS}"

[sources.csp]
type = "csp"
address = "{ADDRESS}"
report_uri = false
reporting_api_path = "/reports"
"#;
    let pipeline = start(sources, &["beacons", "csp"]);
    let client = reqwest::Client::new();
    let beacon = json!({"v": 1, "events": [{"type": "action", "name": "beacon-marker"}]});
    let response = client
        .post(pipeline.url("/rum"))
        .json(&beacon)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get_str(&pipeline.next_document(DEADLINE), "rum.action.name"),
        Some("beacon-marker")
    );
    let response = post(
        &client,
        &pipeline.url("/reports"),
        "application/reports+json",
        br#"[{"type":"crash","body":{"reason":"oom"}}]"#.to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get_str(&pipeline.next_document(DEADLINE), "report.body.reason"),
        Some("oom")
    );
    let legacy = fixtures("report-uri").remove(0).1;
    let response = post(
        &client,
        &pipeline.url("/rum/report-uri"),
        "application/csp-report",
        legacy,
    )
    .await;
    assert_eq!(
        response.status(),
        StatusCode::NOT_FOUND,
        "switched-off route"
    );
}

/// A CA and a certificate for 127.0.0.1 signed by it, as PEM.
fn test_ca(dir: &Path) -> (String, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "rum-pipeline test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    let crt = dir.join("server.crt");
    let key = dir.join("server.key");
    std::fs::write(&crt, leaf_cert.pem()).unwrap();
    std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
    (ca_cert.pem(), crt, key)
}

#[tokio::test]
async fn serves_https_with_tls_crt_and_key() {
    let certs = tempfile::tempdir().unwrap();
    let (ca_pem, crt, key) = test_ca(certs.path());
    let sources = format!(
        "{CSP_SOURCE}tls = {{ crt_file = {:?}, key_file = {:?} }}\n",
        crt.display().to_string(),
        key.display().to_string()
    );
    let pipeline = start(&sources, &["csp"]);
    assert!(
        pipeline.base.starts_with("https://127.0.0.1:"),
        "{}",
        pipeline.base
    );
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca_pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let body = fixtures("reporting-api")
        .into_iter()
        .find(|(n, _)| n.contains("mixed"))
        .unwrap()
        .1;
    let response = post(
        &client,
        &pipeline.url("/rum/reporting-api"),
        "application/reports+json",
        body,
    )
    .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get_str(&pipeline.next_document(DEADLINE), "csp.format"),
        Some("reporting-api")
    );
    let health = client.get(pipeline.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    // A client that does not trust the CA is refused, and plain HTTP gets no answer.
    let untrusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    assert!(untrusting
        .get(pipeline.url("/health"))
        .send()
        .await
        .is_err());
    let plain = pipeline.url("/health").replacen("https://", "http://", 1);
    assert!(reqwest::Client::new()
        .get(plain)
        .send()
        .await
        .map(|r| r.status() != StatusCode::OK)
        .unwrap_or(true));
}

#[test]
fn validate_names_bad_tls_files_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.toml");
    std::fs::write(
        &path,
        r#"
[sources.csp]
type = "csp"
address = "127.0.0.1:0"
report_uri_path = "no-slash"
tls = { crt_file = "/nonexistent/server.crt", key_file = "/nonexistent/server.key" }

[sinks.out]
type = "stdout"
inputs = ["csp"]
"#,
    )
    .unwrap();
    let output = common::one_shot(["validate", "--config"]).arg(&path).run();
    assert!(!output.success());
    let stderr = output.stderr;
    for key in ["report_uri_path", "tls.crt_file", "tls.key_file"] {
        assert!(
            stderr.contains(&format!("key `{key}`")),
            "{key} in {stderr}"
        );
    }
}
