//! The pipeline runtime through the real binary: beacons in, documents out,
//! every kind of bad input refused with its status and counter, backpressure
//! with bounded memory, and a clean drain on SIGTERM.

mod common;

use std::io::Write;
use std::time::Duration;

use common::{beacon, client, metric_in, validate, Pipeline, Stdout};
use futures::StreamExt;
use serde_json::{json, Value};

const DEV: &str = r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
allowed_origins = ["https://shop.example.com"]
max_body_bytes = 100000
max_events_per_beacon = 20
max_string_bytes = 2000
max_json_depth = 8

[sinks.out]
type = "stdout"
inputs = ["beacons"]
"#;

/// `rum_beacon → stdout` with the source's wait for room and the sink's
/// buffer size given: the pipeline of the tests that fill the sink.
fn beacons_to_stdout(send_timeout_ms: u64, buffer_events: usize) -> String {
    format!(
        r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
send_timeout_ms = {send_timeout_ms}
access_log = false
[sinks.out]
type = "stdout"
inputs = ["beacons"]
buffer.max_events = {buffer_events}
"#
    )
}

async fn post(
    p: &Pipeline,
    body: impl Into<reqwest::Body>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client().post(p.url("/rum")).body(body);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    request.send().await.expect("POST /rum")
}

#[tokio::test]
async fn a_beacon_with_three_events_gives_three_documents() {
    let p = Pipeline::start(DEV);
    let now = chrono::Utc::now().timestamp_millis();
    // The browser's clock is 1 hour behind; its events happened 3 s, 2 s and 0 s before sending.
    let skew = -3_600_000;
    let sent_at = now + skew;
    let body = json!({
        "v": 1,
        "app": {"name": "shop", "version": "1.4.2", "env": "production"},
        "session": {"id": "sess-1"},
        "view": {"id": "view-1", "url": "https://shop.example.com/cart?step=2", "referrer": "https://www.google.com/", "title": "Cart"},
        "sent_at": sent_at,
        "events": [
            {"type": "web_vital", "ts": sent_at - 3000, "name": "LCP", "value": 2100.5, "rating": "needs-improvement"},
            {"type": "error", "ts": sent_at - 2000, "message": "x is undefined", "name": "TypeError", "stack": "at f (app.js:1:2)"},
            {"type": "action", "ts": sent_at, "kind": "click", "target": "button#pay"}
        ]
    });
    let response = post(
        &p,
        body.to_string(),
        &[
            ("content-type", "text/plain;charset=UTF-8"),
            ("user-agent", "Mozilla/5.0 Test"),
        ],
    )
    .await;
    assert_eq!(response.status(), 204);
    let docs = p.wait_documents(3, Duration::from_secs(10));
    assert_eq!(docs.len(), 3);
    for (seq, doc) in docs.iter().enumerate() {
        assert_eq!(
            doc["service"],
            json!({"name": "shop", "version": "1.4.2", "environment": "production"})
        );
        assert_eq!(doc["session"]["id"], "sess-1");
        assert_eq!(doc["view"]["id"], "view-1");
        assert_eq!(doc["url"]["full"], "https://shop.example.com/cart?step=2");
        assert_eq!(doc["url"]["domain"], "shop.example.com");
        assert_eq!(doc["url"]["path"], "/cart");
        assert_eq!(
            doc["http"]["request"]["referrer"],
            "https://www.google.com/"
        );
        assert_eq!(doc["user_agent"]["original"], "Mozilla/5.0 Test");
        // Private by default: the network part only (IPv4 /24).
        assert_eq!(doc["client"]["ip"], "127.0.0.0");
        assert_eq!(doc["event"]["kind"], "event");
        assert_eq!(doc["rum"]["seq"], seq);
        // Skew-corrected: the event sits as far before ingestion as it sat before sent_at.
        let at = parse_ms(&doc["@timestamp"]);
        let ingested = parse_ms(&doc["event"]["ingested"]);
        let expected_gap = [3000, 2000, 0][seq];
        assert!(
            (ingested - at - expected_gap).abs() <= 5,
            "doc {seq}: {at} vs {ingested}"
        );
    }
    assert_eq!(docs[0]["rum"]["type"], "web_vital");
    assert_eq!(docs[0]["event"]["dataset"], "rum.web_vital");
    assert_eq!(docs[0]["rum"]["vital"]["value"], 2100.5);
    assert_eq!(docs[1]["error"]["type"], "TypeError");
    assert_eq!(docs[1]["error"]["stack_trace"], "at f (app.js:1:2)");
    assert_eq!(docs[2]["rum"]["action"]["target"], "button#pay");
    let received = p
        .wait_metric(
            "component_received_events_total",
            &["component_id=\"beacons\""],
            3.0,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(received, 3.0);
    let sent = p
        .wait_metric(
            "component_sent_events_total",
            &["component_id=\"out\""],
            3.0,
            Duration::from_secs(30),
        )
        .await;
    assert_eq!(sent, 3.0);
    // The access log line names the page and the size.
    assert!(p
        .wait_stderr(
            |l| l.contains("POST /rum https://shop.example.com/cart ") && l.ends_with("kB"),
            Duration::from_secs(30)
        )
        .is_some());
}

fn parse_ms(v: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(v.as_str().expect("timestamp string"))
        .expect("RFC 3339")
        .timestamp_millis()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn bad_input_gets_its_status_and_counter_and_nothing_else_breaks() {
    let p = Pipeline::start(DEV);
    let good = beacon("good", 2).to_string();
    let deep = format!(
        "{{\"v\":1,\"events\":[{{\"type\":\"custom\",\"data\":{}1{}}}]}}",
        "[".repeat(20),
        "]".repeat(20)
    );
    let many = json!({"v": 1, "events": vec![json!({"type": "action"}); 21]}).to_string();
    let long =
        json!({"v": 1, "events": [{"type": "error", "message": "x".repeat(3000)}]}).to_string();
    let mut invalid_utf8 = br#"{"v":1,"events":[{"type":"error","message":""#.to_vec();
    invalid_utf8.extend_from_slice(b"\xff\xfe");
    invalid_utf8.extend_from_slice(br#""}]}"#);
    let bomb = gzip(&vec![b' '; 50_000_000]);
    assert!(
        bomb.len() < 100_000,
        "the bomb must pass the wire limit: {}",
        bomb.len()
    );

    struct Case {
        name: &'static str,
        body: Vec<u8>,
        headers: Vec<(&'static str, &'static str)>,
        status: u16,
        error_type: &'static str,
    }
    let cases = vec![
        Case {
            name: "too large",
            body: vec![b' '; 100_001],
            headers: vec![],
            status: 413,
            error_type: "body_too_large",
        },
        Case {
            name: "gzip bomb",
            body: bomb,
            headers: vec![("content-encoding", "gzip")],
            status: 413,
            error_type: "body_too_large",
        },
        Case {
            name: "corrupt gzip",
            body: b"nope".to_vec(),
            headers: vec![("content-encoding", "gzip")],
            status: 400,
            error_type: "invalid_compression",
        },
        Case {
            name: "unknown encoding",
            body: good.clone().into_bytes(),
            headers: vec![("content-encoding", "br")],
            status: 415,
            error_type: "unsupported_content_encoding",
        },
        Case {
            name: "malformed json",
            body: b"{\"v\":1,\"events\":[}".to_vec(),
            headers: vec![],
            status: 400,
            error_type: "invalid_json",
        },
        Case {
            name: "truncated json",
            body: good.as_bytes()[..good.len() / 2].to_vec(),
            headers: vec![],
            status: 400,
            error_type: "invalid_json",
        },
        Case {
            name: "invalid utf-8",
            body: invalid_utf8,
            headers: vec![],
            status: 400,
            error_type: "invalid_json",
        },
        Case {
            name: "wrong content type",
            body: good.clone().into_bytes(),
            headers: vec![("content-type", "application/x-www-form-urlencoded")],
            status: 415,
            error_type: "unsupported_media_type",
        },
        Case {
            name: "deep nesting",
            body: deep.into_bytes(),
            headers: vec![],
            status: 400,
            error_type: "too_deep",
        },
        Case {
            name: "too many events",
            body: many.into_bytes(),
            headers: vec![],
            status: 413,
            error_type: "too_many_events",
        },
        Case {
            name: "long string",
            body: long.into_bytes(),
            headers: vec![],
            status: 400,
            error_type: "string_too_long",
        },
        Case {
            name: "not a beacon",
            body: b"[1,2,3]".to_vec(),
            headers: vec![],
            status: 400,
            error_type: "invalid_beacon",
        },
        Case {
            name: "wrong version",
            body: b"{\"v\":7,\"events\":[]}".to_vec(),
            headers: vec![],
            status: 400,
            error_type: "unsupported_version",
        },
        Case {
            name: "foreign origin",
            body: good.clone().into_bytes(),
            headers: vec![("origin", "https://evil.example")],
            status: 403,
            error_type: "origin_not_allowed",
        },
    ];
    for case in &cases {
        let response = post(&p, case.body.clone(), &case.headers).await;
        assert_eq!(response.status().as_u16(), case.status, "{}", case.name);
        let message = response.text().await.unwrap();
        assert!(
            !message.trim().is_empty(),
            "{}: the client is told why",
            case.name
        );
        let counted = p
            .metric(
                "component_errors_total",
                &[&format!("error_type=\"{}\"", case.error_type)],
            )
            .await;
        assert!(
            counted >= 1.0,
            "{}: no counter for {}",
            case.name,
            case.error_type
        );
        // The next good request still works.
        let ok = post(&p, good.clone(), &[("origin", "https://shop.example.com")]).await;
        assert_eq!(ok.status(), 204, "good request after {}", case.name);
        assert_eq!(
            ok.headers()["access-control-allow-origin"],
            "https://shop.example.com"
        );
    }
    let total_errors = p
        .metric("component_errors_total", &["component_id=\"beacons\""])
        .await;
    assert_eq!(total_errors, cases.len() as f64);
    // Only the good beacons came out: 2 events each, none from a refused one.
    let docs = p.wait_documents(cases.len() * 2, Duration::from_secs(10));
    assert_eq!(docs.len(), cases.len() * 2);
    assert!(docs.iter().all(|d| d["session"]["id"] == "good"));
    assert_eq!(
        p.metric("http_requests_total", &["path=\"/rum\"", "status=\"204\""])
            .await,
        cases.len() as f64
    );
    // The gzip bomb never inflated past the limit in memory.
    assert!(
        p.rss_kib() < 60 * 1024,
        "RSS {} KiB after a 50 MB gzip bomb",
        p.rss_kib()
    );
}

#[tokio::test]
async fn gzip_and_deflate_bodies_are_accepted() {
    let p = Pipeline::start(DEV);
    let body = beacon("gz", 3).to_string();
    let response = post(
        &p,
        gzip(body.as_bytes()),
        &[
            ("content-encoding", "gzip"),
            ("content-type", "application/json"),
        ],
    )
    .await;
    assert_eq!(response.status(), 204);
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    zlib.write_all(body.as_bytes()).unwrap();
    let response = post(
        &p,
        zlib.finish().unwrap(),
        &[("content-encoding", "deflate")],
    )
    .await;
    assert_eq!(response.status(), 204);
    assert_eq!(p.wait_documents(6, Duration::from_secs(10)).len(), 6);
}

#[tokio::test]
async fn cors_preflight_client_script_health_and_unknown_paths() {
    let p = Pipeline::start(DEV);
    let http = client();
    let preflight = http
        .request(reqwest::Method::OPTIONS, p.url("/rum"))
        .header("origin", "https://shop.example.com")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    let h = preflight.headers();
    assert_eq!(h["access-control-allow-origin"], "https://shop.example.com");
    assert!(h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("content-type"));
    assert!(h["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .contains("POST"));
    assert_eq!(h["access-control-max-age"], "86400");
    let denied = http
        .request(reqwest::Method::OPTIONS, p.url("/rum"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    assert!(denied
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    let script = http.get(p.url("/rum")).send().await.unwrap();
    assert_eq!(script.status(), 200);
    assert!(script.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/javascript"));
    assert!(script.headers()["cache-control"]
        .to_str()
        .unwrap()
        .contains("max-age="));
    let etag = script.headers()["etag"].to_str().unwrap().to_owned();
    assert!(!script.text().await.unwrap().is_empty());
    let again = http
        .get(p.url("/rum"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let zipped = raw
        .get(p.url("/rum"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(zipped.headers()["content-encoding"], "gzip");
    let bytes = zipped.bytes().await.unwrap();
    assert_eq!(&bytes[..2], &[0x1f, 0x8b]);

    let health = http.get(p.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert_eq!(health.text().await.unwrap(), "rum-pipeline is ready");
    assert_eq!(http.get(p.url("/nope")).send().await.unwrap().status(), 404);
    assert_eq!(http.put(p.url("/rum")).send().await.unwrap().status(), 405);
    let metrics = http
        .get(p.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("# TYPE component_received_events_total counter"));
    assert!(metrics.contains("buffer_max_events{component_id=\"out\""));
    assert_eq!(
        metric_in(
            &metrics,
            "http_requests_total",
            &["path=\"unmatched\"", "status=\"404\""]
        ),
        1.0
    );
}

#[tokio::test]
async fn no_document_holds_a_full_client_ip_unless_the_operator_opts_in() {
    let with = |mode: &str| {
        DEV.replace(
            "max_json_depth = 8",
            &format!("max_json_depth = 8\ntrusted_proxies = [\"127.0.0.1/32\"]{mode}"),
        )
    };
    let forwarded = [("x-forwarded-for", "2001:db8:1234:5678::9")];
    for (mode, expected) in [
        ("", Some("2001:db8:1234::")),
        ("\nclient_ip = \"truncated\"", Some("2001:db8:1234::")),
        ("\nclient_ip = \"full\"", Some("2001:db8:1234:5678::9")),
        ("\nclient_ip = \"none\"", None),
    ] {
        let p = Pipeline::start(&with(mode));
        post(&p, beacon("ip", 2).to_string(), &forwarded).await;
        let docs = p.wait_documents(2, Duration::from_secs(10));
        for doc in &docs {
            assert_eq!(
                doc["client"]["ip"].as_str(),
                expected,
                "mode {mode:?}: {doc}"
            );
        }
        if expected.is_none() {
            assert!(docs.iter().all(|d| d.get("client").is_none()), "{docs:?}");
        }
        // The full address appears nowhere else in the document either.
        if !mode.contains("full") {
            assert!(
                docs.iter().all(|d| !d.to_string().contains("5678")),
                "{docs:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ip_comes_from_trusted_proxies_only() {
    let config = DEV.replace(
        "max_json_depth = 8",
        "max_json_depth = 8\ntrusted_proxies = [\"127.0.0.1/32\"]",
    );
    let p = Pipeline::start(&config);
    let body = beacon("ip", 1).to_string();
    post(
        &p,
        body.clone(),
        &[("x-forwarded-for", "6.6.6.6, 198.51.100.23")],
    )
    .await;
    let docs = p.wait_documents(1, Duration::from_secs(10));
    assert_eq!(docs[0]["client"]["ip"], "198.51.100.0");
    let untrusted = Pipeline::start(DEV);
    post(&untrusted, body, &[("x-forwarded-for", "198.51.100.23")]).await;
    let docs = untrusted.wait_documents(1, Duration::from_secs(10));
    assert_eq!(docs[0]["client"]["ip"], "127.0.0.0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_sheds_load_with_503_and_memory_stays_flat() {
    // Nobody reads the binary's stdout: the pipe fills, the stdout sink blocks,
    // its 200-event buffer fills, and the source must answer 503 quickly.
    let config = beacons_to_stdout(20, 200);
    let p = Pipeline::start_with(&config, Stdout::Stall, &[]);
    let body = beacon("stall", 10).to_string();
    let http = client();
    let send = |n: usize| {
        let http = http.clone();
        let url = p.url("/rum");
        let body = body.clone();
        async move {
            futures::stream::iter(0..n)
                .map(|_| {
                    let http = http.clone();
                    let url = url.clone();
                    let body = body.clone();
                    async move {
                        let r = http
                            .post(&url)
                            .body(body)
                            .send()
                            .await
                            .expect("never hangs");
                        let retry = r.headers().get("retry-after").is_some();
                        (r.status().as_u16(), retry)
                    }
                })
                .buffer_unordered(64)
                .collect::<Vec<_>>()
                .await
        }
    };
    // Warm up until the pipe and the buffer are full and refusals begin.
    let warmup = send(5_000).await;
    assert!(
        warmup.iter().any(|(s, _)| *s == 503),
        "no 503 after 5000 beacons into a stalled sink"
    );
    let rss_before = p.rss_kib();
    let results = send(50_000).await;
    let rss_after = p.rss_kib();
    let refused = results.iter().filter(|(s, _)| *s == 503).count();
    assert!(results.iter().all(|(s, _)| *s == 503 || *s == 204));
    assert!(
        results
            .iter()
            .filter(|(s, _)| *s == 503)
            .all(|(_, retry)| *retry),
        "503 without Retry-After"
    );
    assert!(
        refused >= 49_000,
        "only {refused} of 50000 refused while the sink is stalled"
    );
    assert!(
        rss_after < rss_before + 10 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB while refusing"
    );
    let buffered = p.metric("buffer_events", &["component_id=\"out\""]).await;
    assert!(buffered <= 200.0, "buffer holds {buffered} events, max 200");
    let shed = p
        .metric("component_errors_total", &["error_type=\"buffer_full\""])
        .await;
    assert!(shed >= refused as f64);
    let discarded = p
        .metric(
            "component_discarded_events_total",
            &["component_id=\"beacons\"", "intentional=\"true\""],
        )
        .await;
    assert!(discarded >= refused as f64 * 10.0);
}

/// Posts `body` to a pipeline whose stdout nobody reads until it answers
/// 503: its sink's buffer is full, and the next beacon has to wait.
async fn fill_until_refused(p: &Pipeline, body: &str) {
    let http = client();
    for _ in 0..2_000 {
        let r = http
            .post(p.url("/rum"))
            .body(body.to_owned())
            .send()
            .await
            .expect("answered");
        if r.status() == 503 {
            return;
        }
    }
    panic!("the stalled sink never filled its buffer");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upload_does_not_use_up_the_time_its_events_get_to_find_room() {
    // Nobody reads stdout: the sink stalls and its 25-event buffer ends up
    // holding two 10-event beacons, refusing a third after send_timeout_ms.
    // Then a beacon whose body takes longer than send_timeout_ms to arrive:
    // its wait before the read passes (one event fits), its ten events do
    // not. It must get its send_timeout_ms to find room, as its 503 shows by
    // coming that much after the body, not the moment the body is read.
    let config = beacons_to_stdout(600, 25);
    let p = Pipeline::start_with(&config, Stdout::Stall, &[]);
    let body = beacon("slow", 10).to_string();
    fill_until_refused(&p, &body).await;

    let (head_and_half, rest) = {
        let head = format!(
            "POST /rum HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            p.addr(),
            body.len()
        );
        let half = body.len() / 2;
        (format!("{head}{}", &body[..half]), body[half..].to_owned())
    };
    let mut socket = tokio::net::TcpStream::connect(p.addr())
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    socket
        .write_all(head_and_half.as_bytes())
        .await
        .expect("head");
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    socket
        .write_all(rest.as_bytes())
        .await
        .expect("rest of the body");
    let body_sent = std::time::Instant::now();
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk))
            .await
            .expect("answered within 10 s")
            .expect("read");
        assert!(n > 0, "connection closed without an answer");
        answer.extend_from_slice(&chunk[..n]);
    }
    let waited = body_sent.elapsed();
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(
        waited >= Duration::from_millis(400),
        "refused {waited:?} after its body arrived: the upload used up the wait for room"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_shuts_its_side_after_a_whole_beacon_still_gets_the_answer() {
    // Browsers and proxies may shut their write side once a request is
    // sent. The beacon was read whole: it is handled and answered. Here the
    // answer has to wait (a full, stalled pipeline, 400 ms of send timeout),
    // which is when hyper, without half-closes allowed, saw the EOF and
    // dropped the request unanswered.
    let config = beacons_to_stdout(400, 25);
    let p = Pipeline::start_with(&config, Stdout::Stall, &[]);
    let body = beacon("half-closed", 10).to_string();
    fill_until_refused(&p, &body).await;

    let request = format!(
        "POST /rum HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        p.addr(),
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(p.addr())
        .await
        .expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    socket.write_all(request.as_bytes()).await.expect("request");
    socket.shutdown().await.expect("shut the write side");
    let mut answer = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut chunk))
            .await
            .expect("answered or closed within 10 s")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&chunk[..n]);
    }
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(
        answer.starts_with("http/1.1 503"),
        "no answer after the client shut its side: {answer:?}"
    );
    assert!(answer.contains("retry-after: 1"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_wait_for_room_are_decoded_again_delivered_once_and_counted_once() {
    // A 12-event buffer and 10-event beacons from eight clients at once:
    // most requests pass the wait before their body (one event fits) and
    // then find no room for ten. They drop their events, wait for room for
    // ten, and decode their body again. Every accepted beacon's events must
    // come out exactly once, and the source's own counters (here: an
    // unknown event type in each beacon) count each request once.
    let config = beacons_to_stdout(5000, 12);
    let p = Pipeline::start_with(&config, Stdout::Collect, &[]);
    let clients = 8;
    let per_client = 15;
    let sends = (0..clients).map(|c| {
        let url = p.url("/rum");
        async move {
            let http = client();
            let mut accepted = Vec::new();
            for i in 0..per_client {
                let session = format!("wait-{c}-{i}");
                let mut body = beacon(&session, 9);
                body["events"]
                    .as_array_mut()
                    .expect("events")
                    .push(json!({"type": "no_such_type", "ts": 1}));
                let r = http
                    .post(&url)
                    .body(body.to_string())
                    .send()
                    .await
                    .expect("answered");
                match r.status().as_u16() {
                    204 => accepted.push(session),
                    503 => {}
                    other => panic!("{session}: status {other}"),
                }
            }
            accepted
        }
    });
    let accepted: Vec<String> = futures::future::join_all(sends)
        .await
        .into_iter()
        .flatten()
        .collect();
    assert!(
        accepted.len() >= clients * per_client / 2,
        "only {} of {} beacons accepted with a 5 s wait",
        accepted.len(),
        clients * per_client
    );
    let expected = accepted.len() * 10;
    let mut documents = Vec::new();
    for _ in 0..200 {
        documents = p.documents();
        if documents.len() >= expected {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        documents.len(),
        expected,
        "each accepted event once, no more"
    );
    for session in &accepted {
        let n = documents
            .iter()
            .filter(|d| d["session"]["id"] == session.as_str())
            .count();
        assert_eq!(n, 10, "{session}: {n} documents");
    }
    let requests = (clients * per_client) as f64;
    assert_eq!(
        p.metric("rum_beacon_unknown_event_types_total", &[]).await,
        requests,
        "each request's unknown type counted once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_every_accepted_event_before_exit_zero() {
    let config = r#"
stats_interval_secs = 0
shutdown_timeout_secs = 20
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
access_log = false
[sinks.out]
type = "stdout"
inputs = ["beacons"]
buffer.max_events = 100000
"#;
    let mut p = Pipeline::start(config);
    let url = p.url("/rum");
    let http = client();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut senders = Vec::new();
    for worker in 0..8 {
        let http = http.clone();
        let url = url.clone();
        let accepted = accepted.clone();
        senders.push(tokio::spawn(async move {
            for i in 0.. {
                let body = beacon(&format!("w{worker}-{i}"), 7).to_string();
                match http.post(&url).body(body).send().await {
                    Ok(r) if r.status() == 204 => {
                        accepted.fetch_add(7, std::sync::atomic::Ordering::SeqCst);
                    }
                    // 503 while draining, or the connection closed: not accepted.
                    Ok(_) | Err(_) => break,
                }
            }
        }));
    }
    // Let traffic flow, then stop the pipeline mid-stream.
    let flowing = std::time::Instant::now();
    while accepted.load(std::sync::atomic::Ordering::SeqCst) < 3_000 {
        assert!(
            flowing.elapsed() < Duration::from_secs(60),
            "only {} events accepted within 60 s",
            accepted.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = tokio::task::spawn_blocking(move || {
        let status = p.terminate(Duration::from_secs(30));
        (status, p)
    })
    .await
    .unwrap();
    for s in senders {
        let _ = s.await;
    }
    let (status, p) = status;
    assert!(status.success(), "exit status {status:?}");
    let accepted = accepted.load(std::sync::atomic::Ordering::SeqCst);
    let printed = p.stdout_lines().len();
    assert_eq!(
        printed, accepted,
        "every event answered 204 must be printed before exit"
    );
    assert!(p.stderr().iter().any(|l| l.contains("shutdown complete")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_logged_not_obeyed_and_sigterm_still_drains() {
    // Without a geoip transform nothing handled SIGHUP, and its default
    // action ended the process at once: buffered events lost, no drain.
    let mut p = Pipeline::start(&beacons_to_stdout(1000, 1000));
    assert_eq!(
        post(&p, beacon("hup-1", 3).to_string(), &[]).await.status(),
        204
    );
    p.signal(libc::SIGHUP);
    assert!(
        p.wait_stderr(|l| l.contains("SIGHUP"), Duration::from_secs(10))
            .is_some(),
        "no SIGHUP line: {:?}",
        p.stderr()
    );
    assert_eq!(
        post(&p, beacon("hup-2", 2).to_string(), &[]).await.status(),
        204
    );
    let (status, p) = tokio::task::spawn_blocking(move || {
        let status = p.terminate(Duration::from_secs(20));
        (status, p)
    })
    .await
    .unwrap();
    assert!(status.success(), "exit status {status:?}");
    assert_eq!(p.stdout_lines().len(), 5);
}

/// Ctrl-C once drains; a drain that cannot finish (here stdout nobody
/// reads, an hour of `shutdown_timeout_secs`) gave the user at the terminal
/// no way out but `kill -9`, which also skips the final counters. A second
/// SIGINT ends the wait as the timeout would: counters logged, exit 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_sigint_stops_waiting_for_a_drain_that_cannot_finish() {
    let config = format!(
        "shutdown_timeout_secs = 3600\n{}",
        beacons_to_stdout(100, 25)
    );
    let mut p = Pipeline::start_with(&config, Stdout::Stall, &[]);
    fill_until_refused(&p, &beacon("stuck", 10).to_string()).await;
    p.signal(libc::SIGINT);
    assert!(
        p.wait_stderr(|l| l.contains("shutting down"), Duration::from_secs(10))
            .is_some(),
        "{:?}",
        p.stderr()
    );
    p.signal(libc::SIGINT);
    // Without a way out this waits the hour (the test gives up long before).
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let status = p.wait_exit(Duration::from_secs(60));
        (status, p.stderr())
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    assert!(
        stderr.iter().any(|l| l.contains("a second SIGINT")),
        "{stderr:?}"
    );
    assert!(
        stderr
            .iter()
            .any(|l| l.contains("component=out") && l.contains("dropped=")),
        "the final counters: {stderr:?}"
    );
}

/// `(in, out, dropped)` of `component` in the last stats line that names it.
fn final_counts(stderr: &[String], component: &str) -> (u64, u64, u64) {
    let line = stderr
        .iter()
        .rev()
        .find(|l| l.contains(&format!("component={component}")) && l.contains("events in="))
        .unwrap_or_else(|| panic!("no counters of {component}: {stderr:?}"));
    let number = |key: &str| -> u64 {
        let at = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{key} in {line}"))
    };
    (number(" in="), number(" out="), number(" dropped="))
}

#[tokio::test]
async fn events_left_in_a_buffer_at_the_shutdown_timeout_are_in_the_final_counters() {
    let config = format!("shutdown_timeout_secs = 1\n{}", beacons_to_stdout(100, 25));
    let mut p = Pipeline::start_with(&config, Stdout::Stall, &[]);
    fill_until_refused(&p, &beacon("left", 10).to_string()).await;
    let (status, stderr) = tokio::task::spawn_blocking(move || {
        let status = p.terminate(Duration::from_secs(60));
        (status, p.stderr())
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    assert!(
        stderr.iter().any(|l| l.contains("shutdown_timeout_secs")),
        "{stderr:?}"
    );
    // What the source handed on, the sink received: the batch stuck in its
    // write and the events still in its buffer both count as dropped.
    let (_, source_out, _) = final_counts(&stderr, "beacons");
    let (sink_in, sink_out, sink_dropped) = final_counts(&stderr, "out");
    assert_eq!(source_out, sink_in, "{stderr:?}");
    assert!(sink_dropped >= 10, "{stderr:?}");
    assert_eq!(sink_out + sink_dropped, sink_in, "{stderr:?}");
}

#[tokio::test]
async fn a_closed_stdout_ends_the_stdout_sink_cleanly() {
    let config = r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[sinks.out]
type = "stdout"
inputs = ["beacons"]
[sinks.count]
type = "blackhole"
inputs = ["beacons"]
"#;
    let mut p = Pipeline::start_with(config, Stdout::Close, &[]);
    for i in 0..20 {
        let response = post(&p, beacon(&format!("closed-{i}"), 5).to_string(), &[]).await;
        assert_eq!(response.status(), 204, "beacon {i}");
    }
    // The other sink of the fan-out got everything; the stdout sink counted its loss.
    let mut discarded = 0.0;
    for _ in 0..200 {
        discarded = p
            .metric(
                "component_discarded_events_total",
                &["component_id=\"out\"", "intentional=\"false\""],
            )
            .await;
        if discarded >= 100.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(discarded, 100.0);
    assert_eq!(
        p.metric("component_sent_events_total", &["component_id=\"count\""])
            .await,
        100.0
    );
    assert_eq!(
        p.metric(
            "component_errors_total",
            &["component_id=\"out\"", "error_type=\"write_failed\""]
        )
        .await,
        1.0
    );
    let status = tokio::task::spawn_blocking(move || {
        let status = p.terminate(Duration::from_secs(20));
        (status, p.stderr())
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{:?}", status.0);
    assert!(
        !status.1.iter().any(|l| l.contains("panicked")),
        "{:?}",
        status.1
    );
    assert!(status.1.iter().any(|l| l.contains("stdout is closed")));
}

#[test]
fn validate_lists_every_graph_error_naming_the_component() {
    let (code, out) = validate(
        r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[sources.idle]
type = "rum_beacon"
address = "127.0.0.1:0"
path = "/other"
[sinks.a]
type = "stdout"
inputs = ["beacons", "ghost"]
[sinks.b]
type = "stdout"
inputs = []
[sinks.beacons]
type = "blackhole"
inputs = ["idle"]
[sinks.c]
type = "stdout"
inputs = ["a"]
"#,
        &[],
    );
    assert_eq!(code, 78, "{out}");
    assert!(
        out.contains("[sinks.a] key `inputs`: input `ghost` names no component"),
        "{out}"
    );
    assert!(
        out.contains("[sinks.b] key `inputs`: needs at least one input"),
        "{out}"
    );
    assert!(out.contains("duplicate component id: `beacons`"), "{out}");
    assert!(
        out.contains("[sinks.c] key `inputs`: input `a` is a sink"),
        "{out}"
    );
}

#[test]
fn validate_warns_about_a_source_that_feeds_nothing_and_passes() {
    let (code, out) = validate(
        r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[sources.idle]
type = "rum_beacon"
address = "127.0.0.1:0"
path = "/idle"
[sinks.out]
type = "blackhole"
inputs = ["beacons"]
"#,
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("[sources.idle] feeds no component"), "{out}");
    assert!(
        out.contains("valid (2 sources, 0 transforms, 1 sinks)"),
        "{out}"
    );
}

#[test]
fn validate_names_missing_environment_variables_and_bad_values() {
    let config = r#"
[sources.beacons]
type = "rum_beacon"
address = "${RUM_TEST_ADDRESS}"
max_body_bytes = ${RUM_TEST_LIMIT:-1048576}
allowed_origins = ["not an origin"]
path = "rum"
tls = { crt_file = "/nonexistent/crt.pem", key_file = "/nonexistent/key.pem" }
[sinks.out]
type = "stdout"
inputs = ["beacons"]
encoding = "yaml"
"#;
    let (code, out) = validate(config, &[]);
    assert_eq!(code, 78);
    assert!(
        out.contains(":4: environment variable RUM_TEST_ADDRESS is not set"),
        "{out}"
    );
    let (code, out) = validate(config, &[("RUM_TEST_ADDRESS", "127.0.0.1:0")]);
    assert_eq!(code, 78);
    assert!(
        out.contains("[sources.beacons] key `allowed_origins`"),
        "{out}"
    );
    assert!(out.contains("[sources.beacons] key `path`"), "{out}");
    assert!(
        out.contains("[sources.beacons] key `tls.crt_file`: cannot read `/nonexistent/crt.pem`"),
        "{out}"
    );
    assert!(out.contains("[sinks.out] key `encoding`"), "{out}");
    let (code, out) = validate(
        config,
        &[
            ("RUM_TEST_ADDRESS", "127.0.0.1:0"),
            ("RUM_TEST_LIMIT", "lots"),
        ],
    );
    assert_eq!(code, 78);
    assert!(out.contains("invalid TOML"), "{out}");
}

#[test]
fn version_flag_prints_the_version() {
    let output = common::one_shot(["--version"]).run();
    assert!(output.success());
    assert_eq!(
        output.stdout.trim(),
        format!("rum-pipeline {}", env!("CARGO_PKG_VERSION"))
    );
}

/// The worker threads of a running pipeline (the runtime names them).
fn workers(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the process's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "rum-worker")
        .count()
}

/// The worker count once it reaches `expected` (or after 10 s): a worker
/// thread names itself when it starts, which on a loaded machine can come
/// after the pipeline already says it listens.
fn workers_settled(pid: u32, expected: usize) -> usize {
    let start = std::time::Instant::now();
    loop {
        let now = workers(pid);
        if now == expected || start.elapsed() > Duration::from_secs(10) {
            return now;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn the_runtime_runs_as_many_worker_threads_as_asked() {
    // Before any event: the blocking pool, which the stdout sink's writes
    // use (and which the runtime names alike), has no thread yet.
    for (threads, expected) in [("3", 3), ("1", 1)] {
        let p = Pipeline::start_with(DEV, Stdout::Collect, &[("RUM_THREADS", threads)]);
        assert_eq!(
            workers_settled(p.pid(), expected),
            expected,
            "RUM_THREADS={threads}"
        );
        // And it serves.
        let response = post(&p, beacon("threads", 1).to_string(), &[]).await;
        assert_eq!(response.status(), 204);
        let document = p.next_document(Duration::from_secs(10));
        assert_eq!(document["rum"]["type"], "web_vital", "{document}");
    }
    let available = std::thread::available_parallelism().map_or(1, |n| n.get());
    let p = Pipeline::start(DEV);
    assert_eq!(
        workers_settled(p.pid(), available),
        available,
        "one per core by default"
    );
}

#[test]
fn a_thread_count_out_of_range_is_refused_with_its_range() {
    for bad in ["0", "1025", "two"] {
        let output = common::one_shot(["--threads", bad, "validate"]).run();
        assert!(!output.success(), "--threads {bad}");
        assert!(
            output.stderr.contains("--threads") && output.stderr.contains(bad),
            "--threads {bad}: {}",
            output.stderr
        );
    }
}

#[test]
fn a_health_probe_without_time_to_answer_is_refused() {
    let output = common::one_shot(["health", "--timeout-ms", "0"]).run();
    assert!(!output.success());
    assert!(
        output.stderr.contains("--timeout-ms") && output.stderr.contains("0"),
        "{}",
        output.stderr
    );
}

#[test]
fn an_unreadable_rum_log_is_said_not_silently_ignored() {
    let output = common::one_shot(["validate"])
        .env("RUM_LOG", "info,rum_pipeline=loud")
        .run();
    assert!(output.success(), "{}", output.stderr);
    assert!(
        output
            .stderr
            .contains("RUM_LOG=\"info,rum_pipeline=loud\" is not a log filter"),
        "{}",
        output.stderr
    );
    let output = common::one_shot(["validate"]).env("RUM_LOG", "warn").run();
    assert!(
        !output.stderr.contains("not a log filter"),
        "{}",
        output.stderr
    );
}

/// `templates`, `rules` and `validate` write their output to stdout, which a
/// user pipes into `head` or `less` (a reader that may go away) or redirects
/// to a file (on a disk that may be full). Neither is a crash: a reader gone
/// ends the command quietly, a failed write is one error line and exit 1.
#[test]
fn stdout_commands_handle_a_closed_pipe_and_a_full_disk() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead-letter.ndjson");
    let prod = concat!(env!("CARGO_MANIFEST_DIR"), "/pipelines/prod.toml");
    let run = |command: &str, stdout: std::process::Stdio| {
        let output = std::process::Command::new(common::BIN)
            .args(["--config", prod, command])
            .env_remove("RUM_CONFIG")
            .env("ELASTIC_CLUSTER", "http://127.0.0.1:9")
            .env("DEAD_LETTER_PATH", &dead)
            .env("RUST_BACKTRACE", "0")
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(std::process::Stdio::piped())
            .output()
            .expect("run rum-pipeline");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    for command in ["templates", "rules", "validate"] {
        // A reader that has gone away before the first write.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let (code, stderr) = run(command, writer.into());
        assert!(
            !stderr.contains("panicked"),
            "{command} | (closed): {stderr}"
        );
        assert_ne!(code, Some(101), "{command} | (closed): {stderr}");
        assert!(!stderr.contains("error"), "{command} | (closed): {stderr}");
        // A full disk.
        let full = std::fs::File::options()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let (code, stderr) = run(command, full.into());
        assert!(
            !stderr.contains("panicked"),
            "{command} > /dev/full: {stderr}"
        );
        assert_eq!(code, Some(1), "{command} > /dev/full: {stderr}");
        assert!(
            stderr.contains("error: cannot write to stdout"),
            "{command} > /dev/full: {stderr}"
        );
    }
}

/// Stderr that nobody reads (a log collector that stalls, as Docker's
/// default `blocking` log mode lets it; `2>&1 | less`) fills its pipe, and
/// then every write to it waits. The access log never waited; the other log
/// lines were written by the thread that logged them: the stats line on a
/// worker, "shutting down" on the thread that runs the drain, which then
/// waited for ever, so SIGTERM was never obeyed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_while_stderr_is_stalled() {
    let config = r#"
stats_interval_secs = 1
shutdown_timeout_secs = 2
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[sinks.out]
type = "blackhole"
inputs = ["beacons"]
"#;
    let mut p = Pipeline::start(config);
    p.stall_stderr();
    // Access-log lines of ~2 KB: the pipe fills, then the access log's
    // queue, which says so in its counter.
    let mut body = beacon("stalled-log", 1);
    body["view"]["url"] = json!(format!("https://shop.example.com/{}", "a".repeat(2000)));
    let body = body.to_string();
    let mut filled = false;
    for round in 0..100 {
        for _ in 0..100 {
            let r = post(&p, body.clone(), &[("content-type", "application/json")]).await;
            assert_eq!(r.status(), 204, "round {round}");
        }
        if p.metric("access_log_lines_dropped_total", &[]).await > 0.0 {
            filled = true;
            break;
        }
    }
    assert!(filled, "stderr never filled");
    // Serving goes on with the log stuck.
    let health = client().get(p.url("/health")).send().await.expect("health");
    assert_eq!(health.status(), 200);
    let status = tokio::task::spawn_blocking(move || p.terminate(Duration::from_secs(60)))
        .await
        .expect("join");
    assert!(status.success(), "{status:?}");
}

/// A backend runs for weeks while browsers and scanners choose paths,
/// methods, origins, content types, forwarded addresses and user agents:
/// none of them may become a label, or /metrics grows with every request
/// (and Prometheus with it). After one request of each kind, more of the
/// same kinds with other values add no series.
#[tokio::test]
async fn metrics_series_do_not_grow_with_what_clients_choose() {
    let config = DEV.replace(
        "max_json_depth = 8",
        "max_json_depth = 8\ntrusted_proxies = [\"127.0.0.1/32\"]\nrate_limit = { requests_per_second = 1000 }",
    );
    let p = Pipeline::start(&config);
    let http = client();
    let series = || async {
        let text = p.metrics_text().await;
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.rsplit_once(' ').map_or(l, |(k, _)| k).to_owned())
            .collect::<std::collections::BTreeSet<String>>()
    };
    let round = |i: usize| {
        let http = &http;
        let p = &p;
        async move {
            let ip = format!("203.0.{}.{}", i / 250, i % 250 + 1);
            let ua = format!("Scanner/{i}.0 (+https://bot{i}.example)");
            let send = |method: &str, path: String| {
                http.request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    p.url(&path),
                )
                .header("x-forwarded-for", &ip)
                .header("user-agent", &ua)
            };
            let statuses = [
                send("GET", format!("/probe/{i}/.env")).send().await,
                send(&format!("FOO{i}"), format!("/x{i}")).send().await,
                send(&format!("BAR{i}"), "/rum".into()).send().await,
                send("POST", "/rum".into())
                    .header("origin", format!("https://evil{i}.example"))
                    .body("{}")
                    .send()
                    .await,
                send("POST", "/rum".into())
                    .header("content-type", format!("text/x-{i}"))
                    .body("{}")
                    .send()
                    .await,
                send("POST", format!("/rum?{i}"))
                    .header("content-type", "application/json")
                    .body(beacon(&format!("s{i}"), 2).to_string())
                    .send()
                    .await,
            ]
            .map(|r| r.expect("request").status().as_u16());
            assert_eq!(statuses, [404, 404, 405, 403, 415, 204], "request set {i}");
        }
    };
    round(0).await;
    // The first scrape counts itself (`path="/metrics"`) after it answers.
    series().await;
    let before = series().await;
    for i in 1..=40 {
        round(i).await;
    }
    let after = series().await;
    let added: Vec<&String> = after.difference(&before).collect();
    assert!(
        added.is_empty(),
        "series added by client-chosen values: {added:?}"
    );
}
