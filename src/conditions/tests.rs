use super::parse::edit_distance;
use super::*;
use crate::event::Event;
use serde_json::json;
use serde_json::Value;

fn condition(toml_text: &str) -> Condition {
    match toml::from_str::<Condition>(toml_text) {
        Ok(c) => c,
        Err(e) => panic!("{toml_text}: {e}"),
    }
}

fn error(toml_text: &str) -> String {
    match toml::from_str::<Condition>(toml_text) {
        Ok(c) => panic!("{toml_text} was accepted as {c:?}"),
        Err(e) => e.message().to_owned(),
    }
}

fn page() -> Event {
    Event::from(json!({
        "url": {"domain": "shop.example.com", "path": "/admin/users", "port": 8443},
        "service": {"name": "shop"},
        "user_agent": {"category": "pc"},
        "rum": {
            "type": "web_vital",
            "vital": {"name": "LCP", "value": 1234.5},
            "connection": {"save_data": false},
            "extra": {"n": 5, "s": "5", "flag": true, "list": ["a"], "nothing": null},
        },
        "labels": {"env": "production"},
        "client": {"geo": {"location": {"lat": 50.1, "lon": 14.4}}},
    }))
}

fn check(toml_text: &str, expected: bool) {
    assert_eq!(
        condition(toml_text).matches(&page()),
        expected,
        "{toml_text}"
    );
}

#[test]
fn equals_compares_strings_exactly() {
    check(
        r#"field = "url.domain"
equals = "shop.example.com""#,
        true,
    );
    check(
        r#"field = "url.domain"
equals = "SHOP.example.com""#,
        false,
    );
    check(
        r#"field = "url.domain"
equals = "shop.example.co""#,
        false,
    );
    check(
        r#"field = "url.full"
equals = "x""#,
        false,
    );
}

#[test]
fn equals_compares_numbers_numerically_and_booleans() {
    check("field = \"url.port\"\nequals = 8443", true);
    check("field = \"url.port\"\nequals = 8443.0", true);
    check("field = \"url.port\"\nequals = 8444", false);
    check("field = \"rum.vital.value\"\nequals = 1234.5", true);
    check("field = \"rum.vital.value\"\nequals = 1234", false);
    check("field = \"rum.connection.save_data\"\nequals = false", true);
    check("field = \"rum.connection.save_data\"\nequals = true", false);
    check("field = \"rum.extra.flag\"\nequals = true", true);
}

#[test]
fn kinds_never_mix_at_runtime() {
    // Dynamic fields pass the config check, so mismatches reach evaluation.
    check("field = \"rum.extra.n\"\nequals = \"5\"", false);
    check("field = \"rum.extra.s\"\nequals = 5", false);
    check("field = \"rum.extra.flag\"\nequals = \"true\"", false);
    check("field = \"rum.extra.list\"\nequals = \"a\"", false);
    check("field = \"rum.extra\"\nexists = true", true);
    check("field = \"rum.extra.n\"\nprefix = \"5\"", false);
    check("field = \"rum.extra.n\"\nmatches = \"5\"", false);
    check("field = \"rum.extra.n\"\nin = [\"5\", true]", false);
    check("field = \"rum.extra.n\"\nin = [\"5\", 5]", true);
    check("field = \"rum.extra.n\"\nnot_equals = \"5\"", true);
}

#[test]
fn not_equals_is_not_equals_including_missing_fields() {
    check(
        r#"field = "user_agent.category"
not_equals = "crawler""#,
        true,
    );
    check(
        r#"field = "user_agent.category"
not_equals = "pc""#,
        false,
    );
    check(
        r#"field = "user_agent.name"
not_equals = "Chrome""#,
        true,
    );
    check(
        r#"field = "rum.extra.nothing"
not_equals = "x""#,
        true,
    );
}

#[test]
fn in_matches_any_listed_value() {
    check(
        r#"field = "service.name"
in = ["blog", "shop"]"#,
        true,
    );
    check(
        r#"field = "service.name"
in = ["blog"]"#,
        false,
    );
    check(
        r#"field = "service.version"
in = ["1"]"#,
        false,
    );
}

#[test]
fn prefix_and_matches_read_strings() {
    check(
        r#"field = "url.path"
prefix = "/admin""#,
        true,
    );
    check(
        r#"field = "url.path"
prefix = "/Admin""#,
        false,
    );
    check(
        r#"field = "url.path"
prefix = "/admin/users/1""#,
        false,
    );
    check(
        r#"field = "url.domain"
matches = '(^|\.)example\.com$'"#,
        true,
    );
    check(
        r#"field = "url.domain"
matches = '^example\.com$'"#,
        false,
    );
    check(
        r#"field = "url.domain"
matches = '(?i)SHOP'"#,
        true,
    );
    check(
        r#"field = "url.query"
matches = '.*'"#,
        false,
    );
}

