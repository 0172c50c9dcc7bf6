//! The `elasticsearch` sink's configuration: every key with its default,
//! secrets that never show, endpoints whose credentials move to `auth`,
//! and the checks `validate` reports by key.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::config::{byte_size, CheckConfig};
use crate::http::limits::MAX_TIMEOUT_SECS;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use url::Url;

use super::request::Credentials;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchConfig {
    /// Base URLs, used round robin. A path prefix is kept (proxies, Quickwit's
    /// `/api/v1/_elastic`). One string may list several, comma-separated, so a
    /// single variable (`ELASTIC_CLUSTER`) can name a whole cluster.
    /// Credentials in a URL (`https://user:pass@host`) are taken out and used
    /// as basic auth.
    pub endpoints: Endpoints,
    /// `"user:password"` (Canarytrace's ELASTIC_HTTP_AUTH; empty = none),
    /// `{ user, password }`, or `{ api_key }` (the base64 `id:key` Kibana
    /// shows, or `id:key` itself).
    #[serde(default)]
    pub auth: Auth,
    #[serde(default)]
    pub tls: TlsConfig,
    /// `bulk`: dated indices. `data_stream`: names without a date, which
    /// Elasticsearch rolls over by itself.
    #[serde(default)]
    pub mode: Mode,
    /// Index name template: literal text, strftime conversions (`%Y %m %d
    /// %H %j %G %V`, server time at batch start) and `{{ field }}` for
    /// `rum.type`, `event.dataset`, `csp.format`, `service.name`,
    /// `service.environment`. Unset: routed by event kind under `index_prefix`.
    #[serde(default)]
    pub index: Option<String>,
    /// Prefix of the default index names (Canarytrace's INDEX_PREFIX):
    /// `{prefix}.metrics-%Y.%m.%d`, `{prefix}.csp.uri-…`, `{prefix}.csp.reporting-…`.
    #[serde(default = "default_index_prefix")]
    pub index_prefix: String,
    /// What a templated field becomes when it is missing or not allowed.
    #[serde(default = "default_index_fallback")]
    pub index_fallback: String,
    /// Values `{{ service.name }}` / `{{ service.environment }}` may take in
    /// index names (required when they are used); others become `index_fallback`.
    #[serde(default)]
    pub index_allowed_values: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub batch: BatchConfig,
    #[serde(default)]
    pub request: RequestConfig,
    /// `none` or `gzip` (request bodies).
    #[serde(default)]
    pub compression: Compression,
    #[serde(default)]
    pub retry: RetryConfig,
    #[serde(default)]
    pub dead_letter: DeadLetterConfig,
    /// Install the index (or data stream) template and its mappings at
    /// startup, before the first document is written.
    #[serde(default)]
    pub manage_template: bool,
    /// With `manage_template`: also install an ILM policy that deletes
    /// indices this many days old (data streams also roll over daily or at
    /// 50 GB per primary shard) and attach it in the index template. 0 = no
    /// policy: OpenSearch and engines without ILM, or retention kept elsewhere.
    #[serde(default)]
    pub ilm_retention_days: u32,
    /// Which engine's templates `manage_template` installs: `auto` asks
    /// `GET /`, and, when that does not say, installs Elasticsearch's and
    /// turns to OpenSearch's if the engine has no `flattened` type.
    #[serde(default)]
    pub engine: Engine,
    /// The name of the index template and ILM policy `manage_template`
    /// installs (the component template is `<name>-mappings`); default
    /// `rum-pipeline-<sink id>`. Pipelines sharing a cluster need their own.
    #[serde(default)]
    pub template_name: Option<String>,
    /// Create the dated indices this many minutes before they are first
    /// written to (tomorrow's shortly before UTC midnight; today's at
    /// startup), for engines that do not create an index on write
    /// (`action.auto_create_index: false`). 0 = never: the engine creates
    /// them. Bulk mode only (data streams are created by their template).
    #[serde(default)]
    pub create_indices_ahead_minutes: u32,
    /// `GET /` at startup to log the engine and version (never blocks startup).
    #[serde(default = "crate::config::default_true")]
    pub healthcheck: bool,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Bulk,
    DataStream,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    #[default]
    Auto,
    Elasticsearch,
    Opensearch,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    #[default]
    None,
    Gzip,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) to trust besides the built-in roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Verify the server's certificate. Turning it off is for tests only.
    #[serde(default = "crate::config::default_true")]
    pub verify_certificates: bool,
}

