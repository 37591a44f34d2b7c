//! Reconciliation of one scope (namespace) at a time.
//!
//! A scope is a namespace: all its `AIBackendPool`s and `TokenQuota`s and its `AIGateway`
//! compile into one snapshot, served to the sidecars whose ServiceAccount lives there.
//! [`reconcile`] reads like a checklist — wait for a full picture, validate and resolve
//! references (`compile()`), publish, write status, emit Events — and [`error_policy`] backs
//! off per scope. Every replica compiles and publishes (its sidecars need the snapshots); only
//! the leader writes status and Events.
//!
//! - [`queue`]: reflectors for the kinds and Secrets, mapped to scopes, driving the applier.
//! - `write`: status patches (only when changed, rate-limited) and Events.

pub mod queue;
mod write;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::runtime::controller::Action;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use kube::{Client, Resource, ResourceExt};
use spillway_crds::v1alpha1::{AiBackendPool, AiGateway, TokenQuota};
use spillway_crds::{CompileInput, Object, Snapshot, compile};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::secrets::StoreSecrets;
use crate::sidecars::Registry;
use crate::status::Finding;

pub use write::WriteLimiter;

/// How often a scope is reconciled without any trigger (a safety net for missed events).
pub const RESYNC: Duration = Duration::from_secs(300);

/// The reflector stores reconcile reads.
#[derive(Clone, Debug)]
pub struct Stores {
    /// Namespaces (the scopes).
    pub namespaces: Store<Namespace>,
    /// `AIBackendPool`s.
    pub pools: Store<AiBackendPool>,
    /// `TokenQuota`s.
    pub quotas: Store<TokenQuota>,
    /// `AIGateway`s.
    pub gateways: Store<AiGateway>,
    /// Secrets (their data arrives base64-decoded).
    pub secrets: Store<Secret>,
}

impl Stores {
    /// Resolves once every store (but the namespaces) holds its first full list.
    ///
    /// # Errors
    /// When a reflector ended before that (shutdown).
    pub async fn ready(&self) -> Result<(), Error> {
        let gone = |_| Error::StoresGone;
        self.pools.wait_until_ready().await.map_err(gone)?;
        self.quotas.wait_until_ready().await.map_err(gone)?;
        self.gateways.wait_until_ready().await.map_err(gone)?;
        self.secrets.wait_until_ready().await.map_err(gone)
    }
}

/// What reconcile needs.
pub struct Context {
    /// API client (status patches, Events).
    pub client: Client,
    /// The reflector stores.
    pub stores: Stores,
    /// Where snapshots go.
    pub publisher: Publisher,
    /// Connected sidecars.
    pub sidecars: Registry,
    /// Whether this replica leads (writes status).
    pub leader: watch::Receiver<bool>,
    /// Event recorder.
    pub recorder: Recorder,
    /// Spaces status writes.
    pub writes: WriteLimiter,
    /// Counters.
    pub metrics: Arc<Metrics>,
    written: write::Written,
    failures: Mutex<BTreeMap<String, u32>>,
}

impl Context {
    /// A context; `recorder` publishes Events as this operator.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Client,
        stores: Stores,
        publisher: Publisher,
        sidecars: Registry,
        leader: watch::Receiver<bool>,
        recorder: Recorder,
        writes: WriteLimiter,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            client,
            stores,
            publisher,
            sidecars,
            leader,
            recorder,
            writes,
            metrics,
            written: write::Written::default(),
            failures: Mutex::default(),
        }
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A status patch was refused or the API server was unreachable.
    #[error("writing the status of {kind} {namespace}/{name}: {source}")]
    WriteStatus {
        /// Kind of the object.
        kind: &'static str,
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// The reflectors ended before their first list completed (shutdown).
    #[error("the object stores closed before they were filled")]
    StoresGone,
}

/// The objects of one scope, oldest first.
#[derive(Clone, Debug, Default)]
pub struct ScopeObjects {
    /// Pools.
    pub pools: Vec<Arc<AiBackendPool>>,
    /// Quotas.
    pub quotas: Vec<Arc<TokenQuota>>,
    /// Gateways; the first one is in effect.
    pub gateways: Vec<Arc<AiGateway>>,
}

