// EXPERIMENT, NOT PRODUCT CODE: a typed decode of the beacon, measured
// against the product's decode and the floor (docs/benchmarks.md, "A typed
// decode, measured" and "The twenty-eighth stop"). Compiled into the library
// as `sources::proto_decode` only with the `experiments` feature:
// - instructions: `cargo build --release --features experiments --example
//   beacon_instructions`, then `proto 1000` minus `proto 0` under callgrind,
//   as bench/instructions.sh does for `decode` and `floor`;
// - end to end: `bench/run.sh` targets `bare_typed` and `bare_typed_hop`
//   (examples/bare_warp_work modes `typed` and `typed_hop`).
//
// EXPERIMENT (not product code): the beacon read straight into typed,
// borrowed structs, keys dispatched at the reader, to measure how far above
// the floor (`read_json_only`) a decode of that shape lands.

use std::borrow::Cow;
use std::ops::Range;

use super::beacon_decoder::Limits;
use super::json_scan::{Scan, ScanError, Scanner};

type Str<'a> = Option<Cow<'a, str>>;

#[derive(Default)]
pub struct Beacon<'a> {
    pub v: Option<i64>,
    pub sent_at: Option<i64>,
    pub app_name: Str<'a>,
    pub app_version: Str<'a>,
    pub app_env: Str<'a>,
    pub session_id: Str<'a>,
    pub view_id: Str<'a>,
    pub view_url: Str<'a>,
    pub view_title: Str<'a>,
    pub view_referrer: Str<'a>,
    /// `url.scheme`, `url.domain`, `url.path`, `url.query` as ranges of `view_url`.
    pub url_parts: [Option<Range<usize>>; 4],
    pub events: Vec<Event<'a>>,
    pub ignored: usize,
}

pub struct Event<'a> {
    pub ts: Option<i64>,
    pub seq: u32,
    pub payload: Payload<'a>,
    /// Unknown keys and the raw text of their values (`rum.extra`).
    pub extra: Vec<(Cow<'a, str>, Range<usize>)>,
}

pub enum Payload<'a> {
    PageView(Box<PageView<'a>>),
    Vital(Vital<'a>),
    Resource(Resource<'a>),
    Http(Http<'a>),
    Action(Action<'a>),
    Error(Error<'a>),
    Custom(Str<'a>),
}

#[derive(Default)]
pub struct PageView<'a> {
    pub navigation_type: Str<'a>,
    pub protocol: Str<'a>,
    pub timings: [Option<f64>; 13],
}

#[derive(Default)]
pub struct Vital<'a> {
    pub name: Str<'a>,
    pub rating: Str<'a>,
    pub id: Str<'a>,
    pub navigation_type: Str<'a>,
    pub value: Option<f64>,
    pub delta: Option<f64>,
}

#[derive(Default)]
pub struct Resource<'a> {
    pub name: Str<'a>,
    pub initiator_type: Str<'a>,
    pub render_blocking: Str<'a>,
    pub duration: Option<f64>,
    pub transfer_size: Option<f64>,
}

#[derive(Default)]
pub struct Http<'a> {
    pub kind: Str<'a>,
    pub method: Str<'a>,
    pub url: Str<'a>,
    pub status: Option<i64>,
    pub duration: Option<f64>,
    pub size: Option<f64>,
}

#[derive(Default)]
pub struct Action<'a> {
    pub kind: Str<'a>,
    pub target: Str<'a>,
}

#[derive(Default)]
pub struct Error<'a> {
    pub message: Str<'a>,
    pub name: Str<'a>,
    pub stack: Str<'a>,
    pub count: Option<i64>,
}

/// Decodes `body`; `None` when it is not a beacon this experiment reads.
pub fn decode(body: &[u8]) -> Option<usize> {
    let beacon = decode_beacon(std::str::from_utf8(body).ok()?)?;
    Some(beacon.events.len() + beacon.ignored)
}

/// The beacon `text` holds, its strings borrowed from it.
pub fn decode_beacon(text: &str) -> Option<Beacon<'_>> {
    let limits = Limits::new(16 * 1024, 16);
    let mut sc = Scanner::new(text, &limits);
    let beacon = read_beacon(&mut sc).ok()?;
    sc.end().ok()?;
    Some(beacon)
}

