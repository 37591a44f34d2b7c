//! Pool runtime state and backend selection for the hot path.
//!
//! Input: a [`Snapshot`] (and the previous [`Routes`], to keep breaker state across hot
//! reloads). Output: [`Routes`], which maps a model/deployment name to its [`PoolRoutes`] in
//! O(1); each pool picks a backend per attempt ([`PoolRoutes::pick`], in `pick.rs`) by
//! priority group, weight and breaker state, and hands back an [`Attempt`] through which the
//! proxy reports the outcome.
//!
//! Carry-over: a backend whose identity — pool id, backend name, base URL and breaker config
//! — is unchanged keeps its [`BackendRuntime`] (breaker state and counters) across
//! [`Routes::build`]; a changed backend starts fresh, a removed one is dropped (attempts still
//! in flight keep their own `Arc` and finish normally). Priority, weight, keys and timeouts may
//! change without resetting anything. A backend's Entra ID token cache is carried over while
//! its `entraId` settings are unchanged; changed settings get a fresh cache (the breaker and
//! counters are kept).

mod pick;

use spillway_crds::billing::SpendCeiling;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use spillway_crds::Snapshot;
use spillway_crds::snapshot::{BackendConfig, EntraIdConfig, PoolConfig};

use crate::breaker::Breaker;
use crate::credentials::{self, TokenCache};

pub use pick::{Attempt, PROBE_BUSY_RETRY, Pick, stable_hash};

/// Every pool of one snapshot, ready for the hot path.
#[derive(Debug, Default)]
pub struct Routes {
    version: u64,
    pools: Vec<PoolRoutes>,
    /// Model/deployment name → index into `pools`; the first pool listing a name wins, as in
    /// [`Snapshot::pool_for_model`].
    by_model: HashMap<String, usize>,
}

/// Runtimes of the previous routes that a reload may reuse, by (pool id, backend name).
type Carried<'a> = HashMap<(String, String), &'a Arc<BackendRuntime>>;

/// One pool: its config, backend runtime state and the priority groups.
#[derive(Debug)]
pub struct PoolRoutes {
    config: Arc<PoolConfig>,
    /// Same order as `config.backends`.
    runtimes: Vec<Arc<BackendRuntime>>,
    /// Backend indices sorted by (priority, manifest order).
    order: Vec<usize>,
    /// Ranges of `order` sharing one priority, lowest priority number first.
    groups: Vec<Range<usize>>,
    /// The highest metered rates of the pool's backends, per currency (money budgets
    /// reserve at these).
    spend_ceiling: Vec<SpendCeiling>,
}

/// Runtime state of one backend: its breaker and counters for metrics.
#[derive(Debug)]
pub struct BackendRuntime {
    breaker: Arc<Breaker>,
    /// Part of the identity checked for carry-over.
    base_url: String,
    /// The Entra ID settings `credential` was built from.
    entra_id: Option<EntraIdConfig>,
    /// The backend's Entra ID token cache, when it authenticates with Entra ID.
    credential: Option<Arc<TokenCache>>,
    in_flight: AtomicU64,
    requests: AtomicU64,
    failures: AtomicU64,
}

impl Routes {
    /// Builds the routes of `snapshot`, carrying over the runtime state of every backend of
    /// `previous` whose identity is unchanged (see the module docs).
    pub fn build(snapshot: &Snapshot, previous: Option<&Routes>) -> Routes {
        // (pool id, backend name) → runtime; built once per reload, not on the hot path.
        let mut carried: Carried<'_> = HashMap::new();
        for pool in previous.map_or(&[][..], |routes| &routes.pools) {
            for (backend, runtime) in pool.config.backends.iter().zip(&pool.runtimes) {
                carried
                    .entry((pool.config.id.clone(), backend.name.clone()))
                    .or_insert(runtime);
            }
        }
        let mut by_model = HashMap::new();
        let pools = snapshot
            .pools
            .iter()
            .enumerate()
            .map(|(index, pool)| {
                for model in &pool.models {
                    by_model.entry(model.clone()).or_insert(index);
                }
                PoolRoutes::build(pool, &mut carried)
            })
            .collect();
        Routes {
            version: snapshot.version,
            pools,
            by_model,
        }
    }

