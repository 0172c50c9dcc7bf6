//! A model of how Elasticsearch maps documents against the component template
//! `manage_template` installs (`templates::component_template()`), so tests can
//! tell, without a cluster, whether a document the sink writes would be
//! indexed or refused item by item (`mapper_parsing_exception`, which sends the
//! document to the dead-letter file and out of Kibana).
//!
//! It follows Elasticsearch 8/9 as documented and as its document parser
//! behaves (`DocumentParser`, the field mappers): explicit mappings first;
//! unknown fields mapped dynamically (date detection — a string with two `-`,
//! `:` or `/` that parses as a date becomes a `date` —, then the first
//! matching dynamic template, then the defaults `long`, `float`, `boolean`,
//! `text`); mappings added by one document are seen by the next one of the
//! same index; a refused document adds nothing. What a field type accepts:
//! `keyword`/`text` any scalar; `long` an integer in range (a float is
//! truncated, a numeric string parsed, `""` is null); `double`/`float` a
//! finite number in range; `boolean` `true`/`false`/`"true"`/`"false"`/`""`;
//! `date` `strict_date_optional_time` or epoch millis; `ip` an address;
//! `geo_point` `{lat, lon}` in range, `"lat,lon"` or `[lon, lat]`;
//! `flattened` an object (never a scalar, also inside an array) within its
//! `depth_limit`, whose keys hold no `\0` and whose indexed `key\0value`
//! fits Lucene's 32766-byte term; an object mapping never a scalar, a leaf
//! never an object; field names neither empty, nor blank, nor starting or
//! ending with `.`; no metadata field (`_id`, ...) at the top; at most 1000
//! fields and 20 levels of objects per index.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::LazyLock;

use regex::Regex;

use serde_json::{Map, Value};

/// Lucene's longest indexed term, in bytes (`IndexWriter.MAX_TERM_LENGTH`).
const MAX_TERM_BYTES: usize = 32766;
/// `index.mapping.total_fields.limit`'s default.
const TOTAL_FIELDS_LIMIT: usize = 1000;
/// `index.mapping.depth.limit`'s default.
const DEPTH_LIMIT: usize = 20;
const METADATA_FIELDS: &[&str] = &[
    "_id",
    "_index",
    "_source",
    "_routing",
    "_ignored",
    "_ignored_source",
    "_seq_no",
    "_primary_term",
    "_version",
    "_field_names",
    "_doc_count",
    "_data_stream_timestamp",
    "_tier",
    "_nested_path",
    "_tsid",
    "_feature",
    "_index_mode",
];

#[derive(Debug, Clone)]
enum Mapper {
    Object(BTreeMap<String, Mapper>),
    Leaf(Leaf),
}

#[derive(Debug, Clone)]
struct Leaf {
    ty: String,
    ignore_above: Option<usize>,
    depth_limit: usize,
    multi_fields: usize,
    /// Mapped by Elasticsearch's defaults, not by the template.
    untemplated: bool,
}

#[derive(Debug, Clone)]
struct DynamicTemplate {
    name: String,
    path_match: Option<String>,
    field_match: Option<String>,
    match_mapping_type: Option<String>,
    mapping: Value,
}

/// One index's mapping, growing as documents are indexed into it.
#[derive(Debug, Clone)]
pub struct IndexMapping {
    root: BTreeMap<String, Mapper>,
    date_detection: bool,
    dynamic_templates: Vec<DynamicTemplate>,
}

impl IndexMapping {
    /// From a component template body (`{"template": {"mappings": ...}}`).
    pub fn from_component_template(template: &Value) -> IndexMapping {
        let mappings = &template["template"]["mappings"];
        assert_ne!(
            mappings["dynamic"],
            Value::from("strict"),
            "the model assumes dynamic mapping"
        );
        let mut dynamic_templates = Vec::new();
        for entry in mappings["dynamic_templates"]
            .as_array()
            .into_iter()
            .flatten()
        {
            for (name, t) in entry.as_object().unwrap() {
                dynamic_templates.push(DynamicTemplate {
                    name: name.clone(),
                    path_match: t["path_match"].as_str().map(str::to_owned),
                    field_match: t["match"].as_str().map(str::to_owned),
                    match_mapping_type: t["match_mapping_type"].as_str().map(str::to_owned),
                    mapping: t["mapping"].clone(),
                });
            }
        }
        IndexMapping {
            root: parse_properties(&mappings["properties"]),
            date_detection: mappings["date_detection"].as_bool().unwrap_or(true),
            dynamic_templates,
        }
    }

