//! `spillway simulate`: OpenAI and Azure OpenAI compatible backends for tests, benchmarks and
//! the demo — real HTTP/1.1 and SSE, TPM/RPM windows with Azure's 429 headers, latency and
//! stream pacing, fault injection, and a ledger of the tokens each request was "billed".
//!
//! Input: a [`SimConfig`] (YAML via `--config`, `--backend name=…,tpm=…` short forms, or
//! built in code). Output: one listener per backend; [`run`] prints
//! `{"backend":NAME,"url":URL}` per backend then `{"ready":true}` on stdout and serves until
//! SIGINT/SIGTERM; [`start`] does the same in-process and returns a [`SimHandle`].
//!
//! # What each backend serves
//! On three path families — Azure classic (`/openai/deployments/{d}/{op}?api-version=…`, and
//! `/openai/responses…` and `/openai/conversations…` with `?api-version=…`; a missing or
//! unknown `api-version` is Azure's 404), Azure v1 (`/openai/v1/{op}`) and OpenAI
//! (`/v1/{op}`):
//!
//! | method | `{op}` | answer |
//! |---|---|---|
//! | POST | `chat/completions`, `completions`, `embeddings` | the model's answer, JSON or SSE |
//! | POST | `responses` | a response; stored unless `"store": false` |
//! | GET / DELETE | `responses/{id}` | the stored response / `{"id","object":"response","deleted":true}` |
//! | GET | `responses/{id}/input_items` | `{"object":"list","data","first_id","last_id","has_more"}` (`order`, `limit`, `after`) |
//! | POST | `responses/{id}/cancel` | a background response, `cancelled` unless already finished |
//! | POST | `responses/input_tokens` | `{"object":"response.input_tokens","input_tokens":N}` |
//! | POST | `conversations` (`{"items"?, "metadata"?}`) | `{"id":"conv_…","object":"conversation","created_at","metadata"}` |
//! | GET / POST / DELETE | `conversations/{id}` | the conversation / it with the body's `metadata` / `{"id","object":"conversation.deleted","deleted":true}` |
//! | GET / POST | `conversations/{id}/items` | a list page as for `input_items` / `{"object":"list","data":[the items added],"first_id","last_id","has_more":false}` |
//! | GET / DELETE | `conversations/{id}/items/{item}` | the item / the conversation |
//!
//! Another method on a known route is a 405; an unknown route a 404.
//!
//! Each backend is its own resource: its stored responses, its conversations and its
//! prompt-prefix cache are never shared, so an id (or a `previous_response_id`, or a
//! `conversation`) is known only on the backend that created it — elsewhere `Response with id
//! '…' not found.` / `previous_response_not_found` / `Conversation with id '…' not found.`
//! (`conversation_not_found` for a create's `conversation`), all 404. A chained create bills
//! the previous response's input and output tokens on top of its own input. A create with
//! `conversation` (an id or `{"id"}`; not together with `previous_response_id`, a 400) bills
//! the conversation's items (each counted as an input item) on top of its own input, echoes
//! `"conversation":{"id"}`, and appends its input items and output message to the
//! conversation once it completes (at most 10,000 conversations per backend and 10,000 items
//! each, the oldest leaving first). `background: true` answers `queued` at once, is
//! `in_progress` after half of the backend's `backgroundMs` (default 200) and `completed`
//! after all of it, or once its stream (`stream: true`) has been sent. A prompt prefix (all
//! but the last message or input item, with `instructions`, the chain or conversation and
//! `prompt_cache_key`) seen on the same backend within 5 minutes and estimated at
//! `cacheMinTokens` (default 1024) or more is reported as `cached_tokens` in 128-token blocks
//! (chat `prompt_tokens_details`, responses `input_tokens_details`, 0 otherwise).
//!
//! # Reasoning models
//! A model reasons when its name (the body's `model`, else the deployment) starts with
//! `o1`, `o3`, `o4` or `gpt-5` (ignoring case) or is one of the backend's `reasoningModels`.
//! Its chat and responses answers bill hidden reasoning tokens on top of the visible text,
//! deterministically: with `V` visible tokens (`completionTokens`, or the requested maximum
//! up to 4096) and `P` prompt tokens, `R = 2·V + ⌊P/4⌋`; a request that sets
//! `max_completion_tokens` / `max_tokens` / `max_output_tokens` `M` gets
//! `R = min(2·V + ⌊P/4⌋, ⌊M/2⌋)` and `V = min(V, M − R)` (at least 1), so `R + V ≤ M`, and
//! `finish_reason: "length"` when `R + V = M`. Reasoning text is never sent, streamed or not;
//! only its count is. Legacy completions and embeddings never reason. Chat usage always
//! carries `prompt_tokens_details: {cached_tokens, audio_tokens: 0}` and
//! `completion_tokens_details: {reasoning_tokens, audio_tokens: 0,
//! accepted_prediction_tokens: 0, rejected_prediction_tokens: 0}` (reasoning 0 for other
//! models); responses usage `input_tokens_details: {cached_tokens}` and
//! `output_tokens_details: {reasoning_tokens}`;
//! streams carry the same in their usage chunk or `response.completed`. The backend's
//! `reasoningUsage` picks the shape: `included` (default; OpenAI and Azure) counts reasoning
//! in `completion_tokens` / `output_tokens`, with `total_tokens` = prompt + completion;
//! `separate` (some OpenAI-compatible servers) reports the visible answer alone there, with
//! `total_tokens` = prompt + visible + reasoning. Either way the ledger bills reasoning as
//! completion tokens. A chained create's context counts the previous answer's visible
//! output, not its reasoning: only the answer is carried into the next turn.
//!
//! # The ledger
//! Every request to a model route leaves one entry, with the tokens it billed by type: model
//! calls their prompt tokens (a chain's or conversation's context included) with the cached
//! ones among them, and their completion tokens (reasoning included, whatever the reporting
//! shape) with the reasoning ones among them; a stream cut short (client gone, injected
//! reset) bills its reasoning plus the visible tokens it sent;
//! retrieve, delete, input items, cancel, `input_tokens` and every conversations call 0 tokens
//! (they bill nothing; conversations entries carry operation `responses` and their path). A
//! background response is recorded once, when it completes (with its final tokens, whatever
//! its stream's client did), and never when it was cancelled first. So the token totals are
//! what was billed. Every call, conversations included, goes through the same auth check,
//! injected faults and latency.
//!
//! Modules: [`config`] (schema, validation), [`faults`], [`ledger`], [`ratelimit`] (window and
//! headers); private: `route`, `call`, `text` (generated text, caches), `payload` and `sse`
//! (bodies), `reply` (errors), `body` (paced stream), `backend` (live state), `exchange`
//! (per-request entry and headers), `tokens` (reasoning models and the usage shapes),
//! `handler`, `responses` (the stateful responses API),
//! `conversations` (the conversations API), `store` (stored responses and conversations),
//! `prefix_cache` (prompt caching), `admin` (`/_sim/*`), `server` (listener).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use spillway_sidecar::clock::{Clock, SystemClock};

