//! The steps every intake request goes through before a source reads its
//! payload: the client's address and its rate limit, CORS (preflight and
//! origin check), body size limits (declared, streamed, and after
//! decompression) and the shared budget of body bytes in flight. Each refusal
//! is an `IntakeError` with its HTTP status and the `error_type` it is counted
//! under. What happens after (decoding, delivery downstream) is the sources'
//! business (`sources::http_source`): this layer knows neither.

use std::borrow::Cow;
use std::io::Read;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use ipnet::IpNet;

use super::connection::BodyConsumed;
use super::limits::{BodyBudget, BodyPermit};
use super::rate_limit::{ClientRateLimiter, RateLimitOptions};
use super::{empty_response, text_response, HttpResponse};
use crate::telemetry::{ComponentMetrics, Counter, ErrorCounters};

/// Slow bodies are cut off after this long (slowloris).
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntakeError {
    pub status: StatusCode,
    /// The `error_type` label of `component_errors_total`.
    pub error_type: &'static str,
    pub message: String,
}

impl IntakeError {
    pub fn new(status: StatusCode, error_type: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error_type,
            message: message.into(),
        }
    }

    pub fn bad_request(error_type: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error_type, message)
    }
}

/// What a source needs from the request once the intake accepted it.
pub struct IntakeRequest {
    pub headers: HeaderMap,
    pub body: Bytes,
    /// Bytes as they came over the wire (before decompression).
    pub wire_bytes: usize,
    pub client_ip: IpAddr,
    /// The `Access-Control-Allow-Origin` value to answer with, if any.
    pub allow_origin: Option<HeaderValue>,
    /// This request's share of `max_body_bytes_in_flight` (wire bytes plus
    /// decompressed bytes), given back when the request is dropped.
    pub body_permit: BodyPermit,
}

/// The `User-Agent` header as it was sent: borrowed when it is UTF-8 (as
/// every browser's is), bytes of another charset replaced. `to_str` takes
/// visible ASCII only, and an in-app browser naming its app in UTF-8 lost
/// `user_agent.original` from every document, uncounted.
pub fn user_agent(headers: &HeaderMap) -> Option<std::borrow::Cow<'_, str>> {
    let value = headers.get(http::header::USER_AGENT)?.as_bytes();
    // `from_utf8` reads ASCII a word at a time; `from_utf8_lossy`'s chunks
    // went byte by byte (~800 instructions for a browser's header).
    Some(match std::str::from_utf8(value) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(value),
    })
}

/// The intake settings of one source (a source's `HttpSourceOptions` minus
/// what only the source itself uses).
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeOptions {
    /// Origins allowed to send (CORS). `["*"]` allows any.
    pub allowed_origins: Vec<String>,
    /// `Access-Control-Max-Age` of preflight answers, in seconds.
    pub cors_max_age_secs: u64,
    /// Proxies whose `X-Forwarded-For` / `Forwarded` headers are believed.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest body accepted, before and after decompression.
    pub max_body_bytes: usize,
    /// Per-client-IP rate limit; none when absent.
    pub rate_limit: Option<RateLimitOptions>,
}

/// What `Intake::accept` needs of a request besides its body.
pub struct IntakeHead {
    pub headers: HeaderMap,
    /// The TCP peer (the client, or the last proxy).
    pub peer: IpAddr,
    /// The listener's budget of body bytes in flight; without it (direct
    /// calls in tests) nothing is reserved.
    pub budget: Option<Arc<BodyBudget>>,
    /// Marked once the body is read, so the connection stays reusable.
    pub consumed: Option<BodyConsumed>,
}

/// Per-source intake settings and counters.
pub struct Intake {
    options: IntakeOptions,
    any_origin: bool,
    metrics: ComponentMetrics,
    /// Cached: bad requests are the hot path of an attack.
    origin_denied: Counter,
    /// `rate_limit`, when configured.
    rate_limiter: Option<ClientRateLimiter>,
    /// Requests answered 429 (cached: floods are the hot path).
    rate_limited: Counter,
    /// Every other refusal, by error type (cached for the same reason).
    refused: ErrorCounters,
    allow_methods: HeaderValue,
    /// Request headers preflights may ask for (an SDK's own headers on top
    /// of the defaults).
    allow_headers: HeaderValue,
    /// Response headers a cross-origin page may read (`Retry-After`, for
    /// SDKs that back off on 429/503), when any.
    expose_headers: Option<HeaderValue>,
    max_age: HeaderValue,
    /// `Vary: Origin` alone: what `with_cors` gives an answer that has no
    /// header yet (a 204), cloned whole rather than inserted into an empty
    /// map (its first insert hashes the name and sizes the map).
    vary_origin: HeaderMap,
}

