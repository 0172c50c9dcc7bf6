//! The sink's run loop and the life of one bulk request.
//!
//! The loop reads the input buffer, encodes events into the current batch and
//! hands a full (or timed-out) batch to a delivery task — after taking one of
//! `request.concurrency` slots. While every slot is taken the loop stops
//! reading, so the input buffer fills and sources answer 503: that is the
//! backpressure, and the sink's memory stays at about `concurrency + 1`
//! batches whatever Elasticsearch does.
//!
//! A delivery task keeps its slot until each of its documents is delivered or
//! dead-lettered: retries (only the failed items) wait inside the slot, so
//! they cannot pile up. On shutdown the loop drains its input; whatever is not
//! delivered by `retry.shutdown_deadline_secs` goes to the dead-letter file.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{sleep, sleep_until, Instant};
use tracing::Level;

use super::dead_letter::{DeadLetterError, DeadLetters};
use super::encoder::{subset_body, BulkBatch, ItemSpan};
use super::index::{BatchIndex, IndexRouter};
use super::metrics::SinkMetrics;
use super::request::Backend;
use super::retry::{judge, Answer, Backoff, Failure, Verdict, DATA_STREAM_MISSING};
use crate::http::server::Health;
use crate::log_limit::LogLimit;
use crate::shutdown::Shutdown;
use crate::topology::SinkInput;

/// When a batch is sent and how many are in flight.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_events: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
    pub concurrency: usize,
    pub backoff: Backoff,
    /// A batch is dead-lettered once it has been retried this long.
    pub max_retry_duration: Duration,
    /// After shutdown begins, undelivered documents are dead-lettered this late.
    pub shutdown_deadline: Duration,
}

/// What every delivery task shares.
pub struct Shared {
    pub id: String,
    pub backend: Arc<dyn Backend>,
    pub metrics: SinkMetrics,
    pub dead_letters: DeadLetters,
    pub health: Arc<Health>,
    pub backoff: Backoff,
    pub max_retry_duration: Duration,
    /// Whether /health currently lists this sink as degraded (saves the lock).
    degraded: AtomicBool,
    /// Whether the "cannot write" warning of the current degraded spell was
    /// logged, so its "writing again" line is logged too (and only then).
    degraded_announced: AtomicBool,
    /// How the current degraded spell fails (`Failure::kind`), as /health
    /// shows it: a new kind within the spell is logged with its reason too,
    /// as /health shows no reason.
    degraded_kind: Mutex<String>,
    /// Whether /health lists the dead-letter file as failing.
    dead_letters_failing: AtomicBool,
    /// Log floods: an ERROR per dead-lettered batch, one per batch dropped
    /// because the dead-letter file failed, a WARN per degraded spell (one
    /// per partial 429 under steady overload), a WARN per split.
    log_dead_letters: Arc<LogLimit>,
    log_dropped: Arc<LogLimit>,
    log_degraded: Arc<LogLimit>,
    log_split: Arc<LogLimit>,
    log_data_stream: Arc<LogLimit>,
    /// In data_stream mode, the index template that should create the data
    /// streams (`template_name`), named when documents are refused for want
    /// of one.
    data_stream_template: Option<String>,
}

impl Shared {
    pub fn new(
        id: String,
        backend: Arc<dyn Backend>,
        metrics: SinkMetrics,
        dead_letters: DeadLetters,
        health: Arc<Health>,
        settings: &Settings,
    ) -> Self {
        let limit = |what: &str, level| LogLimit::standard(format!("sinks.{id}: {what}"), level);
        Self {
            log_dead_letters: limit("documents dead-lettered", Level::ERROR),
            log_dropped: limit("documents dropped", Level::ERROR),
            log_degraded: limit("cannot write to Elasticsearch", Level::WARN),
            log_split: limit("bulk bodies split after 413", Level::WARN),
            log_data_stream: limit("documents refused for want of a data stream", Level::WARN),
            data_stream_template: None,
            id,
            backend,
            metrics,
            dead_letters,
            health,
            backoff: settings.backoff,
            max_retry_duration: settings.max_retry_duration,
            degraded: AtomicBool::new(false),
            degraded_announced: AtomicBool::new(false),
            degraded_kind: Mutex::new(String::new()),
            dead_letters_failing: AtomicBool::new(false),
        }
    }

    /// In data_stream mode: the index template meant to create the streams.
    pub fn with_data_stream_template(mut self, name: String) -> Self {
        self.data_stream_template = Some(name);
        self
    }

