//! Runs a [`Plan`]: `workers` tasks take request numbers from one counter, wait for their
//! slot when a rate is set (open loop: slot `n` starts at `n / rate` seconds), send, and add
//! each [`RequestResult`] to a shared [`Report`] and to the caller's hook.
//!
//! Open-loop latency is measured from each request's slot, not from when a worker got to
//! send it: a request that waited for a busy worker counts its wait, so a slow endpoint
//! cannot hide its queueing (coordinated omission). Lateness within the timer's resolution
//! ([`TIMER_RESOLUTION`]) is the generator's own and is not counted.
//!
//! Bounds: no request starts after `total_requests` or after `duration` (or after
//! [`LoadHandle::stop`]); requests still in flight then get `grace`, after which they are
//! cancelled and counted as `cancelled`. So a run always ends by itself, within
//! `duration + grace` (+ the time to close connections).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::exchange::{Meta, exchange};
use super::plan::{Plan, PlanError};
use super::report::{Ending, Report, RequestResult};
use spillway_sidecar::http_client::{self, HttpClient};

/// Called with every finished request (from the worker that sent it; keep it short).
pub type ResultHook = Arc<dyn Fn(&RequestResult) + Send + Sync>;

/// Why a run stopped starting requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StopReason {
    /// `total_requests` were sent.
    Count,
    /// `duration` passed.
    Duration,
    /// [`LoadHandle::stop`] was called.
    Stopped,
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct Finished {
    /// The sums.
    pub report: Report,
    /// What ended it.
    pub stopped_by: StopReason,
}

/// State the workers, the coordinator and the handle share.
struct Shared {
    plan: Plan,
    endpoint: http::Uri,
    prompt: String,
    client: HttpClient,
    hook: Option<ResultHook>,
    report: Mutex<Report>,
    next: AtomicU64,
    started: Instant,
    deadline: Instant,
    /// No new requests (duration over, count reached, or stopped).
    halt: watch::Sender<bool>,
    /// Cancel requests in flight.
    abort: watch::Sender<bool>,
    stopped: AtomicBool,
}

/// A running load; see the module docs.
#[derive(Debug)]
pub struct LoadHandle {
    control: LoadControl,
    task: JoinHandle<Finished>,
}

/// Looks at or stops a running load; cheap to clone, usable while [`LoadHandle::finish`] is
/// awaited.
#[derive(Clone)]
pub struct LoadControl {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for LoadControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadControl")
            .field("url", &self.shared.plan.url)
            .finish_non_exhaustive()
    }
}

/// Starts `plan` on the current tokio runtime.
///
/// # Errors
/// An invalid plan; nothing is sent then.
pub fn start_load(plan: Plan, hook: Option<ResultHook>) -> Result<LoadHandle, PlanError> {
    plan.validate()?;
    let started = Instant::now();
    let shared = Arc::new(Shared {
        endpoint: plan.endpoint()?,
        prompt: plan.prompt(),
        client: http_client::client(),
        hook,
        report: Mutex::new(Report::default()),
        next: AtomicU64::new(0),
        started,
        deadline: started + plan.duration,
        halt: watch::Sender::new(false),
        abort: watch::Sender::new(false),
        stopped: AtomicBool::new(false),
        plan,
    });
    let task = tokio::spawn(coordinate(Arc::clone(&shared)));
    Ok(LoadHandle {
        control: LoadControl { shared },
        task,
    })
}

/// Runs `plan` to its end.
///
/// # Errors
/// An invalid plan.
pub async fn run_load(plan: Plan, hook: Option<ResultHook>) -> Result<Finished, PlanError> {
    Ok(start_load(plan, hook)?.finish().await)
}

impl LoadHandle {
    /// A handle to look at or stop the run while waiting for it.
    pub fn control(&self) -> LoadControl {
        self.control.clone()
    }

    /// The sums so far; see [`LoadControl::snapshot`].
    pub fn snapshot(&self) -> Report {
        self.control.snapshot()
    }

    /// Starts no new request; see [`LoadControl::stop`].
    pub fn stop(&self) {
        self.control.stop();
    }

    /// Waits for the end of the run.
    pub async fn finish(self) -> Finished {
        match self.task.await {
            Ok(finished) => finished,
            // The coordinator does not panic; if it ever did, report what was counted.
            Err(_) => Finished {
                report: self.control.snapshot(),
                stopped_by: StopReason::Stopped,
            },
        }
    }
}

impl LoadControl {
    /// The sums so far, with the time elapsed so far.
    pub fn snapshot(&self) -> Report {
        let mut report = self.shared.lock_report().clone();
        report.elapsed = self.shared.started.elapsed();
        report
    }