#[test]
fn exists_treats_null_as_missing() {
    check("field = \"session.id\"\nexists = true", false);
    check("field = \"session.id\"\nexists = false", true);
    check("field = \"rum.extra.nothing\"\nexists = true", false);
    check("field = \"client.geo\"\nexists = true", true);
    check("field = \"labels\"\nexists = true", true);
    check("field = \"client.geo.location.lat\"\nequals = 50.1", true);
}

#[test]
fn combinators_nest() {
    let text = r#"
all = [
  { field = "url.domain", equals = "shop.example.com" },
  { any = [
  { field = "rum.type", equals = "error" },
  { not = { field = "url.path", prefix = "/checkout" } },
  ] },
]"#;
    check(text, true);
    check(
        r#"not = { field = "url.domain", equals = "shop.example.com" }"#,
        false,
    );
    check(
        r#"not = { not = { field = "url.domain", equals = "shop.example.com" } }"#,
        true,
    );
    check(
        r#"any = [{ field = "session.id", exists = true }, { field = "labels.env", equals = "production" }]"#,
        true,
    );
    check(
        r#"all = [{ field = "session.id", exists = true }, { field = "labels.env", equals = "production" }]"#,
        false,
    );
}

#[test]
fn an_empty_event_never_panics() {
    let empty = Event::new();
    for text in [
        "field = \"url.domain\"\nequals = \"x\"",
        "field = \"url.domain\"\nnot_equals = \"x\"",
        "field = \"url.domain\"\nmatches = \"x\"",
        "field = \"labels.a.b\"\nin = [1]",
        "field = \"@timestamp\"\nprefix = \"2026\"",
    ] {
        let expected = text.contains("not_equals");
        assert_eq!(condition(text).matches(&empty), expected, "{text}");
    }
    // A scalar where the schema has an object is simply not there.
    let odd = Event::from(json!({"url": "https://x/", "client": {"geo": 3}}));
    assert!(!condition("field = \"url.domain\"\nequals = \"x\"").matches(&odd));
    assert!(!condition("field = \"client.geo.location.lat\"\nexists = true").matches(&odd));
}

#[test]
fn unknown_operator_is_named_with_a_suggestion() {
    let message = error("field = \"url.domain\"\nequal = \"x\"");
    assert!(
        message.starts_with("unknown field `equal` (did you mean `equals`?)"),
        "{message}"
    );
    assert!(message.contains("not_equals"), "{message}");
    let message = error("field = \"url.domain\"\nstarts_with = \"x\"");
    assert!(
        message.starts_with("unknown field `starts_with`:"),
        "{message}"
    );
}

#[test]
fn unknown_field_paths_are_refused() {
    let message = error("field = \"url.domian\"\nequals = \"x\"");
    assert!(
        message.contains("`url.domian` is not a known field path (did you mean `url.domain`?)"),
        "{message}"
    );
    assert!(error("field = \"nonsense\"\nexists = true")
        .contains("`nonsense` is not a known field path"));
    assert!(error("field = \"url.domain.x\"\nexists = true").contains("not a known field path"));
    assert!(error("field = \"url..domain\"\nexists = true").contains("single dots"));
    assert!(error("field = \"\"\nexists = true").contains("single dots"));
    assert!(error("field = \"client.geo.location.alt\"\nexists = true")
        .contains("not a known field path"));
}

#[test]
fn bad_regex_is_refused() {
    let message = error("field = \"url.path\"\nmatches = \"(unclosed\"");
    assert!(message.contains("invalid regex `(unclosed`"), "{message}");
}

