//! One line per request on stderr, in the Canarytrace server's format:
//! `2023-04-02T10:39:30.175Z POST /rum https://www.example.com/ 0.765kB`.
//! Lines go through a channel to one writer thread, so a request never waits
//! on the terminal.

use std::io::Write;
use std::sync::mpsc;
use std::sync::OnceLock;

static WRITER: OnceLock<mpsc::Sender<String>> = OnceLock::new();

fn writer() -> &'static mpsc::Sender<String> {
    WRITER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<String>();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || {
                let stderr = std::io::stderr();
                let mut batch = String::new();
                while let Ok(line) = rx.recv() {
                    batch.clear();
                    batch.push_str(&line);
                    // Batch whatever else is already queued, then write once.
                    while let Ok(more) = rx.try_recv() {
                        batch.push_str(&more);
                    }
                    // Lock per write, never for the thread's life: the logger
                    // writes to stderr too, and would wait forever.
                    let _ = stderr.lock().write_all(batch.as_bytes());
                }
            });
        if let Err(e) = spawned {
            tracing::error!("cannot start the access-log writer: {e}");
        }
        tx
    })
}

/// Formats one access-log line (with its newline).
pub fn format_line(method: &str, path: &str, page: Option<&str>, body_bytes: usize) -> String {
    let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    // The page URL comes from the browser: keep it on one line, short, and
    // without what may carry secrets (user:pass@, query, fragment) — the log
    // is written before any scrub_url transform runs.
    let page: String = page
        .map(page_without_secrets)
        .unwrap_or_else(|| "-".to_owned())
        .chars()
        .take(2048)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
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

pub fn log(method: &str, path: &str, page: Option<&str>, body_bytes: usize) {
    let _ = writer().send(format_line(method, path, page, body_bytes));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_has_the_canarytrace_shape() {
        // Not a URL, with a control character: still one line.
        let line = format_line("POST", "/rum", Some("/relative\nx?token=1"), 765);
        let parts: Vec<&str> = line.trim_end().split(' ').collect();
        assert_eq!(parts.len(), 6, "{line}");
        assert!(parts[0].ends_with('Z') && parts[0].len() == 24, "{line}");
        assert_eq!(&parts[1..], ["POST", "/rum", "/relative", "x", "0.765kB"]);
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
}
