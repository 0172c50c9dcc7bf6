//! One line per request on stderr, in the Canarytrace server's format:
//! `2023-04-02T10:39:30.175Z POST /rum https://www.example.com/ 0.765kB`.
//! Lines go through a channel to one writer thread, so a request never waits
//! on the terminal.

use std::fmt::Write as _;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::OnceLock;

use crate::telemetry::Registry;

/// Lines waiting for the writer thread. A line is at most ~2.1 KB (the page
/// URL is cut at `MAX_PAGE_BYTES`), so a stalled stderr holds ≤ ~2 MB;
/// beyond that, lines are dropped and counted rather than queued.
const QUEUE_LINES: usize = 1024;

/// Bytes of the page URL a line keeps.
const MAX_PAGE_BYTES: usize = 2048;

static STDERR_LOG: OnceLock<LineQueue> = OnceLock::new();

/// A bounded queue of lines in front of one writer thread.
struct LineQueue {
    tx: Option<mpsc::SyncSender<String>>,
    dropped: AtomicU64,
}

impl LineQueue {
    fn spawn(capacity: usize, mut out: impl Write + Send + 'static) -> Self {
        let (tx, rx) = mpsc::sync_channel::<String>(capacity);
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let mut batch = String::new();
                while let Ok(line) = rx.recv() {
                    batch.clear();
                    batch.push_str(&line);
                    // Batch whatever else is already queued, then write once.
                    while batch.len() < 256 * 1024 {
                        let Ok(more) = rx.try_recv() else { break };
                        batch.push_str(&more);
                    }
                    let _ = out.write_all(batch.as_bytes());
                }
            });
        match spawned {
            Ok(_) => Self {
                tx: Some(tx),
                dropped: AtomicU64::new(0),
            },
            Err(e) => {
                tracing::error!("cannot start the access-log writer: {e}");
                Self {
                    tx: None,
                    dropped: AtomicU64::new(0),
                }
            }
        }
    }

    /// Never waits: a full queue drops the line and counts it.
    fn push(&self, line: String) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::TrySendError::Full(_)) = tx.try_send(line) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Locks stderr per write, never for the thread's life: the logger writes to
/// stderr too, and would wait forever.
struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        std::io::stderr().lock().write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        std::io::stderr().lock().write_all(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().lock().flush()
    }
}

fn stderr_log() -> &'static LineQueue {
    STDERR_LOG.get_or_init(|| LineQueue::spawn(QUEUE_LINES, Stderr))
}

/// Exports `access_log_lines_dropped_total`: lines not written because
/// stderr could not keep up (a paused terminal, a stalled pipe).
pub fn register(registry: &Registry) {
    registry.counter_fn(
        "access_log_lines_dropped_total",
        "Access-log lines dropped because stderr did not keep up.",
        &[],
        || stderr_log().dropped.load(Ordering::Relaxed) as f64,
    );
}

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

/// Queues one line for stderr; never waits (see [`QUEUE_LINES`]).
pub fn log(method: &str, path: &str, page: Option<&str>, body_bytes: usize) {
    stderr_log().push(format_line(method, path, page, body_bytes));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// Blocks every write until `open` is set, then keeps what it got;
    /// `entered` says a write has begun (the writer thread is stuck in it).
    struct Gate {
        open: Arc<(Mutex<bool>, std::sync::Condvar)>,
        entered: Arc<std::sync::atomic::AtomicBool>,
        written: Arc<Mutex<Vec<u8>>>,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.entered.store(true, Ordering::SeqCst);
            let (lock, cvar) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cvar.wait(open).unwrap();
            }
            self.written.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_stalled_writer_holds_a_bounded_queue_and_counts_the_rest() {
        let open = Arc::new((Mutex::new(false), std::sync::Condvar::new()));
        let entered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Vec::new()));
        let queue = LineQueue::spawn(
            8,
            Gate {
                open: open.clone(),
                entered: entered.clone(),
                written: written.clone(),
            },
        );
        // The writer takes the first line and is stuck writing it.
        queue.push("first\n".to_owned());
        let start = std::time::Instant::now();
        while !entered.load(Ordering::SeqCst) {
            assert!(start.elapsed().as_secs() < 10, "the writer never wrote");
            std::thread::yield_now();
        }
        // 8 lines wait; the rest are dropped at once, never waiting or piling up.
        for i in 0..1000 {
            queue.push(format!("line {i}\n"));
        }
        assert_eq!(queue.dropped.load(Ordering::Relaxed), 1000 - 8);
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        for _ in 0..1000 {
            let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
            if text.lines().count() == 9 {
                assert!(text.starts_with("first\nline 0\n"), "{text}");
                assert!(text.ends_with("line 7\n"), "{text}");
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the 9 kept lines never reached the writer");
    }

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

    /// The queue's bound in bytes (`QUEUE_LINES` lines of ~2.1 KB) holds
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
