//! `--audit-log FILE`: the audit writer. Takes queued calls, builds the record — request
//! messages extracted from the body, completion, usage, status, ids — redacts and caps every
//! free-text field, and appends one JSON line per call. On shutdown it writes what is queued,
//! flushes and ends.

use std::path::Path;

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::redact::cap;
use super::{AuditQueue, PendingAudit};
use crate::limiter::calendar::{format_utc, unix_ms};

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
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
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
        prompt_tokens: record.usage.prompt_tokens,
        completion_tokens: record.usage.completion_tokens,
        estimated: record.estimated,
        request,
        completion,
        truncated: request_cut || completion_cut,
    }
}

/// The running audit writer.
#[derive(Debug)]
pub struct AuditLog {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl AuditLog {
    /// Opens (creates, appends to) `path` and writes every queued call to it.
    ///
    /// # Errors
    /// The file cannot be opened for appending.
    pub async fn start(path: &Path, queue: AuditQueue) -> anyhow::Result<Self> {
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .with_context(|| format!("opening audit log {}", path.display()))?;
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(write(file, queue, stopped));
        Ok(Self { stop, task })
    }

    /// Writes what is queued, flushes and ends the writer.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

async fn write(
    mut file: tokio::fs::File,
    mut queue: AuditQueue,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let pending = tokio::select! {
            pending = queue.rx.recv() => pending,
            _ = &mut stopped => break,
        };
        let Some(pending) = pending else { break };
        append(&mut file, &queue, pending).await;
    }
    while let Ok(pending) = queue.rx.try_recv() {
        append(&mut file, &queue, pending).await;
    }
    if let Err(error) = file.flush().await {
        tracing::error!(%error, "cannot flush the audit log");
    }
}

async fn append(file: &mut tokio::fs::File, queue: &AuditQueue, pending: PendingAudit) {
    // Redaction may take a while on a long completion: off the async threads.
    let rendered = tokio::task::spawn_blocking(move || {
        let mut bytes = serde_json::to_vec(&line(&pending)).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    })
    .await;
    let Ok(line) = rendered else {
        queue
            .counts
            .failed
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return;
    };
    match file.write_all(&line).await {
        Ok(()) => queue
            .counts
            .written
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        Err(error) => {
            tracing::error!(%error, "cannot write the audit log");
            queue
                .counts
                .failed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        }
    };
}
