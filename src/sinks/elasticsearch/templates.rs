//! Index templates `manage_template = true` installs at startup, derived from
//! `schema` (the one list of fields and their types): a component template
//! with the mappings — `client.geo.location` a geo_point, ids keyword, vitals
//! and timings numeric — and an index template that applies it to every name
//! the sink writes (as a data stream in `data_stream` mode).
//!
//! Dynamic policy: `labels.*` and other unforeseen strings map to `keyword`
//! (`ignore_above` 1024) so dashboards can aggregate them, never to `date`
//! (no date detection); known fields never depend on dynamic mapping.
//!
//! Browser-supplied objects (`rum.extra`, report bodies...) are one field
//! each whatever keys they hold, in the engine's own way ([`Flavour`]):
//! Elasticsearch's `flattened`, OpenSearch's `flat_object` (2.7+), or, on
//! older OpenSearch, an object kept in `_source` and not indexed. Everything
//! else in the templates is valid on both engines; OpenSearch has no ILM.

use serde_json::{json, Map, Value};

use super::index::IndexRouter;
use super::{ElasticsearchConfig, Mode};
use crate::schema::{self, FieldType};
use crate::sources::MAX_JSON_DEPTH;

/// `ignore_above` for keywords: longer values are stored but not indexed.
const KEYWORD_IGNORE_ABOVE: u32 = 1024;
/// `ignore_above` for the leaves of `flattened` fields (UTF-16 units).
/// Each leaf is indexed as one `key\0value` term, and Lucene refuses a term
/// over 32766 bytes with the whole document; without a limit a source's
/// longest string (32 KiB for CSP reports, 16 KiB key plus 16 KiB value in a
/// beacon) did that. 4096 units take at most 12288 bytes, leaving room for
/// a key as long as the default `max_string_bytes` (16 KiB); longer values
/// are stored, not indexed.
const FLATTENED_IGNORE_ABOVE: u32 = 4096;

/// Which engine's templates: they differ in how a browser-supplied object
/// is mapped, and in whether an ILM policy can go with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavour {
    /// `flattened` (with `depth_limit` and `ignore_above`), ILM.
    Elasticsearch,
    /// OpenSearch 2.7+: `flat_object`, which takes no parameters. No ILM.
    OpenSearch,
    /// OpenSearch before 2.7 (no `flat_object`): `object` with `enabled:
    /// false`, kept in `_source` and not indexed (not searchable). No ILM.
    OpenSearchObjects,
}

impl Flavour {
    /// The type a browser-supplied object is mapped as.
    pub fn object_type(self) -> &'static str {
        match self {
            Flavour::Elasticsearch => "flattened",
            Flavour::OpenSearch => "flat_object",
            Flavour::OpenSearchObjects => "object",
        }
    }

    /// What to install instead on an engine that has no handler for
    /// [`Flavour::object_type`] (refused with `No handler for type [...]`).
    pub fn without_object_type(self) -> Option<Flavour> {
        match self {
            Flavour::Elasticsearch => Some(Flavour::OpenSearch),
            Flavour::OpenSearch => Some(Flavour::OpenSearchObjects),
            Flavour::OpenSearchObjects => None,
        }
    }

    /// Whether the engine has ILM (OpenSearch has ISM instead).
    pub fn has_ilm(self) -> bool {
        self == Flavour::Elasticsearch
    }

    /// OpenSearch's flavour for a version (`2.13.0`): `flat_object` came in 2.7.
    pub fn for_opensearch(version: &str) -> Flavour {
        let mut numbers = version
            .split('.')
            .map(|n| n.trim().parse::<u32>().unwrap_or(0));
        let major = numbers.next().unwrap_or(0);
        let minor = numbers.next().unwrap_or(0);
        if (major, minor) >= (2, 7) {
            Flavour::OpenSearch
        } else {
            Flavour::OpenSearchObjects
        }
    }

    /// How the log names it.
    pub fn describe(self) -> &'static str {
        match self {
            Flavour::Elasticsearch => "Elasticsearch's (browser-supplied objects as `flattened`)",
            Flavour::OpenSearch => "OpenSearch's (browser-supplied objects as `flat_object`)",
            Flavour::OpenSearchObjects => {
                "OpenSearch's before 2.7 (browser-supplied objects kept in _source, not indexed)"
            }
        }
    }
}

