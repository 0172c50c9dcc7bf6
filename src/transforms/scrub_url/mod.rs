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

use std::collections::BTreeSet;
use std::sync::{Arc, LazyLock};

use quick_cache::unsync::Cache;
use quick_cache::Weighter;
use serde::Deserialize;
use serde_json::Value;

use super::{FunctionTransform, TransformContext};
use crate::config::CheckConfig;
use crate::event::{context_runs, Batch, Context, Event, FieldId, FieldPath, FieldValue};
use crate::schema;
use crate::telemetry::Counter;
use crate::url_parts::{set_url_fields, url_fields};

mod detect;
mod path_template;
mod scrubber;
#[cfg(test)]
mod tests;

pub use detect::{is_id_like, redact_values};
pub use path_template::PathTemplate;
use path_template::Route;

/// `url.path_template`'s slot, resolved once (a path is a hash lookup).
static PATH_TEMPLATE: LazyLock<FieldId> = LazyLock::new(|| FieldId::of(schema::URL_PATH_TEMPLATE));
/// `url.full`'s slot: an event that hides it has no page.
static URL_FULL: LazyLock<FieldId> = LazyLock::new(|| FieldId::of(schema::URL_FULL));
/// `url.domain`'s slot: a page URL without it gets its parts written.
static URL_DOMAIN: LazyLock<FieldId> = LazyLock::new(|| FieldId::of(schema::URL_DOMAIN));
pub use scrubber::{Outcome, Scrubbed, UrlScrubber};

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
    /// Fields of free text (error messages, stack traces) in which every
    /// `http://` and `https://` URL is scrubbed in place; the rest of the
    /// text is untouched. A field holding an object or array has each string
    /// in it scrubbed so.
    #[serde(default = "default_text_fields")]
    pub text_fields: Vec<String>,
    /// Query, fragment and `;`-parameter names whose values are secrets.
    /// Compared case-insensitively after percent-decoding; `user[password]`
    /// and `token[]` (or `token[0]`) match `password` and `token`. Setting it replaces the
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

/// `csp.referrer`: the CSP payload's field (`src/schema.rs` names no
/// constant for it).
const CSP_REFERRER: &str = "csp.referrer";

/// The keys of Reporting API report bodies (`report.body`, keys in
/// snake_case) that hold a URL: NEL's and COOP's `referrer`; the
/// `source_file` of deprecation, intervention, COOP and policy reports;
/// COEP's and integrity's `blocked_url`; the URLs COOP reports name.
/// `report.body` is kept whole as the browser sent it, so these are
/// scrubbed in place like any other URL field.
const REPORT_BODY_URL_KEYS: &[&str] = &[
    "referrer",
    "source_file",
    "blocked_url",
    "document_url",
    "previous_response_url",
    "next_response_url",
    "initial_popup_url",
    "opener_url",
    "other_document_url",
];

fn default_fields() -> Vec<String> {
    [
        schema::URL_FULL,
        schema::HTTP_REFERRER,
        schema::RUM_RESOURCE_NAME,
        schema::RUM_HTTP_URL,
        schema::CSP_BLOCKED_URI,
        schema::CSP_DOCUMENT_URI,
        schema::CSP_SOURCE_FILE,
        CSP_REFERRER,
        // The script an error came from; the page URL itself (with its
        // query) for an inline script.
        schema::RUM_ERROR_SOURCE,
    ]
    .map(String::from)
    .into_iter()
    // web-vitals' LCP attribution: the URL of the resource painted.
    .chain([format!("{}.url", schema::RUM_VITAL_ATTRIBUTION)])
    .chain(
        REPORT_BODY_URL_KEYS
            .iter()
            .map(|key| format!("{}.{key}", schema::REPORT_BODY)),
    )
    .collect()
}

