//! Tests of the scrub_url transform (query rules, value detectors, path
//! templates, the memo, bad input), kept together with their fixtures and
//! helpers: the reason this file is over 600 lines.

use super::scrubber::split_position_suffix;
use super::*;
use crate::telemetry::{ComponentMetrics, Registry};
use serde_json::json;
use url::Url;

fn config(toml_text: &str) -> ScrubUrlConfig {
    crate::config::decode(toml::from_str(toml_text).expect("toml")).expect("config")
}

fn transform(toml_text: &str) -> (ScrubUrl, ComponentMetrics) {
    let registry = Registry::new();
    let metrics = ComponentMetrics::new(&registry, "scrub", "transform", "scrub_url");
    let cx = TransformContext {
        id: "scrub".into(),
        metrics: metrics.clone(),
    };
    (config(toml_text).build(&cx).expect("build"), metrics)
}

fn scrubbed(toml_text: &str, url: &str) -> String {
    let (t, _) = transform(toml_text);
    match t.scrubber.scrub(url, None).url {
        Scrubbed::Unchanged => url.to_owned(),
        Scrubbed::Changed(s) => s,
        Scrubbed::Unparseable => panic!("{url} did not parse"),
    }
}

fn scrub(url: &str) -> String {
    scrubbed("", url)
}

fn template(routes: &[&str], path: &str) -> String {
    let (t, _) = transform(&format!("routes = {routes:?}"));
    t.templates.expect("on by default").template(path)
}

#[test]
fn secret_params_are_redacted_by_name_in_any_case_and_encoding() {
    assert_eq!(
        scrub("https://shop.example.com/cart?item=42&Token=abc123&x=1"),
        "https://shop.example.com/cart?item=42&Token=REDACTED&x=1"
    );
    // `%74oken` is `token`; `%5F` is `_`.
    assert_eq!(
        scrub("https://e.com/?%74oken=abc&access%5Ftoken=def&API_KEY=ghi"),
        "https://e.com/?%74oken=REDACTED&access%5Ftoken=REDACTED&API_KEY=REDACTED"
    );
    // Nested names and array names.
    assert_eq!(
        scrub("https://e.com/login?user[password]=hunter2&ids[]=1&token[]=a"),
        "https://e.com/login?user[password]=REDACTED&ids[]=1&token[]=REDACTED"
    );
}

#[test]
fn repeated_and_semicolon_params() {
    assert_eq!(
        scrub("https://e.com/p?code=1&q=shoes&code=2;sid=s3;lang=en"),
        "https://e.com/p?code=REDACTED&q=shoes&code=REDACTED;sid=REDACTED;lang=en"
    );
    // Path parameters (servlet session ids).
    assert_eq!(
        scrub("https://e.com/shop;jsessionid=0A1B2C3D/cart;color=red"),
        "https://e.com/shop;jsessionid=REDACTED/cart;color=red"
    );
}

#[test]
fn remove_action_drops_pairs_and_empty_queries() {
    let remove = "param_action = \"remove\"";
    assert_eq!(
        scrubbed(remove, "https://e.com/p?a=1&token=x&b=2"),
        "https://e.com/p?a=1&b=2"
    );
    assert_eq!(
        scrubbed(remove, "https://e.com/p?token=x&b=2"),
        "https://e.com/p?b=2"
    );
    assert_eq!(
        scrubbed(remove, "https://e.com/p?a=1&token=x"),
        "https://e.com/p?a=1"
    );
    assert_eq!(
        scrubbed(remove, "https://e.com/p?token=x&sid=y"),
        "https://e.com/p"
    );
    assert_eq!(
        scrubbed(remove, "https://e.com/p?a=1;sid=y;b=2"),
        "https://e.com/p?a=1;b=2"
    );
    assert_eq!(
        scrubbed(remove, "https://e.com/s;jsessionid=1/x"),
        "https://e.com/s/x"
    );
}

#[test]
fn values_that_look_sensitive_are_redacted_anywhere() {
    // E-mail in the path (encoded) and in a value of a harmless name.
    assert_eq!(
        scrub("https://e.com/users/jane.doe%40example.com/profile?ref=bob%2Bx@mail.example.org"),
        "https://e.com/users/REDACTED/profile?ref=REDACTED"
    );
    // A JWT under an innocent name, and card numbers plain or grouped.
    let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
    assert_eq!(
        scrub(&format!(
            "https://e.com/cb?x={jwt}&n=4111111111111111&m=4111+1111+1111+1111&y=2"
        )),
        "https://e.com/cb?x=REDACTED&n=REDACTED&m=REDACTED&y=2"
    );
    assert_eq!(
        scrub("https://e.com/pay/4111-1111-1111-1111/ok"),
        "https://e.com/pay/REDACTED/ok"
    );
    // Short numbers, dates, versions and UUIDs are not secrets.
    let harmless = "https://e.com/v1/items/123456/2024-01-15?page=2&id=0f8fad5b-d9cb-469f-a165-70867728950e&v=1.2.3";
    assert_eq!(scrub(harmless), harmless);
    // Only the sensitive part of a value goes.
    assert_eq!(
        scrub("https://e.com/?q=mail%20me%20at%20a@b.io%20please"),
        "https://e.com/?q=mail%20me%20at%20REDACTED%20please"
    );
    assert_eq!(
        scrubbed("redact_values = false", "https://e.com/u/a@b.io"),
        "https://e.com/u/a@b.io"
    );
}

#[test]
fn userinfo_is_always_removed() {
    assert_eq!(scrub("https://admin:s3cret@e.com/x"), "https://e.com/x");
    assert_eq!(scrub("https://token@e.com/"), "https://e.com/");
    assert_eq!(
        scrubbed("params = []\nredact_values = false", "ftp://u:p@e.com/f"),
        "ftp://e.com/f"
    );
}

#[test]
fn fragments_with_tokens_and_hash_routes() {
    assert_eq!(
        scrub("https://app.example.com/callback#access_token=ya29.abc&token_type=Bearer&expires_in=3599"),
        "https://app.example.com/callback#access_token=REDACTED&token_type=Bearer&expires_in=3599"
    );
    assert_eq!(
        scrub("https://e.com/#/reset?email=a%40b.com&step=2"),
        "https://e.com/#/reset?email=REDACTED&step=2"
    );
    assert_eq!(
        scrub("https://e.com/#/users/a@b.com/edit"),
        "https://e.com/#/users/REDACTED/edit"
    );
    assert_eq!(
        scrub("https://e.com/docs#section-2"),
        "https://e.com/docs#section-2"
    );
    assert_eq!(
        scrubbed("strip_fragment = true", "https://e.com/docs#section-2"),
        "https://e.com/docs"
    );
}

#[test]
fn no_query_and_clean_urls_are_kept_byte_for_byte() {
    let (t, _) = transform("");
    for url in [
        "https://e.com",
        "HTTPS://E.com:443/a/../b",
        "https://bücher.example/",
        "https://e.com/",
        "https://e.com/a/b.html",
        "https://e.com/search?q=running+shoes&page=2",
        "https://e.com/?",
        "https://xn--bcher-kva.example/",
        "https://e.com/?=&&=x&token&token=&;;",
    ] {
        assert_eq!(
            t.scrubber.scrub(url, None).url,
            Scrubbed::Unchanged,
            "{url}"
        );
    }
}

