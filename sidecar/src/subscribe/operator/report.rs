//! The sidecar's report to the operator: applied version, breaker state (and last trip) per
//! backend, tokens per app, and tokens left per quota window.
//!
//! Input: the gateway and its usage totals. Output: a [`SidecarReport`], sent by
//! [`super::OperatorClient::report`] every report interval.

use super::wire::{AppUsage, BreakerDetail, QuotaCounters, QuotaLevelReport, SidecarReport};
use crate::breaker::Breaker;
use crate::proxy::Gateway;
use crate::telemetry::{QuotaLevel, QuotaSource as _};
use crate::usage::totals::UsageTotals;

/// Most quota levels in one report (a default quota has one per app); the rest are left out
/// so a report stays far below the operator's 1 MiB limit.
pub const MAX_REPORTED_LEVELS: usize = 2000;

/// What last opened `breaker` and when it lets a probe through, at `now`; `None` if it never
/// opened.
fn breaker_detail(breaker: &Breaker, now: std::time::Instant) -> Option<BreakerDetail> {
    let (outcome, at) = breaker.last_trip()?;
    let millis = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Some(BreakerDetail {
        last_trip: outcome.trip_cause(),
        last_trip_ago_ms: Some(millis(now.saturating_duration_since(at))),
        reopens_in_ms: breaker
            .reopens_at(now)
            .map(|until| millis(until.saturating_duration_since(now))),
    })
}

/// The report of `gateway`'s current state.
pub fn build_report(
    sidecar: &str,
    pod_uid: Option<String>,
    gateway: &Gateway,
    totals: &UsageTotals,
) -> SidecarReport {
    let mut report = SidecarReport {
        sidecar: sidecar.to_owned(),
        pod_uid,
        ..SidecarReport::default()
    };
    if let Some(applied) = gateway.applied().as_ref() {
        report.version = Some(applied.snapshot.version);
        let now = std::time::Instant::now();
        for pool in applied.routes.pools() {
            for (backend, runtime) in pool.backends() {
                let key = format!("{}/{}", pool.config().name, backend.name);
                let breaker = runtime.breaker();
                if let Some(detail) = breaker_detail(breaker, now) {
                    report.breaker_details.insert(key.clone(), detail);
                }
                report.breakers.insert(key, breaker.state(now).into());
            }
        }
    }
    for row in totals.view().rows {
        let usage: &mut AppUsage = report.usage.entry(row.app_id).or_default();
        usage.requests += row.totals.requests;
        usage.prompt_tokens += row.totals.prompt_tokens;
        usage.completion_tokens += row.totals.completion_tokens;
    }
    let limiter = gateway.limiter();
    let mut levels: Vec<QuotaLevel> = Vec::new();
    limiter.quota_levels(&mut levels);
    if levels.len() > MAX_REPORTED_LEVELS {
        tracing::debug!(
            levels = levels.len(),
            "more quota levels than a report carries; the rest are left out"
        );
    }
    report.quotas = levels
        .into_iter()
        .take(MAX_REPORTED_LEVELS)
        .map(|level| QuotaLevelReport {
            quota: level.quota,
            app_id: level.app_id,
            window: match &level.currency {
                Some(currency) => format!("{}${currency}", level.window),
                None => level.window.to_owned(),
            },
            remaining_tokens: level.remaining_tokens,
        })
        .collect();
    report.quota_counters = if limiter.redis_available().is_some() {
        QuotaCounters::Redis
    } else {
        QuotaCounters::Share
    };
    report
}
