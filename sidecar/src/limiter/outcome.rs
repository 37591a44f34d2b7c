//! What an admission asks and answers: [`AdmitRequest`], [`Refusal`] and the
//! `x-ratelimit-*` values of an admitted call ([`RateHeaders`]).
//!
//! Input: the limits each store checked. Output: one refusal for the client — a calendar
//! quota that is used up wins (403: waiting a minute will not help), else the per-minute
//! limit with the longest exact wait (429) — or the header values of the tightest limit.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::calendar::{format_utc, system_time, unix_ms};
use spillway_crds::billing::{SpendCeiling, TokenType};
use spillway_crds::snapshot::BudgetConfig;
pub use spillway_crds::snapshot::QuotaPeriod;

/// One call to admit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdmitRequest<'a> {
    /// The identified app.
    pub app_id: &'a str,
    /// The pool's `metadata.name` (as in `QuotaConfig::pools`).
    pub pool: &'a str,
    /// The model or deployment name the client asked for.
    pub model: &'a str,
    /// Estimated prompt tokens.
    pub prompt_tokens_estimate: u64,
    /// The request's completion limit (`max_completion_tokens` / `max_tokens` /
    /// `max_output_tokens`, times `n`); `None` reserves each quota's `defaultMaxTokens`.
    pub max_completion_tokens: Option<u64>,
    /// The highest metered rates of the backends the call may be routed to, per currency:
    /// money budgets reserve at these. Empty when none is priced.
    pub spend_ceiling: &'a [SpendCeiling],
}

/// Which per-minute limit refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitKind {
    /// Tokens per minute.
    Tokens,
    /// Requests per minute.
    Requests,
}

impl LimitKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::Requests => "requests",
        }
    }
}

/// Why a call was not admitted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A per-minute limit cannot cover the call yet: HTTP 429. Retrying exactly
    /// `retry_after` later succeeds unless other calls took the tokens meanwhile.
    #[error(
        "quota `{quota}` allows no more {} per minute right now; retry after {} ms",
        kind.as_str(),
        crate::protocol::headers::retry_after_ms(*retry_after)
    )]
    RateLimited {
        /// The quota's `metadata.name`.
        quota: String,
        /// Tokens or requests.
        kind: LimitKind,
        /// Exact time until the limit can cover the call.
        retry_after: Duration,
    },
    /// The call reserves more tokens than the per-minute limit can ever hold, so no wait
    /// helps: HTTP 400 at once, saying what would fit.
    #[error(
        "this call reserves {reserved} tokens (its prompt estimate plus its output limit), more than quota `{quota}` allows in a minute ({capacity}); lower max_tokens / max_completion_tokens, or shorten the prompt, so the call needs at most {capacity} tokens"
    )]
    NeverFits {
        /// The quota's `metadata.name`.
        quota: String,
        /// Tokens the call reserves.
        reserved: u64,
        /// The per-minute token limit it is held to (this sidecar's share in `Local` mode).
        capacity: u64,
    },
    /// A calendar quota is used up: HTTP 403 until it resets.
    #[error(
        "the {} token quota `{quota}` is used up; it resets at {} (UTC)",
        period_word(*period),
        format_utc(unix_ms(*resets_at))
    )]
    QuotaExhausted {
        /// The quota's `metadata.name`.
        quota: String,
        /// The calendar period.
        period: QuotaPeriod,
        /// When the next window starts.
        resets_at: SystemTime,
    },
    /// A money budget is spent: HTTP 403 until it resets.
    #[error(
        "the {} budget of quota `{quota}` ({currency}) is spent; it resets at {} (UTC)",
        period_word(*period),
        format_utc(unix_ms(*resets_at))
    )]
    BudgetExhausted {
        /// The quota's `metadata.name`.
        quota: String,
        /// The calendar period.
        period: QuotaPeriod,
        /// The budget's currency.
        currency: String,
        /// When the next window starts.
        resets_at: SystemTime,
    },
    /// Redis is unreachable and the policy is `FailClosed`: HTTP 503.
    #[error("the shared rate-limit store is unreachable; retry shortly")]
    Unavailable,
}

fn period_word(period: QuotaPeriod) -> &'static str {
    match period {
        QuotaPeriod::Hourly => "hourly",
        QuotaPeriod::Daily => "daily",
        QuotaPeriod::Weekly => "weekly",
        QuotaPeriod::Monthly => "monthly",
    }
}

