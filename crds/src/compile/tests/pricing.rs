//! `compile()` of prices and token weights: a backend's pricing merged with the pool's, every
//! problem named by field, and defaults left out of the snapshot's JSON.

use super::support::compile_text;
use crate::billing::{CostPeriod, Micros, ProvisionedCost, TokenType};
use crate::compile::{Problem, ProblemReason};

const HEAD: &str = "apiVersion: spillway.dev/v1alpha1\nkind: AIBackendPool\n\
                    metadata: {name: chat, namespace: team-a}\nspec:\n  models: [gpt-4o, embed]\n";

/// A pool whose backends `ptu`, `paygo` and `eu` have the pricing given (YAML flow mappings,
/// empty for none), and whose own `spec.pricing` is `pool` (empty for none).
fn pool(pool: &str, ptu: &str, paygo: &str, eu: &str) -> String {
    let backend = |name: &str, pricing: &str| {
        let pricing = if pricing.is_empty() {
            String::new()
        } else {
            format!(", pricing: {pricing}")
        };
        format!("    - {{name: {name}, url: 'https://{name}.example.com'{pricing}}}\n")
    };
    let pool = if pool.is_empty() {
        String::new()
    } else {
        format!("  pricing: {pool}\n")
    };
    format!(
        "{HEAD}  backends:\n{}{}{}{pool}",
        backend("ptu", ptu),
        backend("paygo", paygo),
        backend("eu", eu)
    )
}

const POOL_PRICES: &str = "{currency: USD, rates: [\
     {model: embed, input: '0.02'}, \
     {input: '2.50', output: '10.00', cachedInput: '1.25'}]}";

/// The one problem of `text`; the pool is not served.
fn only_problem(text: &str) -> Problem {
    let (snapshot, problems) = compile_text(text);
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(
        snapshot.pools.is_empty(),
        "a pool with a problem is not served"
    );
    problems.into_iter().next().expect("one")
}

fn assert_problem(text: &str, field: &str, needle: &str) {
    let p = only_problem(text);
    assert_eq!(
        (p.field.as_str(), p.reason),
        (field, ProblemReason::InvalidSpec),
        "{p}"
    );
    assert!(p.message.contains(needle), "{field}: {}", p.message);
}

#[test]
fn backend_rates_come_before_the_pools_and_currency_is_inherited() {
    let text = pool(
        POOL_PRICES,
        "{rates: [{model: gpt-4o, input: '1.00', output: '4.00'}], \
          provisioned: {amount: '2.00', per: Hour}}",
        "",
        "{currency: EUR, rates: [{input: '2.30', output: '9.20'}]}",
    );
    let (snapshot, problems) = compile_text(&text);
    assert!(problems.is_empty(), "{problems:#?}");
    let backends = &snapshot.pools[0].backends;
    let ptu = backends[0].pricing.as_ref().expect("ptu pricing");
    assert_eq!(ptu.currency, "USD", "inherited from the pool");
    let models: Vec<_> = ptu.rates.iter().map(|r| r.model.as_deref()).collect();
    assert_eq!(models, [Some("gpt-4o"), Some("embed"), None], "own first");
    assert_eq!(
        ptu.provisioned,
        Some(ProvisionedCost {
            amount: Micros(2_000_000),
            per: CostPeriod::Hour
        })
    );
    let own = ptu.rates_for("gpt-4o", None).expect("own rate");
    assert_eq!(
        (own.input, own.output),
        (Micros(1_000_000), Micros(4_000_000))
    );
    let fallback = ptu.rates_for("other", None).expect("the pool's catch-all");
    assert_eq!(
        fallback.per_million(TokenType::CachedInput),
        Micros(1_250_000)
    );

    let paygo = backends[1].pricing.as_ref().expect("the pool's pricing");
    assert_eq!(paygo.currency, "USD");
    assert_eq!(paygo.rates.len(), 2);
    assert_eq!(paygo.provisioned, None);
    let embed = paygo.rates_for("embed", None).expect("embed rate");
    assert_eq!(embed.output, Micros(0), "output defaults to 0");

    let eu = backends[2].pricing.as_ref().expect("own pricing");
    assert_eq!(eu.currency, "EUR");
    assert_eq!(eu.rates.len(), 1, "the pool's USD rates are never reached");
}

#[test]
fn no_pricing_anywhere_means_no_cost_and_nothing_in_the_json() {
    let (snapshot, problems) = compile_text(&pool("", "", "", ""));
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(
        snapshot.pools[0]
            .backends
            .iter()
            .all(|b| b.pricing.is_none())
    );
    let json = serde_json::to_string(&snapshot).expect("serialises");
    assert!(!json.contains("pricing"), "{json}");
}