    /// Documents refused under `require_data_stream` (to be retried):
    /// counted, and said with what to do.
    fn data_stream_missing(&self, count: usize, failure: &Failure) {
        self.metrics.data_stream_missing.add(count as u64);
        if self.log_data_stream.admit() {
            let template = self.data_stream_template.as_deref().unwrap_or("?");
            tracing::warn!(
                component = %self.id,
                "{count} document(s) refused for want of a data stream ({failure}): no index template with `data_stream` matches the name — the template `{template}` is not installed (manage_template could not install it: see its warning; or manage_template is off and nobody installed it) — or a plain index holds the name. Without require_data_stream Elasticsearch would have created a plain index of that name, without mappings, and the data stream could never be created. Retrying with backoff for up to retry.max_duration_secs ({} s), then the documents go to the dead-letter file; install the template (docs/elasticsearch.md, section Data streams) or delete the plain index",
                self.max_retry_duration.as_secs()
            );
        }
    }

    pub fn degraded(&self, failure: &Failure) {
        let kind = failure.kind();
        // /health is public (SECURITY.md): how it fails, not the reason,
        // which names the endpoint (reqwest quotes the URL) or a user; the
        // reason is in the log. Listed before the flag is set: delivery
        // tasks fail and succeed at once on other workers, and a success
        // that finds the flag set takes off what this listed. (With the
        // flag set first, a success handled between the two cleared the
        // flag before the entry was made, and no later success, finding
        // the flag clear, took the entry off: /health said degraded for
        // good.)
        self.health.set_degraded(
            &self.id,
            Some(format!("cannot write to Elasticsearch ({kind}); retrying")),
        );
        let new_spell = !self.degraded.swap(true, Ordering::SeqCst);
        let new_kind = {
            let mut shown = self.degraded_kind.lock().unwrap_or_else(|e| e.into_inner());
            let changed = new_spell || *shown != kind;
            if changed {
                shown.clone_from(&kind);
            }
            changed
        };
        if new_kind {
            let announce = self.log_degraded.admit();
            if new_spell || announce {
                self.degraded_announced.store(announce, Ordering::Relaxed);
            }
            if announce {
                tracing::warn!(
                    component = %self.id,
                    "cannot write to Elasticsearch ({failure}); retrying with backoff — if this lasts, buffers fill and sources answer 503"
                );
            }
        }
    }

    fn recovered(&self) {
        if self.degraded.swap(false, Ordering::SeqCst) {
            if self.degraded_announced.swap(false, Ordering::Relaxed) {
                tracing::info!(component = %self.id, "writing to Elasticsearch again");
            }
            self.health.set_degraded(&self.id, None);
        }
    }

    /// The /health key of the dead-letter file's state.
    fn dead_letter_health_key(&self) -> String {
        format!("{} (dead-letter file)", self.id)
    }

    /// Writes the chosen items to the dead-letter file; if that fails they
    /// are lost, and counted and logged as such, and /health says so until
    /// a dead-letter write succeeds again.
    async fn dead_letter(&self, body: &[u8], items: &[ItemSpan], chosen: &[(usize, Failure)]) {
        if chosen.is_empty() {
            return;
        }
        let count = chosen.len() as u64;
        let list: Vec<(ItemSpan, &Failure)> = chosen.iter().map(|(i, f)| (items[*i], f)).collect();
        let first = &chosen[0].1;
        match self.dead_letters.write(body, &list).await {
            Ok(()) => {
                self.metrics.dead_lettered.add(count);
                if self.dead_letters_failing.swap(false, Ordering::SeqCst) {
                    self.health
                        .set_degraded(&self.dead_letter_health_key(), None);
                    tracing::info!(component = %self.id, "the dead-letter file is writable again");
                }
                if self.log_dead_letters.admit() {
                    tracing::error!(
                        component = %self.id,
                        "{count} document(s) written to the dead-letter file {}; first error: {first}",
                        self.dead_letters.path().map(|p| p.display().to_string()).unwrap_or_default()
                    );
                }
            }
            Err(e) => {
                self.metrics.dead_letter_errors.inc();
                self.metrics.component.discarded_unintentional.add(count);
                // The first drop after a good write is always logged.
                let mut first_drop = false;
                if matches!(e, DeadLetterError::Io { .. }) {
                    // Listed before the flag is set, as in `degraded`.
                    self.health.set_degraded(
                        &self.dead_letter_health_key(),
                        Some(format!(
                            "{e}; undeliverable documents are being dropped (component_discarded_events_total)"
                        )),
                    );
                    first_drop = !self.dead_letters_failing.swap(true, Ordering::SeqCst);
                }
                if first_drop || self.log_dropped.admit() {
                    tracing::error!(component = %self.id, "{count} document(s) dropped ({e}); first error: {first}");
                }
            }
        }
    }
}

