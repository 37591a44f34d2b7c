//! Client assertions signed with a certificate's key (Entra ID certificate credentials).
//!
//! Input: PEM holding the certificate and its RSA private key (PKCS#8 or PKCS#1), the client
//! id, the token endpoint and the current time. Output: a JWT (RS256) with the header
//! `x5t#S256` = base64url(SHA-256 of the certificate's DER) and the claims `aud` (the token
//! endpoint), `iss` = `sub` (the client id), `jti` (random), `nbf`/`iat` (now) and `exp`
//! (now + 10 min), as Entra ID expects for `client_assertion`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

/// Lifetime of a signed assertion.
const ASSERTION_LIFETIME: Duration = Duration::from_secs(600);

/// A signed client assertion for `client_id` at `endpoint`.
///
/// # Errors
/// A message (never containing key material) when the PEM has no certificate, no RSA private
/// key, or signing fails.
pub fn client_assertion(
    pem: &str,
    client_id: &str,
    endpoint: &str,
    now: SystemTime,
) -> Result<String, String> {
    let certificate = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .ok_or("no CERTIFICATE block in the certificate PEM")?
        .map_err(|e| format!("the CERTIFICATE block is not valid PEM: {e}"))?;
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| format!("no usable PRIVATE KEY block in the certificate PEM: {e}"))?;
    let pkcs1 = match key {
        PrivateKeyDer::Pkcs1(der) => der.secret_pkcs1_der().to_vec(),
        PrivateKeyDer::Pkcs8(der) => rsa::RsaPrivateKey::from_pkcs8_der(der.secret_pkcs8_der())
            .map_err(|e| format!("the private key is not an RSA key: {e}"))?
            .to_pkcs1_der()
            .map_err(|e| format!("the RSA private key cannot be encoded: {e}"))?
            .as_bytes()
            .to_vec(),
        _ => return Err("the private key must be RSA (PKCS#8 or PKCS#1)".to_owned()),
    };
    let mut header = Header::new(Algorithm::RS256);
    header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(certificate.as_ref())));
    let issued = now
        .duration_since(UNIX_EPOCH)
        .map_err(|_| "the clock is before 1970".to_owned())?
        .as_secs();
    let claims = serde_json::json!({
        "aud": endpoint,
        "iss": client_id,
        "sub": client_id,
        "jti": format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
        "nbf": issued,
        "iat": issued,
        "exp": issued + ASSERTION_LIFETIME.as_secs(),
    });
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_rsa_der(&pkcs1))
        .map_err(|e| format!("signing the client assertion failed: {e}"))
}

#[cfg(test)]
mod tests;
