//! The quotas of one snapshot, ready for the hot path.
//!
//! Input: the snapshot's [`QuotaConfig`]s and the quota keys of the previous plan. Output: a
//! [`Plan`] that finds the quotas applying to a call in O(quotas of the app): the app's own
//! quotas that cover the pool and model, or — when none does — the default quotas
//! (`app_id: None`) that cover it, each app getting its own budget of that size.
//!
//! Every quota gets a small numeric key that stays the same across plans while its id
//! (`namespace/name`) stays; counters are stored under that key, so a reload keeps the usage
//! of every quota that is still there (limits may change; the new ones apply to the usage so
//! far), and a quota that was removed and added again starts fresh.

use std::collections::HashMap;
use std::sync::Arc;

use spillway_crds::billing::{Micros, SpendCeiling, TokenType, TokenWeights};
use spillway_crds::snapshot::{BudgetConfig, CalendarQuotaConfig, QuotaConfig, QuotaPeriod};

use super::bucket::BucketLimit;

/// A compiled quota.
#[derive(Debug)]
pub(super) struct Quota {
    /// Stable across plans while the id stays.
    pub key: u32,
    /// `namespace/name`.
    pub id: Arc<str>,
    /// `metadata.name`, named in refusals.
    pub name: Arc<str>,
    config: QuotaConfig,
}

/// Which size of the limits applies: the whole limit (Redis) or this sidecar's share
/// (Local mode, and Redis mode's `LocalShare` fallback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scale {
    Whole,
    Share,
}

impl Quota {
    fn scaled(&self, limit: u64, scale: Scale) -> u64 {
        match scale {
            Scale::Whole => limit.max(1),
            Scale::Share => {
                let share = self.config.share;
                let share = if share.is_finite() && share > 0.0 {
                    share.min(1.0)
                } else {
                    1.0
                };
                // Saturating float → int; the epsilon keeps 12 000 × (1/3) at 4 000; at least
                // 1 so a tiny share still admits something.
                ((limit as f64 * share + 1e-6).floor() as u64).max(1)
            }
        }
    }

    /// Tokens-per-minute bucket limit.
    pub fn tokens(&self, scale: Scale) -> Option<BucketLimit> {
        self.config
            .tokens_per_minute
            .map(|l| BucketLimit::per_minute(self.scaled(l, scale)))
    }

    /// Requests-per-minute bucket limit.
    pub fn requests(&self, scale: Scale) -> Option<BucketLimit> {
        self.config
            .requests_per_minute
            .map(|l| BucketLimit::per_minute(self.scaled(l, scale)))
    }

    /// Calendar quotas with their capacity at `scale`.
    pub fn calendar(&self, scale: Scale) -> impl Iterator<Item = (QuotaPeriod, u64)> + '_ {
        self.config
            .calendar
            .iter()
            .map(move |c: &CalendarQuotaConfig| (c.period, self.scaled(c.tokens, scale)))
    }

    /// The app the quota is for; `None` for a default quota.
    pub fn app_id(&self) -> Option<&str> {
        self.config.app_id.as_deref()
    }

    /// Tokens reserved for a request: the prompt estimate plus its completion limit, or the
    /// quota's default when it sets none — each at the highest weight an input or output
    /// token type has in this quota (1 unless `tokenWeights` says otherwise), rounded up.
    pub fn reservation(&self, prompt: u64, max_completion: Option<u64>) -> u64 {
        let completion = self.completion_limit(max_completion);
        let weights = &self.config.token_weights;
        if weights.is_default() {
            return prompt.saturating_add(completion);
        }
        let highest = |input: bool| {
            TokenType::ALL
                .into_iter()
                .filter(|t| t.is_input() == input)
                .map(|t| weights.weight(t))
                .max()
                .unwrap_or(Micros::ONE)
        };
        let millionths = u128::from(prompt) * u128::from(highest(true))
            + u128::from(completion) * u128::from(highest(false));
        u64::try_from(millionths.div_ceil(u128::from(Micros::ONE))).unwrap_or(u64::MAX)
    }

    /// The completion tokens a call may produce: its own limit, else the quota's default.
    fn completion_limit(&self, max_completion: Option<u64>) -> u64 {
        max_completion.unwrap_or(self.config.default_max_tokens)
    }

    /// How much each token type counts here.
    pub fn weights(&self) -> &TokenWeights {
        &self.config.token_weights
    }

    /// What a call's real tokens count here: each type times its weight, rounded up.
    pub fn weighted(&self, tokens: &[(TokenType, u64)]) -> u64 {
        self.config.token_weights.apply(tokens.iter().copied())
    }

    /// The money budgets, with their capacity in nanos (billionths of the currency) at
    /// `scale`.
    pub fn budgets(&self, scale: Scale) -> impl Iterator<Item = (&BudgetConfig, u64)> + '_ {
        self.config.budgets.iter().map(move |b| {
            let nanos = b.amount.0.saturating_mul(1000);
            (b, self.scaled(nanos, scale))
        })
    }

    /// Nanos each budget reserves for a call: its prompt estimate and completion limit at the
    /// highest rates in the budget's currency among `ceilings` (the backends it may be routed
    /// to); 0 when none of them is priced in that currency.
    pub fn budget_reservations(
        &self,
        prompt: u64,
        max_completion: Option<u64>,
        ceilings: &[SpendCeiling],
    ) -> Vec<u64> {
        let completion = self.completion_limit(max_completion);
        self.config
            .budgets
            .iter()
            .map(|budget| {
                ceilings
                    .iter()
                    .find(|c| c.currency == budget.currency)
                    .map_or(0, |c| c.nanos(prompt, completion))
            })
            .collect()
    }
}