impl Refusal {
    /// The OpenAI-style `error.code`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RateLimited { .. } => "rate_limit_exceeded",
            Self::QuotaExhausted { .. } => "quota_exceeded",
            Self::BudgetExhausted { .. } => "budget_exceeded",
            Self::Unavailable => "rate_limiter_unavailable",
            Self::NeverFits { .. } => "request_exceeds_quota",
        }
    }

    /// When a retry can succeed, seen from `now`: the exact wait (429), the time until the
    /// quota resets (403), one second (503).
    pub fn retry_after(&self, now: SystemTime) -> Duration {
        match self {
            // Never beyond the one-minute window, even for a bucket in debt after a call
            // that used more than it reserved: a client is told to come back within it.
            Self::RateLimited { retry_after, .. } => (*retry_after).min(WINDOW),
            Self::QuotaExhausted { resets_at, .. } | Self::BudgetExhausted { resets_at, .. } => {
                resets_at.duration_since(now).unwrap_or(Duration::ZERO)
            }
            Self::Unavailable => Duration::from_secs(1),
            Self::NeverFits { .. } => Duration::ZERO,
        }
    }
}

/// Collects the refusals of one admission; see the module docs for which one wins.
#[derive(Debug, Default)]
pub(super) struct Verdict {
    /// Quota, period, end of the window, and the currency when it is a budget.
    exhausted: Option<(Arc<str>, QuotaPeriod, i64, Option<String>)>,
    wait: Option<(Arc<str>, LimitKind, Duration)>,
}

impl Verdict {
    /// A bucket of `quota` needs `wait` (zero: it can cover the call).
    pub fn wait(&mut self, quota: &Arc<str>, kind: LimitKind, wait: Duration) {
        if !wait.is_zero() && self.wait.as_ref().is_none_or(|(_, _, w)| wait > *w) {
            self.wait = Some((Arc::clone(quota), kind, wait));
        }
    }

    /// A calendar window of `quota` ending at `end_ms` cannot cover the call.
    pub fn exhausted(&mut self, quota: &Arc<str>, period: QuotaPeriod, end_ms: i64) {
        self.offer_exhausted((Arc::clone(quota), period, end_ms, None));
    }

    /// A money `budget` of `quota`, its window ending at `end_ms`, cannot cover the call.
    pub fn budget_exhausted(&mut self, quota: &Arc<str>, budget: &BudgetConfig, end_ms: i64) {
        let currency = Some(budget.currency.clone());
        self.offer_exhausted((Arc::clone(quota), budget.period, end_ms, currency));
    }

    /// Keeps the exhausted window that resets last: waiting for an earlier one would not help.
    fn offer_exhausted(&mut self, candidate: (Arc<str>, QuotaPeriod, i64, Option<String>)) {
        if self
            .exhausted
            .as_ref()
            .is_none_or(|(_, _, end, _)| candidate.2 > *end)
        {
            self.exhausted = Some(candidate);
        }
    }

    /// The refusal, if any limit refused.
    pub fn into_refusal(self) -> Option<Refusal> {
        if let Some((quota, period, end_ms, currency)) = self.exhausted {
            let quota = quota.to_string();
            let resets_at = system_time(end_ms);
            return Some(match currency {
                None => Refusal::QuotaExhausted {
                    quota,
                    period,
                    resets_at,
                },
                Some(currency) => Refusal::BudgetExhausted {
                    quota,
                    period,
                    currency,
                    resets_at,
                },
            });
        }
        self.wait
            .map(|(quota, kind, retry_after)| Refusal::RateLimited {
                quota: quota.to_string(),
                kind,
                retry_after,
            })
    }
}

/// `x-ratelimit-*` values of an admitted call: the tightest applicable token limit (per
/// minute or calendar, the one with the fewest tokens left) and the tightest requests limit,
/// after this call's reservation. `None` where no such limit applies. In `Local` mode (and the
/// `LocalShare` fallback) the values are this sidecar's share.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RateHeaders {
    /// `x-ratelimit-limit-tokens`.
    pub limit_tokens: Option<u64>,
    /// `x-ratelimit-remaining-tokens`.
    pub remaining_tokens: Option<u64>,
    /// `x-ratelimit-reset-tokens`: until that limit is whole again.
    pub reset_tokens: Option<Duration>,
    /// `x-ratelimit-limit-requests`.
    pub limit_requests: Option<u64>,
    /// `x-ratelimit-remaining-requests`.
    pub remaining_requests: Option<u64>,
    /// `x-ratelimit-reset-requests`.
    pub reset_requests: Option<Duration>,
}

