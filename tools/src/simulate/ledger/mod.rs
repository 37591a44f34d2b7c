//! The simulator's ledger: one entry per request it answered (or refused, or dropped), with
//! the tokens it "billed", so tests can compare a gateway's accounting with the backend's.
//!
//! Input: finished [`LedgerEntry`]s from every backend of one simulator. Output: a
//! [`LedgerSnapshot`] (entries + totals), optionally filtered by backend and sequence number.
//! Bounded: the oldest entries leave after `capacity`, and raw stream bytes are dropped from
//! the oldest entries first once they exceed a byte budget. Totals count every entry recorded
//! since the last clear, including evicted ones; entries of requests that billed nothing
//! (retrieving a stored response, say) carry 0 tokens, so the token totals are what was billed.
//!
//! # Token types
//! Each entry bills two totals and a subset of each, whatever shape the backend reported
//! its usage in (`reasoningUsage`), so a gateway's per-type sums compare field by field:
//! - `promptTokens`: all input tokens, a chain's or conversation's context included;
//!   `cachedTokens` of them were read from the prompt cache (billed as cached input), the
//!   rest is plain input.
//! - `completionTokens`: all output tokens, reasoning included — also when the backend
//!   reports `completion_tokens` without it (`reasoningUsage: separate`);
//!   `reasoningTokens` of them are a reasoning model's hidden reasoning (billed as
//!   reasoning output), the rest is the visible answer. A stream cut short bills all its
//!   reasoning plus the visible tokens sent.
//!
//! Images and audio add their own subsets: `imageInputTokens` of the prompt (the images of
//! an image edit), `audioInputTokens` of the prompt (the audio of a token-billed
//! transcription), `imageOutputTokens` of the completion (a GPT image model's pictures) and
//! `audioOutputTokens` of the completion (a token-billed speech model's audio). The simulator
//! reports no prompt-cache writes: that type is always 0.
//!
//! # What else an entry counts
//! Operations billed by other units carry them where they apply (0 or `null` elsewhere):
//! `images` generated, `audioSeconds` transcribed, translated or spoken, `characters` of
//! speech input; uploads (multipart bodies) their `uploadBytes` and when their first and last
//! body bytes arrived (`firstByteMs`, `lastByteMs`, milliseconds after the request head), so a
//! gateway test can tell a streamed upload from a buffered one; batches their `batchId`. A
//! batch is billed once, when it completes, by an entry of its own whose `requestId` is the
//! batch id (its create's entry, with the same `batchId`, bills 0).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};

use super::route::Api;

/// Default number of entries kept.
pub const DEFAULT_CAPACITY: usize = 100_000;
/// Default budget for raw stream bytes across all kept entries.
pub const DEFAULT_RAW_BUDGET: usize = 64 << 20;
/// Raw stream bytes kept per entry.
pub const RAW_STREAM_CAP: usize = 256 << 10;

