//! Turns a checked `PipelineConfig` into running tasks: one per transform and
//! sink, one shared listener per source address, joined by event-counted
//! buffers. Building (`builder.rs`) does everything fallible (so `validate` can
//! run it without traffic); running (here) binds the listeners, serves, and on
//! shutdown drains.
//!
//! Shutdown order follows the data: listeners stop accepting and finish their
//! requests, which drops the sources' senders; each transform ends when its
//! input is empty and closed, dropping its own senders; sinks flush last.

pub mod buffer;
mod builder;
mod sink_input;
// The signal lives beside `http` (listeners wait on it too); the topology owns its trigger.
pub use crate::shutdown;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::task::JoinSet;

use crate::event::Batch;
use crate::http::limits::{BodyBudget, ConnectionCap, HttpServerOptions};
use crate::http::server::{
    ApiOptions, Health, Listener, ListenerLimits, Router, ADMIN_MAX_CONNECTIONS,
};
use crate::telemetry::{ComponentMetrics, Registry};
use buffer::Outputs;
pub use builder::{build, Built, PlannedListener};
use builder::{Branch, Stage, TransformTask};
pub use sink_input::SinkInput;

/// Batches already waiting are merged up to this many events (and the input
/// buffer's byte budget) before a transform runs: under load each hop then
/// costs one wake-up and one send per merged batch instead of per request.
const MAX_MERGED_EVENTS: usize = 1000;

/// How long the tasks a drain gave up on get to stop before the final
/// counters are logged.
const ABORTED_TASKS_WAIT: Duration = Duration::from_millis(500);

/// A component task that panicked (a sink's, or a transform task's outside
/// its transforms' code, which catches its own): the component and the
/// panic's message.
struct Panicked {
    component: String,
    message: String,
}

impl Panicked {
    fn new(component: String, payload: &(dyn std::any::Any + Send)) -> Self {
        // On one line: it may quote what a browser sent.
        let message = crate::stderr_log::panic_text(payload);
        Self { component, message }
    }
}

/// Runs a component task, `name` ("sink es") once it returns; a panic comes
/// back as `Err` naming the component (tokio's own error names only a task
/// number).
async fn guarded(
    name: String,
    task: impl Future<Output = Result<(), Panicked>>,
) -> Result<String, Panicked> {
    match AssertUnwindSafe(task).catch_unwind().await {
        Ok(Ok(())) => Ok(name),
        Ok(Err(panicked)) => Err(panicked),
        Err(payload) => Err(Panicked::new(name, &*payload)),
    }
}

async fn run_transform(mut task: TransformTask, health: Arc<Health>) -> Result<(), Panicked> {
    let name = task.name();
    while let Some(batch) = task.input.recv_merged(MAX_MERGED_EVENTS).await {
        run_segment(
            &mut task.stages,
            &task.outputs,
            &mut task.branches,
            batch,
            &health,
        )
        .await;
    }
    tracing::debug!(task = %name, "transform task finished");
    Ok(())
}

/// Runs `batch` through a task's stages (or a branch's) and hands what the
/// last one wrote on each port to the branch read there, run here in turn,
/// or to the port's downstream buffers. Boxed: a branch may end in a route
/// with branches of its own.
fn run_segment<'a>(
    stages: &'a mut [Stage],
    outputs: &'a Outputs,
    branches: &'a mut [Option<Branch>],
    batch: Batch,
    health: &'a Health,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
    Box::pin(async move {
        let Some((last, fused)) = stages.split_last_mut() else {
            return;
        };
        // A fused stage's one output.
        let mut stage_out: [Batch; 1] = [Vec::new()];
        let Some(batch) = run_chain(fused, batch, &mut stage_out, health) else {
            return;
        };
        last.metrics.received_events.add(batch.len() as u64);
        let mut out: Vec<Batch> = (0..outputs.ports().len()).map(|_| Vec::new()).collect();
        if !run_stage(last, batch, &mut out, health) {
            return;
        }
        let mut unsent = Unsent {
            component: &last.id,
            discarded: &last.metrics.discarded_unintentional,
            events: out.iter().map(|events| events.len() as u64).sum(),
        };
        for (((_, fanout), events), branch) in
            outputs.ports().iter().zip(out).zip(branches.iter_mut())
        {
            let count = events.len() as u64;
            if let Some(branch) = branch {
                // Handed on: the branch counts what it loses as its own.
                unsent.events -= count;
                branch.sent.add(count);
                if count > 0 {
                    run_segment(
                        &mut branch.stages,
                        &branch.outputs,
                        &mut branch.branches,
                        events,
                        health,
                    )
                    .await;
                }
                continue;
            }
            if fanout.send(events).await.is_err() {
                // Only when a downstream died (the others still got the
                // events): say it, count what it did not get.
                last.metrics.discarded_unintentional.add(count);
                last.metrics.errors("downstream_closed", "sending").inc();
                tracing::error!(component = %last.id, "a downstream component has stopped; {count} events not delivered to it");
            }
            unsent.events -= count;
        }
    })
}

/// Runs `batch` through `stages` in order, each one's single output the
/// next one's input (`scratch`: one empty port), counting what each
/// received and handed on. `None` when a stage lost the batch (a panic:
/// see [`run_stage`]).
fn run_chain(
    stages: &mut [Stage],
    mut batch: Batch,
    scratch: &mut [Batch],
    health: &Health,
) -> Option<Batch> {
    for stage in stages.iter_mut() {
        stage.metrics.received_events.add(batch.len() as u64);
        if !run_stage(stage, batch, scratch, health) {
            return None;
        }
        batch = std::mem::take(&mut scratch[0]);
        stage.sent.add(batch.len() as u64);
    }
    Some(batch)
}

