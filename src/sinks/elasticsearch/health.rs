//! The startup healthcheck: `GET /` tells which engine and version answers.
//! It never blocks the pipeline — a cluster that is down at startup only
//! makes the sink degraded until its first successful bulk request.

use serde_json::Value;

use super::request::{EsClient, ANSWER_BYTES_MARGIN};
use super::retry::{Failure, RESPONSE_TOO_LARGE};

/// What `GET /` says, as one line for the log, and whether that engine is
/// known to speak `_bulk` as this sink expects.
#[derive(Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    pub description: String,
    pub supported: bool,
}

pub async fn check(client: &EsClient) -> Result<ClusterInfo, Failure> {
    let reply = client.root().await?;
    // `GET /` needs the `monitor` cluster privilege, which the least
    // privileges a writer needs (SECURITY.md) leave out: the credentials can
    // still write, so this says nothing about the sink. (401 does: they are
    // wrong, and every bulk request will be refused alike.)
    if reply.status == 403 {
        return Ok(ClusterInfo {
            description: "an endpoint that refuses GET / to these credentials (403: no `monitor` cluster privilege, which writing does not need); engine and version unknown".into(),
            supported: true,
        });
    }
    if !(200..300).contains(&reply.status) {
        return Err(Failure::new(
            Some(reply.status),
            "healthcheck_failed",
            format!("GET / answered {}", reply.status),
        ));
    }
    // Only its beginning was read: not a root document.
    if reply.truncated {
        return Err(Failure::new(
            Some(reply.status),
            RESPONSE_TOO_LARGE,
            format!("GET / answered more than {ANSWER_BYTES_MARGIN} bytes"),
        ));
    }
    Ok(describe(&reply.body))
}

/// The engine a root document names: `(distribution, version)`, the
/// distribution `elasticsearch` when it says none (Elasticsearch does not).
pub fn engine(body: &[u8]) -> Option<(String, String)> {
    let root: Value = serde_json::from_slice(body).ok()?;
    let version = root.pointer("/version/number").and_then(Value::as_str)?;
    let distribution = root
        .pointer("/version/distribution")
        .and_then(Value::as_str)
        .unwrap_or("elasticsearch");
    Some((distribution.to_owned(), version.to_owned()))
}

/// Reads Elasticsearch's (or OpenSearch's) root document.
pub fn describe(body: &[u8]) -> ClusterInfo {
    let root: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let version = root.pointer("/version/number").and_then(Value::as_str);
    let distribution = root
        .pointer("/version/distribution")
        .and_then(Value::as_str)
        .unwrap_or("elasticsearch");
    let cluster = root.get("cluster_name").and_then(Value::as_str);
    let Some(version) = version else {
        return ClusterInfo {
            description: "an Elasticsearch-compatible endpoint (GET / has no version)".into(),
            supported: true,
        };
    };
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    // Only versions known to differ are called unsupported: Elasticsearch
    // before 8 and OpenSearch before 1. Engines that copy `_bulk` (Quickwit
    // says `"distribution": "quickwit"`) are supported, with at-least-once
    // delivery since they have no `_id` semantics.
    let supported = match distribution {
        "elasticsearch" => major >= 8,
        "opensearch" => major >= 1,
        _ => true,
    };
    let mut description = format!("{distribution} {version}");
    if !matches!(distribution, "elasticsearch" | "opensearch") {
        description.push_str(" (no `_id` deduplication: delivery is at-least-once)");
    }
    if let Some(cluster) = cluster {
        description.push_str(&format!(" (cluster `{cluster}`)"));
    }
    ClusterInfo {
        description,
        supported,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sinks::elasticsearch::request::ClientSettings;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    /// A client of the one test server at `addr`, plain HTTP, no credentials.
    fn client_for(addr: std::net::SocketAddr) -> EsClient {
        EsClient::new(ClientSettings {
            endpoints: vec![format!("http://{addr}").parse().unwrap()],
            credentials: None,
            ca_pem: None,
            verify_certificates: true,
            timeout: std::time::Duration::from_secs(30),
            gzip: false,
            bulk_answer_limit: ANSWER_BYTES_MARGIN,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn a_root_document_past_the_limit_is_not_read_whole() {
        // An endpoint that answers `GET /` with a body that never ends
        // (close-delimited, no length).
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head).await;
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"version\":{\"number\":\"8.15.0\"},\"x\":\"")
                .await;
            let chunk = vec![b'a'; 64 * 1024];
            let mut written = 0usize;
            while stream.write_all(&chunk).await.is_ok() {
                written += chunk.len();
            }
            written
        });
        let client = client_for(addr);
        let failure = check(&client).await.unwrap_err();
        assert_eq!(failure.error_type, RESPONSE_TOO_LARGE);
        drop(client);
        // The client hung up soon after the limit: the server's writes failed.
        let written = server.await.unwrap();
        assert!(written < 16 << 20, "{written} bytes written");
    }

    /// The least privileges SECURITY.md gives the sink's credentials
    /// (`create_doc`, `auto_configure`) do not include the `monitor` cluster
    /// privilege that `GET /` needs, so Elasticsearch answers it 403. The
    /// sink can write all the same: that is no reason to call it degraded
    /// ("cannot write to Elasticsearch") until its first bulk request.
    #[tokio::test]
    async fn a_root_refused_for_lack_of_monitor_privilege_is_not_a_failure() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = [0u8; 1024];
            let _ = stream.read(&mut head).await;
            let body = r#"{"error":{"root_cause":[{"type":"security_exception","reason":"action [cluster:monitor/main] is unauthorized for user [rum]"}],"type":"security_exception","reason":"action [cluster:monitor/main] is unauthorized for user [rum]"},"status":403}"#;
            let _ = stream
                .write_all(
                    format!(
                        "HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    )
                    .as_bytes(),
                )
                .await;
        });
        let client = client_for(addr);
        let info = check(&client).await.expect("not a failure");
        assert!(info.supported, "{info:?}");
        assert!(info.description.contains("monitor"), "{info:?}");
    }

    #[test]
    fn reads_root_documents() {
        let es = br#"{"name":"node-1","cluster_name":"rum","cluster_uuid":"x","version":{"number":"8.15.2","build_flavor":"default","lucene_version":"9.11.1"},"tagline":"You Know, for Search"}"#;
        assert_eq!(
            describe(es),
            ClusterInfo {
                description: "elasticsearch 8.15.2 (cluster `rum`)".into(),
                supported: true
            }
        );
        let old = br#"{"version":{"number":"7.17.0"}}"#;
        assert!(!describe(old).supported);
        let os = br#"{"version":{"distribution":"opensearch","number":"2.13.0"}}"#;
        assert!(describe(os).supported);
        assert_eq!(engine(os), Some(("opensearch".into(), "2.13.0".into())));
        assert_eq!(engine(es), Some(("elasticsearch".into(), "8.15.2".into())));
        assert_eq!(engine(b"not json"), None);
        assert_eq!(engine(br#"{"name":"x"}"#), None);
        assert!(describe(b"not json").supported);
        // Quickwit's `GET /api/v1/_elastic` (README lists it): not unsupported.
        let qw = br#"{"name":"node","cluster_name":"quickwit-default-cluster","version":{"distribution":"quickwit","number":"0.8.2"}}"#;
        let info = describe(qw);
        assert!(info.supported, "{info:?}");
        assert!(info.description.starts_with("quickwit 0.8.2"), "{info:?}");
        assert!(info.description.contains("at-least-once"), "{info:?}");
    }
}
