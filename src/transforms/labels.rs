//! Transform `labels`: adds `labels.<name>` to events — static labels, the
//! Canarytrace `LABELS` string (`"env=production, versionApp=1"`), and labels
//! that depend on a condition (`[[transforms.X.when]]`). Names are sanitized
//! and every value is settled when the config loads; per event the transform
//! only evaluates the `when` conditions and copies strings.
//!
//! Precedence: static `labels`, then `from_string`, then each matching `when`
//! rule in file order; a later one wins on the same name. Conditions see the
//! event as it arrived, before this transform set anything.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::FunctionTransform;
use crate::conditions::{unknown_key, Condition, ConditionParts, ConditionSet};
use crate::config::CheckConfig;
use crate::event::{context_runs, Batch, Event, FieldValue};
use crate::schema::{self, FieldType};

/// Most `when` rules one transform takes: the matches of an event are kept in a `u64`.
pub const MAX_WHEN_RULES: usize = 64;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelsConfig {
    /// Labels every event gets: `{ env = "production", team = "web" }`. Values
    /// may be strings, numbers or booleans; they are stored as strings.
    #[serde(default)]
    pub labels: LabelSet,
    /// Labels in the Canarytrace `LABELS` form, `"name=value, name=value"`,
    /// typically `"${LABELS:-}"`. Empty adds nothing.
    #[serde(default, deserialize_with = "label_string")]
    pub from_string: LabelSet,
    /// Conditional labels: each rule is a condition (the keys of the condition
    /// syntax) plus `labels = {...}` set on the events it matches.
    #[serde(default)]
    pub when: Vec<WhenRule>,
    /// Replace a label the event already carries from upstream (`true`), or
    /// keep the upstream value (`false`).
    #[serde(default = "crate::config::default_true")]
    pub overwrite: bool,
}

impl CheckConfig for LabelsConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        if self.when.len() > MAX_WHEN_RULES {
            return vec![(
                "when",
                format!(
                    "{} rules; at most {MAX_WHEN_RULES} per labels transform (chain a second one)",
                    self.when.len()
                ),
            )];
        }
        Vec::new()
    }
}

/// Label names and values, names already sanitized, in declaration order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSet(Vec<(String, String)>);

impl LabelSet {
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn push(&mut self, raw_name: &str, value: String) -> Result<(), String> {
        let name = sanitize_name(raw_name)?;
        check_mapped_type(raw_name, &name, &value)?;
        if self.0.iter().any(|(k, _)| *k == name) {
            return Err(format!(
                "label `{}`: `labels.{name}` is already set by another entry (names are sanitized to letters, digits and `_`)",
                raw_name.trim()
            ));
        }
        self.0.push((name, value));
        Ok(())
    }

    /// Parses the Canarytrace `LABELS` form: comma-separated `name=value`,
    /// spaces around names and values ignored, empty entries skipped.
    pub fn parse(text: &str) -> Result<LabelSet, String> {
        let mut set = LabelSet::default();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some((name, value)) = entry.split_once('=') else {
                return Err(format!("`{entry}` is not `name=value`"));
            };
            let value = value.trim();
            if value.is_empty() {
                return Err(format!("label `{}` has an empty value", name.trim()));
            }
            set.push(name, value.to_owned())?;
        }
        Ok(set)
    }
}

/// A label the pipeline sets itself (`synthetic`, `csp_noise`) is mapped
/// `boolean` in the index template: any other value there than `true` or
/// `false` made Elasticsearch refuse the document.
fn check_mapped_type(raw_name: &str, name: &str, value: &str) -> Result<(), String> {
    let path = format!("{}.{name}", schema::LABELS);
    let Some(field) = schema::all_fields().find(|f| f.path == path) else {
        return Ok(());
    };
    match field.ty {
        FieldType::Boolean if value == "true" || value == "false" => Ok(()),
        FieldType::Boolean => Err(format!(
            "label `{}`: `{path}` is mapped boolean in Elasticsearch (the pipeline sets it), so its value must be true or false, not `{value}`",
            raw_name.trim()
        )),
        ty if ty.takes_strings() => Ok(()),
        ty => Err(format!(
            "label `{}`: `{path}` is mapped {} in Elasticsearch, which a label's text cannot fill",
            raw_name.trim(),
            ty.es_type()
        )),
    }
}

