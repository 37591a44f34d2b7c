//! Per-request OTLP log records and trace sampling of a real `spillway run` in front of
//! `spillway simulate`, received by an OTLP/HTTP receiver that decodes the real protobuf
//! `ExportLogsServiceRequest`s: one record per request equal to the simulator's ledger, with
//! the trace the backend received; an unreachable logs endpoint costs requests nothing;
//! `OTEL_TRACES_SAMPLER` ratio 0 exports no span while `traceparent` still reaches the
//! backend; and the spans and record of a request that ends after SIGTERM still arrive.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod telemetry_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::Sim;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use telemetry_support::collectors::BlackHole;
use telemetry_support::gateway::RunningGateway;
use telemetry_support::logs::attributes;
use telemetry_support::otlp_http::OtlpReceiver;
use telemetry_support::scrape;
use telemetry_support::stack::{SIM, call, manifests, wait_for};
use telemetry_support::traces::hex;

/// Every ledger entry of `backend`.
async fn ledger(sim: &Sim, backend: &str) -> Vec<Value> {
    sim.entries(backend).await
}

/// The one successful ledger entry of request `id` on `backend`.
fn billed<'a>(entries: &'a [Value], id: &str) -> &'a Value {
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| e["requestId"] == id && e["status"] == 200)
        .collect();
    assert_eq!(found.len(), 1, "{id} billed once: {entries:?}");
    found[0]
}

