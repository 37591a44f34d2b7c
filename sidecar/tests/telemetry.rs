//! Telemetry through a real `spillway run` in front of real `spillway simulate` backends:
//! the OTLP/HTTP metrics the gateway sends (decoded from protobuf by a receiver in the test)
//! add up to the simulator's ledger per app and backend, `/metrics` agrees with them and
//! parses as Prometheus text, and a collector that never answers or does not exist never
//! slows a request nor grows the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod telemetry_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Sim, chat_body, http};
use http::Method;
use serde_json::json;
use telemetry_support::{BlackHole, OtlpReceiver, RunningGateway, closed_port, scrape, sum_where};

const SIM: &str = "backends:\n  - name: ptu\n  - name: paygo\n    usageInStream: false\n";

fn manifests(sim: &Sim) -> String {
    format!(
        "apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {{name: chat}}
spec:
  models: [gpt-4o]
  backends:
    - {{name: ptu, url: '{}', priority: 1}}
    - {{name: paygo, url: '{}', priority: 2}}
---
apiVersion: spillway.dev/v1alpha1
kind: AIGateway
metadata: {{name: gw}}
spec:
  identity: {{trustedHeader: x-app-id}}
",
        sim.url("ptu"),
        sim.url("paygo")
    )
}

/// Sends one chat call as `app`; returns the status.
async fn call(gw: &RunningGateway, app: &str, id: &str, model: &str, stream: bool) -> u16 {
    let reply = http(
        Method::POST,
        &format!("{}/v1/chat/completions", gw.url),
        &[("x-app-id", app), ("x-request-id", id)],
        chat_body(model, stream).to_string(),
    )
    .await;
    reply.status.as_u16()
}

/// Polls (bounded) until `done` holds for the receiver's data.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..200 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Billed tokens per (app, backend): (prompt, completion, of which estimated-stream prompt
/// and completion), from the simulator's ledger and the app each request id was sent as.
async fn ledger_by_app(
    sim: &Sim,
    apps: &HashMap<String, String>,
) -> BTreeMap<(String, String), [u64; 4]> {
    let ledger = http(
        Method::GET,
        &format!("{}/_sim/ledger", sim.url("ptu")),
        &[],
        "",
    )
    .await
    .json();
    let mut out: BTreeMap<(String, String), [u64; 4]> = BTreeMap::new();
    for entry in ledger["entries"].as_array().unwrap() {
        if entry["status"] != 200 {
            continue;
        }
        let app = apps[entry["requestId"].as_str().unwrap()].clone();
        let backend = entry["backend"].as_str().unwrap().to_owned();
        let (prompt, completion) = (
            entry["promptTokens"].as_u64().unwrap(),
            entry["completionTokens"].as_u64().unwrap(),
        );
        let estimated = entry["stream"] == true && entry["includeUsage"] == false;
        let row = out.entry((app, backend)).or_default();
        row[0] += prompt;
        row[1] += completion;
        if estimated {
            row[2] += prompt;
            row[3] += completion;
        }
    }
    out
}

