//! The watches that drive reconciliation.
//!
//! One reflector per kind (Namespaces, `AIBackendPool`, `TokenQuota`, `AIGateway`, Secrets)
//! fills the [`Stores`] and maps each change to its scope (namespace); a Secret change counts
//! only when an object of its namespace references it. A pool or quota shared with other
//! namespaces (or shared before this change), and a Secret of a shared pool, concern every
//! namespace; a namespace change (its labels decide what is granted to it) also concerns the
//! namespaces that hold shared objects (their status lists their users). Sidecar count changes and a newly won
//! leadership also queue scopes. kube-runtime's applier debounces the queue, runs one
//! reconcile per scope at a time, and requeues on the reconciler's `Action`.

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::stream::{self, BoxStream};
use futures_util::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::runtime::controller::{self, ReconcileRequest, applier};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use spillway_crds::v1alpha1::{AiBackendPool, AiGateway, AllowedNamespaces, TokenQuota};
use tokio::sync::{broadcast, watch};

use super::{Context, Stores, error_policy, reconcile};
use crate::secrets::referenced_secrets;

type Queue = BoxStream<'static, Result<ReconcileRequest<Namespace>, watcher::Error>>;

/// What to watch.
#[derive(Clone, Debug, Default)]
pub struct WatchScope {
    /// Only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Only Secrets with these labels (a label selector); all Secrets when `None`.
    pub secret_labels: Option<String>,
}

/// The stores plus the streams that fill them; poll the streams (via [`run`]) to fill the
/// stores.
pub struct Watches {
    /// The stores.
    pub stores: Stores,
    streams: Vec<Queue>,
}

fn scope_ref(namespace: Option<String>) -> Option<ReconcileRequest<Namespace>> {
    namespace.map(|ns| ObjectRef::<Namespace>::new(&ns).into())
}

fn api<K>(client: &Client, scope: &WatchScope) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match &scope.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// `namespace/name` of the pools and quotas other namespaces may use, as last seen: a change
/// of one of them (or of one that was shared before the change) concerns every namespace.
#[derive(Clone, Debug, Default)]
pub struct SharedObjects(Arc<Mutex<BTreeSet<String>>>);

impl SharedObjects {
    /// Notes whether `id` is shared now; true when it is or was.
    fn note(&self, id: String, shared: bool) -> bool {
        let mut ids = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if shared {
            ids.insert(id);
            true
        } else {
            ids.remove(&id)
        }
    }

    /// The namespaces holding shared objects.
    fn homes(&self) -> BTreeSet<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter_map(|id| id.split_once('/').map(|(ns, _)| ns.to_owned()))
            .collect()
    }
}

/// Every namespace of `namespaces`, as requests.
fn every_scope(
    namespaces: &Store<Namespace>,
) -> Vec<Result<ReconcileRequest<Namespace>, watcher::Error>> {
    namespaces
        .state()
        .iter()
        .map(|ns| Ok(ObjectRef::from_obj(&**ns).into()))
        .collect()
}

/// A reflector of `K` whose changes queue the object's namespace, or every namespace when
/// the object is shared with others (or was, before this change: revoking a grant must reach
/// the namespaces that lose it).
fn reflect_shared<K>(
    api: Api<K>,
    namespaces: Store<Namespace>,
    shared: SharedObjects,
    is_shared: fn(&K) -> bool,
) -> (Store<K>, Queue)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, Default::default()).default_backoff())
        .touched_objects()
        .map_ok(move |object: K| {
            let id = format!(
                "{}/{}",
                object.namespace().unwrap_or_default(),
                object.name_any()
            );
            let requests = if shared.note(id, is_shared(&object)) {
                every_scope(&namespaces)
            } else {
                scope_ref(object.namespace()).into_iter().map(Ok).collect()
            };
            stream::iter(requests)
        })
        .try_flatten()
        .boxed();
    (store, stream)
}

/// A reflector of `K` whose changes queue the object's namespace.
fn reflect<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, Queue)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync,
{
    let (store, writer) = reflector::store();
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff())
        .touched_objects()
        .try_filter_map(|object: K| std::future::ready(Ok(scope_ref(object.namespace()))))
        .boxed();
    (store, stream)
}

