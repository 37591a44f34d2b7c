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

pub use record::{ErrorType, GatewayError, GatewayErrorKind, UsageRecord, UsageSink};

/// Token counts of one call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Input tokens (`prompt_tokens` / `input_tokens`).
    pub prompt_tokens: u64,
    /// Output tokens (`completion_tokens` / `output_tokens`).
    pub completion_tokens: u64,
}

impl Usage {
    /// Prompt plus completion.
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
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
