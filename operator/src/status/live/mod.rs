//! Live state reported by the sidecars, aggregated for status (pure, no cluster).
//!
//! Input: one [`LiveSidecar`] per live sidecar of a scope — this replica's own, from their
//! reports, and those other replicas publish in their presence Leases. Output: per pool the
//! breaker state of each backend ([`pool_breakers`]) and the Events worth emitting when a
//! backend trips or closes again ([`breaker_transitions`]); per `TokenQuota` the tokens used
//! and left in the current minute ([`quota_tokens`]).
//!
//! Quota rules (`Local` rate limiting, where each sidecar enforces its share of a limit):
//! - a quota with an `appId`: remaining = Σ of the sidecars' remaining shares for the app's
//!   `minute` window, capped at `tokensPerMinute`; used = limit − remaining;
//! - a default quota (no `appId`) gives every app its own budget of that size: used = Σ over
//!   the apps that used it of (limit − the app's remaining), remaining = the lowest app's
//!   remaining (the app closest to its limit); with no app in a window, 0 used and the whole
//!   limit left. A sidecar that an app has not called within the window reports nothing for
//!   it; its share (limit / live sidecars) counts as full;
//! - in `Redis` mode the reported levels are only the local fallback's, so nothing is shown and
//!   the note says where the real counters are.
//!
//! Sidecars whose report lacks a level (older sidecars, or a replica that had to drop levels to
//! keep its Lease small) are left out of the sums, and the note says how many were counted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spillway_crds::v1alpha1::BackendBreakerStatus;

use super::Transition;
use crate::wire::{BreakerState, QuotaCounters, SidecarReport};

/// The breaker state of one backend on one sidecar, in its compact form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Breaker {
    /// `closed`.
    #[serde(rename = "c")]
    Closed,
    /// `open`.
    #[serde(rename = "o")]
    Open,
    /// `half-open`.
    #[serde(rename = "h")]
    HalfOpen,
}

impl Breaker {
    /// The compact form of a reported state; `None` for a state this version does not know.
    pub fn from_wire(state: BreakerState) -> Option<Self> {
        match state {
            BreakerState::Closed => Some(Self::Closed),
            BreakerState::Open => Some(Self::Open),
            BreakerState::HalfOpen => Some(Self::HalfOpen),
            BreakerState::Unknown => None,
        }
    }
}

/// The last trip of one backend's breaker on one sidecar, in wall-clock time.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trip {
    /// What opened it (`HTTP 429`, `timeout`, …).
    #[serde(rename = "c")]
    pub cause: String,
    /// When, in whole seconds since the Unix epoch.
    #[serde(rename = "t")]
    pub at: i64,
    /// While open: when it lets a probe through, in whole seconds since the Unix epoch.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub reopens: Option<i64>,
}

/// What status needs from one live sidecar; also the unit of a presence Lease, hence the
/// short field names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveSidecar {
    /// Sidecar id.
    #[serde(rename = "id")]
    pub id: String,
    /// Applied snapshot version.
    #[serde(rename = "v", default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Breaker state per `pool/backend`.
    #[serde(rename = "b", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breakers: BTreeMap<String, Breaker>,
    /// The last trip per `pool/backend`, for backends whose breaker ever opened.
    #[serde(rename = "e", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub trips: BTreeMap<String, Trip>,
    /// Tokens left in the `minute` window, per quota name, per app.
    #[serde(rename = "q", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub minute_left: BTreeMap<String, BTreeMap<String, u64>>,
    /// Tokens left in the calendar windows (`hour`, `day`, `week`, `month`), per quota name,
    /// per window, per app.
    #[serde(rename = "c", default, skip_serializing_if = "BTreeMap::is_empty")]
    pub calendar_left: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>>,
    /// Whether the sidecar limits in `Redis` mode (its levels are not the app's).
    #[serde(rename = "r", default, skip_serializing_if = "std::ops::Not::not")]
    pub redis: bool,
}

