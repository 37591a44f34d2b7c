//! A batch's input file, line by line: checked when the batch is created (how many requests,
//! which model), and run when it completes — each line answered as the same call to the
//! backend would be (prompt counted, reasoning planned, the deterministic completion; never
//! streamed, stored or cached), into the output and error files' JSONL.
//!
//! Output line: `{"id":"batch_req_…","custom_id","response":{"status_code":200,
//! "request_id","body":<the answer, usage included>},"error":null}`. A line that is not a
//! JSON object, or lacks `custom_id`, or has another `method` than POST, a `url` other than
//! the batch's endpoint or a `body` that is not an object goes to the error file as
//! `{"id","custom_id","response":null,"error":{"code","message"}}`; a body the call refuses
//! (no model, say) as `{"id","custom_id","response":{"status_code":400,"request_id",
//! "body":{"error":{…}}},"error":null}`. Both count as failed.

use std::fmt::Write as _;

use serde_json::{Value, json};

use super::super::backend::Backend;
use super::super::call::Call;
use super::super::payload;
use super::super::route::{Api, Flavour, ModelApi, Route, Target};
use super::super::text;
use super::super::tokens::TokenUsage;
use spillway_sidecar::usage::tokenizer;

/// The most requests one batch holds.
pub const MAX_LINES: u64 = 50_000;

/// The model call an endpoint such as `/v1/chat/completions` or `/chat/completions` makes.
pub fn endpoint(path: &str) -> Option<ModelApi> {
    let tail = path.strip_prefix("/v1").unwrap_or(path).strip_prefix('/')?;
    Api::from_path(tail)?.model()
}

/// Checks an input file: its request count and the model its first request names.
///
/// # Errors
/// No request, or more than [`MAX_LINES`].
pub fn validate(input: &[u8]) -> Result<(u64, Option<String>), String> {
    let mut total = 0;
    let mut model = None;
    for line in lines(input) {
        total += 1;
        if model.is_none() {
            model = serde_json::from_slice::<Value>(line)
                .ok()
                .and_then(|v| v.pointer("/body/model")?.as_str().map(str::to_owned));
        }
    }
    match total {
        0 => Err("The input file has no requests.".into()),
        n if n > MAX_LINES => Err(format!(
            "The input file has {n} requests; a batch takes at most {MAX_LINES}."
        )),
        n => Ok((n, model)),
    }
}

fn lines(input: &[u8]) -> impl Iterator<Item = &[u8]> {
    input
        .split(|b| *b == b'\n')
        .filter(|line| !line.trim_ascii().is_empty())
}

/// Tokens a batch billed, summed over its successful lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BatchUsage {
    /// Input tokens.
    pub input: u64,
    /// Of them, cached (always 0: batch lines skip the prompt cache).
    pub cached: u64,
    /// Output tokens, reasoning included.
    pub output: u64,
    /// Of them, reasoning.
    pub reasoning: u64,
}

impl BatchUsage {
    /// The batch's `usage` object.
    pub fn json(&self) -> Value {
        json!({
            "input_tokens": self.input,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.output,
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.input + self.output
        })
    }
}

/// What running a batch's lines gives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Results {
    /// The output file's JSONL.
    pub output: String,
    /// The error file's JSONL.
    pub errors: String,
    /// Lines answered.
    pub completed: u64,
    /// Lines failed.
    pub failed: u64,
    /// What the answered lines billed.
    pub usage: BatchUsage,
}

/// The results would not fit in the bytes the backend's files have left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooLarge;

