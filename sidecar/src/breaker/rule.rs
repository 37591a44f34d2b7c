//! How one rule judges an outcome: failure or not, tripped or not, and for how long it opens.
//!
//! Input: a [`BreakerRuleConfig`], an [`Outcome`] and window [`Totals`]. Output: booleans and
//! the open duration. Pure functions, no state.

use std::time::Duration;

use spillway_crds::snapshot::{BreakerRuleConfig, TripThreshold};

use super::Outcome;
use super::retry_after::MAX_RETRY_AFTER;
use super::window::Totals;

/// Shortest time a breaker stays open, even when a backend asks for a zero delay or a rule's
/// durations are zero: 1 ms.
pub const MIN_OPEN: Duration = Duration::from_millis(1);

/// Whether `rule` counts `outcome` as a failure.
pub(super) fn is_failure(rule: &BreakerRuleConfig, outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Success => false,
        Outcome::Status { code, .. } => rule.status_ranges.iter().any(|r| r.contains(*code)),
        Outcome::ConnectionFailure | Outcome::CredentialUnavailable => rule.on_connection_failure,
        Outcome::Timeout => rule.on_timeout,
    }
}

/// Whether the window totals reach the rule's threshold. `failed` is whether the outcome just
/// counted was a failure: a count rule trips only on a failure; a percentage rule may also
/// trip on the request that reaches its minimum. Zero settings act as 1.
pub(super) fn tripped(threshold: TripThreshold, totals: Totals, failed: bool) -> bool {
    match threshold {
        TripThreshold::Count(n) => failed && totals.failures >= u64::from(n.max(1)),
        TripThreshold::Percentage {
            percent,
            min_requests,
        } => {
            totals.failures > 0
                && totals.requests >= u64::from(min_requests.max(1))
                && totals.failures.saturating_mul(100)
                    >= u64::from(percent).saturating_mul(totals.requests)
        }
    }
}

/// How long `rule` opens the breaker for `outcome`.
///
/// With `accept_retry_after`, a failure that carries a retry-after opens for exactly that
/// delay (even when shorter than `trip_duration`), capped by `max_retry_after`; otherwise for
/// `trip_duration`. Always within [`MIN_OPEN`]..=[`MAX_RETRY_AFTER`].
pub(super) fn open_duration(rule: &BreakerRuleConfig, outcome: &Outcome, failed: bool) -> Duration {
    let asked = match outcome {
        Outcome::Status {
            retry_after: Some(delay),
            ..
        } if failed && rule.accept_retry_after => {
            Some((*delay).min(Duration::from_millis(rule.max_retry_after_ms)))
        }
        _ => None,
    };
    asked
        .unwrap_or(Duration::from_millis(rule.trip_duration_ms))
        .clamp(MIN_OPEN, MAX_RETRY_AFTER)
}

/// The delay `rule` would extend an open breaker by: only a failure carrying a retry-after,
/// under a rule that accepts it.
pub(super) fn extension(rule: &BreakerRuleConfig, outcome: &Outcome) -> Option<Duration> {
    let carries_delay = matches!(
        outcome,
        Outcome::Status {
            retry_after: Some(_),
            ..
        }
    );
    (carries_delay && rule.accept_retry_after && is_failure(rule, outcome))
        .then(|| open_duration(rule, outcome, true))
}
