//! Compiling with memory: every object keeps serving its last good version while a newer one
//! is refused, so a bad edit never takes a model, a quota or authentication away.
//!
//! Input: the objects ([`CompileInput`]), each object's [`LastGood`] version ([`History`]: the
//! last spec that compiled, which the operator keeps in the object's status so it survives a
//! restart, and — within one process — what that spec compiled to, Secret values included), and
//! a [`SecretResolver`]. Output: a [`Compilation`]: the snapshot, the problems of each
//! object's *current* spec, which version of each object is served ([`Served`]), and the
//! history to pass to the next compile.
//!
//! For each object the first of these that compiles is served:
//! 1. the current spec;
//! 2. the last good spec, compiled again with today's Secrets (a rotated key takes effect);
//! 3. what the last good spec compiled to in this process (a deleted Secret keeps its last
//!    value serving until it returns or the object compiles again).
//!
//! Pools own their models oldest first; a pool that serves nothing but has a last good spec
//! still holds that spec's models, so a conflicting pool never takes a model over because its
//! owner became invalid. An `AIGateway` that serves nothing yields a gateway that refuses every
//! call ([`IdentityConfig::refuse_all`](crate::snapshot::IdentityConfig)): identity fails
//! closed, never open.

use std::collections::BTreeMap;

use super::validate::Checker;
use super::{
    AnonymousAccess, CompileInput, KIND_GATEWAY, KIND_POOL, KIND_QUOTA, Object, Problem,
    ProblemReason, SecretResolver, gateway, pool, quota,
};
use crate::snapshot::{GatewayConfig, IdentityConfig, PoolConfig, QuotaConfig, Snapshot};
use crate::v1alpha1::{AiBackendPoolSpec, AiGatewaySpec, TokenQuotaSpec};

/// The last version of one object that compiled.
#[derive(Clone, Debug, PartialEq)]
pub struct LastGood<S, C> {
    /// Its `metadata.generation`.
    pub generation: Option<i64>,
    /// Its spec (persisted by the operator in the object's status; holds no Secret values).
    pub spec: Option<S>,
    /// What it compiled to in this process (Secret values included; never persisted).
    pub compiled: Option<C>,
}

/// The last good version of every object, keyed by `namespace/name`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// `AIBackendPool`s.
    pub pools: BTreeMap<String, LastGood<AiBackendPoolSpec, PoolConfig>>,
    /// `AIGateway`s.
    pub gateways: BTreeMap<String, LastGood<AiGatewaySpec, GatewayConfig>>,
    /// `TokenQuota`s.
    pub quotas: BTreeMap<String, LastGood<TokenQuotaSpec, QuotaConfig>>,
}

/// Which version of an object the snapshot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Served {
    /// The current spec.
    Current,
    /// An earlier generation: the current spec was refused.
    LastGood {
        /// The generation served.
        generation: Option<i64>,
    },
    /// Nothing: no version of the object compiles.
    Nothing,
}

impl Served {
    /// The generation served, given the object's current one.
    pub fn generation(self, current: Option<i64>) -> Option<i64> {
        match self {
            Self::Current => current,
            Self::LastGood { generation } => generation,
            Self::Nothing => None,
        }
    }
}

