use crate::proxy::Gateway;
use crate::usage::ErrorType;
use std::collections::BTreeMap;
use std::time::Duration;

use prom_text_format_parser::Scrape;

use super::*;
use crate::subscribe::file::{LocalSecrets, load_text};
use crate::usage::record::UpstreamAttempt;
use crate::usage::{GatewayErrorKind, Usage, UsageSink};

mod genai_latest;
mod spend;

const MANIFESTS: &str = "apiVersion: spillway.dev/v1alpha1
kind: AIBackendPool
metadata: {name: chat}
spec:
  models: [gpt-4o]
  backends:
    - name: ptu
      url: https://ptu.openai.azure.com
    - name: paygo
      type: OpenAI
      url: http://127.0.0.1:8081
      priority: 2
---
apiVersion: spillway.dev/v1alpha1
kind: TokenQuota
metadata: {name: team-a}
spec:
  appId: app-a
  tokensPerMinute: 1000
  quotas:
    - {period: Daily, tokens: 50000}
";

fn telemetry(max_apps: usize) -> Telemetry {
    telemetry_with(&TelemetrySettings {
        max_apps,
        ..TelemetrySettings::default()
    })
}

fn telemetry_with(settings: &TelemetrySettings) -> Telemetry {
    let gateway = Gateway::new(UsageSink::new(16));
    let snapshot = load_text(MANIFESTS, &LocalSecrets::default()).expect("valid manifests");
    gateway.apply(Arc::new(snapshot));
    Telemetry::start(settings, Arc::new(gateway)).expect("no OTLP, nothing to fail")
}

fn attempt(backend: &str, status: Option<u16>) -> UpstreamAttempt {
    UpstreamAttempt {
        backend: backend.into(),
        started: Duration::from_millis(10),
        status,
        failure: status.is_none().then_some("connection_failure"),
        breaker: None,
        trace: None,
    }
}

fn served(app: &str, backend: &str, prompt: u64, completion: u64) -> UsageRecord {
    UsageRecord {
        pool: "chat".into(),
        backend: Some(backend.into()),
        response_model: Some("gpt-4o-2024-08-06".into()),
        usage: Usage::totals(prompt, completion),
        duration: Duration::from_millis(510),
        upstream: vec![attempt(backend, Some(200))],
        ..UsageRecord::served(app)
    }
}

fn refused(app: &str, status: u16, code: &'static str, kind: GatewayErrorKind) -> UsageRecord {
    UsageRecord {
        pool: String::new(),
        backend: None,
        usage: Usage::default(),
        status,
        attempts: 0,
        error_type: Some(ErrorType::gateway(code, kind)),
        upstream: Vec::new(),
        trace: None,
        response_model: None,
        ..served(app, "ptu", 0, 0)
    }
}

/// Every sample of the text, parsed by a Prometheus text parser.
fn samples(text: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let scrape = Scrape::parse(text).unwrap_or_else(|e| panic!("not Prometheus text: {e:?}"));
    let mut out = Vec::new();
    for metric in scrape.metrics {
        for sample in metric.samples {
            let name = match sample.value.value_type {
                prom_text_format_parser::ValueType::Sum => format!("{}_sum", metric.name),
                prom_text_format_parser::ValueType::Count => format!("{}_count", metric.name),
                prom_text_format_parser::ValueType::Sample
                    if metric.kind == prom_text_format_parser::Type::Histogram =>
                {
                    format!("{}_bucket", metric.name)
                }
                prom_text_format_parser::ValueType::Sample => metric.name.clone(),
            };
            let labels = sample
                .labels
                .iter()
                .map(|l| (l.key.clone(), l.value.clone()))
                .collect();
            out.push((name, labels, sample.value.value.as_f64()));
        }
    }
    out
}