/// The drain deadline, once shutdown has begun.
#[derive(Clone)]
struct Drain {
    deadline: watch::Receiver<Option<Instant>>,
}

impl Drain {
    fn deadline(&self) -> Option<Instant> {
        *self.deadline.borrow()
    }

    /// Resolves when the drain deadline has passed (never before shutdown).
    async fn passed(&mut self) {
        loop {
            let deadline = *self.deadline.borrow_and_update();
            if let Some(deadline) = deadline {
                sleep_until(deadline).await;
                return;
            }
            if self.deadline.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}

/// `after` from now; a duration past the clock's end (config refuses any
/// past a day) is a year, not a panic.
fn from_now(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after)
        .unwrap_or_else(|| now + Duration::from_secs(365 * 86_400))
}

fn begin_drain(tx: &watch::Sender<Option<Instant>>, after: Duration) {
    tx.send_if_modified(|deadline| {
        if deadline.is_none() {
            *deadline = Some(from_now(after));
            true
        } else {
            false
        }
    });
}

/// A batch being filled.
struct Building<'r> {
    batch: BulkBatch,
    /// Index names with the server time of the batch's start rendered in.
    index: BatchIndex<'r>,
    flush_at: Instant,
}

/// Hands batches to delivery tasks within the concurrency limit.
struct Dispatcher {
    shared: Arc<Shared>,
    slots: Arc<Semaphore>,
    tasks: JoinSet<()>,
    drain: Drain,
}

impl Dispatcher {
    async fn dispatch(&mut self, batch: BulkBatch) {
        if batch.is_empty() {
            return;
        }
        let mut drain = self.drain.clone();
        let slot = tokio::select! {
            biased;
            slot = self.slots.clone().acquire_owned() => slot.ok(),
            _ = drain.passed() => None,
        };
        match slot {
            Some(slot) => {
                self.tasks.spawn(deliver(
                    self.shared.clone(),
                    batch,
                    slot,
                    self.drain.clone(),
                ));
            }
            None => {
                let failure =
                    Failure::new(None, "shutdown", "not sent before the shutdown deadline");
                let all: Vec<(usize, Failure)> =
                    (0..batch.len()).map(|i| (i, failure.clone())).collect();
                self.shared
                    .dead_letter(&batch.body, &batch.items, &all)
                    .await;
            }
        }
        self.reap();
    }

    fn reap(&mut self) {
        while let Some(done) = self.tasks.try_join_next() {
            if let Err(e) = done {
                tracing::error!(component = %self.shared.id, "a bulk request task failed: {e}");
            }
        }
    }
}

