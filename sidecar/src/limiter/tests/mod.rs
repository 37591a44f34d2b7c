//! Limiter behaviour in Local mode with an injected clock. Reloads and Redis mode's policies
//! without a server are in `tests/config.rs`, load and memory in `tests/load.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use spillway_crds::Snapshot;
use spillway_crds::snapshot::{CalendarQuotaConfig, QuotaConfig};

use super::{AdmitRequest, LimitKind, Limiter, QuotaPeriod, Refusal, Reservation, Used};
use crate::calendar::{days_from_civil, system_time};
use crate::clock::Clock;

mod config;
mod load;
mod money;

/// A clock that moves only when told to.
pub(super) struct ManualClock {
    start: Instant,
    wall: SystemTime,
    offset_ns: AtomicU64,
}

impl ManualClock {
    /// Starts at `wall` (Unix ms).
    pub(super) fn at(wall_ms: i64) -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            wall: system_time(wall_ms),
            offset_ns: AtomicU64::new(0),
        })
    }

    pub(super) fn advance(&self, by: Duration) {
        let ns = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.offset_ns.fetch_add(ns, Ordering::SeqCst);
    }

    pub(super) fn set(&self, since_start: Duration) {
        let ns = u64::try_from(since_start.as_nanos()).unwrap_or(u64::MAX);
        self.offset_ns.store(ns, Ordering::SeqCst);
    }

    fn offset(&self) -> Duration {
        Duration::from_nanos(self.offset_ns.load(Ordering::SeqCst))
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.offset()
    }

    fn wall(&self) -> SystemTime {
        self.wall + self.offset()
    }
}

/// Unix ms of a UTC date and time.
pub(super) fn utc(year: i64, month: u32, day: u32, hour: i64, minute: i64) -> i64 {
    (days_from_civil(year, month, day) * 24 * 60 + hour * 60 + minute) * 60_000
}

pub(super) fn quota(name: &str, app: Option<&str>) -> QuotaConfig {
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
        share: 1.0,
        token_weights: Default::default(),
        budgets: Vec::new(),
    }
}

pub(super) fn tpm(name: &str, app: Option<&str>, limit: u64) -> QuotaConfig {
    QuotaConfig {
        tokens_per_minute: Some(limit),
        ..quota(name, app)
    }
}

pub(super) fn snapshot(quotas: Vec<QuotaConfig>) -> Snapshot {
    Snapshot {
        quotas,
        ..Snapshot::default()
    }
}

pub(super) fn limiter(clock: &Arc<ManualClock>, quotas: Vec<QuotaConfig>) -> Limiter {
    let limiter = Limiter::new(clock.clone());
    limiter
        .apply(&snapshot(quotas))
        .expect("local mode always applies");
    limiter
}

/// A call reserving `prompt + max` tokens.
pub(super) fn call(app: &str, prompt: u64, max: Option<u64>) -> AdmitRequest<'_> {
    AdmitRequest {
        app_id: app,
        pool: "gpt-4o",
        model: "gpt-4o",
        prompt_tokens_estimate: prompt,
        max_completion_tokens: max,
        spend_ceiling: &[],
    }
}

pub(super) async fn admitted(limiter: &Limiter, request: &AdmitRequest<'_>) -> Reservation {
    match limiter.admit(request).await {
        Ok(reservation) => reservation,
        Err(refusal) => panic!("refused: {refusal}"),
    }
}

pub(super) async fn refused(limiter: &Limiter, request: &AdmitRequest<'_>) -> Refusal {
    match limiter.admit(request).await {
        Ok(reservation) => panic!("admitted: {:?}", reservation.headers()),
        Err(refusal) => refusal,
    }
}

pub(super) const T0: i64 = 1_736_000_000_000; // 2025-01-04T14:13:20Z

#[tokio::test]
async fn calls_without_an_applicable_quota_are_admitted_without_state() {
    let clock = ManualClock::at(T0);
    let mut other_pool = tpm("other", None, 1);
    other_pool.pools = vec!["embeddings".to_owned()];
    let limiter = limiter(&clock, vec![other_pool]);
    for _ in 0..5 {
        let reservation = admitted(&limiter, &call("app", 1_000, None)).await;
        assert!(!reservation.is_limited());
        assert_eq!(reservation.headers(), &Default::default());
    }
    assert_eq!(limiter.local_stats().apps, 0);
}

