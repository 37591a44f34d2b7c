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
            token_weights: Default::default(),
            budgets: Vec::new(),
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

fn live(id: &str, version: u64) -> LiveSidecar {
    LiveSidecar {
        id: id.into(),
        version: Some(version),
        ..LiveSidecar::default()
    }
}

#[tokio::test(start_paused = true)]
async fn other_replicas_sidecars_count_once_until_their_lease_expires() {
    let publisher = Publisher::new();
    publisher.publish("team", with_quota());
    let registry = Registry::new(publisher.clone(), GRACE);
    let mut changes = registry.changes();
    let now = Instant::now();
    let _a = registry.connect("team", "a", now);
    registry.report("team", report("a", 1), now);
    while changes.try_recv().is_ok() {}
    // Replica r2 serves b, and still lists a (a moved over during a failover).
    let remote = RemoteReplica {
        until: now + Duration::from_secs(15),
        scopes: [("team".to_owned(), vec![live("b", 1), live("a", 1)])].into(),
    };
    registry.set_remotes([("r2".to_owned(), remote.clone())].into(), now);
    assert_eq!(changes.try_recv().ok().as_deref(), Some("team"));
    assert_eq!(registry.counts("team", 1, now).to_string(), "2/2");
    assert!((share(&publisher) - 0.5).abs() < f64::EPSILON);
    assert_eq!(
        registry.local_sidecars(now)["team"].len(),
        1,
        "only its own are announced"
    );
    // The same picture again is no signal.
    registry.set_remotes([("r2".to_owned(), remote)].into(), now);
    assert!(changes.try_recv().is_err());

    tokio::time::advance(Duration::from_secs(16)).await;
    registry.sweep(Instant::now());
    assert_eq!(changes.try_recv().ok().as_deref(), Some("team"));
    assert_eq!(registry.counts("team", 1, Instant::now()).total, 1);
    assert!(
        (share(&publisher) - 1.0).abs() < f64::EPSILON,
        "re-divided once r2's Lease expired"
    );
}

#[tokio::test(start_paused = true)]
async fn live_changes_are_signalled_spaced_not_per_report() {
    let publisher = Publisher::new();
    publisher.publish("team", with_quota());
    let registry =
        Registry::new(publisher.clone(), GRACE).with_live_interval(Duration::from_secs(10));
    let mut changes = registry.changes();
    registry.report("team", report("a", 1), Instant::now());
    assert!(changes.try_recv().is_ok(), "a new sidecar: at once");
    let with_level = |left: u64| SidecarReport {
        quotas: vec![crate::wire::QuotaLevelReport {
            quota: "q".into(),
            app_id: "app".into(),
            window: "minute".into(),
            remaining_tokens: left,
        }],
        ..report("a", 1)
    };
    for left in 0..20 {
        tokio::time::advance(Duration::from_millis(400)).await;
        registry.report("team", with_level(left), Instant::now());
        registry.sweep(Instant::now());
    }
    // 8 s of level changes: the first signal comes 10 s after the last one.
    assert!(changes.try_recv().is_err());
    tokio::time::advance(Duration::from_secs(2)).await;
    registry.sweep(Instant::now());
    assert!(changes.try_recv().is_ok(), "levels after the live interval");
    assert!(changes.try_recv().is_err(), "once");
    let tripped = SidecarReport {
        breakers: [("chat/east".to_owned(), crate::wire::BreakerState::Open)].into(),
        ..with_level(19)
    };
    registry.report("team", tripped, Instant::now());
    registry.sweep(Instant::now());
    assert!(changes.try_recv().is_err(), "spaced from the last signal");
    tokio::time::advance(BREAKER_SIGNAL_SPACING).await;
    registry.sweep(Instant::now());
    assert!(changes.try_recv().is_ok(), "a breaker within a second");
    assert_eq!(
        registry.live_sidecars("team", Instant::now())[0].breakers["chat/east"],
        crate::status::live::Breaker::Open
    );
}
