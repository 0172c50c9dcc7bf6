//! Everything the running pipeline writes to stderr — log lines and
//! access-log lines — goes through one queue to one writer thread, so no
//! thread that logs ever waits on stderr. A stalled stderr (a log collector
//! that stops reading, as Docker's default `blocking` log mode allows; a
//! paused terminal) holds at most the queue; further lines are dropped and
//! counted. (Written to directly, a full pipe kept the worker that logged
//! the stats line, and the drain that logged "shutting down", waiting for
//! ever: SIGTERM was never obeyed.)

use std::io::Write;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::telemetry::Registry;

/// What a line is: each kind has its own room in the queue, so a flood of
/// requests (access lines) never takes the room of an error line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// One line per request (`access_log`).
    Access = 0,
    /// A `tracing` log line.
    Log = 1,
}

/// Lines of each kind waiting for the writer. An access line is at most
/// ~2.1 KB (its page URL is cut), so a stalled stderr holds ≤ ~2 MB of them.
pub const QUEUE_LINES: usize = 1024;

/// After writing fewer lines than this, the writer waits `GATHER_WAIT`
/// before it takes the next ones. At 1,024 lines of room a kind, that keeps
/// up with half a million lines a second.
const GATHER_LINES: u64 = 256;
const GATHER_WAIT: Duration = Duration::from_millis(1);

/// How long the process waits at exit for queued lines to be written: all
/// of them unless stderr is stalled, which must not keep it from exiting.
pub const EXIT_FLUSH: Duration = Duration::from_secs(1);

static STDERR: OnceLock<LineQueue> = OnceLock::new();

/// What the queue and its writer thread both see.
struct Shared {
    /// Lines of each kind queued and not yet taken by the writer.
    pending: [AtomicUsize; 2],
    /// Lines of each kind dropped because their room was full.
    dropped: [AtomicU64; 2],
    /// Lines written so far, signalled on each change (for `flush`).
    written: Mutex<u64>,
    wrote: Condvar,
}

/// A queue of lines, bounded per kind, in front of one writer thread.
pub(crate) struct LineQueue {
    /// `None` when the writer thread could not be started: lines are dropped.
    tx: Option<mpsc::Sender<(Kind, String)>>,
    capacity: usize,
    /// Lines accepted so far: `flush` waits until as many are written.
    queued: AtomicU64,
    shared: Arc<Shared>,
}

impl LineQueue {
    pub(crate) fn spawn(capacity: usize, mut out: impl Write + Send + 'static) -> Self {
        let shared = Arc::new(Shared {
            pending: [AtomicUsize::new(0), AtomicUsize::new(0)],
            dropped: [AtomicU64::new(0), AtomicU64::new(0)],
            written: Mutex::new(0),
            wrote: Condvar::new(),
        });
        let (tx, rx) = mpsc::channel::<(Kind, String)>();
        let writer = shared.clone();
        let spawned = std::thread::Builder::new()
            .name("stderr-log".into())
            .spawn(move || {
                let mut batch = String::new();
                while let Ok((kind, line)) = rx.recv() {
                    writer.pending[kind as usize].fetch_sub(1, Ordering::Relaxed);
                    batch.clear();
                    batch.push_str(&line);
                    let mut lines = 1;
                    // Batch whatever else is already queued, then write once.
                    while batch.len() < 256 * 1024 {
                        let Ok((kind, more)) = rx.try_recv() else {
                            break;
                        };
                        writer.pending[kind as usize].fetch_sub(1, Ordering::Relaxed);
                        batch.push_str(&more);
                        lines += 1;
                    }
                    let _ = out.write_all(batch.as_bytes());
                    let _ = out.flush();
                    *writer.written.lock().unwrap_or_else(|e| e.into_inner()) += lines;
                    writer.wrote.notify_all();
                    // A few lines only: the next ones gather for a moment
                    // before they are taken. Waiting in `recv`, the thread
                    // was woken by each line (a `futex` call by the worker
                    // that logged it, and a context switch, each request:
                    // with the access log on, per-site.toml served 34k
                    // beacons a second, 48k without it).
                    if lines < GATHER_LINES {
                        std::thread::sleep(GATHER_WAIT);
                    }
                }
            });
        let tx = match spawned {
            Ok(_) => Some(tx),
            Err(e) => {
                eprintln!("cannot start the stderr log writer: {e}");
                None
            }
        };
        Self {
            tx,
            capacity,
            queued: AtomicU64::new(0),
            shared,
        }
    }

