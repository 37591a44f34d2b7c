//! The sidecar's copy of the operator protocol (`spillway_operator::wire` is the server's;
//! the operator's stream tests run real sidecars against it, so the two cannot drift
//! silently): paths, headers and the JSON shapes of stream lines and reports.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use spillway_crds::Snapshot;

/// Path of the snapshot stream.
pub const WATCH_PATH: &str = "/v1/snapshots/watch";
/// Path of the sidecar report.
pub const REPORT_PATH: &str = "/v1/sidecars/report";
/// Request header naming the sidecar.
pub const SIDECAR_HEADER: &str = "x-spillway-sidecar";
/// Request header with the version the sidecar runs.
pub const VERSION_HEADER: &str = "x-spillway-version";

/// One line of the snapshot stream.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum StreamLine {
    /// First line of a stream.
    #[serde(rename_all = "camelCase")]
    Hello {
        /// The scope (namespace) served.
        scope: String,
        /// The id the operator counts this sidecar under.
        sidecar: String,
        /// Interval between heartbeats.
        heartbeat_ms: u64,
    },
    /// A complete configuration.
    Snapshot {
        /// The snapshot.
        snapshot: Box<Snapshot>,
    },
    /// Keep-alive with the scope's current version.
    Heartbeat {
        /// Current version.
        version: u64,
    },
}

/// What the sidecar reports every few seconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SidecarReport {
    /// The sidecar id.
    pub sidecar: String,
    /// The pod UID, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    /// The version serving traffic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Breaker state per `pool/backend`.
    pub breakers: BTreeMap<String, String>,
    /// Tokens per app since start.
    pub usage: BTreeMap<String, AppUsage>,
}

/// Token counts of one app.
#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct AppUsage {
    /// Requests.
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
}
