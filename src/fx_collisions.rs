//! Strings that `rustc-hash`'s `FxHasher` (2.x) hashes alike, for tests of
//! maps whose keys a browser chooses. Its byte hash folds 16-byte chunks
//! with `t = mix(s0 ^ x, C ^ y)`; a chunk whose first half `x` equals the
//! state `s0` makes `t` zero whatever its second half `y`, so every string
//! that differs only there hashes alike. With the third chunk's `x` set to
//! the first chunk's `t` (found among printable texts), bytes 40..48 of a
//! 65-byte string are free: any such strings collide in all 64 bits, and
//! they are as cheap to make for a client as for this file.

/// `rustc-hash` 2's multiply-mix (x86_64 / aarch64).
fn mix(x: u64, y: u64) -> u64 {
    let full = u128::from(x).wrapping_mul(u128::from(y));
    (full as u64) ^ ((full >> 64) as u64)
}

/// `count` distinct printable 65-byte strings with one `FxHasher` hash.
pub(crate) fn fx_colliding(count: usize) -> Vec<String> {
    const SEED1: u64 = 0x243f_6a88_85a3_08d3;
    const ZERO_COLLAPSE: u64 = 0xa409_3822_299f_31d0;
    let printable = |v: u64| {
        v.to_le_bytes()
            .iter()
            .all(|b| (0x21..0x7f).contains(b) && *b != b'"' && *b != b'\\')
    };
    // A first chunk whose fold is printable text.
    let (first, t1) = (0u64..)
        .map(|i| {
            let head = format!("{i:0>16}");
            let x = u64::from_le_bytes(head.as_bytes()[..8].try_into().expect("8 bytes"));
            let y = u64::from_le_bytes(head.as_bytes()[8..].try_into().expect("8 bytes"));
            (head, mix(SEED1 ^ x, ZERO_COLLAPSE ^ y))
        })
        .find(|(_, t1)| printable(*t1))
        .expect("a printable fold");
    let x3 = String::from_utf8(t1.to_le_bytes().to_vec()).expect("printable");
    (0..count)
        .map(|i| format!("{first}{:0>16}{x3}{i:0>8}{:0>17}", "", ""))
        .collect()
}

#[test]
fn they_collide() {
    use std::hash::BuildHasher;
    let keys = fx_colliding(3);
    assert!(keys.iter().all(|k| k.len() == 65));
    let hashes: Vec<u64> = keys
        .iter()
        .map(|k| rustc_hash::FxBuildHasher.hash_one(k))
        .collect();
    assert_eq!(hashes[0], hashes[1]);
    assert_eq!(hashes[1], hashes[2]);
    assert_ne!(keys[0], keys[1]);
}
