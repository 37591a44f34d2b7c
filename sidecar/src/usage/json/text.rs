//! Generated text of OpenAI responses, as [`Shape`]s: chat `message`/`delta` content,
//! refusals, reasoning content, tool and function calls, completions `text`, Responses API
//! `output` items.
//!
//! Input: a `serde_json` deserializer positioned on a value. Output: the text appended to the
//! caller's `String`, in document order; values of unexpected types are skipped.

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess};
use serde_json::value::RawValue;

use super::literal::push_unescaped;
use super::shape::{Lenient, Shape, Skip};

/// Generated text where it is almost always a string (chat content, completions text,
/// function arguments, stream deltas): a string is decoded straight into the buffer, without
/// serde_json's scratch allocation; arrays and objects are read as [`Text`].
pub(crate) struct TextSeed<'t>(pub &'t mut String);

impl<'de> DeserializeSeed<'de> for TextSeed<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        let raw = <&'de RawValue>::deserialize(deserializer)?.get();
        match raw.as_bytes().first() {
            Some(b'"') => push_unescaped(raw, self.0),
            Some(b'[' | b'{') => {
                let mut nested = serde_json::Deserializer::from_str(raw);
                Lenient(Text(self.0))
                    .deserialize(&mut nested)
                    .map_err(de::Error::custom)?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Generated text: a string, an array of parts, or a part object (`text` / `refusal`).
pub(crate) struct Text<'t>(pub &'t mut String);

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum PartKey {
    Text,
    Refusal,
    #[serde(other)]
    Other,
}

impl<'de> Shape<'de> for Text<'_> {
    fn string(self, value: &str) {
        self.0.push_str(value);
    }

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Lenient(Text(&mut *self.0)))?
            .is_some()
        {}
        Ok(())
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<PartKey>()? {
            match key {
                PartKey::Text | PartKey::Refusal => map.next_value_seed(Lenient(Text(self.0)))?,
                PartKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `choices`: counts the entries and collects the text of each.
pub(crate) struct Choices<'t> {
    pub text: &'t mut String,
    pub count: &'t mut Option<usize>,
}

impl<'de> Shape<'de> for Choices<'_> {
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut n = 0;
        while seq
            .next_element_seed(Lenient(Choice(&mut *self.text)))?
            .is_some()
        {
            n += 1;
        }
        *self.count = Some(n);
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ChoiceKey {
    Text,
    Delta,
    Message,
    #[serde(other)]
    Other,
}

/// One choice: legacy completions `text`, chat `message` or streamed `delta`.
struct Choice<'t>(&'t mut String);

impl<'de> Shape<'de> for Choice<'_> {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<ChoiceKey>()? {
            match key {
                ChoiceKey::Text => map.next_value_seed(TextSeed(&mut *self.0))?,
                ChoiceKey::Delta | ChoiceKey::Message => {
                    map.next_value_seed(Lenient(Message(&mut *self.0)))?;
                }
                ChoiceKey::Other => map.next_value_seed(Lenient(Skip))?,
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum MessageKey {
    Content,
    Refusal,
    ReasoningContent,
    ToolCalls,
    FunctionCall,
    #[serde(other)]
    Other,
}

/// A chat `message` or `delta`: content, refusal, reasoning content and tool calls.
struct Message<'t>(&'t mut String);

impl<'de> Shape<'de> for Message<'_> {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<MessageKey>()? {
            let text = &mut *self.0;
            match key {
                MessageKey::Content | MessageKey::Refusal | MessageKey::ReasoningContent => {
                    map.next_value_seed(TextSeed(text))?;
                }
                MessageKey::ToolCalls => map.next_value_seed(Lenient(ToolCalls(text)))?,
                MessageKey::FunctionCall => map.next_value_seed(Lenient(Function(text)))?,
                MessageKey::Other => map.next_value_seed(Lenient(Skip))?,
            }
        }
        Ok(())
    }
}

/// `tool_calls`: the `function` of each entry.
struct ToolCalls<'t>(&'t mut String);

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ToolCallKey {
    Function,
    #[serde(other)]
    Other,
}

impl<'de> Shape<'de> for ToolCalls<'_> {
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Lenient(ToolCalls(&mut *self.0)))?
            .is_some()
        {}
        Ok(())
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<ToolCallKey>()? {
            match key {
                ToolCallKey::Function => map.next_value_seed(Lenient(Function(&mut *self.0)))?,
                ToolCallKey::Other => map.next_value_seed(Lenient(Skip))?,
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum FunctionKey {
    Name,
    Arguments,
    #[serde(other)]
    Other,
}

/// A function call: its `name` and `arguments` are generated text.
struct Function<'t>(&'t mut String);

impl<'de> Shape<'de> for Function<'_> {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<FunctionKey>()? {
            match key {
                FunctionKey::Name | FunctionKey::Arguments => {
                    map.next_value_seed(TextSeed(&mut *self.0))?;
                }
                FunctionKey::Other => map.next_value_seed(Lenient(Skip))?,
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum OutputItemKey {
    Content,
    Name,
    Arguments,
    Input,
    #[serde(other)]
    Other,
}

/// Responses API `output`: message content parts, function call names and arguments, custom
/// tool inputs. Reasoning summaries are not generated output and are skipped.
pub(crate) struct Output<'t>(pub &'t mut String);

impl<'de> Shape<'de> for Output<'_> {
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(Lenient(Output(&mut *self.0)))?
            .is_some()
        {}
        Ok(())
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<OutputItemKey>()? {
            match key {
                OutputItemKey::Content
                | OutputItemKey::Name
                | OutputItemKey::Arguments
                | OutputItemKey::Input => map.next_value_seed(Lenient(Text(&mut *self.0)))?,
                OutputItemKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum CompletionKey {
    Choices,
    Output,
    #[serde(other)]
    Other,
}

/// All generated text of a whole (non-streamed) response: chat, completions or responses.
pub(crate) struct CompletionText<'t>(pub &'t mut String);

impl<'de> Shape<'de> for CompletionText<'_> {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut count = None;
        while let Some(key) = map.next_key::<CompletionKey>()? {
            let text = &mut *self.0;
            match key {
                CompletionKey::Choices => map.next_value_seed(Lenient(Choices {
                    text,
                    count: &mut count,
                }))?,
                CompletionKey::Output => map.next_value_seed(Lenient(Output(text)))?,
                CompletionKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}