    /// Indexes one document: `Err(reason)` when Elasticsearch would refuse it
    /// (and then the mapping is left as it was).
    pub fn index(&mut self, document: &Value) -> Result<(), String> {
        let Value::Object(fields) = document else {
            return Err("a document must be an object".into());
        };
        for key in fields.keys() {
            if METADATA_FIELDS.contains(&key.as_str()) {
                return Err(format!(
                    "Field [{key}] is a metadata field and cannot be added inside a document"
                ));
            }
        }
        // A document that maps nothing new is checked in place (most are);
        // one that does works on a copy, kept only if it is indexed.
        if !adds_fields(&self.root, fields) {
            let mut root = std::mem::take(&mut self.root);
            let result = self.walk_object(&mut root, "", fields, 1);
            self.root = root;
            return result;
        }
        let mut root = self.root.clone();
        self.walk_object(&mut root, "", fields, 1)?;
        let count = count_fields(&root);
        if count > TOTAL_FIELDS_LIMIT {
            return Err(format!(
                "Limit of total fields [{TOTAL_FIELDS_LIMIT}] has been exceeded ({count})"
            ));
        }
        self.root = root;
        Ok(())
    }

    /// Fields mapped by Elasticsearch's default rules: in no template
    /// mapping and matched by no dynamic template.
    pub fn untemplated_fields(&self) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        fn walk(node: &BTreeMap<String, Mapper>, prefix: &str, out: &mut BTreeSet<String>) {
            for (name, mapper) in node {
                let path = join(prefix, name);
                match mapper {
                    Mapper::Object(children) => walk(children, &path, out),
                    Mapper::Leaf(leaf) if leaf.untemplated => {
                        out.insert(format!("{path} ({})", leaf.ty));
                    }
                    Mapper::Leaf(_) => {}
                }
            }
        }
        walk(&self.root, "", &mut out);
        out
    }

    /// The mapped type of `path`, if any (`object` for an object).
    pub fn type_of(&self, path: &str) -> Option<String> {
        let mut node = &self.root;
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            match node.get(part)? {
                Mapper::Object(children) if parts.peek().is_some() => node = children,
                Mapper::Object(_) => return Some("object".into()),
                Mapper::Leaf(leaf) if parts.peek().is_none() => return Some(leaf.ty.clone()),
                Mapper::Leaf(_) => return None,
            }
        }
        None
    }

    fn walk_object(
        &self,
        node: &mut BTreeMap<String, Mapper>,
        prefix: &str,
        fields: &Map<String, Value>,
        depth: usize,
    ) -> Result<(), String> {
        if depth > DEPTH_LIMIT {
            return Err(format!(
                "Limit of mapping depth [{DEPTH_LIMIT}] has been exceeded at [{prefix}]"
            ));
        }
        for (key, value) in fields {
            check_name(prefix, key)?;
            // A dotted name is a path of objects (`subobjects: true`).
            let parts: Vec<&str> = key.split('.').collect();
            self.walk_path(node, prefix, &parts, value, depth)?;
        }
        Ok(())
    }

    fn walk_path(
        &self,
        node: &mut BTreeMap<String, Mapper>,
        prefix: &str,
        parts: &[&str],
        value: &Value,
        depth: usize,
    ) -> Result<(), String> {
        let name = parts[0];
        let path = join(prefix, name);
        if parts.len() > 1 {
            if !node.contains_key(name) {
                node.insert(name.to_owned(), Mapper::Object(BTreeMap::new()));
            }
            return match node.get_mut(name).unwrap() {
                Mapper::Object(children) => {
                    self.walk_path(children, &path, &parts[1..], value, depth + 1)
                }
                Mapper::Leaf(leaf) if leaf.ty == "flattened" => {
                    let mut inner = Map::new();
                    inner.insert(parts[1..].join("."), value.clone());
                    check_flattened(&path, leaf, &Value::Object(inner))
                }
                Mapper::Leaf(leaf) => Err(format!(
                    "Could not dynamically add mapping for field [{path}.{}]: [{path}] is of type [{}], not an object",
                    parts[1..].join("."),
                    leaf.ty
                )),
            };
        }
        self.walk_value(node, &path, name, value, depth)
    }

    fn walk_value(
        &self,
        node: &mut BTreeMap<String, Mapper>,
        path: &str,
        name: &str,
        value: &Value,
        depth: usize,
    ) -> Result<(), String> {
        match value {
            Value::Null => Ok(()),
            Value::Array(items) => {
                for item in items {
                    self.walk_value(node, path, name, item, depth)?;
                }
                Ok(())
            }
            _ => {
                if !node.contains_key(name) {
                    let Some(mapper) = self.dynamic_mapper(path, name, value) else {
                        return Ok(());
                    };
                    node.insert(name.to_owned(), mapper);
                }
                match (node.get_mut(name).unwrap(), value) {
                    (Mapper::Object(children), Value::Object(fields)) => {
                        self.walk_object(children, path, fields, depth + 1)
                    }
                    (Mapper::Object(_), scalar) => Err(format!(
                        "object mapping for [{path}] tried to parse field [{path}] as object, but found a concrete value ({scalar})"
                    )),
                    (Mapper::Leaf(leaf), value) => check_leaf(path, leaf, value),
                }
            }
        }
    }

    /// What Elasticsearch adds for an unknown field: `None` when nothing.
    fn dynamic_mapper(&self, path: &str, name: &str, value: &Value) -> Option<Mapper> {
        let (json_type, default) = match value {
            Value::Null | Value::Array(_) => return None,
            Value::Object(_) => ("object", None),
            Value::Bool(_) => ("boolean", Some("boolean")),
            Value::Number(n) if n.is_f64() => ("double", Some("float")),
            Value::Number(_) => ("long", Some("long")),
            Value::String(s) if self.date_detection && detects_as_date(s) => ("date", Some("date")),
            Value::String(_) => ("string", Some("text")),
        };
        for t in &self.dynamic_templates {
            let type_matches = match t.match_mapping_type.as_deref() {
                None | Some("*") => true,
                Some(wanted) => wanted == json_type,
            };
            let path_matches = t.path_match.as_deref().is_none_or(|p| glob(p, path));
            let name_matches = t.field_match.as_deref().is_none_or(|p| glob(p, name));
            if type_matches && path_matches && name_matches {
                let _ = &t.name;
                return Some(match parse_mapper(&t.mapping) {
                    Mapper::Leaf(mut leaf) if leaf.ty == "{dynamic_type}" => {
                        leaf.ty = default.unwrap_or("object").to_owned();
                        Mapper::Leaf(leaf)
                    }
                    m => m,
                });
            }
        }
        Some(match default {
            None => Mapper::Object(BTreeMap::new()),
            Some(ty) => Mapper::Leaf(Leaf {
                ty: ty.to_owned(),
                ignore_above: None,
                depth_limit: 20,
                // `text` gets a `.keyword` (ignore_above 256).
                multi_fields: usize::from(ty == "text"),
                untemplated: true,
            }),
        })
    }
}

