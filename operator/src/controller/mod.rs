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
use spillway_crds::v1alpha1::{
    AiBackendPool, AiGateway, AllowedNamespaces, ServedVersion, TokenQuota,
};
use spillway_crds::{
    AnonymousAccess, CompileInput, History, LastGood, Object, Served, Snapshot,
    compile_with_history,
};
use tokio::sync::watch;

use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::secrets::StoreSecrets;
use crate::sidecars::Registry;
use crate::status::{Finding, GatewaySettings, Serving};

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
    /// Per scope, the last good version of every object (what it compiled to in this
    /// process, Secret values included).
    history: Mutex<BTreeMap<String, History>>,
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
            history: Mutex::default(),
        }
    }
}

impl Context {
    fn history(&self, scope: &str) -> History {
        let all = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(scope).cloned().unwrap_or_default()
    }

    fn remember(&self, scope: &str, history: History) {
        let mut all = self.history.lock().unwrap_or_else(PoisonError::into_inner);
        all.insert(scope.to_owned(), history);
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

/// The objects of one scope, oldest first: its own, and those other namespaces grant it.
#[derive(Clone, Debug, Default)]
pub struct ScopeObjects {
    /// Pools.
    pub pools: Vec<Arc<AiBackendPool>>,
    /// Quotas.
    pub quotas: Vec<Arc<TokenQuota>>,
    /// Gateways; the first one is in effect.
    pub gateways: Vec<Arc<AiGateway>>,
    /// Pools of other namespaces granted to this one (`spec.allowedNamespaces`) and served
    /// here; their status is written in their own namespace.
    pub shared_pools: Vec<Arc<AiBackendPool>>,
    /// Quotas of other namespaces that apply to this one's apps (`spec.namespaces`).
    pub central_quotas: Vec<Arc<TokenQuota>>,
    /// Pools granted to this namespace but not served here, by `namespace/name`, with why:
    /// a pool of this namespace (or an older shared one) has the same name or one of its
    /// models.
    pub shadowed: Vec<(String, String)>,
}

/// A compiled scope.
#[derive(Debug)]
pub struct Compiled {
    /// The snapshot content (version 0).
    pub snapshot: Snapshot,
    /// Findings against each object's current generation, keyed by `(kind, name)`; objects
    /// served as they are have none.
    pub findings: BTreeMap<(&'static str, String), Vec<Finding>>,
    /// What is served of each object, keyed by `(kind, name)`.
    pub serving: BTreeMap<(&'static str, String), Serving>,
    /// The last good version of every object, for the next compile.
    pub history: History,
}

impl ScopeObjects {
    /// The objects of `scope` in `stores`, and those other namespaces grant it.
    ///
    /// A shared pool is served here unless a pool already here has its name or one of its
    /// models: this namespace's own pools first, then shared ones oldest first (the rule is
    /// the same in every namespace, and the shadowed pool's status says where and why).
    pub fn gather(stores: &Stores, scope: &str) -> Self {
        let in_scope = |namespace: Option<String>| namespace.as_deref() == Some(scope);
        let labels = stores
            .namespaces
            .get(&kube::runtime::reflector::ObjectRef::new(scope))
            .map(|ns| ns.labels().clone())
            .unwrap_or_default();
        let granted = |home: Option<String>, allowed: Option<&AllowedNamespaces>| {
            home.is_some_and(|home| {
                home != scope && allowed.is_some_and(|a| a.grants(&home, scope, &labels))
            })
        };
        let pools = oldest_first(stores.pools.state_filter(|o| in_scope(o.namespace())));
        let granted_pools = oldest_first(
            stores
                .pools
                .state_filter(|o| granted(o.namespace(), o.spec.allowed_namespaces.as_ref())),
        );
        let mut names: BTreeMap<String, String> = BTreeMap::new();
        let mut models: BTreeMap<String, String> = BTreeMap::new();
        for pool in &pools {
            names.insert(
                pool.name_any(),
                format!("this namespace's AIBackendPool {}", pool.name_any()),
            );
            for model in &pool.spec.models {
                models.insert(
                    model.clone(),
                    format!("this namespace's AIBackendPool {}", pool.name_any()),
                );
            }
        }
        let (mut shared_pools, mut shadowed) = (Vec::new(), Vec::new());
        for pool in granted_pools {
            let id = shared_id(&*pool);
            let why = names
                .get(&pool.name_any())
                .map(|owner| format!("not served in namespace {scope}: {owner} has the same name"))
                .or_else(|| {
                    pool.spec.models.iter().find_map(|m| {
                        models.get(m).map(|owner| {
                            format!(
                                "not served in namespace {scope}: model `{m}` is served by {owner}"
                            )
                        })
                    })
                });
            match why {
                Some(why) => shadowed.push((id, why)),
                None => {
                    names.insert(pool.name_any(), format!("AIBackendPool {id}"));
                    for model in &pool.spec.models {
                        models.insert(model.clone(), format!("AIBackendPool {id}"));
                    }
                    shared_pools.push(pool);
                }
            }
        }
        Self {
            pools,
            quotas: oldest_first(stores.quotas.state_filter(|o| in_scope(o.namespace()))),
            gateways: oldest_first(stores.gateways.state_filter(|o| in_scope(o.namespace()))),
            shared_pools,
            central_quotas: oldest_first(
                stores
                    .quotas
                    .state_filter(|o| granted(o.namespace(), o.spec.namespaces.as_ref())),
            ),
            shadowed,
        }
    }

    /// Compiles the scope, resolving Secrets from `secrets`; an object whose current spec
    /// does not compile keeps serving its last good version: from `memory` (this process's
    /// previous compile), else from its status (`lastGoodSpec`, written before a restart).
    pub fn compile(&self, scope: &str, secrets: &Store<Secret>, memory: &History) -> Compiled {
        let input = CompileInput {
            pools: (self.pools.iter().chain(&self.shared_pools))
                .map(|p| object(&**p, &p.spec))
                .collect(),
            quotas: (self.quotas.iter().chain(&self.central_quotas))
                .map(|q| object(&**q, &q.spec))
                .collect(),
            gateway: self.gateways.first().map(|g| object(&**g, &g.spec)),
            // Anonymous access only where `allowAnonymous: true` is written.
            anonymous: AnonymousAccess::OnlyWhenWritten,
        };
        let history = self.recall(scope, memory);
        let compilation = compile_with_history(&input, &history, &StoreSecrets::new(secrets));
        let mut findings: BTreeMap<(&'static str, String), Vec<Finding>> = BTreeMap::new();
        for problem in &compilation.problems {
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
        let (served, h) = (&compilation.served, &compilation.history);
        let mut serving = serving_of(scope, KIND_POOL, &self.pools, served, &h.pools);
        serving.extend(serving_of(
            scope,
            KIND_QUOTA,
            &self.quotas,
            served,
            &h.quotas,
        ));
        let gateways = serving_of(scope, KIND_GATEWAY, &self.gateways, served, &h.gateways);
        for (i, (key, mut entry)) in gateways.into_iter().enumerate() {
            if self.gateways.get(i).is_some_and(|g| g.name_any() == key.1) && i == 0 {
                entry.refuses_calls = entry.generation.is_none();
                entry.gateway = Some(GatewaySettings::of(&compilation.snapshot.gateway));
            }
            serving.insert(key, entry);
        }
        Compiled {
            snapshot: compilation.snapshot,
            findings,
            serving,
            history: compilation.history,
        }
    }

    /// The last good version of each object: this process's, else the one in its status.
    fn recall(&self, scope: &str, memory: &History) -> History {
        let pools: Vec<_> = self
            .pools
            .iter()
            .chain(&self.shared_pools)
            .cloned()
            .collect();
        let quotas: Vec<_> = (self.quotas.iter().chain(&self.central_quotas))
            .cloned()
            .collect();
        History {
            pools: recall(scope, &pools, &memory.pools, |p| {
                Some(&p.status.as_ref()?.served)
            }),
            quotas: recall(scope, &quotas, &memory.quotas, |q| {
                Some(&q.status.as_ref()?.served)
            }),
            gateways: recall(scope, &self.gateways, &memory.gateways, |g| {
                Some(&g.status.as_ref()?.served)
            }),
        }
    }
}

/// The last good version of each of `objects`: from `memory`, else from the served version in
/// its status (`lastGoodGeneration`, `lastGoodSpec`); a spec that no longer parses is ignored.
fn recall<K: Resource, S: serde::de::DeserializeOwned + Clone, C: Clone>(
    scope: &str,
    objects: &[Arc<K>],
    memory: &BTreeMap<String, LastGood<S, C>>,
    status: impl for<'k> Fn(&'k K) -> Option<&'k ServedVersion>,
) -> BTreeMap<String, LastGood<S, C>> {
    let mut out = BTreeMap::new();
    for object in objects {
        let id = id(scope, &**object);
        let last = memory.get(&id).cloned().or_else(|| {
            let served = status(object)?;
            let spec = serde_json::from_str(served.last_good_spec.as_ref()?)
                .inspect_err(|e| tracing::warn!(%id, error = %e, "ignoring a lastGoodSpec that does not parse"))
                .ok()?;
            Some(LastGood {
                generation: served.last_good_generation,
                spec: Some(spec),
                compiled: None,
            })
        });
        out.extend(last.map(|l| (id, l)));
    }
    out
}

/// `namespace/name`, as `compile()` keys objects (the object's own namespace: a shared
/// object keeps its home's).
fn id<K: Resource>(scope: &str, object: &K) -> String {
    let meta = object.meta();
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or(scope),
        meta.name.clone().unwrap_or_default()
    )
}

/// `namespace/name` of an object.
pub fn shared_id<K: Resource>(object: &K) -> String {
    id("", object)
}

/// What status says is served of each of `objects`, keyed by `(kind, name)`.
fn serving_of<K: Resource, S: serde::Serialize, C>(
    scope: &str,
    kind: &'static str,
    objects: &[Arc<K>],
    served: &BTreeMap<(&'static str, String), Served>,
    history: &BTreeMap<String, LastGood<S, C>>,
) -> BTreeMap<(&'static str, String), Serving> {
    let mut out = BTreeMap::new();
    for object in objects {
        let id = id(scope, &**object);
        let served = served
            .get(&(kind, id.clone()))
            .copied()
            .unwrap_or(Served::Nothing);
        let last_good = history.get(&id).and_then(|l| {
            let spec = serde_json::to_string(l.spec.as_ref()?).ok()?;
            Some((l.generation, spec))
        });
        let entry = Serving {
            generation: served.generation(object.meta().generation),
            last_good,
            ..Serving::default()
        };
        out.insert(
            (kind, object.meta().name.clone().unwrap_or_default()),
            entry,
        );
    }
    out
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
        generation: meta.generation,
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
    //    An object whose new generation is refused keeps serving its last good one.
    let objects = ScopeObjects::gather(&ctx.stores, &scope);
    let memory = ctx.history(&scope);
    let mut compiled = objects.compile(&scope, &ctx.stores.secrets, &memory);
    compiled.snapshot.namespace = Some(scope.clone());
    ctx.remember(&scope, std::mem::take(&mut compiled.history));
    // 3. Publish; a new version only when what sidecars run changes.
    let version = ctx
        .publisher
        .publish(&scope, std::mem::take(&mut compiled.snapshot));
    // 4. and 5. Status and Events, by the leader only.
    if *ctx.leader.borrow() {
        write::scope_status(&ctx, &scope, &objects, &compiled, version).await?;
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