#[test]
fn malformed_tables_are_refused() {
    assert!(error("").contains("empty condition"));
    assert!(error("field = \"url.path\"").contains("needs an operator"));
    assert!(error("equals = \"x\"").contains("`equals` needs a `field`"));
    assert!(
        error("field = \"url.path\"\nequals = \"/\"\nprefix = \"/\"")
            .contains("one operator per condition")
    );
    assert!(error("all = []").contains("at least one condition"));
    assert!(error("field = \"url.path\"\nin = []").contains("at least one value"));
    assert!(error("field = \"url.path\"\nprefix = \"\"").contains("exists = true"));
    assert!(error("all = [{ field = \"url.path\", exists = true }]\nnot = { field = \"url.path\", exists = true }")
        .contains("one combinator per table"));
    assert!(error(
        "field = \"url.path\"\nexists = true\nnot = { field = \"url.path\", exists = true }"
    )
    .contains("not both"));
    assert!(error("field = \"url.path\"\nequals = [1]").contains("a string, number or boolean"));
    assert!(error("field = \"url.path\"\nexists = \"yes\"").contains("invalid type"));
    // Errors deep inside combinators surface too.
    assert!(
        error("any = [{ not = { field = \"url.pth\", exists = true } }]")
            .contains("did you mean `url.path`")
    );
}

#[test]
fn literals_of_the_wrong_kind_for_a_schema_field_are_refused() {
    let message = error("field = \"url.port\"\nequals = \"8443\"");
    assert!(message.contains("`url.port` holds numbers"), "{message}");
    assert!(
        message.contains("write `equals = 8443` without quotes"),
        "{message}"
    );
    assert!(error("field = \"url.domain\"\nin = [\"a\", 1]").contains("holds strings"));
    assert!(
        error("field = \"rum.connection.save_data\"\nequals = \"false\"")
            .contains("holds booleans")
    );
    assert!(error("field = \"rum.http.status\"\nprefix = \"5\"").contains("`prefix` tests strings"));
    assert!(error("field = \"client.geo\"\nequals = \"x\"").contains("only `exists`"));
    assert!(error("field = \"client.geo.location\"\nmatches = \"x\"").contains("holds objects"));
}

#[test]
fn a_set_shares_lookups_without_changing_answers() {
    let texts = [
        r#"field = "url.domain"
equals = "shop.example.com""#,
        r#"not = { field = "url.domain", equals = "shop.example.com" }"#,
        r#"all = [{ field = "url.path", prefix = "/admin" }, { field = "url.domain", matches = "shop" }]"#,
        r#"any = [{ field = "session.id", exists = true }, { field = "url.path", equals = "/" }]"#,
        r#"field = "session.id"
not_equals = "x""#,
    ];
    let conditions: Vec<Condition> = texts.iter().map(|t| condition(t)).collect();
    let set = ConditionSet::new(conditions.clone());
    assert_eq!(set.len(), 5);
    for event in [
        page(),
        Event::new(),
        Event::from(json!({"url": {"domain": "x", "path": "/"}})),
    ] {
        let mut from_set = Vec::new();
        set.for_each_match(&event, |i| from_set.push(i));
        let alone: Vec<usize> = (0..conditions.len())
            .filter(|&i| conditions[i].matches(&event))
            .collect();
        assert_eq!(from_set, alone, "{event:?}");
    }
    let mut hits = Vec::new();
    set.for_each_match(&page(), |i| hits.push(i));
    assert_eq!(hits, [0, 2, 4]);
}

#[test]
fn more_fields_than_the_cache_holds_still_evaluate() {
    // 20 distinct label fields: slots past the cache are looked up directly.
    let conditions: Vec<Condition> = (0..20)
        .map(|i| condition(&format!("field = \"labels.l{i}\"\nequals = \"{i}\"")))
        .collect();
    let set = ConditionSet::new(conditions);
    let labels: serde_json::Map<String, Value> = [3, 17, 19]
        .iter()
        .map(|i| (format!("l{i}"), json!(i.to_string())))
        .collect();
    let event = Event::from(json!({ "labels": labels }));
    let mut hits = Vec::new();
    set.for_each_match(&event, |i| hits.push(i));
    assert_eq!(hits, [3, 17, 19]);
}

#[test]
fn reads_the_beacon_context_shared_between_events() {
    let beacon =
        Event::from(json!({"url": {"domain": "shop.example.com"}, "session": {"id": "s1"}}));
    let mut event = Event::with_context(beacon.context().clone());
    event.insert("rum.type", "error");
    let set = ConditionSet::new([
        condition("field = \"url.domain\"\nequals = \"shop.example.com\""),
        condition("all = [{ field = \"rum.type\", equals = \"error\" }, { field = \"session.id\", exists = true }]"),
        condition("field = \"url.path\"\nexists = true"),
    ]);
    let mut hits = Vec::new();
    set.for_each_match(&event, |i| hits.push(i));
    assert_eq!(hits, [0, 1]);
}

#[test]
fn edit_distance_counts_single_edits() {
    assert_eq!(edit_distance("equal", "equals"), 1);
    assert_eq!(edit_distance("url.domian", "url.domain"), 2);
    assert_eq!(edit_distance("", "abc"), 3);
    assert_eq!(edit_distance("same", "same"), 0);
}