fn default_text_fields() -> Vec<String> {
    [
        // The message too: a V8 stack starts with it, and a URL the message
        // names ("Failed to fetch https://...?token=") must not be kept
        // whole beside its scrubbed copy.
        schema::ERROR_MESSAGE,
        schema::ERROR_STACK_TRACE,
        // Long Animation Frames name an inline script by the page's URL.
        schema::RUM_LONG_TASK_SCRIPTS,
        // What a source keeps as sent: Faro's and the Elastic APM agent's
        // stack frames beside the text (their files), Faro's navigation
        // timing `name` (the page URL), an SDK's navigation events
        // (`fromUrl`, `toUrl`) and custom data.
        schema::RUM_EXTRA,
        schema::RUM_CUSTOM_DATA,
        // A vital's attribution as web-vitals made it: its navigation entry
        // is named by the page URL (the LCP `url` is one of `fields`).
        schema::RUM_VITAL_ATTRIBUTION,
        // A Reporting API body kept whole: a deprecation or intervention
        // report's `message` may name a URL (its URL keys are `fields`).
        schema::REPORT_BODY,
    ]
    .map(String::from)
    .into()
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
                continue;
            }
            // A path no event can hold is never scrubbed: a typo here would
            // let the URLs it meant through as they came.
            for path in list.iter().filter(|p| FieldPath::resolve(p).is_none()) {
                let hint =
                    crate::conditions::did_you_mean(path, schema::all_fields().map(|f| f.path))
                        .map(|known| format!(" (did you mean `{known}`?)"))
                        .unwrap_or_default();
                problems.push((
                    key,
                    format!(
                        "`{path}` is not a field an event can hold{hint}: name a field of the \
                         document schema, `labels.<name>`, or a path inside an object field \
                         such as `rum.extra.*` or `report.body.*`"
                    ),
                ));
            }
        }
        for (key, list) in [
            ("params", &self.params),
            ("extra_params", &self.extra_params),
        ] {
            if list.iter().any(|p| p.trim().is_empty()) {
                problems.push((key, "parameter names must be non-empty".to_owned()));
            }
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
        let fields = compiled(&self.fields);
        let text_fields = compiled(&self.text_fields);
        Ok(ScrubUrl {
            watch: Watch::new(fields.iter().chain(&text_fields)),
            fields,
            text_fields,
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
                nested: Default::default(),
            },
            templates: self.path_template.then(|| PathTemplate {
                routes,
                replacement: self.replacement.clone(),
            }),
            unparseable: cx.metrics.errors("unparseable_url", "processing"),
            pages: Memo::new(),
            urls: Memo::new(),
            texts: Memo::new(),
            #[cfg(test)]
            long_way_only: false,
        })
    }
}

/// The runtime part.
pub struct ScrubUrl {
    fields: Vec<ScrubField>,
    text_fields: Vec<ScrubField>,
    /// Which of `fields` and `text_fields` an event holds.
    watch: Watch,
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
    /// Tests compare `unchanged_packed` with `scrub_event` alone.
    #[cfg(test)]
    long_way_only: bool,
}

/// Bytes of keys and values each memo may hold.
const MEMO_MAX_BYTES: usize = 2 * 1024 * 1024;

/// A bounded map from input text to what scrubbing made of it:
/// `quick_cache` weighted by bytes, so a burst of unique URLs evicts the
/// coldest entries instead of the working set. Values are shared (`Arc`) so
/// a hit costs one hash and no copy.
struct Memo<V: Footprint> {
    entries: Cache<String, Arc<V>, ByBytes>,
}

/// Bytes a memo value holds besides its key.
trait Footprint {
    fn footprint(&self) -> usize;
}

/// Weighs a memo entry: its key, its value and a fixed overhead.
#[derive(Clone)]
struct ByBytes;

impl<V: Footprint> Weighter<String, Arc<V>> for ByBytes {
    fn weight(&self, key: &String, value: &Arc<V>) -> u64 {
        (key.len() + value.footprint() + 64) as u64
    }
}

impl<V: Footprint> Memo<V> {
    fn new() -> Self {
        Self {
            entries: Cache::with_weighter(MEMO_MAX_BYTES / 256, MEMO_MAX_BYTES as u64, ByBytes),
        }
    }

