//! The live state of one simulated backend: its settings, rate window, faults and timing,
//! changeable at runtime, and what it keeps as a real resource does — its stored responses,
//! its conversations, its prompt-prefix cache, its files and its batches, never shared with
//! another backend; plus what all backends of a simulator share (ledger, token-count caches,
//! clock).
//!
//! Input: a validated [`BackendConfig`] and runtime changes (admin endpoints or the library
//! handle). Output: per-request decisions — admission, fault, latency — for the handler.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::batch_store::BatchStore;
use super::config::{BackendConfig, ReasoningUsage};
use super::faults::{FaultAction, FaultSet, FaultSpec, FaultView};
use super::file_store::FileStore;
use super::ledger::Ledger;
use super::prefix_cache::PrefixCache;
use super::ratelimit::{Decision, Limits, Quota, RateWindow};
use super::route::ApiVersion;
use super::store::{ConversationStore, ResponseStore};
use super::text::{Completions, PromptCounts};
use super::tokens;
use spillway_sidecar::clock::Clock;

/// What every backend of one simulator shares.
pub struct Shared {
    /// The ledger of all backends.
    pub ledger: Arc<Ledger>,
    /// Completion texts.
    pub completions: Completions,
    /// Prompt counts.
    pub prompts: PromptCounts,
    /// Time source.
    pub clock: Arc<dyn Clock>,
}

impl Shared {
    /// Shared state with an empty default ledger.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            ledger: Arc::new(Ledger::default()),
            completions: Completions::default(),
            prompts: PromptCounts::default(),
            clock,
        }
    }
}

/// Latency and pacing, as read and set on `/_sim/latency`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Timing {
    /// Time to response headers.
    pub latency_ms: u64,
    /// Uniform random extra latency in `0..=jitterMs`.
    pub jitter_ms: u64,
    /// Stream pacing; 0 sends all deltas at once.
    pub tokens_per_second: u32,
    /// Upload bodies are read at most this fast; 0 reads them as fast as they come.
    #[serde(default)]
    pub upload_rate_bytes_per_sec: u64,
}

/// One simulated backend.
pub struct Backend {
    /// Name.
    pub name: String,
    /// Required key, if any.
    pub api_key: Option<String>,
    /// Completion length without `max_tokens`.
    pub completion_tokens: u32,
    /// Whether `include_usage` is honoured.
    pub usage_in_stream: bool,
    /// Oldest classic `api-version` accepting `stream_options`.
    pub min_stream_options: ApiVersion,
    /// Time from a background create to its completion.
    pub background: Duration,
    /// Models that reason besides the known name prefixes.
    pub reasoning_models: Vec<String>,
    /// How reasoning tokens are reported.
    pub reasoning_usage: ReasoningUsage,
    /// This backend's stored responses.
    pub responses: ResponseStore,
    /// This backend's conversations.
    pub conversations: ConversationStore,
    /// This backend's prompt-prefix cache.
    pub prefixes: PrefixCache,
    /// This backend's files.
    pub files: FileStore,
    /// This backend's batches.
    pub batches: BatchStore,
    /// Time from a batch's create to its completion.
    pub batch: Duration,
    /// The shared ledger, caches and clock.
    pub shared: Arc<Shared>,
    window: Mutex<RateWindow>,
    faults: Mutex<FaultSet>,
    latency_ms: AtomicU64,
    jitter_ms: AtomicU64,
    tokens_per_second: AtomicU32,
    upload_rate: AtomicU64,
}

