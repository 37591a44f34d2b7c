//! Backends authenticated with Microsoft Entra ID: a real `spillway run` gets access tokens
//! from a local HTTPS token endpoint (test CA trusted via `SPILLWAY_TOKEN_CA_FILE`) and sends
//! them as `Authorization: Bearer` to `spillway simulate` backends that accept only the tokens
//! issued. Client secret, certificate and workload identity (federated token file) grants;
//! caching, refresh before expiry, the outage behaviour (cached token until expiry, then the
//! backend fails with `credential_unavailable` and traffic spills over), recovery, and that no
//! secret or token appears in the gateway's logs or reaches a backend from the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "backend_entra/gateway.rs"]
mod gateway;
#[path = "backend_entra/token_server.rs"]
mod token_server;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{Sim, pool_yaml};
use gateway::{
    LoggedGateway, accepted_tokens, assert_clean_logs, assert_no_client_credential,
    assert_served_by, authorizations, entra_backend,
};
use serde_json::Value;
use token_server::{Mode, TokenServer};

const SECRET: &str = "client-secret-value-9f3a";

/// A pool of `aoai` (Entra ID with `auth`, priority 1) and `paygo` (API key, priority 2).
fn spillover_pool(sim: &Sim, auth: &str) -> String {
    let backends = format!(
        "{}    - name: paygo\n      url: {}\n      priority: 2\n      apiKey: {{env: PAYGO_KEY}}\n",
        entra_backend(sim.url("aoai"), auth, 1),
        sim.url("paygo")
    );
    pool_yaml("chat", &["gpt-4o"], &backends, "")
}

async fn aoai_and_paygo() -> Sim {
    Sim::start(&format!(
        "backends:\n  - name: aoai\n    apiKey: \"{}\"\n  - name: paygo\n    apiKey: paygo-key\n",
        accepted_tokens()
    ))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_tokens_are_cached_refreshed_kept_through_an_outage_then_spill_over() {
    let tokens = TokenServer::start(6).await;
    let sim = aoai_and_paygo().await;
    let auth = format!(
        "        tenantId: tenant-a\n        clientId: client-a\n        clientSecret: {{env: ENTRA_SECRET}}\n        authorityHost: {}\n",
        tokens.authority()
    );
    let gw = LoggedGateway::start(
        &spillover_pool(&sim, &auth),
        &[
            ("ENTRA_SECRET", SECRET),
            ("PAYGO_KEY", "paygo-key"),
            ("SPILLWAY_TOKEN_CA_FILE", tokens.ca_file.to_str().unwrap()),
        ],
    )
    .await;

    // Cached: one token request serves many calls.
    for i in 0..10 {
        assert_served_by(&gw.chat(&format!("cached-{i}")).await, "aoai", "1");
    }
    let seen = tokens.seen();
    assert_eq!(seen.len(), 1, "one token request for 10 calls: {seen:#?}");
    let form = &seen[0].form;
    assert_eq!(seen[0].path, "/tenant-a/oauth2/v2.0/token");
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "client-a");
    assert_eq!(form["client_secret"], SECRET);
    assert_eq!(
        form["scope"],
        "https://cognitiveservices.azure.com/.default"
    );
    assert!(!form.contains_key("client_assertion"));
    assert_eq!(
        authorizations(&sim, "aoai").await,
        vec!["Bearer entra-tok-1"; 10]
    );

    refreshed_before_expiry(&gw, &sim, &tokens).await;
    outage_keeps_the_cached_token_then_spills_over(&gw, &tokens).await;
    recovers_with_a_new_token(&gw, &sim, &tokens).await;

    assert_no_client_credential(&sim, "aoai").await;
    assert_no_client_credential(&sim, "paygo").await;
    let logs = gw.logs();
    assert!(
        logs.contains("Entra ID token fetch failed"),
        "the outage must be logged"
    );
    assert_clean_logs(&logs, &[SECRET, "paygo-key"]);
}

/// 6 s lifetime: the refresh comes at 2.4–3 s; every call meanwhile succeeds at `aoai`.
async fn refreshed_before_expiry(gw: &LoggedGateway, sim: &Sim, tokens: &TokenServer) {
    let started = Instant::now();
    let mut i = 0;
    while !authorizations(sim, "aoai")
        .await
        .contains(&"Bearer entra-tok-2".to_owned())
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "no refreshed token reached the backend"
        );
        i += 1;
        assert_served_by(&gw.chat(&format!("refresh-{i}")).await, "aoai", "1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let seen = tokens.seen();
    assert_eq!(seen.len(), 2, "{seen:#?}");
    let refreshed_after = seen[1].at - seen[0].at;
    assert!(
        refreshed_after < Duration::from_secs(6),
        "refreshed {refreshed_after:?} after the first token: not before its expiry"
    );
}

