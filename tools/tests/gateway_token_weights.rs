//! `TokenQuota.spec.tokenWeights` through a real gateway: prompt-cache hits counted at a tenth
//! toward a daily quota, trued up from the backend's own usage by type.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Gateway, Sim, http, pool_yaml};
use http::Method;
use serde_json::{Value, json};

const QUOTA: &str = "---
apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: web}
spec:
  appId: web
  quotas: [{period: Daily, tokens: 1000000}]
  tokenWeights: {cachedInput: '0.1'}
---
apiVersion: spillway.dev/v1alpha1
kind: AIGateway
metadata: {name: gw}
spec: {identity: {trustedHeader: x-app-id}}
";

/// What the daily quota has left, from the gateway's own gauge.
async fn day_left(gw: &Gateway) -> u64 {
    let text = http(Method::GET, &format!("{}/metrics", gw.admin), &[], "")
        .await
        .text();
    text.lines()
        .find(|l| {
            l.starts_with("spillway_quota_remaining_tokens{")
                && l.contains("spillway_quota=\"web\"")
                && l.contains("spillway_quota_window=\"day\"")
        })
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .expect("the day window's level")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cache_hits_count_a_tenth_toward_the_quota() {
    let sim = Sim::start("backends:\n  - name: east\n    cacheMinTokens: 128\n").await;
    let backends = format!("    - name: east\n      url: {}\n", sim.url("east"));
    let gw = Gateway::start(&format!(
        "{}{QUOTA}",
        pool_yaml("chat", &["gpt-4o"], &backends, "")
    ))
    .await;
    let system = "The spillway carries surplus water past the dam. ".repeat(120);
    let mut weighted = 0;
    let mut plain = 0;
    for i in 0..3 {
        let id = format!("weights-{i}");
        let body = json!({
            "model": "gpt-4o",
            "max_tokens": 8,
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": format!("question {i}")},
            ],
        });
        let reply = http(
            Method::POST,
            &format!("{}/v1/chat/completions", gw.url),
            &[("x-app-id", "web"), ("x-request-id", &id)],
            body.to_string(),
        )
        .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let record = gw.record(&id).await;
        let usage: &Value = &record["usage"];
        let prompt = usage["prompt_tokens"].as_u64().unwrap();
        let completion = usage["completion_tokens"].as_u64().unwrap();
        let cached = usage["cached_tokens"].as_u64().unwrap_or(0);
        let ledger = sim.entry(&id).await;
        assert_eq!(cached, ledger["cachedTokens"].as_u64().unwrap(), "{ledger}");
        if i > 0 {
            assert!(cached >= 128, "the repeated prefix is cached: {usage}");
        }
        // input + cached × 0.1 + output, rounded up per call.
        weighted += (prompt - cached) + completion + cached.div_ceil(10);
        plain += prompt + completion;
    }
    assert!(
        weighted < plain,
        "cache hits count less: {weighted} vs {plain}"
    );
    // Settled asynchronously after the body ends: wait (bounded) for the level to land.
    let mut left = 0;
    for _ in 0..100 {
        left = day_left(&gw).await;
        if left == 1_000_000 - weighted {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(
        left,
        1_000_000 - weighted,
        "plain would be {}",
        1_000_000 - plain
    );
}
