//! Sizes in pipeline files: a number of bytes (`1048576`) or a string with a
//! unit as Express' body-parser writes them (`"100kb"`, `"1mb"`, `"1.5MB"`;
//! units are powers of 1024), so Canarytrace's `BODY_PARSER_LIMIT` can be
//! dropped into a TOML key unchanged.

use serde::de::{self, Deserializer, Visitor};

/// Parses `"1mb"`, `"512 KB"`, `"42"`, `"42b"`. Units: b, kb, mb, gb (×1024).
pub fn parse(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1024.0,
        "mb" | "m" => 1024.0 * 1024.0,
        "gb" | "g" => 1024.0 * 1024.0 * 1024.0,
        _ => {
            return Err(format!(
                "`{text}` is not a size (use bytes, or a number with kb, mb or gb)"
            ))
        }
    };
    let value: f64 = number.parse().map_err(|_| {
        format!("`{text}` is not a size (use bytes, or a number with kb, mb or gb)")
    })?;
    let bytes = (value * multiplier).floor();
    if !bytes.is_finite() || bytes < 0.0 || bytes > usize::MAX as f64 {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(bytes as usize)
}

/// `#[serde(deserialize_with = "byte_size::deserialize")]` for a `usize` field.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    struct SizeVisitor;
    impl Visitor<'_> for SizeVisitor {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a size in bytes, or a string like \"1mb\"")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::custom("size out of range"))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<usize, E> {
            usize::try_from(v).map_err(|_| E::custom("a size cannot be negative"))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<usize, E> {
            parse(v).map_err(E::custom)
        }
    }
    deserializer.deserialize_any(SizeVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_body_parser_style_sizes() {
        assert_eq!(parse("42"), Ok(42));
        assert_eq!(parse("42b"), Ok(42));
        assert_eq!(parse("100kb"), Ok(102_400));
        assert_eq!(parse("1mb"), Ok(1_048_576));
        assert_eq!(parse("1.5MB"), Ok(1_572_864));
        assert_eq!(parse(" 2 gb "), Ok(2 * 1024 * 1024 * 1024));
    }

    #[test]
    fn refuses_nonsense() {
        for bad in ["", "mb", "1tb", "-1", "1..2kb", "ten"] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deserializes_numbers_and_strings() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(deserialize_with = "deserialize")]
            size: usize,
        }
        let t: T = toml::from_str("size = 2048").unwrap();
        assert_eq!(t.size, 2048);
        let t: T = toml::from_str("size = \"2kb\"").unwrap();
        assert_eq!(t.size, 2048);
        assert!(toml::from_str::<T>("size = -5").is_err());
        assert!(toml::from_str::<T>("size = \"lots\"").is_err());
    }
}
