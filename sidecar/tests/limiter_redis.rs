//! The limiter against a real `redis-server`, started by each test on a free loopback port:
//! three limiters (three "sidecars") share one app's limits exactly, keys expire, and each
//! `onRedisUnavailable` policy holds while Redis is down and recovers when it is back on the
//! same port, without restarting the limiters.
//!
//! Needs `redis-server` on PATH (Debian: `apt-get install -y redis-server`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/redis_server.rs"]
mod redis_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use redis_server::RedisServer;
use spillway_crds::Snapshot;
use spillway_crds::snapshot::{
    CalendarQuotaConfig, QuotaConfig, QuotaPeriod, RateLimitMode, RateLimitingConfig, RedisConfig,
    RedisUnavailablePolicy, SecretString,
};
use spillway_sidecar::clock::SystemClock;
use spillway_sidecar::limiter::calendar::{unix_ms, window};
use spillway_sidecar::limiter::{AdmitRequest, Limiter, Refusal, Reservation, Used};

fn quota(name: &str, app: Option<&str>) -> QuotaConfig {
    QuotaConfig {
        id: format!("team/{name}"),
        name: name.to_owned(),
        app_id: app.map(str::to_owned),
        pools: Vec::new(),
        models: Vec::new(),
        tokens_per_minute: None,
        requests_per_minute: None,
        calendar: Vec::new(),
        default_max_tokens: 1000,
        share: 1.0 / 3.0,
        token_weights: Default::default(),
        budgets: Vec::new(),
    }
}

fn snapshot(
    url: &str,
    prefix: &str,
    policy: RedisUnavailablePolicy,
    quotas: Vec<QuotaConfig>,
) -> Snapshot {
    let mut snapshot = Snapshot {
        quotas,
        ..Snapshot::default()
    };
    snapshot.gateway.rate_limiting = RateLimitingConfig {
        mode: RateLimitMode::Redis,
        redis: Some(RedisConfig {
            url: SecretString::new(url),
            key_prefix: prefix.to_owned(),
            on_unavailable: policy,
            timeout_ms: 250,
        }),
    };
    snapshot
}

/// A limiter with Redis settings, once it has reached Redis.
async fn limiter(snapshot: &Snapshot) -> Arc<Limiter> {
    let limiter = Arc::new(Limiter::new(Arc::new(SystemClock)));
    limiter.apply(snapshot).expect("valid Redis settings");
    wait_available(&limiter, true).await;
    limiter
}