/// One request as the simulated backend saw and billed it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerEntry {
    /// Position in the ledger, from 1, assigned on record.
    pub seq: u64,
    /// Wall-clock time the request arrived, Unix milliseconds.
    pub timestamp_ms: u64,
    /// `x-request-id` as received, or the one generated.
    pub request_id: String,
    /// Backend name.
    pub backend: String,
    /// Request path, without the query.
    pub path: String,
    /// `api-version` query parameter.
    pub api_version: Option<String>,
    /// Operation, when the route was known (`chat_completions`, `images_edits`,
    /// `audio_speech`, `files`, `batches`, …).
    pub operation: Option<Api>,
    /// Deployment from an Azure classic path.
    pub deployment: Option<String>,
    /// The body's `model` field.
    pub model: Option<String>,
    /// The request asked for a stream.
    pub stream: bool,
    /// The body carried `stream_options`.
    pub stream_options: bool,
    /// A usage chunk was sent in the stream.
    pub include_usage: bool,
    /// Status sent; 0 when the connection was closed without a response.
    pub status: u16,
    /// Billed prompt tokens (0 when the request was refused).
    pub prompt_tokens: u64,
    /// Billed completion tokens, reasoning included whatever the reporting shape: the whole
    /// completion when served; for a stream that ended early (client gone, or an injected
    /// reset) the reasoning plus the visible tokens actually sent.
    pub completion_tokens: u64,
    /// Of `prompt_tokens`, those served from the backend's prompt-prefix cache (reported as
    /// `cached_tokens` in the usage).
    #[serde(default)]
    pub cached_tokens: u64,
    /// Of `completion_tokens`, a reasoning model's hidden reasoning (reported as
    /// `reasoning_tokens` in the usage); 0 for other models.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Of `prompt_tokens`, the images of an image edit or variation.
    #[serde(default)]
    pub image_input_tokens: u64,
    /// Of `prompt_tokens`, the audio of a token-billed transcription.
    #[serde(default)]
    pub audio_input_tokens: u64,
    /// Of `completion_tokens`, a GPT image model's pictures.
    #[serde(default)]
    pub image_output_tokens: u64,
    /// Of `completion_tokens`, a token-billed speech model's audio.
    #[serde(default)]
    pub audio_output_tokens: u64,
    /// Images generated (`n` of an image call that succeeded).
    #[serde(default)]
    pub images: u64,
    /// Seconds of audio transcribed, translated or spoken.
    #[serde(default)]
    pub audio_seconds: u64,
    /// Characters of a speech call's `input`.
    #[serde(default)]
    pub characters: u64,
    /// Body bytes of an upload (a multipart request) read, when the request was one.
    #[serde(default)]
    pub upload_bytes: Option<u64>,
    /// When an upload's first body bytes arrived, milliseconds after the request head.
    #[serde(default)]
    pub first_byte_ms: Option<u64>,
    /// When an upload's last body bytes arrived, milliseconds after the request head.
    #[serde(default)]
    pub last_byte_ms: Option<u64>,
    /// The batch a batches call created or addressed, or that a batch's billing entry bills.
    #[serde(default)]
    pub batch_id: Option<String>,
    /// The client went away before the stream ended.
    pub aborted: bool,
    /// The injected fault that applied, by mode name.
    pub fault: Option<String>,
    /// The `api-key` header received.
    pub api_key: Option<String>,
    /// The `authorization` header received.
    pub authorization: Option<String>,
    /// The `traceparent` header received.
    pub traceparent: Option<String>,
    /// For streams: the exact body bytes sent (capped at [`RAW_STREAM_CAP`]).
    pub raw_stream: Option<String>,
    /// `raw_stream` was cut at the cap or dropped to honour the ledger's byte budget.
    pub raw_stream_truncated: bool,
    /// Time from request to the end of the response, milliseconds.
    pub duration_ms: u64,
}

/// Sums over ledger entries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    /// Requests recorded (any status).
    pub requests: u64,
    /// Billed prompt tokens.
    pub prompt_tokens: u64,
    /// Billed completion tokens, reasoning included.
    pub completion_tokens: u64,
    /// Prompt plus completion.
    pub total_tokens: u64,
    /// Of the prompt tokens, those reported as cached.
    #[serde(default)]
    pub cached_tokens: u64,
    /// Of the completion tokens, those reported as reasoning.
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Of the prompt tokens, image input.
    #[serde(default)]
    pub image_input_tokens: u64,
    /// Of the prompt tokens, audio input.
    #[serde(default)]
    pub audio_input_tokens: u64,
    /// Of the completion tokens, image output.
    #[serde(default)]
    pub image_output_tokens: u64,
    /// Of the completion tokens, audio output.
    #[serde(default)]
    pub audio_output_tokens: u64,
    /// Images generated.
    #[serde(default)]
    pub images: u64,
    /// Seconds of audio transcribed, translated or spoken.
    #[serde(default)]
    pub audio_seconds: u64,
    /// Characters of speech input.
    #[serde(default)]
    pub characters: u64,
    /// Upload body bytes read.
    #[serde(default)]
    pub upload_bytes: u64,
}

