//! Faro items → events: the `Builder` that turns each measurement,
//! exception, log and event into one event of the beacon's context.

use std::collections::HashSet;

use super::*;
use crate::sources::json_tree::push_u64;

/// Builds the events of one request on its shared context.
pub(super) struct Builder {
    pub(super) context: Counted<Context>,
    pub(super) received_ms: i64,
    /// Added to each item's time: the receive time less the newest item's.
    pub(super) skew_ms: i64,
    pub(super) earliest_ms: i64,
    /// What is left of `meta`, as JSON text (written once), for the
    /// `rum.extra` of every event that has its own.
    pub(super) meta_extra: Option<Vec<u8>>,
    pub(super) events: EventBlock,
    /// Longest stack text written from an exception's frames (the
    /// source's `max_string_bytes`): a frame of 3 bytes (`{}`) writes 19.
    pub(super) max_stack_bytes: usize,
}

impl Builder {
    /// One event; `rum.seq` is its position among the request's events.
    pub(super) fn push(
        &mut self,
        ty: EventType,
        client_ts: Option<i64>,
        mut fields: Vec<(FieldId, Option<FieldValue>)>,
        extra: Obj<'_>,
    ) {
        let ids = &*IDS;
        fields.push((ids.seq, Some(Value::from(self.events.len() as u64).into())));
        if !extra.is_empty() {
            // An own `rum.extra` hides the context's: carry `meta` along.
            let meta = self.meta_extra.as_deref().map(|text| ("meta", text));
            fields.push((ids.extra, Some(extra.to_field_value(meta))));
        }
        let at = client_ts
            .map(|ts| {
                ts.saturating_add(self.skew_ms)
                    .clamp(self.earliest_ms, self.received_ms)
            })
            .unwrap_or(self.received_ms);
        self.events
            .push(self.context.clone(), Some(at), client_ts, ty, fields);
    }

    /// `timestamp` → the item's time; one that does not parse is kept.
    pub(super) fn time(item: &mut Item<'_>, extra: &mut Obj<'_>) -> Option<i64> {
        match item.time.take()? {
            Ok(ms) => Some(ms),
            Err(value) => {
                extra.insert("timestamp", Json::from(value));
                None
            }
        }
    }

