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

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use super::backends::{BackendIndex, BackendInfo};
use super::semconv::attr;
use crate::usage::UsageRecord;
use crate::usage::record::UpstreamAttempt;

/// The spans of `record`: none when it is not traced or its trace is not sampled; else the
/// server span followed by one client span per attempt.
pub fn spans(record: &UsageRecord, index: &BackendIndex) -> Vec<SpanData> {
    let Some(trace) = record.trace.filter(|t| t.sampled) else {
        return Vec::new();
    };
    let scope = InstrumentationScope::builder("spillway")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let trace_id = TraceId::from_bytes(trace.trace_id);
    let server_id = SpanId::from_bytes(trace.span_id);
    let name = span_name(record);
    let end = trace.start + record.duration;
    let backend = |name: &str| index.get(&record.pool, name);
    let mut server_attributes = common(record);
    if let Some(info) = record.backend.as_deref().and_then(backend) {
        server_attributes.push(KeyValue::new(attr::PROVIDER_NAME, info.provider));
    }
    if let Some(b) = &record.backend {
        server_attributes.push(KeyValue::new(attr::BACKEND, b.clone()));
    }
    server_attributes.extend(response(record));
    server_attributes.push(KeyValue::new(
        attr::HTTP_STATUS_CODE,
        i64::from(record.status),
    ));
    if let Some(error) = &record.error_type {
        server_attributes.push(KeyValue::new(attr::ERROR_TYPE, error.to_string()));
    }
    let server_failed =
        record.status >= 500 || record.error_type.as_deref() == Some("stream_interrupted");
    let mut out = Vec::with_capacity(1 + record.upstream.len());
    out.push(SpanData {
        span_context: context(trace_id, server_id),
        parent_span_id: trace
            .parent_span_id
            .map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: trace.parent_span_id.is_some(),
        span_kind: SpanKind::Server,
        name: name.clone(),
        start_time: trace.start,
        end_time: end,
        attributes: server_attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: status(server_failed, record.error_type.as_deref()),
        instrumentation_scope: scope.clone(),
    });
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
        let (attributes, failed) =
            attempt_attributes(record, attempt, backend(&attempt.backend), answered);
        let error = attributes
            .iter()
            .find(|kv| kv.key.as_str() == attr::ERROR_TYPE)
            .map(|kv| kv.value.as_str().into_owned());
        out.push(SpanData {
            span_context: context(trace_id, SpanId::from_bytes(span.span_id)),
            parent_span_id: server_id,
            parent_span_is_remote: false,
            span_kind: SpanKind::Client,
            name: name.clone(),
            start_time: span.start,
            end_time,
            attributes,
            dropped_attributes_count: 0,
            events: SpanEvents::default(),
            links: SpanLinks::default(),
            status: status(failed, error.as_deref()),
            instrumentation_scope: scope.clone(),
        });
    }
    out
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

fn context(trace_id: TraceId, span_id: SpanId) -> SpanContext {
    SpanContext::new(
        trace_id,
        span_id,
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    )
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
        let tokens = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        out.push(KeyValue::new(
            attr::USAGE_INPUT_TOKENS,
            tokens(record.usage.prompt_tokens),
        ));
        out.push(KeyValue::new(
            attr::USAGE_OUTPUT_TOKENS,
            tokens(record.usage.completion_tokens),
        ));
    }
    out
}

/// Attributes of an attempt's span and whether it failed.
fn attempt_attributes(
    record: &UsageRecord,
    attempt: &UpstreamAttempt,
    info: Option<&BackendInfo>,
    answered: bool,
) -> (Vec<KeyValue>, bool) {
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
        (answered && record.error_type.as_deref() == Some("stream_interrupted"))
            .then(|| "stream_interrupted".to_owned())
    });
    let failed = error.is_some();
    if let Some(error) = error {
        out.push(KeyValue::new(attr::ERROR_TYPE, error));
    }
    (out, failed)
}

#[cfg(test)]
mod tests;
