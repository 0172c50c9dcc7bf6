//! Transform `user_agent`: `user_agent.original` (plus the User-Agent Client
//! Hints in `rum.ua_hints`) → browser, OS, device and category under
//! `user_agent.*`, and `labels.synthetic = true` for robots and scripted
//! browsers. woothee does the parsing; this file fixes what it gets wrong for
//! today's browsers (reduced UAs, in-app browsers, headless Chrome) and
//! prefers the hints, which carry what the reduced UA hides: the real brand,
//! the full version, Windows 11, the Android model. A small cache keyed by the
//! UA string and hints makes a repeated UA a lookup instead of a parse.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, LazyLock};

use rustc_hash::{FxHashMap, FxHasher};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::{FunctionTransform, TransformContext};
use crate::config::CheckConfig;
use crate::event::{Batch, Context, Event, FieldId, FieldValue};
use crate::schema;
use crate::telemetry::Counter;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserAgentConfig {
    /// Distinct (User-Agent, hints) pairs kept parsed. 0 turns the cache off.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
    /// Prefer User-Agent Client Hints (`rum.ua_hints`) over the UA string
    /// where they say more: brand, full version, OS version, device model.
    #[serde(default = "crate::config::default_true")]
    pub use_client_hints: bool,
    /// Extra case-insensitive substrings that mark a User-Agent as synthetic
    /// traffic, on top of the built-in ones (`SYNTHETIC_MARKERS`).
    #[serde(default)]
    pub synthetic_patterns: Vec<String>,
    /// Drop synthetic events instead of only labelling them. Dropped events
    /// count as `component_discarded_events_total{intentional="true"}`.
    #[serde(default)]
    pub drop_synthetic: bool,
}

fn default_cache_size() -> usize {
    4096
}

impl Default for UserAgentConfig {
    fn default() -> Self {
        Self {
            cache_size: default_cache_size(),
            use_client_hints: true,
            synthetic_patterns: Vec::new(),
            drop_synthetic: false,
        }
    }
}

impl CheckConfig for UserAgentConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        if self.synthetic_patterns.iter().any(|p| p.trim().is_empty()) {
            problems.push((
                "synthetic_patterns",
                "an empty pattern would mark every event as synthetic".to_owned(),
            ));
        }
        problems
    }
}

/// Substrings (matched case-insensitively) of scripted browsers and test
/// tools that do not call themselves crawlers.
pub const SYNTHETIC_MARKERS: &[&str] = &[
    "headlesschrome",
    "playwright",
    "puppeteer",
    "lighthouse",
    "phantomjs",
    "ptst/", // WebPageTest
    "cypress/",
    "selenium",
];

/// UAs longer than this are parsed every time rather than cached, so that a
/// client sending huge random UAs cannot fill memory through the cache.
const MAX_CACHED_KEY_BYTES: usize = 2048;

impl UserAgentConfig {
    pub fn build(&self, cx: &TransformContext) -> anyhow::Result<UserAgentTransform> {
        let counter = |result: &str| {
            cx.metrics.counter(
                "user_agent_cache_lookups_total",
                "User-Agent cache lookups of the user_agent transform, by result.",
                &[("result", result)],
            )
        };
        Ok(UserAgentTransform {
            parser: UserAgentParser::new(&self.synthetic_patterns, self.use_client_hints),
            cache: ParseCache::new(self.cache_size),
            drop_synthetic: self.drop_synthetic,
            hits: counter("hit"),
            misses: counter("miss"),
            discarded: cx.metrics.discarded_intentional.clone(),
        })
    }
}

/// What one (User-Agent, hints) pair resolves to, in ECS terms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserAgentInfo {
    pub name: Option<String>,
    pub version: Option<String>,
    pub os_name: Option<String>,
    pub os_version: Option<String>,
    pub device_name: Option<String>,
    pub category: Option<&'static str>,
    pub synthetic: bool,
}

pub struct UserAgentTransform {
    parser: UserAgentParser,
    cache: ParseCache,
    drop_synthetic: bool,
    hits: Counter,
    misses: Counter,
    discarded: Counter,
}

impl FunctionTransform for UserAgentTransform {
    fn transform_batch(&mut self, batch: &mut Batch) {
        let (mut hits, mut misses) = (0, 0);
        let before = batch.len();
        let drop_synthetic = self.drop_synthetic;
        // The events of a beacon share one context and arrive together: the
        // UA is resolved once per context and the enriched context is shared.
        let mut last: Option<(Arc<Context>, Option<Arc<Context>>, bool)> = None;
        batch.retain_mut(|event| {
            let seen = last
                .as_ref()
                .is_some_and(|(original, _, _)| Arc::ptr_eq(original, event.context()));
            if !seen {
                let original = event.context().clone();
                last = Some(match self.resolve(event) {
                    None => (original, None, false),
                    Some((fields, hit)) => {
                        if hit {
                            hits += 1;
                        } else {
                            misses += 1;
                        }
                        let mut context = (*original).clone();
                        fields.apply(&mut context);
                        (original, Some(Arc::new(context)), fields.synthetic)
                    }
                });
            }
            let Some((_, enriched, synthetic)) = &last else {
                return true;
            };
            let Some(enriched) = enriched else {
                return true;
            };
            if seen {
                hits += 1;
            }
            if *synthetic && drop_synthetic {
                return false;
            }
            event.set_context(enriched.clone());
            true
        });
        // Counted per batch: no atomics in the per-event loop.
        self.hits.add(hits);
        self.misses.add(misses);
        self.discarded.add((before - batch.len()) as u64);
    }
}