    /// The item's `trace` (set while `@grafana/faro-web-tracing` has a
    /// span open) as `trace.id` and `span.id`; what is left of the item,
    /// for `rum.extra`.
    pub(super) fn rest<'de>(
        mut item: Item<'de>,
        fields: &mut Vec<(FieldId, Option<FieldValue>)>,
        extra: &mut Obj<'de>,
    ) {
        if let Some(mut trace) = item.take_pairs("trace") {
            let ids = &*IDS;
            for (key, id) in [("trace_id", ids.trace_id), ("span_id", ids.span_id)] {
                match trace.remove(key) {
                    Some(Json::String(value)) => {
                        fields.push((id, Some(Value::from(value.into_owned()).into())))
                    }
                    Some(other) => trace.insert(key, other),
                    None => {}
                }
            }
            if !trace.is_empty() {
                extra.insert("trace", Json::Object(trace));
            }
        }
        extra.merge(item.pairs, |value| !value.is_null());
        for (key, pairs) in item.objects {
            extra.insert(key, Json::Object(pairs));
        }
    }

    pub(super) fn measurement(&mut self, mut item: Item<'_>) {
        let ids = &*IDS;
        let mut extra = Obj::new();
        let ts = Self::time(&mut item, &mut extra);
        let ty = item.take("type").unwrap_or_default();
        let values = item.take_object("values").unwrap_or_default();
        let mut vitals: Vec<(&'static str, Json<'_>)> = Vec::new();
        let mut others = Pairs::new();
        if ty.as_str() == Some("web-vitals") {
            for (key, value) in values {
                match VITALS.iter().find(|(k, _)| *k == key) {
                    Some((_, vital)) if value.is_number() => vitals.push((vital, value)),
                    _ => others.push_unique(key, value),
                }
            }
        } else {
            others = values;
        }
        if vitals.is_empty() {
            // A measurement of the page's own (`pushMeasurement`), or a
            // web-vitals one without a known vital: `custom`.
            let mut fields = vec![
                (ids.custom.name, Some(ty.into())),
                (ids.custom.original_type, Some(text("measurement"))),
            ];
            if let Some(v @ Json::Number(_)) = others.single() {
                fields.push((ids.custom.value, Some(v.clone().into())));
            }
            fields.push((ids.custom.data, Some(others.to_field_value(None))));
            Self::rest(item, &mut fields, &mut extra);
            self.push(EventType::Custom, ts, fields, extra);
            return;
        }
        // Room for `delta`, the context's slots, the attribution, then
        // each event's name and value: no growing on the way.
        let mut shared: Vec<(FieldId, Option<FieldValue>)> = Vec::with_capacity(12);
        let mut attribution = Obj::new();
        for (key, value) in others {
            if key == "delta" {
                shared.push((ids.vital_delta, Some(Value::from(value).into())));
            } else {
                // `others`' keys are unique: none is in yet.
                attribution.push_unique(key, value);
            }
        }
        if let Some(context) = item.take_object("context") {
            // A key `values` has too keeps the measured value in the
            // attribution; the context's is kept in `rum.extra.context`.
            // Looked up in a set: a lookup in the attribution per context
            // key was quadratic in a crafted measurement.
            let measured: HashSet<&str> = attribution.iter().map(|(k, _)| k).collect();
            let (clash, fresh): (Vec<_>, Vec<_>) = fill(context, &ids.vital_context, &mut shared)
                .into_iter()
                .partition(|(key, _)| measured.contains(&**key));
            let mut clashing = Obj::new();
            for (key, value) in clash {
                clashing.push_unique(key, value);
            }
            for (key, value) in fresh {
                attribution.push_unique(key, value);
            }
            if !clashing.is_empty() {
                extra.insert("context", Json::Object(clashing));
            }
        }
        if !attribution.is_empty() {
            shared.push((
                ids.vital_attribution,
                Some(attribution.to_field_value(None)),
            ));
        }
        Self::rest(item, &mut shared, &mut extra);
        let last = vitals.len() - 1;
        let mut shared = Some(shared);
        for (i, (vital, value)) in vitals.into_iter().enumerate() {
            let mut fields = if i == last {
                shared.take().unwrap_or_default()
            } else {
                shared.clone().unwrap_or_default()
            };
            fields.push((ids.vital_name, Some(text(vital))));
            fields.push((ids.vital_value, Some(Value::from(value).into())));
            let extra = if i == last {
                std::mem::take(&mut extra)
            } else {
                extra.clone()
            };
            self.push(EventType::WebVital, ts, fields, extra);
        }
    }

    pub(super) fn exception(&mut self, mut item: Item<'_>) {
        let ids = &*IDS;
        let mut extra = Obj::new();
        let ts = Self::time(&mut item, &mut extra);
        let ty = item.take("type").unwrap_or_default();
        let message = item.take("value").unwrap_or_default();
        let mut fields = Vec::with_capacity(8);
        let mut stack = String::new();
        if let (Some(t), Some(m)) = (ty.as_str(), message.as_str()) {
            stack.push_str(t);
            stack.push_str(": ");
            stack.push_str(m);
            // Each within `max_string_bytes`, the two together up to twice
            // it: the text's head is cut there (both are whole in their
            // own fields).
            if stack.len() > self.max_stack_bytes {
                let mut cut = self.max_stack_bytes;
                while !stack.is_char_boundary(cut) {
                    cut -= 1;
                }
                stack.truncate(cut);
            }
        }
        match item.take("stacktrace") {
            None | Some(Json::Null) => {}
            Some(stacktrace) => {
                let frames = stacktrace.get("frames").and_then(Json::as_array);
                let mut whole =
                    frames.is_some() && stacktrace.as_object().is_some_and(|m| m.len() == 1);
                for (i, frame) in frames.into_iter().flatten().enumerate() {
                    let before = stack.len();
                    whole &= render_frame(frame, &mut stack);
                    // The text is full: the frames are kept as sent.
                    let full = stack.len() > self.max_stack_bytes;
                    if full {
                        stack.truncate(before);
                        whole = false;
                    }
                    if i == 0 {
                        let string = |k| frame.get(k).and_then(Json::as_str);
                        // `rum.error.line`/`column` are `long`, which is
                        // signed: a larger number stays in the stack text.
                        let number = |k| {
                            frame
                                .get(k)
                                .and_then(Json::as_u64)
                                .filter(|n| i64::try_from(*n).is_ok())
                        };
                        if let Some(file) = string("filename") {
                            fields.push((ids.error_source, Some(Value::from(file).into())));
                        }
                        if let Some(line) = number("lineno") {
                            fields.push((ids.error_line, Some(Value::from(line).into())));
                        }
                        if let Some(column) = number("colno") {
                            fields.push((ids.error_column, Some(Value::from(column).into())));
                        }
                    }
                    if full {
                        break;
                    }
                }
                // Frames with keys the text does not show are kept whole.
                if !whole {
                    extra.insert("stacktrace", stacktrace);
                }
            }
        }
        fields.push((ids.error_type, Some(ty.into())));
        fields.push((ids.error_message, Some(message.into())));
        fields.push((ids.error_kind, Some(text("exception"))));
        if !stack.is_empty() {
            fields.push((ids.error_stack, Some(Value::from(stack).into())));
        }
        Self::rest(item, &mut fields, &mut extra);
        self.push(EventType::Error, ts, fields, extra);
    }

    pub(super) fn log(&mut self, mut item: Item<'_>) {
        let ids = &*IDS;
        let mut extra = Obj::new();
        let ts = Self::time(&mut item, &mut extra);
        let message = item.take("message").unwrap_or_default();
        let level = item.take("level");
        if level.as_ref().and_then(Json::as_str) == Some("error") {
            let mut fields = vec![
                (ids.error_message, Some(message.into())),
                (ids.error_kind, Some(text("log"))),
            ];
            Self::rest(item, &mut fields, &mut extra);
            self.push(EventType::Error, ts, fields, extra);
            return;
        }
        let mut data = Obj::new();
        data.insert("message", message);
        if let Some(level) = level {
            data.insert("level", level);
        }
        let mut fields = vec![
            (ids.custom.name, Some(text("log"))),
            (ids.custom.original_type, Some(text("log"))),
            (ids.custom.data, Some(data.to_field_value(None))),
        ];
        Self::rest(item, &mut fields, &mut extra);
        self.push(EventType::Custom, ts, fields, extra);
    }

    pub(super) fn event(&mut self, mut item: Item<'_>) {
        let ids = &*IDS;
        let mut extra = Obj::new();
        let ts = Self::time(&mut item, &mut extra);
        let name = item.take("name").unwrap_or_default();
        // Every event the SDK makes says `"domain": "browser"`: kept only
        // when it says something else.
        if let Some(domain) = item.take("domain") {
            if domain.as_str() != Some("browser") {
                extra.insert("domain", domain);
            }
        }
        // A non-object `attributes` stays in the item, for `rum.extra`.
        let attributes = item.take_object("attributes");
        let ty = EVENT_TYPES
            .iter()
            .find(|(n, _)| Some(*n) == name.as_str())
            .map_or(EventType::Custom, |(_, t)| *t);
        let mut fields = Vec::with_capacity(16);
        match ty {
            EventType::Custom => {
                fields.push((ids.custom.name, Some(name.into())));
                fields.push((ids.custom.original_type, Some(text("event"))));
                if let Some(attributes) = attributes {
                    fields.push((ids.custom.data, Some(attributes.to_field_value(None))));
                }
            }
            _ => {
                let slots = match ty {
                    EventType::PageView => &ids.navigation,
                    EventType::Resource => &ids.resource,
                    _ => &ids.user_action,
                };
                if let Some(attributes) = attributes {
                    let rest = fill(attributes, slots, &mut fields);
                    if !rest.is_empty() {
                        extra.insert("attributes", Json::Object(rest));
                    }
                }
            }
        }
        Self::rest(item, &mut fields, &mut extra);
        self.push(ty, ts, fields, extra);
    }
}