    fn get_or_insert(&mut self, key: &str, make: impl FnOnce() -> V) -> Arc<V> {
        if let Some(hit) = self.entries.get(key) {
            return hit.clone();
        }
        let value = Arc::new(make());
        self.entries.insert(key.to_owned(), value.clone());
        value
    }
}

impl Footprint for Outcome {
    fn footprint(&self) -> usize {
        let url = match &self.url {
            Scrubbed::Changed(s) => s.len(),
            _ => 0,
        };
        url + self.template.as_ref().map_or(0, String::len)
    }
}

/// A scrubbed text (`None`: unchanged) and how many of its URLs did not parse.
impl Footprint for (Option<String>, u64) {
    fn footprint(&self) -> usize {
        self.0.as_ref().map_or(0, String::len)
    }
}

/// A configured field: its path (for writes and messages) and its slot,
/// resolved once (`check` refuses a path that resolves to none).
struct ScrubField {
    path: String,
    slot: Option<FieldPath>,
}

impl ScrubField {
    fn get_own<'e, H: Holder>(&self, holder: &'e H) -> Option<&'e str> {
        holder.own_str(self.slot.as_ref()?)
    }

    fn get_own_value<'e, H: Holder>(&self, holder: &'e H) -> Option<&'e Value> {
        holder.own_value(self.slot.as_ref()?)
    }

    fn set<H: Holder>(&self, holder: &mut H, text: &str) {
        match &self.slot {
            Some(FieldPath::Slot { id, rest }) if rest.is_empty() => holder.set(*id, text.into()),
            _ => holder.insert(&self.path, text.into()),
        }
    }

    fn set_value<H: Holder>(&self, holder: &mut H, value: Value) {
        match &self.slot {
            Some(FieldPath::Slot { id, rest }) if rest.is_empty() => holder.set(*id, value.into()),
            _ => holder.insert(&self.path, value),
        }
    }
}

/// What [`ScrubUrl::scrub_event`] scrubs: an event's own fields, or the
/// context a beacon's events share, every field of which is its own. The
/// context is scrubbed where it is: moving its twenty-odd fields into an
/// event and back (`Event::edit_in_place`) cost ~1k instructions a beacon.
trait Holder {
    /// Calls `each` with every slot it holds of its own, in id order, and
    /// whether it has a value there (`false`: an event hides the context's).
    fn for_each_own(&self, each: impl FnMut(FieldId, bool));
    fn own_str(&self, path: &FieldPath) -> Option<&str>;
    fn own_value(&self, path: &FieldPath) -> Option<&Value>;
    /// The slot's string, its own or (an event's) the context's.
    fn get_str(&self, id: FieldId) -> Option<&str>;
    fn set(&mut self, id: FieldId, value: FieldValue);
    fn remove_id(&mut self, id: FieldId);
    /// Sets a dotted path (inside an object slot, or a label).
    fn insert(&mut self, path: &str, value: Value);
    fn set_url_fields(&mut self, full: &str);
}

impl Holder for Event {
    fn for_each_own(&self, mut each: impl FnMut(FieldId, bool)) {
        self.own_slots().for_each(|(id, has)| each(id, has));
    }
    fn own_str(&self, path: &FieldPath) -> Option<&str> {
        self.get_own_str(path)
    }
    fn own_value(&self, path: &FieldPath) -> Option<&Value> {
        self.get_own_field(path)
    }
    fn get_str(&self, id: FieldId) -> Option<&str> {
        self.get_id_str(id)
    }
    fn set(&mut self, id: FieldId, value: FieldValue) {
        Event::set(self, id, value);
    }
    fn remove_id(&mut self, id: FieldId) {
        Event::remove_id(self, id);
    }
    fn insert(&mut self, path: &str, value: Value) {
        Event::insert(self, path, value);
    }
    fn set_url_fields(&mut self, full: &str) {
        set_url_fields(self, full);
    }
}

