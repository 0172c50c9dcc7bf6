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
        Encoding::Pretty => event.write_json_pretty(out),
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
