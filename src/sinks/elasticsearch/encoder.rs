//! The bulk body: for every event a `create` action line naming its index
//! and deterministic `_id`, then the document, each ending in `\n` (NDJSON,
//! as `_bulk` wants it). Events are encoded as they arrive, so a batch waits
//! as bytes plus one span per item — which is also what lets a retry re-send
//! only the failed items by copying their spans.

use std::sync::LazyLock;

use serde_json::ser::{CompactFormatter, Formatter};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::index::BatchIndex;
use crate::event::{Event, FieldId, FieldRead};
use crate::schema;

/// Fields the `_id` is made of, in this order, then the client's event time.
/// See [`document_id`].
pub const ID_FIELDS: [&str; 4] = [
    schema::SESSION_ID,
    schema::VIEW_ID,
    schema::RUM_TYPE,
    schema::RUM_SEQ,
];

/// [`ID_FIELDS`] as slot ids, resolved once: the recipe reads them for
/// every document, and a dotted path is a hash lookup each time.
static ID_SLOTS: LazyLock<[FieldId; 4]> = LazyLock::new(|| ID_FIELDS.map(FieldId::of));

/// Domain separator: a new recipe gets a new tag, so ids never collide across recipes.
const ID_RECIPE: &[u8] = b"rum-pipeline/_id/v2";

/// The `_id` recipe — the one place it is defined (tests use it too).
///
/// `base64url(SHA-256(tag ‖ f(session.id) ‖ f(view.id) ‖ f(rum.type) ‖ f(rum.seq) ‖ f(time) [‖ 0x03 ‖ untimed source])[0..16])`,
/// 22 characters, where `f(v)` is `0x00` when the field is absent or null, `0x01 ‖ len ‖ bytes`
/// for a string and `0x02 ‖ len ‖ JSON text` for anything else (len: u64 little endian).
/// `time` is the event time **as the browser sent it** (`ts`, a number);
/// only for an event sent without one is it the `@timestamp` text.
///
/// Everything hashed comes from the browser, not from the server's clock, so
/// the same event sent twice — a re-sent bulk, or a browser re-sending the
/// beacon seconds later — gets the same `_id`, and `create` stores it once.
///
/// Documents without `session.id` or `view.id` (CSP reports) have nothing that
/// tells two of them apart, so their source without `@timestamp` and
/// `event.ingested` (the server's times) is hashed in as well: a re-sent
/// report still deduplicates, and two different reports never share an id.
pub fn document_id(event: &Event, untimed_source: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(ID_RECIPE);
    // A part: its tag (1 a string, 2 other JSON text), its length, its bytes.
    fn part(hasher: &mut Sha256, tag: u8, text: &[u8]) {
        hasher.update([tag]);
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(text);
    }
    let mut digits = [0u8; 20];
    for id in *ID_SLOTS {
        // Read in place: `session.id` and `view.id` are a request's
        // strings, which `get_id` would have made values of, per beacon.
        match event.read_id(id) {
            None | Some(FieldRead::Value(Value::Null)) => hasher.update([0u8]),
            Some(FieldRead::Str(text)) => part(&mut hasher, 1, text.as_bytes()),
            // An integer's text (`rum.seq`, in every id) as `to_string`
            // gives it, without the allocation.
            Some(read @ (FieldRead::Number(_) | FieldRead::Value(Value::Number(_)))) => {
                match read.as_number() {
                    Some(n) if n.is_i64() || n.is_u64() => {
                        part(&mut hasher, 2, integer_text(&n, &mut digits))
                    }
                    n => part(&mut hasher, 2, Value::from(n).to_string().as_bytes()),
                }
            }
            Some(FieldRead::Value(other)) => part(&mut hasher, 2, other.to_string().as_bytes()),
        }
    }
    match (event.client_ts_ms(), event.timestamp_ms()) {
        (Some(ts), _) => part(&mut hasher, 2, integer_text(&ts.into(), &mut digits)),
        (None, Some(ms)) => {
            let mut text = Vec::with_capacity(24);
            crate::event::write_iso_millis(ms, &mut text);
            part(&mut hasher, 1, &text);
        }
        (None, None) => hasher.update([0u8]),
    }
    if id_needs_source(event) {
        hasher.update([3u8]);
        hasher.update(untimed_source);
    }
    let digest = hasher.finalize();
    base64url(&digest[..16])
}

