//! `AIBackendPool`: backends, priorities, weights, circuit breakers and retries.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AllowedNamespaces, Condition, PricingSpec, SecretSource, ServedVersion};

/// A pool of OpenAI-compatible backends that serve the same models. Calls for any of the
/// pool's `models` are routed to the lowest `priority` group that has a backend whose circuit
/// breaker admits traffic, weighted by `weight` inside the group, and retried on the next
/// candidate (spilling over to the next priority group) within the same client request.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[cfg_attr(feature = "k8s", derive(kube::CustomResource))]
#[cfg_attr(
    feature = "k8s",
    kube(
        group = "spillway.dev",
        version = "v1alpha1",
        kind = "AIBackendPool",
        root = "AiBackendPool",
        plural = "aibackendpools",
        shortname = "aipool",
        category = "spillway",
        namespaced,
        status = "AiBackendPoolStatus",
        doc = "A pool of Azure OpenAI / OpenAI-compatible backends that serve the same models: calls for the pool's models go to the lowest priority group with a healthy backend, weighted inside the group, retried and spilled over within the same client request. Status says which generation the sidecars serve, whether every backend's breaker is open (Degraded) and each backend's breaker state.",
        printcolumn = r#"{"name":"Models","type":"string","jsonPath":".status.models"}"#,
        printcolumn = r#"{"name":"Backends","type":"integer","jsonPath":".status.backends"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Served","type":"integer","description":"The generation the sidecars run","jsonPath":".status.servedGeneration"}"#,
        printcolumn = r#"{"name":"Sidecars","type":"string","jsonPath":".status.sidecars"}"#,
        printcolumn = r#"{"name":"Shared","type":"integer","description":"Other namespaces serving this pool","jsonPath":".status.shared"}"#,
        printcolumn = r#"{"name":"Open","type":"integer","description":"Backends whose breaker is open or half-open on some sidecar","jsonPath":".status.openBreakers"}"#,
        printcolumn = r#"{"name":"Degraded","type":"string","jsonPath":".status.conditions[?(@.type==\"Degraded\")].status"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!has(self.pricing) || !has(self.pricing.provisioned)", "message": "spec.pricing.provisioned: a provisioned (PTU) cost belongs to the backend that has the reserved capacity; move it to that backend's pricing.provisioned"}
]))]
pub struct AiBackendPoolSpec {
    /// Model or deployment names this pool serves, exactly as clients send them: the
    /// `{deployment}` of an Azure `/openai/deployments/{deployment}/…` call, or the `model`
    /// field of an OpenAI-style `/v1/…` call. A name may belong to one pool only.
    #[schemars(length(min = 1))]
    pub models: Vec<String>,
    /// The backends of the pool. At least one.
    #[schemars(length(min = 1))]
    pub backends: Vec<Backend>,
    /// Circuit-breaker rules applied to every backend that has none of its own. When absent,
    /// Spillway's defaults apply: trip on the first 429 for its `Retry-After` (10s when the
    /// backend gives none), and on 5 server errors, connection failures or timeouts within 10s
    /// for 30s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// How a failed attempt is retried on the next candidate backend within the same client
    /// request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// The most output tokens one call to this pool's models can produce. A call's quota
    /// reservation counts its `max_tokens` / `max_completion_tokens` / `max_output_tokens` up
    /// to this, so `max_tokens: 1e12` reserves what the model can really bill. Default: the
    /// model family's limit (gpt-4o 16,384; gpt-4.1 32,768; gpt-5 128,000; o-series 100,000;
    /// gpt-4 8,192; gpt-35-turbo 4,096; others 32,768).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_output_tokens: Option<u64>,
    /// Prompt-cache affinity: calls that share a key prefer the same backend of their priority
    /// group (rendezvous hashing over the backends whose breaker admits, weights respected),
    /// so that backend's prompt cache stays warm. The key is the body's `prompt_cache_key`,
    /// else the `header` named here, else the body's `user`; a call without one is routed by
    /// weight as usual. Breakers, priorities and spillover still win. Off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_affinity: Option<PromptCacheAffinity>,
    /// Which namespaces may use this pool (Gateway API style): `Same` (default), `All`, or
    /// `Selector` with a label selector on namespaces. Sidecars of a granted namespace serve its
    /// models as if the pool were theirs; its key Secrets stay in this namespace and reach
    /// those sidecars only over the operator's authenticated stream. A pool of the app
    /// namespace itself wins a clash of model or pool name (the shared pool is then not served
    /// there, and its status says so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<AllowedNamespaces>,
    /// Default prices of the pool's backends, for chargeback: `currency` and `rates` per
    /// million tokens. A backend's own `pricing` comes first: its currency replaces this one
    /// and its rates are tried before these. `provisioned` belongs on a backend, not here.
    /// Spillway has no built-in price list: copy your provider's prices. Without any pricing,
    /// tokens are still counted, but no cost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PricingSpec>,
}

