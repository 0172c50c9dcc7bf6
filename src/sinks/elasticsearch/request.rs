//! Talking HTTP to Elasticsearch with reqwest: endpoints in round robin,
//! auth, rustls TLS, timeouts. The sink builds bulk bodies itself; this
//! module only sends them — gzip-compressed when asked — and hands back
//! status, `Retry-After` and body, the body read only up to a limit.
//!
//! Nothing here logs, and no error text carries credentials: endpoint URLs
//! are stored without user info, and the `Authorization` header is marked
//! sensitive.

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use flate2::write::GzEncoder;
use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
    USER_AGENT,
};
use reqwest::Method;
use url::Url;

use super::retry::Failure;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An HTTP answer to a bulk request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<Duration>,
    /// The body, or its first `limit` bytes when `truncated`.
    pub body: Bytes,
    /// The body was longer than the sink reads ([`bulk_answer_limit`]); only
    /// its beginning is in `body` (nothing when `Content-Length` said so).
    pub truncated: bool,
    /// Bytes put on the wire (after compression).
    pub wire_bytes: usize,
}

/// A bulk answer has one result per document sent: about 200 bytes, a few
/// hundred more with an error's type, reason and causes (a mapping error
/// quotes a field's value, which the sources bound). 4 KiB each is far above
/// that, yet keeps a hostile endpoint or proxy from making the sink allocate
/// without bound.
pub const ANSWER_BYTES_PER_DOCUMENT: usize = 4 * 1024;
/// Added to every limit; alone, the limit of the answers to `GET /` and to
/// template and index PUTs (a few hundred bytes, a few KB for an error).
pub const ANSWER_BYTES_MARGIN: usize = 1024 * 1024;

/// The most of a bulk answer the sink reads, for batches of `max_events`
/// (5 MiB for the default 1000).
pub fn bulk_answer_limit(max_events: usize) -> usize {
    ANSWER_BYTES_MARGIN.saturating_add(max_events.saturating_mul(ANSWER_BYTES_PER_DOCUMENT))
}

/// What the delivery loop needs from Elasticsearch; a trait so the loop can
/// be tested against a scripted server with paused time.
pub trait Backend: Send + Sync + 'static {
    /// Sends one NDJSON bulk body.
    fn bulk(&self, body: Bytes) -> BoxFuture<'_, Result<Reply, Failure>>;
    /// Runs before each bulk request; the Elasticsearch client waits here
    /// for the first attempt at installing templates (never for its success).
    fn prepare(&self) -> BoxFuture<'_, Result<(), Failure>> {
        Box::pin(async { Ok(()) })
    }
}

/// How to reach the cluster, resolved from the config.
pub struct ClientSettings {
    /// Without user info.
    pub endpoints: Vec<Url>,
    pub credentials: Option<Credentials>,
    pub ca_pem: Option<Vec<u8>>,
    pub verify_certificates: bool,
    pub timeout: Duration,
    pub gzip: bool,
    /// The most of a bulk answer to read ([`bulk_answer_limit`]).
    pub bulk_answer_limit: usize,
}

/// The HTTP client plus what the sink adds. Deliberately not `Debug`: it
/// holds the `Authorization` header.
pub struct EsClient {
    client: reqwest::Client,
    /// Each ending in `/`, so that `join` keeps a path prefix (Quickwit's
    /// `/api/v1/_elastic/`).
    endpoints: Vec<Url>,
    /// Round robin over `endpoints`; no sniffing: they may be proxies or
    /// ES-compatible engines.
    next: AtomicUsize,
    /// Sent with every request; marked sensitive.
    authorization: Option<HeaderValue>,
    timeout: Duration,
    gzip: bool,
    bulk_answer_limit: usize,
}