#[test]
fn idn_hosts_come_out_as_browsers_send_them() {
    // Browsers put the punycode host into location.href; a Unicode host
    // (hand-made reports) comes out the same way once it is scrubbed.
    assert_eq!(
        scrub("https://bücher.example/suche?email=a@b.de"),
        "https://xn--bcher-kva.example/suche?email=REDACTED"
    );
    assert_eq!(
        scrub("https://xn--bcher-kva.example/?sid=1"),
        "https://xn--bcher-kva.example/?sid=REDACTED"
    );
}

#[test]
fn relative_urls_are_scrubbed_and_stay_relative() {
    assert_eq!(
        scrub("/api/orders?token=abc&page=2"),
        "/api/orders?token=REDACTED&page=2"
    );
    assert_eq!(scrub("api/u/a@b.io"), "api/u/REDACTED");
    assert_eq!(scrub("?sid=1#x"), "?sid=REDACTED#x");
    assert_eq!(
        scrub("//cdn.example.com/lib.js?key=k1"),
        "//cdn.example.com/lib.js?key=REDACTED"
    );
    assert_eq!(
        scrub("//user:pw@cdn.example.com/lib.js"),
        "//cdn.example.com/lib.js"
    );
    // CSP keywords are not URLs and not errors.
    let (t, _) = transform("");
    for keyword in ["inline", "eval", "self", "wasm-eval", "", "img.png"] {
        assert_eq!(
            t.scrubber.scrub(keyword, None).url,
            Scrubbed::Unchanged,
            "{keyword}"
        );
    }
}

#[test]
fn opaque_urls() {
    assert_eq!(
        scrub("mailto:jane@example.com?subject=hi"),
        "mailto:REDACTED?subject=hi"
    );
    let data = "data:image/png;base64,eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln";
    assert_eq!(scrub(data), data);
    assert_eq!(scrub("about:blank"), "about:blank");
}

#[test]
fn unparseable_urls_are_left_as_is_and_counted() {
    let (mut t, metrics) = transform("");
    let bad = "https://e.com:99999/x?token=abc";
    let mut batch = vec![
        Event::from(
            json!({"url": {"full": bad}, "http": {"request": {"referrer": "http://[::1/?sid=2"}}}),
        ),
        Event::from(json!({"rum": {"http": {"url": "https://ok.example/?token=1"}}})),
    ];
    t.transform_batch(&mut batch);
    assert_eq!(batch[0].get_str(schema::URL_FULL), Some(bad));
    assert_eq!(
        batch[0].get_str(schema::HTTP_REFERRER),
        Some("http://[::1/?sid=2")
    );
    assert_eq!(batch[0].get(schema::URL_PATH_TEMPLATE), None);
    assert_eq!(
        batch[1].get_str(schema::RUM_HTTP_URL),
        Some("https://ok.example/?token=REDACTED")
    );
    assert_eq!(
        metrics.registry().counter_sum(
            "component_errors_total",
            &[("component_id", "scrub"), ("error_type", "unparseable_url")]
        ),
        2
    );
}

#[test]
fn scrubbed_urls_stay_valid_and_scrubbing_is_idempotent() {
    let urls = [
        "https://u:p@e.com/a%20b/jane@x.io;jsessionid=9?token=a b&q=%E2%9C%93&e=x%40y.io#access_token=t&z=1",
        "https://e.com/p?email=%ZZ&sid=%&q=%C3%28",
        "https://e.com/?=&&=x&token&token=&;;sid=1",
        "http://[2001:db8::1]:8080/x?key=1",
    ];
    let (t, _) = transform("");
    for url in urls {
        let once = match t.scrubber.scrub(url, None).url {
            Scrubbed::Changed(s) => s,
            other => panic!("{url}: {other:?}"),
        };
        let parsed = Url::parse(&once).unwrap_or_else(|e| panic!("{once}: {e}"));
        assert_eq!(parsed.as_str(), once, "serialization is stable");
        assert_eq!(
            t.scrubber.scrub(&once, None).url,
            Scrubbed::Unchanged,
            "{once}"
        );
        for secret in [
            "jane@x.io",
            "x@y.io",
            "x%40y.io",
            "=a b",
            "access_token=t",
            "u:p@",
            "key=1",
            "email=%ZZ",
            "sid=%&",
        ] {
            assert!(!once.contains(secret), "{secret} left in {once}");
        }
    }
}

#[test]
fn url_full_rederives_parts_and_template() {
    let (mut t, _) = transform("routes = [\"/product/{slug}\"]");
    let mut batch = vec![Event::from(json!({
        "url": {
            "full": "https://bob:pw@shop.example.com/u/8812/orders/0f8fad5b-d9cb-469f-a165-70867728950e?sid=abc#frag",
            "domain": "stale", "path": "stale", "query": "sid=abc", "fragment": "frag"
        }
    }))];
    t.transform_batch(&mut batch);
    let e = &batch[0];
    assert_eq!(e.get_str(schema::URL_FULL), Some("https://shop.example.com/u/8812/orders/0f8fad5b-d9cb-469f-a165-70867728950e?sid=REDACTED#frag"));
    assert_eq!(e.get_str(schema::URL_DOMAIN), Some("shop.example.com"));
    assert_eq!(
        e.get_str(schema::URL_PATH),
        Some("/u/8812/orders/0f8fad5b-d9cb-469f-a165-70867728950e")
    );
    assert_eq!(e.get_str(schema::URL_QUERY), Some("sid=REDACTED"));
    assert_eq!(
        e.get_str(schema::URL_PATH_TEMPLATE),
        Some("/u/:id/orders/:id")
    );

    let mut batch = vec![Event::from(
        json!({"url": {"full": "https://shop.example.com/product/blue-shoe-42"}}),
    )];
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get_str(schema::URL_PATH_TEMPLATE),
        Some("/product/:slug")
    );
    // Parts are written when an upstream did not.
    assert_eq!(
        batch[0].get_str(schema::URL_PATH),
        Some("/product/blue-shoe-42")
    );

    let (mut off, _) = transform("path_template = false");
    let mut batch = vec![Event::from(json!({"url": {"full": "https://e.com/u/1"}}))];
    off.transform_batch(&mut batch);
    assert_eq!(batch[0].get(schema::URL_PATH_TEMPLATE), None);
}

/// The events the beacon decoder makes of `beacon`, from one client with
/// its whole address kept.
fn beacon_events(beacon: &serde_json::Value) -> Vec<Event> {
    beacon_body_events(&beacon.to_string())
}

/// [`beacon_events`] of a body as written (`json!` sorts keys, and an
/// entry whose `type` is not its first key is read the long way, into
/// slots of its own rather than the beacon's packed run).
fn beacon_body_events(body: &str) -> Vec<Event> {
    use crate::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
    let facts = RequestFacts {
        received_at_ms: 1_700_000_000_000,
        client_ip: "203.0.113.9".parse().unwrap(),
        user_agent: None,
        client_hints: vec![],
    };
    let limits = BeaconLimits {
        max_events: 10,
        max_string_bytes: 1000,
        max_depth: 8,
        max_event_age_ms: 1000,
        max_context_bytes: 64 * 1024,
        client_ip: crate::privacy::ClientIpMode::Full,
    };
    decode(body.as_bytes(), &facts, &limits).unwrap().events
}

