//! Transform `filter`: keeps the events matching a condition and drops the
//! rest, counted as `component_discarded_events_total{intentional="true"}`.
//! Per-site uses: keep the admin app out of storage, drop bots.

use serde::Deserialize;

use super::{FunctionTransform, TransformContext};
use crate::conditions::Condition;
use crate::config::CheckConfig;
use crate::event::Batch;
use crate::telemetry::Counter;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Events matching it are kept; the others are dropped.
    pub condition: Condition,
}

impl CheckConfig for FilterConfig {}

impl FilterConfig {
    pub fn build(&self, cx: &TransformContext) -> Filter {
        Filter {
            condition: self.condition.clone(),
            dropped: cx.metrics.discarded_intentional.clone(),
        }
    }
}

pub struct Filter {
    condition: Condition,
    /// Dropping is the point of a filter, so the count is intentional.
    dropped: Counter,
}

impl FunctionTransform for Filter {
    fn transform_batch(&mut self, batch: &mut Batch) {
        let before = batch.len();
        batch.retain(|event| self.condition.matches(event));
        self.dropped.add((before - batch.len()) as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;
    use crate::telemetry::{ComponentMetrics, Registry};
    use serde_json::json;

    #[test]
    fn keeps_matches_and_counts_the_rest() {
        let config: FilterConfig =
            toml::from_str(r#"condition = { not = { field = "url.path", prefix = "/admin" } }"#)
                .expect("valid");
        let registry = Registry::new();
        let cx = TransformContext {
            id: "no_admin".into(),
            metrics: ComponentMetrics::new(&registry, "no_admin", "transform", "filter"),
        };
        let mut filter = config.build(&cx);
        let paths = ["/", "/admin", "/admin/users", "/shop", "/administrator"];
        let mut batch: Batch = paths
            .iter()
            .map(|p| Event::from(json!({"url": {"path": p}})))
            .collect();
        batch.push(Event::new());
        filter.transform_batch(&mut batch);
        let kept: Vec<Option<&str>> = batch.iter().map(|e| e.get_str("url.path")).collect();
        assert_eq!(kept, [Some("/"), Some("/shop"), None]);
        assert_eq!(cx.metrics.discarded_intentional.get(), 3);
        assert!(registry
            .render()
            .contains("component_discarded_events_total{component_id=\"no_admin\",component_kind=\"transform\",component_type=\"filter\",intentional=\"true\"} 3"));
    }

    #[test]
    fn condition_is_required() {
        let e = toml::from_str::<FilterConfig>("").unwrap_err();
        assert!(e.message().contains("missing field `condition`"), "{e}");
    }
}
