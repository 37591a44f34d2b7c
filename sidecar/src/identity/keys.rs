//! Signing keys from a JWKS document, and which of them may verify a given token.
//!
//! Input: the JSON of a JWKS (`{"keys":[…]}`). Output: a [`KeySet`] of RSA and EC (P-256,
//! P-384) public keys usable for signatures. Keys of other types, encryption keys
//! (`use: enc`) and keys that do not parse are skipped, so one odd key never hides the
//! others; a document without any usable key is an error (the caller then keeps its old
//! keys).

use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;

/// The kind of public key an algorithm needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyFamily {
    /// RSA, for RS* and PS*.
    Rsa,
    /// EC on P-256, for ES256.
    P256,
    /// EC on P-384, for ES384.
    P384,
}

impl KeyFamily {
    /// The key family an accepted algorithm verifies with; `None` for symmetric and unknown
    /// algorithms, which are never accepted.
    pub(super) fn of(alg: Algorithm) -> Option<Self> {
        match alg {
            Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512 => Some(Self::Rsa),
            Algorithm::ES256 => Some(Self::P256),
            Algorithm::ES384 => Some(Self::P384),
            _ => None,
        }
    }
}

/// One public signing key.
pub(super) struct VerifyKey {
    /// The JWK's `kid`.
    pub kid: Option<String>,
    family: KeyFamily,
    /// The JWK's `alg`, when it pins one.
    alg: Option<String>,
    /// The key, ready for `jsonwebtoken::crypto::verify`.
    pub key: DecodingKey,
}

impl VerifyKey {
    fn fits(&self, alg: Algorithm, alg_name: &str) -> bool {
        KeyFamily::of(alg) == Some(self.family) && self.alg.as_deref().is_none_or(|a| a == alg_name)
    }
}

/// The usable signing keys of one JWKS document.
#[derive(Default)]
pub(super) struct KeySet {
    keys: Vec<VerifyKey>,
}

#[derive(Deserialize)]
struct Document {
    keys: Vec<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawKey {
    kty: String,
    #[serde(rename = "use")]
    use_: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    n: Option<String>,
    e: Option<String>,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

impl KeySet {
    /// Parses a JWKS document.
    ///
    /// # Errors
    /// A message when the document is not a JWKS or holds no usable signing key.
    pub(super) fn parse(json: &[u8]) -> Result<Self, String> {
        let document: Document = serde_json::from_slice(json)
            .map_err(|e| format!("the JWKS document is not valid: {e}"))?;
        let total = document.keys.len();
        let keys: Vec<VerifyKey> = document
            .keys
            .into_iter()
            .filter_map(|value| serde_json::from_value::<RawKey>(value).ok())
            .filter_map(VerifyKey::from_raw)
            .collect();
        if keys.is_empty() {
            return Err(format!(
                "the JWKS document holds no usable RSA or EC signing key ({total} keys)"
            ));
        }
        Ok(Self { keys })
    }

    /// Number of usable keys.
    pub(super) fn len(&self) -> usize {
        self.keys.len()
    }

    /// The keys that may have signed a token with this `kid` (any `kid` when `None`) and
    /// `alg`.
    pub(super) fn candidates<'a>(
        &'a self,
        kid: Option<&'a str>,
        alg: Algorithm,
        alg_name: &'a str,
    ) -> impl Iterator<Item = &'a VerifyKey> + 'a {
        self.keys.iter().filter(move |key| {
            kid.is_none_or(|kid| key.kid.as_deref() == Some(kid)) && key.fits(alg, alg_name)
        })
    }
}

impl VerifyKey {
    fn from_raw(raw: RawKey) -> Option<Self> {
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            return None;
        }
        let (family, key) = match (raw.kty.as_str(), raw.crv.as_deref()) {
            ("RSA", _) => (
                KeyFamily::Rsa,
                DecodingKey::from_rsa_components(raw.n.as_deref()?, raw.e.as_deref()?).ok()?,
            ),
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let family = if crv == "P-256" {
                    KeyFamily::P256
                } else {
                    KeyFamily::P384
                };
                let key =
                    DecodingKey::from_ec_components(raw.x.as_deref()?, raw.y.as_deref()?).ok()?;
                (family, key)
            }
            _ => return None,
        };
        Some(Self {
            kid: raw.kid,
            family,
            alg: raw.alg,
            key,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const N: &str = "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw";

    #[test]
    fn keeps_usable_signing_keys_and_skips_the_rest() {
        let json = serde_json::json!({"keys": [
            {"kty": "RSA", "kid": "r1", "use": "sig", "n": N, "e": "AQAB", "x5c": ["..."]},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": N, "e": "AQAB"},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": "AAAA", "y": "AAAA"},
            {"kty": "EC", "kid": "e2", "crv": "P-521", "x": "AAAA", "y": "AAAA"},
            "not an object",
        ]});
        let set = KeySet::parse(json.to_string().as_bytes()).unwrap();
        let kids: Vec<_> = set.keys.iter().map(|k| k.kid.as_deref().unwrap()).collect();
        assert_eq!(kids, ["r1", "ps", "e1"]);
        let rs256: Vec<_> = set
            .candidates(None, Algorithm::RS256, "RS256")
            .map(|k| k.kid.as_deref().unwrap())
            .collect();
        assert_eq!(rs256, ["r1"], "a key pinned to PS256 never verifies RS256");
        let ps256: Vec<_> = set
            .candidates(None, Algorithm::PS256, "PS256")
            .map(|k| k.kid.as_deref().unwrap())
            .collect();
        assert_eq!(ps256, ["r1", "ps"]);
        assert_eq!(
            set.candidates(Some("e1"), Algorithm::ES256, "ES256")
                .count(),
            1
        );
        assert_eq!(
            set.candidates(Some("e1"), Algorithm::ES384, "ES384")
                .count(),
            0
        );
        assert_eq!(
            set.candidates(Some("r1"), Algorithm::ES256, "ES256")
                .count(),
            0
        );
        assert_eq!(
            set.candidates(Some("nope"), Algorithm::RS256, "RS256")
                .count(),
            0
        );
        assert_eq!(set.candidates(None, Algorithm::HS256, "HS256").count(), 0);
    }

    #[test]
    fn refuses_documents_without_usable_keys() {
        assert!(KeySet::parse(b"not json").is_err());
        assert!(KeySet::parse(br#"{"issuer":"x"}"#).is_err());
        let err = KeySet::parse(br#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#)
            .err()
            .unwrap();
        assert!(err.contains("no usable"), "{err}");
    }
}
