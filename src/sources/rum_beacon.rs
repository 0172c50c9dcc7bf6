//! Source `rum_beacon`: `POST {path}` takes beacons (format v1, see
//! `beacon_decoder`), `GET {path}` serves the RUM client, `OPTIONS {path}`
//! answers CORS preflights. A request is answered 204 once its events are in
//! the downstream buffers, 503 + `Retry-After` when they stay full past
//! `send_timeout_ms`; it never hangs.

use http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use http_body_util::Full;
use serde::Deserialize;

use super::beacon_decoder::{self, BeaconLimits, RequestFacts, CLIENT_HINT_HEADERS};
use super::decode_error::DecodeError;
use super::http_source::{
    self, DecodePass, Decoded, Endpoint, HttpSource, MediaTypes, RequestHead,
};
use super::{check_json_limits, check_path, SourceContext};
use crate::client_bundle;
use crate::config::CheckConfig;
use crate::http::intake::{Intake, IntakeRequest};
use crate::http::server::Route;
use crate::http::{empty_response, HttpResponse};
use crate::telemetry::Counter;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RumBeaconConfig {
    /// Path for beacons (POST) and the client script (GET).
    #[serde(default = "default_path")]
    pub path: String,
    /// Most events one beacon may carry (413 above).
    #[serde(default = "default_max_events")]
    pub max_events_per_beacon: usize,
    /// Longest string (value or key) in a beacon, in bytes (400 above).
    #[serde(default = "default_max_string_bytes")]
    pub max_string_bytes: usize,
    /// Deepest JSON nesting accepted (400 above).
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
    /// Bytes of the context a beacon's events share (page URL, title,
    /// referrer, the User-Agent header, `ua_hints`, ...): every document of
    /// the beacon carries it, so this bounds what one beacon can make (413
    /// above).
    #[serde(
        default = "default_max_context_bytes",
        deserialize_with = "crate::config::byte_size::deserialize"
    )]
    pub max_context_bytes: usize,
    /// Event times are clamped to at most this far before the receive time.
    #[serde(default = "default_max_event_age_secs")]
    pub max_event_age_secs: u64,
    /// Serve the RUM client script at `GET {path}`.
    #[serde(default = "crate::config::default_true")]
    pub serve_client: bool,
    /// `Cache-Control: max-age` of the client script, in seconds.
    #[serde(default = "default_client_cache")]
    pub client_cache_max_age_secs: u64,
}

/// The limits a `rum_beacon` source has when its config sets none (for
/// benches and tools that decode as the source does).
impl Default for BeaconLimits {
    fn default() -> Self {
        Self {
            max_events: default_max_events(),
            max_string_bytes: default_max_string_bytes(),
            max_depth: default_max_json_depth(),
            max_event_age_ms: super::age_secs_to_ms(default_max_event_age_secs()),
            max_context_bytes: default_max_context_bytes(),
            client_ip: crate::privacy::ClientIpMode::default(),
        }
    }
}

fn default_path() -> String {
    "/rum".to_owned()
}
fn default_max_events() -> usize {
    500
}
fn default_max_string_bytes() -> usize {
    16 * 1024
}
fn default_max_json_depth() -> usize {
    16
}
fn default_max_context_bytes() -> usize {
    64 * 1024
}
fn default_max_event_age_secs() -> u64 {
    86_400
}
fn default_client_cache() -> u64 {
    3600
}

impl CheckConfig for RumBeaconConfig {
    fn check(&self) -> Vec<(&'static str, String)> {
        let mut problems = Vec::new();
        problems.extend(check_path("path", &self.path));
        problems.extend(check_json_limits(
            &[
                ("max_events_per_beacon", self.max_events_per_beacon),
                ("max_string_bytes", self.max_string_bytes),
                ("max_json_depth", self.max_json_depth),
                ("max_context_bytes", self.max_context_bytes),
            ],
            self.max_json_depth,
        ));
        problems
    }
}