impl RateHeaders {
    /// Sets the headers that have a value (replacing a backend's own), resets in OpenAI's
    /// duration format (`1s`, `6m0s`, `20ms`).
    pub fn write_to(&self, headers: &mut HeaderMap) {
        let pairs: [(&'static str, Option<String>); 6] = [
            (
                "x-ratelimit-limit-tokens",
                self.limit_tokens.map(|v| v.to_string()),
            ),
            (
                "x-ratelimit-remaining-tokens",
                self.remaining_tokens.map(|v| v.to_string()),
            ),
            (
                "x-ratelimit-reset-tokens",
                self.reset_tokens.map(openai_duration),
            ),
            (
                "x-ratelimit-limit-requests",
                self.limit_requests.map(|v| v.to_string()),
            ),
            (
                "x-ratelimit-remaining-requests",
                self.remaining_requests.map(|v| v.to_string()),
            ),
            (
                "x-ratelimit-reset-requests",
                self.reset_requests.map(openai_duration),
            ),
        ];
        for (name, value) in pairs {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                headers.insert(HeaderName::from_static(name), value);
            }
        }
    }
}

fn openai_duration(duration: Duration) -> String {
    crate::protocol::headers::reset_duration(duration)
}

/// The window of the per-minute limits: no reset or retry the gateway announces for them is
/// longer.
pub(super) const WINDOW: Duration = Duration::from_secs(60);

/// Keeps the tightest limit of each kind while an admission is reserved.
#[derive(Debug, Default)]
pub(super) struct HeaderTracker {
    tokens: Option<(u64, i64, Duration)>,
    requests: Option<(u64, i64, Duration)>,
}

impl HeaderTracker {
    /// A token limit of `limit` with `left` after the reservation, whole again in `reset`.
    pub fn tokens(&mut self, limit: u64, left: i64, reset: Duration) {
        Self::offer(&mut self.tokens, (limit, left, reset));
    }

    /// A per-minute limit (`tokens` or requests): its reset is told as at most the window,
    /// even for a bucket in debt after a call that used more than it reserved.
    pub fn per_minute(&mut self, kind: LimitKind, limit: u64, left: i64, reset: Duration) {
        let slot = match kind {
            LimitKind::Tokens => &mut self.tokens,
            LimitKind::Requests => &mut self.requests,
        };
        Self::offer(slot, (limit, left, reset.min(WINDOW)));
    }

    fn offer(slot: &mut Option<(u64, i64, Duration)>, candidate: (u64, i64, Duration)) {
        if slot.is_none_or(|(_, left, _)| candidate.1 < left) {
            *slot = Some(candidate);
        }
    }

    /// The header values.
    pub fn finish(self) -> RateHeaders {
        let left = |v: i64| u64::try_from(v).unwrap_or(0);
        RateHeaders {
            limit_tokens: self.tokens.map(|t| t.0),
            remaining_tokens: self.tokens.map(|t| left(t.1)),
            reset_tokens: self.tokens.map(|t| t.2),
            limit_requests: self.requests.map(|r| r.0),
            remaining_requests: self.requests.map(|r| left(r.1)),
            reset_requests: self.requests.map(|r| r.2),
        }
    }
}

/// What a call really used, for the true-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Used<'a> {
    /// Tokens per billing class (`Usage::by_type`).
    pub tokens: [(TokenType, u64); 8],
    /// Its metered cost: currency and nanos (billionths), rounded up; `None` when the call
    /// was not metered (no prices, a provisioned backend, not served).
    pub spend: Option<(&'a str, u64)>,
}

impl Used<'_> {
    /// `total` plain tokens and no cost.
    pub fn tokens(total: u64) -> Self {
        let mut tokens = TokenType::ALL.map(|t| (t, 0));
        tokens[0].1 = total;
        Self {
            tokens,
            spend: None,
        }
    }

    /// Nanos spent in `currency`: the cost when it is in that currency, else 0.
    pub fn spend_in(&self, currency: &str) -> u64 {
        match self.spend {
            Some((c, nanos)) if c == currency => nanos,
            _ => 0,
        }
    }
}