/// The endpoint becomes unreachable: `aoai` keeps serving with the cached token after the
/// refresh failed, then fails with `credential_unavailable` and `paygo` takes over.
async fn outage_keeps_the_cached_token_then_spills_over(gw: &LoggedGateway, tokens: &TokenServer) {
    tokens.set_mode(Mode::Down);
    let outage = Instant::now();
    let mut served_after_failed_refresh = 0;
    let mut i = 0;
    let spilled = loop {
        assert!(
            outage.elapsed() < Duration::from_secs(20),
            "the backend never failed over"
        );
        i += 1;
        let id = format!("outage-{i}");
        let reply = gw.chat(&id).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text());
        if reply.header("x-spillway-backend") == "paygo" {
            break id;
        }
        if tokens.refused() > 0 {
            served_after_failed_refresh += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        served_after_failed_refresh > 0,
        "the cached token must keep serving after a failed refresh"
    );
    let record = gw.record(&spilled).await;
    let trail: Vec<(String, Value, Value)> = record["upstream"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["backend"].as_str().unwrap().to_owned(),
                a["failure"].clone(),
                a["status"].clone(),
            )
        })
        .collect();
    assert_eq!(
        trail,
        vec![
            (
                "aoai".to_owned(),
                "credential_unavailable".into(),
                Value::Null
            ),
            ("paygo".to_owned(), Value::Null, 200.into()),
        ],
        "{record:#}"
    );
    // The breaker is open now: calls go straight to paygo.
    assert_served_by(&gw.chat("while-open").await, "paygo", "1");
}

