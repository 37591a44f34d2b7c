//! Which app sent a request: its appId, from a validated JWT, a consumer API key or a
//! trusted header.
//!
//! Input: the compiled [`IdentityConfig`] (rebuilt into an [`Identifier`] on every config
//! snapshot, reusing the previous one's JWKS cache and failure counters) and the request
//! headers. Output: an [`AppIdentity`] or an [`IdentityError`] (401, or 503 while the
//! issuer's keys cannot be fetched).
//!
//! Methods are tried in the configured order. The first method that finds a credential of
//! its kind decides: a valid credential names the app, an invalid one is refused — never
//! handed to a weaker method. Without any credential the request is `anonymous` when that is
//! allowed, else refused as missing. Credentials:
//! - JWT: `Authorization: Bearer <jwt>`.
//! - API key: `api-key: <key>`, or `Authorization: Bearer <key>` when the value does not look
//!   like a JWT (starts with `eyJ` or has exactly two dots) or JWT is not enabled.
//! - Trusted header: the configured header, whose value is the appId.

mod api_key;
mod error;
mod jwks;
mod jwt;
mod keys;

use std::sync::Arc;

use http::{HeaderMap, HeaderName, header};
use spillway_crds::snapshot::IdentityConfig;
pub use spillway_crds::snapshot::IdentityMethod;

use self::api_key::ApiKeys;
use self::error::FailureCounters;
pub use self::error::{IdentityError, REASONS};
pub use self::jwks::JwksOptions;
use self::jwt::JwtValidator;
use crate::clock::{Clock, SystemClock};

/// The appId of requests without a credential, where allowed.
pub const ANONYMOUS: &str = "anonymous";
/// The header carrying a consumer API key (Azure OpenAI style).
pub const API_KEY_HEADER: &str = "api-key";
/// Longest appId accepted from a header or token claim.
pub const MAX_APP_ID_LEN: usize = 256;

/// Who sent a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppIdentity {
    /// The appId usage and quotas are accounted to.
    pub app_id: String,
    /// How it was established; `None` for anonymous requests.
    pub method: Option<IdentityMethod>,
}

impl AppIdentity {
    /// Lower-case label of the method, for logs and metrics (`anonymous` when none).
    pub fn method_label(&self) -> &'static str {
        match self.method {
            Some(IdentityMethod::Jwt) => "jwt",
            Some(IdentityMethod::ApiKey) => "api_key",
            Some(IdentityMethod::TrustedHeader) => "trusted_header",
            None => ANONYMOUS,
        }
    }
}

/// What an [`Identifier`] runs on besides its configuration.
#[derive(Clone)]
pub struct IdentifierOptions {
    /// Wall clock for `exp`/`nbf`, monotonic clock for JWKS fetch timing.
    pub clock: Arc<dyn Clock>,
    /// JWKS fetch timing.
    pub jwks: JwksOptions,
}

impl Default for IdentifierOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            jwks: JwksOptions::default(),
        }
    }
}

/// Identifies requests for one [`IdentityConfig`]. Cheap to build; share it via `Arc`.
pub struct Identifier {
    refuse_all: Option<Arc<str>>,
    order: Vec<IdentityMethod>,
    allow_anonymous: bool,
    jwt: Option<JwtValidator>,
    api_keys: ApiKeys,
    trusted_header: Option<(HeaderName, Arc<str>)>,
    accepted: Arc<str>,
    failures: Arc<FailureCounters>,
}

impl std::fmt::Debug for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identifier").finish_non_exhaustive()
    }
}

impl Identifier {
    /// Builds an identifier with the system clock and default JWKS timing. With `previous`
    /// (the identifier of the prior snapshot) its failure counters carry over and its JWKS
    /// cache is reused when the key source (`jwks_uri`, or the first issuer for discovery)
    /// is unchanged.
    pub fn new(config: &IdentityConfig, previous: Option<&Identifier>) -> Self {
        Self::with_options(config, previous, IdentifierOptions::default())
    }

    /// [`Identifier::new`] with an injected clock and JWKS timing.
    pub fn with_options(
        config: &IdentityConfig,
        previous: Option<&Identifier>,
        options: IdentifierOptions,
    ) -> Self {
        let jwt = config.jwt.as_ref().map(|jwt| {
            let previous = previous.and_then(|p| p.jwt.as_ref());
            JwtValidator::new(jwt, previous, &options.jwks, Arc::clone(&options.clock))
        });
        let api_keys = ApiKeys::new(&config.api_keys);
        let trusted_header = config.trusted_header.as_deref().and_then(|name| {
            let parsed = HeaderName::from_bytes(name.as_bytes()).ok();
            if parsed.is_none() {
                tracing::warn!(header = name, "ignoring an invalid trusted header name");
            }
            parsed.map(|h| (h, Arc::from(name)))
        });
        let mut order = Vec::with_capacity(config.order.len());
        for method in &config.order {
            let enabled = match method {
                IdentityMethod::Jwt => jwt.is_some(),
                IdentityMethod::ApiKey => !api_keys.is_empty(),
                IdentityMethod::TrustedHeader => trusted_header.is_some(),
            };
            if enabled && !order.contains(method) {
                order.push(*method);
            }
        }
        let accepted = accepted_credentials(&order, config, trusted_header.as_ref());
        Self {
            refuse_all: config.refuse_all.as_deref().map(Arc::from),
            order,
            allow_anonymous: config.allow_anonymous,
            jwt,
            api_keys,
            trusted_header,
            accepted: accepted.into(),
            failures: previous
                .map(|p| Arc::clone(&p.failures))
                .unwrap_or_default(),
        }
    }

