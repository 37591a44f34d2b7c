//! The demo's fixed story, as data: the simulated backends, the manifests the gateway runs
//! on, the three apps' traffic, and the clock that makes the PTU's one-minute TPM window
//! pass in a few seconds.
//!
//! Everything here is pure so the shipped copy in `examples/demo/` is checked against it.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::clock::Clock;
use crate::loadtest::{Api, Plan};
use crate::simulate::BackendConfig;

/// The provisioned-throughput backend (priority 1).
pub const PTU: &str = "ptu-eastus";
/// Pay-as-you-go backend that gets the 5xx burst (priority 2).
pub const PAYGO_WE: &str = "paygo-westeurope";
/// The other pay-as-you-go backend (priority 2).
pub const PAYGO_SC: &str = "paygo-swedencentral";
/// Every backend, in manifest order.
pub const BACKENDS: [&str; 3] = [PTU, PAYGO_WE, PAYGO_SC];
/// The model (and Azure deployment) the apps call.
pub const MODEL: &str = "gpt-4o";
/// The trusted header that names the app.
pub const APP_HEADER: &str = "x-app-id";
/// `api-version` of Azure-shaped calls and of the backends.
pub const API_VERSION: &str = "2024-10-21";
/// How much faster the PTU simulator's clock runs: its 60 s TPM window passes in 6 s.
pub const PTU_TIME_SCALE: u32 = 10;
/// Seconds of traffic the PTU's TPM holds (so it fills early at any `--rate`).
const PTU_FILL_SECONDS: f64 = 2.5;
/// Faults injected midway on [`PAYGO_WE`]: this many HTTP 503s.
pub const BURST_ERRORS: u64 = 5;
/// Ports of the shipped copy (`examples/demo/`), in [`BACKENDS`] order.
pub const EXAMPLE_PORTS: [u16; 3] = [18081, 18082, 18083];

/// One app's traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct AppProfile {
    /// App id, sent in [`APP_HEADER`].
    pub name: &'static str,
    /// Share of the demo's rate.
    pub share: f64,
    /// OpenAI- or Azure-shaped calls (the apps use both SDK styles).
    pub azure: bool,
    /// Share of streaming requests.
    pub stream_ratio: f64,
    /// Share of streams that ask for usage.
    pub include_usage_ratio: f64,
    /// Approximate prompt length.
    pub prompt_tokens: u32,
    /// `max_tokens` (the simulator generates exactly this many).
    pub max_tokens: u32,
}

/// The three apps: an interactive chat UI (streams), a batch job (big, non-streaming) and a
/// support bot (mixed, Azure SDK).
pub fn apps() -> [AppProfile; 3] {
    [
        AppProfile {
            name: "chat-web",
            share: 0.5,
            azure: false,
            stream_ratio: 0.9,
            include_usage_ratio: 0.3,
            prompt_tokens: 60,
            max_tokens: 48,
        },
        AppProfile {
            name: "batch-summarizer",
            share: 0.2,
            azure: true,
            stream_ratio: 0.0,
            include_usage_ratio: 0.0,
            prompt_tokens: 600,
            max_tokens: 200,
        },
        AppProfile {
            name: "support-bot",
            share: 0.3,
            azure: true,
            stream_ratio: 0.5,
            include_usage_ratio: 0.5,
            prompt_tokens: 150,
            max_tokens: 96,
        },
    ]
}

/// Tokens per second the apps' traffic costs against a TPM limit at `rate` requests/s.
pub fn cost_per_second(rate: f64) -> f64 {
    apps()
        .iter()
        .map(|a| rate * a.share * f64::from(a.prompt_tokens + a.max_tokens))
        .sum()
}

/// The PTU's TPM limit for `rate`: 2.5 s of the apps' traffic, rounded up to thousands.
pub fn ptu_tpm(rate: f64) -> u64 {
    let tokens = cost_per_second(rate) * PTU_FILL_SECONDS;
    ((tokens / 1000.0).ceil() as u64).max(1) * 1000
}

/// The simulated backends: a small fast PTU with a TPM limit, two slower unlimited
/// pay-as-you-go ones. `ports` are `[0; 3]` for the demo, [`EXAMPLE_PORTS`] for the copy.
pub fn sim_backends(tpm: u64, ports: [u16; 3]) -> Vec<BackendConfig> {
    let backend = |name: &str, port: u16, latency_ms, jitter_ms, tokens_per_second| {
        let mut b = BackendConfig::new(name);
        b.listen.set_port(port);
        b.latency_ms = latency_ms;
        b.jitter_ms = jitter_ms;
        b.tokens_per_second = tokens_per_second;
        b
    };
    let mut ptu = backend(PTU, ports[0], 60, 30, 400);
    ptu.tpm = Some(tpm);
    vec![
        ptu,
        backend(PAYGO_WE, ports[1], 140, 60, 250),
        backend(PAYGO_SC, ports[2], 160, 60, 250),
    ]
}

