use std::collections::BTreeMap;

use super::*;
use crate::wire::QuotaLevelReport;
use crate::wire::{BreakerDetail, TripCause};

fn sidecar(id: &str, breakers: &[(&str, Breaker)], levels: &[(&str, &str, u64)]) -> LiveSidecar {
    let mut minute_left: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for (quota, app, left) in levels {
        minute_left
            .entry((*quota).to_owned())
            .or_default()
            .insert((*app).to_owned(), *left);
    }
    LiveSidecar {
        id: id.into(),
        version: Some(3),
        breakers: breakers
            .iter()
            .map(|(k, b)| ((*k).to_owned(), *b))
            .collect(),
        trips: BTreeMap::new(),
        minute_left,
        calendar_left: BTreeMap::new(),
        redis: false,
    }
}

fn state(name: &str, closed: u32, open: u32, half_open: u32) -> BackendBreakerStatus {
    BackendBreakerStatus {
        name: name.into(),
        closed,
        open,
        half_open,
        ..BackendBreakerStatus::default()
    }
}

#[test]
fn a_report_becomes_a_compact_summary_of_minute_and_calendar_windows() {
    // As sidecars write them: `half_open` is how sidecars before the typed wire state spelled
    // half-open (it used to be dropped here, so half-open breakers vanished from status).
    let breakers = r#"{"chat/east": "open", "chat/west": "half_open", "chat/odd": "sideways"}"#;
    let report = SidecarReport {
        sidecar: "pod-a".into(),
        version: Some(7),
        breakers: serde_json::from_str(breakers).expect("a breaker map"),
        quotas: vec![
            QuotaLevelReport {
                quota: "web".into(),
                app_id: "web".into(),
                window: "minute".into(),
                remaining_tokens: 400,
            },
            QuotaLevelReport {
                quota: "web".into(),
                app_id: "web".into(),
                window: "day".into(),
                remaining_tokens: 9_000,
            },
        ],
        ..SidecarReport::default()
    };
    let live = LiveSidecar::from_report(&report, 1_700_000_000);
    assert_eq!(
        live,
        sidecar(
            "pod-a",
            &[
                ("chat/east", Breaker::Open),
                ("chat/west", Breaker::HalfOpen)
            ],
            &[("web", "web", 400)]
        )
        .with_version(7)
        .with_calendar("web", "day", "web", 9_000)
    );
    let json = serde_json::to_string(&live).expect("json");
    assert_eq!(
        json,
        r#"{"id":"pod-a","v":7,"b":{"chat/east":"o","chat/west":"h"},"q":{"web":{"web":400}},"c":{"web":{"day":{"web":9000}}}}"#
    );
    let redis = SidecarReport {
        quota_counters: QuotaCounters::Redis,
        ..report
    };
    assert!(LiveSidecar::from_report(&redis, 1_700_000_000).redis);
}

impl LiveSidecar {
    fn with_version(mut self, version: u64) -> Self {
        self.version = Some(version);
        self
    }

    fn with_calendar(mut self, quota: &str, window: &str, app: &str, left: u64) -> Self {
        let windows = self.calendar_left.entry(quota.to_owned()).or_default();
        windows
            .entry(window.to_owned())
            .or_default()
            .insert(app.to_owned(), left);
        self
    }
}

#[test]
fn a_calendar_quota_sums_the_sidecars_shares_of_its_period() {
    let sidecars = [
        sidecar("a", &[], &[]).with_calendar("web", "day", "web", 30_000),
        sidecar("b", &[], &[]).with_calendar("web", "day", "web", 45_000),
        sidecar("c", &[], &[]).with_calendar("web", "month", "web", 1),
    ];
    let day = window_tokens("web", Some("web"), "day", 100_000, &sidecars);
    assert_eq!((day.used, day.remaining), (Some(25_000), Some(75_000)));
    let week = window_tokens("web", Some("web"), "week", 100_000, &sidecars);
    assert_eq!((week.used, week.remaining), (None, None), "{}", week.note);
}

