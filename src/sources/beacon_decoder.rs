//! Beacon format v1 → events. A beacon carries shared context (app, session,
//! view, device) and many events; each event becomes one document carrying
//! that context under the ECS names of `schema`, with its time corrected for
//! the browser's clock skew. A beacon is taken whole or refused whole: no
//! event of a bad beacon is half-written.

use std::net::IpAddr;

use serde_json::{Map, Value};

use crate::event::Event;
use crate::http::intake::{check_json_shape, json_error, IntakeError};
use crate::schema::{self, EventType};

/// Limits on what one beacon may contain.
#[derive(Debug, Clone)]
pub struct BeaconLimits {
    pub max_events: usize,
    pub max_string_bytes: usize,
    pub max_depth: usize,
    /// Event times are clamped to [received − this, received].
    pub max_event_age_ms: i64,
}

/// What the request told us besides the body.
pub struct RequestFacts<'a> {
    pub received_at_ms: i64,
    pub client_ip: IpAddr,
    pub user_agent: Option<&'a str>,
    /// `Sec-CH-UA*` request headers (name without the prefix, value).
    pub client_hints: Vec<(&'static str, &'a str)>,
}

#[derive(Debug)]
pub struct Decoded {
    pub events: Vec<Event>,
    /// `view.url`, for the access log.
    pub page_url: Option<String>,
    /// Events whose `type` was unknown and kept as `custom`.
    pub unknown_types: usize,
    /// Top-level keys the format does not know (ignored).
    pub ignored_keys: usize,
}

pub const BEACON_VERSION: u64 = 1;

/// Request headers copied into `rum.ua_hints` when the beacon has no `ua_hints`.
pub const CLIENT_HINT_HEADERS: &[(&str, &str)] = &[
    ("sec-ch-ua", "sec_ch_ua"),
    ("sec-ch-ua-mobile", "sec_ch_ua_mobile"),
    ("sec-ch-ua-platform", "sec_ch_ua_platform"),
    ("sec-ch-ua-platform-version", "sec_ch_ua_platform_version"),
    ("sec-ch-ua-model", "sec_ch_ua_model"),
    ("sec-ch-ua-full-version-list", "sec_ch_ua_full_version_list"),
];

fn invalid(message: impl Into<String>) -> IntakeError {
    IntakeError::bad_request("invalid_beacon", message)
}

