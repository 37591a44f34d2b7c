//! TokenQuotas enforced by real `spillway run` processes in front of real simulators: 429 then
//! success at exactly `Retry-After`, 403 on a calendar quota naming its reset, the app's own
//! rate-limit headers, reserve/true-up under 64 concurrent streams, identity by API key, and
//! three sidecars sharing one app's budget through a real Redis (and surviving its outage).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "../../sidecar/tests/common/redis_server.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use common::{Gateway, Reply, Sim, chat_body, http, open, pool_yaml};
use http::Method;
use http_body_util::BodyExt;
use redis_server::RedisServer;
use serde_json::{Value, json};

fn manifests(sim: &Sim, quota: &str, gateway: &str) -> String {
    let backends = format!("    - name: east\n      url: {}\n", sim.url("east"));
    format!(
        "{}---\napiVersion: spillway.dev/v1alpha1\nkind: TokenQuota\nmetadata: {{name: web}}\nspec: {quota}\n---\napiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw}}\nspec: {gateway}\n",
        pool_yaml("chat", &["gpt-4o"], &backends, "")
    )
}

const APPS: &str = "{identity: {trustedHeader: x-app-id}}";

async fn call(gw: &Gateway, app: &str, id: &str, body: Value) -> Reply {
    http(
        Method::POST,
        &format!("{}/v1/chat/completions", gw.url),
        &[("x-app-id", app), ("x-request-id", id)],
        body.to_string(),
    )
    .await
}

