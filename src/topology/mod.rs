//! Turns a checked `PipelineConfig` into running tasks: one per transform and
//! sink, one shared listener per source address, joined by event-counted
//! buffers. Building does everything fallible (so `validate` can run it without
//! traffic); running binds the listeners, serves, and on shutdown drains.
//!
//! Shutdown order follows the data: listeners stop accepting and finish their
//! requests, which drops the sources' senders; each transform ends when its
//! input is empty and closed, dropping its own senders; sinks flush last.

pub mod buffer;
pub mod shutdown;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::config::graph::split_input;
use crate::config::PipelineConfig;
use crate::event::Batch;
use crate::http::limits::{BodyBudget, ConnectionCap, HttpServerOptions};
use crate::http::server::{
    ApiOptions, Health, Listener, ListenerLimits, Route, Router, ADMIN_MAX_CONNECTIONS,
};
use crate::sinks::{SinkContext, SinkFuture, SinkRoute};
use crate::sources::{SourceContext, TlsOptions};
use crate::telemetry::{ComponentMetrics, Counter, Registry};
use crate::transforms::{Transform, TransformContext};
use buffer::{
    buffer, register_buffer_gauge, BufferReceiver, BufferSender, Fanout, Outputs, DEFAULT_OUTPUT,
};
use shutdown::ShutdownTrigger;

/// One shared listener's worth of routes, before binding.
pub struct PlannedListener {
    pub address: SocketAddr,
    pub tls: Option<TlsOptions>,
    pub routes: Vec<Route>,
    pub source_ids: Vec<String>,
}

/// One task: a transform with an input buffer, then any transforms fused
/// after it (see [`fused_chains`]); the last one's outputs leave the task.
struct TransformTask {
    input: BufferReceiver,
    stages: Vec<Stage>,
    outputs: Outputs,
}

struct Stage {
    id: String,
    transform: Box<dyn Transform>,
    metrics: ComponentMetrics,
    /// `component_sent_events_total` of a stage that hands its single output
    /// straight to the next stage.
    sent: Counter,
}

impl TransformTask {
    /// The ids of its stages, `a+b+c`, for logs.
    fn name(&self) -> String {
        let ids: Vec<&str> = self.stages.iter().map(|s| s.id.as_str()).collect();
        ids.join("+")
    }
}

/// Transforms that run inside their upstream's task: a transform whose only
/// input is the default output of a single-output transform that feeds
/// nothing else. Handing the batch over directly saves a buffer (its memory),
/// a channel send and a task wake-up per hop: a linear chain of enrichment
/// transforms then costs one task. Maps each fused transform to its upstream.
fn fused_chains(config: &PipelineConfig) -> HashMap<&str, &str> {
    let single_output: HashMap<&str, bool> = config
        .transforms
        .iter()
        .map(|t| (t.id.as_str(), t.config.outputs() == [DEFAULT_OUTPUT]))
        .collect();
    let mut readers: HashMap<(&str, &str), usize> = HashMap::new();
    let all_inputs = config
        .transforms
        .iter()
        .flat_map(|t| &t.inputs)
        .chain(config.sinks.iter().flat_map(|s| &s.inputs));
    for input in all_inputs {
        *readers.entry(split_input(input)).or_default() += 1;
    }
    let mut fused = HashMap::new();
    for t in &config.transforms {
        let [input] = t.inputs.as_slice() else {
            continue;
        };
        let (upstream, port) = split_input(input);
        if port == DEFAULT_OUTPUT
            && single_output.get(upstream) == Some(&true)
            && readers.get(&(upstream, port)) == Some(&1)
        {
            fused.insert(t.id.as_str(), upstream);
        }
    }
    fused
}

/// Everything built, nothing running yet.
pub struct Built {
    pub listeners: Vec<PlannedListener>,
    transforms: Vec<TransformTask>,
    sinks: Vec<(String, SinkFuture)>,
    /// What `/health` reports: starting, ready, draining, degraded sinks.
    pub health: Arc<Health>,
    /// Begins shutdown for every listener and sink that holds a `Shutdown`.
    shutdown: ShutdownTrigger,
    pub registry: Arc<Registry>,
    /// Every component's counters, for the periodic stats line.
    components: Vec<ComponentMetrics>,
}

