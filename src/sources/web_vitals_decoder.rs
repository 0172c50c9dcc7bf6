//! Google's `web-vitals` library's `Metric` objects, as pages post them
//! (`JSON.stringify(metric)` or an array of metrics), → `web_vital` events.
//! Parsed in one pass with the same depth and string limits as a beacon; a
//! request is taken whole or refused whole. The mapping of each key is in
//! `METRIC_KEYS` and `URL_KEYS`, next to the `schema` tables it points into.

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::net::IpAddr;
use std::sync::LazyLock;

use serde::de;
use serde_json::{Map, Value};

use super::beacon_decoder::{body_text, Limits, PairList};
use crate::event::{Context, Counted, Event, EventBlock, FieldId, FieldValue};
use crate::privacy::ClientIpMode;
use crate::schema::{self, EventType, FieldType};
use crate::sources::decode_error::DecodeError;
use crate::sources::json_scan::{Scan, Scanner};
use crate::url_parts::url_fields;

/// `rum.sdk.name` of every event this decoder makes.
pub const SDK_NAME: &str = "web-vitals";

/// Metric names the library reports (FID: versions before 4). Any other
/// name becomes a `custom` event, counted.
pub const KNOWN_METRICS: &[&str] = &["LCP", "CLS", "INP", "FCP", "TTFB", "FID"];

/// Metric keys → the `web_vital` payload key of `schema` they fill.
const METRIC_KEYS: &[(&str, &str)] = &[
    ("name", "name"),
    ("value", "value"),
    ("rating", "rating"),
    ("delta", "delta"),
    ("id", "id"),
    ("navigationType", "navigation_type"),
    ("attribution", "attribution"),
];

/// Keys a page may add for the page URL, in order of preference: `url` and
/// `page` (hand-written senders), `page_location` (the library's README
/// example), `navigationURL` (set by web-vitals ≥ 6). Without any, the
/// request's `Referer` is the page.
pub const URL_KEYS: &[&str] = &["url", "page", "page_location", "navigationURL"];

/// Limits on one request.
#[derive(Debug, Clone)]
pub struct MetricLimits {
    pub max_metrics: usize,
    pub max_string_bytes: usize,
    pub max_depth: usize,
    /// Keep each metric's `entries` (raw PerformanceEntry objects) under
    /// `rum.extra.entries` instead of dropping them (counted).
    pub keep_entries: bool,
    /// What `client.ip` keeps of the address (the source's `client_ip`).
    pub client_ip: ClientIpMode,
}

/// What the request told us besides the body.
pub struct RequestFacts<'a> {
    pub received_at_ms: i64,
    pub client_ip: IpAddr,
    pub user_agent: Option<&'a str>,
    /// The `Referer` header: the page, when the body names none (browsers
    /// send only the origin to another origin, by default).
    pub referer: Option<&'a str>,
}

#[derive(Debug)]
pub struct Decoded {
    pub events: Vec<Event>,
    /// The first metric's page URL, for the access log.
    pub page_url: Option<String>,
    /// Metrics whose name is not a web vital (kept as `custom`).
    pub unknown_names: usize,
    /// PerformanceEntry objects dropped from `entries` (`keep_entries = false`).
    pub dropped_entries: usize,
}

fn invalid(message: impl Into<String>) -> DecodeError {
    DecodeError::invalid("invalid_metric", message)
}

