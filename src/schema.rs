//! The one source of truth for what documents look like: ECS field names, the
//! RUM event types, and how each beacon key maps onto a document field. The
//! source, the transforms, the Elasticsearch templates and the tests all read
//! these tables instead of spelling field names again.

/// How Elasticsearch should map a field; the index template is derived from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Keyword,
    /// Free text that is also aggregatable (text + keyword sub-field).
    Text,
    Long,
    Double,
    Boolean,
    Date,
    Ip,
    GeoPoint,
    /// Arbitrary browser-supplied objects: stored and searchable without
    /// growing the mapping (Elasticsearch `flattened`).
    Flattened,
}

impl FieldType {
    /// Whether a string is a value of this type (`accepts` of any string).
    pub fn takes_strings(self) -> bool {
        matches!(
            self,
            FieldType::Keyword | FieldType::Text | FieldType::Date | FieldType::Ip
        )
    }

    /// [`accepts`](Self::accepts) of a number, asked without making a
    /// `Value` of it (a decoder reads most payload values as numbers).
    pub fn accepts_number(self, n: &serde_json::Number) -> bool {
        match self {
            FieldType::Long => n.is_i64(),
            FieldType::Double => true,
            _ => false,
        }
    }

    /// Does a JSON value fit this type? Used to keep wrong-typed beacon values
    /// out of typed fields (they go to `rum.extra` instead).
    pub fn accepts(self, value: &serde_json::Value) -> bool {
        use serde_json::Value as V;
        if let V::Number(n) = value {
            return self.accepts_number(n);
        }
        match self {
            FieldType::Keyword | FieldType::Text | FieldType::Date | FieldType::Ip => {
                value.is_string()
            }
            // Elasticsearch's `long` is signed: a value past i64 would be refused
            // there (a mapping error, the whole document dead-lettered).
            FieldType::Long => value.is_i64(),
            FieldType::Double => value.is_number(),
            FieldType::Boolean => value.is_boolean(),
            FieldType::GeoPoint => value.is_object(),
            // Elasticsearch refuses the document when a flattened field
            // holds a value that is no object, inside an array too.
            FieldType::Flattened => match value {
                V::Object(_) => true,
                V::Array(items) => items
                    .iter()
                    .all(|item| item.is_null() || FieldType::Flattened.accepts(item)),
                _ => false,
            },
        }
    }

    pub fn es_type(self) -> &'static str {
        match self {
            FieldType::Keyword => "keyword",
            FieldType::Text => "text",
            FieldType::Long => "long",
            FieldType::Double => "double",
            FieldType::Boolean => "boolean",
            FieldType::Date => "date",
            FieldType::Ip => "ip",
            FieldType::GeoPoint => "geo_point",
            FieldType::Flattened => "flattened",
        }
    }
}

/// A document field the pipeline can write.
#[derive(Debug, Clone, Copy)]
pub struct Field {
    pub path: &'static str,
    pub ty: FieldType,
}

const fn f(path: &'static str, ty: FieldType) -> Field {
    Field { path, ty }
}

use FieldType::*;

