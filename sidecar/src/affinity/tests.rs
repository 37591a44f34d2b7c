use super::*;

fn home(backend: &str, pending: bool) -> Home {
    Home {
        pool: "chat".into(),
        backend: backend.into(),
        app: "app".into(),
        model: "gpt-4o".into(),
        pending_usage: pending,
    }
}

#[tokio::test]
async fn remembers_finds_and_forgets() {
    let homes = ResponseHomes::default();
    assert_eq!(homes.find("resp_1", None).await, None);
    homes.remember("resp_1", home("a", false), None).await;
    assert_eq!(homes.find("resp_1", None).await, Some(home("a", false)));
    homes.forget("resp_1", None).await;
    assert_eq!(homes.find("resp_1", None).await, None);
}

#[tokio::test]
async fn background_usage_is_claimed_once() {
    let homes = ResponseHomes::default();
    homes.remember("resp_bg", home("a", true), None).await;
    homes.remember("resp_fg", home("a", false), None).await;
    assert!(homes.claim_usage("resp_bg", None).await);
    assert!(!homes.claim_usage("resp_bg", None).await);
    assert!(!homes.claim_usage("resp_fg", None).await);
    assert!(!homes.claim_usage("unknown", None).await);
}

#[test]
fn the_map_is_bounded_and_expires() {
    let mut local = Local::default();
    let now = Instant::now();
    for i in 0..CAPACITY + 10 {
        local.insert(&format!("resp_{i}"), home("a", false), now);
    }
    assert_eq!(local.homes.len(), CAPACITY);
    assert!(local.get("resp_0", now).is_none(), "oldest dropped first");
    assert!(local.get(&format!("resp_{}", CAPACITY + 9), now).is_some());
    assert!(
        local
            .get("resp_20", now + TTL + Duration::from_secs(1))
            .is_none(),
        "expired"
    );
    assert!(!local.homes.contains_key("resp_20"));
}
