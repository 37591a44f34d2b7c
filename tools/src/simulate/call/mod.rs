//! What one model request asks for, read from its route and JSON body: model, stream,
//! `stream_options.include_usage`, requested output length, the rate-limit cost, and for the
//! responses API `store`, `background`, `previous_response_id`, `conversation` and
//! `instructions`; once its prompt is counted, how its answer splits into visible and
//! reasoning tokens ([`Call::plan_reasoning`]) and the usage it reports ([`Call::usage`]).
//!
//! Input: a [`Route`] and the parsed body. Output: a [`Call`] (prompt, context and cached
//! tokens are filled in by the caller, which owns the caches and the store) or an
//! [`InvalidCall`] for a 400.

use serde_json::Value;

use super::config::{MAX_COMPLETION_TOKENS, ReasoningUsage};
use super::route::{Flavour, Route};
use super::tokens::{self, TokenUsage};
use crate::simulate::route::ModelApi;

/// One model request, as the simulated backend will serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Call {
    /// Response dialect.
    pub flavour: Flavour,
    /// ModelApi.
    pub operation: ModelApi,
    /// Model named in responses and used for counting: the body's `model`, else the
    /// deployment.
    pub model: String,
    /// A stream was requested and the operation streams.
    pub stream: bool,
    /// The body carried `stream_options`.
    pub stream_options: bool,
    /// A usage chunk (or, for responses, usage in `response.completed`) will be sent.
    pub include_usage: bool,
    /// `max_completion_tokens` / `max_tokens` / `max_output_tokens` as requested.
    pub max_tokens: Option<u64>,
    /// Visible completion length generated (deltas).
    pub length: u32,
    /// Hidden reasoning tokens the answer bills on top of the visible completion (0 unless
    /// a reasoning model answers a chat or responses call).
    pub reasoning_tokens: u64,
    /// Whether the reported completion count includes `reasoning_tokens`.
    pub reasoning_usage: ReasoningUsage,
    /// Billed prompt tokens (the previous response's context included).
    pub prompt_tokens: u64,
    /// Of `prompt_tokens`, those of the `previous_response_id` chain or of the conversation's
    /// items.
    pub context_tokens: u64,
    /// Of `prompt_tokens`, those served from the backend's prompt-prefix cache.
    pub cached_tokens: u64,
    /// `created` timestamp (Unix seconds).
    pub created: u64,
    /// Responses API: the response is kept (`store`, default true).
    pub store: bool,
    /// Responses API: `background: true`.
    pub background: bool,
    /// Responses API: `previous_response_id`.
    pub previous_response_id: Option<String>,
    /// Responses API: the id of `conversation` (given as the id or as `{"id": …}`).
    pub conversation: Option<String>,
    /// The revision of the conversation's items the call read (a prompt-cache key).
    pub conversation_revision: u64,
    /// Responses API: `instructions`.
    pub instructions: Option<String>,
}

/// A body the simulator refuses with a 400: the message and the parameter at fault.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InvalidCall {
    /// What was wrong and what to do.
    pub message: &'static str,
    /// The body field at fault.
    pub param: &'static str,
}

