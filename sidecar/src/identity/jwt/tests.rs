#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{EncodingKey, Header};
use p256::ecdsa::SigningKey;
use p256::pkcs8::EncodePrivateKey;
use serde_json::json;

use super::*;

const NOW_MS: i128 = 1_700_000_000_000;
const NOW: i64 = 1_700_000_000;

fn rules() -> ClaimRules {
    ClaimRules::new(&JwtConfig {
        issuers: vec![
            "https://login.example/{tenant}/v2.0".into(),
            "https://sts.example/fixed/".into(),
        ],
        tenants: vec!["t1".into(), "t2".into()],
        audiences: vec!["api://spillway".into(), "client-id".into()],
        jwks_uri: None,
        app_id_claims: vec!["appid".into(), "azp".into()],
        algorithms: vec!["ES256".into()],
        leeway_ms: 60_000,
    })
}

fn claims(value: serde_json::Value) -> Map<String, Value> {
    let mut base = json!({
        "iss": "https://login.example/t1/v2.0",
        "tid": "t1",
        "aud": "api://spillway",
        "exp": NOW + 600,
        "azp": "app-v2",
    });
    for (k, v) in value.as_object().unwrap() {
        if v.is_null() {
            base.as_object_mut().unwrap().remove(k);
        } else {
            base[k] = v.clone();
        }
    }
    base.as_object().unwrap().clone()
}

fn check(overrides: serde_json::Value) -> Result<String, IdentityError> {
    check_claims(&claims(overrides), &rules(), NOW_MS)
}

#[test]
fn claims_accept_v1_and_v2_tokens() {
    assert_eq!(check(json!({})).unwrap(), "app-v2");
    assert_eq!(
        check(json!({"appid": "app-v1"})).unwrap(),
        "app-v1",
        "appid comes first"
    );
    assert_eq!(
        check(
            json!({"iss": "https://sts.example/fixed/", "tid": "t2", "aud": ["other", "client-id"]})
        )
        .unwrap(),
        "app-v2"
    );
    assert_eq!(check(json!({"exp": NOW as f64 + 0.5})).unwrap(), "app-v2");
}

#[test]
fn exp_and_nbf_honour_the_leeway_in_milliseconds() {
    assert_eq!(check(json!({"exp": NOW - 59})).unwrap(), "app-v2");
    assert_eq!(check(json!({"exp": NOW - 60})), Err(IdentityError::Expired));
    assert_eq!(
        check(json!({"exp": null})),
        Err(IdentityError::NoExpiry),
        "absent: its own reason"
    );
    assert!(matches!(
        check(json!({"exp": "soon"})),
        Err(IdentityError::MalformedToken(_))
    ));
    assert_eq!(check(json!({"nbf": NOW + 60})).unwrap(), "app-v2");
    assert_eq!(
        check(json!({"nbf": NOW + 61})),
        Err(IdentityError::NotYetValid)
    );
    assert_eq!(
        check(json!({"nbf": "later"})),
        Err(IdentityError::MalformedToken("`nbf` is not a number"))
    );
}

#[test]
fn issuer_tenant_and_audience_are_checked() {
    let wrong_issuer = |iss: &str| IdentityError::WrongIssuer { issuer: iss.into() };
    assert_eq!(
        check(json!({"iss": "https://evil.example/t1/v2.0"})),
        Err(wrong_issuer("https://evil.example/t1/v2.0"))
    );
    assert_eq!(
        check(json!({"iss": "https://login.example/t2/v2.0"})),
        Err(wrong_issuer("https://login.example/t2/v2.0")),
        "the issuer's tenant must be the token's tid"
    );
    assert_eq!(check(json!({"iss": null})), Err(wrong_issuer("")));
    assert_eq!(
        check(json!({"iss": "https://login.example/t3/v2.0", "tid": "t3"})),
        Err(IdentityError::WrongTenant {
            tenant: "t3".into()
        })
    );
    assert_eq!(
        check(json!({"iss": "https://sts.example/fixed/", "tid": null})),
        Err(IdentityError::WrongTenant {
            tenant: "(none)".into()
        })
    );
    assert_eq!(
        check(json!({"iss": "https://login.example/t2/v2.0", "tid": null}))
            .err()
            .map(|e| e.reason()),
        Some("wrong_tenant"),
        "without tid the placeholder matches the configured tenants"
    );
    let wrong_audience = Err(IdentityError::WrongAudience {
        expected: "api://spillway or client-id".into(),
    });
    assert_eq!(check(json!({"aud": "api://other"})), wrong_audience);
    assert_eq!(check(json!({"aud": ["a", "b"]})), wrong_audience);
    assert_eq!(check(json!({"aud": null})), wrong_audience);
}

