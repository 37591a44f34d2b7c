//! The SSE events of a streamed response, byte for byte as OpenAI / Azure send them.
//!
//! Input: a [`Call`], its [`Completion`] and a response id. Output: the ordered events, each
//! marked with the completion delta it carries (so the sender can pace deltas and count what
//! was sent). Chat and completions: `data: {json}\n\n` per chunk and `data: [DONE]\n\n`;
//! Azure adds a first `"choices":[]` chunk with `prompt_filter_results` and
//! `content_filter_results` on choices; with usage requested every chunk has `"usage":null`
//! and an extra final `"choices":[]` chunk carries `usage`. Responses: `event: <type>` +
//! `data:` events ending with `response.completed`, which holds the usage.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Value, json};

use super::call::Call;
use super::payload::{self, FINGERPRINT};
use super::text::Completion;
use crate::usage::Operation;

/// One SSE event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SseEvent {
    /// The exact bytes, ending in a blank line.
    pub bytes: Bytes,
    /// The completion text this event delivers, if any.
    pub delta: Option<&'static str>,
}

impl SseEvent {
    fn control(bytes: impl Into<Bytes>) -> Self {
        Self {
            bytes: bytes.into(),
            delta: None,
        }
    }
}

/// The bytes a `malformedSse` fault inserts: a line that is no SSE field and an event whose
/// JSON is cut off.
pub const MALFORMED_EVENT: &str = "%%% this line is not server-sent events %%%\ndata: {\"id\":\"broken\",\"choices\":[{\"delta\":{\"content\":\"unterminated\n\n";

/// All events of the stream, with [`MALFORMED_EVENT`] inserted after `malformed_after`
/// events when set.
pub fn events(
    call: &Call,
    completion: &Completion,
    id: &str,
    malformed_after: Option<u32>,
) -> Vec<SseEvent> {
    let mut events = match call.operation {
        Operation::Responses => responses_events(call, completion, id),
        _ => chunk_events(call, completion, id),
    };
    if let Some(after) = malformed_after {
        let at = (after as usize).min(events.len());
        events.insert(at, SseEvent::control(MALFORMED_EVENT));
    }
    events
}

fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| String::from("\"\""))
}

fn azure_filters() -> &'static str {
    static FILTERS: OnceLock<String> = OnceLock::new();
    FILTERS.get_or_init(|| payload::content_filter_results().to_string())
}

/// `data: {…"choices":[` … `]…}\n\n` around a choice.
struct ChunkFrame {
    head: String,
    tail: &'static str,
}

impl ChunkFrame {
    fn new(call: &Call, id: &str, object: &str) -> Self {
        let head = format!(
            "data: {{\"id\":{},\"object\":\"{object}\",\"created\":{},\"model\":{},\"system_fingerprint\":\"{FINGERPRINT}\",\"choices\":[",
            json_string(id),
            call.created,
            json_string(&call.model),
        );
        let tail = if call.include_usage {
            "],\"usage\":null}\n\n"
        } else {
            "]}\n\n"
        };
        Self { head, tail }
    }

    fn event(&self, choice: &str, delta: Option<&'static str>) -> SseEvent {
        let mut out = String::with_capacity(self.head.len() + choice.len() + self.tail.len());
        out.push_str(&self.head);
        out.push_str(choice);
        out.push_str(self.tail);
        SseEvent {
            bytes: Bytes::from(out),
            delta,
        }
    }

    fn usage(&self, usage: &Value) -> SseEvent {
        SseEvent::control(format!("{}],\"usage\":{usage}}}\n\n", self.head))
    }
}