#[test]
fn breakers_are_counted_per_backend_in_spec_order() {
    let sidecars = [
        sidecar(
            "a",
            &[("chat/east", Breaker::Open), ("chat/west", Breaker::Closed)],
            &[],
        ),
        sidecar(
            "b",
            &[
                ("chat/east", Breaker::HalfOpen),
                ("chat/west", Breaker::Closed),
            ],
            &[],
        ),
        sidecar("c", &[("chat/east", Breaker::Closed)], &[]),
        // Another pool's backend of the same name does not count.
        sidecar("d", &[("other/east", Breaker::Open)], &[]),
    ];
    let (states, open) = pool_breakers("chat", &["west", "east", "north"], &sidecars);
    assert_eq!(
        states,
        vec![
            state("west", 2, 0, 0),
            state("east", 1, 1, 1),
            state("north", 0, 0, 0)
        ]
    );
    assert_eq!(open, Some(1));
    assert_eq!(pool_breakers("chat", &["east"], &[]), (Vec::new(), None));
}

#[test]
fn each_backend_shows_its_last_error_and_when_it_reopens() {
    let report = |sidecar: &str, cause, ago_ms, reopens_in_ms| SidecarReport {
        sidecar: sidecar.into(),
        breakers: [("chat/east".to_owned(), BreakerState::Open)].into(),
        breaker_details: [(
            "chat/east".to_owned(),
            BreakerDetail {
                last_trip: Some(cause),
                last_trip_ago_ms: Some(ago_ms),
                reopens_in_ms,
            },
        )]
        .into(),
        ..SidecarReport::default()
    };
    let now = 1_767_225_600; // 2026-01-01T00:00:00Z
    let sidecars = [
        LiveSidecar::from_report(
            &report("a", TripCause::Status { code: 429 }, 30_000, Some(9_500)),
            now,
        ),
        LiveSidecar::from_report(&report("b", TripCause::Timeout, 2_000, Some(58_000)), now),
        LiveSidecar::from_report(
            &report("c", TripCause::ConnectionFailure, 90_000, None),
            now,
        ),
    ];
    let (states, open) = pool_breakers("chat", &["east"], &sidecars);
    assert_eq!(open, Some(1));
    let east = &states[0];
    assert_eq!(
        east.last_error.as_deref(),
        Some("timeout"),
        "the most recent trip"
    );
    assert_eq!(
        east.last_error_time.as_deref(),
        Some("2025-12-31T23:59:58Z")
    );
    assert_eq!(
        east.reopens_at.as_deref(),
        Some("2026-01-01T00:00:59Z"),
        "the latest reopening"
    );
}

#[test]
fn only_trips_and_recoveries_are_events() {
    let closed = [state("east", 2, 0, 0), state("west", 2, 0, 0)];
    let tripped = [state("east", 1, 1, 0), state("west", 2, 0, 0)];
    let events = breaker_transitions(&closed, &tripped);
    assert_eq!(events.len(), 1);
    assert!(!events[0].normal);
    assert_eq!(events[0].reason, "BreakerOpen");
    assert!(
        events[0]
            .note
            .starts_with("backend east: circuit breaker open on 1"),
        "{}",
        events[0].note
    );
    assert_eq!(
        events[0].subject.as_deref(),
        Some("spec.backends{east}"),
        "each backend's Events are their own series"
    );
    let both = [state("east", 1, 1, 0), state("west", 1, 1, 0)];
    let subjects: Vec<_> = breaker_transitions(&closed, &both)
        .into_iter()
        .map(|t| t.subject)
        .collect();
    assert_eq!(
        subjects,
        [
            Some("spec.backends{east}".to_owned()),
            Some("spec.backends{west}".to_owned())
        ]
    );
    // Still tripped (open → half-open on another sidecar): no new Event.
    let probing = [state("east", 1, 0, 1), state("west", 2, 0, 0)];
    assert!(breaker_transitions(&tripped, &probing).is_empty());
    let events = breaker_transitions(&probing, &closed);
    assert_eq!(events.len(), 1);
    assert!(events[0].normal);
    assert_eq!(events[0].reason, "BreakerClosed");
    // A first status with an open breaker is an Event; no sidecar seeing it is not a recovery.
    assert_eq!(breaker_transitions(&[], &tripped).len(), 1);
    assert!(breaker_transitions(&tripped, &[state("east", 0, 0, 0)]).is_empty());
}

