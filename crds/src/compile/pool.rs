//! Compiling an `AIBackendPool`: backends, breaker rules (or the defaults), retries and
//! (through [`super::pricing`]) prices.

use std::collections::BTreeSet;

use super::entra::compile_entra_id;
use super::validate::Checker;
use super::{Object, SecretResolver};
use crate::snapshot::{
    AffinityConfig, BackendConfig, BreakerConfig, BreakerRuleConfig, PoolConfig, RetryConfig,
    SecretString, StatusRange, TripThreshold,
};
use crate::v1alpha1::{
    AiBackendPoolSpec, Backend, BackendType, BreakerRule, CircuitBreaker, ErrorReason, RetryPolicy,
    StatusCodeRange,
};

pub(super) fn compile_pool(
    object: &Object<AiBackendPoolSpec>,
    secrets: &dyn SecretResolver,
    check: &mut Checker,
) -> Option<PoolConfig> {
    let spec = &object.spec;
    if spec.models.is_empty() {
        check.invalid(
            "spec.models",
            "list at least one model or deployment name this pool serves",
        );
    }
    let mut seen = BTreeSet::new();
    for (i, model) in spec.models.iter().enumerate() {
        check.name_like(&format!("spec.models[{i}]"), model);
        if !seen.insert(model) {
            check.invalid(
                format!("spec.models[{i}]"),
                format!("`{model}` is listed twice"),
            );
        }
    }
    if spec.backends.is_empty() {
        check.invalid("spec.backends", "add at least one backend");
    }
    super::validate::check_allowed_namespaces(
        spec.allowed_namespaces.as_ref(),
        "spec.allowedNamespaces",
        check,
    );
    let pool_breaker = spec
        .circuit_breaker
        .as_ref()
        .map(|cb| compile_breaker(cb, "spec.circuitBreaker", check));
    let mut names = BTreeSet::new();
    let mut backends = Vec::new();
    for (i, backend) in spec.backends.iter().enumerate() {
        let path = format!("spec.backends[{i}]");
        if !names.insert(backend.name.as_str()) {
            check.invalid(
                format!("{path}.name"),
                format!("backend name `{}` is used twice in this pool", backend.name),
            );
        }
        for key in backend.model_map.keys() {
            if !spec.models.contains(key) {
                check.invalid(
                    format!("{path}.modelMap"),
                    format!("`{key}` is not one of the pool's models {:?}", spec.models),
                );
            }
        }
        let breaker = match &backend.circuit_breaker {
            Some(cb) => compile_breaker(cb, &format!("{path}.circuitBreaker"), check),
            None => pool_breaker.clone().unwrap_or_else(default_breaker),
        };
        let api_key = backend.api_key.as_ref().and_then(|source| {
            check.secret(
                &format!("{path}.apiKey"),
                &object.namespace,
                source,
                secrets,
            )
        });
        let entra_id = backend.entra_id.as_ref().and_then(|auth| {
            compile_entra_id(auth, &format!("{path}.entraId"), object, secrets, check)
        });
        if backend.api_key.is_some() && backend.entra_id.is_some() {
            check.invalid(
                format!("{path}.entraId"),
                "set at most one of apiKey or entraId",
            );
        }
        let mut compiled = compile_backend(backend, &path, breaker, api_key, check);
        compiled.entra_id = entra_id;
        backends.push(compiled);
    }
    let prices = super::pricing::compile_pricing(spec, check);
    for (backend, pricing) in backends.iter_mut().zip(prices) {
        backend.pricing = pricing;
    }
    let retry = compile_retry(spec.retry.as_ref(), check);
    Some(PoolConfig {
        id: object.id(),
        name: object.name.clone(),
        models: spec.models.clone(),
        backends,
        retry,
        max_output_tokens: spec.max_output_tokens,
        prompt_cache_affinity: spec.prompt_cache_affinity.as_ref().map(|affinity| {
            let header = affinity
                .header
                .as_deref()
                .map(|h| h.trim().to_ascii_lowercase());
            if let Some(name) = &header
                && (name.is_empty()
                    || !name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.!#$%&'+^`|~".contains(&b)))
            {
                check.invalid(
                    "spec.promptCacheAffinity.header",
                    format!("{name:?} is not a header name; write one such as x-session-id"),
                );
            }
            AffinityConfig { header }
        }),
    })
}

fn compile_backend(
    backend: &Backend,
    path: &str,
    breaker: BreakerConfig,
    api_key: Option<SecretString>,
    check: &mut Checker,
) -> BackendConfig {
    check.name_like(&format!("{path}.name"), &backend.name);
    if backend.priority < 1 {
        check.invalid(
            format!("{path}.priority"),
            "priority starts at 1 (tried first); use 2, 3, … for spillover groups",
        );
    }
    if backend.weight < 1 {
        check.invalid(
            format!("{path}.weight"),
            "weight must be at least 1; remove the backend to stop sending it traffic",
        );
    }
    let base_url = check.base_url(&format!("{path}.url"), &backend.url, backend.kind);
    let timeout_ms = check.duration_or(
        &format!("{path}.timeout"),
        backend.timeout.as_deref(),
        60_000,
    );
    BackendConfig {
        name: backend.name.clone(),
        kind: backend.kind,
        base_url,
        model: backend.model.clone(),
        model_map: backend.model_map.clone(),
        api_version: backend.api_version.clone(),
        priority: backend.priority,
        weight: backend.weight,
        api_key,
        entra_id: None,
        breaker,
        stream_usage: backend.stream_usage,
        timeout_ms,
        pricing: None,
    }
}

/// Spillway's breaker when a pool configures none: trip on the first 429 for as long as the
/// backend asks (10s without a hint), and on 5 server or transport errors in 10s for 30s.
pub fn default_breaker() -> BreakerConfig {
    BreakerConfig {
        rules: vec![
            BreakerRuleConfig {
                name: "throttled".into(),
                threshold: TripThreshold::Count(1),
                interval_ms: 10_000,
                status_ranges: vec![StatusRange { min: 429, max: 429 }],
                on_connection_failure: false,
                on_timeout: false,
                trip_duration_ms: 10_000,
                accept_retry_after: true,
                max_retry_after_ms: 300_000,
            },
            BreakerRuleConfig {
                name: "failing".into(),
                threshold: TripThreshold::Count(5),
                interval_ms: 10_000,
                status_ranges: vec![StatusRange { min: 500, max: 599 }],
                on_connection_failure: true,
                on_timeout: true,
                trip_duration_ms: 30_000,
                accept_retry_after: false,
                max_retry_after_ms: 300_000,
            },
        ],
        probe_successes: 1,
    }
}

fn compile_breaker(cb: &CircuitBreaker, path: &str, check: &mut Checker) -> BreakerConfig {
    if cb.rules.is_empty() {
        check.invalid(
            format!("{path}.rules"),
            "add at least one rule, or remove circuitBreaker to use the defaults",
        );
    }
    let probe_successes = cb.probe_successes.unwrap_or(1);
    if probe_successes < 1 {
        check.invalid(format!("{path}.probeSuccesses"), "must be at least 1");
    }
    let mut names = BTreeSet::new();
    let rules = cb
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let rule_path = format!("{path}.rules[{i}]");
            if !names.insert(rule.name.as_str()) {
                check.invalid(
                    format!("{rule_path}.name"),
                    format!("rule name `{}` is used twice", rule.name),
                );
            }
            compile_rule(rule, &rule_path, check)
        })
        .collect();
    BreakerConfig {
        rules,
        probe_successes,
    }
}

