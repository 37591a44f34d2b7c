//! The logs side of the OTLP receivers: decodes the real protobuf `ExportLogsServiceRequest`s
//! posted to `/v1/logs` (or sent over gRPC) and reads the per-request records back.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;

use super::Labels;

/// Every log export received.
#[derive(Debug, Default)]
pub struct LogLog {
    requests: Mutex<Vec<ExportLogsServiceRequest>>,
}

impl LogLog {
    /// Answers one OTLP/HTTP `/v1/logs` request.
    pub(super) async fn receive(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        let Some(decoded) = body
            .ok()
            .and_then(|b| ExportLogsServiceRequest::decode(b).ok())
        else {
            return Response::builder()
                .status(400)
                .body(Full::new(Bytes::new()))
                .unwrap();
        };
        self.keep(decoded);
        let reply = ExportLogsServiceResponse::default().encode_to_vec();
        Response::builder()
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(reply)))
            .unwrap()
    }

    pub(super) fn keep(&self, request: ExportLogsServiceRequest) {
        self.requests.lock().unwrap().push(request);
    }

    /// Every log record received, in order.
    pub fn records(&self) -> Vec<LogRecord> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_logs)
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| sl.log_records.clone())
            .collect()
    }

    /// The record whose `spillway.request_id` is `id`, if exactly one was received.
    pub fn by_request(&self, id: &str) -> Option<LogRecord> {
        let found: Vec<LogRecord> = self
            .records()
            .into_iter()
            .filter(|r| attributes(r).get("spillway.request_id").map(String::as_str) == Some(id))
            .collect();
        assert!(found.len() <= 1, "{id} logged {} times", found.len());
        found.into_iter().next()
    }

    /// The resource attributes of the first export.
    pub fn resource(&self) -> Labels {
        self.requests
            .lock()
            .unwrap()
            .first()
            .and_then(|r| r.resource_logs.first())
            .and_then(|rl| rl.resource.as_ref())
            .map(|r| super::otlp_http::labels(&r.attributes))
            .unwrap_or_default()
    }
}

/// The attributes of `record`, as strings.
pub fn attributes(record: &LogRecord) -> Labels {
    super::otlp_http::labels(&record.attributes)
}
