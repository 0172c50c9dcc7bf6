//! Sinks: where events leave the pipeline. Each runs as one task that reads
//! its input buffer until every upstream is gone, then flushes and returns.

pub mod blackhole;
pub mod elasticsearch;
pub mod prometheus;
pub mod stdout;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{decode, unknown_type, CheckConfig};
use crate::http::server::{Health, Route};
use crate::shutdown::Shutdown;
use crate::telemetry::ComponentMetrics;
use crate::topology::SinkInput;

pub type SinkFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// A built sink: its run loop, and the HTTP route it serves, if any (the
/// `prometheus` sink is scraped).
pub struct BuiltSink {
    pub run: SinkFuture,
    pub route: Option<SinkRoute>,
}

impl From<SinkFuture> for BuiltSink {
    fn from(run: SinkFuture) -> Self {
        Self { run, route: None }
    }
}

/// A route a sink serves: on the sources' listener (`address` None) or on its own.
pub struct SinkRoute {
    pub address: Option<SocketAddr>,
    pub route: Route,
}

/// What a sink gets when it is built.
pub struct SinkContext {
    pub id: String,
    pub metrics: ComponentMetrics,
    /// Components that cannot deliver report it here, for `/health`.
    pub health: Arc<Health>,
    /// Begins when the pipeline starts shutting down, before the input
    /// closes: a sink that retries bounds its retries from then on.
    pub shutdown: Shutdown,
    /// Its buffer, and the transforms run in its task, if any
    /// ([`SinkInput`]).
    pub input: SinkInput,
}

#[derive(Debug, Clone)]
pub enum SinkConfig {
    Stdout(stdout::StdoutConfig),
    Blackhole(blackhole::BlackholeConfig),
    Elasticsearch(Box<elasticsearch::ElasticsearchConfig>),
    Prometheus(Box<prometheus::PrometheusConfig>),
}

impl SinkConfig {
    pub const TYPES: &'static [&'static str] =
        &["stdout", "blackhole", "elasticsearch", "prometheus"];

    pub fn parse(type_name: &str, table: toml::Table) -> Result<Self, (String, String)> {
        match type_name {
            "stdout" => decode(table).map(SinkConfig::Stdout),
            "blackhole" => decode(table).map(SinkConfig::Blackhole),
            "elasticsearch" => decode(table).map(|c| SinkConfig::Elasticsearch(Box::new(c))),
            "prometheus" => decode(table).map(|c| SinkConfig::Prometheus(Box::new(c))),
            other => Err(unknown_type("sink", other, Self::TYPES)),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::Blackhole(_) => "blackhole",
            SinkConfig::Elasticsearch(_) => "elasticsearch",
            SinkConfig::Prometheus(_) => "prometheus",
        }
    }

    /// Does everything fallible up front; the returned future is the run loop.
    pub fn build(&self, cx: SinkContext) -> anyhow::Result<SinkFuture> {
        self.build_sink(cx).map(|built| built.run)
    }

    /// `build`, plus the route the sink serves (the topology plans it).
    pub fn build_sink(&self, cx: SinkContext) -> anyhow::Result<BuiltSink> {
        match self {
            SinkConfig::Stdout(config) => config.build(cx).map(BuiltSink::from),
            SinkConfig::Blackhole(config) => config.build(cx).map(BuiltSink::from),
            SinkConfig::Elasticsearch(config) => config.build(cx).map(BuiltSink::from),
            SinkConfig::Prometheus(config) => config.build(cx),
        }
    }
}

impl CheckConfig for SinkConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        match self {
            SinkConfig::Stdout(_) | SinkConfig::Blackhole(_) | SinkConfig::Prometheus(_) => {
                Vec::new()
            }
            SinkConfig::Elasticsearch(config) => config.check(),
        }
    }

    fn check_keyed(&self) -> Vec<(String, String)> {
        match self {
            // Its keys name budgets and SLOs (`slos.lcp.target`).
            SinkConfig::Prometheus(config) => config.check_keyed(),
            _ => self
                .check()
                .into_iter()
                .map(|(key, message)| (key.to_owned(), message))
                .collect(),
        }
    }
}