fn compile_rule(rule: &BreakerRule, path: &str, check: &mut Checker) -> BreakerRuleConfig {
    check.name_like(&format!("{path}.name"), &rule.name);
    let fc = &rule.failure_condition;
    let fc_path = format!("{path}.failureCondition");
    let threshold = match (fc.count, fc.percentage) {
        (Some(count), None) => {
            if count < 1 {
                check.invalid(format!("{fc_path}.count"), "count must be at least 1");
            }
            TripThreshold::Count(count)
        }
        (None, Some(percent)) => {
            if !(1..=100).contains(&percent) {
                check.invalid(
                    format!("{fc_path}.percentage"),
                    format!("{percent} is not a percentage between 1 and 100"),
                );
            }
            let min_requests = fc.minimum_requests.unwrap_or(10);
            if min_requests < 1 {
                check.invalid(format!("{fc_path}.minimumRequests"), "must be at least 1");
            }
            TripThreshold::Percentage {
                percent,
                min_requests,
            }
        }
        _ => {
            check.invalid(
                fc_path.clone(),
                "set exactly one of `count` or `percentage`",
            );
            TripThreshold::Count(1)
        }
    };
    if fc.status_code_ranges.is_empty() && fc.error_reasons.is_empty() {
        check.invalid(
            fc_path.clone(),
            "say which failures count: statusCodeRanges (e.g. [{min: 429, max: 429}]) \
             and/or errorReasons (ConnectionFailure, Timeout)",
        );
    }
    let status_ranges = check.status_ranges(
        &format!("{fc_path}.statusCodeRanges"),
        &fc.status_code_ranges,
    );
    let interval_ms = check.duration_required(&format!("{fc_path}.interval"), &fc.interval);
    let trip_duration_ms =
        check.duration_required(&format!("{path}.tripDuration"), &rule.trip_duration);
    let max_retry_after_ms = check.duration_or(
        &format!("{path}.maxRetryAfter"),
        rule.max_retry_after.as_deref(),
        300_000,
    );
    BreakerRuleConfig {
        name: rule.name.clone(),
        threshold,
        interval_ms,
        status_ranges,
        on_connection_failure: fc.error_reasons.contains(&ErrorReason::ConnectionFailure),
        on_timeout: fc.error_reasons.contains(&ErrorReason::Timeout),
        trip_duration_ms,
        accept_retry_after: rule.accept_retry_after,
        max_retry_after_ms,
    }
}