/// Reads `input` until it closes, then returns once every document is
/// delivered or dead-lettered.
pub async fn run(
    shared: Arc<Shared>,
    router: IndexRouter,
    settings: Settings,
    mut input: SinkInput,
    mut shutdown: Shutdown,
) {
    let slots = Arc::new(Semaphore::new(settings.concurrency));
    shared
        .metrics
        .register_in_flight(slots.clone(), settings.concurrency);
    let (drain_tx, drain_rx) = watch::channel(None);
    let drain_tx = Arc::new(drain_tx);
    // Once shutdown has begun, a partial batch goes out as soon as nothing
    // more is ready instead of at its `batch.timeout_ms` (which may be past
    // the drain deadline: it would then be dead-lettered unsent).
    let mut drain_begun = drain_rx.clone();
    let mut draining = false;
    // Shutdown begins before the input closes (upstreams drain first), and
    // that is when the deadline has to start.
    let forward = tokio::spawn({
        let tx = drain_tx.clone();
        let after = settings.shutdown_deadline;
        async move {
            shutdown.recv().await;
            begin_drain(&tx, after);
        }
    });
    let mut dispatcher = Dispatcher {
        shared: shared.clone(),
        slots,
        tasks: JoinSet::new(),
        drain: Drain { deadline: drain_rx },
    };
    let mut building: Option<Building<'_>> = None;
    // Received, not yet in a delivery task or the dead-letter file.
    let mut taken = Unsettled {
        shared: shared.clone(),
        left: 0,
        holder: "the sink",
    };
    let mut scratch = Vec::with_capacity(4096);
    let batch_bytes = settings.max_bytes.min(16 * 1024 * 1024);

    loop {
        let flush_at = building
            .as_ref()
            .map(|b| if draining { Instant::now() } else { b.flush_at });
        let received = tokio::select! {
            received = input.recv() => Some(received),
            begun = drain_begun.changed(), if !draining => {
                // A closed channel: the run is ending anyway.
                draining = begun.is_err() || drain_begun.borrow().is_some();
                continue;
            }
            _ = sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => None,
        };
        let events = match received {
            None => {
                if let Some(full) = building.take() {
                    let count = full.batch.len();
                    dispatcher.dispatch(full.batch).await;
                    taken.settle(count);
                }
                continue;
            }
            Some(None) => break,
            Some(Some(events)) => events,
        };
        shared
            .metrics
            .component
            .received_events
            .add(events.len() as u64);
        taken.left += events.len();
        for event in &events {
            let b = building.get_or_insert_with(|| Building {
                batch: BulkBatch::with_capacity(batch_bytes, settings.max_events),
                index: router.prepare(&chrono::Utc::now()),
                flush_at: Instant::now() + settings.timeout,
            });
            b.batch.push(event, &b.index, &mut scratch);
            if b.batch.len() >= settings.max_events || b.batch.body.len() >= settings.max_bytes {
                if let Some(full) = building.take() {
                    let count = full.batch.len();
                    dispatcher.dispatch(full.batch).await;
                    taken.settle(count);
                }
            }
        }
        crate::event::drop_batch(events);
    }

    begin_drain(&drain_tx, settings.shutdown_deadline);
    if let Some(last) = building.take() {
        let count = last.batch.len();
        dispatcher.dispatch(last.batch).await;
        taken.settle(count);
    }
    while let Some(done) = dispatcher.tasks.join_next().await {
        if let Err(e) = done {
            tracing::error!(component = %shared.id, "a bulk request task failed: {e}");
        }
    }
    forward.abort();
}

/// Documents neither delivered nor dead-lettered yet: a delivery task's
/// batch, or what the run loop has taken in and not yet handed to a task
/// (the batch being filled, a full one waiting for a slot). Should their
/// holder end without settling them (a panic, or the sink aborted at the
/// shutdown timeout), they are counted as discarded, not lost silently.
struct Unsettled {
    shared: Arc<Shared>,
    left: usize,
    /// Who held them, for the log line.
    holder: &'static str,
}

impl Unsettled {
    fn settle(&mut self, count: usize) {
        self.left = self.left.saturating_sub(count);
    }
}

impl Drop for Unsettled {
    fn drop(&mut self) {
        if self.left > 0 {
            let metrics = &self.shared.metrics.component;
            metrics.discarded_unintentional.add(self.left as u64);
            metrics.errors("delivery_failed", "sending").inc();
            tracing::error!(component = %self.shared.id, "{} ended early; {} documents discarded", self.holder, self.left);
        }
    }
}

enum Step {
    Answered(Result<super::request::Reply, Failure>),
    Shutdown,
}

/// Delivers one batch: sends, reads every item, re-sends only the items that
/// may succeed later, dead-letters the rest. Returns when nothing is pending.
///
/// The batch's guard is made here, with the task: a task cancelled before
/// its first poll (the sink stopped in the turn that spawned it) drops it
/// unsettled, and its documents are counted, not lost.
fn deliver(
    shared: Arc<Shared>,
    batch: BulkBatch,
    slot: OwnedSemaphorePermit,
    drain: Drain,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let unsettled = Unsettled {
        shared: shared.clone(),
        left: batch.items.len(),
        holder: "a bulk request task",
    };
    deliver_batch(shared, batch, slot, drain, unsettled)
}

