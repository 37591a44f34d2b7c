//! Every problem case of `compile()`, each checked for its reason, field and message.

mod access;
mod audit;
mod cors;
mod entra;
mod history;
mod pricing;
mod support;

use super::*;
use crate::manifest;
use crate::snapshot::{SecretString, TripThreshold};
use crate::v1alpha1::{BreakerRule, CircuitBreaker, ErrorReason, RetryPolicy, StatusCodeRange};
use support::secrets;

const POOL: &str = r#"
apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: gpt4o, namespace: team-a}
spec:
  models: [gpt-4o, gpt-4o-mini]
  backends:
    - name: ptu
      url: https://ptu.example.com/
      apiKey: {env: PTU_KEY}
      modelMap: {gpt-4o: gpt4o-ptu}
    - name: paygo
      type: OpenAI
      url: http://127.0.0.1:9000
      priority: 2
      weight: 3
      apiKey: {secretRef: {name: paygo, key: key}}
      timeout: 5s
"#;

fn pool_with(edit: &str) -> CompileInput {
    let text = format!("{POOL}{edit}");
    manifest::parse(&text).expect("fixture parses").input
}

fn problems_of(input: &CompileInput) -> Vec<Problem> {
    compile(input, &secrets()).1
}

fn only_problem(input: &CompileInput) -> Problem {
    let (snapshot, problems) = compile(input, &secrets());
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        snapshot.pools.is_empty(),
        "a pool with a problem must not be served"
    );
    problems.into_iter().next().expect("one")
}

fn edited(f: impl FnOnce(&mut AiBackendPoolSpec)) -> CompileInput {
    let mut input = pool_with("");
    f(&mut input.pools[0].spec);
    input
}

#[test]
fn valid_pool_compiles_with_defaults_applied() {
    let (snapshot, problems) = compile(&pool_with(""), &secrets());
    assert!(problems.is_empty(), "{problems:#?}");
    let pool = &snapshot.pools[0];
    assert_eq!(pool.id, "team-a/gpt4o");
    assert_eq!(pool.retry.max_attempts, 3);
    assert!(pool.retry.retries_status(429) && pool.retry.retries_status(503));
    assert!(!pool.retry.retries_status(400));
    let ptu = &pool.backends[0];
    assert_eq!(ptu.base_url, "https://ptu.example.com");
    assert_eq!(
        ptu.api_key.as_ref().map(SecretString::expose),
        Some("k-ptu")
    );
    assert_eq!(ptu.upstream_model("gpt-4o"), "gpt4o-ptu");
    assert_eq!(ptu.upstream_model("gpt-4o-mini"), "gpt-4o-mini");
    assert_eq!(ptu.breaker, default_breaker());
    assert_eq!(ptu.timeout_ms, 60_000);
    let paygo = &pool.backends[1];
    assert_eq!(paygo.base_url, "http://127.0.0.1:9000/v1");
    assert_eq!(
        (paygo.priority, paygo.weight, paygo.timeout_ms),
        (2, 3, 5_000)
    );
    assert_eq!(
        snapshot
            .pool_for_model("gpt-4o-mini")
            .map(|p| p.name.as_str()),
        Some("gpt4o")
    );
    assert!(snapshot.pool_for_model("gpt-35").is_none());
    assert!(
        !format!("{snapshot:?}").contains("k-ptu"),
        "secrets never print"
    );
}

#[test]
fn empty_models_and_backends() {
    let p = only_problem(&edited(|s| {
        s.models.clear();
        s.backends[0].model_map.clear();
    }));
    assert_eq!(
        (p.field.as_str(), p.reason),
        ("spec.models", ProblemReason::InvalidSpec)
    );
    let p = only_problem(&edited(|s| s.backends.clear()));
    assert_eq!(p.field, "spec.backends");
    assert!(p.message.contains("at least one backend"));
}

#[test]
fn duplicate_model_and_backend_names() {
    let p = only_problem(&edited(|s| s.models.push("gpt-4o".into())));
    assert_eq!(p.field, "spec.models[2]");
    let p = only_problem(&edited(|s| s.backends[1].name = "ptu".into()));
    assert_eq!(p.field, "spec.backends[1].name");
    assert!(p.message.contains("used twice"));
    let p = only_problem(&edited(|s| s.backends[0].name = "bad name".into()));
    assert!(p.message.contains("not a valid name"));
}

