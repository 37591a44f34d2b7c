//! The APIs the simulator serves, as its own types: [`ModelApi`] for the four model calls a
//! `Call` serves (chat, legacy completions, embeddings, responses) and [`Api`] for every
//! operation a route can address, the model calls plus images, audio, files and batches. The
//! gateway's `Operation` knows only the model calls it accounts for; the simulator names its
//! own so that neither crate's list constrains the other. Only [`ModelApi::tokenizer`]
//! crosses over, to count prompts.
//!
//! Input: a path tail such as `chat/completions` or `audio/speech`. Output: the operation,
//! its ledger name (`chat_completions`, `audio_speech`, …) and its Azure operation name.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use spillway_sidecar::usage::Operation;

/// A model call: what a `Call` serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelApi {
    /// `chat/completions`
    ChatCompletions,
    /// `completions` (legacy)
    Completions,
    /// `embeddings`
    Embeddings,
    /// `responses`
    Responses,
}

impl ModelApi {
    /// The gateway's operation, for its prompt counter.
    pub fn tokenizer(self) -> Operation {
        match self {
            Self::ChatCompletions => Operation::ChatCompletions,
            Self::Completions => Operation::Completions,
            Self::Embeddings => Operation::Embeddings,
            Self::Responses => Operation::Responses,
        }
    }
}

/// Every operation a simulated backend serves, as the ledger names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Api {
    /// A model call.
    Model(ModelApi),
    /// `images/generations`
    ImagesGenerations,
    /// `images/edits`
    ImagesEdits,
    /// `images/variations`
    ImagesVariations,
    /// `audio/transcriptions`
    AudioTranscriptions,
    /// `audio/translations`
    AudioTranslations,
    /// `audio/speech`
    AudioSpeech,
    /// `files…`
    Files,
    /// `batches…`
    Batches,
}

/// Each operation with its ledger name and the path tail that creates with it.
const NAMES: [(Api, &str, &str); 12] = [
    (
        Api::Model(ModelApi::ChatCompletions),
        "chat_completions",
        "chat/completions",
    ),
    (
        Api::Model(ModelApi::Completions),
        "completions",
        "completions",
    ),
    (Api::Model(ModelApi::Embeddings), "embeddings", "embeddings"),
    (Api::Model(ModelApi::Responses), "responses", "responses"),
    (
        Api::ImagesGenerations,
        "images_generations",
        "images/generations",
    ),
    (Api::ImagesEdits, "images_edits", "images/edits"),
    (
        Api::ImagesVariations,
        "images_variations",
        "images/variations",
    ),
    (
        Api::AudioTranscriptions,
        "audio_transcriptions",
        "audio/transcriptions",
    ),
    (
        Api::AudioTranslations,
        "audio_translations",
        "audio/translations",
    ),
    (Api::AudioSpeech, "audio_speech", "audio/speech"),
    (Api::Files, "files", "files"),
    (Api::Batches, "batches", "batches"),
];

impl Api {
    /// The ledger's name: `chat_completions`, `images_generations`, `audio_speech`, ….
    pub fn as_str(self) -> &'static str {
        NAMES
            .iter()
            .find(|(api, ..)| *api == self)
            .map_or("unknown", |(_, name, _)| name)
    }

    /// Parses a ledger name.
    pub fn from_name(name: &str) -> Option<Self> {
        NAMES
            .iter()
            .find(|(_, n, _)| *n == name)
            .map(|(api, ..)| *api)
    }

    /// The operation whose create (or, for files and batches, collection) path is `tail`
    /// (`chat/completions`, `images/edits`, `files`, …; a trailing `/` is ignored).
    pub fn from_path(tail: &str) -> Option<Self> {
        let tail = tail.trim_end_matches('/');
        NAMES
            .iter()
            .find(|(.., p)| *p == tail)
            .map(|(api, ..)| *api)
    }

    /// The model call, if this is one.
    pub fn model(self) -> Option<ModelApi> {
        match self {
            Self::Model(model) => Some(model),
            _ => None,
        }
    }

    /// Whether Azure serves it under a deployment (`/openai/deployments/{d}/…`); files and
    /// batches live at the resource's top level only.
    pub fn under_deployment(self) -> bool {
        !matches!(self, Self::Files | Self::Batches)
    }

    /// Whether Azure also serves it without a deployment (`/openai/{op}?api-version=…`).
    pub fn at_top_level(self) -> bool {
        matches!(
            self,
            Self::Model(ModelApi::Responses) | Self::Files | Self::Batches
        )
    }

    /// Azure's name for the create operation, as its 429 messages say it.
    pub fn azure_operation(self) -> &'static str {
        match self {
            Self::Model(ModelApi::ChatCompletions) => "ChatCompletions_Create",
            Self::Model(ModelApi::Completions) => "Completions_Create",
            Self::Model(ModelApi::Embeddings) => "Embeddings_Create",
            Self::Model(ModelApi::Responses) => "Responses_Create",
            Self::ImagesGenerations => "ImageGenerations_Create",
            Self::ImagesEdits => "ImageEdits_Create",
            Self::ImagesVariations => "ImageVariations_Create",
            Self::AudioTranscriptions => "Transcriptions_Create",
            Self::AudioTranslations => "Translations_Create",
            Self::AudioSpeech => "Speech_Create",
            Self::Files => "Files_Upload",
            Self::Batches => "Batches_Create",
        }
    }
}

impl From<ModelApi> for Api {
    fn from(model: ModelApi) -> Self {
        Self::Model(model)
    }
}

impl Serialize for Api {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Api {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::from_name(&name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown operation `{name}`")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_keep_the_gateway_spelling() {
        for (api, name, path) in NAMES {
            assert_eq!(api.as_str(), name);
            assert_eq!(Api::from_name(name), Some(api));
            assert_eq!(Api::from_path(path), Some(api));
            let json = serde_json::to_string(&api).expect("serializes");
            assert_eq!(json, format!("\"{name}\""));
            let back: Api = serde_json::from_str(&json).expect("parses");
            assert_eq!(back, api);
        }
        for model in [
            ModelApi::ChatCompletions,
            ModelApi::Completions,
            ModelApi::Embeddings,
            ModelApi::Responses,
        ] {
            let gateway = serde_json::to_value(model.tokenizer()).expect("serializes");
            assert_eq!(gateway, Api::from(model).as_str(), "same ledger name");
        }
        assert!(serde_json::from_str::<Api>("\"moderations\"").is_err());
        assert_eq!(
            Api::from_path("images/generations/"),
            Some(Api::ImagesGenerations)
        );
        assert_eq!(Api::from_path("audio"), None);
    }

    #[test]
    fn azure_places_each_operation() {
        assert!(Api::AudioSpeech.under_deployment() && !Api::AudioSpeech.at_top_level());
        assert!(Api::Files.at_top_level() && !Api::Files.under_deployment());
        assert!(Api::Batches.at_top_level() && !Api::Batches.under_deployment());
        let responses = Api::Model(ModelApi::Responses);
        assert!(responses.at_top_level() && responses.under_deployment());
        assert_eq!(Api::ImagesEdits.model(), None);
        assert_eq!(
            Api::Model(ModelApi::Embeddings).model(),
            Some(ModelApi::Embeddings)
        );
    }
}