mod admin;
mod backend;
mod body;
mod call;
pub mod config;
mod conversations;
mod exchange;
pub mod faults;
mod handler;
pub mod ledger;
mod payload;
mod prefix_cache;
pub mod ratelimit;
mod reply;
mod responses;
mod route;
mod server;
mod sse;
mod store;
mod text;
mod tokens;

pub use backend::Timing;
pub use config::{BackendConfig, ReasoningUsage, SimConfig};
pub use faults::{FaultMode, FaultSpec, FaultView};
pub use ledger::{LedgerEntry, LedgerQuery, LedgerSnapshot, Totals};
pub use ratelimit::Limits;

/// Arguments of `spillway simulate`.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct SimulateArgs {
    /// YAML file: a list of backends, or a mapping with `backends:`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A backend in short form, e.g. `name=ptu,port=0,tpm=10000,rpm=60,latency_ms=20,tokens_per_sec=200`.
    /// Repeatable; added after the backends of `--config`.
    #[arg(long = "backend", value_name = "SPEC", value_parser = BackendConfig::parse_short)]
    pub backends: Vec<BackendConfig>,
}

/// The configuration `args` describe, validated.
///
/// # Errors
/// An unreadable or invalid file, or an invalid combination of backends.
pub fn load_config(args: &SimulateArgs) -> anyhow::Result<SimConfig> {
    let mut config = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            SimConfig::from_yaml(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
        }
        None => SimConfig::default(),
    };
    config.backends.extend(args.backends.iter().cloned());
    config.validate().map_err(|e| anyhow!(e))?;
    Ok(config)
}

/// Runs the simulator until SIGINT or SIGTERM, announcing the backends on stdout.
///
/// # Errors
/// Invalid configuration, a listen address in use, or stdout closed.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    use std::io::Write as _;
    let config = load_config(&args)?;
    let handle = start(config).await?;
    {
        let mut out = std::io::stdout().lock();
        for backend in handle.backends() {
            let line = serde_json::json!({"backend": backend.name(), "url": backend.url()});
            writeln!(out, "{line}")?;
        }
        writeln!(out, "{}", serde_json::json!({"ready": true}))?;
        out.flush()?;
    }
    wait_for_signal().await?;
    tracing::info!("simulator shutting down");
    handle.shutdown().await;
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("cannot watch SIGINT")?,
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("cannot watch Ctrl-C")?;
    Ok(())
}

