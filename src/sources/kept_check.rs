//! A check for the decoder tests that nothing a browser sent is lost
//! silently: every value of a request (each string, number and boolean
//! leaf) must turn up somewhere in the documents made of it, as a field,
//! under `rum.extra`, or inside a value made from it (a URL's parts, a
//! stack written as text). Paths a decoder drops on purpose (a duplicate,
//! a value it counts and drops) are named by the test, each with its
//! reason. The check looks at values only, not where they land: it finds
//! a subtree dropped whole, which field-by-field assertions miss for the
//! kinds and shapes a fixture does not happen to have.

use serde_json::Value;

/// Everything the documents hold, to look values up in.
#[derive(Default)]
struct Held {
    strings: Vec<String>,
    /// Integers apart from other numbers: probes are integers 1 apart
    /// (`7_000_000_000 + n`), which a relative tolerance would let stand
    /// for each other.
    integers: Vec<i128>,
    doubles: Vec<f64>,
    bools: [bool; 2],
}

impl Held {
    fn collect(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.strings.push(s.clone()),
            Value::Number(n) => match exact_integer(n) {
                Some(i) => self.integers.push(i),
                None => self.doubles.extend(n.as_f64()),
            },
            Value::Bool(b) => self.bools[usize::from(*b)] = true,
            Value::Array(items) => items.iter().for_each(|v| self.collect(v)),
            Value::Object(map) => map.values().for_each(|v| self.collect(v)),
            Value::Null => {}
        }
    }

    fn holds_text(&self, text: &str) -> bool {
        self.strings.iter().any(|held| held.contains(text))
    }

    /// An integer only as itself (a decoder writing it as a double, `12.0`,
    /// keeps it too); another number within a relative 1e-9, as a decoder's
    /// arithmetic may leave it.
    fn holds_number(&self, n: &serde_json::Number) -> bool {
        match exact_integer(n) {
            Some(i) => self.integers.contains(&i),
            None => n.as_f64().is_some_and(|n| {
                self.doubles
                    .iter()
                    .any(|held| (held - n).abs() <= 1e-9 * n.abs().max(1.0))
            }),
        }
    }

    fn holds(&self, leaf: &Value) -> bool {
        match leaf {
            Value::String(s) if s.is_empty() => true,
            // Or in parts (an http span's `METHOD url` name is its method
            // and URL fields).
            // Or as the number it spells (Faro's attributes are strings).
            Value::String(s) => {
                self.holds_text(s)
                    || (s.contains(' ') && s.split(' ').all(|p| self.holds_text(p)))
                    || s.parse::<serde_json::Number>()
                        .is_ok_and(|n| self.holds_number(&n))
            }
            Value::Number(n) => self.holds_number(n) || self.holds_text(&leaf.to_string()),
            Value::Bool(b) => self.bools[usize::from(*b)],
            Value::Null | Value::Array(_) | Value::Object(_) => true,
        }
    }
}

/// `n` as an integer when it is one: an integer, or a double with no
/// fraction that is exact (below 2^53).
fn exact_integer(n: &serde_json::Number) -> Option<i128> {
    if let Some(i) = n.as_i64() {
        return Some(i.into());
    }
    if let Some(u) = n.as_u64() {
        return Some(u.into());
    }
    let f = n.as_f64()?;
    (f.fract() == 0.0 && f.abs() < 2f64.powi(53)).then_some(f as i128)
}

/// `input`'s leaves whose value no document holds, as `path = value`
/// (`a.b.*.c`, `*` for any array index), but for those `dropped` names by
/// their path, or by their path and value.
pub(crate) fn lost_values(input: &Value, documents: &[Value], dropped: &[&str]) -> Vec<String> {
    let mut held = Held::default();
    documents.iter().for_each(|doc| held.collect(doc));
    let mut lost = Vec::new();
    walk(input, &mut String::new(), &mut |path, leaf| {
        if held.holds(leaf) || dropped.contains(&path) {
            return;
        }
        let line = format!("{path} = {leaf}");
        if !dropped.contains(&line.as_str()) {
            lost.push(line);
        }
    });
    lost
}

/// `value` with a key no decoder knows added to every object below
/// `depth` levels of objects (a line object of NDJSON has room for its one
/// key only), each with a value of its own: `lost_values` then finds an
/// object whose other keys are dropped.
/// Asserts that no value of `input` is lost (`lost_values`), naming the
/// body and each value lost, and that it lands in fields the templates map
/// (`unmapped_fields`).
pub(crate) fn assert_kept(name: &str, input: &Value, documents: &[Value], dropped: &[&str]) {
    let lost = lost_values(input, documents, dropped);
    assert!(lost.is_empty(), "{name}: {lost:#?}");
    let unmapped = unmapped_fields(documents);
    assert!(unmapped.is_empty(), "{name}: {unmapped:#?}");
}

