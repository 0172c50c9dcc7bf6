//! The RUM metrics themselves: counters and web-vital histograms keyed by the
//! configured dimensions, with a cap on series per metric, the sessions this
//! replica has seen, and the Prometheus text rendering.
//!
//! Nothing here knows `Event`: the sink hands in an `Observation` it read
//! from one, so this part survives changes of the event model untouched.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, RandomState};

use rustc_hash::FxBuildHasher;

use super::vitals::{format_float, Vital};

/// What one event contributes, read by `observe` in the sink.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation<'a> {
    /// One value per configured dimension, in config order ("" when absent).
    pub dims: Vec<Cow<'a, str>>,
    /// `session.id`, when the event has one.
    pub session: Option<&'a str>,
    pub kind: Kind<'a>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind<'a> {
    PageView,
    /// A vital and its value in the event unit (ms, or the CLS score).
    Vital(Vital, f64),
    /// A JavaScript error; `count` repeats the client folded into one event.
    Error {
        count: u64,
    },
    /// A CSP violation and its (allowlisted) directive.
    CspViolation {
        directive: &'a str,
    },
    /// Any other event: only marks its session as seen.
    Other,
}

/// The value that replaces every dimension of a series over the cap.
pub const OTHER: &str = "__other__";
/// Longest label value kept as it came, in bytes. A beacon's strings may be
/// 16 KiB (the sources' `max_string_bytes`): `max_series` of those in every
/// family would hold hundreds of MiB, and write them into every scrape.
pub const MAX_LABEL_VALUE_BYTES: usize = 256;
/// Joins label values into one map key (a control character no label has).
const SEP: char = '\u{1f}';

/// One metric: its series by label values.
struct Family<T> {
    name: &'static str,
    help: &'static str,
    /// Labels after the dimensions (`directive` for CSP).
    extra_labels: &'static [&'static str],
    /// Keyed by label values a browser chose: hashed with a random key
    /// (SipHash), never a hash a client can make collide (see `Sessions`).
    series: HashMap<String, T, RandomState>,
    /// Series created with real dimension values; `__other__` ones are not counted.
    distinct: usize,
    /// Series with some dimensions folded (kept ones real): at most `max` too.
    folded: usize,
}

/// The keys one observation may land on, most precise first.
struct Keys<'a> {
    key: &'a str,
    /// Kept dimensions real, the others `__other__`.
    other: &'a str,
    /// Every dimension `__other__`.
    all_other: &'a str,
}

impl<T: Default> Family<T> {
    fn new(name: &'static str, help: &'static str, extra_labels: &'static [&'static str]) -> Self {
        Self {
            name,
            help,
            extra_labels,
            series: HashMap::default(),
            distinct: 0,
            folded: 0,
        }
    }

    /// The series for `keys.key`; past `max` distinct series, the one with
    /// only the kept dimensions (`keys.other`), and past `max` of those, the
    /// one whose dimensions are all `__other__`. The bool says "folded".
    fn series(&mut self, keys: &Keys<'_>, max: usize) -> (Option<&mut T>, bool) {
        if self.series.contains_key(keys.key) {
            return (self.series.get_mut(keys.key), false);
        }
        if self.distinct < max {
            self.series.insert(keys.key.to_owned(), T::default());
            self.distinct += 1;
            return (self.series.get_mut(keys.key), false);
        }
        // When every dimension is kept on fold, `other` is the key itself:
        // it still gets a series of the folded budget (so a budget or SLO
        // by that dimension still sees it), not `__other__` at once.
        let partial = keys.other != keys.all_other;
        let key = if partial && (self.series.contains_key(keys.other) || self.folded < max) {
            keys.other
        } else {
            keys.all_other
        };
        if !self.series.contains_key(key) {
            self.series.insert(key.to_owned(), T::default());
            self.folded += usize::from(key != keys.all_other);
        }
        (self.series.get_mut(key), true)
    }

    fn sorted(&self) -> Vec<(&String, &T)> {
        let mut all: Vec<_> = self.series.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }
}

#[derive(Debug, Default, Clone)]
struct HistogramSeries {
    /// Per bound, not cumulative; rendering accumulates.
    buckets: Vec<u64>,
    count: u64,
    sum: f64,
}

