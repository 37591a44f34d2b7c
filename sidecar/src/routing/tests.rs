use std::sync::Arc;
use std::time::{Duration, Instant};

use spillway_crds::Snapshot;
use spillway_crds::compile::default_breaker;
use spillway_crds::snapshot::{
    BackendConfig, BackendType, COGNITIVE_SERVICES_SCOPE, EntraGrant, EntraIdConfig, PoolConfig,
    RetryConfig, SecretString, StatusRange, StreamUsage,
};

use super::{Attempt, PROBE_BUSY_RETRY, Pick, PoolRoutes, Routes};
use crate::breaker::{BreakerState, Outcome};

fn backend(name: &str, priority: u32, weight: u32) -> BackendConfig {
    BackendConfig {
        name: name.into(),
        kind: BackendType::AzureOpenAI,
        base_url: format!("http://127.0.0.1:9/{name}"),
        model: None,
        model_map: Default::default(),
        api_version: None,
        priority,
        weight,
        api_key: None,
        entra_id: None,
        breaker: default_breaker(),
        stream_usage: StreamUsage::Auto,
        timeout_ms: 30_000,
        pricing: None,
    }
}

fn pool(id: &str, models: &[&str], backends: Vec<BackendConfig>) -> PoolConfig {
    PoolConfig {
        id: format!("default/{id}"),
        name: id.into(),
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        backends,
        retry: RetryConfig {
            max_attempts: 3,
            status_ranges: vec![StatusRange { min: 429, max: 429 }],
            on_connection_failure: true,
            on_timeout: true,
            deadline_ms: 60_000,
        },
        max_output_tokens: None,
        prompt_cache_affinity: None,
    }
}

fn snapshot(pools: Vec<PoolConfig>) -> Snapshot {
    Snapshot {
        version: 1,
        pools,
        ..Snapshot::default()
    }
}

fn single_pool(backends: Vec<BackendConfig>) -> Routes {
    Routes::build(&snapshot(vec![pool("p", &["gpt-4o"], backends)]), None)
}

fn the_pool(routes: &Routes) -> &PoolRoutes {
    routes.pool("gpt-4o").expect("pool for gpt-4o")
}

/// Picks once and returns the backend index (the attempt is dropped unrecorded).
fn pick_index(pool: &PoolRoutes, now: Instant, tried: &[usize], rng: &mut fastrand::Rng) -> usize {
    match pool.pick(now, tried, rng) {
        Pick::Backend { index, .. } => index,
        Pick::Unavailable { retry_after } => panic!("unavailable for {retry_after:?}"),
    }
}

fn pick_attempt(pool: &PoolRoutes, now: Instant, rng: &mut fastrand::Rng) -> (usize, Attempt) {
    match pool.pick(now, &[], rng) {
        Pick::Backend { index, attempt, .. } => (index, attempt),
        Pick::Unavailable { retry_after } => panic!("unavailable for {retry_after:?}"),
    }
}

/// Opens backend `index`'s breaker at `now` with a 429 asking for `delay`.
fn trip(pool: &PoolRoutes, index: usize, now: Instant, delay: Duration) {
    let runtime = pool.runtime(index).expect("backend");
    let permit = runtime.breaker().admit(now).into_permit().expect("admits");
    let outcome = Outcome::Status {
        code: 429,
        retry_after: Some(delay),
    };
    assert!(permit.record(now, &outcome).is_some(), "trips {index}");
}

#[test]
fn weights_three_to_one() {
    let routes = single_pool(vec![backend("a", 1, 3), backend("b", 1, 1)]);
    let pool = the_pool(&routes);
    let mut rng = fastrand::Rng::with_seed(7);
    let now = Instant::now();
    let picks_a = (0..10_000)
        .filter(|_| pick_index(pool, now, &[], &mut rng) == 0)
        .count();
    assert!(
        (7_200..=7_800).contains(&picks_a),
        "a picked {picks_a} times"
    );
    assert_eq!(pool.runtime(0).expect("a").requests(), picks_a as u64);
    assert_eq!(pool.runtime(0).expect("a").in_flight(), 0);
}