#[tokio::test]
async fn the_default_quota_is_a_separate_budget_per_app() {
    let clock = ManualClock::at(T0);
    let limiter = limiter(&clock, vec![tpm("default", None, 1_000)]);
    admitted(&limiter, &call("a", 500, Some(500)))
        .await
        .settle(&Used::tokens(1_000));
    assert!(matches!(
        refused(&limiter, &call("a", 1, Some(0))).await,
        Refusal::RateLimited {
            kind: LimitKind::Tokens,
            ..
        }
    ));
    // App b has its own full budget.
    let b = admitted(&limiter, &call("b", 500, Some(500))).await;
    assert_eq!(b.headers().remaining_tokens, Some(0));
    assert_eq!(b.headers().limit_tokens, Some(1_000));
}

#[tokio::test]
async fn an_apps_own_quota_replaces_the_default_where_it_covers_the_call() {
    let clock = ManualClock::at(T0);
    let mut own = tpm("own", Some("a"), 10_000);
    own.models = vec!["gpt-4o".to_owned()];
    let limiter = limiter(&clock, vec![tpm("default", None, 100), own]);
    // gpt-4o: the own quota (10 000), not the default (100).
    let r = admitted(&limiter, &call("a", 1_000, Some(1_000))).await;
    assert_eq!(r.headers().limit_tokens, Some(10_000));
    assert_eq!(r.headers().remaining_tokens, Some(8_000));
    // Another model is not covered by the own quota: the default applies.
    let other = AdmitRequest {
        model: "gpt-4.1",
        ..call("a", 50, Some(50))
    };
    let r = admitted(&limiter, &other).await;
    assert_eq!(r.headers().limit_tokens, Some(100));
    assert_eq!(r.headers().remaining_tokens, Some(0));
}

#[tokio::test]
async fn the_default_max_tokens_is_reserved_when_the_call_sets_none() {
    let clock = ManualClock::at(T0);
    let mut q = tpm("q", None, 10_000);
    q.default_max_tokens = 2_500;
    let limiter = limiter(&clock, vec![q]);
    let r = admitted(&limiter, &call("a", 500, None)).await;
    assert_eq!(r.headers().remaining_tokens, Some(7_000));
}

#[tokio::test]
async fn a_client_retrying_exactly_after_retry_after_is_admitted() {
    let clock = ManualClock::at(T0);
    let limiter = limiter(&clock, vec![tpm("q", None, 7_000)]);
    admitted(&limiter, &call("a", 6_000, Some(0)))
        .await
        .settle(&Used::tokens(6_000));
    let Refusal::RateLimited {
        quota, retry_after, ..
    } = refused(&limiter, &call("a", 1_500, Some(0))).await
    else {
        panic!("expected 429");
    };
    assert_eq!(quota, "q");
    // 500 tokens missing at 7 000/min: 60/14 s = 4.285714286 s, rounded up to the ns.
    assert_eq!(retry_after, Duration::from_nanos(4_285_714_286));
    clock.advance(retry_after - Duration::from_nanos(1));
    refused(&limiter, &call("a", 1_500, Some(0))).await;
    clock.advance(Duration::from_nanos(1));
    drop(admitted(&limiter, &call("a", 1_500, Some(0))).await);
}

#[tokio::test]
async fn requests_per_minute_refuse_with_the_requests_kind() {
    let clock = ManualClock::at(T0);
    let q = QuotaConfig {
        requests_per_minute: Some(2),
        ..quota("rpm", None)
    };
    let limiter = limiter(&clock, vec![q]);
    let first = admitted(&limiter, &call("a", 1, Some(1))).await;
    assert_eq!(first.headers().limit_requests, Some(2));
    assert_eq!(first.headers().remaining_requests, Some(1));
    assert_eq!(first.headers().remaining_tokens, None);
    drop(first);
    drop(admitted(&limiter, &call("a", 1, Some(1))).await);
    let refusal = refused(&limiter, &call("a", 1, Some(1))).await;
    assert_eq!(
        refusal,
        Refusal::RateLimited {
            quota: "rpm".to_owned(),
            kind: LimitKind::Requests,
            retry_after: Duration::from_secs(30),
        }
    );
}

