//! Beacon bodies as clients write them: `type` first in every event.
//!
//! `serde_json::Value` keeps an object's keys sorted (the crate is built
//! without `preserve_order`), so `json!(..).to_string()` writes `ts` before
//! `type` and every event of a beacon built that way takes the decoder's
//! general reading, not the path of an entry whose `type` comes first (as
//! every client sends it, `bench/beacon.lua` and `testdata/beacons/` too).
//! Shared by the criterion benches that decode beacons.

use serde_json::Value;

/// `value` as JSON text, each object's `type` key (when it has one) first,
/// the others after it in the map's order.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = String::new();
    write(value, &mut out);
    assert!(
        serde_json::from_str::<Value>(&out).ok().as_ref() == Some(value),
        "type_first: the text reads back as the value"
    );
    out.into_bytes()
}

fn write(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            out.push('{');
            let keys = map
                .get_key_value("type")
                .into_iter()
                .chain(map.iter().filter(|(key, _)| *key != "type"));
            for (i, (key, item)) in keys.enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write(item, out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Whether every event of the beacon `body` has `type` as its first key,
/// read from the text as sent (a check on the bodies the benches time).
pub fn events_type_first(body: &[u8]) -> bool {
    let text = std::str::from_utf8(body).expect("utf-8 body");
    let events = &text[text.find("\"events\":[").expect("an events array") + 10..];
    // Each event opens with `{` at depth 1 of the array; compare what follows.
    let (mut depth, mut in_string, mut escaped) = (1usize, false, false);
    let mut all = true;
    for (i, b) in events.bytes().enumerate() {
        match b {
            _ if escaped => escaped = false,
            b'\\' if in_string => escaped = true,
            b'"' => in_string = !in_string,
            _ if in_string => {}
            b'{' | b'[' => {
                if depth == 1 && b == b'{' {
                    all &= events[i + 1..].starts_with("\"type\":");
                }
                depth += 1;
            }
            b'}' | b']' => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    all
}
