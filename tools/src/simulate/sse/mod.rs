//! The SSE events of a streamed response, byte for byte as OpenAI / Azure send them.
//!
//! Input: a [`Call`], its [`Completion`] and a response id. Output: the ordered events, each
//! marked with the completion delta it carries (so the sender can pace deltas and count what
//! was sent). Chat and completions: `data: {json}\n\n` per chunk and `data: [DONE]\n\n`;
//! Azure adds a first `"choices":[]` chunk with `prompt_filter_results` and
//! `content_filter_results` on choices; with usage requested every chunk has `"usage":null`
//! and an extra final `"choices":[]` chunk carries `usage`. Responses: `event: <type>` +
//! `data:` events ending with `response.completed`, which holds the usage; a background
//! response's `response.created` says `queued`. Usage is the JSON answer's, details
//! included; a reasoning model's reasoning is never streamed, only counted in the usage.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::{Value, json};

use super::call::Call;
use super::faults::FaultAction;
use super::payload::{self, FINGERPRINT};
use super::text::Completion;
use crate::simulate::route::ModelApi;

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

    /// `data: {json}` and a blank line, delivering `delta` (paced when `Some`).
    pub fn data(json: &Value, delta: Option<&'static str>) -> Self {
        Self {
            bytes: Bytes::from(format!("data: {json}\n\n")),
            delta,
        }
    }

    /// A chunk of a binary body, paced like a delta but carrying no text.
    pub fn paced(bytes: Bytes) -> Self {
        Self {
            bytes,
            delta: Some(""),
        }
    }
}

/// What a mid-stream fault does to a stream: insert [`MALFORMED_EVENT`] after that many
/// events, and reset the connection after that many.
pub fn mid_stream(fault: Option<&FaultAction>) -> (Option<u32>, Option<usize>) {
    match fault {
        Some(FaultAction::MalformedSse { after_chunks }) => (Some(*after_chunks), None),
        Some(FaultAction::ResetMidStream { after_chunks }) => (None, Some(*after_chunks as usize)),
        _ => (None, None),
    }
}

/// Inserts [`MALFORMED_EVENT`] after `after` events, when set.
pub fn insert_malformed(events: &mut Vec<SseEvent>, after: Option<u32>) {
    if let Some(after) = after {
        let at = (after as usize).min(events.len());
        events.insert(at, SseEvent::control(MALFORMED_EVENT));
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
        ModelApi::Responses => responses_events(call, completion, id),
        _ => chunk_events(call, completion, id),
    };
    insert_malformed(&mut events, malformed_after);
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

/// The `choices[0]` of each chunk kind, for chat or completions, OpenAI or Azure.
struct Choices {
    chat: bool,
    empty_filters: &'static str,
    delta_filters: String,
}

impl Choices {
    fn new(call: &Call) -> Self {
        let azure = call.flavour.is_azure();
        Self {
            chat: call.operation == ModelApi::ChatCompletions,
            empty_filters: if azure {
                ",\"content_filter_results\":{}"
            } else {
                ""
            },
            delta_filters: if azure {
                format!(",\"content_filter_results\":{}", azure_filters())
            } else {
                String::new()
            },
        }
    }

    fn role(&self) -> String {
        let filters = self.empty_filters;
        format!(
            "{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null}},\"logprobs\":null,\"finish_reason\":null{filters}}}"
        )
    }

    fn delta(&self, text: &str) -> String {
        let (text, filters) = (json_string(text), &self.delta_filters);
        if self.chat {
            format!(
                "{{\"index\":0,\"delta\":{{\"content\":{text}}},\"logprobs\":null,\"finish_reason\":null{filters}}}"
            )
        } else {
            format!(
                "{{\"text\":{text},\"index\":0,\"logprobs\":null,\"finish_reason\":null{filters}}}"
            )
        }
    }

    fn finish(&self, reason: &str) -> String {
        let filters = self.empty_filters;
        if self.chat {
            format!(
                "{{\"index\":0,\"delta\":{{}},\"logprobs\":null,\"finish_reason\":\"{reason}\"{filters}}}"
            )
        } else {
            format!(
                "{{\"text\":\"\",\"index\":0,\"logprobs\":null,\"finish_reason\":\"{reason}\"{filters}}}"
            )
        }
    }
}

/// Azure's first chunk: no choices, the prompt filter verdict.
fn azure_prompt_filter_chunk(include_usage: bool) -> SseEvent {
    let usage = if include_usage { ",\"usage\":null" } else { "" };
    SseEvent::control(format!(
        "data: {{\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\",\"prompt_filter_results\":{}{usage}}}\n\n",
        payload::prompt_filter_results()
    ))
}

fn chunk_events(call: &Call, completion: &Completion, id: &str) -> Vec<SseEvent> {
    let choices = Choices::new(call);
    let object = if choices.chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let frame = ChunkFrame::new(call, id, object);
    let mut events = Vec::with_capacity(completion.deltas.len() + 5);
    if call.flavour.is_azure() {
        events.push(azure_prompt_filter_chunk(call.include_usage));
    }
    if choices.chat {
        events.push(frame.event(&choices.role(), None));
    }
    for delta in &completion.deltas {
        events.push(frame.event(&choices.delta(delta), Some(delta)));
    }
    events.push(frame.event(&choices.finish(call.finish_reason()), None));
    if call.include_usage {
        let usage = call.usage(completion.tokens);
        let usage = if choices.chat {
            usage.chat()
        } else {
            usage.legacy()
        };
        events.push(frame.usage(&usage));
    }
    events.push(SseEvent::control("data: [DONE]\n\n"));
    events
}

/// Builds the named events of a responses-API stream, numbering them.
struct ResponsesStream<'a> {
    call: &'a Call,
    id: &'a str,
    item_id: String,
    sequence: u64,
    events: Vec<SseEvent>,
}