/// A beacon's events as decoded (their own slots a packed run) are looked
/// at in one walk each (`unchanged_packed`) and scrubbed the long way only
/// when something changes: the documents and the count of unparseable
/// URLs must be what the long way alone makes of the same beacons,
/// whatever the configuration.
#[test]
fn the_quick_way_scrubs_as_the_long_way_does() {
    let events = r#"[
        {"type": "resource", "name": "https://cdn.e.com/app.js", "initiator_type": "script"},
        {"type": "resource", "name": "https://cdn.e.com/img.png?token=abc&ref=x"},
        {"type": "http", "method": "GET", "url": "https://api.e.com:99999/cart", "status": 200},
        {"type": "error", "message": "Cannot read properties of undefined", "stack": "TypeError\n    at f (https://cdn.e.com/app.js:1:2)"},
        {"type": "error", "message": "Failed to fetch https://api.e.com/u?email=a@b.co", "stack": "at g (https://cdn.e.com/x.js?sid=9:3:4)"},
        {"type": "web_vital", "name": "LCP", "value": 900.5, "attribution": {"url": "https://cdn.e.com/hero.webp?token=1", "element": "img"}},
        {"type": "action", "kind": "click", "target": "button#buy", "extra_key": "see https://e.com/?session=7"},
        {"type": "http", "method": "GET", "url": "not a url at all", "status": 0},
        {"type": "resource", "name": "https://cdn.e.com/u/jane@example.com/avatar.png"},
        {"type": "page_view", "navigation_type": "navigate"}
    ]"#;
    // Each beacon's view: a clean page, one with a secret, one that does
    // not parse, a relative one, none at all; referrers likewise.
    let views = [
        r#""view": {"id": "v1", "url": "https://e.com/product/42?ref=home", "referrer": "https://r.com/"}"#,
        r#""view": {"id": "v2", "url": "https://e.com/u/7?token=abc", "referrer": "https://r.com/?sid=3"}"#,
        r#""view": {"id": "v3", "url": "https://e.com:99999/x", "referrer": "http://[::1/"}"#,
        r#""view": {"id": "v4", "url": "/relative/123"}"#,
        r#""view": {"id": "v5"}"#,
    ];
    let configs = [
        "",
        "param_action = \"remove\"",
        "redact_values = false\nextra_params = [\"ref\"]",
        "text_fields = []",
        "path_template = false\nstrip_fragment = true",
        "routes = [\"/product/{slug}\"]",
        // One slot named as a URL and as a text: the long way.
        "fields = [\"rum.resource.name\"]\ntext_fields = [\"rum.resource.name\"]",
        "fields = [\"url.full\", \"url.path_template\"]",
        // A label watched: the long way for everything.
        "fields = [\"rum.http.url\", \"labels.link\"]",
    ];
    let unparseable = |metrics: &ComponentMetrics| {
        metrics.registry().counter_sum(
            "component_errors_total",
            &[("error_type", "unparseable_url")],
        )
    };
    let docs = |batch: &[Event]| batch.iter().map(Event::to_value).collect::<Vec<_>>();
    for toml_text in configs {
        let (mut quick, quick_metrics) = transform(toml_text);
        let (mut long, long_metrics) = transform(toml_text);
        long.long_way_only = true;
        for view in views {
            let body =
                format!(r#"{{"v": 1, "session": {{"id": "s1"}}, {view}, "events": {events}}}"#);
            let batch = beacon_body_events(&body);
            assert_eq!(batch.len(), 10);
            assert!(batch.iter().all(|e| e.packed_own().is_some()));
            // Twice: the second time, every memo lookup is a hit.
            for round in 0..2 {
                let (mut a, mut b) = (batch.clone(), batch.clone());
                quick.transform_batch(&mut a);
                long.transform_batch(&mut b);
                assert_eq!(docs(&a), docs(&b), "{toml_text:?}, {view}, round {round}");
                // Still one context for the beacon's events.
                assert!(a
                    .windows(2)
                    .all(|w| crate::event::Counted::ptr_eq(w[0].context(), w[1].context())));
            }
        }
        assert_eq!(
            unparseable(&quick_metrics),
            unparseable(&long_metrics),
            "{toml_text:?}"
        );
        if toml_text.is_empty() {
            // Per beacon and round: the http event's port, and the third
            // beacon's page and referrer once per event. ("not a url at
            // all" is scrubbed as a relative URL.)
            assert_eq!(unparseable(&quick_metrics), 2 * 5 + 2 * 2 * 10);
        }
    }
}

#[test]
fn events_sharing_a_beacon_context_are_scrubbed_each() {
    let beacon = json!({
        "v": 1,
        "session": {"id": "s1"},
        "view": {"id": "v1", "url": "https://e.com/a?token=1#access_token=2", "referrer": "https://r.com/?sid=3"},
        "events": [
            {"type": "page_view"},
            {"type": "web_vital", "name": "LCP", "value": 1.0},
            // The final CLS of the previous page of an SPA carries its own view.
            {"type": "web_vital", "name": "CLS", "value": 0.1, "view": {"id": "v0", "url": "https://e.com/u/42?sid=9"}}
        ]
    });
    let mut batch = beacon_events(&beacon);
    let (mut t, _) = transform("strip_fragment = true\nparam_action = \"remove\"");
    t.transform_batch(&mut batch);
    assert_eq!(batch.len(), 3);
    let own_view = batch.pop().unwrap().to_value();
    assert_eq!(own_view["url"]["full"], "https://e.com/u/42", "{own_view}");
    assert_eq!(own_view["url"]["path_template"], "/u/:id");
    assert!(own_view["url"].get("query").is_none(), "{own_view}");
    // Scrubbed once for the beacon: its events still share one context.
    assert!(crate::event::Counted::ptr_eq(
        batch[0].context(),
        batch[1].context()
    ));
    for event in &batch {
        let doc = event.to_value();
        assert_eq!(doc["url"]["full"], "https://e.com/a", "{doc}");
        assert_eq!(doc["url"]["path"], "/a");
        assert_eq!(doc["url"]["path_template"], "/a");
        assert!(doc["url"].get("query").is_none(), "{doc}");
        assert!(doc["url"].get("fragment").is_none(), "{doc}");
        assert_eq!(doc["http"]["request"]["referrer"], "https://r.com/");
        assert_eq!(doc["session"]["id"], "s1");
    }
}

/// A web-vitals metric that names no page, posted beside one that does (and
/// without a `Referer`), hides the shared page's `url.*` fields: it has no
/// page. Its `url.path_template` must not be the other metric's page's, or
/// the `prometheus` sink files its vital under that page's template.
#[test]
fn an_event_that_hides_the_shared_page_gets_no_template_of_it() {
    use crate::sources::web_vitals_decoder::{decode, MetricLimits, RequestFacts};
    let body = json!([
        {"name": "CLS", "value": 0.1, "url": "https://e.com/product/123?token=1"},
        {"name": "INP", "value": 80}
    ]);
    let facts = RequestFacts {
        received_at_ms: 1_700_000_000_000,
        client_ip: "203.0.113.9".parse().unwrap(),
        user_agent: None,
        referer: None,
    };
    let limits = MetricLimits {
        max_metrics: 10,
        max_string_bytes: 1000,
        max_depth: 8,
        keep_entries: false,
        client_ip: crate::privacy::ClientIpMode::Full,
    };
    let mut batch = decode(body.to_string().as_bytes(), &facts, &limits)
        .unwrap()
        .events;
    let (mut t, _) = transform("");
    t.transform_batch(&mut batch);
    let with_page = batch[0].to_value();
    assert_eq!(
        with_page["url"]["path_template"], "/product/:id",
        "{with_page}"
    );
    let without_page = batch[1].to_value();
    assert_eq!(without_page["rum"]["vital"]["name"], "INP");
    assert!(without_page.get("url").is_none(), "{without_page}");
}