/// Makes a label name safe as one ECS field name under `labels`: every
/// character other than an ASCII letter, digit or `_` becomes `_` (a `.` would
/// create an object, a space or `-` breaks Kibana queries). Case is kept, so
/// Canarytrace's `versionApp` stays `labels.versionApp`.
pub fn sanitize_name(raw: &str) -> Result<String, String> {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err("a label name is empty".to_owned());
    }
    Ok(trimmed
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect())
}

impl<'de> Deserialize<'de> for LabelSet {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct LabelValue(String);
        impl<'de> Deserialize<'de> for LabelValue {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                match crate::conditions::Literal::deserialize(deserializer)? {
                    crate::conditions::Literal::String(s) => Ok(LabelValue(s)),
                    crate::conditions::Literal::Integer(i) => Ok(LabelValue(i.to_string())),
                    crate::conditions::Literal::Float(f) => Ok(LabelValue(f.to_string())),
                    crate::conditions::Literal::Boolean(b) => Ok(LabelValue(b.to_string())),
                }
            }
        }
        struct SetVisitor;
        impl<'de> Visitor<'de> for SetVisitor {
            type Value = LabelSet;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a table of labels, like { env = "production" }"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LabelSet, A::Error> {
                let mut set = LabelSet::default();
                while let Some(name) = map.next_key::<String>()? {
                    let LabelValue(value) = map.next_value()?;
                    set.push(&name, value).map_err(de::Error::custom)?;
                }
                Ok(set)
            }
        }
        deserializer.deserialize_map(SetVisitor)
    }
}

fn label_string<'de, D: Deserializer<'de>>(deserializer: D) -> Result<LabelSet, D::Error> {
    let text = String::deserialize(deserializer)?;
    LabelSet::parse(&text)
        .map_err(|e| de::Error::custom(format!("{e} (expected \"name=value, name=value\")")))
}

/// One conditional rule: a condition and the labels it sets.
#[derive(Debug, Clone)]
pub struct WhenRule {
    pub condition: Condition,
    pub labels: LabelSet,
}

impl<'de> Deserialize<'de> for WhenRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RuleVisitor;
        impl<'de> Visitor<'de> for RuleVisitor {
            type Value = WhenRule;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str(r#"a rule like { field = "url.domain", equals = "shop.example.com", labels = { site = "shop" } }"#)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WhenRule, A::Error> {
                let mut parts = ConditionParts::default();
                let mut labels = None;
                while let Some(key) = map.next_key::<String>()? {
                    if key == "labels" {
                        labels = Some(map.next_value::<LabelSet>()?);
                    } else if !parts.take(&key, &mut map)? {
                        return Err(unknown_key(&key, &["labels"]));
                    }
                }
                if parts.is_empty() {
                    return Err(de::Error::custom(
                        "a `when` rule needs a condition next to its labels, like `field = \"url.domain\", equals = \"shop.example.com\"`",
                    ));
                }
                let condition = parts.finish().map_err(de::Error::custom)?;
                match labels {
                    Some(labels) if !labels.0.is_empty() => Ok(WhenRule { condition, labels }),
                    _ => Err(de::Error::custom(
                        "a `when` rule needs `labels = { name = \"value\" }`",
                    )),
                }
            }
        }
        deserializer.deserialize_map(RuleVisitor)
    }
}

impl LabelsConfig {
    pub fn build(&self) -> Labels {
        // Static and string labels merge into one list, later winning.
        let mut always: Vec<Label> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for (name, value) in self.labels.iter().chain(self.from_string.iter()) {
            match index.get(name) {
                Some(&i) => always[i] = Label::new(name, value),
                None => {
                    index.insert(name.to_owned(), always.len());
                    always.push(Label::new(name, value));
                }
            }
        }
        let rules = &self.when[..self.when.len().min(MAX_WHEN_RULES)];
        let when_labels = rules
            .iter()
            .map(|rule| rule.labels.iter().map(|(k, v)| Label::new(k, v)).collect())
            .collect();
        // Each name is there once, so the order they are set in does not
        // matter; sorted, they are the list an unlabelled event gets.
        always.sort_by(|a, b| a.name.cmp(&b.name));
        Labels {
            always,
            when: ConditionSet::new(rules.iter().map(|rule| rule.condition.clone())),
            when_labels,
            overwrite: self.overwrite,
            matches: Vec::new(),
        }
    }
}

