//! The audit writer. Takes queued calls, builds the record — request messages extracted from
//! the body, completion, usage, status, ids — redacts and caps every free-text field, and
//! appends one JSON line per call (`--audit-log FILE`) and/or emits one `spillway.audit` OTLP
//! log record (when an OTLP logs endpoint is configured). On shutdown it writes what is
//! queued, flushes and ends.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use std::sync::atomic::Ordering;

use opentelemetry::logs::{AnyValue, LogRecord as _, Logger as _, Severity};
use opentelemetry_sdk::logs::SdkLogger;

use super::redact::cap;
use super::{AuditQueue, PendingAudit};
use crate::calendar::{format_utc, unix_ms};
use crate::cost::CallCost;
use crate::telemetry::logs::set_trace_context;
use crate::telemetry::semconv::attr;
use crate::telemetry::usage_fields::{FieldValue, usage_fields};
use crate::usage::Usage;
use crate::usage::record::RequestTrace;

/// The event name of audit log records.
pub const EVENT_NAME: &str = "spillway.audit";

/// One audit line.
#[derive(Debug, Serialize, PartialEq)]
pub struct AuditLine {
    /// RFC 3339 time the call ended (UTC, to the second).
    pub time: String,
    /// Request id (`x-request-id`).
    pub request_id: String,
    /// The calling app.
    pub app_id: String,
    /// Pool, backend and model.
    pub pool: String,
    /// The backend that answered last.
    pub backend: Option<String>,
    /// Requested model / deployment.
    pub model: String,
    /// Operation (`chat.completions`, …).
    pub operation: Option<String>,
    /// Streamed or not.
    pub stream: bool,
    /// HTTP status to the client.
    pub status: u16,
    /// Tokens: `prompt_tokens`, `completion_tokens` and each non-zero subset
    /// (`cached_tokens`, `reasoning_tokens`, …).
    #[serde(flatten)]
    pub usage: Usage,
    /// What the call cost, when its backend has prices.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost: Option<CallCost>,
    /// Counted with the tokenizer.
    pub estimated: bool,
    /// The request's messages / prompt / input, as JSON text, redacted and capped.
    pub request: String,
    /// The generated text, redacted and capped.
    pub completion: String,
    /// A field was cut to `maxFieldBytes`.
    pub truncated: bool,
}

/// What the request asked, as JSON text: `messages` (chat), `prompt` (completions),
/// `input` (responses, embeddings), else the whole body.
fn request_text(body: &[u8]) -> String {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => ["messages", "prompt", "input"]
            .iter()
            .find_map(|key| map.get(*key))
            .map_or_else(|| Value::Object(map.clone()).to_string(), Value::to_string),
        _ => String::from_utf8_lossy(body).into_owned(),
    }
}

/// The line for `pending`: redacted, then capped.
pub fn line(pending: &PendingAudit) -> AuditLine {
    let policy = &pending.policy;
    let request = request_text(&pending.request_body);
    let (request, request_cut) = cap(&policy.redactor.redact(&request), policy.max_field_bytes);
    let completion = pending.completion.as_deref().unwrap_or_default();
    let (completion, completion_cut) =
        cap(&policy.redactor.redact(completion), policy.max_field_bytes);
    let record = &pending.record;
    AuditLine {
        time: format_utc(unix_ms(pending.at)),
        request_id: record.request_id.clone(),
        app_id: record.app_id.clone(),
        pool: record.pool.clone(),
        backend: record.backend.clone(),
        model: record.model.clone(),
        operation: record.operation.map(|o| o.path().to_owned()),
        stream: record.stream,
        status: record.status,
        usage: record.usage,
        cost: record.cost.clone(),
        estimated: record.estimated,
        request,
        completion,
        truncated: request_cut || completion_cut,
    }
}

/// Where audit records go: a JSON-lines file, OTLP logs, or both.
#[derive(Debug, Default)]
pub struct Destinations {
    /// Append JSON lines here.
    pub file: Option<std::path::PathBuf>,
    /// Emit `spillway.audit` log records here (exported by the telemetry log pipeline).
    pub otlp: Option<(SdkLogger, JoinHandle<()>)>,
}

