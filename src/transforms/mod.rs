//! Transforms: steps between sources and sinks that enrich, scrub, sample or
//! route events. Each runs as one task reading its input buffer batch by
//! batch; what it emits goes to its output ports (`id` for the default one,
//! `id.name` for named ones, as `route` has).

pub mod sample;
pub mod scrub_url;

use crate::config::{decode, unknown_type, CheckConfig};
use crate::event::Batch;
use crate::telemetry::ComponentMetrics;
use crate::topology::buffer::DEFAULT_OUTPUT;

/// What a transform's run loop calls for every batch.
pub trait Transform: Send + 'static {
    /// Processes a batch; results go into `out`, one `Vec` per output port in
    /// the order of `TransformConfig::outputs` (index 0 first).
    fn transform(&mut self, batch: Batch, out: &mut [Batch]);
}

/// A transform that edits or drops events in place and has only the default output.
pub trait FunctionTransform: Send + 'static {
    fn transform_batch(&mut self, batch: &mut Batch);
}

impl<T: FunctionTransform> Transform for T {
    fn transform(&mut self, mut batch: Batch, out: &mut [Batch]) {
        self.transform_batch(&mut batch);
        if let Some(port) = out.first_mut() {
            port.append(&mut batch);
        }
    }
}

/// What a transform gets when it is built.
pub struct TransformContext {
    pub id: String,
    pub metrics: ComponentMetrics,
}

#[derive(Debug, Clone)]
pub enum TransformConfig {
    ScrubUrl(scrub_url::ScrubUrlConfig),
    Sample(sample::SampleConfig),
}

impl TransformConfig {
    pub const TYPES: &'static [&'static str] = &["scrub_url", "sample"];

    pub fn parse(type_name: &str, table: toml::Table) -> Result<Self, (String, String)> {
        match type_name {
            "scrub_url" => decode(table).map(TransformConfig::ScrubUrl),
            "sample" => decode(table).map(TransformConfig::Sample),
            other => Err(unknown_type("transform", other, Self::TYPES)),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            TransformConfig::ScrubUrl(_) => "scrub_url",
            TransformConfig::Sample(_) => "sample",
        }
    }

    /// Output ports, default first. Most transforms have only the default one.
    pub fn outputs(&self) -> Vec<String> {
        vec![DEFAULT_OUTPUT.to_owned()]
    }

    pub fn build(&self, cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        Ok(match self {
            TransformConfig::ScrubUrl(config) => Box::new(config.build(cx)?),
            TransformConfig::Sample(config) => Box::new(config.build(cx)?),
        })
    }
}

impl CheckConfig for TransformConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        match self {
            TransformConfig::ScrubUrl(config) => config.check(),
            TransformConfig::Sample(config) => config.check(),
        }
    }
}
