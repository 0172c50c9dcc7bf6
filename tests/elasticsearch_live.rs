//! The Elasticsearch sink against a real cluster. These tests are `#[ignore]`d:
//! Elasticsearch cannot be installed on the build machines, so `cargo test`
//! (and scripts/test.sh) runs the in-process double of
//! tests/elasticsearch_sink.rs instead. Run them against a cluster with
//!
//!   ELASTICSEARCH_URL=https://localhost:9200 ELASTICSEARCH_AUTH=elastic:changeme \
//!   ELASTICSEARCH_INSECURE=1 cargo test --test elasticsearch_live -- --ignored
//!
//! `ELASTICSEARCH_AUTH` is `user:password` or an API key; `ELASTICSEARCH_INSECURE=1`
//! skips certificate verification (a fresh cluster's self-signed certificate).
//! Run without `ELASTICSEARCH_URL`, they fail saying so (see docs/testing.md).
//!
//! Each test writes under its own index prefix and deletes what it created.

use std::sync::Arc;
use std::time::Duration;

use rum_pipeline::config::CheckConfig;
use rum_pipeline::event::Event;
use rum_pipeline::http::server::Health;
use rum_pipeline::sinks::{SinkConfig, SinkContext};
use rum_pipeline::telemetry::{ComponentMetrics, Registry};
use rum_pipeline::topology::buffer::buffer;
use rum_pipeline::topology::shutdown::ShutdownTrigger;
use serde_json::{json, Value};

struct Cluster {
    url: String,
    auth: Option<String>,
    insecure: bool,
    http: reqwest::Client,
}

fn cluster(test: &str) -> Cluster {
    let Ok(url) = std::env::var("ELASTICSEARCH_URL") else {
        panic!("{test}: ELASTICSEARCH_URL is not set (point it at an Elasticsearch 8+ or OpenSearch cluster to run it; see docs/testing.md)");
    };
    let insecure = std::env::var("ELASTICSEARCH_INSECURE").is_ok_and(|v| v == "1" || v == "true");
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(insecure)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    Cluster {
        url: url.trim_end_matches('/').to_owned(),
        auth: std::env::var("ELASTICSEARCH_AUTH")
            .ok()
            .filter(|a| !a.is_empty()),
        insecure,
        http,
    }
}

impl Cluster {
    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}/{path}", self.url));
        match &self.auth {
            Some(auth) => match auth.split_once(':') {
                Some((user, password)) => builder.basic_auth(user, Some(password)),
                None => builder.header("Authorization", format!("ApiKey {auth}")),
            },
            None => builder,
        }
    }

    async fn json(&self, method: reqwest::Method, path: &str) -> Value {
        let response = self
            .request(method, path)
            .send()
            .await
            .expect("cluster answers");
        response.json().await.expect("JSON answer")
    }

    fn sink_toml(&self, prefix: &str, extra: &str) -> String {
        let auth = match &self.auth {
            Some(auth) if auth.contains(':') => format!("auth = '{auth}'"),
            Some(key) => format!("auth = {{ api_key = '{key}' }}"),
            None => String::new(),
        };
        format!(
            "endpoints = '{}'\n{auth}\nindex_prefix = \"{prefix}\"\nmanage_template = true\nbatch.timeout_ms = 100\ntls.verify_certificates = {}\n{extra}\n",
            self.url, !self.insecure
        )
    }

    /// Runs a sink over `events` until everything is delivered.
    async fn deliver(&self, id: &str, toml_text: &str, events: Vec<Event>) -> Arc<Registry> {
        let table: toml::Table = toml::from_str(toml_text).expect("TOML");
        let config = SinkConfig::parse("elasticsearch", table).expect("config");
        assert!(config.check().is_empty(), "{:?}", config.check());
        let registry = Registry::new();
        let (tx, rx) = buffer(10_000, usize::MAX);
        let future = config
            .build(SinkContext {
                id: id.into(),
                metrics: ComponentMetrics::new(&registry, id, "sink", "elasticsearch"),
                health: Arc::new(Health::default()),
                // Never triggered: these runs end when their input closes.
                shutdown: ShutdownTrigger::new().subscribe(),
                input: rx.into(),
            })
            .expect("build");
        let task = tokio::spawn(future);
        tx.send(events).await.expect("send");
        drop(tx);
        tokio::time::timeout(Duration::from_secs(120), task)
            .await
            .expect("delivered in time")
            .expect("sink task");
        registry
    }

    async fn cleanup(&self, prefix: &str, template: &str) {
        let indices = self
            .json(
                reqwest::Method::GET,
                &format!("_cat/indices/{prefix}*?format=json&expand_wildcards=all"),
            )
            .await;
        for index in indices.as_array().into_iter().flatten() {
            if let Some(name) = index["index"].as_str() {
                if !name.starts_with(".ds-") {
                    let _ = self.request(reqwest::Method::DELETE, name).send().await;
                }
            }
        }
        let _ = self
            .request(reqwest::Method::DELETE, &format!("_data_stream/{prefix}*"))
            .send()
            .await;
        let _ = self
            .request(
                reqwest::Method::DELETE,
                &format!("_index_template/{template}"),
            )
            .send()
            .await;
        let _ = self
            .request(
                reqwest::Method::DELETE,
                &format!("_component_template/{template}-mappings"),
            )
            .send()
            .await;
    }

    async fn count(&self, pattern: &str) -> u64 {
        let _ = self
            .request(reqwest::Method::POST, &format!("{pattern}/_refresh"))
            .send()
            .await;
        self.json(reqwest::Method::GET, &format!("{pattern}/_count"))
            .await["count"]
            .as_u64()
            .unwrap_or(0)
    }
}