#[test]
fn any_tenant_when_none_configured() {
    let mut rules = rules();
    rules.tenants.clear();
    let claims = claims(json!({"iss": "https://login.example/t9/v2.0", "tid": "t9"}));
    assert_eq!(check_claims(&claims, &rules, NOW_MS).unwrap(), "app-v2");
    let no_tid = claims_without_tid();
    assert_eq!(
        check_claims(&no_tid, &rules, NOW_MS)
            .err()
            .map(|e| e.reason()),
        Some("wrong_issuer")
    );
}

fn claims_without_tid() -> Map<String, Value> {
    claims(json!({"iss": "https://login.example/t9/v2.0", "tid": null}))
}

#[test]
fn app_id_comes_from_the_first_present_claim() {
    let no_app = Err(IdentityError::NoAppClaim {
        claims: "appid, azp".into(),
    });
    assert_eq!(check(json!({"azp": null})), no_app);
    assert_eq!(check(json!({"azp": 42})), no_app);
    assert_eq!(check(json!({"azp": ""})), no_app);
    assert_eq!(check(json!({"azp": "has space"})), no_app);
    assert_eq!(check(json!({"azp": "x".repeat(257)})), no_app);
    assert_eq!(check(json!({"azp": "x".repeat(256)})).unwrap().len(), 256);
}

