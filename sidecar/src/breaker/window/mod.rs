//! A sliding window of request and failure counts with fixed memory.
//!
//! Input: the time since the breaker's origin and whether each outcome was a failure. Output:
//! the totals over (about) the last interval. The interval is split into [`BUCKETS`] equal
//! time buckets kept in a ring, with running totals, so memory is the same at 1 request/s
//! or 10k requests/s and every update is O(1) amortised. An event leaves the window between
//! `interval - interval/BUCKETS` and `interval` after it happened (bucket granularity).

use std::time::Duration;

/// Buckets per window.
pub(super) const BUCKETS: usize = 32;
const BUCKETS_U64: u64 = BUCKETS as u64;

/// Totals inside the window after an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Totals {
    /// Every outcome counted by the rule (failures included).
    pub(super) requests: u64,
    /// Outcomes the rule counts as failures.
    pub(super) failures: u64,
}

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    requests: u64,
    failures: u64,
}

/// Ring of time buckets plus running totals.
#[derive(Clone, Debug)]
pub(super) struct Window {
    /// Bucket width in nanoseconds, at least 1.
    width_ns: u128,
    /// Absolute index (time / width) of the newest bucket.
    head: u64,
    requests: u64,
    failures: u64,
    buckets: [Bucket; BUCKETS],
}

impl Window {
    /// An empty window covering `interval`.
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            width_ns: (interval.as_nanos() / u128::from(BUCKETS_U64)).max(1),
            head: 0,
            requests: 0,
            failures: 0,
            buckets: [Bucket::default(); BUCKETS],
        }
    }

    /// Counts one outcome at `elapsed` (time since the breaker's origin) and returns the
    /// totals. An outcome older than the newest bucket (threads racing) counts in the newest.
    pub(super) fn add(&mut self, elapsed: Duration, failure: bool) -> Totals {
        let index = u64::try_from(elapsed.as_nanos() / self.width_ns).unwrap_or(u64::MAX);
        self.advance(index);
        let bucket = &mut self.buckets[slot(self.head)];
        bucket.requests = bucket.requests.saturating_add(1);
        self.requests = self.requests.saturating_add(1);
        if failure {
            bucket.failures = bucket.failures.saturating_add(1);
            self.failures = self.failures.saturating_add(1);
        }
        Totals {
            requests: self.requests,
            failures: self.failures,
        }
    }

    /// Forgets everything.
    pub(super) fn reset(&mut self) {
        self.head = 0;
        self.requests = 0;
        self.failures = 0;
        self.buckets = [Bucket::default(); BUCKETS];
    }

    /// Moves the head to `index`, expiring the buckets that fall out of the window.
    fn advance(&mut self, index: u64) {
        if index <= self.head {
            return;
        }
        let steps = index - self.head;
        if steps >= BUCKETS_U64 {
            self.reset();
        } else {
            for step in 1..=steps {
                let bucket = &mut self.buckets[slot(self.head + step)];
                self.requests = self.requests.saturating_sub(bucket.requests);
                self.failures = self.failures.saturating_sub(bucket.failures);
                *bucket = Bucket::default();
            }
        }
        self.head = index;
    }
}

fn slot(index: u64) -> usize {
    // The remainder is below BUCKETS, so it always fits.
    usize::try_from(index % BUCKETS_U64).unwrap_or(0)
}

#[cfg(test)]
mod tests;
