//! The demo while traffic runs: every 50 ms it polls the breakers and the apps' quota
//! refusals ([`QuotaWatch`], which also probes a quota 429's `Retry-After`), injects the
//! midway 5xx burst when due, and shows the live view (a redrawn screen twice a second, or
//! events and a status line every 3 s); it ends when every app's load has finished, or on
//! Ctrl-C after stopping them (requests in flight get their grace period).
//!
//! Input: the running [`Stack`], the apps' [`LoadHandle`]s and the [`QuotaWatch`]. Output:
//! their [`Finished`] runs, the [`BreakerWatch`] with what it saw, and the quota watch.

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::time::Duration;

use futures_util::future::join_all;
use tokio::time::Instant;

use super::monitor::BreakerWatch;
use super::quota_watch::QuotaWatch;
use super::scenario::{BURST_ERRORS, MODEL, PAYGO_WE};
use super::stack::Stack;
use super::summary::gateway_tokens;
use super::view::{self, Frame};
use crate::loadtest::{Finished, LoadControl, LoadHandle, Report};
use crate::simulate::{FaultMode, FaultSpec};
use spillway_sidecar::telemetry::QuotaSource as _;

/// How often breakers are polled.
const POLL: Duration = Duration::from_millis(50);
/// How often the screen is redrawn.
const REDRAW: Duration = Duration::from_millis(500);
/// How often the `--no-tui` status line is printed.
const STATUS_EVERY: Duration = Duration::from_secs(3);

/// The live part of the demo; see the module docs.
pub struct Live<'a> {
    stack: &'a Stack,
    controls: Vec<LoadControl>,
    /// What the breakers did.
    pub watch: BreakerWatch,
    /// What the apps' quotas did.
    pub quotas: QuotaWatch,
    started: Instant,
    duration: Duration,
    ptu_tpm: u64,
    tui: bool,
    /// The midway burst was injected.
    pub burst_injected: bool,
    printed_events: usize,
    last_draw: Option<Instant>,
    last_status: Instant,
    /// Served counts per backend at recent draws, for requests per second.
    samples: VecDeque<(Instant, BTreeMap<String, u64>)>,
}

impl<'a> Live<'a> {
    /// Watches `controls` and `quotas` (started now) against `stack`.
    pub fn new(
        stack: &'a Stack,
        controls: Vec<LoadControl>,
        quotas: QuotaWatch,
        duration: Duration,
        ptu_tpm: u64,
        tui: bool,
    ) -> Self {
        let now = Instant::now();
        Self {
            stack,
            controls,
            watch: BreakerWatch::new(),
            quotas,
            started: now,
            duration,
            ptu_tpm,
            tui,
            burst_injected: false,
            printed_events: 0,
            last_draw: None,
            last_status: now,
            samples: VecDeque::new(),
        }
    }