/// `spec.promptCacheAffinity` of an AIBackendPool.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PromptCacheAffinity {
    /// A request header whose value keys the affinity when the body has no
    /// `prompt_cache_key` (e.g. `x-session-id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// The wire protocol a backend speaks.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum BackendType {
    /// Azure OpenAI: `/openai/deployments/{deployment}/…?api-version=…` with an `api-key` header.
    #[default]
    AzureOpenAI,
    /// OpenAI or any OpenAI-compatible server: `/v1/…` with `Authorization: Bearer`.
    OpenAI,
}

/// One backend endpoint: an Azure OpenAI deployment (PTU or pay-as-you-go) or an
/// OpenAI-compatible server.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.apiKey) && has(self.entraId))", "message": "set at most one of apiKey or entraId"}
]))]
pub struct Backend {
    /// Name of the backend, unique within the pool; it appears in metrics, response headers
    /// and status.
    pub name: String,
    /// `AzureOpenAI` (default) or `OpenAI`.
    #[serde(default, rename = "type")]
    pub kind: BackendType,
    /// Base URL, e.g. `https://my-resource.openai.azure.com` for Azure or
    /// `https://api.openai.com` for OpenAI (`/v1` is added when the URL has no path).
    pub url: String,
    /// The deployment (Azure) or model (OpenAI) name this backend serves the pool's models
    /// under. Default: the name the client asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Per-model renames: requested name → deployment (Azure) or model (OpenAI) name at this
    /// backend. Takes precedence over `model`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub model_map: BTreeMap<String, String>,
    /// Azure `api-version` to send to this backend instead of the client's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Priority group; 1 is tried first. A higher number is used only when no backend of a
    /// lower number admits traffic (typically PTU = 1, pay-as-you-go = 2). Default 1,
    /// minimum 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub priority: u32,
    /// Relative share of traffic among the admitting backends of the same priority group.
    /// Default 1, minimum 1.
    #[serde(default = "one")]
    #[schemars(range(min = 1))]
    pub weight: u32,
    /// The API key Spillway sends to this backend. The client's own credential never reaches a
    /// backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretSource>,
    /// Authenticate to this backend with a Microsoft Entra ID access token
    /// (`Authorization: Bearer`) instead of an API key. Tokens are cached and refreshed before
    /// they expire. At most one of `apiKey` or `entraId`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entra_id: Option<EntraIdAuth>,
    /// Circuit-breaker rules for this backend, replacing the pool's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Whether to ask this backend for token usage on streams
    /// (`stream_options.include_usage`). `Auto` (default): yes for OpenAI, Azure `/openai/v1`
    /// and Azure api-version 2024-09-01-preview or later, whose older versions reject the field.
    #[serde(default)]
    pub stream_usage: StreamUsage,
    /// Time allowed for this backend to start answering before the attempt counts as a
    /// timeout: its response headers and then, for a stream, its first bytes; for a
    /// non-streaming answer, the whole body. Default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
    /// This backend's prices, for chargeback: its `rates` are tried before the pool's
    /// `spec.pricing.rates`, its `currency` replaces the pool's, and `provisioned` gives a PTU
    /// deployment's fixed cost (its calls are then not metered; each hour's cost is shared
    /// between the apps it served). Without pricing here, the pool's applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pricing: Option<PricingSpec>,
}

