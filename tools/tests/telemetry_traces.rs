//! Traces of a real `spillway run` in front of `spillway simulate`, received by an OTLP/HTTP
//! receiver that decodes the real protobuf `ExportTraceServiceRequest`s: one SERVER span per
//! client request continuing the client's trace, one CLIENT child span per upstream attempt
//! whose id is the one each backend received in its `traceparent`, GenAI attributes, and
//! never a prompt or a completion; a collector that never answers costs requests nothing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod telemetry_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{Sim, http};
use http::Method;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use serde_json::{Value, json};
use telemetry_support::collectors::BlackHole;
use telemetry_support::gateway::RunningGateway;
use telemetry_support::otlp_http::OtlpReceiver;
use telemetry_support::scrape;
use telemetry_support::stack::{SIM, manifests, wait_for};
use telemetry_support::traces::{attributes, hex};

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";
const PROMPT: &str = "The secret spillway prompt zq7x must never leave the gateway.";

async fn start() -> (Sim, OtlpReceiver, RunningGateway) {
    let sim = Sim::start(SIM).await;
    let receiver = OtlpReceiver::start().await;
    let gw = RunningGateway::start(
        &manifests(sim.url("ptu"), sim.url("paygo"), ""),
        &["--otlp-endpoint", &receiver.url],
        &[],
    )
    .await;
    (sim, receiver, gw)
}

