//! Compiling a `TokenQuota`.

use std::collections::BTreeSet;

use super::Object;
use super::validate::Checker;
use crate::snapshot::{CalendarQuotaConfig, QuotaConfig};
use crate::v1alpha1::TokenQuotaSpec;

pub(super) fn compile_quota(object: &Object<TokenQuotaSpec>, check: &mut Checker) -> QuotaConfig {
    let spec = &object.spec;
    if let Some(app) = &spec.app_id {
        check.name_like("spec.appId", app);
    }
    if spec.tokens_per_minute.is_none()
        && spec.requests_per_minute.is_none()
        && spec.quotas.is_empty()
    {
        check.invalid(
            "spec",
            "set at least one limit: tokensPerMinute, requestsPerMinute or quotas",
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
    }
}
