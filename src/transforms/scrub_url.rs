//! Transform `scrub_url`: takes secrets and personal data out of every URL an
//! event carries before it is stored — credentials (`user:pass@`), query and
//! fragment parameters named like secrets (`token`, `email`, ...), and values
//! that look like e-mail addresses, JWTs or card numbers wherever they sit —
//! then re-derives `url.*` and a low-cardinality `url.path_template`.
//!
//! A URL that parses stays a valid URL (the output is the WHATWG
//! serialization, what browsers send). One that does not parse is left as is
//! and counted as `component_errors_total{error_type="unparseable_url"}`.
//!
//! Cost: the page URL and referrer sit in the context a beacon's events
//! share, so they are scrubbed once per beacon; other URLs go through a
//! bounded memo, so a script or API URL seen before costs one lookup.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Deserialize;
use url::Url;

use super::{FunctionTransform, TransformContext};
use crate::config::CheckConfig;
use crate::event::{Batch, Context, Event, FieldPath};
use crate::schema;
use crate::sources::beacon_decoder::set_url_fields;
use crate::telemetry::Counter;

/// What happens to a parameter whose name is in `params`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ParamAction {
    /// Keep the name, replace the value: `token=REDACTED`.
    #[default]
    Redact,
    /// Drop the whole `name=value` pair.
    Remove,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrubUrlConfig {
    /// Fields holding one URL each. `url.full` is special: its parts
    /// (`url.domain`, `url.path`, ...) and `url.path_template` are re-derived.
    #[serde(default = "default_fields")]
    pub fields: Vec<String>,
    /// Fields of free text (stack traces) in which every `http://` and
    /// `https://` URL is scrubbed in place; the rest of the text is untouched.
    #[serde(default = "default_text_fields")]
    pub text_fields: Vec<String>,
    /// Query, fragment and `;`-parameter names whose values are secrets.
    /// Compared case-insensitively after percent-decoding; `user[password]`
    /// and `token[]` match `password` and `token`. Setting it replaces the
    /// default list.
    #[serde(default = "default_params")]
    pub params: Vec<String>,
    /// More names on top of `params`, to extend the defaults without repeating them.
    #[serde(default)]
    pub extra_params: Vec<String>,
    /// `redact` (keep the name, replace the value) or `remove` (drop the pair).
    #[serde(default)]
    pub param_action: ParamAction,
    /// What a secret is replaced with. Only unreserved URL characters
    /// (letters, digits, `-._~`), so a scrubbed URL needs no escaping.
    #[serde(default = "default_replacement")]
    pub replacement: String,
    /// Redact values that look like e-mail addresses, JWTs or card-like digit
    /// runs wherever they appear: path segments, parameter values, fragment.
    #[serde(default = "crate::config::default_true")]
    pub redact_values: bool,
    /// Shortest run of digits redacted as card-like (spaces, `-` or `+` may
    /// group them). 13 also catches millisecond timestamps (cache busters).
    #[serde(default = "default_min_digit_run")]
    pub min_digit_run: usize,
    /// Drop the fragment (`#...`) entirely. Without it, the fragment is
    /// scrubbed like a path and query (`#access_token=...` is always caught).
    #[serde(default)]
    pub strip_fragment: bool,
    /// Write `url.path_template`, derived from the scrubbed `url.full`.
    #[serde(default = "crate::config::default_true")]
    pub path_template: bool,
    /// Route patterns tried, in order, before the id heuristics:
    /// `/product/{slug}` (a `{name}` matches one segment and becomes `:name`),
    /// `/docs/*` (a final `*` matches any rest).
    #[serde(default)]
    pub routes: Vec<String>,
}

fn default_fields() -> Vec<String> {
    [
        schema::URL_FULL,
        schema::HTTP_REFERRER,
        schema::RUM_RESOURCE_NAME,
        schema::RUM_HTTP_URL,
        schema::CSP_BLOCKED_URI,
        schema::CSP_DOCUMENT_URI,
        schema::CSP_SOURCE_FILE,
    ]
    .map(String::from)
    .to_vec()
}

fn default_text_fields() -> Vec<String> {
    vec![schema::ERROR_STACK_TRACE.to_owned()]
}

/// The names the issue lists, plus the two session cookies servlet and PHP
/// stacks put into URLs (`;jsessionid=`, `?PHPSESSID=`).
pub const DEFAULT_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "id_token",
    "refresh_token",
    "password",
    "passwd",
    "pwd",
    "secret",
    "session",
    "sessionid",
    "sid",
    "email",
    "auth",
    "key",
    "apikey",
    "api_key",
    "code",
    "state",
    "signature",
    "sig",
    "jsessionid",
    "phpsessid",
];

fn default_params() -> Vec<String> {
    DEFAULT_PARAMS.iter().map(|s| (*s).to_owned()).collect()
}
fn default_replacement() -> String {
    "REDACTED".to_owned()
}
fn default_min_digit_run() -> usize {
    13
}

impl CheckConfig for ScrubUrlConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.replacement.is_empty()
            || !self
                .replacement
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            problems.push((
                "replacement",
                format!(
                    "`{}` must be non-empty and use only letters, digits, `-`, `.`, `_`, `~`",
                    self.replacement
                ),
            ));
        }
        if self.min_digit_run < 6 {
            problems.push((
                "min_digit_run",
                format!(
                    "{} would redact ordinary numbers; use 6 or more",
                    self.min_digit_run
                ),
            ));
        }
        for (key, list) in [("fields", &self.fields), ("text_fields", &self.text_fields)] {
            if list
                .iter()
                .any(|f| f.is_empty() || f.split('.').any(str::is_empty))
            {
                problems.push((key, "field paths must be non-empty dotted names".to_owned()));
            }
        }
        if self
            .params
            .iter()
            .chain(&self.extra_params)
            .any(|p| p.trim().is_empty())
        {
            problems.push(("params", "parameter names must be non-empty".to_owned()));
        }
        for route in &self.routes {
            if let Err(e) = Route::parse(route) {
                problems.push(("routes", e));
            }
        }
        problems
    }
}

impl ScrubUrlConfig {
    pub fn build(&self, cx: &TransformContext) -> anyhow::Result<ScrubUrl> {
        if let Some((key, problem)) = self.check().into_iter().next() {
            anyhow::bail!("`{key}`: {problem}");
        }
        let routes = self
            .routes
            .iter()
            .map(|r| Route::parse(r).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let compiled = |list: &[String]| -> Vec<ScrubField> {
            list.iter()
                .map(|path| ScrubField {
                    path: path.clone(),
                    slot: FieldPath::resolve(path),
                })
                .collect()
        };
        Ok(ScrubUrl {
            fields: compiled(&self.fields),
            text_fields: compiled(&self.text_fields),
            scrubber: UrlScrubber {
                params: self
                    .params
                    .iter()
                    .chain(&self.extra_params)
                    .map(|p| p.trim().to_lowercase())
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                action: self.param_action,
                replacement: self.replacement.clone(),
                redact_values: self.redact_values,
                min_digit_run: self.min_digit_run,
                strip_fragment: self.strip_fragment,
            },
            templates: self.path_template.then(|| PathTemplate {
                routes,
                replacement: self.replacement.clone(),
            }),
            unparseable: cx.metrics.errors("unparseable_url", "processing"),
            pages: Memo::new(),
            urls: Memo::new(),
            texts: Memo::new(),
        })
    }
}

/// The runtime part.
pub struct ScrubUrl {
    fields: Vec<ScrubField>,
    text_fields: Vec<ScrubField>,
    scrubber: UrlScrubber,
    /// `None` when `path_template = false`.
    templates: Option<PathTemplate>,
    /// `component_errors_total{error_type="unparseable_url",stage="processing"}`.
    unparseable: Counter,
    /// Outcomes of recent page URLs (with their template), other URLs and
    /// texts. Every event of a beacon repeats the page URL and referrer, and
    /// the same scripts, API calls and stack traces recur across sessions,
    /// so most lookups are hits.
    pages: Memo<Outcome>,
    urls: Memo<Outcome>,
    texts: Memo<(Option<String>, u64)>,
}

/// Bytes of keys and values each memo may hold; past it, it starts over.
const MEMO_MAX_BYTES: usize = 2 * 1024 * 1024;

/// A bounded map from input text to what scrubbing made of it. Cleared
/// whole when full: simpler than LRU, and a burst of unique URLs costs one
/// refill, not a slower steady state. Values are shared (`Arc`) so a hit
/// costs one hash and no copy.
struct Memo<V> {
    map: HashMap<String, Arc<V>>,
    bytes: usize,
}

impl<V> Memo<V> {
    fn new() -> Self {
        Self {
            map: HashMap::new(),
            bytes: 0,
        }
    }