#[test]
fn priority_and_weight_bounds() {
    let p = only_problem(&edited(|s| s.backends[0].priority = 0));
    assert_eq!(p.field, "spec.backends[0].priority");
    assert!(p.message.contains("starts at 1"));
    let p = only_problem(&edited(|s| s.backends[1].weight = 0));
    assert_eq!(p.field, "spec.backends[1].weight");
}

#[test]
fn urls_are_checked() {
    for (url, needle) in [
        ("ptu.example.com", "not a URL"),
        ("ftp://x", "scheme `ftp`"),
        ("https://", "no valid host"),
        ("https://x/?a=1", "query"),
    ] {
        let p = only_problem(&edited(|s| s.backends[0].url = url.into()));
        assert_eq!(p.field, "spec.backends[0].url");
        assert!(p.message.contains(needle), "{url}: {}", p.message);
    }
}

#[test]
fn secrets_unresolved_empty_or_ambiguous() {
    let p = only_problem(&edited(|s| {
        s.backends[0].api_key = Some(SecretSource {
            env: Some("MISSING".into()),
            ..Default::default()
        })
    }));
    assert_eq!(
        (p.field.as_str(), p.reason),
        ("spec.backends[0].apiKey", ProblemReason::SecretNotResolved)
    );
    assert!(p.message.contains("MISSING"));
    let p = only_problem(&edited(|s| {
        s.backends[0].api_key = Some(SecretSource {
            env: Some("EMPTY".into()),
            ..Default::default()
        })
    }));
    assert!(p.message.contains("empty"));
    let p = only_problem(&edited(|s| {
        s.backends[0].api_key = Some(SecretSource {
            env: Some("PTU_KEY".into()),
            file: Some("/x".into()),
            ..Default::default()
        })
    }));
    assert_eq!(p.reason, ProblemReason::InvalidSpec);
    assert!(p.message.contains("exactly one"));
}

#[test]
fn model_map_must_name_pool_models() {
    let p = only_problem(&edited(|s| {
        s.backends[0].model_map.insert("gpt-5".into(), "x".into());
    }));
    assert_eq!(p.field, "spec.backends[0].modelMap");
    assert!(p.message.contains("gpt-5"));
}

fn rule(edit: impl FnOnce(&mut BreakerRule)) -> CompileInput {
    edited(|s| {
        let mut r = BreakerRule {
            name: "r".into(),
            failure_condition: crate::v1alpha1::FailureCondition {
                count: Some(3),
                interval: "10s".into(),
                status_code_ranges: vec![StatusCodeRange { min: 500, max: 599 }],
                ..Default::default()
            },
            trip_duration: "30s".into(),
            ..Default::default()
        };
        edit(&mut r);
        s.circuit_breaker = Some(CircuitBreaker {
            rules: vec![r],
            probe_successes: None,
        });
    })
}

#[test]
fn breaker_rules_compile_and_are_shared_by_backends_without_their_own() {
    let (snapshot, problems) = compile(&rule(|_| {}), &secrets());
    assert!(problems.is_empty(), "{problems:#?}");
    let breaker = &snapshot.pools[0].backends[1].breaker;
    assert_eq!(breaker.rules[0].threshold, TripThreshold::Count(3));
    assert_eq!(breaker.rules[0].trip_duration_ms, 30_000);
    assert_eq!(breaker.probe_successes, 1);
}

#[test]
fn breaker_rule_problems() {
    type Edit = Box<dyn FnOnce(&mut BreakerRule)>;
    let cases: Vec<(Edit, &str, &str)> = vec![
        (
            Box::new(|r| r.failure_condition.percentage = Some(50)),
            "spec.circuitBreaker.rules[0].failureCondition",
            "exactly one",
        ),
        (
            Box::new(|r| {
                r.failure_condition.count = None;
            }),
            "spec.circuitBreaker.rules[0].failureCondition",
            "exactly one",
        ),
        (
            Box::new(|r| {
                r.failure_condition.count = None;
                r.failure_condition.percentage = Some(150);
            }),
            "spec.circuitBreaker.rules[0].failureCondition.percentage",
            "between 1 and 100",
        ),
        (
            Box::new(|r| r.failure_condition.count = Some(0)),
            "spec.circuitBreaker.rules[0].failureCondition.count",
            "at least 1",
        ),
        (
            Box::new(|r| {
                r.failure_condition.status_code_ranges =
                    vec![StatusCodeRange { min: 599, max: 500 }]
            }),
            "spec.circuitBreaker.rules[0].failureCondition.statusCodeRanges[0]",
            "greater than max",
        ),
        (
            Box::new(|r| {
                r.failure_condition.status_code_ranges = vec![StatusCodeRange { min: 42, max: 700 }]
            }),
            "spec.circuitBreaker.rules[0].failureCondition.statusCodeRanges[0]",
            "outside",
        ),
        (
            Box::new(|r| r.failure_condition.status_code_ranges.clear()),
            "spec.circuitBreaker.rules[0].failureCondition",
            "which failures count",
        ),
        (
            Box::new(|r| r.failure_condition.interval = "10 seconds".into()),
            "spec.circuitBreaker.rules[0].failureCondition.interval",
            "not a duration",
        ),
        (
            Box::new(|r| r.trip_duration = "0s".into()),
            "spec.circuitBreaker.rules[0].tripDuration",
            "longer than 0",
        ),
        (
            Box::new(|r| r.max_retry_after = Some("1d".into())),
            "spec.circuitBreaker.rules[0].maxRetryAfter",
            "not a duration",
        ),
    ];
    for (edit, field, needle) in cases {
        let p = only_problem(&rule(edit));
        assert_eq!(p.field, field);
        assert!(p.message.contains(needle), "{field}: {}", p.message);
    }
}

