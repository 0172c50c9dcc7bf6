//! Loading a pipeline file: environment interpolation, TOML parsing, one typed
//! config per component (`deny_unknown_fields` everywhere), and the graph
//! checks. Every problem is collected, so `validate` can list them all, each
//! naming the file, the line, the component and the key.

pub mod byte_size;
pub mod graph;
pub mod interpolate;
mod locate;
mod options;
mod struct_fields;

pub use struct_fields::struct_fields;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use serde::de::DeserializeOwned;

use crate::http::server::ApiOptions;
use crate::sinks::elasticsearch::templates::TemplateSet;
use crate::sinks::SinkConfig;
use crate::sources::{HttpSourceOptions, SourceConfig};
use crate::transforms::TransformConfig;
use locate::{line_of_offset, locate, locate_top_level};
pub use options::{
    default_true, BufferOptions, GlobalOptions, DEFAULT_BUFFER_MAX_EVENTS,
    DEFAULT_SINK_BUFFER_MAX_BYTES, DEFAULT_TRANSFORM_BUFFER_MAX_BYTES,
};

/// The pipeline `cargo run` uses when no `--config` is given.
pub const EMBEDDED_DEFAULT: &str = include_str!("../../pipelines/dev.toml");

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: Option<usize>,
    /// `sources.beacons`, `sinks.es`...
    pub component: Option<String>,
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": ")?;
        if let Some(component) = &self.component {
            write!(f, "[{component}] ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "key `{key}`: ")?;
        }
        write!(f, "{}", self.message)
    }
}

#[derive(Debug, Clone)]
pub struct Component<T> {
    pub id: String,
    /// Upstreams: `id` (default output) or `id.output`.
    pub inputs: Vec<String>,
    pub buffer: BufferOptions,
    pub config: T,
    /// Where the component is declared, for later messages.
    pub line: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct SourceComponent {
    pub id: String,
    pub http: HttpSourceOptions,
    pub config: SourceConfig,
    pub line: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub file: String,
    pub global: GlobalOptions,
    pub sources: Vec<SourceComponent>,
    pub transforms: Vec<Component<TransformConfig>>,
    pub sinks: Vec<Component<SinkConfig>>,
    /// Components whose own config failed: the graph check does not repeat
    /// their error as "unknown input" downstream.
    pub broken_ids: Vec<String>,
}

/// A loaded pipeline plus the warnings that do not stop it.
#[derive(Debug)]
pub struct Loaded {
    pub config: PipelineConfig,
    pub warnings: Vec<String>,
}

pub fn load_file(path: &Path) -> Result<Loaded, Vec<ConfigError>> {
    let name = path.display().to_string();
    let error = |line: Option<usize>, message: String| {
        vec![ConfigError {
            file: name.clone(),
            line,
            component: None,
            key: None,
            message,
        }]
    };
    let bytes = std::fs::read(path)
        .map_err(|e| error(None, format!("cannot read the pipeline file: {e}")))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        // The line, so that one byte of Latin-1 is found in a long file.
        let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
        error(
            Some(line),
            "the pipeline file is not UTF-8 (saved in another encoding, such as Latin-1?): save it as UTF-8".to_owned(),
        )
    })?;
    load_str(&name, &text, &|var| std::env::var(var).ok())
}