/// The fields of `documents` that the index would map from the document
/// (dynamically): neither a field of `schema` nor inside a `flattened` one
/// nor one `labels.<name>` holding a scalar (whose names `LabelNames`
/// bounds). A key a browser chose that lands there is a new field of the
/// index, and enough of them take it past the engine's field limit, after
/// which every document bringing a new field is refused. The probes of
/// `with_probes` put such a key in every object a body has.
pub(crate) fn unmapped_fields(documents: &[Value]) -> Vec<String> {
    use crate::schema::{self, FieldType};
    fn visit(path: &str, value: &Value, out: &mut Vec<String>) {
        let field = schema::all_fields().find(|f| f.path == path);
        match (field.map(|f| f.ty), value) {
            (Some(FieldType::Flattened | FieldType::GeoPoint), _) => {}
            (_, Value::Object(map)) => {
                for (key, value) in map {
                    let inner = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    visit(&inner, value, out);
                }
            }
            (Some(_), _) => {}
            (None, Value::Array(_)) => out.push(path.to_owned()),
            (None, _) => {
                let label = path.strip_prefix("labels.");
                if label.is_none_or(|name| name.contains('.')) {
                    out.push(path.to_owned());
                }
            }
        }
    }
    let mut out = Vec::new();
    for document in documents.iter().filter(|d| d.is_object()) {
        visit("", document, &mut out);
    }
    out.sort();
    out.dedup();
    out
}

/// A body as sent, and with its probes (`with_probes` below `depth`).
pub(crate) fn as_sent_and_probed(sent: Value, depth: usize) -> [Value; 2] {
    let probed = with_probes(&sent, depth);
    [sent, probed]
}

const PROBE: u64 = 7_000_000_000;

pub(crate) fn with_probes(value: &Value, depth: usize) -> Value {
    fn add(value: &Value, depth: usize, next: &mut u64) -> Value {
        match value {
            Value::Object(map) => {
                let mut out: serde_json::Map<String, Value> = map
                    .iter()
                    .map(|(k, v)| (k.clone(), add(v, depth.saturating_sub(1), next)))
                    .collect();
                if depth == 0 {
                    *next += 1;
                    // A number, which every object takes (Faro's
                    // measurement `values` take nothing else), and one no
                    // fixture holds.
                    out.insert("zz_probe".into(), Value::from(PROBE + *next));
                }
                Value::Object(out)
            }
            Value::Array(items) => {
                Value::Array(items.iter().map(|v| add(v, depth, next)).collect())
            }
            leaf => leaf.clone(),
        }
    }
    add(value, depth, &mut 0)
}

fn walk(value: &Value, path: &mut String, leaf: &mut impl FnMut(&str, &Value)) {
    let mut nested = |path: &mut String, part: &str, value: &Value| {
        let len = path.len();
        if !path.is_empty() {
            path.push('.');
        }
        path.push_str(part);
        walk(value, path, leaf);
        path.truncate(len);
    };
    match value {
        Value::Object(map) => map.iter().for_each(|(k, v)| nested(path, k, v)),
        Value::Array(items) => items.iter().for_each(|v| nested(path, "*", v)),
        _ => leaf(path, value),
    }
}

mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn probes_every_object_below_the_depth_each_with_its_own_value() {
        let line = json!({"x": {"a": [{"b": 1}, {"c": {}}]}});
        assert_eq!(
            with_probes(&line, 1),
            json!({"x": {"a": [
                {"b": 1, "zz_probe": 7_000_000_001u64},
                {"c": {"zz_probe": 7_000_000_002u64}, "zz_probe": 7_000_000_003u64}
            ], "zz_probe": 7_000_000_004u64}})
        );
    }

    #[test]
    fn a_field_outside_the_schema_is_named() {
        let docs = [
            json!({"rum": {"type": "action", "extra": {"any": {"k": 1}}, "zz_probe": 1},
                   "labels": {"team": "web", "a": {"b": "c"}},
                   "client": {"geo": {"location": {"lat": 1, "lon": 2}}},
                   "error": {"zz_probe": [1]}}),
            json!("2026-01-01T00:00:00.000Z"),
        ];
        assert_eq!(
            unmapped_fields(&docs),
            ["error.zz_probe", "labels.a.b", "rum.zz_probe"]
        );
    }

    #[test]
    fn integers_are_found_only_as_themselves() {
        // Probes differ by 1: each must be found as itself, not a neighbour.
        let input = json!({"a": 7_000_000_001u64, "b": "7000000002", "c": 12, "d": 0.25});
        let docs = [json!({"x": 7_000_000_003u64, "y": 7_000_000_000.0, "c": 12.0, "d": 0.25})];
        assert_eq!(
            lost_values(&input, &docs, &[]),
            ["a = 7000000001", "b = \"7000000002\""]
        );
    }

    #[test]
    fn finds_what_no_document_holds_and_only_that() {
        let input = json!({
            "url": "https://a.example/x",
            "name": "GET https://a.example/x",
            "n": 12.5,
            "line": 42,
            "size": "12.5",
            "ok": false,
            "gone": {"deep": ["lost text", 99]},
            "dup": "dropped on purpose",
            "kind": ["implied", "kept"],
            "empty": "",
            "none": null
        });
        let docs = [
            json!({"url": {"full": "https://a.example/x?q=1"}, "v": 12.5, "ok": false, "method": "GET"}),
            json!({"stack": "at f (app.js:42:7)"}),
        ];
        assert_eq!(
            lost_values(&input, &docs, &["dup", "kind.* = \"implied\""]),
            [
                "gone.deep.* = \"lost text\"",
                "gone.deep.* = 99",
                "kind.* = \"kept\""
            ]
        );
    }
}