    /// Identifies the app that sent a request with these headers.
    ///
    /// # Errors
    /// [`IdentityError`] when the decisive credential is invalid, or when there is none and
    /// anonymous requests are not allowed. Each error is counted by reason.
    pub async fn identify(&self, headers: &HeaderMap) -> Result<AppIdentity, IdentityError> {
        let result = self.decide(headers).await;
        if let Err(error) = &result {
            self.failures.count(error);
        }
        result
    }

    /// Failures so far by [`IdentityError::reason`], every reason listed (in [`REASONS`]
    /// order), counted across the identifiers that succeeded each other.
    pub fn failures(&self) -> Vec<(&'static str, u64)> {
        self.failures.snapshot()
    }

    async fn decide(&self, headers: &HeaderMap) -> Result<AppIdentity, IdentityError> {
        if let Some(why) = &self.refuse_all {
            return Err(IdentityError::NotConfigured {
                why: Arc::clone(why),
            });
        }
        for &method in &self.order {
            let decided = match method {
                IdentityMethod::Jwt => match (&self.jwt, self.bearer_jwt(headers)) {
                    (Some(validator), Some(token)) => Some(validator.validate(token).await),
                    _ => None,
                },
                IdentityMethod::ApiKey => self.api_key(headers).map(|key| {
                    self.api_keys
                        .lookup(key)
                        .map(str::to_owned)
                        .ok_or(IdentityError::UnknownApiKey)
                }),
                IdentityMethod::TrustedHeader => self.trusted(headers),
            };
            if let Some(result) = decided {
                return result.map(|app_id| AppIdentity {
                    app_id,
                    method: Some(method),
                });
            }
        }
        if self.allow_anonymous {
            Ok(AppIdentity {
                app_id: ANONYMOUS.to_owned(),
                method: None,
            })
        } else {
            Err(IdentityError::Missing {
                accepted: Arc::clone(&self.accepted),
            })
        }
    }

    fn enabled(&self, method: IdentityMethod) -> bool {
        self.order.contains(&method)
    }

    /// The bearer value, when JWT validation should take it.
    fn bearer_jwt<'h>(&self, headers: &'h HeaderMap) -> Option<&'h str> {
        bearer(headers).filter(|v| !self.enabled(IdentityMethod::ApiKey) || looks_like_jwt(v))
    }

    /// The `api-key` header, else a bearer value that JWT validation does not take.
    fn api_key<'h>(&self, headers: &'h HeaderMap) -> Option<&'h [u8]> {
        if let Some(value) = headers.get(API_KEY_HEADER).filter(|v| !v.is_empty()) {
            return Some(value.as_bytes());
        }
        bearer(headers)
            .filter(|v| !self.enabled(IdentityMethod::Jwt) || !looks_like_jwt(v))
            .map(str::as_bytes)
    }

    fn trusted(&self, headers: &HeaderMap) -> Option<Result<String, IdentityError>> {
        let (name, label) = self.trusted_header.as_ref()?;
        let mut values = headers.get_all(name).iter();
        let first = values.next()?;
        let malformed = |problem| IdentityError::MalformedHeader {
            header: Arc::clone(label),
            problem,
        };
        if values.next().is_some() {
            return Some(Err(malformed("it is sent more than once")));
        }
        let checked = first
            .to_str()
            .map_err(|_| "it contains characters other than visible ASCII")
            .and_then(|v| valid_app_id(v).map(|()| v.to_owned()));
        Some(checked.map_err(malformed))
    }
}

/// The value of `Authorization: Bearer <value>` (scheme case-insensitive), if non-empty.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty()).then_some(rest)
}

/// A compact JWS starts with `eyJ` (base64url of `{"`) and has exactly two dots.
fn looks_like_jwt(value: &str) -> bool {
    value.starts_with("eyJ") || value.bytes().filter(|b| *b == b'.').count() == 2
}

/// Whether `app_id` may name an app: 1 to 256 visible ASCII characters.
///
/// # Errors
/// What is wrong with it.
pub fn valid_app_id(app_id: &str) -> Result<(), &'static str> {
    if app_id.is_empty() {
        Err("it is empty")
    } else if app_id.len() > MAX_APP_ID_LEN {
        Err("it is longer than 256 characters")
    } else if !app_id.bytes().all(|b| b.is_ascii_graphic()) {
        Err("it contains characters other than visible ASCII")
    } else {
        Ok(())
    }
}

fn accepted_credentials(
    order: &[IdentityMethod],
    config: &IdentityConfig,
    trusted: Option<&(HeaderName, Arc<str>)>,
) -> String {
    let described: Vec<String> = order
        .iter()
        .map(|method| match method {
            IdentityMethod::Jwt => {
                let audiences = config
                    .jwt
                    .as_ref()
                    .map(|j| j.audiences.join(" or "))
                    .unwrap_or_default();
                format!("`Authorization: Bearer <token>` with a token issued for {audiences}")
            }
            IdentityMethod::ApiKey => {
                "`api-key: <key>` (or `Authorization: Bearer <key>`) with your app's API key"
                    .to_owned()
            }
            IdentityMethod::TrustedHeader => {
                let name = trusted.map(|(_, label)| label.as_ref()).unwrap_or_default();
                format!("the `{name}` header")
            }
        })
        .collect();
    if described.is_empty() {
        "a credential, but no identity method is configured; ask your platform team".to_owned()
    } else {
        described.join(", or ")
    }
}

#[cfg(test)]
mod tests;
