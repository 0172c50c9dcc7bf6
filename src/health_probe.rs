//! `rum-pipeline health`: asks a running pipeline's `GET /health` and exits 0
//! only on `200`. It exists so that a container image without a shell or curl
//! (distroless) can still have a Docker `HEALTHCHECK`, and so that scripts can
//! wait for readiness without extra tools.
//!
//! One blocking request, no async runtime: the probe runs every few seconds
//! next to the server and must stay cheap and bounded by its timeout.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Port of the shipped pipelines when `SERVER_PORT` is not set.
pub const DEFAULT_PORT: u16 = 3000;

/// The answer is a short text; anything longer is cut, not waited for.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("`{0}` is not an http:// or https:// URL")]
    BadUrl(String),
    #[error("cannot connect to {address}: {source}")]
    Connect {
        address: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("no complete answer: {0}")]
    Io(#[from] std::io::Error),
    #[error("the answer is not HTTP: {0:?}")]
    NotHttp(String),
    #[error("answered {status}: {body}")]
    Unhealthy { status: u16, body: String },
}

/// What a healthy pipeline said (its `/health` text lists degraded sinks).
#[derive(Debug, PartialEq, Eq)]
pub struct Healthy {
    pub body: String,
}

/// The URL probed when none is given: the shipped pipelines listen on
/// `SERVER_PORT` (Canarytrace's variable), 3000 by default.
pub fn default_url(server_port: Option<&str>) -> String {
    let port = server_port
        .and_then(|p| p.trim().parse::<u16>().ok())
        .unwrap_or(DEFAULT_PORT);
    format!("http://127.0.0.1:{port}/health")
}

/// `GET url`; `Ok` only for a `200`. HTTPS is spoken without checking the
/// certificate, as Kubernetes' HTTPS probes do: the probe asks whether this
/// server answers, not who it is (it normally talks to 127.0.0.1).
pub fn probe(url: &str, timeout: Duration) -> Result<Healthy, ProbeError> {
    let parsed = url::Url::parse(url).map_err(|_| ProbeError::BadUrl(url.to_owned()))?;
    let tls = match parsed.scheme() {
        "http" => false,
        "https" => true,
        _ => return Err(ProbeError::BadUrl(url.to_owned())),
    };
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ProbeError::BadUrl(url.to_owned()))?
        .to_owned();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| ProbeError::BadUrl(url.to_owned()))?;
    let mut target = parsed.path().to_owned();
    if let Some(query) = parsed.query() {
        target.push('?');
        target.push_str(query);
    }
    // `host_str` keeps IPv6 brackets, which socket addresses must not have.
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let address = format!("{host}:{port}");
    let connect_error = |source| ProbeError::Connect {
        address: address.clone(),
        source,
    };
    let socket: SocketAddr = (bare_host, port)
        .to_socket_addrs()
        .map_err(connect_error)?
        .next()
        .ok_or_else(|| connect_error(std::io::ErrorKind::NotFound.into()))?;
    let stream = TcpStream::connect_timeout(&socket, timeout).map_err(connect_error)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {address}\r\nUser-Agent: rum-pipeline-health\r\nConnection: close\r\n\r\n"
    );
    let response = if tls {
        let config = insecure_client_config()?;
        let name = ServerName::try_from(bare_host.to_owned())
            .map_err(|e| ProbeError::Tls(e.to_string()))?;
        let connection = rustls::ClientConnection::new(config, name)
            .map_err(|e| ProbeError::Tls(e.to_string()))?;
        exchange(rustls::StreamOwned::new(connection, stream), &request)
    } else {
        exchange(stream, &request)
    };
    // Socket timeouts surface as WouldBlock (Unix) or TimedOut (Windows).
    let response = response.map_err(|e| match e {
        ProbeError::Io(io)
            if matches!(
                io.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            ProbeError::Timeout(timeout)
        }
        other => other,
    })?;
    read_status(&response)
}