impl LiveSidecar {
    /// The summary of `report`, received at `now` (seconds since the Unix epoch).
    pub fn from_report(report: &SidecarReport, now: i64) -> Self {
        let breakers = report
            .breakers
            .iter()
            .filter_map(|(key, state)| Some((key.clone(), Breaker::from_wire(*state)?)))
            .collect();
        let seconds = |ms: u64| i64::try_from(ms / 1000).unwrap_or(i64::MAX);
        let trips = report
            .breaker_details
            .iter()
            .filter_map(|(key, detail)| {
                let trip = Trip {
                    cause: detail.last_trip?.to_string(),
                    at: now.saturating_sub(seconds(detail.last_trip_ago_ms?)),
                    reopens: detail
                        .reopens_in_ms
                        .map(|ms| now.saturating_add(seconds(ms) + 1)),
                };
                Some((key.clone(), trip))
            })
            .collect();
        let mut minute_left: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
        let mut calendar_left: BTreeMap<String, BTreeMap<String, BTreeMap<String, u64>>> =
            BTreeMap::new();
        for level in &report.quotas {
            let apps = if level.window == MINUTE {
                minute_left.entry(level.quota.clone()).or_default()
            } else {
                let windows = calendar_left.entry(level.quota.clone()).or_default();
                windows.entry(level.window.clone()).or_default()
            };
            apps.insert(level.app_id.clone(), level.remaining_tokens);
        }
        Self {
            id: report.sidecar.clone(),
            version: report.version,
            breakers,
            trips,
            minute_left,
            calendar_left,
            redis: report.quota_counters == QuotaCounters::Redis,
        }
    }
}

/// Per backend of `pool` (names in spec order), how many sidecars see its breaker in each
/// state, and how many backends are open or half-open on at least one sidecar (`None` while
/// no sidecar is live).
pub fn pool_breakers(
    pool: &str,
    backends: &[&str],
    sidecars: &[LiveSidecar],
) -> (Vec<BackendBreakerStatus>, Option<u32>) {
    if sidecars.is_empty() {
        return (Vec::new(), None);
    }
    let mut states = Vec::with_capacity(backends.len());
    for backend in backends {
        let key = format!("{pool}/{backend}");
        let mut state = BackendBreakerStatus {
            name: (*backend).to_owned(),
            ..BackendBreakerStatus::default()
        };
        for seen in sidecars.iter().filter_map(|s| s.breakers.get(&key)) {
            let count = match seen {
                Breaker::Closed => &mut state.closed,
                Breaker::Open => &mut state.open,
                Breaker::HalfOpen => &mut state.half_open,
            };
            *count = count.saturating_add(1);
        }
        let trips: Vec<&Trip> = sidecars.iter().filter_map(|s| s.trips.get(&key)).collect();
        if let Some(last) = trips.iter().max_by_key(|t| t.at) {
            state.last_error = Some(last.cause.clone());
            state.last_error_time = Some(rfc3339(last.at));
        }
        state.reopens_at = trips.iter().filter_map(|t| t.reopens).max().map(rfc3339);
        states.push(state);
    }
    let open = states.iter().filter(|s| tripped(s)).count();
    (states, Some(u32::try_from(open).unwrap_or(u32::MAX)))
}

/// Seconds since the Unix epoch as RFC 3339.
fn rfc3339(seconds: i64) -> String {
    k8s_openapi::jiff::Timestamp::from_second(seconds)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn tripped(state: &BackendBreakerStatus) -> bool {
    state.open > 0 || state.half_open > 0
}

/// Events for backends that tripped (open or half-open on some sidecar, from closed
/// everywhere: `Warning BreakerOpen`) or closed again everywhere (`Normal BreakerClosed`).
/// Backends without any reporting sidecar now are not events.
pub fn breaker_transitions(
    previous: &[BackendBreakerStatus],
    next: &[BackendBreakerStatus],
) -> Vec<Transition> {
    let mut out = Vec::new();
    for after in next {
        let before = previous.iter().find(|b| b.name == after.name);
        let was = before.is_some_and(tripped);
        let seen = after.closed + after.open + after.half_open;
        if tripped(after) && !was {
            out.push(Transition {
                normal: false,
                reason: "BreakerOpen".into(),
                note: format!(
                    "backend {}: circuit breaker open on {} and half-open on {} of {seen} \
                     sidecars; traffic goes to the other backends",
                    after.name, after.open, after.half_open
                ),
                subject: Some(backend_path(&after.name)),
            });
        } else if was && !tripped(after) && seen > 0 {
            out.push(Transition {
                normal: true,
                reason: "BreakerClosed".into(),
                note: format!(
                    "backend {}: circuit breaker closed again on all {seen} sidecars",
                    after.name
                ),
                subject: Some(backend_path(&after.name)),
            });
        }
    }
    out
}

/// The `fieldPath` of one backend of a pool.
fn backend_path(name: &str) -> String {
    format!("spec.backends{{{name}}}")
}

/// Tokens used and left in the current minute of one `TokenQuota`, and where they come from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuotaTokens {
    /// `status.tokensUsed`.
    pub used: Option<u64>,
    /// `status.tokensRemaining`.
    pub remaining: Option<u64>,
    /// `status.tokensNote`.
    pub note: String,
}

