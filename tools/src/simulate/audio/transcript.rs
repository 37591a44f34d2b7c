//! What a transcription or translation form asks for, what it bills, and its answer in each
//! `response_format`.

use std::ops::Range;

use bytes::Bytes;
use serde_json::{Value, json};

use super::super::route::Api;
use super::super::text::Completion;
use super::super::upload::Form;
use super::{AUDIO_TOKENS_PER_SECOND, AudioUsage, BYTES_PER_SECOND, WORDS_PER_SECOND};

/// Seconds of audio per `verbose_json` segment and subtitle.
pub const SEGMENT_SECONDS: u64 = 10;

/// A request the simulator refuses with a 400.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    /// What was wrong.
    pub message: String,
    /// The parameter at fault.
    pub param: &'static str,
}

fn invalid(message: impl Into<String>, param: &'static str) -> Invalid {
    Invalid {
        message: message.into(),
        param,
    }
}

/// `response_format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `{"text", "usage"}`.
    Json,
    /// The text alone.
    Text,
    /// With duration and segments.
    VerboseJson,
    /// SubRip subtitles.
    Srt,
    /// WebVTT subtitles.
    Vtt,
}

/// A transcription or translation, read from its form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TranscriptionAsk {
    /// Transcriptions or translations.
    pub api: Api,
    /// The model (the form's, else the deployment).
    pub model: String,
    /// Seconds of audio the file holds.
    pub seconds: u64,
    /// The `prompt` field.
    pub prompt: String,
    /// The answer's format.
    pub format: Format,
    /// Stream the answer (token-billed transcriptions only).
    pub stream: bool,
}

impl TranscriptionAsk {
    /// Reads the form; `deployment` names the model when the form does not.
    ///
    /// # Errors
    /// No model, no `file` or an empty one, an unknown `response_format`, or one the model
    /// does not offer.
    pub fn from_form(api: Api, form: &Form, deployment: Option<&str>) -> Result<Self, Invalid> {
        let model = form
            .field("model")
            .filter(|m| !m.is_empty())
            .or(deployment)
            .ok_or_else(|| invalid("you must provide a model parameter", "model"))?
            .to_owned();
        let file = form
            .files_named(&["file"])
            .next()
            .ok_or_else(|| invalid("Missing required parameter: 'file'.", "file"))?;
        if file.bytes == 0 {
            return Err(invalid(
                "Audio file is too short. Minimum audio length is 0.1 seconds.",
                "file",
            ));
        }
        let format = match form.field("response_format") {
            None | Some("" | "json") => Format::Json,
            Some("text") => Format::Text,
            Some("verbose_json") => Format::VerboseJson,
            Some("srt") => Format::Srt,
            Some("vtt") => Format::Vtt,
            Some(other) => {
                return Err(invalid(
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'json', 'text', 'srt', 'verbose_json' and 'vtt'."
                    ),
                    "response_format",
                ));
            }
        };
        let tokens = token_billed(&model);
        if tokens && !matches!(format, Format::Json | Format::Text) {
            return Err(invalid(
                format!(
                    "response_format '{}' is not compatible with model '{model}'. Use 'json' or 'text'.",
                    form.field("response_format").unwrap_or_default()
                ),
                "response_format",
            ));
        }
        let asked_stream = form
            .field("stream")
            .is_some_and(|s| s.eq_ignore_ascii_case("true"));
        Ok(Self {
            api,
            seconds: file.bytes.div_ceil(BYTES_PER_SECOND),
            prompt: form.field("prompt").unwrap_or_default().to_owned(),
            format,
            stream: asked_stream && tokens && api == Api::AudioTranscriptions,
            model,
        })
    }

    /// What it bills, answering `completion`; `count` counts a text's tokens.
    pub fn usage(&self, completion: &Completion, count: impl Fn(&str) -> u64) -> AudioUsage {
        if !token_billed(&self.model) {
            return AudioUsage {
                seconds: self.seconds,
                ..AudioUsage::default()
            };
        }
        AudioUsage {
            tokens: true,
            seconds: self.seconds,
            audio_tokens: AUDIO_TOKENS_PER_SECOND * self.seconds,
            text_tokens: if self.prompt.is_empty() {
                0
            } else {
                count(&self.prompt)
            },
            output_tokens: completion.tokens,
        }
    }
}

/// Whether `model` bills tokens (its name contains `transcribe`) rather than duration.
pub fn token_billed(model: &str) -> bool {
    model.to_ascii_lowercase().contains("transcribe")
}

/// The answer body and its content type.
pub fn render(
    ask: &TranscriptionAsk,
    completion: &Completion,
    usage: &AudioUsage,
) -> (Bytes, &'static str) {
    let transcribing = ask.api == Api::AudioTranscriptions;
    let json = |value: Value| (Bytes::from(value.to_string()), "application/json");
    let text = |text: String| (Bytes::from(text), "text/plain; charset=utf-8");
    match ask.format {
        Format::Json if transcribing => {
            json(json!({"text": completion.text, "usage": usage.json()}))
        }
        Format::Json => json(json!({"text": completion.text})),
        Format::Text => text(format!("{}\n", completion.text)),
        Format::VerboseJson => {
            let mut body = json!({
                "task": if transcribing { "transcribe" } else { "translate" },
                "language": "english",
                "duration": ask.seconds as f64,
                "text": completion.text,
                "segments": segments(ask.seconds, completion),
            });
            if transcribing {
                body["usage"] = usage.json();
            }
            json(body)
        }
        Format::Srt => text(subtitles(ask.seconds, completion, false)),
        Format::Vtt => text(subtitles(ask.seconds, completion, true)),
    }
}

/// One segment per [`SEGMENT_SECONDS`]: `(start, end, text, its word indexes)`.
fn spans(seconds: u64, completion: &Completion) -> Vec<(u64, u64, String, Range<usize>)> {
    let per_segment = (SEGMENT_SECONDS * WORDS_PER_SECOND) as usize;
    completion
        .deltas
        .chunks(per_segment)
        .enumerate()
        .map(|(index, words)| {
            let start = index as u64 * SEGMENT_SECONDS;
            let end = (start + SEGMENT_SECONDS).min(seconds).max(start);
            let first = index * per_segment;
            (start, end, words.concat(), first..first + words.len())
        })
        .collect()
}

fn segments(seconds: u64, completion: &Completion) -> Value {
    let segments: Vec<Value> = spans(seconds, completion)
        .into_iter()
        .enumerate()
        .map(|(id, (start, end, text, words))| {
            let tokens: Vec<usize> = words.map(|i| 50_365 + i).collect();
            json!({
                "id": id,
                "seek": start * 100,
                "start": start as f64,
                "end": end as f64,
                "text": text,
                "tokens": tokens,
                "temperature": 0.0,
                "avg_logprob": -0.25,
                "compression_ratio": 1.5,
                "no_speech_prob": 0.01
            })
        })
        .collect();
    Value::Array(segments)
}

fn subtitles(seconds: u64, completion: &Completion, vtt: bool) -> String {
    let stamp = |s: u64| {
        let sep = if vtt { '.' } else { ',' };
        format!("{:02}:{:02}:{:02}{sep}000", s / 3600, s / 60 % 60, s % 60)
    };
    let mut out = String::from(if vtt { "WEBVTT\n\n" } else { "" });
    for (index, (start, end, text, _)) in spans(seconds, completion).into_iter().enumerate() {
        if !vtt {
            out.push_str(&format!("{}\n", index + 1));
        }
        out.push_str(&format!(
            "{} --> {}\n{}\n\n",
            stamp(start),
            stamp(end),
            text.trim()
        ));
    }
    out
}
