//! A page URL as ECS fields: `url.full` and, when it parses, its scheme,
//! domain, port, path, query and fragment. One recipe for every place that
//! writes a URL (beacon and Web Vitals decoders, CSP reports, `scrub_url`).

use std::sync::LazyLock;

use serde_json::Value;

use crate::event::{Event, FieldId};
use crate::schema;

/// `url.full` and its parts when it parses; a part the URL lacks is `None`.
pub fn url_fields(full: &str) -> [(FieldId, Option<Value>); 7] {
    let mut out: [Option<(FieldId, Option<Value>)>; 7] = Default::default();
    let mut at = 0;
    for_each_url_field(full, |id, part| {
        out[at] = Some((id, part.map(Value::from)));
        at += 1;
    });
    out.map(|field| field.expect("seven fields, each handed over once"))
}

/// One of a URL's `url.*` fields, borrowed from the URL (or its parse).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum UrlPart<'u> {
    Text(&'u str),
    Port(u16),
}

impl From<UrlPart<'_>> for Value {
    fn from(part: UrlPart<'_>) -> Value {
        match part {
            UrlPart::Text(text) => Value::from(text),
            UrlPart::Port(port) => Value::from(port),
        }
    }
}

/// [`url_fields`] without making a `Value` of each: `field` is handed each
/// field's id and its part, in the same order, for a decoder that copies
/// the text where it keeps its strings. The order is the ids' (`url.domain`,
/// `url.fragment`, `url.full`, `url.path`, `url.port`, `url.query`,
/// `url.scheme`): set one after another into a sorted list of slots, each
/// goes after the one before, with no search and no move.
pub fn for_each_url_field(full: &str, mut field: impl FnMut(FieldId, Option<UrlPart<'_>>)) {
    static IDS: LazyLock<[FieldId; 7]> = LazyLock::new(|| {
        let ids = [
            schema::URL_DOMAIN,
            schema::URL_FRAGMENT,
            schema::URL_FULL,
            schema::URL_PATH,
            schema::URL_PORT,
            schema::URL_QUERY,
            schema::URL_SCHEME,
        ]
        .map(FieldId::of);
        debug_assert!(ids.is_sorted(), "the url.* ids in id order");
        ids
    });
    let ids = &*IDS;
    let url;
    let parts = match Parts::plain(full) {
        Some(parts) => Some(parts),
        None => {
            url = url::Url::parse(full).ok();
            url.as_ref().map(Parts::of)
        }
    };
    let parts = parts.as_ref();
    field(
        ids[0],
        parts.and_then(|p| p.host).map(site_host).map(UrlPart::Text),
    );
    field(ids[1], parts.and_then(|p| p.fragment).map(UrlPart::Text));
    field(ids[2], Some(UrlPart::Text(full)));
    field(ids[3], parts.map(|p| UrlPart::Text(p.path)));
    field(ids[4], parts.and_then(|p| p.port).map(UrlPart::Port));
    field(ids[5], parts.and_then(|p| p.query).map(UrlPart::Text));
    field(ids[6], parts.map(|p| UrlPart::Text(p.scheme)));
}

/// The host as a site: without the root's `.` of a fully qualified name
/// (`admin.example.com.`), which browsers and servers take as the same
/// host. Kept, a route or filter on `url.domain` written for the usual name
/// missed that page's events (an admin site "never stored" was stored).
/// `url.full` keeps what was sent.
fn site_host(host: &str) -> &str {
    match host.trim_end_matches('.') {
        "" => host,
        trimmed => trimmed,
    }
}

/// `full` as `url::Url` writes it once its user, password, query and
/// fragment are cleared, for a plain URL (`Parts::plain`, which has no
/// user); `None` for any other, which the caller gives to `url::Url`. The
/// access log writes every request's page so: the full parser and its
/// `to_string` were about a microsecond a request.
pub fn plain_without_query(full: &str) -> Option<String> {
    let parts = Parts::plain(full)?;
    let host = parts.host?;
    let mut out = String::with_capacity(full.len());
    out.push_str(parts.scheme);
    out.push_str("://");
    out.push_str(host);
    if let Some(port) = parts.port {
        // Rare (a port other than the scheme's): `fmt` is fine here.
        let _ = std::fmt::Write::write_fmt(&mut out, format_args!(":{port}"));
    }
    out.push_str(parts.path);
    Some(out)
}

/// Whether `text` parses as an absolute URL, as `url::Url::parse` has it
/// (a plain page URL is read without the full parser).
pub fn is_absolute_url(text: &str) -> bool {
    Parts::plain(text).is_some() || url::Url::parse(text).is_ok()
}

/// A URL's parts as `url::Url` gives them.
#[derive(Debug, PartialEq)]
struct Parts<'u> {
    scheme: &'u str,
    host: Option<&'u str>,
    port: Option<u16>,
    path: &'u str,
    query: Option<&'u str>,
    fragment: Option<&'u str>,
}

