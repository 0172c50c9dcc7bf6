//! Options outside any component (`shutdown_timeout_secs`, `[http]`, `[api]`)
//! and the input buffer every transform and sink has, with their defaults.

use serde::Deserialize;

use super::byte_size;
use crate::http::limits::HttpServerOptions;
use crate::http::server::ApiOptions;

/// Default capacity of a transform's or sink's input buffer, in events.
pub const DEFAULT_BUFFER_MAX_EVENTS: usize = 4096;

/// Options outside any component.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlobalOptions {
    /// Seconds to drain channels and flush sinks after SIGTERM/SIGINT.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: u64,
    /// Seconds between the info lines reporting events in/out/dropped (0 = off).
    #[serde(default = "default_stats_interval")]
    pub stats_interval_secs: u64,
    /// `[http]`: connection cap, body bytes in flight and connection
    /// timeouts of every intake listener.
    #[serde(default)]
    pub http: HttpServerOptions,
    /// `[api]`: a separate listener for `/metrics` and `/health`; with it,
    /// the intake listeners no longer serve `/metrics`.
    #[serde(default)]
    pub api: Option<ApiOptions>,
}

impl Default for GlobalOptions {
    fn default() -> Self {
        Self {
            shutdown_timeout_secs: default_shutdown_timeout(),
            stats_interval_secs: default_stats_interval(),
            http: HttpServerOptions::default(),
            api: None,
        }
    }
}

/// serde default for the many options that are on unless turned off.
pub fn default_true() -> bool {
    true
}

fn default_shutdown_timeout() -> u64 {
    10
}
fn default_stats_interval() -> u64 {
    60
}

/// Input buffer of a transform or sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BufferOptions {
    /// Events the buffer holds before upstreams wait (and sources answer 503).
    #[serde(default = "default_buffer_max_events")]
    pub max_events: usize,
    /// Bytes the waiting events may keep alive (their own parts, plus each
    /// beacon's context and block of event slots once), so memory stays bounded however big the events
    /// are: `"4mb"`, `"512kb"` or a number of bytes. Unset: 256 KiB in front
    /// of a transform, 4 MiB in front of a sink.
    #[serde(default, deserialize_with = "optional_byte_size")]
    pub max_bytes: Option<usize>,
}

/// Default `buffer.max_bytes` in front of a sink: room to ride out a slow
/// bulk request without refusing beacons.
pub const DEFAULT_SINK_BUFFER_MAX_BYTES: usize = 4 * 1024 * 1024;

/// Default `buffer.max_bytes` in front of a transform: transforms keep up
/// with the sources, and a short queue keeps a beacon's events in the CPU
/// cache from one step to the next (deep queues between transforms made
/// throughput bimodal across process starts: bench/BASELINE.md).
pub const DEFAULT_TRANSFORM_BUFFER_MAX_BYTES: usize = 256 * 1024;

fn optional_byte_size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    byte_size::deserialize(d).map(Some)
}

fn default_buffer_max_events() -> usize {
    DEFAULT_BUFFER_MAX_EVENTS
}

impl Default for BufferOptions {
    fn default() -> Self {
        Self {
            max_events: DEFAULT_BUFFER_MAX_EVENTS,
            max_bytes: None,
        }
    }
}
