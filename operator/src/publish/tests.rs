//! No-cluster tests of per-scope versioning and quota shares.

use std::time::Duration;

use spillway_crds::snapshot::QuotaConfig;

use super::*;

fn compiled(tpm: u64) -> Snapshot {
    Snapshot {
        quotas: vec![QuotaConfig {
            id: "team/q".into(),
            name: "q".into(),
            app_id: Some("app".into()),
            pools: Vec::new(),
            models: Vec::new(),
            tokens_per_minute: Some(tpm),
            requests_per_minute: None,
            calendar: Vec::new(),
            default_max_tokens: 1000,
            share: 1.0,
            token_weights: Default::default(),
            budgets: Vec::new(),
        }],
        ..Snapshot::default()
    }
}

#[test]
fn same_content_keeps_the_version_and_a_change_bumps_it() {
    let publisher = Publisher::new();
    assert_eq!(publisher.publish("team", compiled(100)), 1);
    assert_eq!(publisher.publish("team", compiled(100)), 1);
    assert_eq!(publisher.publish("team", compiled(200)), 2);
    assert_eq!(
        publisher.publish("other", compiled(200)),
        1,
        "versions are per scope"
    );
    let current = publisher.current("team").expect("compiled");
    assert_eq!(current.version, 2);
    assert_eq!(current.quotas[0].tokens_per_minute, Some(200));
}

#[test]
fn quotas_are_divided_between_live_sidecars() {
    let publisher = Publisher::new();
    publisher.publish("team", compiled(100));
    assert_eq!(publisher.set_sidecars("team", 2), Some(2));
    let current = publisher.current("team").expect("compiled");
    assert!((current.quotas[0].share - 0.5).abs() < f64::EPSILON);
    assert_eq!(
        publisher.set_sidecars("team", 2),
        None,
        "no change, no version"
    );
    assert_eq!(publisher.set_sidecars("team", 1), Some(3));
    assert_eq!(
        publisher.set_sidecars("team", 0),
        None,
        "one or none both get the whole quota"
    );
    let current = publisher.current("team").expect("compiled");
    assert!((current.quotas[0].share - 1.0).abs() < f64::EPSILON);
    assert_eq!(current.version, 3);
}

#[test]
fn sidecar_counts_before_the_first_compile_are_applied_to_it() {
    let publisher = Publisher::new();
    assert_eq!(publisher.set_sidecars("team", 4), None);
    publisher.publish("team", compiled(100));
    let current = publisher.current("team").expect("compiled");
    assert!((current.quotas[0].share - 0.25).abs() < f64::EPSILON);
}

#[tokio::test]
async fn a_sidecar_holding_a_higher_version_gets_the_content_above_it() {
    let publisher = Publisher::new();
    publisher.publish("team", compiled(100));
    let rx = publisher.subscribe("team", Some(41)).await;
    assert_eq!(rx.borrow().version, 42);
    assert_eq!(rx.borrow().quotas[0].tokens_per_minute, Some(100));
    let rx = publisher.subscribe("team", Some(3)).await;
    assert_eq!(
        rx.borrow().version,
        42,
        "a lower held version changes nothing"
    );
    assert_eq!(publisher.publish("team", compiled(300)), 43);
    let rx = publisher.subscribe("team", Some(u64::MAX - 1)).await;
    assert_eq!(
        rx.borrow().version,
        43,
        "an implausible held version is ignored"
    );
}

#[tokio::test(start_paused = true)]
async fn subscribers_wait_for_the_first_compile() {
    let publisher = Publisher::new();
    let waiting = tokio::spawn({
        let publisher = publisher.clone();
        async move { publisher.subscribe("team", None).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "no configuration before the scope is compiled"
    );
    publisher.publish("other", compiled(1));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished(), "another scope does not count");
    publisher.publish("team", compiled(7));
    let rx = tokio::time::timeout(Duration::from_secs(1), waiting)
        .await
        .expect("in time")
        .expect("task");
    assert_eq!(rx.borrow().quotas[0].tokens_per_minute, Some(7));
}
