//! One way to write an HTTP source (Vector's `sources/util/http` prelude is
//! the model): a source is its config plus an `HttpSource` — its endpoints,
//! the media types it takes and its decoder. What every source does alike
//! lives here, once: method and `405`, CORS preflight, `415`, the intake's
//! checks (client IP, rate limit, origin, body limits, gzip, body budget),
//! decode errors as `400`/`413`, the access log, and delivery downstream with
//! `503` + `Retry-After` when it stays full.
//!
//! Each route answers the preflight, or the payload POST, or the source's
//! own requests, or 405 (`SourceRoute`); the listener calls it once it has
//! matched the path, and keeps its own accept loop, TLS, limits and drain
//! (`http::server`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::Stream;
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::BodyDataStream;
use hyper::body::Incoming;

use super::decode_error::{DecodeError, DecodeErrorKind};
use super::SourceContext;
use crate::event::Batch;
use crate::http::connection::BodyHandles;
use crate::http::intake::{
    is_preflight, media_type, Intake, IntakeError, IntakeHead, IntakeRequest,
};
use crate::http::server::{ResponseFuture, Route, RouteHandler};
use crate::http::{access_log, empty_response, text_response, HttpResponse};
use crate::telemetry::Counter;
use crate::topology::buffer::{Fanout, SendError};

/// What a source's decoder made of one request.
pub struct Decoded<A> {
    pub events: Batch,
    /// The page the events came from, for the access log.
    pub page_url: Option<String>,
    /// Events received but dropped on purpose (csp's `drop_noise`): counted
    /// as received and as intentionally discarded.
    pub dropped: u64,
    /// What the source's answer needs once the events are downstream.
    pub answer: A,
}

/// Why a request's events did not go downstream, with its answer.
enum Undelivered {
    /// No room by the deadline (or shutting down): 503, retry later.
    Shed(HttpResponse),
    /// The request failed, with the message the client reads.
    Failed(HttpResponse, String),
}

/// Which decode of a request this is (see [`HttpSource::decode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodePass {
    /// The request's first: the source's counters count it.
    First,
    /// The same body once more, after its first events were dropped to
    /// wait for room without holding them: counted already.
    Again,
}

impl DecodePass {
    /// Whether the source's own counters count this decode.
    pub fn counts(self) -> bool {
        self == DecodePass::First
    }
}

/// The `Content-Type`s a payload may declare (declaring none is fine too),
/// and how a 415 names them.
pub struct MediaTypes {
    pub accepted: &'static [&'static str],
    pub names: &'static str,
}

/// What the source's hooks see of a request: all but its body.
pub struct RequestHead {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
}

impl RequestHead {
    pub fn method(&self) -> &Method {
        &self.method
    }
    pub fn path(&self) -> &str {
        self.uri.path()
    }
    pub fn query(&self) -> Option<&str> {
        self.uri.query()
    }
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }
}

/// Why a request is answered with an error, for sources that shape error
/// bodies their own way (APM Server's JSON).
pub enum Refusal<'a> {
    /// The request was refused; the message the client reads.
    Request(&'a str),
    /// Downstream stayed full (or is shutting down): retry later.
    Shed,
}

