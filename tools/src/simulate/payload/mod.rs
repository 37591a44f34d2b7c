//! Non-streaming response bodies and error bodies, shaped like OpenAI's and Azure's.
//!
//! Input: a [`Call`] and its generated [`Completion`] (or the embeddings inputs). Output:
//! JSON bytes (responses-API objects also as values, for the store). Azure flavour adds
//! `prompt_filter_results` and per-choice `content_filter_results`. Chat and responses usage
//! always carry the prompt-token details (`cached_tokens`) and the completion-token details
//! (`reasoning_tokens`), in the backend's reasoning shape ([`super::tokens`]); legacy
//! completions report totals only and embeddings prompt tokens only.

use bytes::Bytes;
use serde_json::{Value, json};

use super::call::Call;
use super::text::{self, Completion};
use crate::simulate::route::ModelApi;

/// Default embedding size when the request sets no `dimensions`.
pub const DEFAULT_DIMENSIONS: usize = 16;
/// Largest embedding the simulator returns.
pub const MAX_DIMENSIONS: usize = 3072;

/// The `system_fingerprint` every response carries.
pub const FINGERPRINT: &str = "fp_spillway_sim";

/// A new id for an answer of `operation`: `chatcmpl-…`, `cmpl-…`, `resp_…`, `emb-…`.
pub fn object_id(operation: ModelApi) -> String {
    let prefix = match operation {
        ModelApi::ChatCompletions => "chatcmpl-",
        ModelApi::Completions => "cmpl-",
        ModelApi::Responses => "resp_",
        ModelApi::Embeddings => "emb-",
    };
    text::object_id(prefix)
}

/// The body for a successful non-streaming call.
pub fn success_body(call: &Call, completion: &Completion, request: &Value, id: &str) -> Bytes {
    let value = match call.operation {
        ModelApi::ChatCompletions => chat(call, completion, id),
        ModelApi::Completions => completions(call, completion, id),
        ModelApi::Responses => response_object(call, "completed", Some(completion), id),
        ModelApi::Embeddings => embeddings(call, request),
    };
    Bytes::from(value.to_string())
}

/// Azure's per-choice content filter verdict (everything safe).
pub fn content_filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

/// Azure's prompt filter verdict.
pub fn prompt_filter_results() -> Value {
    let mut results = content_filter_results();
    results["jailbreak"] = json!({"filtered": false, "detected": false});
    json!([{"prompt_index": 0, "content_filter_results": results}])
}

fn chat(call: &Call, completion: &Completion, id: &str) -> Value {
    let mut choice = json!({
        "index": 0,
        "message": {
            "role": "assistant",
            "content": completion.text,
            "refusal": null,
            "annotations": []
        },
        "logprobs": null,
        "finish_reason": call.finish_reason()
    });
    let mut body = json!({
        "id": id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.model,
        "choices": [],
        "usage": call.usage(completion.tokens).chat(),
        "system_fingerprint": FINGERPRINT
    });
    if call.flavour.is_azure() {
        choice["content_filter_results"] = content_filter_results();
        body["prompt_filter_results"] = prompt_filter_results();
    }
    body["choices"] = json!([choice]);
    body
}

fn completions(call: &Call, completion: &Completion, id: &str) -> Value {
    let mut choice = json!({
        "text": completion.text,
        "index": 0,
        "logprobs": null,
        "finish_reason": call.finish_reason()
    });
    let mut body = json!({
        "id": id,
        "object": "text_completion",
        "created": call.created,
        "model": call.model,
        "choices": [],
        "usage": call.usage(completion.tokens).legacy(),
        "system_fingerprint": FINGERPRINT
    });
    if call.flavour.is_azure() {
        choice["content_filter_results"] = content_filter_results();
        body["prompt_filter_results"] = prompt_filter_results();
    }
    body["choices"] = json!([choice]);
    body
}

/// The responses-API `message` output item holding `text`.
pub fn output_message(message_id: &str, text: &str, status: &str) -> Value {
    json!({
        "id": message_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}]
    })
}

/// A responses-API `response` object with `status`; with a completion it has output and
/// usage, without (queued, in progress) neither. It echoes `background`, `store`,
/// `previous_response_id`, `instructions` and, when given, `conversation` as `{"id": …}`.
pub fn response_object(
    call: &Call,
    status: &str,
    completion: Option<&Completion>,
    id: &str,
) -> Value {
    let (output, usage) = match completion {
        Some(c) => (
            json!([output_message(&message_id(id), &c.text, "completed")]),
            call.usage(c.tokens).responses(),
        ),
        None => (json!([]), Value::Null),
    };
    let mut object = json!({
        "id": id,
        "object": "response",
        "created_at": call.created,
        "status": status,
        "background": call.background,
        "error": null,
        "incomplete_details": null,
        "instructions": call.instructions,
        "max_output_tokens": call.max_tokens,
        "metadata": {},
        "model": call.model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": call.previous_response_id,
        "store": call.store,
        "temperature": 1.0,
        "top_p": 1.0,
        "tool_choice": "auto",
        "tools": [],
        "text": {"format": {"type": "text"}},
        "truncation": "disabled",
        "usage": usage
    });
    if let Some(conversation) = &call.conversation {
        object["conversation"] = json!({ "id": conversation });
    }
    object
}

/// The id of the single output message of response `id`.
pub fn message_id(response_id: &str) -> String {
    format!("msg_{}", response_id.trim_start_matches("resp_"))
}

/// The inputs of an embeddings request as texts (token arrays become their numbers).
fn embedding_inputs(request: &Value) -> Vec<String> {
    match request.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_number) => {
            vec![Value::Array(items.clone()).to_string()]
        }
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn embeddings(call: &Call, request: &Value) -> Value {
    let dimensions = request
        .get("dimensions")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_DIMENSIONS, |d| {
            (d as usize).clamp(1, MAX_DIMENSIONS)
        });
    let base64 = request.get("encoding_format").and_then(Value::as_str) == Some("base64");
    let data: Vec<Value> = embedding_inputs(request)
        .iter()
        .enumerate()
        .map(|(index, input)| {
            let vector = text::embedding(input, dimensions);
            let embedding = if base64 {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                Value::String(text::base64(&bytes))
            } else {
                json!(vector)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    json!({
        "object": "list",
        "data": data,
        "model": call.model,
        "usage": {"prompt_tokens": call.prompt_tokens, "total_tokens": call.prompt_tokens}
    })
}

/// An OpenAI-shaped error: `{"error":{"message","type","param","code"}}`.
pub fn openai_error(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Bytes {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    Bytes::from(body.to_string())
}

/// An Azure-shaped error: `{"error":{"code","message"}}`.
pub fn azure_error(code: &str, message: &str) -> Bytes {
    Bytes::from(json!({"error": {"code": code, "message": message}}).to_string())
}

#[cfg(test)]
mod tests;
