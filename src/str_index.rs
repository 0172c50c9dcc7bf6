//! A fixed set of strings, looked up by a hash of a string's length and
//! first eight bytes: integer compares for a string of sixteen bytes or
//! less (its first and last eight), one string compare past that.
//! Comparing candidates one by one (a `memcmp` call each) was the most
//! expensive part of putting a beacon's values in their slots; the decoders
//! look up every key, and every short keyword value, of every event.

/// The index of each string of a fixed list.
pub(crate) struct StrIndex {
    keys: Vec<&'static str>,
    /// Each key's length and first eight bytes as integers.
    words: Vec<(usize, u64)>,
    /// Each key's last eight bytes (`tail`), compared for keys of 9 to 16
    /// bytes instead of the whole string: `find` then calls nothing.
    tails: Vec<u64>,
    /// Open addressing, probed linearly from a word's hash: a key's index
    /// + 1, 0 for an empty bucket. At most a quarter of them are taken.
    buckets: Box<[u16]>,
}

impl StrIndex {
    /// `keys` in the order their indexes count; a repeated key is found at
    /// its first place.
    pub(crate) fn new(keys: Vec<&'static str>) -> Self {
        assert!(keys.len() < usize::from(u16::MAX), "too many keys");
        let words: Vec<(usize, u64)> = keys.iter().map(|k| word(k)).collect();
        let tails = keys.iter().map(|k| tail(k)).collect();
        let buckets = (keys.len() * 4).next_power_of_two().max(64);
        let mut index = StrIndex {
            keys,
            words,
            tails,
            buckets: vec![0; buckets].into_boxed_slice(),
        };
        for i in 0..index.keys.len() {
            if index.find(index.keys[i]).is_some() {
                continue;
            }
            let mask = index.buckets.len() - 1;
            let mut b = index.bucket(index.words[i]);
            while index.buckets[b] != 0 {
                b = (b + 1) & mask;
            }
            index.buckets[b] = (i + 1) as u16;
        }
        index
    }

    fn bucket(&self, (len, head): (usize, u64)) -> usize {
        let mixed = (head ^ len as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        // The top bits, as many as the table has buckets (a power of two).
        (mixed >> (64 - self.buckets.len().trailing_zeros())) as usize
    }

    /// The index of `key` in the list, if it is there.
    #[inline(always)]
    pub(crate) fn find(&self, key: &str) -> Option<usize> {
        let word = word(key);
        let mask = self.buckets.len() - 1;
        let mut b = self.bucket(word);
        loop {
            let i = usize::from(self.buckets[b]).checked_sub(1)?;
            if self.words[i] == word {
                let n = key.len();
                if n <= 8 || (n <= 16 && self.tails[i] == tail(key)) || self.long_key_is(i, key) {
                    return Some(i);
                }
            }
            b = (b + 1) & mask;
        }
    }

    /// Key `i` is `key`, which has more than sixteen bytes: a string
    /// compare, out of line, so that `find` itself calls nothing.
    #[inline(never)]
    fn long_key_is(&self, i: usize, key: &str) -> bool {
        key.len() > 16 && self.keys[i] == key
    }
}

/// A key's last eight bytes as one integer (a key of nine bytes or more:
/// with its first eight, every byte of a key of up to sixteen).
#[inline]
fn tail(key: &str) -> u64 {
    match key.as_bytes().last_chunk::<8>() {
        Some(last) => u64::from_le_bytes(*last),
        None => 0,
    }
}

/// A key's length, and its first eight bytes (zeros past its end) as one
/// integer: the whole key when it has eight bytes or less. Short keys are
/// read with two overlapping loads, not byte by byte (most keyword values
/// and many keys are shorter than eight bytes).
#[inline]
fn word(key: &str) -> (usize, u64) {
    let bytes = key.as_bytes();
    let n = bytes.len();
    let head = if let Some(head) = bytes.first_chunk::<8>() {
        u64::from_le_bytes(*head)
    } else if n >= 4 {
        let low = u64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]));
        let high = u64::from(u32::from_le_bytes([
            bytes[n - 4],
            bytes[n - 3],
            bytes[n - 2],
            bytes[n - 1],
        ]));
        low | high << (8 * (n - 4))
    } else if n > 0 {
        // Bytes 0, n / 2 and n - 1 cover every place of a key of 1 to 3.
        u64::from(bytes[0])
            | u64::from(bytes[n / 2]) << (8 * (n / 2))
            | u64::from(bytes[n - 1]) << (8 * (n - 1))
    } else {
        0
    };
    (n, head)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaked(keys: impl Iterator<Item = String>) -> Vec<&'static str> {
        keys.map(|k| &*Box::leak(k.into_boxed_str())).collect()
    }

    #[test]
    fn every_key_is_found_at_its_place_and_nothing_else_is_found() {
        // 3,000 keys: long probe runs, and indexes past a byte.
        let keys = leaked((0..3000).map(|i| format!("key_{i}_x")));
        let index = StrIndex::new(keys.clone());
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(index.find(key), Some(i), "{key}");
            assert_eq!(index.find(&format!("{key}y")), None);
            assert_eq!(index.find(&key[..key.len() - 1]), None);
        }
        assert_eq!(index.find(""), None);
    }

    #[test]
    fn keys_alike_in_their_first_eight_bytes_are_told_apart() {
        let keys = leaked(
            [
                "renderblocking",
                "renderblockinx",
                "render",
                "rende\0",
                "a",
                "",
            ]
            .iter()
            .map(|k| k.to_string()),
        );
        let index = StrIndex::new(keys.clone());
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(index.find(key), Some(i), "{key:?}");
        }
        // Eight bytes or less compare as integers: a shorter key padded
        // with zeros must not match, nor a longer one sharing the head.
        assert_eq!(index.find("rende"), None);
        assert_eq!(index.find("renderblockin"), None);
        assert_eq!(index.find("renderbl"), None);
    }

    #[test]
    fn keys_of_nine_to_seventeen_bytes_differing_in_one_byte_are_told_apart() {
        // Up to sixteen bytes are compared as two words: a byte differing
        // at any place must show in one of them.
        for n in 9..=17 {
            let base = "abcdefghijklmnopq"[..n].to_string();
            let others: Vec<String> = (0..n)
                .map(|at| {
                    let mut bytes = base.clone().into_bytes();
                    bytes[at] = b'Z';
                    String::from_utf8(bytes).unwrap()
                })
                .collect();
            let index = StrIndex::new(leaked(std::iter::once(base.clone())));
            assert_eq!(index.find(&base), Some(0));
            for other in &others {
                assert_eq!(index.find(other), None, "{other}");
            }
            let index = StrIndex::new(leaked(others.clone().into_iter()));
            for (i, other) in others.iter().enumerate() {
                assert_eq!(index.find(other), Some(i), "{other}");
            }
            assert_eq!(index.find(&base), None);
        }
    }

    #[test]
    fn a_short_key_is_its_bytes_padded_with_zeros() {
        for key in [
            "", "a", "ab", "abc", "abcd", "abcde", "abcdef", "abcdefg", "abcdefgh",
        ] {
            let mut padded = [0u8; 8];
            padded[..key.len()].copy_from_slice(key.as_bytes());
            assert_eq!(word(key), (key.len(), u64::from_le_bytes(padded)), "{key}");
        }
    }

    #[test]
    fn a_repeated_key_is_found_at_its_first_place() {
        let index = StrIndex::new(vec!["a", "b", "a"]);
        assert_eq!(index.find("a"), Some(0));
        assert_eq!(index.find("b"), Some(1));
    }
}
