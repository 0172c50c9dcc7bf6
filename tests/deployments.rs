//! Checks of deployments/ against the code: the Elasticsearch files are what
//! the sink installs and map every field of the schema, the Kibana objects
//! use only mapped fields (with fitting types), the Dockerfile builds what
//! README builds and runs it as non-root, the production pipeline starts with
//! only ELASTIC_CLUSTER, and `rum-pipeline health` (the image's HEALTHCHECK)
//! tells a ready pipeline from an absent one, over HTTP and HTTPS.
//! scripts/check-deployments.sh covers the YAML side (Kubernetes schemas, nginx -t).

mod common;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{one_shot, Pipeline};
use rum_pipeline::schema;
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir`, as relative path -> bytes.
fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap().display().to_string();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The variables deployments/elasticsearch/ was generated with (docs/deployment.md says so).
const TEMPLATE_ENV: &[(&str, &str)] = &[("ELASTIC_CLUSTER", "http://127.0.0.1:9200")];
/// Retention of the Elasticsearch sets (OpenSearch has no ILM).
const TEMPLATE_RETENTION_DAYS: &str = "30";
/// (directory under deployments/elasticsearch/, ELASTIC_MODE, `--engine`).
const VARIANTS: &[(&str, &str, &str)] = &[
    ("bulk", "bulk", "elasticsearch"),
    ("data-stream", "data_stream", "elasticsearch"),
    ("opensearch/bulk", "bulk", "opensearch"),
    ("opensearch/data-stream", "data_stream", "opensearch"),
];

fn generate_templates(mode: &str, engine: &str, out: &Path) {
    let retention = if engine == "elasticsearch" {
        TEMPLATE_RETENTION_DAYS
    } else {
        "0"
    };
    let output = one_shot(["templates", "--engine", engine, "--config"])
        .arg(root().join("pipelines/prod.toml"))
        .arg("--out")
        .arg(out)
        .env_clear()
        .envs(TEMPLATE_ENV.iter().copied())
        .env("INDEX_RETENTION_DAYS", retention)
        .env("ELASTIC_MODE", mode)
        .run();
    assert!(output.success(), "templates failed: {}", output.stderr);
}

#[test]
fn elasticsearch_files_are_what_the_sink_installs() {
    for (dir, mode, engine) in VARIANTS {
        let generated = tempfile::tempdir().unwrap();
        generate_templates(mode, engine, generated.path());
        let committed = tree(&root().join("deployments/elasticsearch").join(dir));
        let fresh = tree(generated.path());
        assert_eq!(
            committed.keys().collect::<Vec<_>>(),
            fresh.keys().collect::<Vec<_>>(),
            "deployments/elasticsearch/{dir}: files differ from `rum-pipeline templates` (regenerate: see docs/deployment.md, section Elasticsearch templates and retention)"
        );
        for (path, bytes) in &fresh {
            assert!(
                committed[path] == *bytes,
                "deployments/elasticsearch/{dir}/{path} is out of date (regenerate: see docs/deployment.md, section Elasticsearch templates and retention)"
            );
        }
        assert_eq!(
            fresh.keys().any(|p| p.starts_with("_ilm/policy/")),
            *engine == "elasticsearch",
            "{dir}: an ILM policy on Elasticsearch only"
        );
    }
}

/// `rum-pipeline templates --engine opensearch` with a retention: refused
/// (OpenSearch has no ILM), saying what to use instead.
#[test]
fn opensearch_templates_with_a_retention_are_refused() {
    let out = tempfile::tempdir().unwrap();
    let output = one_shot(["templates", "--engine", "opensearch", "--config"])
        .arg(root().join("pipelines/prod.toml"))
        .arg("--out")
        .arg(out.path())
        .env_clear()
        .envs(TEMPLATE_ENV.iter().copied())
        .env("INDEX_RETENTION_DAYS", "30")
        .run();
    assert!(!output.success());
    assert!(
        output.stderr.contains("ilm_retention_days"),
        "{}",
        output.stderr
    );
    assert!(
        output.stderr.contains("OpenSearch has no ILM"),
        "{}",
        output.stderr
    );
    assert!(tree(out.path()).is_empty(), "nothing written");
}

/// `deployments/elasticsearch/install.sh VARIANT` against the Elasticsearch
/// double: (exit success, stdout + stderr, the requests it made).
fn install(variant: &str, es: &support::es_double::EsDouble) -> (bool, String, Vec<String>) {
    es.forget_requests();
    let output = std::process::Command::new("sh")
        .arg(root().join("deployments/elasticsearch/install.sh"))
        .arg(variant)
        .env("ELASTIC_CLUSTER", format!("{}/", es.url()))
        .env("ELASTIC_HTTP_AUTH", "admin:pa ss")
        .output()
        .expect("sh runs install.sh");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let seen = es
        .seen()
        .iter()
        .map(|s| {
            assert_eq!(s.content_type.as_deref(), Some("application/json"), "{s:?}");
            // "admin:pa ss", in one piece.
            assert_eq!(
                s.authorization.as_deref(),
                Some("Basic YWRtaW46cGEgc3M="),
                "{s:?}"
            );
            format!("{} {} {}", s.method, s.path, s.status)
        })
        .collect();
    (output.status.success(), text, seen)
}

#[test]
fn install_sh_puts_the_files_in_order_and_shows_why_a_put_failed() {
    for (dir, _, engine) in VARIANTS {
        // Each set against the engine it is for (OpenSearch refuses
        // `flattened` and ILM).
        let es = support::es_double::EsDouble::start();
        if *engine == "opensearch" {
            es.opensearch(Some("2.13.0"));
        }
        let (ok, text, seen) = install(dir, &es);
        assert!(ok, "{text}");
        let mut expected = Vec::new();
        for kind in ["_component_template", "_ilm/policy", "_index_template"] {
            let folder = root()
                .join("deployments/elasticsearch")
                .join(dir)
                .join(kind);
            if !folder.exists() {
                continue;
            }
            let mut names: Vec<String> = std::fs::read_dir(&folder)
                .unwrap()
                .map(|e| {
                    let path = e.unwrap().path();
                    path.file_stem().unwrap().to_string_lossy().into_owned()
                })
                .collect();
            names.sort();
            for name in names {
                expected.push(format!("PUT /{kind}/{name} 200"));
            }
        }
        assert_eq!(seen, expected, "{dir}: {text}");
    }
    // The reason Elasticsearch gives is what the operator needs.
    let es = support::es_double::EsDouble::start();
    es.fail_templates(Some(403));
    let (ok, text, seen) = install("bulk", &es);
    assert!(!ok, "{text}");
    assert_eq!(seen.len(), 1, "stops at the first failure: {seen:?}");
    assert!(
        text.contains("is unauthorized for API key id [writer]"),
        "install.sh hid Elasticsearch's answer: {text}"
    );
}

/// Mapped field paths (multi-fields included, e.g. `error.message.keyword`) -> type.
fn mapped_fields(component_template: &Value) -> BTreeMap<String, String> {
    fn walk(prefix: &str, properties: &Value, out: &mut BTreeMap<String, String>) {
        for (name, mapping) in properties.as_object().expect("properties object") {
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            if let Some(children) = mapping.get("properties") {
                walk(&path, children, out);
                continue;
            }
            let ty = mapping["type"]
                .as_str()
                .unwrap_or_else(|| panic!("{path} has no type"));
            out.insert(path.clone(), ty.to_owned());
            if let Some(fields) = mapping.get("fields").and_then(Value::as_object) {
                for (sub, sub_mapping) in fields {
                    out.insert(
                        format!("{path}.{sub}"),
                        sub_mapping["type"].as_str().unwrap().to_owned(),
                    );
                }
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(
        "",
        &component_template["template"]["mappings"]["properties"],
        &mut out,
    );
    out
}

fn committed_component_template(dir: &str) -> Value {
    let path = root()
        .join("deployments/elasticsearch")
        .join(dir)
        .join("_component_template");
    let files: Vec<PathBuf> = std::fs::read_dir(&path)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        files.len(),
        1,
        "one component template in {}",
        path.display()
    );
    read_json(&files[0])
}

#[test]
fn index_template_maps_every_schema_field_with_its_type() {
    for (dir, _, engine) in VARIANTS {
        let template = committed_component_template(dir);
        let mapped = mapped_fields(&template);
        let mut count = 0;
        for field in schema::all_fields() {
            count += 1;
            // OpenSearch's own type for a browser-supplied object.
            let ty = match (field.ty, *engine) {
                (schema::FieldType::Flattened, "opensearch") => "flat_object",
                (ty, _) => ty.es_type(),
            };
            assert_eq!(
                mapped.get(field.path).map(String::as_str),
                Some(ty),
                "{dir}: {} should be mapped as {ty}",
                field.path,
            );
        }
        assert!(count > 100, "the schema lists {count} fields");
        // The policy for everything else is stated, not left to defaults.
        let mappings = &template["template"]["mappings"];
        assert!(mappings.get("dynamic").is_some(), "{dir}: dynamic policy");
        assert_eq!(mapped["client.geo.location"], "geo_point");
        assert_eq!(mapped["labels.synthetic"], "boolean");
    }
}

/// Fields a KQL query names, each with what the query asks of it: `kql`
/// (a match, any mapped type), `kql-range` (`<`, `<=`, `>`, `>=`: a number or
/// a date, or a keyword compares as text) or `kql-bool` (`: true`/`: false`).
/// Quoted values are removed first.
fn kql_fields(query: &str) -> Vec<(String, &'static str)> {
    let mut unquoted = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for c in query.chars() {
        match (in_quotes, escaped, c) {
            (true, false, '\\') => escaped = true,
            (true, false, '"') => in_quotes = false,
            (true, _, _) => escaped = false,
            (false, _, '"') => in_quotes = true,
            (false, _, c) => unquoted.push(c),
        }
    }
    assert!(!in_quotes, "unbalanced quotes in KQL {query:?}");
    let unquoted = unquoted.replace("<=", "<").replace(">=", ">");
    let mut fields = Vec::new();
    for op in [":", "<", ">"] {
        let mut rest = unquoted.as_str();
        while let Some(at) = rest.find(op) {
            let before = rest[..at].trim_end();
            let name: String = before
                .chars()
                .rev()
                .take_while(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '@'))
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            rest = &rest[at + op.len()..];
            let value: String = rest
                .trim_start()
                .chars()
                .take_while(|c| c.is_alphanumeric())
                .collect();
            let asks = match op {
                ":" if value == "true" || value == "false" => "kql-bool",
                ":" => "kql",
                _ => "kql-range",
            };
            if !name.is_empty() && !name.chars().all(|c| c.is_ascii_digit() || c == '.') {
                fields.push((name, asks));
            }
        }
    }
    fields
}

#[test]
fn kql_field_extraction() {
    let kql = |q: &str| kql_fields(q);
    let own = |pairs: &[(&str, &'static str)]| -> Vec<(String, &'static str)> {
        pairs.iter().map(|(f, a)| (f.to_string(), *a)).collect()
    };
    assert_eq!(
        kql(r#"rum.type : "web_vital""#),
        own(&[("rum.type", "kql")])
    );
    assert_eq!(
        kql(
            r#"(rum.vital.name : "LCP" and rum.vital.value <= 2500) or not labels.synthetic : true"#
        ),
        own(&[
            ("rum.vital.name", "kql"),
            ("labels.synthetic", "kql-bool"),
            ("rum.vital.value", "kql-range")
        ])
    );
    assert_eq!(
        kql(r#"error.message : "a: b <= c""#),
        own(&[("error.message", "kql")])
    );
    assert_eq!(
        kql("rum.vital.value > 0.25 and labels.synthetic:false"),
        own(&[
            ("labels.synthetic", "kql-bool"),
            ("rum.vital.value", "kql-range")
        ])
    );
    assert!(kql("").is_empty());
}

/// What a Lens operation needs of its field.
fn operation_accepts(operation: &str, es_type: &str) -> bool {
    match operation {
        "date_histogram" => es_type == "date",
        "percentile" | "average" | "sum" | "median" | "min" | "max" => {
            matches!(es_type, "long" | "double" | "float" | "integer")
        }
        "terms" => matches!(es_type, "keyword" | "boolean" | "ip" | "long"),
        "unique_count" => !matches!(es_type, "text" | "flattened" | "geo_point"),
        _ => false,
    }
}

struct KibanaRefs {
    /// (where, field, Lens operation or "kql"/"kql-range"/"kql-bool"/"geo"/"time").
    fields: Vec<(String, String, String)>,
    /// Data view ids each object refers to.
    data_views: BTreeSet<String>,
}

fn lens_refs(where_: &str, attributes: &Value, refs: &mut KibanaRefs) {
    let state = &attributes["state"];
    let layers = state["datasourceStates"]["formBased"]["layers"]
        .as_object()
        .unwrap_or_else(|| panic!("{where_}: no formBased layers"));
    let references: BTreeMap<&str, &str> = attributes["references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["name"].as_str().unwrap(), r["id"].as_str().unwrap()))
        .collect();
    let mut column_ids = BTreeSet::new();
    for (layer_id, layer) in layers {
        let data_view = references
            .get(format!("indexpattern-datasource-layer-{layer_id}").as_str())
            .unwrap_or_else(|| panic!("{where_}: layer {layer_id} has no data view reference"));
        refs.data_views.insert(data_view.to_string());
        let columns = layer["columns"].as_object().unwrap();
        let order: Vec<&str> = layer["columnOrder"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert_eq!(
            order.iter().copied().collect::<BTreeSet<_>>(),
            columns.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            "{where_}: columnOrder lists exactly the columns"
        );
        for (id, column) in columns {
            column_ids.insert(id.clone());
            let operation = column["operationType"].as_str().unwrap();
            if let Some(field) = column["sourceField"]
                .as_str()
                .filter(|f| *f != "___records___")
            {
                refs.fields
                    .push((where_.to_owned(), field.to_owned(), operation.to_owned()));
            }
            if let Some(query) = column.pointer("/filter/query").and_then(Value::as_str) {
                for (f, asks) in kql_fields(query) {
                    refs.fields.push((where_.to_owned(), f, asks.into()));
                }
            }
            for filter in column
                .pointer("/params/filters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                for (f, asks) in kql_fields(filter["input"]["query"].as_str().unwrap()) {
                    refs.fields.push((where_.to_owned(), f, asks.into()));
                }
            }
            if let Some(order_by) = column
                .pointer("/params/orderBy/columnId")
                .and_then(Value::as_str)
            {
                assert!(
                    columns.contains_key(order_by),
                    "{where_}: orders by a missing column"
                );
            }
        }
    }
    for (f, asks) in kql_fields(state["query"]["query"].as_str().unwrap()) {
        refs.fields.push((where_.to_owned(), f, asks.into()));
    }
    // Every accessor the visualization names is a column of the layer.
    let visualization = state["visualization"].to_string();
    for accessor in ["xAccessor", "splitAccessor", "metricAccessor", "columnId"] {
        let needle = format!("\"{accessor}\":\"");
        for (at, _) in visualization.match_indices(&needle) {
            let id: String = visualization[at + needle.len()..]
                .chars()
                .take_while(|c| *c != '"')
                .collect();
            assert!(
                column_ids.contains(&id),
                "{where_}: {accessor} {id} is not a column"
            );
        }
    }
    for list in ["accessors", "primaryGroups", "metrics"] {
        for found in find_arrays(&state["visualization"], list) {
            for id in found {
                assert!(
                    column_ids.contains(id.as_str().unwrap()),
                    "{where_}: {list} names a missing column"
                );
            }
        }
    }
}

fn find_arrays<'a>(value: &'a Value, key: &str) -> Vec<&'a Vec<Value>> {
    let mut out = Vec::new();
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if k == key {
                    if let Some(a) = v.as_array() {
                        out.push(a);
                    }
                }
                out.extend(find_arrays(v, key));
            }
        }
        Value::Array(items) => items.iter().for_each(|v| out.extend(find_arrays(v, key))),
        _ => {}
    }
    out
}

fn glob_matches(pattern: &str, name: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == name,
        Some((head, tail)) => {
            name.starts_with(head)
                && name.len() >= head.len() + tail.len()
                && glob_matches_tail(tail, &name[head.len()..])
        }
    }
}

fn glob_matches_tail(pattern: &str, name: &str) -> bool {
    if pattern.is_empty() {
        return true;
    }
    (0..=name.len()).any(|i| name.is_char_boundary(i) && glob_matches(pattern, &name[i..]))
}

#[test]
fn kibana_objects_use_only_mapped_fields() {
    let text = read("deployments/kibana/rum-pipeline.ndjson");
    let objects: Vec<Value> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).unwrap_or_else(|e| panic!("ndjson line {}: {e}", i + 1))
        })
        .collect();
    let by_id: BTreeMap<(String, String), &Value> = objects
        .iter()
        .map(|o| {
            (
                (
                    o["type"].as_str().unwrap().to_owned(),
                    o["id"].as_str().unwrap().to_owned(),
                ),
                o,
            )
        })
        .collect();
    assert_eq!(by_id.len(), objects.len(), "ids are unique");
    let mut refs = KibanaRefs {
        fields: Vec::new(),
        data_views: BTreeSet::new(),
    };
    let mut data_view_titles = Vec::new();
    let mut panel_types = BTreeSet::new();
    for object in &objects {
        let kind = object["type"].as_str().unwrap();
        let id = object["id"].as_str().unwrap();
        for reference in object["references"].as_array().unwrap() {
            let target = (
                reference["type"].as_str().unwrap().to_owned(),
                reference["id"].as_str().unwrap().to_owned(),
            );
            assert!(
                by_id.contains_key(&target),
                "{kind} {id} refers to {target:?}, which is not in the file"
            );
        }
        match kind {
            "index-pattern" => {
                data_view_titles.push(object["attributes"]["title"].as_str().unwrap().to_owned());
                let time = object["attributes"]["timeFieldName"].as_str().unwrap();
                refs.fields
                    .push((id.to_owned(), time.to_owned(), "time".into()));
            }
            "map" => {
                let layers: Value =
                    serde_json::from_str(object["attributes"]["layerListJSON"].as_str().unwrap())
                        .unwrap();
                for layer in layers.as_array().unwrap() {
                    let source = &layer["sourceDescriptor"];
                    if let Some(geo) = source["geoField"].as_str() {
                        refs.fields
                            .push((id.to_owned(), geo.to_owned(), "geo".into()));
                        let name = source["indexPatternRefName"].as_str().unwrap();
                        assert!(
                            object["references"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|r| r["name"] == name),
                            "map layer reference {name}"
                        );
                    }
                    if let Some(query) = layer.pointer("/query/query").and_then(Value::as_str) {
                        for (f, asks) in kql_fields(query) {
                            refs.fields.push((id.to_owned(), f, asks.into()));
                        }
                    }
                }
            }
            "dashboard" => {
                let panels: Value =
                    serde_json::from_str(object["attributes"]["panelsJSON"].as_str().unwrap())
                        .unwrap();
                let references: BTreeSet<&str> = object["references"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["name"].as_str().unwrap())
                    .collect();
                for panel in panels.as_array().unwrap() {
                    let index = panel["panelIndex"].as_str().unwrap();
                    assert_eq!(panel["gridData"]["i"], index);
                    let title = panel["title"].as_str().unwrap_or(index);
                    panel_types.insert(panel["type"].as_str().unwrap().to_owned());
                    if let Some(attributes) = panel.pointer("/embeddableConfig/attributes") {
                        lens_refs(title, attributes, &mut refs);
                        for r in attributes["references"].as_array().unwrap() {
                            let name = format!("{index}:{}", r["name"].as_str().unwrap());
                            assert!(
                                references.contains(name.as_str()),
                                "{title}: dashboard reference {name}"
                            );
                        }
                    } else {
                        let name = format!("{index}:{}", panel["panelRefName"].as_str().unwrap());
                        assert!(
                            references.contains(name.as_str()),
                            "{title}: dashboard reference {name}"
                        );
                    }
                }
            }
            other => panic!("unexpected saved object type {other}"),
        }
    }
    assert!(
        panel_types.contains("lens") && panel_types.contains("map"),
        "{panel_types:?}"
    );
    let mapped = mapped_fields(&committed_component_template("bulk"));
    for (where_, field, operation) in &refs.fields {
        let ty = mapped
            .get(field)
            .unwrap_or_else(|| panic!("{where_}: `{field}` is not a mapped field"));
        let fits = match operation.as_str() {
            "kql" => true,
            "kql-range" => matches!(
                ty.as_str(),
                "long" | "double" | "float" | "integer" | "date"
            ),
            "kql-bool" => ty == "boolean",
            "time" => ty == "date",
            "geo" => ty == "geo_point",
            op => operation_accepts(op, ty),
        };
        assert!(fits, "{where_}: {operation} on `{field}`, mapped as {ty}");
    }
    // The dashboard covers what the issue asks for.
    let used: BTreeSet<&str> = refs.fields.iter().map(|(_, f, _)| f.as_str()).collect();
    for needed in [
        "rum.vital.value",
        "url.path_template",
        "error.message.keyword",
        "csp.effective_directive",
        "csp.blocked_uri",
        "client.geo.location",
        "user_agent.name",
        "user_agent.os.name",
        "user_agent.device.name",
        "labels.synthetic",
    ] {
        assert!(used.contains(needed), "the dashboard does not use {needed}");
    }
    // Each data view matches the indices (bulk) or data streams the sink writes.
    for (dir, _, _) in VARIANTS {
        let index_templates = root()
            .join("deployments/elasticsearch")
            .join(dir)
            .join("_index_template");
        for entry in std::fs::read_dir(index_templates).unwrap() {
            let template = read_json(&entry.unwrap().path());
            for pattern in template["index_patterns"].as_array().unwrap() {
                let example = pattern.as_str().unwrap().replace('*', "2026.01.31");
                assert!(
                    data_view_titles.iter().any(|t| glob_matches(t, &example)),
                    "no data view covers {example} ({dir})"
                );
            }
        }
    }
    for id in &refs.data_views {
        assert!(
            by_id.contains_key(&("index-pattern".to_owned(), id.clone())),
            "data view {id}"
        );
    }
}

// ---------------------------------------------------------------------------
// Dockerfile

/// Instructions of a Dockerfile, continuation lines joined, comments dropped.
fn dockerfile_instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if current.is_empty() && (trimmed.is_empty() || trimmed.starts_with('#')) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            current.push_str(body);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (op, args) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        out.push((op.to_ascii_uppercase(), args.trim().to_owned()));
        current.clear();
    }
    out
}

/// Profile and feature flags of a `cargo build`/`cargo run` command line.
fn cargo_flags(command: &str) -> (String, BTreeSet<String>) {
    let words: Vec<&str> = command.split_whitespace().collect();
    let mut profile = "dev".to_owned();
    let mut features = BTreeSet::new();
    for (i, word) in words.iter().enumerate() {
        match *word {
            "--release" | "-r" => profile = "release".into(),
            "--profile" => profile = words.get(i + 1).unwrap_or(&"").to_string(),
            "--no-default-features" | "--all-features" => {
                features.insert(word.to_string());
            }
            "--features" | "-F" => {
                features.insert(format!("--features {}", words.get(i + 1).unwrap_or(&"")));
            }
            w if w.starts_with("--profile=") => profile = w["--profile=".len()..].to_owned(),
            w if w.starts_with("--features=") => {
                features.insert(w.to_owned());
            }
            _ => {}
        }
    }
    (profile, features)
}

#[test]
fn cargo_flag_parsing() {
    assert_eq!(
        cargo_flags("cargo build --release --locked"),
        ("release".into(), BTreeSet::new())
    );
    assert_eq!(cargo_flags("cargo build").0, "dev");
    assert_eq!(cargo_flags("cargo build --profile=fast").0, "fast");
    assert!(!cargo_flags("cargo build --release --no-default-features")
        .1
        .is_empty());
}

#[test]
fn dockerfile_builds_like_the_readme_and_runs_as_non_root() {
    let dockerfile = read("deployments/docker/Dockerfile");
    let instructions = dockerfile_instructions(&dockerfile);
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (op, _))| op == "FROM")
        .map(|(i, _)| i)
        .collect();
    assert!(stages.len() >= 2, "multi-stage build");
    let (build_stage, runtime) = instructions.split_at(*stages.last().unwrap());

    // The binary is built as README builds it.
    let readme = read("README.md");
    let readme_builds: Vec<&str> = readme
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("cargo build") || l.starts_with("cargo run"))
        .filter(|l| !l.contains("--config") && !l.contains("--example") && !l.contains("--bin "))
        .collect();
    assert!(!readme_builds.is_empty(), "README shows how to build");
    let builds: Vec<&String> = build_stage
        .iter()
        .filter(|(op, args)| op == "RUN" && args.contains("cargo build"))
        .map(|(_, args)| args)
        .collect();
    assert!(
        builds.len() >= 2,
        "dependencies are built in their own layer before the sources are copied"
    );
    let first_source_copy = build_stage
        .iter()
        .position(|(op, args)| op == "COPY" && args.starts_with("src "))
        .expect("COPY src");
    let first_build = build_stage
        .iter()
        .position(|(op, args)| op == "RUN" && args.contains("cargo build"))
        .unwrap();
    assert!(
        first_build < first_source_copy,
        "the dependency layer comes before COPY src"
    );
    for build in &builds {
        for part in build.split("&&").filter(|p| p.contains("cargo build")) {
            for readme_build in &readme_builds {
                assert_eq!(
                    cargo_flags(part),
                    cargo_flags(readme_build),
                    "Dockerfile `{}` vs README `{readme_build}`",
                    part.trim()
                );
            }
        }
    }

    // The runtime stage: non-root, health check, the pipeline it runs is copied in.
    let user = runtime
        .iter()
        .rev()
        .find(|(op, _)| op == "USER")
        .map(|(_, args)| args.clone())
        .expect("USER in the runtime stage");
    let uid = user.split(':').next().unwrap();
    assert!(!matches!(uid, "root" | "0" | ""), "runs as {user}");
    let health = runtime
        .iter()
        .find(|(op, _)| op == "HEALTHCHECK")
        .expect("HEALTHCHECK");
    assert!(
        health.1.contains("\"health\"") || health.1.contains("/health"),
        "{}",
        health.1
    );
    let copies: Vec<(&str, &str)> = runtime
        .iter()
        .filter(|(op, args)| op == "COPY" && !args.starts_with("--from"))
        .map(|(_, args)| {
            let mut parts = args.split_whitespace();
            (parts.next().unwrap(), parts.next().unwrap())
        })
        .collect();
    let env = runtime
        .iter()
        .filter(|(op, _)| op == "ENV")
        .map(|(_, a)| a.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    let config = env
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("RUM_CONFIG="))
        .expect("ENV RUM_CONFIG names the pipeline the image runs");
    let (source, target) = copies
        .iter()
        .find(|(_, target)| config.starts_with(&format!("{}/", target.trim_end_matches('/'))))
        .unwrap_or_else(|| panic!("{config} is not copied into the image"));
    let relative = &config[target.trim_end_matches('/').len() + 1..];
    assert!(
        root().join(source).join(relative).is_file(),
        "{source}/{relative} exists"
    );
    assert_eq!(*source, "pipelines");

    // Everything COPY takes from the context is let through by .dockerignore.
    let ignore = read(".dockerignore");
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .collect();
    assert!(
        ignore.lines().any(|l| l.trim() == "*"),
        ".dockerignore starts from nothing"
    );
    for (op, args) in &instructions {
        if op != "COPY" || args.starts_with("--from") {
            continue;
        }
        let words: Vec<&str> = args.split_whitespace().collect();
        for source in &words[..words.len() - 1] {
            assert!(
                allowed
                    .iter()
                    .any(|a| source == a || source.starts_with(&format!("{a}/"))),
                "COPY {source} is excluded by .dockerignore"
            );
            assert!(root().join(source).exists(), "COPY {source}: no such path");
        }
    }
}

/// Files the release build embeds (`include_str!`/`include_bytes!` outside
/// test modules) must be in the Docker build context.
#[test]
fn files_the_binary_embeds_are_in_the_docker_context() {
    fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                rust_files(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let ignore = read(".dockerignore");
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.trim().strip_prefix('!'))
        .collect();
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    let mut embedded = 0;
    for file in files {
        // Test modules sit at the bottom of each file, after `#[cfg(test)]`,
        // or in a module folder's own `tests.rs` / `*_tests.rs`.
        let name = file.file_name().unwrap().to_string_lossy();
        if name == "tests.rs" || name.ends_with("_tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        // (`#[cfg(test)] mod tests;` near the top only declares the latter.)
        let release_part = text.split("#[cfg(test)]\nmod tests {").next().unwrap();
        for macro_ in ["include_str!(\"", "include_bytes!(\""] {
            for (at, _) in release_part.match_indices(macro_) {
                let relative: String = release_part[at + macro_.len()..]
                    .chars()
                    .take_while(|c| *c != '"')
                    .collect();
                let target = file.parent().unwrap().join(&relative);
                let target = target
                    .canonicalize()
                    .unwrap_or_else(|e| panic!("{}: {relative}: {e}", file.display()));
                let inside = target
                    .strip_prefix(root().canonicalize().unwrap())
                    .unwrap()
                    .display()
                    .to_string();
                assert!(
                    allowed
                        .iter()
                        .any(|a| inside == *a || inside.starts_with(&format!("{a}/"))),
                    "{} embeds {inside}, which .dockerignore leaves out of the image build",
                    file.display()
                );
                embedded += 1;
            }
        }
    }
    assert!(
        embedded >= 2,
        "the default pipeline and the client bundle are embedded"
    );
}

