//! One SSE event's data, read as an OpenAI stream chunk, and the stream-wide [`Facts`] it
//! adds to.
//!
//! Input: the event's data (one JSON object) and its `event:` name. Output: a [`Verdict`] for
//! the rewriter (keep, remove the usage chunk, or cut the top-level `"usage": null` member),
//! while the usage, the first model and the generated text go into [`Facts`]. Chat/completions chunks (`choices[].delta`, `choices[].text`,
//! top-level `usage`) and Responses API events (`type` + `delta`, `response.usage`) are both
//! understood. Nothing is allocated beyond the text appended and the first model name.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::usage::Usage;
use crate::usage::json::shape::{Lenient, Model, ResponseFacts, Shape, TokenFields, UsageShape};
use crate::usage::json::text::{Choices, TextSeed};

/// What one event says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct EventFacts {
    /// Number of `choices` entries, when `choices` is an array.
    pub choices: Option<usize>,
    /// Usage reported by the event: top-level `usage` or the Responses API `response.usage`.
    pub usage: Option<Usage>,
    /// The top-level `usage` is an object (a usage chunk), whatever counts it holds.
    pub usage_object: bool,
    /// The data range to cut to remove a top-level `"usage": null` member, separating comma
    /// included; `None` when there is no such member or it cannot be cut safely.
    pub null_usage_member: Option<(usize, usize)>,
}

/// What the stream has said so far (see `StreamSummary` for the meaning of each).
#[derive(Debug, Default)]
pub(super) struct Facts {
    pub usage: Option<Usage>,
    pub model: Option<String>,
    pub text: String,
    /// Reused buffer for a Responses API `delta`.
    scratch: String,
    pub saw_done: bool,
    pub events: u64,
    pub malformed: u64,
    pub content_started: bool,
}

/// What the rewriter does with a dispatched event.
pub(super) enum Verdict {
    /// Forward the event as it is.
    Keep,
    /// Drop the whole event (the usage chunk the client did not ask for).
    Remove,
    /// Cut this data range (the `"usage": null` member).
    Cut(usize, usize),
}

impl Facts {
    /// Learns from one event's data and says what stripping would do with it.
    pub fn learn(&mut self, data: &[u8], event_name: &str) -> Verdict {
        let trimmed = data.trim_ascii();
        if trimmed.is_empty() {
            return Verdict::Keep;
        }
        self.events += 1;
        if trimmed == b"[DONE]" {
            self.saw_done = true;
            return Verdict::Keep;
        }
        let mark = self.text.len();
        let sinks = Sinks {
            model: &mut self.model,
            text: &mut self.text,
            scratch: &mut self.scratch,
        };
        let Ok(facts) = parse(data, event_name, sinks) else {
            self.text.truncate(mark);
            self.malformed += 1;
            return Verdict::Keep;
        };
        if facts.usage.is_some() {
            self.usage = facts.usage;
        }
        if self.text.len() > mark {
            self.content_started = true;
        }
        if facts.usage_object && facts.choices == Some(0) {
            Verdict::Remove
        } else if let Some((from, to)) = facts.null_usage_member {
            Verdict::Cut(from, to)
        } else {
            Verdict::Keep
        }
    }
}

/// Where the event's text and model go.
struct Sinks<'a> {
    /// The stream's model, set by the first event that names one.
    pub model: &'a mut Option<String>,
    /// The stream's generated text.
    pub text: &'a mut String,
    /// Reused buffer for a Responses API `delta` until the event type is known.
    pub scratch: &'a mut String,
}

/// Responses API event types whose `delta` is generated text.
const TEXT_DELTA_TYPES: [&str; 5] = [
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.custom_tool_call_input.delta",
    "response.reasoning_text.delta",
];

/// Reads one event's data.
///
/// # Errors
/// The data is not one JSON object (or nests deeper than serde_json allows); text appended
/// before the fault stays in the buffer, the caller decides what to do with it.
fn parse(data: &[u8], event_name: &str, sinks: Sinks<'_>) -> Result<EventFacts, serde_json::Error> {
    sinks.scratch.clear();
    let mut raw = RawFacts::default();
    let mut de = serde_json::Deserializer::from_slice(data);
    EventVisitor {
        data,
        model: &mut *sinks.model,
        text: &mut *sinks.text,
        scratch: &mut *sinks.scratch,
        raw: &mut raw,
    }
    .deserialize(&mut de)?;
    de.end()?;
    let text_delta = raw
        .text_delta
        .unwrap_or_else(|| TEXT_DELTA_TYPES.contains(&event_name));
    if text_delta {
        sinks.text.push_str(sinks.scratch);
    }
    let null_usage_member = match (raw.usage_members, raw.usage_null) {
        (1, Some(value)) => member_span(data, value),
        _ => None,
    };
    Ok(EventFacts {
        choices: raw.choices,
        usage: raw.usage.usage().or(raw.response_usage.usage()),
        usage_object: raw.usage.object,
        null_usage_member,
    })
}

