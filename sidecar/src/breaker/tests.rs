use std::sync::Arc;
use std::time::{Duration, Instant};

use spillway_crds::compile::default_breaker;
use spillway_crds::snapshot::{BreakerConfig, BreakerRuleConfig, StatusRange, TripThreshold};

use super::{Admission, Breaker, BreakerState, Outcome, Permit, Transition};

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn rule(name: &str, threshold: TripThreshold, codes: (u16, u16)) -> BreakerRuleConfig {
    BreakerRuleConfig {
        name: name.into(),
        threshold,
        interval_ms: 10_000,
        status_ranges: vec![StatusRange {
            min: codes.0,
            max: codes.1,
        }],
        on_connection_failure: false,
        on_timeout: false,
        trip_duration_ms: 10_000,
        accept_retry_after: false,
        max_retry_after_ms: 60_000,
    }
}

fn breaker(rules: Vec<BreakerRuleConfig>, probe_successes: u32) -> Arc<Breaker> {
    Arc::new(Breaker::new(&BreakerConfig {
        rules,
        probe_successes,
    }))
}

fn status(code: u16) -> Outcome {
    Outcome::Status {
        code,
        retry_after: None,
    }
}

fn throttled(delay: Duration) -> Outcome {
    Outcome::Status {
        code: 429,
        retry_after: Some(delay),
    }
}

fn permit(b: &Arc<Breaker>, now: Instant) -> Permit {
    match b.admit(now) {
        Admission::Admitted(permit) => permit,
        other => panic!("expected admission at {now:?}, got {other:?}"),
    }
}

/// Admits and records one attempt.
fn send(b: &Arc<Breaker>, now: Instant, outcome: Outcome) -> Option<Transition> {
    permit(b, now).record(now, &outcome)
}

fn open_until(b: &Breaker, now: Instant) -> Instant {
    match b.state(now) {
        BreakerState::Open { until } => until,
        other => panic!("expected open, got {other:?}"),
    }
}

#[test]
fn breaker_is_send_and_sync() {
    fn check<T: Send + Sync + 'static>() {}
    check::<Breaker>();
    check::<Permit>();
}

#[test]
fn concurrent_admissions_grant_one_probe() {
    let b = breaker(default_breaker().rules, 1);
    let t0 = Instant::now();
    send(&b, t0, status(429)).expect("trips");
    let after = t0 + secs(10);
    let probes: Vec<Permit> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    (0..100)
                        .filter_map(|_| b.admit(after).into_permit())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(probes.len(), 1, "exactly one probe among 800 admissions");
}

#[test]
fn count_rule_trips_at_n_within_interval() {
    let b = breaker(vec![rule("5xx", TripThreshold::Count(3), (500, 599))], 1);
    let t0 = Instant::now();
    assert_eq!(send(&b, t0, status(500)), None);
    assert_eq!(send(&b, t0 + secs(4), status(503)), None);
    assert_eq!(b.state(t0 + secs(4)), BreakerState::Closed);
    let now = t0 + secs(9);
    let transition = send(&b, now, status(502)).expect("third failure trips");
    assert_eq!(transition.from, BreakerState::Closed);
    assert_eq!(
        transition.to,
        BreakerState::Open {
            until: now + secs(10)
        }
    );
    assert_eq!(transition.rule.as_deref(), Some("5xx"));
    assert_eq!(b.trips_total(), 1);
    assert!(matches!(b.admit(now), Admission::Open { until } if until == now + secs(10)));
    assert_eq!(b.reopens_at(now), Some(now + secs(10)));
}

#[test]
fn count_rule_does_not_trip_when_failures_are_spread_out() {
    let b = breaker(vec![rule("5xx", TripThreshold::Count(3), (500, 599))], 1);
    let t0 = Instant::now();
    for i in 0..20 {
        assert_eq!(send(&b, t0 + secs(6 * i), status(500)), None, "failure {i}");
    }
    assert_eq!(b.state(t0 + secs(120)), BreakerState::Closed);
    assert_eq!(b.trips_total(), 0);
}

