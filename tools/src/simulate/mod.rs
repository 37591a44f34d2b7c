//! `spillway simulate`: OpenAI and Azure OpenAI compatible backends for tests, benchmarks and
//! the demo — real HTTP/1.1 and SSE, TPM/RPM windows with Azure's 429 headers, latency and
//! stream pacing, fault injection, and a ledger of the tokens each request was "billed"; for
//! chat, completions, embeddings, responses and conversations, and for images, audio, files
//! and batches. Every answer is what the official `openai` SDKs parse, and deterministic: the
//! same request gets the same content, usage and ledger entry (ids and timestamps aside).
//!
//! Input: a [`SimConfig`] (YAML via `--config`, `--backend name=…,tpm=…` short forms, or
//! built in code). Output: one listener per backend; [`run`] prints
//! `{"backend":NAME,"url":URL}` per backend then `{"ready":true}` on stdout and serves until
//! SIGINT/SIGTERM; [`start`] does the same in-process and returns a [`SimHandle`].
//!
//! # What each backend serves
//! On three path families — Azure classic (`/openai/deployments/{d}/{op}?api-version=…`, and
//! `/openai/responses…`, `/openai/conversations…`, `/openai/files…` and `/openai/batches…`
//! with `?api-version=…` — files and batches only there, never under a deployment; a missing
//! or unknown `api-version` is Azure's 404), Azure v1 (`/openai/v1/{op}`) and OpenAI
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
//! | POST | `images/generations` (JSON), `images/edits`, `images/variations` (multipart) | `{"created","data":[{"b64_json"} …n]}` (+ GPT image `usage`) |
//! | POST | `audio/transcriptions`, `audio/translations` (multipart) | `{"text","usage"}`, text, `verbose_json`, `srt`, `vtt`, or SSE |
//! | POST | `audio/speech` | audio bytes, chunked (or SSE with `stream_format: "sse"`) |
//! | GET / POST | `files` | `{"object":"list","data",…}` / the file uploaded (multipart `file`, `purpose`) |
//! | GET / DELETE | `files/{id}` | the file / `{"id","object":"file","deleted":true}` |
//! | GET | `files/{id}/content` | its bytes |
//! | GET / POST | `batches` | a list page / the batch created |
//! | GET | `batches/{id}` | the batch |
//! | POST | `batches/{id}/cancel` | the batch, `cancelling` |
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
//! # Images
//! A GPT image model (`gpt-image…`) answers `n` (1–10) small deterministic PNGs as `b64_json`
//! with `background`, `output_format`, `quality`, `size` and `usage` `{input_tokens,
//! input_tokens_details: {text_tokens, image_tokens}, output_tokens, output_tokens_details:
//! {text_tokens: 0, image_tokens}, total_tokens}`: input is the prompt's tokens plus, per input
//! image of an edit (`image` or several `image[]`; the `mask` is free), `65 + ⌈bytes/1024⌉`;
//! output per image is 1024x1024 low 272, medium 1056, high 4160, 1024x1536 408 / 1584 / 6240,
//! 1536x1024 400 / 1568 / 6208, other sizes the 1024x1024 count scaled by area (`auto`
//! quality = medium, `auto` size = 1024x1024). DALL·E models (the default model is `dall-e-2`)
//! bill no tokens and answer `b64_json` or, with `response_format: url`, `data:` URLs
//! (`dall-e-3` adds `revised_prompt`). Image streaming is refused (400).
//!
//! # Audio
//! An uploaded audio file is `⌈bytes / 32000⌉` seconds long (16 kHz 16-bit mono), its
//! transcript (or translation) `2 × seconds` words of the deterministic completion text.
//! `…transcribe…` models bill `10 × seconds` audio tokens plus the `prompt` field's tokens in
//! and the transcript out (`usage` `{"type":"tokens",…,"input_token_details":{text_tokens,
//! audio_tokens}}`), take `json`/`text` only and stream with `stream=true`
//! (`transcript.text.delta` … `transcript.text.done` with usage); `whisper-1` bills the
//! duration (`{"type":"duration","seconds"}`) and also answers `verbose_json` (10-second
//! segments), `srt` and `vtt`. Speech is `max(1, ⌈characters / 15⌉)` seconds of audio, one
//! deterministic chunk per second (4,000 bytes for `mp3`/`opus`/`aac`/`flac`, 32,000 for
//! `pcm`, and `wav` with a RIFF header), sent as a chunked body paced one chunk per tick of
//! `tokensPerSecond`, or as `speech.audio.delta` events and `speech.audio.done` with usage
//! (`stream_format: "sse"`, token-billed models only). Token-billed speech models (all but
//! `tts-1…`) bill the input's tokens in and `10 × seconds` audio tokens out; `tts-1` bills
//! characters.
//!
//! # Files and batches
//! Files live on the backend that stored them (elsewhere `No such File object: …`, 404), with
//! status `processed`, within `filesMaxBytes` (default 64 MiB) for all of a backend's files;
//! past it an upload is a 413. A batch (`input_file_id` of a `batch` file on the same backend,
//! `endpoint` chat, completions, embeddings or responses, with or without `/v1`,
//! `completion_window: "24h"`) is `validating`, `in_progress` after half of the backend's
//! `batchMs` (default 2000) and `completed` after all of it, with an output file (one JSONL
//! line per answered request, its body a normal answer with usage), an error file for lines
//! that are no JSON or whose request is refused, `request_counts` and `usage`; a cancel makes
//! it `cancelling`, then `cancelled` a quarter of `batchMs` later.
//!
//! # Uploads
//! Multipart bodies (image edits and variations, transcriptions, translations, file uploads)
//! are read streaming, chunk by chunk, never held whole (except a file upload's file, which is
//! kept): a 1 GiB body costs a few chunks of memory. A body that is not
//! `multipart/form-data`, or does not parse, is a 400. `uploadRateBytesPerSec` (config, or
//! `POST /_sim/latency`) reads them at most that fast, so a test can hold an upload open.
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
//! Every request to a model route leaves one entry (see [`ledger`] for every field), with the
//! tokens it billed by type: model
//! calls their prompt tokens (a chain's or conversation's context included) with the cached
//! ones among them, and their completion tokens (reasoning included, whatever the reporting
//! shape) with the reasoning ones among them; a stream cut short (client gone, injected
//! reset) bills its reasoning plus the visible tokens it sent;
//! retrieve, delete, input items, cancel, `input_tokens` and every conversations call 0 tokens
//! (they bill nothing; conversations entries carry operation `responses` and their path). A
//! background response is recorded once, when it completes (with its final tokens, whatever
//! its stream's client did), and never when it was cancelled first. So the token totals are
//! what was billed. Images bill as above with `images`, `imageInputTokens` and
//! `imageOutputTokens`; audio with `audioSeconds`, `audioInputTokens`, `audioOutputTokens`
//! and speech `characters` (a speech body is recorded when it ends, billed in full however it
//! ends); uploads with `uploadBytes`, `firstByteMs` and `lastByteMs` (when their first and
//! last body bytes were read, after the request head); files and batches calls bill 0 and
//! carry the `batchId` they touch, and a batch bills once, when it completes, in an entry of
//! its own whose `requestId` is the batch id (never when it was cancelled). Every call goes
//! through the same auth check, injected faults and latency; images and audio also through
//! the rate window, costing the tokens they bill.
//!
//! Modules: [`config`] (schema, validation), [`faults`], [`ledger`], [`ratelimit`] (window and
//! headers); private: `route`, `call`, `text` (generated text, caches), `payload` and `sse`
//! (bodies), `reply` (errors), `body` (paced stream), `backend` (live state), `exchange`
//! (per-request entry and headers), `tokens` (reasoning models and the usage shapes),
//! `handler`, `responses` (the stateful responses API),
//! `conversations` (the conversations API), `store` (stored responses and conversations),
//! `prefix_cache` (prompt caching), `incoming` (auth, `api-version`, JSON bodies), `upload`
//! (streaming multipart), `images`, `audio`, `files`, `batches`, `admin` (`/_sim/*`),
//! `server` (listener), `handle` ([`SimHandle`]).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, anyhow};
use tokio::net::TcpListener;
use tokio::sync::watch;

use spillway_sidecar::clock::{Clock, SystemClock};

mod admin;
mod audio;
mod backend;
mod batch_store;
mod batches;
mod body;
mod call;
pub mod config;
mod conversations;
mod exchange;
pub mod faults;
mod file_store;
mod files;
mod handle;
mod handler;
mod images;
mod incoming;
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
mod upload;

pub use backend::Timing;
pub use config::{BackendConfig, ReasoningUsage, SimConfig};
pub use faults::{FaultMode, FaultSpec, FaultView};
pub use handle::{BackendHandle, SimHandle};
pub use ledger::{LedgerEntry, LedgerQuery, LedgerSnapshot, Totals};
pub use ratelimit::Limits;
pub use route::{Api, ModelApi};

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

#[cfg(test)]
mod tests;
