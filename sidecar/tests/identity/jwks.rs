//! Fetching the issuer's keys: discovery, unknown-`kid` refetch and its rate limit,
//! single flight, outages, background refresh and cache reuse across rebuilds.

use super::*;

#[tokio::test]
async fn an_unknown_kid_refetches_once_and_accepts_the_rotated_key() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let id = identifier(&identity(&idp, &ALL, false), &clock);
    let old = sign(&k.rsa1, &claims(&idp, &clock, json!({})));
    let new = sign(&k.rsa2, &claims(&idp, &clock, json!({"azp": "app-new"})));
    assert!(id.identify(&bearer(&old)).await.is_ok());
    assert_eq!(idp.jwks_hits(), 1);
    assert_eq!(
        id.identify(&bearer(&new)).await,
        Err(IdentityError::UnknownKey {
            kid: Some("rsa-2".into())
        }),
        "the refetch is rate-limited right after the first fetch"
    );
    assert_eq!(idp.jwks_hits(), 1);
    idp.publish(&[&k.rsa1, &k.rsa2]);
    clock.advance(Duration::from_millis(1_900));
    assert!(
        id.identify(&bearer(&new)).await.is_err(),
        "within the 2 s bound"
    );
    assert_eq!(idp.jwks_hits(), 1);
    clock.advance(Duration::from_millis(100));
    assert_eq!(
        id.identify(&bearer(&new)).await,
        app("app-new", IdentityMethod::Jwt),
        "a rotated key is accepted at most 2 s after the last fetch"
    );
    assert_eq!(idp.jwks_hits(), 2);
    assert!(id.identify(&bearer(&new)).await.is_ok());
    assert!(id.identify(&bearer(&old)).await.is_ok());
    assert_eq!(idp.jwks_hits(), 2, "known keys need no fetch");
    assert_eq!(
        idp.discovery_hits(),
        1,
        "the discovered jwks_uri is remembered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_storm_of_unknown_kids_causes_a_single_fetch() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let id = Arc::new(identifier(&identity(&idp, &ALL, false), &clock));
    assert!(
        id.identify(&bearer(&sign(&k.rsa1, &claims(&idp, &clock, json!({})))))
            .await
            .is_ok()
    );
    let storm = |token: String| {
        let tasks: Vec<_> = (0..32)
            .map(|_| {
                let (id, token) = (Arc::clone(&id), token.clone());
                tokio::spawn(async move { id.identify(&bearer(&token)).await })
            })
            .collect();
        async move {
            let mut results = Vec::new();
            for task in tasks {
                results.push(task.await.unwrap());
            }
            results
        }
    };
    let unknown = sign(&k.rsa2, &claims(&idp, &clock, json!({})));
    clock.advance(Duration::from_secs(31));
    let results = storm(unknown.clone()).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().err().map(IdentityError::reason) == Some("unknown_key"))
    );
    assert_eq!(
        idp.jwks_hits(),
        2,
        "32 tokens with an unknown kid, one fetch"
    );
    let results = storm(unknown.clone()).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().err().map(IdentityError::reason) == Some("unknown_key"))
    );
    assert_eq!(idp.jwks_hits(), 2, "rate-limited within 2 s");
    idp.publish(&[&k.rsa1, &k.rsa2]);
    clock.advance(Duration::from_secs(31));
    let results = storm(unknown).await;
    assert!(
        results
            .iter()
            .all(|r| r.as_ref().map(|a| a.app_id.as_str()).ok() == Some("app-v2"))
    );
    assert_eq!(idp.jwks_hits(), 3, "the rotated key came in with one fetch");
}