    fn get_or_insert(
        &mut self,
        key: &str,
        size: impl Fn(&V) -> usize,
        make: impl FnOnce() -> V,
    ) -> Arc<V> {
        if let Some(hit) = self.map.get(key) {
            return hit.clone();
        }
        let value = Arc::new(make());
        let cost = key.len() + size(&value) + 64;
        if self.bytes + cost > MEMO_MAX_BYTES {
            self.map.clear();
            self.bytes = 0;
        }
        self.bytes += cost;
        self.map.insert(key.to_owned(), value.clone());
        value
    }
}

impl Outcome {
    fn size(&self) -> usize {
        let url = match &self.url {
            Scrubbed::Changed(s) => s.len(),
            _ => 0,
        };
        url + self.template.as_ref().map_or(0, String::len)
    }
}

/// A configured field: its path (for writes and messages) and its slot,
/// resolved once (`None`: no document can have it, so nothing to scrub).
struct ScrubField {
    path: String,
    slot: Option<FieldPath>,
}

impl ScrubField {
    fn get_own<'e>(&self, event: &'e Event) -> Option<&'e str> {
        event.get_own_field(self.slot.as_ref()?)?.as_str()
    }

    fn set(&self, event: &mut Event, text: &str) {
        match &self.slot {
            Some(FieldPath::Slot { id, rest }) if rest.is_empty() => event.set(*id, text),
            _ => event.insert(&self.path, text),
        }
    }
}

/// The scrubbed version of one beacon context, handed to all its events.
struct ContextScrub {
    /// Held so its address cannot be reused by another context while the
    /// next events are compared against it.
    original: Arc<Context>,
    /// `None` when scrubbing changed nothing.
    replacement: Option<Arc<Context>>,
    unparseable: u64,
}

impl ScrubUrl {
    /// The page URL and referrer live in the context a beacon's events
    /// share: scrub it once per beacon, not once per event.
    fn scrub_context(&mut self, shared: &Arc<Context>) -> ContextScrub {
        let mut context = Event::editing(shared);
        let unparseable = self.scrub_event(&mut context);
        let context = context.into_context();
        let replacement = (context != **shared).then(|| Arc::new(context));
        ContextScrub {
            original: shared.clone(),
            replacement,
            unparseable,
        }
    }

    /// Scrubs the event's own fields; returns how many URLs did not parse.
    fn scrub_event(&mut self, event: &mut Event) -> u64 {
        let mut unparseable = 0;
        for field in &self.fields {
            let Some(text) = field.get_own(event) else {
                continue;
            };
            let is_page = field.path == schema::URL_FULL;
            let (memo, templates) = if is_page {
                (&mut self.pages, self.templates.as_ref())
            } else {
                (&mut self.urls, None)
            };
            let scrubber = &self.scrubber;
            let outcome =
                memo.get_or_insert(text, Outcome::size, || scrubber.scrub(text, templates));
            match &outcome.url {
                Scrubbed::Unparseable => unparseable += 1,
                Scrubbed::Changed(new) if is_page => set_url_fields(event, new),
                Scrubbed::Changed(new) => field.set(event, new),
                Scrubbed::Unchanged => {
                    if is_page && event.get(schema::URL_DOMAIN).is_none() {
                        let same = text.to_owned();
                        set_url_fields(event, &same);
                    }
                }
            }
            if let Some(template) = &outcome.template {
                event.insert(schema::URL_PATH_TEMPLATE, template.as_str());
            }
        }
        for field in &self.text_fields {
            let Some(text) = field.get_own(event) else {
                continue;
            };
            let scrubber = &self.scrubber;
            let outcome = self.texts.get_or_insert(
                text,
                |(new, _)| new.as_ref().map_or(0, String::len),
                || scrubber.scrub_text(text),
            );
            let (new, failed) = &*outcome;
            unparseable += failed;
            if let Some(new) = new {
                field.set(event, new);
            }
        }
        unparseable
    }
}

impl FunctionTransform for ScrubUrl {
    fn transform_batch(&mut self, batch: &mut Batch) {
        let mut unparseable = 0;
        // The events of a beacon arrive together: remember the last context.
        let mut last: Option<ContextScrub> = None;
        for event in batch.iter_mut() {
            let seen = last
                .as_ref()
                .is_some_and(|l| Arc::ptr_eq(&l.original, event.context()));
            if !seen {
                let shared = event.context().clone();
                last = Some(self.scrub_context(&shared));
            }
            if let Some(context) = &last {
                unparseable += context.unparseable;
                if let Some(replacement) = &context.replacement {
                    event.set_context(replacement.clone());
                }
            }
            unparseable += self.scrub_event(event);
        }
        if unparseable > 0 {
            self.unparseable.add(unparseable);
        }
    }
}

/// What became of one URL.
#[derive(Debug, PartialEq, Eq)]
pub enum Scrubbed {
    /// Nothing to remove; the text is kept byte for byte.
    Unchanged,
    Changed(String),
    /// Not a URL the WHATWG parser accepts (nor a relative reference); left as is.
    Unparseable,
}

pub struct Outcome {
    pub url: Scrubbed,
    /// The path template of the scrubbed URL, when one was asked for.
    pub template: Option<String>,
}

/// Characters escaped when a scrubbed component is written back: everything
/// but unreserved characters and the sub-delimiters that never separate
/// parameters. `+` is left alone because it is never decoded either.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b',')
    .remove(b':')
    .remove(b'@')
    .remove(b'+');

/// The URL rules, independent of events (the bench and tests drive it directly).
pub struct UrlScrubber {
    /// Lower-cased secret parameter names (a short list: a scan beats hashing).
    params: Vec<String>,
    action: ParamAction,
    replacement: String,
    redact_values: bool,
    min_digit_run: usize,
    strip_fragment: bool,
}

/// What to do with one `name=value` pair.
enum Pair {
    Same,
    Replace(String),
    Remove,
}

impl UrlScrubber {
    pub fn scrub(&self, input: &str, templates: Option<&PathTemplate>) -> Outcome {
        match Url::parse(input) {
            Ok(url) => self.scrub_absolute(url, input, templates),
            // `//cdn.example.com/x` keeps its authority: scrub it as https and
            // take the scheme off again.
            Err(url::ParseError::RelativeUrlWithoutBase) if input.starts_with("//") => {
                match Url::parse(&format!("https:{input}")) {
                    Ok(url) => {
                        let outcome = self.scrub_absolute(url, input, templates);
                        let url = match outcome.url {
                            Scrubbed::Changed(s) => match s.strip_prefix("https:") {
                                Some(rest) if rest == input => Scrubbed::Unchanged,
                                Some(rest) => Scrubbed::Changed(rest.to_owned()),
                                None => Scrubbed::Changed(s),
                            },
                            other => other,
                        };
                        Outcome { url, ..outcome }
                    }
                    Err(_) => Outcome {
                        url: Scrubbed::Unparseable,
                        template: None,
                    },
                }
            }
            Err(url::ParseError::RelativeUrlWithoutBase) => self.scrub_relative(input, templates),
            Err(_) => Outcome {
                url: Scrubbed::Unparseable,
                template: None,
            },
        }
    }