impl Intake {
    /// `methods`: what preflights may ask for, e.g. "POST, GET, OPTIONS".
    pub fn new(options: IntakeOptions, metrics: ComponentMetrics, methods: &'static str) -> Self {
        Self {
            any_origin: options.allowed_origins.iter().any(|o| o == "*"),
            origin_denied: metrics.errors("origin_not_allowed", "receiving"),
            rate_limiter: options.rate_limit.as_ref().and_then(ClientRateLimiter::new),
            rate_limited: metrics.errors(RATE_LIMITED, "receiving"),
            refused: ErrorCounters::new(&metrics, "receiving"),
            allow_methods: HeaderValue::from_static(methods),
            allow_headers: HeaderValue::from_static(DEFAULT_ALLOW_HEADERS),
            expose_headers: None,
            max_age: HeaderValue::from(options.cors_max_age_secs),
            vary_origin: HeaderMap::from_iter([(header::VARY, HeaderValue::from_static("Origin"))]),
            options,
            metrics,
        }
    }

    /// Preflights may also ask for `headers` (lower-case, comma-separated,
    /// on top of `content-type, content-encoding`).
    pub fn allow_headers(mut self, headers: &'static str) -> Self {
        self.allow_headers = HeaderValue::from_static(headers);
        self
    }

    /// `Access-Control-Expose-Headers` on every cross-origin answer.
    pub fn expose_headers(mut self, headers: &'static str) -> Self {
        self.expose_headers = Some(HeaderValue::from_static(headers));
        self
    }

    pub fn options(&self) -> &IntakeOptions {
        &self.options
    }

    pub fn metrics(&self) -> &ComponentMetrics {
        &self.metrics
    }

