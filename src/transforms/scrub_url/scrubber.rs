//! The URL rules, independent of events: credentials, secret-named
//! parameters and value redaction, component by component, so a scrubbed
//! URL is still the WHATWG serialization of a valid URL.

use std::borrow::Cow;
use std::cell::Cell;

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use url::Url;

use super::detect::redact_values;
use super::path_template::PathTemplate;
use super::ParamAction;

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
    pub(super) params: Vec<String>,
    pub(super) action: ParamAction,
    pub(super) replacement: String,
    pub(super) redact_values: bool,
    pub(super) min_digit_run: usize,
    pub(super) strip_fragment: bool,
    /// Set while a URL inside a parameter value is scrubbed, so a URL
    /// inside that one is not (see `scrub_nested_url`).
    pub(super) nested: Cell<bool>,
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
        // A nested URL first: its own rules cover the value rules, and an
        // address redacted first could break the URL (`u:p@x.com`).
        let new_value = value.and_then(|v| {
            self.scrub_nested_url(v)
                .or_else(|| self.redact_component(v))
        });
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

    /// A value that is itself a URL with a query or fragment (a login
    /// page's `?returnUrl=%2Freset%3Ftoken%3D...`, `?next=/reset?token=...`):
    /// the URL scrubbed and written back encoded, or `None` when it holds
    /// nothing. One level deep only, so a crafted nest costs no recursion.
    fn scrub_nested_url(&self, raw: &str) -> Option<String> {
        if self.nested.get() || !(raw.contains('=') || raw.contains("%3D") || raw.contains("%3d")) {
            return None;
        }
        let decoded = percent_decode_str(raw).decode_utf8_lossy();
        if !decoded.contains(['?', '#']) {
            return None;
        }
        self.nested.set(true);
        let outcome = self.scrub(&decoded, None);
        self.nested.set(false);
        match outcome.url {
            Scrubbed::Changed(url) => Some(utf8_percent_encode(&url, COMPONENT).to_string()),
            _ => None,
        }
    }

    /// `Token`, `%74oken`, `token[]`, `user[token]` all name `token`.
    fn is_secret_name(&self, raw: &str) -> bool {
        let known = |name: &str| self.params.iter().any(|p| p.eq_ignore_ascii_case(name));
        // Plain ASCII names (nearly all) need no decoding or allocation.
        if raw
            .bytes()
            .all(|b| b.is_ascii() && b != b'%' && b != b'[' && b != b'+')
        {
            return known(raw.trim());
        }
        // In a query, `+` is a space (form encoding): `token+=x` is `token `,
        // which servers that trim read as `token`.
        let spaced = raw.replace('+', " ");
        let decoded = percent_decode_str(&spaced).decode_utf8_lossy();
        let name = decoded.trim().to_lowercase();
        // `token[]` and `token[0]` (`qs`, axios and Express write arrays
        // with indices) are arrays of the same value: their index says
        // nothing, the key before it does.
        let mut name = name.as_str();
        while let Some(inner) = name.strip_suffix(']').and_then(|n| n.rsplit_once('[')) {
            match inner {
                (base, index) if index.bytes().all(|b| b.is_ascii_digit()) => name = base,
                _ => break,
            }
        }
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
        if !fragment.contains('#') {
            return self.scrub_fragment_part(fragment);
        }
        // A `#` inside the fragment starts another one: an OAuth provider
        // appends `#access_token=...` to a redirect URI that already holds
        // a hash route (`#/callback#access_token=...`). Each part is read
        // on its own, or the token would sit in a parameter named
        // `/callback#access_token`.
        let mut changed = false;
        let parts: Vec<Cow<str>> = fragment
            .split('#')
            .map(|part| match self.scrub_fragment_part(part) {
                Some(new) => {
                    changed = true;
                    Cow::Owned(new)
                }
                None => Cow::Borrowed(part),
            })
            .collect();
        changed.then(|| parts.join("#"))
    }

    /// One `#`-free part of a fragment.
    fn scrub_fragment_part(&self, fragment: &str) -> Option<String> {
        if let Some((route, query)) = fragment.split_once('?') {
            // Before the `?` sit either a route or parameters whose value
            // holds the `?` (`#access_token=...&redirect=/p?x=1`): read
            // parameters as parameters, or their names go unseen.
            let new_route = if route.contains('=') {
                self.scrub_pairs(route)
            } else {
                self.scrub_path(route)
            };
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
            let end = url_end(text, found);
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

/// The next `http://` or `https://` at or after `from`, in any case: a
/// scheme is case-insensitive, and `HTTPS://…?token=` parses like any other.
fn find_url_start(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let at = |start: usize, scheme: &[u8]| {
        bytes
            .get(start..start + scheme.len())
            .is_some_and(|b| b.eq_ignore_ascii_case(scheme))
    };
    (from..bytes.len())
        .find(|&i| bytes[i] | 0x20 == b'h' && (at(i, b"http://") || at(i, b"https://")))
}

/// Where the URL starting at `start` in free text ends: at whitespace, a
/// quote, `<`, `>`, `` ` ``, `\`, or a closing bracket it did not open.
/// Brackets, `|` and `^` are left raw in queries (and `[]` in IPv6 hosts),
/// so a URL holding them goes on: `?filter[a]=1&token=...` is one URL, and
/// cutting it at `[` left the token unscrubbed. `(https://e.com/a.js:1:2)`
/// still ends before its `)`.
fn url_end(text: &str, start: usize) -> usize {
    let mut open = [0usize; 3];
    for (i, c) in text[start..].char_indices() {
        let kind = match c {
            '(' | ')' => 0,
            '[' | ']' => 1,
            '{' | '}' => 2,
            c if c.is_whitespace() || "\"'<>`\\".contains(c) => return start + i,
            _ => continue,
        };
        if matches!(c, '(' | '[' | '{') {
            open[kind] += 1;
        } else if open[kind] == 0 {
            return start + i;
        } else {
            open[kind] -= 1;
        }
    }
    text.len()
}

/// `https://x/app.js:10:5` → (`https://x/app.js`, `:10:5`); trailing
/// sentence punctuation goes to the suffix too. A `:8080` right after the
/// host is a port, not a line number. The suffix is left unscrubbed, so in
/// a query or fragment only a whole `:line:column` pair (as every browser
/// writes a frame) is taken for one: a lone `:123456` there is the end of a
/// value (`?token=abc:123456`) and is scrubbed with it.
pub(super) fn split_position_suffix(candidate: &str) -> (&str, &str) {
    let trimmed = candidate.trim_end_matches(['.', ',', ';', '!', '?']);
    let (url, suffix) = split_numeric_groups(trimmed);
    let groups = suffix.matches(':').count();
    if groups == 1 && url.contains(['?', '#']) {
        return (trimmed, &candidate[trimmed.len()..]);
    }
    (url, &candidate[url.len()..])
}

/// Up to two trailing `:digits` groups of a URL with a path.
fn split_numeric_groups(trimmed: &str) -> (&str, &str) {
    let mut url = trimmed;
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
    (url, &trimmed[url.len()..])
}