/// Parses and checks a pipeline text. `file` is only used in messages.
pub fn load_str(
    file: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Loaded, Vec<ConfigError>> {
    let error = |line: Option<usize>, message: String| ConfigError {
        file: file.to_owned(),
        line,
        component: None,
        key: None,
        message,
    };
    // A byte order mark (Windows editors write one) is not part of the
    // first line: that line may be a comment, which is not interpolated.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = interpolate::interpolate(text, env).map_err(|errors| {
        errors
            .into_iter()
            .map(|(line, message)| error(Some(line), message))
            .collect::<Vec<_>>()
    })?;
    let mut doc: toml::Table = toml::from_str(&text).map_err(|e| {
        let line = e.span().map(|span| line_of_offset(&text, span.start));
        vec![error(line, format!("invalid TOML: {}", e.message()))]
    })?;

    let mut errors = Vec::new();
    let mut parser = Parser {
        file,
        text: &text,
        errors: &mut errors,
    };
    let sources_table = parser.take_table(&mut doc, "sources");
    let transforms_table = parser.take_table(&mut doc, "transforms");
    let sinks_table = parser.take_table(&mut doc, "sinks");
    let global = match decode::<GlobalOptions>(doc) {
        Ok(global) => {
            for (key, message) in global.http.check() {
                parser.push(None, Some(&format!("http.{key}")), message);
            }
            Some(global)
        }
        Err((key, message)) => {
            // The component tables were taken out before the rest was decoded, so
            // serde's list of the keys it expected lacks them: `[source.beacons]`
            // must be told about `sources`, not only about the global keys.
            let message = if key.contains('.') {
                message
            } else {
                message.replacen(
                    "expected one of ",
                    "expected one of `sources`, `transforms`, `sinks`, ",
                    1,
                )
            };
            parser.push(None, Some(&key), message);
            None
        }
    };

    let mut broken_ids = Vec::new();
    let mut sources = Vec::new();
    for (id, table) in sources_table {
        let source = parser
            .component_table("sources", &id, table)
            .and_then(|table| parser.source(&id, table));
        match source {
            Some(source) => sources.push(source),
            None => broken_ids.push(id),
        }
    }
    let mut transforms = Vec::new();
    for (id, table) in transforms_table {
        let transform = parser
            .component_table("transforms", &id, table)
            .and_then(|table| parser.downstream("transforms", &id, table, TransformConfig::parse));
        match transform {
            Some(c) => transforms.push(c),
            None => broken_ids.push(id),
        }
    }
    let mut sinks = Vec::new();
    for (id, table) in sinks_table {
        let sink = parser
            .component_table("sinks", &id, table)
            .and_then(|table| parser.downstream("sinks", &id, table, SinkConfig::parse));
        match sink {
            Some(c) => sinks.push(c),
            None => broken_ids.push(id),
        }
    }

    let global = global.unwrap_or_default();
    // One body must fit in the budget of all bodies in flight.
    for source in &sources {
        if source.http.max_body_bytes > global.http.max_body_bytes_in_flight {
            parser.push(
                Some(("sources", &source.id)),
                Some("max_body_bytes"),
                format!(
                    "{} is more than http.max_body_bytes_in_flight ({}): no such body could ever be read",
                    source.http.max_body_bytes, global.http.max_body_bytes_in_flight
                ),
            );
        }
        if global
            .api
            .as_ref()
            .is_some_and(|api| api.address == source.http.address && api.address.port() != 0)
        {
            parser.push(
                None,
                Some("api.address"),
                format!(
                    "{} is also the address of [sources.{}]: the admin listener needs its own port",
                    source.http.address, source.id
                ),
            );
        }
    }
    let intake_listeners =
        check_listener_addresses(&sources, &sinks, global.api.as_ref(), &mut parser);
    // Each listener waits for its next connection holding a slot (so that
    // over the cap connections wait in the kernel's queue): with fewer
    // slots than listeners, one of them never accepts while another waits.
    // (0 has its own error.)
    if global.http.max_connections > 0 && intake_listeners > global.http.max_connections {
        parser.push(
            None,
            Some("http.max_connections"),
            format!(
                "{} is less than the intake listeners ({intake_listeners}: one per source address and per prometheus sink `address`): each waits for its next connection holding one of these slots, so one listener would accept nothing while another waits",
                global.http.max_connections
            ),
        );
    }
    // No time to drain: what waits in a buffer at SIGTERM, answered 2xx,
    // would be lost on every restart.
    if global.shutdown_timeout_secs == 0 {
        parser.push(
            None,
            Some("shutdown_timeout_secs"),
            "must be at least 1".into(),
        );
    }
    // A sink's own drain deadline has to end before the process gives up on
    // it: past the global timeout its tasks are aborted, and what they still
    // hold is neither sent nor dead-lettered.
    for sink in &sinks {
        if let SinkConfig::Elasticsearch(es) = &sink.config {
            let deadline = es.retry.shutdown_deadline_secs;
            if deadline >= global.shutdown_timeout_secs {
                parser.push(
                    Some(("sinks", &sink.id)),
                    Some("retry.shutdown_deadline_secs"),
                    format!(
                        "{deadline} is not below shutdown_timeout_secs ({}): the sink needs the time left after its deadline to dead-letter what it could not send",
                        global.shutdown_timeout_secs
                    ),
                );
            }
        }
    }
    // Sinks installing other templates (index patterns, retention) under one
    // name on one cluster install over each other at startup, and the look at
    // the installed template cannot tell when both look at once: one sink's
    // indices got no mappings (or the other's ILM retention), without a word.
    let mut installs: Vec<(&str, TemplateSet, Vec<url::Url>)> = Vec::new();
    for sink in &sinks {
        let SinkConfig::Elasticsearch(es) = &sink.config else {
            continue;
        };
        let Some((set, urls)) = es.managed_templates(&sink.id) else {
            continue;
        };
        let clash = installs.iter().find(|(_, theirs, their_urls)| {
            theirs.name == set.name && *theirs != set && urls.iter().any(|u| their_urls.contains(u))
        });
        if let Some((other, theirs, _)) = clash {
            parser.push(
                Some(("sinks", &sink.id)),
                Some("template_name"),
                format!(
                    "`{}` is also the template name of [sinks.{other}], which writes to the same cluster with other templates (index patterns {}; this one's {}): each sink's manage_template would install its index template and ILM policy over the other's, leaving one sink's indices without mappings. Give each sink its own template_name (by default rum-pipeline-<sink id>)",
                    set.name,
                    theirs.patterns.join(", "),
                    set.patterns.join(", ")
                ),
            );
        }
        installs.push((sink.id.as_str(), set, urls));
    }
    // An empty file (a wrong path in a ConfigMap, a `${VAR}` that held the whole
    // pipeline) would otherwise start a process that listens nowhere and says so
    // only as an empty list of components.
    if sources.is_empty() && transforms.is_empty() && sinks.is_empty() && broken_ids.is_empty() {
        parser.push(
            None,
            None,
            "the pipeline declares no component: it needs at least a `[sources.ID]` and a \
             `[sinks.ID]` table (docs/configuration.md)"
                .to_owned(),
        );
    }
    let config = PipelineConfig {
        file: file.to_owned(),
        global,
        sources,
        transforms,
        sinks,
        broken_ids,
    };
    let warnings = graph::check(&config, &mut errors);
    if errors.is_empty() {
        Ok(Loaded { config, warnings })
    } else {
        Err(errors)
    }
}

