//! Test doubles shared by integration tests and benchmarks.
pub mod es_double;
