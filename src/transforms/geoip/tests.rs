use super::*;
use crate::telemetry::{ComponentMetrics, Registry};
use maxminddb::Reader;
use serde_json::json;
use std::path::Path;

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/geoip")
        .join(name)
}

const CITY: &str = "GeoIP2-City-Test.mmdb";
const UPDATED: &str = "GeoIP2-City-Test-updated.mmdb";
const ASN: &str = "GeoLite2-ASN-Test.mmdb";

fn config() -> GeoipConfig {
    let mut config = GeoipConfig::new(testdata(CITY));
    config.asn_database = Some(testdata(ASN));
    config
}

fn build(config: &GeoipConfig) -> anyhow::Result<(GeoipTransform, ComponentMetrics)> {
    let registry = Registry::new();
    let metrics = ComponentMetrics::new(&registry, "geo", "transform", "geoip");
    let cx = TransformContext {
        id: "geo".into(),
        metrics: metrics.clone(),
    };
    Ok((config.build(&cx)?, metrics))
}

fn run(t: &mut GeoipTransform, ips: &[&str]) -> Vec<Event> {
    let mut batch: Batch = ips
        .iter()
        .map(|ip| Event::from(json!({"client": {"ip": ip}, "rum": {"type": "page_view"}})))
        .collect();
    t.transform_batch(&mut batch);
    batch
}

/// Events as the sources make them: the whole address kept in the context
/// for enrichment, no `client.ip` text (the address cache's path).
fn run_whole(t: &mut GeoipTransform, ips: &[&str]) -> Vec<Event> {
    let mut batch: Batch = ips
        .iter()
        .map(|ip| {
            let mut event = Event::from(json!({"rum": {"type": "page_view"}}));
            Event::edit_shared_context(std::slice::from_mut(&mut event), |context| {
                context.set_client_address(ip.parse().unwrap());
            });
            event
        })
        .collect();
    t.transform_batch(&mut batch);
    batch
}

fn lookups(metrics: &ComponentMetrics, result: &str) -> u64 {
    metrics
        .registry()
        .counter_sum("geoip_lookups_total", &[("result", result)])
}

#[test]
fn test_databases_decode_as_maxmind_types() {
    let reader = Reader::open_readfile(testdata(CITY)).expect("opens");
    assert_eq!(reader.metadata().database_type, "GeoIP2-City");
    let found = reader
        .lookup("81.2.69.142".parse().unwrap())
        .expect("looks up");
    let city: geoip2::City = found.decode().expect("decodes").expect("has a record");
    assert_eq!(city.city.geoname_id, Some(2643743));
    assert_eq!(city.country.geoname_id, Some(2635167));
    assert_eq!(city.location.latitude, Some(51.5142));
    assert_eq!(city.location.accuracy_radius, Some(10));
    assert_eq!(city.subdivisions[0].iso_code, Some("ENG"));
    let asn_reader = Reader::open_readfile(testdata(ASN)).expect("opens");
    let found = asn_reader
        .lookup("2a02:598::1".parse().unwrap())
        .expect("looks up");
    let asn: geoip2::Asn = found.decode().expect("decodes").expect("has a record");
    assert_eq!(asn.autonomous_system_number, Some(43037));
}

#[test]
fn ipv4_city_record_and_asn() {
    let (mut t, metrics) = build(&config()).unwrap();
    let events = run(&mut t, &["81.2.69.142"]);
    assert_eq!(
        events[0].to_value().get("client"),
        Some(&json!({
            "ip": "81.2.69.0",
            "geo": {
                "continent_code": "EU",
                "country_iso_code": "GB",
                "country_name": "United Kingdom",
                "region_iso_code": "GB-ENG",
                "region_name": "England",
                "city_name": "London",
                "postal_code": "EC2V",
                "timezone": "Europe/London",
                "location": {"lat": 51.5142, "lon": -0.0931}
            },
            "as": {"number": 20712, "organization": {"name": "Andrews & Arnold Ltd"}}
        }))
    );
    assert_eq!(lookups(&metrics, "found"), 1);
}