fn mapping(field: &schema::Field, flavour: Flavour) -> Value {
    match field.ty {
        FieldType::Keyword => json!({"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}),
        FieldType::Text => json!({
            "type": "text",
            "fields": {"keyword": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}}
        }),
        // The one date written as a number (epoch ms, as the browser sent
        // it). The default format tries a number as a year first: 2026
        // became that year, and 500000000 a year past what a long holds, a
        // document Elasticsearch refuses.
        FieldType::Date if field.path == schema::RUM_CLIENT_TS => {
            json!({"type": "date", "format": "epoch_millis"})
        }
        FieldType::Date => json!({"type": "date"}),
        // Elasticsearch refuses a document nested deeper than a flattened
        // field's `depth_limit` (20 by default); a source may take bodies
        // `MAX_JSON_DEPTH` deep, and such a field is inside the body.
        FieldType::Flattened => match flavour {
            Flavour::Elasticsearch => json!({
                "type": "flattened",
                "depth_limit": MAX_JSON_DEPTH,
                "ignore_above": FLATTENED_IGNORE_ABOVE
            }),
            // OpenSearch refuses any parameter of a `flat_object`
            // ("unsupported parameters"): it has no depth limit of its own,
            // and no `ignore_above` either (a leaf whose path and value
            // pass Lucene's 32,766 bytes makes the document refused).
            Flavour::OpenSearch => json!({"type": "flat_object"}),
            // Neither parsed nor indexed: no field is added to the mapping
            // whatever keys it holds, and any value fits.
            Flavour::OpenSearchObjects => json!({"type": "object", "enabled": false}),
        },
        other => json!({"type": other.es_type()}),
    }
}

/// `{"a": {"properties": {"b": {...}}}}` for `a.b`.
fn insert(properties: &mut Map<String, Value>, path: &str, leaf: Value) {
    match path.split_once('.') {
        None => {
            properties.entry(path.to_owned()).or_insert(leaf);
        }
        Some((head, rest)) => {
            let node = properties
                .entry(head.to_owned())
                .or_insert_with(|| json!({"properties": {}}));
            if let Some(children) = node.get_mut("properties").and_then(Value::as_object_mut) {
                insert(children, rest, leaf);
            }
        }
    }
}

/// The mappings of every field the pipeline writes, for Elasticsearch.
pub fn component_template() -> Value {
    component_template_for(Flavour::Elasticsearch)
}

/// The mappings of every field the pipeline writes, for that engine.
pub fn component_template_for(flavour: Flavour) -> Value {
    let mut properties = Map::new();
    for field in schema::all_fields() {
        insert(&mut properties, field.path, mapping(&field, flavour));
    }
    json!({
        "template": {
            "mappings": {
                "dynamic": true,
                // Every date the pipeline writes is mapped: detection would
                // only make a label whose first value looks like a date a
                // `date`, and refuse every later one that does not.
                "date_detection": false,
                "dynamic_templates": [
                    {"labels": {"path_match": format!("{}.*", schema::LABELS), "match_mapping_type": "string",
                        "mapping": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}}},
                    {"strings_as_keyword": {"match_mapping_type": "string",
                        "mapping": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}}}
                ],
                "properties": properties
            }
        },
        "_meta": {"managed_by": "rum-pipeline", "description": "RUM document mappings (ECS names)"}
    })
}