#[test]
fn non_matching_statuses_count_as_successes() {
    let b = breaker(
        vec![rule("throttled", TripThreshold::Count(1), (429, 429))],
        1,
    );
    let t0 = Instant::now();
    for (i, outcome) in [status(200), status(400), status(500), Outcome::Success]
        .into_iter()
        .enumerate()
    {
        assert_eq!(send(&b, t0 + ms(i as u64), outcome), None);
    }
    assert!(!b.is_failure(&status(400)));
    assert!(!b.is_failure(&Outcome::ConnectionFailure));
    assert!(b.is_failure(&status(429)));
    assert_eq!(b.state(t0), BreakerState::Closed);
}

#[test]
fn percentage_rule_waits_for_minimum_requests() {
    let threshold = TripThreshold::Percentage {
        percent: 50,
        min_requests: 10,
    };
    let b = breaker(vec![rule("half", threshold, (500, 599))], 1);
    let t0 = Instant::now();
    // Six failures out of six: 100%, but below the minimum.
    for i in 0..6 {
        assert_eq!(send(&b, t0 + ms(i), status(500)), None);
    }
    for i in 6..9 {
        assert_eq!(send(&b, t0 + ms(i), Outcome::Success), None);
    }
    // The tenth request (a success) reaches the minimum at 60% failures: trips.
    let transition = send(&b, t0 + ms(9), Outcome::Success).expect("trips at minimum");
    assert_eq!(transition.rule.as_deref(), Some("half"));
}

#[test]
fn percentage_rule_below_percent_stays_closed() {
    let threshold = TripThreshold::Percentage {
        percent: 50,
        min_requests: 4,
    };
    let b = breaker(vec![rule("half", threshold, (500, 599))], 1);
    let t0 = Instant::now();
    for i in 0..100_u64 {
        // One failure in three (never above 34%): 33 failures in 100 requests.
        let outcome = if i % 3 == 2 {
            status(500)
        } else {
            Outcome::Success
        };
        assert_eq!(send(&b, t0 + ms(i), outcome), None, "request {i}");
    }
    assert_eq!(b.state(t0 + secs(1)), BreakerState::Closed);
    // A burst of failures: (33 + k) * 100 >= 50 * (100 + k) first holds at k = 34.
    for k in 1..34_u64 {
        assert_eq!(send(&b, t0 + ms(200 + k), status(500)), None, "failure {k}");
    }
    assert!(send(&b, t0 + ms(234), status(500)).is_some(), "34th trips");
}

#[test]
fn retry_after_is_honoured_and_capped() {
    let mut r = rule("throttled", TripThreshold::Count(1), (429, 429));
    r.accept_retry_after = true;
    r.max_retry_after_ms = 30_000;
    let t0 = Instant::now();

    let b = breaker(vec![r.clone()], 1);
    send(&b, t0, throttled(secs(3))).expect("trips");
    assert_eq!(
        open_until(&b, t0),
        t0 + secs(3),
        "shorter than trip duration"
    );

    let b = breaker(vec![r.clone()], 1);
    send(&b, t0, throttled(secs(600))).expect("trips");
    assert_eq!(open_until(&b, t0), t0 + secs(30), "capped");

    let b = breaker(vec![r.clone()], 1);
    send(&b, t0, throttled(Duration::ZERO)).expect("trips");
    assert_eq!(open_until(&b, t0), t0 + ms(1), "zero opens for MIN_OPEN");

    let b = breaker(vec![r.clone()], 1);
    send(&b, t0, status(429)).expect("trips");
    assert_eq!(
        open_until(&b, t0),
        t0 + secs(10),
        "no header: trip duration"
    );

    r.accept_retry_after = false;
    let b = breaker(vec![r], 1);
    send(&b, t0, throttled(secs(3))).expect("trips");
    assert_eq!(
        open_until(&b, t0),
        t0 + secs(10),
        "not accepted: trip duration"
    );
}