#[test]
fn ipv6_city_record_and_truncation_to_48() {
    let (mut t, _) = build(&config()).unwrap();
    let events = run(&mut t, &["2a02:598:1234:5678::9"]);
    assert_eq!(events[0].get_str("client.ip"), Some("2a02:598:1234::"));
    assert_eq!(events[0].get_str("client.geo.city_name"), Some("Prague"));
    assert_eq!(
        events[0].get_str("client.geo.region_iso_code"),
        Some("CZ-10")
    );
    assert_eq!(events[0].get("client.as.number"), Some(&json!(43037)));
}

#[test]
fn country_without_city() {
    let (mut t, _) = build(&config()).unwrap();
    let events = run(&mut t, &["2001:218::1", "67.43.156.7"]);
    assert_eq!(
        events[0].get("client.geo"),
        Some(&json!({
            "continent_code": "AS",
            "country_iso_code": "JP",
            "country_name": "Japan",
            "timezone": "Asia/Tokyo",
            "location": {"lat": 35.69, "lon": 139.69}
        }))
    );
    assert_eq!(
        events[1].get("client.geo"),
        Some(&json!({"continent_code": "AS", "country_iso_code": "BT", "country_name": "Bhutan"}))
    );
    assert_eq!(events[1].get("client.as"), None);
}

#[test]
fn locale_with_english_fallback() {
    let mut config = config();
    config.locale = "de".into();
    let (mut t, _) = build(&config).unwrap();
    let events = run(&mut t, &["89.160.20.1", "2001:218::1"]);
    assert_eq!(
        events[0].get_str("client.geo.country_name"),
        Some("Schweden")
    );
    assert_eq!(events[0].get_str("client.geo.city_name"), Some("Linköping"));
    // No German name in the record: English.
    assert_eq!(
        events[0].get_str("client.geo.region_name"),
        Some("Östergötland County")
    );
    assert_eq!(events[1].get_str("client.geo.country_name"), Some("Japan"));
}

#[test]
fn private_loopback_and_link_local_are_not_looked_up_but_counted() {
    let (mut t, metrics) = build(&config()).unwrap();
    // The test database has a record for 10.0.0.0/8; it must not be used.
    let ips = [
        "10.1.2.3",
        "127.0.0.1",
        "169.254.10.20",
        "192.168.1.1",
        "100.64.1.1",
        "::1",
        "fe80::1",
        "fd00::1",
    ];
    let events = run(&mut t, &ips);
    for (ip, event) in ips.iter().zip(&events) {
        assert_eq!(event.get("client.geo"), None, "{ip}");
    }
    assert_eq!(events[0].get_str("client.ip"), Some("10.1.2.0"));
    assert_eq!(events[5].get_str("client.ip"), Some("::"));
    assert_eq!(lookups(&metrics, "private"), ips.len() as u64);
    assert_eq!(lookups(&metrics, "found"), 0);
}

#[test]
fn address_not_in_the_database() {
    let (mut t, metrics) = build(&config()).unwrap();
    let events = run(&mut t, &["8.8.8.8"]);
    assert_eq!(events[0].to_value()["client"], json!({"ip": "8.8.8.0"}));
    assert_eq!(lookups(&metrics, "not_found"), 1);
}

#[test]
fn an_ipv4_only_database_loads_and_answers_ipv6_clients_with_nothing() {
    // `ip_version` 4: in-house databases and some vendors' are built so.
    // Its tree cannot be asked about an IPv6 address at all, which the
    // build's check took for a damaged file.
    let (mut t, metrics) = build(&GeoipConfig::new(testdata("GeoIP2-City-Test-ipv4.mmdb")))
        .expect("an IPv4-only City database is a valid database");
    let events = run_whole(
        &mut t,
        &["81.2.69.142", "2a02:598::1", "::ffff:81.2.69.142"],
    );
    assert_eq!(events[0].get_str("client.geo.city_name"), Some("London"));
    assert_eq!(events[1].get("client.geo"), None);
    assert_eq!(events[2].get_str("client.geo.city_name"), Some("London"));
    assert_eq!(lookups(&metrics, "found"), 2);
    assert_eq!(lookups(&metrics, "not_found"), 1);
}

#[test]
fn ipv4_mapped_ipv6_is_looked_up_as_ipv4() {
    let (mut t, _) = build(&config()).unwrap();
    let events = run(&mut t, &["::ffff:81.2.69.142"]);
    assert_eq!(events[0].get_str("client.geo.city_name"), Some("London"));
    assert_eq!(events[0].get_str("client.ip"), Some("81.2.69.0"));
}

