//! Retry decisions, kept apart from I/O so they can be tested on literal
//! `_bulk` answers. A whole-request answer decides whether the items are read
//! at all; then every item is read **by position** (the n-th result belongs
//! to the n-th action, whatever its key: Quickwit answers `index` to a
//! `create`), and each lands in exactly one of: delivered, duplicate
//! (delivered before), retry, or reject (dead letter).

use std::time::Duration;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::Value;

/// Why one item (or a whole request) could not be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// HTTP status of the item or the request, when there was one.
    pub status: Option<u16>,
    /// Elasticsearch's `error.type`, or our own name (`timeout`, `connection`...).
    pub error_type: String,
    pub reason: String,
}

impl Failure {
    pub fn new(
        status: Option<u16>,
        error_type: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self {
            status,
            error_type: error_type.into(),
            reason: reason.into(),
        }
    }
}

impl Failure {
    /// Its status and type alone (`401 security_exception`, `connection`):
    /// what may be shown where the reason may not, as it can name the
    /// endpoint's URL, a user or an index.
    pub fn kind(&self) -> String {
        match self.status {
            Some(status) => format!("{status} {}", self.error_type),
            None => self.error_type.clone(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.status {
            Some(status) => write!(f, "{status} {}: {}", self.error_type, self.reason),
            None => write!(f, "{}: {}", self.error_type, self.reason),
        }
    }
}

/// `error_type` of an answer longer than the sink reads.
pub const RESPONSE_TOO_LARGE: &str = "response_too_large";

/// What to do with the items of one attempt.
#[derive(Debug, PartialEq)]
pub enum Verdict {
    /// The answer was read item by item; positions refer to the items sent.
    Items(ItemResults),
    /// Nothing (reliably) delivered; send the same items again later.
    RetryAll {
        failure: Failure,
        retry_after: Option<Duration>,
    },
    /// The request itself is refused for good (a 400 on the whole body).
    RejectAll(Failure),
    /// 413: the body is too large for the server; send it in halves.
    Split(Failure),
}

#[derive(Debug, Default, PartialEq)]
pub struct ItemResults {
    pub delivered: usize,
    /// `409` on `create`: the document with this `_id` is already stored.
    pub duplicates: usize,
    pub retry: Vec<(usize, Failure)>,
    pub reject: Vec<(usize, Failure)>,
}

/// The outcome of one HTTP attempt as the sink sees it.
pub enum Answer<'a> {
    Response {
        status: u16,
        retry_after: Option<Duration>,
        body: &'a [u8],
        /// `body` is only the beginning of a longer answer (see `Reply`).
        truncated: bool,
    },
    /// No HTTP answer: connection refused or dropped, timeout, TLS...
    NoResponse(Failure),
}

/// Decides what an answer to a bulk request of `sent` items means.
pub fn judge(answer: &Answer<'_>, sent: usize) -> Verdict {
    let (status, retry_after, body) = match answer {
        Answer::NoResponse(failure) => {
            return Verdict::RetryAll {
                failure: failure.clone(),
                retry_after: None,
            }
        }
        Answer::Response {
            status,
            retry_after,
            body,
            truncated,
        } => {
            // Its items cannot all be read, so nothing is known to be stored:
            // like an unreadable answer, and `_id`s make the re-send harmless.
            if *truncated && (200..300).contains(status) {
                return Verdict::RetryAll {
                    failure: Failure::new(
                        Some(*status),
                        RESPONSE_TOO_LARGE,
                        format!(
                            "the bulk answer for {sent} documents is longer than the sink reads (1 MiB + 4 KiB per document in a batch)"
                        ),
                    ),
                    retry_after: None,
                };
            }
            // Otherwise the status decides, and the beginning gives the reason.
            (*status, *retry_after, *body)
        }
    };
    match status {
        200..=299 => match read_items(body, sent) {
            Ok(items) => Verdict::Items(items),
            // A 2xx we cannot read says nothing about what was stored; ids
            // make the re-send harmless on Elasticsearch.
            Err(reason) => Verdict::RetryAll {
                failure: Failure::new(Some(status), "invalid_response", reason),
                retry_after: None,
            },
        },
        413 => Verdict::Split(request_failure(status, body)),
        // Overload, outages, proxies; and auth or routing problems an operator
        // can fix while we wait (401/403/404) — retried up to max_duration.
        401 | 403 | 404 | 408 | 429 | 500..=599 => Verdict::RetryAll {
            failure: request_failure(status, body),
            retry_after,
        },
        _ => Verdict::RejectAll(request_failure(status, body)),
    }
}

/// `{"error": {"type", "reason"}, "status"}` as Elasticsearch answers a failed
/// request; any other body is quoted (shortened).
fn request_failure(status: u16, body: &[u8]) -> Failure {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let (error_type, reason) = match parsed.as_ref().and_then(|v| v.get("error")) {
        Some(error) => error_parts(error),
        None => (
            "http_error".to_owned(),
            shorten(&String::from_utf8_lossy(body)),
        ),
    };
    Failure::new(Some(status), error_type, reason)
}

/// A reason as the log shows it: on one line, at most ~300 bytes. The
/// engine's text may quote the browser (a mapping error's "Preview of
/// field's value"), so its control characters are written escaped (`\n`,
/// `\u{1b}`): a line break in a beacon's value must not start a log line.
fn shorten(text: &str) -> String {
    const MAX: usize = 300;
    let text = text.trim();
    let escaped = crate::stderr_log::one_line(text);
    let text = &*escaped;
    if text.len() <= MAX {
        return text.to_owned();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn error_parts(error: &Value) -> (String, String) {
    match error {
        Value::String(reason) => ("error".to_owned(), shorten(reason)),
        Value::Object(map) => {
            let error_type = map
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_owned();
            let reason = map
                .get("reason")
                .and_then(Value::as_str)
                .unwrap_or_default();
            // The root cause names the field of a mapping error.
            let caused = map
                .get("caused_by")
                .and_then(|c| c.get("reason"))
                .and_then(Value::as_str);
            match caused {
                Some(cause) if !reason.contains(cause) => (
                    error_type,
                    shorten(&format!("{reason} (caused by: {cause})")),
                ),
                _ => (error_type, shorten(reason)),
            }
        }
        other => ("error".to_owned(), shorten(&other.to_string())),
    }
}

#[derive(Deserialize)]
struct BulkAnswer {
    items: Vec<ItemEntry>,
}

/// `{"create": {...}}`, `{"index": {...}}`, ...: one key, whatever it is.
struct ItemEntry(ItemResult);

impl<'de> Deserialize<'de> for ItemEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> serde::de::Visitor<'de> for EntryVisitor {
            type Value = ItemEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object with one action key")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ItemEntry, A::Error> {
                let mut result = None;
                while let Some(_action) = map.next_key::<IgnoredAny>()? {
                    if result.is_none() {
                        result = Some(map.next_value::<ItemResult>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                result
                    .map(ItemEntry)
                    .ok_or_else(|| serde::de::Error::custom("an item without an action key"))
            }
        }
        deserializer.deserialize_map(EntryVisitor)
    }
}

#[derive(Deserialize)]
struct ItemResult {
    #[serde(default)]
    status: Option<u16>,
    /// Absent or `null` (Quickwit) on success.
    #[serde(default)]
    error: Option<Value>,
}

/// Error types that mean "later", whatever the item status says.
const RETRYABLE_TYPES: &[&str] = &[
    "es_rejected_execution_exception",
    "circuit_breaking_exception",
    "unavailable_shards_exception",
    "cluster_block_exception",
    "node_not_connected_exception",
    "process_cluster_event_timeout_exception",
];

/// `error_type` of an item Elasticsearch (8.13+) refused under
/// `require_data_stream=true`: no index template with `data_stream` matches
/// its name (`404 index_not_found_exception` "... the index creation request
/// requires a data stream, but no matching index template with data stream
/// template was found for it"), or a plain index holds the name (`404
/// resource_not_found_exception` "[require_data_stream] request flag is
/// [true] and [x] is not a data stream"). Retried: the operator can install
/// the template (or delete the index) while the sink waits.
pub const DATA_STREAM_MISSING: &str = "data_stream_missing";

fn refused_for_no_data_stream(error_type: &str, reason: &str) -> bool {
    match error_type {
        "index_not_found_exception" => reason.contains("requires a data stream"),
        "resource_not_found_exception" => {
            reason.contains("[require_data_stream]") && reason.contains("is not a data stream")
        }
        _ => false,
    }
}

/// Reads per-item results by position. Fails when the body is not a bulk
/// answer or holds a different number of items than were sent.
pub fn read_items(body: &[u8], sent: usize) -> Result<ItemResults, String> {
    let answer: BulkAnswer =
        serde_json::from_slice(body).map_err(|e| format!("the bulk answer cannot be read: {e}"))?;
    if answer.items.len() != sent {
        return Err(format!(
            "the bulk answer has {} items for {sent} documents sent",
            answer.items.len()
        ));
    }
    let mut results = ItemResults::default();
    for (position, ItemEntry(item)) in answer.items.into_iter().enumerate() {
        let error = item.error.filter(|e| !e.is_null());
        match (item.status, error) {
            (Some(200..=299), _) | (None, None) => results.delivered += 1,
            (Some(409), _) => results.duplicates += 1,
            (status, error) => {
                let (mut error_type, reason) = match &error {
                    Some(e) => error_parts(e),
                    None => ("http_error".to_owned(), String::new()),
                };
                let no_data_stream = refused_for_no_data_stream(&error_type, &reason);
                if no_data_stream {
                    error_type = DATA_STREAM_MISSING.to_owned();
                }
                let retryable = matches!(status, Some(429) | Some(500..=599))
                    || no_data_stream
                    || RETRYABLE_TYPES.contains(&error_type.as_str());
                let failure = Failure::new(status, error_type, reason);
                if retryable {
                    results.retry.push((position, failure));
                } else {
                    results.reject.push((position, failure));
                }
            }
        }
    }
    Ok(results)
}

/// Exponential backoff with jitter: attempt n waits between half and all of
/// `min(max, initial × 2ⁿ)`, or what `Retry-After` asks if that is longer
/// (never more than `max`).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// `unit` in [0, 1) supplies the jitter.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>, unit: f64) -> Duration {
        let exp = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(30)))
            .min(self.max);
        let jittered = exp.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
        match retry_after {
            Some(asked) if asked > jittered => asked.min(self.max),
            _ => jittered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str, sent: usize) -> Verdict {
        judge(
            &Answer::Response {
                status: 200,
                retry_after: None,
                body: body.as_bytes(),
                truncated: false,
            },
            sent,
        )
    }

    fn items(verdict: Verdict) -> ItemResults {
        match verdict {
            Verdict::Items(items) => items,
            other => panic!("expected items, got {other:?}"),
        }
    }

    #[test]
    fn elasticsearch_success() {
        let body = r#"{"took":30,"errors":false,"items":[
            {"create":{"_index":"c.rum.metrics-2026.03.07","_id":"a","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":0,"_primary_term":1,"status":201}},
            {"create":{"_index":"c.rum.metrics-2026.03.07","_id":"b","_version":1,"result":"created","_shards":{"total":2,"successful":1,"failed":0},"_seq_no":1,"_primary_term":1,"status":201}}]}"#;
        assert_eq!(
            items(ok(body, 2)),
            ItemResults {
                delivered: 2,
                ..Default::default()
            }
        );
    }

    #[test]
    fn partial_failure_is_sorted_by_position() {
        let body = r#"{"took":3,"errors":true,"items":[
            {"create":{"_index":"i","_id":"a","status":201,"result":"created","_version":1}},
            {"create":{"_index":"i","_id":"b","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution of coordinating operation"}}},
            {"create":{"_index":"i","_id":"c","status":400,"error":{"type":"document_parsing_exception","reason":"[1:42] failed to parse field [rum.vital.value] of type [double]","caused_by":{"type":"illegal_argument_exception","reason":"For input string: \"fast\""}}}},
            {"create":{"_index":"i","_id":"d","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[d]: version conflict, document already exists (current version [1])"}}},
            {"create":{"_index":"i","_id":"e","status":503,"error":{"type":"unavailable_shards_exception","reason":"primary shard is not active"}}},
            {"create":{"_index":"i","_id":"f","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse"}}}]}"#;
        let r = items(ok(body, 6));
        assert_eq!(r.delivered, 1);
        assert_eq!(r.duplicates, 1);
        assert_eq!(r.retry.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [1, 4]);
        assert_eq!(r.reject.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [2, 5]);
        let (_, mapping) = &r.reject[0];
        assert_eq!(mapping.status, Some(400));
        assert_eq!(mapping.error_type, "document_parsing_exception");
        assert!(
            mapping.reason.contains("rum.vital.value"),
            "{}",
            mapping.reason
        );
        assert!(
            mapping.reason.contains("For input string"),
            "{}",
            mapping.reason
        );
        assert_eq!(r.retry[0].1.error_type, "es_rejected_execution_exception");
    }

    /// Elasticsearch quotes the refused value in a mapping error's reason
    /// ("Preview of field's value: '...'"), and that value is the
    /// browser's: its line breaks went into the sink's log line as sent,
    /// so a beacon could write log lines of its own.
    #[test]
    fn a_value_quoted_in_a_reason_cannot_forge_log_lines() {
        let forged = r#"x\n2026-03-07T10:00:00.000000Z ERROR component=es: forged\r\u001b[2J"#;
        let body = format!(
            r#"{{"errors":true,"items":[{{"create":{{"status":400,"error":{{"type":"document_parsing_exception","reason":"[1:80] failed to parse field [rum.device.cores] of type [long] in document with id 'a'. Preview of field's value: '{forged}'","caused_by":{{"type":"illegal_argument_exception","reason":"For input string: \"{forged}\""}}}}}}}}]}}"#
        );
        let r = items(ok(&body, 1));
        let line = r.reject[0].1.to_string();
        assert!(!line.chars().any(char::is_control), "{line:?}");
        assert!(
            line.contains(r"Preview of field's value: 'x\n2026-03-07T10"),
            "{line}"
        );
        // The cause is shown once, whatever it holds.
        let cause = r#"(caused by: For input string: "x\n2026"#;
        assert_eq!(line.matches(cause).count(), 1, "{line}");
        // A whole request refused by a proxy's page, line breaks and all.
        let page = "<html>\r\n<h1>400 Bad Request</h1>\n</html>\n";
        let Verdict::RejectAll(failure) = judge(
            &Answer::Response {
                status: 400,
                retry_after: None,
                body: page.as_bytes(),
                truncated: false,
            },
            1,
        ) else {
            panic!("a 400 rejects the request")
        };
        let line = failure.to_string();
        assert!(!line.chars().any(char::is_control), "{line:?}");
    }

    #[test]
    fn quickwit_style_answers_are_read() {
        // `index` key for a `create`, `error: null`, no `_version` / `result`.
        let body = r#"{"errors":true,"items":[
            {"index":{"_index":"rum","_id":null,"status":201,"error":null}},
            {"index":{"_index":"rum","status":400,"error":{"type":"illegal_argument_exception","reason":"bad doc"}}},
            {"index":{"_index":"rum","error":null}}]}"#;
        let r = items(ok(body, 3));
        assert_eq!(r.delivered, 2);
        assert_eq!(r.reject.len(), 1);
        assert_eq!(r.reject[0].0, 1);
    }

    #[test]
    fn errors_false_does_not_skip_reading_items() {
        // A server claiming no errors while an item failed: the item wins.
        let body = r#"{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":429,"error":{"type":"x","reason":"y"}}}]}"#;
        let r = items(ok(body, 2));
        assert_eq!((r.delivered, r.retry.len()), (1, 1));
    }

    #[test]
    fn cluster_blocks_and_rejections_retry_whatever_the_status() {
        let body = r#"{"errors":true,"items":[
            {"create":{"status":403,"error":{"type":"cluster_block_exception","reason":"index [i] blocked by: [FORBIDDEN/8/index write (api)];"}}},
            {"create":{"status":400,"error":{"type":"es_rejected_execution_exception","reason":"queue full"}}},
            {"create":{"status":404,"error":{"type":"index_not_found_exception","reason":"no such index [i]"}}},
            {"create":{"status":500,"error":"plain text error"}}]}"#;
        let r = items(ok(body, 4));
        assert_eq!(
            r.retry.iter().map(|(p, _)| *p).collect::<Vec<_>>(),
            [0, 1, 3]
        );
        assert_eq!(r.reject.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [2]);
        assert_eq!(r.retry[2].1.reason, "plain text error");
    }

    /// As Elasticsearch 8.13+ answers items under `require_data_stream=true`.
    #[test]
    fn items_refused_for_want_of_a_data_stream_are_retried_under_our_name() {
        let body = r#"{"errors":true,"items":[
            {"create":{"_index":"c.rum.metrics","_id":"a","status":404,"error":{"type":"index_not_found_exception","reason":"no such index [c.rum.metrics] and the index creation request requires a data stream, but no matching index template with data stream template was found for it","index":"c.rum.metrics"}}},
            {"create":{"_index":"c.rum.metrics","_id":"b","status":404,"error":{"type":"resource_not_found_exception","reason":"[require_data_stream] request flag is [true] and [c.rum.metrics] is not a data stream"}}},
            {"create":{"_index":"c.rum.metrics","_id":"c","status":404,"error":{"type":"index_not_found_exception","reason":"no such index [c.rum.metrics]"}}}]}"#;
        let r = items(ok(body, 3));
        assert_eq!(r.retry.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(r.reject.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [2]);
        for (_, failure) in &r.retry {
            assert_eq!(failure.error_type, DATA_STREAM_MISSING);
            assert_eq!(failure.status, Some(404));
            assert!(failure.reason.contains("c.rum.metrics"), "{failure}");
        }
    }

    #[test]
    fn unreadable_or_mismatched_answers_retry_everything() {
        for (body, sent) in [
            (r#"{"errors":false,"items":[{"create":{"status":201}}]}"#, 2),
            (r#"{"errors":false}"#, 1),
            ("<html>proxy says hi</html>", 1),
            (r#"{"items":[{}]}"#, 1),
        ] {
            match ok(body, sent) {
                Verdict::RetryAll { failure, .. } => {
                    assert_eq!(failure.error_type, "invalid_response")
                }
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn whole_request_statuses() {
        let judge_status = |status: u16, body: &str| {
            judge(
                &Answer::Response {
                    status,
                    retry_after: Some(Duration::from_secs(3)),
                    body: body.as_bytes(),
                    truncated: false,
                },
                5,
            )
        };
        let es_429 = r#"{"error":{"root_cause":[],"type":"es_rejected_execution_exception","reason":"rejected execution"},"status":429}"#;
        match judge_status(429, es_429) {
            Verdict::RetryAll {
                failure,
                retry_after,
            } => {
                assert_eq!(failure.error_type, "es_rejected_execution_exception");
                assert_eq!(retry_after, Some(Duration::from_secs(3)));
            }
            other => panic!("{other:?}"),
        }
        for status in [401, 403, 404, 408, 500, 502, 503, 504] {
            assert!(
                matches!(judge_status(status, ""), Verdict::RetryAll { .. }),
                "{status}"
            );
        }
        assert!(matches!(judge_status(413, ""), Verdict::Split(_)));
        let es_400 = r#"{"error":{"type":"illegal_argument_exception","reason":"Malformed action/metadata line [1]"},"status":400}"#;
        assert_eq!(
            judge_status(400, es_400),
            Verdict::RejectAll(Failure::new(
                Some(400),
                "illegal_argument_exception",
                "Malformed action/metadata line [1]"
            ))
        );
        assert!(matches!(judge_status(415, "nope"), Verdict::RejectAll(_)));
        let none = Answer::NoResponse(Failure::new(None, "timeout", "no answer within 30s"));
        assert!(matches!(judge(&none, 5), Verdict::RetryAll { .. }));
    }

    #[test]
    fn an_answer_cut_at_the_limit_retries_a_2xx_and_keeps_other_statuses() {
        let cut = |status: u16, body: &str| {
            judge(
                &Answer::Response {
                    status,
                    retry_after: None,
                    body: body.as_bytes(),
                    truncated: true,
                },
                2,
            )
        };
        // Even a beginning that parses (whitespace cut off) is not trusted.
        match cut(
            200,
            r#"{"errors":false,"items":[{"create":{"status":201}},{"create":{"status":201}}]}"#,
        ) {
            Verdict::RetryAll { failure, .. } => {
                assert_eq!(failure.error_type, RESPONSE_TOO_LARGE);
                assert_eq!(failure.status, Some(200));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(cut(503, "<html>"), Verdict::RetryAll { .. }));
        assert!(matches!(cut(400, ""), Verdict::RejectAll(_)));
        assert!(matches!(cut(413, ""), Verdict::Split(_)));
    }

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        };
        assert_eq!(b.delay(0, None, 0.0), Duration::from_millis(50));
        assert_eq!(b.delay(0, None, 0.999_999).as_millis(), 99);
        assert_eq!(b.delay(3, None, 0.0), Duration::from_millis(400));
        assert_eq!(b.delay(40, None, 0.999_999).as_millis(), 4999);
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(2)), 0.5),
            Duration::from_secs(2)
        );
        assert_eq!(
            b.delay(0, Some(Duration::from_secs(60)), 0.5),
            Duration::from_secs(5)
        );
    }
}