pub fn decode(
    body: &[u8],
    facts: &RequestFacts<'_>,
    limits: &BeaconLimits,
) -> Result<Decoded, IntakeError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid("empty body"));
    }
    let value: Value =
        serde_json::from_slice(body).map_err(|e| json_error(&e, limits.max_depth))?;
    check_json_shape(&value, limits.max_string_bytes, limits.max_depth)?;
    let Value::Object(mut beacon) = value else {
        return Err(invalid("a beacon is a JSON object"));
    };

    match beacon.remove("v") {
        Some(Value::Number(n)) if n.as_u64() == Some(BEACON_VERSION) => {}
        Some(other) => {
            return Err(IntakeError::bad_request(
                "unsupported_version",
                format!("unsupported beacon version {other} (this server speaks v:1)"),
            ))
        }
        None => return Err(invalid("missing `v` (beacon format version, 1)")),
    }
    let entries = match beacon.remove("events") {
        Some(Value::Array(entries)) => entries,
        Some(_) => return Err(invalid("`events` must be an array")),
        None => return Err(invalid("missing `events`")),
    };
    if entries.len() > limits.max_events {
        return Err(IntakeError::new(
            http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_events",
            format!(
                "{} events in one beacon; max_events_per_beacon is {}",
                entries.len(),
                limits.max_events
            ),
        ));
    }
    let mut times = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let Value::Object(entry) = entry else {
            return Err(invalid(format!("events[{i}] is not an object")));
        };
        match entry.get("type") {
            Some(Value::String(_)) => {}
            _ => return Err(invalid(format!("events[{i}].type must be a string"))),
        }
        times.push(match entry.get("ts") {
            None => None,
            Some(Value::Number(n)) => Some(n.as_f64().unwrap_or(0.0) as i64),
            Some(_) => {
                return Err(invalid(format!(
                    "events[{i}].ts must be epoch milliseconds"
                )))
            }
        });
    }
    let sent_at = match beacon.remove("sent_at") {
        None => times.iter().flatten().max().copied(),
        Some(Value::Number(n)) => n.as_f64().map(|f| f as i64),
        Some(_) => return Err(invalid("`sent_at` must be epoch milliseconds")),
    };

    let mut context = Event::new();
    context.insert(schema::EVENT_KIND, "event");
    context.insert(schema::EVENT_INGESTED, iso_millis(facts.received_at_ms));
    context.insert("rum.beacon_version", BEACON_VERSION);
    context.insert(schema::CLIENT_IP, facts.client_ip.to_string());
    if let Some(ua) = facts.user_agent {
        context.insert(schema::USER_AGENT_ORIGINAL, ua);
    }
    let mut page_url = None;
    let mut ignored_keys = 0;
    for (key, value) in beacon {
        match key.as_str() {
            "app" => copy_strings(
                &mut context,
                "app",
                value,
                &[
                    ("name", schema::SERVICE_NAME),
                    ("version", schema::SERVICE_VERSION),
                    ("env", schema::SERVICE_ENVIRONMENT),
                ],
            )?,
            "session" => copy_strings(
                &mut context,
                "session",
                value,
                &[("id", schema::SESSION_ID)],
            )?,
            "view" => {
                page_url = apply_view(&mut context, value)?;
            }
            "device" => apply_device(&mut context, value)?,
            "ua_hints" => match value {
                Value::Object(_) => context.insert(schema::RUM_UA_HINTS, value),
                Value::Null => {}
                _ => return Err(invalid("`ua_hints` must be an object")),
            },
            _ => ignored_keys += 1,
        }
    }
    if context.get(schema::RUM_UA_HINTS).is_none() && !facts.client_hints.is_empty() {
        let hints: Map<String, Value> = facts
            .client_hints
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
            .collect();
        context.insert(schema::RUM_UA_HINTS, Value::Object(hints));
    }

    // One shared copy of the context for all of the beacon's events.
    let context = match context.into_value() {
        Value::Object(map) => std::sync::Arc::new(map),
        _ => std::sync::Arc::new(Map::new()),
    };
    let offset = sent_at.map(|sent| facts.received_at_ms - sent).unwrap_or(0);
    let earliest = facts.received_at_ms - limits.max_event_age_ms;
    let mut unknown_types = 0;
    let mut events = Vec::with_capacity(entries.len());
    for (seq, (entry, ts)) in entries.into_iter().zip(times).enumerate() {
        let Value::Object(entry) = entry else {
            continue;
        };
        let at = ts
            .map(|ts| {
                ts.saturating_add(offset)
                    .clamp(earliest, facts.received_at_ms)
            })
            .unwrap_or(facts.received_at_ms);
        let mut event = Event::with_shared(context.clone());
        event.insert(schema::TIMESTAMP, iso_millis(at));
        event.insert(schema::RUM_SEQ, seq as u64);
        if apply_payload(&mut event, entry)? {
            unknown_types += 1;
        }
        events.push(event);
    }
    Ok(Decoded {
        events,
        page_url,
        unknown_types,
        ignored_keys,
    })
}

fn copy_strings(
    event: &mut Event,
    what: &str,
    value: Value,
    keys: &[(&str, &str)],
) -> Result<(), IntakeError> {
    let Value::Object(mut map) = value else {
        return Err(invalid(format!("`{what}` must be an object")));
    };
    for (key, path) in keys {
        match map.remove(*key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => event.insert(path, s),
            Some(_) => return Err(invalid(format!("`{what}.{key}` must be a string"))),
        }
    }
    Ok(())
}

/// `view` → view.id, view.title, url.*, http.request.referrer. Returns the URL.
fn apply_view(event: &mut Event, value: Value) -> Result<Option<String>, IntakeError> {
    let Value::Object(mut map) = value else {
        return Err(invalid("`view` must be an object"));
    };
    let url = match map.remove("url") {
        Some(Value::String(url)) => Some(url),
        None | Some(Value::Null) => None,
        Some(_) => return Err(invalid("`view.url` must be a string")),
    };
    copy_strings(
        event,
        "view",
        Value::Object(map),
        &[
            ("id", schema::VIEW_ID),
            ("title", schema::VIEW_TITLE),
            ("referrer", schema::HTTP_REFERRER),
        ],
    )?;
    if let Some(url) = &url {
        set_url_fields(event, url);
    }
    Ok(url)
}

