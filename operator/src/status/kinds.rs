//! The status of each kind: `AIBackendPool` (conditions, `Degraded`, breaker states),
//! `TokenQuota` (per-minute and calendar usage, money budgets) and `AIGateway` (what it turns on), each with
//! the served version. Pure: inputs as [`Observed`] plus the live aggregates of [`live`].

use spillway_crds::billing::Micros;
use spillway_crds::snapshot::{GatewayConfig, IdentityMethod};
use spillway_crds::v1alpha1::{
    AiBackendPoolSpec, AiBackendPoolStatus, AiGatewayStatus, BackendBreakerStatus, BudgetStatus,
    Condition, QuotaPeriod, QuotaPeriodStatus, ServedVersion, TokenQuotaSpec, TokenQuotaStatus,
};

use super::SyncCounts;
use super::{FALSE, Kind, Observed, TRUE, UNKNOWN, condition, conditions, live, reason};

/// What an `AIGateway` turns on, for `kubectl get aigw`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewaySettings {
    /// Identity methods in order, `+Anonymous`, `Anonymous` or `RefusingAll`.
    pub identity: String,
    /// Browser origins allowed.
    pub cors: bool,
    /// Audit log enabled.
    pub audit: bool,
}

impl GatewaySettings {
    /// The settings `config` serves.
    pub fn of(config: &GatewayConfig) -> Self {
        let identity = &config.identity;
        let mut methods: Vec<&str> = identity
            .order
            .iter()
            .map(|m| match m {
                IdentityMethod::Jwt => "Jwt",
                IdentityMethod::ApiKey => "ApiKey",
                IdentityMethod::TrustedHeader => "TrustedHeader",
            })
            .collect();
        if identity.allow_anonymous {
            methods.push("Anonymous");
        }
        let identity = if identity.refuse_all.is_some() {
            "RefusingAll".to_owned()
        } else {
            methods.join(",").replacen(",Anonymous", ",+Anonymous", 1)
        };
        Self {
            identity,
            cors: config.cors.is_some(),
            audit: config.audit.is_some(),
        }
    }
}

/// The status an `AIBackendPool` should have; `breakers` as [`live::pool_breakers`] gives.
pub fn pool_status(
    spec: &AiBackendPoolSpec,
    observed: &Observed<'_>,
    sidecars: SyncCounts,
    breakers: (Vec<BackendBreakerStatus>, Option<u32>),
    previous: Option<&AiBackendPoolStatus>,
) -> AiBackendPoolStatus {
    let previous_conditions = previous.map_or(&[][..], |s| &s.conditions[..]);
    let mut all = conditions(Kind::Pool, observed, previous_conditions);
    all.push(degraded(
        spec.backends.len(),
        breakers.1,
        observed,
        previous_conditions,
    ));
    AiBackendPoolStatus {
        conditions: all,
        observed_generation: observed.generation,
        served: served_version(observed, previous.map(|p| &p.served)),
        models: Some(spec.models.join(",")),
        backends: Some(u32::try_from(spec.backends.len()).unwrap_or(u32::MAX)),
        sidecars: Some(sidecars.to_string()),
        open_breakers: breakers.1,
        backend_states: breakers.0,
        shared: None,
        shared_with: Vec::new(),
    }
}

/// `Degraded`: whether every backend's circuit breaker is open (or half-open) on some live
/// sidecar, so calls for the pool may get 503 until one recovers.
fn degraded(
    backends: usize,
    open: Option<u32>,
    observed: &Observed<'_>,
    previous: &[Condition],
) -> Condition {
    let backends = u32::try_from(backends).unwrap_or(u32::MAX);
    let (status, reason, message) = match open {
        None => (
            UNKNOWN,
            reason::NO_LIVE_SIDECARS,
            "no live sidecar reports this pool's breakers".to_owned(),
        ),
        Some(open) if backends > 0 && open >= backends => (
            TRUE,
            reason::ALL_BREAKERS_OPEN,
            format!(
                "the circuit breaker of every backend ({open} of {backends}) is open or half-open \
                 on some sidecar: calls may get 503 until one recovers; see status.backendStates"
            ),
        ),
        Some(open) => (
            FALSE,
            reason::BACKENDS_AVAILABLE,
            format!(
                "{} of {backends} backends have their breaker closed everywhere",
                backends - open
            ),
        ),
    };
    condition(
        condition::DEGRADED,
        status,
        reason,
        message,
        observed,
        previous,
    )
}