#[test]
fn priority_two_only_when_priority_one_is_open() {
    let routes = single_pool(vec![
        backend("p1a", 1, 1),
        backend("p1b", 1, 1),
        backend("p2", 2, 100),
    ]);
    let pool = the_pool(&routes);
    let mut rng = fastrand::Rng::with_seed(1);
    let t0 = Instant::now();
    for _ in 0..200 {
        assert!(pick_index(pool, t0, &[], &mut rng) < 2);
    }
    trip(pool, 0, t0, Duration::from_secs(5));
    for _ in 0..200 {
        assert_eq!(pick_index(pool, t0, &[], &mut rng), 1);
    }
    trip(pool, 1, t0, Duration::from_secs(8));
    for _ in 0..200 {
        assert_eq!(
            pick_index(pool, t0 + Duration::from_secs(4), &[], &mut rng),
            2
        );
    }
    // p1a reopens at 5 s: its probe goes first, while the probe is out traffic spills again.
    let t5 = t0 + Duration::from_secs(5);
    let (index, mut probe) = pick_attempt(pool, t5, &mut rng);
    assert_eq!(index, 0);
    assert!(probe.is_probe());
    assert_eq!(pick_index(pool, t5, &[], &mut rng), 2);
    let transition = probe.record(t5, &Outcome::Success).expect("closes");
    assert_eq!(transition.to, BreakerState::Closed);
    drop(probe);
    for _ in 0..200 {
        assert_eq!(pick_index(pool, t5, &[], &mut rng), 0);
    }
}

#[test]
fn tried_backends_are_skipped_while_others_admit() {
    let routes = single_pool(vec![
        backend("a", 1, 1),
        backend("b", 1, 1),
        backend("c", 2, 1),
    ]);
    let pool = the_pool(&routes);
    let mut rng = fastrand::Rng::with_seed(3);
    let now = Instant::now();
    for _ in 0..100 {
        assert_eq!(pick_index(pool, now, &[0], &mut rng), 1);
        assert_eq!(
            pick_index(pool, now, &[0, 1], &mut rng),
            2,
            "spills to priority 2"
        );
        // All tried: nothing is picked again for the same call.
        assert!(matches!(
            pool.pick(now, &[0, 1, 2], &mut rng),
            Pick::Unavailable { .. }
        ));
    }
    // A tried backend is never picked again, even when the untried one is open.
    trip(pool, 2, now, Duration::from_secs(5));
    for _ in 0..100 {
        assert!(matches!(
            pool.pick(now, &[0, 1], &mut rng),
            Pick::Unavailable { .. }
        ));
    }
}

#[test]
fn a_single_backend_pool_is_tried_once_per_call() {
    let routes = single_pool(vec![backend("only", 1, 1)]);
    let pool = the_pool(&routes);
    let mut rng = fastrand::Rng::with_seed(4);
    assert_eq!(pick_index(pool, Instant::now(), &[], &mut rng), 0);
    assert!(matches!(
        pool.pick(Instant::now(), &[0], &mut rng),
        Pick::Unavailable { .. }
    ));
}

#[test]
fn all_open_reports_earliest_reopening() {
    let routes = single_pool(vec![backend("a", 1, 1), backend("b", 2, 1)]);
    let pool = the_pool(&routes);
    let mut rng = fastrand::Rng::with_seed(5);
    let t0 = Instant::now();
    trip(pool, 0, t0, Duration::from_secs(20));
    trip(pool, 1, t0, Duration::from_millis(5_500));
    let at = |offset: Duration| match pool.pick(t0 + offset, &[], &mut fastrand::Rng::with_seed(0))
    {
        Pick::Unavailable { retry_after } => retry_after,
        Pick::Backend { index, .. } => panic!("picked {index}"),
    };
    assert_eq!(at(Duration::ZERO), Duration::from_millis(5_500));
    assert_eq!(at(Duration::from_secs(2)), Duration::from_millis(3_500));
    // Half-open with the probe out: the other breaker's reopening counts.
    let probe = pool.pick(t0 + Duration::from_millis(5_500), &[], &mut rng);
    assert!(matches!(probe, Pick::Backend { index: 1, .. }));
    assert_eq!(at(Duration::from_secs(6)), Duration::from_secs(14));
    drop(probe);
}

