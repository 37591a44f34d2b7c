//! Simulator configuration: the YAML file (`--config`), the `--backend key=value,…` short
//! form, defaults and validation.
//!
//! Input: YAML text (a list of backends, or a mapping with `backends:`) and/or short-form
//! strings. Output: a validated [`SimConfig`]. Every error names the backend and the field.

use std::collections::HashSet;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::faults::FaultSpec;
use super::route::ApiVersion;

/// Default completion length when a request sets no `max_tokens`.
pub const DEFAULT_COMPLETION_TOKENS: u32 = 20;
/// Largest completion the simulator generates, whatever `max_tokens` asks for.
pub const MAX_COMPLETION_TOKENS: u32 = 4096;
/// Default of `azureMinStreamOptionsApiVersion`.
pub const DEFAULT_MIN_STREAM_OPTIONS_API_VERSION: &str = "2024-09-01-preview";
/// Default of `backgroundMs`: how long a background response takes to complete.
pub const DEFAULT_BACKGROUND_MS: u64 = 200;
/// Default of `cacheMinTokens`: the shortest prompt prefix that is cached (as OpenAI's 1024).
pub const DEFAULT_CACHE_MIN_TOKENS: u64 = 1024;
/// Longest `backgroundMs` and `batchMs` accepted (one hour).
pub const MAX_BACKGROUND_MS: u64 = 3_600_000;
/// Default of `batchMs`: how long a batch takes to complete.
pub const DEFAULT_BATCH_MS: u64 = 2000;
/// Default of `filesMaxBytes`: the bytes one backend's files may hold in all.
pub const DEFAULT_FILES_MAX_BYTES: u64 = 64 << 20;

/// How a backend reports the reasoning tokens of a reasoning model (`reasoningUsage`).
/// Either way `*_tokens_details.reasoning_tokens` carries them and they are billed as
/// completion tokens; the shapes differ in which count includes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReasoningUsage {
    /// OpenAI and Azure OpenAI: `completion_tokens` / `output_tokens` include reasoning;
    /// `total_tokens` is prompt + completion.
    #[default]
    Included,
    /// Some OpenAI-compatible servers (Gemini's compatibility layer, say):
    /// `completion_tokens` / `output_tokens` are the visible answer only; `total_tokens`
    /// is prompt + visible + reasoning.
    Separate,
}

impl std::str::FromStr for ReasoningUsage {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        match value.to_ascii_lowercase().as_str() {
            "included" => Ok(Self::Included),
            "separate" => Ok(Self::Separate),
            _ => Err("expected `included` or `separate`".into()),
        }
    }
}

/// The whole simulator: one HTTP listener per backend.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SimConfig {
    /// The simulated backends.
    pub backends: Vec<BackendConfig>,
}

