//! What a call is billed for: the token types providers bill separately, exact money, and
//! the compiled prices of a backend.
//!
//! - [`TokenType`]: the billing classes a call's tokens fall into. Each token of a call is in
//!   exactly one class (cached input is not also plain input), so classes add up to the call's
//!   input plus output.
//! - [`Micros`]: an exact amount in millionths of a currency unit, parsed from decimal text
//!   (`"2.50"`), never a float.
//! - [`Rates`], [`ModelRates`], [`Pricing`]: pay-as-you-go rates per million tokens of each
//!   type, and a provisioned (PTU) cost per hour or month, as the data plane runs them.
//!
//! Input: decimal strings from `AIBackendPool.spec.pricing` / `backends[].pricing`. Output:
//! the validated values of the snapshot. Pure; no I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The billing classes of a call's tokens. Input classes partition the prompt tokens and
/// output classes the completion tokens, so the classes of a call sum to its total.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenType {
    /// Input billed at the plain input rate (text input that was neither read from nor
    /// written to the prompt cache, and is not audio or image).
    Input,
    /// Input read from the prompt cache (`cached_tokens`), billed at a discount.
    CachedInput,
    /// Input written to the prompt cache (cache creation), where the provider bills it apart.
    CacheWriteInput,
    /// Audio input not read from the cache.
    AudioInput,
    /// Image input not read from the cache.
    ImageInput,
    /// Visible output: completion tokens that are neither reasoning nor audio.
    Output,
    /// Reasoning output (o-series, gpt-5): billed as output, never shown.
    ReasoningOutput,
    /// Audio output.
    AudioOutput,
}

impl TokenType {
    /// Every class, input classes first.
    pub const ALL: [Self; 8] = [
        Self::Input,
        Self::CachedInput,
        Self::CacheWriteInput,
        Self::AudioInput,
        Self::ImageInput,
        Self::Output,
        Self::ReasoningOutput,
        Self::AudioOutput,
    ];

    /// The snake_case name used in metrics (`spillway.token.type`), records and docs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Input => "input",
            Self::CachedInput => "cached_input",
            Self::CacheWriteInput => "cache_write_input",
            Self::AudioInput => "audio_input",
            Self::ImageInput => "image_input",
            Self::Output => "output",
            Self::ReasoningOutput => "reasoning_output",
            Self::AudioOutput => "audio_output",
        }
    }

    /// Whether the class is part of the input (prompt) tokens.
    pub fn is_input(self) -> bool {
        matches!(
            self,
            Self::Input
                | Self::CachedInput
                | Self::CacheWriteInput
                | Self::AudioInput
                | Self::ImageInput
        )
    }
}

impl fmt::Display for TokenType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An exact amount of money in millionths of a currency unit (`1_000_000` = one dollar).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Micros(pub u64);

impl Micros {
    /// Decimal places an amount may have.
    pub const SCALE: u32 = 6;
    /// One currency unit.
    pub const ONE: u64 = 1_000_000;
}

/// Why a decimal amount was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a plain non-negative decimal number.
    #[error("{0:?} is not a decimal amount such as \"2.50\" (digits, at most one '.')")]
    Syntax(String),
    /// More than six decimal places.
    #[error("{0:?} has more than 6 decimal places; amounts are exact to a millionth")]
    TooPrecise(String),
    /// Too large to hold.
    #[error("{0:?} is too large")]
    TooLarge(String),
}

impl FromStr for Micros {
    type Err = AmountError;

    fn from_str(text: &str) -> Result<Self, AmountError> {
        let syntax = || AmountError::Syntax(text.to_owned());
        let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
            return Err(syntax());
        }
        if text.ends_with('.') {
            return Err(syntax());
        }
        let fraction = fraction.trim_end_matches('0');
        if fraction.len() > Self::SCALE as usize {
            return Err(AmountError::TooPrecise(text.to_owned()));
        }
        let too_large = || AmountError::TooLarge(text.to_owned());
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| too_large())?
        };
        let mut frac: u64 = if fraction.is_empty() {
            0
        } else {
            fraction.parse().map_err(|_| syntax())?
        };
        for _ in fraction.len()..Self::SCALE as usize {
            frac *= 10;
        }
        whole
            .checked_mul(Self::ONE)
            .and_then(|w| w.checked_add(frac))
            .map(Self)
            .ok_or_else(too_large)
    }
}

impl fmt::Display for Micros {
    /// The shortest exact decimal: `2.5`, `0.000001`, `3`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / Self::ONE;
        let frac = self.0 % Self::ONE;
        if frac == 0 {
            return write!(f, "{whole}");
        }
        let frac = format!("{frac:06}");
        write!(f, "{whole}.{}", frac.trim_end_matches('0'))
    }
}

impl Serialize for Micros {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Micros {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Pay-as-you-go rates per million tokens of each type, in the pricing's currency. A type
/// without its own rate falls back: cached and cache-write input, audio and image input to
/// `input`; reasoning and audio output to `output`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rates {
    /// Plain input.
    pub input: Micros,
    /// Output.
    pub output: Micros,
    /// Cache reads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<Micros>,
    /// Cache writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_input: Option<Micros>,
    /// Audio input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_input: Option<Micros>,
    /// Image input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_input: Option<Micros>,
    /// Reasoning output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_output: Option<Micros>,
    /// Audio output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio_output: Option<Micros>,
}

impl Rates {
    /// The rate per million tokens of `kind`, fallbacks applied.
    pub fn per_million(&self, kind: TokenType) -> Micros {
        let (own, base) = match kind {
            TokenType::Input => (None, self.input),
            TokenType::CachedInput => (self.cached_input, self.input),
            TokenType::CacheWriteInput => (self.cache_write_input, self.input),
            TokenType::AudioInput => (self.audio_input, self.input),
            TokenType::ImageInput => (self.image_input, self.input),
            TokenType::Output => (None, self.output),
            TokenType::ReasoningOutput => (self.reasoning_output, self.output),
            TokenType::AudioOutput => (self.audio_output, self.output),
        };
        own.unwrap_or(base)
    }

