//! Token validation outcomes, API keys, the trusted header, order and anonymous access;
//! every test asserts the exact outcome.

use super::*;

#[tokio::test]
async fn valid_v1_v2_and_ec_tokens_name_the_app_with_one_discovery() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1, &k.ec1]).await;
    let clock = ManualClock::new();
    let id = identifier(&identity(&idp, &ALL, false), &clock);
    let v2 = sign(&k.rsa1, &claims(&idp, &clock, json!({})));
    assert_eq!(
        id.identify(&bearer(&v2)).await,
        app("app-v2", IdentityMethod::Jwt)
    );
    let v1 = claims(
        &idp,
        &clock,
        json!({"iss": idp.issuer_v1("t2"), "tid": "t2", "appid": "app-v1", "azp": null,
               "aud": ["other", "spillway-client-id"], "ver": "1.0"}),
    );
    assert_eq!(
        id.identify(&bearer(&sign(&k.rsa1, &v1))).await,
        app("app-v1", IdentityMethod::Jwt)
    );
    let ec = sign(&k.ec1, &claims(&idp, &clock, json!({"azp": "app-ec"})));
    assert_eq!(
        id.identify(&bearer(&ec)).await,
        app("app-ec", IdentityMethod::Jwt)
    );
    let mut no_kid = Header::new(Algorithm::RS256);
    no_kid.kid = None;
    let token =
        jsonwebtoken::encode(&no_kid, &claims(&idp, &clock, json!({})), &k.rsa1.encoding).unwrap();
    assert_eq!(
        id.identify(&bearer(&token)).await,
        app("app-v2", IdentityMethod::Jwt),
        "a token without kid is tried against the keys of its algorithm"
    );
    assert_eq!((idp.discovery_hits(), idp.jwks_hits()), (1, 1));
}

#[tokio::test]
async fn lifetime_is_checked_with_the_leeway() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let id = identifier(&identity(&idp, &ALL, false), &clock);
    let now = clock.unix();
    let token = |changes: Value| bearer(&sign(&k.rsa1, &claims(&idp, &clock, changes)));
    assert_eq!(
        reason(id.identify(&token(json!({"exp": now - 61}))).await),
        "expired"
    );
    assert_eq!(
        reason(id.identify(&token(json!({"exp": null}))).await),
        "no_expiry"
    );
    assert_eq!(
        id.identify(&token(json!({"exp": now - 30}))).await,
        app("app-v2", IdentityMethod::Jwt),
        "30 s past exp is inside the 60 s leeway"
    );
    assert_eq!(
        reason(id.identify(&token(json!({"nbf": now + 120}))).await),
        "not_yet_valid"
    );
    assert_eq!(
        id.identify(&token(json!({"nbf": now + 30}))).await,
        app("app-v2", IdentityMethod::Jwt)
    );
    let short = token(json!({"exp": now + 100}));
    assert!(id.identify(&short).await.is_ok());
    clock.advance(Duration::from_secs(159));
    assert!(id.identify(&short).await.is_ok());
    clock.advance(Duration::from_secs(2));
    assert_eq!(reason(id.identify(&short).await), "expired");
}

#[tokio::test]
async fn issuer_tenant_audience_and_app_claim_are_enforced() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let id = identifier(&identity(&idp, &ALL, false), &clock);
    let check = |changes: Value| {
        let token = sign(&k.rsa1, &claims(&idp, &clock, changes));
        let id = &id;
        async move { id.identify(&bearer(&token)).await }
    };
    assert_eq!(
        check(json!({"iss": "https://evil.example/t1/v2.0"})).await,
        Err(IdentityError::WrongIssuer {
            issuer: "https://evil.example/t1/v2.0".into()
        })
    );
    assert_eq!(
        reason(check(json!({"iss": idp.issuer_v2("t2")})).await),
        "wrong_issuer",
        "the issuer's tenant must match tid"
    );
    assert_eq!(
        check(json!({"iss": idp.issuer_v2("t3"), "tid": "t3"})).await,
        Err(IdentityError::WrongTenant {
            tenant: "t3".into()
        })
    );
    let wrong_audience = Err(IdentityError::WrongAudience {
        expected: "api://spillway or spillway-client-id".into(),
    });
    assert_eq!(check(json!({"aud": "api://graph"})).await, wrong_audience);
    assert_eq!(check(json!({"aud": ["a", "b"]})).await, wrong_audience);
    assert_eq!(
        check(json!({"azp": null})).await,
        Err(IdentityError::NoAppClaim {
            claims: "appid, azp".into()
        })
    );
}

#[tokio::test]
async fn alg_none_and_hmac_with_the_public_key_are_refused_without_fetching() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let id = identifier(&identity(&idp, &ALL, false), &clock);
    let body = segment(&claims(&idp, &clock, json!({})));
    let none = format!(
        "{}.{body}.",
        segment(&json!({"alg": "none", "kid": "rsa-1"}))
    );
    let disallowed = |alg: &str| {
        Err(IdentityError::DisallowedAlgorithm {
            alg: alg.into(),
            accepted: "RS256, ES256".into(),
        })
    };
    assert_eq!(id.identify(&bearer(&none)).await, disallowed("none"));
    let none_signed = format!("{}.{body}.c2ln", segment(&json!({"alg": "none"})));
    assert_eq!(id.identify(&bearer(&none_signed)).await, disallowed("none"));
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa-1".into());
    let secret = EncodingKey::from_secret(k.rsa1.public_pem.as_bytes());
    let confused =
        jsonwebtoken::encode(&header, &claims(&idp, &clock, json!({})), &secret).unwrap();
    assert_eq!(id.identify(&bearer(&confused)).await, disallowed("HS256"));
    assert_eq!(idp.jwks_hits(), 0);

    let mut lax = identity(&idp, &ALL, false);
    lax.jwt.as_mut().unwrap().algorithms = vec!["HS256".into(), "RS256".into()];
    let lax = identifier(&lax, &clock);
    assert_eq!(
        reason(lax.identify(&bearer(&confused)).await),
        "disallowed_algorithm",
        "HMAC is refused even if a configuration listed it"
    );
    let es = sign(&k.ec1, &claims(&idp, &clock, json!({})));
    assert_eq!(
        reason(lax.identify(&bearer(&es)).await),
        "disallowed_algorithm",
        "ES256 is not in this configuration's list"
    );
}