impl Holder for Context {
    fn for_each_own(&self, mut each: impl FnMut(FieldId, bool)) {
        self.ids().for_each(|id| each(id, true));
    }
    fn own_str(&self, path: &FieldPath) -> Option<&str> {
        self.get_field_str(path)
    }
    fn own_value(&self, path: &FieldPath) -> Option<&Value> {
        self.get_field(path)
    }
    fn get_str(&self, id: FieldId) -> Option<&str> {
        Context::get_str(self, id)
    }
    fn set(&mut self, id: FieldId, value: FieldValue) {
        Context::set(self, id, value);
    }
    fn remove_id(&mut self, id: FieldId) {
        Context::remove_id(self, id);
    }
    fn insert(&mut self, path: &str, value: Value) {
        // Paths inside an object slot, and labels: rare; the event API has them.
        Event::edit_in_place(self, |event| event.insert(path, value));
    }
    fn set_url_fields(&mut self, full: &str) {
        for (id, value) in url_fields(full) {
            match value {
                Some(value) => Context::set(self, id, value),
                None => {
                    Context::remove_id(self, id);
                }
            }
        }
    }
}

/// Which configured fields (`fields`, then `text_fields`, by index) an event
/// holds as its own, found in one walk over its own slots: an event holds
/// one or two of the twenty default fields, and a search per configured field
/// cost more than scrubbing the ones it holds.
struct Watch {
    /// Per slot id, the bits of the fields in that slot (or below it).
    /// Empty with more than 64 fields: then every field is looked up.
    by_slot: Vec<u64>,
    /// Fields looked up on every event: labels.
    always: u64,
    /// Fields that are a whole slot, other than `url.full`: those
    /// [`ScrubUrl::unchanged_packed`] reads.
    plain: u64,
}

impl Watch {
    fn new<'f>(fields: impl Iterator<Item = &'f ScrubField>) -> Watch {
        let mut watch = Watch {
            by_slot: vec![0; FieldId::count()],
            always: 0,
            plain: 0,
        };
        for (i, field) in fields.enumerate() {
            if i >= 64 {
                return Watch {
                    by_slot: Vec::new(),
                    always: u64::MAX,
                    plain: 0,
                };
            }
            match &field.slot {
                Some(FieldPath::Slot { id, rest }) => {
                    watch.by_slot[id.index()] |= 1 << i;
                    if rest.is_empty() && field.path != schema::URL_FULL {
                        watch.plain |= 1 << i;
                    }
                }
                Some(FieldPath::Label(_)) => watch.always |= 1 << i,
                // No document can have it.
                None => {}
            }
        }
        watch
    }

    /// The bits of the fields in slot `id` (all of them past 64 fields).
    fn bits(&self, id: FieldId) -> u64 {
        if self.by_slot.is_empty() {
            return u64::MAX;
        }
        self.by_slot.get(id.index()).copied().unwrap_or(0)
    }

    /// The bits of the fields `holder` may hold as its own, and whether it
    /// hides `hidden` for itself, found in one walk over its own slots.
    fn held<H: Holder>(&self, holder: &H, hidden: FieldId) -> (u64, bool) {
        let mut hides = false;
        let mut held = self.always;
        if self.by_slot.is_empty() {
            holder.for_each_own(|id, has| hides |= !has && id == hidden);
            return (u64::MAX, hides);
        }
        holder.for_each_own(|id, has| {
            if has {
                held |= self.by_slot.get(id.index()).copied().unwrap_or(0);
            } else {
                hides |= id == hidden;
            }
        });
        (held, hides)
    }
}

/// The first field at or after `from` (of `total`) among the `held` bits
/// (past 64, every field is). Only held fields are visited: an event holds
/// one or two of the twenty-odd default fields, and asking each in turn
/// cost ~2k instructions a beacon.
fn next_held(held: u64, from: usize, total: usize) -> Option<usize> {
    if from >= total {
        return None;
    }
    if from >= 64 {
        return Some(from);
    }
    let bits = held & (u64::MAX << from);
    let i = if bits == 0 {
        64
    } else {
        bits.trailing_zeros() as usize
    };
    (i < total).then_some(i)
}

