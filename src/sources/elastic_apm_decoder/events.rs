//! From the agent's objects (v2 names) to events: one shared context per
//! request, one event per transaction, vital, span, error. What each field
//! becomes is tabled in `docs/sdk.md#elastic-apm-rum`.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock};

use serde_json::Value;

use super::{bad_metadata, ApmLimits, LabelNames, Line, RequestFacts};
use crate::event::{Context, Counted, Event, EventBlock, FieldId, FieldValue};
use crate::schema::{self, EventType, FieldType};
use crate::sources::beacon_decoder::url_fields;
use crate::sources::decode_error::DecodeError;
use crate::sources::json_tree::{Json, Obj};

mod error;
mod span;

/// A document field and the JSON type its value must have.
type Slot = (FieldId, FieldType);
type Fields = Vec<(FieldId, Option<FieldValue>)>;

/// The slot of a payload key of `schema` (a programming error if absent).
fn slot(ty: EventType, key: &str) -> Slot {
    match ty.payload_fields().iter().find(|p| p.key == key) {
        Some(p) => (FieldId::of(p.field.path), p.field.ty),
        None => panic!("`{key}` is no payload key of {}", ty.as_str()),
    }
}

struct Ids {
    sdk_name: FieldId,
    sdk_version: FieldId,
    client_ip: FieldId,
    user_agent: FieldId,
    seq: FieldId,
    extra: FieldId,
    sample_rate: FieldId,
    service_name: FieldId,
    service_version: FieldId,
    service_environment: FieldId,
    session_id: FieldId,
    view_id: FieldId,
    referrer: FieldId,
    trace_id: FieldId,
    transaction_id: FieldId,
    span_id: FieldId,
    error_id: FieldId,
    nav: NavIds,
    vital_name: Slot,
    vital_value: Slot,
    resource: [Slot; 8],
    http: [Slot; 6],
    error: [Slot; 6],
    error_column: Slot,
    action_kind: Slot,
    action_name: Slot,
    long_task: [Slot; 3],
    custom_name: Slot,
    custom_value: Slot,
    custom_data: Slot,
    custom_original_type: Slot,
}

struct NavIds {
    dns: Slot,
    tcp: Slot,
    ttfb: Slot,
    response: Slot,
    dom_interactive: Slot,
    dom_content_loaded: Slot,
    dom_complete: Slot,
    load: Slot,
    transfer_size: Slot,
    encoded_size: Slot,
    decoded_size: Slot,
}

static IDS: LazyLock<Ids> = LazyLock::new(|| {
    use EventType as T;
    let nav = |key| slot(T::PageView, key);
    Ids {
        sdk_name: FieldId::of(schema::RUM_SDK_NAME),
        sdk_version: FieldId::of(schema::RUM_SDK_VERSION),
        client_ip: FieldId::of(schema::CLIENT_IP),
        user_agent: FieldId::of(schema::USER_AGENT_ORIGINAL),
        seq: FieldId::of(schema::RUM_SEQ),
        extra: FieldId::of(schema::RUM_EXTRA),
        sample_rate: FieldId::of(schema::RUM_SAMPLE_RATE),
        service_name: FieldId::of(schema::SERVICE_NAME),
        service_version: FieldId::of(schema::SERVICE_VERSION),
        service_environment: FieldId::of(schema::SERVICE_ENVIRONMENT),
        session_id: FieldId::of(schema::SESSION_ID),
        view_id: FieldId::of(schema::VIEW_ID),
        referrer: FieldId::of(schema::HTTP_REFERRER),
        trace_id: FieldId::of(schema::TRACE_ID),
        transaction_id: FieldId::of(schema::TRANSACTION_ID),
        span_id: FieldId::of(schema::SPAN_ID),
        error_id: FieldId::of(schema::ERROR_ID),
        nav: NavIds {
            dns: nav("dns"),
            tcp: nav("tcp"),
            ttfb: nav("ttfb"),
            response: nav("response"),
            dom_interactive: nav("dom_interactive"),
            dom_content_loaded: nav("dom_content_loaded"),
            dom_complete: nav("dom_complete"),
            load: nav("load"),
            transfer_size: nav("transfer_size"),
            encoded_size: nav("encoded_size"),
            decoded_size: nav("decoded_size"),
        },
        vital_name: slot(T::WebVital, "name"),
        vital_value: slot(T::WebVital, "value"),
        resource: [
            "name",
            "initiator_type",
            "start",
            "duration",
            "transfer_size",
            "encoded_size",
            "decoded_size",
            "status",
        ]
        .map(|k| slot(T::Resource, k)),
        http: ["kind", "method", "url", "status", "duration", "size"].map(|k| slot(T::Http, k)),
        error: ["message", "name", "stack", "kind", "source", "line"].map(|k| slot(T::Error, k)),
        error_column: slot(T::Error, "column"),
        action_kind: slot(T::Action, "kind"),
        action_name: slot(T::Action, "name"),
        long_task: ["kind", "start", "duration"].map(|k| slot(T::LongTask, k)),
        custom_name: slot(T::Custom, "name"),
        custom_value: slot(T::Custom, "value"),
        custom_data: slot(T::Custom, "data"),
        custom_original_type: slot(T::Custom, "original_type"),
    }
});

