//! Sink `blackhole`: counts events and discards them, as in Vector. For
//! benchmarks and for measuring the pipeline without an output's cost.

use serde::Deserialize;

use super::{SinkContext, SinkFuture};
use crate::topology::buffer::DEFAULT_OUTPUT;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlackholeConfig {}

impl BlackholeConfig {
    pub fn build(&self, cx: SinkContext) -> anyhow::Result<SinkFuture> {
        let SinkContext {
            metrics, mut input, ..
        } = cx;
        let sent = metrics.sent_events(DEFAULT_OUTPUT);
        Ok(Box::pin(async move {
            while let Some(batch) = input.recv().await {
                let n = batch.len() as u64;
                metrics.received_events.add(n);
                sent.add(n);
                crate::event::drop_batch(batch);
            }
        }))
    }
}