#[test]
fn anonymize_modes_and_prefixes() {
    let mut drop = config();
    drop.anonymize_ip = AnonymizeIp::Drop;
    let (mut t, _) = build(&drop).unwrap();
    let events = run(&mut t, &["81.2.69.142", "10.0.0.1"]);
    assert_eq!(events[0].get("client.ip"), None);
    assert_eq!(
        events[0].get_str("client.geo.city_name"),
        Some("London"),
        "looked up before dropping"
    );
    assert_eq!(events[1].get("client.ip"), None);

    let mut off = config();
    off.anonymize_ip = AnonymizeIp::Off;
    let (mut t, _) = build(&off).unwrap();
    let events = run(&mut t, &["81.2.69.142"]);
    assert_eq!(events[0].get_str("client.ip"), Some("81.2.69.142"));

    let mut wide = config();
    (wide.ipv4_prefix, wide.ipv6_prefix) = (16, 32);
    let (mut t, _) = build(&wide).unwrap();
    let events = run(&mut t, &["81.2.69.142", "2a02:598:1234::1"]);
    assert_eq!(events[0].get_str("client.ip"), Some("81.2.0.0"));
    assert_eq!(events[1].get_str("client.ip"), Some("2a02:598::"));

    assert_eq!(
        truncate("1.2.3.4".parse().unwrap(), 0, 0).to_string(),
        "0.0.0.0"
    );
    assert_eq!(
        truncate("1.2.3.4".parse().unwrap(), 32, 128).to_string(),
        "1.2.3.4"
    );
    assert_eq!(
        truncate("2001:db8::1".parse().unwrap(), 32, 128).to_string(),
        "2001:db8::1"
    );
}

#[test]
fn anonymize_ip_accepts_bool_and_names() {
    let parse = |v: &str| {
        crate::config::decode::<GeoipConfig>(
            toml::from_str(&format!("database = \"x\"\nanonymize_ip = {v}")).unwrap(),
        )
    };
    assert_eq!(parse("true").unwrap().anonymize_ip, AnonymizeIp::Truncate);
    assert_eq!(parse("false").unwrap().anonymize_ip, AnonymizeIp::Off);
    assert_eq!(parse("\"drop\"").unwrap().anonymize_ip, AnonymizeIp::Drop);
    let (key, message) = parse("\"hash\"").unwrap_err();
    assert_eq!(key, "anonymize_ip");
    assert!(message.contains("\"drop\""), "{message}");
    assert_eq!(parse("true").unwrap().check(), vec![]);
    let mut bad = parse("true").unwrap();
    (bad.ipv4_prefix, bad.ipv6_prefix, bad.locale) = (33, 129, "xx".into());
    bad.reload_interval_secs = u64::MAX;
    let keys: Vec<_> = bad.check().into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        keys,
        [
            "locale",
            "ipv4_prefix",
            "ipv6_prefix",
            "reload_interval_secs"
        ]
    );
}

#[test]
fn unreadable_addresses_are_counted_and_not_kept_when_anonymizing() {
    let (mut t, metrics) = build(&config()).unwrap();
    let events = run(&mut t, &["not-an-ip", "", "81.2.69.142:443", "1.2.3.4.5"]);
    for event in &events {
        assert_eq!(event.get("client.ip"), None);
        assert_eq!(event.get("client.geo"), None);
    }
    assert_eq!(lookups(&metrics, "invalid"), 4);
    assert_eq!(
        metrics
            .registry()
            .counter_sum("component_errors_total", &[("error_type", "invalid_ip")]),
        4
    );

    let mut off = config();
    off.anonymize_ip = AnonymizeIp::Off;
    let (mut t, _) = build(&off).unwrap();
    assert_eq!(
        run(&mut t, &["not-an-ip"])[0].get_str("client.ip"),
        Some("not-an-ip")
    );
}

