//! The demo's fixed story, as data: the simulated backends, the manifests the gateway runs
//! on (a pool, the apps' API keys, their `TokenQuota`s), the three apps' traffic, and the
//! clock that makes the PTU's one-minute TPM window pass in a few seconds.
//!
//! Sizes follow the demo's `--rate`: each app's quota is a number of seconds of its own
//! traffic, and the PTU holds less than what the quotas let through, so it stays throttled
//! (and spills over) all along. Everything here is pure so the shipped copy in
//! `examples/demo/` (at [`DEFAULT_RATE`]) is checked against it.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use sha2::{Digest as _, Sha256};

use crate::loadtest::render::thousands;
use crate::loadtest::{Api, Plan};
use crate::simulate::BackendConfig;
use spillway_sidecar::clock::Clock;

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
/// `api-version` of Azure-shaped calls and of the backends.
pub const API_VERSION: &str = "2024-10-21";
/// How much faster the PTU simulator's clock runs: its 60 s TPM window passes in 6 s.
pub const PTU_TIME_SCALE: u32 = 10;
/// Share of the traffic the quotas let through that the PTU can serve: the rest spills over.
const PTU_SHARE: f64 = 0.6;
/// The demo's default `--rate` (requests per second), that of the shipped copy.
pub const DEFAULT_RATE: f64 = 24.0;
/// Faults injected midway on [`PAYGO_WE`]: this many HTTP 503s.
pub const BURST_ERRORS: u64 = 5;
/// Ports of the shipped copy (`examples/demo/`), in [`BACKENDS`] order.
pub const EXAMPLE_PORTS: [u16; 3] = [18081, 18082, 18083];

/// An app's `TokenQuota`, as seconds of the app's own traffic at the demo's rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum QuotaShape {
    /// `tokensPerMinute` worth this many seconds of the app's traffic. The bucket starts
    /// full, so with a few seconds the app is limited (429) after about that long.
    PerMinute(f64),
    /// A `Daily` calendar quota worth this many seconds of traffic: used up (403) after that.
    Daily(f64),
}

/// One app's traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct AppProfile {
    /// App id: its API key's `appId` and its quota's.
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
    /// Its `TokenQuota`.
    pub quota: QuotaShape,
    /// What the quota does to the app, as a comment in the manifest.
    pub quota_note: &'static str,
}

/// The three apps: an interactive chat UI (streams) with a generous per-minute quota, a
/// batch job (big, non-streaming) held to a tight one, and a support bot on a small daily
/// budget (mixed, Azure SDK).
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
            quota: QuotaShape::PerMinute(120.0),
            quota_note: "generous: twice what the app sends, never reached",
        },
        AppProfile {
            name: "batch-summarizer",
            share: 0.2,
            azure: true,
            stream_ratio: 0.0,
            include_usage_ratio: 0.0,
            prompt_tokens: 600,
            max_tokens: 200,
            quota: QuotaShape::PerMinute(4.0),
            quota_note: "tight: after a few seconds, 429 with Retry-After from the gateway",
        },
        AppProfile {
            name: "support-bot",
            share: 0.3,
            azure: true,
            stream_ratio: 0.5,
            include_usage_ratio: 0.5,
            prompt_tokens: 150,
            max_tokens: 96,
            quota: QuotaShape::Daily(5.0),
            quota_note: "a small daily budget: once spent, 403 until 00:00 UTC",
        },
    ]
}

/// The API key an app presents (`api-key` / `Authorization: Bearer`); the gateway's
/// manifest holds only its SHA-256.
pub fn api_key(app: &str) -> String {
    format!("sk-demo-{app}")
}

/// Lower-case hex SHA-256 of `key`, as `keySha256` takes it.
pub fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .fold(String::with_capacity(64), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
}

impl AppProfile {
    /// Tokens per second this app's traffic costs at the demo's `rate`.
    pub fn cost_per_second(&self, rate: f64) -> f64 {
        rate * self.share * f64::from(self.prompt_tokens + self.max_tokens)
    }

    /// The size of its quota at `rate`: tokens per minute or per day, in thousands.
    pub fn quota_tokens(&self, rate: f64) -> u64 {
        let seconds = match self.quota {
            QuotaShape::PerMinute(s) | QuotaShape::Daily(s) => s,
        };
        round_up(self.cost_per_second(rate) * seconds, 1000)
    }

    /// Tokens per second its quota lets through once it bites.
    fn admitted_per_second(&self, rate: f64) -> f64 {
        match self.quota {
            QuotaShape::PerMinute(_) => self
                .cost_per_second(rate)
                .min(self.quota_tokens(rate) as f64 / 60.0),
            QuotaShape::Daily(_) => 0.0,
        }
    }

