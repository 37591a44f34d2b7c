//! The HTTPS client for Entra ID token endpoints.
//!
//! Input: the `SPILLWAY_TOKEN_CA_FILE` environment variable (optional PEM bundle). Output: one
//! process-wide client that trusts the webpki roots plus that bundle (so a private authority
//! or a test token server can be trusted), HTTPS only, built on first use.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Environment variable naming a PEM file of extra CA certificates for token endpoints.
pub const TOKEN_CA_FILE_ENV: &str = "SPILLWAY_TOKEN_CA_FILE";

/// The client type used for token requests.
pub type TokenClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

static CLIENT: OnceLock<Result<TokenClient, String>> = OnceLock::new();

/// The shared token-endpoint client.
///
/// # Errors
/// The extra CA file named by [`TOKEN_CA_FILE_ENV`] cannot be read or holds no certificate.
pub fn shared() -> Result<TokenClient, String> {
    CLIENT
        .get_or_init(|| {
            let extra = std::env::var_os(TOKEN_CA_FILE_ENV).filter(|v| !v.is_empty());
            let pem = match &extra {
                Some(path) => std::fs::read(path).map_err(|e| {
                    format!(
                        "{TOKEN_CA_FILE_ENV}={}: cannot read: {e}",
                        path.to_string_lossy()
                    )
                })?,
                None => Vec::new(),
            };
            build(&pem)
        })
        .clone()
}

/// A client trusting the webpki roots and the certificates of `extra_pem`.
///
/// # Errors
/// `extra_pem` is not empty but holds no valid certificate.
pub fn build(extra_pem: &[u8]) -> Result<TokenClient, String> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if !extra_pem.is_empty() {
        let certs = CertificateDer::pem_slice_iter(extra_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{TOKEN_CA_FILE_ENV}: not PEM certificates: {e}"))?;
        if certs.is_empty() {
            return Err(format!("{TOKEN_CA_FILE_ENV}: no certificate found"));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| format!("{TOKEN_CA_FILE_ENV}: an invalid CA certificate: {e}"))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(5)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_only()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn extra_ca_must_hold_a_certificate() {
        assert!(build(b"").is_ok(), "no extra CA: the webpki roots only");
        let error = build(b"not a certificate").unwrap_err();
        assert!(error.contains("no certificate found"), "{error}");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&key).unwrap();
        assert!(build(ca.pem().as_bytes()).is_ok());
    }
}
