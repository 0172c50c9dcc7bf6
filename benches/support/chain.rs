//! The bench's transform chains, built from `(type, TOML)` pairs as a
//! config file gives them, and run as a transform task runs its fused
//! stages. Shared by `examples/beacon_instructions.rs` and
//! `benches/elasticsearch_sink.rs`.

use rum_pipeline::event::Batch;
use rum_pipeline::telemetry::{ComponentMetrics, Registry};
use rum_pipeline::transforms::{Transform, TransformConfig, TransformContext};

/// Builds each transform from its type name and options.
pub fn build(
    specs: impl IntoIterator<Item = (&'static str, toml::Table)>,
) -> Vec<Box<dyn Transform>> {
    let registry = Registry::new();
    specs
        .into_iter()
        .map(|(type_name, table)| {
            let config = TransformConfig::parse(type_name, table).expect("chain config");
            let cx = TransformContext {
                id: type_name.to_owned(),
                metrics: ComponentMetrics::new(&registry, type_name, "transform", type_name),
            };
            config.build(&cx).expect("chain transform builds")
        })
        .collect()
}

/// As a transform task runs its fused stages (`topology::run_transform`):
/// one output list reused from stage to stage.
pub fn run(chain: &mut [Box<dyn Transform>], mut batch: Batch) -> Batch {
    let mut out = vec![Vec::new()];
    for transform in chain.iter_mut() {
        transform.transform(batch, &mut out);
        batch = std::mem::take(&mut out[0]);
    }
    batch
}
