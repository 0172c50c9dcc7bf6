//! Building: every component's config turned into its runtime half, the
//! buffers between them, the listeners' routes, and which transforms share a
//! task (`fused_chains`). Everything fallible happens here, before any task runs.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use super::buffer::{
    component_buffer, BufferReceiver, BufferSender, Fanout, Outputs, DEFAULT_OUTPUT,
};
use super::sink_input::{Chain, SinkInput};
use crate::config::graph::split_input;
use crate::config::PipelineConfig;
use crate::http::server::{Health, Route};
use crate::log_limit::LogLimit;
use crate::shutdown::ShutdownTrigger;
use crate::sinks::{SinkContext, SinkFuture, SinkRoute};
use crate::sources::{SourceContext, TlsOptions};
use crate::telemetry::{ComponentMetrics, Counter, Registry};
use crate::transforms::{Transform, TransformContext};

/// One shared listener's worth of routes, before binding.
pub struct PlannedListener {
    pub address: SocketAddr,
    pub tls: Option<TlsOptions>,
    pub routes: Vec<Route>,
    pub source_ids: Vec<String>,
}

/// One task: a transform with an input buffer, then any transforms fused
/// after it (see [`fused_chains`]); the last one's outputs leave the task,
/// but for the ports read by a branch run in the same task
/// ([`fused_branches`]).
pub(super) struct TransformTask {
    pub(super) input: BufferReceiver,
    pub(super) stages: Vec<Stage>,
    pub(super) outputs: Outputs,
    /// Per port of the last stage (in `outputs`' order), the branch run in
    /// this task on what that port gets, or `None`: it goes to `outputs`.
    pub(super) branches: Vec<Option<Branch>>,
}

/// The transforms that read one port of a multi-output transform (a
/// `route`'s) and nothing else, run in that transform's task on what the
/// port gets: a linear chain, whose last one's ports are handed on as a
/// task's are (to buffers, or to branches of their own).
pub(super) struct Branch {
    /// `component_sent_events_total` of the port it reads.
    pub(super) sent: Counter,
    pub(super) stages: Vec<Stage>,
    pub(super) outputs: Outputs,
    pub(super) branches: Vec<Option<Branch>>,
}

pub(super) struct Stage {
    pub(super) id: String,
    pub(super) transform: Box<dyn Transform>,
    pub(super) metrics: ComponentMetrics,
    /// `component_sent_events_total` of a stage that hands its single output
    /// straight to the next stage.
    pub(super) sent: Counter,
    /// Panics caught in this stage since start, for `/health`.
    pub(super) panics: u64,
    /// Set by its first panic: it then keeps a copy of each batch it takes,
    /// so that a later panic loses only the events that cause it
    /// (`run_stage`).
    pub(super) careful: bool,
    /// Its panic log lines: a browser can trigger one per batch.
    pub(super) panic_log: Arc<LogLimit>,
}

impl TransformTask {
    /// The ids of its stages, `a+b+c`, for logs.
    pub(super) fn name(&self) -> String {
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
    let handed_over = HandOver::of(config);
    let mut fused = HashMap::new();
    for t in &config.transforms {
        if let Some(upstream) = handed_over.from(&t.inputs) {
            fused.insert(t.id.as_str(), upstream);
        }
    }
    fused
}

/// Transforms that run inside the task of a multi-output upstream (a
/// `route`): a transform whose only input is one port of it that nothing
/// else reads. `prod.toml`'s per-site chains (`by_site.shop → shop_paths →
/// shop_labels`) then run in the route's task: one hop fewer a beacon. Maps
/// each such transform to its upstream and port.
fn fused_branches(config: &PipelineConfig) -> HashMap<&str, (&str, &str)> {
    let handed_over = HandOver::of(config);
    let mut branches = HashMap::new();
    for t in &config.transforms {
        if let Some(port) = handed_over.port_from(&t.inputs) {
            branches.insert(t.id.as_str(), port);
        }
    }
    branches
}

/// Chains of transforms run inside the task of the one sink they feed
/// ([`SinkInput`]): a sink whose only input is the default output of a
/// single-output transform that feeds nothing else. The chain (that
/// transform and those fused before it) then has no buffer and no task of
/// its own; the sink's buffer is in front of it. Maps each such sink to the
/// chain's first transform.
fn chains_into_sinks<'c>(
    config: &'c PipelineConfig,
    fused: &HashMap<&'c str, &'c str>,
    branches: &HashMap<&'c str, (&'c str, &'c str)>,
) -> HashMap<&'c str, &'c str> {
    let handed_over = HandOver::of(config);
    let mut chains = HashMap::new();
    for s in &config.sinks {
        let Some(mut head) = handed_over.from(&s.inputs) else {
            continue;
        };
        if !config.transforms.iter().any(|t| t.id == head) {
            // A source: it hands its events to the buffer itself.
            continue;
        }
        while let Some(upstream) = fused.get(head) {
            head = upstream;
        }
        // A branch runs in its route's task, which feeds others too.
        if !branches.contains_key(head) {
            chains.insert(s.id.as_str(), head);
        }
    }
    chains
}

