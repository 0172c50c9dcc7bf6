//! The Faro payload on the wire, read in one pass within the limits: the
//! top level, the item arrays, each item's keys, times and nested maps.

use super::*;

//
// Depths as `check_json_shape` counts them: the body is 1, each kind's array
// 2, its items 3 and their values 4.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Measurement,
    Exception,
    Log,
    Event,
}

impl Kind {
    fn parse(key: &str) -> Option<Kind> {
        Some(match key {
            "measurements" => Kind::Measurement,
            "exceptions" => Kind::Exception,
            "logs" => Kind::Log,
            "events" => Kind::Event,
            _ => return None,
        })
    }

    fn key(self) -> &'static str {
        match self {
            Kind::Measurement => "measurements",
            Kind::Exception => "exceptions",
            Kind::Log => "logs",
            Kind::Event => "events",
        }
    }

    /// The keys an item of this kind cannot do without, and their types.
    pub(super) fn check(self, index: usize, item: &Item<'_>) -> Result<(), DecodeError> {
        let wrong = |key: &str, what: &str| {
            invalid(format!("{}[{index}].{key} must be {what}", self.key()))
        };
        let need_string = |key: &str| match item.get(key) {
            Some(Json::String(_)) => Ok(()),
            _ => Err(wrong(key, "a string")),
        };
        match self {
            Kind::Measurement => {
                need_string("type")?;
                match item.object("values") {
                    Some(values) if values.iter().all(|(_, v)| v.is_number()) => Ok(()),
                    _ => Err(wrong("values", "an object of numbers")),
                }
            }
            Kind::Exception => {
                need_string("type")?;
                need_string("value")
            }
            Kind::Log => need_string("message"),
            Kind::Event => need_string("name"),
        }
    }
}

pub(super) struct Parse {
    pub(super) limits: Limits,
    pub(super) max_items: usize,
    /// Why the body was refused when it is not a limit (shape, count).
    pub(super) refused: RefCell<Option<DecodeError>>,
}

impl Parse {
    fn refuse<E: de::Error>(&self, error: DecodeError) -> E {
        let message = error.message.clone();
        *self.refused.borrow_mut() = Some(error);
        E::custom(message)
    }
}

#[derive(Default)]
pub(super) struct WireBody<'de> {
    /// Read as a light tree: most of it goes into the context, and only
    /// what is left becomes `serde_json` values (`rum.extra.meta`).
    pub(super) meta: Option<Json<'de>>,
    /// Items of the four kinds, in body order, with their index in their array.
    pub(super) items: Vec<(Kind, usize, Item<'de>)>,
    pub(super) traces: Traces,
    /// Top-level keys Faro does not send, as sent.
    pub(super) unknown: Vec<(Cow<'de, str>, Value)>,
}

/// The body (depth 1), read straight from the scanner.
pub(super) fn read_body<'de>(sc: &mut Scanner<'de, '_>, parse: &Parse) -> Scan<WireBody<'de>> {
    let not_a_body = || {
        parse.refuse(invalid(
            "the body must be a Faro payload object ({\"meta\": …})",
        ))
    };
    match sc.peek()? {
        b'{' => {}
        b'[' => return Err(not_a_body()),
        _ => return sc.skip_scalar(false).and_then(|()| Err(not_a_body())),
    }
    sc.begin_object(1)?;
    let mut body = WireBody::default();
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        if let Some(kind) = Kind::parse(&key) {
            // A repeated key: both arrays are kept (nothing is lost).
            read_items(sc, parse, kind, &mut body.items)?;
            continue;
        }
        match &*key {
            "meta" => body.meta = Some(read_tree(sc, 2)?),
            "traces" => body.traces = count_spans(sc, &parse.limits, 2, SPAN_PATH)?,
            _ => {
                let value = sc.value(2)?;
                body.unknown.push((key, value));
            }
        }
    }
    Ok(body)
}

/// One kind's array (depth 2); items go straight into the body's list.
fn read_items<'de>(
    sc: &mut Scanner<'de, '_>,
    parse: &Parse,
    kind: Kind,
    out: &mut Vec<(Kind, usize, Item<'de>)>,
) -> Scan<()> {
    let not_an_array = || parse.refuse(invalid(format!("`{}` must be an array", kind.key())));
    match sc.peek()? {
        b'[' => {}
        b'{' => return Err(not_an_array()),
        _ => return sc.skip_scalar(false).and_then(|()| Err(not_an_array())),
    }
    sc.begin_array(2)?;
    let mut index = 0;
    while sc.element(index == 0)? {
        let item = read_item(sc, parse, kind, index)?;
        if out.len() == parse.max_items {
            // Not parsed past this point.
            return Err(parse.refuse(too_many(parse.max_items)));
        }
        out.push((kind, index, item));
        index += 1;
    }
    Ok(())
}