// Field names used by code. Keep them here so a rename happens once.
pub const TIMESTAMP: &str = "@timestamp";
pub const EVENT_KIND: &str = "event.kind";
pub const EVENT_DATASET: &str = "event.dataset";
pub const EVENT_INGESTED: &str = "event.ingested";
pub const RUM_TYPE: &str = "rum.type";
pub const RUM_SEQ: &str = "rum.seq";
/// The event time exactly as the browser sent it (epoch ms, before the skew
/// correction that gives `@timestamp`); part of the document `_id`.
pub const RUM_CLIENT_TS: &str = "rum.client_ts";
pub const RUM_EXTRA: &str = "rum.extra";
pub const RUM_UA_HINTS: &str = "rum.ua_hints";
/// The browser SDK that sent the event (`web-vitals`, ...); absent for the
/// project's own client.
pub const RUM_SDK_NAME: &str = "rum.sdk.name";
pub const RUM_SDK_VERSION: &str = "rum.sdk.version";
pub const RUM_VITAL_NAME: &str = "rum.vital.name";
pub const RUM_VITAL_VALUE: &str = "rum.vital.value";
pub const RUM_VITAL_ATTRIBUTION: &str = "rum.vital.attribution";
pub const RUM_CUSTOM_NAME: &str = "rum.custom.name";
pub const RUM_CUSTOM_VALUE: &str = "rum.custom.value";
pub const RUM_CUSTOM_DATA: &str = "rum.custom.data";
pub const SERVICE_NAME: &str = "service.name";
pub const SERVICE_VERSION: &str = "service.version";
pub const SERVICE_ENVIRONMENT: &str = "service.environment";
pub const SESSION_ID: &str = "session.id";
pub const VIEW_ID: &str = "view.id";
pub const VIEW_TITLE: &str = "view.title";
pub const URL_FULL: &str = "url.full";
pub const URL_SCHEME: &str = "url.scheme";
pub const URL_DOMAIN: &str = "url.domain";
pub const URL_PORT: &str = "url.port";
pub const URL_PATH: &str = "url.path";
pub const URL_QUERY: &str = "url.query";
pub const URL_FRAGMENT: &str = "url.fragment";
pub const URL_PATH_TEMPLATE: &str = "url.path_template";
pub const HTTP_REFERRER: &str = "http.request.referrer";
pub const USER_AGENT_ORIGINAL: &str = "user_agent.original";
pub const CLIENT_IP: &str = "client.ip";
pub const LABELS: &str = "labels";
pub const RUM_SAMPLE_RATE: &str = "rum.sample_rate";
pub const RUM_RESOURCE_NAME: &str = "rum.resource.name";
pub const RUM_HTTP_URL: &str = "rum.http.url";
pub const ERROR_MESSAGE: &str = "error.message";
/// A long animation frame's scripts: their `source_url` and `invoker` are URLs.
pub const RUM_LONG_TASK_SCRIPTS: &str = "rum.long_task.scripts";
pub const ERROR_STACK_TRACE: &str = "error.stack_trace";
/// The file an error was thrown in (`ErrorEvent.filename`, a frame's file): a URL.
pub const RUM_ERROR_SOURCE: &str = "rum.error.source";
pub const CSP_DOCUMENT_URI: &str = "csp.document_uri";
pub const CSP_BLOCKED_URI: &str = "csp.blocked_uri";
pub const CSP_SOURCE_FILE: &str = "csp.source_file";
pub const REPORT_TYPE: &str = "report.type";
pub const REPORT_BODY: &str = "report.body";
/// Set (`true`) on CSP violations caused by extensions or injectors.
pub const LABEL_CSP_NOISE: &str = "labels.csp_noise";
/// The object the `user_agent` transform fills (`name`, `version`, `os.*`, `device.name`, `category`).
pub const USER_AGENT: &str = "user_agent";
/// `true` on events from crawlers, headless browsers and test tools (`user_agent` transform).
pub const LABELS_SYNTHETIC: &str = "labels.synthetic";
/// The objects the `geoip` transform fills (see `ENRICHMENT_FIELDS`).
pub const CLIENT_GEO: &str = "client.geo";
pub const CLIENT_AS: &str = "client.as";
/// ECS tracing ids, from SDKs that trace (Elastic APM RUM, Faro with its
/// tracing package): the same ids the backend's APM agents write, so a page
/// load's documents and the server's traces it caused share `trace.id`.
pub const TRACE_ID: &str = "trace.id";
pub const TRANSACTION_ID: &str = "transaction.id";
pub const SPAN_ID: &str = "span.id";
pub const ERROR_ID: &str = "error.id";

/// Fields every document from a beacon carries (the shared context), plus the
/// fields transforms derive from them.
pub const CONTEXT_FIELDS: &[Field] = &[
    f(TIMESTAMP, Date),
    f(EVENT_KIND, Keyword),
    f(EVENT_DATASET, Keyword),
    f(EVENT_INGESTED, Date),
    f(RUM_TYPE, Keyword),
    f(RUM_SEQ, Long),
    f(RUM_CLIENT_TS, Date),
    f(RUM_EXTRA, Flattened),
    f(RUM_UA_HINTS, Flattened),
    f("rum.beacon_version", Long),
    f(RUM_SDK_NAME, Keyword),
    f(RUM_SDK_VERSION, Keyword),
    f("rum.device.memory", Double),
    f("rum.device.cores", Long),
    f("rum.connection.effective_type", Keyword),
    f("rum.connection.rtt", Double),
    f("rum.connection.downlink", Double),
    f("rum.connection.save_data", Boolean),
    f(SERVICE_NAME, Keyword),
    f(SERVICE_VERSION, Keyword),
    f(SERVICE_ENVIRONMENT, Keyword),
    f(SESSION_ID, Keyword),
    f(VIEW_ID, Keyword),
    f(VIEW_TITLE, Text),
    f(URL_FULL, Keyword),
    f(URL_SCHEME, Keyword),
    f(URL_DOMAIN, Keyword),
    f(URL_PORT, Long),
    f(URL_PATH, Keyword),
    f(URL_QUERY, Keyword),
    f(URL_FRAGMENT, Keyword),
    f(URL_PATH_TEMPLATE, Keyword),
    f(HTTP_REFERRER, Keyword),
    f(USER_AGENT_ORIGINAL, Keyword),
    f(CLIENT_IP, Ip),
];

