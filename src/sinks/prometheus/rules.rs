//! `rum-pipeline rules`: the Prometheus rule file for a `prometheus` sink's
//! budgets and SLOs. Per SLO, recording rules for the error ratio over the
//! standard windows and the multi-window, multi-burn-rate alerts of Google's
//! SRE workbook (chapter "Alerting on SLOs"); per budget, the share of
//! measurements within budget over one period and an alert when it stays
//! under the statistic (p75: 75 %) for the configured number of periods.
//!
//! The output is deterministic (budgets and SLOs in name order), so the
//! committed deployments/prometheus/rules.yml can be compared byte for byte.

use std::fmt::Write as _;

use super::vitals::{format_float, format_number, Vital};
use super::{Resolved, ResolvedBudget, ResolvedSli, ResolvedSlo};
use crate::schema;

/// The windows the error ratio is recorded over: every window an alert below uses.
pub const WINDOWS: &[(&str, u64)] = &[
    ("5m", 300),
    ("30m", 1800),
    ("1h", 3600),
    ("2h", 7200),
    ("6h", 21_600),
    ("1d", 86_400),
    ("3d", 259_200),
];

/// One alert of the workbook's table 5-8: fires when both windows burn the
/// error budget at least `factor` times faster than the SLO allows.
pub struct BurnRate {
    pub severity: &'static str,
    pub factor: f64,
    pub long: &'static str,
    pub short: &'static str,
}

pub const BURN_RATES: &[BurnRate] = &[
    BurnRate {
        severity: "page",
        factor: 14.4,
        long: "1h",
        short: "5m",
    },
    BurnRate {
        severity: "page",
        factor: 6.0,
        long: "6h",
        short: "30m",
    },
    BurnRate {
        severity: "ticket",
        factor: 3.0,
        long: "1d",
        short: "2h",
    },
    BurnRate {
        severity: "ticket",
        factor: 1.0,
        long: "3d",
        short: "6h",
    },
];

/// Recorded error ratio of every SLO over `window` (label `slo`).
pub fn error_ratio_metric(window: &str) -> String {
    format!("slo:sli_error:ratio_rate{window}")
}

pub const WITHIN_BUDGET_METRIC: &str = "rum:web_vital_within_budget:ratio";
pub const BUDGET_REMAINING_METRIC: &str = "slo:error_budget_remaining:ratio";
pub const OBJECTIVE_METRIC: &str = "slo:objective:ratio";
pub const SLO_ALERT: &str = "RumSloErrorBudgetBurn";
pub const BUDGET_ALERT: &str = "RumWebVitalOverBudget";

fn window_secs(name: &str) -> u64 {
    WINDOWS
        .iter()
        .find(|(n, _)| *n == name)
        .map_or(0, |(_, secs)| *secs)
}

/// A Prometheus duration (`5m`, `1h30m`, `36s`, `1500ms`) for `secs` × `scale`.
pub fn duration(secs: f64, scale: f64) -> String {
    let mut ms = (secs * scale * 1000.0).round().max(1.0) as u64;
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if ms >= size {
            let _ = write!(out, "{}{unit}", ms / size);
            ms %= size;
        }
    }
    out
}

fn by_clause(by: &[String]) -> String {
    format!("sum by ({})", by.join(", "))
}

/// `1 - good/total` of an SLO over a range.
fn error_ratio_expr(slo: &ResolvedSlo, range: &str) -> String {
    let sum = by_clause(&slo.by);
    match &slo.sli {
        ResolvedSli::WebVital { vital, threshold } => {
            let metric = vital.metric();
            let le = format_float(vital.to_metric_unit(*threshold));
            format!(
                "1 - (\n  {sum} (rate({metric}_bucket{{le=\"{le}\"}}[{range}]))\n  /\n  {sum} (rate({metric}_count[{range}]))\n)"
            )
        }
        ResolvedSli::SessionsWithoutJsError => format!(
            "{sum} (rate({}[{range}]))\n/\n{sum} (rate({}[{range}]))",
            super::series::SESSIONS_WITH_ERROR,
            super::series::SESSIONS
        ),
    }
}

