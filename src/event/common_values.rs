//! The short strings that nearly every beacon repeats (vital names and
//! ratings, navigation and initiator types, HTTP methods, protocols), kept
//! as one static `Value` each. A decoder keeps a pointer to it instead of
//! an allocated copy per event. The copy was the most frequent allocation
//! of a beacon, and it is freed on whichever thread the sink runs, so the
//! next allocation on the source's thread met a cold block (perf: a third
//! of the allocator's time in `rum_beacon → blackhole`).

use std::sync::LazyLock;

use serde_json::Value;

use crate::str_index::StrIndex;

/// What our client, the `web-vitals` library and the browser's
/// performance entries send in keyword fields.
const COMMON: &[&str] = &[
    // Web vitals and their ratings.
    "LCP",
    "CLS",
    "INP",
    "FCP",
    "TTFB",
    "FID",
    "good",
    "needs-improvement",
    "poor",
    // Navigation types (Navigation Timing, web-vitals, our soft navigations).
    "navigate",
    "reload",
    "back_forward",
    "back-forward",
    "back_forward_cache",
    "back-forward-cache",
    "prerender",
    "restore",
    "soft-navigation",
    // Resource timing: initiator types, render blocking, cache, protocols.
    "script",
    "img",
    "css",
    "link",
    "fetch",
    "xmlhttprequest",
    "beacon",
    "iframe",
    "other",
    "navigation",
    "video",
    "audio",
    "track",
    "font",
    "image",
    "blocking",
    "non-blocking",
    "hit",
    "miss",
    "revalidated",
    "h2",
    "h3",
    "http/1.1",
    "http/1.0",
    // HTTP calls and user actions.
    "xhr",
    "GET",
    "POST",
    "PUT",
    "PATCH",
    "DELETE",
    "HEAD",
    "OPTIONS",
    "click",
    "submit",
    "input",
    "change",
    // Errors and long tasks.
    "error",
    "unhandledrejection",
    "console",
    "Error",
    "TypeError",
    "ReferenceError",
    "SyntaxError",
    "RangeError",
    "longtask",
    "long-animation-frame",
];

/// The index of `COMMON`, and its strings as values.
static TABLE: LazyLock<(StrIndex, Vec<Value>)> = LazyLock::new(|| {
    (
        StrIndex::new(COMMON.to_vec()),
        COMMON.iter().map(|s| Value::from(*s)).collect(),
    )
});

/// Longer than this, a string is none of `COMMON` (checked first: most
/// strings that are not common are URLs, messages and ids).
const LONGEST: usize = 24;

/// `text` as a shared static value, when it is one of the common strings.
#[inline]
pub fn common_value(text: &str) -> Option<&'static Value> {
    if text.len() > LONGEST {
        return None;
    }
    let (index, values) = &*TABLE;
    index.find(text).map(|i| &values[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_common_string_is_its_own_value_and_others_are_not_common() {
        for (i, text) in COMMON.iter().enumerate() {
            assert!(text.len() <= LONGEST, "{text}");
            // Each once: a repeat would be found at its first place.
            assert_eq!(TABLE.0.find(text), Some(i), "{text}");
            assert_eq!(common_value(text), Some(&Value::from(*text)));
        }
        for other in ["", "lcp", "GOOD", "good ", "v4-1", "https://example.com/"] {
            assert_eq!(common_value(other), None, "{other}");
        }
    }
}