#[test]
fn events_without_client_ip_pass_untouched() {
    let (mut t, _) = build(&config()).unwrap();
    let original = Event::from(json!({"rum": {"type": "web_vital"}, "client": {"ip": 42}}));
    let mut batch = vec![
        original.clone(),
        Event::from(json!({"rum": {"type": "action"}})),
    ];
    t.transform_batch(&mut batch);
    assert_eq!(batch[0], original);
    assert_eq!(batch[1], Event::from(json!({"rum": {"type": "action"}})));
}

#[test]
fn runs_of_one_address_and_caches_give_the_same_answer() {
    let (mut t, metrics) = build(&config()).unwrap();
    let ips = [
        "81.2.69.142",
        "81.2.69.142",
        "81.2.69.7",
        "89.160.20.1",
        "81.2.69.142",
        "10.0.0.1",
        "10.0.0.1",
    ];
    let first = run(&mut t, &ips);
    let second = run(&mut t, &ips);
    assert_eq!(first, second);
    assert_eq!(first[0].get("client.geo"), first[2].get("client.geo"));
    assert_eq!(lookups(&metrics, "found"), 10);
    assert_eq!(lookups(&metrics, "private"), 4);
    let mut uncached = config();
    uncached.cache_size = 0;
    let (mut t, _) = build(&uncached).unwrap();
    assert_eq!(run(&mut t, &ips), first);
}

#[test]
fn missing_corrupt_or_wrong_databases_fail_the_build_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let message = |config: &GeoipConfig| format!("{:#}", build(config).err().expect("build fails"));

    let missing = dir.path().join("nope.mmdb");
    let shown = message(&GeoipConfig::new(&missing));
    assert!(shown.contains(&missing.display().to_string()), "{shown}");

    let garbage = dir.path().join("garbage.mmdb");
    std::fs::write(&garbage, b"not a maxmind database at all").unwrap();
    let shown = message(&GeoipConfig::new(&garbage));
    assert!(
        shown.contains(&garbage.display().to_string()) && shown.contains("not a valid MaxMind DB"),
        "{shown}"
    );

    let empty = dir.path().join("empty.mmdb");
    std::fs::write(&empty, b"").unwrap();
    assert!(message(&GeoipConfig::new(&empty)).contains(&empty.display().to_string()));

    // Metadata intact, search tree and data zeroed.
    let mut bytes = std::fs::read(testdata(CITY)).unwrap();
    let marker = b"\xab\xcd\xefMaxMind.com";
    let meta = bytes
        .windows(marker.len())
        .rposition(|w| w == marker)
        .unwrap();
    bytes[..meta].iter_mut().for_each(|b| *b = 0xff);
    let damaged = dir.path().join("damaged.mmdb");
    std::fs::write(&damaged, &bytes).unwrap();
    for memory_map in [true, false] {
        let mut config = GeoipConfig::new(&damaged);
        config.memory_map = memory_map;
        let shown = message(&config);
        assert!(shown.contains(&damaged.display().to_string()), "{shown}");
    }

    let shown = message(&GeoipConfig::new(testdata(ASN)));
    assert!(
        shown.contains("GeoLite2-ASN") && shown.contains("expected a City"),
        "{shown}"
    );
    let mut swapped = GeoipConfig::new(testdata(CITY));
    swapped.asn_database = Some(testdata(CITY));
    assert!(message(&swapped).contains("expected an ASN database"));
}

#[test]
fn read_into_memory_works_like_mapped() {
    let mut config = config();
    config.memory_map = false;
    let (mut t, _) = build(&config).unwrap();
    assert_eq!(
        run(&mut t, &["81.2.69.142"])[0].get_str("client.geo.city_name"),
        Some("London")
    );
}

/// The mapping is advised for random access (`rr` in the kernel's flags
/// for it): readahead would fill memory with tree pages no lookup needs.
#[test]
fn mapped_database_is_advised_for_random_access() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random-access-probe.mmdb");
    std::fs::copy(testdata(CITY), &path).unwrap();
    let (t, _) = build(&GeoipConfig::new(&path)).unwrap();
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
    let mapping = smaps
        .split_once(&*path.display().to_string())
        .map(|(_, rest)| rest)
        .expect("the database is mapped");
    let flags = mapping
        .lines()
        .find_map(|line| line.strip_prefix("VmFlags:"))
        .expect("smaps lists the mapping's flags");
    assert!(flags.split_whitespace().any(|f| f == "rr"), "{flags}");
    drop(t);
}

