//! Writing status and Events for the objects of one scope.
//!
//! Input: the scope's objects, the findings against them, the published version, the sidecar
//! counts and the live state of the scope's sidecars across all replicas. Output: `PATCH
//! …/status` (merge) for each object whose status differs from what it has — or from what
//! this replica last wrote, as the store may lag behind our own writes — spaced by a
//! [`WriteLimiter`], an Event for each `Ready` transition, and for pools a `BreakerOpen` /
//! `BreakerClosed` Event when a backend trips or recovers. Event and status texts come from
//! `Problem` messages, which name Secrets and keys but never values.
//!
//! Live fields change with every sidecar report; the registry spaces the signals that lead
//! here (see `crate::sidecars`), so they are written every few seconds at most, not per
//! report.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use spillway_crds::v1alpha1::{AiBackendPool, AllowedNamespaces, Condition, SharedUse};
use tokio::time::Instant;

use super::{
    Compiled, Context, Error, KIND_GATEWAY, KIND_POOL, KIND_QUOTA, ScopeObjects, shared_id,
};
use crate::status::SyncCounts;
use crate::status::live::{self, LiveSidecar};
use crate::status::{self, Observed, Serving, Transition};

/// Spaces status writes so a burst (a busy namespace, many sidecars reporting) does not flood
/// the API server.
#[derive(Debug)]
pub struct WriteLimiter {
    next: tokio::sync::Mutex<Instant>,
    interval: Duration,
}

impl WriteLimiter {
    /// At most one write per `interval`.
    pub fn new(interval: Duration) -> Self {
        Self {
            next: tokio::sync::Mutex::new(Instant::now()),
            interval,
        }
    }

    /// Waits for the next free slot.
    pub async fn wait(&self) {
        let slot = {
            let mut next = self.next.lock().await;
            let slot = (*next).max(Instant::now());
            *next = slot + self.interval;
            slot
        };
        tokio::time::sleep_until(slot).await;
    }
}

type Key = (&'static str, String, String);

/// The status this replica last wrote, per `(kind, namespace, name)`, with the
/// `resourceVersion` the object had before that write. While the store still shows that
/// version, it has not seen our write yet and the written status is the one to compare with.
#[derive(Debug, Default)]
pub(super) struct Written(Mutex<BTreeMap<Key, (Option<String>, serde_json::Value)>>);

impl Written {
    fn get(&self, key: &Key, stored_version: Option<&String>) -> Option<serde_json::Value> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key)
            .filter(|(before, _)| before.as_ref() == stored_version)
            .map(|(_, status)| status.clone())
    }

    fn put(&self, key: Key, value: (Option<String>, serde_json::Value)) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key, value);
    }

    /// Forgets objects of `scope` that are gone.
    fn retain(&self, scope: &str, alive: &[(&'static str, String)]) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|(kind, namespace, name), _| {
                namespace != scope || alive.iter().any(|(k, n)| k == kind && n == name)
            });
    }
}