impl Watches {
    /// Sets up the reflectors; nothing is fetched until [`run`] polls them.
    pub fn new(client: &Client, scope: &WatchScope) -> Self {
        let namespaces_config = match &scope.namespace {
            Some(ns) => watcher::Config::default().fields(&format!("metadata.name={ns}")),
            None => watcher::Config::default(),
        };
        let (namespaces, ns_writer) = reflector::store::<Namespace>();
        let shared = SharedObjects::default();
        let homes = shared.clone();
        // A namespace's labels decide which shared objects it gets; the namespaces holding
        // shared objects list their users in status.
        let ns_stream = reflector::reflector(
            ns_writer,
            watcher(Api::<Namespace>::all(client.clone()), namespaces_config).default_backoff(),
        )
        .touched_objects()
        .map_ok(move |ns: Namespace| {
            let mut scopes = homes.homes();
            scopes.insert(ns.name_any());
            stream::iter(
                scopes
                    .into_iter()
                    .map(|scope| Ok(ObjectRef::<Namespace>::new(&scope).into()))
                    .collect::<Vec<_>>(),
            )
        })
        .try_flatten()
        .boxed();
        let (pools, pool_stream) = reflect_shared(
            api::<AiBackendPool>(client, scope),
            namespaces.clone(),
            shared.clone(),
            |p| {
                p.spec
                    .allowed_namespaces
                    .as_ref()
                    .is_some_and(AllowedNamespaces::is_shared)
            },
        );
        let (quotas, quota_stream) = reflect_shared(
            api::<TokenQuota>(client, scope),
            namespaces.clone(),
            shared.clone(),
            |q| {
                q.spec
                    .namespaces
                    .as_ref()
                    .is_some_and(AllowedNamespaces::is_shared)
            },
        );
        let (gateways, gateway_stream) =
            reflect(api::<AiGateway>(client, scope), Default::default());
        // Helm release records and token Secrets are large and never hold backend keys.
        let mut secret_config = watcher::Config::default()
            .fields("type!=helm.sh/release.v1,type!=kubernetes.io/service-account-token");
        if let Some(labels) = &scope.secret_labels {
            secret_config = secret_config.labels(labels);
        }
        let (secrets, secret_writer) = reflector::store::<Secret>();
        let referencing = (pools.clone(), gateways.clone(), namespaces.clone());
        let secret_stream = reflector::reflector(
            secret_writer,
            watcher(api::<Secret>(client, scope), secret_config)
                .default_backoff()
                .modify(|secret| secret.managed_fields_mut().clear()),
        )
        .touched_objects()
        .map_ok(move |secret: Secret| {
            let requests = match references(&secret, &referencing.0, &referencing.1) {
                // A shared pool's key concerns every namespace that may use the pool.
                Reference::Shared => every_scope(&referencing.2),
                Reference::Local => scope_ref(secret.namespace()).into_iter().map(Ok).collect(),
                Reference::None => Vec::new(),
            };
            stream::iter(requests)
        })
        .try_flatten()
        .boxed();
        let stores = Stores {
            namespaces,
            pools,
            quotas,
            gateways,
            secrets,
        };
        let streams = vec![
            ns_stream,
            pool_stream,
            quota_stream,
            gateway_stream,
            secret_stream,
        ];
        Self { stores, streams }
    }
}

/// Who references a Secret.
enum Reference {
    /// Nothing in its namespace.
    None,
    /// Objects of its namespace only.
    Local,
    /// A pool its namespace shares with others.
    Shared,
}

fn references(
    secret: &Secret,
    pools: &Store<AiBackendPool>,
    gateways: &Store<AiGateway>,
) -> Reference {
    let (namespace, name) = (secret.namespace(), secret.name_any());
    let here = |ns: Option<String>| ns == namespace;
    let pools: Vec<_> = pools
        .state_filter(|p| here(p.namespace()))
        .into_iter()
        .filter(|p| referenced_secrets(&p.spec).contains(&name))
        .collect();
    if pools.iter().any(|p| {
        p.spec
            .allowed_namespaces
            .as_ref()
            .is_some_and(AllowedNamespaces::is_shared)
    }) {
        return Reference::Shared;
    }
    let local = !pools.is_empty()
        || gateways
            .state_filter(|g| here(g.namespace()))
            .iter()
            .any(|g| referenced_secrets(&g.spec).contains(&name));
    if local {
        Reference::Local
    } else {
        Reference::None
    }
}

/// Scopes whose sidecars changed.
fn sidecar_changes(changes: broadcast::Receiver<String>) -> Queue {
    stream::unfold(changes, |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(scope) => return Some((Ok(ObjectRef::<Namespace>::new(&scope).into()), rx)),
                // Missed some: the periodic resync covers them.
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    })
    .boxed()
}

/// Every scope, each time this replica becomes the leader (it then owns status).
fn leadership_won(leader: watch::Receiver<bool>, namespaces: Store<Namespace>) -> Queue {
    stream::unfold(leader, |mut rx| async move {
        rx.changed().await.ok()?;
        let leads = *rx.borrow_and_update();
        Some((leads, rx))
    })
    .filter(|leads| std::future::ready(*leads))
    .flat_map(move |_| {
        let all: Vec<Result<ReconcileRequest<Namespace>, watcher::Error>> = namespaces
            .state()
            .iter()
            .map(|ns| Ok(ObjectRef::from_obj(&**ns).into()))
            .collect();
        stream::iter(all)
    })
    .boxed()
}

/// Runs reconciliation until `shutdown` resolves.
pub async fn run(watches: Watches, ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send) {
    let Watches {
        stores,
        mut streams,
    } = watches;
    streams.push(sidecar_changes(ctx.sidecars.changes()));
    streams.push(leadership_won(
        ctx.leader.clone(),
        stores.namespaces.clone(),
    ));
    let queue = stream::select_all(streams);
    let config = controller::Config::default().debounce(Duration::from_millis(200));
    let runs = applier(
        |namespace, ctx| Box::pin(reconcile(namespace, ctx)),
        error_policy,
        ctx,
        stores.namespaces,
        queue,
        config,
    )
    .take_until(shutdown);
    runs.for_each(|result| async move {
        match result {
            Ok((scope, action)) => tracing::debug!(scope = %scope.name, ?action, "reconciled"),
            Err(controller::Error::ObjectNotFound(scope)) => {
                tracing::debug!(%scope, "namespace not watched or gone; skipped");
            }
            Err(error) => tracing::warn!(%error, "reconcile queue"),
        }
    })
    .await;
}
