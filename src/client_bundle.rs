//! The browser RUM client, embedded in the binary and served at `GET {path}`
//! of the `rum_beacon` source. Built from `client-js/` and committed, so
//! `cargo build` never needs node.

use std::sync::OnceLock;

use bytes::Bytes;

pub const SOURCE: &[u8] = include_bytes!("../client-js/dist/rum.min.js");

pub struct Bundle {
    pub plain: Bytes,
    pub gzip: Bytes,
    /// Strong validator of `plain`, derived from the content, stable across builds.
    pub etag: String,
    /// Strong validator of `gzip`: another representation of the same
    /// resource needs its own (RFC 9110 8.8.3), or a cache holding the gzip
    /// copy could be told 304 for a client that takes no gzip.
    pub gzip_etag: String,
}

pub fn bundle() -> &'static Bundle {
    static BUNDLE: OnceLock<Bundle> = OnceLock::new();
    BUNDLE.get_or_init(|| {
        use std::io::Write;
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        // Writing into a Vec cannot fail.
        let _ = encoder.write_all(SOURCE);
        let gzip = encoder.finish().unwrap_or_default();
        let hash = fnv1a(SOURCE);
        Bundle {
            plain: Bytes::from_static(SOURCE),
            gzip: Bytes::from(gzip),
            etag: format!("\"{hash:016x}\""),
            gzip_etag: format!("\"{hash:016x}-gzip\""),
        }
    })
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, b| {
        (hash ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}
