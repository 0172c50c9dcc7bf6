//! JSON read in one pass without a DOM, within limits, for every decoder:
//! depth and string limits are enforced while parsing — every reader knows
//! its depth (the top-level object is 1, as `check_json_shape` counts),
//! every key and string is measured as it is read. A violation is recorded
//! in `Limits` and aborts the parse; the decoder then answers with it.

use std::borrow::Cow;

use serde::de;

use crate::sources::decode_error::{too_deep, DecodeError};

/// A JSON body as text: an empty one is refused with the decoder's own
/// error, and UTF-8 is checked once for the whole body (fast on ASCII), so
/// the parser need not check every string.
pub(in crate::sources) fn body_text(
    body: &[u8],
    invalid: fn(&'static str) -> DecodeError,
) -> Result<&str, DecodeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("empty body"));
    }
    utf8(body).map_err(|e| {
        DecodeError::invalid(
            "invalid_json",
            format!("invalid JSON: body is not UTF-8 ({e})"),
        )
    })
}

/// `body` as text if it is UTF-8. Nearly every body is ASCII, which
/// `is_ascii` checks eight bytes at a time: `from_utf8` alone took ~1k
/// instructions on a 2 KB beacon, half of it spent where ASCII needs none.
pub(in crate::sources) fn utf8(body: &[u8]) -> Result<&str, std::str::Utf8Error> {
    if body.is_ascii() {
        // SAFETY: ASCII is UTF-8.
        return Ok(unsafe { std::str::from_utf8_unchecked(body) });
    }
    std::str::from_utf8(body)
}

/// The limits of one decode, and the first one broken. Shared with the
/// other JSON decoders of `sources` (`web_vitals_decoder`).
pub(in crate::sources) struct Limits {
    max_string: usize,
    max_depth: usize,
    broken: std::cell::Cell<Option<Broken>>,
}

#[derive(Clone, Copy)]
enum Broken {
    TooDeep,
    TooLong,
}

impl Limits {
    pub(in crate::sources) fn new(max_string: usize, max_depth: usize) -> Self {
        Self {
            max_string,
            max_depth,
            broken: std::cell::Cell::new(None),
        }
    }

    pub(in crate::sources) fn string<E: de::Error>(&self, len: usize) -> Result<(), E> {
        if len > self.max_string {
            self.broken.set(Some(Broken::TooLong));
            return Err(E::custom("string longer than max_string_bytes"));
        }
        Ok(())
    }

    pub(in crate::sources) fn container<E: de::Error>(&self, depth: usize) -> Result<(), E> {
        if depth > self.max_depth {
            self.broken.set(Some(Broken::TooDeep));
            return Err(E::custom("nested deeper than max_json_depth"));
        }
        Ok(())
    }

    pub(in crate::sources) fn error(&self) -> Option<DecodeError> {
        Some(match self.broken.get()? {
            Broken::TooDeep => too_deep(self.max_depth),
            Broken::TooLong => DecodeError::invalid(
                "string_too_long",
                format!(
                    "a string is longer than max_string_bytes ({})",
                    self.max_string
                ),
            ),
        })
    }
}
/// An object's pairs as it is read, each key once: the last value of a
/// repeated key wins at the key's first place, as a JSON object reads.
/// Small objects are checked as each key arrives; a large one (a crafted
/// body can send 100,000 keys in one object) is checked once, by sorting,
/// in `finish`: checking each key against all before it took seconds.
pub(in crate::sources) struct PairList<'de, V> {
    pairs: Vec<(Cow<'de, str>, V)>,
    /// A key was added without the check: `finish` looks for repeats.
    unchecked: bool,
}

/// Above this many pairs, repeated keys are found by `PairList::finish`.
const SCAN_PAIRS: usize = 32;

impl<'de, V> PairList<'de, V> {
    pub(in crate::sources) fn with_capacity(capacity: usize) -> Self {
        PairList {
            pairs: Vec::with_capacity(capacity),
            unchecked: false,
        }
    }

