//! Backends authenticated with Microsoft Entra ID: a real `spillway run` gets access tokens
//! from a local HTTPS token endpoint (test CA trusted via `SPILLWAY_TOKEN_CA_FILE`) and sends
//! them as `Authorization: Bearer` to `spillway simulate` backends that accept only the tokens
//! issued. Client secret and workload identity (federated token file) grants; caching,
//! refresh before expiry, the outage behaviour (cached token until expiry, then the backend
//! fails with `credential_unavailable` and traffic spills over), recovery, and that no secret
//! or token appears in the gateway's logs or reaches a backend from the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "backend_entra/token_server.rs"]
mod token_server;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{BIN, Reply, Sim, chat_body, http, pool_yaml};
use http::Method;
use serde_json::Value;
use token_server::{Mode, TokenServer};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const SECRET: &str = "client-secret-value-9f3a";
const CLIENT_BEARER: &str = "Bearer client-own-credential";
const CLIENT_KEY: &str = "client-own-api-key";

/// Tokens the simulated Entra backend accepts: every one the token server may issue here.
fn accepted_tokens() -> String {
    (1..=80)
        .map(|n| format!("entra-tok-{n}"))
        .collect::<Vec<_>>()
        .join("|")
}

/// A gateway whose stderr (logs at debug) goes to a file the test reads.
struct LoggedGateway {
    _child: Child,
    _dir: tempfile::TempDir,
    url: String,
    admin: String,
    log: PathBuf,
}

impl LoggedGateway {
    async fn start(manifests: &str, env: &[(&str, &str)]) -> LoggedGateway {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, manifests).unwrap();
        let log = dir.path().join("stderr.log");
        let mut command = Command::new(BIN);
        command
            .args(["run", "--config", config.to_str().unwrap()])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            loop {
                let line = lines.next_line().await.unwrap().expect("gateway exited");
                let value: Value = serde_json::from_str(&line).unwrap();
                if value.get("listening").is_some() {
                    return value;
                }
            }
        })
        .await
        .expect("gateway ready within 30 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        LoggedGateway {
            _child: child,
            _dir: dir,
            url: format!("http://{}", ready["listening"].as_str().unwrap()),
            admin: format!("http://{}", ready["admin"].as_str().unwrap()),
            log,
        }
    }

    /// A chat call carrying the client's own credentials, which must never be forwarded.
    async fn chat(&self, request_id: &str) -> Reply {
        http(
            Method::POST,
            &format!("{}/v1/chat/completions", self.url),
            &[
                ("x-request-id", request_id),
                ("authorization", CLIENT_BEARER),
                ("api-key", CLIENT_KEY),
            ],
            chat_body("gpt-4o", false).to_string(),
        )
        .await
    }

    /// The gateway's usage record of `request_id` (bounded wait).
    async fn record(&self, request_id: &str) -> Value {
        for _ in 0..200 {
            let usage = http(Method::GET, &format!("{}/admin/usage", self.admin), &[], "")
                .await
                .json();
            if let Some(found) = usage["recent"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["request_id"] == request_id)
            {
                return found.clone();
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no usage record for {request_id}");
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// The Entra backend `aoai`; its breaker opens for 1 s after `trip_after` failures
/// (credential failures count as connection failures).
fn entra_backend(url: &str, auth: &str, trip_after: u32) -> String {
    format!(
        "    - name: aoai\n      url: {url}\n      priority: 1\n      entraId:\n{auth}      circuitBreaker:\n        rules:\n          - name: no-token\n            failureCondition: {{count: {trip_after}, interval: 10s, errorReasons: [ConnectionFailure]}}\n            tripDuration: 1s\n"
    )
}

/// The `authorization` headers the simulated backend received, in order.
async fn authorizations(sim: &Sim, backend: &str) -> Vec<String> {
    sim.entries(backend)
        .await
        .iter()
        .map(|e| e["authorization"].as_str().unwrap_or("").to_owned())
        .collect()
}

async fn assert_no_client_credential(sim: &Sim, backend: &str) {
    for entry in sim.entries(backend).await {
        let text = entry.to_string();
        assert!(
            !text.contains("client-own"),
            "the client's credential reached {backend}: {text}"
        );
    }
}

fn assert_served_by(reply: &Reply, backend: &str, attempts: &str) {
    assert_eq!(
        (
            reply.status.as_u16(),
            reply.header("x-spillway-backend"),
            reply.header("x-spillway-attempts")
        ),
        (200, backend, attempts),
        "{}",
        reply.text()
    );
}

fn assert_clean_logs(logs: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !logs.contains(secret),
            "`{secret}` appears in the gateway's logs"
        );
    }
    assert!(
        !logs.contains("entra-tok-"),
        "an access token appears in the gateway's logs"
    );
    assert!(
        !logs.contains("client-own"),
        "a client credential was logged"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_secret_tokens_are_cached_refreshed_kept_through_an_outage_then_spill_over() {
    let tokens = TokenServer::start(6).await;
    let sim = Sim::start(&format!(
        "backends:\n  - name: aoai\n    apiKey: \"{}\"\n  - name: paygo\n    apiKey: paygo-key\n",
        accepted_tokens()
    ))
    .await;
    let auth = format!(
        "        tenantId: tenant-a\n        clientId: client-a\n        clientSecret: {{env: ENTRA_SECRET}}\n        authorityHost: {}\n",
        tokens.authority()
    );
    let backends = format!(
        "{}    - name: paygo\n      url: {}\n      priority: 2\n      apiKey: {{env: PAYGO_KEY}}\n",
        entra_backend(sim.url("aoai"), &auth, 1),
        sim.url("paygo")
    );
    let ca = tokens.ca_file.to_str().unwrap();
    let gw = LoggedGateway::start(
        &pool_yaml("chat", &["gpt-4o"], &backends, ""),
        &[
            ("ENTRA_SECRET", SECRET),
            ("PAYGO_KEY", "paygo-key"),
            ("SPILLWAY_TOKEN_CA_FILE", ca),
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

    // Refreshed before expiry (6 s lifetime: refresh at 2.4–3 s), without a failed call.
    let started = Instant::now();
    let mut i = 0;
    while !authorizations(&sim, "aoai")
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

    // Outage: the endpoint is unreachable. The cached token keeps serving until it expires.
    tokens.set_mode(Mode::Down);
    let outage = Instant::now();
    let mut served_after_failed_refresh = 0;
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

    // Recovery: the endpoint is back; after the backoff and the breaker's 1 s, aoai serves
    // again with a new token.
    tokens.set_mode(Mode::Serve);
    let recovery = Instant::now();
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
    let last = authorizations(&sim, "aoai").await.pop().unwrap();
    let issued: Vec<String> = tokens
        .seen()
        .iter()
        .filter_map(|s| s.issued.clone())
        .collect();
    assert!(issued.len() >= 3, "{issued:?}");
    assert_eq!(last, format!("Bearer {}", issued.last().unwrap()));

    assert_no_client_credential(&sim, "aoai").await;
    assert_no_client_credential(&sim, "paygo").await;
    let logs = gw.logs();
    assert!(
        logs.contains("Entra ID token fetch failed"),
        "the outage must be logged"
    );
    assert_clean_logs(&logs, &[SECRET, "paygo-key"]);
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