/// `rum.vital.name` of the vitals a page-load transaction carries, and
/// where the agent puts each (`marks.agent.*`, `experience.*`), plus INP
/// (a `page-exit` transaction's `context.tags.inp_value`).
const AGENT_MARK_VITALS: &[(&str, &str)] = &[
    ("timeToFirstByte", "TTFB"),
    ("firstContentfulPaint", "FCP"),
    ("largestContentfulPaint", "LCP"),
];
const EXPERIENCE_VITALS: &[(&str, &str)] = &[("cls", "CLS"), ("fid", "FID"), ("tbt", "TBT")];
pub const INP_TAG: &str = "inp_value";

/// The words this decoder writes into events (vital names, kinds), each
/// one shared static value: an event's `Value::from("LCP")` was a `String`
/// allocated here and freed wherever the event is dropped.
static WORDS: LazyLock<Vec<Value>> = LazyLock::new(|| {
    AGENT_MARK_VITALS
        .iter()
        .chain(EXPERIENCE_VITALS)
        .map(|(_, name)| *name)
        .chain([
            "INP",
            "longtask",
            "exception",
            "log",
            "metricset",
            "breakdown",
        ])
        .map(Value::from)
        .collect()
});

/// `word` as its shared static value (one of `WORDS`), else owned.
fn word(word: &'static str) -> FieldValue {
    crate::sources::static_word(&WORDS, word)
}

/// Sets a typed slot, or keeps a value of the wrong type under `rum.extra`.
fn put<'de>(
    fields: &mut Fields,
    extra: &mut Obj<'de>,
    slot: Slot,
    key: &'static str,
    value: Json<'de>,
) {
    if value.is_null() {
        return;
    }
    if value.fits(slot.1) {
        fields.push((slot.0, Some(Value::from(value).into())));
    } else {
        extra.insert(key, value);
    }
}

fn take_object<'de>(map: &mut Obj<'de>, key: &str) -> Option<Obj<'de>> {
    match map.remove(key)? {
        Json::Object(inner) => Some(inner),
        Json::Null => None,
        other => {
            // Not an object: kept as sent.
            map.insert(key.to_owned(), other);
            None
        }
    }
}

fn take_string(map: &mut Obj<'_>, key: &str) -> Option<String> {
    take_str(map, key).map(Cow::into_owned)
}

/// A string taken out as it was read (borrowed from the body when it had
/// no escapes): most are only looked at, or become a value later.
fn take_str<'de>(map: &mut Obj<'de>, key: &str) -> Option<Cow<'de, str>> {
    match map.remove(key)? {
        Json::String(s) => Some(s),
        Json::Null => None,
        other => {
            map.insert(key.to_owned(), other);
            None
        }
    }
}

fn take_number(map: &mut Obj<'_>, key: &str) -> Option<f64> {
    let n = map.get(key)?.as_f64()?;
    map.remove(key);
    Some(n)
}

/// A string value held once for the events that carry it: a copy is a
/// reference count, not an allocation.
fn shared_text(text: &str) -> FieldValue {
    FieldValue::Shared(Arc::new(Value::String(text.to_owned())))
}

