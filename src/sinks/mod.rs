//! Sinks: where events leave the pipeline. Each runs as one task that reads
//! its input buffer until every upstream is gone, then flushes and returns.

pub mod blackhole;
pub mod elasticsearch;
pub mod stdout;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{decode, unknown_type, CheckConfig};
use crate::http::server::Health;
use crate::telemetry::ComponentMetrics;
use crate::topology::buffer::BufferReceiver;

pub type SinkFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a sink gets when it is built.
pub struct SinkContext {
    pub id: String,
    pub metrics: ComponentMetrics,
    pub health: Arc<Health>,
    pub input: BufferReceiver,
}

#[derive(Debug, Clone)]
pub enum SinkConfig {
    Stdout(stdout::StdoutConfig),
    Blackhole(blackhole::BlackholeConfig),
    Elasticsearch(Box<elasticsearch::ElasticsearchConfig>),
}

impl SinkConfig {
    pub const TYPES: &'static [&'static str] = &["stdout", "blackhole", "elasticsearch"];

    pub fn parse(type_name: &str, table: toml::Table) -> Result<Self, (String, String)> {
        match type_name {
            "stdout" => decode(table).map(SinkConfig::Stdout),
            "blackhole" => decode(table).map(SinkConfig::Blackhole),
            "elasticsearch" => decode(table).map(|c| SinkConfig::Elasticsearch(Box::new(c))),
            other => Err(unknown_type("sink", other, Self::TYPES)),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SinkConfig::Stdout(_) => "stdout",
            SinkConfig::Blackhole(_) => "blackhole",
            SinkConfig::Elasticsearch(_) => "elasticsearch",
        }
    }

    /// Does everything fallible up front; the returned future is the run loop.
    pub fn build(&self, cx: SinkContext) -> anyhow::Result<SinkFuture> {
        match self {
            SinkConfig::Stdout(config) => config.build(cx),
            SinkConfig::Blackhole(config) => config.build(cx),
            SinkConfig::Elasticsearch(config) => config.build(cx),
        }
    }
}

impl CheckConfig for SinkConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        match self {
            SinkConfig::Stdout(_) | SinkConfig::Blackhole(_) => Vec::new(),
            SinkConfig::Elasticsearch(config) => config.check(),
        }
    }
}