#[test]
fn only_busy_probes_give_the_default_wait() {
    let routes = single_pool(vec![backend("a", 1, 1)]);
    let pool = the_pool(&routes);
    let mut rng = fastrand::Rng::with_seed(6);
    let t0 = Instant::now();
    trip(pool, 0, t0, Duration::from_secs(1));
    let later = t0 + Duration::from_secs(1);
    let (_, probe) = pick_attempt(pool, later, &mut rng);
    assert!(probe.is_probe());
    assert!(matches!(
        pool.pick(later, &[], &mut rng),
        Pick::Unavailable { retry_after } if retry_after == PROBE_BUSY_RETRY
    ));
    // A dropped probe frees the slot for the next request.
    drop(probe);
    assert_eq!(pick_index(pool, later, &[], &mut rng), 0);
}

#[test]
fn attempt_counts_and_records_once() {
    let routes = single_pool(vec![backend("a", 1, 1)]);
    let pool = the_pool(&routes);
    let runtime = Arc::clone(pool.runtime(0).expect("a"));
    let mut rng = fastrand::Rng::with_seed(8);
    let now = Instant::now();
    let (_, mut attempt) = pick_attempt(pool, now, &mut rng);
    assert_eq!(runtime.in_flight(), 1);
    let throttled = Outcome::Status {
        code: 429,
        retry_after: None,
    };
    assert!(attempt.record(now, &throttled).is_some());
    assert_eq!(
        attempt.record(now, &Outcome::Success),
        None,
        "second record ignored"
    );
    assert_eq!(runtime.in_flight(), 1, "in flight until dropped");
    drop(attempt);
    assert_eq!(runtime.in_flight(), 0);
    assert_eq!((runtime.requests(), runtime.failures()), (1, 1));
}

#[test]
fn models_map_to_pools() {
    let routes = Routes::build(
        &snapshot(vec![
            pool("chat", &["gpt-4o", "gpt-4o-mini"], vec![backend("a", 1, 1)]),
            pool(
                "embed",
                &["text-embedding-3-small", "gpt-4o"],
                vec![backend("e", 1, 1)],
            ),
        ]),
        None,
    );
    let id = |model: &str| routes.pool(model).map(|p| p.config().id.clone());
    assert_eq!(id("gpt-4o-mini").as_deref(), Some("default/chat"));
    assert_eq!(
        id("gpt-4o").as_deref(),
        Some("default/chat"),
        "first pool wins"
    );
    assert_eq!(
        id("text-embedding-3-small").as_deref(),
        Some("default/embed")
    );
    assert_eq!(id("unknown"), None);
    assert_eq!(routes.pools().len(), 2);
    assert_eq!(routes.version(), 1);
}

#[test]
fn reload_carries_breaker_state_for_unchanged_backends() {
    let backends = vec![backend("a", 1, 1), backend("b", 1, 1), backend("c", 2, 1)];
    let first = Routes::build(
        &snapshot(vec![pool("p", &["gpt-4o"], backends.clone())]),
        None,
    );
    let t0 = Instant::now();
    for index in 0..3 {
        trip(the_pool(&first), index, t0, Duration::from_secs(30));
    }
    let mut changed = backends;
    changed[0].weight = 9; // not part of the identity
    changed[0].priority = 3;
    changed[1].base_url = "http://127.0.0.1:9/moved".into();
    changed[2].breaker.rules[0].trip_duration_ms = 1_234;
    changed.push(backend("d", 1, 1));
    let second = Routes::build(
        &snapshot(vec![pool("p", &["gpt-4o"], changed)]),
        Some(&first),
    );
    let old = the_pool(&first);
    let new = the_pool(&second);
    let state =
        |pool: &PoolRoutes, index: usize| pool.runtime(index).expect("backend").breaker().state(t0);
    assert!(
        matches!(state(new, 0), BreakerState::Open { .. }),
        "carried over"
    );
    assert!(Arc::ptr_eq(
        old.runtime(0).expect("a"),
        new.runtime(0).expect("a")
    ));
    assert_eq!(state(new, 1), BreakerState::Closed, "url changed: fresh");
    assert_eq!(state(new, 2), BreakerState::Closed, "rules changed: fresh");
    assert_eq!(state(new, 3), BreakerState::Closed, "new backend");
    assert_eq!(new.runtime(0).expect("a").requests(), 0);
}