/// The RUM event types a beacon may carry. `rum.type` only ever takes one of
/// these names (plus `csp_violation` and `report` from the CSP source), so
/// anything templated from it (index names) stays on an allowlist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    PageView,
    WebVital,
    Resource,
    Error,
    Action,
    LongTask,
    Http,
    Custom,
    CspViolation,
    Report,
}

impl EventType {
    pub const ALL: [EventType; 10] = [
        EventType::PageView,
        EventType::WebVital,
        EventType::Resource,
        EventType::Error,
        EventType::Action,
        EventType::LongTask,
        EventType::Http,
        EventType::Custom,
        EventType::CspViolation,
        EventType::Report,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PageView => "page_view",
            EventType::WebVital => "web_vital",
            EventType::Resource => "resource",
            EventType::Error => "error",
            EventType::Action => "action",
            EventType::LongTask => "long_task",
            EventType::Http => "http",
            EventType::Custom => "custom",
            EventType::CspViolation => "csp_violation",
            EventType::Report => "report",
        }
    }

    /// `event.dataset` value.
    pub fn dataset(self) -> &'static str {
        match self {
            EventType::PageView => "rum.page_view",
            EventType::WebVital => "rum.web_vital",
            EventType::Resource => "rum.resource",
            EventType::Error => "rum.error",
            EventType::Action => "rum.action",
            EventType::LongTask => "rum.long_task",
            EventType::Http => "rum.http",
            EventType::Custom => "rum.custom",
            EventType::CspViolation => "rum.csp_violation",
            EventType::Report => "rum.report",
        }
    }

    /// A `match`, not a search of `ALL`: `sample` and conditions parse
    /// `rum.type` once per event.
    pub fn parse(name: &str) -> Option<EventType> {
        Some(match name {
            "page_view" => EventType::PageView,
            "web_vital" => EventType::WebVital,
            "resource" => EventType::Resource,
            "error" => EventType::Error,
            "action" => EventType::Action,
            "long_task" => EventType::LongTask,
            "http" => EventType::Http,
            "custom" => EventType::Custom,
            "csp_violation" => EventType::CspViolation,
            "report" => EventType::Report,
            _ => return None,
        })
    }

    /// Types a browser may put in a beacon's `events` (CSP reports have their own routes).
    pub fn from_beacon(name: &str) -> Option<EventType> {
        match EventType::parse(name)? {
            EventType::CspViolation | EventType::Report => None,
            t => Some(t),
        }
    }

    /// How this type's beacon keys map onto document fields.
    pub fn payload_fields(self) -> &'static [PayloadField] {
        match self {
            EventType::PageView => PAGE_VIEW,
            EventType::WebVital => WEB_VITAL,
            EventType::Resource => RESOURCE,
            EventType::Error => ERROR,
            EventType::Action => ACTION,
            EventType::LongTask => LONG_TASK,
            EventType::Http => HTTP,
            EventType::Custom => CUSTOM,
            EventType::CspViolation => CSP,
            EventType::Report => REPORT,
        }
    }
}

/// A beacon event key (`"ttfb"`) and the document field it lands in (`rum.nav.ttfb`).
#[derive(Debug, Clone, Copy)]
pub struct PayloadField {
    pub key: &'static str,
    pub field: Field,
}

const fn p(key: &'static str, path: &'static str, ty: FieldType) -> PayloadField {
    PayloadField {
        key,
        field: Field { path, ty },
    }
}

/// The client numbers its events (per page load, so `view.id` + `seq` names
/// one event); when an event carries `seq` it replaces the position in the
/// beacon the source puts in `rum.seq`.
const CLIENT_SEQ: PayloadField = p("seq", RUM_SEQ, Long);

