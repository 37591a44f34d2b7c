//! Reloads, and Redis mode's unavailability policies without a server.

use spillway_crds::Snapshot;
use spillway_crds::snapshot::{
    QuotaConfig, RateLimitMode, RateLimitingConfig, RedisConfig, RedisUnavailablePolicy,
    SecretString,
};

use super::{ManualClock, T0, admitted, call, limiter, refused, snapshot, tpm};
use crate::limiter::{Limiter, Refusal, Used};

#[tokio::test]
async fn a_reload_keeps_counters_of_kept_quotas_and_forgets_removed_ones() {
    let clock = ManualClock::at(T0);
    let limiter = limiter(
        &clock,
        vec![tpm("kept", Some("a"), 6_000), tpm("gone", Some("b"), 6_000)],
    );
    admitted(&limiter, &call("a", 3_000, Some(0)))
        .await
        .settle(&Used::tokens(3_000));
    admitted(&limiter, &call("b", 3_000, Some(0)))
        .await
        .settle(&Used::tokens(3_000));
    // The kept quota's limit changes: the usage so far counts against the new limit.
    let reload = vec![tpm("kept", Some("a"), 4_000), tpm("new", Some("b"), 6_000)];
    limiter.apply(&snapshot(reload.clone())).expect("applies");
    assert_eq!(limiter.tokens_left("a"), Some(1_000));
    let r = admitted(&limiter, &call("b", 1_000, Some(0))).await;
    assert_eq!(r.headers().remaining_tokens, Some(5_000));
    // Removed and added back: fresh counters.
    limiter.apply(&snapshot(vec![])).expect("applies");
    limiter.apply(&snapshot(reload)).expect("applies");
    let r = admitted(&limiter, &call("a", 1_000, Some(0))).await;
    assert_eq!(r.headers().remaining_tokens, Some(3_000));
}

fn redis_snapshot(url: &str, policy: RedisUnavailablePolicy, quotas: Vec<QuotaConfig>) -> Snapshot {
    let mut snapshot = snapshot(quotas);
    snapshot.gateway.rate_limiting = RateLimitingConfig {
        mode: RateLimitMode::Redis,
        redis: Some(RedisConfig {
            url: SecretString::new(url),
            key_prefix: "spillway".to_owned(),
            on_unavailable: policy,
            timeout_ms: 50,
        }),
    };
    snapshot
}

/// Nothing listens on port 1.
const DOWN: &str = "redis://127.0.0.1:1/";

fn halved() -> Vec<QuotaConfig> {
    vec![QuotaConfig {
        share: 0.5,
        ..tpm("q", None, 2_000)
    }]
}

/// A limiter in Redis mode; Redis counts as down until the first probe answers.
fn redis_limiter(url: &str, policy: RedisUnavailablePolicy, quotas: Vec<QuotaConfig>) -> Limiter {
    let limiter = Limiter::new(ManualClock::at(T0));
    limiter
        .apply(&redis_snapshot(url, policy, quotas))
        .expect("a usable URL applies");
    limiter
}

#[tokio::test]
async fn fail_open_admits_everything_while_redis_is_unreachable() {
    let open = redis_limiter(DOWN, RedisUnavailablePolicy::FailOpen, halved());
    assert_eq!(open.redis_available(), Some(false));
    for _ in 0..5 {
        let reservation = admitted(&open, &call("a", 1_000, Some(0))).await;
        assert!(!reservation.is_limited());
    }
}

#[tokio::test]
async fn fail_closed_refuses_calls_a_quota_applies_to_with_503() {
    let closed = redis_limiter(DOWN, RedisUnavailablePolicy::FailClosed, halved());
    let refusal = refused(&closed, &call("a", 1, Some(0))).await;
    assert_eq!(refusal, Refusal::Unavailable);
    // Calls no quota applies to are not refused.
    closed
        .apply(&redis_snapshot(
            DOWN,
            RedisUnavailablePolicy::FailClosed,
            vec![],
        ))
        .expect("applies");
    drop(admitted(&closed, &call("a", 1, Some(0))).await);
}

#[tokio::test]
async fn local_share_enforces_this_sidecars_share_while_redis_is_unreachable() {
    let share = redis_limiter(DOWN, RedisUnavailablePolicy::LocalShare, halved());
    let r = admitted(&share, &call("a", 1_000, Some(0))).await;
    assert_eq!(r.headers().limit_tokens, Some(1_000));
    refused(&share, &call("a", 1, Some(0))).await;
}

#[tokio::test]
async fn tls_urls_are_accepted_and_unusable_settings_still_apply_the_policy() {
    let tls = redis_limiter(
        "rediss://127.0.0.1:1/",
        RedisUnavailablePolicy::FailClosed,
        halved(),
    );
    assert_eq!(
        refused(&tls, &call("a", 1, Some(0))).await,
        Refusal::Unavailable
    );
    let bad = Limiter::new(ManualClock::at(T0));
    let result = bad.apply(&redis_snapshot(
        "nope://x",
        RedisUnavailablePolicy::FailClosed,
        halved(),
    ));
    assert!(result.is_err());
    assert_eq!(
        refused(&bad, &call("a", 1, Some(0))).await,
        Refusal::Unavailable
    );
}