/// One simulated OpenAI / Azure OpenAI endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendConfig {
    /// Name, echoed in `x-sim-backend` and the ledger.
    pub name: String,
    /// Listen address; port 0 picks a free port.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// When set, requests must carry it as `api-key` or `Authorization: Bearer`; several
    /// accepted values are separated by `|`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// Tokens per minute (prompt + max_tokens per request, sliding 60 s window).
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Requests per minute (sliding 60 s window).
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Time to response headers.
    #[serde(default)]
    pub latency_ms: u64,
    /// Uniform random extra latency in `0..=jitterMs`.
    #[serde(default)]
    pub jitter_ms: u64,
    /// Stream pacing; 0 sends every delta at once.
    #[serde(default)]
    pub tokens_per_second: u32,
    /// Completion length when the request sets no `max_tokens`.
    #[serde(default = "default_completion_tokens")]
    pub completion_tokens: u32,
    /// Whether `stream_options.include_usage` is honoured.
    #[serde(default = "default_true")]
    pub usage_in_stream: bool,
    /// Oldest Azure classic `api-version` that accepts `stream_options`.
    #[serde(default = "default_min_api_version")]
    pub azure_min_stream_options_api_version: String,
    /// Time from a `background: true` create to its completion (`queued`, `in_progress`
    /// from half of it, then `completed`).
    #[serde(default = "default_background_ms")]
    pub background_ms: u64,
    /// Shortest prompt prefix, in estimated tokens, that a repeated call reports as
    /// `cached_tokens`.
    #[serde(default = "default_cache_min_tokens")]
    pub cache_min_tokens: u64,
    /// Models (as a request names them: the body's `model`, else the deployment; compared
    /// ignoring case) that reason, besides every name starting with `o1`, `o3`, `o4` or
    /// `gpt-5`.
    #[serde(default)]
    pub reasoning_models: Vec<String>,
    /// Whether `completion_tokens` / `output_tokens` include reasoning tokens.
    #[serde(default)]
    pub reasoning_usage: ReasoningUsage,
    /// Time from a batch's create to its completion (`validating`, `in_progress` from half
    /// of it, then `completed`).
    #[serde(default = "default_batch_ms")]
    pub batch_ms: u64,
    /// The bytes this backend's files (uploads and batch results) may hold in all; an upload
    /// past it is refused with 413.
    #[serde(default = "default_files_max_bytes")]
    pub files_max_bytes: u64,
    /// Reads upload bodies (multipart requests) at most this fast; unset reads as fast as
    /// they come.
    #[serde(default)]
    pub upload_rate_bytes_per_sec: Option<u64>,
    /// Faults active from the start.
    #[serde(default)]
    pub faults: Vec<FaultSpec>,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 0))
}

fn default_completion_tokens() -> u32 {
    DEFAULT_COMPLETION_TOKENS
}

fn default_true() -> bool {
    true
}

fn default_min_api_version() -> String {
    DEFAULT_MIN_STREAM_OPTIONS_API_VERSION.to_owned()
}

fn default_background_ms() -> u64 {
    DEFAULT_BACKGROUND_MS
}

fn default_cache_min_tokens() -> u64 {
    DEFAULT_CACHE_MIN_TOKENS
}

fn default_batch_ms() -> u64 {
    DEFAULT_BATCH_MS
}

fn default_files_max_bytes() -> u64 {
    DEFAULT_FILES_MAX_BYTES
}

