//! HTTP/1 or HTTP/2 with prior knowledge, told apart by a connection's first
//! bytes (HTTP/2 opens with a 24-byte preface) as hyper-util's auto builder
//! tells them apart, then served by hyper's builder for the version found.
//!
//! Why not the auto builder: it hands the bytes it read back to hyper alone,
//! on hyper's first read, so hyper read every request head in two reads and
//! grew the connection's 8 KiB read buffer to 16 KiB on the second. `Replay`
//! hands them back together with what the socket already has.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::rt::bounds::Http2ServerConnExec;
use hyper::server::conn::{http1, http2};
use hyper::service::{HttpService, Service};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::HttpResponse;
use crate::telemetry::{Counter, Registry};

const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection the watchdog can ask to close.
pub trait GracefulShutdown: Future<Output = ()> {
    /// HTTP/1 finishes the request in flight, HTTP/2 sends GOAWAY; before
    /// the version is known the connection ends at once.
    fn graceful_shutdown(self: Pin<&mut Self>);
}

/// How connections of each version are served.
pub struct Builders {
    pub http1: http1::Builder,
    pub http2: http2::Builder<TokioExecutor>,
    pub malformed_heads: MalformedHeads,
}

/// HTTP/1 request heads hyper could not read. It answers them itself (400,
/// or 431 for a head over 64 KiB, a long URI included: hyper's 414 needs a
/// URI of 64 KiB, which the head limit stops first) and ends the connection: no
/// request reaches the router, so nothing else counts them.
pub struct MalformedHeads {
    invalid: Counter,
    too_large: Counter,
}

impl MalformedHeads {
    pub fn new(registry: &Registry) -> Self {
        let counter = |reason: &str| {
            registry.counter(
                "http_malformed_requests_total",
                "HTTP/1 request heads answered by the HTTP layer before any route: invalid (400) or too_large (431, a head over 64 KiB, a long URI included); the connection is closed.",
                &[("reason", reason)],
            )
        };
        Self {
            invalid: counter("invalid"),
            too_large: counter("too_large"),
        }
    }

    fn count(&self, error: &hyper::Error) {
        if error.is_parse_too_large() {
            self.too_large.inc();
        } else if error.is_parse() {
            self.invalid.inc();
        }
    }
}

impl Builders {
    pub fn serve_connection<T, S>(&self, io: T, service: S) -> Connection<'_, T, S>
    where
        S: HttpService<Incoming>,
    {
        Connection {
            builders: self,
            state: State::Sniffing {
                io: Some(io),
                service: Some(service),
                prefix: [0; 24],
                filled: 0,
                cancelled: false,
            },
        }
    }
}

/// One connection: reading its first bytes, then served by hyper (boxed:
/// the task that holds this stays small).
pub struct Connection<'a, T, S>
where
    S: HttpService<Incoming>,
{
    builders: &'a Builders,
    state: State<T, S>,
}

type Io<T> = TokioIo<Replay<T>>;

enum State<T, S>
where
    S: HttpService<Incoming>,
{
    Sniffing {
        io: Option<T>,
        service: Option<S>,
        prefix: [u8; 24],
        filled: usize,
        cancelled: bool,
    },
    Http1(Pin<Box<http1::Connection<Io<T>, S>>>),
    Http2(Pin<Box<http2::Connection<Io<T>, S, TokioExecutor>>>),
}