/// Whether two listeners on `a` and `b` cannot both bind: the same port and
/// address, or a wildcard address that covers the other (`0.0.0.0` covers
/// IPv4; `[::]` covers both families, as Linux binds it dual-stack).
fn listeners_collide(a: SocketAddr, b: SocketAddr) -> bool {
    let covers =
        |wild: IpAddr, other: IpAddr| wild.is_unspecified() && (wild.is_ipv6() || other.is_ipv4());
    a.port() == b.port()
        && a.port() != 0
        && (a.ip() == b.ip() || covers(a.ip(), b.ip()) || covers(b.ip(), a.ip()))
}

/// Listeners that would fail to bind at run time are config errors here,
/// where `validate` sees them: sources on different addresses of one port
/// (`0.0.0.0:3000` and `127.0.0.1:3000`; the same address is one shared
/// listener), a `prometheus` sink's own address, and `[api]`. Returns the
/// number of intake listeners (all but `[api]`).
fn check_listener_addresses(
    sources: &[SourceComponent],
    sinks: &[Component<SinkConfig>],
    api: Option<&ApiOptions>,
    parser: &mut Parser<'_>,
) -> usize {
    let mut listeners: Vec<(SocketAddr, String)> = Vec::new();
    let owned = sources
        .iter()
        .map(|s| (s.http.address, format!("[sources.{}] address", s.id)))
        .chain(sinks.iter().filter_map(|sink| {
            match &sink.config {
                SinkConfig::Prometheus(p) => p
                    .address
                    .map(|address| (address, format!("[sinks.{}] address", sink.id))),
                _ => None,
            }
        }));
    for (address, owner) in owned {
        if listeners.iter().any(|(a, _)| *a == address) {
            continue;
        }
        if let Some((other, other_owner)) = listeners
            .iter()
            .find(|(a, _)| listeners_collide(*a, address))
        {
            parser.push(
                None,
                None,
                format!(
                    "{owner} {address} and {other_owner} {other} cannot both listen (one port, and one address covers the other): use one address or two ports"
                ),
            );
            continue;
        }
        listeners.push((address, owner));
    }
    if let Some(api) = api {
        for (address, owner) in &listeners {
            // A source's address exactly has its own message (above).
            let source_said = *address == api.address && owner.starts_with("[sources.");
            if !source_said && listeners_collide(*address, api.address) {
                parser.push(
                    None,
                    Some("api.address"),
                    format!(
                        "{} and {owner} {address} cannot both listen (one port, and one address covers the other): the admin listener needs its own port",
                        api.address
                    ),
                );
            }
        }
    }
    listeners.len()
}

/// Deserializes a table into a typed config; on error returns the dotted
/// path of the offending key and serde's message.
pub fn decode<T: DeserializeOwned>(table: toml::Table) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // toml appends "in `key`" on a second line; the key is reported separately.
        let mut message = inner.trim().lines().next().unwrap_or_default().to_owned();
        if message == "invalid socket address syntax" {
            // std's parser says no more; `localhost:3000` is the usual cause.
            message.push_str(
                ": write an IP address and a port, like \"127.0.0.1:3000\", \"0.0.0.0:3000\" \
                 or \"[::]:3000\" (host names such as localhost are not resolved)",
            );
        }
        let key = match unknown_field_name(&message) {
            Some(field) if path == "." => field,
            Some(field) if path != field && !path.ends_with(&format!(".{field}")) => {
                format!("{path}.{field}")
            }
            _ => path,
        };
        (if key == "." { String::new() } else { key }, message)
    })
}

fn unknown_field_name(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest[..rest.find('`')?].to_owned())
}

/// Keys every component of a kind takes besides its type's own: taken out
/// of the table before the type's struct reads the rest.
const DOWNSTREAM_KEYS: &[&str] = &["type", "inputs", "buffer"];

/// serde's "unknown field" message for a component's table names only the
/// keys of its type's struct; `shared` adds the keys split off before (the
/// HTTP keys of a source; `type`, `inputs`, `buffer`), with a did-you-mean.
/// Other messages, and unknown keys of nested tables, pass unchanged.
fn with_shared_keys(key: &str, message: String, shared: &[&str]) -> String {
    let Some(field) = unknown_field_name(&message).filter(|f| f == key) else {
        return message;
    };
    let mut known: Vec<&str> = match message.split_once(", expected") {
        Some((_, listed)) => listed.split('`').skip(1).step_by(2).collect(),
        None => Vec::new(), // "there are no fields"
    };
    known.extend(shared.iter().filter(|k| **k != "type"));
    if shared.contains(&"type") {
        known.insert(0, "type");
    }
    let hint = crate::conditions::did_you_mean(&field, known.iter().copied())
        .map(|k| format!(" (did you mean `{k}`?)"))
        .unwrap_or_default();
    let listed: Vec<String> = known.iter().map(|k| format!("`{k}`")).collect();
    format!(
        "unknown field `{field}`{hint}, expected one of {}",
        listed.join(", ")
    )
}

