//! Usage from a non-streaming JSON response.
//!
//! Input: the complete response body of a chat/completions, completions, embeddings or
//! responses call. Output: the backend-reported [`Usage`] and model ([`response_usage`]), and
//! the generated text to count with the tokenizer when the backend reported no usage
//! ([`completion_text`]). Both read the body in one borrowed pass, skip every field they do
//! not need without allocating it, tolerate fields of unexpected types, and never panic.

use serde::de::DeserializeSeed;

use super::Usage;

mod literal;
pub(crate) mod shape;
pub(crate) mod text;

use shape::{Lenient, ResponseFacts, TokenFields};
use text::CompletionText;

/// What a JSON response says about itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResponseUsage {
    /// `usage.prompt_tokens`/`completion_tokens` (chat, completions, embeddings) or
    /// `usage.input_tokens`/`output_tokens` (responses); `None` when the body has no usage
    /// object with a count in it. A count that is absent (embeddings have no completion
    /// tokens) is 0.
    pub usage: Option<Usage>,
    /// The top-level `model`, when present and non-empty.
    pub model: Option<String>,
}

/// Usage and model of a JSON response body.
///
/// Returns `None` when the body is not a JSON object (malformed, truncated, not JSON at all);
/// returns `Some` with `usage: None` for a well-formed response without usage (an error body,
/// or a backend that reports none).
pub fn response_usage(body: &[u8]) -> Option<ResponseUsage> {
    let mut model = None;
    let mut tokens = TokenFields::default();
    let mut object = false;
    let facts = ResponseFacts {
        model: &mut model,
        tokens: &mut tokens,
        object: &mut object,
    };
    let mut de = serde_json::Deserializer::from_slice(strip_bom(body));
    Lenient(facts).deserialize(&mut de).ok()?;
    de.end().ok()?;
    object.then(|| ResponseUsage {
        usage: tokens.usage(),
        model,
    })
}

/// The generated text of a JSON response body, for counting with the tokenizer.
///
/// Collects `choices[].message.content` (string or parts), `.refusal`, `.reasoning_content`,
/// tool-call and function-call names and arguments, `choices[].text` (completions), and the
/// responses API `output[]` message text, refusals, function-call names/arguments and custom
/// tool inputs, concatenated in document order. A malformed or truncated body yields the text
/// read before the fault; an embeddings response yields an empty string.
pub fn completion_text(body: &[u8]) -> String {
    let mut text = String::new();
    let mut de = serde_json::Deserializer::from_slice(strip_bom(body));
    // A fault ends the walk; what was read before it is still generated text.
    let _ = Lenient(CompletionText(&mut text)).deserialize(&mut de);
    text
}

/// The body without a leading UTF-8 byte order mark.
pub(crate) fn strip_bom(body: &[u8]) -> &[u8] {
    body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body)
}

#[cfg(test)]
mod tests;