// ---------------------------------------------------------------------------
// The image's command and health check against the real binary

#[test]
fn prod_pipeline_starts_with_only_elastic_cluster() {
    let run = |env: &[(&str, &str)]| {
        let output = one_shot(["validate", "--config"])
            .arg(root().join("pipelines/prod.toml"))
            .env_clear()
            .envs(env.iter().copied())
            .run();
        (output.success(), output.text())
    };
    let (ok, text) = run(&[("ELASTIC_CLUSTER", "https://elastic.example:9200")]);
    assert!(ok, "{text}");
    let (ok, text) = run(&[
        ("ELASTIC_CLUSTER", "https://elastic.example:9200"),
        ("ELASTIC_HTTP_AUTH", "elastic:s3cr\"et\\"),
    ]);
    assert!(ok, "{text}");
    assert!(!text.contains("s3cr"), "the password is not echoed: {text}");
    let (ok, text) = run(&[]);
    assert!(!ok);
    assert!(text.contains("ELASTIC_CLUSTER"), "{text}");
}

/// `rum-pipeline health`, with 30 s rather than its 3 s default to answer: a
/// verdict of the answer, not of how busy the machine is.
fn health(url: Option<&str>, env: &[(&str, &str)]) -> (bool, String) {
    let mut command = one_shot(["health", "--timeout-ms", "30000"])
        .env_remove("RUM_HEALTH_URL")
        .env_remove("SERVER_PORT");
    if let Some(url) = url {
        command = command.arg("--url").arg(url);
    }
    let output = command.envs(env.iter().copied()).run();
    (output.success(), output.stdout)
}