/// Writes the status of every object of `scope`.
pub(super) async fn scope_status(
    ctx: &Context,
    scope: &str,
    objects: &ScopeObjects,
    compiled: &Compiled,
    version: u64,
) -> Result<(), Error> {
    let (findings, serving) = (&compiled.findings, &compiled.serving);
    let nothing = Serving::default();
    let now = Timestamp::now().to_string();
    let counts: SyncCounts = ctx.sidecars.counts(scope, version, Instant::now());
    let sidecars: Vec<LiveSidecar> = ctx.sidecars.live_sidecars(scope, Instant::now());
    let observed = |kind: &'static str, generation: Option<i64>, name: String| Observed {
        generation,
        findings: findings
            .get(&(kind, name.clone()))
            .map_or(&[][..], Vec::as_slice),
        serving: serving.get(&(kind, name)).unwrap_or(&nothing),
        version,
        now: &now,
    };
    for pool in &objects.pools {
        let observed = observed(KIND_POOL, pool.meta().generation, pool.name_any());
        let backends: Vec<&str> = pool.spec.backends.iter().map(|b| b.name.as_str()).collect();
        let breakers = live::pool_breakers(&pool.name_any(), &backends, &sidecars);
        let uses = shared_uses(ctx, pool);
        let desired = |previous: Option<&_>| {
            let mut status = status::pool_status(&pool.spec, &observed, counts, breakers, previous);
            status.shared = (!uses.is_empty()).then(|| {
                u32::try_from(uses.iter().filter(|u| u.served).count()).unwrap_or(u32::MAX)
            });
            status.shared_with = uses;
            status
        };
        write_object(ctx, KIND_POOL, &**pool, pool.status.as_ref(), desired).await?;
    }
    for quota in &objects.quotas {
        let observed = observed(KIND_QUOTA, quota.meta().generation, quota.name_any());
        let tokens = live::quota_tokens(
            &quota.name_any(),
            quota.spec.app_id.as_deref(),
            quota.spec.tokens_per_minute,
            &sidecars,
        );
        let periods = status::quota_periods(&quota.name_any(), &quota.spec, &sidecars);
        let budgets = status::quota_budgets(&quota.name_any(), &quota.spec, &sidecars);
        let desired = |previous: Option<&_>| {
            let mut status = status::quota_status(&observed, tokens, periods, previous);
            status.budgets = budgets;
            status
        };
        write_object(ctx, KIND_QUOTA, &**quota, quota.status.as_ref(), desired).await?;
    }
    for gateway in &objects.gateways {
        let observed = observed(KIND_GATEWAY, gateway.meta().generation, gateway.name_any());
        let desired = |previous: Option<&_>| status::gateway_status(&observed, previous);
        write_object(
            ctx,
            KIND_GATEWAY,
            &**gateway,
            gateway.status.as_ref(),
            desired,
        )
        .await?;
    }
    let alive: Vec<(&'static str, String)> =
        (objects.pools.iter().map(|o| (KIND_POOL, o.name_any())))
            .chain(objects.quotas.iter().map(|o| (KIND_QUOTA, o.name_any())))
            .chain(
                objects
                    .gateways
                    .iter()
                    .map(|o| (KIND_GATEWAY, o.name_any())),
            )
            .collect();
    ctx.written.retain(scope, &alive);
    Ok(())
}

/// The namespaces a shared pool is granted to (besides its own), and what each makes of it.
fn shared_uses(ctx: &Context, pool: &AiBackendPool) -> Vec<SharedUse> {
    let is_shared = pool
        .spec
        .allowed_namespaces
        .as_ref()
        .is_some_and(AllowedNamespaces::is_shared);
    if !is_shared {
        return Vec::new();
    }
    let (id, home) = (shared_id(pool), pool.namespace().unwrap_or_default());
    let mut uses = Vec::new();
    for namespace in ctx.stores.namespaces.state() {
        let name = namespace.name_any();
        if name == home {
            continue;
        }
        let objects = ScopeObjects::gather(&ctx.stores, &name);
        if objects.shared_pools.iter().any(|p| shared_id(&**p) == id) {
            let version = ctx.publisher.current(&name).map_or(0, |s| s.version);
            let counts = ctx.sidecars.counts(&name, version, Instant::now());
            uses.push(SharedUse {
                namespace: name,
                served: true,
                sidecars: Some(counts.to_string()),
                reason: None,
            });
        } else if let Some((_, why)) = objects.shadowed.iter().find(|(i, _)| *i == id) {
            uses.push(SharedUse {
                namespace: name,
                served: false,
                sidecars: None,
                reason: Some(why.clone()),
            });
        }
    }
    uses.sort_by(|a, b| a.namespace.cmp(&b.namespace));
    uses
}

/// Computes the desired status from the one to compare with, and writes it if it differs.
async fn write_object<K, S>(
    ctx: &Context,
    kind: &'static str,
    object: &K,
    stored: Option<&S>,
    desired: impl FnOnce(Option<&S>) -> S,
) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
    S: Clone + Serialize + DeserializeOwned + PartialEq + HasConditions,
{
    let previous = previous_status(ctx, kind, object, stored);
    let desired = desired(previous.as_ref());
    apply(ctx, kind, object, previous.as_ref(), &desired).await
}

