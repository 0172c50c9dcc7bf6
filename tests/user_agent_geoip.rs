//! The `user_agent` and `geoip` transforms through the real binary: beacons
//! in (client IP from X-Forwarded-For via a trusted proxy, UA and Client
//! Hints from the request), enriched documents out on stdout; a GeoIP
//! database replaced and reloaded on SIGHUP with no event lost; a missing
//! database refused at startup.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{beacon, client, validate, Pipeline};
use serde_json::{json, Value};

fn testdata(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/geoip")
        .join(name)
        .display()
        .to_string()
}

const PIPELINE: &str = r#"
stats_interval_secs = 0

[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
trusted_proxies = ["127.0.0.1/32"]
# The access-log writer holds the stderr lock for good once it has written
# (src/http/access_log.rs), which blocks every later log line; off until fixed.
access_log = false

[transforms.ua]
type = "user_agent"
inputs = ["beacons"]
synthetic_patterns = ["MySyntheticCheck"]

[transforms.geo]
type = "geoip"
inputs = ["ua"]
database = "{dir}/GeoIP2-City.mmdb"
asn_database = "ASN_DB"
reload_interval_secs = 0

[sinks.out]
type = "stdout"
inputs = ["geo"]
"#;

const CHROME_WINDOWS: &str =
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4.1 Mobile/15E148 Safari/604.1";
const GOOGLEBOT: &str = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; Googlebot/2.1; +http://www.google.com/bot.html) Chrome/124.0.6367.91 Safari/537.36";

/// Copies the test City database to where the pipeline reads it, by rename
/// (how geoipupdate replaces a database).
fn install_city_db(dir: &Path, name: &str) {
    let tmp = dir.join("GeoIP2-City.mmdb.tmp");
    std::fs::copy(testdata(name), &tmp).expect("copy test db");
    std::fs::rename(&tmp, dir.join("GeoIP2-City.mmdb")).expect("rename test db");
}

/// Starts the pipeline with the City database in a dir of our own (the
/// pipeline's temp dir only exists once it runs); keep the dir alive.
fn start() -> (Pipeline, tempfile::TempDir) {
    let dbs = tempfile::tempdir().expect("temp dir");
    install_city_db(dbs.path(), "GeoIP2-City-Test.mmdb");
    let config = PIPELINE
        .replace("{dir}", &dbs.path().display().to_string())
        .replace("ASN_DB", &testdata("GeoLite2-ASN-Test.mmdb"));
    (Pipeline::start(&config), dbs)
}

async fn post(p: &Pipeline, body: &Value, headers: &[(&str, &str)]) {
    let mut request = client()
        .post(p.url("/rum"))
        .header("content-type", "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = request.send().await.expect("POST /rum");
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
}

/// Waits until the sender has had `n` events accepted; fails after 30 s
/// (a sender that got another answer than 204 has panicked and stopped counting).
async fn wait_accepted(accepted: &std::sync::atomic::AtomicUsize, n: usize) {
    let start = std::time::Instant::now();
    while accepted.load(std::sync::atomic::Ordering::SeqCst) < n {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "only {} of {n} events accepted within 30 s",
            accepted.load(std::sync::atomic::Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn by_session<'a>(docs: &'a [Value], session: &str) -> Vec<&'a Value> {
    docs.iter()
        .filter(|d| d["session"]["id"] == session)
        .collect()
}

#[tokio::test]
async fn beacons_are_enriched_with_browser_and_location_and_the_ip_is_anonymized() {
    let (p, _dbs) = start();
    // Chrome on Windows 11 behind our proxy, with Client Hints headers.
    post(
        &p,
        &beacon("chrome-london", 3),
        &[
            ("x-forwarded-for", "81.2.69.142"),
            ("user-agent", CHROME_WINDOWS),
            (
                "sec-ch-ua",
                r#""Chromium";v="124", "Google Chrome";v="124", "Not-A.Brand";v="99""#,
            ),
            ("sec-ch-ua-mobile", "?0"),
            ("sec-ch-ua-platform", r#""Windows""#),
            ("sec-ch-ua-platform-version", r#""15.0.0""#),
        ],
    )
    .await;
    // Safari on an iPhone over IPv6, the beacon carrying no hints.
    post(
        &p,
        &beacon("iphone-prague", 2),
        &[
            ("x-forwarded-for", "2a02:598:aaaa:bbbb::1"),
            ("user-agent", SAFARI_IPHONE),
        ],
    )
    .await;
    // A crawler on a private address; and a client forging X-Forwarded-For
    // in front of what our proxy appended.
    post(
        &p,
        &beacon("bot", 1),
        &[
            ("x-forwarded-for", "10.20.30.40"),
            ("user-agent", GOOGLEBOT),
        ],
    )
    .await;
    post(
        &p,
        &beacon("forged", 1),
        &[
            ("x-forwarded-for", "81.2.69.142, 89.160.20.9"),
            ("user-agent", "curl/8.7.1"),
        ],
    )
    .await;

    let docs = p.wait_documents(7, Duration::from_secs(10));
    assert_eq!(docs.len(), 7);

    let chrome = by_session(&docs, "chrome-london");
    assert_eq!(chrome.len(), 3);
    for doc in chrome {
        assert_eq!(
            doc["user_agent"],
            json!({
                "original": CHROME_WINDOWS,
                "name": "Chrome",
                "version": "124",
                "os": {"name": "Windows", "version": "11"},
                "category": "pc"
            })
        );
        assert_eq!(doc["client"]["ip"], "81.2.69.0");
        assert_eq!(
            doc["client"]["geo"],
            json!({
                "continent_code": "EU",
                "country_iso_code": "GB",
                "country_name": "United Kingdom",
                "region_iso_code": "GB-ENG",
                "region_name": "England",
                "city_name": "London",
                "postal_code": "EC2V",
                "timezone": "Europe/London",
                "location": {"lat": 51.5142, "lon": -0.0931}
            })
        );
        assert_eq!(
            doc["client"]["as"],
            json!({"number": 20712, "organization": {"name": "Andrews & Arnold Ltd"}})
        );
        assert!(doc.get("labels").is_none(), "{doc}");
    }

    let iphone = by_session(&docs, "iphone-prague");
    assert_eq!(iphone.len(), 2);
    for doc in iphone {
        assert_eq!(doc["user_agent"]["name"], "Safari");
        assert_eq!(
            doc["user_agent"]["os"],
            json!({"name": "iOS", "version": "17.4.1"})
        );
        assert_eq!(doc["user_agent"]["device"], json!({"name": "iPhone"}));
        assert_eq!(doc["client"]["ip"], "2a02:598:aaaa::");
        assert_eq!(doc["client"]["geo"]["city_name"], "Prague");
        assert_eq!(doc["client"]["as"]["number"], 43037);
    }

    let bot = by_session(&docs, "bot")[0];
    assert_eq!(bot["labels"]["synthetic"], true);
    assert_eq!(bot["user_agent"]["category"], "crawler");
    assert_eq!(
        bot["client"],
        json!({"ip": "10.20.30.0"}),
        "private: no geo"
    );

    // Only the address our trusted proxy saw counts: Linköping, not London.
    let forged = by_session(&docs, "forged")[0];
    assert_eq!(forged["client"]["ip"], "89.160.20.0");
    assert_eq!(forged["client"]["geo"]["city_name"], "Linköping");
    assert_eq!(forged["labels"]["synthetic"], true);
    assert_eq!(forged["user_agent"]["name"], "curl");

    assert_eq!(
        p.metric("geoip_lookups_total", &[r#"result="found""#])
            .await,
        6.0
    );
    assert_eq!(
        p.metric("geoip_lookups_total", &[r#"result="private""#])
            .await,
        1.0
    );
    assert_eq!(p.metric("user_agent_cache_lookups_total", &[]).await, 7.0);
    // The full client address is in no document.
    for line in p.stdout_lines() {
        for full in [
            "81.2.69.142",
            "2a02:598:aaaa:bbbb::1",
            "10.20.30.40",
            "89.160.20.9",
        ] {
            assert!(!line.contains(full), "{full} leaked: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_replaced_database_without_losing_events() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;

    let (p, dbs) = start();
    let headers = [
        ("x-forwarded-for", "81.2.69.142"),
        ("user-agent", CHROME_WINDOWS),
    ];
    post(&p, &beacon("before", 5), &headers).await;
    let docs = p.wait_documents(5, Duration::from_secs(10));
    assert!(docs
        .iter()
        .all(|d| d["client"]["geo"]["city_name"] == "London"));

    // Beacons keep flowing while the database is replaced and reloaded.
    let accepted = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (url, accepted, stop) = (p.url("/rum"), accepted.clone(), stop.clone());
        tokio::spawn(async move {
            let http = client();
            let mut i = 0;
            while !stop.load(Ordering::SeqCst) {
                let response = http
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-forwarded-for", "81.2.69.142")
                    .body(beacon(&format!("during-{i}"), 2).to_string())
                    .send()
                    .await
                    .expect("POST /rum");
                assert_eq!(response.status(), 204);
                accepted.fetch_add(2, Ordering::SeqCst);
                i += 1;
            }
        })
    };
    wait_accepted(&accepted, 20).await;
    install_city_db(dbs.path(), "GeoIP2-City-Test-updated.mmdb");
    p.signal(libc::SIGHUP);
    let reloaded = tokio::task::block_in_place(|| {
        p.wait_stderr(
            |l| l.contains("GeoIP databases reloaded"),
            Duration::from_secs(10),
        )
    });
    reloaded.unwrap_or_else(|| panic!("no reload logged:\n{}", p.stderr().join("\n")));
    let at_reload = accepted.load(Ordering::SeqCst);
    wait_accepted(&accepted, at_reload + 20).await;
    stop.store(true, Ordering::SeqCst);
    sender.await.expect("sender");

    post(&p, &beacon("after", 3), &headers).await;
    let expected = 5 + accepted.load(Ordering::SeqCst) + 3;
    let docs = tokio::task::block_in_place(|| p.wait_documents(expected, Duration::from_secs(10)));
    assert_eq!(docs.len(), expected, "every accepted event arrives, once");
    let after = by_session(&docs, "after");
    assert_eq!(after.len(), 3);
    for doc in after {
        assert_eq!(doc["client"]["geo"]["city_name"], "Manchester");
    }
    // Each event is located by one database or the other; both were used
    // while beacons were flowing.
    let mut cities = std::collections::BTreeMap::new();
    for doc in docs.iter().filter(|d| {
        d["session"]["id"]
            .as_str()
            .is_some_and(|s| s.starts_with("during-"))
    }) {
        *cities
            .entry(doc["client"]["geo"]["city_name"].to_string())
            .or_insert(0) += 1;
    }
    let names: Vec<_> = cities.keys().cloned().collect();
    assert_eq!(names, ["\"London\"", "\"Manchester\""], "{cities:?}");
    assert_eq!(p.metric("geoip_reloads_total", &[]).await, 1.0);
    // Still running: SIGHUP is a reload, not the default exit.
    assert_eq!(
        client()
            .get(p.url("/health"))
            .send()
            .await
            .expect("health")
            .status(),
        200
    );
}

/// A database deleted under a running pipeline (a cleanup job, an updater
/// that removes before it writes) keeps the loaded one in use, and says so
/// in the log, once, though every poll counts the failed reload.
#[tokio::test(flavor = "multi_thread")]
async fn a_database_deleted_while_running_is_logged_once_and_the_loaded_one_kept() {
    let dbs = tempfile::tempdir().expect("temp dir");
    install_city_db(dbs.path(), "GeoIP2-City-Test.mmdb");
    let config = PIPELINE
        .replace("reload_interval_secs = 0", "reload_interval_secs = 1")
        .replace("{dir}", &dbs.path().display().to_string())
        .replace("ASN_DB", &testdata("GeoLite2-ASN-Test.mmdb"));
    let p = Pipeline::start(&config);
    std::fs::remove_file(dbs.path().join("GeoIP2-City.mmdb")).expect("delete the database");
    let failed = |l: &str| l.contains("reload failed");
    let logged = tokio::task::block_in_place(|| p.wait_stderr(failed, Duration::from_secs(10)));
    logged.unwrap_or_else(|| panic!("no failed reload logged:\n{}", p.stderr().join("\n")));
    // More polls fail, counted, not logged again.
    let errors = p
        .wait_metric(
            "component_errors_total",
            &["error_type=\"reload_failed\""],
            3.0,
            Duration::from_secs(20),
        )
        .await;
    assert!(errors >= 3.0, "{errors} failed reloads counted");
    assert_eq!(p.stderr().iter().filter(|l| failed(l)).count(), 1);

    let headers = [("x-forwarded-for", "81.2.69.142")];
    post(&p, &beacon("kept", 1), &headers).await;
    let docs = tokio::task::block_in_place(|| p.wait_documents(1, Duration::from_secs(10)));
    assert_eq!(docs[0]["client"]["geo"]["city_name"], "London");
}

#[test]
fn missing_or_corrupt_database_stops_startup_naming_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("GeoLite2-City.mmdb");
    let corrupt = dir.path().join("corrupt.mmdb");
    std::fs::write(&corrupt, b"<html>404 Not Found</html>").expect("write");
    for path in [&missing, &corrupt] {
        let config = PIPELINE
            .replace("{dir}/GeoIP2-City.mmdb", &path.display().to_string())
            .replace("ASN_DB", &testdata("GeoLite2-ASN-Test.mmdb"));
        let (code, output) = validate(&config, &[]);
        assert_eq!(code, 78, "{output}");
        assert!(output.contains("[transforms.geo]"), "{output}");
        assert!(output.contains(&path.display().to_string()), "{output}");
    }
}
