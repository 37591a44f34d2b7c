use super::*;

#[test]
fn amounts_parse_exactly_and_print_shortest() {
    for (text, micros, shown) in [
        ("2.50", 2_500_000, "2.5"),
        ("0.000001", 1, "0.000001"),
        ("3", 3_000_000, "3"),
        (".5", 500_000, "0.5"),
        ("0.0750000", 75_000, "0.075"),
        ("0", 0, "0"),
    ] {
        let parsed: Micros = text.parse().expect(text);
        assert_eq!(parsed, Micros(micros), "{text}");
        assert_eq!(parsed.to_string(), shown);
    }
}

#[test]
fn bad_amounts_say_why() {
    for text in ["", ".", "1.", "-1", "1e3", "1,5", "abc", "1.2.3", " 1"] {
        assert!(
            matches!(text.parse::<Micros>(), Err(AmountError::Syntax(_))),
            "{text}"
        );
    }
    assert!(matches!(
        "0.0000001".parse::<Micros>(),
        Err(AmountError::TooPrecise(_))
    ));
    assert!(matches!(
        "99999999999999999999".parse::<Micros>(),
        Err(AmountError::TooLarge(_))
    ));
    assert!(matches!(
        "18446744073709.551616".parse::<Micros>(),
        Err(AmountError::TooLarge(_))
    ));
}

#[test]
fn missing_rates_fall_back_to_input_and_output() {
    let rates = Rates {
        input: Micros(2_500_000),
        output: Micros(10_000_000),
        cached_input: Some(Micros(1_250_000)),
        ..Rates::default()
    };
    assert_eq!(rates.per_million(TokenType::CachedInput), Micros(1_250_000));
    assert_eq!(rates.per_million(TokenType::AudioInput), Micros(2_500_000));
    assert_eq!(
        rates.per_million(TokenType::ReasoningOutput),
        Micros(10_000_000)
    );
    assert_eq!(rates.highest(), (Micros(2_500_000), Micros(10_000_000)));
}

#[test]
fn model_rates_match_the_requested_name_or_a_prefix_of_the_reported_model() {
    let rates = ModelRates {
        model: Some("gpt-4o".into()),
        rates: Rates::default(),
    };
    assert!(rates.matches("gpt-4o", None));
    assert!(rates.matches("chat", Some("gpt-4o-2024-08-06")));
    assert!(!rates.matches("chat", Some("gpt-4.1")));
    assert!(!rates.matches("chat", None));
    assert!(ModelRates::default().matches("anything", None));
}

#[test]
fn token_types_split_into_input_and_output() {
    let inputs: Vec<_> = TokenType::ALL.iter().filter(|t| t.is_input()).collect();
    assert_eq!(inputs.len(), 5);
    assert_eq!(TokenType::ReasoningOutput.to_string(), "reasoning_output");
    let json = serde_json::to_string(&TokenType::CacheWriteInput).expect("serialises");
    assert_eq!(json, "\"cache_write_input\"");
}

#[test]
fn token_weights_default_to_one_and_round_up() {
    let none = TokenWeights::default();
    assert!(none.is_default());
    assert_eq!(
        none.apply([(TokenType::Input, 10), (TokenType::CachedInput, 90)]),
        100
    );
    let mut weights = TokenWeights::default();
    weights.0.insert(TokenType::CachedInput, Micros(100_000));
    assert!(!weights.is_default());
    assert_eq!(
        weights.apply([(TokenType::Input, 10), (TokenType::CachedInput, 90)]),
        19
    );
    assert_eq!(weights.apply([(TokenType::CachedInput, 1)]), 1);
}

#[test]
fn spend_ceilings_take_the_highest_metered_rate_per_currency() {
    let metered = |currency: &str, input: u64, output: u64| Pricing {
        currency: currency.into(),
        rates: vec![ModelRates {
            model: None,
            rates: Rates {
                input: Micros(input),
                output: Micros(output),
                cached_input: Some(Micros(input / 2)),
                ..Rates::default()
            },
        }],
        provisioned: None,
    };
    let mut ptu = metered("USD", 99_000_000, 99_000_000);
    ptu.provisioned = Some(ProvisionedCost {
        amount: Micros(1),
        per: CostPeriod::Hour,
    });
    let pricings = [
        metered("USD", 2_500_000, 10_000_000),
        metered("USD", 2_750_000, 11_000_000),
        metered("EUR", 1_000_000, 4_000_000),
        ptu,
    ];
    let ceilings = SpendCeiling::of(&pricings);
    assert_eq!(ceilings.len(), 2);
    assert_eq!(
        (
            ceilings[0].currency.as_str(),
            ceilings[0].input,
            ceilings[0].output
        ),
        ("USD", Micros(2_750_000), Micros(11_000_000))
    );
    // 1000 × 2.75 + 500 × 11 per million = 0.00825 = 8,250,000 nanos.
    assert_eq!(ceilings[0].nanos(1000, 500), 8_250_000);
    assert_eq!(ceilings[1].nanos(1, 0), 1_000);
    let tiny = SpendCeiling {
        currency: "EUR".into(),
        input: Micros(1),
        output: Micros(0),
    };
    assert_eq!(tiny.nanos(1, 0), 1, "rounded up");
}
