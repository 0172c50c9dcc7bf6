//! The pipeline's own metrics, named as Vector names them so existing
//! dashboards fit, rendered as Prometheus text at `GET /metrics`.
//!
//! Handles (`Counter`, `Histogram`) are looked up once when a component is
//! built; the hot path only touches atomics.
//!
//! Why not a client crate: `prometheus-client` writes only OpenMetrics
//! (`# EOF`, `_total` added to counter names, help text that `promtool check
//! metrics` refuses), and `metrics` + its exporter has write-only handles, no
//! read-at-scrape callbacks and ~18 more crates. The text format is ~60 lines
//! here, pinned by `promtool check metrics` in `tests/prometheus_rules.rs`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// A monotonic count. Its value is spread over a few lanes, each on its own
/// cache line, and a thread always adds to the same lane: the request
/// counters are added to by every worker, and one shared atomic made each
/// add pull the line from the core that wrote it last. A read sums them.
#[derive(Clone, Debug, Default)]
pub struct Counter(Arc<[Lane; LANES]>);

/// Lanes per counter: more than this machine's workers brings nothing on
/// 2 cores, and each is a cache line of every counter.
const LANES: usize = 4;

#[derive(Debug, Default)]
#[repr(align(64))]
struct Lane(AtomicU64);

/// This thread's lane, handed out in turn as threads first count.
fn lane() -> usize {
    use std::sync::atomic::AtomicUsize;
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static LANE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % LANES;
    }
    LANE.with(|lane| *lane)
}

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }
    pub fn add(&self, n: u64) {
        // Many adds are of nothing (no unknown keys in this request): an
        // atomic add pulls the counter's line from whichever core wrote it
        // last, a compare does not.
        if n != 0 {
            self.0[lane()].0.fetch_add(n, Ordering::Relaxed);
        }
    }
    pub fn get(&self) -> u64 {
        self.0.iter().fold(0u64, |sum, lane| {
            sum.wrapping_add(lane.0.load(Ordering::Relaxed))
        })
    }
}

/// A fixed-bucket histogram (seconds), cheap enough for per-request use.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    buckets: Vec<AtomicU64>,
    count: AtomicU64,
    /// Sum in microseconds, so it can live in an integer atomic.
    sum_micros: AtomicU64,
}

/// Latency buckets in seconds, from 1 ms to 60 s.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            buckets: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, seconds: f64) {
        if let Some(i) = self.bounds.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

type GaugeFn = Arc<dyn Fn() -> f64 + Send + Sync>;

enum Series {
    Counter(Counter),
    Gauge(GaugeFn),
    Histogram(Arc<Histogram>),
}

struct Family {
    help: &'static str,
    kind: &'static str,
    /// Keyed by the rendered label set, e.g. `component_id="beacons",error_type="x"`.
    series: BTreeMap<String, Series>,
}

/// All metrics of one running pipeline.
#[derive(Default)]
pub struct Registry {
    families: Mutex<BTreeMap<&'static str, Family>>,
    /// Series looked up under the lock, for tests of what must not.
    #[cfg(test)]
    lookups: AtomicU64,
}

fn render_labels(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (key, value)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let escaped = value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n");
        let _ = write!(out, "{key}=\"{escaped}\"");
    }
    out
}