impl UserAgentTransform {
    /// The fields for this event's UA and hints (and whether the cache had
    /// them); `None` when the event has neither.
    fn resolve(&mut self, event: &Event) -> Option<(&Prepared, bool)> {
        let ua = event.get_str(schema::USER_AGENT_ORIGINAL);
        let hints = if self.parser.use_hints {
            event.get(schema::RUM_UA_HINTS).filter(|h| h.is_object())
        } else {
            None
        };
        if ua.is_none() && hints.is_none() {
            return None;
        }
        let ua = ua.unwrap_or("");
        let (hash, key_bytes) = key_hash(ua, hints);
        if key_bytes > MAX_CACHED_KEY_BYTES || self.cache.capacity == 0 {
            self.cache.uncached = Prepared::new(self.parser.parse(ua, hints));
            return Some((&self.cache.uncached, false));
        }
        // Two steps so the borrow of a hit ends before the miss path.
        if self.cache.contains(hash, ua, hints) {
            return self.cache.get(hash, ua, hints).map(|p| (p, true));
        }
        let prepared = Prepared::new(self.parser.parse(ua, hints));
        Some((self.cache.insert(hash, ua, hints, prepared), false))
    }
}

/// A resolved UA as shared slot values, so a cache hit only bumps refcounts.
#[derive(Debug, Clone, Default)]
struct Prepared {
    /// `user_agent.name`, `.version`, `.category`, `.os`, `.device`.
    slots: Vec<(FieldId, Arc<Value>)>,
    synthetic: bool,
}

static SLOTS: LazyLock<[FieldId; 5]> = LazyLock::new(|| {
    [
        "user_agent.name",
        "user_agent.version",
        "user_agent.category",
        "user_agent.os",
        "user_agent.device",
    ]
    .map(FieldId::of)
});

static SYNTHETIC: LazyLock<(Arc<str>, Arc<Value>)> = LazyLock::new(|| {
    let name = schema::LABELS_SYNTHETIC.trim_start_matches("labels.");
    (Arc::from(name), Arc::new(Value::Bool(true)))
});

impl Prepared {
    fn new(info: UserAgentInfo) -> Self {
        let ids = &*SLOTS;
        let mut slots = Vec::new();
        let mut put = |id: FieldId, value: Option<Value>| {
            if let Some(value) = value {
                slots.push((id, Arc::new(value)));
            }
        };
        put(ids[0], info.name.map(Value::String));
        put(ids[1], info.version.map(Value::String));
        put(ids[2], info.category.map(|c| Value::String(c.to_owned())));
        let mut os = Map::new();
        if let Some(name) = info.os_name {
            os.insert("name".to_owned(), Value::String(name));
        }
        if let Some(version) = info.os_version {
            os.insert("version".to_owned(), Value::String(version));
        }
        put(ids[3], (!os.is_empty()).then_some(Value::Object(os)));
        put(
            ids[4],
            info.device_name.map(|name| {
                let mut device = Map::new();
                device.insert("name".to_owned(), Value::String(name));
                Value::Object(device)
            }),
        );
        Self {
            slots,
            synthetic: info.synthetic,
        }
    }

    fn apply(&self, context: &mut Context) {
        if self.synthetic {
            let (name, value) = &*SYNTHETIC;
            context.set_label(name.clone(), FieldValue::Shared(value.clone()));
        }
        for (id, value) in &self.slots {
            context.set(*id, FieldValue::Shared(value.clone()));
        }
    }
}

/// Hash of the cache key, and its size in bytes (to keep huge keys out).
fn key_hash(ua: &str, hints: Option<&Value>) -> (u64, usize) {
    let mut hasher = FxHasher::default();
    ua.hash(&mut hasher);
    let mut bytes = ua.len();
    if let Some(hints) = hints {
        hash_value(hints, &mut hasher, &mut bytes);
    }
    (hasher.finish(), bytes)
}

fn hash_value(value: &Value, hasher: &mut FxHasher, bytes: &mut usize) {
    match value {
        Value::Null => 0u8.hash(hasher),
        Value::Bool(b) => b.hash(hasher),
        Value::Number(n) => n.hash(hasher),
        Value::String(s) => {
            *bytes += s.len();
            s.hash(hasher);
        }
        Value::Array(items) => {
            items.len().hash(hasher);
            for item in items {
                hash_value(item, hasher, bytes);
            }
        }
        Value::Object(map) => {
            map.len().hash(hasher);
            for (key, item) in map {
                *bytes += key.len();
                key.hash(hasher);
                hash_value(item, hasher, bytes);
            }
        }
    }
}

