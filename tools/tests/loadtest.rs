//! `spillway loadtest` as a user runs it: the real binary with `--json` against a real
//! `spillway run` gateway in front of real `spillway simulate` backends, all on 127.0.0.1.
//! Checks that the counts add up, that the run is bounded by count and by time, that
//! retries/spillover and backends are read from the gateway's headers, and that apps are sent
//! in the trusted header.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{BIN, Proc};
use serde_json::{Value, json};
use tokio::process::Command;

/// Starts `spillway args…` and reads its JSON start-up lines until one has `ready_key`.
async fn start(args: &[&str], ready_key: &str) -> (Proc, Vec<Value>) {
    common::start(args, &[], ready_key).await
}

/// Simulated `ptu` and `paygo` backends and a gateway in front (PTU first, app from
/// `x-app-id`).
struct Stack {
    _sim: Proc,
    _gateway: Proc,
    _dir: tempfile::TempDir,
    url: String,
    admin: String,
}

impl Stack {
    async fn start(ptu_faults: Value) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let sim_yaml = json!({"backends": [
            {"name": "ptu", "latencyMs": 5, "tokensPerSecond": 2000, "faults": ptu_faults},
            {"name": "paygo", "latencyMs": 5, "tokensPerSecond": 2000},
        ]});
        let sim_path = dir.path().join("sim.yaml");
        std::fs::write(&sim_path, sim_yaml.to_string()).unwrap();
        let (sim, lines) = start(
            &["simulate", "--config", sim_path.to_str().unwrap()],
            "ready",
        )
        .await;
        let sim_urls: Vec<(String, String)> = lines
            .iter()
            .filter_map(|l| {
                Some((
                    l["backend"].as_str()?.to_owned(),
                    l["url"].as_str()?.to_owned(),
                ))
            })
            .collect();
        let url_of = |name: &str| &sim_urls.iter().find(|(n, _)| n == name).unwrap().1;
        let manifests = format!(
            "apiVersion: spillway.dev/v1alpha1\nkind: AIBackendPool\nmetadata: {{name: chat}}\nspec:\n  models: [gpt-4o]\n  backends:\n    - {{name: ptu, url: '{}', priority: 1, apiVersion: 2024-10-21}}\n    - {{name: paygo, url: '{}', priority: 2, apiVersion: 2024-10-21}}\n---\napiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {{name: gw}}\nspec:\n  identity: {{trustedHeader: x-app-id, allowAnonymous: true}}\n",
            url_of("ptu"),
            url_of("paygo")
        );
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
        ];
        let (gateway, lines) = start(&args, "listening").await;
        let ready = lines.last().unwrap();
        Stack {
            _sim: sim,
            _gateway: gateway,
            _dir: dir,
            url: format!("http://{}", ready["listening"].as_str().unwrap()),
            admin: format!("http://{}", ready["admin"].as_str().unwrap()),
        }
    }
}

