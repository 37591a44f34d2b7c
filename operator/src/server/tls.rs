//! TLS for the config stream: a certificate and key from files, or — when none is given — a
//! private CA and a serving certificate generated at start with `rcgen`.
//!
//! Input: file paths, or a folder and the names the certificate must carry. Output: a rustls
//! server configuration (HTTP/2 and HTTP/1.1 by ALPN) and, for a generated CA, the path of its
//! PEM file, which sidecars are given with `--operator-ca-file`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A ready TLS configuration.
#[derive(Debug)]
pub struct ServerTls {
    /// For the acceptor.
    pub config: Arc<ServerConfig>,
    /// The generated CA certificate (PEM), when the certificate was generated.
    pub generated_ca: Option<PathBuf>,
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<Arc<ServerConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate does not match the key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `cert` (PEM chain) with `key` (PEM).
///
/// # Errors
/// Unreadable or invalid files, or a key that does not match.
pub fn from_files(cert: &Path, key: &Path) -> anyhow::Result<ServerTls> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", cert.display()))?;
    anyhow::ensure!(!chain.is_empty(), "{} holds no certificate", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key from {}", key.display()))?;
    Ok(ServerTls {
        config: server_config(chain, key)?,
        generated_ca: None,
    })
}

/// Generates a CA and a certificate for `names` (DNS names or IP addresses), writes the CA to
/// `<dir>/ca.crt` and serves the certificate.
///
/// # Errors
/// A name that is not a valid DNS name or IP address, or a folder that cannot be written.
pub fn self_signed(dir: &Path, names: &[String]) -> anyhow::Result<ServerTls> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "spillway-operator generated CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);

    let mut params = CertificateParams::new(names.to_vec())
        .context("the names for the generated certificate (--tls-san)")?;
    params
        .distinguished_name
        .push(DnType::CommonName, "spillway-operator");
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &issuer)?;

    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_path = dir.join("ca.crt");
    std::fs::write(&ca_path, ca_cert.pem())
        .with_context(|| format!("writing {}", ca_path.display()))?;
    let key = PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| anyhow::anyhow!("generated key: {e}"))?;
    Ok(ServerTls {
        config: server_config(vec![cert.der().clone()], key)?,
        generated_ca: Some(ca_path),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ca_is_written_and_serves_the_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls =
            self_signed(dir.path(), &["localhost".into(), "127.0.0.1".into()]).expect("generated");
        let ca = tls.generated_ca.expect("a CA file");
        let text = std::fs::read_to_string(&ca).expect("readable");
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"), "{text}");
        assert_eq!(tls.config.alpn_protocols.len(), 2);
    }

    #[test]
    fn bad_files_say_which_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cert = dir.path().join("tls.crt");
        std::fs::write(&cert, "not a certificate").expect("write");
        let error = from_files(&cert, &dir.path().join("tls.key")).expect_err("invalid");
        assert!(format!("{error:#}").contains("tls.crt"), "{error:#}");
    }
}
