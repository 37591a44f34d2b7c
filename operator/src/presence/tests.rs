//! No-cluster tests of presence Lease names, encoding and expiry.

use super::*;
use crate::status::live::Breaker;

fn sidecar(id: &str, version: u64) -> LiveSidecar {
    LiveSidecar {
        id: id.into(),
        version: Some(version),
        breakers: [("chat/east".to_owned(), Breaker::Open)].into(),
        trips: BTreeMap::new(),
        minute_left: [("q".to_owned(), [("app".to_owned(), 500)].into())].into(),
        calendar_left: [(
            "q".to_owned(),
            [("day".to_owned(), [("app".to_owned(), 9_000)].into())].into(),
        )]
        .into(),
        redis: false,
    }
}

fn lease(holder: &str, renewed: Timestamp, seconds: i32, scopes: &Scopes) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(lease_name(holder)),
            annotations: Some([(ANNOTATION.to_owned(), encode(scopes))].into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            renew_time: Some(MicroTime(renewed)),
            ..LeaseSpec::default()
        }),
    }
}

const T0: i64 = 1_700_000_000;

fn at(second: i64) -> Timestamp {
    Timestamp::from_second(T0 + second).expect("time")
}

#[test]
fn lease_names_are_valid_object_names() {
    assert_eq!(
        lease_name("spillway-operator-7d9f-x2"),
        "spillway-replica-spillway-operator-7d9f-x2"
    );
    assert_eq!(lease_name("Host_Name:42"), "spillway-replica-host-name-42");
    let long = lease_name(&"a".repeat(400));
    assert_eq!(long.len(), 253);
    assert_eq!(lease_name("x_"), "spillway-replica-x");
}

#[test]
fn other_replicas_count_until_their_lease_expires() {
    let scopes: Scopes = [("team".to_owned(), vec![sidecar("pod-b", 4)])].into();
    let leases = [
        lease(
            "me",
            at(0),
            15,
            &[("team".to_owned(), vec![sidecar("pod-a", 4)])].into(),
        ),
        lease("b", at(0), 15, &scopes),
        lease("stale", at(-20), 15, &scopes),
        lease("ancient", at(-2 * 3600), 15, &scopes),
    ];
    let (live, forgotten) = decode(&leases, "me", at(5));
    assert_eq!(live.keys().collect::<Vec<_>>(), ["b"]);
    let (left, decoded) = &live["b"];
    assert_eq!(*left, Duration::from_secs(10));
    assert_eq!(decoded, &scopes, "round trip");
    assert_eq!(forgotten, [lease_name("ancient")]);
    let (live, _) = decode(&leases, "me", at(15));
    assert!(
        live.is_empty(),
        "expired at renewTime + leaseDurationSeconds"
    );
}

#[test]
fn unreadable_or_incomplete_leases_are_skipped() {
    let mut broken = lease("b", at(0), 15, &Scopes::new());
    broken
        .metadata
        .annotations
        .as_mut()
        .expect("annotations")
        .insert(ANNOTATION.to_owned(), "{not json".into());
    let mut no_spec = lease("c", at(0), 15, &Scopes::new());
    no_spec.spec = None;
    let mut no_annotation = lease("d", at(0), 15, &Scopes::new());
    no_annotation.metadata.annotations = None;
    let (live, _) = decode(&[broken, no_spec, no_annotation], "me", at(1));
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        ["d"],
        "no annotation is a replica without sidecars"
    );
    assert!(live["d"].1.is_empty());
}

#[test]
fn the_annotation_stays_bounded_dropping_details_first() {
    let small: Scopes = [("team".to_owned(), vec![sidecar("pod-a", 4)])].into();
    assert_eq!(
        encode(&small),
        r#"{"team":[{"id":"pod-a","v":4,"b":{"chat/east":"o"},"q":{"q":{"app":500}},"c":{"q":{"day":{"app":9000}}}}]}"#
    );

    // 1 500 sidecars with levels of 20 apps each: too big with levels, fine without.
    let many = |count: usize, apps: usize| -> Scopes {
        let sidecars = (0..count)
            .map(|i| {
                let mut s = sidecar(&format!("gateway-pod-{i:05}"), 9);
                let levels = (0..apps).map(|a| (format!("app-{a}"), 1000)).collect();
                s.minute_left = [("default".to_owned(), levels)].into();
                s
            })
            .collect();
        [("team".to_owned(), sidecars)].into()
    };
    let text = encode(&many(1_500, 20));
    assert!(text.len() <= MAX_ANNOTATION_BYTES, "{}", text.len());
    let decoded: Scopes = serde_json::from_str(&text).expect("json");
    assert_eq!(decoded["team"].len(), 1_500, "every sidecar still counts");
    assert!(decoded["team"].iter().all(|s| s.minute_left.is_empty()));
    assert!(decoded["team"].iter().all(|s| s.calendar_left.is_empty()));
    assert!(decoded["team"].iter().all(|s| !s.breakers.is_empty()));

    // 6 000 sidecars do not fit even bare: as many as fit are kept.
    let text = encode(&many(6_000, 0));
    assert!(text.len() <= MAX_ANNOTATION_BYTES, "{}", text.len());
    let decoded: Scopes = serde_json::from_str(&text).expect("json");
    let kept = decoded["team"].len();
    assert!((3_000..6_000).contains(&kept), "{kept}");
    assert!(decoded["team"].iter().all(|s| s.breakers.is_empty()));
}
