//! The audio API: `POST audio/transcriptions` and `audio/translations` (multipart, the
//! `file` read streaming and counted, never held) and `POST audio/speech` ([`speech`]).
//!
//! A transcription treats the file's bytes as audio at [`BYTES_PER_SECOND`] (16 kHz 16-bit
//! mono): `seconds = ⌈bytes / 32000⌉`. Its text is the simulator's deterministic completion
//! text of `2 × seconds` words (at most 4096), so the same file length always transcribes the
//! same. Token-billed models (their name contains `transcribe`: `gpt-4o-transcribe`,
//! `gpt-4o-mini-transcribe`, …) bill `10 × seconds` audio tokens plus the `prompt` field's
//! text tokens as input and the transcript's tokens as output, reported as
//! `{"type":"tokens","input_tokens","input_token_details":{"text_tokens","audio_tokens"},
//! "output_tokens","total_tokens"}`; the others (`whisper-1`) bill the duration,
//! `{"type":"duration","seconds"}`.
//!
//! `response_format`: `json` (default) → `{"text","usage"}` (translations `{"text"}`);
//! `text` → the text; `verbose_json` → `{"task","language","duration","text","segments",
//! "usage"}` with one segment per 10 seconds; `srt` and `vtt` → subtitles of those segments.
//! Token-billed models take `json` and `text` only. `stream=true` on a token-billed
//! transcription answers SSE: `transcript.text.delta` `{"type","delta"}` per word, paced like
//! any stream, then `transcript.text.done` `{"type","text","usage"}`; other models ignore it.
//!
//! Input: the route, the request, the backend. Output: the answer after the form's checks,
//! the fault, the rate window (costing the billed tokens) and the latency. The ledger entry
//! bills the tokens (`audioInputTokens` of the prompt), `audioSeconds`, and the upload's
//! `uploadBytes`, `firstByteMs` and `lastByteMs`.

use std::sync::Arc;

use http::header::CACHE_CONTROL;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use serde_json::{Value, json};

use super::backend::Backend;
use super::body::{ConnControl, SimBody, SseStream, StreamRecord};
use super::config::MAX_COMPLETION_TOKENS;
use super::exchange::{Exchange, Faulted};
use super::faults::FaultAction;
use super::reply::Reply;
use super::route::Route;
use super::sse::{self, SseEvent};
use super::text::Completion;
use super::upload::{self, FormRules};
use spillway_sidecar::usage::tokenizer;

pub mod speech;
mod transcript;

pub use transcript::TranscriptionAsk;

/// Bytes of an uploaded file per second of audio (16 kHz, 16-bit, mono).
pub const BYTES_PER_SECOND: u64 = 32_000;
/// Transcript words per second of audio.
pub const WORDS_PER_SECOND: u64 = 2;
/// Audio tokens per second of audio, in and out.
pub const AUDIO_TOKENS_PER_SECOND: u64 = 10;

/// What a transcription or translation bills.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AudioUsage {
    /// Token-billed: tokens; else the duration.
    pub tokens: bool,
    /// Seconds of audio.
    pub seconds: u64,
    /// Audio input tokens.
    pub audio_tokens: u64,
    /// Text input tokens (the `prompt` field).
    pub text_tokens: u64,
    /// Transcript tokens.
    pub output_tokens: u64,
}

impl AudioUsage {
    /// Input tokens.
    pub fn input_tokens(&self) -> u64 {
        self.audio_tokens + self.text_tokens
    }

    /// The `usage` object.
    pub fn json(&self) -> Value {
        if self.tokens {
            json!({
                "type": "tokens",
                "input_tokens": self.input_tokens(),
                "input_token_details": {
                    "text_tokens": self.text_tokens,
                    "audio_tokens": self.audio_tokens
                },
                "output_tokens": self.output_tokens,
                "total_tokens": self.input_tokens() + self.output_tokens
            })
        } else {
            json!({"type": "duration", "seconds": self.seconds})
        }
    }
}

