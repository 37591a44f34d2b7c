//! The usage and cost fields of one call, as every per-call signal carries them: span
//! attributes, OTLP log records (request and audit).
//!
//! Input: a [`Usage`] and its optional [`CallCost`]. Output: `(key, value)` pairs — always the
//! input and output totals, then each non-zero subset (`gen_ai.usage.cache_read.input_tokens`,
//! …) and the cost (`spillway.cost.amount` as an exact decimal, currency, kind). A leaf.

use std::borrow::Cow;

use super::semconv::attr;
use crate::cost::CallCost;
use crate::usage::Usage;

/// One field's value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    /// A token count.
    Int(i64),
    /// Text.
    Text(Cow<'static, str>),
}

/// The fields of `usage` and `cost`.
pub fn usage_fields(usage: &Usage, cost: Option<&CallCost>) -> Vec<(&'static str, FieldValue)> {
    let int = |n: u64| FieldValue::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let mut fields = vec![
        (attr::USAGE_INPUT_TOKENS, int(usage.prompt_tokens)),
        (attr::USAGE_OUTPUT_TOKENS, int(usage.completion_tokens)),
    ];
    let subsets = [
        (attr::USAGE_CACHE_READ_INPUT_TOKENS, usage.cached_tokens),
        (
            attr::USAGE_CACHE_WRITE_INPUT_TOKENS,
            usage.cache_write_tokens,
        ),
        (attr::USAGE_REASONING_OUTPUT_TOKENS, usage.reasoning_tokens),
        (attr::USAGE_AUDIO_INPUT_TOKENS, usage.audio_input_tokens),
        (attr::USAGE_IMAGE_INPUT_TOKENS, usage.image_input_tokens),
        (attr::USAGE_AUDIO_OUTPUT_TOKENS, usage.audio_output_tokens),
    ];
    fields.extend(
        subsets
            .into_iter()
            .filter(|&(_, n)| n > 0)
            .map(|(key, n)| (key, int(n))),
    );
    if let Some(cost) = cost {
        fields.push((
            attr::COST_AMOUNT,
            FieldValue::Text(cost.amount.to_string().into()),
        ));
        fields.push((
            attr::COST_CURRENCY,
            FieldValue::Text(cost.currency.clone().into()),
        ));
        fields.push((attr::COST_KIND, FieldValue::Text(cost.kind.as_str().into())));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{CostKind, Picos};

    #[test]
    fn totals_always_subsets_when_present_and_the_exact_cost() {
        let usage = Usage {
            cached_tokens: 5,
            ..Usage::totals(10, 2)
        };
        let cost = CallCost {
            currency: "USD".into(),
            kind: CostKind::Metered,
            amount: Picos(27_500_000),
        };
        let fields = usage_fields(&usage, Some(&cost));
        let keys: Vec<_> = fields.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                attr::USAGE_INPUT_TOKENS,
                attr::USAGE_OUTPUT_TOKENS,
                attr::USAGE_CACHE_READ_INPUT_TOKENS,
                attr::COST_AMOUNT,
                attr::COST_CURRENCY,
                attr::COST_KIND
            ]
        );
        assert_eq!(fields[3].1, FieldValue::Text("0.0000275".into()));
        assert_eq!(usage_fields(&Usage::default(), None).len(), 2);
    }
}
