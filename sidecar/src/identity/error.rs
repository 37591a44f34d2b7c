//! Why a request could not be identified, and counters of those failures.
//!
//! Each [`IdentityError`] carries a stable lower-case [`reason`](IdentityError::reason) for
//! metrics and a message a client developer can act on (its HTTP status is decided where every
//! status is: `crate::error::ProxyError`). Messages never contain the presented token or key; values taken from a token (issuer,
//! tenant, `kid`, `alg`) are shortened and reduced to visible ASCII first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Why a request was refused by identification.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No credential of any configured kind, and anonymous access is off.
    #[error("this gateway requires a credential: send {accepted}")]
    Missing {
        /// The credentials this gateway accepts, in words.
        accepted: Arc<str>,
    },
    /// The bearer token is not a well-formed JWT.
    #[error("the bearer token is not a well-formed JWT: {0}")]
    MalformedToken(&'static str),
    /// The trusted header's value cannot be an appId.
    #[error("the `{header}` header is not a valid appId: {problem}")]
    MalformedHeader {
        /// The trusted header's name.
        header: Arc<str>,
        /// What is wrong with the value.
        problem: &'static str,
    },
    /// The token's `alg` is not one this gateway accepts (`none` and HMAC never are).
    #[error(
        "the token is signed with `{alg}`, which this gateway does not accept; accepted: {accepted}"
    )]
    DisallowedAlgorithm {
        /// The token's `alg`, sanitised.
        alg: String,
        /// The accepted algorithms.
        accepted: Arc<str>,
    },
    /// No signing key of the issuer matches the token's `kid` / `alg`.
    #[error("the token's signing key{} is not one of the issuer's current keys; get a new token", kid.as_deref().map(|k| format!(" (kid `{k}`)")).unwrap_or_default())]
    UnknownKey {
        /// The token's `kid`, sanitised.
        kid: Option<String>,
    },
    /// The signature does not verify.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// `exp` is in the past (beyond the allowed clock skew).
    #[error("the token has expired; get a new token")]
    Expired,
    /// The token has no `exp` claim: a token that never expires is not accepted.
    #[error("the token has no `exp` claim; the gateway accepts only tokens that expire")]
    NoExpiry,
    /// `nbf` is in the future (beyond the allowed clock skew).
    #[error("the token is not valid yet (nbf is in the future); check the client's clock")]
    NotYetValid,
    /// `iss` is not an accepted issuer.
    #[error("the token's issuer `{issuer}` is not accepted by this gateway")]
    WrongIssuer {
        /// The token's `iss`, sanitised.
        issuer: String,
    },
    /// `tid` is not an accepted tenant.
    #[error("the token's tenant `{tenant}` is not accepted by this gateway")]
    WrongTenant {
        /// The token's `tid`, sanitised (empty when absent).
        tenant: String,
    },
    /// No `aud` value is an accepted audience.
    #[error("the token's audience is not accepted; request a token for {expected}")]
    WrongAudience {
        /// The accepted audiences.
        expected: Arc<str>,
    },
    /// None of the configured appId claims holds a usable appId.
    #[error("the token carries no usable appId in any of the claims {claims}")]
    NoAppClaim {
        /// The configured claims.
        claims: Arc<str>,
    },
    /// The API key is not one issued by this gateway.
    #[error("the API key is not valid for this gateway")]
    UnknownApiKey,
    /// The issuer's signing keys could not be fetched.
    #[error("the gateway cannot fetch the token issuer's signing keys right now; retry shortly")]
    JwksUnavailable,
    /// The gateway's identity configuration cannot be applied, so every call is refused.
    #[error(
        "this gateway refuses every call until its identity configuration is fixed by its \
         operators: {why}"
    )]
    NotConfigured {
        /// Which configuration and where to look (no Secret names or values).
        why: Arc<str>,
    },
}

