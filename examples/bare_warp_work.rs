//! `examples/bare_warp` plus one piece of rum-pipeline's work per request,
//! to split the gap between bare warp and the real server into its parts
//! (`bench/run.sh` targets `bare_alloc`, `bare_floor`, `bare_decode`,
//! `bare_hop`). Built with rum-pipeline's allocator and its `purge_delay`
//! of 0, as the server is; `bare_warp` keeps the system's allocator, so the
//! ceiling stays what it always was. Not done here, and so part of the
//! server's remaining step: its HTTP layer (head checks, preface sniffing,
//! routing, the connection cap), the client address from `X-Forwarded-For`,
//! the client-hint headers, the content-type check and the streamed,
//! limited body read.
//! `cargo run --release --example bare_warp_work -- ADDR WORK`, `WORK`:
//! - `none`: bare warp's work, with this allocator;
//! - `floor`: the body read and checked as JSON by the decoders' own reader,
//!   nothing kept (`rum_pipeline::sources::read_json_only`), 400 if it is not
//!   JSON: the least any server that looks at the body can do;
//! - `decode`: the `rum_beacon` decode with the source's default limits and
//!   the request's User-Agent (the client address is always 127.0.0.1), its
//!   events made and dropped in the handler (no channel, no sink task), 400
//!   if refused;
//! - `hop`: the decode, its events sent over a tokio channel to a task that
//!   drops them (one hop of a pipeline, without its buffer accounting);
//! - `hop_count`: the decode, its events dropped in the handler and only
//!   their count sent to that task: the hop's wake-ups without its frees on
//!   another thread;
//! - `typed` and `typed_hop` (built with `--features experiments`): as
//!   `decode` and `hop`, with the typed-decode experiment
//!   (bench/experiments/typed_decode.rs) instead of the product's decode:
//!   what a beacon read into typed structs borrowing the body costs end to
//!   end. The hop sends the body and what was read of it to the task.

use std::net::{IpAddr, Ipv4Addr};

use rum_pipeline::sources::beacon_decoder::{decode, BeaconLimits, RequestFacts};
use warp::http::StatusCode;
use warp::Filter;

#[global_allocator]
static ALLOCATOR: rum_pipeline::allocator::MiMalloc = rum_pipeline::allocator::MiMalloc;

#[derive(Clone)]
enum Work {
    None,
    Floor,
    Decode,
    /// The decode, its events sent to a task of their own that drops them.
    Hop(tokio::sync::mpsc::UnboundedSender<Vec<rum_pipeline::event::Event>>),
    /// The decode, its events dropped here and only their count sent on.
    HopCount(tokio::sync::mpsc::UnboundedSender<usize>),
    /// The typed-decode experiment, its beacon dropped in the handler.
    Typed,
    /// The typed-decode experiment, its beacon sent to a task that drops it.
    TypedHop(tokio::sync::mpsc::UnboundedSender<typed::Owned>),
}

fn handle(work: &Work, body: &bytes::Bytes, user_agent: Option<&str>) -> StatusCode {
    let facts = || RequestFacts {
        received_at_ms: chrono::Utc::now().timestamp_millis(),
        client_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        user_agent,
        client_hints: Vec::new(),
    };
    let ok = match work {
        Work::None => true,
        Work::Floor => rum_pipeline::sources::read_json_only(body),
        Work::Decode => decode(body, &facts(), &BeaconLimits::default()).is_ok(),
        Work::Hop(to_drop) => match decode(body, &facts(), &BeaconLimits::default()) {
            Ok(d) => to_drop.send(d.events).is_ok(),
            Err(_) => false,
        },
        Work::HopCount(to_count) => match decode(body, &facts(), &BeaconLimits::default()) {
            Ok(d) => to_count.send(d.events.len()).is_ok(),
            Err(_) => false,
        },
        Work::Typed => typed::decode(body),
        Work::TypedHop(to_drop) => match typed::Owned::decode(body.clone()) {
            Some(beacon) => to_drop.send(beacon).is_ok(),
            None => false,
        },
    };
    if ok {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::BAD_REQUEST
    }
}

fn main() {
    // The server's `purge_delay` of 0.
    rum_pipeline::allocator::tune();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(serve());
}

async fn serve() {
    let address: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3100".to_owned())
        .parse()
        .expect("address");
    let work = match std::env::args().nth(2).as_deref() {
        Some("none") => Work::None,
        Some("floor") => Work::Floor,
        Some("decode") => Work::Decode,
        Some("hop") => {
            let (to_drop, mut dropping) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move { while dropping.recv().await.is_some() {} });
            Work::Hop(to_drop)
        }
        Some("hop_count") => {
            let (to_count, mut counting) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move { while counting.recv().await.is_some() {} });
            Work::HopCount(to_count)
        }
        Some("typed") => Work::Typed,
        Some("typed_hop") => {
            let (to_drop, mut dropping) = tokio::sync::mpsc::unbounded_channel();
            tokio::spawn(async move { while dropping.recv().await.is_some() {} });
            Work::TypedHop(to_drop)
        }
        other => panic!(
            "unknown work {other:?}: none, floor, decode, hop, hop_count, typed or typed_hop"
        ),
    };
    let route = warp::post()
        .and(warp::path("rum"))
        .and(warp::body::content_length_limit(1024 * 1024))
        .and(warp::header::optional::<String>("user-agent"))
        .and(warp::body::bytes())
        .map(move |user_agent: Option<String>, body: bytes::Bytes| {
            let status = handle(&work, &body, user_agent.as_deref());
            warp::reply::with_status(warp::reply(), status)
        });
    eprintln!("bare warp (+ work) listening on http://{address}");
    warp::serve(route).run(address).await;
}

/// The typed-decode experiment, when built with `--features experiments`.
#[cfg(feature = "experiments")]
mod typed {
    use rum_pipeline::sources::proto_decode::{decode_beacon, Beacon};

    /// Whether the body reads as a beacon; what was read dropped here.
    pub fn decode(body: &[u8]) -> bool {
        rum_pipeline::sources::proto_decode::decode(body).is_some()
    }

    /// A beacon read from a body it borrows, with that body: what a
    /// pipeline of such beacons would hand from task to task.
    pub struct Owned {
        // Dropped before the body it borrows (fields drop in order).
        _beacon: Beacon<'static>,
        _body: bytes::Bytes,
    }

    impl Owned {
        pub fn decode(body: bytes::Bytes) -> Option<Owned> {
            let text = std::str::from_utf8(&body).ok()?;
            // SAFETY: the text is the body's heap buffer, which a `Bytes`
            // never moves or changes and which `_body` keeps alive for as
            // long as `_beacon`, dropped first, borrows it.
            let text: &'static str = unsafe { &*(text as *const str) };
            let beacon = decode_beacon(text)?;
            Some(Owned {
                _beacon: beacon,
                _body: body,
            })
        }
    }
}

#[cfg(not(feature = "experiments"))]
mod typed {
    pub struct Owned;

    pub fn decode(_: &[u8]) -> bool {
        panic!("work typed: build with --features experiments")
    }

    impl Owned {
        pub fn decode(_: bytes::Bytes) -> Option<Owned> {
            panic!("work typed_hop: build with --features experiments")
        }
    }
}
