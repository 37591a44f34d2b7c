#![allow(clippy::unwrap_used)]

use std::sync::Mutex;

use super::*;
use crate::usage::record::RequestTrace;
use crate::usage::{ErrorType, GatewayErrorKind};

/// A processor keeping what was emitted.
#[derive(Debug, Default, Clone)]
struct Keep(Arc<Mutex<Vec<SdkLogRecord>>>);

impl LogProcessor for Keep {
    fn emit(&self, data: &mut SdkLogRecord, _scope: &InstrumentationScope) {
        self.0.lock().unwrap().push(data.clone());
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

fn record() -> UsageRecord {
    UsageRecord {
        request_id: "req-1".into(),
        pool: "gpt-4o".into(),
        backend: Some("ptu".into()),
        response_model: Some("gpt-4o-2024-08-06".into()),
        stream: true,
        estimated: true,
        attempts: 2,
        duration: Duration::from_millis(1500),
        time_to_first_token: Some(Duration::from_millis(200)),
        trace: Some(RequestTrace {
            trace_id: [7; 16],
            span_id: [9; 8],
            parent_span_id: None,
            sampled: false,
            start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
        }),
        ..UsageRecord::served("chat-web")
    }
}

fn emitted(record: &UsageRecord) -> SdkLogRecord {
    let keep = Keep::default();
    let provider = SdkLoggerProvider::builder()
        .with_log_processor(keep.clone())
        .build();
    emit(&provider.logger("t"), record, &BackendIndex::default());
    let mut kept = keep.0.lock().unwrap();
    assert_eq!(kept.len(), 1);
    kept.remove(0)
}

fn attribute(log: &SdkLogRecord, key: &str) -> Option<AnyValue> {
    log.attributes_iter()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v.clone())
}

#[test]
fn a_record_carries_the_usage_log_fields_and_the_trace() {
    let log = emitted(&record());
    assert_eq!(log.event_name(), Some(EVENT_NAME));
    assert_eq!(
        log.timestamp(),
        Some(SystemTime::UNIX_EPOCH + Duration::from_millis(1_001_500)),
        "ends when the response ended"
    );
    assert_eq!(log.severity_number(), Some(Severity::Info));
    let trace = log.trace_context().unwrap();
    assert_eq!(trace.trace_id, TraceId::from_bytes([7; 16]));
    assert_eq!(trace.span_id, SpanId::from_bytes([9; 8]));
    assert_eq!(
        trace.trace_flags,
        Some(TraceFlags::default()),
        "not sampled"
    );
    let text = |s: &str| Some(AnyValue::from(s.to_owned()));
    assert_eq!(attribute(&log, attr::REQUEST_ID), text("req-1"));
    assert_eq!(attribute(&log, attr::APP_ID), text("chat-web"));
    assert_eq!(attribute(&log, attr::POOL), text("gpt-4o"));
    assert_eq!(attribute(&log, attr::BACKEND), text("ptu"));
    assert_eq!(attribute(&log, attr::REQUEST_MODEL), text("gpt-4o"));
    assert_eq!(
        attribute(&log, attr::RESPONSE_MODEL),
        text("gpt-4o-2024-08-06")
    );
    assert_eq!(
        attribute(&log, attr::USAGE_INPUT_TOKENS),
        Some(AnyValue::Int(12))
    );
    assert_eq!(
        attribute(&log, attr::USAGE_OUTPUT_TOKENS),
        Some(AnyValue::Int(34))
    );
    assert_eq!(
        attribute(&log, attr::TOKEN_ESTIMATED),
        Some(AnyValue::Boolean(true))
    );
    assert_eq!(
        attribute(&log, attr::HTTP_STATUS_CODE),
        Some(AnyValue::Int(200))
    );
    assert_eq!(
        attribute(&log, attr::DURATION_MS),
        Some(AnyValue::Int(1500))
    );
    assert_eq!(
        attribute(&log, attr::TIME_TO_FIRST_TOKEN_MS),
        Some(AnyValue::Int(200))
    );
    assert_eq!(attribute(&log, attr::ATTEMPTS), Some(AnyValue::Int(2)));
    assert_eq!(attribute(&log, attr::ERROR_TYPE), None);
    assert_eq!(attribute(&log, attr::CLIENT_DISCONNECTED), None);
}

#[test]
fn failures_carry_error_type_and_severity() {
    let mut refused = record();
    refused.status = 429;
    refused.backend = None;
    refused.error_type = Some(ErrorType::gateway(
        "rate_limit_exceeded",
        GatewayErrorKind::RateLimited,
    ));
    refused.trace = None;
    let log = emitted(&refused);
    assert_eq!(log.severity_number(), Some(Severity::Warn));
    assert!(log.trace_context().is_none());
    assert_eq!(
        attribute(&log, attr::ERROR_TYPE),
        Some(AnyValue::from("rate_limit_exceeded".to_owned()))
    );
    assert_eq!(
        attribute(&log, attr::OUTCOME),
        Some(AnyValue::from("rate_limited"))
    );
    let mut failed = record();
    failed.status = 502;
    failed.error_type = Some(ErrorType::gateway(
        "backend_unreachable",
        GatewayErrorKind::Backend,
    ));
    assert_eq!(emitted(&failed).severity_number(), Some(Severity::Error));
}
