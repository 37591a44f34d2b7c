use std::sync::Arc;

use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_sdk::metrics::reader::MetricReader as _;
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use prom_text_format_parser::Scrape;

use super::*;
use crate::telemetry::SharedReader;

/// A provider with an empty resource and a pull reader.
fn provider() -> (SdkMeterProvider, Arc<ManualReader>) {
    let reader = Arc::new(ManualReader::builder().build());
    let provider = SdkMeterProvider::builder()
        .with_resource(Resource::builder_empty().build())
        .with_reader(SharedReader(Arc::clone(&reader)))
        .build();
    (provider, reader)
}

fn text(reader: &ManualReader) -> String {
    let mut metrics = ResourceMetrics::default();
    reader.collect(&mut metrics).expect("collect");
    render(&metrics)
}

#[test]
fn counters_gauges_and_histograms_follow_the_prometheus_conventions() {
    let (provider, reader) = provider();
    let meter = provider.meter("test");
    let tokens = meter
        .u64_counter("spillway.tokens")
        .with_unit("{token}")
        .with_description("Tokens.")
        .build();
    tokens.add(7, &[KeyValue::new("spillway.app_id", "a")]);
    tokens.add(5, &[KeyValue::new("spillway.app_id", "a")]);
    let version = meter
        .u64_gauge("spillway.config.version")
        .with_description("Version.")
        .build();
    version.record(3, &[]);
    let duration = meter
        .f64_histogram("gen_ai.server.request.duration")
        .with_unit("s")
        .with_description("Duration.")
        .with_boundaries(vec![0.5, 1.0])
        .build();
    duration.record(0.25, &[KeyValue::new("error.type", "429")]);
    duration.record(0.75, &[KeyValue::new("error.type", "429")]);
    duration.record(4.0, &[KeyValue::new("error.type", "429")]);

    let expected = "\
# HELP gen_ai_server_request_duration_seconds Duration.
# TYPE gen_ai_server_request_duration_seconds histogram
gen_ai_server_request_duration_seconds_bucket{error_type=\"429\",le=\"0.5\"} 1
gen_ai_server_request_duration_seconds_bucket{error_type=\"429\",le=\"1\"} 2
gen_ai_server_request_duration_seconds_bucket{error_type=\"429\",le=\"+Inf\"} 3
gen_ai_server_request_duration_seconds_sum{error_type=\"429\"} 5
gen_ai_server_request_duration_seconds_count{error_type=\"429\"} 3
# HELP spillway_config_version Version.
# TYPE spillway_config_version gauge
spillway_config_version 3
# HELP spillway_tokens_total Tokens.
# TYPE spillway_tokens_total counter
spillway_tokens_total{spillway_app_id=\"a\"} 12
";
    let rendered = text(&reader);
    assert_eq!(rendered, expected);
    Scrape::parse(&rendered).expect("a Prometheus text parser accepts it");
}

#[test]
fn label_values_and_help_are_escaped_and_the_parser_reads_them_back() {
    let (provider, reader) = provider();
    let meter = provider.meter("test");
    let counter = meter
        .u64_counter("spillway.requests")
        .with_description("Line one\nback\\slash")
        .build();
    let nasty = "app \"quoted\" \\ back\nnew line}{,=";
    counter.add(1, &[KeyValue::new("spillway.app_id", nasty)]);
    let rendered = text(&reader);
    assert!(rendered.contains("# HELP spillway_requests_total Line one\\nback\\\\slash\n"));
    let scrape = Scrape::parse(&rendered).expect("parses");
    let sample = &scrape.metrics[0].samples[0];
    assert_eq!(sample.labels[0].key, "spillway_app_id");
    // The parser keeps escapes as written; undoing them gives the original value.
    let raw = &sample.labels[0].value;
    let unescaped = raw
        .replace("\\\\", "\u{0}")
        .replace("\\\"", "\"")
        .replace("\\n", "\n")
        .replace('\u{0}', "\\");
    assert_eq!(unescaped, nasty);
}

#[test]
fn names_are_sanitized_and_get_unit_suffixes_once() {
    assert_eq!(
        metric_name("gen_ai.client.token.usage", "{token}"),
        "gen_ai_client_token_usage"
    );
    assert_eq!(
        metric_name("gen_ai.server.time_to_first_token", "s"),
        "gen_ai_server_time_to_first_token_seconds"
    );
    assert_eq!(metric_name("queue.seconds", "s"), "queue_seconds");
    assert_eq!(metric_name("body.size", "By"), "body_size_bytes");
    assert_eq!(metric_name("9lives", ""), "_9lives");
    assert_eq!(label_name("gen_ai.token.type"), "gen_ai_token_type");
    assert_eq!(
        label_name("a:b"),
        "a_b",
        "colons are not allowed in label names"
    );
}

#[test]
fn keys_that_sanitize_alike_are_joined_and_resource_attributes_go_to_target_info() {
    let reader = Arc::new(ManualReader::builder().build());
    let provider = SdkMeterProvider::builder()
        .with_resource(
            Resource::builder_empty()
                .with_attribute(KeyValue::new("service.name", "spillway"))
                .build(),
        )
        .with_reader(SharedReader(Arc::clone(&reader)))
        .build();
    let counter = provider.meter("test").u64_counter("c").build();
    counter.add(1, &[KeyValue::new("a.b", "x"), KeyValue::new("a_b", "y")]);
    let rendered = text(&reader);
    assert!(
        rendered.starts_with(
            "# HELP target_info Target metadata\n# TYPE target_info gauge\ntarget_info{service_name=\"spillway\"} 1\n"
        ),
        "{rendered}"
    );
    assert!(rendered.contains("c_total{a_b=\"x;y\"} 1\n"), "{rendered}");
    Scrape::parse(&rendered).expect("parses");
}

#[test]
fn instruments_without_points_are_left_out() {
    let (provider, reader) = provider();
    let meter = provider.meter("test");
    let _unused = meter.u64_counter("never.used").build();
    let used = meter.u64_counter("used").build();
    used.add(1, &[]);
    let rendered = text(&reader);
    assert!(!rendered.contains("never_used"), "{rendered}");
    assert!(rendered.contains("used_total 1\n"));
}

#[test]
fn special_values_use_the_go_spelling() {
    assert_eq!(format_value(f64::INFINITY), "+Inf");
    assert_eq!(format_value(f64::NEG_INFINITY), "-Inf");
    assert_eq!(format_value(f64::NAN), "NaN");
    assert_eq!(format_value(0.25), "0.25");
    assert_eq!(format_value(1e21), "1000000000000000000000");
}
