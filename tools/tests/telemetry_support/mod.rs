//! Test support for telemetry: OTLP receivers (HTTP and gRPC) that decode the real protobuf
//! `ExportMetricsServiceRequest`s, `ExportTraceServiceRequest`s and
//! `ExportLogsServiceRequest`s the gateway sends, collectors that never answer or do not
//! exist, a gateway launcher that keeps the process id (for its memory), Prometheus text
//! parsing with a real text-format parser, and PromQL parsing for the dashboards.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod collectors;
pub mod gateway;
pub mod grpc;
pub mod logs;
pub mod otlp_http;
pub mod promql;
pub mod stack;
pub mod traces;

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// Attributes of a data point, as strings.
pub type Labels = BTreeMap<String, String>;

/// The sum of `points` whose labels include every pair of `filter`.
pub fn sum_where(points: &[(Labels, f64)], filter: &[(&str, &str)]) -> f64 {
    points
        .iter()
        .filter(|(l, _)| {
            filter
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// One Prometheus sample: metric family name, sample name, labels, value.
#[derive(Clone, Debug)]
pub struct PromSample {
    pub family: String,
    pub name: String,
    pub labels: Labels,
    pub value: f64,
}

/// Parses Prometheus text with a text-format parser, panicking on any error.
pub fn parse_prometheus(text: &str) -> Vec<PromSample> {
    use prom_text_format_parser::{Scrape, Type, ValueType};
    let scrape =
        Scrape::parse(text).unwrap_or_else(|e| panic!("invalid exposition: {e:?}\n{text}"));
    let mut out = Vec::new();
    for metric in scrape.metrics {
        for sample in metric.samples {
            let name = match (sample.value.value_type, metric.kind) {
                (ValueType::Sum, _) => format!("{}_sum", metric.name),
                (ValueType::Count, _) => format!("{}_count", metric.name),
                (ValueType::Sample, Type::Histogram) => format!("{}_bucket", metric.name),
                (ValueType::Sample, _) => metric.name.clone(),
            };
            out.push(PromSample {
                family: metric.name.clone(),
                name,
                labels: sample
                    .labels
                    .iter()
                    .map(|l| (l.key.clone(), l.value.clone()))
                    .collect(),
                value: sample.value.value.as_f64(),
            });
        }
    }
    out
}

/// The gateway's `/metrics`, parsed.
pub async fn scrape(admin: &str) -> Vec<PromSample> {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let response = client
        .get(format!("{admin}/metrics").parse().unwrap())
        .await
        .expect("/metrics answers");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()[http::header::CONTENT_TYPE],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let body = response.into_body().collect().await.unwrap().to_bytes();
    parse_prometheus(std::str::from_utf8(&body).expect("UTF-8"))
}
