//! Transform `sample`: keeps a share of sessions, decided by a stable hash of
//! `session.id`, so a session is kept or dropped whole, on every replica and
//! after every restart, and the browser client can make the same decision
//! before sending. Kept events carry `rum.sample_rate` so aggregations can
//! re-weight (count × 1/rate).
//!
//! The hash is a contract shared with the client (`testdata/sampling/vectors.json`):
//! FNV-1a 32-bit over the UTF-8 bytes of the key, `unit = hash / 2^32`, and an
//! event is kept when `unit < rate`.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{FunctionTransform, TransformContext};
use crate::config::CheckConfig;
use crate::event::{context_runs, Batch, Event, FieldId, FieldRead};
use crate::schema::{self, EventType};
use crate::telemetry::Counter;

/// FNV-1a, 32 bits: offset basis 2166136261, prime 16777619.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in bytes {
        hash ^= u32::from(*byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// Where a sampling key falls in [0, 1): `fnv1a32(key) / 2^32`.
pub fn sample_unit(key: &str) -> f64 {
    f64::from(fnv1a32(key.as_bytes())) / 4_294_967_296.0
}

/// The sampling decision for one key at one rate.
pub fn keeps(key: &str, rate: f64) -> bool {
    sample_unit(key) < rate
}

/// What decides an event that has no `session.id`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WithoutSession {
    /// Hash `view.id` when there is one (the page view is kept or dropped
    /// whole), else the event's own key `@timestamp|rum.type|rum.seq|url.full`.
    #[default]
    PerEvent,
    /// Keep every such event (written with `rum.sample_rate = 1`).
    Keep,
    /// Drop every such event (counted as an intentional discard).
    Drop,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SampleConfig {
    /// Share of sessions kept, from 0 (none) to 1 (all).
    pub rate: f64,
    /// Rates for some event types (`rum.type`), overriding `rate` for them,
    /// e.g. `{ resource = 0.1 }`. The same session hash decides, so a session
    /// kept at 0.1 is also kept at every higher rate.
    #[serde(default)]
    pub rates: BTreeMap<String, f64>,
    /// Event types always kept, whatever the rates (written with rate 1).
    #[serde(default = "default_keep_all")]
    pub keep_all: Vec<String>,
    /// Events without a `session.id`: `per_event` (default), `keep` or `drop`.
    #[serde(default)]
    pub without_session: WithoutSession,
}

fn default_keep_all() -> Vec<String> {
    ["error", "csp_violation", "report"]
        .map(String::from)
        .to_vec()
}

fn check_rate(rate: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(())
    } else {
        Err(format!("{rate} is not a rate between 0 and 1"))
    }
}

fn check_type(name: &str) -> Result<EventType, String> {
    EventType::parse(name).ok_or_else(|| {
        let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
        format!("unknown event type `{name}` (known: {})", known.join(", "))
    })
}

impl CheckConfig for SampleConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Err(e) = check_rate(self.rate) {
            problems.push(("rate", e));
        }
        for (name, rate) in &self.rates {
            if let Err(e) = check_type(name).and_then(|_| check_rate(*rate)) {
                problems.push(("rates", e));
            }
        }
        for name in &self.keep_all {
            if let Err(e) = check_type(name) {
                problems.push(("keep_all", e));
            }
        }
        problems
    }
}

impl SampleConfig {
    pub fn build(&self, cx: &TransformContext) -> anyhow::Result<Sample> {
        if let Some((key, problem)) = self.check().into_iter().next() {
            anyhow::bail!("`{key}`: {problem}");
        }
        let mut by_type = [self.rate; EventType::ALL.len()];
        for (name, rate) in &self.rates {
            by_type[type_index(check_type(name).map_err(anyhow::Error::msg)?)] = *rate;
        }
        for name in &self.keep_all {
            by_type[type_index(check_type(name).map_err(anyhow::Error::msg)?)] = 1.0;
        }
        Ok(Sample {
            default_rate: self.rate,
            by_type,
            without_session: self.without_session,
            discarded: cx.metrics.discarded_intentional.clone(),
            keeps_all: self.rate >= 1.0 && by_type.iter().all(|rate| *rate >= 1.0),
            decisions: Vec::new(),
        })
    }
}

fn type_index(t: EventType) -> usize {
    EventType::ALL.iter().position(|x| *x == t).unwrap_or(0)
}

