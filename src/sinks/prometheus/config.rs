//! The `prometheus` sink's configuration: what the TOML says (`dimensions`,
//! `budgets`, `slos`, `rules`) and `resolve`, which checks it and looks every
//! name up once — for `validate`, for the sink's build and for `rum-pipeline rules`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::vitals::{self, Vital};
use crate::schema::{self, FieldType};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    /// Path the metrics are served at, on the listener of the sources (or
    /// on `address`). `/metrics` stays the pipeline's own metrics.
    #[serde(default = "default_path")]
    pub path: String,
    /// Serve on this address instead of the sources' listener; an address a
    /// source already uses shares its listener.
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// Event fields that become labels (`service.name` -> `service_name`,
    /// `labels.site` -> `labels_site`). Keep them few and bounded.
    #[serde(default = "default_dimensions")]
    pub dimensions: Vec<String>,
    /// Series per metric; new label sets beyond it are counted under
    /// `__other__` (and as `component_errors_total{error_type="cardinality_limit"}`).
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Sessions remembered to count each once (and its first error once).
    #[serde(default = "default_max_sessions")]
    pub max_sessions: usize,
    /// A session not seen for this long may be counted again (the client's
    /// own idle timeout is 30 minutes).
    #[serde(default = "default_session_timeout_secs")]
    pub session_timeout_secs: u64,
    /// Leave out events marked `labels.synthetic` (crawlers, headless browsers).
    #[serde(default = "crate::config::default_true")]
    pub exclude_synthetic: bool,
    /// Per web vital: `LCP = 2500`, or `{ threshold, statistic, period_secs,
    /// evaluation_periods, by, severity }`. Alerts when the statistic (p75)
    /// is over the threshold for `evaluation_periods` periods in a row.
    #[serde(default)]
    pub budgets: BTreeMap<String, Budget>,
    /// Named SLOs: a good/total ratio, a target and a window.
    #[serde(default)]
    pub slos: BTreeMap<String, Slo>,
    /// How `rum-pipeline rules` writes the rules.
    #[serde(default)]
    pub rules: RulesOptions,
}

fn default_path() -> String {
    "/metrics/rum".to_owned()
}
fn default_dimensions() -> Vec<String> {
    vec![schema::SERVICE_NAME.to_owned()]
}
fn default_max_series() -> usize {
    1000
}
fn default_max_sessions() -> usize {
    200_000
}
fn default_session_timeout_secs() -> u64 {
    1800
}

#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    /// In the vital's unit: milliseconds, or the CLS score.
    pub threshold: f64,
    /// `p75` (the Core Web Vitals convention), or another `pNN`.
    pub statistic: String,
    /// Length of one evaluation period.
    pub period_secs: u64,
    /// Consecutive periods over budget before the alert fires (as CloudWatch counts).
    pub evaluation_periods: u32,
    /// Dimensions the budget is evaluated per; default `service.name` when exported.
    pub by: Option<Vec<String>>,
    /// `severity` label of the alert.
    pub severity: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BudgetTable {
    threshold: f64,
    #[serde(default = "default_statistic")]
    statistic: String,
    #[serde(default = "default_period_secs")]
    period_secs: u64,
    #[serde(default = "default_evaluation_periods")]
    evaluation_periods: u32,
    #[serde(default)]
    by: Option<Vec<String>>,
    #[serde(default = "default_budget_severity")]
    severity: String,
}

/// Longest budget period: a day.
const MAX_PERIOD_SECS: u64 = 86_400;

/// Longest SLO window, and longest run of budget periods before an alert: a
/// year, more than Prometheus usually keeps.
const MAX_WINDOW_DAYS: u32 = 365;

fn default_statistic() -> String {
    "p75".to_owned()
}
fn default_period_secs() -> u64 {
    300
}
fn default_evaluation_periods() -> u32 {
    2
}
fn default_budget_severity() -> String {
    "ticket".to_owned()
}

