//! Spillway's tools, built on the data plane (`spillway-sidecar`) and never the reverse:
//!
//! - [`simulate`]: an OpenAI / Azure OpenAI compatible backend simulator for tests,
//!   benchmarks and the demo (TPM/RPM windows, 429s with retry headers, faults, a ledger).
//! - [`loadtest`]: the bounded load generator (also the demo's traffic).
//! - [`demo`]: the self-contained demo.
//! - [`bench`]: `spillway bench`, direct vs through-the-gateway benchmarks.
//!
//! The `spillway` binary (`main.rs`) keeps every subcommand: `run` (the gateway, from the
//! data plane) and the four tools.

pub mod bench;
pub mod demo;
pub mod loadtest;
pub mod simulate;
