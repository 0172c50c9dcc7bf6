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
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    // The page URL comes from the browser: keep it on one line, short, and
    // without what may carry secrets (user:pass@, query, fragment) — the log
    // is written before any scrub_url transform runs.
    let page = page
        .map(page_without_secrets)
        .unwrap_or_else(|| "-".to_owned());
    // Fields are split by spaces: whitespace and control characters (a
    // page that is no URL is kept as sent) are written as their UTF-8
    // bytes, `%20`, so a page is one field of one line. Cut in bytes, not
    // characters: the queue's bound is in bytes.
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
    let page = kept;
    format!(
        "{now} {method} {path} {page} {:.3}kB\n",
        body_bytes as f64 / 1000.0
    )
}

fn page_without_secrets(page: &str) -> String {
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
}