/// Writes `url.full` and, when it parses, its parts. Used again by `scrub_url`.
/// Parts the URL has are overwritten, parts it lacks are removed: removing
/// only what is gone keeps a beacon's shared context shared (a removal from
/// it copies it for this event).
pub fn set_url_fields(event: &mut Event, full: &str) {
    event.insert(schema::URL_FULL, full);
    let url = url::Url::parse(full).ok();
    let url = url.as_ref();
    let parts: [(&str, Option<Value>); 6] = [
        (schema::URL_SCHEME, url.map(|u| u.scheme().into())),
        (
            schema::URL_DOMAIN,
            url.and_then(|u| u.host_str()).map(Value::from),
        ),
        (
            schema::URL_PORT,
            url.and_then(|u| u.port()).map(Value::from),
        ),
        (schema::URL_PATH, url.map(|u| u.path().into())),
        (
            schema::URL_QUERY,
            url.and_then(|u| u.query()).map(Value::from),
        ),
        (
            schema::URL_FRAGMENT,
            url.and_then(|u| u.fragment()).map(Value::from),
        ),
    ];
    for (path, value) in parts {
        match value {
            Some(value) => event.insert(path, value),
            None => {
                if event.get(path).is_some() {
                    event.remove(path);
                }
            }
        }
    }
}

fn apply_device(event: &mut Event, value: Value) -> Result<(), IntakeError> {
    let Value::Object(mut map) = value else {
        return Err(invalid("`device` must be an object"));
    };
    let number = |v: Option<Value>, name: &str| match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(Some(n)),
        Some(_) => Err(invalid(format!("`device.{name}` must be a number"))),
    };
    if let Some(n) = number(map.remove("memory"), "memory")? {
        event.insert("rum.device.memory", n);
    }
    if let Some(n) = number(map.remove("cores"), "cores")? {
        event.insert("rum.device.cores", n);
    }
    match map.remove("connection") {
        None | Some(Value::Null) => {}
        Some(Value::Object(mut c)) => {
            if let Some(Value::String(s)) = c.remove("effective_type") {
                event.insert("rum.connection.effective_type", s);
            }
            for key in ["rtt", "downlink"] {
                if let Some(Value::Number(n)) = c.remove(key) {
                    event.insert(&format!("rum.connection.{key}"), n);
                }
            }
            if let Some(Value::Bool(b)) = c.remove("save_data") {
                event.insert("rum.connection.save_data", b);
            }
        }
        Some(_) => return Err(invalid("`device.connection` must be an object")),
    }
    Ok(())
}

