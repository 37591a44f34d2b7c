//! The log pipeline: one OTLP log record per finished request, carrying the same facts as the
//! `--usage-log` JSON line (app, pool, backend, model, tokens, estimated flag, status,
//! latency, request id) plus the request's trace and server span id, exported from a bounded
//! queue by the `opentelemetry-otlp` log exporter (OTLP/HTTP protobuf, or gRPC with the
//! `otlp-grpc` feature).
//!
//! Input: the [`UsageSink`](crate::usage::UsageSink) records and [`LogSettings`]. Records are
//! made with the OpenTelemetry logs SDK (a logger whose only processor puts them in the
//! queue). Output: OTLP log exports and the `spillway.telemetry.log_records` counter
//! (`success`, `failure`, `dropped`). A slow or unreachable collector never slows requests
//! and memory stays bounded by the queue (see `pipeline`).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use opentelemetry::InstrumentationScope;
use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, LoggerProvider as _, Severity};
use opentelemetry::trace::{SpanId, TraceFlags, TraceId};
use opentelemetry_otlp::LogExporter;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{
    LogBatch, LogExporter as _, LogProcessor, SdkLogRecord, SdkLogger, SdkLoggerProvider,
};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use super::backends::BackendIndex;
use super::export_config::LogSettings;
use super::exporter::otlp_exporter;
use super::outcome::RequestOutcome;
use super::pipeline::{self, BatchExport, Counts, Exporting, Queue};
use super::semconv::{self, attr};
use super::usage_fields::{FieldValue, usage_fields};
use super::{Telemetry, resource};
use crate::usage::UsageRecord;
use crate::usage::record::RequestTrace;

/// The event name of the per-request log record.
pub const EVENT_NAME: &str = "spillway.request";

impl Telemetry {
    /// Starts exporting one log record per record of `rx` as `settings` say; the follower
    /// and the exporter run as tasks on the current Tokio runtime. Stop with
    /// [`Exporting::finish`], which exports what is queued.
    ///
    /// # Errors
    /// Not inside a Tokio runtime, or the exporter cannot be built from `settings`.
    pub fn start_logs(
        &self,
        settings: &LogSettings,
        rx: broadcast::Receiver<Arc<UsageRecord>>,
    ) -> anyhow::Result<Exporting> {
        let (logger, counts, export) = self.log_pipeline(settings, semconv::LOG_RECORDS)?;
        tracing::info!(endpoint = %settings.endpoint, protocol = ?settings.protocol, "exporting request logs over OTLP");
        let telemetry = self.clone();
        let on_record = move |record: &UsageRecord| {
            let index = telemetry.inner.current_index();
            emit(&logger, record, &index);
        };
        Ok(Exporting::follow(rx, on_record, counts, export))
    }

    /// A logger for audit records, exported like the request logs but counted apart
    /// (`spillway.telemetry.audit_log_records`). The export task ends, after sending what is
    /// queued, once the returned logger is dropped.
    ///
    /// # Errors
    /// Not inside a Tokio runtime, or the exporter cannot be built from `settings`.
    pub fn audit_logger(
        &self,
        settings: &LogSettings,
    ) -> anyhow::Result<(SdkLogger, JoinHandle<()>)> {
        let (logger, _counts, export) = self.log_pipeline(settings, semconv::AUDIT_LOG_RECORDS)?;
        tracing::info!(endpoint = %settings.endpoint, "exporting audit records over OTLP");
        Ok((logger, export))
    }

    /// A logger whose records go through a bounded queue to an OTLP log exporter built from
    /// `settings`, counted in `counter`.
    fn log_pipeline(
        &self,
        settings: &LogSettings,
        counter: &'static str,
    ) -> anyhow::Result<(SdkLogger, Arc<Counts>, JoinHandle<()>)> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| anyhow::anyhow!("logs must start inside the Tokio runtime"))?;
        let mut exporter = otlp_exporter!(LogExporter, settings, runtime)?;
        exporter.set_resource(&resource());
        let scope = InstrumentationScope::builder("spillway")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let counts = Arc::new(Counts::default());
        let (queue, export) = pipeline::spawn_export(
            Records { exporter, scope },
            settings.max_queue,
            settings.max_batch,
            settings.schedule_delay,
            &counts,
        );
        pipeline::register(self, counter, "{record}", &counts);
        let provider = SdkLoggerProvider::builder()
            .with_resource(resource())
            .with_log_processor(Enqueue(queue))
            .build();
        let logger = provider.logger_with_scope(
            InstrumentationScope::builder("spillway")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
        );
        Ok((logger, counts, export))
    }
}

