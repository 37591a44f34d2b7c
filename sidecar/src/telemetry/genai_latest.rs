//! The client-side GenAI instruments of the latest (experimental) semantic conventions, used
//! instead of `gen_ai.client.token.usage` and `gen_ai.client.operation.duration` when
//! `OTEL_SEMCONV_STABILITY_OPT_IN` lists `gen_ai_latest_experimental`.
//!
//! Input: a record whose call reached a backend, the GenAI attributes `instruments` built for
//! it, whether usage came back, and the duration of the attempt that answered. Output: for
//! inference calls (chat, responses, text completions) the `gen_ai.client.inference.usage.*`
//! counters by `gen_ai.token.modality`, the `gen_ai.client.inference.operation.*` histograms
//! and `gen_ai.client.inference.duration`; for embeddings `gen_ai.client.embeddings.duration`
//! and `gen_ai.client.embeddings.operation.input_tokens`.
//!
//! The rules, from `gen-ai-token-metrics.md`, `client-inference.md` and
//! `client-embeddings.md` of open-telemetry/semantic-conventions-genai:
//! - every inference call that reached a backend is measured, failed ones included; when no
//!   usage came back, each usage counter gets a 0 with modality `unknown` and each per-call
//!   histogram a 0;
//! - modality: audio and image input as `audio` and `image`, audio output as `audio`, the rest
//!   as `text` (tokenizer estimates are text). `text` is always recorded, `audio` and `image`
//!   when the call had any; the cache-read, cache-write and reasoning counters always, as
//!   `text` (providers do not break them down by modality);
//! - the counters and the embeddings token histogram carry no `error.type` (the conventions
//!   define none on them); the duration and inference token histograms do;
//! - embeddings tokens only when usage came back (the conventions ask for no 0 there).

use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter};

use super::semconv::{self, attr};
use crate::usage::{Operation, Usage, UsageRecord};

/// `gen_ai.token.modality`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenModality {
    /// Text tokens, and tokens of no more specific modality.
    Text,
    /// Audio tokens.
    Audio,
    /// Image tokens.
    Image,
    /// No usage came back, so the modality is not known.
    Unknown,
}

impl TokenModality {
    /// The attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Audio => "audio",
            Self::Image => "image",
            Self::Unknown => "unknown",
        }
    }
}

/// One of the `gen_ai.client.inference.usage.*` counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UsageCounter {
    /// `…usage.input_tokens`, cached included.
    Input,
    /// `…usage.output_tokens`, reasoning included.
    Output,
    /// `…usage.cache_read.input_tokens`.
    CacheRead,
    /// `…usage.cache_write.input_tokens`.
    CacheWrite,
    /// `…usage.reasoning.output_tokens`.
    Reasoning,
}

/// The points one inference call adds to the usage counters: `usage` split by modality, or
/// a 0 of modality `unknown` on every counter when no usage came back (`None`).
pub fn usage_points(usage: Option<&Usage>) -> Vec<(UsageCounter, TokenModality, u64)> {
    use TokenModality::{Audio, Image, Text, Unknown};
    use UsageCounter::{CacheRead, CacheWrite, Input, Output, Reasoning};
    let Some(usage) = usage else {
        return [Input, Output, CacheRead, CacheWrite, Reasoning]
            .into_iter()
            .map(|counter| (counter, Unknown, 0))
            .collect();
    };
    // Each subset is cut to its total on its own: cached tokens may be audio, so the
    // disjoint billing classes of `Usage::by_type` would under-count a modality.
    let (input, output) = (usage.prompt_tokens, usage.completion_tokens);
    let audio_in = usage.audio_input_tokens.min(input);
    let image_in = usage.image_input_tokens.min(input - audio_in);
    let audio_out = usage.audio_output_tokens.min(output);
    let mut points = vec![
        (Input, Text, input - audio_in - image_in),
        (Input, Audio, audio_in),
        (Input, Image, image_in),
        (Output, Text, output - audio_out),
        (Output, Audio, audio_out),
    ];
    points.retain(|&(_, modality, count)| modality == Text || count > 0);
    points.extend([
        (CacheRead, Text, usage.cached_tokens.min(input)),
        (CacheWrite, Text, usage.cache_write_tokens.min(input)),
        (Reasoning, Text, usage.reasoning_tokens.min(output)),
    ]);
    points
}

