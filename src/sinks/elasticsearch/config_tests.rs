use super::*;
use crate::config::{decode, CheckConfig};

fn parse(text: &str) -> Result<ElasticsearchConfig, (String, String)> {
    decode(toml::from_str(text).unwrap())
}

#[test]
fn minimal_config_takes_the_defaults() {
    let c = parse("endpoints = \"http://localhost:9200\"").unwrap();
    assert_eq!(c.endpoints.0, ["http://localhost:9200"]);
    assert_eq!(c.auth, Auth::None);
    assert_eq!(c.mode, Mode::Bulk);
    assert_eq!(c.batch.max_events, 1000);
    assert_eq!(c.batch.max_bytes, 5 * 1024 * 1024);
    assert_eq!(c.request.concurrency, 4);
    assert_eq!(c.compression, Compression::None);
    assert!(c.check().is_empty(), "{:?}", c.check());
}

#[test]
fn canarytrace_style_values() {
    let c = parse(
        r#"
endpoints = "https://es1:9200, https://es2:9200/prefix"
auth = "elastic:s3cr:et"
batch.max_bytes = "10mb"
"#,
    )
    .unwrap();
    assert_eq!(c.endpoints.0.len(), 2);
    assert_eq!(
        c.auth,
        Auth::Basic {
            user: "elastic".into(),
            password: Secret("s3cr:et".into())
        }
    );
    assert_eq!(c.batch.max_bytes, 10 * 1024 * 1024);
    assert_eq!(
        parse("endpoints = [\"http://a:9200\"]\nauth = \"\"")
            .unwrap()
            .auth,
        Auth::None
    );
}

#[test]
fn secrets_never_show() {
    let c = parse(
        "endpoints = [\"http://bob:hunter2@es:9200\"]\nauth = { api_key = \"c2VjcmV0a2V5\" }",
    )
    .unwrap();
    let shown = format!("{c:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("c2VjcmV0a2V5"),
        "{shown}"
    );
    // Credentials in a URL and in `auth` at once are refused, without quoting them.
    let problems = c.check();
    assert!(
        problems.iter().any(|(k, _)| *k == "endpoints"),
        "{problems:?}"
    );
    assert!(!format!("{problems:?}").contains("hunter2"));
    for bad in [
        "auth = \"justapassword\"",
        "auth = { user = \"u\" }",
        "auth = { password = \"hunter2\" }",
        "auth = { user = \"u\", password = \"hunter2\", api_key = \"k\" }",
        "auth = { user = \"u\", password = true }",
        "auth = { user = \"u\", pasword = \"hunter2\" }",
    ] {
        let (_, message) = parse(&format!("endpoints = \"http://a:9200\"\n{bad}")).unwrap_err();
        assert!(
            !message.contains("hunter2") && !message.contains("justapassword"),
            "{bad}: {message}"
        );
    }
}

#[test]
fn credentials_move_from_the_url_to_basic_auth() {
    let c = parse("endpoints = \"https://el%40stic:p%3Ass@es:9200/x/\"").unwrap();
    let resolved = c.resolve_endpoints().unwrap();
    assert_eq!(resolved.urls[0].as_str(), "https://es:9200/x/");
    assert_eq!(
        resolved.url_auth,
        Some(Auth::Basic {
            user: "el@stic".into(),
            password: Secret("p:ss".into())
        })
    );
    assert_eq!(redact("https://u:p@h:1/"), "https://***@h:1/");
}

#[test]
fn user_info_never_shows_with_or_without_a_scheme() {
    for (text, shown) in [
        ("user:pass@host:9200", "***@host:9200"),
        ("https://user:pass@host:9200/x", "https://***@host:9200/x"),
        ("http://u:p@ss@host", "http://***@host"),
        ("http://user:pa/ss@host:9200", "http://***@host:9200"),
        ("https://host:9200/?api_key=k", "https://host:9200/?…"),
        ("host:9200", "host:9200"),
        ("user:pa://ss@host:9200", "***@host:9200"),
    ] {
        assert_eq!(redact(text), shown, "{text}");
    }
    for endpoints in [
        "'user:pass@host:9200'",
        "'ftp://user:pass@host'",
        "'http://user:pass@'",
        "'http://user:pass@host:9200/?q=1'",
        "['http://a:9200', 'user:pass@b:9200']",
        "'user:pass://x@b:9200'",
    ] {
        let c = parse(&format!("endpoints = {endpoints}")).unwrap();
        let problems = format!("{:?} {:?}", c.check(), c);
        assert!(!problems.contains("pass"), "{endpoints}: {problems}");
        assert!(problems.contains("endpoints"), "{endpoints}: {problems}");
    }
    let c = parse("endpoints = 'elastic:pass@es:9200'").unwrap();
    assert!(
        c.check()[0]
            .1
            .contains("has no scheme: write http://***@es:9200"),
        "{:?}",
        c.check()
    );
}