/// Emits the log record of `record` on `logger`.
fn emit(logger: &SdkLogger, record: &UsageRecord, index: &BackendIndex) {
    let mut log = logger.create_log_record();
    log.set_event_name(EVENT_NAME);
    let end = record
        .trace
        .map_or_else(SystemTime::now, |t| t.start + record.duration);
    log.set_timestamp(end);
    let (severity, text) = match record.status {
        500.. => (Severity::Error, "ERROR"),
        400.. => (Severity::Warn, "WARN"),
        _ if record.error_type.is_some() => (Severity::Warn, "WARN"),
        _ => (Severity::Info, "INFO"),
    };
    log.set_severity_number(severity);
    log.set_severity_text(text);
    log.set_body(AnyValue::from(format!(
        "{} {} {}",
        record.operation.map_or("request", |o| o.semconv_name()),
        if record.model.is_empty() {
            "-"
        } else {
            &record.model
        },
        record.status
    )));
    if let Some(trace) = record.trace {
        set_trace_context(&mut log, &trace);
    }
    let spilled = record
        .backend
        .as_deref()
        .and_then(|b| index.get(&record.pool, b))
        .is_some_and(|b| b.spillover);
    log.add_attributes(attributes(record, RequestOutcome::of(record, spilled)));
    logger.emit(log);
}

/// Links `log` to the request's trace and SERVER span, with its sampled flag.
pub(crate) fn set_trace_context(log: &mut SdkLogRecord, trace: &RequestTrace) {
    let flags = if trace.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    log.set_trace_context(
        TraceId::from_bytes(trace.trace_id),
        SpanId::from_bytes(trace.span_id),
        Some(flags),
    );
}

/// A usage field as a log attribute value.
pub(crate) fn any_value(value: FieldValue) -> AnyValue {
    match value {
        FieldValue::Int(n) => AnyValue::Int(n),
        FieldValue::Text(text) => AnyValue::from(text.into_owned()),
    }
}

/// The attributes of a request's log record: the usage-log fields.
fn attributes(record: &UsageRecord, outcome: RequestOutcome) -> Vec<(&'static str, AnyValue)> {
    let int = |n: u64| AnyValue::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let millis = |d: Duration| int(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let text = |s: &str| AnyValue::from(s.to_owned());
    let mut out = vec![
        (attr::REQUEST_ID, text(&record.request_id)),
        (attr::APP_ID, text(&record.app_id)),
        (attr::POOL, text(&record.pool)),
        (attr::REQUEST_MODEL, text(&record.model)),
        (attr::TOKEN_ESTIMATED, AnyValue::Boolean(record.estimated)),
        (attr::HTTP_STATUS_CODE, int(u64::from(record.status))),
        (attr::DURATION_MS, millis(record.duration)),
        (attr::STREAM, AnyValue::Boolean(record.stream)),
        (attr::ATTEMPTS, int(u64::from(record.attempts))),
        (attr::OUTCOME, AnyValue::from(outcome.as_str())),
    ];
    out.extend(
        usage_fields(&record.usage, record.cost.as_ref())
            .into_iter()
            .map(|(key, value)| (key, any_value(value))),
    );
    if let Some(backend) = &record.backend {
        out.push((attr::BACKEND, text(backend)));
    }
    if let Some(model) = &record.response_model {
        out.push((attr::RESPONSE_MODEL, text(model)));
    }
    if let Some(operation) = record.operation {
        out.push((
            attr::OPERATION_NAME,
            AnyValue::from(operation.semconv_name()),
        ));
    }
    if let Some(ttft) = record.time_to_first_token {
        out.push((attr::TIME_TO_FIRST_TOKEN_MS, millis(ttft)));
    }
    if record.client_disconnected {
        out.push((attr::CLIENT_DISCONNECTED, AnyValue::Boolean(true)));
    }
    if let Some(error) = &record.error_type {
        out.push((attr::ERROR_TYPE, text(&error.label())));
    }
    out
}

/// The logger's processor: queues each record without waiting (dropped, counted, when full).
#[derive(Debug)]
struct Enqueue(Queue<SdkLogRecord>);

impl LogProcessor for Enqueue {
    fn emit(&self, data: &mut SdkLogRecord, _scope: &InstrumentationScope) {
        self.0.push_all(vec![data.clone()]);
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        // The export task drains the queue once every sender is gone (see `pipeline`).
        Ok(())
    }
}

/// The log exporter as a [`BatchExport`]: every record under the `spillway` scope.
#[derive(Debug)]
struct Records {
    exporter: LogExporter,
    scope: InstrumentationScope,
}

impl BatchExport for Records {
    type Item = SdkLogRecord;

    async fn export(&self, batch: Vec<SdkLogRecord>) -> OTelSdkResult {
        let refs: Vec<(&SdkLogRecord, &InstrumentationScope)> =
            batch.iter().map(|r| (r, &self.scope)).collect();
        self.exporter.export(LogBatch::new(&refs)).await
    }
}

#[cfg(test)]
mod tests;
