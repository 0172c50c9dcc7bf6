//! One line per request on stderr, in the Canarytrace server's format:
//! `2023-04-02T10:39:30.175Z POST /rum https://www.example.com/ 0.765kB`.
//! Lines go through a channel to one writer thread, so a request never waits
//! on the terminal.

use std::fmt::Write as _;

use crate::stderr_log::{self, Kind};

/// Bytes of the page URL a line keeps: a line is at most ~2.1 KB, so the
/// queue of `stderr_log::QUEUE_LINES` lines holds at most ~2 MB.
const MAX_PAGE_BYTES: usize = 2048;

/// Formats one access-log line (with its newline).
pub fn format_line(method: &str, path: &str, page: Option<&str>, body_bytes: usize) -> String {
    // The documents' own formatter (a fixed-width copy for today's date),
    // not chrono's format string, parsed again on every request.
    let mut now = Vec::with_capacity(24);
    crate::event::write_iso_millis(chrono::Utc::now().timestamp_millis(), &mut now);
    let now = std::str::from_utf8(&now).unwrap_or_default();
    // The page URL comes from the browser: keep it on one line, short, and
    // without what may carry secrets (user:pass@, query, fragment) — the log
    // is written before any scrub_url transform runs.
    let page = page
        .map(page_without_secrets)
        .unwrap_or_else(|| "-".to_owned());
    // Fields are split by spaces: a page must be one field of one line. A
    // page of printable ASCII that fits (every URL the parser wrote) is one
    // as it is; any other is made one.
    let page = if page.len() <= MAX_PAGE_BYTES && page.bytes().all(|b| b.is_ascii_graphic()) {
        page
    } else {
        one_field(&page)
    };
    // `{:.3}` of `body_bytes / 1000.0`, in integers: a whole number of
    // bytes has three decimals in kB, which the float's rounding kept.
    format!(
        "{now} {method} {path} {page} {}.{:03}kB\n",
        body_bytes / 1000,
        body_bytes % 1000
    )
}

/// `page` as one field of one line: whitespace and control characters (a
/// page that is no URL is kept as sent) written as their UTF-8 bytes
/// (`%20`), cut at `MAX_PAGE_BYTES` in bytes, not characters: the queue's
/// bound is in bytes.
fn one_field(page: &str) -> String {
    let mut kept = String::with_capacity(page.len().min(MAX_PAGE_BYTES));
    for c in page.chars() {
        let mut bytes = [0u8; 4];
        let encoded = c.encode_utf8(&mut bytes).as_bytes();
        let plain = !(c.is_control() || c.is_whitespace());
        let len = if plain {
            encoded.len()
        } else {
            3 * encoded.len()
        };
        if kept.len() + len > MAX_PAGE_BYTES {
            break;
        }
        if plain {
            kept.push(c);
        } else {
            for b in encoded {
                let _ = write!(kept, "%{b:02X}");
            }
        }
    }
    kept
}

fn page_without_secrets(page: &str) -> String {
    match crate::url_parts::plain_without_query(page) {
        Some(plain) => plain,
        None => parsed_without_secrets(page),
    }
}

/// What `page_without_secrets` gives for a page that is no plain URL: the
/// full parser's, or for no URL, the text before any `?` or `#`.
fn parsed_without_secrets(page: &str) -> String {
    match url::Url::parse(page) {
        Ok(mut url) => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.set_query(None);
            url.set_fragment(None);
            url.to_string()
        }
        Err(_) => page.split(['?', '#']).next().unwrap_or_default().to_owned(),
    }
}

