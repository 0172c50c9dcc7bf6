//! TLS for the shared listener (rustls): browsers deliver Reporting API
//! reports only to HTTPS endpoints, so the pipeline can serve HTTPS itself.
//! The certificate and key are reloaded when their files change (and on
//! SIGHUP), so a renewed certificate is served without a restart.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::{self, PemObject};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

use crate::reload::{Load, ReloadCounters, Reloadable};
use crate::telemetry::Registry;

/// How often the certificate and key files are checked for a new version
/// (modification time, size, inode), as a renewal replaces them.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// A listener's `tls` table: certificate and key files.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq, Hash)]
#[serde(deny_unknown_fields)]
pub struct TlsOptions {
    /// PEM certificate chain.
    pub crt_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1), unencrypted.
    pub key_file: PathBuf,
}

/// The listener's acceptor: serves the pair in the files now, and the
/// newer one each time they change (`RELOAD_INTERVAL`, SIGHUP). A pair that
/// does not load (a key that is not the certificate's, caught between two
/// renames) is counted and logged, and the loaded one stays in use.
pub fn acceptor(options: &TlsOptions, registry: &Registry) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let labels = [("crt_file", &*options.crt_file.to_string_lossy())];
    let counters = ReloadCounters {
        reloads: registry.counter(
            "tls_certificate_reloads_total",
            "Times a listener's TLS certificate and key were reloaded from their files.",
            &labels,
        ),
        errors: registry.counter(
            "tls_certificate_reload_errors_total",
            "Reloads of a listener's TLS certificate and key that failed (the loaded pair stays in use).",
            &labels,
        ),
    };
    let files = CertFiles {
        options: options.clone(),
        provider: provider.clone(),
    };
    let id = format!("tls {}", options.crt_file.display());
    let current = Reloadable::start(&id, files, Some(RELOAD_INTERVAL), counters)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(ReloadingCert(Mutex::new(current))));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// What `validate` checks: the files make a usable pair.
pub fn check(options: &TlsOptions) -> anyhow::Result<()> {
    certified_key(options, &rustls::crypto::ring::default_provider()).map(|_| ())
}

/// The certificate and key files of a listener, loaded (and reloaded) as one.
struct CertFiles {
    options: TlsOptions,
    provider: Arc<CryptoProvider>,
}

impl Load for CertFiles {
    type Value = CertifiedKey;
    const WHAT: &'static str = "TLS certificate and key";

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.options.crt_file.clone(), self.options.key_file.clone()]
    }

    fn load(&self) -> anyhow::Result<CertifiedKey> {
        certified_key(&self.options, &self.provider)
    }
}

/// Hands each handshake the newest pair the reloader published. The lock is
/// held for a generation check and a refcount, against a handshake's
/// signature.
struct ReloadingCert(Mutex<Reloadable<CertFiles>>);

impl fmt::Debug for ReloadingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReloadingCert")
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let mut current = self.0.lock().unwrap_or_else(|e| e.into_inner());
        current.refresh();
        Some(current.current().clone())
    }
}

/// Reads and checks the pair; every error names its file.
fn certified_key(options: &TlsOptions, provider: &CryptoProvider) -> anyhow::Result<CertifiedKey> {
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
    CertifiedKey::from_der(certs, key, provider)
        .context("tls.crt_file and tls.key_file do not make a usable certificate")
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
        assert!(check(&options).is_ok());
        for encrypted in [ENCRYPTED_PKCS8, ENCRYPTED_SEC1] {
            std::fs::write(&options.key_file, encrypted).unwrap();
            let Err(e) = check(&options) else {
                panic!("an encrypted key was taken");
            };
            let message = format!("{e:#}");
            assert!(
                message.contains("holds an encrypted private key"),
                "{message}"
            );
        }
    }

    /// A self-signed certificate for 127.0.0.1 and its key, as PEM texts,
    /// with the certificate's DER (what a client sees).
    fn self_signed() -> (String, String, Vec<u8>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem(), cert.der().to_vec())
    }

    /// Puts a pair in place as cert-manager and certbot do: new files
    /// renamed over the old ones.
    fn install(options: &TlsOptions, (crt, key, _): &(String, String, Vec<u8>)) {
        let dir = options.crt_file.parent().unwrap();
        std::fs::write(dir.join("new.crt"), crt).unwrap();
        std::fs::write(dir.join("new.key"), key).unwrap();
        std::fs::rename(dir.join("new.key"), &options.key_file).unwrap();
        std::fs::rename(dir.join("new.crt"), &options.crt_file).unwrap();
    }

    /// The certificate a client is shown in a handshake with `acceptor`.
    async fn served(acceptor: &TlsAcceptor, trusted: &[&[u8]]) -> Vec<u8> {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let acceptor = acceptor.clone();
        let server = tokio::spawn(async move { acceptor.accept(server_io).await.map(|_| ()) });
        let mut roots = rustls::RootCertStore::empty();
        for der in trusted {
            roots.add(CertificateDer::from(der.to_vec())).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
        let client = tokio_rustls::TlsConnector::from(Arc::new(config))
            .connect(name, client_io)
            .await
            .expect("TLS handshake");
        server.await.unwrap().unwrap();
        client.get_ref().1.peer_certificates().unwrap()[0].to_vec()
    }

    /// A listener runs for months; certificates (Let's Encrypt, cert-manager)
    /// are renewed every 60 to 90 days. The pair loaded at start was served
    /// until a restart, expired or not.
    #[tokio::test(start_paused = true)]
    async fn a_renewed_certificate_is_served_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let options = TlsOptions {
            crt_file: dir.path().join("tls.crt"),
            key_file: dir.path().join("tls.key"),
        };
        let (first, second) = (self_signed(), self_signed());
        let trusted = [first.2.as_slice(), second.2.as_slice()];
        install(&options, &first);
        let acceptor = acceptor(&options, &Registry::new()).unwrap();
        assert_eq!(served(&acceptor, &trusted).await, first.2);

        install(&options, &second);
        // Polled every minute: after a few, the renewed pair is served.
        let mut seen = served(&acceptor, &trusted).await;
        for _ in 0..5 {
            if seen == second.2 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            seen = served(&acceptor, &trusted).await;
        }
        assert!(seen == second.2, "the first certificate is still served");

        // A pair that does not load (a key of another certificate, as
        // between two renames) keeps the loaded one in use.
        std::fs::write(&options.key_file, first.1.as_bytes()).unwrap();
        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
        assert_eq!(served(&acceptor, &trusted).await, second.2);
    }
}
