//! The latest GenAI semantic conventions behind `OTEL_SEMCONV_STABILITY_OPT_IN`, through a
//! real `spillway run` in front of a real `spillway simulate` backend whose model reasons and
//! whose prompt cache serves a repeated prefix: the OTLP/HTTP metrics the gateway sends
//! (decoded by a receiver in the test) carry the `gen_ai.client.inference.*` instruments with
//! `gen_ai.token.modality`, their sums equal the simulator's ledger (cached and reasoning
//! tokens included), a call the backend refused counts 0 of modality `unknown`, and none of
//! the old client instruments is sent. `/metrics` renders the new names.
//! (`telemetry.rs` checks the default, old names against the same receiver.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod telemetry_support;

use bytes::Bytes;
use common::{Sim, http};
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use telemetry_support::gateway::RunningGateway;
use telemetry_support::otlp_http::OtlpReceiver;
use telemetry_support::stack::{f, wait_for};
use telemetry_support::{Labels, scrape, sum_where};

/// One backend; `gpt-4o` reasons on it, and a prefix of 256 tokens seen before is cached.
const SIM: &str = "backends:
  - name: ptu
    cacheMinTokens: 256
    reasoningModels: [gpt-4o]
";

fn manifests(ptu: &str) -> String {
    format!(
        "apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {{name: chat}}
spec:
  models: [gpt-4o]
  backends:
    - {{name: ptu, url: '{ptu}'}}
---
apiVersion: spillway.dev/v1alpha1
kind: AIGateway
metadata: {{name: gw}}
spec:
  identity: {{trustedHeader: x-app-id}}
"
    )
}

/// A chat call as `app-a` with a long system prompt (the same every time, so the second
/// call on a backend reads it from the cache); returns the status after the whole body.
async fn chat(gw: &RunningGateway, id: &str, stream: bool) -> u16 {
    let system = "Route every request to the cheapest healthy backend with quota left. ".repeat(30);
    let body = json!({
        "model": "gpt-4o",
        "stream": stream,
        "stream_options": {"include_usage": true},
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": format!("Which backend for {id}?")},
        ],
    });
    let request = Request::post(format!("{}/v1/chat/completions", gw.url))
        .header("content-type", "application/json")
        .header("x-app-id", "app-a")
        .header("x-request-id", id)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = Client::builder(TokioExecutor::new())
        .build_http()
        .request(request)
        .await
        .expect("the gateway answers");
    let status = response.status().as_u16();
    response.into_body().collect().await.expect("a whole body");
    status
}

/// The billed (prompt, completion, cached, reasoning) tokens of the calls the simulator
/// served.
async fn ledger(sim: &Sim) -> [u64; 4] {
    let ledger = http(
        Method::GET,
        &format!("{}/_sim/ledger", sim.url("ptu")),
        &[],
        "",
    )
    .await
    .json();
    let mut sums = [0; 4];
    for entry in ledger["entries"].as_array().unwrap() {
        if entry["status"] != 200 {
            continue;
        }
        for (sum, field) in sums.iter_mut().zip([
            "promptTokens",
            "completionTokens",
            "cachedTokens",
            "reasoningTokens",
        ]) {
            *sum += entry[field].as_u64().unwrap();
        }
    }
    sums
}

const INPUT: &str = "gen_ai.client.inference.usage.input_tokens";
const OUTPUT: &str = "gen_ai.client.inference.usage.output_tokens";
const CACHE_READ: &str = "gen_ai.client.inference.usage.cache_read.input_tokens";
const CACHE_WRITE: &str = "gen_ai.client.inference.usage.cache_write.input_tokens";
const REASONING: &str = "gen_ai.client.inference.usage.reasoning.output_tokens";
const OPERATION_INPUT: &str = "gen_ai.client.inference.operation.input_tokens";
const OPERATION_OUTPUT: &str = "gen_ai.client.inference.operation.output_tokens";
const DURATION: &str = "gen_ai.client.inference.duration";

/// The counters equal the ledger per modality, with the GenAI and Spillway attributes; the
/// refused call is one 0 of modality `unknown` on each; no point has `error.type` or
/// `gen_ai.token.type`.
fn assert_usage_counters(otlp: &OtlpReceiver, sim: &Sim, billed: [u64; 4]) {
    let [prompt, completion, cached, reasoning] = billed;
    let port = sim.url("ptu").rsplit(':').next().unwrap();
    let text = [
        ("gen_ai.token.modality", "text"),
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "azure.ai.openai"),
        ("gen_ai.request.model", "gpt-4o"),
        ("server.address", "127.0.0.1"),
        ("server.port", port),
        ("spillway.app_id", "app-a"),
        ("spillway.pool", "chat"),
        ("spillway.backend", "ptu"),
        ("spillway.token.estimated", "false"),
    ];
    for (name, expected) in [
        (INPUT, prompt),
        (OUTPUT, completion),
        (CACHE_READ, cached),
        (CACHE_WRITE, 0),
        (REASONING, reasoning),
    ] {
        let points = otlp.points(name);
        assert_eq!(sum_where(&points, &text), f(expected), "{name}");
        let unknown: Vec<&(Labels, f64)> = points
            .iter()
            .filter(|(l, _)| l["gen_ai.token.modality"] == "unknown")
            .collect();
        assert_eq!(unknown.len(), 1, "{name}: {points:?}");
        assert_eq!(unknown[0].1, 0.0, "{name}");
        assert_eq!(unknown[0].0["gen_ai.provider.name"], "azure.ai.openai");
        assert_eq!(points.len(), 2, "{name}: text and unknown only: {points:?}");
        for (labels, _) in &points {
            assert!(!labels.contains_key("error.type"), "{name}: {labels:?}");
            assert!(!labels.contains_key("gen_ai.token.type"), "{name}");
        }
        assert_eq!(otlp.unit(name).as_deref(), Some("{token}"), "{name}");
    }
}

