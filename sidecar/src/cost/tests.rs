use spillway_crds::billing::{ModelRates, ProvisionedCost, Rates};

use super::*;
use crate::usage::Usage;

fn rates(model: Option<&str>, input: &str, cached: &str, output: &str) -> ModelRates {
    ModelRates {
        model: model.map(Into::into),
        rates: Rates {
            input: input.parse().expect("input"),
            cached_input: Some(cached.parse().expect("cached")),
            output: output.parse().expect("output"),
            ..Rates::default()
        },
    }
}

fn usage() -> Usage {
    Usage {
        prompt_tokens: 2006,
        completion_tokens: 300,
        cached_tokens: 1920,
        reasoning_tokens: 192,
        ..Usage::default()
    }
}

#[test]
fn metered_cost_is_tokens_times_rates_by_type_exactly() {
    let pricing = Pricing {
        currency: "USD".into(),
        rates: vec![rates(Some("gpt-4o"), "2.50", "1.25", "10")],
        provisioned: None,
    };
    let cost = price(
        &pricing,
        usage().by_type(),
        "chat",
        Some("gpt-4o-2024-08-06"),
    )
    .expect("priced");
    // 86 × 2.50 + 1920 × 1.25 + (108 + 192) × 10, per million.
    let expected = 86 * 2_500_000 + 1920 * 1_250_000 + 300 * 10_000_000;
    assert_eq!(cost.amount, Picos(expected));
    assert_eq!(cost.kind, CostKind::Metered);
    assert_eq!(cost.amount.to_string(), "0.005615");
    assert!(price(&pricing, usage().by_type(), "chat", Some("gpt-4.1")).is_none());
}

#[test]
fn a_provisioned_backend_weighs_calls_by_its_rates_or_per_token() {
    let mut pricing = Pricing {
        currency: "EUR".into(),
        rates: vec![rates(None, "2", "1", "8")],
        provisioned: Some(ProvisionedCost {
            amount: Micros(2_000_000),
            per: spillway_crds::billing::CostPeriod::Hour,
        }),
    };
    let cost = price(&pricing, usage().by_type(), "chat", None).expect("weighed");
    assert_eq!(cost.kind, CostKind::Provisioned);
    assert_eq!(
        cost.amount,
        Picos(86 * 2_000_000 + 1920 * 1_000_000 + 300 * 8_000_000)
    );
    pricing.rates.clear();
    let cost = price(&pricing, usage().by_type(), "chat", None).expect("weighed");
    assert_eq!(cost.amount, Picos(2306));
}

#[test]
fn picos_print_exact_decimals() {
    assert_eq!(Picos(2_500_000).to_string(), "0.0000025");
    assert_eq!(Picos(3 * Picos::PER_UNIT).to_string(), "3");
    assert_eq!(Picos(1).to_string(), "0.000000000001");
    assert_eq!(Picos(2_500_001_000_000).split_micros(), (2_500_001, 0));
    assert_eq!(Picos(1_500_000).split_micros(), (1, 500_000));
}

/// The worked example of docs/chargeback.md, to the digit.
#[test]
fn the_documented_worked_example_holds() {
    let pricing = Pricing {
        currency: "USD".into(),
        rates: vec![ModelRates {
            model: Some("o4-mini".into()),
            rates: Rates {
                input: "1.10".parse().expect("input"),
                cached_input: Some("0.275".parse().expect("cached")),
                output: "4.40".parse().expect("output"),
                ..Rates::default()
            },
        }],
        provisioned: None,
    };
    let cost = price(&pricing, usage().by_type(), "o4-mini", None).expect("priced");
    assert_eq!(cost.amount.to_string(), "0.0019426");
}
