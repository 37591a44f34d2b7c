//! `AIGateway`: settings for the sidecars of one scope — request limits, how apps are
//! identified, how rate limits are shared, and stream accounting bounds.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{Condition, SecretSource, ServedVersion};

/// Gateway-wide settings for the sidecars of one scope: request limits, how apps are
/// identified, and stream accounting bounds. At most one per scope; without one, defaults
/// apply.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[cfg_attr(feature = "k8s", derive(kube::CustomResource))]
#[cfg_attr(
    feature = "k8s",
    kube(
        group = "spillway.dev",
        version = "v1alpha1",
        kind = "AIGateway",
        root = "AiGateway",
        plural = "aigateways",
        shortname = "aigw",
        category = "spillway",
        namespaced,
        status = "AiGatewayStatus",
        doc = "Settings of the Spillway sidecars of one namespace: how apps are identified (Entra ID / OIDC tokens, API keys, a trusted header), request limits, how quotas are shared between replicas, CORS for browser apps, the audit log and stream accounting. At most one per namespace. If it cannot be applied and no earlier generation can, the sidecars refuse every call: identity fails closed, never open.",
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Served","type":"integer","description":"The generation the sidecars run","jsonPath":".status.servedGeneration"}"#,
        printcolumn = r#"{"name":"Identity","type":"string","description":"Identity methods in force, in order","jsonPath":".status.identity"}"#,
        printcolumn = r#"{"name":"CORS","type":"string","jsonPath":".status.cors"}"#,
        printcolumn = r#"{"name":"Audit","type":"string","jsonPath":".status.audit"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AiGatewaySpec {
    /// Largest request body accepted, in bytes; larger ones get 413. Default 16 MiB
    /// (16777216), minimum 1024.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_request_body_bytes: Option<u64>,
    /// How apps are identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<IdentitySpec>,
    /// When a client disconnects mid-stream, keep reading the backend's stream this long to
    /// learn the real token usage. Default `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub stream_drain_timeout: Option<String>,
    /// ... and at most this many bytes. Default 4 MiB (4194304).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_drain_max_bytes: Option<u64>,
    /// How `TokenQuota` limits are shared between the sidecars of this scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limiting: Option<RateLimitingSpec>,
    /// Cross-origin access for browser apps such as chat playgrounds. Without it the
    /// gateway sends no CORS headers and browsers on other origins cannot call it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<CorsSpec>,
    /// Audit log of prompts and completions. Off unless set and enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditSpec>,
    /// Backend response headers passed through to apps besides the default ones
    /// (`content-type`, `content-length`, `content-encoding`, `cache-control`, `retry-after`,
    /// `retry-after-ms`, `x-ms-retry-after-ms`). Everything else a backend sends stays at the
    /// gateway: its own `x-ratelimit-*` (the capacity of a shared deployment; apps see their
    /// own quota's instead), `server`, region, deployment and organization headers. Header
    /// names, or a prefix ending in `*` (e.g. `openai-*`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pass_response_headers: Vec<String>,
    /// Which apps may use which pools and models. Empty: every app may use every pool. With
    /// any rule, an app may call a model only when a rule names the app (or `*`), the pool
    /// and the model; other calls get 403 `model_access_denied`, on every operation, and the
    /// model lists (`GET /v1/models`) show each app only what it may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub model_access: Vec<ModelAccessRule>,
}

/// One rule of `spec.modelAccess`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct ModelAccessRule {
    /// appIds as identified (JWT `appid`/`azp`, an API key's consumer name, `anonymous`);
    /// `*` matches every app.
    pub apps: Vec<String>,
    /// AIBackendPool names; empty: every pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    /// Model / deployment names as clients send them; empty: every model of those pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
}

/// Audit logging: one record per call with the request messages and the completion
/// (streams reassembled), redacted before it leaves the gateway and capped per field. Records
/// are written off the request path through a bounded queue: when it is full, records are
/// dropped and counted rather than slowing any call.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditSpec {
    /// Record calls. Default false.
    #[serde(default)]
    pub enabled: bool,
    /// Only these appIds; empty: every app.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256), inner(length(min = 1, max = 253)))]
    pub apps: Vec<String>,
    /// Longest request messages / completion kept, in bytes (cut at a character boundary
    /// and marked). Default 16384.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 256, max = 1048576))]
    pub max_field_bytes: Option<u32>,
    /// What is masked before a record leaves the gateway.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redaction: Option<RedactionSpec>,
}