/// Builds every component. Errors name the component.
pub fn build(config: &PipelineConfig) -> Result<Built, Vec<String>> {
    let registry = Registry::new();
    crate::http::access_log::register(&registry);
    let health = Arc::new(Health::default());
    let shutdown = ShutdownTrigger::new();
    let mut errors = Vec::new();
    let mut components = Vec::new();

    // Input buffers of every transform and sink.
    let mut senders: HashMap<&str, BufferSender> = HashMap::new();
    let mut receivers: HashMap<&str, BufferReceiver> = HashMap::new();
    let mut metrics_of: HashMap<&str, ComponentMetrics> = HashMap::new();
    let fused = fused_chains(config);
    for t in &config.transforms {
        let metrics = ComponentMetrics::new(&registry, &t.id, "transform", t.config.type_name());
        if fused.contains_key(t.id.as_str()) {
            // Fed directly by its upstream's task: no buffer of its own.
            metrics_of.insert(&t.id, metrics);
            continue;
        }
        let max_bytes = t
            .buffer
            .max_bytes
            .unwrap_or(crate::config::DEFAULT_TRANSFORM_BUFFER_MAX_BYTES);
        let (tx, rx) = buffer(t.buffer.max_events, max_bytes);
        register_buffer_gauge(&metrics, &tx);
        senders.insert(&t.id, tx);
        receivers.insert(&t.id, rx);
        metrics_of.insert(&t.id, metrics);
    }
    for s in &config.sinks {
        let metrics = ComponentMetrics::new(&registry, &s.id, "sink", s.config.type_name());
        let max_bytes = s
            .buffer
            .max_bytes
            .unwrap_or(crate::config::DEFAULT_SINK_BUFFER_MAX_BYTES);
        let (tx, rx) = buffer(s.buffer.max_events, max_bytes);
        register_buffer_gauge(&metrics, &tx);
        senders.insert(&s.id, tx);
        receivers.insert(&s.id, rx);
        metrics_of.insert(&s.id, metrics);
    }

    // Who reads each (component, port).
    let mut subscribers: HashMap<(String, String), Vec<BufferSender>> = HashMap::new();
    let downstream = config
        .transforms
        .iter()
        .map(|t| (&t.id, &t.inputs))
        .chain(config.sinks.iter().map(|s| (&s.id, &s.inputs)));
    for (id, inputs) in downstream {
        for input in inputs {
            let (upstream, port) = split_input(input);
            if let Some(sender) = senders.get(id.as_str()) {
                subscribers
                    .entry((upstream.to_owned(), port.to_owned()))
                    .or_default()
                    .push(sender.clone());
            }
        }
    }
    let outputs_for = |id: &str, ports: Vec<String>, metrics: &ComponentMetrics| {
        Outputs::new(
            ports
                .into_iter()
                .map(|port| {
                    let senders = subscribers
                        .get(&(id.to_owned(), port.clone()))
                        .cloned()
                        .unwrap_or_default();
                    let fanout = Fanout::new(
                        senders,
                        metrics.sent_events(&port),
                        metrics.discarded_intentional.clone(),
                    );
                    (port, fanout)
                })
                .collect(),
        )
    };

    // Sources, grouped into one listener per address.
    let mut planned: BTreeMap<SocketAddr, PlannedListener> = BTreeMap::new();
    for source in &config.sources {
        let metrics =
            ComponentMetrics::new(&registry, &source.id, "source", source.config.type_name());
        let outputs = outputs_for(
            &source.id,
            vec![buffer::DEFAULT_OUTPUT.to_owned()],
            &metrics,
        );
        let Some(output) = outputs.default_port().cloned() else {
            continue;
        };
        components.push(metrics.clone());
        let cx = SourceContext {
            id: source.id.clone(),
            http: source.http.clone(),
            output,
            metrics,
        };
        let routes = match source.config.build(cx) {
            Ok(routes) => routes,
            Err(e) => {
                errors.push(format!("[sources.{}] {e:#}", source.id));
                continue;
            }
        };
        let listener = planned
            .entry(source.http.address)
            .or_insert_with(|| PlannedListener {
                address: source.http.address,
                tls: None,
                routes: Vec::new(),
                source_ids: Vec::new(),
            });
        if let Some(tls) = &source.http.tls {
            match &listener.tls {
                Some(existing) if existing != tls => errors.push(format!(
                    "[sources.{}] tls differs from another source on {}: sources sharing an address share one TLS setting",
                    source.id, source.http.address
                )),
                _ => listener.tls = Some(tls.clone()),
            }
        }
        for route in routes {
            if let Some(other) = listener.routes.iter().find(|r| r.path == route.path) {
                errors.push(format!(
                    "[sources.{}] path `{}` on {} is already served by [sources.{}]",
                    source.id, route.path, source.http.address, other.source_id
                ));
            } else if route.path == "/health" || route.path == "/metrics" {
                errors.push(format!(
                    "[sources.{}] path `{}` is reserved",
                    source.id, route.path
                ));
            } else {
                listener.routes.push(route);
            }
        }
        listener.source_ids.push(source.id.clone());
    }
    // A listener whose TLS is set by one source serves HTTPS for all of them.
    for listener in planned.values() {
        if let Some(tls) = &listener.tls {
            if let Err(e) = crate::http::tls::acceptor(tls) {
                errors.push(format!("listener {}: {e:#}", listener.address));
            }
        }
    }

    // Build every transform, then group them into tasks: a chain head (it has
    // an input buffer) and the transforms fused after it.
    let mut stages: HashMap<&str, Stage> = HashMap::new();
    for t in &config.transforms {
        let Some(metrics) = metrics_of.remove(t.id.as_str()) else {
            continue;
        };
        let cx = TransformContext {
            id: t.id.clone(),
            metrics: metrics.clone(),
        };
        match t.config.build(&cx) {
            Ok(transform) => {
                components.push(metrics.clone());
                stages.insert(
                    &t.id,
                    Stage {
                        id: t.id.clone(),
                        transform,
                        sent: metrics.sent_events(DEFAULT_OUTPUT),
                        metrics,
                    },
                );
            }
            Err(e) => errors.push(format!("[transforms.{}] {e:#}", t.id)),
        }
    }
    let next_of: HashMap<&str, &str> = fused.iter().map(|(d, u)| (*u, *d)).collect();
    let mut transforms = Vec::new();
    for t in &config.transforms {
        let Some(input) = receivers.remove(t.id.as_str()) else {
            continue;
        };
        let mut chain = Vec::new();
        let mut current = t.id.as_str();
        while let Some(stage) = stages.remove(current) {
            chain.push(stage);
            match next_of.get(current) {
                Some(next) => current = next,
                None => break,
            }
        }
        let Some(last) = chain.last() else {
            continue;
        };
        let outputs = outputs_for(
            &last.id,
            config
                .transforms
                .iter()
                .find(|c| c.id == last.id)
                .map(|c| c.config.outputs())
                .unwrap_or_default(),
            &last.metrics,
        );
        transforms.push(TransformTask {
            input,
            stages: chain,
            outputs,
        });
    }

    let mut sinks = Vec::new();
    for s in &config.sinks {
        let Some(metrics) = metrics_of.remove(s.id.as_str()) else {
            continue;
        };
        let Some(input) = receivers.remove(s.id.as_str()) else {
            continue;
        };
        components.push(metrics.clone());
        let cx = SinkContext {
            id: s.id.clone(),
            metrics,
            health: health.clone(),
            shutdown: shutdown.subscribe(),
            input,
        };
        match s.config.build_sink(cx) {
            Ok(built) => {
                sinks.push((s.id.clone(), built.run));
                if let Some(route) = built.route {
                    if let Err(e) = plan_sink_route(&mut planned, &s.id, route) {
                        errors.push(format!("[sinks.{}] {e}", s.id));
                    }
                }
            }
            Err(e) => errors.push(format!("[sinks.{}] {e:#}", s.id)),
        }
    }
    // Senders left here would keep buffers open forever; only the fan-outs may hold them.
    drop(senders);
    drop(subscribers);

    if errors.is_empty() {
        Ok(Built {
            listeners: planned.into_values().collect(),
            transforms,
            sinks,
            health,
            shutdown,
            registry,
            components,
        })
    } else {
        Err(errors)
    }
}

