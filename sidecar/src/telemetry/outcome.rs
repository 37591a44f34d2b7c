//! How a request and each of its upstream attempts ended, as low-cardinality labels.
//!
//! Input: a [`UsageRecord`] (status, gateway error code, attempt trail) and whether the
//! backend that served it sits in a later priority group than the pool's first one.
//! Output: a [`RequestOutcome`] for `spillway.requests` and an [`AttemptResult`] per attempt
//! for `spillway.upstream.attempts`. Pure functions; the table is in `docs/observability.md`.

use crate::usage::record::UpstreamAttempt;
use crate::usage::{ErrorType, GatewayErrorKind, UsageRecord};

/// How a client request ended (`spillway.outcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RequestOutcome {
    /// Served by the first backend tried, in the pool's first priority group.
    Served,
    /// Served after more than one attempt, within the first priority group.
    Retried,
    /// Served by a backend of a later priority group (pay-as-you-go behind PTU).
    SpilledOver,
    /// Refused with 401: no valid identity.
    Unauthenticated,
    /// Refused with 403 (other than a quota).
    Forbidden,
    /// Refused by the gateway with 429 by a rate limit (tokens or requests per minute).
    RateLimited,
    /// Refused by the gateway because a quota is used up (its error code contains `quota`).
    QuotaExhausted,
    /// Every breaker of the pool was open (503 `no_backend_available`).
    NoBackend,
    /// The backend failed: its 429/5xx (or other non-client) error passed back after the
    /// last attempt, unreachable, timed out, or broke off the response.
    BackendError,
    /// The client's request was at fault: unknown model/route, bad body, too large, or a
    /// backend 400/413/415/422.
    ClientError,
    /// The gateway could not serve (no configuration yet, internal error).
    GatewayError,
}

impl RequestOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Served => "served",
            Self::Retried => "retried",
            Self::SpilledOver => "spilled_over",
            Self::Unauthenticated => "unauthenticated",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::QuotaExhausted => "quota_exhausted",
            Self::NoBackend => "no_backend",
            Self::BackendError => "backend_error",
            Self::ClientError => "client_error",
            Self::GatewayError => "gateway_error",
        }
    }

    /// Classifies `record`; `spilled` says whether the serving backend's priority is later
    /// than the pool's first group.
    pub fn of(record: &UsageRecord, spilled: bool) -> Self {
        let status = record.status;
        let from_backend = record
            .upstream
            .last()
            .is_some_and(|a| a.status == Some(status));
        if (200..300).contains(&status) {
            return if record.error_type.is_some() {
                Self::BackendError
            } else if spilled {
                Self::SpilledOver
            } else if record.upstream.len() > 1 {
                Self::Retried
            } else {
                Self::Served
            };
        }
        if from_backend {
            return match status {
                400 | 413 | 415 | 422 => Self::ClientError,
                _ => Self::BackendError,
            };
        }
        match record.error_type {
            Some(ErrorType::Gateway(error)) => match error.kind {
                GatewayErrorKind::Unauthenticated => Self::Unauthenticated,
                GatewayErrorKind::Forbidden => Self::Forbidden,
                GatewayErrorKind::RateLimited => Self::RateLimited,
                GatewayErrorKind::QuotaExhausted => Self::QuotaExhausted,
                GatewayErrorKind::NoBackend => Self::NoBackend,
                GatewayErrorKind::Backend => Self::BackendError,
                GatewayErrorKind::Client => Self::ClientError,
                GatewayErrorKind::Internal => Self::GatewayError,
            },
            // A backend's answer replaced or cut off by the gateway.
            _ => match status {
                502 | 504 => Self::BackendError,
                400..=499 => Self::ClientError,
                _ => Self::GatewayError,
            },
        }
    }
}

/// How one upstream attempt ended (`spillway.attempt.result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttemptResult {
    /// A 2xx/3xx response.
    Success,
    /// 429 from the backend.
    RateLimited,
    /// 5xx from the backend.
    ServerError,
    /// Another 4xx from the backend.
    ClientError,
    /// No connection or it broke before response headers.
    ConnectionFailure,
    /// No response headers within the attempt timeout.
    Timeout,
    /// The backend's credential (Entra ID token) was unavailable; nothing was sent.
    CredentialUnavailable,
}