    /// Runs until every load has finished; returns them and whether Ctrl-C stopped them.
    pub async fn run(&mut self, handles: Vec<LoadHandle>) -> (Vec<Finished>, bool) {
        let finish = join_all(handles.into_iter().map(LoadHandle::finish));
        tokio::pin!(finish);
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        let mut interrupted = false;
        let mut ticker = tokio::time::interval(POLL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let finished = loop {
            tokio::select! {
                finished = &mut finish => break finished,
                _ = ticker.tick() => self.tick(),
                _ = &mut ctrl_c, if !interrupted => {
                    interrupted = true;
                    self.controls.iter().for_each(LoadControl::stop);
                    self.watch.note(self.started.elapsed(), "Ctrl-C: stopping the traffic".to_owned());
                }
            }
        };
        self.watch
            .poll(&self.stack.process.gateway, MODEL, self.started.elapsed());
        self.quotas.tick(&mut self.watch, self.started.elapsed());
        self.quotas
            .finish(&mut self.watch, self.started.elapsed())
            .await;
        self.show(true);
        (finished, interrupted)
    }

    fn tick(&mut self) {
        let at = self.started.elapsed();
        self.watch.poll(&self.stack.process.gateway, MODEL, at);
        self.quotas.tick(&mut self.watch, at);
        if !self.burst_injected && at >= self.duration / 2 {
            self.inject_burst(at);
        }
        self.show(false);
    }

    /// Makes the next [`BURST_ERRORS`] requests to [`PAYGO_WE`] fail with 503.
    fn inject_burst(&mut self, at: Duration) {
        self.burst_injected = true;
        let mut fault = FaultSpec::new(FaultMode::Status);
        fault.status = Some(503);
        fault.count = Some(BURST_ERRORS);
        let outcome = match self.stack.backend(PAYGO_WE) {
            Some(backend) => backend.add_faults(&[fault]),
            None => Err(format!("no backend {PAYGO_WE}")),
        };
        let text = match outcome {
            Ok(()) => format!(
                "injected a burst: the next {BURST_ERRORS} calls to {PAYGO_WE} get HTTP 503"
            ),
            Err(error) => format!("could not inject the 5xx burst: {error}"),
        };
        self.watch.note(at, text);
    }

    /// The clients' reports so far, merged.
    pub fn merged(&self) -> Report {
        let mut report = Report::default();
        for control in &self.controls {
            report.merge(&control.snapshot());
        }
        report
    }

    /// Requests per second per backend over about the last second.
    fn rates(&mut self, report: &Report) -> BTreeMap<String, f64> {
        let now = Instant::now();
        let served: BTreeMap<String, u64> = report
            .by_backend
            .iter()
            .map(|(name, c)| (name.clone(), c.ok))
            .collect();
        while self.samples.len() > 1
            && self
                .samples
                .get(1)
                .is_some_and(|(at, _)| now - *at >= Duration::from_secs(1))
        {
            self.samples.pop_front();
        }
        let rates = match self.samples.front() {
            Some((at, before)) if now > *at => {
                let secs = (now - *at).as_secs_f64();
                served
                    .iter()
                    .map(|(name, n)| {
                        let delta = n.saturating_sub(before.get(name).copied().unwrap_or(0));
                        (name.clone(), delta as f64 / secs)
                    })
                    .collect()
            }
            _ => BTreeMap::new(),
        };
        self.samples.push_back((now, served));
        rates
    }

    /// Tokens left per app in its tightest quota window, from the gateway's limiter (what
    /// `spillway_quota_remaining_tokens` reports).
    fn quota_left(&self) -> BTreeMap<String, u64> {
        let mut levels = Vec::new();
        self.stack
            .process
            .gateway
            .limiter()
            .quota_levels(&mut levels);
        let mut left: BTreeMap<String, u64> = BTreeMap::new();
        for level in levels {
            left.entry(level.app_id)
                .and_modify(|n| *n = (*n).min(level.remaining_tokens))
                .or_insert(level.remaining_tokens);
        }
        left
    }

    /// Draws the screen or prints events and the status line, when due (always when `last`).
    fn show(&mut self, last: bool) {
        let now = Instant::now();
        let due = if self.tui {
            self.last_draw.is_none_or(|at| now - at >= REDRAW)
        } else {
            now - self.last_status >= STATUS_EVERY
        };
        let new_events = self.watch.events().len() > self.printed_events;
        if !(last || due || (!self.tui && new_events)) {
            return;
        }
        let report = self.merged();
        let rates = self.rates(&report);
        let tokens = gateway_tokens(&self.stack.process.totals.view());
        let refusals = self.quotas.refusals();
        let quota_left = self.quota_left();
        let frame = Frame {
            elapsed: self.started.elapsed(),
            duration: self.duration,
            ptu_tpm: self.ptu_tpm,
            url: &self.stack.url,
            admin: &self.stack.admin,
            manifest: &self.stack.manifest,
            breakers: self.watch.backends(),
            rates: &rates,
            report: &report,
            tokens: &tokens,
            quotas: self.quotas.quotas(),
            quota_left: &quota_left,
            refusals: &refusals,
            events: self.watch.events(),
        };
        let mut out = std::io::stdout().lock();
        if self.tui {
            let _ = write!(out, "{}{}", view::CLEAR, view::screen(&frame));
            self.last_draw = Some(now);
        } else {
            for event in &self.watch.events()[self.printed_events..] {
                let _ = writeln!(out, "{}", view::event_line(event));
            }
            if due || last {
                let _ = writeln!(out, "{}", view::status_line(&frame));
                self.last_status = now;
            }
        }
        self.printed_events = self.watch.events().len();
        let _ = out.flush();
    }
}