/// An integer's decimal text, written into `buf` as `serde_json` writes it.
fn integer_text<'b>(n: &serde_json::Number, buf: &'b mut [u8; 20]) -> &'b [u8] {
    let mut rest = &mut buf[..];
    // Any i64 or u64 takes at most 20 bytes: the write cannot fail.
    let _ = match n.as_i64() {
        Some(i) => CompactFormatter.write_i64(&mut rest, i),
        None => CompactFormatter.write_u64(&mut rest, n.as_u64().unwrap_or_default()),
    };
    let len = 20 - rest.len();
    &buf[..len]
}

/// Whether [`document_id`] reads the source: no `session.id` or no `view.id`.
pub fn id_needs_source(event: &Event) -> bool {
    ID_SLOTS[..2]
        .iter()
        .any(|id| event.read_id(*id).is_none_or(FieldRead::is_null))
}

fn base64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Where one item sits in the body: `[start, source)` is the action line,
/// `[source, end)` the document line (both with their `\n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemSpan {
    pub start: usize,
    pub source: usize,
    pub end: usize,
}

impl ItemSpan {
    pub fn whole<'b>(&self, body: &'b [u8]) -> &'b [u8] {
        &body[self.start..self.end]
    }
    pub fn action<'b>(&self, body: &'b [u8]) -> &'b [u8] {
        &body[self.start..self.source - 1]
    }
    pub fn document<'b>(&self, body: &'b [u8]) -> &'b [u8] {
        &body[self.source..self.end - 1]
    }
}

/// A batch being built or sent: the NDJSON body and one span per document.
#[derive(Debug, Default)]
pub struct BulkBatch {
    pub body: Vec<u8>,
    pub items: Vec<ItemSpan>,
}

