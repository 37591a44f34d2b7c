//! The OTLP exporter of a real `spillway run`: over gRPC it sends the same counts (and the
//! spans and log records), and a
//! collector that never answers (HTTP or gRPC) or does not exist never slows a request, never
//! piles up connections and never grows the gateway.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod telemetry_support;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::Sim;
use telemetry_support::collectors::{BlackHole, closed_port};
use telemetry_support::gateway::RunningGateway;
use telemetry_support::scrape;
use telemetry_support::stack::{SIM, call, manifests};

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
        &manifests(sim.url("ptu"), sim.url("paygo"), ""),
        &[
            "--otlp-endpoint",
            &hole.url,
            "--otlp-protocol",
            protocol,
            "--otlp-export-interval",
            "200ms",
        ],
        // Metrics alone: traces and logs to a silent collector are tested in
        // `telemetry_traces.rs` and `telemetry_logs.rs`.
        &[
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "300"),
            ("OTEL_TRACES_EXPORTER", "none"),
            ("OTEL_LOGS_EXPORTER", "none"),
        ],
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
        &manifests(sim.url("ptu"), sim.url("paygo"), ""),
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

/// Over OTLP/gRPC.
#[cfg(feature = "otlp-grpc")]
mod grpc {
    use common::http;
    use http::Method;
    use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
    use telemetry_support::grpc::GrpcReceiver;
    use telemetry_support::logs;
    use telemetry_support::stack::{f, wait_for};
    use telemetry_support::sum_where;

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn otlp_grpc_exports_the_same_token_counts() {
        let sim = Sim::start(SIM).await;
        let grpc = GrpcReceiver::start().await;
        let gw = RunningGateway::start(
            &manifests(sim.url("ptu"), sim.url("paygo"), ""),
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
        // Spans and log records go over the same gRPC endpoint.
        wait_for("three server spans and three log records over gRPC", || {
            let servers = grpc
                .spans()
                .iter()
                .filter(|s| s.kind == SpanKind::Server as i32)
                .count();
            servers == 3 && grpc.logs().records().len() == 3
        })
        .await;
        for i in 0..3 {
            let log = grpc.logs().by_request(&format!("g-{i}")).expect("logged");
            let attrs = logs::attributes(&log);
            assert_eq!(attrs["spillway.app_id"], "app-g");
            assert_eq!(attrs["http.response.status_code"], "200");
            assert!(
                grpc.spans().iter().any(|s| s.trace_id == log.trace_id
                    && s.span_id == log.span_id
                    && s.kind == SpanKind::Server as i32),
                "the log record of g-{i} names its server span"
            );
        }
        let paths = grpc.paths();
        for service in [
            "metrics.v1.MetricsService",
            "trace.v1.TraceService",
            "logs.v1.LogsService",
        ] {
            let path = format!("/opentelemetry.proto.collector.{service}/Export");
            assert!(paths.contains(&path), "{path} called: {paths:?}");
        }
        assert!(
            paths
                .iter()
                .all(|p| p.starts_with("/opentelemetry.proto.collector.")),
            "{paths:?}"
        );
    }
}