impl Totals {
    fn add(&mut self, entry: &LedgerEntry) {
        self.requests += 1;
        self.prompt_tokens += entry.prompt_tokens;
        self.completion_tokens += entry.completion_tokens;
        self.total_tokens += entry.prompt_tokens + entry.completion_tokens;
        self.cached_tokens += entry.cached_tokens;
        self.reasoning_tokens += entry.reasoning_tokens;
        self.image_input_tokens += entry.image_input_tokens;
        self.audio_input_tokens += entry.audio_input_tokens;
        self.image_output_tokens += entry.image_output_tokens;
        self.audio_output_tokens += entry.audio_output_tokens;
        self.images += entry.images;
        self.audio_seconds += entry.audio_seconds;
        self.characters += entry.characters;
        self.upload_bytes += entry.upload_bytes.unwrap_or(0);
    }
}

/// What `GET /_sim/ledger` returns.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LedgerSnapshot {
    /// Matching entries still kept, oldest first.
    pub entries: Vec<LedgerEntry>,
    /// Totals over every matching entry since the last clear (evicted ones included; the
    /// `since` filter does not apply to totals).
    pub totals: Totals,
    /// Entries evicted by the capacity bound since the last clear.
    pub evicted: u64,
}

/// Which entries to return.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LedgerQuery {
    /// Only this backend's entries and totals.
    pub backend: Option<String>,
    /// Only entries with `seq` greater than this.
    pub since: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: VecDeque<LedgerEntry>,
    next_seq: u64,
    totals: Totals,
    per_backend: BTreeMap<String, Totals>,
    evicted: u64,
    raw_bytes: usize,
    /// Entries before this index hold no raw bytes any more.
    raw_from: usize,
}

/// A bounded, shared ledger.
#[derive(Debug)]
pub struct Ledger {
    capacity: usize,
    raw_budget: usize,
    inner: Mutex<Inner>,
}

impl Default for Ledger {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY, DEFAULT_RAW_BUDGET)
    }
}

impl Ledger {
    /// A ledger keeping at most `capacity` entries and `raw_budget` raw stream bytes.
    pub fn new(capacity: usize, raw_budget: usize) -> Self {
        Self {
            capacity: capacity.max(1),
            raw_budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// Records `entry`, assigning its `seq`; returns the seq.
    pub fn record(&self, mut entry: LedgerEntry) -> u64 {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.next_seq += 1;
        entry.seq = inner.next_seq;
        inner.totals.add(&entry);
        match inner.per_backend.get_mut(&entry.backend) {
            Some(totals) => totals.add(&entry),
            None => {
                let mut totals = Totals::default();
                totals.add(&entry);
                inner.per_backend.insert(entry.backend.clone(), totals);
            }
        }
        inner.raw_bytes += entry.raw_stream.as_ref().map_or(0, String::len);
        inner.entries.push_back(entry);
        while inner.entries.len() > self.capacity {
            if let Some(old) = inner.entries.pop_front() {
                inner.raw_bytes -= old.raw_stream.as_ref().map_or(0, String::len);
                inner.evicted += 1;
                inner.raw_from = inner.raw_from.saturating_sub(1);
            }
        }
        while inner.raw_bytes > self.raw_budget && inner.raw_from < inner.entries.len() {
            let index = inner.raw_from;
            if let Some(raw) = inner.entries[index].raw_stream.take() {
                inner.raw_bytes -= raw.len();
                inner.entries[index].raw_stream_truncated = true;
            }
            inner.raw_from += 1;
        }
        inner.next_seq
    }

    /// Matching entries and totals.
    pub fn snapshot(&self, query: &LedgerQuery) -> LedgerSnapshot {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let since = query.since.unwrap_or(0);
        let entries = inner
            .entries
            .iter()
            .filter(|e| e.seq > since)
            .filter(|e| query.backend.as_ref().is_none_or(|b| *b == e.backend))
            .cloned()
            .collect();
        let totals = match &query.backend {
            Some(backend) => inner.per_backend.get(backend).copied().unwrap_or_default(),
            None => inner.totals,
        };
        LedgerSnapshot {
            entries,
            totals,
            evicted: inner.evicted,
        }
    }

    /// Forgets every entry and total; sequence numbers keep increasing.
    pub fn clear(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let next_seq = inner.next_seq;
        *inner = Inner {
            next_seq,
            ..Inner::default()
        };
    }
}

#[cfg(test)]
mod tests;