    // Always: called once per key of every object, with a large value
    // that a call would move through memory.
    #[inline(always)]
    pub(in crate::sources) fn push(&mut self, key: Cow<'de, str>, value: V) {
        if self.pairs.len() < SCAN_PAIRS {
            if let Some(pair) = self.pairs.iter_mut().find(|(k, _)| *k == key) {
                pair.1 = value;
                return;
            }
        } else {
            self.unchecked = true;
        }
        self.pairs.push((key, value));
    }

    /// Drops every pair of `key` (a key that turned out to be another kind).
    pub(in crate::sources) fn remove(&mut self, key: &str) {
        #[cfg(test)]
        crate::sources::json_tree::KEY_LOOKUPS
            .set(crate::sources::json_tree::KEY_LOOKUPS.get() + self.pairs.len());
        self.pairs.retain(|(k, _)| k != key);
    }

    /// The pairs, each key once, in the order their keys first came.
    #[inline]
    pub(in crate::sources) fn finish(self) -> Vec<(Cow<'de, str>, V)> {
        if !self.unchecked {
            return self.pairs;
        }
        dedupe(self.pairs)
    }
}

/// `PairList::finish` of a large object.
fn dedupe<V>(mut pairs: Vec<(Cow<'_, str>, V)>) -> Vec<(Cow<'_, str>, V)> {
    // Stable: in a run of equal keys, positions ascend.
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.sort_by(|&a, &b| pairs[a].0.cmp(&pairs[b].0));
    let mut dropped = vec![false; pairs.len()];
    let mut run = 0;
    while run < order.len() {
        let mut end = run + 1;
        while end < order.len() && pairs[order[end]].0 == pairs[order[run]].0 {
            end += 1;
        }
        if end - run > 1 {
            // The last value sent, at the first place.
            pairs.swap(order[run], order[end - 1]);
            for &i in &order[run + 1..end] {
                dropped[i] = true;
            }
        }
        run = end;
    }
    let mut i = 0;
    pairs.retain(|_| {
        i += 1;
        !dropped[i - 1]
    });
    pairs
}

#[cfg(test)]
mod pair_list_tests {
    use super::*;

    #[test]
    fn a_repeat_added_unchecked_is_found_after_a_removal() {
        // 32 keys, then `k1` again (past the scan), then one key removed:
        // back to 32 pairs, one of them a repeat.
        let mut list = PairList::with_capacity(4);
        for i in 0..32 {
            list.push(Cow::Owned(format!("k{i}")), i);
        }
        list.push(Cow::Borrowed("k1"), 100);
        list.remove("k5");
        let pairs = list.finish();
        assert_eq!(pairs.len(), 31);
        assert_eq!(pairs[1], (Cow::Borrowed("k1"), 100));
        assert_eq!(pairs.iter().filter(|(k, _)| k == "k1").count(), 1);
    }

    /// What reading `keys` in order keeps, the obvious (quadratic) way.
    fn expected(keys: &[(String, usize)]) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        for (k, v) in keys {
            match out.iter_mut().find(|(o, _)| o == k) {
                Some(pair) => pair.1 = *v,
                None => out.push((k.clone(), *v)),
            }
        }
        out
    }

    #[test]
    fn repeated_keys_keep_the_last_value_at_the_first_place_at_any_size() {
        let mut rng = fastrand::Rng::with_seed(7);
        for len in [0, 1, 5, 31, 32, 33, 40, 200, 1000] {
            for distinct in [1, 3, 30, 500] {
                let keys: Vec<(String, usize)> = (0..len)
                    .map(|i| (format!("k{}", rng.usize(..distinct)), i))
                    .collect();
                let mut list = PairList::with_capacity(4);
                for (k, v) in &keys {
                    list.push(Cow::Owned(k.clone()), *v);
                }
                // Removing keys may bring a list that skipped checks back
                // under the scan size: repeats are still found.
                if len > 0 && len % 2 == 0 {
                    list.remove("k0");
                }
                let keys: Vec<(String, usize)> = if len > 0 && len % 2 == 0 {
                    keys.into_iter().filter(|(k, _)| k != "k0").collect()
                } else {
                    keys
                };
                let got: Vec<(String, usize)> = list
                    .finish()
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v))
                    .collect();
                assert_eq!(got, expected(&keys), "{len} keys of {distinct}");
            }
        }
    }
}
