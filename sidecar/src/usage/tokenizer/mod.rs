//! Counting tokens with the model's tokenizer, for when a backend reports no usage.
//!
//! Encodings come from tiktoken-rs (bundled BPE files, loaded on first use): `o200k_base` for
//! gpt-4o, gpt-4.1, gpt-5 and the o-series, `cl100k_base` for gpt-4, gpt-3.5 and the
//! text-embedding models. Chat prompts follow OpenAI's published accounting: 3 tokens per
//! message, 1 more for a `name`, 3 to prime the reply; image parts use the tile formula
//! (85 base + 170 per 512-px tile after scaling, 85 for `detail: low`).

use serde_json::Value;
use tiktoken_rs::CoreBPE;

use super::Operation;

mod image;

pub use image::image_tokens;

/// A tiktoken encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// gpt-4o, gpt-4.1, gpt-5, o1/o3/o4 and unknown (newer) models.
    O200k,
    /// gpt-4, gpt-3.5(-turbo), text-embedding-*.
    Cl100k,
}

/// The encoding of `model`, a model or deployment name (`gpt-35-turbo` Azure spelling too).
pub fn encoding_for_model(model: &str) -> Encoding {
    let m = model.to_ascii_lowercase();
    let cl100k = (m.starts_with("gpt-4") && !m.starts_with("gpt-4o") && !m.starts_with("gpt-4.1"))
        || m.starts_with("gpt-3.5")
        || m.starts_with("gpt-35")
        || m.starts_with("text-embedding-");
    if cl100k {
        Encoding::Cl100k
    } else {
        Encoding::O200k
    }
}

fn bpe(encoding: Encoding) -> &'static CoreBPE {
    match encoding {
        Encoding::O200k => tiktoken_rs::o200k_base_singleton(),
        Encoding::Cl100k => tiktoken_rs::cl100k_base_singleton(),
    }
}

/// Tokens of plain text under `model`'s encoding.
pub fn count_text(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    bpe(encoding_for_model(model)).encode_ordinary(text).len() as u64
}

/// Prompt tokens of a request body for `operation`, as the backend would bill them.
pub fn count_prompt(model: &str, operation: Operation, request: &Value) -> u64 {
    match operation {
        Operation::ChatCompletions => count_messages(model, request.get("messages")),
        Operation::Responses => count_responses_input(model, request),
        Operation::Completions => count_inputs(model, request.get("prompt")),
        Operation::Embeddings => count_inputs(model, request.get("input")),
    }
}

const PER_MESSAGE: u64 = 3;
const PER_NAME: u64 = 1;
const REPLY_PRIMING: u64 = 3;

fn count_messages(model: &str, messages: Option<&Value>) -> u64 {
    let Some(messages) = messages.and_then(Value::as_array) else {
        return 0;
    };
    let mut total = REPLY_PRIMING;
    for message in messages {
        total += PER_MESSAGE;
        let Some(fields) = message.as_object() else {
            continue;
        };
        for (key, value) in fields {
            total += match (key.as_str(), value) {
                ("content", content) => count_content(model, content),
                ("name", Value::String(s)) => PER_NAME + count_text(model, s),
                (_, Value::String(s)) => count_text(model, s),
                ("tool_calls" | "function_call", other) => count_text(model, &other.to_string()),
                _ => 0,
            };
        }
    }
    total
}

/// Message content: a string, or an array of parts (`text`, `image_url`, `input_text`, …).
fn count_content(model: &str, content: &Value) -> u64 {
    match content {
        Value::String(s) => count_text(model, s),
        Value::Array(parts) => parts.iter().map(|part| count_part(model, part)).sum(),
        _ => 0,
    }
}

fn count_part(model: &str, part: &Value) -> u64 {
    if let Some(text) = part.get("text").and_then(Value::as_str) {
        return count_text(model, text);
    }
    let image = part
        .get("image_url")
        .map(|img| (img.get("url").or(Some(img)), img.get("detail")));
    match image {
        Some((url, detail)) => image_tokens(
            url.and_then(Value::as_str).unwrap_or(""),
            detail.and_then(Value::as_str).unwrap_or("auto"),
        ),
        None => 0,
    }
}

