//! Sink `stdout`: one JSON document per event and line (or pretty-printed),
//! for debugging a pipeline. Everything already waiting is written at once.
//! When stdout is closed (a broken pipe), the sink says so once (in the log
//! and on /health), stops writing, and keeps reading its input — counted as
//! discarded — so the rest of the pipeline (other sinks of a fan-out) is not
//! stalled by it.

use std::future::Future;
use std::sync::Arc;

use serde::Deserialize;

use super::{SinkContext, SinkFuture};
use crate::event::Event;
use crate::http::server::Health;
use crate::telemetry::{ComponentMetrics, Counter};
use crate::topology::buffer::DEFAULT_OUTPUT;
use crate::topology::SinkInput;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Encoding {
    /// One compact JSON document per line (NDJSON).
    #[default]
    Json,
    /// Indented JSON, documents separated by a newline.
    Pretty,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StdoutConfig {
    /// `json` (one document per line) or `pretty`.
    #[serde(default)]
    pub encoding: Encoding,
}

/// Stop gathering waiting batches past this many bytes, to bound memory.
const MAX_WRITE_BYTES: usize = 1024 * 1024;

/// Below this many bytes to write, the sink lets its upstreams run once
/// before it writes (see `run`).
const COALESCE_BYTES: usize = 64 * 1024;

pub fn encode(event: &Event, encoding: Encoding, out: &mut Vec<u8>) {
    match encoding {
        Encoding::Json => event.write_json(out),
        Encoding::Pretty => event.write_json_pretty(out),
    }
    out.push(b'\n');
}

/// Where a sink's lines go.
trait LineOut: Send {
    /// Writes all of `buf` and gives it back (emptied by the caller, kept
    /// for its capacity), with how many of its bytes are known to be out:
    /// all of them, or on an error those before it.
    fn put(
        &mut self,
        buf: Vec<u8>,
    ) -> impl Future<Output = (Vec<u8>, usize, std::io::Result<()>)> + Send;
}

/// The process's stdout, written by the blocking pool from the sink's own
/// buffer. (`tokio::io::Stdout` copied each buffer into one of its own
/// first: 1.35 % of `per-site.toml`'s samples.)
struct ProcessStdout;

impl LineOut for ProcessStdout {
    async fn put(&mut self, buf: Vec<u8>) -> (Vec<u8>, usize, std::io::Result<()>) {
        let writing = tokio::task::spawn_blocking(move || {
            let (out, result) = write_to_stdout(&buf);
            (buf, out, result)
        });
        match writing.await {
            Ok(done) => done,
            // The write panicked or was cancelled: nothing is vouched for.
            Err(error) => (Vec::new(), 0, Err(std::io::Error::other(error))),
        }
    }
}

/// `buf` written to file descriptor 1 as the kernel takes it (no buffer of
/// std's in between, so the bytes counted out are the kernel's): how many
/// went out, and the error that stopped the rest.
fn write_to_stdout(buf: &[u8]) -> (usize, std::io::Result<()>) {
    let mut out = 0;
    while out < buf.len() {
        let rest = &buf[out..];
        // SAFETY: `write(2)` reads `rest.len()` bytes from a live slice and
        // writes no memory of ours.
        let n = unsafe { libc::write(1, rest.as_ptr().cast(), rest.len()) };
        match n {
            n if n > 0 => out += n as usize,
            0 => return (out, Err(std::io::ErrorKind::WriteZero.into())),
            _ => {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return (out, Err(error));
                }
            }
        }
    }
    (out, Ok(()))
}

/// Lines on their way to stdout, and what becomes of the events in them.
struct Lines<W> {
    writer: W,
    buf: Vec<u8>,
    /// Where each event's line (or pretty lines) ends in `buf`: when a
    /// write fails part way, the events wholly out are sent, the rest
    /// discarded.
    ends: Vec<usize>,
    /// Set by the first failed write: stdout is gone (a broken pipe), and
    /// every event from then on is counted as discarded unwritten.
    closed: bool,
    encoding: Encoding,
    id: String,
    received: Counter,
    /// Events taken in and neither sent nor discarded yet (their lines
    /// wait in `buf`, or are in a write). Should the sink be stopped
    /// before it settles them (aborted at the shutdown timeout inside a
    /// stalled write), they are counted as discarded then (`Drop`).
    held: u64,
    sent: Counter,
    discarded: Counter,
    write_failed: Counter,
    /// Lists the sink as degraded once stdout is gone: the pipeline still
    /// answers 204, and everything this sink gets is dropped.
    health: Arc<Health>,
}