/// Whether indexing `fields` would add a mapping (a name not mapped yet,
/// outside flattened fields).
fn adds_fields(node: &BTreeMap<String, Mapper>, fields: &Map<String, Value>) -> bool {
    fn value_adds(mapper: Option<&Mapper>, rest: &[&str], value: &Value) -> bool {
        let Some(mapper) = mapper else {
            return !value.is_null()
                && !matches!(value, Value::Array(a) if a.iter().all(Value::is_null));
        };
        match (mapper, rest) {
            (Mapper::Leaf(_), _) => false,
            (Mapper::Object(children), [next, more @ ..]) => {
                value_adds(children.get(*next), more, value)
            }
            (Mapper::Object(children), []) => match value {
                Value::Object(fields) => adds_fields(children, fields),
                Value::Array(items) => items.iter().any(|item| value_adds(Some(mapper), &[], item)),
                _ => false,
            },
        }
    }
    fields.iter().any(|(key, value)| {
        let parts: Vec<&str> = key.split('.').collect();
        value_adds(node.get(parts[0]), &parts[1..], value)
    })
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

fn parse_properties(properties: &Value) -> BTreeMap<String, Mapper> {
    properties
        .as_object()
        .map(|p| {
            p.iter()
                .map(|(name, m)| (name.clone(), parse_mapper(m)))
                .collect()
        })
        .unwrap_or_default()
}

fn parse_mapper(mapping: &Value) -> Mapper {
    match mapping["type"].as_str() {
        None | Some("object") => Mapper::Object(parse_properties(&mapping["properties"])),
        Some(ty) => Mapper::Leaf(Leaf {
            ty: ty.to_owned(),
            ignore_above: mapping["ignore_above"].as_u64().map(|n| n as usize),
            depth_limit: mapping["depth_limit"].as_u64().unwrap_or(20) as usize,
            multi_fields: mapping["fields"].as_object().map_or(0, Map::len),
            untemplated: false,
        }),
    }
}

fn count_fields(node: &BTreeMap<String, Mapper>) -> usize {
    node.values()
        .map(|m| match m {
            Mapper::Object(children) => 1 + count_fields(children),
            Mapper::Leaf(leaf) => 1 + leaf.multi_fields,
        })
        .sum()
}

/// `*` matches any run of characters (dynamic templates' simple patterns).
fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|i| rest.is_char_boundary(*i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

fn check_name(prefix: &str, key: &str) -> Result<(), String> {
    let full = join(prefix, key);
    if key.is_empty() {
        return Err(format!(
            "field name cannot be an empty string (under [{prefix}])"
        ));
    }
    if key.trim().is_empty() {
        return Err(format!(
            "field name cannot contain only whitespace: [{full}]"
        ));
    }
    if key.starts_with('.') || key.ends_with('.') || key.contains("..") {
        return Err(format!(
            "field name starting or ending with a [.] (or empty between dots) makes object resolution ambiguous: [{full}]"
        ));
    }
    if key.split('.').any(|part| part.trim().is_empty()) {
        return Err(format!(
            "field name cannot contain only whitespace: [{full}]"
        ));
    }
    Ok(())
}

/// Date detection's own pre-check, then the default dynamic date formats.
fn detects_as_date(text: &str) -> bool {
    let count = |c: char| text.matches(c).count();
    (count(':') > 1 || count('-') > 1 || count('/') > 1)
        && (is_strict_date_optional_time(text) || is_slash_date(text))
}

/// `yyyy/MM/dd HH:mm:ss Z||yyyy/MM/dd Z` of `dynamic_date_formats`, loosely.
fn is_slash_date(text: &str) -> bool {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\d{4}/\d{2}/\d{2}( \d{2}:\d{2}:\d{2})?( [+-]\d{4}|Z)?$").unwrap()
    });
    RE.is_match(text)
}

