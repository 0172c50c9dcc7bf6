//! The dead-letter file: documents Elasticsearch refused for good (mapping
//! errors, 400s) or that could not be delivered before retries ran out or
//! shutdown, one JSON object per line:
//!
//! `{"@timestamp": "...", "index": "...", "id": "...", "error": {"status": 400, "type": "...", "reason": "..."}, "document": {...}}`
//!
//! Replaying it is idempotent (same `_id`, `create`):
//! `jq -c '{create:{_index:.index,_id:.id}}, .document' FILE | curl -H 'Content-Type: application/x-ndjson' --data-binary @- "$ES/_bulk"`.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::Mutex;

use super::encoder::ItemSpan;
use super::retry::Failure;

/// Appends dead letters; shared by every request of the sink.
pub struct DeadLetters {
    path: Option<PathBuf>,
    /// Opened on first use; `None` inside once opening failed (logged).
    file: Mutex<Option<tokio::fs::File>>,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("no dead_letter.path is configured")]
    NotConfigured,
    #[error("cannot write the dead-letter file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl DeadLetters {
    pub fn new(path: Option<PathBuf>) -> Self {
        Self {
            path,
            file: Mutex::new(None),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes one line per item and flushes. All or nothing is not
    /// guaranteed on a full disk; the caller counts a failure as a loss.
    pub async fn write(
        &self,
        body: &[u8],
        items: &[(ItemSpan, &Failure)],
    ) -> Result<(), DeadLetterError> {
        let Some(path) = &self.path else {
            return Err(DeadLetterError::NotConfigured);
        };
        let io = |source| DeadLetterError::Io {
            path: path.display().to_string(),
            source,
        };
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut lines = Vec::new();
        for (span, failure) in items {
            record(
                span.action(body),
                span.document(body),
                failure,
                &now,
                &mut lines,
            );
        }
        let mut guard = self.file.lock().await;
        if guard.is_none() {
            let file = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .await
                .map_err(io)?;
            *guard = Some(file);
        }
        let Some(file) = guard.as_mut() else {
            return Err(DeadLetterError::NotConfigured);
        };
        let written = async {
            file.write_all(&lines).await?;
            file.flush().await
        };
        if let Err(e) = written.await {
            // Reopen next time: the file may have been rotated or the disk freed.
            *guard = None;
            return Err(io(e));
        }
        Ok(())
    }
}

#[derive(Deserialize)]
struct ActionLine {
    create: ActionMeta,
}

#[derive(Deserialize)]
struct ActionMeta {
    #[serde(rename = "_index")]
    index: String,
    #[serde(rename = "_id")]
    id: String,
}

/// One dead-letter line. The document is copied as the bytes that were sent.
pub fn record(action: &[u8], document: &[u8], failure: &Failure, now: &str, out: &mut Vec<u8>) {
    let (index, id) = match serde_json::from_slice::<ActionLine>(action) {
        Ok(line) => (line.create.index, line.create.id),
        Err(_) => (String::new(), String::new()),
    };
    let head = json!({
        "@timestamp": now,
        "index": index,
        "id": id,
        "error": {"status": failure.status, "type": failure.error_type, "reason": failure.reason},
    });
    let head = head.to_string();
    // `{...head...,"document":<raw>}`: the head is an object, so drop its `}`.
    out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    out.extend_from_slice(b",\"document\":");
    out.extend_from_slice(document);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_record_keeps_the_document_index_id_and_error() {
        let mut out = Vec::new();
        let failure = Failure::new(
            Some(400),
            "mapper_parsing_exception",
            "failed to parse field [x]",
        );
        record(
            br#"{"create":{"_index":"c.rum.metrics-2026.03.07","_id":"abc"}}"#,
            br#"{"x":"not a number","rum":{"type":"custom"}}"#,
            &failure,
            "2026-03-07T10:00:00.000Z",
            &mut out,
        );
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        let line: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            line,
            serde_json::json!({
                "@timestamp": "2026-03-07T10:00:00.000Z",
                "index": "c.rum.metrics-2026.03.07",
                "id": "abc",
                "error": {"status": 400, "type": "mapper_parsing_exception", "reason": "failed to parse field [x]"},
                "document": {"x": "not a number", "rum": {"type": "custom"}}
            })
        );
    }

    #[tokio::test]
    async fn writes_append_and_missing_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dead.ndjson");
        let letters = DeadLetters::new(Some(path.clone()));
        let body = b"{\"create\":{\"_index\":\"i\",\"_id\":\"1\"}}\n{\"a\":1}\n{\"create\":{\"_index\":\"i\",\"_id\":\"2\"}}\n{\"a\":2}\n";
        let newlines: Vec<usize> = body
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i + 1)
            .collect();
        let spans = [
            ItemSpan {
                start: 0,
                source: newlines[0],
                end: newlines[1],
            },
            ItemSpan {
                start: newlines[1],
                source: newlines[2],
                end: newlines[3],
            },
        ];
        assert_eq!(spans[1].document(body), b"{\"a\":2}");
        let failure = Failure::new(None, "retries_exhausted", "connection refused");
        letters.write(body, &[(spans[1], &failure)]).await.unwrap();
        letters.write(body, &[(spans[0], &failure)]).await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let ids: Vec<String> = text
            .lines()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        assert_eq!(ids, ["2", "1"]);
        assert!(matches!(
            DeadLetters::new(None)
                .write(body, &[(spans[0], &failure)])
                .await,
            Err(DeadLetterError::NotConfigured)
        ));
        let unwritable = DeadLetters::new(Some(dir.path().join("no/such/dir/x")));
        assert!(matches!(
            unwritable.write(body, &[(spans[0], &failure)]).await,
            Err(DeadLetterError::Io { .. })
        ));
    }
}