    /// Never waits: a line whose kind has no room left is dropped and counted.
    pub(crate) fn push(&self, kind: Kind, line: String) {
        let Some(tx) = &self.tx else { return };
        let pending = &self.shared.pending[kind as usize];
        if pending.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            pending.fetch_sub(1, Ordering::Relaxed);
            self.shared.dropped[kind as usize].fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Counted before it is sent, so a flush never finds more written
        // than queued.
        self.queued.fetch_add(1, Ordering::AcqRel);
        let sent = tx.send((kind, line));
        if sent.is_err() {
            // The writer is gone (it cannot panic; kept for completeness).
            pending.fetch_sub(1, Ordering::Relaxed);
            self.queued.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Waits until every line queued so far is written, at most `wait`;
    /// true when all were.
    pub(crate) fn flush(&self, wait: Duration) -> bool {
        let target = self.queued.load(Ordering::Acquire);
        let deadline = Instant::now() + wait;
        let mut written = self
            .shared
            .written
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        while *written < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            written = self
                .shared
                .wrote
                .wait_timeout(written, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    pub(crate) fn dropped(&self, kind: Kind) -> u64 {
        self.shared.dropped[kind as usize].load(Ordering::Relaxed)
    }
}

/// Locks stderr per write: `eprintln!` (the binary's own messages before
/// and after the run) may write too.
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

fn stderr() -> &'static LineQueue {
    STDERR.get_or_init(|| LineQueue::spawn(QUEUE_LINES, Stderr))
}

/// Queues one line (with its newline) for stderr; never waits.
pub fn push(kind: Kind, line: String) {
    stderr().push(kind, line);
}

/// Waits until the lines queued so far are on stderr, at most `wait`: at
/// exit, and before the binary writes to stderr itself, to keep the order.
pub fn flush(wait: Duration) -> bool {
    STDERR.get().is_none_or(|queue| queue.flush(wait))
}

/// Exports `access_log_lines_dropped_total` and `log_lines_dropped_total`:
/// lines not written because stderr could not keep up.
pub fn register(registry: &Registry) {
    registry.counter_fn(
        "access_log_lines_dropped_total",
        "Access-log lines dropped because stderr did not keep up.",
        &[],
        || stderr().dropped(Kind::Access) as f64,
    );
    registry.counter_fn(
        "log_lines_dropped_total",
        "Log lines dropped because stderr did not keep up.",
        &[],
        || stderr().dropped(Kind::Log) as f64,
    );
}

/// Panic messages go through the queue too. Rust's default hook writes them
/// to stderr from the panicking thread, a worker when a handler or a
/// transform hits a bug: on a stalled stderr that worker waited for ever
/// (the panic is caught, and the pipeline meant to go on). The hook waits
/// at most `EXIT_FLUSH` for the message to be out, so a panic that ends the
/// process (on the main thread) is still on stderr before it exits.
///
/// A browser can trigger a bug again and again (a handler's or a
/// transform's panic is caught, and the request or batch counted): past
/// `PANIC_MESSAGES_PER_MINUTE` a minute, a worker's panic messages are held
/// back and counted in the next one written. The main thread's are always
/// written: they end the process.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let main = std::thread::current().name() == Some("main");
        let Some(held_back) = PANIC_MESSAGES.admit(Instant::now(), main) else {
            return;
        };
        let mut message = panic_message(info);
        if held_back > 0 {
            message.push_str(&format!(
                "({held_back} more panic message(s) held back since the last one written: at most {PANIC_MESSAGES_PER_MINUTE} a minute are; the panics are counted in component_errors_total{{error_type=\"panicked\"}} and http_handler_panics_total)\n"
            ));
        }
        push(Kind::Log, message);
        flush(EXIT_FLUSH);
    }));
}

/// Panic messages a minute written from worker threads.
const PANIC_MESSAGES_PER_MINUTE: u32 = 10;

static PANIC_MESSAGES: PanicMessages = PanicMessages(Mutex::new(PanicWindow {
    start: None,
    written: 0,
    held_back: 0,
}));

/// How many panic messages this minute has written, and how many were held
/// back since the last one written.
struct PanicMessages(Mutex<PanicWindow>);

struct PanicWindow {
    start: Option<Instant>,
    written: u32,
    held_back: u64,
}

impl PanicMessages {
    /// `Some(held back before it)` when a message is to be written now.
    fn admit(&self, now: Instant, always: bool) -> Option<u64> {
        let mut window = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if window
            .start
            .is_none_or(|start| now.saturating_duration_since(start) >= Duration::from_secs(60))
        {
            window.start = Some(now);
            window.written = 0;
        }
        if window.written >= PANIC_MESSAGES_PER_MINUTE && !always {
            window.held_back += 1;
            return None;
        }
        window.written += 1;
        Some(std::mem::take(&mut window.held_back))
    }
}

/// `text` on one line: its control characters (line breaks, escape codes)
/// written escaped (`\n`, `\u{1b}`). For text a browser may have chosen
/// that goes into a log line — an engine's error reason, a panic's message
/// (a standard-library panic can quote the string it failed on): a line
/// break in it must not start a log line of its own.
pub fn one_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.contains(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A panic's message, on one line (`one_line`).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    one_line(message).into_owned()
}

