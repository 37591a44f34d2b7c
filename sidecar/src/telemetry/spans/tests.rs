#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, SystemTime};

use opentelemetry::Value;
use opentelemetry::trace::{SpanId, SpanKind, Status};

use super::*;
use crate::usage::record::{AttemptTrace, RequestTrace};
use crate::usage::{ErrorType, GatewayErrorKind};

fn attempt(backend: &str, status: Option<u16>, id: u8, start: SystemTime) -> UpstreamAttempt {
    UpstreamAttempt {
        backend: backend.into(),
        started: Duration::ZERO,
        status,
        failure: status.is_none().then_some("timeout"),
        breaker: None,
        trace: Some(AttemptTrace {
            span_id: [id; 8],
            start,
            duration: Duration::from_millis(5),
        }),
    }
}

fn record(sampled: bool) -> UsageRecord {
    let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    UsageRecord {
        request_id: "req-1".into(),
        app_id: "team-a".into(),
        namespace: None,
        pool: "gpt".into(),
        response_model: Some("gpt-4o-2024-08-06".into()),
        attempts: 2,
        duration: Duration::from_millis(100),
        upstream: vec![
            attempt("a", Some(429), 1, start),
            attempt("b", Some(200), 2, start + Duration::from_millis(10)),
        ],
        trace: Some(RequestTrace {
            trace_id: [7; 16],
            span_id: [9; 8],
            parent_span_id: Some([3; 8]),
            sampled,
            start,
        }),
        ..UsageRecord::served("team-a")
    }
}

fn value<'a>(span: &'a SpanData, key: &str) -> Option<&'a Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| &kv.value)
}

#[test]
fn a_server_span_with_a_client_child_per_attempt() {
    let record = record(true);
    let spans = spans(&record, &BackendIndex::default());
    assert_eq!(spans.len(), 3);
    let server = &spans[0];
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(server.name, "chat gpt-4o");
    assert_eq!(server.parent_span_id, SpanId::from_bytes([3; 8]));
    assert!(server.parent_span_is_remote);
    assert_eq!(server.span_context.span_id(), SpanId::from_bytes([9; 8]));
    assert_eq!(
        server.end_time.duration_since(server.start_time).unwrap(),
        Duration::from_millis(100)
    );
    assert_eq!(
        value(server, attr::USAGE_INPUT_TOKENS),
        Some(&Value::I64(12))
    );
    assert_eq!(
        value(server, attr::USAGE_OUTPUT_TOKENS),
        Some(&Value::I64(34))
    );
    assert_eq!(value(server, attr::REQUEST_ID), Some(&Value::from("req-1")));
    assert_eq!(server.status, Status::Unset);

    let (spilled, served) = (&spans[1], &spans[2]);
    for (span, id) in [(spilled, 1), (served, 2)] {
        assert_eq!(span.span_kind, SpanKind::Client);
        assert_eq!(span.parent_span_id, SpanId::from_bytes([9; 8]));
        assert_eq!(span.span_context.span_id(), SpanId::from_bytes([id; 8]));
        assert_eq!(span.span_context.trace_id(), server.span_context.trace_id());
    }
    assert_eq!(
        value(spilled, attr::HTTP_STATUS_CODE),
        Some(&Value::I64(429))
    );
    assert_eq!(value(spilled, attr::ERROR_TYPE), Some(&Value::from("429")));
    assert!(matches!(spilled.status, Status::Error { .. }));
    assert_eq!(
        spilled.end_time.duration_since(spilled.start_time).unwrap(),
        Duration::from_millis(5)
    );
    assert_eq!(value(spilled, attr::USAGE_INPUT_TOKENS), None);
    assert_eq!(
        value(served, attr::RESPONSE_MODEL),
        Some(&Value::from("gpt-4o-2024-08-06"))
    );
    assert_eq!(value(served, attr::BACKEND), Some(&Value::from("b")));
    assert_eq!(
        served.end_time, server.end_time,
        "the answering attempt lasts to the last byte"
    );
    assert_eq!(value(served, attr::ERROR_TYPE), None);
}

#[test]
fn unsampled_or_untraced_records_have_no_spans() {
    assert!(spans(&record(false), &BackendIndex::default()).is_empty());
    let mut untraced = record(true);
    untraced.trace = None;
    assert!(spans(&untraced, &BackendIndex::default()).is_empty());
}

#[test]
fn failures_mark_both_spans() {
    let mut failed = record(true);
    failed.status = 504;
    failed.backend = None;
    failed.error_type = Some(ErrorType::gateway(
        "backend_timeout",
        GatewayErrorKind::Backend,
    ));
    failed.upstream = vec![attempt("a", None, 1, SystemTime::UNIX_EPOCH)];
    let spans = spans(&failed, &BackendIndex::default());
    assert!(matches!(spans[0].status, Status::Error { .. }));
    assert_eq!(
        value(&spans[0], attr::ERROR_TYPE),
        Some(&Value::from("backend_timeout"))
    );
    assert_eq!(value(&spans[0], attr::USAGE_INPUT_TOKENS), None);
    assert_eq!(
        value(&spans[1], attr::ERROR_TYPE),
        Some(&Value::from("timeout"))
    );
    assert_eq!(value(&spans[1], attr::HTTP_STATUS_CODE), None);
}

/// A 200 whose body the backend broke off is a failed call in its trace: the server span's
/// status is Error and the answering attempt carries `error.type = response_interrupted`
/// (the body set one spelling and the spans looked for another, so this never happened).
#[test]
fn an_answer_broken_off_marks_the_server_span_and_its_attempt_failed() {
    let mut broken = record(true);
    broken.error_type = Some(ErrorType::Interrupted);
    let spans = spans(&broken, &BackendIndex::default());
    assert!(
        matches!(spans[0].status, Status::Error { .. }),
        "{:?}",
        spans[0].status
    );
    let interrupted = Some(Value::from("response_interrupted"));
    assert_eq!(value(&spans[0], attr::ERROR_TYPE).cloned(), interrupted);
    assert_eq!(value(&spans[2], attr::ERROR_TYPE).cloned(), interrupted);
    assert_eq!(
        value(&spans[1], attr::ERROR_TYPE),
        Some(&Value::from("429")),
        "the earlier attempt keeps its own error"
    );
}
