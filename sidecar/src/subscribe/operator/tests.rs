//! The sidecar's rules for pushed snapshots, and its reconnect backoff.

use std::time::Duration;

use serde_json::json;
use spillway_crds::Snapshot;
use spillway_crds::snapshot::QuotaConfig;

use super::Backoff;
use super::apply::{Applier, Outcome, Refusal};

fn snapshot_line(version: u64, weight: u32, key: &str) -> Vec<u8> {
    let line = json!({
        "type": "snapshot",
        "snapshot": {
            "version": version,
            "gateway": {"maxRequestBodyBytes": 1024, "streamDrainTimeoutMs": 1000, "streamDrainMaxBytes": 1024},
            "pools": [{
                "id": "team/chat", "name": "chat", "models": ["gpt-4o"],
                "backends": [{
                    "name": "east", "kind": "OpenAI", "baseUrl": "http://127.0.0.1:9/v1",
                    "model": null, "modelMap": {}, "apiVersion": null, "priority": 1, "weight": weight,
                    "apiKey": key,
                    "breaker": {"rules": [], "probeSuccesses": 1}, "streamUsage": "Auto", "timeoutMs": 1000
                }],
                "retry": {"maxAttempts": 2, "statusRanges": [], "onConnectionFailure": true, "onTimeout": true, "deadlineMs": 1000}
            }],
            "quotas": []
        }
    });
    serde_json::to_vec(&line).expect("json")
}

fn applied_version(outcome: Result<Outcome, Refusal>) -> u64 {
    match outcome {
        Ok(Outcome::Applied(version)) => version,
        other => panic!("expected an applied snapshot, got {other:?}"),
    }
}

#[test]
fn hello_and_heartbeats_apply_nothing() {
    let (mut applier, _rx) = Applier::new();
    let hello = br#"{"type":"hello","scope":"team","sidecar":"a","heartbeatMs":2000}"#;
    match applier.line(hello) {
        Ok(Outcome::Hello { heartbeat }) => assert_eq!(heartbeat, Duration::from_secs(2)),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        applier.line(br#"{"type":"heartbeat","version":3}"#),
        Ok(Outcome::Heartbeat)
    ));
    assert_eq!(applier.serving(), None);
}

#[test]
fn the_first_snapshot_opens_the_channel_and_later_ones_update_it() {
    let (mut applier, rx) = Applier::new();
    assert_eq!(rx.borrow().version, 0, "nothing yet");
    assert_eq!(
        applied_version(applier.line(&snapshot_line(3, 1, "sk-a"))),
        3
    );
    assert_eq!(rx.borrow().version, 3);
    assert_eq!(
        applied_version(applier.line(&snapshot_line(4, 2, "sk-a"))),
        4
    );
    assert_eq!(rx.borrow().version, 4);
    assert_eq!(rx.borrow().pools[0].backends[0].weight, 2);
    assert!(matches!(
        applier.line(&snapshot_line(4, 9, "sk-a")),
        Ok(Outcome::AlreadyApplied(4))
    ));
    assert_eq!(
        rx.borrow().pools[0].backends[0].weight,
        2,
        "same version is not re-applied"
    );
}

#[test]
fn older_versions_are_refused() {
    let (mut applier, _rx) = Applier::new();
    applied_version(applier.line(&snapshot_line(5, 1, "sk-a")));
    assert_eq!(
        applier.line(&snapshot_line(4, 1, "sk-a")).map(|_| ()),
        Err(Refusal::Older {
            offered: 4,
            serving: 5
        })
    );
    assert_eq!(applier.serving(), Some(5));
}

#[test]
fn invalid_snapshots_are_refused_and_the_last_good_one_stays() {
    let (mut applier, _rx) = Applier::new();
    applied_version(applier.line(&snapshot_line(1, 1, "sk-a")));
    let refusal = applier
        .line(&snapshot_line(2, 0, "sk-a"))
        .expect_err("weight 0");
    assert!(
        matches!(refusal, Refusal::Invalid { version: 2, .. }),
        "{refusal:?}"
    );
    assert_eq!(applier.serving(), Some(1));
}

