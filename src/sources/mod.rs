//! Sources: HTTP intakes that turn browser requests into events. Every source
//! is served by the shared listener of its `address`; what they have in common
//! (address, TLS, CORS, limits, client IP, access log) is `HttpSourceOptions`,
//! and how a request flows through one is `http_source` (each source is its
//! config plus an `HttpSource`).

pub mod beacon_decoder;
pub mod csp;
pub mod csp_report;
pub mod decode_error;
pub mod elastic_apm_decoder;
pub mod elastic_apm_rum;
pub mod faro;
pub mod faro_decoder;
pub mod http_source;
mod json_scan;
mod json_tree;
#[cfg(test)]
mod kept_check;
/// An experiment, not product code: a typed decode of the beacon
/// (`bench/experiments/typed_decode.rs`), built only with the `experiments`
/// feature for the bench targets that measure it.
#[cfg(feature = "experiments")]
#[doc(hidden)]
#[path = "../../bench/experiments/typed_decode.rs"]
pub mod proto_decode;
pub mod rum_beacon;
pub mod web_vitals;
pub mod web_vitals_decoder;

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::Deserialize;

use crate::config::{decode, unknown_type, CheckConfig};
use crate::http::intake::IntakeOptions;
use crate::http::rate_limit::RateLimitOptions;
use crate::http::server::Route;
pub use crate::http::tls::TlsOptions;
use crate::telemetry::ComponentMetrics;
use crate::topology::buffer::Fanout;

/// `word` as the shared static value of `table` that holds it, else an
/// owned one: the words a decoder writes into many events (kinds, vital
/// names) then cost no `String` allocated per event and freed elsewhere.
pub(crate) fn static_word(
    table: &'static [serde_json::Value],
    word: &'static str,
) -> crate::event::FieldValue {
    match table.iter().find(|v| v.as_str() == Some(word)) {
        Some(v) => crate::event::FieldValue::Static(v),
        None => serde_json::Value::from(word).into(),
    }
}

/// A source's `max_event_age_secs` (`max_report_age_secs`) in milliseconds. Any `u64` is taken:
/// one past `i64::MAX` (`as i64` made 2^64 − 1 into −1) no longer turns the
/// oldest time allowed into one after the receive time, where every event
/// with a time panicked its request in `clamp` (min above max).
pub(crate) fn age_secs_to_ms(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX).saturating_mul(1000)
}

/// Whether `body` is one JSON value in UTF-8, read with the decoders' own
/// reader and their default string and depth limits, keeping nothing.
/// Not used by any source: `examples/*_instructions` measure it as the
/// floor under each decoder's cost (no decode can read a body for less),
/// which bounds what the decode-cost targets can ask for.
pub fn read_json_only(body: &[u8]) -> bool {
    let limits = beacon_decoder::Limits::new(16 * 1024, 16);
    json_scan::read_only(body, &limits)
}

/// A source's `path` key: it must start with `/`.
pub(crate) fn check_path(key: &'static str, path: &str) -> Option<(&'static str, String)> {
    (!path.starts_with('/')).then(|| (key, format!("`{path}` must start with `/`")))
}

/// The deepest `max_json_depth` a source takes (the parser recurses that
/// deep); the index template's flattened fields take as deep.
pub const MAX_JSON_DEPTH: usize = 100;

/// The limits every JSON source takes: counts and sizes of at least 1, a
/// nesting depth of at most `MAX_JSON_DEPTH`.
pub(crate) fn check_json_limits(
    counts: &[(&'static str, usize)],
    max_json_depth: usize,
) -> Vec<(&'static str, String)> {
    let mut problems: Vec<(&'static str, String)> = counts
        .iter()
        .filter(|(_, value)| *value == 0)
        .map(|(key, _)| (*key, "must be at least 1".to_owned()))
        .collect();
    if max_json_depth > MAX_JSON_DEPTH {
        problems.push((
            "max_json_depth",
            format!("must be at most {MAX_JSON_DEPTH}"),
        ));
    }
    problems
}

/// Options every HTTP source takes, next to its own.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpSourceOptions {
    /// Address to listen on. Sources naming the same address share one listener.
    #[serde(default = "default_address")]
    pub address: SocketAddr,
    /// Serve HTTPS on this address (browsers send Reporting API reports only to HTTPS).
    #[serde(default)]
    pub tls: Option<TlsOptions>,
    /// Origins allowed to send (CORS). `["*"]` allows any.
    #[serde(default = "default_origins")]
    pub allowed_origins: Vec<String>,
    /// `Access-Control-Max-Age` of preflight answers, in seconds.
    #[serde(default = "default_cors_max_age")]
    pub cors_max_age_secs: u64,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers are believed (CIDRs).
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    /// Largest body accepted, before and after decompression: bytes, or a
    /// string like `"1mb"` (Canarytrace's BODY_PARSER_LIMIT).
    #[serde(
        default = "default_max_body_bytes",
        deserialize_with = "crate::config::byte_size::deserialize"
    )]
    pub max_body_bytes: usize,
    /// How long a request may wait for room downstream before it is answered 503.
    #[serde(default = "default_send_timeout_ms")]
    pub send_timeout_ms: u64,
    /// One access-log line per request on stderr.
    #[serde(default = "crate::config::default_true")]
    pub access_log: bool,
    /// Per-client-IP rate limit of this source's POSTs (429 + `Retry-After`
    /// above it); none when absent.
    #[serde(default)]
    pub rate_limit: Option<RateLimitOptions>,
    /// What documents keep of the visitor's address in `client.ip`:
    /// `"truncated"` (IPv4 /24, IPv6 /48; the default), `"full"` or `"none"`.
    /// `geoip` sees the full address either way.
    #[serde(default)]
    pub client_ip: crate::privacy::ClientIpMode,
}