/// Writes YAML by hand: the shapes are few and fixed, and the output must
/// be byte-stable. Strings are JSON-quoted (valid YAML double-quoted scalars).
struct Yaml {
    out: String,
}

fn quote(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_default()
}

impl Yaml {
    fn line(&mut self, indent: usize, text: &str) {
        let _ = writeln!(self.out, "{:indent$}{text}", "");
    }

    fn field(&mut self, indent: usize, key: &str, value: &str) {
        self.line(indent, &format!("{key}: {}", quote(value)));
    }

    /// A multi-line value as a literal block (`|-`).
    fn block(&mut self, indent: usize, key: &str, text: &str) {
        if !text.contains('\n') {
            return self.field(indent, key, text);
        }
        self.line(indent, &format!("{key}: |-"));
        for line in text.lines() {
            self.line(indent + 2, line);
        }
    }

    fn map(&mut self, indent: usize, key: &str, pairs: &[(String, String)]) {
        if pairs.is_empty() {
            return;
        }
        self.line(indent, &format!("{key}:"));
        for (k, v) in pairs {
            self.field(indent + 2, k, v);
        }
    }
}

/// Labels every alert carries besides `severity`: `slo` and `service`.
fn service_label(by: &[String], resolved: &Resolved) -> String {
    let service = schema::SERVICE_NAME.replace('.', "_");
    if by.contains(&service) {
        format!("{{{{ $labels.{service} }}}}")
    } else {
        resolved.rules.service.clone()
    }
}

/// ` for service_name={{ $labels.service_name }}` — where the alert is, in words.
fn where_text(by: &[String]) -> String {
    if by.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = by
        .iter()
        .map(|l| format!("{l}={{{{ $labels.{l} }}}}"))
        .collect();
    format!(" ({})", parts.join(", "))
}

fn links(resolved: &Resolved) -> Vec<(String, String)> {
    let mut out = Vec::new();
    if let Some(url) = &resolved.rules.dashboard_url {
        out.push(("dashboard".to_owned(), url.clone()));
    }
    if let Some(url) = &resolved.rules.runbook_url {
        out.push(("runbook_url".to_owned(), url.clone()));
    }
    out
}

/// The rule file for the `prometheus` sinks of one pipeline (`(sink id,
/// its resolved config)`), one document; `source` names the pipeline file.
pub fn render(sinks: &[(&str, &Resolved)], source: &str) -> String {
    let mut y = Yaml { out: String::new() };
    let ids: Vec<String> = sinks
        .iter()
        .map(|(id, _)| format!("[sinks.{id}]"))
        .collect();
    y.line(
        0,
        &format!(
            "# GENERATED by `rum-pipeline rules` from {} of {source}.",
            ids.join(", ")
        ),
    );
    y.line(
        0,
        "# Edit the pipeline's budgets and slos, then regenerate; do not edit this file.",
    );
    for (id, resolved) in sinks {
        if resolved.rules.window_scale != 1.0 {
            y.line(
                0,
                &format!(
                    "# [sinks.{id}]: windows scaled by {} (rules.window_scale), for tests only.",
                    resolved.rules.window_scale
                ),
            );
        }
    }
    if sinks
        .iter()
        .all(|(_, r)| r.slos.is_empty() && r.budgets.is_empty())
    {
        y.line(0, "groups: []");
        return y.out;
    }
    y.line(0, "groups:");
    for (sink_id, resolved) in sinks {
        for slo in &resolved.slos {
            slo_group(&mut y, resolved, sink_id, slo);
        }
        if !resolved.budgets.is_empty() {
            y.line(
                2,
                &format!(
                    "- name: {}",
                    quote(&format!("rum-pipeline:{sink_id}:budgets"))
                ),
            );
            y.line(4, "rules:");
            for budget in &resolved.budgets {
                budget_rules(&mut y, resolved, budget);
            }
        }
    }
    y.out
}

