//! Many concurrent streams of one app with injected time; memory with 100k apps.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use spillway_crds::snapshot::{CalendarQuotaConfig, QuotaConfig, QuotaPeriod};
use tokio::sync::Barrier;

use super::{ManualClock, T0, admitted, call, limiter, quota, tpm, utc};
use crate::limiter::{Refusal, Reservation, Used};

const TASKS: usize = 64;
const STEP_MS: u64 = 100;
/// Three simulated minutes.
const STEPS: usize = 1_800;
/// One minute of steps.
const WINDOW: usize = 600;
const LIMIT: u64 = 30_000;
const PROMPT_ESTIMATE: u64 = 300;
const MAX_COMPLETION: u64 = 400;
const RESERVED: u64 = PROMPT_ESTIMATE + MAX_COMPLETION;

#[derive(Clone, Copy, Debug)]
struct Stream {
    admitted: usize,
    settled: Option<usize>,
    actual: u64,
}

/// Runs 64 tasks that each keep one stream open whenever the limiter lets them; every
/// stream lasts 0.5–3 s and really uses the prompt (estimate ±10%) plus 20–400 completion
/// tokens. Returns every stream and the tokens left after each step.
async fn run_streams() -> (Vec<Stream>, Vec<i64>, u64) {
    let clock = ManualClock::at(T0);
    let limiter = Arc::new(limiter(&clock, vec![tpm("tpm", None, LIMIT)]));
    let barrier = Arc::new(Barrier::new(TASKS + 1));
    let streams = Arc::new(Mutex::new(Vec::<Stream>::new()));
    let refusals = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut tasks = Vec::new();
    for seed in 0..TASKS as u64 {
        let (limiter, barrier) = (limiter.clone(), barrier.clone());
        let (streams, refusals) = (streams.clone(), refusals.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            let mut open: Option<(Reservation, usize, usize)> = None;
            for step in 0..STEPS {
                barrier.wait().await;
                if let Some((reservation, _, index)) = open.take_if(|(_, end, _)| *end <= step) {
                    let mut streams = streams.lock().expect("lock");
                    streams[index].settled = Some(step);
                    reservation.settle(&Used::tokens(streams[index].actual));
                }
                if open.is_none() {
                    let request = call("app", PROMPT_ESTIMATE, Some(MAX_COMPLETION));
                    match limiter.admit(&request).await {
                        Ok(reservation) => {
                            let actual = rng.u64(270..=330) + rng.u64(20..=MAX_COMPLETION);
                            let mut streams = streams.lock().expect("lock");
                            streams.push(Stream {
                                admitted: step,
                                settled: None,
                                actual,
                            });
                            let end = step + rng.usize(5..=30);
                            open = Some((reservation, end, streams.len() - 1));
                        }
                        Err(Refusal::RateLimited { .. }) => {
                            refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(other) => panic!("unexpected refusal: {other}"),
                    }
                }
                barrier.wait().await;
            }
        }));
    }
    let mut left = Vec::with_capacity(STEPS);
    for step in 0..STEPS {
        clock.set(Duration::from_millis(STEP_MS * step as u64));
        barrier.wait().await;
        barrier.wait().await;
        left.push(limiter.tokens_left("app").unwrap_or(LIMIT as i64));
    }
    for task in tasks {
        task.await.expect("stream task");
    }
    let streams = streams.lock().expect("lock").clone();
    (
        streams,
        left,
        refusals.load(std::sync::atomic::Ordering::Relaxed),
    )
}