    /// Checks the `Origin` header. No header (same-origin, curl, proxies) is fine.
    /// An allowed origin is echoed back, so credentialed requests work too.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<Option<HeaderValue>, IntakeError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(None);
        };
        let allowed = self.any_origin
            || origin.to_str().is_ok_and(|o| {
                self.options
                    .allowed_origins
                    .iter()
                    .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(o))
            });
        if allowed {
            Ok(Some(origin.clone()))
        } else {
            self.origin_denied.inc();
            Err(IntakeError::new(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                "origin not allowed",
            ))
        }
    }

    /// Answers an `OPTIONS` preflight.
    pub fn preflight(&self, headers: &HeaderMap) -> HttpResponse {
        match self.check_origin(headers) {
            Err(e) => self.error_response(&e, None),
            Ok(allow_origin) => {
                let mut response = empty_response(StatusCode::NO_CONTENT);
                let h = response.headers_mut();
                if let Some(origin) = allow_origin {
                    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
                }
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_METHODS,
                    self.allow_methods.clone(),
                );
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_HEADERS,
                    self.allow_headers.clone(),
                );
                h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
                h.insert(header::VARY, HeaderValue::from_static("Origin"));
                response
            }
        }
    }

    /// Adds the CORS answer headers to a response, and `Vary: Origin` to
    /// every answer, with an allowed origin or without: what this intake
    /// answers depends on `Origin` (echoed, refused, or nothing without
    /// one), so a shared cache must key on it. Without it, a cached answer
    /// to a request that had no `Origin` (the central config is cacheable)
    /// was handed to every page, no `Access-Control-Allow-Origin` in it
    /// (the Fetch standard's "CORS protocol and HTTP caches").
    pub fn with_cors(
        &self,
        mut response: HttpResponse,
        allow_origin: Option<HeaderValue>,
    ) -> HttpResponse {
        let h = response.headers_mut();
        if h.is_empty() {
            h.clone_from(&self.vary_origin);
        } else {
            h.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        if let Some(origin) = allow_origin {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            if let Some(expose) = &self.expose_headers {
                h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, expose.clone());
            }
        }
        response
    }

    /// Counts the error and turns it into the client's answer.
    pub fn error_response(
        &self,
        error: &IntakeError,
        allow_origin: Option<HeaderValue>,
    ) -> HttpResponse {
        // Origin refusals and rate limits are counted where they are found
        // (cached counters).
        if error.error_type != "origin_not_allowed" && error.error_type != RATE_LIMITED {
            self.refused.add(error.error_type, 1);
        }
        let mut response = text_response(error.status, format!("{}\n", error.message));
        // A rate-limited client gets a token back within 1 s (at least 1 request/s).
        if error.status == StatusCode::SERVICE_UNAVAILABLE
            || error.status == StatusCode::TOO_MANY_REQUESTS
        {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        self.with_cors(response, allow_origin)
    }

    /// Runs the common steps for a POST: client address and rate limit,
    /// origin, size limits, body budget, decompression. `body` is the
    /// request body as a stream of chunks (hyper's `Incoming` through
    /// `BodyDataStream`). `ready` is awaited once the request passed every
    /// check that needs no body, before a byte of the body is read (sources
    /// wait there for room downstream: a request waiting its turn then
    /// holds no copy of its body); its output comes back with the request.
    pub async fn accept<B, D, E, R>(
        &self,
        head: IntakeHead,
        body: B,
        ready: impl std::future::Future<Output = R>,
    ) -> Result<(IntakeRequest, R), (IntakeError, Option<HeaderValue>)>
    where
        B: Stream<Item = Result<D, E>>,
        D: Buf,
        E: std::fmt::Display,
    {
        // The origin first: a 429 to an allowed page carries its CORS
        // headers like every other refusal, or the page's script can read
        // neither the status nor its `Retry-After` (what SDKs back off on).
        let allow_origin = self.check_origin(&head.headers).map_err(|e| (e, None))?;
        let declared = declared_length(&head.headers);
        self.accept_checked(head, allow_origin, declared, body, ready)
            .await
    }

    /// [`Intake::accept`] for a caller that has checked the origin
    /// (`allow_origin`, what `check_origin` gave) and read the declared
    /// length (`declared_length`) already: each is a lookup in the header
    /// map, and sources need both before the intake's steps.
    pub async fn accept_checked<B, D, E, R>(
        &self,
        head: IntakeHead,
        allow_origin: Option<HeaderValue>,
        declared: Option<u64>,
        body: B,
        ready: impl std::future::Future<Output = R>,
    ) -> Result<(IntakeRequest, R), (IntakeError, Option<HeaderValue>)>
    where
        B: Stream<Item = Result<D, E>>,
        D: Buf,
        E: std::fmt::Display,
    {
        let IntakeHead {
            headers,
            peer,
            budget,
            consumed,
        } = head;
        let fail = |e: IntakeError| (e, allow_origin.clone());
        // Before anything is read, so a flood costs no body bytes.
        let client_ip = super::client_ip::client_ip(peer, &headers, &self.options.trusted_proxies);
        if let Some(limiter) = &self.rate_limiter {
            if !limiter.allow(client_ip) {
                self.rate_limited.inc();
                return Err(fail(IntakeError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    RATE_LIMITED,
                    "too many requests from this address, retry later",
                )));
            }
        }
        let limit = self.options.max_body_bytes;
        if declared.is_some_and(|n| n > limit as u64) {
            return Err(fail(too_large(limit)));
        }
        // The listener hands every request the shared budget; without it
        // (direct calls in tests) nothing is reserved.
        let mut body_permit = budget.map_or_else(BodyPermit::unlimited, BodyPermit::of);
        // A declared length is reserved whole, before a byte is read.
        let declared = declared.unwrap_or(0) as usize;
        if !body_permit.grow(declared) {
            return Err(fail(budget_exhausted()));
        }
        let ready = ready.await;
        let wire = within(
            BODY_READ_TIMEOUT,
            read_limited(body, limit, declared, &mut body_permit),
        )
        .await
        .ok_or_else(|| {
            fail(IntakeError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                "body not received in time",
            ))
        })?
        .map_err(fail)?;
        if let Some(consumed) = consumed {
            consumed.mark();
        }
        let wire_bytes = wire.len();
        let body = decode_budgeted(&headers, wire, limit, &mut body_permit).map_err(fail)?;
        let request = IntakeRequest {
            headers,
            body,
            wire_bytes,
            client_ip,
            allow_origin,
            body_permit,
        };
        Ok((request, ready))
    }
}

/// What preflights may ask for unless a source says more.
pub const DEFAULT_ALLOW_HEADERS: &str = "content-type, content-encoding";

/// `error_type` of requests refused by `rate_limit`.
pub const RATE_LIMITED: &str = "rate_limited";
/// `error_type` of requests refused because `max_body_bytes_in_flight` is taken.
pub const BODY_BUDGET_EXHAUSTED: &str = "body_budget_exhausted";

fn budget_exhausted() -> IntakeError {
    IntakeError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        BODY_BUDGET_EXHAUSTED,
        "too many request bodies in flight, retry later",
    )
}

pub fn is_preflight(method: &Method) -> bool {
    method == Method::OPTIONS
}

pub(crate) fn declared_length(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_LENGTH)?;
    if let Some(n) = super::framing::plain_decimal(value.as_bytes()) {
        return Some(n);
    }
    value.to_str().ok()?.parse().ok()
}

fn too_large(limit: usize) -> IntakeError {
    IntakeError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("body larger than max_body_bytes ({limit})"),
    )
}