/// An event whose own page does not parse gets no template (as the manual
/// says of unparseable URLs), not the one of the beacon's page.
#[test]
fn an_event_whose_own_page_does_not_parse_gets_no_template_of_the_shared_one() {
    let beacon = json!({
        "v": 1,
        "view": {"id": "v1", "url": "https://e.com/product/123"},
        "events": [
            {"type": "page_view"},
            {"type": "web_vital", "name": "CLS", "value": 0.1, "view": {"id": "v0", "url": "http://e.com:99999/x"}}
        ]
    });
    let mut batch = beacon_events(&beacon);
    let (mut t, _) = transform("");
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get_str(schema::URL_PATH_TEMPLATE),
        Some("/product/:id")
    );
    let own = batch[1].to_value();
    assert_eq!(own["url"], json!({"full": "http://e.com:99999/x"}), "{own}");
}

#[test]
fn memo_is_bounded_and_hits_count_like_misses() {
    let (mut t, metrics) = transform("");
    let long = "x".repeat(400);
    for _ in 0..3 {
        let mut batch: Batch = (0..3000)
            .map(|i| {
                Event::from(json!({
                    "url": {"full": format!("https://e.com/{long}/?token={i}")},
                    "rum": {"http": {"url": "https://e.com:99999/"}}
                }))
            })
            .collect();
        t.transform_batch(&mut batch);
        assert!(batch
            .iter()
            .all(|e| e.get_str(schema::URL_QUERY) == Some("token=REDACTED")));
        let pages = &t.pages.entries;
        assert!(pages.weight() <= MEMO_MAX_BYTES as u64 && pages.len() < 9000);
    }
    let errors = metrics.registry().counter_sum(
        "component_errors_total",
        &[("error_type", "unparseable_url")],
    );
    assert_eq!(errors, 9000, "every occurrence counts, cached or not");
}

#[test]
fn only_configured_fields_are_touched() {
    let (mut t, _) = transform("fields = [\"labels.link\"]\ntext_fields = []");
    let mut batch = vec![Event::from(json!({
        "labels": {"link": "https://e.com/?token=1"},
        "url": {"full": "https://e.com/?token=1"},
        "error": {"stack_trace": "at https://e.com/a.js?token=1:1:1"},
        "csp": {"blocked_uri": 42}
    }))];
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get_str("labels.link"),
        Some("https://e.com/?token=REDACTED")
    );
    assert_eq!(
        batch[0].get_str(schema::URL_FULL),
        Some("https://e.com/?token=1")
    );
    assert_eq!(
        batch[0].get_str(schema::ERROR_STACK_TRACE),
        Some("at https://e.com/a.js?token=1:1:1")
    );
    assert_eq!(batch[0].get(schema::CSP_BLOCKED_URI), Some(&json!(42)));
}

#[test]
fn default_fields_cover_resources_csp_and_stack_traces() {
    let (mut t, _) = transform("");
    let stack =
        "TypeError: x is undefined\n    at load (https://e.com/app.js?token=abc:10:5)\n    \
                 at https://cdn.example.com/v.js:3:9\nrender@https://e.com/r.js?email=a@b.io:7:1\n \
                 see http://:bad/?sid=1 and http://e.com/ok.";
    let mut batch = vec![Event::from(json!({
        "http": {"request": {"referrer": "https://google.com/?q=1&sig=zzz"}},
        "rum": {"resource": {"name": "https://api.e.com/v1/me?access_token=t0k"}},
        "csp": {
            "blocked_uri": "https://evil.example/x?key=1",
            "document_uri": "https://e.com/account?email=a%40b.com",
            "source_file": "https://e.com/app.js?auth=1"
        },
        "error": {"stack_trace": stack}
    }))];
    t.transform_batch(&mut batch);
    let e = &batch[0];
    assert_eq!(
        e.get_str(schema::HTTP_REFERRER),
        Some("https://google.com/?q=1&sig=REDACTED")
    );
    assert_eq!(
        e.get_str(schema::RUM_RESOURCE_NAME),
        Some("https://api.e.com/v1/me?access_token=REDACTED")
    );
    assert_eq!(
        e.get_str(schema::CSP_BLOCKED_URI),
        Some("https://evil.example/x?key=REDACTED")
    );
    assert_eq!(
        e.get_str(schema::CSP_DOCUMENT_URI),
        Some("https://e.com/account?email=REDACTED")
    );
    assert_eq!(
        e.get_str(schema::CSP_SOURCE_FILE),
        Some("https://e.com/app.js?auth=REDACTED")
    );
    assert_eq!(
        e.get_str(schema::ERROR_STACK_TRACE),
        Some(
            "TypeError: x is undefined\n    at load (https://e.com/app.js?token=REDACTED:10:5)\n    \
             at https://cdn.example.com/v.js:3:9\nrender@https://e.com/r.js?email=REDACTED:7:1\n \
             see http://:bad/?sid=1 and http://e.com/ok."
        )
    );
}

#[test]
fn default_fields_cover_the_csp_referrer_and_urls_in_report_bodies() {
    let (mut t, _) = transform("");
    // As the csp source makes them: each report its own context.
    let mut violation = Event::from(json!({
        "rum": {"type": "csp_violation"},
        "csp": {"referrer": "https://e.com/from?token=abc", "document_uri": "https://e.com/"}
    }));
    violation.hoist_into_context();
    let mut nel = Event::from(json!({
        "rum": {"type": "report"},
        "report": {"type": "network-error", "body": {
            "referrer": "https://e.com/a?sid=1",
            "type": "http.error",
            "status_code": 500
        }}
    }));
    nel.hoist_into_context();
    let mut batch = vec![
        violation,
        nel,
        Event::from(json!({"report": {"body": {
            "source_file": "https://e.com/app.js?auth=2",
            "blocked_url": "https://cdn.e.com/x.js?key=3",
            "previous_response_url": "https://e.com/p?code=4"
        }}})),
    ];
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get_str("csp.referrer"),
        Some("https://e.com/from?token=REDACTED")
    );
    assert_eq!(
        batch[1].get("report.body"),
        Some(&json!({
            "referrer": "https://e.com/a?sid=REDACTED",
            "type": "http.error",
            "status_code": 500
        }))
    );
    assert_eq!(
        batch[2].get("report.body"),
        Some(&json!({
            "source_file": "https://e.com/app.js?auth=REDACTED",
            "blocked_url": "https://cdn.e.com/x.js?key=REDACTED",
            "previous_response_url": "https://e.com/p?code=REDACTED"
        }))
    );
}

#[test]
fn position_suffixes() {
    assert_eq!(
        split_position_suffix("https://e.com/a.js:10:5"),
        ("https://e.com/a.js", ":10:5")
    );
    assert_eq!(
        split_position_suffix("https://e.com:8080"),
        ("https://e.com:8080", "")
    );
    assert_eq!(
        split_position_suffix("https://e.com:8080/a.js:3"),
        ("https://e.com:8080/a.js", ":3")
    );
    assert_eq!(
        split_position_suffix("https://e.com/x."),
        ("https://e.com/x", ".")
    );
    // A colon in the query or fragment belongs to a value.
    assert_eq!(
        split_position_suffix("https://e.com/a?token=abc:123456"),
        ("https://e.com/a?token=abc:123456", "")
    );
    assert_eq!(
        split_position_suffix("https://e.com/a#s=1:2"),
        ("https://e.com/a#s=1:2", "")
    );
}