impl BulkBatch {
    pub fn with_capacity(bytes: usize, items: usize) -> Self {
        Self {
            body: Vec::with_capacity(bytes),
            items: Vec::with_capacity(items),
        }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// Appends one event: action line, then document.
    pub fn push(&mut self, event: &Event, index: &BatchIndex<'_>, scratch: &mut Vec<u8>) {
        // Usually the id comes from a few fields and the document is written
        // straight into the body; only anonymous documents are written twice
        // (once without the server's times, for the id).
        scratch.clear();
        if id_needs_source(event) {
            event.write_json_untimed(scratch);
        }
        let id = document_id(event, scratch);
        let start = self.body.len();
        // Index names and ids are made of `[a-z0-9._+-]` / base64url: no escaping needed.
        self.body.extend_from_slice(b"{\"create\":{\"_index\":\"");
        index.write(event, &mut self.body);
        self.body.extend_from_slice(b"\",\"_id\":\"");
        self.body.extend_from_slice(id.as_bytes());
        self.body.extend_from_slice(b"\"}}\n");
        let source = self.body.len();
        event.write_json(&mut self.body);
        replace_nul_in_keys(&mut self.body, source);
        self.body.push(b'\n');
        self.items.push(ItemSpan {
            start,
            source,
            end: self.body.len(),
        });
    }
}

/// Elasticsearch refuses a whole document (`mapper_parsing_exception`) when
/// a key inside a `flattened` field (`rum.extra`, attributions, report
/// bodies: keys the browser chose) holds `\0`, its separator of key and value.
/// Such keys get U+FFFD in its place, and a number of them when that name is
/// taken, so the event is stored and nothing is lost. A `\0` is written only
/// as `\u0000`: a document without that text (all but hostile ones) is left
/// as written.
fn replace_nul_in_keys(body: &mut Vec<u8>, start: usize) {
    if memchr::memmem::find(&body[start..], b"\\u0000").is_none() {
        return;
    }
    let Ok(mut document) = serde_json::from_slice::<Value>(&body[start..]) else {
        return;
    };
    if rename_nul_keys(&mut document) {
        body.truncate(start);
        // Writing a `Value` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *body, &document);
    }
}

/// Whether a key was renamed (see [`replace_nul_in_keys`]).
fn rename_nul_keys(value: &mut Value) -> bool {
    match value {
        Value::Object(map) => {
            let mut renamed = false;
            for child in map.values_mut() {
                renamed |= rename_nul_keys(child);
            }
            if !map.keys().any(|k| k.contains('\0')) {
                return renamed;
            }
            let with_nul: Vec<String> = map.keys().filter(|k| k.contains('\0')).cloned().collect();
            for key in with_nul {
                let child = map.remove(&key).unwrap_or_default();
                let mut name = key.replace('\0', "\u{fffd}");
                while map.contains_key(&name) {
                    name.push('\u{fffd}');
                }
                map.insert(name, child);
            }
            true
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |renamed, item| rename_nul_keys(item) | renamed),
        _ => false,
    }
}

/// A body holding only the chosen items of `body`, in the given order.
pub fn subset_body(body: &[u8], items: &[ItemSpan], chosen: &[usize]) -> Vec<u8> {
    let size = chosen.iter().map(|&i| items[i].end - items[i].start).sum();
    let mut out = Vec::with_capacity(size);
    for &i in chosen {
        out.extend_from_slice(items[i].whole(body));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::elasticsearch::index::{IndexOptions, IndexRouter};
    use chrono::TimeZone;
    use serde_json::json;
    use std::collections::BTreeMap;

    /// The recipe is a contract across versions (a replayed dead-letter
    /// file, two versions side by side): these ids must never change. They
    /// were computed apart from this code, with Python's hashlib:
    /// `f = lambda v: b"\0" if v is None else (b"\1" + pack("<Q", len(v.encode())) + v.encode()
    /// if isinstance(v, str) else b"\2" + pack("<Q", len(json.dumps(v))) + json.dumps(v).encode())`,
    /// `urlsafe_b64encode(sha256(b"rum-pipeline/_id/v2" + b"".join(map(f, parts)) [+ b"\3" + source]).digest()[:16])`.
    #[test]
    fn id_recipe_test_vector() {
        let event = Event::from(json!({
            "@timestamp": "2025-11-21T04:40:00.000Z",
            "session": {"id": "s-1"}, "view": {"id": "v-1"},
            "rum": {"type": "web_vital", "seq": 3, "client_ts": 1_763_700_000_000_i64}
        }));
        assert_eq!(document_id(&event, b""), "GSlA3NZdsmuESC5D8z4_IA");
        let report = Event::from(json!({
            "@timestamp": "2025-11-21T04:40:00.000Z",
            "rum": {"type": "csp_violation"},
            "csp": {"blocked_uri": "inline", "document_uri": "https://x/"}
        }));
        let mut untimed = Vec::new();
        report.write_json_untimed(&mut untimed);
        assert_eq!(
            String::from_utf8_lossy(&untimed),
            r#"{"csp":{"blocked_uri":"inline","document_uri":"https://x/"},"rum":{"type":"csp_violation"}}"#
        );
        assert_eq!(document_id(&report, &untimed), "UhW0C7--F7zz5Xp8Uq4RwA");
    }

    /// A browser re-sending a beacon seconds later (another receive time,
    /// another `sent_at`) maps to the same documents.
    #[test]
    fn a_re_sent_beacon_gets_the_same_ids() {
        use crate::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
        let body = br#"{"v":1,"session":{"id":"s"},"view":{"id":"v"},"sent_at":1763700000500,
            "events":[{"type":"web_vital","ts":1763700000000,"name":"LCP","value":1},{"type":"action","ts":1763700000100}]}"#;
        let resent = String::from_utf8_lossy(body).replace("1763700000500", "1763700007000");
        let limits = BeaconLimits {
            max_events: 10,
            max_string_bytes: 100,
            max_depth: 8,
            max_event_age_ms: 3_600_000,
            max_context_bytes: 64 * 1024,
            client_ip: crate::privacy::ClientIpMode::Full,
        };
        let ids = |body: &[u8], received_at_ms: i64| -> Vec<String> {
            let facts = RequestFacts {
                received_at_ms,
                client_ip: "203.0.113.1".parse().unwrap(),
                user_agent: None,
                client_hints: vec![],
            };
            decode(body, &facts, &limits)
                .unwrap()
                .events
                .iter()
                .map(|e| document_id(e, b""))
                .collect()
        };
        let first = ids(body, 1_763_700_001_000);
        assert_eq!(first, ids(resent.as_bytes(), 1_763_700_009_000));
        assert_ne!(first[0], first[1]);
    }

    fn router() -> IndexRouter {
        IndexRouter::new(&IndexOptions {
            template: None,
            prefix: "c.rum",
            data_stream: false,
            fallback: "other",
            allowed_values: &BTreeMap::new(),
        })
        .unwrap()
    }

    fn vital(seq: u64) -> Event {
        Event::from(json!({
            "@timestamp": "2026-03-07T10:00:00.000Z",
            "rum": {"type": "web_vital", "seq": seq, "vital": {"name": "LCP", "value": 1234.5}},
            "session": {"id": "s1"},
            "view": {"id": "v1"},
        }))
    }

    #[test]
    fn encodes_exact_ndjson() {
        let router = router();
        let time = chrono::Utc.with_ymd_and_hms(2026, 3, 7, 10, 0, 1).unwrap();
        let index = router.prepare(&time);
        let mut batch = BulkBatch::default();
        let mut scratch = Vec::new();
        batch.push(&vital(0), &index, &mut scratch);
        let csp = Event::from(
            json!({"rum": {"type": "csp_violation"}, "csp": {"format": "report-uri", "blocked_uri": "inline"}}),
        );
        batch.push(&csp, &index, &mut scratch);
        let mut source0 = Vec::new();
        vital(0).write_json(&mut source0);
        let id0 = document_id(&vital(0), &source0);
        let csp_source = br#"{"csp":{"blocked_uri":"inline","format":"report-uri"},"rum":{"type":"csp_violation"}}"#;
        let id1 = document_id(&csp, csp_source);
        let expected = format!(
            "{{\"create\":{{\"_index\":\"c.rum.metrics-2026.03.07\",\"_id\":\"{id0}\"}}}}\n\
             {{\"@timestamp\":\"2026-03-07T10:00:00.000Z\",\"rum\":{{\"seq\":0,\"type\":\"web_vital\",\"vital\":{{\"name\":\"LCP\",\"value\":1234.5}}}},\"session\":{{\"id\":\"s1\"}},\"view\":{{\"id\":\"v1\"}}}}\n\
             {{\"create\":{{\"_index\":\"c.rum.csp.uri-2026.03.07\",\"_id\":\"{id1}\"}}}}\n\
             {}\n",
            String::from_utf8_lossy(csp_source)
        );
        assert_eq!(String::from_utf8(batch.body.clone()).unwrap(), expected);
        assert_eq!(batch.len(), 2);
        // Spans cut the body back into its lines.
        let lines: Vec<&[u8]> = batch.body.split(|b| *b == b'\n').collect();
        assert_eq!(batch.items[1].action(&batch.body), lines[2]);
        assert_eq!(batch.items[1].document(&batch.body), lines[3]);
        assert_eq!(
            subset_body(&batch.body, &batch.items, &[1]),
            batch.items[1].whole(&batch.body)
        );
    }

    #[test]
    fn ids_follow_the_recipe() {
        // Same identity fields → same id, whatever else differs (event.ingested...).
        let mut a = vital(3);
        let mut b = vital(3);
        a.insert("event.ingested", "2026-03-07T10:00:01Z");
        b.insert("event.ingested", "2026-03-07T10:09:59Z");
        assert_eq!(document_id(&a, b"x"), document_id(&b, b"y"));
        // Each identity field matters.
        let base = document_id(&vital(3), b"");
        for (path, value) in [
            ("session.id", json!("s2")),
            ("view.id", json!("v2")),
            ("rum.type", json!("error")),
            ("rum.seq", json!(4)),
            ("@timestamp", json!("2026-03-07T10:00:00.001Z")),
        ] {
            let mut e = vital(3);
            e.insert(path, value);
            assert_ne!(document_id(&e, b""), base, "{path}");
        }
        // `"3"` and `3` are different values.
        let mut text_seq = vital(3);
        text_seq.insert("rum.seq", "3");
        assert_ne!(document_id(&text_seq, b""), base);
        // Length prefixes: moving bytes between fields changes the id.
        let mut x = vital(3);
        x.insert("session.id", "s1v");
        x.insert("view.id", "1");
        let mut y = vital(3);
        y.insert("session.id", "s1");
        y.insert("view.id", "v1");
        assert_ne!(document_id(&x, b""), document_id(&y, b""));
        assert_eq!(base.len(), 22);
        assert!(base
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn anonymous_documents_hash_their_source() {
        let report = Event::from(json!({"rum": {"type": "csp_violation"}, "@timestamp": "t"}));
        assert_ne!(
            document_id(&report, b"{\"a\":1}"),
            document_id(&report, b"{\"a\":2}")
        );
        assert_eq!(
            document_id(&report, b"{\"a\":1}"),
            document_id(&report, b"{\"a\":1}")
        );
    }

    /// Elasticsearch refuses a whole document when a key inside a
    /// `flattened` field holds `\0` (it separates key and value in the
    /// index): a beacon with such a key in its unknown fields lost the event,
    /// dead-lettered. The key is kept with U+FFFD in its place; values, and
    /// the `_id`, are as they were.
    #[test]
    fn a_nul_in_a_key_is_replaced_so_the_document_is_indexed() {
        let router = router();
        let time = chrono::Utc.with_ymd_and_hms(2026, 3, 7, 10, 0, 1).unwrap();
        let index = router.prepare(&time);
        let mut event = vital(1);
        event.insert(
            schema::RUM_EXTRA,
            json!({"a\u{0}b": "v\u{0}", "list": [{"\u{0}": 1}], "a\u{fffd}b": 2}),
        );
        event.insert(schema::RUM_VITAL_ATTRIBUTION, json!({"x\u{0}": {"y": 3}}));
        let mut batch = BulkBatch::default();
        let mut scratch = Vec::new();
        batch.push(&event, &index, &mut scratch);
        batch.push(&vital(2), &index, &mut scratch);
        let document: Value = serde_json::from_slice(batch.items[0].document(&batch.body)).unwrap();
        assert_eq!(
            document["rum"]["extra"],
            json!({"a\u{fffd}b\u{fffd}": "v\u{0}", "list": [{"\u{fffd}": 1}], "a\u{fffd}b": 2})
        );
        assert_eq!(
            document["rum"]["vital"]["attribution"],
            json!({"x\u{fffd}": {"y": 3}})
        );
        assert_eq!(document["rum"]["vital"]["value"], json!(1234.5));
        // The spans still cut the body into its lines.
        let second: Value = serde_json::from_slice(batch.items[1].document(&batch.body)).unwrap();
        assert_eq!(second["rum"]["seq"], json!(2));
        let action: Value = serde_json::from_slice(batch.items[0].action(&batch.body)).unwrap();
        assert_eq!(action["create"]["_id"], json!(document_id(&event, b"")));
    }

    /// A decoded beacon's ids read its strings (`session.id`, `view.id`)
    /// where the request's text block holds them: the same id as the same
    /// fields given as values, and nothing made and kept for it (a value
    /// per string, held by the block, until 2026-12-05).
    #[test]
    fn a_decoded_events_id_reads_its_strings_in_place() {
        use crate::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
        // Keys sorted (as `json!` writes them: the entry read key by key)
        // and `type` first (read straight into packed slots).
        let sorted = json!({
            "v": 1, "session": {"id": "s-1"}, "view": {"id": "v-1", "url": "https://x.example/"},
            "events": [{"type": "web_vital", "ts": 1_763_700_000_000_i64, "seq": 3,
                        "name": "LCP", "value": 1.5}],
        })
        .to_string();
        let type_first = r#"{"v": 1, "session": {"id": "s-1"},
            "view": {"id": "v-1", "url": "https://x.example/"},
            "events": [{"type": "web_vital", "ts": 1763700000000, "seq": 3,
                        "name": "LCP", "value": 1.5}]}"#;
        let facts = RequestFacts {
            received_at_ms: 1_763_700_000_200,
            client_ip: "203.0.113.9".parse().unwrap(),
            user_agent: None,
            client_hints: vec![],
        };
        for (body, packed) in [(sorted.as_str(), None), (type_first, Some(false))] {
            let events = decode(body.as_bytes(), &facts, &BeaconLimits::default())
                .expect("decodes")
                .events;
            assert_eq!(events[0].own_block_slots_made(), packed);
            for path in ["session.id", "view.id"] {
                let id = FieldId::of(path);
                assert!(
                    events[0].text_block_held_bytes(id).is_some(),
                    "{path}: a request's string"
                );
            }
            let (id, held) = crate::test_alloc::held_by(|| document_id(&events[0], b""));
            assert_eq!(held, id.capacity(), "only the id itself is kept");
            // `rum.seq`, a packed number, is read as one: the block's
            // slots are not made.
            assert_eq!(events[0].own_block_slots_made(), packed);
            let same = Event::from(json!({
                "session": {"id": "s-1"}, "view": {"id": "v-1"},
                "rum": {"type": "web_vital", "seq": 3, "client_ts": 1_763_700_000_000_i64}
            }));
            assert_eq!(id, document_id(&same, b""));
            assert_eq!(id, "GSlA3NZdsmuESC5D8z4_IA", "the recipe's test vector");
            assert!(!id_needs_source(&events[0]));
        }
    }

    #[test]
    fn base64url_matches_rfc4648() {
        assert_eq!(base64url(b""), "");
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
        assert_eq!(base64url(b"foob"), "Zm9vYg");
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }
}