/// `future` if it finishes within `limit`, timed from its first poll that
/// does not finish it: the clock is read and the timer made only then. A
/// beacon's body has nearly always come in with its head, and
/// `tokio::time::timeout` read the clock for every request.
async fn within<F: std::future::Future>(limit: Duration, future: F) -> Option<F::Output> {
    use std::future::Future;
    let mut future = std::pin::pin!(future);
    let mut timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>> = None;
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(output) = future.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(output));
        }
        let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        timer.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// Reads the body, refusing as soon as it passes `limit` (chunked bodies
/// declare no length, so the check is on what arrives). Bytes beyond what
/// `permit` holds are reserved as they arrive; no room → 503.
///
/// A body that comes in one chunk, as nearly every beacon does (it arrived
/// with its head), is kept as the chunk it came in: hyper hands it out as
/// a part of the connection's read buffer, and copying it into a buffer of
/// its own cost an allocation and a copy of the whole body a request. The
/// request is done with it before the connection reads again. Only a body
/// of several chunks is gathered into one buffer.
async fn read_limited<D: Buf, E: std::fmt::Display>(
    body: impl Stream<Item = Result<D, E>>,
    limit: usize,
    declared: usize,
    permit: &mut BodyPermit,
) -> Result<Bytes, IntakeError> {
    let mut body = std::pin::pin!(body);
    let mut first: Option<Bytes> = None;
    let mut gathered: Option<BytesMut> = None;
    let mut len = 0;
    while let Some(chunk) = body.next().await {
        let mut data = chunk.map_err(|e| {
            IntakeError::bad_request("body_read_failed", format!("reading the body failed: {e}"))
        })?;
        len += data.remaining();
        if len > limit {
            return Err(too_large(limit));
        }
        if len > permit.bytes() && !permit.grow(len - permit.bytes()) {
            return Err(budget_exhausted());
        }
        if first.is_none() && gathered.is_none() {
            // `Bytes` hands itself over: no copy.
            first = Some(data.copy_to_bytes(data.remaining()));
            continue;
        }
        let buf = gathered.get_or_insert_with(|| {
            let mut buf = BytesMut::with_capacity(declared.min(limit).max(len));
            buf.extend_from_slice(&first.take().unwrap_or_default());
            buf
        });
        while data.has_remaining() {
            let part = data.chunk();
            buf.extend_from_slice(part);
            let n = part.len();
            data.advance(n);
        }
    }
    Ok(match gathered {
        Some(buf) => buf.freeze(),
        None => first.unwrap_or_default(),
    })
}

/// The media type without parameters, lower-cased: `application/json`
/// (borrowed from the header when it is lower-case already, as browsers
/// send it).
pub fn media_type(headers: &HeaderMap) -> Option<Cow<'_, str>> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    // The part before the first `;` without the spaces and tabs around it
    // (the only whitespace `to_str` lets through), found byte by byte: not
    // through `str::split`'s char searcher and `str::trim` (~300
    // instructions a request).
    let bytes = value.as_bytes();
    let end = bytes.iter().position(|&b| b == b';').unwrap_or(bytes.len());
    let blank = |b: &u8| *b == b' ' || *b == b'\t';
    let start = bytes[..end].iter().position(|b| !blank(b))?;
    let stop = bytes[..end].iter().rposition(|b| !blank(b))? + 1;
    let essence = &value[start..stop];
    Some(if essence.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(essence.to_ascii_lowercase())
    } else {
        Cow::Borrowed(essence)
    })
}

/// Undoes `Content-Encoding: gzip | deflate`, never producing more than
/// `limit` bytes: a gzip bomb stops at the limit instead of filling memory.
pub fn decode_content(
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
) -> Result<Bytes, IntakeError> {
    decode_budgeted(headers, body, limit, &mut BodyPermit::unlimited())
}

