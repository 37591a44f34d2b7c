//! Test support for telemetry: an OTLP/HTTP receiver that decodes the real protobuf
//! `ExportMetricsServiceRequest`s the gateway sends, collectors that never answer or do not
//! exist, a gateway launcher that keeps the process id (for its memory), and Prometheus text
//! parsing with a real text-format parser.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod promql;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

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
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, Command};

/// Attributes of a data point, as strings.
pub type Labels = BTreeMap<String, String>;

/// An OTLP/HTTP metrics receiver on 127.0.0.1 keeping every request it decoded.
pub struct OtlpReceiver {
    /// Base URL (for `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub url: String,
    requests: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
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
        let (kept, seen) = (Arc::clone(&requests), Arc::clone(&seen_all));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, seen) = (Arc::clone(&kept), Arc::clone(&seen));
                let service = service_fn(move |req: Request<Incoming>| {
                    let (kept, seen) = (Arc::clone(&kept), Arc::clone(&seen));
                    async move { Ok::<_, Infallible>(receive(req, &kept, &seen).await) }
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
        }
    }

    /// Every request decoded so far.
    pub fn requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.requests.lock().unwrap().clone()
    }

    /// Every HTTP request seen.
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

fn points_in(request: &ExportMetricsServiceRequest, name: &str) -> Vec<(Labels, f64)> {
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

fn labels(attributes: &[KeyValue]) -> Labels {
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

/// A collector that accepts connections and never answers; counts connections.
pub struct BlackHole {
    pub url: String,
    pub accepted: Arc<AtomicUsize>,
    pub open: Arc<AtomicUsize>,
    pub max_open: Arc<AtomicUsize>,
}

impl BlackHole {
    pub async fn start() -> BlackHole {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let max_open = Arc::new(AtomicUsize::new(0));
        let (a, o, m) = (accepted.clone(), open.clone(), max_open.clone());
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                a.fetch_add(1, Ordering::SeqCst);
                let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                let o = o.clone();
                tokio::spawn(async move {
                    // Read (and drop) until the client gives up; never write.
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n) = stream.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                    }
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        BlackHole {
            url,
            accepted,
            open,
            max_open,
        }
    }
}

/// A URL on 127.0.0.1 where nothing listens.
pub async fn closed_port() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    url
}

/// A `spillway run` process that keeps its pid; killed on drop.
pub struct RunningGateway {
    child: Child,
    pub url: String,
    pub admin: String,
    _dir: tempfile::TempDir,
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

impl RunningGateway {
    /// Starts `spillway run` on `manifests` with extra `args` and `env`.
    pub async fn start(manifests: &str, args: &[&str], env: &[(&str, &str)]) -> RunningGateway {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("gateway.yaml");
        std::fs::write(&config, manifests).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_spillway"));
        command
            .args(["run", "--config"])
            .arg(Path::new(&config))
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(if std::env::var_os("SPILLWAY_TEST_LOGS").is_some() {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("spawn spillway run");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ready = tokio::time::timeout(Duration::from_secs(30), async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Ok(value) = serde_json::from_str::<Value>(&line)
                    && value.get("listening").is_some()
                {
                    return Some(value);
                }
            }
            None
        })
        .await
        .ok()
        .flatten()
        .expect("the gateway printed its addresses");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        RunningGateway {
            child,
            url: format!("http://{}", ready["listening"].as_str().unwrap()),
            admin: format!("http://{}", ready["admin"].as_str().unwrap()),
            _dir: dir,
        }
    }

    /// Resident memory of the process in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }
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

/// An OTLP/gRPC metrics receiver (HTTP/2 with prior knowledge, gRPC framing by hand) on
/// 127.0.0.1, keeping every request it decoded.
pub struct GrpcReceiver {
    /// `http://127.0.0.1:port` (for `OTEL_EXPORTER_OTLP_ENDPOINT` with protocol `grpc`).
    pub url: String,
    requests: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    paths: Arc<Mutex<Vec<String>>>,
}

const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

impl GrpcReceiver {
    pub async fn start() -> GrpcReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let (kept, seen) = (Arc::clone(&requests), Arc::clone(&paths));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, seen) = (Arc::clone(&kept), Arc::clone(&seen));
                let service = service_fn(move |req: Request<Incoming>| {
                    let (kept, seen) = (Arc::clone(&kept), Arc::clone(&seen));
                    async move { Ok::<_, Infallible>(receive_grpc(req, &kept, &seen).await) }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
                });
            }
        });
        GrpcReceiver {
            url,
            requests,
            paths,
        }
    }

    /// The data points of `name` in the latest export that has it.
    pub fn points(&self, name: &str) -> Vec<(Labels, f64)> {
        let requests = self.requests.lock().unwrap().clone();
        requests
            .iter()
            .rev()
            .map(|r| points_in(r, name))
            .find(|p| !p.is_empty())
            .unwrap_or_default()
    }

    /// The gRPC method paths called.
    pub fn paths(&self) -> Vec<String> {
        self.paths.lock().unwrap().clone()
    }
}

type GrpcBody = http_body_util::StreamBody<
    futures_util::stream::Iter<std::vec::IntoIter<Result<hyper::body::Frame<Bytes>, Infallible>>>,
>;

async fn receive_grpc(
    req: Request<Incoming>,
    kept: &Mutex<Vec<ExportMetricsServiceRequest>>,
    seen: &Mutex<Vec<String>>,
) -> Response<GrpcBody> {
    seen.lock().unwrap().push(req.uri().path().to_owned());
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    // One gRPC message: compressed flag (0), big-endian length, protobuf.
    let decoded = body.ok().and_then(|b| {
        let len = usize::try_from(u32::from_be_bytes(b.get(1..5)?.try_into().ok()?)).ok()?;
        (b.first() == Some(&0) && b.len() == 5 + len)
            .then(|| ExportMetricsServiceRequest::decode(b.slice(5..)).ok())
            .flatten()
    });
    let status = if let Some(decoded) = decoded {
        kept.lock().unwrap().push(decoded);
        "0"
    } else {
        "3" // INVALID_ARGUMENT
    };
    let reply = ExportMetricsServiceResponse::default().encode_to_vec();
    let mut message = vec![0u8];
    message.extend(u32::try_from(reply.len()).unwrap().to_be_bytes());
    message.extend(reply);
    let mut trailers = http::HeaderMap::new();
    trailers.insert("grpc-status", http::HeaderValue::from_static(status));
    let frames = vec![
        Ok(hyper::body::Frame::data(Bytes::from(message))),
        Ok(hyper::body::Frame::trailers(trailers)),
    ];
    Response::builder()
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .body(http_body_util::StreamBody::new(futures_util::stream::iter(
            frames,
        )))
        .unwrap()
}