impl EsClient {
    pub fn new(settings: ClientSettings) -> anyhow::Result<Self> {
        if settings.endpoints.is_empty() {
            anyhow::bail!("no endpoint");
        }
        let endpoints = settings
            .endpoints
            .into_iter()
            .map(|mut url| {
                if !url.path().ends_with('/') {
                    url.set_path(&format!("{}/", url.path()));
                }
                url
            })
            .collect();
        let mut builder = reqwest::Client::builder().timeout(settings.timeout);
        if !settings.verify_certificates {
            builder = builder.danger_accept_invalid_certs(true);
        } else if let Some(pem) = &settings.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| anyhow::anyhow!("tls.ca_file: {e}"))?;
            if certs.is_empty() {
                anyhow::bail!("tls.ca_file: no PEM certificate in it");
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            client,
            endpoints,
            next: AtomicUsize::new(0),
            authorization: settings.credentials.as_ref().map(authorization),
            timeout: settings.timeout,
            gzip: settings.gzip,
            bulk_answer_limit: settings.bulk_answer_limit,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        mut headers: HeaderMap,
        body: Option<Bytes>,
        limit: usize,
    ) -> Result<Reply, Failure> {
        let wire_bytes = body.as_ref().map_or(0, Bytes::len);
        let endpoint =
            &self.endpoints[self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len()];
        let url = endpoint
            .join(path.trim_start_matches('/'))
            .map_err(|e| Failure::new(None, "connection", format!("bad path {path}: {e}")))?;
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("rum-pipeline/", env!("CARGO_PKG_VERSION"))),
        );
        if let Some(authorization) = &self.authorization {
            headers.insert(AUTHORIZATION, authorization.clone());
        }
        let mut request = self.client.request(method, url).headers(headers);
        if let Some(body) = body {
            request = request.body(body);
        }
        let mut response = request
            .send()
            .await
            .map_err(|e| transport_failure(&e, self.timeout))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let (body, truncated) = read_limited(&mut response, limit)
            .await
            .map_err(|e| transport_failure(&e, self.timeout))?;
        Ok(Reply {
            status,
            retry_after,
            body,
            truncated,
            wire_bytes,
        })
    }

    /// `GET /`: the cluster's name and version, for the startup log line.
    pub async fn root(&self) -> Result<Reply, Failure> {
        self.send(Method::GET, "", HeaderMap::new(), None, ANSWER_BYTES_MARGIN)
            .await
    }

    /// `GET path` (an installed index template, to tell whose it is).
    pub async fn get(&self, path: &str) -> Result<Reply, Failure> {
        self.send(
            Method::GET,
            path,
            HeaderMap::new(),
            None,
            ANSWER_BYTES_MARGIN,
        )
        .await
    }

    /// `PUT path` with a JSON body (templates, ILM policies, indices).
    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<Reply, Failure> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = Bytes::from(body.to_string());
        self.send(Method::PUT, path, headers, Some(body), ANSWER_BYTES_MARGIN)
            .await
    }
}

impl EsClient {
    /// `POST path` with an NDJSON bulk body (`_bulk`, or `_bulk?...`).
    pub async fn bulk_to(&self, path: &str, body: Bytes) -> Result<Reply, Failure> {
        {
            let mut headers = HeaderMap::new();
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
            let body = if self.gzip {
                headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                Bytes::from(gzip(&body))
            } else {
                body
            };
            self.send(
                Method::POST,
                path,
                headers,
                Some(body),
                self.bulk_answer_limit,
            )
            .await
        }
    }
}

impl Backend for EsClient {
    fn bulk(&self, body: Bytes) -> BoxFuture<'_, Result<Reply, Failure>> {
        Box::pin(self.bulk_to("_bulk", body))
    }
}

/// Reads a body chunk by chunk (after gzip decoding, so a small compressed
/// answer cannot inflate past it either) and stops at `limit` bytes; when
/// `Content-Length` already says more, reads nothing. Returns what was read
/// and whether the body was cut.
async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<(Bytes, bool), reqwest::Error> {
    let announced = response.content_length().unwrap_or(0);
    if announced > limit as u64 {
        return Ok((Bytes::new(), true));
    }
    // At most `limit`: an announced length is trusted only that far.
    let mut body = Vec::with_capacity(announced as usize);
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((Bytes::from(body), true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((Bytes::from(body), false))
}

/// What the sink authenticates with (the `auth` key, or an endpoint's user
/// info). Deliberately not `Debug`: it holds the secrets.
#[derive(Clone)]
pub enum Credentials {
    /// `user`, `password`: basic auth.
    Basic(String, String),
    /// An API key as its `id` and `key`, encoded here.
    ApiKey(String, String),
    /// An API key already encoded (base64 of `id:key`, as Kibana shows it).
    EncodedApiKey(String),
}

/// The `Authorization` header for these credentials, as Elasticsearch reads it.
fn authorization(credentials: &Credentials) -> HeaderValue {
    let base64 = |text: String| base64::engine::general_purpose::STANDARD.encode(text);
    let text = match credentials {
        Credentials::Basic(user, password) => {
            format!("Basic {}", base64(format!("{user}:{password}")))
        }
        Credentials::ApiKey(id, key) => format!("ApiKey {}", base64(format!("{id}:{key}"))),
        Credentials::EncodedApiKey(key) => format!("ApiKey {key}"),
    };
    // Config values cannot hold control characters that a header refuses; an
    // unusable one is sent empty (and answered 401) rather than panicking.
    let mut value = HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static(""));
    value.set_sensitive(true);
    value
}

/// Fastest gzip level: bulk bodies are repetitive JSON and compress well even
/// so, and the sink must keep up on one core.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(
        Vec::with_capacity(body.len() / 4),
        flate2::Compression::fast(),
    );
    // Writing into a Vec cannot fail.
    let _ = encoder.write_all(body);
    encoder.finish().unwrap_or_default()
}