#[test]
fn unreadable_lines_never_echo_their_content() {
    let (mut applier, _rx) = Applier::new();
    applied_version(applier.line(&snapshot_line(1, 1, "sk-a")));
    // A key where a number belongs: serde would quote the value in its message.
    let line = String::from_utf8(snapshot_line(2, 1, "sk-secret-value"))
        .expect("utf8")
        .replace(r#""priority":1"#, r#""priority":"sk-secret-value""#);
    let refusal = applier.line(line.as_bytes()).expect_err("wrong type");
    assert!(matches!(refusal, Refusal::Unreadable { .. }), "{refusal:?}");
    assert!(!refusal.to_string().contains("sk-secret"), "{refusal}");
    let cut = &snapshot_line(3, 1, "sk-a")[..100];
    assert!(matches!(applier.line(cut), Err(Refusal::Unreadable { .. })));
    assert_eq!(applier.serving(), Some(1));
}

fn snapshot(version: u64) -> Snapshot {
    let line: serde_json::Value =
        serde_json::from_slice(&snapshot_line(version, 1, "sk-a")).expect("json");
    serde_json::from_value(line["snapshot"].clone()).expect("snapshot")
}

#[test]
fn backoff_doubles_with_jitter_caps_and_resets() {
    let mut backoff = Backoff::with_rng(
        Duration::from_millis(100),
        Duration::from_secs(1),
        fastrand::Rng::with_seed(7),
    );
    let ceilings = [100, 200, 400, 800, 1000, 1000];
    for ceiling in ceilings {
        let delay = backoff.next_delay();
        let ceiling = Duration::from_millis(ceiling);
        assert!(
            delay >= ceiling / 2 && delay <= ceiling,
            "{delay:?} vs {ceiling:?}"
        );
    }
    backoff.reset();
    assert!(backoff.next_delay() <= Duration::from_millis(100));
}

#[tokio::test]
async fn reports_carry_breakers_and_quota_levels_of_local_shares() {
    use crate::proxy::Gateway;
    use crate::usage::UsageSink;
    use crate::usage::totals::UsageTotals;

    let gateway = Gateway::new(UsageSink::new(16));
    let mut with_quota = snapshot(4);
    with_quota.quotas = vec![QuotaConfig {
        id: "team/app".into(),
        name: "app-quota".into(),
        app_id: Some("app".into()),
        pools: Vec::new(),
        models: Vec::new(),
        tokens_per_minute: Some(6000),
        requests_per_minute: None,
        calendar: Vec::new(),
        default_max_tokens: 100,
        share: 0.5,
        token_weights: Default::default(),
        budgets: Vec::new(),
    }];
    gateway.apply(std::sync::Arc::new(with_quota));
    let report = super::build_report("pod-a", None, &gateway, &UsageTotals::new(4));
    assert_eq!(report.version, Some(4));
    assert_eq!(
        report.breakers.get("chat/east"),
        Some(&super::wire::BreakerState::Closed)
    );
    assert!(report.breaker_details.is_empty(), "no breaker ever opened");
    assert_eq!(report.quota_counters, super::wire::QuotaCounters::Share);
    assert_eq!(
        report.quotas,
        vec![super::wire::QuotaLevelReport {
            quota: "app-quota".into(),
            app_id: "app".into(),
            window: "minute".into(),
            remaining_tokens: 3000,
        }],
        "a full window of this sidecar's half share"
    );
    let json = serde_json::to_value(&report).expect("json");
    assert_eq!(json["quotas"][0]["remainingTokens"], 3000);
    assert_eq!(json["quotaCounters"], "share");
}

#[tokio::test]
async fn reports_carry_open_and_half_open_breakers_with_what_tripped_them() {
    use std::time::Instant;

    use super::wire::{BreakerState, TripCause};
    use crate::breaker::Outcome;
    use crate::proxy::Gateway;
    use crate::usage::UsageSink;
    use crate::usage::totals::UsageTotals;

    let gateway = Gateway::new(UsageSink::new(16));
    let mut with_breaker = snapshot(4);
    with_breaker.pools[0].backends[0].breaker = spillway_crds::compile::default_breaker();
    gateway.apply(std::sync::Arc::new(with_breaker));
    let breaker = {
        let applied = gateway.applied();
        let applied = Option::as_ref(&applied).expect("applied");
        let pool = applied.routes.pools().first().expect("a pool");
        let (_, runtime) = pool.backends().next().expect("a backend");
        std::sync::Arc::clone(runtime.breaker())
    };
    let now = Instant::now();
    let permit = breaker.admit(now).into_permit().expect("closed admits");
    let throttled = Outcome::Status {
        code: 429,
        retry_after: Some(Duration::from_secs(30)),
    };
    permit
        .record(now, &throttled)
        .expect("a 429 trips the default rule");
    let report = super::build_report("pod-a", None, &gateway, &UsageTotals::new(4));
    let key = report.breakers.keys().next().expect("a backend").clone();
    assert_eq!(report.breakers[&key], BreakerState::Open);
    let detail = &report.breaker_details[&key];
    assert_eq!(detail.last_trip, Some(TripCause::Status { code: 429 }));
    assert!(
        detail.last_trip_ago_ms.is_some_and(|ms| ms < 5_000),
        "{detail:?}"
    );
    assert!(
        detail
            .reopens_in_ms
            .is_some_and(|ms| (25_000..=30_000).contains(&ms)),
        "{detail:?}"
    );
    // Past its open time the breaker is half-open: reported so, as the operator reads it.
    let later = now + Duration::from_secs(31);
    assert_eq!(
        BreakerState::from(breaker.state(later)),
        BreakerState::HalfOpen
    );
    let json = serde_json::to_string(&BreakerState::from(breaker.state(later))).expect("json");
    assert_eq!(json, "\"half-open\"");
}