/// Runs one stage's transform on `batch` into `out` (empty ports),
/// catching a panic: a bug one event can trigger (a crafted beacon). Ending
/// the task stopped the pipeline, and a browser sending that event again
/// and again kept it in a crash loop, losing every buffered event at each
/// restart. `false` when the batch was lost (nothing to hand on).
///
/// The first panic of a stage loses the whole batch it held (merged: up to
/// `MAX_MERGED_EVENTS` events of many browsers): the transform took it by
/// value and edits it in place, so what is left after the panic is neither
/// the batch as it came nor as it would have left. From then on the stage
/// is careful, for good: it keeps a copy of each batch it takes (an `Event`
/// clone is two reference counts and a few words; what the transform edits
/// is then copied on write instead of edited in place), and when it panics
/// again it replays the copy one event at a time, each in its own
/// `catch_unwind`: only the events that panic alone are lost. It stays
/// careful because the event that triggers the bug comes back (a browser
/// retries, a page keeps sending it) and one crafted on purpose comes back
/// at will; leaving careful mode after some clean batches would lose a
/// whole batch of other browsers' events each time it did.
///
/// Every transform gives each event the same result alone as in a batch
/// (what some do once per beacon, they do for the event's own beacon), so
/// the replay changes what an event becomes in nothing. Counters add up:
/// the stage's received events are its output, its own intentional
/// discards (counted by the transforms after their work, so a panic leaves
/// none counted for the batch) and the events lost here.
fn run_stage(stage: &mut Stage, batch: Batch, out: &mut [Batch], health: &Health) -> bool {
    let copy = stage.careful.then(|| batch.clone());
    let held = batch.len();
    let transform = &mut stage.transform;
    let Err(payload) =
        std::panic::catch_unwind(AssertUnwindSafe(|| transform.transform(batch, out)))
    else {
        return true;
    };
    // What it had written before its panic was part of the batch.
    for port in out.iter_mut() {
        port.clear();
    }
    let message = crate::stderr_log::panic_text(&*payload);
    let component = format!("transform {}", stage.id);
    let replayed = copy.is_some();
    let (lost, panics) = match copy {
        None => {
            stage.careful = true;
            if stage.panic_log.admit() {
                tracing::error!(
                    "{component} panicked: {message}; the {held} events of the batch it held are counted as discarded, and it goes on with the next batch, keeping a copy of each from now on so that a panic loses only the events that cause it"
                );
            }
            (held, 1)
        }
        Some(copy) => {
            let lost = replay(&mut **transform, copy, out);
            if stage.panic_log.admit() {
                tracing::error!(
                    "{component} panicked: {message}; the {held} events of the batch it held were run again one by one: the {lost} that panicked alone are counted as discarded, the others went on"
                );
            }
            // The batch's panic, and each event's own.
            (lost, 1 + lost)
        }
    };
    stage.metrics.discarded_unintentional.add(lost as u64);
    stage
        .metrics
        .errors("panicked", "processing")
        .add(panics as u64);
    stage.panics += panics as u64;
    // /health is public: the message may quote what a browser sent.
    health.set_degraded(
        &stage.id,
        Some(format!(
            "this transform panicked {} time(s) since start (a bug; its message is in the log); the first panic lost the batch it held, the later ones only the events that panicked",
            stage.panics
        )),
    );
    replayed
}

/// Runs `transform` on `batch` one event at a time, each in its own
/// `catch_unwind`, appending what passes to `out` in order; the events that
/// panic are dropped. Returns how many did.
fn replay(
    transform: &mut dyn crate::transforms::Transform,
    batch: Batch,
    out: &mut [Batch],
) -> usize {
    let mut one: Vec<Batch> = out.iter().map(|_| Vec::new()).collect();
    let mut lost = 0;
    for event in batch {
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            transform.transform(vec![event], &mut one)
        }));
        for (port, events) in out.iter_mut().zip(&mut one) {
            if ran.is_ok() {
                port.append(events);
            } else {
                events.clear();
            }
        }
        lost += usize::from(ran.is_err());
    }
    lost
}

/// The events a transform task has made and not yet handed to every
/// downstream. A task stopped while it waits for room (aborted when the
/// drain passed `shutdown_timeout`) loses them; they are counted then as
/// the last stage's, received and discarded, as the events left in a
/// buffer are its reader's.
struct Unsent<'a> {
    component: &'a str,
    discarded: &'a crate::telemetry::Counter,
    events: u64,
}

impl Drop for Unsent<'_> {
    fn drop(&mut self) {
        if self.events > 0 {
            self.discarded.add(self.events);
            tracing::error!(
                component = %self.component,
                "{} events the component held are lost: it was stopped while it waited for room downstream",
                self.events
            );
        }
    }
}

/// The connection cap and body budget every intake listener shares, with
/// gauges for both.
fn intake_limits(http: &HttpServerOptions, registry: &Registry) -> ListenerLimits {
    let connections = ConnectionCap::new(http.max_connections);
    let budget = BodyBudget::new(http.max_body_bytes_in_flight);
    let max_connections = connections.max();
    let open = connections.clone();
    registry.gauge_fn(
        "http_connections",
        "Client connections open on the intake listeners.",
        &[],
        move || open.open() as f64,
    );
    registry.gauge_fn(
        "http_max_connections",
        "The intake listeners' connection cap ([http] max_connections).",
        &[],
        move || max_connections as f64,
    );
    let in_flight = budget.clone();
    registry.gauge_fn(
        "http_body_bytes_in_flight",
        "Bytes of request bodies held right now (wire plus decompressed).",
        &[],
        move || in_flight.in_use() as f64,
    );
    let max = budget.max();
    registry.gauge_fn(
        "http_max_body_bytes_in_flight",
        "The budget of body bytes in flight ([http] max_body_bytes_in_flight).",
        &[],
        move || max as f64,
    );
    ListenerLimits {
        connections,
        timeouts: http.timeouts(),
        body_budget: Some(budget),
    }
}