/// Puts what is left of an object under `rum.extra.<key>`.
fn keep_rest<'de>(extra: &mut Obj<'de>, key: &'static str, rest: Obj<'de>) {
    if !rest.is_empty() {
        extra.insert(key, Json::Object(rest));
    }
}

/// Puts what is left of an inner object back under `key` of its parent.
fn nest<'de>(parent: &mut Obj<'de>, key: &'static str, rest: Obj<'de>) {
    if !rest.is_empty() {
        parent.insert(key, Json::Object(rest));
    }
}

/// Labels (`metadata.labels`, `context.tags`) as APM takes them: strings,
/// numbers, booleans (and nulls, which set nothing); an object or array is
/// a wrong-typed value, returned apart for `rum.extra`. Under `labels.*` it
/// made the index map the name as an object, and every later document with
/// that label as a string was refused (or the reverse). So is a label the
/// pipeline sets itself (`synthetic`, `csp_noise`): the template maps
/// `labels.synthetic` as `boolean`, so `synthetic: "no"` made the document
/// fail to index, and `synthetic: true` passed a page's events off as a bot's.
fn split_labels(labels: Obj<'_>) -> (Obj<'_>, Obj<'_>) {
    let (mut scalars, mut aside) = (Obj::new(), Obj::new());
    for (name, value) in labels {
        let reserved = RESERVED_LABELS.contains(&&*label_name(&name));
        // An `Obj`'s keys are unique.
        match value {
            Json::Object(_) | Json::Array(_) => aside.push_unique(name, value),
            _ if reserved => aside.push_unique(name, value),
            scalar => scalars.push_unique(name, scalar),
        }
    }
    (scalars, aside)
}

/// Labels (scalars, as `split_labels` leaves them) whose names may be
/// fields (see `LabelNames`), and the others, for `rum.extra`: each name
/// is a field of the index, and a browser choosing thousands took it past
/// the engine's field limit. A null sets nothing and takes no name.
fn admit_labels<'de>(names: &LabelNames, labels: Obj<'de>) -> (Obj<'de>, Obj<'de>) {
    let (mut admitted, mut refused) = (Obj::new(), Obj::new());
    for (name, value) in labels {
        // An `Obj`'s keys are unique.
        if value.is_null() || names.admit(&label_name(&name)) {
            admitted.push_unique(name, value);
        } else {
            refused.push_unique(name, value);
        }
    }
    (admitted, refused)
}

/// Adds `more` (keys `parent.key` does not have) to the object under
/// `key`, made when absent.
fn nest_more<'de>(parent: &mut Obj<'de>, key: &'static str, more: Obj<'de>) {
    if more.is_empty() {
        return;
    }
    let mut inner = take_object(parent, key).unwrap_or_default();
    inner.merge(more, |_| true);
    nest(parent, key, inner);
}

/// The labels the pipeline's own components set (`labels.<name>`).
static RESERVED_LABELS: LazyLock<[&'static str; 2]> = LazyLock::new(|| {
    [schema::LABELS_SYNTHETIC, schema::LABEL_CSP_NOISE].map(|path| {
        path.trim_start_matches(schema::LABELS)
            .trim_start_matches('.')
    })
});

/// A label's name as the agent's `addLabels` writes it: `.`, `*` and `"`
/// as `_`, and an empty name as `_`. Elasticsearch reads a dot as a path,
/// so a label `env.x` made the index map `labels.env` as an object, and
/// every later document with an `env` label was refused; it refuses an
/// empty field name, and one of only whitespace, and with it the document
/// (a blank name is written as as many `_`).
fn label_name<'a>(name: &Cow<'a, str>) -> Cow<'a, str> {
    if name.is_empty() {
        Cow::Borrowed("_")
    } else if name.trim().is_empty() {
        Cow::Owned("_".repeat(name.chars().count()))
    } else if name.contains(['.', '*', '"']) {
        Cow::Owned(name.replace(['.', '*', '"'], "_"))
    } else {
        name.clone()
    }
}

