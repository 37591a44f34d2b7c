//! An OTLP/gRPC receiver for metrics, traces and logs: HTTP/2 with prior knowledge and the
//! gRPC message framing written by hand, decoding the same protobuf requests.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use tokio::net::TcpListener;

use super::Labels;
use super::otlp_http::points_in;

/// An OTLP/gRPC receiver (HTTP/2 with prior knowledge, gRPC framing by hand) on
/// 127.0.0.1, keeping every request it decoded.
pub struct GrpcReceiver {
    /// `http://127.0.0.1:port` (for `OTEL_EXPORTER_OTLP_ENDPOINT` with protocol `grpc`).
    pub url: String,
    requests: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    paths: Arc<Mutex<Vec<String>>>,
    kept: Arc<Kept>,
}

/// The trace and log exports received.
#[derive(Default)]
struct Kept {
    traces: Mutex<Vec<ExportTraceServiceRequest>>,
    logs: super::logs::LogLog,
}

const GRPC_EXPORT: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
const GRPC_TRACES: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
const GRPC_LOGS: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

impl GrpcReceiver {
    pub async fn start() -> GrpcReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(Mutex::new(Vec::new()));
        let paths = Arc::new(Mutex::new(Vec::new()));
        let others = Arc::new(Kept::default());
        let (kept, seen) = (Arc::clone(&requests), Arc::clone(&paths));
        let other = Arc::clone(&others);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (kept, seen) = (Arc::clone(&kept), Arc::clone(&seen));
                let other = Arc::clone(&other);
                let service = service_fn(move |req: Request<Incoming>| {
                    let (kept, seen) = (Arc::clone(&kept), Arc::clone(&seen));
                    let other = Arc::clone(&other);
                    async move { Ok::<_, Infallible>(receive_grpc(req, &kept, &seen, &other).await) }
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
            kept: others,
        }
    }

    /// Every span received over the trace service.
    pub fn spans(&self) -> Vec<Span> {
        self.kept
            .traces
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect()
    }

    /// The log exports received over the logs service.
    pub fn logs(&self) -> &super::logs::LogLog {
        &self.kept.logs
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
    other: &Kept,
) -> Response<GrpcBody> {
    let path = req.uri().path().to_owned();
    seen.lock().unwrap().push(path.clone());
    let body = req.into_body().collect().await.map(|b| b.to_bytes());
    // One gRPC message: compressed flag (0), big-endian length, protobuf.
    let message = body.ok().and_then(|b| {
        let len = usize::try_from(u32::from_be_bytes(b.get(1..5)?.try_into().ok()?)).ok()?;
        (b.first() == Some(&0) && b.len() == 5 + len).then(|| b.slice(5..))
    });
    let decoded = message.and_then(|m| match path.as_str() {
        GRPC_EXPORT => ExportMetricsServiceRequest::decode(m)
            .ok()
            .map(|d| kept.lock().unwrap().push(d)),
        GRPC_TRACES => ExportTraceServiceRequest::decode(m)
            .ok()
            .map(|d| other.traces.lock().unwrap().push(d)),
        GRPC_LOGS => ExportLogsServiceRequest::decode(m)
            .ok()
            .map(|d| other.logs.keep(d)),
        _ => None,
    });
    let status = if decoded.is_some() {
        "0"
    } else {
        "3" // INVALID_ARGUMENT
    };
    // The three Export responses are all empty messages: the same bytes.
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
