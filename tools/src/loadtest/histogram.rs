//! A fixed-size, mergeable latency histogram with log-linear buckets (under 1 % relative
//! error), so percentiles of millions of samples cost a few kilobytes and no sorting.
//!
//! Input: durations (recorded in whole microseconds, capped at [`MAX_RECORDABLE`]). Output:
//! count, min, max, mean and percentiles. Values below 128 µs are exact; above, each power of
//! two is split into 64 buckets and a percentile reports its bucket's midpoint, clamped to the
//! exact min and max seen.

use std::time::Duration;

/// Values below this many microseconds get a bucket each.
const LINEAR: u64 = 128;
/// Buckets per power of two above [`LINEAR`].
const SUB: u64 = 64;
/// Largest value kept; longer durations are recorded as this.
pub const MAX_RECORDABLE: Duration = Duration::from_secs(3600);
/// Bits of the largest value (3.6e9 µs < 2^32).
const MAX_BITS: u32 = 32;
/// Bucket count: the linear part plus `SUB` per extra bit.
const BUCKETS: usize = (LINEAR + (MAX_BITS as u64 - 7) * SUB) as usize;

/// A latency histogram; see the module docs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum_micros: u64,
    min_micros: u64,
    max_micros: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            counts: vec![0; BUCKETS],
            count: 0,
            sum_micros: 0,
            min_micros: u64::MAX,
            max_micros: 0,
        }
    }
}

fn bucket_of(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    let bits = u64::BITS - micros.leading_zeros();
    let shift = bits - 7;
    let top = micros >> shift; // within 64..128
    (LINEAR + u64::from(shift - 1) * SUB + (top - SUB)) as usize
}

/// Lowest and highest value of bucket `index`.
fn bounds_of(index: usize) -> (u64, u64) {
    let index = index as u64;
    if index < LINEAR {
        return (index, index);
    }
    let shift = (index - LINEAR) / SUB + 1;
    let top = (index - LINEAR) % SUB + SUB;
    (top << shift, ((top + 1) << shift) - 1)
}

impl Histogram {
    /// An empty histogram.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample.
    pub fn record(&mut self, value: Duration) {
        let micros = u64::try_from(value.min(MAX_RECORDABLE).as_micros()).unwrap_or(u64::MAX);
        self.counts[bucket_of(micros)] += 1;
        self.count += 1;
        self.sum_micros = self.sum_micros.saturating_add(micros);
        self.min_micros = self.min_micros.min(micros);
        self.max_micros = self.max_micros.max(micros);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(&other.counts) {
            *mine += theirs;
        }
        self.count += other.count;
        self.sum_micros = self.sum_micros.saturating_add(other.sum_micros);
        self.min_micros = self.min_micros.min(other.min_micros);
        self.max_micros = self.max_micros.max(other.max_micros);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The smallest sample; `None` when empty.
    pub fn min(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.min_micros))
    }

    /// The largest sample; `None` when empty.
    pub fn max(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.max_micros))
    }

    /// The arithmetic mean; `None` when empty.
    pub fn mean(&self) -> Option<Duration> {
        (self.count > 0).then(|| Duration::from_micros(self.sum_micros / self.count))
    }

    /// The value at quantile `q` (0–1, clamped): the smallest bucket holding at least
    /// `ceil(q × count)` samples, reported as its midpoint within the exact min and max (the
    /// first and last rank are the exact min and max).
    /// `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        // The rank of the wanted sample, 1-based; f64 holds any realistic count exactly.
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        if rank == 1 {
            return self.min();
        }
        if rank == self.count {
            return self.max();
        }
        let mut seen = 0;
        for (index, n) in self.counts.iter().enumerate() {
            seen += n;
            if seen >= rank {
                let (low, high) = bounds_of(index);
                let mid = low + (high - low) / 2;
                let value = mid.clamp(self.min_micros, self.max_micros);
                return Some(Duration::from_micros(value));
            }
        }
        self.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn buckets_are_contiguous_and_cover_every_value() {
        let mut expected_low = 0;
        for index in 0..BUCKETS {
            let (low, high) = bounds_of(index);
            assert_eq!(low, expected_low, "bucket {index}");
            assert!(high >= low);
            assert_eq!(bucket_of(low), index);
            assert_eq!(bucket_of(high), index);
            expected_low = high + 1;
        }
        assert!(expected_low > MAX_RECORDABLE.as_micros() as u64);
    }

    #[test]
    fn percentiles_of_one_to_a_thousand_ms_are_within_one_percent() {
        let mut h = Histogram::new();
        for n in (1..=1000).rev() {
            h.record(ms(n));
        }
        for (q, want) in [(0.5, 500.0), (0.9, 900.0), (0.99, 990.0), (0.999, 999.0)] {
            let got = h.quantile(q).expect("a sample").as_secs_f64() * 1000.0;
            assert!(
                (got - want).abs() / want < 0.01,
                "p{q}: got {got} ms, want {want}"
            );
        }
        assert_eq!(h.quantile(1.0), Some(ms(1000)), "p100 is the exact max");
        assert_eq!(h.quantile(0.0), Some(ms(1)), "p0 is the exact min");
        assert_eq!(
            (h.min(), h.max(), h.count()),
            (Some(ms(1)), Some(ms(1000)), 1000)
        );
        assert_eq!(h.mean(), Some(Duration::from_micros(500_500)));
    }

    #[test]
    fn small_values_are_exact_and_huge_values_are_capped() {
        let mut h = Histogram::new();
        h.record(Duration::from_micros(7));
        assert_eq!(h.quantile(0.5), Some(Duration::from_micros(7)));
        h.record(Duration::from_secs(10 * 3600));
        assert_eq!(h.max(), Some(MAX_RECORDABLE));
    }

    #[test]
    fn empty_histogram_has_no_percentiles() {
        let h = Histogram::new();
        assert_eq!(
            (h.quantile(0.5), h.min(), h.max(), h.mean()),
            (None, None, None, None)
        );
    }

    #[test]
    fn merging_equals_recording_everything_in_one() {
        let (mut a, mut b, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for n in 1..=300 {
            let d = Duration::from_micros(n * 997);
            if n.is_multiple_of(3) { &mut a } else { &mut b }.record(d);
            all.record(d);
        }
        a.merge(&b);
        assert_eq!(a, all);
        let mut empty = Histogram::new();
        empty.merge(&Histogram::new());
        assert_eq!(empty, Histogram::new(), "merging empties keeps min unset");
    }
}