#[test]
fn amounts_must_be_exact_decimals() {
    let cases = [
        (
            "'2.5e3'",
            "spec.pricing.rates[0].input",
            "not a decimal amount",
        ),
        (
            "'0.0000001'",
            "spec.pricing.rates[0].input",
            "more than 6 decimal places",
        ),
        (
            "'-1'",
            "spec.pricing.rates[0].input",
            "not a decimal amount",
        ),
    ];
    for (amount, field, needle) in cases {
        let text = pool(
            &format!("{{currency: USD, rates: [{{input: {amount}}}]}}"),
            "",
            "",
            "",
        );
        assert_problem(&text, field, needle);
    }
    let text = pool(
        "",
        "{currency: USD, provisioned: {amount: '2,00', per: Month}}",
        "",
        "",
    );
    assert_problem(
        &text,
        "spec.backends[0].pricing.provisioned.amount",
        "not a decimal amount",
    );
    let text = pool(
        "",
        "",
        "{currency: USD, rates: [{input: '1', audioOutput: '1.2.3'}]}",
        "",
    );
    assert_problem(
        &text,
        "spec.backends[1].pricing.rates[0].audioOutput",
        "not a decimal amount",
    );
}

#[test]
fn currency_is_required_and_iso_4217() {
    let rates = "rates: [{input: '1'}]";
    assert_problem(
        &pool("", &format!("{{{rates}}}"), "", ""),
        "spec.backends[0].pricing.currency",
        "here or in spec.pricing.currency",
    );
    // Two backends rely on the pool's missing currency: one problem, at the pool.
    assert_problem(
        &pool(
            &format!("{{{rates}}}"),
            "{currency: USD, rates: [{input: '1'}]}",
            "",
            "",
        ),
        "spec.pricing.currency",
        "which currency",
    );
    // Every backend says its currency: the pool's rates are in each backend's.
    let own = "{currency: EUR, provisioned: {amount: '1', per: Hour}}";
    let (snapshot, problems) = compile_text(&pool(&format!("{{{rates}}}"), own, own, own));
    assert!(problems.is_empty(), "{problems:#?}");
    let eu = snapshot.pools[0].backends[2]
        .pricing
        .as_ref()
        .expect("priced");
    assert_eq!((eu.currency.as_str(), eu.rates.len()), ("EUR", 1));
    for code in ["usd", "US", "EURO", "U$D"] {
        assert_problem(
            &pool(&format!("{{currency: '{code}', {rates}}}"), "", "", ""),
            "spec.pricing.currency",
            "not an ISO 4217 currency code",
        );
    }
}

#[test]
fn a_backend_in_another_currency_must_not_fall_back_to_the_pools_rates() {
    let text = pool(
        POOL_PRICES,
        "",
        "",
        "{currency: EUR, rates: [{model: gpt-4o, input: '2.30'}]}",
    );
    assert_problem(
        &text,
        "spec.backends[2].pricing.currency",
        "differs from spec.pricing.currency `USD`",
    );
    // With a rate for every model of its own, it never reaches the pool's: any currency.
    let text = pool(
        "{currency: USD, rates: [{input: '1'}]}",
        "{currency: EUR, provisioned: {amount: '1500', per: Month}, rates: [{input: '2'}]}",
        "",
        "",
    );
    let (_, problems) = compile_text(&text);
    assert!(problems.is_empty(), "a catch-all of its own: {problems:#?}");
}

#[test]
fn pricing_must_say_something_and_provisioned_belongs_on_a_backend() {
    assert_problem(
        &pool("", "{currency: USD}", "", ""),
        "spec.backends[0].pricing",
        "set rates",
    );
    assert_problem(
        &pool("{currency: USD}", "", "", ""),
        "spec.pricing",
        "set rates",
    );
    assert_problem(
        &pool(
            "{currency: USD, rates: [{input: '1'}], provisioned: {amount: '2', per: Hour}}",
            "",
            "",
            "",
        ),
        "spec.pricing.provisioned",
        "move it to that backend's pricing.provisioned",
    );
}

#[test]
fn rate_entries_that_can_never_match_are_reported() {
    assert_problem(
        &pool(
            "{currency: USD, rates: [{input: '1'}, {model: embed, input: '0.02'}]}",
            "",
            "",
            "",
        ),
        "spec.pricing.rates[1]",
        "never used",
    );
    assert_problem(
        &pool(
            "{currency: USD, rates: [{model: embed, input: '1'}, {model: embed, input: '2'}]}",
            "",
            "",
            "",
        ),
        "spec.pricing.rates[1].model",
        "listed twice",
    );
    assert_problem(
        &pool(
            "{currency: USD, rates: [{model: '', input: '1'}]}",
            "",
            "",
            "",
        ),
        "spec.pricing.rates[0].model",
        "write a model name",
    );
}

const QUOTA: &str = "apiVersion: spillway.dev/v1alpha1\nkind: TokenQuota\n\
                     metadata: {name: q, namespace: team-a}\nspec:\n  tokensPerMinute: 1000\n";