/// The runtime part: a rate per event type, looked up by `rum.type`.
pub struct Sample {
    /// For events whose `rum.type` is missing or unknown.
    default_rate: f64,
    /// Indexed like `EventType::ALL`; `keep_all` types hold 1.
    by_type: [f64; EventType::ALL.len()],
    without_session: WithoutSession,
    /// `component_discarded_events_total{intentional="true"}`.
    discarded: Counter,
    /// Every type's rate is 1 (and the default's): every event is kept at
    /// rate 1, whatever it holds, and its type is not looked up (a string
    /// compared with each type's name, ~150 instructions an event).
    keeps_all: bool,
    /// Each event's decision in the batch at hand: (kept, rate applied).
    /// Kept between batches for its allocation.
    decisions: Vec<(bool, f64)>,
}

/// Slots `sample` reads and writes, resolved once.
struct SampleIds {
    rum_type: FieldId,
    session: FieldId,
    view: FieldId,
    rate: FieldId,
    seq: FieldId,
    url_full: FieldId,
}

static IDS: std::sync::LazyLock<SampleIds> = std::sync::LazyLock::new(|| SampleIds {
    rum_type: FieldId::of(schema::RUM_TYPE),
    session: FieldId::of(schema::SESSION_ID),
    view: FieldId::of(schema::VIEW_ID),
    rate: FieldId::of(schema::RUM_SAMPLE_RATE),
    seq: FieldId::of(schema::RUM_SEQ),
    url_full: FieldId::of(schema::URL_FULL),
});

impl Sample {
    fn rate_for(&self, event: &Event) -> f64 {
        event
            .get_id(IDS.rum_type)
            .and_then(Value::as_str)
            .and_then(EventType::parse)
            .map_or(self.default_rate, |t| self.by_type[type_index(t)])
    }

    /// Decides one event: whether it is kept, and at which rate.
    fn decide(&self, event: &Event) -> (bool, f64) {
        let rate = self.rate_for(event);
        if rate >= 1.0 {
            return (true, 1.0);
        }
        match non_empty(event, IDS.session) {
            Some(session) => (keeps(session, rate), rate),
            None => match self.without_session {
                WithoutSession::Keep => (true, 1.0),
                WithoutSession::Drop => (false, rate),
                WithoutSession::PerEvent => match non_empty(event, IDS.view) {
                    Some(view) => (keeps(view, rate), rate),
                    None => (keeps(&event_key(event), rate), rate),
                },
            },
        }
    }
}

/// Gives the kept events of `run` (events sharing one context) their
/// `rum.sample_rate`. An upstream `sample` used the same hash, so an event
/// that passed both was kept at the smaller of the two rates. When every
/// kept event gets the same rate and none holds one of its own (one
/// session, one rate: the usual beacon), the rate goes on the shared
/// context once; a rate per event cost ~430 instructions each.
fn record_rates(run: &mut [Event], decisions: &[(bool, f64)]) {
    let mut rates = decisions.iter().filter(|(kept, _)| *kept).map(|(_, r)| *r);
    let Some(first) = rates.next() else {
        return;
    };
    let uniform = rates.all(|rate| rate == first) && !run.iter().any(|e| e.holds_own(IDS.rate));
    let effective =
        |previous: Option<f64>, applied: f64| previous.map_or(applied, |p| p.min(applied));
    if uniform {
        let previous = run[0].context().get_id(IDS.rate).and_then(Value::as_f64);
        let rate = effective(previous, first);
        if previous != Some(rate) {
            Event::edit_shared_context(run, |context| context.set(IDS.rate, rate));
        }
        return;
    }
    for (event, &(kept, applied)) in run.iter_mut().zip(decisions) {
        if kept {
            let previous = event.get_id(IDS.rate).and_then(Value::as_f64);
            event.set(IDS.rate, effective(previous, applied));
        }
    }
}

fn non_empty(event: &Event, id: FieldId) -> Option<&str> {
    event.get_id_str(id).filter(|s| !s.is_empty())
}

