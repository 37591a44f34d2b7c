//! Circuit breakers: one per backend, tripped by any of its rules, and the parsing of the
//! delays backends ask for.
//!
//! Inputs: the backend's [`BreakerConfig`](spillway_crds::snapshot::BreakerConfig), the
//! outcome of every attempt ([`Outcome`]) and the monotonic time, always passed in (no clock
//! is read here). Outputs: whether an attempt may go ([`Admission`]), the
//! [`BreakerState`] for routing and metrics, and a [`Transition`] whenever an outcome changes
//! the state, for logs.
//!
//! States: `Closed` (everything passes, each rule keeps a sliding window) → `Open { until }`
//! (nothing passes) → `HalfOpen` once `until` has passed (one probe at a time; enough
//! consecutive successful probes close it, a failed probe opens it again).
//!
//! - [`Breaker`]: the state machine (`machine.rs`).
//! - [`Permit`]: the ticket an admitted attempt reports its outcome through; a probe permit
//!   dropped without a report frees the probe slot (`permit.rs`).
//! - [`retry_after()`]: `retry-after-ms`, `retry-after`, `x-ratelimit-reset-*` parsing.

mod machine;
mod permit;
mod retry_after;
mod rule;
mod window;

use std::time::{Duration, Instant, SystemTime};

pub use machine::Breaker;
pub use permit::{Admission, Permit};
pub use retry_after::{MAX_RETRY_AFTER, retry_after};
pub use rule::MIN_OPEN;

/// What happened to one attempt, as the breaker judges it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response the proxy considers good (any rule sees it as a success).
    Success,
    /// A response with this status; failures are decided by each rule's status ranges.
    Status {
        /// HTTP status code.
        code: u16,
        /// The delay the backend asked for, see [`retry_after()`].
        retry_after: Option<Duration>,
    },
    /// The connection could not be made or broke before response headers.
    ConnectionFailure,
    /// No response headers within the attempt timeout.
    Timeout,
    /// No request was sent: the backend's credential (an Entra ID token) is unavailable.
    /// Rules count it like a connection failure.
    CredentialUnavailable,
}

impl Outcome {
    /// A response outcome: the status and the delay its headers ask for (`wall_now` is the
    /// wall-clock time of arrival, for HTTP-date `retry-after` values).
    pub fn from_response(code: u16, headers: &http::HeaderMap, wall_now: SystemTime) -> Self {
        Self::Status {
            code,
            retry_after: retry_after(headers, wall_now),
        }
    }
}

/// The externally visible state of a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Traffic flows; rules count outcomes.
    Closed,
    /// No traffic until `until`.
    Open {
        /// When the breaker becomes half-open.
        until: Instant,
    },
    /// One probe at a time decides whether to close or open again.
    HalfOpen,
}

impl BreakerState {
    /// A stable lower-case name for metrics labels and logs: `closed`, `open`, `half_open`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

impl From<BreakerState> for spillway_crds::wire::BreakerState {
    fn from(state: BreakerState) -> Self {
        match state {
            BreakerState::Closed => Self::Closed,
            BreakerState::Open { .. } => Self::Open,
            BreakerState::HalfOpen => Self::HalfOpen,
        }
    }
}

impl Outcome {
    /// What this outcome is as the cause of a trip, for the operator's status; `None` for a
    /// success (which never trips a breaker).
    pub fn trip_cause(&self) -> Option<spillway_crds::wire::TripCause> {
        use spillway_crds::wire::TripCause;
        match *self {
            Self::Success => None,
            Self::Status { code, .. } => Some(TripCause::Status { code }),
            Self::ConnectionFailure => Some(TripCause::ConnectionFailure),
            Self::Timeout => Some(TripCause::Timeout),
            Self::CredentialUnavailable => Some(TripCause::CredentialUnavailable),
        }
    }
}

/// A state change caused by an outcome.
///
/// Reported for Closed → Open (a rule tripped), HalfOpen → Open (a probe failed) and
/// HalfOpen → Closed (enough probes succeeded). Open → HalfOpen happens silently when the
/// open time has passed, and extending an open breaker (a longer retry-after arriving from an
/// in-flight attempt) is not a transition; see [`Breaker::reopens_at`] for both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub from: BreakerState,
    /// State after.
    pub to: BreakerState,
    /// The rule that opened the breaker; `None` when it closed.
    pub rule: Option<String>,
}

#[cfg(test)]
mod tests;
