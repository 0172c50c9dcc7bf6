//! One way to write an HTTP source (Vector's `sources/util/http` prelude is
//! the model): a source is its config plus an `HttpSource` — its endpoints,
//! the media types it takes and its decoder. What every source does alike
//! lives here, once: method and `405`, CORS preflight, `415`, the intake's
//! checks (client IP, rate limit, origin, body limits, gzip, body budget),
//! decode errors as `400`/`413`, the access log, and delivery downstream with
//! `503` + `Retry-After` when it stays full.
//!
//! Each route is a warp filter (preflight, or the payload POST, or the
//! source's own answers, or 405), turned into a service the listener calls
//! once it has matched the path; the listener keeps its own accept loop, TLS,
//! limits and drain (`http::server`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, Stream};
use http::{header, HeaderMap, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use tower_service::Service;
use warp::filters::path::FullPath;
use warp::Filter;

use super::decode_error::{DecodeError, DecodeErrorKind};
use super::SourceContext;
use crate::event::Batch;
use crate::http::connection::BodyConsumed;
use crate::http::intake::{media_type, Intake, IntakeError, IntakeHead, IntakeRequest};
use crate::http::limits::BodyBudget;
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

/// The `Content-Type`s a payload may declare (declaring none is fine too),
/// and how a 415 names them.
pub struct MediaTypes {
    pub accepted: &'static [&'static str],
    pub names: &'static str,
}

/// What the source's hooks see of a request: all but its body.
pub struct RequestHead {
    method: Method,
    path: FullPath,
    query: Option<String>,
    headers: HeaderMap,
}