struct Parser<'a> {
    file: &'a str,
    text: &'a str,
    errors: &'a mut Vec<ConfigError>,
}

impl Parser<'_> {
    fn push(&mut self, component: Option<(&str, &str)>, key: Option<&str>, message: String) {
        let key = key.filter(|k| !k.is_empty());
        let line = match component {
            Some((kind, id)) => locate(self.text, kind, id, key),
            None => key.and_then(|k| locate_top_level(self.text, k)),
        };
        self.errors.push(ConfigError {
            file: self.file.to_owned(),
            line,
            component: component.map(|(kind, id)| format!("{kind}.{id}")),
            key: key.map(str::to_owned),
            message,
        });
    }

    fn take_table(&mut self, doc: &mut toml::Table, name: &str) -> Vec<(String, toml::Value)> {
        match doc.remove(name) {
            None => Vec::new(),
            Some(toml::Value::Table(t)) => t.into_iter().collect(),
            Some(_) => {
                self.push(
                    None,
                    Some(name),
                    format!("`{name}` must be a table of components"),
                );
                Vec::new()
            }
        }
    }

    fn component_table(&mut self, kind: &str, id: &str, value: toml::Value) -> Option<toml::Table> {
        if !graph::valid_id(id) {
            self.push(
                Some((kind, id)),
                None,
                "component ids may use only letters, digits, `_` and `-` (a `.` names an output)"
                    .into(),
            );
        }
        match value {
            toml::Value::Table(t) => Some(t),
            _ => {
                self.push(Some((kind, id)), None, "a component must be a table".into());
                None
            }
        }
    }

    fn take_type(&mut self, kind: &str, id: &str, table: &mut toml::Table) -> Option<String> {
        match table.remove("type") {
            Some(toml::Value::String(t)) => Some(t),
            Some(_) => {
                self.push(
                    Some((kind, id)),
                    Some("type"),
                    "`type` must be a string".into(),
                );
                None
            }
            None => {
                self.push(Some((kind, id)), Some("type"), "missing `type`".into());
                None
            }
        }
    }

    fn source(&mut self, id: &str, mut table: toml::Table) -> Option<SourceComponent> {
        let type_name = self.take_type("sources", id, &mut table)?;
        if table.contains_key("inputs") {
            self.push(
                Some(("sources", id)),
                Some("inputs"),
                "sources take no `inputs`".into(),
            );
            table.remove("inputs");
        }
        // Options every HTTP source shares are split off first, so each part
        // can deny unknown keys on its own.
        let mut http_table = toml::Table::new();
        for key in HttpSourceOptions::keys() {
            if let Some(value) = table.remove(*key) {
                http_table.insert((*key).to_owned(), value);
            }
        }
        let http = match decode::<HttpSourceOptions>(http_table) {
            Ok(http) => Some(http),
            Err((key, message)) => {
                self.push(Some(("sources", id)), Some(&key), message);
                None
            }
        };
        let config = match SourceConfig::parse(&type_name, table) {
            Ok(config) => Some(config),
            Err((key, message)) => {
                let message = with_shared_keys(&key, message, HttpSourceOptions::keys());
                self.push(Some(("sources", id)), Some(&key), message);
                None
            }
        };
        let (http, config) = (http?, config?);
        for (key, message) in http.check().into_iter().chain(config.check()) {
            self.push(Some(("sources", id)), Some(key), message);
        }
        Some(SourceComponent {
            id: id.to_owned(),
            http,
            config,
            line: locate(self.text, "sources", id, None),
        })
    }

    fn downstream<T>(
        &mut self,
        kind: &str,
        id: &str,
        mut table: toml::Table,
        parse: ParseFn<T>,
    ) -> Option<Component<T>>
    where
        T: CheckConfig,
    {
        let type_name = self.take_type(kind, id, &mut table);
        let inputs = match table.remove("inputs") {
            Some(toml::Value::Array(items)) => {
                let mut inputs = Vec::new();
                for item in items {
                    match item {
                        toml::Value::String(s) => inputs.push(s),
                        _ => self.push(
                            Some((kind, id)),
                            Some("inputs"),
                            "`inputs` must be a list of component ids".into(),
                        ),
                    }
                }
                inputs
            }
            // `inputs = "beacons"`: say how to write it, and keep the id so the graph
            // check does not add "needs at least one input" for the same line.
            Some(toml::Value::String(input)) => {
                self.push(
                    Some((kind, id)),
                    Some("inputs"),
                    format!("`inputs` must be a list of component ids: inputs = [\"{input}\"]"),
                );
                vec![input]
            }
            Some(_) => {
                self.push(
                    Some((kind, id)),
                    Some("inputs"),
                    "`inputs` must be a list of component ids".into(),
                );
                Vec::new()
            }
            None => Vec::new(),
        };
        let buffer = match table.remove("buffer") {
            Some(toml::Value::Table(t)) => match decode::<BufferOptions>(t) {
                Ok(b) if b.max_events == 0 => {
                    self.push(
                        Some((kind, id)),
                        Some("buffer.max_events"),
                        "must be at least 1".into(),
                    );
                    BufferOptions::default()
                }
                // A buffer counts its room in 32-bit semaphore permits (4gb
                // itself is counted one byte short).
                Ok(b) if b.max_events > u32::MAX as usize => {
                    self.push(
                        Some((kind, id)),
                        Some("buffer.max_events"),
                        format!("must be at most {}", u32::MAX),
                    );
                    BufferOptions::default()
                }
                Ok(b) if b.max_bytes.is_some_and(|n| n > 1 << 32) => {
                    self.push(
                        Some((kind, id)),
                        Some("buffer.max_bytes"),
                        "must be at most 4gb".into(),
                    );
                    BufferOptions::default()
                }
                Ok(b) if b.max_bytes.is_some_and(|n| n < 64 * 1024) => {
                    self.push(
                        Some((kind, id)),
                        Some("buffer.max_bytes"),
                        "must be at least 64kb (one beacon must fit)".into(),
                    );
                    BufferOptions::default()
                }
                Ok(b) => b,
                Err((key, message)) => {
                    self.push(Some((kind, id)), Some(&format!("buffer.{key}")), message);
                    BufferOptions::default()
                }
            },
            Some(_) => {
                self.push(
                    Some((kind, id)),
                    Some("buffer"),
                    "`buffer` must be a table".into(),
                );
                BufferOptions::default()
            }
            None => BufferOptions::default(),
        };
        let config = match parse(&type_name?, table) {
            Ok(config) => config,
            Err((key, message)) => {
                let message = with_shared_keys(&key, message, DOWNSTREAM_KEYS);
                self.push(Some((kind, id)), Some(&key), message);
                return None;
            }
        };
        for (key, message) in config.check_keyed() {
            self.push(Some((kind, id)), Some(&key), message);
        }
        Some(Component {
            id: id.to_owned(),
            inputs,
            buffer,
            config,
            line: locate(self.text, kind, id, None),
        })
    }
}

