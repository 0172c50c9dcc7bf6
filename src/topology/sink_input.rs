//! What a sink reads: its input buffer, and, when a chain of transforms
//! feeds this sink and nothing else, that chain, run in the sink's own task
//! on each batch it takes ([`builder`](super::builder)'s `chains_into_sinks`).
//!
//! Each hop between tasks costs a channel send, a wake-up, and the events'
//! lines fetched again by whichever worker runs the next task: one `sample`
//! (rate 1, next to no work) between `rum_beacon` and a blackhole cost 0.8
//! µs of CPU a beacon (12.2 → 13.0) and 4 % of the beacons a second. A
//! linear chain's transforms already share one task (`fused_chains`); with
//! this, a pipeline `source → transforms → sink` has one hop, as
//! `source → sink` has.

use std::sync::Arc;

use super::buffer::BufferReceiver;
use super::builder::Stage;
use super::{run_chain, MAX_MERGED_EVENTS};
use crate::event::Batch;
use crate::http::server::Health;

/// What a chain run in a sink's task takes in one go, at most (with up to
/// `MAX_MERGED_EVENTS` events): a transform's default buffer budget, as a
/// chain in a task of its own took. Merged up to the sink's budget (4 MiB),
/// the batch the chain and a stalled sink held outside the buffer was
/// larger: peak RSS under 10x overload with the sink stalled rose from
/// 34.2 to 37.7 MiB.
const MAX_MERGED_BYTES: usize = crate::config::DEFAULT_TRANSFORM_BUFFER_MAX_BYTES;

/// A sink's input: batches as its upstream sent them, or as the chain run
/// in its task made them.
pub struct SinkInput {
    buffer: BufferReceiver,
    chain: Option<Chain>,
}

/// Transforms run in a sink's task, in order; each has one output, read
/// only by the next (the last one's by the sink).
pub(super) struct Chain {
    pub(super) stages: Vec<Stage>,
    pub(super) health: Arc<Health>,
    /// The one output each stage writes, reused batch after batch.
    scratch: Vec<Batch>,
}

impl Chain {
    pub(super) fn new(stages: Vec<Stage>, health: Arc<Health>) -> Self {
        Self {
            stages,
            health,
            scratch: vec![Vec::new()],
        }
    }

    /// The ids of its stages, `a+b+c`, for logs.
    pub(super) fn name(&self) -> String {
        let ids: Vec<&str> = self.stages.iter().map(|s| s.id.as_str()).collect();
        ids.join("+")
    }
}

impl From<BufferReceiver> for SinkInput {
    fn from(buffer: BufferReceiver) -> Self {
        Self {
            buffer,
            chain: None,
        }
    }
}

impl SinkInput {
    /// The buffer, read through `chain`.
    pub(super) fn with_chain(buffer: BufferReceiver, chain: Chain) -> Self {
        Self {
            buffer,
            chain: Some(chain),
        }
    }

    /// The next batch; `None` once every upstream is gone and the buffer is
    /// empty. With a chain, what waits is merged as a transform task merges
    /// it (up to `MAX_MERGED_EVENTS`) and run through the chain; a batch
    /// the chain empties (all sampled out, a panic) is not handed on.
    ///
    /// Cancel-safe, as the buffer's `recv` is (a sink awaits it in a
    /// `select!`): the only await is for a batch, and once one is taken it
    /// is run and returned with no await between.
    pub async fn recv(&mut self) -> Option<Batch> {
        let Some(chain) = &mut self.chain else {
            return self.buffer.recv().await;
        };
        loop {
            let batch = self
                .buffer
                .recv_merged_within(MAX_MERGED_EVENTS, MAX_MERGED_BYTES)
                .await?;
            if let Some(out) =
                run_chain(&mut chain.stages, batch, &mut chain.scratch, &chain.health)
            {
                if !out.is_empty() {
                    return Some(out);
                }
            }
        }
    }

