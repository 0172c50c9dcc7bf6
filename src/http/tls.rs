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
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
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
    let key = std::fs::File::open(&options.key_file)
        .with_context(|| format!("cannot open tls.key_file `{}`", options.key_file.display()))?;
    let key = match PrivateKeyDer::from_pem_reader(key) {
        Ok(key) => key,
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
