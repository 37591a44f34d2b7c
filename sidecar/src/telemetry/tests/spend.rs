//! `spillway.cost` from records on an injected clock: metered calls exact with carried
//! remainders; a PTU hour shared between two apps, shares plus unallocated equal to the
//! hour's price to the millionth; the fleet-wide inputs (weights, the hour's price) beside it.

use std::sync::Arc;

use super::{samples, served, value};
use crate::cost::{CallCost, CostKind, Picos};
use crate::proxy::Gateway;
use crate::subscribe::file::{LocalSecrets, load_text};
use crate::telemetry::{Telemetry, TelemetrySettings};
use crate::usage::{UsageRecord, UsageSink};

const PRICED: &str = "apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: chat}
spec:
  models: [gpt-4o]
  pricing:
    currency: USD
    rates: [{input: '2.50', output: '10.00'}]
  backends:
    - name: ptu
      url: https://ptu.openai.azure.com
      pricing: {provisioned: {amount: '7.00', per: Hour}}
    - name: paygo
      type: OpenAI
      url: http://127.0.0.1:8081
      priority: 2
";

/// 2026-12-07T10:00:00Z.
const T0: i64 = 1_796_637_600_000;
const HOUR: i64 = 3_600_000;

fn priced() -> Telemetry {
    let gateway = Gateway::new(UsageSink::new(16));
    let snapshot = load_text(PRICED, &LocalSecrets::default()).expect("valid manifests");
    gateway.apply(Arc::new(snapshot));
    Telemetry::start(&TelemetrySettings::default(), Arc::new(gateway)).expect("no OTLP")
}

fn costing(app: &str, backend: &str, kind: CostKind, picos: u128) -> UsageRecord {
    UsageRecord {
        cost: Some(CallCost {
            currency: "USD".into(),
            kind,
            amount: Picos(picos),
        }),
        ..served(app, backend, 10, 2)
    }
}

fn record(telemetry: &Telemetry, record: &UsageRecord, at_ms: i64) {
    let inner = &telemetry.inner;
    let snapshot = inner.gateway.snapshot();
    inner.spend.configure(snapshot.as_deref(), at_ms);
    let app = inner.apps.label(&record.app_id);
    let model = Some(record.model.clone().into());
    inner.spend.record(record, &app, model.as_ref(), at_ms);
}

fn cost(text: &str, labels: &[(&str, &str)]) -> f64 {
    value(text, "spillway_cost_total", labels)
}

#[test]
fn metered_cost_is_counted_exactly_across_sub_micro_calls() {
    let telemetry = priced();
    telemetry.inner.spend.configure(None, T0);
    // 0.4 millionths per call: nothing shows until whole millionths add up, then exactly.
    for i in 0..10 {
        record(
            &telemetry,
            &costing("a", "paygo", CostKind::Metered, 400_000),
            T0 + i,
        );
    }
    let text = telemetry.prometheus();
    let metered = [("spillway_app_id", "a"), ("spillway_cost_kind", "metered")];
    assert!((cost(&text, &metered) - 4.0).abs() < f64::EPSILON, "{text}");
    let kinds: Vec<_> = samples(&text)
        .into_iter()
        .filter(|(n, _, _)| n == "spillway_cost_total")
        .map(|(_, l, _)| l)
        .collect();
    let labels = &kinds[0];
    for (key, expected) in [
        ("spillway_pool", "chat"),
        ("spillway_backend", "paygo"),
        ("spillway_cost_currency", "USD"),
        ("gen_ai_request_model", "gpt-4o"),
    ] {
        assert_eq!(
            labels.get(key).map(String::as_str),
            Some(expected),
            "{labels:?}"
        );
    }
}

#[test]
fn a_ptu_hour_is_shared_between_two_apps_to_the_millionth() {
    let telemetry = priced();
    let snapshot = telemetry.inner.gateway.snapshot();
    telemetry.inner.spend.configure(snapshot.as_deref(), T0);
    // App a weighs 1/3 and app b 2/3 of the hour's price-weighted tokens.
    record(
        &telemetry,
        &costing("a", "ptu", CostKind::Provisioned, 1_000),
        T0 + 5,
    );
    record(
        &telemetry,
        &costing("b", "ptu", CostKind::Provisioned, 2_000),
        T0 + 10,
    );
    let before = telemetry.prometheus();
    assert!(
        cost(&before, &[("spillway_cost_kind", "provisioned")]) == 0.0,
        "not before the hour ends"
    );
    // The hour ends; the next one passes with no traffic at all.
    telemetry
        .inner
        .spend
        .configure(snapshot.as_deref(), T0 + 2 * HOUR + 1);
    let text = telemetry.prometheus();
    let share = |app: &str| {
        cost(
            &text,
            &[
                ("spillway_app_id", app),
                ("spillway_cost_kind", "provisioned"),
            ],
        )
    };
    assert_eq!((share("a"), share("b")), (2_333_333.0, 4_666_667.0));
    let unallocated = cost(
        &text,
        &[
            ("spillway_cost_kind", "unallocated"),
            ("spillway_backend", "ptu"),
        ],
    );
    assert_eq!(unallocated, 7_000_000.0, "the idle hour");
    assert_eq!(
        share("a") + share("b") + unallocated,
        14_000_000.0,
        "two hours at 7.00"
    );
}
