//! Bearer JWTs: parse, check the algorithm, verify the signature against the issuer's keys,
//! then check the claims and read the appId.
//!
//! Input: a compiled [`JwtConfig`], the token, the wall clock. Output: the appId or an
//! [`IdentityError`]. Only asymmetric algorithms that the configuration lists are accepted,
//! and a key is only used with the algorithm family of its type (RSA for RS*/PS*, P-256 for
//! ES256, P-384 for ES384), so neither `alg: none` nor an HMAC signed with a public key can
//! pass. Claims are checked only after the signature verified.

use std::str::FromStr;
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};
use spillway_crds::snapshot::JwtConfig;

use super::error::{IdentityError, sanitize};
use super::jwks::{JwksCache, JwksOptions, JwksSource, Loaded};
use super::keys::{KeyFamily, KeySet};
use super::valid_app_id;
use crate::clock::Clock;

/// Validates bearer JWTs for one configuration.
pub(super) struct JwtValidator {
    rules: ClaimRules,
    algorithms: Vec<String>,
    accepted_algorithms: Arc<str>,
    cache: Arc<JwksCache>,
    clock: Arc<dyn Clock>,
}

/// What the claims must satisfy.
#[derive(Clone, Debug)]
pub(super) struct ClaimRules {
    pub issuers: Vec<String>,
    pub tenants: Vec<String>,
    pub audiences: Vec<String>,
    pub app_id_claims: Vec<String>,
    pub leeway_ms: u64,
    pub expected_audiences: Arc<str>,
    pub claim_list: Arc<str>,
}

/// A token split and decoded, not yet verified.
pub(super) struct Parsed<'a> {
    pub alg: String,
    pub kid: Option<String>,
    pub signing_input: &'a str,
    pub signature: &'a str,
    pub claims: Map<String, Value>,
}

#[derive(Deserialize)]
struct Header {
    alg: Option<String>,
    kid: Option<String>,
    crit: Option<Value>,
}

impl JwtValidator {
    pub(super) fn new(
        config: &JwtConfig,
        previous: Option<&JwtValidator>,
        options: &JwksOptions,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let source = source(config);
        let cache = match previous {
            Some(previous)
                if *previous.cache.source() == source && previous.cache.options() == options =>
            {
                Arc::clone(&previous.cache)
            }
            _ => Arc::new(JwksCache::new(source, options.clone(), Arc::clone(&clock))),
        };
        Self {
            rules: ClaimRules::new(config),
            algorithms: config.algorithms.clone(),
            accepted_algorithms: config.algorithms.join(", ").into(),
            cache,
            clock,
        }
    }

    /// Validates `token` and returns its appId.
    pub(super) async fn validate(&self, token: &str) -> Result<String, IdentityError> {
        let parsed = parse(token)?;
        let alg = self.algorithm(&parsed.alg)?;
        if parsed.signature.is_empty() {
            return Err(IdentityError::MalformedToken("it has no signature"));
        }
        let mut loaded = self.cache.current();
        if loaded.keys.is_none() {
            loaded = self.cache.refetch(loaded.attempt).await;
        }
        self.cache.refresh_if_stale();
        let Some(keys) = loaded.keys.clone() else {
            return Err(IdentityError::JwksUnavailable);
        };
        match verify(&parsed, &keys, alg) {
            Err(IdentityError::UnknownKey { .. }) => {
                let after = self.cache.refetch_for_unknown_key(loaded.attempt).await;
                self.verify_after_refetch(&parsed, alg, &after)?;
            }
            other => other?,
        }
        check_claims(&parsed.claims, &self.rules, now_ms(self.clock.as_ref()))
    }

    fn verify_after_refetch(
        &self,
        parsed: &Parsed<'_>,
        alg: Algorithm,
        after: &Loaded,
    ) -> Result<(), IdentityError> {
        let result = match &after.keys {
            Some(keys) => verify(parsed, keys, alg),
            None => Err(IdentityError::JwksUnavailable),
        };
        match result {
            Err(IdentityError::UnknownKey { .. }) if after.last_failed => {
                Err(IdentityError::JwksUnavailable)
            }
            other => other,
        }
    }

    fn algorithm(&self, alg: &str) -> Result<Algorithm, IdentityError> {
        let parsed = Algorithm::from_str(alg).ok();
        match parsed {
            Some(a) if KeyFamily::of(a).is_some() && self.algorithms.iter().any(|x| x == alg) => {
                Ok(a)
            }
            _ => Err(IdentityError::DisallowedAlgorithm {
                alg: sanitize(alg),
                accepted: Arc::clone(&self.accepted_algorithms),
            }),
        }
    }
}

/// The configured `jwks_uri`, else OIDC discovery from the first issuer (with `{tenant}`
/// replaced by the first tenant, or `common` — Entra ID's multi-tenant endpoint).
fn source(config: &JwtConfig) -> JwksSource {
    match &config.jwks_uri {
        Some(uri) => JwksSource::Uri(uri.clone()),
        None => {
            let issuer = config
                .issuers
                .first()
                .map(String::as_str)
                .unwrap_or_default();
            let tenant = config.tenants.first().map_or("common", String::as_str);
            let issuer = issuer.replace("{tenant}", tenant);
            JwksSource::Discovery(format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ))
        }
    }
}

impl ClaimRules {
    pub(super) fn new(config: &JwtConfig) -> Self {
        Self {
            issuers: config.issuers.clone(),
            tenants: config.tenants.clone(),
            audiences: config.audiences.clone(),
            app_id_claims: config.app_id_claims.clone(),
            leeway_ms: config.leeway_ms,
            expected_audiences: config.audiences.join(" or ").into(),
            claim_list: config.app_id_claims.join(", ").into(),
        }
    }
}