const PAGE_VIEW: &[PayloadField] = &[
    CLIENT_SEQ,
    p("navigation_type", "rum.nav.navigation_type", Keyword),
    p("soft", "rum.nav.soft", Boolean),
    p("redirect", "rum.nav.redirect", Double),
    p("dns", "rum.nav.dns", Double),
    p("tcp", "rum.nav.tcp", Double),
    p("tls", "rum.nav.tls", Double),
    p("ttfb", "rum.nav.ttfb", Double),
    p("response", "rum.nav.response", Double),
    p("dom_interactive", "rum.nav.dom_interactive", Double),
    p("dom_content_loaded", "rum.nav.dom_content_loaded", Double),
    p("dom_complete", "rum.nav.dom_complete", Double),
    p("load", "rum.nav.load", Double),
    p("transfer_size", "rum.nav.transfer_size", Long),
    p("encoded_size", "rum.nav.encoded_size", Long),
    p("decoded_size", "rum.nav.decoded_size", Long),
    p("protocol", "rum.nav.protocol", Keyword),
    p("server_timing", "rum.nav.server_timing", Flattened),
];

const WEB_VITAL: &[PayloadField] = &[
    CLIENT_SEQ,
    p("name", RUM_VITAL_NAME, Keyword),
    p("value", RUM_VITAL_VALUE, Double),
    p("rating", "rum.vital.rating", Keyword),
    p("delta", "rum.vital.delta", Double),
    p("id", "rum.vital.id", Keyword),
    p("navigation_type", "rum.vital.navigation_type", Keyword),
    p("attribution", RUM_VITAL_ATTRIBUTION, Flattened),
];

const RESOURCE: &[PayloadField] = &[
    CLIENT_SEQ,
    p("name", RUM_RESOURCE_NAME, Keyword),
    p("initiator_type", "rum.resource.initiator_type", Keyword),
    p("start", "rum.resource.start", Double),
    p("duration", "rum.resource.duration", Double),
    p("transfer_size", "rum.resource.transfer_size", Long),
    p("encoded_size", "rum.resource.encoded_size", Long),
    p("decoded_size", "rum.resource.decoded_size", Long),
    p("render_blocking", "rum.resource.render_blocking", Keyword),
    p("cache", "rum.resource.cache", Keyword),
    p("protocol", "rum.resource.protocol", Keyword),
    p("status", "rum.resource.status", Long),
];

const ERROR: &[PayloadField] = &[
    CLIENT_SEQ,
    p("message", ERROR_MESSAGE, Text),
    p("name", "error.type", Keyword),
    p("stack", ERROR_STACK_TRACE, Text),
    p("kind", "rum.error.kind", Keyword),
    p("source", RUM_ERROR_SOURCE, Keyword),
    p("line", "rum.error.line", Long),
    p("column", "rum.error.column", Long),
    p("count", "rum.error.count", Long),
];

const ACTION: &[PayloadField] = &[
    CLIENT_SEQ,
    p("kind", "rum.action.kind", Keyword),
    p("target", "rum.action.target", Keyword),
    p("name", "rum.action.name", Keyword),
];

const LONG_TASK: &[PayloadField] = &[
    CLIENT_SEQ,
    p("kind", "rum.long_task.kind", Keyword),
    p("start", "rum.long_task.start", Double),
    p("duration", "rum.long_task.duration", Double),
    p(
        "blocking_duration",
        "rum.long_task.blocking_duration",
        Double,
    ),
    p("scripts", RUM_LONG_TASK_SCRIPTS, Flattened),
];

const HTTP: &[PayloadField] = &[
    CLIENT_SEQ,
    p("kind", "rum.http.kind", Keyword),
    p("method", "rum.http.method", Keyword),
    p("url", RUM_HTTP_URL, Keyword),
    p("status", "rum.http.status", Long),
    p("duration", "rum.http.duration", Double),
    p("size", "rum.http.size", Long),
];

const CUSTOM: &[PayloadField] = &[
    CLIENT_SEQ,
    p("name", RUM_CUSTOM_NAME, Keyword),
    p("value", RUM_CUSTOM_VALUE, Double),
    p("data", RUM_CUSTOM_DATA, Flattened),
    // Set by the source when a beacon names a type it does not know.
    p("original_type", "rum.custom.original_type", Keyword),
];

/// CSP violations (both report formats normalize to these); filled by the `csp` source.
const CSP: &[PayloadField] = &[
    p("document_uri", CSP_DOCUMENT_URI, Keyword),
    p("referrer", "csp.referrer", Keyword),
    p("blocked_uri", CSP_BLOCKED_URI, Keyword),
    p("effective_directive", "csp.effective_directive", Keyword),
    p("violated_directive", "csp.violated_directive", Keyword),
    p("original_policy", "csp.original_policy", Keyword),
    p("disposition", "csp.disposition", Keyword),
    p("source_file", CSP_SOURCE_FILE, Keyword),
    p("line_number", "csp.line_number", Long),
    p("column_number", "csp.column_number", Long),
    p("status_code", "csp.status_code", Long),
    p("sample", "csp.sample", Keyword),
    p("format", "csp.format", Keyword),
];

