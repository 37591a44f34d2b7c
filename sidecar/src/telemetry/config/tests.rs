use std::collections::HashMap;

use super::*;

fn args() -> TelemetryArgs {
    TelemetryArgs {
        otlp_endpoint: None,
        otlp_protocol: None,
        otlp_export_interval: None,
        metrics_max_apps: 1000,
        metrics_max_series: 20_000,
    }
}

fn resolve(args: &TelemetryArgs, vars: &[(&str, &str)]) -> Result<TelemetrySettings, String> {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    TelemetrySettings::resolve(args, |name| vars.get(name).cloned())
}

fn otlp(args: &TelemetryArgs, vars: &[(&str, &str)]) -> Option<OtlpSettings> {
    resolve(args, vars).expect("valid settings").otlp
}

#[test]
fn no_endpoint_means_no_otlp_export() {
    assert_eq!(otlp(&args(), &[]), None);
    assert_eq!(
        otlp(&args(), &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]),
        None
    );
}

#[test]
fn the_generic_endpoint_is_a_base_url_and_the_metrics_one_is_used_verbatim() {
    let generic = otlp(
        &args(),
        &[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318/")],
    )
    .expect("enabled");
    assert_eq!(generic.endpoint, "http://collector:4318/v1/metrics");
    assert_eq!(generic.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!(generic.interval, Duration::from_secs(60));
    assert_eq!(generic.timeout, Duration::from_secs(10));

    let specific = otlp(
        &args(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://metrics:9000/ingest",
            ),
        ],
    )
    .expect("enabled");
    assert_eq!(specific.endpoint, "http://metrics:9000/ingest");
}

#[test]
fn the_flag_wins_over_every_variable_and_is_a_base_url() {
    let mut with_flag = args();
    with_flag.otlp_endpoint = Some("http://127.0.0.1:4318".into());
    with_flag.otlp_export_interval = Some(Duration::from_millis(250));
    let settings = otlp(
        &with_flag,
        &[
            (
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://metrics:9000/ingest",
            ),
            ("OTEL_METRIC_EXPORT_INTERVAL", "5000"),
            ("OTEL_METRICS_EXPORTER", "none"),
        ],
    )
    .expect("the flag enables export");
    assert_eq!(settings.endpoint, "http://127.0.0.1:4318/v1/metrics");
    assert_eq!(settings.interval, Duration::from_millis(250));

    with_flag.otlp_endpoint = Some("http://127.0.0.1:4318/v1/metrics".into());
    let settings = otlp(&with_flag, &[]).expect("enabled");
    assert_eq!(
        settings.endpoint, "http://127.0.0.1:4318/v1/metrics",
        "no double suffix"
    );
}

#[test]
fn interval_timeout_and_protocol_come_from_the_standard_variables() {
    let settings = otlp(
        &args(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_METRICS_PROTOCOL", "grpc"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1500"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "3000"),
            ("OTEL_EXPORTER_OTLP_METRICS_TIMEOUT", "2000"),
        ],
    )
    .expect("enabled");
    assert_eq!(
        settings,
        OtlpSettings {
            endpoint: "http://collector:4317".into(),
            protocol: OtlpProtocol::Grpc,
            interval: Duration::from_millis(1500),
            timeout: Duration::from_millis(2000),
        },
        "gRPC endpoints get no path; signal-specific variables win"
    );
}

#[test]
fn exporter_selection_variables_switch_otlp_on_and_off() {
    let default = otlp(&args(), &[("OTEL_METRICS_EXPORTER", "otlp")]).expect("enabled");
    assert_eq!(default.endpoint, "http://localhost:4318/v1/metrics");
    for off in [
        [("OTEL_METRICS_EXPORTER", "none")],
        [("OTEL_SDK_DISABLED", "TRUE")],
    ] {
        let mut vars = vec![("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")];
        vars.extend(off);
        assert_eq!(otlp(&args(), &vars), None, "{off:?}");
    }
}

#[test]
fn bad_values_are_refused_with_the_variable_named() {
    let error = resolve(
        &args(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ],
    )
    .expect_err("http/json is not built in");
    assert!(error.contains("http/json"), "{error}");
    let error = resolve(
        &args(),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "10s"),
        ],
    )
    .expect_err("milliseconds only");
    assert!(error.contains("OTEL_METRIC_EXPORT_INTERVAL"), "{error}");
}

#[test]
fn empty_variables_count_as_unset() {
    assert_eq!(otlp(&args(), &[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")]), None);
}

#[test]
fn the_genai_opt_in_is_one_entry_of_a_comma_separated_list() {
    use GenAiConventions::{LatestExperimental, Legacy};
    for (value, expected) in [
        (None, Legacy),
        (Some(""), Legacy),
        (Some("gen_ai_latest_experimental"), LatestExperimental),
        (Some("http,gen_ai_latest_experimental"), LatestExperimental),
        (
            Some(" http , gen_ai_latest_experimental ,database"),
            LatestExperimental,
        ),
        (Some("\tgen_ai_latest_experimental\n"), LatestExperimental),
        (Some("GEN_AI_LATEST_EXPERIMENTAL"), LatestExperimental),
        (Some("http,database/dup"), Legacy),
        (Some("gen_ai"), Legacy),
        (Some("gen_ai_latest_experimental_v2"), Legacy),
        (Some("gen_ai_latest_experimental/dup"), Legacy),
        (Some("gen_ai latest experimental"), Legacy),
    ] {
        assert_eq!(GenAiConventions::from_opt_in(value), expected, "{value:?}");
    }
}

#[test]
fn the_genai_names_come_from_the_standard_variable_and_default_to_the_old_ones() {
    let default = resolve(&args(), &[]).expect("valid settings");
    assert_eq!(default.genai, GenAiConventions::Legacy);
    assert_eq!(TelemetrySettings::default().genai, GenAiConventions::Legacy);
    let latest = resolve(
        &args(),
        &[(
            "OTEL_SEMCONV_STABILITY_OPT_IN",
            "http, gen_ai_latest_experimental",
        )],
    )
    .expect("valid settings");
    assert_eq!(latest.genai, GenAiConventions::LatestExperimental);
    assert_eq!(latest.otlp, None, "the opt-in enables no export by itself");
    let other =
        resolve(&args(), &[("OTEL_SEMCONV_STABILITY_OPT_IN", "http")]).expect("valid settings");
    assert_eq!(other.genai, GenAiConventions::Legacy);
}