impl RumBeaconConfig {
    pub fn build(&self, cx: SourceContext) -> anyhow::Result<Vec<Route>> {
        let metrics = &cx.metrics;
        let source = BeaconSource {
            limits: BeaconLimits {
                max_events: self.max_events_per_beacon,
                max_string_bytes: self.max_string_bytes,
                max_depth: self.max_json_depth,
                max_event_age_ms: super::age_secs_to_ms(self.max_event_age_secs),
                max_context_bytes: self.max_context_bytes,
                client_ip: cx.http.client_ip,
            },
            serve_client: self.serve_client,
            cache_control: HeaderValue::from_str(&format!(
                "public, max-age={}",
                self.client_cache_max_age_secs
            ))?,
            unknown_types: metrics.counter(
                "rum_beacon_unknown_event_types_total",
                "Beacon events whose type is unknown, kept as rum.type = custom.",
                &[],
            ),
            ignored_keys: metrics.counter(
                "rum_beacon_ignored_keys_total",
                "Top-level beacon keys the format does not know (ignored).",
                &[],
            ),
            clamped_times: metrics.counter(
                "rum_beacon_clamped_event_times_total",
                "Beacon events whose time fell outside [received - max_event_age_secs, received] and was clamped to it.",
                &[],
            ),
        };
        let intake = Intake::new(
            cx.http.intake_options(),
            cx.metrics.clone(),
            "POST, GET, OPTIONS",
        );
        let endpoints = vec![Endpoint::exact(&self.path, ())];
        Ok(http_source::routes(cx, intake, source, endpoints))
    }
}

struct BeaconSource {
    limits: BeaconLimits,
    serve_client: bool,
    cache_control: HeaderValue,
    unknown_types: Counter,
    ignored_keys: Counter,
    /// Events whose time was clamped to the accepted window.
    clamped_times: Counter,
}

impl HttpSource for BeaconSource {
    type Endpoint = ();
    type Answer = ();

    fn allow(&self, _: ()) -> &'static str {
        if self.serve_client {
            "POST, GET, HEAD, OPTIONS"
        } else {
            "POST, OPTIONS"
        }
    }

    // sendBeacon with a string sends text/plain (no preflight); fetch sends JSON.
    fn media_types(&self, _: ()) -> MediaTypes {
        MediaTypes {
            accepted: &["application/json", "text/plain"],
            names: "application/json or text/plain",
        }
    }

    fn serve(&self, _: (), request: &RequestHead, _: &Intake) -> Option<HttpResponse> {
        let get = matches!(*request.method(), Method::GET | Method::HEAD);
        (get && self.serve_client).then(|| serve_client(request.headers(), &self.cache_control))
    }

    fn decode(
        &self,
        _: (),
        request: &IntakeRequest,
        received_at_ms: i64,
        pass: DecodePass,
    ) -> Result<Decoded<()>, DecodeError> {
        let user_agent = crate::http::intake::user_agent(&request.headers);
        let facts = RequestFacts {
            received_at_ms,
            client_ip: request.client_ip,
            user_agent: user_agent.as_deref(),
            client_hints: client_hints(&request.headers),
        };
        let decoded = beacon_decoder::decode(&request.body, &facts, &self.limits)?;
        if pass.counts() {
            self.unknown_types.add(decoded.unknown_types as u64);
            self.ignored_keys.add(decoded.ignored_keys as u64);
            self.clamped_times.add(decoded.clamped_times as u64);
        }
        Ok(Decoded {
            events: decoded.events,
            page_url: decoded.page_url,
            dropped: 0,
            answer: (),
        })
    }
}