/// The result of [`compile_with_history`].
#[derive(Clone, Debug)]
pub struct Compilation {
    /// The configuration to serve (version 0; the caller numbers versions).
    pub snapshot: Snapshot,
    /// Problems of the objects' current specs.
    pub problems: Vec<Problem>,
    /// What each object serves, keyed by `(kind, namespace/name)`.
    pub served: BTreeMap<(&'static str, String), Served>,
    /// The last good version of every object, for the next compile.
    pub history: History,
}

/// Compiles `input`, falling back per object to its last good version in `history`.
pub fn compile_with_history(
    input: &CompileInput,
    history: &History,
    secrets: &dyn SecretResolver,
) -> Compilation {
    let mut out = Compilation {
        snapshot: Snapshot::default(),
        problems: Vec::new(),
        served: BTreeMap::new(),
        history: History::default(),
    };
    out.snapshot.gateway = match &input.gateway {
        Some(object) => {
            let compile = |o: &Object<AiGatewaySpec>, check: &mut Checker| {
                Some(gateway::compile_gateway(o, secrets, input.anonymous, check))
            };
            let last = history.gateways.get(&object.id());
            let (served, config, kept) = serve(KIND_GATEWAY, object, last, compile, |_| true);
            out.record(KIND_GATEWAY, object, served, kept, |h| &mut h.gateways);
            config.unwrap_or_else(|| {
                refusing_gateway(format!(
                    "AIGateway {} cannot be applied and no earlier version of it can; see \
                     `kubectl describe aigateway {} -n {}`",
                    object.id(),
                    object.name,
                    object.namespace
                ))
            })
        }
        None if input.anonymous == AnonymousAccess::OnlyWhenWritten => refusing_gateway(
            "this namespace has no AIGateway saying how apps are identified; create one with \
             spec.identity (or spec.identity.allowAnonymous: true)"
                .to_owned(),
        ),
        None => GatewayConfig::default(),
    };
    compile_pools(input, history, secrets, &mut out);
    for object in &input.quotas {
        let compile =
            |o: &Object<TokenQuotaSpec>, check: &mut Checker| Some(quota::compile_quota(o, check));
        let last = history.quotas.get(&object.id());
        let (served, config, kept) = serve(KIND_QUOTA, object, last, compile, |_| true);
        out.record(KIND_QUOTA, object, served, kept, |h| &mut h.quotas);
        out.snapshot.quotas.extend(config);
    }
    out
}

/// Pools, oldest first, each claiming its models.
fn compile_pools(
    input: &CompileInput,
    history: &History,
    secrets: &dyn SecretResolver,
    out: &mut Compilation,
) {
    let mut ordered: Vec<&Object<AiBackendPoolSpec>> = input.pools.iter().collect();
    ordered.sort_by_key(|o| {
        (
            o.creation_timestamp.as_deref().unwrap_or(""),
            o.namespace.as_str(),
            o.name.as_str(),
        )
    });
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for object in ordered {
        let compile = |o: &Object<AiBackendPoolSpec>, check: &mut Checker| {
            let pool = pool::compile_pool(o, secrets, check);
            for (i, model) in o.spec.models.iter().enumerate() {
                if let Some(owner) = owners.get(model) {
                    check.problem(
                        format!("spec.models[{i}]"),
                        ProblemReason::ModelConflict,
                        format!(
                            "model `{model}` is already served by AIBackendPool {owner}; \
                             remove it from one of the pools"
                        ),
                    );
                }
            }
            pool
        };
        let free = |pool: &PoolConfig| pool.models.iter().all(|m| !owners.contains_key(m));
        let last = history.pools.get(&object.id());
        let (served, config, kept) = serve(KIND_POOL, object, last, compile, free);
        // What it serves holds its models; so does the last good spec of a pool that serves
        // nothing for now, so that no other pool takes them over meanwhile.
        let claimed = match (&config, kept.as_ref().and_then(|k| k.spec.as_ref())) {
            (Some(pool), _) => pool.models.clone(),
            (None, Some(spec)) => spec.models.clone(),
            (None, None) => Vec::new(),
        };
        for model in claimed {
            owners.entry(model).or_insert_with(|| object.id());
        }
        out.record(KIND_POOL, object, served, kept, |h| &mut h.pools);
        out.snapshot.pools.extend(config);
    }
}

impl Compilation {
    fn record<S, C>(
        &mut self,
        kind: &'static str,
        object: &Object<S>,
        (served, problems): (Served, Vec<Problem>),
        kept: Option<LastGood<S, C>>,
        slot: impl FnOnce(&mut History) -> &mut BTreeMap<String, LastGood<S, C>>,
    ) {
        self.problems.extend(problems);
        self.served.insert((kind, object.id()), served);
        if let Some(kept) = kept {
            slot(&mut self.history).insert(object.id(), kept);
        }
    }
}

/// What one object serves: `(served, problems of the current spec)`, its config, and its last
/// good version from now on.
#[allow(clippy::type_complexity)]
fn serve<S: Clone + PartialEq, C: Clone>(
    kind: &'static str,
    object: &Object<S>,
    last: Option<&LastGood<S, C>>,
    mut compile: impl FnMut(&Object<S>, &mut Checker) -> Option<C>,
    fits: impl Fn(&C) -> bool,
) -> ((Served, Vec<Problem>), Option<C>, Option<LastGood<S, C>>) {
    let mut check = Checker::new(kind, object);
    let current = compile(object, &mut check);
    let problems = check.finish();
    if let Some(config) = current.filter(|_| problems.is_empty()) {
        let kept = LastGood {
            generation: object.generation,
            spec: Some(object.spec.clone()),
            compiled: Some(config.clone()),
        };
        return ((Served::Current, problems), Some(config), Some(kept));
    }
    let Some(last) = last else {
        return ((Served::Nothing, problems), None, None);
    };
    let served = Served::LastGood {
        generation: last.generation,
    };
    let mut kept = last.clone();
    // 2. The last good spec with today's Secrets.
    if let Some(spec) = last.spec.as_ref().filter(|s| **s != object.spec) {
        let earlier = Object {
            spec: spec.clone(),
            generation: last.generation,
            ..object.clone()
        };
        let mut check = Checker::new(kind, &earlier);
        let again = compile(&earlier, &mut check);
        if let Some(config) = again.filter(|_| check.finish().is_empty()) {
            kept.compiled = Some(config.clone());
            return ((served, problems), Some(config), Some(kept));
        }
    }
    // 3. What it compiled to before, Secret values and all.
    match last.compiled.clone().filter(|c| fits(c)) {
        Some(config) => ((served, problems), Some(config), Some(kept)),
        None => ((Served::Nothing, problems), None, Some(kept)),
    }
}

/// A gateway that refuses every call with `why`, the rest at defaults: for a scope whose
/// `AIGateway` has no version that compiles, or (Kubernetes) that has none.
fn refusing_gateway(why: String) -> GatewayConfig {
    GatewayConfig {
        identity: IdentityConfig {
            refuse_all: Some(why),
            allow_anonymous: false,
            ..IdentityConfig::default()
        },
        ..GatewayConfig::default()
    }
}
