use super::client_hints::{is_grease, parse_brand_list, windows_release};
use super::corrections::android_model;
use super::*;
use crate::telemetry::{ComponentMetrics, Registry};
use serde_json::json;
use serde_json::Value;

#[derive(Deserialize)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    what: String,
    ua: String,
    #[serde(default)]
    hints: Option<Value>,
    expect: std::collections::BTreeMap<String, String>,
    synthetic: bool,
}

fn cases() -> Vec<Case> {
    let text = include_str!("../../../testdata/user_agents/cases.json");
    serde_json::from_str::<Cases>(text)
        .expect("cases.json parses")
        .cases
}

fn transform(config: UserAgentConfig) -> (UserAgentTransform, ComponentMetrics) {
    let registry = Registry::new();
    let metrics = ComponentMetrics::new(&registry, "ua", "transform", "user_agent");
    let cx = TransformContext {
        id: "ua".into(),
        metrics: metrics.clone(),
    };
    (config.build(&cx).expect("builds"), metrics)
}

fn event(ua: &str, hints: Option<&Value>) -> Event {
    let mut event =
        Event::from(json!({"user_agent": {"original": ua}, "rum": {"type": "page_view"}}));
    if let Some(hints) = hints {
        event.insert(schema::RUM_UA_HINTS, hints.clone());
    }
    event
}

/// Every `user_agent.*` field but `original`, flattened to `os.name`-style keys.
fn written(event: &Event) -> std::collections::BTreeMap<String, String> {
    let mut out = std::collections::BTreeMap::new();
    fn walk(prefix: &str, value: &Value, out: &mut std::collections::BTreeMap<String, String>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&key, v, out);
                }
            }
            Value::String(s) => {
                out.insert(prefix.to_owned(), s.clone());
            }
            other => {
                out.insert(prefix.to_owned(), other.to_string());
            }
        }
    }
    if let Some(ua) = event.to_value().get(schema::USER_AGENT) {
        walk("", ua, &mut out);
    }
    out.remove("original");
    out
}

