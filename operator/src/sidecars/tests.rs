//! No-cluster tests of sidecar liveness, grace periods and sync counts.

use std::time::Duration;

use spillway_crds::Snapshot;
use spillway_crds::snapshot::QuotaConfig;

use super::*;

const GRACE: Duration = Duration::from_secs(30);

fn report(sidecar: &str, version: u64) -> SidecarReport {
    SidecarReport {
        sidecar: sidecar.into(),
        version: Some(version),
        ..SidecarReport::default()
    }
}

fn with_quota() -> Snapshot {
    Snapshot {
        quotas: vec![QuotaConfig {
            id: "team/q".into(),
            name: "q".into(),
            app_id: None,
            pools: Vec::new(),
            models: Vec::new(),
            tokens_per_minute: Some(600),
            requests_per_minute: None,
            calendar: Vec::new(),
            default_max_tokens: 1000,
            share: 1.0,
        }],
        ..Snapshot::default()
    }
}

fn share(publisher: &Publisher) -> f64 {
    publisher.current("team").expect("compiled").quotas[0].share
}

#[tokio::test(start_paused = true)]
async fn streams_count_and_reports_mark_sidecars_synced() {
    let publisher = Publisher::new();
    publisher.publish("team", with_quota());
    let registry = Registry::new(publisher.clone(), GRACE);
    let mut changes = registry.changes();
    let now = Instant::now();
    let _a = registry.connect("team", "a", now);
    let _b = registry.connect("team", "b", now);
    assert_eq!(changes.try_recv().ok().as_deref(), Some("team"));
    let version = publisher.current("team").expect("compiled").version;
    assert_eq!(
        version, 2,
        "one sidecar gets the whole quota, as none does; b halves it"
    );
    assert!((share(&publisher) - 0.5).abs() < f64::EPSILON);

    registry.report("team", report("a", version), now);
    assert_eq!(
        registry.counts("team", version, now),
        SyncCounts {
            synced: 1,
            total: 2
        }
    );
    registry.report("team", report("b", version), now);
    assert_eq!(registry.counts("team", version, now).to_string(), "2/2");
    assert_eq!(
        registry.counts("elsewhere", version, now).to_string(),
        "0/0"
    );
}

#[tokio::test(start_paused = true)]
async fn a_closed_stream_counts_until_the_grace_period_ends() {
    let publisher = Publisher::new();
    publisher.publish("team", with_quota());
    let registry = Registry::new(publisher.clone(), GRACE);
    let now = Instant::now();
    let _a = registry.connect("team", "a", now);
    let b = registry.connect("team", "b", now);
    drop(b);
    tokio::time::advance(GRACE).await;
    registry.sweep(Instant::now());
    assert_eq!(
        registry.counts("team", 0, Instant::now()).total,
        2,
        "within grace"
    );
    assert!((share(&publisher) - 0.5).abs() < f64::EPSILON);

    tokio::time::advance(Duration::from_secs(1)).await;
    registry.sweep(Instant::now());
    assert_eq!(registry.counts("team", 0, Instant::now()).total, 1);
    assert!(
        (share(&publisher) - 1.0).abs() < f64::EPSILON,
        "quota re-divided"
    );
    assert_eq!(registry.sidecars().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn reports_keep_a_reconnecting_sidecar_counted_once() {
    let publisher = Publisher::new();
    publisher.publish("team", with_quota());
    let registry = Registry::new(publisher.clone(), GRACE);
    let first = registry.connect("team", "a", Instant::now());
    drop(first);
    for _ in 0..4 {
        tokio::time::advance(Duration::from_secs(20)).await;
        registry.report("team", report("a", 1), Instant::now());
        registry.sweep(Instant::now());
    }
    let _again = registry.connect("team", "a", Instant::now());
    assert_eq!(registry.counts("team", 1, Instant::now()).total, 1);
    assert!((share(&publisher) - 1.0).abs() < f64::EPSILON);
}

#[tokio::test(start_paused = true)]
async fn a_report_alone_makes_a_sidecar_known() {
    let publisher = Publisher::new();
    publisher.publish("team", with_quota());
    let registry = Registry::new(publisher.clone(), GRACE);
    let mut changes = registry.changes();
    registry.report("team", report("a", 1), Instant::now());
    assert_eq!(changes.try_recv().ok().as_deref(), Some("team"));
    registry.report("team", report("a", 1), Instant::now());
    assert!(changes.try_recv().is_err(), "nothing changed");
    let _b = registry.connect("team", "b", Instant::now());
    assert!((share(&publisher) - 0.5).abs() < f64::EPSILON);
}
