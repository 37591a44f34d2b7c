//! Telemetry through a real `spillway run` in front of real `spillway simulate` backends:
//! the OTLP/HTTP metrics the gateway sends (decoded from protobuf by a receiver in the test)
//! add up to the simulator's ledger per app and backend, with estimated counts flagged, and
//! `/metrics` agrees with them and parses as Prometheus text.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod telemetry_support;

use std::collections::{BTreeMap, HashMap};

use common::{Sim, http};
use http::Method;
use serde_json::json;
use telemetry_support::gateway::RunningGateway;
use telemetry_support::otlp_http::OtlpReceiver;
use telemetry_support::stack::{SIM, call, f, manifests, wait_for};
use telemetry_support::{scrape, sum_where};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_token_sums_equal_the_simulators_ledger_per_app_and_backend() {
    let sim = Sim::start(SIM).await;
    let otlp = OtlpReceiver::start().await;
    let gw = RunningGateway::start(
        &manifests(sim.url("ptu"), sim.url("paygo"), ""),
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
