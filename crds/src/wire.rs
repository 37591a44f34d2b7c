//! The config-push wire protocol between the operator and its sidecars.
//!
//! Both requests carry `Authorization: Bearer <projected ServiceAccount token>` (audience
//! `spillway` by default); the operator validates it with the TokenReview API and serves the
//! namespace of the ServiceAccount — the sidecar's scope — and nothing else.
//!
//! - `GET /v1/snapshots/watch` with headers [`SIDECAR_HEADER`] (the sidecar's id, normally its
//!   pod name) and optionally [`VERSION_HEADER`] (the version it already applied). The answer
//!   is `200` with `content-type: application/x-ndjson`: one [`StreamLine`] per line — a
//!   `hello`, at once the full current `snapshot`, then every later `snapshot` and a
//!   `heartbeat` every `heartbeatMs` so either side can detect a dead peer. Versions increase
//!   within a scope; when a sidecar arrives holding a version at or above the operator's (an
//!   operator restart, a failover between replicas), the operator re-issues its content under a
//!   higher version first.
//! - `POST /v1/sidecars/report` with a JSON [`SidecarReport`], every few seconds; answered
//!   `204`.
//!
//! Refusals: `401` (missing or invalid token, or not a ServiceAccount token), `403` (the
//! operator watches another namespace only), `400` (missing sidecar id or malformed report),
//! `503` (the token cannot be reviewed right now), `404` (unknown path). Refusal bodies are
//! short texts and never contain configuration.
//!
//! Both sides use these types: the operator serves them, the sidecar
//! (`spillway_sidecar::subscribe::operator`) reads them.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::Snapshot;
use serde::{Deserialize, Serialize};

/// Path of the snapshot stream.
pub const WATCH_PATH: &str = "/v1/snapshots/watch";
/// Path of the sidecar report.
pub const REPORT_PATH: &str = "/v1/sidecars/report";
/// Request header naming the sidecar (pod name or another stable id).
pub const SIDECAR_HEADER: &str = "x-spillway-sidecar";
/// Request header with the snapshot version the sidecar has applied.
pub const VERSION_HEADER: &str = "x-spillway-version";
/// Content type of the stream.
pub const NDJSON: &str = "application/x-ndjson";

/// One line of the snapshot stream.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum StreamLine {
    /// First line: who the operator thinks you are, and how often heartbeats come.
    #[serde(rename_all = "camelCase")]
    Hello {
        /// The scope (namespace) served.
        scope: String,
        /// The sidecar id the operator will count this stream under.
        sidecar: String,
        /// Interval between heartbeats; silence for a few of them means the stream is dead.
        heartbeat_ms: u64,
    },
    /// A complete configuration to apply.
    Snapshot {
        /// The snapshot, secrets included.
        snapshot: Arc<Snapshot>,
    },
    /// Keep-alive carrying the current version.
    Heartbeat {
        /// The scope's current version.
        version: u64,
    },
}

/// What a sidecar reports every few seconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SidecarReport {
    /// The sidecar id (as in [`SIDECAR_HEADER`]).
    pub sidecar: String,
    /// The pod UID, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The snapshot version serving traffic, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Breaker state per backend, keyed `pool/backend`.
    #[serde(default)]
    pub breakers: BTreeMap<String, BreakerState>,
    /// What last opened each backend's breaker and when it lets a probe through, keyed like
    /// [`SidecarReport::breakers`] (only backends whose breaker ever opened; absent from
    /// reports of older sidecars).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub breaker_details: BTreeMap<String, BreakerDetail>,
    /// Tokens used per app since the sidecar started.
    #[serde(default)]
    pub usage: BTreeMap<String, AppUsage>,
    /// Tokens left per quota window, as this sidecar's limiter sees them (absent from reports
    /// of older sidecars).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub quotas: Vec<QuotaLevelReport>,
    /// What [`SidecarReport::quotas`] measure.
    #[serde(default)]
    pub quota_counters: QuotaCounters,
}

/// A backend's circuit breaker state, as a sidecar reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BreakerState {
    /// Traffic flows normally.
    #[serde(rename = "closed")]
    Closed,
    /// No traffic until the breaker lets a probe through.
    #[serde(rename = "open")]
    Open,
    /// One probe at a time decides whether it closes or opens again. (`half_open` is how
    /// sidecars before this type wrote it.)
    #[serde(rename = "half-open", alias = "half_open")]
    HalfOpen,
    /// A state this version does not know (a newer sidecar); ignored.
    #[serde(rename = "unknown", other)]
    Unknown,
}

