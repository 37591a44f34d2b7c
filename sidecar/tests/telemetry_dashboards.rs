//! The Grafana dashboards in `charts/spillway/dashboards/` only query what the gateway
//! really emits: every panel's PromQL is parsed with a PromQL parser, and each metric name
//! and each label it filters or groups on must appear in a real gateway's `/metrics` after
//! real traffic (JSON and streams, spillover with a breaker trip, estimated usage, a refused
//! request, a configured quota).
//!
//! `PENDING` lists the metrics that only appear once the limiter reports quota levels
//! (`Telemetry::set_quota_source`); until then they are checked against what the telemetry
//! library renders when given a quota source. Remove an entry once the real gateway emits it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod telemetry_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use common::Sim;
use serde_json::{Value, json};
use spillway_sidecar::proxy::Gateway;
use spillway_sidecar::subscribe::file::{LocalSecrets, load_text};
use spillway_sidecar::telemetry::{QuotaLevel, QuotaSource, Telemetry, TelemetrySettings};
use spillway_sidecar::usage::UsageSink;
use telemetry_support::gateway::RunningGateway;
use telemetry_support::promql::{panel_queries, uses, variable_label_values};
use telemetry_support::stack::{SIM, call, manifests};
use telemetry_support::{parse_prometheus, scrape};

/// Metrics the gateway emits only once the limiter is wired in.
const PENDING: &[&str] = &["spillway_quota_remaining_tokens"];

const QUOTA: &str = "---
apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: team-a}
spec:
  appId: app-a
  tokensPerMinute: 100000
  quotas:
    - {period: Monthly, tokens: 5000000}
";

/// Metric sample name → every label name seen on it.
type Emitted = BTreeMap<String, BTreeSet<String>>;

fn emitted(samples: &[telemetry_support::PromSample]) -> Emitted {
    let mut out = Emitted::new();
    for sample in samples {
        out.entry(sample.name.clone())
            .or_default()
            .extend(sample.labels.keys().cloned());
    }
    out
}

async fn real_traffic(gw: &RunningGateway, sim: &Sim) {
    for (i, stream) in [false, true].into_iter().enumerate() {
        assert_eq!(
            call(gw, "app-a", &format!("a-{i}"), "gpt-4o", stream).await,
            200
        );
    }
    sim.set_faults(
        "ptu",
        json!({"mode": "status", "status": 429, "count": 1, "headers": {"retry-after-ms": "600000"}}),
    )
    .await;
    for (i, (app, stream)) in [("app-a", false), ("app-b", true), ("app-b", false)]
        .into_iter()
        .enumerate()
    {
        assert_eq!(
            call(gw, app, &format!("s-{i}"), "gpt-4o", stream).await,
            200
        );
    }
    assert_eq!(
        call(gw, "app-b", "unknown", "no-such-model", false).await,
        404
    );
}

/// What the telemetry library renders for the pending metrics, given a quota source.
fn rendered_with_a_quota_source() -> Emitted {
    #[derive(Debug)]
    struct Limiter;
    impl QuotaSource for Limiter {
        fn quota_levels(&self, out: &mut Vec<QuotaLevel>) {
            out.push(QuotaLevel {
                app_id: "app-a".into(),
                quota: "team-a".into(),
                window: "minute",
                remaining_tokens: 1,
            });
        }
    }
    let gateway = Gateway::new(UsageSink::new(4));
    let snapshot = load_text(
        &manifests("http://127.0.0.1:1", "http://127.0.0.1:2", QUOTA),
        &LocalSecrets::default(),
    )
    .expect("valid manifests");
    gateway.apply(Arc::new(snapshot));
    let telemetry = Telemetry::start(&TelemetrySettings::default(), gateway).expect("telemetry");
    telemetry.set_quota_source(Arc::new(Limiter));
    // The app gets its label by sending traffic; a record does that.
    let mut record = spillway_sidecar::usage::UsageRecord {
        request_id: "r".into(),
        app_id: "app-a".into(),
        pool: "chat".into(),
        backend: None,
        model: "gpt-4o".into(),
        response_model: None,
        operation: None,
        stream: false,
        usage: spillway_sidecar::usage::Usage::default(),
        estimated: false,
        status: 401,
        attempts: 0,
        duration: std::time::Duration::ZERO,
        time_to_first_token: None,
        client_disconnected: false,
        error_type: None,
        upstream: Vec::new(),
        trace: None,
    };
    record.error_type = Some("invalid_api_key".into());
    telemetry.record(&record);
    emitted(&parse_prometheus(&telemetry.prometheus()))
}