async fn deliver_batch(
    shared: Arc<Shared>,
    batch: BulkBatch,
    _slot: OwnedSemaphorePermit,
    mut drain: Drain,
    mut unsettled: Unsettled,
) {
    let BulkBatch { body, items } = batch;
    let body = Bytes::from(body);
    let give_up_at = from_now(shared.max_retry_duration);
    let metrics = &shared.metrics;
    let mut attempt: u32 = 0;
    // Item indices still to deliver; more than one group after a 413 split.
    let mut groups: Vec<Vec<usize>> = vec![(0..items.len()).collect()];
    while let Some(mut pending) = groups.pop() {
        loop {
            let request_body = if pending.len() == items.len() {
                body.clone()
            } else {
                Bytes::from(subset_body(&body, &items, &pending))
            };
            if attempt > 0 {
                metrics.retries.inc();
                metrics.retried_events.add(pending.len() as u64);
            }
            let started = Instant::now();
            let step = tokio::select! {
                biased;
                answer = send(&*shared.backend, request_body) => Step::Answered(answer),
                _ = drain.passed() => Step::Shutdown,
            };
            let answer = match step {
                Step::Answered(answer) => answer,
                Step::Shutdown => {
                    let failure = Failure::new(
                        None,
                        "shutdown",
                        "not delivered before the shutdown deadline",
                    );
                    let all: Vec<_> = pending.iter().map(|&i| (i, failure.clone())).collect();
                    shared.dead_letter(&body, &items, &all).await;
                    unsettled.settle(all.len());
                    break;
                }
            };
            metrics.latency.observe(started.elapsed().as_secs_f64());
            // A failed request counts once, as too large when its answer was cut.
            let request_errors = match &answer {
                Ok(reply) if reply.truncated => &metrics.response_too_large,
                _ => &metrics.request_errors,
            };
            let verdict = match &answer {
                Ok(reply) => {
                    metrics.sent_bytes.add(reply.wire_bytes as u64);
                    judge(
                        &Answer::Response {
                            status: reply.status,
                            retry_after: reply.retry_after,
                            body: &reply.body,
                            truncated: reply.truncated,
                        },
                        pending.len(),
                    )
                }
                Err(failure) => judge(&Answer::NoResponse(failure.clone()), pending.len()),
            };
            let (retry, failure, retry_after) = match verdict {
                Verdict::Items(results) => {
                    metrics
                        .delivered
                        .add((results.delivered + results.duplicates) as u64);
                    unsettled.settle(results.delivered + results.duplicates);
                    metrics.duplicates.add(results.duplicates as u64);
                    if !results.reject.is_empty() {
                        metrics.documents_rejected.add(results.reject.len() as u64);
                        let rejected: Vec<_> = results
                            .reject
                            .into_iter()
                            .map(|(position, failure)| (pending[position], failure))
                            .collect();
                        shared.dead_letter(&body, &items, &rejected).await;
                        unsettled.settle(rejected.len());
                    }
                    let stored = results.delivered + results.duplicates;
                    // ok: every item stored; failed: none; partial: some.
                    if stored == pending.len() {
                        metrics.requests_ok.inc();
                    } else if stored == 0 {
                        metrics.requests_failed.inc();
                    } else {
                        metrics.requests_partial.inc();
                    }
                    let missing: Vec<&Failure> = results
                        .retry
                        .iter()
                        .map(|(_, failure)| failure)
                        .filter(|failure| failure.error_type == DATA_STREAM_MISSING)
                        .collect();
                    if let Some(first) = missing.first() {
                        shared.data_stream_missing(missing.len(), first);
                    }
                    let Some((_, first)) = results.retry.first() else {
                        // The engine answered: whatever was refused, it is reachable.
                        shared.recovered();
                        break;
                    };
                    let first = first.clone();
                    let retry: Vec<usize> = results
                        .retry
                        .iter()
                        .map(|(position, _)| pending[*position])
                        .collect();
                    (retry, first, None)
                }
                Verdict::RetryAll {
                    failure,
                    retry_after,
                } => {
                    metrics.requests_failed.inc();
                    request_errors.inc();
                    (pending.clone(), failure, retry_after)
                }
                Verdict::RejectAll(failure) => {
                    metrics.requests_failed.inc();
                    request_errors.inc();
                    metrics.documents_rejected.add(pending.len() as u64);
                    let all: Vec<_> = pending.iter().map(|&i| (i, failure.clone())).collect();
                    shared.dead_letter(&body, &items, &all).await;
                    unsettled.settle(all.len());
                    break;
                }
                Verdict::Split(failure) => {
                    metrics.requests_failed.inc();
                    request_errors.inc();
                    if pending.len() == 1 {
                        shared
                            .dead_letter(&body, &items, &[(pending[0], failure)])
                            .await;
                        unsettled.settle(1);
                    } else {
                        if shared.log_split.admit() {
                            tracing::warn!(
                                component = %shared.id,
                                "Elasticsearch refused a bulk body of {} documents as too large (413); sending it in halves — lower batch.max_bytes",
                                pending.len()
                            );
                        }
                        let second = pending.split_off(pending.len() / 2);
                        groups.push(second);
                        groups.push(pending);
                    }
                    break;
                }
            };
            shared.degraded(&failure);
            let delay = shared.backoff.delay(attempt, retry_after, fastrand::f64());
            attempt = attempt.saturating_add(1);
            let limit = drain.deadline().map_or(give_up_at, |d| d.min(give_up_at));
            if Instant::now() + delay >= limit {
                let why = if drain.deadline().is_some_and(|d| d <= give_up_at) {
                    Failure::new(
                        failure.status,
                        "shutdown",
                        format!(
                            "not delivered before the shutdown deadline; last error: {failure}"
                        ),
                    )
                } else {
                    Failure::new(
                        failure.status,
                        "retries_exhausted",
                        format!(
                            "still failing after retry.max_duration_secs ({} s): {failure}",
                            shared.max_retry_duration.as_secs()
                        ),
                    )
                };
                let all: Vec<_> = retry.iter().map(|&i| (i, why.clone())).collect();
                shared.dead_letter(&body, &items, &all).await;
                unsettled.settle(all.len());
                break;
            }
            tracing::debug!(component = %shared.id, "retrying {} document(s) in {delay:?}: {failure}", retry.len());
            let waited = tokio::select! {
                _ = sleep(delay) => true,
                _ = drain.passed() => false,
            };
            if !waited {
                let why = Failure::new(
                    failure.status,
                    "shutdown",
                    format!("not delivered before the shutdown deadline; last error: {failure}"),
                );
                let all: Vec<_> = retry.iter().map(|&i| (i, why.clone())).collect();
                shared.dead_letter(&body, &items, &all).await;
                unsettled.settle(all.len());
                break;
            }
            pending = retry;
        }
    }
}