fn exchange(mut stream: impl Read + Write, request: &str) -> Result<Vec<u8>, ProbeError> {
    stream.write_all(request.as_bytes())?;
    stream.flush()?;
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                response.extend_from_slice(&chunk[..n]);
                if response.len() >= MAX_RESPONSE_BYTES {
                    break;
                }
            }
            // A TLS peer that closes without close_notify: what came is enough.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {
                break
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(response)
}

/// Reads `HTTP/1.x CODE ...` and the body after the blank line.
fn read_status(response: &[u8]) -> Result<Healthy, ProbeError> {
    let text = String::from_utf8_lossy(response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => code.parse::<u16>().ok(),
        _ => None,
    }
    .ok_or_else(|| ProbeError::NotHttp(status_line.chars().take(80).collect()))?;
    let body = body.trim().to_owned();
    if status == 200 {
        Ok(Healthy { body })
    } else {
        Err(ProbeError::Unhealthy { status, body })
    }
}

fn insecure_client_config() -> Result<Arc<rustls::ClientConfig>, ProbeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Accepts any certificate but still checks the handshake signatures, so the
/// connection is real TLS with the server's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::thread;

    /// A one-shot server that answers `reply` to the first request.
    fn serve_once(reply: &'static [u8]) -> (String, thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
            }
            socket.write_all(reply).unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (format!("http://127.0.0.1:{port}/health"), handle)
    }

    const TIMEOUT: Duration = Duration::from_secs(5);

    #[test]
    fn ready_and_degraded_are_healthy() {
        let (url, server) = serve_once(
            b"HTTP/1.1 200 OK\r\ncontent-length: 62\r\n\r\nrum-pipeline is ready\ndegraded: elasticsearch: connection refused",
        );
        let healthy = probe(&url, TIMEOUT).unwrap();
        assert!(
            healthy.body.contains("degraded: elasticsearch"),
            "{healthy:?}"
        );
        let request = server.join().unwrap();
        assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
        assert!(request.contains("\r\nHost: 127.0.0.1:"), "{request}");
    }

    #[test]
    fn starting_and_draining_are_not() {
        let (url, _server) =
            serve_once(b"HTTP/1.1 503 Service Unavailable\r\n\r\nrum-pipeline is shutting down");
        match probe(&url, TIMEOUT) {
            Err(ProbeError::Unhealthy { status: 503, body }) => {
                assert_eq!(body, "rum-pipeline is shutting down")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn garbage_and_silence_are_not() {
        let (url, _server) = serve_once(b"SSH-2.0-OpenSSH_9.2\r\n");
        assert!(matches!(probe(&url, TIMEOUT), Err(ProbeError::NotHttp(_))));
        let (url, _server) = serve_once(b"");
        assert!(matches!(probe(&url, TIMEOUT), Err(ProbeError::NotHttp(_))));
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        // Accepted by the kernel's backlog, never read: the probe must give up.
        let error = probe(&url, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(error, ProbeError::Timeout(_)), "{error}");
        drop(listener);
    }

    #[test]
    fn nobody_listening_is_a_connect_error() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let error = probe(&format!("http://127.0.0.1:{port}/health"), TIMEOUT).unwrap_err();
        assert!(matches!(error, ProbeError::Connect { .. }), "{error}");
        assert!(error.to_string().contains(&port.to_string()), "{error}");
    }

    #[test]
    fn bad_urls_are_refused_before_connecting() {
        for bad in [
            "",
            "localhost:3000",
            "ftp://127.0.0.1/health",
            "http://:3000/health",
        ] {
            assert!(
                matches!(probe(bad, TIMEOUT), Err(ProbeError::BadUrl(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn default_url_follows_server_port() {
        assert_eq!(default_url(None), "http://127.0.0.1:3000/health");
        assert_eq!(default_url(Some("8080")), "http://127.0.0.1:8080/health");
        // A value the pipeline itself would refuse does not make the probe guess.
        assert_eq!(default_url(Some("http")), "http://127.0.0.1:3000/health");
    }
}