impl<W: LineOut> Lines<W> {
    /// Encodes the batch's events, written out whenever the buffer passes
    /// `MAX_WRITE_BYTES` (events that carry a big context never pile up).
    async fn take(&mut self, batch: &[Event]) {
        self.received.add(batch.len() as u64);
        self.held += batch.len() as u64;
        for event in batch {
            if self.closed {
                self.discarded.add(1);
                self.held -= 1;
                continue;
            }
            encode(event, self.encoding, &mut self.buf);
            self.ends.push(self.buf.len());
            if self.buf.len() >= MAX_WRITE_BYTES {
                self.write_out().await;
            }
        }
    }

    /// Writes and empties the buffer: its events are sent, or, from where
    /// a write fails (stdout is gone), discarded: those whose lines were
    /// wholly out before the failure are sent.
    async fn write_out(&mut self) {
        // Bytes known to be out.
        let mut confirmed = 0;
        if !self.closed && !self.buf.is_empty() {
            let (buf, out, result) = self.writer.put(std::mem::take(&mut self.buf)).await;
            self.buf = buf;
            confirmed = out;
            if let Err(error) = result {
                self.closed = true;
                self.write_failed.inc();
                tracing::error!(component = %self.id, %error, "stdout is closed; further events are counted as discarded");
                self.health.set_degraded(
                    &self.id,
                    Some("stdout is closed; its events are counted as discarded".to_owned()),
                );
            }
        }
        let out = if self.closed {
            self.ends.partition_point(|&end| end <= confirmed)
        } else {
            self.ends.len()
        };
        self.sent.add(out as u64);
        self.discarded.add((self.ends.len() - out) as u64);
        self.held -= self.ends.len() as u64;
        self.ends.clear();
        self.buf.clear();
    }
}

impl<W> Drop for Lines<W> {
    fn drop(&mut self) {
        if self.held > 0 {
            // Some of their lines may have reached stdout: none is vouched for.
            self.discarded.add(self.held);
            tracing::error!(
                component = %self.id,
                "{} events taken in were not written: the sink was stopped in the middle of its work",
                self.held
            );
        }
    }
}

/// The sink's loop: everything already waiting is written at once.
async fn run<W: LineOut>(
    writer: W,
    encoding: Encoding,
    metrics: ComponentMetrics,
    mut input: SinkInput,
    health: Arc<Health>,
) {
    let mut lines = Lines {
        writer,
        buf: Vec::with_capacity(64 * 1024),
        ends: Vec::new(),
        closed: false,
        encoding,
        id: metrics.id.clone(),
        received: metrics.received_events.clone(),
        held: 0,
        sent: metrics.sent_events(DEFAULT_OUTPUT),
        discarded: metrics.discarded_unintentional.clone(),
        write_failed: metrics.errors("write_failed", "sending"),
        health,
    };
    while let Some(batch) = input.recv().await {
        lines.take(&batch).await;
        crate::event::drop_batch(batch);
        let mut yielded = false;
        loop {
            while lines.buf.len() < MAX_WRITE_BYTES {
                let Some(more) = input.try_recv() else { break };
                lines.take(&more).await;
                crate::event::drop_batch(more);
            }
            // Little to write and nothing waiting: the upstreams get one turn
            // first. Under load they have more on the way, and a write per
            // small batch is a hand-off to the blocking pool each (a sink
            // fed by three tasks wrote 0.68 times a beacon, against 0.47 fed
            // by one that merged their batches). Idle, it costs one poll.
            if yielded || lines.buf.len() >= COALESCE_BYTES {
                break;
            }
            yielded = true;
            tokio::task::yield_now().await;
        }
        lines.write_out().await;
        // One huge batch must not keep its buffer for ever.
        lines.buf.shrink_to(4 * MAX_WRITE_BYTES);
        lines.ends.shrink_to(16 * 1024);
    }
}