async fn send(backend: &dyn Backend, body: Bytes) -> Result<super::request::Reply, Failure> {
    backend.prepare().await?;
    backend.bulk(body).await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tracing_subscriber::layer::{Context, SubscriberExt as _};

    use super::*;
    use crate::telemetry::{ComponentMetrics, Registry};

    struct Unused;

    impl Backend for Unused {
        fn bulk(
            &self,
            _: Bytes,
        ) -> super::super::request::BoxFuture<'_, Result<super::super::request::Reply, Failure>>
        {
            unreachable!("no request is sent")
        }
    }

    fn shared(health: Arc<Health>) -> Shared {
        let registry = Registry::new();
        let settings = Settings {
            max_events: 10,
            max_bytes: 1024,
            timeout: Duration::from_secs(1),
            concurrency: 2,
            backoff: Backoff {
                initial: Duration::from_secs(1),
                max: Duration::from_secs(1),
            },
            max_retry_duration: Duration::from_secs(60),
            shutdown_deadline: Duration::from_secs(5),
        };
        Shared::new(
            "es".into(),
            Arc::new(Unused),
            SinkMetrics::new(ComponentMetrics::new(
                &registry,
                "es",
                "sink",
                "elasticsearch",
            )),
            DeadLetters::new(None),
            health,
            &settings,
        )
    }

    /// Runs `then` on the thread that logs a line holding `needle`, as that
    /// line is logged: what another worker may do meanwhile.
    struct WhileLogging<F> {
        needle: &'static str,
        then: F,
    }

    struct Message(String);

    impl tracing::field::Visit for Message {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            if field.name() == "message" {
                self.0 = format!("{value:?}");
            }
        }
    }

    impl<S: tracing::Subscriber, F: Fn() + 'static> tracing_subscriber::Layer<S> for WhileLogging<F> {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            let mut message = Message(String::new());
            event.record(&mut message);
            if message.0.contains(self.needle) {
                (self.then)();
            }
        }
    }

    /// Two delivery tasks, one failing and one succeeding at the same
    /// moment (a partial 429 while another batch goes through), left
    /// /health listing the sink for good when the success was handled
    /// between the failure's flag and its /health entry: the flag said
    /// healthy, so no later success took the entry off.
    #[test]
    fn a_success_handled_while_a_failure_is_being_reported_leaves_no_stale_degraded() {
        let health = Arc::new(Health::default());
        let shared = Arc::new(shared(health.clone()));
        let other_task = shared.clone();
        let subscriber = tracing_subscriber::registry().with(WhileLogging {
            needle: "cannot write to Elasticsearch",
            then: move || other_task.recovered(),
        });
        tracing::subscriber::with_default(subscriber, || {
            shared.degraded(&Failure::new(
                Some(429),
                "es_rejected_execution_exception",
                "busy",
            ));
        });
        // Requests go through from now on.
        shared.recovered();
        assert_eq!(health.degraded(), BTreeMap::new());
    }
}
