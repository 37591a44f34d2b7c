//! The traces side of the OTLP/HTTP receiver: decodes the real protobuf
//! `ExportTraceServiceRequest`s posted to `/v1/traces` and keeps the raw bodies too (to check
//! what was never sent).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Mutex;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::Labels;

/// Every trace export received.
#[derive(Debug, Default)]
pub struct TraceLog {
    requests: Mutex<Vec<ExportTraceServiceRequest>>,
    bodies: Mutex<Vec<Bytes>>,
}

impl TraceLog {
    pub(super) async fn receive(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        let Some((bytes, decoded)) = body
            .ok()
            .and_then(|b| Some((b.clone(), ExportTraceServiceRequest::decode(b).ok()?)))
        else {
            return Response::builder()
                .status(400)
                .body(Full::new(Bytes::new()))
                .unwrap();
        };
        self.bodies.lock().unwrap().push(bytes);
        self.requests.lock().unwrap().push(decoded);
        let reply = ExportTraceServiceResponse::default().encode_to_vec();
        Response::builder()
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(reply)))
            .unwrap()
    }

    /// Every span received, in order.
    pub fn spans(&self) -> Vec<Span> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| ss.spans.clone())
            .collect()
    }

    /// The spans of trace `trace_id`.
    pub fn trace(&self, trace_id: &[u8]) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }

    /// The resource attributes of the first export.
    pub fn resource(&self) -> Labels {
        self.requests
            .lock()
            .unwrap()
            .first()
            .and_then(|r| r.resource_spans.first())
            .and_then(|rs| rs.resource.as_ref())
            .map(|r| super::otlp_http::labels(&r.attributes))
            .unwrap_or_default()
    }

    /// Whether `needle` occurs in any raw export body.
    pub fn bytes_contain(&self, needle: &[u8]) -> bool {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .any(|b| b.windows(needle.len()).any(|w| w == needle))
    }

    /// Total bytes received.
    pub fn bytes_received(&self) -> usize {
        self.bodies.lock().unwrap().iter().map(Bytes::len).sum()
    }
}

/// The attributes of `span`, as strings.
pub fn attributes(span: &Span) -> Labels {
    super::otlp_http::labels(&span.attributes)
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
