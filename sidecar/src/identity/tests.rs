#![allow(clippy::unwrap_used, clippy::expect_used)]

use http::HeaderValue;
use sha2::{Digest, Sha256};
use spillway_crds::snapshot::{ApiKeyConfig, JwtConfig};

use super::*;

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A JWT configuration whose keys live at a closed loopback port.
fn unreachable_jwt() -> JwtConfig {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    JwtConfig {
        issuers: vec!["https://issuer.example/".into()],
        tenants: vec![],
        audiences: vec!["api://spillway".into()],
        jwks_uri: Some(format!("http://127.0.0.1:{port}/keys")),
        app_id_claims: vec!["appid".into(), "azp".into()],
        algorithms: vec!["RS256".into()],
        leeway_ms: 0,
    }
}

fn config(order: &[IdentityMethod], allow_anonymous: bool) -> IdentityConfig {
    IdentityConfig {
        order: order.to_vec(),
        allow_anonymous,
        jwt: Some(unreachable_jwt()),
        api_keys: vec![
            ApiKeyConfig {
                app_id: "app-a".into(),
                sha256: sha256_hex("key-a"),
            },
            ApiKeyConfig {
                app_id: "app-b".into(),
                sha256: sha256_hex("key-b"),
            },
        ],
        trusted_header: Some("x-app-id".into()),
        refuse_all: None,
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

fn ok(app: &str, method: IdentityMethod) -> Result<AppIdentity, IdentityError> {
    Ok(AppIdentity {
        app_id: app.into(),
        method: Some(method),
    })
}

const ALL: [IdentityMethod; 3] = [
    IdentityMethod::Jwt,
    IdentityMethod::ApiKey,
    IdentityMethod::TrustedHeader,
];

#[tokio::test]
async fn api_keys_from_either_header() {
    let id = Identifier::new(&config(&ALL, false), None);
    let run = |pairs: &'static [(&str, &str)]| id.identify_owned(headers(pairs));
    assert_eq!(
        run(&[("api-key", "key-a")]).await,
        ok("app-a", IdentityMethod::ApiKey)
    );
    assert_eq!(
        run(&[("authorization", "Bearer key-b")]).await,
        ok("app-b", IdentityMethod::ApiKey)
    );
    assert_eq!(
        run(&[("authorization", "bearer   key-b ")]).await,
        ok("app-b", IdentityMethod::ApiKey)
    );
    assert_eq!(
        run(&[("api-key", "key-c")]).await,
        Err(IdentityError::UnknownApiKey)
    );
    assert_eq!(
        run(&[("api-key", "key-c"), ("x-app-id", "app-z")]).await,
        Err(IdentityError::UnknownApiKey),
        "an invalid key never falls through to the trusted header"
    );
}

#[tokio::test]
async fn a_jwt_shaped_bearer_goes_to_jwt_validation() {
    let id = Identifier::new(&config(&ALL, true), None);
    let run = |pairs: &'static [(&str, &str)]| id.identify_owned(headers(pairs));
    assert_eq!(
        run(&[("authorization", "Bearer a.b.c")])
            .await
            .unwrap_err()
            .reason(),
        "malformed"
    );
    assert_eq!(
        run(&[("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30")]).await,
        Err(IdentityError::MalformedToken(
            "a JWT has three dot-separated parts"
        ))
    );
    assert_eq!(
        run(&[(
            "authorization",
            "Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6ImsifQ.eyJleHAiOjF9.c2ln"
        )])
        .await,
        Err(IdentityError::JwksUnavailable),
        "keys that cannot be fetched refuse the token, never accept it"
    );
    assert_eq!(
        run(&[
            ("authorization", "Bearer eyJhbGciOiJub25lIn0.e30.c2ln"),
            ("api-key", "key-a")
        ])
        .await
        .unwrap_err()
        .reason(),
        "disallowed_algorithm",
        "JWT comes first in this order and decides"
    );
}

#[tokio::test]
async fn order_decides_which_credential_counts() {
    let order = [IdentityMethod::TrustedHeader, IdentityMethod::ApiKey];
    let id = Identifier::new(&config(&order, false), None);
    let both = headers(&[("api-key", "key-a"), ("x-app-id", "app-h")]);
    assert_eq!(
        id.identify(&both).await,
        ok("app-h", IdentityMethod::TrustedHeader)
    );
    let reversed = [IdentityMethod::ApiKey, IdentityMethod::TrustedHeader];
    let id = Identifier::new(&config(&reversed, false), None);
    assert_eq!(
        id.identify(&both).await,
        ok("app-a", IdentityMethod::ApiKey)
    );
    assert_eq!(
        id.identify(&headers(&[
            ("authorization", "Bearer eyJ.x.y"),
            ("x-app-id", "app-h")
        ]))
        .await,
        Err(IdentityError::UnknownApiKey),
        "without JWT in the order every bearer value is an API key candidate"
    );
}

#[tokio::test]
async fn trusted_header_values_are_checked() {
    let id = Identifier::new(&config(&[IdentityMethod::TrustedHeader], false), None);
    let malformed = |problem| {
        Err(IdentityError::MalformedHeader {
            header: "x-app-id".into(),
            problem,
        })
    };
    let long = "a".repeat(257);
    assert_eq!(
        id.identify(&headers(&[("x-app-id", "team-a/app-1")])).await,
        ok("team-a/app-1", IdentityMethod::TrustedHeader)
    );
    assert_eq!(
        id.identify(&headers(&[("x-app-id", "")])).await,
        malformed("it is empty")
    );
    assert_eq!(
        id.identify(&headers(&[("x-app-id", &long)])).await,
        malformed("it is longer than 256 characters")
    );
    assert_eq!(
        id.identify(&headers(&[("x-app-id", "a b")])).await,
        malformed("it contains characters other than visible ASCII")
    );
    let mut latin1 = HeaderMap::new();
    latin1.insert("x-app-id", HeaderValue::from_bytes(b"caf\xe9").unwrap());
    assert_eq!(
        id.identify(&latin1).await,
        malformed("it contains characters other than visible ASCII")
    );
    assert_eq!(
        id.identify(&headers(&[("x-app-id", "a"), ("x-app-id", "b")]))
            .await,
        malformed("it is sent more than once")
    );
}

#[tokio::test]
async fn a_refusing_configuration_refuses_every_credential_and_none() {
    let mut refusing = config(&ALL, true);
    refusing.refuse_all = Some("AIGateway apps/gateway cannot be applied".into());
    let id = Identifier::new(&refusing, None);
    for presented in [
        headers(&[]),
        headers(&[("api-key", "key-a")]),
        headers(&[("x-app-id", "a")]),
    ] {
        let error = id.identify(&presented).await.unwrap_err();
        assert_eq!(error.reason(), "identity_not_configured");
        assert!(
            error
                .to_string()
                .contains("AIGateway apps/gateway cannot be applied"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn anonymous_only_when_allowed() {
    let open = Identifier::new(&config(&ALL, true), None);
    let anonymous = Ok(AppIdentity {
        app_id: ANONYMOUS.into(),
        method: None,
    });
    assert_eq!(open.identify(&HeaderMap::new()).await, anonymous);
    assert_eq!(
        open.identify(&headers(&[
            ("authorization", "Basic dTpw"),
            ("api-key", "")
        ]))
        .await,
        anonymous,
        "another auth scheme and an empty api-key are no credential"
    );
    let closed = Identifier::new(&config(&ALL, false), None);
    let error = closed.identify(&HeaderMap::new()).await.unwrap_err();
    assert_eq!(error.reason(), "missing");
    assert_eq!(
        error.to_string(),
        "this gateway requires a credential: send `Authorization: Bearer <token>` with a token \
         issued for api://spillway, or `api-key: <key>` (or `Authorization: Bearer <key>`) \
         with your app's API key, or the `x-app-id` header"
    );
    let default = Identifier::new(&IdentityConfig::default(), None);
    assert_eq!(
        default.identify(&headers(&[("api-key", "key-a")])).await,
        anonymous
    );
}

#[tokio::test]
async fn failures_are_counted_across_rebuilds() {
    let first = Identifier::new(&config(&ALL, false), None);
    first
        .identify(&headers(&[("api-key", "nope")]))
        .await
        .unwrap_err();
    first.identify(&HeaderMap::new()).await.unwrap_err();
    let second = Identifier::new(&config(&ALL, false), Some(&first));
    second
        .identify(&headers(&[("api-key", "nope")]))
        .await
        .unwrap_err();
    second
        .identify(&headers(&[("api-key", "key-a")]))
        .await
        .unwrap();
    let counts = second.failures();
    assert_eq!(counts.len(), REASONS.len());
    let count = |reason| counts.iter().find(|(r, _)| *r == reason).unwrap().1;
    assert_eq!(count("unknown_api_key"), 2);
    assert_eq!(count("missing"), 1);
    assert_eq!(counts.iter().map(|(_, n)| n).sum::<u64>(), 3);
}

#[tokio::test]
async fn errors_never_echo_the_credential() {
    let id = Identifier::new(&config(&ALL, false), None);
    let credentials = [
        ("api-key", "sk-secret-value-1"),
        ("authorization", "Bearer sk-secret-value-2"),
        ("authorization", "Bearer eyJzZWNyZXQ.eyJzZWNyZXQ.c2VjcmV0"),
    ];
    for (name, value) in credentials {
        let error = id.identify(&headers(&[(name, value)])).await.unwrap_err();
        let message = error.to_string();
        let secret = value.trim_start_matches("Bearer ");
        assert!(!message.contains(secret), "{message}");
        assert!(!message.contains("secret"), "{message}");
    }
    let method = AppIdentity {
        app_id: "a".into(),
        method: Some(IdentityMethod::ApiKey),
    };
    assert_eq!(method.method_label(), "api_key");
}

impl Identifier {
    /// Owned-headers helper so closures can return the future.
    async fn identify_owned(&self, headers: HeaderMap) -> Result<AppIdentity, IdentityError> {
        self.identify(&headers).await
    }
}

#[test]
fn identifier_is_shareable_and_identify_is_send() {
    fn shareable<T: Send + Sync + 'static>(_: &T) {}
    fn sendable<T: Send>(_: &T) {}
    let id = Identifier::new(&config(&ALL, false), None);
    shareable(&id);
    let headers = HeaderMap::new();
    let future = id.identify(&headers);
    sendable(&future);
    drop(future);
}