/// Puts a sink's route (the `prometheus` sink's metrics) on the listener of
/// its `address`, or, without one, on the sources' listener when there is
/// exactly one; a new address gets a listener of its own (plain HTTP).
fn plan_sink_route(
    planned: &mut BTreeMap<SocketAddr, PlannedListener>,
    sink_id: &str,
    sink_route: SinkRoute,
) -> Result<(), String> {
    let address = match sink_route.address {
        Some(address) => address,
        None => {
            let addresses: Vec<SocketAddr> = planned.keys().copied().collect();
            match addresses.as_slice() {
                [only] => *only,
                [] => return Err("no source listener to serve on: set `address`".to_owned()),
                _ => {
                    let shown: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
                    return Err(format!(
                        "the sources listen on several addresses ({}): set `address` to one of them or to its own",
                        shown.join(", ")
                    ));
                }
            }
        }
    };
    let listener = planned.entry(address).or_insert_with(|| PlannedListener {
        address,
        tls: None,
        routes: Vec::new(),
        source_ids: Vec::new(),
    });
    let path = &sink_route.route.path;
    if let Some(other) = listener.routes.iter().find(|r| &r.path == path) {
        return Err(format!(
            "path `{path}` on {address} is already served by `{}`",
            other.source_id
        ));
    }
    listener.routes.push(sink_route.route);
    listener.source_ids.push(sink_id.to_owned());
    Ok(())
}

/// Batches already waiting are merged up to this many events before a
/// transform runs: under load each hop then costs one wake-up and one send
/// per merged batch instead of per request.
const MAX_MERGED_EVENTS: usize = 1000;