/// Elasticsearch's `strict_date_optional_time`: `yyyy[-MM[-dd['T'HH[:mm[:ss[.fraction]]][zone]]]]`.
fn is_strict_date_optional_time(text: &str) -> bool {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(
        r"^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2})(?::(\d{2})(?::(\d{2})(?:[.,]\d{1,9})?)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?)?)?$",
    )
    .unwrap()
    });
    let Some(caps) = RE.captures(text) else {
        return false;
    };
    let within = |i: usize, lo: u32, hi: u32| {
        caps.get(i).is_none_or(|m| {
            m.as_str()
                .parse::<u32>()
                .is_ok_and(|v| (lo..=hi).contains(&v))
        })
    };
    within(2, 1, 12) && within(3, 1, 31) && within(4, 0, 23) && within(5, 0, 59) && within(6, 0, 59)
}

fn number_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::String(s) => Some(s.trim().to_owned()),
        _ => None,
    }
}

fn check_leaf(path: &str, leaf: &Leaf, value: &Value) -> Result<(), String> {
    let ty = leaf.ty.as_str();
    let refuse = |why: &str| {
        Err(format!(
            "failed to parse field [{path}] of type [{ty}]: {why} ({})",
            preview(value)
        ))
    };
    if let Value::Object(_) = value {
        return match ty {
            "flattened" => check_flattened(path, leaf, value),
            "geo_point" => check_geo_point(value).or_else(|why| refuse(&why)),
            _ => refuse("an object where a value is mapped"),
        };
    }
    match ty {
        "keyword" => {
            let text = scalar_text(value);
            let over = leaf
                .ignore_above
                .is_some_and(|limit| text.encode_utf16().count() > limit);
            if !over && text.len() > MAX_TERM_BYTES {
                return refuse("an immense term (keyword without ignore_above)");
            }
            Ok(())
        }
        "text" | "match_only_text" | "wildcard" => Ok(()),
        "long" | "integer" | "short" | "byte" | "unsigned_long" => {
            if let Value::String(s) = value {
                if s.is_empty() {
                    return Ok(());
                }
            }
            let Some(text) = number_text(value) else {
                return refuse("not a number");
            };
            let (lo, hi) = match ty {
                "integer" => (i32::MIN as f64, i32::MAX as f64),
                "short" => (i16::MIN as f64, i16::MAX as f64),
                "byte" => (i8::MIN as f64, i8::MAX as f64),
                "unsigned_long" => (0.0, u64::MAX as f64),
                _ => (i64::MIN as f64, i64::MAX as f64),
            };
            if ty == "long" {
                if let Ok(i) = text.parse::<i128>() {
                    return if i64::try_from(i).is_ok() {
                        Ok(())
                    } else {
                        refuse("out of range for a long")
                    };
                }
            }
            match text.parse::<f64>() {
                Ok(f) if f.is_finite() && f >= lo && f <= hi => Ok(()),
                Ok(_) => refuse("out of range"),
                Err(_) => refuse("not a number"),
            }
        }
        "double" | "float" | "half_float" | "scaled_float" => {
            if let Value::String(s) = value {
                if s.is_empty() {
                    return Ok(());
                }
            }
            let Some(text) = number_text(value) else {
                return refuse("not a number");
            };
            match text.parse::<f64>() {
                Ok(f) if !f.is_finite() => refuse("supports only finite values"),
                Ok(f) if ty == "float" && (f as f32).is_infinite() => {
                    refuse("out of range for a float")
                }
                Ok(_) => Ok(()),
                Err(_) => refuse("not a number"),
            }
        }
        "boolean" => match value {
            Value::Bool(_) => Ok(()),
            Value::String(s) if s.is_empty() || s == "true" || s == "false" => Ok(()),
            _ => refuse("only true or false"),
        },
        "date" => match value {
            Value::Number(n) if n.as_f64().is_some_and(f64::is_finite) => Ok(()),
            Value::String(s)
                if is_strict_date_optional_time(s)
                    || (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())) =>
            {
                Ok(())
            }
            _ => refuse("not strict_date_optional_time||epoch_millis"),
        },
        "ip" => match value {
            Value::String(s) if s.parse::<std::net::IpAddr>().is_ok() => Ok(()),
            _ => refuse("not an IP string literal"),
        },
        "geo_point" => match value {
            Value::String(s) => {
                let parts: Vec<&str> = s.split(',').map(str::trim).collect();
                let ok = parts.len() == 2
                    && parts[0].parse::<f64>().is_ok_and(|lat| lat.abs() <= 90.0)
                    && parts[1].parse::<f64>().is_ok_and(|lon| lon.abs() <= 180.0);
                if ok {
                    Ok(())
                } else {
                    refuse("not a point")
                }
            }
            _ => refuse("not a point"),
        },
        "flattened" => refuse("a flattened field takes an object, not a value"),
        other => panic!("the model does not know type [{other}] ({path})"),
    }
}