struct VitalFamily {
    vital: Vital,
    bounds: Vec<f64>,
    family: Family<HistogramSeries>,
}

/// Sessions this replica has seen, in two generations so memory stays under
/// `max` entries and a session idle for a whole generation is forgotten.
/// Ids are kept as 64-bit hashes; the value says "has had a JS error".
///
/// The ids are the browser's, so they are hashed with a random key
/// (SipHash): under `FxHasher`, a client could make any number of ids with
/// one hash (counted as one session) or with one bucket (a probe chain each
/// lookup walks). Keyed, the hashes are unpredictable, and the maps may
/// spread them with Fx.
struct Sessions {
    ids: RandomState,
    current: HashMap<u64, Seen, FxBuildHasher>,
    previous: HashMap<u64, Seen, FxBuildHasher>,
    /// Entries per generation.
    generation_max: usize,
    /// A generation ends after this many seconds even when not full.
    generation_secs: u64,
    started: u64,
    /// Sessions dropped with a generation that ended because it was full,
    /// seen within their timeout: each is counted again if it comes back.
    forgotten_early: u64,
}

/// What is kept of a session: whether it had an error, and when it was
/// last seen (seconds), to tell a session forgotten early from one that
/// had already ended.
/// 16 bytes with its key, as the error flag alone was: the time is kept in
/// 32 bits, wrapping (ages are told apart for 136 years).
#[derive(Clone, Copy)]
struct Seen {
    errored: bool,
    at: u32,
}

impl Sessions {
    fn new(max: usize, timeout_secs: u64) -> Self {
        Self {
            ids: RandomState::new(),
            current: HashMap::default(),
            previous: HashMap::default(),
            generation_max: (max / 2).max(1),
            generation_secs: timeout_secs.max(1),
            started: 0,
            forgotten_early: 0,
        }
    }

    /// Marks a session seen; returns (first time seen, its error flag).
    fn touch(&mut self, id: &str, now: u64) -> (bool, &mut bool) {
        let timed_out = now.saturating_sub(self.started) >= self.generation_secs;
        if self.current.len() >= self.generation_max || timed_out {
            // Full, not timed out: the previous generation's sessions may
            // have been seen a moment ago. Those idle past the timeout had
            // ended anyway (a walk per generation: one step per touch).
            if !timed_out {
                let timeout = self.generation_secs;
                self.forgotten_early += self
                    .previous
                    .values()
                    .filter(|seen| u64::from((now as u32).wrapping_sub(seen.at)) < timeout)
                    .count() as u64;
            }
            self.previous = std::mem::take(&mut self.current);
            self.started = now;
        }
        let key = self.ids.hash_one(id);
        let (new, errored) = match self.previous.remove(&key) {
            Some(seen) => (false, seen.errored),
            None => (!self.current.contains_key(&key), false),
        };
        let at = now as u32;
        let seen = self.current.entry(key).or_insert(Seen { errored, at });
        seen.at = at;
        (new, &mut seen.errored)
    }

    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// Limits and label names, from the sink's config.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Prometheus label names of the dimensions (`service_name`...).
    pub labels: Vec<String>,
    /// Per dimension: keep its value when a series is folded into
    /// `__other__` (the dimensions SLOs and budgets are evaluated by, so an
    /// overflow of page templates does not blur which service is burning).
    pub keep_on_fold: Vec<bool>,
    pub max_series: usize,
    pub max_sessions: usize,
    pub session_timeout_secs: u64,
    /// Bucket bounds per vital, in the metric unit.
    pub buckets: Vec<(Vital, Vec<f64>)>,
}

pub struct RumMetrics {
    labels: Vec<String>,
    keep_on_fold: Vec<bool>,
    max_series: usize,
    page_views: Family<u64>,
    sessions_seen: Family<u64>,
    sessions_with_error: Family<u64>,
    errors: Family<u64>,
    csp_violations: Family<u64>,
    vitals: Vec<VitalFamily>,
    sessions: Sessions,
    /// Reused for building series keys, so a hit allocates nothing.
    key: String,
    other_key: String,
    all_other_key: String,
}