#[allow(clippy::cast_precision_loss)]
fn f(n: u64) -> f64 {
    n as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_token_sums_equal_the_simulators_ledger_per_app_and_backend() {
    let sim = Sim::start(SIM).await;
    let otlp = OtlpReceiver::start().await;
    let gw = RunningGateway::start(
        &manifests(&sim),
        &[],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &otlp.url),
            ("OTEL_METRIC_EXPORT_INTERVAL", "200"),
        ],
    )
    .await;
    let mut apps = HashMap::new();
    let mut n = 0;
    let mut send = async |app: &str, stream: bool| {
        n += 1;
        let id = format!("{app}-{n}");
        apps.insert(id.clone(), app.to_owned());
        assert_eq!(call(&gw, app, &id, "gpt-4o", stream).await, 200, "{id}");
    };
    // PTU healthy: streams (usage from the backend) and JSON calls.
    for app in ["app-a", "app-b"] {
        for stream in [false, true, false, true] {
            send(app, stream).await;
        }
    }
    // PTU answers 429 for ten minutes: the breaker opens and everything spills to paygo,
    // whose streams carry no usage (counted with the tokenizer, flagged as estimated).
    sim.set_faults(
        "ptu",
        json!({"mode": "status", "status": 429, "count": 1, "headers": {"retry-after-ms": "600000"}}),
    )
    .await;
    for (app, stream) in [
        ("app-a", true),
        ("app-a", true),
        ("app-a", false),
        ("app-b", true),
        ("app-b", false),
        ("app-b", false),
        ("app-b", true),
    ] {
        send(app, stream).await;
    }
    assert_eq!(
        call(&gw, "app-a", "unknown-model", "gpt-0", false).await,
        404
    );

    wait_for("every request in an OTLP export", || {
        sum_where(&otlp.points("spillway.requests"), &[]) == 16.0
    })
    .await;
    let tokens = otlp.points("spillway.tokens");
    let usage = otlp.points("gen_ai.client.token.usage");
    let ledger = ledger_by_app(&sim, &apps).await;
    assert_eq!(ledger.len(), 4, "both apps on both backends: {ledger:?}");
    let port = |backend: &str| sim.url(backend).rsplit(':').next().unwrap().to_owned();
    for ((app, backend), [prompt, completion, est_prompt, est_completion]) in &ledger {
        let at = |kind: &'static str| {
            [
                ("spillway.app_id", app.as_str()),
                ("spillway.backend", backend.as_str()),
                ("spillway.pool", "chat"),
                ("gen_ai.request.model", "gpt-4o"),
                ("gen_ai.token.type", kind),
            ]
        };
        let label = format!("{app} on {backend}");
        assert_eq!(
            sum_where(&tokens, &at("input")),
            f(*prompt),
            "{label} input"
        );
        assert_eq!(
            sum_where(&tokens, &at("output")),
            f(*completion),
            "{label} output"
        );
        let estimated = |kind: &'static str| {
            let mut filter = at(kind).to_vec();
            filter.push(("spillway.token.estimated", "true"));
            sum_where(&tokens, &filter)
        };
        assert_eq!(
            estimated("input"),
            f(*est_prompt),
            "{label} estimated input"
        );
        assert_eq!(
            estimated("output"),
            f(*est_completion),
            "{label} estimated output"
        );

        let port = port(backend);
        let genai = |kind: &'static str| {
            let mut filter = at(kind).to_vec();
            filter.extend([
                ("gen_ai.operation.name", "chat"),
                ("gen_ai.provider.name", "azure.ai.openai"),
                ("server.address", "127.0.0.1"),
                ("server.port", port.as_str()),
            ]);
            sum_where(&usage, &filter)
        };
        assert_eq!(genai("input"), f(*prompt), "{label} gen_ai input");
        assert_eq!(genai("output"), f(*completion), "{label} gen_ai output");
    }
    assert!(
        ledger[&("app-a".into(), "paygo".into())][2] > 0,
        "paygo streams were estimated"
    );
    assert_eq!(
        sum_where(
            &tokens,
            &[
                ("spillway.backend", "ptu"),
                ("spillway.token.estimated", "true")
            ]
        ),
        0.0,
        "ptu reported usage in every stream"
    );

    let requests = otlp.points("spillway.requests");
    let outcome = |o: &str| sum_where(&requests, &[("spillway.outcome", o)]);
    assert_eq!(
        (
            outcome("served"),
            outcome("spilled_over"),
            outcome("client_error")
        ),
        (8.0, 7.0, 1.0)
    );
    let transitions = otlp.points("spillway.breaker.transitions");
    let opened = [
        ("spillway.backend", "ptu"),
        ("spillway.breaker.from", "closed"),
        ("spillway.breaker.to", "open"),
    ];
    assert_eq!(sum_where(&transitions, &opened), 1.0);
    let attempts = otlp.points("spillway.upstream.attempts");
    assert_eq!(
        sum_where(
            &attempts,
            &[
                ("spillway.backend", "ptu"),
                ("spillway.attempt.result", "rate_limited")
            ]
        ),
        1.0
    );
    let state = otlp.points("spillway.breaker.state");
    assert_eq!(
        sum_where(
            &state,
            &[
                ("spillway.backend", "ptu"),
                ("spillway.breaker.state", "open")
            ]
        ),
        1.0
    );
    assert_eq!(
        otlp.unit("gen_ai.client.token.usage").as_deref(),
        Some("{token}")
    );
    assert_eq!(
        otlp.unit("gen_ai.server.time_to_first_token").as_deref(),
        Some("s")
    );
    assert_eq!(otlp.resource()["service.name"], "spillway");
    for seen in otlp.seen() {
        assert_eq!(
            (seen.path.as_str(), seen.content_type.as_str(), seen.decoded),
            ("/v1/metrics", "application/x-protobuf", true)
        );
    }

    // /metrics is the same aggregation: equal token totals.
    let prom = scrape(&gw.admin).await;
    for ((app, backend), [prompt, ..]) in &ledger {
        let total: f64 = prom
            .iter()
            .filter(|s| {
                s.name == "spillway_tokens_total"
                    && s.labels["spillway_app_id"] == *app
                    && s.labels["spillway_backend"] == *backend
                    && s.labels["gen_ai_token_type"] == "input"
            })
            .map(|s| s.value)
            .sum();
        assert_eq!(total, f(*prompt), "/metrics {app} on {backend}");
    }
}

/// Sends `count` calls; every one must succeed, each within `limit`.
async fn calls_stay_fast(gw: &RunningGateway, count: usize, limit: Duration) {
    for i in 0..count {
        let started = Instant::now();
        let status = call(gw, "app-a", &format!("fast-{i}"), "gpt-4o", i % 2 == 0).await;
        let took = started.elapsed();
        assert_eq!(status, 200);
        assert!(
            took < limit,
            "call {i} took {took:?} while the collector is away"
        );
    }
}

