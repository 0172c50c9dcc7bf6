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
    numbers: Vec<f64>,
    bools: [bool; 2],
}

impl Held {
    fn collect(&mut self, value: &Value) {
        match value {
            Value::String(s) => self.strings.push(s.clone()),
            Value::Number(n) => self.numbers.extend(n.as_f64()),
            Value::Bool(b) => self.bools[usize::from(*b)] = true,
            Value::Array(items) => items.iter().for_each(|v| self.collect(v)),
            Value::Object(map) => map.values().for_each(|v| self.collect(v)),
            Value::Null => {}
        }
    }

    fn holds_text(&self, text: &str) -> bool {
        self.strings.iter().any(|held| held.contains(text))
    }

    fn holds_number(&self, n: f64) -> bool {
        self.numbers
            .iter()
            .any(|held| (held - n).abs() <= 1e-9 * n.abs().max(1.0))
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
                    || s.parse::<f64>().is_ok_and(|n| self.holds_number(n))
            }
            Value::Number(n) => {
                self.holds_number(n.as_f64().unwrap_or(f64::NAN))
                    || self.holds_text(&leaf.to_string())
            }
            Value::Bool(b) => self.bools[usize::from(*b)],
            Value::Null | Value::Array(_) | Value::Object(_) => true,
        }
    }
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
/// body and each value lost.
pub(crate) fn assert_kept(name: &str, input: &Value, documents: &[Value], dropped: &[&str]) {
    let lost = lost_values(input, documents, dropped);
    assert!(lost.is_empty(), "{name}: {lost:#?}");
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
