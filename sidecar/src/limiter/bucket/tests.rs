use std::time::{Duration, Instant};

use super::{BucketLimit, MINUTE, TokenBucket};

const NS: Duration = Duration::from_nanos(1);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn a_fresh_bucket_is_full_and_refills_over_a_minute() {
    let t0 = Instant::now();
    let limit = BucketLimit::per_minute(6_000);
    let mut bucket = TokenBucket::full(t0);
    assert_eq!(bucket.available(t0, limit), 6_000);
    bucket.take(t0, limit, 6_000);
    assert_eq!(bucket.available(t0, limit), 0);
    // 100 tokens per second, continuously.
    assert_eq!(bucket.available(t0 + secs(1), limit), 100);
    assert_eq!(
        bucket.available(t0 + Duration::from_millis(1_505), limit),
        150
    );
    assert_eq!(bucket.available(t0 + secs(30), limit), 3_000);
    assert!(!bucket.is_full(t0 + secs(60) - NS, limit));
    assert!(bucket.is_full(t0 + secs(60), limit));
    // Never above full.
    assert_eq!(bucket.available(t0 + secs(600), limit), 6_000);
}

#[test]
fn wait_for_is_exact_to_the_nanosecond() {
    let t0 = Instant::now();
    // 7 tokens per minute: one token every 8.571428… s, so rounding matters.
    let limit = BucketLimit::per_minute(7);
    let mut bucket = TokenBucket::full(t0);
    bucket.take(t0, limit, 7);
    let wait = bucket.wait_for(t0, limit, 3);
    // 3 tokens = 3 * 60e9 / 7 ns = 25_714_285_714.28… ns, rounded up.
    assert_eq!(wait, Duration::from_nanos(25_714_285_715));
    let mut early = bucket;
    assert!(early.wait_for(t0 + wait - NS, limit, 3) == NS);
    assert_eq!(bucket.wait_for(t0 + wait, limit, 3), Duration::ZERO);
    bucket.take(t0 + wait, limit, 3);
    assert_eq!(bucket.available(t0 + wait, limit), 0);
}

#[test]
fn wait_for_is_zero_when_the_amount_fits_and_shrinks_as_time_passes() {
    let t0 = Instant::now();
    let limit = BucketLimit::per_minute(600);
    let mut bucket = TokenBucket::full(t0);
    assert_eq!(bucket.wait_for(t0, limit, 600), Duration::ZERO);
    bucket.take(t0, limit, 550);
    assert_eq!(bucket.wait_for(t0, limit, 50), Duration::ZERO);
    assert_eq!(bucket.wait_for(t0, limit, 60), secs(1));
    assert_eq!(
        bucket.wait_for(t0 + Duration::from_millis(400), limit, 60),
        Duration::from_millis(600)
    );
}

#[test]
fn true_up_returns_the_unused_part_and_charges_an_overshoot() {
    let t0 = Instant::now();
    let limit = BucketLimit::per_minute(1_000);
    let mut bucket = TokenBucket::full(t0);
    // Reserve 800, really used 300: 500 come back.
    bucket.take(t0, limit, 800);
    bucket.give_back(t0, limit, 500);
    assert_eq!(bucket.available(t0, limit), 700);
    // Returning more than was taken never makes the bucket more than full.
    bucket.give_back(t0, limit, 5_000);
    assert_eq!(bucket.available(t0, limit), 1_000);
    // Reserve 900, really used 1_300: the overshoot of 400 puts the bucket in debt.
    bucket.take(t0, limit, 900);
    bucket.take(t0, limit, 400);
    assert_eq!(bucket.available(t0, limit), -300);
    // The debt delays the next admission: 100 tokens need 400 refilled = 24 s.
    assert_eq!(bucket.wait_for(t0, limit, 100), secs(24));
    assert_eq!(bucket.until_full(t0, limit), secs(78));
}

#[test]
fn amounts_above_the_capacity_need_a_full_bucket_then_leave_a_debt() {
    let t0 = Instant::now();
    let limit = BucketLimit::per_minute(100);
    let mut bucket = TokenBucket::full(t0);
    assert_eq!(bucket.wait_for(t0, limit, 250), Duration::ZERO);
    bucket.take(t0, limit, 250);
    assert_eq!(bucket.available(t0, limit), -150);
    // The next big one waits until the bucket is full again: 250 tokens of refill.
    assert_eq!(bucket.wait_for(t0, limit, 10_000), secs(150));
}

#[test]
fn a_capacity_change_keeps_the_usage() {
    let t0 = Instant::now();
    let mut bucket = TokenBucket::full(t0);
    bucket.take(t0, BucketLimit::per_minute(1_000), 400);
    // Halved limit (e.g. a smaller share): 400 used of 500.
    assert_eq!(bucket.available(t0, BucketLimit::per_minute(500)), 100);
    // Raised limit: 400 used of 2_000.
    assert_eq!(bucket.available(t0, BucketLimit::per_minute(2_000)), 1_600);
}

#[test]
fn time_running_backwards_refills_nothing_and_never_panics() {
    let t0 = Instant::now() + secs(10);
    let limit = BucketLimit::per_minute(60);
    let mut bucket = TokenBucket::full(t0);
    bucket.take(t0, limit, 60);
    assert_eq!(bucket.available(t0 - secs(5), limit), 0);
    assert_eq!(bucket.available(t0 + secs(1), limit), 1);
}

#[test]
fn extreme_values_saturate_instead_of_overflowing() {
    let t0 = Instant::now();
    let limit = BucketLimit::new(u64::MAX, MINUTE);
    let mut bucket = TokenBucket::full(t0);
    bucket.take(t0, limit, u64::MAX);
    bucket.take(t0, limit, u64::MAX);
    assert!(bucket.available(t0, limit) < 0);
    let tiny = BucketLimit::new(0, Duration::ZERO);
    assert_eq!(tiny.capacity(), 1);
    let mut small = TokenBucket::full(t0);
    small.take(t0, BucketLimit::per_minute(1), u64::MAX);
    assert!(small.wait_for(t0, BucketLimit::per_minute(1), 1) > secs(1_000_000_000));
}