/// The gateway's manifests (an `AIBackendPool` and an `AIGateway`) for backends at `urls`
/// ([`BACKENDS`] order).
pub fn manifests(urls: [&str; 3]) -> String {
    format!(
        r#"# Spillway demo: one pool for gpt-4o — a PTU deployment first, pay-as-you-go spillover.
# Written by `spillway demo`; apply the same objects to a cluster with `kubectl apply -f`.
apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata:
  name: gpt-4o
spec:
  models: [{MODEL}]
  backends:
    - name: {PTU}          # provisioned throughput: always tried first
      url: {ptu}
      apiVersion: "{API_VERSION}"
      priority: 1
    - name: {PAYGO_WE}    # pay-as-you-go: used while every priority-1 breaker is open
      url: {we}
      apiVersion: "{API_VERSION}"
      priority: 2
    - name: {PAYGO_SC}
      url: {sc}
      apiVersion: "{API_VERSION}"
      priority: 2
  circuitBreaker:
    rules:
      - name: throttled          # open on a 429 for as long as the backend asks (retry-after) ...
        failureCondition: {{count: 1, interval: 10s, statusCodeRanges: [{{min: 429, max: 429}}]}}
        tripDuration: 1s
        acceptRetryAfter: true
        maxRetryAfter: 1s        # ... but probe again within 1s (the demo's PTU minute is short)
      - name: failing            # open for 3s after 3 server errors or transport failures in 5s
        failureCondition:
          count: 3
          interval: 5s
          statusCodeRanges: [{{min: 500, max: 599}}]
          errorReasons: [ConnectionFailure, Timeout]
        tripDuration: 3s
  retry:
    maxAttempts: 3               # PTU, then both pay-as-you-go backends, in one client request
---
apiVersion: spillway.dev/v1alpha1
kind: AIGateway
metadata:
  name: demo
spec:
  identity:
    trustedHeader: {APP_HEADER}     # the app id (API keys and Entra ID come with quotas)
"#,
        ptu = urls[0],
        we = urls[1],
        sc = urls[2],
    )
}

/// The load plan of each app against the gateway at `url`, together sending `rate`
/// requests/s for `duration`.
pub fn plans(url: &str, rate: f64, duration: Duration) -> Vec<Plan> {
    apps()
        .into_iter()
        .map(|app| {
            let api = if app.azure {
                Api::Azure {
                    deployment: MODEL.to_owned(),
                    api_version: API_VERSION.to_owned(),
                }
            } else {
                Api::OpenAi {
                    model: MODEL.to_owned(),
                }
            };
            let app_rate = rate * app.share;
            let mut plan = Plan::new(url, api);
            plan.apps = vec![app.name.to_owned()];
            plan.rate = Some(app_rate);
            plan.duration = duration;
            plan.grace = Duration::from_secs(3);
            plan.total_requests = (app_rate * duration.as_secs_f64()).ceil() as u64 + 1;
            plan.workers = 32;
            plan.stream_ratio = app.stream_ratio;
            plan.include_usage_ratio = app.include_usage_ratio;
            plan.prompt_tokens = app.prompt_tokens;
            plan.max_tokens = app.max_tokens;
            plan.request_timeout = Duration::from_secs(20);
            plan.request_id_prefix = format!("demo-{}-", app.name);
            plan
        })
        .collect()
}

/// A monotonic clock running `factor` times faster than `inner` (wall time is `inner`'s),
/// for the PTU simulator's rate window.
pub struct ScaledClock {
    inner: Arc<dyn Clock>,
    origin: Instant,
    factor: u32,
}

impl std::fmt::Debug for ScaledClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaledClock")
            .field("factor", &self.factor)
            .finish_non_exhaustive()
    }
}

impl ScaledClock {
    /// Runs `factor` times faster than `inner`, from `inner`'s now.
    pub fn new(inner: Arc<dyn Clock>, factor: u32) -> Self {
        Self {
            origin: inner.now(),
            inner,
            factor,
        }
    }
}

impl Clock for ScaledClock {
    fn now(&self) -> Instant {
        let elapsed = self.inner.now().saturating_duration_since(self.origin);
        self.origin + elapsed * self.factor
    }

    fn wall(&self) -> SystemTime {
        self.inner.wall()
    }
}

#[cfg(test)]
mod tests;
