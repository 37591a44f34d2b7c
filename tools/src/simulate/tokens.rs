//! What a model call bills, by token type, and the usage objects that report it: which
//! models reason, how many hidden reasoning tokens their answer carries, and the chat and
//! responses `usage` in either reporting shape ([`ReasoningUsage`]).
//!
//! A model reasons when its name (the body's `model`, else the deployment) starts with
//! `o1`, `o3`, `o4` or `gpt-5`, ignoring case, or is one of the backend's
//! `reasoningModels`. Its chat and responses answers think before they answer: with `V`
//! visible completion tokens planned and `P` prompt tokens, [`plan_reasoning`] gives
//! `R = 2·V + ⌊P/4⌋` reasoning tokens. When the request sets a maximum `M`
//! (`max_completion_tokens`, `max_tokens` or `max_output_tokens`), reasoning comes first and
//! takes at most `⌊M/2⌋`, and the visible answer gets at most what is left, so
//! `R + V ≤ M` (for `M ≥ 1`; the answer keeps at least one visible token). Legacy
//! completions, embeddings and every other model reason for 0 tokens.
//!
//! Input: the counts of one call. Output: a [`TokenUsage`] and its JSON.

use serde_json::{Value, json};

use super::config::ReasoningUsage;

/// Name prefixes of the models that reason, lowercase.
const REASONING_PREFIXES: [&str; 4] = ["o1", "o3", "o4", "gpt-5"];

/// Whether `model` reasons: a known prefix, or one of `listed` (both ignoring case).
pub fn is_reasoning_model(model: &str, listed: &[String]) -> bool {
    let lower = model.to_ascii_lowercase();
    REASONING_PREFIXES.iter().any(|p| lower.starts_with(p))
        || listed.iter().any(|m| m.eq_ignore_ascii_case(model))
}

/// The visible length and the reasoning tokens of a reasoning model's answer that would be
/// `length` visible tokens, for `prompt` prompt tokens and the requested maximum `max`.
pub fn plan_reasoning(prompt: u64, length: u32, max: Option<u64>) -> (u32, u64) {
    let wanted = 2 * u64::from(length) + prompt / 4;
    let Some(max) = max else {
        return (length, wanted);
    };
    let reasoning = wanted.min(max / 2);
    let visible = u64::from(length).min(max - reasoning).max(1);
    (u32::try_from(visible).unwrap_or(length), reasoning)
}

/// The tokens one answer bills, by type, and the shape its usage is reported in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenUsage {
    /// Prompt tokens (a chain's or conversation's context included).
    pub prompt: u64,
    /// Of `prompt`, those read from the prompt cache.
    pub cached: u64,
    /// Visible completion tokens (the text the client sees).
    pub visible: u64,
    /// Hidden reasoning tokens.
    pub reasoning: u64,
    /// Whether the reported completion count includes `reasoning`.
    pub shape: ReasoningUsage,
}

impl TokenUsage {
    /// Billed completion tokens: visible plus reasoning, whatever the shape.
    pub fn completion(&self) -> u64 {
        self.visible + self.reasoning
    }

    /// Prompt plus billed completion.
    pub fn total(&self) -> u64 {
        self.prompt + self.completion()
    }

    /// `completion_tokens` / `output_tokens` as the shape reports them.
    fn reported_completion(&self) -> u64 {
        match self.shape {
            ReasoningUsage::Included => self.completion(),
            ReasoningUsage::Separate => self.visible,
        }
    }

    /// Chat `usage`, with both detail objects as OpenAI sends them.
    pub fn chat(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.reported_completion(),
            "total_tokens": self.total(),
            "prompt_tokens_details": {"cached_tokens": self.cached, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": self.reasoning,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0
            }
        })
    }

    /// Responses-API `usage`.
    pub fn responses(&self) -> Value {
        json!({
            "input_tokens": self.prompt,
            "input_tokens_details": {"cached_tokens": self.cached},
            "output_tokens": self.reported_completion(),
            "output_tokens_details": {"reasoning_tokens": self.reasoning},
            "total_tokens": self.total()
        })
    }

    /// Legacy completions `usage`: totals only.
    pub fn legacy(&self) -> Value {
        json!({
            "prompt_tokens": self.prompt,
            "completion_tokens": self.reported_completion(),
            "total_tokens": self.total()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_reason() {
        let listed = ["My-Thinker".to_owned()];
        for model in [
            "o1",
            "o1-mini",
            "O3-pro",
            "o4-mini",
            "gpt-5",
            "GPT-5.1-codex",
        ] {
            assert!(is_reasoning_model(model, &[]), "{model}");
        }
        assert!(is_reasoning_model("my-thinker", &listed));
        for model in [
            "gpt-4o",
            "gpt-4.1",
            "omni",
            "text-embedding-3-small",
            "my-thinker",
        ] {
            assert!(!is_reasoning_model(model, &[]), "{model}");
        }
    }

    #[test]
    fn reasoning_is_derived_from_prompt_and_answer_and_fits_the_maximum() {
        assert_eq!(plan_reasoning(9, 20, None), (20, 42));
        // Within a maximum: reasoning takes half (rounded down), the answer the rest.
        assert_eq!(plan_reasoning(9, 10, Some(10)), (5, 5));
        assert_eq!(plan_reasoning(9, 7, Some(7)), (4, 3));
        assert_eq!(plan_reasoning(9, 1, Some(1)), (1, 0));
        // A maximum above what the model wants leaves both as planned.
        assert_eq!(plan_reasoning(8, 4096, Some(100_000)), (4096, 8194));
        for (prompt, max) in [(0, 2), (40, 3), (1000, 64), (3, 4096), (5, 9000)] {
            let length = max.min(4096) as u32;
            let (visible, reasoning) = plan_reasoning(prompt, length, Some(max));
            assert!(u64::from(visible) + reasoning <= max, "{prompt} {max}");
            assert!(visible >= 1 && reasoning >= 1, "{prompt} {max}");
        }
    }

    #[test]
    fn both_shapes_bill_the_same_and_report_reasoning() {
        let included = TokenUsage {
            prompt: 100,
            cached: 0,
            visible: 5,
            reasoning: 7,
            shape: ReasoningUsage::Included,
        };
        let separate = TokenUsage {
            shape: ReasoningUsage::Separate,
            ..included
        };
        assert_eq!((included.completion(), included.total()), (12, 112));
        assert_eq!((separate.completion(), separate.total()), (12, 112));
        let chat = included.chat();
        assert_eq!(chat["completion_tokens"], 12);
        assert_eq!(chat["total_tokens"], 112);
        assert_eq!(chat["completion_tokens_details"]["reasoning_tokens"], 7);
        assert_eq!(chat["completion_tokens_details"]["audio_tokens"], 0);
        assert_eq!(chat["prompt_tokens_details"]["audio_tokens"], 0);
        let chat = separate.chat();
        assert_eq!(chat["completion_tokens"], 5);
        assert_eq!(chat["total_tokens"], 112);
        let responses = included.responses();
        assert_eq!(responses["output_tokens"], 12);
        assert_eq!(responses["output_tokens_details"]["reasoning_tokens"], 7);
        let responses = separate.responses();
        assert_eq!(responses["output_tokens"], 5);
        assert_eq!(responses["total_tokens"], 112);
    }
}