    /// A batch that is already waiting (run through the chain), without
    /// waiting for one.
    pub fn try_recv(&mut self) -> Option<Batch> {
        let Some(chain) = &mut self.chain else {
            return self.buffer.try_recv();
        };
        loop {
            let batch = self.buffer.try_recv()?;
            if let Some(out) =
                run_chain(&mut chain.stages, batch, &mut chain.scratch, &chain.health)
            {
                if !out.is_empty() {
                    return Some(out);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::event::Event;
    use crate::log_limit::LogLimit;
    use crate::telemetry::{ComponentMetrics, Registry};
    use crate::topology::buffer::{component_buffer, DEFAULT_OUTPUT};
    use crate::transforms::Transform;

    /// Keeps every other event; panics on the batch where `panic_at` (an
    /// event count so far) is reached, once.
    struct KeepsEveryOther {
        seen: usize,
        panic_at: Option<usize>,
    }

    impl Transform for KeepsEveryOther {
        fn transform(&mut self, batch: Batch, out: &mut [Batch]) {
            for event in batch {
                self.seen += 1;
                if self.panic_at == Some(self.seen) {
                    self.panic_at = None;
                    panic!("a bug");
                }
                if self.seen % 2 == 1 {
                    out[0].push(event);
                }
            }
        }
    }

    /// Passes batches on as they are.
    struct Passes;

    impl Transform for Passes {
        fn transform(&mut self, batch: Batch, out: &mut [Batch]) {
            out[0].extend(batch);
        }
    }

    fn stage(registry: &Arc<Registry>, id: &str, transform: Box<dyn Transform>) -> Stage {
        let metrics = ComponentMetrics::new(registry, id, "transform", "test");
        Stage {
            id: id.to_owned(),
            transform,
            sent: metrics.sent_events(DEFAULT_OUTPUT),
            panics: 0,
            careful: false,
            panic_log: LogLimit::standard(
                format!("transforms.{id}: panics"),
                tracing::Level::ERROR,
            ),
            metrics,
        }
    }

    fn events(n: usize) -> Batch {
        (0..n).map(|_| Event::new()).collect()
    }

    #[tokio::test]
    async fn a_chain_runs_on_each_batch_and_counts_each_stage() {
        let registry = Registry::new();
        let sink = ComponentMetrics::new(&registry, "out", "sink", "blackhole");
        let (tx, rx) = component_buffer(&sink, 100, usize::MAX);
        let stages = vec![
            stage(
                &registry,
                "halve",
                Box::new(KeepsEveryOther {
                    seen: 0,
                    panic_at: None,
                }),
            ),
            stage(&registry, "pass", Box::new(Passes)),
        ];
        let health = Arc::new(Health::default());
        let mut input = SinkInput::with_chain(rx, Chain::new(stages, health));
        tx.send(events(4)).await.expect("sent");
        tx.send(events(3)).await.expect("sent");
        // Both batches were waiting: merged, then run, as a transform task does.
        assert_eq!(input.recv().await.map(|b| b.len()), Some(4));
        assert_eq!(input.try_recv().map(|b| b.len()), None);
        tx.send(events(2)).await.expect("sent");
        assert_eq!(input.try_recv().map(|b| b.len()), Some(1));
        drop(tx);
        assert!(input.recv().await.is_none(), "closed and empty");
        let halve = ComponentMetrics::new(&registry, "halve", "transform", "test");
        let pass = ComponentMetrics::new(&registry, "pass", "transform", "test");
        assert_eq!((halve.received_events.get(), halve.sent_total()), (9, 5));
        assert_eq!((pass.received_events.get(), pass.sent_total()), (5, 5));
    }

    /// A batch the chain empties (every event sampled out) is not handed to
    /// the sink: `recv` waits for the next one.
    #[tokio::test]
    async fn an_emptied_batch_is_skipped() {
        let registry = Registry::new();
        let sink = ComponentMetrics::new(&registry, "out", "sink", "blackhole");
        let (tx, rx) = component_buffer(&sink, 100, usize::MAX);
        // Keeps events 1, 3, 5...: a batch of one after a batch of one is empty.
        let stages = vec![stage(
            &registry,
            "halve",
            Box::new(KeepsEveryOther {
                seen: 1,
                panic_at: None,
            }),
        )];
        let mut input = SinkInput::with_chain(rx, Chain::new(stages, Arc::new(Health::default())));
        tx.send(events(1)).await.expect("sent");
        assert!(input.try_recv().is_none(), "an empty batch handed on");
        let later = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(events(1)).await.expect("sent");
            tx.send(events(1)).await.expect("sent");
        });
        assert_eq!(input.recv().await.map(|b| b.len()), Some(1));
        later.await.expect("join");
    }

    /// A transform that panics in a sink's task loses the batch it held,
    /// counted and reported on `/health` under its own id, and the sink
    /// reads on: the same as in a task of its own (`run_stage`).
    #[tokio::test]
    async fn a_panic_in_the_chain_loses_only_its_batch_and_the_sink_reads_on() {
        let registry = Registry::new();
        let sink = ComponentMetrics::new(&registry, "out", "sink", "blackhole");
        let (tx, rx) = component_buffer(&sink, 100, usize::MAX);
        let stages = vec![stage(
            &registry,
            "buggy",
            Box::new(KeepsEveryOther {
                seen: 0,
                panic_at: Some(2),
            }),
        )];
        let health = Arc::new(Health::default());
        let mut input = SinkInput::with_chain(rx, Chain::new(stages, health.clone()));
        tx.send(events(3)).await.expect("sent");
        assert!(input.try_recv().is_none(), "the batch of the panic");
        tx.send(events(4)).await.expect("sent");
        // Events 3 to 6 (careful now, the run copied first): 3 and 5 kept.
        assert_eq!(input.try_recv().map(|b| b.len()), Some(2));
        let buggy = ComponentMetrics::new(&registry, "buggy", "transform", "test");
        assert_eq!(buggy.received_events.get(), 7);
        assert_eq!(buggy.sent_total(), 2);
        assert_eq!(buggy.discarded_unintentional.get(), 3);
        let degraded = health.degraded();
        assert!(
            degraded
                .get("buggy")
                .is_some_and(|r| r.contains("panicked 1 time")),
            "{degraded:?}"
        );
    }

    /// `recv` is awaited in a `select!` (the Elasticsearch sink's loop): a
    /// call given up before a batch came takes nothing.
    #[tokio::test]
    async fn a_recv_given_up_loses_nothing() {
        let registry = Registry::new();
        let sink = ComponentMetrics::new(&registry, "out", "sink", "blackhole");
        let (tx, rx) = component_buffer(&sink, 100, usize::MAX);
        let stages = vec![stage(&registry, "pass", Box::new(Passes))];
        let mut input = SinkInput::with_chain(rx, Chain::new(stages, Arc::new(Health::default())));
        let gave_up = tokio::time::timeout(Duration::from_millis(10), input.recv()).await;
        assert!(gave_up.is_err());
        tx.send(events(2)).await.expect("sent");
        assert_eq!(input.recv().await.map(|b| b.len()), Some(2));
    }
}