pub trait HttpSource: Send + Sync + 'static {
    /// Which of the source's paths a request came to (csp: the report
    /// format; APM: the intake version or the config endpoint).
    type Endpoint: Copy + Send + Sync + 'static;
    /// What `accepted` needs from the decode (APM: the lines refused).
    type Answer: Send;

    /// Whether requests must carry a key (`authorize`); the origin is then
    /// checked first, so a page of another origin gets 403 whatever it sends.
    /// (`refuse_key`)
    const AUTHORIZES: bool = false;

    /// The `Allow` header of a 405 on `endpoint`.
    fn allow(&self, endpoint: Self::Endpoint) -> &'static str;

    /// Whether a POST to `endpoint` carries a payload to decode (APM's
    /// config endpoint answers POST in `serve`).
    fn takes_payload(&self, _endpoint: Self::Endpoint) -> bool {
        true
    }

    /// What a payload POSTed to `endpoint` may be.
    fn media_types(&self, endpoint: Self::Endpoint) -> MediaTypes;

    /// Answers what is neither a preflight nor a payload (the beacon client
    /// script, APM's central config); `None` goes on to POST or 405.
    fn serve(
        &self,
        _endpoint: Self::Endpoint,
        _request: &RequestHead,
        _intake: &Intake,
    ) -> Option<HttpResponse> {
        None
    }

    /// With `AUTHORIZES`: the answer when the request's key is wrong or
    /// missing (the source counts it; CORS headers are added here).
    fn refuse_key(
        &self,
        _endpoint: Self::Endpoint,
        _request: &RequestHead,
    ) -> Option<HttpResponse> {
        None
    }

    /// Turns an accepted request (headers, decompressed body, client IP)
    /// into events. The source counts what it saw only on the `First`
    /// pass: a request whose events found no room is decoded `Again` once
    /// there is, and must come out the same.
    fn decode(
        &self,
        endpoint: Self::Endpoint,
        request: &IntakeRequest,
        received_at_ms: i64,
        pass: DecodePass,
    ) -> Result<Decoded<Self::Answer>, DecodeError>;

    /// The answer once the events are downstream (CORS headers are added).
    fn accepted(&self, _answer: Self::Answer) -> HttpResponse {
        empty_response(StatusCode::NO_CONTENT)
    }

    /// An error answer, already counted and with its CORS and `Retry-After`
    /// headers, for the source to reshape.
    fn refusal(&self, response: HttpResponse, _refusal: Refusal<'_>) -> HttpResponse {
        response
    }
}

