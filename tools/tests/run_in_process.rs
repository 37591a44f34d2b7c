//! `spillway_sidecar::run::start` against an in-process simulator: serving at once, identity and quotas from the
//! manifest, quota levels on `/metrics`, the usage log written on shutdown.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt as _, Full};
use sha2::{Digest as _, Sha256};

use spillway_sidecar::http_client::{HttpClient, client};
use spillway_sidecar::run::{GatewayOptions, start};
use spillway_tools::simulate::{self, BackendConfig, SimConfig};

fn manifest(backend: &str) -> String {
    let key_sha256: String = Sha256::digest(b"sk-app-a")
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!(
        "apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {{name: chat}}
spec:
  models: [gpt-4o]
  backends: [{{name: b, url: '{backend}'}}]
---
apiVersion: spillway.dev/v1alpha1
kind: AIGateway
metadata: {{name: gw}}
spec:
  identity:
    apiKeys: [{{appId: app-a, keySha256: {key_sha256}}}]
---
apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {{name: team-a}}
spec:
  appId: app-a
  tokensPerMinute: 10000
  quotas: [{{period: Daily, tokens: 50000}}]
"
    )
}

async fn get(client: &HttpClient, url: String) -> (u16, String) {
    let request = Request::get(url).body(Full::default()).expect("request");
    let response = client.request(request).await.expect("answers");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

async fn chat(client: &HttpClient, url: &str, key: &str) -> u16 {
    let body = r#"{"model":"gpt-4o","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = Request::post(format!("{url}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {key}"))
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let response = client.request(request).await.expect("answers");
    let status = response.status().as_u16();
    response.into_body().collect().await.expect("body");
    status
}

/// The value of the `spillway_quota_remaining_tokens` sample for app-a's `window`.
fn remaining(metrics: &str, window: &str) -> Option<u64> {
    metrics
        .lines()
        .filter(|l| l.starts_with("spillway_quota_remaining_tokens{"))
        .filter(|l| l.contains("\"app-a\"") && l.contains(&format!("\"{window}\"")))
        .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_gateway_serves_at_once_reports_quota_levels_and_logs_usage() {
    let sim = simulate::start(SimConfig {
        backends: vec![BackendConfig::new("b")],
    })
    .await
    .expect("simulator");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(&config, manifest(&sim.url("b").expect("b"))).expect("write");
    let mut options = GatewayOptions::new(&config);
    options.usage_log = Some(dir.path().join("usage.jsonl"));
    options.shutdown_grace = Duration::from_secs(2);
    let process = start(options).await.expect("starts");
    let http = client();

    // Served at once: the first configuration is applied before the port accepts.
    assert_eq!(chat(&http, &process.url(), "sk-app-a").await, 200);
    assert_eq!(chat(&http, &process.url(), "sk-unknown").await, 401);
    let (status, ready) = get(&http, format!("{}/readyz", process.admin_url())).await;
    assert_eq!(
        (status, ready.trim()),
        (200, "ready: configuration version 1")
    );

    // Quota levels come from the limiter: the daily window holds the call's tokens.
    let (status, metrics) = get(&http, format!("{}/metrics", process.admin_url())).await;
    assert_eq!(status, 200);
    let minute = remaining(&metrics, "minute").expect("the minute window is reported");
    let day = remaining(&metrics, "day").expect("the day window is reported");
    // The bucket refills 10 000 tokens a minute: the call's few tokens are back in ~0.2 s.
    assert!((9_900..=10_000).contains(&minute), "{minute}\n{metrics}");
    assert!((49_900..50_000).contains(&day), "{day}\n{metrics}");
    assert_eq!(
        process.gateway.limiter().local_stats().apps,
        1,
        "only app-a has state"
    );

    let (url, log) = (process.url(), dir.path().join("usage.jsonl"));
    process.shutdown().await.expect("clean shutdown");
    let text = std::fs::read_to_string(&log).expect("usage log");
    let statuses: Vec<u64> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("JSON")["status"]
                .as_u64()
                .unwrap_or(0)
        })
        .collect();
    assert_eq!(statuses, [200, 401], "{text}");
    let addr = url.trim_start_matches("http://");
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the data path stopped accepting"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn an_unusable_manifest_fails_start_with_every_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("gateway.yaml");
    std::fs::write(
        &config,
        "apiVersion: spillway.dev/v1alpha1\nkind: AIBackendPool\nmetadata: {name: p}\nspec: {models: [m], backends: []}\n",
    )
    .expect("write");
    let error = start(GatewayOptions::new(&config))
        .await
        .expect_err("refused");
    let text = format!("{error:#}");
    assert!(text.contains("gateway.yaml cannot be used"), "{text}");
}
