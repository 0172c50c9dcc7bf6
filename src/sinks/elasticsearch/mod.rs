//! Sink `elasticsearch`: events become documents in Elasticsearch (8+/9),
//! OpenSearch, or an engine that copies `_bulk` (Quickwit, OpenObserve...).
//!
//! Nothing lost: every item of every bulk answer is read; items that may
//! succeed later are re-sent alone with backoff inside the concurrency limit,
//! the others go to the dead-letter file. Nothing doubled: each document has a
//! deterministic `_id` and goes with `create`, so a re-send is answered 409,
//! which counts as delivered (exactly-once by `_id` on Elasticsearch and
//! OpenSearch; at-least-once on engines without `_id` semantics).
//!
//! Layout: `config` holds the configuration and its checks, this file the
//! build step; `index` names indices, `encoder` writes the NDJSON body and
//! the `_id`, `request` talks HTTP, `retry` decides, `service` runs the loop,
//! `dead_letter` keeps what cannot be delivered, `health` and `templates`
//! run at startup.

mod config;
#[cfg(test)]
mod config_tests;
pub mod dead_letter;
#[cfg(test)]
mod delivery_tests;
pub mod encoder;
pub mod health;
pub mod index;
pub mod metrics;
pub mod request;
pub mod retry;
pub mod service;
pub mod setup;
pub mod templates;

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use super::{SinkContext, SinkFuture};
pub use config::{
    redact, Auth, BatchConfig, Compression, DeadLetterConfig, ElasticsearchConfig, Endpoints,
    Engine, Mode, RequestConfig, RetryConfig, Secret, TlsConfig,
};
use dead_letter::DeadLetters;
use index::{IndexOptions, IndexRouter};
use metrics::SinkMetrics;
use request::{Backend, ClientSettings, EsClient};
use retry::Backoff;
use service::{Settings, Shared};

impl ElasticsearchConfig {
    pub fn router(&self) -> Result<IndexRouter, (&'static str, String)> {
        IndexRouter::new(&IndexOptions {
            template: self.index.as_deref(),
            // Canarytrace-style `c.` (prefix with its separator): never `c..metrics`.
            prefix: self.index_prefix.trim_end_matches('.'),
            data_stream: self.mode == Mode::DataStream,
            fallback: &self.index_fallback,
            allowed_values: &self.index_allowed_values,
        })
    }

    /// With `manage_template`: what it installs and the cluster URLs it
    /// installs it on (`None` without it, or when the sink's own keys are
    /// wrong: `check` says so).
    pub fn managed_templates(&self, id: &str) -> Option<(templates::TemplateSet, Vec<Url>)> {
        if !self.manage_template {
            return None;
        }
        let router = self.router().ok()?;
        let urls = self.resolve_endpoints().ok()?.urls;
        Some((templates::TemplateSet::for_sink(self, id, &router), urls))
    }

    fn settings(&self) -> Settings {
        Settings {
            max_events: self.batch.max_events,
            max_bytes: self.batch.max_bytes,
            timeout: Duration::from_millis(self.batch.timeout_ms),
            concurrency: self.request.concurrency,
            backoff: Backoff {
                initial: Duration::from_millis(self.retry.initial_backoff_ms),
                max: Duration::from_millis(self.retry.max_backoff_ms),
            },
            max_retry_duration: Duration::from_secs(self.retry.max_duration_secs),
            shutdown_deadline: Duration::from_secs(self.retry.shutdown_deadline_secs),
        }
    }

    /// The indices to create ahead of time, if asked.
    fn index_plan(&self, router: &IndexRouter) -> Result<Option<setup::IndexPlan>, String> {
        if self.create_indices_ahead_minutes == 0 {
            return Ok(None);
        }
        if self.mode == Mode::DataStream {
            return Err("data streams are created by their index template (manage_template); set it to 0 in data_stream mode".into());
        }
        let allowed: Vec<(index::TemplateField, Vec<String>)> = self
            .index_allowed_values
            .iter()
            .filter_map(|(k, v)| Some((index::TemplateField::parse(k)?, v.clone())))
            .collect();
        setup::IndexPlan::new(
            router.clone(),
            self.index.as_deref(),
            &allowed,
            Duration::from_secs(u64::from(self.create_indices_ahead_minutes) * 60),
        )
        .map(Some)
    }

