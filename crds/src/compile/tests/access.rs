//! `compile()` of `AIGateway` identity / rate limiting and of `TokenQuota`: every problem case.

use super::support::{compile_text, only_problems};
use crate::snapshot::{IdentityMethod, QuotaPeriod, RateLimitMode, RedisUnavailablePolicy};

const GW: &str =
    "apiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {name: gw, namespace: ns}\n";
const SHA256_K_BATCH: &str = "a190cb6bee368f84ff30c65afa101835f63398e4fc48dcdf3727ad11e273130b";
const TQ: &str =
    "apiVersion: spillway.dev/v1alpha1\nkind: TokenQuota\nmetadata: {name: q, namespace: ns}\n";

#[test]
fn identity_compiles_with_defaults_and_hashes_keys() {
    let text = format!(
        "{GW}spec:\n  identity:\n    jwt: {{issuers: ['https://login.microsoftonline.com/t1/v2.0'], audiences: ['api://spillway']}}\n    apiKeys:\n      - {{appId: batch, key: {{env: BATCH_KEY}}}}\n      - {{appId: web, keySha256: {}}}\n    trustedHeader: X-App\n",
        "A".repeat(64)
    );
    let (snapshot, problems) = compile_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    let identity = &snapshot.gateway.identity;
    assert_eq!(
        identity.order,
        [
            IdentityMethod::Jwt,
            IdentityMethod::ApiKey,
            IdentityMethod::TrustedHeader
        ]
    );
    assert!(
        !identity.allow_anonymous,
        "configured methods make a credential required"
    );
    let jwt = identity.jwt.as_ref().expect("jwt");
    assert_eq!(
        (
            jwt.algorithms.clone(),
            jwt.app_id_claims.clone(),
            jwt.leeway_ms
        ),
        (
            vec!["RS256".to_owned()],
            vec!["appid".to_owned(), "azp".to_owned()],
            60_000
        )
    );
    // printf %s k-batch | sha256sum
    assert_eq!(identity.api_keys[0].sha256, SHA256_K_BATCH);
    assert_eq!(identity.api_keys[1].sha256, "a".repeat(64));
    assert_eq!(identity.trusted_header.as_deref(), Some("x-app"));
    assert!(
        !format!("{snapshot:?}").contains("k-batch"),
        "the key itself never reaches the snapshot"
    );
}

#[test]
fn identity_problems() {
    let cases = [
        (
            "  identity: {jwt: {issuers: [], audiences: [a]}}\n",
            "spec.identity.jwt.issuers",
            "at least one issuer",
        ),
        (
            "  identity: {jwt: {issuers: ['ftp://x'], audiences: [a]}}\n",
            "spec.identity.jwt.issuers[0]",
            "not an http(s) URL",
        ),
        (
            "  identity: {jwt: {issuers: ['https://i'], audiences: []}}\n",
            "spec.identity.jwt.audiences",
            "at least one audience",
        ),
        (
            "  identity: {jwt: {issuers: ['https://i'], audiences: [a], algorithms: [HS256]}}\n",
            "spec.identity.jwt.algorithms[0]",
            "not allowed",
        ),
        (
            "  identity: {jwt: {issuers: ['https://i'], audiences: [a], algorithms: [none]}}\n",
            "spec.identity.jwt.algorithms[0]",
            "not allowed",
        ),
        (
            "  identity: {apiKeys: [{appId: a, keySha256: xyz}]}\n",
            "spec.identity.apiKeys[0].keySha256",
            "64 hex digits",
        ),
        (
            "  identity: {apiKeys: [{appId: a}]}\n",
            "spec.identity.apiKeys[0]",
            "exactly one",
        ),
        (
            "  identity: {apiKeys: [{appId: a, key: {env: MISSING}}]}\n",
            "spec.identity.apiKeys[0].key",
            "MISSING",
        ),
        (
            "  identity: {order: [Jwt], trustedHeader: x}\n",
            "spec.identity.order[0]",
            "not configured",
        ),
        (
            "  rateLimiting: {mode: Redis}\n",
            "spec.rateLimiting.redis",
            "needs redis.url",
        ),
        (
            "  rateLimiting: {mode: Redis, redis: {url: 'http://x'}}\n",
            "spec.rateLimiting.redis",
            "redis://",
        ),
    ];
    for (spec, field, needle) in cases {
        let problems = only_problems(&format!("{GW}spec:\n{spec}"));
        assert_eq!(problems.len(), 1, "{spec}: {problems:#?}");
        assert_eq!(problems[0].field, field, "{spec}");
        assert!(
            problems[0].message.contains(needle),
            "{spec}: {}",
            problems[0].message
        );
    }
    let problems = only_problems(&format!(
        "{GW}spec:\n  identity: {{apiKeys: [{{appId: a, keySha256: {h}}}, {{appId: b, keySha256: {h}}}]}}\n",
        h = "b".repeat(64)
    ));
    assert!(problems[0].message.contains("already given"));
}