impl ResponsesStream<'_> {
    /// Adds an event of `kind` with `fields`, plus `type` and `sequence_number`; `located`
    /// events also name the item, output and content index.
    fn push(&mut self, kind: &str, mut fields: Value, located: bool) {
        if let Some(map) = fields.as_object_mut() {
            map.insert("type".into(), kind.into());
            map.insert("sequence_number".into(), self.sequence.into());
            if located {
                map.insert("item_id".into(), self.item_id.clone().into());
                map.insert("output_index".into(), 0.into());
                map.insert("content_index".into(), 0.into());
            }
        }
        self.sequence += 1;
        self.events.push(SseEvent::control(format!(
            "event: {kind}\ndata: {fields}\n\n"
        )));
    }

    fn item(&self, status: &str, text: &str) -> Value {
        let mut item = payload::output_message(&self.item_id, text, status);
        if status == "in_progress" {
            item["content"] = json!([]);
        }
        item
    }

    fn delta(&mut self, delta: &'static str) {
        let bytes = format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":{},\"item_id\":{},\"output_index\":0,\"content_index\":0,\"delta\":{},\"logprobs\":[]}}\n\n",
            self.sequence,
            json_string(&self.item_id),
            json_string(delta)
        );
        self.sequence += 1;
        self.events.push(SseEvent {
            bytes: Bytes::from(bytes),
            delta: Some(delta),
        });
    }
}

fn responses_events(call: &Call, completion: &Completion, id: &str) -> Vec<SseEvent> {
    let mut stream = ResponsesStream {
        call,
        id,
        item_id: payload::message_id(id),
        sequence: 0,
        events: Vec::with_capacity(completion.deltas.len() + 9),
    };
    // A background response is created queued, then runs.
    let created = if call.background {
        "queued"
    } else {
        "in_progress"
    };
    for (kind, status) in [
        ("response.created", created),
        ("response.in_progress", "in_progress"),
    ] {
        let response = payload::response_object(stream.call, status, None, stream.id);
        stream.push(kind, json!({"response": response}), false);
    }
    let item = stream.item("in_progress", "");
    stream.push(
        "response.output_item.added",
        json!({"output_index": 0, "item": item}),
        false,
    );
    let part = |text: &str| json!({"type": "output_text", "text": text, "annotations": []});
    stream.push(
        "response.content_part.added",
        json!({"part": part("")}),
        true,
    );
    for delta in &completion.deltas {
        stream.delta(delta);
    }
    let text = completion.text.as_str();
    stream.push(
        "response.output_text.done",
        json!({"text": text, "logprobs": []}),
        true,
    );
    stream.push(
        "response.content_part.done",
        json!({"part": part(text)}),
        true,
    );
    let item = stream.item("completed", text);
    stream.push(
        "response.output_item.done",
        json!({"output_index": 0, "item": item}),
        false,
    );
    let done = payload::response_object(stream.call, "completed", Some(completion), stream.id);
    stream.push("response.completed", json!({"response": done}), false);
    stream.events
}

#[cfg(test)]
mod tests;
