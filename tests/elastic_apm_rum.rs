//! The `elastic_apm_rum` source against the real binary: what the real
//! `@elastic/apm-rum` agent sent (testdata/sdk/elastic-apm-rum) posted as it
//! posts it (gzip NDJSON, CORS) to APM Server's paths, what reaches the
//! stdout sink, the central-config answers, and what each bad request gets
//! back (APM Server's statuses and error body) and is counted as.

mod common;

use std::time::Duration;

use common::{client, Pipeline, Stdout};
use futures::StreamExt;
use serde_json::{json, Value};

const ORIGIN: &str = "http://127.0.0.1:39925";

const CONFIG: &str = r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[sources.apm]
type = "elastic_apm_rum"
address = "127.0.0.1:0"
max_body_bytes = "2mb"
max_event_bytes = "64kb"
allowed_origins = ["http://127.0.0.1:39925"]
[sinks.out]
type = "stdout"
inputs = ["beacons", "apm"]
"#;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/testdata/sdk/elastic-apm-rum/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect("fixture")
}

/// Posts as the agent does; returns status, headers and body.
async fn post(
    p: &Pipeline,
    path: &str,
    body: Vec<u8>,
    gzip: bool,
) -> (u16, reqwest::header::HeaderMap, String) {
    try_post(p, path, body, gzip).await.expect("POST intake")
}