impl StdoutConfig {
    pub fn build(&self, cx: SinkContext) -> anyhow::Result<SinkFuture> {
        let SinkContext {
            metrics,
            input,
            health,
            ..
        } = cx;
        Ok(Box::pin(run(
            ProcessStdout,
            self.encoding,
            metrics,
            input,
            health,
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;
    use tokio::io::{AsyncWrite, AsyncWriteExt};

    #[test]
    fn json_is_one_line_per_event() {
        let event = Event::from(
            json!({"rum": {"type": "action"}, "@timestamp": "2026-01-01T00:00:00.000Z"}),
        );
        let mut out = Vec::new();
        encode(&event, Encoding::Json, &mut out);
        encode(&event, Encoding::Json, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"@timestamp\":\"2026-01-01T00:00:00.000Z\",\"rum\":{\"type\":\"action\"}}\n"
                .repeat(2)
        );
    }

    #[test]
    fn pretty_is_indented() {
        let mut out = Vec::new();
        encode(
            &Event::from(json!({"rum": {"seq": 1}})),
            Encoding::Pretty,
            &mut out,
        );
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\n  \"rum\": {\n    \"seq\": 1\n  }\n}\n"
        );
    }

    /// Takes `room` bytes, then fails as a closed pipe does, and as
    /// tokio's stdout reports it: a write is taken whole at once, and its
    /// failure is the answer to the next call.
    struct PipeClosingAfter {
        room: usize,
        got: Vec<u8>,
        failed: bool,
    }

    impl AsyncWrite for PipeClosingAfter {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            if self.failed {
                return std::task::Poll::Ready(Err(std::io::ErrorKind::BrokenPipe.into()));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            self.got.extend_from_slice(&buf[..n]);
            self.failed = n < buf.len();
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(if self.failed {
                Err(std::io::ErrorKind::BrokenPipe.into())
            } else {
                Ok(())
            })
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    /// Lines into any `AsyncWrite`, as `tokio::io::Stdout` takes them: a
    /// write is taken whole at once and its failure is the answer to the
    /// next call, so a write's bytes count as out only once a later write
    /// or the flush succeeded.
    struct Async<W>(W);

    impl<W: AsyncWrite + Unpin + Send> LineOut for Async<W> {
        async fn put(&mut self, buf: Vec<u8>) -> (Vec<u8>, usize, std::io::Result<()>) {
            let (mut written, mut confirmed) = (0, 0);
            let result = loop {
                if written == buf.len() {
                    let flushed = self.0.flush().await;
                    if flushed.is_ok() {
                        confirmed = written;
                    }
                    break flushed;
                }
                match self.0.write(&buf[written..]).await {
                    Ok(0) => break Err(std::io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        confirmed = written;
                        written += n;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => break Err(e),
                }
            };
            (buf, confirmed, result)
        }
    }

    /// A stdout that takes nothing and never says why (a stalled pipe).
    struct Stalled;

    impl AsyncWrite for Stalled {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            _: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            std::task::Poll::Pending
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Pending
        }
    }

    /// The sink stopped inside a write that does not end (aborted at the
    /// shutdown timeout): what it had taken in and not vouched for as
    /// written is counted as discarded, so its counters add up.
    #[tokio::test(start_paused = true)]
    async fn events_held_by_a_sink_stopped_in_a_stalled_write_are_counted() {
        let registry = crate::telemetry::Registry::new();
        let metrics = ComponentMetrics::new(&registry, "out", "sink", "stdout");
        let (tx, rx) = crate::topology::buffer::buffer(10_000, usize::MAX);
        let event = |i: usize| Event::from(json!({"rum": {"seq": i}}));
        tx.send((0..3).map(event).collect()).await.unwrap();
        tx.send((3..5).map(event).collect()).await.unwrap();
        let health = Arc::new(Health::default());
        let running = run(
            Async(Stalled),
            Encoding::Json,
            metrics.clone(),
            rx.into(),
            health,
        );
        let stopped = tokio::time::timeout(Duration::from_secs(10), running).await;
        assert!(stopped.is_err(), "the write never ends");
        assert_eq!(metrics.received_events.get(), 5);
        assert_eq!(metrics.sent_total(), 0);
        assert_eq!(metrics.discarded_unintentional.get(), 5);
    }

    /// Events whose lines stdout took are sent, the others discarded, when
    /// it closes in the middle of a batch; none is counted sent that a
    /// failed write held. (The whole batch was counted discarded, lines
    /// written and flushed before included.)
    #[tokio::test]
    async fn events_written_before_stdout_closes_count_as_sent() {
        let registry = crate::telemetry::Registry::new();
        let metrics = ComponentMetrics::new(&registry, "out", "sink", "stdout");
        let (tx, rx) = crate::topology::buffer::buffer(10_000, usize::MAX);
        // Lines of about 100 KB: the first write goes out after 11 of them.
        let big = |i: usize| {
            Event::from(json!({"rum": {"seq": i}, "view": {"title": "t".repeat(100_000)}}))
        };
        tx.send((0..20).map(big).collect()).await.unwrap();
        tx.send((20..25).map(big).collect()).await.unwrap();
        drop(tx);
        let mut line = Vec::new();
        encode(&big(10), Encoding::Json, &mut line);
        let mut pipe = PipeClosingAfter {
            room: 15 * line.len(),
            got: Vec::new(),
            failed: false,
        };
        let health = Arc::new(Health::default());
        run(
            Async(&mut pipe),
            Encoding::Json,
            metrics.clone(),
            rx.into(),
            health.clone(),
        )
        .await;
        // What a probe sees: the pipeline runs, this sink drops everything.
        assert_eq!(
            health.degraded().get("out").map(String::as_str),
            Some("stdout is closed; its events are counted as discarded")
        );
        let lines = pipe.got.iter().filter(|&&b| b == b'\n').count() as u64;
        assert_eq!(lines, 15);
        assert_eq!(metrics.received_events.get(), 25);
        // The first write (11 lines, past 1 MiB) went out and was flushed;
        // the second was taken and failed: none of it is vouched for.
        let sent = metrics.sent_total();
        assert_eq!(sent, 11);
        assert_eq!(metrics.discarded_unintentional.get(), 25 - sent);
    }

    /// The pretty document is the compact one indented: the same values to
    /// the last digit, whatever they are. (It went through a
    /// `serde_json::Value` read back from the compact text: without the
    /// `float_roundtrip` feature that reader lands one step off for many
    /// floats of 17 digits, so pretty showed other numbers than json did;
    /// and past 128 levels of nesting it gave up and printed `null`.)
    #[test]
    fn pretty_is_the_json_document_indented() {
        let mut deep = json!("bottom");
        for _ in 0..140 {
            deep = json!({ "d": deep });
        }
        let event = Event::from(json!({
            "rum": {
                "vital": {"value": 3.849_656_898_329_307_6e-144},
                "extra": {
                    "f": [2.172_033_503_072_606_8e-23, -0.0, {}, [], "a\"b\\c: ,{}[]\n\u{2028}"],
                    "deep": deep,
                },
            },
        }));
        let mut json = Vec::new();
        encode(&event, Encoding::Json, &mut json);
        let mut pretty = Vec::new();
        encode(&event, Encoding::Pretty, &mut pretty);
        let pretty = String::from_utf8(pretty).unwrap();
        assert!(pretty.contains("3.8496568983293076e-144"), "{pretty}");
        // With the whitespace outside strings taken out, pretty is json.
        let mut squeezed = Vec::new();
        let (mut in_string, mut escaped) = (false, false);
        for &b in pretty.as_bytes() {
            if in_string {
                in_string = escaped || b != b'"';
                escaped = !escaped && b == b'\\';
            } else if b == b'"' {
                in_string = true;
            } else if b == b' ' || b == b'\n' {
                continue;
            }
            squeezed.push(b);
        }
        squeezed.push(b'\n');
        assert_eq!(
            String::from_utf8(squeezed).unwrap(),
            String::from_utf8(json).unwrap()
        );
        // Laid out as serde_json lays out the same value.
        let shallow = Event::from(json!({
            "rum": {"seq": 3, "extra": {"a": [], "b": {}, "c": [1, {"d": "x: ,"}], "e": "\"{"}},
            "labels": {"site": "s"},
        }));
        let mut pretty = Vec::new();
        encode(&shallow, Encoding::Pretty, &mut pretty);
        let want = serde_json::to_string_pretty(&shallow.to_value()).unwrap() + "\n";
        assert_eq!(String::from_utf8(pretty).unwrap(), want);
    }
}