fn one() -> u32 {
    1
}

/// Microsoft Entra ID credentials for a backend: an OAuth 2.0 client-credentials grant at
/// `{authorityHost}/{tenantId}/oauth2/v2.0/token`, proven by a client secret, a client
/// certificate, or an Azure workload identity (federated service-account token). Set exactly
/// one of `clientSecret`, `certificate` or `workloadIdentity`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.clientSecret) ? 1 : 0) + (has(self.certificate) ? 1 : 0) + (has(self.workloadIdentity) ? 1 : 0) == 1", "message": "set exactly one of clientSecret, certificate or workloadIdentity"},
    {"rule": "!(has(self.clientSecret) || has(self.certificate)) || (has(self.tenantId) && has(self.clientId))", "message": "clientSecret and certificate need tenantId and clientId"}
]))]
pub struct EntraIdAuth {
    /// Directory (tenant) ID of the app registration. With `workloadIdentity`, defaults to
    /// the gateway's `AZURE_TENANT_ID` (set by the Azure workload identity webhook).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
    /// Application (client) ID. With `workloadIdentity`, defaults to the gateway's
    /// `AZURE_CLIENT_ID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client secret of the app registration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretSource>,
    /// A client certificate registered with the app: PEM with the certificate and its RSA
    /// private key (PKCS#8 or PKCS#1), e.g. the `tls.crt` and `tls.key` of a Secret joined,
    /// or one key holding both. Spillway signs a client assertion (RS256, `x5t#S256`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<SecretSource>,
    /// Azure workload identity: the federated token file is exchanged for an access token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_identity: Option<WorkloadIdentity>,
    /// Token endpoint host. Default: the gateway's `AZURE_AUTHORITY_HOST`, else
    /// `https://login.microsoftonline.com`. Must be https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority_host: Option<String>,
    /// OAuth scope. Default `https://cognitiveservices.azure.com/.default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Azure workload identity settings.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadIdentity {
    /// Path of the projected service-account token, re-read at every exchange. Default: the
    /// gateway's `AZURE_FEDERATED_TOKEN_FILE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub federated_token_file: Option<String>,
}

/// Whether a backend is asked to report usage on streams.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum StreamUsage {
    /// Decide from the backend type and api-version.
    #[default]
    Auto,
    /// Always ask.
    Always,
    /// Never ask; count streamed tokens with the model's tokenizer.
    Never,
}

/// Circuit-breaker rules. A backend's breaker opens when any rule trips, and stays open for
/// that rule's `tripDuration` (or the backend's `Retry-After`, when the rule accepts it).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CircuitBreaker {
    /// One or more rules; any of them can trip the breaker.
    #[schemars(length(min = 1))]
    pub rules: Vec<BreakerRule>,
    /// Successful probe requests needed in the half-open state before the breaker closes
    /// again. Default 1, minimum 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe_successes: Option<u32>,
}

/// One trip rule.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BreakerRule {
    /// Name of the rule, shown in metrics, logs and status when it trips.
    pub name: String,
    /// Which failures count and how many of them trip the breaker.
    pub failure_condition: FailureCondition,
    /// How long the breaker stays open once tripped, e.g. `30s`.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub trip_duration: String,
    /// Stay open for as long as the backend asked (`retry-after-ms`, `x-ms-retry-after-ms`,
    /// `Retry-After`, `x-ratelimit-reset-requests`/`-tokens`) instead of `tripDuration`,
    /// capped by `maxRetryAfter`.
    #[serde(default)]
    pub accept_retry_after: bool,
    /// Upper bound for a backend-supplied retry delay (Azure can ask for a day). Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub max_retry_after: Option<String>,
}

