//! `POST audio/speech`: text to "speech". The answer is `seconds = max(1, ⌈characters / 15⌉)`
//! of audio (a speaking rate of 15 characters a second): for `pcm` and `wav` 16 kHz 16-bit
//! mono samples ([`PCM_BYTES_PER_SECOND`]; `wav` adds a 44-byte header), for the compressed
//! formats (`mp3`, the default, `opus`, `aac`, `flac`) [`COMPRESSED_BYTES_PER_SECOND`]. The
//! bytes are a deterministic pattern seeded by the input, sent as one chunk per second of
//! audio in a chunked body (`content-type` `audio/mpeg`, `audio/wav`, …), one chunk per tick
//! of the backend's `tokensPerSecond` pacing, so the first bytes arrive before the last.
//!
//! `stream_format: "sse"` (token-billed models only) answers SSE instead: one
//! `speech.audio.delta` `{"type","audio":base64}` per chunk, then `speech.audio.done`
//! `{"type","usage":{"input_tokens","output_tokens","total_tokens"}}`. Token-billed models
//! (any but `tts-1…`, e.g. `gpt-4o-mini-tts`) bill the input's (and `instructions`') text
//! tokens in and `10 × seconds` audio tokens out; `tts-1` and `tts-1-hd` bill characters.
//!
//! The ledger entry (recorded when the body ends, billed in full however it ends) carries
//! `characters`, `audioSeconds`, and for token-billed models the tokens, all output tokens
//! as `audioOutputTokens`.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::CACHE_CONTROL;
use http::{HeaderValue, Request, Response};
use hyper::body::Incoming;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::super::backend::Backend;
use super::super::body::{ConnControl, SimBody, SseStream, StreamRecord};
use super::super::exchange::{Exchange, Faulted};
use super::super::incoming;
use super::super::reply::Reply;
use super::super::route::Route;
use super::super::sse::{self, SseEvent};
use super::super::text;
use super::AUDIO_TOKENS_PER_SECOND;
use spillway_sidecar::usage::tokenizer;

/// Characters of input spoken per second.
pub const CHARACTERS_PER_SECOND: u64 = 15;
/// Bytes per second of `pcm` and `wav` audio (16 kHz, 16-bit, mono).
pub const PCM_BYTES_PER_SECOND: usize = 32_000;
/// Bytes per second of the compressed formats (32 kbit/s).
pub const COMPRESSED_BYTES_PER_SECOND: usize = 4_000;
/// The longest `input` accepted, in characters.
pub const MAX_INPUT: usize = 4096;

/// A speech request, read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpeechAsk {
    /// The model (the body's, else the deployment).
    pub model: String,
    /// The text to speak.
    pub input: String,
    /// `instructions`, if any.
    pub instructions: Option<String>,
    /// `response_format`.
    pub format: &'static str,
    /// `stream_format: "sse"`.
    pub sse: bool,
}

impl SpeechAsk {
    /// Reads a speech body; `deployment` names the model when the body does not.
    ///
    /// # Errors
    /// No model, no `input` (or a longer one than [`MAX_INPUT`]), no `voice`, an unknown
    /// `response_format` or `stream_format`, or SSE from a model that bills characters.
    pub fn from_json(json: &Value, deployment: Option<&str>) -> Result<Self, Reply> {
        let text = |name: &str| json.get(name).and_then(Value::as_str);
        let bad = |message: &str, param| Reply::bad_request(message, Some(param));
        let model = text("model")
            .filter(|m| !m.is_empty())
            .or(deployment)
            .ok_or_else(|| bad("you must provide a model parameter", "model"))?
            .to_owned();
        let input =
            text("input").ok_or_else(|| bad("Missing required parameter: 'input'.", "input"))?;
        if input.chars().count() > MAX_INPUT {
            return Err(bad(
                &format!(
                    "Invalid 'input': string too long. Expected a string with maximum length {MAX_INPUT}."
                ),
                "input",
            ));
        }
        let voice = json.get("voice");
        if !voice.is_some_and(|v| v.is_string() || v.get("id").is_some_and(Value::is_string)) {
            return Err(bad("Missing required parameter: 'voice'.", "voice"));
        }
        let format = match text("response_format") {
            None => "mp3",
            Some(format) => ["mp3", "opus", "aac", "flac", "wav", "pcm"]
                .into_iter()
                .find(|f| *f == format)
                .ok_or_else(|| bad(&format!("Invalid value: '{format}'. Supported values are: 'mp3', 'opus', 'aac', 'flac', 'wav' and 'pcm'."), "response_format"))?,
        };
        let sse = match text("stream_format") {
            None | Some("audio") => false,
            Some("sse") => true,
            Some(other) => {
                return Err(bad(
                    &format!("Invalid value: '{other}'. Supported values are: 'sse' and 'audio'."),
                    "stream_format",
                ));
            }
        };
        let ask = Self {
            model,
            input: input.to_owned(),
            instructions: text("instructions").map(str::to_owned),
            format,
            sse,
        };
        if sse && !ask.token_billed() {
            return Err(bad(
                &format!(
                    "stream_format 'sse' is not supported for model '{}'.",
                    ask.model
                ),
                "stream_format",
            ));
        }
        Ok(ask)
    }

    /// Whether the model bills tokens (any but `tts-1…`) rather than characters.
    pub fn token_billed(&self) -> bool {
        !self.model.to_ascii_lowercase().starts_with("tts-1")
    }

    /// Characters of input.
    pub fn characters(&self) -> u64 {
        self.input.chars().count() as u64
    }

    /// Seconds of speech.
    pub fn seconds(&self) -> u64 {
        self.characters().div_ceil(CHARACTERS_PER_SECOND).max(1)
    }