/// The per-event sampling key of an event with neither session nor view:
/// `@timestamp|rum.type|rum.seq|url.full`, missing parts empty. Stable for
/// the same event on every replica; a browser cannot reproduce it (the
/// timestamp is corrected by the server), which is fine: it has a session.
pub fn event_key(event: &Event) -> String {
    // Read in place: `url.full` is a request's string and `rum.seq` a
    // packed number, which `get` would make values of (for a packed
    // number, the whole block's slots).
    let part = |id: FieldId| match event.read_id(id) {
        Some(FieldRead::Str(text)) => text.to_owned(),
        Some(read) => read.as_number().map_or_else(String::new, |n| n.to_string()),
        None => String::new(),
    };
    let timestamp = event
        .timestamp_ms()
        .map(crate::sources::beacon_decoder::iso_millis)
        .unwrap_or_default();
    format!(
        "{}|{}|{}|{}",
        timestamp,
        part(IDS.rum_type),
        part(IDS.seq),
        part(IDS.url_full)
    )
}

impl FunctionTransform for Sample {
    fn transform_batch(&mut self, batch: &mut Batch) {
        let before = batch.len();
        let mut decisions = std::mem::take(&mut self.decisions);
        decisions.clear();
        for run in context_runs(batch) {
            let start = decisions.len();
            if self.keeps_all {
                // What `decide` says of every event then.
                decisions.extend(std::iter::repeat_n((true, 1.0), run.len()));
            } else {
                decisions.extend(run.iter().map(|event| self.decide(event)));
            }
            record_rates(run, &decisions[start..]);
        }
        if decisions.iter().any(|(kept, _)| !kept) {
            let mut kept = decisions.iter().map(|(kept, _)| *kept);
            batch.retain(|_| kept.next().unwrap_or(true));
        }
        self.decisions = decisions;
        let dropped = before - batch.len();
        if dropped > 0 {
            self.discarded.add(dropped as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{ComponentMetrics, Registry};
    use serde_json::json;

    fn context() -> TransformContext {
        let registry = Registry::new();
        TransformContext {
            id: "sampler".into(),
            metrics: ComponentMetrics::new(&registry, "sampler", "transform", "sample"),
        }
    }

    fn config(toml_text: &str) -> SampleConfig {
        crate::config::decode(toml::from_str(toml_text).expect("toml")).expect("config")
    }

    fn event(session: Option<&str>, rum_type: &str) -> Event {
        let mut e = Event::from(json!({"rum": {"type": rum_type}}));
        if let Some(s) = session {
            e.insert(schema::SESSION_ID, s);
        }
        e
    }

    #[derive(Deserialize)]
    struct Vectors {
        vectors: Vec<Vector>,
    }
    #[derive(Deserialize)]
    struct Vector {
        session_id: String,
        fnv1a32: u32,
        unit: f64,
        keep_at_0_1: bool,
        keep_at_0_5: bool,
    }

    fn vectors() -> Vec<Vector> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/sampling/vectors.json"
        );
        let text = std::fs::read_to_string(path).expect("vectors.json");
        serde_json::from_str::<Vectors>(&text)
            .expect("vectors parse")
            .vectors
    }

    #[test]
    fn hash_matches_every_shared_vector() {
        let vectors = vectors();
        assert!(vectors.len() >= 10, "the vector file lost its vectors");
        for v in &vectors {
            assert_eq!(
                fnv1a32(v.session_id.as_bytes()),
                v.fnv1a32,
                "hash of {:?}",
                v.session_id
            );
            assert_eq!(
                sample_unit(&v.session_id),
                f64::from(v.fnv1a32) / 4_294_967_296.0
            );
            // serde_json's float parsing may be one ulp off the printed value.
            assert!(
                (sample_unit(&v.session_id) - v.unit).abs() < 1e-15,
                "unit of {:?}",
                v.session_id
            );
            assert_eq!(
                keeps(&v.session_id, 0.1),
                v.keep_at_0_1,
                "0.1 for {:?}",
                v.session_id
            );
            assert_eq!(
                keeps(&v.session_id, 0.5),
                v.keep_at_0_5,
                "0.5 for {:?}",
                v.session_id
            );
        }
    }

    #[test]
    fn transform_decides_every_vector_session_like_the_client() {
        let mut sample = config("rate = 0.5").build(&context()).unwrap();
        for v in vectors().iter().filter(|v| !v.session_id.is_empty()) {
            let mut batch = vec![event(Some(&v.session_id), "page_view")];
            sample.transform_batch(&mut batch);
            assert_eq!(
                batch.len() == 1,
                v.keep_at_0_5,
                "session {:?}",
                v.session_id
            );
        }
    }

    /// Session ids shaped like the client's (random UUID v4), from a fixed seed.
    fn session_ids(n: usize) -> Vec<String> {
        let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..n)
            .map(|_| {
                let (a, b) = (next(), next());
                format!(
                    "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                    a >> 32,
                    (a >> 16) & 0xffff,
                    a & 0xfff,
                    0x8000 | ((b >> 48) & 0x3fff),
                    b & 0xffff_ffff_ffff
                )
            })
            .collect()
    }