/// One frame as a V8 stack line (`    at fn (file:line:col)`); false when
/// the frame has keys the line does not show.
fn render_frame(frame: &Json<'_>, out: &mut String) -> bool {
    let Some(map) = frame.as_object() else {
        return false;
    };
    let known = ["filename", "function", "lineno", "colno"];
    let function = map.get("function").and_then(Json::as_str).unwrap_or("?");
    let file = map
        .get("filename")
        .and_then(Json::as_str)
        .unwrap_or("<anonymous>");
    out.push_str("\n    at ");
    if function != "?" && !function.is_empty() {
        out.push_str(function);
        out.push_str(" (");
    }
    out.push_str(file);
    if let Some(line) = map.get("lineno").and_then(Json::as_u64) {
        out.push(':');
        push_u64(out, line);
        if let Some(column) = map.get("colno").and_then(Json::as_u64) {
            out.push(':');
            push_u64(out, column);
        }
    }
    if function != "?" && !function.is_empty() {
        out.push(')');
    }
    // A column is written only after a line: without one it is not shown.
    let line = map.get("lineno").is_some();
    map.iter().all(|(k, v)| {
        known.contains(&k)
            && match k {
                "lineno" => v.is_u64(),
                "colno" => v.is_u64() && line,
                _ => v.is_string(),
            }
    })
}