/// The instruments of the latest conventions.
#[derive(Debug)]
pub struct LatestInstruments {
    input: Counter<u64>,
    output: Counter<u64>,
    cache_read: Counter<u64>,
    cache_write: Counter<u64>,
    reasoning: Counter<u64>,
    operation_input: Histogram<u64>,
    operation_output: Histogram<u64>,
    duration: Histogram<f64>,
    embeddings_input: Histogram<u64>,
    embeddings_duration: Histogram<f64>,
}

impl LatestInstruments {
    /// Creates the instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        let counter = |name: &'static str, help: &'static str| {
            meter
                .u64_counter(name)
                .with_unit("{token}")
                .with_description(help)
                .build()
        };
        let tokens = |name: &'static str, help: &'static str| {
            meter
                .u64_histogram(name)
                .with_unit("{token}")
                .with_description(help)
                .with_boundaries(semconv::TOKEN_BUCKETS.to_vec())
                .build()
        };
        let seconds = |name: &'static str, help: &'static str| {
            meter
                .f64_histogram(name)
                .with_unit("s")
                .with_description(help)
                .with_boundaries(semconv::DURATION_BUCKETS.to_vec())
                .build()
        };
        Self {
            input: counter(
                semconv::INFERENCE_USAGE_INPUT_TOKENS,
                "Input tokens of inference calls, cached tokens included, by modality.",
            ),
            output: counter(
                semconv::INFERENCE_USAGE_OUTPUT_TOKENS,
                "Output tokens of inference calls, reasoning tokens included, by modality.",
            ),
            cache_read: counter(
                semconv::INFERENCE_USAGE_CACHE_READ_INPUT_TOKENS,
                "Input tokens of inference calls served from the provider's prompt cache.",
            ),
            cache_write: counter(
                semconv::INFERENCE_USAGE_CACHE_WRITE_INPUT_TOKENS,
                "Input tokens of inference calls written to the provider's prompt cache.",
            ),
            reasoning: counter(
                semconv::INFERENCE_USAGE_REASONING_OUTPUT_TOKENS,
                "Output tokens of inference calls used for reasoning.",
            ),
            operation_input: tokens(
                semconv::INFERENCE_OPERATION_INPUT_TOKENS,
                "Input tokens per inference call.",
            ),
            operation_output: tokens(
                semconv::INFERENCE_OPERATION_OUTPUT_TOKENS,
                "Output tokens per inference call.",
            ),
            duration: seconds(
                semconv::INFERENCE_DURATION,
                "Duration of the backend inference call that served the request, from the start of its attempt to the last byte.",
            ),
            embeddings_input: tokens(
                semconv::EMBEDDINGS_OPERATION_INPUT_TOKENS,
                "Input tokens per embeddings call.",
            ),
            embeddings_duration: seconds(
                semconv::EMBEDDINGS_DURATION,
                "Duration of the backend embeddings call that served the request, from the start of its attempt to the last byte.",
            ),
        }
    }

    /// Records the call of `record` that reached a backend: `genai` are its GenAI attributes
    /// (with `error.type` on failures), `served` whether usage came back, `upstream` the
    /// duration of the attempt that answered.
    pub fn record(
        &self,
        record: &UsageRecord,
        genai: &[KeyValue],
        served: bool,
        upstream: Duration,
    ) {
        let seconds = upstream.as_secs_f64();
        let usage = served.then_some(&record.usage);
        let token_attributes: Vec<KeyValue> = genai
            .iter()
            .filter(|kv| kv.key.as_str() != attr::ERROR_TYPE)
            .cloned()
            .collect();
        if record.operation == Some(Operation::Embeddings) {
            self.embeddings_duration.record(seconds, genai);
            if let Some(usage) = usage {
                self.embeddings_input
                    .record(usage.prompt_tokens, &token_attributes);
            }
            return;
        }
        self.duration.record(seconds, genai);
        let (input, output) = usage.map_or((0, 0), |u| (u.prompt_tokens, u.completion_tokens));
        self.operation_input.record(input, genai);
        self.operation_output.record(output, genai);
        for (counter, modality, count) in usage_points(usage) {
            let mut attributes = token_attributes.clone();
            attributes.push(KeyValue::new(attr::TOKEN_MODALITY, modality.as_str()));
            self.counter(counter).add(count, &attributes);
        }
    }

    fn counter(&self, counter: UsageCounter) -> &Counter<u64> {
        match counter {
            UsageCounter::Input => &self.input,
            UsageCounter::Output => &self.output,
            UsageCounter::CacheRead => &self.cache_read,
            UsageCounter::CacheWrite => &self.cache_write,
            UsageCounter::Reasoning => &self.reasoning,
        }
    }
}