fn scalar_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn preview(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 80 {
        let mut end = 80;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &text[..end])
    } else {
        text
    }
}

fn check_geo_point(value: &Value) -> Result<(), String> {
    let lat = value
        .get("lat")
        .and_then(|v| number_text(v)?.parse::<f64>().ok());
    let lon = value
        .get("lon")
        .and_then(|v| number_text(v)?.parse::<f64>().ok());
    match (lat, lon) {
        (Some(lat), Some(lon)) if lat.abs() <= 90.0 && lon.abs() <= 180.0 => Ok(()),
        _ => Err("a geo_point needs lat in [-90, 90] and lon in [-180, 180]".into()),
    }
}

/// A flattened field's value: an object (arrays of objects too), walked as
/// `FlattenedFieldParser` does.
fn check_flattened(path: &str, leaf: &Leaf, value: &Value) -> Result<(), String> {
    fn walk(
        path: &str,
        leaf: &Leaf,
        keys: &mut Vec<String>,
        value: &Value,
        name: &str,
    ) -> Result<(), String> {
        match value {
            Value::Null => Ok(()),
            Value::Array(items) => items
                .iter()
                .try_for_each(|item| walk(path, leaf, keys, item, name)),
            Value::Object(fields) => {
                if !name.is_empty() {
                    keys.push(name.to_owned());
                }
                if keys.len() + 1 > leaf.depth_limit {
                    return Err(format!(
                        "The provided [flattened] field [{path}] exceeds the maximum depth limit of [{}]",
                        leaf.depth_limit
                    ));
                }
                for (key, value) in fields {
                    walk(path, leaf, keys, value, key)?;
                }
                if !name.is_empty() {
                    keys.pop();
                }
                Ok(())
            }
            scalar => {
                let mut key = keys.join(".");
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
                if key.contains('\0') {
                    return Err(format!(
                        "Keys in [flattened] fields cannot contain the reserved character \\0 ([{path}])"
                    ));
                }
                let text = scalar_text(scalar);
                if leaf
                    .ignore_above
                    .is_some_and(|limit| text.encode_utf16().count() > limit)
                {
                    return Ok(());
                }
                if key.len() + 1 + text.len() > MAX_TERM_BYTES {
                    return Err(format!(
                        "Flattened field [{path}] contains one immense field whose keyed encoding is longer than the allowed max length of {MAX_TERM_BYTES} bytes (key {} bytes, value {} bytes)",
                        key.len(),
                        text.len()
                    ));
                }
                Ok(())
            }
        }
    }
    match value {
        Value::Object(_) => walk(path, leaf, &mut Vec::new(), value, ""),
        Value::Array(items) => items
            .iter()
            .try_for_each(|item| check_flattened(path, leaf, item)),
        Value::Null => Ok(()),
        scalar => Err(format!(
            "failed to parse field [{path}] of type [flattened]: expecting an object, found {}",
            preview(scalar)
        )),
    }
}

