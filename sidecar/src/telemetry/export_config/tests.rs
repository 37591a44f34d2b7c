#![allow(clippy::unwrap_used)]

use super::*;

fn args(endpoint: Option<&str>, protocol: Option<&str>) -> TelemetryArgs {
    TelemetryArgs {
        otlp_endpoint: endpoint.map(str::to_owned),
        otlp_protocol: protocol.map(str::to_owned),
        otlp_export_interval: None,
        metrics_max_apps: 1000,
        metrics_max_series: 20_000,
    }
}

fn resolve(signal: Signal, args: &TelemetryArgs, env: &[(&str, &str)]) -> Option<ExportSettings> {
    ExportSettings::resolve(signal, args, |name| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap()
}

#[test]
fn endpoints_follow_the_otlp_variables() {
    let none = args(None, None);
    assert_eq!(resolve(Signal::Traces, &none, &[]), None);
    let flag = resolve(Signal::Traces, &args(Some("http://c:4318/"), None), &[]).unwrap();
    assert_eq!(flag.endpoint, "http://c:4318/v1/traces");
    assert_eq!(flag.protocol, OtlpProtocol::HttpProtobuf);
    assert_eq!((flag.max_queue, flag.max_batch), (2048, 512));
    assert_eq!(flag.timeout, Duration::from_secs(10));
    let generic = [("OTEL_EXPORTER_OTLP_ENDPOINT", "http://g:4318")];
    let traces = resolve(Signal::Traces, &none, &generic).unwrap();
    assert_eq!(traces.endpoint, "http://g:4318/v1/traces");
    let logs = resolve(Signal::Logs, &none, &generic).unwrap();
    assert_eq!(logs.endpoint, "http://g:4318/v1/logs");
    let metrics_url = args(Some("http://c:4318/v1/metrics"), None);
    let logs = resolve(Signal::Logs, &metrics_url, &[]).unwrap();
    assert_eq!(logs.endpoint, "http://c:4318/v1/logs");
    let specific = resolve(
        Signal::Traces,
        &args(Some("http://c:4318"), None),
        &[
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:9/x"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "250"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "7"),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "9"),
        ],
    )
    .unwrap();
    assert_eq!(specific.endpoint, "http://t:9/x");
    assert_eq!(specific.timeout, Duration::from_millis(250));
    assert_eq!(specific.max_queue, 7);
    let logs = resolve(
        Signal::Logs,
        &none,
        &[
            ("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT", "http://l:1/v1/logs"),
            ("OTEL_EXPORTER_OTLP_LOGS_TIMEOUT", "300"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "250"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "7"),
            ("OTEL_BLRP_MAX_QUEUE_SIZE", "9"),
            ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "3"),
        ],
    )
    .unwrap();
    assert_eq!(logs.endpoint, "http://l:1/v1/logs");
    assert_eq!(logs.timeout, Duration::from_millis(300));
    assert_eq!((logs.max_queue, logs.max_batch), (9, 3));
    let huge = resolve(
        Signal::Traces,
        &none,
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://g"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "18446744073709551615"),
        ],
    );
    assert_eq!(huge.unwrap().max_batch, 1 << 20);
    let default = resolve(Signal::Logs, &none, &[("OTEL_LOGS_EXPORTER", "otlp")]).unwrap();
    assert_eq!(default.endpoint, "http://localhost:4318/v1/logs");
}

#[test]
fn grpc_uses_the_base_endpoint_as_is() {
    let grpc = args(Some("http://c:4317/"), Some("grpc"));
    for signal in [Signal::Traces, Signal::Logs] {
        let settings = resolve(signal, &grpc, &[]).unwrap();
        assert_eq!(settings.endpoint, "http://c:4317");
        assert_eq!(settings.protocol, OtlpProtocol::Grpc);
    }
    // A signal-specific protocol wins over the shared one.
    let mixed = resolve(
        Signal::Logs,
        &args(None, None),
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_EXPORTER_OTLP_LOGS_PROTOCOL", "grpc"),
        ],
    )
    .unwrap();
    assert_eq!(
        (mixed.endpoint.as_str(), mixed.protocol),
        ("http://c:4317", OtlpProtocol::Grpc)
    );
    let default = resolve(
        Signal::Traces,
        &args(None, Some("grpc")),
        &[("OTEL_TRACES_EXPORTER", "otlp")],
    )
    .unwrap();
    assert_eq!(default.endpoint, "http://localhost:4317");
}

#[test]
fn none_disabled_and_bad_values() {
    let flag = args(Some("http://c:4318"), None);
    assert_eq!(
        resolve(Signal::Traces, &flag, &[("OTEL_TRACES_EXPORTER", "none")]),
        None
    );
    assert!(resolve(Signal::Logs, &flag, &[("OTEL_TRACES_EXPORTER", "none")]).is_some());
    assert_eq!(
        resolve(Signal::Logs, &flag, &[("OTEL_LOGS_EXPORTER", "none")]),
        None
    );
    assert_eq!(
        resolve(Signal::Logs, &flag, &[("OTEL_SDK_DISABLED", "true")]),
        None
    );
    let bad = ExportSettings::resolve(Signal::Traces, &flag, |n| {
        (n == "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").then(|| "http/json".to_owned())
    });
    assert!(bad.unwrap_err().contains("http/json"));
    let bad = ExportSettings::resolve(Signal::Logs, &flag, |n| {
        (n == "OTEL_BLRP_MAX_QUEUE_SIZE").then(|| "lots".to_owned())
    });
    assert!(bad.unwrap_err().contains("OTEL_BLRP_MAX_QUEUE_SIZE"));
}