#[test]
fn reload_drops_removed_backends_and_other_pools() {
    let t0 = Instant::now();
    let first = single_pool(vec![backend("a", 1, 1), backend("b", 1, 1)]);
    trip(the_pool(&first), 0, t0, Duration::from_secs(30));
    // Removed, then re-added: the state does not come back.
    let without = single_pool_from(&first, vec![backend("b", 1, 1)]);
    let again = single_pool_from(&without, vec![backend("a", 1, 1), backend("b", 1, 1)]);
    let a = the_pool(&again).runtime(0).expect("a");
    assert_eq!(a.breaker().state(t0), BreakerState::Closed);
    // Same backend name in another pool id: not carried.
    let other = Routes::build(
        &snapshot(vec![pool("q", &["gpt-4o"], vec![backend("a", 1, 1)])]),
        Some(&first),
    );
    let a = the_pool(&other).runtime(0).expect("a");
    assert_eq!(a.breaker().state(t0), BreakerState::Closed);
}

fn single_pool_from(previous: &Routes, backends: Vec<BackendConfig>) -> Routes {
    let next = snapshot(vec![pool("p", &["gpt-4o"], backends)]);
    Routes::build(&next, Some(previous))
}

fn with_entra(mut backend: BackendConfig, client_id: &str) -> BackendConfig {
    backend.entra_id = Some(EntraIdConfig {
        tenant_id: Some("t".into()),
        client_id: Some(client_id.into()),
        authority_host: None,
        scope: COGNITIVE_SERVICES_SCOPE.into(),
        grant: EntraGrant::ClientSecret(SecretString::new("s")),
    });
    backend
}

#[test]
fn reload_keeps_the_token_cache_while_entra_settings_are_unchanged() {
    let t0 = Instant::now();
    let first = single_pool(vec![
        with_entra(backend("a", 1, 1), "c1"),
        backend("k", 1, 1),
    ]);
    let old = the_pool(&first).runtime(0).expect("a");
    assert!(
        the_pool(&first)
            .runtime(1)
            .expect("k")
            .credential()
            .is_none()
    );
    let cache = Arc::clone(
        old.credential()
            .expect("an Entra backend has a token cache"),
    );
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..64 {
        if pick_attempt(the_pool(&first), t0, &mut rng).0 == 0 {
            break;
        }
    }
    assert_eq!(old.requests(), 1);
    trip(the_pool(&first), 0, t0, Duration::from_secs(30));

    let same = single_pool_from(&first, vec![with_entra(backend("a", 2, 5), "c1")]);
    let carried = the_pool(&same).runtime(0).expect("a");
    assert!(
        Arc::ptr_eq(carried, old),
        "unchanged: the whole runtime is kept"
    );

    let changed = single_pool_from(&same, vec![with_entra(backend("a", 1, 1), "c2")]);
    let fresh = the_pool(&changed).runtime(0).expect("a");
    let new_cache = fresh.credential().expect("still an Entra backend");
    assert!(
        !Arc::ptr_eq(new_cache, &cache),
        "changed settings: a new cache"
    );
    assert!(
        Arc::ptr_eq(fresh.breaker(), old.breaker()),
        "the breaker is kept"
    );
    assert!(matches!(
        fresh.breaker().state(t0),
        BreakerState::Open { .. }
    ));
    assert_eq!((fresh.requests(), fresh.in_flight()), (1, 0));

    let keyed = single_pool_from(&changed, vec![backend("a", 1, 1)]);
    assert!(
        the_pool(&keyed)
            .runtime(0)
            .expect("a")
            .credential()
            .is_none()
    );
}