fn string<'a>(sc: &mut Scanner<'a, '_>) -> Scan<Str<'a>> {
    match sc.peek()? {
        b'"' => {
            let text = sc.string()?;
            sc.limits.string::<ScanError>(text.len())?;
            Ok(Some(text))
        }
        _ => {
            // Not a string: kept aside in a real decoder; skipped here.
            sc.skip(4)?;
            Ok(None)
        }
    }
}

fn float(sc: &mut Scanner<'_, '_>) -> Scan<Option<f64>> {
    match sc.peek()? {
        b'-' | b'0'..=b'9' => Ok(sc.number()?.as_f64()),
        _ => {
            sc.skip(4)?;
            Ok(None)
        }
    }
}

fn int(sc: &mut Scanner<'_, '_>) -> Scan<Option<i64>> {
    match sc.peek()? {
        b'-' | b'0'..=b'9' => Ok(sc.number()?.as_i64()),
        _ => {
            sc.skip(4)?;
            Ok(None)
        }
    }
}

fn read_beacon<'a>(sc: &mut Scanner<'a, '_>) -> Scan<Beacon<'a>> {
    let mut b = Beacon::default();
    sc.begin_object(1)?;
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        match &*key {
            "v" => b.v = int(sc)?,
            "sent_at" => b.sent_at = int(sc)?,
            "app" => object(sc, 2, |sc, key| {
                match key {
                    "name" => b.app_name = string(sc)?,
                    "version" => b.app_version = string(sc)?,
                    "env" => b.app_env = string(sc)?,
                    _ => {
                        sc.skip(3)?;
                        b.ignored += 1;
                    }
                }
                Ok(())
            })?,
            "session" => object(sc, 2, |sc, key| {
                match key {
                    "id" => b.session_id = string(sc)?,
                    _ => {
                        sc.skip(3)?;
                        b.ignored += 1;
                    }
                }
                Ok(())
            })?,
            "view" => object(sc, 2, |sc, key| {
                match key {
                    "id" => b.view_id = string(sc)?,
                    "url" => b.view_url = string(sc)?,
                    "title" => b.view_title = string(sc)?,
                    "referrer" => b.view_referrer = string(sc)?,
                    _ => {
                        sc.skip(3)?;
                        b.ignored += 1;
                    }
                }
                Ok(())
            })?,
            "events" => read_events(sc, &mut b.events)?,
            _ => {
                sc.skip(2)?;
                b.ignored += 1;
            }
        }
    }
    if let Some(url) = &b.view_url {
        b.url_parts = split_url(url);
    }
    Ok(b)
}

/// The plain split of a page URL (scheme, host, path, query), as
/// `url_parts::Parts::plain` reads the common case.
fn split_url(url: &str) -> [Option<Range<usize>>; 4] {
    let Some(scheme_end) = url.find("://") else {
        return [None, None, None, None];
    };
    let host_start = scheme_end + 3;
    let rest = &url[host_start..];
    let host_end = host_start + rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let path_end = host_end
        + url[host_end..]
            .find(['?', '#'])
            .unwrap_or(url.len() - host_end);
    let query = url[path_end..]
        .strip_prefix('?')
        .map(|q| path_end + 1..path_end + 1 + q.find('#').unwrap_or(q.len()));
    [
        Some(0..scheme_end),
        Some(host_start..host_end),
        Some(host_end..path_end),
        query,
    ]
}

/// An object at `depth` whose keys go to `each`; anything else is skipped.
fn object<'a>(
    sc: &mut Scanner<'a, '_>,
    depth: usize,
    mut each: impl FnMut(&mut Scanner<'a, '_>, &str) -> Scan<()>,
) -> Scan<()> {
    if sc.peek()? != b'{' {
        return sc.skip(depth);
    }
    sc.begin_object(depth)?;
    let mut first = true;
    while let Some(key) = sc.key(first)? {
        first = false;
        each(sc, &key)?;
    }
    Ok(())
}