/// A beacon as the `rum_beacon` source decodes it: its strings (service,
/// session, URL parts, the events' names) in the request's text block:
/// the same beacon with its keys sorted (as `json!` writes them: each
/// entry read key by key into slots of its own) or with `type` first, as
/// clients send it (read straight into the block's packed slots).
fn decoded_beacon(type_first: bool) -> Vec<Event> {
    use crate::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
    let sorted = json!({
        "v": 1,
        "app": {"name": "shop", "version": "1.2.3"},
        "session": {"id": "sess-abc"},
        "view": {"id": "view-1", "url": "https://shop.example.com/cart?step=2"},
        "events": [
            {"type": "web_vital", "ts": 1_763_700_000_000_i64, "name": "LCP", "value": 1234.5, "id": "v4-lcp-1"},
            {"type": "error", "ts": 1_763_700_000_100_i64, "message": "boom in checkout", "count": 2},
        ],
    })
    .to_string();
    let first = r#"{"v": 1, "app": {"name": "shop", "version": "1.2.3"},
        "session": {"id": "sess-abc"},
        "view": {"id": "view-1", "url": "https://shop.example.com/cart?step=2"},
        "events": [
            {"type": "web_vital", "ts": 1763700000000, "name": "LCP", "value": 1234.5, "id": "v4-lcp-1"},
            {"type": "error", "ts": 1763700000100, "message": "boom in checkout", "count": 2}]}"#;
    let body = if type_first { first } else { &sorted };
    let facts = RequestFacts {
        received_at_ms: 1_763_700_000_200,
        client_ip: "203.0.113.9".parse().unwrap(),
        user_agent: Some("Mozilla/5.0 test"),
        client_hints: vec![],
    };
    let events = decode(body.as_bytes(), &facts, &BeaconLimits::default())
        .expect("the beacon decodes")
        .events;
    let packed = type_first.then_some(false);
    assert!(events.iter().all(|e| e.own_block_slots_made() == packed));
    events
}

#[test]
fn conditions_read_a_requests_strings_in_place_and_allocate_nothing() {
    for type_first in [false, true] {
        conditions_allocate_nothing(decoded_beacon(type_first));
    }
}

fn conditions_allocate_nothing(events: Vec<Event>) {
    let set = ConditionSet::new([
        condition("field = \"service.name\"\nequals = \"shop\""),
        condition("field = \"url.domain\"\nin = [\"blog.example.com\", \"shop.example.com\"]"),
        condition("field = \"url.full\"\nprefix = \"https://shop.\""),
        condition("field = \"session.id\"\nmatches = \"^sess-[a-z]+$\""),
        condition("field = \"error.message\"\nequals = \"boom in checkout\""),
        condition("field = \"rum.vital.id\"\nnot_equals = \"v4-lcp-1\""),
        condition("field = \"rum.error.count\"\nequals = 2"),
        // An object path: whether any field under it is set, none read.
        condition("field = \"url\"\nexists = true"),
    ]);
    // Strings of the request's block, which a `Value` read would make values of.
    let ids = |path: &str| crate::event::FieldId::of(path);
    for path in ["service.name", "url.domain", "url.full", "session.id"] {
        assert!(
            events[0].text_block_held_bytes(ids(path)).is_some(),
            "{path}"
        );
    }
    // The regex's matching cache is made by its first match on a thread:
    // made here, on the same text in an event of another origin.
    set.for_each_match(&Event::from(json!({"session": {"id": "sess-abc"}})), |_| {});
    let mut hits = Vec::new();
    for (n, event) in events.iter().enumerate() {
        // Each event twice: a first read that made a value would show as
        // bytes held by the request's text block from then on.
        for _ in 0..2 {
            let (matched, peak) = crate::test_alloc::peak_during(|| {
                let mut matched = 0u32;
                set.for_each_match(event, |i| matched |= 1 << i);
                matched
            });
            assert_eq!(peak, 0, "event {n}: {peak} bytes allocated");
            hits.push(
                (0..32)
                    .filter(|i| matched & (1 << i) != 0)
                    .collect::<Vec<_>>(),
            );
        }
    }
    assert_eq!(hits[0], [0, 1, 2, 3, 7]);
    assert_eq!(hits[1], hits[0]);
    assert_eq!(hits[2], [0, 1, 2, 3, 4, 5, 6, 7]);
    assert_eq!(hits[3], hits[2]);
}