#[test]
fn bad_values_are_reported_by_key() {
    let c = parse(
        r#"
endpoints = ["ftp://x", "not a url"]
index = "Rum-%Y"
batch.max_events = 0
request.concurrency = 0
retry.initial_backoff_ms = 500
retry.max_backoff_ms = 100
dead_letter.path = "/no/such/dir/dead.ndjson"
tls.ca_file = "/no/such/ca.pem"
"#,
    )
    .unwrap();
    let keys: Vec<&str> = c.check().iter().map(|(k, _)| *k).collect();
    for key in [
        "endpoints",
        "index",
        "batch.max_events",
        "request.concurrency",
        "retry.max_backoff_ms",
        "dead_letter.path",
        "tls.ca_file",
    ] {
        assert!(keys.contains(&key), "{key} missing from {keys:?}");
    }
    assert!(parse("endpoints = \"http://a:9200\"\nmode = \"stream\"").is_err());
    assert_eq!(
        parse("endpoints = \"http://a:9200\"\nbogus = 1")
            .unwrap_err()
            .0,
        "bogus"
    );
    assert_eq!(parse("endpoints = \"\"").unwrap().check()[0].0, "endpoints");
}

#[test]
fn durations_past_a_day_are_refused_by_key() {
    // `retry.max_duration_secs` near i64::MAX ("retry for ever") made the
    // delivery task panic on `Instant + Duration`, losing its batch.
    let c = parse(
        r#"
endpoints = "http://a:9200"
batch.timeout_ms = 86400001
retry.max_duration_secs = 9223372036854775807
retry.shutdown_deadline_secs = 86401
retry.max_backoff_ms = 86400001
"#,
    )
    .unwrap();
    let keys: Vec<&str> = c.check().iter().map(|(k, _)| *k).collect();
    assert_eq!(
        keys,
        [
            "batch.timeout_ms",
            "retry.max_backoff_ms",
            "retry.max_duration_secs",
            "retry.shutdown_deadline_secs"
        ]
    );
    let at_most = parse(
        "endpoints = \"http://a:9200\"\nbatch.timeout_ms = 86400000\nretry.max_duration_secs = 86400",
    )
    .unwrap();
    assert!(at_most.check().is_empty(), "{:?}", at_most.check());
}

#[test]
fn a_shutdown_deadline_not_below_the_global_timeout_is_refused() {
    let pipeline = |global: &str, deadline: u64| {
        let text = format!(
            r#"{global}
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:0"
[sinks.es]
type = "elasticsearch"
inputs = ["beacons"]
endpoints = "http://localhost:9200"
retry.shutdown_deadline_secs = {deadline}
"#
        );
        crate::config::load_str("test.toml", &text, &|_| None)
    };
    let Err(errors) = pipeline("", 10) else {
        panic!("10 s against the default 10 s was accepted");
    };
    assert!(
        errors
            .iter()
            .any(|e| e.key.as_deref() == Some("retry.shutdown_deadline_secs")
                && e.message.contains("shutdown_timeout_secs (10)")),
        "{errors:?}"
    );
    assert!(pipeline("", 9).is_ok());
    assert!(pipeline("shutdown_timeout_secs = 70", 60).is_ok());
    assert!(pipeline("shutdown_timeout_secs = 30", 60).is_err());
}

#[test]
fn managed_templates_never_match_every_index_of_the_cluster() {
    // A name that starts with a field or a date has the index pattern `*`:
    // the template (with its ILM delete policy) would apply to every new
    // index of the cluster, not only to this sink's.
    for index in ["{{ rum.type }}-%Y.%m.%d", "%Y.%m.%d", "{{ service.name }}"] {
        let text = format!(
            "endpoints = \"http://localhost:9200\"\nmanage_template = true\nilm_retention_days = 7\nindex = \"{index}\"\nindex_allowed_values.\"service.name\" = [\"shop\"]"
        );
        let c = parse(&text).unwrap();
        let problems = c.check();
        assert!(
            problems
                .iter()
                .any(|(key, message)| *key == "index" && message.contains("every index")),
            "{index}: {problems:?}"
        );
        // Without templates the name alone is fine.
        let c =
            parse(&text.replace("manage_template = true\nilm_retention_days = 7\n", "")).unwrap();
        assert!(c.check().is_empty(), "{index}: {:?}", c.check());
    }
    let c = parse("endpoints = \"http://localhost:9200\"\nmanage_template = true\nindex = \"rum-{{ rum.type }}-%Y.%m.%d\"").unwrap();
    assert!(c.check().is_empty(), "{:?}", c.check());
}