    fn scrub_absolute(
        &self,
        mut url: Url,
        input: &str,
        templates: Option<&PathTemplate>,
    ) -> Outcome {
        if url.cannot_be_a_base() {
            return Outcome {
                url: self.scrub_opaque(&url, input),
                template: None,
            };
        }
        // Credentials are never kept, whatever the configuration.
        let mut dirty = !url.username().is_empty() || url.password().is_some();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        if let Some(path) = self.scrub_path(url.path()) {
            url.set_path(&path);
            dirty = true;
        }
        if let Some(query) = url.query() {
            if let Some(new) = self.scrub_pairs(query) {
                url.set_query((!new.is_empty()).then_some(new.as_str()));
                dirty = true;
            }
        }
        if let Some(fragment) = url.fragment() {
            if self.strip_fragment {
                url.set_fragment(None);
                dirty = true;
            } else if let Some(new) = self.scrub_fragment(fragment) {
                url.set_fragment(Some(&new));
                dirty = true;
            }
        }
        let template = templates.map(|t| t.template(url.path()));
        // Untouched URLs keep their exact bytes; scrubbed ones come out in
        // the parser's serialization (what browsers send themselves).
        let url = match dirty {
            true if url.as_str() != input => Scrubbed::Changed(url.into()),
            _ => Scrubbed::Unchanged,
        };
        Outcome { url, template }
    }

    /// `mailto:`, `tel:`, `javascript:`, `about:` — no hierarchy, only values.
    /// `data:` URLs are payloads (images, fonts), not addresses: left alone.
    fn scrub_opaque(&self, url: &Url, input: &str) -> Scrubbed {
        if url.scheme() == "data" {
            return Scrubbed::Unchanged;
        }
        let path = self.redact_component(url.path());
        let mut out = format!("{}:{}", url.scheme(), path.as_deref().unwrap_or(url.path()));
        if let Some(query) = url.query() {
            let query = self.scrub_pairs(query).unwrap_or_else(|| query.to_owned());
            if !query.is_empty() {
                out.push('?');
                out.push_str(&query);
            }
        }
        if let Some(fragment) = url.fragment().filter(|_| !self.strip_fragment) {
            out.push('#');
            out.push_str(
                &self
                    .scrub_fragment(fragment)
                    .unwrap_or_else(|| fragment.to_owned()),
            );
        }
        match Url::parse(&out) {
            Ok(clean) if clean.as_str() == input => Scrubbed::Unchanged,
            Ok(clean) => Scrubbed::Changed(clean.as_str().to_owned()),
            // Cannot happen with the escaping above; never hand back the secret.
            Err(_) => Scrubbed::Changed(format!("{}:{}", url.scheme(), self.replacement)),
        }
    }

    /// A relative reference (`/api/x?token=1`, `img.png`, CSP's `inline`):
    /// scrubbed part by part and kept relative.
    fn scrub_relative(&self, input: &str, templates: Option<&PathTemplate>) -> Outcome {
        let (rest, fragment) = match input.split_once('#') {
            Some((r, f)) => (r, Some(f)),
            None => (input, None),
        };
        let (path, query) = match rest.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (rest, None),
        };
        let new_path = self.scrub_path(path);
        let new_query = query.and_then(|q| self.scrub_pairs(q));
        let new_fragment = match fragment {
            Some(_) if self.strip_fragment => Some(None),
            Some(f) => self.scrub_fragment(f).map(Some),
            None => None,
        };
        let path = new_path.as_deref().unwrap_or(path);
        let template = templates.map(|t| t.template(path));
        if new_path.is_none() && new_query.is_none() && new_fragment.is_none() {
            return Outcome {
                url: Scrubbed::Unchanged,
                template,
            };
        }
        let mut out = String::with_capacity(input.len());
        out.push_str(path);
        match (new_query.as_deref(), query) {
            (Some(""), _) => {}
            (Some(q), _) | (None, Some(q)) => {
                out.push('?');
                out.push_str(q);
            }
            (None, None) => {}
        }
        match (new_fragment, fragment) {
            (Some(None), _) => {}
            (Some(Some(f)), _) => {
                out.push('#');
                out.push_str(&f);
            }
            (None, Some(f)) => {
                out.push('#');
                out.push_str(f);
            }
            (None, None) => {}
        }
        Outcome {
            url: Scrubbed::Changed(out),
            template,
        }
    }

    /// Every `/` segment, each with its `;name=value` parameters.
    fn scrub_path(&self, path: &str) -> Option<String> {
        // Nothing is allocated until a segment changes; the clean prefix is
        // copied then.
        let mut out: Option<String> = None;
        let mut offset = 0;
        for segment in path.split('/') {
            match (self.scrub_segment(segment), &mut out) {
                (Some(new), None) => {
                    let mut started = String::with_capacity(path.len() + 16);
                    started.push_str(&path[..offset]);
                    started.push_str(&new);
                    out = Some(started);
                }
                (Some(new), Some(o)) => o.push_str(&new),
                (None, Some(o)) => o.push_str(segment),
                (None, None) => {}
            }
            offset += segment.len();
            if offset < path.len() {
                offset += 1;
                if let Some(o) = &mut out {
                    o.push('/');
                }
            }
        }
        out
    }

    /// One path segment and its `;name=value` parameters.
    fn scrub_segment(&self, segment: &str) -> Option<String> {
        if !segment.contains(';') {
            return self.redact_component(segment);
        }
        let mut parts = segment.split(';');
        let head = parts.next().unwrap_or_default();
        let mut changed = false;
        let mut out = match self.redact_component(head) {
            Some(new) => {
                changed = true;
                new
            }
            None => head.to_owned(),
        };
        for param in parts {
            match self.scrub_pair(param) {
                Pair::Same => push_param(&mut out, param),
                Pair::Replace(new) => {
                    changed = true;
                    push_param(&mut out, &new);
                }
                Pair::Remove => changed = true,
            }
        }
        changed.then_some(out)
    }

    /// A query (or a fragment holding parameters): pairs split on `&` and
    /// `;`, each kept, redacted or removed. A kept pair is written after the
    /// separator that preceded it; a removed pair takes that separator along.
    fn scrub_pairs(&self, query: &str) -> Option<String> {
        // Allocated at the first pair that changes; the clean prefix before it
        // is copied without its last separator, which is kept in
        // `separator_before` for the next pair written.
        let mut out: Option<String> = None;
        let mut written_any = false;
        let mut separator_before: Option<char> = None;
        let mut start = 0;
        loop {
            let rest = &query[start..];
            let (pair, separator) = match rest.find(['&', ';']) {
                Some(i) => (&rest[..i], Some(char::from(rest.as_bytes()[i]))),
                None => (rest, None),
            };
            let result = self.scrub_pair(pair);
            if out.is_none() && !matches!(result, Pair::Same) {
                out = Some(String::with_capacity(query.len()));
                if let Some(o) = &mut out {
                    o.push_str(&query[..start.saturating_sub(1)]);
                }
                written_any = start > 0;
            }
            if let Some(o) = &mut out {
                let kept: Option<Cow<str>> = match result {
                    Pair::Same => Some(Cow::Borrowed(pair)),
                    Pair::Replace(new) => Some(Cow::Owned(new)),
                    Pair::Remove => None,
                };
                if let Some(kept) = kept {
                    if let (true, Some(sep)) = (written_any, separator_before) {
                        o.push(sep);
                    }
                    o.push_str(&kept);
                    written_any = true;
                }
            }
            separator_before = separator;
            if separator.is_none() {
                break;
            }
            start += pair.len() + 1;
        }
        out
    }

    fn scrub_pair(&self, pair: &str) -> Pair {
        let (name, value) = match pair.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (pair, None),
        };
        if self.is_secret_name(name) {
            return match (self.action, value) {
                (ParamAction::Remove, _) => Pair::Remove,
                // A bare flag (`?token`) or an empty value carries nothing.
                (ParamAction::Redact, None) => Pair::Same,
                (ParamAction::Redact, Some(v)) if v.is_empty() || v == self.replacement => {
                    Pair::Same
                }
                (ParamAction::Redact, Some(_)) => {
                    Pair::Replace(format!("{name}={}", self.replacement))
                }
            };
        }
        let new_name = self.redact_component(name);
        let new_value = value.and_then(|v| self.redact_component(v));
        if new_name.is_none() && new_value.is_none() {
            return Pair::Same;
        }
        let mut out = new_name.unwrap_or_else(|| name.to_owned());
        if let Some(value) = value {
            out.push('=');
            out.push_str(new_value.as_deref().unwrap_or(value));
        }
        Pair::Replace(out)
    }

    /// `Token`, `%74oken`, `token[]`, `user[token]` all name `token`.
    fn is_secret_name(&self, raw: &str) -> bool {
        let known = |name: &str| self.params.iter().any(|p| p.eq_ignore_ascii_case(name));
        // Plain ASCII names (nearly all) need no decoding or allocation.
        if raw.bytes().all(|b| b.is_ascii() && b != b'%' && b != b'[') {
            return known(raw.trim());
        }
        let decoded = percent_decode_str(raw).decode_utf8_lossy();
        let name = decoded.trim().to_lowercase();
        let name = name.strip_suffix("[]").unwrap_or(&name);
        if known(name) {
            return true;
        }
        match name.rfind('[') {
            Some(open) if name.ends_with(']') => known(&name[open + 1..name.len() - 1]),
            _ => false,
        }
    }

    /// The fragment: `#access_token=...&state=...` (parameters),
    /// `#/route?x=1` (hash router: a path and a query), or a plain anchor.
    fn scrub_fragment(&self, fragment: &str) -> Option<String> {
        if let Some((route, query)) = fragment.split_once('?') {
            let new_route = self.scrub_path(route);
            let new_query = self.scrub_pairs(query);
            if new_route.is_none() && new_query.is_none() {
                return None;
            }
            let route = new_route.as_deref().unwrap_or(route);
            return Some(match new_query.as_deref() {
                Some("") => route.to_owned(),
                Some(q) => format!("{route}?{q}"),
                None => format!("{route}?{query}"),
            });
        }
        if fragment.contains('=') {
            self.scrub_pairs(fragment)
        } else {
            self.scrub_path(fragment)
        }
    }

    /// One encoded component (segment, name or value): decoded, searched for
    /// sensitive values, re-encoded only when something was replaced.
    fn redact_component(&self, raw: &str) -> Option<String> {
        if !self.redact_values || !may_hold_values(raw.as_bytes(), self.min_digit_run) {
            return None;
        }
        let decoded = percent_decode_str(raw).decode_utf8_lossy();
        let replaced = redact_values(&decoded, self.min_digit_run, &self.replacement)?;
        Some(utf8_percent_encode(&replaced, COMPONENT).to_string())
    }

    /// Scrubs the `http(s)://` URLs inside free text, keeping the
    /// `:line:column` suffix of stack frames. Returns the new text, if any
    /// URL changed, and how many URLs did not parse.
    pub fn scrub_text(&self, text: &str) -> (Option<String>, u64) {
        let mut out = String::new();
        let mut copied = 0;
        let mut unparseable = 0;
        let mut search = 0;
        while let Some(found) = find_url_start(text, search) {
            let end = text[found..]
                .find(|c: char| c.is_whitespace() || "\"'<>()`\\{}|^[]".contains(c))
                .map_or(text.len(), |n| found + n);
            let (url, _suffix) = split_position_suffix(&text[found..end]);
            let url_end = found + url.len();
            match self.scrub(url, None).url {
                Scrubbed::Changed(new) => {
                    out.push_str(&text[copied..found]);
                    out.push_str(&new);
                    copied = url_end;
                }
                Scrubbed::Unparseable => unparseable += 1,
                Scrubbed::Unchanged => {}
            }
            search = end.max(found + 1);
        }
        if copied == 0 {
            return (None, unparseable);
        }
        out.push_str(&text[copied..]);
        (Some(out), unparseable)
    }
}