/// Runs every line of `input` as a call to `api` in `flavour` on `backend`, stopping once
/// the results pass `room` bytes.
///
/// # Errors
/// [`TooLarge`] past `room`.
pub fn run(
    backend: &Backend,
    flavour: Flavour,
    api: ModelApi,
    input: &[u8],
    room: u64,
) -> Result<Results, TooLarge> {
    let mut results = Results::default();
    for (index, line) in lines(input).enumerate() {
        let id = text::object_id("batch_req_");
        match answer(backend, flavour, api, line) {
            Ok(Answered {
                custom_id,
                body,
                usage,
            }) => {
                results.completed += 1;
                results.usage.input += usage.prompt;
                results.usage.output += usage.completion();
                results.usage.reasoning += usage.reasoning;
                let _ = writeln!(
                    results.output,
                    "{{\"id\":\"{id}\",\"custom_id\":{custom_id},\"response\":{{\"status_code\":200,\"request_id\":\"{}\",\"body\":{body}}},\"error\":null}}",
                    text::request_id()
                );
            }
            Err(failure) => {
                results.failed += 1;
                let line = failure.line(&id, index + 1);
                let _ = writeln!(results.errors, "{line}");
            }
        }
        if (results.output.len() + results.errors.len()) as u64 > room {
            return Err(TooLarge);
        }
    }
    Ok(results)
}

/// Why one line failed.
enum Failure {
    /// The line itself is wrong: `(custom_id, code, message)`.
    Line(Value, &'static str, String),
    /// The call refused its body: `(custom_id, message, param)`.
    Call(Value, &'static str, &'static str),
}

impl Failure {
    fn line(&self, id: &str, number: usize) -> Value {
        match self {
            Self::Line(custom_id, code, message) => json!({
                "id": id, "custom_id": custom_id, "response": null,
                "error": {"code": code, "message": format!("Line {number}: {message}")}
            }),
            Self::Call(custom_id, message, param) => json!({
                "id": id, "custom_id": custom_id, "error": null,
                "response": {"status_code": 400, "request_id": text::request_id(), "body": {
                    "error": {"message": message, "type": "invalid_request_error",
                        "param": param, "code": null}
                }}
            }),
        }
    }
}

/// One line answered.
struct Answered {
    /// Its `custom_id`, as JSON.
    custom_id: String,
    /// The answer, as JSON.
    body: String,
    /// What it billed.
    usage: TokenUsage,
}

/// Answers one line.
fn answer(
    backend: &Backend,
    flavour: Flavour,
    api: ModelApi,
    line: &[u8],
) -> Result<Answered, Failure> {
    let request: Value = serde_json::from_slice(line)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            Failure::Line(
                Value::Null,
                "invalid_json_line",
                "not a JSON object.".into(),
            )
        })?;
    let custom_id = request.get("custom_id").cloned().unwrap_or(Value::Null);
    let wrong =
        |message: &str| Failure::Line(custom_id.clone(), "invalid_request", message.to_owned());
    if !custom_id.is_string() {
        return Err(wrong("custom_id must be a string."));
    }
    if request.get("method").is_some_and(|m| m != "POST") {
        return Err(wrong("method must be POST."));
    }
    let url = request
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if endpoint(url) != Some(api) {
        return Err(wrong("url must be the batch's endpoint."));
    }
    let body = request
        .get("body")
        .filter(|b| b.is_object())
        .ok_or_else(|| wrong("body must be a JSON object."))?;
    let route = Route {
        flavour,
        deployment: None,
        api: Api::Model(api),
        target: Target::Create,
        api_version: None,
    };
    let mut call = Call::read(&route, api, body, backend.completion_tokens, false, 0)
        .map_err(|invalid| Failure::Call(custom_id.clone(), invalid.message, invalid.param))?;
    if call.background || call.previous_response_id.is_some() || call.conversation.is_some() {
        return Err(wrong(
            "background, previous_response_id and conversation are not available in a batch.",
        ));
    }
    call.stream = false;
    call.store = false;
    call.created = backend.unix_seconds();
    call.prompt_tokens = tokenizer::count_prompt(&call.model, api.tokenizer(), body);
    call.plan_reasoning(
        backend.is_reasoning_model(&call.model),
        backend.reasoning_usage,
    );
    let completion = backend.shared.completions.get(&call.model, call.length);
    let usage = match api {
        ModelApi::Embeddings => call.usage(0),
        _ => call.usage(completion.tokens),
    };
    let answer = payload::success_body(&call, &completion, body, &payload::object_id(api));
    Ok(Answered {
        custom_id: custom_id.to_string(),
        body: String::from_utf8_lossy(&answer).into_owned(),
        usage,
    })
}