/// A compiled scope.
#[derive(Debug)]
pub struct Compiled {
    /// The snapshot content (version 0).
    pub snapshot: Snapshot,
    /// Findings per object, keyed by `(kind, name)`; served objects have none.
    pub findings: BTreeMap<(&'static str, String), Vec<Finding>>,
}

impl ScopeObjects {
    /// The objects of `scope` in `stores`.
    pub fn gather(stores: &Stores, scope: &str) -> Self {
        let in_scope = |namespace: Option<String>| namespace.as_deref() == Some(scope);
        Self {
            pools: oldest_first(stores.pools.state_filter(|o| in_scope(o.namespace()))),
            quotas: oldest_first(stores.quotas.state_filter(|o| in_scope(o.namespace()))),
            gateways: oldest_first(stores.gateways.state_filter(|o| in_scope(o.namespace()))),
        }
    }

    /// Compiles the scope, resolving Secrets from `secrets`.
    pub fn compile(&self, scope: &str, secrets: &Store<Secret>) -> Compiled {
        let input = CompileInput {
            pools: self.pools.iter().map(|p| object(&**p, &p.spec)).collect(),
            quotas: self.quotas.iter().map(|q| object(&**q, &q.spec)).collect(),
            gateway: self.gateways.first().map(|g| object(&**g, &g.spec)),
        };
        let (snapshot, problems) = compile(&input, &StoreSecrets::new(secrets));
        let mut findings: BTreeMap<(&'static str, String), Vec<Finding>> = BTreeMap::new();
        for problem in &problems {
            findings
                .entry((problem.kind, problem.name.clone()))
                .or_default()
                .push(Finding::from(problem));
        }
        if let Some((winner, others)) = self.gateways.split_first() {
            for other in others {
                findings
                    .entry((KIND_GATEWAY, other.name_any()))
                    .or_default()
                    .push(Finding::gateway_superseded(scope, &winner.name_any()));
            }
        }
        Compiled { snapshot, findings }
    }
}

/// Kind names as `compile()` reports them.
pub const KIND_POOL: &str = "AIBackendPool";
/// See [`KIND_POOL`].
pub const KIND_QUOTA: &str = "TokenQuota";
/// See [`KIND_POOL`].
pub const KIND_GATEWAY: &str = "AIGateway";

fn oldest_first<K: Resource>(mut objects: Vec<Arc<K>>) -> Vec<Arc<K>> {
    objects.sort_by(|a, b| {
        let key = |o: &Arc<K>| (o.meta().creation_timestamp.clone(), o.meta().name.clone());
        key(a).cmp(&key(b))
    });
    objects
}

fn object<K: Resource, S: Clone>(resource: &K, spec: &S) -> Object<S> {
    let meta = resource.meta();
    Object {
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        creation_timestamp: meta.creation_timestamp.as_ref().map(|t| t.0.to_string()),
        spec: spec.clone(),
    }
}

/// Reconciles the scope `namespace`.
///
/// # Errors
/// A status write that failed; the error policy retries with backoff.
pub async fn reconcile(namespace: Arc<Namespace>, ctx: Arc<Context>) -> Result<Action, Error> {
    let scope = namespace.name_any();
    ctx.metrics.reconciles.inc();
    // 1. A full picture first: compiling from half-filled stores would take pools away.
    ctx.stores.ready().await?;
    // 2. Validate and resolve references.
    let objects = ScopeObjects::gather(&ctx.stores, &scope);
    let compiled = objects.compile(&scope, &ctx.stores.secrets);
    // 3. Publish; a new version only when what sidecars run changes.
    let version = ctx.publisher.publish(&scope, compiled.snapshot);
    // 4. and 5. Status and Events, by the leader only.
    if *ctx.leader.borrow() {
        write::scope_status(&ctx, &scope, &objects, &compiled.findings, version).await?;
    }
    ctx.failures
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .remove(&scope);
    Ok(Action::requeue(RESYNC))
}

/// Retries a failed scope after an exponential, jittered delay (1s doubling up to 5 minutes).
pub fn error_policy(namespace: Arc<Namespace>, error: &Error, ctx: Arc<Context>) -> Action {
    let scope = namespace.name_any();
    ctx.metrics.reconcile_errors.inc();
    let failures = {
        let mut failures = ctx.failures.lock().unwrap_or_else(PoisonError::into_inner);
        let count = failures.entry(scope.clone()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    let delay = backoff(failures);
    tracing::warn!(scope, %error, failures, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

/// Delay before retry number `failures` (1-based): 1s, 2s, 4s, … capped at 5 minutes, each
/// shortened by up to a quarter at random so retries of many scopes spread out.
pub fn backoff(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(9);
    let base = Duration::from_secs(1 << exponent).min(Duration::from_secs(300));
    base - base.mul_f64(fastrand::f64() / 4.0)
}
