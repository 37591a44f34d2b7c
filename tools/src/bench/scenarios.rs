//! Scenarios (a)–(d) of one round, each measured directly against the simulator and then
//! through the gateway, back to back (interleaved), with the gateway's CPU time and memory
//! read from `/proc` around its steps.
//!
//! Input: the [`Bench`] state (sizes, the simulator's URLs) and a running [`Gateway`].
//! Output: samples added to [`Bench::results`]; a [`RssPeak`] sampler for memory under load.
//! Every load is bounded by the loadtest runner's count, duration and grace.

use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::procs::rss_mib_of;
use super::sizes::Sizes;
use super::stack::{APPS, FAST_MODEL, Gateway, PACED_MODEL};
use super::streams::{StreamStats, run_streams};
use super::table::{Metric, Results, Side, Target, Unit};
use crate::loadtest::{Api, Histogram, Plan, Report, run_load};

/// How long every request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Workers of an open-loop step: enough that queueing shows as latency, not as a cap.
const OPEN_LOOP_WORKERS: usize = 512;
/// The p99 that counts as "sustained" in (c).
const SUSTAINED_P99: Duration = Duration::from_millis(5);

/// Scenario labels, in table order.
pub const A: &str = "a. one at a time";
/// (b)
pub const B: &str = "b. fixed rate (open loop)";
/// (c)
pub const C: &str = "c. closed loop";
/// (d)
pub const D: &str = "d. paced streams";
/// Resources and sanity rows.
pub const R: &str = "gateway resources";

/// The state of a bench run; see the module docs.
#[derive(Debug)]
pub struct Bench {
    /// What to run.
    pub sizes: Sizes,
    /// What was measured.
    pub results: Results,
    /// The simulator's fast backend (direct side).
    pub fast_direct: String,
    /// The simulator's paced backend (direct side).
    pub paced_direct: String,
    /// Gateway resource figures, recorded after the scenarios so they form one group.
    pub resources: Vec<(Metric, f64)>,
}

/// Where one side of a step sends its load.
#[derive(Clone, Copy, Debug)]
pub struct Endpoint<'a> {
    /// Direct or gateway.
    pub side: Side,
    /// Base URL.
    pub url: &'a str,
    /// The gateway process, on the gateway side.
    pub gateway: Option<&'a Gateway>,
}

/// `d` in microseconds; 0 for none.
pub fn micros(d: Option<Duration>) -> f64 {
    d.map_or(0.0, |d| d.as_secs_f64() * 1e6)
}

/// A load plan for the bench: OpenAI shape, the bench apps with their keys, ~100 prompt
/// tokens, 16 completion tokens, streams without `include_usage` (so the gateway adds it and
/// strips the usage chunk: its most expensive streaming path).
pub fn plan(url: &str, model: &str, stream: bool) -> Plan {
    let mut plan = Plan::new(
        url,
        Api::OpenAi {
            model: model.to_owned(),
        },
    );
    plan.apps = APPS.iter().map(|a| (*a).to_owned()).collect();
    plan.app_as_key = true;
    plan.stream_ratio = if stream { 1.0 } else { 0.0 };
    plan.include_usage_ratio = 0.0;
    plan.max_tokens = 16;
    plan.request_timeout = REQUEST_TIMEOUT;
    plan.grace = Duration::from_secs(5);
    plan
}

/// Runs `plan` and fails if not a single request succeeded (the stack is broken).
///
/// # Errors
/// An invalid plan, or no 2xx response at all.
pub async fn load(plan: Plan) -> anyhow::Result<Report> {
    let url = plan.url.clone();
    let report = run_load(plan, None).await?.report;
    if report.ok() == 0 {
        anyhow::bail!(
            "no successful response from {url}: {:?} {:?}",
            report.by_status,
            report.errors
        );
    }
    Ok(report)
}