/// A cheap over-approximation of `redact_values` on still-encoded text:
/// false means it certainly finds nothing, so clean components cost one scan.
fn may_hold_values(raw: &[u8], min_digit_run: usize) -> bool {
    let mut digits = 0;
    for (i, b) in raw.iter().enumerate() {
        match b {
            // `%` may hide an `@` or anything else: decode to be sure.
            b'@' | b'%' => return true,
            b'0'..=b'9' => {
                digits += 1;
                if digits >= min_digit_run {
                    return true;
                }
            }
            b'e' if raw[i..].starts_with(b"eyJ") => return true,
            _ => {}
        }
    }
    false
}

fn push_param(out: &mut String, param: &str) {
    out.push(';');
    out.push_str(param);
}

fn find_url_start(text: &str, from: usize) -> Option<usize> {
    let mut at = from;
    while let Some(n) = text.get(at..)?.find("http") {
        let start = at + n;
        let rest = &text[start + 4..];
        if rest.starts_with("://") || rest.starts_with("s://") {
            return Some(start);
        }
        at = start + 4;
    }
    None
}

/// `https://x/app.js:10:5` → (`https://x/app.js`, `:10:5`); trailing
/// sentence punctuation goes to the suffix too. A `:8080` right after the
/// host is a port, not a line number.
fn split_position_suffix(candidate: &str) -> (&str, &str) {
    let mut url = candidate.trim_end_matches(['.', ',', ';', '!', '?']);
    for _ in 0..2 {
        let Some(colon) = url.rfind(':') else { break };
        let digits = &url[colon + 1..];
        let has_path = url[..colon]
            .split_once("://")
            .is_some_and(|(_, after)| after.contains('/'));
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) && has_path {
            url = &url[..colon];
        } else {
            break;
        }
    }
    (url, &candidate[url.len()..])
}

/// Replaces e-mail addresses, JWTs and long digit runs in decoded text.
/// Returns `None` when there is none. Linear in the text length.
pub fn redact_values(text: &str, min_digit_run: usize, replacement: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut spans: Vec<(usize, usize)> = Vec::new();
    find_emails(bytes, &mut spans);
    find_jwts(bytes, &mut spans);
    find_digit_runs(bytes, min_digit_run, &mut spans);
    if spans.is_empty() {
        return None;
    }
    spans.sort_unstable();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    for (start, end) in spans {
        if end <= copied {
            continue;
        }
        if start >= copied {
            out.push_str(&text[copied..start]);
            out.push_str(replacement);
        }
        copied = end;
    }
    out.push_str(&text[copied..]);
    Some(out)
}

