//! Fixed-iteration driver for instruction counts (valgrind --tool=callgrind),
//! which stay repeatable on a shared, noisy machine:
//!   cargo build --release --example beacon_instructions
//!   valgrind --tool=callgrind target/release/examples/beacon_instructions parse 1000
//!   valgrind --tool=callgrind target/release/examples/beacon_instructions decode 1000
//!   valgrind --tool=callgrind target/release/examples/beacon_instructions chain 1000
//! `parse` is serde_json's reading into a `Value`; `floor` reads and checks
//! the body with the decoder's own reader and keeps nothing, the least any
//! decode of it can cost; `decode` is the source's
//! whole work; `encode` serializes the decoded events as NDJSON; `chain` is
//! decode, then the bench's full chain (user_agent -> geoip with the small
//! test database testdata/geoip/GeoIP2-City-Test.mmdb -> scrub_url -> sample
//! rate 1 -> labels, as bench/run.sh configures them), then encode to NDJSON:
//! the pipeline's whole per-beacon work outside the HTTP server and the
//! channels, caches warm (every beacon is the same). `chain` uses a client
//! address the test database knows (81.2.69.142), the other modes the
//! original 203.0.113.7. Read instructions per beacon as
//! (Ir of N=1000 - Ir of N=0) / 1000, or compare with the same N; the
//! examples' own start, the chain's build and one warm-up round are in the
//! N=0 run. `BEACON_BODY=FILE` measures another body than
//! testdata/beacons/realistic-10-events.json. `CHAIN_ADDRESSES=K` makes the
//! chain's beacons come from K client addresses in turn, as bench/beacon.lua
//! sends them (default 1: the one address above), and `GEOLITE2_CITY=FILE`
//! looks them up in that database instead of the test one. With
//! `BEACON_DUMP=1`, `chain` prints the documents of its first round.

#[path = "../benches/support/chain.rs"]
mod chain;

use rum_pipeline::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
use rum_pipeline::transforms::Transform;

/// The transforms of bench/run.sh's `chain` target, in order.
const CHAIN: &[(&str, &str)] = &[
    ("user_agent", ""),
    (
        "geoip",
        "database = \"testdata/geoip/GeoIP2-City-Test.mmdb\"",
    ),
    ("scrub_url", ""),
    ("sample", "rate = 1.0"),
    ("labels", "labels = { env = \"bench\", team = \"web\" }"),
];

fn build_chain() -> Vec<Box<dyn Transform>> {
    chain::build(CHAIN.iter().map(|(type_name, toml_text)| {
        let mut table: toml::Table = toml::from_str(toml_text).expect("chain config");
        // `GEOLITE2_CITY=FILE`: the bench's real database instead of the test one.
        if let (true, Ok(path)) = (*type_name == "geoip", std::env::var("GEOLITE2_CITY")) {
            table.insert("database".into(), toml::Value::String(path));
        }
        (*type_name, table)
    }))
}

#[global_allocator]
static ALLOCATOR: rum_pipeline::allocator::MiMalloc = rum_pipeline::allocator::MiMalloc;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "decode".into());
    // A misspelt mode would measure `encode` under another name.
    assert!(
        ["parse", "floor", "decode", "encode", "chain", "proto"].contains(&mode.as_str()),
        "unknown mode {mode}: parse, floor, decode, encode, chain or proto"
    );
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    // `BEACON_BODY=FILE` measures another body (the default has a space
    // after each `:` and `,`, as Python writes JSON; browsers send none).
    let body_path = std::env::var("BEACON_BODY")
        .unwrap_or_else(|_| "testdata/beacons/realistic-10-events.json".into());
    let body = std::fs::read(&body_path).expect("run from the repo root");
    let facts = RequestFacts {
        received_at_ms: 1_763_700_000_100,
        client_ip: "203.0.113.7".parse().expect("ip"),
        user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
        client_hints: vec![],
    };
    // A body the decoder refuses would count the instructions of its
    // refusal as a beacon's: every round must decode.
    let limits = BeaconLimits::default();
    let decoded = |body: &[u8], facts: &RequestFacts| {
        decode(body, facts, &limits)
            .unwrap_or_else(|e| panic!("{body_path} does not decode: {e:?}"))
    };
    let chain_facts = RequestFacts {
        client_ip: "81.2.69.142".parse().expect("ip"),
        user_agent: facts.user_agent,
        client_hints: vec![],
        ..facts
    };
    // The addresses bench/beacon.lua sends from (its X-Forwarded-For), in turn.
    let addresses: Vec<std::net::IpAddr> = match std::env::var("CHAIN_ADDRESSES") {
        Ok(k) => (1..=k.parse::<u32>().expect("CHAIN_ADDRESSES=K"))
            .map(|i| {
                let octets = [20 + i, (i * 7) % 250, (i * 13) % 250, (i * 31) % 250 + 1];
                std::net::IpAddr::from(octets.map(|o| o as u8))
            })
            .collect(),
        Err(_) => vec![chain_facts.client_ip],
    };
    let mut chain = if mode == "chain" {
        build_chain()
    } else {
        Vec::new()
    };
    let mut total = 0usize;
    let mut out = Vec::with_capacity(64 * 1024);
    // `BEACON_DUMP=1`: `chain` prints its first round's documents (NDJSON).
    let dump = std::env::var_os("BEACON_DUMP").is_some();
    // One round more than asked, in the N=0 run too: the first round pays
    // one-time costs (lazily built tables, the user-agent parser's first
    // parse, ~5.2k instructions a beacon over 1000 rounds of `chain`),
    // which then cancel out of (Ir of N=1000 - Ir of N=0) / 1000.
    for round in 0..=n {
        match mode.as_str() {
            "parse" => {
                total += serde_json::from_slice::<serde_json::Value>(&body)
                    .map(|v| v.is_object() as usize)
                    .expect("the body is JSON")
            }
            // The body read and checked, nothing kept: the floor under
            // `decode` (`rum_pipeline::sources::read_json_only`).
            "floor" => {
                assert!(
                    rum_pipeline::sources::read_json_only(&body),
                    "{body_path} is not JSON"
                );
                total += 1;
            }
            "decode" => total += decoded(&body, &facts).events.len(),
            // The typed-decode experiment (bench/experiments/typed_decode.rs),
            // built with `--features experiments`.
            "proto" => total += proto(&body),
            "chain" => {
                let facts = RequestFacts {
                    client_ip: addresses[round % addresses.len()],
                    client_hints: vec![],
                    ..chain_facts
                };
                let events = chain::run(&mut chain, decoded(&body, &facts).events);
                out.clear();
                for e in &events {
                    e.write_json(&mut out);
                    out.push(b'\n');
                }
                total += out.len();
                if round == 0 && dump {
                    print!("{}", String::from_utf8_lossy(&out));
                }
            }
            _ => {
                let events = decoded(&body, &facts).events;
                out.clear();
                for e in &events {
                    e.write_json(&mut out);
                    out.push(b'\n');
                }
                total += out.len();
            }
        }
    }
    println!("{mode} x{n}: {total}");
}

#[cfg(feature = "experiments")]
fn proto(body: &[u8]) -> usize {
    rum_pipeline::sources::proto_decode::decode(body).expect("the experiment reads the body")
}

#[cfg(not(feature = "experiments"))]
fn proto(_: &[u8]) -> usize {
    panic!("mode proto: build with --features experiments")
}
