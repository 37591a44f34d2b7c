//! Harness of the Entra ID tests: a gateway whose logs are kept, the Entra backend's
//! manifest, and checks on what reached the backends and the logs.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use http::Method;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{BIN, Reply, Sim, chat_body, http};

pub const CLIENT_BEARER: &str = "Bearer client-own-credential";
pub const CLIENT_KEY: &str = "client-own-api-key";

/// Tokens the simulated Entra backend accepts: every one the token server may issue here.
pub fn accepted_tokens() -> String {
    (1..=80)
        .map(|n| format!("entra-tok-{n}"))
        .collect::<Vec<_>>()
        .join("|")
}

/// A gateway whose stderr (logs at debug) goes to a file the test reads.
pub struct LoggedGateway {
    _child: Child,
    _dir: tempfile::TempDir,
    url: String,
    admin: String,
    log: PathBuf,
}

impl LoggedGateway {
    pub async fn start(manifests: &str, env: &[(&str, &str)]) -> LoggedGateway {
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
    pub async fn chat(&self, request_id: &str) -> Reply {
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
    pub async fn record(&self, request_id: &str) -> Value {
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

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap()
    }
}

/// The Entra backend `aoai`; its breaker opens for 1 s after `trip_after` failures
/// (credential failures count as connection failures).
pub fn entra_backend(url: &str, auth: &str, trip_after: u32) -> String {
    format!(
        "    - name: aoai\n      url: {url}\n      priority: 1\n      entraId:\n{auth}      circuitBreaker:\n        rules:\n          - name: no-token\n            failureCondition: {{count: {trip_after}, interval: 10s, errorReasons: [ConnectionFailure]}}\n            tripDuration: 1s\n"
    )
}

/// The `authorization` headers the simulated backend received, in order.
pub async fn authorizations(sim: &Sim, backend: &str) -> Vec<String> {
    sim.entries(backend)
        .await
        .iter()
        .map(|e| e["authorization"].as_str().unwrap_or("").to_owned())
        .collect()
}

pub async fn assert_no_client_credential(sim: &Sim, backend: &str) {
    for entry in sim.entries(backend).await {
        let text = entry.to_string();
        assert!(
            !text.contains("client-own"),
            "the client's credential reached {backend}: {text}"
        );
    }
}

pub fn assert_served_by(reply: &Reply, backend: &str, attempts: &str) {
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

pub fn assert_clean_logs(logs: &str, secrets: &[&str]) {
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
