//! Index templates `manage_template = true` installs at startup, derived from
//! `schema` (the one list of fields and their types): a component template
//! with the mappings — `client.geo.location` a geo_point, ids keyword, vitals
//! and timings numeric — and an index template that applies it to every name
//! the sink writes (as a data stream in `data_stream` mode).
//!
//! Dynamic policy: `labels.*` and other unforeseen strings map to `keyword`
//! (`ignore_above` 1024) so dashboards can aggregate them, never to `date`
//! (no date detection); known fields never depend on dynamic mapping.

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

fn mapping(field: &schema::Field) -> Value {
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
        FieldType::Flattened => json!({
            "type": "flattened",
            "depth_limit": MAX_JSON_DEPTH,
            "ignore_above": FLATTENED_IGNORE_ABOVE
        }),
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

/// The mappings of every field the pipeline writes.
pub fn component_template() -> Value {
    let mut properties = Map::new();
    for field in schema::all_fields() {
        insert(&mut properties, field.path, mapping(&field));
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

/// What `manage_template` installs for the sink `id` (and what
/// `rum-pipeline templates` writes out): `(path, body)`, in order.
pub fn for_sink(
    config: &ElasticsearchConfig,
    id: &str,
    router: &IndexRouter,
) -> Vec<(String, Value)> {
    let name = format!("rum-pipeline-{}", id.to_ascii_lowercase());
    install_requests_with_lifecycle(
        &name,
        &router.patterns(),
        config.mode == Mode::DataStream,
        config.ilm_retention_days,
    )
}

/// [`install_requests`], preceded by the ILM policy and with the index
/// template pointing at it when `retention_days` > 0.
pub fn install_requests_with_lifecycle(
    name: &str,
    patterns: &[String],
    data_stream: bool,
    retention_days: u32,
) -> Vec<(String, Value)> {
    let mut requests = install_requests(name, patterns, data_stream);
    if retention_days == 0 {
        return requests;
    }
    for (path, body) in requests.iter_mut() {
        if path.starts_with("_index_template/") {
            body["template"] = json!({"settings": {"index.lifecycle.name": name}});
        }
    }
    requests.insert(
        0,
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
            component_template(),
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
        let patterns = ["c.rum.metrics-*".to_owned()];
        assert_eq!(
            install_requests_with_lifecycle("n", &patterns, false, 0),
            install_requests("n", &patterns, false),
            "no retention, no ILM (OpenSearch has none)"
        );
        let daily = install_requests_with_lifecycle("n", &patterns, false, 30);
        let paths: Vec<&str> = daily.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "_ilm/policy/n",
                "_component_template/n-mappings",
                "_index_template/n"
            ]
        );
        let phases = &daily[0].1["policy"]["phases"];
        assert_eq!(phases["delete"]["min_age"], "30d");
        // Dated indices never roll over: a rollover action would stall them.
        assert!(phases["hot"]["actions"].get("rollover").is_none());
        assert_eq!(
            daily[2].1["template"]["settings"]["index.lifecycle.name"],
            "n"
        );
        let stream = install_requests_with_lifecycle("n", &["c.rum.metrics".to_owned()], true, 7);
        assert_eq!(
            stream[0].1["policy"]["phases"]["hot"]["actions"]["rollover"]["max_age"],
            "1d"
        );
        assert_eq!(stream[0].1["policy"]["phases"]["delete"]["min_age"], "7d");
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
        assert_eq!(requests[0].0, "_ilm/policy/rum-pipeline-es_main");
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
        let requests = install_requests("rum-pipeline-es", &["c.rum.metrics".into()], true);
        assert_eq!(
            requests[0].0,
            "_component_template/rum-pipeline-es-mappings"
        );
        assert_eq!(requests[1].0, "_index_template/rum-pipeline-es");
        assert_eq!(requests[1].1["data_stream"], json!({}));
        assert_eq!(requests[1].1["index_patterns"], json!(["c.rum.metrics"]));
        let bulk = install_requests("x", &["c.rum.metrics-*".into()], false);
        assert!(bulk[1].1.get("data_stream").is_none());
    }
}
