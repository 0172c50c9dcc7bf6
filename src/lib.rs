//! rum-pipeline: a Real User Monitoring backend built as a Vector-style
//! streaming pipeline. Browsers send beacons and CSP reports to HTTP sources;
//! transforms enrich them; sinks write them to Elasticsearch or stdout.
//! See DESIGN.md (shared) and README.md.

pub mod client_bundle;
pub mod conditions;
pub mod config;
pub mod event;
pub mod health_probe;
pub mod http;
pub mod log_limit;
pub mod schema;
pub mod sinks;
pub mod sources;
pub mod telemetry;
pub mod topology;
pub mod transforms;