fn compile_retry(retry: Option<&RetryPolicy>, check: &mut Checker) -> RetryConfig {
    let default_ranges = [
        StatusCodeRange { min: 429, max: 429 },
        StatusCodeRange { min: 500, max: 599 },
    ];
    let Some(retry) = retry else {
        return RetryConfig {
            max_attempts: 3,
            status_ranges: check.status_ranges("spec.retry", &default_ranges),
            on_connection_failure: true,
            on_timeout: true,
            deadline_ms: 120_000,
        };
    };
    let max_attempts = retry.max_attempts.unwrap_or(3);
    if !(1..=10).contains(&max_attempts) {
        check.invalid(
            "spec.retry.maxAttempts",
            format!("{max_attempts} attempts; use 1 (no retries) to 10"),
        );
    }
    let ranges = if retry.status_code_ranges.is_empty() {
        &default_ranges[..]
    } else {
        &retry.status_code_ranges[..]
    };
    let reasons = retry
        .error_reasons
        .clone()
        .unwrap_or_else(|| vec![ErrorReason::ConnectionFailure, ErrorReason::Timeout]);
    RetryConfig {
        max_attempts,
        status_ranges: check.status_ranges("spec.retry.statusCodeRanges", ranges),
        on_connection_failure: reasons.contains(&ErrorReason::ConnectionFailure),
        on_timeout: reasons.contains(&ErrorReason::Timeout),
        deadline_ms: check.duration_or("spec.retry.deadline", retry.deadline.as_deref(), 120_000),
    }
}

/// Normalises a base URL: no trailing slash; OpenAI URLs without a path get `/v1`.
pub(crate) fn normalise_base_url(url: &str, kind: BackendType) -> String {
    let trimmed = url.trim_end_matches('/');
    let after_scheme = trimmed.split_once("://").map_or(trimmed, |(_, rest)| rest);
    let has_path = after_scheme.contains('/');
    if kind == BackendType::OpenAI && !has_path {
        format!("{trimmed}/v1")
    } else {
        trimmed.to_owned()
    }
}