/// Starts every backend of `config` in this process (real sockets), using the system clock.
///
/// # Errors
/// An invalid config or a listen address that cannot be bound.
pub async fn start(config: SimConfig) -> anyhow::Result<SimHandle> {
    start_with_clock(config, Arc::new(SystemClock)).await
}

/// [`start`] with an injected clock (rate windows, ledger timestamps).
///
/// # Errors
/// As [`start`].
pub async fn start_with_clock(
    config: SimConfig,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<SimHandle> {
    config.validate().map_err(|e| anyhow!(e))?;
    let shared = Arc::new(backend::Shared::new(clock));
    let (shutdown, signal) = watch::channel(false);
    let mut backends = Vec::with_capacity(config.backends.len());
    let mut tasks = Vec::with_capacity(config.backends.len());
    for backend_config in &config.backends {
        let name = &backend_config.name;
        let state = backend::Backend::new(backend_config, Arc::clone(&shared))
            .map_err(|e| anyhow!("backend `{name}`: {e}"))?;
        let listener = TcpListener::bind(backend_config.listen)
            .await
            .with_context(|| {
                format!(
                    "backend `{name}`: cannot listen on {}",
                    backend_config.listen
                )
            })?;
        let addr = listener.local_addr()?;
        let state = Arc::new(state);
        tasks.push(tokio::spawn(server::serve(
            listener,
            Arc::clone(&state),
            signal.clone(),
        )));
        backends.push(BackendHandle { addr, state });
    }
    Ok(SimHandle {
        backends,
        ledger: Arc::clone(&shared.ledger),
        shutdown,
        tasks,
    })
}

/// Running simulated backends. Dropping it stops them too (without waiting).
pub struct SimHandle {
    backends: Vec<BackendHandle>,
    ledger: Arc<ledger::Ledger>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl SimHandle {
    /// The backends, in config order.
    pub fn backends(&self) -> &[BackendHandle] {
        &self.backends
    }

    /// The backend named `name`.
    pub fn backend(&self, name: &str) -> Option<&BackendHandle> {
        self.backends.iter().find(|b| b.name() == name)
    }

    /// `http://addr` of the backend named `name`.
    pub fn url(&self, name: &str) -> Option<String> {
        self.backend(name).map(BackendHandle::url)
    }

    /// Every ledger entry kept, with totals.
    pub fn ledger(&self) -> LedgerSnapshot {
        self.ledger.snapshot(&LedgerQuery::default())
    }

    /// Ledger entries and totals matching `query`.
    pub fn ledger_query(&self, query: &LedgerQuery) -> LedgerSnapshot {
        self.ledger.snapshot(query)
    }

    /// Forgets all ledger entries and totals.
    pub fn clear_ledger(&self) {
        self.ledger.clear();
    }

    /// Stops accepting, lets in-flight responses finish (up to
    /// [`server::SHUTDOWN_GRACE`]), then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// One running backend: its address and runtime controls.
pub struct BackendHandle {
    addr: SocketAddr,
    state: Arc<backend::Backend>,
}

impl BackendHandle {
    /// Name from the config.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ip:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Appends faults (as `POST /_sim/faults`).
    ///
    /// # Errors
    /// An invalid fault; none is added then.
    pub fn add_faults(&self, specs: &[FaultSpec]) -> Result<(), String> {
        self.state.add_faults(specs)
    }

    /// Clears faults (as `DELETE /_sim/faults`).
    pub fn clear_faults(&self) {
        self.state.clear_faults();
    }

    /// The faults in force.
    pub fn faults(&self) -> Vec<FaultView> {
        self.state.faults()
    }

    /// Latency and pacing.
    pub fn timing(&self) -> Timing {
        self.state.timing()
    }

    /// Changes latency and pacing (as `POST /_sim/latency`).
    pub fn set_timing(&self, timing: Timing) {
        self.state.set_timing(timing);
    }

    /// Rate limits.
    pub fn limits(&self) -> Limits {
        self.state.limits()
    }

    /// Changes rate limits (as `POST /_sim/limits`).
    pub fn set_limits(&self, limits: Limits) {
        self.state.set_limits(limits);
    }
}

#[cfg(test)]
mod tests;