/// A label's value as a keyword, the type of ECS labels and of what the
/// template maps under `labels.*`: a number or boolean under `labels.*`
/// made the index map the name as `long` or `boolean`, and every later
/// document with that label as a word ("gold" after 2) was refused. (APM
/// Server moves numbers to `numeric_labels.*` for the same reason.)
fn label_value(value: Json<'_>) -> Json<'_> {
    match value {
        Json::Number(n) => Json::String(Cow::Owned(n.to_string())),
        Json::Bool(b) => Json::String(Cow::Borrowed(if b { "true" } else { "false" })),
        other => other,
    }
}

/// Labels to set, by name and without nulls (which set nothing). Set in
/// this order each lands at the end of the event's sorted list: in the
/// order sent (descending, say) each insert moved those before it. Names
/// and values as `label_name` and `label_value` write them.
fn sorted_labels(labels: Obj<'_>) -> Vec<(Cow<'_, str>, Json<'_>)> {
    let mut labels: Vec<_> = labels
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(name, value)| (label_name(&name), label_value(value)))
        .collect();
    // Stable: of two names that became one, the later sent is set last
    // and wins.
    labels.sort_by(|a, b| a.0.cmp(&b.0));
    labels
}

/// A page-load transaction's navigation timing (`marks.navigationTiming`,
/// milliseconds from `fetchStart`) as the `rum.nav.*` durations.
fn navigation_fields(marks: &Obj<'_>, fields: &mut Fields) {
    let Some(Json::Object(nt)) = marks.get("navigationTiming") else {
        return;
    };
    let mark = |key: &str| nt.get(key).and_then(Json::as_f64);
    let nav = &IDS.nav;
    let mut set = |slot: Slot, value: Option<f64>| {
        if let Some(v) = value.filter(|v| v.is_finite() && *v >= 0.0) {
            fields.push((slot.0, Some(Value::from(v).into())));
        }
    };
    let span = |start: &str, end: &str| Some(mark(end)? - mark(start)?);
    set(nav.dns, span("domainLookupStart", "domainLookupEnd"));
    set(nav.tcp, span("connectStart", "connectEnd"));
    set(nav.ttfb, mark("responseStart"));
    set(nav.response, span("responseStart", "responseEnd"));
    set(nav.dom_interactive, mark("domInteractive"));
    set(nav.dom_content_loaded, mark("domContentLoadedEventStart"));
    set(nav.dom_complete, mark("domComplete"));
    set(
        nav.load,
        mark("loadEventEnd").or_else(|| mark("loadEventStart")),
    );
}

/// `{"name": "javascript"}`, what this agent always says of its language.
fn is_javascript(language: Option<&Json<'_>>) -> bool {
    language
        .and_then(Json::as_object)
        .is_some_and(|l| l.len() == 1 && l.get("name").and_then(Json::as_str) == Some("javascript"))
}

/// Moves what is left of an event's object into its `rum.extra` (nulls
/// carry nothing and are skipped).
fn keep_all<'de>(extra: &mut Obj<'de>, rest: Obj<'de>) {
    extra.merge(rest, |value| !value.is_null());
}

/// Builds the events of one request on one shared context.
pub(super) struct Builder<'a> {
    context: Counted<Context>,
    /// The first page URL of the request (in the shared context).
    pub(super) shared_url: Option<String>,
    /// The first session id of the request (in the shared context).
    shared_session: Option<String>,
    /// What the metadata holds besides the mapped fields, as JSON text
    /// (written once), added to every event's own `rum.extra` (the
    /// context's would be hidden by it).
    metadata_extra: Option<Vec<u8>>,
    /// The id and trace id of the request's first transaction, whose
    /// `view.id`, `transaction.id` and `trace.id` are in the shared context
    /// (most requests are one page load and its spans).
    shared_transaction: Option<(String, Option<String>)>,
    /// Each transaction of the request: its id, trace id and page fields,
    /// for its spans (v2 sends them as lines of their own).
    transactions: Vec<(String, Option<String>, Fields)>,
    facts: &'a RequestFacts<'a>,
    limits: &'a ApmLimits,
    pub(super) events: EventBlock,
    /// The fields of the last event pushed, emptied: the next event's are
    /// built in its room (a `Vec` an event cost an allocation and growth).
    spare: Fields,
    pub(super) unknown_kinds: usize,
    pub(super) dropped_breakdowns: usize,
    /// Labels kept under `rum.extra` for want of room for their names
    /// (`admit_labels`).
    pub(super) labels_kept_in_extra: usize,
}