#[test]
fn token_weights_compile_and_default_weights_stay_out_of_the_json() {
    let (snapshot, problems) = compile_text(&format!(
        "{QUOTA}  tokenWeights: {{cachedInput: '0.1', output: '4'}}\n"
    ));
    assert!(problems.is_empty(), "{problems:#?}");
    let weights = &snapshot.quotas[0].token_weights;
    assert_eq!(weights.weight(TokenType::CachedInput), 100_000);
    assert_eq!(weights.weight(TokenType::Output), 4_000_000);
    assert_eq!(weights.weight(TokenType::Input), Micros::ONE);
    let json = serde_json::to_value(&snapshot.quotas[0]).expect("serialises");
    assert_eq!(
        json["tokenWeights"],
        serde_json::json!({"cached_input": "0.1", "output": "4"})
    );

    for spec in [
        "",
        "  tokenWeights: {}\n",
        "  tokenWeights: {input: '1.000'}\n",
    ] {
        let (snapshot, problems) = compile_text(&format!("{QUOTA}{spec}"));
        assert!(problems.is_empty(), "{problems:#?}");
        assert!(snapshot.quotas[0].token_weights.is_default());
        let json = serde_json::to_string(&snapshot).expect("serialises");
        assert!(!json.contains("tokenWeights"), "{spec}: {json}");
    }
}

#[test]
fn bad_token_weights_name_the_field() {
    for (weights, field, needle) in [
        (
            "{cachedInput: '1e-1'}",
            "spec.tokenWeights.cachedInput",
            "not a decimal amount",
        ),
        (
            "{reasoningOutput: '1000.5'}",
            "spec.tokenWeights.reasoningOutput",
            "more than 1000",
        ),
    ] {
        let (snapshot, problems) = compile_text(&format!("{QUOTA}  tokenWeights: {weights}\n"));
        assert!(
            snapshot.quotas.is_empty(),
            "a quota with a problem is not served"
        );
        assert_eq!(problems.len(), 1, "{problems:#?}");
        assert_eq!(problems[0].field, field);
        assert!(
            problems[0].message.contains(needle),
            "{}",
            problems[0].message
        );
    }
    let (_, problems) = compile_text(&format!("{QUOTA}  tokenWeights: {{output: '1000'}}\n"));
    assert!(problems.is_empty(), "1000 is the most: {problems:#?}");
}

#[test]
fn a_pricing_typo_keeps_the_last_good_prices_serving() {
    use crate::compile::{History, Served, compile_with_history};
    let at = |text: &str, generation| {
        let mut input = crate::manifest::parse(text).expect("fixture").input;
        input.pools[0].generation = Some(generation);
        input
    };
    let good = pool(POOL_PRICES, "", "", "");
    let first = compile_with_history(&at(&good, 1), &History::default(), &super::secrets());
    assert!(first.problems.is_empty(), "{:#?}", first.problems);
    let typo = good.replace("'2.50'", "'2.5e0'");
    let second = compile_with_history(&at(&typo, 2), &first.history, &super::secrets());
    assert_eq!(second.problems.len(), 1, "{:#?}", second.problems);
    assert_eq!(second.problems[0].field, "spec.pricing.rates[1].input");
    assert_eq!(
        second.served[&("AIBackendPool", "team-a/chat".to_owned())],
        Served::LastGood {
            generation: Some(1)
        }
    );
    let served = second.snapshot.pools[0].backends[0].pricing.as_ref();
    let input = served
        .and_then(|p| p.rates_for("gpt-4o", None))
        .map(|r| r.input);
    assert_eq!(input, Some(Micros(2_500_000)), "generation 1's rates");
}

mod budgets {
    use super::super::support::compile_text;
    use crate::billing::Micros;
    use crate::snapshot::BudgetConfig;
    use crate::v1alpha1::QuotaPeriod;

    const QUOTA: &str = "apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: spend, namespace: team}
spec:
  appId: app-a
  budgets:
    - {period: Monthly, amount: \"250.50\", currency: USD}
    - {period: Daily, amount: \"10\", currency: EUR}
";

    #[test]
    fn budgets_compile_exactly_and_are_a_limit_of_their_own() {
        let (snapshot, problems) = compile_text(QUOTA);
        assert!(problems.is_empty(), "{problems:?}");
        let quota = &snapshot.quotas[0];
        assert_eq!(
            quota.budgets,
            vec![
                BudgetConfig {
                    period: QuotaPeriod::Monthly,
                    amount: Micros(250_500_000),
                    currency: "USD".into()
                },
                BudgetConfig {
                    period: QuotaPeriod::Daily,
                    amount: Micros(10_000_000),
                    currency: "EUR".into()
                },
            ]
        );
    }

    #[test]
    fn bad_budgets_name_the_field_and_the_fix() {
        let bad = QUOTA
            .replace("\"250.50\", currency: USD", "\"0\", currency: usd")
            .replace(
                "\"10\", currency: EUR",
                "\"1e3\", currency: EUR}\n    - {period: Daily, amount: \"1\", currency: EUR",
            );
        let (snapshot, problems) = compile_text(&bad);
        let text = format!("{problems:?}");
        for expected in [
            "spec.budgets[0].amount",
            "must be more than 0",
            "spec.budgets[0].currency",
            "spec.budgets[1].amount",
            "spec.budgets[2].period",
            "listed twice",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
        assert!(snapshot.quotas.is_empty());
    }
}
