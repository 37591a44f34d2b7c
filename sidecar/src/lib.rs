//! Spillway's data plane.
//!
//! One binary, `spillway`, with subcommands: `run` (the gateway), `simulate` (an OpenAI /
//! Azure OpenAI compatible backend simulator for tests, benchmarks and the demo), `demo`
//! (simulated backends + gateway + traffic, with a live view), `loadtest` (a bounded load
//! generator) and `bench` (the same load direct and through the gateway, as a table).
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
//! - [`simulate`]: the backend simulator.
//! - [`loadtest`]: the load generator (also the demo's traffic).
//! - [`demo`]: the self-contained demo.
//! - [`bench`]: `spillway bench`, direct vs through-the-gateway benchmarks.
//! - [`error`]: one error type mapped to OpenAI-shaped JSON responses.

pub mod audit;
pub mod bench;
pub mod breaker;
pub mod clock;
pub mod credentials;
pub mod demo;
pub mod error;
pub mod identity;
pub mod limiter;
pub mod loadtest;
pub mod protocol;
pub mod proxy;
pub mod routing;
pub mod run;
pub mod simulate;
pub mod subscribe;
pub mod telemetry;
pub mod usage;