pub struct Labels {
    /// Set on every event (static labels and `from_string`, merged), sorted
    /// by name.
    always: Vec<Label>,
    /// Conditions of the `when` rules, in file order...
    when: ConditionSet,
    /// ...and the labels each sets.
    when_labels: Vec<Vec<Label>>,
    overwrite: bool,
    /// The `when` rules each event of the run at hand matched (bit `i` for
    /// rule `i`). Kept between batches for its allocation.
    matches: Vec<u64>,
}

/// One label ready to write: built once so the hot path only clones.
struct Label {
    /// Shared: setting a label costs two refcounts, not two copies.
    name: Arc<str>,
    value: Arc<Value>,
}

impl Label {
    fn new(name: &str, value: &str) -> Label {
        Label {
            name: Arc::from(name),
            value: Arc::new(Value::String(value.to_owned())),
        }
    }

    fn set_on(&self, event: &mut Event) {
        event.set_label(self.name.clone(), FieldValue::Shared(self.value.clone()));
    }
}

impl Labels {
    /// The `when` rules the event matches, as it arrived.
    fn matched(&self, event: &Event) -> u64 {
        let mut matched: u64 = 0;
        self.when.for_each_match(event, |i| matched |= 1 << i);
        matched
    }

    /// A beacon's events (`run` shares one context) that match no `when`
    /// rule and carry no labels yet all get the static labels, whichever
    /// mode: they go on the shared context once, not into each event (a
    /// list per event). `false` when the run needs [`Labels::apply`].
    fn label_run(&self, run: &mut [Event], matches: &[u64]) -> bool {
        if matches.iter().any(|&m| m != 0) {
            return false;
        }
        if self.always.is_empty() {
            return true;
        }
        if !run.iter().all(Event::is_unlabelled) {
            return false;
        }
        Event::edit_shared_context(run, |context| {
            for label in &self.always {
                context.set_label(label.name.clone(), FieldValue::Shared(label.value.clone()));
            }
        });
        true
    }

    /// One event, given the rules it matched.
    fn apply(&self, event: &mut Event, matched: u64) {
        if matched == 0 {
            // The common case: the static labels on an event that has none
            // yet, which both modes give the same result.
            let always = self
                .always
                .iter()
                .map(|l| (l.name.clone(), FieldValue::Shared(l.value.clone())));
            if self.always.is_empty() || event.label_unlabelled(always) {
                return;
            }
        }
        let rules = self
            .when_labels
            .iter()
            .enumerate()
            .filter(|(i, _)| matched & (1 << i) != 0)
            .map(|(_, set)| set);
        if self.overwrite {
            // Forward, replacing: the last writer wins.
            for label in std::iter::once(&self.always).chain(rules).flatten() {
                label.set_on(event);
            }
        } else {
            // Backward, filling gaps only: upstream values stay, and among
            // this transform's sources the last one still wins.
            let rules: Vec<&Vec<Label>> = rules.collect();
            for label in rules
                .into_iter()
                .rev()
                .chain(std::iter::once(&self.always))
                .flatten()
            {
                if event.label(&label.name).is_none() {
                    label.set_on(event);
                }
            }
        }
    }
}