impl Registry {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn with_series<T>(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        make: impl FnOnce() -> Series,
        read: impl FnOnce(&Series) -> Option<T>,
    ) -> T {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        #[cfg(test)]
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
        });
        let key = render_labels(labels);
        let series = family.series.entry(key).or_insert_with(make);
        read(series).unwrap_or_else(|| panic!("metric {name} registered with two kinds"))
    }

    /// Returns the counter for this name and label set, creating it at zero.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
    ) -> Counter {
        self.with_series(
            name,
            help,
            "counter",
            labels,
            || Series::Counter(Counter::default()),
            |s| match s {
                Series::Counter(c) => Some(c.clone()),
                _ => None,
            },
        )
    }

    /// Registers a gauge whose value is read when /metrics is scraped.
    pub fn gauge_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.read_fn(name, help, "gauge", labels, Arc::new(read));
    }

    /// Registers a counter kept outside the registry (a process-wide
    /// static), read when /metrics is scraped.
    pub fn counter_fn(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        read: impl Fn() -> f64 + Send + Sync + 'static,
    ) {
        self.read_fn(name, help, "counter", labels, Arc::new(read));
    }

    fn read_fn(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        labels: &[(&str, &str)],
        read: GaugeFn,
    ) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            series: BTreeMap::new(),
        });
        family
            .series
            .insert(render_labels(labels), Series::Gauge(read));
    }

    pub fn histogram(
        &self,
        name: &'static str,
        help: &'static str,
        labels: &[(&str, &str)],
        bounds: &'static [f64],
    ) -> Arc<Histogram> {
        self.with_series(
            name,
            help,
            "histogram",
            labels,
            || Series::Histogram(Arc::new(Histogram::new(bounds))),
            |s| match s {
                Series::Histogram(h) => Some(h.clone()),
                _ => None,
            },
        )
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::with_capacity(8 * 1024);
        for (name, family) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            for (labels, series) in &family.series {
                match series {
                    Series::Counter(c) => {
                        let _ = writeln!(out, "{name}{{{labels}}} {}", c.get());
                    }
                    Series::Gauge(read) => {
                        let _ = writeln!(out, "{name}{{{labels}}} {}", read());
                    }
                    Series::Histogram(h) => render_histogram(&mut out, name, labels, h),
                }
            }
        }
        out
    }

    /// Series looked up so far (counters and histograms, found or made).
    #[cfg(test)]
    pub(crate) fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// Sum of a counter family's series whose labels contain every given pair.
    pub fn counter_sum(&self, name: &str, filter: &[(&str, &str)]) -> u64 {
        let wanted: Vec<String> = filter
            .iter()
            .map(|(k, v)| render_labels(&[(k, v)]))
            .collect();
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let Some(family) = families.get(name) else {
            return 0;
        };
        family
            .series
            .iter()
            .filter(|(labels, _)| {
                let parts: Vec<&str> = labels.split(',').collect();
                wanted.iter().all(|w| parts.contains(&w.as_str()))
            })
            .map(|(_, s)| match s {
                Series::Counter(c) => c.get(),
                _ => 0,
            })
            .sum()
    }
}

fn render_histogram(out: &mut String, name: &str, labels: &str, h: &Histogram) {
    let sep = if labels.is_empty() { "" } else { "," };
    let mut cumulative = 0;
    for (bound, bucket) in h.bounds.iter().zip(&h.buckets) {
        cumulative += bucket.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}"
        );
    }
    // `observe` bumps a bucket and the count with two relaxed adds; a scrape
    // between them would see `+Inf` below the last bucket, and Prometheus
    // reads a non-cumulative histogram as garbage (histogram_quantile).
    let count = h.count.load(Ordering::Relaxed).max(cumulative);
    let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
    let sum = h.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "{name}_sum{{{labels}}} {sum}");
    let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
}

/// The standard counters of one component, as Vector names them.
#[derive(Clone)]
pub struct ComponentMetrics {
    registry: Arc<Registry>,
    pub id: String,
    pub kind: &'static str,
    pub type_name: &'static str,
    pub received_events: Counter,
    pub received_bytes: Counter,
    pub discarded_intentional: Counter,
    pub discarded_unintentional: Counter,
}

