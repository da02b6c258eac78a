//! TLS for the endpoint: rustls with the ring provider, certificate chain and key from
//! PEM files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::{ServeError, ServeErrorKind};

/// Where the endpoint's certificate chain and private key are (PEM files), read when
/// the server starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`CERTIFICATE` blocks).
    pub cert: PathBuf,
    /// The private key (`PRIVATE KEY`, `RSA PRIVATE KEY` or `EC PRIVATE KEY`).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The certificate chain at `cert` and the key at `key`.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> TlsFiles {
        TlsFiles { cert: cert.into(), key: key.into() }
    }

    /// Loads both files into a TLS acceptor offering HTTP/1.1 (TLS 1.2 and 1.3).
    pub(crate) fn acceptor(&self) -> Result<tokio_rustls::TlsAcceptor, ServeError> {
        let certs = CertificateDer::pem_file_iter(&self.cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| pem_error(&self.cert, "a PEM file of certificates", e))?;
        if certs.is_empty() {
            return Err(ServeError::new(ServeErrorKind::Tls, self.cert.display().to_string())
                .expected("at least one PEM CERTIFICATE block"));
        }
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| pem_error(&self.key, "a PEM private key", e))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(certs, key))
            .map_err(|e| {
                ServeError::new(ServeErrorKind::Tls, self.key.display().to_string())
                    .expected("a private key matching the certificate")
                    .caused_by(std::io::Error::other(e))
            })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
    }
}

fn pem_error(path: &Path, expected: &'static str, e: rustls::pki_types::pem::Error) -> ServeError {
    ServeError::new(ServeErrorKind::Tls, path.display().to_string())
        .expected(expected)
        .caused_by(std::io::Error::other(e))
}