impl BreakerState {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
            Self::Unknown => "unknown",
        }
    }
}

/// What opened a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum TripCause {
    /// A response with this status code.
    Status {
        /// The HTTP status code.
        code: u16,
    },
    /// The connection could not be made or broke before the response headers.
    ConnectionFailure,
    /// No response headers within the backend's timeout.
    Timeout,
    /// The backend's Entra ID credential could not be obtained.
    CredentialUnavailable,
}

impl std::fmt::Display for TripCause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status { code } => write!(f, "HTTP {code}"),
            Self::ConnectionFailure => f.write_str("connection failure"),
            Self::Timeout => f.write_str("timeout"),
            Self::CredentialUnavailable => f.write_str("credential unavailable"),
        }
    }
}

/// The last trip of one backend's breaker on one sidecar.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BreakerDetail {
    /// What opened it last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trip: Option<TripCause>,
    /// How long ago that was, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_trip_ago_ms: Option<u64>,
    /// While open: in how many milliseconds it lets a probe through.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reopens_in_ms: Option<u64>,
}

/// What the quota levels of a report measure.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum QuotaCounters {
    /// `Local` rate limiting: this sidecar's share of each limit. Summed over the sidecars
    /// serving an app they give the app's total.
    #[default]
    Share,
    /// `Redis` rate limiting: the exact counters are shared in Redis; the levels are only the
    /// local fallback's and say nothing about the app's real usage.
    Redis,
}

/// Tokens left in one window of one quota for one app.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QuotaLevelReport {
    /// The `TokenQuota` name.
    pub quota: String,
    /// The app the level belongs to (for a default quota: each app that used it).
    pub app_id: String,
    /// `minute` (`tokensPerMinute`), `hour`, `day`, `week` or `month`; for a money budget
    /// the period and currency, as `day$USD`.
    pub window: String,
    /// Tokens left in the current window; for a money budget, nanos (billionths of the
    /// currency).
    pub remaining_tokens: u64,
}

/// Token counts of one app in a report.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppUsage {
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_states_round_trip_and_older_spellings_parse() {
        for state in [
            BreakerState::Closed,
            BreakerState::Open,
            BreakerState::HalfOpen,
        ] {
            let text = serde_json::to_string(&state).expect("json");
            assert_eq!(text, format!("\"{}\"", state.as_str()));
            assert_eq!(
                serde_json::from_str::<BreakerState>(&text).ok(),
                Some(state)
            );
        }
        let parse = |text: &str| serde_json::from_str::<BreakerState>(text).ok();
        assert_eq!(parse("\"half_open\""), Some(BreakerState::HalfOpen));
        assert_eq!(parse("\"sideways\""), Some(BreakerState::Unknown));
    }

    #[test]
    fn a_report_with_details_round_trips_and_an_older_one_still_parses() {
        let report = SidecarReport {
            sidecar: "pod-a".into(),
            breakers: [("chat/east".to_owned(), BreakerState::HalfOpen)].into(),
            breaker_details: [(
                "chat/east".to_owned(),
                BreakerDetail {
                    last_trip: Some(TripCause::Status { code: 429 }),
                    last_trip_ago_ms: Some(1_500),
                    reopens_in_ms: None,
                },
            )]
            .into(),
            ..SidecarReport::default()
        };
        let text = serde_json::to_string(&report).expect("json");
        assert!(text.contains(r#""chat/east":"half-open""#), "{text}");
        assert!(
            text.contains(r#""lastTrip":{"kind":"status","code":429}"#),
            "{text}"
        );
        let back: SidecarReport = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, report);
        let older =
            r#"{"sidecar":"pod-b","breakers":{"chat/east":"half_open","chat/west":"open"}}"#;
        let older: SidecarReport = serde_json::from_str(older).expect("parses");
        assert_eq!(older.breakers["chat/east"], BreakerState::HalfOpen);
        assert!(older.breaker_details.is_empty());
        assert_eq!(TripCause::Status { code: 503 }.to_string(), "HTTP 503");
    }
}
