//! Bad input, credentials, trace context and hot reload through a real gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{Gateway, Sim, chat_body, http, pool_yaml};
use http::Method;
use serde_json::json;

const GATEWAY: &str = "---\napiVersion: spillway.dev/v1alpha1\nkind: AIGateway\nmetadata: {name: gw}\nspec: {maxRequestBodyBytes: 4096}\n";

async fn stack() -> (Sim, Gateway) {
    let sim = Sim::start(
        "backends:\n  - name: east\n    apiKey: backend-secret\n  - name: west\n    apiKey: backend-secret\n",
    )
    .await;
    let backends = format!(
        "    - name: east\n      url: {}\n      apiKey: {{env: EAST_KEY}}\n    - name: west\n      url: {}\n      priority: 2\n      apiKey: {{env: EAST_KEY}}\n",
        sim.url("east"),
        sim.url("west")
    );
    let manifests = format!("{}{GATEWAY}", pool_yaml("chat", &["gpt-4o"], &backends, ""));
    let gw = Gateway::start_with(&manifests, &[("EAST_KEY", "backend-secret")]).await;
    (sim, gw)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_input_gets_its_status_and_an_openai_error() {
    let (sim, gw) = stack().await;
    let big =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(5000)}]})
            .to_string();
    let cases: Vec<(Method, String, String, u16, &str)> = vec![
        (
            Method::POST,
            "/openai/deployments/nope/chat/completions?api-version=2024-10-21".into(),
            chat_body("nope", false).to_string(),
            404,
            "DeploymentNotFound",
        ),
        (
            Method::POST,
            "/v1/chat/completions".into(),
            chat_body("nope", false).to_string(),
            404,
            "model_not_found",
        ),
        (
            Method::POST,
            "/v1/chat/completions".into(),
            "{\"model\": \"gpt-4o\", ".into(),
            400,
            "invalid_request_body",
        ),
        (
            Method::POST,
            "/v1/chat/completions".into(),
            "[1, 2]".into(),
            400,
            "invalid_request_body",
        ),
        (
            Method::POST,
            "/v1/chat/completions".into(),
            "{\"model\": \"gpt-4o\", \"stream\": \"yes\"}".into(),
            400,
            "invalid_request_body",
        ),
        (
            Method::POST,
            "/v1/chat/completions".into(),
            "{\"messages\": []}".into(),
            400,
            "missing_model",
        ),
        (
            Method::POST,
            "/v1/chat/completions".into(),
            big,
            413,
            "request_too_large",
        ),
        (
            Method::GET,
            "/v1/chat/completions".into(),
            String::new(),
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            "/v1/images/generations".into(),
            "{}".into(),
            404,
            "not_found",
        ),
    ];
    for (method, path, body, status, code) in cases {
        let reply = http(method.clone(), &format!("{}{path}", gw.url), &[], body).await;
        assert_eq!(
            reply.status.as_u16(),
            status,
            "{method} {path}: {}",
            reply.text()
        );
        assert_eq!(reply.header("content-type"), "application/json");
        let error = &reply.json()["error"];
        assert_eq!(error["code"], code, "{path}");
        assert!(
            error["message"].as_str().is_some_and(|m| m.len() > 10),
            "{path}: a helpful message"
        );
        assert!(error["type"].is_string());
    }
    assert!(
        sim.entries("east").await.is_empty(),
        "no bad request may reach a backend"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_stay_at_the_gateway_and_trace_context_passes() {
    let (sim, gw) = stack().await;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let reply = http(
        Method::POST,
        &format!(
            "{}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21",
            gw.url
        ),
        &[
            ("api-key", "client-key"),
            ("authorization", "Bearer client-token"),
            ("traceparent", traceparent),
            ("x-request-id", "cred-1"),
        ],
        chat_body("gpt-4o", false).to_string(),
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("x-request-id"), "cred-1");
    let entry = sim.entry("cred-1").await;
    assert_eq!(entry["apiKey"], "backend-secret");
    assert!(
        entry["authorization"].is_null(),
        "client token forwarded: {}",
        entry["authorization"]
    );
    // The client's trace continues; the backend's parent is the gateway's attempt span.
    let sent = entry["traceparent"].as_str().unwrap();
    assert_eq!(sent.len(), 55);
    assert_eq!(&sent[..36], &traceparent[..36], "same version and trace id");
    assert_eq!(&sent[52..], "-01", "the client's sampled flag");
    assert_ne!(
        &sent[36..52],
        &traceparent[36..52],
        "the attempt's own span id"
    );

    // Without a traceparent or request id the gateway starts a trace and names the request;
    // the backend, the client and the usage record see the same id, also across retries.
    sim.set_faults("east", json!({"mode": "status", "status": 500, "count": 1}))
        .await;
    let reply = http(
        Method::POST,
        &format!("{}/v1/chat/completions", gw.url),
        &[],
        chat_body("gpt-4o", false).to_string(),
    )
    .await;
    assert_eq!(
        (reply.status.as_u16(), reply.header("x-spillway-attempts")),
        (200, "2")
    );
    let id = reply.header("x-request-id").to_owned();
    assert_eq!(id.len(), 32, "a generated id: {id}");
    let mut attempts: Vec<_> = sim.entries("east").await;
    attempts.extend(sim.entries("west").await);
    attempts.retain(|e| e["requestId"] == id.as_str());
    assert_eq!(attempts.len(), 2, "both attempts carry the request's id");
    assert_eq!(
        (
            attempts[0]["backend"].as_str(),
            attempts[1]["backend"].as_str()
        ),
        (Some("east"), Some("west")),
        "the retry goes to another backend, never the one that just failed"
    );
    let trace = attempts[0]["traceparent"].as_str().unwrap().to_owned();
    assert_eq!(trace.len(), 55);
    assert!(trace.starts_with("00-") && trace.ends_with("-01"));
    let second = attempts[1]["traceparent"].as_str().unwrap();
    assert_eq!(&second[..36], &trace[..36], "one trace per client request");
    assert_ne!(&second[36..52], &trace[36..52], "a span per attempt");
    assert_eq!(gw.record(&id).await["attempts"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_reload_under_load_loses_no_request_and_rejects_bad_changes() {
    let sim = Sim::start("backends:\n  - name: a\n  - name: b\n").await;
    let pool = |weights: (u32, u32), with_b: bool| {
        let mut backends = format!(
            "    - name: a\n      url: {}\n      weight: {}\n",
            sim.url("a"),
            weights.0
        );
        if with_b {
            backends.push_str(&format!(
                "    - name: b\n      url: {}\n      weight: {}\n",
                sim.url("b"),
                weights.1
            ));
        }
        pool_yaml("chat", &["gpt-4o"], &backends, "")
    };
    let gw = Gateway::start(&pool((1, 1), false)).await;
    let url = format!("{}/v1/chat/completions", gw.url);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let load: Vec<_> = (0..6)
        .map(|w| {
            let url = url.clone();
            let stop = stop.clone();
            let done = done.clone();
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                // Bounded: until the reloads are done, at most 2,000 requests per worker.
                for i in 0..2_000 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let id = format!("reload-{w}-{i}");
                    let reply = http(
                        Method::POST,
                        &url,
                        &[("x-request-id", &id)],
                        chat_body("gpt-4o", i % 2 == 0).to_string(),
                    )
                    .await;
                    statuses.push(reply.status.as_u16());
                    done.fetch_add(1, Ordering::Relaxed);
                }
                statuses
            })
        })
        .collect();
    // Bounded wait until the load is flowing, so the reloads happen under it.
    for _ in 0..200 {
        if done.load(Ordering::Relaxed) >= 6 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before_reloads = done.load(Ordering::Relaxed);
    for (i, (weights, with_b)) in [
        ((1, 1), true),
        ((5, 1), true),
        ((1, 1), false),
        ((1, 9), true),
    ]
    .into_iter()
    .enumerate()
    {
        gw.reload(&pool(weights, with_b)).await;
        assert_eq!(
            gw.version().await,
            i as u64 + 2,
            "the file starts at version 1"
        );
    }
    let after_reloads = done.load(Ordering::Relaxed);
    // An invalid change is rejected and the last good configuration keeps serving.
    std::fs::write(&gw.config, pool((0, 1), true)).unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(gw.version().await, 5, "weight 0 must be rejected");
    stop.store(true, Ordering::Relaxed);
    let mut served = 0;
    for worker in load {
        let statuses = worker.await.unwrap();
        assert!(
            statuses.iter().all(|s| *s == 200),
            "a request failed during reload: {statuses:?}"
        );
        served += statuses.len();
    }
    assert!(
        before_reloads > 0,
        "the load was running before the reloads"
    );
    assert!(
        after_reloads > before_reloads,
        "requests completed while the configuration was being swapped ({before_reloads} → {after_reloads}, {served} in all)"
    );
    let reply = gw.chat("after-reload", chat_body("gpt-4o", false)).await;
    assert_eq!(reply.status, 200);
}