#[derive(Default)]
struct RawFacts {
    choices: Option<usize>,
    usage: TokenFields,
    response_usage: TokenFields,
    usage_members: u32,
    /// Data range of the top-level usage value when it is `null`.
    usage_null: Option<(usize, usize)>,
    /// From the JSON `type`: is this a text delta event.
    text_delta: Option<bool>,
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum EventKey {
    Model,
    Choices,
    Usage,
    Type,
    Delta,
    Response,
    #[serde(other)]
    Other,
}

struct EventVisitor<'a, 'de> {
    data: &'de [u8],
    model: &'a mut Option<String>,
    text: &'a mut String,
    scratch: &'a mut String,
    raw: &'a mut RawFacts,
}

impl<'de> DeserializeSeed<'de> for EventVisitor<'_, 'de> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for EventVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let raw = self.raw;
        while let Some(key) = map.next_key::<EventKey>()? {
            match key {
                EventKey::Model => map.next_value_seed(Lenient(Model(&mut *self.model)))?,
                EventKey::Choices => map.next_value_seed(Lenient(Choices {
                    text: &mut *self.text,
                    count: &mut raw.choices,
                }))?,
                EventKey::Usage => {
                    let value: &'de RawValue = map.next_value()?;
                    raw.usage_members += 1;
                    if value.get() == "null" {
                        let start = offset_in(self.data, value.get());
                        raw.usage_null = Some((start, start + value.get().len()));
                    } else {
                        let mut de = serde_json::Deserializer::from_str(value.get());
                        Lenient(UsageShape(&mut raw.usage))
                            .deserialize(&mut de)
                            .map_err(de::Error::custom)?;
                    }
                }
                EventKey::Type => map.next_value_seed(Lenient(DeltaType(&mut raw.text_delta)))?,
                EventKey::Delta => map.next_value_seed(TextSeed(&mut *self.scratch))?,
                EventKey::Response => {
                    let mut object = false;
                    map.next_value_seed(Lenient(ResponseFacts {
                        model: &mut *self.model,
                        tokens: &mut raw.response_usage,
                        object: &mut object,
                    }))?;
                }
                EventKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// The JSON `type` of a Responses API event: whether its `delta` is generated text.
struct DeltaType<'k>(&'k mut Option<bool>);

impl Shape<'_> for DeltaType<'_> {
    fn string(self, value: &str) {
        *self.0 = Some(TEXT_DELTA_TYPES.contains(&value));
    }
}

/// Byte offset of `part`, a slice borrowed from `whole`.
fn offset_in(whole: &[u8], part: &str) -> usize {
    part.as_ptr().addr().saturating_sub(whole.as_ptr().addr())
}

/// The range covering the member whose value is `value`, a top-level `"usage"` member, plus
/// one comma so the object stays valid: the comma before it, or the one after it (and the
/// space after that) when it is the first member.
fn member_span(data: &[u8], (value_start, value_end): (usize, usize)) -> Option<(usize, usize)> {
    const KEY: &[u8] = b"\"usage\"";
    let colon = space_before(data, value_start).checked_sub(1)?;
    if data.get(colon) != Some(&b':') {
        return None;
    }
    let key_end = space_before(data, colon);
    let key_start = key_end.checked_sub(KEY.len())?;
    if data.get(key_start..key_end) != Some(KEY) {
        // Spelled with escapes: leave it alone.
        return None;
    }
    let before = space_before(data, key_start).checked_sub(1)?;
    match data.get(before) {
        Some(b',') => Some((before, value_end)),
        Some(b'{') => {
            let after = space_after(data, value_end);
            if data.get(after) == Some(&b',') {
                Some((key_start, space_after(data, after + 1)))
            } else {
                Some((key_start, value_end))
            }
        }
        _ => None,
    }
}

/// The index just past the last non-space byte before `at`.
fn space_before(data: &[u8], mut at: usize) -> usize {
    while at > 0 && data.get(at - 1).is_some_and(|b| is_json_space(*b)) {
        at -= 1;
    }
    at
}

/// The index of the first non-space byte at or after `at`.
fn space_after(data: &[u8], mut at: usize) -> usize {
    while data.get(at).is_some_and(|b| is_json_space(*b)) {
        at += 1;
    }
    at
}

fn is_json_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}
