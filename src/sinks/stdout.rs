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

/// Writes and empties `buf`; the error means stdout is gone.
async fn write_out(stdout: &mut tokio::io::Stdout, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let result = async {
        stdout.write_all(buf).await?;
        stdout.flush().await
    }
    .await;
    buf.clear();
    result
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
            let mut stdout = tokio::io::stdout();
            let mut buf = Vec::with_capacity(64 * 1024);
            let mut closed = false;
            while let Some(batch) = input.recv().await {
                let mut count = batch.len() as u64;
                let mut failed = false;
                // Written out whenever the buffer passes MAX_WRITE_BYTES, so
                // events that carry a big context never pile up here.
                let write = |buf: &mut Vec<u8>, event: &Event| {
                    encode(event, encoding, buf);
                    buf.len() >= MAX_WRITE_BYTES
                };
                for event in &batch {
                    if write(&mut buf, event) && !closed && !failed {
                        failed = write_out(&mut stdout, &mut buf).await.is_err();
                    }
                }
                drop(batch);
                while buf.len() < MAX_WRITE_BYTES {
                    let Some(more) = input.try_recv() else { break };
                    count += more.len() as u64;
                    for event in &more {
                        if write(&mut buf, event) && !closed && !failed {
                            failed = write_out(&mut stdout, &mut buf).await.is_err();
                        }
                    }
                }
                metrics.received_events.add(count);
                if !closed && !failed {
                    failed = write_out(&mut stdout, &mut buf).await.is_err();
                }
                if closed {
                    metrics.discarded_unintentional.add(count);
                } else if failed {
                    closed = true;
                    write_failed.inc();
                    metrics.discarded_unintentional.add(count);
                    tracing::error!(component = %id, "stdout is closed; further events are counted as discarded");
                } else {
                    sent.add(count);
                }
                buf.clear();
                // One huge batch must not keep its buffer for ever.
                buf.shrink_to(4 * MAX_WRITE_BYTES);
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