    /// The snapshot version these routes were built from.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The pool serving `model` (a deployment or model name as the client sent it).
    pub fn pool(&self, model: &str) -> Option<&PoolRoutes> {
        self.by_model
            .get(model)
            .and_then(|index| self.pools.get(*index))
    }

    /// Every pool, in snapshot order (for metrics and status).
    pub fn pools(&self) -> &[PoolRoutes] {
        &self.pools
    }
}

impl PoolRoutes {
    fn build(config: &PoolConfig, carried: &mut Carried<'_>) -> PoolRoutes {
        let runtimes = config
            .backends
            .iter()
            .map(|backend| {
                // `remove`: a duplicated name never shares one runtime between two backends.
                match carried.remove(&(config.id.clone(), backend.name.clone())) {
                    Some(runtime) if runtime.matches(backend) => {
                        if runtime.entra_id == backend.entra_id {
                            Arc::clone(runtime)
                        } else {
                            Arc::new(runtime.with_new_credential(backend))
                        }
                    }
                    _ => Arc::new(BackendRuntime::new(backend)),
                }
            })
            .collect();
        let mut order: Vec<usize> = (0..config.backends.len()).collect();
        order.sort_by_key(|&index| (config.backends[index].priority, index));
        let mut groups: Vec<Range<usize>> = Vec::new();
        for (position, &index) in order.iter().enumerate() {
            let priority = config.backends[index].priority;
            match groups.last_mut() {
                Some(group) if config.backends[order[group.start]].priority == priority => {
                    group.end = position + 1;
                }
                _ => groups.push(position..position + 1),
            }
        }
        PoolRoutes {
            config: Arc::new(config.clone()),
            runtimes,
            order,
            groups,
            spend_ceiling: SpendCeiling::of(
                config.backends.iter().filter_map(|b| b.pricing.as_ref()),
            ),
        }
    }

    /// The highest metered rates of the pool's backends, one entry per currency.
    pub fn spend_ceiling(&self) -> &[SpendCeiling] {
        &self.spend_ceiling
    }

    /// The pool's config.
    pub fn config(&self) -> &Arc<PoolConfig> {
        &self.config
    }

    /// Every backend with its runtime state, in manifest order (index = position).
    pub fn backends(&self) -> impl Iterator<Item = (&BackendConfig, &Arc<BackendRuntime>)> {
        self.config.backends.iter().zip(&self.runtimes)
    }

    /// The runtime state of backend `index`.
    pub fn runtime(&self, index: usize) -> Option<&Arc<BackendRuntime>> {
        self.runtimes.get(index)
    }
}

impl BackendRuntime {
    fn new(backend: &BackendConfig) -> Self {
        Self {
            breaker: Arc::new(Breaker::new(&backend.breaker)),
            base_url: backend.base_url.clone(),
            entra_id: backend.entra_id.clone(),
            credential: backend.entra_id.as_ref().map(credentials::for_backend),
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// This runtime's breaker and counters with a token cache for `backend`'s (changed)
    /// Entra ID settings.
    fn with_new_credential(&self, backend: &BackendConfig) -> Self {
        Self {
            breaker: Arc::clone(&self.breaker),
            base_url: self.base_url.clone(),
            entra_id: backend.entra_id.clone(),
            credential: backend.entra_id.as_ref().map(credentials::for_backend),
            // In-flight attempts decrement the runtime they started on.
            in_flight: AtomicU64::new(0),
            requests: AtomicU64::new(self.requests()),
            failures: AtomicU64::new(self.failures()),
        }
    }

    /// The backend's Entra ID token cache, if it authenticates with Entra ID.
    pub fn credential(&self) -> Option<&Arc<TokenCache>> {
        self.credential.as_ref()
    }

    /// Whether this runtime may serve `backend` after a reload (same URL and breaker rules;
    /// pool id and name are the lookup key).
    fn matches(&self, backend: &BackendConfig) -> bool {
        self.base_url == backend.base_url && *self.breaker.config() == backend.breaker
    }

    /// The backend's breaker.
    pub fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// Attempts picked and not yet finished (an [`Attempt`] counts until it is dropped).
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Attempts ever picked for this backend.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Recorded outcomes that at least one breaker rule counts as a failure.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests;