fn count_responses_input(model: &str, request: &Value) -> u64 {
    let instructions = request
        .get("instructions")
        .and_then(Value::as_str)
        .map_or(0, |s| count_text(model, s));
    let input = match request.get("input") {
        Some(Value::String(s)) => count_text(model, s) + PER_MESSAGE + REPLY_PRIMING,
        Some(items @ Value::Array(_)) => count_messages(model, Some(items)),
        _ => 0,
    };
    instructions + input
}

/// `prompt` / `input`: a string, an array of strings, or pre-tokenised arrays of integers.
fn count_inputs(model: &str, input: Option<&Value>) -> u64 {
    match input {
        Some(Value::String(s)) => count_text(model, s),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => count_text(model, s),
                Value::Array(tokens) => tokens.len() as u64,
                Value::Number(_) => 1,
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn picks_encodings_by_model_family() {
        for m in [
            "gpt-4o",
            "gpt-4o-mini",
            "o3-mini",
            "gpt-4.1",
            "gpt-5",
            "my-custom",
        ] {
            assert_eq!(encoding_for_model(m), Encoding::O200k, "{m}");
        }
        for m in [
            "gpt-4",
            "gpt-4-turbo",
            "gpt-35-turbo",
            "gpt-3.5-turbo",
            "text-embedding-3-small",
        ] {
            assert_eq!(encoding_for_model(m), Encoding::Cl100k, "{m}");
        }
    }

    #[test]
    fn counts_text_with_known_values() {
        // Reference values from OpenAI's tokenizer for these encodings.
        assert_eq!(count_text("gpt-4o", "hello world"), 2);
        assert_eq!(count_text("gpt-4", "hello world"), 2);
        assert_eq!(count_text("gpt-4o", ""), 0);
    }

    #[test]
    fn chat_prompt_follows_openai_accounting() {
        // OpenAI cookbook example: these two messages are 3+3 per message, content and role
        // tokens, 1 for the name, and 3 for reply priming.
        let request = json!({"messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "name": "bob", "content": "hello world"}
        ]});
        let expected = 3
            + 3
            + count_text("gpt-4o", "system")
            + count_text("gpt-4o", "You are a helpful assistant.")
            + 3
            + count_text("gpt-4o", "user")
            + 1
            + count_text("gpt-4o", "bob")
            + count_text("gpt-4o", "hello world");
        assert_eq!(
            count_prompt("gpt-4o", Operation::ChatCompletions, &request),
            expected
        );
    }

    #[test]
    fn content_parts_and_images_count() {
        let text_only = json!({"messages": [{"role": "user", "content": "describe"}]});
        let with_parts = json!({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "describe"},
            {"type": "image_url", "image_url": {"url": "https://x/cat.png", "detail": "low"}}
        ]}]});
        let base = count_prompt("gpt-4o", Operation::ChatCompletions, &text_only);
        assert_eq!(
            count_prompt("gpt-4o", Operation::ChatCompletions, &with_parts),
            base + 85
        );
    }

    #[test]
    fn completions_embeddings_and_responses_inputs() {
        assert_eq!(
            count_prompt(
                "gpt-35-turbo-instruct",
                Operation::Completions,
                &json!({"prompt": "hello world"})
            ),
            2
        );
        assert_eq!(
            count_prompt(
                "text-embedding-3-small",
                Operation::Embeddings,
                &json!({"input": ["hello world", "hello"]})
            ),
            3
        );
        assert_eq!(
            count_prompt(
                "text-embedding-3-small",
                Operation::Embeddings,
                &json!({"input": [[1, 2, 3]]})
            ),
            3
        );
        assert_eq!(
            count_prompt(
                "gpt-4o",
                Operation::Responses,
                &json!({"input": "hello world"})
            ),
            2 + 6
        );
        assert_eq!(
            count_prompt(
                "gpt-4o",
                Operation::ChatCompletions,
                &json!({"messages": "nope"})
            ),
            0
        );
    }
}