/// The documents of a `_bulk` body: `(index, document)`.
pub fn parse_bulk(body: &str) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let mut lines = body.lines();
    while let Some(action) = lines.next() {
        let action: Value = serde_json::from_str(action).expect("action line");
        let (_, target) = action.as_object().unwrap().iter().next().unwrap();
        let index = target["_index"].as_str().unwrap().to_owned();
        let source = lines.next().expect("document line");
        out.push((
            index,
            serde_json::from_str(source).expect("document is JSON"),
        ));
    }
    out
}

/// Indexes documents, one mapping per index (a new one starts as `fresh`):
/// the reasons of the refused ones, as `origin #n (index): reason`.
pub fn index_documents(
    fresh: &IndexMapping,
    indices: &mut BTreeMap<String, IndexMapping>,
    documents: &[(String, Value)],
    origin: &str,
) -> Vec<String> {
    let mut refused = Vec::new();
    for (n, (index, document)) in documents.iter().enumerate() {
        let mapping = indices
            .entry(index.clone())
            .or_insert_with(|| fresh.clone());
        if let Err(reason) = mapping.index(document) {
            refused.push(format!("{origin} #{n} ({index}): {reason}"));
        }
    }
    refused
}

#[cfg(test)]
mod model_tests {
    use super::*;
    use serde_json::json;

    fn mapping() -> IndexMapping {
        IndexMapping::from_component_template(&json!({"template": {"mappings": {
        "dynamic_templates": [{"s": {"match_mapping_type": "string",
            "mapping": {"type": "keyword", "ignore_above": 1024}}}],
        "properties": {
            "n": {"type": "long"}, "d": {"type": "double"}, "t": {"type": "date"},
            "ip": {"type": "ip"}, "o": {"properties": {"k": {"type": "keyword"}}},
            "f": {"type": "flattened", "depth_limit": 3}, "b": {"type": "boolean"}
        }}}}))
    }

    #[test]
    fn the_model_refuses_what_elasticsearch_refuses() {
        let mut m = mapping();
        for good in [
            json!({"n": 1, "d": 1.5, "t": "2025-01-02T03:04:05.678Z", "ip": "::1"}),
            json!({"n": 1.9, "d": "2", "t": 1_700_000_000_000_i64, "n2": [1, null]}),
            json!({"o": {"k": 5}, "o.k": "x", "f": {"a": {"b": {"c": 1}}}, "b": "false"}),
            json!({"f": [{"a": 1}], "n": ""}),
            json!({"dyn": "2025-01-02"}),
        ] {
            m.index(&good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for bad in [
            json!({"n": "x"}),
            json!({"n": 9_223_372_036_854_775_808_u64}),
            json!({"d": "NaN"}),
            json!({"t": ""}),
            json!({"t": "yesterday"}),
            json!({"ip": ""}),
            json!({"o": "scalar"}),
            json!({"n": {"x": 1}}),
            json!({"f": "scalar"}),
            json!({"f": ["scalar"]}),
            json!({"f": {"a": {"b": {"c": {"d": 1}}}}}),
            json!({"f": {"a\u{0}": 1}}),
            json!({"": 1}),
            json!({"a.": 1}),
            json!({" ": 1}),
            json!({"_id": "x"}),
            json!({"b": 1}),
            json!({"n2": "word"}),
            json!({"dyn": "not a date"}),
            json!({"n.x": 1}),
        ] {
            assert!(m.index(&bad).is_err(), "{bad} was indexed");
        }
        assert_eq!(m.type_of("n2").as_deref(), Some("long"));
        assert_eq!(m.type_of("dyn").as_deref(), Some("date"));
        assert!(m.untemplated_fields().contains("n2 (long)"));
    }
}