/// Per-call tokens and the inference duration: the refused call with its `error.type` and 0
/// tokens; no modality on them.
fn assert_histograms(otlp: &OtlpReceiver, billed: [u64; 4]) {
    for (name, expected) in [(OPERATION_INPUT, billed[0]), (OPERATION_OUTPUT, billed[1])] {
        let points = otlp.points(name);
        assert_eq!(sum_where(&points, &[]), f(expected), "{name}");
        assert_eq!(sum_where(&points, &[("error.type", "400")]), 0.0, "{name}");
        assert!(
            points
                .iter()
                .any(|(l, _)| l.get("error.type").map(String::as_str) == Some("400")),
            "{name}: the refused call is recorded: {points:?}"
        );
        assert!(
            points
                .iter()
                .all(|(l, _)| !l.contains_key("gen_ai.token.modality")),
            "{name}"
        );
    }
    let durations = otlp.points(DURATION);
    assert!(
        durations
            .iter()
            .any(|(l, _)| l.get("error.type").map(String::as_str) == Some("400")),
        "{durations:?}"
    );
    assert!(sum_where(&durations, &[("gen_ai.operation.name", "chat")]) > 0.0);
    assert_eq!(otlp.unit(DURATION).as_deref(), Some("s"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_opt_in_sends_the_inference_usage_metrics_and_no_old_client_metric() {
    let sim = Sim::start(SIM).await;
    let otlp = OtlpReceiver::start().await;
    let gw = RunningGateway::start(
        &manifests(sim.url("ptu")),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
            (
                "OTEL_SEMCONV_STABILITY_OPT_IN",
                " http , gen_ai_latest_experimental",
            ),
        ],
    )
    .await;
    for (id, stream) in [("first", false), ("cached", false), ("streamed", true)] {
        assert_eq!(chat(&gw, id, stream).await, 200, "{id}");
    }
    sim.set_faults("ptu", json!({"mode": "status", "status": 400, "count": 1}))
        .await;
    assert_eq!(chat(&gw, "refused", false).await, 400);
    wait_for("every request in an OTLP export", || {
        sum_where(&otlp.points("spillway.requests"), &[]) == 4.0 && otlp.points(INPUT).len() == 2
    })
    .await;

    let billed = ledger(&sim).await;
    let [prompt, _, cached, reasoning] = billed;
    assert!(
        cached > 0 && cached < prompt,
        "the prefix was cached: {billed:?}"
    );
    assert!(reasoning > 0, "gpt-4o reasoned: {billed:?}");
    assert_usage_counters(&otlp, &sim, billed);
    assert_histograms(&otlp, billed);

    let names = otlp.names();
    for old in [
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
    ] {
        assert!(!names.contains(old), "{old} sent: {names:?}");
    }
    for kept in ["gen_ai.server.request.duration", "spillway.tokens"] {
        assert!(names.contains(kept), "{kept} missing: {names:?}");
    }
    // Spillway's own counter keeps its classes and `gen_ai.token.type`.
    let tokens = otlp.points("spillway.tokens");
    let reasoning_class = [
        ("spillway.token.type", "reasoning_output"),
        ("gen_ai.token.type", "output"),
    ];
    assert_eq!(sum_where(&tokens, &reasoning_class), f(reasoning));

    // `/metrics` is the same aggregation, under the Prometheus names.
    let prom = scrape(&gw.admin).await;
    let total = |name: &str| -> f64 {
        prom.iter()
            .filter(|s| s.name == name && s.labels["gen_ai_token_modality"] == "text")
            .map(|s| s.value)
            .sum()
    };
    assert_eq!(
        [
            total("gen_ai_client_inference_usage_input_tokens_total"),
            total("gen_ai_client_inference_usage_cache_read_input_tokens_total"),
            total("gen_ai_client_inference_usage_reasoning_output_tokens_total"),
        ],
        [f(prompt), f(cached), f(reasoning)]
    );
    assert!(
        prom.iter()
            .any(|s| s.name == "gen_ai_client_inference_duration_seconds_count"),
        "the duration histogram is on /metrics"
    );
    assert!(
        !prom
            .iter()
            .any(|s| s.family.starts_with("gen_ai_client_token_usage")
                || s.family.starts_with("gen_ai_client_operation_duration")),
        "no old client family on /metrics"
    );
}
