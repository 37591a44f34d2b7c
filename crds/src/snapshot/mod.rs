//! The compiled configuration the data plane runs on.
//!
//! Serde-only, fully resolved (durations in milliseconds, defaults applied, secrets inlined),
//! so a sidecar never interprets user input. The operator pushes it over an authenticated
//! stream; a standalone gateway builds it from its manifest file. Secret values are wrapped in
//! [`SecretString`], which never prints.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

mod access;
mod check;

pub use crate::v1alpha1::{BackendType, StreamUsage};
pub use access::*;
pub use check::InvalidSnapshot;

/// One complete, versioned configuration.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Increases with every change; sidecars report the version they applied.
    pub version: u64,
    /// Gateway-wide settings.
    pub gateway: GatewayConfig,
    /// Every accepted pool.
    pub pools: Vec<PoolConfig>,
    /// Every accepted quota.
    #[serde(default)]
    pub quotas: Vec<QuotaConfig>,
    /// The namespace whose sidecars run it (operator mode); usage records carry it, so spend
    /// rolls up per team. None for a manifest file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl Snapshot {
    /// The pool serving `model` (a deployment or model name as the client sent it).
    pub fn pool_for_model(&self, model: &str) -> Option<&PoolConfig> {
        self.pools
            .iter()
            .find(|pool| pool.models.iter().any(|m| m == model))
    }
}

/// Gateway-wide settings, defaults applied.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GatewayConfig {
    /// Largest accepted request body.
    pub max_request_body_bytes: u64,
    /// How apps are identified.
    #[serde(default)]
    pub identity: IdentityConfig,
    /// Where quota counters live.
    #[serde(default)]
    pub rate_limiting: RateLimitingConfig,
    /// How long to keep reading a stream after the client went away.
    pub stream_drain_timeout_ms: u64,
    /// How many bytes to read at most after the client went away.
    pub stream_drain_max_bytes: u64,
    /// Cross-origin access for browsers; none: no CORS headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsConfig>,
    /// Audit logging; none: off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditConfig>,
    /// Backend response headers passed through besides the defaults: lower-case names, or
    /// prefixes ending in `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_response_headers: Vec<String>,
    /// Which apps may use which pools and models (empty: all).
    #[serde(default, skip_serializing_if = "ModelAccess::is_open")]
    pub model_access: ModelAccess,
}

/// Audit logging, validated (patterns compile).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AuditConfig {
    /// Audited appIds; empty: every app.
    pub apps: Vec<String>,
    /// Longest messages / completion kept, in bytes.
    pub max_field_bytes: u32,
    /// Built-in redaction patterns in use.
    pub builtins: Vec<crate::v1alpha1::RedactionBuiltin>,
    /// Extra patterns: `(name, regex)`.
    pub patterns: Vec<(String, String)>,
}
/// CORS, validated and normalised: origins as given (validated), methods upper-case,
/// header names lower-case.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CorsConfig {
    /// Exact origins (`https://host[:port]`), `https://*.domain` patterns, or `*`.
    pub allowed_origins: Vec<String>,
    /// Allowed methods.
    pub allowed_methods: Vec<String>,
    /// Allowed request headers.
    pub allowed_headers: Vec<String>,
    /// Response headers scripts may read.
    pub exposed_headers: Vec<String>,
    /// `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// Preflight cache time, in seconds.
    pub max_age_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            max_request_body_bytes: 16 * 1024 * 1024,
            identity: IdentityConfig::default(),
            rate_limiting: RateLimitingConfig::default(),
            stream_drain_timeout_ms: 30_000,
            stream_drain_max_bytes: 4 * 1024 * 1024,
            cors: None,
            audit: None,
            pass_response_headers: Vec::new(),
            model_access: ModelAccess::default(),
        }
    }
}

/// Prompt-cache affinity of a pool, validated.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AffinityConfig {
    /// Lower-case request header keying the affinity after `prompt_cache_key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// A pool, validated.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PoolConfig {
    /// `namespace/name` of the `AIBackendPool`.
    pub id: String,
    /// `metadata.name`, used as the pool dimension in metrics.
    pub name: String,
    /// Names clients use for this pool.
    pub models: Vec<String>,
    /// Backends, in manifest order.
    pub backends: Vec<BackendConfig>,
    /// Retry policy.
    pub retry: RetryConfig,
    /// The most output tokens one call can produce, when the pool sets it (else the model
    /// family's limit applies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    /// Prompt-cache affinity, when on: the lower-case header that keys it besides the body's
    /// `prompt_cache_key` and `user` (empty: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_affinity: Option<AffinityConfig>,
}

