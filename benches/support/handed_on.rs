//! A batch as a pipeline hands it to a transform, for the benches that
//! time transforms over copies of one batch.
//!
//! `batch.clone()` shares each beacon's context with the original, and a
//! transform that edits a context its events do not hold alone copies it
//! first (`Event::edit_shared_context`): a copy per beacon that a pipeline
//! does not make (the source's events hold their context alone), which
//! such a clone would add to every timed transform.

use rum_pipeline::event::{context_runs, Batch, Counted, Event};

/// `batch` cloned, each run of events that share a context given a copy of
/// it that they alone hold (made here, outside the timing).
pub fn handed_on(batch: &Batch) -> Batch {
    let mut events = batch.clone();
    for run in context_runs(&mut events) {
        // Not held here alone: the edit copies the context for this run.
        Event::edit_shared_context(run, |_| {});
    }
    assert!(
        held_alone(&mut events),
        "handed_on: each context held by its events alone"
    );
    events
}

/// Whether each run of events that share a context holds every reference
/// to it, as a pipeline's events do.
pub fn held_alone(batch: &mut Batch) -> bool {
    context_runs(batch).all(|run| Counted::strong_count(run[0].context()) == run.len())
}