fn default_address() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 3000))
}
fn default_origins() -> Vec<String> {
    vec!["*".to_owned()]
}
fn default_cors_max_age() -> u64 {
    86_400
}
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
fn default_max_body_bytes() -> usize {
    DEFAULT_MAX_BODY_BYTES
}
fn default_send_timeout_ms() -> u64 {
    100
}

impl HttpSourceOptions {
    /// What the HTTP layer's `Intake` needs of these options.
    pub fn intake_options(&self) -> IntakeOptions {
        IntakeOptions {
            allowed_origins: self.allowed_origins.clone(),
            cors_max_age_secs: self.cors_max_age_secs,
            trusted_proxies: self.trusted_proxies.clone(),
            max_body_bytes: self.max_body_bytes,
            rate_limit: self.rate_limit.clone(),
        }
    }

    /// The keys above, as serde reads them: split off a source's table
    /// before its own part is read (each part denies unknown keys).
    pub fn keys() -> &'static [&'static str] {
        crate::config::struct_fields::<HttpSourceOptions>()
    }
}

impl CheckConfig for HttpSourceOptions {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.max_body_bytes == 0 {
            problems.push(("max_body_bytes", "must be at least 1".to_owned()));
        }
        for origin in &self.allowed_origins {
            if origin == "*" {
                continue;
            }
            let parsed = url::Url::parse(origin).map(|u| u.origin());
            match parsed {
                Ok(parsed) if parsed.is_tuple() => {
                    // Requests are matched against `Origin` as browsers write
                    // it: no path, no default port, the host in ASCII.
                    let sent = parsed.ascii_serialization();
                    if !sent.eq_ignore_ascii_case(origin.trim_end_matches('/')) {
                        problems.push((
                            "allowed_origins",
                            format!("`{origin}` is not an origin a browser sends: write `{sent}`"),
                        ));
                    }
                }
                _ => problems.push((
                    "allowed_origins",
                    format!("`{origin}` is not an origin like `https://www.example.com` (or `*`)"),
                )),
            }
        }
        if let Some(rate_limit) = &self.rate_limit {
            problems.extend(rate_limit.check());
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [
                ("tls.crt_file", &tls.crt_file),
                ("tls.key_file", &tls.key_file),
            ] {
                if !path.is_file() {
                    problems.push((key, format!("cannot read `{}`", path.display())));
                }
            }
        }
        problems
    }
}

#[derive(Debug, Clone)]
pub enum SourceConfig {
    RumBeacon(rum_beacon::RumBeaconConfig),
    Csp(csp::CspConfig),
    WebVitals(web_vitals::WebVitalsConfig),
    Faro(faro::FaroConfig),
    ElasticApmRum(elastic_apm_rum::ElasticApmRumConfig),
}

impl SourceConfig {
    pub const TYPES: &'static [&'static str] =
        &["rum_beacon", "csp", "web_vitals", "faro", "elastic_apm_rum"];

    pub fn parse(type_name: &str, table: toml::Table) -> Result<Self, (String, String)> {
        match type_name {
            "rum_beacon" => decode(table).map(SourceConfig::RumBeacon),
            "csp" => decode(table).map(SourceConfig::Csp),
            "web_vitals" => decode(table).map(SourceConfig::WebVitals),
            "faro" => decode(table).map(SourceConfig::Faro),
            "elastic_apm_rum" => decode(table).map(SourceConfig::ElasticApmRum),
            other => Err(unknown_type("source", other, Self::TYPES)),
        }
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            SourceConfig::RumBeacon(_) => "rum_beacon",
            SourceConfig::Csp(_) => "csp",
            SourceConfig::WebVitals(_) => "web_vitals",
            SourceConfig::Faro(_) => "faro",
            SourceConfig::ElasticApmRum(_) => "elastic_apm_rum",
        }
    }

    /// Builds the HTTP routes this source serves on its listener.
    pub fn build(&self, cx: SourceContext) -> anyhow::Result<Vec<Route>> {
        match self {
            SourceConfig::RumBeacon(config) => config.build(cx),
            SourceConfig::Csp(config) => config.build(cx),
            SourceConfig::WebVitals(config) => config.build(cx),
            SourceConfig::Faro(config) => config.build(cx),
            SourceConfig::ElasticApmRum(config) => config.build(cx),
        }
    }
}

impl CheckConfig for SourceConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        match self {
            SourceConfig::RumBeacon(c) => c.check(),
            SourceConfig::Csp(c) => c.check(),
            SourceConfig::WebVitals(c) => c.check(),
            SourceConfig::Faro(c) => c.check(),
            SourceConfig::ElasticApmRum(c) => c.check(),
        }
    }
}

/// What a source gets when it is built.
pub struct SourceContext {
    pub id: String,
    pub http: HttpSourceOptions,
    pub output: Fanout,
    pub metrics: ComponentMetrics,
}