impl FunctionTransform for Labels {
    fn transform_batch(&mut self, batch: &mut Batch) {
        let mut matches = std::mem::take(&mut self.matches);
        for run in context_runs(batch) {
            matches.clear();
            if self.when_labels.is_empty() {
                // No `when` rules: nothing to evaluate an event against.
                matches.resize(run.len(), 0);
            } else {
                matches.extend(run.iter().map(|event| self.matched(event)));
            }
            if self.label_run(run, &matches) {
                continue;
            }
            for (event, &matched) in run.iter_mut().zip(&matches) {
                self.apply(event, matched);
            }
        }
        self.matches = matches;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load_str;
    use serde_json::json;

    fn config(text: &str) -> LabelsConfig {
        match toml::from_str(text) {
            Ok(c) => c,
            Err(e) => panic!("{text}: {e}"),
        }
    }

    fn error(text: &str) -> String {
        match toml::from_str::<LabelsConfig>(text) {
            Ok(c) => panic!("{text} was accepted as {c:?}"),
            Err(e) => e.message().to_owned(),
        }
    }

    fn labelled(config: &LabelsConfig, event: Value) -> Value {
        let mut batch = vec![Event::from(event)];
        config.build().transform_batch(&mut batch);
        batch.remove(0).into_value()
    }

    #[test]
    fn static_labels_are_strings_under_sanitized_names() {
        let config = config(
            r#"labels = { env = "production", "team name" = "web", "app.version" = 3, beta = true, ratio = 0.5 }"#,
        );
        let out = labelled(&config, json!({"rum": {"type": "action"}}));
        assert_eq!(
            out["labels"],
            json!({"env": "production", "team_name": "web", "app_version": "3", "beta": "true", "ratio": "0.5"})
        );
    }

    #[test]
    fn a_label_the_template_maps_boolean_takes_only_true_or_false() {
        // `labels.synthetic` and `labels.csp_noise` are mapped boolean (the
        // pipeline sets them): `synthetic = "no"` passed validation, and
        // Elasticsearch refused every document it labelled.
        for bad in [
            r#"labels = { synthetic = "no" }"#,
            r#"from_string = "csp_noise=maybe""#,
            "[[when]]\nfield = \"rum.type\"\nequals = \"error\"\nlabels = { synthetic = 1 }",
        ] {
            let message = error(bad);
            assert!(
                message.contains("`labels.") && message.contains("true or false"),
                "{bad}: {message}"
            );
        }
        let config = config(r#"labels = { synthetic = true, csp_noise = "false" }"#);
        let out = labelled(&config, json!({"rum": {"type": "action"}}));
        assert_eq!(
            out["labels"],
            json!({"synthetic": "true", "csp_noise": "false"})
        );
    }

    #[test]
    fn canarytrace_label_string() {
        let set =
            LabelSet::parse(" env=production, versionApp=1 ,, team = web team,").expect("valid");
        let pairs: Vec<(&str, &str)> = set.iter().collect();
        assert_eq!(
            pairs,
            [
                ("env", "production"),
                ("versionApp", "1"),
                ("team", "web team")
            ]
        );
        assert_eq!(
            LabelSet::parse("").expect("empty is fine"),
            LabelSet::default()
        );
        assert!(LabelSet::parse("env")
            .unwrap_err()
            .contains("`env` is not `name=value`"));
        assert!(LabelSet::parse("env=").unwrap_err().contains("empty value"));
        assert!(LabelSet::parse("=x").unwrap_err().contains("name is empty"));
        assert!(LabelSet::parse("env=a, env=b")
            .unwrap_err()
            .contains("`labels.env` is already set"));
        assert!(LabelSet::parse("a-b=1, a_b=2")
            .unwrap_err()
            .contains("label `a_b`: `labels.a_b` is already set"));
        // `=` inside the value is kept.
        assert_eq!(
            LabelSet::parse("q=a=b").expect("valid").iter().next(),
            Some(("q", "a=b"))
        );
    }

    #[test]
    fn string_labels_come_from_the_environment_and_win_over_static_ones() {
        let text = r#"
[sources.in]
type = "rum_beacon"
address = "127.0.0.1:0"
[transforms.tag]
type = "labels"
inputs = ["in"]
labels = { env = "staging", team = "web" }
from_string = "${LABELS:-}"
[sinks.out]
type = "blackhole"
inputs = ["tag"]
"#;
        let env =
            |name: &str| (name == "LABELS").then(|| "env=production, versionApp=1.4.2".to_owned());
        let loaded = load_str("t.toml", text, &env).expect("valid");
        let crate::transforms::TransformConfig::Labels(config) =
            &loaded.config.transforms[0].config
        else {
            panic!("not a labels transform")
        };
        let out = labelled(config, json!({}));
        assert_eq!(
            out["labels"],
            json!({"env": "production", "team": "web", "versionApp": "1.4.2"})
        );
        // Unset variable: the default (empty) adds nothing.
        let loaded = load_str("t.toml", text, &|_| None).expect("valid");
        let crate::transforms::TransformConfig::Labels(config) =
            &loaded.config.transforms[0].config
        else {
            panic!("not a labels transform")
        };
        assert_eq!(
            labelled(config, json!({}))["labels"],
            json!({"env": "staging", "team": "web"})
        );
        // A malformed value is a config error naming the key.
        let errors = load_str("t.toml", text, &|_| Some("env".to_owned())).unwrap_err();
        let shown = errors[0].to_string();
        assert!(
            shown.contains("[transforms.tag] key `from_string`"),
            "{shown}"
        );
        assert!(shown.contains("`env` is not `name=value`"), "{shown}");
    }

    const RULES: &str = r#"
labels = { site = "unknown" }
[[when]]
field = "url.domain"
equals = "shop.example.com"
labels = { site = "shop" }
[[when]]
field = "url.path"
prefix = "/checkout"
labels = { funnel = "checkout", site = "shop-checkout" }
[[when]]
field = "labels.site"
exists = true
labels = { had_site = "yes" }
"#;

    #[test]
    fn when_rules_apply_in_order_on_the_incoming_event() {
        let config = config(RULES);
        let out = labelled(
            &config,
            json!({"url": {"domain": "shop.example.com", "path": "/cart"}}),
        );
        assert_eq!(out["labels"], json!({"site": "shop"}));
        let out = labelled(
            &config,
            json!({"url": {"domain": "shop.example.com", "path": "/checkout/pay"}}),
        );
        assert_eq!(
            out["labels"],
            json!({"site": "shop-checkout", "funnel": "checkout"})
        );
        let out = labelled(&config, json!({"url": {"domain": "blog.example.com"}}));
        assert_eq!(
            out["labels"],
            json!({"site": "unknown"}),
            "the third rule sees no label set by this transform"
        );
        let out = labelled(
            &config,
            json!({"labels": {"site": "upstream", "synthetic": true}}),
        );
        assert_eq!(
            out["labels"],
            json!({"site": "unknown", "had_site": "yes", "synthetic": true})
        );
    }

    #[test]
    fn overwrite_false_keeps_upstream_values_only() {
        let mut config = config(RULES);
        config.overwrite = false;
        let out = labelled(
            &config,
            json!({"url": {"domain": "shop.example.com", "path": "/checkout"}, "labels": {"funnel": "upstream"}}),
        );
        assert_eq!(
            out["labels"],
            json!({"funnel": "upstream", "site": "shop-checkout"})
        );
    }

    #[test]
    fn labels_in_the_shared_beacon_context_are_respected() {
        let context = Event::from(json!({"labels": {"site": "ctx", "keep": "1"}}))
            .context()
            .clone();
        let mut overwriting = config(r#"labels = { site = "x", new = "n" }"#);
        let mut batch = vec![
            Event::with_context(context.clone()),
            Event::with_context(context.clone()),
        ];
        let mut first = vec![batch.remove(0)];
        overwriting.build().transform_batch(&mut first);
        assert_eq!(
            first[0].to_value()["labels"],
            json!({"site": "x", "keep": "1", "new": "n"})
        );
        // The other event of the beacon is untouched.
        assert_eq!(
            batch[0].to_value()["labels"],
            json!({"site": "ctx", "keep": "1"})
        );
        overwriting.overwrite = false;
        overwriting.build().transform_batch(&mut batch);
        assert_eq!(
            batch[0].to_value()["labels"],
            json!({"site": "ctx", "keep": "1", "new": "n"})
        );
    }

    #[test]
    fn an_unlabelled_event_gets_the_document_label_by_label_gives() {
        let labels =
            config(r#"labels = { zeta = "1", alpha = "2", "team name" = "web", mid = 3 }"#).build();
        let event = || Event::from(json!({"rum": {"type": "action"}}));
        let mut at_once = event();
        labels.apply(&mut at_once, 0);
        let mut one_by_one = event();
        for label in &labels.always {
            label.set_on(&mut one_by_one);
        }
        let (mut a, mut b) = (Vec::new(), Vec::new());
        at_once.write_json(&mut a);
        one_by_one.write_json(&mut b);
        assert_eq!(String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
    }

    /// The events of one beacon: one shared context.
    fn beacon(domains: &[&str]) -> Batch {
        let context = crate::event::Counted::new(crate::event::Context::new());
        domains
            .iter()
            .map(|domain| {
                let mut e = Event::with_context(context.clone());
                e.insert("url.domain", *domain);
                e
            })
            .collect()
    }

    fn documents(batch: &Batch) -> Vec<Value> {
        batch.iter().map(Event::to_value).collect()
    }

    #[test]
    fn a_beacon_matching_no_rule_gets_the_static_labels_once_on_its_context() {
        let config = config(
            "labels = { env = \"prod\", team = \"web\" }\n\
             [[when]]\nfield = \"url.domain\"\nequals = \"blog.example\"\nlabels = { site = \"blog\" }",
        );
        let mut labels = config.build();
        // Event by event, as each one alone would be labelled.
        let expected = |batch: &Batch| -> Vec<Value> {
            batch
                .iter()
                .map(|e| {
                    let mut alone = Event::from(e.to_value());
                    labels_alone(&config, &mut alone);
                    alone.to_value()
                })
                .collect()
        };

        let mut batch = beacon(&["shop.example", "shop.example", "cdn.example"]);
        let want = expected(&batch);
        labels.transform_batch(&mut batch);
        assert_eq!(documents(&batch), want);
        assert!(batch
            .iter()
            .all(|e| crate::event::Counted::ptr_eq(e.context(), batch[0].context())));
        assert_eq!(
            batch[0].context().label("team"),
            Some(&json!("web")),
            "on the shared context"
        );

        // One event matches a rule: each event is labelled on its own.
        let mut batch = beacon(&["shop.example", "blog.example"]);
        let want = expected(&batch);
        labels.transform_batch(&mut batch);
        assert_eq!(documents(&batch), want);
        assert_eq!(batch[1].get_str("labels.site"), Some("blog"));
        assert_eq!(batch[0].get_str("labels.site"), None);
        assert_eq!(batch[0].context().label("team"), None);

        // Labels from upstream: filled in per event, upstream values kept.
        let mut batch = beacon(&["shop.example", "shop.example"]);
        batch[0].set_label(Arc::from("team"), FieldValue::from("ops"));
        let mut keeping = config.clone();
        keeping.overwrite = false;
        let want: Vec<Value> = batch
            .iter()
            .map(|e| {
                let mut alone = Event::from(e.to_value());
                labels_alone(&keeping, &mut alone);
                alone.to_value()
            })
            .collect();
        keeping.build().transform_batch(&mut batch);
        assert_eq!(documents(&batch), want);
        assert_eq!(batch[0].get_str("labels.team"), Some("ops"));
        assert_eq!(batch[1].get_str("labels.team"), Some("web"));
        // ...or replaced, when the transform overwrites (the default).
        let mut batch = beacon(&["shop.example", "shop.example"]);
        batch[0].set_label(Arc::from("team"), FieldValue::from("ops"));
        let want = expected(&batch);
        labels.transform_batch(&mut batch);
        assert_eq!(documents(&batch), want);
        assert_eq!(batch[0].get_str("labels.team"), Some("web"));
    }

    /// `config`'s labels applied to one event through the per-event path.
    fn labels_alone(config: &LabelsConfig, event: &mut Event) {
        let labels = config.build();
        let matched = labels.matched(event);
        labels.apply(event, matched);
    }

    #[test]
    fn nothing_to_set_leaves_the_event_alone() {
        let config =
            config("[[when]]\nfield = \"url.domain\"\nequals = \"x\"\nlabels = { a = \"b\" }");
        assert_eq!(
            labelled(&config, json!({"url": {"domain": "y"}})),
            json!({"url": {"domain": "y"}})
        );
        // A non-object `labels` is replaced rather than panicking.
        assert_eq!(
            labelled(&config, json!({"url": {"domain": "x"}, "labels": "junk"}))["labels"],
            json!({"a": "b"})
        );
    }

    #[test]
    fn bad_rules_are_config_errors() {
        assert!(error("[[when]]\nlabels = { a = \"b\" }").contains("needs a condition"));
        assert!(error("[[when]]\nfield = \"url.domain\"\nequals = \"x\"").contains("needs `labels"));
        assert!(
            error("[[when]]\nfield = \"url.domain\"\nequals = \"x\"\nlabels = {}")
                .contains("needs `labels")
        );
        assert!(
            error("[[when]]\nfield = \"url.domain\"\nmatch = \"x\"\nlabels = { a = \"b\" }")
                .contains("unknown field `match` (did you mean `matches`?)")
        );
        assert!(
            error("[[when]]\nfield = \"url.domain\"\nmatches = \"[\"\nlabels = { a = \"b\" }")
                .contains("invalid regex")
        );
        assert!(error("labels = { a = [1] }").contains("a string, number or boolean"));
        assert!(error("labels = { \"a b\" = \"1\", a_b = \"2\" }").contains("already set"));
        assert!(error("label = { a = \"1\" }").contains("unknown field `label`"));
        let many = (0..=MAX_WHEN_RULES)
            .map(|i| format!("[[when]]\nfield = \"url.domain\"\nequals = \"{i}\"\nlabels = {{ n = \"{i}\" }}\n"))
            .collect::<String>();
        assert!(config(&many).check()[0].1.contains("at most 64"));
    }
}
