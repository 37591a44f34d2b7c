//! Where the gateway's configuration comes from. Every source hands back the same thing, a
//! [`SnapshotRx`]: complete snapshots that passed [`Snapshot::check`], each with a higher
//! version, and version 0 for "nothing yet". The gateway follows it in one place
//! ([`crate::proxy::Gateway::follow`]), applying each snapshot atomically; a source that fails
//! publishes nothing, so the last good snapshot keeps serving. Sources know nothing of their
//! consumer.
//!
//! - [`file`]: standalone mode — the same YAML manifests a user would `kubectl apply`, watched
//!   for changes ([`file::watch`]).
//! - [`operator`]: the operator's authenticated stream ([`operator::OperatorClient::watch`]).

use std::sync::Arc;

use spillway_crds::Snapshot;
use tokio::sync::watch;

/// What every configuration source returns.
pub type SnapshotRx = watch::Receiver<Arc<Snapshot>>;

pub mod file;
pub mod operator;