#[test]
fn an_apps_quota_sums_the_sidecars_shares() {
    let sidecars = [
        sidecar("a", &[], &[("web", "web", 1_000)]),
        sidecar("b", &[], &[("web", "web", 2_500)]),
        sidecar("c", &[], &[]),
    ];
    let tokens = quota_tokens("web", Some("web"), Some(6_000), &sidecars);
    assert_eq!((tokens.used, tokens.remaining), (Some(2_500), Some(3_500)));
    assert!(
        tokens.note.contains("2 of 3 live sidecars"),
        "{}",
        tokens.note
    );
    // Shares that add up to more than the limit (during a re-division) are capped.
    let over = [
        sidecar("a", &[], &[("web", "web", 4_000)]),
        sidecar("b", &[], &[("web", "web", 4_000)]),
    ];
    let tokens = quota_tokens("web", Some("web"), Some(6_000), &over);
    assert_eq!((tokens.used, tokens.remaining), (Some(0), Some(6_000)));
}

#[test]
fn a_default_quota_sums_use_over_apps_and_shows_the_lowest_remainder() {
    // Two sidecars with a 1 000 share each of 2 000 per app.
    let sidecars = [
        sidecar("a", &[], &[("std", "x", 400), ("std", "y", 1_000)]),
        sidecar("b", &[], &[("std", "x", 600)]),
    ];
    let tokens = quota_tokens("std", None, Some(2_000), &sidecars);
    // x: 400 + 600 left, 1 000 used; y: 1 000 + b's untouched 1 000 left, 0 used.
    assert_eq!((tokens.used, tokens.remaining), (Some(1_000), Some(1_000)));
    assert!(tokens.note.contains("2 apps"), "{}", tokens.note);
    let idle = [sidecar("a", &[], &[])];
    let tokens = quota_tokens("std", None, Some(2_000), &idle);
    assert_eq!((tokens.used, tokens.remaining), (Some(0), Some(2_000)));
}

#[test]
fn unknown_tokens_say_why() {
    let one = [sidecar("a", &[], &[("web", "web", 10)])];
    let cases = [
        (
            quota_tokens("web", Some("web"), None, &one),
            "no tokensPerMinute",
        ),
        (
            quota_tokens("web", Some("web"), Some(60), &[]),
            "no live sidecar",
        ),
        (
            quota_tokens("other", Some("other"), Some(60), &one),
            "no sidecar has reported",
        ),
    ];
    for (tokens, why) in cases {
        assert_eq!((tokens.used, tokens.remaining), (None, None));
        assert!(tokens.note.contains(why), "{} lacks {why}", tokens.note);
    }
    let mut redis = sidecar("a", &[], &[("web", "web", 10)]);
    redis.redis = true;
    let tokens = quota_tokens("web", Some("web"), Some(60), &[redis]);
    assert_eq!((tokens.used, tokens.remaining), (None, None));
    assert!(tokens.note.contains("Redis"), "{}", tokens.note);
}

#[test]
fn a_money_budget_shows_spent_of_its_amount_beside_the_token_windows() {
    use spillway_crds::v1alpha1::{Budget, QuotaPeriod, TokenQuotaSpec};
    // Two sidecars of app `web`, a 10.00 USD daily budget split 50/50: 5,000,000,000 nanos
    // each; they have 3.50 and 4.25 left. The `day` token window is unrelated.
    let sidecars = [
        sidecar("a", &[], &[])
            .with_calendar("web", "day$USD", "web", 3_500_000_000)
            .with_calendar("web", "day", "web", 7),
        sidecar("b", &[], &[]).with_calendar("web", "day$USD", "web", 4_250_000_000),
    ];
    let spec = TokenQuotaSpec {
        app_id: Some("web".into()),
        budgets: vec![
            Budget {
                period: QuotaPeriod::Daily,
                amount: "10".into(),
                currency: "USD".into(),
            },
            Budget {
                period: QuotaPeriod::Monthly,
                amount: "250.5".into(),
                currency: "EUR".into(),
            },
        ],
        ..TokenQuotaSpec::default()
    };
    let budgets = crate::status::quota_budgets("web", &spec, &sidecars);
    assert_eq!(budgets[0].spent.as_deref(), Some("2.25"));
    assert_eq!(budgets[0].usage, "2.25/10 USD");
    assert_eq!(
        (budgets[0].period.as_str(), budgets[0].amount.as_str()),
        ("Daily", "10")
    );
    assert_eq!(budgets[1].spent, None);
    assert_eq!(budgets[1].usage, "?/250.5 EUR");
}
