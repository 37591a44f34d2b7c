//! The spans of one finished request, built after the fact from its usage record: a SERVER
//! span for the client request and a CLIENT child span per upstream attempt, named and
//! attributed after the OpenTelemetry GenAI conventions (`{operation} {model}`).
//!
//! Input: a [`UsageRecord`] carrying its [`RequestTrace`](crate::usage::record::RequestTrace)
//! and per-attempt [`AttemptTrace`](crate::usage::record::AttemptTrace), and the
//! [`BackendIndex`] (provider, server address and port). Output: [`SpanData`] for the
//! exporter. Only ids, names, counts and codes are recorded — never prompt or completion
//! text, which the record does not hold.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::backends::{BackendIndex, BackendInfo};
use super::semconv::attr;
use super::usage_fields::{FieldValue, usage_fields};
use crate::usage::record::UpstreamAttempt;
use crate::usage::{ErrorType, UsageRecord};

/// The spans of `record`: none when it is not traced or its trace is not sampled; else the
/// server span followed by one client span per attempt.
pub fn spans(record: &UsageRecord, index: &BackendIndex) -> Vec<SpanData> {
    let Some(trace) = record.trace.filter(|t| t.sampled) else {
        return Vec::new();
    };
    let shape = Shape {
        trace_id: TraceId::from_bytes(trace.trace_id),
        name: span_name(record),
        scope: InstrumentationScope::builder("spillway")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    };
    let server_id = SpanId::from_bytes(trace.span_id);
    let end = trace.start + record.duration;
    let backend = |name: &str| index.get(&record.pool, name);
    let mut attributes = common(record);
    if let Some(info) = record.backend.as_deref().and_then(backend) {
        attributes.push(KeyValue::new(attr::PROVIDER_NAME, info.provider));
    }
    if let Some(b) = &record.backend {
        attributes.push(KeyValue::new(attr::BACKEND, b.clone()));
    }
    attributes.extend(response(record));
    let code = i64::from(record.status);
    attributes.push(KeyValue::new(attr::HTTP_STATUS_CODE, code));
    if let Some(error) = &record.error_type {
        attributes.push(KeyValue::new(attr::ERROR_TYPE, error.to_string()));
    }
    let interrupted = record.error_type == Some(ErrorType::Interrupted);
    let failed = record.status >= 500 || interrupted;
    let parent = trace.parent_span_id.map(SpanId::from_bytes);
    let mut out = Vec::with_capacity(1 + record.upstream.len());
    out.push(shape.span(
        SpanKind::Server,
        (server_id, parent),
        (trace.start, end),
        attributes,
        status(failed, record.error_type.map(ErrorType::label).as_deref()),
    ));
    let last = record.upstream.len().saturating_sub(1);
    for (i, attempt) in record.upstream.iter().enumerate() {
        let Some(span) = attempt.trace else { continue };
        // The attempt whose response went to the client lasts until its body ended.
        let answered = i == last && attempt.status.is_some();
        let end_time = if answered {
            end.max(span.start)
        } else {
            span.start + span.duration
        };
        let (attributes, error) =
            attempt_attributes(record, attempt, backend(&attempt.backend), answered);
        let status = status(error.is_some(), error.as_deref());
        let id = SpanId::from_bytes(span.span_id);
        out.push(shape.span(
            SpanKind::Client,
            (id, Some(server_id)),
            (span.start, end_time),
            attributes,
            status,
        ));
    }
    out
}

/// What every span of one request shares.
struct Shape {
    trace_id: TraceId,
    name: Cow<'static, str>,
    scope: InstrumentationScope,
}

impl Shape {
    /// A span with `(id, parent)`; a server span's parent is remote (the client's).
    fn span(
        &self,
        kind: SpanKind,
        (id, parent): (SpanId, Option<SpanId>),
        (start_time, end_time): (SystemTime, SystemTime),
        attributes: Vec<KeyValue>,
        status: Status,
    ) -> SpanData {
        SpanData {
            span_context: SpanContext::new(
                self.trace_id,
                id,
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
            parent_span_id: parent.unwrap_or(SpanId::INVALID),
            parent_span_is_remote: parent.is_some() && kind == SpanKind::Server,
            span_kind: kind,
            name: self.name.clone(),
            start_time,
            end_time,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status,
            instrumentation_scope: self.scope.clone(),
        }
    }
}

/// `{operation} {model}`, or what of it is known.
fn span_name(record: &UsageRecord) -> Cow<'static, str> {
    let operation = record.operation.map(|o| o.semconv_name());
    match (operation, record.model.is_empty()) {
        (Some(op), false) => format!("{op} {}", record.model).into(),
        (Some(op), true) => op.into(),
        (None, _) => "spillway".into(),
    }
}

fn status(failed: bool, error: Option<&str>) -> Status {
    if failed {
        Status::error(error.unwrap_or("error").to_owned())
    } else {
        Status::Unset
    }
}

/// Attributes of both kinds of span.
fn common(record: &UsageRecord) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(16);
    if let Some(operation) = record.operation {
        out.push(KeyValue::new(
            attr::OPERATION_NAME,
            operation.semconv_name(),
        ));
    }
    if !record.model.is_empty() {
        out.push(KeyValue::new(attr::REQUEST_MODEL, record.model.clone()));
    }
    out.push(KeyValue::new(attr::APP_ID, record.app_id.clone()));
    if !record.pool.is_empty() {
        out.push(KeyValue::new(attr::POOL, record.pool.clone()));
    }
    out.push(KeyValue::new(attr::REQUEST_ID, record.request_id.clone()));
    out
}

/// The response model and token usage, for the spans of a served call.
fn response(record: &UsageRecord) -> Vec<KeyValue> {
    let mut out = Vec::with_capacity(3);
    if let Some(model) = &record.response_model {
        out.push(KeyValue::new(attr::RESPONSE_MODEL, model.clone()));
    }
    if record.status < 400 && record.backend.is_some() {
        let fields = usage_fields(&record.usage, record.cost.as_ref());
        out.extend(fields.into_iter().map(|(key, value)| match value {
            FieldValue::Int(n) => KeyValue::new(key, n),
            FieldValue::Text(text) => KeyValue::new(key, text),
        }));
    }
    out
}

/// Attributes of an attempt's span and its `error.type`, if it failed.
fn attempt_attributes(
    record: &UsageRecord,
    attempt: &UpstreamAttempt,
    info: Option<&BackendInfo>,
    answered: bool,
) -> (Vec<KeyValue>, Option<String>) {
    let mut out = common(record);
    out.push(KeyValue::new(attr::BACKEND, attempt.backend.clone()));
    if let Some(info) = info {
        out.push(KeyValue::new(attr::PROVIDER_NAME, info.provider));
        out.push(KeyValue::new(attr::SERVER_ADDRESS, info.address.clone()));
        out.push(KeyValue::new(attr::SERVER_PORT, info.port));
    }
    if answered {
        out.extend(response(record));
    }
    let error = match (attempt.status, attempt.failure) {
        (Some(status), _) => {
            out.push(KeyValue::new(attr::HTTP_STATUS_CODE, i64::from(status)));
            (status >= 400).then(|| status.to_string())
        }
        (None, failure) => Some(failure.unwrap_or("error").to_owned()),
    };
    let error = error.or_else(|| {
        let interrupted = record.error_type == Some(ErrorType::Interrupted);
        (answered && interrupted).then(|| ErrorType::Interrupted.to_string())
    });
    if let Some(error) = &error {
        out.push(KeyValue::new(attr::ERROR_TYPE, error.clone()));
    }
    (out, error)
}

#[cfg(test)]
mod tests;