/// Gateway CPU-seconds so far; 0 on the direct side.
fn cpu(endpoint: Endpoint<'_>) -> anyhow::Result<f64> {
    endpoint.gateway.map_or(Ok(0.0), |g| g.child.cpu_seconds())
}

/// The direct side (`url`) then the gateway side.
fn sides<'a>(url: &'a str, gateway: &'a Gateway) -> [Endpoint<'a>; 2] {
    [
        Endpoint {
            side: Side::Direct,
            url,
            gateway: None,
        },
        Endpoint {
            side: Side::Gateway,
            url: &gateway.url,
            gateway: Some(gateway),
        },
    ]
}

impl Bench {
    fn record(&mut self, metric: &Metric, side: Side, value: f64) {
        self.results.record(metric, side, value);
    }

    /// Records the pending resource figures (gateway side).
    pub fn flush_resources(&mut self) {
        for (metric, value) in std::mem::take(&mut self.resources) {
            self.results.record(&metric, Side::Gateway, value);
        }
    }

    /// Closed-loop load on both sides (half the requests streaming) for the warm-up time.
    ///
    /// # Errors
    /// A side with no successful response.
    pub async fn warm_up(&mut self, gateway: &Gateway) -> anyhow::Result<()> {
        let fast = self.fast_direct.clone();
        for endpoint in sides(&fast, gateway) {
            let mut plan = plan(endpoint.url, FAST_MODEL, false);
            plan.stream_ratio = 0.5;
            plan.workers = 16;
            plan.total_requests = u64::MAX / 2;
            plan.duration = self.sizes.warmup;
            load(plan).await?;
        }
        Ok(())
    }

    /// One round of (a)–(d).
    ///
    /// # Errors
    /// A step with no successful response, or the gateway gone.
    pub async fn round(&mut self, gateway: &Gateway) -> anyhow::Result<()> {
        self.one_at_a_time(gateway).await?;
        self.ladder(gateway).await?;
        self.closed_loop(gateway).await?;
        self.paced_streams(gateway).await
    }

    async fn one_at_a_time(&mut self, gateway: &Gateway) -> anyhow::Result<()> {
        let fast = self.fast_direct.clone();
        let p50 =
            Metric::added(A, "latency p50", Unit::Micros).with_target(Target::AddedAtMost(100.0));
        let p99 =
            Metric::added(A, "latency p99", Unit::Micros).with_target(Target::AddedAtMost(300.0));
        let ttft50 = Metric::added(A, "stream TTFT p50", Unit::Micros)
            .with_target(Target::AddedAtMost(200.0));
        let ttft99 = Metric::added(A, "stream TTFT p99", Unit::Micros);
        for endpoint in sides(&fast, gateway) {
            let mut plain = plan(endpoint.url, FAST_MODEL, false);
            plain.workers = 1;
            plain.total_requests = self.sizes.sequential;
            plain.duration = Duration::from_secs(600);
            let report = load(plain.clone()).await?;
            self.record(&p50, endpoint.side, micros(report.latency.quantile(0.5)));
            self.record(&p99, endpoint.side, micros(report.latency.quantile(0.99)));
            let mut streams = plain;
            streams.stream_ratio = 1.0;
            streams.total_requests = self.sizes.sequential / 2;
            let report = load(streams).await?;
            self.record(&ttft50, endpoint.side, micros(report.ttft.quantile(0.5)));
            self.record(&ttft99, endpoint.side, micros(report.ttft.quantile(0.99)));
        }
        Ok(())
    }