/// Runs `spillway loadtest --json args…`; returns the exit status, the report and how long
/// the process took.
async fn loadtest(args: &[&str]) -> (bool, Value, Duration) {
    let started = Instant::now();
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(BIN)
            .arg("loadtest")
            .arg("--json")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("loadtest ends by itself")
    .expect("loadtest runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "not one JSON report ({e}): {stdout}\nstderr: {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output.status.success(), report, started.elapsed())
}

fn sum(object: &Value, field: Option<&str>) -> u64 {
    object
        .as_object()
        .unwrap()
        .values()
        .map(|v| match field {
            Some(f) => v[f].as_u64().unwrap(),
            None => v.as_u64().unwrap(),
        })
        .sum()
}

async fn get_json(url: &str) -> Value {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_add_up_and_every_200_names_its_backend() {
    let stack = Stack::start(json!([])).await;
    let (ok, report, _) = loadtest(&[
        "--url",
        &stack.url,
        "--total-requests",
        "120",
        "--workers",
        "8",
        "--duration",
        "60s",
        "--apps",
        "chat-web,batch-summarizer,support-bot",
        "--stream-ratio",
        "0.5",
        "--include-usage-ratio",
        "1",
    ])
    .await;
    assert!(ok, "{report:#}");
    assert_eq!(report["stoppedBy"], "count");
    assert_eq!(report["sent"], 120);
    assert_eq!(
        sum(&report["byStatus"], None) + sum(&report["errors"], None),
        120
    );
    assert_eq!(report["byStatus"]["200"], 120, "{report:#}");
    assert_eq!(sum(&report["byBackend"], Some("ok")), 120);
    assert_eq!(
        report["byBackend"]["ptu"]["ok"], 120,
        "priority 1 serves while healthy"
    );
    assert_eq!(
        (report["streams"].as_u64(), report["retried"].as_u64()),
        (Some(60), Some(0))
    );
    assert_eq!(report["ttftMs"]["count"], 60);
    assert_eq!(report["latencyMs"]["count"], 120);
    assert_eq!(
        report["responsesWithUsage"], 120,
        "JSON bodies and usage chunks"
    );
    for app in ["chat-web", "batch-summarizer", "support-bot"] {
        assert_eq!(report["byApp"][app]["sent"], 40, "{app}");
        assert_eq!(report["byApp"][app]["ok"], 40, "{app}");
    }

    // The gateway counted the same requests per app (the app header is the trusted identity)
    // and the same tokens the client saw.
    let usage = get_json(&format!("{}/admin/usage", stack.admin)).await;
    for app in ["chat-web", "batch-summarizer", "support-bot"] {
        let (requests, prompt) = gateway_counts(&usage, app);
        assert_eq!(requests, 40, "{app}: {usage:#}");
        assert_eq!(
            prompt,
            report["byApp"][app]["promptTokens"].as_u64().unwrap(),
            "{app}"
        );
    }
}

/// Requests and prompt tokens of `app` in the gateway's `/admin/usage`.
fn gateway_counts(usage: &Value, app: &str) -> (u64, u64) {
    let rows = usage["rows"].as_array().unwrap();
    rows.iter()
        .filter(|r| r["appId"] == app)
        .fold((0, 0), |(n, p), r| {
            (
                n + r["requests"].as_u64().unwrap(),
                p + r["promptTokens"].as_u64().unwrap(),
            )
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duration_bounds_an_open_loop_run() {
    let stack = Stack::start(json!([])).await;
    let (ok, report, took) = loadtest(&[
        "--url",
        &stack.url,
        "--api",
        "azure",
        "--total-requests",
        "1000000",
        "--rate",
        "20",
        "--duration",
        "2s",
        "--grace",
        "2s",
    ])
    .await;
    assert!(ok, "{report:#}");
    assert_eq!(report["stoppedBy"], "duration");
    let sent = report["sent"].as_u64().unwrap();
    assert!((20..=41).contains(&sent), "20 req/s for 2 s, got {sent}");
    assert_eq!(
        sum(&report["byStatus"], None) + sum(&report["errors"], None),
        sent
    );
    assert_eq!(report["byStatus"]["200"].as_u64(), Some(sent));
    assert!(
        report["elapsedSeconds"].as_f64().unwrap() < 4.0,
        "{report:#}"
    );
    assert!(took < Duration::from_secs(10), "the process took {took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_spilled_within_the_request_counts_as_retried() {
    let fault = json!([{"mode": "status", "status": 429, "count": 1, "headers": {"retry-after-ms": "60000"}}]);
    let stack = Stack::start(fault).await;
    let (ok, report, _) = loadtest(&[
        "--url",
        &stack.url,
        "--total-requests",
        "30",
        "--workers",
        "1",
        "--stream-ratio",
        "0",
    ])
    .await;
    assert!(ok, "{report:#}");
    assert_eq!(
        report["byStatus"],
        json!({"200": 30}),
        "no 429 reaches the client"
    );
    assert_eq!(report["retried"], 1, "{report:#}");
    assert_eq!(
        report["byBackend"],
        json!({"paygo": {"responses": 30, "ok": 30}}),
        "the first request spilled after PTU's 429; PTU's breaker stays open for the rest"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_endpoint_is_reported_and_exits_non_zero() {
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let (ok, report, _) = loadtest(&[
        "--url",
        &format!("http://{closed}"),
        "--total-requests",
        "3",
        "--workers",
        "1",
    ])
    .await;
    assert!(!ok, "nothing answered: the command fails");
    assert_eq!(report["sent"], 3);
    assert_eq!(report["errors"], json!({"connect": 3}));
    assert_eq!(report["responses"], 0);
}