/// A bounded cache with two generations: lookups go to the current one, then
/// to the previous one (promoting the entry); when the current generation is
/// full it becomes the previous one and the oldest is dropped. That keeps
/// what is in use, bounds memory at `capacity` entries, and costs O(1)
/// without the bookkeeping of a linked LRU list.
///
/// Entries keep their whole key and a hit compares it: a client crafting a UA
/// whose hash collides with a popular one gets a miss, never another
/// client's result.
struct ParseCache {
    capacity: usize,
    current: FxHashMap<u64, Entry>,
    previous: FxHashMap<u64, Entry>,
    /// Holds the result of an uncached parse, so every path returns a reference.
    uncached: Prepared,
}

struct Entry {
    ua: Box<str>,
    hints: Option<Value>,
    prepared: Prepared,
}

impl Entry {
    fn matches(&self, ua: &str, hints: Option<&Value>) -> bool {
        *self.ua == *ua && self.hints.as_ref() == hints
    }
}

impl ParseCache {
    fn new(capacity: usize) -> Self {
        Self {
            capacity,
            current: FxHashMap::default(),
            previous: FxHashMap::default(),
            uncached: Prepared::default(),
        }
    }

    fn generation_size(&self) -> usize {
        self.capacity.div_ceil(2).max(1)
    }

    fn contains(&mut self, hash: u64, ua: &str, hints: Option<&Value>) -> bool {
        if self
            .current
            .get(&hash)
            .is_some_and(|e| e.matches(ua, hints))
        {
            return true;
        }
        match self.previous.remove(&hash) {
            Some(entry) if entry.matches(ua, hints) => {
                self.make_room();
                self.current.insert(hash, entry);
                true
            }
            Some(entry) => {
                self.previous.insert(hash, entry);
                false
            }
            None => false,
        }
    }

    fn get(&self, hash: u64, ua: &str, hints: Option<&Value>) -> Option<&Prepared> {
        self.current
            .get(&hash)
            .filter(|e| e.matches(ua, hints))
            .map(|e| &e.prepared)
    }

    fn insert(
        &mut self,
        hash: u64,
        ua: &str,
        hints: Option<&Value>,
        prepared: Prepared,
    ) -> &Prepared {
        if !self.current.contains_key(&hash) {
            self.make_room();
        }
        let entry = Entry {
            ua: ua.into(),
            hints: hints.cloned(),
            prepared,
        };
        // A colliding entry with another key is replaced: one slot per hash.
        self.current.insert(hash, entry);
        &self.current[&hash].prepared
    }

    fn make_room(&mut self) {
        if self.current.len() >= self.generation_size() {
            self.previous = std::mem::take(&mut self.current);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.current.len() + self.previous.len()
    }
}

/// The parsing itself, without cache or events: UA string + hints → fields.
pub struct UserAgentParser {
    woothee: woothee::parser::Parser,
    /// Built-in and configured markers, lowercased.
    markers: Vec<String>,
    use_hints: bool,
}

const UNKNOWN: &str = woothee::woothee::VALUE_UNKNOWN;

fn known(s: &str) -> Option<&str> {
    (!s.is_empty() && s != UNKNOWN).then_some(s)
}

/// The category names woothee uses, as static strings.
fn category(name: &str) -> Option<&'static str> {
    [
        "pc",
        "smartphone",
        "mobilephone",
        "crawler",
        "appliance",
        "misc",
    ]
    .into_iter()
    .find(|c| *c == name)
}

impl UserAgentParser {
    pub fn new(extra_markers: &[String], use_hints: bool) -> Self {
        let markers = SYNTHETIC_MARKERS
            .iter()
            .map(|m| (*m).to_owned())
            .chain(extra_markers.iter().map(|m| m.trim().to_lowercase()))
            .collect();
        Self {
            woothee: woothee::parser::Parser::new(),
            markers,
            use_hints,
        }
    }

    pub fn parse(&self, ua: &str, hints: Option<&Value>) -> UserAgentInfo {
        let parsed = self.woothee.parse(ua).unwrap_or_default();
        let mut info = UserAgentInfo {
            category: category(parsed.category),
            ..UserAgentInfo::default()
        };
        let lower = ua.to_lowercase();
        info.synthetic = self.markers.iter().any(|m| lower.contains(m.as_str()));

        if info.category == Some("crawler") {
            // A crawler imitating a phone is still a crawler: no OS or device.
            let name = known(parsed.name);
            info.version = known(parsed.version)
                .map(str::to_owned)
                .or_else(|| name.and_then(|n| version_after(ua, &format!("{n}/"))));
            info.name = name.map(str::to_owned);
            info.synthetic = true;
            return info;
        }

        self.browser(ua, &parsed, &mut info);
        os_and_device(ua, &parsed, &mut info);
        if parsed.name == "HTTP Library" {
            // Scripts, not browsers: `curl/8.7.1` → curl 8.7.1.
            let product = ua.split(['/', ' ']).next().unwrap_or("");
            info.name = known(product).map(str::to_owned);
            info.version = version_after(ua, &format!("{product}/"));
            info.synthetic = true;
        }
        if let Some(hints) = hints.filter(|_| self.use_hints) {
            apply_hints(&ClientHints::from_value(hints), &mut info);
        }
        info
    }