fn retry_after_ms(reply: &Reply) -> u64 {
    reply
        .header("retry-after-ms")
        .parse()
        .expect("retry-after-ms")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limited_then_admitted_exactly_at_retry_after() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let gw = Gateway::start(&manifests(
        &sim,
        "{appId: web, requestsPerMinute: 120}",
        APPS,
    ))
    .await;
    let mut refused = None;
    for i in 0..200 {
        // Sent before the gateway decided: the widest window the refusal can be measured from.
        let sent_at = Instant::now();
        let reply = call(&gw, "web", &format!("rpm-{i}"), chat_body("gpt-4o", false)).await;
        if reply.status == 429 {
            refused = Some((reply, sent_at));
            break;
        }
        assert_eq!(reply.status, 200, "{}", reply.text());
        let remaining: u64 = reply
            .header("x-ratelimit-remaining-requests")
            .parse()
            .expect("the app's own remaining requests");
        assert!(remaining < 120);
    }
    let (refused, refused_sent_at) = refused.expect("120 requests per minute run out");
    let error = refused.json();
    assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");
    assert!(
        error["error"]["message"].as_str().unwrap().contains("web"),
        "names the quota: {error}"
    );
    assert_eq!(
        refused.header("x-spillway-attempts"),
        "0",
        "refused before any backend"
    );
    let wait = retry_after_ms(&refused);
    assert!(
        (1..=500).contains(&wait),
        "one request refills in 0.5 s, got {wait} ms"
    );
    assert_eq!(refused.header("retry-after"), "1");

    // Half-way it is still refused (unless a stalled machine delivered it after the refill);
    // exactly at Retry-After it is admitted.
    tokio::time::sleep(Duration::from_millis(wait / 2)).await;
    let early = call(&gw, "web", "rpm-early", chat_body("gpt-4o", false)).await;
    match early.status.as_u16() {
        429 => {}
        200 => assert!(
            refused_sent_at.elapsed() >= Duration::from_millis(wait),
            "admitted before its Retry-After"
        ),
        other => panic!("unexpected {other}: {}", early.text()),
    }
    // A fresh refusal (a refilled request, if any, is spent first), then wait exactly its
    // Retry-After.
    let mut again = call(&gw, "web", "rpm-probe-0", chat_body("gpt-4o", false)).await;
    for i in 1..5 {
        if again.status == 429 {
            break;
        }
        again = call(
            &gw,
            "web",
            &format!("rpm-probe-{i}"),
            chat_body("gpt-4o", false),
        )
        .await;
    }
    assert_eq!(again.status, 429, "{}", again.text());
    tokio::time::sleep(Duration::from_millis(retry_after_ms(&again))).await;
    let admitted = call(&gw, "web", "rpm-on-time", chat_body("gpt-4o", false)).await;
    assert_eq!(admitted.status, 200, "{}", admitted.text());

    // Another app has no quota of its own and no default: unlimited.
    assert_eq!(
        call(&gw, "other", "free-1", chat_body("gpt-4o", false))
            .await
            .status,
        200
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spent_daily_quota_is_403_naming_the_quota_and_its_reset() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let gw = Gateway::start(&manifests(
        &sim,
        "{quotas: [{period: Daily, tokens: 300}]}",
        APPS,
    ))
    .await;
    let mut body = chat_body("gpt-4o", false);
    body["max_tokens"] = json!(40);
    let mut used = 0;
    let refused = loop {
        let reply = call(&gw, "batch", &format!("daily-{used}"), body.clone()).await;
        if reply.status != 200 {
            break reply;
        }
        used += 1;
        assert!(used < 20, "a 300-token day must run out");
    };
    assert!(
        used >= 2,
        "the default quota gave app `batch` its own 300 tokens"
    );
    assert_eq!(refused.status, 403, "{}", refused.text());
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("`web`") && message.to_lowercase().contains("daily"),
        "{message}"
    );
    let tomorrow = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400
        + 1)
        * 86_400;
    let seconds: u64 = refused.header("retry-after").parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        seconds.abs_diff(tomorrow - now) <= 2,
        "Retry-After points at 00:00 UTC: {seconds}"
    );
    assert!(
        message.contains("T00:00:00Z"),
        "the reset time is named: {message}"
    );
    // Another app has its own daily budget from the default quota.
    assert_eq!(call(&gw, "chat", "daily-other", body).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserve_and_true_up_keep_64_concurrent_streams_within_the_limit() {
    let sim = Sim::start("backends:\n  - name: east\n    tokensPerSecond: 200\n").await;
    const TPM: u64 = 3_000;
    let gw = Gateway::start(&manifests(
        &sim,
        &format!("{{appId: web, tokensPerMinute: {TPM}}}"),
        APPS,
    ))
    .await;
    let url = format!("{}/v1/chat/completions", gw.url);
    let started = Instant::now();
    let streams: Vec<_> = (0..64)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move {
                let mut body = chat_body("gpt-4o", true);
                body["max_tokens"] = json!(30);
                let id = format!("burst-{i}");
                let response =
                    open(&url, &[("x-app-id", "web"), ("x-request-id", &id)], body).await;
                let status = response.status().as_u16();
                let _ = response.into_body().collect().await;
                (id, status)
            })
        })
        .collect();
    let mut admitted = Vec::new();
    let mut refused = 0;
    for stream in streams {
        let (id, status) = stream.await.unwrap();
        match status {
            200 => admitted.push(id),
            429 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    assert!(refused > 0, "64 streams of ~50 tokens exceed {TPM} tokens");
    let ledger = sim.ledger("east").await;
    let billed: u64 = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| admitted.iter().any(|id| e["requestId"] == id.as_str()))
        .map(|e| e["promptTokens"].as_u64().unwrap() + e["completionTokens"].as_u64().unwrap())
        .sum();
    // The bucket holds TPM tokens and refills TPM/60 per second; the estimate (prompt bytes/4
    // + max_tokens) is close to the real count, so admitted work stays within the limit
    // plus the refill plus a small estimation error.
    let refill = (TPM as f64 / 60.0 * elapsed) as u64;
    assert!(
        billed <= TPM + refill + TPM / 20,
        "billed {billed} tokens for a {TPM} TPM quota ({elapsed:.1}s)"
    );
    assert!(billed >= TPM / 2, "most of the budget is usable: {billed}");
    for id in &admitted {
        let record = gw.record(id).await;
        assert_eq!(record["app_id"], "web");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_name_the_app_and_unknown_keys_are_refused() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    // printf %s web-key | sha256sum
    let gateway = "{identity: {apiKeys: [{appId: web, keySha256: fe372517ad18bd4ef08c931b6f58a73a1e10ad754cc729a8ccd705be55c47fbd}, {appId: batch, key: {env: BATCH_KEY}}]}}";
    let gw = Gateway::start_with(
        &manifests(&sim, "{appId: batch, requestsPerMinute: 1000}", gateway),
        &[("BATCH_KEY", "batch-key")],
    )
    .await;
    let url = format!("{}/v1/chat/completions", gw.url);
    let ok = http(
        Method::POST,
        &url,
        &[
            ("authorization", "Bearer batch-key"),
            ("x-request-id", "key-1"),
        ],
        chat_body("gpt-4o", false).to_string(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(gw.record("key-1").await["app_id"], "batch");
    assert!(
        !ok.header("x-ratelimit-remaining-requests").is_empty(),
        "batch has a quota"
    );
    let entry = sim.entry("key-1").await;
    assert!(
        entry["authorization"].is_null() && entry["apiKey"].is_null(),
        "the app's key stays at the gateway"
    );

    let bad = http(
        Method::POST,
        &url,
        &[("api-key", "guess"), ("x-request-id", "key-2")],
        chat_body("gpt-4o", false).to_string(),
    )
    .await;
    assert_eq!(bad.status, 401);
    assert_eq!(bad.json()["error"]["code"], "unknown_api_key");
    assert_eq!(bad.header("www-authenticate"), "Bearer");
    assert!(!bad.text().contains("guess"), "the key is never echoed");
    let none = http(
        Method::POST,
        &url,
        &[],
        chat_body("gpt-4o", false).to_string(),
    )
    .await;
    assert_eq!(
        (none.status.as_u16(), none.json()["error"]["code"].as_str()),
        (401, Some("missing"))
    );
    assert_eq!(
        sim.entries("east").await.len(),
        1,
        "refused calls never reach a backend"
    );
}

fn redis_manifests(sim: &Sim, redis: &RedisServer, tpm: u64, policy: &str) -> String {
    manifests(
        sim,
        &format!("{{appId: web, tokensPerMinute: {tpm}}}"),
        &format!(
            "{{identity: {{trustedHeader: x-app-id}}, rateLimiting: {{mode: Redis, redis: {{url: '{}', onRedisUnavailable: {policy}, timeout: 2s}}}}}}",
            redis.url()
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sidecars_share_one_budget_through_redis_and_fail_closed_while_it_is_down() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let mut redis = RedisServer::start().await;
    const TPM: u64 = 6_000;
    let config = redis_manifests(&sim, &redis, TPM, "FailClosed");
    let mut sidecars = Vec::new();
    for _ in 0..3 {
        sidecars.push(Gateway::start(&config).await);
    }
    // Bounded load from one app across the three sidecars until the shared budget is spent.
    let started = Instant::now();
    let mut workers = Vec::new();
    for (s, gw) in sidecars.iter().enumerate() {
        let url = format!("{}/v1/chat/completions", gw.url);
        workers.push(tokio::spawn(async move {
            let mut admitted = Vec::new();
            for i in 0..150 {
                let id = format!("shared-{s}-{i}");
                let mut body = chat_body("gpt-4o", false);
                body["max_tokens"] = json!(60);
                let reply = http(
                    Method::POST,
                    &url,
                    &[("x-app-id", "web"), ("x-request-id", &id)],
                    body.to_string(),
                )
                .await;
                match reply.status.as_u16() {
                    200 => admitted.push(id),
                    429 => {}
                    other => panic!("unexpected {other}: {}", reply.text()),
                }
            }
            admitted
        }));
    }
    let mut admitted = Vec::new();
    for worker in workers {
        admitted.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let entries = sim.entries("east").await;
    let billed: u64 = entries
        .iter()
        .filter(|e| admitted.iter().any(|id| e["requestId"] == id.as_str()))
        .map(|e| e["promptTokens"].as_u64().unwrap() + e["completionTokens"].as_u64().unwrap())
        .sum();
    let allowance = TPM as f64 + TPM as f64 / 60.0 * elapsed;
    let ratio = billed as f64 / allowance;
    assert!(
        (0.98..=1.02).contains(&ratio),
        "three sidecars admitted {billed} tokens for a shared allowance of {allowance:.0} (ratio {ratio:.3})"
    );

    // Redis goes away: FailClosed refuses with 503; when it returns, the sidecars recover.
    redis.kill().await;
    let down = call(&sidecars[0], "web", "down-1", chat_body("gpt-4o", false)).await;
    assert_eq!(down.status, 503, "{}", down.text());
    redis.restart().await;
    let mut recovered = false;
    for i in 0..100 {
        if call(
            &sidecars[1],
            "web",
            &format!("up-{i}"),
            chat_body("gpt-4o", false),
        )
        .await
        .status
            == 200
        {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(recovered, "the sidecar uses Redis again once it is back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fail_open_and_local_share_policies_while_redis_is_down() {
    let sim = Sim::start("backends:\n  - name: east\n").await;
    let mut redis = RedisServer::start().await;
    let open_gw = Gateway::start(&redis_manifests(&sim, &redis, 100, "FailOpen")).await;
    let share_gw = Gateway::start(&redis_manifests(&sim, &redis, 100, "LocalShare")).await;
    redis.kill().await;
    let mut body = chat_body("gpt-4o", false);
    body["max_tokens"] = json!(40);
    for i in 0..5 {
        let reply = call(&open_gw, "web", &format!("open-{i}"), body.clone()).await;
        assert_eq!(
            reply.status,
            200,
            "FailOpen admits while Redis is down: {}",
            reply.text()
        );
    }
    let mut statuses = Vec::new();
    for i in 0..5 {
        statuses.push(
            call(&share_gw, "web", &format!("share-{i}"), body.clone())
                .await
                .status
                .as_u16(),
        );
    }
    assert_eq!(statuses[0], 200, "the local share admits the first call");
    assert!(
        statuses.contains(&429),
        "the local share (100 TPM standalone) runs out: {statuses:?}"
    );
}
