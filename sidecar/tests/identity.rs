//! Identification against a real identity provider on loopback: RSA and EC keys generated
//! here, a JWKS and OIDC discovery document served over HTTP by a tiny hyper server that
//! counts its fetches, and an injected clock for token lifetimes and fetch pacing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::pkcs8::EncodePrivateKey;
use rsa::pkcs1::EncodeRsaPrivateKey;
use rsa::pkcs8::{EncodePublicKey, LineEnding};
use rsa::traits::PublicKeyParts;
use serde_json::{Value, json};
use spillway_crds::snapshot::{ApiKeyConfig, IdentityConfig, JwtConfig};
use spillway_sidecar::clock::Clock;
use spillway_sidecar::identity::{
    AppIdentity, Identifier, IdentifierOptions, IdentityError, IdentityMethod, JwksOptions,
};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// ---------- keys ----------

struct TestKey {
    kid: &'static str,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
    public_pem: String,
}

fn rsa_key(kid: &'static str) -> TestKey {
    let private = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let public = private.to_public_key();
    let der = private.to_pkcs1_der().unwrap();
    TestKey {
        kid,
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_der(der.as_bytes()),
        jwk: json!({
            "kty": "RSA", "use": "sig", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        }),
        public_pem: public.to_public_key_pem(LineEnding::LF).unwrap(),
    }
}

fn ec_key(kid: &'static str) -> TestKey {
    let signing = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
    let point = signing.verifying_key().to_encoded_point(false);
    TestKey {
        kid,
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_der(signing.to_pkcs8_der().unwrap().as_bytes()),
        jwk: json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            "y": URL_SAFE_NO_PAD.encode(point.y().unwrap()),
        }),
        public_pem: String::new(),
    }
}

struct Keys {
    rsa1: TestKey,
    rsa2: TestKey,
    ec1: TestKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| Keys {
        rsa1: rsa_key("rsa-1"),
        rsa2: rsa_key("rsa-2"),
        ec1: ec_key("ec-1"),
    })
}

// ---------- clock ----------

struct ManualClock {
    start: Instant,
    wall: SystemTime,
    offset_ms: AtomicU64,
}

impl ManualClock {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            wall: SystemTime::now(),
            offset_ms: AtomicU64::new(0),
        })
    }

    fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(u64::try_from(by.as_millis()).unwrap(), Ordering::SeqCst);
    }

    fn offset(&self) -> Duration {
        Duration::from_millis(self.offset_ms.load(Ordering::SeqCst))
    }

    fn unix(&self) -> i64 {
        i64::try_from(self.wall().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + self.offset()
    }

    fn wall(&self) -> SystemTime {
        self.wall + self.offset()
    }
}

// ---------- identity provider ----------

#[derive(Default)]
struct IdpState {
    base: OnceLock<String>,
    jwks: Mutex<Vec<Value>>,
    discovery_hits: AtomicUsize,
    jwks_hits: AtomicUsize,
    down: AtomicBool,
}