/// The status of a decoder's refusal.
impl DecodeError {
    pub fn status(&self) -> StatusCode {
        match self.kind {
            DecodeErrorKind::Invalid => StatusCode::BAD_REQUEST,
            DecodeErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

/// One path a source serves.
pub struct Endpoint<E> {
    /// An exact path or `/prefix/*` (see `Route`).
    pub path: String,
    pub endpoint: E,
    /// The path the access log names (the pattern's base for `/prefix/*`,
    /// so no key or id lands in the log).
    pub log_path: String,
}

impl<E> Endpoint<E> {
    pub fn exact(path: &str, endpoint: E) -> Self {
        Self {
            path: path.to_owned(),
            endpoint,
            log_path: path.to_owned(),
        }
    }
}

/// The routes of one source: its endpoints, all sharing `source` and `intake`.
pub fn routes<S: HttpSource>(
    cx: SourceContext,
    intake: Intake,
    source: S,
    endpoints: Vec<Endpoint<S::Endpoint>>,
) -> Vec<Route> {
    let flow = Arc::new(Flow {
        shed: cx.metrics.errors("buffer_full", "sending"),
        send_timeout: Duration::from_millis(cx.http.send_timeout_ms),
        access_log: cx.http.access_log,
        output: cx.output,
        intake,
        source,
    });
    endpoints
        .into_iter()
        .map(|e| Route {
            path: e.path,
            source_id: cx.id.clone(),
            handler: Arc::new(SourceRoute {
                flow: flow.clone(),
                endpoint: e.endpoint,
                log_path: e.log_path.into(),
            }),
        })
        .collect()
}

/// What every route of one source shares.
struct Flow<S> {
    source: S,
    intake: Intake,
    /// The source's downstream buffers.
    output: Fanout,
    /// How long a request waits for room downstream before its 503.
    send_timeout: Duration,
    access_log: bool,
    /// Requests answered 503 because downstream stayed full (cached).
    shed: Counter,
}

/// One endpoint of a source, as the listener calls it once it has matched
/// the path. Its answers, in order: the CORS preflight (`OPTIONS`), the
/// payload (`POST`, when the endpoint takes one), the source's own answers
/// (`serve`), 405. (These were warp filters; the request now goes to them
/// as hyper hands it over, its head moved rather than cloned: the filter
/// chain cost ~6k instructions a request, a tenth of a beacon's decode.)
struct SourceRoute<S: HttpSource> {
    flow: Arc<Flow<S>>,
    endpoint: S::Endpoint,
    log_path: Arc<str>,
}

impl<S: HttpSource> RouteHandler for SourceRoute<S> {
    /// A payload POST's future is `Flow::receive`'s own, boxed as it is
    /// made: inside a future of this handler's it was held (and moved)
    /// twice over, 11 KiB copied into the box and again between them
    /// for every request (~1.5k instructions). What needs no wait is
    /// answered here, in a ready future (the listener catches a panic in
    /// this call as in a poll).
    fn handle(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
        handles: BodyHandles,
    ) -> ResponseFuture<'_> {
        let flow = &self.flow;
        let (parts, body) = request.into_parts();
        if is_preflight(&parts.method) {
            return Box::pin(std::future::ready(flow.intake.preflight(&parts.headers)));
        }
        let head = RequestHead {
            method: parts.method,
            uri: parts.uri,
            headers: parts.headers,
        };
        if head.method == Method::POST && flow.source.takes_payload(self.endpoint) {
            let intake_head = move |headers| IntakeHead {
                headers,
                peer: peer.ip(),
                budget: handles.budget,
                consumed: handles.consumed,
            };
            return Box::pin(Flow::receive(
                self,
                head,
                intake_head,
                BodyDataStream::new(body),
            ));
        }
        let response = flow
            .source
            .serve(self.endpoint, &head, &flow.intake)
            .unwrap_or_else(|| method_not_allowed(flow.source.allow(self.endpoint)));
        Box::pin(std::future::ready(response))
    }
}

impl<S: HttpSource> Flow<S> {
    /// Counts the refusal and answers it, shaped by the source.
    fn refuse(&self, error: &IntakeError, allow_origin: Option<HeaderValue>) -> HttpResponse {
        let response = self.intake.error_response(error, allow_origin);
        self.source
            .refusal(response, Refusal::Request(&error.message))
    }

    /// A payload POST, from its media type to its delivery downstream.
    /// `intake_head` completes what `Intake::accept` needs with the headers.
    async fn receive<D: bytes::Buf, E: std::fmt::Display>(
        route: &SourceRoute<S>,
        request: RequestHead,
        intake_head: impl FnOnce(HeaderMap) -> IntakeHead,
        body: impl Stream<Item = Result<D, E>>,
    ) -> HttpResponse {
        // Borrowed from the route (see `ResponseFuture`): clones of the
        // shared `Arc<Flow>` and of the path were atomic writes to lines
        // every worker's requests share (a cache miss each).
        let flow = &*route.flow;
        let (endpoint, log_path) = (route.endpoint, &*route.log_path);
        let intake = &flow.intake;
        // The origin before anything the request says of itself: a page
        // that may not post here gets its 403 (counted once) whatever its
        // Content-Type or key.
        let origin = match intake.check_origin(request.headers()) {
            Ok(origin) => origin,
            Err(error) => return flow.refuse(&error, None),
        };
        let media = flow.source.media_types(endpoint);
        if let Some(other) =
            media_type(request.headers()).filter(|t| !media.accepted.contains(&&**t))
        {
            let error = IntakeError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type `{other}` not accepted (use {})", media.names),
            );
            return flow.refuse(&error, origin);
        }
        if S::AUTHORIZES {
            // Checked before the body is read: a wrong key costs no bytes.
            if let Some(response) = flow.source.refuse_key(endpoint, &request) {
                return intake.with_cors(response, origin);
            }
        }
        // Room downstream first, then the body and the decode: while the
        // pipeline is full, every waiting connection would otherwise hold
        // its body and its decoded events. A request whose wait runs out is
        // still read and decoded, for the count of the events its 503
        // discards. The room asked for is one event and the declared body's
        // size (a hint: the room is given back at once); events that then
        // do not fit are not held while they wait (`deliver_without_holding`).
        let received_at_ms = now_ms();
        // Read once: `Intake::accept_checked` takes it as read here.
        let declared_length = crate::http::intake::declared_length(&request.headers);
        let declared = declared_length.map_or(0, |n| usize::try_from(n).unwrap_or(usize::MAX));
        // The clock is read only for a wait (a read costs about 50 ns on a
        // virtual machine, and most requests find room at once).
        let wait = async {
            if flow.output.has_room_now(declared) {
                return (Ok(()), Duration::ZERO);
            }
            Box::pin(flow.wait_for_room(declared)).await
        };
        let (accepted, (room, waited)) = match intake
            .accept_checked(
                intake_head(request.headers),
                origin,
                declared_length,
                body,
                wait,
            )
            .await
        {
            Ok(accepted) => accepted,
            Err((error, origin)) => return flow.refuse(&error, origin),
        };
        let metrics = intake.metrics();
        metrics.received_bytes.add(accepted.wire_bytes as u64);
        let decoded =
            match flow
                .source
                .decode(endpoint, &accepted, received_at_ms, DecodePass::First)
            {
                Ok(decoded) => decoded,
                Err(e) => {
                    let error = IntakeError::new(e.status(), e.error_type, e.message);
                    return flow.refuse(&error, accepted.allow_origin);
                }
            };
        if flow.access_log {
            access_log::log(
                "POST",
                log_path,
                decoded.page_url.as_deref(),
                accepted.wire_bytes,
            );
        }
        metrics
            .received_events
            .add(decoded.events.len() as u64 + decoded.dropped);
        if decoded.dropped > 0 {
            metrics.discarded_intentional.add(decoded.dropped);
        }
        let allow_origin = accepted.allow_origin.clone();
        let answer = decoded.answer;
        let delivered = match room {
            // `send_timeout` is the time a request may wait for room in all:
            // the events get what the first wait left. The body's upload
            // between the two is not waiting, and a slow one must not use
            // up the time its events get to find room.
            Ok(()) => {
                let left = flow.send_timeout.saturating_sub(waited);
                flow.deliver_without_holding(
                    endpoint,
                    &accepted,
                    received_at_ms,
                    decoded.events,
                    left,
                )
                .await
            }
            // Nothing to deliver needs no room (as `send_by` has it).
            Err(_) if decoded.events.is_empty() => Ok(()),
            Err(reason) => Err(Undelivered::Shed(
                flow.shed(decoded.events.len() as u64, reason),
            )),
        };
        let response = match delivered {
            Ok(()) => flow.source.accepted(answer),
            Err(Undelivered::Shed(response)) => {
                let response = intake.with_cors(response, allow_origin);
                return flow.source.refusal(response, Refusal::Shed);
            }
            Err(Undelivered::Failed(response, message)) => {
                let response = intake.with_cors(response, allow_origin);
                return flow.source.refusal(response, Refusal::Request(&message));
            }
        };
        // The body's share of the budget is held until the events are downstream.
        drop(accepted);
        intake.with_cors(response, allow_origin)
    }

    /// Waits up to `send_timeout` for room for one event of `bytes` bytes;
    /// how long it waited comes back with the outcome.
    async fn wait_for_room(&self, bytes: usize) -> (Result<(), SendError>, Duration) {
        let started = tokio::time::Instant::now();
        let room = self
            .output
            .wait_for_room(bytes, started + self.send_timeout)
            .await;
        (room, started.elapsed())
    }

    /// Hands a request's events downstream: `Ok` once they are in every
    /// downstream buffer, a 503 + `Retry-After` when room does not come
    /// by `deadline` (shed and counted, never lost silently: the client is
    /// told to retry). All or nothing, so no request is half-written.
    async fn deliver(
        &self,
        events: Batch,
        deadline: tokio::time::Instant,
    ) -> Result<(), HttpResponse> {
        let count = events.len() as u64;
        match self.output.send_by(events, deadline).await {
            Ok(()) => Ok(()),
            Err(reason) => Err(self.shed(count, reason)),
        }
    }

    /// [`Flow::deliver`] for a request that passed the wait for room before
    /// its body: its events go downstream now if they fit. If they do not
    /// (the room was for one event, and a big beacon's may be hundreds),
    /// they are dropped while the request waits for room for exactly them,
    /// which it then keeps, and the body (held anyway, counted in
    /// `max_body_bytes_in_flight`) is decoded again into that room.
    /// Otherwise every connection waiting under overload would hold its
    /// decoded events, several times its body and outside every budget.
    async fn deliver_without_holding(
        &self,
        endpoint: S::Endpoint,
        request: &IntakeRequest,
        received_at_ms: i64,
        events: Batch,
        left: Duration,
    ) -> Result<(), Undelivered> {
        let sent = events.len() as u64;
        match self.output.send_now_or_size(events) {
            Ok(None) => Ok(()),
            // The wait, rare, is boxed: its future in this one's made every
            // request's future larger, and each move of it a longer copy.
            Ok(Some((count, bytes))) => {
                Box::pin(self.decode_into_room(
                    endpoint,
                    request,
                    received_at_ms,
                    count,
                    bytes,
                    left,
                ))
                .await
            }
            Err(reason) => Err(Undelivered::Shed(self.shed(sent, reason))),
        }
    }

    /// The rest of [`Flow::deliver_without_holding`] when the events did
    /// not fit: room for `count` events of `bytes` bytes waited for and
    /// kept, and the body decoded again into it.
    async fn decode_into_room(
        &self,
        endpoint: S::Endpoint,
        request: &IntakeRequest,
        received_at_ms: i64,
        count: usize,
        bytes: usize,
        left: Duration,
    ) -> Result<(), Undelivered> {
        let deadline = tokio::time::Instant::now() + left;
        let reservations = match self.output.reserve_by(count, bytes, deadline).await {
            Ok(reservations) => reservations,
            Err(reason) => return Err(Undelivered::Shed(self.shed(count as u64, reason))),
        };
        let again = self
            .source
            .decode(endpoint, request, received_at_ms, DecodePass::Again);
        match again {
            // The same body, decoded the same way: the same events.
            Ok(decoded) if decoded.events.len() == count => self
                .output
                .send_reserved(reservations, decoded.events)
                .map_err(|reason| Undelivered::Shed(self.shed(count as u64, reason))),
            Ok(decoded) => {
                // Not what the room was kept for (a decoder that is not
                // deterministic: a bug): sent as any batch is.
                drop(reservations);
                tracing::error!(
                    first = count,
                    again = decoded.events.len(),
                    "a request decoded again gave another number of events"
                );
                self.deliver(decoded.events, deadline)
                    .await
                    .map_err(Undelivered::Shed)
            }
            Err(e) => {
                // The same body refused on the second decode: a bug,
                // answered and counted as one.
                tracing::error!(error = %e.message, "a request decoded again was refused");
                self.intake
                    .metrics()
                    .discarded_unintentional
                    .add(count as u64);
                let error = IntakeError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "decode_not_repeatable",
                    "the request could not be decoded a second time".to_owned(),
                );
                Err(Undelivered::Failed(
                    self.intake.error_response(&error, None),
                    error.message,
                ))
            }
        }
    }

    /// The 503 of a request whose `count` events found no room downstream.
    fn shed(&self, count: u64, reason: SendError) -> HttpResponse {
        self.shed.inc();
        self.intake.metrics().discarded_intentional.add(count);
        let message = match reason {
            SendError::Timeout => "pipeline is busy, retry later",
            SendError::Closed => "pipeline is shutting down",
        };
        let mut response = text_response(StatusCode::SERVICE_UNAVAILABLE, format!("{message}\n"));
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        response
    }
}

/// The time now in epoch milliseconds, as `chrono::Utc::now().timestamp_millis()`
/// gives it, without the calendar date chrono makes of the clock's reading
/// and takes apart again.
fn now_ms() -> i64 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        // Before 1970 (a clock set wrong): chrono's rounding down.
        Err(_) => chrono::Utc::now().timestamp_millis(),
    }
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