fn segment(value: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[test]
fn parse_names_what_is_malformed() {
    let header = segment(&json!({"alg": "ES256", "kid": "k"}));
    let payload = segment(&json!({"exp": 1}));
    let reason = |token: &str| parse(token).err().unwrap();
    assert_eq!(
        reason(&format!("{header}.{payload}")),
        IdentityError::MalformedToken("a JWT has three dot-separated parts")
    );
    assert_eq!(
        reason(&format!("{header}.{payload}.sig.extra")),
        IdentityError::MalformedToken("a JWT has three dot-separated parts")
    );
    assert_eq!(
        reason(&format!("eyJ!!.{payload}.sig")),
        IdentityError::MalformedToken("the header is not base64url-encoded JSON with an `alg`")
    );
    assert_eq!(
        reason(&format!(
            "{}.{payload}.sig",
            URL_SAFE_NO_PAD.encode("garbage")
        )),
        IdentityError::MalformedToken("the header is not base64url-encoded JSON with an `alg`")
    );
    assert_eq!(
        reason(&format!("{header}.{}.sig", URL_SAFE_NO_PAD.encode("[1,2"))),
        IdentityError::MalformedToken("the payload is not base64url-encoded JSON")
    );
    assert_eq!(
        reason(&format!("{}.{payload}.sig", segment(&json!({"kid": "k"})))),
        IdentityError::MalformedToken("the header has no `alg`")
    );
    assert_eq!(
        reason(&format!(
            "{}.{payload}.sig",
            segment(&json!({"alg": "ES256", "crit": ["x"]}))
        )),
        IdentityError::MalformedToken("it uses critical header extensions (`crit`)")
    );
    assert_eq!(
        parse(&format!("{header}.{payload}.")).unwrap().signature,
        ""
    );
    let parsed = parse("eyJhbGciOiJFUzI1NiJ9.e30.c2ln").unwrap();
    assert_eq!(parsed.alg, "ES256");
    assert_eq!(parsed.kid, None);
    assert_eq!(parsed.signing_input, "eyJhbGciOiJFUzI1NiJ9.e30");
    assert_eq!(parsed.signature, "c2ln");
}

struct EcKey {
    signing: SigningKey,
}

impl EcKey {
    fn new() -> Self {
        Self {
            signing: SigningKey::random(&mut rand_core::OsRng),
        }
    }

    fn jwk(&self, kid: &str) -> serde_json::Value {
        let point = self.signing.verifying_key().to_encoded_point(false);
        json!({
            "kty": "EC", "crv": "P-256", "kid": kid, "use": "sig",
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        })
    }

    fn sign(&self, kid: Option<&str>) -> String {
        let der = self.signing.to_pkcs8_der().unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(
            &header,
            &json!({"exp": 1}),
            &EncodingKey::from_ec_der(der.as_bytes()),
        )
        .unwrap()
    }
}

#[test]
fn verify_uses_the_kid_or_every_fitting_key() {
    let (a, b) = (EcKey::new(), EcKey::new());
    let keys = KeySet::parse(
        json!({"keys": [a.jwk("a"), b.jwk("b")]})
            .to_string()
            .as_bytes(),
    )
    .unwrap();
    let run = |token: &str| verify(&parse(token).unwrap(), &keys, Algorithm::ES256);
    assert_eq!(run(&a.sign(Some("a"))), Ok(()));
    assert_eq!(
        run(&b.sign(None)),
        Ok(()),
        "without kid every ES256 key is tried"
    );
    assert_eq!(run(&a.sign(Some("b"))), Err(IdentityError::BadSignature));
    assert_eq!(
        run(&a.sign(Some("c"))),
        Err(IdentityError::UnknownKey {
            kid: Some("c".into())
        })
    );
    let stranger = EcKey::new().sign(None);
    assert_eq!(run(&stranger), Err(IdentityError::BadSignature));
    let token = a.sign(Some("a"));
    let (input, _) = token.rsplit_once('.').unwrap();
    assert_eq!(
        run(&format!("{input}.!!!")),
        Err(IdentityError::MalformedToken(
            "the signature is not base64url"
        ))
    );
    let parsed = parse(&token).unwrap();
    assert_eq!(
        verify(&parsed, &keys, Algorithm::RS256),
        Err(IdentityError::UnknownKey {
            kid: Some("a".into())
        }),
        "an EC key never verifies an RSA algorithm"
    );
}

#[test]
fn discovery_source_expands_the_tenant() {
    let mut config = JwtConfig {
        issuers: vec!["https://login.example/{tenant}/v2.0/".into()],
        tenants: vec![],
        audiences: vec!["a".into()],
        jwks_uri: None,
        app_id_claims: vec!["azp".into()],
        algorithms: vec!["RS256".into()],
        leeway_ms: 0,
    };
    assert_eq!(
        source(&config),
        JwksSource::Discovery(
            "https://login.example/common/v2.0/.well-known/openid-configuration".into()
        )
    );
    config.tenants = vec!["t1".into()];
    assert_eq!(
        source(&config),
        JwksSource::Discovery(
            "https://login.example/t1/v2.0/.well-known/openid-configuration".into()
        )
    );
    config.jwks_uri = Some("https://keys.example/jwks".into());
    assert_eq!(
        source(&config),
        JwksSource::Uri("https://keys.example/jwks".into())
    );
}

mod properties {
    use proptest::prelude::*;

    use super::super::parse;
    use crate::identity::keys::KeySet;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        /// Any bearer text, three dot-separated base64url-ish parts included: a token or an
        /// error, never a panic.
        #[test]
        fn the_token_parser_never_panics(
            parts in prop::collection::vec("[A-Za-z0-9_=+/-]{0,40}", 0..5),
            raw in "\\PC{0,64}",
        ) {
            let _ = parse(&parts.join("."));
            let _ = parse(&raw);
        }

        /// Any JWKS document bytes: a key set or an error, never a panic.
        #[test]
        fn the_jwks_parser_never_panics(
            body in prop::collection::vec(any::<u8>(), 0..256),
            kty in prop_oneof![Just("RSA"), Just("EC"), Just("oct"), Just("")],
            n in "[A-Za-z0-9_-]{0,64}",
        ) {
            let _ = KeySet::parse(&body);
            let doc = format!(r#"{{"keys":[{{"kty":"{kty}","kid":"k","n":"{n}","e":"AQAB","crv":"P-256","x":"{n}","y":"{n}"}}]}}"#);
            let _ = KeySet::parse(doc.as_bytes());
        }
    }
}