/// Options for running, from the global config.
pub struct RunOptions {
    pub shutdown_timeout: Duration,
    pub stats_interval: Option<Duration>,
    /// Limits of the intake listeners (`[http]`).
    pub http: HttpServerOptions,
    /// The admin listener (`[api]`), if any.
    pub api: Option<ApiOptions>,
}

/// Binds, runs until `stop` resolves, then drains. Returns an error if the
/// drain did not finish within the timeout, or `give_up` (polled once the
/// drain has begun: [`next_interrupt`]) resolved first.
pub async fn run(
    built: Built,
    options: RunOptions,
    stop: impl Future<Output = ()>,
    give_up: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let Built {
        listeners,
        transforms,
        sinks,
        health,
        shutdown,
        registry,
        components,
    } = built;
    let intake_limits = intake_limits(&options.http, &registry);
    let mut bound = Vec::new();
    for planned in listeners {
        let tls = planned
            .tls
            .as_ref()
            .map(|tls| crate::http::tls::acceptor(tls, &registry))
            .transpose()?;
        let router = Router::new(
            planned.routes,
            health.clone(),
            registry.clone(),
            options.api.is_none(),
        );
        let listener = Listener::bind(planned.address, tls, router, intake_limits.clone()).await?;
        let paths: Vec<String> = planned.source_ids;
        bound.push((listener, paths));
    }
    let admin = match &options.api {
        Some(api) => {
            let router = Router::new(Vec::new(), health.clone(), registry.clone(), true);
            let limits = ListenerLimits {
                connections: ConnectionCap::new(ADMIN_MAX_CONNECTIONS),
                timeouts: intake_limits.timeouts,
                body_budget: None,
            };
            Some(Listener::bind(api.address, None, router, limits).await?)
        }
        None => None,
    };

    let mut tasks = JoinSet::new();
    for (id, future) in sinks {
        tasks.spawn(guarded(format!("sink {id}"), future.map(Ok)));
    }
    for task in transforms {
        tasks.spawn(guarded(
            format!("transform {}", task.name()),
            run_transform(task, health.clone()),
        ));
    }
    for (listener, source_ids) in bound {
        tracing::info!(
            "rum-pipeline {} listening on {}://{} (components: {})",
            env!("CARGO_PKG_VERSION"),
            listener.scheme(),
            listener.address,
            source_ids.join(", ")
        );
        let address = listener.address;
        let stop = shutdown.subscribe();
        tasks.spawn(guarded(
            format!("listener {address}"),
            listener.serve(stop).map(Ok),
        ));
    }
    if let Some(admin) = admin {
        // Worded apart from the intake's "listening on", which tools look for.
        tracing::info!(
            "admin endpoints /health and /metrics served on http://{}",
            admin.address
        );
        let address = admin.address;
        let stop = shutdown.subscribe();
        tasks.spawn(guarded(
            format!("admin listener {address}"),
            admin.serve(stop).map(Ok),
        ));
    }
    let names: Vec<String> = components
        .iter()
        .map(|c| format!("{} ({} {})", c.id, c.kind, c.type_name))
        .collect();
    tracing::info!("components: {}", names.join(", "));
    health.set_ready();

    let stats = options.stats_interval.map(|every| {
        let components = components.clone();
        tokio::spawn(async move {
            let mut ticker = tokio::time::interval(every);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                log_stats(&components);
            }
        })
    });

    // Until shutdown no task ends: one that does (a panic, a bug) leaves its
    // upstreams refusing every beacon. Then /health says so and the
    // pipeline shuts down, draining the rest, to exit 1 (restarted by its
    // supervisor) instead of answering 503 for ever behind a "ready".
    let mut failures = Vec::new();
    tokio::pin!(stop);
    tokio::select! {
        _ = &mut stop => {}
        Some(done) = tasks.join_next() => {
            let failure = match done {
                Ok(Ok(name)) => format!("{name} stopped before shutdown"),
                Ok(Err(panicked)) => panic_failure(&panicked, &components),
                Err(e) => format!("a component task failed: {e}"),
            };
            tracing::error!("{failure}; shutting down");
            health.set_failed(failure.clone());
            failures.push(failure);
        }
    }
    tracing::info!("shutting down: refusing new requests, draining buffers, flushing sinks");
    health.set_draining();
    shutdown.begin();
    let drain = tokio::time::timeout(options.shutdown_timeout, async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(Ok(name)) => tracing::debug!("{name} finished"),
                Ok(Err(panicked)) => failures.push(panic_failure(&panicked, &components)),
                Err(e) => {
                    tracing::error!("a component task failed: {e}");
                    failures.push(format!("a component task failed: {e}"));
                }
            }
        }
    });
    // `None`: given up on before the drain ended or timed out.
    let drained = tokio::select! {
        drained = drain => Some(drained),
        () = give_up => None,
    };
    if let Some(stats) = stats {
        stats.abort();
    }
    if !matches!(drained, Some(Ok(()))) {
        // Stopped where they are; each input buffer, dropped, counts what it
        // still held as its reader's loss, and each transform what it was
        // waiting to hand on (`Unsent`), so the counters below add up.
        // Bounded: a task stuck inside a poll cannot be stopped.
        tasks.abort_all();
        let stopped = async { while tasks.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(ABORTED_TASKS_WAIT, stopped).await;
    }
    log_stats(&components);
    match drained {
        Some(Ok(())) if failures.is_empty() => {
            tracing::info!("shutdown complete");
            Ok(())
        }
        Some(Ok(())) => Err(anyhow::anyhow!(
            "shutdown complete after a failure: {}",
            failures.join("; ")
        )),
        None => Err(anyhow::anyhow!(
                "a second SIGINT ended the drain; see the counters above for what was left"
        )),
        Some(Err(_)) => Err(anyhow::anyhow!(
            "shutdown_timeout_secs ({}) passed before every buffer drained; see the counters above for what was left",
            options.shutdown_timeout.as_secs()
        )),
    }
}