/// About how many events `items` make (a page load: its own, its vitals
/// and its spans), for the block's room.
fn expected_events(items: &[Line<'_>], limits: &ApmLimits) -> usize {
    let events: usize = items
        .iter()
        .map(|item| match item {
            Line::Known("transaction", Json::Object(tr)) => {
                let spans = tr.get("spans").and_then(Json::as_array).map_or(0, Vec::len);
                1 + AGENT_MARK_VITALS.len() + EXPERIENCE_VITALS.len() + spans
            }
            _ => 1,
        })
        .sum();
    events.min(limits.max_events)
}

fn page_url_of<'m>(map: &'m Obj<'_>) -> Option<&'m str> {
    map.get("context")?.get("page")?.get("url")?.as_str()
}

impl<'a> Builder<'a> {
    pub(super) fn new(
        mut metadata: Obj<'_>,
        items: &[Line<'_>],
        facts: &'a RequestFacts<'a>,
        limits: &'a ApmLimits,
    ) -> Result<Self, DecodeError> {
        let ids = &*IDS;
        let mut context = Context::for_request();
        context.set_event_kind();
        context.set_received_ms(facts.received_at_ms);
        context.set_client_address(facts.client_ip);
        if let Some(ip) = limits.client_ip.stored(facts.client_ip) {
            context.set(ids.client_ip, ip);
        }
        if let Some(ua) = facts.user_agent {
            context.set(ids.user_agent, ua);
        }
        let mut rest = Obj::new();
        match metadata.remove("service") {
            Some(Json::Object(mut service)) => {
                for (key, id) in [
                    ("name", ids.service_name),
                    ("version", ids.service_version),
                    ("environment", ids.service_environment),
                ] {
                    if let Some(v) = take_string(&mut service, key) {
                        context.set(id, v);
                    }
                }
                if let Some(mut agent) = take_object(&mut service, "agent") {
                    if let Some(v) = take_string(&mut agent, "name") {
                        context.set(ids.sdk_name, v);
                    }
                    if let Some(v) = take_string(&mut agent, "version") {
                        context.set(ids.sdk_version, v);
                    }
                    nest(&mut service, "agent", agent);
                }
                // Always `{"name": "javascript"}` from this agent: implied by
                // `rum.sdk.name`, not repeated on every event.
                if is_javascript(service.get("language")) {
                    service.remove("language");
                }
                keep_rest(&mut rest, "service", service);
            }
            None | Some(Json::Null) => {}
            Some(_) => {
                return Err(bad_metadata(
                    "invalid_metadata",
                    "`metadata.service` must be an object",
                ))
            }
        }
        let mut labels_kept_in_extra = 0;
        if let Some(labels) = take_object(&mut metadata, "labels") {
            let (labels, aside) = split_labels(labels);
            let (labels, refused) = admit_labels(&limits.label_names, labels);
            labels_kept_in_extra += refused.len();
            for (name, value) in sorted_labels(labels) {
                context.set_label(Arc::from(&*name), value.into());
            }
            nest(&mut metadata, "labels", aside);
            nest_more(&mut metadata, "labels", refused);
        }
        keep_all(&mut rest, metadata);

        // The request's page and session go into the shared context; an
        // event of another page or session carries its own.
        let bodies = items.iter().filter_map(|item| match item {
            Line::Known("transaction" | "error", Json::Object(map)) => Some(map),
            _ => None,
        });
        let mut shared_url = None;
        let mut shared_session = None;
        for map in bodies {
            if shared_url.is_none() {
                shared_url = page_url_of(map).map(str::to_owned);
            }
            if shared_session.is_none() {
                shared_session = map
                    .get("session")
                    .and_then(|s| s.get("id"))
                    .and_then(Json::as_str)
                    .map(str::to_owned);
            }
        }
        if let Some(url) = &shared_url {
            for (id, value) in url_fields(url) {
                if let Some(value) = value {
                    context.set(id, value);
                }
            }
        }
        if let Some(session) = &shared_session {
            context.set(ids.session_id, session.as_str());
        }
        // So is the first transaction's: its events (and its spans, the
        // most of a request) carry no ids of their own but their span's.
        let shared_transaction = items.iter().find_map(|item| match item {
            Line::Known("transaction", Json::Object(map)) => {
                let id = map.get("id").and_then(Json::as_str)?;
                let trace = map.get("trace_id").and_then(Json::as_str);
                Some((id.to_owned(), trace.map(str::to_owned)))
            }
            _ => None,
        });
        if let Some((id, trace)) = &shared_transaction {
            context.set(ids.view_id, id.as_str());
            context.set(ids.transaction_id, id.as_str());
            if let Some(trace) = trace {
                context.set(ids.trace_id, trace.as_str());
            }
        }
        let metadata_extra = (!rest.is_empty()).then(|| {
            let mut text = Vec::new();
            rest.write_to(&mut text);
            text
        });
        // Every event carries the context and its own copy of the
        // metadata's rest: unbounded, a 288 KB body of one large metadata
        // line and 990 short lines made 272 MB of events.
        let carried = context.byte_size() + metadata_extra.as_ref().map_or(0, Vec::len);
        if carried > limits.max_context_bytes {
            return Err(DecodeError::too_large(
                "context_too_large",
                format!(
                    "the request's `metadata` and page (with the User-Agent) hold {carried} bytes; max_context_bytes is {}",
                    limits.max_context_bytes
                ),
            ));
        }
        Ok(Builder {
            context: Counted::new(context),
            shared_url,
            shared_session,
            shared_transaction,
            metadata_extra,
            transactions: Vec::new(),
            facts,
            limits,
            events: EventBlock::with_capacity(expected_events(items, limits)),
            spare: Fields::new(),
            unknown_kinds: 0,
            dropped_breakdowns: 0,
            labels_kept_in_extra,
        })
    }

    /// A copy of the fields a page load's events share, in the room the
    /// last event's fields left.
    fn fields_of_view(&mut self, view: &Fields) -> Fields {
        let mut fields = std::mem::take(&mut self.spare);
        fields.clear();
        fields.extend(view.iter().cloned());
        fields
    }

    /// The slots that give an event the `view.id` and `transaction.id` of
    /// its transaction and its `trace.id`: none for what the context holds
    /// (the shared transaction's), its own for another, and `None` (the
    /// context's taken off) for an event of no transaction or trace.
    fn transaction_slots(&self, fields: &mut Fields, id: Option<&str>, trace: Option<&str>) {
        let ids = &*IDS;
        let (shared_id, shared_trace) = match &self.shared_transaction {
            Some((id, trace)) => (Some(id.as_str()), trace.as_deref()),
            None => (None, None),
        };
        if id != shared_id {
            let id = id.map(shared_text);
            fields.push((ids.view_id, id.clone()));
            fields.push((ids.transaction_id, id));
        }
        if trace != shared_trace {
            fields.push((ids.trace_id, trace.map(shared_text)));
        }
    }

    fn push(
        &mut self,
        ty: EventType,
        mut fields: Fields,
        extra: Obj<'_>,
        labels: Option<Obj<'_>>,
    ) -> Result<(), DecodeError> {
        if self.events.len() == self.limits.max_events {
            return Err(DecodeError::too_large(
                "too_many_events",
                format!(
                    "more than {} events in one request (max_events_per_request)",
                    self.limits.max_events
                ),
            ));
        }
        let ids = &*IDS;
        fields.push((ids.seq, Some(Value::from(self.events.len() as u64).into())));
        let metadata = self.metadata_extra.as_deref();
        if !extra.is_empty() || metadata.is_some() {
            let extra = extra.to_field_value(metadata.map(|text| ("metadata", text)));
            fields.push((ids.extra, Some(extra)));
        }
        let at = Some(self.facts.received_at_ms);
        let labels = labels.filter(|labels| labels.iter().any(|(_, value)| !value.is_null()));
        let Some(labels) = labels else {
            self.events
                .push(self.context.clone(), at, None, ty, fields.drain(..));
            self.spare = fields;
            return Ok(());
        };
        // Own labels: an event of its own, in its place.
        let mut event = Event::from_parts(self.context.clone(), at, None, ty, fields);
        for (name, value) in sorted_labels(labels) {
            event.set_label(Arc::from(&*name), value.into());
        }
        self.events.push_event(event);
        Ok(())
    }

    /// The `tags` of a transaction or error whose names may be fields;
    /// the others join what is left of its `context.tags`, for `rum.extra`
    /// (see `admit_labels`). Called once a page-exit's INP is taken out.
    fn admit_tags<'de>(
        &mut self,
        tags: Option<Obj<'de>>,
        context: &mut Obj<'de>,
    ) -> Option<Obj<'de>> {
        let (tags, refused) = admit_labels(&self.limits.label_names, tags?);
        self.labels_kept_in_extra += refused.len();
        nest_more(context, "tags", refused);
        Some(tags)
    }

    /// `view.id` and `transaction.id` (the transaction's id), `trace.id`,
    /// the page and the session of a transaction or error, taken out of its
    /// object; the rest of its `context` is returned (`tags` become labels).
    fn page_fields<'de>(
        &self,
        map: &mut Obj<'de>,
        transaction_id: Option<&str>,
        extra: &mut Obj<'de>,
    ) -> (Fields, Option<Obj<'de>>, Option<Obj<'de>>) {
        let ids = &*IDS;
        let mut fields = Fields::with_capacity(12);
        let trace = take_str(map, "trace_id");
        self.transaction_slots(&mut fields, transaction_id, trace.as_deref());
        let mut context = take_object(map, "context");
        let mut tags = None;
        if let Some(context) = context.as_mut() {
            if let Some(all) = take_object(context, "tags") {
                let (labels, aside) = split_labels(all);
                nest(context, "tags", aside);
                tags = Some(labels);
            }
            if let Some(mut page) = take_object(context, "page") {
                if let Some(url) = take_str(&mut page, "url") {
                    if Some(&*url) != self.shared_url.as_deref() {
                        for (id, value) in url_fields(&url) {
                            let value = value.map(|v| FieldValue::Shared(Arc::new(v)));
                            fields.push((id, value));
                        }
                    }
                }
                // Shared: every event of the page (its vitals, its spans)
                // holds a copy.
                match take_str(&mut page, "referer") {
                    Some(r) if !r.is_empty() => fields.push((ids.referrer, Some(shared_text(&r)))),
                    _ => {}
                }
                keep_rest(extra, "page", page);
            }
        }
        if let Some(mut session) = take_object(map, "session") {
            if let Some(id) = take_str(&mut session, "id") {
                if Some(&*id) != self.shared_session.as_deref() {
                    fields.push((ids.session_id, Some(shared_text(&id))));
                }
            }
            keep_rest(extra, "session", session);
        }
        // `sample_rate` stays in the object (and lands in `rum.extra`): the
        // agent sends every transaction, an unsampled one with rate 0, so
        // a transaction's documents each stand for one page load or
        // interaction, never for `1 / sample_rate` of them (see `span`).
        (fields, context, tags)
    }

    pub(super) fn transaction(&mut self, mut tr: Obj<'_>) -> Result<(), DecodeError> {
        let ids = &*IDS;
        let mut extra = Obj::new();
        let id = take_string(&mut tr, "id");
        let ty = take_str(&mut tr, "type");
        // For its spans (`page_fields` takes it out).
        let trace = tr.get("trace_id").and_then(Json::as_str).map(str::to_owned);
        let (view, context, mut tags) = self.page_fields(&mut tr, id.as_deref(), &mut extra);
        let spans = tr.remove("spans");
        let breakdown = tr.remove("breakdown");
        let mut fields = self.fields_of_view(&view);
        let mut vitals: Vec<(&'static str, f64)> = Vec::new();
        let mut context = context.unwrap_or_default();
        let event_type = match ty.as_deref() {
            Some("page-load") => {
                if let Some(marks) = tr.get("marks").and_then(Json::as_object) {
                    navigation_fields(marks, &mut fields);
                    if let Some(Json::Object(agent)) = marks.get("agent") {
                        for (key, name) in AGENT_MARK_VITALS {
                            if let Some(v) = agent.get(key).and_then(Json::as_f64) {
                                vitals.push((name, v));
                            }
                        }
                    }
                }
                if let Some(mut response) = take_object(&mut context, "response") {
                    let nav = &ids.nav;
                    for (key, slot) in [
                        ("transfer_size", nav.transfer_size),
                        ("encoded_body_size", nav.encoded_size),
                        ("decoded_body_size", nav.decoded_size),
                    ] {
                        if let Some(v) = response.remove(key) {
                            // A value of the wrong type goes back into `response`.
                            put(&mut fields, &mut response, slot, key, v);
                        }
                    }
                    nest(&mut context, "response", response);
                }
                if let Some(mut experience) = take_object(&mut tr, "experience") {
                    for (key, name) in EXPERIENCE_VITALS {
                        if let Some(v) = take_number(&mut experience, key) {
                            vitals.push((name, v));
                        }
                    }
                    keep_rest(&mut extra, "experience", experience);
                }
                EventType::PageView
            }
            Some("page-exit")
                if tags
                    .as_ref()
                    .and_then(|t| t.get(INP_TAG))
                    .is_some_and(Json::is_number) =>
            {
                let inp = tags
                    .as_mut()
                    .and_then(|t| take_number(t, INP_TAG))
                    .unwrap_or_default();
                let (name, value) = (ids.vital_name, ids.vital_value);
                fields.push((name.0, Some(word("INP"))));
                fields.push((value.0, Some(Value::from(inp).into())));
                EventType::WebVital
            }
            _ => {
                if let Some(ty) = ty {
                    put(&mut fields, &mut extra, ids.action_kind, "type", ty.into());
                }
                if let Some(name) = tr.remove("name") {
                    put(&mut fields, &mut extra, ids.action_name, "name", name);
                }
                EventType::Action
            }
        };
        let tags = self.admit_tags(tags, &mut context);
        keep_rest(&mut extra, "context", context);
        keep_all(&mut extra, tr);
        let tags = tags.filter(|t| !t.is_empty());
        self.push(event_type, fields, extra, tags.clone())?;
        for (name, value) in vitals {
            let mut fields = self.fields_of_view(&view);
            fields.push((ids.vital_name.0, Some(word(name))));
            fields.push((ids.vital_value.0, Some(Value::from(value).into())));
            self.push(EventType::WebVital, fields, Obj::new(), tags.clone())?;
        }
        match spans {
            Some(Json::Array(spans)) => {
                for span in spans {
                    match span {
                        Json::Object(span) => self.span(span, &view)?,
                        other => self.unknown("span", other)?,
                    }
                }
            }
            None | Some(Json::Null) => {}
            Some(other) => self.unknown("spans", other)?,
        }
        match breakdown {
            Some(Json::Array(sets)) => {
                for set in sets {
                    self.metricset(set)?;
                }
            }
            None | Some(Json::Null) => {}
            Some(other) => self.metricset(other)?,
        }
        if let Some(id) = id {
            self.transactions.push((id, trace, view));
        }
        Ok(())
    }

    pub(super) fn metricset(&mut self, set: Json<'_>) -> Result<(), DecodeError> {
        if !self.limits.keep_breakdown {
            self.dropped_breakdowns += 1;
            return Ok(());
        }
        let ids = &*IDS;
        let mut fields = Fields::with_capacity(5);
        // Of no transaction, whatever the context's.
        self.transaction_slots(&mut fields, None, None);
        let mut extra = Obj::new();
        fields.push((ids.custom_original_type.0, Some(word("metricset"))));
        fields.push((ids.custom_name.0, Some(word("breakdown"))));
        put(&mut fields, &mut extra, ids.custom_data, "metricset", set);
        self.push(EventType::Custom, fields, extra, None)
    }

    /// A line (or nested item) of a kind the agent does not send: kept as
    /// `custom` and counted.
    pub(super) fn unknown(&mut self, kind: &str, value: Json<'_>) -> Result<(), DecodeError> {
        let ids = &*IDS;
        self.unknown_kinds += 1;
        let mut fields = Fields::with_capacity(4);
        // Of no transaction, whatever the context's.
        self.transaction_slots(&mut fields, None, None);
        let mut extra = Obj::new();
        fields.push((ids.custom_original_type.0, Some(Value::from(kind).into())));
        put(&mut fields, &mut extra, ids.custom_data, "value", value);
        self.push(EventType::Custom, fields, extra, None)
    }
}