impl ScrubUrl {
    /// How many URLs of the event's own fields do not parse, when it is as
    /// its beacon's decoder made it (its own slots a packed run) and
    /// scrubbing would change none of them: each URL and text it holds is
    /// looked up in the memos as [`ScrubUrl::scrub_event`] looks it up,
    /// found in one walk over the run instead of a search per field (a
    /// beacon's events hold a URL or two each, and most hold none: the
    /// searches and walks cost ~2k instructions a beacon). `None` when
    /// something would change, or when a field is one this way does not
    /// read (inside an object, not a string, a label, `url.full`):
    /// nothing was written, and `scrub_event` takes the event from the
    /// start.
    fn unchanged_packed(&mut self, event: &Event) -> Option<u64> {
        let (packed, run) = event.packed_own()?;
        if !self.quick() || self.watch.always != 0 || self.watch.by_slot.is_empty() {
            return None;
        }
        let mut unparseable = 0;
        for slot in run {
            let bits = match self.watch.by_slot.get(slot.id.index()) {
                Some(&bits) if bits != 0 => bits,
                _ => continue,
            };
            // One field of a whole slot (a slot named twice, as a URL and
            // as a text, takes the long way).
            if bits & !self.watch.plain != 0 || !bits.is_power_of_two() {
                return None;
            }
            let text = packed.as_str(slot.value)?;
            let i = bits.trailing_zeros() as usize;
            let scrubber = &self.scrubber;
            if i < self.fields.len() {
                let outcome = self.urls.get_or_insert(text, || scrubber.scrub(text, None));
                match outcome.url {
                    Scrubbed::Unchanged => {}
                    Scrubbed::Unparseable => unparseable += 1,
                    Scrubbed::Changed(_) => return None,
                }
            } else if text.contains(':') {
                let outcome = self.texts.get_or_insert(text, || scrubber.scrub_text(text));
                if outcome.0.is_some() {
                    return None;
                }
                unparseable += outcome.1;
            }
        }
        Some(unparseable)
    }

    /// Whether `unchanged_packed` may be taken (tests compare it with the
    /// long way alone).
    fn quick(&self) -> bool {
        #[cfg(test)]
        return !self.long_way_only;
        #[cfg(not(test))]
        true
    }