/// Logs a panic with its message, and returns the failure to report:
/// /health is public, and a panic's message may quote what a browser sent
/// (a URL, a token), so the failure names only the component.
fn panic_failure(panicked: &Panicked, components: &[ComponentMetrics]) -> String {
    // Built outside the macro: it counts, logged or not.
    let line = panic_log_line(panicked, components);
    tracing::error!("{line}");
    format!(
        "{} panicked (its message is in the log)",
        panicked.component
    )
}

/// The log line of a task's panic, counting it as the component's error (a
/// sink's: what waited in its input buffer is counted as it drops, and what
/// it had taken in as the sink's own state unwinds).
fn panic_log_line(panicked: &Panicked, components: &[ComponentMetrics]) -> String {
    let Panicked { component, message } = panicked;
    let metrics = component
        .split_once(' ')
        .and_then(|(kind, id)| components.iter().find(|c| c.kind == kind && c.id == id));
    match metrics {
        Some(metrics) => {
            metrics.errors("panicked", "processing").inc();
            format!(
                "{component} panicked: {message}; the events waiting in its input buffer and those it had taken in are counted as discarded"
            )
        }
        None => format!("{component} panicked: {message}"),
    }
}

fn log_stats(components: &[ComponentMetrics]) {
    for c in components {
        tracing::info!(
            component = %c.id,
            kind = c.kind,
            "events in={} out={} dropped={} (intentional={})",
            c.received_events.get(),
            c.sent_total(),
            c.discarded_intentional.get() + c.discarded_unintentional.get(),
            c.discarded_intentional.get()
        );
    }
}