/// A backend, validated and resolved.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BackendConfig {
    /// Unique within the pool.
    pub name: String,
    /// Protocol.
    pub kind: BackendType,
    /// Base URL without a trailing slash; for OpenAI it includes the `/v1` prefix.
    pub base_url: String,
    /// Deployment/model name used for every requested name, unless `model_map` has it.
    pub model: Option<String>,
    /// Per-model renames.
    pub model_map: BTreeMap<String, String>,
    /// `api-version` override (Azure).
    pub api_version: Option<String>,
    /// Priority group, 1 first.
    pub priority: u32,
    /// Weight inside the group, at least 1.
    pub weight: u32,
    /// Key sent to the backend.
    pub api_key: Option<SecretString>,
    /// Entra ID credentials: the backend gets `Authorization: Bearer <access token>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra_id: Option<EntraIdConfig>,
    /// Breaker rules.
    pub breaker: BreakerConfig,
    /// Whether to ask for usage on streams.
    pub stream_usage: StreamUsage,
    /// Time to response headers for one attempt.
    pub timeout_ms: u64,
    /// Prices, the pool's merged in: currency the backend's else the pool's, the backend's
    /// rates then the pool's, the backend's provisioned cost. None: tokens are counted, no
    /// cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<crate::billing::Pricing>,
}

impl BackendConfig {
    /// The deployment (Azure) or model (OpenAI) name to use at this backend for `requested`.
    pub fn upstream_model<'a>(&'a self, requested: &'a str) -> &'a str {
        self.model_map
            .get(requested)
            .or(self.model.as_ref())
            .map_or(requested, String::as_str)
    }
}

/// The OAuth scope of Azure OpenAI / Cognitive Services tokens.
pub const COGNITIVE_SERVICES_SCOPE: &str = "https://cognitiveservices.azure.com/.default";

/// Entra ID client credentials of one backend, secrets resolved. Empty `tenant_id`,
/// `client_id` or `authority_host` are taken from the sidecar's environment (`AZURE_*`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EntraIdConfig {
    /// Directory (tenant) ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Application (client) ID.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Token endpoint host, e.g. `https://login.microsoftonline.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
    /// OAuth scope.
    pub scope: String,
    /// How the client proves its identity.
    pub grant: EntraGrant,
}

/// How a backend's Entra ID client proves its identity.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum EntraGrant {
    /// A client secret.
    ClientSecret(SecretString),
    /// A PEM certificate and its RSA private key, for a signed client assertion.
    Certificate(SecretString),
    /// A federated token read from a file (Azure workload identity).
    #[serde(rename_all = "camelCase")]
    WorkloadIdentity {
        /// The file; `None`: `AZURE_FEDERATED_TOKEN_FILE`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        federated_token_file: Option<String>,
    },
}

/// Breaker rules of one backend.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BreakerConfig {
    /// Any rule may trip the breaker.
    pub rules: Vec<BreakerRuleConfig>,
    /// Successful probes needed to close from half-open.
    pub probe_successes: u32,
}

/// One compiled trip rule.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BreakerRuleConfig {
    /// Rule name.
    pub name: String,
    /// Count or percentage threshold.
    pub threshold: TripThreshold,
    /// Sliding window length.
    pub interval_ms: u64,
    /// Status codes counted as failures (inclusive ranges).
    pub status_ranges: Vec<StatusRange>,
    /// Connection failures count.
    pub on_connection_failure: bool,
    /// Timeouts count.
    pub on_timeout: bool,
    /// Open duration when tripped.
    pub trip_duration_ms: u64,
    /// Use the backend's retry-after headers instead of `trip_duration_ms`.
    pub accept_retry_after: bool,
    /// Cap for a backend-supplied delay.
    pub max_retry_after_ms: u64,
}

/// When a rule trips.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum TripThreshold {
    /// This many failures within the interval.
    Count(u32),
    /// This percentage of failed requests within the interval, once there were at least
    /// `min_requests`.
    Percentage {
        /// 1–100.
        percent: u32,
        /// Fewest requests before the rule may trip.
        min_requests: u32,
    },
}

/// An inclusive status-code range.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest code.
    pub min: u16,
    /// Highest code.
    pub max: u16,
}

impl StatusRange {
    /// Whether `status` falls inside.
    pub fn contains(&self, status: u16) -> bool {
        (self.min..=self.max).contains(&status)
    }
}

/// Retry policy of a pool.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetryConfig {
    /// Most attempts, first included.
    pub max_attempts: u32,
    /// Statuses that are retried on the next candidate.
    pub status_ranges: Vec<StatusRange>,
    /// Retry on connection failure.
    pub on_connection_failure: bool,
    /// Retry on timeout.
    pub on_timeout: bool,
    /// Time budget for getting a response started.
    pub deadline_ms: u64,
}

impl RetryConfig {
    /// Whether a response with `status` is retried.
    pub fn retries_status(&self, status: u16) -> bool {
        self.status_ranges.iter().any(|r| r.contains(status))
    }
}

/// A secret value. Serialises as the plain string (it travels only on the authenticated
/// config stream) but never appears in `Debug` output or logs.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(***)")
    }
}