impl Default for TlsConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            verify_certificates: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Documents per bulk request (Canarytrace's MIN_QUEUE_SIZE).
    #[serde(default = "default_max_events")]
    pub max_events: usize,
    /// Bulk body size that closes a batch: bytes or `"5mb"`.
    #[serde(
        default = "default_max_bytes",
        deserialize_with = "byte_size::deserialize"
    )]
    pub max_bytes: usize,
    /// A batch is sent at most this long after its first event (Canarytrace's STORE_BULK_INTERVAL).
    #[serde(default = "default_batch_timeout_ms")]
    pub timeout_ms: u64,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_bytes: default_max_bytes(),
            timeout_ms: default_batch_timeout_ms(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestConfig {
    /// Time for one HTTP request, answer included (Canarytrace's ELASTIC_TIMEOUT).
    #[serde(default = "default_request_timeout_ms")]
    pub timeout_ms: u64,
    /// Bulk requests in flight (or waiting to retry) at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

impl Default for RequestConfig {
    fn default() -> Self {
        Self {
            timeout_ms: default_request_timeout_ms(),
            concurrency: default_concurrency(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// First wait before a retry; doubles each time, with jitter.
    #[serde(default = "default_initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Longest wait between two tries.
    #[serde(default = "default_max_backoff_ms")]
    pub max_backoff_ms: u64,
    /// A batch still failing this long after its first try is dead-lettered.
    #[serde(default = "default_max_duration_secs")]
    pub max_duration_secs: u64,
    /// After shutdown begins, what is not delivered this late is dead-lettered
    /// (keep it below the global `shutdown_timeout_secs`).
    #[serde(default = "default_shutdown_deadline_secs")]
    pub shutdown_deadline_secs: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            initial_backoff_ms: default_initial_backoff_ms(),
            max_backoff_ms: default_max_backoff_ms(),
            max_duration_secs: default_max_duration_secs(),
            shutdown_deadline_secs: default_shutdown_deadline_secs(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// NDJSON file that receives refused or undeliverable documents. Unset:
    /// they are counted and logged as dropped.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The file stops growing at this size (bytes or `"900mb"`): further
    /// dead letters are dropped, counted and logged, and /health says so.
    /// Keep it below the volume's size: Kubernetes evicts a pod whose
    /// emptyDir passes its sizeLimit at once. 0: no limit.
    #[serde(default, deserialize_with = "byte_size::deserialize")]
    pub max_bytes: usize,
}

fn default_index_prefix() -> String {
    "c.rum".to_owned()
}
fn default_index_fallback() -> String {
    "other".to_owned()
}
fn default_max_events() -> usize {
    1000
}
fn default_max_bytes() -> usize {
    5 * 1024 * 1024
}
fn default_batch_timeout_ms() -> u64 {
    1000
}
fn default_request_timeout_ms() -> u64 {
    30_000
}
fn default_concurrency() -> usize {
    4
}
fn default_initial_backoff_ms() -> u64 {
    200
}
fn default_max_backoff_ms() -> u64 {
    10_000
}
fn default_max_duration_secs() -> u64 {
    300
}
fn default_shutdown_deadline_secs() -> u64 {
    5
}

/// A secret string: never shown by `Debug`, never echoed in errors.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub(super) String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SecretVisitor;
        impl Visitor<'_> for SecretVisitor {
            type Value = Secret;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            // Numbers are taken as text rather than quoted back in an error.
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Secret, E> {
                Err(E::custom("must be a string (value not shown)"))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Secret, E> {
                Err(E::custom("must be a string (value not shown)"))
            }
        }
        deserializer.deserialize_any(SecretVisitor)
    }
}

/// How the sink authenticates.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    #[default]
    None,
    Basic {
        user: String,
        password: Secret,
    },
    ApiKey(Secret),
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Auth::None => f.write_str("None"),
            Auth::Basic { user, .. } => write!(f, "Basic {{ user: {user:?}, password: *** }}"),
            Auth::ApiKey(_) => f.write_str("ApiKey(***)"),
        }
    }
}

impl Auth {
    fn from_user_pass(text: &str) -> Result<Auth, String> {
        if text.is_empty() {
            return Ok(Auth::None);
        }
        match text.split_once(':') {
            Some((user, password)) if !user.is_empty() => Ok(Auth::Basic {
                user: user.to_owned(),
                password: Secret(password.to_owned()),
            }),
            _ => Err("a string must be `user:password` (value not shown)".to_owned()),
        }
    }

    pub(super) fn credentials(&self) -> Option<Credentials> {
        match self {
            Auth::None => None,
            Auth::Basic { user, password } => {
                Some(Credentials::Basic(user.clone(), password.0.clone()))
            }
            Auth::ApiKey(key) => Some(match key.0.split_once(':') {
                Some((id, secret)) => Credentials::ApiKey(id.to_owned(), secret.to_owned()),
                None => Credentials::EncodedApiKey(key.0.clone()),
            }),
        }
    }
}

impl<'de> Deserialize<'de> for Auth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AuthVisitor;
        impl<'de> Visitor<'de> for AuthVisitor {
            type Value = Auth;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"user:password\", { user, password } or { api_key }")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Auth, E> {
                Auth::from_user_pass(v).map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Auth, A::Error> {
                let (mut user, mut password, mut api_key) =
                    (None::<String>, None::<Secret>, None::<Secret>);
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "user" => user = Some(map.next_value::<Secret>()?.0),
                        "password" => password = Some(map.next_value()?),
                        "api_key" => api_key = Some(map.next_value()?),
                        other => {
                            return Err(de::Error::unknown_field(
                                other,
                                &["user", "password", "api_key"],
                            ))
                        }
                    }
                }
                let user = user.filter(|u| !u.is_empty());
                let password = password.filter(|p| !p.0.is_empty());
                let api_key = api_key.filter(|k| !k.0.is_empty());
                match (user, password, api_key) {
                    (None, None, None) => Ok(Auth::None),
                    (Some(user), Some(password), None) => Ok(Auth::Basic { user, password }),
                    (None, None, Some(key)) => Ok(Auth::ApiKey(key)),
                    (Some(_), None, None) => Err(de::Error::custom("`user` needs a `password`")),
                    (None, Some(_), None) => Err(de::Error::custom("`password` needs a `user`")),
                    _ => Err(de::Error::custom(
                        "use either `user`/`password` or `api_key`, not both",
                    )),
                }
            }
        }
        deserializer.deserialize_any(AuthVisitor)
    }
}

