//! The sink as a whole: config checks, `observe` on real events, and what a
//! scrape of the built sink answers.

use super::*;
use serde_json::json;

fn config(toml: &str) -> PrometheusConfig {
    let table: toml::Table = toml::from_str(toml).expect("toml");
    crate::config::decode(table).unwrap_or_else(|(k, m)| panic!("{k}: {m}"))
}