    async fn ladder(&mut self, gateway: &Gateway) -> anyhow::Result<()> {
        let fast = self.fast_direct.clone();
        let step = self.sizes.step;
        for rate in self.sizes.ladder.clone() {
            let label = format!("{} QPS", rate.round());
            let p99_target = (rate == 3000.0).then_some(Target::AddedAtMost(1000.0));
            let mut p99 = Metric::added(B, &format!("{label} p99"), Unit::Micros);
            p99.target = p99_target;
            let mut worst = Duration::ZERO;
            for endpoint in sides(&fast, gateway) {
                let mut plan = plan(endpoint.url, FAST_MODEL, false);
                plan.rate = Some(rate);
                plan.workers = OPEN_LOOP_WORKERS;
                plan.total_requests = (rate * step.as_secs_f64()).ceil().max(1.0) as u64;
                plan.duration = step + Duration::from_secs(1);
                let planned = plan.total_requests;
                let cpu_before = cpu(endpoint)?;
                let report = load(plan).await?;
                let cpu_used = cpu(endpoint)? - cpu_before;
                let latency = &report.latency;
                worst = worst.max(latency.quantile(0.99).unwrap_or_default());
                let side = endpoint.side;
                let p50 = Metric::added(B, &format!("{label} p50"), Unit::Micros);
                self.record(&p50, side, micros(latency.quantile(0.5)));
                self.record(&p99, side, micros(latency.quantile(0.99)));
                let success = Metric::plain(B, &format!("{label} success"), Unit::Percent);
                self.record(&success, side, 100.0 * report.ok() as f64 / planned as f64);
                if endpoint.gateway.is_some() {
                    let per_1k =
                        Metric::plain(B, &format!("{label} CPU-s / 1k req"), Unit::CpuPer1k);
                    self.record(&per_1k, side, 1000.0 * cpu_used / report.ok() as f64);
                }
            }
            if worst > self.sizes.ladder_stop_p99 {
                break;
            }
        }
        Ok(())
    }

    async fn closed_loop(&mut self, gateway: &Gateway) -> anyhow::Result<()> {
        let fast = self.fast_direct.clone();
        let (mut cpu_used, mut served, mut peak_rss) = (0.0, 0u64, 0.0f64);
        let mut busy_time = Duration::ZERO;
        for endpoint in sides(&fast, gateway) {
            let mut best_sustained = 0.0f64;
            for conns in self.sizes.connections.clone() {
                let mut plan = plan(endpoint.url, FAST_MODEL, false);
                plan.workers = conns;
                plan.total_requests = u64::MAX / 2;
                plan.duration = self.sizes.step;
                let cpu_before = cpu(endpoint)?;
                let rss = endpoint.gateway.map(|g| RssPeak::start(g.child.pid()));
                let report = load(plan).await?;
                if let Some(rss) = rss {
                    peak_rss = peak_rss.max(rss.finish().await);
                }
                cpu_used += cpu(endpoint)? - cpu_before;
                if endpoint.gateway.is_some() {
                    served += report.ok();
                    busy_time += report.elapsed;
                }
                let rps = report.ok() as f64 / report.elapsed.as_secs_f64().max(1e-3);
                let p99 = report.latency.quantile(0.99).unwrap_or_default();
                if p99 <= SUSTAINED_P99 {
                    best_sustained = best_sustained.max(rps);
                }
                let side = endpoint.side;
                let rps_row = Metric::added(C, &format!("{conns} conns RPS"), Unit::PerSecond);
                self.record(&rps_row, side, rps);
                let p99_row = Metric::added(C, &format!("{conns} conns p99"), Unit::Micros);
                self.record(&p99_row, side, micros(Some(p99)));
            }
            let sustained = Metric::added(C, "max RPS with p99 ≤ 5ms", Unit::PerSecond)
                .with_target(Target::AtLeast(5000.0));
            self.record(&sustained, endpoint.side, best_sustained);
        }
        let per_1k = Metric::plain(C, "gateway CPU-s / 1k req", Unit::CpuPer1k)
            .with_target(Target::AtMost(0.1));
        if served > 0 {
            self.record(&per_1k, Side::Gateway, 1000.0 * cpu_used / served as f64);
        }
        let rss = Metric::plain(R, "RSS under closed-loop load", Unit::MiB);
        self.resources.push((rss, peak_rss));
        let busy = Metric::plain(R, "CPU busy under closed-loop load", Unit::Percent);
        self.resources
            .push((busy, busy_percent(cpu_used, busy_time)));
        Ok(())
    }