fn read_events<'a>(sc: &mut Scanner<'a, '_>, events: &mut Vec<Event<'a>>) -> Scan<()> {
    if sc.peek()? != b'[' {
        return sc.skip(2);
    }
    sc.begin_array(2)?;
    events.reserve(16);
    let mut first = true;
    let mut seq = 0;
    while sc.element(first)? {
        first = false;
        if sc.peek()? != b'{' {
            sc.skip(3)?;
            continue;
        }
        sc.begin_object(3)?;
        // `type` first, as every client sends it (a real decoder falls back
        // to a general reading otherwise).
        let Some(key) = sc.key(true)? else {
            continue;
        };
        if key != "type" {
            return sc.syntax("type first");
        }
        let type_name = string(sc)?;
        let mut event = Event {
            ts: None,
            seq,
            payload: match type_name.as_deref() {
                Some("page_view") => Payload::PageView(Box::default()),
                Some("web_vital") => Payload::Vital(Vital::default()),
                Some("resource") => Payload::Resource(Resource::default()),
                Some("http") => Payload::Http(Http::default()),
                Some("action") => Payload::Action(Action::default()),
                Some("error") => Payload::Error(Error::default()),
                _ => Payload::Custom(type_name),
            },
            extra: Vec::new(),
        };
        seq += 1;
        while let Some(key) = sc.key(false)? {
            if key == "ts" {
                event.ts = int(sc)?;
                continue;
            }
            let known = match &mut event.payload {
                Payload::PageView(p) => page_view(sc, &key, p)?,
                Payload::Vital(p) => vital(sc, &key, p)?,
                Payload::Resource(p) => resource(sc, &key, p)?,
                Payload::Http(p) => http(sc, &key, p)?,
                Payload::Action(p) => action(sc, &key, p)?,
                Payload::Error(p) => error(sc, &key, p)?,
                Payload::Custom(_) => false,
            };
            if !known {
                let start = sc.position();
                sc.skip(4)?;
                event.extra.push((key, start..sc.position()));
            }
        }
        events.push(event);
    }
    Ok(())
}

const TIMINGS: [&str; 13] = [
    "redirect",
    "dns",
    "tcp",
    "tls",
    "ttfb",
    "response",
    "dom_interactive",
    "dom_content_loaded",
    "dom_complete",
    "load",
    "transfer_size",
    "encoded_size",
    "decoded_size",
];

fn page_view<'a>(sc: &mut Scanner<'a, '_>, key: &str, p: &mut PageView<'a>) -> Scan<bool> {
    match key {
        "navigation_type" => p.navigation_type = string(sc)?,
        "protocol" => p.protocol = string(sc)?,
        _ => match TIMINGS.iter().position(|t| *t == key) {
            Some(i) => p.timings[i] = float(sc)?,
            None => return Ok(false),
        },
    }
    Ok(true)
}

fn vital<'a>(sc: &mut Scanner<'a, '_>, key: &str, p: &mut Vital<'a>) -> Scan<bool> {
    match key {
        "name" => p.name = string(sc)?,
        "value" => p.value = float(sc)?,
        "rating" => p.rating = string(sc)?,
        "delta" => p.delta = float(sc)?,
        "id" => p.id = string(sc)?,
        "navigation_type" => p.navigation_type = string(sc)?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn resource<'a>(sc: &mut Scanner<'a, '_>, key: &str, p: &mut Resource<'a>) -> Scan<bool> {
    match key {
        "name" => p.name = string(sc)?,
        "initiator_type" => p.initiator_type = string(sc)?,
        "render_blocking" => p.render_blocking = string(sc)?,
        "duration" => p.duration = float(sc)?,
        "transfer_size" => p.transfer_size = float(sc)?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn http<'a>(sc: &mut Scanner<'a, '_>, key: &str, p: &mut Http<'a>) -> Scan<bool> {
    match key {
        "kind" => p.kind = string(sc)?,
        "method" => p.method = string(sc)?,
        "url" => p.url = string(sc)?,
        "status" => p.status = int(sc)?,
        "duration" => p.duration = float(sc)?,
        "size" => p.size = float(sc)?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn action<'a>(sc: &mut Scanner<'a, '_>, key: &str, p: &mut Action<'a>) -> Scan<bool> {
    match key {
        "kind" => p.kind = string(sc)?,
        "target" => p.target = string(sc)?,
        _ => return Ok(false),
    }
    Ok(true)
}

fn error<'a>(sc: &mut Scanner<'a, '_>, key: &str, p: &mut Error<'a>) -> Scan<bool> {
    match key {
        "message" => p.message = string(sc)?,
        "name" => p.name = string(sc)?,
        "stack" => p.stack = string(sc)?,
        "count" => p.count = int(sc)?,
        _ => return Ok(false),
    }
    Ok(true)
}