#[test]
fn a_secret_name_spelled_with_a_plus_for_a_space_is_found() {
    let (t, _) = transform("");
    for (url, scrubbed) in [
        (
            "https://x.example/?token+=SECRET8",
            "https://x.example/?token+=REDACTED",
        ),
        (
            "https://x.example/?+token=SECRET8",
            "https://x.example/?+token=REDACTED",
        ),
        (
            "https://x.example/?token%20=SECRET8",
            "https://x.example/?token%20=REDACTED",
        ),
    ] {
        assert_eq!(
            t.scrubber.scrub(url, None).url,
            Scrubbed::Changed(scrubbed.into()),
            "{url}"
        );
    }
    // A name that only holds a secret's name with a `+` inside is another name.
    assert_eq!(
        t.scrubber.scrub("https://x.example/?to+ken=a", None).url,
        Scrubbed::Unchanged
    );
}

#[test]
fn the_end_of_a_secret_after_a_colon_is_not_kept_as_a_line_number() {
    let (t, _) = transform("");
    let (text, _) = t
        .scrubber
        .scrub_text("fetch failed https://api.example.com/v1/items?token=abc:123456 at x");
    let text = text.expect("the token is scrubbed");
    assert!(!text.contains("123456"), "{text}");
    assert!(text.ends_with(" at x"), "{text}");
    // A frame (`:line:column`, as browsers write it) keeps its position.
    let (text, _) = t
        .scrubber
        .scrub_text("at f (https://e.com/app.js?v=3:10:5)");
    assert_eq!(text, None);
    let (text, _) = t
        .scrubber
        .scrub_text("at f (https://e.com/app.js?token=s3cret:10:5)");
    assert_eq!(
        text.as_deref(),
        Some("at f (https://e.com/app.js?token=REDACTED:10:5)")
    );
}

#[test]
fn value_detectors() {
    let r = |s: &str| redact_values(s, 13, "R");
    assert_eq!(r("a@b.co"), Some("R".into()));
    assert_eq!(r("x a.b+c@sub.ex-ample.com."), Some("x R.".into()));
    assert_eq!(r("@handle"), None);
    assert_eq!(r("a@localhost"), None);
    assert_eq!(r("a@b.c0"), None);
    assert_eq!(r("1700000000000"), Some("R".into()));
    assert_eq!(r("170000000000"), None);
    assert_eq!(r("4111 1111 1111 1111x"), None, "glued to a letter");
    assert_eq!(r("id:4111 1111 1111 1111!"), Some("id:R!".into()));
    assert_eq!(r("a456-426614174000"), None);
    assert_eq!(
        r("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."),
        Some("R".into()),
        "alg none"
    );
    assert_eq!(r("eyJhbGciOiJub25lIn0"), None, "one part is not a JWT");
    assert_eq!(r("xeyJhbGciOiJub25lIn0.a.b"), None);
    // Adversarial input stays linear and finds nothing.
    let nasty = "eyJ".repeat(5000) + &"@".repeat(5000) + &"1-".repeat(5000);
    assert!(r(&nasty).is_some_and(|s| s.len() < nasty.len()));
    assert_eq!(r(&"a@".repeat(5000)), None);
}

#[test]
fn id_heuristics() {
    for id in [
        "42",
        "0f8fad5b-d9cb-469f-a165-70867728950e",
        "0F8FAD5B-D9CB-469F-A165-70867728950E",
        "d41d8cd98f00b204e9800998ecf8427e",
        "deadbeefdeadbeef",
        "jane@example.com",
        "aZ3kP9qL2mX8vB4n",
        "k2j3h4g5f6d7s8a9z",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh",
    ] {
        assert!(is_id_like(id), "{id}");
    }
    for word in [
        "",
        "products",
        "blue-running-shoes-42",
        "iphone-15-pro-max-256gb-blue",
        "v1",
        "deadbeef",
        "checkout.html",
        "ThisIsCamelCaseName",
        "2024-01-15",
    ] {
        assert!(!is_id_like(word), "{word}");
    }
}

#[test]
fn templates_heuristics_and_routes() {
    assert_eq!(template(&[], "/"), "/");
    assert_eq!(template(&[], ""), "");
    assert_eq!(template(&[], "/u/42/orders/"), "/u/:id/orders/");
    assert_eq!(
        template(&[], "/shop;jsessionid=REDACTED/cart"),
        "/shop/cart"
    );
    assert_eq!(template(&[], "/u/REDACTED/profile"), "/u/:id/profile");
    assert_eq!(template(&[], "/u/jane%40example.com"), "/u/:id");
    assert_eq!(template(&[], "/caf%C3%A9/12"), "/caf%C3%A9/:id");
    assert_eq!(template(&[], "api/u/7"), "api/u/:id");
    let routes = ["/product/{slug}", "/u/{id}/orders", "/docs/*", "/"];
    assert_eq!(template(&routes, "/product/blue-shoe"), "/product/:slug");
    assert_eq!(template(&routes, "/product/blue-shoe/"), "/product/:slug");
    assert_eq!(
        template(&routes, "/product/blue-shoe/reviews"),
        "/product/blue-shoe/reviews"
    );
    assert_eq!(template(&routes, "/product/"), "/product/");
    assert_eq!(template(&routes, "/u/jane/orders"), "/u/:id/orders");
    assert_eq!(template(&routes, "/docs"), "/docs/*");
    assert_eq!(template(&routes, "/docs/a/b/c"), "/docs/*");
    assert_eq!(template(&routes, "/"), "/");
    // Routes win over heuristics: `{slug}` even when the value looks like an id.
    assert_eq!(template(&routes, "/product/12345"), "/product/:slug");
    // Literals match the decoded segment.
    assert_eq!(template(&["/café/{x}"], "/caf%C3%A9/1"), "/café/:x");
}

#[test]
fn bad_config_is_named() {
    let problems = |text: &str| config(text).check();
    assert_eq!(problems("replacement = \"[x]\"")[0].0, "replacement");
    assert_eq!(problems("replacement = \"\"")[0].0, "replacement");
    assert_eq!(problems("min_digit_run = 3")[0].0, "min_digit_run");
    assert_eq!(problems("fields = [\"url..full\"]")[0].0, "fields");
    assert_eq!(problems("extra_params = [\" \"]")[0].0, "extra_params");
    assert_eq!(problems("params = [\"\"]")[0].0, "params");
    // A misspelt field is one no event holds: it was never scrubbed, without a word.
    let misspelt = problems("fields = [\"url.full\", \"url.ful\"]");
    assert_eq!(misspelt.len(), 1, "{misspelt:?}");
    assert_eq!(misspelt[0].0, "fields");
    assert!(
        misspelt[0].1.contains("`url.ful`") && misspelt[0].1.contains("did you mean `url.full`?"),
        "{misspelt:?}"
    );
    let misspelt = problems("text_fields = [\"error.stacktrace\"]");
    assert_eq!(misspelt[0].0, "text_fields");
    assert!(
        misspelt[0].1.contains("did you mean `error.stack_trace`?"),
        "{misspelt:?}"
    );
    // Labels, paths inside object fields and typed fields are fields an event holds.
    assert!(problems(
        "fields = [\"labels.link\", \"rum.extra.next\", \"report.body.x\", \"url.port\"]"
    )
    .is_empty());
    for route in [
        "product/{x}",
        "/a/{x",
        "/a/*/b",
        "/a/{}",
        "/a?b",
        "/a//b",
        "/x-{id}",
    ] {
        let p = problems(&format!("routes = [{route:?}]"));
        assert_eq!(p.len(), 1, "{route}");
        assert_eq!(p[0].0, "routes");
        assert!(p[0].1.contains(route), "{:?}", p[0]);
    }
    assert!(problems("").is_empty());
    let unknown: Result<ScrubUrlConfig, _> =
        crate::config::decode(toml::from_str("field = []").unwrap());
    assert!(unknown.is_err());
}