    #[test]
    fn keeps_the_configured_share_of_100k_sessions_within_one_percent() {
        let ids = session_ids(100_000);
        // Two events per session: a session is kept or dropped whole.
        let all: Batch = ids
            .iter()
            .flat_map(|id| [event(Some(id), "page_view"), event(Some(id), "web_vital")])
            .collect();
        for rate in [0.01, 0.1, 0.25, 0.5, 0.9] {
            let cx = context();
            let mut sample = config(&format!("rate = {rate}")).build(&cx).unwrap();
            let mut batch = all.clone();
            sample.transform_batch(&mut batch);
            let kept_sessions: std::collections::HashSet<&str> = batch
                .iter()
                .filter_map(|e| e.get_str(schema::SESSION_ID))
                .collect();
            assert_eq!(
                batch.len(),
                2 * kept_sessions.len(),
                "sessions were split at rate {rate}"
            );
            let share = kept_sessions.len() as f64 / ids.len() as f64;
            assert!((share - rate).abs() <= 0.01, "rate {rate}: kept {share}");
            assert_eq!(
                cx.metrics.discarded_intentional.get(),
                (2 * (ids.len() - kept_sessions.len())) as u64
            );
            assert!(batch
                .iter()
                .all(|e| e.get(schema::RUM_SAMPLE_RATE) == Some(&json!(rate))));
        }
    }

    #[test]
    fn per_type_rates_and_keep_all() {
        let ids = session_ids(2_000);
        let mut sample = config("rate = 0.5\nrates = { resource = 0.1 }")
            .build(&context())
            .unwrap();
        let mut batch: Batch = ids
            .iter()
            .flat_map(|id| {
                ["page_view", "resource", "error", "csp_violation", "report"]
                    .map(|t| event(Some(id), t))
            })
            .collect();
        sample.transform_batch(&mut batch);
        let count = |t: &str| {
            batch
                .iter()
                .filter(|e| e.get_str(schema::RUM_TYPE) == Some(t))
                .count()
        };
        let expected = |rate: f64| ids.iter().filter(|id| keeps(id, rate)).count();
        assert_eq!(count("page_view"), expected(0.5));
        assert_eq!(count("resource"), expected(0.1));
        assert!(count("resource") < count("page_view"));
        for t in ["error", "csp_violation", "report"] {
            assert_eq!(count(t), ids.len(), "{t} is in keep_all by default");
        }
        let rate_of = |t: &str| {
            batch
                .iter()
                .find(|e| e.get_str(schema::RUM_TYPE) == Some(t))
                .and_then(|e| e.get(schema::RUM_SAMPLE_RATE).cloned())
        };
        assert_eq!(rate_of("resource"), Some(json!(0.1)));
        assert_eq!(rate_of("page_view"), Some(json!(0.5)));
        assert_eq!(rate_of("error"), Some(json!(1.0)));
        // A resource kept at 0.1 belongs to a session also kept at 0.5.
        for e in batch
            .iter()
            .filter(|e| e.get_str(schema::RUM_TYPE) == Some("resource"))
        {
            assert!(keeps(e.get_str(schema::SESSION_ID).unwrap(), 0.5));
        }
    }

    #[test]
    fn keep_all_can_be_emptied_and_unknown_types_use_rate() {
        let mut sample = config("rate = 0.0\nkeep_all = []")
            .build(&context())
            .unwrap();
        let mut batch = vec![event(Some("s1"), "error"), event(Some("s1"), "teleport")];
        sample.transform_batch(&mut batch);
        assert!(batch.is_empty());
    }

    #[test]
    fn rate_bounds() {
        let mut all = config("rate = 1.0").build(&context()).unwrap();
        let mut none = config("rate = 0.0\nkeep_all = []")
            .build(&context())
            .unwrap();
        let ids = session_ids(500);
        let mut batch: Batch = ids.iter().map(|id| event(Some(id), "action")).collect();
        let mut copy = batch.clone();
        all.transform_batch(&mut batch);
        none.transform_batch(&mut copy);
        assert_eq!(batch.len(), 500);
        assert!(copy.is_empty());
    }

