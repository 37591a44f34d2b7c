//! Lenient serde visitors over OpenAI response objects, shared by [`super`] (whole JSON
//! responses) and [`crate::usage::sse`] (one stream event at a time): the [`Shape`] /
//! [`Lenient`] machinery, and the `usage` and `model` readers.
//!
//! Input: a `serde_json` deserializer positioned on a value. Output: facts written into the
//! caller's variables — token counts, the model name. Every visitor accepts any JSON value: a
//! value of an unexpected type is skipped rather than failing the whole document, so one odd
//! field from an OpenAI-compatible backend never costs the usage of the response. Nothing is
//! allocated except the model name the first time one is seen.

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::usage::Usage;

/// What a node does with each kind of JSON value; everything not handled is skipped.
pub(crate) trait Shape<'de>: Sized {
    /// A string value.
    fn string(self, _value: &str) {}

    /// A non-negative integer value.
    fn number(self, _value: u64) {}

    /// An array.
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }

    /// An object.
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

/// Runs a [`Shape`] on whatever value comes next, skipping values of other types.
pub(crate) struct Lenient<S>(pub S);

impl<'de, S: Shape<'de>> DeserializeSeed<'de> for Lenient<S> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, S: Shape<'de>> Visitor<'de> for Lenient<S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, value: u64) -> Result<(), E> {
        self.0.number(value);
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, value: &str) -> Result<(), E> {
        self.0.string(value);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_none<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        self.0.seq(seq)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        self.0.map(map)
    }
}

/// Any value, skipped by recursion. Unlike `IgnoredAny`, nested containers cost no
/// allocation (serde_json keeps an explicit stack for those); used for the small members of
/// every stream chunk (`content_filter_results`, `logprobs`, …). Bounded by serde_json's
/// depth limit.
pub(crate) struct Skip;

impl<'de> Shape<'de> for Skip {
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Lenient(Skip))?.is_some() {}
        Ok(())
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(Lenient(Skip))?;
        }
        Ok(())
    }
}

/// Token counts as found in a `usage` object, both naming schemes, with their details.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct TokenFields {
    /// The value was a JSON object (possibly without any count).
    pub object: bool,
    /// `prompt_tokens` or `input_tokens`.
    pub prompt: Option<u64>,
    /// `completion_tokens` or `output_tokens`.
    pub completion: Option<u64>,
    /// `total_tokens`.
    pub total: Option<u64>,
    /// Input details: `cached_tokens`, `cache_write_tokens`, `audio_tokens`, `image_tokens`.
    pub input: InputDetails,
    /// Output details: `reasoning_tokens`, `audio_tokens`.
    pub output: OutputDetails,
    /// A top-level `reasoning_tokens` (some OpenAI-compatible servers).
    pub reasoning: Option<u64>,
}

/// `prompt_tokens_details` / `input_tokens_details`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct InputDetails {
    pub cached: Option<u64>,
    pub cache_write: Option<u64>,
    pub audio: Option<u64>,
    pub image: Option<u64>,
}

/// `completion_tokens_details` / `output_tokens_details`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct OutputDetails {
    pub reasoning: Option<u64>,
    pub audio: Option<u64>,
}