impl BackendConfig {
    /// A backend with every default: `127.0.0.1:0`, no limits, no latency, no faults.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            listen: default_listen(),
            api_key: None,
            tpm: None,
            rpm: None,
            latency_ms: 0,
            jitter_ms: 0,
            tokens_per_second: 0,
            completion_tokens: DEFAULT_COMPLETION_TOKENS,
            usage_in_stream: true,
            azure_min_stream_options_api_version: default_min_api_version(),
            background_ms: DEFAULT_BACKGROUND_MS,
            cache_min_tokens: DEFAULT_CACHE_MIN_TOKENS,
            reasoning_models: Vec::new(),
            reasoning_usage: ReasoningUsage::Included,
            batch_ms: DEFAULT_BATCH_MS,
            files_max_bytes: DEFAULT_FILES_MAX_BYTES,
            upload_rate_bytes_per_sec: None,
            faults: Vec::new(),
        }
    }

    /// Parses the short form `name=ptu,port=0,tpm=10000,rpm=60,latency_ms=20,…`.
    ///
    /// Keys are matched ignoring case and `_`/`-`, so `latency_ms` and `latencyMs` both work.
    /// Accepted: `name`, `port`, `listen`, `host`, `apiKey`, `tpm`, `rpm`, `latencyMs`,
    /// `jitterMs`, `tokensPerSec`/`tokensPerSecond`/`tps`, `completionTokens`,
    /// `usageInStream`, `azureMinStreamOptionsApiVersion`, `backgroundMs`, `cacheMinTokens`,
    /// `reasoningModels` (names separated by `|`), `reasoningUsage` (`included`/`separate`),
    /// `batchMs`, `filesMaxBytes`, `uploadRateBytesPerSec`.
    ///
    /// # Errors
    /// A part without `=`, an unknown key, a value that does not parse, or no `name`.
    pub fn parse_short(spec: &str) -> Result<Self, String> {
        let mut config = Self::new("");
        let mut host = None;
        let mut port = None;
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not key=value"))?;
            let value = value.trim();
            let normalized: String = key
                .chars()
                .filter(|c| *c != '_' && *c != '-')
                .map(|c| c.to_ascii_lowercase())
                .collect();
            let bad = |e: &dyn std::fmt::Display| format!("{key}: `{value}`: {e}");
            match normalized.as_str() {
                "name" => config.name = value.to_owned(),
                "port" => port = Some(value.parse::<u16>().map_err(|e| bad(&e))?),
                "host" => host = Some(value.to_owned()),
                "listen" => config.listen = value.parse().map_err(|e| bad(&e))?,
                "apikey" => config.api_key = Some(value.to_owned()),
                "tpm" => config.tpm = Some(value.parse().map_err(|e| bad(&e))?),
                "rpm" => config.rpm = Some(value.parse().map_err(|e| bad(&e))?),
                "latencyms" => config.latency_ms = value.parse().map_err(|e| bad(&e))?,
                "jitterms" => config.jitter_ms = value.parse().map_err(|e| bad(&e))?,
                "tokenspersec" | "tokenspersecond" | "tps" => {
                    config.tokens_per_second = value.parse().map_err(|e| bad(&e))?;
                }
                "completiontokens" => {
                    config.completion_tokens = value.parse().map_err(|e| bad(&e))?;
                }
                "usageinstream" => config.usage_in_stream = value.parse().map_err(|e| bad(&e))?,
                "azureminstreamoptionsapiversion" => {
                    config.azure_min_stream_options_api_version = value.to_owned();
                }
                "backgroundms" => config.background_ms = value.parse().map_err(|e| bad(&e))?,
                "cachemintokens" => {
                    config.cache_min_tokens = value.parse().map_err(|e| bad(&e))?;
                }
                "reasoningmodels" => {
                    config.reasoning_models = value
                        .split('|')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_owned)
                        .collect();
                }
                "reasoningusage" => config.reasoning_usage = value.parse().map_err(|e| bad(&e))?,
                "batchms" => config.batch_ms = value.parse().map_err(|e| bad(&e))?,
                "filesmaxbytes" => config.files_max_bytes = value.parse().map_err(|e| bad(&e))?,
                "uploadratebytespersec" | "uploadratebytespersecond" => {
                    config.upload_rate_bytes_per_sec = Some(value.parse().map_err(|e| bad(&e))?);
                }
                _ => return Err(format!("unknown key `{key}` in `{spec}`")),
            }
        }
        if host.is_some() || port.is_some() {
            let ip = match host {
                Some(h) => h.parse().map_err(|e| format!("host: `{h}`: {e}"))?,
                None => config.listen.ip(),
            };
            config.listen = SocketAddr::new(ip, port.unwrap_or(config.listen.port()));
        }
        if config.name.is_empty() {
            return Err(format!("`{spec}` has no name=…"));
        }
        Ok(config)
    }

    /// Checks one backend; messages name the field.
    ///
    /// # Errors
    /// An empty or oddly spelled name, a zero limit, a zero or oversized completion length,
    /// an unparsable API version, a `backgroundMs` or `batchMs` above an hour, a zero
    /// `uploadRateBytesPerSec`, an empty name in `reasoningModels`, or an invalid fault.
    pub fn validate(&self) -> Result<(), String> {
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !name_ok {
            return Err(format!(
                "name `{}` must be non-empty ASCII letters, digits, `-`, `_` or `.`",
                self.name
            ));
        }
        if self.tpm == Some(0) || self.rpm == Some(0) {
            return Err("tpm and rpm must be at least 1 when set (omit them for no limit)".into());
        }
        if self.completion_tokens == 0 || self.completion_tokens > MAX_COMPLETION_TOKENS {
            return Err(format!(
                "completionTokens must be within 1..={MAX_COMPLETION_TOKENS}, got {}",
                self.completion_tokens
            ));
        }
        if self.background_ms > MAX_BACKGROUND_MS {
            return Err(format!(
                "backgroundMs must be at most {MAX_BACKGROUND_MS} (one hour), got {}",
                self.background_ms
            ));
        }
        if self.batch_ms > MAX_BACKGROUND_MS {
            return Err(format!(
                "batchMs must be at most {MAX_BACKGROUND_MS} (one hour), got {}",
                self.batch_ms
            ));
        }
        if self.upload_rate_bytes_per_sec == Some(0) {
            return Err(
                "uploadRateBytesPerSec must be at least 1 when set (omit it for no limit)".into(),
            );
        }
        if let Some(index) = self
            .reasoning_models
            .iter()
            .position(|m| m.trim().is_empty())
        {
            return Err(format!(
                "reasoningModels[{index}] must name a model or deployment"
            ));
        }
        if self.api_key.as_deref() == Some("") {
            return Err("apiKey must not be empty (omit it for no authentication)".into());
        }
        ApiVersion::parse(&self.azure_min_stream_options_api_version).ok_or_else(|| {
            format!(
                "azureMinStreamOptionsApiVersion `{}` is not an api-version such as 2024-09-01-preview",
                self.azure_min_stream_options_api_version
            )
        })?;
        for (index, fault) in self.faults.iter().enumerate() {
            fault
                .validate()
                .map_err(|e| format!("faults[{index}]: {e}"))?;
        }
        Ok(())
    }
}

