//! `TokenQuota`: how many tokens and requests an app (by appId) may use.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{AllowedNamespaces, Condition, ServedVersion, TokenWeightsSpec};

/// Limits for one app, or — without `appId` — for every app that has no quota of its own
/// (each such app gets its own budget of this size). Per-minute limits answer 429 with an
/// exact `Retry-After`; calendar quotas answer 403 naming the quota and when it resets (UTC).
/// Limits apply across all sidecars serving the app.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[cfg_attr(feature = "k8s", derive(kube::CustomResource))]
#[cfg_attr(
    feature = "k8s",
    kube(
        group = "spillway.dev",
        version = "v1alpha1",
        kind = "TokenQuota",
        root = "TokenQuota",
        plural = "tokenquotas",
        shortname = "tq",
        category = "spillway",
        namespaced,
        status = "TokenQuotaStatus",
        doc = "Token and request limits for one app (by appId), or the default limits of every app without a quota of its own: tokens and requests per minute (429 with an exact Retry-After) and calendar quotas per hour, day, week or month (403 naming the reset). A refused edit keeps the last good limits in force; status says which generation is served and how much of each limit is used.",
        printcolumn = r#"{"name":"App","type":"string","jsonPath":".spec.appId"}"#,
        printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
        printcolumn = r#"{"name":"Served","type":"integer","description":"The generation the sidecars run","jsonPath":".status.servedGeneration"}"#,
        printcolumn = r#"{"name":"TPM","type":"integer","jsonPath":".spec.tokensPerMinute"}"#,
        printcolumn = r#"{"name":"Used","type":"integer","jsonPath":".status.tokensUsed"}"#,
        printcolumn = r#"{"name":"Remaining","type":"integer","jsonPath":".status.tokensRemaining"}"#,
        printcolumn = r#"{"name":"Day","type":"string","description":"Daily quota: tokens used of the limit","jsonPath":".status.periods[?(@.period==\"Daily\")].usage"}"#,
        printcolumn = r#"{"name":"Month","type":"string","description":"Monthly quota: tokens used of the limit","jsonPath":".status.periods[?(@.period==\"Monthly\")].usage"}"#,
        printcolumn = r#"{"name":"Budget","type":"string","description":"Money budgets: spent of the amount this period","jsonPath":".status.budgets[*].usage"}"#,
        printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "has(self.tokensPerMinute) || has(self.requestsPerMinute) || (has(self.quotas) && size(self.quotas) > 0) || (has(self.budgets) && size(self.budgets) > 0)", "message": "set at least one limit: tokensPerMinute, requestsPerMinute, quotas or budgets"}
]))]
pub struct TokenQuotaSpec {
    /// The app this quota is for: the `appid`/`azp` claim of its Entra ID token, or the
    /// `appId` of its API key. Omit to make this the default quota for apps without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Only calls to these pools (by `AIBackendPool` name) count. Default: all pools.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<String>,
    /// Only calls for these model/deployment names count. Default: all models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Prompt plus completion tokens per minute (token bucket, refilled continuously).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub tokens_per_minute: Option<u64>,
    /// Requests per minute (token bucket, refilled continuously).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub requests_per_minute: Option<u64>,
    /// Calendar quotas (UTC-aligned): at most `tokens` per hour, day, week (from Monday) or
    /// month.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<CalendarQuota>,
    /// Completion tokens reserved for a request that sets no `max_tokens` (the reservation is
    /// trued up when the real usage is known). Default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_max_tokens: Option<u64>,
    /// The namespaces whose apps this quota applies to (Gateway API style): `Same` (default),
    /// `All`, or `Selector` with a label selector on namespaces — a platform team's central
    /// quota. Every applicable quota applies to a call, so a quota an app team adds in its own
    /// namespace can only make the limit stricter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<AllowedNamespaces>,
    /// How much each token type counts toward `tokensPerMinute` and `quotas`, as a decimal
    /// string from `"0"` to `"1000"`; every type counts fully (`"1"`) by default. E.g.
    /// `{cachedInput: "0.1"}`: prompt-cache hits count a tenth of their tokens. A call's
    /// weighted count is rounded up to whole tokens. `requestsPerMinute` is not affected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_weights: Option<TokenWeightsSpec>,
    /// Money budgets per UTC calendar period: at most `amount` of metered (pay-as-you-go)
    /// cost per period, priced with the backends' `pricing`. Each call reserves its most
    /// expensive possible cost — its prompt estimate and output limit at the highest rates of
    /// the backends it may be routed to — and is trued up with its real cost; when a budget
    /// cannot cover the reservation the call gets 403 naming the reset time. Calls served by
    /// a `provisioned` backend cost nothing here (the capacity is paid for), and calls priced
    /// in another currency do not count.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<Budget>,
}