    fn browser(
        &self,
        ua: &str,
        parsed: &woothee::parser::WootheeResult<'_>,
        info: &mut UserAgentInfo,
    ) {
        let (name, version) = if let Some(v) = version_after(ua, "FBAV/") {
            // Facebook's in-app browser; woothee sees a WebView or nothing.
            ("Facebook", Some(v))
        } else if let Some(v) = version_after(ua, " Instagram ") {
            ("Instagram", Some(v))
        } else if let Some(v) = version_after(ua, "HeadlessChrome/") {
            ("HeadlessChrome", Some(v))
        } else if let Some(v) = version_after(ua, "EdgA/").or_else(|| version_after(ua, "EdgiOS/"))
        {
            ("Edge", Some(v))
        } else {
            let name = match parsed.name {
                "SamsungBrowser" => "Samsung Internet",
                other => other,
            };
            (name, known(parsed.version).map(str::to_owned))
        };
        info.name = known(name).map(str::to_owned);
        info.version = version;
    }
}

/// woothee's OS label → ECS OS name and version, and the device when the OS
/// names it (iPhone, iPad) or the UA carries an Android model.
fn os_and_device(ua: &str, parsed: &woothee::parser::WootheeResult<'_>, info: &mut UserAgentInfo) {
    let os_version = known(&parsed.os_version).map(|v| v.replace('_', "."));
    let (name, version) = match parsed.os {
        label
            if label.starts_with("Windows ")
                && label != "Windows Phone OS"
                && label != "Windows CE" =>
        {
            let version = label.trim_start_matches("Windows ");
            (
                "Windows",
                (version != "UNKNOWN Ver").then(|| version.to_owned()),
            )
        }
        "Windows Phone OS" => ("Windows Phone", os_version),
        "Mac OSX" => ("macOS", os_version),
        "iPhone" | "iPad" | "iPod" => {
            info.device_name = Some(parsed.os.to_owned());
            ("iOS", os_version)
        }
        // Frozen at 14541.0.0 (or similar) in reduced UAs: says nothing.
        "ChromeOS" => ("ChromeOS", None),
        "Android" => {
            info.device_name = android_model(ua);
            ("Android", os_version)
        }
        other => match known(other) {
            Some(name) => (name, os_version),
            None => return,
        },
    };
    info.os_name = Some(name.to_owned());
    info.os_version = version;
}

/// The model in `(Linux; Android 14; Pixel 8 Build/AP1A...; wv)`. Reduced UAs
/// say `K` instead; Samsung prefixes `SAMSUNG `.
fn android_model(ua: &str) -> Option<String> {
    let comment = first_comment(ua)?;
    let mut parts = comment.split(';').map(str::trim);
    parts.find(|p| p.starts_with("Android"))?;
    // Old UAs put a locale first: `Android 4.0.3; ko-kr; LG-L160L Build/...`.
    let is_locale = |p: &str| {
        let b = p.as_bytes();
        b.len() == 5 && b[..2].iter().all(u8::is_ascii_alphabetic) && matches!(b[2], b'-' | b'_')
    };
    let model = parts.find(|p| !is_locale(p))?;
    let model = model.split(" Build/").next().unwrap_or(model).trim();
    let model = model
        .strip_prefix("SAMSUNG ")
        .or_else(|| model.strip_prefix("Samsung "))
        .unwrap_or(model);
    match model {
        "" | "K" | "wv" | "Mobile" | "Tablet" | "U" => None,
        m if m.starts_with("rv:") => None,
        m => Some(m.to_owned()),
    }
}

/// Inside the first parenthesized comment, nested parentheses kept.
fn first_comment(ua: &str) -> Option<&str> {
    let start = ua.find('(')? + 1;
    let mut depth = 1;
    for (i, c) in ua[start..].char_indices() {
        match c {
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return Some(&ua[start..start + i]);
                }
            }
            _ => {}
        }
    }
    None
}