impl Call {
    /// Reads a call to `operation` from `route` (dialect and deployment) and `request`.
    ///
    /// # Errors
    /// No model named (OpenAI and Azure v1 paths need `model`); for the responses API a
    /// `previous_response_id` that is not a string, a `conversation` that is neither an id
    /// nor `{"id": …}`, both of them, or `background` without `store`.
    pub fn read(
        route: &Route,
        operation: ModelApi,
        request: &Value,
        default_length: u32,
        usage_in_stream: bool,
        created: u64,
    ) -> Result<Self, InvalidCall> {
        let body_model = request.get("model").and_then(Value::as_str);
        let model = body_model
            .or(route.deployment.as_deref())
            .filter(|m| !m.is_empty())
            .ok_or(InvalidCall {
                message: "you must provide a model parameter",
                param: "model",
            })?
            .to_owned();
        let stream = operation != ModelApi::Embeddings
            && request.get("stream").and_then(Value::as_bool) == Some(true);
        let stream_options = request.get("stream_options").is_some();
        let asked_usage = request
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            == Some(true);
        let include_usage =
            stream && (operation == ModelApi::Responses || (asked_usage && usage_in_stream));
        let max_tokens = ["max_completion_tokens", "max_tokens", "max_output_tokens"]
            .iter()
            .find_map(|key| request.get(key).and_then(Value::as_u64));
        let length = match (operation, max_tokens) {
            (ModelApi::Embeddings, _) => 0,
            (_, Some(max)) => max.clamp(1, u64::from(MAX_COMPLETION_TOKENS)) as u32,
            (_, None) => default_length,
        };
        let responses = operation == ModelApi::Responses;
        let store = responses && request.get("store").and_then(Value::as_bool) != Some(false);
        let background =
            responses && request.get("background").and_then(Value::as_bool) == Some(true);
        if background && !store {
            return Err(InvalidCall {
                message: "Background responses must be stored: set store to true (the default) or remove background.",
                param: "background",
            });
        }
        let (previous_response_id, conversation) = if responses {
            read_state(request)?
        } else {
            (None, None)
        };
        let instructions = request
            .get("instructions")
            .and_then(Value::as_str)
            .filter(|_| responses)
            .map(str::to_owned);
        Ok(Self {
            flavour: route.flavour,
            operation,
            model,
            stream,
            stream_options,
            include_usage,
            max_tokens,
            length,
            reasoning_tokens: 0,
            reasoning_usage: ReasoningUsage::Included,
            prompt_tokens: 0,
            context_tokens: 0,
            cached_tokens: 0,
            created,
            store,
            background,
            previous_response_id,
            conversation,
            conversation_revision: 0,
            instructions,
        })
    }

    /// Tokens the request counts against TPM: prompt + requested maximum (or the default
    /// completion length); embeddings count the prompt only.
    pub fn cost(&self) -> u64 {
        match self.operation {
            ModelApi::Embeddings => self.prompt_tokens,
            _ => self.prompt_tokens + self.max_tokens.unwrap_or(u64::from(self.length)),
        }
    }

    /// Splits the answer of a reasoning model (`reasoning`) of a chat or responses call into
    /// visible and reasoning tokens within the requested maximum (see
    /// [`tokens::plan_reasoning`]), and reports its usage in `shape`. Needs the prompt
    /// tokens counted.
    pub fn plan_reasoning(&mut self, reasoning: bool, shape: ReasoningUsage) {
        self.reasoning_usage = shape;
        let thinks = matches!(
            self.operation,
            ModelApi::ChatCompletions | ModelApi::Responses
        );
        if reasoning && thinks {
            (self.length, self.reasoning_tokens) =
                tokens::plan_reasoning(self.prompt_tokens, self.length, self.max_tokens);
        }
    }

    /// What the answer bills, with `visible` completion tokens generated.
    pub fn usage(&self, visible: u64) -> TokenUsage {
        TokenUsage {
            prompt: self.prompt_tokens,
            cached: self.cached_tokens,
            visible,
            reasoning: self.reasoning_tokens,
            shape: self.reasoning_usage,
        }
    }

    /// `length` when the completion (reasoning included) stopped at the requested maximum,
    /// else `stop`.
    pub fn finish_reason(&self) -> &'static str {
        if self.max_tokens == Some(u64::from(self.length) + self.reasoning_tokens) {
            "length"
        } else {
            "stop"
        }
    }
}

/// A responses create's state: `previous_response_id` and the `conversation` id.
fn read_state(request: &Value) -> Result<(Option<String>, Option<String>), InvalidCall> {
    let previous_response_id = match request.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            return Err(InvalidCall {
                message: "Invalid type for 'previous_response_id': expected a string.",
                param: "previous_response_id",
            });
        }
    };
    let conversation = match request.get("conversation") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Object(fields)) => match fields.get("id") {
            Some(Value::String(id)) => Some(id.clone()),
            _ => {
                return Err(InvalidCall {
                    message: "Missing required parameter: 'conversation.id'.",
                    param: "conversation.id",
                });
            }
        },
        Some(_) => {
            return Err(InvalidCall {
                message: "Invalid type for 'conversation': expected a conversation id or an object with an 'id'.",
                param: "conversation",
            });
        }
    };
    if previous_response_id.is_some() && conversation.is_some() {
        return Err(InvalidCall {
            message: "Mutually exclusive parameters: Ensure you are only providing one of: 'previous_response_id' or 'conversation'.",
            param: "previous_response_id",
        });
    }
    Ok((previous_response_id, conversation))
}

#[cfg(test)]
mod tests;