#[tokio::test]
async fn a_used_up_calendar_quota_refuses_with_403_naming_it_and_its_reset() {
    let clock = ManualClock::at(utc(2024, 2, 29, 22, 0));
    let q = QuotaConfig {
        calendar: vec![CalendarQuotaConfig {
            period: QuotaPeriod::Monthly,
            tokens: 1_000,
        }],
        ..quota("monthly-budget", None)
    };
    let limiter = limiter(&clock, vec![q]);
    let r = admitted(&limiter, &call("a", 400, Some(400))).await;
    assert_eq!(r.headers().remaining_tokens, Some(200));
    assert_eq!(
        r.headers().reset_tokens,
        Some(Duration::from_secs(2 * 3_600))
    );
    r.settle(&Used::tokens(800));
    let refusal = refused(&limiter, &call("a", 100, Some(200))).await;
    let reset = system_time(utc(2024, 3, 1, 0, 0));
    assert_eq!(
        refusal,
        Refusal::QuotaExhausted {
            quota: "monthly-budget".to_owned(),
            period: QuotaPeriod::Monthly,
            resets_at: reset,
        }
    );
    let message = refusal.to_string();
    assert!(message.contains("`monthly-budget`"), "{message}");
    assert!(message.contains("2024-03-01T00:00:00Z"), "{message}");
    assert_eq!(
        refusal.retry_after(clock.wall()),
        Duration::from_secs(7_200)
    );
    // A smaller call still fits the 200 left; at the month boundary everything is back.
    drop(admitted(&limiter, &call("a", 100, Some(100))).await);
    clock.advance(Duration::from_secs(7_200));
    let r = admitted(&limiter, &call("a", 500, Some(500))).await;
    assert_eq!(r.headers().remaining_tokens, Some(0));
}

#[tokio::test]
async fn a_used_up_calendar_quota_wins_over_a_per_minute_limit() {
    let clock = ManualClock::at(T0);
    let q = QuotaConfig {
        tokens_per_minute: Some(1_000),
        calendar: vec![CalendarQuotaConfig {
            period: QuotaPeriod::Hourly,
            tokens: 1_000,
        }],
        ..quota("both", None)
    };
    let limiter = limiter(&clock, vec![q]);
    drop(admitted(&limiter, &call("a", 1_000, Some(0))).await);
    assert!(matches!(
        refused(&limiter, &call("a", 10, Some(0))).await,
        Refusal::QuotaExhausted {
            period: QuotaPeriod::Hourly,
            ..
        }
    ));
}

#[tokio::test]
async fn a_refusal_by_one_quota_reserves_nothing_in_the_others() {
    let clock = ManualClock::at(T0);
    let rpm = QuotaConfig {
        requests_per_minute: Some(2),
        ..quota("rpm", Some("a"))
    };
    let limiter = limiter(&clock, vec![tpm("tokens", Some("a"), 6_000), rpm]);
    let r = admitted(&limiter, &call("a", 500, Some(500))).await;
    assert_eq!(r.headers().remaining_tokens, Some(5_000));
    assert_eq!(r.headers().remaining_requests, Some(1));
    r.settle(&Used::tokens(1_000));
    // Too many tokens: refused by the tokens quota; the requests quota keeps its request.
    for _ in 0..3 {
        refused(&limiter, &call("a", 5_500, Some(0))).await;
    }
    let r = admitted(&limiter, &call("a", 500, Some(500))).await;
    assert_eq!(r.headers().remaining_requests, Some(0));
    r.settle(&Used::tokens(1_000));
    assert_eq!(limiter.tokens_left("a"), Some(4_000));
    // No request left: refused by the requests quota; the tokens quota keeps its tokens.
    for _ in 0..3 {
        refused(&limiter, &call("a", 500, Some(500))).await;
    }
    assert_eq!(limiter.tokens_left("a"), Some(4_000));
}