/// `decode_content`, reserving the decompressed bytes in `permit` as they
/// are produced (the wire bytes are already in it).
fn decode_budgeted(
    headers: &HeaderMap,
    body: Bytes,
    limit: usize,
    permit: &mut BodyPermit,
) -> Result<Bytes, IntakeError> {
    let mut values = headers.get_all(header::CONTENT_ENCODING).iter();
    let Some(first) = values.next() else {
        return Ok(body);
    };
    // One coding, as text: a second header line makes a list (`identity,
    // gzip`, or a body gzipped twice), which is refused as a list in one
    // line is, not read as its first coding alone.
    let encoding = match (first.to_str(), values.next()) {
        (Ok(text), None) => text.trim().to_ascii_lowercase(),
        _ => {
            let named: Vec<String> = headers
                .get_all(header::CONTENT_ENCODING)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            return Err(unsupported_encoding(&named.join(", ")));
        }
    };
    let wire_reserved = permit.bytes();
    match encoding.as_str() {
        "" | "identity" => Ok(body),
        "gzip" | "x-gzip" => {
            let decoder = flate2::read::MultiGzDecoder::new(&body[..]);
            inflate(decoder, limit, permit, wire_reserved)
        }
        // HTTP's "deflate" is zlib-wrapped, but some clients send raw deflate.
        // A deflate stream ends where it says, unlike gzip's members: what
        // follows it (a second stream, a second beacon) is refused, never
        // dropped unread (`bufread` decoders leave it in their input).
        "deflate" => {
            let mut zlib = flate2::bufread::ZlibDecoder::new(&body[..]);
            match inflate(&mut zlib, limit, permit, wire_reserved) {
                Ok(out) => whole_stream(out, zlib.get_ref()),
                Err(e) if e.error_type == "invalid_compression" => {
                    let mut raw = flate2::bufread::DeflateDecoder::new(&body[..]);
                    let out = inflate(&mut raw, limit, permit, wire_reserved)?;
                    whole_stream(out, raw.get_ref())
                }
                Err(e) => Err(e),
            }
        }
        other => Err(unsupported_encoding(other)),
    }
}

fn unsupported_encoding(named: &str) -> IntakeError {
    IntakeError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_content_encoding",
        format!("unsupported Content-Encoding `{named}` (use gzip or deflate)"),
    )
}

/// `out`, a deflate stream's bytes, when nothing of the body is left
/// after the stream (`rest`).
fn whole_stream(out: Bytes, rest: &[u8]) -> Result<Bytes, IntakeError> {
    if rest.is_empty() {
        return Ok(out);
    }
    Err(IntakeError::bad_request(
        "invalid_compression",
        format!(
            "cannot decompress the body: {} bytes after the end of the deflate stream",
            rest.len()
        ),
    ))
}

/// Decompressed bytes are reserved in steps of this many.
const INFLATE_STEP: usize = 64 * 1024;