/// Endpoint URLs as written (they may hold credentials, so `Debug` redacts).
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoints(pub Vec<String>);

impl fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.0.iter().map(|e| redact(e)))
            .finish()
    }
}

impl<'de> Deserialize<'de> for Endpoints {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EndpointsVisitor;
        impl<'de> Visitor<'de> for EndpointsVisitor {
            type Value = Endpoints;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a URL or a list of URLs")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Endpoints, E> {
                Ok(Endpoints(split_urls(v)))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Endpoints, A::Error> {
                let mut all = Vec::new();
                while let Some(entry) = seq.next_element::<String>()? {
                    all.extend(split_urls(&entry));
                }
                Ok(Endpoints(all))
            }
        }
        deserializer.deserialize_any(EndpointsVisitor)
    }
}

fn split_urls(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An endpoint for logs and errors, whatever it looks like — a URL, text
/// without a scheme (`user:pass@host:9200`), something unparsable: anything
/// before the last `@` after the scheme is user info and becomes `***`, and a
/// query or fragment (which may carry a key) is cut.
pub fn redact(text: &str) -> String {
    // A scheme is letters, digits, `+-.` before `://`: a password holding
    // `://` (`user:pa://ss@host`) must not pass for one.
    let start = match text.find("://") {
        Some(i)
            if text[..i].starts_with(|c: char| c.is_ascii_alphabetic())
                && text[..i]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            i + 3
        }
        _ => 0,
    };
    let (scheme, rest) = text.split_at(start);
    let (hidden, rest) = match rest.rfind('@') {
        Some(at) => ("***@", &rest[at + 1..]),
        None => ("", rest),
    };
    let (rest, cut) = match rest.find(['?', '#']) {
        Some(i) => (&rest[..i], "?…"),
        None => (rest, ""),
    };
    format!("{scheme}{hidden}{rest}{cut}")
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Endpoints parsed, without user info, and the credentials found in them.
pub(super) struct ResolvedEndpoints {
    pub(super) urls: Vec<Url>,
    pub(super) url_auth: Option<Auth>,
}

impl ElasticsearchConfig {
    pub(super) fn resolve_endpoints(&self) -> Result<ResolvedEndpoints, String> {
        if self.endpoints.0.is_empty() {
            return Err("at least one endpoint URL is needed".into());
        }
        let mut urls = Vec::new();
        let mut url_auth: Option<Auth> = None;
        for text in &self.endpoints.0 {
            let shown = redact(text);
            if !text.contains("://") {
                return Err(format!(
                    "`{shown}` has no scheme: write http://{shown} or https://{shown}"
                ));
            }
            let mut url = Url::parse(text).map_err(|e| format!("`{shown}` is not a URL ({e})"))?;
            if !matches!(url.scheme(), "http" | "https") {
                return Err(format!("`{shown}`: only http and https are supported"));
            }
            if url.host_str().is_none_or(str::is_empty) {
                return Err(format!("`{shown}` has no host"));
            }
            if url.query().is_some() || url.fragment().is_some() {
                return Err(format!("`{shown}`: no query or fragment allowed"));
            }
            if !url.username().is_empty() {
                let found = Auth::Basic {
                    user: percent_decode(url.username()),
                    password: Secret(percent_decode(url.password().unwrap_or(""))),
                };
                if url_auth.as_ref().is_some_and(|a| *a != found) {
                    return Err("endpoints carry different credentials; use `auth` instead".into());
                }
                url_auth = Some(found);
                let _ = url.set_username("");
                let _ = url.set_password(None);
            }
            urls.push(url);
        }
        if url_auth.is_some() && self.auth != Auth::None {
            return Err("credentials are both in an endpoint URL and in `auth`; keep one".into());
        }
        Ok(ResolvedEndpoints { urls, url_auth })
    }
}

impl CheckConfig for ElasticsearchConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if let Err(e) = self.resolve_endpoints() {
            problems.push(("endpoints", e));
        }
        match self.router() {
            Err((key, message)) => problems.push((key, message)),
            Ok(router) => {
                if let Err(e) = self.index_plan(&router) {
                    problems.push(("create_indices_ahead_minutes", e));
                }
                if self.manage_template {
                    if let Err(e) = router.check_patterns() {
                        let key = if self.index.is_some() {
                            "index"
                        } else {
                            "index_prefix"
                        };
                        problems.push((key, e));
                    }
                }
            }
        }
        if self.create_indices_ahead_minutes > 24 * 60 {
            problems.push((
                "create_indices_ahead_minutes",
                "at most 1440 (a day)".into(),
            ));
        }
        if let Some(path) = &self.tls.ca_file {
            if !path.is_file() {
                problems.push(("tls.ca_file", format!("cannot read `{}`", path.display())));
            }
        }
        if !(1..=100_000).contains(&self.batch.max_events) {
            problems.push(("batch.max_events", "must be between 1 and 100000".into()));
        }
        if let Some(name) = &self.template_name {
            // Without manage_template it still names what `rum-pipeline
            // templates` writes for an install by hand.
            if let Err(e) = check_template_name(name) {
                problems.push(("template_name", e));
            }
        }
        if self.ilm_retention_days > 0 && !self.manage_template {
            problems.push((
                "ilm_retention_days",
                "installs the ILM policy with the templates: set manage_template = true too".into(),
            ));
        } else if self.ilm_retention_days > 0 && self.engine == Engine::Opensearch {
            problems.push((
                "ilm_retention_days",
                "OpenSearch has no ILM: set it to 0 and delete old indices with an ISM policy (docs/deployment.md, section OpenSearch)".into(),
            ));
        }
        if self.batch.max_bytes < 1024 {
            problems.push(("batch.max_bytes", "must be at least 1kb".into()));
        }
        // Durations past a day are typos, and far enough ahead they overflow
        // the clock (`Instant + Duration` panics).
        let day_ms = MAX_TIMEOUT_SECS * 1000;
        for (key, value, max) in [
            ("batch.timeout_ms", self.batch.timeout_ms, day_ms),
            ("request.timeout_ms", self.request.timeout_ms, day_ms),
            (
                "retry.initial_backoff_ms",
                self.retry.initial_backoff_ms,
                day_ms,
            ),
            ("retry.max_backoff_ms", self.retry.max_backoff_ms, day_ms),
            (
                "retry.max_duration_secs",
                self.retry.max_duration_secs,
                MAX_TIMEOUT_SECS,
            ),
            (
                "retry.shutdown_deadline_secs",
                self.retry.shutdown_deadline_secs,
                MAX_TIMEOUT_SECS,
            ),
        ] {
            if value > max {
                problems.push((key, format!("must be at most {max} (a day)")));
            }
        }
        if self.batch.timeout_ms == 0 {
            problems.push(("batch.timeout_ms", "must be at least 1".into()));
        }
        if self.request.timeout_ms == 0 {
            problems.push(("request.timeout_ms", "must be at least 1".into()));
        }
        if !(1..=1024).contains(&self.request.concurrency) {
            problems.push(("request.concurrency", "must be between 1 and 1024".into()));
        }
        if self.retry.initial_backoff_ms == 0 {
            problems.push(("retry.initial_backoff_ms", "must be at least 1".into()));
        }
        if self.retry.max_backoff_ms < self.retry.initial_backoff_ms {
            problems.push((
                "retry.max_backoff_ms",
                "must be at least retry.initial_backoff_ms".into(),
            ));
        }
        if let Some(path) = &self.dead_letter.path {
            if let Err(problem) = super::dead_letter::check_writable(path) {
                problems.push(("dead_letter.path", problem));
            }
        }
        if self.dead_letter.max_bytes > 0 && self.dead_letter.path.is_none() {
            problems.push((
                "dead_letter.max_bytes",
                "limits the dead-letter file: set dead_letter.path too".into(),
            ));
        }
        problems
    }
}

