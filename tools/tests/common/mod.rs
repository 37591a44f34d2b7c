//! Harness for integration tests with real processes: `spillway simulate` backends and a
//! `spillway run` gateway, each started from the binary Cargo built, on 127.0.0.1 with
//! ephemeral ports learned from the JSON lines they print. Processes are killed on drop.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

pub const BIN: &str = env!("CARGO_BIN_EXE_spillway");

/// A child process killed when dropped.
pub struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.start_kill();
    }
}

/// Starts `spillway args…` with `env` and reads its JSON start-up lines until one has
/// `ready_key`.
pub async fn start(args: &[&str], env: &[(&str, &str)], ready_key: &str) -> (Proc, Vec<Value>) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(if std::env::var_os("SPILLWAY_TEST_LOGS").is_some() {
            Stdio::inherit()
        } else {
            Stdio::null()
        })
        .kill_on_drop(true);
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("spawn spillway");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            let value: Value = serde_json::from_str(&line).expect("JSON start-up line");
            let done = value.get(ready_key).is_some();
            seen.push(value);
            if done {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(found, Ok(true), "{args:?} did not become ready: {seen:?}");
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (Proc(child), seen)
}

/// Simulated backends.
pub struct Sim {
    _proc: Proc,
    _dir: tempfile::TempDir,
    pub urls: HashMap<String, String>,
}

impl Sim {
    /// Starts `spillway simulate` with `yaml` (a `backends:` list).
    pub async fn start(yaml: &str) -> Sim {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sim.yaml");
        std::fs::write(&path, yaml).unwrap();
        let (proc, lines) = start(
            &["simulate", "--config", path.to_str().unwrap()],
            &[],
            "ready",
        )
        .await;
        let urls = lines
            .iter()
            .filter_map(|l| {
                Some((
                    l.get("backend")?.as_str()?.to_owned(),
                    l.get("url")?.as_str()?.to_owned(),
                ))
            })
            .collect();
        Sim {
            _proc: proc,
            _dir: dir,
            urls,
        }
    }

    pub fn url(&self, backend: &str) -> &str {
        &self.urls[backend]
    }

    pub async fn set_faults(&self, backend: &str, faults: Value) {
        let r = http(
            Method::POST,
            &format!("{}/_sim/faults", self.url(backend)),
            &[],
            faults.to_string(),
        )
        .await;
        assert!(r.status.is_success(), "setting faults: {}", r.text());
    }

    pub async fn clear_faults(&self, backend: &str) {
        http(
            Method::DELETE,
            &format!("{}/_sim/faults", self.url(backend)),
            &[],
            "",
        )
        .await;
    }

    /// The ledger of one backend (the simulator keeps one ledger for all its backends).
    pub async fn ledger(&self, backend: &str) -> Value {
        http(
            Method::GET,
            &format!("{}/_sim/ledger?backend={backend}", self.url(backend)),
            &[],
            "",
        )
        .await
        .json()
    }

    pub async fn entries(&self, backend: &str) -> Vec<Value> {
        self.ledger(backend).await["entries"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The one ledger entry with `request_id`, across all backends.
    pub async fn entry(&self, request_id: &str) -> Value {
        let any = self.urls.values().next().expect("a backend");
        let ledger = http(Method::GET, &format!("{any}/_sim/ledger"), &[], "")
            .await
            .json();
        let mut found: Vec<Value> = ledger["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["requestId"] == request_id)
            .cloned()
            .collect();
        assert_eq!(found.len(), 1, "ledger entries for {request_id}: {found:?}");
        found.pop().unwrap()
    }
}

/// A running gateway.
pub struct Gateway {
    _proc: Proc,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub url: String,
    pub admin: String,
}

impl Gateway {
    pub async fn start(manifests: &str) -> Gateway {
        Self::start_with(manifests, &[]).await
    }

    pub async fn start_with(manifests: &str, env: &[(&str, &str)]) -> Gateway {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, manifests).unwrap();
        let args = [
            "run",
            "--config",
            config.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--reload-interval",
            "100ms",
        ];
        let (proc, lines) = start(&args, env, "listening").await;
        let ready = lines.last().unwrap();
        Gateway {
            _proc: proc,
            config,
            dir,
            url: format!("http://{}", ready["listening"].as_str().unwrap()),
            admin: format!("http://{}", ready["admin"].as_str().unwrap()),
        }
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self._proc.0.id().expect("the gateway runs")
    }

    /// The gateway's resident memory in MiB (Linux `/proc`).
    pub fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .expect("VmRSS");
        kib / 1024.0
    }

    /// Rewrites the config file and waits until the gateway applied a newer version.
    pub async fn reload(&self, manifests: &str) {
        let before = self.version().await;
        std::fs::write(&self.config, manifests).unwrap();
        for _ in 0..100 {
            if self.version().await > before {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the gateway did not apply the new configuration");
    }

    pub async fn version(&self) -> u64 {
        http(
            Method::GET,
            &format!("{}/admin/config", self.admin),
            &[],
            "",
        )
        .await
        .json()["version"]
            .as_u64()
            .unwrap_or(0)
    }

    /// The gateway's usage record for `request_id` (waits for it to be written).
    pub async fn record(&self, request_id: &str) -> Value {
        for _ in 0..200 {
            let usage = http(Method::GET, &format!("{}/admin/usage", self.admin), &[], "")
                .await
                .json();
            let found: Vec<_> = usage["recent"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["request_id"] == request_id)
                .cloned()
                .collect();
            assert!(found.len() <= 1, "more than one record for {request_id}");
            if let Some(record) = found.into_iter().next() {
                return record;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("no usage record for {request_id}");
    }

    pub async fn chat(&self, request_id: &str, body: Value) -> Reply {
        http(
            Method::POST,
            &format!("{}/v1/chat/completions", self.url),
            &[("x-request-id", request_id)],
            body.to_string(),
        )
        .await
    }
}

/// A complete HTTP response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn request(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Request<Full<Bytes>> {
    let mut builder = Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(Full::new(body.into())).unwrap()
}

/// Sends a request and reads the whole response.
pub async fn http(
    method: Method,
    url: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let response = client()
        .request(request(method, url, headers, body))
        .await
        .expect("request");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// Sends a request and returns the response with its streaming body.
pub async fn open(
    url: &str,
    headers: &[(&str, &str)],
    body: Value,
) -> http::Response<hyper::body::Incoming> {
    client()
        .request(request(Method::POST, url, headers, body.to_string()))
        .await
        .expect("request")
}

/// A chat request body.
pub fn chat_body(model: &str, stream: bool) -> Value {
    serde_json::json!({
        "model": model,
        "stream": stream,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Tell me about spillways."}],
    })
}

pub fn pool_yaml(name: &str, models: &[&str], backends: &str, extra: &str) -> String {
    format!(
        "apiVersion: spillway.dev/v1alpha1\nkind: AIBackendPool\nmetadata: {{name: {name}}}\nspec:\n  models: {models:?}\n  backends:\n{backends}{extra}"
    )
}
