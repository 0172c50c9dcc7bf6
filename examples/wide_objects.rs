//! Time to decode a crafted body whose one object holds N keys (default
//! 70,000: about 0.9 MB, under the 1 MiB `max_body_bytes`), per decoder.
//! Repeated keys used to be found by checking each key against all before
//! it: seconds of CPU for one such request. Not a test (no timing in tests):
//!   cargo run --release --example wide_objects [N]

use rum_pipeline::privacy::ClientIpMode;
use rum_pipeline::sources::{
    beacon_decoder, elastic_apm_decoder, faro_decoder, web_vitals_decoder,
};
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(70_000);
    let attrs: String = (0..n)
        .map(|i| format!("\"k{i}\":\"v\""))
        .collect::<Vec<_>>()
        .join(",");
    let ip = "1.2.3.4".parse().unwrap();
    let t = std::time::Instant::now();
    let body =
        format!("{{\"meta\":{{}},\"events\":[{{\"name\":\"x\",\"attributes\":{{{attrs}}}}}]}}");
    let facts = faro_decoder::RequestFacts {
        received_at_ms: 1,
        client_ip: ip,
        user_agent: None,
        session_header: None,
    };
    let limits = faro_decoder::FaroLimits {
        max_items: 500,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        max_event_age_ms: i64::MAX,
        max_context_bytes: 64 * 1024,
        client_ip: ClientIpMode::Full,
    };
    let ok = faro_decoder::decode(body.as_bytes(), &facts, &limits).is_ok();
    eprintln!("faro {} bytes ok={ok} {:?}", body.len(), t.elapsed());
    let t = std::time::Instant::now();
    let body = format!("{{\"v\":1,\"events\":[{{\"type\":\"custom\",\"ts\":1,{attrs}}}]}}");
    let facts = beacon_decoder::RequestFacts {
        received_at_ms: 1,
        client_ip: ip,
        user_agent: None,
        client_hints: vec![],
    };
    let limits = beacon_decoder::BeaconLimits {
        max_events: 500,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        max_event_age_ms: i64::MAX,
        max_context_bytes: 64 * 1024,
        client_ip: ClientIpMode::Full,
    };
    let ok = beacon_decoder::decode(body.as_bytes(), &facts, &limits).is_ok();
    eprintln!("beacon {} bytes ok={ok} {:?}", body.len(), t.elapsed());
    let t = std::time::Instant::now();
    let body = format!("{{\"name\":\"LCP\",\"value\":1,{attrs}}}");
    let facts = web_vitals_decoder::RequestFacts {
        received_at_ms: 1,
        client_ip: ip,
        user_agent: None,
        referer: None,
    };
    let limits = web_vitals_decoder::MetricLimits {
        max_metrics: 50,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        keep_entries: false,
        client_ip: ClientIpMode::Full,
    };
    let ok = web_vitals_decoder::decode(body.as_bytes(), &facts, &limits).is_ok();
    eprintln!("web_vitals {} bytes ok={ok} {:?}", body.len(), t.elapsed());
    let t = std::time::Instant::now();
    let body = format!("{{\"metadata\":{{\"service\":{{\"name\":\"x\"}}}}}}\n{{\"error\":{{\"id\":\"1\",{attrs}}}}}\n");
    let facts = elastic_apm_decoder::RequestFacts {
        received_at_ms: 1,
        client_ip: ip,
        user_agent: None,
        version: elastic_apm_decoder::ApiVersion::V2,
    };
    let limits = elastic_apm_decoder::ApmLimits {
        max_events: 1000,
        max_event_bytes: 3000 * 1024,
        max_string_bytes: 16 * 1024,
        max_depth: 16,
        keep_breakdown: false,
        client_ip: ClientIpMode::Full,
    };
    let ok = elastic_apm_decoder::decode(body.as_bytes(), &facts, &limits).is_ok();
    eprintln!("apm {} bytes ok={ok} {:?}", body.len(), t.elapsed());
}