struct Idp {
    base: String,
    state: Arc<IdpState>,
    server: JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Idp {
    async fn start(keys: &[&TestKey]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(IdpState::default());
        state.base.set(base.clone()).unwrap();
        *state.jwks.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
        let shared = Arc::clone(&state);
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let state = Arc::clone(&shared);
                tokio::spawn(async move {
                    let service = service_fn(move |req| serve(Arc::clone(&state), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self {
            base,
            state,
            server,
        }
    }

    fn publish(&self, keys: &[&TestKey]) {
        *self.state.jwks.lock().unwrap() = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    fn set_down(&self, down: bool) {
        self.state.down.store(down, Ordering::SeqCst);
    }

    fn jwks_hits(&self) -> usize {
        self.state.jwks_hits.load(Ordering::SeqCst)
    }

    fn discovery_hits(&self) -> usize {
        self.state.discovery_hits.load(Ordering::SeqCst)
    }

    fn issuer_v2(&self, tenant: &str) -> String {
        format!("{}/{tenant}/v2.0", self.base)
    }

    fn issuer_v1(&self, tenant: &str) -> String {
        format!("{}/sts/{tenant}/", self.base)
    }
}

async fn serve(
    state: Arc<IdpState>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let base = state.base.get().cloned().unwrap_or_default();
    let path = req.uri().path();
    let (status, body) = if path.ends_with("/.well-known/openid-configuration") {
        state.discovery_hits.fetch_add(1, Ordering::SeqCst);
        let issuer = path.trim_end_matches("/.well-known/openid-configuration");
        let document =
            json!({"issuer": format!("{base}{issuer}"), "jwks_uri": format!("{base}/keys")});
        (StatusCode::OK, document.to_string())
    } else if path == "/keys" {
        state.jwks_hits.fetch_add(1, Ordering::SeqCst);
        if state.down.load(Ordering::SeqCst) {
            (StatusCode::SERVICE_UNAVAILABLE, "down".to_owned())
        } else {
            let keys = state.jwks.lock().unwrap().clone();
            (StatusCode::OK, json!({ "keys": keys }).to_string())
        }
    } else {
        (StatusCode::NOT_FOUND, String::new())
    };
    Ok(Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .unwrap())
}

// ---------- configuration and tokens ----------

const KEY_A: &str = "sk-app-a-0123456789";

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn jwt_config(idp: &Idp) -> JwtConfig {
    JwtConfig {
        issuers: vec![
            format!("{}/{{tenant}}/v2.0", idp.base),
            format!("{}/sts/{{tenant}}/", idp.base),
        ],
        tenants: vec!["t1".into(), "t2".into()],
        audiences: vec!["api://spillway".into(), "spillway-client-id".into()],
        jwks_uri: None,
        app_id_claims: vec!["appid".into(), "azp".into()],
        algorithms: vec!["RS256".into(), "ES256".into()],
        leeway_ms: 60_000,
    }
}

fn identity(idp: &Idp, order: &[IdentityMethod], allow_anonymous: bool) -> IdentityConfig {
    IdentityConfig {
        order: order.to_vec(),
        allow_anonymous,
        jwt: Some(jwt_config(idp)),
        api_keys: vec![ApiKeyConfig {
            app_id: "app-a".into(),
            sha256: sha256_hex(KEY_A),
        }],
        trusted_header: Some("x-spillway-app".into()),
        refuse_all: None,
    }
}

const ALL: [IdentityMethod; 3] = [
    IdentityMethod::Jwt,
    IdentityMethod::ApiKey,
    IdentityMethod::TrustedHeader,
];

fn identifier(config: &IdentityConfig, clock: &Arc<ManualClock>) -> Identifier {
    let options = IdentifierOptions {
        clock: Arc::clone(clock) as Arc<dyn Clock>,
        jwks: JwksOptions::default(),
    };
    Identifier::with_options(config, None, options)
}

/// Claims of a valid v2 token for app `app-v2`, with `changes` merged in (null removes).
fn claims(idp: &Idp, clock: &ManualClock, changes: Value) -> Value {
    let now = clock.unix();
    let mut claims = json!({
        "iss": idp.issuer_v2("t1"), "tid": "t1", "aud": "api://spillway",
        "iat": now - 10, "nbf": now - 10, "exp": now + 3600, "azp": "app-v2", "ver": "2.0",
    });
    for (name, value) in changes.as_object().unwrap() {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn sign(key: &TestKey, claims: &Value) -> String {
    let mut header = Header::new(key.alg);
    header.kid = Some(key.kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

fn bearer(token: &str) -> HeaderMap {
    with(&[("authorization", format!("Bearer {token}").as_str())])
}

fn with(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    headers
}

fn app(app_id: &str, method: IdentityMethod) -> Result<AppIdentity, IdentityError> {
    Ok(AppIdentity {
        app_id: app_id.into(),
        method: Some(method),
    })
}

fn reason(result: Result<AppIdentity, IdentityError>) -> &'static str {
    result.expect_err("expected a refusal").reason()
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[path = "identity/jwks.rs"]
mod jwks;
#[path = "identity/tokens.rs"]
mod tokens;