/// `wire_reserved`: what `permit` held before decompression began.
fn inflate(
    decoder: impl Read,
    limit: usize,
    permit: &mut BodyPermit,
    wire_reserved: usize,
) -> Result<Bytes, IntakeError> {
    let mut decoder = decoder.take(limit as u64 + 1);
    let mut out = Vec::new();
    loop {
        let reserved = permit.bytes() - wire_reserved;
        if out.len() + INFLATE_STEP > reserved && !permit.grow(out.len() + INFLATE_STEP - reserved)
        {
            return Err(budget_exhausted());
        }
        let start = out.len();
        out.resize(start + INFLATE_STEP, 0);
        let read = decoder.read(&mut out[start..]).map_err(|e| {
            IntakeError::bad_request(
                "invalid_compression",
                format!("cannot decompress the body: {e}"),
            )
        });
        match read {
            Ok(0) => {
                out.truncate(start);
                break;
            }
            Ok(n) => out.truncate(start + n),
            Err(e) => return Err(e),
        }
    }
    if out.len() > limit {
        return Err(IntakeError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("body inflates past max_body_bytes ({limit})"),
        ));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_agent_with_bytes_past_ascii_is_kept() {
        // `HeaderValue::to_str` takes visible ASCII only: an in-app
        // browser's UA naming its app in UTF-8 (or Latin-1) was dropped,
        // user_agent.original missing from every document, uncounted.
        let cases: [(&[u8], &str); 3] = [
            (
                b"Mozilla/5.0 (iPhone) Mobile/15E148",
                "Mozilla/5.0 (iPhone) Mobile/15E148",
            ),
            (
                "Mozilla/5.0 Shop/2.1 (Café)".as_bytes(),
                "Mozilla/5.0 Shop/2.1 (Café)",
            ),
            (b"Mozilla/5.0 Caf\xe9", "Mozilla/5.0 Caf\u{fffd}"),
        ];
        for (sent, kept) in cases {
            let mut headers = HeaderMap::new();
            headers.insert(
                http::header::USER_AGENT,
                http::HeaderValue::from_bytes(sent).unwrap(),
            );
            assert_eq!(user_agent(&headers).as_deref(), Some(kept));
        }
        assert_eq!(user_agent(&HeaderMap::new()), None);
    }
    use flate2::write::GzEncoder;
    use std::io::Write;

    fn gzip(data: &[u8]) -> Bytes {
        let mut encoder = GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        Bytes::from(encoder.finish().unwrap())
    }

    fn with_encoding(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_ENCODING, value.parse().unwrap());
        headers
    }

    fn intake(max_body_bytes: usize) -> Intake {
        let registry = crate::telemetry::Registry::new();
        let options = IntakeOptions {
            allowed_origins: vec!["*".into()],
            cors_max_age_secs: 600,
            trusted_proxies: Vec::new(),
            max_body_bytes,
            rate_limit: None,
        };
        let metrics = ComponentMetrics::new(&registry, "intake", "source", "rum_beacon");
        Intake::new(options, metrics, "POST, OPTIONS")
    }

    fn head(content_length: usize) -> IntakeHead {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(content_length));
        IntakeHead {
            headers,
            peer: "192.0.2.1".parse().unwrap(),
            budget: None,
            consumed: None,
        }
    }

    /// `ready` (where sources wait for room downstream) runs after the
    /// checks that need no body and before the body is touched; a request
    /// refused by those checks never gets to it.
    #[tokio::test]
    async fn the_body_is_read_only_after_ready_and_ready_only_for_a_request_that_passed() {
        use std::sync::atomic::{AtomicBool, Ordering};
        let polled = Arc::new(AtomicBool::new(false));
        let body = {
            let polled = polled.clone();
            futures_util::stream::poll_fn(move |_| {
                polled.store(true, Ordering::SeqCst);
                std::task::Poll::Ready(None::<Result<Bytes, std::io::Error>>)
            })
        };
        let body = futures_util::StreamExt::chain(
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{\"v\":1}"))]),
            body,
        );
        let seen = polled.clone();
        let ready = async move { seen.load(Ordering::SeqCst) };
        let (request, body_polled_before) = intake(100)
            .accept(head(7), body, ready)
            .await
            .map_err(|(e, _)| e.message)
            .unwrap();
        assert!(!body_polled_before, "the body was read before `ready`");
        assert!(polled.load(Ordering::SeqCst));
        assert_eq!(&request.body[..], b"{\"v\":1}");

        let reached = Arc::new(AtomicBool::new(false));
        let flag = reached.clone();
        let ready = async move { flag.store(true, Ordering::SeqCst) };
        let no_body = futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
        let Err((error, _)) = intake(100).accept(head(101), no_body, ready).await else {
            panic!("a body over max_body_bytes was accepted");
        };
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(!reached.load(Ordering::SeqCst), "a refused request waited");
    }

    /// A body of one chunk is that chunk, not a copy of it; one of many
    /// chunks (empty ones among them) is gathered whole and in order, and
    /// one that passes `max_body_bytes` only in its later chunks (no length
    /// declared) is refused as one that declared it.
    #[tokio::test]
    async fn a_body_of_one_chunk_is_kept_as_it_came_and_one_of_many_gathered() {
        let chunk = Bytes::from(b"{\"v\":1,\"events\":[]}".to_vec());
        let one = futures_util::stream::iter([Ok::<_, std::io::Error>(chunk.clone())]);
        let mut permit = BodyPermit::unlimited();
        let read = read_limited(one, 100, chunk.len(), &mut permit)
            .await
            .map_err(|e| e.message)
            .unwrap();
        assert_eq!(read, chunk);
        assert_eq!(read.as_ptr(), chunk.as_ptr(), "the chunk was copied");

        let parts: [&'static [u8]; 5] = [b"{\"v\"", b"", b":1,", b"\"events\"", b":[]}"];
        let many = futures_util::stream::iter(
            parts.map(|part| Ok::<_, std::io::Error>(Bytes::from_static(part))),
        );
        let mut permit = BodyPermit::unlimited();
        let read = read_limited(many, 100, 0, &mut permit)
            .await
            .map_err(|e| e.message)
            .unwrap();
        assert_eq!(read, chunk);

        let over = futures_util::stream::iter(
            [b"x".repeat(60), b"y".repeat(60)]
                .map(|part| Ok::<_, std::io::Error>(Bytes::from(part))),
        );
        let mut permit = BodyPermit::unlimited();
        let Err(error) = read_limited(over, 100, 0, &mut permit).await else {
            panic!("a body over max_body_bytes in its second chunk was kept");
        };
        assert_eq!(error.status, StatusCode::PAYLOAD_TOO_LARGE);

        let empty = futures_util::stream::empty::<Result<Bytes, std::io::Error>>();
        let mut permit = BodyPermit::unlimited();
        let read = read_limited(empty, 100, 0, &mut permit).await.ok().unwrap();
        assert!(read.is_empty());
    }

    /// A body that stops coming is answered 408 once `BODY_READ_TIMEOUT`
    /// has passed since it first had to be waited for; one that is there
    /// at once never waits.
    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_coming_is_refused_after_the_body_timeout() {
        let stalled = futures_util::StreamExt::chain(
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{\"v\""))]),
            futures_util::stream::pending(),
        );
        let started = tokio::time::Instant::now();
        let Err((error, _)) = intake(100).accept(head(7), stalled, async {}).await else {
            panic!("a body that never ended was accepted");
        };
        assert_eq!(error.status, StatusCode::REQUEST_TIMEOUT);
        assert_eq!(error.error_type, "body_timeout");
        let waited = started.elapsed();
        assert!(
            waited >= BODY_READ_TIMEOUT && waited < BODY_READ_TIMEOUT + Duration::from_millis(50),
            "{waited:?}"
        );

        let started = tokio::time::Instant::now();
        let whole =
            futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{\"v\":1}"))]);
        let (request, ()) = intake(100)
            .accept(head(7), whole, async {})
            .await
            .map_err(|(e, _)| e.message)
            .unwrap();
        assert_eq!(&request.body[..], b"{\"v\":1}");
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    /// Refusals are what a flood of bad requests is made of: counting one
    /// must not take the registry's lock, which every scrape holds while it
    /// renders, once its error type has been counted.
    #[test]
    fn a_refusal_takes_the_registry_lock_only_the_first_time_its_type_is_counted() {
        let intake = intake(100);
        let registry = intake.metrics().registry().clone();
        let too_large = IntakeError::new(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "x");
        let bad_json = IntakeError::bad_request("invalid_json", "x");
        intake.error_response(&too_large, None);
        intake.error_response(&bad_json, None);
        let lookups = registry.lookups();
        for _ in 0..10 {
            intake.error_response(&too_large, None);
            intake.error_response(&bad_json, None);
        }
        assert_eq!(registry.lookups(), lookups);
        for error_type in ["body_too_large", "invalid_json"] {
            let counted = registry.counter_sum(
                "component_errors_total",
                &[("error_type", error_type), ("stage", "receiving")],
            );
            assert_eq!(counted, 11, "{error_type}");
        }
    }

    /// A page's script can read a 429 (and back off on its `Retry-After`)
    /// only if it carries `Access-Control-Allow-Origin`, as every other
    /// refusal of an allowed origin does.
    #[tokio::test]
    async fn a_rate_limited_answer_to_an_allowed_origin_carries_its_cors_headers() {
        let registry = crate::telemetry::Registry::new();
        let options = IntakeOptions {
            allowed_origins: vec!["https://shop.example".into()],
            cors_max_age_secs: 600,
            trusted_proxies: Vec::new(),
            max_body_bytes: 100,
            rate_limit: Some(RateLimitOptions {
                requests_per_second: 1,
                burst: Some(1),
                max_clients: 10,
            }),
        };
        let metrics = ComponentMetrics::new(&registry, "intake", "source", "faro");
        let intake = Intake::new(options, metrics, "POST, OPTIONS").expose_headers("retry-after");
        let request = || {
            let mut head = head(2);
            head.headers.insert(
                header::ORIGIN,
                HeaderValue::from_static("https://shop.example"),
            );
            let body =
                futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{}"))]);
            (head, body)
        };
        let (head, body) = request();
        assert!(intake.accept(head, body, async {}).await.is_ok());
        let (head, body) = request();
        let Err((error, allow_origin)) = intake.accept(head, body, async {}).await else {
            panic!("the second request within the burst of 1 was accepted");
        };
        assert_eq!(error.status, StatusCode::TOO_MANY_REQUESTS);
        let response = intake.error_response(&error, allow_origin);
        let h = response.headers();
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://shop.example"
        );
        assert_eq!(h[header::ACCESS_CONTROL_EXPOSE_HEADERS], "retry-after");
        assert_eq!(h[header::RETRY_AFTER], "1");
    }

    /// An answer with no header yet gets `Vary: Origin` as one with
    /// headers does, and the allowed origin's headers after it.
    #[test]
    fn cors_headers_are_the_same_on_an_answer_with_headers_or_none() {
        let intake = intake(100).expose_headers("retry-after");
        for origin in [None, Some(HeaderValue::from_static("https://shop.example"))] {
            let bare = intake.with_cors(empty_response(StatusCode::NO_CONTENT), origin.clone());
            let mut with_one = empty_response(StatusCode::NO_CONTENT);
            with_one
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            let mut with_one = intake.with_cors(with_one, origin.clone());
            with_one.headers_mut().remove(header::RETRY_AFTER);
            let names = |r: &HttpResponse| {
                let mut all: Vec<_> = r
                    .headers()
                    .iter()
                    .map(|(n, v)| format!("{n}: {v:?}"))
                    .collect();
                all.sort();
                all
            };
            assert_eq!(names(&bare), names(&with_one));
            assert_eq!(bare.headers()[header::VARY], "Origin");
            assert_eq!(bare.headers().len(), if origin.is_some() { 3 } else { 1 });
        }
    }

    #[test]
    fn gzip_round_trips_under_the_limit() {
        let body = decode_content(&with_encoding("gzip"), gzip(b"{\"v\":1}"), 100).unwrap();
        assert_eq!(&body[..], b"{\"v\":1}");
    }

    #[test]
    fn gzip_bomb_stops_at_the_limit() {
        let bomb = gzip(&vec![b'a'; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024);
        let err = decode_content(&with_encoding("gzip"), bomb, 1024 * 1024).unwrap_err();
        assert_eq!(err.status, StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[test]
    fn a_deflate_body_with_bytes_after_its_stream_is_refused() {
        // gzip reads every member and refuses what is not one; deflate
        // stopped at its stream's end, so a second stream (a second
        // beacon) or anything after it was dropped silently with a 204.
        use flate2::write::{DeflateEncoder, ZlibEncoder};
        let json = br#"{"v":1,"events":[{"type":"action"}]}"#;
        let zlib = {
            let mut e = ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(json).unwrap();
            e.finish().unwrap()
        };
        let raw = {
            let mut e = DeflateEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(json).unwrap();
            e.finish().unwrap()
        };
        for stream in [&zlib, &raw] {
            let whole =
                decode_content(&with_encoding("deflate"), Bytes::from(stream.clone()), 1000);
            assert_eq!(&whole.unwrap()[..], json);
            for after in [&b"xyz"[..], &zlib, &raw, &[0]] {
                let body = [&stream[..], after].concat();
                let err =
                    decode_content(&with_encoding("deflate"), Bytes::from(body), 1000).unwrap_err();
                assert_eq!(err.status, StatusCode::BAD_REQUEST);
                assert_eq!(err.error_type, "invalid_compression", "{}", err.message);
            }
        }
    }

    #[test]
    fn an_encoding_named_twice_or_not_as_text_is_refused_not_taken_for_identity() {
        // Two header lines are one list (`identity, gzip`): only the first
        // was read, so a gzip body went to the decoder as text (400 "not
        // UTF-8"), a body gzipped twice was inflated once, and a value that
        // is not text counted as no encoding at all.
        let body = gzip(b"{\"v\":1}");
        for values in [
            &[&b"identity"[..], b"gzip"][..],
            &[b"gzip", b"gzip"],
            &[b"gzip\xff"],
        ] {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(
                    header::CONTENT_ENCODING,
                    HeaderValue::from_bytes(value).unwrap(),
                );
            }
            let err = decode_content(&headers, body.clone(), 100).unwrap_err();
            assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{values:?}");
            assert_eq!(err.error_type, "unsupported_content_encoding");
        }
    }

    #[test]
    fn corrupt_and_unknown_encodings_are_refused() {
        let err = decode_content(&with_encoding("gzip"), Bytes::from_static(b"not gzip"), 100)
            .unwrap_err();
        assert_eq!(err.error_type, "invalid_compression");
        let err = decode_content(&with_encoding("br"), Bytes::from_static(b"x"), 100).unwrap_err();
        assert_eq!(err.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    }

    #[test]
    fn media_type_ignores_parameters_and_case() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "Text/Plain;charset=UTF-8".parse().unwrap(),
        );
        assert_eq!(media_type(&headers).as_deref(), Some("text/plain"));
    }

    /// `media_type` reads the value byte by byte; it gives what the
    /// `str::split` and `str::trim` it had gave, for every kind of value.
    #[test]
    fn media_type_gives_what_split_and_trim_gave() {
        fn reference(headers: &HeaderMap) -> Option<String> {
            let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
            let essence = value.split(';').next()?.trim();
            (!essence.is_empty()).then(|| essence.to_ascii_lowercase())
        }
        let values: [&[u8]; 16] = [
            b"application/json",
            b"text/plain;charset=UTF-8",
            b" \tText/Plain \t; charset=x",
            b"TEXT/PLAIN",
            b";",
            b" ; text/plain",
            b"\t",
            b"",
            b"a b ;c",
            b"x;y;z",
            b"text/plain\x7f",
            b"text/plain;\xc3\xa9",
            b"\xc3\xa9",
            b"  text/plain  ",
            b"text/plain\t",
            b"image/png ;",
        ];
        for value in values {
            let mut headers = HeaderMap::new();
            if let Ok(value) = HeaderValue::from_bytes(value) {
                headers.insert(header::CONTENT_TYPE, value);
            }
            assert_eq!(
                media_type(&headers).map(|t| t.into_owned()),
                reference(&headers),
                "{value:?}"
            );
        }
        assert_eq!(media_type(&HeaderMap::new()), None);
    }
}