impl Backend {
    /// Live state for `config`.
    ///
    /// # Errors
    /// An invalid config (see [`BackendConfig::validate`]).
    pub fn new(config: &BackendConfig, shared: Arc<Shared>) -> Result<Self, String> {
        config.validate()?;
        let min_stream_options = ApiVersion::parse(&config.azure_min_stream_options_api_version)
            .ok_or("invalid azureMinStreamOptionsApiVersion")?;
        let mut faults = FaultSet::default();
        faults.add(&config.faults)?;
        Ok(Self {
            name: config.name.clone(),
            api_key: config.api_key.clone(),
            completion_tokens: config.completion_tokens,
            usage_in_stream: config.usage_in_stream,
            min_stream_options,
            background: Duration::from_millis(config.background_ms),
            reasoning_models: config.reasoning_models.clone(),
            reasoning_usage: config.reasoning_usage,
            responses: ResponseStore::default(),
            conversations: ConversationStore::default(),
            prefixes: PrefixCache::new(config.cache_min_tokens),
            files: FileStore::new(config.files_max_bytes),
            batches: BatchStore::default(),
            batch: Duration::from_millis(config.batch_ms),
            shared,
            window: Mutex::new(RateWindow::new(Limits {
                tpm: config.tpm,
                rpm: config.rpm,
            })),
            faults: Mutex::new(faults),
            latency_ms: AtomicU64::new(config.latency_ms),
            jitter_ms: AtomicU64::new(config.jitter_ms),
            tokens_per_second: AtomicU32::new(config.tokens_per_second),
            upload_rate: AtomicU64::new(config.upload_rate_bytes_per_sec.unwrap_or(0)),
        })
    }

    /// Whether `model` reasons on this backend (a known prefix or one of its
    /// `reasoningModels`).
    pub fn is_reasoning_model(&self, model: &str) -> bool {
        tokens::is_reasoning_model(model, &self.reasoning_models)
    }

    /// Appends faults.
    ///
    /// # Errors
    /// An invalid fault; none is added then.
    pub fn add_faults(&self, specs: &[FaultSpec]) -> Result<(), String> {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(specs)
    }

    /// Removes every fault.
    pub fn clear_faults(&self) {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// The faults in force.
    pub fn faults(&self) -> Vec<FaultView> {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .list()
    }

    /// The fault for the next request, if any.
    pub fn select_fault(&self, stream: bool) -> Option<FaultAction> {
        self.faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .select(stream, fastrand::f64)
    }

    /// Current latency and pacing.
    pub fn timing(&self) -> Timing {
        Timing {
            latency_ms: self.latency_ms.load(Ordering::Relaxed),
            jitter_ms: self.jitter_ms.load(Ordering::Relaxed),
            tokens_per_second: self.tokens_per_second.load(Ordering::Relaxed),
            upload_rate_bytes_per_sec: self.upload_rate.load(Ordering::Relaxed),
        }
    }

    /// Replaces latency and pacing.
    pub fn set_timing(&self, timing: Timing) {
        self.latency_ms.store(timing.latency_ms, Ordering::Relaxed);
        self.jitter_ms.store(timing.jitter_ms, Ordering::Relaxed);
        self.tokens_per_second
            .store(timing.tokens_per_second, Ordering::Relaxed);
        self.upload_rate
            .store(timing.upload_rate_bytes_per_sec, Ordering::Relaxed);
    }

    /// Wall-clock time now, in Unix seconds (`created`, `created_at`).
    pub fn unix_seconds(&self) -> u64 {
        self.shared
            .clock
            .wall()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    /// The latency for one request: base plus random jitter.
    pub fn draw_latency(&self) -> Duration {
        let timing = self.timing();
        let jitter = if timing.jitter_ms > 0 {
            fastrand::u64(0..=timing.jitter_ms)
        } else {
            0
        };
        Duration::from_millis(timing.latency_ms + jitter)
    }

    /// Waits one request's latency ([`Backend::draw_latency`]).
    pub async fn wait_latency(&self) {
        let latency = self.draw_latency();
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// The rate limits in force.
    pub fn limits(&self) -> Limits {
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .limits()
    }

    /// Replaces the rate limits (counted usage stays).
    pub fn set_limits(&self, limits: Limits) {
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .set_limits(limits);
    }

    /// Admits a request costing `cost` tokens now.
    pub fn admit(&self, cost: u64) -> Decision {
        let now = self.shared.clock.now();
        self.window
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .admit(now, cost)
    }

    /// The window state now, when any limit is set.
    pub fn quota(&self) -> Option<Quota> {
        let now = self.shared.clock.now();
        let mut window = self.window.lock().unwrap_or_else(PoisonError::into_inner);
        let limits = window.limits();
        (limits.tpm.is_some() || limits.rpm.is_some()).then(|| window.peek(now))
    }
}