#[test]
fn credential_failures_count_as_connection_failures() {
    let routes = single_pool(vec![backend("a", 1, 1)]);
    let pool = the_pool(&routes);
    let t0 = Instant::now();
    for i in 0..5u64 {
        let (_, mut attempt) = pick_attempt(pool, t0, &mut fastrand::Rng::with_seed(i));
        attempt.record(t0, &Outcome::CredentialUnavailable);
    }
    let runtime = pool.runtime(0).expect("a");
    assert_eq!(runtime.failures(), 5);
    assert!(
        matches!(runtime.breaker().state(t0), BreakerState::Open { .. }),
        "the default `failing` rule trips on 5 connection-class failures"
    );
}

fn keyed(pool: &PoolRoutes, now: Instant, tried: &[usize], key: &str) -> usize {
    let mut rng = fastrand::Rng::with_seed(1);
    match pool.pick_keyed(
        now,
        tried,
        &mut rng,
        Some(super::stable_hash(key.as_bytes())),
    ) {
        Pick::Backend { index, .. } => index,
        Pick::Unavailable { retry_after } => panic!("unavailable for {retry_after:?}"),
    }
}

#[test]
fn an_affinity_key_keeps_to_one_backend_and_keys_spread_by_weight() {
    let routes = single_pool(vec![
        backend("a", 1, 3),
        backend("b", 1, 1),
        backend("spill", 2, 1),
    ]);
    let pool = the_pool(&routes);
    let now = Instant::now();
    let mut on_a = 0;
    for k in 0..4_000 {
        let key = format!("session-{k}");
        let first = keyed(pool, now, &[], &key);
        assert_ne!(first, 2, "priority 2 only on spillover");
        for _ in 0..3 {
            assert_eq!(keyed(pool, now, &[], &key), first, "{key} stays put");
        }
        on_a += usize::from(first == 0);
    }
    assert!(
        (2_800..=3_200).contains(&on_a),
        "a holds {on_a} of 4000 keys (weight 3 of 4)"
    );
    // The same key lands on the same backend in another replica (the hash is stable).
    let again = single_pool(vec![backend("a", 1, 3), backend("b", 1, 1)]);
    for k in 0..100 {
        let key = format!("session-{k}");
        assert_eq!(
            keyed(the_pool(&again), now, &[], &key),
            keyed(pool, now, &[], &key)
        );
    }
}

#[test]
fn breakers_and_retries_win_over_affinity() {
    let routes = single_pool(vec![
        backend("a", 1, 1),
        backend("b", 1, 1),
        backend("c", 1, 1),
        backend("spill", 2, 1),
    ]);
    let pool = the_pool(&routes);
    let now = Instant::now();
    let keys: Vec<String> = (0..300).map(|k| format!("k{k}")).collect();
    let before: Vec<usize> = keys.iter().map(|k| keyed(pool, now, &[], k)).collect();
    trip(pool, 0, now, Duration::from_secs(30));
    for (key, was) in keys.iter().zip(&before) {
        let now_on = keyed(pool, now, &[], key);
        if *was == 0 {
            assert!(
                now_on == 1 || now_on == 2,
                "{key} moved off the open backend"
            );
        } else {
            assert_eq!(now_on, *was, "{key} did not move: its backend admits");
        }
        // A retry never goes back to a tried backend, key or not.
        assert_ne!(keyed(pool, now, &[now_on], key), now_on);
    }
    trip(pool, 1, now, Duration::from_secs(30));
    trip(pool, 2, now, Duration::from_secs(30));
    assert_eq!(keyed(pool, now, &[], "k1"), 3, "spillover to priority 2");
}
