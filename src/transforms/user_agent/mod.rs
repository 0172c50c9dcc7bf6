//! Transform `user_agent`: `user_agent.original` (plus the User-Agent Client
//! Hints in `rum.ua_hints`) → browser, OS, device and category under
//! `user_agent.*`, and `labels.synthetic = true` for robots and scripted
//! browsers. woothee does the parsing; `corrections.rs` fixes what it gets wrong for
//! today's browsers (reduced UAs, in-app browsers, headless Chrome) and
//! prefers the hints, which carry what the reduced UA hides: the real brand,
//! the full version, Windows 11, the Android model. A small cache keyed by the
//! UA string and hints makes a repeated UA a lookup instead of a parse.

use serde::Deserialize;
use std::sync::{Arc, LazyLock};

use super::{FunctionTransform, TransformContext};
use crate::config::CheckConfig;
use crate::event::{context_runs, Batch, Event, FieldId};
use crate::schema;
use crate::telemetry::Counter;

mod cache;
mod client_hints;
mod corrections;
#[cfg(test)]
mod tests;

use cache::{hints_key, ParseCache, Prepared, MAX_CACHED_KEY_BYTES};
pub use client_hints::ClientHints;
pub use corrections::{UserAgentParser, MAX_PARSED_UA_BYTES};

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
            hints_json: Vec::new(),
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
    /// The hints of the context at hand as the cache key holds them (JSON
    /// text). Kept between contexts for its allocation.
    hints_json: Vec<u8>,
    drop_synthetic: bool,
    hits: Counter,
    misses: Counter,
    discarded: Counter,
}

impl FunctionTransform for UserAgentTransform {
    fn transform_batch(&mut self, batch: &mut Batch) {
        let (mut hits, mut misses) = (0, 0);
        let before = batch.len();
        // The events of a beacon share one context and arrive together: the
        // UA is resolved once per context, and the context they share is
        // enriched in place.
        // The index ranges of the runs to drop (synthetic traffic).
        let mut synthetic = Vec::new();
        let mut start = 0;
        for run in context_runs(batch) {
            let end = start + run.len();
            if let Some((fields, hit)) = self.resolve(&run[0]) {
                // The run's first event asked the cache; the rest reuse its answer.
                if hit {
                    hits += 1;
                } else {
                    misses += 1;
                }
                hits += (run.len() - 1) as u64;
                if fields.synthetic && self.drop_synthetic {
                    synthetic.push(start..end);
                } else {
                    Event::edit_shared_context(run, |context| fields.apply(context));
                }
            }
            start = end;
        }
        if !synthetic.is_empty() {
            // The runs are in batch order: one pass with a cursor (looking
            // through every run for every event was quadratic in a batch
            // of many small synthetic beacons).
            let mut runs = synthetic.iter().peekable();
            let mut index = 0;
            batch.retain(|_| {
                while runs.next_if(|run| run.end <= index).is_some() {}
                let keep = !runs.peek().is_some_and(|run| run.contains(&index));
                index += 1;
                keep
            });
        }
        // Counted per batch: no atomics in the per-event loop.
        self.hits.add(hits);
        self.misses.add(misses);
        self.discarded.add((before - batch.len()) as u64);
    }
}

/// `user_agent.original` and `rum.ua_hints`, resolved once (a path is a
/// hash lookup).
static SLOTS: LazyLock<(FieldId, FieldId)> = LazyLock::new(|| {
    (
        FieldId::of(schema::USER_AGENT_ORIGINAL),
        FieldId::of(schema::RUM_UA_HINTS),
    )
});

impl UserAgentTransform {
    /// The fields for this event's UA and hints (and whether the cache had
    /// them); `None` when the event has neither.
    fn resolve(&mut self, event: &Event) -> Option<(Arc<Prepared>, bool)> {
        let (ua_slot, hints_slot) = *SLOTS;
        let ua = event.get_id_str(ua_slot);
        let hints = if self.parser.use_hints {
            event.get_id(hints_slot).filter(|h| h.is_object())
        } else {
            None
        };
        if ua.is_none() && hints.is_none() {
            return None;
        }
        let ua = ua.unwrap_or("");
        let cacheable = self.cache.is_enabled() && ua.len() <= MAX_CACHED_KEY_BYTES;
        if cacheable {
            hints_key(hints, &mut self.hints_json);
        }
        let key = &self.hints_json;
        let cacheable = cacheable && ua.len() + key.len() <= MAX_CACHED_KEY_BYTES;
        let hash = if cacheable {
            self.cache.key_hash(ua, key)
        } else {
            0
        };
        if cacheable {
            if let Some(hit) = self.cache.get(hash, ua, key) {
                return Some((hit, true));
            }
        }
        let prepared = Arc::new(Prepared::new(self.parser.parse(ua, hints)));
        if cacheable {
            self.cache.insert(hash, ua, key, prepared.clone());
        }
        Some((prepared, false))
    }
}