/// Splits and decodes a compact JWS.
///
/// # Errors
/// [`IdentityError::MalformedToken`] naming what is wrong.
pub(super) fn parse(token: &str) -> Result<Parsed<'_>, IdentityError> {
    let malformed = IdentityError::MalformedToken;
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a JWT has three dot-separated parts"));
    };
    let header: Header = decode_json(header).ok_or(malformed(
        "the header is not base64url-encoded JSON with an `alg`",
    ))?;
    let claims: Map<String, Value> =
        decode_json(payload).ok_or(malformed("the payload is not base64url-encoded JSON"))?;
    if header.crit.is_some() {
        return Err(malformed("it uses critical header extensions (`crit`)"));
    }
    let signing_input = &token[..header_payload_len(token)];
    Ok(Parsed {
        alg: header.alg.ok_or(malformed("the header has no `alg`"))?,
        kid: header.kid,
        signing_input,
        signature,
        claims,
    })
}

fn header_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(token.len())
}

fn decode_json<T: serde::de::DeserializeOwned>(segment: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(segment).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Verifies the signature with the keys that fit the token's `kid` and `alg`.
///
/// # Errors
/// `UnknownKey` when no key fits, `BadSignature` when none verifies, `MalformedToken` when
/// the signature is not base64url.
pub(super) fn verify(
    parsed: &Parsed<'_>,
    keys: &KeySet,
    alg: Algorithm,
) -> Result<(), IdentityError> {
    let mut tried = false;
    for key in keys.candidates(parsed.kid.as_deref(), alg, &parsed.alg) {
        tried = true;
        match jsonwebtoken::crypto::verify(
            parsed.signature,
            parsed.signing_input.as_bytes(),
            &key.key,
            alg,
        ) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) if matches!(e.kind(), jsonwebtoken::errors::ErrorKind::Base64(_)) => {
                return Err(IdentityError::MalformedToken(
                    "the signature is not base64url",
                ));
            }
            Err(e) => tracing::debug!(kid = ?key.kid, error = %e, "a signing key could not verify"),
        }
    }
    if tried {
        Err(IdentityError::BadSignature)
    } else {
        Err(IdentityError::UnknownKey {
            kid: parsed.kid.as_deref().map(sanitize),
        })
    }
}

/// Milliseconds since the Unix epoch by `clock`.
pub(super) fn now_ms(clock: &dyn Clock) -> i128 {
    clock
        .wall()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i128::try_from(d.as_millis()).unwrap_or(i128::MAX))
}

/// Checks `exp`, `nbf`, `iss`, `tid` and `aud`, then returns the appId.
///
/// # Errors
/// The first rule the claims break.
pub(super) fn check_claims(
    claims: &Map<String, Value>,
    rules: &ClaimRules,
    now_ms: i128,
) -> Result<String, IdentityError> {
    let leeway = i128::from(rules.leeway_ms);
    let exp = match claims.get("exp") {
        None => return Err(IdentityError::NoExpiry),
        Some(value) => millis(value).ok_or(IdentityError::MalformedToken(
            "the `exp` claim is not a number",
        ))?,
    };
    if now_ms >= exp + leeway {
        return Err(IdentityError::Expired);
    }
    if let Some(nbf) = claims.get("nbf") {
        let nbf = millis(nbf).ok_or(IdentityError::MalformedToken("`nbf` is not a number"))?;
        if now_ms + leeway < nbf {
            return Err(IdentityError::NotYetValid);
        }
    }
    let tid = claims.get("tid").and_then(Value::as_str);
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !issuer_accepted(iss, tid, rules) {
        return Err(IdentityError::WrongIssuer {
            issuer: sanitize(iss),
        });
    }
    if !rules.tenants.is_empty() && !tid.is_some_and(|t| rules.tenants.iter().any(|x| x == t)) {
        return Err(IdentityError::WrongTenant {
            tenant: tid.map_or_else(|| "(none)".to_owned(), sanitize),
        });
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(aud)) => rules.audiences.contains(aud),
        Some(Value::Array(auds)) => auds
            .iter()
            .filter_map(Value::as_str)
            .any(|aud| rules.audiences.iter().any(|a| a == aud)),
        _ => false,
    };
    if !audience_ok {
        return Err(IdentityError::WrongAudience {
            expected: Arc::clone(&rules.expected_audiences),
        });
    }
    rules
        .app_id_claims
        .iter()
        .find_map(|claim| claims.get(claim).and_then(Value::as_str))
        .filter(|app| valid_app_id(app).is_ok())
        .map(str::to_owned)
        .ok_or_else(|| IdentityError::NoAppClaim {
            claims: Arc::clone(&rules.claim_list),
        })
}

/// An issuer pattern's `{tenant}` is the token's `tid` when it has one, else any of the
/// accepted tenants.
fn issuer_accepted(iss: &str, tid: Option<&str>, rules: &ClaimRules) -> bool {
    !iss.is_empty()
        && rules.issuers.iter().any(|pattern| {
            if !pattern.contains("{tenant}") {
                return pattern == iss;
            }
            match tid {
                Some(tid) => pattern.replace("{tenant}", tid) == iss,
                None => rules
                    .tenants
                    .iter()
                    .any(|t| pattern.replace("{tenant}", t) == iss),
            }
        })
}

/// A NumericDate (seconds, possibly fractional) in milliseconds.
fn millis(value: &Value) -> Option<i128> {
    if let Some(seconds) = value.as_i64() {
        return Some(i128::from(seconds) * 1000);
    }
    let seconds = value.as_f64().filter(|s| s.is_finite())?;
    #[allow(clippy::cast_possible_truncation)]
    Some((seconds * 1000.0) as i128)
}

#[cfg(test)]
mod tests;