fn is_local_part(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"._%+-".contains(&b)
}
fn is_domain_part(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'.' || b == b'-'
}
fn is_b64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// `local@domain.tld`: a local part, and a dotted domain ending in a label of
/// two or more letters.
fn find_emails(bytes: &[u8], spans: &mut Vec<(usize, usize)>) {
    for (at, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'@') {
        let mut start = at;
        while start > 0 && is_local_part(bytes[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < bytes.len() && is_domain_part(bytes[end]) {
            end += 1;
        }
        while end > at + 1 && matches!(bytes[end - 1], b'.' | b'-') {
            end -= 1;
        }
        let domain = &bytes[at + 1..end];
        let tld_ok = domain
            .iter()
            .rposition(|b| *b == b'.')
            .map(|dot| &domain[dot + 1..])
            .is_some_and(|tld| tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic));
        if start < at && tld_ok && domain.first().is_some_and(u8::is_ascii_alphanumeric) {
            spans.push((start, end));
        }
    }
}

/// `eyJ<header>.<payload>.<signature>` (base64url of `{"`), and the
/// five-part JWE form. Each candidate start is scanned once.
fn find_jwts(bytes: &[u8], spans: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i + 3 <= bytes.len() {
        if &bytes[i..i + 3] != b"eyJ" || (i > 0 && is_b64url(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let run = |from: usize| from + bytes[from..].iter().take_while(|b| is_b64url(**b)).count();
        let header_end = run(i);
        let mut parts = 1;
        let mut end = header_end;
        while end < bytes.len() && bytes[end] == b'.' && parts < 5 {
            let next = run(end + 1);
            // The payload may not be empty; a `none` JWT has an empty signature.
            if next == end + 1 && parts == 1 {
                break;
            }
            end = next;
            parts += 1;
        }
        if parts >= 3 && header_end - i >= 10 {
            spans.push((i, end));
            i = end;
        } else {
            i = header_end.max(i + 1);
        }
    }
}

/// At least `min` digits, possibly grouped by single spaces, `-` or `+`
/// (`4111 1111 1111 1111`), not glued to letters (so ids like `a456-...`
/// inside a UUID do not count).
fn find_digit_runs(bytes: &[u8], min: usize, spans: &mut Vec<(usize, usize)>) {
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_alphanumeric()) {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = 0;
        let mut j = i;
        loop {
            while j < bytes.len() && bytes[j].is_ascii_digit() {
                j += 1;
                digits += 1;
            }
            let grouped = j + 1 < bytes.len()
                && matches!(bytes[j], b' ' | b'-' | b'+')
                && bytes[j + 1].is_ascii_digit();
            if grouped {
                j += 1;
            } else {
                break;
            }
        }
        let end = j;
        let glued = end < bytes.len() && bytes[end].is_ascii_alphabetic();
        if digits >= min && !glued {
            spans.push((start, end));
        }
        i = end.max(i + 1);
    }
}

/// `url.path_template`: route patterns first, then id heuristics per segment.
pub struct PathTemplate {
    routes: Vec<Route>,
    /// A segment holding a redaction is an id by definition.
    replacement: String,
}

impl PathTemplate {
    /// The template of an encoded path (`/u/42/orders` → `/u/:id/orders`).
    /// Routes only apply to absolute paths; a relative one (`api/u/7`) gets
    /// the heuristics alone.
    pub fn template(&self, path: &str) -> String {
        let (root, body) = match path.strip_prefix('/') {
            Some(body) => ("/", body),
            None => ("", path),
        };
        // `;params` (`;jsessionid=...`) are never part of a template.
        let raw: Vec<&str> = body
            .split('/')
            .map(|s| s.split(';').next().unwrap_or_default())
            .collect();
        let decoded: Vec<Cow<str>> = raw
            .iter()
            .map(|s| percent_decode_str(s).decode_utf8_lossy())
            .collect();
        if !root.is_empty() {
            // A trailing slash does not make another route.
            let trimmed = match decoded.as_slice() {
                [rest @ .., last] if last.is_empty() => rest,
                all => all,
            };
            if let Some(route) = self.routes.iter().find(|r| r.matches(trimmed)) {
                return route.template.clone();
            }
        }
        let mut out = String::with_capacity(path.len());
        out.push_str(root);
        for (i, (raw, text)) in raw.iter().zip(&decoded).enumerate() {
            if i > 0 {
                out.push('/');
            }
            if is_id_like(text) || text.contains(self.replacement.as_str()) {
                out.push_str(":id");
            } else {
                out.push_str(raw);
            }
        }
        out
    }
}

#[derive(Debug, Clone, PartialEq)]
enum RouteSegment {
    Literal(String),
    Param,
    Rest,
}

#[derive(Debug, Clone)]
struct Route {
    segments: Vec<RouteSegment>,
    /// What a match writes: the pattern with `{name}` → `:name`.
    template: String,
}

impl Route {
    fn parse(pattern: &str) -> Result<Route, String> {
        let bad = |why: &str| Err(format!("route `{pattern}`: {why}"));
        if !pattern.starts_with('/') {
            return bad("must start with `/`");
        }
        if pattern.contains(['?', '#']) {
            return bad("a route is a path, without `?` or `#`");
        }
        let parts: Vec<&str> = pattern[1..].split('/').collect();
        let parts = match parts.as_slice() {
            [rest @ .., ""] => rest,
            all => all,
        };
        let mut segments = Vec::new();
        let mut template = String::new();
        for (i, part) in parts.iter().enumerate() {
            template.push('/');
            if *part == "*" {
                if i + 1 != parts.len() {
                    return bad("`*` may only be the last segment");
                }
                segments.push(RouteSegment::Rest);
                template.push('*');
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                {
                    return bad("a placeholder is `{name}` with letters, digits and `_`");
                }
                segments.push(RouteSegment::Param);
                template.push(':');
                template.push_str(name);
            } else if part.contains(['{', '}', '*']) {
                return bad("`{name}` and `*` must be whole segments");
            } else if part.is_empty() {
                return bad("empty segment (`//`)");
            } else {
                let decoded = percent_decode_str(part).decode_utf8_lossy().into_owned();
                segments.push(RouteSegment::Literal(decoded));
                template.push_str(part);
            }
        }
        if template.is_empty() {
            template.push('/');
        }
        Ok(Route { segments, template })
    }

    fn matches(&self, path: &[Cow<str>]) -> bool {
        let mut i = 0;
        for segment in &self.segments {
            match segment {
                RouteSegment::Rest => return true,
                RouteSegment::Param => match path.get(i) {
                    Some(s) if !s.is_empty() => {}
                    _ => return false,
                },
                RouteSegment::Literal(l) => match path.get(i) {
                    Some(s) if s == l => {}
                    _ => return false,
                },
            }
            i += 1;
        }
        i == path.len()
    }
}

/// Numbers, UUIDs, hex hashes of 16+, e-mail addresses, long random tokens.
pub fn is_id_like(segment: &str) -> bool {
    let b = segment.as_bytes();
    if b.is_empty() {
        return false;
    }
    if b.iter().all(u8::is_ascii_digit) {
        return true;
    }
    let is_uuid = b.len() == 36
        && b.iter().enumerate().all(|(i, c)| {
            if matches!(i, 8 | 13 | 18 | 23) {
                *c == b'-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if is_uuid || (b.len() >= 16 && b.iter().all(u8::is_ascii_hexdigit)) {
        return true;
    }
    if b.contains(&b'@') {
        let mut spans = Vec::new();
        find_emails(b, &mut spans);
        if !spans.is_empty() {
            return true;
        }
    }
    // Random tokens: one unbroken piece of 16+ letters and digits mixing
    // both, or of 32+ in any mix. Slugs (`blue-running-shoes-42`) are short words.
    b.iter().all(|c| is_b64url(*c))
        && segment.split(['-', '_']).any(|piece| {
            let p = piece.as_bytes();
            (p.len() >= 16
                && p.iter().any(u8::is_ascii_digit)
                && p.iter().any(u8::is_ascii_alphabetic))
                || p.len() >= 32
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{ComponentMetrics, Registry};
    use serde_json::json;

    fn config(toml_text: &str) -> ScrubUrlConfig {
        crate::config::decode(toml::from_str(toml_text).expect("toml")).expect("config")
    }

    fn transform(toml_text: &str) -> (ScrubUrl, ComponentMetrics) {
        let registry = Registry::new();
        let metrics = ComponentMetrics::new(&registry, "scrub", "transform", "scrub_url");
        let cx = TransformContext {
            id: "scrub".into(),
            metrics: metrics.clone(),
        };
        (config(toml_text).build(&cx).expect("build"), metrics)
    }

    fn scrubbed(toml_text: &str, url: &str) -> String {
        let (t, _) = transform(toml_text);
        match t.scrubber.scrub(url, None).url {
            Scrubbed::Unchanged => url.to_owned(),
            Scrubbed::Changed(s) => s,
            Scrubbed::Unparseable => panic!("{url} did not parse"),
        }
    }

    fn scrub(url: &str) -> String {
        scrubbed("", url)
    }

    fn template(routes: &[&str], path: &str) -> String {
        let (t, _) = transform(&format!("routes = {routes:?}"));
        t.templates.expect("on by default").template(path)
    }

    #[test]
    fn secret_params_are_redacted_by_name_in_any_case_and_encoding() {
        assert_eq!(
            scrub("https://shop.example.com/cart?item=42&Token=abc123&x=1"),
            "https://shop.example.com/cart?item=42&Token=REDACTED&x=1"
        );
        // `%74oken` is `token`; `%5F` is `_`.
        assert_eq!(
            scrub("https://e.com/?%74oken=abc&access%5Ftoken=def&API_KEY=ghi"),
            "https://e.com/?%74oken=REDACTED&access%5Ftoken=REDACTED&API_KEY=REDACTED"
        );
        // Nested names and array names.
        assert_eq!(
            scrub("https://e.com/login?user[password]=hunter2&ids[]=1&token[]=a"),
            "https://e.com/login?user[password]=REDACTED&ids[]=1&token[]=REDACTED"
        );
    }

    #[test]
    fn repeated_and_semicolon_params() {
        assert_eq!(
            scrub("https://e.com/p?code=1&q=shoes&code=2;sid=s3;lang=en"),
            "https://e.com/p?code=REDACTED&q=shoes&code=REDACTED;sid=REDACTED;lang=en"
        );
        // Path parameters (servlet session ids).
        assert_eq!(
            scrub("https://e.com/shop;jsessionid=0A1B2C3D/cart;color=red"),
            "https://e.com/shop;jsessionid=REDACTED/cart;color=red"
        );
    }

    #[test]
    fn remove_action_drops_pairs_and_empty_queries() {
        let remove = "param_action = \"remove\"";
        assert_eq!(
            scrubbed(remove, "https://e.com/p?a=1&token=x&b=2"),
            "https://e.com/p?a=1&b=2"
        );
        assert_eq!(
            scrubbed(remove, "https://e.com/p?token=x&b=2"),
            "https://e.com/p?b=2"
        );
        assert_eq!(
            scrubbed(remove, "https://e.com/p?a=1&token=x"),
            "https://e.com/p?a=1"
        );
        assert_eq!(
            scrubbed(remove, "https://e.com/p?token=x&sid=y"),
            "https://e.com/p"
        );
        assert_eq!(
            scrubbed(remove, "https://e.com/p?a=1;sid=y;b=2"),
            "https://e.com/p?a=1;b=2"
        );
        assert_eq!(
            scrubbed(remove, "https://e.com/s;jsessionid=1/x"),
            "https://e.com/s/x"
        );
    }

    #[test]
    fn values_that_look_sensitive_are_redacted_anywhere() {
        // E-mail in the path (encoded) and in a value of a harmless name.
        assert_eq!(
            scrub(
                "https://e.com/users/jane.doe%40example.com/profile?ref=bob%2Bx@mail.example.org"
            ),
            "https://e.com/users/REDACTED/profile?ref=REDACTED"
        );
        // A JWT under an innocent name, and card numbers plain or grouped.
        let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U";
        assert_eq!(
            scrub(&format!(
                "https://e.com/cb?x={jwt}&n=4111111111111111&m=4111+1111+1111+1111&y=2"
            )),
            "https://e.com/cb?x=REDACTED&n=REDACTED&m=REDACTED&y=2"
        );
        assert_eq!(
            scrub("https://e.com/pay/4111-1111-1111-1111/ok"),
            "https://e.com/pay/REDACTED/ok"
        );
        // Short numbers, dates, versions and UUIDs are not secrets.
        let harmless = "https://e.com/v1/items/123456/2024-01-15?page=2&id=0f8fad5b-d9cb-469f-a165-70867728950e&v=1.2.3";
        assert_eq!(scrub(harmless), harmless);
        // Only the sensitive part of a value goes.
        assert_eq!(
            scrub("https://e.com/?q=mail%20me%20at%20a@b.io%20please"),
            "https://e.com/?q=mail%20me%20at%20REDACTED%20please"
        );
        assert_eq!(
            scrubbed("redact_values = false", "https://e.com/u/a@b.io"),
            "https://e.com/u/a@b.io"
        );
    }

    #[test]
    fn userinfo_is_always_removed() {
        assert_eq!(scrub("https://admin:s3cret@e.com/x"), "https://e.com/x");
        assert_eq!(scrub("https://token@e.com/"), "https://e.com/");
        assert_eq!(
            scrubbed("params = []\nredact_values = false", "ftp://u:p@e.com/f"),
            "ftp://e.com/f"
        );
    }

    #[test]
    fn fragments_with_tokens_and_hash_routes() {
        assert_eq!(
            scrub("https://app.example.com/callback#access_token=ya29.abc&token_type=Bearer&expires_in=3599"),
            "https://app.example.com/callback#access_token=REDACTED&token_type=Bearer&expires_in=3599"
        );
        assert_eq!(
            scrub("https://e.com/#/reset?email=a%40b.com&step=2"),
            "https://e.com/#/reset?email=REDACTED&step=2"
        );
        assert_eq!(
            scrub("https://e.com/#/users/a@b.com/edit"),
            "https://e.com/#/users/REDACTED/edit"
        );
        assert_eq!(
            scrub("https://e.com/docs#section-2"),
            "https://e.com/docs#section-2"
        );
        assert_eq!(
            scrubbed("strip_fragment = true", "https://e.com/docs#section-2"),
            "https://e.com/docs"
        );
    }

    #[test]
    fn no_query_and_clean_urls_are_kept_byte_for_byte() {
        let (t, _) = transform("");
        for url in [
            "https://e.com",
            "HTTPS://E.com:443/a/../b",
            "https://bücher.example/",
            "https://e.com/",
            "https://e.com/a/b.html",
            "https://e.com/search?q=running+shoes&page=2",
            "https://e.com/?",
            "https://xn--bcher-kva.example/",
            "https://e.com/?=&&=x&token&token=&;;",
        ] {
            assert_eq!(
                t.scrubber.scrub(url, None).url,
                Scrubbed::Unchanged,
                "{url}"
            );
        }
    }

    #[test]
    fn idn_hosts_come_out_as_browsers_send_them() {
        // Browsers put the punycode host into location.href; a Unicode host
        // (hand-made reports) comes out the same way once it is scrubbed.
        assert_eq!(
            scrub("https://bücher.example/suche?email=a@b.de"),
            "https://xn--bcher-kva.example/suche?email=REDACTED"
        );
        assert_eq!(
            scrub("https://xn--bcher-kva.example/?sid=1"),
            "https://xn--bcher-kva.example/?sid=REDACTED"
        );
    }

    #[test]
    fn relative_urls_are_scrubbed_and_stay_relative() {
        assert_eq!(
            scrub("/api/orders?token=abc&page=2"),
            "/api/orders?token=REDACTED&page=2"
        );
        assert_eq!(scrub("api/u/a@b.io"), "api/u/REDACTED");
        assert_eq!(scrub("?sid=1#x"), "?sid=REDACTED#x");
        assert_eq!(
            scrub("//cdn.example.com/lib.js?key=k1"),
            "//cdn.example.com/lib.js?key=REDACTED"
        );
        assert_eq!(
            scrub("//user:pw@cdn.example.com/lib.js"),
            "//cdn.example.com/lib.js"
        );
        // CSP keywords are not URLs and not errors.
        let (t, _) = transform("");
        for keyword in ["inline", "eval", "self", "wasm-eval", "", "img.png"] {
            assert_eq!(
                t.scrubber.scrub(keyword, None).url,
                Scrubbed::Unchanged,
                "{keyword}"
            );
        }
    }

    #[test]
    fn opaque_urls() {
        assert_eq!(
            scrub("mailto:jane@example.com?subject=hi"),
            "mailto:REDACTED?subject=hi"
        );
        let data = "data:image/png;base64,eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln";
        assert_eq!(scrub(data), data);
        assert_eq!(scrub("about:blank"), "about:blank");
    }

    #[test]
    fn unparseable_urls_are_left_as_is_and_counted() {
        let (mut t, metrics) = transform("");
        let bad = "https://e.com:99999/x?token=abc";
        let mut batch = vec![
            Event::from(
                json!({"url": {"full": bad}, "http": {"request": {"referrer": "http://[::1/?sid=2"}}}),
            ),
            Event::from(json!({"rum": {"http": {"url": "https://ok.example/?token=1"}}})),
        ];
        t.transform_batch(&mut batch);
        assert_eq!(batch[0].get_str(schema::URL_FULL), Some(bad));
        assert_eq!(
            batch[0].get_str(schema::HTTP_REFERRER),
            Some("http://[::1/?sid=2")
        );
        assert_eq!(batch[0].get(schema::URL_PATH_TEMPLATE), None);
        assert_eq!(
            batch[1].get_str(schema::RUM_HTTP_URL),
            Some("https://ok.example/?token=REDACTED")
        );
        assert_eq!(
            metrics.registry().counter_sum(
                "component_errors_total",
                &[("component_id", "scrub"), ("error_type", "unparseable_url")]
            ),
            2
        );
    }

    #[test]
    fn scrubbed_urls_stay_valid_and_scrubbing_is_idempotent() {
        let urls = [
            "https://u:p@e.com/a%20b/jane@x.io;jsessionid=9?token=a b&q=%E2%9C%93&e=x%40y.io#access_token=t&z=1",
            "https://e.com/p?email=%ZZ&sid=%&q=%C3%28",
            "https://e.com/?=&&=x&token&token=&;;sid=1",
            "http://[2001:db8::1]:8080/x?key=1",
        ];
        let (t, _) = transform("");
        for url in urls {
            let once = match t.scrubber.scrub(url, None).url {
                Scrubbed::Changed(s) => s,
                other => panic!("{url}: {other:?}"),
            };
            let parsed = Url::parse(&once).unwrap_or_else(|e| panic!("{once}: {e}"));
            assert_eq!(parsed.as_str(), once, "serialization is stable");
            assert_eq!(
                t.scrubber.scrub(&once, None).url,
                Scrubbed::Unchanged,
                "{once}"
            );
            for secret in [
                "jane@x.io",
                "x@y.io",
                "x%40y.io",
                "=a b",
                "access_token=t",
                "u:p@",
                "key=1",
                "email=%ZZ",
                "sid=%&",
            ] {
                assert!(!once.contains(secret), "{secret} left in {once}");
            }
        }
    }

    #[test]
    fn url_full_rederives_parts_and_template() {
        let (mut t, _) = transform("routes = [\"/product/{slug}\"]");
        let mut batch = vec![Event::from(json!({
            "url": {
                "full": "https://bob:pw@shop.example.com/u/8812/orders/0f8fad5b-d9cb-469f-a165-70867728950e?sid=abc#frag",
                "domain": "stale", "path": "stale", "query": "sid=abc", "fragment": "frag"
            }
        }))];
        t.transform_batch(&mut batch);
        let e = &batch[0];
        assert_eq!(e.get_str(schema::URL_FULL), Some("https://shop.example.com/u/8812/orders/0f8fad5b-d9cb-469f-a165-70867728950e?sid=REDACTED#frag"));
        assert_eq!(e.get_str(schema::URL_DOMAIN), Some("shop.example.com"));
        assert_eq!(
            e.get_str(schema::URL_PATH),
            Some("/u/8812/orders/0f8fad5b-d9cb-469f-a165-70867728950e")
        );
        assert_eq!(e.get_str(schema::URL_QUERY), Some("sid=REDACTED"));
        assert_eq!(
            e.get_str(schema::URL_PATH_TEMPLATE),
            Some("/u/:id/orders/:id")
        );

        let mut batch = vec![Event::from(
            json!({"url": {"full": "https://shop.example.com/product/blue-shoe-42"}}),
        )];
        t.transform_batch(&mut batch);
        assert_eq!(
            batch[0].get_str(schema::URL_PATH_TEMPLATE),
            Some("/product/:slug")
        );
        // Parts are written when an upstream did not.
        assert_eq!(
            batch[0].get_str(schema::URL_PATH),
            Some("/product/blue-shoe-42")
        );

        let (mut off, _) = transform("path_template = false");
        let mut batch = vec![Event::from(json!({"url": {"full": "https://e.com/u/1"}}))];
        off.transform_batch(&mut batch);
        assert_eq!(batch[0].get(schema::URL_PATH_TEMPLATE), None);
    }

    #[test]
    fn events_sharing_a_beacon_context_are_scrubbed_each() {
        use crate::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
        let beacon = json!({
            "v": 1,
            "session": {"id": "s1"},
            "view": {"id": "v1", "url": "https://e.com/a?token=1#access_token=2", "referrer": "https://r.com/?sid=3"},
            "events": [
                {"type": "page_view"},
                {"type": "web_vital", "name": "LCP", "value": 1.0},
                // The final CLS of the previous page of an SPA carries its own view.
                {"type": "web_vital", "name": "CLS", "value": 0.1, "view": {"id": "v0", "url": "https://e.com/u/42?sid=9"}}
            ]
        });
        let facts = RequestFacts {
            received_at_ms: 1_700_000_000_000,
            client_ip: "203.0.113.9".parse().unwrap(),
            user_agent: None,
            client_hints: vec![],
        };
        let limits = BeaconLimits {
            max_events: 10,
            max_string_bytes: 1000,
            max_depth: 8,
            max_event_age_ms: 1000,
            max_context_bytes: 64 * 1024,
            client_ip: crate::privacy::ClientIpMode::Full,
        };
        let mut batch = decode(beacon.to_string().as_bytes(), &facts, &limits)
            .unwrap()
            .events;
        let (mut t, _) = transform("strip_fragment = true\nparam_action = \"remove\"");
        t.transform_batch(&mut batch);
        assert_eq!(batch.len(), 3);
        let own_view = batch.pop().unwrap().to_value();
        assert_eq!(own_view["url"]["full"], "https://e.com/u/42", "{own_view}");
        assert_eq!(own_view["url"]["path_template"], "/u/:id");
        assert!(own_view["url"].get("query").is_none(), "{own_view}");
        // Scrubbed once for the beacon: its events still share one context.
        assert!(Arc::ptr_eq(batch[0].context(), batch[1].context()));
        for event in &batch {
            let doc = event.to_value();
            assert_eq!(doc["url"]["full"], "https://e.com/a", "{doc}");
            assert_eq!(doc["url"]["path"], "/a");
            assert_eq!(doc["url"]["path_template"], "/a");
            assert!(doc["url"].get("query").is_none(), "{doc}");
            assert!(doc["url"].get("fragment").is_none(), "{doc}");
            assert_eq!(doc["http"]["request"]["referrer"], "https://r.com/");
            assert_eq!(doc["session"]["id"], "s1");
        }
    }

    #[test]
    fn memo_is_bounded_and_hits_count_like_misses() {
        let (mut t, metrics) = transform("");
        let long = "x".repeat(400);
        for _ in 0..3 {
            let mut batch: Batch = (0..3000)
                .map(|i| {
                    Event::from(json!({
                        "url": {"full": format!("https://e.com/{long}/?token={i}")},
                        "rum": {"http": {"url": "https://e.com:99999/"}}
                    }))
                })
                .collect();
            t.transform_batch(&mut batch);
            assert!(batch
                .iter()
                .all(|e| e.get_str(schema::URL_QUERY) == Some("token=REDACTED")));
            assert!(t.pages.bytes <= MEMO_MAX_BYTES && t.pages.map.len() < 9000);
        }
        let errors = metrics.registry().counter_sum(
            "component_errors_total",
            &[("error_type", "unparseable_url")],
        );
        assert_eq!(errors, 9000, "every occurrence counts, cached or not");
    }

    #[test]
    fn only_configured_fields_are_touched() {
        let (mut t, _) = transform("fields = [\"labels.link\"]\ntext_fields = []");
        let mut batch = vec![Event::from(json!({
            "labels": {"link": "https://e.com/?token=1"},
            "url": {"full": "https://e.com/?token=1"},
            "error": {"stack_trace": "at https://e.com/a.js?token=1:1:1"},
            "csp": {"blocked_uri": 42}
        }))];
        t.transform_batch(&mut batch);
        assert_eq!(
            batch[0].get_str("labels.link"),
            Some("https://e.com/?token=REDACTED")
        );
        assert_eq!(
            batch[0].get_str(schema::URL_FULL),
            Some("https://e.com/?token=1")
        );
        assert_eq!(
            batch[0].get_str(schema::ERROR_STACK_TRACE),
            Some("at https://e.com/a.js?token=1:1:1")
        );
        assert_eq!(batch[0].get(schema::CSP_BLOCKED_URI), Some(&json!(42)));
    }

    #[test]
    fn default_fields_cover_resources_csp_and_stack_traces() {
        let (mut t, _) = transform("");
        let stack = "TypeError: x is undefined\n    at load (https://e.com/app.js?token=abc:10:5)\n    \
                     at https://cdn.example.com/v.js:3:9\nrender@https://e.com/r.js?email=a@b.io:7:1\n \
                     see http://:bad/?sid=1 and http://e.com/ok.";
        let mut batch = vec![Event::from(json!({
            "http": {"request": {"referrer": "https://google.com/?q=1&sig=zzz"}},
            "rum": {"resource": {"name": "https://api.e.com/v1/me?access_token=t0k"}},
            "csp": {
                "blocked_uri": "https://evil.example/x?key=1",
                "document_uri": "https://e.com/account?email=a%40b.com",
                "source_file": "https://e.com/app.js?auth=1"
            },
            "error": {"stack_trace": stack}
        }))];
        t.transform_batch(&mut batch);
        let e = &batch[0];
        assert_eq!(
            e.get_str(schema::HTTP_REFERRER),
            Some("https://google.com/?q=1&sig=REDACTED")
        );
        assert_eq!(
            e.get_str(schema::RUM_RESOURCE_NAME),
            Some("https://api.e.com/v1/me?access_token=REDACTED")
        );
        assert_eq!(
            e.get_str(schema::CSP_BLOCKED_URI),
            Some("https://evil.example/x?key=REDACTED")
        );
        assert_eq!(
            e.get_str(schema::CSP_DOCUMENT_URI),
            Some("https://e.com/account?email=REDACTED")
        );
        assert_eq!(
            e.get_str(schema::CSP_SOURCE_FILE),
            Some("https://e.com/app.js?auth=REDACTED")
        );
        assert_eq!(
            e.get_str(schema::ERROR_STACK_TRACE),
            Some(
                "TypeError: x is undefined\n    at load (https://e.com/app.js?token=REDACTED:10:5)\n    \
                 at https://cdn.example.com/v.js:3:9\nrender@https://e.com/r.js?email=REDACTED:7:1\n \
                 see http://:bad/?sid=1 and http://e.com/ok."
            )
        );
    }

    #[test]
    fn position_suffixes() {
        assert_eq!(
            split_position_suffix("https://e.com/a.js:10:5"),
            ("https://e.com/a.js", ":10:5")
        );
        assert_eq!(
            split_position_suffix("https://e.com:8080"),
            ("https://e.com:8080", "")
        );
        assert_eq!(
            split_position_suffix("https://e.com:8080/a.js:3"),
            ("https://e.com:8080/a.js", ":3")
        );
        assert_eq!(
            split_position_suffix("https://e.com/x."),
            ("https://e.com/x", ".")
        );
    }

    #[test]
    fn value_detectors() {
        let r = |s: &str| redact_values(s, 13, "R");
        assert_eq!(r("a@b.co"), Some("R".into()));
        assert_eq!(r("x a.b+c@sub.ex-ample.com."), Some("x R.".into()));
        assert_eq!(r("@handle"), None);
        assert_eq!(r("a@localhost"), None);
        assert_eq!(r("a@b.c0"), None);
        assert_eq!(r("1700000000000"), Some("R".into()));
        assert_eq!(r("170000000000"), None);
        assert_eq!(r("4111 1111 1111 1111x"), None, "glued to a letter");
        assert_eq!(r("id:4111 1111 1111 1111!"), Some("id:R!".into()));
        assert_eq!(r("a456-426614174000"), None);
        assert_eq!(
            r("eyJhbGciOiJub25lIn0.eyJzdWIiOiIxIn0."),
            Some("R".into()),
            "alg none"
        );
        assert_eq!(r("eyJhbGciOiJub25lIn0"), None, "one part is not a JWT");
        assert_eq!(r("xeyJhbGciOiJub25lIn0.a.b"), None);
        // Adversarial input stays linear and finds nothing.
        let nasty = "eyJ".repeat(5000) + &"@".repeat(5000) + &"1-".repeat(5000);
        assert!(r(&nasty).is_some_and(|s| s.len() < nasty.len()));
        assert_eq!(r(&"a@".repeat(5000)), None);
    }

    #[test]
    fn id_heuristics() {
        for id in [
            "42",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            "0F8FAD5B-D9CB-469F-A165-70867728950E",
            "d41d8cd98f00b204e9800998ecf8427e",
            "deadbeefdeadbeef",
            "jane@example.com",
            "aZ3kP9qL2mX8vB4n",
            "k2j3h4g5f6d7s8a9z",
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefgh",
        ] {
            assert!(is_id_like(id), "{id}");
        }
        for word in [
            "",
            "products",
            "blue-running-shoes-42",
            "iphone-15-pro-max-256gb-blue",
            "v1",
            "deadbeef",
            "checkout.html",
            "ThisIsCamelCaseName",
            "2024-01-15",
        ] {
            assert!(!is_id_like(word), "{word}");
        }
    }

    #[test]
    fn templates_heuristics_and_routes() {
        assert_eq!(template(&[], "/"), "/");
        assert_eq!(template(&[], ""), "");
        assert_eq!(template(&[], "/u/42/orders/"), "/u/:id/orders/");
        assert_eq!(
            template(&[], "/shop;jsessionid=REDACTED/cart"),
            "/shop/cart"
        );
        assert_eq!(template(&[], "/u/REDACTED/profile"), "/u/:id/profile");
        assert_eq!(template(&[], "/u/jane%40example.com"), "/u/:id");
        assert_eq!(template(&[], "/caf%C3%A9/12"), "/caf%C3%A9/:id");
        assert_eq!(template(&[], "api/u/7"), "api/u/:id");
        let routes = ["/product/{slug}", "/u/{id}/orders", "/docs/*", "/"];
        assert_eq!(template(&routes, "/product/blue-shoe"), "/product/:slug");
        assert_eq!(template(&routes, "/product/blue-shoe/"), "/product/:slug");
        assert_eq!(
            template(&routes, "/product/blue-shoe/reviews"),
            "/product/blue-shoe/reviews"
        );
        assert_eq!(template(&routes, "/product/"), "/product/");
        assert_eq!(template(&routes, "/u/jane/orders"), "/u/:id/orders");
        assert_eq!(template(&routes, "/docs"), "/docs/*");
        assert_eq!(template(&routes, "/docs/a/b/c"), "/docs/*");
        assert_eq!(template(&routes, "/"), "/");
        // Routes win over heuristics: `{slug}` even when the value looks like an id.
        assert_eq!(template(&routes, "/product/12345"), "/product/:slug");
        // Literals match the decoded segment.
        assert_eq!(template(&["/café/{x}"], "/caf%C3%A9/1"), "/café/:x");
    }

    #[test]
    fn bad_config_is_named() {
        let problems = |text: &str| config(text).check();
        assert_eq!(problems("replacement = \"[x]\"")[0].0, "replacement");
        assert_eq!(problems("replacement = \"\"")[0].0, "replacement");
        assert_eq!(problems("min_digit_run = 3")[0].0, "min_digit_run");
        assert_eq!(problems("fields = [\"url..full\"]")[0].0, "fields");
        assert_eq!(problems("extra_params = [\" \"]")[0].0, "params");
        for route in [
            "product/{x}",
            "/a/{x",
            "/a/*/b",
            "/a/{}",
            "/a?b",
            "/a//b",
            "/x-{id}",
        ] {
            let p = problems(&format!("routes = [{route:?}]"));
            assert_eq!(p.len(), 1, "{route}");
            assert_eq!(p[0].0, "routes");
            assert!(p[0].1.contains(route), "{:?}", p[0]);
        }
        assert!(problems("").is_empty());
        let unknown: Result<ScrubUrlConfig, _> =
            crate::config::decode(toml::from_str("field = []").unwrap());
        assert!(unknown.is_err());
    }

    #[test]
    fn extra_params_extend_and_params_replace_the_defaults() {
        assert_eq!(
            scrubbed(
                "extra_params = [\"X-Amz-Credential\"]",
                "https://s3.example.com/o?x-amz-credential=AK&token=1"
            ),
            "https://s3.example.com/o?x-amz-credential=REDACTED&token=REDACTED"
        );
        assert_eq!(
            scrubbed("params = [\"ticket\"]", "https://e.com/?ticket=1&token=2"),
            "https://e.com/?ticket=REDACTED&token=2"
        );
    }
}