pub const PAGE_VIEWS: &str = "rum_page_views_total";
pub const SESSIONS: &str = "rum_sessions_total";
/// Sessions forgotten early because `max_sessions` was reached.
const FORGOTTEN: &str = "rum_sessions_forgotten_total";
const FORGOTTEN_HELP: &str = "Sessions forgotten before session_timeout_secs because max_sessions were remembered; each may be counted again in rum_sessions_total.";
pub const SESSIONS_WITH_ERROR: &str = "rum_sessions_with_js_error_total";
pub const ERRORS: &str = "rum_js_errors_total";
pub const CSP_VIOLATIONS: &str = "rum_csp_violations_total";

impl RumMetrics {
    pub fn new(settings: Settings) -> Self {
        Self {
            max_series: settings.max_series,
            page_views: Family::new(PAGE_VIEWS, "Page views (page_view events).", &[]),
            sessions_seen: Family::new(
                SESSIONS,
                "Sessions seen for the first time by this replica (by the dimensions of their first event).",
                &[],
            ),
            sessions_with_error: Family::new(
                SESSIONS_WITH_ERROR,
                "Sessions that had their first JavaScript error (by the dimensions of that error).",
                &[],
            ),
            errors: Family::new(ERRORS, "JavaScript errors (uncaught errors and unhandled rejections, repeats included).", &[]),
            csp_violations: Family::new(
                CSP_VIOLATIONS,
                "Content-Security-Policy violation reports, by effective directive.",
                &["directive"],
            ),
            vitals: settings
                .buckets
                .into_iter()
                .map(|(vital, bounds)| VitalFamily {
                    vital,
                    bounds,
                    family: Family::new(vital.metric(), vital.help(), &[]),
                })
                .collect(),
            sessions: Sessions::new(settings.max_sessions, settings.session_timeout_secs),
            labels: settings.labels,
            keep_on_fold: settings.keep_on_fold,
            key: String::new(),
            other_key: String::new(),
            all_other_key: String::new(),
        }
    }

    /// Adds one observation at `now` (seconds; ages sessions). Returns how
    /// many series updates were folded into `__other__` by the cap.
    pub fn record(&mut self, observation: &Observation<'_>, now: u64) -> u64 {
        self.key.clear();
        self.other_key.clear();
        self.all_other_key.clear();
        // An over-long value is `__other__` in every series it updates, and
        // each of those updates counts as folded.
        let mut shortened = false;
        for (i, value) in observation.dims.iter().enumerate() {
            if i > 0 {
                self.key.push(SEP);
                self.other_key.push(SEP);
                self.all_other_key.push(SEP);
            }
            let start = self.key.len();
            if value.len() > MAX_LABEL_VALUE_BYTES {
                shortened = true;
                self.key.push_str(OTHER);
            } else {
                // A separator inside a value would split it when rendering.
                self.key
                    .extend(value.chars().map(|c| if c == SEP { '_' } else { c }));
            }
            if self.keep_on_fold.get(i).copied().unwrap_or(false) {
                let kept = &self.key[start..];
                self.other_key.push_str(kept);
            } else {
                self.other_key.push_str(OTHER);
            }
            self.all_other_key.push_str(OTHER);
        }
        let max = self.max_series;
        let keys = Keys {
            key: &self.key,
            other: &self.other_key,
            all_other: &self.all_other_key,
        };
        let mut folded = 0;
        let mut count = |family: &mut Family<u64>, n: u64| {
            let (series, was_folded) = family.series(&keys, max);
            if let Some(series) = series {
                // `n` may be a browser's forged error count: a counter that
                // wrapped would go backwards, which reads as a reset.
                *series = series.saturating_add(n);
            }
            folded += u64::from(was_folded || shortened);
        };

        if let Some(id) = observation.session {
            let (new, errored) = self.sessions.touch(id, now);
            if new {
                count(&mut self.sessions_seen, 1);
            }
            if matches!(observation.kind, Kind::Error { .. }) && !*errored {
                *errored = true;
                count(&mut self.sessions_with_error, 1);
            }
        }
        match &observation.kind {
            Kind::PageView => count(&mut self.page_views, 1),
            Kind::Error { count: n } => count(&mut self.errors, (*n).max(1)),
            Kind::CspViolation { directive } => {
                let with = |base: &str| {
                    if self.labels.is_empty() {
                        directive.to_string()
                    } else {
                        format!("{base}{SEP}{directive}")
                    }
                };
                let (key, other, all_other) =
                    (with(keys.key), with(keys.other), with(keys.all_other));
                let keys = Keys {
                    key: &key,
                    other: &other,
                    all_other: &all_other,
                };
                let (series, was_folded) = self.csp_violations.series(&keys, max);
                if let Some(series) = series {
                    *series += 1;
                }
                folded += u64::from(was_folded || shortened);
            }
            Kind::Vital(vital, value) => {
                if let Some(v) = self.vitals.iter_mut().find(|v| v.vital == *vital) {
                    let value = vital.to_metric_unit(*value);
                    let (series, was_folded) = v.family.series(&keys, max);
                    if let Some(series) = series {
                        if series.buckets.len() != v.bounds.len() {
                            series.buckets = vec![0; v.bounds.len()];
                        }
                        if let Some(i) = v.bounds.iter().position(|b| value <= *b) {
                            series.buckets[i] += 1;
                        }
                        series.count += 1;
                        series.sum += value;
                    }
                    folded += u64::from(was_folded || shortened);
                }
            }
            Kind::Other => {}
        }
        folded
    }