/// The sum of the samples named `name` whose labels include `labels`.
fn value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    samples(text)
        .into_iter()
        .filter(|(n, l, _)| {
            n == name
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
        .sum()
}

#[test]
fn tokens_go_to_the_app_pool_backend_and_model_with_genai_attributes() {
    let t = telemetry(10);
    t.record(&served("app-a", "ptu", 100, 20));
    t.record(&served("app-a", "ptu", 50, 5));
    let mut estimated = served("app-b", "paygo", 30, 3);
    estimated.estimated = true;
    t.record(&estimated);
    let text = t.prometheus();

    let tokens = "spillway_tokens_total";
    let a = [("spillway_app_id", "app-a"), ("spillway_backend", "ptu")];
    assert_eq!(
        value(&text, tokens, &[a[0], a[1], ("gen_ai_token_type", "input")]),
        150.0
    );
    assert_eq!(
        value(
            &text,
            tokens,
            &[a[0], a[1], ("gen_ai_token_type", "output")]
        ),
        25.0
    );
    assert_eq!(
        value(
            &text,
            tokens,
            &[
                ("spillway_app_id", "app-b"),
                ("spillway_token_estimated", "true")
            ]
        ),
        33.0
    );
    assert_eq!(
        value(&text, tokens, &[("spillway_token_estimated", "false")]),
        175.0
    );

    let usage = "gen_ai_client_token_usage_sum";
    let azure = [
        ("gen_ai_provider_name", "azure.ai.openai"),
        ("server_address", "ptu.openai.azure.com"),
        ("server_port", "443"),
        ("gen_ai_operation_name", "chat"),
        ("gen_ai_request_model", "gpt-4o"),
        ("gen_ai_response_model", "gpt-4o-2024-08-06"),
        ("spillway_pool", "chat"),
        ("gen_ai_token_type", "input"),
    ];
    assert_eq!(value(&text, usage, &azure), 150.0);
    assert_eq!(value(&text, "gen_ai_client_token_usage_count", &azure), 2.0);
    assert_eq!(
        value(
            &text,
            usage,
            &[("gen_ai_provider_name", "openai"), ("server_port", "8081")]
        ),
        33.0
    );
}

#[test]
fn outcomes_tell_served_retried_spilled_and_refused_apart() {
    let t = telemetry(10);
    t.record(&served("app-a", "ptu", 1, 1));
    let mut retried = served("app-a", "ptu", 1, 1);
    retried.upstream.insert(0, attempt("ptu", Some(500)));
    t.record(&retried);
    let mut spilled = served("app-a", "paygo", 1, 1);
    spilled.upstream.insert(0, attempt("ptu", Some(429)));
    t.record(&spilled);
    t.record(&refused(
        "app-a",
        401,
        "invalid_api_key",
        GatewayErrorKind::Unauthenticated,
    ));
    t.record(&refused(
        "app-a",
        429,
        "rate_limit_exceeded",
        GatewayErrorKind::RateLimited,
    ));
    t.record(&refused(
        "app-a",
        429,
        "quota_exceeded",
        GatewayErrorKind::QuotaExhausted,
    ));
    t.record(&refused(
        "app-a",
        404,
        "model_not_found",
        GatewayErrorKind::Client,
    ));
    t.record(&refused(
        "app-a",
        502,
        "backend_unreachable",
        GatewayErrorKind::Backend,
    ));
    let text = t.prometheus();
    let requests = |outcome: &str| {
        value(
            &text,
            "spillway_requests_total",
            &[("spillway_outcome", outcome)],
        )
    };
    for outcome in [
        "served",
        "retried",
        "spilled_over",
        "unauthenticated",
        "rate_limited",
        "quota_exhausted",
        "client_error",
        "backend_error",
    ] {
        assert_eq!(requests(outcome), 1.0, "{outcome}");
    }
    // Failures say why in `error.type`; successes have none.
    for (outcome, error) in [
        ("quota_exhausted", "quota_exceeded"),
        ("backend_error", "backend_unreachable"),
        ("unauthenticated", "invalid_api_key"),
    ] {
        let labels = [("spillway_outcome", outcome), ("error_type", error)];
        assert_eq!(value(&text, "spillway_requests_total", &labels), 1.0);
    }
    assert!(
        !text
            .lines()
            .any(|l| l.starts_with("spillway_requests_total{")
                && l.contains("spillway_outcome=\"served\"")
                && l.contains("error_type")),
        "{text}"
    );
    assert_eq!(
        value(
            &text,
            "spillway_requests_total",
            &[("http_response_status_code", "429")]
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            "gen_ai_server_request_duration_seconds_count",
            &[("error_type", "quota_exceeded")]
        ),
        1.0
    );
}

#[test]
fn attempts_and_breaker_transitions_come_from_the_trail() {
    let t = telemetry(10);
    let mut record = served("app-a", "paygo", 1, 1);
    let mut tripped = attempt("ptu", Some(429));
    tripped.breaker = Some(["closed", "open"]);
    let mut timed_out = attempt("ptu", None);
    timed_out.failure = Some("timeout");
    record.upstream = vec![timed_out, tripped, attempt("paygo", Some(200))];
    t.record(&record);
    let text = t.prometheus();
    let attempts = |backend: &str, result: &str| {
        value(
            &text,
            "spillway_upstream_attempts_total",
            &[
                ("spillway_backend", backend),
                ("spillway_attempt_result", result),
            ],
        )
    };
    assert_eq!(attempts("ptu", "timeout"), 1.0);
    assert_eq!(attempts("ptu", "rate_limited"), 1.0);
    assert_eq!(attempts("paygo", "success"), 1.0);
    assert_eq!(
        value(
            &text,
            "spillway_breaker_transitions_total",
            &[
                ("spillway_backend", "ptu"),
                ("spillway_breaker_from", "closed"),
                ("spillway_breaker_to", "open")
            ]
        ),
        1.0
    );
}

#[test]
fn apps_beyond_the_limit_are_counted_as_other() {
    let t = telemetry(2);
    for app in ["a", "b", "c", "d"] {
        t.record(&served(app, "ptu", 10, 1));
    }
    let text = t.prometheus();
    let input = |app: &str| {
        value(
            &text,
            "spillway_tokens_total",
            &[("spillway_app_id", app), ("gen_ai_token_type", "input")],
        )
    };
    assert_eq!((input("a"), input("b"), input("other")), (10.0, 10.0, 20.0));
    assert_eq!(input("c"), 0.0);
}

#[test]
fn streams_get_time_to_first_token_and_time_per_output_token() {
    let t = telemetry(10);
    let mut stream = served("app-a", "ptu", 10, 11);
    stream.stream = true;
    stream.time_to_first_token = Some(Duration::from_millis(100));
    stream.duration = Duration::from_millis(1100);
    t.record(&stream);
    t.record(&served("app-a", "ptu", 10, 11));
    let text = t.prometheus();
    let ttft = "gen_ai_server_time_to_first_token_seconds";
    assert_eq!(value(&text, &format!("{ttft}_count"), &[]), 1.0);
    assert!((value(&text, &format!("{ttft}_sum"), &[]) - 0.1).abs() < 1e-9);
    // (1.1 s − 0.1 s) / (11 − 1) tokens
    let tpot = "gen_ai_server_time_per_output_token_seconds_sum";
    assert!((value(&text, tpot, &[]) - 0.1).abs() < 1e-9);
    // The served attempt started 10 ms in.
    let client = "gen_ai_client_operation_duration_seconds_sum";
    assert!((value(&text, client, &[]) - (1.09 + 0.5)).abs() < 1e-9);
}

#[test]
fn gauges_report_breakers_config_version_and_quotas() {
    #[derive(Debug)]
    struct Limiter;
    impl QuotaSource for Limiter {
        fn quota_levels(&self, out: &mut Vec<QuotaLevel>) {
            for app in ["app-a", "never-seen"] {
                out.push(QuotaLevel {
                    app_id: app.into(),
                    quota: "team-a".into(),
                    window: "minute",
                    remaining_tokens: 640,
                    currency: None,
                });
            }
        }
    }
    let t = telemetry(10);
    t.record(&served("app-a", "ptu", 1, 1));
    t.set_quota_source(Arc::new(Limiter));
    let text = t.prometheus();
    let state = |backend: &str, state: &str| {
        value(
            &text,
            "spillway_breaker_state",
            &[
                ("spillway_backend", backend),
                ("spillway_breaker_state", state),
            ],
        )
    };
    assert_eq!((state("ptu", "closed"), state("ptu", "open")), (1.0, 0.0));
    assert_eq!(state("paygo", "closed"), 1.0);
    assert!(text.contains("\nspillway_config_version "));
    let limit = |window: &str| {
        value(
            &text,
            "spillway_quota_limit_tokens",
            &[
                ("spillway_app_id", "app-a"),
                ("spillway_quota", "team-a"),
                ("spillway_quota_window", window),
            ],
        )
    };
    assert_eq!((limit("minute"), limit("day")), (1000.0, 50000.0));
    assert_eq!(
        value(
            &text,
            "spillway_quota_remaining_tokens",
            &[("spillway_app_id", "app-a")]
        ),
        640.0
    );
    assert!(
        !text.contains("never-seen"),
        "apps without their own label are not reported"
    );
}

#[tokio::test]
async fn records_a_lagging_consumer_missed_are_counted() {
    let t = telemetry(10);
    let sink = UsageSink::new(2);
    let rx = sink.subscribe();
    for _ in 0..5 {
        sink.send(served("app-a", "ptu", 1, 1));
    }
    drop(sink);
    t.clone().follow(rx).await;
    let text = t.prometheus();
    assert_eq!(
        value(&text, "spillway_telemetry_records_lost_total", &[]),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "spillway_requests_total",
            &[("spillway_outcome", "served")]
        ),
        2.0
    );
}