    pub fn build(&self, cx: SinkContext) -> anyhow::Result<SinkFuture> {
        let router = self
            .router()
            .map_err(|(key, message)| anyhow::anyhow!("{key}: {message}"))?;
        let endpoints = self
            .resolve_endpoints()
            .map_err(|e| anyhow::anyhow!("endpoints: {e}"))?;
        let auth = endpoints
            .url_auth
            .clone()
            .unwrap_or_else(|| self.auth.clone());
        let ca_pem = match &self.tls.ca_file {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                anyhow::anyhow!("tls.ca_file: cannot read {}: {e}", path.display())
            })?),
            None => None,
        };
        let shown: Vec<String> = endpoints.urls.iter().map(Url::to_string).collect();
        let template_set = templates::TemplateSet::for_sink(self, &cx.id, &router);
        let template_name = template_set.name.clone();
        let templates = self.manage_template.then_some(setup::TemplatePlan {
            set: template_set,
            engine: self.engine,
        });
        let indices = self
            .index_plan(&router)
            .map_err(|e| anyhow::anyhow!("create_indices_ahead_minutes: {e}"))?;
        let client = EsClient::new(ClientSettings {
            endpoints: endpoints.urls,
            credentials: auth.credentials(),
            ca_pem,
            verify_certificates: self.tls.verify_certificates,
            timeout: Duration::from_millis(self.request.timeout_ms),
            gzip: self.compression == Compression::Gzip,
            bulk_answer_limit: request::bulk_answer_limit(self.batch.max_events),
        })?;
        let client = Arc::new(client);
        let settings = self.settings();
        let SinkContext {
            id,
            metrics,
            health,
            shutdown,
            input,
        } = cx;
        let (first_pass_tx, first_pass) = tokio::sync::watch::channel(false);
        let setup = setup::Setup {
            id: id.clone(),
            client: client.clone(),
            templates,
            indices,
            template_errors: metrics.errors("template_install_failed", "sending"),
            index_errors: metrics.errors("index_create_failed", "sending"),
        };
        let data_stream = self.mode == Mode::DataStream;
        let backend: Arc<dyn Backend> = Arc::new(setup::GatedClient {
            client: client.clone(),
            first_pass,
            require_data_stream: data_stream.then(|| setup::RequireDataStream::new(self.engine)),
            id: id.clone(),
        });
        let shared = Shared::new(
            id.clone(),
            backend,
            SinkMetrics::new(metrics),
            match self.dead_letter.max_bytes {
                0 => DeadLetters::new(self.dead_letter.path.clone()),
                max => DeadLetters::new(self.dead_letter.path.clone()).with_max_bytes(max as u64),
            },
            health,
            &settings,
        );
        let shared = Arc::new(if data_stream {
            shared.with_data_stream_template(template_name)
        } else {
            shared
        });
        let healthcheck = self.healthcheck;
        let described = format!(
            "{} ({:?} mode, auth: {}, compression: {:?}, dead letters: {})",
            shown.join(", "),
            self.mode,
            match auth {
                Auth::None => "none",
                Auth::Basic { .. } => "basic",
                Auth::ApiKey(_) => "api key",
            },
            self.compression,
            self.dead_letter
                .path
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "off (undeliverable documents are dropped and counted)".into()),
        );
        Ok(Box::pin(async move {
            tracing::info!(component = %id, "writing to {described}");
            let setup = tokio::spawn(setup.run(first_pass_tx));
            if healthcheck {
                let shared = shared.clone();
                tokio::spawn(async move {
                    match health::check(&client).await {
                        Ok(info) if info.supported => {
                            tracing::info!(component = %shared.id, "connected to {}", info.description)
                        }
                        Ok(info) => tracing::warn!(
                            component = %shared.id,
                            "connected to {}, which this sink does not support (Elasticsearch 8+, OpenSearch 1+, or an engine that copies _bulk such as Quickwit expected)",
                            info.description
                        ),
                        Err(failure) => shared.degraded(&failure),
                    }
                });
            }
            service::run(shared, router, settings, input, shutdown).await;
            setup.abort();
        }))
    }
}