    /// Its quota in tokens, for people: `16,000/min`, `9,000/day`.
    pub fn quota_text(&self, rate: f64) -> String {
        let unit = match self.quota {
            QuotaShape::PerMinute(_) => "min",
            QuotaShape::Daily(_) => "day",
        };
        format!("{}/{unit}", thousands(self.quota_tokens(rate)))
    }
}

/// `x` rounded up to a multiple of `step`, at least `step`.
fn round_up(x: f64, step: u64) -> u64 {
    // Saturating float → int; quotas and limits are far below u64::MAX.
    ((x / step as f64).ceil() as u64).max(1) * step
}

/// Tokens per second the apps' traffic costs against a TPM limit at `rate` requests/s.
pub fn cost_per_second(rate: f64) -> f64 {
    apps().iter().map(|a| a.cost_per_second(rate)).sum()
}

/// Tokens per second the apps' quotas let through once they bite.
pub fn admitted_per_second(rate: f64) -> f64 {
    apps().iter().map(|a| a.admitted_per_second(rate)).sum()
}

/// The PTU's TPM limit for `rate`: 60 % of what the quotas let through in one of
/// its (scaled) minutes, rounded up to hundreds — full within a second at the start, and
/// throttled all along.
pub fn ptu_tpm(rate: f64) -> u64 {
    let minute_seconds = 60.0 / f64::from(PTU_TIME_SCALE);
    round_up(admitted_per_second(rate) * minute_seconds * PTU_SHARE, 100)
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

/// The gateway's manifests for backends at `urls` ([`BACKENDS`] order) and quotas sized
/// for `rate`: an `AIBackendPool`, an `AIGateway` that identifies apps by API key, and one
/// `TokenQuota` per app.
pub fn manifests(urls: [&str; 3], rate: f64) -> String {
    let mut text = pool_and_gateway(urls);
    for app in apps() {
        let _ = write!(
            text,
            "      - appId: {name}\n        keySha256: {hash}\n",
            name = app.name,
            hash = sha256_hex(&api_key(app.name)),
        );
    }
    for app in apps() {
        let limit = match app.quota {
            QuotaShape::PerMinute(_) => format!("tokensPerMinute: {}", app.quota_tokens(rate)),
            QuotaShape::Daily(_) => format!(
                "quotas:\n    - {{period: Daily, tokens: {}}}",
                app.quota_tokens(rate)
            ),
        };
        let _ = write!(
            text,
            "---\n# {note}\napiVersion: spillway.dev/v1alpha1\nkind: TokenQuota\nmetadata:\n  name: {name}\nspec:\n  appId: {name}\n  {limit}\n",
            name = app.name,
            note = app.quota_note,
        );
    }
    text
}

fn pool_and_gateway(urls: [&str; 3]) -> String {
    format!(
        r#"# Spillway demo: one pool for gpt-4o — a PTU deployment first, pay-as-you-go spillover —
# and three apps, each with its own API key and token quota.
# Written by `spillway demo`; apply the same objects to a cluster with `kubectl apply -f`.
apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata:
  name: gpt-4o
spec:
  models: [{MODEL}]
  # Prices for chargeback (sample rates per million tokens, not a price list: use your
  # contract's). Pay-as-you-go calls are metered at these; the PTU's fixed hourly cost is
  # shared between the apps it served, weighted by the same rates.
  pricing:
    currency: USD
    rates:
      - {{input: "2.50", cachedInput: "1.25", output: "10.00"}}
  backends:
    - name: {PTU}          # provisioned throughput: always tried first
      url: {ptu}
      apiVersion: "{API_VERSION}"
      priority: 1
      pricing:
        provisioned: {{amount: "2.00", per: Hour}}
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
    # Consumer API keys, sent as `api-key` or `Authorization: Bearer`. Only their SHA-256 is
    # stored (`printf %s "$KEY" | sha256sum`); the demo's keys are sk-demo-<appId>.
    apiKeys:
"#,
        ptu = urls[0],
        we = urls[1],
        sc = urls[2],
    )
}

/// The `spillway loadtest` command that sends `app`'s share of `rate` to the gateway at
/// `url`, as the demo does (for `examples/demo/README.md`).
pub fn loadtest_command(app: &AppProfile, url: &str, rate: f64) -> String {
    let api = if app.azure { "azure" } else { "openai" };
    format!(
        "spillway loadtest --url {url} --api {api} --apps {name} --api-key {key} --rate {rate:.1} \\\n  --stream-ratio {stream} --include-usage-ratio {usage} --prompt-tokens {prompt} --max-tokens {max} --duration 90s --total-requests 5000",
        name = app.name,
        key = api_key(app.name),
        rate = rate * app.share,
        stream = app.stream_ratio,
        usage = app.include_usage_ratio,
        prompt = app.prompt_tokens,
        max = app.max_tokens,
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
            plan.api_key = Some(api_key(app.name));
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