impl SimConfig {
    /// Reads YAML: either a list of backends or a mapping `{backends: [...]}`.
    ///
    /// # Errors
    /// Invalid YAML, an unknown field, or a backend that fails [`SimConfig::validate`].
    pub fn from_yaml(text: &str) -> Result<Self, String> {
        let value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| format!("not valid YAML: {e}"))?;
        let items = match value {
            serde_norway::Value::Sequence(items) => items,
            serde_norway::Value::Mapping(mut map) => {
                if let Some(key) = map.keys().find(|k| k.as_str() != Some("backends")) {
                    return Err(format!(
                        "unknown top-level key {key:?}; expected `backends` (or a bare list)"
                    ));
                }
                match map.remove("backends") {
                    Some(serde_norway::Value::Sequence(items)) => items,
                    _ => return Err("`backends` must be a list of backends".into()),
                }
            }
            serde_norway::Value::Null => Vec::new(),
            _ => return Err("expected a list of backends or a mapping with `backends`".into()),
        };
        let mut backends = Vec::with_capacity(items.len());
        for (index, item) in items.into_iter().enumerate() {
            let name = item.get("name").and_then(|n| n.as_str()).map(str::to_owned);
            let backend: BackendConfig = serde_norway::from_value(item).map_err(|e| {
                format!(
                    "backends[{index}] ({}): {e}",
                    name.as_deref().unwrap_or("?")
                )
            })?;
            backends.push(backend);
        }
        let config = Self { backends };
        config.validate()?;
        Ok(config)
    }

    /// Checks every backend and that names and fixed ports are unique.
    ///
    /// # Errors
    /// No backends, a duplicate name or listen address, or an invalid backend.
    pub fn validate(&self) -> Result<(), String> {
        if self.backends.is_empty() {
            return Err("no backends configured; give --config FILE or --backend name=…".into());
        }
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for backend in &self.backends {
            backend
                .validate()
                .map_err(|e| format!("backend `{}`: {e}", backend.name))?;
            if !names.insert(backend.name.as_str()) {
                return Err(format!("backend name `{}` appears twice", backend.name));
            }
            if backend.listen.port() != 0 && !addrs.insert(backend.listen) {
                return Err(format!(
                    "backend `{}`: listen address {} is used twice",
                    backend.name, backend.listen
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
