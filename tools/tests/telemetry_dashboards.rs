//! The Grafana dashboards in `charts/spillway/dashboards/` only query what the gateway
//! really emits: every panel's PromQL is parsed with a PromQL parser, and each metric name
//! and each label it filters or groups on must appear in a real gateway's `/metrics` after
//! real traffic (JSON and streams, spillover with a breaker trip, estimated usage, a refused
//! request, calls under a `TokenQuota` with a money budget — so the limiter's quota and budget
//! levels are there too — on a priced pool, so spend is there).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod telemetry_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use common::Sim;
use serde_json::{Value, json};
use telemetry_support::gateway::RunningGateway;
use telemetry_support::promql::{panel_queries, uses, variable_label_values};
use telemetry_support::scrape;
use telemetry_support::stack::{SIM, call, manifests};

const QUOTA: &str = "---
apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: team-a}
spec:
  appId: app-a
  tokensPerMinute: 100000
  quotas:
    - {period: Monthly, tokens: 5000000}
  budgets:
    - {period: Daily, amount: '100', currency: USD}
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

/// The limiter reports app-a's `team-a` windows: the minute bucket (refilled continuously)
/// and the month, which holds the tokens of app-a's calls.
fn assert_quota_levels(samples: &[telemetry_support::PromSample]) {
    let level = |window: &str| -> f64 {
        samples
            .iter()
            .find(|s| {
                s.name == "spillway_quota_remaining_tokens"
                    && s.labels.get("spillway_app_id").map(String::as_str) == Some("app-a")
                    && s.labels.get("spillway_quota").map(String::as_str) == Some("team-a")
                    && s.labels.get("spillway_quota_window").map(String::as_str) == Some(window)
            })
            .unwrap_or_else(|| panic!("no {window} level for app-a / team-a"))
            .value
    };
    let minute = level("minute");
    assert!((0.0..=100_000.0).contains(&minute), "{minute}");
    let month = level("month");
    assert!(
        (4_990_000.0..5_000_000.0).contains(&month),
        "app-a's calls are counted in its month: {month}"
    );
    assert!(
        !samples
            .iter()
            .any(|s| s.name == "spillway_quota_remaining_tokens"
                && s.labels.get("spillway_app_id").map(String::as_str) == Some("app-b")),
        "app-b has no quota"
    );
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
    // The namespace label of chargeback per team (operator mode sets it from the snapshot).
    let gw = RunningGateway::start(
        &manifests(sim.url("ptu"), sim.url("paygo"), QUOTA),
        &[],
        &[("SPILLWAY_NAMESPACE", "team-a")],
    )
    .await;
    real_traffic(&gw, &sim).await;
    // Usage records reach the metrics through a queue: wait (bounded) until the last
    // call's effects — the breaker transition and the 404 — are in.
    let mut samples = scrape(&gw.admin).await;
    for _ in 0..50 {
        let has = |name: &str| samples.iter().any(|s| s.name == name);
        let refused = samples.iter().any(|s| {
            s.name == "spillway_requests_total"
                && s.labels
                    .get("http_response_status_code")
                    .map(String::as_str)
                    == Some("404")
        });
        if has("spillway_breaker_transitions_total") && refused {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        samples = scrape(&gw.admin).await;
    }
    assert_quota_levels(&samples);
    let real = emitted(&samples);
    let labels_of = |metric: &str| -> &BTreeSet<String> {
        real.get(metric).unwrap_or_else(|| {
            panic!(
                "{metric} is not in the gateway's /metrics after real traffic; emitted: {:?}",
                real.keys().collect::<Vec<_>>()
            )
        })
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
        "spillway_cost_total",
        "spillway_budget_remaining",
        "spillway_provisioned_weight_total",
        "spillway_provisioned_cost_per_hour",
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
