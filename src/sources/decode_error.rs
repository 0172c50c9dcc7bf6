//! What a decoder says when it refuses a payload: the `error_type` it is
//! counted under and the message the client reads. Decoders know nothing of
//! HTTP; `http_source` turns a refusal into its status (400, or 413 for a
//! payload over a configured limit). The JSON shape checks every decoder
//! shares live here too, as they make these errors.

/// Why a payload was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorKind {
    /// Malformed or outside the format.
    Invalid,
    /// Well-formed, but more than the source's limits allow (too many
    /// events, too much shared context).
    TooLarge,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    pub kind: DecodeErrorKind,
    /// The `error_type` label of `component_errors_total`.
    pub error_type: &'static str,
    pub message: String,
}

impl DecodeError {
    pub fn invalid(error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: DecodeErrorKind::Invalid,
            error_type,
            message: message.into(),
        }
    }

    pub fn too_large(error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind: DecodeErrorKind::TooLarge,
            error_type,
            message: message.into(),
        }
    }
}

/// Nesting and string-length limits a JSON payload must respect, checked
/// over keys and values once it is parsed (serde_json's own recursion limit
/// keeps the parse itself safe).
pub fn check_json_shape(
    value: &serde_json::Value,
    max_string_bytes: usize,
    max_depth: usize,
) -> Result<(), DecodeError> {
    check_json_shape_from(value, 1, max_string_bytes, max_depth)
}

/// The same, for a value found at `depth` inside a larger payload.
pub fn check_json_shape_from(
    value: &serde_json::Value,
    depth: usize,
    max_string: usize,
    max_depth: usize,
) -> Result<(), DecodeError> {
    use serde_json::Value;
    let too_long = || {
        DecodeError::invalid(
            "string_too_long",
            format!("a string is longer than max_string_bytes ({max_string})"),
        )
    };
    match value {
        Value::String(s) if s.len() > max_string => Err(too_long()),
        Value::Array(_) | Value::Object(_) if depth > max_depth => Err(too_deep(max_depth)),
        Value::Array(items) => items
            .iter()
            .try_for_each(|v| check_json_shape_from(v, depth + 1, max_string, max_depth)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.len() > max_string {
                return Err(too_long());
            }
            check_json_shape_from(v, depth + 1, max_string, max_depth)
        }),
        _ => Ok(()),
    }
}

pub fn too_deep(max_depth: usize) -> DecodeError {
    DecodeError::invalid(
        "too_deep",
        format!("JSON nested deeper than max_json_depth ({max_depth})"),
    )
}

/// A serde_json parse error as the client's answer.
pub fn json_error(error: &serde_json::Error, max_depth: usize) -> DecodeError {
    if error.to_string().contains("recursion limit") {
        too_deep(max_depth)
    } else {
        DecodeError::invalid("invalid_json", format!("invalid JSON: {error}"))
    }
}