#[test]
fn extra_params_extend_and_params_replace_the_defaults() {
    assert_eq!(
        scrubbed(
            "extra_params = [\"X-Amz-Credential\"]",
            "https://s3.example.com/o?x-amz-credential=AK&token=1"
        ),
        "https://s3.example.com/o?x-amz-credential=REDACTED&token=REDACTED"
    );
    assert_eq!(
        scrubbed("params = [\"ticket\"]", "https://e.com/?ticket=1&token=2"),
        "https://e.com/?ticket=REDACTED&token=2"
    );
}

#[test]
fn each_configured_field_is_found_whatever_else_the_event_holds() {
    // A label, a path inside an object slot, a plain slot and a text field:
    // every subset of them on an event, and the same four after 66 fields
    // no document of the test holds (past 64 fields every field is looked up).
    let wanted = [
        "labels.link",
        "rum.extra.link",
        schema::RUM_HTTP_URL,
        schema::ERROR_STACK_TRACE,
    ];
    let padding: Vec<String> = (0..66).map(|i| format!("rum.extra.pad{i}")).collect();
    let configs = [
        format!(
            "fields = {:?}\ntext_fields = [{:?}]",
            &wanted[..3],
            wanted[3]
        ),
        format!(
            "fields = {:?}\ntext_fields = [{:?}]",
            padding
                .iter()
                .map(String::as_str)
                .chain(wanted[..3].iter().copied())
                .collect::<Vec<_>>(),
            wanted[3]
        ),
    ];
    for toml_text in &configs {
        let (mut t, _) = transform(toml_text);
        for subset in 0u32..16 {
            let mut doc = json!({"rum": {"type": "http"}});
            let holds = |i: u32| subset & (1 << i) != 0;
            if holds(0) {
                doc["labels"] = json!({"link": "https://e.com/?token=1"});
            }
            if holds(1) {
                doc["rum"]["extra"] = json!({"link": "https://e.com/?token=1"});
            }
            if holds(2) {
                doc["rum"]["http"] = json!({"url": "https://e.com/api?token=1"});
            }
            if holds(3) {
                doc["error"] = json!({"stack_trace": "at https://e.com/a.js?token=1:1:1"});
            }
            let mut batch = vec![Event::from(doc)];
            t.transform_batch(&mut batch);
            let e = &batch[0];
            for (i, path) in wanted.iter().enumerate() {
                let value = e.get_str(path);
                if holds(i as u32) {
                    let value = value.unwrap_or_else(|| panic!("{path} lost"));
                    assert!(
                        value.contains("token=REDACTED") && !value.contains("token=1"),
                        "{path} not scrubbed on subset {subset:04b}: {value}"
                    );
                } else {
                    assert_eq!(value, None, "{path} appeared on subset {subset:04b}");
                }
            }
        }
    }
}

#[test]
fn a_beacons_shared_context_is_scrubbed_once_for_all_its_events() {
    let (mut t, metrics) = transform("");
    // Events of one beacon share its context, as the sources make them.
    let mut first = Event::from(json!({
        "url": {"full": "https://e.com/a?token=1"},
        "http": {"request": {"referrer": "https://e.com:99999/"}}
    }));
    first.hoist_into_context();
    let mut batch = vec![first; 3];
    t.transform_batch(&mut batch);
    for event in &batch {
        assert!(crate::event::Counted::ptr_eq(
            event.context(),
            batch[0].context()
        ));
        assert_eq!(event.get_str(schema::URL_QUERY), Some("token=REDACTED"));
        assert_eq!(
            event.get_str(schema::URL_FULL),
            Some("https://e.com/a?token=REDACTED")
        );
    }
    let errors = metrics.registry().counter_sum(
        "component_errors_total",
        &[("error_type", "unparseable_url")],
    );
    assert_eq!(
        errors, 3,
        "the context's unparseable referrer counts for each event"
    );
}

#[test]
fn fragment_parameters_before_a_question_mark_are_scrubbed() {
    // An OAuth redirect fragment whose return path carries its own query:
    // the `?` belongs to a value, the pairs before it are still parameters.
    assert_eq!(
        scrub("https://e.com/cb#access_token=SECRET1&redirect=/page?x=1"),
        "https://e.com/cb#access_token=REDACTED&redirect=/page?x=1"
    );
    assert_eq!(
        scrub("https://e.com/cb#state=s&id_token=SECRET2?x=1&sid=SECRET3"),
        "https://e.com/cb#state=REDACTED&id_token=REDACTED?x=1&sid=REDACTED"
    );
    // A hash route and its query are still read as such.
    assert_eq!(
        scrub("https://e.com/#/reset?email=a%40b.com&step=2"),
        "https://e.com/#/reset?email=REDACTED&step=2"
    );
}

#[test]
fn urls_in_text_run_past_brackets_and_bars_they_hold() {
    let (t, _) = transform("");
    for (text, scrubbed) in [
        // PHP-style array names before the secret.
        (
            "at f (https://e.com/app.js?filter[a]=1&token=SECRETA:1:2)",
            "at f (https://e.com/app.js?filter[a]=1&token=REDACTED:1:2)",
        ),
        // An IPv6 host (a dev server): a whole URL, not an unparseable `https://`.
        (
            "at https://[::1]:8080/app.js?token=SECRETB:1:2",
            "at https://[::1]:8080/app.js?token=REDACTED:1:2",
        ),
        (
            "see https://e.com/wiki/Foo_(bar)?token=SECRETD.",
            "see https://e.com/wiki/Foo_(bar)?token=REDACTED.",
        ),
        (
            "x https://e.com/a?q={x}&token=SECRETE",
            "x https://e.com/a?q={x}&token=REDACTED",
        ),
        (
            "x https://e.com/a?q=a|b^c&token=SECRETF",
            "x https://e.com/a?q=a|b^c&token=REDACTED",
        ),
        // A bracket the URL did not open still ends it.
        (
            "[https://e.com/a?token=SECRETG] (https://e.com/b?sid=SECRETH)",
            "[https://e.com/a?token=REDACTED] (https://e.com/b?sid=REDACTED)",
        ),
    ] {
        let (new, unparseable) = t.scrubber.scrub_text(text);
        assert_eq!(new.as_deref(), Some(scrubbed), "{text}");
        assert_eq!(unparseable, 0, "{text}");
    }
}

#[test]
fn urls_in_text_are_found_whatever_the_case_of_their_scheme() {
    let (t, _) = transform("");
    let (new, _) = t
        .scrubber
        .scrub_text("GET HTTPS://e.com/x?token=SECRETC failed; Http://e.com/?sid=SECRETD");
    assert_eq!(
        new.as_deref(),
        Some("GET https://e.com/x?token=REDACTED failed; http://e.com/?sid=REDACTED")
    );
}