impl<'u> Parts<'u> {
    fn of(url: &'u url::Url) -> Self {
        Parts {
            scheme: url.scheme(),
            host: url.host_str(),
            port: url.port(),
            path: url.path(),
            query: url.query(),
            fragment: url.fragment(),
        }
    }

    /// The parts of a URL the WHATWG parser would leave exactly as written
    /// (lowercase `http(s)`, a lowercase ASCII domain or dotted-quad, no
    /// user, a canonical port, nothing to percent-encode or normalize), read
    /// straight from the text; `None` for anything else, which goes to
    /// `url::Url::parse`. Page URLs are nearly all plain, and the full
    /// parser costs several thousand instructions each, on every request.
    fn plain(full: &'u str) -> Option<Parts<'u>> {
        let (scheme, default_port, rest) = if let Some(rest) = full.strip_prefix("https://") {
            ("https", 443, rest)
        } else if let Some(rest) = full.strip_prefix("http://") {
            ("http", 80, rest)
        } else {
            return None;
        };
        let bytes = rest.as_bytes();
        // The host: its run of host bytes, checked as it is read; then a
        // port, and the authority must end there (at `/`, `?`, `#` or the
        // end). Any other byte (a user's `@`, an uppercase letter, `_`) is
        // for the full parser.
        let host_end = plain_host_end(bytes)?;
        let host = &rest[..host_end];
        let mut authority_end = host_end;
        let port = if bytes.get(host_end) == Some(&b':') {
            authority_end = run_end(bytes, host_end + 1, DIGIT);
            let digits = &rest[host_end + 1..authority_end];
            let canonical = !digits.is_empty()
                && digits.len() <= 5
                && (digits == "0" || !digits.starts_with('0'));
            let port: u16 = digits.parse().ok().filter(|_| canonical)?;
            (port != default_port).then_some(port)
        } else {
            None
        };
        if bytes
            .get(authority_end)
            .is_some_and(|&b| CLASS[usize::from(b)] & AUTHORITY_END == 0)
        {
            return None;
        }
        // The path, to the first `?` or `#`; the query, from that `?` to the
        // first `#`; the fragment, the rest. Read and checked in one walk.
        let mut at = authority_end;
        let path_end = plain_path_end(bytes, at)?;
        let path = &rest[at..path_end];
        at = path_end;
        let mut query = None;
        if bytes.get(at) == Some(&b'?') {
            let end = run_end(bytes, at + 1, QUERY);
            query = Some(&rest[at + 1..end]);
            at = end;
        }
        let mut fragment = None;
        if bytes.get(at) == Some(&b'#') {
            let end = run_end(bytes, at + 1, FRAGMENT);
            fragment = Some(&rest[at + 1..end]);
            at = end;
        }
        // What stopped the last run is a byte no part may hold.
        if at != bytes.len() {
            return None;
        }
        Some(Parts {
            scheme,
            host: Some(host),
            port,
            path: if path.is_empty() { "/" } else { path },
            query,
            fragment,
        })
    }
}

/// What a byte may be in each part of a plain URL, a bit each (`CLASS`).
/// Plain bytes are printable ASCII other than the backslash (which special
/// URLs read as `/`), less what the parser would percent-encode there.
/// A host's own byte: a lowercase letter, a digit, `-` or `.`.
const HOST: u8 = 1;
/// A path's byte that needs no look around it: not `/` or `%` (dot
/// segments), not `?` or `#` (which end it), not `"` `<` `>` `` ` `` `{` `}`.
const PATH: u8 = 2;
/// A query's byte: not `#` (which ends it), not `"` `<` `>` `'`.
const QUERY: u8 = 4;
/// A fragment's byte: not `"` `<` `>` `` ` ``.
const FRAGMENT: u8 = 8;
/// `/`, `?` or `#`: the end of the authority.
const AUTHORITY_END: u8 = 16;
const LOWERCASE: u8 = 32;
const DIGIT: u8 = 64;
/// `.`, which ends a host's label.
const DOT: u8 = 128;

static CLASS: [u8; 256] = byte_classes();

const fn byte_classes() -> [u8; 256] {
    let mut table = [0u8; 256];
    let mut b = 0x21;
    while b <= 0x7e {
        let c = b as u8;
        let mut class = 0;
        if c != b'\\' {
            if !matches!(
                c,
                b'/' | b'%' | b'?' | b'#' | b'"' | b'<' | b'>' | b'`' | b'{' | b'}'
            ) {
                class |= PATH;
            }
            if !matches!(c, b'#' | b'"' | b'<' | b'>' | b'\'') {
                class |= QUERY;
            }
            if !matches!(c, b'"' | b'<' | b'>' | b'`') {
                class |= FRAGMENT;
            }
        }
        if matches!(c, b'/' | b'?' | b'#') {
            class |= AUTHORITY_END;
        }
        if c.is_ascii_lowercase() {
            class |= LOWERCASE | HOST;
        }
        if c.is_ascii_digit() {
            class |= DIGIT | HOST;
        }
        if matches!(c, b'-' | b'.') {
            class |= HOST;
        }
        if c == b'.' {
            class |= DOT;
        }
        table[b] = class;
        b += 1;
    }
    table
}

/// From `at`, to the first byte without `class`'s bit: where the run ends.
fn run_end(bytes: &[u8], mut at: usize, class: u8) -> usize {
    while let Some(&b) = bytes.get(at) {
        if CLASS[usize::from(b)] & class == 0 {
            break;
        }
        at += 1;
    }
    at
}

/// Where a path the parser keeps as written ends (at its `?`, `#` or the
/// end): plain bytes, no `.` or `..` segment and no `%2e` (an encoded dot it
/// would resolve too). `None` for a path the parser would change.
fn plain_path_end(bytes: &[u8], from: usize) -> Option<usize> {
    let dot_segment = |segment: &[u8]| segment == b"." || segment == b"..";
    let mut segment_start = from;
    let mut at = from;
    while let Some(&b) = bytes.get(at) {
        if CLASS[usize::from(b)] & PATH != 0 {
            at += 1;
            continue;
        }
        match b {
            b'/' => {
                if dot_segment(&bytes[segment_start..at]) {
                    return None;
                }
                segment_start = at + 1;
            }
            b'%' => {
                if bytes.get(at + 1) == Some(&b'2')
                    && matches!(bytes.get(at + 2), Some(b'e' | b'E'))
                {
                    return None;
                }
            }
            b'?' | b'#' => break,
            _ => return None,
        }
        at += 1;
    }
    (!dot_segment(&bytes[segment_start..at])).then_some(at)
}

/// Where a host the parser keeps as written ends in `bytes` (at the first
/// byte no host has), `None` if it is not one: lowercase ASCII labels of
/// letters, digits and inner hyphens, the last one not a number, decimal or
/// `0x` hexadecimal (the parser would read an IPv4 address), no Punycode
/// (checked by IDNA); or a dotted quad in canonical decimal. One walk, which
/// also finds the host's end: each byte's class gathered into its label's,
/// each label checked at its end.
fn plain_host_end(bytes: &[u8]) -> Option<usize> {
    let mut labels = 0;
    let mut quad = true;
    let mut name = true;
    let mut start = 0;
    // The bits every byte of the label has, and any of them has.
    let mut all = u8::MAX;
    let mut any = 0;
    let mut at = 0;
    loop {
        let class = bytes.get(at).map_or(0, |&b| CLASS[usize::from(b)]);
        // A label's byte (a host byte other than `.`): one test.
        if class & (HOST | DOT) == HOST {
            all &= class;
            any |= class;
            at += 1;
            continue;
        }
        let label = &bytes[start..at];
        labels += 1;
        let digits = all & DIGIT != 0;
        quad = quad
            && !label.is_empty()
            && label.len() <= 3
            && digits
            && (label == b"0" || label[0] != b'0')
            && label.iter().fold(0u16, |n, d| n * 10 + u16::from(d - b'0')) <= 255;
        name = name
            && !label.is_empty()
            && label.len() <= 63
            && all & HOST != 0
            && !label.starts_with(b"xn--")
            && label[0] != b'-'
            && label[label.len() - 1] != b'-';
        if class & DOT == 0 {
            // The host's last label: `0x…` is a hexadecimal IPv4 number to
            // the parser (`0x7f` is 0.0.0.127), and one of digits a decimal.
            if at == 0 || at > 253 {
                return None;
            }
            if quad && labels == 4 {
                return Some(at);
            }
            let plain = name && !label.starts_with(b"0x") && any & LOWERCASE != 0;
            return plain.then_some(at);
        }
        all = u8::MAX;
        any = 0;
        at += 1;
        start = at;
    }
}

/// Writes `url.full` and, when it parses, its parts on an event; parts the
/// URL lacks are removed (for this event only).
pub fn set_url_fields(event: &mut Event, full: &str) {
    for (id, value) in url_fields(full) {
        match value {
            Some(value) => event.set(id, value),
            None => event.remove_id(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every URL the fast path reads must read as `url::Url` reads it, and
    /// be written without its query as `url::Url` writes it.
    fn same_as_the_parser(full: &str) -> bool {
        let Some(plain) = Parts::plain(full) else {
            assert_eq!(plain_without_query(full), None, "{full:?}");
            return false;
        };
        let mut url = url::Url::parse(full).unwrap_or_else(|e| panic!("{full:?}: {e}"));
        assert_eq!(plain, Parts::of(&url), "{full:?}");
        url.set_query(None);
        url.set_fragment(None);
        assert_eq!(
            plain_without_query(full).as_deref(),
            Some(url.as_str()),
            "{full:?}"
        );
        true
    }

    #[test]
    fn plain_urls_are_read_as_the_parser_reads_them() {
        for full in [
            "https://shop.example.com/product/42?ref=home",
            "http://127.0.0.1:39925/?v=3",
            "https://a.example",
            "https://a.example?q",
            "https://a.example#top",
            "https://a.example:8443/x?y=1&z=%20#frag/x?y#z",
            "http://a.example:80/",
            "https://a.example:443/",
            "http://a.example:443/",
            "https://a.example:0/",
            "https://x-1.b2.example/a.b/c..d/.e/f./%41?",
            "https://a.example/?",
            "https://a.example/#",
            "http://10.0.0.255/path",
            "https://a.example?q#f?x#y",
            "https://a.example:8080?x",
            "https://a.example/a?b/../c",
            "https://a.example#/./..",
            "https://0.a-b.example/%2f%41",
        ] {
            assert!(same_as_the_parser(full), "{full:?} should be read plainly");
        }
    }

    #[test]
    fn urls_the_parser_would_change_go_to_it() {
        for full in [
            "HTTPS://a.example/",
            "https://A.example/",
            "https://a.example:080/",
            "https://a.example:/",
            "https://a.example:65536/",
            "https://user@a.example/",
            "https://a.example/a/../b",
            "https://a.example/a/./b",
            "https://a.example/%2e%2E/b",
            "https://a.example/a b",
            "https://a.example/a\\b",
            "https://a.example/\u{e9}",
            "https://\u{e9}.example/",
            "https://xn--nxasmq6b.example/",
            "https://a.example./",
            "https://a..example/",
            "https://-a.example/",
            "https://a_b.example/",
            "http://127.1/",
            "http://0x7f.0.0.1/",
            "http://1.2.3.04/",
            "http://256.1.1.1/",
            "http://0x7f/",
            "http://1.2.3.0x4/",
            "http://a.0x/",
            "http://a.0x1f/",
            "http://1.2.3/",
            "https://a.example/?q='x'",
            "https://a.example/#`x`",
            "https://a.example/{x}",
            "https://a.example/?x#a<b",
            "https://a.example/?a<b#x",
            "https://a.example:8080\\x",
            "https://a.example:443:1/",
            "https://a.example:8080@b.example/",
            "https://a.example%41/",
            "https:///a",
            "https://a.example/x/..",
            " https://a.example/",
            "https://a.example/\t",
            "ftp://a.example/",
            "https:/a.example/",
            "/relative",
        ] {
            assert!(
                Parts::plain(full).is_none(),
                "{full:?} must go to the parser"
            );
        }
    }

    /// A page reached by its fully qualified name (`admin.example.com.`,
    /// which browsers and servers take as the same host) is the same site:
    /// a route or a `filter` on `url.domain` written for
    /// `admin.example.com` let that page's events through to be stored.
    #[test]
    fn a_fully_qualified_host_is_written_without_its_root_dot() {
        let domain_id = FieldId::of(schema::URL_DOMAIN);
        let domain = |full: &str| {
            url_fields(full)
                .into_iter()
                .find(|(id, _)| *id == domain_id)
                .and_then(|(_, value)| value?.as_str().map(str::to_owned))
        };
        assert_eq!(
            domain("https://admin.example.com./users"),
            Some("admin.example.com".into())
        );
        assert_eq!(
            domain("https://Admin.Example.com.:8443/"),
            Some("admin.example.com".into())
        );
        assert_eq!(
            domain("https://admin.example.com/"),
            Some("admin.example.com".into())
        );
        assert_eq!(domain("http://10.0.0.1./"), Some("10.0.0.1".into()));
        // `url.full` keeps what the browser sent.
        let full = FieldId::of(schema::URL_FULL);
        assert_eq!(
            url_fields("https://admin.example.com./")
                .into_iter()
                .find(|(id, _)| *id == full)
                .and_then(|(_, value)| value),
            Some(Value::from("https://admin.example.com./"))
        );
    }

    #[test]
    fn random_urls_read_plainly_agree_with_the_parser() {
        const PIECES: &[&str] = &[
            "a",
            "Z",
            "0",
            "9",
            "-",
            ".",
            "..",
            "/",
            "//",
            ":",
            "?",
            "#",
            "%",
            "%2e",
            "%41",
            "@",
            "\\",
            " ",
            "'",
            "\"",
            "`",
            "<",
            "{",
            "~",
            "&",
            "=",
            "+",
            "xn--",
            "80",
            "443",
            "\u{e9}",
            "1.2.3.4",
            "example.com",
            "com",
            "0x",
            "0x1f",
            "x",
            "_",
        ];
        let mut rng = fastrand::Rng::with_seed(11);
        let mut plain = 0;
        for _ in 0..200_000 {
            let mut url = String::from(if rng.bool() { "https://" } else { "http://" });
            for _ in 0..rng.usize(1..10) {
                url.push_str(PIECES[rng.usize(..PIECES.len())]);
            }
            if same_as_the_parser(&url) {
                plain += 1;
            }
        }
        // The generator reaches the fast path, not only the fallback.
        assert!(plain > 5_000, "only {plain} plain URLs generated");
    }
}
