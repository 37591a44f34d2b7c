//! `spillway.dev/v1alpha1`: the resources users write.
//!
//! The doc comments on fields are what `kubectl explain` prints; they are written for the
//! platform engineer who writes the manifest. Durations are strings such as `10s` or `1m30s`.

mod common;
mod gateway;
mod pool;
mod pricing;
mod quota;

pub use common::*;
pub use gateway::*;
pub use pool::*;
pub use pricing::*;
pub use quota::*;