/// The running audit writer.
#[derive(Debug)]
pub struct AuditLog {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

struct Outputs {
    file: Option<tokio::fs::File>,
    logger: Option<SdkLogger>,
}

impl AuditLog {
    /// Opens (creates, appends to) the file, if any, and writes every queued call to the
    /// destinations.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub async fn start(destinations: Destinations, queue: AuditQueue) -> anyhow::Result<Self> {
        let file = match &destinations.file {
            Some(path) => Some(open(path).await?),
            None => None,
        };
        let (logger, export) = destinations.otlp.unzip();
        let outputs = Outputs { file, logger };
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            write(outputs, queue, stopped).await;
            // The logger is gone: its export task sends what is queued and ends.
            if let Some(export) = export {
                let _ = export.await;
            }
        });
        Ok(Self { stop, task })
    }

    /// Writes what is queued, flushes and ends the writer.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn open(path: &Path) -> anyhow::Result<tokio::fs::File> {
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .with_context(|| format!("opening audit log {}", path.display()))
}

async fn write(mut outputs: Outputs, mut queue: AuditQueue, mut stopped: oneshot::Receiver<()>) {
    loop {
        let pending = tokio::select! {
            pending = queue.rx.recv() => pending,
            _ = &mut stopped => break,
        };
        let Some(pending) = pending else { break };
        append(&mut outputs, &queue, pending).await;
    }
    while let Ok(pending) = queue.rx.try_recv() {
        append(&mut outputs, &queue, pending).await;
    }
    if let Some(file) = &mut outputs.file
        && let Err(error) = file.flush().await
    {
        tracing::error!(%error, "cannot flush the audit log");
    }
}

async fn append(outputs: &mut Outputs, queue: &AuditQueue, pending: PendingAudit) {
    let trace = pending.record.trace;
    // Redaction may take a while on a long completion: off the async threads.
    let Ok(line) = tokio::task::spawn_blocking(move || line(&pending)).await else {
        queue.counts.failed.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let mut ok = true;
    if let Some(file) = &mut outputs.file {
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        if let Err(error) = file.write_all(&bytes).await {
            tracing::error!(%error, "cannot write the audit log");
            ok = false;
        }
    }
    if let Some(logger) = &outputs.logger {
        emit(logger, &line, trace);
    }
    let counter = if ok {
        &queue.counts.written
    } else {
        &queue.counts.failed
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Emits `line` as a `spillway.audit` log record (queued without waiting).
fn emit(logger: &SdkLogger, line: &AuditLine, trace: Option<RequestTrace>) {
    let mut log = logger.create_log_record();
    log.set_event_name(EVENT_NAME);
    log.set_severity_number(Severity::Info);
    log.set_severity_text("INFO");
    log.set_body(AnyValue::from(line.completion.clone()));
    if let Some(trace) = trace {
        set_trace_context(&mut log, &trace);
    }
    let int = |n: u64| AnyValue::Int(i64::try_from(n).unwrap_or(i64::MAX));
    let text = |s: &str| AnyValue::from(s.to_owned());
    log.add_attributes([
        (attr::REQUEST_ID, text(&line.request_id)),
        (attr::APP_ID, text(&line.app_id)),
        (attr::POOL, text(&line.pool)),
        (attr::BACKEND, text(line.backend.as_deref().unwrap_or(""))),
        (attr::REQUEST_MODEL, text(&line.model)),
        (attr::HTTP_STATUS_CODE, int(u64::from(line.status))),
        (attr::TOKEN_ESTIMATED, AnyValue::Boolean(line.estimated)),
        (attr::STREAM, AnyValue::Boolean(line.stream)),
        ("spillway.audit.request", text(&line.request)),
        ("spillway.audit.completion", text(&line.completion)),
        (
            "spillway.audit.truncated",
            AnyValue::Boolean(line.truncated),
        ),
    ]);
    log.add_attributes(
        usage_fields(&line.usage, line.cost.as_ref())
            .into_iter()
            .map(|(key, value)| match value {
                FieldValue::Int(n) => (key, AnyValue::Int(n)),
                FieldValue::Text(text) => (key, AnyValue::from(text.into_owned())),
            }),
    );
    logger.emit(log);
}