#[test]
fn retry_policy_bounds() {
    let p = only_problem(&edited(|s| {
        s.retry = Some(RetryPolicy {
            max_attempts: Some(0),
            ..Default::default()
        });
    }));
    assert_eq!(p.field, "spec.retry.maxAttempts");
    let (snapshot, _) = compile(
        &edited(|s| {
            s.retry = Some(RetryPolicy {
                max_attempts: Some(5),
                status_code_ranges: vec![StatusCodeRange { min: 429, max: 429 }],
                error_reasons: Some(vec![ErrorReason::Timeout]),
                deadline: Some("30s".into()),
            });
        }),
        &secrets(),
    );
    let retry = &snapshot.pools[0].retry;
    assert_eq!((retry.max_attempts, retry.deadline_ms), (5, 30_000));
    assert!(retry.retries_status(429) && !retry.retries_status(503));
    assert!(retry.on_timeout && !retry.on_connection_failure);
}

#[test]
fn model_conflict_keeps_the_older_pool() {
    let mut input = pool_with("");
    let mut newer = input.pools[0].clone();
    newer.name = "newer".into();
    newer.spec.models = vec!["gpt-4o".into(), "o3".into()];
    newer.creation_timestamp = Some("2026-01-02T00:00:00Z".into());
    input.pools[0].creation_timestamp = Some("2026-01-01T00:00:00Z".into());
    input.pools.insert(0, newer);
    let (snapshot, problems) = compile(&input, &secrets());
    assert_eq!(snapshot.pools.len(), 1);
    assert_eq!(snapshot.pools[0].name, "gpt4o");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].reason, ProblemReason::ModelConflict);
    assert_eq!(problems[0].name, "newer");
    assert!(problems[0].message.contains("team-a/gpt4o"));
}

#[test]
fn one_bad_pool_does_not_hide_the_good_ones() {
    let mut input = pool_with("");
    let mut bad = input.pools[0].clone();
    bad.name = "bad".into();
    bad.spec.models = vec!["other".into()];
    bad.spec.backends[0].weight = 0;
    bad.spec.backends[0].model_map.clear();
    input.pools.push(bad);
    let (snapshot, problems) = compile(&input, &secrets());
    assert_eq!(snapshot.pools.len(), 1);
    assert_eq!(problems.len(), 1);
    assert_eq!(
        problems[0].to_string(),
        "AIBackendPool team-a/bad: spec.backends[0].weight: weight must be at least 1; remove the backend to stop sending it traffic"
    );
}

#[test]
fn gateway_settings() {
    let input = pool_with(
        "---\napiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {name: gw}\n\
         spec: {maxRequestBodyBytes: 4096, identity: {trustedHeader: X-App-Id}, streamDrainTimeout: 5s}\n",
    );
    let (snapshot, problems) = compile(&input, &secrets());
    assert!(problems.is_empty(), "{problems:#?}");
    assert_eq!(snapshot.gateway.max_request_body_bytes, 4096);
    assert_eq!(
        snapshot.gateway.identity.trusted_header.as_deref(),
        Some("x-app-id")
    );
    assert_eq!(snapshot.gateway.stream_drain_timeout_ms, 5_000);

    let bad = pool_with(
        "---\napiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {name: gw}\n\
         spec: {maxRequestBodyBytes: 10, identity: {trustedHeader: 'x app'}}\n",
    );
    let problems = problems_of(&bad);
    let fields: Vec<_> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        ["spec.maxRequestBodyBytes", "spec.identity.trustedHeader"]
    );
}
