//! Index templates `manage_template = true` installs at startup, derived from
//! `schema` (the one list of fields and their types): a component template
//! with the mappings — `client.geo.location` a geo_point, ids keyword, vitals
//! and timings numeric — and an index template that applies it to every name
//! the sink writes (as a data stream in `data_stream` mode).
//!
//! Dynamic policy: `labels.*` and other unforeseen strings map to `keyword`
//! (`ignore_above` 1024) so dashboards can aggregate them; known fields never
//! depend on dynamic mapping.

use serde_json::{json, Map, Value};

use crate::schema::{self, FieldType};

/// `ignore_above` for keywords: longer values are stored but not indexed.
const KEYWORD_IGNORE_ABOVE: u32 = 1024;

fn mapping(ty: FieldType) -> Value {
    match ty {
        FieldType::Keyword => json!({"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}),
        FieldType::Text => json!({
            "type": "text",
            "fields": {"keyword": {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}}
        }),
        FieldType::Date => json!({"type": "date"}),
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
        insert(&mut properties, field.path, mapping(field.ty));
    }
    json!({
        "template": {
            "mappings": {
                "dynamic": true,
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

/// The requests that install the templates: `(path, body)`, in order.
pub fn install_requests(name: &str, patterns: &[String], data_stream: bool) -> Vec<(String, Value)> {
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
        (format!("_component_template/{component}"), component_template()),
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

    #[test]
    fn every_schema_field_is_mapped_with_its_type() {
        let template = component_template();
        for field in schema::all_fields() {
            let mapped = lookup(&template, field.path).unwrap_or_else(|| panic!("{} is not mapped", field.path));
            assert_eq!(mapped["type"], field.ty.es_type(), "{}", field.path);
        }
        assert_eq!(lookup(&template, "client.geo.location").unwrap()["type"], "geo_point");
        assert_eq!(lookup(&template, "session.id").unwrap()["type"], "keyword");
        assert_eq!(lookup(&template, "rum.vital.value").unwrap()["type"], "double");
    }

    #[test]
    fn data_stream_templates_say_so() {
        let requests = install_requests("rum-pipeline-es", &["c.rum.metrics".into()], true);
        assert_eq!(requests[0].0, "_component_template/rum-pipeline-es-mappings");
        assert_eq!(requests[1].0, "_index_template/rum-pipeline-es");
        assert_eq!(requests[1].1["data_stream"], json!({}));
        assert_eq!(requests[1].1["index_patterns"], json!(["c.rum.metrics"]));
        let bulk = install_requests("x", &["c.rum.metrics-*".into()], false);
        assert!(bulk[1].1.get("data_stream").is_none());
    }
}