/// Serves a transcription or translation.
///
/// # Errors
/// An invalid form (400, 413), a status fault, or the rate limit (429).
pub async fn transcribe(
    backend: &Arc<Backend>,
    conn: &ConnControl,
    exchange: &mut Exchange,
    route: &Route,
    request: Request<Incoming>,
) -> Result<Option<Response<SimBody>>, Reply> {
    let rules = FormRules {
        file_fields: &["file"],
        keep_up_to: None,
    };
    let form = upload::read(backend, exchange, request, rules).await?;
    let ask = TranscriptionAsk::from_form(route.api, &form, route.deployment.as_deref())
        .map_err(|invalid| Reply::bad_request(&invalid.message, Some(invalid.param)))?;
    exchange.entry.model = Some(ask.model.clone());
    exchange.entry.stream = ask.stream;
    let fault = match exchange
        .fault(backend, route.flavour, route.api, ask.stream)
        .await?
    {
        Faulted::Drop => return Ok(None),
        Faulted::Serve(fault) => fault,
    };
    let words = (ask.seconds * WORDS_PER_SECOND).clamp(1, u64::from(MAX_COMPLETION_TOKENS));
    let completion = backend.shared.completions.get(&ask.model, words as u32);
    let usage = ask.usage(&completion, |text| tokenizer::count_text(&ask.model, text));
    let billed = usage.input_tokens() + usage.output_tokens;
    exchange.admit(backend, route.api, billed, route.api_version.as_deref())?;
    backend.wait_latency().await;
    let entry = &mut exchange.entry;
    entry.audio_seconds = usage.seconds;
    if usage.tokens {
        entry.prompt_tokens = usage.input_tokens();
        entry.audio_input_tokens = usage.audio_tokens;
        entry.completion_tokens = usage.output_tokens;
    }
    if ask.stream {
        let (malformed, reset) = sse::mid_stream(fault.as_ref());
        return Ok(Some(stream(
            backend,
            conn,
            exchange,
            &ask,
            &completion,
            usage,
            malformed,
            reset,
        )));
    }
    let (mut bytes, content_type) = transcript::render(&ask, &completion, &usage);
    if fault == Some(FaultAction::MalformedJson) {
        bytes = bytes.slice(..bytes.len() / 2);
    }
    exchange.record(backend, 200);
    Ok(Some(SimBody::full(bytes).into_ok(content_type)))
}

/// The SSE answer of a streamed transcription; its entry is recorded when it ends.
#[allow(clippy::too_many_arguments)]
fn stream(
    backend: &Backend,
    conn: &ConnControl,
    exchange: &mut Exchange,
    ask: &TranscriptionAsk,
    completion: &Completion,
    usage: AudioUsage,
    malformed: Option<u32>,
    reset: Option<usize>,
) -> Response<SimBody> {
    let mut events: Vec<SseEvent> = completion
        .deltas
        .iter()
        .map(|delta| {
            let event = json!({"type": "transcript.text.delta", "delta": delta});
            SseEvent::data(&event, Some(delta))
        })
        .collect();
    let done =
        json!({"type": "transcript.text.done", "text": completion.text, "usage": usage.json()});
    events.push(SseEvent::data(&done, None));
    sse::insert_malformed(&mut events, malformed);
    exchange.entry.status = 200;
    let shared = &backend.shared;
    let record = StreamRecord {
        ledger: Arc::clone(&shared.ledger),
        entry: exchange.take_entry(),
        model: ask.model.clone(),
        full_tokens: usage.output_tokens,
        reasoning_tokens: 0,
        clock: Arc::clone(&shared.clock),
        started: exchange.started,
        bills_in_full: !usage.tokens,
        keeps_raw: true,
    };
    let pace = backend.timing().tokens_per_second;
    let stream = SseStream::new(events, pace, reset, conn.clone(), Some(record));
    let mut response = SimBody::Stream(Box::new(stream)).into_ok("text/event-stream");
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests;
