//! Versioned snapshots, one per scope (namespace).
//!
//! Inputs: compiled snapshots from reconcile ([`Publisher::publish`]) and the number of live
//! sidecars of each scope ([`Publisher::set_sidecars`], from the sidecar registry). Output: a
//! `watch` channel per scope carrying the snapshot sidecars run, with each quota's `share` set
//! to `1/N` for the scope's `N` live sidecars (Local mode; the same share is the fallback in
//! Redis mode).
//!
//! A new version is published only when the content changes (compared without the version);
//! versions start at 1 and only ever increase within a scope. A sidecar that arrives holding a
//! version at or above the current one (it was served by an earlier operator process or by
//! another replica) makes the scope re-issue its content under a higher version, so the
//! sidecar's "versions only increase" rule never strands it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use spillway_crds::Snapshot;
use tokio::sync::watch;

/// Publishes per-scope snapshots; cheap to clone.
#[derive(Clone, Debug)]
pub struct Publisher {
    inner: Arc<Mutex<Inner>>,
    scopes_added: Arc<watch::Sender<usize>>,
}

#[derive(Debug, Default)]
struct Inner {
    scopes: BTreeMap<String, Scope>,
    /// Live sidecars per scope, also for scopes not compiled yet.
    sidecars: BTreeMap<String, usize>,
}

#[derive(Debug)]
struct Scope {
    /// As compiled: version 0, shares 1.
    compiled: Snapshot,
    tx: watch::Sender<Arc<Snapshot>>,
}

impl Default for Publisher {
    fn default() -> Self {
        Self::new()
    }
}

impl Publisher {
    /// An empty publisher.
    pub fn new() -> Self {
        Self {
            inner: Arc::default(),
            scopes_added: Arc::new(watch::channel(0).0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the compiled content of `scope`; publishes a new version if what sidecars run
    /// changes. Returns the scope's current version.
    pub fn publish(&self, scope: &str, compiled: Snapshot) -> u64 {
        let mut inner = self.lock();
        let sidecars = inner.sidecars.get(scope).copied().unwrap_or(0);
        if let Some(entry) = inner.scopes.get_mut(scope) {
            entry.compiled = compiled;
            return entry.refresh(sidecars);
        }
        let mut first = with_shares(&compiled, sidecars);
        first.version = 1;
        let (tx, _) = watch::channel(Arc::new(first));
        inner
            .scopes
            .insert(scope.to_owned(), Scope { compiled, tx });
        let count = inner.scopes.len();
        drop(inner);
        self.scopes_added.send_replace(count);
        1
    }

    /// Records that `scope` has `live` sidecars; re-divides its quotas when that changes.
    /// Returns the new version if one was published.
    pub fn set_sidecars(&self, scope: &str, live: usize) -> Option<u64> {
        let mut inner = self.lock();
        let previous = if live == 0 {
            inner.sidecars.remove(scope)
        } else {
            inner.sidecars.insert(scope.to_owned(), live)
        };
        if previous.unwrap_or(0) == live {
            return None;
        }
        let entry = inner.scopes.get_mut(scope)?;
        let before = entry.tx.borrow().version;
        let after = entry.refresh(live);
        (after != before).then_some(after)
    }

    /// The snapshot `scope` serves now, if it was compiled.
    pub fn current(&self, scope: &str) -> Option<Arc<Snapshot>> {
        self.lock()
            .scopes
            .get(scope)
            .map(|entry| entry.tx.borrow().clone())
    }

    /// Every compiled scope with its current version.
    pub fn versions(&self) -> Vec<(String, u64)> {
        self.lock()
            .scopes
            .iter()
            .map(|(scope, entry)| (scope.clone(), entry.tx.borrow().version))
            .collect()
    }

    /// A receiver of `scope`'s snapshots, once the scope has been compiled (a sidecar that
    /// connects while the operator is still starting waits here instead of receiving an empty
    /// configuration). `held` is the version the sidecar already runs; the scope moves above
    /// it first.
    pub async fn subscribe(
        &self,
        scope: &str,
        held: Option<u64>,
    ) -> watch::Receiver<Arc<Snapshot>> {
        let mut added = self.scopes_added.subscribe();
        loop {
            if let Some(rx) = self.try_subscribe(scope, held) {
                return rx;
            }
            // The sender lives in `self`, so this never fails while we can be called.
            let _ = added.changed().await;
        }
    }

    fn try_subscribe(
        &self,
        scope: &str,
        held: Option<u64>,
    ) -> Option<watch::Receiver<Arc<Snapshot>>> {
        let inner = self.lock();
        let entry = inner.scopes.get(scope)?;
        let current = entry.tx.borrow().clone();
        if let Some(above) = held.and_then(|v| v.checked_add(1))
            && above > current.version
            && above - current.version <= MAX_VERSION_JUMP
        {
            let mut reissued = Snapshot::clone(&current);
            reissued.version = above;
            tracing::info!(
                scope,
                version = above,
                "re-issuing the configuration above a version a sidecar already holds"
            );
            entry.tx.send_replace(Arc::new(reissued));
        }
        Some(entry.tx.subscribe())
    }
}

/// The most a sidecar's held version may lift a scope's version; a larger claim is ignored
/// (it would only be a broken or hostile client), so versions never run out.
const MAX_VERSION_JUMP: u64 = 1 << 32;

impl Scope {
    /// Publishes the effective content if it differs; returns the current version.
    fn refresh(&mut self, sidecars: usize) -> u64 {
        let mut next = with_shares(&self.compiled, sidecars);
        let current = self.tx.borrow().clone();
        next.version = current.version;
        if next == *current {
            return current.version;
        }
        next.version = current.version.saturating_add(1);
        let version = next.version;
        self.tx.send_replace(Arc::new(next));
        version
    }
}

/// `compiled` with each quota's share set to `1/sidecars` (1 when there are none yet).
pub fn with_shares(compiled: &Snapshot, sidecars: usize) -> Snapshot {
    let mut snapshot = compiled.clone();
    let share = share_of(sidecars);
    for quota in &mut snapshot.quotas {
        quota.share = share;
    }
    snapshot
}

/// `1/sidecars`, or 1 for zero sidecars.
pub fn share_of(sidecars: usize) -> f64 {
    // Sidecar counts are far below 2^52, so the conversion is exact.
    #[allow(clippy::cast_precision_loss)]
    let n = sidecars.max(1) as f64;
    1.0 / n
}

#[cfg(test)]
mod tests;