pub fn decode(
    body: &[u8],
    facts: &RequestFacts<'_>,
    limits: &MetricLimits,
) -> Result<Decoded, DecodeError> {
    let text = body_text(body, invalid)?;
    let checks = Parse {
        limits: Limits::new(limits.max_string_bytes, limits.max_depth),
        max_metrics: limits.max_metrics,
        refused: RefCell::new(None),
        skip_entries: !limits.keep_entries,
        dropped_entries: Cell::new(0),
    };
    let mut scanner = Scanner::new(text, &checks.limits);
    let metrics = read_body(&mut scanner, &checks)
        .and_then(|m| scanner.end().map(|()| m))
        .map_err(|e| {
            checks
                .refused
                .take()
                .unwrap_or_else(|| scanner.decode_error(e, limits.max_depth))
        })?;

    // Checked before anything is built: a request is refused whole.
    let ids = &*IDS;
    let mut page_urls: Vec<(Option<String>, Option<&'static str>)> =
        Vec::with_capacity(metrics.len());
    // The page URL a metric sent, and the one before it: the metrics of one
    // request mostly share it, so it is resolved once.
    let mut previous_sent = None;
    for (i, metric) in metrics.iter().enumerate() {
        match metric.iter().find(|(k, _)| k == "name") {
            Some((_, Value::String(_))) => {}
            _ => return Err(invalid(format!("metric {i}: `name` must be a string"))),
        }
        match metric.iter().find(|(k, _)| k == "value") {
            Some((_, Value::Number(_))) => {}
            _ => return Err(invalid(format!("metric {i}: `value` must be a number"))),
        }
        let sent = sent_url(metric);
        let url = match (sent, previous_sent, page_urls.last()) {
            (Some(now), Some(before), Some(resolved)) if now == before => resolved.clone(),
            _ => page_url(sent, facts.referer),
        };
        previous_sent = sent;
        page_urls.push(url);
    }

    let mut context = Context::for_request();
    context.set_event_kind();
    context.set_received_ms(facts.received_at_ms);
    context.set(ids.sdk_name, FieldValue::Static(&SDK_NAME_VALUE));
    // The whole address stays in memory for `geoip`; documents get what
    // `client_ip` allows.
    context.set_client_address(facts.client_ip);
    if let Some(ip) = limits.client_ip.stored(facts.client_ip) {
        context.set(ids.client_ip, ip);
    }
    if let Some(ua) = facts.user_agent {
        context.set(ids.user_agent, ua);
    }
    if let Some(version) = metrics.iter().find_map(|m| sdk_version(metric_id(m)?)) {
        context.set(ids.sdk_version, version);
    }
    // The first metric's page goes into the shared context; a metric of
    // another page (a soft navigation) carries its own URL fields.
    let shared_url = page_urls.first().and_then(|(url, _)| url.clone());
    if let Some(url) = &shared_url {
        for (id, value) in url_fields(url) {
            if let Some(value) = value {
                context.set(id, value);
            }
        }
    }
    let context = Counted::new(context);

    let mut unknown_names = 0;
    let dropped_entries = checks.dropped_entries.get();
    let mut events = EventBlock::with_capacity(metrics.len());
    for (seq, (metric, (url, url_key))) in metrics.into_iter().zip(page_urls).enumerate() {
        let client_ts = metric_id(&metric).and_then(id_time);
        let name = metric
            .iter()
            .find(|(k, _)| k == "name")
            .and_then(|(_, v)| v.as_str())
            .unwrap_or_default();
        let ty = if KNOWN_METRICS.contains(&name) {
            EventType::WebVital
        } else {
            unknown_names += 1;
            EventType::Custom
        };
        let mut fields: Vec<(FieldId, Option<FieldValue>)> = Vec::with_capacity(12);
        fields.push((ids.seq, Some(Value::from(seq as u64).into())));
        if url != shared_url {
            // Another page's URL, or none: the shared one is hidden.
            for (id, value) in url_fields(url.as_deref().unwrap_or_default()) {
                fields.push((id, url.as_ref().and(value).map(FieldValue::from)));
            }
        }
        let slots = if ty == EventType::WebVital {
            &ids.vital[..]
        } else {
            &ids.custom[..]
        };
        let mut extra = Map::new();
        for (key, value) in metric {
            if value.is_null() {
                continue;
            }
            // The key the page URL came from is in `url.full` already.
            if Some(&*key) == url_key {
                continue;
            }
            match slots.iter().find(|(k, _, _)| *k == key) {
                Some((_, id, ty)) if ty.accepts(&value) => fields.push((*id, Some(value.into()))),
                _ => {
                    extra.insert(key.into_owned(), value);
                }
            }
        }
        if !extra.is_empty() {
            fields.push((ids.extra, Some(Value::Object(extra).into())));
        }
        events.push(
            context.clone(),
            Some(facts.received_at_ms),
            client_ts,
            ty,
            fields,
        );
    }
    Ok(Decoded {
        events: events.finish(),
        page_url: shared_url,
        unknown_names,
        dropped_entries,
    })
}

static SDK_NAME_VALUE: LazyLock<Value> = LazyLock::new(|| Value::from(SDK_NAME));

/// A metric key, the slot it lands in, and the type its value must have.
type Slot = (&'static str, FieldId, FieldType);

struct Ids {
    sdk_name: FieldId,
    sdk_version: FieldId,
    client_ip: FieldId,
    user_agent: FieldId,
    seq: FieldId,
    extra: FieldId,
    /// `METRIC_KEYS` resolved through the `web_vital` payload table.
    vital: Vec<Slot>,
    /// A metric of another name: `custom` with its name and value.
    custom: Vec<Slot>,
}

static IDS: LazyLock<Ids> = LazyLock::new(|| {
    let slots = |ty: EventType, keys: &[(&'static str, &str)]| -> Vec<Slot> {
        keys.iter()
            .filter_map(|(wire, key)| {
                let p = ty.payload_fields().iter().find(|p| p.key == *key)?;
                Some((*wire, FieldId::of(p.field.path), p.field.ty))
            })
            .collect()
    };
    Ids {
        sdk_name: FieldId::of(schema::RUM_SDK_NAME),
        sdk_version: FieldId::of(schema::RUM_SDK_VERSION),
        client_ip: FieldId::of(schema::CLIENT_IP),
        user_agent: FieldId::of(schema::USER_AGENT_ORIGINAL),
        seq: FieldId::of(schema::RUM_SEQ),
        extra: FieldId::of(schema::RUM_EXTRA),
        vital: slots(EventType::WebVital, METRIC_KEYS),
        custom: slots(EventType::Custom, &[("name", "name"), ("value", "value")]),
    }
});

fn metric_id<'m>(metric: &'m [(Cow<'_, str>, Value)]) -> Option<&'m str> {
    metric
        .iter()
        .find(|(k, _)| k == "id")
        .and_then(|(_, v)| v.as_str())
}

/// The first `-`-separated part of `text` and what follows its `-` (empty
/// when there is none). By bytes: a `str::split` iterator per metric cost
/// more than the rest of reading its id.
fn split_dash(text: &str) -> (&str, &str) {
    match text.bytes().position(|b| b == b'-') {
        Some(dash) => (&text[..dash], &text[dash + 1..]),
        None => (text, ""),
    }
}

/// The library's ids are `v<major>-<Date.now()>-<random>`: the major
/// version of the library that made it.
fn sdk_major(id: &str) -> Option<&str> {
    let (major, _) = split_dash(id.strip_prefix('v')?);
    (!major.is_empty() && major.len() <= 3 && major.bytes().all(|b| b.is_ascii_digit()))
        .then_some(major)
}

fn sdk_version(id: &str) -> Option<String> {
    sdk_major(id).map(str::to_owned)
}

/// The epoch milliseconds in a metric id (when the page load, or the
/// bfcache restore, the metric belongs to began): the browser's own time,
/// so a re-sent metric gets the same document `_id`.
fn id_time(id: &str) -> Option<i64> {
    sdk_major(id)?;
    let (_, rest) = split_dash(id);
    let (ms, _) = split_dash(rest);
    // `Date.now()` has 13 digits from 2001 to 2286.
    if ms.len() != 13 || !ms.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    ms.parse().ok()
}

/// The page a metric belongs to, and the key it came from: its first URL
/// key, resolved against the `Referer` when relative (`location.pathname`),
/// else the `Referer`.
/// The page URL a metric sent (a string under one of `URL_KEYS`) and its key.
fn sent_url<'m>(metric: &'m [(Cow<'_, str>, Value)]) -> Option<(&'m str, &'static str)> {
    URL_KEYS.iter().find_map(|key| {
        metric
            .iter()
            .find(|(k, _)| k == key)
            .and_then(|(_, v)| Some((v.as_str()?, *key)))
    })
}

fn page_url(
    sent: Option<(&str, &'static str)>,
    referer: Option<&str>,
) -> (Option<String>, Option<&'static str>) {
    match sent {
        Some((sent, key)) if crate::url_parts::is_absolute_url(sent) => {
            (Some(sent.to_owned()), Some(key))
        }
        Some((sent, key)) => {
            let resolved = referer
                .and_then(|r| url::Url::parse(r).ok())
                .and_then(|base| base.join(sent).ok())
                .map_or_else(|| sent.to_owned(), String::from);
            (Some(resolved), Some(key))
        }
        None => (referer.map(str::to_owned), None),
    }
}

// ---- the wire format, in one pass ----
//
// Depths as `check_json_shape` counts them: a single metric object is 1 and
// its values 2; an array is 1, its metrics 2 and their values 3.

struct Parse {
    limits: Limits,
    max_metrics: usize,
    /// Why the body was refused when it is not a limit (shape, count).
    refused: RefCell<Option<DecodeError>>,
    /// `keep_entries = false`: `entries` are checked and counted, never built.
    skip_entries: bool,
    dropped_entries: Cell<usize>,
}

impl Parse {
    fn refuse<E: de::Error>(&self, error: DecodeError) -> E {
        let message = error.message.clone();
        *self.refused.borrow_mut() = Some(error);
        E::custom(message)
    }
}

type WireMetric<'de> = Vec<(Cow<'de, str>, Value)>;

/// The body, one metric or an array of them, read straight from the
/// scanner.
fn read_body<'de>(sc: &mut Scanner<'de, '_>, parse: &Parse) -> Scan<Vec<WireMetric<'de>>> {
    let not_a_body = || {
        parse.refuse(invalid(
            "the body must be a web-vitals Metric object or an array of them",
        ))
    };
    match sc.peek()? {
        b'{' => return Ok(vec![read_metric(sc, parse, 1, 0)?]),
        b'[' => {}
        _ => return sc.skip_scalar(false).and_then(|()| Err(not_a_body())),
    }
    sc.begin_array(1)?;
    let mut metrics = Vec::with_capacity(8);
    while sc.element(metrics.is_empty())? {
        let metric = read_metric(sc, parse, 2, metrics.len())?;
        if metrics.len() == parse.max_metrics {
            // Not parsed past this point.
            return Err(parse.refuse(DecodeError::too_large(
                "too_many_metrics",
                format!(
                    "more than {} metrics in one request (max_metrics_per_request)",
                    parse.max_metrics
                ),
            )));
        }
        metrics.push(metric);
    }
    Ok(metrics)
}

/// One Metric object at `depth`; its values are one deeper.
fn read_metric<'de>(
    sc: &mut Scanner<'de, '_>,
    parse: &Parse,
    depth: usize,
    index: usize,
) -> Scan<WireMetric<'de>> {
    let not_object = || parse.refuse(invalid(format!("metric {index} is not an object")));
    match sc.peek()? {
        b'{' => {}
        b'[' => return Err(not_object()),
        _ => return sc.skip_scalar(false).and_then(|()| Err(not_object())),
    }
    sc.begin_object(depth)?;
    let mut pairs = PairList::with_capacity(10);
    // Of a repeated `entries`, the last one counts, as a JSON object reads.
    let mut entries = 0;
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        if key == "entries" && parse.skip_entries {
            entries = sc.count_items(depth + 1)?;
            continue;
        }
        let value = sc.value(depth + 1)?;
        pairs.push(key, value);
    }
    parse
        .dropped_entries
        .set(parse.dropped_entries.get() + entries);
    Ok(pairs.finish())
}

#[cfg(test)]
mod tests;