#[test]
fn open_breaker_extends_on_longer_retry_after() {
    let mut r = rule("throttled", TripThreshold::Count(1), (429, 429));
    r.accept_retry_after = true;
    let b = breaker(vec![r], 1);
    let t0 = Instant::now();
    // Three attempts admitted while closed, completing after the trip.
    let in_flight: Vec<Permit> = (0..3).map(|_| permit(&b, t0)).collect();
    send(&b, t0, throttled(secs(5))).expect("trips");
    let mut in_flight = in_flight.into_iter();
    let next = |it: &mut std::vec::IntoIter<Permit>| it.next().expect("permit");
    // Shorter: no change. Longer: extends, silently. Success: no change.
    assert_eq!(
        next(&mut in_flight).record(t0 + secs(1), &throttled(secs(2))),
        None
    );
    assert_eq!(open_until(&b, t0), t0 + secs(5));
    assert_eq!(
        next(&mut in_flight).record(t0 + secs(1), &throttled(secs(20))),
        None
    );
    assert_eq!(open_until(&b, t0), t0 + secs(21));
    assert_eq!(
        next(&mut in_flight).record(t0 + secs(2), &Outcome::Success),
        None
    );
    assert_eq!(open_until(&b, t0), t0 + secs(21));
    assert_eq!(b.trips_total(), 1);
}

#[test]
fn half_open_admits_exactly_one_probe() {
    let b = breaker(default_breaker().rules, 1);
    let t0 = Instant::now();
    send(&b, t0, status(429)).expect("trips");
    let after = t0 + secs(10);
    assert!(!b.can_admit(after - ms(1)));
    assert!(b.can_admit(after));
    assert_eq!(b.state(after), BreakerState::HalfOpen);
    let probe = permit(&b, after);
    assert!(probe.is_probe());
    assert!(matches!(b.admit(after), Admission::ProbeInFlight));
    assert!(!b.can_admit(after + secs(60)));
    assert_eq!(b.reopens_at(after), None);
    drop(probe);
}

#[test]
fn probe_success_closes_and_resets_windows() {
    let b = breaker(default_breaker().rules, 1);
    let t0 = Instant::now();
    // Four 5xx (one short of the "failing" rule), then a 429 trips "throttled".
    for i in 0..4 {
        send(&b, t0 + ms(i), status(500));
    }
    send(&b, t0 + ms(10), status(429)).expect("trips");
    let after = t0 + secs(11);
    let transition = permit(&b, after).record(after, &Outcome::Success);
    assert_eq!(
        transition,
        Some(Transition {
            from: BreakerState::HalfOpen,
            to: BreakerState::Closed,
            rule: None
        })
    );
    assert_eq!(b.state(after), BreakerState::Closed);
    // The four old 5xx were forgotten: one more does not trip the count-5 rule.
    assert_eq!(send(&b, after + ms(1), status(500)), None);
    assert_eq!(b.state(after + ms(1)), BreakerState::Closed);
}

#[test]
fn two_probe_successes_needed_when_configured() {
    let b = breaker(default_breaker().rules, 2);
    let t0 = Instant::now();
    send(&b, t0, status(429)).expect("trips");
    let after = t0 + secs(10);
    assert_eq!(permit(&b, after).record(after, &Outcome::Success), None);
    assert_eq!(b.state(after), BreakerState::HalfOpen);
    let second = permit(&b, after + ms(5));
    assert!(second.is_probe());
    let transition = second.record(after + ms(5), &status(200)).expect("closes");
    assert_eq!(transition.to, BreakerState::Closed);
    assert!(!permit(&b, after + ms(6)).is_probe());
}

