//! Spillway's data plane: the gateway that `spillway run` starts. It depends on nothing but
//! `spillway-crds` and maintained crates; the tools (`simulate`, `demo`, `loadtest`, `bench`)
//! and the `spillway` binary live in `spillway-tools`, which depends on this crate and never
//! the reverse.
//!
//! Modules, each a pure core plus a thin edge:
//! - [`protocol`]: request body inspection and the gateway's targeted request edits.
//! - [`proxy`]: HTTP server, inbound route parsing, request inspection, upstream attempts,
//!   streaming response bodies.
//! - [`routing`]: pool runtime state and candidate ordering (priority groups, weights,
//!   breakers).
//! - [`breaker`]: the circuit-breaker state machine and retry-after header parsing.
//! - [`credentials`]: Entra ID access tokens for backends (client secret, certificate,
//!   workload identity), cached and refreshed ahead of expiry.
//! - [`identity`]: which app sent a request (JWT, API key, trusted header).
//! - [`limiter`]: token quotas — token buckets, calendar windows, local and Redis counters.
//! - [`usage`]: token usage from JSON and SSE, stream rewriting, tokenizer fallback, and the
//!   per-request usage record.
//! - [`audit`]: the audit log of prompts and completions (redaction, caps, bounded queue).
//! - [`subscribe`]: where snapshots come from (a watched manifest file, or the operator's
//!   stream).
//! - [`telemetry`]: OTLP metrics (GenAI conventions + Spillway's own), traces and logs, and
//!   `/metrics`.
//! - [`error`]: one error type mapped to OpenAI-shaped JSON responses.
//! - [`http_client`]: the pooled outbound HTTPS client and the text of its errors (a leaf).

pub mod affinity;
pub mod audit;
pub mod breaker;
pub mod calendar;
pub mod clock;
pub mod cost;
pub mod credentials;
pub mod error;
pub mod http_client;
pub mod identity;
pub mod limiter;
pub mod protocol;
pub mod proxy;
pub mod routing;
pub mod run;
pub mod subscribe;
pub mod telemetry;
pub mod usage;