impl QuotaTokens {
    fn unknown(note: impl Into<String>) -> Self {
        Self {
            used: None,
            remaining: None,
            note: note.into(),
        }
    }
}

/// The window name of per-minute levels in reports.
const MINUTE: &str = "minute";

/// [`window_tokens`] of the `minute` window, for a quota with `tokens_per_minute`.
pub fn quota_tokens(
    name: &str,
    app_id: Option<&str>,
    tokens_per_minute: Option<u64>,
    sidecars: &[LiveSidecar],
) -> QuotaTokens {
    let Some(limit) = tokens_per_minute else {
        return QuotaTokens::unknown("no tokensPerMinute: only per-minute tokens are shown");
    };
    window_tokens(name, app_id, MINUTE, limit, sidecars)
}

/// The tokens of quota `name` (for `app_id`, or a default quota when `None`) used and left in
/// its `window` (`minute`, `hour`, `day`, `week` or `month`) of `limit` tokens, from the live
/// `sidecars`; see the module docs for the rules.
pub fn window_tokens(
    name: &str,
    app_id: Option<&str>,
    window: &str,
    limit: u64,
    sidecars: &[LiveSidecar],
) -> QuotaTokens {
    if sidecars.is_empty() {
        return QuotaTokens::unknown("no live sidecar serves this namespace");
    }
    if sidecars.iter().any(|s| s.redis) {
        return QuotaTokens::unknown(
            "rateLimiting.mode is Redis: the exact shared counters live in Redis, not in the \
             sidecars' reports",
        );
    }
    let reporting: Vec<&BTreeMap<String, u64>> = sidecars
        .iter()
        .filter_map(|s| {
            if window == MINUTE {
                s.minute_left.get(name)
            } else {
                s.calendar_left.get(name)?.get(window)
            }
        })
        .collect();
    match app_id {
        Some(app) => app_tokens(app, limit, &reporting, sidecars.len()),
        None => default_tokens(limit, &reporting, sidecars.len()),
    }
}

/// A quota of one app: the sum of the sidecars' shares.
fn app_tokens(
    app: &str,
    limit: u64,
    reporting: &[&BTreeMap<String, u64>],
    live: usize,
) -> QuotaTokens {
    let shares: Vec<u64> = reporting
        .iter()
        .filter_map(|apps| apps.get(app).copied())
        .collect();
    if shares.is_empty() {
        return QuotaTokens::unknown(format!(
            "no sidecar has reported this quota yet ({live} live)"
        ));
    }
    let remaining = shares
        .iter()
        .fold(0u64, |a, b| a.saturating_add(*b))
        .min(limit);
    QuotaTokens {
        used: Some(limit - remaining),
        remaining: Some(remaining),
        note: format!(
            "sum of the shares of {} of {live} live sidecars",
            shares.len()
        ),
    }
}

/// A default quota: every app has its own budget; used summed, remaining of the lowest app.
fn default_tokens(limit: u64, reporting: &[&BTreeMap<String, u64>], live: usize) -> QuotaTokens {
    // A sidecar keeps no state for an app that has not called it within the window, so it
    // does not report that app: its share there is full.
    let sidecars = u64::try_from(live).unwrap_or(u64::MAX);
    let full_share = limit / sidecars.max(1);
    let mut per_app: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for apps in reporting {
        for (app, left) in *apps {
            let (sum, seen) = per_app.entry(app.as_str()).or_insert((0, 0));
            *sum = sum.saturating_add(*left);
            *seen += 1;
        }
    }
    let left: Vec<u64> = per_app
        .into_values()
        .map(|(sum, seen)| {
            let missing = sidecars.saturating_sub(seen).saturating_mul(full_share);
            sum.saturating_add(missing).min(limit)
        })
        .collect();
    let used = left.iter().fold(0u64, |a, l| a.saturating_add(limit - l));
    QuotaTokens {
        used: Some(used),
        remaining: Some(left.iter().copied().min().unwrap_or(limit)),
        note: format!(
            "default quota: used summed over {} apps, remaining of the app closest to its \
             limit; from {} of {live} live sidecars",
            left.len(),
            reporting.len()
        ),
    }
}

#[cfg(test)]
mod tests;
