//! Where the gateway's configuration comes from. Every source publishes complete, validated
//! [`Snapshot`](spillway_crds::Snapshot)s into a `tokio::sync::watch` channel; the proxy
//! applies each one atomically and keeps serving the last good one when a source fails.
//!
//! - [`file`]: standalone mode — the same YAML manifests a user would `kubectl apply`, watched
//!   for changes.

pub mod file;
pub mod operator;