    #[test]
    fn without_session_per_event_uses_view_then_event_key() {
        let cx = context();
        let mut sample = config("rate = 0.5").build(&cx).unwrap();
        let views = session_ids(400);
        // Three events of each view, none with a session (an empty id counts as none).
        let mut batch: Batch = views
            .iter()
            .flat_map(|view| {
                (0..3).map(move |seq| {
                    Event::from(json!({
                        "session": {"id": ""},
                        "view": {"id": view},
                        "rum": {"type": "web_vital", "seq": seq}
                    }))
                })
            })
            .collect();
        sample.transform_batch(&mut batch);
        let kept_views: std::collections::HashSet<&str> = batch
            .iter()
            .filter_map(|e| e.get_str(schema::VIEW_ID))
            .collect();
        assert_eq!(
            batch.len(),
            3 * kept_views.len(),
            "a page view is kept whole"
        );
        let expected: std::collections::HashSet<&str> = views
            .iter()
            .map(String::as_str)
            .filter(|v| keeps(v, 0.5))
            .collect();
        assert_eq!(kept_views, expected);

        // No session, no view: each event by its own key.
        let bare: Batch = (0..1000)
            .map(|i| {
                Event::from(json!({
                    "@timestamp": format!("2026-01-01T00:00:{:02}.{:03}Z", i / 1000, i % 1000),
                    "rum": {"type": "action", "seq": i}
                }))
            })
            .collect();
        let expected = bare.iter().filter(|e| keeps(&event_key(e), 0.5)).count();
        let mut kept = bare.clone();
        sample.transform_batch(&mut kept);
        assert_eq!(kept.len(), expected);
        assert!(
            (400..600).contains(&kept.len()),
            "per-event sampling keeps about half: {}",
            kept.len()
        );
        assert_eq!(event_key(&bare[7]), "2026-01-01T00:00:00.007Z|action|7|");
    }