/// Every [`IdentityError::reason`], in counter order.
pub const REASONS: [&str; 16] = [
    "missing",
    "malformed",
    "disallowed_algorithm",
    "unknown_key",
    "bad_signature",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_tenant",
    "wrong_audience",
    "no_app_claim",
    "unknown_api_key",
    "jwks_unavailable",
    "malformed_header",
    "identity_not_configured",
    "no_expiry",
];

impl IdentityError {
    /// Stable lower-case label for metrics and the error `code` of the response.
    pub fn reason(&self) -> &'static str {
        REASONS[self.index()]
    }

    fn index(&self) -> usize {
        match self {
            Self::Missing { .. } => 0,
            Self::MalformedToken(_) => 1,
            Self::DisallowedAlgorithm { .. } => 2,
            Self::UnknownKey { .. } => 3,
            Self::BadSignature => 4,
            Self::Expired => 5,
            Self::NotYetValid => 6,
            Self::WrongIssuer { .. } => 7,
            Self::WrongTenant { .. } => 8,
            Self::WrongAudience { .. } => 9,
            Self::NoAppClaim { .. } => 10,
            Self::UnknownApiKey => 11,
            Self::JwksUnavailable => 12,
            Self::MalformedHeader { .. } => 13,
            Self::NotConfigured { .. } => 14,
            Self::NoExpiry => 15,
        }
    }
}

/// Failure counts by reason, shared across identifier rebuilds.
#[derive(Debug, Default)]
pub(super) struct FailureCounters([AtomicU64; REASONS.len()]);

impl FailureCounters {
    pub(super) fn count(&self, error: &IdentityError) {
        self.0[error.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> Vec<(&'static str, u64)> {
        REASONS
            .iter()
            .zip(&self.0)
            .map(|(reason, n)| (*reason, n.load(Ordering::Relaxed)))
            .collect()
    }
}

/// A value from a token made safe to show: at most 64 visible ASCII characters.
pub(super) fn sanitize(value: &str) -> String {
    let mut chars = value.chars().filter(char::is_ascii_graphic);
    let mut out: String = chars.by_ref().take(64).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_distinct_and_indexed() {
        let errors = [
            IdentityError::Missing {
                accepted: "x".into(),
            },
            IdentityError::MalformedToken("x"),
            IdentityError::DisallowedAlgorithm {
                alg: "none".into(),
                accepted: "RS256".into(),
            },
            IdentityError::UnknownKey { kid: None },
            IdentityError::BadSignature,
            IdentityError::Expired,
            IdentityError::NotYetValid,
            IdentityError::WrongIssuer { issuer: "i".into() },
            IdentityError::WrongTenant { tenant: "t".into() },
            IdentityError::WrongAudience {
                expected: "a".into(),
            },
            IdentityError::NoAppClaim { claims: "c".into() },
            IdentityError::UnknownApiKey,
            IdentityError::JwksUnavailable,
            IdentityError::MalformedHeader {
                header: "h".into(),
                problem: "p",
            },
            IdentityError::NotConfigured { why: "w".into() },
            IdentityError::NoExpiry,
        ];
        let reasons: Vec<_> = errors.iter().map(IdentityError::reason).collect();
        assert_eq!(reasons, REASONS);
        let counters = FailureCounters::default();
        counters.count(&errors[4]);
        counters.count(&errors[4]);
        let snapshot = counters.snapshot();
        assert_eq!(snapshot.len(), REASONS.len());
        assert_eq!(snapshot[4], ("bad_signature", 2));
        assert_eq!(snapshot.iter().map(|(_, n)| n).sum::<u64>(), 2);
    }

    #[test]
    fn sanitize_bounds_and_filters() {
        assert_eq!(sanitize("abc\u{7}\ndef"), "abcdef");
        let long = "x".repeat(100);
        assert_eq!(sanitize(&long), format!("{}…", "x".repeat(64)));
        assert_eq!(sanitize(&"y".repeat(64)), "y".repeat(64));
    }
}