async fn wait_available(limiter: &Limiter, wanted: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while limiter.redis_available() != Some(wanted) {
        assert!(
            Instant::now() < deadline,
            "Redis availability never became {wanted}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn call(app: &str, prompt: u64, max: u64) -> AdmitRequest<'_> {
    AdmitRequest {
        app_id: app,
        pool: "gpt-4o",
        model: "gpt-4o",
        prompt_tokens_estimate: prompt,
        max_completion_tokens: Some(max),
        spend_ceiling: &[],
    }
}

async fn admitted(limiter: &Limiter, request: &AdmitRequest<'_>) -> Reservation {
    match limiter.admit(request).await {
        Ok(reservation) => reservation,
        Err(refusal) => panic!("refused: {refusal}"),
    }
}

const TPM: u64 = 12_000;
const PER_CALL: u64 = 200;

/// Six tasks per limiter hammer one app for `duration` (bounded in calls); each admitted
/// call uses exactly what it reserved. Returns the tokens admitted and the admission calls.
async fn hammer(limiters: &[Arc<Limiter>], duration: Duration) -> (u64, u64) {
    let admitted_tokens = Arc::new(AtomicU64::new(0));
    let calls = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + duration;
    let mut tasks = Vec::new();
    for limiter in limiters {
        for _ in 0..6 {
            let (limiter, total) = (limiter.clone(), admitted_tokens.clone());
            let calls = calls.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..2_000 {
                    if Instant::now() >= deadline {
                        break;
                    }
                    calls.fetch_add(1, Ordering::Relaxed);
                    match limiter.admit(&call("app", 100, PER_CALL - 100)).await {
                        Ok(reservation) => {
                            total.fetch_add(PER_CALL, Ordering::Relaxed);
                            reservation.settle(&Used::tokens(PER_CALL));
                        }
                        Err(Refusal::RateLimited { retry_after, .. }) => {
                            tokio::time::sleep(retry_after.min(Duration::from_millis(50))).await;
                        }
                        Err(other) => panic!("unexpected refusal: {other}"),
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.expect("load task");
    }
    (
        admitted_tokens.load(Ordering::Relaxed),
        calls.load(Ordering::Relaxed),
    )
}

/// `calls` of `command` in `INFO commandstats`.
async fn command_calls(server: &RedisServer, command: &str) -> u64 {
    let mut conn = server.connect().await.expect("connect");
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .expect("INFO");
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a count"))
}

async fn assert_keys_expire(server: &RedisServer, prefix: &str) -> usize {
    let mut conn = server.connect().await.expect("connect");
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    for key in &keys {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .expect("PTTL");
        assert!(ttl > 0, "{key} has no expiry ({ttl})");
    }
    keys.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_limiters_share_one_budget_and_each_policy_survives_a_redis_restart() {
    let mut server = RedisServer::start().await;
    let quotas = vec![QuotaConfig {
        tokens_per_minute: Some(TPM),
        ..quota("tpm", None)
    }];
    let prefix = "shared";
    let mut made = Vec::new();
    for policy in [
        RedisUnavailablePolicy::LocalShare,
        RedisUnavailablePolicy::FailOpen,
        RedisUnavailablePolicy::FailClosed,
    ] {
        made.push(limiter(&snapshot(&server.url(), prefix, policy, quotas.clone())).await);
    }
    let [share, open, closed]: [Arc<Limiter>; 3] = made.try_into().expect("three limiters");
    let all = [share.clone(), open.clone(), closed.clone()];

    // 1. Together they admit one budget: a full bucket plus the refill while they run.
    let started = Instant::now();
    let (total, calls) = hammer(&all, Duration::from_millis(1_500)).await;
    let bound = TPM as f64 * (1.0 + started.elapsed().as_secs_f64() / 60.0);
    println!(
        "three limiters admitted {total} tokens in {calls} calls; the shared budget was {bound:.0}"
    );
    assert!(total as f64 <= bound * 1.02, "{total} > {bound}");
    assert!(total as f64 >= TPM as f64 * 0.98, "{total} < {TPM}");
    assert_eq!(assert_keys_expire(&server, prefix).await, 1);
    // One round trip per admission (the scripts were loaded when each limiter connected).
    assert_eq!(command_calls(&server, "evalsha").await, calls);
    assert_eq!(command_calls(&server, "eval").await, 0);

    // 2. Redis goes away: each policy holds.
    server.kill().await;
    assert_policies_while_down(&share, &open, &closed).await;
    // 3. Redis is back on the same port (empty): every limiter recovers on its own.
    server.restart().await;
    assert_recovered(&share, &open, &closed).await;
}

async fn assert_policies_while_down(share: &Limiter, open: &Limiter, closed: &Limiter) {
    for _ in 0..20 {
        let r = admitted(open, &call("app", 500, 500)).await;
        assert!(!r.is_limited(), "FailOpen admits without counting");
    }
    for _ in 0..5 {
        let refusal = closed.admit(&call("app", 1, 1)).await.map(|_| ());
        assert_eq!(refusal, Err(Refusal::Unavailable));
    }
    // LocalShare: a third of the limit, locally.
    let mut local = 0;
    while let Ok(r) = share.admit(&call("app", 100, PER_CALL - 100)).await {
        assert_eq!(r.headers().limit_tokens, Some(TPM / 3));
        local += PER_CALL;
        assert!(local <= TPM, "LocalShare never refuses");
    }
    assert_eq!(local, TPM / 3);
    for limiter in [share, open, closed] {
        assert_eq!(limiter.redis_available(), Some(false));
    }
}

async fn assert_recovered(share: &Limiter, open: &Limiter, closed: &Limiter) {
    let restarted = Instant::now();
    for limiter in [share, open, closed] {
        wait_available(limiter, true).await;
    }
    println!(
        "all three limiters used Redis again {:?} after its restart",
        restarted.elapsed()
    );
    let r = admitted(closed, &call("app", 100, PER_CALL - 100)).await;
    assert_eq!(r.headers().limit_tokens, Some(TPM));
    assert_eq!(r.headers().remaining_tokens, Some(TPM - PER_CALL));
    let r = admitted(share, &call("app", 100, PER_CALL - 100)).await;
    // Shared with the call above (plus what refilled in between: 200 tokens/s).
    let left = r.headers().remaining_tokens.expect("a token limit");
    assert!(
        (TPM - 2 * PER_CALL..TPM - PER_CALL).contains(&left),
        "{left}"
    );
    assert!(admitted(open, &call("app", 1, 1)).await.is_limited());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_client_retrying_after_retry_after_is_admitted() {
    let server = RedisServer::start().await;
    let quotas = vec![QuotaConfig {
        tokens_per_minute: Some(6_000),
        ..quota("tpm", None)
    }];
    let policy = RedisUnavailablePolicy::FailClosed;
    let limiter = limiter(&snapshot(&server.url(), "retry", policy, quotas)).await;
    drop(admitted(&limiter, &call("app", 6_000, 0)).await);
    // 50 tokens at 100 per second: half a second, exactly (rounded up to the ms).
    let Err(Refusal::RateLimited { retry_after, .. }) = limiter.admit(&call("app", 50, 0)).await
    else {
        panic!("expected 429");
    };
    assert!(
        retry_after > Duration::from_millis(400) && retry_after <= Duration::from_millis(500),
        "{retry_after:?}"
    );
    tokio::time::sleep(retry_after / 2).await;
    assert!(limiter.admit(&call("app", 50, 0)).await.is_err());
    tokio::time::sleep(retry_after - retry_after / 2).await;
    drop(admitted(&limiter, &call("app", 50, 0)).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_calendar_quota_trues_up_and_refuses_with_its_reset_time() {
    let server = RedisServer::start().await;
    let quotas = vec![QuotaConfig {
        calendar: vec![CalendarQuotaConfig {
            period: QuotaPeriod::Daily,
            tokens: 1_000,
        }],
        ..quota("daily", Some("cal"))
    }];
    let url = server.url();
    let policy = RedisUnavailablePolicy::FailClosed;
    let one = limiter(&snapshot(&url, "cal", policy, quotas.clone())).await;
    let two = limiter(&snapshot(&url, "cal", policy, quotas)).await;
    let first = admitted(&one, &call("cal", 100, 200)).await;
    assert_eq!(first.headers().remaining_tokens, Some(700));
    // Used 100 of the 300 reserved: 200 come back (sent from a task; wait until it landed).
    first.settle(&Used::tokens(100));
    let mut conn = server.connect().await.expect("connect");
    let day = window(QuotaPeriod::Daily, unix_ms(SystemTime::now()));
    let key = format!("cal:{{cal}}:team/daily:d:{}", day.start_ms / 1000);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let used: Option<u64> = redis::cmd("GET")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("GET");
        if used == Some(100) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the true-up never landed: {used:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(admitted(&two, &call("cal", 400, 500)).await);
    let refusal = one.admit(&call("cal", 1, 0)).await.map(|_| ());
    let Err(Refusal::QuotaExhausted {
        quota,
        period,
        resets_at,
    }) = refusal
    else {
        panic!("expected 403, got {refusal:?}");
    };
    assert_eq!((quota.as_str(), period), ("daily", QuotaPeriod::Daily));
    assert_eq!(unix_ms(resets_at), day.end_ms);
    let ttl: i64 = redis::cmd("TTL")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("TTL");
    let until_reset = (day.end_ms - unix_ms(SystemTime::now())) / 1000;
    assert!(
        ttl > until_reset && ttl <= until_reset + 3_601,
        "TTL {ttl}, reset in {until_reset}"
    );
}