/// The dotted version number right after `marker`, if any.
fn version_after(ua: &str, marker: &str) -> Option<String> {
    let rest = &ua[ua.find(marker)? + marker.len()..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let version = rest[..end].trim_end_matches('.');
    (!version.is_empty() && version.starts_with(|c: char| c.is_ascii_digit()))
        .then(|| version.to_owned())
}

/// User-Agent Client Hints, from either shape `rum.ua_hints` takes: the
/// browser's `navigator.userAgentData` (high-entropy values) or the request's
/// `Sec-CH-UA*` headers (structured-field strings).
#[derive(Debug, Default, PartialEq)]
pub struct ClientHints {
    pub brands: Vec<(String, String)>,
    pub full_versions: Vec<(String, String)>,
    pub mobile: Option<bool>,
    pub platform: Option<String>,
    pub platform_version: Option<String>,
    pub model: Option<String>,
}

impl ClientHints {
    pub fn from_value(hints: &Value) -> Self {
        let text = |key: &str| {
            hints
                .get(key)
                .and_then(Value::as_str)
                .map(|s| unquote(s.trim()).to_owned())
                .filter(|s| !s.is_empty())
        };
        let list = |object_key: &str, header_key: &str| match hints.get(object_key) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| {
                    let brand = item.get("brand")?.as_str()?;
                    let version = item.get("version")?.as_str()?;
                    Some((brand.to_owned(), version.to_owned()))
                })
                .collect(),
            _ => hints
                .get(header_key)
                .and_then(Value::as_str)
                .map(parse_brand_list)
                .unwrap_or_default(),
        };
        let mobile = match hints.get("mobile") {
            Some(Value::Bool(b)) => Some(*b),
            _ => match hints
                .get("sec_ch_ua_mobile")
                .and_then(Value::as_str)
                .map(str::trim)
            {
                Some("?1") => Some(true),
                Some("?0") => Some(false),
                _ => None,
            },
        };
        Self {
            brands: list("brands", "sec_ch_ua"),
            full_versions: list("fullVersionList", "sec_ch_ua_full_version_list"),
            mobile,
            platform: text("platform").or_else(|| text("sec_ch_ua_platform")),
            platform_version: text("platformVersion")
                .or_else(|| text("sec_ch_ua_platform_version")),
            model: text("model").or_else(|| text("sec_ch_ua_model")),
        }
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

/// `"Chromium";v="124", "Not)A;Brand";v="99"` → [(Chromium, 124), ...]. Brand
/// names may hold `;` and `,` inside their quotes (GREASE brands do).
fn parse_brand_list(header: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = header.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace() || *c == ',').is_some() {}
        if chars.peek() != Some(&'"') {
            break;
        }
        chars.next();
        let Some(brand) = read_quoted(&mut chars) else {
            break;
        };
        let mut version = String::new();
        // Parameters up to the next list separator.
        while let Some(c) = chars.next() {
            match c {
                ',' => break,
                ';' => {
                    while chars.next_if(|c| c.is_whitespace()).is_some() {}
                    let mut key = String::new();
                    while let Some(c) = chars.next_if(|c| *c != '=' && *c != ';' && *c != ',') {
                        key.push(c);
                    }
                    if chars.next_if_eq(&'=').is_some() {
                        let value = if chars.next_if_eq(&'"').is_some() {
                            read_quoted(&mut chars).unwrap_or_default()
                        } else {
                            let mut token = String::new();
                            while let Some(c) = chars.next_if(|c| *c != ';' && *c != ',') {
                                token.push(c);
                            }
                            token.trim().to_owned()
                        };
                        if key.trim() == "v" {
                            version = value;
                        }
                    }
                }
                _ => {}
            }
        }
        out.push((brand, version));
    }
    out
}

/// A quoted string's content after its opening quote; `None` if it never closes.
fn read_quoted(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) -> Option<String> {
    let mut out = String::new();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return Some(out),
            c => out.push(c),
        }
    }
    None
}

/// Chrome's GREASE brands ("Not-A.Brand", "Not)A;Brand", "Not/A)Brand"...).
fn is_grease(brand: &str) -> bool {
    let letters: String = brand
        .chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    letters == "notabrand"
}

fn apply_hints(hints: &ClientHints, info: &mut UserAgentInfo) {
    let real = |list: &[(String, String)]| -> Option<(String, String)> {
        let mut brands = list.iter().filter(|(b, _)| !b.is_empty() && !is_grease(b));
        let all: Vec<_> = brands.by_ref().collect();
        all.iter()
            .find(|(b, _)| b != "Chromium")
            .or_else(|| all.first())
            .map(|(b, v)| (b.clone(), v.clone()))
    };
    let chosen = real(&hints.full_versions).or_else(|| real(&hints.brands));
    // An in-app browser named by its UA (Facebook, Instagram) says more than
    // the WebView brand its hints carry.
    let in_app = matches!(info.name.as_deref(), Some("Facebook" | "Instagram"));
    if let Some((brand, version)) = chosen.filter(|_| !in_app) {
        if brand == "HeadlessChrome" {
            info.synthetic = true;
        }
        info.name = Some(
            match brand.as_str() {
                "Google Chrome" => "Chrome",
                "Microsoft Edge" => "Edge",
                other => other,
            }
            .to_owned(),
        );
        info.version = (!version.is_empty()).then_some(version);
    }

    let platform = hints.platform.as_deref().and_then(|p| match p {
        "Unknown" => None,
        "Chrome OS" | "Chromium OS" => Some("ChromeOS"),
        "Mac OS X" => Some("macOS"),
        other => Some(other),
    });
    if let Some(platform) = platform {
        if info.os_name.as_deref() != Some(platform) {
            info.os_name = Some(platform.to_owned());
            info.os_version = None;
        }
        if let Some(version) = hints.platform_version.as_deref() {
            let version = if platform == "Windows" {
                windows_release(version)
            } else {
                trim_zero_components(version)
            };
            if version.is_some() {
                info.os_version = version;
            }
        }
    }
    if let Some(model) = &hints.model {
        info.device_name = Some(model.clone());
    }
}