fn unique_prefix(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("rumtest{tag}{nanos}")
}

fn events(n: u64) -> Vec<Event> {
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let mut out: Vec<Event> = (0..n)
        .map(|i| {
            Event::from(json!({
                "@timestamp": now,
                "event": {"kind": "event", "dataset": "rum.web_vital"},
                "rum": {"type": "web_vital", "seq": i, "vital": {"name": "LCP", "value": 1000.0 + i as f64, "rating": "good"}},
                "session": {"id": "live-session"},
                "view": {"id": "live-view"},
                "client": {"geo": {"location": {"lat": 50.08, "lon": 14.43}}},
            }))
        })
        .collect();
    out.push(Event::from(json!({
        "@timestamp": now,
        "rum": {"type": "csp_violation"},
        "csp": {"format": "report-uri", "blocked_uri": "inline", "effective_directive": "script-src-elem"},
    })));
    out
}

#[tokio::test]
#[ignore = "needs a real cluster: ELASTICSEARCH_URL=... cargo test --test elasticsearch_live -- --ignored"]
async fn bulk_mode_writes_each_document_once() {
    let es = cluster("bulk_mode_writes_each_document_once");
    let prefix = unique_prefix("b");
    let toml_text = es.sink_toml(&prefix, "");
    let sent = events(200);
    let first = es.deliver(&prefix, &toml_text, sent.clone()).await;
    // The same documents again (a re-sent bulk): stored once, counted as duplicates.
    let second = es.deliver(&prefix, &toml_text, sent).await;
    let metrics = es.count(&format!("{prefix}.metrics-*")).await;
    let csp = es.count(&format!("{prefix}.csp.uri-*")).await;
    let mapping = es
        .json(
            reqwest::Method::GET,
            &format!("{prefix}.metrics-*/_mapping/field/client.geo.location"),
        )
        .await;
    es.cleanup(&prefix, &format!("rum-pipeline-{prefix}")).await;
    assert_eq!((metrics, csp), (200, 1));
    let sent_total = |r: &Registry| r.counter_sum("component_sent_events_total", &[]);
    assert_eq!(sent_total(&first), 201);
    assert_eq!(sent_total(&second), 201);
    assert_eq!(
        second.counter_sum("elasticsearch_duplicate_events_total", &[]),
        201
    );
    assert!(mapping.to_string().contains("geo_point"), "{mapping}");
}

#[tokio::test]
#[ignore = "needs a real cluster: ELASTICSEARCH_URL=... cargo test --test elasticsearch_live -- --ignored"]
async fn data_stream_mode_writes_into_data_streams() {
    let es = cluster("data_stream_mode_writes_into_data_streams");
    let prefix = unique_prefix("d");
    let toml_text = es.sink_toml(&prefix, "mode = \"data_stream\"");
    es.deliver(&prefix, &toml_text, events(50)).await;
    let streams = es
        .json(
            reqwest::Method::GET,
            &format!("_data_stream/{prefix}.metrics"),
        )
        .await;
    let count = es.count(&format!("{prefix}.metrics")).await;
    es.cleanup(&prefix, &format!("rum-pipeline-{prefix}")).await;
    assert_eq!(count, 50);
    assert_eq!(
        streams["data_streams"][0]["name"],
        format!("{prefix}.metrics"),
        "{streams}"
    );
}