const DEV_PIPELINE: &str = r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
{tls}
[sinks.out]
type = "blackhole"
inputs = ["beacons"]
"#;

#[test]
fn health_command_tells_ready_from_gone() {
    let mut pipeline = Pipeline::start(&DEV_PIPELINE.replace("{tls}", ""));
    let url = pipeline.url("/health");
    let (ok, said) = health(Some(&url), &[]);
    assert!(ok, "{said}");
    assert!(said.contains("rum-pipeline is ready"), "{said}");
    // The default URL follows SERVER_PORT, as the image's HEALTHCHECK relies on.
    let port = url.rsplit(':').next().unwrap().trim_end_matches("/health");
    let (ok, said) = health(None, &[("SERVER_PORT", port)]);
    assert!(ok, "{said}");
    // A compose file's `RUM_HEALTH_URL: ${RUM_HEALTH_URL:-}` passes it empty:
    // unset, as `${VAR:-default}` has it, not a URL that fails every probe.
    let (ok, said) = health(None, &[("SERVER_PORT", port), ("RUM_HEALTH_URL", "")]);
    assert!(ok, "{said}");
    assert!(pipeline.terminate(Duration::from_secs(20)).success());
    let (ok, said) = health(Some(&url), &[]);
    assert!(!ok, "{said}");
    assert!(said.contains("unhealthy"), "{said}");
}

#[test]
fn health_command_speaks_https() {
    use rcgen::{CertificateParams, KeyPair};
    let certs = tempfile::tempdir().unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (crt_file, key_file) = (certs.path().join("tls.crt"), certs.path().join("tls.key"));
    std::fs::write(&crt_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let tls = format!(
        "tls = {{ crt_file = {:?}, key_file = {:?} }}",
        crt_file.display().to_string(),
        key_file.display().to_string()
    );
    let mut pipeline = Pipeline::start(&DEV_PIPELINE.replace("{tls}", &tls));
    assert!(pipeline.base.starts_with("https://"), "{}", pipeline.base);
    let (ok, said) = health(Some(&pipeline.url("/health")), &[]);
    assert!(ok, "{said}");
    // Plain HTTP to a TLS port is not mistaken for a healthy answer.
    let (ok, said) = health(
        Some(&pipeline.url("/health").replace("https://", "http://")),
        &[],
    );
    assert!(!ok, "{said}");
    assert!(pipeline.terminate(Duration::from_secs(20)).success());
}