/// Replaces `to` by `from` the way geoipupdate does: a new file renamed over.
fn replace(from: &Path, to: &Path) {
    let tmp = to.with_extension("tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

#[test]
fn clients_met_again_between_others_are_answered_from_the_address_cache_as_before() {
    // Each address comes back after another one: the last-address memo
    // misses every time, the address cache answers.
    let ips = [
        "81.2.69.142",
        "89.160.20.1",
        "81.2.69.142",
        "10.0.0.1",
        "89.160.20.1",
        "2001:218::1",
        "81.2.69.142",
        "2001:218::1",
    ];
    let (mut cached, cached_metrics) = build(&config()).unwrap();
    let first = run_whole(&mut cached, &ips);
    let again = run_whole(&mut cached, &ips);
    let mut off = config();
    off.cache_size = 0;
    let (mut uncached, uncached_metrics) = build(&off).unwrap();
    let plain = run_whole(&mut uncached, &ips);
    assert_eq!(first, plain);
    assert_eq!(again, plain);
    assert_eq!(first[2].get_str("client.geo.city_name"), Some("London"));
    assert_eq!(first[4].get_str("client.geo.country_iso_code"), Some("SE"));
    for result in ["found", "not_found", "private", "invalid"] {
        assert_eq!(
            lookups(&cached_metrics, result),
            2 * lookups(&uncached_metrics, result),
            "{result}"
        );
    }
    assert_eq!(lookups(&uncached_metrics, "private"), 1);
}

#[test]
fn a_reload_empties_the_address_cache() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("City.mmdb");
    std::fs::copy(testdata(CITY), &path).unwrap();
    let mut config = GeoipConfig::new(&path);
    config.reload_interval_secs = 0;
    let (mut t, _) = build(&config).unwrap();
    let before = run_whole(&mut t, &["81.2.69.142", "89.160.20.1"]);
    assert_eq!(before[0].get_str("client.geo.city_name"), Some("London"));
    replace(&testdata(UPDATED), &path);
    assert_eq!(t.reload_now(false), Some(ReloadOutcome::Reloaded));
    let after = run_whole(&mut t, &["81.2.69.142"]);
    assert_eq!(after[0].get_str("client.geo.city_name"), Some("Manchester"));
}

#[test]
fn reloads_a_replaced_file_and_keeps_the_old_one_when_the_new_is_bad() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("City.mmdb");
    std::fs::copy(testdata(CITY), &path).unwrap();
    let mut config = GeoipConfig::new(&path);
    config.reload_interval_secs = 0;
    let (mut t, metrics) = build(&config).unwrap();
    assert_eq!(
        run(&mut t, &["81.2.69.142"])[0].get_str("client.geo.city_name"),
        Some("London")
    );
    assert_eq!(t.reload_now(false), Some(ReloadOutcome::Unchanged));

    replace(&testdata(UPDATED), &path);
    assert_eq!(t.reload_now(false), Some(ReloadOutcome::Reloaded));
    let events = run(&mut t, &["81.2.69.142", "89.160.20.1"]);
    assert_eq!(
        events[0].get_str("client.geo.city_name"),
        Some("Manchester")
    );
    assert_eq!(events[1].get_str("client.geo.city_name"), Some("Linköping"));

    let bad = dir.path().join("bad.mmdb");
    std::fs::write(&bad, b"truncated download").unwrap();
    replace(&bad, &path);
    assert_eq!(t.reload_now(false), Some(ReloadOutcome::Failed));
    assert_eq!(
        t.reload_now(false),
        Some(ReloadOutcome::Unchanged),
        "a bad file is tried once"
    );
    assert_eq!(
        run(&mut t, &["81.2.69.142"])[0].get_str("client.geo.city_name"),
        Some("Manchester")
    );
    assert_eq!(
        metrics
            .registry()
            .counter_sum("component_errors_total", &[("error_type", "reload_failed")]),
        1
    );

    // SIGHUP forces a reopen even when nothing looks changed.
    replace(&testdata(CITY), &path);
    assert_eq!(t.reload_now(true), Some(ReloadOutcome::Reloaded));
    assert_eq!(t.reload_now(true), Some(ReloadOutcome::Reloaded));
    assert_eq!(
        run(&mut t, &["81.2.69.142"])[0].get_str("client.geo.city_name"),
        Some("London")
    );
    assert_eq!(
        metrics.registry().counter_sum("geoip_reloads_total", &[]),
        3
    );
}