/// Queues one line for stderr; never waits (see [`stderr_log`]).
pub fn log(method: &str, path: &str, page: Option<&str>, body_bytes: usize) {
    stderr_log::push(Kind::Access, format_line(method, path, page, body_bytes));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_the_canarytrace_shape() {
        // Not a URL, with a control character: still one line.
        let line = format_line("POST", "/rum", Some("/relative\nx?token=1"), 765);
        let parts: Vec<&str> = line.trim_end().split(' ').collect();
        assert_eq!(parts.len(), 5, "{line}");
        assert!(parts[0].ends_with('Z') && parts[0].len() == 24, "{line}");
        assert_eq!(&parts[1..], ["POST", "/rum", "/relative%0Ax", "0.765kB"]);
    }

    /// A page that is not a URL is logged as sent, and the line's fields
    /// are split by spaces: a page with spaces (or a control character,
    /// written as one) made a line of other fields, e.g. a forged size.
    #[test]
    fn a_page_cannot_add_fields_to_its_line() {
        for page in [
            "/a 999.999kB",
            "/a\tGET /health x",
            "/a\u{2028}b\u{a0}c\u{3000}d",
            "/a\r\n2026-01-01T00:00:00.000Z GET /rum - 0.001kB",
        ] {
            let line = format_line("POST", "/rum", Some(page), 765);
            let parts: Vec<&str> = line.trim_end_matches('\n').split(' ').collect();
            assert_eq!(parts.len(), 5, "{line:?}");
            assert_eq!(parts[4], "0.765kB", "{line:?}");
            assert!(!parts[3].contains(char::is_whitespace), "{line:?}");
        }
    }

    #[test]
    fn secrets_in_the_page_url_stay_out_of_the_log() {
        let line = format_line(
            "POST",
            "/rum",
            Some("https://alice:pw@shop.example.com/cart?token=abc#access_token=x"),
            1,
        );
        assert!(line.contains(" https://shop.example.com/cart "), "{line}");
        assert!(
            !line.contains("abc") && !line.contains("pw") && !line.contains("access_token"),
            "{line}"
        );
    }

    /// The queue's bound in bytes (`stderr_log::QUEUE_LINES` lines of ~2.1 KB) holds
    /// only if a line does: a page that is not a URL is cut as it came, and
    /// 2,048 four-byte characters made 8 KiB lines, a 4 × larger queue.
    #[test]
    fn a_line_is_short_in_bytes_whatever_the_characters() {
        for page in [
            "\u{1F600}".repeat(10_000),
            format!("/{}", "\u{e9}".repeat(10_000)),
        ] {
            let line = format_line("POST", "/rum", Some(&page), 1);
            assert!(line.len() <= 2048 + 64, "{} bytes", line.len());
            assert!(line.ends_with("kB\n"), "{line}");
        }
    }

    /// The line as it was written before 2026-12-05 (`url::Url` for every
    /// page, chrono's format string, a float for the size), but its time.
    fn line_before(method: &str, path: &str, page: Option<&str>, body_bytes: usize) -> String {
        let page = page
            .map(parsed_without_secrets)
            .unwrap_or_else(|| "-".to_owned());
        let page = one_field(&page);
        format!(
            "{method} {path} {page} {:.3}kB\n",
            body_bytes as f64 / 1000.0
        )
    }

    #[test]
    fn lines_are_written_as_before_without_the_full_parser() {
        const PIECES: &[&str] = &[
            "https://",
            "http://",
            "HTTPS://",
            "a",
            "Z",
            "0",
            "-",
            ".",
            "..",
            "/",
            ":",
            "?",
            "#",
            "%",
            "%2e",
            "@",
            "user:pw@",
            "\\",
            " ",
            "\t",
            "\n",
            "\u{7f}",
            "'",
            "\"",
            "<",
            "~",
            "&",
            "=",
            "443",
            ":80",
            "\u{e9}",
            "\u{2028}",
            "1.2.3.4",
            "example.com",
            "token=s3cret",
        ];
        let mut rng = fastrand::Rng::with_seed(5);
        let mut plain = 0;
        for round in 0..50_000 {
            // Most pages start as URLs do, so that many are plain.
            let mut page = String::from(["https://", "http://", ""][rng.usize(..3)]);
            for _ in 0..rng.usize(1..8) {
                page.push_str(PIECES[rng.usize(..PIECES.len())]);
            }
            if round % 1000 == 0 {
                page = format!("https://a.example/{}", "x".repeat(rng.usize(2000..2100)));
            }
            plain += usize::from(crate::url_parts::plain_without_query(&page).is_some());
            let bytes = rng.usize(..5_000_000);
            let line = format_line("POST", "/rum", Some(&page), bytes);
            let (time, rest) = line.split_once(' ').expect("a time first");
            assert_eq!(
                rest,
                line_before("POST", "/rum", Some(&page), bytes),
                "{page:?}"
            );
            assert_eq!(time.len(), 24, "{time}");
        }
        // The generator reaches the fast path, not only the parser.
        assert!(plain > 500, "only {plain} plain pages");
        let line = format_line("GET", "/rum", None, 0);
        assert_eq!(line.split_once(' ').unwrap().1, "GET /rum - 0.000kB\n");
    }
}
