//! The bytes a JSON string must escape (`"`, `\\`, control characters),
//! found sixteen or eight at a time: the JSON reader uses it to step over
//! string runs, the writers to copy strings that need no escape as they are.

/// The high bit set in each byte of `word` that is `"`, `\\` or a control
/// character; the lowest one set is exact (bits above it may be spurious).
#[inline]
pub(crate) fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_in = |w: u64| w.wrapping_sub(ONES) & !w & HIGH;
    let quote = zero_in(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_in(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    quote | backslash | control
}

/// A bit set for each byte of `chunk` that is `"`, `\\` or a control
/// character, bit `i` for byte `i`; the lowest one set is exact (bits above
/// it may be spurious). With SSE2, which every x86-64 has, one compare a
/// kind for all sixteen bytes: about half the instructions of two words
/// through `special_bytes`, on every key and string a body has.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn special_mask16(chunk: &[u8; 16]) -> u32 {
    use std::arch::x86_64::{
        _mm_cmpeq_epi8, _mm_loadu_si128, _mm_min_epu8, _mm_movemask_epi8, _mm_or_si128,
        _mm_set1_epi8,
    };
    // SAFETY: the load reads the sixteen bytes `chunk` refers to, with no
    // alignment asked; the rest is arithmetic on registers. SSE2 is part of
    // the x86-64 baseline (the intrinsics ask for `unsafe` all the same).
    unsafe {
        let v = _mm_loadu_si128(chunk.as_ptr().cast());
        let quote = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'"' as i8));
        let backslash = _mm_cmpeq_epi8(v, _mm_set1_epi8(b'\\' as i8));
        // Unsigned `v <= 0x1f`: the smaller of the two is `v` itself.
        let control = _mm_cmpeq_epi8(_mm_min_epu8(v, _mm_set1_epi8(0x1f)), v);
        _mm_movemask_epi8(_mm_or_si128(_mm_or_si128(quote, backslash), control)) as u32
    }
}

/// See the x86-64 version.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
pub(crate) fn special_mask16(chunk: &[u8; 16]) -> u32 {
    special_mask16_by_words(chunk)
}

/// [`special_mask16`] through two words of `special_bytes`: elsewhere than
/// x86-64, and what the tests hold the SSE2 version to.
#[cfg_attr(all(target_arch = "x86_64", not(test)), allow(dead_code))]
#[inline(always)]
fn special_mask16_by_words(chunk: &[u8; 16]) -> u32 {
    let word = |at: usize| {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(&chunk[at..at + 8]);
        special_bytes(u64::from_le_bytes(bytes))
    };
    let low = word(0);
    if low != 0 {
        return 1 << (low.trailing_zeros() / 8);
    }
    let high = word(8);
    if high != 0 {
        return 1 << (8 + high.trailing_zeros() / 8);
    }
    0
}

/// Whether a string has a byte JSON must escape.
pub(crate) fn needs_escape(text: &[u8]) -> bool {
    let n = text.len();
    // Sixteen at a time, the last sixteen overlapping what was read.
    if let Some(last) = text.last_chunk::<16>() {
        let mut chunks = text.chunks_exact(16);
        for chunk in chunks.by_ref() {
            if special_mask16(chunk.try_into().unwrap_or(&[0; 16])) != 0 {
                return true;
            }
        }
        return !chunks.remainder().is_empty() && special_mask16(last) != 0;
    }
    // Whole words, with overlapping loads for the bytes past the last one:
    // no byte-by-byte loop and no copy (most keys and many values are
    // shorter than eight bytes). Any bit set means a real one: spurious
    // bits only sit above it.
    if let Some(last) = text.last_chunk::<8>() {
        let mut chunks = text.chunks_exact(8);
        for chunk in chunks.by_ref() {
            if special_bytes(u64::from_le_bytes(chunk.try_into().unwrap_or_default())) != 0 {
                return true;
            }
        }
        return !chunks.remainder().is_empty() && special_bytes(u64::from_le_bytes(*last)) != 0;
    }
    let word = if n >= 4 {
        let low = u32::from_le_bytes([text[0], text[1], text[2], text[3]]);
        let high = u32::from_le_bytes([text[n - 4], text[n - 3], text[n - 2], text[n - 1]]);
        u64::from(low) | u64::from(high) << 32
    } else {
        // Bytes 0, n / 2 and n - 1 are every byte of 1 to 3; spaces (which
        // need no escape) fill the word.
        let mut word = [b' '; 8];
        if let (Some(&first), Some(&last)) = (text.first(), text.last()) {
            word[0] = first;
            word[1] = text[n / 2];
            word[2] = last;
        }
        u64::from_le_bytes(word)
    };
    special_bytes(word) != 0
}

