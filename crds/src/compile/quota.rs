//! Compiling a `TokenQuota`: its limits, what they cover and how much each token type counts.

use std::collections::BTreeSet;

use super::Object;
use super::validate::Checker;
use crate::billing::{Micros, TokenWeights};
use crate::snapshot::{BudgetConfig, CalendarQuotaConfig, QuotaConfig};
use crate::v1alpha1::{Budget, TokenQuotaSpec, TokenWeightsSpec};

pub(super) fn compile_quota(object: &Object<TokenQuotaSpec>, check: &mut Checker) -> QuotaConfig {
    let spec = &object.spec;
    if let Some(app) = &spec.app_id {
        check.name_like("spec.appId", app);
    }
    if spec.tokens_per_minute.is_none()
        && spec.requests_per_minute.is_none()
        && spec.quotas.is_empty()
        && spec.budgets.is_empty()
    {
        check.invalid(
            "spec",
            "set at least one limit: tokensPerMinute, requestsPerMinute, quotas or budgets",
        );
    }
    for (field, value) in [
        ("spec.tokensPerMinute", spec.tokens_per_minute),
        ("spec.requestsPerMinute", spec.requests_per_minute),
        ("spec.defaultMaxTokens", spec.default_max_tokens),
    ] {
        if value == Some(0) {
            check.invalid(field, "must be at least 1; remove the field for no limit");
        }
    }
    super::validate::check_allowed_namespaces(spec.namespaces.as_ref(), "spec.namespaces", check);
    let mut periods = BTreeSet::new();
    for (i, quota) in spec.quotas.iter().enumerate() {
        if quota.tokens == 0 {
            check.invalid(format!("spec.quotas[{i}].tokens"), "must be at least 1");
        }
        if !periods.insert(quota.period) {
            check.invalid(
                format!("spec.quotas[{i}].period"),
                format!(
                    "{:?} is listed twice; keep one quota per period",
                    quota.period
                ),
            );
        }
    }
    QuotaConfig {
        id: object.id(),
        name: object.name.clone(),
        app_id: spec.app_id.clone(),
        pools: spec.pools.clone(),
        models: spec.models.clone(),
        tokens_per_minute: spec.tokens_per_minute,
        requests_per_minute: spec.requests_per_minute,
        calendar: spec
            .quotas
            .iter()
            .map(|q| CalendarQuotaConfig {
                period: q.period,
                tokens: q.tokens,
            })
            .collect(),
        default_max_tokens: spec.default_max_tokens.unwrap_or(1000),
        share: 1.0,
        token_weights: compile_weights(spec.token_weights.as_ref(), check),
        budgets: compile_budgets(&spec.budgets, check),
    }
}

/// `spec.budgets`: amounts parsed, currencies checked, one budget per period and currency.
fn compile_budgets(budgets: &[Budget], check: &mut Checker) -> Vec<BudgetConfig> {
    let mut seen = BTreeSet::new();
    budgets
        .iter()
        .enumerate()
        .map(|(i, budget)| {
            let amount = check.amount(&format!("spec.budgets[{i}].amount"), &budget.amount);
            check.currency(&format!("spec.budgets[{i}].currency"), &budget.currency);
            if amount.0 == 0 && budget.amount.parse::<Micros>().is_ok() {
                check.invalid(
                    format!("spec.budgets[{i}].amount"),
                    "must be more than 0; remove the budget for no limit",
                );
            }
            if !seen.insert((budget.period, budget.currency.as_str())) {
                check.invalid(
                    format!("spec.budgets[{i}].period"),
                    format!(
                        "a {:?} budget in {} is listed twice; keep one per period and currency",
                        budget.period, budget.currency
                    ),
                );
            }
            BudgetConfig {
                period: budget.period,
                amount,
                currency: budget.currency.clone(),
            }
        })
        .collect()
}

/// The most a token type may count toward a quota: a weight says how much one token counts.
const MAX_WEIGHT: u64 = 1000;

/// `spec.tokenWeights`: the types written, each weight parsed and at most [`MAX_WEIGHT`].
fn compile_weights(spec: Option<&TokenWeightsSpec>, check: &mut Checker) -> TokenWeights {
    let mut weights = TokenWeights::default();
    let Some(spec) = spec else {
        return weights;
    };
    for (kind, name, text) in spec.by_type() {
        let Some(text) = text else { continue };
        let field = format!("spec.tokenWeights.{name}");
        let weight = check.amount(&field, text);
        if weight.0 > MAX_WEIGHT * Micros::ONE {
            check.invalid(
                field,
                format!(
                    "{weight} is more than {MAX_WEIGHT}; a weight is how much one token of this type \
                     counts (1: fully, 0.1: a tenth, 0: not at all)"
                ),
            );
        }
        weights.0.insert(kind, weight);
    }
    weights
}