    /// The highest rate of an input class and of an output class: what reserving a call of
    /// unknown token mix may cost at most.
    pub fn highest(&self) -> (Micros, Micros) {
        let max = |input: bool| {
            TokenType::ALL
                .into_iter()
                .filter(|t| t.is_input() == input)
                .map(|t| self.per_million(t))
                .max()
                .unwrap_or_default()
        };
        (max(true), max(false))
    }
}

/// Rates for the models a pattern names.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ModelRates {
    /// The model these rates are for: the name the client asked for, or a prefix of the model
    /// the backend reported (`gpt-4o` matches `gpt-4o-2024-08-06`). `None`: every model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// The rates.
    #[serde(flatten)]
    pub rates: Rates,
}

impl ModelRates {
    /// Whether these rates apply to a call for `requested` answered by `reported`.
    pub fn matches(&self, requested: &str, reported: Option<&str>) -> bool {
        match &self.model {
            None => true,
            Some(model) => {
                model == requested || reported.is_some_and(|r| r.starts_with(model.as_str()))
            }
        }
    }
}

/// The length of time a provisioned cost is quoted for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
pub enum CostPeriod {
    /// Per hour.
    Hour,
    /// Per calendar month: each hour of the month costs the month's amount divided by the
    /// month's hours.
    Month,
}

/// A fixed cost for reserved capacity (a PTU deployment), whatever it serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProvisionedCost {
    /// The amount per `per`.
    pub amount: Micros,
    /// The period the amount is quoted for.
    pub per: CostPeriod,
}

/// The prices of one backend, pool defaults merged in.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pricing {
    /// ISO 4217 code (`USD`, `EUR`), upper case.
    pub currency: String,
    /// Pay-as-you-go rates, first match wins (the backend's own, then the pool's). For a
    /// provisioned backend they only weigh each app's use when its fixed cost is shared out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rates: Vec<ModelRates>,
    /// Fixed cost of reserved capacity; calls served here are not metered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provisioned: Option<ProvisionedCost>,
}

impl Pricing {
    /// The rates for a call for `requested` answered by `reported`, if any apply.
    pub fn rates_for(&self, requested: &str, reported: Option<&str>) -> Option<&Rates> {
        self.rates
            .iter()
            .find(|r| r.matches(requested, reported))
            .map(|r| &r.rates)
    }
}

/// The highest metered rates of a set of backends in one currency: what reserving a call that
/// may be routed to any of them can cost at most, per million input and output tokens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpendCeiling {
    /// ISO 4217 code.
    pub currency: String,
    /// Highest rate of any input type.
    pub input: Micros,
    /// Highest rate of any output type.
    pub output: Micros,
}

impl SpendCeiling {
    /// The ceilings of `pricings`, one per currency: the highest rates of every metered
    /// backend's every rate entry (a provisioned backend costs nothing per call).
    pub fn of<'a>(pricings: impl IntoIterator<Item = &'a Pricing>) -> Vec<SpendCeiling> {
        let mut out: Vec<SpendCeiling> = Vec::new();
        for pricing in pricings {
            if pricing.provisioned.is_some() {
                continue;
            }
            for entry in &pricing.rates {
                let (input, output) = entry.rates.highest();
                match out.iter_mut().find(|c| c.currency == pricing.currency) {
                    Some(ceiling) => {
                        ceiling.input = ceiling.input.max(input);
                        ceiling.output = ceiling.output.max(output);
                    }
                    None => out.push(SpendCeiling {
                        currency: pricing.currency.clone(),
                        input,
                        output,
                    }),
                }
            }
        }
        out
    }

    /// The most `prompt` input and `completion` output tokens can cost, in billionths of the
    /// currency (nanos), rounded up.
    pub fn nanos(&self, prompt: u64, completion: u64) -> u64 {
        let picos = u128::from(prompt) * u128::from(self.input.0)
            + u128::from(completion) * u128::from(self.output.0);
        u64::try_from(picos.div_ceil(1000)).unwrap_or(u64::MAX)
    }
}

/// How much each token type counts toward a quota's token limits, in millionths (`1_000_000`
/// = counts fully, the default for every type; `100_000` = counts a tenth).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TokenWeights(pub std::collections::BTreeMap<TokenType, Micros>);

impl TokenWeights {
    /// Whether every type counts fully.
    pub fn is_default(&self) -> bool {
        self.0.values().all(|w| w.0 == Micros::ONE)
    }

    /// The weight of `kind` in millionths.
    pub fn weight(&self, kind: TokenType) -> u64 {
        self.0.get(&kind).map_or(Micros::ONE, |w| w.0)
    }

    /// The weighted count of `counts` (tokens per type), rounded up to a whole token.
    pub fn apply(&self, counts: impl IntoIterator<Item = (TokenType, u64)>) -> u64 {
        let millionths: u128 = counts
            .into_iter()
            .map(|(kind, n)| u128::from(n) * u128::from(self.weight(kind)))
            .sum();
        u64::try_from(millionths.div_ceil(u128::from(Micros::ONE))).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests;