/// Other Reporting API reports (deprecation, network-error, ...): the type as
/// sent, and the body kept whole with its keys snake_cased. The body is
/// `flattened` on purpose: its keys are chosen by browsers (and by anyone
/// posting to the endpoint), so they must not become mapped fields; every
/// leaf is still searchable as `report.body.<key>`.
const REPORT: &[PayloadField] = &[
    p("type", REPORT_TYPE, Keyword),
    p("body", REPORT_BODY, Flattened),
];

/// Fields written by the enrichment transforms, and the labels the pipeline
/// sets itself.
pub const ENRICHMENT_FIELDS: &[Field] = &[
    f("user_agent.name", Keyword),
    f("user_agent.version", Keyword),
    f("user_agent.os.name", Keyword),
    f("user_agent.os.version", Keyword),
    f("user_agent.device.name", Keyword),
    f("user_agent.category", Keyword),
    f("client.geo.continent_code", Keyword),
    f("client.geo.country_iso_code", Keyword),
    f("client.geo.country_name", Keyword),
    f("client.geo.region_iso_code", Keyword),
    f("client.geo.region_name", Keyword),
    f("client.geo.city_name", Keyword),
    f("client.geo.postal_code", Keyword),
    f("client.geo.timezone", Keyword),
    f("client.geo.location", GeoPoint),
    f("client.as.number", Long),
    f("client.as.organization.name", Keyword),
    f(RUM_SAMPLE_RATE, Double),
    // `true` on crawlers, headless browsers and test tools (user_agent
    // transform); mapped so dashboards can split synthetic from real traffic.
    f(LABELS_SYNTHETIC, Boolean),
    // `true` on CSP violations of extensions and injectors (csp source).
    f(LABEL_CSP_NOISE, Boolean),
];

/// The tracing ids an event of a tracing SDK carries (see `TRACE_ID`): one
/// value per trace, transaction, span or error, so they are searched and
/// joined on, never made into metric labels.
pub const TRACE_FIELDS: &[Field] = &[
    f(TRACE_ID, Keyword),
    f(TRANSACTION_ID, Keyword),
    f(SPAN_ID, Keyword),
    f(ERROR_ID, Keyword),
];

/// Every field path the pipeline can write, with its mapping type (`labels.*`
/// is dynamic keyword). Index templates are generated from this list.
pub fn all_fields() -> impl Iterator<Item = Field> {
    let payload = EventType::ALL
        .into_iter()
        .flat_map(|t| t.payload_fields().iter().map(|p| p.field));
    CONTEXT_FIELDS
        .iter()
        .copied()
        .chain(payload)
        .chain(ENRICHMENT_FIELDS.iter().copied())
        .chain(TRACE_FIELDS.iter().copied())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn every_field_has_one_type() {
        let mut seen: HashMap<&str, FieldType> = HashMap::new();
        for field in all_fields() {
            if let Some(previous) = seen.insert(field.path, field.ty) {
                assert_eq!(previous, field.ty, "{} declared with two types", field.path);
            }
        }
    }

    /// Elasticsearch indexes a `flattened` field only from an object (or an
    /// array of objects): `"server_timing": ["db;dur=12"]` in a beacon went
    /// into `rum.nav.server_timing` and the whole document was refused
    /// (`mapper_parsing_exception`), where it belongs in `rum.extra`.
    #[test]
    fn a_flattened_field_takes_objects_and_arrays_of_objects_only() {
        use serde_json::json;
        for fits in [
            json!({"a": 1}),
            json!([{"a": 1}, null, [{"b": ["x", 1]}]]),
            json!([]),
        ] {
            assert!(Flattened.accepts(&fits), "{fits}");
        }
        for refused in [
            json!(["x"]),
            json!([{"a": 1}, 2]),
            json!([[true]]),
            json!("x"),
            json!(1),
        ] {
            assert!(!Flattened.accepts(&refused), "{refused}");
        }
    }

    #[test]
    fn event_type_names_round_trip() {
        for (i, t) in EventType::ALL.into_iter().enumerate() {
            assert_eq!(t as usize, i, "ALL is in declaration order");
            assert_eq!(EventType::parse(t.as_str()), Some(t));
            assert_eq!(t.dataset(), format!("rum.{}", t.as_str()));
        }
        assert_eq!(EventType::from_beacon("csp_violation"), None);
        assert_eq!(EventType::from_beacon("nonsense"), None);
    }
}