/// Resolves on the first SIGINT (Ctrl-C) after its first poll: polled once
/// the drain has begun, it is Ctrl-C pressed again, to stop waiting for a
/// drain that cannot finish (a sink that cannot flush) without `kill -9`.
/// SIGTERM is not counted: a supervisor that sends it twice still drains.
pub async fn next_interrupt() {
    // Registered on this first poll, so the SIGINT that began the drain
    // does not count.
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Resolves on SIGTERM or SIGINT; SIGHUP is logged, not obeyed. Call it
/// inside the runtime, before anything serves.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, Signal, SignalKind};
        // Registered now, not on the first poll: until then the default
        // action of each would end the process without draining. tokio
        // keeps a handler for the rest of the process once it is set.
        let term = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        let hangup = signal(SignalKind::hangup()).ok();
        async move {
            async fn first(signal: Option<Signal>) {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            }
            // SIGHUP, which Vector users send to reload, must not kill the
            // pipeline: a geoip transform reloads its databases on it, a TLS
            // listener its certificate (their own handlers), and nothing
            // else reloads.
            let hangups = async move {
                let Some(mut hangup) = hangup else {
                    return std::future::pending().await;
                };
                while hangup.recv().await.is_some() {
                    tracing::info!("SIGHUP: GeoIP databases and TLS certificates reload on it; the pipeline config does not (restart to change it)");
                }
                std::future::pending::<()>().await
            };
            if term.is_none() && interrupt.is_none() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                _ = first(term) => {}
                _ = first(interrupt) => {}
                _ = hangups => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `beacons` into a blackhole sink `out`, built, nothing running.
    fn beacons_into_a_blackhole() -> Built {
        let text = r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[sinks.out]
type = "blackhole"
inputs = ["beacons"]
"#;
        built_from(text)
    }

    /// `beacons` through a `labels` transform `enrich` into a blackhole
    /// `out`, built, nothing running. The sink reads `beacons` too (nothing
    /// is sent there): `enrich` then runs in a task of its own, which these
    /// tests drive, not in the sink's (`sink_input`).
    pub(super) fn beacons_enriched_into_a_blackhole() -> Built {
        built_from(
            r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[transforms.enrich]
type = "labels"
inputs = ["beacons"]
labels = { a = "1" }
[sinks.out]
type = "blackhole"
inputs = ["enrich", "beacons"]
"#,
        )
    }

    /// The pipeline of `text`, built, nothing running.
    /// The metrics of component `id`.
    pub(super) fn metric(built: &Built, id: &str) -> ComponentMetrics {
        built
            .components
            .iter()
            .find(|c| c.id == id)
            .expect("component")
            .clone()
    }

    /// Runs `built` in a task, its listeners' senders replaced by the
    /// test's; the sender returned begins the shutdown.
    pub(super) fn start(
        built: Built,
        shutdown_timeout: Duration,
    ) -> (
        tokio::task::JoinHandle<anyhow::Result<()>>,
        tokio::sync::oneshot::Sender<()>,
    ) {
        let options = RunOptions {
            shutdown_timeout,
            stats_interval: None,
            http: HttpServerOptions::default(),
            api: None,
        };
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let run = tokio::spawn(run(
            built,
            options,
            async {
                let _ = stop_rx.await;
            },
            std::future::pending(),
        ));
        (run, stop_tx)
    }

    /// Waits while `cond` holds, looking again every 5 ms (the test's own
    /// timeout bounds it).
    pub(super) async fn wait_while(cond: impl Fn() -> bool) {
        while cond() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Stops `run` as the listener would: its sender `tx` goes once the
    /// drain has begun; the run must end well.
    pub(super) async fn stop(
        run: tokio::task::JoinHandle<anyhow::Result<()>>,
        stop_tx: tokio::sync::oneshot::Sender<()>,
        health: Arc<Health>,
        tx: buffer::BufferSender,
    ) {
        stop_tx.send(()).expect("stop");
        wait_while(|| !health.draining()).await;
        drop(tx);
        let ran = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the run stopped")
            .expect("join");
        assert!(ran.is_ok(), "{ran:?}");
    }

    /// `beacons -> a -> b -> c -> out`: three labels transforms run fused in
    /// one task (stages a, b, c); `out` reads `beacons` too, so that task is
    /// not the sink's.
    pub(super) fn fused_chain() -> Built {
        built_from(
            r#"
stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[transforms.a]
type = "labels"
inputs = ["beacons"]
labels = { a = "1" }
[transforms.b]
type = "labels"
inputs = ["a"]
labels = { b = "1" }
[transforms.c]
type = "labels"
inputs = ["b"]
labels = { c = "1" }
[sinks.out]
type = "blackhole"
inputs = ["c", "beacons"]
"#,
        )
    }

    pub(super) fn built_from(text: &str) -> Built {
        let loaded = crate::config::load_str("t.toml", text, &|_| None).expect("config");
        build(&loaded.config).expect("build")
    }

    /// Runs `built` with no signal ever coming, so it has to end by itself,
    /// and with a failure: the error's text.
    async fn run_to_its_failure(built: Built) -> String {
        let options = RunOptions {
            shutdown_timeout: Duration::from_secs(5),
            stats_interval: None,
            http: HttpServerOptions::default(),
            api: None,
        };
        let ran = tokio::time::timeout(
            Duration::from_secs(10),
            run(
                built,
                options,
                std::future::pending(),
                std::future::pending(),
            ),
        )
        .await
        .expect("the run went on with a dead component");
        ran.expect_err("exit 0 after a failure").to_string()
    }

    /// A sink's panic is its error as a transform's is: an alert on
    /// `component_errors_total` of the sink sees it.
    #[tokio::test]
    async fn a_sink_that_panics_counts_a_panicked_error() {
        let mut built = beacons_into_a_blackhole();
        built.sinks[0].1 = Box::pin(async {
            tokio::task::yield_now().await;
            panic!("a sink with a bug");
        });
        let registry = built.registry.clone();
        let error = run_to_its_failure(built).await;
        assert!(error.contains("sink out panicked"), "{error}");
        assert_eq!(
            registry.counter_sum(
                "component_errors_total",
                &[("component_id", "out"), ("error_type", "panicked")]
            ),
            1
        );
    }

    #[tokio::test]
    async fn a_component_that_stops_before_shutdown_fails_health_and_the_run() {
        let mut built = beacons_into_a_blackhole();
        // A sink with a bug: it stops, and its upstream refuses every beacon.
        built.sinks[0].1 = Box::pin(async {
            tokio::time::sleep(Duration::from_millis(20)).await;
        });
        let health = built.health.clone();
        let error = run_to_its_failure(built).await;
        assert!(
            error.contains("sink out stopped before shutdown"),
            "{error}"
        );
        assert_eq!(
            health.failure().as_deref(),
            Some("sink out stopped before shutdown")
        );
    }
}

#[cfg(test)]
mod panic_tests {
    use super::tests::wait_while;
    use super::*;
    use crate::event::Event;
    use crate::transforms::Transform;
    use std::sync::mpsc;

    /// A transform with a bug one batch triggers: it tells the test it has
    /// the first batch, waits until the test says more events wait behind
    /// it, then panics with a message holding what a browser sent. Later
    /// batches pass through.
    struct Poisoned {
        has_batch: mpsc::Sender<()>,
        go: mpsc::Receiver<()>,
        panicked: bool,
    }

    impl Transform for Poisoned {
        fn transform(&mut self, batch: Batch, out: &mut [Batch]) {
            if !self.panicked {
                self.panicked = true;
                let _ = self.has_batch.send(());
                let _ = self.go.recv();
                panic!(
                    "byte index 3 is not a char boundary of `https://shop.example/?token=SECRET`"
                );
            }
            out[0].extend(batch);
        }
    }

    pub(super) fn events(n: usize) -> Batch {
        (0..n).map(|_| Event::new()).collect()
    }

    /// A panic (a bug a crafted event can trigger) loses the batch the
    /// transform held, counted, and nothing more: the pipeline goes on, as
    /// a handler's panic leaves its listener serving. It used to stop the
    /// pipeline (exit 1), and a browser resending the event kept it in a
    /// crash loop, each restart losing what the buffers held.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_transform_that_panics_loses_only_its_batch_counted_and_goes_on() {
        let mut built = super::tests::beacons_enriched_into_a_blackhole();
        let (enrich, out) = (
            super::tests::metric(&built, "enrich"),
            super::tests::metric(&built, "out"),
        );
        let (has_batch_tx, has_batch) = mpsc::channel();
        let (go, go_rx) = mpsc::channel();
        // The transform's input, fed by the test instead of the listener.
        let (tx, rx) = buffer::component_buffer(&enrich, 100, usize::MAX);
        let task = &mut built.transforms[0];
        task.input = rx;
        task.stages[0].transform = Box::new(Poisoned {
            has_batch: has_batch_tx,
            go: go_rx,
            panicked: false,
        });
        let health = built.health.clone();
        let registry = built.registry.clone();
        let (mut run, stop_tx) = super::tests::start(built, Duration::from_secs(5));
        tx.send(events(3)).await.expect("sent");
        tokio::task::spawn_blocking(move || has_batch.recv())
            .await
            .expect("join")
            .expect("the transform took the batch");
        // Two more wait in its buffer when it panics.
        tx.send(events(2)).await.expect("sent");
        go.send(()).expect("go");
        // The two behind the panic reach the sink.
        while out.received_events.get() < 2 {
            assert!(
                !run.is_finished(),
                "the run ended after a transform's panic"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // /health stays ready and names the component, not what the panic
        // message quotes (a browser's URL, a token).
        assert_eq!(health.failure(), None);
        let degraded = health.degraded();
        let reason = degraded.get("enrich").expect("degraded");
        assert!(reason.contains("panicked 1 time"), "{reason}");
        assert!(!reason.contains("SECRET"), "{reason}");
        // Nothing lost silently: the batch it held is received and
        // discarded, and the error counted.
        assert_eq!(enrich.received_events.get(), 5);
        assert_eq!(enrich.sent_total(), 2);
        assert_eq!(enrich.discarded_unintentional.get(), 3);
        assert_eq!(
            registry.counter_sum(
                "component_errors_total",
                &[("component_id", "enrich"), ("error_type", "panicked")]
            ),
            1
        );
        // The test stands for the listener: its sender goes once the drain
        // has begun, as the listener's would (before it, a closed input is
        // a transform stopped early).
        stop_tx.send(()).expect("stop");
        wait_while(|| !health.draining()).await;
        drop(tx);
        let ran = tokio::time::timeout(Duration::from_secs(10), &mut run)
            .await
            .expect("the run stopped")
            .expect("join");
        assert!(ran.is_ok(), "{ran:?}");
    }

    /// Drops the events of its first batch that have `i` past 1, then
    /// panics on that batch; later batches pass through.
    struct PanicsOnce(bool);

    impl Transform for PanicsOnce {
        fn transform(&mut self, mut batch: Batch, out: &mut [Batch]) {
            if !self.0 {
                self.0 = true;
                batch.truncate(1);
                out[0].extend(batch);
                panic!("a bug");
            }
            out[0].extend(batch);
        }
    }

    /// In a fused chain the middle stage's panic counts its batch as its
    /// own: the stage before sent it, the one after never received it, and
    /// what the middle one had already written is not handed on.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panic_in_the_middle_of_a_fused_chain_is_counted_there() {
        let mut built = super::tests::fused_chain();
        let (a, b, c, out) = (
            super::tests::metric(&built, "a"),
            super::tests::metric(&built, "b"),
            super::tests::metric(&built, "c"),
            super::tests::metric(&built, "out"),
        );
        let (tx, rx) = buffer::component_buffer(&a, 100, usize::MAX);
        let task = &mut built.transforms[0];
        assert_eq!(task.stages.len(), 3, "fused");
        task.input = rx;
        task.stages[1].transform = Box::new(PanicsOnce(false));
        let health = built.health.clone();
        let (run, stop_tx) = super::tests::start(built, Duration::from_secs(5));
        tx.send(events(3)).await.expect("sent");
        wait_while(|| b.discarded_unintentional.get() < 3).await;
        tx.send(events(2)).await.expect("sent");
        wait_while(|| out.received_events.get() < 2).await;
        assert_eq!((a.received_events.get(), a.sent_total()), (5, 5));
        assert_eq!((b.received_events.get(), b.sent_total()), (5, 2));
        assert_eq!(b.discarded_unintentional.get(), 3);
        assert_eq!((c.received_events.get(), c.sent_total()), (2, 2));
        assert_eq!(c.discarded_unintentional.get(), 0);
        assert!(health.degraded().contains_key("b"));
        stop_tx.send(()).expect("stop");
        wait_while(|| !health.draining()).await;
        drop(tx);
        let ran = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the run stopped")
            .expect("join");
        assert!(ran.is_ok(), "{ran:?}");
    }
}

#[cfg(test)]
mod careful_tests {
    use super::panic_tests::events;
    use super::tests::{metric, stop, wait_while};
    use super::*;
    use crate::event::Event;
    use crate::transforms::Transform;
    use serde_json::json;

    /// A transform with a bug the event at `/poison` triggers: it marks each
    /// event it has seen (`url.domain`), and panics at the poisoned one.
    struct PanicsOnPoison;

    impl Transform for PanicsOnPoison {
        fn transform(&mut self, mut batch: Batch, out: &mut [Batch]) {
            for event in &mut batch {
                if event.get_str("url.path") == Some("/poison") {
                    panic!("a bug");
                }
                event.insert("url.domain", "seen");
            }
            out[0].extend(batch);
        }
    }

    /// Passes its events on, noting each one's path and mark.
    struct Recorder(Arc<std::sync::Mutex<Vec<(String, String)>>>);

    impl Transform for Recorder {
        fn transform(&mut self, batch: Batch, out: &mut [Batch]) {
            let mut seen = self.0.lock().expect("lock");
            for event in &batch {
                let get = |path| event.get_str(path).unwrap_or_default().to_owned();
                seen.push((get("url.path"), get("url.domain")));
            }
            out[0].extend(batch);
        }
    }

    /// `n` events at `/0`, `/1`, ..., the one at `poisoned` at `/poison`.
    /// `with_poison`'s events, `url.domain` "even" or "odd" by their place.
    fn parity_batch(n: usize, poisoned: usize) -> Batch {
        with_poison(n, poisoned)
            .into_iter()
            .enumerate()
            .map(|(i, mut event)| {
                event.insert("url.domain", if i % 2 == 0 { "even" } else { "odd" });
                event
            })
            .collect()
    }

    fn with_poison(n: usize, poisoned: usize) -> Batch {
        (0..n)
            .map(|i| {
                let path = if i == poisoned {
                    "/poison".to_owned()
                } else {
                    format!("/{i}")
                };
                Event::from(json!({"url": {"path": path}}))
            })
            .collect()
    }

    /// The first panic loses the batch the transform held (nothing of it
    /// is left to run again); from then on a poisoned event loses only
    /// itself, not the up to 999 events of other browsers merged with it:
    /// a browser resending it lost them all each time. The others come out
    /// transformed, in order, and the counters add up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_its_first_panic_a_poisoned_event_loses_only_itself() {
        let mut built = super::tests::beacons_enriched_into_a_blackhole();
        let (enrich, out) = (
            super::tests::metric(&built, "enrich"),
            super::tests::metric(&built, "out"),
        );
        let (tx, rx) = buffer::component_buffer(&enrich, 1000, usize::MAX);
        let task = &mut built.transforms[0];
        task.input = rx;
        task.stages[0].transform = Box::new(PanicsOnPoison);
        let health = built.health.clone();
        let registry = built.registry.clone();
        let (run, stop_tx) = super::tests::start(built, Duration::from_secs(5));
        tx.send(with_poison(3, 1)).await.expect("sent");
        wait_while(|| enrich.discarded_unintentional.get() < 3).await;
        tx.send(with_poison(500, 250)).await.expect("sent");
        // Every event of the batch sent on or lost (today's code lost all).
        wait_while(|| enrich.sent_total() + enrich.discarded_unintentional.get() < 503).await;
        assert_eq!(enrich.discarded_unintentional.get(), 3 + 1);
        wait_while(|| out.received_events.get() < 499).await;
        assert_eq!(enrich.received_events.get(), 503);
        assert_eq!(enrich.sent_total(), 499);
        assert_eq!(enrich.discarded_unintentional.get(), 3 + 1);
        assert_eq!(enrich.discarded_intentional.get(), 0);
        // The first batch's panic; then the second batch's and its
        // poisoned event's own, run alone.
        assert_eq!(
            registry.counter_sum(
                "component_errors_total",
                &[("component_id", "enrich"), ("error_type", "panicked")]
            ),
            3
        );
        let degraded = health.degraded();
        let reason = degraded.get("enrich").expect("degraded");
        assert!(reason.contains("panicked 3 time"), "{reason}");
        // A batch without poison passes whole.
        tx.send(events(7)).await.expect("sent");
        wait_while(|| out.received_events.get() < 506).await;
        assert_eq!(enrich.discarded_unintentional.get(), 4);
        stop(run, stop_tx, health, tx).await;
    }

    /// Hands each event to its route's output as it goes (`route`'s own
    /// code, the last stage, several outputs), and panics at the poisoned
    /// one: by then the events before it are in their outputs.
    struct RoutesThenPanics(crate::transforms::route::Route);

    impl Transform for RoutesThenPanics {
        fn transform(&mut self, batch: Batch, out: &mut [Batch]) {
            for event in batch {
                if event.get_str("url.path") == Some("/poison") {
                    panic!("a bug");
                }
                self.0.transform(vec![event], out);
            }
        }
    }

    /// A beacon source and a route of its events by parity (`url.domain`
    /// "even" or "odd"): the head of the route tests' pipelines.
    const PARITY_ROUTE: &str = r#"stats_interval_secs = 0
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[transforms.by_parity]
type = "route"
inputs = ["beacons"]
route.even = { field = "url.domain", equals = "even" }
route.odd = { field = "url.domain", equals = "odd" }"#;

    /// A careful last stage of several outputs (a route) that panics after
    /// it has written part of its batch to its outputs: what it had written
    /// is not handed on twice (once as written, once from the run again),
    /// each event reaches its own route's sink once, and the counters add
    /// up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_careful_route_that_panicked_midway_sends_each_event_once() {
        let mut built = super::tests::built_from(
            &[
                PARITY_ROUTE,
                r#"
[sinks.evens]
type = "blackhole"
inputs = ["by_parity.even"]
[sinks.odds]
type = "blackhole"
inputs = ["by_parity.odd"]
"#,
            ]
            .concat(),
        );
        let [by_parity, evens, odds] =
            ["by_parity", "evens", "odds"].map(|id| super::tests::metric(&built, id));
        let (tx, rx) = buffer::component_buffer(&by_parity, 1000, usize::MAX);
        let task = &mut built.transforms[0];
        task.input = rx;
        let crate::transforms::TransformConfig::Route(config) = crate::transforms::TransformConfig::parse(
            "route",
            toml::from_str(
                "route.even = { field = \"url.domain\", equals = \"even\" }\nroute.odd = { field = \"url.domain\", equals = \"odd\" }",
            )
            .expect("toml"),
        )
        .expect("route") else {
            unreachable!()
        };
        task.stages[0].transform = Box::new(RoutesThenPanics(config.build()));
        let health = built.health.clone();
        let (run, stop_tx) = super::tests::start(built, Duration::from_secs(5));
        tx.send(parity_batch(4, 2)).await.expect("sent");
        wait_while(|| by_parity.discarded_unintentional.get() < 4).await;
        tx.send(parity_batch(100, 60)).await.expect("sent");
        wait_while(|| evens.received_events.get() + odds.received_events.get() < 99).await;
        tx.send(parity_batch(10, 99)).await.expect("sent");
        wait_while(|| evens.received_events.get() + odds.received_events.get() < 109).await;
        stop(run, stop_tx, health, tx).await;
        assert_eq!(evens.received_events.get(), 49 + 5);
        assert_eq!(odds.received_events.get(), 50 + 5);
        assert_eq!(by_parity.received_events.get(), 114);
        assert_eq!(by_parity.sent_total(), 109);
        assert_eq!(by_parity.discarded_unintentional.get(), 4 + 1);
    }

    /// A chain read from one port of a route runs in the route's task (a
    /// branch): each event reaches its own port's sink once, through the
    /// branch's transforms, a branch stage's panic loses only its own
    /// events (counted there), and every component's counters add up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_branch_runs_in_its_routes_task_and_its_counters_add_up() {
        let mut built = super::tests::built_from(
            &[
                PARITY_ROUTE,
                r#"
[transforms.mark]
type = "labels"
inputs = ["by_parity.even"]
labels = { parity = "even" }
[transforms.check]
type = "labels"
inputs = ["mark"]
labels = { checked = "yes" }
[sinks.evens]
type = "blackhole"
inputs = ["check", "by_parity._unmatched"]
[sinks.odds]
type = "blackhole"
inputs = ["by_parity.odd"]
"#,
            ]
            .concat(),
        );
        let [by_parity, mark, check, evens, odds] =
            ["by_parity", "mark", "check", "evens", "odds"].map(|id| metric(&built, id));
        assert_eq!(
            built.transforms.len(),
            1,
            "one task: the route and its branch"
        );
        let (tx, rx) = buffer::component_buffer(&by_parity, 1000, usize::MAX);
        let task = &mut built.transforms[0];
        task.input = rx;
        let port = task
            .outputs
            .ports()
            .iter()
            .position(|(name, _)| name == "even")
            .expect("port");
        assert_eq!(task.branches.iter().filter(|b| b.is_some()).count(), 1);
        let branch = task.branches[port].as_mut().expect("a branch on `even`");
        assert_eq!(branch.stages.len(), 2, "mark and check");
        branch.stages[1].transform = Box::new(PanicsOnPoison);
        let health = built.health.clone();
        let (run, stop_tx) = super::tests::start(built, Duration::from_secs(5));
        // Event 2 (even) poisons `check`: the first panic loses the three
        // even events the stage held; the odd ones reach their sink.
        tx.send(parity_batch(6, 2)).await.expect("sent");
        wait_while(|| check.discarded_unintentional.get() < 3 || odds.received_events.get() < 3)
            .await;
        // Careful now: of the next ten, only the poisoned one is lost.
        tx.send(parity_batch(10, 4)).await.expect("sent");
        wait_while(|| evens.received_events.get() + odds.received_events.get() < 12).await;
        stop(run, stop_tx, health.clone(), tx).await;
        assert_eq!(odds.received_events.get(), 3 + 5);
        assert_eq!(evens.received_events.get(), 4);
        assert_eq!(
            (by_parity.received_events.get(), by_parity.sent_total()),
            (16, 16)
        );
        assert_eq!((mark.received_events.get(), mark.sent_total()), (8, 8));
        assert_eq!(check.received_events.get(), 8);
        assert_eq!(check.sent_total(), 4);
        assert_eq!(check.discarded_unintentional.get(), 3 + 1);
        assert!(health.degraded().contains_key("check"));
    }

    /// In a fused chain the careful stage is the one that panicked: the
    /// events it keeps go on to the next stage, and each stage's counters
    /// add up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_careful_stage_in_a_fused_chain_hands_on_all_but_the_poisoned_event() {
        let mut built = super::tests::fused_chain();
        let [a, b, c, out] = ["a", "b", "c", "out"].map(|id| metric(&built, id));
        let (tx, rx) = buffer::component_buffer(&a, 1000, usize::MAX);
        let task = &mut built.transforms[0];
        assert_eq!(task.stages.len(), 3, "fused");
        task.input = rx;
        task.stages[1].transform = Box::new(PanicsOnPoison);
        let seen = Arc::default();
        task.stages[2].transform = Box::new(Recorder(Arc::clone(&seen)));
        let health = built.health.clone();
        let (run, stop_tx) = super::tests::start(built, Duration::from_secs(5));
        tx.send(with_poison(3, 0)).await.expect("sent");
        wait_while(|| b.discarded_unintentional.get() < 3).await;
        tx.send(with_poison(500, 250)).await.expect("sent");
        // `c` counts what it sent once the batch is downstream, after it
        // counted it received: both are waited for.
        wait_while(|| {
            b.discarded_unintentional.get() + c.received_events.get() < 503 || c.sent_total() < 499
        })
        .await;
        assert_eq!((a.received_events.get(), a.sent_total()), (503, 503));
        assert_eq!(a.discarded_unintentional.get(), 0);
        assert_eq!((b.received_events.get(), b.sent_total()), (503, 499));
        assert_eq!(b.discarded_unintentional.get(), 4);
        assert_eq!((c.received_events.get(), c.sent_total()), (499, 499));
        assert_eq!(c.discarded_unintentional.get(), 0);
        // The others, transformed, in their order.
        let expected: Vec<(String, String)> = (0..500)
            .filter(|i| *i != 250)
            .map(|i| (format!("/{i}"), "seen".to_owned()))
            .collect();
        assert_eq!(*seen.lock().expect("lock"), expected);
        wait_while(|| out.received_events.get() < 499).await;
        stop(run, stop_tx, health, tx).await;
    }
}

