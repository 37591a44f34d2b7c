//! Scenario (d): many concurrent paced streams, with the arrival time of every content delta
//! at the client, to show what the gateway adds to the time to first token and between
//! chunks, and that it forwards each delta as it comes (no buffering).
//!
//! Input: a load [`Plan`] (its model streams one delta per `interval`), a stream count and a
//! bound. Output: [`StreamStats`] — streams completed, time-to-first-delta and gap
//! histograms, deltas per stream, the share of gaps that kept the backend's pacing, and the
//! spread from the first to the last delta. Events are split on blank lines (`\n\n`, as the
//! simulator and the gateway write them); a delta is an event with `"delta":{"content":`.

use std::time::Duration;

use http_body_util::BodyExt as _;
use memchr::memmem;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::loadtest::{Histogram, Plan};
use spillway_sidecar::http_client::{self, HttpClient};

/// What the streams of one round showed.
#[derive(Clone, Debug, Default)]
pub struct StreamStats {
    /// Streams that ended with a 2xx and a clean body.
    pub completed: u64,
    /// Streams that failed (status, transport, timeout).
    pub failed: u64,
    /// Time from sending to the first delta.
    pub ttft: Histogram,
    /// Time between consecutive deltas of a stream.
    pub gaps: Histogram,
    /// From the first delta to the last, per stream.
    pub spread: Histogram,
    /// Deltas received, over all streams.
    pub deltas: u64,
    /// Gaps of at least half the pacing interval (deltas that arrived on their own).
    pub paced_gaps: u64,
}

impl StreamStats {
    /// Adds one stream's delta arrival times (from its send), paced at `interval`.
    pub fn add(&mut self, times: &[Duration], interval: Duration) {
        self.completed += 1;
        self.deltas += times.len() as u64;
        let (Some(first), Some(last)) = (times.first(), times.last()) else {
            return;
        };
        self.ttft.record(*first);
        self.spread.record(last.saturating_sub(*first));
        for pair in times.windows(2) {
            let gap = pair[1].saturating_sub(pair[0]);
            self.gaps.record(gap);
            if gap >= interval / 2 {
                self.paced_gaps += 1;
            }
        }
    }

    /// Mean deltas per completed stream.
    pub fn deltas_per_stream(&self) -> f64 {
        if self.completed == 0 {
            return 0.0;
        }
        self.deltas as f64 / self.completed as f64
    }

    /// Share of gaps (0–100) that kept the pacing; 0 without gaps.
    pub fn paced_percent(&self) -> f64 {
        if self.gaps.count() == 0 {
            return 0.0;
        }
        100.0 * self.paced_gaps as f64 / self.gaps.count() as f64
    }
}

/// Counts content deltas in an SSE byte stream that arrives in arbitrary pieces.
#[derive(Debug, Default)]
pub struct DeltaCounter {
    pending: Vec<u8>,
}

impl DeltaCounter {
    /// Feeds the next piece; returns how many delta events it completed.
    pub fn feed(&mut self, data: &[u8]) -> usize {
        self.pending.extend_from_slice(data);
        let mut count = 0;
        let mut start = 0;
        while let Some(end) = memmem::find(&self.pending[start..], b"\n\n") {
            let event = &self.pending[start..start + end];
            if memmem::find(event, b"\"delta\":{\"content\":").is_some() {
                count += 1;
            }
            start += end + 2;
        }
        self.pending.drain(..start);
        count
    }
}

/// Sends `count` streams of `plan` at once (all must stream) and waits for them, each
/// bounded by `timeout`.
///
/// # Errors
/// A plan that cannot build its requests.
pub async fn run_streams(
    plan: &Plan,
    count: u64,
    interval: Duration,
    timeout: Duration,
) -> anyhow::Result<StreamStats> {
    plan.validate()?;
    let endpoint = plan.endpoint()?;
    let prompt = plan.prompt();
    let client = http_client::client();
    let mut streams = JoinSet::new();
    for seq in 0..count {
        let request = plan.request(&endpoint, &prompt, seq)?;
        streams.spawn(one_stream(client.clone(), request, timeout));
    }
    let mut stats = StreamStats::default();
    while let Some(joined) = streams.join_next().await {
        match joined {
            Ok(Some(times)) => stats.add(&times, interval),
            Ok(None) | Err(_) => stats.failed += 1,
        }
    }
    Ok(stats)
}

/// One stream: the arrival time of each delta, or `None` when it failed.
async fn one_stream(
    client: HttpClient,
    request: http::Request<http_body_util::Full<bytes::Bytes>>,
    timeout: Duration,
) -> Option<Vec<Duration>> {
    let started = Instant::now();
    let deadline = started + timeout;
    let response = tokio::time::timeout_at(deadline, client.request(request))
        .await
        .ok()?
        .ok()?;
    if !response.status().is_success() {
        return None;
    }
    let mut body = response.into_body();
    let mut counter = DeltaCounter::default();
    let mut times = Vec::with_capacity(128);
    while let Some(frame) = tokio::time::timeout_at(deadline, body.frame()).await.ok()? {
        let now = started.elapsed();
        if let Ok(data) = frame.ok()?.into_data() {
            times.extend(std::iter::repeat_n(now, counter.feed(&data)));
        }
    }
    Some(times)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_counted_across_arbitrary_splits() {
        let stream = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n",
            "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n",
            "data: [DONE]\n\n",
        )
        .as_bytes();
        for split in 1..stream.len() {
            let mut counter = DeltaCounter::default();
            let total = counter.feed(&stream[..split]) + counter.feed(&stream[split..]);
            assert_eq!(total, 2, "split at {split}");
        }
        let mut counter = DeltaCounter::default();
        let counts: Vec<usize> = stream.iter().map(|b| counter.feed(&[*b])).collect();
        assert_eq!(counts.iter().sum::<usize>(), 2);
    }

    #[test]
    fn stats_show_pacing_and_its_absence() {
        let interval = Duration::from_millis(20);
        let ms = Duration::from_millis;
        let mut paced = StreamStats::default();
        paced.add(&[ms(5), ms(25), ms(45), ms(65)], interval);
        assert_eq!(paced.ttft.quantile(0.5), Some(ms(5)));
        assert_eq!(paced.spread.quantile(0.5), Some(ms(60)));
        assert_eq!(paced.paced_percent(), 100.0);
        assert_eq!(paced.deltas_per_stream(), 4.0);
        // The same deltas held back and delivered together: no gap keeps the pacing.
        let mut buffered = StreamStats::default();
        buffered.add(&[ms(65), ms(65), ms(65), ms(66)], interval);
        assert_eq!(buffered.paced_percent(), 0.0);
        assert_eq!(buffered.ttft.quantile(0.5), Some(ms(65)));
        let mut empty = StreamStats::default();
        empty.add(&[], interval);
        assert_eq!((empty.completed, empty.paced_percent()), (1, 0.0));
    }
}
