//! Rate limits for log lines that a failing dependency can repeat thousands
//! of times (a WARN per partial 429, an ERROR per dead-lettered batch): the
//! first `burst` lines of each window are written, the rest are counted, and
//! one summary line — "N similar line(s) suppressed" — says how many were
//! held back. Metrics still count every occurrence; only the log is thinned.
//!
//! One `LogLimit` per kind of line (and per component), asked before logging:
//!
//! ```ignore
//! if limit.admit() { tracing::error!(component = %id, "...") }
//! ```
//!
//! The summary is written by the next admitted call after a window with
//! suppressed lines, or — when the lines have stopped — by a small task the
//! limiter starts itself (inside a tokio runtime), so a flood that ends is
//! still accounted for within about one window; and when the limiter is
//! dropped (its component stops).

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use tracing::Level;

/// Lines of one kind written per window before suppression begins.
pub const DEFAULT_BURST: u32 = 5;
/// Length of a window (and the longest a suppressed count waits for its summary).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// A limiter for one kind of log line.
pub struct LogLimit {
    /// Names the component and the kind of line in the summary,
    /// e.g. `sinks.es: documents dead-lettered`.
    what: String,
    /// The summary is written at the level of the lines it stands for.
    level: Level,
    burst: u32,
    window: Duration,
    state: Mutex<State>,
}

struct State {
    window_start: Instant,
    /// Lines written in the current window.
    written: u32,
    /// Lines held back since the last summary.
    suppressed: u64,
    /// When suppression began, for the summary's "in the last …".
    suppressed_since: Option<Instant>,
}

impl LogLimit {
    /// `burst` lines per `window`; the summary task runs only inside a tokio
    /// runtime (outside one, summaries come with the next admitted line).
    pub fn new(what: impl Into<String>, level: Level, burst: u32, window: Duration) -> Arc<Self> {
        let limit = Arc::new(Self {
            what: what.into(),
            level,
            burst: burst.max(1),
            window,
            state: Mutex::new(State {
                window_start: Instant::now(),
                written: 0,
                suppressed: 0,
                suppressed_since: None,
            }),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(summaries(Arc::downgrade(&limit), window));
        }
        limit
    }

    /// [`DEFAULT_BURST`] lines per [`DEFAULT_WINDOW`].
    pub fn standard(what: impl Into<String>, level: Level) -> Arc<Self> {
        Self::new(what, level, DEFAULT_BURST, DEFAULT_WINDOW)
    }

    /// Whether to write this line now. A `false` is counted for the summary.
    pub fn admit(&self) -> bool {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> bool {
        let pending = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            if now.duration_since(state.window_start) >= self.window {
                state.window_start = now;
                state.written = 0;
            }
            if state.written >= self.burst {
                state.suppressed += 1;
                state.suppressed_since.get_or_insert(now);
                return false;
            }
            state.written += 1;
            take_pending(&mut state, now)
        };
        if let Some((count, over)) = pending {
            self.summary(count, over);
        }
        true
    }

    /// Writes the summary of lines held back, if any (the periodic task's job).
    fn flush(&self, now: Instant) {
        let pending = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            // Only once the window that suppressed them is over: while the
            // flood goes on, one summary per window is enough.
            if now.duration_since(state.window_start) < self.window {
                return;
            }
            take_pending(&mut state, now)
        };
        if let Some((count, over)) = pending {
            self.summary(count, over);
        }
    }

    fn summary(&self, count: u64, over: Duration) {
        let what = &self.what;
        let secs = over.as_secs().max(1);
        match self.level {
            Level::ERROR => {
                tracing::error!("{what}: {count} similar line(s) suppressed in the last {secs} s")
            }
            Level::WARN => {
                tracing::warn!("{what}: {count} similar line(s) suppressed in the last {secs} s")
            }
            _ => tracing::info!("{what}: {count} similar line(s) suppressed in the last {secs} s"),
        }
    }

    /// Lines held back and not yet summarized (for tests and `/metrics`-less checks).
    pub fn pending(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .suppressed
    }
}

/// The last summary: a component shutting down still says what it held back.
impl Drop for LogLimit {
    fn drop(&mut self) {
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        if let Some((count, over)) = take_pending(state, Instant::now()) {
            self.summary(count, over);
        }
    }
}

fn take_pending(state: &mut State, now: Instant) -> Option<(u64, Duration)> {
    if state.suppressed == 0 {
        return None;
    }
    let count = std::mem::take(&mut state.suppressed);
    let since = state.suppressed_since.take().unwrap_or(now);
    Some((count, now.duration_since(since)))
}

/// Writes pending summaries once per window until the limiter is dropped.
async fn summaries(limit: Weak<LogLimit>, window: Duration) {
    let mut tick = tokio::time::interval(window);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(limit) = limit.upgrade() else { return };
        limit.flush(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(burst: u32) -> Arc<LogLimit> {
        LogLimit::new("test: lines", Level::WARN, burst, Duration::from_secs(60))
    }

    #[test]
    fn a_burst_passes_then_lines_are_counted() {
        let l = limit(3);
        let t0 = Instant::now();
        let admitted: Vec<bool> = (0..10).map(|_| l.admit_at(t0)).collect();
        assert_eq!(admitted.iter().filter(|a| **a).count(), 3);
        assert_eq!(l.pending(), 7);
    }

    #[test]
    fn a_new_window_admits_again_and_takes_the_summary() {
        let l = limit(2);
        let t0 = Instant::now();
        for _ in 0..5 {
            l.admit_at(t0);
        }
        assert_eq!(l.pending(), 3);
        // Still the same window: nothing more, nothing summarized.
        assert!(!l.admit_at(t0 + Duration::from_secs(30)));
        assert_eq!(l.pending(), 4);
        // The next window's first line writes the summary (count reset).
        assert!(l.admit_at(t0 + Duration::from_secs(61)));
        assert_eq!(l.pending(), 0);
    }

    #[test]
    fn the_periodic_flush_summarizes_a_flood_that_stopped() {
        let l = limit(1);
        let t0 = Instant::now();
        l.admit_at(t0);
        l.admit_at(t0);
        l.admit_at(t0);
        l.flush(t0 + Duration::from_secs(10));
        assert_eq!(l.pending(), 2, "not before the window ends");
        l.flush(t0 + Duration::from_secs(60));
        assert_eq!(l.pending(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_summary_task_ends_with_the_limiter() {
        let l = LogLimit::new("x", Level::ERROR, 1, Duration::from_secs(1));
        assert!(l.admit());
        assert!(!l.admit());
        drop(l);
        // The task holds only a weak reference: advancing time must not panic
        // or keep anything alive.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}