/// Failures counted in a sliding window. Set exactly one of `count` or `percentage`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.count) != has(self.percentage)", "message": "set exactly one of count or percentage"},
    {"rule": "(has(self.statusCodeRanges) && size(self.statusCodeRanges) > 0) || (has(self.errorReasons) && size(self.errorReasons) > 0)", "message": "say which failures count: statusCodeRanges and/or errorReasons"}
]))]
pub struct FailureCondition {
    /// Trip when this many matching failures happen within `interval` (minimum 1). Set
    /// this or `percentage`, not both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub count: Option<u32>,
    /// Trip when this percentage (1–100) of the requests within `interval` failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub percentage: Option<u32>,
    /// With `percentage`: the fewest requests within `interval` before the rule may trip.
    /// Default 10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub minimum_requests: Option<u32>,
    /// The sliding window, e.g. `10s`.
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub interval: String,
    /// Response status codes that count as failures, e.g. `[{min: 429, max: 429}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_code_ranges: Vec<StatusCodeRange>,
    /// Transport failures that count: `ConnectionFailure`, `Timeout`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub error_reasons: Vec<ErrorReason>,
}

/// An inclusive range of HTTP status codes.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.min <= self.max", "message": "min must not be greater than max"}
]))]
pub struct StatusCodeRange {
    /// Lowest code in the range (100–599).
    #[schemars(range(min = 100, max = 599))]
    pub min: u16,
    /// Highest code in the range (100–599), at least `min`.
    #[schemars(range(min = 100, max = 599))]
    pub max: u16,
}

/// A failure that produced no HTTP response.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum ErrorReason {
    /// The connection could not be opened, or broke before the response headers.
    ConnectionFailure,
    /// The backend did not answer within its `timeout`.
    Timeout,
}

/// Retries within one client request.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RetryPolicy {
    /// Most attempts per client request, the first one included. Default 3, 1–10.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10))]
    pub max_attempts: Option<u32>,
    /// Status codes that make Spillway try the next candidate. Default 429 and 500–599.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub status_code_ranges: Vec<StatusCodeRange>,
    /// Transport failures that make Spillway try the next candidate. Default both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_reasons: Option<Vec<ErrorReason>>,
    /// Overall time for all attempts to get a response started. Default `120s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub deadline: Option<String>,
}

/// Observed state of an `AIBackendPool`, written by the operator.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AiBackendPoolStatus {
    /// `Accepted`, `ResolvedRefs` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Which generation is served, and the last good one.
    #[serde(flatten)]
    pub served: ServedVersion,
    /// The served model names, comma separated (for `kubectl get`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<String>,
    /// Number of backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<u32>,
    /// Sidecars running the latest snapshot, as `synced/total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecars: Option<String>,
    /// Backends whose circuit breaker is open or half-open on at least one live sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_breakers: Option<u32>,
    /// Circuit breaker state of each backend: how many live sidecars see it closed, open or
    /// half-open (sidecars that have not reported this backend yet are not counted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_states: Vec<BackendBreakerStatus>,
    /// Other namespaces that serve this pool (`spec.allowedNamespaces`), for `kubectl get`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<u32>,
    /// Each namespace granted this pool: whether it serves it, its sidecars, or why not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shared_with: Vec<SharedUse>,
}

/// One namespace granted a shared pool.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SharedUse {
    /// The namespace.
    pub namespace: String,
    /// Whether its sidecars serve the pool.
    pub served: bool,
    /// Its sidecars running the latest snapshot, as `synced/total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecars: Option<String>,
    /// Why it does not serve the pool (a pool of its own has the name or a model).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// How the live sidecars see one backend's circuit breaker.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BackendBreakerStatus {
    /// The backend's name in `spec.backends`.
    pub name: String,
    /// Sidecars sending it traffic normally.
    pub closed: u32,
    /// Sidecars keeping traffic away from it (it failed or asked to be left alone).
    pub open: u32,
    /// Sidecars letting a probe through to see whether it recovered.
    pub half_open: u32,
    /// What opened the breaker most recently on any live sidecar: `HTTP 429`, `HTTP 503`,
    /// `connection failure`, `timeout` or `credential unavailable`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When that was (RFC 3339, whole seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_time: Option<String>,
    /// While open on some sidecar: the latest time one of them lets a probe through
    /// (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopens_at: Option<String>,
}
