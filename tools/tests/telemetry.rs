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
async fn ledger_by_app(sim: &Sim, apps: &HashMap<String, String>) -> Ledger {
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

/// Billed tokens per (app, backend) as `ledger_by_app` returns them.
type Ledger = BTreeMap<(String, String), [u64; 4]>;

/// Mixed traffic from two apps: JSON and streams on a healthy PTU, then PTU answers 429 for
/// ten minutes, its breaker opens and everything spills to paygo (whose streams carry no
/// usage), and one call for an unknown model. Returns request id → app.
async fn mixed_traffic(gw: &RunningGateway, sim: &Sim) -> HashMap<String, String> {
    let mut apps = HashMap::new();
    let mut n = 0;
    let mut send = async |app: &str, stream: bool| {
        n += 1;
        let id = format!("{app}-{n}");
        apps.insert(id.clone(), app.to_owned());
        assert_eq!(call(gw, app, &id, "gpt-4o", stream).await, 200, "{id}");
    };
    for app in ["app-a", "app-b"] {
        for stream in [false, true, false, true] {
            send(app, stream).await;
        }
    }
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
        call(gw, "app-a", "unknown-model", "gpt-0", false).await,
        404
    );
    apps
}

/// `spillway.tokens` and `gen_ai.client.token.usage` per app, backend and type equal the
/// ledger, and exactly the tokenizer-counted streams are flagged as estimated.
fn assert_tokens_equal_the_ledger(otlp: &OtlpReceiver, ledger: &Ledger, sim: &Sim) {
    let tokens = otlp.points("spillway.tokens");
    let usage = otlp.points("gen_ai.client.token.usage");
    for ((app, backend), [prompt, completion, est_prompt, est_completion]) in ledger {
        let label = format!("{app} on {backend}");
        let port = sim.url(backend).rsplit(':').next().unwrap().to_owned();
        for (kind, billed, estimated) in [
            ("input", prompt, est_prompt),
            ("output", completion, est_completion),
        ] {
            let at = [
                ("spillway.app_id", app.as_str()),
                ("spillway.backend", backend.as_str()),
                ("spillway.pool", "chat"),
                ("gen_ai.request.model", "gpt-4o"),
                ("gen_ai.token.type", kind),
            ];
            assert_eq!(sum_where(&tokens, &at), f(*billed), "{label} {kind}");
            let flagged = [&at[..], &[("spillway.token.estimated", "true")]].concat();
            assert_eq!(
                sum_where(&tokens, &flagged),
                f(*estimated),
                "{label} estimated {kind}"
            );
            let genai = [
                &at[..],
                &[
                    ("gen_ai.operation.name", "chat"),
                    ("gen_ai.provider.name", "azure.ai.openai"),
                    ("server.address", "127.0.0.1"),
                    ("server.port", port.as_str()),
                ],
            ]
            .concat();
            assert_eq!(
                sum_where(&usage, &genai),
                f(*billed),
                "{label} gen_ai {kind}"
            );
        }
    }
    assert!(
        ledger[&("app-a".into(), "paygo".into())][2] > 0,
        "paygo streams were estimated"
    );
    let ptu_estimated = [
        ("spillway.backend", "ptu"),
        ("spillway.token.estimated", "true"),
    ];
    assert_eq!(
        sum_where(&tokens, &ptu_estimated),
        0.0,
        "ptu reported usage in every stream"
    );
}

/// Outcomes, the breaker trip, the rate-limited attempt and the open state, units, resource
/// and transport.
fn assert_routing_and_transport(otlp: &OtlpReceiver) {
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
    let opened = [
        ("spillway.backend", "ptu"),
        ("spillway.breaker.from", "closed"),
        ("spillway.breaker.to", "open"),
    ];
    assert_eq!(
        sum_where(&otlp.points("spillway.breaker.transitions"), &opened),
        1.0
    );
    let limited = [
        ("spillway.backend", "ptu"),
        ("spillway.attempt.result", "rate_limited"),
    ];
    assert_eq!(
        sum_where(&otlp.points("spillway.upstream.attempts"), &limited),
        1.0
    );
    let open = [
        ("spillway.backend", "ptu"),
        ("spillway.breaker.state", "open"),
    ];
    assert_eq!(
        sum_where(&otlp.points("spillway.breaker.state"), &open),
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
    // Without `OTEL_SEMCONV_STABILITY_OPT_IN` the client metrics keep their old names (the
    // new ones: telemetry_genai_latest.rs).
    let names = otlp.names();
    assert!(
        names.contains("gen_ai.client.operation.duration"),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("gen_ai.client.inference.")
                || n.starts_with("gen_ai.client.embeddings.")),
        "{names:?}"
    );
    assert_eq!(otlp.resource()["service.name"], "spillway");
    for seen in otlp.seen() {
        assert_eq!(
            (seen.path.as_str(), seen.content_type.as_str(), seen.decoded),
            ("/v1/metrics", "application/x-protobuf", true)
        );
    }
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
    let apps = mixed_traffic(&gw, &sim).await;
    wait_for("every request in an OTLP export", || {
        sum_where(&otlp.points("spillway.requests"), &[]) == 16.0
    })
    .await;
    let ledger = ledger_by_app(&sim, &apps).await;
    assert_eq!(ledger.len(), 4, "both apps on both backends: {ledger:?}");
    assert_tokens_equal_the_ledger(&otlp, &ledger, &sim);
    assert_routing_and_transport(&otlp);

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
