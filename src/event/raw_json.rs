//! A slot value kept as JSON text ([`RawJson`]): what a decoder keeps of the
//! fields it has no slot for (`rum.extra`). Most documents only carry it,
//! so it is written out as it is and parsed only when a condition or a
//! transform reads inside it.

use std::sync::OnceLock;

use serde_json::{Map, Number, Value};

use super::context::value_bytes;

/// JSON text as `serde_json` writes a value (compact, each object's keys
/// in order and each once), so a document is the same byte for byte
/// whichever form its slot holds; and the value, once asked for.
pub struct RawJson {
    text: Box<str>,
    parsed: OnceLock<Value>,
}

impl RawJson {
    /// `text` must be `serde_json`'s compact writing of a value: the
    /// decoders make it with `json_tree`'s writer, whose tests hold it to
    /// that.
    pub fn new(text: String) -> Self {
        RawJson {
            text: text.into_boxed_str(),
            parsed: OnceLock::new(),
        }
    }

    /// A value kept with its text written once: for values many documents
    /// repeat (an enrichment record its cache hands out), so each
    /// document copies the text instead of serializing the value again.
    pub fn of_value(value: Value) -> Self {
        let text = serde_json::to_string(&value).unwrap_or_else(|_| "null".to_owned());
        RawJson {
            text: text.into_boxed_str(),
            parsed: OnceLock::from(value),
        }
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// The value, read on first use.
    pub fn value(&self) -> &Value {
        self.parsed.get_or_init(|| {
            let mut at = 0;
            read(self.text.as_bytes(), &self.text, &mut at).unwrap_or(Value::Null)
        })
    }

    /// Heap bytes held: the text, and the value once something read it.
    pub fn byte_size(&self) -> usize {
        self.text.len() + 16 + self.parsed.get().map_or(0, value_bytes)
    }
}

impl std::fmt::Debug for RawJson {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawJson({})", self.text)
    }
}

/// Reads the value at `at` of text `serde_json` wrote. Not `serde_json`'s
/// reader: without its `float_roundtrip` feature it may read the shortest
/// digits it printed for an f64 as the f64 next to it; `str::parse` reads
/// them back exactly, so a value read here is the value that was written.
fn read(bytes: &[u8], text: &str, at: &mut usize) -> Option<Value> {
    let start = *at;
    match *bytes.get(start)? {
        b'n' => {
            *at += 4;
            Some(Value::Null)
        }
        b't' => {
            *at += 4;
            Some(Value::Bool(true))
        }
        b'f' => {
            *at += 5;
            Some(Value::Bool(false))
        }
        b'"' => {
            let mut end = start + 1;
            let mut escaped = false;
            loop {
                match *bytes.get(end)? {
                    b'"' => break,
                    b'\\' => {
                        escaped = true;
                        end += 2;
                    }
                    _ => end += 1,
                }
            }
            *at = end + 1;
            if escaped {
                serde_json::from_str(&text[start..=end]).ok()
            } else {
                Some(Value::String(text[start + 1..end].to_owned()))
            }
        }
        b'[' => {
            *at += 1;
            let mut items = Vec::new();
            if bytes.get(*at) == Some(&b']') {
                *at += 1;
                return Some(Value::Array(items));
            }
            loop {
                items.push(read(bytes, text, at)?);
                *at += 1;
                match bytes.get(*at - 1)? {
                    b',' => {}
                    b']' => return Some(Value::Array(items)),
                    _ => return None,
                }
            }
        }
        b'{' => {
            *at += 1;
            let mut map = Map::new();
            if bytes.get(*at) == Some(&b'}') {
                *at += 1;
                return Some(Value::Object(map));
            }
            loop {
                let Value::String(key) = read(bytes, text, at)? else {
                    return None;
                };
                *at += 1; // `:`
                let value = read(bytes, text, at)?;
                map.insert(key, value);
                *at += 1;
                match bytes.get(*at - 1)? {
                    b',' => {}
                    b'}' => return Some(Value::Object(map)),
                    _ => return None,
                }
            }
        }
        _ => {
            let mut end = start;
            let mut float = false;
            while let Some(&b) = bytes.get(end) {
                match b {
                    b'0'..=b'9' | b'-' => {}
                    b'.' | b'e' | b'E' | b'+' => float = true,
                    _ => break,
                }
                end += 1;
            }
            *at = end;
            let token = &text[start..end];
            let number = if float {
                Number::from_f64(token.parse().ok()?)?
            } else if let Ok(n) = token.parse::<u64>() {
                Number::from(n)
            } else {
                Number::from(token.parse::<i64>().ok()?)
            };
            Some(Value::Number(number))
        }
    }
}