/// A name Elasticsearch and OpenSearch take for a template and an ILM
/// policy, with `-mappings` appended for the component template: lower
/// case, none of `\ / * ? " < > | , # :` or spaces, not starting with `_`,
/// `-` or `+`, not `.`/`..`, at most 255 bytes. Nor `%`: the name goes into
/// request paths as it is, where `%` starts an escape (`rum%zz` failed at
/// run time, every install retried).
pub fn check_template_name(name: &str) -> Result<(), String> {
    const MAX: usize = 255 - "-mappings".len();
    let bad = name
        .chars()
        .find(|c| c.is_uppercase() || c.is_whitespace() || r#"\/*?"<>|,#:%"#.contains(*c));
    if name.is_empty() || name == "." || name == ".." {
        Err(format!("`{name}` is not a template name"))
    } else if name.starts_with(['_', '-', '+']) {
        Err(format!(
            "`{name}`: a template name cannot start with `_`, `-` or `+`"
        ))
    } else if let Some(c) = bad {
        Err(format!(
            "`{name}`: a template name is lower case, without spaces or any of \\ / * ? \" < > | , # : % ({c:?})"
        ))
    } else if name.len() > MAX {
        Err(format!(
            "a template name is at most {MAX} bytes (`-mappings` is added to it)"
        ))
    } else {
        Ok(())
    }
}