#[tokio::test]
async fn settle_returns_the_unused_part_and_charges_an_overshoot() {
    let clock = ManualClock::at(T0);
    let limiter = limiter(&clock, vec![tpm("q", None, 6_000)]);
    admitted(&limiter, &call("a", 1_000, Some(2_000)))
        .await
        .settle(&Used::tokens(500));
    assert_eq!(limiter.tokens_left("a"), Some(5_500));
    admitted(&limiter, &call("a", 1_000, Some(1_000)))
        .await
        .settle(&Used::tokens(7_000));
    // 5 500 - 7 000: in debt by 1 500, so even a small call waits for 1 501 tokens.
    assert_eq!(limiter.tokens_left("a"), Some(-1_500));
    let Refusal::RateLimited { retry_after, .. } = refused(&limiter, &call("a", 1, Some(0))).await
    else {
        panic!("expected 429");
    };
    assert_eq!(retry_after, Duration::from_millis(15_010));
}

#[tokio::test]
async fn dropping_an_unsettled_reservation_keeps_the_reserved_tokens_charged() {
    let clock = ManualClock::at(T0);
    let limiter = limiter(&clock, vec![tpm("q", None, 6_000)]);
    drop(admitted(&limiter, &call("a", 1_000, Some(1_000))).await);
    assert_eq!(limiter.tokens_left("a"), Some(4_000));
    // Not held in flight any more: evictable once the bucket is full again.
    clock.advance(Duration::from_secs(20));
    assert_eq!(limiter.evict_idle(), 1);
}

#[tokio::test]
async fn local_mode_enforces_this_sidecars_share() {
    let clock = ManualClock::at(T0);
    let q = QuotaConfig {
        share: 0.25,
        ..tpm("q", None, 10_000)
    };
    let limiter = limiter(&clock, vec![q]);
    let r = admitted(&limiter, &call("a", 2_000, Some(0))).await;
    assert_eq!(r.headers().limit_tokens, Some(2_500));
    assert_eq!(r.headers().remaining_tokens, Some(500));
    refused(&limiter, &call("a", 600, Some(0))).await;
}

#[test]
fn the_limiter_and_its_futures_can_be_shared_between_tasks() {
    fn send_sync<T: Send + Sync + 'static>(_: &T) {}
    fn send<T: Send>(_: T) {}
    let clock = ManualClock::at(T0);
    let limiter = limiter(&clock, vec![tpm("q", None, 1_000)]);
    send_sync(&limiter);
    let request = call("a", 1, Some(1));
    send(limiter.admit(&request));
    let reservation = futures_util::FutureExt::now_or_never(limiter.admit(&request))
        .expect("local admission never waits")
        .expect("admitted");
    send_sync(&reservation);
}

#[tokio::test]
async fn a_call_that_can_never_fit_is_refused_at_once_and_resets_stay_within_the_window() {
    let clock = ManualClock::at(utc(2025, 1, 4, 14, 0));
    let limiter = limiter(&clock, vec![tpm("small", None, 600)]);
    let refusal = refused(&limiter, &call("a", 100, Some(16_384))).await;
    assert_eq!(
        refusal,
        Refusal::NeverFits {
            quota: "small".into(),
            reserved: 16_484,
            capacity: 600,
        }
    );
    assert_eq!(refusal.code(), "request_exceeds_quota");
    assert!(
        refusal.to_string().contains("at most 600 tokens"),
        "{refusal}"
    );
    // A call that fits, then bills far more than it reserved (the estimate was low): the
    // bucket is in debt, yet no reset or retry is announced beyond the minute.
    let r = admitted(&limiter, &call("a", 100, Some(400))).await;
    r.settle(&Used::tokens(4_000));
    let r = refused(&limiter, &call("a", 10, Some(10))).await;
    assert_eq!(
        r.retry_after(std::time::SystemTime::UNIX_EPOCH),
        Duration::from_secs(60)
    );
    clock.advance(Duration::from_secs(400));
    let r = admitted(&limiter, &call("a", 10, Some(590))).await;
    assert!(
        r.headers().reset_tokens <= Some(Duration::from_secs(60)),
        "{:?}",
        r.headers()
    );
}
