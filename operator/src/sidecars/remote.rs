//! Sidecars served by other operator replicas, as their presence Leases announce them.
//!
//! Input: the full set of other replicas with a valid Lease ([`Registry::set_remotes`], from
//! `crate::presence`), each valid until its Lease would expire. Output: the registry's merged
//! view changes, and the scopes whose status depends on them are signalled with the same
//! spacing as local reports (membership and versions at once, breakers and quota levels
//! later). A replica missing from the next set, or whose validity passed
//! ([`Registry::sweep`]), stops counting.

use std::collections::{BTreeMap, BTreeSet};

use tokio::time::Instant;

use super::{Change, Registry, change};
use crate::status::live::LiveSidecar;

/// Another replica's live sidecars per scope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteReplica {
    /// When its Lease expires unless renewed.
    pub until: Instant,
    /// Its live sidecars per scope.
    pub scopes: BTreeMap<String, Vec<LiveSidecar>>,
}

/// How much the sidecars of one scope changed, matched by id.
fn scope_change(before: &[LiveSidecar], after: &[LiveSidecar]) -> Change {
    let ids: BTreeSet<&str> = before.iter().chain(after).map(|s| s.id.as_str()).collect();
    ids.into_iter()
        .map(|id| {
            change(
                before.iter().find(|s| s.id == id),
                after.iter().find(|s| s.id == id),
            )
        })
        .max()
        .unwrap_or(Change::None)
}

impl Registry {
    /// Replaces what is known of other replicas (keyed by replica identity) with `remotes`.
    pub fn set_remotes(&self, remotes: BTreeMap<String, RemoteReplica>, now: Instant) {
        let changes: Vec<(String, Change)> = {
            let mut inner = self.lock();
            let empty = Vec::new();
            let mut scopes: BTreeSet<&String> = BTreeSet::new();
            for remote in inner.remotes.values().chain(remotes.values()) {
                scopes.extend(remote.scopes.keys());
            }
            let replicas: BTreeSet<&String> = inner.remotes.keys().chain(remotes.keys()).collect();
            let mut changes = Vec::new();
            for scope in scopes {
                let mut worst = Change::None;
                for replica in &replicas {
                    let side = |set: &BTreeMap<String, RemoteReplica>| {
                        set.get(*replica)
                            .and_then(|r| r.scopes.get(scope))
                            .unwrap_or(&empty)
                            .clone()
                    };
                    worst = worst.max(scope_change(&side(&inner.remotes), &side(&remotes)));
                }
                changes.push((scope.clone(), worst));
            }
            inner.remotes = remotes;
            changes
        };
        for (scope, change) in changes {
            self.signal(&scope, change, now);
        }
    }
}