/// `post`, with the client's error instead of a panic.
async fn try_post(
    p: &Pipeline,
    path: &str,
    body: Vec<u8>,
    gzip: bool,
) -> Result<(u16, reqwest::header::HeaderMap, String), reqwest::Error> {
    let mut request = client()
        .post(p.url(path))
        .header("content-type", "application/x-ndjson")
        .header("origin", ORIGIN)
        .header(
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) HeadlessChrome/156.0.0.0",
        )
        .body(body);
    if gzip {
        request = request.header("content-encoding", "gzip");
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Ok((status, headers, response.text().await.unwrap_or_default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_requests_become_documents() {
    let p = Pipeline::start(CONFIG);
    // v3 as the agent sent it: gzip from CompressionStream.
    let (status, headers, body) =
        post(&p, "/intake/v3/rum/events", fixture("v3-0.ndjson.gz"), true).await;
    assert_eq!((status, body.as_str()), (202, ""));
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    for (path, name) in [
        ("/intake/v3/rum/events", "v3-1.ndjson"),
        ("/intake/v3/rum/events", "v3-3.ndjson"),
        ("/intake/v2/rum/events", "v2-2.ndjson"),
    ] {
        let (status, _, body) = post(&p, path, fixture(name), false).await;
        assert_eq!(status, 202, "{name}: {body}");
    }
    // 2 (http-request + span) + 9 (page load) + 1 (error) + 2 (click + fetch)
    let docs = p.wait_documents(14, Duration::from_secs(15));
    assert_eq!(docs.len(), 14);
    let of = |ty: &'static str| docs.iter().filter(move |d| d["rum"]["type"] == ty);
    let view = of("page_view").next().expect("a page view");
    assert_eq!(view["url"]["full"], "http://127.0.0.1:39925/?v=3");
    assert_eq!(view["session"]["id"], "35295d4dc074ab01");
    assert_eq!(view["service"]["name"], "shop-frontend");
    assert_eq!(
        view["rum"]["sdk"],
        json!({"name": "rum-js", "version": "5.17.5"})
    );
    assert_eq!(view["rum"]["nav"]["ttfb"], 173.0);
    // Private by default: the network part only.
    assert_eq!(view["client"]["ip"], "127.0.0.0");
    let vitals: Vec<(&str, f64)> = of("web_vital")
        .map(|d| {
            (
                d["rum"]["vital"]["name"].as_str().unwrap(),
                d["rum"]["vital"]["value"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        vitals,
        [
            ("TTFB", 173.0),
            ("FCP", 295.0),
            ("LCP", 296.0),
            ("CLS", 0.07389322916666666),
            ("TBT", 0.0)
        ]
    );
    let error = of("error").next().expect("the error");
    assert_eq!(error["error"]["type"], "TypeError");
    assert!(error["error"]["stack_trace"]
        .as_str()
        .unwrap()
        .contains("at renderPrice (http://127.0.0.1:39925/?v=3:26:42)"));
    let urls: Vec<&str> = of("http")
        .map(|d| d["rum"]["http"]["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            "http://127.0.0.1:39925/api/config",
            "http://127.0.0.1:42313/api/cart"
        ]
    );
    assert_eq!(of("resource").count(), 1);
    assert_eq!(of("action").count(), 2);

    p.expect_metric(
        "component_received_events_total",
        &["component_id=\"apm\""],
        14.0,
    )
    .await;
    // x.me of the two v3 transactions (2 + 3), metricset lines of the v2 one (2).
    p.expect_metric("elastic_apm_rum_dropped_breakdowns_total", &[], 7.0)
        .await;
    let access = p
        .wait_stderr(
            |l| l.contains("POST /intake/v3/rum/events http://127.0.0.1:39925/"),
            Duration::from_secs(30),
        )
        .expect("an access-log line with the page URL");
    assert!(!access.contains("v=3"), "no query in the log: {access}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn central_config_and_cors_as_apm_server_answers() {
    let p = Pipeline::start(CONFIG);
    let url = p.url("/config/v1/rum/agents?service.name=shop-frontend&service.environment=test");
    let first = client()
        .get(&url)
        .header("origin", ORIGIN)
        .send()
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
    assert_eq!(first.headers()["access-control-allow-origin"], ORIGIN);
    assert_eq!(first.headers()["access-control-expose-headers"], "Etag");
    assert_eq!(first.json::<Value>().await.unwrap(), json!({}));
    // The agent sends the ETag back without quotes in the query...
    let again = client()
        .get(format!("{url}&ifnonematch={}", etag.trim_matches('"')))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    // ...other clients as If-None-Match.
    let header = client()
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(header.status(), 304);
    let stale = client()
        .get(&url)
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    let posted = client()
        .post(p.url("/config/v1/rum/agents"))
        .body(r#"{"service":{"name":"shop-frontend"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(posted.status(), 200);

    // The preflight of the agent's gzip NDJSON POST.
    let preflight = p
        .preflight(
            "/intake/v3/rum/events",
            ORIGIN,
            Some("content-encoding,content-type"),
        )
        .await;
    assert_eq!(preflight.status(), 204);
    assert_eq!(preflight.headers()["access-control-allow-origin"], ORIGIN);
    let allowed = preflight.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allowed.contains("content-type") && allowed.contains("content-encoding"));
    let foreign = client()
        .post(p.url("/intake/v2/rum/events"))
        .header("origin", "https://evil.example")
        .body(fixture("v2-3.ndjson"))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), 403);
    assert_eq!(
        foreign.json::<Value>().await.unwrap(),
        json!({"accepted": 0, "errors": [{"message": "origin not allowed"}]})
    );
    let get = client()
        .get(p.url("/intake/v2/rum/events"))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(get.headers()["allow"], "POST, OPTIONS");
    assert!(p.documents().is_empty());
}

/// The central config is cacheable (`max-age=30`) and its CORS headers
/// depend on `Origin`: echoed to an allowed page, absent without one. A
/// shared cache (a CDN in front of the intake) that stored the answer to a
/// request without `Origin` had no `Vary: Origin` to key on, and handed
/// that answer — no `Access-Control-Allow-Origin` — to every page, whose
/// agent then could not read its config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_central_config_answer_varies_on_origin() {
    let p = Pipeline::start(CONFIG);
    let url = p.url("/config/v1/rum/agents?service.name=shop-frontend");
    let varies_on_origin = |response: &reqwest::Response| {
        response
            .headers()
            .get_all("vary")
            .iter()
            .flat_map(|v| v.to_str().unwrap().split(','))
            .any(|v| v.trim().eq_ignore_ascii_case("origin"))
    };
    for origin in [None, Some(ORIGIN), Some("https://evil.example")] {
        for tag in [None, Some(CONFIG_ETAG)] {
            let mut request = client().get(&url);
            if let Some(origin) = origin {
                request = request.header("origin", origin);
            }
            if let Some(tag) = tag {
                request = request.header("if-none-match", tag);
            }
            let response = request.send().await.unwrap();
            assert!(
                varies_on_origin(&response),
                "origin {origin:?}, if-none-match {tag:?}: {} {:?}",
                response.status(),
                response.headers()
            );
        }
    }
}

/// HEAD is GET without the body (RFC 9110 9.3.2): a monitor or proxy that
/// checks the config endpoint with HEAD got 405.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_of_the_central_config_is_answered_as_get() {
    let p = Pipeline::start(CONFIG);
    let url = p.url("/config/v1/rum/agents?service.name=shop-frontend");
    let get = client().get(&url).send().await.unwrap();
    let head = client().head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["etag"], get.headers()["etag"]);
    assert_eq!(head.headers()["content-type"], "application/json");
    let put = client().put(&url).send().await.unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "GET, HEAD, POST, OPTIONS");
}

const CONFIG_ETAG: &str = "\"rum-pipeline-empty-1\"";

fn metadata() -> String {
    String::from_utf8(fixture("v2-3.ndjson"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_apm_server_answers_and_good_lines_are_kept() {
    let p = Pipeline::start(CONFIG);
    let meta = metadata();
    let good = r#"{"transaction":{"id":"t1","type":"route-change","name":"/cart","context":{"page":{"url":"http://127.0.0.1:39925/cart"}}}}"#;
    let errors_of = |body: &str| -> Value { serde_json::from_str(body).expect("a JSON answer") };

    // A truncated line and a wrong-typed one between good ones: 400 naming
    // them, the good lines delivered.
    let body = [
        meta.as_str(),
        good,
        r#"{"error":{"exception":{"message":"boom""#,
        r#"{"span":[1,2]}"#,
        r#"{"error":{"exception":{"message":"kept"}}}"#,
    ]
    .join("\n");
    let (status, headers, text) = post(&p, "/intake/v2/rum/events", body.into_bytes(), false).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    let answer = errors_of(&text);
    assert_eq!(answer["accepted"], 2);
    assert_eq!(
        answer["errors"][0]["document"],
        r#"{"error":{"exception":{"message":"boom""#
    );
    assert!(answer["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("EOF"));
    assert_eq!(answer["errors"][1]["document"], r#"{"span":[1,2]}"#);
    let docs = p.wait_documents(2, Duration::from_secs(10));
    assert_eq!(docs[0]["rum"]["action"]["name"], "/cart");
    assert_eq!(docs[1]["error"]["message"], "kept");
    p.expect_metric(
        "component_errors_total",
        &["component_id=\"apm\"", "error_type=\"invalid_json\""],
        1.0,
    )
    .await;
    p.expect_metric(
        "component_errors_total",
        &["component_id=\"apm\"", "error_type=\"invalid_event\""],
        1.0,
    )
    .await;

    // A line over max_event_bytes is refused alone.
    let long = format!(
        r#"{{"error":{{"exception":{{"message":"{}"}}}}}}"#,
        "x".repeat(70_000)
    );
    let body = [meta.as_str(), long.as_str(), good].join("\n");
    let (status, _, text) = post(&p, "/intake/v2/rum/events", body.into_bytes(), false).await;
    assert_eq!(status, 400);
    let answer = errors_of(&text);
    assert_eq!(answer["accepted"], 1);
    assert!(answer["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("exceeded the permitted size"));
    p.wait_documents(3, Duration::from_secs(10));

    // Refused whole: metadata missing or broken, 10 MB, wrong content type.
    let ten_mb = format!("{meta}\n{{\"span\":[{}0]}}\n", "0,".repeat(5 * 1024 * 1024));
    let cases: Vec<(&str, Vec<u8>, bool, u16, &str)> = vec![
        (
            "no metadata",
            good.as_bytes().to_vec(),
            false,
            400,
            "missing_metadata",
        ),
        (
            "metadata truncated",
            b"{\"metadata\":{\"service\":".to_vec(),
            false,
            400,
            "invalid_metadata",
        ),
        (
            "metadata of the wrong type",
            format!("{{\"metadata\":{{\"service\":\"shop\"}}}}\n{good}").into_bytes(),
            false,
            400,
            "invalid_metadata",
        ),
        (
            "10 MB line",
            ten_mb.into_bytes(),
            false,
            413,
            "body_too_large",
        ),
        (
            "not gzip",
            b"plain text said to be gzip".to_vec(),
            true,
            400,
            "invalid_compression",
        ),
    ];
    let types: Vec<&str> = cases.iter().map(|c| c.4).collect();
    for (i, (what, body, gzip, want, error_type)) in cases.into_iter().enumerate() {
        match try_post(&p, "/intake/v2/rum/events", body, gzip).await {
            Ok((status, _, text)) => {
                assert_eq!(status, want, "{what}: {text}");
                let answer = errors_of(&text);
                assert_eq!(answer["accepted"], 0, "{what}");
                assert!(answer["errors"][0]["message"].is_string(), "{what}");
            }
            // The 413 for a declared 10 MB body goes out before the body is
            // read, and the connection closes: a client still writing may
            // meet the close before it reads the answer. The counter below
            // still proves the refusal.
            Err(e) if want == 413 && format!("{e:?}").contains("Broken pipe") => {
                eprintln!("{what}: the client saw the close before the 413: {e}");
            }
            Err(e) => panic!("{what}: POST failed: {e:?}"),
        }
        p.expect_metric(
            "component_errors_total",
            &[
                "component_id=\"apm\"",
                &format!("error_type=\"{error_type}\""),
            ],
            types[..=i].iter().filter(|t| **t == error_type).count() as f64,
        )
        .await;
    }
    let form = client()
        .post(p.url("/intake/v2/rum/events"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("a=b")
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);

    // An unknown kind is kept (custom) and counted; the request is fine.
    let body = [meta.as_str(), r#"{"profile":{"samples":[1,2]}}"#].join("\n");
    let (status, _, _) = post(&p, "/intake/v2/rum/events", body.into_bytes(), false).await;
    assert_eq!(status, 202);
    let docs = p.wait_documents(4, Duration::from_secs(10));
    assert_eq!(docs[3]["rum"]["type"], "custom");
    assert_eq!(docs[3]["rum"]["custom"]["original_type"], "profile");
    p.expect_metric("elastic_apm_rum_unknown_events_total", &[], 1.0)
        .await;
    // Nothing else of the refused requests reached the sink.
    assert_eq!(p.documents().len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pipeline_answers_503_with_apm_servers_body() {
    let config = r#"
stats_interval_secs = 0
[sources.apm]
type = "elastic_apm_rum"
address = "127.0.0.1:0"
send_timeout_ms = 20
access_log = false
[sinks.out]
type = "stdout"
inputs = ["apm"]
buffer.max_events = 20
"#;
    // Nobody reads stdout: the sink stalls and the buffer fills.
    let p = Pipeline::start_with(config, Stdout::Stall, &[]);
    let body = fixture("v3-1.ndjson");
    let url = p.url("/intake/v3/rum/events");
    let answers: Vec<(u16, bool, String)> = futures::stream::iter(0..3000)
        .map(|_| {
            let (url, body) = (url.clone(), body.clone());
            async move {
                let r = client()
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(body)
                    .send()
                    .await
                    .expect("never hangs");
                let retry = r.headers().get("retry-after").is_some();
                (
                    r.status().as_u16(),
                    retry,
                    r.text().await.unwrap_or_default(),
                )
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(answers.iter().all(|(s, _, _)| *s == 202 || *s == 503));
    let refused: Vec<_> = answers.iter().filter(|(s, _, _)| *s == 503).collect();
    assert!(!refused.is_empty(), "no 503 from a stalled pipeline");
    for (_, retry, text) in &refused {
        assert!(retry, "503 without Retry-After");
        let answer: Value = serde_json::from_str(text).unwrap();
        assert_eq!(answer["accepted"], 0);
    }
    let shed = p
        .metric(
            "component_errors_total",
            &["component_id=\"apm\"", "error_type=\"buffer_full\""],
        )
        .await;
    assert_eq!(shed, refused.len() as f64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrub_url_sees_every_url_the_agent_sends() {
    let config = r#"
stats_interval_secs = 0
[sources.apm]
type = "elastic_apm_rum"
address = "127.0.0.1:0"
[transforms.scrub]
type = "scrub_url"
inputs = ["apm"]
[sinks.out]
type = "stdout"
inputs = ["scrub"]
"#;
    let p = Pipeline::start(config);
    let page = "https://shop.example/checkout?token=s3cr3t&item=1";
    let body = [
        r#"{"m":{"se":{"n":"shop","a":{"n":"rum-js","ve":"5.17.5"},"la":{"n":"javascript"}}}}"#.to_owned(),
        json!({"x": {"id": "t1", "t": "page-load", "c": {"p": {"url": page, "rf": "https://mail.example/?email=a@b.example"}},
            "y": [{"n": "GET /api/me", "t": "external", "su": "http", "d": 5,
                   "c": {"h": {"url": "https://api.shop.example/me?access_token=s3cr3t", "mt": "GET", "sc": 200}}},
                  {"n": "https://cdn.shop.example/app.js?token=s3cr3t", "t": "resource", "su": "script", "d": 9,
                   "c": {"h": {"url": "https://cdn.shop.example/app.js?token=s3cr3t"}}}]}})
        .to_string(),
        json!({"e": {"id": "e1", "ex": {"mg": "boom", "st": [{"ap": page, "f": "(inline script)", "fn": "f", "li": 1, "co": 2}]},
            "c": {"p": {"url": page}}}})
        .to_string(),
    ]
    .join("\n");
    let (status, _, text) = post(&p, "/intake/v3/rum/events", body.into_bytes(), false).await;
    assert_eq!(status, 202, "{text}");
    let docs = p.wait_documents(4, Duration::from_secs(15));
    for doc in &docs {
        let text = doc.to_string();
        assert!(!text.contains("s3cr3t"), "a secret left: {text}");
        assert!(!text.contains("a@b.example"), "an e-mail left: {text}");
        assert_eq!(doc["url"]["path"], "/checkout");
    }
    assert_eq!(docs.len(), 4);
    let by_type = |ty: &str| docs.iter().find(|d| d["rum"]["type"] == ty).unwrap();
    assert!(by_type("http")["rum"]["http"]["url"]
        .as_str()
        .unwrap()
        .starts_with("https://api.shop.example/me?access_token="));
    assert!(by_type("error")["error"]["stack_trace"]
        .as_str()
        .unwrap()
        .contains("at f (https://shop.example/checkout?token="));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn label_names_past_max_label_names_are_kept_in_rum_extra_and_counted() {
    // Each label name is a field of the index; past `max_label_names`
    // distinct names a label is kept under `rum.extra`, counted and logged
    // once. The `labels` transform's own labels are not the browser's and
    // are never held back.
    let config = r#"
stats_interval_secs = 0
[sources.apm]
type = "elastic_apm_rum"
address = "127.0.0.1:0"
max_label_names = 2
[transforms.site]
type = "labels"
inputs = ["apm"]
labels = { site = "shop" }
[sinks.out]
type = "stdout"
inputs = ["site"]
"#;
    let p = Pipeline::start(config);
    let body = [
        r#"{"metadata":{"service":{"name":"shop"},"labels":{"a":"1","b":"2","c":"3"}}}"#,
        r#"{"transaction":{"id":"t1","type":"route-change","context":{"tags":{"a":"x","d":"4"}}}}"#,
    ]
    .join("\n");
    let (status, _, text) = post(&p, "/intake/v2/rum/events", body.into_bytes(), false).await;
    assert_eq!(status, 202, "{text}");
    let doc = p.next_document(Duration::from_secs(15));
    assert_eq!(doc["labels"], json!({"a": "x", "b": "2", "site": "shop"}));
    assert_eq!(doc["rum"]["extra"]["metadata"]["labels"], json!({"c": "3"}));
    assert_eq!(doc["rum"]["extra"]["context"]["tags"], json!({"d": "4"}));
    p.expect_metric(
        "elastic_apm_rum_labels_kept_in_extra_total",
        &[r#"component_id="apm""#],
        2.0,
    )
    .await;
    p.expect_metric(
        "elastic_apm_rum_label_names",
        &[r#"component_id="apm""#],
        2.0,
    )
    .await;
    let warning = p
        .wait_stderr(
            |line| line.contains("max_label_names"),
            Duration::from_secs(15),
        )
        .expect("the first label kept aside is logged");
    assert!(warning.contains("WARN"), "{warning}");
}