impl<T, S> Future for Connection<'_, T, S>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<Incoming>, Response = HttpResponse, Error = Infallible> + Unpin,
    S::Future: 'static,
    TokioExecutor: Http2ServerConnExec<S::Future, Full<Bytes>>,
{
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                // Their errors are the peer's (reset, malformed, timed out);
                // a head hyper refused is counted.
                State::Http1(connection) => {
                    if let Err(error) = ready!(connection.as_mut().poll(cx)) {
                        this.builders.malformed_heads.count(&error);
                    }
                    return Poll::Ready(());
                }
                State::Http2(connection) => {
                    let _ = ready!(connection.as_mut().poll(cx));
                    return Poll::Ready(());
                }
                State::Sniffing {
                    io,
                    service,
                    prefix,
                    filled,
                    cancelled,
                } => {
                    if *cancelled {
                        return Poll::Ready(());
                    }
                    let Some(reader) = io.as_mut() else {
                        return Poll::Ready(());
                    };
                    // As hyper-util's read_version: HTTP/2 until a byte differs
                    // from the preface or the peer stops sending.
                    let mut http2 = true;
                    while *filled < H2_PREFACE.len() {
                        let mut buf = ReadBuf::new(&mut prefix[*filled..]);
                        if ready!(Pin::new(&mut *reader).poll_read(cx, &mut buf)).is_err() {
                            return Poll::Ready(());
                        }
                        let (from, to) = (*filled, *filled + buf.filled().len());
                        *filled = to;
                        if from == to || prefix[from..to] != H2_PREFACE[from..to] {
                            http2 = false;
                            break;
                        }
                    }
                    let (Some(io), Some(service)) = (io.take(), service.take()) else {
                        return Poll::Ready(());
                    };
                    let io = TokioIo::new(Replay {
                        inner: io,
                        prefix: *prefix,
                        start: 0,
                        end: *filled,
                        error: None,
                    });
                    let builders = this.builders;
                    this.state = if http2 {
                        State::Http2(Box::pin(builders.http2.serve_connection(io, service)))
                    } else {
                        State::Http1(Box::pin(builders.http1.serve_connection(io, service)))
                    };
                }
            }
        }
    }
}

impl<T, S> GracefulShutdown for Connection<'_, T, S>
where
    T: AsyncRead + AsyncWrite + Unpin,
    S: Service<Request<Incoming>, Response = HttpResponse, Error = Infallible> + Unpin,
    S::Future: 'static,
    TokioExecutor: Http2ServerConnExec<S::Future, Full<Bytes>>,
{
    fn graceful_shutdown(self: Pin<&mut Self>) {
        match &mut self.get_mut().state {
            State::Sniffing { cancelled, .. } => *cancelled = true,
            State::Http1(connection) => connection.as_mut().graceful_shutdown(),
            State::Http2(connection) => connection.as_mut().graceful_shutdown(),
        }
    }
}

/// The connection's IO with the bytes read to tell the version put back in
/// front of it.
pub struct Replay<T> {
    inner: T,
    prefix: [u8; 24],
    start: usize,
    end: usize,
    /// Met while topping up the replayed bytes; reported by the next read.
    error: Option<io::Error>,
}

impl<T: AsyncRead + Unpin> AsyncRead for Replay<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if let Some(e) = this.error.take() {
            return Poll::Ready(Err(e));
        }
        if this.start == this.end {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let n = (this.end - this.start).min(buf.remaining());
        buf.put_slice(&this.prefix[this.start..this.start + n]);
        this.start += n;
        if this.start == this.end && buf.remaining() > 0 {
            // Whatever the socket already has joins them: the head is then
            // usually read whole. Nothing yet (Pending) is fine too.
            if let Poll::Ready(Err(e)) = Pin::new(&mut this.inner).poll_read(cx, buf) {
                this.error = Some(e);
            }
        }
        Poll::Ready(Ok(()))
    }
}

writes_through!(Replay);

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Reads once from a `Replay` of `prefix` over `rest`.
    async fn first_read(prefix: &[u8], rest: &[u8], room: usize) -> Vec<u8> {
        let mut bytes = [0; 24];
        bytes[..prefix.len()].copy_from_slice(prefix);
        let mut replay = Replay {
            inner: rest,
            prefix: bytes,
            start: 0,
            end: prefix.len(),
            error: None,
        };
        let mut buf = vec![0; room];
        let n = replay.read(&mut buf).await.unwrap();
        buf.truncate(n);
        buf
    }

    #[tokio::test]
    async fn the_replayed_bytes_come_with_what_the_socket_has() {
        let read = first_read(b"GET", b" /health HTTP/1.1\r\n\r\n", 8192).await;
        assert_eq!(read, b"GET /health HTTP/1.1\r\n\r\n");
    }

    #[tokio::test]
    async fn a_small_read_takes_the_replayed_bytes_in_pieces() {
        let mut bytes = [0; 24];
        bytes[..3].copy_from_slice(b"GET");
        let mut replay = Replay {
            inner: &b" /"[..],
            prefix: bytes,
            start: 0,
            end: 3,
            error: None,
        };
        let mut all = Vec::new();
        replay.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, b"GET /");
        assert_eq!(first_read(b"GET", b" /", 2).await, b"GE");
    }
}