#[cfg(test)]
mod timeout_tests {
    use super::panic_tests::events;
    use super::tests::wait_while;
    use super::*;

    /// A transform waiting for room in a sink that no longer reads when
    /// `shutdown_timeout` passes is stopped where it is: the batch it holds
    /// is lost, and counted as its own (received and discarded), as the
    /// events left in a buffer are, so its counters add up.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_batch_a_transform_holds_at_the_shutdown_timeout_is_counted() {
        let mut built = super::tests::beacons_enriched_into_a_blackhole();
        let (enrich, out) = (
            super::tests::metric(&built, "enrich"),
            super::tests::metric(&built, "out"),
        );
        // The transform's input, fed by the test; its output, a sink buffer
        // of room for 3 events that nobody reads (a sink stuck in a write).
        let (tx, rx) = buffer::component_buffer(&enrich, 100, usize::MAX);
        let (stuck, _never_read) = buffer::component_buffer(&out, 3, usize::MAX);
        let task = &mut built.transforms[0];
        task.input = rx;
        task.outputs = buffer::Outputs::new(vec![(
            buffer::DEFAULT_OUTPUT.to_owned(),
            buffer::Fanout::new(
                vec![stuck.clone()],
                enrich.sent_events(buffer::DEFAULT_OUTPUT),
                enrich.discarded_intentional.clone(),
            ),
        )]);
        let (run, stop_tx) = super::tests::start(built, Duration::from_millis(300));
        // The first 3 fill the sink's buffer; then the transform takes 2
        // more and waits with them.
        tx.send(events(3)).await.expect("sent");
        wait_while(|| stuck.buffered_events() < 3).await;
        tx.send(events(2)).await.expect("sent");
        wait_while(|| tx.buffered_events() > 0).await;
        stop_tx.send(()).expect("stop");
        let ran = tokio::time::timeout(Duration::from_secs(10), run)
            .await
            .expect("the run ended at its timeout")
            .expect("join");
        let error = ran.expect_err("the drain timed out").to_string();
        assert!(error.contains("shutdown_timeout_secs"), "{error}");
        assert_eq!(enrich.received_events.get(), 5);
        assert_eq!(enrich.sent_total(), 3);
        assert_eq!(enrich.discarded_unintentional.get(), 2);
    }
}