fn key<K: Resource>(kind: &'static str, object: &K) -> Key {
    let meta = object.meta();
    (
        kind,
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default(),
    )
}

/// The status to compare with: what we last wrote if it is newer than what the store shows.
fn previous_status<K: Resource, S: Clone + Serialize + DeserializeOwned>(
    ctx: &Context,
    kind: &'static str,
    object: &K,
    stored: Option<&S>,
) -> Option<S> {
    ctx.written
        .get(&key(kind, object), object.meta().resource_version.as_ref())
        .and_then(|value| serde_json::from_value(value).ok())
        .or_else(|| stored.cloned())
}

async fn apply<K, S>(
    ctx: &Context,
    kind: &'static str,
    object: &K,
    previous: Option<&S>,
    desired: &S,
) -> Result<(), Error>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
    S: Serialize + PartialEq + HasConditions,
{
    if previous == Some(desired) {
        return Ok(());
    }
    let (kind_, namespace, name) = key(kind, object);
    ctx.writes.wait().await;
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &namespace);
    let patch = serde_json::json!({ "status": desired });
    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::WriteStatus {
            kind,
            namespace: namespace.clone(),
            name: name.clone(),
            source,
        })?;
    ctx.metrics.status_writes.inc();
    let before = object.meta().resource_version.clone();
    ctx.written.put(
        (kind_, namespace.clone(), name.clone()),
        (before, patch["status"].clone()),
    );
    let before = previous.map_or(&[][..], HasConditions::conditions);
    let transitions = status::transition(before, desired.conditions())
        .into_iter()
        .map(|t| (t, "Reconcile"))
        .chain(
            desired
                .live_transitions(previous)
                .into_iter()
                .map(|t| (t, "Observe")),
        );
    for (transition, action) in transitions {
        publish_event(ctx, object, transition, action).await;
    }
    Ok(())
}

/// Publishes one Event about `object`; a failure is logged, not returned.
async fn publish_event<K>(ctx: &Context, object: &K, transition: Transition, action: &str)
where
    K: Resource<DynamicType = ()>,
{
    let event = Event {
        type_: if transition.normal {
            EventType::Normal
        } else {
            EventType::Warning
        },
        reason: transition.reason,
        note: Some(transition.note),
        action: action.into(),
        secondary: None,
    };
    let reference = object.object_ref(&());
    // A second reference to the same object, narrowed to the part the Event is about: the
    // recorder folds Events by reason and references, so two backends' `BreakerOpen` stay two.
    let event = Event {
        secondary: transition.subject.map(|field_path| ObjectReference {
            field_path: Some(field_path),
            ..reference.clone()
        }),
        ..event
    };
    if let Err(error) = ctx.recorder.publish(&event, &reference).await {
        let meta = object.meta();
        tracing::warn!(namespace = meta.namespace, name = meta.name, %error, "cannot publish an Event");
    }
}

/// Status types with conditions.
pub(super) trait HasConditions: Sized {
    fn conditions(&self) -> &[Condition];

    /// Events for changes of live state since `previous`.
    fn live_transitions(&self, _previous: Option<&Self>) -> Vec<Transition> {
        Vec::new()
    }
}

impl HasConditions for spillway_crds::v1alpha1::AiBackendPoolStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    fn live_transitions(&self, previous: Option<&Self>) -> Vec<Transition> {
        let before = previous.map_or(&[][..], |p| &p.backend_states[..]);
        live::breaker_transitions(before, &self.backend_states)
    }
}

impl HasConditions for spillway_crds::v1alpha1::TokenQuotaStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}

impl HasConditions for spillway_crds::v1alpha1::AiGatewayStatus {
    fn conditions(&self) -> &[Condition] {
        &self.conditions
    }
}
