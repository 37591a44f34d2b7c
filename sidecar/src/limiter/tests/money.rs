//! Money budgets and token weights: reserve at the highest price, true up with the real cost,
//! 403 naming the reset; weighted token counts.

use spillway_crds::billing::{Micros, SpendCeiling, TokenType, TokenWeights};
use spillway_crds::snapshot::{BudgetConfig, QuotaConfig, QuotaPeriod};

use super::{ManualClock, T0, admitted, call, limiter, quota, refused, tpm, utc};
use crate::limiter::{Refusal, Used};

fn budget(amount_micros: u64, currency: &str) -> QuotaConfig {
    QuotaConfig {
        budgets: vec![BudgetConfig {
            period: QuotaPeriod::Daily,
            amount: Micros(amount_micros),
            currency: currency.into(),
        }],
        ..quota("spend", Some("app"))
    }
}

/// 2.00 per million input tokens, 8.00 per million output tokens.
fn usd() -> Vec<SpendCeiling> {
    vec![SpendCeiling {
        currency: "USD".into(),
        input: Micros(2_000_000),
        output: Micros(8_000_000),
    }]
}

fn spent(nanos: u64) -> Used<'static> {
    Used {
        spend: Some(("USD", nanos)),
        ..Used::tokens(0)
    }
}

#[tokio::test]
async fn a_budget_reserves_the_highest_price_and_trues_up_to_the_real_cost() {
    let clock = ManualClock::at(T0);
    // 0.01 USD a day = 10,000,000 nanos.
    let limiter = limiter(&clock, vec![budget(10_000, "USD")]);
    let ceilings = usd();
    // 1000 prompt + 500 output at 2 and 8 per million: 0.006 = 6,000,000 nanos reserved.
    let request = crate::limiter::AdmitRequest {
        spend_ceiling: &ceilings,
        ..call("app", 1_000, Some(500))
    };
    let first = admitted(&limiter, &request).await;
    // A second reservation of 6,000,000 does not fit beside the first (12 > 10).
    let refusal = refused(&limiter, &request).await;
    let Refusal::BudgetExhausted {
        quota,
        period,
        currency,
        resets_at,
    } = &refusal
    else {
        panic!("expected a budget refusal, got {refusal:?}");
    };
    assert_eq!(
        (quota.as_str(), *period, currency.as_str()),
        ("spend", QuotaPeriod::Daily, "USD")
    );
    assert_eq!(
        crate::calendar::unix_ms(*resets_at),
        utc(2025, 1, 5, 0, 0),
        "the next UTC day"
    );
    assert_eq!(refusal.code(), "budget_exceeded");
    assert!(
        refusal
            .to_string()
            .contains("resets at 2025-01-05T00:00:00Z"),
        "{refusal}"
    );
    // The call really cost 0.001: the rest comes back, and two more such calls fit.
    first.settle(&spent(1_000_000));
    admitted(&limiter, &request).await.settle(&spent(1_000_000));
    // Used 2,000,000; a 6,000,000 reservation leaves 2,000,000.
    let third = admitted(&limiter, &request).await;
    refused(&limiter, &request).await;
    // An overshoot is charged: the budget is then spent for the day.
    third.settle(&spent(9_000_000));
    let small = crate::limiter::AdmitRequest {
        spend_ceiling: &ceilings,
        ..call("app", 1, Some(1))
    };
    assert!(matches!(
        refused(&limiter, &small).await,
        Refusal::BudgetExhausted { .. }
    ));
    // The next day starts afresh.
    clock.set(std::time::Duration::from_millis(
        u64::try_from(utc(2025, 1, 5, 0, 0) - T0).expect("later"),
    ));
    admitted(&limiter, &request).await.settle(&spent(0));
}

#[tokio::test]
async fn costs_in_another_currency_and_unpriced_pools_do_not_count() {
    let clock = ManualClock::at(T0);
    let limiter = limiter(&clock, vec![budget(1, "EUR")]);
    let ceilings = usd();
    let request = crate::limiter::AdmitRequest {
        spend_ceiling: &ceilings,
        ..call("app", 1_000_000, Some(1_000_000))
    };
    // Nothing in EUR can be spent here: reserved 0, and a USD cost is not an EUR cost.
    for _ in 0..3 {
        admitted(&limiter, &request)
            .await
            .settle(&spent(u64::MAX / 2));
    }
    let unpriced = call("app", 1_000_000, None);
    admitted(&limiter, &unpriced).await.settle(&Used::tokens(5));
}

#[tokio::test]
async fn token_weights_count_each_type_by_its_weight() {
    let clock = ManualClock::at(T0);
    let mut weights = TokenWeights::default();
    weights.0.insert(TokenType::CachedInput, Micros(100_000));
    let weighted = QuotaConfig {
        token_weights: weights,
        ..tpm("weighted", Some("app"), 1_000)
    };
    let limiter = limiter(&clock, vec![weighted]);
    // Reserved at the highest weight (1): 500 + 100.
    let r = admitted(&limiter, &call("app", 500, Some(100))).await;
    assert_eq!(r.headers().remaining_tokens, Some(400));
    // Used: 50 plain input, 450 cached (a tenth: 45), 100 output → 195.
    let mut used = Used::tokens(50);
    used.tokens[1] = (TokenType::CachedInput, 450);
    used.tokens[5] = (TokenType::Output, 100);
    r.settle(&used);
    let r = admitted(&limiter, &call("app", 0, Some(0))).await;
    assert_eq!(r.headers().remaining_tokens, Some(1_000 - 195));
}

#[tokio::test]
async fn a_reservation_larger_than_the_whole_budget_is_refused() {
    let clock = ManualClock::at(T0);
    // 0.001 USD; the call reserves 0.006.
    let limiter = limiter(&clock, vec![budget(1_000, "USD")]);
    let ceilings = usd();
    let request = crate::limiter::AdmitRequest {
        spend_ceiling: &ceilings,
        ..call("app", 1_000, Some(500))
    };
    assert!(matches!(
        refused(&limiter, &request).await,
        Refusal::BudgetExhausted { .. }
    ));
}