    /// Scrubs the event's own fields (or a context's); returns how many
    /// URLs did not parse.
    fn scrub_event<H: Holder>(&mut self, event: &mut H) -> u64 {
        let mut unparseable = 0;
        // Looked at again after each write: a write may add a later field.
        let (mut held, hides_page) = self.watch.held(event, *URL_FULL);
        // A web-vitals metric that names no page, beside one that does, hides
        // the shared page's fields: the template made of that page is not its.
        if hides_page {
            event.remove_id(*PATH_TEMPLATE);
            held = self.watch.held(event, *URL_FULL).0;
        }
        let urls = self.fields.len();
        let mut next = 0;
        while let Some(i) = next_held(held, next, urls) {
            next = i + 1;
            let field = &self.fields[i];
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
            let outcome = memo.get_or_insert(text, || scrubber.scrub(text, templates));
            // Whether fields were written that may add a later one: only
            // then is the event walked again (a URL left as it is, the usual
            // case, wrote nothing: a walk cost ~10 instructions a slot).
            let mut rewalk = true;
            match &outcome.url {
                Scrubbed::Unparseable => {
                    unparseable += 1;
                    rewalk = false;
                }
                Scrubbed::Changed(new) if is_page => event.set_url_fields(new),
                Scrubbed::Changed(new) => field.set(event, new),
                Scrubbed::Unchanged => {
                    if is_page && event.get_str(*URL_DOMAIN).is_none() {
                        let same = text.to_owned();
                        event.set_url_fields(&same);
                    } else {
                        rewalk = false;
                    }
                }
            }
            match &outcome.template {
                // A copy of its own, not a value the page's contexts share:
                // a refcount every worker writes costs more than the copy.
                Some(template) => {
                    event.set(*PATH_TEMPLATE, template.as_str().into());
                    held |= self.watch.bits(*PATH_TEMPLATE);
                }
                // A page of its own that makes no template (it does not
                // parse): the shared page's is not its. (A bit left for a
                // field no longer held is harmless: its lookup finds none.)
                None if is_page && self.templates.is_some() => event.remove_id(*PATH_TEMPLATE),
                None => {}
            }
            if rewalk {
                held = self.watch.held(event, *URL_FULL).0;
            }
        }
        let total = urls + self.text_fields.len();
        let mut next = urls;
        while let Some(i) = next_held(held, next, total) {
            next = i + 1;
            let field = &self.text_fields[i - urls];
            let scrubber = &self.scrubber;
            let texts = &mut self.texts;
            let mut scrub_text = |text: &str| {
                let outcome = texts.get_or_insert(text, || scrubber.scrub_text(text));
                unparseable += outcome.1;
                outcome.0.clone()
            };
            if let Some(text) = field.get_own(event) {
                // No `:`, no URL: the text (an error message, often) skips
                // the memo, as the strings of an object do below.
                if !text.contains(':') {
                    continue;
                }
                if let Some(new) = scrub_text(text) {
                    field.set(event, &new);
                    held = self.watch.held(event, *URL_FULL).0;
                }
                continue;
            }
            // An object or array (long-task scripts, rum.extra): every
            // string in it is a text. Copied only when one changes.
            let Some(value) = field.get_own_value(event) else {
                continue;
            };
            let mut texts = Vec::new();
            strings_in(value, &mut texts);
            // No `:`, no URL: such strings (most of them) skip the memo.
            let new: Vec<Option<String>> = texts
                .into_iter()
                .map(|text| match text.contains(':') {
                    true => scrub_text(text),
                    false => None,
                })
                .collect();
            if new.iter().all(Option::is_none) {
                continue;
            }
            let mut copy = value.clone();
            replace_strings_in(&mut copy, &mut new.into_iter());
            field.set_value(event, copy);
            held = self.watch.held(event, *URL_FULL).0;
        }
        unparseable
    }
}

/// The strings inside `value` (keys aside), in the order
/// [`replace_strings_in`] visits them.
fn strings_in<'v>(value: &'v Value, out: &mut Vec<&'v str>) {
    match value {
        Value::String(text) => out.push(text),
        Value::Array(items) => items.iter().for_each(|item| strings_in(item, out)),
        Value::Object(map) => map.values().for_each(|item| strings_in(item, out)),
        _ => {}
    }
}

/// Replaces the strings inside `value`, in [`strings_in`]'s order, with
/// the `Some` of `new` (`None` keeps one).
fn replace_strings_in(value: &mut Value, new: &mut impl Iterator<Item = Option<String>>) {
    match value {
        Value::String(text) => {
            if let Some(Some(scrubbed)) = new.next() {
                *text = scrubbed;
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|item| replace_strings_in(item, new)),
        Value::Object(map) => map
            .values_mut()
            .for_each(|item| replace_strings_in(item, new)),
        _ => {}
    }
}

impl FunctionTransform for ScrubUrl {
    fn transform_batch(&mut self, batch: &mut Batch) {
        let mut unparseable = 0;
        // The page URL and referrer live in the context a beacon's events
        // share (they arrive together): scrub it once per beacon, in place,
        // then each event's own fields.
        for run in context_runs(batch) {
            let in_context = Event::edit_shared_context(run, |context| self.scrub_event(context));
            // Counted per event, as each event's document carries them.
            unparseable += in_context * run.len() as u64;
            for event in run.iter_mut() {
                unparseable += match self.unchanged_packed(event) {
                    Some(count) => count,
                    None => self.scrub_event(event),
                };
            }
        }
        if unparseable > 0 {
            self.unparseable.add(unparseable);
        }
    }
}
