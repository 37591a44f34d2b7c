//! Scenario (e): each gateway feature off in turn. Every [`Variant`] gets a fresh `spillway
//! run`, a short warm-up, then the same two measurements as the direct baseline of the same
//! round: latency one request at a time, and throughput at 64 connections (with the
//! gateway's CPU-seconds per 1,000 requests).
//!
//! Scenario (f), with `--compare-bin`: this build and another `spillway` binary (the previous
//! commit's, say), each a fresh everything-on gateway measured the same way in the same round,
//! the order alternating between rounds.
//!
//! Input: the [`Bench`] and a [`GatewaySetup`]. Output: samples in `bench.results`, one
//! scenario group per variant (and per binary compared).

use std::path::Path;
use std::time::Duration;

use super::scenarios::{Bench, load, micros, plan};
use super::stack::{FAST_MODEL, Gateway, GatewaySetup, Variant};
use super::table::{Metric, Side, Unit};

/// Connections of the throughput step.
const CONNECTIONS: usize = 64;
/// Time a new gateway gets to serve its first request.
const START_TIMEOUT: Duration = Duration::from_secs(15);

struct Figures {
    p50: f64,
    rps: f64,
    cpu_per_1k: Option<f64>,
}

/// Sends single requests until one succeeds, bounded by [`START_TIMEOUT`].
///
/// # Errors
/// No success in time (the message holds the last failure).
pub async fn wait_until_serving(url: &str) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + START_TIMEOUT;
    loop {
        let mut probe = plan(url, FAST_MODEL, false);
        probe.workers = 1;
        probe.total_requests = 1;
        probe.request_timeout = Duration::from_secs(2);
        match load(probe).await {
            Ok(_) => return Ok(()),
            Err(e) if tokio::time::Instant::now() >= deadline => {
                return Err(e.context(format!("{url} did not serve within 15s")));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn measure(bench: &Bench, url: &str, gateway: Option<&Gateway>) -> anyhow::Result<Figures> {
    let sizes = &bench.sizes;
    let mut warm = plan(url, FAST_MODEL, false);
    warm.workers = 16;
    warm.total_requests = u64::MAX / 2;
    warm.duration = sizes.warmup.min(Duration::from_secs(2));
    load(warm).await?;
    let mut single = plan(url, FAST_MODEL, false);
    single.workers = 1;
    single.total_requests = (sizes.sequential / 2).max(2);
    single.duration = Duration::from_secs(600);
    let p50 = micros(load(single).await?.latency.quantile(0.5));
    let mut closed = plan(url, FAST_MODEL, false);
    closed.workers = CONNECTIONS;
    closed.total_requests = u64::MAX / 2;
    closed.duration = sizes.step;
    let before = gateway.map(|g| g.child.cpu_seconds()).transpose()?;
    let report = load(closed).await?;
    let after = gateway.map(|g| g.child.cpu_seconds()).transpose()?;
    let cpu_per_1k = match (before, after) {
        (Some(before), Some(after)) => Some(1000.0 * (after - before) / report.ok() as f64),
        _ => None,
    };
    Ok(Figures {
        p50,
        rps: report.ok() as f64 / report.elapsed.as_secs_f64().max(1e-3),
        cpu_per_1k,
    })
}

impl Bench {
    /// One round of (e): the direct baseline, then each variant.
    ///
    /// # Errors
    /// A gateway that does not start or serve, or a step without any success.
    pub async fn features(&mut self, setup: &GatewaySetup<'_>) -> anyhow::Result<()> {
        let fast = self.fast_direct.clone();
        let direct = measure(self, &fast, None).await?;
        for variant in Variant::ALL {
            let figures = self.fresh(setup, variant).await?;
            self.record_side(&format!("e. {}", variant.label()), &direct, &figures);
        }
        Ok(())
    }

    /// One round of (f): the direct baseline, then this build and `other`, everything on;
    /// `other` goes first in even rounds.
    ///
    /// # Errors
    /// A gateway that does not start or serve, or a step without any success.
    pub async fn compare(
        &mut self,
        setup: &GatewaySetup<'_>,
        other: &Path,
        round: usize,
    ) -> anyhow::Result<()> {
        let fast = self.fast_direct.clone();
        let direct = measure(self, &fast, None).await?;
        let theirs = GatewaySetup {
            exe: other,
            ..setup.clone()
        };
        let mut sides = [("f. this build", setup), ("f. --compare-bin", &theirs)];
        if round.is_multiple_of(2) {
            sides.reverse();
        }
        for (scenario, setup) in sides {
            let figures = self.fresh(setup, Variant::AllOn).await?;
            self.record_side(scenario, &direct, &figures);
        }
        Ok(())
    }

    /// Starts a gateway of `variant`, measures it, stops it.
    async fn fresh(&self, setup: &GatewaySetup<'_>, variant: Variant) -> anyhow::Result<Figures> {
        let gateway = setup.start(variant).await?;
        let measured = match wait_until_serving(&gateway.url).await {
            Ok(()) => measure(self, &gateway.url, Some(&gateway)).await,
            Err(e) => Err(e),
        };
        gateway.child.stop().await;
        measured
    }

    fn record_side(&mut self, scenario: &str, direct: &Figures, figures: &Figures) {
        let p50 = Metric::added(scenario, "latency p50 (one at a time)", Unit::Micros);
        let rps = Metric::added(scenario, "RPS (64 conns)", Unit::PerSecond);
        self.results.record(&p50, Side::Direct, direct.p50);
        self.results.record(&p50, Side::Gateway, figures.p50);
        self.results.record(&rps, Side::Direct, direct.rps);
        self.results.record(&rps, Side::Gateway, figures.rps);
        if let Some(cpu) = figures.cpu_per_1k {
            let metric = Metric::plain(scenario, "CPU-s / 1k req", Unit::CpuPer1k);
            self.results.record(&metric, Side::Gateway, cpu);
        }
    }
}