/// What the default hook writes: the thread, where, the message, and the
/// backtrace when `RUST_BACKTRACE` asks for one.
fn panic_message(info: &std::panic::PanicHookInfo<'_>) -> String {
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed>");
    let place = info
        .location()
        .map_or_else(|| "an unknown place".to_owned(), |l| l.to_string());
    let message = panic_text(info.payload());
    let mut text = format!("\nthread '{name}' panicked at {place}:\n{message}\n");
    let backtrace = std::backtrace::Backtrace::capture();
    if backtrace.status() == std::backtrace::BacktraceStatus::Captured {
        text.push_str(&format!("stack backtrace:\n{backtrace}\n"));
    } else {
        text.push_str(
            "note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
        );
    }
    text
}

/// The `tracing` subscriber's writer: each event's line goes to the queue.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;
    fn make_writer(&'a self) -> LogLine {
        LogLine(Vec::new())
    }
}

/// One event's formatted text, queued when the formatter is done with it.
pub struct LogLine(Vec<u8>);

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            let text = String::from_utf8_lossy(&std::mem::take(&mut self.0)).into_owned();
            push(Kind::Log, text);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks every write until `open` is set, then keeps what it got;
    /// `entered` says a write has begun (the writer thread is stuck in it).
    struct Gate {
        open: Arc<(Mutex<bool>, Condvar)>,
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

    fn wait_entered(entered: &std::sync::atomic::AtomicBool) {
        let start = Instant::now();
        while !entered.load(Ordering::SeqCst) {
            assert!(start.elapsed().as_secs() < 10, "the writer never wrote");
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_stalled_writer_holds_a_bounded_queue_and_counts_the_rest() {
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let entered = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let written = Arc::new(Mutex::new(Vec::new()));
        let gate = Gate {
            open: open.clone(),
            entered: entered.clone(),
            written: written.clone(),
        };
        let queue = LineQueue::spawn(8, gate);
        // The writer takes the first line and is stuck writing it.
        queue.push(Kind::Access, "first\n".to_owned());
        wait_entered(&entered);
        // 8 lines wait; the rest are dropped at once, never waiting or piling up.
        for i in 0..1000 {
            queue.push(Kind::Access, format!("line {i}\n"));
        }
        assert_eq!(queue.dropped(Kind::Access), 1000 - 8);
        // A log line has room of its own, and waits in order.
        queue.push(Kind::Log, "an error\n".to_owned());
        assert_eq!(queue.dropped(Kind::Log), 0);
        // Flushing a stalled writer gives up.
        assert!(!queue.flush(Duration::from_millis(1)));
        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        assert!(queue.flush(Duration::from_secs(60)), "never written");
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 10, "{text}");
        assert!(text.starts_with("first\nline 0\n"), "{text}");
        assert!(text.ends_with("line 7\nan error\n"), "{text}");
    }

    /// A worker's panic messages past ten a minute are held back and
    /// counted in the next one written; the main thread's always go out.
    #[test]
    fn panic_messages_past_ten_a_minute_are_held_back_and_counted() {
        let messages = PanicMessages(Mutex::new(PanicWindow {
            start: None,
            written: 0,
            held_back: 0,
        }));
        let start = Instant::now();
        for _ in 0..10 {
            assert_eq!(messages.admit(start, false), Some(0));
        }
        assert_eq!(messages.admit(start, false), None);
        assert_eq!(messages.admit(start + Duration::from_secs(30), false), None);
        // The main thread's panic ends the process: always written.
        assert_eq!(
            messages.admit(start + Duration::from_secs(31), true),
            Some(2)
        );
        assert_eq!(messages.admit(start + Duration::from_secs(59), false), None);
        // A new minute: written again, with the count held back.
        assert_eq!(
            messages.admit(start + Duration::from_secs(60), false),
            Some(1)
        );
        assert_eq!(
            messages.admit(start + Duration::from_secs(61), false),
            Some(0)
        );
    }

    /// The queued panic message reads as the default hook's: the thread,
    /// where, and the message (what the fuzzer and a reader search for).
    #[test]
    fn a_panic_message_names_its_thread_place_and_message() {
        let got = Arc::new(Mutex::new(String::new()));
        let into = got.clone();
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some("panicking-worker") {
                *into.lock().unwrap() = panic_message(info);
            }
        }));
        let joined = std::thread::Builder::new()
            .name("panicking-worker".into())
            .spawn(|| panic!("byte index 3 is out of bounds\n2026-01-01 ERROR forged\u{1b}[2J"))
            .unwrap()
            .join();
        std::panic::set_hook(previous);
        assert!(joined.is_err());
        let text = got.lock().unwrap().clone();
        assert!(
            text.starts_with("\nthread 'panicking-worker' panicked at src/stderr_log.rs:"),
            "{text}"
        );
        // The message on one line: a line break it quotes starts no line.
        assert!(
            text.contains(":\nbyte index 3 is out of bounds\\n2026-01-01 ERROR forged\\u{1b}[2J\n"),
            "{text}"
        );
    }
}