/// The `Sec-CH-UA*` headers, in `CLIENT_HINT_HEADERS`' order, each its
/// first value (as `HeaderMap::get` gives it) when that is text. One walk
/// over the headers: a lookup per hint hashed each name, six a request,
/// and most requests carry none of them.
fn client_hints(headers: &HeaderMap) -> Vec<(&'static str, &str)> {
    let hints = &*CLIENT_HINT_HEADERS;
    let mut first = hints.each_ref().map(|_| None::<&HeaderValue>);
    for (name, value) in headers {
        if !name.as_str().starts_with("sec-ch-ua") {
            continue;
        }
        if let Some(i) = hints.iter().position(|(hint, _)| hint == name) {
            first[i].get_or_insert(value);
        }
    }
    first
        .iter()
        .zip(hints.iter())
        .filter_map(|(value, (_, key))| Some((*key, (*value)?.to_str().ok()?)))
        .collect()
}

/// The client script, with validators and gzip when the browser takes it.
fn serve_client(headers: &HeaderMap, cache_control: &HeaderValue) -> HttpResponse {
    let bundle = client_bundle::bundle();
    let gzip = accepts_gzip(headers);
    // The validator of the representation this request gets.
    let etag_text = if gzip {
        &bundle.gzip_etag
    } else {
        &bundle.etag
    };
    let etag = HeaderValue::from_str(etag_text).unwrap_or(HeaderValue::from_static("\"rum\""));
    let not_modified = if_none_match(headers, etag_text);
    let mut response = if not_modified {
        empty_response(StatusCode::NOT_MODIFIED)
    } else if gzip {
        let mut r = http::Response::new(Full::new(bundle.gzip.clone()));
        r.headers_mut()
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        r
    } else {
        http::Response::new(Full::new(bundle.plain.clone()))
    };
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/javascript; charset=utf-8"),
    );
    h.insert(header::ETAG, etag);
    h.insert(header::CACHE_CONTROL, cache_control.clone());
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    // The script is public: a page may load it with `crossorigin` (which
    // `integrity=` requires), a CORS request that fails without this.
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    // Sites with Cross-Origin-Embedder-Policy may still load the script.
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("cross-origin"),
    );
    response
}

/// Whether an `If-None-Match` names `etag`. The comparison is weak (RFC 9110
/// 13.1.2): a CDN or proxy that compresses the script itself hands the
/// browser `W/"..."`, which comes back here.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.strip_prefix("W/").unwrap_or(tag) == etag)
}