/// What the bucket has granted by the end of `step`: the reservation of open streams, the
/// real usage (up to the reservation) of settled ones.
fn granted_by(streams: &[Stream], step: usize) -> u64 {
    streams
        .iter()
        .filter(|s| s.admitted <= step)
        .map(|s| match s.settled {
            Some(settled) if settled <= step => s.actual.min(RESERVED),
            _ => RESERVED,
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixty_four_concurrent_streams_stay_within_the_limit() {
    let (streams, left, refusals) = run_streams().await;
    assert!(
        refusals > 1_000,
        "the load must contend: {refusals} refusals"
    );
    // 1. At every moment: granted ≤ a full bucket + the refill so far (exact, no slack).
    for step in 0..STEPS {
        let granted = granted_by(&streams, step);
        let bound = LIMIT + LIMIT * (STEP_MS * step as u64) / 60_000;
        assert!(granted <= bound, "step {step}: {granted} > {bound}");
    }
    let total = granted_by(&streams, STEPS - 1);
    let ideal = LIMIT + LIMIT * (STEP_MS * (STEPS as u64 - 1)) / 60_000;
    assert!(
        total * 100 >= ideal * 95,
        "under-admits: {total} of {ideal}"
    );
    // 2. Every minute: the tokens really used by the calls admitted in it stay within the
    // limit + what the bucket held at the start + the estimation error of in-flight calls
    // (reservations of calls admitted before, returned during the minute, and overshoots).
    let mut worst = 0.0f64;
    let mut worst_error = 0u64;
    for (start, &left_at_start) in left.iter().enumerate().take(STEPS - WINDOW) {
        let inside = |s: &&Stream| s.admitted > start && s.admitted <= start + WINDOW;
        let used: u64 = streams.iter().filter(inside).map(|s| s.actual).sum();
        let overshoot: u64 = streams
            .iter()
            .filter(inside)
            .map(|s| s.actual.saturating_sub(RESERVED))
            .sum();
        let returned: u64 = streams
            .iter()
            .filter(|s| s.admitted <= start)
            .filter(|s| s.settled.is_some_and(|e| e > start && e <= start + WINDOW))
            .map(|s| RESERVED.saturating_sub(s.actual))
            .sum();
        let allowance =
            i128::from(LIMIT) + i128::from(left_at_start) + i128::from(returned + overshoot);
        assert!(
            i128::from(used) <= allowance,
            "minute from step {start}: {used} used > {allowance}"
        );
        if start >= WINDOW {
            worst = worst.max(used as f64 / LIMIT as f64);
            worst_error = worst_error.max(returned + overshoot);
        }
    }
    println!(
        "64 streams, TPM {LIMIT}: {} calls, {refusals} refusals; steady-state minute max {:.3}× the limit (in-flight estimation error up to {worst_error} tokens)",
        streams.len(),
        worst
    );
}

#[tokio::test]
async fn idle_apps_are_evicted_and_memory_stays_bounded() {
    const APPS: usize = 100_000;
    let clock = ManualClock::at(T0);
    let limiter = limiter(&clock, vec![tpm("default", None, 10_000)]);
    for i in 0..APPS {
        let app = format!("app-{i:06}");
        admitted(&limiter, &call(&app, 100, Some(100)))
            .await
            .settle(&Used::tokens(150));
    }
    let full = limiter.local_stats();
    assert_eq!(full.apps, APPS);
    let per_app = full.approx_bytes / APPS;
    println!(
        "{APPS} apps: ~{} bytes of limiter state, ~{per_app} bytes per app",
        full.approx_bytes
    );
    assert!(per_app < 512, "{per_app} bytes per app");
    // 150 tokens at 10 000/min take 0.9 s to come back: nobody is idle yet.
    clock.advance(Duration::from_millis(500));
    assert_eq!(limiter.evict_idle(), 0);
    clock.advance(Duration::from_secs(60));
    assert_eq!(limiter.evict_idle(), APPS);
    let empty = limiter.local_stats();
    assert_eq!(empty.apps, 0);
    assert!(empty.approx_bytes < 64 * 1024, "{empty:?}");
}

#[tokio::test]
async fn shards_sweep_themselves_on_the_admission_path() {
    let clock = ManualClock::at(T0);
    let limiter = limiter(&clock, vec![tpm("default", None, 10_000)]);
    for i in 0..10_000 {
        drop(admitted(&limiter, &call(&format!("old-{i}"), 10, Some(10))).await);
    }
    clock.advance(Duration::from_secs(61));
    for i in 0..1_000 {
        drop(admitted(&limiter, &call(&format!("new-{i}"), 10, Some(10))).await);
    }
    assert_eq!(limiter.local_stats().apps, 1_000);
}

#[tokio::test]
async fn calendar_usage_keeps_an_app_until_its_window_ends() {
    let clock = ManualClock::at(utc(2025, 1, 4, 23, 58));
    let daily = QuotaConfig {
        calendar: vec![CalendarQuotaConfig {
            period: QuotaPeriod::Daily,
            tokens: 100_000,
        }],
        ..quota("daily", None)
    };
    let limiter = limiter(&clock, vec![daily]);
    for i in 0..10 {
        admitted(&limiter, &call(&format!("app-{i}"), 10, Some(10)))
            .await
            .settle(&Used::tokens(15));
    }
    clock.advance(Duration::from_secs(61));
    assert_eq!(limiter.evict_idle(), 0, "the day is not over");
    clock.advance(Duration::from_secs(59));
    assert_eq!(limiter.evict_idle(), 10);
}

#[tokio::test]
async fn an_app_with_a_call_in_flight_is_never_evicted() {
    let clock = ManualClock::at(T0);
    let limiter = limiter(&clock, vec![tpm("default", None, 10_000)]);
    let long_stream = admitted(&limiter, &call("a", 1_000, Some(1_000))).await;
    clock.advance(Duration::from_secs(600));
    assert_eq!(limiter.evict_idle(), 0);
    // The true-up after ten minutes still lands: 3 000 used instead of 2 000.
    long_stream.settle(&Used::tokens(3_000));
    assert_eq!(limiter.tokens_left("a"), Some(9_000));
}