fn slo_group(y: &mut Yaml, resolved: &Resolved, sink_id: &str, slo: &ResolvedSlo) {
    let scale = resolved.rules.window_scale;
    let name = &slo.name;
    let slo_label = vec![("slo".to_owned(), name.clone())];
    let budget = (1.0 - slo.target).max(0.0);
    let budget_text = format_number(budget);
    y.line(
        2,
        &format!(
            "- name: {}",
            quote(&format!("rum-pipeline:{sink_id}:slo:{name}"))
        ),
    );
    y.line(4, "rules:");
    for (window, secs) in WINDOWS {
        y.line(6, &format!("- record: {}", error_ratio_metric(window)));
        y.block(
            8,
            "expr",
            &error_ratio_expr(slo, &duration(*secs as f64, scale)),
        );
        y.map(8, "labels", &slo_label);
    }
    let window_secs_total = f64::from(slo.window_days) * 86_400.0;
    y.line(6, &format!("- record: {BUDGET_REMAINING_METRIC}"));
    y.block(
        8,
        "expr",
        &format!(
            "1 - (\n  {}\n) / {budget_text}",
            error_ratio_expr(slo, &duration(window_secs_total, scale)).replace('\n', "\n  ")
        ),
    );
    y.map(8, "labels", &slo_label);
    y.line(6, &format!("- record: {OBJECTIVE_METRIC}"));
    y.field(8, "expr", &format!("vector({})", format_number(slo.target)));
    y.map(8, "labels", &slo_label);

    let service = service_label(&slo.by, resolved);
    for severity in ["page", "ticket"] {
        let pairs: Vec<&BurnRate> = BURN_RATES
            .iter()
            .filter(|b| b.severity == severity)
            .collect();
        let mut expr = String::new();
        for (i, burn) in pairs.iter().enumerate() {
            if i > 0 {
                expr.push_str("\nor\n");
            }
            let threshold = format!("({} * {budget_text})", format_number(burn.factor));
            let _ = write!(
                expr,
                "(\n  {}{{slo=\"{name}\"}} > {threshold}\n  and\n  {}{{slo=\"{name}\"}} > {threshold}\n)",
                error_ratio_metric(burn.long),
                error_ratio_metric(burn.short),
            );
        }
        let windows: Vec<String> = pairs
            .iter()
            .map(|b| {
                let windows_per_slo = window_secs_total / window_secs(b.long).max(1) as f64;
                let spent = 100.0 * b.factor / windows_per_slo;
                format!(
                    "{}× over {} and {} ({} % of the budget in {})",
                    format_number(b.factor),
                    b.long,
                    b.short,
                    format_number((spent * 10.0).round() / 10.0),
                    b.long
                )
            })
            .collect();
        let fastest = pairs.iter().map(|b| b.factor).fold(0.0, f64::max);
        let exhausted_days = f64::from(slo.window_days) / fastest;
        let action = match severity {
            "page" => "Act now: look at what changed (a deploy, a third-party script, the CDN) and roll it back; the dashboard breaks the SLI down by page template and browser.",
            _ => "Plan a fix this week: find the pages and browsers that miss it in the dashboard, and check recent releases.",
        };
        y.line(6, &format!("- alert: {SLO_ALERT}"));
        y.block(8, "expr", &expr);
        y.map(
            8,
            "labels",
            &[
                ("severity".to_owned(), severity.to_owned()),
                ("slo".to_owned(), name.clone()),
                ("service".to_owned(), service.clone()),
            ],
        );
        let mut annotations = vec![
            (
                "summary".to_owned(),
                format!(
                    "SLO {name}{} is burning its {}-day error budget {} (at {}× the sustainable rate or more)",
                    where_text(&slo.by),
                    slo.window_days,
                    if severity == "page" { "fast" } else { "steadily" },
                    format_number(pairs.iter().map(|b| b.factor).fold(f64::MAX, f64::min))
                ),
            ),
            (
                "description".to_owned(),
                format!(
                    "SLO: {}. The error ratio is {{{{ $value | humanizePercentage }}}} against a budget of {} % ({}). At {}× the whole {}-day budget is gone in {} days. {action}",
                    slo.description,
                    format_number(budget * 100.0),
                    windows.join("; "),
                    format_number(fastest),
                    slo.window_days,
                    format_number((exhausted_days * 10.0).round() / 10.0),
                ),
            ),
        ];
        annotations.extend(links(resolved));
        y.map(8, "annotations", &annotations);
    }
}

