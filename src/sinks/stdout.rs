//! Sink `stdout`: one JSON document per event and line (or pretty-printed),
//! for debugging a pipeline. Everything already waiting is written at once.
//! When stdout is closed (a broken pipe), the sink says so once, stops
//! writing, and keeps reading its input — counted as discarded — so the rest
//! of the pipeline (other sinks of a fan-out) is not stalled by it.

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::{SinkContext, SinkFuture};
use crate::event::Event;
use crate::topology::buffer::DEFAULT_OUTPUT;

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

pub fn encode(event: &Event, encoding: Encoding, out: &mut Vec<u8>) {
    match encoding {
        Encoding::Json => event.write_json(out),
        Encoding::Pretty => {
            let _ = serde_json::to_writer_pretty(&mut *out, event);
        }
    }
    out.push(b'\n');
}

/// Stdout and what is on its way there. `tokio::io::stdout` writes on the
/// blocking pool: a write hands the bytes over and returns, and the next
/// write (or a flush) first waits for that one, giving its error if it
/// failed. So the sink encodes the next batches while the last ones are being
/// written, and counts events as sent only once their write is known to have
/// succeeded. Waiting for each write with a flush, as before, cost two
/// blocking-pool hand-offs per batch and nothing overlapped.
struct Out {
    stdout: tokio::io::Stdout,
    /// Events handed to a write whose outcome is not known yet.
    in_flight: u64,
    closed: bool,
}

impl Out {
    /// Writes and empties `buf` (holding `events` events). Returns the
    /// events now known written, or the error that lost them and the events
    /// lost with it (those in flight before, and these).
    async fn write(&mut self, buf: &mut Vec<u8>, events: u64) -> Result<u64, u64> {
        let result = self.stdout.write_all(buf).await;
        buf.clear();
        let before = std::mem::replace(&mut self.in_flight, events);
        match result {
            // The write before this one succeeded, or this one would wait.
            Ok(()) => Ok(before),
            Err(_) => {
                self.in_flight = 0;
                Err(before + events)
            }
        }
    }

    /// Waits for the write in flight: the events it holds, or the error.
    async fn settle(&mut self) -> Result<u64, u64> {
        if self.in_flight == 0 {
            return Ok(0);
        }
        let events = std::mem::take(&mut self.in_flight);
        match self.stdout.flush().await {
            Ok(()) => Ok(events),
            Err(_) => Err(events),
        }
    }
}

impl StdoutConfig {
    pub fn build(&self, cx: SinkContext) -> anyhow::Result<SinkFuture> {
        let encoding = self.encoding;
        let SinkContext {
            id,
            metrics,
            mut input,
            ..
        } = cx;
        let sent = metrics.sent_events(DEFAULT_OUTPUT);
        let write_failed = metrics.errors("write_failed", "sending");
        Ok(Box::pin(async move {
            let mut out = Out {
                stdout: tokio::io::stdout(),
                in_flight: 0,
                closed: false,
            };
            // What a write's outcome means for the counters; after the first
            // failure, stdout is treated as gone.
            let account = |out: &mut Out, outcome: Result<u64, u64>| match outcome {
                Ok(written) => sent.add(written),
                Err(lost) => {
                    metrics.discarded_unintentional.add(lost);
                    if !out.closed {
                        out.closed = true;
                        write_failed.inc();
                        tracing::error!(component = %id, "stdout is closed; further events are counted as discarded");
                    }
                }
            };
            let mut buf = Vec::with_capacity(64 * 1024);
            loop {
                let batch = match input.try_recv() {
                    Some(batch) => batch,
                    None => {
                        // Nothing waits: learn how the last write went, so
                        // the counters are current while the pipeline idles.
                        if !out.closed {
                            let outcome = out.settle().await;
                            account(&mut out, outcome);
                        }
                        match input.recv().await {
                            Some(batch) => batch,
                            None => break,
                        }
                    }
                };
                // This batch and whatever else already waits (up to about
                // MAX_WRITE_BYTES), in one write.
                let mut next = Some(batch);
                let mut count = 0u64;
                // Events taken since the last write (encoded unless stdout is gone).
                let mut pending = 0u64;
                let mut wrote = false;
                while let Some(events) = next.take() {
                    count += events.len() as u64;
                    for event in &events {
                        pending += 1;
                        if out.closed {
                            continue;
                        }
                        encode(event, encoding, &mut buf);
                        // Written out whenever the buffer passes
                        // MAX_WRITE_BYTES, so events that carry a big
                        // context never pile up here.
                        if buf.len() >= MAX_WRITE_BYTES {
                            let outcome = out.write(&mut buf, std::mem::take(&mut pending)).await;
                            account(&mut out, outcome);
                            wrote = true;
                        }
                    }
                    drop(events);
                    if !wrote {
                        next = input.try_recv();
                    }
                }
                metrics.received_events.add(count);
                if out.closed {
                    metrics.discarded_unintentional.add(pending);
                } else if pending > 0 {
                    let outcome = out.write(&mut buf, pending).await;
                    account(&mut out, outcome);
                }
                buf.clear();
                // One huge batch must not keep its buffer for ever.
                buf.shrink_to(4 * MAX_WRITE_BYTES);
            }
            if !out.closed {
                let outcome = out.settle().await;
                account(&mut out, outcome);
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
}