async fn run_transform(mut task: TransformTask) {
    let ports = task.outputs.ports().len();
    let name = task.name();
    let Some((last, fused)) = task.stages.split_last_mut() else {
        return;
    };
    while let Some(mut batch) = task.input.recv().await {
        while batch.len() < MAX_MERGED_EVENTS {
            let Some(more) = task.input.try_recv() else {
                break;
            };
            batch.extend(more);
        }
        for stage in fused.iter_mut() {
            stage.metrics.received_events.add(batch.len() as u64);
            let mut out = vec![Vec::new()];
            stage.transform.transform(batch, &mut out);
            batch = out.pop().unwrap_or_default();
            stage.sent.add(batch.len() as u64);
        }
        last.metrics.received_events.add(batch.len() as u64);
        let mut out: Vec<Batch> = (0..ports).map(|_| Vec::new()).collect();
        last.transform.transform(batch, &mut out);
        for ((_, fanout), events) in task.outputs.ports().iter().zip(out) {
            let count = events.len() as u64;
            if fanout.send(events).await.is_err() {
                // Only when a downstream died: say it, count it.
                last.metrics.discarded_unintentional.add(count);
                last.metrics.errors("downstream_closed", "sending").inc();
                tracing::error!(component = %last.id, "a downstream component has stopped; {count} events dropped");
            }
        }
    }
    tracing::debug!(task = %name, "transform task finished");
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
/// drain did not finish within the timeout.
pub async fn run(
    built: Built,
    options: RunOptions,
    stop: impl Future<Output = ()>,
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
            .map(crate::http::tls::acceptor)
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
        tasks.spawn(async move {
            future.await;
            format!("sink {id}")
        });
    }
    for task in transforms {
        let name = task.name();
        tasks.spawn(async move {
            run_transform(task).await;
            format!("transform {name}")
        });
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
        tasks.spawn(async move {
            listener.serve(stop).await;
            format!("listener {address}")
        });
    }
    if let Some(admin) = admin {
        // Worded apart from the intake's "listening on", which tools look for.
        tracing::info!(
            "admin endpoints /health and /metrics served on http://{}",
            admin.address
        );
        let address = admin.address;
        let stop = shutdown.subscribe();
        tasks.spawn(async move {
            admin.serve(stop).await;
            format!("admin listener {address}")
        });
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

    stop.await;
    tracing::info!("shutting down: refusing new requests, draining buffers, flushing sinks");
    health.set_draining();
    shutdown.begin();
    let drained = tokio::time::timeout(options.shutdown_timeout, async {
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(name) => tracing::debug!("{name} finished"),
                Err(e) => tracing::error!("a component task failed: {e}"),
            }
        }
    })
    .await;
    if let Some(stats) = stats {
        stats.abort();
    }
    log_stats(&components);
    match drained {
        Ok(()) => {
            tracing::info!("shutdown complete");
            Ok(())
        }
        Err(_) => {
            tasks.abort_all();
            Err(anyhow::anyhow!(
                "shutdown_timeout_secs ({}) passed before every buffer drained; see the counters above for what was left",
                options.shutdown_timeout.as_secs()
            ))
        }
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

/// SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fused_of(text: &str) -> Vec<(String, String)> {
        let loaded = crate::config::load_str("test.toml", text, &|_| None).expect("config");
        let mut pairs: Vec<(String, String)> = fused_chains(&loaded.config)
            .into_iter()
            .map(|(d, u)| (d.to_owned(), u.to_owned()))
            .collect();
        pairs.sort();
        pairs
    }

    #[test]
    fn a_linear_stretch_runs_in_one_task_and_branches_keep_their_buffers() {
        let text = r#"
[sources.in]
type = "rum_beacon"
address = "127.0.0.1:0"

[transforms.ua]
type = "user_agent"
inputs = ["in"]

[transforms.scrub]
type = "scrub_url"
inputs = ["ua"]

[transforms.sites]
type = "route"
inputs = ["scrub"]
route.shop = { field = "service.name", equals = "shop" }

[transforms.shop_labels]
type = "labels"
inputs = ["sites.shop"]
labels = { site = "shop" }

[transforms.tag_a]
type = "labels"
inputs = ["shop_labels"]
labels = { a = "1" }

[transforms.tag_b]
type = "labels"
inputs = ["shop_labels"]
labels = { b = "1" }

[transforms.both]
type = "labels"
inputs = ["tag_a", "tag_b"]
labels = { c = "1" }

[sinks.out]
type = "blackhole"
inputs = ["both", "sites._unmatched"]
"#;
        // ua → scrub → sites is one task (sites last: it has several outputs);
        // nothing reads a route port alone through a fused hop; shop_labels
        // feeds two transforms, and `both` has two inputs: buffers stay.
        assert_eq!(
            fused_of(text),
            [
                ("scrub".to_owned(), "ua".to_owned()),
                ("sites".to_owned(), "scrub".to_owned()),
            ]
        );
    }
}