/// A component kind's parser: type name and table in, typed config or (key, message) out.
type ParseFn<T> = fn(&str, toml::Table) -> Result<T, (String, String)>;

/// Value checks a config runs after parsing: (key, message) per problem.
pub trait CheckConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// The same, for configs whose keys are built from names the user chose
    /// (`slos.<name>.target`).
    fn check_keyed(&self) -> Vec<(String, String)> {
        self.check()
            .into_iter()
            .map(|(key, message)| (key.to_owned(), message))
            .collect()
    }
}

/// An unknown `type` for a component kind.
pub fn unknown_type(kind: &str, type_name: &str, known: &[&str]) -> (String, String) {
    (
        "type".to_owned(),
        format!(
            "unknown {kind} type `{type_name}` (known: {})",
            known.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Loaded, Vec<ConfigError>> {
        load_str("test.toml", text, &|name| {
            (name == "PORT").then(|| "3999".to_owned())
        })
    }

    const GOOD: &str = r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:${PORT}"

[sinks.out]
type = "stdout"
inputs = ["beacons"]
buffer.max_events = 100
"#;

    #[test]
    fn loads_a_good_pipeline() {
        let loaded = load(GOOD).expect("valid");
        assert_eq!(loaded.config.sources[0].http.address.port(), 3999);
        assert_eq!(loaded.config.sinks[0].buffer.max_events, 100);
        assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    }

    /// A buffer counts its room in 32-bit permits: a bigger capacity was
    /// cut to 4 GiB (or 2^32 events) without a word.
    #[test]
    fn buffer_capacities_past_what_a_buffer_can_count_are_refused() {
        for (setting, key) in [
            ("buffer.max_bytes = \"5gb\"", "buffer.max_bytes"),
            ("buffer.max_events = 5000000000", "buffer.max_events"),
        ] {
            let text = GOOD.replace("buffer.max_events = 100", setting);
            let errors = load(&text).unwrap_err();
            let shown = errors[0].to_string();
            assert!(
                shown.contains(&format!("key `{key}`")) && shown.contains("at most"),
                "{shown}"
            );
        }
        let text = GOOD.replace("buffer.max_events = 100", "buffer.max_bytes = \"4gb\"");
        assert!(load(&text).is_ok());
    }

    #[test]
    fn unknown_key_names_file_line_component_and_key() {
        let text = GOOD.replace("buffer.max_events = 100", "encodng = \"json\"");
        let errors = load(&text).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let shown = errors[0].to_string();
        assert!(
            shown.starts_with("test.toml:9: [sinks.out] key `encodng`"),
            "{shown}"
        );
        assert!(shown.contains("unknown field"), "{shown}");
    }

    #[test]
    fn an_address_with_a_host_name_is_told_the_form_it_takes() {
        let text = GOOD.replace("127.0.0.1:${PORT}", "localhost:3000");
        let errors = load(&text).unwrap_err();
        let shown = errors[0].to_string();
        assert!(
            shown.starts_with("test.toml:4: [sources.beacons] key `address`: invalid socket address syntax: write an IP address and a port, like \"127.0.0.1:3000\""),
            "{shown}"
        );
    }

    #[test]
    fn a_bad_list_item_is_located_on_the_line_of_its_list() {
        let text = GOOD.replace(
            "address = \"127.0.0.1:${PORT}\"",
            "address = \"127.0.0.1:${PORT}\"\ntrusted_proxies = [\"10.0.0.0/33\"]",
        );
        let errors = load(&text).unwrap_err();
        let shown = errors[0].to_string();
        assert!(
            shown.starts_with("test.toml:5: [sources.beacons] key `trusted_proxies[0]`"),
            "{shown}"
        );
    }

    /// A key inside an inline table (`rate_limit = { burst = 0 }`) was
    /// located on the component's header line, often far from it.
    #[test]
    fn a_key_inside_an_inline_table_is_located_on_the_line_of_its_table() {
        let text = r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:3999"
max_events_per_beacon = 10
rate_limit = { requests_per_second = 5, burst = 0 }

[transforms.admin]
type = "filter"
inputs = ["beacons"]
buffer = { max_bytes = 1 }
condition = { field = "url.path", matches = "(" }

[sinks.out]
type = "blackhole"
inputs = ["admin"]
"#;
        let errors = load(text).unwrap_err();
        let lines: Vec<(String, Option<usize>)> = errors
            .iter()
            .map(|e| (e.key.clone().unwrap_or_default(), e.line))
            .collect();
        for (key, line) in [
            ("rate_limit.burst", 6),
            ("buffer.max_bytes", 11),
            ("condition.matches", 12),
        ] {
            assert!(
                lines.contains(&(key.to_owned(), Some(line))),
                "{key} should be on line {line}: {lines:?}"
            );
        }
    }

    /// A browser's `Origin` is scheme, host and port as it serializes them;
    /// an allowed origin written otherwise (with a path, the default port,
    /// a Unicode host) validated and then matched no request: every beacon 403.
    #[test]
    fn an_allowed_origin_no_browser_sends_is_refused() {
        for (written, fix) in [
            (
                "https://shop.example.com/checkout",
                "https://shop.example.com",
            ),
            ("https://shop.example.com:443", "https://shop.example.com"),
            ("https://bücher.example", "https://xn--bcher-kva.example"),
        ] {
            let text = GOOD.replace(
                "address = \"127.0.0.1:${PORT}\"",
                &format!("address = \"127.0.0.1:${{PORT}}\"\nallowed_origins = [{written:?}]"),
            );
            let errors = load(&text).unwrap_err();
            let shown = errors[0].to_string();
            assert!(
                shown.contains("key `allowed_origins`")
                    && shown.contains(&format!(
                        "`{written}` is not an origin a browser sends: write `{fix}`"
                    )),
                "{shown}"
            );
        }
        for fine in [
            "https://Shop.example.com",
            "https://shop.example.com/",
            "http://127.0.0.1:8080",
            "*",
        ] {
            let text = GOOD.replace(
                "address = \"127.0.0.1:${PORT}\"",
                &format!("address = \"127.0.0.1:${{PORT}}\"\nallowed_origins = [{fine:?}]"),
            );
            assert!(load(&text).is_ok(), "{fine}");
        }
    }

    #[test]
    fn inputs_as_a_string_is_one_error_that_shows_the_list() {
        let text = GOOD.replace("inputs = [\"beacons\"]", "inputs = \"beacons\"");
        let errors = load(&text).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            shown,
            ["test.toml:8: [sinks.out] key `inputs`: `inputs` must be a list of component ids: inputs = [\"beacons\"]"]
        );
    }

    #[test]
    fn a_pipeline_without_components_is_refused() {
        for text in [
            "",
            "# nothing yet\n",
            "shutdown_timeout_secs = 5\n[api]\naddress = \"127.0.0.1:9598\"\n",
        ] {
            let errors = load(text).unwrap_err();
            let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            assert_eq!(shown.len(), 1, "{text:?}: {shown:?}");
            assert!(shown[0].contains("declares no component"), "{shown:?}");
        }
    }

    #[test]
    fn a_misspelt_component_table_is_told_the_component_tables() {
        let text = GOOD.replace("[sinks.out]", "[sink.out]");
        let errors = load(&text).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(
            shown.iter().any(|s| s.starts_with("test.toml:6: key `sink`: unknown field `sink`, expected one of `sources`, `transforms`, `sinks`, `shutdown_timeout_secs`")),
            "{shown:?}"
        );
    }

    /// The keys every source, transform or sink takes are split off before
    /// its type's own table is read, so serde's list of the keys it expected
    /// lacked them: `adress` was not told about `address`.
    #[test]
    fn a_misspelt_shared_key_is_told_the_shared_keys() {
        let text = r#"
[sources.reports]
type = "csp"
adress = "127.0.0.1:3999"
[sinks.out]
type = "blackhole"
inpts = ["reports"]
"#;
        let errors = load(text).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        let find = |key: &str| {
            shown
                .iter()
                .find(|s| s.contains(&format!("key `{key}`")))
                .unwrap_or_else(|| panic!("no error for {key}: {shown:?}"))
                .clone()
        };
        let adress = find("adress");
        assert!(
            adress.starts_with("test.toml:4: [sources.reports] key `adress`: unknown field `adress` (did you mean `address`?), expected one of `report_uri`,"),
            "{adress}"
        );
        assert!(
            adress.contains("`noise_hosts`, `address`, `tls`"),
            "{adress}"
        );
        assert!(
            find("inpts").contains("unknown field `inpts` (did you mean `inputs`?), expected one of `type`, `inputs`, `buffer`"),
            "{shown:?}"
        );
        assert_eq!(shown.len(), 2, "{shown:?}");
    }

    #[test]
    fn wrong_type_names_the_key_and_line() {
        let text = GOOD.replace(
            "address = \"127.0.0.1:${PORT}\"",
            "address = \"x\"\nmax_events_per_beacon = \"many\"",
        );
        let errors = load(&text).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(shown.len(), 2, "{shown:?}");
        assert!(shown.iter().any(|s| s.contains("key `max_events_per_beacon`") && s.starts_with("test.toml:5:")), "{shown:?}");
        assert!(
            shown.iter().any(|s| s.contains("key `address`")),
            "{shown:?}"
        );
    }

    #[test]
    fn listeners_that_could_not_both_bind_are_config_errors() {
        let load = |top: &str, second: &str, prometheus: &str| {
            let text = format!(
                r#"{top}
[sources.a]
type = "rum_beacon"
address = "{second}"
[sources.b]
type = "csp"
address = "127.0.0.1:4010"
[sinks.out]
type = "blackhole"
inputs = ["a", "b"]
[sinks.prom]
type = "prometheus"
inputs = ["a"]
address = "{prometheus}"
"#
            );
            load_str("t.toml", &text, &|_| None)
                .err()
                .unwrap_or_default()
        };
        let collides = |errors: Vec<ConfigError>| {
            errors
                .iter()
                .any(|e| e.message.contains("cannot both listen"))
        };
        // One address shared by sources is one listener: fine. So are
        // other ports, and the two loopbacks of different families.
        let fine = load("", "127.0.0.1:4010", "127.0.0.1:4011");
        assert!(fine.is_empty(), "{fine:?}");
        assert!(!collides(load("", "[::1]:4010", "127.0.0.1:4011")));
        // A wildcard covers the other address of its port.
        assert!(collides(load("", "0.0.0.0:4010", "127.0.0.1:4011")));
        assert!(collides(load("", "[::]:4010", "127.0.0.1:4011")));
        // 0.0.0.0 covers IPv4 only.
        assert!(!collides(load("", "0.0.0.0:4011", "[::1]:4011")));
        assert!(collides(load("", "127.0.0.1:4011", "0.0.0.0:4010")));
        // The admin listener: a wildcard on a source's port, or exactly a
        // prometheus sink's own address.
        let api = |address: &str| format!("[api]\naddress = \"{address}\"");
        assert!(collides(load(
            &api("0.0.0.0:4010"),
            "127.0.0.1:4010",
            "127.0.0.1:4011"
        )));
        assert!(collides(load(
            &api("127.0.0.1:4011"),
            "127.0.0.1:4010",
            "127.0.0.1:4011"
        )));
        assert!(!collides(load(
            &api("127.0.0.1:4012"),
            "127.0.0.1:4010",
            "127.0.0.1:4011"
        )));
    }

    /// Each intake listener waits for its next connection holding a slot
    /// of `http.max_connections`: with fewer slots than listeners, one
    /// listener never accepts while another waits (measured: the second
    /// source's port answered nothing).
    #[test]
    fn fewer_connections_than_intake_listeners_is_a_config_error() {
        let load = |max_connections: usize, prometheus: &str| {
            let text = format!(
                r#"[http]
max_connections = {max_connections}
[sources.a]
type = "rum_beacon"
address = "127.0.0.1:4020"
[sources.b]
type = "csp"
address = "127.0.0.1:4020"
[sinks.prom]
type = "prometheus"
inputs = ["a", "b"]
{prometheus}
"#
            );
            load_str("t.toml", &text, &|_| None)
                .err()
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<String>>()
        };
        // One address is one listener.
        assert!(load(1, "").is_empty(), "{:?}", load(1, ""));
        // A prometheus sink's own address is a second one.
        let own = "address = \"127.0.0.1:4021\"";
        let errors = load(1, own);
        assert!(
            errors.len() == 1 && errors[0].contains("key `http.max_connections`"),
            "{errors:?}"
        );
        assert!(load(2, own).is_empty(), "{:?}", load(2, own));
    }

    /// `shutdown_timeout_secs = 0` gave the drain no time: every event in
    /// a buffer at SIGTERM, answered 2xx, was lost on every restart.
    #[test]
    fn a_shutdown_without_time_to_drain_is_a_config_error() {
        let errors = |timeout: &str| -> Vec<String> {
            load(&format!("{timeout}{GOOD}"))
                .err()
                .unwrap_or_default()
                .iter()
                .map(ToString::to_string)
                .collect()
        };
        let refused = errors("shutdown_timeout_secs = 0\n");
        assert!(
            refused.len() == 1
                && refused[0]
                    .contains("test.toml:1: key `shutdown_timeout_secs`: must be at least 1"),
            "{refused:?}"
        );
        assert!(errors("shutdown_timeout_secs = 1\n").is_empty());
    }

    #[test]
    fn every_error_is_listed_not_just_the_first() {
        let text = r#"
bogus = 1
[sources.a]
type = "nope"
[transforms.t]
type = "also_nope"
inputs = ["a"]
[sinks.s]
type = "stdout"
inputs = ["missing"]
"#;
        let errors = load(text).unwrap_err();
        let shown: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert!(shown.iter().any(|s| s.contains("bogus")), "{shown:?}");
        assert!(
            shown
                .iter()
                .any(|s| s.contains("[sources.a]") && s.contains("unknown source type `nope`")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.contains("[transforms.t]") && s.contains("also_nope")),
            "{shown:?}"
        );
        assert!(
            shown
                .iter()
                .any(|s| s.contains("[sinks.s]") && s.contains("`missing`")),
            "{shown:?}"
        );
    }

    #[test]
    fn missing_env_var_is_named() {
        let errors = load(&GOOD.replace("${PORT}", "${RUM_TEST_NOT_SET}")).unwrap_err();
        assert_eq!(errors[0].line, Some(4));
        assert!(errors[0].message.contains("RUM_TEST_NOT_SET"));
    }

    /// Windows editors (Notepad) save UTF-8 with a byte order mark. The
    /// file is the same pipeline: its first line is still a comment, not
    /// interpolated, and every line keeps its number.
    #[test]
    fn a_file_saved_with_a_byte_order_mark_reads_as_without_it() {
        let text = format!("\u{feff}# endpoints come from ${{RUM_TEST_NOT_SET}}\n{GOOD}");
        let loaded = load(&text).expect("a BOM and a commented variable");
        assert_eq!(loaded.config.sources[0].http.address.port(), 3999);
        let errors = load(&format!(
            "\u{feff}{}",
            GOOD.replace("type = \"stdout\"", "typo = 1")
        ))
        .unwrap_err();
        assert_eq!(
            errors[0].line,
            load(&GOOD.replace("type = \"stdout\"", "typo = 1")).unwrap_err()[0].line
        );
    }

    /// A file saved in Latin-1 (an `é` in a comment) is refused: naming the
    /// line lets the user find the byte in a long file.
    #[test]
    fn a_file_that_is_not_utf8_is_refused_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.toml");
        let mut bytes = GOOD.as_bytes().to_vec();
        bytes.extend_from_slice(b"# caf\xe9 au lait\n");
        std::fs::write(&path, &bytes).unwrap();
        let errors = load_file(&path).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].line, Some(GOOD.lines().count() + 1), "{errors:?}");
        assert!(errors[0].message.contains("not UTF-8"), "{errors:?}");
    }

    /// Two elasticsearch sinks of one pipeline with one template name
    /// (`template_name` copied from pipelines/prod.toml onto a sink per
    /// site, both reading TEMPLATE_NAME; or ids that differ only by case)
    /// writing other indices to one cluster: each installed its index
    /// template and ILM policy under that name over the other's at startup
    /// (the look at the installed one finds none when both look at once),
    /// so one sink's indices got no mappings, without a word. Refused at
    /// load; sinks writing the same indices, or to other clusters, share a
    /// name as before.
    #[test]
    fn two_sinks_installing_other_templates_under_one_name_on_one_cluster_are_refused() {
        let pipeline = |second: &str| {
            format!(
                r#"
[sources.beacons]
type = "rum_beacon"
address = "127.0.0.1:3000"
[sinks.shop]
type = "elasticsearch"
inputs = ["beacons"]
endpoints = "http://es:9200"
manage_template = true
template_name = "rum"
index_prefix = "shop"
[sinks.blog]
type = "elasticsearch"
inputs = ["beacons"]
manage_template = true
{second}
"#
            )
        };
        let errors = load(&pipeline(
            "endpoints = \"http://es:9200/\"\ntemplate_name = \"rum\"\nindex_prefix = \"blog\"",
        ))
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        let shown = errors[0].to_string();
        assert!(
            shown.contains("] key `template_name`: `rum` is also the template name of [sinks.")
                && shown.contains("shop.metrics-*")
                && shown.contains("blog.metrics-*"),
            "{shown}"
        );
        // Ids that differ only by case have one default name.
        let errors = load(
            &pipeline("endpoints = \"http://es:9200\"\nindex_prefix = \"blog\"")
                .replace("template_name = \"rum\"\n", "")
                .replace("[sinks.blog]", "[sinks.SHOP]"),
        )
        .unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].message.contains("`rum-pipeline-shop` is also"),
            "{errors:?}"
        );
        // The same indices, another cluster, or a name of its own: fine.
        for second in [
            "endpoints = \"http://es:9200\"\ntemplate_name = \"rum\"\nindex_prefix = \"shop\"",
            "endpoints = \"http://other:9200\"\ntemplate_name = \"rum\"\nindex_prefix = \"blog\"",
            "endpoints = \"http://es:9200\"\ntemplate_name = \"rum-blog\"\nindex_prefix = \"blog\"",
        ] {
            if let Err(errors) = load(&pipeline(second)) {
                panic!("{second}: {errors:?}");
            }
        }
    }

    #[test]
    fn embedded_default_is_valid() {
        load_str("dev.toml", EMBEDDED_DEFAULT, &|_| None).expect("dev.toml validates");
    }
}
