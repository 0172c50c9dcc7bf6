//! rum-pipeline: a Real User Monitoring backend built as a Vector-style
//! streaming pipeline. Browsers send beacons and CSP reports to HTTP sources;
//! transforms enrich them; sinks write them to Elasticsearch or stdout.
//!
//! How a beacon travels from the socket to a bulk line — the event model,
//! backpressure and shutdown — is in `docs/architecture.md`; what each
//! component does and its keys, in `docs/configuration.md`.

pub mod allocator;
pub mod client_bundle;
pub mod conditions;
pub mod config;
pub mod event;
#[cfg(test)]
mod fx_collisions;
pub mod health_probe;
pub mod http;
mod json_bytes;
pub mod log_limit;
pub mod privacy;
pub mod reload;
pub mod schema;
pub mod shutdown;
pub mod sinks;
pub mod sources;
pub mod stderr_log;
mod str_index;
pub mod telemetry;
#[cfg(test)]
mod test_alloc;
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: test_alloc::Counting = test_alloc::Counting;
pub mod topology;
pub mod transforms;
pub mod url_parts;
