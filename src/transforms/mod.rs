//! Transforms: steps between sources and sinks that enrich, scrub, sample or
//! route events. Each runs as one task reading its input buffer batch by
//! batch; what it emits goes to its output ports (`id` for the default one,
//! `id.name` for named ones, as `route` has).

pub mod filter;
pub mod geoip;
pub mod labels;
pub mod route;
pub mod sample;
pub mod scrub_url;
pub mod user_agent;

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
            // The batch itself when the port is empty (the usual case): an
            // append copied every event into a new list at every stage.
            if port.is_empty() {
                *port = batch;
            } else {
                port.append(&mut batch);
            }
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
    UserAgent(user_agent::UserAgentConfig),
    Geoip(geoip::GeoipConfig),
    ScrubUrl(scrub_url::ScrubUrlConfig),
    Sample(sample::SampleConfig),
    Route(route::RouteConfig),
    Filter(filter::FilterConfig),
    Labels(labels::LabelsConfig),
}

impl TransformConfig {
    pub const TYPES: &'static [&'static str] = &[
        "user_agent",
        "geoip",
        "scrub_url",
        "sample",
        "route",
        "filter",
        "labels",
    ];

    pub fn parse(type_name: &str, table: toml::Table) -> Result<Self, (String, String)> {
        match type_name {
            "user_agent" => decode(table).map(TransformConfig::UserAgent),
            "geoip" => decode(table).map(TransformConfig::Geoip),
            "scrub_url" => decode(table).map(TransformConfig::ScrubUrl),
            "sample" => decode(table).map(TransformConfig::Sample),
            "route" => decode(table).map(TransformConfig::Route),
            "filter" => decode(table).map(TransformConfig::Filter),
            "labels" => decode(table).map(TransformConfig::Labels),
            other => Err(unknown_type("transform", other, Self::TYPES)),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            TransformConfig::UserAgent(_) => "user_agent",
            TransformConfig::Geoip(_) => "geoip",
            TransformConfig::ScrubUrl(_) => "scrub_url",
            TransformConfig::Sample(_) => "sample",
            TransformConfig::Route(_) => "route",
            TransformConfig::Filter(_) => "filter",
            TransformConfig::Labels(_) => "labels",
        }
    }

    /// Output ports, default first. Most transforms have only the default one;
    /// `route` has no default, only its routes and `_unmatched`.
    pub fn outputs(&self) -> Vec<String> {
        match self {
            TransformConfig::Route(config) => config.outputs(),
            _ => vec![DEFAULT_OUTPUT.to_owned()],
        }
    }

    pub fn build(&self, cx: &TransformContext) -> anyhow::Result<Box<dyn Transform>> {
        match self {
            TransformConfig::UserAgent(config) => Ok(Box::new(config.build(cx)?)),
            TransformConfig::Geoip(config) => Ok(Box::new(config.build(cx)?)),
            TransformConfig::ScrubUrl(config) => Ok(Box::new(config.build(cx)?)),
            TransformConfig::Sample(config) => Ok(Box::new(config.build(cx)?)),
            TransformConfig::Route(config) => Ok(Box::new(config.build())),
            TransformConfig::Filter(config) => Ok(Box::new(config.build(cx))),
            TransformConfig::Labels(config) => Ok(Box::new(config.build())),
        }
    }
}

impl CheckConfig for TransformConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        match self {
            TransformConfig::UserAgent(config) => config.check(),
            TransformConfig::Geoip(config) => config.check(),
            TransformConfig::ScrubUrl(config) => config.check(),
            TransformConfig::Sample(config) => config.check(),
            TransformConfig::Route(config) => config.check(),
            TransformConfig::Filter(config) => config.check(),
            TransformConfig::Labels(config) => config.check(),
        }
    }
}