#[test]
fn redis_rate_limiting_compiles() {
    let (snapshot, problems) = compile_text(&format!(
        "{GW}spec:\n  rateLimiting: {{mode: Redis, redis: {{url: 'redis://127.0.0.1:6379', onRedisUnavailable: FailClosed}}}}\n"
    ));
    assert!(problems.is_empty(), "{problems:#?}");
    let rl = &snapshot.gateway.rate_limiting;
    assert_eq!(rl.mode, RateLimitMode::Redis);
    let redis = rl.redis.as_ref().expect("redis");
    assert_eq!(
        (
            redis.key_prefix.as_str(),
            redis.on_unavailable,
            redis.timeout_ms
        ),
        ("spillway", RedisUnavailablePolicy::FailClosed, 200)
    );
}

#[test]
fn quotas_compile_and_cover_pools_and_models() {
    let (snapshot, problems) = compile_text(&format!(
        "{TQ}spec: {{appId: web, pools: [chat], tokensPerMinute: 1000, quotas: [{{period: Daily, tokens: 50000}}]}}\n---\n{}",
        TQ.replace("name: q", "name: default") + "spec: {requestsPerMinute: 10}\n"
    ));
    assert!(problems.is_empty(), "{problems:#?}");
    let web = &snapshot.quotas[0];
    assert_eq!(
        (
            web.app_id.as_deref(),
            web.tokens_per_minute,
            web.default_max_tokens,
            web.share
        ),
        (Some("web"), Some(1000), 1000, 1.0)
    );
    assert_eq!(web.calendar[0].period, QuotaPeriod::Daily);
    assert!(web.covers("chat", "gpt-4o") && !web.covers("embeddings", "gpt-4o"));
    assert!(snapshot.quotas[1].app_id.is_none() && snapshot.quotas[1].covers("any", "thing"));
}

#[test]
fn quota_problems() {
    let cases = [
        ("spec: {appId: web}\n", "spec", "at least one limit"),
        (
            "spec: {tokensPerMinute: 0}\n",
            "spec.tokensPerMinute",
            "at least 1",
        ),
        (
            "spec: {quotas: [{period: Daily, tokens: 0}]}\n",
            "spec.quotas[0].tokens",
            "at least 1",
        ),
        (
            "spec: {quotas: [{period: Daily, tokens: 1}, {period: Daily, tokens: 2}]}\n",
            "spec.quotas[1].period",
            "twice",
        ),
        (
            "spec: {appId: 'bad app', tokensPerMinute: 1}\n",
            "spec.appId",
            "not a valid name",
        ),
    ];
    for (spec, field, needle) in cases {
        let problems = only_problems(&format!("{TQ}{spec}"));
        assert_eq!(problems.len(), 1, "{spec}: {problems:#?}");
        assert_eq!(
            (problems[0].field.as_str(), problems[0].kind),
            (field, "TokenQuota"),
            "{spec}"
        );
        assert!(
            problems[0].message.contains(needle),
            "{spec}: {}",
            problems[0].message
        );
    }
}