impl RequestHead {
    pub fn method(&self) -> &Method {
        &self.method
    }
    pub fn path(&self) -> &str {
        self.path.as_str()
    }
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
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
    /// into events.
    fn decode(
        &self,
        endpoint: Self::Endpoint,
        request: &IntakeRequest,
        received_at_ms: i64,
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
        .map(|e| {
            let filter = filter(flow.clone(), e.endpoint, e.log_path.into());
            Route {
                path: e.path,
                source_id: cx.id.clone(),
                handler: Arc::new(FilterRoute {
                    service: warp::service(filter),
                }),
            }
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

/// The TCP peer, handed to the filter in the request's extensions.
#[derive(Clone, Copy)]
struct PeerAddr(SocketAddr);

/// One endpoint's answers, in order: preflight, the payload POST, the
/// source's own answers (`serve`), 405. The last never rejects, so warp's
/// own rejection answers are never seen.
fn filter<S: HttpSource>(
    flow: Arc<Flow<S>>,
    endpoint: S::Endpoint,
    log_path: Arc<str>,
) -> warp::filters::BoxedFilter<(Answer,)> {
    let allow = flow.source.allow(endpoint);
    let takes_payload = flow.source.takes_payload(endpoint);
    let flow = warp::any().map(move || flow.clone());
    let head = warp::method()
        .and(warp::path::full())
        .and(
            warp::query::raw()
                .map(Some)
                .or(warp::any().map(|| None))
                .unify(),
        )
        .and(warp::header::headers_cloned())
        .map(|method, path, query, headers| RequestHead {
            method,
            path,
            query,
            headers,
        });
    let preflight = warp::options()
        .and(flow.clone())
        .and(warp::header::headers_cloned())
        .map(|flow: Arc<Flow<S>>, headers: HeaderMap| Answer(flow.intake.preflight(&headers)));
    // Decided when the route is built; a filter rather than a boxed branch,
    // so the chain stays one type and costs one allocation per request.
    let payload_here = warp::any()
        .and_then(move || {
            std::future::ready(if takes_payload {
                Ok(())
            } else {
                Err(warp::reject::not_found())
            })
        })
        .untuple_one();
    let payload = warp::post()
        .and(payload_here)
        .and(flow.clone())
        .and(head)
        .and(warp::ext::get::<PeerAddr>())
        .and(warp::ext::optional::<Arc<BodyBudget>>())
        .and(warp::ext::optional::<BodyConsumed>())
        .and(warp::body::stream())
        .then(
            move |flow: Arc<Flow<S>>,
                  head: RequestHead,
                  peer: PeerAddr,
                  budget: Option<Arc<BodyBudget>>,
                  consumed: Option<BodyConsumed>,
                  body| {
                let log_path = log_path.clone();
                async move {
                    let intake_head = |headers| IntakeHead {
                        headers,
                        peer: peer.0.ip(),
                        budget,
                        consumed,
                    };
                    let response = flow
                        .receive(endpoint, &log_path, head, intake_head, body)
                        .await;
                    Answer(response)
                }
            },
        );
    let serve = flow
        .and(head)
        .and_then(move |flow: Arc<Flow<S>>, head: RequestHead| {
            let served = flow.source.serve(endpoint, &head, &flow.intake);
            async move { served.map(Answer).ok_or_else(warp::reject::not_found) }
        });
    let not_allowed = warp::any().map(move || Answer(method_not_allowed(allow)));
    preflight
        .or(payload)
        .unify()
        .or(serve)
        .unify()
        .or(not_allowed)
        .unify()
        .boxed()
}

/// A response as warp hands it on.
struct Answer(HttpResponse);

impl warp::Reply for Answer {
    fn into_response(self) -> warp::reply::Response {
        let (parts, body) = self.0.into_parts();
        // A `Full` body is ready at once: this takes its bytes, no waiting.
        let bytes = body
            .collect()
            .now_or_never()
            .map(|collected| collected.map_or_else(|never| match never {}, |c| c.to_bytes()))
            .unwrap_or_default();
        warp::reply::Response::from_parts(parts, bytes.into())
    }
}

/// What the listener calls for one of a source's paths: the endpoint's
/// filter, as a service.
struct FilterRoute<T> {
    service: T,
}

impl<T> RouteHandler for FilterRoute<T>
where
    T: Service<Request<Incoming>, Response = warp::reply::Response, Error = Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    T::Future: Send + 'static,
{
    fn handle(self: Arc<Self>, mut request: Request<Incoming>, peer: SocketAddr) -> ResponseFuture {
        request.extensions_mut().insert(PeerAddr(peer));
        let answer = self.service.clone().call(request);
        Box::pin(async move {
            let response = answer.await.unwrap_or_else(|never| match never {});
            let (parts, body) = response.into_parts();
            let body: Bytes = body
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            http::Response::from_parts(parts, Full::new(body))
        })
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
        &self,
        endpoint: S::Endpoint,
        log_path: &str,
        request: RequestHead,
        intake_head: impl FnOnce(HeaderMap) -> IntakeHead,
        body: impl Stream<Item = Result<D, E>>,
    ) -> HttpResponse {
        let intake = &self.intake;
        let media = self.source.media_types(endpoint);
        if let Some(other) =
            media_type(request.headers()).filter(|t| !media.accepted.contains(&t.as_str()))
        {
            let error = IntakeError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("Content-Type `{other}` not accepted (use {})", media.names),
            );
            let origin = intake.check_origin(request.headers()).ok().flatten();
            return self.refuse(&error, origin);
        }
        if S::AUTHORIZES {
            let origin = match intake.check_origin(request.headers()) {
                Ok(origin) => origin,
                Err(error) => return self.refuse(&error, None),
            };
            // Checked before the body is read: a wrong key costs no bytes.
            if let Some(response) = self.source.refuse_key(endpoint, &request) {
                return intake.with_cors(response, origin);
            }
        }
        let accepted = match intake.accept(intake_head(request.headers), body).await {
            Ok(accepted) => accepted,
            Err((error, origin)) => return self.refuse(&error, origin),
        };
        let metrics = intake.metrics();
        metrics.received_bytes.add(accepted.wire_bytes as u64);
        let received_at_ms = chrono::Utc::now().timestamp_millis();
        let decoded = match self.source.decode(endpoint, &accepted, received_at_ms) {
            Ok(decoded) => decoded,
            Err(e) => {
                let error = IntakeError::new(e.status(), e.error_type, e.message);
                return self.refuse(&error, accepted.allow_origin);
            }
        };
        if self.access_log {
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
        let response = match self.deliver(decoded.events).await {
            Ok(()) => self.source.accepted(answer),
            Err(response) => {
                let response = intake.with_cors(response, allow_origin);
                return self.source.refusal(response, Refusal::Shed);
            }
        };
        // The body's share of the budget is held until the events are downstream.
        drop(accepted);
        intake.with_cors(response, allow_origin)
    }

    /// Hands a request's events downstream: `Ok` once they are in every
    /// downstream buffer, a 503 + `Retry-After` when room does not come
    /// within `send_timeout` (shed and counted, never lost silently: the
    /// client is told to retry). All or nothing, so no request is half-written.
    async fn deliver(&self, events: Batch) -> Result<(), HttpResponse> {
        let count = events.len() as u64;
        let reason = match self.output.send_within(events, self.send_timeout).await {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        };
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
        Err(response)
    }
}

fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let mut response = text_response(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}