    /// A decoded beacon's events (`rum.seq` a packed number, `url.full` a
    /// request's string) keyed as the same events built field by field,
    /// read in place: the block's slots are not made. (No `sent_at`: the
    /// latest `ts` is taken as sent when the request came, 200 ms later.)
    #[test]
    fn the_event_key_of_a_decoded_beacon_reads_it_in_place() {
        use crate::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
        let body = r#"{"v": 1, "view": {"url": "https://shop.example/a?b=1"}, "events": [
            {"type": "action", "ts": 1763700000000, "kind": "click"},
            {"type": "web_vital", "ts": 1763700000001, "name": "LCP", "value": 1.5}]}"#;
        let facts = RequestFacts {
            received_at_ms: 1_763_700_000_200,
            client_ip: "203.0.113.9".parse().unwrap(),
            user_agent: None,
            client_hints: vec![],
        };
        let events = decode(body.as_bytes(), &facts, &BeaconLimits::default())
            .expect("decodes")
            .events;
        let keys: Vec<String> = events.iter().map(event_key).collect();
        assert!(events
            .iter()
            .all(|e| e.own_block_slots_made() == Some(false)));
        assert_eq!(
            keys,
            [
                "2025-11-21T04:40:00.199Z|action|0|https://shop.example/a?b=1",
                "2025-11-21T04:40:00.200Z|web_vital|1|https://shop.example/a?b=1"
            ]
        );
    }

    #[test]
    fn without_session_keep_and_drop() {
        let bare = || vec![event(None, "page_view"), event(None, "resource")];
        let mut keep = config("rate = 0.0\nwithout_session = \"keep\"")
            .build(&context())
            .unwrap();
        let mut batch = bare();
        keep.transform_batch(&mut batch);
        assert_eq!(batch.len(), 2);
        assert_eq!(batch[0].get(schema::RUM_SAMPLE_RATE), Some(&json!(1.0)));
        let mut drop =
            config("rate = 1.0\nrates = { resource = 0.99 }\nwithout_session = \"drop\"")
                .build(&context())
                .unwrap();
        let mut batch = bare();
        drop.transform_batch(&mut batch);
        // Only types below rate 1 are sampled at all.
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].get_str(schema::RUM_TYPE), Some("page_view"));
    }

    #[test]
    fn chained_samplers_record_the_smaller_rate() {
        let mut first = config("rate = 0.5").build(&context()).unwrap();
        let mut second = config("rate = 0.9").build(&context()).unwrap();
        let ids = session_ids(300);
        let mut batch: Batch = ids.iter().map(|id| event(Some(id), "page_view")).collect();
        first.transform_batch(&mut batch);
        let after_first = batch.len();
        second.transform_batch(&mut batch);
        assert_eq!(batch.len(), after_first, "the same hash: 0.5 ⊂ 0.9");
        assert!(batch
            .iter()
            .all(|e| e.get(schema::RUM_SAMPLE_RATE) == Some(&json!(0.5))));
    }

    /// The events of one beacon, sharing its context (and session).
    fn beacon(session: &str, types: &[EventType]) -> Batch {
        let mut context = crate::event::Context::new();
        context.set(IDS.session, session);
        let context = crate::event::Counted::new(context);
        types
            .iter()
            .map(|&t| {
                let mut e = Event::with_context(context.clone());
                e.set_type(t);
                e
            })
            .collect()
    }

    #[test]
    fn a_beacons_rate_is_recorded_once_on_its_context_when_all_share_it() {
        use EventType::{PageView, Resource, WebVital};
        let session = session_ids(200)
            .into_iter()
            .find(|id| keeps(id, 0.1))
            .unwrap();
        let rate = |e: &Event| e.get(schema::RUM_SAMPLE_RATE).cloned();

        // One rate for all: on the shared context, every event reads it.
        let mut sample = config("rate = 0.5").build(&context()).unwrap();
        let mut batch = beacon(&session, &[PageView, WebVital, Resource]);
        sample.transform_batch(&mut batch);
        assert_eq!(batch.len(), 3);
        assert!(batch.iter().all(|e| rate(e) == Some(json!(0.5))));
        assert!(batch
            .iter()
            .all(|e| crate::event::Counted::ptr_eq(e.context(), batch[0].context())));
        assert!(batch.iter().all(|e| e.get_own_id(IDS.rate).is_none()));
        // A second sampler at a smaller rate lowers it there.
        let mut second = config("rate = 0.2").build(&context()).unwrap();
        second.transform_batch(&mut batch);
        assert!(batch.iter().all(|e| rate(e) == Some(json!(0.2))));

        // Rates differ by type: each kept event gets its own.
        let mut mixed = config("rate = 0.5\nrates = { resource = 0.1 }")
            .build(&context())
            .unwrap();
        let mut batch = beacon(&session, &[PageView, Resource, PageView]);
        mixed.transform_batch(&mut batch);
        let rates: Vec<_> = batch.iter().map(rate).collect();
        assert_eq!(
            rates,
            [Some(json!(0.5)), Some(json!(0.1)), Some(json!(0.5))]
        );
        // Then a sampler whose one rate meets events with rates of their own.
        second.transform_batch(&mut batch);
        let rates: Vec<_> = batch.iter().map(rate).collect();
        assert_eq!(
            rates,
            [Some(json!(0.2)), Some(json!(0.1)), Some(json!(0.2))]
        );
    }

    #[test]
    fn bad_config_is_named() {
        let problems = |text: &str| config(text).check();
        assert_eq!(problems("rate = 1.5")[0].0, "rate");
        assert_eq!(problems("rate = -0.1")[0].0, "rate");
        assert_eq!(problems("rate = nan")[0].0, "rate");
        assert_eq!(
            problems("rate = 0.5\nrates = { resourse = 0.1 }")[0].0,
            "rates"
        );
        assert!(problems("rate = 0.5\nrates = { resourse = 0.1 }")[0]
            .1
            .contains("resourse"));
        assert_eq!(
            problems("rate = 0.5\nrates = { resource = 2 }")[0].0,
            "rates"
        );
        assert_eq!(
            problems("rate = 0.5\nkeep_all = [\"errors\"]")[0].0,
            "keep_all"
        );
        assert!(problems("rate = 0.5").is_empty());
        let unknown: Result<SampleConfig, _> =
            crate::config::decode(toml::from_str("rate = 0.5\nratio = 1").unwrap());
        assert!(unknown.is_err());
        let missing: Result<SampleConfig, _> = crate::config::decode(toml::Table::new());
        assert!(missing.unwrap_err().1.contains("rate"));
    }
}