impl AttemptResult {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::ClientError => "client_error",
            Self::ConnectionFailure => "connection_failure",
            Self::Timeout => "timeout",
            Self::CredentialUnavailable => "credential_unavailable",
        }
    }

    /// Classifies one attempt of the trail.
    pub fn of(attempt: &UpstreamAttempt) -> Self {
        match (attempt.status, attempt.failure) {
            (Some(429), _) => Self::RateLimited,
            (Some(500..), _) => Self::ServerError,
            (Some(400..), _) => Self::ClientError,
            (Some(_), _) => Self::Success,
            (None, Some("timeout")) => Self::Timeout,
            (None, Some("credential_unavailable")) => Self::CredentialUnavailable,
            (None, _) => Self::ConnectionFailure,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::usage::Usage;

    fn record(status: u16, error: Option<ErrorType>, trail: &[Option<u16>]) -> UsageRecord {
        UsageRecord {
            backend: None,
            operation: None,
            usage: Usage::default(),
            status,
            attempts: u32::try_from(trail.len()).unwrap_or(0),
            error_type: error,
            upstream: trail
                .iter()
                .map(|status| UpstreamAttempt {
                    backend: "b".into(),
                    started: Duration::ZERO,
                    status: *status,
                    failure: status.is_none().then_some("timeout"),
                    breaker: None,
                    trace: None,
                })
                .collect(),
            ..UsageRecord::served("a")
        }
    }

    #[test]
    fn backend_errors_passed_back_are_told_from_the_gateways_own() {
        let of = |r: &UsageRecord| RequestOutcome::of(r, false);
        assert_eq!(
            of(&record(
                429,
                Some(ErrorType::BackendStatus(429)),
                &[Some(429), Some(429)]
            )),
            RequestOutcome::BackendError
        );
        assert_eq!(
            of(&record(
                503,
                Some(ErrorType::BackendStatus(503)),
                &[Some(503)]
            )),
            RequestOutcome::BackendError
        );
        assert_eq!(
            of(&record(
                400,
                Some(ErrorType::BackendStatus(400)),
                &[Some(400)]
            )),
            RequestOutcome::ClientError
        );
        assert_eq!(
            of(&record(
                503,
                Some(ErrorType::gateway(
                    "no_backend_available",
                    GatewayErrorKind::NoBackend
                )),
                &[]
            )),
            RequestOutcome::NoBackend
        );
        assert_eq!(
            of(&record(
                504,
                Some(ErrorType::gateway(
                    "backend_timeout",
                    GatewayErrorKind::Backend
                )),
                &[None, None]
            )),
            RequestOutcome::BackendError
        );
        assert_eq!(
            of(&record(200, Some(ErrorType::Interrupted), &[Some(200)])),
            RequestOutcome::BackendError
        );
        assert_eq!(
            of(&record(
                403,
                Some(ErrorType::gateway(
                    "app_not_allowed",
                    GatewayErrorKind::Forbidden
                )),
                &[]
            )),
            RequestOutcome::Forbidden
        );
        assert_eq!(
            of(&record(
                403,
                Some(ErrorType::gateway(
                    "quota_exceeded",
                    GatewayErrorKind::QuotaExhausted
                )),
                &[]
            )),
            RequestOutcome::QuotaExhausted
        );
        assert_eq!(
            of(&record(
                503,
                Some(ErrorType::gateway(
                    "gateway_not_ready",
                    GatewayErrorKind::Internal
                )),
                &[]
            )),
            RequestOutcome::GatewayError
        );
        assert_eq!(
            of(&record(
                413,
                Some(ErrorType::gateway(
                    "request_too_large",
                    GatewayErrorKind::Client
                )),
                &[]
            )),
            RequestOutcome::ClientError
        );
    }

    #[test]
    fn spillover_wins_over_retry_for_served_requests() {
        let twice = record(200, None, &[Some(429), Some(200)]);
        assert_eq!(
            RequestOutcome::of(&twice, true),
            RequestOutcome::SpilledOver
        );
        assert_eq!(RequestOutcome::of(&twice, false), RequestOutcome::Retried);
        assert_eq!(
            RequestOutcome::of(&record(200, None, &[Some(200)]), false),
            RequestOutcome::Served
        );
    }

    #[test]
    fn attempt_results_follow_the_status_class() {
        let results: Vec<_> = record(
            200,
            None,
            &[Some(200), Some(429), Some(502), Some(404), None],
        )
        .upstream
        .iter()
        .map(|a| AttemptResult::of(a).as_str())
        .collect();
        assert_eq!(
            results,
            [
                "success",
                "rate_limited",
                "server_error",
                "client_error",
                "timeout"
            ]
        );
    }
}