/// A string as `serde_json` writes it. Most need no escape and are copied;
/// `serde_json` escapes nothing else (not `/`, not non-ASCII), so the bytes
/// are the same either way.
pub(crate) fn write_str(text: &str, out: &mut Vec<u8>) {
    if needs_escape(text.as_bytes()) {
        write_escaped(text.as_bytes(), out);
    } else if text.len() <= 16 {
        write_short_quoted(text.as_bytes(), out);
    } else {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text.as_bytes());
        out.push(b'"');
    }
}

/// A string with bytes to escape, escaped as `serde_json` escapes them: the
/// runs between them copied whole, found sixteen bytes at a time, not read
/// byte by byte through a table as `serde_json` does (ten instructions a
/// byte: the one stack trace of the bench's beacon cost a thousand).
fn write_escaped(text: &[u8], out: &mut Vec<u8>) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    let mut rest = text;
    loop {
        let (run, escaped) = rest.split_at(plain_run(rest));
        out.extend_from_slice(run);
        let Some((&byte, after)) = escaped.split_first() else {
            break;
        };
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(byte >> 4)]);
                out.push(HEX[usize::from(byte & 0xf)]);
            }
        }
        rest = after;
    }
    out.push(b'"');
}

/// How many bytes of `text` come before the first one JSON must escape.
fn plain_run(text: &[u8]) -> usize {
    let mut at = 0;
    while let Some(chunk) = text.get(at..).and_then(|rest| rest.first_chunk::<16>()) {
        let mask = special_mask16(chunk);
        if mask != 0 {
            return at + mask.trailing_zeros() as usize;
        }
        at += 16;
    }
    let tail = text.get(at..).unwrap_or_default();
    at + tail
        .iter()
        .position(|&b| b == b'"' || b == b'\\' || b < 0x20)
        .unwrap_or(tail.len())
}

/// `"text"` for a text of at most 16 bytes (most values: names, ratings,
/// ids), put together in a buffer from two overlapping pieces of a fixed
/// size and written as a fixed size then cut to length: no call of
/// `memcpy` for a few bytes, nor a capacity check per quote.
#[inline(always)]
fn write_short_quoted(text: &[u8], out: &mut Vec<u8>) {
    let n = text.len();
    let mut quoted = [b'"'; 18];
    if let (Some(head), Some(tail)) = (text.first_chunk::<8>(), text.last_chunk::<8>()) {
        quoted[1..9].copy_from_slice(head);
        quoted[n - 7..=n].copy_from_slice(tail);
    } else if let (Some(head), Some(tail)) = (text.first_chunk::<4>(), text.last_chunk::<4>()) {
        quoted[1..5].copy_from_slice(head);
        quoted[n - 3..=n].copy_from_slice(tail);
    } else if let (Some(&first), Some(&last)) = (text.first(), text.last()) {
        // One to three bytes: the first, the middle and the last are all.
        quoted[1] = first;
        quoted[1 + n / 2] = text[n / 2];
        quoted[n] = last;
    }
    if let Some(end) = quoted.get_mut(n + 1) {
        *end = b'"';
    }
    out.extend_from_slice(&quoted);
    out.truncate(out.len() - (18 - (n + 2).min(18)));
}

/// A number as `serde_json` writes it, through its own formatter (the same
/// integer and float printing) but without the `Serialize` dispatch and the
/// `io::Write` calls around it: about half of what `to_writer` costs for a
/// number, and a document has a few dozen.
pub(crate) fn write_number(n: &serde_json::Number, out: &mut Vec<u8>) {
    use serde_json::ser::{CompactFormatter, Formatter};
    // Writing into a Vec cannot fail. A `Number` is a u64, an i64 or a
    // finite f64 (which `as_f64` gives for every number).
    let _ = if let Some(u) = n.as_u64() {
        CompactFormatter.write_u64(out, u)
    } else if let Some(i) = n.as_i64() {
        CompactFormatter.write_i64(out, i)
    } else {
        return write_float(n.as_f64().unwrap_or_default(), out);
    };
}

/// A finite float as `serde_json` writes a number that holds it.
#[inline]
pub(crate) fn write_float(f: f64, out: &mut Vec<u8>) {
    use serde_json::ser::{CompactFormatter, Formatter};
    if !write_short_decimal(f, out) {
        // Writing into a Vec cannot fail.
        let _ = CompactFormatter.write_f64(out, f);
    }
}