/// The endpoint is back: after the fetch backoff and the breaker's 1 s, `aoai` serves again
/// with the newest token.
async fn recovers_with_a_new_token(gw: &LoggedGateway, sim: &Sim, tokens: &TokenServer) {
    tokens.set_mode(Mode::Serve);
    let recovery = Instant::now();
    let mut i = 0;
    loop {
        assert!(
            recovery.elapsed() < Duration::from_secs(30),
            "aoai never recovered"
        );
        i += 1;
        let reply = gw.chat(&format!("recover-{i}")).await;
        assert_eq!(reply.status.as_u16(), 200, "{}", reply.text());
        if reply.header("x-spillway-backend") == "aoai" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let last = authorizations(sim, "aoai").await.pop().unwrap();
    let issued: Vec<String> = tokens
        .seen()
        .iter()
        .filter_map(|s| s.issued.clone())
        .collect();
    assert!(issued.len() >= 3, "{issued:?}");
    assert_eq!(last, format!("Bearer {}", issued.last().unwrap()));
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_identity_exchanges_the_federated_token_file_rereading_it() {
    let tokens = TokenServer::start(4).await;
    let sim = Sim::start(&format!(
        "backends:\n  - name: aoai\n    apiKey: \"{}\"\n",
        accepted_tokens()
    ))
    .await;
    let dir = tempfile::tempdir().unwrap();
    let federated = dir.path().join("azure-identity-token");
    write(&federated, "federated-jwt-one\n");
    // The breaker never trips here, so the client sees the credential error itself.
    let backends = entra_backend(sim.url("aoai"), "        workloadIdentity: {}\n", 100);
    let authority = tokens.authority();
    let gw = LoggedGateway::start(
        &pool_yaml("chat", &["gpt-4o"], &backends, ""),
        &[
            ("AZURE_TENANT_ID", "tenant-w"),
            ("AZURE_CLIENT_ID", "client-w"),
            ("AZURE_AUTHORITY_HOST", &authority),
            ("AZURE_FEDERATED_TOKEN_FILE", federated.to_str().unwrap()),
            ("SPILLWAY_TOKEN_CA_FILE", tokens.ca_file.to_str().unwrap()),
        ],
    )
    .await;

    assert_served_by(&gw.chat("wi-1").await, "aoai", "1");
    let seen = tokens.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    assert_eq!(seen[0].path, "/tenant-w/oauth2/v2.0/token");
    let form = &seen[0].form;
    assert_eq!(form["grant_type"], "client_credentials");
    assert_eq!(form["client_id"], "client-w");
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert_eq!(form["client_assertion"], "federated-jwt-one");
    assert!(!form.contains_key("client_secret"));

    // The kubelet rotates the projected token; the next exchange sends the new content.
    write(&federated, "federated-jwt-two\n");
    let started = Instant::now();
    let mut i = 1;
    while tokens.seen().len() < 2 {
        assert!(started.elapsed() < Duration::from_secs(20), "no refresh");
        i += 1;
        assert_served_by(&gw.chat(&format!("wi-{i}")).await, "aoai", "1");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        tokens.seen()[1].form["client_assertion"],
        "federated-jwt-two"
    );

    // Entra ID refuses the federated identity: once the cached token expires, the only
    // backend fails and the client gets an OpenAI-shaped error naming the reason.
    tokens.set_mode(Mode::AadError);
    let refused_at = Instant::now();
    let reply = loop {
        assert!(
            refused_at.elapsed() < Duration::from_secs(20),
            "never failed"
        );
        i += 1;
        let reply = gw.chat(&format!("wi-{i}")).await;
        if reply.status.as_u16() != 200 {
            break reply;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(reply.status.as_u16(), 502, "{}", reply.text());
    let message = reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("invalid_client") && message.contains("AADSTS700213"),
        "{message}"
    );
    assert!(!message.contains("Trace ID"), "{message}");

    assert_no_client_credential(&sim, "aoai").await;
    assert_clean_logs(&gw.logs(), &["federated-jwt-one", "federated-jwt-two"]);
}

/// A client certificate (PEM: certificate, then PKCS#8 key) and the key's JWT decoding key.
fn client_certificate() -> (String, jsonwebtoken::DecodingKey, String) {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use rsa::pkcs8::{EncodePrivateKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    use sha2::Digest;

    let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048).unwrap();
    let pkcs8 = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let signer = rcgen::KeyPair::from_pem_and_sign_algo(&pkcs8, &rcgen::PKCS_RSA_SHA256).unwrap();
    let params = rcgen::CertificateParams::new(vec!["spillway-client".into()]).unwrap();
    let cert = params.self_signed(&signer).unwrap();
    let thumbprint = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(cert.der()));
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(
        &URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
        &URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
    )
    .unwrap();
    (format!("{}{pkcs8}", cert.pem()), decoding, thumbprint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_credentials_send_a_signed_assertion() {
    let tokens = TokenServer::start(3600).await;
    let sim = aoai_and_paygo().await;
    let (pem, decoding, thumbprint) = client_certificate();
    let dir = tempfile::tempdir().unwrap();
    let pem_file = dir.path().join("client.pem");
    write(&pem_file, &pem);
    let auth = format!(
        "        tenantId: tenant-c\n        clientId: client-c\n        certificate: {{file: {}}}\n        authorityHost: {}\n",
        pem_file.display(),
        tokens.authority()
    );
    let gw = LoggedGateway::start(
        &spillover_pool(&sim, &auth),
        &[
            ("PAYGO_KEY", "paygo-key"),
            ("SPILLWAY_TOKEN_CA_FILE", tokens.ca_file.to_str().unwrap()),
        ],
    )
    .await;
    for i in 0..3 {
        assert_served_by(&gw.chat(&format!("cert-{i}")).await, "aoai", "1");
    }
    assert_eq!(
        authorizations(&sim, "aoai").await,
        vec!["Bearer entra-tok-1"; 3]
    );
    let seen = tokens.seen();
    assert_eq!(seen.len(), 1, "{seen:#?}");
    let form = &seen[0].form;
    assert_eq!(
        form["client_assertion_type"],
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    );
    assert!(!form.contains_key("client_secret"));
    let endpoint = format!("{}/tenant-c/oauth2/v2.0/token", tokens.authority());
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[&endpoint]);
    validation.set_issuer(&["client-c"]);
    let assertion =
        jsonwebtoken::decode::<Value>(&form["client_assertion"], &decoding, &validation)
            .expect("an assertion signed with the certificate's key, for this endpoint");
    assert_eq!(
        assertion.header.x5t_s256.as_deref(),
        Some(thumbprint.as_str())
    );
    assert_eq!(assertion.claims["sub"], "client-c");

    assert_no_client_credential(&sim, "aoai").await;
    let logs = gw.logs();
    let key_line = pem
        .lines()
        .skip_while(|l| !l.contains("PRIVATE KEY"))
        .nth(1)
        .unwrap();
    assert_clean_logs(&logs, &[key_line, &form["client_assertion"], "paygo-key"]);
}
