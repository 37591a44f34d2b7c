//! Token usage: what a call consumed, learned from the backend's response or counted with
//! the model's tokenizer, and the one [`UsageRecord`] every client request ends with.
//!
//! - [`tokenizer`]: prompt and completion counting (tiktoken encodings, OpenAI's message
//!   overheads, image tiles).
//! - [`json`]: usage from a non-streaming JSON response.
//! - [`sse`]: incremental SSE scanning and the stream rewriter that learns usage and hides
//!   the usage-only chunk the client did not ask for.
//! - [`record`]: the per-request record and the sink that fans it out to consumers.

pub mod json;
pub mod record;
pub mod sse;
pub mod tokenizer;
pub mod totals;

pub use spillway_crds::billing::TokenType;

pub use record::{ErrorType, GatewayError, GatewayErrorKind, UsageRecord, UsageSink};

/// Token counts of one call: two totals and their subsets by type, as the provider bills them.
///
/// `prompt_tokens` and `completion_tokens` are the totals every backend reports (reasoning
/// included in the completion, whichever way the backend reported it: see
/// [`json::response_usage`]). The other fields are subsets of one of them, never larger than
/// it ([`Usage::normalised`] enforces that): cached, cache-write, audio and image input of
/// the prompt; reasoning and audio output of the completion. [`Usage::by_type`] splits the
/// totals into disjoint billing classes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Input tokens (`prompt_tokens` / `input_tokens`).
    pub prompt_tokens: u64,
    /// Output tokens (`completion_tokens` / `output_tokens`), reasoning included.
    pub completion_tokens: u64,
    /// Of the input, read from the prompt cache (`*_tokens_details.cached_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cached_tokens: u64,
    /// Of the input, written to the prompt cache (`cache_write_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cache_write_tokens: u64,
    /// Of the input, audio (`prompt_tokens_details.audio_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub audio_input_tokens: u64,
    /// Of the input, image (`input_tokens_details.image_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub image_input_tokens: u64,
    /// Of the output, reasoning (`*_tokens_details.reasoning_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reasoning_tokens: u64,
    /// Of the output, audio (`completion_tokens_details.audio_tokens`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub audio_output_tokens: u64,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl Usage {
    /// Only totals, as the tokenizer fallback counts them.
    pub fn totals(prompt_tokens: u64, completion_tokens: u64) -> Self {
        Self {
            prompt_tokens,
            completion_tokens,
            ..Self::default()
        }
    }

    /// Prompt plus completion.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }

    /// The same usage with every subset cut to what its total leaves: input subsets in the
    /// order cached, cache-write, audio, image share the prompt; reasoning, then audio share
    /// the completion. A backend that reports more cached tokens than prompt tokens cannot
    /// make a bill larger than its totals.
    #[must_use]
    pub fn normalised(self) -> Self {
        let mut left = self.prompt_tokens;
        let mut take = |n: u64| {
            let n = n.min(left);
            left -= n;
            n
        };
        let cached_tokens = take(self.cached_tokens);
        let cache_write_tokens = take(self.cache_write_tokens);
        let audio_input_tokens = take(self.audio_input_tokens);
        let image_input_tokens = take(self.image_input_tokens);
        let reasoning_tokens = self.reasoning_tokens.min(self.completion_tokens);
        let audio_output_tokens = self
            .audio_output_tokens
            .min(self.completion_tokens - reasoning_tokens);
        Self {
            cached_tokens,
            cache_write_tokens,
            audio_input_tokens,
            image_input_tokens,
            reasoning_tokens,
            audio_output_tokens,
            ..self
        }
    }

    /// The tokens in each billing class; the classes are disjoint and sum to
    /// [`total`](Self::total) (for a [`normalised`](Self::normalised) usage).
    pub fn by_type(&self) -> [(TokenType, u64); 8] {
        let u = self.normalised();
        let input = u.prompt_tokens
            - u.cached_tokens
            - u.cache_write_tokens
            - u.audio_input_tokens
            - u.image_input_tokens;
        let output = u.completion_tokens - u.reasoning_tokens - u.audio_output_tokens;
        [
            (TokenType::Input, input),
            (TokenType::CachedInput, u.cached_tokens),
            (TokenType::CacheWriteInput, u.cache_write_tokens),
            (TokenType::AudioInput, u.audio_input_tokens),
            (TokenType::ImageInput, u.image_input_tokens),
            (TokenType::Output, output),
            (TokenType::ReasoningOutput, u.reasoning_tokens),
            (TokenType::AudioOutput, u.audio_output_tokens),
        ]
    }
}

/// The API operation of a call, as named in OpenAI paths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// `chat/completions`
    ChatCompletions,
    /// `completions`
    Completions,
    /// `embeddings`
    Embeddings,
    /// `responses`
    Responses,
}

impl Operation {
    /// The path segment(s) after the deployment or `/v1`.
    pub fn path(self) -> &'static str {
        match self {
            Self::ChatCompletions => "chat/completions",
            Self::Completions => "completions",
            Self::Embeddings => "embeddings",
            Self::Responses => "responses",
        }
    }

    /// Parses a path tail such as `chat/completions`.
    pub fn from_path(tail: &str) -> Option<Self> {
        match tail.trim_end_matches('/') {
            "chat/completions" => Some(Self::ChatCompletions),
            "completions" => Some(Self::Completions),
            "embeddings" => Some(Self::Embeddings),
            "responses" => Some(Self::Responses),
            _ => None,
        }
    }

    /// `gen_ai.operation.name` of the OpenTelemetry GenAI conventions.
    pub fn semconv_name(self) -> &'static str {
        match self {
            Self::ChatCompletions | Self::Responses => "chat",
            Self::Completions => "text_completion",
            Self::Embeddings => "embeddings",
        }
    }
}
