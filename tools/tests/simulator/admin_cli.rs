//! The admin endpoints (ledger, latency), graceful shutdown and the `spillway simulate` CLI.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use http::Method;
use serde_json::{Value, json};
use spillway_tools::simulate::{BackendConfig, LedgerSnapshot};

use super::client::{self, get, post};
use super::{chat_body, start};

#[tokio::test]
async fn ledger_and_latency_over_http() {
    let (_sim, addr) = start(BackendConfig::new("ptu")).await;
    post(addr, "/v1/chat/completions", &chat_body(false, None), &[]).await;
    let stream = post(
        addr,
        "/v1/chat/completions",
        &chat_body(true, Some(true)),
        &[],
    )
    .await;
    let ledger: LedgerSnapshot =
        serde_json::from_slice(&get(addr, "/_sim/ledger").await.body).expect("ledger JSON");
    assert_eq!(ledger.totals.requests, 2);
    assert_eq!(ledger.totals.completion_tokens, 40);
    assert_eq!(ledger.totals.total_tokens, ledger.totals.prompt_tokens + 40);
    assert_eq!(
        ledger.entries[1].raw_stream.as_deref().map(str::as_bytes),
        Some(&stream.body[..])
    );
    let since = get(
        addr,
        &format!("/_sim/ledger?since={}", ledger.entries[0].seq),
    )
    .await
    .json();
    assert_eq!(since["entries"].as_array().map(Vec::len), Some(1));
    let other = get(addr, "/_sim/ledger?backend=other").await.json();
    assert_eq!(other["totals"]["requests"], 0);
    let cleared = client::send(addr, Method::DELETE, "/_sim/ledger", &[], "")
        .await
        .expect("delete");
    assert_eq!(cleared.json()["totals"]["requests"], 0);

    let timing = post(addr, "/_sim/latency", &json!({"latencyMs": 150}), &[])
        .await
        .json();
    assert_eq!(
        timing,
        json!({"latencyMs": 150, "jitterMs": 0, "tokensPerSecond": 0, "uploadRateBytesPerSec": 0})
    );
    let started = Instant::now();
    post(
        addr,
        "/v1/embeddings",
        &json!({"model": "m", "input": "x"}),
        &[],
    )
    .await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    assert_eq!(
        post(addr, "/_sim/latency", &json!({"latency": 1}), &[])
            .await
            .status,
        400
    );
    let health = get(addr, "/_sim/health").await;
    assert_eq!(health.json()["status"], "ok");
    assert!(health.header("x-sim-backend").is_some());
    let unknown = get(addr, "/_sim/nope").await;
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.json()["error"]["type"], "invalid_request_error");
    let wrong_method = post(addr, "/_sim/health", &json!({}), &[]).await;
    assert_eq!(wrong_method.status, 405);
    assert_eq!(
        wrong_method.json()["error"]["message"],
        "/_sim/health does not accept POST"
    );
    let not_json = client::send(addr, Method::POST, "/_sim/limits", &[], "{")
        .await
        .expect("answered");
    assert_eq!(not_json.status, 400);
    assert!(
        not_json.json()["error"]["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("not valid JSON")),
        "{}",
        not_json.json()
    );
}

#[test]
fn cli_announces_backends_and_stops_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spillway"))
        .args([
            "simulate",
            "--backend",
            "name=a,port=0",
            "--backend",
            "name=b,tpm=1000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn spillway simulate");
    let stdout = child.stdout.take().expect("stdout");
    let lines: Vec<Value> = BufReader::new(stdout)
        .lines()
        .take(3)
        .map(|l| serde_json::from_str(&l.expect("line")).expect("JSON line"))
        .collect();
    assert_eq!(lines[0]["backend"], "a");
    assert_eq!(lines[1]["backend"], "b");
    assert_eq!(lines[2], json!({"ready": true}));
    let url = lines[1]["url"].as_str().expect("url");
    let addr = url.trim_start_matches("http://").parse().expect("addr");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let reply = runtime.block_on(post(
        addr,
        "/v1/chat/completions",
        &chat_body(false, None),
        &[],
    ));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("x-sim-backend"), Some("b"));
    assert_eq!(reply.header("x-ratelimit-limit-tokens"), Some("1000"));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "simulator did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test]
async fn shutdown_lets_a_stream_in_flight_finish() {
    use http_body_util::BodyExt as _;
    let config = BackendConfig {
        tokens_per_second: 100,
        ..BackendConfig::new("ptu")
    };
    let (sim, addr) = start(config).await;
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
        .await
        .expect("handshake");
    tokio::spawn(connection);
    let request = http::Request::post("/v1/chat/completions")
        .header("host", "sim")
        .body(http_body_util::Full::new(bytes::Bytes::from(
            chat_body(true, Some(true)).to_string(),
        )))
        .expect("request");
    // The response head means the stream is under way; shut down while it runs.
    let response = sender.send_request(request).await.expect("response head");
    let shutdown = tokio::spawn(sim.shutdown());
    let body = tokio::time::timeout(client::REQUEST_TIMEOUT, response.into_body().collect())
        .await
        .expect("in time")
        .expect("whole body")
        .to_bytes();
    assert!(body.ends_with(b"data: [DONE]\n\n"));
    shutdown.await.expect("shutdown task");
    let refused = client::send(addr, Method::GET, "/_sim/health", &[], "").await;
    assert!(refused.is_err(), "listener must be closed after shutdown");
}