/// A transport error as one line: its own text and its causes (which name
/// the real problem, e.g. "Connection refused").
fn transport_failure(error: &reqwest::Error, timeout: Duration) -> Failure {
    if error.is_timeout() {
        return Failure::new(
            None,
            "timeout",
            format!("no answer within {} ms", timeout.as_millis()),
        );
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    Failure::new(None, "connection", text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// An HTTPS endpoint answering every request with a root document, its
    /// certificate signed by a CA of its own; returns the URL and the CA's PEM.
    async fn https_endpoint(dir: &std::path::Path) -> (Url, String) {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, KeyUsagePurpose};
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let ca_key = KeyPair::generate().unwrap();
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let leaf_key = KeyPair::generate().unwrap();
        let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
        let options = crate::http::tls::TlsOptions {
            crt_file: dir.join("es.crt"),
            key_file: dir.join("es.key"),
        };
        std::fs::write(&options.crt_file, leaf_cert.pem()).unwrap();
        std::fs::write(&options.key_file, leaf_key.serialize_pem()).unwrap();
        let acceptor =
            crate::http::tls::acceptor(&options, &crate::telemetry::Registry::new()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = [0u8; 4096];
                    let _ = tls.read(&mut head).await;
                    let body = r#"{"version":{"number":"8.15.0"}}"#;
                    let answer = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        let url = format!("https://127.0.0.1:{port}").parse().unwrap();
        (url, ca_cert.pem())
    }

    #[tokio::test]
    async fn tls_trusts_the_configured_ca_or_anything_when_verification_is_off() {
        let dir = tempfile::tempdir().unwrap();
        let (url, ca_pem) = https_endpoint(dir.path()).await;
        let client = |ca_pem: Option<&str>, verify_certificates: bool| {
            EsClient::new(ClientSettings {
                endpoints: vec![url.clone()],
                credentials: None,
                ca_pem: ca_pem.map(|pem| pem.as_bytes().to_vec()),
                verify_certificates,
                timeout: Duration::from_secs(10),
                gzip: false,
                bulk_answer_limit: ANSWER_BYTES_MARGIN,
            })
        };
        let trusting = client(Some(&ca_pem), true).unwrap();
        assert_eq!(trusting.root().await.unwrap().status, 200);
        // The public roots do not know this CA.
        let failure = client(None, true).unwrap().root().await.unwrap_err();
        assert_eq!(failure.error_type, "connection", "{failure}");
        let insecure = client(None, false).unwrap();
        assert_eq!(insecure.root().await.unwrap().status, 200);
        assert!(client(Some("not a certificate"), true).is_err());
    }

    #[test]
    fn authorization_headers_are_what_elasticsearch_reads() {
        let header = |credentials| {
            let value = authorization(&credentials);
            assert!(value.is_sensitive());
            value.to_str().unwrap().to_owned()
        };
        let basic = Credentials::Basic("elastic".into(), "changeme".into());
        // base64("elastic:changeme")
        assert_eq!(header(basic), "Basic ZWxhc3RpYzpjaGFuZ2VtZQ==");
        let api_key = Credentials::ApiKey("id".into(), "secret".into());
        // base64("id:secret")
        assert_eq!(header(api_key), "ApiKey aWQ6c2VjcmV0");
        let encoded = Credentials::EncodedApiKey("aWQ6c2VjcmV0".into());
        assert_eq!(header(encoded), "ApiKey aWQ6c2VjcmV0");
        // A value a header refuses is sent empty, not a panic.
        assert_eq!(header(Credentials::EncodedApiKey("a\nb".into())), "");
    }

    #[test]
    fn gzip_round_trips() {
        let body = b"{\"create\":{}}\n{\"a\":1}\n".repeat(100);
        let packed = gzip(&body);
        assert!(packed.len() < body.len() / 5);
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&packed[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, body);
    }
}