    async fn paced_streams(&mut self, gateway: &Gateway) -> anyhow::Result<()> {
        let paced = self.paced_direct.clone();
        let sizes = self.sizes.clone();
        let n = sizes.streams;
        for endpoint in sides(&paced, gateway) {
            let mut plan = plan(endpoint.url, PACED_MODEL, true);
            plan.max_tokens = sizes.deltas;
            plan.request_timeout = sizes.stream_timeout();
            let rss = endpoint.gateway.map(|g| RssPeak::start(g.child.pid()));
            let (cpu_before, started) = (cpu(endpoint)?, tokio::time::Instant::now());
            let stats = run_streams(&plan, n, sizes.interval, sizes.stream_timeout()).await?;
            let cpu_used = cpu(endpoint)? - cpu_before;
            if stats.completed == 0 {
                anyhow::bail!("no stream completed through {}", endpoint.url);
            }
            self.record_streams(endpoint.side, &stats);
            if let Some(rss) = rss {
                let metric = Metric::plain(R, &format!("RSS with {n} open streams"), Unit::MiB)
                    .with_target(Target::AtMost(50.0));
                self.resources.push((metric, rss.finish().await));
                let busy =
                    Metric::plain(R, &format!("CPU busy with {n} open streams"), Unit::Percent);
                self.resources
                    .push((busy, busy_percent(cpu_used, started.elapsed())));
            }
        }
        Ok(())
    }
}

/// CPU-seconds `used` over `wall` time, as a share of one CPU (0–100+).
fn busy_percent(used: f64, wall: Duration) -> f64 {
    100.0 * used / wall.as_secs_f64().max(1e-3)
}

impl Bench {
    fn record_streams(&mut self, side: Side, stats: &StreamStats) {
        let p = |h: &Histogram, q: f64| micros(h.quantile(q));
        let added: [(&str, f64); 4] = [
            ("TTFT p50", p(&stats.ttft, 0.5)),
            ("TTFT p99", p(&stats.ttft, 0.99)),
            ("inter-chunk p50", p(&stats.gaps, 0.5)),
            ("inter-chunk p99", p(&stats.gaps, 0.99)),
        ];
        let plain: [(&str, Unit, f64); 4] = [
            ("deltas per stream", Unit::Count, stats.deltas_per_stream()),
            (
                "gaps ≥ half the pacing",
                Unit::Percent,
                stats.paced_percent(),
            ),
            ("first→last delta p50", Unit::Micros, p(&stats.spread, 0.5)),
            ("streams failed", Unit::Count, stats.failed as f64),
        ];
        let completed = Metric::plain(D, "streams completed", Unit::Count);
        self.record(&completed, side, stats.completed as f64);
        for (name, value) in added {
            self.record(&Metric::added(D, name, Unit::Micros), side, value);
        }
        for (name, unit, value) in plain {
            self.record(&Metric::plain(D, name, unit), side, value);
        }
    }
}

/// The peak resident memory of a process while it runs, sampled every 50 ms.
#[derive(Debug)]
pub struct RssPeak {
    stop: watch::Sender<bool>,
    task: JoinHandle<f64>,
}

impl RssPeak {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> Self {
        let stop = watch::Sender::new(false);
        let mut stopped = stop.subscribe();
        let task = tokio::spawn(async move {
            let mut peak = 0.0f64;
            loop {
                if let Ok(mib) = rss_mib_of(pid) {
                    peak = peak.max(mib);
                }
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    _ = stopped.wait_for(|s| *s) => return peak,
                }
            }
        });
        Self { stop, task }
    }

    /// Stops sampling; the peak in MiB (0 when never read).
    pub async fn finish(self) -> f64 {
        self.stop.send_replace(true);
        self.task.await.unwrap_or(0.0)
    }
}
