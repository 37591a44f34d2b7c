use super::*;
use spillway_crds::billing::Micros;

const H: i64 = HOUR_MS;
/// 2026-12-07T10:00:00Z.
const T0: i64 = 1_796_637_600_000;

fn key(backend: &str) -> BackendKey {
    ("chat".into(), backend.into())
}

fn app(name: &str) -> ShareKey {
    ShareKey {
        app: name.into(),
        model: "gpt-4o".into(),
        namespace: None,
    }
}

fn ptu(amount: &str, per: CostPeriod) -> ProvisionedBackend {
    ProvisionedBackend {
        currency: "USD".into(),
        cost: ProvisionedCost {
            amount: amount.parse().expect("amount"),
            per,
        },
    }
}

#[test]
fn two_apps_share_an_hour_to_the_micro_unit() {
    assert_eq!(T0 % H, 0, "T0 is on the hour");
    let mut ledger = ProvisionedLedger::default();
    assert!(
        ledger
            .configure([(key("ptu"), ptu("7.00", CostPeriod::Hour))], T0)
            .is_empty()
    );
    // 1/3 and 2/3 of the weight: 7.00 does not divide evenly in millionths.
    assert!(
        ledger
            .add(&key("ptu"), app("a"), Picos(1_000), T0 + 10)
            .is_empty()
    );
    ledger.add(&key("ptu"), app("b"), Picos(1_500), T0 + 20);
    ledger.add(&key("ptu"), app("b"), Picos(500), T0 + H - 1);
    let closed = ledger.close_due(T0 + H);
    assert_eq!(closed.len(), 1);
    let hour = &closed[0];
    assert_eq!((hour.hour_start_ms, hour.cost_micros), (T0, 7_000_000));
    assert_eq!(
        hour.shares,
        vec![(app("a"), 2_333_333), (app("b"), 4_666_667)]
    );
    let sum: u64 = hour.shares.iter().map(|(_, s)| s).sum();
    assert_eq!(sum + hour.unallocated_micros, 7_000_000);
    // The next hour opened empty: nobody used it, all of it is unallocated.
    let idle = ledger.close_due(T0 + 2 * H + 5);
    assert_eq!(idle.len(), 1);
    assert_eq!(
        (idle[0].unallocated_micros, idle[0].shares.len()),
        (7_000_000, 0)
    );
}

#[test]
fn a_late_start_and_a_removed_backend_account_for_their_part_of_the_hour() {
    let mut ledger = ProvisionedLedger::default();
    ledger.configure([(key("ptu"), ptu("4", CostPeriod::Hour))], T0 + H / 4);
    ledger.add(&key("ptu"), app("a"), Picos(1), T0 + H / 2);
    let closed = ledger.configure([], T0 + H / 2);
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].cost_micros, 1_000_000, "a quarter of the hour");
    assert_eq!(closed[0].shares, vec![(app("a"), 1_000_000)]);
    // Gone: later calls are not counted anywhere.
    assert!(
        ledger
            .add(&key("ptu"), app("a"), Picos(1), T0 + H)
            .is_empty()
    );
    assert!(ledger.close_all(T0 + 3 * H).is_empty());
}

#[test]
fn a_monthly_price_is_divided_by_the_hours_of_that_month() {
    let mut ledger = ProvisionedLedger::default();
    // December has 31 days: 744 hours.
    ledger.configure([(key("ptu"), ptu("7440", CostPeriod::Month))], T0);
    let closed = ledger.close_due(T0 + H);
    assert_eq!(closed[0].cost_micros, 10_000_000);
    let shutdown = ledger.close_all(T0 + H + H / 2);
    assert_eq!(shutdown[0].cost_micros, 5_000_000);
    assert_eq!(shutdown[0].unallocated_micros, 5_000_000);
}

#[test]
fn shares_always_add_up_whatever_the_weights() {
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for round in 0..200 {
        let mut ledger = ProvisionedLedger::default();
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        let micros = seed % 50_000_000 + 1;
        let price = Micros(micros).to_string();
        ledger.configure([(key("ptu"), ptu(&price, CostPeriod::Hour))], T0);
        for n in 0..(round % 7 + 1) {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let weight = Picos(u128::from(seed % 1_000_000_007));
            ledger.add(&key("ptu"), app(&format!("app{n}")), weight, T0 + 1);
        }
        let hour = &ledger.close_due(T0 + H)[0];
        let sum: u64 = hour.shares.iter().map(|(_, s)| s).sum();
        assert_eq!(sum + hour.unallocated_micros, micros, "round {round}");
    }
}