/// A money budget per calendar period.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// `Hourly`, `Daily`, `Weekly` or `Monthly`, aligned to UTC.
    pub period: QuotaPeriod,
    /// The most the period may cost, as a decimal string (`"250.00"`), exact to a millionth.
    #[schemars(regex(pattern = super::pricing::DECIMAL))]
    pub amount: String,
    /// ISO 4217 code, upper case (`USD`, `EUR`), as in the pools' `pricing`.
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: String,
}

/// A token budget per calendar period.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CalendarQuota {
    /// `Hourly`, `Daily`, `Weekly` or `Monthly`, aligned to UTC.
    pub period: QuotaPeriod,
    /// Prompt plus completion tokens per period.
    #[schemars(range(min = 1))]
    pub tokens: u64,
}

/// A calendar period, aligned to UTC.
#[derive(
    Clone, Copy, Debug, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
pub enum QuotaPeriod {
    /// From the top of the hour.
    Hourly,
    /// From 00:00 UTC.
    Daily,
    /// From Monday 00:00 UTC.
    Weekly,
    /// From the 1st, 00:00 UTC.
    Monthly,
}

/// Observed state of a `TokenQuota`, written by the operator.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenQuotaStatus {
    /// `Accepted` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The `metadata.generation` the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Which generation is served, and the last good one.
    #[serde(flatten)]
    pub served: ServedVersion,
    /// Tokens of `tokensPerMinute` in use, from the live sidecars' reports: the limit minus
    /// the tokens left. For a default quota (no `appId`): summed over the apps that use it.
    /// Refreshed every few seconds, not per request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_used: Option<u64>,
    /// Tokens of `tokensPerMinute` left: the sum of the live sidecars' shares. For a default
    /// quota: the lowest of its apps'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_remaining: Option<u64>,
    /// Where `tokensUsed`/`tokensRemaining` come from, or why they are not shown (no
    /// `tokensPerMinute`, no sidecar reporting yet, or `Redis` rate limiting, whose shared
    /// counters live in Redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_note: Option<String>,
    /// Tokens used and left in each calendar quota's current period, from the live
    /// sidecars' reports (not shown in `Redis` mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub periods: Vec<QuotaPeriodStatus>,
    /// Money spent and left in each budget's current period, from the live sidecars'
    /// reports (not shown in `Redis` mode).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub budgets: Vec<BudgetStatus>,
}

/// Spend of one money budget in its current period.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BudgetStatus {
    /// `Hourly`, `Daily`, `Weekly` or `Monthly`.
    pub period: String,
    /// ISO 4217 code.
    pub currency: String,
    /// The budget per period.
    pub amount: String,
    /// Spent this period (metered cost, to the millionth), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spent: Option<String>,
    /// `spent/amount currency`, e.g. `12.5/250 USD` (`?` while unknown), for `kubectl get`.
    pub usage: String,
}

/// Usage of one calendar quota in its current period.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QuotaPeriodStatus {
    /// `Hourly`, `Daily`, `Weekly` or `Monthly`.
    pub period: String,
    /// The period's limit in tokens.
    pub tokens: u64,
    /// Tokens used this period, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<u64>,
    /// Tokens left this period, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<u64>,
    /// `used/tokens` for `kubectl get`, or `?/tokens` while unknown.
    pub usage: String,
}