    /// Starts no new request; those in flight get the plan's grace period.
    pub fn stop(&self) {
        self.shared.stopped.store(true, Ordering::Relaxed);
        self.shared.halt.send_replace(true);
    }
}

impl Shared {
    fn lock_report(&self) -> std::sync::MutexGuard<'_, Report> {
        self.report.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn coordinate(shared: Arc<Shared>) -> Finished {
    let mut workers = JoinSet::new();
    for _ in 0..shared.plan.workers {
        workers.spawn(worker(Arc::clone(&shared)));
    }
    let all_done = async move { while workers.join_next().await.is_some() {} };
    tokio::pin!(all_done);
    let mut halt = shared.halt.subscribe();
    let halted = async {
        tokio::select! {
            () = tokio::time::sleep_until(shared.deadline) => {}
            _ = halt.wait_for(|h| *h) => {}
        }
    };
    tokio::select! {
        () = &mut all_done => {}
        () = halted => {
            shared.halt.send_replace(true);
            tokio::select! {
                () = &mut all_done => {}
                () = tokio::time::sleep(shared.plan.grace) => {
                    shared.abort.send_replace(true);
                    all_done.await;
                }
            }
        }
    }
    let mut report = shared.lock_report().clone();
    report.elapsed = shared.started.elapsed();
    let stopped_by = if shared.stopped.load(Ordering::Relaxed) {
        StopReason::Stopped
    } else if report.sent >= shared.plan.total_requests {
        StopReason::Count
    } else {
        StopReason::Duration
    };
    Finished { report, stopped_by }
}

/// Tokio's timers fire on a millisecond grid: a worker may wake up to this late for its slot
/// without any queueing.
pub const TIMER_RESOLUTION: Duration = Duration::from_millis(1);

/// Where the latency of a request due at `at` and sent at `now` is measured from: `None`
/// (the send) in a closed loop; in an open loop its slot, forgiving lateness within
/// [`TIMER_RESOLUTION`].
pub fn latency_origin(open_loop: bool, at: Instant, now: Instant) -> Option<Instant> {
    open_loop.then(|| now.min(at + TIMER_RESOLUTION))
}

/// When request `seq` may start: now for a closed loop, its slot for an open loop.
fn slot(shared: &Shared, seq: u64) -> Instant {
    match shared.plan.rate {
        Some(rate) => shared.started + Duration::from_secs_f64(seq as f64 / rate),
        None => Instant::now(),
    }
}

async fn worker(shared: Arc<Shared>) {
    let mut halt = shared.halt.subscribe();
    loop {
        if *halt.borrow() {
            return;
        }
        let seq = shared.next.fetch_add(1, Ordering::Relaxed);
        if seq >= shared.plan.total_requests {
            return;
        }
        let at = slot(&shared, seq);
        if at >= shared.deadline {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            _ = halt.wait_for(|h| *h) => return,
        }
        if Instant::now() >= shared.deadline {
            return;
        }
        let origin = latency_origin(shared.plan.rate.is_some(), at, Instant::now());
        let result = send(&shared, seq, origin).await;
        shared.lock_report().add(&result);
        if let Some(hook) = &shared.hook {
            hook(&result);
        }
    }
}

async fn send(shared: &Shared, seq: u64, origin: Option<Instant>) -> RequestResult {
    let plan = &shared.plan;
    let meta = Meta {
        seq,
        request_id: format!("{}{seq}", plan.request_id_prefix),
        app: plan.app(seq).to_owned(),
        stream: plan.streams(seq),
        origin,
    };
    match plan.request(&shared.endpoint, &shared.prompt, seq) {
        Ok(request) => {
            let abort = shared.abort.subscribe();
            exchange(&shared.client, request, meta, plan.request_timeout, abort).await
        }
        // Unreachable for a validated plan; counted rather than panicking.
        Err(_) => RequestResult {
            seq,
            request_id: meta.request_id,
            app: meta.app,
            stream: meta.stream,
            ending: Ending::Error("invalid-request"),
            body_error: None,
            latency: Duration::ZERO,
            time_to_first_token: None,
            backend: None,
            attempts: None,
            usage: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_loop_latency_counts_the_wait_for_a_worker() {
        let at = Instant::now();
        let ms = Duration::from_millis;
        // Closed loop: from the send.
        assert_eq!(latency_origin(false, at, at + ms(30)), None);
        // On time, or late within the timer's resolution: from the send.
        assert_eq!(latency_origin(true, at, at), Some(at));
        assert_eq!(latency_origin(true, at, at + ms(1)), Some(at + ms(1)));
        // 30 ms late (every worker was busy): 29 ms of the wait count.
        assert_eq!(latency_origin(true, at, at + ms(30)), Some(at + ms(1)));
    }
}