/// Which components can hand their output straight to their reader.
struct HandOver<'c> {
    /// Transforms with only the default output.
    single_output: HashMap<&'c str, bool>,
    /// How many components read each (component, port).
    readers: HashMap<(&'c str, &'c str), usize>,
}

impl<'c> HandOver<'c> {
    fn of(config: &'c PipelineConfig) -> Self {
        let single_output = config
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
        Self {
            single_output,
            readers,
        }
    }

    /// The multi-output transform and port that can hand a reader with
    /// these `inputs` its batches directly: the reader's only input is that
    /// port, and nothing else reads it.
    fn port_from(&self, inputs: &'c [String]) -> Option<(&'c str, &'c str)> {
        let [input] = inputs else {
            return None;
        };
        let (upstream, port) = split_input(input);
        (self.single_output.get(upstream) == Some(&false)
            && self.readers.get(&(upstream, port)) == Some(&1))
        .then_some((upstream, port))
    }

    /// The transform that can hand a reader with these `inputs` its batches
    /// directly: the reader's only input is that transform's only output,
    /// and nothing else reads it.
    fn from(&self, inputs: &'c [String]) -> Option<&'c str> {
        let [input] = inputs else {
            return None;
        };
        let (upstream, port) = split_input(input);
        (port == DEFAULT_OUTPUT
            && self.single_output.get(upstream) == Some(&true)
            && self.readers.get(&(upstream, port)) == Some(&1))
        .then_some(upstream)
    }
}

/// Everything built, nothing running yet.
pub struct Built {
    pub listeners: Vec<PlannedListener>,
    pub(super) transforms: Vec<TransformTask>,
    pub(super) sinks: Vec<(String, SinkFuture)>,
    /// What `/health` reports: starting, ready, draining, degraded sinks.
    pub health: Arc<Health>,
    /// Begins shutdown for every listener and sink that holds a `Shutdown`.
    pub(super) shutdown: ShutdownTrigger,
    pub registry: Arc<Registry>,
    /// Every component's counters, for the periodic stats line.
    pub(super) components: Vec<ComponentMetrics>,
}

/// Builds every component. Errors name the component.
pub fn build(config: &PipelineConfig) -> Result<Built, Vec<String>> {
    let registry = Registry::new();
    crate::stderr_log::register(&registry);
    let health = Arc::new(Health::default());
    let shutdown = ShutdownTrigger::new();
    let mut errors = Vec::new();
    let mut components = Vec::new();

    // Input buffers of every transform and sink.
    let mut senders: HashMap<&str, BufferSender> = HashMap::new();
    let mut receivers: HashMap<&str, BufferReceiver> = HashMap::new();
    let mut metrics_of: HashMap<&str, ComponentMetrics> = HashMap::new();
    let fused = fused_chains(config);
    let branch_of = fused_branches(config);
    let into_sinks = chains_into_sinks(config, &fused, &branch_of);
    for t in &config.transforms {
        let metrics = ComponentMetrics::new(&registry, &t.id, "transform", t.config.type_name());
        if fused.contains_key(t.id.as_str())
            || branch_of.contains_key(t.id.as_str())
            || into_sinks.values().any(|head| *head == t.id)
        {
            // Fed directly by its upstream's task, or behind the buffer of
            // the sink it runs in: no buffer of its own.
            metrics_of.insert(&t.id, metrics);
            continue;
        }
        let max_bytes = t
            .buffer
            .max_bytes
            .unwrap_or(crate::config::DEFAULT_TRANSFORM_BUFFER_MAX_BYTES);
        let (tx, rx) = component_buffer(&metrics, t.buffer.max_events, max_bytes);
        senders.insert(&t.id, tx);
        receivers.insert(&t.id, rx);
        metrics_of.insert(&t.id, metrics);
    }
    for s in &config.sinks {
        let metrics = ComponentMetrics::new(&registry, &s.id, "sink", s.config.type_name());
        let mut max_events = s.buffer.max_events;
        let mut max_bytes = s
            .buffer
            .max_bytes
            .unwrap_or(crate::config::DEFAULT_SINK_BUFFER_MAX_BYTES);
        let head = into_sinks.get(s.id.as_str()).copied();
        // A chain run in the sink's task waits behind the sink's buffer,
        // which then has room for what either buffer was given.
        if let Some(head) = head.and_then(|h| config.transforms.iter().find(|t| t.id == h)) {
            max_events = max_events.max(head.buffer.max_events);
            max_bytes = max_bytes.max(
                head.buffer
                    .max_bytes
                    .unwrap_or(crate::config::DEFAULT_TRANSFORM_BUFFER_MAX_BYTES),
            );
        }
        let (tx, rx) = component_buffer(&metrics, max_events, max_bytes);
        // The chain's upstreams send to it; the chain's last transform
        // hands its batches to the sink without one.
        senders.insert(head.unwrap_or(&s.id), tx);
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
        let outputs = outputs_for(&source.id, vec![DEFAULT_OUTPUT.to_owned()], &metrics);
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
            if let Err(e) = crate::http::tls::check(tls) {
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
                        panics: 0,
                        careful: false,
                        panic_log: LogLimit::standard(
                            format!("transforms.{}: panics", t.id),
                            tracing::Level::ERROR,
                        ),
                        metrics,
                    },
                );
            }
            Err(e) => errors.push(format!("[transforms.{}] {e:#}", t.id)),
        }
    }
    let next_of: HashMap<&str, &str> = fused.iter().map(|(d, u)| (*u, *d)).collect();
    let branch_at: HashMap<(&str, &str), &str> =
        branch_of.iter().map(|(t, port)| (*port, *t)).collect();
    let mut assembly = Assembly {
        config,
        stages,
        next_of,
        branch_at,
        outputs_for: &outputs_for,
    };
    let mut transforms = Vec::new();
    for t in &config.transforms {
        let Some(input) = receivers.remove(t.id.as_str()) else {
            continue;
        };
        let Some((stages, outputs, branches)) = assembly.segment(&t.id) else {
            continue;
        };
        transforms.push(TransformTask {
            input,
            stages,
            outputs,
            branches,
        });
    }
    let Assembly {
        mut stages,
        next_of,
        ..
    } = assembly;

    let mut sinks = Vec::new();
    for s in &config.sinks {
        let Some(metrics) = metrics_of.remove(s.id.as_str()) else {
            continue;
        };
        let Some(input) = receivers.remove(s.id.as_str()) else {
            continue;
        };
        components.push(metrics.clone());
        let input = match into_sinks.get(s.id.as_str()) {
            Some(head) => {
                let mut chain = Vec::new();
                let mut current = *head;
                while let Some(stage) = stages.remove(current) {
                    chain.push(stage);
                    match next_of.get(current) {
                        Some(next) => current = next,
                        None => break,
                    }
                }
                let chain = Chain::new(chain, health.clone());
                tracing::debug!(sink = %s.id, "transforms {} run in the sink's task", chain.name());
                SinkInput::with_chain(input, chain)
            }
            None => SinkInput::from(input),
        };
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

/// A chain of stages, its last one's outputs, and the branch run on each
/// port (`None`: the port's buffers).
type Segment = (Vec<Stage>, Outputs, Vec<Option<Branch>>);

/// Puts a task's stages together: a chain from its head along the fused
/// hops, and for each port of its last stage the branch read there.
struct Assembly<'c, 'o> {
    config: &'c PipelineConfig,
    stages: HashMap<&'c str, Stage>,
    next_of: HashMap<&'c str, &'c str>,
    branch_at: HashMap<(&'c str, &'c str), &'c str>,
    #[allow(clippy::type_complexity)]
    outputs_for: &'o dyn Fn(&str, Vec<String>, &ComponentMetrics) -> Outputs,
}

impl Assembly<'_, '_> {
    /// The chain from `head`, the outputs of its last stage, and the
    /// branches read from them.
    fn segment(&mut self, head: &str) -> Option<Segment> {
        let mut chain = Vec::new();
        let mut current = head;
        while let Some((id, stage)) = self.stages.remove_entry(current) {
            chain.push(stage);
            match self.next_of.get(id) {
                Some(next) => current = next,
                None => break,
            }
        }
        let last = chain.last()?;
        let ports = self
            .config
            .transforms
            .iter()
            .find(|c| c.id == last.id)
            .map(|c| c.config.outputs())
            .unwrap_or_default();
        let outputs = (self.outputs_for)(&last.id, ports.clone(), &last.metrics);
        let (last_id, last_metrics) = (last.id.clone(), last.metrics.clone());
        let mut branches = Vec::with_capacity(ports.len());
        for port in &ports {
            let reader = self
                .branch_at
                .get(&(last_id.as_str(), port.as_str()))
                .copied();
            let branch = reader.and_then(|reader| self.segment(reader));
            branches.push(branch.map(|(stages, outputs, branches)| Branch {
                sent: last_metrics.sent_events(port),
                stages,
                outputs,
                branches,
            }));
        }
        Some((chain, outputs, branches))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What `pairs_of` makes of the config `text`, as sorted string pairs.
    fn pairs(
        text: &str,
        pairs_of: impl Fn(&PipelineConfig) -> Vec<(String, String)>,
    ) -> Vec<(String, String)> {
        let loaded = crate::config::load_str("test.toml", text, &|_| None).expect("config");
        let mut pairs = pairs_of(&loaded.config);
        pairs.sort();
        pairs
    }

    /// Each fused transform and its upstream.
    fn fused_of(text: &str) -> Vec<(String, String)> {
        pairs(text, |config| {
            let fused = fused_chains(config);
            fused
                .into_iter()
                .map(|(d, u)| (d.to_owned(), u.to_owned()))
                .collect()
        })
    }

    /// Each branch's first transform and the port it reads.
    fn branches_of(text: &str) -> Vec<(String, String)> {
        pairs(text, |config| {
            let branches = fused_branches(config);
            branches
                .into_iter()
                .map(|(t, (u, p))| (t.to_owned(), format!("{u}.{p}")))
                .collect()
        })
    }

    /// Each sink that runs a chain, and the chain's first transform.
    fn into_sinks_of(text: &str) -> Vec<(String, String)> {
        pairs(text, |config| {
            let (fused, branches) = (fused_chains(config), fused_branches(config));
            let into = chains_into_sinks(config, &fused, &branches);
            into.into_iter()
                .map(|(s, h)| (s.to_owned(), h.to_owned()))
                .collect()
        })
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
        // shop_labels alone reads `sites.shop`: it runs in sites' task, on
        // what that port gets. `_unmatched` is read by a sink.
        assert_eq!(
            branches_of(text),
            [("shop_labels".to_owned(), "sites.shop".to_owned())]
        );
        // Nothing there ends in a sink through a chain alone.
        assert_eq!(into_sinks_of(text), []);
    }

    /// A chain after a route's port runs in the route's task, and then not
    /// in its sink's: the route's task feeds other components too.
    #[test]
    fn a_chain_read_from_a_route_port_runs_in_the_routes_task() {
        let text = r#"
[sources.in]
type = "rum_beacon"
address = "127.0.0.1:0"

[transforms.sites]
type = "route"
inputs = ["in"]
route.shop = { field = "service.name", equals = "shop" }
route.blog = { field = "service.name", equals = "blog" }

[transforms.shop_a]
type = "labels"
inputs = ["sites.shop"]
labels = { a = "1" }

[transforms.shop_b]
type = "labels"
inputs = ["shop_a"]
labels = { b = "1" }

[sinks.shop]
type = "blackhole"
inputs = ["shop_b"]

[transforms.blog_a]
type = "labels"
inputs = ["sites.blog"]
labels = { a = "1" }

[transforms.blog_b]
type = "labels"
inputs = ["sites.blog"]
labels = { b = "1" }

[sinks.blog]
type = "blackhole"
inputs = ["blog_a", "blog_b", "sites._unmatched"]
"#;
        assert_eq!(
            branches_of(text),
            [("shop_a".to_owned(), "sites.shop".to_owned())]
        );
        assert_eq!(fused_of(text), [("shop_b".to_owned(), "shop_a".to_owned())]);
        assert_eq!(into_sinks_of(text), []);
    }

    #[test]
    fn a_chain_feeding_only_one_sink_runs_in_the_sinks_task() {
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

[sinks.enriched]
type = "blackhole"
inputs = ["scrub"]

[sinks.raw]
type = "blackhole"
inputs = ["in"]

[transforms.sites]
type = "route"
inputs = ["in"]
route.shop = { field = "service.name", equals = "shop" }

[sinks.shop]
type = "blackhole"
inputs = ["sites.shop"]

[sinks.rest]
type = "blackhole"
inputs = ["sites._unmatched"]

[transforms.tag]
type = "labels"
inputs = ["in"]
labels = { a = "1" }

[sinks.tagged_a]
type = "blackhole"
inputs = ["tag"]

[sinks.tagged_b]
type = "blackhole"
inputs = ["tag"]

[transforms.alone]
type = "labels"
inputs = ["in"]
labels = { b = "1" }

[sinks.alone_out]
type = "blackhole"
inputs = ["alone"]

[sinks.two_inputs]
type = "blackhole"
inputs = ["alone", "in"]
"#;
        // ua → scrub runs in `enriched`'s task, from its head `ua`; a source
        // hands its events to a sink's buffer itself; a route's port, a
        // transform read by two sinks and a sink with two inputs keep their
        // tasks and buffers (`alone` feeds two sinks here).
        assert_eq!(
            into_sinks_of(text),
            [("enriched".to_owned(), "ua".to_owned())]
        );
        let text = r#"
[sources.in]
type = "rum_beacon"
address = "127.0.0.1:0"

[transforms.tag]
type = "labels"
inputs = ["in"]
labels = { a = "1" }

[sinks.out]
type = "blackhole"
inputs = ["tag"]
"#;
        assert_eq!(into_sinks_of(text), [("out".to_owned(), "tag".to_owned())]);
    }

    /// The shipped per-site pipeline: each site's chain runs in the route's
    /// task (docs/architecture.md says which).
    #[test]
    fn the_prod_pipelines_site_chains_run_in_the_routes_task() {
        let text = std::fs::read_to_string("pipelines/prod.toml").expect("prod.toml");
        let env =
            |name: &str| (name == "ELASTIC_CLUSTER").then(|| "http://127.0.0.1:9200".to_owned());
        let loaded = crate::config::load_str("prod.toml", &text, &env).expect("config");
        let mut branches: Vec<String> = fused_branches(&loaded.config)
            .into_iter()
            .map(|(t, (u, p))| format!("{u}.{p} -> {t}"))
            .collect();
        branches.sort();
        assert_eq!(
            branches,
            ["by_site.blog -> blog_labels", "by_site.shop -> shop_paths"]
        );
        let fused = fused_chains(&loaded.config);
        assert_eq!(fused.get("shop_labels"), Some(&"shop_paths"));
        assert_eq!(
            fused.get("blog_sample"),
            None,
            "rum_metrics reads blog_labels too"
        );
    }
}