impl TokenFields {
    /// The usage, when at least one count was present, normalised: reasoning reported apart
    /// from the completion (`total_tokens` = prompt + completion + reasoning, or reasoning
    /// larger than the completion when there is no total) is added to the completion, and no
    /// subset exceeds its total.
    pub fn usage(self) -> Option<Usage> {
        if self.prompt.is_none() && self.completion.is_none() {
            return None;
        }
        let prompt = self.prompt.unwrap_or(0);
        let completion = self.completion.unwrap_or(0);
        let reasoning = self.output.reasoning.or(self.reasoning).unwrap_or(0);
        let separate = reasoning > 0
            && match self.total {
                Some(total) => total == prompt + completion + reasoning,
                None => reasoning > completion,
            };
        let usage = Usage {
            prompt_tokens: prompt,
            completion_tokens: if separate {
                completion + reasoning
            } else {
                completion
            },
            cached_tokens: self.input.cached.unwrap_or(0),
            cache_write_tokens: self.input.cache_write.unwrap_or(0),
            audio_input_tokens: self.input.audio.unwrap_or(0),
            image_input_tokens: self.input.image.unwrap_or(0),
            reasoning_tokens: reasoning,
            audio_output_tokens: self.output.audio.unwrap_or(0),
        };
        Some(usage.normalised())
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum UsageKey {
    PromptTokens,
    InputTokens,
    CompletionTokens,
    OutputTokens,
    TotalTokens,
    PromptTokensDetails,
    InputTokensDetails,
    CompletionTokensDetails,
    OutputTokensDetails,
    ReasoningTokens,
    #[serde(other)]
    Other,
}

/// A `usage` object (chat, completions, embeddings or responses naming).
pub(crate) struct UsageShape<'u>(pub &'u mut TokenFields);

impl<'de> Shape<'de> for UsageShape<'_> {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let fields = self.0;
        fields.object = true;
        while let Some(key) = map.next_key::<UsageKey>()? {
            match key {
                UsageKey::PromptTokens | UsageKey::InputTokens => {
                    map.next_value_seed(Lenient(Count(&mut fields.prompt)))?;
                }
                UsageKey::CompletionTokens | UsageKey::OutputTokens => {
                    map.next_value_seed(Lenient(Count(&mut fields.completion)))?;
                }
                UsageKey::TotalTokens => map.next_value_seed(Lenient(Count(&mut fields.total)))?,
                UsageKey::ReasoningTokens => {
                    map.next_value_seed(Lenient(Count(&mut fields.reasoning)))?;
                }
                UsageKey::PromptTokensDetails | UsageKey::InputTokensDetails => {
                    map.next_value_seed(Lenient(InputDetailsShape(&mut fields.input)))?;
                }
                UsageKey::CompletionTokensDetails | UsageKey::OutputTokensDetails => {
                    map.next_value_seed(Lenient(OutputDetailsShape(&mut fields.output)))?;
                }
                UsageKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum DetailKey {
    CachedTokens,
    CacheWriteTokens,
    CacheCreationTokens,
    AudioTokens,
    ImageTokens,
    ReasoningTokens,
    #[serde(other)]
    Other,
}

/// `prompt_tokens_details` / `input_tokens_details`.
struct InputDetailsShape<'d>(&'d mut InputDetails);

impl<'de> Shape<'de> for InputDetailsShape<'_> {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let details = self.0;
        while let Some(key) = map.next_key::<DetailKey>()? {
            let slot = match key {
                DetailKey::CachedTokens => &mut details.cached,
                DetailKey::CacheWriteTokens | DetailKey::CacheCreationTokens => {
                    &mut details.cache_write
                }
                DetailKey::AudioTokens => &mut details.audio,
                DetailKey::ImageTokens => &mut details.image,
                DetailKey::ReasoningTokens | DetailKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            map.next_value_seed(Lenient(Count(slot)))?;
        }
        Ok(())
    }
}

/// `completion_tokens_details` / `output_tokens_details`.
struct OutputDetailsShape<'d>(&'d mut OutputDetails);

impl<'de> Shape<'de> for OutputDetailsShape<'_> {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let details = self.0;
        while let Some(key) = map.next_key::<DetailKey>()? {
            let slot = match key {
                DetailKey::ReasoningTokens => &mut details.reasoning,
                DetailKey::AudioTokens => &mut details.audio,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            map.next_value_seed(Lenient(Count(slot)))?;
        }
        Ok(())
    }
}

/// A token count.
struct Count<'c>(&'c mut Option<u64>);

impl Shape<'_> for Count<'_> {
    fn number(self, value: u64) {
        *self.0 = Some(value);
    }
}

/// The `model` string; only the first non-empty one is kept.
pub(crate) struct Model<'m>(pub &'m mut Option<String>);

impl Shape<'_> for Model<'_> {
    fn string(self, value: &str) {
        if self.0.is_none() && !value.is_empty() {
            *self.0 = Some(value.to_owned());
        }
    }
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum ResponseKey {
    Model,
    Usage,
    #[serde(other)]
    Other,
}

/// The model and usage of a whole response object (top-level JSON, or the `response` member
/// of a Responses API stream event).
pub(crate) struct ResponseFacts<'r> {
    pub model: &'r mut Option<String>,
    pub tokens: &'r mut TokenFields,
    /// Set when the value was an object.
    pub object: &'r mut bool,
}

impl<'de> Shape<'de> for ResponseFacts<'_> {
    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        *self.object = true;
        while let Some(key) = map.next_key::<ResponseKey>()? {
            match key {
                ResponseKey::Model => map.next_value_seed(Lenient(Model(&mut *self.model)))?,
                ResponseKey::Usage => {
                    map.next_value_seed(Lenient(UsageShape(&mut *self.tokens)))?
                }
                ResponseKey::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}
