//! Errors → `error` events with the stack rendered as text.

use super::*;
use crate::sources::json_tree::push_u64;

/// The stack as text, one `    at function (url:line:column)` per frame,
/// under the message, as browsers print it, and how many frames it shows:
/// the frames are written while the text stays within `max_bytes` (the
/// source's `max_string_bytes`; a frame of 3 bytes, `{}`, writes 20).
fn stack_text(
    message: Option<&str>,
    frames: &[Json<'_>],
    max_bytes: usize,
) -> (Option<String>, usize) {
    if frames.is_empty() {
        return (None, 0);
    }
    let mut out = String::with_capacity((64 * frames.len()).min(max_bytes));
    if let Some(message) = message {
        out.push_str(message);
    }
    for (shown, frame) in frames.iter().enumerate() {
        let before = out.len();
        let field = |k: &str| frame.get(k);
        // A string `abs_path` (the one taken off the kept frames), else
        // the file name.
        let file = field("abs_path")
            .and_then(Json::as_str)
            .or_else(|| field("filename").and_then(Json::as_str))
            .unwrap_or("<anonymous>");
        let function = field("function").and_then(Json::as_str).unwrap_or("");
        if !out.is_empty() {
            out.push('\n');
        }
        out.push_str("    at ");
        if !function.is_empty() {
            out.push_str(function);
            out.push_str(" (");
        }
        out.push_str(file);
        if let Some(line) = field("lineno") {
            out.push(':');
            push_json(&mut out, line);
            if let Some(column) = field("colno") {
                out.push(':');
                push_json(&mut out, column);
            }
        }
        if !function.is_empty() {
            out.push(')');
        }
        if out.len() > max_bytes {
            out.truncate(before);
            // No message and a first frame past the limit: no text, rather
            // than an empty one (the frames are kept whole).
            return ((!out.is_empty()).then_some(out), shown);
        }
    }
    (Some(out), frames.len())
}

/// A line or column as JSON text: digits for the numbers agents send
/// (written here, not through `fmt`), anything else as sent.
fn push_json(out: &mut String, value: &Json<'_>) {
    match value.as_u64() {
        Some(n) => push_u64(out, n),
        None => {
            use std::fmt::Write;
            let _ = write!(out, "{value}");
        }
    }
}

/// `TypeError` of `Uncaught TypeError: ...` (v3 agents do not send the
/// exception type; browsers put it in the message).
fn type_from_message(message: &str) -> Option<&str> {
    let head = message.strip_prefix("Uncaught ").unwrap_or(message);
    let (name, _) = head.split_once(':')?;
    (!name.is_empty()
        && name.len() <= 64
        && name.ends_with("Error")
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    .then_some(name)
}

impl Builder<'_> {
    pub(in crate::sources::elastic_apm_decoder) fn error(
        &mut self,
        mut error: Obj<'_>,
    ) -> Result<(), DecodeError> {
        let ids = &*IDS;
        let [s_message, s_type, s_stack, s_kind, s_source, s_line] = ids.error;
        let mut extra = Obj::new();
        let transaction_id = take_str(&mut error, "transaction_id");
        let (mut fields, context, tags) =
            self.page_fields(&mut error, transaction_id.as_deref(), &mut extra);
        if let Some(id) = take_str(&mut error, "id") {
            fields.push((ids.error_id, Some(id.into_owned().into())));
        }
        let (kind, mut body) = match take_object(&mut error, "exception") {
            Some(exception) => ("exception", exception),
            None => ("log", take_object(&mut error, "log").unwrap_or_default()),
        };
        fields.push((s_kind.0, Some(word(kind))));
        let message = take_string(&mut body, "message");
        let ty = take_string(&mut body, "type")
            .filter(|t| !t.is_empty())
            .or_else(|| {
                message
                    .as_deref()
                    .and_then(type_from_message)
                    .map(str::to_owned)
            });
        let frames = body.get("stacktrace").and_then(Json::as_array);
        let (stack, shown) = frames.map_or((None, 0), |f| {
            stack_text(message.as_deref(), f, self.limits.max_string_bytes)
        });
        if let Some(stack) = stack {
            fields.push((s_stack.0, Some(stack.into())));
        }
        if let Some(first) = frames.and_then(|f| f.first()) {
            // Both fields are `long`, which is signed: a larger number
            // stays in the frames only.
            let position = |n: &&Json<'_>| n.is_u64() && n.fits(FieldType::Long);
            if let Some(line) = first.get("lineno").filter(position) {
                fields.push((s_line.0, Some(line.clone().into())));
            }
            if let Some(column) = first.get("colno").filter(position) {
                fields.push((ids.error_column.0, Some(column.clone().into())));
            }
        }
        if let Some(message) = message {
            fields.push((s_message.0, Some(message.into())));
        }
        if let Some(ty) = ty {
            fields.push((s_type.0, Some(ty.into())));
        }
        if let Some(culprit) = error.remove("culprit") {
            put(&mut fields, &mut extra, s_source, "culprit", culprit);
        }
        // The frames stay, beside the text made of them, without their
        // `abs_path`: that URL (the page's, query and all, for inline
        // scripts) is in `error.stack_trace`, where `scrub_url` sees it.
        // Frames the text does not show keep theirs.
        if let Some(Json::Array(frames)) = body.get_mut("stacktrace") {
            for frame in frames[..shown].iter_mut().filter_map(Json::as_object_mut) {
                // Only a string is in the text: another value stays.
                if frame.get("abs_path").is_some_and(Json::is_string) {
                    frame.remove("abs_path");
                }
            }
        }
        keep_rest(&mut extra, kind, body);
        let mut context = context.unwrap_or_default();
        let tags = self.admit_tags(tags, &mut context);
        keep_rest(&mut extra, "context", context);
        keep_all(&mut extra, error);
        self.push(EventType::Error, fields, extra, tags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame as `format!` writes it, the way it was written before.
    fn formatted(frame: &Value) -> String {
        let field = |k: &str| frame.get(k);
        let file = field("abs_path")
            .and_then(Value::as_str)
            .or_else(|| field("filename").and_then(Value::as_str))
            .unwrap_or("<anonymous>");
        let function = field("function").and_then(Value::as_str).unwrap_or("");
        let position = match (field("lineno"), field("colno")) {
            (Some(l), Some(c)) => format!("{file}:{l}:{c}"),
            (Some(l), None) => format!("{file}:{l}"),
            _ => file.to_owned(),
        };
        if function.is_empty() {
            format!("    at {position}")
        } else {
            format!("    at {function} ({position})")
        }
    }

    #[test]
    fn frames_are_written_as_format_wrote_them() {
        let frames = serde_json::json!([
            {"abs_path": "https://a.example/app.js", "function": "render", "lineno": 26, "colno": 42},
            {"filename": "app.js", "lineno": 0, "colno": 18446744073709551615u64},
            {"function": "f", "lineno": "7", "colno": -1},
            {"abs_path": "x.js", "lineno": 2.5},
            {"abs_path": "y.js", "colno": 3},
            {"abs_path": 7, "filename": "z.js", "lineno": 1},
            {"lineno": null, "colno": {"a": 1}},
            {}
        ]);
        for frame in frames.as_array().unwrap() {
            let json = Json::from(frame.clone());
            let expected = format!("m\n{}", formatted(frame));
            assert_eq!(
                stack_text(Some("m"), std::slice::from_ref(&json), 1024),
                (Some(expected), 1)
            );
        }
    }
}