#[test]
fn public_and_non_public_addresses() {
    for ip in [
        "1.1.1.1",
        "81.2.69.142",
        "2a02:598::1",
        "2001:4860::8888",
        "172.32.0.1",
        "100.128.0.1",
    ] {
        assert!(is_public(ip.parse().unwrap()), "{ip}");
    }
    for ip in [
        "10.0.0.1",
        "172.16.0.1",
        "192.168.0.1",
        "127.0.0.1",
        "169.254.1.1",
        "0.0.0.0",
        "255.255.255.255",
        "224.0.0.1",
        "100.64.0.1",
        "192.0.2.1",
        "::",
        "::1",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "2001:db8::1",
    ] {
        assert!(!is_public(ip.parse().unwrap()), "{ip}");
    }
}

#[test]
fn a_beacons_events_share_one_lookup_and_one_enriched_context() {
    let (mut t, metrics) = build(&config()).unwrap();
    // Events of one beacon share its context, as the sources make them.
    let beacon = |ip: &str, events: usize| {
        let mut first = Event::from(json!({"client": {"ip": ip}, "rum": {"type": "page_view"}}));
        first.hoist_into_context();
        vec![first; events]
    };
    let mut batch = [beacon("81.2.69.142", 3), beacon("10.0.0.1", 2)].concat();
    t.transform_batch(&mut batch);
    assert!(crate::event::Counted::ptr_eq(
        batch[0].context(),
        batch[2].context()
    ));
    assert!(!crate::event::Counted::ptr_eq(
        batch[2].context(),
        batch[3].context()
    ));
    for event in &batch[..3] {
        assert_eq!(event.get_str("client.geo.city_name"), Some("London"));
        assert_eq!(event.get_str("client.ip"), Some("81.2.69.0"));
    }
    for event in &batch[3..] {
        assert_eq!(event.get("client.geo"), None);
    }
    // Counted per event, as before.
    assert_eq!(lookups(&metrics, "found"), 3);
    assert_eq!(lookups(&metrics, "private"), 2);
}

#[test]
fn the_last_address_is_reused_only_for_the_same_address_of_the_same_kind() {
    // A beacon as the sources make it: the whole address kept for
    // enrichment, or (an event built from a document) only `client.ip`.
    let beacon = |ip: &str, whole: bool| {
        let mut event = Event::from(json!({"client": {"ip": ip}, "rum": {"type": "page_view"}}));
        if whole {
            Event::edit_shared_context(std::slice::from_mut(&mut event), |context| {
                context.set_client_address(ip.parse().unwrap());
                context.remove_id(FieldId::of(schema::CLIENT_IP));
            });
        }
        event
    };
    let sequence = [
        ("81.2.69.142", true),
        ("81.2.69.142", true),
        ("89.160.20.1", true),
        ("89.160.20.1", false),
        ("89.160.20.1", false),
        ("81.2.69.142", true),
        ("81.2.69.142", false),
        ("not an address", false),
        ("81.2.69.142", true),
        ("89.160.20.1", false),
    ];
    let (mut t, _) = build(&config()).unwrap();
    let mut batch: Batch = sequence
        .iter()
        .map(|(ip, whole)| beacon(ip, *whole))
        .collect();
    t.transform_batch(&mut batch);
    for (event, (ip, whole)) in batch.iter().zip(sequence) {
        // Each as the first a fresh transform sees.
        let (mut fresh, _) = build(&config()).unwrap();
        let mut alone = vec![beacon(ip, whole)];
        fresh.transform_batch(&mut alone);
        assert_eq!(
            event.to_value(),
            alone[0].to_value(),
            "{ip} (whole: {whole})"
        );
    }
    assert_eq!(batch[0].get_str("client.geo.city_name"), Some("London"));
    assert_eq!(batch[2].get_str("client.geo.country_iso_code"), Some("SE"));
    assert_eq!(batch[3].get_str("client.geo.country_iso_code"), Some("SE"));
    assert_eq!(batch[7].get("client.geo"), None);
}
