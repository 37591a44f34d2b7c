#![allow(clippy::unwrap_used, clippy::expect_used)]
//! A client assertion verified with the certificate's public key.

use std::time::{Duration, UNIX_EPOCH};

use jsonwebtoken::{DecodingKey, Validation};
use rsa::pkcs1::{EncodeRsaPrivateKey, LineEnding as Pkcs1LineEnding};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::Value;

use super::*;

/// A 2048-bit RSA key, its certificate (PEM) and the key as PKCS#8 and PKCS#1 PEM.
fn credentials() -> (rsa::RsaPrivateKey, String, String, String) {
    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let pkcs8 = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let pkcs1 = key.to_pkcs1_pem(Pkcs1LineEnding::LF).unwrap().to_string();
    let signer = rcgen::KeyPair::from_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["spillway-client".into()]).unwrap();
    let cert = params.self_signed(&signer).unwrap();
    (key, cert.pem(), pkcs8, pkcs1)
}

#[test]
fn assertion_is_rs256_with_the_certificate_thumbprint_and_entra_claims() {
    let (key, cert, pkcs8, pkcs1) = credentials();
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let endpoint = "https://login.test/tenant/oauth2/v2.0/token";
    let decoding = DecodingKey::from_rsa_components(
        &URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        &URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    )
    .unwrap();
    let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
    let thumbprint = URL_SAFE_NO_PAD.encode(Sha256::digest(der.as_ref()));
    for key_pem in [&pkcs8, &pkcs1] {
        let pem = format!("{cert}{key_pem}");
        let jwt = client_assertion(&pem, "client-1", endpoint, now).unwrap();
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[endpoint]);
        validation.set_issuer(&["client-1"]);
        validation.validate_exp = false; // a fixed time in the past or future
        let data = jsonwebtoken::decode::<Value>(&jwt, &decoding, &validation).unwrap();
        assert_eq!(data.header.x5t_s256.as_deref(), Some(thumbprint.as_str()));
        let claims = data.claims;
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["nbf"], 1_800_000_000u64);
        assert_eq!(claims["exp"], 1_800_000_600u64);
        assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
    }
}

#[test]
fn unusable_pem_is_a_clear_error_without_key_material() {
    let (_, cert, pkcs8, _) = credentials();
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let no_cert = client_assertion(&pkcs8, "c", "e", now).unwrap_err();
    assert!(no_cert.contains("no CERTIFICATE"), "{no_cert}");
    let no_key = client_assertion(&cert, "c", "e", now).unwrap_err();
    assert!(no_key.contains("PRIVATE KEY"), "{no_key}");
    assert!(!no_key.contains("MII"), "{no_key}");
}