/// Redaction: built-in patterns and your own regular expressions; every match becomes
/// `[REDACTED:<name>]`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedactionSpec {
    /// Built-in patterns. Default: all of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builtins: Option<Vec<RedactionBuiltin>>,
    /// Extra patterns (Rust `regex` syntax), e.g. `EMP-[0-9]{6}` for employee ids.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub patterns: Vec<RedactionPattern>,
}

/// A named redaction pattern.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedactionPattern {
    /// Shown in the mask: `[REDACTED:<name>]`.
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-zA-Z0-9_-]+$"))]
    pub name: String,
    /// The regular expression.
    #[schemars(length(min = 1, max = 1024))]
    pub regex: String,
}

/// Built-in redaction patterns.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum RedactionBuiltin {
    /// OpenAI (`sk-…`), Azure (32 hex) and similar API keys.
    ApiKeys,
    /// `Bearer …` tokens and JWTs.
    BearerTokens,
    /// Email addresses.
    Emails,
    /// Payment card numbers (13–19 digits, Luhn-checked).
    CreditCards,
}

/// CORS: which web origins may call the gateway from a browser. Preflight requests are
/// answered by the gateway itself (no quota, no backend); an origin not listed gets no CORS
/// headers, so the browser blocks the call.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.allowCredentials) && self.allowCredentials && self.allowedOrigins.exists(o, o == '*'))", "message": "allowCredentials cannot be used with the `*` origin: list the origins"}
]))]
pub struct CorsSpec {
    /// Origins allowed to call, e.g. `https://playground.example.com`,
    /// `http://localhost:3000`, `https://*.example.com` (any subdomain), or `*` (any origin,
    /// not with `allowCredentials`).
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 253)))]
    pub allowed_origins: Vec<String>,
    /// Methods allowed. Default `GET`, `POST`, `DELETE`, `OPTIONS` (DELETE: stored responses
    /// and conversations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 32)))]
    pub allowed_methods: Vec<String>,
    /// Request headers allowed (case-insensitive; a trailing `*` matches a prefix). Default
    /// `authorization`, `api-key`, `content-type`, `accept`, `traceparent`, `tracestate`,
    /// `x-ms-client-request-id`, `x-ms-useragent`, `openai-organization`, `openai-project`
    /// and `x-stainless-*` (what the OpenAI JavaScript SDK sends from a browser).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    pub allowed_headers: Vec<String>,
    /// Response headers the browser lets scripts read. Default `retry-after`,
    /// `retry-after-ms`, the `x-ratelimit-*` headers, `x-request-id`, `x-spillway-backend`,
    /// `x-spillway-attempts`, `x-spillway-tokens-consumed`, `apim-request-id`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 128)))]
    pub exposed_headers: Vec<String>,
    /// Let browsers send cookies and `Authorization` set by the browser itself
    /// (`Access-Control-Allow-Credentials: true`). Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// How long browsers may cache a preflight answer. Default `10m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub max_age: Option<String>,
}

/// How the gateway learns which app (appId) sent a request. Methods are tried in `order`;
/// the first that finds a credential decides: a valid one names the app, an invalid one is
/// refused with 401. Without any credential the request is refused with 401 unless
/// `allowAnonymous` is set (then its appId is `anonymous`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct IdentitySpec {
    /// Order in which methods are tried. Default: `Jwt`, `ApiKey`, `TrustedHeader` (those
    /// configured).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub order: Vec<IdentityMethod>,
    /// Accept requests that carry no credential, as appId `anonymous`. On Kubernetes: only
    /// when written `true` (with no method configured and this not written, every call is
    /// refused); in a standalone `spillway run --config` file: defaults to true when no method
    /// is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_anonymous: Option<bool>,
    /// Entra ID / OIDC bearer tokens (`Authorization: Bearer <JWT>`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtSpec>,
    /// Consumer API keys issued to apps (sent as `api-key` or `Authorization: Bearer`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<ApiKeyConsumer>,
    /// Trust this request header as the appId. Only for gateways behind another proxy that
    /// authenticates callers and sets the header; anybody who can reach the gateway can set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trusted_header: Option<String>,
}