#[test]
fn a_short_replacement_does_not_turn_ordinary_segments_into_ids() {
    for (replacement, path, expected) in [
        (
            "x",
            "/products/xbox/index.html",
            "/products/xbox/index.html",
        ),
        ("-", "/blue-running-shoes", "/blue-running-shoes"),
        (".", "/docs/intro.html", "/docs/intro.html"),
        // A segment a redaction went into is still an id.
        ("x", "/u/jane@e.com/orders", "/u/:id/orders"),
        ("-", "/order-4111111111111111/pay", "/:id/pay"),
        ("REDACTED", "/u/contact-REDACTED", "/u/:id"),
    ] {
        let (t, _) = transform(&format!("replacement = {replacement:?}"));
        let outcome = t.scrubber.scrub(path, t.templates.as_ref());
        assert_eq!(
            outcome.template.as_deref(),
            Some(expected),
            "{replacement} {path}"
        );
    }
}

#[test]
fn indexed_array_names_match_like_empty_brackets() {
    // `qs` (axios, Express) writes arrays with indices by default.
    assert_eq!(
        scrub("https://e.com/?token[0]=SECRET1&user[password][1]=SECRET2&ids[0]=7"),
        "https://e.com/?token[0]=REDACTED&user[password][1]=REDACTED&ids[0]=7"
    );
    assert_eq!(
        scrub("https://e.com/?token%5B0%5D%5B%5D=SECRET3"),
        "https://e.com/?token%5B0%5D%5B%5D=REDACTED"
    );
}

#[test]
fn addresses_with_letters_beyond_ascii_are_redacted_whole() {
    let r = |s: &str| redact_values(s, 13, "R");
    assert_eq!(r("jörg.müller@example.com"), Some("R".into()));
    assert_eq!(r("an jane@bücher.de!"), Some("an R!".into()));
    assert_eq!(r("ivan@пример.рф"), Some("R".into()));
    assert_eq!(r("«jane@x.com»"), Some("«R»".into()));
    assert_eq!(r("jane@bücher"), None);
    assert_eq!(
        scrub("https://e.com/u/j%C3%B6rg.m%C3%BCller@b%C3%BCcher.de/orders"),
        "https://e.com/u/REDACTED/orders"
    );
    assert!(is_id_like("jane@bücher.de"));
}

#[test]
fn a_token_appended_to_a_hash_route_as_a_second_fragment_is_scrubbed() {
    // An OAuth provider appending `#access_token=...` to a redirect URI that
    // already has a hash route.
    assert_eq!(
        scrub("https://app.example.com/#/callback#access_token=SECRET1&expires_in=3600"),
        "https://app.example.com/#/callback#access_token=REDACTED&expires_in=3600"
    );
    assert_eq!(
        scrub("https://app.example.com/#/cb?x=1#id_token=SECRET2"),
        "https://app.example.com/#/cb?x=1#id_token=REDACTED"
    );
    assert_eq!(
        scrub("/app#/callback#access_token=SECRET3"),
        "/app#/callback#access_token=REDACTED"
    );
    assert_eq!(scrub("https://e.com/a#b#c"), "https://e.com/a#b#c");
}

#[test]
fn an_address_glued_to_what_follows_is_still_redacted() {
    let r = |s: &str| redact_values(s, 13, "R");
    // The top-level label ends where its letters end.
    assert_eq!(r("jane@x.com1234"), Some("R1234".into()));
    assert_eq!(r("jane@x.ioé4111111111111111"), Some("RR".into()));
    // A newline the parser drops glues the address to what follows.
    assert_eq!(
        scrub("https://e.com/jane@x.io\n\u{e9}4111111111111111"),
        "https://e.com/REDACTEDREDACTED"
    );
    assert_eq!(r("jane@x.io.4111111111111111"), Some("R.R".into()));
    assert_eq!(r("a@b.c0"), None);
}

#[test]
fn default_fields_cover_the_file_an_error_came_from() {
    // `ErrorEvent.filename`: the page itself for an inline script.
    let (mut t, _) = transform("");
    let mut batch = vec![Event::from(json!({
        "rum": {"error": {"source": "https://e.com/reset?token=SECRET1&email=jane%40e.com", "line": 3}}
    }))];
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get_str("rum.error.source"),
        Some("https://e.com/reset?token=REDACTED&email=REDACTED")
    );
}

#[test]
fn default_fields_cover_the_url_of_the_largest_contentful_paint() {
    // web-vitals' LCP attribution names the image it painted: signed URLs.
    let (mut t, _) = transform("");
    let mut batch = vec![Event::from(json!({
        "rum": {"vital": {"name": "LCP", "attribution": {
            "url": "https://img.e.com/hero.jpg?sig=SECRET1&w=800",
            "target": "main>img"
        }}}
    }))];
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get(schema::RUM_VITAL_ATTRIBUTION),
        Some(
            &json!({"url": "https://img.e.com/hero.jpg?sig=REDACTED&w=800", "target": "main>img"})
        )
    );
}

#[test]
fn a_url_inside_a_parameter_value_is_scrubbed_too() {
    // A login page sends the visitor back where they came from: a reset
    // link with its token, encoded or not.
    assert_eq!(
        scrub("https://e.com/login?returnUrl=%2Freset%3Ftoken%3DSECRET1&lang=de"),
        "https://e.com/login?returnUrl=%2Freset%3Ftoken%3DREDACTED&lang=de"
    );
    assert_eq!(
        scrub("https://e.com/login?next=/reset?token=SECRET2"),
        "https://e.com/login?next=%2Freset%3Ftoken%3DREDACTED"
    );
    assert_eq!(
        scrub("https://e.com/go?to=https%3A%2F%2Fu%3Ap%40x.com%2Fcb%23access_token%3DSECRET3"),
        "https://e.com/go?to=https:%2F%2Fx.com%2Fcb%23access_token%3DREDACTED"
    );
    // Clean nested URLs are kept byte for byte.
    for url in [
        "https://e.com/login?returnUrl=%2Fcart%3Fpage%3D2",
        "https://e.com/login?next=/cart?page=2",
    ] {
        let (t, _) = transform("");
        assert_eq!(
            t.scrubber.scrub(url, None).url,
            Scrubbed::Unchanged,
            "{url}"
        );
    }
    // One level deep only: a crafted nest costs no deeper recursion.
    let nest = format!("https://e.com/?a={}", "?a=".repeat(20_000));
    let (t, _) = transform("");
    let _ = t.scrubber.scrub(&nest, None);
}

#[test]
fn default_text_fields_cover_the_error_message() {
    // A V8 stack starts with the message, so the same URL was scrubbed in
    // `error.stack_trace` and stored whole in `error.message`.
    let (mut t, _) = transform("");
    let message = "Failed to fetch https://api.e.com/reset?token=SECRET1&email=jane%40e.com";
    let mut batch = vec![Event::from(json!({
        "error": {
            "message": message,
            "stack_trace": format!("TypeError: {message}\n    at f (https://e.com/a.js:1:2)")
        }
    }))];
    t.transform_batch(&mut batch);
    let scrubbed = "Failed to fetch https://api.e.com/reset?token=REDACTED&email=REDACTED";
    assert_eq!(batch[0].get_str(schema::ERROR_MESSAGE), Some(scrubbed));
    assert_eq!(
        batch[0].get_str(schema::ERROR_STACK_TRACE),
        Some(format!("TypeError: {scrubbed}\n    at f (https://e.com/a.js:1:2)").as_str())
    );
}