#[tokio::test]
async fn jwks_outage_keeps_cached_keys_and_says_so_for_new_ones() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let id = identifier(&identity(&idp, &ALL, false), &clock);
    let known = bearer(&sign(&k.rsa1, &claims(&idp, &clock, json!({}))));
    let unknown = bearer(&sign(&k.rsa2, &claims(&idp, &clock, json!({}))));
    assert!(id.identify(&known).await.is_ok());
    idp.set_down(true);
    clock.advance(Duration::from_secs(31));
    let refused = id.identify(&unknown).await.unwrap_err();
    assert_eq!(refused, IdentityError::JwksUnavailable);
    let response = spillway_sidecar::error::ProxyError::from(refused).to_response();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        idp.jwks_hits(),
        2,
        "the outage was noticed by a real attempt"
    );
    assert_eq!(
        id.identify(&known).await,
        app("app-v2", IdentityMethod::Jwt)
    );
    idp.set_down(false);
    idp.publish(&[&k.rsa1, &k.rsa2]);
    assert_eq!(
        reason(id.identify(&unknown).await),
        "jwks_unavailable",
        "rate-limited"
    );
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        id.identify(&unknown).await,
        app("app-v2", IdentityMethod::Jwt)
    );
    assert_eq!(idp.jwks_hits(), 3);
}

#[tokio::test]
async fn an_unreachable_key_source_refuses_with_503() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let mut config = identity(&idp, &ALL, false);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    config.jwt.as_mut().unwrap().jwks_uri = Some(format!("http://{closed}/keys"));
    let id = identifier(&config, &clock);
    let token = bearer(&sign(&k.rsa1, &claims(&idp, &clock, json!({}))));
    let error = id.identify(&token).await.unwrap_err();
    assert_eq!(error, IdentityError::JwksUnavailable);
    assert_eq!(
        error.to_string(),
        "the gateway cannot fetch the token issuer's signing keys right now; retry shortly"
    );
    assert_eq!(idp.jwks_hits(), 0);
}

#[tokio::test]
async fn stale_keys_are_refreshed_in_the_background() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let id = identifier(&identity(&idp, &ALL, false), &clock);
    let old = bearer(&sign(
        &k.rsa1,
        &claims(&idp, &clock, json!({"exp": clock.unix() + 7200})),
    ));
    assert!(id.identify(&old).await.is_ok());
    idp.publish(&[&k.rsa2]);
    clock.advance(Duration::from_secs(3600));
    assert!(
        id.identify(&old).await.is_ok(),
        "served from the cache while refreshing"
    );
    for _ in 0..200 {
        if idp.jwks_hits() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(idp.jwks_hits(), 2);
    let mut refused = None;
    for _ in 0..200 {
        match id.identify(&old).await {
            Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    assert_eq!(
        refused,
        Some(IdentityError::UnknownKey {
            kid: Some("rsa-1".into())
        }),
        "the retired key is gone after the refresh"
    );
    let new = bearer(&sign(&k.rsa2, &claims(&idp, &clock, json!({}))));
    assert!(id.identify(&new).await.is_ok());
    assert_eq!(idp.jwks_hits(), 2);
}

#[tokio::test]
async fn a_rebuilt_identifier_reuses_the_key_cache_unless_the_source_changes() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let options = || IdentifierOptions {
        clock: Arc::clone(&clock) as Arc<dyn Clock>,
        jwks: JwksOptions::default(),
    };
    let token = bearer(&sign(&k.rsa1, &claims(&idp, &clock, json!({}))));
    let mut config = identity(&idp, &ALL, false);
    let first = Identifier::with_options(&config, None, options());
    assert!(first.identify(&token).await.is_ok());
    config
        .jwt
        .as_mut()
        .unwrap()
        .audiences
        .push("another".into());
    config.allow_anonymous = true;
    let second = Identifier::with_options(&config, Some(&first), options());
    assert!(second.identify(&token).await.is_ok());
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (1, 1));
    config.jwt.as_mut().unwrap().jwks_uri = Some(format!("{}/keys", idp.base));
    let third = Identifier::with_options(&config, Some(&second), options());
    assert!(third.identify(&token).await.is_ok());
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (1, 2));
}