#[test]
fn dead_letter_max_bytes_takes_a_size_and_needs_a_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.ndjson");
    let c = parse(&format!(
        "endpoints = \"http://a:9200\"\ndead_letter.path = {:?}\ndead_letter.max_bytes = \"900mb\"",
        path.display().to_string()
    ))
    .unwrap();
    assert_eq!(c.dead_letter.max_bytes, 900 * 1024 * 1024);
    assert!(c.check().is_empty(), "{:?}", c.check());
    assert_eq!(
        parse("endpoints = \"http://a:9200\"")
            .unwrap()
            .dead_letter
            .max_bytes,
        0,
        "no limit by default"
    );
    let no_path = parse("endpoints = \"http://a:9200\"\ndead_letter.max_bytes = 1000").unwrap();
    assert_eq!(no_path.check()[0].0, "dead_letter.max_bytes");
}

/// OpenSearch has no ILM: with `engine = "opensearch"` a retention would
/// never be applied (the policy request is refused), so it is refused when
/// the config loads, saying what to use instead. `auto` finds out at run
/// time (the sink says so in the log).
#[test]
fn ilm_retention_is_refused_on_opensearch() {
    let base = "endpoints = \"http://localhost:9200\"\nmanage_template = true\n";
    let c = parse(&format!(
        "{base}engine = \"opensearch\"\nilm_retention_days = 30"
    ))
    .unwrap();
    let problems = c.check();
    let (_, message) = problems
        .iter()
        .find(|(k, _)| *k == "ilm_retention_days")
        .unwrap_or_else(|| panic!("{problems:?}"));
    assert!(message.contains("OpenSearch has no ILM"), "{message}");
    assert!(message.contains("ISM"), "{message}");
    for fine in [
        "engine = \"opensearch\"\nilm_retention_days = 0",
        "engine = \"elasticsearch\"\nilm_retention_days = 30",
        "engine = \"auto\"\nilm_retention_days = 30",
        "ilm_retention_days = 30",
    ] {
        let c = parse(&format!("{base}{fine}")).unwrap();
        assert!(c.check().is_empty(), "{fine}: {:?}", c.check());
    }
    assert_eq!(parse(base).unwrap().engine, Engine::Auto);
    assert!(parse(&format!("{base}engine = \"solr\"")).is_err());
}

/// Two deployments of one pipeline file on one cluster (staging and
/// production, with their own `index_prefix`) had the same template names,
/// from the sink id: the second left the first's alone and its indices
/// got no mappings. `template_name` names them apart, from the environment.
#[test]
fn template_name_names_what_manage_template_installs() {
    let c = parse(
        "endpoints = \"http://a:9200\"\nmanage_template = true\nilm_retention_days = 7\ntemplate_name = \"rum-staging\"",
    )
    .unwrap();
    assert!(c.check().is_empty(), "{:?}", c.check());
    let router = c.router().unwrap();
    let set = super::templates::TemplateSet::for_sink(&c, "elasticsearch", &router);
    let paths: Vec<String> = set
        .requests(super::templates::Flavour::Elasticsearch)
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    assert_eq!(
        paths,
        [
            "_component_template/rum-staging-mappings",
            "_ilm/policy/rum-staging",
            "_index_template/rum-staging"
        ]
    );
    for bad in [
        "",
        "Rum",
        "rum staging",
        "_rum",
        "rum*",
        "a/b",
        "rum%zz",
        "..",
        &"x".repeat(247),
    ] {
        let c = parse(&format!(
            "endpoints = \"http://a:9200\"\nmanage_template = true\ntemplate_name = {bad:?}"
        ))
        .unwrap();
        assert_eq!(
            c.check().iter().map(|(k, _)| *k).collect::<Vec<_>>(),
            ["template_name"],
            "{bad:?}"
        );
    }
}