#[test]
fn default_text_fields_cover_the_scripts_of_a_long_task() {
    // Long Animation Frames name an inline script by the page's own URL,
    // query and all, in `sourceURL` (and a classic script's `invoker`).
    let (mut t, _) = transform("");
    let mut batch = vec![Event::from(json!({
        "rum": {"long_task": {"kind": "long-animation-frame", "scripts": [
            {"invoker": "https://e.com/reset?token=SECRET1", "invoker_type": "classic-script",
             "source_url": "https://e.com/reset?token=SECRET2", "function": "f", "duration": 80},
            {"invoker": "IMG#hero.onload", "source_url": "https://cdn.e.com/app.js", "duration": 60}
        ]}}
    }))];
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get("rum.long_task.scripts"),
        Some(&json!([
            {"invoker": "https://e.com/reset?token=REDACTED", "invoker_type": "classic-script",
             "source_url": "https://e.com/reset?token=REDACTED", "function": "f", "duration": 80},
            {"invoker": "IMG#hero.onload", "source_url": "https://cdn.e.com/app.js", "duration": 60}
        ]))
    );
}

#[test]
fn default_text_fields_cover_stack_frames_kept_in_rum_extra() {
    // Faro's and the Elastic APM agent's frames, kept under rum.extra when
    // the stack text cannot show them all: their files are URLs (the page's,
    // for an inline script) as the stack text's are.
    let (mut t, _) = transform("");
    let frame = |file: &str| json!({"filename": file, "function": "f", "lineno": 1});
    let mut batch = vec![Event::from(json!({
        "rum": {"extra": {
            "stacktrace": {"frames": [frame("https://e.com/reset?token=SECRET1")]},
            "exception": {"stacktrace": [{"abs_path": "https://e.com/?sid=SECRET2", "lineno": 2}]},
            "log": {"stacktrace": [{"abs_path": "https://e.com/?sid=SECRET3", "lineno": 3}]}
        }}
    }))];
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get("rum.extra"),
        Some(&json!({
            "stacktrace": {"frames": [frame("https://e.com/reset?token=REDACTED")]},
            "exception": {"stacktrace": [{"abs_path": "https://e.com/?sid=REDACTED", "lineno": 2}]},
            "log": {"stacktrace": [{"abs_path": "https://e.com/?sid=REDACTED", "lineno": 3}]}
        }))
    );
}

#[test]
fn a_text_field_holding_objects_has_every_string_in_it_scrubbed() {
    let (mut t, metrics) = transform("text_fields = [\"rum.custom.data\"]");
    let data = json!({
        "next": "see https://e.com/?token=SECRET1 now",
        "list": [["https://e.com/?sid=SECRET2"], 7, true, null, "plain"],
        "https://e.com/?token=keys-stay": "x",
        "bad": "http://:bad/?sid=1"
    });
    let mut batch = vec![Event::from(json!({"rum": {"custom": {"data": data}}}))];
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get("rum.custom.data"),
        Some(&json!({
            "next": "see https://e.com/?token=REDACTED now",
            "list": [["https://e.com/?sid=REDACTED"], 7, true, null, "plain"],
            "https://e.com/?token=keys-stay": "x",
            "bad": "http://:bad/?sid=1"
        }))
    );
    let errors = metrics.registry().counter_sum(
        "component_errors_total",
        &[("error_type", "unparseable_url")],
    );
    assert_eq!(errors, 1);
    // Nothing to scrub: the value is left as it is.
    let clean = json!({"a": ["https://e.com/x", 1]});
    let mut batch = vec![Event::from(json!({"rum": {"custom": {"data": clean}}}))];
    t.transform_batch(&mut batch);
    assert_eq!(batch[0].get("rum.custom.data"), Some(&clean));
}

#[test]
fn default_text_fields_cover_what_sources_keep_as_sent() {
    // Faro's navigation timing keeps its `name`, the page URL, under
    // rum.extra; its navigation events name the pages in custom data.
    let (mut t, _) = transform("");
    let mut batch = vec![
        Event::from(json!({
            "rum": {"type": "page_view", "extra": {"attributes": {
                "name": "https://e.com/reset?token=SECRET1", "httpHost": "e.com", "faroNavigationId": "n1"
            }}}
        })),
        Event::from(json!({
            "rum": {"type": "custom", "custom": {"name": "faro.navigation", "data": {
                "fromUrl": "https://e.com/login?email=jane%40e.com", "toUrl": "https://e.com/home"
            }}}
        })),
    ];
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get("rum.extra.attributes"),
        Some(
            &json!({"name": "https://e.com/reset?token=REDACTED", "httpHost": "e.com", "faroNavigationId": "n1"})
        )
    );
    assert_eq!(
        batch[1].get("rum.custom.data"),
        Some(
            &json!({"fromUrl": "https://e.com/login?email=REDACTED", "toUrl": "https://e.com/home"})
        )
    );
}

#[test]
fn default_text_fields_cover_the_text_of_report_bodies() {
    // Deprecation and intervention reports say what happened in a
    // `message`, which may name the page or a script by its URL.
    let (mut t, _) = transform("");
    let mut batch = vec![Event::from(json!({
        "report": {"body": {
            "id": "x",
            "message": "deprecated at https://e.com/reset?token=SECRET1",
            "source_file": "https://e.com/reset?token=SECRET2",
            "line_number": 1
        }}
    }))];
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get(schema::REPORT_BODY),
        Some(&json!({
            "id": "x",
            "message": "deprecated at https://e.com/reset?token=REDACTED",
            "source_file": "https://e.com/reset?token=REDACTED",
            "line_number": 1
        }))
    );
}

#[test]
fn default_text_fields_cover_the_entries_in_a_vitals_attribution() {
    // web-vitals' attribution build, posted as JSON.stringify(metric), has
    // the navigation entry (its `name` is the page URL, query and all) and
    // the LCP resource's entry in the attribution.
    let (mut t, _) = transform("");
    let mut batch = vec![Event::from(json!({
        "rum": {"vital": {"name": "TTFB", "attribution": {
            "waitingDuration": 3,
            "navigationEntry": {"name": "https://e.com/reset?token=SECRET1", "entryType": "navigation"},
            "lcpResourceEntry": {"name": "https://img.e.com/a.jpg?sig=SECRET2"}
        }}}
    }))];
    t.transform_batch(&mut batch);
    assert_eq!(
        batch[0].get(schema::RUM_VITAL_ATTRIBUTION),
        Some(&json!({
            "waitingDuration": 3,
            "navigationEntry": {"name": "https://e.com/reset?token=REDACTED", "entryType": "navigation"},
            "lcpResourceEntry": {"name": "https://img.e.com/a.jpg?sig=REDACTED"}
        }))
    );
}

#[test]
fn next_held_visits_the_held_fields_in_order_and_every_field_past_64() {
    let visit = |held: u64, from: usize, total: usize| {
        let mut seen = Vec::new();
        let mut next = from;
        while let Some(i) = super::next_held(held, next, total) {
            seen.push(i);
            next = i + 1;
        }
        seen
    };
    assert_eq!(visit(0b1010_0110, 0, 8), [1, 2, 5, 7]);
    assert_eq!(visit(0b1010_0110, 3, 8), [5, 7]);
    // Bits of the fields after `total` (the text fields) end the walk.
    assert_eq!(visit(0b1010_0110, 0, 4), [1, 2]);
    assert_eq!(visit(0, 0, 20), Vec::<usize>::new());
    assert_eq!(visit(1 << 63, 60, 66), [63, 64, 65]);
    assert_eq!(visit(0, 62, 66), [64, 65]);
    assert_eq!(visit(u64::MAX, 0, 3), [0, 1, 2]);
}
