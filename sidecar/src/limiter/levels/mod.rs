//! The limiter as telemetry's [`QuotaSource`]: tokens left per app, quota and window, for
//! `spillway.quota.remaining_tokens` and for the report to the operator (which sums the
//! sidecars' `minute` levels into `TokenQuota` `status.tokensUsed/tokensRemaining`).
//!
//! Input: the local counters and the applied plan, read when metrics are collected (a
//! `/metrics` scrape or an OTLP export), never on the request path; each shard is locked
//! briefly, one at a time. Output: one [`QuotaLevel`] per token window — `minute` for
//! `tokensPerMinute`, `hour`/`day`/`week`/`month` for calendar quotas — of
//!
//! - every app with local state (it sent a call a quota applies to, within its windows), for
//!   its own quotas and for the default quotas it uses; and
//! - every app named by a quota of its own (`appId`) that has no state: its windows are full.
//!
//! Apps that only fall under a default quota and have been idle long enough to be evicted are
//! not reported (their windows are full again).
//!
//! Levels are this sidecar's view: in `Local` mode this sidecar's share of each limit (the
//! operator divides a quota between the sidecars serving the app; summed over sidecars they
//! give the app's total). In `Redis` mode the shared counters live in Redis and are not read
//! here: the levels are the local store's — the `LocalShare` fallback's counters, which stay
//! full while Redis answers — so dashboards of a Redis-mode gateway should not read this
//! gauge as the shared remainder. The operator report marks them (`quotaCounters: redis`) and
//! the operator then leaves the `TokenQuota`'s token fields unset and says why: reading the
//! shared buckets would need a Redis round trip per quota and app on every report, and Redis'
//! own counters are already the authoritative place to look.

use std::collections::HashSet;

use super::Limiter;
use super::plan::Scale;
use crate::calendar::QuotaPeriod;
use crate::telemetry::{QuotaLevel, QuotaSource};

/// The `spillway.quota.window` value of a window: `None` is the per-minute bucket.
fn window_label(period: Option<QuotaPeriod>) -> &'static str {
    match period {
        None => "minute",
        Some(QuotaPeriod::Hourly) => "hour",
        Some(QuotaPeriod::Daily) => "day",
        Some(QuotaPeriod::Weekly) => "week",
        Some(QuotaPeriod::Monthly) => "month",
    }
}

impl QuotaSource for Limiter {
    /// See the module docs; in Redis mode this is the local view, not Redis' counters.
    fn quota_levels(&self, out: &mut Vec<QuotaLevel>) {
        let plan = self.core.plan.load();
        if plan.is_empty() {
            return;
        }
        let now = self.now();
        let mut seen: HashSet<(String, u32)> = HashSet::new();
        self.core.local.visit_levels(now, &plan, |level| {
            if level.quota.app_id() == Some(level.app) {
                seen.insert((level.app.to_owned(), level.quota.key));
            }
            out.push(QuotaLevel {
                app_id: level.app.to_owned(),
                quota: level.quota.name.to_string(),
                window: window_label(level.period),
                remaining_tokens: level.remaining,
                currency: level.currency.map(str::to_owned),
            });
        });
        for quota in plan.quotas() {
            let Some(app) = quota.app_id() else { continue };
            if seen.contains(&(app.to_owned(), quota.key)) {
                continue;
            }
            let minute = quota
                .tokens(Scale::Share)
                .map(|limit| (None, limit.capacity()));
            let calendar = quota
                .calendar(Scale::Share)
                .map(|(period, capacity)| (Some(period), capacity));
            for (period, capacity) in minute.into_iter().chain(calendar) {
                out.push(QuotaLevel {
                    app_id: app.to_owned(),
                    quota: quota.name.to_string(),
                    window: window_label(period),
                    remaining_tokens: capacity,
                    currency: None,
                });
            }
            for (budget, capacity) in quota.budgets(Scale::Share) {
                out.push(QuotaLevel {
                    app_id: app.to_owned(),
                    quota: quota.name.to_string(),
                    window: window_label(Some(budget.period)),
                    remaining_tokens: capacity,
                    currency: Some(budget.currency.clone()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
