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
    /// Breaker state per backend, keyed `pool/backend`: `closed`, `open` or `half-open`.
    #[serde(default)]
    pub breakers: BTreeMap<String, String>,
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
    /// `minute` (`tokensPerMinute`), `hour`, `day`, `week` or `month`.
    pub window: String,
    /// Tokens left in the current window.
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
