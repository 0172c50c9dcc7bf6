//! Spans → `resource` and `http` events (v2 lines name their transaction,
//! whose page they take; v3 nests them in it).

use super::*;

/// `GET /api/cart` (the agent's name of an http span) → method and URL.
fn split_http_name(name: &str) -> Option<(&str, &str)> {
    let (method, url) = name.split_once(' ')?;
    (!method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase())).then_some((method, url))
}

/// The keys of a span this decoder makes fields of, found in one pass over
/// its pairs (taken out by name, each was a scan of them all), each as
/// `take_str`, `take_object` or `Obj::remove` would take it: a value of
/// the wrong type stays in `rest`, a null string or object is dropped.
#[derive(Default)]
struct SpanKeys<'de> {
    trace_id: Option<Cow<'de, str>>,
    id: Option<Cow<'de, str>>,
    sample_rate: Option<Json<'de>>,
    ty: Option<Cow<'de, str>>,
    subtype: Option<Cow<'de, str>>,
    name: Option<Cow<'de, str>>,
    start: Option<Json<'de>>,
    duration: Option<Json<'de>>,
    context: Option<Obj<'de>>,
    rest: Obj<'de>,
}

impl<'de> SpanKeys<'de> {
    fn sort(span: Obj<'de>) -> Self {
        let mut keys = SpanKeys::default();
        for (key, value) in span {
            let string = match &*key {
                "trace_id" => &mut keys.trace_id,
                "id" => &mut keys.id,
                "type" => &mut keys.ty,
                "subtype" => &mut keys.subtype,
                "name" => &mut keys.name,
                "sample_rate" => {
                    keys.sample_rate = Some(value);
                    continue;
                }
                "start" => {
                    keys.start = Some(value);
                    continue;
                }
                "duration" => {
                    keys.duration = Some(value);
                    continue;
                }
                "context" => {
                    match value {
                        Json::Object(context) => keys.context = Some(context),
                        Json::Null => {}
                        other => keys.rest.push_unique(key, other),
                    }
                    continue;
                }
                _ => {
                    keys.rest.push_unique(key, value);
                    continue;
                }
            };
            match value {
                Json::String(s) => *string = Some(s),
                Json::Null => {}
                other => keys.rest.push_unique(key, other),
            }
        }
        keys
    }
}

