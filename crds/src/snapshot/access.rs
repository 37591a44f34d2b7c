//! Who may call and how much: identity settings, rate-limit placement and quotas, compiled.

use serde::{Deserialize, Serialize};

use super::SecretString;
use crate::billing::TokenWeights;
pub use crate::v1alpha1::{
    IdentityMethod, ModelAccessRule, QuotaPeriod, RateLimitMode, RedisUnavailablePolicy,
};

/// How apps are identified, defaults applied.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentityConfig {
    /// Methods in the order they are tried; only configured ones.
    pub order: Vec<IdentityMethod>,
    /// Requests without any credential are accepted as `anonymous`.
    pub allow_anonymous: bool,
    /// JWT validation, if configured.
    pub jwt: Option<JwtConfig>,
    /// Consumer API keys, by hash.
    pub api_keys: Vec<ApiKeyConfig>,
    /// Lower-case header trusted as the appId, if configured.
    pub trusted_header: Option<String>,
    /// Every call is refused with this explanation: the scope's `AIGateway` has no version
    /// that compiles, so who may call is unknown. Identity fails closed, never open (a
    /// sidecar that predates this field still refuses: no methods and no anonymous access).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refuse_all: Option<String>,
}

impl Default for IdentityConfig {
    fn default() -> Self {
        Self {
            order: Vec::new(),
            allow_anonymous: true,
            jwt: None,
            api_keys: Vec::new(),
            trusted_header: None,
            refuse_all: None,
        }
    }
}

/// JWT validation settings.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct JwtConfig {
    /// Accepted `iss` values; `{tenant}` stands for any of `tenants`.
    pub issuers: Vec<String>,
    /// Accepted `tid` values; empty accepts any.
    pub tenants: Vec<String>,
    /// Accepted `aud` values.
    pub audiences: Vec<String>,
    /// JWKS location; `None` means OIDC discovery from the first issuer.
    pub jwks_uri: Option<String>,
    /// Claims holding the appId, first present wins.
    pub app_id_claims: Vec<String>,
    /// Accepted `alg` values (asymmetric only).
    pub algorithms: Vec<String>,
    /// Allowed clock skew.
    pub leeway_ms: u64,
}

/// A consumer API key: the SHA-256 of the key, never the key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyConfig {
    /// The app the key belongs to.
    pub app_id: String,
    /// Lower-case hex SHA-256 of the key.
    pub sha256: String,
}

/// Where quota counters live, resolved.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitingConfig {
    /// Local or Redis.
    pub mode: RateLimitMode,
    /// Set when `mode` is Redis.
    pub redis: Option<RedisConfig>,
}

/// A resolved Redis connection.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL, possibly with credentials.
    pub url: SecretString,
    /// Prefix of every key.
    pub key_prefix: String,
    /// Behaviour while Redis is unreachable.
    pub on_unavailable: RedisUnavailablePolicy,
    /// Time allowed per Redis call.
    pub timeout_ms: u64,
}

/// A compiled `TokenQuota`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QuotaConfig {
    /// `namespace/name`.
    pub id: String,
    /// `metadata.name`, named in refusals and metrics.
    pub name: String,
    /// The app; `None` for the default quota of apps without their own.
    pub app_id: Option<String>,
    /// Pool names it applies to; empty = all.
    pub pools: Vec<String>,
    /// Model names it applies to; empty = all.
    pub models: Vec<String>,
    /// Tokens per minute.
    pub tokens_per_minute: Option<u64>,
    /// Requests per minute.
    pub requests_per_minute: Option<u64>,
    /// Calendar quotas, at most one per period.
    pub calendar: Vec<CalendarQuotaConfig>,
    /// Completion tokens reserved when a request sets no `max_tokens`.
    pub default_max_tokens: u64,
    /// This sidecar's share of the limits in `Local` mode (0 < share ≤ 1); 1 standalone.
    pub share: f64,
    /// How much each token type counts toward the token limits (default: fully).
    #[serde(default, skip_serializing_if = "TokenWeights::is_default")]
    pub token_weights: TokenWeights,
    /// Money budgets, at most one per period and currency.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetConfig>,
}

impl QuotaConfig {
    /// Whether the quota covers a call to `pool` for `model`.
    pub fn covers(&self, pool: &str, model: &str) -> bool {
        (self.pools.is_empty() || self.pools.iter().any(|p| p == pool))
            && (self.models.is_empty() || self.models.iter().any(|m| m == model))
    }
}

/// A money budget per calendar period: the metered cost of the calls it covers, in the
/// budget's currency, at most `amount` per period.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetConfig {
    /// The UTC period.
    pub period: QuotaPeriod,
    /// The most the period may cost.
    pub amount: crate::billing::Micros,
    /// ISO 4217 code; calls priced in another currency do not count.
    pub currency: String,
}

/// A calendar quota.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CalendarQuotaConfig {
    /// The UTC period.
    pub period: QuotaPeriod,
    /// Tokens per period.
    pub tokens: u64,
}

/// Which apps may use which pools and models: `spec.modelAccess` of the AIGateway. No rule:
/// every app may use everything.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct ModelAccess {
    /// The rules; a call is allowed when one of them allows it.
    pub rules: Vec<ModelAccessRule>,
}

impl ModelAccess {
    /// No rule: nothing is restricted.
    pub fn is_open(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether `app` may call `model` of `pool`.
    pub fn allows(&self, app: &str, pool: &str, model: &str) -> bool {
        self.is_open()
            || self.rules.iter().any(|rule| {
                rule.apps.iter().any(|a| a == "*" || a == app)
                    && (rule.pools.is_empty() || rule.pools.iter().any(|p| p == pool))
                    && (rule.models.is_empty() || rule.models.iter().any(|m| m == model))
            })
    }
}