    /// `(input, output)` tokens; `(0, 0)` for models that bill characters.
    pub fn tokens(&self) -> (u64, u64) {
        if !self.token_billed() {
            return (0, 0);
        }
        let count = |text: &str| tokenizer::count_text(&self.model, text);
        let input = count(&self.input) + self.instructions.as_deref().map_or(0, count);
        (input, AUDIO_TOKENS_PER_SECOND * self.seconds())
    }

    /// The content type of the audio.
    pub fn content_type(&self) -> &'static str {
        match self.format {
            "opus" => "audio/opus",
            "aac" => "audio/aac",
            "flac" => "audio/flac",
            "wav" => "audio/wav",
            "pcm" => "audio/pcm",
            _ => "audio/mpeg",
        }
    }

    /// The audio, one chunk per second (the chunks share one buffer).
    pub fn chunks(&self) -> Vec<Bytes> {
        let pcm = matches!(self.format, "wav" | "pcm");
        let per_second = if pcm {
            PCM_BYTES_PER_SECOND
        } else {
            COMPRESSED_BYTES_PER_SECOND
        };
        let seed = Sha256::digest(self.input.as_bytes());
        let second: Bytes = (0..per_second)
            .map(|i| seed[i % seed.len()].wrapping_add((i / seed.len()) as u8))
            .collect::<Vec<u8>>()
            .into();
        let seconds = self.seconds() as usize;
        let mut chunks = vec![second; seconds];
        if self.format == "wav" {
            let mut first = BytesMut::from(&wav_header(per_second * seconds)[..]);
            first.put_slice(&chunks[0]);
            chunks[0] = first.freeze();
        }
        chunks
    }
}

/// A 44-byte RIFF/WAVE header for `data_len` bytes of 16 kHz 16-bit mono PCM.
fn wav_header(data_len: usize) -> [u8; 44] {
    let data_len = data_len as u32;
    let mut header = [0; 44];
    let fields: [(usize, &[u8]); 13] = [
        (0, b"RIFF"),
        (4, &(36 + data_len).to_le_bytes()),
        (8, b"WAVE"),
        (12, b"fmt "),
        (16, &16_u32.to_le_bytes()),
        (20, &1_u16.to_le_bytes()),
        (22, &1_u16.to_le_bytes()),
        (24, &16_000_u32.to_le_bytes()),
        (28, &32_000_u32.to_le_bytes()),
        (32, &2_u16.to_le_bytes()),
        (34, &16_u16.to_le_bytes()),
        (36, b"data"),
        (40, &data_len.to_le_bytes()),
    ];
    for (at, bytes) in fields {
        header[at..at + bytes.len()].copy_from_slice(bytes);
    }
    header
}

/// Serves a speech request.
///
/// # Errors
/// An invalid body (400), a status fault, or the rate limit (429).
pub async fn serve(
    backend: &Arc<Backend>,
    conn: &ConnControl,
    exchange: &mut Exchange,
    route: &Route,
    request: Request<Incoming>,
) -> Result<Option<Response<SimBody>>, Reply> {
    let (_, json) = incoming::read_json(request).await?;
    let ask = SpeechAsk::from_json(&json, route.deployment.as_deref())?;
    exchange.entry.model = Some(ask.model.clone());
    exchange.entry.stream = ask.sse;
    let fault = match exchange
        .fault(backend, route.flavour, route.api, true)
        .await?
    {
        Faulted::Drop => return Ok(None),
        Faulted::Serve(fault) => fault,
    };
    let (input_tokens, output_tokens) = ask.tokens();
    let api_version = route.api_version.as_deref();
    exchange.admit(
        backend,
        route.api,
        input_tokens + output_tokens,
        api_version,
    )?;
    backend.wait_latency().await;
    let entry = &mut exchange.entry;
    entry.characters = ask.characters();
    entry.audio_seconds = ask.seconds();
    entry.prompt_tokens = input_tokens;
    entry.audio_output_tokens = output_tokens;
    entry.status = 200;
    let chunks = ask.chunks();
    let (malformed, reset) = sse::mid_stream(fault.as_ref());
    let (mut events, content_type): (Vec<SseEvent>, _) = if ask.sse {
        let mut events: Vec<SseEvent> = chunks
            .iter()
            .map(|chunk| {
                let delta = json!({"type": "speech.audio.delta", "audio": text::base64(chunk)});
                SseEvent::data(&delta, Some(""))
            })
            .collect();
        let usage = json!({"input_tokens": input_tokens, "output_tokens": output_tokens,
            "total_tokens": input_tokens + output_tokens});
        events.push(SseEvent::data(
            &json!({"type": "speech.audio.done", "usage": usage}),
            None,
        ));
        (events, "text/event-stream")
    } else {
        let events = chunks.into_iter().map(SseEvent::paced).collect();
        (events, ask.content_type())
    };
    if ask.sse {
        sse::insert_malformed(&mut events, malformed);
    }
    let shared = &backend.shared;
    let record = StreamRecord {
        ledger: Arc::clone(&shared.ledger),
        entry: exchange.take_entry(),
        model: ask.model.clone(),
        full_tokens: output_tokens,
        reasoning_tokens: 0,
        clock: Arc::clone(&shared.clock),
        started: exchange.started,
        bills_in_full: true,
        keeps_raw: ask.sse,
    };
    let pace = backend.timing().tokens_per_second;
    let stream = SseStream::new(events, pace, reset, conn.clone(), Some(record));
    let mut response = SimBody::Stream(Box::new(stream)).into_ok(content_type);
    response
        .headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(Some(response))
}