/// One chat call as `app-a` with request id `id`, and `traceparent` when given; returns the
/// response JSON.
async fn chat(gw: &RunningGateway, id: &str, traceparent: Option<&str>) -> Value {
    let body = json!({
        "model": "gpt-4o",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": PROMPT}],
    });
    let mut headers = vec![
        ("content-type", "application/json"),
        ("x-app-id", "app-a"),
        ("x-request-id", id),
    ];
    if let Some(tp) = traceparent {
        headers.push(("traceparent", tp));
    }
    let url = format!("{}/v1/chat/completions", gw.url);
    let reply = http(Method::POST, &url, &headers, body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

/// The ledger entry of request `id` on `backend`.
async fn ledger_entry(sim: &Sim, backend: &str, id: &str) -> Value {
    let entries = sim.entries(backend).await;
    let found: Vec<_> = entries.iter().filter(|e| e["requestId"] == id).collect();
    assert_eq!(found.len(), 1, "{backend} saw {id} once: {entries:?}");
    found[0].clone()
}

/// The (trace id, span id, flags) of the `traceparent` a backend received.
fn received_traceparent(entry: &Value) -> (String, String, String) {
    let tp = entry["traceparent"]
        .as_str()
        .expect("a traceparent reached the backend");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

fn by_kind(spans: &[Span], kind: SpanKind) -> Vec<&Span> {
    spans.iter().filter(|s| s.kind == kind as i32).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spilled_request_continues_the_clients_trace_with_a_span_per_attempt() {
    let (sim, receiver, gw) = start().await;
    sim.set_faults(
        "ptu",
        json!({"mode": "status", "status": 429, "count": 1, "headers": {"retry-after-ms": "200"}}),
    )
    .await;
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let reply = chat(&gw, "traced-1", Some(&traceparent)).await;

    let trace_id = hex_bytes(CLIENT_TRACE);
    wait_for("three spans of the client's trace", || {
        receiver.traces().trace(&trace_id).len() >= 3
    })
    .await;
    let spans = receiver.traces().trace(&trace_id);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let servers = by_kind(&spans, SpanKind::Server);
    assert_eq!(servers.len(), 1, "one server span: {spans:#?}");
    let server = servers[0];
    assert_eq!(
        hex(&server.parent_span_id),
        CLIENT_SPAN,
        "parented at the client's span"
    );
    assert_ne!(
        hex(&server.span_id),
        CLIENT_SPAN,
        "the gateway's own span id"
    );
    assert_eq!(server.name, "chat gpt-4o");
    let attrs = attributes(server);
    for (key, value) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.provider.name", "azure.ai.openai"),
        ("http.response.status_code", "200"),
        ("spillway.app_id", "app-a"),
        ("spillway.pool", "chat"),
        ("spillway.backend", "paygo"),
        ("spillway.request_id", "traced-1"),
    ] {
        assert_eq!(
            attrs.get(key).map(String::as_str),
            Some(value),
            "{key}: {attrs:?}"
        );
    }
    let usage = &reply["usage"];
    assert_eq!(
        attrs["gen_ai.usage.input_tokens"],
        usage["prompt_tokens"].to_string()
    );
    assert_eq!(
        attrs["gen_ai.usage.output_tokens"],
        usage["completion_tokens"].to_string()
    );
    assert!(attrs.contains_key("gen_ai.response.model"), "{attrs:?}");
    assert!(server.end_time_unix_nano > server.start_time_unix_nano);

    let clients = by_kind(&spans, SpanKind::Client);
    assert_eq!(clients.len(), 2, "one client span per attempt: {spans:#?}");
    for (backend, status) in [("ptu", "429"), ("paygo", "200")] {
        let span = clients
            .iter()
            .find(|s| attributes(s)["spillway.backend"] == backend)
            .unwrap_or_else(|| panic!("an attempt span for {backend}: {clients:#?}"));
        assert_eq!(
            span.parent_span_id, server.span_id,
            "a child of the server span"
        );
        assert_eq!(span.name, "chat gpt-4o");
        let attrs = attributes(span);
        assert_eq!(attrs["http.response.status_code"], status);
        assert_eq!(attrs["server.address"], "127.0.0.1");
        assert!(attrs["server.port"].parse::<u16>().is_ok(), "{attrs:?}");
        assert_eq!(
            attrs.get("error.type").map(String::as_str),
            (status == "429").then_some("429")
        );
        let (trace, span_id, flags) =
            received_traceparent(&ledger_entry(&sim, backend, "traced-1").await);
        assert_eq!(trace, CLIENT_TRACE, "{backend} got the client's trace");
        assert_eq!(
            span_id,
            hex(&span.span_id),
            "{backend} got its attempt's span id"
        );
        assert_eq!(flags, "01");
    }
    assert!(
        clients[0].start_time_unix_nano <= clients[1].start_time_unix_nano,
        "attempts in order"
    );

    let traces = receiver.traces();
    assert!(
        !traces.bytes_contain(b"zq7x"),
        "the prompt is never exported"
    );
    let completion = reply["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default();
    assert!(
        completion.len() >= 8,
        "the simulator wrote a completion: {reply}"
    );
    assert!(
        !traces.bytes_contain(completion.as_bytes()),
        "the completion is never exported"
    );
    assert_eq!(
        traces.resource().get("service.name").map(String::as_str),
        Some("spillway")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_traceparent_starts_a_sampled_trace() {
    let (sim, receiver, gw) = start().await;
    chat(&gw, "untraced-1", None).await;
    let entry = ledger_entry(&sim, "ptu", "untraced-1").await;
    let (trace, span_id, flags) = received_traceparent(&entry);
    assert_eq!(flags, "01", "new traces are sampled");
    let trace_id = hex_bytes(&trace);
    wait_for("two spans of the new trace", || {
        receiver.traces().trace(&trace_id).len() >= 2
    })
    .await;
    let spans = receiver.traces().trace(&trace_id);
    let server = by_kind(&spans, SpanKind::Server);
    assert_eq!(server.len(), 1, "{spans:#?}");
    assert!(server[0].parent_span_id.is_empty(), "a root span");
    let clients = by_kind(&spans, SpanKind::Client);
    assert_eq!(clients.len(), 1, "{spans:#?}");
    assert_eq!(clients[0].parent_span_id, server[0].span_id);
    assert_eq!(
        hex(&clients[0].span_id),
        span_id,
        "the backend got the attempt's span id"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsampled_client_trace_is_propagated_but_not_exported() {
    let (sim, receiver, gw) = start().await;
    let unsampled = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00";
    chat(&gw, "unsampled-1", Some(unsampled)).await;
    chat(&gw, "sampled-after", None).await;
    let (trace, _, _) = received_traceparent(&ledger_entry(&sim, "ptu", "sampled-after").await);
    let sampled = hex_bytes(&trace);
    // Spans leave in request order, so once the later request's spans arrived, the earlier
    // one's would have too.
    wait_for("the later request's spans", || {
        receiver.traces().trace(&sampled).len() >= 2
    })
    .await;
    let (trace, _, flags) = received_traceparent(&ledger_entry(&sim, "ptu", "unsampled-1").await);
    assert_eq!(trace, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(flags, "00", "the client's decision is kept");
    assert!(receiver.traces().trace(&hex_bytes(&trace)).is_empty());
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// `spillway_telemetry_spans_total` by result, from `/metrics`.
async fn span_counts(gw: &RunningGateway) -> (f64, f64, f64) {
    let prom = scrape(&gw.admin).await;
    let count = |result: &str| -> f64 {
        prom.iter()
            .filter(|s| {
                s.name == "spillway_telemetry_spans_total"
                    && s.labels["spillway_export_result"] == result
            })
            .map(|s| s.value)
            .sum()
    };
    (count("success"), count("failure"), count("dropped"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_never_answers_costs_requests_nothing() {
    let sim = Sim::start(SIM).await;
    let hole = BlackHole::start().await;
    let gw = RunningGateway::start(
        &manifests(sim.url("ptu"), sim.url("paygo"), ""),
        &[],
        &[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                &format!("{}/v1/traces", hole.url),
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "8"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4"),
        ],
    )
    .await;
    for i in 0..60 {
        let started = Instant::now();
        chat(&gw, &format!("fast-{i}"), None).await;
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "call {i} took {took:?}");
    }
    let mut counts = span_counts(&gw).await;
    for _ in 0..100 {
        if counts.1 >= 4.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        counts = span_counts(&gw).await;
    }
    let (exported, failed, dropped) = counts;
    assert_eq!(exported, 0.0);
    assert!(
        failed >= 4.0,
        "exports to the silent collector fail: {counts:?}"
    );
    assert!(
        dropped > 0.0,
        "a full queue drops spans, counted: {counts:?}"
    );
    assert!(
        failed + dropped <= 120.0,
        "two spans per request at most: {counts:?}"
    );
    assert!(
        hole.accepted.load(Ordering::SeqCst) >= 2,
        "the collector was tried"
    );
    let max_open = hole.max_open.load(Ordering::SeqCst);
    assert!(
        max_open <= 2,
        "exports do not pile up connections: {max_open}"
    );
}
