//! `rum-pipeline health`: asks a running pipeline's `GET /health` and exits 0
//! only on `200`. It exists so that a container image without a shell or curl
//! (distroless) can still have a Docker `HEALTHCHECK`, and so that scripts can
//! wait for readiness without extra tools.
//!
//! One blocking `ureq` request, no async runtime: the probe runs every few
//! seconds next to the server and must stay cheap and bounded by its timeout.

use std::io::{ErrorKind, Read};
use std::time::Duration;

use ureq::tls::TlsConfig;
use ureq::Agent;

/// Port of the shipped pipelines when `SERVER_PORT` is not set.
pub const DEFAULT_PORT: u16 = 3000;

/// The answer is a short text; anything longer is cut, not waited for.
const MAX_RESPONSE_BYTES: u64 = 64 * 1024;

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
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ProbeError::BadUrl(url.to_owned()));
    }
    let host = parsed
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| ProbeError::BadUrl(url.to_owned()))?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| ProbeError::BadUrl(url.to_owned()))?;
    let address = format!("{host}:{port}");
    let mut response = agent(timeout)
        .get(parsed.as_str())
        .call()
        .map_err(|e| request_error(e, &address, timeout))?;
    let status = response.status().as_u16();
    let mut body = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(MAX_RESPONSE_BYTES)
        .read_to_end(&mut body)
        .map_err(|e| read_error(e, timeout))?;
    let body = String::from_utf8_lossy(&body).trim().to_owned();
    if status == 200 {
        Ok(Healthy { body })
    } else {
        Err(ProbeError::Unhealthy { status, body })
    }
}

/// One request bounded by `timeout` as a whole: no proxy from the
/// environment, no redirects followed (a 3xx is not healthy), every status
/// returned as an answer, and HTTPS without certificate checks.
fn agent(timeout: Duration) -> Agent {
    let tls = TlsConfig::builder().disable_verification(true).build();
    Agent::config_builder()
        .timeout_global(Some(timeout))
        .proxy(None)
        .max_redirects(0)
        .max_redirects_will_error(false)
        .http_status_as_error(false)
        .user_agent("rum-pipeline-health")
        .tls_config(tls)
        .build()
        .into()
}

/// Sorts what `ureq` reports into what the probe tells the operator.
fn request_error(error: ureq::Error, address: &str, timeout: Duration) -> ProbeError {
    let connect = |source: std::io::Error| ProbeError::Connect {
        address: address.to_owned(),
        source,
    };
    match error {
        ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => {
            connect(ErrorKind::TimedOut.into())
        }
        ureq::Error::Timeout(_) => ProbeError::Timeout(timeout),
        ureq::Error::HostNotFound => connect(ErrorKind::NotFound.into()),
        ureq::Error::ConnectionFailed => connect(ErrorKind::ConnectionRefused.into()),
        // The peer closed before a status line.
        ureq::Error::Io(io) if io.kind() == ErrorKind::UnexpectedEof => {
            ProbeError::NotHttp(String::new())
        }
        ureq::Error::Io(io) if is_exchange_failure(&io) => read_error(io, timeout),
        // What is left failed before a connection stood: name lookup
        // (an uncategorized error), refused, unreachable.
        ureq::Error::Io(io) => connect(io),
        ureq::Error::Protocol(e) => ProbeError::NotHttp(e.to_string()),
        ureq::Error::Tls(e) => ProbeError::Tls(e.to_owned()),
        ureq::Error::Rustls(e) => ProbeError::Tls(e.to_string()),
        ureq::Error::BadUri(_) => ProbeError::BadUrl(address.to_owned()),
        other => ProbeError::Io(other.into_io()),
    }
}

/// Errors of a connection that stood: the peer hung up or went quiet.
fn is_exchange_failure(io: &std::io::Error) -> bool {
    matches!(
        io.kind(),
        ErrorKind::ConnectionReset
            | ErrorKind::ConnectionAborted
            | ErrorKind::BrokenPipe
            | ErrorKind::WouldBlock
            | ErrorKind::TimedOut
            | ErrorKind::Interrupted
    )
}

/// Socket timeouts surface as WouldBlock (Unix) or TimedOut (Windows).
fn read_error(io: std::io::Error, timeout: Duration) -> ProbeError {
    match io.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => ProbeError::Timeout(timeout),
        _ => ProbeError::Io(io),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
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
        // Header names are case-insensitive; ureq writes them in lower case.
        assert!(
            request
                .to_ascii_lowercase()
                .contains("\r\nhost: 127.0.0.1:"),
            "{request}"
        );
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
