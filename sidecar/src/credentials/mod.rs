//! Credentials Spillway presents to backends that authenticate with Microsoft Entra ID.
//!
//! Input: a backend's compiled [`EntraIdConfig`] (and the process environment for the
//! `AZURE_*` defaults of Azure workload identity). Output: a [`TokenCache`] per backend whose
//! [`TokenCache::token`] hands out a valid access token for `Authorization: Bearer`.
//!
//! - `cache`: the token cache — refresh ahead of expiry with jitter, single-flight fetches,
//!   the cached token kept through refresh failures until it expires, backoff after failures.
//! - `entra`: the OAuth 2.0 client-credentials exchange at
//!   `{authorityHost}/{tenantId}/oauth2/v2.0/token` (client secret, or a client assertion: the
//!   federated token file or a JWT signed by `assertion`), the production [`TokenSource`].
//! - `assertion`: client assertions signed with a certificate's RSA key (`x5t#S256`).
//! - `client`: the HTTPS client for token endpoints (webpki roots plus an optional extra CA
//!   bundle from `SPILLWAY_TOKEN_CA_FILE`).
//!
//! Tokens, secrets and assertions never appear in `Debug` output, logs, errors or status.

mod assertion;
mod cache;
mod client;
mod entra;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use spillway_crds::snapshot::EntraIdConfig;

use crate::clock::SystemClock;

pub use assertion::client_assertion;
pub use cache::{TokenCache, refresh_delay};
pub use client::TOKEN_CA_FILE_ENV;
pub use entra::{
    DEFAULT_AUTHORITY_HOST, EntraTokenSource, Proof, TokenEndpointSettings, form_encode,
    parse_token_response,
};

/// An access token. Its value never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(Arc<str>);

impl AccessToken {
    /// Wraps a token value.
    pub fn new(value: &str) -> Self {
        Self(Arc::from(value))
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken(***)")
    }
}

/// A token as the endpoint issued it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedToken {
    /// The token.
    pub token: AccessToken,
    /// Its lifetime from now (`expires_in`).
    pub lifetime: Duration,
}

/// Why no token could be had. Messages carry no secret, token or assertion.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The credential settings cannot work (a missing tenant or client id, say).
    #[error("Entra ID credential is misconfigured: {0}")]
    Config(String),
    /// The federated token file could not be read.
    #[error("cannot read the federated token file {path}: {message}")]
    FederatedTokenFile {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// The token endpoint could not be reached or did not answer in time.
    #[error("token endpoint {endpoint} unreachable: {message}")]
    Unreachable {
        /// The token URL.
        endpoint: String,
        /// Why.
        message: String,
    },
    /// The token endpoint refused (AAD error JSON, or another non-2xx answer).
    #[error("token endpoint {endpoint} answered {status}: {code}: {description}")]
    Refused {
        /// The token URL.
        endpoint: String,
        /// HTTP status.
        status: u16,
        /// AAD `error`, e.g. `invalid_client`.
        code: String,
        /// AAD `error_description` (first line), or the start of the body.
        description: String,
    },
    /// The endpoint answered 2xx with something that is not a token response.
    #[error("token endpoint {endpoint} answered with an unusable token response: {message}")]
    BadResponse {
        /// The token URL.
        endpoint: String,
        /// What was wrong.
        message: String,
    },
    /// No valid token is cached and the last fetch failed (retried after a backoff).
    #[error("no valid Entra ID token (last attempt failed: {0})")]
    NoValidToken(Box<CredentialError>),
}

/// A future returned by [`TokenSource::fetch`].
pub type FetchFuture<'a> =
    Pin<Box<dyn Future<Output = Result<IssuedToken, CredentialError>> + Send + 'a>>;

/// Something that obtains a fresh token: the Entra ID endpoint in production, a scripted
/// source in tests.
pub trait TokenSource: Send + Sync + fmt::Debug + 'static {
    /// Fetches a new token.
    fn fetch(&self) -> FetchFuture<'_>;
}

/// The token cache for a backend's Entra ID credentials, using the process environment for
/// the `AZURE_*` defaults and the system clock.
pub fn for_backend(config: &EntraIdConfig) -> Arc<TokenCache> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let source = EntraTokenSource::new(config, &env);
    Arc::new(TokenCache::new(Arc::new(source), Arc::new(SystemClock)))
}
