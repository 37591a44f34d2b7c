//! The Spillway operator.
//!
//! Watches `AIBackendPool`, `TokenQuota` and `AIGateway` objects and the Secrets they
//! reference, compiles them with the shared pure `spillway_crds::compile()`, pushes the
//! resulting snapshots to the sidecars over an authenticated HTTPS stream, and writes status
//! conditions and Events back onto the objects.
//!
//! # Scope: one snapshot per namespace
//!
//! All `AIBackendPool`s and `TokenQuota`s of a namespace, and its `AIGateway` (at most one is
//! used: the oldest; others are reported with `Accepted=False`, reason `GatewayConflict`),
//! compile into one versioned snapshot. A sidecar authenticates with its projected
//! ServiceAccount token and receives the snapshot of its ServiceAccount's namespace — never
//! another namespace's configuration or backend keys. A namespace without Spillway objects
//! serves an empty snapshot. Versions increase monotonically per namespace, and a new version
//! is published only when the content a sidecar runs changes (including its quota share).
//!
//! # Modules
//! - [`controller`]: reflectors → reconcile (compile, publish, status, Events) per scope.
//! - [`status`]: pure mapping of compile problems to conditions, and of sidecars' live state.
//! - [`secrets`]: `SecretResolver` over the Secrets store.
//! - [`publish`]: per-scope versioned snapshots and quota shares.
//! - [`sidecars`]: connected sidecars, their reports, grace periods, `synced/total`.
//! - [`server`]: the HTTPS stream server, TLS and TokenReview authentication.
//! - [`wire`]: the protocol's types and paths.
//! - [`webhook`]: the sidecar injection webhook (`POST /mutate` on the stream server).
//! - [`leader`]: Lease-based leader election (only the leader writes status).
//! - [`presence`]: each replica's sidecars announced in a Lease, read by the others.
//! - [`metrics`]: `/metrics`, `/healthz`, `/readyz`.
//! - [`app`]: the `spillway-operator` command line and process wiring.

pub mod app;
pub mod controller;
pub mod leader;
pub mod limits;
pub mod metrics;
pub mod presence;
pub mod publish;
pub mod secrets;
pub mod server;
pub mod sidecars;
pub mod status;
pub mod webhook;
pub use spillway_crds::wire;
