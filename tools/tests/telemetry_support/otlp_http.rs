//! An OTLP/HTTP receiver that decodes the real protobuf `ExportMetricsServiceRequest`s the
//! gateway sends (and, on `/v1/traces`, `ExportTraceServiceRequest`s — see `traces`; on
//! `/v1/logs`, `ExportLogsServiceRequest`s — see `logs`), and what the tests read from them.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use prost::Message;
use tokio::net::TcpListener;

use super::Labels;

/// An OTLP/HTTP metrics receiver on 127.0.0.1 keeping every request it decoded.
pub struct OtlpReceiver {
    /// Base URL (for `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub url: String,
    requests: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    traces: Arc<super::traces::TraceLog>,
    logs: Arc<super::logs::LogLog>,
}

/// What the receiver saw of one HTTP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub path: String,
    pub content_type: String,
    /// The body decoded as an `ExportMetricsServiceRequest`.
    pub decoded: bool,
}

impl OtlpReceiver {
    pub async fn start() -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let seen_all = Arc::new(Mutex::new(Vec::new()));
        let traces = Arc::new(super::traces::TraceLog::default());
        let logs = Arc::new(super::logs::LogLog::default());
        let (kept, seen) = (Arc::clone(&requests), Arc::clone(&seen_all));
        let spans = Arc::clone(&traces);
        let records = Arc::clone(&logs);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, seen) = (Arc::clone(&kept), Arc::clone(&seen));
                let (spans, records) = (Arc::clone(&spans), Arc::clone(&records));
                let service = service_fn(move |req: Request<Incoming>| {
                    let (kept, seen) = (Arc::clone(&kept), Arc::clone(&seen));
                    let (spans, records) = (Arc::clone(&spans), Arc::clone(&records));
                    async move {
                        if req.uri().path() == "/v1/traces" {
                            return Ok::<_, Infallible>(spans.receive(req).await);
                        }
                        if req.uri().path() == "/v1/logs" {
                            return Ok::<_, Infallible>(records.receive(req).await);
                        }
                        Ok::<_, Infallible>(receive(req, &kept, &seen).await)
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        OtlpReceiver {
            url,
            requests,
            seen: seen_all,
            traces,
            logs,
        }
    }

    /// Every request decoded so far.
    pub fn requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// The trace exports received on `/v1/traces`.
    pub fn traces(&self) -> &super::traces::TraceLog {
        &self.traces
    }

    /// The log exports received on `/v1/logs`.
    pub fn logs(&self) -> &super::logs::LogLog {
        &self.logs
    }

    /// Every metrics HTTP request seen.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The data points of metric `name` in the latest export that has it (exports are
    /// cumulative, so the latest holds the totals): attributes and value (sum/gauge value,
    /// histogram sum).
    pub fn points(&self, name: &str) -> Vec<(Labels, f64)> {
        let requests = self.requests();
        requests
            .iter()
            .rev()
            .map(|r| points_in(r, name))
            .find(|p| !p.is_empty())
            .unwrap_or_default()
    }

    /// The names of every metric exported so far.
    pub fn names(&self) -> std::collections::BTreeSet<String> {
        self.requests()
            .iter()
            .flat_map(|r| &r.resource_metrics)
            .flat_map(|rm| &rm.scope_metrics)
            .flat_map(|sm| &sm.metrics)
            .map(|m| m.name.clone())
            .collect()
    }

    /// The unit of metric `name` as last exported.
    pub fn unit(&self, name: &str) -> Option<String> {
        self.requests().iter().rev().find_map(|r| {
            r.resource_metrics
                .iter()
                .flat_map(|rm| &rm.scope_metrics)
                .flat_map(|sm| &sm.metrics)
                .find(|m| m.name == name)
                .map(|m| m.unit.clone())
        })
    }

    /// The resource attributes of the latest export.
    pub fn resource(&self) -> Labels {
        self.requests()
            .last()
            .and_then(|r| r.resource_metrics.first())
            .and_then(|rm| rm.resource.as_ref())
            .map(|r| labels(&r.attributes))
            .unwrap_or_default()
    }
}

async fn receive(
    req: Request<Incoming>,
    kept: &Mutex<Vec<ExportMetricsServiceRequest>>,
    seen: &Mutex<Vec<Seen>>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    let decoded = body
        .ok()
        .and_then(|body| ExportMetricsServiceRequest::decode(body).ok());
    seen.lock().unwrap().push(Seen {
        path,
        content_type,
        decoded: decoded.is_some(),
    });
    let Some(decoded) = decoded else {
        return Response::builder()
            .status(400)
            .body(Full::new(Bytes::new()))
            .unwrap();
    };
    kept.lock().unwrap().push(decoded);
    let reply = ExportMetricsServiceResponse::default().encode_to_vec();
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .body(Full::new(Bytes::from(reply)))
        .unwrap()
}

pub(super) fn points_in(request: &ExportMetricsServiceRequest, name: &str) -> Vec<(Labels, f64)> {
    let mut out = Vec::new();
    let metrics = request
        .resource_metrics
        .iter()
        .flat_map(|rm| &rm.scope_metrics)
        .flat_map(|sm| &sm.metrics)
        .filter(|m| m.name == name);
    for metric in metrics {
        match &metric.data {
            Some(metric::Data::Sum(sum)) => {
                out.extend(
                    sum.data_points
                        .iter()
                        .map(|p| (labels(&p.attributes), number(p.value))),
                );
            }
            Some(metric::Data::Gauge(gauge)) => {
                out.extend(
                    gauge
                        .data_points
                        .iter()
                        .map(|p| (labels(&p.attributes), number(p.value))),
                );
            }
            Some(metric::Data::Histogram(h)) => {
                out.extend(
                    h.data_points
                        .iter()
                        .map(|p| (labels(&p.attributes), p.sum.unwrap_or_default())),
                );
            }
            other => panic!("unexpected data for {name}: {other:?}"),
        }
    }
    out
}

#[allow(clippy::cast_precision_loss)]
fn number(value: Option<number_data_point::Value>) -> f64 {
    match value {
        Some(number_data_point::Value::AsDouble(v)) => v,
        Some(number_data_point::Value::AsInt(v)) => v as f64,
        None => f64::NAN,
    }
}

pub(super) fn labels(attributes: &[KeyValue]) -> Labels {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), any_value(kv.value.as_ref())))
        .collect()
}

fn any_value(value: Option<&AnyValue>) -> String {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}