fn chunk_events(call: &Call, completion: &Completion, id: &str) -> Vec<SseEvent> {
    let azure = call.flavour.is_azure();
    let chat = call.operation == Operation::ChatCompletions;
    let object = if chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let frame = ChunkFrame::new(call, id, object);
    let empty_filters = if azure {
        ",\"content_filter_results\":{}"
    } else {
        ""
    };
    let delta_filters = if azure {
        format!(",\"content_filter_results\":{}", azure_filters())
    } else {
        String::new()
    };
    let mut events = Vec::with_capacity(completion.deltas.len() + 5);
    if azure {
        let usage = if call.include_usage {
            ",\"usage\":null"
        } else {
            ""
        };
        events.push(SseEvent::control(format!(
            "data: {{\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":{}{usage}}}\n\n",
            payload::prompt_filter_results()
        )));
    }
    if chat {
        events.push(frame.event(
            &format!("{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null{empty_filters}}}"),
            None,
        ));
    }
    for delta in &completion.deltas {
        let choice = if chat {
            format!(
                "{{\"index\":0,\"delta\":{{\"content\":{}}},\"logprobs\":null,\"finish_reason\":null{delta_filters}}}",
                json_string(delta)
            )
        } else {
            format!(
                "{{\"text\":{},\"index\":0,\"logprobs\":null,\"finish_reason\":null{delta_filters}}}",
                json_string(delta)
            )
        };
        events.push(frame.event(&choice, Some(delta)));
    }
    let reason = call.finish_reason();
    let last = if chat {
        format!(
            "{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"{reason}\"{empty_filters}}}"
        )
    } else {
        format!(
            "{{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"{reason}\"{empty_filters}}}"
        )
    };
    events.push(frame.event(&last, None));
    if call.include_usage {
        let usage = if chat {
            payload::chat_usage(call.prompt_tokens, completion.tokens)
        } else {
            json!({
                "prompt_tokens": call.prompt_tokens,
                "completion_tokens": completion.tokens,
                "total_tokens": call.prompt_tokens + completion.tokens
            })
        };
        events.push(frame.usage(&usage));
    }
    events.push(SseEvent::control("data: [DONE]\n\n"));
    events
}

fn named(kind: &str, data: &Value) -> SseEvent {
    SseEvent::control(format!("event: {kind}\ndata: {data}\n\n"))
}

fn responses_events(call: &Call, completion: &Completion, id: &str) -> Vec<SseEvent> {
    let item_id = payload::message_id(id);
    let mut seq = 0u64;
    let mut next = || {
        seq += 1;
        seq - 1
    };
    let mut events = Vec::with_capacity(completion.deltas.len() + 9);
    let in_progress = payload::response_object(call, "in_progress", None, id);
    for kind in ["response.created", "response.in_progress"] {
        let data = json!({"type": kind, "sequence_number": next(), "response": in_progress});
        events.push(named(kind, &data));
    }
    let item = |status: &str, text: &str| {
        let mut item = payload::output_message(&item_id, text, status);
        if status == "in_progress" {
            item["content"] = json!([]);
        }
        item
    };
    let location = json!({"item_id": item_id, "output_index": 0, "content_index": 0});
    let with_location = |mut v: Value| {
        if let (Some(target), Some(source)) = (v.as_object_mut(), location.as_object()) {
            target.extend(source.clone());
        }
        v
    };
    events.push(named(
        "response.output_item.added",
        &json!({"type": "response.output_item.added", "sequence_number": next(), "output_index": 0, "item": item("in_progress", "")}),
    ));
    let empty_part = json!({"type": "output_text", "text": "", "annotations": []});
    events.push(named(
        "response.content_part.added",
        &with_location(json!({"type": "response.content_part.added", "sequence_number": next(), "part": empty_part})),
    ));
    let item_json = json_string(&item_id);
    for delta in &completion.deltas {
        let bytes = format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{},\"item_id\":{item_json},\"output_index\":0,\"content_index\":0,\"delta\":{},\"logprobs\":[]}}\n\n",
            next(),
            json_string(delta)
        );
        events.push(SseEvent {
            bytes: Bytes::from(bytes),
            delta: Some(delta),
        });
    }
    let text = &completion.text;
    events.push(named(
        "response.output_text.done",
        &with_location(json!({"type": "response.output_text.done", "sequence_number": next(), "text": text, "logprobs": []})),
    ));
    let part = json!({"type": "output_text", "text": text, "annotations": []});
    events.push(named(
        "response.content_part.done",
        &with_location(
            json!({"type": "response.content_part.done", "sequence_number": next(), "part": part}),
        ),
    ));
    events.push(named(
        "response.output_item.done",
        &json!({"type": "response.output_item.done", "sequence_number": next(), "output_index": 0, "item": item("completed", text)}),
    ));
    let done = payload::response_object(call, "completed", Some(completion), id);
    events.push(named(
        "response.completed",
        &json!({"type": "response.completed", "sequence_number": next(), "response": done}),
    ));
    events
}

#[cfg(test)]
mod tests;
