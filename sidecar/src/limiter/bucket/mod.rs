//! A token bucket with continuous refill, exact waits and reserve-then-true-up.
//!
//! Input: an injected monotonic `Instant` on every call and the [`BucketLimit`] (capacity
//! and refill period) in force, so a config change takes effect on the next call without
//! touching the state. Output: whether an amount can be taken now or the exact time until it
//! can, and the tokens left.
//!
//! The state is the *deficit* below a full bucket, kept in integer units where one token is
//! `period_ns` units and the bucket refills `capacity` units per nanosecond. Integer
//! arithmetic makes the wait exact: a caller that comes back exactly [`TokenBucket::wait_for`]
//! later can take the amount (when nobody else took tokens in between). A fresh bucket is
//! full whatever its capacity, and usage survives a capacity change.
//!
//! Amounts larger than the capacity are admitted when the bucket is full, then the bucket
//! goes negative: the debt delays later admissions, so the long-run rate still holds, and a
//! request bigger than the whole limit is not refused forever. An overshoot reported at
//! true-up ([`TokenBucket::take`] without a check) may also drive it negative.

use std::time::{Duration, Instant};

/// The refill period of per-minute limits.
pub const MINUTE: Duration = Duration::from_secs(60);

/// The limit a bucket is held to: `capacity` tokens, refilled continuously over `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BucketLimit {
    capacity: u64,
    period_ns: u64,
}

impl BucketLimit {
    /// `capacity` tokens per `period`; both are raised to at least 1 (token, nanosecond).
    pub fn new(capacity: u64, period: Duration) -> Self {
        let period_ns = u64::try_from(period.as_nanos()).unwrap_or(u64::MAX);
        Self {
            capacity: capacity.max(1),
            period_ns: period_ns.max(1),
        }
    }

    /// `capacity` tokens per minute.
    pub fn per_minute(capacity: u64) -> Self {
        Self::new(capacity, MINUTE)
    }

    /// Tokens in a full bucket.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    fn full_units(&self) -> i128 {
        i128::from(self.capacity) * i128::from(self.period_ns)
    }

    fn units(&self, tokens: u64) -> i128 {
        i128::from(tokens) * i128::from(self.period_ns)
    }

    /// Nanoseconds (rounded up) to refill `units`.
    fn refill_time(&self, units: i128) -> Duration {
        if units <= 0 {
            return Duration::ZERO;
        }
        let rate = i128::from(self.capacity);
        let ns = (units + rate - 1) / rate;
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }
}

/// One bucket's state: 32 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenBucket {
    /// Units below full; negative never, above `full_units` when in debt.
    deficit: i128,
    /// When `deficit` was last brought up to date.
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn full(now: Instant) -> Self {
        Self {
            deficit: 0,
            updated: now,
        }
    }

    /// Brings the deficit up to `now`. Time never runs backwards here: an earlier `now` (a
    /// racing caller) refills nothing.
    fn refill(&mut self, now: Instant, limit: BucketLimit) {
        let elapsed = now.saturating_duration_since(self.updated);
        if elapsed.is_zero() {
            return;
        }
        self.updated = now;
        let elapsed_ns = i128::try_from(elapsed.as_nanos()).unwrap_or(i128::MAX);
        let gained = elapsed_ns.saturating_mul(i128::from(limit.capacity));
        self.deficit = self.deficit.saturating_sub(gained).max(0);
    }

    /// Whole tokens available now; negative while the bucket is in debt.
    pub fn available(&mut self, now: Instant, limit: BucketLimit) -> i64 {
        self.refill(now, limit);
        let level = limit.full_units() - self.deficit;
        let tokens = level.div_euclid(i128::from(limit.period_ns));
        i64::try_from(tokens).unwrap_or(if tokens < 0 { i64::MIN } else { i64::MAX })
    }

    /// Time until `amount` can be taken: zero when it can be taken now. Amounts above the
    /// capacity need a full bucket.
    pub fn wait_for(&mut self, now: Instant, limit: BucketLimit, amount: u64) -> Duration {
        self.refill(now, limit);
        let need = limit.units(amount.min(limit.capacity));
        let level = limit.full_units() - self.deficit;
        limit.refill_time(need - level)
    }

    /// Takes `amount` unconditionally (after a successful [`wait_for`](Self::wait_for), or to
    /// charge an overshoot at true-up); the bucket may go negative.
    pub fn take(&mut self, now: Instant, limit: BucketLimit, amount: u64) {
        self.refill(now, limit);
        self.deficit = self.deficit.saturating_add(limit.units(amount));
    }

    /// Returns `amount` reserved but not used; the bucket never exceeds full.
    pub fn give_back(&mut self, now: Instant, limit: BucketLimit, amount: u64) {
        self.refill(now, limit);
        self.deficit = self.deficit.saturating_sub(limit.units(amount)).max(0);
    }

    /// Time until the bucket is full again (zero when it is).
    pub fn until_full(&mut self, now: Instant, limit: BucketLimit) -> Duration {
        self.refill(now, limit);
        limit.refill_time(self.deficit)
    }

    /// Whether the bucket is full at `now`, i.e. indistinguishable from a fresh one.
    pub fn is_full(&mut self, now: Instant, limit: BucketLimit) -> bool {
        self.refill(now, limit);
        self.deficit == 0
    }
}

#[cfg(test)]
mod tests;
