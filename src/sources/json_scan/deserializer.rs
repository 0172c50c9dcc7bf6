//! The scanner as a `serde::Deserializer`, for the decoders written as
//! serde seeds (Faro, Elastic APM, web-vitals, the light tree): the same
//! visits `serde_json` makes — borrowed strings where there are no escapes,
//! `u64`/`i64`/`f64` as it reads numbers — over the cheaper reader. The
//! seeds keep their own depth and string limits; nesting past
//! `MAX_NESTING` is refused here, as `serde_json`'s recursion limit did.

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;

use super::{Failure, ScanError, Scanner, MAX_NESTING};

/// Deserializes from a scanner; `nesting` counts the open containers.
///
/// Made for the decoders' seeds, which read any value (`deserialize_any`,
/// string keys) and each object or array to its end; it is no full stand-in
/// for `serde_json`'s: every `deserialize_*` but `ignored_any` (which skips
/// the value against the limits, for `Skip` seeds) is `deserialize_any` (so an
/// `Option` or an enum is not read as `serde_json` reads it), a visitor that
/// stops before the closing bracket is an error even at the last element,
/// and map keys are never read as numbers.
pub(in crate::sources) struct ScanDeserializer<'s, 'de, 'l> {
    scanner: &'s mut Scanner<'de, 'l>,
    nesting: usize,
    /// The last container's closing bracket was read (its visitor read it
    /// to the end).
    closed: bool,
}

impl<'s, 'de, 'l> ScanDeserializer<'s, 'de, 'l> {
    pub(in crate::sources) fn new(scanner: &'s mut Scanner<'de, 'l>) -> Self {
        ScanDeserializer {
            scanner,
            nesting: 0,
            closed: false,
        }
    }

    fn open(&mut self) -> Result<(), ScanError> {
        self.nesting += 1;
        if self.nesting > MAX_NESTING {
            return Err(ScanError::new(Failure::TooDeep));
        }
        // Past the bracket `peek` showed.
        self.scanner.pos += 1;
        self.closed = false;
        Ok(())
    }
}

impl<'de> de::Deserializer<'de> for &mut ScanDeserializer<'_, 'de, '_> {
    type Error = ScanError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ScanError> {
        match self.scanner.peek()? {
            b'"' => match self.scanner.string()? {
                std::borrow::Cow::Borrowed(s) => visitor.visit_borrowed_str(s),
                std::borrow::Cow::Owned(s) => visitor.visit_string(s),
            },
            b'-' | b'0'..=b'9' => {
                let n = self.scanner.number()?;
                if let Some(u) = n.as_u64() {
                    visitor.visit_u64(u)
                } else if let Some(i) = n.as_i64() {
                    visitor.visit_i64(i)
                } else {
                    visitor.visit_f64(n.as_f64().unwrap_or_default())
                }
            }
            b'{' => {
                self.open()?;
                let value = visitor.visit_map(Entries {
                    de: &mut *self,
                    first: true,
                })?;
                self.finish()?;
                Ok(value)
            }
            b'[' => {
                self.open()?;
                let value = visitor.visit_seq(Entries {
                    de: &mut *self,
                    first: true,
                })?;
                self.finish()?;
                Ok(value)
            }
            b't' => self
                .scanner
                .literal(b"true")
                .and_then(|()| visitor.visit_bool(true)),
            b'f' => self
                .scanner
                .literal(b"false")
                .and_then(|()| visitor.visit_bool(false)),
            b'n' => self
                .scanner
                .literal(b"null")
                .and_then(|()| visitor.visit_unit()),
            _ => self.scanner.syntax("expected value"),
        }
    }

    /// The value skipped by the scanner alone, against its limits, as a
    /// container at the depth one past the open ones (what a `Skip` seed
    /// checks, through no visitor calls), then `visit_unit`.
    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, ScanError> {
        #[cfg(test)]
        SKIP_DEPTH.with(|d| {
            if let Some(depth) = d.take() {
                assert_eq!(
                    depth,
                    self.nesting + 1,
                    "a Skip seed's depth disagrees with the nesting"
                );
            }
        });
        self.scanner.skip(self.nesting + 1)?;
        visitor.visit_unit()
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier
    }
}

// Tests only: the depth the last `Skip` seed was made with, so that
// `deserialize_ignored_any` can assert the nesting it skips at agrees (a
// disagreement would move the depth limit without any test noticing).
#[cfg(test)]
thread_local! {
    pub(in crate::sources) static SKIP_DEPTH: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

impl ScanDeserializer<'_, '_, '_> {
    /// After a visitor's map or seq: it read every entry (the closing
    /// bracket is behind), else what is left is an error, as in `serde_json`.
    fn finish(&mut self) -> Result<(), ScanError> {
        self.nesting -= 1;
        if std::mem::take(&mut self.closed) {
            return Ok(());
        }
        self.scanner.syntax("a container was left unread")
    }
}

/// The entries of one object or array.
struct Entries<'a, 's, 'de, 'l> {
    de: &'a mut ScanDeserializer<'s, 'de, 'l>,
    first: bool,
}

impl<'de> MapAccess<'de> for Entries<'_, '_, 'de, '_> {
    type Error = ScanError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, ScanError> {
        // Measured here and again by the seed, against the same limits.
        let Some(key) = self.de.scanner.key(self.first)? else {
            self.de.closed = true;
            return Ok(None);
        };
        self.first = false;
        match key {
            std::borrow::Cow::Borrowed(s) => seed
                .deserialize(de::value::BorrowedStrDeserializer::new(s))
                .map(Some),
            std::borrow::Cow::Owned(s) => seed
                .deserialize(de::value::StringDeserializer::new(s))
                .map(Some),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, ScanError> {
        seed.deserialize(&mut *self.de)
    }
}

impl<'de> SeqAccess<'de> for Entries<'_, '_, 'de, '_> {
    type Error = ScanError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, ScanError> {
        if !self.de.scanner.element(self.first)? {
            self.de.closed = true;
            return Ok(None);
        }
        self.first = false;
        seed.deserialize(&mut *self.de).map(Some)
    }
}
