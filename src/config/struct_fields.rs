//! The keys a `#[derive(Deserialize)]` struct takes, asked of serde itself:
//! the derive hands its field list to `deserialize_struct`, so a list made
//! this way cannot drift from the struct as a hand-kept one can.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The field names (after `rename`) serde's derive gave `T`; empty for a
/// type that is not a struct.
pub fn struct_fields<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let seen = Cell::new(None);
    let _ = T::deserialize(FieldsProbe { seen: &seen });
    seen.get().unwrap_or(&[])
}

/// A deserializer that only records the field list and then refuses.
struct FieldsProbe<'a> {
    seen: &'a Cell<Option<&'static [&'static str]>>,
}

#[derive(Debug)]
struct Probed;

impl fmt::Display for Probed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("probed for field names")
    }
}

impl std::error::Error for Probed {}

impl de::Error for Probed {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Probed
    }
}

impl<'de> Deserializer<'de> for FieldsProbe<'_> {
    type Error = Probed;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Probed> {
        Err(Probed)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Probed> {
        self.seen.set(Some(fields));
        Err(Probed)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct Example {
        address: String,
        #[serde(rename = "max_body_bytes")]
        limit: usize,
        #[serde(default)]
        tls: Option<String>,
    }

    #[test]
    fn lists_a_structs_keys_as_serde_reads_them() {
        assert_eq!(
            struct_fields::<Example>(),
            ["address", "max_body_bytes", "tls"]
        );
        assert!(struct_fields::<u32>().is_empty());
    }
}