/// One item object (depth 3); its values are at depth 4.
fn read_item<'de>(
    sc: &mut Scanner<'de, '_>,
    parse: &Parse,
    kind: Kind,
    index: usize,
) -> Scan<Item<'de>> {
    let not_an_object =
        || parse.refuse(invalid(format!("{}[{index}] is not an object", kind.key())));
    match sc.peek()? {
        b'{' => {}
        b'[' => return Err(not_an_object()),
        _ => return sc.skip_scalar(false).and_then(|()| Err(not_an_object())),
    }
    sc.begin_object(3)?;
    let mut item = ItemReader {
        pairs: PairList::with_capacity(8),
        objects: Vec::new(),
        time: None,
    };
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        if key == "timestamp" {
            // Parsed from the body's text, never allocated.
            item.time = Some(read_time(sc)?);
            continue;
        }
        if let Some(nested) = NESTED.iter().find(|n| **n == key) {
            match read_nested(sc, 4)? {
                Nested::Object(pairs) => item.set_object(nested, pairs),
                Nested::Value(value) => item.set(key, value),
            }
            continue;
        }
        let value = read_tree(sc, 4)?;
        item.set(key, value);
    }
    Ok(item.finish())
}

/// An item's `timestamp`: epoch ms when it is an ISO 8601 string, else the
/// value as sent (within the limits).
fn read_time(sc: &mut Scanner<'_, '_>) -> Scan<Result<i64, Value>> {
    if sc.peek()? == b'"' {
        let text = sc.string()?;
        sc.limits.string::<ScanError>(text.len())?;
        return Ok(parse_time(&text).ok_or_else(|| Value::from(&*text)));
    }
    Ok(Err(sc.value(4)?))
}

/// A `NESTED` value: an object as a key/value list, anything else as a value.
pub(super) enum Nested<'de> {
    Object(Pairs<'de>),
    Value(Json<'de>),
}

/// A `NESTED` value at `depth`, within the limits.
fn read_nested<'de>(sc: &mut Scanner<'de, '_>, depth: usize) -> Scan<Nested<'de>> {
    Ok(match read_tree(sc, depth)? {
        Json::Object(pairs) => Nested::Object(pairs),
        value => Nested::Value(value),
    })
}

/// Where OTLP-JSON keeps its spans: `resourceSpans[].scopeSpans[].spans[]`.
const SPAN_PATH: &[&str] = &["resourceSpans", "scopeSpans", "spans"];

/// `traces` as `count_spans` would see it, read within the limits without
/// building it: `None` for `null`, `Some(Ok(spans))` for an object,
/// `Some(Err(()))` for anything else (refused by `decode`).
pub(super) type Traces = Option<Result<usize, ()>>;

/// An object at `depth` whose `path[0]` is a list of objects whose
/// `path[1]` ... ; the last key's arrays are counted. Everything else in
/// it is skipped (checked against the limits, never allocated). As in a JSON
/// object, a repeated key counts once, its last value.
fn count_spans(
    sc: &mut Scanner<'_, '_>,
    limits: &Limits,
    depth: usize,
    path: &'static [&'static str],
) -> Scan<Traces> {
    match sc.peek()? {
        b'{' => {}
        b'n' => return sc.literal(b"null").map(|()| None),
        b'[' => return sc.skip(depth).map(|()| Some(Err(()))),
        _ => return sc.skip_scalar(true).map(|()| Some(Err(()))),
    }
    sc.begin_object(depth)?;
    let mut count = 0;
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        match path.split_first() {
            Some((head, rest)) if key == *head => {
                count = count_in_list(sc, limits, depth + 1, rest)?;
            }
            _ => sc.skip(depth + 1)?,
        }
    }
    Ok(Some(Ok(count)))
}

/// A list under one of `SPAN_PATH`'s keys: with keys left, the sum over
/// its objects; at the end of the path, its length. Not a list: 0.
fn count_in_list(
    sc: &mut Scanner<'_, '_>,
    limits: &Limits,
    depth: usize,
    rest: &'static [&'static str],
) -> Scan<usize> {
    match sc.peek()? {
        b'[' => {}
        b'{' => return sc.skip(depth).map(|()| 0),
        _ => return sc.skip_scalar(true).map(|()| 0),
    }
    sc.begin_array(depth)?;
    let child = depth + 1;
    let mut total = 0;
    let mut first = true;
    while sc.element(first)? {
        first = false;
        if rest.is_empty() {
            sc.skip(child)?;
            total += 1;
        } else if let Some(Ok(n)) = count_spans(sc, limits, child, rest)? {
            // An element that is no object holds no spans.
            total += n;
        }
    }
    Ok(total)
}