/// The status a `TokenQuota` should have; `tokens` as [`live::quota_tokens`] gives.
pub fn quota_status(
    observed: &Observed<'_>,
    tokens: live::QuotaTokens,
    periods: Vec<QuotaPeriodStatus>,
    previous: Option<&TokenQuotaStatus>,
) -> TokenQuotaStatus {
    let previous_conditions = previous.map_or(&[][..], |s| &s.conditions[..]);
    TokenQuotaStatus {
        conditions: conditions(Kind::Quota, observed, previous_conditions),
        observed_generation: observed.generation,
        served: served_version(observed, previous.map(|p| &p.served)),
        tokens_used: tokens.used,
        tokens_remaining: tokens.remaining,
        tokens_note: Some(tokens.note),
        periods,
        budgets: Vec::new(),
    }
}

/// The status name and report window of a calendar period.
fn period_names(period: QuotaPeriod) -> (&'static str, &'static str) {
    match period {
        QuotaPeriod::Hourly => ("Hourly", "hour"),
        QuotaPeriod::Daily => ("Daily", "day"),
        QuotaPeriod::Weekly => ("Weekly", "week"),
        QuotaPeriod::Monthly => ("Monthly", "month"),
    }
}

/// Usage of each calendar quota of `spec` in its current period, from the live `sidecars`.
pub fn quota_periods(
    name: &str,
    spec: &TokenQuotaSpec,
    sidecars: &[live::LiveSidecar],
) -> Vec<QuotaPeriodStatus> {
    spec.quotas
        .iter()
        .map(|quota| {
            let (period, window) = period_names(quota.period);
            let app = spec.app_id.as_deref();
            let tokens = live::window_tokens(name, app, window, quota.tokens, sidecars);
            let used = tokens
                .used
                .map_or_else(|| "?".to_owned(), |u| u.to_string());
            QuotaPeriodStatus {
                period: period.to_owned(),
                tokens: quota.tokens,
                used: tokens.used,
                remaining: tokens.remaining,
                usage: format!("{used}/{}", quota.tokens),
            }
        })
        .collect()
}

/// Spend of each money budget of `spec` in its current period, from the live `sidecars`
/// (they report nanos left per budget window as `day$USD`).
pub fn quota_budgets(
    name: &str,
    spec: &TokenQuotaSpec,
    sidecars: &[live::LiveSidecar],
) -> Vec<BudgetStatus> {
    spec.budgets
        .iter()
        .map(|budget| {
            let (period, window) = period_names(budget.period);
            let amount: Micros = budget.amount.parse().unwrap_or_default();
            let capacity = amount.0.saturating_mul(1000);
            let key = format!("{window}${}", budget.currency);
            let app = spec.app_id.as_deref();
            let left = live::window_tokens(name, app, &key, capacity, sidecars);
            let spent = left.used.map(|nanos| Micros(nanos / 1000).to_string());
            let usage = format!(
                "{}/{amount} {}",
                spent.as_deref().unwrap_or("?"),
                budget.currency
            );
            BudgetStatus {
                period: period.to_owned(),
                currency: budget.currency.clone(),
                amount: amount.to_string(),
                spent,
                usage,
            }
        })
        .collect()
}

/// The status an `AIGateway` should have.
pub fn gateway_status(
    observed: &Observed<'_>,
    previous: Option<&AiGatewayStatus>,
) -> AiGatewayStatus {
    let previous_conditions = previous.map_or(&[][..], |s| &s.conditions[..]);
    AiGatewayStatus {
        conditions: conditions(Kind::Gateway, observed, previous_conditions),
        observed_generation: observed.generation,
        served: served_version(observed, previous.map(|p| &p.served)),
        identity: observed
            .serving
            .gateway
            .as_ref()
            .map(|g| g.identity.clone()),
        cors: observed.serving.gateway.as_ref().map(|g| on_off(g.cors)),
        audit: observed.serving.gateway.as_ref().map(|g| on_off(g.audit)),
    }
}

fn on_off(on: bool) -> String {
    (if on { "On" } else { "Off" }).to_owned()
}

/// Which generation is served and the last good one: this process's, else the one already
/// recorded (a merge patch never drops it).
fn served_version(observed: &Observed<'_>, recorded: Option<&ServedVersion>) -> ServedVersion {
    let (last_good_generation, last_good_spec) = match &observed.serving.last_good {
        Some((generation, spec)) => (*generation, Some(spec.clone())),
        None => recorded.map_or((None, None), |r| {
            (r.last_good_generation, r.last_good_spec.clone())
        }),
    };
    ServedVersion {
        served_generation: observed.serving.generation,
        last_good_generation,
        last_good_spec,
    }
}