/// What `manage_template` installs for one sink, whatever the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateSet {
    /// `template_name`, by default `rum-pipeline-<sink id>`.
    pub name: String,
    pub patterns: Vec<String>,
    pub data_stream: bool,
    /// `ilm_retention_days`: 0 = no policy.
    pub retention_days: u32,
}

impl TemplateSet {
    pub fn for_sink(config: &ElasticsearchConfig, id: &str, router: &IndexRouter) -> TemplateSet {
        TemplateSet {
            name: config
                .template_name
                .clone()
                .unwrap_or_else(|| format!("rum-pipeline-{}", id.to_ascii_lowercase())),
            patterns: router.patterns(),
            data_stream: config.mode == Mode::DataStream,
            retention_days: config.ilm_retention_days,
        }
    }

    /// The requests for that engine (`rum-pipeline templates` writes
    /// them out): `(path, body)`, in order. No ILM policy on an engine
    /// without ILM, whatever `retention_days` says.
    pub fn requests(&self, flavour: Flavour) -> Vec<(String, Value)> {
        let retention_days = if flavour.has_ilm() {
            self.retention_days
        } else {
            0
        };
        install_requests_with_lifecycle(
            &self.name,
            &self.patterns,
            self.data_stream,
            retention_days,
            flavour,
        )
    }

    /// Whether `retention_days` asks for what this engine does not have.
    pub fn retention_dropped(&self, flavour: Flavour) -> bool {
        self.retention_days > 0 && !flavour.has_ilm()
    }
}

/// What `manage_template` installs for the sink `id` on Elasticsearch.
pub fn for_sink(
    config: &ElasticsearchConfig,
    id: &str,
    router: &IndexRouter,
) -> Vec<(String, Value)> {
    TemplateSet::for_sink(config, id, router).requests(Flavour::Elasticsearch)
}

/// [`install_requests`], with the ILM policy before the index template
/// that names it when `retention_days` > 0. The component template goes
/// first: an engine refuses it when it lacks the flavour's object type,
/// which tells an Elasticsearch from an OpenSearch that `GET /` did not
/// name, before any ILM request is made.
pub fn install_requests_with_lifecycle(
    name: &str,
    patterns: &[String],
    data_stream: bool,
    retention_days: u32,
    flavour: Flavour,
) -> Vec<(String, Value)> {
    let mut requests = install_requests(name, patterns, data_stream, flavour);
    if retention_days == 0 {
        return requests;
    }
    for (path, body) in requests.iter_mut() {
        if path.starts_with("_index_template/") {
            body["template"] = json!({"settings": {"index.lifecycle.name": name}});
        }
    }
    requests.insert(
        1,
        (
            format!("_ilm/policy/{name}"),
            ilm_policy(retention_days, data_stream),
        ),
    );
    requests
}

/// Daily indices have no rollover: they are deleted `retention_days` after
/// creation. Data-stream backing indices roll over daily (or at 50 GB per
/// primary shard) and are deleted `retention_days` after rollover.
pub fn ilm_policy(retention_days: u32, data_stream: bool) -> Value {
    let mut hot = json!({"set_priority": {"priority": 100}});
    if data_stream {
        hot["rollover"] = json!({"max_age": "1d", "max_primary_shard_size": "50gb"});
    }
    json!({
        "policy": {
            "_meta": {"managed_by": "rum-pipeline"},
            "phases": {
                "hot": {"min_age": "0ms", "actions": hot},
                "delete": {"min_age": format!("{retention_days}d"), "actions": {"delete": {}}}
            }
        }
    })
}