impl ComponentMetrics {
    pub fn new(
        registry: &Arc<Registry>,
        id: &str,
        kind: &'static str,
        type_name: &'static str,
    ) -> Self {
        let labels = [
            ("component_id", id),
            ("component_kind", kind),
            ("component_type", type_name),
        ];
        let discarded = |intentional: &str| {
            let mut l = labels.to_vec();
            l.push(("intentional", intentional));
            registry.counter(
                "component_discarded_events_total",
                "Events dropped by a component (intentional: sampling, filtering, shedding).",
                &l,
            )
        };
        Self {
            registry: registry.clone(),
            id: id.to_owned(),
            kind,
            type_name,
            received_events: registry.counter(
                "component_received_events_total",
                "Events a component accepted.",
                &labels,
            ),
            received_bytes: registry.counter(
                "component_received_bytes_total",
                "Bytes a component accepted (request bodies for sources).",
                &labels,
            ),
            discarded_intentional: discarded("true"),
            discarded_unintentional: discarded("false"),
        }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    fn labels(&self) -> [(&str, &str); 3] {
        [
            ("component_id", self.id.as_str()),
            ("component_kind", self.kind),
            ("component_type", self.type_name),
        ]
    }

    /// `component_sent_events_total{output}`; `output` is `_default` for the main one.
    pub fn sent_events(&self, output: &str) -> Counter {
        let mut labels = self.labels().to_vec();
        labels.push(("output", output));
        self.registry.counter(
            "component_sent_events_total",
            "Events a component handed downstream (sinks: delivered).",
            &labels,
        )
    }

    /// `component_errors_total{error_type, stage}`.
    pub fn errors(&self, error_type: &str, stage: &str) -> Counter {
        let mut labels = self.labels().to_vec();
        labels.push(("error_type", error_type));
        labels.push(("stage", stage));
        self.registry.counter(
            "component_errors_total",
            "Errors a component met, by type and stage (receiving, processing, sending).",
            &labels,
        )
    }

    /// A component-specific counter carrying the standard labels plus `extra`.
    pub fn counter(
        &self,
        name: &'static str,
        help: &'static str,
        extra: &[(&str, &str)],
    ) -> Counter {
        let mut labels = self.labels().to_vec();
        labels.extend_from_slice(extra);
        self.registry.counter(name, help, &labels)
    }

    pub fn sent_total(&self) -> u64 {
        self.registry
            .counter_sum("component_sent_events_total", &[("component_id", &self.id)])
    }
}

/// `component_errors_total` of one component and stage, by error type, found
/// without the registry's lock once a type has been counted: refusals are
/// counted on the path a flood of bad requests takes, and that lock is the
/// one every lookup and every scrape (while it renders) takes.
pub struct ErrorCounters {
    metrics: ComponentMetrics,
    stage: &'static str,
    /// Filled in order, each by the first error type that finds it free; a
    /// type past the last is looked up in the registry each time.
    seen: [OnceLock<(&'static str, Counter)>; ERROR_TYPES_KEPT],
}

/// More than the error types one source can count (a decoder's refusals
/// and the intake's).
const ERROR_TYPES_KEPT: usize = 24;

impl ErrorCounters {
    pub fn new(metrics: &ComponentMetrics, stage: &'static str) -> Self {
        Self {
            metrics: metrics.clone(),
            stage,
            seen: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    pub fn add(&self, error_type: &'static str, n: u64) {
        for slot in &self.seen {
            let (kept, counter) =
                slot.get_or_init(|| (error_type, self.metrics.errors(error_type, self.stage)));
            if *kept == error_type {
                counter.add(n);
                return;
            }
        }
        self.metrics.errors(error_type, self.stage).add(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_added_to_from_more_threads_than_lanes_reads_their_sum() {
        let counter = Counter::default();
        let threads: Vec<_> = (0..LANES as u64 * 2 + 1)
            .map(|t| {
                let counter = counter.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        counter.add(t + 1);
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let n = LANES as u64 * 2 + 1;
        assert_eq!(counter.get(), 1000 * n * (n + 1) / 2);
        // The threads were spread over more than one lane.
        assert!(
            counter
                .0
                .iter()
                .filter(|l| l.0.load(Ordering::Relaxed) > 0)
                .count()
                > 1
        );
    }

    #[test]
    fn a_scrape_between_an_observations_bucket_and_its_count_stays_cumulative() {
        let registry = Registry::new();
        let h = registry.histogram("bulk_seconds", "lat", &[], LATENCY_BUCKETS);
        h.observe(0.003);
        // Half of a second observation: its bucket counted, its count not yet.
        h.buckets[2].fetch_add(1, Ordering::Relaxed);
        let text = registry.render();
        assert!(text.contains("bulk_seconds_bucket{le=\"60\"} 2"), "{text}");
        assert!(
            text.contains("bulk_seconds_bucket{le=\"+Inf\"} 2"),
            "{text}"
        );
        assert!(text.contains("bulk_seconds_count{} 2"), "{text}");
    }

    #[test]
    fn error_counters_count_every_type_past_the_kept_ones_too() {
        let registry = Registry::new();
        let metrics = ComponentMetrics::new(&registry, "beacons", "source", "rum_beacon");
        let errors = ErrorCounters::new(&metrics, "receiving");
        let types: Vec<&'static str> = (0..ERROR_TYPES_KEPT + 3)
            .map(|i| &*format!("type_{i}").leak())
            .collect();
        for (i, error_type) in types.iter().enumerate() {
            errors.add(error_type, i as u64 + 1);
            errors.add(error_type, 1);
        }
        for (i, error_type) in types.iter().enumerate() {
            let counted = registry.counter_sum(
                "component_errors_total",
                &[("error_type", error_type), ("stage", "receiving")],
            );
            assert_eq!(counted, i as u64 + 2, "{error_type}");
        }
    }

    #[test]
    fn renders_counters_gauges_and_histograms() {
        let registry = Registry::new();
        let metrics = ComponentMetrics::new(&registry, "beacons", "source", "rum_beacon");
        metrics.received_events.add(3);
        metrics.errors("body_too_large", "receiving").inc();
        registry.gauge_fn("buffer_events", "fill", &[("component_id", "x")], || 7.0);
        let h = registry.histogram("bulk_seconds", "lat", &[], LATENCY_BUCKETS);
        h.observe(0.003);
        let text = registry.render();
        assert!(text.contains(
            "component_received_events_total{component_id=\"beacons\",component_kind=\"source\",component_type=\"rum_beacon\"} 3"
        ));
        assert!(text.contains("error_type=\"body_too_large\",stage=\"receiving\"} 1"));
        assert!(text.contains("buffer_events{component_id=\"x\"} 7"));
        assert!(text.contains("bulk_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("bulk_seconds_count{} 1"));
        assert_eq!(
            registry.counter_sum("component_errors_total", &[("component_id", "beacons")]),
            1
        );
    }
}