/// A float with at most six decimals and less than 1e9 in size (timings in
/// milliseconds, coordinates, sizes: most floats of a beacon), written as
/// `serde_json` writes it (zmij's shortest digits that read back as the
/// same float), at a fraction of its cost, without a copy through a
/// buffer on the stack; false (nothing written) for any other. The fewest
/// decimals `k` that read back as `f` are its shortest digits: a shorter
/// text has fewer decimals, and at most one number of `k` decimals, the one
/// nearest `f`, is close enough to read back (they are 10^-k apart, more
/// than a float's step below 1e9), and `n / 10^k` rounds as reading it does.
fn write_short_decimal(f: f64, out: &mut Vec<u8>) -> bool {
    let size = f.abs();
    if !(1e-3..1e9).contains(&size) {
        return false;
    }
    let mut scale = 1.0;
    for decimals in 0..=6 {
        // Rounded by a cast (`round` is a call of libm without SSE4.1):
        // below 1e15, adding a half is exact.
        let n = (size * scale + 0.5) as i64;
        if n as f64 / scale == size {
            write_decimal(f < 0.0, n as u64, decimals, out);
            return true;
        }
        scale *= 10.0;
    }
    false
}

/// `-int.frac` of `n / 10^decimals` (`int.0` for none): its digits put
/// right to left before the middle of a buffer, then a fixed size from
/// its first byte written and cut to length: no digit count first, no call
/// of `memcpy` for a few bytes.
#[inline(always)]
fn write_decimal(negative: bool, n: u64, decimals: usize, out: &mut Vec<u8>) {
    const END: usize = 24;
    let mut text = [0u8; 2 * END];
    let mut at = END;
    let mut put = |byte: u8| {
        at -= 1;
        text[at] = byte;
    };
    let mut rest = n;
    if decimals == 0 {
        put(b'0');
    }
    for _ in 0..decimals {
        put(b'0' + (rest % 10) as u8);
        rest /= 10;
    }
    put(b'.');
    loop {
        put(b'0' + (rest % 10) as u8);
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if negative {
        put(b'-');
    }
    // At most 17 bytes (`-`, nine digits, `.`, six): `at` is past 6.
    if let Some(window) = text.get(at..).and_then(|t| t.first_chunk::<END>()) {
        out.extend_from_slice(window);
        out.truncate(out.len() - at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_as_serde_json_writes_them() {
        let mut rng = fastrand::Rng::with_seed(12);
        let fixed = [
            0.0,
            -0.0,
            1.0,
            -1.5,
            0.1,
            1e21,
            1e-7,
            5e-324,
            f64::MAX,
            f64::MIN_POSITIVE,
            123.456,
        ];
        let mut numbers: Vec<serde_json::Number> = fixed
            .iter()
            .filter_map(|&f| serde_json::Number::from_f64(f))
            .chain([u64::MAX, 0, 1, 1 << 53].map(serde_json::Number::from))
            .chain([i64::MIN, -1, -(1 << 53)].map(serde_json::Number::from))
            .collect();
        for _ in 0..20_000 {
            numbers.push(match rng.usize(..4) {
                0 => rng.u64(..).into(),
                1 => rng.i64(..).into(),
                2 => serde_json::Number::from_f64(f64::from_bits(rng.u64(..) & !(0x7ff << 52)))
                    .unwrap_or_else(|| 0.into()),
                _ => serde_json::Number::from_f64(rng.f64() * 10f64.powi(rng.i32(-30..30)))
                    .unwrap_or_else(|| 0.into()),
            });
        }
        for n in numbers {
            let mut ours = Vec::new();
            write_number(&n, &mut ours);
            assert_eq!(ours, serde_json::to_vec(&n).unwrap(), "{n:?}");
        }
    }

    #[test]
    fn short_decimals_are_written_as_serde_json_writes_them() {
        let mut rng = fastrand::Rng::with_seed(13);
        let mut floats = vec![
            1e-3,
            0.00099999,
            0.001000001,
            999_999_999.9,
            1e9,
            1e9 - 0.5,
            0.1 + 0.2,
            12.5,
            520.1,
            51.5142,
            -0.0931,
            1234.5,
            0.5,
            2.0,
            100.0,
            123_456.789_012,
            0.000_123_456,
        ];
        for _ in 0..200_000 {
            // Numbers of a few decimals as a browser sends them, near ties
            // and powers of ten too, and any floats.
            let decimals = rng.i32(0..9);
            let width = rng.u32(1..17);
            let digits = rng.u64(..10u64.pow(width));
            let f = digits as f64 / 10f64.powi(decimals);
            floats.push(if rng.bool() { f } else { -f });
            floats.push(f64::from_bits(
                f.to_bits().wrapping_add(rng.u64(..3)).wrapping_sub(1),
            ));
            floats.push(rng.f64() * 10f64.powi(rng.i32(-5..11)));
        }
        // The short way is taken, not only the same bytes made.
        let mut short = Vec::new();
        assert!(write_short_decimal(-520.1, &mut short));
        assert!(write_short_decimal(0.0931, &mut short));
        assert_eq!(short, b"-520.10.0931");
        for f in floats {
            let Some(n) = serde_json::Number::from_f64(f) else {
                continue;
            };
            let mut ours = Vec::new();
            write_number(&n, &mut ours);
            assert_eq!(
                String::from_utf8_lossy(&ours),
                String::from_utf8_lossy(&serde_json::to_vec(&n).unwrap()),
                "{f:e}"
            );
        }
    }

    #[test]
    fn the_first_byte_to_escape_of_sixteen_is_found_for_every_byte_value() {
        let special = |b: u8| b == b'"' || b == b'\\' || b < 0x20;
        let mut rng = fastrand::Rng::with_seed(5);
        for at in 0..16 {
            for value in 0..=255u8 {
                // Plain bytes before `at`, anything after it.
                let mut chunk = [0u8; 16];
                for (i, b) in chunk.iter_mut().enumerate() {
                    *b = match i.cmp(&at) {
                        std::cmp::Ordering::Less => loop {
                            let b = rng.u8(..);
                            if !special(b) {
                                break b;
                            }
                        },
                        std::cmp::Ordering::Equal => value,
                        std::cmp::Ordering::Greater => rng.u8(..),
                    };
                }
                for mask in [special_mask16(&chunk), special_mask16_by_words(&chunk)] {
                    if special(value) {
                        assert_eq!(mask.trailing_zeros() as usize, at, "{chunk:?}");
                    } else {
                        assert!(
                            mask == 0 || mask.trailing_zeros() as usize > at,
                            "{chunk:?}"
                        );
                    }
                }
                let first = chunk.iter().position(|&b| special(b));
                let mask = special_mask16(&chunk);
                assert_eq!(
                    (mask != 0).then(|| mask.trailing_zeros() as usize),
                    first,
                    "{chunk:?}"
                );
            }
        }
    }

    #[test]
    fn a_byte_to_escape_is_found_at_any_place_of_any_length() {
        for len in 0..70 {
            let plain = vec![b'a'; len];
            assert!(!needs_escape(&plain), "{len}");
            for at in 0..len {
                for special in [b'"', b'\\', 0, 0x1f, b'\n'] {
                    let mut bytes = plain.clone();
                    bytes[at] = special;
                    assert!(needs_escape(&bytes), "{len} {at} {special}");
                }
                for fine in [b' ', b'!', b'#', b'[', b']', 0x7f, 0x80, 0xff] {
                    let mut bytes = plain.clone();
                    bytes[at] = fine;
                    assert!(!needs_escape(&bytes), "{len} {at} {fine}");
                }
            }
        }
    }

    #[test]
    fn plain_strings_of_every_length_are_written_whole() {
        for len in 0..40 {
            let text: String = "aé/b~c€ d".chars().cycle().take(len).collect();
            let mut ours = b"x".to_vec();
            write_str(&text, &mut ours);
            assert_eq!(ours[1..], serde_json::to_vec(&text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let mut rng = fastrand::Rng::with_seed(11);
        let pool = [
            'a', '"', '\\', '\u{0}', '\u{1f}', ' ', '\u{7f}', '/', 'é', '€', '😀', '\n', '\t',
            '\r', '\u{8}', '\u{c}',
        ];
        for _ in 0..20_000 {
            // Past 16 and 32 too, half of them with few bytes to escape: the
            // escaper reads sixteen bytes at a time.
            let len = rng.usize(..48);
            let sparse = rng.bool();
            let text: String = (0..len)
                .map(|_| match sparse && rng.usize(..8) > 0 {
                    true => 'a',
                    false => pool[rng.usize(..pool.len())],
                })
                .collect();
            let mut ours = Vec::new();
            write_str(&text, &mut ours);
            assert_eq!(ours, serde_json::to_vec(&text).unwrap(), "{text:?}");
        }
    }
}
