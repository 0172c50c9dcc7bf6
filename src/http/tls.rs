//! TLS for the shared listener (rustls): browsers deliver Reporting API
//! reports only to HTTPS endpoints, so the pipeline can serve HTTPS itself.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{anyhow, Context};
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

/// A listener's `tls` table: certificate and key files.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// PEM certificate chain.
    pub crt_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1), unencrypted.
    pub key_file: PathBuf,
}

pub fn acceptor(options: &TlsOptions) -> anyhow::Result<TlsAcceptor> {
    let crt = std::fs::File::open(&options.crt_file)
        .with_context(|| format!("cannot open tls.crt_file `{}`", options.crt_file.display()))?;
    let certs = CertificateDer::pem_reader_iter(crt)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.crt_file `{}` is not PEM", options.crt_file.display()))?;
    if certs.is_empty() {
        return Err(anyhow!(
            "tls.crt_file `{}` holds no certificate",
            options.crt_file.display()
        ));
    }
    let key = std::fs::read(&options.key_file)
        .with_context(|| format!("cannot read tls.key_file `{}`", options.key_file.display()))?;
    let key = match PrivateKeyDer::from_pem_slice(&key) {
        Ok(key) => key,
        // rustls reads plain keys only: an encrypted one is skipped (PKCS#8)
        // or its headers fail to decode (OpenSSL's traditional form).
        Err(_) if is_encrypted(&key) => {
            return Err(anyhow!(
                "tls.key_file `{}` holds an encrypted private key, which rum-pipeline cannot decrypt: store it unencrypted (`openssl pkey -in KEY -out PLAIN_KEY` asks for its passphrase)",
                options.key_file.display()
            ))
        }
        Err(pem::Error::NoItemsFound) => {
            return Err(anyhow!(
                "tls.key_file `{}` holds no private key",
                options.key_file.display()
            ))
        }
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!(
                "tls.key_file `{}` is not PEM",
                options.key_file.display()
            )))
        }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls.crt_file and tls.key_file do not make a usable certificate")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Whether a PEM file holds an encrypted private key: PKCS#8's own label, or
/// a traditional OpenSSL key with its `Proc-Type` header.
fn is_encrypted(pem: &[u8]) -> bool {
    [
        &b"-----BEGIN ENCRYPTED PRIVATE KEY-----"[..],
        b"Proc-Type: 4,ENCRYPTED",
    ]
    .iter()
    .any(|marker| memchr::memmem::find(pem, marker).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A P-256 key, PKCS#8 encrypted with the passphrase `x`.
    const ENCRYPTED_PKCS8: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----
MIHsMFcGCSqGSIb3DQEFDTBKMCkGCSqGSIb3DQEFDDAcBAgLxjjpIZFk9QICCAAw
DAYIKoZIhvcNAgkFADAdBglghkgBZQMEAQIEEP/rD2SqXcCR0gBhPD8flGYEgZA0
u71OCelgU/wi/0z0JSUSByf0wjnsg9LYTU+Q44h0ObmSns2kHLdTGAnzuJgySKVO
NUVzxxsvPN0OhFZzwaK0yrynzb86YclKpIPb6OqWVDoVjAe+4A2rn0JIhkkgxg2a
zBHCrycBpQgO6FeFXXUQClSLppaKBtmHoyjWiRJhala3KW0pD1jwrnsHV0kwrLw=
-----END ENCRYPTED PRIVATE KEY-----
";

    /// A P-256 key, SEC1 encrypted the traditional OpenSSL way.
    const ENCRYPTED_SEC1: &str = "-----BEGIN EC PRIVATE KEY-----
Proc-Type: 4,ENCRYPTED
DEK-Info: AES-128-CBC,1EED67C1976D255E2E71BD84761AEBAE

KZiG3cvxs60aDaSnZ8s5Re7iPwxkHG9SQsCwj9/OKI5qhmnAFlGregpFqDSdv0bR
bTE3v2ou9Z5jQJD0JbYAmx0Fc06xfV6ZlAiuUgBMhCvzXZBgyUZ07b/K4oF3tgPP
+I/FUPX56QjBVinIU9YyRyp4PiKLA3mfjxrrkdAoMXc=
-----END EC PRIVATE KEY-----
";

    /// `openssl req -newkey` encrypts the key unless told not to: such a key
    /// was said to be no private key at all, or not PEM.
    #[test]
    fn an_encrypted_key_is_called_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let options = TlsOptions {
            crt_file: dir.path().join("tls.crt"),
            key_file: dir.path().join("tls.key"),
        };
        std::fs::write(&options.crt_file, cert.pem()).unwrap();
        std::fs::write(&options.key_file, key.serialize_pem()).unwrap();
        assert!(acceptor(&options).is_ok());
        for encrypted in [ENCRYPTED_PKCS8, ENCRYPTED_SEC1] {
            std::fs::write(&options.key_file, encrypted).unwrap();
            let Err(e) = acceptor(&options) else {
                panic!("an encrypted key was taken");
            };
            let message = format!("{e:#}");
            assert!(
                message.contains("holds an encrypted private key"),
                "{message}"
            );
        }
    }
}