#[test]
fn testdata_user_agents_resolve_as_expected() {
    let (mut t, _) = transform(UserAgentConfig::default());
    let mut failures = Vec::new();
    for case in cases() {
        let mut batch = vec![event(&case.ua, case.hints.as_ref())];
        t.transform_batch(&mut batch);
        let got = written(&batch[0]);
        let synthetic = batch[0].get(schema::LABELS_SYNTHETIC) == Some(&json!(true));
        if std::env::var_os("UA_CASES_SHOW").is_some() {
            eprintln!("{:<70} {:?} synthetic={}", case.what, got, synthetic);
        }
        if got != case.expect || synthetic != case.synthetic {
            failures.push(format!(
                "{}\n  ua: {}\n  expected {:?} synthetic={}\n  got      {:?} synthetic={}",
                case.what, case.ua, case.expect, case.synthetic, got, synthetic
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn cache_hit_gives_the_same_fields_as_a_parse() {
    let (mut t, metrics) = transform(UserAgentConfig::default());
    let cases = cases();
    let mut first: Batch = cases
        .iter()
        .map(|c| event(&c.ua, c.hints.as_ref()))
        .collect();
    let mut second = first.clone();
    t.transform_batch(&mut first);
    t.transform_batch(&mut second);
    assert_eq!(first, second);
    let lookups = |result| {
        metrics
            .registry()
            .counter_sum("user_agent_cache_lookups_total", &[("result", result)])
    };
    assert_eq!(lookups("miss"), cases.len() as u64);
    assert_eq!(lookups("hit"), cases.len() as u64);
}

#[test]
fn hints_are_part_of_the_cache_key() {
    let (mut t, _) = transform(UserAgentConfig::default());
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    let win11 = json!({"platform": "Windows", "platformVersion": "15.0.0"});
    let mut batch = vec![event(ua, None), event(ua, Some(&win11)), event(ua, None)];
    t.transform_batch(&mut batch);
    let versions: Vec<_> = batch
        .iter()
        .map(|e| e.get_str("user_agent.os.version"))
        .collect();
    assert_eq!(versions, [Some("10"), Some("11"), Some("10")]);
}

#[test]
fn cache_stays_bounded_and_keeps_answering() {
    let (mut t, _) = transform(UserAgentConfig {
        cache_size: 8,
        ..UserAgentConfig::default()
    });
    for round in 0..3 {
        let mut batch: Batch = (0..50)
            .map(|i| {
                event(
                    &format!(
                        "Mozilla/5.0 (X11; Linux x86_64; rv:{i}.0) Gecko/20100101 Firefox/{i}.0"
                    ),
                    None,
                )
            })
            .collect();
        t.transform_batch(&mut batch);
        for (i, e) in batch.iter().enumerate() {
            assert_eq!(
                e.get_str("user_agent.version"),
                Some(format!("{i}.0").as_str()),
                "round {round}"
            );
        }
        assert!(t.cache.len() <= 8, "cache holds {}", t.cache.len());
    }
}

#[test]
fn huge_user_agents_are_parsed_but_not_cached() {
    let (mut t, _) = transform(UserAgentConfig::default());
    let ua = format!(
        "Mozilla/5.0 (Windows NT 10.0; rv:125.0) Gecko/20100101 Firefox/125.0 {}",
        "x".repeat(10_000)
    );
    let mut batch = vec![event(&ua, None)];
    t.transform_batch(&mut batch);
    assert_eq!(batch[0].get_str("user_agent.name"), Some("Firefox"));
    assert_eq!(t.cache.len(), 0);
}

#[test]
fn hints_held_in_memory_past_the_key_limit_are_not_cached() {
    // 1,900 nulls: 60 KB held as `Value`s (under the source's 64 KiB
    // context budget) but no string bytes, which the key size used to count
    // alone; 4096 such keys held some 250 MB. One beacon each, every key
    // new.
    let (mut t, _) = transform(UserAgentConfig::default());
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    for i in 0..3 {
        let heavy = json!({"platform": "Linux", "x": vec![Value::Null; 1900], "n": i});
        let mut batch = vec![event(ua, Some(&heavy))];
        t.transform_batch(&mut batch);
        assert_eq!(batch[0].get_str("user_agent.name"), Some("Firefox"));
    }
    assert_eq!(t.cache.len(), 0, "heavy hints were kept in the cache");

    // What Chrome's client sends (getHighEntropyValues) is still cached.
    let chrome = json!({
        "brands": [{"brand": "Chromium", "version": "124"}, {"brand": "Google Chrome", "version": "124"}, {"brand": "Not-A.Brand", "version": "99"}],
        "fullVersionList": [{"brand": "Chromium", "version": "124.0.6367.91"}, {"brand": "Google Chrome", "version": "124.0.6367.91"}, {"brand": "Not-A.Brand", "version": "99.0.0.0"}],
        "mobile": false, "platform": "Windows", "platformVersion": "15.0.0", "model": ""
    });
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    let mut batch = vec![event(ua, Some(&chrome)), event(ua, Some(&chrome))];
    t.transform_batch(&mut batch);
    assert_eq!(t.cache.len(), 1);
    assert_eq!(batch[1].get_str("user_agent.os.version"), Some("11"));
}

#[test]
fn only_the_head_of_a_huge_user_agent_is_parsed() {
    // woothee's scans are linear in the UA: 64 KB (the header limit) cost
    // some 300 parses of a real UA, on every beacon (too long to cache).
    // Past MAX_PARSED_UA_BYTES nothing is read, so a marker there is not
    // seen (the bytes around the cut are a multibyte character).
    let parser = UserAgentParser::new(&[], true);
    let head = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 ";
    let pad = "é".repeat((MAX_PARSED_UA_BYTES - head.len()) / 2 + 1);
    let tail = " HeadlessChrome/124.0.0.0";
    let ua = format!("{head}{pad}{tail}{}", "x".repeat(60_000));
    let info = parser.parse(&ua, None);
    assert_eq!(info, parser.parse(head, None));
    assert_eq!(info.name.as_deref(), Some("Chrome"));
    assert!(!info.synthetic);
    // Under the limit the whole UA is read.
    let short = format!("{head}{tail}");
    let info = parser.parse(&short, None);
    assert_eq!(info.name.as_deref(), Some("HeadlessChrome"));
    assert!(info.synthetic);
}

#[test]
fn collision_never_returns_another_key() {
    let mut cache = ParseCache::new(16);
    let firefox = Prepared::new(UserAgentInfo {
        name: Some("Firefox".into()),
        ..Default::default()
    });
    cache.insert(42, "Firefox UA", b"", Arc::new(firefox));
    assert!(cache.get(42, "Crafted UA", b"").is_none());
    assert!(cache.get(42, "Firefox UA", b"").is_some());
    assert!(cache
        .get(42, "Firefox UA", br#"{"platform":"Linux"}"#)
        .is_none());
}

#[test]
fn drop_synthetic_drops_and_counts() {
    let (mut t, metrics) = transform(UserAgentConfig {
        drop_synthetic: true,
        synthetic_patterns: vec!["  MyMonitor ".into()],
        ..UserAgentConfig::default()
    });
    let mut batch = vec![
        event(
            "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
            None,
        ),
        event(
            "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0",
            None,
        ),
        event(
            "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0 mymonitor/3",
            None,
        ),
    ];
    t.transform_batch(&mut batch);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].get_str("user_agent.name"), Some("Firefox"));
    assert_eq!(batch[0].get(schema::LABELS_SYNTHETIC), None);
    assert_eq!(metrics.discarded_intentional.get(), 2);
}

#[test]
fn configured_pattern_labels_without_dropping() {
    let (mut t, metrics) = transform(UserAgentConfig {
        synthetic_patterns: vec!["Canarytrace".into()],
        ..UserAgentConfig::default()
    });
    let mut batch = vec![event(
        "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0 canarytrace/1.0",
        None,
    )];
    t.transform_batch(&mut batch);
    assert_eq!(batch[0].get(schema::LABELS_SYNTHETIC), Some(&json!(true)));
    assert_eq!(metrics.discarded_intentional.get(), 0);
}

#[test]
fn nasty_inputs_do_not_panic_or_invent_fields() {
    let (mut t, _) = transform(UserAgentConfig::default());
    let nasty = [
        "",
        "-",
        "(",
        ")(",
        "((((((((",
        "Mozilla/5.0 (Linux; Android",
        "Mozilla/5.0 (Linux; Android 14; ",
        "FBAV/",
        "Instagram ",
        " Instagram x",
        "HeadlessChrome/.",
        "\u{0}\u{1}\u{fffd}ünïcödé 😀 Chrome/😀",
        "Mozilla/5.0 (iPhone; CPU iPhone OS 1_ like Mac OS X)",
    ];
    for ua in nasty {
        let mut batch = vec![event(ua, None)];
        t.transform_batch(&mut batch);
        let got = written(&batch[0]);
        for value in got.values() {
            assert!(!value.is_empty() && value != "UNKNOWN", "{ua:?} → {got:?}");
        }
    }
    // An empty UA says nothing at all.
    let mut batch = vec![event("", None)];
    t.transform_batch(&mut batch);
    assert!(written(&batch[0]).is_empty());
}

#[test]
fn malformed_hints_are_ignored_not_trusted() {
    let (mut t, _) = transform(UserAgentConfig::default());
    let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    for hints in [
        json!({"brands": "Chrome"}),
        json!({"brands": [1, 2, {"brand": 3}]}),
        json!({"sec_ch_ua": "Chromium;v=124"}),
        json!({"sec_ch_ua": "\"unterminated"}),
        json!({"platform": 7, "platformVersion": ["15"], "model": {}}),
        json!({"platform": "Windows", "platformVersion": "x.y"}),
        json!({}),
    ] {
        let mut batch = vec![event(ua, Some(&hints))];
        t.transform_batch(&mut batch);
        assert_eq!(
            batch[0].get_str("user_agent.name"),
            Some("Firefox"),
            "{hints}"
        );
    }
}

#[test]
fn hints_alone_without_a_user_agent() {
    let (mut t, _) = transform(UserAgentConfig::default());
    let mut e = Event::from(
        json!({"rum": {"ua_hints": {"brands": [{"brand": "Microsoft Edge", "version": "124"}], "platform": "Windows", "platformVersion": "14.0.0"}}}),
    );
    e.remove(schema::USER_AGENT);
    let mut batch = vec![e];
    t.transform_batch(&mut batch);
    assert_eq!(batch[0].get_str("user_agent.name"), Some("Edge"));
    assert_eq!(batch[0].get_str("user_agent.os.version"), Some("11"));
}

#[test]
fn hints_can_be_switched_off() {
    let (mut t, _) = transform(UserAgentConfig {
        use_client_hints: false,
        ..UserAgentConfig::default()
    });
    let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    let mut batch = vec![event(
        ua,
        Some(&json!({"platform": "Windows", "platformVersion": "15.0.0"})),
    )];
    t.transform_batch(&mut batch);
    assert_eq!(batch[0].get_str("user_agent.os.version"), Some("10"));
}

#[test]
fn events_without_user_agent_pass_untouched() {
    let (mut t, _) = transform(UserAgentConfig::default());
    let original = Event::from(json!({"rum": {"type": "csp_violation"}}));
    let mut batch = vec![original.clone()];
    t.transform_batch(&mut batch);
    assert_eq!(batch[0], original);
}

#[test]
fn brand_lists_with_quoted_separators() {
    assert_eq!(
        parse_brand_list(
            r#""Not)A;Brand";v="99", "Google Chrome";v="124.0.6367.91", "Chromium";v="124""#
        ),
        vec![
            ("Not)A;Brand".to_owned(), "99".to_owned()),
            ("Google Chrome".to_owned(), "124.0.6367.91".to_owned()),
            ("Chromium".to_owned(), "124".to_owned()),
        ]
    );
    assert_eq!(parse_brand_list(""), vec![]);
    assert_eq!(parse_brand_list("garbage"), vec![]);
    assert_eq!(
        parse_brand_list(r#""Brave";v="1", "unterminated"#),
        vec![("Brave".to_owned(), "1".to_owned())]
    );
    assert!(is_grease("Not/A)Brand") && is_grease("Not A(Brand") && !is_grease("Brave"));
}

#[test]
fn android_models() {
    let model = |ua: &str| android_model(ua);
    assert_eq!(model("Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebKit/534.30"), Some("LG-L160L".into()));
    assert_eq!(
        model("Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP1A.240405.002; wv)"),
        Some("Pixel 8".into())
    );
    assert_eq!(model("Mozilla/5.0 (Linux; Android 10; K)"), None);
    assert_eq!(
        model("Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0"),
        None
    );
    assert_eq!(
        model("Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit"),
        Some("moto g power (2022)".into())
    );
    assert_eq!(model("Mozilla/5.0 (Linux; Android 11"), None);
}

#[test]
fn windows_platform_versions() {
    for (pv, release) in [
        ("15.0.0", Some("11")),
        ("13.0.0", Some("11")),
        ("10.0.0", Some("10")),
        ("1.0.0", Some("10")),
        ("0.3.0", Some("8.1")),
        ("0.1.0", Some("7")),
        ("0.0.0", None),
        ("", None),
    ] {
        assert_eq!(windows_release(pv).as_deref(), release, "{pv}");
    }
}

#[test]
fn empty_synthetic_pattern_is_a_config_error() {
    let config = UserAgentConfig {
        synthetic_patterns: vec![" ".into()],
        ..UserAgentConfig::default()
    };
    assert_eq!(config.check()[0].0, "synthetic_patterns");
}

#[test]
fn a_beacons_events_are_resolved_once_enriched_together_and_dropped_together() {
    let (mut t, metrics) = transform(UserAgentConfig {
        drop_synthetic: true,
        ..UserAgentConfig::default()
    });
    // Events of one beacon share its context, as the sources make them.
    let beacon = |ua: &str, events: usize| {
        let mut first = event(ua, None);
        first.hoist_into_context();
        vec![first; events]
    };
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    let bot = "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)";
    let mut batch = [beacon(bot, 3), beacon(firefox, 2), beacon(bot, 2)].concat();
    t.transform_batch(&mut batch);
    assert_eq!(batch.len(), 2, "both bot beacons dropped whole");
    assert!(crate::event::Counted::ptr_eq(
        batch[0].context(),
        batch[1].context()
    ));
    for event in &batch {
        assert_eq!(event.get_str("user_agent.name"), Some("Firefox"));
    }
    assert_eq!(metrics.discarded_intentional.get(), 5);
    let lookups = |result| {
        metrics
            .registry()
            .counter_sum("user_agent_cache_lookups_total", &[("result", result)])
    };
    // One lookup per beacon (two misses, then the second bot beacon hits);
    // every other event of a beacon counts as a hit.
    assert_eq!(lookups("miss"), 2);
    assert_eq!(lookups("hit"), 1 + 2 + 1 + 1);
}

/// The cache's key hash is keyed at random: under `FxHasher`, UAs that
/// differ only in bytes 40..48 of 65 hash alike (`fx_collisions`), so a
/// client sending `cache_size` of them put every entry in one probe chain,
/// and each lookup of such a UA compared it with all of them.
#[test]
fn uas_a_client_makes_collide_under_fx_do_not_share_a_key_hash() {
    let uas = crate::fx_collisions::fx_colliding(2);
    let cache = ParseCache::new(16);
    assert_ne!(cache.key_hash(&uas[0], b""), cache.key_hash(&uas[1], b""));
}