fn dashboards() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/spillway/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).unwrap();
            let value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
            out.push((path.display().to_string(), value));
        }
    }
    assert!(!out.is_empty(), "no dashboards in {}", dir.display());
    out
}

/// Checks one dashboard's queries and variables against `labels_of` (metric → its label
/// names; panics for a metric that is not emitted). Returns the metrics it reads.
fn check_dashboard<'a>(
    file: &str,
    dashboard: &Value,
    labels_of: &dyn Fn(&str) -> &'a BTreeSet<String>,
) -> BTreeSet<String> {
    let mut used = BTreeSet::new();
    let queries = panel_queries(dashboard);
    assert!(queries.len() >= 10, "{file}: {} queries", queries.len());
    for (panel, expr) in queries {
        let found = uses(&expr);
        assert!(
            !found.selectors.is_empty(),
            "{file} / {panel}: no metric in {expr}"
        );
        for selector in &found.selectors {
            let labels = labels_of(&selector.metric);
            for label in &selector.matcher_labels {
                assert!(
                    labels.contains(label),
                    "{file} / {panel}: {} has no label {label} (it has {labels:?})",
                    selector.metric
                );
            }
            used.insert(selector.metric.clone());
        }
        for grouping in &found.groupings {
            let available: BTreeSet<&String> = grouping
                .selectors
                .iter()
                .flat_map(|s| labels_of(&s.metric))
                .collect();
            for label in &grouping.labels {
                assert!(
                    available.contains(label),
                    "{file} / {panel}: grouping by {label}, which none of {:?} has",
                    grouping.selectors
                );
            }
        }
    }
    for (metric, label) in variable_label_values(dashboard) {
        assert!(
            labels_of(&metric).contains(&label),
            "{file}: variable {metric}/{label}"
        );
    }
    used
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_uses_only_emitted_metrics_and_labels() {
    let sim = Sim::start(SIM).await;
    let gw = RunningGateway::start(
        &manifests(sim.url("ptu"), sim.url("paygo"), QUOTA),
        &[],
        &[],
    )
    .await;
    real_traffic(&gw, &sim).await;
    let real = emitted(&scrape(&gw.admin).await);
    let library = rendered_with_a_quota_source();
    let labels_of = |metric: &str| -> &BTreeSet<String> {
        if let Some(labels) = real.get(metric) {
            return labels;
        }
        assert!(
            PENDING.contains(&metric),
            "{metric} is not in the gateway's /metrics after real traffic; emitted: {:?}",
            real.keys().collect::<Vec<_>>()
        );
        library
            .get(metric)
            .unwrap_or_else(|| panic!("pending {metric} is not rendered by the library either"))
    };

    let mut used = BTreeSet::new();
    for (file, dashboard) in dashboards() {
        used.extend(check_dashboard(&file, &dashboard, &labels_of));
    }
    // The panels the dashboards promise: chargeback, spillover and breaker trips, refusals,
    // latency and TTFT, quota burn-down.
    for metric in [
        "spillway_tokens_total",
        "spillway_requests_total",
        "spillway_breaker_transitions_total",
        "spillway_breaker_state",
        "gen_ai_server_request_duration_seconds_bucket",
        "gen_ai_server_time_to_first_token_seconds_bucket",
        "spillway_quota_remaining_tokens",
        "spillway_quota_limit_tokens",
    ] {
        assert!(used.contains(metric), "no panel shows {metric}");
    }
}

#[test]
fn grafana_variables_become_valid_promql() {
    use telemetry_support::promql::substitute_grafana_variables as sub;
    assert_eq!(
        sub("rate(x{a=~\"$app\", b=~\"${pool}\"}[$__rate_interval])"),
        "rate(x{a=~\".*\", b=~\".*\"}[5m])"
    );
    assert_eq!(sub("increase(x[$__range])"), "increase(x[1h])");
    let found = uses("sum by (le, b) (rate(x_bucket{a=\"1\"}[$__rate_interval])) / on (b) y");
    assert_eq!(found.selectors.len(), 2);
    assert_eq!(found.groupings.len(), 2);
    assert!(found.selectors[0].matcher_labels.contains("a"));
}