    /// Sessions currently remembered (bounded by `max_sessions`).
    pub fn sessions_remembered(&self) -> usize {
        self.sessions.len()
    }

    /// Series of one metric, `__other__` included.
    pub fn series_count(&self, metric: &str) -> usize {
        let counters = [
            &self.page_views,
            &self.sessions_seen,
            &self.sessions_with_error,
            &self.errors,
            &self.csp_violations,
        ];
        if let Some(family) = counters.iter().find(|f| f.name == metric) {
            return family.series.len();
        }
        self.vitals
            .iter()
            .find(|v| v.family.name == metric)
            .map_or(0, |v| v.family.series.len())
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        for family in [
            &self.page_views,
            &self.sessions_seen,
            &self.sessions_with_error,
            &self.errors,
            &self.csp_violations,
        ] {
            let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
            let _ = writeln!(out, "# TYPE {} counter", family.name);
            for (key, value) in family.sorted() {
                let labels = self.label_set(key, family.extra_labels, None);
                let _ = writeln!(out, "{}{labels} {value}", family.name);
            }
        }
        let _ = writeln!(out, "# HELP {FORGOTTEN} {FORGOTTEN_HELP}");
        let _ = writeln!(out, "# TYPE {FORGOTTEN} counter");
        let _ = writeln!(out, "{FORGOTTEN} {}", self.sessions.forgotten_early);
        for v in &self.vitals {
            let name = v.family.name;
            let _ = writeln!(out, "# HELP {name} {}", v.family.help);
            let _ = writeln!(out, "# TYPE {name} histogram");
            for (key, series) in v.family.sorted() {
                let mut cumulative = 0;
                for (i, bound) in v.bounds.iter().enumerate() {
                    cumulative += series.buckets.get(i).copied().unwrap_or(0);
                    let le = format_float(*bound);
                    let labels = self.label_set(key, &[], Some(&le));
                    let _ = writeln!(out, "{name}_bucket{labels} {cumulative}");
                }
                let labels = self.label_set(key, &[], Some("+Inf"));
                let _ = writeln!(out, "{name}_bucket{labels} {}", series.count);
                let labels = self.label_set(key, &[], None);
                let _ = writeln!(out, "{name}_sum{labels} {}", format_float(series.sum));
                let _ = writeln!(out, "{name}_count{labels} {}", series.count);
            }
        }
        out
    }

    /// `{a="x",b="y"}` from a series key, or "" when there are no labels.
    fn label_set(&self, key: &str, extra: &[&str], le: Option<&str>) -> String {
        let names = self
            .labels
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied());
        let values = key.split(SEP);
        let mut out = String::new();
        let pairs = names.zip(values).chain(le.map(|le| ("le", le)));
        for (i, (name, value)) in pairs.enumerate() {
            out.push(if i == 0 { '{' } else { ',' });
            let _ = write!(out, "{name}=\"");
            for c in value.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        if !out.is_empty() {
            out.push('}');
        }
        out
    }
}

#[cfg(test)]
mod tests;