/// Waits until `/metrics` counts at least `n` failed exports.
async fn failed_exports(gw: &RunningGateway, n: f64) {
    for _ in 0..200 {
        let failed: f64 = scrape(&gw.admin)
            .await
            .iter()
            .filter(|s| {
                s.name == "spillway_telemetry_exports_total"
                    && s.labels["spillway_export_result"] == "failure"
            })
            .map(|s| s.value)
            .sum();
        if failed >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("exports did not fail {n} times");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_costs_requests_nothing_and_holds_one_connection() {
    // OTLP/HTTP: each export opens a connection and abandons it at the timeout.
    never_answering_collector("http/protobuf", 6).await;
}

#[cfg(feature = "otlp-grpc")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_collector_that_never_answers_costs_requests_nothing() {
    // OTLP/gRPC: one HTTP/2 connection that never completes; each export times out.
    never_answering_collector("grpc", 1).await;
}

/// Runs traffic while every export to a silent collector hangs until its timeout; at least
/// `connections` connections must have reached the collector.
async fn never_answering_collector(protocol: &str, connections: usize) {
    let sim = Sim::start(SIM).await;
    let hole = BlackHole::start().await;
    let gw = RunningGateway::start(
        &manifests(&sim),
        &[
            "--otlp-endpoint",
            &hole.url,
            "--otlp-protocol",
            protocol,
            "--otlp-export-interval",
            "200ms",
        ],
        &[("OTEL_EXPORTER_OTLP_TIMEOUT", "300")],
    )
    .await;
    calls_stay_fast(&gw, 10, Duration::from_secs(2)).await;
    failed_exports(&gw, 2.0).await;
    let rss_before = gw.rss_kib();
    // Exports keep hanging for the whole run; requests are unaffected.
    calls_stay_fast(&gw, 60, Duration::from_secs(2)).await;
    failed_exports(&gw, 6.0).await;
    let rss_after = gw.rss_kib();
    let accepted = hole.accepted.load(Ordering::SeqCst);
    assert!(
        accepted >= connections,
        "the exporter really tried the collector: {accepted} connections"
    );
    let max_open = hole.max_open.load(Ordering::SeqCst);
    assert!(
        max_open <= 2,
        "exports do not pile up connections: {max_open} open at once over {accepted} exports"
    );
    assert!(
        rss_after < rss_before + 32 * 1024,
        "memory stays bounded: {rss_before} KiB → {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_on_a_closed_port_costs_requests_nothing() {
    let sim = Sim::start(SIM).await;
    let nowhere = closed_port().await;
    let gw = RunningGateway::start(
        &manifests(&sim),
        &[],
        &[
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                &format!("{nowhere}/v1/metrics"),
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "50"),
        ],
    )
    .await;
    calls_stay_fast(&gw, 40, Duration::from_secs(2)).await;
    failed_exports(&gw, 3.0).await;
    let prom = scrape(&gw.admin).await;
    let served: f64 = prom
        .iter()
        .filter(|s| s.name == "spillway_requests_total" && s.labels["spillway_outcome"] == "served")
        .map(|s| s.value)
        .sum();
    assert_eq!(served, 40.0, "/metrics still counts everything");
}

#[cfg(feature = "otlp-grpc")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_exports_the_same_token_counts() {
    let sim = Sim::start(SIM).await;
    let grpc = telemetry_support::GrpcReceiver::start().await;
    let gw = RunningGateway::start(
        &manifests(&sim),
        &["--otlp-protocol", "grpc", "--otlp-endpoint", &grpc.url],
        &[("OTEL_METRIC_EXPORT_INTERVAL", "200")],
    )
    .await;
    for (i, stream) in [false, true, false].into_iter().enumerate() {
        assert_eq!(
            call(&gw, "app-g", &format!("g-{i}"), "gpt-4o", stream).await,
            200
        );
    }
    wait_for("three requests in a gRPC export", || {
        sum_where(&grpc.points("spillway.requests"), &[]) == 3.0
    })
    .await;
    let ledger = http(
        Method::GET,
        &format!("{}/_sim/ledger", sim.url("ptu")),
        &[],
        "",
    )
    .await
    .json();
    let billed: u64 = ledger["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["promptTokens"].as_u64().unwrap())
        .sum();
    let tokens = grpc.points("spillway.tokens");
    assert_eq!(
        sum_where(
            &tokens,
            &[("spillway.app_id", "app-g"), ("gen_ai.token.type", "input")]
        ),
        f(billed)
    );
    assert!(
        grpc.paths()
            .iter()
            .all(|p| p == "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export"),
        "{:?}",
        grpc.paths()
    );
}
