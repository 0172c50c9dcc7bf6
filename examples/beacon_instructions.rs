//! Fixed-iteration driver for instruction counts (valgrind --tool=callgrind),
//! which stay repeatable on a shared, noisy machine:
//!   cargo build --release --example beacon_instructions
//!   valgrind --tool=callgrind target/release/examples/beacon_instructions parse 1000
//!   valgrind --tool=callgrind target/release/examples/beacon_instructions decode 1000
//! `parse` is the floor (serde_json into a Value); `decode` is the source's
//! whole work; `encode` serializes the decoded events as NDJSON.

use rum_pipeline::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "decode".into());
    let n: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let body =
        std::fs::read("testdata/beacons/realistic-10-events.json").expect("run from the repo root");
    let facts = RequestFacts {
        received_at_ms: 1_763_700_000_100,
        client_ip: "203.0.113.7".parse().expect("ip"),
        user_agent: Some("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"),
        client_hints: vec![],
    };
    let limits = BeaconLimits {
        max_events: 500,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        max_event_age_ms: 86_400_000,
        max_context_bytes: 64 * 1024,
        client_ip: rum_pipeline::privacy::ClientIpMode::Full,
    };
    let mut total = 0usize;
    let mut out = Vec::with_capacity(64 * 1024);
    for _ in 0..n {
        match mode.as_str() {
            "parse" => {
                total += serde_json::from_slice::<serde_json::Value>(&body)
                    .map(|v| v.is_object() as usize)
                    .unwrap_or(0)
            }
            "decode" => {
                total += decode(&body, &facts, &limits)
                    .map(|d| d.events.len())
                    .unwrap_or(0)
            }
            _ => {
                let events = decode(&body, &facts, &limits)
                    .map(|d| d.events)
                    .unwrap_or_default();
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