/// `Sec-CH-UA-Platform-Version` on Windows is the UniversalApiContract
/// version: 13 and above is Windows 11, 1–10 is Windows 10, and 0.x are 7,
/// 8 and 8.1.
fn windows_release(platform_version: &str) -> Option<String> {
    let mut parts = platform_version.split('.');
    let major: u32 = parts.next()?.trim().parse().ok()?;
    let minor: u32 = parts
        .next()
        .and_then(|m| m.trim().parse().ok())
        .unwrap_or(0);
    let release = match (major, minor) {
        (13.., _) => "11",
        (1..=12, _) => "10",
        (0, 3) => "8.1",
        (0, 2) => "8",
        (0, 1) => "7",
        _ => return None,
    };
    Some(release.to_owned())
}

/// `14.0.0` → `14`, `13.1.0` → `13.1`; an empty version is none.
fn trim_zero_components(version: &str) -> Option<String> {
    let mut parts: Vec<&str> = version.trim().split('.').collect();
    while parts.len() > 1 && parts.last() == Some(&"0") {
        parts.pop();
    }
    let out = parts.join(".");
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{ComponentMetrics, Registry};
    use serde_json::json;

    #[derive(Deserialize)]
    struct Cases {
        cases: Vec<Case>,
    }

    #[derive(Deserialize)]
    struct Case {
        what: String,
        ua: String,
        #[serde(default)]
        hints: Option<Value>,
        expect: std::collections::BTreeMap<String, String>,
        synthetic: bool,
    }

    fn cases() -> Vec<Case> {
        let text = include_str!("../../testdata/user_agents/cases.json");
        serde_json::from_str::<Cases>(text)
            .expect("cases.json parses")
            .cases
    }

    fn transform(config: UserAgentConfig) -> (UserAgentTransform, ComponentMetrics) {
        let registry = Registry::new();
        let metrics = ComponentMetrics::new(&registry, "ua", "transform", "user_agent");
        let cx = TransformContext {
            id: "ua".into(),
            metrics: metrics.clone(),
        };
        (config.build(&cx).expect("builds"), metrics)
    }

    fn event(ua: &str, hints: Option<&Value>) -> Event {
        let mut event =
            Event::from(json!({"user_agent": {"original": ua}, "rum": {"type": "page_view"}}));
        if let Some(hints) = hints {
            event.insert(schema::RUM_UA_HINTS, hints.clone());
        }
        event
    }

    /// Every `user_agent.*` field but `original`, flattened to `os.name`-style keys.
    fn written(event: &Event) -> std::collections::BTreeMap<String, String> {
        let mut out = std::collections::BTreeMap::new();
        fn walk(prefix: &str, value: &Value, out: &mut std::collections::BTreeMap<String, String>) {
            match value {
                Value::Object(map) => {
                    for (k, v) in map {
                        let key = if prefix.is_empty() {
                            k.clone()
                        } else {
                            format!("{prefix}.{k}")
                        };
                        walk(&key, v, out);
                    }
                }
                Value::String(s) => {
                    out.insert(prefix.to_owned(), s.clone());
                }
                other => {
                    out.insert(prefix.to_owned(), other.to_string());
                }
            }
        }
        if let Some(ua) = event.to_value().get(schema::USER_AGENT) {
            walk("", ua, &mut out);
        }
        out.remove("original");
        out
    }

    #[test]
    fn testdata_user_agents_resolve_as_expected() {
        let (mut t, _) = transform(UserAgentConfig::default());
        let mut failures = Vec::new();
        for case in cases() {
            let mut batch = vec![event(&case.ua, case.hints.as_ref())];
            t.transform_batch(&mut batch);
            let got = written(&batch[0]);
            let synthetic = batch[0].get(schema::LABELS_SYNTHETIC) == Some(&json!(true));
            if std::env::var_os("UA_CASES_SHOW").is_some() {
                eprintln!("{:<70} {:?} synthetic={}", case.what, got, synthetic);
            }
            if got != case.expect || synthetic != case.synthetic {
                failures.push(format!(
                    "{}\n  ua: {}\n  expected {:?} synthetic={}\n  got      {:?} synthetic={}",
                    case.what, case.ua, case.expect, case.synthetic, got, synthetic
                ));
            }
        }
        assert!(
            failures.is_empty(),
            "{} case(s) differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
    }

    #[test]
    fn cache_hit_gives_the_same_fields_as_a_parse() {
        let (mut t, metrics) = transform(UserAgentConfig::default());
        let cases = cases();
        let mut first: Batch = cases
            .iter()
            .map(|c| event(&c.ua, c.hints.as_ref()))
            .collect();
        let mut second = first.clone();
        t.transform_batch(&mut first);
        t.transform_batch(&mut second);
        assert_eq!(first, second);
        let lookups = |result| {
            metrics
                .registry()
                .counter_sum("user_agent_cache_lookups_total", &[("result", result)])
        };
        assert_eq!(lookups("miss"), cases.len() as u64);
        assert_eq!(lookups("hit"), cases.len() as u64);
    }

    #[test]
    fn hints_are_part_of_the_cache_key() {
        let (mut t, _) = transform(UserAgentConfig::default());
        let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
        let win11 = json!({"platform": "Windows", "platformVersion": "15.0.0"});
        let mut batch = vec![event(ua, None), event(ua, Some(&win11)), event(ua, None)];
        t.transform_batch(&mut batch);
        let versions: Vec<_> = batch
            .iter()
            .map(|e| e.get_str("user_agent.os.version"))
            .collect();
        assert_eq!(versions, [Some("10"), Some("11"), Some("10")]);
    }

    #[test]
    fn cache_stays_bounded_and_keeps_answering() {
        let (mut t, _) = transform(UserAgentConfig {
            cache_size: 8,
            ..UserAgentConfig::default()
        });
        for round in 0..3 {
            let mut batch: Batch = (0..50)
                .map(|i| event(&format!("Mozilla/5.0 (X11; Linux x86_64; rv:{i}.0) Gecko/20100101 Firefox/{i}.0"), None))
                .collect();
            t.transform_batch(&mut batch);
            for (i, e) in batch.iter().enumerate() {
                assert_eq!(
                    e.get_str("user_agent.version"),
                    Some(format!("{i}.0").as_str()),
                    "round {round}"
                );
            }
            assert!(t.cache.len() <= 8, "cache holds {}", t.cache.len());
        }
    }

    #[test]
    fn huge_user_agents_are_parsed_but_not_cached() {
        let (mut t, _) = transform(UserAgentConfig::default());
        let ua = format!(
            "Mozilla/5.0 (Windows NT 10.0; rv:125.0) Gecko/20100101 Firefox/125.0 {}",
            "x".repeat(10_000)
        );
        let mut batch = vec![event(&ua, None)];
        t.transform_batch(&mut batch);
        assert_eq!(batch[0].get_str("user_agent.name"), Some("Firefox"));
        assert_eq!(t.cache.len(), 0);
    }

    #[test]
    fn collision_never_returns_another_key() {
        let mut cache = ParseCache::new(16);
        let firefox = Prepared::new(UserAgentInfo {
            name: Some("Firefox".into()),
            ..Default::default()
        });
        cache.insert(42, "Firefox UA", None, firefox);
        assert!(!cache.contains(42, "Crafted UA", None));
        assert!(cache.get(42, "Crafted UA", None).is_none());
        assert!(cache.contains(42, "Firefox UA", None));
        assert!(!cache.contains(42, "Firefox UA", Some(&json!({"platform": "Linux"}))));
    }

    #[test]
    fn drop_synthetic_drops_and_counts() {
        let (mut t, metrics) = transform(UserAgentConfig {
            drop_synthetic: true,
            synthetic_patterns: vec!["  MyMonitor ".into()],
            ..UserAgentConfig::default()
        });
        let mut batch = vec![
            event("Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)", None),
            event("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0", None),
            event("Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0 mymonitor/3", None),
        ];
        t.transform_batch(&mut batch);
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].get_str("user_agent.name"), Some("Firefox"));
        assert_eq!(batch[0].get(schema::LABELS_SYNTHETIC), None);
        assert_eq!(metrics.discarded_intentional.get(), 2);
    }

    #[test]
    fn configured_pattern_labels_without_dropping() {
        let (mut t, metrics) = transform(UserAgentConfig {
            synthetic_patterns: vec!["Canarytrace".into()],
            ..UserAgentConfig::default()
        });
        let mut batch = vec![event(
            "Mozilla/5.0 (X11; Linux x86_64) Firefox/125.0 canarytrace/1.0",
            None,
        )];
        t.transform_batch(&mut batch);
        assert_eq!(batch[0].get(schema::LABELS_SYNTHETIC), Some(&json!(true)));
        assert_eq!(metrics.discarded_intentional.get(), 0);
    }

    #[test]
    fn nasty_inputs_do_not_panic_or_invent_fields() {
        let (mut t, _) = transform(UserAgentConfig::default());
        let nasty = [
            "",
            "-",
            "(",
            ")(",
            "((((((((",
            "Mozilla/5.0 (Linux; Android",
            "Mozilla/5.0 (Linux; Android 14; ",
            "FBAV/",
            "Instagram ",
            " Instagram x",
            "HeadlessChrome/.",
            "\u{0}\u{1}\u{fffd}ünïcödé 😀 Chrome/😀",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 1_ like Mac OS X)",
        ];
        for ua in nasty {
            let mut batch = vec![event(ua, None)];
            t.transform_batch(&mut batch);
            let got = written(&batch[0]);
            for value in got.values() {
                assert!(!value.is_empty() && value != "UNKNOWN", "{ua:?} → {got:?}");
            }
        }
        // An empty UA says nothing at all.
        let mut batch = vec![event("", None)];
        t.transform_batch(&mut batch);
        assert!(written(&batch[0]).is_empty());
    }

    #[test]
    fn malformed_hints_are_ignored_not_trusted() {
        let (mut t, _) = transform(UserAgentConfig::default());
        let ua = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
        for hints in [
            json!({"brands": "Chrome"}),
            json!({"brands": [1, 2, {"brand": 3}]}),
            json!({"sec_ch_ua": "Chromium;v=124"}),
            json!({"sec_ch_ua": "\"unterminated"}),
            json!({"platform": 7, "platformVersion": ["15"], "model": {}}),
            json!({"platform": "Windows", "platformVersion": "x.y"}),
            json!({}),
        ] {
            let mut batch = vec![event(ua, Some(&hints))];
            t.transform_batch(&mut batch);
            assert_eq!(
                batch[0].get_str("user_agent.name"),
                Some("Firefox"),
                "{hints}"
            );
        }
    }

    #[test]
    fn hints_alone_without_a_user_agent() {
        let (mut t, _) = transform(UserAgentConfig::default());
        let mut e = Event::from(
            json!({"rum": {"ua_hints": {"brands": [{"brand": "Microsoft Edge", "version": "124"}], "platform": "Windows", "platformVersion": "14.0.0"}}}),
        );
        e.remove(schema::USER_AGENT);
        let mut batch = vec![e];
        t.transform_batch(&mut batch);
        assert_eq!(batch[0].get_str("user_agent.name"), Some("Edge"));
        assert_eq!(batch[0].get_str("user_agent.os.version"), Some("11"));
    }

    #[test]
    fn hints_can_be_switched_off() {
        let (mut t, _) = transform(UserAgentConfig {
            use_client_hints: false,
            ..UserAgentConfig::default()
        });
        let ua = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
        let mut batch = vec![event(
            ua,
            Some(&json!({"platform": "Windows", "platformVersion": "15.0.0"})),
        )];
        t.transform_batch(&mut batch);
        assert_eq!(batch[0].get_str("user_agent.os.version"), Some("10"));
    }

    #[test]
    fn events_without_user_agent_pass_untouched() {
        let (mut t, _) = transform(UserAgentConfig::default());
        let original = Event::from(json!({"rum": {"type": "csp_violation"}}));
        let mut batch = vec![original.clone()];
        t.transform_batch(&mut batch);
        assert_eq!(batch[0], original);
    }

    #[test]
    fn brand_lists_with_quoted_separators() {
        assert_eq!(
            parse_brand_list(
                r#""Not)A;Brand";v="99", "Google Chrome";v="124.0.6367.91", "Chromium";v="124""#
            ),
            vec![
                ("Not)A;Brand".to_owned(), "99".to_owned()),
                ("Google Chrome".to_owned(), "124.0.6367.91".to_owned()),
                ("Chromium".to_owned(), "124".to_owned()),
            ]
        );
        assert_eq!(parse_brand_list(""), vec![]);
        assert_eq!(parse_brand_list("garbage"), vec![]);
        assert_eq!(
            parse_brand_list(r#""Brave";v="1", "unterminated"#),
            vec![("Brave".to_owned(), "1".to_owned())]
        );
        assert!(is_grease("Not/A)Brand") && is_grease("Not A(Brand") && !is_grease("Brave"));
    }

    #[test]
    fn android_models() {
        let model = |ua: &str| android_model(ua);
        assert_eq!(model("Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebKit/534.30"), Some("LG-L160L".into()));
        assert_eq!(
            model("Mozilla/5.0 (Linux; Android 14; Pixel 8 Build/AP1A.240405.002; wv)"),
            Some("Pixel 8".into())
        );
        assert_eq!(model("Mozilla/5.0 (Linux; Android 10; K)"), None);
        assert_eq!(
            model("Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0"),
            None
        );
        assert_eq!(
            model("Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit"),
            Some("moto g power (2022)".into())
        );
        assert_eq!(model("Mozilla/5.0 (Linux; Android 11"), None);
    }

    #[test]
    fn windows_platform_versions() {
        for (pv, release) in [
            ("15.0.0", Some("11")),
            ("13.0.0", Some("11")),
            ("10.0.0", Some("10")),
            ("1.0.0", Some("10")),
            ("0.3.0", Some("8.1")),
            ("0.1.0", Some("7")),
            ("0.0.0", None),
            ("", None),
        ] {
            assert_eq!(windows_release(pv).as_deref(), release, "{pv}");
        }
    }

    #[test]
    fn empty_synthetic_pattern_is_a_config_error() {
        let config = UserAgentConfig {
            synthetic_patterns: vec![" ".into()],
            ..UserAgentConfig::default()
        };
        assert_eq!(config.check()[0].0, "synthetic_patterns");
    }
}