#[tokio::test]
async fn malformed_tokens_name_the_problem() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let id = identifier(&identity(&idp, &ALL, false), &clock);
    let good = sign(&k.rsa1, &claims(&idp, &clock, json!({})));
    let (header, rest) = good.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let malformed = |what| Err(IdentityError::MalformedToken(what));
    assert_eq!(
        id.identify(&bearer(&format!("{header}.{payload}"))).await,
        malformed("a JWT has three dot-separated parts")
    );
    assert_eq!(
        id.identify(&bearer(&format!("eyJ%%%.{payload}.{signature}")))
            .await,
        malformed("the header is not base64url-encoded JSON with an `alg`")
    );
    let garbage = URL_SAFE_NO_PAD.encode("{\"exp\": tomorrow");
    assert_eq!(
        id.identify(&bearer(&format!("{header}.{garbage}.{signature}")))
            .await,
        malformed("the payload is not base64url-encoded JSON")
    );
    assert_eq!(
        id.identify(&bearer(&format!("{header}.{payload}.%%%%")))
            .await,
        malformed("the signature is not base64url")
    );
    assert_eq!(
        id.identify(&bearer(&format!("{header}.{payload}."))).await,
        malformed("it has no signature")
    );
    let tampered = claims(&idp, &clock, json!({"azp": "someone-else"}));
    assert_eq!(
        id.identify(&bearer(&format!(
            "{header}.{}.{signature}",
            segment(&tampered)
        )))
        .await,
        Err(IdentityError::BadSignature)
    );
}

#[tokio::test]
async fn api_keys_and_the_trusted_header_name_the_app() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let id = identifier(&identity(&idp, &ALL, false), &clock);
    let auth = format!("Bearer {KEY_A}");
    assert_eq!(
        id.identify(&with(&[("api-key", KEY_A)])).await,
        app("app-a", IdentityMethod::ApiKey)
    );
    assert_eq!(
        id.identify(&with(&[("authorization", auth.as_str())]))
            .await,
        app("app-a", IdentityMethod::ApiKey),
        "a bearer value that is no JWT is an API key"
    );
    assert_eq!(
        id.identify(&with(&[("api-key", "sk-other")])).await,
        Err(IdentityError::UnknownApiKey)
    );
    assert_eq!(
        id.identify(&with(&[("x-spillway-app", "billing")])).await,
        app("billing", IdentityMethod::TrustedHeader)
    );
    assert_eq!(
        reason(id.identify(&with(&[("x-spillway-app", "bill ing")])).await),
        "malformed_header"
    );
    assert_eq!(idp.jwks_hits(), 0, "no JWT, no key fetch");
}

fn everything(token: &str) -> HeaderMap {
    with(&[
        ("authorization", format!("Bearer {token}").as_str()),
        ("api-key", KEY_A),
        ("x-spillway-app", "billing"),
    ])
}

#[tokio::test]
async fn order_decides_without_fallthrough_and_anonymous_needs_no_credential() {
    let k = keys();
    let idp = Idp::start(&[&k.rsa1]).await;
    let clock = ManualClock::new();
    let id = identifier(&identity(&idp, &ALL, false), &clock);
    let jwt = sign(&k.rsa1, &claims(&idp, &clock, json!({})));
    let expired = sign(
        &k.rsa1,
        &claims(&idp, &clock, json!({"exp": clock.unix() - 3600})),
    );
    assert_eq!(
        id.identify(&everything(&jwt)).await,
        app("app-v2", IdentityMethod::Jwt)
    );
    assert_eq!(
        reason(id.identify(&everything(&expired)).await),
        "expired",
        "an invalid JWT never falls through to the API key or the header"
    );
    let order = [IdentityMethod::ApiKey, IdentityMethod::Jwt];
    let keys_first = identifier(&identity(&idp, &order, false), &clock);
    assert_eq!(
        keys_first.identify(&everything(&expired)).await,
        app("app-a", IdentityMethod::ApiKey)
    );
    let mut wrong_key = everything(&jwt);
    wrong_key.insert("api-key", HeaderValue::from_static("sk-other"));
    assert_eq!(
        reason(keys_first.identify(&wrong_key).await),
        "unknown_api_key"
    );
    assert_eq!(
        keys_first.identify(&bearer(&jwt)).await,
        app("app-v2", IdentityMethod::Jwt),
        "a JWT-shaped bearer is no API key, so JWT decides"
    );
    assert_eq!(reason(id.identify(&HeaderMap::new()).await), "missing");
    let open = identifier(&identity(&idp, &ALL, true), &clock);
    assert_eq!(
        open.identify(&HeaderMap::new()).await,
        Ok(AppIdentity {
            app_id: "anonymous".into(),
            method: None
        })
    );
    assert_eq!(
        reason(open.identify(&everything(&expired)).await),
        "expired"
    );
    let failures = id.failures();
    let count = |r| failures.iter().find(|(reason, _)| *reason == r).unwrap().1;
    assert_eq!((count("expired"), count("missing")), (1, 1));
    assert_eq!(failures.iter().map(|(_, n)| n).sum::<u64>(), 2);
}
