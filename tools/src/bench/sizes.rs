//! How big a bench run is: rounds, warm-up, requests per step, the fixed-rate ladder, the
//! closed-loop connection counts and the stream scenario — the full defaults, the `--quick`
//! smoke sizes, and the command-line overrides on top of either.
//!
//! Input: `--quick` and the overrides. Output: validated [`Sizes`]; a zero or empty size is
//! an error that names the flag.

use std::time::Duration;

/// The sizes of one run; see the module docs.
#[derive(Clone, Debug, PartialEq)]
pub struct Sizes {
    /// Runs of every scenario; the table shows the median.
    pub rounds: usize,
    /// Closed-loop load on each side before measuring.
    pub warmup: Duration,
    /// (a) non-streaming requests one at a time per round and side (streams: half as many).
    pub sequential: u64,
    /// (b) fixed rates, requests per second, in order.
    pub ladder: Vec<f64>,
    /// (b) stop climbing once a p99 exceeds this.
    pub ladder_stop_p99: Duration,
    /// Length of each (b) and (c) step.
    pub step: Duration,
    /// (c) concurrent connections of each closed-loop step.
    pub connections: Vec<usize>,
    /// (d) concurrent streams.
    pub streams: u64,
    /// (d) deltas per stream.
    pub deltas: u32,
    /// (d) time between deltas at the backend.
    pub interval: Duration,
    /// Run (e), each feature off in turn.
    pub features: bool,
}

/// A size that cannot run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0} must be at least 1")]
pub struct SizeError(pub &'static str);

impl Sizes {
    /// The full run (~10 minutes): 3 rounds, 5 s warm-up, 2,000 sequential requests,
    /// 500/1k/2k/3k/5k QPS, 16/64/256 connections, 5 s steps, 1,000 streams of 64 deltas
    /// 20 ms apart, and every feature off in turn.
    pub fn full() -> Self {
        Self {
            rounds: 3,
            warmup: Duration::from_secs(5),
            sequential: 2000,
            ladder: vec![500.0, 1000.0, 2000.0, 3000.0, 5000.0],
            ladder_stop_p99: Duration::from_millis(50),
            step: Duration::from_secs(5),
            connections: vec![16, 64, 256],
            streams: 1000,
            deltas: 64,
            interval: Duration::from_millis(20),
            features: true,
        }
    }

    /// The smoke run (~1 minute): one round, 1 s warm-up and steps, 200 sequential
    /// requests, 500/1k QPS, 16/64 connections, 100 streams of 16 deltas.
    pub fn quick() -> Self {
        Self {
            rounds: 1,
            warmup: Duration::from_secs(1),
            sequential: 200,
            ladder: vec![500.0, 1000.0],
            step: Duration::from_secs(1),
            connections: vec![16, 64],
            streams: 100,
            deltas: 16,
            ..Self::full()
        }
    }

    /// Checks every size.
    ///
    /// # Errors
    /// The first zero or empty size, by its flag.
    pub fn validate(&self) -> Result<(), SizeError> {
        let checks = [
            (self.rounds == 0, "--rounds"),
            (self.sequential < 2, "--sequential (at least 2)"),
            (self.ladder.is_empty(), "--ladder"),
            (
                self.ladder.iter().any(|r| !(r.is_finite() && *r >= 1.0)),
                "every --ladder rate",
            ),
            (self.step.is_zero(), "--step"),
            (self.connections.is_empty(), "--connections"),
            (self.connections.contains(&0), "every --connections count"),
            (self.streams == 0, "--streams"),
            (self.deltas < 2, "--deltas (at least 2)"),
            (self.interval.is_zero(), "--interval"),
        ];
        match checks.iter().find(|(bad, _)| *bad) {
            Some((_, flag)) => Err(SizeError(flag)),
            None => Ok(()),
        }
    }

    /// Time (d) streams get, with room for a loaded machine.
    pub fn stream_timeout(&self) -> Duration {
        self.interval * self.deltas + Duration::from_secs(30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_quick_is_smaller() {
        let (full, quick) = (Sizes::full(), Sizes::quick());
        assert_eq!(full.validate(), Ok(()));
        assert_eq!(quick.validate(), Ok(()));
        assert!(quick.rounds < full.rounds && quick.streams < full.streams);
        assert_eq!(full.ladder, vec![500.0, 1000.0, 2000.0, 3000.0, 5000.0]);
        assert_eq!(
            full.stream_timeout(),
            Duration::from_millis(64 * 20 + 30_000)
        );
    }

    #[test]
    fn zero_sizes_name_their_flag() {
        let bad = |change: fn(&mut Sizes)| {
            let mut sizes = Sizes::quick();
            change(&mut sizes);
            sizes.validate().expect_err("invalid").0
        };
        assert_eq!(bad(|s| s.rounds = 0), "--rounds");
        assert_eq!(bad(|s| s.ladder.clear()), "--ladder");
        assert_eq!(bad(|s| s.ladder = vec![f64::NAN]), "every --ladder rate");
        assert_eq!(
            bad(|s| s.connections = vec![16, 0]),
            "every --connections count"
        );
        assert_eq!(bad(|s| s.step = Duration::ZERO), "--step");
        assert_eq!(bad(|s| s.deltas = 1), "--deltas (at least 2)");
    }
}