/// Maps one beacon entry's keys onto the document. Keys the type does not
/// know, and values of the wrong JSON type, are kept under `rum.extra` (a
/// `flattened` field) instead of being dropped or breaking the mapping.
/// Returns whether the type was unknown.
fn apply_payload(event: &mut Event, entry: Map<String, Value>) -> Result<bool, IntakeError> {
    let type_name = entry
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (event_type, unknown) = match EventType::from_beacon(type_name) {
        Some(t) => (t, false),
        None => (EventType::Custom, true),
    };
    let type_name = if unknown {
        type_name.to_owned()
    } else {
        String::new()
    };
    event.insert(schema::RUM_TYPE, event_type.as_str());
    event.insert(schema::EVENT_DATASET, event_type.dataset());
    let fields = event_type.payload_fields();
    let mut extra = Map::new();
    // Payload fields are gathered per parent object (`rum.vital`...) and
    // inserted once, reusing the parsed key strings: the hot path of intake.
    let mut groups: Vec<(&'static str, Map<String, Value>)> = Vec::with_capacity(2);
    for (key, value) in entry {
        match key.as_str() {
            "type" | "ts" => continue,
            "view" => {
                // An event may belong to another view than the beacon's
                // (e.g. the final CLS of the page the SPA just left).
                apply_view(event, value)?;
                continue;
            }
            _ => {}
        }
        if value.is_null() {
            continue;
        }
        let Some(spec) = fields.iter().find(|f| f.key == key) else {
            extra.insert(key, value);
            continue;
        };
        if !spec.field.ty.accepts(&value) {
            extra.insert(key, value);
            continue;
        }
        match spec.field.path.rsplit_once('.') {
            Some((parent, leaf)) if leaf == key => {
                match groups.iter_mut().find(|(p, _)| *p == parent) {
                    Some((_, map)) => {
                        map.insert(key, value);
                    }
                    None => {
                        let mut map = Map::new();
                        map.insert(key, value);
                        groups.push((parent, map));
                    }
                }
            }
            _ => event.insert(spec.field.path, value),
        }
    }
    for (parent, map) in groups {
        match event.get_mut(parent).and_then(Value::as_object_mut) {
            Some(existing) => existing.extend(map),
            None => event.insert(parent, Value::Object(map)),
        }
    }
    if unknown {
        let shown: String = type_name.chars().take(64).collect();
        event.insert("rum.custom.original_type", shown);
    }
    if !extra.is_empty() {
        event.insert(schema::RUM_EXTRA, Value::Object(extra));
    }
    Ok(unknown)
}

/// `2026-11-21T10:39:30.175Z`
pub fn iso_millis(ms: i64) -> String {
    match chrono::DateTime::from_timestamp_millis(ms) {
        Some(t) => t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        None => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: i64 = 1_700_000_000_000;

    fn facts() -> RequestFacts<'static> {
        RequestFacts {
            received_at_ms: NOW,
            client_ip: "203.0.113.9".parse().unwrap(),
            user_agent: Some("Mozilla/5.0 test"),
            client_hints: vec![],
        }
    }

    fn limits() -> BeaconLimits {
        BeaconLimits {
            max_events: 10,
            max_string_bytes: 100,
            max_depth: 5,
            max_event_age_ms: 3_600_000,
        }
    }

    fn decode_json(v: Value) -> Result<Decoded, IntakeError> {
        decode(v.to_string().as_bytes(), &facts(), &limits())
    }

    #[test]
    fn fans_out_with_context_and_skew_correction() {
        // The browser clock runs 10 s ahead: sent_at is NOW + 10 s.
        let decoded = decode_json(json!({
            "v": 1,
            "app": {"name": "shop", "version": "1.2", "env": "prod"},
            "session": {"id": "s1"},
            "view": {"id": "v1", "url": "https://shop.example.com:8443/p/1?q=2#top", "referrer": "https://google.com/"},
            "sent_at": NOW + 10_000,
            "events": [
                {"type": "web_vital", "ts": NOW + 9_000, "name": "LCP", "value": 1234.5, "rating": "good"},
                {"type": "error", "ts": NOW + 8_000, "message": "boom", "name": "TypeError", "stack": "at x", "line": "oops"},
                {"type": "teleport", "ts": NOW + 10_000, "foo": 1}
            ]
        }))
        .unwrap();
        assert_eq!(decoded.events.len(), 3);
        assert_eq!(decoded.unknown_types, 1);
        let [vital, error, custom] = &decoded.events[..] else {
            panic!()
        };
        assert_eq!(
            vital.get_str("@timestamp"),
            Some(iso_millis(NOW - 1_000).as_str())
        );
        assert_eq!(
            error.get_str("@timestamp"),
            Some(iso_millis(NOW - 2_000).as_str())
        );
        assert_eq!(vital.get("rum.vital.value"), Some(&json!(1234.5)));
        assert_eq!(vital.get_str("event.dataset"), Some("rum.web_vital"));
        assert_eq!(vital.get_str("service.name"), Some("shop"));
        assert_eq!(vital.get_str("url.domain"), Some("shop.example.com"));
        assert_eq!(vital.get("url.port"), Some(&json!(8443)));
        assert_eq!(vital.get_str("url.query"), Some("q=2"));
        assert_eq!(
            vital.get_str("http.request.referrer"),
            Some("https://google.com/")
        );
        assert_eq!(vital.get_str("client.ip"), Some("203.0.113.9"));
        assert_eq!(error.get_str("error.type"), Some("TypeError"));
        // Wrong-typed values are kept aside, not dropped.
        assert_eq!(error.get("rum.extra.line"), Some(&json!("oops")));
        assert_eq!(error.get("rum.seq"), Some(&json!(1)));
        assert_eq!(custom.get_str("rum.type"), Some("custom"));
        assert_eq!(custom.get_str("rum.custom.original_type"), Some("teleport"));
        assert_eq!(custom.get("rum.extra.foo"), Some(&json!(1)));
    }

    #[test]
    fn the_clients_seq_replaces_the_position_in_the_beacon() {
        let decoded = decode_json(json!({
            "v": 1,
            "events": [{"type": "action", "seq": 41}, {"type": "web_vital", "seq": 42}, {"type": "error"}, {"type": "http", "seq": "x"}]
        }))
        .unwrap();
        let seqs: Vec<_> = decoded
            .events
            .iter()
            .map(|e| e.get("rum.seq").cloned())
            .collect();
        assert_eq!(
            seqs,
            [
                Some(json!(41)),
                Some(json!(42)),
                Some(json!(2)),
                Some(json!(3))
            ]
        );
        assert_eq!(decoded.events[3].get("rum.extra.seq"), Some(&json!("x")));
        assert!(decoded.events[0].get("rum.extra").is_none());
    }

    #[test]
    fn times_are_clamped_to_the_receive_window() {
        let decoded = decode_json(json!({
            "v": 1, "sent_at": NOW,
            "events": [{"type": "action", "ts": NOW + 999_999_999}, {"type": "action", "ts": 0}, {"type": "action"}]
        }))
        .unwrap();
        let times: Vec<&str> = decoded
            .events
            .iter()
            .map(|e| e.get_str("@timestamp").unwrap())
            .collect();
        assert_eq!(
            times,
            [
                iso_millis(NOW),
                iso_millis(NOW - 3_600_000),
                iso_millis(NOW)
            ]
        );
    }

    #[test]
    fn refuses_bad_beacons_whole() {
        let cases = [
            (json!([1, 2]), "invalid_beacon"),
            (json!({"events": []}), "invalid_beacon"),
            (json!({"v": 2, "events": []}), "unsupported_version"),
            (json!({"v": 1, "events": {}}), "invalid_beacon"),
            (json!({"v": 1, "events": [1]}), "invalid_beacon"),
            (json!({"v": 1, "events": [{"ts": 1}]}), "invalid_beacon"),
            (
                json!({"v": 1, "events": [{"type": "action", "ts": "yesterday"}]}),
                "invalid_beacon",
            ),
            (
                json!({"v": 1, "app": {"name": 5}, "events": []}),
                "invalid_beacon",
            ),
            (
                json!({"v": 1, "events": [{"type": "a", "x": "y".repeat(101)}]}),
                "string_too_long",
            ),
            (
                json!({"v": 1, "events": [{"type": "a", "x": [[[[[1]]]]]}]}),
                "too_deep",
            ),
            (
                json!({"v": 1, "events": vec![json!({"type": "action"}); 11]}),
                "too_many_events",
            ),
        ];
        for (body, error_type) in cases {
            let err = decode_json(body.clone()).unwrap_err();
            assert_eq!(err.error_type, error_type, "{body}");
        }
        for raw in [&b"{\"v\":1,"[..], b"\xff\xfe", b"", b"   "] {
            let err = decode(raw, &facts(), &limits()).unwrap_err();
            assert_eq!(err.status, http::StatusCode::BAD_REQUEST);
        }
        let invalid_utf8 = b"{\"v\":1,\"events\":[{\"type\":\"a\",\"x\":\"\xff\"}]}";
        assert_eq!(
            decode(invalid_utf8, &facts(), &limits())
                .unwrap_err()
                .error_type,
            "invalid_json"
        );
    }

    #[test]
    fn header_client_hints_fill_in_when_the_beacon_has_none() {
        let mut f = facts();
        f.client_hints = vec![("sec_ch_ua_platform", "\"Windows\"")];
        let decoded = decode(br#"{"v":1,"events":[{"type":"action"}]}"#, &f, &limits()).unwrap();
        assert_eq!(
            decoded.events[0].get_str("rum.ua_hints.sec_ch_ua_platform"),
            Some("\"Windows\"")
        );
    }
}
