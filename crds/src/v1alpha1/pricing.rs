//! Prices and token weights: `AIBackendPool.spec.pricing`, `spec.backends[].pricing` and
//! `TokenQuota.spec.tokenWeights`.
//!
//! Amounts and weights are decimal strings (`"2.50"`, `"0.1"`), never floats, so money stays
//! exact; `compile()` turns them into [`crate::billing`] values.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::billing::{CostPeriod, TokenType};

/// The schema pattern of a decimal amount or weight: digits with at most 6 decimal places
/// (trailing zeros aside), no sign, no exponent.
pub(crate) const DECIMAL: &str = r"^([0-9]+(\.[0-9]{1,6}0*)?|\.[0-9]{1,6}0*)$";

/// What calls cost, for chargeback: rates per million tokens in `currency`, and for a
/// provisioned (PTU) backend its fixed cost.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "(has(self.rates) && size(self.rates) > 0) || has(self.provisioned)", "message": "set rates (per million tokens), provisioned (a PTU backend's fixed cost), or both"}
]))]
pub struct PricingSpec {
    /// ISO 4217 currency code of every amount here, upper case (`USD`, `EUR`). A backend
    /// without its own currency uses the pool's; one of the two must say it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Z]{3}$"))]
    pub currency: Option<String>,
    /// Pay-as-you-go rates per million tokens, per model. The first entry whose `model`
    /// matches a call is used (an entry without `model` matches every model), the backend's
    /// own entries before the pool's. A call no entry matches is counted without a cost.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<ModelRatesSpec>,
    /// Backends only: the fixed cost of a provisioned (PTU) deployment. Calls it serves are
    /// not metered; instead each hour's cost is shared between the apps it served that hour,
    /// in proportion to their tokens weighted by this backend's `rates` (the pool's when it
    /// has none). An hour nobody used stays unallocated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<ProvisionedSpec>,
}

/// Rates per million tokens for one model (or every model), as decimal strings in the
/// pricing's `currency`, e.g. `input: "2.50"`. A token type without its own rate costs what
/// `input` costs (cached, cache-write, audio and image input) or what `output` costs
/// (reasoning and audio output).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelRatesSpec {
    /// The model these rates are for: the name the client asked for, or a prefix of the model
    /// the backend reports (`gpt-4o` matches `gpt-4o-2024-08-06`). Omit to price every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub model: Option<String>,
    /// Input (prompt) tokens, per million, e.g. `"2.50"`.
    #[schemars(regex(pattern = DECIMAL))]
    pub input: String,
    /// Output (completion) tokens, per million, e.g. `"10.00"`. Default `"0"`, for models
    /// without output such as embeddings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub output: Option<String>,
    /// Input read from the prompt cache, per million. Default: `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub cached_input: Option<String>,
    /// Input written to the prompt cache, where the provider bills it apart, per million.
    /// Default: `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub cache_write_input: Option<String>,
    /// Audio input, per million. Default: `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub audio_input: Option<String>,
    /// Image input, per million. Default: `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub image_input: Option<String>,
    /// Reasoning output (o-series, gpt-5), per million. Default: `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub reasoning_output: Option<String>,
    /// Audio output, per million. Default: `output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub audio_output: Option<String>,
}

impl ModelRatesSpec {
    /// The rates that fall back to `input` or `output`, with their field names.
    pub fn optional_rates(&self) -> [(&'static str, Option<&str>); 6] {
        [
            ("cachedInput", self.cached_input.as_deref()),
            ("cacheWriteInput", self.cache_write_input.as_deref()),
            ("audioInput", self.audio_input.as_deref()),
            ("imageInput", self.image_input.as_deref()),
            ("reasoningOutput", self.reasoning_output.as_deref()),
            ("audioOutput", self.audio_output.as_deref()),
        ]
    }
}

/// The fixed cost of a provisioned (PTU) deployment, e.g. `{amount: "2.00", per: Hour}`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionedSpec {
    /// The cost per `per`, a decimal string in the pricing's `currency`, e.g. `"2.00"`.
    #[schemars(regex(pattern = DECIMAL))]
    pub amount: String,
    /// `Hour`, or `Month`: each hour of a calendar month then costs the amount divided by the
    /// month's hours.
    pub per: CostPeriod,
}

/// How much each token type counts toward a quota's token limits, as decimal strings from
/// `"0"` to `"1000"`; a type not listed counts fully (`"1"`).
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenWeightsSpec {
    /// Input (prompt) tokens that are not cached, cache-write, audio or image input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub input: Option<String>,
    /// Input read from the prompt cache.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub cached_input: Option<String>,
    /// Input written to the prompt cache, where the provider reports it apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub cache_write_input: Option<String>,
    /// Audio input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub audio_input: Option<String>,
    /// Image input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub image_input: Option<String>,
    /// Output (completion) tokens that are not reasoning or audio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub output: Option<String>,
    /// Reasoning output (o-series, gpt-5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub reasoning_output: Option<String>,
    /// Audio output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = DECIMAL))]
    pub audio_output: Option<String>,
}

impl TokenWeightsSpec {
    /// Each token type with its field name and the weight written for it, if any.
    pub fn by_type(&self) -> [(TokenType, &'static str, Option<&str>); 8] {
        [
            (TokenType::Input, "input", self.input.as_deref()),
            (
                TokenType::CachedInput,
                "cachedInput",
                self.cached_input.as_deref(),
            ),
            (
                TokenType::CacheWriteInput,
                "cacheWriteInput",
                self.cache_write_input.as_deref(),
            ),
            (
                TokenType::AudioInput,
                "audioInput",
                self.audio_input.as_deref(),
            ),
            (
                TokenType::ImageInput,
                "imageInput",
                self.image_input.as_deref(),
            ),
            (TokenType::Output, "output", self.output.as_deref()),
            (
                TokenType::ReasoningOutput,
                "reasoningOutput",
                self.reasoning_output.as_deref(),
            ),
            (
                TokenType::AudioOutput,
                "audioOutput",
                self.audio_output.as_deref(),
            ),
        ]
    }
}