/// Whether `Accept-Encoding` takes gzip: named (or `*`) with a weight above
/// 0, as in `gzip`, `gzip;q=0.5`; `gzip;q=0` refuses it.
fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    let codings = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','));
    for coding in codings {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        let weight = parts
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("q"))
            .map_or(1.0, |(_, q)| q.trim().parse::<f32>().unwrap_or(0.0));
        if name.eq_ignore_ascii_case("gzip") {
            gzip = Some(weight > 0.0);
        } else if name == "*" {
            any = Some(weight > 0.0);
        }
    }
    gzip.or(any).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_answer(request: &[(&str, &str)]) -> HttpResponse {
        let mut headers = HeaderMap::new();
        for (name, value) in request {
            headers.append(
                header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        serve_client(&headers, &HeaderValue::from_static("public, max-age=60"))
    }

    #[test]
    fn a_weak_if_none_match_of_the_scripts_etag_is_not_modified() {
        // If-None-Match compares weakly (RFC 9110 13.1.2): a CDN or proxy
        // that compresses the script itself hands the browser W/"..." and
        // the browser sends that back.
        let etag = &client_bundle::bundle().etag;
        for tag in [
            etag.clone(),
            format!("W/{etag}"),
            format!("\"x\", W/{etag}"),
        ] {
            let answer = client_answer(&[("if-none-match", &tag)]);
            assert_eq!(answer.status(), StatusCode::NOT_MODIFIED, "{tag}");
            assert_eq!(answer.headers()[header::ETAG], etag.as_str());
        }
        let other = client_answer(&[("if-none-match", "W/\"other\"")]);
        assert_eq!(other.status(), StatusCode::OK);
    }

    #[test]
    fn the_gzip_and_the_plain_script_have_etags_of_their_own() {
        // Two representations of one resource (Vary: Accept-Encoding) need
        // two strong validators (RFC 9110 8.8.3): a cache that holds the
        // gzip copy and asks with its ETag for a client that takes no gzip
        // would be told 304 and hand that client the gzip bytes.
        let gzip = client_answer(&[("accept-encoding", "gzip")]);
        let plain = client_answer(&[]);
        let gzip_etag = gzip.headers()[header::ETAG].to_str().unwrap().to_owned();
        let plain_etag = plain.headers()[header::ETAG].to_str().unwrap().to_owned();
        assert_ne!(gzip_etag, plain_etag);
        let asked = |accept: &str, tag: &str| {
            client_answer(&[("accept-encoding", accept), ("if-none-match", tag)]).status()
        };
        assert_eq!(asked("identity", &gzip_etag), StatusCode::OK);
        assert_eq!(asked("gzip", &plain_etag), StatusCode::OK);
        assert_eq!(asked("gzip", &gzip_etag), StatusCode::NOT_MODIFIED);
        assert_eq!(asked("identity", &plain_etag), StatusCode::NOT_MODIFIED);
    }

    #[test]
    fn gzip_refused_with_q_0_is_not_sent() {
        let encoding = |accept: &str| {
            client_answer(&[("accept-encoding", accept)])
                .headers()
                .get(header::CONTENT_ENCODING)
                .cloned()
        };
        for refused in ["gzip;q=0", "gzip; q=0.000, identity", "br, GZIP;Q=0"] {
            assert_eq!(encoding(refused), None, "{refused}");
        }
        for taken in ["gzip", "deflate, gzip;q=0.5", "GZip", "br;q=1, gzip;q=1.0"] {
            assert_eq!(encoding(taken).unwrap(), "gzip", "{taken}");
        }
        assert_eq!(encoding("gzipx, identity"), None);
    }

    #[test]
    fn the_script_may_be_loaded_with_crossorigin_and_integrity() {
        // <script crossorigin> (needed for integrity=, and for errors with
        // details) is a CORS request: without this header the browser does
        // not run the script at all.
        for origin in [None, Some("https://shop.example.com")] {
            let request: Vec<_> = origin.map(|o| ("origin", o)).into_iter().collect();
            let answer = client_answer(&request);
            assert_eq!(answer.headers()[header::ACCESS_CONTROL_ALLOW_ORIGIN], "*");
        }
    }

    #[test]
    fn client_hints_are_each_first_text_value_in_the_tables_order() {
        let mut headers = HeaderMap::new();
        headers.insert(header::USER_AGENT, HeaderValue::from_static("Mozilla/5.0"));
        headers.append("sec-ch-ua-platform", HeaderValue::from_static("\"Linux\""));
        headers.append("sec-ch-ua-platform", HeaderValue::from_static("\"Later\""));
        headers.append(
            "sec-ch-ua-extra",
            HeaderValue::from_static("not a hint of ours"),
        );
        headers.append(
            "sec-ch-ua",
            HeaderValue::from_static("\"Chromium\";v=\"131\""),
        );
        // Not text: skipped, and not replaced by the value after it.
        headers.append("sec-ch-ua-model", HeaderValue::from_bytes(b"\xff").unwrap());
        headers.append("sec-ch-ua-model", HeaderValue::from_static("\"Pixel\""));
        headers.append("x-sec-ch-ua-mobile", HeaderValue::from_static("?1"));
        assert_eq!(
            client_hints(&headers),
            vec![
                ("sec_ch_ua", "\"Chromium\";v=\"131\""),
                ("sec_ch_ua_platform", "\"Linux\""),
            ]
        );
        assert_eq!(client_hints(&HeaderMap::new()), vec![]);
    }
}