/// An identity method.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash)]
pub enum IdentityMethod {
    /// A validated JWT.
    Jwt,
    /// A consumer API key.
    ApiKey,
    /// The trusted header.
    TrustedHeader,
}

/// JWT validation. Tokens are checked against the issuer's signing keys (JWKS, cached,
/// refetched when an unknown `kid` appears), the allowed issuers or tenants, the audience,
/// `exp`/`nbf` (with `leeway`) and the allowed algorithms.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct JwtSpec {
    /// Accepted `iss` values, e.g. `https://login.microsoftonline.com/<tenant>/v2.0` and
    /// `https://sts.windows.net/<tenant>/` (v1 tokens). `{tenant}` stands for any tenant in
    /// `tenants`.
    pub issuers: Vec<String>,
    /// Accepted tenants (`tid` claim). Empty: any tenant of the accepted issuers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tenants: Vec<String>,
    /// Accepted `aud` values, e.g. `api://spillway` or the app registration's client id.
    pub audiences: Vec<String>,
    /// Where the signing keys are. Default: `jwks_uri` from the first issuer's
    /// `/.well-known/openid-configuration`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_uri: Option<String>,
    /// Claims that carry the appId, first present wins. Default `appid` (v1 tokens), `azp`
    /// (v2 tokens).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub app_id_claims: Vec<String>,
    /// Accepted signature algorithms. Default `RS256`. Only asymmetric algorithms
    /// (`RS256/384/512`, `PS256/384/512`, `ES256/384`) are allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub algorithms: Vec<String>,
    /// Clock skew allowed for `exp` and `nbf`. Default `60s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub leeway: Option<String>,
}

/// An app that authenticates with an API key. Give either the key's SHA-256 (`keySha256`,
/// hex) or a secret holding the key itself (it is hashed before it reaches any sidecar).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyConsumer {
    /// The appId requests with this key are accounted to.
    pub app_id: String,
    /// Hex SHA-256 of the key (64 digits): the output of `printf %s "$KEY" | sha256sum`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_sha256: Option<String>,
    /// The key itself, from a Secret in this AIGateway's own namespace (or env/file in
    /// standalone mode); hashed by the operator, so it never reaches a sidecar.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<SecretSource>,
}

/// Where quota counters live.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitingSpec {
    /// `Local` (default): each sidecar enforces its share of each quota, computed by the
    /// operator from the sidecars serving the app. `Redis`: exact shared counters.
    #[serde(default)]
    pub mode: RateLimitMode,
    /// Required with `mode: Redis`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
}

/// Where quota counters live.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum RateLimitMode {
    /// In each sidecar, with operator-computed shares.
    #[default]
    Local,
    /// In a shared Redis.
    Redis,
}

/// A Redis for shared counters.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// `redis://host:port/db` (or `rediss://` for TLS), possibly with credentials — then
    /// prefer `urlFrom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The URL from a Secret (or env/file in standalone mode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_from: Option<SecretSource>,
    /// Prefix of every key Spillway writes. Default `spillway`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// What to do while Redis cannot be reached: `FailOpen` (admit everything), `FailClosed`
    /// (refuse with 503) or `LocalShare` (default: enforce this sidecar's local share).
    #[serde(default)]
    pub on_redis_unavailable: RedisUnavailablePolicy,
    /// Time allowed for one Redis call before it counts as unavailable. Default `200ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h))+$"))]
    pub timeout: Option<String>,
}

/// Behaviour while Redis is unreachable.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
pub enum RedisUnavailablePolicy {
    /// Admit every request.
    FailOpen,
    /// Refuse every request that a quota applies to, with 503.
    FailClosed,
    /// Enforce the local share of each quota until Redis is back.
    #[default]
    LocalShare,
}

/// Observed state of an `AIGateway`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AiGatewayStatus {
    /// `Accepted` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Which generation is served, and the last good one.
    #[serde(flatten)]
    pub served: ServedVersion,
    /// The identity methods of the served generation, in the order they are tried
    /// (`Jwt,ApiKey`), `+Anonymous` when calls without a credential are accepted,
    /// `Anonymous` when no method is configured, `RefusingAll` when nothing can be served.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// `On` when browser origins are allowed (CORS) in the served generation, else `Off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<String>,
    /// `On` when the audit log is enabled in the served generation, else `Off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<String>,
}
