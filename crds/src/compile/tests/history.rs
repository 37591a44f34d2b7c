//! `compile_with_history()`: a refused generation keeps the last good one serving, a deleted
//! Secret keeps its last value, a conflicting pool never takes a model over, an `AIGateway`
//! with nothing to serve refuses every call, and a quota never disappears.

use std::collections::BTreeMap;

use super::support::{Secrets, secrets};
use super::{AnonymousAccess, CompileInput, History, ProblemReason, Served, compile_with_history};
use crate::manifest;
use crate::snapshot::SecretString;

const POOL_A: &str = "apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: owner, namespace: ns, creationTimestamp: '2025-01-01T00:00:00Z'}
spec:
  models: [gpt-4o]
  backends:
    - {name: ptu, url: https://ptu.example.com, apiKey: {secretRef: {name: paygo, key: k}}}
";
const POOL_B: &str = "apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: rival, namespace: ns, creationTimestamp: '2025-02-01T00:00:00Z'}
spec:
  models: [gpt-4o]
  backends:
    - {name: other-account, url: https://other.example.com}
";
const GATEWAY: &str = "apiVersion: spillway.dev/v1alpha1
kind: AIGateway
metadata: {name: gw, namespace: ns}
spec:
  identity:
    apiKeys: [{appId: batch, key: {env: BATCH_KEY}}]
";
const QUOTA: &str = "apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: q, namespace: ns}
spec: {appId: batch, tokensPerMinute: 1000}
";

/// The objects of `texts`, every one at generation `generation`.
fn input(texts: &[&str], generation: i64) -> CompileInput {
    let mut input = manifest::parse(&texts.join("---\n"))
        .expect("fixture")
        .input;
    for pool in &mut input.pools {
        pool.generation = Some(generation);
    }
    for quota in &mut input.quotas {
        quota.generation = Some(generation);
    }
    if let Some(gateway) = &mut input.gateway {
        gateway.generation = Some(generation);
    }
    input
}

/// Compiles `texts` at generation 1 and returns the history to carry on.
fn first(texts: &[&str]) -> History {
    let compiled = compile_with_history(&input(texts, 1), &History::default(), &secrets());
    assert!(compiled.problems.is_empty(), "{:#?}", compiled.problems);
    compiled.history
}

/// The history as an operator reads it back from status after a restart: specs only.
fn after_restart(mut history: History) -> History {
    history.pools.values_mut().for_each(|l| l.compiled = None);
    history.quotas.values_mut().for_each(|l| l.compiled = None);
    history
        .gateways
        .values_mut()
        .for_each(|l| l.compiled = None);
    history
}

#[test]
fn a_refused_pool_edit_keeps_the_last_good_generation_serving() {
    let history = first(&[POOL_A]);
    let broken = POOL_A.replace("https://ptu.example.com", "ptu.example.com");
    for memory in [history.clone(), after_restart(history)] {
        let compiled = compile_with_history(&input(&[&broken], 2), &memory, &secrets());
        assert_eq!(compiled.problems.len(), 1, "{:#?}", compiled.problems);
        assert_eq!(compiled.problems[0].field, "spec.backends[0].url");
        let served = compiled.served[&("AIBackendPool", "ns/owner".to_owned())];
        assert_eq!(
            served,
            Served::LastGood {
                generation: Some(1)
            }
        );
        assert_eq!(served.generation(Some(2)), Some(1));
        let pool = &compiled.snapshot.pools[0];
        assert_eq!(pool.backends[0].base_url, "https://ptu.example.com");
        let kept = &compiled.history.pools["ns/owner"];
        assert_eq!(kept.generation, Some(1), "the last good stays generation 1");
        assert!(kept.compiled.is_some());
    }
}

#[test]
fn a_new_object_that_never_compiled_serves_nothing() {
    let broken = POOL_A.replace("https://ptu.example.com", "ptu.example.com");
    let compiled = compile_with_history(&input(&[&broken], 1), &History::default(), &secrets());
    assert!(compiled.snapshot.pools.is_empty());
    assert_eq!(
        compiled.served[&("AIBackendPool", "ns/owner".to_owned())],
        Served::Nothing
    );
    assert!(compiled.history.pools.is_empty());
}

#[test]
fn a_deleted_secret_keeps_its_last_value_until_it_returns_and_a_rotation_takes_effect() {
    let history = first(&[POOL_A]);
    let none = Secrets(BTreeMap::new());
    let gone = compile_with_history(&input(&[POOL_A], 1), &history, &none);
    assert_eq!(gone.problems[0].reason, ProblemReason::SecretNotResolved);
    assert_eq!(
        gone.served[&("AIBackendPool", "ns/owner".to_owned())],
        Served::LastGood {
            generation: Some(1)
        }
    );
    let key = gone.snapshot.pools[0].backends[0].api_key.as_ref();
    assert_eq!(key.map(SecretString::expose), Some("k-paygo"));

    // Rotated while a bad edit is refused: the last good spec runs with the new key.
    let rotated = Secrets(BTreeMap::from([("paygo", "k-rotated")]));
    let broken = POOL_A.replace("https://ptu.example.com", "ptu.example.com");
    let compiled = compile_with_history(&input(&[&broken], 2), &gone.history, &rotated);
    let key = compiled.snapshot.pools[0].backends[0].api_key.as_ref();
    assert_eq!(key.map(SecretString::expose), Some("k-rotated"));

    // Gone after a restart: nothing to serve, but the spec is kept for when it returns.
    let restarted = compile_with_history(&input(&[POOL_A], 1), &after_restart(history), &none);
    assert!(restarted.snapshot.pools.is_empty());
    assert!(restarted.history.pools["ns/owner"].spec.is_some());
}

#[test]
fn a_conflicting_pool_never_takes_over_a_model_whose_owner_became_invalid() {
    let history = first(&[POOL_A]);
    let rival_alone = compile_with_history(&input(&[POOL_A, POOL_B], 1), &history, &secrets());
    assert_eq!(rival_alone.problems[0].reason, ProblemReason::ModelConflict);
    let broken = POOL_A.replace("https://ptu.example.com", "ptu.example.com");
    let none = Secrets(BTreeMap::new());
    // The owner refused, served from its last good; also after a restart with its Secret
    // gone, when it serves nothing at all, its last good spec still holds the model.
    for (memory, secrets) in [
        (history.clone(), &secrets()),
        (after_restart(history), &none),
    ] {
        let compiled = compile_with_history(&input(&[&broken, POOL_B], 2), &memory, secrets);
        let rival = compiled
            .problems
            .iter()
            .find(|p| p.name == "rival")
            .expect("the rival is refused");
        assert_eq!(rival.reason, ProblemReason::ModelConflict);
        assert!(rival.message.contains("ns/owner"), "{}", rival.message);
        assert!(
            compiled.snapshot.pools.iter().all(|p| p.name != "rival"),
            "the rival never serves gpt-4o"
        );
    }
}

#[test]
fn an_aigateway_without_any_version_that_compiles_refuses_every_call() {
    let none = Secrets(BTreeMap::new());
    let compiled = compile_with_history(&input(&[GATEWAY], 1), &History::default(), &none);
    let identity = &compiled.snapshot.gateway.identity;
    assert!(!identity.allow_anonymous, "never anonymous");
    let why = identity.refuse_all.as_deref().expect("refuses every call");
    assert!(why.contains("AIGateway ns/gw"), "{why}");
    assert!(!why.contains("BATCH_KEY"), "names no Secret: {why}");

    // With a last good version, a bad edit or a deleted Secret keeps its keys serving.
    let history = first(&[GATEWAY]);
    let bad = GATEWAY.replace("key: {env: BATCH_KEY}", "keySha256: not-hex");
    for (text, secrets) in [(bad.as_str(), &secrets()), (GATEWAY, &none)] {
        let compiled = compile_with_history(&input(&[text], 2), &history, secrets);
        assert!(!compiled.problems.is_empty());
        let identity = &compiled.snapshot.gateway.identity;
        assert_eq!(identity.refuse_all, None);
        assert!(!identity.allow_anonymous);
        assert_eq!(identity.api_keys.len(), 1);
        assert_eq!(identity.api_keys[0].app_id, "batch");
    }
}

#[test]
fn an_invalid_quota_edit_keeps_the_app_limited() {
    let history = first(&[QUOTA]);
    let bad = QUOTA.replace("tokensPerMinute: 1000", "tokensPerMinute: 0");
    let compiled = compile_with_history(&input(&[&bad], 2), &after_restart(history), &secrets());
    assert_eq!(compiled.problems.len(), 1);
    assert_eq!(
        compiled.snapshot.quotas.len(),
        1,
        "the quota never disappears"
    );
    assert_eq!(compiled.snapshot.quotas[0].tokens_per_minute, Some(1000));
}

#[test]
fn on_kubernetes_anonymous_access_exists_only_where_it_is_written() {
    let kubernetes = |texts: &[&str]| {
        let mut input = input(texts, 1);
        input.anonymous = AnonymousAccess::OnlyWhenWritten;
        compile_with_history(&input, &History::default(), &secrets())
            .snapshot
            .gateway
            .identity
    };
    // No AIGateway, or one without any method: every call refused, saying what to create.
    let none = kubernetes(&[POOL_A]);
    assert!(!none.allow_anonymous);
    assert!(
        none.refuse_all
            .as_deref()
            .is_some_and(|w| w.contains("no AIGateway")),
        "{none:?}"
    );
    let head =
        "apiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {name: gw, namespace: ns}\n";
    for spec in [
        "spec: {maxRequestBodyBytes: 4096}",
        "spec: {identity: {order: []}}",
    ] {
        let identity = kubernetes(&[&format!("{head}{spec}\n")]);
        assert!(!identity.allow_anonymous, "{spec}");
        let why = identity.refuse_all.expect("refuses every call");
        assert!(why.contains("configures no identity method"), "{why}");
    }
    // Written: anonymous; with methods: a credential is required, nothing is refused.
    let open = kubernetes(&[&format!(
        "{head}spec: {{identity: {{allowAnonymous: true}}}}\n"
    )]);
    assert!(
        open.allow_anonymous && open.refuse_all.is_none(),
        "{open:?}"
    );
    let keyed = kubernetes(&[GATEWAY]);
    assert!(
        !keyed.allow_anonymous && keyed.refuse_all.is_none(),
        "{keyed:?}"
    );
    // A standalone file keeps its documented default: no method configured, anonymous.
    let standalone = compile_with_history(&input(&[POOL_A], 1), &History::default(), &secrets());
    assert!(standalone.snapshot.gateway.identity.allow_anonymous);
}