#[test]
fn probe_failure_reopens_for_the_failing_rule() {
    let b = breaker(default_breaker().rules, 1);
    let t0 = Instant::now();
    send(&b, t0, status(429)).expect("trips");
    let after = t0 + secs(10);
    // A connection failure is a failure for the "failing" rule (30 s), not "throttled".
    let transition = permit(&b, after)
        .record(after, &Outcome::ConnectionFailure)
        .expect("reopens");
    assert_eq!(transition.from, BreakerState::HalfOpen);
    assert_eq!(
        transition.to,
        BreakerState::Open {
            until: after + secs(30)
        }
    );
    assert_eq!(transition.rule.as_deref(), Some("failing"));
    assert_eq!(b.trips_total(), 2);
    // A failed probe under "throttled" honours the retry-after.
    let later = after + secs(30);
    let transition = permit(&b, later)
        .record(later, &throttled(secs(7)))
        .expect("reopens");
    assert_eq!(
        transition.to,
        BreakerState::Open {
            until: later + secs(7)
        }
    );
}

#[test]
fn dropped_probe_releases_the_slot() {
    let b = breaker(default_breaker().rules, 1);
    let t0 = Instant::now();
    send(&b, t0, status(429)).expect("trips");
    let after = t0 + secs(10);
    let probe = permit(&b, after);
    assert!(matches!(b.admit(after), Admission::ProbeInFlight));
    drop(probe);
    assert_eq!(b.state(after), BreakerState::HalfOpen);
    let again = permit(&b, after + ms(1));
    assert!(again.is_probe());
    assert!(again.record(after + ms(1), &Outcome::Success).is_some());
}

#[test]
fn late_outcomes_do_not_decide_half_open() {
    let b = breaker(default_breaker().rules, 1);
    let t0 = Instant::now();
    let old = permit(&b, t0);
    send(&b, t0, status(429)).expect("trips");
    let after = t0 + secs(10);
    let probe = permit(&b, after);
    // An attempt admitted while closed fails now: the probe still decides.
    assert_eq!(old.record(after, &throttled(secs(60))), None);
    assert!(matches!(b.admit(after), Admission::ProbeInFlight));
    assert!(probe.record(after, &Outcome::Success).is_some());
    assert_eq!(b.state(after), BreakerState::Closed);
}

#[test]
fn rules_with_different_durations() {
    let t0 = Instant::now();
    let b = breaker(default_breaker().rules, 1);
    for i in 0..4 {
        assert_eq!(send(&b, t0 + ms(i), Outcome::Timeout), None);
    }
    let transition = send(&b, t0 + ms(4), Outcome::ConnectionFailure).expect("fifth trips");
    assert_eq!(transition.rule.as_deref(), Some("failing"));
    assert_eq!(open_until(&b, t0), t0 + ms(4) + secs(30));

    let b = breaker(default_breaker().rules, 1);
    let transition = send(&b, t0, status(429)).expect("one 429 trips");
    assert_eq!(transition.rule.as_deref(), Some("throttled"));
    assert_eq!(open_until(&b, t0), t0 + secs(10));

    // Two rules tripping on the same outcome: the longer open time wins.
    let short = rule("short", TripThreshold::Count(1), (500, 599));
    let mut long = rule("long", TripThreshold::Count(1), (503, 503));
    long.trip_duration_ms = 60_000;
    let b = breaker(vec![short, long], 1);
    let transition = send(&b, t0, status(503)).expect("trips");
    assert_eq!(transition.rule.as_deref(), Some("long"));
    assert_eq!(open_until(&b, t0), t0 + secs(60));
}

#[test]
fn state_names_are_stable() {
    let now = Instant::now();
    assert_eq!(BreakerState::Closed.as_str(), "closed");
    assert_eq!(BreakerState::Open { until: now }.as_str(), "open");
    assert_eq!(BreakerState::HalfOpen.as_str(), "half_open");
}

#[test]
fn outcome_from_response_reads_headers() {
    let mut headers = http::HeaderMap::new();
    headers.insert("retry-after-ms", http::HeaderValue::from_static("250"));
    let outcome = Outcome::from_response(429, &headers, std::time::SystemTime::now());
    assert_eq!(outcome, throttled(ms(250)));
}