/// The (trace id, flags) of the `traceparent` a backend received.
fn traceparent(entry: &Value) -> (String, String) {
    let tp = entry["traceparent"].as_str().expect("a traceparent");
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    (parts[1].to_owned(), parts[3].to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_records_equal_the_simulators_ledger_per_request() {
    let sim = Sim::start(SIM).await;
    let receiver = OtlpReceiver::start().await;
    let gw = RunningGateway::start(
        &manifests(sim.url("ptu"), sim.url("paygo"), ""),
        &["--otlp-endpoint", &receiver.url],
        &[("OTEL_TRACES_EXPORTER", "none")],
    )
    .await;
    // Mixed traffic from two apps; the last call is spilled to paygo by one 429.
    let mut sent = Vec::new();
    for i in 0..8 {
        let (app, stream) = (if i % 3 == 0 { "app-b" } else { "app-a" }, i % 2 == 1);
        let id = format!("log-{i}");
        assert_eq!(call(&gw, app, &id, "gpt-4o", stream).await, 200);
        sent.push((id, app, stream, "ptu"));
    }
    sim.set_faults(
        "ptu",
        json!({"mode": "status", "status": 429, "count": 1, "headers": {"retry-after-ms": "100"}}),
    )
    .await;
    assert_eq!(
        call(&gw, "app-a", "log-spilled", "gpt-4o", false).await,
        200
    );
    sent.push(("log-spilled".to_owned(), "app-a", false, "paygo"));
    wait_for("a log record per request", || {
        receiver.logs().records().len() >= sent.len()
    })
    .await;
    assert_eq!(receiver.logs().records().len(), sent.len(), "one each");
    let (ptu, paygo) = (ledger(&sim, "ptu").await, ledger(&sim, "paygo").await);
    for (id, app, stream, backend) in &sent {
        let log = receiver.logs().by_request(id).expect("logged");
        let attrs = attributes(&log);
        let entry = billed(if *backend == "ptu" { &ptu } else { &paygo }, id);
        let expect = [
            ("spillway.app_id", (*app).to_owned()),
            ("spillway.pool", "chat".to_owned()),
            ("spillway.backend", (*backend).to_owned()),
            ("gen_ai.request.model", "gpt-4o".to_owned()),
            ("spillway.stream", stream.to_string()),
            ("spillway.token.estimated", "false".to_owned()),
            ("http.response.status_code", "200".to_owned()),
            (
                "gen_ai.usage.input_tokens",
                entry["promptTokens"].to_string(),
            ),
            (
                "gen_ai.usage.output_tokens",
                entry["completionTokens"].to_string(),
            ),
        ];
        for (key, value) in expect {
            assert_eq!(attrs.get(key), Some(&value), "{id} {key}: {attrs:?}");
        }
        assert!(attrs["spillway.duration_ms"].parse::<u64>().is_ok());
        assert_eq!(
            attrs.contains_key("spillway.time_to_first_token_ms"),
            *stream
        );
        assert_eq!(log.event_name, "spillway.request");
        assert!(log.time_unix_nano > 0);
        let (trace_id, _) = traceparent(entry);
        assert_eq!(hex(&log.trace_id), trace_id, "{id}: the backend's trace");
        assert_eq!(log.span_id.len(), 8, "{id}: the server span id");
    }
    let spilled = attributes(&receiver.logs().by_request("log-spilled").unwrap());
    assert_eq!(spilled["spillway.attempts"], "2");
    assert_eq!(spilled["spillway.outcome"], "spilled_over");
    assert_eq!(
        receiver
            .logs()
            .resource()
            .get("service.name")
            .map(String::as_str),
        Some("spillway")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_logs_endpoint_costs_requests_nothing() {
    let sim = Sim::start(SIM).await;
    let hole = BlackHole::start().await;
    let gw = RunningGateway::start(
        &manifests(sim.url("ptu"), sim.url("paygo"), ""),
        &[],
        &[
            (
                "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT",
                &format!("{}/v1/logs", hole.url),
            ),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "4"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "2"),
        ],
    )
    .await;
    for i in 0..60 {
        let started = Instant::now();
        assert_eq!(
            call(&gw, "app-a", &format!("u-{i}"), "gpt-4o", i % 2 == 0).await,
            200
        );
        let took = started.elapsed();
        assert!(took < Duration::from_secs(2), "call {i} took {took:?}");
    }
    let mut counts = record_counts(&gw).await;
    for _ in 0..100 {
        if counts.1 >= 2.0 && counts.2 > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        counts = record_counts(&gw).await;
    }
    let (exported, failed, dropped) = counts;
    assert_eq!(exported, 0.0, "{counts:?}");
    assert!(
        failed >= 2.0,
        "exports to the silent collector fail: {counts:?}"
    );
    assert!(
        dropped > 0.0,
        "a full queue drops records, counted: {counts:?}"
    );
    assert!(
        failed + dropped <= 60.0,
        "one record per request: {counts:?}"
    );
    assert!(hole.accepted.load(Ordering::SeqCst) >= 1, "tried");
    let max_open = hole.max_open.load(Ordering::SeqCst);
    assert!(
        max_open <= 2,
        "exports do not pile up connections: {max_open}"
    );
}

/// `spillway.telemetry.log_records` by result: (success, failure, dropped).
async fn record_counts(gw: &RunningGateway) -> (f64, f64, f64) {
    let prom = scrape(&gw.admin).await;
    let count = |result: &str| {
        prom.iter()
            .filter(|s| {
                s.name == "spillway_telemetry_log_records_total"
                    && s.labels.get("spillway_export_result").map(String::as_str) == Some(result)
            })
            .map(|s| s.value)
            .sum()
    };
    (count("success"), count("failure"), count("dropped"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratio_zero_exports_no_span_but_still_propagates_the_trace() {
    let sim = Sim::start(SIM).await;
    let receiver = OtlpReceiver::start().await;
    let gw = RunningGateway::start(
        &manifests(sim.url("ptu"), sim.url("paygo"), ""),
        &["--otlp-endpoint", &receiver.url],
        &[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0"),
        ],
    )
    .await;
    for i in 0..4 {
        assert_eq!(
            call(&gw, "app-a", &format!("s-{i}"), "gpt-4o", i == 1).await,
            200
        );
    }
    // A client's sampled trace is still respected (parent-based); sent last, so its spans
    // follow any other in the export queue.
    let client_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let sampled_parent = format!("00-{client_trace}-00f067aa0ba902b7-01");
    let reply = common::http(
        http::Method::POST,
        &format!("{}/v1/chat/completions", gw.url),
        &[
            ("content-type", "application/json"),
            ("x-app-id", "app-a"),
            ("x-request-id", "s-client"),
            ("traceparent", &sampled_parent),
        ],
        json!({"model": "gpt-4o", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
            .to_string(),
    )
    .await;
    assert_eq!(reply.status, 200);
    wait_for("the client's sampled spans and every log record", || {
        receiver.traces().spans().len() >= 2 && receiver.logs().records().len() >= 5
    })
    .await;
    let spans = receiver.traces().spans();
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) == client_trace),
        "only the client's sampled trace is exported: {spans:#?}"
    );
    assert_eq!(spans.len(), 2, "server + client span: {spans:#?}");
    let entries = ledger(&sim, "ptu").await;
    for i in 0..4 {
        let id = format!("s-{i}");
        let (trace_id, flags) = traceparent(billed(&entries, &id));
        assert_eq!(flags, "00", "{id}: the backend learns it is not sampled");
        let log = receiver.logs().by_request(&id).expect("logged");
        assert_eq!(
            hex(&log.trace_id),
            trace_id,
            "{id}: the record names the trace"
        );
        assert_eq!(log.flags & 1, 0, "{id}: the record says not sampled");
    }
    let (trace_id, flags) = traceparent(billed(&entries, "s-client"));
    assert_eq!((trace_id.as_str(), flags.as_str()), (client_trace, "01"));
}

/// A backend whose streams last about a second (16 tokens at 16 per second).
const SLOW_SIM: &str = "backends:\n  - name: ptu\n    tokensPerSecond: 16\n  - name: paygo\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_and_the_log_record_of_a_request_ending_after_sigterm_arrive() {
    let sim = Sim::start(SLOW_SIM).await;
    let receiver = OtlpReceiver::start().await;
    let mut gw = RunningGateway::start(
        &manifests(sim.url("ptu"), sim.url("paygo"), ""),
        &["--otlp-endpoint", &receiver.url, "--shutdown-grace", "30s"],
        &[],
    )
    .await;
    let body = json!({
        "model": "gpt-4o", "stream": true, "max_tokens": 16,
        "messages": [{"role": "user", "content": "Tell me about spillways."}],
    });
    let request = http::Request::post(format!("{}/v1/chat/completions", gw.url))
        .header("content-type", "application/json")
        .header("x-app-id", "app-a")
        .header("x-request-id", "last-one")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http()
            .request(request)
            .await
            .expect("response headers");
    assert_eq!(response.status(), 200);
    // The stream is in flight: SIGTERM now; the gateway lets it finish, then exits.
    let reading = tokio::spawn(async move { response.into_body().collect().await });
    assert!(gw.terminate().await, "a graceful exit");
    let text = reading.await.unwrap().expect("the whole stream").to_bytes();
    assert!(
        std::str::from_utf8(&text).unwrap().contains("data: [DONE]"),
        "the stream ended normally"
    );
    // The process is gone: whatever it sent has arrived.
    let log = receiver
        .logs()
        .by_request("last-one")
        .expect("its log record arrived");
    assert_eq!(attributes(&log)["http.response.status_code"], "200");
    let spans = receiver.traces().trace(&log.trace_id);
    assert_eq!(
        spans.len(),
        2,
        "its server and client spans arrived: {spans:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_records_are_exported_as_otlp_logs_redacted() {
    let sim = Sim::start(SIM).await;
    let receiver = OtlpReceiver::start().await;
    let gw = RunningGateway::start(
        &manifests(
            sim.url("ptu"),
            sim.url("paygo"),
            "  audit: {enabled: true, apps: [app-a], redaction: {patterns: [{name: topic, regex: '(?i)spillways'}]}}\n",
        ),
        &["--otlp-endpoint", &receiver.url],
        &[("OTEL_TRACES_EXPORTER", "none")],
    )
    .await;
    assert_eq!(call(&gw, "app-a", "audit-a", "gpt-4o", true).await, 200);
    assert_eq!(call(&gw, "app-b", "audit-b", "gpt-4o", false).await, 200);
    let audit =
        |r: &opentelemetry_proto::tonic::logs::v1::LogRecord| r.event_name == "spillway.audit";
    wait_for("the audit record and both request records", || {
        let records = receiver.logs().records();
        records.iter().filter(|r| audit(r)).count() >= 1
            && records.iter().filter(|r| !audit(r)).count() >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let records = receiver.logs().records();
    let audits: Vec<_> = records.iter().filter(|r| audit(r)).collect();
    assert_eq!(audits.len(), 1, "only app-a is audited");
    let attrs = attributes(audits[0]);
    assert_eq!(attrs["spillway.app_id"], "app-a");
    assert_eq!(attrs["spillway.request_id"], "audit-a");
    let request = &attrs["spillway.audit.request"];
    assert!(request.contains("[REDACTED:topic]"), "{request}");
    assert!(!request.to_lowercase().contains("spillways"), "{request}");
    assert!(!attrs["spillway.audit.completion"].is_empty());
    let entry = billed(&ledger(&sim, "ptu").await, "audit-a").clone();
    assert_eq!(
        attrs["gen_ai.usage.output_tokens"],
        entry["completionTokens"].to_string()
    );
}