impl Budget {
    fn with_threshold(threshold: f64) -> Self {
        Budget {
            threshold,
            statistic: default_statistic(),
            period_secs: default_period_secs(),
            evaluation_periods: default_evaluation_periods(),
            by: None,
            severity: default_budget_severity(),
        }
    }
}

/// `LCP = 2500` or `LCP = { threshold = 2500, evaluation_periods = 3 }`.
impl<'de> Deserialize<'de> for Budget {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct BudgetVisitor;
        impl<'de> Visitor<'de> for BudgetVisitor {
            type Value = Budget;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a threshold (`LCP = 2500`) or a table with `threshold`")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Budget, E> {
                Ok(Budget::with_threshold(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Budget, E> {
                Ok(Budget::with_threshold(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Budget, E> {
                Ok(Budget::with_threshold(v))
            }
            fn visit_map<M: MapAccess<'de>>(self, map: M) -> Result<Budget, M::Error> {
                let t = BudgetTable::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Budget {
                    threshold: t.threshold,
                    statistic: t.statistic,
                    period_secs: t.period_secs,
                    evaluation_periods: t.evaluation_periods,
                    by: t.by,
                    severity: t.severity,
                })
            }
        }
        deserializer.deserialize_any(BudgetVisitor)
    }
}

/// What counts as good, out of what.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SliKind {
    /// Measurements of `vital` at or under `threshold`, out of all its measurements.
    #[default]
    WebVital,
    /// Sessions without a JavaScript error, out of all sessions.
    SessionsWithoutJsError,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    /// What the SLO promises, in words (alert annotations quote it).
    #[serde(default)]
    pub description: Option<String>,
    /// `web_vital` (the default) or `sessions_without_js_error`.
    #[serde(default)]
    pub sli: SliKind,
    /// For `web_vital`: LCP, INP, CLS, FCP or TTFB.
    #[serde(default)]
    pub vital: Option<String>,
    /// For `web_vital`: the good ceiling, in ms (CLS: the score).
    #[serde(default)]
    pub threshold: Option<f64>,
    /// Share of good events promised, strictly between 0 and 1.
    pub target: f64,
    /// The SLO window (error budget period).
    #[serde(default = "default_window_days")]
    pub window_days: u32,
    /// Dimensions the SLO is evaluated per; default `service.name` when exported.
    #[serde(default)]
    pub by: Option<Vec<String>>,
}

fn default_window_days() -> u32 {
    28
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesOptions {
    /// Multiplies every window, period and `for` duration of the rules:
    /// 1 in production; e.g. 0.01 in tests (1 h becomes 36 s).
    #[serde(default = "default_window_scale")]
    pub window_scale: f64,
    /// `service` label of alerts whose SLO or budget is not per `service.name`.
    #[serde(default = "default_service")]
    pub service: String,
    /// Linked from every alert's annotations (`dashboard`), when set.
    #[serde(default)]
    pub dashboard_url: Option<String>,
    /// Linked from every alert's annotations (`runbook_url`), when set.
    #[serde(default)]
    pub runbook_url: Option<String>,
}

fn default_window_scale() -> f64 {
    1.0
}
fn default_service() -> String {
    "rum".to_owned()
}

impl Default for RulesOptions {
    fn default() -> Self {
        Self {
            window_scale: default_window_scale(),
            service: default_service(),
            dashboard_url: None,
            runbook_url: None,
        }
    }
}

/// An exported event field and its label name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dimension {
    pub path: String,
    pub label: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedBudget {
    pub vital: Vital,
    pub threshold: f64,
    pub statistic: String,
    /// The statistic as a share: p75 -> 0.75.
    pub quantile: f64,
    pub period_secs: u64,
    pub evaluation_periods: u32,
    /// Label names the budget is evaluated per.
    pub by: Vec<String>,
    pub severity: String,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ResolvedSli {
    WebVital { vital: Vital, threshold: f64 },
    SessionsWithoutJsError,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSlo {
    pub name: String,
    pub description: String,
    pub sli: ResolvedSli,
    pub target: f64,
    pub window_days: u32,
    pub by: Vec<String>,
}

/// The config with every name looked up: what the sink and the rules use.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub dimensions: Vec<Dimension>,
    pub buckets: Vec<(Vital, Vec<f64>)>,
    pub budgets: Vec<ResolvedBudget>,
    pub slos: Vec<ResolvedSlo>,
    pub rules: RulesOptions,
}

/// Fields that are unique per event, page or person: as labels they would
/// only fill the series cap (and some are personal data).
const UNBOUNDED_FIELDS: &[(&str, &str)] = &[
    (schema::SESSION_ID, "one value per session"),
    (schema::VIEW_ID, "one value per page view"),
    (schema::RUM_SEQ, "one value per event"),
    (schema::URL_FULL, "use url.path_template"),
    (schema::URL_PATH, "use url.path_template"),
    (schema::URL_QUERY, "use url.path_template"),
    (schema::URL_FRAGMENT, "use url.path_template"),
    (schema::HTTP_REFERRER, "unbounded"),
    (
        schema::USER_AGENT_ORIGINAL,
        "use user_agent.name or user_agent.category",
    ),
    (schema::TRACE_ID, "one value per trace"),
    (schema::TRANSACTION_ID, "one value per transaction"),
    (schema::SPAN_ID, "one value per span"),
    (schema::ERROR_ID, "one value per error"),
];

/// Checks one `dimensions` entry; returns its label name.
fn dimension_label(path: &str) -> Result<String, String> {
    if let Some((_, why)) = UNBOUNDED_FIELDS.iter().find(|(p, _)| *p == path) {
        return Err(format!("`{path}` cannot be a dimension: {why}"));
    }
    let label_key = path.strip_prefix("labels.");
    let known = match label_key {
        Some(key) => !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
        None => schema::CONTEXT_FIELDS
            .iter()
            .chain(schema::ENRICHMENT_FIELDS)
            .any(|f| {
                f.path == path
                    && matches!(
                        f.ty,
                        FieldType::Keyword | FieldType::Long | FieldType::Boolean
                    )
            }),
    };
    if !known {
        return Err(format!(
            "unknown dimension `{path}`: use a keyword field of the beacon context or of the enrichment transforms (service.name, url.domain, url.path_template, user_agent.category, user_agent.device.name, client.geo.country_iso_code, ...) or labels.<name>"
        ));
    }
    Ok(path.replace('.', "_"))
}

fn parse_statistic(statistic: &str) -> Option<f64> {
    let percent: f64 = statistic.strip_prefix('p')?.parse().ok()?;
    (percent > 0.0 && percent < 100.0).then_some(percent / 100.0)
}

impl PrometheusConfig {
    /// Looks every name up; errors are (key, message) pairs.
    pub fn resolve(&self) -> Result<Resolved, Vec<(String, String)>> {
        let mut errors: Vec<(String, String)> = Vec::new();
        if !self.path.starts_with('/') {
            errors.push(("path".into(), "must start with `/`".into()));
        } else if self.path == "/health" || self.path == "/metrics" {
            errors.push(("path".into(), format!("`{}` is reserved", self.path)));
        }
        if self.max_series == 0 {
            errors.push(("max_series".into(), "must be at least 1".into()));
        }
        if self.max_sessions == 0 {
            errors.push(("max_sessions".into(), "must be at least 1".into()));
        }
        let mut dimensions: Vec<Dimension> = Vec::new();
        for path in &self.dimensions {
            match dimension_label(path) {
                Ok(label) if dimensions.iter().any(|d| d.label == label) => errors.push((
                    "dimensions".into(),
                    format!("`{path}` is listed twice (or maps to the same label `{label}`)"),
                )),
                Ok(label) => dimensions.push(Dimension {
                    path: path.clone(),
                    label,
                }),
                Err(message) => errors.push(("dimensions".into(), message)),
            }
        }
        let group = |key: &str, by: &Option<Vec<String>>, errors: &mut Vec<(String, String)>| {
            let Some(by) = by else {
                return dimensions
                    .iter()
                    .filter(|d| d.path == schema::SERVICE_NAME)
                    .map(|d| d.label.clone())
                    .collect();
            };
            let mut labels = Vec::new();
            for path in by {
                match dimensions.iter().find(|d| &d.path == path) {
                    Some(d) => labels.push(d.label.clone()),
                    None => errors.push((
                        format!("{key}.by"),
                        format!(
                            "`{path}` is not an exported dimension: add it to `dimensions` ({})",
                            self.dimensions.join(", ")
                        ),
                    )),
                }
            }
            labels
        };

        let mut budgets = Vec::new();
        for (name, budget) in &self.budgets {
            let key = format!("budgets.{name}");
            let Some(vital) = Vital::parse(name) else {
                errors.push((
                    key,
                    format!("unknown web vital `{name}` (known: {})", Vital::names()),
                ));
                continue;
            };
            if let Some(wrong) = vital.threshold_error(budget.threshold) {
                errors.push((format!("{key}.threshold"), wrong));
            }
            let quantile = parse_statistic(&budget.statistic).unwrap_or_else(|| {
                errors.push((
                    format!("{key}.statistic"),
                    format!("`{}` is not a percentile like `p75`", budget.statistic),
                ));
                0.75
            });
            // Bounded well below what Prometheus parses as a duration (about
            // 292 years): the rules file holds these as ranges and `for`.
            if budget.period_secs == 0 {
                errors.push((format!("{key}.period_secs"), "must be at least 1".into()));
            } else if budget.period_secs > MAX_PERIOD_SECS {
                errors.push((
                    format!("{key}.period_secs"),
                    format!("must be at most {MAX_PERIOD_SECS} (a day)"),
                ));
            }
            if budget.evaluation_periods == 0 {
                errors.push((
                    format!("{key}.evaluation_periods"),
                    "must be at least 1".into(),
                ));
            } else if budget.period_secs <= MAX_PERIOD_SECS
                && u64::from(budget.evaluation_periods) * budget.period_secs
                    > u64::from(MAX_WINDOW_DAYS) * 86_400
            {
                errors.push((
                    format!("{key}.evaluation_periods"),
                    format!(
                        "{} periods of {} s are more than {MAX_WINDOW_DAYS} days",
                        budget.evaluation_periods, budget.period_secs
                    ),
                ));
            }
            if budget.severity.is_empty() {
                errors.push((format!("{key}.severity"), "must not be empty".into()));
            }
            let by = group(&key, &budget.by, &mut errors);
            budgets.push(ResolvedBudget {
                vital,
                threshold: budget.threshold,
                statistic: budget.statistic.clone(),
                quantile,
                period_secs: budget.period_secs,
                evaluation_periods: budget.evaluation_periods,
                by,
                severity: budget.severity.clone(),
            });
        }

        let mut slos = Vec::new();
        for (name, slo) in &self.slos {
            let key = format!("slos.{name}");
            if !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                errors.push((
                    key.clone(),
                    "SLO names may use only letters, digits, `_` and `-`".into(),
                ));
            }
            if !(slo.target > 0.0 && slo.target < 1.0) {
                errors.push((
                    format!("{key}.target"),
                    format!("{} is outside (0, 1): write 99.9 % as 0.999", slo.target),
                ));
            }
            if slo.window_days == 0 {
                errors.push((format!("{key}.window_days"), "must be at least 1".into()));
            } else if slo.window_days > MAX_WINDOW_DAYS {
                errors.push((
                    format!("{key}.window_days"),
                    format!("must be at most {MAX_WINDOW_DAYS}"),
                ));
            }
            let sli = match slo.sli {
                SliKind::WebVital => {
                    let vital = match slo.vital.as_deref().map(|v| (v, Vital::parse(v))) {
                        Some((_, Some(vital))) => Some(vital),
                        Some((other, None)) => {
                            errors.push((
                                format!("{key}.vital"),
                                format!("unknown web vital `{other}` (known: {})", Vital::names()),
                            ));
                            None
                        }
                        None => {
                            errors.push((
                                format!("{key}.vital"),
                                "missing: a web_vital SLI needs `vital` and `threshold`".into(),
                            ));
                            None
                        }
                    };
                    let wrong = |t| vital.and_then(|v: Vital| v.threshold_error(t));
                    let threshold = match slo.threshold {
                        Some(t) if t.is_finite() && t > 0.0 && wrong(t).is_none() => Some(t),
                        Some(t) => {
                            let why =
                                wrong(t).unwrap_or_else(|| "must be a positive number".into());
                            errors.push((format!("{key}.threshold"), why));
                            None
                        }
                        None => {
                            errors.push((
                                format!("{key}.threshold"),
                                "missing: a web_vital SLI needs `vital` and `threshold`".into(),
                            ));
                            None
                        }
                    };
                    match (vital, threshold) {
                        (Some(vital), Some(threshold)) => {
                            ResolvedSli::WebVital { vital, threshold }
                        }
                        _ => continue,
                    }
                }
                SliKind::SessionsWithoutJsError => {
                    for (field, set) in [
                        ("vital", slo.vital.is_some()),
                        ("threshold", slo.threshold.is_some()),
                    ] {
                        if set {
                            errors.push((
                                format!("{key}.{field}"),
                                "only for `sli = \"web_vital\"`".into(),
                            ));
                        }
                    }
                    ResolvedSli::SessionsWithoutJsError
                }
            };
            let description = slo.description.clone().unwrap_or_else(|| match &sli {
                ResolvedSli::WebVital { vital, threshold } => format!(
                    "{vital} at or under {}{} in {} of page loads",
                    vitals::format_number(*threshold),
                    vital.unit(),
                    percent(slo.target)
                ),
                ResolvedSli::SessionsWithoutJsError => {
                    format!(
                        "{} of sessions without a JavaScript error",
                        percent(slo.target)
                    )
                }
            });
            let by = group(&key, &slo.by, &mut errors);
            slos.push(ResolvedSlo {
                name: name.clone(),
                description,
                sli,
                target: slo.target,
                window_days: slo.window_days,
                by,
            });
        }

        let scale = self.rules.window_scale;
        if !(scale.is_finite() && scale > 0.0 && scale <= 1.0) {
            errors.push(("rules.window_scale".into(), "must be in (0, 1]".into()));
        }
        if self.rules.service.is_empty() {
            errors.push(("rules.service".into(), "must not be empty".into()));
        }

        // Every budget and SLO threshold becomes a bucket bound, so "within
        // budget" is an exact bucket, never an interpolation.
        let buckets = Vital::ALL
            .into_iter()
            .map(|vital| {
                let extra = budgets
                    .iter()
                    .filter(|b| b.vital == vital)
                    .map(|b| b.threshold)
                    .chain(slos.iter().filter_map(|s| match s.sli {
                        ResolvedSli::WebVital {
                            vital: v,
                            threshold,
                        } if v == vital => Some(threshold),
                        _ => None,
                    }));
                (vital, vitals::buckets_with(vital, extra))
            })
            .collect();

        if errors.is_empty() {
            Ok(Resolved {
                dimensions,
                buckets,
                budgets,
                slos,
                rules: self.rules.clone(),
            })
        } else {
            Err(errors)
        }
    }

    /// Config problems as (key, message), for `validate`.
    pub fn check_keyed(&self) -> Vec<(String, String)> {
        self.resolve().err().unwrap_or_default()
    }
}

fn percent(share: f64) -> String {
    format!("{} %", vitals::format_number(share * 100.0))
}