fn budget_rules(y: &mut Yaml, resolved: &Resolved, budget: &ResolvedBudget) {
    let scale = resolved.rules.window_scale;
    let vital: Vital = budget.vital;
    let metric = vital.metric();
    let le = format_float(vital.to_metric_unit(budget.threshold));
    let range = duration(budget.period_secs as f64, scale);
    let sum = by_clause(&budget.by);
    let threshold_text = format!("{}{}", format_number(budget.threshold), vital.unit());
    let labels = vec![
        ("vital".to_owned(), vital.name().to_owned()),
        ("budget".to_owned(), threshold_text.clone()),
    ];
    y.line(6, &format!("- record: {WITHIN_BUDGET_METRIC}"));
    y.block(
        8,
        "expr",
        &format!(
            "{sum} (rate({metric}_bucket{{le=\"{le}\"}}[{range}]))\n/\n{sum} (rate({metric}_count[{range}]))"
        ),
    );
    y.map(8, "labels", &labels);

    let quantile = format_number(budget.quantile);
    let periods = budget.evaluation_periods;
    y.line(6, &format!("- alert: {BUDGET_ALERT}"));
    y.field(
        8,
        "expr",
        &format!(
            "{WITHIN_BUDGET_METRIC}{{vital=\"{}\"}} < {quantile}",
            vital.name()
        ),
    );
    if periods > 1 {
        let wait = (periods - 1) as f64 * budget.period_secs as f64;
        y.line(8, &format!("for: {}", duration(wait, scale)));
    }
    y.map(
        8,
        "labels",
        &[
            ("severity".to_owned(), budget.severity.clone()),
            (
                "slo".to_owned(),
                format!("budget_{}", vital.name().to_ascii_lowercase()),
            ),
            ("service".to_owned(), service_label(&budget.by, resolved)),
            ("vital".to_owned(), vital.name().to_owned()),
        ],
    );
    let period_text = duration(budget.period_secs as f64, 1.0);
    let mut annotations = vec![
        (
            "summary".to_owned(),
            format!(
                "{} {} over budget ({threshold_text}){}",
                vital.name(),
                budget.statistic,
                where_text(&budget.by)
            ),
        ),
        (
            "description".to_owned(),
            format!(
                "Over the last {period_text} only {{{{ $value | humanizePercentage }}}} of {} measurements were at or under {threshold_text}; the {} is within budget only when at least {} % are. It has stayed under for {periods} period(s) of {period_text} in a row. Find the page templates and browsers that got slower in the dashboard, and check releases and third-party scripts of that time.",
                vital.name(),
                budget.statistic,
                format_number(budget.quantile * 100.0),
            ),
        ),
    ];
    annotations.extend(links(resolved));
    y.map(8, "annotations", &annotations);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_prometheus_durations() {
        assert_eq!(duration(300.0, 1.0), "5m");
        assert_eq!(duration(259_200.0, 1.0), "3d");
        assert_eq!(duration(5400.0, 1.0), "1h30m");
        assert_eq!(duration(3600.0, 0.01), "36s");
        assert_eq!(duration(300.0, 0.01), "3s");
        assert_eq!(duration(1800.0, 0.001), "1s800ms");
        assert_eq!(duration(0.0, 1.0), "1ms");
    }
}
