//! The web vitals the sink turns into histograms: their names as the
//! web-vitals library sends them, Google's good/poor thresholds, the metric
//! each becomes, and its bucket bounds. The rules generator reads the same
//! table, so a budget's `le` is spelled exactly as the exposition spells it.

use std::fmt;

/// The least timing threshold taken (ms): below it, a budget or SLO was
/// written in seconds.
const MIN_TIMING_THRESHOLD_MS: f64 = 10.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Vital {
    Lcp,
    Inp,
    Cls,
    Fcp,
    Ttfb,
}

impl Vital {
    pub const ALL: [Vital; 5] = [Vital::Lcp, Vital::Inp, Vital::Cls, Vital::Fcp, Vital::Ttfb];

    /// `rum.vital.name` as the client sends it, and the key budgets use.
    pub fn name(self) -> &'static str {
        match self {
            Vital::Lcp => "LCP",
            Vital::Inp => "INP",
            Vital::Cls => "CLS",
            Vital::Fcp => "FCP",
            Vital::Ttfb => "TTFB",
        }
    }

    pub fn parse(name: &str) -> Option<Vital> {
        Vital::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Known names, for error messages.
    pub fn names() -> String {
        Vital::ALL.map(Vital::name).join(", ")
    }

    /// The histogram's name. Times are in seconds (Prometheus base units);
    /// CLS has no unit.
    pub fn metric(self) -> &'static str {
        match self {
            Vital::Lcp => "rum_web_vital_lcp_seconds",
            Vital::Inp => "rum_web_vital_inp_seconds",
            Vital::Cls => "rum_web_vital_cls",
            Vital::Fcp => "rum_web_vital_fcp_seconds",
            Vital::Ttfb => "rum_web_vital_ttfb_seconds",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Vital::Lcp => "Largest Contentful Paint of page loads, in seconds.",
            Vital::Inp => "Interaction to Next Paint of page loads, in seconds.",
            Vital::Cls => "Cumulative Layout Shift of page loads (unitless).",
            Vital::Fcp => "First Contentful Paint of page loads, in seconds.",
            Vital::Ttfb => "Time to First Byte of page loads, in seconds.",
        }
    }

    /// Milliseconds for the timing vitals, a score for CLS: what the client
    /// sends and what budgets and SLO thresholds are written in.
    pub fn unit(self) -> &'static str {
        match self {
            Vital::Cls => "",
            _ => " ms",
        }
    }

    /// What is wrong with `threshold` as a budget's or SLO's, if anything:
    /// not a positive number, or a timing under 10 ms, which is no page's
    /// and almost surely seconds (`LCP = 2.5`, as web.dev writes it).
    pub fn threshold_error(self, threshold: f64) -> Option<String> {
        if !(threshold.is_finite() && threshold > 0.0) {
            return Some("must be a positive number".into());
        }
        if self != Vital::Cls && threshold < MIN_TIMING_THRESHOLD_MS {
            let t = format_number(threshold);
            return Some(format!(
                "{t} ms is too small for {self}, which is in milliseconds: for {t} s write {}",
                format_number(threshold * 1000.0)
            ));
        }
        None
    }

    /// From the unit of events and config to the unit of the metric.
    pub fn to_metric_unit(self, value: f64) -> f64 {
        match self {
            Vital::Cls => value,
            _ => value / 1000.0,
        }
    }

    /// Google's thresholds (web.dev/articles/vitals), in the event unit: good
    /// up to the first, poor above the second.
    pub fn thresholds(self) -> (f64, f64) {
        match self {
            Vital::Lcp => (2500.0, 4000.0),
            Vital::Inp => (200.0, 500.0),
            Vital::Cls => (0.1, 0.25),
            Vital::Fcp => (1800.0, 3000.0),
            Vital::Ttfb => (800.0, 1800.0),
        }
    }

    /// Default bucket bounds in the metric unit; both thresholds are among
    /// them, and the config adds every budget and SLO threshold.
    pub fn default_buckets(self) -> &'static [f64] {
        match self {
            Vital::Lcp => &[
                0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0,
            ],
            Vital::Inp => &[
                0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0,
            ],
            Vital::Cls => &[
                0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1.0, 2.0,
            ],
            Vital::Fcp => &[
                0.3, 0.6, 1.0, 1.4, 1.8, 2.2, 2.6, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0,
            ],
            Vital::Ttfb => &[
                0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.5, 1.8, 2.5, 3.0, 5.0, 10.0,
            ],
        }
    }
}

impl fmt::Display for Vital {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A float as Prometheus writes it after ingestion (`2.5`, `4.0`, `+Inf`):
/// whole numbers keep a `.0`, so a `le` label reads the same on Prometheus 2,
/// which stores it as scraped, and on Prometheus 3, which normalizes it.
/// The exposition and the rules both spell bounds with this function.
pub fn format_float(value: f64) -> String {
    if value.is_infinite() {
        return if value > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    if value.is_nan() {
        return "NaN".to_owned();
    }
    let text = value.to_string();
    if value.fract() == 0.0 && !text.contains('e') && value.abs() < 1e15 {
        format!("{text}.0")
    } else {
        text
    }
}

/// A number for people (annotations, descriptions): `2500`, `0.1`, `99.9`,
/// rounded to 10 decimals so float noise (`99.89999999999999`) disappears.
pub fn format_number(value: f64) -> String {
    let rounded = (value * 1e10).round() / 1e10;
    rounded.to_string()
}

/// The bounds for one vital: the defaults plus `extra` (budgets and SLO
/// thresholds, in the event unit), sorted, without duplicates.
pub fn buckets_with(vital: Vital, extra: impl IntoIterator<Item = f64>) -> Vec<f64> {
    let mut bounds: Vec<f64> = vital.default_buckets().to_vec();
    bounds.extend(extra.into_iter().map(|v| vital.to_metric_unit(v)));
    bounds.retain(|b| b.is_finite() && *b > 0.0);
    bounds.sort_by(f64::total_cmp);
    bounds.dedup_by(|a, b| format_float(*a) == format_float(*b));
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_thresholds_are_bucket_bounds() {
        for vital in Vital::ALL {
            let (good, poor) = vital.thresholds();
            let bounds: Vec<String> = vital
                .default_buckets()
                .iter()
                .map(|b| format_float(*b))
                .collect();
            for threshold in [good, poor] {
                let le = format_float(vital.to_metric_unit(threshold));
                assert!(bounds.contains(&le), "{vital}: {le} not in {bounds:?}");
            }
        }
    }

    #[test]
    fn floats_are_spelled_as_prometheus_stores_them() {
        assert_eq!(format_float(2.5), "2.5");
        assert_eq!(format_float(4.0), "4.0");
        assert_eq!(format_float(0.2), "0.2");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
        assert_eq!(format_float(Vital::Inp.to_metric_unit(200.0)), "0.2");
    }

    #[test]
    fn budgets_become_bounds() {
        let bounds = buckets_with(Vital::Lcp, [2700.0, 2500.0]);
        assert!(bounds.contains(&2.7));
        assert_eq!(bounds.iter().filter(|b| **b == 2.5).count(), 1);
        assert!(bounds.windows(2).all(|w| w[0] < w[1]));
    }
}
