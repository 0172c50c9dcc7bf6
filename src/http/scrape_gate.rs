//! At most one rendered metrics page in flight per connection.
//!
//! A rendered page is held until the client has read it. Over HTTP/1 a
//! connection holds at most one answer at a time, but an HTTP/2 client may
//! open several streams to `/metrics` (or a `prometheus` sink's path) on one
//! connection and never open its receive window: each stream would keep a
//! whole page until the idle timeout, a page a stream, outside every memory
//! budget. So a page is handed out only while its connection
//! has none in flight; the page's bytes release the connection when they
//! are dropped (sent, or its stream or connection gone). Another scrape on
//! the same connection meanwhile is answered 503 with `Retry-After: 1`.
//! Connections are told apart by their peer address (one TCP connection,
//! one address and port), so one client cannot block another.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{LazyLock, Mutex};

use bytes::Bytes;
use hyper::header::{self, HeaderValue};
use hyper::StatusCode;

use super::{text_response, HttpResponse};

/// Connections with a metrics page in flight. Process-wide: the metrics
/// endpoints of every listener and sink share it (a scrape is rare, so one
/// lock is no contention).
static IN_FLIGHT: LazyLock<Mutex<HashSet<SocketAddr>>> = LazyLock::new(Default::default);

/// A metrics page (`text/plain; version=0.0.4`) rendered by `render` for
/// `peer`, or a 503 when that connection already has one in flight.
pub fn metrics_page(peer: SocketAddr, render: impl FnOnce() -> String) -> HttpResponse {
    if !in_flight().insert(peer) {
        let mut response = text_response(
            StatusCode::SERVICE_UNAVAILABLE,
            "a metrics page is already in flight on this connection; read it first\n",
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return response;
    }
    // Taken before `render` runs, so a panic there releases it too.
    let held = Held(peer);
    let page = Page {
        text: render(),
        _held: held,
    };
    let mut response = text_response(StatusCode::OK, Bytes::from_owner(page));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}

fn in_flight() -> std::sync::MutexGuard<'static, HashSet<SocketAddr>> {
    IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner())
}

/// A rendered page; its connection's place is freed when it is dropped.
struct Page {
    text: String,
    _held: Held,
}

impl AsRef<[u8]> for Page {
    fn as_ref(&self) -> &[u8] {
        self.text.as_bytes()
    }
}

/// A connection's place among those with a page in flight.
struct Held(SocketAddr);

impl Drop for Held {
    fn drop(&mut self) {
        in_flight().remove(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(response: HttpResponse) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn one_page_in_flight_per_connection_until_it_is_dropped() {
        // Ports of their own: other tests in this binary use the gate too.
        let a: SocketAddr = "192.0.2.1:40001".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:40002".parse().unwrap();
        let first = metrics_page(a, || "up 1\n".to_owned());
        assert_eq!(first.status(), StatusCode::OK);
        assert_eq!(
            first.headers()[header::CONTENT_TYPE],
            "text/plain; version=0.0.4"
        );

        let second = metrics_page(a, || unreachable!("not rendered while one is in flight"));
        assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(second.headers()[header::RETRY_AFTER], "1");
        // Another connection of the same client is not held up.
        let other = metrics_page(b, || "up 1\n".to_owned());
        assert_eq!(other.status(), StatusCode::OK);
        drop(other);

        // Read whole, the page frees its connection.
        assert_eq!(body(first).await, "up 1\n");
        let again = metrics_page(a, || "up 2\n".to_owned());
        assert_eq!(body(again).await, "up 2\n");
        // So does a page dropped unread (its stream reset).
        drop(metrics_page(a, || "up 3\n".to_owned()));
        assert_eq!(metrics_page(a, String::new).status(), StatusCode::OK);
    }
}