/// The requests that install the templates: `(path, body)`, in order.
pub fn install_requests(
    name: &str,
    patterns: &[String],
    data_stream: bool,
    flavour: Flavour,
) -> Vec<(String, Value)> {
    let component = format!("{name}-mappings");
    let mut index_template = json!({
        "index_patterns": patterns,
        "composed_of": [component],
        "priority": 200,
        "_meta": {"managed_by": "rum-pipeline"}
    });
    if data_stream {
        index_template["data_stream"] = json!({});
    }
    vec![
        (
            format!("_component_template/{component}"),
            component_template_for(flavour),
        ),
        (format!("_index_template/{name}"), index_template),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(mappings: &'a Value, path: &str) -> Option<&'a Value> {
        let mut node = mappings.pointer("/template/mappings")?;
        for part in path.split('.') {
            node = node.get("properties")?.get(part)?;
        }
        Some(node)
    }

    /// Elasticsearch indexes each leaf of a `flattened` field as one term,
    /// key NUL value, and refuses the whole document when that term is
    /// over Lucene's 32,766 bytes, which no `ignore_above` stopped: a string
    /// a source lets in (`max_string_bytes`, 16 KiB and more if raised)
    /// under a key of as much, or one string over 32 KiB, made every
    /// document holding it in `rum.extra`, attribution or custom data a
    /// mapping error, dead-lettered. Values past `ignore_above` (counted in
    /// UTF-16 units, at most 3 UTF-8 bytes each) are kept in `_source`
    /// and not indexed, so a term of one key as long as the default
    /// `max_string_bytes` allows fits.
    #[test]
    fn a_flattened_leaf_never_makes_a_term_lucene_refuses() {
        const LUCENE_MAX_TERM_BYTES: u64 = 32_766;
        const KEY_BYTES: u64 = 16 * 1024;
        let template = component_template();
        for field in schema::all_fields() {
            if field.ty != FieldType::Flattened {
                continue;
            }
            let mapping = lookup(&template, field.path).unwrap();
            let Some(limit) = mapping["ignore_above"].as_u64() else {
                panic!("{}: no ignore_above in {mapping}", field.path);
            };
            assert!(
                KEY_BYTES + 1 + 3 * limit <= LUCENE_MAX_TERM_BYTES,
                "{}: ignore_above {limit}",
                field.path
            );
        }
    }

    #[test]
    fn a_date_written_as_a_number_is_read_as_epoch_millis_never_as_a_year() {
        // A `date` of the default format (`strict_date_optional_time||epoch_millis`)
        // tries a number as a year first: `rum.client_ts` is the browser's
        // `ts` as sent, so a client sending 2026 got the year 2026, and one
        // sending 500000000 (a page's `performance.now()` after six days) a
        // year past what a long holds, and Elasticsearch refused the document
        // (dead-lettered after a 204).
        let mut event = crate::event::Event::from(serde_json::json!({"rum": {"type": "action"}}));
        event.set_timestamp_ms(1_763_700_000_000);
        event.insert(schema::RUM_CLIENT_TS, 500_000_000_i64);
        event.insert(schema::EVENT_INGESTED, 1_763_700_000_000_i64);
        let mut text = Vec::new();
        event.write_json(&mut text);
        let document: Value = serde_json::from_slice(&text).unwrap();
        let template = component_template();
        let mut numbers = 0;
        for field in schema::all_fields() {
            if field.ty != FieldType::Date {
                continue;
            }
            let value = field
                .path
                .split('.')
                .try_fold(&document, |node, part| node.get(part))
                .or_else(|| document.get(field.path))
                .unwrap_or_else(|| panic!("{} not written", field.path));
            let mapping = lookup(&template, field.path).unwrap();
            if value.is_number() {
                numbers += 1;
                assert_eq!(mapping["format"], "epoch_millis", "{}", field.path);
            } else {
                assert!(value.is_string(), "{}: {value}", field.path);
            }
        }
        assert_eq!(numbers, 1, "rum.client_ts is written as a number");
    }

    #[test]
    fn a_flattened_field_takes_whatever_depth_a_source_lets_in() {
        // Elasticsearch refuses a document whose flattened field nests
        // deeper than its `depth_limit` (20 by default), but a source takes
        // bodies up to `max_json_depth` deep, which may be set to 100: with
        // it above about 23, a beacon's deep `rum.extra` or attribution was
        // refused by the engine and dead-lettered. Such a field sits inside
        // the body, so it is always less deep than the body.
        let template = component_template();
        let mut flattened = 0;
        for field in schema::all_fields() {
            if field.ty != FieldType::Flattened {
                continue;
            }
            flattened += 1;
            let mapping = lookup(&template, field.path).unwrap();
            let limit = mapping["depth_limit"].as_u64().unwrap_or(20);
            assert!(
                limit >= crate::sources::MAX_JSON_DEPTH as u64,
                "{}: depth_limit {limit}",
                field.path
            );
        }
        assert!(flattened >= 5, "{flattened} flattened fields");
    }

    #[test]
    fn every_schema_field_is_mapped_with_its_type() {
        let template = component_template();
        for field in schema::all_fields() {
            let mapped = lookup(&template, field.path)
                .unwrap_or_else(|| panic!("{} is not mapped", field.path));
            assert_eq!(mapped["type"], field.ty.es_type(), "{}", field.path);
        }
        assert_eq!(
            lookup(&template, "client.geo.location").unwrap()["type"],
            "geo_point"
        );
        assert_eq!(lookup(&template, "session.id").unwrap()["type"], "keyword");
        assert_eq!(
            lookup(&template, "rum.vital.value").unwrap()["type"],
            "double"
        );
    }

    #[test]
    fn retention_adds_an_ilm_policy_the_index_template_names() {
        const ES: Flavour = Flavour::Elasticsearch;
        let patterns = ["c.rum.metrics-*".to_owned()];
        assert_eq!(
            install_requests_with_lifecycle("n", &patterns, false, 0, ES),
            install_requests("n", &patterns, false, ES),
            "no retention, no ILM"
        );
        let daily = install_requests_with_lifecycle("n", &patterns, false, 30, ES);
        let paths: Vec<&str> = daily.iter().map(|(p, _)| p.as_str()).collect();
        // The component template first (it tells the engine), the policy
        // before the index template that names it.
        assert_eq!(
            paths,
            [
                "_component_template/n-mappings",
                "_ilm/policy/n",
                "_index_template/n"
            ]
        );
        let phases = &daily[1].1["policy"]["phases"];
        assert_eq!(phases["delete"]["min_age"], "30d");
        // Dated indices never roll over: a rollover action would stall them.
        assert!(phases["hot"]["actions"].get("rollover").is_none());
        assert_eq!(
            daily[2].1["template"]["settings"]["index.lifecycle.name"],
            "n"
        );
        let stream =
            install_requests_with_lifecycle("n", &["c.rum.metrics".to_owned()], true, 7, ES);
        assert_eq!(
            stream[1].1["policy"]["phases"]["hot"]["actions"]["rollover"]["max_age"],
            "1d"
        );
        assert_eq!(stream[1].1["policy"]["phases"]["delete"]["min_age"], "7d");
        assert_eq!(stream[2].1["data_stream"], json!({}));
    }

    #[test]
    fn for_sink_follows_the_sink_config() {
        let config: ElasticsearchConfig = crate::config::decode(
            toml::from_str(
                "endpoints = \"http://es:9200\"\nindex_prefix = \"shop.rum\"\nmode = \"data_stream\"\nmanage_template = true\nilm_retention_days = 14",
            )
            .unwrap(),
        )
        .unwrap();
        let router = config.router().unwrap();
        let requests = for_sink(&config, "ES_Main", &router);
        assert_eq!(requests[1].0, "_ilm/policy/rum-pipeline-es_main");
        assert_eq!(
            requests[2].1["index_patterns"],
            json!([
                "shop.rum.metrics",
                "shop.rum.csp.uri",
                "shop.rum.csp.reporting"
            ])
        );
        assert_eq!(requests[2].1["data_stream"], json!({}));
        use crate::config::CheckConfig;
        let mut unmanaged = config.clone();
        unmanaged.manage_template = false;
        assert!(unmanaged
            .check()
            .iter()
            .any(|(k, _)| *k == "ilm_retention_days"));
    }

    #[test]
    fn data_stream_templates_say_so() {
        let requests = install_requests(
            "rum-pipeline-es",
            &["c.rum.metrics".into()],
            true,
            Flavour::Elasticsearch,
        );
        assert_eq!(
            requests[0].0,
            "_component_template/rum-pipeline-es-mappings"
        );
        assert_eq!(requests[1].0, "_index_template/rum-pipeline-es");
        assert_eq!(requests[1].1["data_stream"], json!({}));
        assert_eq!(requests[1].1["index_patterns"], json!(["c.rum.metrics"]));
        let bulk = install_requests("x", &["c.rum.metrics-*".into()], false, Flavour::OpenSearch);
        assert!(bulk[1].1.get("data_stream").is_none());
    }

    /// OpenSearch has no `flattened` (it refuses the whole component
    /// template), takes `flat_object` from 2.7 without any parameter, and
    /// has no ILM (nor the `index.lifecycle.name` setting). Every other
    /// mapping is the same on both engines.
    #[test]
    fn opensearch_templates_use_only_what_opensearch_has() {
        fn without_objects(mut template: Value) -> Value {
            for field in schema::all_fields() {
                if field.ty == FieldType::Flattened {
                    let mut node = template.pointer_mut("/template/mappings").unwrap();
                    for part in field.path.split('.') {
                        node = node.get_mut("properties").unwrap().get_mut(part).unwrap();
                    }
                    *node = Value::Null;
                }
            }
            template
        }
        let es = component_template_for(Flavour::Elasticsearch);
        for (flavour, expected) in [
            (Flavour::OpenSearch, json!({"type": "flat_object"})),
            (
                Flavour::OpenSearchObjects,
                json!({"type": "object", "enabled": false}),
            ),
        ] {
            let os = component_template_for(flavour);
            let text = os.to_string();
            assert!(!text.contains("flattened"), "{flavour:?}");
            assert!(!text.contains("depth_limit"), "{flavour:?}");
            for field in schema::all_fields() {
                if field.ty == FieldType::Flattened {
                    assert_eq!(lookup(&os, field.path), Some(&expected), "{}", field.path);
                }
            }
            assert_eq!(without_objects(os), without_objects(es.clone()));
            let set = TemplateSet {
                name: "n".into(),
                patterns: vec!["c.rum.metrics-*".into()],
                data_stream: true,
                retention_days: 30,
            };
            let requests = set.requests(flavour);
            let paths: Vec<&str> = requests.iter().map(|(p, _)| p.as_str()).collect();
            assert_eq!(
                paths,
                ["_component_template/n-mappings", "_index_template/n"]
            );
            assert!(!requests[1].1.to_string().contains("lifecycle"));
            assert!(set.retention_dropped(flavour));
            assert!(!set.retention_dropped(Flavour::Elasticsearch));
        }
    }

    #[test]
    fn opensearch_versions_pick_their_flavour() {
        for (version, flavour) in [
            ("2.7.0", Flavour::OpenSearch),
            ("2.13.0", Flavour::OpenSearch),
            ("3.0.0", Flavour::OpenSearch),
            ("2.6.0", Flavour::OpenSearchObjects),
            ("1.3.14", Flavour::OpenSearchObjects),
            ("garbage", Flavour::OpenSearchObjects),
        ] {
            assert_eq!(Flavour::for_opensearch(version), flavour, "{version}");
        }
        assert_eq!(
            Flavour::Elasticsearch.without_object_type(),
            Some(Flavour::OpenSearch)
        );
        assert_eq!(
            Flavour::OpenSearch.without_object_type(),
            Some(Flavour::OpenSearchObjects)
        );
        assert_eq!(Flavour::OpenSearchObjects.without_object_type(), None);
    }
}
