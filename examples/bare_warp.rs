//! The benchmark's ceiling: a bare warp server that reads the body and
//! answers 204, nothing else. `cargo run --release --example bare_warp -- ADDR`

use warp::Filter;

#[tokio::main]
async fn main() {
    let address: std::net::SocketAddr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3100".to_owned())
        .parse()
        .expect("address");
    let route = warp::post()
        .and(warp::path("rum"))
        .and(warp::body::content_length_limit(1024 * 1024))
        .and(warp::body::bytes())
        .map(|_body: bytes::Bytes| {
            warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT)
        });
    eprintln!("bare warp listening on http://{address}");
    warp::serve(route).run(address).await;
}
