//! Talking HTTP to Elasticsearch through the official client's transport
//! (connection pool with round robin, auth, rustls TLS, timeouts). The sink
//! builds bulk bodies itself; this module only sends them — gzip-compressed
//! when asked — and hands back status, `Retry-After` and body.
//!
//! Nothing here logs, and no error text carries credentials: endpoint URLs
//! are stored without user info, and the `Authorization` header is marked
//! sensitive by the client.

use std::future::Future;
use std::io::Write as _;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{
    HeaderMap, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE, RETRY_AFTER,
};
use elasticsearch::http::transport::{
    MultiNodeConnectionPool, SingleNodeConnectionPool, Transport, TransportBuilder,
};
use elasticsearch::http::{Method, Url};
use flate2::write::GzEncoder;

use super::retry::Failure;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An HTTP answer to a bulk request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: Bytes,
    /// Bytes put on the wire (after compression).
    pub wire_bytes: usize,
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
}

/// The official client's transport plus what the sink adds. Deliberately
/// not `Debug`: the transport's `Debug` would print credentials.
pub struct EsClient {
    transport: Transport,
    timeout: Duration,
    gzip: bool,
}

impl EsClient {
    pub fn new(settings: ClientSettings) -> anyhow::Result<Self> {
        let mut urls = settings.endpoints.into_iter();
        let builder = match (urls.next(), urls.len()) {
            (None, _) => anyhow::bail!("no endpoint"),
            (Some(url), 0) => TransportBuilder::new(SingleNodeConnectionPool::new(url)),
            (Some(first), _) => {
                let all = std::iter::once(first).chain(urls).collect();
                // No sniffing: endpoints may be proxies or ES-compatible engines.
                TransportBuilder::new(MultiNodeConnectionPool::round_robin(all, None))
            }
        };
        let mut builder = builder.timeout(settings.timeout);
        if let Some(credentials) = settings.credentials {
            builder = builder.auth(credentials);
        }
        if !settings.verify_certificates {
            builder = builder.cert_validation(CertificateValidation::None);
        } else if let Some(pem) = &settings.ca_pem {
            let ca = Certificate::from_pem(pem).map_err(|e| anyhow::anyhow!("tls.ca_file: {e}"))?;
            builder = builder.cert_validation(CertificateValidation::Full(ca));
        }
        let transport = builder
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the HTTP client: {e}"))?;
        Ok(Self {
            transport,
            timeout: settings.timeout,
            gzip: settings.gzip,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        headers: HeaderMap,
        body: Option<Bytes>,
    ) -> Result<Reply, Failure> {
        let wire_bytes = body.as_ref().map_or(0, Bytes::len);
        let response = self
            .transport
            .send(method, path, headers, None::<&()>, body, Some(self.timeout))
            .await
            .map_err(|e| transport_failure(&e, self.timeout))?;
        let status = response.status_code().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = response
            .bytes()
            .await
            .map_err(|e| transport_failure(&e, self.timeout))?;
        Ok(Reply {
            status,
            retry_after,
            body,
            wire_bytes,
        })
    }

    /// `GET /`: the cluster's name and version, for the startup log line.
    pub async fn root(&self) -> Result<Reply, Failure> {
        self.send(Method::Get, "", HeaderMap::new(), None).await
    }

    /// `PUT path` with a JSON body (templates, ILM policies, indices).
    pub async fn put_json(&self, path: &str, body: &serde_json::Value) -> Result<Reply, Failure> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let body = Bytes::from(body.to_string());
        self.send(Method::Put, path, headers, Some(body)).await
    }
}

impl Backend for EsClient {
    fn bulk(&self, body: Bytes) -> BoxFuture<'_, Result<Reply, Failure>> {
        Box::pin(async move {
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
            self.send(Method::Post, "_bulk", headers, Some(body)).await
        })
    }
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
fn transport_failure(error: &elasticsearch::Error, timeout: Duration) -> Failure {
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
