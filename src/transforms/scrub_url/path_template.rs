//! `url.path_template`: a low-cardinality route for a path — configured
//! route patterns first, then id heuristics per segment.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use super::detect::is_id_like;

/// `url.path_template`: route patterns first, then id heuristics per segment.
pub struct PathTemplate {
    pub(super) routes: Vec<Route>,
    /// A segment holding a redaction is an id by definition.
    pub(super) replacement: String,
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
            if is_id_like(text) || holds_redaction(text, &self.replacement) {
                out.push_str(":id");
            } else {
                out.push_str(raw);
            }
        }
        out
    }
}

/// Whether `segment` holds `replacement` as a redaction leaves it: not glued
/// to a letter or digit on either side (a detector never redacts part of a
/// word). A bare `contains` made every segment with an `x` an id under
/// `replacement = "x"` (`/xbox/index.html` → `/:id/:id`).
fn holds_redaction(segment: &str, replacement: &str) -> bool {
    let bytes = segment.as_bytes();
    let free = |at: Option<&u8>| !at.is_some_and(u8::is_ascii_alphanumeric);
    segment.match_indices(replacement).any(|(at, _)| {
        let end = at + replacement.len();
        free(at.checked_sub(1).and_then(|i| bytes.get(i))) && free(bytes.get(end))
    })
}

#[derive(Debug, Clone, PartialEq)]
enum RouteSegment {
    Literal(String),
    Param,
    Rest,
}

#[derive(Debug, Clone)]
pub(super) struct Route {
    segments: Vec<RouteSegment>,
    /// What a match writes: the pattern with `{name}` → `:name`.
    template: String,
}

impl Route {
    pub(super) fn parse(pattern: &str) -> Result<Route, String> {
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