impl Builder<'_> {
    /// A v2 span line: it names its transaction, whose page it takes.
    pub(in crate::sources::elastic_apm_decoder) fn span_line(
        &mut self,
        mut span: Obj<'_>,
    ) -> Result<(), DecodeError> {
        let transaction = take_string(&mut span, "transaction_id");
        let found = transaction
            .as_ref()
            .and_then(|id| self.transactions.iter().find(|(t, _, _)| t == id));
        let Some((id, trace, view)) = found else {
            // Of no transaction of the request: its own ids, or none.
            let mut view = Fields::new();
            let trace = take_str(&mut span, "trace_id");
            self.transaction_slots(&mut view, transaction.as_deref(), trace.as_deref());
            return self.span(span, &view);
        };
        // What v3 leaves out (`pid`, `tid`) when it is the transaction's:
        // not repeated, so both versions make the same documents.
        if span.get("parent_id").and_then(Json::as_str) == Some(id.as_str()) {
            span.remove("parent_id");
        }
        if trace.is_some() && span.get("trace_id").and_then(Json::as_str) == trace.as_deref() {
            span.remove("trace_id");
        }
        let view = view.clone();
        self.span(span, &view)
    }

    pub(super) fn span(&mut self, span: Obj<'_>, view: &Fields) -> Result<(), DecodeError> {
        let ids = &*IDS;
        let mut extra = Obj::new();
        let SpanKeys {
            trace_id,
            id,
            sample_rate,
            ty,
            subtype,
            name,
            start,
            duration,
            context,
            rest: span,
        } = SpanKeys::sort(span);
        // A span's own: kind, name, timing, sizes, the HTTP call.
        let mut fields = self.fields_of_view(view);
        // Spans are recorded only in sampled transactions: a span stands
        // for `1 / sample_rate` of them, what `rum.sample_rate` says. A
        // rate outside (0, 1] is no probability (`sum(1 / rum.sample_rate)`
        // went infinite on a 0): kept as sent.
        match sample_rate {
            Some(rate) if rate.as_f64().is_some_and(|r| r > 0.0 && r <= 1.0) => {
                fields.push((ids.sample_rate, Some(Value::from(rate).into())));
            }
            Some(rate) => extra.insert("sample_rate", rate),
            None => {}
        }
        let ty = ty.unwrap_or_default();
        let base = ty.split('.').next().unwrap_or_default();
        let mut context = context.unwrap_or_default();
        let mut http = take_object(&mut context, "http").unwrap_or_default();
        let mut response = take_object(&mut http, "response").unwrap_or_default();
        // Taken by the kinds that make fields of them; put back otherwise.
        let mut url = take_str(&mut http, "url");
        let mut status = http.remove("status_code");
        if ty != base {
            extra.insert("type", Json::from(ty.clone()));
        }
        let event_type = match base {
            "resource" => {
                let [s_name, s_initiator, s_start, s_duration, s_transfer, s_encoded, s_decoded, s_status] =
                    ids.resource;
                // The URL, else the span's name (kept apart when both differ).
                let (name_key, name_value) = match (url.take(), name) {
                    (Some(url), name) => {
                        if let Some(name) = name.filter(|n| *n != url) {
                            extra.insert("name", Json::from(name));
                        }
                        ("url", Some(Json::from(url)))
                    }
                    (None, name) => ("name", name.map(Json::from)),
                };
                // In the fields' id order (their paths sorted): the sort of
                // the event's slots then moves few.
                for (slot, key, value) in [
                    (
                        s_decoded,
                        "decoded_body_size",
                        response.remove("decoded_body_size"),
                    ),
                    (s_duration, "duration", duration),
                    (
                        s_encoded,
                        "encoded_body_size",
                        response.remove("encoded_body_size"),
                    ),
                    (s_initiator, "subtype", subtype.map(Json::from)),
                    (s_name, name_key, name_value),
                    (s_start, "start", start),
                    (s_status, "status_code", status.take()),
                    (
                        s_transfer,
                        "transfer_size",
                        response.remove("transfer_size"),
                    ),
                ] {
                    if let Some(value) = value {
                        put(&mut fields, &mut extra, slot, key, value);
                    }
                }
                EventType::Resource
            }
            "external" => {
                let [s_kind, s_method, s_url, s_status, s_duration, s_size] = ids.http;
                let mut method = take_string(&mut http, "method");
                let mut url = url.take();
                // Without an http context (a span cut short) the name
                // `METHOD url` still tells both.
                if let Some((m, u)) = name.as_deref().and_then(split_http_name) {
                    if method.is_none() {
                        method = Some(m.to_owned());
                    }
                    if url.is_none() {
                        url = Some(Cow::Owned(self.resolve(view, u)));
                    }
                }
                // `METHOD url` is the agent's name of every http span: made
                // of the fields above (and kept out of `rum.extra`, where
                // `scrub_url` would not see a URL in it).
                if let Some(name) = name.filter(|n| split_http_name(n).is_none()) {
                    extra.insert("name", Json::from(name));
                }
                // In the fields' id order, as a resource's.
                for (slot, key, value) in [
                    (s_duration, "duration", duration),
                    (s_kind, "subtype", subtype.map(Json::from)),
                    (s_method, "method", method.map(Json::from)),
                    (s_size, "transfer_size", response.remove("transfer_size")),
                    (s_status, "status_code", status.take()),
                    (s_url, "url", url.map(Json::from)),
                ] {
                    if let Some(value) = value {
                        put(&mut fields, &mut extra, slot, key, value);
                    }
                }
                if let Some(start) = start {
                    extra.insert("start", start);
                }
                EventType::Http
            }
            "longtask" => {
                let [s_kind, s_start, s_duration] = ids.long_task;
                fields.push((s_kind.0, Some(word("longtask"))));
                if let Some(name) = name {
                    extra.insert("name", Json::from(name));
                }
                if let Some(subtype) = subtype {
                    extra.insert("subtype", Json::from(subtype));
                }
                for (slot, key, value) in [
                    (s_start, "start", start),
                    (s_duration, "duration", duration),
                ] {
                    if let Some(value) = value {
                        put(&mut fields, &mut extra, slot, key, value);
                    }
                }
                EventType::LongTask
            }
            _ => {
                // Navigation phases, user timing, app spans: kept as
                // `custom` named by the span, its duration the value.
                fields.push((ids.custom_original_type.0, Some(Value::from(&*ty).into())));
                extra.remove("type");
                if let Some(name) = name {
                    put(
                        &mut fields,
                        &mut extra,
                        ids.custom_name,
                        "name",
                        Json::from(name),
                    );
                }
                if let Some(duration) = duration {
                    put(
                        &mut fields,
                        &mut extra,
                        ids.custom_value,
                        "duration",
                        duration,
                    );
                }
                if let Some(subtype) = subtype {
                    extra.insert("subtype", Json::from(subtype));
                }
                if let Some(start) = start {
                    extra.insert("start", start);
                }
                EventType::Custom
            }
        };
        if let Some(url) = url {
            http.insert("url", Json::from(url));
        }
        if let Some(status) = status {
            http.insert("status_code", status);
        }
        nest(&mut http, "response", response);
        nest(&mut context, "http", http);
        keep_rest(&mut extra, "context", context);
        keep_all(&mut extra, span);
        // After its kind's fields, whose ids (`rum.*`) are lower. After the
        // transaction's too: a trace id of its own wins.
        if let Some(id) = id {
            fields.push((ids.span_id, Some(id.into_owned().into())));
        }
        if let Some(trace) = trace_id {
            fields.push((ids.trace_id, Some(trace.into_owned().into())));
        }
        self.push(event_type, fields, extra, None)
    }

    /// A URL relative to the page of `view` made absolute.
    pub(super) fn resolve(&self, view: &Fields, relative: &str) -> String {
        let url_full = FieldId::of(schema::URL_FULL);
        let page = view
            .iter()
            .rev()
            .find(|(id, _)| *id == url_full)
            .map(|(_, v)| v.as_ref().and_then(|v| v.as_str()))
            .unwrap_or(self.shared_url.as_deref());
        page.and_then(|p| url::Url::parse(p).ok())
            .and_then(|base| base.join(relative).ok())
            .map_or_else(|| relative.to_owned(), String::from)
    }
}