/// Index of a calendar period in per-quota counter arrays.
pub(super) fn period_index(period: QuotaPeriod) -> usize {
    match period {
        QuotaPeriod::Hourly => 0,
        QuotaPeriod::Daily => 1,
        QuotaPeriod::Weekly => 2,
        QuotaPeriod::Monthly => 3,
    }
}

/// Every quota of one snapshot.
#[derive(Debug, Default)]
pub(super) struct Plan {
    quotas: Vec<Quota>,
    /// appId → indices of its own quotas.
    by_app: HashMap<String, Vec<usize>>,
    /// Indices of the default quotas.
    defaults: Vec<usize>,
    /// Next key to hand out.
    next_key: u32,
}

impl Plan {
    /// Builds the plan of `configs`, keeping the keys of `previous` for unchanged ids.
    pub fn build(configs: &[QuotaConfig], previous: &Plan) -> Plan {
        let old: HashMap<&str, u32> = previous.quotas.iter().map(|q| (&*q.id, q.key)).collect();
        let mut next_key = previous.next_key;
        let mut plan = Plan::default();
        for (index, config) in configs.iter().enumerate() {
            let key = match old.get(config.id.as_str()) {
                // A duplicated id never shares counters with another quota.
                Some(&key) if plan.quotas.iter().all(|q| q.key != key) => key,
                _ => {
                    next_key = next_key.wrapping_add(1);
                    next_key
                }
            };
            match &config.app_id {
                Some(app) => plan.by_app.entry(app.clone()).or_default().push(index),
                None => plan.defaults.push(index),
            }
            plan.quotas.push(Quota {
                key,
                id: Arc::from(config.id.as_str()),
                name: Arc::from(config.name.as_str()),
                config: config.clone(),
            });
        }
        plan.next_key = next_key;
        plan
    }

    /// The quotas applying to a call from `app` to `pool` for `model`.
    pub fn applicable(&self, app: &str, pool: &str, model: &str) -> Vec<&Quota> {
        let pick = |indices: &[usize]| -> Vec<&Quota> {
            indices
                .iter()
                .filter_map(|&i| self.quotas.get(i))
                .filter(|q| q.config.covers(pool, model))
                .collect()
        };
        let own = self.by_app.get(app).map(|v| pick(v)).unwrap_or_default();
        if own.is_empty() {
            pick(&self.defaults)
        } else {
            own
        }
    }

    /// Every quota, in snapshot order.
    pub fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// The quota with `key`.
    pub fn by_key(&self, key: u32) -> Option<&Quota> {
        self.quotas.iter().find(|q| q.key == key)
    }

    /// Whether the plan has no quota at all.
    pub fn is_empty(&self) -> bool {
        self.quotas.is_empty()
    }
}
